/* The OpenAI-compatible API (/v1/chat/completions, /v1/completions,
 * /v1/models) and the utility routes (/health, /metrics, /tokenize,
 * /detokenize, /apply-template). Chat requests go to the scheduler as they
 * came (it reads the OpenAI fields); its chat.completion is the
 * non-streaming answer, its events become chat.completion.chunk events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convert.h"
#include "server.h"

int check_model(http_req *r, json_t *req, int *ret) {
    srv *S = r->S;
    json_t *m = json_object_get(req, "model");
    if (!m || json_is_null(m)) return 0;
    if (!json_is_string(m)) {
        *ret = reply_error(r, 400, "invalid_request_error", "model", NULL, "\"model\" must be a string");
        return -1;
    }
    const char *n = json_string_value(m);
    if (!strcmp(n, S->model_id) || !strcmp(n, S->model_file)) return 0;
    *ret = reply_error(r, 404, "invalid_request_error", "model", "model_not_found",
                       "the model '%s' does not exist; this server has '%s'", n, S->model_id);
    return -1;
}

/* Count the answer's tokens for the log. */
static void note_usage(http_req *r, json_t *done) {
    json_t *u = json_object_get(done, "usage");
    r->tokens_in = (long)json_integer_value(json_object_get(u, "prompt_tokens"));
    r->tokens_out = (long)json_integer_value(json_object_get(u, "completion_tokens"));
}

/* Non-streaming: wait for the final event (cancelling if the client
 * leaves). Returns the DONE json (caller decrefs) or NULL after replying. */
json_t *wait_done(http_req *r, job *j, int *ret) {
    int cancelled = 0;
    for (;;) {
        job_ev *e = job_next(j, 500);
        if (!e) {
            if (!cancelled && client_gone(r)) {
                gemma4c_scheduler_cancel(r->S->sched, j->id);
                pthread_mutex_lock(&j->mu);
                j->cancel = 1;
                pthread_mutex_unlock(&j->mu);
                cancelled = 1;
            }
            continue;
        }
        if (e->kind != GEMMA4C_EVENT_DONE && e->kind != GEMMA4C_EVENT_ERROR) { job_ev_free(e); continue; }
        json_t *d = e->kind == GEMMA4C_EVENT_DONE ? json_loadb(e->text, e->len, JSON_ALLOW_NUL, NULL) : NULL;
        if (!d) *ret = reply_error(r, 500, "server_error", NULL, NULL, "%s", e->kind == GEMMA4C_EVENT_ERROR ? e->text : "bad result");
        job_ev_free(e);
        if (d) note_usage(r, d);
        return d;
    }
}

/* ---- logprobs ---------------------------------------------------------------------- */

/* The legacy /v1/completions shape of logprobs.content entries:
 * {"tokens","token_logprobs","top_logprobs":[{token: logprob}],"text_offset"};
 * *off counts characters of the completion text before the entries. */
static json_t *legacy_logprobs(json_t *content, long *off) {
    json_t *tk = json_array(), *tl = json_array(), *tp = json_array(), *to = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(content, i, e) {
        json_t *tok = json_object_get(e, "token"), *alt = json_object_get(e, "top_logprobs"), *m = json_object();
        const char *t = json_is_string(tok) ? json_string_value(tok) : "";
        if (json_is_string(tok)) json_array_append(tk, tok);
        else json_array_append_new(tk, json_string(""));
        json_array_append(tl, json_object_get(e, "logprob"));
        size_t k;
        json_t *a;
        json_array_foreach(alt, k, a) {
            json_t *at = json_object_get(a, "token");
            /* distinct tokens can print alike (two byte tokens as U+FFFD): the
             * alternatives come best first, so a key keeps its best logprob */
            if (json_is_string(at) && !json_object_get(m, json_string_value(at)))
                json_object_set(m, json_string_value(at), json_object_get(a, "logprob"));
        }
        json_array_append_new(tp, m);
        json_array_append_new(to, json_integer(*off));
        for (const unsigned char *p = (const unsigned char *)t; *p; p++) *off += (*p & 0xC0) != 0x80;
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tk, "token_logprobs", tl, "top_logprobs", tp, "text_offset", to);
}

/* ---- streams ---------------------------------------------------------------------- */

/* One streamed request: its n choices are n scheduler jobs, read in turn;
 * each chunk carries its choice's index. */
