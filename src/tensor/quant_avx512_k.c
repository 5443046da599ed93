/* Full-width AVX-512 (zmm) kernels for Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and
 * IQ4_XS weights x Q8_K activations (see quant_isa.h; only used at the
 * AVX-512 level). IQ4_XS has its own block code (further down); for the rest:
 *
 * Every weight block is unpacked to four zmm of unsigned codes W[k] whose
 * byte i is the weight of activation byte 64k+i (the natural Q8_K order, so
 * activations are loaded as they are), and two zmm of 16-bit scales. Per
 * activation block, vpdpbusd gives P[k] (sums of 4 products, each 32-bit lane
 * inside one sub-block); these fit 16 bits, so pairs are packed and one
 * vpmaddwd / vpdpwssd applies the scales (6 multiplies per 256 weights
 * instead of 8 for vpmaddubsw + vpdpwssd; the multiplier ports are the
 * limit). Then y += float(I) * (d*dx); Q4_K/Q5_K subtract mins . bsums
 * (scaled by dmin*dx) in the same vector; Q6_K's -32 offset enters I as
 * -32*sc . bsums.
 * Prefill: 4 rows x 4 tokens tiles, tokens in pairs (pair_dot). Decode
 * (nc == 1): one row stream at a time (two interleaved rows measured far
 * slower: short streams defeat the hardware prefetcher), software prefetch
 * ahead, and for Q4_K/Q5_K the activation row is re-laid once per
 * call (relayout) so 64-byte weight loads need no shuffles.
 * Q4_K/Q5_K: the 32 bytes of one 64-weight group are broadcast to both zmm
 * halves and shifted by 0 / 4 per half, so low nibbles line up with
 * activations 64k..64k+31 and high nibbles with 64k+32..64k+63.
 * Q6_K: 64 bytes of ql give weights 0..63 (low nibbles) and 64..127 (high);
 * the 2-bit high parts come from the 32 qh bytes broadcast to both halves
 * with a per-half variable shift.
 * Q3_K / Q2_K (16-weight sub-blocks like Q6_K): weights 128n + 32j + l are
 * bits 2j..2j+1 of qs[32n + l], so the 32 qs bytes of a 128-weight half are
 * broadcast to both zmm halves and shifted by 2j per half; Q3_K adds 4 where
 * hmask[l] has bit 4n + j (codes 0..7 for values -4..3: the -4 enters I as
 * -4*sc . bsums, as Q6_K's -32). Q2_K's 4-bit scales and mins take the
 * Q4_K route (mins . bsums scaled by dmin).
 *
 * Integer sums are exact; results equal the reference up to float
 * summation order. Rows may be unaligned. */
#include "tensor/quant_isa.h"

#include "tensor/cpu.h"
#include "tensor/quant_ref.h"
#include "tensor/quant_x86_q3k.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__) && !defined(__STRICT_ANSI__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define QK_K 256
#define Q4_K_SIZE 144
#define Q5_K_SIZE 176
#define Q6_K_SIZE 210
#define Q3_K_SIZE 110
#define Q2_K_SIZE 84
#define IQ4_XS_SIZE 136
#define Q8_K_SIZE 292

#define T512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INL T512 static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* K4R/K5R: Q4_K/Q5_K against activations re-laid by relayout() (decode) */
enum { K4 = 0, K5 = 1, K6 = 2, K4R = 3, K5R = 4, K3 = 5, K2 = 6, KX = 7 }; /* KX: IQ4_XS */
#define IS5(t) ((t) == K5 || (t) == K5R)
/* 16-weight sub-blocks, weights in natural order */
#define IS16(t) ((t) == K6 || (t) == K3 || (t) == K2)
/* no mins: d only, the code offset enters I through E . bsums */
#define DONLY(t) ((t) == K6 || (t) == K3)

/* software prefetch distance of the decode row loop (bytes of weights) */
#ifndef PF_DIST
#define PF_DIST 8192
#endif

/* micro-tile for prefill: rows x tokens */
#ifndef RT
#define RT 4
#endif
#ifndef CT
#define CT 4
#endif

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline float rdf32(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }
#define H2F(p) _cvtsh_ss(rd16(p))

#define LD512(p) _mm512_loadu_si512((const void *)(p))
#define BC256(p) _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(p)))

/* 12 packed Q4_K/Q5_K scale bytes -> bytes 0..7 scales, 8..15 mins */
INL __m128i k4_scm(const uint8_t *p) {
    /* reads 16 bytes: p is 4 bytes into a block of >= 144 */
    const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
    const __m128i t = _mm_shuffle_epi32(a, _MM_SHUFFLE(2, 1, 2, 0));  /* a0 a2 a1 a2 */
    const __m128i t2 = _mm_shuffle_epi32(a, _MM_SHUFFLE(1, 1, 0, 0)); /* a0 a0 a1 a1 */
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(t, _mm_setr_epi32(0, 0, 0, 4)),
                                     _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m128i hb = _mm_and_si128(_mm_srli_epi32(t2, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(lo, hb);
}

/* One unpacked weight block. E: Q4_K/Q5_K mins duplicated per word pair
 * (16 words) or Q6_K's -32*scales, in both 256-bit halves; they multiply
 * the 16 activation bsums. */
typedef struct {
    __m512i W[4], S[2], E;
    __m128 dd; /* d, dmin (Q6_K: d, 0) */
} kblk;

/* Sub-block of the bytes of weight vector k (0..3) in 128-bit lane l */
INL int sbmap(const int type, int k, int l) {
    if (IS16(type)) return 4 * k + l;                                  /* 16 weights each */
    if (type == K4R || type == K5R) return 4 * (k >> 1) + (k & 1) + (l >= 2 ? 2 : 0);
    return 2 * k + (l >= 2);                                           /* natural K4/K5 */
}

/* Scale pattern for packs_epi32(P[k0], P[k0+1]): in lane l, words 0..3 take
 * the scale of P[k0]'s lane l, words 4..7 that of P[k0+1]. Each word's
 * control is w(sb): pshufb (zero-extended byte) or vpermw (word index). */
INL __m512i scale_pat(const int type, int k0, int pshufb) {
    int d[16];
    for (int l = 0; l < 4; l++)
        for (int h = 0; h < 2; h++) {
            const int sb = sbmap(type, k0 + h, l);
            const int w = pshufb ? (sb | 0x8000) : sb;
            d[4 * l + 2 * h] = d[4 * l + 2 * h + 1] = (int)((unsigned)w | ((unsigned)w << 16));
        }
    return _mm512_setr_epi32(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12],
                             d[13], d[14], d[15]);
}

/* Q3_K / Q2_K: 2-bit codes of weights 64k..64k+63 (see the top) */
INL __m512i q2bits(const uint8_t *qs, int k) {
    const __m512i cnt = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * (k & 1))), _mm256_set1_epi16((short)(4 * (k & 1) + 2)), 1);
    return _mm512_and_si512(_mm512_srlv_epi16(BC256(qs + 32 * (k >> 1)), cnt), _mm512_set1_epi8(3));
}

