/* CPU implementation of the decoder ops (ops.h). */
#include "ops/ops.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "tensor/act.h"
#include "tensor/types.h"
#include "tensor/vec.h"

/* ---- weight products -------------------------------------------------------- */

/* Adapter products small enough for the calling thread: a decode step adapts
 * hundreds of matrices, and two pool sections each would double its
 * barriers. Same dot_f32 per (row, token) as the exact matmul, so exact
 * results do not depend on which way a product went. */
#define LORA_INLINE_MACS (1 << 16)

static void lora_mm(g4_exec *ex, const g4_mat *w, const float *x, int64_t ldx, int T, float *y, int64_t ldy) {
    if ((int64_t)T * w->n_in * w->n_out > LORA_INLINE_MACS) {
        g4_mm_scratch mm = ex->mm;   /* chunks of the batch: no panel tokens (g4_mm_scratch) */
        mm.pcol = NULL;
        mm.np = 0;
        g4_matmul(ex->pool, w, 0, x, ldx, T, y, ldy, ex->precision, &mm);
        return;
    }
    const g4_type_traits *tt = g4_type_info(G4_F32);
    for (int t = 0; t < T; t++)
        for (int64_t o = 0; o < w->n_out; o++)
            y[(size_t)t * ldy + o] = tt->dot_f32(g4_mat_row(w, 0, o), x + (size_t)t * ldx, w->n_in);
}

/* y += scale * B (A x) for every pair of w: two small products per pair over
 * G4_LORA_ROWS tokens at a time (A X as one [T][r] product, not per token),
 * through the same matmul as the weights when large (threads split B's
 * rows; the exact path stays f32). Only 2-D weights are adapted (mat 0). */
static void lora_add(g4_exec *ex, const g4_mat *w, const float *x, int64_t ldx, int T, float *y, int64_t ldy) {
    const g4_lora_entry *e;
    int n = g4_lora_find(ex->lora, w, &e);
    for (int i = 0; i < n; i++, e++) {
        int r = (int)e->a.n_out;
        int64_t no = e->b.n_out;
        float *ax = ex->lora_tmp, *bax = ex->lora_tmp + (size_t)G4_LORA_ROWS * ex->lora->max_r;
        for (int t0 = 0; t0 < T; t0 += G4_LORA_ROWS) {
            int nt = T - t0 < G4_LORA_ROWS ? T - t0 : G4_LORA_ROWS;
            lora_mm(ex, &e->a, x + (size_t)t0 * ldx, ldx, nt, ax, r);
            for (int k = 0; k < nt * r; k++) ax[k] *= e->scale;
            lora_mm(ex, &e->b, ax, r, nt, bax, no);
            for (int t = 0; t < nt; t++) {
                float *yt = y + (size_t)(t0 + t) * ldy;
                const float *d = bax + (size_t)t * no;
                for (int64_t o = 0; o < no; o++) yt[o] += d[o];
            }
        }
    }
}

/* Training's fast path: per pair, A^T [n_in][r] and B^T [r][n_out] laid out
 * once, then each thread's token slab runs u = x A^T and y += (sc u) B^T
 * through the tiled f32 product (tensor/vec.h gemm_nn): the B product is
 * T x n_out dots of length r (16), which the weights' matmul runs as short
 * horizontal sums. Each y element is summed by one thread in a fixed order. */
typedef struct lt_task {
    const g4_lora_entry *e;
    const float *x, *At, *Bt;
    int64_t ldx, ldy;
    int T;
    float *y, *u;
} lt_task;

static void lt_worker(void *arg, int ith, int nth) {
    lt_task *k = arg;
    const g4_lora_entry *e = k->e;
    int r = (int)e->a.n_out, ni = (int)e->a.n_in, no = (int)e->b.n_out;
    const g4_vec_ops *vo = g4_vec_get();
    long t0, t1;
    g4_split(k->T, ith, nth, &t0, &t1);
    if (t0 >= t1) return;
    int tn = (int)(t1 - t0);
    float *u = k->u + (size_t)t0 * r;
    memset(u, 0, (size_t)tn * r * sizeof(float));
    vo->gemm_nn(u, r, k->x + (size_t)t0 * k->ldx, (int)k->ldx, k->At, r, tn, r, ni);
    for (size_t i = 0; i < (size_t)tn * r; i++) u[i] *= e->scale;
    vo->gemm_nn(k->y + (size_t)t0 * k->ldy, (int)k->ldy, u, r, k->Bt, no, tn, no, r);
}

