/* Transposed Q8_0 blocks (q8t.h). */
#include "tensor/q8t.h"

#include <math.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/fp16.h"
#include "tensor/types.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

bool g4_q8t_ok(void) {
#if defined(__x86_64__)
    return g4_cpu_level() == G4_CPU_AVX512 && g4_type_info(G4_Q8_0)->gemm_panel != NULL;
#else
    return false;
#endif
}

/* one column's block, scalar: the same arithmetic as the vector lanes
 * (f32 multiply by 127 / amax, nearest even, clamp) */
static void pack_col_ref(const float *src, size_t lds, float scale, uint8_t *blk) {
    float amax = 0;
    for (int r = 0; r < 32; r++) {
        float a = fabsf(src[(size_t)r * lds]);
        amax = a > amax ? a : amax;
    }
    amax *= scale;
    float d = amax / 127.0f;
    d = d < 65504.0f ? d : 65504.0f;
    const float id = amax > 0 ? (127.0f / amax) * scale : 0.0f;
    uint16_t h = g4_fp32_to_fp16(d);
    memcpy(blk, &h, 2);
    for (int r = 0; r < 32; r++) {
        float q = nearbyintf(src[(size_t)r * lds] * id);
        q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
        blk[2 + r] = (uint8_t)(int8_t)(q == q ? q : 0.0f);
    }
}

static float row_up(float amax, float *inv) {
    int e = 0;
    if (!(amax > 0 && isfinite(amax))) { *inv = 1.0f; return 1.0f; }
    (void)frexpf(amax, &e);   /* amax = f 2^e, f in [0.5, 1) */
    *inv = ldexpf(1.0f, e - 6);
    return ldexpf(1.0f, 6 - e);
}

static void quant_block_ref(const float *x, float up, uint8_t *blk) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fabsf(x[i] * up) > amax ? fabsf(x[i] * up) : amax;
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    uint16_t h = g4_fp32_to_fp16(amax / 127.0f);
    memcpy(blk, &h, 2);
    for (int i = 0; i < 32; i++) {
        float q = nearbyintf(x[i] * up * id);
        q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
        blk[2 + i] = (uint8_t)(int8_t)(q == q ? q : 0.0f);
    }
}

#if defined(__x86_64__)
#define QT __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))

/* 16 columns at a time: the max over the 32 rows, then per 4 rows the
 * codes of 16 columns packed as 16 dwords (rows r..r+3 of column c in dword
 * c, the block's byte order) and scattered to the 16 blocks */
QT static void pack_512(const float *src, size_t lds, int nc, float scale, uint8_t *dst, size_t ds) {
    const __m512 sc = _mm512_set1_ps(scale), c127 = _mm512_set1_ps(127.0f), dmax = _mm512_set1_ps(65504.0f);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), ff = _mm512_set1_epi32(0xff);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)ds));
    for (int c = 0; c < nc; c += 16) {
        const float *s = src + c;
        __m512 amax = _mm512_setzero_ps();
        for (int r = 0; r < 32; r++) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(s + (size_t)r * lds)));
        amax = _mm512_mul_ps(amax, sc);
        const __m512 d = _mm512_min_ps(_mm512_div_ps(amax, c127), dmax);
        const __mmask16 nz = _mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_GT_OQ);
        const __m512 id = _mm512_maskz_mul_ps(nz, _mm512_div_ps(c127, amax), sc);
        uint16_t dh[16];
        _mm256_storeu_si256((__m256i *)(void *)dh, _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
        uint8_t *b = dst + (size_t)c * ds;
        for (int j = 0; j < 16; j++) memcpy(b + (size_t)j * ds, &dh[j], 2);
        for (int r = 0; r < 32; r += 4) {
            __m512i w = _mm512_setzero_si512();
            for (int k = 0; k < 4; k++) {
                /* cvtps rounds to nearest even; NaN becomes INT_MIN, then -127 */
                __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(s + (size_t)(r + k) * lds), id));
                q = _mm512_and_si512(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), ff);
                w = _mm512_or_si512(w, _mm512_slli_epi32(q, 8 * k));
            }
            _mm512_i32scatter_epi32(b + 2 + r, idx, w, 1);
        }
    }
}
#endif

#if defined(__x86_64__)
QT static float quant_row_512(const float *x, int n, uint8_t *dst) {
    __m512 mx = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    float inv;
    const __m512 up = _mm512_set1_ps(row_up(_mm512_reduce_max_ps(mx), &inv));
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int b = 0; b < n / 32; b++) {
        const __m512 v0 = _mm512_mul_ps(_mm512_loadu_ps(x + 32 * b), up),
                     v1 = _mm512_mul_ps(_mm512_loadu_ps(x + 32 * b + 16), up);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        uint8_t *blk = dst + (size_t)b * 34;
        uint16_t h = g4_fp32_to_fp16(amax / 127.0f);
        memcpy(blk, &h, 2);
        const __m512i q0 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v0, id)), lo), hi),
                      q1 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v1, id)), lo), hi);
        _mm_storeu_si128((__m128i *)(void *)(blk + 2), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(void *)(blk + 18), _mm512_cvtepi32_epi8(q1));
    }
    return inv;
}

QT static void add_rows_512(float *dx, size_t ldx, const float *y, size_t ldy, int T, int nr, const float *st,
                            float m) {
    const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1),
                    m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    for (int t = 0; t < T; t++) {
        const __m512 s = _mm512_set1_ps(st[t] * m);
        float *d = dx + (size_t)t * ldx;
        const float *r = y + (size_t)t * ldy;
        _mm512_mask_storeu_ps(d, m0, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, r), s, _mm512_maskz_loadu_ps(m0, d)));
        _mm512_mask_storeu_ps(d + 16, m1,
                              _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, r + 16), s, _mm512_maskz_loadu_ps(m1, d + 16)));
    }
}
#endif

float g4_q8t_quant_row(const float *x, int n, uint8_t *dst) {
#if defined(__x86_64__)
    if (g4_cpu_level() == G4_CPU_AVX512) return quant_row_512(x, n, dst);
#endif
    float amax = 0, inv;
    for (int i = 0; i < n; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    const float up = row_up(amax, &inv);
    for (int b = 0; b < n / 32; b++) quant_block_ref(x + 32 * b, up, dst + (size_t)b * 34);
    return inv;
}

void g4_q8t_add_rows(float *dx, size_t ldx, const float *y, size_t ldy, int T, int nr, const float *st, float m) {
#if defined(__x86_64__)
    if (g4_cpu_level() == G4_CPU_AVX512) { add_rows_512(dx, ldx, y, ldy, T, nr, st, m); return; }
#endif
    /* the same fused multiply-add as the vector lanes */
    for (int t = 0; t < T; t++)
        for (int r = 0; r < nr; r++) dx[(size_t)t * ldx + r] = fmaf(y[(size_t)t * ldy + r], st[t] * m, dx[(size_t)t * ldx + r]);
}

void g4_q8t_pack(const float *src, size_t lds, int nc, float scale, uint8_t *dst, size_t dst_stride) {
#if defined(__x86_64__)
    if (g4_cpu_level() == G4_CPU_AVX512 && nc % 16 == 0) { pack_512(src, lds, nc, scale, dst, dst_stride); return; }
#endif
    for (int c = 0; c < nc; c++) pack_col_ref(src + c, lds, scale, dst + (size_t)c * dst_stride);
}
