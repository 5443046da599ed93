/* Backward twins of the decoder ops (ops_grad.h), CPU, f32 with double
 * accumulation where a sum runs over a whole row. */
#include "ops/ops_grad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/act.h"
#include "tensor/cpu.h"
#include "tensor/exp_x86.h"
#include "tensor/bf16.h"
#include "tensor/matmul.h"
#include "tensor/q8t.h"
#include "tensor/types.h"
#include "tensor/vec.h"

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

/* Fast path: decode a panel of BWD_NB stored rows x at most BWD_KC columns
 * to f32 and add dy[:, panel rows] . panel into dx[:, panel columns] as a
 * register-tiled product: bf16 pairs with f32 sums (tensor/bf16.h:
 * twice the f32 rate; a gradient and a decoded 4-6 bit weight lose nothing
 * that matters in bf16) where the CPU has AVX512_BF16, else f32 (vec.h
 * gemm_nn). Each decoded weight is then used by every token of the
 * thread's slab (T = 512: 512 multiply-adds per decode), where the exact
 * path decodes it once per 8 tokens' axpy and reads dx once per row.
 * Threads split the columns (in units of whole blocks, so a panel's rows
 * decode from a block boundary) or, when there are fewer column units than
 * threads, the tokens: every dx element is summed by one thread, over the
 * rows in ascending order, whatever the thread count. */
#define BWD_NB 128
#define BWD_KC 256

typedef struct mmxf_task {
    const g4_mat *w;
    int64_t mat, g;      /* g: columns per split unit (a multiple of the block size) */
    const float *dy;
    int64_t ldy;
    int T, nc;           /* nc: column parts; the threads beyond split the tokens */
    float *dx;
    int64_t ldx;
    float *buf;          /* per thread: bwd_buf_per(T) floats */
    size_t per;
    bool bf16;
    float wscale, winv;  /* int8 path: W's power-of-two scale and its inverse */
} mmxf_task;

/* per thread, in floats: the decoded panel (f32); its bf16 form as 32-column
 * panels of pairs over the BWD_NB rows (BWD_KC is a multiple of 32: no
 * padding beyond it); the slab's dy rows in bf16 pairs, BWD_NB halves each */
static size_t bwd_buf_per(int T_max) {
    return (size_t)BWD_NB * BWD_KC + (size_t)BWD_NB / 2 * BWD_KC + (size_t)T_max * (BWD_NB / 2);
}
_Static_assert(BWD_KC % G4_BF16_PR == 0 && BWD_NB % 2 == 0, "bf16 panels tile the decoded block exactly");

static void mmxf_worker(void *arg, int ith, int nth) {
    mmxf_task *k = arg;
    const g4_mat *w = k->w;
    int nc = k->nc, nt = nth / nc;
    if (ith >= nc * nt) return;
    long u0, u1, t0, t1;
    g4_split((long)(w->n_in / k->g), ith % nc, nc, &u0, &u1);
    g4_split(k->T, ith / nc, nt, &t0, &t1);
    if (u0 >= u1 || t0 >= t1) return;
    const g4_type_traits *tt = g4_type_info(w->type);
    const g4_vec_ops *vo = g4_vec_get();
    int64_t kc = k->g * (BWD_KC / k->g > 0 ? BWD_KC / k->g : 1), c_end = u1 * k->g;
    int tn = (int)(t1 - t0);
    float *wp = k->buf + (size_t)ith * k->per, *dxs = k->dx + (size_t)t0 * k->ldx;
    uint16_t *bp = (uint16_t *)(void *)(wp + (size_t)BWD_NB * BWD_KC), *ap = bp + (size_t)BWD_NB * BWD_KC;
    for (int64_t n0 = 0; n0 < w->n_out; n0 += BWD_NB) {
        int nb = w->n_out - n0 < BWD_NB ? (int)(w->n_out - n0) : BWD_NB, np = (nb + 1) / 2;
        const float *dys = k->dy + (size_t)t0 * k->ldy + n0;
        if (k->bf16)
            for (int t = 0; t < tn; t++) g4_bf16_round_row(dys + (size_t)t * k->ldy, ap + (size_t)t * BWD_NB, nb);
        for (int64_t c0 = u0 * k->g; c0 < c_end; c0 += kc) {
            int64_t cw = c_end - c0 < kc ? c_end - c0 : kc;
            size_t off = (size_t)(c0 / tt->blck_size) * tt->type_size;
            for (int r = 0; r < nb; r++)
                tt->to_float((const char *)g4_mat_row(w, k->mat, n0 + r) + off, wp + (size_t)r * cw, cw);
            if (k->bf16) {
                /* dx's columns are the panels' rows: column c of the decoded
                 * block at wp + c, its input n at stride cw */
                for (int64_t r0 = 0; r0 < cw; r0 += G4_BF16_PR)
                    g4_bf16_pack_f32(bp + (size_t)r0 * np * 2, wp + r0, 1, (size_t)cw,
                                     cw - r0 < G4_BF16_PR ? (int)(cw - r0) : G4_BF16_PR, nb);
                g4_bf16_gemm_add(bp, nb, (int)cw, ap, BWD_NB, tn, dxs + c0, (size_t)k->ldx);
            } else {
                vo->gemm_nn(dxs + c0, (int)k->ldx, dys, (int)k->ldy, wp, (int)cw, tn, (int)cw, nb);
            }
        }
    }
}

