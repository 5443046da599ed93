/* x86 kernels for the legacy 32-weight types llama-quantize falls back to
 * when a row is not a multiple of 256 (26B-A4B Q4_K_M: the 704-wide expert
 * down projections are Q5_0; IQ4_XS files: IQ4_NL), and for files of those
 * types:
 *   Q5_0 x Q8_0: value (q - 16) * d, q = nibble | hbit << 4
 *   Q5_1 x Q8_1: value q * d + m   -> d*dx*sum(q*x) + m*sx   (sx = dx*sum(x))
 *   Q4_1 x Q8_1: value q * d + m   -> the same with q = nibble
 *   IQ4_NL x Q8_0: value kvalues[nibble] * d (a 16-entry table, -127..113)
 * Weights enter the u8 x s8 multiply as unsigned codes q (IQ4_NL: the table
 * value + 128, by one vpshufb); the offset (Q5_0 -16, IQ4_NL -128) is taken
 * out with offset*sum(x) (AVX-512) or by signing the value (AVX2).
 *
 * AVX-512 level: full zmm, the structure of quant_avx512_q.c: groups of 4
 * blocks (block k in 128-bit lane k, elements 0..15 in `lo`, 16..31 in `hi`),
 * activations repacked once per call and token, RT x CT prefill tiles, one
 * row stream at a time for decode (two for short rows). A row's last, partial
 * group (704 wide = 5.5 groups) is read with masked loads, not copied. The
 * 5th bits become byte masks with vpshufb + vptestmb (a vmovq + kmovq route
 * measured no faster; masks built from scalar loads, and one vpermt2w
 * gathering all 4 qs instead of 4 loads, both measured 1.5-3x slower). The m*sx term enters through an activation vector that
 * holds sx only in lane 4k (zero elsewhere), so one fma adds it once per block.
 *
 * AVX2 level: 256-bit, one block per step (lo half = elements 0..15), the
 * tile scheme of quant_x86_body.h; maddubs + madd (no VNNI). The m*sx term
 * accumulates in a scalar per row and token.
 *
 * Integer sums are exact; float summation order differs from the reference. */
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

#define T512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define T256 __attribute__((target("avx2,fma,f16c")))
#define INL512 T512 static inline __attribute__((always_inline))
#define INL256 T256 static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

enum { K50, K51, K41, KNL }; /* weight kinds; KNL: IQ4_NL */
enum {
    QK = 32,
    Q5_0_SIZE = 22, Q5_1_SIZE = 24, Q4_1_SIZE = 20, IQ4_NL_SIZE = 18,
    Q8_0_SIZE = 34, Q8_1_SIZE = 36,
    GB = 4,   /* blocks per zmm group */
    RT = 6,   /* zmm prefill tile: rows */
    CT = 4,   /* zmm prefill tile: tokens */
    GCH = 32, /* activation groups per token per chunk (4096 weights) */
    RT2 = 2,  /* ymm tile rows (16 registers) */
    CT2 = 4,  /* ymm tile tokens */
};

/* zmm prefill tile rows per type (measured 4..6 at 4096 x 256 x 64: Q5_0 6,
 * Q5_1 / Q4_1 5: their min vectors need registers too). Decode rows of at
 * most DEC2 blocks go two at a time: streamed from DRAM (bench_kernels
 * --stream 2) that reads 704-768 wide rows at 0.77-0.81 of a plain read
 * instead of 0.61-0.77, but from 896 wide on the two rows are two streams
 * apart and the pair ran at 0.27-0.53 (1024-2048 wide: 0.27-0.38) against
 * 0.82-0.87 one row at a time. Software prefetch 4-16 KB ahead measured no
 * gain. */
#define RT50 6
#define RT51 5
#define RT41 5
#define DEC2 24

static inline size_t wsize(int kind) {
    return kind == K50 ? Q5_0_SIZE : kind == K51 ? Q5_1_SIZE : kind == K41 ? Q4_1_SIZE : IQ4_NL_SIZE;
}
/* activations: Q8_0 (d, qs) or Q8_1 (d, s, qs) */
static inline int x_is_q8_0(int kind) { return kind == K50 || kind == KNL; }
static inline int has_min(int kind) { return kind == K51 || kind == K41; }
static inline int has_qh(int kind) { return kind == K50 || kind == K51; }
static inline size_t xsize(int kind) { return x_is_q8_0(kind) ? Q8_0_SIZE : Q8_1_SIZE; }
/* byte offsets inside a weight block: qh (Q5 only), qs, m (_1 only) */
static inline size_t woff_qs(int kind) { return kind == K50 ? 6 : kind == K51 ? 8 : kind == K41 ? 4 : 2; }
static inline size_t woff_qh(int kind) { return kind == K50 ? 2 : 4; }
static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* ========================================================================== */
/*  AVX-512 (zmm)                                                             */
/* ========================================================================== */

