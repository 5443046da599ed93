/* x86-64 SIMD kernels: AVX2+FMA+F16C and AVX-512 (VNNI, 256-bit vectors with
 * 32 registers). Each function carries its own target attribute, so the file
 * builds with the project's baseline flags (-march=x86-64-v2) and the kernels
 * run only where cpu.c found the features.
 *
 * The integer kernels share one body (quant_x86_body.h), included once per
 * level with a different multiply-accumulate primitive:
 *   AVX2   : maddubs (u8 x s8 -> s16 pairs) + madd (s16 -> s32)
 *   AVX-512: vpdpbusd / vpdpwssd (VNNI), fused into the accumulator.
 * vpdpbusd multiplies UNSIGNED by SIGNED bytes, so weights enter as their
 * unsigned codes (Q4_0's nibble 0..15, not nibble-8) and the offset is taken
 * out with a per-block activation sum, which seeds the accumulator; for
 * signed Q8_0 weights the activation is made unsigned instead (x ^ 0x80 =
 * x + 128) and 128 * sum(w) is subtracted.
 *
 * Block layouts are ggml's (see quant_ref.c); rows may be unaligned. */
#include "tensor/quant_isa.h"

#include "tensor/cpu.h"
#include "tensor/quant_ref.h"
#include "tensor/quant_x86_q3k.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__) && !defined(__STRICT_ANSI__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define QK 32
#define QK_K 256
/* byte offsets inside blocks (ggml-common.h) */
#define Q4_0_SIZE 18
#define Q8_0_SIZE 34
#define Q4_K_SIZE 144
#define Q5_K_SIZE 176
#define Q6_K_SIZE 210
#define Q8_K_SIZE 292
#define Q3_K_SIZE 110
#define Q2_K_SIZE 84
#define IQ4_XS_SIZE 136

#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define T_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define UNROLL _Pragma("GCC unroll 16")

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline float rdf32(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }
static inline float h2f(const uint8_t *p) { return g4_fp16_to_fp32_inline(rd16(p)); }

/* ========================================================================== */
/*  Activation quantizers (AVX2; used by both levels). Byte-identical to      */
/*  quant_ref.c: same products, same rounding; blocks holding inf/NaN take    */
/*  the scalar path, which is the reference code itself.                     */
/* ========================================================================== */

/* Blocks holding inf/NaN go through the reference quantizers (quant_ref.c). */
static inline void q8_0_block_scalar(const float *x, uint8_t *y) { g4_ref_quant_q8_0(x, y, QK); }
static inline void q8_K_block_scalar(const float *x, uint8_t *y) { g4_ref_quant_q8_K(x, y, QK_K); }

/* 4 x 8 int32 -> 32 int8 in order, saturating */
T_AVX2 static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

T_AVX2 static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* roundf (half away from zero): truncate, then step by one where the
 * remainder (exact) is at least one half. */
T_AVX2 static inline __m256i round_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 fr = _mm256_sub_ps(v, t);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 ge = _mm256_cmp_ps(_mm256_and_ps(fr, absmask), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_andnot_ps(absmask, v));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(ge, one)));
}

T_AVX2 static void from_float_q8_0_avx2(const float *x, void *vy, int64_t n) {
    uint8_t *y = vy;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / QK; i++, x += QK, y += Q8_0_SIZE) {
        const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
                     v3 = _mm256_loadu_ps(x + 24);
        const __m256 nan = _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q));
        __m256 m = _mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask));
        m = _mm256_max_ps(m, _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        const float amax = hmax8(m);
        if (_mm256_movemask_ps(nan) || !(amax < INFINITY)) { q8_0_block_scalar(x, y); continue; }
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        const uint16_t h = g4_fp32_to_fp16(d);
        y[0] = (uint8_t)h; y[1] = (uint8_t)(h >> 8);
        const __m256 vid = _mm256_set1_ps(id);
        const __m256i q = pack32(round_away(_mm256_mul_ps(v0, vid)), round_away(_mm256_mul_ps(v1, vid)),
                                 round_away(_mm256_mul_ps(v2, vid)), round_away(_mm256_mul_ps(v3, vid)));
        _mm256_storeu_si256((__m256i *)(y + 2), q);
    }
}