/* Int8 path (quantized weights where the Q8_0 panel kernel runs): the
 * product dX = dY W as prefill computes Y = X W^T, through the same
 * vpdpbusd panels (twice vdpbf16ps's multiply-adds per instruction), with
 * W^T and dY in Q8_0. Per slab of BWD_OS reduction rows (W's output rows):
 * each token's dY slab is scaled by a power of two 2^e_t (max near 64, so
 * the Q8_0 block scales stay normal f16 however small the gradients) and
 * quantized once; per chunk of BWD_KC columns, each 32-row group is decoded
 * to f32 and re-quantized per column (q8t.h: W^T's Q8_0 blocks, times a
 * power of two 2^f per matrix that brings its weights near 8); the panel
 * kernel then writes the T x 32 sums of 32 columns, which add into dx
 * times 2^-e_t 2^-f (exact). Error: the int8 rounding of both operands
 * per 32-group (~0.4% of each group's largest magnitude), against the bf16
 * path's 0.4% of each element; the panels sum each group exactly in int32.
 * Every dx element gets its slabs in ascending order, each slab's sum from
 * its token's and column's data only: the same bits whatever the thread
 * count (the kernel's own contract, types.h). */
#define BWD_OS 1024
/* Fewer tokens keep the bf16 panels: each weight is decoded and
 * re-quantized once per call, so the int8 products must be shared by
 * enough tokens (at 128, the head's chunks, both paths ran about even) */
#define BWD_Q_MIN_T 64

static size_t q8_row_bytes(void) { return (size_t)BWD_OS / 32 * 34; }
/* per thread, in bytes: its tokens' Q8_0 dY rows of the slab and their
 * 2^-e (each thread quantizes the tokens it multiplies: when the threads
 * split the columns that repeats ~1/n_in of the products' work, cheaper
 * than a pool barrier per slab), the decoded 32-row group, the chunk's W^T
 * blocks, the kernel's T x 32 output */
static size_t bwdq_bytes_per(int T_max) {
    return (size_t)T_max * (q8_row_bytes() + 4) + (size_t)32 * BWD_KC * 4 + (size_t)BWD_KC * q8_row_bytes() +
           (size_t)T_max * 32 * 4 + 64;
}

static void mmxq_worker(void *arg, int ith, int nth) {
    const mmxf_task *k = arg;
    const g4_mat *w = k->w;
    int nc = k->nc, nt = nth / nc;
    if (ith >= nc * nt) return;
    long u0, u1, t0, t1;
    g4_split((long)(w->n_in / k->g), ith % nc, nc, &u0, &u1);
    g4_split(k->T, ith / nc, nt, &t0, &t1);
    if (u0 >= u1 || t0 >= t1) return;
    const g4_type_traits *tt = g4_type_info(w->type), *qt = g4_type_info(G4_Q8_0);
    int64_t kc = k->g * (BWD_KC / k->g > 0 ? BWD_KC / k->g : 1), c_end = u1 * k->g;
    const int tn = (int)(t1 - t0);
    uint8_t *dyq = (uint8_t *)(void *)(k->buf + (size_t)ith * k->per);
    float *st = (float *)(void *)(dyq + (size_t)tn * q8_row_bytes()), *f = st + tn;
    uint8_t *wt = (uint8_t *)(void *)(f + (size_t)32 * BWD_KC);
    float *tmp = (float *)(void *)(wt + (size_t)BWD_KC * q8_row_bytes());
    float *dxs = k->dx + (size_t)t0 * k->ldx;
    for (int64_t s0 = 0; s0 < w->n_out; s0 += BWD_OS) {
        const int os = w->n_out - s0 < BWD_OS ? (int)(w->n_out - s0) : BWD_OS, ng = os / 32;
        const size_t qb = (size_t)ng * 34;
        for (int t = 0; t < tn; t++)
            st[t] = g4_q8t_quant_row(k->dy + (size_t)(t0 + t) * k->ldy + s0, os, dyq + (size_t)t * qb);
        const uint64_t id = g4_matmul_input_id();
        for (int64_t c0 = u0 * k->g; c0 < c_end; c0 += kc) {
            const int cw = (int)(c_end - c0 < kc ? c_end - c0 : kc);
            const size_t off = (size_t)(c0 / tt->blck_size) * tt->type_size;
            for (int g = 0; g < ng; g++) {
                for (int r = 0; r < 32; r++)
                    tt->to_float((const char *)g4_mat_row(w, k->mat, s0 + 32 * g + r) + off, f + (size_t)r * cw, cw);
                g4_q8t_pack(f, (size_t)cw, cw, k->wscale, wt + (size_t)g * 34, qb);
            }
            for (int r0 = 0; r0 < cw; r0 += 32) {
                const int nr = cw - r0 < 32 ? cw - r0 : 32;
                const uint8_t *wr = wt + (size_t)r0 * qb;
                if (!qt->gemm_panel(os, nr, tn, NULL, wr, qb, dyq, qb, tmp, 32, id))
                    qt->gemm(os, nr, tn, wr, qb, dyq, qb, tmp, 32);
                g4_q8t_add_rows(dxs + c0 + r0, (size_t)k->ldx, tmp, 32, tn, nr, st, k->winv);
            }
        }
    }
}

