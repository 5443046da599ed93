/* Gemma 4 decoder forward pass (shared/docs/gemma4-text.md §2).
 *
 * Activations are row-major [T][width] f32. Per layer:
 *   attention (own K/V or the donor's) -> post-attn norm -> residual
 *   dense GeGLU MLP (+ MoE branch on 26B-A4B) -> post-ffw norm -> residual
 *   per-layer-embedding branch (E2B/E4B) -> residual
 *   whole residual stream *= layer_output_scale
 * The order matters and follows §2.4.1 exactly. */
#include "model/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/act.h"
#include "tensor/vec.h"
#include "tensor/types.h"

typedef struct dims {
    int T, H, nH, L, P, E, K, Fe, V;
    int hd_max, nq_max, nkv_max, ff_max, max_in;
    int rot_full, rot_swa;
} dims;

static dims get_dims(const g4_model *m, int T) {
    dims d = { .T = T, .H = m->n_embd, .nH = m->n_head, .L = m->n_layer, .P = m->n_ple,
               .E = m->n_expert, .K = m->n_expert_used, .Fe = m->n_ff_exp, .V = m->n_vocab };
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        if (y->head_dim > d.hd_max) d.hd_max = y->head_dim;
        if (y->n_kv_head * y->head_dim > d.nkv_max) d.nkv_max = y->n_kv_head * y->head_dim;
        if (y->n_ff > d.ff_max) d.ff_max = y->n_ff;
        if (y->swa) d.rot_swa = y->n_rot; else d.rot_full = y->n_rot;
    }
    d.nq_max = d.nH * d.hd_max;
    int mi = d.H;
    if (d.nq_max > mi) mi = d.nq_max;
    if (d.ff_max > mi) mi = d.ff_max;
    if (d.Fe > mi) mi = d.Fe;
    if (d.P > mi) mi = d.P;
    d.max_in = mi;
    return d;
}

/* attention blocks (positions per online-softmax step) and decode split limit */
enum { ATT_B = 64, ATT_MAXSPLIT = 8 };

/* Per-thread workspace floats: scores, maxima, sums, accumulators. */
static size_t attn_ws_floats(int nH, int nq_max) { return (size_t)nH * (ATT_B + 2) + (size_t)nq_max; }

/* Scratch sizes in floats, in allocation order (one place for alloc and plan). */
enum { S_X, S_XN, S_H2, S_Q, S_K, S_V, S_ATT, S_FFA, S_FFB, S_PLE, S_PLEG, S_ROPE, S_SCORES,
       S_MOEL, S_MOEW, S_MOEIN, S_MOEOUT, S_MOEACC, S_ROWBUF, S_ACT, S_COUNT };

static void scratch_sizes(const g4_model *m, int n_ctx, int n_batch, int nth, size_t *sz) {
    dims d = get_dims(m, n_batch);
    size_t T = (size_t)n_batch;
    /* ff_a/ff_b: MLP hidden rows, fused expert gate|up rows, and (PLE) one
     * decoded [L*P] token row */
    int ffw = d.ff_max > 2 * d.Fe ? d.ff_max : 2 * d.Fe;
    if (d.L * d.P > ffw) ffw = d.L * d.P;
    sz[S_X] = sz[S_XN] = sz[S_H2] = T * d.H;
    sz[S_Q] = T * d.nq_max;
    sz[S_K] = sz[S_V] = T * d.nkv_max;
    sz[S_ATT] = T * d.nq_max;
    sz[S_FFA] = sz[S_FFB] = T * ffw;
    sz[S_PLE] = T * d.L * d.P;
    sz[S_PLEG] = T * d.P;
    sz[S_ROPE] = T * (size_t)(d.rot_full + d.rot_swa);     /* cos+sin per pair, both layer types */
    /* attention: per-thread workspace, then partial results of split decode
     * (fewer than 8 (token, KV head) pairs, each in <= ATT_MAXSPLIT parts) */
    sz[S_SCORES] = (size_t)nth * attn_ws_floats(d.nH, d.nq_max) +
                   (size_t)8 * ATT_MAXSPLIT * ((size_t)d.nq_max + 2 * (size_t)d.nH);
    sz[S_MOEL] = sz[S_MOEW] = T * d.E;
    sz[S_MOEIN] = sz[S_MOEOUT] = sz[S_MOEACC] = d.E ? T * d.H : 0;
    if (d.E) { /* one-token MoE keeps every selected expert's rows (moe_one_token) */
        size_t k = (size_t)d.K;
        if (sz[S_FFA] < k * 2 * d.Fe) sz[S_FFA] = sz[S_FFB] = k * 2 * d.Fe;
        if (sz[S_MOEOUT] < k * d.H) sz[S_MOEOUT] = k * d.H;
    }
    sz[S_ROWBUF] = (size_t)nth * d.max_in;
    sz[S_ACT] = T * d.max_in + 1024;                         /* quantized activations (<= f32 size) */
}

