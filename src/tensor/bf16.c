/* BF16 panels and the vdpbf16ps product (bf16.h). */
#include "tensor/bf16.h"

#include <math.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/fp16.h"
#include "tensor/types.h"

#if defined(__x86_64__)
#include <immintrin.h>

#endif

bool g4_bf16_dot_ok(void) {
#if defined(__x86_64__)
    return g4_cpu_level() == G4_CPU_AVX512 && g4_cpu_features_get()->avx512bf16;
#else
    return false;
#endif
}

size_t g4_bf16_panel_elems(int64_t rows, int64_t n) {
    return (size_t)((rows + G4_BF16_PR - 1) / G4_BF16_PR) * G4_BF16_PR * (size_t)((n + 1) / 2) * 2;
}

static inline uint32_t pair(uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; }

/* ---- reference (scalar) versions: other CPUs, and the edges ---------------- */

static void round_row_ref(const float *src, uint16_t *dst, int64_t i, int64_t n) {
    for (; i < n; i++) dst[i] = g4_fp32_to_bf16(src[i]);
    if (n & 1) dst[n] = 0;
}

static uint16_t elem_bf16(int type, const uint8_t *row, int64_t k) {
    uint16_t h;
    float f;
    switch (type) {
    case G4_BF16: memcpy(&h, row + 2 * k, 2); return h;
    case G4_F16: memcpy(&h, row + 2 * k, 2); return g4_fp32_to_bf16(g4_fp16_to_fp32(h));
    default: memcpy(&f, row + 4 * k, 4); return g4_fp32_to_bf16(f);
    }
}

/* words [p0, np) of rows [0, nr) of a panel from a stored matrix, rows nr..31 zero */
static void pack_rows_ref(uint32_t *pan, int type, const uint8_t *w, size_t rb, int nr, int64_t n, int64_t p0) {
    const int64_t np = (n + 1) / 2;
    for (int64_t p = p0; p < np; p++)
        for (int r = 0; r < G4_BF16_PR; r++) {
            uint32_t v = 0;
            if (r < nr) {
                const uint8_t *row = w + (size_t)r * rb;
                v = pair(elem_bf16(type, row, 2 * p), 2 * p + 1 < n ? elem_bf16(type, row, 2 * p + 1) : 0);
            }
            pan[(size_t)p * G4_BF16_PR + r] = v;
        }
}

static void pack_f32_ref(uint32_t *pan, const float *s, size_t rs, size_t ks, int nr, int64_t n, int64_t p0) {
    const int64_t np = (n + 1) / 2;
    for (int64_t p = p0; p < np; p++) {
        for (int r = 0; r < nr; r++) {
            const float *e = s + (size_t)r * rs + (size_t)(2 * p) * ks;
            pan[(size_t)p * G4_BF16_PR + r] = pair(g4_fp32_to_bf16(e[0]), 2 * p + 1 < n ? g4_fp32_to_bf16(e[ks]) : 0);
        }
        for (int r = nr; r < G4_BF16_PR; r++) pan[(size_t)p * G4_BF16_PR + r] = 0;
    }
}

static float softmax_row_ref(const float *s, int64_t n, float scale, uint16_t *p) {
    float m = -INFINITY, sum = 0;
    for (int64_t j = 0; j < n; j++) m = scale * s[j] > m ? scale * s[j] : m;
    for (int64_t j = 0; j < n; j++) {
        float x = scale * s[j] - m;
        p[j] = g4_fp32_to_bf16(expf(x > -87.0f ? x : -87.0f));
        sum += g4_bf16_to_fp32(p[j]);
    }
    if (n & 1) p[n] = 0;
    return sum;
}

