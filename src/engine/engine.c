/* Public API (include/gemma4c.h) on top of the model and forward pass. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/markers.h"
#include "engine/engine.h"
#include "format/hf.h"
#include "gemma4c.h"
#include "model/forward.h"
#include "model/lora.h"
#include "model/model.h"


static void copy_err(char *dst, size_t len, const g4_error *e) {
    if (dst && len) snprintf(dst, len, "%s", e->msg);
}

gemma4c_model *gemma4c_model_open(const char *path, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    gemma4c_model *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->tix_mu, NULL);
    if (!m) { copy_err(err, errlen, &(g4_error){ "out of memory" }); return NULL; }
    struct stat st;
    g4_gguf_file *f = NULL;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) f = g4_hf_open(path, &e);
    else f = g4_gguf_open(path, &e);
    if (!f) goto fail;
    m->m = g4_model_load(f, &e);
    if (!m->m) goto fail;
    /* The tokenizer is optional for running ids (tests, benchmarks): keep
     * the reason it failed and report it when text is needed. */
    g4_error te = { { 0 } };
    m->tok = g4_tokenizer_from_gguf(m->m->file, &te);
    if (!m->tok) m->tok_err = strdup(te.msg);
    if (g4_gguf_get_str(m->m->file, "tokenizer.chat_template", &m->chat_template, NULL) < 0) m->chat_template = NULL;
    m->chat_family = g4_engine_chat_family(path, m->m->file);
    g4_gguf_release_header(m->m->file);    /* the vocabulary's strings are copied by now */
    return m;
fail:
    copy_err(err, errlen, &e);
    free(m);
    return NULL;
}

void gemma4c_model_free(gemma4c_model *m) {
    if (!m) return;
    gemma4c_token_index_free(m->tix);
    pthread_mutex_destroy(&m->tix_mu);
    g4_tokenizer_free(m->tok);
    free(m->tok_err);
    free(m->chat_template);
    g4_model_free(m->m);
    free(m);
}

void gemma4c_model_get_info(const gemma4c_model *mm, gemma4c_model_info *o) {
    const g4_model *m = mm->m;
    memset(o, 0, sizeof *o);
    o->name = m->name;
    o->arch = "gemma4";
    o->n_layer = m->n_layer;
    o->n_embd = m->n_embd;
    o->n_head = m->n_head;
    o->n_vocab = m->n_vocab;
    o->n_ctx_train = m->n_ctx_train;
    o->n_expert = m->n_expert;
    o->n_expert_used = m->n_expert_used;
    o->n_embd_per_layer = m->n_ple;
    o->n_kv_shared = m->n_kv_shared;
    o->sliding_window = m->sliding_window;
    o->bos_id = m->bos_id;
    o->eos_id = m->eos_id;
    o->n_params = m->n_params;
    o->weight_bytes = m->weight_bytes;
}

const char *gemma4c_kv_type_name(int t) {
    return t == GEMMA4C_KV_DEFAULT ? "default" : g4_kv_type_name(t - 1);
}

int gemma4c_kv_type_from_name(const char *name) {
    if (name && !strcmp(name, "default")) return GEMMA4C_KV_DEFAULT;
    int t = g4_kv_type_from_name(name);
    return t < 0 ? -1 : t + 1;
}

/* The public kv type a context of p uses (DEFAULT resolved), -1 if unknown. */
static int kv_type_of(const gemma4c_context_params *p) {
    if (p->kv_type == GEMMA4C_KV_DEFAULT) return p->precision == GEMMA4C_PREC_EXACT ? GEMMA4C_KV_F32 : GEMMA4C_KV_F16;
    return p->kv_type >= GEMMA4C_KV_F32 && p->kv_type <= GEMMA4C_KV_Q4_0 ? p->kv_type : -1;
}

