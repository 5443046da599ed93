#include "tensor/vec.h"

#include <math.h>
#include <stdint.h>

#include "tensor/cpu.h"
#include "tensor/exp_x86.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static float dot_ref(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_ref(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void qk_ref(float *s, int lds, const float *q, int G, const float *k, size_t ks, int nj, int hd) {
    for (int h = 0; h < G; h++)
        for (int j = 0; j < nj; j++) s[(size_t)h * lds + j] = dot_ref(q + (size_t)h * hd, k + (size_t)j * ks, hd);
}

static void pv_ref(float *acc, const float *p, int ldp, int G, const float *v, size_t vs, int nj, int hd) {
    for (int h = 0; h < G; h++)
        for (int j = 0; j < nj; j++) axpy_ref(acc + (size_t)h * hd, p[(size_t)h * ldp + j], v + (size_t)j * vs, hd);
}

static float expsum_ref(float *s, int n, float m) {
    float su = 0;
    for (int j = 0; j < n; j++) { s[j] = expf(s[j] - m); su += s[j]; }
    return su;
}

#if defined(__x86_64__)
/* Prefetch `off` floats past p, in integer arithmetic: the address may lie
 * past the end of the cache array (a prefetch never faults). */
#define PREFETCH_AHEAD(p, off) \
    _mm_prefetch((const char *)((uintptr_t)(p) + (size_t)(off) * sizeof(float)), _MM_HINT_T0)
/* p.v takes the cache rows this many at a time (see pv_avx512) */
#define PV_CHUNK 8
#define AVX2_FN __attribute__((target("avx2,fma"))) static
#define AVX2_INL __attribute__((target("avx2,fma"), always_inline)) static inline

AVX2_INL float hsum8(__m256 s) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* R heads x C rows of scores; hd8 = hd rounded down to 8, the rest scalar */
AVX2_INL void qk_tile(const int R, const int C, float *s, int lds, const float *q, int hd, const float *k,
                      size_t ks) {
    __m256 a[4][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) a[r][c] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= hd; i += 8) {
        __m256 kv[2];
        _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) {
            kv[c] = _mm256_loadu_ps(k + (size_t)c * ks + i);
            PREFETCH_AHEAD(k + (size_t)c * ks + i, (size_t)C * ks);  /* next tile's rows */
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m256 qv = _mm256_loadu_ps(q + (size_t)r * hd + i);
            _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) a[r][c] = _mm256_fmadd_ps(qv, kv[c], a[r][c]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2") for (int c = 0; c < C; c++) {
            float t = hsum8(a[r][c]);
            for (int j = i; j < hd; j++) t += q[(size_t)r * hd + j] * k[(size_t)c * ks + j];
            s[(size_t)r * lds + c] = t;
        }
}

