/* Small f32 vector kernels for attention (q.k over the cache, p*v sums).
 * AVX2+FMA where the CPU has it (chosen per call from the cached feature
 * flags), portable C otherwise. The SIMD path sums in a different order than
 * the scalar one, so results differ in the last bits, never more. */
#ifndef G4_VEC_H
#define G4_VEC_H

#include <stdbool.h>

typedef struct g4_vec_ops {
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float *y, float a, const float *x, int n);   /* y += a * x */
} g4_vec_ops;

/* The best kernels for this CPU (GEMMA4C_CPU=ref forces the portable ones). */
const g4_vec_ops *g4_vec_get(void);

#endif
