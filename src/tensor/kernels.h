/* The kernel registry: the one file (kernels.c) that knows every kernel
 * file. It builds the per-type kernel table once per process and answers
 * g4_type_info() (declared in types.h for its many users).
 *
 * src/tensor/ in layers; each uses only the layers below it:
 *   1 facts      types.c (type ids, names, block and row sizes), fp16.c
 *                (half conversions), cpu.c (CPU features, kernel levels)
 *   2 reference  quant_ref.c: portable C kernels, the definition every other
 *                kernel is tested against
 *   3 ISA        x86: quant_x86.c (AVX2 + AVX-512 on 256 bits),
 *                quant_x86_legacy.c, quant_avx512_k.c, quant_avx512_q.c;
 *                arm64: quant_arm.c (NEON + dotprod). Each exports one
 *                fill-for-level function (quant_isa.h). Below them, the
 *                AVX-512 prefill panels (quant_avx512_p.c), which the
 *                Q4_0/Q8_0 and K-quant gemms call for prefill shapes
 *   4 registry   kernels.c: per type, the facts, then the reference kernels,
 *                then the ISA fills for the level in use (g4_cpu_level():
 *                the best one, or GEMMA4C_CPU)
 *   5 users      matmul.c (through g4_type_info), act.c, vec.c, pool.c
 * tests/sh/layers.sh checks the object graph has no cycles. */
#ifndef G4_KERNELS_H
#define G4_KERNELS_H

#include "tensor/types.h"

/* The kernels of `type` at an explicit level, for tests and benchmarks
 * (g4_type_info has the level in use): facts, reference kernels, a generic
 * gemm (a loop over the reference vec_dot) where the type has a vec_dot, and
 * the SIMD overrides of `level`. Returns 0; -1 if `type` is unknown (out
 * untouched) or this CPU cannot run `level` (out then holds the reference
 * kernels + generic gemm). */
int g4_kernels_for_level(int type, int level, g4_type_traits *out);

#endif
