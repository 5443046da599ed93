#include "tensor/matmul.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "tensor/act.h"
#include "tensor/bf16.h"
#include "tensor/cpu.h"
#include "tensor/quant_isa.h"
#include "tensor/types.h"

typedef struct mm_task {
    const g4_mm_job *jobs;
    int n_jobs;
    const float *x;        /* shared input */
    int64_t ldx, n;
    int T;
    int exact;
    const g4_type_traits *at;
    const uint8_t *xq[G4_MM_MAX_JOBS]; /* each job's quantized input (T rows of xq_row bytes) */
    size_t xq_row;
    int n_quant;                       /* distinct inputs to quantize: [0] shared, then own */
    long qstart[G4_MM_MAX_JOBS + 2];   /* first (input, token) item of each input */
    const float *qsrc[G4_MM_MAX_JOBS + 1];
    uint8_t *qdst[G4_MM_MAX_JOBS + 1];
    long rstart[G4_MM_MAX_JOBS + 1];   /* first row of each job in the combined rows */
    long min_rows[G4_MM_MAX_JOBS];     /* smallest grab per job */
    long share;                        /* a grab takes 1/(share * nth) of what is left */
    float *xt;          /* exact path, T >= XT_MIN: x in groups of 8 tokens, [T/8][n][8] */
    float *rbuf;        /* exact path: per thread XT_ROWS decoded weight rows */
    const int32_t *pcol;               /* g4_mm_scratch: the panel tokens of the shared input */
    int np;
    uint16_t *pan;                     /* bf16 path: per thread one panel of pan_elems */
    size_t pan_elems;
    uint8_t *wq;                       /* int8 path: per thread a 32-row Q8_0 panel + an f32 row */
    const float *clamp;                /* int8 path: NULL or clampv, {lo, hi} for x (g4_mm_scratch.x_clamp) */
    float clampv[2];
    size_t wq_bytes;
    int bq;                            /* the input rounded to bf16 rows (with pan) */
    const uint16_t *xb;                /* pbf16: the panel tokens' bf16 rows, xb_row bytes apart */
    size_t xb_row;
    atomic_long next;                  /* next unclaimed combined row */
    int fused;                         /* quantize in the rows' section first */
    atomic_long qnext, qdone;          /* fused: next unclaimed / quantized items */
    uint64_t input;                    /* this call's id for the panels' per-token data (types.h) */
} mm_task;

/* int8 path: rows rounded to Q8_0 per block (a thread's scratch: 256 rows
 * x 3264 bytes at n = 3072), tokens per chunk of 512 KB of activations
 * (160 at n = 3072, 640 at n = 768: with the two re-laid panels within a
 * 1 MB L2; the group data per chunk and block costs ~2% at 256 rows) */
enum { I8_ROWS = 256, I8_CHUNK = 512 << 10 };

/* ids of g4_matmul_multi calls: unique in the process, so a panel kernel
 * never takes one call's activations for another's, concurrent or later */
static atomic_uint_fast64_t mm_inputs;

uint64_t g4_matmul_input_id(void) { return atomic_fetch_add_explicit(&mm_inputs, 1, memory_order_relaxed) + 1; }

/* Used when a type has no block kernel: one vec_dot per (row, token). */
static void gemm_generic(g4_vec_dot_fn dot, int64_t n, int nr, int nc, const void *w, size_t ws,
                         const void *x, size_t xs, float *y, size_t ys) {
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++)
            y[(size_t)c * ys + r] = dot((const char *)w + (size_t)r * ws, (const char *)x + (size_t)c * xs, n);
}

/* Work items: (input, token) pairs; inputs may have different row counts. */
static void quantize_item(const mm_task *k, long i) {
    int q = 0;
    while (i >= k->qstart[q + 1]) q++;
    long t = i - k->qstart[q];
    if (k->pan && q == k->bq && k->xb) /* pbf16: panel token t, at row pcol[t] */
        g4_bf16_round_row(k->qsrc[q] + k->pcol[t] * k->ldx, (uint16_t *)(void *)(k->qdst[q] + (size_t)t * k->xb_row),
                          k->n);
    else if (k->pan && q == k->bq)
        g4_bf16_round_row(k->qsrc[q] + t * k->ldx, (uint16_t *)(void *)(k->qdst[q] + (size_t)t * k->xq_row), k->n);
    else if (k->wq && g4_p512_q8_0_rows(G4_F32, k->qsrc[q] + t * k->ldx, 0, 1, k->n, k->qdst[q] + (size_t)t * k->xq_row,
                                        0, k->clamp))
        ;   /* int8 path: the weights' own rounding, in 16 lanes */
    else
        k->at->from_float(k->qsrc[q] + t * k->ldx, (void *)(k->qdst[q] + (size_t)t * k->xq_row), k->n);
}