/* vpermt2w word tables over (a = group[0..63], b = group[gsz-64 .. gsz-1]);
 * block k fills words 4k..4k+3 of the scale vectors (-> float lanes) and
 * words 8k..8k+7 (128-bit lane k) of the qh vectors (lo, hi word of its qh). */
#define D4(a, b, c, d) a, a, a, a, b, b, b, b, c, c, c, c, d, d, d, d
#define H4(a, b, c, d) a, a + 1, a, a + 1, a, a + 1, a, a + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1, \
                       c, c + 1, c, c + 1, c, c + 1, c, c + 1, d, d + 1, d, d + 1, d, d + 1, d, d + 1
/* Q5_0: 88-byte group, b at +24: d_k at 22k, qh_k at 22k+2 */
static const int16_t IDX_D50[32] __attribute__((aligned(64))) = { D4(0, 11, 22, 32 + 21) };
static const int16_t IDX_H50[32] __attribute__((aligned(64))) = { H4(1, 12, 23, 32 + 22) };
/* Q5_1: 96-byte group, b at +32: d_k at 24k, m at +2, qh at +4 */
static const int16_t IDX_D51[32] __attribute__((aligned(64))) = { D4(0, 12, 24, 32 + 20) };
static const int16_t IDX_M51[32] __attribute__((aligned(64))) = { D4(1, 13, 25, 32 + 21) };
static const int16_t IDX_H51[32] __attribute__((aligned(64))) = { H4(2, 14, 26, 32 + 22) };
/* IQ4_NL: 72-byte group, all scales in a: d_k at 18k */
static const int16_t IDX_DNL[32] __attribute__((aligned(64))) = { D4(0, 9, 18, 27) };
/* Q4_1: 80-byte group, all scales in a: d_k at 20k, m at +2 */
static const int16_t IDX_D41[32] __attribute__((aligned(64))) = { D4(0, 10, 20, 30) };
static const int16_t IDX_M41[32] __attribute__((aligned(64))) = { D4(1, 11, 21, 31) };
/* activations (a = group[0..63], b = group[64..127]): Q8_0 d_k at 34k; Q8_1 d_k at 36k, s at +2 */
static const int16_t IDX_X80[32] __attribute__((aligned(64))) = { D4(0, 17, 34, 51) };
static const int16_t IDX_X81[32] __attribute__((aligned(64))) = { D4(0, 18, 36, 54) };
static const int16_t IDX_S81[32] __attribute__((aligned(64))) = { D4(1, 19, 37, 55) };
/* qh bytes: lo half reads qh bytes 0,1, hi half bytes 2,3; byte j tests bit j%8 */
static const uint8_t SHUF_HLO[64] __attribute__((aligned(64))) = {
#define L4(x) x, x, x, x, x, x, x, x, x + 1, x + 1, x + 1, x + 1, x + 1, x + 1, x + 1, x + 1
    L4(0), L4(0), L4(0), L4(0) };
static const uint8_t SHUF_HHI[64] __attribute__((aligned(64))) = { L4(2), L4(2), L4(2), L4(2) };
#undef L4
static const uint8_t BITS[64] __attribute__((aligned(64))) = {
#define B8 1, 2, 4, 8, 16, 32, 64, 128
    B8, B8, B8, B8, B8, B8, B8, B8 };
#undef B8
#define LD(t) _mm512_load_si512((const void *)(t))

/* one activation group, as the row loop reads it */
typedef struct {
    __m512i lo, hi; /* elements 0..15 / 16..31 of block k in 128-bit lane k */
    __m512i seed;   /* Q5_0: -16 * partial sums of the activations */
    __m512 dx;      /* block k's scale in lanes 4k..4k+3 */
    __m512 sx;      /* Q8_1 s of block k in lane 4k, zero elsewhere */
} xgroup;

INL512 void x_halves(const uint8_t *p, size_t bs, size_t off, __m512i *lo, __m512i *hi) {
    const __m512i a = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(p + off))),
                                         _mm256_loadu_si256((const __m256i *)(const void *)(p + bs + off)), 1);
    const __m512i b = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * bs + off))),
                                         _mm256_loadu_si256((const __m256i *)(const void *)(p + 3 * bs + off)), 1);
    *lo = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    *hi = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

