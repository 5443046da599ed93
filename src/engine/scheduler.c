/* Continuous batching (include/gemma4c.h, "scheduler"): many chat requests
 * on one context of n_parallel sequences.
 *
 * A request is rendered and tokenized in submit (errors go straight back to
 * the caller), waits in a FIFO queue, is admitted to a free sequence when its
 * KV pages fit, has its prompt evaluated in chunks and then decodes. Each
 * step is one gemma4c_decode of at most n_batch tokens: first one token of
 * every decoding request (with its n-gram drafts when drafting is on: the
 * rows they add are walked as generate.c walks them, and the rejected ones'
 * positions truncated), then prompt chunks in admission order. Sampling,
 * detokenizing, stop strings and parsing are per request, as in a session
 * turn (session.c), so a request alone gives the same text as that turn.
 * Built on the public context calls only. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "arch/markers.h"
#include "engine/engine.h"
#include "gemma4c.h"

/* The prefix cache lands separately; 0 keeps its calls out of the build. */
#ifndef G4_SCHED_PREFIX
#define G4_SCHED_PREFIX 1
#endif

enum { ST_QUEUED, ST_PREFILL, ST_DECODE };
enum { MAX_STOP = 16, MAX_STOP_LEN = 256, MAX_BIAS = 1024, MAX_DRAFT = 16 };

typedef struct request {
    uint64_t id;
    gemma4c_event_fn fn;
    void *user;
    struct request *next;      /* queue link */
    int32_t *ids;              /* the prompt */
    int n_prompt, n_max;       /* prompt tokens, most tokens to sample */
    gemma4c_sampler_params sp;
    char *stop[MAX_STOP];
    int n_stop;
    size_t stop_max;           /* longest stop string */
    int in_reasoning;
    int raw;                   /* "prompt" without "messages": plain continuation */
    char *text;                /* raw: the answer so far (no chat parser) */
    size_t text_len, text_cap;
    char *model;               /* "model" echoed in the result */
    int pages;                 /* KV pages reserved */
    int cancel;                /* set under the lock */
    /* while running (step thread only) */
    int state, seq;
    int n_done;                /* prompt tokens in the sequence */
    int n_cached;              /* of those, from the prefix cache */
    int n_gen;                 /* tokens sampled */
    int32_t next_tok;          /* sampled, evaluated at the next step */
    int batch_idx;             /* index of its logits in this step's batch, -1 */
    int n_draft;               /* speculative drafts after next_tok in this step's batch */
    int32_t draft[MAX_DRAFT];
    gemma4c_sampler *smp;
    gemma4c_detok *dt;
    gemma4c_chat_parser *parser;
    gemma4c_constraint *cons;  /* response_format / tools, or NULL */
    int n_bias;                /* logit_bias entries (+ the thought-channel ban) */
    int32_t *bias_id;
    float *bias_v;             /* added to the logit; -INFINITY bans */
    char *hold;                /* output held back while it may start a stop string */
    size_t hold_len, hold_cap;
    char *pend;                /* text deltas of this token not yet sent (one event per kind and token) */
    size_t pend_len, pend_cap;
    int pend_kind;
    int failed;                /* out of memory in the parser */
    int stopped;               /* a stop string ended the text */
    int want_lp, top_lp;       /* "logprobs", "top_logprobs" (0..20) */
    json_t *lp;                /* want_lp: logprobs.content entries so far */
} request;

struct gemma4c_scheduler {
    gemma4c_model *m;
    gemma4c_context *c;
    gemma4c_scheduler_params p;
    int n_ctx;                 /* per request */
    int page, pages_total, pages_reserved;
    const char *model_name;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int woken;
    request *qhead, *qtail;    /* waiting, FIFO */
    int n_queued;
    request **slot;            /* [n_parallel]: running request of each sequence */
    int n_active;
    uint64_t next_id;
    gemma4c_scheduler_stats st;
    /* one step's batch */
    int32_t *btok, *bseq;
    int8_t *bkeep;
    float *masked;             /* [n_vocab] logits copy for a constraint or a bias */
    int32_t tok_channel;       /* "<|channel>" (opens the thought channel), or -1 */
    int n_vocab;
    int32_t *hist;             /* [n_ctx + 1]: a sequence's tokens and next_tok, for drafting */
    int dmax, ngram;           /* drafts per request and step (0: off), n-gram looked up */
};

__attribute__((format(printf, 3, 4))) static void set_err(char *dst, size_t len, const char *fmt, ...) {
    if (!dst || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, len, fmt, ap);
    va_end(ap);
}

gemma4c_scheduler_params gemma4c_scheduler_default_params(void) {
    gemma4c_scheduler_params p;
    memset(&p, 0, sizeof p);
    p.n_parallel = 4;
    p.precision = GEMMA4C_PREC_FAST;
    return p;
}

static void request_free(request *r) {
    if (!r) return;
    free(r->ids);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->model);
    gemma4c_sampler_free(r->smp);
    gemma4c_detok_free(r->dt);
    gemma4c_chat_parser_free(r->parser);
    gemma4c_constraint_free(r->cons);
    free(r->bias_id);
    free(r->bias_v);
    free(r->hold);
    free(r->pend);
    free(r->text);
    json_decref(r->lp);
    free(r);
}

