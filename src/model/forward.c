/* Gemma 4 decoder forward pass (shared/docs/gemma4-text.md §2), as a
 * schedule of the ops in ops/.
 *
 * Activations are row-major [T][width] f32. Per layer:
 *   attention (own K/V or the donor's) -> post-attn norm -> residual
 *   dense GeGLU MLP (+ MoE branch on 26B-A4B) -> post-ffw norm -> residual
 *   per-layer-embedding branch (E2B/E4B) -> residual
 *   whole residual stream *= layer_output_scale
 * The order matters and follows §2.4.1 exactly. */
#include "model/forward.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/attention.h"
#include "tensor/act.h"
#include "tensor/types.h"

void g4_dims_of(const g4_model *m, g4_dims *d) {
    *d = (g4_dims){ .H = m->n_embd, .nH = m->n_head, .L = m->n_layer, .P = m->n_ple, .E = m->n_expert,
                    .K = m->n_expert_used, .Fe = m->n_ff_exp, .V = m->n_vocab, .l_swa = -1, .l_full = -1 };
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        if (y->swa && d->l_swa < 0) d->l_swa = l;
        if (!y->swa && d->l_full < 0) d->l_full = l;
        if (y->head_dim > d->hd_max) d->hd_max = y->head_dim;
        if (y->n_kv_head * y->head_dim > d->nkv_max) d->nkv_max = y->n_kv_head * y->head_dim;
        if (y->n_ff > d->ff_max) d->ff_max = y->n_ff;
        if (y->swa) d->rot_swa = y->n_rot; else d->rot_full = y->n_rot;
    }
    d->nq_max = d->nH * d->hd_max;
    int mi = d->H;
    if (d->nq_max > mi) mi = d->nq_max;
    if (d->ff_max > mi) mi = d->ff_max;
    if (d->Fe > mi) mi = d->Fe;
    if (d->P > mi) mi = d->P;
    d->max_in = mi;
}

/* ---- workspace --------------------------------------------------------------------- */

/* Scratch sizes in floats, in allocation order (one place for alloc and plan). */
enum { S_X, S_XN, S_H2, S_Q, S_K, S_V, S_ATT, S_FFA, S_FFB, S_PLE, S_PLEG, S_ROPE, S_ATTN,
       S_MOEL, S_MOEW, S_MOEIN, S_MOEOUT, S_MOEACC, S_ACT, S_COUNT };

static void scratch_sizes(const g4_dims *d, int n_batch, int nth, size_t *sz) {
    size_t T = (size_t)n_batch;
    /* ff_a/ff_b: MLP hidden rows, fused expert gate|up rows, and (PLE) one
     * decoded [L*P] token row */
    int ffw = d->ff_max > 2 * d->Fe ? d->ff_max : 2 * d->Fe;
    if (d->L * d->P > ffw) ffw = d->L * d->P;
    sz[S_X] = sz[S_XN] = sz[S_H2] = T * d->H;
    sz[S_Q] = T * d->nq_max;
    sz[S_K] = sz[S_V] = T * d->nkv_max;
    sz[S_ATT] = T * d->nq_max;
    sz[S_FFA] = sz[S_FFB] = T * ffw;
    sz[S_PLE] = T * d->L * d->P;
    sz[S_PLEG] = T * d->P;
    sz[S_ROPE] = T * (size_t)(d->rot_full + d->rot_swa);     /* cos+sin per pair, both layer types */
    sz[S_ATTN] = g4_attn_ws_floats(nth, d->nH, d->nq_max);
    sz[S_MOEL] = sz[S_MOEW] = T * d->E;
    sz[S_MOEIN] = sz[S_MOEOUT] = sz[S_MOEACC] = d->E ? T * d->H : 0;
    if (d->E) { /* one-token MoE keeps every selected expert's rows */
        size_t k = (size_t)d->K;
        if (sz[S_FFA] < k * 2 * d->Fe) sz[S_FFA] = sz[S_FFB] = k * 2 * d->Fe;
        if (sz[S_MOEOUT] < k * d->H) sz[S_MOEOUT] = k * d->H;
    }
    sz[S_ACT] = T * d->max_in + 1024;                         /* quantized activations (<= f32 size) */
    if (d->P) /* the per-layer-embedding projection's bf16 rows and panels beside its f32 rows (matmul.h) */
        sz[S_ACT] += (T * d->H * 2 + g4_matmul_bf16_bytes(d->H, nth) + 64) / sizeof(float) + 32;
}

