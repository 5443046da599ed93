/* Full-width (zmm) AVX-512 VNNI kernels: Q4_0 and Q8_0 weights x Q8_0
 * activations.
 *
 * Unit of work: a group of 4 consecutive blocks (128 weights). A weight group
 * is gathered into two zmm, lo = elements 0..15 and hi = elements 16..31 of
 * each block (128-bit lane k = block k), so one vpdpbusd pair leaves the 4
 * partial sums of block k in lane k and a per-lane scale vector dw*dx turns
 * them into floats: 2 vpdpbusd + cvt + mul + fma per row, token and group.
 *
 * vpdpbusd multiplies UNSIGNED by SIGNED bytes: weights enter unsigned
 * (Q4_0: the nibble q; Q8_0: w ^ 0x80 = w + 128) and the offset (8 resp. 128
 * times the activation sum) seeds the integer accumulator. The activations
 * are repacked ONCE per gemm call and token into that layout, with their
 * seeds and scales, in a stack buffer (chunked along n), so the row loop does
 * no per-token work.
 *
 * Prefill tiles RT rows x CT tokens: each gathered weight group serves CT
 * tokens, each activation group RT rows. Integer sums are exact; the float
 * summation order differs from the reference. */
#include "tensor/quant_isa.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/quant_ref.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__) && !defined(__STRICT_ANSI__)
#pragma GCC optimize("fp-contract=off")
#endif

#define TGT __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INL TGT static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

enum {
    QK = 32,
    Q4_0_SIZE = 18,
    Q8_0_SIZE = 34,
    GB = 4,   /* blocks per group */
    RT = 6,   /* prefill tile: rows (measured 2x4..8x4, 4x6, 5x5, 6x5, 8x3: 6x4 best) */
    CT = 4,   /* prefill tile: tokens */
    GCH = 128, /* activation groups per token per chunk (16384 weights): CT*GCH*256 B = 128 KB of stack */
};
enum { K_Q4_0, K_Q8_0 };

/* one activation group, as the row loop reads it */
typedef struct {
    __m512i lo, hi; /* elements 0..15 / 16..31 of block k in 128-bit lane k */
    __m512i seed;   /* -(offset * partial sums of the activations), per int32 lane */
    __m512 dx;      /* block k's scale in lanes 4k..4k+3 */
} xgroup;

/* 4 Q8_0 blocks at p: halves into lo/hi (lane k = block k) */
INL void q8_halves(const uint8_t *p, __m512i *lo, __m512i *hi) {
    const __m512i a = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2))),
                                         _mm256_loadu_si256((const __m256i *)(const void *)(p + Q8_0_SIZE + 2)), 1);
    const __m512i b = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * Q8_0_SIZE + 2))),
                                         _mm256_loadu_si256((const __m256i *)(const void *)(p + 3 * Q8_0_SIZE + 2)), 1);
    *lo = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    *hi = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

/* word index tables for vpermw / vpermt2w */
static const int16_t IDX_D4[32] __attribute__((aligned(64))) = { /* Q4_0 scale k: word 9k */
    0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27 };
static const int16_t IDX_D8[32] __attribute__((aligned(64))) = { /* Q8_0 scale k: word 17k */
    0, 0, 0, 0, 17, 17, 17, 17, 34, 34, 34, 34, 51, 51, 51, 51 };
#define LDIDX(t) _mm512_load_si512((const void *)(t))

/* 4 Q8_0 blocks at p: scales, block k in lanes 4k..4k+3 (reads p[0..127]) */
INL __m512 q8_scales(const uint8_t *p, __m512i idx) {
    const __m512i d = _mm512_permutex2var_epi16(_mm512_loadu_si512((const void *)p), idx,
                                                _mm512_loadu_si512((const void *)(p + 64)));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(d));
}

