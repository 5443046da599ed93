/* Reference (portable C) kernels for every tensor type we compute with.
 *
 * Block layouts are ggml's, byte for byte (ggml-common.h). Blocks are declared
 * here as structs of bytes only (alignment 1, no padding), so a kernel may be
 * handed a row at any address; multi-byte fields are read and written as
 * little-endian, which is what GGUF stores. The only host-order assumption is
 * the f32 scale of Q8_K blocks (an activation-only type that never leaves
 * memory): it is memcpy'd, so it is the host's float layout.
 *
 * Arithmetic follows ggml's reference code operation by operation, since the
 * results are compared bit for bit: dequantization matches dequantize_row_*,
 * the Q4_0..Q8_1/Q8_K quantizers match quantize_row_*_ref, the K-quant and
 * IQ4 quantizers run the algorithms llama-quantize uses without an importance
 * matrix, and vec_dot follows ggml's generic CPU dot products. This needs
 * plain IEEE single precision with no contraction of a*b+c into an FMA: the
 * build uses -std=c11 (GCC then defaults to -ffp-contract=off); clang and
 * GNU-dialect builds are told below. No -ffast-math.
 *
 * Every kernel takes n elements, n a multiple of the block size (the caller,
 * i.e. the model loader, validates shapes against the type table). Non-finite
 * inputs give garbage values but never undefined behaviour: every float to
 * integer conversion goes through a saturating helper.
 *
 * SIMD variants come later: g4_quant_ref_fill() only sets pointers, and a
 * per-CPU fill can overwrite any of them afterwards (kernels.c). */
#include "tensor/quant_ref.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__) && !defined(__STRICT_ANSI__)
/* GNU dialect: GCC would fuse a*b+c into FMAs where the target has them */
#pragma GCC optimize("fp-contract=off")
#endif

#define QK   32
#define QK_K 256
#define GROUP_MAX_EPS 1e-15f

#define MAXI(a, b) ((a) > (b) ? (a) : (b))
#define MINI(a, b) ((a) < (b) ? (a) : (b))

/* ---- block layouts (ggml-common.h) --------------------------------------- */
typedef struct { uint8_t d[2]; uint8_t qs[QK / 2]; } blk_q4_0;
typedef struct { uint8_t d[2], m[2]; uint8_t qs[QK / 2]; } blk_q4_1;
typedef struct { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[QK / 2]; } blk_q5_0;
typedef struct { uint8_t d[2], m[2]; uint8_t qh[4]; uint8_t qs[QK / 2]; } blk_q5_1;
typedef struct { uint8_t d[2]; int8_t qs[QK]; } blk_q8_0;
typedef struct { uint8_t d[2], s[2]; int8_t qs[QK]; } blk_q8_1; /* s = d * sum(qs) */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint8_t d[2], dmin[2]; } blk_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint8_t d[2]; } blk_q3_K;
typedef struct { uint8_t d[2], dmin[2]; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } blk_q4_K;
typedef struct { uint8_t d[2], dmin[2]; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } blk_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint8_t d[2]; } blk_q6_K;
typedef struct { uint8_t d[4]; int8_t qs[QK_K]; uint8_t bsums[QK_K / 16 * 2]; } blk_q8_K;
typedef struct { uint8_t d[2]; uint8_t qs[QK / 2]; } blk_iq4_nl;
typedef struct { uint8_t d[2]; uint8_t scales_h[2]; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; } blk_iq4_xs;

_Static_assert(sizeof(blk_q4_0) == 18, "q4_0");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0");
_Static_assert(sizeof(blk_q5_1) == 24, "q5_1");
_Static_assert(sizeof(blk_q8_0) == 34, "q8_0");
_Static_assert(sizeof(blk_q8_1) == 36, "q8_1");
_Static_assert(sizeof(blk_q2_K) == 84, "q2_K");
_Static_assert(sizeof(blk_q3_K) == 110, "q3_K");
_Static_assert(sizeof(blk_q4_K) == 144, "q4_K");
_Static_assert(sizeof(blk_q5_K) == 176, "q5_K");
_Static_assert(sizeof(blk_q6_K) == 210, "q6_K");
_Static_assert(sizeof(blk_q8_K) == 292, "q8_K");
_Static_assert(sizeof(blk_iq4_nl) == 18, "iq4_nl");
_Static_assert(sizeof(blk_iq4_xs) == 136, "iq4_xs");

/* Non-linear 4-bit levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl). */
const int8_t g4_kvalues_iq4nl[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* ---- little helpers ------------------------------------------------------ */
static inline float ld_f16(const uint8_t *p) {
    return g4_fp16_to_fp32_inline((uint16_t)(p[0] | (p[1] << 8)));
}
static inline void st_f16(uint8_t *p, float v) {
    uint16_t h = g4_fp32_to_fp16(v);
    p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8);
}
static inline uint32_t ld_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void st_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline int16_t ld_i16(const uint8_t *p) {
    return (int16_t)(uint16_t)(p[0] | (p[1] << 8));
}
static inline void st_i16(uint8_t *p, int v) {
    uint16_t u = (uint16_t)v;
    p[0] = (uint8_t)u; p[1] = (uint8_t)(u >> 8);
}
static inline float ld_f32(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }
static inline void st_f32(uint8_t *p, float f) { memcpy(p, &f, 4); }

/* C's (int)v truncation, saturated to [lo, hi] and 0 for NaN, so hostile
 * values never reach an undefined conversion. Identical to the plain cast for
 * every in-range value (which is all ggml's arithmetic produces for finite
 * input). */