gemma4c_scheduler *gemma4c_scheduler_new(gemma4c_model *m, const gemma4c_scheduler_params *pp, char *err,
                                         size_t errlen) {
    gemma4c_scheduler_params p = pp ? *pp : gemma4c_scheduler_default_params();
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    if (p.n_parallel <= 0) p.n_parallel = 4;
    if (p.n_parallel > 4096) { set_err(err, errlen, "n_parallel %d: at most 4096", p.n_parallel); return NULL; }
    if (p.n_ctx <= 0) p.n_ctx = info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    if (p.n_ctx > info.n_ctx_train) p.n_ctx = info.n_ctx_train;
    if (p.n_batch <= 0) p.n_batch = 512;
    if (p.n_batch < p.n_parallel) p.n_batch = p.n_parallel; /* one decode token each */
    if (p.max_queue <= 0) p.max_queue = 256;
    if (p.n_prefix < 0) p.n_prefix = 0;
    if (p.draft.kind != GEMMA4C_DRAFT_NONE && p.draft.kind != GEMMA4C_DRAFT_NGRAM) {
        set_err(err, errlen, "draft kind %d: the scheduler drafts with n-grams only", p.draft.kind);
        return NULL;
    }
#if !G4_SCHED_PREFIX
    p.n_prefix = 0;
#endif
    gemma4c_scheduler *s = calloc(1, sizeof *s);
    if (!s) { set_err(err, errlen, "out of memory"); return NULL; }
    s->m = m;
    s->p = p;
    s->model_name = info.name ? info.name : "gemma4";
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->next_id = 1;
    /* the sequences share the full-attention positions: room for every
     * request at its full length (the model's limit permitting) */
    long total = (long)p.n_ctx * p.n_parallel;
    if (total > info.n_ctx_train) total = info.n_ctx_train;
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = (int)total;
    cp.n_batch = p.n_batch;
    cp.n_threads = p.n_threads;
    cp.precision = p.precision;
    cp.kv_type = p.kv_type;
    cp.n_seq = p.n_parallel;
    cp.n_prefix = p.n_prefix;
    s->c = gemma4c_context_new(m, &cp, err, errlen);
    if (!s->c) { gemma4c_scheduler_free(s); return NULL; }
    s->p.n_batch = cp.n_batch < gemma4c_n_ctx(s->c) ? cp.n_batch : gemma4c_n_ctx(s->c);
    if (s->p.n_batch < p.n_parallel) {
        set_err(err, errlen, "a context of %d positions cannot hold %d parallel requests", gemma4c_n_ctx(s->c),
                p.n_parallel);
        gemma4c_scheduler_free(s);
        return NULL;
    }
    s->n_ctx = p.n_ctx < gemma4c_n_ctx(s->c) ? p.n_ctx : gemma4c_n_ctx(s->c);
    int used;
    gemma4c_kv_usage(s->c, &used, &s->pages_total);
    s->page = s->pages_total > 0 ? (gemma4c_n_ctx(s->c) + s->pages_total - 1) / s->pages_total : 0;
    int V = gemma4c_n_vocab(s->c);
    s->slot = calloc((size_t)p.n_parallel, sizeof *s->slot);
    s->btok = malloc((size_t)s->p.n_batch * sizeof *s->btok);
    s->bseq = malloc((size_t)s->p.n_batch * sizeof *s->bseq);
    s->bkeep = malloc((size_t)s->p.n_batch);
    s->masked = malloc((size_t)V * sizeof *s->masked);
    /* drafts: a rolled-back sequence drops at most n_batch - 1 positions (the
     * sliding rings' slack) */
    if (p.draft.kind == GEMMA4C_DRAFT_NGRAM) {
        s->dmax = p.draft.max > 0 ? p.draft.max : 4;
        if (s->dmax > MAX_DRAFT) s->dmax = MAX_DRAFT;
        if (s->dmax > s->p.n_batch - 1) s->dmax = s->p.n_batch - 1;
        s->ngram = p.draft.ngram > 0 ? p.draft.ngram : 3;
        s->hist = malloc(((size_t)gemma4c_n_ctx(s->c) + 1) * sizeof *s->hist);
    }
    if (!s->slot || !s->btok || !s->bseq || !s->bkeep || !s->masked || (s->dmax > 0 && !s->hist)) {
        set_err(err, errlen, "out of memory");
        gemma4c_scheduler_free(s);
        return NULL;
    }
    s->st.n_parallel = p.n_parallel;
    s->n_vocab = V;
    /* thinking off bans the thought channel's opening token, so that a
     * thought can only appear when thinking is on (chat-format spec §1) */
    int32_t *ch = NULL;
    char cerr[64];
    s->tok_channel = gemma4c_tokenize(m, G4_MK_CHANNEL_OPEN, strlen(G4_MK_CHANNEL_OPEN), 0, 1, &ch, cerr, sizeof cerr) == 1
                         ? ch[0] : -1;
    free(ch);
    return s;
}

void gemma4c_scheduler_free(gemma4c_scheduler *s) {
    if (!s) return;
    for (request *r = s->qhead, *n; r; r = n) { n = r->next; request_free(r); }
    for (int i = 0; s->slot && i < s->p.n_parallel; i++) request_free(s->slot[i]);
    free(s->slot);
    free(s->btok);
    free(s->bseq);
    free(s->bkeep);
    free(s->masked);
    free(s->hist);
    gemma4c_context_free(s->c);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

gemma4c_context *gemma4c_scheduler_context(gemma4c_scheduler *s) { return s->c; }

/* ---- requests --------------------------------------------------------------- */

/* A number field: absent or null leaves *out; else it must be a number in
 * [lo, hi]. */
static int get_num(json_t *req, const char *key, double lo, double hi, double *out, char *err, size_t errlen) {
    json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi)) {
        set_err(err, errlen, "\"%s\" must be a number in [%g, %g]", key, lo, hi);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static int get_int(json_t *req, const char *key, long long lo, long long hi, long long *out, char *err,
                   size_t errlen) {
    json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        set_err(err, errlen, "\"%s\" must be an integer in [%lld, %lld]", key, lo, hi);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

/* Sampling fields over Gemma's defaults. */
static int read_sampling(json_t *req, gemma4c_sampler_params *sp, char *err, size_t errlen) {
    double t = sp->temperature, tp = sp->top_p, mp = sp->min_p, rp = sp->repeat_penalty,
           pp = sp->presence_penalty, fp = sp->frequency_penalty;
    long long tk = sp->top_k, ln = sp->penalty_last_n, seed = 0;
    int has_seed = json_object_get(req, "seed") && !json_is_null(json_object_get(req, "seed"));
    if (get_num(req, "temperature", 0, 100, &t, err, errlen) || get_num(req, "top_p", 0, 1, &tp, err, errlen) ||
        get_num(req, "min_p", 0, 1, &mp, err, errlen) || get_num(req, "repeat_penalty", 0, 100, &rp, err, errlen) ||
        get_num(req, "presence_penalty", -2, 2, &pp, err, errlen) ||
        get_num(req, "frequency_penalty", -2, 2, &fp, err, errlen) ||
        get_int(req, "top_k", 0, 1 << 24, &tk, err, errlen) ||
        get_int(req, "repeat_last_n", 0, 1 << 24, &ln, err, errlen) ||
        get_int(req, "seed", INT64_MIN, INT64_MAX, &seed, err, errlen))
        return -1;
    sp->temperature = (float)t;
    sp->top_p = (float)tp;
    sp->min_p = (float)mp;
    sp->repeat_penalty = (float)rp;
    sp->presence_penalty = (float)pp;
    sp->frequency_penalty = (float)fp;
    sp->top_k = (int)tk;
    sp->penalty_last_n = (int)ln;
    if (has_seed) sp->seed = (uint64_t)seed;
    return 0;
}

static int read_stop(json_t *req, request *r, char *err, size_t errlen) {
    json_t *v = json_object_get(req, "stop");
    if (!v || json_is_null(v)) return 0;
    json_t *one[1] = { v };
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_array(v) && !json_is_string(v)) {
        set_err(err, errlen, "\"stop\" must be a string or an array of strings");
        return -1;
    }
    if (n > MAX_STOP) { set_err(err, errlen, "\"stop\": at most %d strings", MAX_STOP); return -1; }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : one[0];
        size_t len = json_is_string(e) ? json_string_length(e) : 0;
        if (!json_is_string(e) || len == 0 || len > MAX_STOP_LEN || memchr(json_string_value(e), 0, len)) {
            set_err(err, errlen, "\"stop\"[%zu] must be a non-empty string of at most %d bytes", i, MAX_STOP_LEN);
            return -1;
        }
        if (!(r->stop[r->n_stop] = strdup(json_string_value(e)))) { set_err(err, errlen, "out of memory"); return -1; }
        r->n_stop++;
        if (len > r->stop_max) r->stop_max = len;
    }
    return 0;
}