T_AVX2 static void from_float_q8_K_avx2(const float *x, void *vy, int64_t n) {
    uint8_t *y = vy;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K, y += Q8_K_SIZE) {
        __m256 m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) {
            const __m256 v = _mm256_loadu_ps(x + j);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            m = _mm256_max_ps(_mm256_and_ps(v, absmask), m);
        }
        const float amax = hmax8(m);
        if (_mm256_movemask_ps(nan) || !(amax < INFINITY)) { q8_K_block_scalar(x, y); continue; }
        if (!amax) { memset(y, 0, Q8_K_SIZE); continue; }
        /* the reference keeps the first element of largest magnitude */
        const __m256 vam = _mm256_set1_ps(amax);
        float max = 0;
        for (int j = 0; j < QK_K; j += 8) {
            const int mm = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), absmask), vam,
                                                            _CMP_EQ_OQ));
            if (mm) { max = x[j + __builtin_ctz((unsigned)mm)]; break; }
        }
        const float iscale = -127.f / max;
        const __m256 vis = _mm256_set1_ps(iscale);
        int8_t *qs = (int8_t *)(y + 4);
        const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i r[4];
            for (int k = 0; k < 4; k++)
                r[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), vis),
                                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            const __m256i q = pack32(r[0], r[1], r[2], r[3]);
            _mm256_storeu_si256((__m256i *)(qs + j), q);
            /* sums of 16: lanes 0..3 hold elements 0..15, lanes 4..7 16..31 */
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
            s = _mm256_hadd_epi32(s, s);
            s = _mm256_hadd_epi32(s, s);
            const int s0 = _mm256_extract_epi32(s, 0), s1 = _mm256_extract_epi32(s, 4);
            uint8_t *b = y + 260 + 2 * (j / 16);
            b[0] = (uint8_t)(uint16_t)s0; b[1] = (uint8_t)((uint16_t)s0 >> 8);
            b[2] = (uint8_t)(uint16_t)s1; b[3] = (uint8_t)((uint16_t)s1 >> 8);
        }
        const float d = 1 / iscale;
        memcpy(y, &d, 4);
    }
}

/* ========================================================================== */
/*  Float vec_dot (AVX2+FMA+F16C; both levels)                                */
/* ========================================================================== */

T_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define FLOAT_VD(name, LOAD, SCALAR)                                                   \
    T_AVX2 static float name(const void *vw, const void *vx, int64_t n) {            \
        const uint8_t *w = vw, *x = vx;                                                \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                    \
        int64_t i = 0;                                                                 \
        for (; i + 32 <= n; i += 32) {                                                 \
            a0 = _mm256_fmadd_ps(LOAD(w, i), LOAD(x, i), a0);                          \
            a1 = _mm256_fmadd_ps(LOAD(w, i + 8), LOAD(x, i + 8), a1);                  \
            a2 = _mm256_fmadd_ps(LOAD(w, i + 16), LOAD(x, i + 16), a2);                \
            a3 = _mm256_fmadd_ps(LOAD(w, i + 24), LOAD(x, i + 24), a3);                \
        }                                                                              \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD(w, i), LOAD(x, i), a0);   \
        double s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))); \
        for (; i < n; i++) s += (double)(SCALAR(w, i) * SCALAR(x, i));                 \
        return (float)s;                                                               \
    }
#define LD8_F32(p, i) _mm256_loadu_ps((const float *)(const void *)((p) + 4 * (i)))
#define LD8_F16(p, i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)((p) + 2 * (i))))
#define LD8_BF16(p, i) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)((p) + 2 * (i)))), 16))
#define S_F32(p, i) rdf32((p) + 4 * (i))
#define S_F16(p, i) h2f((p) + 2 * (i))
#define S_BF16(p, i) g4_bf16_to_fp32(rd16((p) + 2 * (i)))
FLOAT_VD(vd_f32_avx2, LD8_F32, S_F32)
FLOAT_VD(vd_f16_avx2, LD8_F16, S_F16)
FLOAT_VD(vd_bf16_avx2, LD8_BF16, S_BF16)