static inline int trunc_sat(float v, int lo, int hi) {
    if (!(v == v)) return 0;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* roundf (half away from zero) into int8, saturated. */
static inline int8_t round_i8(float v) {
    return (int8_t)trunc_sat(roundf(v), -128, 127);
}

/* ggml's nearest_int: round half to even via the 1.5*2^23 trick. Exact for
 * |v| <= 2^22; outside that (non-finite input) it returns some int. */
static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int32_t i;
    memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* ========================================================================== */
/*  Block decoders: one block -> blck_size floats (dequantize_row_* per block) */
/* ========================================================================== */

static void dq_q4_0(const void *vb, float *y) {
    const blk_q4_0 *b = vb;
    const float d = ld_f16(b->d);
    for (int j = 0; j < QK / 2; j++) {
        const int x0 = (b->qs[j] & 0x0F) - 8, x1 = (b->qs[j] >> 4) - 8;
        y[j] = x0 * d;
        y[j + QK / 2] = x1 * d;
    }
}

static void dq_q4_1(const void *vb, float *y) {
    const blk_q4_1 *b = vb;
    const float d = ld_f16(b->d), m = ld_f16(b->m);
    for (int j = 0; j < QK / 2; j++) {
        const int x0 = b->qs[j] & 0x0F, x1 = b->qs[j] >> 4;
        y[j] = x0 * d + m;
        y[j + QK / 2] = x1 * d + m;
    }
}

static void dq_q5_0(const void *vb, float *y) {
    const blk_q5_0 *b = vb;
    const float d = ld_f16(b->d);
    const uint32_t qh = ld_u32(b->qh);
    for (int j = 0; j < QK / 2; j++) {
        const int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
        const int x0 = ((b->qs[j] & 0x0F) | h0) - 16, x1 = ((b->qs[j] >> 4) | h1) - 16;
        y[j] = x0 * d;
        y[j + QK / 2] = x1 * d;
    }
}

static void dq_q5_1(const void *vb, float *y) {
    const blk_q5_1 *b = vb;
    const float d = ld_f16(b->d), m = ld_f16(b->m);
    const uint32_t qh = ld_u32(b->qh);
    for (int j = 0; j < QK / 2; j++) {
        const int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
        const int x0 = (b->qs[j] & 0x0F) | h0, x1 = (b->qs[j] >> 4) | h1;
        y[j] = x0 * d + m;
        y[j + QK / 2] = x1 * d + m;
    }
}

static void dq_q8_0(const void *vb, float *y) {
    const blk_q8_0 *b = vb;
    const float d = ld_f16(b->d);
    for (int j = 0; j < QK; j++) y[j] = b->qs[j] * d;
}

static void dq_q8_1(const void *vb, float *y) {
    const blk_q8_1 *b = vb;
    const float d = ld_f16(b->d);
    for (int j = 0; j < QK; j++) y[j] = b->qs[j] * d;
}

static void dq_q2_K(const void *vb, float *y) {
    const blk_q2_K *b = vb;
    const float d = ld_f16(b->d), min = ld_f16(b->dmin);
    const uint8_t *q = b->qs;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            /* each 32-byte group of qs feeds two 16-value sub-blocks per shift */
            for (int half = 0; half < 2; half++) {
                const uint8_t sc = b->scales[is++];
                const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
            }
            shift += 2;
        }
        q += 32;
    }
}

/* Q3_K's 16 six-bit scales (quant_ref.h), offset 32 removed */
static inline void q3k_scales(const uint8_t *s, int out[16]) {
    for (int j = 0; j < 16; j++) out[j] = g4_q3k_scale(s, j);
}

static void dq_q3_K(const void *vb, float *y) {
    const blk_q3_K *b = vb;
    const float d_all = ld_f16(b->d);
    int sc[16];
    q3k_scales(b->scales, sc);
    const uint8_t *q = b->qs;
    uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            for (int half = 0; half < 2; half++) {
                const float dl = d_all * sc[is++];
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *y++ = dl * (((q[l] >> shift) & 3) - ((b->hmask[l] & m) ? 0 : 4));
            }
            shift += 2;
            m = (uint8_t)(m << 1);
        }
        q += 32;
    }
}

/* Q4_K/Q5_K: 8 six-bit scales and 8 six-bit mins packed into 12 bytes. */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