AVX2_FN void qk_avx2(float *s, int lds, const float *q, int G, const float *k, size_t ks, int nj, int hd) {
    int h = 0;
    for (; h + 4 <= G; h += 4) {
        int j = 0;
        for (; j + 2 <= nj; j += 2) qk_tile(4, 2, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile(4, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
    for (; h < G; h++) {
        int j = 0;
        for (; j + 2 <= nj; j += 2) qk_tile(1, 2, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile(1, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
}

/* R heads x 16 columns of acc stay in registers across all nj rows */
AVX2_INL void pv_tile(const int R, float *acc, int hd, const float *p, int ldp, const float *v, size_t vs, int nj) {
    __m256 a[4][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        a[r][0] = _mm256_loadu_ps(acc + (size_t)r * hd);
        a[r][1] = _mm256_loadu_ps(acc + (size_t)r * hd + 8);
    }
    for (int j = 0; j < nj; j++) {
        const __m256 v0 = _mm256_loadu_ps(v + (size_t)j * vs), v1 = _mm256_loadu_ps(v + (size_t)j * vs + 8);
        PREFETCH_AHEAD(v + (size_t)j * vs, (size_t)nj * vs);   /* next chunk's rows */
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m256 pb = _mm256_broadcast_ss(p + (size_t)r * ldp + j);
            a[r][0] = _mm256_fmadd_ps(pb, v0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(pb, v1, a[r][1]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(acc + (size_t)r * hd, a[r][0]);
        _mm256_storeu_ps(acc + (size_t)r * hd + 8, a[r][1]);
    }
}

AVX2_INL void pv_rows_avx2(float *acc, const float *p, int ldp, int G, const float *v, size_t vs, int nj, int hd) {
    int h = 0;
    for (; h < G; h += 4) {
        const int R = G - h >= 4 ? 4 : G - h;
        float *ah = acc + (size_t)h * hd;
        const float *ph = p + (size_t)h * ldp;
        int i = 0;
        for (; i + 16 <= hd; i += 16) {
            if (R == 4) pv_tile(4, ah + i, hd, ph, ldp, v + i, vs, nj);
            else if (R == 3) pv_tile(3, ah + i, hd, ph, ldp, v + i, vs, nj);
            else if (R == 2) pv_tile(2, ah + i, hd, ph, ldp, v + i, vs, nj);
            else pv_tile(1, ah + i, hd, ph, ldp, v + i, vs, nj);
        }
        for (int r = 0; r < R; r++)
            for (int j = 0; j < nj; j++)
                for (int c = i; c < hd; c++) ah[(size_t)r * hd + c] += ph[(size_t)r * ldp + j] * v[(size_t)j * vs + c];
    }
}

/* Rows in chunks of PV_CHUNK, each used up across all column strips before
 * the next (see pv_avx512) */
AVX2_FN void pv_avx2(float *acc, const float *p, int ldp, int G, const float *v, size_t vs, int nj, int hd) {
    for (int j0 = 0; j0 < nj; j0 += PV_CHUNK) {
        const int jn = nj - j0 < PV_CHUNK ? nj - j0 : PV_CHUNK;
        pv_rows_avx2(acc, p + j0, ldp, G, v + (size_t)j0 * vs, vs, jn, hd);
    }
}

/* s - m <= 0 (m is the maximum); below -87 e^x is < 1.7e-38: clamped there
 * (the scores of a far-off position, a few ulp of the sum at most) */
AVX2_FN float expsum_avx2(float *s, int n, float m) {
    const __m256 vm = _mm256_set1_ps(m), lo = _mm256_set1_ps(-87.0f);
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = g4_exp8(_mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm), lo));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float su = hsum8(acc);
    for (; j < n; j++) { s[j] = expf(s[j] - m); su += s[j]; }
    return su;
}

/* ---- AVX-512: 16 lanes, masked tails ---- */
#define AVX512_FN __attribute__((target("avx512f,avx2,fma"))) static
#define AVX512_INL __attribute__((target("avx512f,avx2,fma"), always_inline)) static inline

AVX512_INL __mmask16 tail_mask(int left) { return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1); }

/* R heads x C rows of scores, hd in 16-lane steps (the last one masked) */
AVX512_INL void qk_tile16(const int R, const int C, float *s, int lds, const float *q, int hd, const float *k,
                          size_t ks) {
    __m512 a[4][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) a[r][c] = _mm512_setzero_ps();
    for (int i = 0; i < hd; i += 16) {
        const __mmask16 mk = tail_mask(hd - i);
        __m512 kv[4];
        _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) {
            kv[c] = _mm512_maskz_loadu_ps(mk, k + (size_t)c * ks + i);
            PREFETCH_AHEAD(k + (size_t)c * ks + i, (size_t)C * ks);  /* next tile's rows */
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m512 qv = _mm512_maskz_loadu_ps(mk, q + (size_t)r * hd + i);
            _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) a[r][c] = _mm512_fmadd_ps(qv, kv[c], a[r][c]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) s[(size_t)r * lds + c] = _mm512_reduce_add_ps(a[r][c]);
}

AVX512_FN void qk_avx512(float *s, int lds, const float *q, int G, const float *k, size_t ks, int nj, int hd) {
    int h = 0;
    for (; h + 4 <= G; h += 4) {
        int j = 0;
        for (; j + 4 <= nj; j += 4) qk_tile16(4, 4, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile16(4, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
    for (; h < G; h++) {
        int j = 0;
        for (; j + 4 <= nj; j += 4) qk_tile16(1, 4, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
        for (; j < nj; j++) qk_tile16(1, 1, s + (size_t)h * lds + j, lds, q + (size_t)h * hd, hd, k + (size_t)j * ks, ks);
    }
}

/* R heads x 32 columns of acc (two masked vectors) stay in registers across
 * all nj rows: each cache row is loaded once for R heads */
AVX512_INL void pv_tile16(const int R, float *acc, int hd, int cols, const float *p, int ldp, const float *v,
                          size_t vs, int nj) {
    const __mmask16 m0 = tail_mask(cols), m1 = tail_mask(cols > 16 ? cols - 16 : 0);
    __m512 a[8][2];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        a[r][0] = _mm512_maskz_loadu_ps(m0, acc + (size_t)r * hd);
        a[r][1] = _mm512_maskz_loadu_ps(m1, acc + (size_t)r * hd + 16);
    }
    for (int j = 0; j < nj; j++) {
        const __m512 v0 = _mm512_maskz_loadu_ps(m0, v + (size_t)j * vs);
        const __m512 v1 = _mm512_maskz_loadu_ps(m1, v + (size_t)j * vs + 16);
        PREFETCH_AHEAD(v + (size_t)j * vs, (size_t)nj * vs);        /* next chunk's rows */
        PREFETCH_AHEAD(v + (size_t)j * vs + 16, (size_t)nj * vs);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            const __m512 pb = _mm512_set1_ps(p[(size_t)r * ldp + j]);
            a[r][0] = _mm512_fmadd_ps(pb, v0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(pb, v1, a[r][1]);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(acc + (size_t)r * hd, m0, a[r][0]);
        _mm512_mask_storeu_ps(acc + (size_t)r * hd + 16, m1, a[r][1]);
    }
}

AVX512_INL void pv_rows_avx512(float *acc, const float *p, int ldp, int G, const float *v, size_t vs, int nj, int hd) {
    for (int h = 0; h < G; h += 8) {
        const int R = G - h >= 8 ? 8 : G - h;
        float *ah = acc + (size_t)h * hd;
        const float *ph = p + (size_t)h * ldp;
        for (int i = 0; i < hd; i += 32) {
            const int cols = hd - i < 32 ? hd - i : 32;
            switch (R) {
            case 8: pv_tile16(8, ah + i, hd, cols, ph, ldp, v + i, vs, nj); break;
            case 7: pv_tile16(7, ah + i, hd, cols, ph, ldp, v + i, vs, nj); break;
            case 6: pv_tile16(6, ah + i, hd, cols, ph, ldp, v + i, vs, nj); break;
            case 5: pv_tile16(5, ah + i, hd, cols, ph, ldp, v + i, vs, nj); break;
            case 4: pv_tile16(4, ah + i, hd, cols, ph, ldp, v + i, vs, nj); break;
            case 3: pv_tile16(3, ah + i, hd, cols, ph, ldp, v + i, vs, nj); break;
            case 2: pv_tile16(2, ah + i, hd, cols, ph, ldp, v + i, vs, nj); break;
            default: pv_tile16(1, ah + i, hd, cols, ph, ldp, v + i, vs, nj); break;
            }
        }
    }
}

/* Rows in chunks of PV_CHUNK, each chunk used up across all column strips
 * before the next, whose rows the tile prefetches meanwhile: strips over all rows
 * at once jumped a row stride (~2 KB) per load and waited on memory at
 * every row (the KV cache of a long context is far out of cache). Cold
 * cache rows: 22 -> 107 GFLOP/s in one thread; qk's next-tile prefetch
 * 37 -> 67. */
AVX512_FN void pv_avx512(float *acc, const float *p, int ldp, int G, const float *v, size_t vs, int nj, int hd) {
    for (int j0 = 0; j0 < nj; j0 += PV_CHUNK) {
        const int jn = nj - j0 < PV_CHUNK ? nj - j0 : PV_CHUNK;
        pv_rows_avx512(acc, p + j0, ldp, G, v + (size_t)j0 * vs, vs, jn, hd);
    }
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
#endif

/* gemm_nn through a level's axpy: one row of c at a time */
#define GEMM_NN_AXPY(name, axpy, ATTR)                                                                  \
    ATTR void name(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M, int N, int K) { \
        for (int i = 0; i < M; i++)                                                                     \
            for (int k = 0; k < K; k++) axpy(c + (size_t)i * ldc, a[(size_t)i * lda + k], b + (size_t)k * ldb, N); \
    }
GEMM_NN_AXPY(gemm_nn_ref, axpy_ref, static)
#if defined(__x86_64__)
GEMM_NN_AXPY(gemm_nn_avx2, axpy_avx2, static)

/* R rows of c x 64 columns (4 vectors, the last ones masked): per k, 4 b
 * loads and R broadcasts feed 4R FMAs; 16 accumulators at R = 4 */
AVX512_INL void gemm_nn_tile(const int R, float *c, int ldc, const float *a, int lda, const float *b, int ldb,
                             int K, const __mmask16 *m) {
    __m512 acc[4][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
            acc[r][q] = _mm512_maskz_loadu_ps(m[q], c + (size_t)r * ldc + 16 * q);
    for (int k = 0; k < K; k++) {
        const float *bk = b + (size_t)k * ldb;
        __m512 bv[4];
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) bv[q] = _mm512_maskz_loadu_ps(m[q], bk + 16 * q);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m512 av = _mm512_set1_ps(a[(size_t)r * lda + k]);
            _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
            _mm512_mask_storeu_ps(c + (size_t)r * ldc + 16 * q, m[q], acc[r][q]);
}

/* R rows x one vector of columns, for a last block of <= 16 columns (a
 * rank-16 adapter's products): the 64-column tile would spend 3 of its 4
 * FMAs on masked lanes. Each c element is the same FMA chain over k in
 * order as in gemm_nn_tile, so the results are the same bits. */
AVX512_INL void gemm_nn_tile1(const int R, float *c, int ldc, const float *a, int lda, const float *b, int ldb,
                              int K, __mmask16 m) {
    __m512 acc[8];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[r] = _mm512_maskz_loadu_ps(m, c + (size_t)r * ldc);
    for (int k = 0; k < K; k++) {
        const __m512 bv = _mm512_maskz_loadu_ps(m, b + (size_t)k * ldb);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[(size_t)r * lda + k]), bv, acc[r]);
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) _mm512_mask_storeu_ps(c + (size_t)r * ldc, m, acc[r]);
}

AVX512_FN void gemm_nn_avx512(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M, int N,
                              int K) {
    for (int j0 = 0; j0 < N; j0 += 64) {
        if (N - j0 <= 16) {
            const __mmask16 m1 = tail_mask(N - j0);
            int i = 0;
            for (; i + 8 <= M; i += 8)
                gemm_nn_tile1(8, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, K, m1);
            for (; i < M; i++)
                gemm_nn_tile1(1, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, K, m1);
            break;
        }
        __mmask16 m[4];
        for (int q = 0; q < 4; q++) {
            int left = N - j0 - 16 * q;
            m[q] = left <= 0 ? (__mmask16)0 : tail_mask(left);
        }
        int i = 0;
        for (; i + 4 <= M; i += 4)
            gemm_nn_tile(4, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, K, m);
        for (; i < M; i++)
            gemm_nn_tile(1, c + (size_t)i * ldc + j0, ldc, a + (size_t)i * lda, lda, b + j0, ldb, K, m);
    }
}
#endif

static const g4_vec_ops REF = { dot_ref, axpy_ref, qk_ref, pv_ref, expsum_ref, gemm_nn_ref };
#if defined(__x86_64__)
static const g4_vec_ops AVX2 = { dot_avx2, axpy_avx2, qk_avx2, pv_avx2, expsum_avx2, gemm_nn_avx2 };
static const g4_vec_ops AVX512 = { dot_avx2, axpy_avx2, qk_avx512, pv_avx512, expsum_avx2, gemm_nn_avx512 };
#endif

const g4_vec_ops *g4_vec_get_level(int level) {
#if defined(__x86_64__)
    if (level == G4_CPU_AVX512 && g4_cpu_level_supported(level)) return &AVX512;
    if ((level == G4_CPU_AVX2 || level == G4_CPU_AVX512) && g4_cpu_level_supported(G4_CPU_AVX2)) return &AVX2;
#endif
    (void)level;
    return &REF;
}

const g4_vec_ops *g4_vec_get(void) { return g4_vec_get_level(g4_cpu_level()); }