/* one group at p (reads p[0..127]; callers pad the tail group) */
INL512 void prep_group(const int kind, const uint8_t *p, xgroup *o) {
    const __m512i z = _mm512_setzero_si512();
    const __m512i a = _mm512_loadu_si512((const void *)p), b = _mm512_loadu_si512((const void *)(p + 64));
    x_halves(p, xsize(kind), x_is_q8_0(kind) ? 2 : 4, &o->lo, &o->hi);
    if (x_is_q8_0(kind)) { /* the codes' offset: 16 (Q5_0) or 128 (IQ4_NL) */
        const __m512i k = _mm512_set1_epi8((char)(kind == K50 ? 16 : 128));
        o->seed = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, k, o->lo), k, o->hi));
        o->dx = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(a, LD(IDX_X80), b)));
        o->sx = _mm512_setzero_ps();
    } else {
        o->seed = z;
        o->dx = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(a, LD(IDX_X81), b)));
        o->sx = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_maskz_permutex2var_epi16(0x1111, a, LD(IDX_S81), b)));
    }
}

/* Activations of one token, blocks [b0, b0 + nblk) of row x, into out[]. */
INL512 void prep_x(const int kind, const uint8_t *x, int64_t b0, int64_t nblk, xgroup *out) {
    const size_t bs = xsize(kind);
    int64_t g = 0;
    /* prep_group reads 128 bytes: inside a full group (136 / 144 bytes) */
    for (; (g + 1) * GB <= nblk; g++) prep_group(kind, x + (size_t)(b0 + g * GB) * bs, out + g);
    const int tail = (int)(nblk - g * GB);
    if (tail) { /* zero blocks contribute nothing */
        uint8_t tmp[GB * Q8_1_SIZE] __attribute__((aligned(64)));
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, x + (size_t)(b0 + g * GB) * bs, (size_t)tail * bs);
        prep_group(kind, tmp, out + g);
    }
}

/* One weight group: unsigned codes lo/hi, scales d and (Q5_1/Q4_1) mins m. */
typedef struct { __m512i lo, hi; __m512 d, m; } wgroup;

/* t = 4: a full group; t = 1..3: a partial group at the row end, read with
 * masked loads (no fault past the row, zeros in the missing blocks: d = 0) */
INL512 wgroup load_w_t(const int kind, const uint8_t *p, const int t) {
    wgroup r;
    const size_t bs = wsize(kind), gsz = GB * bs, oq = woff_qs(kind);
    __m512i a, b, q;
    if (t == GB) {
        a = _mm512_loadu_si512((const void *)p);
        b = kind == K41 || kind == KNL ? a : _mm512_loadu_si512((const void *)(p + gsz - 64));
        q = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(p + oq)));
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(const void *)(p + bs + oq)), 1);
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(const void *)(p + 2 * bs + oq)), 2);
        q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(const void *)(p + 3 * bs + oq)), 3);
    } else {
        const int v = t * (int)bs, vb = v - (int)(gsz - 64); /* valid bytes from p, from b's start */
        const __mmask64 ma = v >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << v) - 1);
        const __mmask64 mb = vb <= 0 ? 0 : (((__mmask64)1 << vb) - 1);
        a = _mm512_maskz_loadu_epi8(ma, p);
        b = kind == K41 || kind == KNL ? a : _mm512_maskz_loadu_epi8(mb, p + gsz - 64);
        q = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(p + oq)));
        q = _mm512_inserti32x4(q, _mm_maskz_loadu_epi8(t > 1 ? 0xFFFF : 0, p + bs + oq), 1);
        q = _mm512_inserti32x4(q, _mm_maskz_loadu_epi8(t > 2 ? 0xFFFF : 0, p + 2 * bs + oq), 2);
        q = _mm512_inserti32x4(q, _mm512_castsi512_si128(_mm512_setzero_si512()), 3);
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    r.lo = _mm512_and_si512(q, m4);
    r.hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    if (kind == KNL) { /* the levels + 128 (unsigned codes), in every 128-bit lane */
        const __m512i kv = _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)g4_kvalues_iq4nl)), _mm512_set1_epi8((char)0x80));
        r.lo = _mm512_shuffle_epi8(kv, r.lo);
        r.hi = _mm512_shuffle_epi8(kv, r.hi);
    }
    const __m512i idd = LD(kind == K50 ? IDX_D50 : kind == K51 ? IDX_D51 : kind == K41 ? IDX_D41 : IDX_DNL);
    r.d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(a, idd, b)));
    if (has_min(kind)) {
        const __m512i idm = LD(kind == K51 ? IDX_M51 : IDX_M41);
        r.m = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(a, idm, b)));
    } else {
        r.m = _mm512_setzero_ps();
    }
    if (has_qh(kind)) {
        const __m512i h = _mm512_permutex2var_epi16(a, LD(kind == K50 ? IDX_H50 : IDX_H51), b);
        const __m512i bits = LD(BITS), k16 = _mm512_set1_epi8(16);
        const __mmask64 mlo = _mm512_test_epi8_mask(_mm512_shuffle_epi8(h, LD(SHUF_HLO)), bits);
        const __mmask64 mhi = _mm512_test_epi8_mask(_mm512_shuffle_epi8(h, LD(SHUF_HHI)), bits);
        r.lo = _mm512_mask_add_epi8(r.lo, mlo, r.lo, k16);
        r.hi = _mm512_mask_add_epi8(r.hi, mhi, r.hi, k16);
    }
    return r;
}
#define load_w(kind, p) load_w_t(kind, p, GB)