/* int arrays: moe_sel [T][K], moe_rows, pos, four range arrays and the
 * panel tokens [T] */
static size_t int_bytes(const g4_dims *d, int n_batch) {
    return (size_t)n_batch * ((size_t)(d->K ? d->K : 1) + 7) * sizeof(int32_t) +
           (size_t)n_batch * sizeof(g4_kv_view *);
}

size_t g4_workspace_bytes(const g4_model *m, int n_batch, int n_threads) {
    g4_dims d;
    g4_dims_of(m, &d);
    size_t sz[S_COUNT], total = 0;
    scratch_sizes(&d, n_batch, n_threads, sz);
    for (int i = 0; i < S_COUNT; i++) total += sz[i] * sizeof(float);
    return total + int_bytes(&d, n_batch);
}

#define WS_FLOAT_BUFS(w) { &w->x, &w->xn, &w->h2, &w->q, &w->k, &w->v, &w->att, &w->ff_a, &w->ff_b, &w->ple, \
                           &w->ple_g, &w->rope, &w->attn_ws, &w->moe_logit, &w->moe_w, &w->moe_in, &w->moe_out, \
                           &w->moe_acc }

void g4_workspace_free(g4_workspace *w) {
    if (!w) return;
    float **bufs[] = WS_FLOAT_BUFS(w);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(*bufs[i]);
    free(w->ex.mm.act);
    free(w->ex.lora_tmp);
    free(w->moe_sel);
    free(w->moe_rows);
    free(w->pos);
    free(w->kvp);
    g4_pool_release(w->ex.pool);
    free(w);
}

g4_workspace *g4_workspace_new(const g4_model *m, int n_batch, int n_threads, int precision, g4_error *err) {
    if (n_batch < 1 || n_threads < 1) {
        g4_seterr(err, "batch size and threads must be positive");
        return NULL;
    }
    g4_workspace *w = calloc(1, sizeof *w);
    if (!w) { g4_seterr(err, "out of memory"); return NULL; }
    g4_act_init();
    w->m = m;
    g4_dims_of(m, &w->d);
    w->n_batch = n_batch;
    w->ex.precision = precision;
    w->ex.pool = g4_pool_acquire(n_threads);
    if (!w->ex.pool) goto oom;
    w->ex.n_threads = g4_pool_size(w->ex.pool);
    size_t sz[S_COUNT];
    scratch_sizes(&w->d, n_batch, n_threads, sz);
    float **bufs[] = WS_FLOAT_BUFS(w);
    for (int i = 0; i < S_ACT; i++) {
        *bufs[i] = malloc((sz[i] ? sz[i] : 1) * sizeof(float));
        if (!*bufs[i]) goto oom;
    }
    w->ex.mm.act = malloc(sz[S_ACT] * sizeof(float));
    w->ex.mm.act_bytes = sz[S_ACT] * sizeof(float);
    size_t T = (size_t)n_batch;
    w->moe_sel = malloc(T * (size_t)(w->d.K ? w->d.K : 1) * sizeof(int));
    w->moe_rows = malloc(T * sizeof(int));
    w->pos = malloc(6 * T * sizeof(int32_t));
    w->kvp = malloc(T * sizeof *w->kvp);
    if (!w->ex.mm.act || !w->moe_sel || !w->moe_rows || !w->pos || !w->kvp) goto oom;
    w->lo_swa = w->pos + T;
    w->hi_swa = w->pos + 2 * T;
    w->lo_full = w->pos + 3 * T;
    w->hi_full = w->pos + 4 * T;
    w->pcol = w->pos + 5 * T;
    w->scratch_bytes = g4_workspace_bytes(m, n_batch, n_threads);
    return w;
oom:
    g4_workspace_free(w);
    g4_seterr(err, "out of memory allocating the workspace (n_batch %d)", n_batch);
    return NULL;
}

