/* Activation functions. */
#ifndef G4_ACT_H
#define G4_ACT_H

#include <math.h>

/* GELU, tanh form (gelu_pytorch_tanh), evaluated exactly in f32. */
static inline float g4_gelu(float x) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

/* GELU through a 65,536-entry fp16 table, the way llama.cpp's CPU backend
 * computes it: input rounded to fp16, output the fp16-rounded GELU of that
 * value; |x| >= 10 passes through (x) or gives 0. The fast path computes
 * this function (vectorized without the table where it can) and keeps our
 * logits next to llama.cpp's. */
#include <stdint.h>
#include "tensor/types.h"
extern uint16_t g4_gelu_f16[1 << 16];
void g4_act_init(void);   /* fills the table once per process; call before use */
static inline float g4_gelu_table(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return g4_fp16_to_fp32(g4_gelu_f16[g4_fp32_to_fp16(x)]);
}

/* out[i] = gelu(g[i]) * u[i] (u NULL: gelu(g[i])); exact: the tanh form;
 * else the fp16 table's function (with AVX2/F16C computed, not looked up:
 * within one fp16 ulp of the table). out may alias g. */
void g4_geglu(float *out, const float *g, const float *u, int64_t n, int exact);

/* y[i] = cap * tanh(y[i] / cap) (Gemma's final logit softcap). exact: tanhf;
 * else 8 lanes at a time through exp (|error| <= ~2e-7 * cap; the LM head
 * of a decode step has 262,144 of them). NaN stays NaN, +-inf gives +-cap. */
void g4_softcap(float *y, int64_t n, float cap, int exact);
/* dst[i] = x < lo ? lo : x > hi ? hi : x, x = src[i] (NaN stays NaN); dst may
 * equal src. The same values at every level. */
/* x[i] = x[i] / (1 + e^-x[i]) in place: exact with libm's expf, else (AVX2)
 * the vector e^x (~2 ulp) */
void g4_silu(float *x, int64_t n, int exact);
void g4_clamp(float *dst, const float *src, int64_t n, float lo, float hi);

/* y = x / rms(x) * w over one row of n (w may be NULL: no scale); y may
 * alias x. */
void g4_rmsnorm(float *y, const float *x, const float *w, int n, float eps);

#endif