/* OpenAI's "logit_bias": {"<token id>": bias in [-100, 100]}, added to
 * the token's logit before sampling (and before any constraint's mask).
 * Room is kept for one more entry: the thought-channel ban. */
static int read_bias(json_t *req, request *r, int n_vocab, char *err, size_t errlen) {
    json_t *v = json_object_get(req, "logit_bias");
    size_t n = json_is_object(v) ? json_object_size(v) : 0;
    if (v && !json_is_null(v) && !json_is_object(v)) {
        set_err(err, errlen, "\"logit_bias\" must be an object of token id -> number");
        return -1;
    }
    if (n > MAX_BIAS) { set_err(err, errlen, "\"logit_bias\": at most %d tokens", MAX_BIAS); return -1; }
    r->bias_id = malloc((n + 1) * sizeof *r->bias_id);
    r->bias_v = malloc((n + 1) * sizeof *r->bias_v);
    if (!r->bias_id || !r->bias_v) { set_err(err, errlen, "out of memory"); return -1; }
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        char *end;
        long id = strtol(k, &end, 10);
        if (!*k || *end || id < 0 || id >= n_vocab) {
            set_err(err, errlen, "\"logit_bias\": key \"%.40s\" must be a token id in [0, %d)", k, n_vocab);
            return -1;
        }
        if (!json_is_number(x) || !(json_number_value(x) >= -100 && json_number_value(x) <= 100)) {
            set_err(err, errlen, "\"logit_bias\"[\"%.40s\"] must be a number in [-100, 100]", k);
            return -1;
        }
        r->bias_id[r->n_bias] = (int32_t)id;
        r->bias_v[r->n_bias++] = (float)json_number_value(x);
    }
    return 0;
}

/* Request text -> a request ready to queue, or NULL with *rc and err set. */
/* "logprobs": true and "top_logprobs" 0..20 (OpenAI's bound). */
static int read_logprobs(json_t *req, request *r, char *err, size_t errlen) {
    json_t *v = json_object_get(req, "logprobs");
    long long k = 0;
    if (v && !json_is_null(v) && !json_is_boolean(v)) { set_err(err, errlen, "\"logprobs\" must be a boolean"); return -1; }
    if (get_int(req, "top_logprobs", 0, 20, &k, err, errlen)) return -1;
    r->want_lp = json_is_true(v);
    r->top_lp = (int)k;
    if (k > 0 && !r->want_lp) { set_err(err, errlen, "\"top_logprobs\" needs \"logprobs\": true"); return -1; }
    if (r->want_lp && !(r->lp = json_array())) { set_err(err, errlen, "out of memory"); return -1; }
    return 0;
}