/* ---- per-token steps between the products ---------------------------------------- */

/* The steps of one token between two products (q/k/v norms, RoPE and the
 * cache stores; the per-layer inputs and GeGLU) ran on the calling thread
 * while the others waited for the next product: ~2% of an E2B prefill on
 * each core. Tokens are independent there (each writes its own rows and
 * cache slots), and a token's arithmetic is the same on any thread, so
 * they go to the pool, claimed in chunks (a late worker costs nothing).
 * A few tokens (decode) stay on the caller: a section costs more. */
typedef struct tok_task {
    g4_workspace *w;
    const g4_batch *b;
    int l, T, step;
    void (*fn)(g4_workspace *w, const g4_batch *b, int l, int t);
    atomic_int next;
} tok_task;

static void tok_worker(void *arg, int ith, int nth) {
    tok_task *k = arg;
    (void)ith, (void)nth;
    for (int t0; (t0 = atomic_fetch_add_explicit(&k->next, k->step, memory_order_relaxed)) < k->T;)
        for (int t = t0; t < t0 + k->step && t < k->T; t++) k->fn(k->w, k->b, k->l, t);
}

static void per_token(g4_workspace *w, const g4_batch *b, int l, int T,
                      void (*fn)(g4_workspace *, const g4_batch *, int, int)) {
    enum { MIN_T = 8 };
    if (T < MIN_T || w->ex.n_threads < 2) {
        for (int t = 0; t < T; t++) fn(w, b, l, t);
        return;
    }
    tok_task k = { .w = w, .b = b, .l = l, .T = T, .fn = fn };
    k.step = T / (8 * w->ex.n_threads);   /* ~8 claims per thread */
    if (k.step < 1) k.step = 1;
    atomic_init(&k.next, 0);
    g4_pool_run_dyn(w->ex.pool, tok_worker, &k);
}

/* ---- attention block ------------------------------------------------------------- */

static g4_seq *seq_of(const g4_batch *b, int t) { return b->seq ? b->seq[t] : b->seq0; }

/* Token t's q heads normed and rotated; with its own K/V, k and v normed
 * (k rotated) and stored into the cache at the token's slot. */
static void qkv_token(g4_workspace *w, const g4_batch *b, int l, int t) {
    const g4_model *m = w->m;
    const g4_layer *y = &m->layers[l];
    int T = b->n, nH = m->n_head, hd = y->head_dim, nkv = y->n_kv_head;
    int nq = nH * hd, nk = nkv * hd, rot = y->n_rot;
    const float *cs = w->rope + (y->swa ? 0 : (size_t)T * w->d.rot_swa) + (size_t)t * rot;
    for (int h = 0; h < nH; h++) {
        float *q = w->q + (size_t)t * nq + (size_t)h * hd;
        g4_rmsnorm(q, q, y->q_norm, hd, m->eps);
        g4_op_rope(q, cs, rot);
    }
    if (!y->own_kv) return;
    if (y->k_eq_v) /* V = raw K projection */
        memcpy(w->v + (size_t)t * nk, w->k + (size_t)t * nk, (size_t)nk * sizeof(float));
    g4_kv_view *c = g4_seq_cache(seq_of(b, t), l);
    size_t slot = g4_kv_row(c, b->pos[t]);
    for (int g = 0; g < nkv; g++) {
        float *k = w->k + (size_t)t * nk + (size_t)g * hd;
        float *v = w->v + (size_t)t * nk + (size_t)g * hd;
        g4_rmsnorm(k, k, y->k_norm, hd, m->eps);
        g4_op_rope(k, cs, rot);
        g4_rmsnorm(v, v, NULL, hd, m->eps);
        /* rounded into the cache's row type (f32: a copy) */
        g4_kv_store(c->type, c->k + slot * c->rs + (size_t)g * c->hs, k, hd);
        g4_kv_store(c->type, c->v + slot * c->rs + (size_t)g * c->hs, v, hd);
    }
}