size_t g4_state_scratch_bytes(const g4_model *m, int n_ctx, int n_batch, int n_threads) {
    size_t sz[S_COUNT], total = 0;
    scratch_sizes(m, n_ctx, n_batch, n_threads, sz);
    for (int i = 0; i < S_COUNT; i++) total += sz[i] * sizeof(float);
    dims d = get_dims(m, n_batch);
    total += (size_t)n_batch * (size_t)(d.K + 1) * sizeof(int);
    return total;
}

void g4_state_free(g4_state *s) {
    if (!s) return;
    if (s->kv) {
        for (int l = 0; l < s->m->n_layer; l++) {
            int slot = s->m->layers[l].kv_slot;
            if (slot >= 0) { free(s->kv[slot].k); free(s->kv[slot].v); }
        }
        free(s->kv);
    }
    float **bufs[] = { &s->x, &s->xn, &s->h2, &s->q, &s->k, &s->v, &s->att, &s->ff_a, &s->ff_b, &s->ple,
                       &s->ple_g, &s->rope, &s->scores, &s->moe_logit, &s->moe_w, &s->moe_in, &s->moe_out,
                       &s->moe_acc, &s->mm.rowbuf };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(*bufs[i]);
    free(s->mm.act);
    free(s->moe_sel);
    free(s->moe_rows);
    if (s->pool) g4_pool_free(s->pool);
    free(s);
}

g4_state *g4_state_new(const g4_model *m, int n_ctx, int n_batch, int n_threads, int precision, g4_error *err) {
    if (n_ctx < 1 || n_batch < 1 || n_threads < 1) {
        g4_seterr(err, "context size, batch size and threads must be positive");
        return NULL;
    }
    if (n_batch > n_ctx) n_batch = n_ctx;
    g4_state *s = calloc(1, sizeof *s);
    if (!s) { g4_seterr(err, "out of memory"); return NULL; }
    g4_act_init();
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->n_threads = n_threads;
    s->precision = precision;
    s->pool = g4_pool_new(n_threads);
    g4_kv_plan plan;
    g4_kv_plan_for(m, n_ctx, n_batch, &plan);
    s->kv = calloc((size_t)(plan.n_cache ? plan.n_cache : 1), sizeof *s->kv);
    if (!s->pool || !s->kv) goto oom;
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        if (y->kv_slot < 0) continue;
        g4_kv *c = &s->kv[y->kv_slot];
        c->cap = y->swa ? (int)plan.swa_ring : n_ctx;
        size_t n = (size_t)c->cap * (size_t)y->n_kv_head * (size_t)y->head_dim;
        c->k = malloc(n * sizeof(float));
        c->v = malloc(n * sizeof(float));
        if (!c->k || !c->v) goto oom;
    }
    size_t sz[S_COUNT];
    scratch_sizes(m, n_ctx, n_batch, n_threads, sz);
    float **bufs[S_COUNT] = { &s->x, &s->xn, &s->h2, &s->q, &s->k, &s->v, &s->att, &s->ff_a, &s->ff_b, &s->ple,
                              &s->ple_g, &s->rope, &s->scores, &s->moe_logit, &s->moe_w, &s->moe_in,
                              &s->moe_out, &s->moe_acc, &s->mm.rowbuf, NULL };
    for (int i = 0; i < S_ACT; i++) {
        *bufs[i] = malloc((sz[i] ? sz[i] : 1) * sizeof(float));
        if (!*bufs[i]) goto oom;
    }
    s->mm.act = malloc(sz[S_ACT] * sizeof(float));
    s->mm.act_bytes = sz[S_ACT] * sizeof(float);
    s->mm.rowbuf_n = sz[S_ROWBUF];
    dims d = get_dims(m, n_batch);
    s->moe_sel = malloc((size_t)n_batch * (size_t)(d.K ? d.K : 1) * sizeof(int));
    s->moe_rows = malloc((size_t)n_batch * sizeof(int));
    if (!s->mm.act || !s->moe_sel || !s->moe_rows) goto oom;
    s->scratch_bytes = g4_state_scratch_bytes(m, n_ctx, n_batch, n_threads);
    return s;
oom:
    g4_state_free(s);
    g4_seterr(err, "out of memory allocating the context (n_ctx %d, n_batch %d); try a smaller --ctx", n_ctx,
              n_batch);
    return NULL;
}