#if defined(__x86_64__)
#define BT __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")))
#define BINL BT static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* 32 bf16 of two 16-float vectors: lo's in the low half (nearest even) */
BINL __m512i cvt32(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

BT static void round_row_512(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm512_storeu_si512(dst + i, cvt32(_mm512_loadu_ps(src + i), _mm512_loadu_ps(src + i + 16)));
    round_row_ref(src, dst, i, n);
}

/* v[r] = 16 words (pairs p0..p0+15) of row r0 + r, r < 16: transposed in
 * registers (4 shuffle stages), so pair p0 + i's 16 rows go out as one
 * store at pan[(p0 + i) * 32 + r0] */
BINL void store16x16(uint32_t *pan, int64_t p0, int r0, __m512i v[16]) {
    __m512i t[16], a[4], b[4], c[4], d[4];
    UNROLL for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    /* v[4g + k], lane L: element 4L + k of rows 4g..4g+3 */
    UNROLL for (int g = 0; g < 4; g++) {
        v[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        v[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        v[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        v[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    UNROLL for (int k = 0; k < 4; k++) {
        a[k] = _mm512_shuffle_i32x4(v[k], v[4 + k], 0x88);       /* rows 0-7: elements k, 8+k */
        b[k] = _mm512_shuffle_i32x4(v[k], v[4 + k], 0xdd);       /* rows 0-7: 4+k, 12+k */
        c[k] = _mm512_shuffle_i32x4(v[8 + k], v[12 + k], 0x88);  /* rows 8-15 */
        d[k] = _mm512_shuffle_i32x4(v[8 + k], v[12 + k], 0xdd);
    }
    uint32_t *o = pan + (size_t)p0 * G4_BF16_PR + r0;
    UNROLL for (int k = 0; k < 4; k++) {
        _mm512_storeu_si512(o + (size_t)k * G4_BF16_PR, _mm512_shuffle_i32x4(a[k], c[k], 0x88));
        _mm512_storeu_si512(o + (size_t)(8 + k) * G4_BF16_PR, _mm512_shuffle_i32x4(a[k], c[k], 0xdd));
        _mm512_storeu_si512(o + (size_t)(4 + k) * G4_BF16_PR, _mm512_shuffle_i32x4(b[k], d[k], 0x88));
        _mm512_storeu_si512(o + (size_t)(12 + k) * G4_BF16_PR, _mm512_shuffle_i32x4(b[k], d[k], 0xdd));
    }
}

/* 16 words of pairs p..p+15 of one stored row, as bf16 */
BINL __m512i load_words(int type, const uint8_t *row, int64_t p) {
    if (type == G4_BF16) return _mm512_loadu_si512(row + 4 * p);
    if (type == G4_F16)
        return cvt32(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(row + 4 * p))),
                     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(row + 4 * p + 32))));
    return cvt32(_mm512_loadu_ps((const float *)(const void *)(row + 8 * p)),
                 _mm512_loadu_ps((const float *)(const void *)(row + 8 * p + 64)));
}

/* whole 16-pair steps 16 rows at a time (rows past nr zero, never read),
 * the rest scalar */
BT static void pack_rows_512(uint32_t *pan, int type, const uint8_t *w, size_t rb, int nr, int64_t n) {
    const int64_t np = (n + 1) / 2, pv = n / 32 * 16;
    for (int r0 = 0; r0 < G4_BF16_PR; r0 += 16)
        for (int64_t p = 0; p < pv; p += 16) {
            __m512i v[16];
            UNROLL for (int r = 0; r < 16; r++)
                v[r] = r0 + r < nr ? load_words(type, w + (size_t)(r0 + r) * rb, p) : _mm512_setzero_si512();
            store16x16(pan, p, r0, v);
        }
    if (pv < np) pack_rows_ref(pan, type, w, rb, nr, n, pv);
}

BT static void pack_f32_512(uint32_t *pan, const float *s, size_t rs, size_t ks, int nr, int64_t n) {
    const int64_t np = (n + 1) / 2;
    int64_t pv = 0;
    if (ks == 1) {          /* rows contiguous over k (K of attention) */
        pv = n / 32 * 16;
        for (int r0 = 0; r0 < G4_BF16_PR; r0 += 16)
            for (int64_t p = 0; p < pv; p += 16) {
                __m512i v[16];
                UNROLL for (int r = 0; r < 16; r++) {
                    const float *e = s + (size_t)(r0 + r < nr ? r0 + r : 0) * rs + 2 * (size_t)p;
                    v[r] = r0 + r < nr ? cvt32(_mm512_loadu_ps(e), _mm512_loadu_ps(e + 16)) : _mm512_setzero_si512();
                }
                store16x16(pan, p, r0, v);
            }
    } else if (rs == 1) {   /* columns contiguous over r (V of attention, transposed) */
        pv = n / 2;
        const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1),
                        m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
        for (int64_t p = 0; p < pv; p++) {
            const float *e0 = s + (size_t)(2 * p) * ks, *e1 = e0 + ks;
            for (int h = 0; h < 2; h++) {
                const __mmask16 m = h ? m1 : m0;
                const __m256i a = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, e0 + 16 * h));
                const __m256i b = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, e1 + 16 * h));
                const __m512i v =
                    _mm512_or_si512(_mm512_cvtepu16_epi32(a), _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
                _mm512_storeu_si512(pan + (size_t)p * G4_BF16_PR + 16 * h, v);
            }
        }
    }
    if (pv < np) pack_f32_ref(pan, s, rs, ks, nr, n, pv);
}