/* The process's own resident memory besides weights, KV and scratch: code
 * and data of the binary and its libraries, thread stacks as far as touched,
 * and the tokenizer's tables (their exact size: 18.3 MB for Gemma's real
 * vocabulary of 262,144 pieces and 514,906 merges). The file's header pages
 * (the vocabulary's strings) are handed back after the tokenizer is built
 * (g4_gguf_release_header). FFmpeg is loaded only for a video
 * (media/video.c), so it is not in here; the image and audio decoders and
 * the server's libraries are (`gemma4c --help` peaks at 7.3 MB). Bench's
 * peak beyond weights, KV, scratch and tokenizer: 8.8 MiB on the tiny model,
 * 7.7 MiB on E2B (q8_0 cache, 4K, batch 32); 11 MiB leaves ~2.2 MiB of
 * margin (other machines map the same libraries a little differently). */
static uint64_t process_bytes(const gemma4c_model *mm) { return (11ull << 20) + g4_tok_mem_bytes(mm->tok); }

int gemma4c_memory_plan_params(const gemma4c_model *mm, const gemma4c_context_params *p, gemma4c_memory_plan *o) {
    const g4_model *m = mm->m;
    int n_ctx = p->n_ctx, n_batch = p->n_batch, n_seq = p->n_seq > 0 ? p->n_seq : 1, kt = kv_type_of(p);
    if (p->n_prefix > 0) n_seq += p->n_prefix;              /* snapshots keep rings too */
    if (n_ctx < 1 || n_batch < 1 || kt < 0) return -1;
    if (n_batch > n_ctx) n_batch = n_ctx;
    g4_kv_plan kv;
    g4_kv_plan_type(m, n_ctx, n_batch, kt - 1, &kv);
    memset(o, 0, sizeof *o);
    o->kv_type = kt;
    o->weight_bytes = m->weight_bytes;
    o->kv_bytes_per_token = kv.bytes_per_token_full;
    o->kv_bytes_swa = kv.bytes_swa * (uint64_t)n_seq;        /* a ring per sequence */
    o->kv_bytes = kv.bytes_per_token_full * (uint64_t)n_ctx + o->kv_bytes_swa;
    /* scratch for n_threads = 1 plus a row of logits per sequence (a decode
     * step keeps one for each); threads add a few rows of n_in floats each */
    o->scratch_bytes = g4_workspace_bytes(m, n_batch, 1) +
                       (uint64_t)(p->n_seq > 1 ? p->n_seq : 1) * (uint64_t)m->n_vocab * sizeof(float);
    o->scratch_bytes += g4_engine_adapter_bytes(p);   /* LoRA pairs and the hook's scratch */
    if (p->precision != GEMMA4C_PREC_EXACT) {
        /* the prefill panels' buffer in each thread that ran one (AVX-512) */
        long nth = p->n_threads > 0 ? p->n_threads : sysconf(_SC_NPROCESSORS_ONLN);
        g4_dims d;
        g4_dims_of(m, &d);
        o->scratch_bytes += (uint64_t)(nth > 0 ? (nth < 256 ? nth : 256) : 1) * g4_matmul_panel_bytes(d.max_in, n_batch);
    }
    o->weight_resident_bytes = m->weight_bytes;
    if (m->n_ple) o->weight_resident_bytes -= m->ple_embd.row_bytes * (uint64_t)m->ple_embd.n_out;
    o->total_bytes = o->weight_resident_bytes + o->kv_bytes + o->scratch_bytes;
    o->overhead_bytes = o->kv_bytes + o->scratch_bytes + process_bytes(mm);
    o->edge_ok = o->overhead_bytes <= GEMMA4C_EDGE_BUDGET;
    return 0;
}

int gemma4c_memory_plan_for(const gemma4c_model *mm, int n_ctx, int n_batch, gemma4c_memory_plan *o) {
    gemma4c_context_params p = { .n_ctx = n_ctx, .n_batch = n_batch, .n_seq = 1 };
    return gemma4c_memory_plan_params(mm, &p, o);
}

