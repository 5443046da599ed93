/* Half-precision conversions (IEEE binary16 and bfloat16): pure functions of
 * their argument, the bottom of the tensor layer (they call nothing).
 * fp32->fp16 rounds like ggml (see fp16.c); fp32->bf16 rounds to nearest even
 * like ggml (NaN kept quiet). */
#ifndef G4_FP16_H
#define G4_FP16_H

#include <stdint.h>
#include <string.h>

float    g4_fp16_to_fp32(uint16_t h);
uint16_t g4_fp32_to_fp16(float f);
static inline float g4_bf16_to_fp32(uint16_t h) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}
uint16_t g4_fp32_to_bf16(float f);

/* fp16 -> fp32 without branches, for hot loops (g4_fp16_to_fp32 is this).
 * Exact for every finite half, subnormals included; inf stays inf, NaN stays
 * NaN (a signaling NaN comes out quiet). Normal halves are rebiased by a
 * power-of-two multiply, subnormals by the 0.5 + m*2^-24 - 0.5 trick. */
static inline float g4_fp16_to_fp32_inline(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    uint32_t u = (two_w >> 4) + (0xE0u << 23);
    float normalized, denormalized;
    memcpy(&normalized, &u, 4);
    normalized *= 0x1.0p-112f;
    u = (two_w >> 17) | (126u << 23);
    memcpy(&denormalized, &u, 4);
    denormalized -= 0.5f;
    uint32_t r;
    if (two_w < (1u << 27)) memcpy(&r, &denormalized, 4);
    else memcpy(&r, &normalized, 4);
    r |= sign;
    float f;
    memcpy(&f, &r, 4);
    return f;
}

#endif