static void dq_q4_K(const void *vb, float *y) {
    const blk_q4_K *b = vb;
    const float d = ld_f16(b->d), min = ld_f16(b->dmin);
    const uint8_t *q = b->qs;
    int is = 0;
    for (int j = 0; j < QK_K; j += 64) {
        uint8_t sc, m;
        get_scale_min_k4(is + 0, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        get_scale_min_k4(is + 1, b->scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

static void dq_q5_K(const void *vb, float *y) {
    const blk_q5_K *b = vb;
    const float d = ld_f16(b->d), min = ld_f16(b->dmin);
    const uint8_t *ql = b->qs, *qh = b->qh;
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K; j += 64) {
        uint8_t sc, m;
        get_scale_min_k4(is + 0, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        get_scale_min_k4(is + 1, b->scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 = (uint8_t)(u1 << 2);
        u2 = (uint8_t)(u2 << 2);
    }
}

static void dq_q6_K(const void *vb, float *y) {
    const blk_q6_K *b = vb;
    const float d = ld_f16(b->d);
    const uint8_t *ql = b->ql, *qh = b->qh;
    const int8_t *sc = b->scales;
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            /* (d * scale) * q, left to right, as ggml evaluates it */
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

static void dq_q8_K(const void *vb, float *y) {
    const blk_q8_K *b = vb;
    const float d = ld_f32(b->d);
    for (int j = 0; j < QK_K; j++) y[j] = d * b->qs[j];
}

static void dq_iq4_nl(const void *vb, float *y) {
    const blk_iq4_nl *b = vb;
    const float d = ld_f16(b->d);
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * g4_kvalues_iq4nl[b->qs[j] & 0xF];
        y[j + QK / 2] = d * g4_kvalues_iq4nl[b->qs[j] >> 4];
    }
}

static inline int iq4xs_scale(const blk_iq4_xs *b, int ib) { return g4_iq4xs_scale((const uint8_t *)b, ib); }

static void dq_iq4_xs(const void *vb, float *y) {
    const blk_iq4_xs *b = vb;
    const float d = ld_f16(b->d);
    const uint8_t *qs = b->qs;
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const float dl = d * iq4xs_scale(b, ib);
        for (int j = 0; j < 16; j++) {
            y[j] = dl * g4_kvalues_iq4nl[qs[j] & 0xF];
            y[j + 16] = dl * g4_kvalues_iq4nl[qs[j] >> 4];
        }
        y += 32;
        qs += 16;
    }
}

/* Row-level to_float and the exact dot product, generated per type from the
 * block decoder: the weights are decoded one block at a time into a stack
 * buffer and multiplied with f32 activations, accumulating in f32 (a partial
 * sum per block, then the row total). */
#define ROW_KERNELS(t, QB, TS)                                                   \
    static void to_float_##t(const void *src, float *dst, int64_t n) {           \
        const uint8_t *p = src;                                                  \
        for (int64_t i = 0; i < n / (QB); i++) dq_##t(p + i * (TS), dst + i * (QB)); \
    }                                                                            \
    static float dot_f32_##t(const void *w, const float *x, int64_t n) {         \
        const uint8_t *p = w;                                                    \
        float buf[QB], sum = 0.0f;                                               \
        for (int64_t i = 0; i < n / (QB); i++) {                                 \
            dq_##t(p + i * (TS), buf);                                           \
            const float *xb = x + i * (QB);                                      \
            float s = 0.0f;                                                      \
            for (int j = 0; j < (QB); j++) s += buf[j] * xb[j];                  \
            sum += s;                                                            \
        }                                                                        \
        return sum;                                                              \
    }

ROW_KERNELS(q4_0, QK, sizeof(blk_q4_0))
ROW_KERNELS(q4_1, QK, sizeof(blk_q4_1))
ROW_KERNELS(q5_0, QK, sizeof(blk_q5_0))
ROW_KERNELS(q5_1, QK, sizeof(blk_q5_1))
ROW_KERNELS(q8_0, QK, sizeof(blk_q8_0))
ROW_KERNELS(q8_1, QK, sizeof(blk_q8_1))
ROW_KERNELS(q2_K, QK_K, sizeof(blk_q2_K))
ROW_KERNELS(q3_K, QK_K, sizeof(blk_q3_K))
ROW_KERNELS(q4_K, QK_K, sizeof(blk_q4_K))
ROW_KERNELS(q5_K, QK_K, sizeof(blk_q5_K))
ROW_KERNELS(q6_K, QK_K, sizeof(blk_q6_K))
ROW_KERNELS(q8_K, QK_K, sizeof(blk_q8_K))
ROW_KERNELS(iq4_nl, QK, sizeof(blk_iq4_nl))
ROW_KERNELS(iq4_xs, QK_K, sizeof(blk_iq4_xs))

/* ========================================================================== */
/*  Quantizers: 32-element types (quantize_row_*_ref, bit-exact)              */
/* ========================================================================== */

static void quant_q4_0(const float *x, void *vy, int64_t n) {
    blk_q4_0 *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f, max = 0.0f; /* the value of largest magnitude, signed */
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        st_f16(y[i].d, d);
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
            const int xi0 = MINI(15, trunc_sat(x0 + 8.5f, -128, 127));
            const int xi1 = MINI(15, trunc_sat(x1 + 8.5f, -128, 127));
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

static void quant_q4_1(const float *x, void *vy, int64_t n) {
    blk_q4_1 *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        st_f16(y[i].d, d);
        st_f16(y[i].m, min);
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[QK / 2 + j] - min) * id;
            const int xi0 = MINI(15, trunc_sat(x0 + 0.5f, -128, 127));
            const int xi1 = MINI(15, trunc_sat(x1 + 0.5f, -128, 127));
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

static void quant_q5_0(const float *x, void *vy, int64_t n) {
    blk_q5_0 *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        st_f16(y[i].d, d);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
            const uint32_t xi0 = (uint8_t)MINI(31, trunc_sat(x0 + 16.5f, -128, 127));
            const uint32_t xi1 = (uint8_t)MINI(31, trunc_sat(x1 + 16.5f, -128, 127));
            y[i].qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << j;
            qh |= ((xi1 & 0x10u) >> 4) << (j + QK / 2);
        }
        st_u32(y[i].qh, qh);
    }
}

static void quant_q5_1(const float *x, void *vy, int64_t n) {
    blk_q5_1 *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        st_f16(y[i].d, d);
        st_f16(y[i].m, min);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[QK / 2 + j] - min) * id;
            /* ggml: (uint8_t)(x + 0.5f), no clamp (the value is in [0.5, 31.5]) */
            const uint32_t xi0 = (uint8_t)trunc_sat(x0 + 0.5f, 0, 255);
            const uint32_t xi1 = (uint8_t)trunc_sat(x1 + 0.5f, 0, 255);
            y[i].qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << j;
            qh |= ((xi1 & 0x10u) >> 4) << (j + QK / 2);
        }
        st_u32(y[i].qh, qh);
    }
}