/* e^x for x in [-87, 0], for results rounded to bf16 next: the degree-4
 * Taylor polynomial on [-ln2/2, ln2/2] (remainder < 4.3e-5 relative, 1/45
 * of the rounding's 2^-9 that follows) and 2^k by vscalefps. g4_exp16's
 * degree 7 (for f32 results) was ~10% of a vision encode's fast path. */
BINL __m512 exp16_bf(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 p = _mm512_set1_ps(1.0f / 24);
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, x, one);
    p = _mm512_fmadd_ps(p, x, one);
    return _mm512_scalef_ps(p, k);
}

BT static float softmax_row_512(const float *s, int64_t n, float scale, uint16_t *p) {
    const __m512 sc = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-87.0f);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 mk = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        mx = _mm512_mask_max_ps(mx, mk, mx, _mm512_mul_ps(sc, _mm512_maskz_loadu_ps(mk, s + j)));
    }
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 mk = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512 e = exp16_bf(_mm512_max_ps(_mm512_fmsub_ps(sc, _mm512_maskz_loadu_ps(mk, s + j), m), lo));
        const __m256i b = (__m256i)_mm512_cvtneps_pbh(e);
        _mm256_mask_storeu_epi16(p + j, mk, b);
        /* the rounded values, as P V will use them */
        sum = _mm512_mask_add_ps(sum, mk, sum, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16)));
    }
    if (n & 1) p[n] = 0;
    return _mm512_reduce_add_ps(sum);
}

/* C tokens x 32 rows: 2C accumulators, two weight vectors per input pair,
 * each token's pair broadcast */
BINL void tile(const int C, const int add, const uint32_t *pan, int64_t np, const uint16_t *x, size_t xs, float *y,
               size_t ldy, __mmask16 m0, __mmask16 m1) {
    __m512 a0[12], a1[12];
    UNROLL for (int c = 0; c < C; c++) {
        a0[c] = add ? _mm512_maskz_loadu_ps(m0, y + (size_t)c * ldy) : _mm512_setzero_ps();
        a1[c] = add ? _mm512_maskz_loadu_ps(m1, y + (size_t)c * ldy + 16) : _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < np; p++) {
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512(pan + (size_t)p * G4_BF16_PR),
                       w1 = (__m512bh)_mm512_loadu_si512(pan + (size_t)p * G4_BF16_PR + 16);
        UNROLL for (int c = 0; c < C; c++) {
            uint32_t xp;
            memcpy(&xp, x + (size_t)c * xs + 2 * (size_t)p, 4);
            const __m512bh xb = (__m512bh)_mm512_set1_epi32((int)xp);
            a0[c] = _mm512_dpbf16_ps(a0[c], w0, xb);
            a1[c] = _mm512_dpbf16_ps(a1[c], w1, xb);
        }
    }
    UNROLL for (int c = 0; c < C; c++) {
        _mm512_mask_storeu_ps(y + (size_t)c * ldy, m0, a0[c]);
        _mm512_mask_storeu_ps(y + (size_t)c * ldy + 16, m1, a1[c]);
    }
}