/* 2^f that brings the weights' largest magnitude (rows 0, n_out / 2 and
 * n_out - 1, decoded into buf) into [8, 16): the same for every thread */
static float bwdq_wscale(const g4_mat *w, int64_t mat, float *buf) {
    const g4_type_traits *tt = g4_type_info(w->type);
    const int64_t rows[3] = { 0, w->n_out / 2, w->n_out - 1 };
    float amax = 0;
    for (int i = 0; i < 3; i++) {
        tt->to_float(g4_mat_row(w, mat, rows[i]), buf, w->n_in);
        for (int64_t j = 0; j < w->n_in; j++) amax = fabsf(buf[j]) > amax ? fabsf(buf[j]) : amax;
    }
    int e = 0;
    if (!(amax > 0 && isfinite(amax))) return 1.0f;
    (void)frexpf(amax, &e);
    return ldexpf(1.0f, 4 - e);
}

/* GEMMA4C_TRAIN_DX=bf16 keeps quantized weights on the bf16 panels: the
 * A/B of bench/README's training section (read once per process) */
static bool dx_bf16_forced(void) {
    static int forced = -1;
    if (forced < 0) {
        const char *e = getenv("GEMMA4C_TRAIN_DX");
        forced = e && !strcmp(e, "bf16");
    }
    return forced == 1;
}

static void matmul_bwd_x_fast(g4_exec *ex, const g4_mat *w, int64_t mat, const float *dy, int64_t ldy, int T,
                              float *dx, int64_t ldx, float *buf) {
    const g4_type_traits *tt = g4_type_info(w->type);
    int64_t g = tt->blck_size;
    while (g < 64 && w->n_in % (2 * g) == 0) g *= 2;   /* whole vectors per unit where the width allows */
    int nth = ex->n_threads;
    mmxf_task k = { w, mat, g, dy, ldy, T, 1, dx, ldx, buf, bwd_buf_per(T), g4_bf16_dot_ok(), 1.0f, 1.0f };
    const bool pooled = (int64_t)T * w->n_in * w->n_out >= 65536 && nth >= 2;
    if (pooled) k.nc = w->n_in / g >= nth ? nth : 1;
    void (*worker)(void *, int, int) = mmxf_worker;
    if (tt->is_quantized && tt->blck_size % 32 == 0 && w->n_out % 32 == 0 && T >= BWD_Q_MIN_T && g4_q8t_ok() &&
        !dx_bf16_forced()) {
        worker = mmxq_worker;
        k.per = (bwdq_bytes_per(T) + 3) / 4;
        k.wscale = bwdq_wscale(w, mat, buf);
        k.winv = 1.0f / k.wscale;
    }
    if (!pooled) worker(&k, 0, 1);
    else g4_pool_run(ex->pool, worker, &k);
}

size_t g4_op_matmul_bwd_buf_floats(int n_threads, int64_t n_in_max, int T_max) {
    size_t per = bwd_buf_per(T_max), q = (bwdq_bytes_per(T_max) + 3) / 4;
    if ((size_t)n_in_max > per) per = (size_t)n_in_max;
    if (q > per) per = q;
    return (size_t)n_threads * per;
}