int gemma4c_model_layer_desc(const gemma4c_model *mm, int l, char *buf, size_t len) {
    const g4_model *m = mm->m;
    if (l < 0 || l >= m->n_layer) return -1;
    const g4_layer *y = &m->layers[l];
    char src[32] = "own";
    if (!y->own_kv) snprintf(src, sizeof src, "from layer %d", y->kv_src);
    snprintf(buf, len, "%-7s head_dim %3d  kv_heads %2d  ffn %6d%s  kv %s%s  rope %g/%d  scale %.4g",
             y->swa ? "sliding" : "full", y->head_dim, y->n_kv_head, y->n_ff,
             m->n_expert ? " +moe" : "", src, y->own_kv && y->k_eq_v ? " (K=V)" : "", (double)y->rope_base,
             y->n_rot, (double)y->out_scale);
    return 0;
}

gemma4c_context_params gemma4c_context_default_params(void) {
    gemma4c_context_params p = { .n_ctx = 0, .n_batch = 0, .n_threads = 0, .precision = GEMMA4C_PREC_FAST,
                                 .n_seq = 1 };
    return p;
}

/* Full-attention pages of a shared pool: small enough that short sequences
 * do not hold much more than they use, large enough for whole attention
 * blocks (64 positions). One sequence keeps one contiguous page. */
enum { KV_PAGE = 256 };

gemma4c_context *gemma4c_context_new(gemma4c_model *mm, const gemma4c_context_params *pp, char *err,
                                     size_t errlen) {
    gemma4c_context_params p = pp ? *pp : gemma4c_context_default_params();
    const g4_model *m = mm->m;
    if (p.n_ctx <= 0) p.n_ctx = m->n_ctx_train < 4096 ? m->n_ctx_train : 4096;
    if (p.n_ctx > m->n_ctx_train) p.n_ctx = m->n_ctx_train;
    if (p.n_batch <= 0) p.n_batch = 512;
    if (p.n_seq <= 0) p.n_seq = 1;
    if (p.n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n > 0 ? (int)n : 1;
    }
    if (p.n_threads > 256) p.n_threads = 256;
    g4_error e = { { 0 } };
    if (p.n_prefix < 0) p.n_prefix = 0;
    if (p.n_seq > 4096 || p.n_prefix > 4096) {
        g4_seterr(&e, "n_seq %d, n_prefix %d: at most 4096 each", p.n_seq, p.n_prefix);
        copy_err(err, errlen, &e);
        return NULL;
    }
    int kt = kv_type_of(&p);
    if (kt < 0) {
        g4_seterr(&e, "kv_type %d: expected f32, f16, q8_0 or q4_0 (enum gemma4c_kv_type)", p.kv_type);
        copy_err(err, errlen, &e);
        return NULL;
    }
    gemma4c_context *c = calloc(1, sizeof *c);
    if (!c) { copy_err(err, errlen, &(g4_error){ "out of memory" }); return NULL; }
    c->model = mm;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    c->n_seq = p.n_seq;
    /* one page: a single sequence's contiguous cache; else pages small enough
     * that every sequence and snapshot can hold a couple */
    int page = 0, holders = p.n_seq + p.n_prefix;
    if (holders > 1)
        for (page = KV_PAGE; page > 1 && (long)page * holders * 2 > p.n_ctx; page /= 2) {}
    c->pool = g4_kv_pool_new_t(m, p.n_ctx, p.n_seq + p.n_prefix, p.n_batch, page, kt - 1, &e);
    c->seqs = calloc((size_t)p.n_seq, sizeof *c->seqs);
    c->n_ctx = p.n_ctx;
    c->n_prefix = p.n_prefix;
    c->pfx = calloc((size_t)(p.n_prefix ? p.n_prefix : 1), sizeof *c->pfx);
    c->toks = calloc((size_t)p.n_seq, sizeof *c->toks);
    for (int i = 0; c->toks && i < p.n_seq; i++)
        if (!(c->toks[i] = malloc((size_t)p.n_ctx * sizeof **c->toks))) { free(c->pfx); c->pfx = NULL; break; }
    if (c->pool && c->seqs)
        for (int i = 0; i < p.n_seq; i++)
            if (!(c->seqs[i] = g4_seq_new_in(c->pool, &e))) break;
    if (c->seqs && c->seqs[p.n_seq - 1])
        c->ws = g4_workspace_new(m, p.n_batch, p.n_threads, p.precision == GEMMA4C_PREC_EXACT, &e);
    c->pos = malloc((size_t)p.n_batch * sizeof *c->pos);
    c->bseq = malloc((size_t)p.n_batch * sizeof *c->bseq);
    c->bout = malloc((size_t)p.n_batch);
    if (!c->ws || !c->pos || !c->bseq || !c->bout || !c->pfx || !c->toks) {
        if (c->ws) g4_seterr(&e, "out of memory");
        copy_err(err, errlen, &e);
        gemma4c_context_free(c);
        return NULL;
    }
    if (p.n_adapters > 0 && g4_engine_context_adapters(c, &p, err, errlen)) {
        gemma4c_context_free(c);
        return NULL;
    }
    return c;
}