static void attention(g4_workspace *w, const g4_batch *b, int l) {
    const g4_model *m = w->m;
    const g4_layer *y = &m->layers[l];
    g4_exec *ex = &w->ex;
    int T = b->n, H = m->n_embd, nH = m->n_head, hd = y->head_dim, nkv = y->n_kv_head;
    int nq = nH * hd, nk = nkv * hd;

    g4_op_rmsnorm(ex, w->xn, w->x, y->attn_norm, T, H, (size_t)H, m->eps, NULL);
    /* q, k, v in one parallel section (one activation quantization) */
    g4_mm_job jobs[3] = { { .w = &y->wq, .y = w->q, .ldy = nq } };
    int nj = 1;
    if (y->own_kv) {
        jobs[nj++] = (g4_mm_job){ .w = &y->wk, .y = w->k, .ldy = nk };
        if (!y->k_eq_v) jobs[nj++] = (g4_mm_job){ .w = &y->wv, .y = w->v, .ldy = nk };
    }
    g4_op_matmul_multi(ex, jobs, nj, w->xn, H, T);
    per_token(w, b, l, T, qkv_token);
    for (int t = 0; t < T; t++) w->kvp[t] = g4_seq_cache(seq_of(b, t), l);
    g4_attn at = { .q = w->q, .out = w->att, .T = T, .n_head = nH, .n_kv_head = nkv, .head_dim = hd,
                   .kv = w->kvp, .lo = y->swa ? w->lo_swa : w->lo_full, .hi = y->swa ? w->hi_swa : w->hi_full,
                   /* prompt tiles on the fast path only: --exact keeps its arithmetic */
                   .pcol = w->ex.precision ? NULL : w->ex.mm.pcol, .np = w->ex.precision ? 0 : w->ex.mm.np };
    g4_op_attention(ex, &at, w->attn_ws, w->d.nq_max);
    g4_op_matmul(ex, &y->wo, 0, w->att, nq, T, w->h2, H);
    g4_op_rmsnorm(ex, w->h2, w->h2, y->post_attn_norm, T, H, (size_t)H, m->eps, w->x);
}

/* ---- feed-forward ---------------------------------------------------------------- */

/* GeGLU MLP of rows `in` [T][H] -> out [T][H] using ff_a/ff_b as scratch. */
static void mlp(g4_workspace *w, const g4_layer *y, const float *in, int T, float *out) {
    int H = w->m->n_embd, F = (int)y->ffn_gate.n_out;
    g4_mm_job jobs[2] = { { .w = &y->ffn_gate, .y = w->ff_a, .ldy = F }, { .w = &y->ffn_up, .y = w->ff_b, .ldy = F } };
    g4_op_matmul_multi(&w->ex, jobs, 2, in, H, T);
    g4_op_geglu(&w->ex, w->ff_a, w->ff_a, w->ff_b, (long)T * F);
    g4_op_matmul(&w->ex, &y->ffn_down, 0, w->ff_a, F, T, out, H);
}

/* Mixture of experts (26B-A4B, §2.4.4): router on the post-attention
 * residual; expert inputs use pre_ffw_norm_2. Result in out [T][H]. */