INL void unpack(const int type, const uint8_t *wb, kblk *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (type == K3) { /* hmask[32] qs[64] scales[12] d */
        b->dd = _mm_cvtph_ps(_mm_cvtsi32_si128(rd16(wb + 108)));
        const __m128i sc = g4_q3k_scales(wb + 96);
        const __m512i s16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc));
        const __m512i hm = BC256(wb);
        UNROLL for (int k = 0; k < 4; k++) {
            const int bit = 4 * (k >> 1) + 2 * (k & 1); /* hmask bit of the lower half; upper: bit + 1 */
            const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << bit)), _mm256_set1_epi8((char)(1 << (bit + 1))), 1);
            const __m512i q = q2bits(wb + 32, k);
            b->W[k] = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hm, bits), q, _mm512_set1_epi8(4));
        }
        b->S[0] = _mm512_permutexvar_epi16(scale_pat(type, 0, 0), s16);
        b->S[1] = _mm512_permutexvar_epi16(scale_pat(type, 2, 0), s16);
        b->E = _mm512_broadcast_i64x4(_mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm512_castsi512_si256(s16), 2)));
        return;
    }
    if (type == K2) { /* scales[16] qs[64] d dmin */
        uint32_t dd16;
        memcpy(&dd16, wb + 80, 4);
        b->dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dd16));
        const __m128i sm = _mm_loadu_si128((const __m128i *)(const void *)wb);
        const __m512i scm = _mm512_broadcast_i32x4(_mm_and_si128(sm, _mm_set1_epi8(0x0F)));
        UNROLL for (int k = 0; k < 4; k++) b->W[k] = q2bits(wb + 16, k);
        b->S[0] = _mm512_shuffle_epi8(scm, scale_pat(type, 0, 1));
        b->S[1] = _mm512_shuffle_epi8(scm, scale_pat(type, 2, 1));
        /* word s = min of sub-block s, in both halves */
        b->E = _mm512_broadcast_i64x4(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), _mm_set1_epi8(0x0F))));
        return;
    }
    if (type != K6) {
        const uint8_t *qs = wb + (IS5(type) ? 48 : 16);
        uint32_t dd16;
        memcpy(&dd16, wb, 4);
        const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dd16));
        /* scales and mins bytes in every 128-bit lane */
        const __m512i scm = _mm512_broadcast_i32x4(k4_scm(wb + 4));
        __m512i h = _mm512_setzero_si512();
        if (IS5(type)) h = BC256(wb + 16);
        if (type == K4R || type == K5R) {
            /* 64 bytes = groups 2j, 2j+1: low nibbles are sub-blocks 4j, 4j+2, high 4j+1, 4j+3 */
            UNROLL for (int j = 0; j < 2; j++) {
                const __m512i v = LD512(qs + 64 * j);
                UNROLL for (int u = 0; u < 2; u++) {
                    __m512i q = _mm512_and_si512(u ? _mm512_srli_epi16(v, 4) : v, m4);
                    const int s0 = 4 * j + u, s1 = 4 * j + 2 + u; /* sub-blocks of the two halves */
                    if (IS5(type)) {
                        const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << s0)),
                                                                _mm256_set1_epi8((char)(1 << s1)), 1);
                        q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(h, bits), q, _mm512_set1_epi8(16));
                    }
                    b->W[2 * j + u] = q;
                }
            }
        } else {
            const __m512i cnt = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
            UNROLL for (int k = 0; k < 4; k++) {
                __m512i q = _mm512_and_si512(_mm512_srlv_epi16(BC256(qs + 32 * k), cnt), m4);
                if (IS5(type)) {
                    /* bit 2k of qh -> low nibbles' 5th bit, bit 2k+1 -> high */
                    const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * k))),
                                                            _mm256_set1_epi8((char)(1 << (2 * k + 1))), 1);
                    q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(h, bits), q, _mm512_set1_epi8(16));
                }
                b->W[k] = q;
            }
        }
        b->S[0] = _mm512_shuffle_epi8(scm, scale_pat(type, 0, 1));
        b->S[1] = _mm512_shuffle_epi8(scm, scale_pat(type, 2, 1));
        /* words 2j, 2j+1 = min j, in both halves */
        const __m512i im = _mm512_setr_epi32((int)0x80088008, (int)0x80098009, (int)0x800A800A, (int)0x800B800B,
                                             (int)0x800C800C, (int)0x800D800D, (int)0x800E800E, (int)0x800F800F,
                                             (int)0x80088008, (int)0x80098009, (int)0x800A800A, (int)0x800B800B,
                                             (int)0x800C800C, (int)0x800D800D, (int)0x800E800E, (int)0x800F800F);
        b->E = _mm512_shuffle_epi8(scm, im);
        b->dd = dd;
    } else {
        b->dd = _mm_cvtph_ps(_mm_cvtsi32_si128(rd16(wb + 208)));
        const __m512i s16 = _mm512_castsi256_si512(
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(wb + 192))));
        const __m512i m30 = _mm512_set1_epi8(0x30);
        const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
        const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
        UNROLL for (int h = 0; h < 2; h++) {
            const __m512i a = LD512(wb + 64 * h);
            const __m512i hb = BC256(wb + 128 + 32 * h);
            /* weights 128h + 0..63: qh bits 0-1 (first 32), 2-3 (next 32) */
            b->W[2 * h] = _mm512_ternarylogic_epi32(_mm512_and_si512(a, m4), _mm512_sllv_epi16(hb, shl), m30, 0xF8);
            /* weights 128h + 64..127: qh bits 4-5, 6-7 */
            b->W[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(a, 4), m4),
                                                        _mm512_srlv_epi16(hb, shr), m30, 0xF8);
        }
        b->S[0] = _mm512_permutexvar_epi16(scale_pat(type, 0, 0), s16);
        b->S[1] = _mm512_permutexvar_epi16(scale_pat(type, 2, 0), s16);
        const __m256i e = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm512_castsi512_si256(s16), 5));
        b->E = _mm512_broadcast_i64x4(e);
    }
}

/* Integer sums of one block, 16 lanes (each inside one sub-block before
 * the scales): vpdpbusd per 64 weights, packed to 16 bits (|.| <= 4*63*128
 * < 2^15, so packs is exact), then one multiply by the scales per pair. */