gemma4c_model *gemma4c_context_model(const gemma4c_context *c) { return c->model; }

void gemma4c_context_free(gemma4c_context *c) {
    if (!c) return;
    g4_workspace_free(c->ws);
    g4_lora_set_free(c->lora);
    g4_prefix_free_all(c);
    free(c->pfx);
    for (int i = 0; c->toks && i < c->n_seq; i++) free(c->toks[i]);
    free(c->toks);
    for (int i = 0; c->seqs && i < c->n_seq; i++) g4_seq_free(c->seqs[i]);
    free(c->seqs);
    g4_kv_pool_free(c->pool);
    free(c->pos);
    free(c->bseq);
    free(c->bout);
    free(c->logits);
    free(c->hidden);
    free(c->row_of);
    free(c);
}

static int grow(void **buf, size_t *cap, size_t n, size_t size) {
    if (n <= *cap) return 0;
    void *p = realloc(*buf, n * size);
    if (!p) return -1;
    *buf = p;
    *cap = n;
    return 0;
}

int gemma4c_decode(gemma4c_context *c, const gemma4c_batch *b, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    c->n_idx = c->n_rows = 0;
    int n = b ? b->n_tokens : 0;
    if (n <= 0 || !b->token) {
        copy_err(err, errlen, &(g4_error){ "decode: no tokens" });
        return -1;
    }
    size_t V = (size_t)c->model->m->n_vocab;
    int rows = 0;
    for (int i = 0; i < n; i++) {
        int s = b->seq ? b->seq[i] : 0;
        if (s < 0 || s >= c->n_seq) {
            g4_seterr(&e, "batch index %d: sequence id %d out of range (0..%d)", i, s, c->n_seq - 1);
            copy_err(err, errlen, &e);
            return -1;
        }
        rows += b->logits ? b->logits[i] != 0 : i == n - 1;
    }
    int nb = c->ws->n_batch;
    /* a bidirectional run is seen whole only inside one pass: passes end
     * before a run that would cross their end (below); a run longer than a
     * pass cannot be split */
    if (b->run)
        for (int i = 0, len = 0; i < n; i++) {
            len = b->run[i] >= 0 && i > 0 && b->run[i] == b->run[i - 1] ? len + 1 : 1;
            if (b->run[i] >= 0 && len > nb) {
                g4_seterr(&e, "a media run of more than %d soft tokens (at batch index %d) does not fit in one pass of "
                          "n_batch = %d tokens (use a larger --batch)", nb, i, nb);
                copy_err(err, errlen, &e);
                return -1;
            }
        }
    /* media rows read the pad id's per-layer embedding (the forward pass
     * takes that id from tokens[]) */
    int32_t *ids = NULL;
    if (b->embd) {
        ids = malloc((size_t)n * sizeof *ids);
        if (!ids) { copy_err(err, errlen, &(g4_error){ "out of memory" }); return -1; }
        for (int i = 0; i < n; i++) ids[i] = !b->has_embd || b->has_embd[i] ? 0 : b->token[i];
    }
    size_t Hm = (size_t)c->model->m->n_embd;
    if (grow((void **)&c->logits, &c->logits_cap, (size_t)(rows ? rows : 1) * V, sizeof(float)) ||
        grow((void **)&c->hidden, &c->hidden_cap, (size_t)(rows ? rows : 1) * Hm, sizeof(float)) ||
        grow((void **)&c->row_of, &c->row_of_cap, (size_t)n, sizeof(int))) {
        copy_err(err, errlen, &(g4_error){ "out of memory for logits" });
        return -1;
    }
    int row = 0;
    for (int i = 0, T; i < n; i += T) {
        T = n - i < nb ? n - i : nb;
        int kept = 0;
        if (b->run && i + T < n && b->run[i + T] >= 0 && b->run[i + T] == b->run[i + T - 1]) {
            int s0 = i + T - 1;    /* the run crossing the end starts at s0 */
            while (s0 > i && b->run[s0 - 1] == b->run[i + T]) s0--;
            if (s0 > i) T = s0 - i;
        }
        for (int t = 0; t < T; t++) {
            int k = i + t;
            g4_seq *s = c->seqs[b->seq ? b->seq[k] : 0];
            c->bseq[t] = s;
            if (b->pos) {
                c->pos[t] = b->pos[k];
            } else {            /* the sequence's next: its n_past plus its earlier tokens in this pass */
                c->pos[t] = s->n_past;
                for (int u = 0; u < t; u++) c->pos[t] += c->bseq[u] == s;
            }
            c->bout[t] = (int8_t)(b->logits ? b->logits[k] != 0 : k == n - 1);
            c->row_of[k] = c->bout[t] ? row + kept++ : -1;
        }
        g4_batch pass = { .n = T, .tokens = (ids ? ids : b->token) + i, .pos = c->pos, .out = c->bout,
                          .hidden = c->hidden + (size_t)row * Hm };
        if (b->embd) {
            pass.embd = b->embd + (size_t)i * c->model->m->n_embd;
            pass.has_embd = b->has_embd ? b->has_embd + i : NULL;
        }
        if (b->run) pass.run = b->run + i;
        if (b->seq) pass.seq = c->bseq;
        else pass.seq0 = c->seqs[0];
        int rc;
        /* out of KV pages: snapshots give theirs back, least recently used first */
        while ((rc = g4_forward(c->ws, &pass, kept ? c->logits + (size_t)row * V : NULL, 0, &e)) == -2 &&
               g4_prefix_evict(c) == 0) {}
        if (rc) {
            copy_err(err, errlen, &e);
            free(ids);
            return -1;
        }
        /* a media row is recorded as -1: the prefix cache never matches it
         * (two images of one size have the same placeholder ids) */
        for (int t = 0; t < T; t++)
            c->toks[(b->seq ? b->seq[i + t] : 0)][c->pos[t]] =
                b->embd && (!b->has_embd || b->has_embd[i + t]) ? -1 : b->token[i + t];
        c->pst.tokens_evaluated += (uint64_t)T;
        row += kept;
    }
    free(ids);
    c->n_idx = n;
    c->n_rows = row;
    return 0;
}