INL512 __m512 fdot(const int kind, __m512 acc, const wgroup *w, const xgroup *x) {
    const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(x->seed, w->lo, x->lo), w->hi, x->hi);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(w->d, x->dx), acc);
    if (has_min(kind)) acc = _mm512_fmadd_ps(w->m, x->sx, acc);
    return acc;
}

/* R rows x C tokens over ng full groups from group g0 (+ a partial group of
 * `tail` blocks); xg[c*xgs + g] holds token c's group g of this chunk.
 * y gets (add = 0) or accumulates (add = 1) the results.
 * Batch invariance (as quant_avx512_q.c): every path performs the same
 * float operations per (row, token): one accumulator chain over the groups
 * in order, reduced every GCH groups (where prefill's chunks end) and added
 * to the running sum left to right. */
INL512 void tile(const int R, const int C, const int kind, int64_t g0, int64_t ng, int tail, const uint8_t *w,
                 size_t ws, const xgroup *xg, size_t xgs, float *y, size_t ys, int add) {
    const size_t gsz = GB * wsize(kind);
    float sum[RT][CT];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) sum[r][c] = add ? y[(size_t)c * ys + (size_t)r] : 0.0f;
    const uint8_t *wr = w + (size_t)g0 * gsz;
    const int64_t ngt = ng + (tail ? 1 : 0); /* the partial group is group ng */
    for (int64_t s0 = 0; s0 < ngt; s0 += GCH) {
        const int64_t s1 = ngt - s0 < GCH ? ngt : s0 + GCH;
        const int64_t f1 = s1 < ng ? s1 : ng;
        __m512 acc[RT][CT];
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
        for (int64_t g = s0; g < f1; g++) {
            wgroup wv[RT];
            UNROLL for (int r = 0; r < R; r++) wv[r] = load_w(kind, wr + (size_t)r * ws + (size_t)g * gsz);
            UNROLL for (int c = 0; c < C; c++) {
                const xgroup *xc = xg + (size_t)c * xgs + g;
                UNROLL for (int r = 0; r < R; r++) acc[r][c] = fdot(kind, acc[r][c], &wv[r], xc);
            }
        }
        if (s1 > ng) { /* the row's partial last group, masked loads */
            UNROLL for (int r = 0; r < R; r++) {
                const wgroup wv = load_w_t(kind, wr + (size_t)r * ws + (size_t)ng * gsz, tail);
                UNROLL for (int c = 0; c < C; c++) acc[r][c] = fdot(kind, acc[r][c], &wv, xg + (size_t)c * xgs + ng);
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

INL512 void tile_any(const int kind, int R, int C, int64_t g0, int64_t ng, int tail, const uint8_t *w, size_t ws,
                     const xgroup *xg, size_t xgs, float *y, size_t ys, int add) {
    switch (R * 16 + C) {
        TILE_ROW(1) TILE_ROW(2) TILE_ROW(3) TILE_ROW(4) TILE_ROW(5) TILE_ROW(6)
    default: break;
    }
}
#undef TILE_CASE
#undef TILE_ROW

INL512 void gemm512(const int kind, int64_t n, int nr, int nc, const void *vw, size_t ws, const void *vx, size_t xs,
                    float *y, size_t ys) {
    const uint8_t *w = vw, *x = vx;
    const int64_t nb = n / QK;
    xgroup buf[CT * GCH];
    if (nb == 0) {
        for (int c = 0; c < nc; c++) for (int r = 0; r < nr; r++) y[(size_t)c * ys + (size_t)r] = 0;
        return;
    }
    /* decode: the whole buffer for the one token; prefill: CT tokens */
    const int cstep = nc == 1 ? 1 : CT;
    const int64_t chunk = nc == 1 ? (int64_t)CT * GCH * GB : (int64_t)GCH * GB; /* blocks */
    /* decode: one row stream at a time; short rows (the 704-wide Q5_0 expert
     * down projections: 5.5 groups) two at a time to halve the per-row overhead */
    const int rstep = nc == 1 ? (nb <= DEC2 ? 2 : 1) : kind == K51 ? RT51 : kind == K41 ? RT41 : RT50; /* KNL: as Q5_0 */
    for (int c0 = 0; c0 < nc; c0 += cstep) {
        const int C = nc - c0 < cstep ? nc - c0 : cstep;
        for (int64_t b0 = 0; b0 < nb; b0 += chunk) {
            const int64_t nblk = nb - b0 < chunk ? nb - b0 : chunk;
            const size_t xgs = (size_t)((chunk + GB - 1) / GB);
            for (int c = 0; c < C; c++) prep_x(kind, x + (size_t)(c0 + c) * xs, b0, nblk, buf + (size_t)c * xgs);
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

#define ZMM_KERNELS(t, K)                                                                                    \
    T512 static void gemm_##t##_z(int64_t n, int nr, int nc, const void *w, size_t ws, const void *x, size_t xs, \
                                  float *y, size_t ys) {                                                     \
        gemm512(K, n, nr, nc, w, ws, x, xs, y, ys);                                                          \
    }                                                                                                        \
    T512 static float vd_##t##_z(const void *w, const void *x, int64_t n) {                                 \
        float r = 0;                                                                                         \
        gemm512(K, n, 1, 1, w, 0, x, 0, &r, 0);                                                              \
        return r;                                                                                            \
    }
ZMM_KERNELS(q5_0, K50)
ZMM_KERNELS(q5_1, K51)
ZMM_KERNELS(q4_1, K41)
ZMM_KERNELS(iq4_nl, KNL)
#undef ZMM_KERNELS

/* ========================================================================== */
/*  AVX2 (ymm, maddubs + madd)                                                */
/* ========================================================================== */

INL256 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set (byte j <- bit j) */
INL256 __m256i bits_to_bytes(uint32_t h) {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    /* every bit set except bit j%8: OR gives all ones iff bit j%8 is set */
    const __m256i ones = _mm256_set1_epi64x((long long)0x7fbfdfeff7fbfdfeULL);
    return _mm256_cmpeq_epi8(_mm256_or_si256(v, ones), _mm256_set1_epi8(-1));
}

/* codes of one weight block (lo lane: elements 0..15): unsigned, or for
 * IQ4_NL the signed table values */
INL256 __m256i w_codes(const int kind, const uint8_t *wb) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(wb + woff_qs(kind)));
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
    if (kind == KNL) {
        return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)g4_kvalues_iq4nl)), q);
    }
    if (has_qh(kind)) {
        uint32_t h;
        memcpy(&h, wb + woff_qh(kind), 4);
        q = _mm256_or_si256(q, _mm256_and_si256(bits_to_bytes(h), _mm256_set1_epi8(0x10)));
    }
    return q;
}