typedef struct chat_stream {
    job *j[SRV_MAX_N];
    int n, n_done, done[SRV_MAX_N];
    int completion;        /* /v1/completions: text_completion chunks */
    int usage, started, next;
    char id[48];
    json_int_t created;
    char *model;
    json_t *pend[SRV_MAX_N]; /* logprobs entries not yet sent, or NULL */
    long off[SRV_MAX_N];     /* legacy text_offset */
    json_int_t prompt_tokens, completion_tokens, cached;
} chat_stream;

static void cs_free(void *p) {
    chat_stream *c = p;
    for (int i = 0; i < c->n; i++) json_decref(c->pend[i]);
    free(c->model);
    free(c);
}

/* One chunk of choice i: delta (chat) or text (completion), finish_reason or null. */
static json_t *chunk(chat_stream *c, int i, json_t *delta, const char *text, size_t tlen, const char *finish) {
    json_t *ch = c->completion ? json_pack("{s:i,s:s%,s:n}", "index", i, "text", text ? text : "", tlen, "logprobs")
                               : json_pack("{s:i,s:o,s:n}", "index", i, "delta", delta ? delta : json_object(), "logprobs");
    if (!ch) return NULL;
    if (c->pend[i] && json_array_size(c->pend[i])) { /* the tokens since the last chunk */
        if (c->completion) {
            json_object_set_new(ch, "logprobs", legacy_logprobs(c->pend[i], &c->off[i]));
            json_array_clear(c->pend[i]);
        } else { /* the array goes into the chunk; a new one collects the next tokens */
            json_object_set_new(ch, "logprobs", json_pack("{s:o}", "content", c->pend[i]));
            c->pend[i] = json_array();
        }
    }
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    return json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", c->id, "object",
                     c->completion ? "text_completion" : "chat.completion.chunk", "created", c->created, "model",
                     c->model, "choices", ch);
}

static int cs_fill(void *ctx, http_req *r, sbuf *out) {
    chat_stream *c = ctx;
    if (!c->started && !c->completion) { /* OpenAI opens each choice with the role */
        c->started = 1;
        for (int i = 0; i < c->n; i++)
            sbuf_sse(out, chunk(c, i, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL, 0, NULL));
        return 0;
    }
    /* the next choice still running, in turn (one waits long, several briefly) */
    int i = c->next;
    while (c->done[i]) i = (i + 1) % c->n;
    c->next = (i + 1) % c->n;
    job_ev *e = job_next(c->j[i], c->n - c->n_done > 1 ? 20 : 1000);
    if (!e) return 0;
    int end = 0;
    if (e->kind == GEMMA4C_EVENT_LOGPROB) {
        if (!c->pend[i]) c->pend[i] = json_array();
        json_array_append_new(c->pend[i], json_loadb(e->text, e->len, 0, NULL));
    } else if (e->kind == GEMMA4C_EVENT_DELTA) {
        json_t *d = NULL;
        if (c->completion) {
            if (e->dkind != GEMMA4C_DELTA_TOOL_CALL) sbuf_sse(out, chunk(c, i, NULL, e->text, e->len, NULL));
        } else if (e->dkind == GEMMA4C_DELTA_TOOL_CALL) {
            json_t *args = json_stringn(e->text, e->len);
            d = json_pack("{s:[{s:i,s:s,s:s,s:{s:s,s:o}}]}", "tool_calls", "index", e->index, "id", e->call_id, "type",
                          "function", "function", "name", e->name, "arguments", args);
        } else {
            d = json_pack("{s:s%}", e->dkind == GEMMA4C_DELTA_REASONING ? "reasoning_content" : "content", e->text, e->len);
        }
        if (d) sbuf_sse(out, chunk(c, i, d, NULL, 0, NULL));
    } else if (e->kind == GEMMA4C_EVENT_DONE) {
        json_t *done = json_loadb(e->text, e->len, JSON_ALLOW_NUL, NULL);
        json_t *ch0 = json_array_get(json_object_get(done, "choices"), 0), *u = json_object_get(done, "usage");
        const char *fin = json_string_value(json_object_get(ch0, "finish_reason"));
        sbuf_sse(out, chunk(c, i, NULL, "", 0, fin ? fin : "stop"));
        /* usage: the prompt once, every choice's tokens */
        c->prompt_tokens = json_integer_value(json_object_get(u, "prompt_tokens"));
        c->cached = json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens"));
        c->completion_tokens += json_integer_value(json_object_get(u, "completion_tokens"));
        json_decref(done);
        c->done[i] = 1;
        if (++c->n_done == c->n) {
            r->tokens_in = (long)c->prompt_tokens;
            r->tokens_out = (long)c->completion_tokens;
            if (c->usage) { /* OpenAI: a last chunk with no choices and the usage */
                json_t *uo = json_pack("{s:s,s:s,s:I,s:s,s:[],s:{s:I,s:I,s:I,s:{s:I}}}", "id", c->id, "object",
                                       c->completion ? "text_completion" : "chat.completion.chunk", "created",
                                       c->created, "model", c->model, "choices", "usage", "prompt_tokens",
                                       c->prompt_tokens, "completion_tokens", c->completion_tokens, "total_tokens",
                                       c->prompt_tokens + c->completion_tokens, "prompt_tokens_details",
                                       "cached_tokens", c->cached);
                sbuf_sse(out, uo);
            }
            end = 1;
        }
    } else {
        sbuf_sse(out, json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", e->text, "type", "server_error", "param",
                                "code"));
        end = 1;
    }
    job_ev_free(e);
    if (end) sbuf_add(out, "data: [DONE]\n\n", 14);
    return end;
}