/* ---- data-parallel helpers ------------------------------------------------------
 * Elementwise work is small next to the matmuls at batch 1 (run inline), but
 * at prefill batch sizes GELU and the norms over [T][H] rows are worth
 * splitting across the pool. */

#define PAR_MIN_WORK 32768

/* Row-wise RMSNorm of n rows of `width`: dst = norm(src) * w; if add is not
 * NULL, then add += dst (the residual add that follows most norms). Rows are
 * `ld` floats apart in every array. */
typedef struct norm_task {
    float *dst, *add;
    const float *src, *w;
    int n, width;
    size_t ld;
    float eps;
} norm_task;

static void norm_rows(void *arg, int ith, int nth) {
    norm_task *k = arg;
    long lo, hi;
    g4_split(k->n, ith, nth, &lo, &hi);
    for (long t = lo; t < hi; t++) {
        float *d = k->dst + (size_t)t * k->ld;
        g4_rmsnorm(d, k->src + (size_t)t * k->ld, k->w, k->width, k->eps);
        if (k->add) {
            float *a = k->add + (size_t)t * k->ld;
            for (int i = 0; i < k->width; i++) a[i] += d[i];
        }
    }
}

static void par_norm(g4_state *s, float *dst, const float *src, const float *w, int n, int width, size_t ld,
                     float *add) {
    norm_task k = { dst, add, src, w, n, width, ld, s->m->eps };
    if ((long)n * width < PAR_MIN_WORK || n < 2) norm_rows(&k, 0, 1);
    else g4_pool_run(s->pool, norm_rows, &k);
}

/* out = gelu(g) * u over n elements (u may be NULL), split across threads. */
typedef struct geglu_task {
    float *out;
    const float *g, *u;
    long n;
    int exact;
} geglu_task;

static void geglu_worker(void *arg, int ith, int nth) {
    geglu_task *k = arg;
    long lo, hi;
    g4_split(k->n / 8, ith, nth, &lo, &hi); /* 8-element chunks keep vector loops whole */
    lo *= 8;
    hi = ith == nth - 1 ? k->n : hi * 8;
    if (hi > lo) g4_geglu(k->out + lo, k->g + lo, k->u ? k->u + lo : NULL, hi - lo, k->exact);
}

static void par_geglu(g4_state *s, float *out, const float *g, const float *u, long n) {
    geglu_task k = { out, g, u, n, s->precision };
    /* a decode step's 6-12K GELUs (~10 us) are worth one barrier */
    if (n < PAR_MIN_WORK / 4) geglu_worker(&k, 0, 1);
    else g4_pool_run(s->pool, geglu_worker, &k);
}

/* NeoX rotation of one head: pairs (i, i + n_rot/2); cs holds cos,sin per pair. */
static void rope_apply(float *x, const float *cs, int n_rot) {
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

/* cos/sin for every token and pair: angle = pos * base^(-2i/n_rot) / factor_i.
 * Computed in double: positions reach 2^18 and f32 angles would lose bits. */
static void rope_table(float *out, const int *pos, int T, int n_rot, float base, const float *factors) {
    int half = n_rot / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double f = pow((double)base, -2.0 * i / n_rot);
            if (factors) f /= factors[i];
            double a = pos[t] * f;
            out[(size_t)t * n_rot + 2 * i] = (float)cos(a);
            out[(size_t)t * n_rot + 2 * i + 1] = (float)sin(a);
        }
}

/* ---- attention ----------------------------------------------------------------- */

/* Work item = (token, KV head, part of the visible positions). The G query
 * heads that share a KV head are done together, so each cache row is read
 * once per group (qk/pv kernels in vec.c). Positions go in blocks of ATT_B
 * with an online softmax (running max and denominator per head). When there
 * are fewer (token, KV head) pairs than threads (decode), the positions are
 * split into parts whose partial sums are merged afterwards. */

typedef struct attn_task {
    g4_state *s;
    const g4_layer *y;
    const g4_kv *c;
    int T, pos0, ns;
    size_t ws;     /* per-thread workspace floats (attn_ws_floats) */
    float *part;   /* ns > 1: per (t, g, part): G maxima, G sums, G*hd partial outputs */
} attn_task;


static void attn_range(const attn_task *a, int t, int *j0, int *len) {
    const g4_model *m = a->s->m;
    int pos = a->pos0 + t;
    *j0 = 0;
    if (a->y->swa && pos - m->sliding_window + 1 > 0) *j0 = pos - m->sliding_window + 1;
    *len = pos + 1 - *j0;
}