/* Activations of one token, blocks [b0, b0 + nblk) of row x, into out[]. */
INL void prep_x(const int kind, const uint8_t *x, int64_t b0, int64_t nblk, xgroup *out, __m512i idx8) {
    const __m512i off = _mm512_set1_epi8(kind == K_Q4_0 ? 8 : (char)0x80), z = _mm512_setzero_si512();
    int64_t g = 0;
    for (; (g + 1) * GB <= nblk; g++) {
        const uint8_t *p = x + (size_t)(b0 + g * GB) * Q8_0_SIZE;
        __m512i lo, hi;
        q8_halves(p, &lo, &hi);
        out[g].lo = lo;
        out[g].hi = hi;
        out[g].seed = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, off, lo), off, hi));
        out[g].dx = q8_scales(p, idx8);
    }
    const int tail = (int)(nblk - g * GB);
    if (tail) { /* zero blocks contribute nothing */
        uint8_t tmp[GB * Q8_0_SIZE] __attribute__((aligned(64)));
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, x + (size_t)(b0 + g * GB) * Q8_0_SIZE, (size_t)tail * Q8_0_SIZE);
        __m512i lo, hi;
        q8_halves(tmp, &lo, &hi);
        out[g].lo = lo;
        out[g].hi = hi;
        out[g].seed = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, off, lo), off, hi));
        out[g].dx = q8_scales(tmp, idx8);
    }
}

/* One weight group at p: unsigned lo/hi and scales. */
typedef struct { __m512i lo, hi; __m512 d; } wgroup;

/* byte mask of the first v bytes of a 64-byte vector (v <= 0: none) */
static inline __mmask64 first_bytes(int v) { return v >= 64 ? ~(__mmask64)0 : v <= 0 ? 0 : (((__mmask64)1 << v) - 1); }

/* t = 4: a full group; t = 1..3: the row's partial last group, read with
 * masked loads (nothing past the row is touched; the missing blocks get
 * d = 0, and their activations are zero) */
INL wgroup load_w_t(const int kind, const uint8_t *p, __m512i idxd, const int t) {
    wgroup r;
    if (kind == K_Q4_0) {
        const __m512i a = t == GB ? _mm512_loadu_si512((const void *)p) : _mm512_maskz_loadu_epi8(first_bytes(t * Q4_0_SIZE), p);
        __m512i q = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(p + 2)));
        if (t == GB) {
            q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(const void *)(p + 20)), 1);
            q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(const void *)(p + 38)), 2);
            q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(const void *)(p + 56)), 3);
        } else {
            q = _mm512_inserti32x4(q, _mm_maskz_loadu_epi8(t > 1 ? 0xFFFF : 0, p + 20), 1);
            q = _mm512_inserti32x4(q, _mm_maskz_loadu_epi8(t > 2 ? 0xFFFF : 0, p + 38), 2);
        }
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        r.lo = _mm512_and_si512(q, m4);
        r.hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        r.d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idxd, a)));
    } else {
        const __m512i k80 = _mm512_set1_epi8((char)0x80);
        if (t == GB) {
            q8_halves(p, &r.lo, &r.hi);
            r.d = q8_scales(p, idxd);
        } else {
            __m256i h[GB];
            UNROLL for (int k = 0; k < GB; k++)
                h[k] = _mm256_maskz_loadu_epi8(k < t ? ~(__mmask32)0 : 0, p + (size_t)k * Q8_0_SIZE + 2);
            const __m512i a = _mm512_inserti64x4(_mm512_castsi256_si512(h[0]), h[1], 1);
            const __m512i b = _mm512_inserti64x4(_mm512_castsi256_si512(h[2]), h[3], 1);
            r.lo = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));
            r.hi = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));
            const int v = t * Q8_0_SIZE;
            const __m512i d = _mm512_permutex2var_epi16(_mm512_maskz_loadu_epi8(first_bytes(v), p), idxd,
                                                        _mm512_maskz_loadu_epi8(first_bytes(v - 64), p + 64));
            r.d = _mm512_cvtph_ps(_mm512_castsi512_si256(d));
        }
        r.lo = _mm512_xor_si512(r.lo, k80);
        r.hi = _mm512_xor_si512(r.hi, k80);
    }
    return r;
}
#define load_w(kind, p, idxd) load_w_t(kind, p, idxd, GB)

