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
} mm_task;

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
    for (long o = lo; o < hi; o++) {
        const void *row = g4_mat_row(w, k->mat, o);
        for (int t = 0; t < k->T; t++)
            k->y[t * k->ldy + o] = k->wt->vec_dot(row, k->xq + (size_t)t * k->xq_row, n);
    }
}

void g4_matmul(g4_pool *pool, const g4_mat *w, int64_t mat, const float *x, int64_t ldx, int T, float *y,
               int64_t ldy, int precision, g4_mm_scratch *s) {
    mm_task k = { .w = w, .mat = mat, .x = x, .ldx = ldx, .T = T, .y = y, .ldy = ldy,
                  .exact = precision == 1, .wt = g4_type_info(w->type), .rowbuf = s->rowbuf };
    if (!k.exact) {
        k.at = g4_type_info(k.wt->vec_dot_type);
        k.xq_row = g4_row_size(k.wt->vec_dot_type, w->n_in);
        k.xq = s->act;
        g4_pool_run(pool, quantize_task, &k);
    }
    g4_pool_run(pool, mm_rows_task, &k);
}
