/* Small f32 vector kernels for attention (q.k over the cache, p*v sums,
 * softmax exponentials). AVX-512 or AVX2+FMA where the CPU has them, portable
 * C otherwise. The SIMD path sums in a different order than
 * the scalar one, so results differ in the last bits, never more. */
#ifndef G4_VEC_H
#define G4_VEC_H

#include <stdbool.h>
#include <stddef.h>

typedef struct g4_vec_ops {
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float *y, float a, const float *x, int n);   /* y += a * x */
    /* Grouped-query attention over nj cache rows (row j at k + j * ks):
     *   qk: s[h * lds + j] = q_h . k_j        for h < G heads (q_h = q + h * hd)
     *   pv: acc[h * hd + i] += sum_j p[h * ldp + j] * v_j[i]
     * The G query heads that share a KV head read each cache row once. */
    void (*qk)(float *s, int lds, const float *q, int G, const float *k, size_t ks, int nj, int hd);
    void (*pv)(float *acc, const float *p, int ldp, int G, const float *v, size_t vs, int nj, int hd);
    /* s[j] = e^(s[j] - m) for j < n, m >= every s[j]; returns the sum */
    float (*expsum)(float *s, int n, float m);
    /* c[i][j] += sum_k a[i][k] * b[k][j] for i < M, j < N, k < K (row
     * strides lda, ldb, ldc): an encoder's whole-sequence attention as
     * products with contiguous rows of b (K transposed for the scores, V
     * as it is), no horizontal sums */
    void (*gemm_nn)(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M, int N, int K);
} g4_vec_ops;

/* The best kernels for this CPU (GEMMA4C_CPU=ref forces the portable ones). */
const g4_vec_ops *g4_vec_get(void);
/* The kernels of one level (the portable ones where the CPU lacks it). */
const g4_vec_ops *g4_vec_get_level(int level);

#endif