static void lora_add_tiled(g4_exec *ex, const g4_mat *w, const float *x, int64_t ldx, int T, float *y, int64_t ldy) {
    const g4_lora_entry *e;
    int n = g4_lora_find(ex->lora, w, &e);
    for (int i = 0; i < n; i++, e++) {
        int r = (int)e->a.n_out;
        int64_t ni = e->a.n_in, no = e->b.n_out;
        float *At = ex->lora_tiled, *u = At + (size_t)ni * r, *Bt = u + (size_t)T * r;
        const float *A = e->a.data, *B = e->b.data;
        for (int j = 0; j < r; j++)
            for (int64_t c = 0; c < ni; c++) At[(size_t)c * r + j] = A[(size_t)j * ni + c];
        for (int64_t o = 0; o < no; o++)
            for (int j = 0; j < r; j++) Bt[(size_t)j * no + o] = B[(size_t)o * r + j];
        lt_task k = { e, x, At, Bt, ldx, ldy, T, y, u };
        if ((int64_t)T * r * (ni + no) < 65536) lt_worker(&k, 0, 1);
        else g4_pool_run(ex->pool, lt_worker, &k);
    }
}

void g4_op_matmul(g4_exec *ex, const g4_mat *w, int64_t mat, const float *x, int64_t ldx, int T, float *y,
                  int64_t ldy) {
    g4_matmul(ex->pool, w, mat, x, ldx, T, y, ldy, ex->precision, &ex->mm);
    if (ex->lora && ex->lora_tiled && mat == 0) lora_add_tiled(ex, w, x, ldx, T, y, ldy);
    else if (ex->lora) lora_add(ex, w, x, ldx, T, y, ldy);
}

void g4_op_matmul_multi(g4_exec *ex, const g4_mm_job *jobs, int n_jobs, const float *x, int64_t ldx, int T) {
    g4_matmul_multi(ex->pool, jobs, n_jobs, x, ldx, T, ex->precision, &ex->mm);
    /* a job with a softcap (the LM head) is never adapted: g4_lora_bind
     * refuses output.weight, so the cap applied above stays last */
    if (ex->lora)
        for (int j = 0; j < n_jobs; j++)
            (ex->lora_tiled && jobs[j].mat == 0 ? lora_add_tiled : lora_add)(
                ex, jobs[j].w, jobs[j].x ? jobs[j].x : x, ldx, jobs[j].T > 0 && jobs[j].x ? jobs[j].T : T, jobs[j].y,
                jobs[j].ldy);
}

/* ---- data-parallel row ops --------------------------------------------------------
 * Elementwise work is small next to the matmuls at batch 1 (run inline), but
 * at prefill batch sizes GELU and the norms over [T][H] rows are worth
 * splitting across the pool. */

#define PAR_MIN_WORK 32768

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

void g4_op_rmsnorm(g4_exec *ex, float *dst, const float *src, const float *w, int n, int width, size_t ld,
                   float eps, float *add) {
    norm_task k = { dst, add, src, w, n, width, ld, eps };
    if ((long)n * width < PAR_MIN_WORK || n < 2) norm_rows(&k, 0, 1);
    else g4_pool_run(ex->pool, norm_rows, &k);
}

typedef struct geglu_task {
    float *out;
    const float *g, *u;
    long n;
    int exact;
    atomic_long next;   /* next unclaimed element (a multiple of GEGLU_CHUNK) */
} geglu_task;

enum { GEGLU_CHUNK = 2048 };   /* elements per claim: whole vector loops, ~1-2 us */

/* claimed in chunks, so a late thread's share goes to whoever is present;
 * every element's value is the same whichever thread computes it */
static void geglu_worker(void *arg, int ith, int nth) {
    geglu_task *k = arg;
    for (long lo; (lo = atomic_fetch_add_explicit(&k->next, GEGLU_CHUNK, memory_order_relaxed)) < k->n;) {
        long hi = k->n - lo < GEGLU_CHUNK ? k->n : lo + GEGLU_CHUNK;
        g4_geglu(k->out + lo, k->g + lo, k->u ? k->u + lo : NULL, hi - lo, k->exact);
    }
}