/* one weight block x one activation block: the integer sums (8 lanes) */
INL256 __m256i dot256(const int kind, __m256i q, __m256i xv) {
    const __m256i one16 = _mm256_set1_epi16(1);
    if (kind == K50 || kind == KNL) { /* signed (q - 16 in -16..15, or -127..113): |w| x sign-applied x */
        const __m256i w = kind == K50 ? _mm256_sub_epi8(q, _mm256_set1_epi8(16)) : q;
        return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(xv, w)), one16);
    }
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), one16);
}

INL256 void tile256(const int R, const int C, const int kind, int64_t nb, const uint8_t *w, size_t ws,
                    const uint8_t *x, size_t xs, float *y, size_t ys) {
    const size_t wbs = wsize(kind), xbs = xsize(kind), xo = x_is_q8_0(kind) ? 2 : 4;
    __m256 acc[RT2][CT2];
    float ms[RT2][CT2];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) {
        acc[r][c] = _mm256_setzero_ps();
        ms[r][c] = 0;
    }
    /* (a two-block decode step with two accumulators measured no faster: throughput-bound) */
    for (int64_t ib = 0; ib < nb; ib++) {
        __m256i xv[CT2];
        float dx[CT2], sx[CT2];
        UNROLL for (int c = 0; c < C; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)ib * xbs;
            xv[c] = _mm256_loadu_si256((const __m256i *)(const void *)(xb + xo));
            dx[c] = _cvtsh_ss(rd16(xb));
            sx[c] = has_min(kind) ? _cvtsh_ss(rd16(xb + 2)) : 0.0f;
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ws + (size_t)ib * wbs;
            const __m256i q = w_codes(kind, wb);
            const float dw = _cvtsh_ss(rd16(wb)), mw = has_min(kind) ? _cvtsh_ss(rd16(wb + 2)) : 0.0f;
            UNROLL for (int c = 0; c < C; c++) {
                const __m256i s = dot256(kind, q, xv[c]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * dx[c]), acc[r][c]);
                if (has_min(kind)) ms[r][c] += mw * sx[c];
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++)
        y[(size_t)c * ys + (size_t)r] = hsum8(acc[r][c]) + ms[r][c];
}