const float *gemma4c_logits_ith(const gemma4c_context *c, int i) {
    if (i < 0 || i >= c->n_idx || c->row_of[i] < 0) return NULL;
    return c->logits + (size_t)c->row_of[i] * (size_t)c->model->m->n_vocab;
}

int gemma4c_eval(gemma4c_context *c, const int32_t *tokens, int n, int all_logits, char *err, size_t errlen) {
    g4_seq *s = c->seqs[0];
    c->n_idx = c->n_rows = 0;
    if (n > 0 && s->n_past + n > s->n_ctx) {
        g4_error e;
        g4_seterr(&e, "context full: %d tokens in context + %d new exceed the context size %d (use a larger "
                  "--ctx)", s->n_past, n, s->n_ctx);
        copy_err(err, errlen, &e);
        return -1;
    }
    if (!all_logits) {
        gemma4c_batch b = { .n_tokens = n, .token = tokens };
        return gemma4c_decode(c, &b, err, errlen);
    }
    int8_t *flags = malloc(n > 0 ? (size_t)n : 1);
    if (!flags) { copy_err(err, errlen, &(g4_error){ "out of memory" }); return -1; }
    memset(flags, 1, n > 0 ? (size_t)n : 1);
    gemma4c_batch b = { .n_tokens = n, .token = tokens, .logits = flags };
    int rc = gemma4c_decode(c, &b, err, errlen);
    free(flags);
    return rc;
}