INL __m512i block_int(const kblk *b, const uint8_t *xq) {
    const __m512i z = _mm512_setzero_si512();
    const __m512i p0 = _mm512_dpbusd_epi32(z, b->W[0], LD512(xq));
    const __m512i p1 = _mm512_dpbusd_epi32(z, b->W[1], LD512(xq + 64));
    const __m512i p2 = _mm512_dpbusd_epi32(z, b->W[2], LD512(xq + 128));
    const __m512i p3 = _mm512_dpbusd_epi32(z, b->W[3], LD512(xq + 192));
    const __m512i i = _mm512_madd_epi16(_mm512_packs_epi32(p0, p1), b->S[0]);
    return _mm512_dpwssd_epi32(i, _mm512_packs_epi32(p2, p3), b->S[1]);
}

/* Batch invariance: a product's value must not depend on the path that
 * computed it (decode row, tail token, 4 x 4 tile), so every path performs
 * the same float operations per (row, token) in the same order. The integer
 * block sums are exact and are folded, per token, to one canonical set of
 * lanes before the float step: DONLY types 8 lanes (I + offset . bsums, x
 * d*dx), the others 8 lanes of I (x d*dx, accumulator M) and 8 lanes of mins
 * . bsums (x -dmin*dx, accumulator N); one accumulator chain per (row,
 * token) over the blocks in order, then red8 of M (+ N). The 8 I lanes are
 * the sums of adjacent 128-bit lanes of block_int, which in the natural
 * layout are qwords [D0+D16, D64+D80, D32+D48, D96+D112] (Dx: weights x,
 * 128+x, 8 per int lane); the decode layout (K4R/K5R) produces the same
 * qwords in the order [0, 2, 1, 3], which fin1 undoes once per row. */

/* one token's 8 canonical lanes to a float, in a fixed tree */
INL float red8(__m256 s) {
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    return _mm_cvtss_f32(t);
}

/* M/N += one block against one token (decode, odd tokens). M's canonical
 * lanes: qwords 0, 1, 4, 5 (natural) or 0, 4, 1, 5 (K4R/K5R); N's: 0..7. */
INL void block_dot(const int type, const kblk *b, const uint8_t *xb, __m512 *M, __m512 *N) {
    __m512i i0 = block_int(b, xb + 4);
    const __m128 m = _mm_mul_ps(_mm_xor_ps(b->dd, _mm_setr_ps(0.0f, -0.0f, 0.0f, 0.0f)), _mm_set1_ps(rdf32(xb)));
    if (DONLY(type)) {
        /* bsums in the lower half only (E has both); halves folded: lanes 0..7 */
        i0 = _mm512_dpwssd_epi32(i0, _mm512_maskz_loadu_epi16(0xFFFF, xb + 260), b->E);
        i0 = _mm512_add_epi32(i0, _mm512_shuffle_i64x2(i0, i0, 0x4E));
        *M = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_broadcastss_ps(m), *M);
    } else {
        /* adjacent 128-bit lanes folded; mins . bsums in lanes 0..7 (and 8..15) */
        i0 = _mm512_add_epi32(i0, _mm512_shuffle_i64x2(i0, i0, 0xB1));
        const __m512i mv = _mm512_madd_epi16(b->E, BC256(xb + 260));
        *M = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_broadcastss_ps(m), *M);
        *N = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mv), _mm512_permutexvar_ps(_mm512_set1_epi32(1), _mm512_castps128_ps512(m)), *N);
    }
}

/* the value of one row x token accumulated by block_dot */
INL float fin1(const int type, __m512 M, __m512 N) {
    if (DONLY(type)) return red8(_mm512_castps512_ps256(M));
    const __m512i q = (type == K4R || type == K5R) ? _mm512_setr_epi64(0, 4, 1, 5, 0, 0, 0, 0)
                                                   : _mm512_setr_epi64(0, 1, 4, 5, 0, 0, 0, 0);
    const __m512 mc = _mm512_castpd_ps(_mm512_permutexvar_pd(q, _mm512_castps_pd(M)));
    return red8(_mm256_add_ps(_mm512_castps512_ps256(mc), _mm512_castps512_ps256(N)));
}

/* M/N += one weight block against two tokens a, b: the mins / offset
 * multiply, the convert and the fma are shared. Lanes: token a 0..7, b
 * 8..15, in the canonical order (see above).
 * (Pairing two consecutive blocks of a decode row this way measured slower
 * than block_dot.) */
INL void pair_dot(const int type, const kblk *b, const uint8_t *xa, const uint8_t *xb, __m512 *M, __m512 *N) {
    const __m512i ia = block_int(b, xa + 4), ib = block_int(b, xb + 4);
    const __m512i bs = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(xa + 260))),
                                          _mm256_loadu_si256((const __m256i *)(const void *)(xb + 260)), 1);
    const __m512i mv = _mm512_madd_epi16(b->E, bs); /* a: lanes 0..7, b: 8..15 */
    const __m128 dx = _mm_unpacklo_ps(_mm_set_ss(rdf32(xa)), _mm_set_ss(rdf32(xb)));
    /* [da*dxa, db*dxb, -dmina*dxa, -dminb*dxb] */
    const __m128 m = _mm_xor_ps(_mm_mul_ps(_mm_unpacklo_ps(b->dd, b->dd), _mm_movelh_ps(dx, dx)),
                                _mm_setr_ps(0.0f, 0.0f, -0.0f, -0.0f));
    const __m512 sc = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                            _mm512_castps128_ps512(m));
    if (DONLY(type)) {
        __m512i v = _mm512_add_epi32(_mm512_shuffle_i64x2(ia, ib, 0x44), _mm512_shuffle_i64x2(ia, ib, 0xEE));
        v = _mm512_add_epi32(v, mv);
        *M = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), sc, *M);
    } else {
        const __m512i v = _mm512_add_epi32(_mm512_shuffle_i64x2(ia, ib, 0x88), _mm512_shuffle_i64x2(ia, ib, 0xDD));
        const __m512 sn = _mm512_permutexvar_ps(_mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
                                                _mm512_castps128_ps512(m));
        *M = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), sc, *M);
        *N = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mv), sn, *N);
    }
}

/* token a (h = 0) or b (h = 1) of a pair's accumulators */
INL float fin_pair(const int type, __m512 M, __m512 N, int h) {
    const __m256 m = h ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(M), 1)) : _mm512_castps512_ps256(M);
    if (DONLY(type)) return red8(m);
    const __m256 n = h ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(N), 1)) : _mm512_castps512_ps256(N);
    return red8(_mm256_add_ps(m, n));
}