static void quantize_task(void *arg, int ith, int nth) {
    mm_task *k = arg;
    long lo, hi;
    g4_split(k->qstart[k->n_quant], ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) quantize_item(k, i);
}

/* The fused form at the start of the rows' section: items claimed one at a
 * time, then every thread waits until all are written. A section of its
 * own cost a second fork/join per product (~1,000 per batched E2B step),
 * and its static halves waited for a late worker; here whoever is present
 * quantizes everything. */
static void quantize_claimed(mm_task *k) {
    const long total = k->qstart[k->n_quant];
    const long step = total >= 64 ? 8 : 1;   /* prefill: fewer claims on the shared counters */
    for (long i; (i = atomic_fetch_add_explicit(&k->qnext, step, memory_order_relaxed)) < total;) {
        const long e = total - i < step ? total : i + step;
        for (long j = i; j < e; j++) quantize_item(k, j);
        atomic_fetch_add_explicit(&k->qdone, e - i, memory_order_release);
    }
    /* yield only when the thread writing an item is long late (descheduled) */
    for (int spins = 0; atomic_load_explicit(&k->qdone, memory_order_acquire) < total; spins++) {
        if (spins < 16000) g4_cpu_relax();
        else sched_yield();
    }
}

/* a job's own row count goes with its own input only */
static inline int job_T(const mm_task *k, const g4_mm_job *jb) { return jb->T > 0 && jb->x ? jb->T : k->T; }

static void softcap_rows(float *y, int64_t ldy, int T, long lo, long hi, float cap, int exact) {
    for (int t = 0; t < T; t++) g4_softcap(y + t * ldy + lo, hi - lo, cap, exact);
}

/* The type's block kernel, or the loop over its vec_dot where it has none. */
static inline void gemm_any(const g4_type_traits *wt, int64_t n, int nr, int nc, const void *w, size_t ws,
                            const void *xq, size_t xs, float *y, size_t ys) {
    if (wt->gemm) wt->gemm(n, nr, nc, w, ws, xq, xs, y, ys);
    else gemm_generic(wt->vec_dot, n, nr, nc, w, ws, xq, xs, y, ys);
}

/* Rows lo..hi of job j against its tokens t0..t0+T-1 through the type's
 * gemm (fast path). Every (row, token) result is the same whatever T, the
 * tiling or the thread (the tiles only reuse loaded blocks), so a token's
 * value does not depend on which run of tokens it came in. */