#define GEMM_LOOP(name, vd, TGT)                                                              \
    TGT static void name(int64_t n, int nr, int nc, const void *w, size_t ws, const void *xq,  \
                         size_t xs, float *y, size_t ys) {                                     \
        const char *wp = w, *xp = xq;                                                          \
        for (int c = 0; c < nc; c++)                                                           \
            for (int r = 0; r < nr; r++)                                                       \
                y[(size_t)c * ys + (size_t)r] = vd(wp + (size_t)r * ws, xp + (size_t)c * xs, n); \
    }
GEMM_LOOP(gemm_f32_avx2, vd_f32_avx2, T_AVX2)
GEMM_LOOP(gemm_f16_avx2, vd_f16_avx2, T_AVX2)
GEMM_LOOP(gemm_bf16_avx2, vd_bf16_avx2, T_AVX2)

/* AVX-512 register tiles for the float types (F32/F16/BF16 weights against
 * activations of the same type): R rows x C tokens per tile, so each loaded
 * and converted 16-element weight chunk serves C tokens and each activation
 * chunk R rows (the loop above converts both operands of every FMA: it ran
 * at a quarter of the FMA rate on the vision/audio towers' F16 linears).
 * Each dot keeps vd_*_avx2's exact summation: its four 8-lane accumulators
 * a0..a3 are the two halves of zA (elements i..i+15) and zB (i+16..i+31),
 * the 8-wide tail goes into a0, the horizontal sum is (a0+a1)+(a2+a3) and
 * the scalar tail is summed in double. So every result is bit-identical to
 * the per-(row, token) loop (any tile, any batch: batched equals alone). */
#define LD16_F32(p, i) _mm512_loadu_ps((const float *)(const void *)((p) + 4 * (i)))
#define LD16_F16(p, i) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)((p) + 2 * (i))))
#define LD16_BF16(p, i) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)((p) + 2 * (i)))), 16))

/* the epilogue of one dot: the 8-wide and scalar tails, then the sum */
#define FLOAT_TAIL(name, LOAD8, SCALAR)                                                             \
    T_AVX512 static inline float name(__m512 zA, __m512 zB, const uint8_t *w, const uint8_t *x,     \
                                      int64_t i, int64_t n) {                                        \
        __m256 a0 = _mm512_castps512_ps256(zA), a1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(zA), 1));                  \
        __m256 a2 = _mm512_castps512_ps256(zB), a3 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(zB), 1));                  \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD8(w, i), LOAD8(x, i), a0);             \
        double s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));              \
        for (; i < n; i++) s += (double)(SCALAR(w, i) * SCALAR(x, i));                              \
        return (float)s;                                                                             \
    }