static inline size_t bsize(int type) {
    return type == K6 ? Q6_K_SIZE : type == K3 ? Q3_K_SIZE : type == K2 ? Q2_K_SIZE : type == KX ? IQ4_XS_SIZE
         : IS5(type) ? Q5_K_SIZE : Q4_K_SIZE;
}

_Static_assert(RT * CT >= 16, "a single row takes up to 16 tokens in one tile");
/* R x C tile over nb blocks: y[c*ys + r]; tokens in pairs (C even) or C == 1.
 * R * C <= RT * CT: a single row may take up to 16 tokens (batched decode of
 * several sequences: each block unpacked once for all of them). */
INL void tile(const int type, const int R, const int C, int64_t nb, const uint8_t *w, size_t ws,
              const uint8_t *x, size_t xs, float *y, size_t ys) {
    const size_t bsz = bsize(type);
    const int CP = C == 1 ? 1 : C / 2;
    __m512 accm[RT * CT / 2], accn[RT * CT / 2];
#define ACC(r, c) (r) * CP + (c)
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < CP; c++) accm[ACC(r, c)] = accn[ACC(r, c)] = _mm512_setzero_ps();
    if (C == 1) {
        const size_t xbs = xs ? xs : Q8_K_SIZE; /* C == 1: xs is the block stride (0: Q8_K) */
        for (int64_t ib = 0; ib < nb; ib++)
            UNROLL for (int r = 0; r < R; r++) {
                kblk b0;
                unpack(type, w + (size_t)r * ws + (size_t)ib * bsz, &b0);
                block_dot(type, &b0, x + (size_t)ib * xbs, &accm[ACC(r, 0)], &accn[ACC(r, 0)]);
            }
        UNROLL for (int r = 0; r < R; r++) y[r] = fin1(type, accm[ACC(r, 0)], accn[ACC(r, 0)]);
        return;
    }
    for (int64_t ib = 0; ib < nb; ib++) {
        UNROLL for (int r = 0; r < R; r++) {
            kblk b;
            unpack(type, w + (size_t)r * ws + (size_t)ib * bsz, &b);
            UNROLL for (int c = 0; c < CP; c++) {
                const uint8_t *xb = x + (size_t)(2 * c) * xs + (size_t)ib * Q8_K_SIZE;
                pair_dot(type, &b, xb, xb + xs, &accm[ACC(r, c)], &accn[ACC(r, c)]);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < CP; c++) {
        y[(size_t)(2 * c) * ys + (size_t)r] = fin_pair(type, accm[ACC(r, c)], accn[ACC(r, c)], 0);
        y[(size_t)(2 * c + 1) * ys + (size_t)r] = fin_pair(type, accm[ACC(r, c)], accn[ACC(r, c)], 1);
    }
#undef ACC
}

/* ---- 2..16 tokens on a range of rows (batched decode) -------------------------
 * Rows one at a time (one sequential weight stream, as decode), each block
 * unpacked once for all tokens, tokens in pairs with pair_dot's float steps
 * in pair_dot's order (batch invariance). What depends on the token and the
 * block but not on the row is prepared once per call in an aligned stack
 * buffer: the 256 activation codes (Q8_K's sit 4 bytes into a 292-byte
 * block, so most of their 64-byte loads split cache lines: ~10% of this
 * loop), and per pair its dx in lanes 0..7 / 8..15 and its two rows of
 * bsums in one vector (another ~5-10%). d*dx and (-dmin)*dx are the same
 * products pair_dot forms (a sign flip commutes with rounding). An odd last
 * token is paired with itself and its twin's result dropped. */
/* token-blocks of the buffer: 32 KB of codes + 8 KB of pair vectors, so
 * that they stay in L1 while rows stream past (at 48 KB, n = 6144 x 8
 * tokens, 8 tokens ran slower than the old per-row tiles; in L1 ~1.4x) */
enum { SM_TB = 128 };
typedef struct { __m512i bs; } smpair;
/* dx vectors per block: DONLY types one of the 16 tokens' dx; the others
 * one per 8 tokens, [dx_8h..dx_8h+7 | the same] (d*dx and -dmin*dx of 8
 * tokens from one multiply) */
#define SM_NDX(type, CP) (DONLY(type) ? 1 : ((CP) + 3) / 4)

/* Pair c's scale vectors from the row's products P (see small_rows):
 * lanes 0..7 token 2c, 8..15 token 2c+1. */
INL __m512 pair_scale(const __m512 P, int cl, int sn) {
    const int a = 2 * cl + 8 * sn, b = a + 1;
    return _mm512_permutexvar_ps(_mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b), P);
}

INL void small_pair(const int type, const kblk *b, const uint8_t *qa, const uint8_t *qb, const smpair *sp,
                    __m512 sc, __m512 sn, __m512 *M, __m512 *N) {
    const __m512i ia = block_int(b, qa), ib = block_int(b, qb);
    const __m512i mv = _mm512_madd_epi16(b->E, sp->bs); /* a: lanes 0..7, b: 8..15 */
    if (DONLY(type)) {
        __m512i v = _mm512_add_epi32(_mm512_shuffle_i64x2(ia, ib, 0x44), _mm512_shuffle_i64x2(ia, ib, 0xEE));
        v = _mm512_add_epi32(v, mv);
        *M = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), sc, *M);
        (void)sn;
    } else {
        const __m512i v = _mm512_add_epi32(_mm512_shuffle_i64x2(ia, ib, 0x88), _mm512_shuffle_i64x2(ia, ib, 0xDD));
        *M = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), sc, *M);
        *N = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mv), sn, *N);
    }
}

/* CP pairs (2*CP prepared tokens, nc real) against nr rows over nb blocks
 * (w: the first of them in row 0); q: codes of block ib, token t at (ib *
 * 2CP + t) * 256; sp: pair c of block ib at ib * CP + c. acc NULL: the
 * whole rows, results to y. Else one chunk of the rows' blocks, each row's
 * accumulators carried in acc (row r, pair c: M at 2(r CP + c), N after
 * it): started at 0 on the first chunk, results to y after the last; one
 * chain per (row, token) over the blocks in order either way. pf: how far
 * ahead to prefetch (bytes; a chunk: whole rows, so the same block of a
 * later row), never past pf_end. */