void g4_op_matmul_bwd_x(g4_exec *ex, const g4_mat *w, int64_t mat, const float *dy, int64_t ldy, int T, float *dx,
                        int64_t ldx, float *row_buf) {
    if (ex->precision == 0 && g4_type_info(w->type)->blck_size <= BWD_KC) {
        matmul_bwd_x_fast(ex, w, mat, dy, ldy, T, dx, ldx, row_buf);
        return;
    }
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

typedef struct rmsb_task {
    float *dx;
    const float *x, *w, *dy;
    int n, width;
    size_t ld;
    float eps;
} rmsb_task;

static void rmsb_worker(void *arg, int ith, int nth) {
    rmsb_task *k = arg;
    long lo, hi;
    g4_split(k->n, ith, nth, &lo, &hi);
    for (long t = lo; t < hi; t++)
        rmsnorm_bwd_row(k->dx + (size_t)t * k->ld, NULL, k->x + (size_t)t * k->ld, k->w, k->dy + (size_t)t * k->ld,
                        k->width, k->eps);
}

/* Rows are independent unless they share a weight gradient: then they are
 * summed in row order on the calling thread; otherwise the pool splits
 * them (the same bits either way). */
#define ROWS_PAR_MIN 32768

void g4_op_rmsnorm_bwd(g4_exec *ex, float *dx, float *dw, const float *x, const float *w, const float *dy, int n,
                       int width, size_t ld, float eps) {
    if (!(w && dw) && ex && ex->n_threads > 1 && (long)n * width >= ROWS_PAR_MIN) {
        rmsb_task k = { dx, x, w, dy, n, width, ld, eps };
        g4_pool_run(ex->pool, rmsb_worker, &k);
        return;
    }
    for (int t = 0; t < n; t++)
        rmsnorm_bwd_row(dx + (size_t)t * ld, dw, x + (size_t)t * ld, w, dy + (size_t)t * ld, width, eps);
}

/* gelu(x) = x/2 (1 + tanh(c (x + a x^3))) */
static inline float gelu_grad(float x) {
    const float c = 0.7978845608028654f, a = 0.044715f;
    float th = tanhf(c * (x + a * x * x * x));
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * c * (1.0f + 3.0f * a * x * x);
}

static void geglu_bwd_range(float *dg, float *du, const float *g, const float *u, const float *dout, long i0,
                            long n) {
    for (long i = i0; i < n; i++) {
        float d = dout[i];
        if (u) {
            dg[i] += d * u[i] * gelu_grad(g[i]);
            if (du) du[i] += d * g4_gelu(g[i]);
        } else {
            dg[i] += d * gelu_grad(g[i]);
        }
    }
}

#if defined(__x86_64__)
/* The fast path's 8 lanes: tanh(z) = 1 - 2 / (e^2z + 1), z clamped to
 * [-9, 9] where tanh is 1 within f32 (|error| ~1e-7 against tanhf).
 * Returns how many elements it did. */
__attribute__((target("avx2,fma"))) static long geglu_bwd_avx2(float *dg, float *du, const float *g, const float *u,
                                                               const float *dout, long i0, long n) {
    const __m256 c = _mm256_set1_ps(0.7978845608028654f), a = _mm256_set1_ps(0.044715f),
                 a3 = _mm256_set1_ps(3 * 0.044715f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f),
                 two = _mm256_set1_ps(2.0f), lim = _mm256_set1_ps(9.0f);
    long i = i0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i), x2 = _mm256_mul_ps(x, x), d = _mm256_loadu_ps(dout + i);
        __m256 z = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(a, x2), x, x));
        z = _mm256_max_ps(_mm256_min_ps(z, lim), _mm256_sub_ps(_mm256_setzero_ps(), lim));
        __m256 e = g4_exp8(_mm256_mul_ps(two, z));
        __m256 th = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one)));
        __m256 p = _mm256_mul_ps(half, _mm256_add_ps(one, th));            /* gelu(x) / x */
        __m256 sl = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_fnmadd_ps(th, th, one));
        __m256 grad = _mm256_fmadd_ps(_mm256_mul_ps(sl, c), _mm256_fmadd_ps(a3, x2, one), p);
        if (u) {
            __m256 uu = _mm256_loadu_ps(u + i);
            _mm256_storeu_ps(dg + i, _mm256_fmadd_ps(_mm256_mul_ps(d, uu), grad, _mm256_loadu_ps(dg + i)));
            if (du) _mm256_storeu_ps(du + i, _mm256_fmadd_ps(d, _mm256_mul_ps(p, x), _mm256_loadu_ps(du + i)));
        } else {
            _mm256_storeu_ps(dg + i, _mm256_fmadd_ps(d, grad, _mm256_loadu_ps(dg + i)));
        }
    }
    return i;
}
#endif

typedef struct gegb_task {
    float *dg, *du;
    const float *g, *u, *dout;
    long n;
    int fast;
} gegb_task;

static void gegb_worker(void *arg, int ith, int nth) {
    gegb_task *k = arg;
    long lo, hi;
    g4_split(k->n, ith, nth, &lo, &hi);
#if defined(__x86_64__)
    if (k->fast) lo = geglu_bwd_avx2(k->dg, k->du, k->g, k->u, k->dout, lo, hi);
#endif
    geglu_bwd_range(k->dg, k->du, k->g, k->u, k->dout, lo, hi);
}

