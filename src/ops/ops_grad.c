/* Backward twins of the decoder ops (ops_grad.h), CPU, f32 with double
 * accumulation where a sum runs over a whole row. */
#include "ops/ops_grad.h"

#include <math.h>
#include <string.h>

#include "tensor/act.h"
#include "tensor/cpu.h"
#include "tensor/types.h"

/* ---- weight products ------------------------------------------------------------- */

typedef struct mmx_task {
    const g4_mat *w;
    int64_t mat;
    const float *dy;
    int64_t ldy;
    int T;
    float *dx;
    int64_t ldx;
    float *row_buf;
} mmx_task;

/* dx[t] += a[t] * r for the thread's tokens: each element's sum runs over
 * the rows in order whatever the vector width, so the AVX2 build (no FMA:
 * mul and add stay separate) gives the same bits as the baseline's SSE. */
__attribute__((always_inline)) static inline void mmx_axpy_body(const mmx_task *k, int64_t o, const float *r,
                                                                long lo, long hi, int64_t n_in) {
    for (long t = lo; t < hi; t++) {
        float a = k->dy[(size_t)t * k->ldy + o];
        if (a == 0.0f) continue;
        float *d = k->dx + (size_t)t * k->ldx;
        for (int64_t i = 0; i < n_in; i++) d[i] += a * r[i];
    }
}
static void mmx_axpy_ref(const mmx_task *k, int64_t o, const float *r, long lo, long hi, int64_t n_in) {
    mmx_axpy_body(k, o, r, lo, hi, n_in);
}
#if defined(__x86_64__)
__attribute__((target("avx2"))) static void mmx_axpy_avx2(const mmx_task *k, int64_t o, const float *r, long lo,
                                                          long hi, int64_t n_in) {
    mmx_axpy_body(k, o, r, lo, hi, n_in);
}
#endif

/* Threads split the tokens; each walks every stored row once, decoding it
 * (quantized types) into its own buffer, and adds it to its tokens' dx. */
static void mmx_worker(void *arg, int ith, int nth) {
    mmx_task *k = arg;
    const g4_mat *w = k->w;
    long lo, hi;
    g4_split(k->T, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    int64_t n_in = w->n_in;
    const g4_type_traits *tt = g4_type_info(w->type);
    float *buf = k->row_buf + (size_t)ith * (size_t)n_in;
    void (*axpy)(const mmx_task *, int64_t, const float *, long, long, int64_t) = mmx_axpy_ref;
#if defined(__x86_64__)
    if (g4_cpu_level() == G4_CPU_AVX2 || g4_cpu_level() == G4_CPU_AVX512) axpy = mmx_axpy_avx2;
#endif
    for (int64_t o = 0; o < w->n_out; o++) {
        const void *row = g4_mat_row(w, k->mat, o);
        const float *r = row;
        if (w->type != G4_F32) { tt->to_float(row, buf, n_in); r = buf; }
        axpy(k, o, r, lo, hi, n_in);
    }
}

void g4_op_matmul_bwd_x(g4_exec *ex, const g4_mat *w, int64_t mat, const float *dy, int64_t ldy, int T, float *dx,
                        int64_t ldx, float *row_buf) {
    mmx_task k = { w, mat, dy, ldy, T, dx, ldx, row_buf };
    if (T < 2 || (int64_t)T * w->n_in * w->n_out < 65536) mmx_worker(&k, 0, 1);
    else g4_pool_run(ex->pool, mmx_worker, &k);
}

typedef struct mmw_task {
    float *dw;
    int64_t n_out, n_in;
    const float *x;
    int64_t ldx;
    const float *dy;
    int64_t ldy;
    int T;
} mmw_task;

/* Threads split the output rows: dW[o] gets its T terms in token order. */
static void mmw_worker(void *arg, int ith, int nth) {
    mmw_task *k = arg;
    long lo, hi;
    g4_split((long)k->n_out, ith, nth, &lo, &hi);
    for (long o = lo; o < hi; o++) {
        float *d = k->dw + (size_t)o * (size_t)k->n_in;
        for (int t = 0; t < k->T; t++) {
            float a = k->dy[(size_t)t * k->ldy + o];
            if (a == 0.0f) continue;
            const float *x = k->x + (size_t)t * k->ldx;
            for (int64_t i = 0; i < k->n_in; i++) d[i] += a * x[i];
        }
    }
}

void g4_op_matmul_bwd_w(g4_exec *ex, float *dw, int64_t n_out, int64_t n_in, const float *x, int64_t ldx,
                        const float *dy, int64_t ldy, int T) {
    mmw_task k = { dw, n_out, n_in, x, ldx, dy, ldy, T };
    if ((int64_t)T * n_in * n_out < 65536) mmw_worker(&k, 0, 1);
    else g4_pool_run(ex->pool, mmw_worker, &k);
}

/* ---- row ops ---------------------------------------------------------------------- */

/* y_i = x_i r w_i, r = (mean x^2 + eps)^-1/2:
 * dx_i = r w_i dy_i - x_i r^3 / n * sum_j w_j dy_j x_j;  dw_i = dy_i x_i r */
static void rmsnorm_bwd_row(float *dx, float *dw, const float *x, const float *w, const float *dy, int n,
                            float eps) {
    double ss = 0, dot = 0;
    for (int i = 0; i < n; i++) {
        ss += (double)x[i] * x[i];
        dot += (double)(w ? w[i] : 1.0f) * dy[i] * x[i];
    }
    double r = 1.0 / sqrt(ss / n + eps);
    double c = dot * r * r * r / n;
    for (int i = 0; i < n; i++) dx[i] += (float)(r * (w ? w[i] : 1.0f) * dy[i] - x[i] * c);
    if (w && dw)
        for (int i = 0; i < n; i++) dw[i] += (float)(dy[i] * x[i] * r);
}

void g4_op_rmsnorm_bwd(g4_exec *ex, float *dx, float *dw, const float *x, const float *w, const float *dy, int n,
                       int width, size_t ld, float eps) {
    (void)ex; /* rows share dw: summed in row order on the calling thread */
    for (int t = 0; t < n; t++)
        rmsnorm_bwd_row(dx + (size_t)t * ld, dw, x + (size_t)t * ld, w, dy + (size_t)t * ld, width, eps);
}

/* gelu(x) = x/2 (1 + tanh(c (x + a x^3))) */
static inline float gelu_grad(float x) {
    const float c = 0.7978845608028654f, a = 0.044715f;
    float th = tanhf(c * (x + a * x * x * x));
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * c * (1.0f + 3.0f * a * x * x);
}

void g4_op_geglu_bwd(float *dg, float *du, const float *g, const float *u, const float *dout, long n) {
    for (long i = 0; i < n; i++) {
        float d = dout[i];
        if (u) {
            dg[i] += d * u[i] * gelu_grad(g[i]);
            if (du) du[i] += d * g4_gelu(g[i]);
        } else {
            dg[i] += d * gelu_grad(g[i]);
        }
    }
}

void g4_op_softcap_bwd(float *dy, const float *y, long n, float cap) {
    for (long i = 0; i < n; i++) {
        float t = y[i] / cap;
        dy[i] *= 1.0f - t * t;
    }
}

void g4_op_rope_bwd(float *dx, const float *cs, int n_rot) {
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float a = dx[i], b = dx[i + half];
        dx[i] = a * c + b * s;
        dx[i + half] = b * c - a * s;
    }
}

