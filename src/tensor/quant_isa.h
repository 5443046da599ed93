/* The per-ISA kernel files (layer 3, see kernels.h): SIMD variants of the
 * reference kernels for the fast path (vec_dot, gemm, activation quantizers).
 *
 * Each file exports one fill for a CPU level: for `level` it overwrites the
 * kernel pointers of `tr` (which holds the reference kernels) for the types
 * it has and leaves the others alone; any other level, and any other
 * architecture (where the file compiles to a stub), leaves `tr` untouched.
 * Only the registry (kernels.c) calls these, in a fixed order in which later
 * fills override earlier ones.
 *
 * Results equal the reference kernels up to float summation order (the
 * integer block sums are exact); quantized activations are byte-identical.
 * Batch invariance: a gemm's value for (row, token) must not depend on nr,
 * nc or where the pair sits in the call (the matmul hands out thread-grabbed
 * row ranges and batch-sized token counts), so every path of a kernel does
 * the same float operations per (row, token) in the same order, equal to
 * gemm(1, 1) and vec_dot bit for bit (test_simd checks it). */
#ifndef G4_QUANT_ISA_H
#define G4_QUANT_ISA_H

#include "tensor/types.h"

/* x86 AVX2 and AVX-512 levels (quant_x86.c): F32/F16/BF16, Q8_0, Q4_0,
 * Q2_K..Q6_K, IQ4_XS and the Q8_0 / Q8_K activation quantizers; 256-bit
 * vectors at both levels (AVX-512: VNNI, 32 registers). */
void g4_quant_x86_fill(int type, int level, g4_type_traits *tr);
/* x86 AVX2 and AVX-512 levels: Q5_0 / Q5_1 / Q4_1 / IQ4_NL
 * (quant_x86_legacy.c), the types llama-quantize falls back to for rows that
 * are not a multiple of 256 (e.g. the 26B-A4B expert down projections, 704
 * wide, in Q4_K_M files), and files of those types. */
void g4_quant_x86_legacy_fill(int type, int level, g4_type_traits *tr);
/* x86 AVX-512 level only: kernels on full 512-bit vectors (zmm), which
 * double the per-instruction work on cores with 512-bit datapaths; they
 * replace the 256-bit ones of the same types, so they fill after them.
 *   quant_avx512_k.c: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS (x Q8_K)
 *   quant_avx512_q.c: Q4_0, Q8_0 (x Q8_0) */
void g4_quant_avx512_k_fill(int type, int level, g4_type_traits *tr);
void g4_quant_avx512_q_fill(int type, int level, g4_type_traits *tr);
/* x86 AVX-512 level only (quant_avx512_p.c): the panel kernels of Q4_0,
 * Q8_0, Q4_K and Q6_K (types.h: gemm_panel; NULL for other types and off
 * x86), set by quant_avx512_q.c / _k.c's fills. */
g4_gemm_panel_fn g4_p512_kernel(int type);
/* nr rows of n (a multiple of 32) F32/F16/BF16 values, row r at w + r * ws,
 * as Q8_0 rows at dst + r * ds (per 32: f16 amax / 127, int8 codes rounded
 * to nearest even), for Q8_0's panel kernel; clamp: NULL, or {lo, hi} the
 * values are clamped to first. Returns 0 (nothing written) where that
 * kernel does not run or the type is another. */
int g4_p512_q8_0_rows(int type, const void *w, size_t ws, int nr, int64_t n, void *dst, size_t ds,
                      const float *clamp);
/* Q8_0's panel kernel on nr Q8_0 rows (w, stride ws) x nc Q8_0 activation
 * rows (x, stride xs) -> y[c * ys + r], the tokens in chunks of `chunk`
 * activation bytes (0: the default): each chunk's group data once, each
 * panel re-laid once per chunk. The int8 path of the media towers runs
 * 2520 tokens through it: all of them per panel (8 MB of activations) read
 * L3 at every panel and ran at less than half the rate of an L2-sized
 * chunk. Returns 0 (nothing written) where the kernel does not run. */
int g4_p512_q8_0_gemm(int64_t n, int nr, int nc, const void *w, size_t ws, const void *x, size_t xs, float *y,
                      size_t ys, size_t chunk);
/* Per-thread scratch (bytes) of any panel call with rows of at most n
 * weights and at most T tokens: held by each thread that ran one, until it
 * exits (the memory plan counts it per thread). */
size_t g4_p512_scratch_bytes(int64_t n, int T);
/* Tests: activation bytes per token chunk of the panels (0: the default,
 * 8 MB); small values make short problems go through several chunks. Not
 * thread-safe: set it only while no product runs. */
void g4_p512_set_chunk_bytes(size_t bytes);
/* arm64 NEON and dotprod levels (quant_arm.c). */
void g4_quant_arm_fill(int type, int level, g4_type_traits *tr);

#endif