/* G heads over positions [j0, j1): mx[h], sum[h], unnormalised acc[h][hd]. */
static void attn_span(const g4_vec_ops *vo, const float *q, int G, int hd, const g4_kv *c, int nkv, int g,
                      int j0, int j1, float *sc, float *mx, float *sum, float *acc) {
    for (int h = 0; h < G; h++) { mx[h] = -INFINITY; sum[h] = 0; }
    memset(acc, 0, (size_t)G * hd * sizeof(float));
    size_t rs = (size_t)nkv * hd;
    for (int b0 = j0; b0 < j1;) {
        int slot = b0 % c->cap, nb = j1 - b0;
        if (nb > ATT_B) nb = ATT_B;
        if (nb > c->cap - slot) nb = c->cap - slot;     /* the ring wraps here */
        const float *k = c->k + (size_t)slot * rs + (size_t)g * hd, *v = c->v + (size_t)slot * rs + (size_t)g * hd;
        vo->qk(sc, ATT_B, q, G, k, rs, nb, hd);
        for (int h = 0; h < G; h++) {
            float *sh = sc + (size_t)h * ATT_B, bm = mx[h];
            for (int j = 0; j < nb; j++) if (sh[j] > bm) bm = sh[j];
            if (bm > mx[h]) {
                float r = expf(mx[h] - bm);   /* 0 on the first block */
                sum[h] *= r;
                for (int i = 0; i < hd; i++) acc[(size_t)h * hd + i] *= r;
                mx[h] = bm;
            }
            sum[h] += vo->expsum(sh, nb, bm);
        }
        vo->pv(acc, sc, ATT_B, G, v, rs, nb, hd);
        b0 += nb;
    }
}

static void attn_worker(void *arg, int ith, int nth) {
    attn_task *a = arg;
    g4_state *s = a->s;
    const g4_layer *y = a->y;
    const g4_model *m = s->m;
    int hd = y->head_dim, nH = m->n_head, nkv = y->n_kv_head, G = nH / nkv, nq = nH * hd, ns = a->ns;
    float *ws = s->scores + (size_t)ith * a->ws;
    float *sc = ws, *mx = sc + (size_t)G * ATT_B, *sum = mx + G, *acc = sum + G;
    const g4_vec_ops *vo = g4_vec_get();
    long lo, hi;
    g4_split((long)a->T * nkv * ns, ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        int t = (int)(it / ((long)nkv * ns)), g = (int)(it / ns % nkv), part = (int)(it % ns);
        int j0, len;
        attn_range(a, t, &j0, &len);
        int p0 = j0 + (int)((long)len * part / ns), p1 = j0 + (int)((long)len * (part + 1) / ns);
        const float *q = s->q + (size_t)t * nq + (size_t)g * G * hd;
        if (ns == 1) {
            attn_span(vo, q, G, hd, a->c, nkv, g, p0, p1, sc, mx, sum, acc);
            float *o = s->att + (size_t)t * nq + (size_t)g * G * hd;
            for (int h = 0; h < G; h++) {
                float inv = 1.0f / sum[h];
                for (int i = 0; i < hd; i++) o[(size_t)h * hd + i] = acc[(size_t)h * hd + i] * inv;
            }
        } else {
            float *pb = a->part + (size_t)it * G * (hd + 2);
            attn_span(vo, q, G, hd, a->c, nkv, g, p0, p1, sc, pb, pb + G, pb + 2 * G);
        }
    }
}

/* ns > 1: out_h = sum_p acc_p,h e^(m_p - M) / sum_p l_p e^(m_p - M) */
static void attn_merge(attn_task *a) {
    g4_state *s = a->s;
    const g4_vec_ops *vo = g4_vec_get();
    int hd = a->y->head_dim, nH = s->m->n_head, nkv = a->y->n_kv_head, G = nH / nkv, ns = a->ns;
    for (int t = 0; t < a->T; t++)
        for (int g = 0; g < nkv; g++) {
            const float *pb = a->part + ((size_t)t * nkv + g) * ns * G * (hd + 2);
            float *o = s->att + (size_t)t * nH * hd + (size_t)g * G * hd;
            for (int h = 0; h < G; h++) {
                float M = -INFINITY, L = 0;
                for (int p = 0; p < ns; p++) {
                    float mp = pb[(size_t)p * G * (hd + 2) + h];
                    if (mp > M) M = mp;
                }
                float *oh = o + (size_t)h * hd;
                memset(oh, 0, (size_t)hd * sizeof(float));
                for (int p = 0; p < ns; p++) {
                    const float *pp = pb + (size_t)p * G * (hd + 2);
                    if (pp[h] == -INFINITY) continue;      /* empty part */
                    float w = expf(pp[h] - M);
                    L += pp[G + h] * w;
                    vo->axpy(oh, w, pp + 2 * G + (size_t)h * hd, hd);
                }
                float inv = 1.0f / L;
                for (int i = 0; i < hd; i++) oh[i] *= inv;
            }
        }
}

