/* BF16 products through AVX-512 BF16 (vdpbf16ps: two bf16 multiply-adds per
 * f32 lane, twice the f32 FMA rate) for the media encoders' fast path and
 * training's backward dX (ops/ops_grad.c).
 *
 * Operands are rounded to bf16 (8 significant bits, RNE): activations once
 * per row (g4_bf16_round_row), weights once per 32-row panel into a small
 * scratch (g4_bf16_pack_*), used against every token of the call, so a
 * tower's weights are never copied whole. Sums are f32.
 *
 * A panel holds rows 32b..32b+31 of a matrix as [np][32][2] bf16, np =
 * ceil(n / 2) pairs of the input dimension: the 32-bit word (p, r) is the
 * pair (w[r][2p], w[r][2p+1]), so one broadcast activation pair meets 32 rows
 * in two vdpbf16ps and the results land as y[t][r0..r0+31], the activations'
 * own row-major layout. Rows past the matrix and the odd input's last
 * element are zero.
 *
 * Error against the f32 product (per result, u = 2^-8 the bf16 unit
 * roundoff): |y - W x| <= (2u + u^2 + n 2^-24) sum_k |w_k x_k| (both operands
 * rounded, then n sequential f32 adds), u + n 2^-24 for BF16-stored weights;
 * plus values below 2^-126 flushed to zero (the instruction's DAZ/FTZ). Each
 * (row, token) result is the same whatever the tile, thread or batch. */
#ifndef G4_BF16_H
#define G4_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { G4_BF16_PR = 32 };   /* rows per panel */

/* Whether this process runs the kernels: the CPU has AVX512_BF16 and the
 * kernel level in use is AVX-512 (GEMMA4C_CPU=avx2 or ref turns them off). */
bool g4_bf16_dot_ok(void);

/* dst[i] = bf16(src[i]) (nearest even, like g4_fp32_to_bf16) for i < n, and
 * dst[n] = 0 when n is odd (a row's last pair). */
void g4_bf16_round_row(const float *src, uint16_t *dst, int64_t n);

/* uint16 elements of the panels of `rows` rows of n inputs. */
size_t g4_bf16_panel_elems(int64_t rows, int64_t n);

/* One panel from nr <= 32 rows of a stored matrix of type G4_F32, G4_F16 or
 * G4_BF16 (row r at w + r * row_bytes). */
void g4_bf16_pack_rows(uint16_t *pan, int type, const void *w, size_t row_bytes, int nr, int64_t n);
/* One panel from f32 element (r, k) = src[r * rs + k * ks], r < nr <= 32. */
void g4_bf16_pack_f32(uint16_t *pan, const float *src, size_t rs, size_t ks, int nr, int64_t n);

/* y[t * ldy + r] = sum_k W[r][k] x[t * xs + k] for r < nrows, t < T: W as
 * consecutive panels (ceil(nrows / 32) of them), x bf16 rows of
 * ceil(n / 2) pairs (g4_bf16_round_row). Needs g4_bf16_dot_ok(). */
void g4_bf16_gemm(const uint16_t *pan, int64_t n, int nrows, const uint16_t *x, size_t xs, int T, float *y,
                  size_t ldy);
/* The same with y[t * ldy + r] += the sum (each lane starts from y, then
 * adds the pairs in order): a reduction split into panels of inputs, as
 * training's backward dX over decoded weight-row blocks. */
void g4_bf16_gemm_add(const uint16_t *pan, int64_t n, int nrows, const uint16_t *x, size_t xs, int T, float *y,
                      size_t ldy);

/* One softmax row for P V: m = max_j scale s[j], p[j] = bf16(e^(scale s[j]
 * - m)) for j < n (p[n] = 0 when n is odd); returns the sum of the p[j] as
 * rounded, so dividing P V by it makes the bf16 weights sum to 1. e^x below
 * -87 is taken as e^-87 (< 2^-125: flushed by the product anyway). */
float g4_bf16_softmax_row(const float *s, int64_t n, float scale, uint16_t *p);

#endif