INL __m512 fdot(__m512 acc, const wgroup *w, const xgroup *x) {
    const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(x->seed, w->lo, x->lo), w->hi, x->hi);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(w->d, x->dx), acc);
}

/* R rows x C tokens over ng full groups from group g0 (+ a partial group of
 * `tail` blocks); xg[c*xgs + g] holds token c's group g of this chunk.
 * y gets (add = 0) or accumulates (add = 1) the results.
 * Batch invariance: every path (decode row, prefill tile, tail) performs the
 * same float operations per (row, token): one accumulator chain over the
 * groups in order, reduced every GCH groups (at the same absolute block
 * positions as prefill's chunks) and added to the running sum left to
 * right; so a decode call's longer chunk splits its sums where prefill's
 * chunks end. */
INL void tile(const int R, const int C, const int kind, int64_t g0, int64_t ng, int tail, const uint8_t *w,
              size_t ws, const xgroup *xg, size_t xgs, float *y, size_t ys, int add) {
    const size_t gsz = kind == K_Q4_0 ? GB * Q4_0_SIZE : GB * Q8_0_SIZE;
    const __m512i idxd = LDIDX(kind == K_Q4_0 ? IDX_D4 : IDX_D8);
    float sum[RT][CT];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) sum[r][c] = add ? y[(size_t)c * ys + (size_t)r] : 0.0f;
    const uint8_t *wr = w + (size_t)g0 * gsz;
    const int64_t ngt = ng + (tail ? 1 : 0); /* the partial group is group ng */
    for (int64_t s0 = 0; s0 < ngt; s0 += GCH) {
        const int64_t s1 = ngt - s0 < GCH ? ngt : s0 + GCH;
        const int64_t f1 = s1 < ng ? s1 : ng; /* full groups of the segment end here */
        __m512 acc[RT][CT];
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
        /* all rows' weights first, then token by token (a row-by-row order, and
         * folding two groups' integer sums into one float step, measured slower) */
        for (int64_t g = s0; g < f1; g++) {
            wgroup wv[RT];
            UNROLL for (int r = 0; r < R; r++) wv[r] = load_w(kind, wr + (size_t)r * ws + (size_t)g * gsz, idxd);
            UNROLL for (int c = 0; c < C; c++) {
                const xgroup *xc = xg + (size_t)c * xgs + g;
                UNROLL for (int r = 0; r < R; r++) acc[r][c] = fdot(acc[r][c], &wv[r], xc);
            }
        }
        if (s1 > ng) { /* masked loads: not past the row (a zero-padded copy per row ran 704-wide Q4_0 at 0.44 of a read) */
            UNROLL for (int r = 0; r < R; r++) {
                const wgroup wv = load_w_t(kind, wr + (size_t)r * ws + (size_t)ng * gsz, idxd, tail);
                UNROLL for (int c = 0; c < C; c++) acc[r][c] = fdot(acc[r][c], &wv, xg + (size_t)c * xgs + ng);
            }
        }
        /* the first segment of a row is its sum (0 + s would turn -0 into +0) */
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) {
            const float v = _mm512_reduce_add_ps(acc[r][c]);
            sum[r][c] = add || s0 ? sum[r][c] + v : v;
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) y[(size_t)c * ys + (size_t)r] = sum[r][c];
}

#define TILE_CASE(R, C)                                                        \
    case (R) * 16 + (C): tile(R, C, kind, g0, ng, tail, w, ws, xg, xgs, y, ys, add); break;
#define TILE_ROW(R) TILE_CASE(R, 1) TILE_CASE(R, 2) TILE_CASE(R, 3) TILE_CASE(R, 4)
_Static_assert(RT == 6 && CT == 4, "the switch below covers 1..6 x 1..4");

INL void tile_any(const int kind, int R, int C, int64_t g0, int64_t ng, int tail, const uint8_t *w, size_t ws,
                  const xgroup *xg, size_t xgs, float *y, size_t ys, int add) {
    switch (R * 16 + C) {
        TILE_ROW(1) TILE_ROW(2) TILE_ROW(3) TILE_ROW(4) TILE_ROW(5) TILE_ROW(6)
    default: break;
    }
}

