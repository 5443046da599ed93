/* KV-cache row types and their attention kernels (vec_kv.h).
 *
 * Each SIMD kernel is one template over the row type: a load of 8 (AVX2,
 * NEON) or 16 (AVX-512) elements converted to f32 (f16 by F16C / FCVTL;
 * q8_0 as d * int8, exact in f32), then the same register tiles as vec.c's
 * f32 kernels: qk keeps R heads x C rows of partial dots, pv keeps R heads x
 * 16 or 32 columns of the accumulator across a chunk of rows, so every row is
 * loaded and converted once for all heads of the group. f32 rows use vec.c's
 * kernels unchanged on x86 (same results as before the cache had types). */
#include "tensor/vec_kv.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/fp16.h"
#include "tensor/vec.h"

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

size_t g4_kv_row_bytes(int t, size_t n) {
    switch (t) {
    case G4_KV_F16: return 2 * n;
    case G4_KV_Q8_0: return (n / G4_KV_Q8_BLOCK) * G4_KV_Q8_BYTES;
    case G4_KV_Q4_0: return (n / G4_KV_Q8_BLOCK) * G4_KV_Q4_BYTES;
    default: return 4 * n;
    }
}

int g4_kv_type_fits(int t, int hd) {
    if (t == G4_KV_Q8_0 || t == G4_KV_Q4_0) return hd > 0 && hd % G4_KV_Q8_BLOCK == 0;
    return t == G4_KV_F32 || t == G4_KV_F16;
}

int g4_kv_type_for(int t, int hd) { return g4_kv_type_fits(t, hd) ? t : G4_KV_F16; }

static const char *const NAMES[G4_KV_NTYPES] = { "f32", "f16", "q8_0", "q4_0" };

const char *g4_kv_type_name(int t) { return t >= 0 && t < G4_KV_NTYPES ? NAMES[t] : "?"; }

int g4_kv_type_from_name(const char *s) {
    for (int t = 0; s && t < G4_KV_NTYPES; t++)
        if (!strcmp(s, NAMES[t])) return t;
    return -1;
}

static inline float q8_scale(const char *b) {
    uint16_t h;
    memcpy(&h, b, 2);
    return g4_fp16_to_fp32_inline(h);
}

/* Element i of a row (the reference every kernel is tested against). */
static inline float ld1(int t, const char *row, int i) {
    if (t == G4_KV_F16) {
        uint16_t h;
        memcpy(&h, row + 2 * (size_t)i, 2);
        return g4_fp16_to_fp32_inline(h);
    }
    if (t == G4_KV_Q8_0) {
        const char *b = row + (size_t)(i / G4_KV_Q8_BLOCK) * G4_KV_Q8_BYTES;
        return q8_scale(b) * (float)(int8_t)b[2 + i % G4_KV_Q8_BLOCK];
    }
    if (t == G4_KV_Q4_0) {
        const char *b = row + (size_t)(i / G4_KV_Q8_BLOCK) * G4_KV_Q4_BYTES;
        const int o = i % G4_KV_Q8_BLOCK;
        const uint8_t x = (uint8_t)b[2 + (o & 15)];
        return q8_scale(b) * (float)((o < 16 ? x & 15 : x >> 4) - 8);
    }
    float f;
    memcpy(&f, row + 4 * (size_t)i, 4);
    return f;
}

#if defined(__x86_64__)
/* F16C rounds to nearest even like g4_fp32_to_fp16 (every K/V row of a
 * prefill goes through here: ~1% of an E2B pp512 in scalar code) */
__attribute__((target("avx2,f16c"))) static int store_f16_f16c(char *d, const float *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + 2 * (size_t)i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    return i;
}
#elif defined(__aarch64__)
static int store_f16_neon(char *d, const float *src, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        uint16_t u[4];
        vst1_u16(u, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));   /* FPCR: nearest even */
        memcpy(d + 2 * (size_t)i, u, sizeof u);
    }
    return i;
}
#endif

/* Leading elements stored by SIMD where the CPU level has it (then the rest). */
static int store_f16_fast(char *d, const float *src, int n) {
#if defined(__x86_64__)
    if (g4_cpu_level() >= G4_CPU_AVX2) return store_f16_f16c(d, src, n);
#elif defined(__aarch64__)
    if (g4_cpu_level() >= G4_CPU_NEON) return store_f16_neon(d, src, n);
#endif
    (void)d; (void)src; (void)n;
    return 0;
}