/* ---- per-layer embeddings ------------------------------------------------------------ */

void g4_op_ple_combine_bwd(const float *c_in, const float *dc, int L, int P, int H, const float *proj_norm,
                           float eps, float *dc_in, float *dtok, float *dnorm, float *tmp) {
    size_t LP = (size_t)L * P;
    float ps = 1.0f / sqrtf((float)H), ts = sqrtf((float)P), mix = 0.70710678118654752f;
    /* out = (rmsnorm(c_in * ps) + tok * ts) * mix */
    if (dtok)
        for (size_t i = 0; i < LP; i++) dtok[i] += dc[i] * ts * mix;
    float *scaled = tmp;
    for (size_t i = 0; i < LP; i++) scaled[i] = c_in[i] * ps;
    for (int l = 0; l < L; l++) {
        float dn[P > 0 ? P : 1], dxs[P > 0 ? P : 1];
        for (int i = 0; i < P; i++) { dn[i] = dc[(size_t)l * P + i] * mix; dxs[i] = 0; }
        rmsnorm_bwd_row(dxs, dnorm, scaled + (size_t)l * P, proj_norm, dn, P, eps);
        for (int i = 0; i < P; i++) dc_in[(size_t)l * P + i] += dxs[i] * ps;
    }
}

/* ---- attention ------------------------------------------------------------------------- */

size_t g4_attn_bwd_ws_floats(int n_threads, int n_pos, int n_head, int n_kv_head, int head_dim) {
    (void)n_kv_head;
    return (size_t)n_threads * (2 * (size_t)n_pos + (size_t)head_dim) + 2 * (size_t)n_pos * (size_t)n_head;
}

typedef struct attb_task {
    const g4_attn_bwd *a;
    float *ws;           /* per thread: 2 * n_pos + head_dim floats */
    float *lse, *D;      /* [T][n_head] */
} attb_task;

static inline float attn_score(const float *q, const float *k, int hd, float cap) {
    float s = 0;
    for (int i = 0; i < hd; i++) s += q[i] * k[i];
    return cap > 0 ? cap * tanhf(s / cap) : s;
}

/* Pass 1, per (query, head): probabilities, D = sum_j p_j dp_j (= dout . out),
 * and dq = sum_j p_j (dp_j - D) k_j (times the softcap's slope). */