/* one R x C tile: 2*R*C zmm accumulators + R weight chunks + 1 activation */
#define FLOAT_TILE(name, LOAD16, TAIL, R, C)                                                          \
    T_AVX512 static void name(int64_t n, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,    \
                              float *y, size_t ys) {                                                   \
        __m512 zA[R][C], zB[R][C];                                                                     \
        UNROLL for (int r = 0; r < R; r++)                                                                    \
            UNROLL for (int c = 0; c < C; c++) zA[r][c] = zB[r][c] = _mm512_setzero_ps();                     \
        int64_t i = 0;                                                                                 \
        for (; i + 32 <= n; i += 32) {                                                                 \
            __m512 wv[R];                                                                              \
            UNROLL for (int r = 0; r < R; r++) wv[r] = LOAD16(w + (size_t)r * ws, i);                        \
            UNROLL for (int c = 0; c < C; c++) {                                                              \
                const __m512 xv = LOAD16(x + (size_t)c * xs, i);                                       \
                UNROLL for (int r = 0; r < R; r++) zA[r][c] = _mm512_fmadd_ps(wv[r], xv, zA[r][c]);          \
            }                                                                                          \
            UNROLL for (int r = 0; r < R; r++) wv[r] = LOAD16(w + (size_t)r * ws, i + 16);                   \
            UNROLL for (int c = 0; c < C; c++) {                                                              \
                const __m512 xv = LOAD16(x + (size_t)c * xs, i + 16);                                  \
                UNROLL for (int r = 0; r < R; r++) zB[r][c] = _mm512_fmadd_ps(wv[r], xv, zB[r][c]);          \
            }                                                                                          \
        }                                                                                              \
        UNROLL for (int c = 0; c < C; c++)                                                                    \
            UNROLL for (int r = 0; r < R; r++)                                                                \
                y[(size_t)c * ys + (size_t)r] = TAIL(zA[r][c], zB[r][c], w + (size_t)r * ws,          \
                                                     x + (size_t)c * xs, i, n);                       \
    }

/* the gemm: 4x3 tiles, then the edges with smaller ones; decode keeps the
 * row-streaming loop (4 interleaved row streams halved its GB/s) */