void g4_kv_store(int t, void *dst, const float *src, int n) {
    char *d = dst;
    if (t == G4_KV_F16) {
        for (int i = store_f16_fast(d, src, n); i < n; i++) {
            uint16_t h = g4_fp32_to_fp16(src[i]);
            memcpy(d + 2 * (size_t)i, &h, 2);
        }
    } else if (t == G4_KV_Q8_0) {
        /* GGML's quantize_row_q8_0: d = amax / 127, q = round(x / d), d kept as f16 */
        for (int b = 0; b + G4_KV_Q8_BLOCK <= n; b += G4_KV_Q8_BLOCK) {
            float amax = 0;
            for (int i = 0; i < G4_KV_Q8_BLOCK; i++) {
                float a = src[b + i] < 0 ? -src[b + i] : src[b + i];
                if (a > amax) amax = a;
            }
            float sc = amax / 127.0f, id = sc != 0 ? 1.0f / sc : 0.0f;
            char *blk = d + (size_t)(b / G4_KV_Q8_BLOCK) * G4_KV_Q8_BYTES;
            uint16_t h = g4_fp32_to_fp16(sc);
            memcpy(blk, &h, 2);
            for (int i = 0; i < G4_KV_Q8_BLOCK; i++) {
                blk[2 + i] = (char)(int8_t)roundf(src[b + i] * id);
            }
        }
    } else if (t == G4_KV_Q4_0) {
        /* GGML's quantize_row_q4_0: d = (the element of largest magnitude) /
         * -8, q = min(15, trunc(x / d + 8.5)), d kept as f16 */
        for (int b = 0; b + G4_KV_Q8_BLOCK <= n; b += G4_KV_Q8_BLOCK) {
            float amax = 0, mx = 0;
            for (int i = 0; i < G4_KV_Q8_BLOCK; i++) {
                float a = src[b + i] < 0 ? -src[b + i] : src[b + i];
                if (a > amax) { amax = a; mx = src[b + i]; }
            }
            float sc = mx / -8.0f, id = sc != 0 ? 1.0f / sc : 0.0f;
            char *blk = d + (size_t)(b / G4_KV_Q8_BLOCK) * G4_KV_Q4_BYTES;
            uint16_t h = g4_fp32_to_fp16(sc);
            memcpy(blk, &h, 2);
            for (int i = 0; i < 16; i++) {
                int lo = (int)(int8_t)(src[b + i] * id + 8.5f), hi = (int)(int8_t)(src[b + 16 + i] * id + 8.5f);
                lo = lo > 15 ? 15 : lo;
                hi = hi > 15 ? 15 : hi;
                blk[2 + i] = (char)(uint8_t)(lo | hi << 4);
            }
        }
    } else {
        memcpy(d, src, (size_t)n * sizeof(float));
    }
}

void g4_kv_load(int t, float *dst, const void *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = ld1(t, src, i);
}

/* ---- portable reference ---- */

static void qk_ref_t(int t, float *s, int lds, const float *q, int G, const void *k, size_t ks, int nj, int hd) {
    for (int h = 0; h < G; h++)
        for (int j = 0; j < nj; j++) {
            const char *row = (const char *)k + (size_t)j * ks;
            float a = 0;
            for (int i = 0; i < hd; i++) a += q[(size_t)h * hd + i] * ld1(t, row, i);
            s[(size_t)h * lds + j] = a;
        }
}

static void pv_ref_t(int t, float *acc, const float *p, int ldp, int G, const void *v, size_t vs, int nj, int hd) {
    for (int h = 0; h < G; h++)
        for (int j = 0; j < nj; j++) {
            const char *row = (const char *)v + (size_t)j * vs;
            float w = p[(size_t)h * ldp + j];
            for (int i = 0; i < hd; i++) acc[(size_t)h * hd + i] += w * ld1(t, row, i);
        }
}

#define REF_PAIR(T, name)                                                                                      \
    static void qk_ref_##name(float *s, int lds, const float *q, int G, const void *k, size_t ks, int nj,     \
                              int hd) { qk_ref_t(T, s, lds, q, G, k, ks, nj, hd); }                          \
    static void pv_ref_##name(float *acc, const float *p, int ldp, int G, const void *v, size_t vs, int nj,   \
                              int hd) { pv_ref_t(T, acc, p, ldp, G, v, vs, nj, hd); }
REF_PAIR(G4_KV_F16, f16)
REF_PAIR(G4_KV_Q8_0, q8)
REF_PAIR(G4_KV_Q4_0, q4)

/* f32 rows: vec.c's kernels (float strides) at the same level */
#define F32_PAIR(level, name)                                                                                  \
    static void qk_f32_##name(float *s, int lds, const float *q, int G, const void *k, size_t ks, int nj,     \
                              int hd) { g4_vec_get_level(level)->qk(s, lds, q, G, k, ks / sizeof(float), nj, hd); } \
    static void pv_f32_##name(float *acc, const float *p, int ldp, int G, const void *v, size_t vs, int nj,   \
                              int hd) { g4_vec_get_level(level)->pv(acc, p, ldp, G, v, vs / sizeof(float), nj, hd); }
F32_PAIR(G4_CPU_REF, ref)

static const g4_kv_ops REF[G4_KV_NTYPES] = {
    { qk_f32_ref, pv_f32_ref }, { qk_ref_f16, pv_ref_f16 }, { qk_ref_q8, pv_ref_q8 }, { qk_ref_q4, pv_ref_q4 } };

/* Prefetch `off` bytes past p in integer arithmetic (may lie past the arena;
 * a prefetch never faults). */