void g4_op_geglu(g4_exec *ex, float *out, const float *g, const float *u, long n) {
    geglu_task k = { out, g, u, n, ex->precision, 0 };
    /* a decode step's 6-12K GELUs (~10 us) are worth one barrier */
    if (n < PAR_MIN_WORK / 4) geglu_worker(&k, 0, 1);
    else g4_pool_run_dyn(ex->pool, geglu_worker, &k);
}

typedef struct clamp_task {
    float *dst;
    const float *src;
    size_t n;
    float lo, hi;
} clamp_task;

static void clamp_worker(void *arg, int ith, int nth) {
    clamp_task *k = arg;
    long lo, hi;
    g4_split((long)(k->n / 16), ith, nth, &lo, &hi);   /* 16-element chunks keep vector loops whole */
    size_t a = (size_t)lo * 16, b = ith == nth - 1 ? k->n : (size_t)hi * 16;
    if (b > a) g4_clamp(k->dst + a, k->src + a, (int64_t)(b - a), k->lo, k->hi);
}

void g4_op_clamp(g4_exec *ex, float *dst, const float *src, size_t n, float lo, float hi) {
    clamp_task k = { dst, src, n, lo, hi };
    if (n < PAR_MIN_WORK || !ex->pool) clamp_worker(&k, 0, 1);
    else g4_pool_run(ex->pool, clamp_worker, &k);
}