static request *make_request(gemma4c_scheduler *s, const char *text, size_t len, int *rc, char *err,
                             size_t errlen) {
    *rc = -1;
    json_error_t je;
    json_t *req = json_loadb(text, len, JSON_ALLOW_NUL, &je);
    if (!req) { set_err(err, errlen, "request: %d:%d: %s", je.line, je.column, je.text); return NULL; }
    request *r = NULL;
    char msg[600];
    if (!json_is_object(req)) { set_err(err, errlen, "request: must be a JSON object"); goto fail; }
    r = calloc(1, sizeof *r);
    if (!r) { set_err(err, errlen, "out of memory"); goto fail; }
    r->sp = gemma4c_sampler_default_params();
    long long n_max = 0, n1 = 1;
    if (read_sampling(req, &r->sp, msg, sizeof msg) || read_stop(req, r, msg, sizeof msg) ||
        read_bias(req, r, s->n_vocab, msg, sizeof msg) ||
        get_int(req, "max_tokens", 1, 1 << 30, &n_max, msg, sizeof msg) ||
        get_int(req, "max_completion_tokens", 1, 1 << 30, &n_max, msg, sizeof msg) ||
        get_int(req, "n", 1, 1, &n1, msg, sizeof msg) || read_logprobs(req, r, msg, sizeof msg)) {
        set_err(err, errlen, "request: %s", msg);
        goto fail;
    }
    json_t *mj = json_object_get(req, "model");
    if (mj && !json_is_null(mj) && !json_is_string(mj)) { set_err(err, errlen, "request: \"model\" must be a string"); goto fail; }
    r->model = strdup(json_is_string(mj) ? json_string_value(mj) : s->model_name);
    gemma4c_chat_options co = gemma4c_chat_default_options();
    co.add_generation_prompt = 1;
    co.openai_compat = s->p.openai_compat;
    /* reasoning_effort switches thinking unless the template kwargs do */
    json_t *re = json_object_get(req, "reasoning_effort"), *kw = json_object_get(req, "chat_template_kwargs");
    if (re && !json_is_null(re)) {
        if (!json_is_string(re)) { set_err(err, errlen, "request: \"reasoning_effort\" must be a string"); goto fail; }
        int explicit_kw = json_object_get(req, "enable_thinking") ||
                          (json_is_object(kw) && json_object_get(kw, "enable_thinking"));
        if (!explicit_kw) co.enable_thinking = strcmp(json_string_value(re), "none") != 0;
    }
    int family = s->p.family ? s->p.family : gemma4c_model_chat_family(s->m);
    size_t plen = 0;
    json_t *pj = json_object_get(req, "prompt");
    if (pj && !json_object_get(req, "messages")) {
        /* raw continuation (/v1/completions): BOS + the text, control-token
         * strings kept as text, no chat format, no parser, no constraint */
        if (!json_is_string(pj)) { set_err(err, errlen, "request: \"prompt\" must be a string"); goto fail; }
        r->raw = 1;
        r->n_prompt = gemma4c_tokenize(s->m, json_string_value(pj), json_string_length(pj), 1, 0, &r->ids, err,
                                       errlen);
    } else {
        char *prompt = g4_engine_render(family, req, &co, &plen, msg, sizeof msg);
        if (!prompt) { set_err(err, errlen, "chat format: %s", msg); goto fail; }
        r->in_reasoning = g4_engine_ends_in_thought(prompt, plen);
        int cfailed = 0;
        r->cons = g4_engine_request_constraint(s->m, req, r->in_reasoning ? 2 : strstr(prompt, G4_MK_THINK) ? 1 : 0,
                                               &cfailed, err, errlen);
        if (cfailed) { free(prompt); goto fail; }
        /* thinking off (no <|think|> in the system turn, the prompt not inside
         * a thought): the channel cannot open; the ban overrides any bias */
        if (!r->in_reasoning && !strstr(prompt, G4_MK_THINK) && s->tok_channel >= 0) {
            r->bias_id[r->n_bias] = s->tok_channel;
            r->bias_v[r->n_bias++] = -INFINITY;
        }
        r->n_prompt = gemma4c_tokenize(s->m, prompt, plen, 0, 1, &r->ids, err, errlen);
        free(prompt);
    }
    if (r->n_prompt < 0) goto fail;
    if (r->n_prompt >= s->n_ctx) {
        set_err(err, errlen, "the prompt has %d tokens; the context holds %d per request (prompt and answer)",
                r->n_prompt, s->n_ctx);
        *rc = GEMMA4C_ERR_CONTEXT_FULL;
        goto fail;
    }
    /* the answer may use what the context has left, as a session turn */
    r->n_max = s->n_ctx - r->n_prompt;
    if (s->p.n_predict > 0 && r->n_max > s->p.n_predict) r->n_max = s->p.n_predict;
    if (n_max > 0 && r->n_max > n_max) r->n_max = (int)n_max;
    if (!r->model) { set_err(err, errlen, "out of memory"); goto fail; }
    json_decref(req);
    r->seq = -1;
    return r;
fail:
    json_decref(req);
    request_free(r);
    return NULL;
}

