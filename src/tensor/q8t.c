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

void g4_q8t_pack(const float *src, size_t lds, int nc, float scale, uint8_t *dst, size_t dst_stride) {
#if defined(__x86_64__)
    if (g4_cpu_level() == G4_CPU_AVX512 && nc % 16 == 0) { pack_512(src, lds, nc, scale, dst, dst_stride); return; }
#endif
    for (int c = 0; c < nc; c++) pack_col_ref(src + c, lds, scale, dst + (size_t)c * dst_stride);
}