static void gemm_rows(mm_task *k, int j, long lo, long hi, int t0, int T) {
    const g4_mm_job *jb = &k->jobs[j];
    const g4_mat *w = jb->w;
    const g4_type_traits *wt = g4_type_info(w->type);
    const int64_t n = k->n;
    const uint8_t *xq0 = k->xq[j] + (size_t)t0 * k->xq_row;
    float *y0 = jb->y + (size_t)t0 * jb->ldy;
    /* Cache blocking: a block of ROWS weight rows (tens of KB) stays in
     * L1/L2 while it meets a block of TOKS activation rows; the
     * micro-kernel reuses each loaded block across several rows and
     * tokens in registers. Decode (T = 1) streams the rows once. */
    enum { ROWS = 32, TOKS = 64, SMALL_T = 16 };
    /* decode: one call for the thread's whole range, so per-call work
     * in the kernel (activation re-layout, prefetch ramp-up) is paid
     * once per matrix, not per 32 rows */
    const long rows = T == 1 ? hi - lo : ROWS;
    if (T == 1) {
        /* the kernels' row loops prefetch ahead of themselves; a new
         * stream's first 8 KB would otherwise come one demand miss at a
         * time (K-quants ~3% of a step; Q4_0/Q8_0 0.5-1%, within the
         * A/B's bias) */
        const char *p = g4_mat_row(w, jb->mat, lo);
        const size_t pre = (size_t)(hi - lo) * w->row_bytes < 8192 ? (size_t)(hi - lo) * w->row_bytes : 8192;
        for (size_t o = 0; o < pre; o += 64) __builtin_prefetch(p + o, 0, 3);
    }
    if (T > 1 && T <= SMALL_T) {
        /* a few tokens (batched decode of several sequences): still bound
         * by the weight stream, which one row at a time keeps sequential
         * (the kernels' 4-row tiles would read 4 interleaved streams) */
        if (wt->gemm_row_stream) /* per-call work (activation layout) once per grab */
            gemm_any(wt, n, (int)(hi - lo), T, g4_mat_row(w, jb->mat, lo), w->row_bytes, xq0, k->xq_row, y0 + lo,
                     (size_t)jb->ldy);
        else
            for (long o = lo; o < hi; o++)
                gemm_any(wt, n, 1, T, g4_mat_row(w, jb->mat, o), w->row_bytes, xq0, k->xq_row, y0 + o,
                         (size_t)jb->ldy);
        return;
    }
    for (long o0 = lo; o0 < hi; o0 += rows) {
        int nr = (int)(hi - o0 < rows ? hi - o0 : rows);
        const void *row = g4_mat_row(w, jb->mat, o0);
        for (int c0 = 0; c0 < T; c0 += TOKS) {
            int nc = T - c0 < TOKS ? T - c0 : TOKS;
            gemm_any(wt, n, nr, nc, row, w->row_bytes, xq0 + (size_t)c0 * k->xq_row, k->xq_row,
                     y0 + (size_t)c0 * jb->ldy + o0, (size_t)jb->ldy);
        }
    }
}

/* ---- exact path over many tokens -------------------------------------------------
 * dot_f32 of a quantized type decodes one block (QB values) at a time and
 * sums each block's products serially in f32 from 0, then adds the block's
 * sum to the row total. Per (row, token) that repeats the decode T times and
 * runs one serial chain of adds (latency bound); training's forward and
 * backward (every product exact) spent ~90% of an E2B step there. The same
 * arithmetic, in the same order per token, runs here with the row decoded
 * once (to_float is the same block decoder) and 8 tokens side by side in
 * vector lanes: x is re-laid out once per call as [T/8][n][8], each lane
 * one token's serial chain, so every result is bit-identical to dot_f32
 * (mul and add are separate statements: nothing fuses them). XT_ROWS rows
 * share each loaded x vector. */
enum { XT_MIN = 8, XT_ROWS = 4 };
typedef float v8f __attribute__((vector_size(32)));
typedef float v8fu __attribute__((vector_size(32), aligned(4)));

static void xt_task(void *arg, int ith, int nth) {
    mm_task *k = arg;
    long lo, hi;
    const long ng = (k->T + 7) / 8;
    g4_split(ng, ith, nth, &lo, &hi);
    for (long g = lo; g < hi; g++) {
        float *d = k->xt + (size_t)g * (size_t)k->n * 8;
        for (int l = 0; l < 8; l++) {
            long t = g * 8 + l;
            const float *x = t < k->T ? k->x + (size_t)t * (size_t)k->ldx : NULL;
            for (int64_t i = 0; i < k->n; i++) d[(size_t)i * 8 + l] = x ? x[i] : 0.0f;
        }
    }
}

/* nr (<= XT_ROWS) decoded rows r[] against every group of 8 tokens */
__attribute__((always_inline)) static inline void xt_rows_body(const float *const *r, int nr, const float *xt,
                                                               int64_t n, int64_t qb, int T, float *y,
                                                               int64_t ldy) {
    for (int g = 0; g * 8 < T; g++) {
        const float *xg = xt + (size_t)g * (size_t)n * 8;
        v8f s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
        for (int64_t b = 0; b < n; b += qb) {
            v8f a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
            for (int64_t j = b; j < b + qb; j++) {
                const v8f xv = *(const v8fu *)(xg + (size_t)j * 8);
                v8f p0 = r[0][j] * xv;
                a0 += p0;
                if (nr > 1) { v8f p1 = r[1][j] * xv; a1 += p1; }
                if (nr > 2) { v8f p2 = r[2][j] * xv; a2 += p2; }
                if (nr > 3) { v8f p3 = r[3][j] * xv; a3 += p3; }
            }
            s0 += a0; s1 += a1; s2 += a2; s3 += a3;
        }
        const v8f s[4] = { s0, s1, s2, s3 };
        for (int l = 0; l < 8 && g * 8 + l < T; l++)
            for (int i = 0; i < nr; i++) y[(size_t)(g * 8 + l) * (size_t)ldy + i] = s[i][l];
    }
}