BT static void gemm_512(const int add, const uint16_t *pan, int64_t n, int nrows, const uint16_t *x, size_t xs, int T,
                        float *y, size_t ldy) {
    const int64_t np = (n + 1) / 2;
    for (int r0 = 0; r0 < nrows; r0 += G4_BF16_PR) {
        const int nr = nrows - r0 < G4_BF16_PR ? nrows - r0 : G4_BF16_PR;
        const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1),
                        m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
        const uint32_t *pb = (const uint32_t *)(const void *)(pan + (size_t)r0 * (size_t)np * 2);
        int t = 0;
        for (; t + 12 <= T; t += 12) tile(12, add, pb, np, x + (size_t)t * xs, xs, y + (size_t)t * ldy + r0, ldy, m0, m1);
        for (; t + 4 <= T; t += 4) tile(4, add, pb, np, x + (size_t)t * xs, xs, y + (size_t)t * ldy + r0, ldy, m0, m1);
        for (; t < T; t++) tile(1, add, pb, np, x + (size_t)t * xs, xs, y + (size_t)t * ldy + r0, ldy, m0, m1);
    }
}
#endif

float g4_bf16_softmax_row(const float *s, int64_t n, float scale, uint16_t *p) {
#if defined(__x86_64__)
    if (g4_bf16_dot_ok()) return softmax_row_512(s, n, scale, p);
#endif
    return softmax_row_ref(s, n, scale, p);
}

void g4_bf16_round_row(const float *src, uint16_t *dst, int64_t n) {
#if defined(__x86_64__)
    if (g4_bf16_dot_ok()) { round_row_512(src, dst, n); return; }
#endif
    round_row_ref(src, dst, 0, n);
}

void g4_bf16_pack_rows(uint16_t *pan, int type, const void *w, size_t row_bytes, int nr, int64_t n) {
    uint32_t *p = (uint32_t *)(void *)pan;
#if defined(__x86_64__)
    if (g4_bf16_dot_ok()) { pack_rows_512(p, type, w, row_bytes, nr, n); return; }
#endif
    pack_rows_ref(p, type, w, row_bytes, nr, n, 0);
}

void g4_bf16_pack_f32(uint16_t *pan, const float *src, size_t rs, size_t ks, int nr, int64_t n) {
    uint32_t *p = (uint32_t *)(void *)pan;
#if defined(__x86_64__)
    if (g4_bf16_dot_ok()) { pack_f32_512(p, src, rs, ks, nr, n); return; }
#endif
    pack_f32_ref(p, src, rs, ks, nr, n, 0);
}

static void gemm_any(int add, const uint16_t *pan, int64_t n, int nrows, const uint16_t *x, size_t xs, int T,
                     float *y, size_t ldy) {
#if defined(__x86_64__)
    if (g4_bf16_dot_ok()) { gemm_512(add, pan, n, nrows, x, xs, T, y, ldy); return; }
#endif
    /* no vdpbf16ps: the same products in f32 (callers check g4_bf16_dot_ok
     * first; this keeps the function total) */
    const int64_t np = (n + 1) / 2;
    for (int r = 0; r < nrows; r++) {
        const uint16_t *pb = pan + (size_t)(r / G4_BF16_PR) * G4_BF16_PR * (size_t)np * 2;
        for (int t = 0; t < T; t++) {
            float acc = add ? y[(size_t)t * ldy + r] : 0;
            for (int64_t p = 0; p < np; p++) {
                const uint16_t *w = pb + ((size_t)p * G4_BF16_PR + (size_t)(r % G4_BF16_PR)) * 2;
                const uint16_t *xx = x + (size_t)t * xs + 2 * (size_t)p;
                acc += g4_bf16_to_fp32(w[1]) * g4_bf16_to_fp32(xx[1]);
                acc += g4_bf16_to_fp32(w[0]) * g4_bf16_to_fp32(xx[0]);
            }
            y[(size_t)t * ldy + r] = acc;
        }
    }
}

void g4_bf16_gemm(const uint16_t *pan, int64_t n, int nrows, const uint16_t *x, size_t xs, int T, float *y,
                  size_t ldy) {
    gemm_any(0, pan, n, nrows, x, xs, T, y, ldy);
}

void g4_bf16_gemm_add(const uint16_t *pan, int64_t n, int nrows, const uint16_t *x, size_t xs, int T, float *y,
                      size_t ldy) {
    gemm_any(1, pan, n, nrows, x, xs, T, y, ldy);
}