static void quant_q8_0(const float *x, void *vy, int64_t n) {
    blk_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = MAXI(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        st_f16(y[i].d, d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = round_i8(x[j] * id);
    }
}

static void quant_q8_1(const float *x, void *vy, int64_t n) {
    blk_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = MAXI(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        st_f16(y[i].d, d);
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            y[i].qs[j] = round_i8(x[j] * id);
            sum += y[i].qs[j];
        }
        st_f16(y[i].s, sum * d);
    }
}

/* Q8_K: the activation format of the K-quant dot products. Scale from the
 * signed value of largest magnitude (-127/max), f32 scale, and per-16 sums of
 * the quants (used to apply the K-quant block minimums). */
static void quant_q8_K(const float *x, void *vy, int64_t n) {
    blk_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)MAXI(-128, MINI(127, v));
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++) sum += y[i].qs[j * 16 + ii];
            st_i16(y[i].bsums + 2 * j, sum);
        }
        st_f32(y[i].d, 1 / iscale);
    }
}

/* ========================================================================== */
/*  K-quant quantizers (ggml's quantize_row_q*_K_ref: what llama-quantize     */
/*  runs when no importance matrix is given)                                  */
/* ========================================================================== */

/* Symmetric scale search for n values into [-nmax, nmax-1]; L gets l + nmax.
 * rmse_type 1 weights errors by x^2 (qw NULL). Returns the scale. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type,
                            const float *qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; i++) {
            const int l = nearest_int(iscale * x[i]);
            L[i] = (int8_t)(nmax + MAXI(-nmax, MINI(nmax - 1, l)));
        }
        return 1 / iscale;
    }
    int return_early = 0;
    if (rmse_type < 0) { rmse_type = -rmse_type; return_early = 1; }
#define QX_WEIGHT(i) (qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 \
                      : rmse_type == 3 ? fabsf(x[i]) : sqrtf(fabsf(x[i])))
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        const float w = QX_WEIGHT(i);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = MAXI(-nmax, MINI(nmax - 1, l));
            const float w = QX_WEIGHT(i);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + MAXI(-nmax, MINI(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
#undef QX_WEIGHT
    return scale;
}

/* Q3_K sub-block solver: symmetric, x^2-weighted, with a few rounds of
 * coordinate descent on the individual quants. L gets l + nmax. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L, int do_rmse) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = -nmax / max;
    if (do_rmse) {
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = MAXI(-nmax, MINI(nmax - 1, l));
            L[i] = (int8_t)l;
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int itry = 0; itry < 5; itry++) {
            int n_changed = 0;
            for (int i = 0; i < n; i++) {
                const float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * L[i];
                if (slx > 0) {
                    float sl2 = suml2 - w * L[i] * L[i];
                    int new_l = nearest_int(x[i] * sl2 / slx);
                    new_l = MAXI(-nmax, MINI(nmax - 1, new_l));
                    if (new_l != L[i]) {
                        slx += w * x[i] * new_l;
                        sl2 += w * new_l * new_l;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                            L[i] = (int8_t)new_l;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed++;
                        }
                    }
                }
            }
            if (!n_changed) break;
        }
        for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
    }
    return 1 / iscale;
}

/* Asymmetric (scale, min) search for n values into [0, nmax], weighted least
 * squares (or weighted MAD) over nstep+1 candidate scales. Returns the scale;
 * *the_min gets -min (>= 0). */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAXI(0, MINI(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MAXI(0, MINI(nmax, l));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Pack 256 2-bit values: byte l of each 32-byte group holds elements
 * l, l+32, l+64, l+96 of its 128-element half. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

static void quant_q2_K(const float *x, void *vy, int64_t n) {
    blk_q2_K *y = vy;
    uint8_t L[QK_K], Laux[16];
    float weights[16], mins[QK_K / 16], scales[QK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_min = 0; /* the min is subtracted: scales >= 0 */
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            st_f16(y[i].d, max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            st_f16(y[i].d, 0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; j++) {
                const int l = nearest_int(iscale * mins[j]);
                y[i].scales[j] = (uint8_t)(y[i].scales[j] | (l << 4));
            }
            st_f16(y[i].dmin, max_min / q4scale);
        } else {
            st_f16(y[i].dmin, 0.f);
        }
        /* requantize against the stored (rounded) scales */
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = ld_f16(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = ld_f16(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++) {
                const int l = nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)MAXI(0, MINI(3, l));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

static void quant_q3_K(const float *x, void *vy, int64_t n) {
    blk_q3_K *y = vy;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, 1);
            const float scale = fabsf(scales[j]);
            if (scale > amax) { amax = scale; max_scale = scales[j]; }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int l = (int8_t)nearest_int(iscale * scales[j]);
                l = MAXI(-32, MINI(31, l)) + 32;
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xF);
                else y[i].scales[j - 8] = (uint8_t)(y[i].scales[j - 8] | ((l & 0xF) << 4));
                l >>= 4;
                y[i].scales[j % 4 + 8] = (uint8_t)(y[i].scales[j % 4 + 8] | (l << (2 * (j / 4))));
            }
            st_f16(y[i].d, 1 / iscale);
        } else {
            st_f16(y[i].d, 0.f);
        }
        int sc[16];
        q3k_scales(y[i].scales, sc);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = ld_f16(y[i].d) * sc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = MAXI(-4, MINI(3, l));
                L[16 * j + ii] = (int8_t)(l + 4);
            }
        }
        /* high bit of element j goes to hmask[j % 32], bit j / 32 */
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        uint8_t Lu[QK_K];
        for (int j = 0; j < QK_K; j++) {
            int l = L[j];
            if (l > 3) {
                y[i].hmask[j % 32] = (uint8_t)(y[i].hmask[j % 32] | (1u << (j / 32)));
                l -= 4;
            }
            Lu[j] = (uint8_t)(l & 3);
        }
        pack_2bit(Lu, y[i].qs);
    }
}