int gemma4c_scheduler_submit(gemma4c_scheduler *s, const char *text, size_t len, gemma4c_event_fn fn, void *user,
                             uint64_t *id, char *err, size_t errlen) {
    int rc;
    request *r = make_request(s, text, len, &rc, err, errlen);
    pthread_mutex_lock(&s->mu);
    if (r && s->n_queued >= s->p.max_queue) {
        set_err(err, errlen, "the queue is full (%d requests waiting)", s->n_queued);
        request_free(r);
        r = NULL;
        rc = GEMMA4C_ERR_QUEUE_FULL;
    }
    if (!r) {
        s->st.rejected++;
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    r->id = s->next_id++;
    r->fn = fn;
    r->user = user;
    if (s->qtail) s->qtail->next = r;
    else s->qhead = r;
    s->qtail = r;
    s->n_queued++;
    s->st.submitted++;
    if (id) *id = r->id;
    s->woken = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int gemma4c_scheduler_cancel(gemma4c_scheduler *s, uint64_t id) {
    int rc = -1;
    pthread_mutex_lock(&s->mu);
    for (request *r = s->qhead; r && rc; r = r->next)
        if (r->id == id) { r->cancel = 1; rc = 0; }
    for (int i = 0; i < s->p.n_parallel && rc; i++)
        if (s->slot[i] && s->slot[i]->id == id) { s->slot[i]->cancel = 1; rc = 0; }
    if (!rc) { s->woken = 1; pthread_cond_broadcast(&s->cv); }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int gemma4c_scheduler_wait(gemma4c_scheduler *s, int timeout_ms) {
    pthread_mutex_lock(&s->mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    if (timeout_ms > 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    }
    while (!s->woken && s->n_queued + s->n_active == 0 && timeout_ms != 0) {
        int e = timeout_ms < 0 ? pthread_cond_wait(&s->cv, &s->mu) : pthread_cond_timedwait(&s->cv, &s->mu, &until);
        if (e == ETIMEDOUT) break;
    }
    s->woken = 0;
    int n = s->n_queued + s->n_active;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void gemma4c_scheduler_wake(gemma4c_scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->woken = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void gemma4c_scheduler_stats_get(gemma4c_scheduler *s, gemma4c_scheduler_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->active = s->n_active;
    out->queued = s->n_queued;
    pthread_mutex_unlock(&s->mu);
}

/* ---- output ------------------------------------------------------------------ */

static void send_delta(request *r, const gemma4c_delta *d) {
    gemma4c_event e = { .kind = GEMMA4C_EVENT_DELTA, .id = r->id, .delta = d };
    if (r->fn) r->fn(r->user, &e);
}

/* The held text deltas as one event. */
static void flush_deltas(request *r) {
    if (!r->pend_len) return;
    gemma4c_delta d = { .kind = r->pend_kind, .text = r->pend, .len = r->pend_len };
    r->pend_len = 0;
    send_delta(r, &d);
}

/* The parser can split one token's text into several deltas (it holds a
 * '<' until it knows no marker starts there): consecutive text deltas of
 * one kind are joined and sent once per token (flush_deltas at the end of
 * advance, before the final event and before an error), so that a stream
 * costs one event, one wake of its HTTP thread and one write per token. */
static void on_delta(void *user, const gemma4c_delta *d) {
    request *r = user;
    int text = (d->kind == GEMMA4C_DELTA_CONTENT || d->kind == GEMMA4C_DELTA_REASONING) && d->len > 0;
    if (r->pend_len && (!text || d->kind != r->pend_kind)) flush_deltas(r);
    if (!text) { send_delta(r, d); return; }
    if (r->pend_len + d->len > r->pend_cap) {
        size_t cap = (r->pend_len + d->len) * 2 + 64;
        char *p = realloc(r->pend, cap);
        if (!p) { flush_deltas(r); send_delta(r, d); return; }
        r->pend = p;
        r->pend_cap = cap;
    }
    memcpy(r->pend + r->pend_len, d->text, d->len);
    r->pend_len += d->len;
    r->pend_kind = d->kind;
}

/* Length of the valid UTF-8 character at p (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    size_t k = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!k || k > n) return 0;
    for (size_t i = 1; i < k; i++) if ((p[i] & 0xC0) != 0x80) return 0;
    if (k == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))) return 0; /* overlong, surrogate */
    if (k == 4 && ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))) return 0;
    return k;
}

/* Raw mode: the text is all content, kept whole and streamed as is (the
 * detokenizer gives whole characters). */
static int feed_raw(request *r, const char *p, size_t n) {
    if (!n) return 0;
    if (r->text_len + n + 1 > r->text_cap) {
        size_t cap = (r->text_len + n + 1) * 2;
        char *t = realloc(r->text, cap);
        if (!t) { r->failed = 1; return -1; }
        r->text = t;
        r->text_cap = cap;
    }
    memcpy(r->text + r->text_len, p, n);
    r->text_len += n;
    r->text[r->text_len] = 0;
    gemma4c_delta d = { .kind = GEMMA4C_DELTA_CONTENT, .text = p, .len = n };
    on_delta(r, &d);
    return 0;
}

/* To the parser (or the raw text), with bytes that are not UTF-8 (a model can emit any byte
 * token) as U+FFFD: answers and deltas must stay valid JSON strings. */
/* The parser's input, or raw mode's text. */
static int sink(request *r, const char *p, size_t n) {
    return r->raw ? feed_raw(r, p, n) : gemma4c_chat_parser_feed(r->parser, p, n);
}

static int feed(request *r, const char *p, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        size_t k = utf8_len((const unsigned char *)p + i, n - i);
        if (k) { i += k; continue; }
        if (sink(r, p + run, i - run) || sink(r, "\xEF\xBF\xBD", 3)) { r->failed = 1; return -1; }
        run = ++i;
    }
    if (i > run && sink(r, p + run, i - run)) { r->failed = 1; return -1; }
    return 0;
}

/* Text of a new token, through the stop strings to the parser. Returns 1 if
 * a stop string ended the answer (the text before it is kept). */
static int push_text(request *r, const char *p, size_t n) {
    if (r->stopped) return 1;  /* nothing after a stop string */
    if (!r->n_stop) { feed(r, p, n); return 0; }
    if (r->hold_len + n + 1 > r->hold_cap) {
        size_t cap = (r->hold_len + n + 1) * 2;
        char *h = realloc(r->hold, cap);
        if (!h) { r->failed = 1; return 0; }
        r->hold = h;
        r->hold_cap = cap;
    }
    memcpy(r->hold + r->hold_len, p, n);
    r->hold_len += n;
    size_t cut = r->hold_len;
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        for (size_t k = 0; k + sl <= r->hold_len && k < cut; k++)
            if (!memcmp(r->hold + k, r->stop[i], sl)) { cut = k; break; }
    }
    if (cut < r->hold_len) {
        feed(r, r->hold, cut);
        r->hold_len = 0;
        r->stopped = 1;
        return 1;
    }
    /* keep what could still begin a stop string, without splitting a UTF-8
     * character (deltas stay whole characters) */
    size_t keep = r->stop_max - 1 < r->hold_len ? r->stop_max - 1 : r->hold_len;
    size_t out = r->hold_len - keep;
    while (out > 0 && ((unsigned char)r->hold[out] & 0xC0) == 0x80) out--;
    feed(r, r->hold, out);
    memmove(r->hold, r->hold + out, r->hold_len - out);
    r->hold_len -= out;
    return 0;
}

static const char *finish_name(int finish, int tool_calls) {
    switch (finish) {
    case GEMMA4C_FINISH_LENGTH: return "length";
    case GEMMA4C_FINISH_CANCEL: return "cancelled";
    default: return tool_calls ? "tool_calls" : "stop";
    }
}

static void emit_error(request *r, const char *msg) {
    flush_deltas(r);
    gemma4c_event e = { .kind = GEMMA4C_EVENT_ERROR, .id = r->id, .error = msg };
    if (r->fn) r->fn(r->user, &e);
}

/* The request ended: flush its text, send its chat.completion. Returns 0 or
 * -1 (an ERROR event was sent). */
static int complete(request *r, int finish) {
    size_t len;
    const char *rest = r->dt ? gemma4c_detok_flush(r->dt, &len) : NULL;
    if (rest && len) push_text(r, rest, len);
    if (r->hold_len) feed(r, r->hold, r->hold_len);
    r->hold_len = 0;
    if (!r->failed && r->parser && gemma4c_chat_parser_finish(r->parser)) r->failed = 1;
    char *msg = !r->failed && r->parser ? gemma4c_chat_parser_message(r->parser, 0) : NULL;
    json_t *mj = msg ? json_loads(msg, JSON_ALLOW_NUL, NULL) : NULL;
    if (r->raw && !r->failed)
            mj = json_pack("{s:s,s:s%}", "role", "assistant", "content", r->text ? r->text : "", r->text_len);
    else if (!r->parser && !r->failed) mj = json_pack("{s:s,s:n}", "role", "assistant", "content");
    free(msg);
    if (!mj) { emit_error(r, "cannot encode the answer (out of memory or invalid UTF-8)"); return -1; }
    int tools = json_array_size(json_object_get(mj, "tool_calls")) > 0;
    char idbuf[48];
    snprintf(idbuf, sizeof idbuf, "chatcmpl-%llu", (unsigned long long)r->id);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:s}],s:{s:i,s:i,s:i,s:{s:i}}}", "id", idbuf, "object",
                          "chat.completion", "created", (json_int_t)time(NULL), "model", r->model, "choices",
                          "index", 0, "message", mj, "finish_reason", finish_name(finish, tools), "usage",
                          "prompt_tokens", r->n_prompt, "completion_tokens", r->n_gen, "total_tokens",
                          r->n_prompt + r->n_gen, "prompt_tokens_details", "cached_tokens", r->n_cached);
    if (o && r->want_lp)
        json_object_set_new(json_array_get(json_object_get(o, "choices"), 0), "logprobs",
                            json_pack("{s:O}", "content", r->lp));
    else if (o) json_object_set_new(json_array_get(json_object_get(o, "choices"), 0), "logprobs", json_null());
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) { emit_error(r, "out of memory"); return -1; }
    flush_deltas(r);
    gemma4c_event e = { .kind = GEMMA4C_EVENT_DONE, .id = r->id, .json = text, .len = strlen(text),
                        .finish = finish };
    if (r->fn) r->fn(r->user, &e);
    free(text);
    return 0;
}

