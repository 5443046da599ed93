/* Vector e^x for the x86 kernels (act.c, vec.c): one definition, inlined
 * into each caller's target-specific code. */
#ifndef G4_EXP_X86_H
#define G4_EXP_X86_H

#if defined(__x86_64__)
#include <immintrin.h>

/* e^x for x in [-87, 88]: 2^k * P(r), r = x - k ln2 in [-ln2/2, ln2/2], P
 * the degree-7 Taylor polynomial (remainder < 1e-8, so ~2 ulp in all);
 * the bounds keep 2^k a normal float (callers clamp). */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 g4_exp8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, x, one);
    p = _mm256_fmadd_ps(p, x, one);
    const __m256i e2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e2));
}

/* The same in 16 lanes (bf16.c's softmax, which rounds to bf16, has a
 * lower-degree one of its own). */
__attribute__((target("avx512f"), always_inline)) static inline __m512 g4_exp16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, x, one);
    p = _mm512_fmadd_ps(p, x, one);
    const __m512i e2 = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e2));
}
#endif

#endif