static void xt_rows_ref(const float *const *r, int nr, const float *xt, int64_t n, int64_t qb, int T, float *y,
                        int64_t ldy) {
    xt_rows_body(r, nr, xt, n, qb, T, y, ldy);
}

#if defined(__x86_64__)
/* AVX2 without FMA: 256-bit mul and add, the same values as the reference */
__attribute__((target("avx2"))) static void xt_rows_avx2(const float *const *r, int nr, const float *xt,
                                                         int64_t n, int64_t qb, int T, float *y, int64_t ldy) {
    xt_rows_body(r, nr, xt, n, qb, T, y, ldy);
}
#endif

static void job_rows_xt(mm_task *k, const g4_mm_job *jb, long lo, long hi, int ith) {
    const g4_mat *w = jb->w;
    const g4_type_traits *wt = g4_type_info(w->type);
    const int64_t n = k->n;
    float *rb = k->rbuf + (size_t)ith * XT_ROWS * (size_t)n;
    void (*fn)(const float *const *, int, const float *, int64_t, int64_t, int, float *, int64_t) = xt_rows_ref;
#if defined(__x86_64__)
    if (g4_cpu_level() == G4_CPU_AVX2 || g4_cpu_level() == G4_CPU_AVX512) fn = xt_rows_avx2;
#endif
    for (long o = lo; o < hi; o += XT_ROWS) {
        int nr = (int)(hi - o < XT_ROWS ? hi - o : XT_ROWS);
        const float *r[XT_ROWS];
        for (int i = 0; i < nr; i++) {
            float *d = rb + (size_t)i * (size_t)n;
            wt->to_float(g4_mat_row(w, jb->mat, o + i), d, n);
            r[i] = d;
        }
        fn(r, nr, k->xt, n, wt->blck_size, k->T, jb->y + o, jb->ldy);
    }
}

