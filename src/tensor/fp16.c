/* IEEE binary16 and bfloat16 conversions, bit-exact and branch-explicit.
 *
 * fp32 -> fp16 rounds to nearest, ties to even, with gradual underflow to
 * subnormals and overflow to infinity: the same results as ggml's
 * GGML_FP32_TO_FP16 (and the F16C instruction), which the quantizers depend
 * on to reproduce llama-quantize's bytes. NaN becomes a quiet NaN (0x7e00 with
 * the sign kept), as ggml's portable path does. Integer arithmetic only, so
 * the result does not depend on the FPU rounding mode or compiler flags. */
#include "tensor/fp16.h"

#include <string.h>

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float g4_fp16_to_fp32(uint16_t h) {
    return g4_fp16_to_fp32_inline(h);
}

uint16_t g4_fp32_to_fp16(float f) {
    const uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00u;          /* NaN -> quiet NaN */
    /* 65520 = halfway between 65504 (max half, odd mantissa) and 2^16: ties
     * round to even, i.e. up to infinity. */
    if (ax >= 0x477ff000u) return sign | 0x7c00u;
    if (ax >= 0x38800000u) {                                 /* >= 2^-14: normal */
        uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);        /* RNE on 13 bits */
        return sign | (uint16_t)((r - 0x38000000u) >> 13);   /* rebias 127 -> 15 */
    }
    /* Subnormal half: round(|f| * 2^24). |f| <= 2^-25 rounds to zero (the tie
     * at exactly 2^-25 goes to the even value 0). */
    if (ax <= 0x33000000u) return sign;
    const uint32_t e = ax >> 23;                  /* 102..112 */
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t s = 126u - e;                  /* 14..24 */
    uint32_t q = m >> s;
    const uint32_t rem = m & ((1u << s) - 1u), half = 1u << (s - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++; /* may carry into the
                                                         smallest normal: fine */
    return sign | (uint16_t)q;
}

uint16_t g4_fp32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)         /* NaN: truncate, force quiet */
        return (uint16_t)((u >> 16) | 64u);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}