static int start_stream(http_req *r, job **j, int n, json_t *req, int completion, int usage) {
    chat_stream *c = calloc(1, sizeof *c);
    json_t *m = json_object_get(req, "model");
    if (!c || !(c->model = strdup(json_is_string(m) ? json_string_value(m) : r->S->model_id))) {
        free(c);
        return reply_error(r, 500, "server_error", NULL, NULL, "out of memory");
    }
    memcpy(c->j, j, (size_t)n * sizeof *j);
    c->n = n;
    c->completion = completion;
    c->usage = usage;
    c->created = (json_int_t)time(NULL);
    snprintf(c->id, sizeof c->id, "%s-%llu", completion ? "cmpl" : "chatcmpl", (unsigned long long)j[0]->id);
    return reply_stream(r, cs_fill, c, cs_free);
}

/* ---- endpoints ------------------------------------------------------------------------ */

/* /v1/chat/completions and /v1/completions: the body as convert.c makes
 * it a scheduler request; the answer streamed or whole. */
static int openai_generate(srv *S, http_req *r, int completion) {
    int ret = 0, stream, usage;
    json_t *body = body_object(r, &ret), *req = NULL;
    if (!body) return ret;
    char err[600];
    if (check_model(r, body, &ret)) goto out;
    if (!(req = conv_openai(body, completion, &stream, &usage, err, sizeof err))) {
        ret = reply_error(r, 400, "invalid_request_error", NULL, NULL, "%s", err);
        goto out;
    }
    if (!completion && media_check(r, body, 0, &ret)) goto out;
    /* "n" choices: n scheduler requests of the same prompt with seeds seed,
     * seed + 1, ... (a random base without "seed"), at most --parallel (and 8) */
    json_t *nj = json_object_get(req, "n");
    int n = json_is_integer(nj) ? (int)json_integer_value(nj) : 1, max_n = S->n_parallel < SRV_MAX_N ? S->n_parallel : SRV_MAX_N;
    if (n > max_n || (n > 1 && r->n_media)) {
        ret = reply_error(r, 400, "invalid_request_error", "n", NULL,
                          r->n_media ? "\"n\" is %d; a request with media parts has one choice"
                                     : "\"n\" is %d; this server answers at most %d choices per request (--parallel, at most 8)",
                          n, max_n);
        goto out;
    }
    json_object_del(req, "n");
    json_t *sj = json_object_get(req, "seed");
    json_int_t seed = json_is_integer(sj) ? json_integer_value(sj) : (json_int_t)(time(NULL) * 2654435761u ^ (uintptr_t)r);
    job *jobs[SRV_MAX_N];
    for (int i = 0; i < n; i++) {
        if (n > 1) json_object_set_new(req, "seed", json_integer((json_int_t)((uint64_t)seed + (uint64_t)i)));
        if (!(jobs[i] = job_submit(r, req, &ret))) goto out;
    }
    if (stream) { ret = start_stream(r, jobs, n, req, completion, usage); goto out; }
    json_t *res = NULL, *choices = json_array();
    json_int_t ct = 0;
    for (int i = 0; i < n; i++) {
        json_t *d = wait_done(r, jobs[i], &ret);
        if (!d) { json_decref(res); json_decref(choices); goto out; }
        json_t *ch0 = json_array_get(json_object_get(d, "choices"), 0);
        ct += json_integer_value(json_object_get(json_object_get(d, "usage"), "completion_tokens"));
        if (completion) {
            json_t *text = json_object_get(json_object_get(ch0, "message"), "content");
            json_t *lp = json_object_get(json_object_get(ch0, "logprobs"), "content");
            long off = 0;
            json_array_append_new(choices, json_pack("{s:i,s:s%,s:o,s:O}", "index", i, "text",
                                  json_is_string(text) ? json_string_value(text) : "",
                                  json_is_string(text) ? json_string_length(text) : (size_t)0, "logprobs",
                                  json_is_array(lp) ? legacy_logprobs(lp, &off) : json_null(), "finish_reason",
                                  json_object_get(ch0, "finish_reason")));
        } else {
            json_object_set_new(ch0, "index", json_integer(i));
            json_array_append(choices, ch0);
        }
        if (!res) res = d;
        else json_decref(d);
    }
    /* usage: the prompt once, the tokens of every choice */
    json_t *u = json_object_get(res, "usage");
    json_int_t pt = json_integer_value(json_object_get(u, "prompt_tokens"));
    json_object_set_new(u, "completion_tokens", json_integer(ct));
    json_object_set_new(u, "total_tokens", json_integer(pt + ct));
    r->tokens_out = (long)ct;
    json_object_set_new(res, "choices", choices);
    if (completion) {
        char id[48];
        snprintf(id, sizeof id, "cmpl-%llu", (unsigned long long)jobs[0]->id);
        json_object_set_new(res, "id", json_string(id));
        json_object_set_new(res, "object", json_string("text_completion"));
    }
    ret = reply_json(r, 200, res);
out:
    json_decref(body);
    json_decref(req);
    return ret;
}