static void job_rows(mm_task *k, int j, long lo, long hi, int ith) {
    const g4_mm_job *jb = &k->jobs[j];
    const g4_mat *w = jb->w;
    const g4_type_traits *wt = g4_type_info(w->type);
    const int64_t n = k->n;
    const int T = job_T(k, jb);
    if (k->wq) {
        /* int8: up to I8_ROWS rows rounded to Q8_0, then Q8_0's panel
         * kernel against every token in L2-sized chunks (each chunk's group
         * data once per block of rows, each panel re-laid once per chunk) */
        const g4_type_traits *q8 = g4_type_info(G4_Q8_0);
        uint8_t *wq = k->wq + (size_t)ith * k->wq_bytes;
        float *row = (float *)(void *)(wq + (size_t)I8_ROWS * k->xq_row);
        for (long o = lo; o < hi; o += I8_ROWS) {
            const int nr = (int)(hi - o < I8_ROWS ? hi - o : I8_ROWS);
            if (!g4_p512_q8_0_rows(w->type, g4_mat_row(w, jb->mat, o), w->row_bytes, nr, n, wq, k->xq_row, NULL))
                for (int r = 0; r < nr; r++) {
                    wt->to_float(g4_mat_row(w, jb->mat, o + r), row, n);
                    q8->from_float(row, wq + (size_t)r * k->xq_row, n);
                }
            if (!g4_p512_q8_0_gemm(n, nr, T, wq, k->xq_row, k->xq[j], k->xq_row, jb->y + o, (size_t)jb->ldy,
                                   I8_CHUNK))
                gemm_any(q8, n, nr, T, wq, k->xq_row, k->xq[j], k->xq_row, jb->y + o, (size_t)jb->ldy);
        }
    } else if (k->pan && k->xb) {
        /* pbf16: each 32-row panel packed once, then against the panel
         * tokens' bf16 rows (in runs of consecutive rows, usually one);
         * the other tokens through gemm, as after the int8 panels below */
        uint16_t *pan = k->pan + (size_t)ith * k->pan_elems;
        for (long o = lo; o < hi; o += G4_BF16_PR) {
            const int nr = (int)(hi - o < G4_BF16_PR ? hi - o : G4_BF16_PR);
            g4_bf16_pack_rows(pan, w->type, g4_mat_row(w, jb->mat, o), w->row_bytes, nr, n);
            for (int i = 0, e; i < k->np; i = e) {
                for (e = i + 1; e < k->np && k->pcol[e] == k->pcol[e - 1] + 1;) e++;
                g4_bf16_gemm(pan, n, nr, k->xb + (size_t)i * (k->xb_row / 2), k->xb_row / 2, e - i,
                             jb->y + (size_t)k->pcol[i] * jb->ldy + o, (size_t)jb->ldy);
            }
        }
        int t0 = 0;
        for (int i = 0; i <= k->np; i++) {
            const int t1 = i < k->np ? k->pcol[i] : T;
            if (t1 > t0) gemm_rows(k, j, lo, hi, t0, t1 - t0);
            t0 = t1 + 1;
        }
    } else if (k->pan) {
        /* bf16: each 32-row panel packed once, then against every token */
        uint16_t *pan = k->pan + (size_t)ith * k->pan_elems;
        for (long o = lo; o < hi; o += G4_BF16_PR) {
            const int nr = (int)(hi - o < G4_BF16_PR ? hi - o : G4_BF16_PR);
            g4_bf16_pack_rows(pan, w->type, g4_mat_row(w, jb->mat, o), w->row_bytes, nr, n);
            g4_bf16_gemm(pan, n, nr, (const uint16_t *)(const void *)k->xq[j], k->xq_row / 2, T, jb->y + o,
                         (size_t)jb->ldy);
        }
    } else if (k->exact && k->xt && !jb->x && wt->is_quantized) {
        job_rows_xt(k, jb, lo, hi, ith);
    } else if (k->exact) {
        const float *xj = jb->x ? jb->x : k->x;
        /* every token through the same dot_f32, so a token's result does not
         * depend on what else is in the batch (batched equals alone); the
         * block decode it repeats per token is cheap next to the reference
         * precision this path is for */
        for (long o = lo; o < hi; o++) {
            const void *row = g4_mat_row(w, jb->mat, o);
            for (int t = 0; t < T; t++) jb->y[t * jb->ldy + o] = wt->dot_f32(row, xj + t * k->ldx, n);
        }
    } else if (k->np > 0 && !jb->x && wt->gemm_panel &&
               wt->gemm_panel(n, (int)(hi - lo), k->np, k->pcol, g4_mat_row(w, jb->mat, lo), w->row_bytes, k->xq[j],
                              k->xq_row, jb->y + lo, (size_t)jb->ldy, k->input)) {
        /* the panel tokens went in one call (each panel re-laid once for
         * all of them); the others, in runs between them, through gemm */
        int t0 = 0;
        for (int i = 0; i <= k->np; i++) {
            const int t1 = i < k->np ? k->pcol[i] : T;
            if (t1 > t0) gemm_rows(k, j, lo, hi, t0, t1 - t0);
            t0 = t1 + 1;
        }
    } else {
        gemm_rows(k, j, lo, hi, 0, T);
    }
    if (jb->softcap > 0) softcap_rows(jb->y, jb->ldy, T, lo, hi, jb->softcap, k->exact);
}

/* Guided self-scheduling: each grab takes a share of what is left (1/(2
 * nth), or 1/nth for decode sections under 16 MB), never less than
 * min_rows of its job, never past the job's end. Early grabs are large (few
 * atomics), the last ones small, so the threads finish together even when
 * one of them is slowed (memory contention, a busy core); a static split
 * left ~10% of a decode step waiting at barriers. Every grab starts a new
 * memory stream, so the 2-16 MB sections of a decode step (q/k/v, the
 * output projection, the MLP) go a little faster with fewer, larger ones
 * (~1% per E2B step, in-process A/B); the long LM head keeps 1/(2 nth)
 * (1/nth there was slower). Which thread computes a row never changes its
 * value. */