void g4_op_geglu_bwd(g4_exec *ex, float *dg, float *du, const float *g, const float *u, const float *dout, long n) {
    int fast = ex && ex->precision == 0 &&
               (g4_cpu_level() == G4_CPU_AVX2 || g4_cpu_level() == G4_CPU_AVX512);
    gegb_task k = { dg, du, g, u, dout, n, fast };
    if (ex && ex->n_threads > 1 && n >= ROWS_PAR_MIN) g4_pool_run(ex->pool, gegb_worker, &k);
    else gegb_worker(&k, 0, 1);
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

/* Fast path: blocks of ATT_B queries (pass 1) or keys (pass 2) as tiled
 * products (attb_fast below). */
#define ATT_B 64

size_t g4_attn_bwd_ws_floats(int n_threads, int n_pos, int n_head, int n_kv_head, int head_dim) {
    size_t per = 2 * (size_t)ATT_B * (size_t)n_pos;     /* >= the exact path's 2 n_pos + head_dim */
    if (per < 2 * (size_t)n_pos + (size_t)head_dim) per = 2 * (size_t)n_pos + (size_t)head_dim;
    return (size_t)n_threads * per + 2 * (size_t)n_pos * (size_t)n_head +
           2 * (size_t)n_pos * (size_t)head_dim * ((size_t)n_kv_head + (size_t)n_head);
}

size_t g4_attn_bwd_store_floats(int T, int n_pos, int n_head) {
    return 2 * (size_t)n_head * (size_t)n_pos * (size_t)T;
}

/* The exact path's sums, in index order (the fast path takes the vector
 * kernels of tensor/vec.h: another order, the same terms). */
static float dot_seq(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static void axpy_seq(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

typedef struct attb_task {
    const g4_attn_bwd *a;
    float *ws;           /* per thread: 2 * n_pos + head_dim floats */
    float *lse, *D;      /* [T][n_head] */
    float (*dot)(const float *, const float *, int);
    void (*axpy)(float *, float, const float *, int);
} attb_task;

static inline float attn_score(const attb_task *k, const float *q, const float *kr, int hd, float cap) {
    float s = k->dot(q, kr, hd);
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
            s[j] = attn_score(k, q, a->k + (size_t)j * nk + (size_t)g * hd, hd, a->softcap);
            if (s[j] > mx) mx = s[j];
        }
        double sum = 0;
        for (int j = j0; j < j1; j++) sum += exp((double)(s[j] - mx));
        float lse = mx + (float)log(sum);
        double D = 0;
        for (int j = j0; j < j1; j++) {
            float d = k->dot(dout, a->v + (size_t)j * nk + (size_t)g * hd, hd);
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
            k->axpy(dq, ds, a->k + (size_t)j * nk + (size_t)g * hd, hd);
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
                float s = attn_score(k, q, kr, hd, a->softcap);
                float p = expf(s - k->lse[(size_t)t * nH + h]);
                float d = k->dot(dout, vr, hd);
                float ds = p * (d - k->D[(size_t)t * nH + h]);
                if (a->softcap > 0) { float c = s / a->softcap; ds *= 1.0f - c * c; }
                k->axpy(dk, ds, q, hd);
                k->axpy(dv, p, dout, hd);
            }
        }
    }
}

/* The fast path as products over blocks (tensor/vec.h gemm_nn), for each
 * query head h of KV group g, with K^T, V^T, Q^T and dout^T laid out once:
 *   pass 1, per (h, block of queries): S = Q K^T and dP = dout V^T over the
 *     keys any of them sees, P = softmax over each query's own range, lse,
 *     D = sum P dP, dS = P (dP - D); dQ += dS K;
 *   pass 2, per (g, block of keys): the same S^T, dP^T over the queries
 *     that see any of them (P from pass 1's lse), then dK += dS^T Q and
 *     dV += P^T dout, head by head.
 * Every element of dq, dk, dv is summed by the thread owning its block, in
 * a fixed order: the same bits whatever the thread count. No softcap (a
 * capped attention takes the exact path). */
typedef struct attf_task {
    const g4_attn_bwd *a;
    float *scr;                 /* per thread 2 * ATT_B * n_pos */
    size_t per;
    float *lse, *D;             /* [T][n_head] */
    float *kT, *vT, *qT, *oT;   /* [n_kv_head][hd][n_pos], [n_head][hd][T] */
    const g4_vec_ops *vo;
    float *PT, *dST;            /* a->ps_store: [n_head][n_pos][T] each, or NULL */
} attf_task;

/* dst [cols][ldd] = src [rows][lds]^T in 16 x 16 tiles: a plain column
 * walk wrote one float per cache line per row (stride T floats) and was ~5%
 * of E2B's backward; a tile reads 16 lines and writes 16. */
#define ATT_TB 16
static void transpose_tiles(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols) {
    for (int r0 = 0; r0 < rows; r0 += ATT_TB) {
        int r1 = r0 + ATT_TB < rows ? r0 + ATT_TB : rows;
        for (int c0 = 0; c0 < cols; c0 += ATT_TB) {
            int c1 = c0 + ATT_TB < cols ? c0 + ATT_TB : cols;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
        }
    }
}

/* Work items: (head, block of ATT_B positions) of q/dout (n_head of them)
 * and k/v (n_kv_head), so that E2B's 8 + 1 heads split evenly. */