/* ---- the step ---------------------------------------------------------------- */

static int pages_for(const gemma4c_scheduler *s, const request *r) {
    return s->page > 0 ? (r->n_prompt + r->n_max + s->page - 1) / s->page : 0;
}

/* Take the request off sequence seq (under the lock), free its KV. */
static void release(gemma4c_scheduler *s, int seq) {
    request *r = s->slot[seq];
    gemma4c_seq_truncate(s->c, seq, 0);
    pthread_mutex_lock(&s->mu);
    s->slot[seq] = NULL;
    s->n_active--;
    s->pages_reserved -= r->pages;
    pthread_mutex_unlock(&s->mu);
    request_free(r);
}

static void finish_req(gemma4c_scheduler *s, int seq, int finish) {
    request *r = s->slot[seq];
    int rc = complete(r, finish);
    pthread_mutex_lock(&s->mu);
    if (rc) s->st.failed++;
    else if (finish == GEMMA4C_FINISH_CANCEL) s->st.cancelled++;
    else s->st.completed++;
    pthread_mutex_unlock(&s->mu);
    release(s, seq);
}

/* Start r on sequence seq: continue the longest cached prefix, if any. */
static int start(gemma4c_scheduler *s, request *r, int seq, char *err, size_t errlen) {
    r->seq = seq;
    r->state = ST_PREFILL;
    r->batch_idx = -1;
    r->smp = gemma4c_sampler_new(&r->sp);
    r->dt = gemma4c_detok_new(s->m, 1);
    gemma4c_parse_options po = { 0 };
    po.in_reasoning = r->in_reasoning;
    r->parser = r->raw ? NULL : gemma4c_chat_parser_new(&po, on_delta, r);
    if (!r->smp || !r->dt || (!r->raw && !r->parser)) { set_err(err, errlen, "out of memory"); return -1; }
    int reused = 0;
#if G4_SCHED_PREFIX
    if (s->p.n_prefix > 0) {
        reused = gemma4c_prefix_load(s->c, seq, r->ids, r->n_prompt, err, errlen);
        if (reused < 0) return -1;
    } else
#endif
        gemma4c_seq_truncate(s->c, seq, 0);
    r->n_done = r->n_cached = reused;
    return 0;
}

/* Move cancelled and admissible requests; collect cancelled queued ones in
 * *gone. Under the lock. */
static void admit(gemma4c_scheduler *s, request **gone, request **admitted) {
    request **pp = &s->qhead, *prev = NULL;
    while (*pp) {
        request *r = *pp;
        if (r->cancel) {
            *pp = r->next;
            if (s->qtail == r) s->qtail = prev;
            s->n_queued--;
            r->next = *gone;
            *gone = r;
            continue;
        }
        prev = r;
        pp = &r->next;
    }
    /* FIFO: the head waits for room rather than being overtaken */
    while (s->qhead) {
        request *r = s->qhead;
        int seq = -1;
        for (int i = 0; i < s->p.n_parallel && seq < 0; i++)
            if (!s->slot[i]) seq = i;
        int pages = pages_for(s, r);
        if (seq < 0 || (s->n_active > 0 && s->pages_reserved + pages > s->pages_total)) break;
        s->qhead = r->next;
        if (!s->qhead) s->qtail = NULL;
        s->n_queued--;
        r->next = NULL;
        r->pages = pages;
        r->seq = seq;
        s->pages_reserved += pages;
        s->slot[seq] = r;
        s->n_active++;
        r->next = *admitted;
        *admitted = r;
    }
}

/* A token's text as a JSON string (bytes that are not UTF-8 as U+FFFD, as
 * in the answer) and its raw bytes as an array of integers. */
static json_t *token_json(gemma4c_scheduler *s, int32_t t, json_t **bytes) {
    char *text = NULL, err[128];
    size_t len = 0;
    *bytes = json_array();
    if (gemma4c_tokenizer_decode(gemma4c_model_tokenizer(s->m), &t, 1, 1, &text, &len, err, sizeof err)) len = 0;
    char *fix = malloc(len * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; fix && i < len;) {
        size_t k = utf8_len((const unsigned char *)text + i, len - i);
        if (k) { memcpy(fix + o, text + i, k); o += k; i += k; }
        else { memcpy(fix + o, "\xEF\xBF\xBD", 3); o += 3; i++; }
    }
    for (size_t i = 0; *bytes && i < len; i++) json_array_append_new(*bytes, json_integer((unsigned char)text[i]));
    json_t *str = fix ? json_stringn(fix, o) : NULL;
    free(fix);
    free(text);
    return str;
}

/* One logprobs.content entry for token t: the log-softmax of logits (the
 * ones the sampler drew from: logit_bias and constraint masks applied,
 * before penalties and temperature) at t and at the k most likely tokens. */