static void attend(g4_state *s, const g4_layer *y, int T, int pos0) {
    const g4_model *m = s->m;
    size_t ws = attn_ws_floats(m->n_head, get_dims(m, 1).nq_max);
    attn_task at = { s, y, &s->kv[m->layers[y->kv_src].kv_slot], T, pos0, 1, ws, s->scores };
    int nth = s->n_threads, pairs = T * y->n_kv_head;
    if (pairs < 8) {
        /* too few pairs to keep the threads busy: split the positions into
         * parts of >= 32 (>= 256 left one thread alone on most decode steps
         * of E2B, one KV head: 3% of a step at depths 0-256). The split
         * depends on the length only, never on the thread count, so results
         * do not either. */
        int j0, len;
        attn_range(&at, 0, &j0, &len);
        int ns = len / 32;
        if (ns > ATT_MAXSPLIT) ns = ATT_MAXSPLIT;
        if (ns > 1) {
            at.ns = ns;
            at.part = s->scores + (size_t)nth * ws;
        }
    }
    /* one work item (decode with one KV head, short context): no hand-off */
    if ((long)T * y->n_kv_head * at.ns == 1) attn_worker(&at, 0, 1);
    else g4_pool_run(s->pool, attn_worker, &at);
    if (at.ns > 1) attn_merge(&at);
}

static void attention(g4_state *s, int l, int T) {
    const g4_model *m = s->m;
    const g4_layer *y = &m->layers[l];
    int H = m->n_embd, nH = m->n_head, hd = y->head_dim, nkv = y->n_kv_head;
    int nq = nH * hd, nk = nkv * hd, pos0 = s->n_past;
    const float *cs = s->rope + (y->swa ? 0 : (size_t)T * get_dims(m, 1).rot_swa);
    int rot = y->n_rot;
    g4_mm_scratch *mm = &s->mm;
    int prec = s->precision;

    par_norm(s, s->xn, s->x, y->attn_norm, T, H, (size_t)H, NULL);
    /* q, k, v in one parallel section (one activation quantization) */
    g4_mm_job jobs[3] = { { .w = &y->wq, .y = s->q, .ldy = nq } };
    int nj = 1;
    if (y->own_kv) {
        jobs[nj++] = (g4_mm_job){ .w = &y->wk, .y = s->k, .ldy = nk };
        if (!y->k_eq_v) jobs[nj++] = (g4_mm_job){ .w = &y->wv, .y = s->v, .ldy = nk };
    }
    g4_matmul_multi(s->pool, jobs, nj, s->xn, H, T, prec, mm);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nH; h++) {
            float *q = s->q + (size_t)t * nq + (size_t)h * hd;
            g4_rmsnorm(q, q, y->q_norm, hd, m->eps);
            rope_apply(q, cs + (size_t)t * rot, rot);
        }
    if (y->own_kv) {
        if (y->k_eq_v) memcpy(s->v, s->k, (size_t)T * nk * sizeof(float)); /* V = raw K projection */
        g4_kv *c = &s->kv[y->kv_slot];
        for (int t = 0; t < T; t++) {
            size_t slot = (size_t)((pos0 + t) % c->cap);
            for (int g = 0; g < nkv; g++) {
                float *k = s->k + (size_t)t * nk + (size_t)g * hd;
                float *v = s->v + (size_t)t * nk + (size_t)g * hd;
                g4_rmsnorm(k, k, y->k_norm, hd, m->eps);
                rope_apply(k, cs + (size_t)t * rot, rot);
                g4_rmsnorm(v, v, NULL, hd, m->eps);
                memcpy(c->k + (slot * nkv + g) * hd, k, (size_t)hd * sizeof(float));
                memcpy(c->v + (slot * nkv + g) * hd, v, (size_t)hd * sizeof(float));
            }
        }
    }
    attend(s, y, T, pos0);
    g4_matmul(s->pool, &y->wo, 0, s->att, nq, T, s->h2, H, prec, mm);
    par_norm(s, s->h2, s->h2, y->post_attn_norm, T, H, (size_t)H, s->x);
}

/* ---- feed-forward ---------------------------------------------------------------- */