#define PF_BYTES(p, off) __builtin_prefetch((const void *)((uintptr_t)(p) + (size_t)(off)), 0, 3)
/* p.v takes cache rows this many at a time, each chunk used up across all
 * column strips before the next (vec.c's pv_avx512 explains why) */
#define PV_CHUNK 8

#if defined(__x86_64__)
/* ---- AVX2 + F16C: 8 lanes ---- */
#define KV2_FN __attribute__((target("avx2,fma,f16c"))) static
#define KV2_INL __attribute__((target("avx2,fma,f16c"), always_inline)) static inline

/* elements i..i+7 of a row as f32 (i a multiple of 8) */
KV2_INL __m256 ld8(const int t, const char *row, int i) {
    if (t == G4_KV_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)i)));
    if (t == G4_KV_Q4_0) {
        const char *b = row + (size_t)(i / G4_KV_Q8_BLOCK) * G4_KV_Q4_BYTES;
        const int o = i % G4_KV_Q8_BLOCK;
        __m128i x = _mm_loadl_epi64((const __m128i *)(b + 2 + (o & 15)));
        if (o >= 16) x = _mm_srli_epi16(x, 4);
        x = _mm_and_si128(x, _mm_set1_epi8(15));
        const __m256i w = _mm256_sub_epi32(_mm256_cvtepu8_epi32(x), _mm256_set1_epi32(8));
        return _mm256_mul_ps(_mm256_set1_ps(q8_scale(b)), _mm256_cvtepi32_ps(w));
    }
    const char *b = row + (size_t)(i / G4_KV_Q8_BLOCK) * G4_KV_Q8_BYTES;
    const __m128i x = _mm_loadl_epi64((const __m128i *)(b + 2 + i % G4_KV_Q8_BLOCK));
    return _mm256_mul_ps(_mm256_set1_ps(q8_scale(b)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x)));
}

KV2_INL float hsum8(__m256 s) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* R heads x C rows of scores; hd past a multiple of 8 done by ld1 */
KV2_INL void qk_tile8(const int t, const int R, const int C, float *s, int lds, const float *q, int hd,
                      const char *k, size_t ks) {
    __m256 a[4][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) a[r][c] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= hd; i += 8) {
        __m256 kv[2];
        _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) {
            kv[c] = ld8(t, k + (size_t)c * ks, i);
            PF_BYTES(k + (size_t)c * ks + g4_kv_row_bytes(t, (size_t)i), (size_t)C * ks);   /* next tile's rows */
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m256 qv = _mm256_loadu_ps(q + (size_t)r * hd + i);
            _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) a[r][c] = _mm256_fmadd_ps(qv, kv[c], a[r][c]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) {
            float x = hsum8(a[r][c]);
            for (int j = i; j < hd; j++) x += q[(size_t)r * hd + j] * ld1(t, k + (size_t)c * ks, j);
            s[(size_t)r * lds + c] = x;
        }
}

