#include "tensor/act.h"

#include <math.h>
#include <string.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/exp_x86.h"
#include "tensor/types.h"

uint16_t g4_gelu_f16[1 << 16];
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

/* AVX2 + FMA + F16C, unless GEMMA4C_CPU asks for the reference code */
static bool use_avx2(void) { return g4_cpu_level() == G4_CPU_AVX2 || g4_cpu_level() == G4_CPU_AVX512; }

/* The table's function without the table: input rounded to fp16, GELU as
 * x * sigmoid(2z) = x / (1 + e^-2z) (no cancellation for negative x, where
 * the tanh form loses its digits), output rounded to fp16, |x| >= 10 as in
 * the table. Gathering 8 lanes from the 128 KB table missed L1 on every
 * lane: ~17 us per 6,144 GELUs of a decode step, serial on the main
 * thread; this is ~6x faster. It differs from the table by at most an fp16
 * ulp, and only where the table's own tanhf rounding decided the last bit
 * (tested on every fp16 input). */
__attribute__((target("avx2,f16c,fma"))) static void geglu_f16c(float *out, const float *g, const float *u,
                                                                int64_t n) {
    int64_t i = 0;
    const __m256 hi = _mm256_set1_ps(10.0f), lo = _mm256_set1_ps(-10.0f), one = _mm256_set1_ps(1.0f);
    const __m256 c2 = _mm256_set1_ps(-2.0f * 0.79788456080286535587989211986876f), a = _mm256_set1_ps(0.044715f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 xr = _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256 t = _mm256_mul_ps(_mm256_mul_ps(c2, xr), _mm256_fmadd_ps(_mm256_mul_ps(a, xr), xr, one));
        t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
        __m256 y = _mm256_div_ps(xr, _mm256_add_ps(one, g4_exp8(t)));
        y = _mm256_cvtph_ps(_mm256_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
        y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LE_OQ));
        if (u) y = _mm256_mul_ps(y, _mm256_loadu_ps(u + i));
        _mm256_storeu_ps(out + i, y);
    }
    for (; i < n; i++) out[i] = g4_gelu_table(g[i]) * (u ? u[i] : 1.0f);
}

/* tanh(z) = sign(z) (1 - e) / (1 + e), e = exp(-2|z|) in [0, 1]: no
 * overflow, and the absolute error stays ~1e-7 (what matters for logits;
 * relative error grows only where tanh is tiny); -2|z| >= -87 (e below
 * that is ~1e-38, and the result 1 either way). */
__attribute__((target("avx2,fma"))) static inline __m256 softcap8(__m256 v, float cap) {
    const __m256 ic = _mm256_set1_ps(1.0f / cap), vc = _mm256_set1_ps(cap), one = _mm256_set1_ps(1.0f);
    const __m256 sgn = _mm256_set1_ps(-0.0f), lo = _mm256_set1_ps(-87.0f);
    const __m256 z = _mm256_mul_ps(v, ic);
    const __m256 s = _mm256_and_ps(z, sgn);
    const __m256 x = _mm256_max_ps(_mm256_mul_ps(_mm256_andnot_ps(sgn, z), _mm256_set1_ps(-2.0f)), lo);
    const __m256 e = g4_exp8(x);
    __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    t = _mm256_mul_ps(_mm256_or_ps(t, s), vc);
    return _mm256_blendv_ps(t, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)); /* NaN in, NaN out */
}

/* Every element, the tail too (through a padded copy): an element's value
 * must not depend on where its run starts or ends (matmul caps the rows
 * each thread computed, and the rows of a grab depend on the batch size),
 * so a token's logits are the same batched or alone. */
__attribute__((target("avx2,fma"))) static int64_t softcap_avx2(float *y, int64_t n, float cap) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, softcap8(_mm256_loadu_ps(y + i), cap));
    if (i < n) {
        float t[8] = { 0 };
        memcpy(t, y + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(t, softcap8(_mm256_loadu_ps(t), cap));
        memcpy(y + i, t, (size_t)(n - i) * sizeof(float));
    }
    return n;
}