static void attb_queries(void *arg, int ith, int nth) {
    attb_task *k = arg;
    const g4_attn_bwd *a = k->a;
    int hd = a->head_dim, nH = a->n_head, G = nH / a->n_kv_head;
    size_t nq = (size_t)nH * hd, nk = (size_t)a->n_kv_head * hd;
    float *s = k->ws + (size_t)ith * (2 * (size_t)a->n_pos + hd), *dp = s + a->n_pos;
    long lo, hi;
    g4_split((long)a->T * nH, ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        int t = (int)(it / nH), h = (int)(it % nH), g = h / G;
        int j0 = a->lo[t], j1 = a->hi[t];
        const float *q = a->q + (size_t)t * nq + (size_t)h * hd, *dout = a->dout + (size_t)t * nq + (size_t)h * hd;
        float mx = -INFINITY;
        for (int j = j0; j < j1; j++) {
            s[j] = attn_score(q, a->k + (size_t)j * nk + (size_t)g * hd, hd, a->softcap);
            if (s[j] > mx) mx = s[j];
        }
        double sum = 0;
        for (int j = j0; j < j1; j++) sum += exp((double)(s[j] - mx));
        float lse = mx + (float)log(sum);
        double D = 0;
        for (int j = j0; j < j1; j++) {
            const float *v = a->v + (size_t)j * nk + (size_t)g * hd;
            float d = 0;
            for (int i = 0; i < hd; i++) d += dout[i] * v[i];
            dp[j] = d;
            float p = expf(s[j] - lse);
            D += (double)p * d;
        }
        k->lse[it] = lse;
        k->D[it] = (float)D;
        float *dq = a->dq + (size_t)t * nq + (size_t)h * hd;
        for (int j = j0; j < j1; j++) {
            float p = expf(s[j] - lse), ds = p * (dp[j] - (float)D);
            if (a->softcap > 0) { float c = s[j] / a->softcap; ds *= 1.0f - c * c; }
            const float *kr = a->k + (size_t)j * nk + (size_t)g * hd;
            for (int i = 0; i < hd; i++) dq[i] += ds * kr[i];
        }
    }
}

/* Pass 2, per (key position, KV head): dk_j = sum_t ds_tj q_t, dv_j =
 * sum_t p_tj dout_t over the queries that see j, in query order. */
static void attb_keys(void *arg, int ith, int nth) {
    attb_task *k = arg;
    const g4_attn_bwd *a = k->a;
    int hd = a->head_dim, nH = a->n_head, nkv = a->n_kv_head, G = nH / nkv;
    size_t nq = (size_t)nH * hd, nk = (size_t)nkv * hd;
    long lo, hi;
    g4_split((long)a->n_pos * nkv, ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        int j = (int)(it / nkv), g = (int)(it % nkv);
        const float *kr = a->k + (size_t)j * nk + (size_t)g * hd, *vr = a->v + (size_t)j * nk + (size_t)g * hd;
        float *dk = a->dk + (size_t)j * nk + (size_t)g * hd, *dv = a->dv + (size_t)j * nk + (size_t)g * hd;
        for (int t = 0; t < a->T; t++) {
            if (j < a->lo[t] || j >= a->hi[t]) continue;
            for (int h = g * G; h < (g + 1) * G; h++) {
                const float *q = a->q + (size_t)t * nq + (size_t)h * hd;
                const float *dout = a->dout + (size_t)t * nq + (size_t)h * hd;
                float s = attn_score(q, kr, hd, a->softcap);
                float p = expf(s - k->lse[(size_t)t * nH + h]);
                float d = 0;
                for (int i = 0; i < hd; i++) d += dout[i] * vr[i];
                float ds = p * (d - k->D[(size_t)t * nH + h]);
                if (a->softcap > 0) { float c = s / a->softcap; ds *= 1.0f - c * c; }
                for (int i = 0; i < hd; i++) {
                    dk[i] += ds * q[i];
                    dv[i] += p * dout[i];
                }
            }
        }
    }
}

void g4_op_attention_bwd(g4_exec *ex, const g4_attn_bwd *a, float *ws) {
    size_t per = (size_t)ex->n_threads * (2 * (size_t)a->n_pos + (size_t)a->head_dim);
    attb_task k = { a, ws, ws + per, ws + per + (size_t)a->n_pos * a->n_head };
    g4_pool_run(ex->pool, attb_queries, &k);
    g4_pool_run(ex->pool, attb_keys, &k);
}

/* ---- loss --------------------------------------------------------------------------- */

double g4_op_xent_fwd_bwd(float *lg, int V, int tgt, float scale, float softcap) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) if (lg[i] > mx) mx = lg[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)(lg[i] - mx));
    double lse = mx + log(sum);
    double loss = lse - lg[tgt];
    for (int i = 0; i < V; i++) {
        float y = lg[i], d = (float)(exp(y - lse) * scale) - (i == tgt ? scale : 0.0f);
        if (softcap > 0) { float c = y / softcap; d *= 1.0f - c * c; }
        lg[i] = d;
    }
    return loss;
}