/* Store 8 six-bit scales and mins in the 12-byte Q4_K/Q5_K layout. */
static void pack_scale_min_k4(const uint8_t ls[8], const uint8_t lm[8], uint8_t *s) {
    for (int j = 0; j < QK_K / 32; j++) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            s[j - 4] = (uint8_t)(s[j - 4] | ((ls[j] >> 4) << 6));
            s[j - 0] = (uint8_t)(s[j - 0] | ((lm[j] >> 4) << 6));
        }
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per-32 asymmetric solve, then
 * 6-bit quantization of scales and mins against the block maxima, then the
 * values requantized against the stored scales. L gets values in [0, nmax]. */
static void quant_k_asym_block(const float *x, int nmax, float rmin, int nstep, uint8_t *d_out,
                               uint8_t *dmin_out, uint8_t *scales_out, uint8_t *L) {
    uint8_t Laux[32], ls[8], lm[8];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; j++) {
        /* ggml stores nearest_int into a uint8_t, then clamps at 63 */
        ls[j] = (uint8_t)MINI(63, (uint8_t)nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)MINI(63, (uint8_t)nearest_int(inv_min * mins[j]));
    }
    memset(scales_out, 0, 12);
    pack_scale_min_k4(ls, lm, scales_out);
    st_f16(d_out, max_scale / 63.f);
    st_f16(dmin_out, max_min / 63.f);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales_out, &sc, &m);
        const float d = ld_f16(d_out) * sc;
        if (!d) continue;
        const float dm = ld_f16(dmin_out) * m;
        for (int ii = 0; ii < 32; ii++) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)MAXI(0, MINI(nmax, l));
        }
    }
}

static void quant_q4_K(const float *x, void *vy, int64_t n) {
    blk_q4_K *y = vy;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        quant_k_asym_block(x, 15, -1.f, 20, y[i].d, y[i].dmin, y[i].scales, L);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void quant_q5_K(const float *x, void *vy, int64_t n) {
    blk_q5_K *y = vy;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        quant_k_asym_block(x, 31, -0.5f, 15, y[i].d, y[i].dmin, y[i].scales, L);
        uint8_t *qh = y[i].qh, *ql = y[i].qs;
        memset(qh, 0, QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int n0 = 0; n0 < QK_K; n0 += 64) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[n0 + j], l2 = L[n0 + j + 32];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
            ql += 32;
        }
    }
}

static void quant_q6_K(const float *x, void *vy, int64_t n) {
    blk_q6_K *y = vy;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ib++) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, NULL);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) { max_abs_scale = abs_scale; max_scale = scale; }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        st_f16(y[i].d, 1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++)
            y[i].scales[ib] = (int8_t)MINI(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = ld_f16(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = MAXI(-32, MINI(31, l));
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}

/* ---- IQ4_NL / IQ4_XS (ggml's quantize_row_iq4_nl_impl, no imatrix, the
 * ntry = 7 scale search that quantize_iq4_nl / quantize_iq4_xs use) ------- */

/* Index of the level nearest to x (upper one on exact ties). */
static inline int best_index_iq4(float x) {
    const int8_t *val = g4_kvalues_iq4nl;
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < val[mav]) mu = mav; else ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* One super-block of sbs values (32 for IQ4_NL, 256 for IQ4_XS) in blocks of
 * 32. scales_h/scales_l only for sbs > 32. */
static void iq4_quant_superblock(int sbs, const float *x, uint8_t *dh, uint8_t *q4,
                                 uint8_t *scales_h, uint8_t *scales_l) {
    const int ntry = 7;
    const int8_t *values = g4_kvalues_iq4nl;
    float scales[QK_K / 32], weight[32];
    uint8_t L[QK_K];
    memset(q4, 0, (size_t)sbs / 2);
    st_f16(dh, 0.f);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sbs / 32; ib++) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            const float ax = fabsf(xb[j]);
            if (ax > amax) { amax = ax; max = xb[j]; }
        }
        if (amax < GROUP_MAX_EPS) {
            scales[ib] = 0;
            memset(Lb, 0, 32);
            continue;
        }
        float d = -max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            const int l = best_index_iq4(id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                const int l = best_index_iq4(id * xb[j]);
                const float q = values[l], w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        const float abs_d = fabsf(d);
        if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = d; }
    }
    if (sbs / 32 > 1) {
        uint16_t sh = 0;
        memset(scales_l, 0, (size_t)sbs / 64);
        const float d = -max_scale / 32;
        st_f16(dh, d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < sbs / 32; ib++) {
            int l = nearest_int(id * scales[ib]);
            l = MAXI(-32, MINI(31, l));
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            uint8_t *Lb = L + ib * 32;
            const float *xb = x + ib * 32;
            for (int j = 0; j < 32; j++) Lb[j] = (uint8_t)best_index_iq4(idl * xb[j]);
            l += 32;
            const uint8_t l_l = (uint8_t)(l & 0xF), l_h = (uint8_t)(l >> 4);
            if (ib % 2 == 0) scales_l[ib / 2] = l_l;
            else scales_l[ib / 2] = (uint8_t)(scales_l[ib / 2] | (l_l << 4));
            sh = (uint16_t)(sh | (l_h << 2 * (ib % 8)));
        }
        scales_h[0] = (uint8_t)sh;
        scales_h[1] = (uint8_t)(sh >> 8);
    } else {
        st_f16(dh, scales[0]);
        const float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < sbs; j++) L[j] = (uint8_t)best_index_iq4(id * x[j]);
    }
    for (int i = 0; i < sbs / 32; i++)
        for (int j = 0; j < 16; j++)
            q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

