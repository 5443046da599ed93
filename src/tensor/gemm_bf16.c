/* bf16-pair products (gemm_bf16.h). */
#include "tensor/gemm_bf16.h"

#include <string.h>

#include "tensor/cpu.h"

bool g4_bf16_gemm_ok(void) {
#if defined(__x86_64__)
    return g4_cpu_level() == G4_CPU_AVX512 && g4_cpu_features_get()->avx512bf16;
#else
    return false;
#endif
}

/* f32 -> bf16 bits, round to nearest even (inputs are finite: gradients
 * and decoded weights). */
static inline uint32_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

#if defined(__x86_64__)
#include <immintrin.h>

#define BF_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static
#define BF_INL __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) static inline

BF_INL __m512i bf16_round16(__m512i u) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    return _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd);
}

/* 16 columns of two rows into 16 words: low half row 2p, high half 2p+1 */
BF_INL __m512i bf16_pair16(const float *lo, const float *hi, __mmask16 m) {
    __m512i a = bf16_round16(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, lo)));
    __m512i b = hi ? bf16_round16(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, hi))) : _mm512_setzero_si512();
    return _mm512_or_si512(_mm512_srli_epi32(a, 16), _mm512_and_si512(b, _mm512_set1_epi32((int)0xffff0000u)));
}

BF_FN void pack_b_avx512(uint32_t *dst, const float *src, int lds, int K, int N) {
    for (int p = 0; p < (K + 1) / 2; p++) {
        const float *r0 = src + (size_t)(2 * p) * lds, *r1 = 2 * p + 1 < K ? r0 + lds : NULL;
        for (int n = 0; n < N; n += 16) {
            __mmask16 m = N - n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (N - n)) - 1);
            _mm512_mask_storeu_epi32(dst + (size_t)p * N + n, m, bf16_pair16(r0 + n, r1 ? r1 + n : NULL, m));
        }
    }
}

/* Consecutive values pair up in memory: vcvtne2ps2bf16 rounds 32 of them
 * (nearest even) into 16 words in order. */
BF_FN void pack_a_avx512(uint32_t *dst, int ldd, const float *src, int lds, int M, int K) {
    for (int m = 0; m < M; m++) {
        const float *s = src + (size_t)m * lds;
        uint32_t *d = dst + (size_t)m * ldd;
        for (int k = 0; k < K; k += 32) {
            int left = K - k;
            __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __mmask16 m1 = left >= 32 ? (__mmask16)0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, s + k + 16), _mm512_maskz_loadu_ps(m0, s + k));
            int words = (left >= 32 ? 32 : left + 1) / 2;
            __mmask16 mw = words >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << words) - 1);
            _mm512_mask_storeu_epi32(d + k / 2, mw, (__m512i)v);
        }
    }
}

/* R rows of c x 64 columns: per pair, 4 word loads of b and R broadcasts
 * feed 4R vdpbf16ps (24 accumulators at R = 6) */
BF_INL void bf_tile(const int R, float *c, int ldc, const uint32_t *a, int lda, const uint32_t *b, int ldb, int P,
                    const __mmask16 *m) {
    __m512 acc[6][4];
    _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
            acc[r][q] = _mm512_maskz_loadu_ps(m[q], c + (size_t)r * ldc + 16 * q);
    for (int p = 0; p < P; p++) {
        const uint32_t *bp = b + (size_t)p * ldb;
        __m512i bv[4];
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) bv[q] = _mm512_maskz_loadu_epi32(m[q], bp + 16 * q);
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {
            const __m512i av = _mm512_set1_epi32((int)a[(size_t)r * lda + p]);
            _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
                acc[r][q] = _mm512_dpbf16_ps(acc[r][q], (__m512bh)av, (__m512bh)bv[q]);
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
            _mm512_mask_storeu_ps(c + (size_t)r * ldc + 16 * q, m[q], acc[r][q]);
}

BF_FN void gemm_avx512(float *c, int ldc, const uint32_t *a, int lda, const uint32_t *b, int ldb, int M, int N,
                       int P) {
    for (int j0 = 0; j0 < N; j0 += 64) {
        __mmask16 m[4];
        for (int q = 0; q < 4; q++) {
            int left = N - j0 - 16 * q;
            m[q] = left <= 0 ? (__mmask16)0 : left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        }
        int i = 0;
        for (; i + 6 <= M; i += 6) bf_tile(6, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, P, m);
        switch (M - i) {
        case 5: bf_tile(5, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, P, m); break;
        case 4: bf_tile(4, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, P, m); break;
        case 3: bf_tile(3, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, P, m); break;
        case 2: bf_tile(2, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, P, m); break;
        case 1: bf_tile(1, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, P, m); break;
        default: break;
        }
    }
}
#endif

void g4_bf16_pack_b(uint32_t *dst, const float *src, int lds, int K, int N) {
#if defined(__x86_64__)
    if (g4_bf16_gemm_ok()) { pack_b_avx512(dst, src, lds, K, N); return; }
#endif
    for (int p = 0; p < (K + 1) / 2; p++)
        for (int n = 0; n < N; n++) {
            uint32_t lo = bf16_bits(src[(size_t)(2 * p) * lds + n]);
            uint32_t hi = 2 * p + 1 < K ? bf16_bits(src[(size_t)(2 * p + 1) * lds + n]) : 0;
            dst[(size_t)p * N + n] = lo | hi << 16;
        }
}

void g4_bf16_pack_a(uint32_t *dst, int ldd, const float *src, int lds, int M, int K) {
#if defined(__x86_64__)
    if (g4_bf16_gemm_ok()) { pack_a_avx512(dst, ldd, src, lds, M, K); return; }
#endif
    for (int m = 0; m < M; m++) {
        const float *s = src + (size_t)m * lds;
        uint32_t *d = dst + (size_t)m * ldd;
        for (int p = 0; p < K / 2; p++) d[p] = bf16_bits(s[2 * p]) | bf16_bits(s[2 * p + 1]) << 16;
        if (K & 1) d[K / 2] = bf16_bits(s[K - 1]);
    }
}

void g4_bf16_gemm(float *c, int ldc, const uint32_t *a, int lda, const uint32_t *b, int ldb, int M, int N, int P) {
#if defined(__x86_64__)
    gemm_avx512(c, ldc, a, lda, b, ldb, M, N, P);
#else
    (void)c; (void)ldc; (void)a; (void)lda; (void)b; (void)ldb; (void)M; (void)N; (void)P;
#endif
}
