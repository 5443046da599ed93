#include "tensor/matmul.h"

#include <string.h>

#include "tensor/types.h"

typedef struct mm_task {
    const g4_mat *w;
    int64_t mat;
    const float *x;
    int64_t ldx;
    int T;
    float *y;
    int64_t ldy;
    int exact;
    const g4_type_traits *wt, *at;
    const uint8_t *xq;     /* quantized activations, T rows of xq_row bytes */
    size_t xq_row;
    float *rowbuf;
    g4_gemm_fn kernel;      /* block kernel, or NULL for gemm_generic */
} mm_task;

/* Used when a type has no block kernel: one vec_dot per (row, token). */
static void gemm_generic(g4_vec_dot_fn dot, int64_t n, int nr, int nc, const void *w, size_t ws,
                         const void *x, size_t xs, float *y, size_t ys) {
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++)
            y[(size_t)c * ys + r] = dot((const char *)w + (size_t)r * ws, (const char *)x + (size_t)c * xs, n);
}


static void quantize_task(void *arg, int ith, int nth) {
    mm_task *k = arg;
    long lo, hi;
    g4_split(k->T, ith, nth, &lo, &hi);
    for (long t = lo; t < hi; t++)
        k->at->from_float(k->x + t * k->ldx, (void *)(k->xq + (size_t)t * k->xq_row), k->w->n_in);
}

static void mm_rows_task(void *arg, int ith, int nth) {
    mm_task *k = arg;
    const g4_mat *w = k->w;
    long lo, hi;
    g4_split((long)w->n_out, ith, nth, &lo, &hi);
    const int64_t n = w->n_in;
    if (k->exact) {
        float *buf = k->rowbuf + (size_t)ith * (size_t)n;
        for (long o = lo; o < hi; o++) {
            const void *row = g4_mat_row(w, k->mat, o);
            if (k->T == 1) {
                k->y[o] = k->wt->dot_f32(row, k->x, n);
                continue;
            }
            k->wt->to_float(row, buf, n);
            for (int t = 0; t < k->T; t++) {
                const float *x = k->x + t * k->ldx;
                float s = 0;
                for (int64_t i = 0; i < n; i++) s += buf[i] * x[i];
                k->y[t * k->ldy + o] = s;
            }
        }
        return;
    }
    /* Cache blocking: a block of ROWS weight rows (tens of KB) stays in L1/L2
     * while it meets a block of TOKS activation rows; the micro-kernel reuses
     * each loaded block across several rows and tokens in registers. Decode
     * (T = 1) degenerates to streaming the rows once. */
    enum { ROWS = 32, TOKS = 64 };
    for (long o0 = lo; o0 < hi; o0 += ROWS) {
        int nr = (int)(hi - o0 < ROWS ? hi - o0 : ROWS);
        const void *row = g4_mat_row(w, k->mat, o0);
        for (int t0 = 0; t0 < k->T; t0 += TOKS) {
            int nc = k->T - t0 < TOKS ? k->T - t0 : TOKS;
            const void *xq = k->xq + (size_t)t0 * k->xq_row;
            float *y = k->y + (size_t)t0 * k->ldy + o0;
            if (k->kernel) k->kernel(n, nr, nc, row, w->row_bytes, xq, k->xq_row, y, (size_t)k->ldy);
            else gemm_generic(k->wt->vec_dot, n, nr, nc, row, w->row_bytes, xq, k->xq_row, y, (size_t)k->ldy);
        }
    }
}

void g4_matmul(g4_pool *pool, const g4_mat *w, int64_t mat, const float *x, int64_t ldx, int T, float *y,
               int64_t ldy, int precision, g4_mm_scratch *s) {
    mm_task k = { .w = w, .mat = mat, .x = x, .ldx = ldx, .T = T, .y = y, .ldy = ldy,
                  .exact = precision == 1, .wt = g4_type_info(w->type), .rowbuf = s->rowbuf };
    k.kernel = k.wt->gemm;
    if (!k.exact) {
        k.at = g4_type_info(k.wt->vec_dot_type);
        k.xq_row = g4_row_size(k.wt->vec_dot_type, w->n_in);
        k.xq = s->act;
        /* one row (decode) is quicker to quantize here than to hand out */
        if (T == 1) quantize_task(&k, 0, 1);
        else g4_pool_run(pool, quantize_task, &k);
    }
    g4_pool_run(pool, mm_rows_task, &k);
}