const float *gemma4c_logits(const gemma4c_context *c, int i) { return gemma4c_logits_ith(c, i); }

const float *gemma4c_logits_last(const gemma4c_context *c) {
    if (c->n_rows <= 0) return NULL;
    return c->logits + (size_t)(c->n_rows - 1) * (size_t)c->model->m->n_vocab;
}

int gemma4c_n_vocab(const gemma4c_context *c) { return c->model->m->n_vocab; }
int gemma4c_n_past(const gemma4c_context *c) { return c->seqs[0]->n_past; }
int gemma4c_n_ctx(const gemma4c_context *c) { return c->seqs[0]->n_ctx; }
int gemma4c_n_seq(const gemma4c_context *c) { return c->n_seq; }
int gemma4c_n_batch(const gemma4c_context *c) { return c->ws->n_batch; }

const int32_t *gemma4c_seq_tokens(const gemma4c_context *c, int seq, int *n) {
    if (seq < 0 || seq >= c->n_seq) return NULL;
    *n = c->seqs[seq]->n_past;
    return c->toks[seq];
}

int gemma4c_seq_n_past(const gemma4c_context *c, int seq) {
    return seq >= 0 && seq < c->n_seq ? c->seqs[seq]->n_past : -1;
}

int gemma4c_seq_truncate(gemma4c_context *c, int seq, int n) {
    if (seq < 0 || seq >= c->n_seq || g4_seq_truncate(c->seqs[seq], n)) return -1;
    c->n_idx = c->n_rows = 0;
    return 0;
}

int gemma4c_seq_fork(gemma4c_context *c, int src, int dst, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    if (src < 0 || src >= c->n_seq || dst < 0 || dst >= c->n_seq) {
        g4_seterr(&e, "fork: sequence ids %d -> %d out of range (0..%d)", src, dst, c->n_seq - 1);
        copy_err(err, errlen, &e);
        return -1;
    }
    if (src == dst) return 0;
    g4_seq_free(c->seqs[dst]);          /* its ring becomes free for the copy */
    c->seqs[dst] = g4_seq_fork(c->seqs[src], &e);
    if (c->seqs[dst])
        memcpy(c->toks[dst], c->toks[src], (size_t)c->seqs[src]->n_past * sizeof **c->toks);
    if (!c->seqs[dst]) {
        copy_err(err, errlen, &e);
        c->seqs[dst] = g4_seq_new_in(c->pool, &e);   /* leave an empty sequence behind */
        return -1;
    }
    c->n_idx = c->n_rows = 0;
    return 0;
}

void gemma4c_kv_usage(const gemma4c_context *c, int *used, int *total) { g4_kv_pool_usage(c->pool, used, total, NULL); }

void gemma4c_reset(gemma4c_context *c) { gemma4c_seq_truncate(c, 0, 0); }

int gemma4c_truncate(gemma4c_context *c, int n) { return gemma4c_seq_truncate(c, 0, n); }

/* ---- text ---------------------------------------------------------------- */

static int no_tok(const gemma4c_model *m, char *err, size_t errlen) {
    if (err && errlen)
        snprintf(err, errlen, "%s: no usable tokenizer: %s", m->m->file->path, m->tok_err ? m->tok_err : "?");
    return -1;
}

int gemma4c_tokenize(const gemma4c_model *m, const char *text, size_t len, int add_bos, int parse_special,
                     int32_t **ids, char *err, size_t errlen) {
    if (!m->tok) return no_tok(m, err, errlen);
    g4_tokens t = { 0 };
    g4_error e = { { 0 } };
    if (g4_tok_encode(m->tok, text, len, add_bos, parse_special, &t, &e)) {
        g4_tokens_free(&t);
        copy_err(err, errlen, &e);
        return -1;
    }
    if (t.n > INT32_MAX) { g4_tokens_free(&t); copy_err(err, errlen, &(g4_error){ "text too long" }); return -1; }
    *ids = t.ids;
    if (!*ids) *ids = malloc(sizeof(int32_t));
    return (int)t.n;
}