static void attf_transpose(void *arg, int ith, int nth) {
    attf_task *k = arg;
    const g4_attn_bwd *a = k->a;
    int hd = a->head_dim, nH = a->n_head, nkv = a->n_kv_head, T = a->T, np = a->n_pos;
    size_t nq = (size_t)nH * hd, nk = (size_t)nkv * hd;
    long bq = (T + ATT_B - 1) / ATT_B, bk = (np + ATT_B - 1) / ATT_B;
    long lo, hi;
    if (k->PT) bq = 0;   /* pass 2 reads the stored P^T, dS^T, not Q^T, dout^T */
    g4_split(nH * bq + nkv * bk, ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        if (it < nH * bq) {
            size_t h = (size_t)(it / bq);
            int t0 = (int)(it % bq) * ATT_B, n = T - t0 < ATT_B ? T - t0 : ATT_B;
            transpose_tiles(k->qT + h * hd * T + t0, (size_t)T, a->q + (size_t)t0 * nq + h * hd, nq, n, hd);
            transpose_tiles(k->oT + h * hd * T + t0, (size_t)T, a->dout + (size_t)t0 * nq + h * hd, nq, n, hd);
        } else {
            long jt = it - nH * bq;
            size_t g = (size_t)(jt / bk);
            int j0 = (int)(jt % bk) * ATT_B, n = np - j0 < ATT_B ? np - j0 : ATT_B;
            transpose_tiles(k->kT + g * hd * np + j0, (size_t)np, a->k + (size_t)j0 * nk + g * hd, nk, n, hd);
            transpose_tiles(k->vT + g * hd * np + j0, (size_t)np, a->v + (size_t)j0 * nk + g * hd, nk, n, hd);
        }
    }
}

static void attf_queries(void *arg, int ith, int nth) {
    attf_task *k = arg;
    const g4_attn_bwd *a = k->a;
    int hd = a->head_dim, nH = a->n_head, G = nH / a->n_kv_head, T = a->T, np = a->n_pos;
    size_t nq = (size_t)nH * hd, nk = (size_t)a->n_kv_head * hd;
    float *S = k->scr + (size_t)ith * k->per, *dP = S + (size_t)ATT_B * np;
    int nb = (T + ATT_B - 1) / ATT_B;
    long lo, hi;
    g4_split((long)nH * nb, ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        int h = (int)(it / nb), t0 = (int)(it % nb) * ATT_B, t1 = t0 + ATT_B < T ? t0 + ATT_B : T, tb = t1 - t0;
        int g = h / G, j0 = np, j1 = 0;
        for (int t = t0; t < t1; t++) {
            if (a->lo[t] < j0) j0 = a->lo[t];
            if (a->hi[t] > j1) j1 = a->hi[t];
        }
        int nj = j1 - j0;
        if (nj <= 0) {
            for (int t = t0; t < t1; t++) k->lse[(size_t)t * nH + h] = k->D[(size_t)t * nH + h] = 0;
            if (k->PT)
                for (int j = 0; j < np; j++) {
                    memset(k->PT + (size_t)h * np * T + (size_t)j * T + t0, 0, (size_t)tb * sizeof(float));
                    memset(k->dST + (size_t)h * np * T + (size_t)j * T + t0, 0, (size_t)tb * sizeof(float));
                }
            continue;
        }
        memset(S, 0, (size_t)tb * nj * sizeof(float));
        memset(dP, 0, (size_t)tb * nj * sizeof(float));
        k->vo->gemm_nn(S, nj, a->q + (size_t)t0 * nq + (size_t)h * hd, (int)nq, k->kT + (size_t)g * hd * np + j0, np,
                       tb, nj, hd);
        k->vo->gemm_nn(dP, nj, a->dout + (size_t)t0 * nq + (size_t)h * hd, (int)nq,
                       k->vT + (size_t)g * hd * np + j0, np, tb, nj, hd);
        for (int t = t0; t < t1; t++) {
            float *s = S + (size_t)(t - t0) * nj, *dp = dP + (size_t)(t - t0) * nj;
            int a0 = a->lo[t] - j0, a1 = a->hi[t] - j0;
            float mx = -INFINITY;
            for (int j = a0; j < a1; j++)
                if (s[j] > mx) mx = s[j];
            double sum = 0;
            for (int j = a0; j < a1; j++) sum += exp((double)(s[j] - mx));
            float lse = a1 > a0 ? mx + (float)log(sum) : 0;
            double D = 0;
            for (int j = a0; j < a1; j++) { s[j] = expf(s[j] - lse); D += (double)s[j] * dp[j]; }
            for (int j = 0; j < nj; j++) {
                if (j < a0 || j >= a1) { dp[j] = 0; continue; }
                dp[j] = s[j] * (dp[j] - (float)D);
            }
            k->lse[(size_t)t * nH + h] = lse;
            k->D[(size_t)t * nH + h] = (float)D;
            if (k->PT)
                for (int j = 0; j < nj; j++)
                    if (j < a0 || j >= a1) s[j] = 0;
        }
        if (k->PT) {   /* the block's columns of P^T and dS^T, zeros for the keys none of it sees */
            size_t off = (size_t)h * np * T;
            transpose_tiles(k->PT + off + (size_t)j0 * T + t0, (size_t)T, S, (size_t)nj, tb, nj);
            transpose_tiles(k->dST + off + (size_t)j0 * T + t0, (size_t)T, dP, (size_t)nj, tb, nj);
            for (int j = 0; j < np; j++) {
                if (j == j0) { j = j1 - 1; continue; }
                memset(k->PT + off + (size_t)j * T + t0, 0, (size_t)tb * sizeof(float));
                memset(k->dST + off + (size_t)j * T + t0, 0, (size_t)tb * sizeof(float));
            }
        }
        k->vo->gemm_nn(a->dq + (size_t)t0 * nq + (size_t)h * hd, (int)nq, dP, nj, a->k + (size_t)j0 * nk + (size_t)g * hd,
                       (int)nk, tb, hd, nj);
    }
}