/* GeGLU MLP of rows `in` [T][H] -> out [T][H] using ff_a/ff_b as scratch. */
static void mlp(g4_state *s, const g4_mat *gate, const g4_mat *up, const g4_mat *down, const float *in, int T,
                float *out) {
    int H = s->m->n_embd, F = (int)gate->n_out;
    g4_mm_job jobs[2] = { { .w = gate, .y = s->ff_a, .ldy = F }, { .w = up, .y = s->ff_b, .ldy = F } };
    g4_matmul_multi(s->pool, jobs, 2, in, H, T, s->precision, &s->mm);
    par_geglu(s, s->ff_a, s->ff_a, s->ff_b, (long)T * F);
    g4_matmul(s->pool, down, 0, s->ff_a, F, T, out, H, s->precision, &s->mm);
}

/* Mixture of experts (26B-A4B, §2.4.4): router on the post-attention residual,
 * softmax over all experts, top-k, renormalise, per-expert scale; expert
 * inputs use pre_ffw_norm_2. Tokens are grouped per expert so each selected
 * expert's weights are read once per batch. Result in out [T][H]. */
/* Decode: the K selected experts of one token as two parallel sections
 * (all gate/up products, then all down products) instead of 2K small ones.
 * Outputs are added in ascending expert id, the order of the batch path. */
static void moe_one_token(g4_state *s, const g4_layer *y, float *out) {
    const g4_model *m = s->m;
    int H = m->n_embd, E = m->n_expert, K = m->n_expert_used, Fe = m->n_ff_exp;
    int sel[G4_MM_MAX_JOBS];
    for (int k = 0; k < K; k++) {         /* insertion sort by id */
        int e = s->moe_sel[k], j = k;
        for (; j > 0 && sel[j - 1] > e; j--) sel[j] = sel[j - 1];
        sel[j] = e;
    }
    g4_mm_job jobs[G4_MM_MAX_JOBS];
    int nj = 0;
    for (int k = 0; k < K; k++) {
        float *gu = s->ff_a + (size_t)k * 2 * Fe;   /* gate rows, then up rows */
        if (y->exp_gate_up.data) {
            jobs[nj++] = (g4_mm_job){ .w = &y->exp_gate_up, .mat = sel[k], .y = gu, .ldy = 2 * Fe };
        } else {
            jobs[nj++] = (g4_mm_job){ .w = &y->exp_gate, .mat = sel[k], .y = gu, .ldy = 2 * Fe };
            jobs[nj++] = (g4_mm_job){ .w = &y->exp_up, .mat = sel[k], .y = gu + Fe, .ldy = 2 * Fe };
        }
    }
    g4_matmul_multi(s->pool, jobs, nj, s->h2, H, 1, s->precision, &s->mm);
    for (int k = 0; k < K; k++) {
        float *gu = s->ff_a + (size_t)k * 2 * Fe;
        g4_geglu(s->ff_b + (size_t)k * Fe, gu, gu + Fe, Fe, s->precision);
        jobs[k] = (g4_mm_job){ .w = &y->exp_down, .mat = sel[k], .x = s->ff_b + (size_t)k * Fe,
                               .y = s->moe_out + (size_t)k * H, .ldy = H };
    }
    g4_matmul_multi(s->pool, jobs, K, NULL, Fe, 1, s->precision, &s->mm);
    for (int k = 0; k < K; k++) {
        float w = s->moe_w[sel[k]];
        const float *src = s->moe_out + (size_t)k * H;
        for (int j = 0; j < H; j++) out[j] += w * src[j];
    }
    (void)E;
}

