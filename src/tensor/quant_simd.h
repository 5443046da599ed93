/* SIMD kernels for the fast path (vec_dot, gemm, activation quantizers).
 *
 * g4_quant_simd_fill() runs right after g4_quant_ref_fill() (types.c, once
 * per process) and overwrites the kernel pointers of `tr` with variants for
 * the CPU level in use (g4_cpu_level(): best available, or GEMMA4C_CPU). It
 * also sets tr->gemm to a loop over the reference vec_dot where no block
 * kernel exists, so callers may always use gemm.
 *
 * Results equal the reference kernels up to float summation order (the
 * integer block sums are exact); quantized activations are byte-identical. */
#ifndef G4_QUANT_SIMD_H
#define G4_QUANT_SIMD_H

#include "tensor/types.h"

void g4_quant_simd_fill(int type, g4_type_traits *tr);

/* The same for an explicit level (tests and benchmarks): `tr` must hold the
 * reference kernels on entry. Returns 0, or -1 if this CPU cannot run
 * `level` (tr is then left with the reference kernels + generic gemm). */
int g4_quant_simd_fill_level(int type, int level, g4_type_traits *tr);

/* Per-architecture parts (quant_x86.c, quant_arm.c): override what they have
 * for `level`; a no-op on other architectures. */
void g4_quant_x86_fill(int type, int level, g4_type_traits *tr);
void g4_quant_arm_fill(int type, int level, g4_type_traits *tr);

/* x86 AVX-512 level only: kernels on full 512-bit vectors (zmm), which
 * double the per-instruction work on cores with 512-bit datapaths. Called
 * by g4_quant_x86_fill after the 256-bit kernels are set; each overrides
 * vec_dot/gemm for the types it has and leaves the others alone.
 *   quant_avx512_k.c: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS (x Q8_K)
 *   quant_avx512_q.c: Q4_0, Q8_0 (x Q8_0) */
void g4_quant_avx512_k_fill(int type, g4_type_traits *tr);
/* x86 AVX2 and AVX-512 levels: Q5_0 / Q5_1 / Q4_1 / IQ4_NL
 * (quant_x86_legacy.c), the types llama-quantize falls back to for rows that
 * are not a multiple of 256 (e.g. the 26B-A4B expert down projections, 704
 * wide, in Q4_K_M files), and files of those types. */
void g4_quant_x86_legacy_fill(int type, int level, g4_type_traits *tr);
void g4_quant_avx512_q_fill(int type, g4_type_traits *tr);

#endif