static void mm_rows_task(void *arg, int ith, int nth) {
    mm_task *k = arg;
    if (k->fused) quantize_claimed(k);
    const long total = k->rstart[k->n_jobs];
    long cur = atomic_load_explicit(&k->next, memory_order_relaxed);
    int j = 0;
    while (cur < total) {
        while (cur >= k->rstart[j + 1]) j++;
        long n = (total - cur) / (k->share * nth);
        if (n < k->min_rows[j]) n = k->min_rows[j];
        if (n > k->rstart[j + 1] - cur) n = k->rstart[j + 1] - cur;
        if (!atomic_compare_exchange_weak_explicit(&k->next, &cur, cur + n, memory_order_relaxed,
                                                   memory_order_relaxed)) {
            if (cur < k->rstart[j]) j = 0;   /* cannot happen (cur only grows), but stay safe */
            continue;
        }
        job_rows(k, j, cur - k->rstart[j], cur + n - k->rstart[j], ith);
        cur = atomic_load_explicit(&k->next, memory_order_relaxed);
    }
}

/* The int8 path's conditions (matmul.h g4_mm_scratch.i8) for jobs that
 * share one input and one n_in; np: the call's panel tokens. */
static bool i8_takes(const g4_pool *pool, const g4_mm_job *jobs, int n_jobs, int T, int precision, int np,
                     const g4_mm_scratch *s) {
    const int64_t n = jobs[0].w->n_in;
    if (precision == 1 || !s || !s->i8 || T < G4_MM_BF16_MIN_T || n < G4_MM_BF16_MIN_N || n % 32 || np ||
        !g4_type_info(G4_Q8_0)->gemm_panel || !s->act)
        return false;
    for (int j = 0; j < n_jobs; j++) {
        const int ty = jobs[j].w->type;
        if (jobs[j].x || jobs[j].w->n_in != n || (ty != G4_F32 && ty != G4_F16 && ty != G4_BF16)) return false;
    }
    const size_t xrow = g4_row_size(G4_Q8_0, n), acts = ((size_t)T * xrow + 63) / 64 * 64,
                 wb = ((size_t)I8_ROWS * xrow + (size_t)n * sizeof(float) + 63) / 64 * 64;
    const size_t pad = (size_t)(((uintptr_t)s->act + 63) / 64 * 64 - (uintptr_t)s->act);
    return pad + acts + (size_t)g4_pool_size(pool) * wb <= s->act_bytes;
}

bool g4_matmul_i8_takes(const g4_pool *pool, const g4_mat *w, int T, int precision, const g4_mm_scratch *s) {
    const g4_mm_job j = { .w = w };
    const bool np = s && s->pcol && s->np > 0 && s->np <= T && s->pcol[0] >= 0 && s->pcol[s->np - 1] < T;
    return i8_takes(pool, &j, 1, T, precision, np ? s->np : 0, s);
}