static void attf_keys(void *arg, int ith, int nth) {
    attf_task *k = arg;
    const g4_attn_bwd *a = k->a;
    int hd = a->head_dim, nH = a->n_head, nkv = a->n_kv_head, G = nH / nkv, T = a->T, np = a->n_pos;
    size_t nq = (size_t)nH * hd, nk = (size_t)nkv * hd;
    float *P = k->scr + (size_t)ith * k->per, *dS = P + (size_t)ATT_B * np;
    int nb = (np + ATT_B - 1) / ATT_B;
    long lo, hi;
    g4_split((long)nkv * nb, ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        int g = (int)(it / nb), j0 = (int)(it % nb) * ATT_B, j1 = j0 + ATT_B < np ? j0 + ATT_B : np, jb = j1 - j0;
        int q0 = T, q1 = 0;       /* the queries that see any key of the block */
        for (int t = 0; t < T; t++)
            if (a->lo[t] < j1 && a->hi[t] > j0) { if (t < q0) q0 = t; q1 = t + 1; }
        int nt = q1 - q0;
        if (nt <= 0) continue;
        for (int h = g * G; h < (g + 1) * G && k->PT; h++) {
            /* the stored rows hold what the recomputation below makes: the
             * same products (an FMA chain over hd in order), exps and masks */
            size_t off = (size_t)h * np * T + (size_t)j0 * T + q0;
            k->vo->gemm_nn(a->dk + (size_t)j0 * nk + (size_t)g * hd, (int)nk, k->dST + off, T,
                           a->q + (size_t)q0 * nq + (size_t)h * hd, (int)nq, jb, hd, nt);
            k->vo->gemm_nn(a->dv + (size_t)j0 * nk + (size_t)g * hd, (int)nk, k->PT + off, T,
                           a->dout + (size_t)q0 * nq + (size_t)h * hd, (int)nq, jb, hd, nt);
        }
        for (int h = g * G; h < (g + 1) * G && !k->PT; h++) {
            memset(P, 0, (size_t)jb * nt * sizeof(float));
            memset(dS, 0, (size_t)jb * nt * sizeof(float));
            k->vo->gemm_nn(P, nt, a->k + (size_t)j0 * nk + (size_t)g * hd, (int)nk, k->qT + (size_t)h * hd * T + q0, T,
                           jb, nt, hd);
            k->vo->gemm_nn(dS, nt, a->v + (size_t)j0 * nk + (size_t)g * hd, (int)nk, k->oT + (size_t)h * hd * T + q0,
                           T, jb, nt, hd);
            for (int j = j0; j < j1; j++) {
                float *p = P + (size_t)(j - j0) * nt, *ds = dS + (size_t)(j - j0) * nt;
                for (int i = 0; i < nt; i++) {
                    int t = q0 + i;
                    if (j < a->lo[t] || j >= a->hi[t]) { p[i] = ds[i] = 0; continue; }
                    float pv = expf(p[i] - k->lse[(size_t)t * nH + h]);
                    ds[i] = pv * (ds[i] - k->D[(size_t)t * nH + h]);
                    p[i] = pv;
                }
            }
            k->vo->gemm_nn(a->dk + (size_t)j0 * nk + (size_t)g * hd, (int)nk, dS, nt, a->q + (size_t)q0 * nq + (size_t)h * hd,
                           (int)nq, jb, hd, nt);
            k->vo->gemm_nn(a->dv + (size_t)j0 * nk + (size_t)g * hd, (int)nk, P, nt,
                           a->dout + (size_t)q0 * nq + (size_t)h * hd, (int)nq, jb, hd, nt);
        }
    }
}