/* Sum of squares in double (4 x 4 lanes), then y = x * scale (* w), each
 * product rounded as the scalar loop rounds it. */
__attribute__((target("avx2,fma"))) static void rmsnorm_avx2(float *y, const float *x, const float *w, int n,
                                                             float eps) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        const __m256d c = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)), d = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
        s0 = _mm256_fmadd_pd(a, a, s0);
        s1 = _mm256_fmadd_pd(b, b, s1);
        s2 = _mm256_fmadd_pd(c, c, s2);
        s3 = _mm256_fmadd_pd(d, d, s3);
    }
    __m256d s = _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double ss = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (int j = i; j < n; j++) ss += (double)x[j] * x[j];
    const float scale = (float)(1.0 / sqrt(ss / n + eps));
    const __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++) y[i] = w ? x[i] * scale * w[i] : x[i] * scale;
}
#endif

/* Sum of squares in double like ggml, so long rows keep full precision;
 * four partial sums (one chain of dependent double adds was ~1.5% of the
 * main thread in a decode step: ~250 norms per E2B token, run while the
 * other thread waits). */
void g4_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
#if defined(__x86_64__)
    if (use_avx2()) {
        rmsnorm_avx2(y, x, w, n, eps);
        return;
    }
#endif
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 3 < n; i += 4) {
        s0 += (double)x[i] * x[i];
        s1 += (double)x[i + 1] * x[i + 1];
        s2 += (double)x[i + 2] * x[i + 2];
        s3 += (double)x[i + 3] * x[i + 3];
    }
    for (; i < n; i++) s0 += (double)x[i] * x[i];
    double ss = (s0 + s1) + (s2 + s3);
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    if (w) for (i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
    else for (i = 0; i < n; i++) y[i] = x[i] * scale;
}

void g4_softcap(float *y, int64_t n, float cap, int exact) {
    int64_t i = 0;
#if defined(__x86_64__)
    if (!exact && use_avx2()) {
        i = softcap_avx2(y, n, cap);   /* all n: the tail too (batch invariance) */
    }
#endif
    (void)exact;
    for (; i < n; i++) y[i] = cap * tanhf(y[i] * (1.0f / cap)); /* ggml: scale, tanh, scale */
}

#if defined(__x86_64__)
/* maxps / minps return their second operand when either is NaN: x second
 * keeps a NaN, as the scalar selects do */
__attribute__((target("avx2"))) static int64_t clamp_avx2(float *dst, const float *src, int64_t n, float lo,
                                                           float hi) {
    const __m256 l = _mm256_set1_ps(lo), h = _mm256_set1_ps(hi);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_min_ps(h, _mm256_max_ps(l, _mm256_loadu_ps(src + i))));
    return i;
}
#endif

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static int64_t silu_avx2(float *x, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), lo = _mm256_set1_ps(-87.0f), hi = _mm256_set1_ps(88.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 e = g4_exp8(_mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), v), lo), hi));
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    return i;
}
#endif

void g4_silu(float *x, int64_t n, int exact) {
    int64_t i = 0;
#if defined(__x86_64__)
    if (!exact && use_avx2()) i = silu_avx2(x, n);
#endif
    for (; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

void g4_clamp(float *dst, const float *src, int64_t n, float lo, float hi) {
    int64_t i = 0;
#if defined(__x86_64__)
    if (use_avx2()) i = clamp_avx2(dst, src, n, lo, hi);
#endif
    for (; i < n; i++) {
        float x = src[i];
        x = x < lo ? lo : x;
        dst[i] = x > hi ? hi : x;
    }
}

void g4_geglu(float *out, const float *g, const float *u, int64_t n, int exact) {
    if (exact) {
        for (int64_t i = 0; i < n; i++) out[i] = g4_gelu(g[i]) * (u ? u[i] : 1.0f);
        return;
    }
#if defined(__x86_64__)
    if (use_avx2()) {
        geglu_f16c(out, g, u, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) out[i] = g4_gelu_table(g[i]) * (u ? u[i] : 1.0f);
}