void g4_matmul_multi(g4_pool *pool, const g4_mm_job *jobs, int n_jobs, const float *x, int64_t ldx, int T,
                     int precision, g4_mm_scratch *s) {
    if (n_jobs < 1) return;
    mm_task k = { .jobs = jobs, .n_jobs = n_jobs, .x = x, .ldx = ldx, .n = jobs[0].w->n_in, .T = T,
                  .exact = precision == 1 };
    /* panel tokens: a valid ascending list of this call's rows, or none */
    if (s->pcol && s->np > 0 && s->np <= T && s->pcol[0] >= 0 && s->pcol[s->np - 1] < T) {
        k.pcol = s->pcol;
        k.np = s->np;
        k.input = atomic_fetch_add_explicit(&mm_inputs, 1, memory_order_relaxed) + 1;
    }
    bool split = n_jobs > G4_MM_MAX_JOBS;
    int vdt = g4_type_info(jobs[0].w->type)->vec_dot_type;
    for (int j = 0; j < n_jobs && !split; j++)
        split = jobs[j].w->n_in != k.n || g4_type_info(jobs[j].w->type)->vec_dot_type != vdt;
    /* int8 products: the activations as Q8_0, then blocks of Q8_0 rows per thread */
    if (!split && i8_takes(pool, jobs, n_jobs, T, precision, k.np, s)) {
        const g4_type_traits *q8 = g4_type_info(G4_Q8_0);
        size_t xrow = g4_row_size(G4_Q8_0, k.n), acts = ((size_t)T * xrow + 63) / 64 * 64,
               wb = ((size_t)I8_ROWS * xrow + (size_t)k.n * sizeof(float) + 63) / 64 * 64;
        uint8_t *base = (uint8_t *)(((uintptr_t)s->act + 63) / 64 * 64);
        k.wq = base + acts;
        k.wq_bytes = wb;
        k.at = q8;
        k.xq_row = xrow;
        for (int j = 0; j < n_jobs; j++) k.xq[j] = base;
        k.qsrc[0] = x;
        k.qdst[0] = base;
        k.qstart[1] = T;
        k.n_quant = 1;
        if (s->x_clamp) {
            k.clampv[0] = s->x_lo;
            k.clampv[1] = s->x_hi;
            k.clamp = k.clampv;
        }
    }
    /* bf16 products: the activations' bf16 rows, then one panel per thread */
    bool bf16 = !k.wq && !k.exact && !split && s->bf16 && T >= G4_MM_BF16_MIN_T && k.n >= G4_MM_BF16_MIN_N && !k.np &&
                g4_bf16_dot_ok();
    for (int j = 0; j < n_jobs && bf16; j++) {
        const int ty = jobs[j].w->type;
        bf16 = !jobs[j].x && (ty == G4_F32 || ty == G4_F16 || ty == G4_BF16);
    }
    if (bf16) {
        size_t xrow = (size_t)(k.n + 1) / 2 * 4, acts = ((size_t)T * xrow + 63) / 64 * 64,
               pe = g4_bf16_panel_elems(G4_BF16_PR, k.n);
        uint8_t *base = (uint8_t *)(((uintptr_t)s->act + 63) / 64 * 64);
        size_t need = (size_t)(base - (uint8_t *)s->act) + acts + (size_t)g4_pool_size(pool) * pe * 2;
        if (s->act && need <= s->act_bytes) {
            k.pan = (uint16_t *)(void *)(base + acts);
            k.pan_elems = pe;
            k.xq_row = xrow;
            for (int j = 0; j < n_jobs; j++) k.xq[j] = base;
            k.qsrc[0] = x;
            k.qdst[0] = base;
            k.qstart[1] = T;
            k.n_quant = 1;
        }
    }
    if (!k.exact && !split && !k.pan && !k.wq) {
        k.at = g4_type_info(vdt);
        k.xq_row = g4_row_size(vdt, k.n);
        size_t need = (size_t)T * k.xq_row;
        uint8_t *dst = s->act;
        bool shared = false;
        for (int j = 0; j < n_jobs; j++) shared |= jobs[j].x == NULL;
        if (shared) { k.qsrc[k.n_quant] = x; k.qdst[k.n_quant++] = dst; dst += need; }
        if (shared) k.qstart[k.n_quant] = T;
        for (int j = 0; j < n_jobs; j++) {
            if (!jobs[j].x) { k.xq[j] = s->act; continue; }
            size_t nj = (size_t)job_T(&k, &jobs[j]) * k.xq_row;
            if ((size_t)(dst - (uint8_t *)s->act) + nj > s->act_bytes) { split = true; break; }
            k.xq[j] = dst;
            k.qsrc[k.n_quant] = jobs[j].x;
            k.qdst[k.n_quant] = dst;
            k.qstart[k.n_quant + 1] = k.qstart[k.n_quant] + job_T(&k, &jobs[j]);
            k.n_quant++;
            dst += nj;
        }
    }
    /* pbf16: the panel tokens of F32/F16/BF16 weights as bf16 products
     * (matmul.h), after the gemm rows of every token set up above */
    bool pbf = !k.exact && !split && !k.pan && s->pbf16 && k.np && k.n >= G4_MM_BF16_MIN_N && k.n_quant == 1 &&
               g4_bf16_dot_ok();
    for (int j = 0; j < n_jobs && pbf; j++) {
        const int ty = jobs[j].w->type;
        pbf = !jobs[j].x && (ty == G4_F32 || ty == G4_F16 || ty == G4_BF16);
    }
    if (pbf) {
        const size_t xrow = (size_t)(k.n + 1) / 2 * 4, pe = g4_bf16_panel_elems(G4_BF16_PR, k.n);
        uint8_t *xb = (uint8_t *)(((uintptr_t)s->act + (size_t)T * k.xq_row + 63) / 64 * 64);
        uint8_t *pan = xb + ((size_t)k.np * xrow + 63) / 64 * 64;
        if ((size_t)(pan - (uint8_t *)s->act) + (size_t)g4_pool_size(pool) * pe * 2 <= s->act_bytes) {
            k.pan = (uint16_t *)(void *)pan;
            k.pan_elems = pe;
            k.xb = (const uint16_t *)(const void *)xb;
            k.xb_row = xrow;
            k.bq = 1;
            k.qsrc[1] = x;
            k.qdst[1] = xb;
            k.qstart[2] = T + k.np;
            k.n_quant = 2;
        }
    }
    if (split) {
        for (int j = 0; j < n_jobs; j++)
            g4_matmul_multi(pool, &jobs[j], 1, jobs[j].x ? jobs[j].x : x, ldx,
                            jobs[j].T > 0 && jobs[j].x ? jobs[j].T : T, precision, s);
        return;
    }
    double bytes = 0;
    for (int j = 0; j < n_jobs; j++) {
        const g4_mat *w = jobs[j].w;
        k.rstart[j + 1] = k.rstart[j] + (long)w->n_out;
        bytes += (double)w->n_out * (double)w->row_bytes;
        /* decode: >= 64 KB of weights per grab (each grab starts a new
         * stream; 1.3% per step over 16 KB in an A/B later found biased by
         * ~0.5%, 256 KB no better); prefill: whole 32-row blocks */
        long mr = T == 1 ? (long)(65536 / (w->row_bytes ? w->row_bytes : 1)) : 32;
        k.min_rows[j] = mr < 1 ? 1 : mr;
    }
    k.share = T == 1 && bytes < 16e6 ? 1 : 2;
    atomic_init(&k.next, 0);
    if (k.exact && T >= XT_MIN && s && s->act) {
        /* the re-laid-out x and each thread's decoded rows, where the
         * scratch holds them (else the per-token dot_f32 loop) */
        bool quant = false;
        for (int j = 0; j < n_jobs; j++) quant |= !jobs[j].x && g4_type_info(jobs[j].w->type)->is_quantized;
        size_t nxt = (size_t)(T + 7) / 8 * 8 * (size_t)k.n, nrb = (size_t)g4_pool_size(pool) * XT_ROWS * (size_t)k.n;
        if (quant && (nxt + nrb) * sizeof(float) <= s->act_bytes) {
            k.xt = s->act;
            k.rbuf = k.xt + nxt;
            g4_pool_run(pool, xt_task, &k);
        }
    }
    if (!k.exact) {
        /* a decode step's few rows are quicker to quantize here than to
         * hand out; more go first in the rows' own section */
        if (k.qstart[k.n_quant] < 4) quantize_task(&k, 0, 1);
        else k.fused = 1;
    }
    atomic_init(&k.qnext, 0);
    atomic_init(&k.qdone, 0);
    /* rows are claimed, never assigned: whoever is present does them all */
    g4_pool_run_dyn(pool, mm_rows_task, &k);
}