INL void small_rows(const int type, const int CP, int64_t nb, int nr, int nc, const uint8_t *w, size_t ws,
                    const uint8_t *q, const smpair *sp, const __m512 *dxv, __m512 *acc, int first, int last, size_t pf,
                    uintptr_t pf_end, float *y, size_t ys) {
    const size_t bsz = bsize(type);
    for (int r = 0; r < nr; r++) {
        const uint8_t *wr = w + (size_t)r * ws;
        __m512 M[8], N[8];
        if (!acc || first) {
            UNROLL for (int c = 0; c < CP; c++) M[c] = N[c] = _mm512_setzero_ps();
        } else {
            UNROLL for (int c = 0; c < CP; c++) {
                M[c] = acc[2 * ((size_t)r * CP + c)];
                N[c] = acc[2 * ((size_t)r * CP + c) + 1];
            }
        }
        for (int64_t ib = 0; ib < nb; ib++) {
            /* from DRAM, as decode's row_dot (2 tokens take about as long
             * per weight byte as one): pf ahead within the call's rows */
            const uintptr_t pa = (uintptr_t)(wr + (size_t)ib * bsz) + pf;
            if (pa < pf_end)
                for (int o = 0; o < (int)bsz; o += 64) _mm_prefetch((const char *)(pa + (uintptr_t)o), _MM_HINT_T0);
            kblk b;
            unpack(type, wr + (size_t)ib * bsz, &b);
            /* every token's d*dx (and -dmin*dx) of this block in one or
             * two multiplies, the products pair_dot forms (a sign flip
             * commutes with rounding); permutes spread them per pair (a
             * multiply per pair and scale was ~6-9% of this loop: the
             * multiplies share two pipes with vpdpbusd) */
            const int ND = SM_NDX(type, CP);
            const __m512 dd = DONLY(type) ? _mm512_broadcastss_ps(b.dd)
                                          : _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                                                  _mm512_castps128_ps512(_mm_xor_ps(b.dd, _mm_setr_ps(0.0f, -0.0f, 0.0f, 0.0f))));
            __m512 P[2];
            UNROLL for (int h = 0; h < ND; h++) P[h] = _mm512_mul_ps(dd, dxv[ib * ND + h]);
            const uint8_t *qb = q + (size_t)ib * (size_t)(2 * CP) * 256;
            UNROLL for (int c = 0; c < CP; c++) {
                const __m512 Pc = DONLY(type) ? P[0] : P[c / 4];
                const int cl = DONLY(type) ? c : c % 4;
                small_pair(type, &b, qb + (size_t)(2 * c) * 256, qb + (size_t)(2 * c + 1) * 256, &sp[ib * CP + c],
                           pair_scale(Pc, cl, 0), DONLY(type) ? Pc : pair_scale(Pc, cl, 1), &M[c], &N[c]);
            }
        }
        if (acc && !last) {
            UNROLL for (int c = 0; c < CP; c++) {
                acc[2 * ((size_t)r * CP + c)] = M[c];
                acc[2 * ((size_t)r * CP + c) + 1] = N[c];
            }
            continue;
        }
        UNROLL for (int c = 0; c < CP; c++) {
            /* K4R/K5R: each token's qwords back to the canonical order (the
             * lanes are independent chains with one scale per token, so
             * moving them at the end gives the same values) */
            if (type == K4R || type == K5R)
                M[c] = _mm512_castpd_ps(_mm512_permutexvar_pd(_mm512_setr_epi64(0, 2, 1, 3, 4, 6, 5, 7), _mm512_castps_pd(M[c])));
            y[(size_t)(2 * c) * ys + (size_t)r] = fin_pair(type, M[c], N[c], 0);
            if (2 * c + 1 < nc) y[(size_t)(2 * c + 1) * ys + (size_t)r] = fin_pair(type, M[c], N[c], 1);
        }
    }
}

/* The codes (and pair vectors) of blocks k0..k0+kn-1 of the nc tokens,
 * block k0 first; an odd last token is paired with itself. */
INL void small_prep(const int type, const int CP, int64_t k0, int64_t kn, int nc, const uint8_t *x, size_t xs,
                    uint8_t *q, smpair *sp, __m512 *dxv) {
    for (int64_t i = 0; i < kn; i++) {
        const int64_t ib = k0 + i;
        for (int t = 0; t < 2 * CP; t++) {
            const uint8_t *xb = x + (size_t)(t < nc ? t : nc - 1) * xs + (size_t)ib * Q8_K_SIZE + 4;
            uint8_t *o = q + ((size_t)i * (size_t)(2 * CP) + (size_t)t) * 256;
            if (type == K4 || type == K5) {
                /* relayout()'s order, so that the weights unpack as K4R/K5R
                 * (two 64-byte loads per block instead of four broadcasts
                 * and variable shifts) */
                UNROLL for (int h = 0; h < 2; h++) {
                    const __m512i a = LD512(xb + 128 * h), c = LD512(xb + 128 * h + 64);
                    _mm512_store_si512((void *)(o + 128 * h), _mm512_shuffle_i64x2(a, c, 0x44));
                    _mm512_store_si512((void *)(o + 128 * h + 64), _mm512_shuffle_i64x2(a, c, 0xEE));
                }
            } else {
                UNROLL for (int k = 0; k < 4; k++) _mm512_store_si512((void *)(o + 64 * k), LD512(xb + 64 * k));
            }
        }
        /* dx of the 2CP tokens (the odd last one repeated) in small_rows' layout */
        float d[16];
        for (int t = 0; t < 16; t++) d[t] = rdf32(x + (size_t)(t < nc ? t : nc - 1) * xs + (size_t)ib * Q8_K_SIZE);
        const int nd = SM_NDX(type, CP);
        for (int h = 0; h < nd; h++) {
            const __m256d e = _mm256_castps_pd(_mm256_loadu_ps(d + 8 * h));
            dxv[i * nd + h] = DONLY(type) ? _mm512_loadu_ps(d)
                                          : _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(e), e, 1));
        }
        for (int c = 0; c < CP; c++) {
            const uint8_t *xa = x + (size_t)(2 * c) * xs + (size_t)ib * Q8_K_SIZE;
            const uint8_t *xb = x + (size_t)(2 * c + 1 < nc ? 2 * c + 1 : nc - 1) * xs + (size_t)ib * Q8_K_SIZE;
            smpair *p = &sp[i * CP + c];
            p->bs = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(xa + 260))),
                                       _mm256_loadu_si256((const __m256i *)(const void *)(xb + 260)), 1);
        }
    }
}

/* rows per group of the chunked form: each group re-prepares the codes of
 * every chunk (at 24 rows that copy cost ~10% at n = 6144; 64: +9-11% rows
 * GOP/s over 24), and keeps its accumulators (<= 64 KB at 16 tokens, 32 KB
 * at 8) between chunks */
enum { SM_RG = 64 };

