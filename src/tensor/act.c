#include "tensor/act.h"

#include <pthread.h>
#include <stdint.h>

#include "tensor/cpu.h"
#include "tensor/types.h"

/* +2: the 8-lane path gathers 32-bit words at 16-bit offsets */
uint16_t g4_gelu_f16[(1 << 16) + 2];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

/* Filled once per process, read-only afterwards. The f32 formula is ggml's
 * arrangement (x * (1 + a*x*x)), which differs from g4_gelu's in the last bit. */
static void gelu_init(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) {
        float x = g4_fp16_to_fp32((uint16_t)i);
        float y = 0.5f * x * (1.0f + tanhf(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
        g4_gelu_f16[i] = g4_fp32_to_fp16(y);
    }
}

void g4_act_init(void) { pthread_once(&gelu_once, gelu_init); }

#if defined(__x86_64__)
#include <immintrin.h>

/* 8 lanes at a time: F16C rounds to fp16 (nearest even, like the scalar
 * path), the table is gathered, F16C widens the result. */
__attribute__((target("avx2,f16c,fma"))) static void geglu_table_f16c(float *out, const float *g, const float *u,
                                                                      int64_t n) {
    int64_t i = 0;
    const __m256 hi = _mm256_set1_ps(10.0f), lo = _mm256_set1_ps(-10.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i idx = _mm256_cvtepu16_epi32(h);
        __m256i v = _mm256_i32gather_epi32((const int *)g4_gelu_f16, idx, 2);
        v = _mm256_and_si256(v, _mm256_set1_epi32(0xffff));
        /* 8 x u32 -> 8 x u16: pack within lanes, then gather the two halves */
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(v, v), 0x08);
        __m256 y = _mm256_cvtph_ps(_mm256_castsi256_si128(p));
        y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
        y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LE_OQ));
        if (u) y = _mm256_mul_ps(y, _mm256_loadu_ps(u + i));
        _mm256_storeu_ps(out + i, y);
    }
    for (; i < n; i++) out[i] = g4_gelu_table(g[i]) * (u ? u[i] : 1.0f);
}

/* tanh(z) = sign(z) (1 - e) / (1 + e), e = exp(-2|z|) in [0, 1]: no
 * overflow, and the absolute error stays ~1e-7 (what matters for logits;
 * relative error grows only where tanh is tiny). exp: 2^k * P(r), r = x - k
 * ln2 in [-ln2/2, ln2/2], P the degree-7 Taylor polynomial (remainder
 * < 1e-8); x >= -87 keeps 2^k a normal float (e below that is ~1e-38, and
 * the result 1 either way). */
/* Returns how many leading elements it did (whole vectors). */
__attribute__((target("avx2,fma"))) static int64_t softcap_avx2(float *y, int64_t n, float cap) {
    const __m256 ic = _mm256_set1_ps(1.0f / cap), vc = _mm256_set1_ps(cap), one = _mm256_set1_ps(1.0f);
    const __m256 sgn = _mm256_set1_ps(-0.0f), lo = _mm256_set1_ps(-87.0f);
    const __m256 l2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2h = _mm256_set1_ps(0.693359375f), ln2l = _mm256_set1_ps(-2.12194440e-4f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(y + i);
        const __m256 z = _mm256_mul_ps(v, ic);
        const __m256 s = _mm256_and_ps(z, sgn);
        __m256 x = _mm256_max_ps(_mm256_mul_ps(_mm256_andnot_ps(sgn, z), _mm256_set1_ps(-2.0f)), lo);
        const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, l2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        x = _mm256_fnmadd_ps(k, ln2h, x);
        x = _mm256_fnmadd_ps(k, ln2l, x);
        __m256 p = _mm256_set1_ps(1.0f / 5040);
        p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 720));
        p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 120));
        p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 24));
        p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 6));
        p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(0.5f));
        p = _mm256_fmadd_ps(p, x, one);
        p = _mm256_fmadd_ps(p, x, one);
        const __m256i e2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
        const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(e2));
        __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
        t = _mm256_mul_ps(_mm256_or_ps(t, s), vc);
        t = _mm256_blendv_ps(t, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)); /* NaN in, NaN out */
        _mm256_storeu_ps(y + i, t);
    }
    return i;
}
#endif

void g4_softcap(float *y, int64_t n, float cap, int exact) {
    int64_t i = 0;
#if defined(__x86_64__)
    const g4_cpu_features *cf = g4_cpu_features_get();
    if (!exact && cf->avx2 && cf->fma) i = softcap_avx2(y, n, cap);
#endif
    (void)exact;
    for (; i < n; i++) y[i] = cap * tanhf(y[i] * (1.0f / cap)); /* ggml: scale, tanh, scale */
}

void g4_geglu(float *out, const float *g, const float *u, int64_t n, int exact) {
    if (exact) {
        for (int64_t i = 0; i < n; i++) out[i] = g4_gelu(g[i]) * (u ? u[i] : 1.0f);
        return;
    }
#if defined(__x86_64__)
    const g4_cpu_features *cf = g4_cpu_features_get();
    if (cf->avx2 && cf->f16c && cf->fma) {
        geglu_table_f16c(out, g, u, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) out[i] = g4_gelu_table(g[i]) * (u ? u[i] : 1.0f);
}