static void moe(g4_workspace *w, const g4_layer *y, int T, float *out) {
    const g4_model *m = w->m;
    int H = m->n_embd;
    g4_moe_weights mw = { .router = &y->router, .router_scale = y->router_scale, .expert_scale = y->expert_scale,
                          .gate_up = y->exp_gate_up.data ? &y->exp_gate_up : NULL, .gate = &y->exp_gate,
                          .up = &y->exp_up, .down = &y->exp_down, .E = m->n_expert, .K = m->n_expert_used,
                          .Fe = m->n_ff_exp };
    g4_op_moe_route(&w->ex, &mw, w->x, T, H, m->eps, w->moe_logit, w->moe_in, w->moe_sel, w->moe_w);
    g4_op_rmsnorm(&w->ex, w->h2, w->x, y->pre_ffw_norm_2, T, H, (size_t)H, m->eps, NULL);
    /* every buffer holds n_batch rows (scratch_sizes): chunks of that many */
    g4_moe_scratch sc = { .in = w->moe_in, .out = w->moe_out, .ff_a = w->ff_a, .ff_b = w->ff_b, .rows = w->moe_rows,
                          .cap = w->n_batch };
    g4_op_moe_experts(&w->ex, &mw, w->h2, T, H, w->moe_sel, w->moe_w, &sc, out);
}

static void feed_forward(g4_workspace *w, int l, int T) {
    const g4_model *m = w->m;
    const g4_layer *y = &m->layers[l];
    g4_exec *ex = &w->ex;
    int H = m->n_embd;
    g4_op_rmsnorm(ex, w->xn, w->x, y->ffn_norm, T, H, (size_t)H, m->eps, NULL);
    float *f = w->moe_acc && m->n_expert ? w->moe_acc : w->h2;
    mlp(w, y, w->xn, T, f);
    if (m->n_expert) {
        g4_op_rmsnorm(ex, f, f, y->post_ffw_norm_1, T, H, (size_t)H, m->eps, NULL);
        /* moe() uses xn-free scratch: h2, moe_in, moe_out, ff_a, ff_b */
        moe(w, y, T, w->xn);
        g4_op_rmsnorm(ex, w->xn, w->xn, y->post_ffw_norm_2, T, H, (size_t)H, m->eps, f);
    }
    g4_op_rmsnorm(ex, f, f, y->post_ffw_norm, T, H, (size_t)H, m->eps, w->x);
}

/* ---- per-layer embeddings (E2B/E4B, §2.3) --------------------------------------- */

/* Token t's per-layer inputs: its row of the [V][L*P] table decoded into
 * its own [L*P] slice of ff_a (ff_a holds T rows of >= L*P), combined with
 * the context part already in ple. */
static void ple_token(g4_workspace *w, const g4_batch *b, int l, int t) {
    const g4_model *m = w->m;
    int H = m->n_embd, L = m->n_layer, P = m->n_ple, LP = L * P;
    (void)l;
    const void *row = g4_mat_row(&m->ple_embd, 0, b->tokens[t]);
    float *tok = w->ff_a + (size_t)t * LP;
    g4_type_info(m->ple_embd.type)->to_float(row, tok, LP);
    if (m->ple_in_file_map) g4_release_rows(&m->ple_embd, row, m->ple_embd.row_bytes);
    g4_op_ple_combine(w->ple + (size_t)t * LP, tok, L, P, H, m->ple_proj_norm, m->eps);
}

static void ple_inputs(g4_workspace *w, const g4_batch *b) {
    const g4_model *m = w->m;
    int T = b->n, H = m->n_embd, LP = m->n_layer * m->n_ple;
    /* context part: project the input embedding (already in x) to L*P */
    w->ex.mm.pbf16 = true;   /* its prompt tokens as bf16 products (matmul.h) */
    g4_op_matmul(&w->ex, &m->ple_model_proj, 0, w->x, H, T, w->ple, LP);
    w->ex.mm.pbf16 = false;
    per_token(w, b, 0, T, ple_token);   /* token part */
}

/* layer l's gate of token t times its per-layer input, through GeGLU */
static void ple_gate_token(g4_workspace *w, const g4_batch *b, int l, int t) {
    const g4_model *m = w->m;
    int P = m->n_ple, LP = m->n_layer * P;
    (void)b;
    float *g = w->ple_g + (size_t)t * P;
    g4_geglu(g, g, w->ple + (size_t)t * LP + (size_t)l * P, P, w->ex.precision);
}

