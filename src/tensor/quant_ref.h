/* Reference (portable C) kernels for every type we compute with.
 *
 * g4_quant_ref_fill() sets the kernel fields of one type's traits; the
 * registry (kernels.c) calls it once per process and the table is read-only
 * after.
 * A SIMD variant slots in per type by overwriting individual pointers after
 * this fill (same signatures, same results up to float summation order);
 * the reference kernels stay the definition the tests compare against.
 *
 * Data layout: ggml's block formats, little-endian multi-byte fields (as
 * GGUF stores them). See quant_ref.c. */
#ifndef G4_QUANT_REF_H
#define G4_QUANT_REF_H

#include "tensor/types.h"

/* Fill the kernel fields of `tr` for type `type` (leave NULL where none). */
void g4_quant_ref_fill(int type, g4_type_traits *tr);

/* The reference activation quantizers (rows of n elements, n a multiple of
 * the block): SIMD variants fall back to these for blocks holding inf/NaN,
 * so their output stays byte-identical. */
void g4_ref_quant_q8_0(const float *x, void *y, int64_t n);
void g4_ref_quant_q8_K(const float *x, void *y, int64_t n);

/* The 16 non-linear levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl); the
 * SIMD kernels load their lookup tables from here. */
extern const int8_t g4_kvalues_iq4nl[16];

/* Q3_K scale j (0..15) from its 12 packed bytes s, offset 32 removed: low 4
 * bits in s[0..7] (two per byte: j < 8 low nibble of s[j], else high nibble
 * of s[j - 8]), high 2 bits in s[8 + j % 4] at bit 2 * (j / 4). */
static inline int g4_q3k_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* IQ4_XS scale of sub-block j (0..7) of the block at b (d, scales_h[2],
 * scales_l[4], qs), offset 32 removed. */
static inline int g4_iq4xs_scale(const uint8_t *b, int j) {
    const int sh = b[2] | (b[3] << 8);
    return (((b[4 + j / 2] >> 4 * (j % 2)) & 0xF) | (((sh >> 2 * j) & 3) << 4)) - 32;
}

#endif