KV2_INL void qk_avx2_t(const int t, float *s, int lds, const float *q, int G, const void *kp, size_t ks, int nj,
                       int hd) {
    const char *k = kp;
    int h = 0;
    for (; h + 4 <= G; h += 4) {
        int j = 0;
        for (; j + 2 <= nj; j += 2) qk_tile8(t, 4, 2, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile8(t, 4, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
    for (; h < G; h++) {
        int j = 0;
        for (; j + 2 <= nj; j += 2) qk_tile8(t, 1, 2, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile8(t, 1, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
}

/* R heads x columns i0..i0+15 of acc in registers across nj rows */
KV2_INL void pv_tile8(const int t, const int R, float *acc, int hd, int i0, const float *p, int ldp, const char *v,
                      size_t vs, int nj) {
    __m256 a[4][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        a[r][0] = _mm256_loadu_ps(acc + (size_t)r * hd + i0);
        a[r][1] = _mm256_loadu_ps(acc + (size_t)r * hd + i0 + 8);
    }
    for (int j = 0; j < nj; j++) {
        const char *row = v + (size_t)j * vs;
        const __m256 v0 = ld8(t, row, i0), v1 = ld8(t, row, i0 + 8);
        PF_BYTES(row + g4_kv_row_bytes(t, (size_t)i0), (size_t)nj * vs);   /* next chunk's rows */
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m256 pb = _mm256_broadcast_ss(p + (size_t)r * ldp + j);
            a[r][0] = _mm256_fmadd_ps(pb, v0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(pb, v1, a[r][1]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(acc + (size_t)r * hd + i0, a[r][0]);
        _mm256_storeu_ps(acc + (size_t)r * hd + i0 + 8, a[r][1]);
    }
}

KV2_INL void pv_avx2_t(const int t, float *acc, const float *p, int ldp, int G, const void *vp, size_t vs, int nj,
                       int hd) {
    const char *v0 = vp;
    for (int j0 = 0; j0 < nj; j0 += PV_CHUNK) {
        const int jn = nj - j0 < PV_CHUNK ? nj - j0 : PV_CHUNK;
        const char *v = v0 + (size_t)j0 * vs;
        for (int h = 0; h < G; h += 4) {
            const int R = G - h >= 4 ? 4 : G - h;
            float *ah = acc + (size_t)h * hd;
            const float *ph = p + (size_t)h * ldp + j0;
            int i = 0;
            for (; i + 16 <= hd; i += 16) {
                if (R == 4) pv_tile8(t, 4, ah, hd, i, ph, ldp, v, vs, jn);
                else if (R == 3) pv_tile8(t, 3, ah, hd, i, ph, ldp, v, vs, jn);
                else if (R == 2) pv_tile8(t, 2, ah, hd, i, ph, ldp, v, vs, jn);
                else pv_tile8(t, 1, ah, hd, i, ph, ldp, v, vs, jn);
            }
            for (int r = 0; r < R; r++)
                for (int j = 0; j < jn; j++)
                    for (int c = i; c < hd; c++)
                        ah[(size_t)r * hd + c] += ph[(size_t)r * ldp + j] * ld1(t, v + (size_t)j * vs, c);
        }
    }
}

#define AVX2_PAIR(T, name)                                                                                     \
    KV2_FN void qk_avx2_##name(float *s, int lds, const float *q, int G, const void *k, size_t ks, int nj,    \
                               int hd) { qk_avx2_t(T, s, lds, q, G, k, ks, nj, hd); }                        \
    KV2_FN void pv_avx2_##name(float *acc, const float *p, int ldp, int G, const void *v, size_t vs, int nj,  \
                               int hd) { pv_avx2_t(T, acc, p, ldp, G, v, vs, nj, hd); }
AVX2_PAIR(G4_KV_F16, f16)
AVX2_PAIR(G4_KV_Q8_0, q8)
AVX2_PAIR(G4_KV_Q4_0, q4)
F32_PAIR(G4_CPU_AVX2, avx2)

/* ---- AVX-512: 16 lanes; rows whose hd is not a multiple of 16 go to AVX2 ---- */
#define KV5_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) static
#define KV5_INL __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"), always_inline)) static inline

KV5_INL __m512 ld16(const int t, const char *row, int i) {
    if (t == G4_KV_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * (size_t)i)));
    if (t == G4_KV_Q4_0) {   /* i % 32 is 0 (low nibbles) or 16 (high) */
        const char *b = row + (size_t)(i / G4_KV_Q8_BLOCK) * G4_KV_Q4_BYTES;
        __m128i x = _mm_loadu_si128((const __m128i *)(b + 2));
        if (i % G4_KV_Q8_BLOCK) x = _mm_srli_epi16(x, 4);
        x = _mm_and_si128(x, _mm_set1_epi8(15));
        const __m512i w = _mm512_sub_epi32(_mm512_cvtepu8_epi32(x), _mm512_set1_epi32(8));
        return _mm512_mul_ps(_mm512_set1_ps(q8_scale(b)), _mm512_cvtepi32_ps(w));
    }
    const char *b = row + (size_t)(i / G4_KV_Q8_BLOCK) * G4_KV_Q8_BYTES;
    const __m128i x = _mm_loadu_si128((const __m128i *)(b + 2 + i % G4_KV_Q8_BLOCK));
    return _mm512_mul_ps(_mm512_set1_ps(q8_scale(b)), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(x)));
}

KV5_INL void qk_tile16(const int t, const int R, const int C, float *s, int lds, const float *q, int hd,
                       const char *k, size_t ks) {
    __m512 a[4][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) a[r][c] = _mm512_setzero_ps();
    for (int i = 0; i < hd; i += 16) {
        __m512 kv[4];
        _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) {
            kv[c] = ld16(t, k + (size_t)c * ks, i);
            PF_BYTES(k + (size_t)c * ks + g4_kv_row_bytes(t, (size_t)i), (size_t)C * ks);
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m512 qv = _mm512_loadu_ps(q + (size_t)r * hd + i);
            _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) a[r][c] = _mm512_fmadd_ps(qv, kv[c], a[r][c]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) s[(size_t)r * lds + c] = _mm512_reduce_add_ps(a[r][c]);
}

KV5_INL void qk_avx512_t(const int t, float *s, int lds, const float *q, int G, const void *kp, size_t ks, int nj,
                         int hd) {
    const char *k = kp;
    int h = 0;
    for (; h + 4 <= G; h += 4) {
        int j = 0;
        for (; j + 4 <= nj; j += 4) qk_tile16(t, 4, 4, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile16(t, 4, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
    for (; h < G; h++) {
        int j = 0;
        for (; j + 4 <= nj; j += 4) qk_tile16(t, 1, 4, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile16(t, 1, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
}

/* R heads x S strips of 16 columns from i0 */
KV5_INL void pv_tile16(const int t, const int R, const int S, float *acc, int hd, int i0, const float *p, int ldp,
                       const char *v, size_t vs, int nj) {
    __m512 a[8][2];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2") for (int c = 0; c < S; c++) a[r][c] = _mm512_loadu_ps(acc + (size_t)r * hd + i0 + 16 * c);
    for (int j = 0; j < nj; j++) {
        const char *row = v + (size_t)j * vs;
        __m512 x[2];
        _Pragma("GCC unroll 2") for (int c = 0; c < S; c++) x[c] = ld16(t, row, i0 + 16 * c);
        PF_BYTES(row + g4_kv_row_bytes(t, (size_t)i0), (size_t)nj * vs);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            const __m512 pb = _mm512_set1_ps(p[(size_t)r * ldp + j]);
            _Pragma("GCC unroll 2") for (int c = 0; c < S; c++) a[r][c] = _mm512_fmadd_ps(pb, x[c], a[r][c]);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2") for (int c = 0; c < S; c++) _mm512_storeu_ps(acc + (size_t)r * hd + i0 + 16 * c, a[r][c]);
}

#define PV16_R(S)                                                                                             \
    switch (R) {                                                                                               \
    case 8: pv_tile16(t, 8, S, ah, hd, i, ph, ldp, v, vs, jn); break;                                          \
    case 7: pv_tile16(t, 7, S, ah, hd, i, ph, ldp, v, vs, jn); break;                                          \
    case 6: pv_tile16(t, 6, S, ah, hd, i, ph, ldp, v, vs, jn); break;                                          \
    case 5: pv_tile16(t, 5, S, ah, hd, i, ph, ldp, v, vs, jn); break;                                          \
    case 4: pv_tile16(t, 4, S, ah, hd, i, ph, ldp, v, vs, jn); break;                                          \
    case 3: pv_tile16(t, 3, S, ah, hd, i, ph, ldp, v, vs, jn); break;                                          \
    case 2: pv_tile16(t, 2, S, ah, hd, i, ph, ldp, v, vs, jn); break;                                          \
    default: pv_tile16(t, 1, S, ah, hd, i, ph, ldp, v, vs, jn); break;                                         \
    }

KV5_INL void pv_avx512_t(const int t, float *acc, const float *p, int ldp, int G, const void *vp, size_t vs, int nj,
                         int hd) {
    const char *v0 = vp;
    for (int j0 = 0; j0 < nj; j0 += PV_CHUNK) {
        const int jn = nj - j0 < PV_CHUNK ? nj - j0 : PV_CHUNK;
        const char *v = v0 + (size_t)j0 * vs;
        for (int h = 0; h < G; h += 8) {
            const int R = G - h >= 8 ? 8 : G - h;
            float *ah = acc + (size_t)h * hd;
            const float *ph = p + (size_t)h * ldp + j0;
            int i = 0;
            for (; i + 32 <= hd; i += 32) PV16_R(2)
            for (; i < hd; i += 16) PV16_R(1)
        }
    }
}

#define AVX512_PAIR(T, name)                                                                                   \
    KV5_FN void qk_avx512_##name(float *s, int lds, const float *q, int G, const void *k, size_t ks, int nj,  \
                                 int hd) {                                                                     \
        if (hd % 16) qk_avx2_##name(s, lds, q, G, k, ks, nj, hd);                                              \
        else qk_avx512_t(T, s, lds, q, G, k, ks, nj, hd);                                                      \
    }                                                                                                          \
    KV5_FN void pv_avx512_##name(float *acc, const float *p, int ldp, int G, const void *v, size_t vs, int nj,\
                                 int hd) {                                                                     \
        if (hd % 16) pv_avx2_##name(acc, p, ldp, G, v, vs, nj, hd);                                            \
        else pv_avx512_t(T, acc, p, ldp, G, v, vs, nj, hd);                                                    \
    }
AVX512_PAIR(G4_KV_F16, f16)
AVX512_PAIR(G4_KV_Q8_0, q8)
AVX512_PAIR(G4_KV_Q4_0, q4)
F32_PAIR(G4_CPU_AVX512, avx512)

static const g4_kv_ops AVX2[G4_KV_NTYPES] = {
    { qk_f32_avx2, pv_f32_avx2 }, { qk_avx2_f16, pv_avx2_f16 }, { qk_avx2_q8, pv_avx2_q8 }, { qk_avx2_q4, pv_avx2_q4 } };
static const g4_kv_ops AVX512[G4_KV_NTYPES] = {
    { qk_f32_avx512, pv_f32_avx512 }, { qk_avx512_f16, pv_avx512_f16 }, { qk_avx512_q8, pv_avx512_q8 },
    { qk_avx512_q4, pv_avx512_q4 } };


/* ---- prompt tiles (attention.c's tiled path; vec_kv.h) ---- */
#include "tensor/exp_x86.h"

/* Transpose 16 x 16 floats in registers: four rounds, each swapping the
 * off-diagonal s x s blocks of every 2s x 2s block (s = 8, 4, 2, 1). */
KV5_INL void tr16(__m512 r[16]) {
    _Pragma("GCC unroll 4") for (int s = 8; s >= 1; s /= 2) {
        int lo[16], hi[16];
        _Pragma("GCC unroll 16") for (int l = 0; l < 16; l++) {
            lo[l] = (l & s) ? 16 + l - s : l;
            hi[l] = (l & s) ? 16 + l : l + s;
        }
        const __m512i il = _mm512_loadu_si512(lo), ih = _mm512_loadu_si512(hi);
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) {
            if (i & s) continue;
            const __m512 a = r[i], b = r[i + s];
            r[i] = _mm512_permutex2var_ps(a, il, b);
            r[i + s] = _mm512_permutex2var_ps(a, ih, b);
        }
    }
}

KV5_FN void tile_load_avx512(const char *const *krow, const char *const *vrow, int hd, float *kt, float *vf) {
    for (int d0 = 0; d0 < hd; d0 += 16) {
        __m512 r[16];
        _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++) {
            if (!krow[j]) {
                r[j] = _mm512_setzero_ps();
                _mm512_storeu_ps(vf + (size_t)j * hd + d0, r[j]);
                continue;
            }
            r[j] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(krow[j] + 2 * (size_t)d0)));
            _mm512_storeu_ps(vf + (size_t)j * hd + d0,
                             _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vrow[j] + 2 * (size_t)d0))));
        }
        tr16(r);
        _Pragma("GCC unroll 16") for (int d = 0; d < 16; d++) _mm512_storeu_ps(kt + (size_t)(d0 + d) * 16, r[d]);
    }
}

/* scores of R <= 8 query rows (q + r * hd) against the block: 16 lanes each */
KV5_INL void tile_qk(const int R, const float *q, int hd, const float *kt, __m512 *s) {
    __m512 a[8];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        const __m512 k = _mm512_loadu_ps(kt + (size_t)d * 16);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
            a[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)r * hd + d]), k, a[r]);
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) s[r] = a[r];
}

