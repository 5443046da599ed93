/* Transposed Q8_0 blocks: training's backward dX = dY W through the int8
 * prefill panels (ops/ops_grad.c).
 *
 * dX[t][i] = sum_o dY[t][o] W[o][i] reduces over W's OUTPUT rows, so W^T is
 * needed with 32-element groups along o. A block of 32 decoded rows x nc
 * columns becomes nc Q8_0 blocks (f16 d, 32 int8), one per column, each
 * with its own max-abs scale over the 32 rows: column c's block is W^T row
 * c's group, which the Q8_0 panel kernel (quant_avx512_p.c) then reads like
 * any stored Q8_0 weight row. */
#ifndef G4_Q8T_H
#define G4_Q8T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether g4_q8t_pack runs vectorized (AVX-512 level) and the Q8_0 panel
 * kernel exists: callers use the int8 backward only then. */
bool g4_q8t_ok(void);

/* For c < nc (a multiple of 16): the Q8_0 block of scale * src[r * lds + c],
 * r = 0..31, at dst + c * dst_stride (34 bytes). d = amax / 127 rounded to
 * f16 (clamped to 65504; the codes then saturate at +-127), codes
 * round-to-nearest-even of x * 127 / amax, all zero for an all-zero column.
 * scale should be a power of two that brings the block's magnitudes near 1
 * (f16 keeps d normal down to ~6e-5). */
void g4_q8t_pack(const float *src, size_t lds, int nc, float scale, uint8_t *dst, size_t dst_stride);

/* A row of n (a multiple of 32) f32 values as n / 32 Q8_0 blocks of
 * x * 2^e, 2^e bringing the row's largest magnitude into [32, 64) (1 for an
 * all-zero or non-finite row): tiny gradients keep normal f16 block scales.
 * Returns 2^-e, the factor the product's sums take back (exactly). */
float g4_q8t_quant_row(const float *x, int n, uint8_t *dst);

/* dx[t * ldx + r] += y[t * ldy + r] * (st[t] * m) for t < T, r < nr <= 32:
 * the panel kernel's sums of one slab into dx, with the scales taken back. */
void g4_q8t_add_rows(float *dx, size_t ldx, const float *y, size_t ldy, int T, int nr, const float *st, float m);

#endif