static void quant_iq4_nl(const float *x, void *vy, int64_t n) {
    blk_iq4_nl *y = vy;
    for (int64_t i = 0; i < n / QK; i++)
        iq4_quant_superblock(QK, x + i * QK, y[i].d, y[i].qs, NULL, NULL);
}

static void quant_iq4_xs(const float *x, void *vy, int64_t n) {
    blk_iq4_xs *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++)
        iq4_quant_superblock(QK_K, x + i * QK_K, y[i].d, y[i].qs, y[i].scales_h, y[i].scales_l);
}

/* ========================================================================== */
/*  Fast path: integer dot products against quantized activations (ggml's     */
/*  generic ggml_vec_dot_*; float accumulation in the same order)             */
/* ========================================================================== */

static float vd_q4_0(const void *vw, const void *vq, int64_t n) {
    const blk_q4_0 *x = vw;
    const blk_q8_0 *y = vq;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK / 2; j++) {
            sumi0 += ((x[ib].qs[j] & 0x0F) - 8) * y[ib].qs[j];
            sumi1 += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + QK / 2];
        }
        sumf += (sumi0 + sumi1) * ld_f16(x[ib].d) * ld_f16(y[ib].d);
    }
    return sumf;
}

static float vd_q4_1(const void *vw, const void *vq, int64_t n) {
    const blk_q4_1 *x = vw;
    const blk_q8_1 *y = vq;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK / 2; j++) {
            sumi0 += (x[ib].qs[j] & 0x0F) * y[ib].qs[j];
            sumi1 += (x[ib].qs[j] >> 4) * y[ib].qs[j + QK / 2];
        }
        sumf += (ld_f16(x[ib].d) * ld_f16(y[ib].d)) * (sumi0 + sumi1) +
                ld_f16(x[ib].m) * ld_f16(y[ib].s);
    }
    return sumf;
}

static float vd_q5_0(const void *vw, const void *vq, int64_t n) {
    const blk_q5_0 *x = vw;
    const blk_q8_0 *y = vq;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const uint32_t qh = ld_u32(x[ib].qh);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
            sumi0 += (((x[ib].qs[j] & 0x0F) | h0) - 16) * y[ib].qs[j];
            sumi1 += (((x[ib].qs[j] >> 4) | h1) - 16) * y[ib].qs[j + QK / 2];
        }
        sumf += (ld_f16(x[ib].d) * ld_f16(y[ib].d)) * (sumi0 + sumi1);
    }
    return sumf;
}

static float vd_q5_1(const void *vw, const void *vq, int64_t n) {
    const blk_q5_1 *x = vw;
    const blk_q8_1 *y = vq;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const uint32_t qh = ld_u32(x[ib].qh);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
            sumi0 += ((x[ib].qs[j] & 0x0F) | h0) * y[ib].qs[j];
            sumi1 += ((x[ib].qs[j] >> 4) | h1) * y[ib].qs[j + QK / 2];
        }
        sumf += (ld_f16(x[ib].d) * ld_f16(y[ib].d)) * (sumi0 + sumi1) +
                ld_f16(x[ib].m) * ld_f16(y[ib].s);
    }
    return sumf;
}

static float vd_q8_0(const void *vw, const void *vq, int64_t n) {
    const blk_q8_0 *x = vw;
    const blk_q8_0 *y = vq;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += sumi * (ld_f16(x[ib].d) * ld_f16(y[ib].d));
    }
    return sumf;
}

/* Q8_1 x Q8_1 (no ggml counterpart; Q8_1 is an activation type) */
static float vd_q8_1(const void *vw, const void *vq, int64_t n) {
    const blk_q8_1 *x = vw;
    const blk_q8_1 *y = vq;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += sumi * (ld_f16(x[ib].d) * ld_f16(y[ib].d));
    }
    return sumf;
}

static float vd_iq4_nl(const void *vw, const void *vq, int64_t n) {
    const blk_iq4_nl *x = vw;
    const blk_q8_0 *y = vq;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const float d = ld_f16(y[ib].d) * ld_f16(x[ib].d);
        int sumi1 = 0, sumi2 = 0;
        for (int j = 0; j < QK / 2; j++) {
            sumi1 += y[ib].qs[j] * g4_kvalues_iq4nl[x[ib].qs[j] & 0xF];
            sumi2 += y[ib].qs[j + QK / 2] * g4_kvalues_iq4nl[x[ib].qs[j] >> 4];
        }
        sumf += d * (sumi1 + sumi2);
    }
    return sumf;
}

static inline int q8k_bsum(const blk_q8_K *y, int j) { return ld_i16(y->bsums + 2 * j); }

static float vd_q2_K(const void *vw, const void *vq, int64_t n) {
    const blk_q2_K *x = vw;
    const blk_q8_K *y = vq;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *q2 = x[i].qs, *sc = x[i].scales;
        const int8_t *q8 = y[i].qs;
        int summs = 0;
        for (int j = 0; j < 16; j++) summs += q8k_bsum(&y[i], j) * (sc[j] >> 4);
        const float dall = ld_f32(y[i].d) * ld_f16(x[i].d);
        const float dmin = ld_f32(y[i].d) * ld_f16(x[i].dmin);
        int isum = 0, is = 0;
        for (int k = 0; k < QK_K / 128; k++) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                int d = sc[is++] & 0xF, isuml = 0;
                for (int l = 0; l < 16; l++) isuml += q8[l] * ((q2[l] >> shift) & 3);
                isum += d * isuml;
                d = sc[is++] & 0xF;
                isuml = 0;
                for (int l = 16; l < 32; l++) isuml += q8[l] * ((q2[l] >> shift) & 3);
                isum += d * isuml;
                shift += 2;
                q8 += 32;
            }
            q2 += 32;
        }
        sumf += dall * isum - dmin * summs;
    }
    return sumf;
}