INL256 void gemm256(const int kind, int64_t n, int nr, int nc, const void *vw, size_t ws, const void *vx, size_t xs,
                    float *y, size_t ys) {
    const int64_t nb = n / QK;
    const uint8_t *w = vw, *x = vx;
    if (nc == 1) { /* decode: one row stream at a time */
        for (int r = 0; r < nr; r++) tile256(1, 1, kind, nb, w + (size_t)r * ws, ws, x, xs, y + r, ys);
        return;
    }
    int r0 = 0;
    for (; r0 < nr; r0 += RT2) {
        const int two = nr - r0 >= RT2;
        int c0 = 0;
        for (; c0 + CT2 <= nc; c0 += CT2) {
            if (two) tile256(RT2, CT2, kind, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + (size_t)r0, ys);
            else tile256(1, CT2, kind, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + (size_t)r0, ys);
        }
        for (; c0 < nc; c0++) {
            if (two) tile256(RT2, 1, kind, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + (size_t)r0, ys);
            else tile256(1, 1, kind, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + (size_t)r0, ys);
        }
    }
}

#define YMM_KERNELS(t, K)                                                                                    \
    T256 static void gemm_##t##_y(int64_t n, int nr, int nc, const void *w, size_t ws, const void *x, size_t xs, \
                                  float *y, size_t ys) {                                                     \
        gemm256(K, n, nr, nc, w, ws, x, xs, y, ys);                                                          \
    }                                                                                                        \
    T256 static float vd_##t##_y(const void *w, const void *x, int64_t n) {                                 \
        float r;                                                                                             \
        tile256(1, 1, K, n / QK, w, 0, x, 0, &r, 0);                                                         \
        return r;                                                                                            \
    }
YMM_KERNELS(q5_0, K50)
YMM_KERNELS(q5_1, K51)
YMM_KERNELS(q4_1, K41)
YMM_KERNELS(iq4_nl, KNL)
#undef YMM_KERNELS

void g4_quant_x86_legacy_fill(int type, int level, g4_type_traits *tr) {
    if (level != G4_CPU_AVX2 && level != G4_CPU_AVX512) return;
    const int z = level == G4_CPU_AVX512;
    switch (type) {
    case G4_Q5_0: tr->vec_dot = z ? vd_q5_0_z : vd_q5_0_y; tr->gemm = z ? gemm_q5_0_z : gemm_q5_0_y; break;
    case G4_Q5_1: tr->vec_dot = z ? vd_q5_1_z : vd_q5_1_y; tr->gemm = z ? gemm_q5_1_z : gemm_q5_1_y; break;
    case G4_Q4_1: tr->vec_dot = z ? vd_q4_1_z : vd_q4_1_y; tr->gemm = z ? gemm_q4_1_z : gemm_q4_1_y; break;
    case G4_IQ4_NL: tr->vec_dot = z ? vd_iq4_nl_z : vd_iq4_nl_y; tr->gemm = z ? gemm_iq4_nl_z : gemm_iq4_nl_y; break;
    default: break;
    }
}

#else /* !__x86_64__ */

void g4_quant_x86_legacy_fill(int type, int level, g4_type_traits *tr) { (void)type; (void)level; (void)tr; }

#endif