/* acc rows (acc + r * hd) += p rows (p + r * 16) . vf, R <= 8 rows */
KV5_INL void tile_pv(const int R, float *acc, int hd, const float *p, const float *vf) {
    for (int i = 0; i < hd; i += 32) {
        __m512 a[8][2];
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            a[r][0] = _mm512_loadu_ps(acc + (size_t)r * hd + i);
            a[r][1] = _mm512_loadu_ps(acc + (size_t)r * hd + i + 16);
        }
        for (int j = 0; j < 16; j++) {
            const __m512 v0 = _mm512_loadu_ps(vf + (size_t)j * hd + i), v1 = _mm512_loadu_ps(vf + (size_t)j * hd + i + 16);
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
                const __m512 pb = _mm512_set1_ps(p[(size_t)r * 16 + j]);
                a[r][0] = _mm512_fmadd_ps(pb, v0, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(pb, v1, a[r][1]);
            }
        }
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            _mm512_storeu_ps(acc + (size_t)r * hd + i, a[r][0]);
            _mm512_storeu_ps(acc + (size_t)r * hd + i + 16, a[r][1]);
        }
    }
}

/* one token's R <= 8 heads: scores, online softmax, P V */
KV5_INL void tile_rows(const int R, const float *q, float *acc, int hd, __mmask16 m, const float *kt,
                       const float *vf, float *mx, float *sum, float *p) {
    __m512 s[8];
    tile_qk(R, q, hd, kt, s);
    const __m512 ninf = _mm512_set1_ps(-INFINITY), lo = _mm512_set1_ps(-87.0f);
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        const __m512 x = _mm512_mask_mov_ps(ninf, m, s[r]);
        const float bm = _mm512_reduce_max_ps(x);
        if (bm > mx[r]) {
            const float c = expf(mx[r] - bm);   /* 0 on the first block */
            sum[r] *= c;
            const __m512 cv = _mm512_set1_ps(c);
            for (int i = 0; i < hd; i += 16)
                _mm512_storeu_ps(acc + (size_t)r * hd + i, _mm512_mul_ps(cv, _mm512_loadu_ps(acc + (size_t)r * hd + i)));
            mx[r] = bm;
        }
        const __m512 e = _mm512_maskz_mov_ps(m, g4_exp16(_mm512_max_ps(_mm512_sub_ps(x, _mm512_set1_ps(mx[r])), lo)));
        sum[r] += _mm512_reduce_add_ps(e);
        _mm512_storeu_ps(p + (size_t)r * 16, e);
    }
    tile_pv(R, acc, hd, p, vf);
}

