/* arm64 SIMD kernels: Advanced SIMD (NEON) and the dot-product extension
 * (SDOT, ARMv8.2 "dotprod"), chosen at run time like the x86 ones.
 *
 * Arm's SDOT multiplies signed by signed bytes, so weights are unpacked to
 * their signed values (Q4_0: nibble - 8; Q6_K: 6-bit - 32) and multiplied
 * directly; plain NEON does the same with widening multiplies (vmull_s8 +
 * vpadalq_s16). The kernels share one body (quant_arm_body.h) included per
 * level. Activation quantizers are byte-identical to quant_ref.c: vrndaq
 * rounds half away from zero like roundf, vcvtnq half to even like ggml's
 * nearest_int; blocks holding inf/NaN take the scalar reference path. */
#include "tensor/quant_isa.h"

#include "tensor/cpu.h"
#include "tensor/quant_ref.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__) && !defined(__STRICT_ANSI__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#define QK 32
#define QK_K 256
#define Q4_0_SIZE 18
#define Q8_0_SIZE 34
#define Q4_K_SIZE 144
#define Q5_K_SIZE 176
#define Q6_K_SIZE 210
#define Q8_K_SIZE 292

#if defined(__clang__)
#define T_DOTPROD __attribute__((target("dotprod")))
#else
/* arm_neon.h declares vdotq_s32 under armv8.2-a+dotprod: match it */
#define T_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define T_NEON

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline float rdf32(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }
static inline float h2f(const uint8_t *p) { return g4_fp16_to_fp32_inline(rd16(p)); }

/* ---- activation quantizers (the scalar fallbacks are the reference code) -- */
/* Blocks holding inf/NaN go through the reference quantizers (quant_ref.c). */
static inline void q8_0_block_scalar(const float *x, uint8_t *y) { g4_ref_quant_q8_0(x, y, QK); }
static inline void q8_K_block_scalar(const float *x, uint8_t *y) { g4_ref_quant_q8_K(x, y, QK_K); }

/* 16 int32 (already integral, any range) -> 16 int8, saturating */
static inline int8x16_t narrow16(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
    const int16x8_t lo = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)), hi = vcombine_s16(vqmovn_s32(c), vqmovn_s32(d));
    return vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
}

static inline int finite_block(const float *x, int n, float *amax_out) {
    float32x4_t m = vdupq_n_f32(0);
    uint32x4_t bad = vdupq_n_u32(0);
    const float32x4_t inf = vdupq_n_f32(INFINITY);
    for (int j = 0; j < n; j += 4) {
        const float32x4_t a = vabsq_f32(vld1q_f32(x + j));
        bad = vorrq_u32(bad, vmvnq_u32(vcltq_f32(a, inf))); /* inf or NaN */
        m = vmaxq_f32(m, a);
    }
    *amax_out = vmaxvq_f32(m);
    return vmaxvq_u32(bad) == 0;
}

static void from_float_q8_0_neon(const float *x, void *vy, int64_t n) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK, y += Q8_0_SIZE) {
        float amax;
        if (!finite_block(x, QK, &amax)) { q8_0_block_scalar(x, y); continue; }
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        const uint16_t h = g4_fp32_to_fp16(d);
        y[0] = (uint8_t)h; y[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < QK; j += 16) {
            int32x4_t r[4];
            for (int k = 0; k < 4; k++)
                r[k] = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(vld1q_f32(x + j + 4 * k), id)));
            vst1q_s8((int8_t *)(y + 2 + j), narrow16(r[0], r[1], r[2], r[3]));
        }
    }
}

static void from_float_q8_K_neon(const float *x, void *vy, int64_t n) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K, y += Q8_K_SIZE) {
        float amax;
        if (!finite_block(x, QK_K, &amax)) { q8_K_block_scalar(x, y); continue; }
        if (!amax) { memset(y, 0, Q8_K_SIZE); continue; }
        float max = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) == amax) { max = x[j]; break; }
        const float iscale = -127.f / max;
        int8_t *qs = (int8_t *)(y + 4);
        for (int j = 0; j < QK_K; j += 16) {
            int32x4_t r[4];
            for (int k = 0; k < 4; k++) r[k] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + j + 4 * k), iscale));
            const int8x16_t q = narrow16(r[0], r[1], r[2], r[3]);
            vst1q_s8(qs + j, q);
            const int s = vaddlvq_s8(q);
            y[260 + j / 8] = (uint8_t)(uint16_t)s;
            y[261 + j / 8] = (uint8_t)((uint16_t)s >> 8);
        }
        const float d = 1 / iscale;
        memcpy(y, &d, 4);
    }
}

#define LVL neon
#define TGT T_NEON
#define HAVE_DOT 0
#include "tensor/quant_arm_body.h"
#undef LVL
#undef TGT
#undef HAVE_DOT

#define LVL dotprod
#define TGT T_DOTPROD
#define HAVE_DOT 1
#include "tensor/quant_arm_body.h"
#undef LVL
#undef TGT
#undef HAVE_DOT

void g4_quant_arm_fill(int type, int level, g4_type_traits *tr) {
    if (level != G4_CPU_NEON && level != G4_CPU_DOTPROD) return;
    const int dp = level == G4_CPU_DOTPROD;
#define SETK(T, t)                                                      \
    case T:                                                             \
        tr->vec_dot = dp ? vd_##t##_dotprod : vd_##t##_neon;            \
        tr->gemm = dp ? gemm_##t##_dotprod : gemm_##t##_neon;           \
        break;
    switch (type) {
    case G4_Q8_0:
        tr->from_float = from_float_q8_0_neon;
        tr->vec_dot = dp ? vd_q8_0_dotprod : vd_q8_0_neon;
        tr->gemm = dp ? gemm_q8_0_dotprod : gemm_q8_0_neon;
        break;
    case G4_Q8_K: tr->from_float = from_float_q8_K_neon; break;
    SETK(G4_Q4_0, q4_0)
    SETK(G4_Q4_K, q4_K)
    SETK(G4_Q5_K, q5_K)
    SETK(G4_Q6_K, q6_K)
    SETK(G4_Q4_1, q4_1)
    SETK(G4_Q5_0, q5_0)
    SETK(G4_Q5_1, q5_1)
    SETK(G4_IQ4_NL, iq4_nl)
    SETK(G4_IQ4_XS, iq4_xs)
    SETK(G4_Q3_K, q3_K)
    SETK(G4_Q2_K, q2_K)
    default: break;
    }
#undef SETK
}

#else /* !__aarch64__ */

void g4_quant_arm_fill(int type, int level, g4_type_traits *tr) {
    (void)type; (void)level; (void)tr;
}

#endif