static json_t *logprob_entry(gemma4c_scheduler *s, const float *logits, int V, int32_t t, int k) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) if (logits[i] > -INFINITY) sum += exp((double)(logits[i] - mx));
    double lse = (double)mx + log(sum > 0 ? sum : 1);
    int top[20], n = 0;  /* insertion into the k best, O(V k) with k <= 20 */
    for (int i = 0; i < V && k > 0; i++) {
        if (!(logits[i] > -INFINITY)) continue;
        if (n == k && logits[i] <= logits[top[n - 1]]) continue;
        int j = n < k ? n++ : n - 1;
        while (j > 0 && logits[top[j - 1]] < logits[i]) { top[j] = top[j - 1]; j--; }
        top[j] = i;
    }
    json_t *b, *tops = json_array();
    json_t *tok = token_json(s, t, &b);
    double lp = logits[t] > -INFINITY ? (double)logits[t] - lse : -9999.0;  /* OpenAI's floor for "impossible" */
    json_t *e = json_pack("{s:o?,s:f,s:o?,s:o?}", "token", tok, "logprob", lp, "bytes", b, "top_logprobs", tops);
    for (int i = 0; e && i < n; i++) {
        json_t *tb, *tt = token_json(s, top[i], &tb);
        json_array_append_new(tops, json_pack("{s:o?,s:f,s:o?}", "token", tt, "logprob",
                                              (double)logits[top[i]] - lse, "bytes", tb));
    }
    return e;
}

/* Sample the next token of the request on seq from logits. Returns -1 to
 * go on, else how it ended (enum gemma4c_finish; FINISH_ERROR: out of
 * memory). Nothing is released here: that would drop the step's logits. */
static int advance_tok(gemma4c_scheduler *s, int seq, const float *logits, int32_t draft, int *accepted) {
    request *r = s->slot[seq];
    int V = gemma4c_n_vocab(s->c);
    /* a constraint (JSON schema, tool calls) masks a copy of the logits; it
     * allows an end of turn only where the value is complete */
    /* a bias alone goes to the sampler beside the logits (no 1 MB copy per
     * token); logprobs and drafts read the biased logits, so they copy */
    int sparse = !r->cons && r->n_bias && !r->want_lp && draft < 0;
    if (r->cons || (r->n_bias && !sparse)) {
        memcpy(s->masked, logits, (size_t)V * sizeof *logits);
        for (int i = 0; i < r->n_bias; i++)
            if (r->bias_id[i] < V) s->masked[r->bias_id[i]] += r->bias_v[i];
        if (r->cons && gemma4c_constraint_apply(r->cons, s->masked, V) <= 0) return GEMMA4C_FINISH_ERROR;
        logits = s->masked;
    }
    *accepted = 0;
    int32_t t = draft >= 0 ? gemma4c_sampler_sample_draft(r->smp, logits, V, draft, NULL, accepted)
                : sparse   ? gemma4c_sampler_sample_biased(r->smp, logits, V, r->bias_id, r->bias_v, r->n_bias)
                           : gemma4c_sampler_sample(r->smp, logits, V);
    if (t < 0) return GEMMA4C_FINISH_ERROR;
    gemma4c_sampler_accept(r->smp, t);
    if (r->cons && gemma4c_constraint_accept(r->cons, t)) return GEMMA4C_FINISH_ERROR;
    r->n_gen++;
    if (gemma4c_is_eog(s->m, t)) return GEMMA4C_FINISH_STOP;
    if (r->want_lp) { /* before the token's text: a stream sends both in one chunk */
        json_t *e = logprob_entry(s, logits, V, t, r->top_lp);
        char *txt = e ? json_dumps(e, JSON_COMPACT) : NULL;
        if (!e || !txt || json_array_append_new(r->lp, e)) { free(txt); return GEMMA4C_FINISH_ERROR; }
        gemma4c_event ev = { .kind = GEMMA4C_EVENT_LOGPROB, .id = r->id, .json = txt, .len = strlen(txt) };
        if (r->fn) r->fn(r->user, &ev);
        free(txt);
    }
    size_t len;
    const char *piece = gemma4c_detok_push(r->dt, t, &len);
    int stopped = push_text(r, piece, len);
    if (r->failed) return GEMMA4C_FINISH_ERROR;
    if (stopped || (r->parser && gemma4c_chat_parser_stopped(r->parser))) return GEMMA4C_FINISH_STOP;
    if (r->n_gen >= r->n_max) return GEMMA4C_FINISH_LENGTH;
    r->next_tok = t;
    r->state = ST_DECODE;
    return -1;
}

static int advance(gemma4c_scheduler *s, int seq, const float *logits, int32_t draft, int *accepted) {
    int rc = advance_tok(s, seq, logits, draft, accepted);
    flush_deltas(s->slot[seq]);
    return rc;
}

static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

