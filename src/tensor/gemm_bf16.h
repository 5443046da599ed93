/* f32 products through bf16 pairs (AVX512_BF16 vdpbf16ps): c += a . b with
 * both operands rounded to bf16 (8-bit mantissa, nearest even) and every
 * sum in f32. One instruction does 32 multiply-adds, twice an f32 FMA's 16,
 * for training's backward products, whose inputs (a gradient, a decoded
 * quantized weight) carry no more precision than that.
 *
 * vdpbf16ps sums pairs along the reduced dimension k, so both operands are
 * packed as 32-bit words holding (k even, k odd) in (low, high) halves:
 *   a: [M][ceil(K/2)] words, word p of row m = (a[m][2p], a[m][2p+1]);
 *   b: [ceil(K/2)][N] words, word (p, n) = (b[2p][n], b[2p+1][n]);
 * an odd K pads its last pair with 0. */
#ifndef G4_GEMM_BF16_H
#define G4_GEMM_BF16_H

#include <stdbool.h>
#include <stdint.h>

/* Whether this process runs the kernel (AVX512_BF16 and the AVX-512 level;
 * GEMMA4C_CPU below it turns it off). Callers keep an f32 path otherwise. */
bool g4_bf16_gemm_ok(void);

/* dst[p][n] for p < ceil(K/2), n < N from K rows of src (row stride lds). */
void g4_bf16_pack_b(uint32_t *dst, const float *src, int lds, int K, int N);
/* dst[m][p] (row stride ldd words) from M rows of K values of src. */
void g4_bf16_pack_a(uint32_t *dst, int ldd, const float *src, int lds, int M, int K);
/* c[m][n] += sum_k a[m][k] b[k][n] over P = ceil(K/2) packed pairs (lda,
 * ldb in words, ldc in floats). Only call when g4_bf16_gemm_ok(). */
void g4_bf16_gemm(float *c, int ldc, const uint32_t *a, int lda, const uint32_t *b, int ldb, int M, int N, int P);

#endif