#define SM_CASE(C)                                                                                                 \
    case C:                                                                                                        \
        if (kb >= nb) small_rows(ut, C, nb, nr, nc, w, ws, q, sp, dxv, NULL, 1, 1, PF_DIST, pf_end, y, ys);        \
        else                                                                                                       \
            for (int r0 = 0; r0 < nr; r0 += SM_RG) {                                                              \
                const int m = nr - r0 < SM_RG ? nr - r0 : SM_RG;                                                  \
                for (int64_t k0 = 0; k0 < nb; k0 += kb) {                                                         \
                    const int64_t kn = nb - k0 < kb ? nb - k0 : kb;                                               \
                    small_prep(type, C, k0, kn, nc, x, xs, q, sp, dxv);                                             \
                    small_rows(ut, C, kn, m, nc, w + (size_t)r0 * ws + (size_t)k0 * bsize(type), ws, q, sp, dxv, acc,\
                               k0 == 0, k0 + kn == nb, pfr * ws, pf_end, y + r0, ys);                             \
                }                                                                                                  \
            }                                                                                                      \
        break;
/* All nc (2..16) tokens against nr rows, rows one at a time. The codes of
 * all tokens for all blocks fit the buffer (32 KB, L1) when the rows are
 * short; longer rows go in chunks of blocks that fit, in groups of SM_RG
 * rows whose accumulators are kept between chunks (every block unpacked
 * once for all tokens: token groups over the whole row unpacked it once
 * per group, and n = 10240 ran at ~60% of n = 2560's rate). */
INL void small_tokens(const int type, int64_t nb, int nr, int nc, const uint8_t *w, size_t ws, const uint8_t *x,
                      size_t xs, float *y, size_t ys) {
    _Alignas(64) uint8_t q[SM_TB * 256];
    _Alignas(64) smpair sp[SM_TB / 2];
    _Alignas(64) __m512 dxv[SM_TB / 2]; /* kb * SM_NDX <= 64 (two per block only when CP > 4) */
    const int CP = (nc + 1) / 2;
    const int ut = type == K4 ? K4R : type == K5 ? K5R : type;   /* the rows' unpacking */
    const int64_t kb = SM_TB / (2 * CP);                           /* blocks per chunk */
    const uintptr_t pf_end = (uintptr_t)(w + (size_t)nr * ws);
    /* a chunk's prefetch: the same block PF_DIST of weights (whole rows) ahead */
    const size_t piece = (size_t)(kb < nb ? kb : nb) * bsize(type);
    const size_t pfr = (PF_DIST + piece - 1) / piece;
    _Alignas(64) __m512 acc[SM_RG * 8 * 2];   /* chunked: the accumulators (64 KB) */
    if (kb >= nb) small_prep(type, CP, 0, nb, nc, x, xs, q, sp, dxv);
    switch (CP) {
        SM_CASE(1) SM_CASE(2) SM_CASE(3) SM_CASE(4) SM_CASE(5) SM_CASE(6) SM_CASE(7) SM_CASE(8)
    default: break;
    }
}
#undef SM_CASE

/* one function per type (out of line: its 40 KB frame stays off decode's path) */
#define SMALL(t, T)                                                                                                \
    T512 static __attribute__((noinline)) void small_##t(int64_t nb, int nr, int nc, const uint8_t *w, size_t ws,  \
                                                         const uint8_t *x, size_t xs, float *y, size_t ys) {      \
        small_tokens(T, nb, nr, nc, w, ws, x, xs, y, ys);                                                          \
    }
SMALL(k4, K4)
SMALL(k5, K5)
SMALL(k6, K6)
SMALL(k3, K3)
SMALL(k2, K2)
#undef SMALL

/* Decode copy of Q8_K blocks for K4R/K5R: qs in the order
 * 0..31 64..95 32..63 96..127 128..159 192..223 160..191 224..255, so that
 * 64-byte loads of Q4_K/Q5_K qs (two 64-weight groups) line up unshuffled.
 * Blocks RL_STRIDE apart, qs 64-byte aligned; d and bsums as in Q8_K. */
#ifndef RL_CHUNK
#define RL_CHUNK 96 /* blocks: 30 KB of stack, n <= 24576 */
#endif
#define RL_STRIDE 320
#define RL_OFF 60 /* qs at a 64-byte boundary */
INL void relayout(const uint8_t *x, uint8_t *buf, int64_t m) {
    for (int64_t i = 0; i < m; i++) {
        const uint8_t *xb = x + (size_t)i * Q8_K_SIZE;
        uint8_t *o = buf + (size_t)i * RL_STRIDE + RL_OFF;
        memcpy(o, xb, 4);
        memcpy(o + 260, xb + 260, 32);
        UNROLL for (int h = 0; h < 2; h++) {
            const __m512i a = LD512(xb + 4 + 128 * h), c = LD512(xb + 4 + 128 * h + 64);
            _mm512_store_si512((void *)(o + 4 + 128 * h), _mm512_shuffle_i64x2(a, c, 0x44));
            _mm512_store_si512((void *)(o + 4 + 128 * h + 64), _mm512_shuffle_i64x2(a, c, 0xEE));
        }
    }
}

/* ---- IQ4_XS ------------------------------------------------------------------
 * Block (136 bytes, 256 weights): fp16 d, 16 bits of scale high parts, 4
 * bytes of scale low parts, 128 bytes qs. Sub-block j (32 weights) has scale
 * ls_j - 32 (6 bits) and qs[16j..16j+15]: low nibbles are weights 0..15,
 * high nibbles 16..31; a weight is d * (ls_j - 32) * kvalues[nibble].
 * Unpacked: W[k] holds weights 64k..64k+63 in natural order as unsigned
 * codes u = kvalues + 128 (one vpshufb), so activations load as they are;
 * vpdpbusd gives P[k], lanes 0..7 in sub-block 2k, 8..15 in 2k+1. Sums reach
 * 4 * 241 * 127, too wide for the 16-bit scale multiply above, so the scales
 * multiply the 32-bit lanes (vpmulld). The +128 of the codes comes out
 * through the block sums: -128 * sc_j * (bsum[2j] + bsum[2j+1]). Decode uses
 * row_dot below; prefill XS_RT x XS_CT tiles. */
enum { XS_RT = 2, XS_CT = 4 };

typedef struct {
    __m512i W[4];  /* unsigned codes, weights 64k..64k+63 */
    __m512i S[4];  /* 32-bit scales per lane of P[k] */
    __m256i E;     /* words 2j, 2j+1: -128 * sc_j (multiply the 16 bsums) */
    float d;
} xsblk;