static void moe(g4_state *s, const g4_layer *y, int T, float *out) {
    const g4_model *m = s->m;
    int H = m->n_embd, E = m->n_expert, K = m->n_expert_used, Fe = m->n_ff_exp;
    float rs = 1.0f / sqrtf((float)H);
    for (int t = 0; t < T; t++) {
        float *r = s->moe_in + (size_t)t * H;
        g4_rmsnorm(r, s->x + (size_t)t * H, NULL, H, m->eps);
        for (int i = 0; i < H; i++) r[i] *= y->router_scale[i] * rs;
    }
    g4_matmul(s->pool, &y->router, 0, s->moe_in, H, T, s->moe_logit, E, s->precision, &s->mm);
    for (int t = 0; t < T; t++) {
        float *lg = s->moe_logit + (size_t)t * E, mx = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++) if (lg[e] > mx) mx = lg[e];
        for (int e = 0; e < E; e++) { lg[e] = expf(lg[e] - mx); sum += lg[e]; }
        for (int e = 0; e < E; e++) lg[e] /= sum;
        int *sel = s->moe_sel + (size_t)t * K;
        float *w = s->moe_w + (size_t)t * E, wsum = 0;
        for (int e = 0; e < E; e++) w[e] = 0;
        for (int k = 0; k < K; k++) {          /* top-k, lowest id on ties */
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int j = 0; j < k; j++) taken |= sel[j] == e;
                if (!taken && (best < 0 || lg[e] > lg[best])) best = e;
            }
            sel[k] = best;
            wsum += lg[best];
        }
        if (wsum < 6.1e-5f) wsum = 6.1e-5f;
        for (int k = 0; k < K; k++)
            w[sel[k]] = lg[sel[k]] / wsum * (y->expert_scale ? y->expert_scale[sel[k]] : 1.0f);
    }
    par_norm(s, s->h2, s->x, y->pre_ffw_norm_2, T, H, (size_t)H, NULL);
    memset(out, 0, (size_t)T * H * sizeof(float));
    if (T == 1 && 2 * K <= G4_MM_MAX_JOBS) { moe_one_token(s, y, out); return; }
    for (int e = 0; e < E; e++) {
        int n = 0;
        for (int t = 0; t < T; t++)
        {
            bool chosen = false;
            for (int k = 0; k < K; k++) chosen |= s->moe_sel[(size_t)t * K + k] == e;
            if (chosen) s->moe_rows[n++] = t;
        }
        if (!n) continue;
        for (int i = 0; i < n; i++)
            memcpy(s->moe_in + (size_t)i * H, s->h2 + (size_t)s->moe_rows[i] * H, (size_t)H * sizeof(float));
        if (y->exp_gate_up.data) {
            /* fused [2*Fe] rows: gate rows first, then up */
            g4_matmul(s->pool, &y->exp_gate_up, e, s->moe_in, H, n, s->ff_a, 2 * Fe, s->precision, &s->mm);
            for (int i = 0; i < n; i++) {
                float *gu = s->ff_a + (size_t)i * 2 * Fe, *o = s->ff_b + (size_t)i * Fe;
                g4_geglu(o, gu, gu + Fe, Fe, s->precision);
            }
        } else {
            g4_matmul(s->pool, &y->exp_gate, e, s->moe_in, H, n, s->ff_a, Fe, s->precision, &s->mm);
            g4_matmul(s->pool, &y->exp_up, e, s->moe_in, H, n, s->ff_b, Fe, s->precision, &s->mm);
            par_geglu(s, s->ff_b, s->ff_a, s->ff_b, (long)n * Fe);
        }
        g4_matmul(s->pool, &y->exp_down, e, s->ff_b, Fe, n, s->moe_out, H, s->precision, &s->mm);
        for (int i = 0; i < n; i++) {
            int t = s->moe_rows[i];
            float w = s->moe_w[(size_t)t * E + e];
            float *o = out + (size_t)t * H;
            const float *src = s->moe_out + (size_t)i * H;
            for (int j = 0; j < H; j++) o[j] += w * src[j];
        }
    }
}

static void feed_forward(g4_state *s, int l, int T) {
    const g4_model *m = s->m;
    const g4_layer *y = &m->layers[l];
    int H = m->n_embd;
    par_norm(s, s->xn, s->x, y->ffn_norm, T, H, (size_t)H, NULL);
    float *f = s->moe_acc && m->n_expert ? s->moe_acc : s->h2;
    if (m->n_expert) {
        mlp(s, &y->ffn_gate, &y->ffn_up, &y->ffn_down, s->xn, T, f);
        par_norm(s, f, f, y->post_ffw_norm_1, T, H, (size_t)H, NULL);
        /* moe() uses xn-free scratch: h2, moe_in, moe_out, ff_a, ff_b */
        moe(s, y, T, s->xn);
        par_norm(s, s->xn, s->xn, y->post_ffw_norm_2, T, H, (size_t)H, f);
    } else {
        mlp(s, &y->ffn_gate, &y->ffn_up, &y->ffn_down, s->xn, T, f);
    }
    par_norm(s, f, f, y->post_ffw_norm, T, H, (size_t)H, s->x);
}

/* ---- per-layer embeddings (E2B/E4B, §2.3) --------------------------------------- */