/* Q3_K..Q6_K: the integer part per sub-block, then ggml's 8-lane float
 * accumulation (sums[l] += d * aux32[l]) so the rounding matches. */
static float vd_q3_K(const void *vw, const void *vq, int64_t n) {
    const blk_q3_K *x = vw;
    const blk_q8_K *y = vq;
    float sums[8] = {0}, sumf = 0;
    int8_t aux8[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *q3 = x[i].qs, *hm = x[i].hmask;
        int8_t *a = aux8;
        uint8_t m = 1;
        for (int j = 0; j < QK_K; j += 128) {
            for (int s = 0; s < 8; s += 2) {
                for (int l = 0; l < 32; l++)
                    a[l] = (int8_t)(((q3[l] >> s) & 3) - (hm[l] & m ? 0 : 4));
                a += 32;
                m = (uint8_t)(m << 1);
            }
            q3 += 32;
        }
        int sc[16];
        q3k_scales(x[i].scales, sc);
        int32_t aux32[8] = {0};
        const int8_t *q8 = y[i].qs;
        a = aux8;
        for (int j = 0; j < QK_K / 16; j++)
            for (int h = 0; h < 2; h++, q8 += 8, a += 8)
                for (int l = 0; l < 8; l++) aux32[l] += sc[j] * (q8[l] * a[l]);
        const float d = ld_f16(x[i].d) * ld_f32(y[i].d);
        for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

/* Q4_K and Q5_K share the scale/min handling; `a` holds the unsigned quants. */
static float vd_k_asym(const uint8_t *scales12, const uint8_t *xd, const uint8_t *xdmin,
                       const int8_t *a, const blk_q8_K *y, float sums[8]) {
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) get_scale_min_k4(j, scales12, &sc[j], &mn[j]);
    int sumi = 0;
    for (int j = 0; j < QK_K / 16; j++) sumi += q8k_bsum(y, j) * mn[j / 2];
    int32_t aux32[8] = {0};
    const int8_t *q8 = y->qs;
    for (int j = 0; j < QK_K / 32; j++)
        for (int h = 0; h < 4; h++, q8 += 8, a += 8)
            for (int l = 0; l < 8; l++) aux32[l] += sc[j] * (q8[l] * a[l]);
    const float d = ld_f16(xd) * ld_f32(y->d);
    for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
    const float dmin = ld_f16(xdmin) * ld_f32(y->d);
    return dmin * sumi; /* subtracted by the caller */
}

static float vd_q4_K(const void *vw, const void *vq, int64_t n) {
    const blk_q4_K *x = vw;
    const blk_q8_K *y = vq;
    float sums[8] = {0}, sumf = 0;
    int8_t aux8[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *q4 = x[i].qs;
        int8_t *a = aux8;
        for (int j = 0; j < QK_K / 64; j++, q4 += 32) {
            for (int l = 0; l < 32; l++) a[l] = (int8_t)(q4[l] & 0xF);
            a += 32;
            for (int l = 0; l < 32; l++) a[l] = (int8_t)(q4[l] >> 4);
            a += 32;
        }
        sumf -= vd_k_asym(x[i].scales, x[i].d, x[i].dmin, aux8, &y[i], sums);
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

static float vd_q5_K(const void *vw, const void *vq, int64_t n) {
    const blk_q5_K *x = vw;
    const blk_q8_K *y = vq;
    float sums[8] = {0}, sumf = 0;
    int8_t aux8[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *q4 = x[i].qs, *hm = x[i].qh;
        int8_t *a = aux8;
        uint8_t m = 1;
        for (int j = 0; j < QK_K / 64; j++, q4 += 32) {
            for (int l = 0; l < 32; l++) a[l] = (int8_t)((q4[l] & 0xF) + (hm[l] & m ? 16 : 0));
            a += 32;
            m = (uint8_t)(m << 1);
            for (int l = 0; l < 32; l++) a[l] = (int8_t)((q4[l] >> 4) + (hm[l] & m ? 16 : 0));
            a += 32;
            m = (uint8_t)(m << 1);
        }
        sumf -= vd_k_asym(x[i].scales, x[i].d, x[i].dmin, aux8, &y[i], sums);
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

static float vd_q6_K(const void *vw, const void *vq, int64_t n) {
    const blk_q6_K *x = vw;
    const blk_q8_K *y = vq;
    float sums[8] = {0}, sumf = 0;
    int8_t aux8[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        int8_t *a = aux8;
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; l++) {
                a[l + 0] = (int8_t)(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                a[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                a[l + 64] = (int8_t)(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                a[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
            a += 128;
            ql += 64;
            qh += 32;
        }
        int32_t aux32[8] = {0};
        const int8_t *q8 = y[i].qs;
        a = aux8;
        for (int j = 0; j < QK_K / 16; j++) {
            const int scale = x[i].scales[j];
            for (int h = 0; h < 2; h++, q8 += 8, a += 8)
                for (int l = 0; l < 8; l++) aux32[l] += scale * (q8[l] * a[l]);
        }
        const float d = ld_f16(x[i].d) * ld_f32(y[i].d);
        for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

/* Q8_K x Q8_K (Q8_K is an activation type; provided for completeness) */
static float vd_q8_K(const void *vw, const void *vq, int64_t n) {
    const blk_q8_K *x = vw;
    const blk_q8_K *y = vq;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0;
        for (int j = 0; j < QK_K; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sumf += (ld_f32(x[i].d) * ld_f32(y[i].d)) * sumi;
    }
    return sumf;
}

static float vd_iq4_xs(const void *vw, const void *vq, int64_t n) {
    const blk_iq4_xs *x = vw;
    const blk_q8_K *y = vq;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d4d8 = ld_f16(x[i].d) * ld_f32(y[i].d);
        const uint8_t *qs = x[i].qs;
        const int8_t *q8 = y[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 16, q8 += 32) {
            const float dl = d4d8 * iq4xs_scale(&x[i], ib);
            int sumi1 = 0, sumi2 = 0;
            for (int j = 0; j < 16; j++) {
                sumi1 += q8[j] * g4_kvalues_iq4nl[qs[j] & 0xF];
                sumi2 += q8[j + 16] * g4_kvalues_iq4nl[qs[j] >> 4];
            }
            sumf += dl * (sumi1 + sumi2);
        }
    }
    return sumf;
}

/* ========================================================================== */
/*  Float types                                                               */
/* ========================================================================== */

static void to_float_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void from_float_f32(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void to_float_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) dst[i] = ld_f16(p + 2 * i);
}
static void from_float_f16(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) st_f16(p + 2 * i, src[i]);
}
static inline float ld_bf16(const uint8_t *p) {
    return g4_bf16_to_fp32((uint16_t)(p[0] | (p[1] << 8)));
}
static void to_float_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) dst[i] = ld_bf16(p + 2 * i);
}
static void from_float_bf16(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) {
        const uint16_t h = g4_fp32_to_bf16(src[i]);
        p[2 * i] = (uint8_t)h;
        p[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* Exact path for float weights: f32 products, f32 accumulation over 8 lanes
 * (a fixed order, friendlier to the compiler than one serial sum). */
#define FLOAT_DOT(name, LOAD)                                                    \
    static float name(const void *w, const float *x, int64_t n) {                \
        const uint8_t *p = w;                                                    \
        float acc[8] = {0};                                                      \
        int64_t i = 0;                                                           \
        for (; i + 8 <= n; i += 8)                                               \
            for (int l = 0; l < 8; l++) acc[l] += LOAD(p, i + l) * x[i + l];     \
        for (; i < n; i++) acc[0] += LOAD(p, i) * x[i];                          \
        return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])); \
    }
#define LD_F32(p, i) ld_f32((p) + 4 * (i))
#define LD_F16(p, i) ld_f16((p) + 2 * (i))
#define LD_BF16(p, i) ld_bf16((p) + 2 * (i))
FLOAT_DOT(dot_f32_f32, LD_F32)
FLOAT_DOT(dot_f32_f16, LD_F16)
FLOAT_DOT(dot_f32_bf16, LD_BF16)

/* Fast path for float weights: ggml's scalar ggml_vec_dot_f32/f16/bf16,
 * f32 products accumulated in double. */
#define FLOAT_VEC_DOT(name, LOAD)                                                \
    static float name(const void *w, const void *xq, int64_t n) {                \
        const uint8_t *p = w, *q = xq;                                           \
        double sum = 0;                                                          \
        for (int64_t i = 0; i < n; i++) sum += (double)(LOAD(p, i) * LOAD(q, i)); \
        return (float)sum;                                                       \
    }
FLOAT_VEC_DOT(vd_f32, LD_F32)
FLOAT_VEC_DOT(vd_f16, LD_F16)
FLOAT_VEC_DOT(vd_bf16, LD_BF16)

/* ========================================================================== */

void g4_quant_ref_fill(int type, g4_type_traits *tr) {
#define SET(T, tf, ff, df, vdt, vd)                                              \
    case T:                                                                      \
        tr->to_float = tf; tr->from_float = ff; tr->dot_f32 = df;                \
        tr->vec_dot_type = vdt; tr->vec_dot = vd;                                \
        break;
#define SETQ(T, t, vdt) SET(T, to_float_##t, quant_##t, dot_f32_##t, vdt, vd_##t)
    switch (type) {
    SET(G4_F32, to_float_f32, from_float_f32, dot_f32_f32, G4_F32, vd_f32)
    SET(G4_F16, to_float_f16, from_float_f16, dot_f32_f16, G4_F16, vd_f16)
    SET(G4_BF16, to_float_bf16, from_float_bf16, dot_f32_bf16, G4_BF16, vd_bf16)
    SETQ(G4_Q4_0, q4_0, G4_Q8_0)
    SETQ(G4_Q4_1, q4_1, G4_Q8_1)
    SETQ(G4_Q5_0, q5_0, G4_Q8_0)
    SETQ(G4_Q5_1, q5_1, G4_Q8_1)
    SETQ(G4_Q8_0, q8_0, G4_Q8_0)
    SETQ(G4_Q8_1, q8_1, G4_Q8_1)
    SETQ(G4_Q2_K, q2_K, G4_Q8_K)
    SETQ(G4_Q3_K, q3_K, G4_Q8_K)
    SETQ(G4_Q4_K, q4_K, G4_Q8_K)
    SETQ(G4_Q5_K, q5_K, G4_Q8_K)
    SETQ(G4_Q6_K, q6_K, G4_Q8_K)
    SETQ(G4_Q8_K, q8_K, G4_Q8_K)
    SETQ(G4_IQ4_NL, iq4_nl, G4_Q8_0)
    SETQ(G4_IQ4_XS, iq4_xs, G4_Q8_K)
    default:
        tr->to_float = NULL; tr->from_float = NULL; tr->dot_f32 = NULL;
        tr->vec_dot_type = -1; tr->vec_dot = NULL;
        break;
    }
#undef SETQ
#undef SET
}

void g4_ref_quant_q8_0(const float *x, void *y, int64_t n) { quant_q8_0(x, y, n); }
void g4_ref_quant_q8_K(const float *x, void *y, int64_t n) { quant_q8_K(x, y, n); }