size_t g4_matmul_bf16_bytes(int64_t n_in_max, int n_threads) {
    return (size_t)n_threads * g4_bf16_panel_elems(G4_BF16_PR, n_in_max) * 2 + 128;
}

size_t g4_matmul_i8_bytes(int64_t n_in_max, int T, int n_threads) {
    const size_t xrow = g4_row_size(G4_Q8_0, n_in_max / 32 * 32);
    return ((size_t)(T > 0 ? T : 0) * xrow + 63) / 64 * 64 +
           (size_t)n_threads * (((size_t)I8_ROWS * xrow + (size_t)n_in_max * sizeof(float) + 63) / 64 * 64) + 128;
}

size_t g4_matmul_panel_bytes(int64_t n_in_max, int T) {
    static const int PANEL_TYPES[] = { G4_Q4_0, G4_Q8_0, G4_Q4_K, G4_Q6_K };
    for (size_t i = 0; i < sizeof PANEL_TYPES / sizeof PANEL_TYPES[0]; i++)
        if (g4_type_info(PANEL_TYPES[i])->gemm_panel) return g4_p512_scratch_bytes(n_in_max, T);
    return 0;
}

void g4_matmul(g4_pool *pool, const g4_mat *w, int64_t mat, const float *x, int64_t ldx, int T, float *y,
               int64_t ldy, int precision, g4_mm_scratch *s) {
    g4_mm_job j = { .w = w, .mat = mat, .y = y, .ldy = ldy };
    g4_matmul_multi(pool, &j, 1, x, ldx, T, precision, s);
}