void g4_op_scale(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* ---- rotary position embedding ------------------------------------------------ */

/* Computed in double: positions reach 2^18 and f32 angles would lose bits. */
void g4_op_rope_table(float *out, const int32_t *pos, int T, int n_rot, float base, const float *factors) {
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

void g4_op_rope(float *x, const float *cs, int n_rot) {
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

/* ---- mixture of experts ------------------------------------------------------- */

void g4_op_moe_route(g4_exec *ex, const g4_moe_weights *mw, const float *x, int T, int H, float eps,
                     float *logit, float *xs, int *sel_all, float *w_all) {
    int E = mw->E, K = mw->K;
    float rs = 1.0f / sqrtf((float)H);
    for (int t = 0; t < T; t++) {
        float *r = xs + (size_t)t * H;
        g4_rmsnorm(r, x + (size_t)t * H, NULL, H, eps);
        for (int i = 0; i < H; i++) r[i] *= mw->router_scale[i] * rs;
    }
    g4_op_matmul(ex, mw->router, 0, xs, H, T, logit, E);
    for (int t = 0; t < T; t++) {
        float *lg = logit + (size_t)t * E, mx = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++) if (lg[e] > mx) mx = lg[e];
        for (int e = 0; e < E; e++) { lg[e] = expf(lg[e] - mx); sum += lg[e]; }
        for (int e = 0; e < E; e++) lg[e] /= sum;
        int *sel = sel_all + (size_t)t * K;
        float *w = w_all + (size_t)t * E, wsum = 0;
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
            w[sel[k]] = lg[sel[k]] / wsum * (mw->expert_scale ? mw->expert_scale[sel[k]] : 1.0f);
    }
}

/* Decode: the K selected experts of one token as two parallel sections
 * (all gate/up products, then all down products) instead of 2K small ones. */
static void moe_one_token(g4_exec *ex, const g4_moe_weights *mw, const float *x, int H, const int *sel_in,
                          const float *wt, g4_moe_scratch *sc, float *out) {
    int K = mw->K, Fe = mw->Fe;
    int sel[G4_MM_MAX_JOBS];
    for (int k = 0; k < K; k++) {         /* insertion sort by id: the batch path's order */
        int e = sel_in[k], j = k;
        for (; j > 0 && sel[j - 1] > e; j--) sel[j] = sel[j - 1];
        sel[j] = e;
    }
    g4_mm_job jobs[G4_MM_MAX_JOBS] = { { 0 } };   /* gcc cannot see the K <= 8 bound */
    int nj = 0;
    for (int k = 0; k < K; k++) {
        float *gu = sc->ff_a + (size_t)k * 2 * Fe;   /* gate rows, then up rows */
        if (mw->gate_up) {
            jobs[nj++] = (g4_mm_job){ .w = mw->gate_up, .mat = sel[k], .y = gu, .ldy = 2 * Fe };
        } else {
            jobs[nj++] = (g4_mm_job){ .w = mw->gate, .mat = sel[k], .y = gu, .ldy = 2 * Fe };
            jobs[nj++] = (g4_mm_job){ .w = mw->up, .mat = sel[k], .y = gu + Fe, .ldy = 2 * Fe };
        }
    }
    g4_op_matmul_multi(ex, jobs, nj, x, H, 1);
    for (int k = 0; k < K; k++) {
        float *gu = sc->ff_a + (size_t)k * 2 * Fe;
        g4_geglu(sc->ff_b + (size_t)k * Fe, gu, gu + Fe, Fe, ex->precision);
        jobs[k] = (g4_mm_job){ .w = mw->down, .mat = sel[k], .x = sc->ff_b + (size_t)k * Fe,
                               .y = sc->out + (size_t)k * H, .ldy = H };
    }
    g4_op_matmul_multi(ex, jobs, K, NULL, Fe, 1);
    for (int k = 0; k < K; k++) {
        float w = wt[sel[k]];
        const float *src = sc->out + (size_t)k * H;
        for (int j = 0; j < H; j++) out[j] += w * src[j];
    }
}

/* Row work between a chunk's products, split across the pool: GATHER copies
 * each group row's input (rows split), GEGLU turns [2 Fe] gate|up rows into
 * [Fe] (rows split), COMBINE adds each row's weighted output to its token
 * (columns split: two rows of one token never meet in one thread, and each
 * element still sums its experts in ascending id). */
enum { MOE_GATHER, MOE_GEGLU, MOE_COMBINE };

typedef struct moe_rows_task {
    int what, n, H, Fe, E, ng, exact;
    const int *rows;       /* token of each group row */
    const int *ge, *gs;    /* expert of each group, its first row (gs[ng] = n) */
    const float *x, *w;
    g4_moe_scratch *sc;
    float *out;
} moe_rows_task;

static void moe_rows_worker(void *arg, int ith, int nth) {
    moe_rows_task *k = arg;
    long lo, hi;
    g4_split(k->what == MOE_COMBINE ? k->H : k->n, ith, nth, &lo, &hi);
    if (k->what == MOE_GATHER) {
        for (long i = lo; i < hi; i++)
            memcpy(k->sc->in + (size_t)i * k->H, k->x + (size_t)k->rows[i] * k->H, (size_t)k->H * sizeof(float));
    } else if (k->what == MOE_GEGLU) {
        for (long i = lo; i < hi; i++) {
            const float *gu = k->sc->ff_a + (size_t)i * 2 * k->Fe;
            g4_geglu(k->sc->ff_b + (size_t)i * k->Fe, gu, gu + k->Fe, k->Fe, k->exact);
        }
    } else {
        for (int g = 0; g < k->ng; g++)
            for (int i = k->gs[g]; i < k->gs[g + 1]; i++) {
                int t = k->rows[i];
                float wt = k->w[(size_t)t * k->E + k->ge[g]];
                float *o = k->out + (size_t)t * k->H;
                const float *src = k->sc->out + (size_t)i * k->H;
                for (long j = lo; j < hi; j++) o[j] += wt * src[j];
            }
    }
}

static void moe_rows(g4_exec *ex, moe_rows_task *k, int what, long work) {
    k->what = what;
    if (work < PAR_MIN_WORK || ex->n_threads < 2) moe_rows_worker(k, 0, 1);
    else g4_pool_run(ex->pool, moe_rows_worker, k);
}

/* Prefill: tokens grouped per expert, experts in ascending id, taken in
 * chunks whose groups fit the scratch's cap rows (and G4_MM_MAX_JOBS products).
 * A chunk's gate/up products of all its experts are one parallel section
 * (each job its expert's group: its rows quantized once, its weights read
 * once as a matrix-matrix product over the group), the down products
 * another; the threads split the chunk's (expert, rows), so a small group
 * does not leave one idle. ~K+1 chunks per layer: ~7 pool sections each,
 * not 4 per selected expert. */
void g4_op_moe_experts(g4_exec *ex, const g4_moe_weights *mw, const float *x, int T, int H, const int *sel,
                       const float *w, g4_moe_scratch *sc, float *out) {
    int E = mw->E, K = mw->K, Fe = mw->Fe;
    /* the products' rows are expert groups, not the batch in order: every
     * token through the types' gemm (g4_mm_scratch.pcol) */
    g4_exec gex = *ex;
    gex.mm.pcol = NULL;
    gex.mm.np = 0;
    ex = &gex;
    memset(out, 0, (size_t)T * H * sizeof(float));
    if (T == 1 && 2 * K <= G4_MM_MAX_JOBS) { moe_one_token(ex, mw, x, H, sel, w, sc, out); return; }
    const int per = mw->gate_up ? 1 : 2;   /* gate/up products per expert */
    const int cap = sc->cap > T ? sc->cap : T;
    int e = 0;
    while (e < E) {
        int ge[G4_MM_MAX_JOBS], gs[G4_MM_MAX_JOBS + 1], ng = 0, nr = 0;
        for (; e < E; e++) {
            int n = 0;   /* counts past the scratch's end, writes only within it */
            for (int t = 0; t < T; t++) {
                bool chosen = false;
                for (int k = 0; k < K; k++) chosen |= sel[(size_t)t * K + k] == e;
                if (chosen && nr + n < cap) sc->rows[nr + n] = t;
                n += chosen;
            }
            if (!n) continue;
            /* a group that does not fit waits for the next chunk (one group
             * always fits: n <= T) */
            if (ng && (nr + n > cap || (ng + 1) * per > G4_MM_MAX_JOBS)) break;
            ge[ng] = e;
            gs[ng++] = nr;
            nr += n;
        }
        if (!ng) break;
        gs[ng] = nr;
        moe_rows_task k = { .n = nr, .H = H, .Fe = Fe, .E = E, .ng = ng, .exact = ex->precision,
                            .rows = sc->rows, .ge = ge, .gs = gs, .x = x, .w = w, .sc = sc, .out = out };
        moe_rows(ex, &k, MOE_GATHER, (long)nr * H);
        g4_mm_job jobs[G4_MM_MAX_JOBS] = { { 0 } };
        int nj = 0;
        for (int g = 0; g < ng; g++) {
            int n = gs[g + 1] - gs[g];
            const float *in = sc->in + (size_t)gs[g] * H;
            float *gu = sc->ff_a + (size_t)gs[g] * 2 * Fe;   /* gate rows, then up rows */
            if (mw->gate_up) {
                jobs[nj++] = (g4_mm_job){ .w = mw->gate_up, .mat = ge[g], .x = in, .T = n, .y = gu, .ldy = 2 * Fe };
            } else {
                jobs[nj++] = (g4_mm_job){ .w = mw->gate, .mat = ge[g], .x = in, .T = n, .y = gu, .ldy = 2 * Fe };
                jobs[nj++] = (g4_mm_job){ .w = mw->up, .mat = ge[g], .x = in, .T = n, .y = gu + Fe, .ldy = 2 * Fe };
            }
        }
        g4_op_matmul_multi(ex, jobs, nj, sc->in, H, nr);
        moe_rows(ex, &k, MOE_GEGLU, (long)nr * Fe);
        for (int g = 0; g < ng; g++)
            jobs[g] = (g4_mm_job){ .w = mw->down, .mat = ge[g], .x = sc->ff_b + (size_t)gs[g] * Fe,
                                   .T = gs[g + 1] - gs[g], .y = sc->out + (size_t)gs[g] * H, .ldy = H };
        g4_op_matmul_multi(ex, jobs, ng, sc->ff_b, Fe, nr);
        moe_rows(ex, &k, MOE_COMBINE, (long)nr * H);
    }
}

/* ---- per-layer embeddings -------------------------------------------------------- */

void g4_op_ple_combine(float *c, const float *tok, int L, int P, int H, const float *proj_norm, float eps) {
    size_t LP = (size_t)L * P;
    float ps = 1.0f / sqrtf((float)H), ts = sqrtf((float)P), mix = 0.70710678118654752f;
    for (size_t i = 0; i < LP; i++) c[i] *= ps;
    for (int l = 0; l < L; l++) g4_rmsnorm(c + (size_t)l * P, c + (size_t)l * P, proj_norm, P, eps);
    for (size_t i = 0; i < LP; i++) c[i] = (c[i] + tok[i] * ts) * mix;
}