#define FLOAT_GEMM512(t, LOAD16, LOAD8, SCALAR)                                                        \
    FLOAT_TAIL(tail_##t##_512, LOAD8, SCALAR)                                                          \
    FLOAT_TILE(tile_##t##_4x3, LOAD16, tail_##t##_512, 4, 3)                                           \
    FLOAT_TILE(tile_##t##_4x1, LOAD16, tail_##t##_512, 4, 1)                                           \
    FLOAT_TILE(tile_##t##_1x3, LOAD16, tail_##t##_512, 1, 3)                                           \
    FLOAT_TILE(tile_##t##_1x8, LOAD16, tail_##t##_512, 1, 8)                                           \
    FLOAT_TILE(tile_##t##_1x1, LOAD16, tail_##t##_512, 1, 1)                                           \
    T_AVX512 static void gemm_##t##_avx512(int64_t n, int nr, int nc, const void *vw, size_t ws,      \
                                           const void *vx, size_t xs, float *y, size_t ys) {          \
        /* decode (1-2 tokens) streams rows: one at a time stays sequential */                         \
        if (nc < 3) { gemm_##t##_avx2(n, nr, nc, vw, ws, vx, xs, y, ys); return; }                   \
        const uint8_t *w = vw, *x = vx;                                                                \
        int c = 0;                                                                                     \
        /* batched decode calls one row at a time: 8 tokens per pass over \
         * it (1x3 tiles took 4 passes at 8 tokens, ~25% more loads) */     \
        if (nr < 4)                                                                                    \
            for (; c + 8 <= nc; c += 8)                                                                \
                for (int r = 0; r < nr; r++)                                                           \
                    tile_##t##_1x8(n, w + (size_t)r * ws, ws, x + (size_t)c * xs, xs, y + (size_t)c * ys + r, ys); \
        for (; c + 3 <= nc; c += 3) {                                                                  \
            int r = 0;                                                                                 \
            for (; r + 4 <= nr; r += 4)                                                                \
                tile_##t##_4x3(n, w + (size_t)r * ws, ws, x + (size_t)c * xs, xs, y + (size_t)c * ys + r, ys); \
            for (; r < nr; r++)                                                                        \
                tile_##t##_1x3(n, w + (size_t)r * ws, ws, x + (size_t)c * xs, xs, y + (size_t)c * ys + r, ys); \
        }                                                                                              \
        for (; c < nc; c++) {                                                                          \
            int r = 0;                                                                                 \
            for (; r + 4 <= nr; r += 4)                                                                \
                tile_##t##_4x1(n, w + (size_t)r * ws, ws, x + (size_t)c * xs, xs, y + (size_t)c * ys + r, ys); \
            for (; r < nr; r++)                                                                        \
                tile_##t##_1x1(n, w + (size_t)r * ws, ws, x + (size_t)c * xs, xs, y + (size_t)c * ys + r, ys); \
        }                                                                                              \
    }
FLOAT_GEMM512(f32, LD16_F32, LD8_F32, S_F32)
FLOAT_GEMM512(f16, LD16_F16, LD8_F16, S_F16)
FLOAT_GEMM512(bf16, LD16_BF16, LD8_BF16, S_BF16)

/* ========================================================================== */
/*  Integer kernels, one body per level                                       */
/* ========================================================================== */

#define LVL avx2
#define TGT T_AVX2
#define RT 2 /* rows per micro-tile (16 ymm registers) */
#define CT 4 /* tokens per micro-tile */
#define HAVE_VNNI 0
#include "tensor/quant_x86_body.h"
#undef LVL
#undef TGT
#undef RT
#undef CT
#undef HAVE_VNNI

#define LVL avx512
#define TGT T_AVX512
#define RT 4 /* 32 registers with EVEX encoding */
#define CT 4
#define HAVE_VNNI 1
#include "tensor/quant_x86_body.h"
#undef LVL
#undef TGT
#undef RT
#undef CT
#undef HAVE_VNNI

/* ========================================================================== */
/*  Row decoders (to_float) for Q4_K and Q6_K, 8 lanes: the same products     */
/*  as quant_ref.c's in the same order (a multiply, then the min's subtract,  */
/*  never fused), so the bits equal the reference. Training's backward        */
/*  decodes whole weight panels with them.                                    */
/* ========================================================================== */

/* 8 bytes -> 8 floats */
T_AVX2 static inline __m256 u8x8_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }

T_AVX2 static void to_float_q4_K_avx2(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < n; i += QK_K, b += Q4_K_SIZE) {
        const float d = h2f(b), min = h2f(b + 2);
        const uint8_t *sc = b + 4, *q = b + 16;
        for (int j = 0; j < 4; j++, q += 32) {
            uint8_t s[2], m[2];
            for (int h = 0; h < 2; h++) {     /* get_scale_min_k4(2j + h) */
                int k = 2 * j + h;
                if (k < 4) { s[h] = sc[k] & 63; m[h] = sc[k + 4] & 63; }
                else {
                    s[h] = (uint8_t)((sc[k + 4] & 0xF) | ((sc[k - 4] >> 6) << 4));
                    m[h] = (uint8_t)((sc[k + 4] >> 4) | ((sc[k] >> 6) << 4));
                }
            }
            const __m256 d1 = _mm256_set1_ps(d * s[0]), m1 = _mm256_set1_ps(min * m[0]);
            const __m256 d2 = _mm256_set1_ps(d * s[1]), m2 = _mm256_set1_ps(min * m[1]);
            for (int l = 0; l < 32; l += 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)(q + l));
                __m128i lo = _mm_and_si128(v, lo4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), lo4);
                float *y1 = y + i + 64 * j + l, *y2 = y1 + 32;
                _mm256_storeu_ps(y1, _mm256_sub_ps(_mm256_mul_ps(d1, u8x8_ps(lo)), m1));
                _mm256_storeu_ps(y1 + 8, _mm256_sub_ps(_mm256_mul_ps(d1, u8x8_ps(_mm_srli_si128(lo, 8))), m1));
                _mm256_storeu_ps(y2, _mm256_sub_ps(_mm256_mul_ps(d2, u8x8_ps(hi)), m2));
                _mm256_storeu_ps(y2 + 8, _mm256_sub_ps(_mm256_mul_ps(d2, u8x8_ps(_mm_srli_si128(hi, 8))), m2));
            }
        }
    }
}

T_AVX2 static void to_float_q6_K_avx2(const void *src, float *y, int64_t n) {
    const uint8_t *b = src;
    const __m256i lo4 = _mm256_set1_epi32(0x0F), three = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
    for (int64_t i = 0; i < n; i += QK_K, b += Q6_K_SIZE) {
        const float d = h2f(b + 208);
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float *yb = y + i;
        for (int half = 0; half < 2; half++, yb += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l += 8) {
                const int is = l / 16;
                __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ql + l)));
                __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ql + l + 32)));
                __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qh + l)));
                __m256i q1 = _mm256_or_si256(_mm256_and_si256(a, lo4), _mm256_slli_epi32(_mm256_and_si256(h, three), 4));
                __m256i q2 = _mm256_or_si256(_mm256_and_si256(c, lo4),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2), three), 4));
                __m256i q3 = _mm256_or_si256(_mm256_srli_epi32(a, 4),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 4), three), 4));
                __m256i q4 = _mm256_or_si256(_mm256_srli_epi32(c, 4),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 6), three), 4));
                /* (d * scale) * q, left to right, as the reference */
                _mm256_storeu_ps(yb + l, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 0]),
                                                       _mm256_cvtepi32_ps(_mm256_sub_epi32(q1, off))));
                _mm256_storeu_ps(yb + l + 32, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 2]),
                                                            _mm256_cvtepi32_ps(_mm256_sub_epi32(q2, off))));
                _mm256_storeu_ps(yb + l + 64, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 4]),
                                                            _mm256_cvtepi32_ps(_mm256_sub_epi32(q3, off))));
                _mm256_storeu_ps(yb + l + 96, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 6]),
                                                            _mm256_cvtepi32_ps(_mm256_sub_epi32(q4, off))));
            }
        }
    }
}