INL void gemm_kind(const int kind, int64_t n, int nr, int nc, const void *vw, size_t ws, const void *vx, size_t xs,
                   float *y, size_t ys) {
    const uint8_t *w = vw, *x = vx;
    const int64_t nb = n / QK;
    xgroup buf[CT * GCH];   /* up to CT tokens x one chunk */
    const __m512i idx8 = LDIDX(IDX_D8);
    if (nb == 0) {
        for (int c = 0; c < nc; c++) for (int r = 0; r < nr; r++) y[(size_t)c * ys + (size_t)r] = 0;
        return;
    }
    /* decode: one token at a time; prefill: CT tokens */
    const int cstep = nc == 1 ? 1 : CT;
    /* the same chunk (16384 weights) whatever nc: chunks add into y one by
     * one, so their boundaries are part of a result's rounding */
    const int64_t chunk = (int64_t)GCH * GB; /* blocks */
    /* decode: one row stream at a time (2 interleaved rows streamed slower from DRAM) */
    const int rstep = nc == 1 ? 1 : RT;
    for (int c0 = 0; c0 < nc; c0 += cstep) {
        const int C = nc - c0 < cstep ? nc - c0 : cstep;
        for (int64_t b0 = 0; b0 < nb; b0 += chunk) {
            const int64_t nblk = nb - b0 < chunk ? nb - b0 : chunk;
            const size_t xgs = (size_t)((chunk + GB - 1) / GB);
            for (int c = 0; c < C; c++) prep_x(kind, x + (size_t)(c0 + c) * xs, b0, nblk, buf + (size_t)c * xgs, idx8);
            const int64_t g0 = b0 / GB, ng = nblk / GB;
            const int tail = (int)(nblk % GB);
            for (int r0 = 0; r0 < nr; r0 += rstep) {
                const int R = nr - r0 < rstep ? nr - r0 : rstep;
                tile_any(kind, R, C, g0, ng, tail, w + (size_t)r0 * ws, ws, buf, xgs, y + (size_t)c0 * ys + (size_t)r0, ys,
                         b0 > 0);
            }
        }
    }
}

TGT static void gemm_q4_0_avx512q(int64_t n, int nr, int nc, const void *w, size_t ws, const void *x, size_t xs,
                                  float *y, size_t ys) {
    gemm_kind(K_Q4_0, n, nr, nc, w, ws, x, xs, y, ys);
}
TGT static void gemm_q8_0_avx512q(int64_t n, int nr, int nc, const void *w, size_t ws, const void *x, size_t xs,
                                  float *y, size_t ys) {
    gemm_kind(K_Q8_0, n, nr, nc, w, ws, x, xs, y, ys);
}
TGT static float vd_q4_0_avx512q(const void *w, const void *x, int64_t n) {
    float r = 0;
    gemm_kind(K_Q4_0, n, 1, 1, w, 0, x, 0, &r, 0);
    return r;
}
TGT static float vd_q8_0_avx512q(const void *w, const void *x, int64_t n) {
    float r = 0;
    gemm_kind(K_Q8_0, n, 1, 1, w, 0, x, 0, &r, 0);
    return r;
}

void g4_quant_avx512_q_fill(int type, int level, g4_type_traits *tr) {
    if (level != G4_CPU_AVX512) return;
    if (type == G4_Q4_0) { tr->vec_dot = vd_q4_0_avx512q; tr->gemm = gemm_q4_0_avx512q; tr->gemm_panel = g4_p512_kernel(type); }
    else if (type == G4_Q8_0) { tr->vec_dot = vd_q8_0_avx512q; tr->gemm = gemm_q8_0_avx512q; tr->gemm_panel = g4_p512_kernel(type); }
}

#else /* !__x86_64__ */

void g4_quant_avx512_q_fill(int type, int level, g4_type_traits *tr) { (void)type; (void)level; (void)tr; }

#endif