int gemma4c_is_eog(const gemma4c_model *m, int32_t id) {
    if (m->tok) return g4_tok_is_eog(m->tok, id);
    return id == G4_ID_EOS || id == G4_ID_TURN_CLOSE || id == G4_ID_RESPONSE_OPEN;
}

const char *gemma4c_chat_template(const gemma4c_model *m) { return m->chat_template; }

struct gemma4c_detok { g4_detok *d; };

gemma4c_detok *gemma4c_detok_new(const gemma4c_model *m, int render_special) {
    if (!m->tok) return NULL;
    gemma4c_detok *d = malloc(sizeof *d);
    if (!d) return NULL;
    d->d = g4_detok_new(m->tok, render_special);
    if (!d->d) { free(d); return NULL; }
    return d;
}

const char *gemma4c_detok_push(gemma4c_detok *d, int32_t id, size_t *len) {
    g4_error e;
    const char *s = g4_detok_push(d->d, id, len, &e);
    if (!s) { *len = 0; return ""; }
    return s;
}

const char *gemma4c_detok_flush(gemma4c_detok *d, size_t *len) { return g4_detok_flush(d->d, len); }

void gemma4c_detok_free(gemma4c_detok *d) {
    if (!d) return;
    g4_detok_free(d->d);
    free(d);
}

/* ---- cost model ------------------------------------------------------------ */

static void add_mat(const g4_mat *w, double share, uint64_t *bytes, double *flops) {
    if (!w->data) return;
    double n = (double)w->n_in * (double)w->n_out * (double)w->n_mat;
    *bytes += (uint64_t)((double)w->row_bytes * (double)w->n_out * (double)w->n_mat * share);
    *flops += 2.0 * n * share;
}

void gemma4c_token_cost_at(const gemma4c_model *mm, int pos, gemma4c_token_cost *o) {
    gemma4c_token_cost_kv(mm, pos, GEMMA4C_KV_F32, o);
}

void gemma4c_token_cost_kv(const gemma4c_model *mm, int pos, int kv_type, gemma4c_token_cost *o) {
    const g4_model *m = mm->m;
    int kt = kv_type >= GEMMA4C_KV_F32 && kv_type <= GEMMA4C_KV_Q4_0 ? kv_type - 1 : G4_KV_F16;
    memset(o, 0, sizeof *o);
    uint64_t b = 0;
    double f = 0;
    add_mat(&m->output, 1.0, &b, &f);              /* LM head: every row */
    b += m->tok_embd.row_bytes;                    /* embedding lookup: one row */
    if (m->n_ple) {
        b += m->ple_embd.row_bytes;
        add_mat(&m->ple_model_proj, 1.0, &b, &f);
    }
    double share = m->n_expert ? (double)m->n_expert_used / m->n_expert : 1.0;
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        const g4_mat *full[] = { &y->wq, &y->wk, &y->wv, &y->wo, &y->ffn_gate, &y->ffn_up, &y->ffn_down,
                                 &y->router, &y->ple_gate, &y->ple_proj };
        for (size_t i = 0; i < sizeof full / sizeof full[0]; i++) add_mat(full[i], 1.0, &b, &f);
        const g4_mat *exps[] = { &y->exp_gate_up, &y->exp_gate, &y->exp_up, &y->exp_down };
        for (size_t i = 0; i < sizeof exps / sizeof exps[0]; i++) add_mat(exps[i], share, &b, &f);
        int visible = pos + 1;
        if (y->swa && visible > m->sliding_window) visible = m->sliding_window;
        o->kv_bytes += 2ull * (uint64_t)y->n_kv_head *
                       g4_kv_row_bytes(g4_kv_type_for(kt, y->head_dim), (size_t)y->head_dim) * (uint64_t)visible;
        o->attn_flops += 2.0 * 2.0 * m->n_head * y->head_dim * (double)visible;
    }
    o->weight_bytes = b;
    o->matmul_flops = f;
}