INL void xs_unpack(const uint8_t *wb, xsblk *b) {
    uint16_t d16, sh;
    uint32_t sl;
    memcpy(&d16, wb, 2);
    memcpy(&sh, wb + 2, 2);
    memcpy(&sl, wb + 4, 4);
    b->d = _cvtsh_ss(d16);
    /* sc_j = (4 bits of sl at 4j | 2 bits of sh at 2j << 4) - 32, j = 0..7 */
    const __m256i lo4 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)sl), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                                         _mm256_set1_epi32(0xF));
    /* bits 2j, 2j+1 of sh to bits 4, 5: left by 4 - 2j for j = 0, 1, right
     * by 2j - 4 for j >= 2 (a variable shift by 32 gives 0) */
    const __m256i hi2 = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32((int)sh), _mm256_setr_epi32(4, 2, 32, 32, 32, 32, 32, 32)),
                                         _mm256_set1_epi32(0x30));
    const __m256i hi2r = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)sh), _mm256_setr_epi32(32, 32, 0, 2, 4, 6, 8, 10)),
                                          _mm256_set1_epi32(0x30));
    const __m256i sc = _mm256_sub_epi32(_mm256_or_si256(lo4, _mm256_or_si256(hi2, hi2r)), _mm256_set1_epi32(32));
    const __m512i sc512 = _mm512_castsi256_si512(sc);
    UNROLL for (int k = 0; k < 4; k++)
        b->S[k] = _mm512_permutexvar_epi32(_mm512_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k,
                                                             2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                                             2 * k + 1, 2 * k + 1),
                                           sc512);
    const __m256i e = _mm256_mullo_epi32(sc, _mm256_set1_epi32(-128)); /* fits 16 bits */
    b->E = _mm256_or_si256(_mm256_and_si256(e, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(e, 16));

    const __m512i kv = _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)g4_kvalues_iq4nl)), _mm512_set1_epi8((char)0x80)); /* levels + 128 */
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* per 128-bit lane: shift 0 (low nibbles) or 4 (high) */
    const __m512i cnt = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                          0x0004000400040004LL, 0x0004000400040004LL);
    UNROLL for (int h = 0; h < 2; h++) {
        /* sub-blocks 4h..4h+3, 16 bytes each */
        const __m512i q = _mm512_loadu_si512((const void *)(wb + 8 + 64 * h));
        UNROLL for (int u = 0; u < 2; u++) {
            /* lanes: [sb lo, sb hi, sb' lo, sb' hi] for sb = 4h + 2u */
            const __m512i t = u ? _mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(3, 3, 2, 2)) : _mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(1, 1, 0, 0));
            const __m512i n = _mm512_and_si512(_mm512_srlv_epi16(t, cnt), m4);
            b->W[2 * h + u] = _mm512_shuffle_epi8(kv, n);
        }
    }
}

/* the block's integer sum against one Q8_K block (16 lanes to be added) */
INL __m512i xs_block_int(const xsblk *b, const uint8_t *xb) {
    const __m512i z = _mm512_setzero_si512();
    __m512i i = _mm512_mullo_epi32(_mm512_dpbusd_epi32(z, b->W[0], _mm512_loadu_si512((const void *)(xb + 4))), b->S[0]);
    UNROLL for (int k = 1; k < 4; k++)
        i = _mm512_add_epi32(i, _mm512_mullo_epi32(_mm512_dpbusd_epi32(z, b->W[k], _mm512_loadu_si512((const void *)(xb + 4 + 64 * k))),
                                                   b->S[k]));
    const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(xb + 260));
    return _mm512_add_epi32(i, _mm512_zextsi256_si512(_mm256_madd_epi16(b->E, bs)));
}

INL __m512 xs_block_acc(const xsblk *b, const uint8_t *xb, __m512 acc) {
    float dx;
    memcpy(&dx, xb, 4);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(xs_block_int(b, xb)), _mm512_set1_ps(b->d * dx), acc);
}

/* decode: one row, one accumulator chain (M, N) over the blocks in order,
 * as every other path (batch invariance; the integer work per block hides
 * the fma latency); prefetches stop at pf_end, the end of the call's rows:
 * past it are rows another thread reads (prefetching them here cost ~1% of
 * a decode step) */
INL float row_dot(const int type, int64_t nb, const uint8_t *w, const uint8_t *x, size_t xbs,
                  uintptr_t pf_end) {
    const size_t bsz = bsize(type);
    __m512 M = _mm512_setzero_ps(), N = _mm512_setzero_ps();
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
        /* the hardware prefetcher alone left Q4_K/Q5_K at ~0.7-0.8 of a
         * plain stream's rate, Q6_K at ~0.9 (measured with another matrix
         * read in between, as in a decode step; L1 hint and 8 KB beat L2
         * hint, 4 KB and 12 KB); rows of a decode call are contiguous, so
         * run PF_DIST bytes ahead, up to the call's end (pf_end) */
        const uintptr_t pf = (uintptr_t)(w + (size_t)ib * bsz) + PF_DIST;  /* may lie past the array */
        if (pf < pf_end)
            for (int o = 0; o < (int)(2 * bsz); o += 64) _mm_prefetch((const char *)(pf + (uintptr_t)o), _MM_HINT_T0);
        if (type == KX) {
            xsblk b0, b1;
            xs_unpack(w + (size_t)ib * bsz, &b0);
            xs_unpack(w + (size_t)(ib + 1) * bsz, &b1);
            M = xs_block_acc(&b0, x + (size_t)ib * xbs, M);
            M = xs_block_acc(&b1, x + (size_t)(ib + 1) * xbs, M);
        } else {
            kblk b0, b1;
            unpack(type, w + (size_t)ib * bsz, &b0);
            unpack(type, w + (size_t)(ib + 1) * bsz, &b1);
            block_dot(type, &b0, x + (size_t)ib * xbs, &M, &N);
            block_dot(type, &b1, x + (size_t)(ib + 1) * xbs, &M, &N);
        }
    }
    for (; ib < nb; ib++) {
        if (type == KX) {
            xsblk b0;
            xs_unpack(w + (size_t)ib * bsz, &b0);
            M = xs_block_acc(&b0, x + (size_t)ib * xbs, M);
        } else {
            kblk b0;
            unpack(type, w + (size_t)ib * bsz, &b0);
            block_dot(type, &b0, x + (size_t)ib * xbs, &M, &N);
        }
    }
    return type == KX ? _mm512_reduce_add_ps(M) : fin1(type, M, N);
}

/* R rows x C tokens over nb blocks: y[c*ys + r] */
INL void xs_tile(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, float *y,
              size_t ys) {
    __m512 acc[XS_RT][XS_CT];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++)
        UNROLL for (int r = 0; r < R; r++) {
            xsblk b;
            xs_unpack(w + (size_t)r * ws + (size_t)ib * IQ4_XS_SIZE, &b);
            UNROLL for (int c = 0; c < C; c++) acc[r][c] = xs_block_acc(&b, x + (size_t)c * xs + (size_t)ib * Q8_K_SIZE, acc[r][c]);
        }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++)
        y[(size_t)c * ys + (size_t)r] = _mm512_reduce_add_ps(acc[r][c]);
}