static int chat_completions(srv *S, http_req *r) { return openai_generate(S, r, 0); }
static int completions(srv *S, http_req *r) { return openai_generate(S, r, 1); }

/* The model, with the inputs it takes ("modalities": text, image, audio). */
static json_t *model_obj(srv *S) {
    json_t *mod = json_pack("[s]", "text");
    if (gemma4c_mmproj_supports(S->mmproj, GEMMA4C_MEDIA_IMAGE)) json_array_append_new(mod, json_string("image"));
    if (gemma4c_mmproj_supports(S->mmproj, GEMMA4C_MEDIA_AUDIO)) json_array_append_new(mod, json_string("audio"));
    return json_pack("{s:s,s:s,s:i,s:s,s:o}", "id", S->model_id, "object", "model", "created", 0, "owned_by", "gemma4c",
                     "modalities", mod);
}

static int models(srv *S, http_req *r) {
    return reply_json(r, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", model_obj(S)));
}

static int model_one(srv *S, http_req *r) {
    const char *n = r->path + strlen("/v1/models/");
    if (!strcmp(n, S->model_id) || !strcmp(n, S->model_file)) return reply_json(r, 200, model_obj(S));
    return reply_error(r, 404, "invalid_request_error", "model", "model_not_found", "the model '%s' does not exist", n);
}

static int health(srv *S, http_req *r) {
    return reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static int metrics(srv *S, http_req *r) {
    gemma4c_scheduler_stats st;
    gemma4c_scheduler_stats_get(S->sched, &st);
    pthread_mutex_lock(&S->mu);
    unsigned long long hr = S->http_requests, he = S->http_errors;
    pthread_mutex_unlock(&S->mu);
    char t[4096];
    int n = snprintf(t, sizeof t,
        "# HELP gemma4c_requests_total Model requests by outcome.\n# TYPE gemma4c_requests_total counter\n"
        "gemma4c_requests_total{outcome=\"submitted\"} %llu\ngemma4c_requests_total{outcome=\"rejected\"} %llu\n"
        "gemma4c_requests_total{outcome=\"completed\"} %llu\ngemma4c_requests_total{outcome=\"cancelled\"} %llu\n"
        "gemma4c_requests_total{outcome=\"failed\"} %llu\n"
        "# HELP gemma4c_prompt_tokens_total Prompt tokens of admitted requests.\n# TYPE gemma4c_prompt_tokens_total counter\n"
        "gemma4c_prompt_tokens_total %llu\n"
        "# HELP gemma4c_prompt_tokens_cached_total Prompt tokens continued from the prefix cache.\n"
        "# TYPE gemma4c_prompt_tokens_cached_total counter\ngemma4c_prompt_tokens_cached_total %llu\n"
        "# HELP gemma4c_completion_tokens_total Tokens sampled.\n# TYPE gemma4c_completion_tokens_total counter\n"
        "gemma4c_completion_tokens_total %llu\n"
        "# HELP gemma4c_requests_active Requests decoding now.\n# TYPE gemma4c_requests_active gauge\n"
        "gemma4c_requests_active %d\n"
        "# HELP gemma4c_queue_depth Requests waiting for a sequence.\n# TYPE gemma4c_queue_depth gauge\n"
        "gemma4c_queue_depth %d\n"
        "# HELP gemma4c_parallel Sequences decoded at once.\n# TYPE gemma4c_parallel gauge\ngemma4c_parallel %d\n"
        "# HELP gemma4c_steps_total Forward passes.\n# TYPE gemma4c_steps_total counter\ngemma4c_steps_total %llu\n"
        "# HELP gemma4c_batch_tokens_total Tokens in forward passes.\n# TYPE gemma4c_batch_tokens_total counter\n"
        "gemma4c_batch_tokens_total %llu\n"
        "# HELP gemma4c_prefix_lookups_total Prefix-cache lookups.\n# TYPE gemma4c_prefix_lookups_total counter\n"
        "gemma4c_prefix_lookups_total %llu\n"
        "# HELP gemma4c_prefix_hits_total Prefix-cache lookups that reused tokens.\n"
        "# TYPE gemma4c_prefix_hits_total counter\ngemma4c_prefix_hits_total %llu\n"
        "# HELP gemma4c_http_requests_total HTTP requests received.\n# TYPE gemma4c_http_requests_total counter\n"
        "gemma4c_http_requests_total %llu\n"
        "# HELP gemma4c_http_errors_total HTTP answers with status >= 400.\n# TYPE gemma4c_http_errors_total counter\n"
        "gemma4c_http_errors_total %llu\n",
        (unsigned long long)st.submitted, (unsigned long long)st.rejected, (unsigned long long)st.completed,
        (unsigned long long)st.cancelled, (unsigned long long)st.failed, (unsigned long long)st.prompt_tokens,
        (unsigned long long)st.cached_tokens, (unsigned long long)st.completion_tokens, st.active, st.queued,
        st.n_parallel, (unsigned long long)st.steps, (unsigned long long)st.batch_tokens,
        (unsigned long long)st.prefix_lookups, (unsigned long long)st.prefix_hits, hr, he);
    if (n > 0 && (size_t)n < sizeof t)
        n += snprintf(t + n, sizeof t - (size_t)n,
            "# HELP gemma4c_decode_steps_total Forward passes with no prompt tokens.\n"
            "# TYPE gemma4c_decode_steps_total counter\ngemma4c_decode_steps_total %llu\n"
            "# HELP gemma4c_decode_forward_seconds_total Their time in the forward pass.\n"
            "# TYPE gemma4c_decode_forward_seconds_total counter\ngemma4c_decode_forward_seconds_total %.6f\n"
            "# HELP gemma4c_decode_step_seconds_total Their whole steps: forward, sampling, text, events.\n"
            "# TYPE gemma4c_decode_step_seconds_total counter\ngemma4c_decode_step_seconds_total %.6f\n",
            (unsigned long long)st.decode_steps, st.decode_forward_s, st.decode_step_s);
    return reply_text(r, 200, "text/plain; version=0.0.4", t, (size_t)n < sizeof t ? (size_t)n : sizeof t - 1);
}

/* A boolean field, default def; -1 after replying 400. */
static int get_bool(http_req *r, json_t *req, const char *key, int def, int *ret) {
    json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) return def;
    if (json_is_boolean(v)) return json_is_true(v);
    *ret = reply_error(r, 400, "invalid_request_error", key, NULL, "\"%s\" must be a boolean", key);
    return -1;
}

/* {"content": text, "add_special": false, "parse_special": false, "with_pieces": false}
 * -> {"tokens": [ids]} or, with pieces, [{"id", "piece"}] */
static int tokenize(srv *S, http_req *r) {
    int ret = 0;
    json_t *req = body_object(r, &ret);
    if (!req) return ret;
    json_t *c = json_object_get(req, "content");
    int bos, sp, wp;
    if (!json_is_string(c)) {
        ret = reply_error(r, 400, "invalid_request_error", "content", NULL, "\"content\" must be a string");
    } else if ((bos = get_bool(r, req, "add_special", 0, &ret)) >= 0 && (sp = get_bool(r, req, "parse_special", 0, &ret)) >= 0 &&
               (wp = get_bool(r, req, "with_pieces", 0, &ret)) >= 0) {
        int32_t *ids = NULL;
        char err[300];
        int n = gemma4c_tokenize(S->model, json_string_value(c), json_string_length(c), bos, sp, &ids, err, sizeof err);
        if (n < 0) ret = reply_error(r, 400, "invalid_request_error", "content", NULL, "%s", err);
        else {
            json_t *a = json_array();
            const gemma4c_tokenizer *tk = gemma4c_model_tokenizer(S->model);
            for (int i = 0; i < n; i++) {
                size_t pl = 0;
                const char *pc = wp ? gemma4c_tokenizer_piece(tk, ids[i], &pl) : NULL;
                json_array_append_new(a, wp ? json_pack("{s:i,s:s%}", "id", ids[i], "piece", pc ? pc : "", pl)
                                            : json_integer(ids[i]));
            }
            free(ids);
            ret = reply_json(r, 200, json_pack("{s:o}", "tokens", a));
        }
    }
    json_decref(req);
    return ret;
}

/* {"tokens": [ids]} -> {"content": text} */
static int detokenize(srv *S, http_req *r) {
    int ret = 0;
    json_t *req = body_object(r, &ret);
    if (!req) return ret;
    json_t *t = json_object_get(req, "tokens");
    gemma4c_model_info mi;
    gemma4c_model_get_info(S->model, &mi);
    size_t n = json_array_size(t);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    int ok = json_is_array(t) && ids;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *v = json_array_get(t, i);
        ok = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < mi.n_vocab;
        if (ok) ids[i] = (int32_t)json_integer_value(v);
    }
    if (!ok) {
        ret = reply_error(r, 400, "invalid_request_error", "tokens", NULL,
                          "\"tokens\" must be an array of token ids in [0, %d)", mi.n_vocab);
    } else {
        char *text = NULL, err[300];
        size_t len = 0;
        if (gemma4c_tokenizer_decode(gemma4c_model_tokenizer(S->model), ids, n, 0, &text, &len, err, sizeof err))
            ret = reply_error(r, 400, "invalid_request_error", "tokens", NULL, "%s", err);
        else {
            json_t *s = json_stringn(text, len);
            ret = s ? reply_json(r, 200, json_pack("{s:o}", "content", s))
                    : reply_error(r, 400, "invalid_request_error", "tokens", NULL, "the tokens are not valid UTF-8 text");
        }
        free(text);
    }
    free(ids);
    json_decref(req);
    return ret;
}