KV5_FN void tile_step_avx512(const float *q, size_t ldq, float *acc, size_t lda, int nt, int G, int hd,
                             const uint16_t *mask, const float *kt, const float *vf, float *mx, float *sum, float *p) {
    for (int i = 0; i < nt; i++) {
        if (!mask[i]) continue;
        for (int h = 0; h < G; h += 8) {
            const int R = G - h < 8 ? G - h : 8, o = i * G + h;
            const float *qi = q + (size_t)i * ldq + (size_t)h * hd;
            float *ai = acc + (size_t)i * lda + (size_t)h * hd;
            switch (R) {
            case 8: tile_rows(8, qi, ai, hd, mask[i], kt, vf, mx + o, sum + o, p); break;
            case 4: tile_rows(4, qi, ai, hd, mask[i], kt, vf, mx + o, sum + o, p); break;
            case 2: tile_rows(2, qi, ai, hd, mask[i], kt, vf, mx + o, sum + o, p); break;
            case 1: tile_rows(1, qi, ai, hd, mask[i], kt, vf, mx + o, sum + o, p); break;
            default:
                for (int r = 0; r < R; r++)
                    tile_rows(1, qi + (size_t)r * hd, ai + (size_t)r * hd, hd, mask[i], kt, vf, mx + o + r,
                              sum + o + r, p);
            }
        }
    }
}