#define TILE_CASE(R, C) case (R) * 8 + (C): xs_tile(R, C, nb, w, ws, x, xs, y, ys); break;
_Static_assert(XS_RT == 2 && XS_CT == 4, "the switch below covers 1..2 x 1..4");
INL void xs_tile_any(int R, int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, float *y, size_t ys) {
    switch (R * 8 + C) {
        TILE_CASE(1, 1) TILE_CASE(1, 2) TILE_CASE(1, 3) TILE_CASE(1, 4)
        TILE_CASE(2, 1) TILE_CASE(2, 2) TILE_CASE(2, 3) TILE_CASE(2, 4)
    default: break;
    }
}
#undef TILE_CASE

INL void gemm_k(const int type, int64_t n, int nr, int nc, const void *vw, size_t ws, const void *vx, size_t xs,
                float *y, size_t ys) {
    const int64_t nb = n / QK_K;
    const uint8_t *w = vw, *x = vx;
    if (nc == 1 && (IS16(type) || type == KX)) {
        const uintptr_t end = (uintptr_t)(w + (size_t)nr * ws);
        for (int r = 0; r < nr; r++) y[r] = row_dot(type, nb, w + (size_t)r * ws, x, Q8_K_SIZE, end);
        return;
    }
    if (nc == 1) {
        const uintptr_t end = (uintptr_t)(w + (size_t)nr * ws);
        if (nb > RL_CHUNK) {
            /* rows longer than the re-laid copy (no Gemma 4 matrix): the
             * natural layout, so a row's sum is never split into chunks */
            for (int r = 0; r < nr; r++) y[r] = row_dot(type, nb, w + (size_t)r * ws, x, Q8_K_SIZE, end);
            return;
        }
        /* decode: the activation row re-laid once for all rows */
        _Alignas(64) uint8_t buf[RL_CHUNK * RL_STRIDE + 64]; /* last block ends at RL_OFF + 292 */
        relayout(x, buf, nb);
        const int tr = IS5(type) ? K5R : K4R;
        for (int r = 0; r < nr; r++) y[r] = row_dot(tr, nb, w + (size_t)r * ws, buf + RL_OFF, RL_STRIDE, end);
        return;
    }
    if (type != KX && nc <= 16) {
        void (*const fn)(int64_t, int, int, const uint8_t *, size_t, const uint8_t *, size_t, float *, size_t) =
            type == K4 ? small_k4 : type == K5 ? small_k5 : type == K6 ? small_k6 : type == K3 ? small_k3 : small_k2;
        /* the whole row range in one call, each token's codes prepared
         * once per call (or per chunk of blocks, long rows) */
        fn(nb, nr, nc, w, ws, x, xs, y, ys);
        return;
    }
    if (type == KX) {
        for (int r0 = 0; r0 < nr; r0 += XS_RT) {
            const int R = nr - r0 < XS_RT ? nr - r0 : XS_RT;
            for (int c0 = 0; c0 < nc; c0 += XS_CT) {
                const int C = nc - c0 < XS_CT ? nc - c0 : XS_CT;
                xs_tile_any(R, C, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + (size_t)r0, ys);
            }
        }
        return;
    }
    int r0 = 0;
    for (; nc > 16 && r0 + RT <= nr; r0 += RT) {
        int c0 = 0;
        for (; c0 + CT <= nc; c0 += CT)
            tile(type, RT, CT, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + r0, ys);
        for (; c0 + 2 <= nc; c0 += 2)
            tile(type, RT, 2, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + r0, ys);
        for (; c0 < nc; c0++)
            tile(type, RT, 1, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, 0, y + (size_t)c0 * ys + r0, ys);
    }
    for (; r0 < nr; r0++) {
        int c0 = 0;
        for (; c0 + 16 <= nc; c0 += 16)
            tile(type, 1, 16, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + r0, ys);
        for (; c0 + 8 <= nc; c0 += 8)
            tile(type, 1, 8, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + r0, ys);
        for (; c0 + CT <= nc; c0 += CT)
            tile(type, 1, CT, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + r0, ys);
        for (; c0 + 2 <= nc; c0 += 2)
            tile(type, 1, 2, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + r0, ys);
        for (; c0 < nc; c0++) y[(size_t)c0 * ys + r0] = row_dot(type, nb, w + (size_t)r0 * ws, x + (size_t)c0 * xs, Q8_K_SIZE, UINTPTR_MAX);
    }
}

#define KERNELS(t, T)                                                                                     \
    T512 static void gemm_##t(int64_t n, int nr, int nc, const void *w, size_t ws, const void *x, size_t xs, \
                              float *y, size_t ys) {                                                      \
        gemm_k(T, n, nr, nc, w, ws, x, xs, y, ys);                                                        \
    }                                                                                                     \
    T512 static float vd_##t(const void *w, const void *x, int64_t n) { return row_dot(T, n / QK_K, w, x, Q8_K_SIZE, UINTPTR_MAX); }
KERNELS(q4_K, K4)
KERNELS(q5_K, K5)
KERNELS(q6_K, K6)
KERNELS(q3_K, K3)
KERNELS(q2_K, K2)
KERNELS(iq4_xs, KX)
#undef KERNELS

void g4_quant_avx512_k_fill(int type, int level, g4_type_traits *tr) {
    if (level != G4_CPU_AVX512) return;
    switch (type) {
    case G4_Q4_K: tr->vec_dot = vd_q4_K; tr->gemm = gemm_q4_K; tr->gemm_panel = g4_p512_kernel(type); tr->gemm_row_stream = true; break;
    case G4_Q5_K: tr->vec_dot = vd_q5_K; tr->gemm = gemm_q5_K; tr->gemm_row_stream = true; break;
    case G4_Q6_K: tr->vec_dot = vd_q6_K; tr->gemm = gemm_q6_K; tr->gemm_panel = g4_p512_kernel(type); tr->gemm_row_stream = true; break;
    case G4_Q3_K: tr->vec_dot = vd_q3_K; tr->gemm = gemm_q3_K; tr->gemm_row_stream = true; break;
    case G4_Q2_K: tr->vec_dot = vd_q2_K; tr->gemm = gemm_q2_K; tr->gemm_row_stream = true; break;
    case G4_IQ4_XS: tr->vec_dot = vd_iq4_xs; tr->gemm = gemm_iq4_xs; break;
    default: break;
    }
}

#else /* !__x86_64__ */

void g4_quant_avx512_k_fill(int type, int level, g4_type_traits *tr) { (void)type; (void)level; (void)tr; }

#endif