void g4_quant_x86_fill(int type, int level, g4_type_traits *tr) {
    if (level != G4_CPU_AVX2 && level != G4_CPU_AVX512) return;
    const int v512 = level == G4_CPU_AVX512;
#define SETK(T, t)                                                      \
    case T:                                                             \
        tr->vec_dot = v512 ? vd_##t##_avx512 : vd_##t##_avx2;           \
        tr->gemm = v512 ? gemm_##t##_avx512 : gemm_##t##_avx2;          \
        break;
    switch (type) {
    case G4_F32: tr->vec_dot = vd_f32_avx2; tr->gemm = v512 ? gemm_f32_avx512 : gemm_f32_avx2; break;
    case G4_F16: tr->vec_dot = vd_f16_avx2; tr->gemm = v512 ? gemm_f16_avx512 : gemm_f16_avx2; break;
    case G4_BF16: tr->vec_dot = vd_bf16_avx2; tr->gemm = v512 ? gemm_bf16_avx512 : gemm_bf16_avx2; break;
    case G4_Q8_0:
        tr->from_float = from_float_q8_0_avx2;
        tr->vec_dot = v512 ? vd_q8_0_avx512 : vd_q8_0_avx2;
        tr->gemm = v512 ? gemm_q8_0_avx512 : gemm_q8_0_avx2;
        break;
    case G4_Q8_K: tr->from_float = from_float_q8_K_avx2; break;
    SETK(G4_Q4_0, q4_0)
    case G4_Q4_K:
        tr->to_float = to_float_q4_K_avx2;
        tr->vec_dot = v512 ? vd_q4_K_avx512 : vd_q4_K_avx2;
        tr->gemm = v512 ? gemm_q4_K_avx512 : gemm_q4_K_avx2;
        break;
    SETK(G4_Q5_K, q5_K)
    case G4_Q6_K:
        tr->to_float = to_float_q6_K_avx2;
        tr->vec_dot = v512 ? vd_q6_K_avx512 : vd_q6_K_avx2;
        tr->gemm = v512 ? gemm_q6_K_avx512 : gemm_q6_K_avx2;
        break;
    SETK(G4_Q3_K, q3_K)
    SETK(G4_Q2_K, q2_K)
    SETK(G4_IQ4_XS, iq4_xs)
    default: break;
    }
#undef SETK
}

#else /* !__x86_64__ */

void g4_quant_x86_fill(int type, int level, g4_type_traits *tr) {
    (void)type; (void)level; (void)tr;
}

#endif
