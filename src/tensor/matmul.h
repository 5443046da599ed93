/* Matrix products against stored (possibly quantized) weights.
 *
 * y[t][o] = sum_i W[o][i] * x[t][i] for t < T tokens, o < n_out rows.
 * Weights are read once per call: threads split the output rows, and each
 * row is used against all T activation rows while it is hot in cache.
 * Precision (see types.h): FAST quantizes each activation row once to the
 * weight's vec_dot_type; EXACT decodes each weight row once to f32. */
#ifndef G4_MATMUL_H
#define G4_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/pool.h"
#include "model/model.h"

typedef struct g4_mm_scratch {
    void *act;        /* quantized activations: >= T * n_in * 4 bytes */
    size_t act_bytes;
    float *rowbuf;    /* decoded weight rows: >= nth * n_in floats */
    size_t rowbuf_n;
} g4_mm_scratch;

/* x: T rows with stride ldx floats; y: T rows with stride ldy floats.
 * `mat` selects the matrix of a 3-D (expert) tensor. */
void g4_matmul(g4_pool *pool, const g4_mat *w, int64_t mat, const float *x, int64_t ldx, int T, float *y,
               int64_t ldy, int precision, g4_mm_scratch *s);

#endif