static void ple_inputs(g4_state *s, const int32_t *tokens, int T) {
    const g4_model *m = s->m;
    int H = m->n_embd, L = m->n_layer, P = m->n_ple, LP = L * P;
    const g4_type_traits *tt = g4_type_info(m->ple_embd.type);
    /* context part: project the scaled embedding (already in x) to L*P */
    g4_matmul(s->pool, &m->ple_model_proj, 0, s->x, H, T, s->ple, LP, s->precision, &s->mm);
    float ps = 1.0f / sqrtf((float)H), mix = 0.70710678118654752f;
    for (int t = 0; t < T; t++) {
        float *c = s->ple + (size_t)t * LP;
        for (int i = 0; i < LP; i++) c[i] *= ps;
        for (int l = 0; l < L; l++) g4_rmsnorm(c + (size_t)l * P, c + (size_t)l * P, m->ple_proj_norm, P, m->eps);
        /* token part: row of the [V][L*P] table, x sqrt(P) */
        float *tok = s->ff_a;
        const void *row = g4_mat_row(&m->ple_embd, 0, tokens[t]);
        tt->to_float(row, tok, LP);
        if (m->ple_in_file_map) g4_release_rows(&m->ple_embd, row, m->ple_embd.row_bytes);
        float ts = sqrtf((float)P);
        for (int i = 0; i < LP; i++) c[i] = (c[i] + tok[i] * ts) * mix;
    }
}

static void ple_branch(g4_state *s, int l, int T) {
    const g4_model *m = s->m;
    const g4_layer *y = &m->layers[l];
    int H = m->n_embd, P = m->n_ple, LP = m->n_layer * P;
    g4_matmul(s->pool, &y->ple_gate, 0, s->x, H, T, s->ple_g, P, s->precision, &s->mm);
    for (int t = 0; t < T; t++) {
        float *g = s->ple_g + (size_t)t * P;
        const float *pl = s->ple + (size_t)t * LP + (size_t)l * P;
        g4_geglu(g, g, pl, P, s->precision);
    }
    g4_matmul(s->pool, &y->ple_proj, 0, s->ple_g, P, T, s->h2, H, s->precision, &s->mm);
    par_norm(s, s->h2, s->h2, y->ple_post_norm, T, H, (size_t)H, s->x);
}

/* ---- the whole pass --------------------------------------------------------------- */

int g4_forward(g4_state *s, const int32_t *tokens, int T, float *logits, int all_rows, g4_error *err) {
    const g4_model *m = s->m;
    if (T < 1 || T > s->n_batch) return g4_seterr(err, "batch of %d tokens (allowed 1..%d)", T, s->n_batch);
    if (s->n_past + T > s->n_ctx)
        return g4_seterr(err, "context full: %d tokens + %d new exceed the context size %d", s->n_past, T,
                         s->n_ctx);
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= m->n_vocab)
            return g4_seterr(err, "token id %d at batch index %d is outside the vocabulary (0..%d)", tokens[t], t,
                             m->n_vocab - 1);
    int H = m->n_embd;
    const g4_type_traits *et = g4_type_info(m->tok_embd.type);
    float es = sqrtf((float)H);
    for (int t = 0; t < T; t++) {
        float *x = s->x + (size_t)t * H;
        et->to_float(g4_mat_row(&m->tok_embd, 0, tokens[t]), x, H);
        for (int i = 0; i < H; i++) x[i] *= es;
    }
    int *pos = s->moe_rows; /* free until the MoE block; holds T ints */
    for (int t = 0; t < T; t++) pos[t] = s->n_past + t;
    dims d = get_dims(m, T);
    for (int l = 0; l < m->n_layer; l++)
        if (m->layers[l].swa) { rope_table(s->rope, pos, T, d.rot_swa, m->layers[l].rope_base, NULL); break; }
    for (int l = 0; l < m->n_layer; l++)
        if (!m->layers[l].swa) {
            rope_table(s->rope + (size_t)T * d.rot_swa, pos, T, d.rot_full, m->layers[l].rope_base,
                       m->layers[l].rope_freqs);
            break;
        }
    if (m->n_ple) ple_inputs(s, tokens, T);
    for (int l = 0; l < m->n_layer; l++) {
        attention(s, l, T);
        feed_forward(s, l, T);
        if (m->n_ple) ple_branch(s, l, T);
        float sc = m->layers[l].out_scale;
        for (size_t i = 0; i < (size_t)T * H; i++) s->x[i] *= sc;
    }
    s->n_past += T;
    if (!logits) return 0;
    int first = all_rows ? 0 : T - 1, n = T - first;
    for (int t = 0; t < n; t++)
        g4_rmsnorm(s->xn + (size_t)t * H, s->x + (size_t)(first + t) * H, m->output_norm, H, m->eps);
    /* final softcap applied by the threads, on the rows each computed */
    g4_mm_job head = { .w = &m->output, .y = logits, .ldy = m->n_vocab, .softcap = m->softcap };
    g4_matmul_multi(s->pool, &head, 1, s->xn, H, n, s->precision, &s->mm);
    return 0;
}