static void ple_branch(g4_workspace *w, const g4_batch *b, int l, int T) {
    const g4_model *m = w->m;
    const g4_layer *y = &m->layers[l];
    int H = m->n_embd, P = m->n_ple;
    g4_op_matmul(&w->ex, &y->ple_gate, 0, w->x, H, T, w->ple_g, P);
    per_token(w, b, l, T, ple_gate_token);
    g4_op_matmul(&w->ex, &y->ple_proj, 0, w->ple_g, P, T, w->h2, H);
    g4_op_rmsnorm(&w->ex, w->h2, w->h2, y->ple_post_norm, T, H, (size_t)H, m->eps, w->x);
}

/* token t's residual row times the layer's output scale */
static void scale_token(g4_workspace *w, const g4_batch *b, int l, int t) {
    (void)b;
    const size_t H = (size_t)w->m->n_embd;
    g4_op_scale(w->x + (size_t)t * H, H, w->m->layers[l].out_scale);
}

/* ---- the whole pass --------------------------------------------------------------- */

/* Every token id in the vocabulary, every sequence given and continued in
 * order, its batch share within its ring and its context. */
static int check_batch(const g4_workspace *w, const g4_batch *b, g4_error *err) {
    const g4_model *m = w->m;
    int T = b->n;
    if (T < 1 || T > w->n_batch) return g4_seterr(err, "batch of %d tokens (allowed 1..%d)", T, w->n_batch);
    if (!b->tokens || !b->pos) return g4_seterr(err, "batch without token ids or positions");
    for (int t = 0; t < T; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= m->n_vocab)
            return g4_seterr(err, "token id %d at batch index %d is outside the vocabulary (0..%d)", b->tokens[t],
                             t, m->n_vocab - 1);
    if (!b->seq) {   /* one sequence: positions n_past, n_past + 1, ... (O(T), not the pairwise count below) */
        g4_seq *s = b->seq0;
        if (!s || s->m != m) return g4_seterr(err, "batch without a sequence of this model");
        if (s->n_past + T > s->n_ctx)
            return g4_seterr(err, "context full: %d tokens + %d new exceed the context size %d", s->n_past, T,
                             s->n_ctx);
        if (T > s->n_batch) return g4_seterr(err, "%d tokens of one sequence in a batch (most %d)", T, s->n_batch);
        for (int t = 0; t < T; t++)
            if (b->pos[t] != s->n_past + t)
                return g4_seterr(err, "batch index %d: position %d, but its sequence continues at %d", t, b->pos[t],
                                 s->n_past + t);
        return 0;
    }
    for (int t = 0; t < T; t++) {
        g4_seq *s = seq_of(b, t);
        if (!s || s->m != m) return g4_seterr(err, "batch index %d: no sequence of this model", t);
        /* the sequence's next position: its n_past plus its earlier tokens here */
        int want = s->n_past, n_here = 1;
        for (int u = 0; u < t; u++)
            if (seq_of(b, u) == s) { want++; n_here++; }
        if (b->pos[t] != want)
            return g4_seterr(err, "batch index %d: position %d, but its sequence continues at %d", t, b->pos[t],
                             want);
        if (want >= s->n_ctx)
            return g4_seterr(err, "context full: %d tokens + %d new exceed the context size %d", s->n_past,
                             n_here, s->n_ctx);
        if (n_here > s->n_batch)
            return g4_seterr(err, "batch index %d: more than %d tokens of one sequence in a batch", t, s->n_batch);
    }
    return 0;
}