/* A chat request -> {"prompt": the exact text the model would see} */
static int apply_template(srv *S, http_req *r) {
    int ret = 0;
    json_t *req = body_object(r, &ret);
    if (!req) return ret;
    gemma4c_chat_options co = gemma4c_chat_default_options();
    if (!json_object_get(req, "add_generation_prompt")) co.add_generation_prompt = 1; /* as the scheduler renders */
    char err[600];
    size_t len = 0;
    char *p = gemma4c_chat_render(gemma4c_model_chat_family(S->model), r->body, r->len, &co, &len, err, sizeof err);
    if (!p) ret = reply_error(r, 400, "invalid_request_error", NULL, NULL, "%s", err);
    else ret = reply_json(r, 200, json_pack("{s:s%}", "prompt", p, len));
    free(p);
    json_decref(req);
    return ret;
}

const route OPENAI_ROUTES[] = {
    { "POST", "/v1/chat/completions", chat_completions },
    { "POST", "/v1/completions", completions },
    { "GET", "/v1/models", models },
    { "GET", "/v1/models/*", model_one },
    { "GET", "/health", health },
    { "GET", "/metrics", metrics },
    { "POST", "/tokenize", tokenize },
    { "POST", "/detokenize", detokenize },
    { "POST", "/apply-template", apply_template },
    { NULL, NULL, NULL },
};