#elif defined(__aarch64__)
/* ---- NEON: 8 elements as two 4-lane halves (f32 rows too: vec.c has no
 * NEON kernels) ---- */
static inline void ld8n(const int t, const char *row, int i, float32x4_t *lo, float32x4_t *hi) {
    if (t == G4_KV_F32) {
        float f[8];
        memcpy(f, row + 4 * (size_t)i, sizeof f);   /* rows are 4-byte aligned; memcpy keeps C honest */
        *lo = vld1q_f32(f);
        *hi = vld1q_f32(f + 4);
    } else if (t == G4_KV_F16) {
        uint16_t u[8];
        memcpy(u, row + 2 * (size_t)i, sizeof u);
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(u));
        *lo = vcvt_f32_f16(vget_low_f16(h));
        *hi = vcvt_high_f32_f16(h);
    } else if (t == G4_KV_Q4_0) {
        const char *b = row + (size_t)(i / G4_KV_Q8_BLOCK) * G4_KV_Q4_BYTES;
        const int o = i % G4_KV_Q8_BLOCK;
        uint8x8_t x = vld1_u8((const uint8_t *)(b + 2 + (o & 15)));
        x = o >= 16 ? vshr_n_u8(x, 4) : vand_u8(x, vdup_n_u8(15));
        const int16x8_t w = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(x)), vdupq_n_s16(8));
        const float32x4_t d = vdupq_n_f32(q8_scale(b));
        *lo = vmulq_f32(d, vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))));
        *hi = vmulq_f32(d, vcvtq_f32_s32(vmovl_high_s16(w)));
    } else {
        const char *b = row + (size_t)(i / G4_KV_Q8_BLOCK) * G4_KV_Q8_BYTES;
        const int16x8_t w = vmovl_s8(vld1_s8((const int8_t *)(b + 2 + i % G4_KV_Q8_BLOCK)));
        const float32x4_t d = vdupq_n_f32(q8_scale(b));
        *lo = vmulq_f32(d, vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))));
        *hi = vmulq_f32(d, vcvtq_f32_s32(vmovl_high_s16(w)));
    }
}