int g4_forward(g4_workspace *w, const g4_batch *b, float *logits, int all_rows, g4_error *err) {
    const g4_model *m = w->m;
    if (check_batch(w, b, err)) return -1;
    /* cache pages for the new positions (a page shared with a fork is copied) */
    if (!b->seq) {
        int rc = g4_seq_reserve(b->seq0, b->pos[0], b->n, err);
        if (rc) return rc;
    } else {
        for (int t = 0; t < b->n; t++) {
            int rc = g4_seq_reserve(b->seq[t], b->pos[t], 1, err);
            if (rc) return rc;
        }
    }
    int T = b->n, H = m->n_embd;
    const g4_type_traits *et = g4_type_info(m->tok_embd.type);
    float es = sqrtf((float)H);
    for (int t = 0; t < T; t++) {
        float *x = w->x + (size_t)t * H;
        if (b->embd && (!b->has_embd || b->has_embd[t])) {
            memcpy(x, b->embd + (size_t)t * H, (size_t)H * sizeof(float));   /* soft tokens are not scaled */
        } else {
            et->to_float(g4_mat_row(&m->tok_embd, 0, b->tokens[t]), x, H);
            g4_op_scale(x, (size_t)H, es);
        }
    }
    memcpy(w->pos, b->pos, (size_t)T * sizeof(int32_t));
    /* one table per layer kind: every layer of a kind has the same rope */
    if (w->d.l_swa >= 0)
        g4_op_rope_table(w->rope, w->pos, T, w->d.rot_swa, m->layers[w->d.l_swa].rope_base, NULL);
    if (w->d.l_full >= 0)
        g4_op_rope_table(w->rope + (size_t)T * w->d.rot_swa, w->pos, T, w->d.rot_full,
                         m->layers[w->d.l_full].rope_base, m->layers[w->d.l_full].rope_freqs);
    /* visible positions, once per layer kind: sliding (bidirectional within a
     * run of media tokens when the batch names runs) and full (causal) */
    g4_mask swa = { .kind = b->run ? G4_MASK_BIDIR : G4_MASK_SLIDING, .window = m->sliding_window, .run = b->run };
    g4_mask full = { .kind = G4_MASK_CAUSAL };
    g4_attn_ranges(&swa, w->pos, T, 0, w->lo_swa, w->hi_swa);
    g4_attn_ranges(&full, w->pos, T, 0, w->lo_full, w->hi_full);
    /* The tokens whose logits nobody reads (prompt tokens but the last) may
     * take the weights' panel kernels, the others (decode, verify, a
     * prompt's last token) take gemm: a choice each token's own role makes,
     * so the session and the scheduler, batched or alone, chunked or not,
     * compute a token the same way (matmul.h: g4_mm_scratch.pcol). */
    int np = 0;
    for (int t = 0; t < T; t++)
        if (!logits || !(b->out ? b->out[t] != 0 : (all_rows || t == T - 1))) w->pcol[np++] = t;
    w->ex.mm.pcol = w->pcol;
    w->ex.mm.np = np;
    if (m->n_ple) ple_inputs(w, b);
    for (int l = 0; l < m->n_layer; l++) {
        attention(w, b, l);
        feed_forward(w, l, T);
        if (m->n_ple) ple_branch(w, b, l, T);
        if (T < 8) g4_op_scale(w->x, (size_t)T * H, m->layers[l].out_scale);
        else per_token(w, b, l, T, scale_token);
    }
    w->ex.mm.pcol = NULL;   /* the head's rows are the flagged tokens only */
    w->ex.mm.np = 0;
    for (int t = 0; t < T; t++) seq_of(b, t)->n_past++;
    if (!logits) return 0;
    int n = 0;      /* the rows asked for, normed into xn in batch order */
    for (int t = 0; t < T; t++)
        if (b->out ? b->out[t] != 0 : (all_rows || t == T - 1))
            g4_rmsnorm(w->xn + (size_t)n++ * H, w->x + (size_t)t * H, m->output_norm, H, m->eps);
    if (!n) return 0;
    if (b->hidden) memcpy(b->hidden, w->xn, (size_t)n * H * sizeof(float));
    /* final softcap applied by the threads, on the rows each computed */
    g4_mm_job head = { .w = &m->output, .y = logits, .ldy = m->n_vocab, .softcap = m->softcap };
    g4_op_matmul_multi(&w->ex, &head, 1, w->xn, H, n);
    return 0;
}