void g4_op_attention_bwd(g4_exec *ex, const g4_attn_bwd *a, float *ws) {
    if (ex->precision == 0 && a->softcap <= 0) {   /* Gemma 4's attention has no softcap */
        int nth = ex->n_threads;
        size_t per = 2 * (size_t)ATT_B * (size_t)a->n_pos;
        if (per < 2 * (size_t)a->n_pos + (size_t)a->head_dim) per = 2 * (size_t)a->n_pos + (size_t)a->head_dim;
        float *lse = ws + (size_t)nth * per, *D = lse + (size_t)a->n_pos * a->n_head, *kT = D + (size_t)a->n_pos * a->n_head;
        float *vT = kT + (size_t)a->n_kv_head * a->head_dim * a->n_pos, *qT = vT + (size_t)a->n_kv_head * a->head_dim * a->n_pos;
        float *oT = qT + (size_t)a->n_head * a->head_dim * a->n_pos;
        float *PT = a->ps_store, *dST = PT ? PT + (size_t)a->n_head * a->n_pos * a->T : NULL;
        attf_task k = { a, ws, per, lse, D, kT, vT, qT, oT, g4_vec_get(), PT, dST };
        g4_pool_run(ex->pool, attf_transpose, &k);
        g4_pool_run(ex->pool, attf_queries, &k);
        g4_pool_run(ex->pool, attf_keys, &k);
        return;
    }
    size_t per = (size_t)ex->n_threads * (2 * (size_t)a->n_pos + (size_t)a->head_dim);
    attb_task k = { a, ws, ws + per, ws + per + (size_t)a->n_pos * a->n_head, dot_seq, axpy_seq };
    if (ex->precision == 0) { k.dot = g4_vec_get()->dot; k.axpy = g4_vec_get()->axpy; }
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

/* The fast path's row: the same three passes with e^x in f32 (g4_exp8,
 * ~2 ulp; arguments clamped to [-87, 0], below which e^x < 2e-38 adds
 * nothing) and the sum in double per 512 values. */
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static double xent_row_avx2(float *lg, int V, int tgt, float scale,
                                                                float softcap) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= V; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(lg + i));
    float b[8], mx = -INFINITY;
    _mm256_storeu_ps(b, vm);
    for (int j = 0; j < 8; j++) mx = b[j] > mx ? b[j] : mx;
    for (int j = i; j < V; j++) mx = lg[j] > mx ? lg[j] : mx;
    const __m256 lo = _mm256_set1_ps(-87.0f), zero = _mm256_setzero_ps(), vmx = _mm256_set1_ps(mx);
    double sum = 0;
    for (i = 0; i + 8 <= V;) {
        __m256 acc = zero;
        for (int e = i + 512 < V ? i + 512 : V; i + 8 <= e; i += 8)
            acc = _mm256_add_ps(acc, g4_exp8(_mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(lg + i), vmx), lo)));
        _mm256_storeu_ps(b, acc);
        for (int j = 0; j < 8; j++) sum += b[j];
    }
    for (; i < V; i++) sum += exp((double)(lg[i] - mx));
    double lse = mx + log(sum), loss = lse - lg[tgt];
    float ls = (float)lse, y_t = lg[tgt];
    const __m256 vls = _mm256_set1_ps(ls), vsc = _mm256_set1_ps(scale), one = _mm256_set1_ps(1.0f),
                 vinv = _mm256_set1_ps(softcap > 0 ? 1.0f / softcap : 0.0f);
    for (i = 0; i + 8 <= V; i += 8) {
        __m256 y = _mm256_loadu_ps(lg + i);
        __m256 d = _mm256_mul_ps(g4_exp8(_mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(y, vls), lo), zero)), vsc);
        if (softcap > 0) {
            __m256 c = _mm256_mul_ps(y, vinv);
            d = _mm256_mul_ps(d, _mm256_fnmadd_ps(c, c, one));
        }
        _mm256_storeu_ps(lg + i, d);
    }
    for (; i < V; i++) {
        float y = lg[i], d = (float)exp((double)(y - ls)) * scale;
        if (softcap > 0) { float c = y * (1.0f / softcap); d *= 1.0f - c * c; }
        lg[i] = d;
    }
    /* the target's term: - scale, times the softcap's derivative */
    float dt = -scale;
    if (softcap > 0) { float c = y_t * (1.0f / softcap); dt *= 1.0f - c * c; }
    lg[tgt] += dt;
    return loss;
}
#endif

typedef struct xent_task {
    float *lg;
    int n, V, zero_untargeted, fast;
    const int32_t *tgt;
    float scale, softcap;
    double *loss;
} xent_task;

static void xent_worker(void *arg, int ith, int nth) {
    xent_task *k = arg;
    long lo, hi;
    g4_split(k->n, ith, nth, &lo, &hi);
    for (long r = lo; r < hi; r++) {
        float *lg = k->lg + (size_t)r * (size_t)k->V;
        int tg = k->tgt ? k->tgt[r] : -1;
        k->loss[r] = 0;
        if (tg < 0) {
            if (k->zero_untargeted) memset(lg, 0, (size_t)k->V * sizeof(float));
            continue;
        }
#if defined(__x86_64__)
        if (k->fast) { k->loss[r] = xent_row_avx2(lg, k->V, tg, k->scale, k->softcap); continue; }
#endif
        k->loss[r] = g4_op_xent_fwd_bwd(lg, k->V, tg, k->scale, k->softcap);
    }
}

void g4_op_xent_rows(g4_exec *ex, float *lg, int n, int V, const int32_t *tgt, float scale, float softcap,
                     int zero_untargeted, double *loss) {
    xent_task k = { lg, n, V, zero_untargeted, 0, tgt, scale, softcap, loss };
#if defined(__x86_64__)
    k.fast = ex->precision == 0 && (g4_cpu_level() == G4_CPU_AVX2 || g4_cpu_level() == G4_CPU_AVX512);
#endif
    if (n < 2 || !ex->pool) xent_worker(&k, 0, 1);
    else g4_pool_run(ex->pool, xent_worker, &k);
}