static inline __attribute__((always_inline)) void qk_tile_n(const int t, const int R, const int C, float *s, int lds,
                                                            const float *q, int hd, const char *k, size_t ks) {
    float32x4_t a[4][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) a[r][c] = vdupq_n_f32(0);
    int i = 0;
    for (; i + 8 <= hd; i += 8) {
        float32x4_t lo[2], hi[2];
        for (int c = 0; c < C; c++) ld8n(t, k + (size_t)c * ks, i, &lo[c], &hi[c]);
        for (int r = 0; r < R; r++) {
            const float32x4_t q0 = vld1q_f32(q + (size_t)r * hd + i), q1 = vld1q_f32(q + (size_t)r * hd + i + 4);
            for (int c = 0; c < C; c++) a[r][c] = vfmaq_f32(vfmaq_f32(a[r][c], q0, lo[c]), q1, hi[c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float x = vaddvq_f32(a[r][c]);
            for (int j = i; j < hd; j++) x += q[(size_t)r * hd + j] * ld1(t, k + (size_t)c * ks, j);
            s[(size_t)r * lds + c] = x;
        }
}

static inline __attribute__((always_inline)) void qk_neon_t(const int t, float *s, int lds, const float *q, int G,
                                                            const void *kp, size_t ks, int nj, int hd) {
    const char *k = kp;
    int h = 0;
    for (; h + 4 <= G; h += 4) {
        int j = 0;
        for (; j + 2 <= nj; j += 2) qk_tile_n(t, 4, 2, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile_n(t, 4, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
    for (; h < G; h++) {
        int j = 0;
        for (; j + 2 <= nj; j += 2) qk_tile_n(t, 1, 2, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile_n(t, 1, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
}

/* R heads x columns i0..i0+7 */
static inline __attribute__((always_inline)) void pv_tile_n(const int t, const int R, float *acc, int hd, int i0,
                                                            const float *p, int ldp, const char *v, size_t vs, int nj) {
    float32x4_t a[4][2];
    for (int r = 0; r < R; r++) {
        a[r][0] = vld1q_f32(acc + (size_t)r * hd + i0);
        a[r][1] = vld1q_f32(acc + (size_t)r * hd + i0 + 4);
    }
    for (int j = 0; j < nj; j++) {
        float32x4_t lo, hi;
        ld8n(t, v + (size_t)j * vs, i0, &lo, &hi);
        for (int r = 0; r < R; r++) {
            const float w = p[(size_t)r * ldp + j];
            a[r][0] = vfmaq_n_f32(a[r][0], lo, w);
            a[r][1] = vfmaq_n_f32(a[r][1], hi, w);
        }
    }
    for (int r = 0; r < R; r++) {
        vst1q_f32(acc + (size_t)r * hd + i0, a[r][0]);
        vst1q_f32(acc + (size_t)r * hd + i0 + 4, a[r][1]);
    }
}

static inline __attribute__((always_inline)) void pv_neon_t(const int t, float *acc, const float *p, int ldp, int G,
                                                            const void *vp, size_t vs, int nj, int hd) {
    const char *v0 = vp;
    for (int j0 = 0; j0 < nj; j0 += PV_CHUNK) {
        const int jn = nj - j0 < PV_CHUNK ? nj - j0 : PV_CHUNK;
        const char *v = v0 + (size_t)j0 * vs;
        for (int h = 0; h < G; h += 4) {
            const int R = G - h >= 4 ? 4 : G - h;
            float *ah = acc + (size_t)h * hd;
            const float *ph = p + (size_t)h * ldp + j0;
            int i = 0;
            for (; i + 8 <= hd; i += 8) {
                if (R == 4) pv_tile_n(t, 4, ah, hd, i, ph, ldp, v, vs, jn);
                else if (R == 3) pv_tile_n(t, 3, ah, hd, i, ph, ldp, v, vs, jn);
                else if (R == 2) pv_tile_n(t, 2, ah, hd, i, ph, ldp, v, vs, jn);
                else pv_tile_n(t, 1, ah, hd, i, ph, ldp, v, vs, jn);
            }
            for (int r = 0; r < R; r++)
                for (int j = 0; j < jn; j++)
                    for (int c = i; c < hd; c++)
                        ah[(size_t)r * hd + c] += ph[(size_t)r * ldp + j] * ld1(t, v + (size_t)j * vs, c);
        }
    }
}

#define NEON_PAIR(T, name)                                                                                     \
    static void qk_neon_##name(float *s, int lds, const float *q, int G, const void *k, size_t ks, int nj,    \
                               int hd) { qk_neon_t(T, s, lds, q, G, k, ks, nj, hd); }                        \
    static void pv_neon_##name(float *acc, const float *p, int ldp, int G, const void *v, size_t vs, int nj,  \
                               int hd) { pv_neon_t(T, acc, p, ldp, G, v, vs, nj, hd); }
NEON_PAIR(G4_KV_F32, f32)
NEON_PAIR(G4_KV_F16, f16)
NEON_PAIR(G4_KV_Q8_0, q8)
NEON_PAIR(G4_KV_Q4_0, q4)

static const g4_kv_ops NEON[G4_KV_NTYPES] = {
    { qk_neon_f32, pv_neon_f32 }, { qk_neon_f16, pv_neon_f16 }, { qk_neon_q8, pv_neon_q8 }, { qk_neon_q4, pv_neon_q4 } };
#endif

const g4_kv_ops *g4_kv_ops_level(int t, int level) {
    if (t < 0 || t >= G4_KV_NTYPES) t = G4_KV_F32;
#if defined(__x86_64__)
    if (level == G4_CPU_AVX512 && g4_cpu_level_supported(level)) return &AVX512[t];
    if ((level == G4_CPU_AVX2 || level == G4_CPU_AVX512) && g4_cpu_level_supported(G4_CPU_AVX2)) return &AVX2[t];
#elif defined(__aarch64__)
    if ((level == G4_CPU_NEON || level == G4_CPU_DOTPROD) && g4_cpu_level_supported(G4_CPU_NEON)) return &NEON[t];
#endif
    return &REF[t];
}

const g4_kv_ops *g4_kv_ops_get(int t) { return g4_kv_ops_level(t, g4_cpu_level()); }

/* ---- prompt tiles: dispatch ---- */
int g4_kv_tile_ok(int t, int hd) {
#if defined(__x86_64__)
    return t == G4_KV_F16 && hd % 32 == 0 && g4_cpu_level() == G4_CPU_AVX512;
#else
    (void)t; (void)hd;
    return 0;
#endif
}

void g4_kv_tile_load(const char *const *krow, const char *const *vrow, int hd, float *kt, float *vf) {
#if defined(__x86_64__)
    tile_load_avx512(krow, vrow, hd, kt, vf);
#else
    (void)krow; (void)vrow; (void)hd; (void)kt; (void)vf;
#endif
}

void g4_kv_tile_step(const float *q, size_t ldq, float *acc, size_t lda, int nt, int G, int hd, const uint16_t *mask,
                     const float *kt, const float *vf, float *mx, float *sum, float *p) {
#if defined(__x86_64__)
    tile_step_avx512(q, ldq, acc, lda, nt, G, hd, mask, kt, vf, mx, sum, p);
#else
    (void)q; (void)ldq; (void)acc; (void)lda; (void)nt; (void)G; (void)hd; (void)mask; (void)kt; (void)vf;
    (void)mx; (void)sum; (void)p;
#endif
}