int gemma4c_scheduler_step(gemma4c_scheduler *s) {
    double t_step = mono_s(), t_fwd = 0;
    /* cancelled while running: the answer so far (first, so that their
     * sequences take waiting requests in this step) */
    for (int i = 0; i < s->p.n_parallel; i++) {
        request *r = s->slot[i];
        if (!r) continue;
        pthread_mutex_lock(&s->mu);
        int c = r->cancel;
        pthread_mutex_unlock(&s->mu);
        if (c) finish_req(s, i, GEMMA4C_FINISH_CANCEL);
    }
    request *gone = NULL, *admitted = NULL;
    pthread_mutex_lock(&s->mu);
    admit(s, &gone, &admitted);
    pthread_mutex_unlock(&s->mu);
    char err[600];
    /* cancelled while queued: nothing was generated */
    for (request *r = gone, *n; r; r = n) {
        n = r->next;
        complete(r, GEMMA4C_FINISH_CANCEL);
        pthread_mutex_lock(&s->mu);
        s->st.cancelled++;
        pthread_mutex_unlock(&s->mu);
        request_free(r);
    }
    for (request *r = admitted, *n; r; r = n) {
        n = r->next;
        r->next = NULL;
        if (start(s, r, r->seq, err, sizeof err)) {
            emit_error(r, err);
            pthread_mutex_lock(&s->mu);
            s->st.failed++;
            pthread_mutex_unlock(&s->mu);
            release(s, r->seq);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        s->st.prompt_tokens += (uint64_t)r->n_prompt;
        s->st.cached_tokens += (uint64_t)r->n_cached;
        pthread_mutex_unlock(&s->mu);
    }
    /* the batch: one token of each decoding request, then prompt chunks in
     * sequence order (admission order within a step) */
    int n = 0, budget = s->p.n_batch, spare = budget;
    for (int i = 0; i < s->p.n_parallel; i++) {
        request *r = s->slot[i];
        if (r) r->n_draft = 0;
        if (r && r->state == ST_DECODE) spare--;        /* every decode token goes in first */
    }
    for (int i = 0; i < s->p.n_parallel; i++) {
        request *r = s->slot[i];
        if (!r) continue;
        r->batch_idx = -1;
        if (r->state != ST_DECODE) continue;
        s->btok[n] = r->next_tok;
        s->bseq[n] = i;
        s->bkeep[n] = 1;
        r->batch_idx = n++;
        /* drafts: no more than it may still hand on after next_tok's successor */
        int lim = s->dmax < spare ? s->dmax : spare;
        if (lim > r->n_max - r->n_gen - 1) lim = r->n_max - r->n_gen - 1;
        if (lim <= 0) continue;
        int nh;
        const int32_t *toks = gemma4c_seq_tokens(s->c, i, &nh);
        memcpy(s->hist, toks, (size_t)nh * sizeof *toks);
        s->hist[nh++] = r->next_tok;
        int k = g4_draft_ngram(s->hist, nh, s->ngram, r->draft, lim);
        for (int j = 0; j < k; j++) {
            s->btok[n] = r->draft[j];
            s->bseq[n] = i;
            s->bkeep[n++] = 1;
        }
        r->n_draft = k;
        spare -= k;
    }
    int prefilled[4096]; /* n_parallel <= 4096 */
    int n_pre = 0;
    for (int i = 0; i < s->p.n_parallel && n < budget; i++) {
        request *r = s->slot[i];
        if (!r || r->state != ST_PREFILL) continue;
        int k = r->n_prompt - r->n_done;
        if (k > budget - n) k = budget - n;
        for (int j = 0; j < k; j++) {
            s->btok[n + j] = r->ids[r->n_done + j];
            s->bseq[n + j] = i;
            s->bkeep[n + j] = 0;
        }
        r->n_done += k;
        n += k;
        if (r->n_done == r->n_prompt) {
            s->bkeep[n - 1] = 1;
            r->batch_idx = n - 1;
        }
        prefilled[n_pre++] = i;
    }
    if (n > 0) {
        gemma4c_batch b = { .n_tokens = n, .token = s->btok, .seq = s->bseq, .logits = s->bkeep };
        t_fwd = mono_s();
        int rc = gemma4c_decode(s->c, &b, err, sizeof err);
        t_fwd = mono_s() - t_fwd;
        pthread_mutex_lock(&s->mu);
        s->st.steps++;
        s->st.batch_tokens += (uint64_t)n;
        pthread_mutex_unlock(&s->mu);
        if (rc) {
            /* which tokens went in is unknown: fail every request in the batch */
            for (int i = 0; i < s->p.n_parallel; i++) {
                request *r = s->slot[i];
                int in_batch = r && r->state == ST_DECODE;
                for (int j = 0; j < n_pre && r && !in_batch; j++) in_batch = prefilled[j] == i;
                if (!in_batch) continue;
                emit_error(r, err);
                pthread_mutex_lock(&s->mu);
                s->st.failed++;
                pthread_mutex_unlock(&s->mu);
                release(s, i);
            }
            return -1;
        }
        int ended[4096], trunc[4096];
        for (int i = 0; i < s->p.n_parallel; i++) {
            request *r = s->slot[i];
            ended[i] = trunc[i] = -1;
            if (!r || r->batch_idx < 0) continue;
#if G4_SCHED_PREFIX
            /* the prompt is in: later requests sharing it continue from here */
            if (r->state == ST_PREFILL && s->p.n_prefix > 0) gemma4c_prefix_store(s->c, i, NULL, 0);
#endif
            /* the walk over next_tok's row and its drafts' rows: on while the
             * sampler keeps the draft; the first other token ends it */
            int j = 0, acc = 0, kept = 0;
            for (;; j++) {
                int32_t d = j < r->n_draft ? r->draft[j] : -1;
                ended[i] = advance(s, i, gemma4c_logits_ith(s->c, r->batch_idx + j), d, &acc);
                kept += acc;
                pthread_mutex_lock(&s->mu);
                s->st.completion_tokens++;
                pthread_mutex_unlock(&s->mu);
                if (ended[i] >= 0 || !acc) break;
            }
            if (r->n_draft) {
                pthread_mutex_lock(&s->mu);
                s->st.drafted += (uint64_t)r->n_draft;
                s->st.draft_accepted += (uint64_t)kept;
                pthread_mutex_unlock(&s->mu);
                /* the cache keeps next_tok and the j drafts walked past; the
                 * token handed on last is the next step's next_tok */
                int past = gemma4c_seq_n_past(s->c, i), keep = past - r->n_draft + j;
                if (ended[i] < 0 && keep < past) trunc[i] = keep;
            }
        }
        /* after every walk: a truncation drops the step's logits */
        for (int i = 0; i < s->p.n_parallel; i++)
            if (trunc[i] >= 0 && gemma4c_seq_truncate(s->c, i, trunc[i])) ended[i] = GEMMA4C_FINISH_ERROR;
        for (int i = 0; i < s->p.n_parallel; i++) {
            if (ended[i] < 0) continue;
            if (ended[i] != GEMMA4C_FINISH_ERROR) { finish_req(s, i, ended[i]); continue; }
            emit_error(s->slot[i], "out of memory");
            pthread_mutex_lock(&s->mu);
            s->st.failed++;
            pthread_mutex_unlock(&s->mu);
            release(s, i);
        }
    }
    double t_end = mono_s();
    pthread_mutex_lock(&s->mu);
    if (n > 0 && n_pre == 0) {
        s->st.decode_steps++;
        s->st.decode_forward_s += t_fwd;
        s->st.decode_step_s += t_end - t_step;
    }
#if G4_SCHED_PREFIX
    if (s->p.n_prefix > 0) {
        gemma4c_prefix_stats ps;
        gemma4c_prefix_stats_get(s->c, &ps);
        s->st.prefix_lookups = ps.lookups;
        s->st.prefix_hits = ps.hits;
    }
#endif
    int left = s->n_queued + s->n_active;
    pthread_mutex_unlock(&s->mu);
    return left;
}
