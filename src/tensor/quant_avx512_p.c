/* Prefill panels (AVX-512 VNNI, zmm): Q4_0, Q8_0, Q4_K and Q6_K weights against
 * many tokens (Q8_0 / Q8_K activations): the types' gemm_panel (types.h),
 * which matmul.c uses for the tokens whose logits nobody reads (prompt
 * tokens but the last), never for decode or verify tokens (matmul.h).
 *
 * The tile kernels of quant_avx512_q.c / _k.c keep one block of one row in
 * a vector and pay a float epilogue (convert, scale, fma, and a horizontal
 * sum at the end) for every 2-4 vpdpbusd. Here the 16 lanes of a vector are
 * 16 ROWS: a panel of 16 rows is re-laid (per call, into a thread-local
 * buffer; the mapped file is not touched) so that for each 32-weight group
 * g, vector m (m = 0..7) holds in dword j the 4 unsigned weight codes of row
 * j for activations 4m..4m+3 of the group. A token's group then costs 8
 * vpdpbusd, each against a broadcast activation dword (embedded {1to16}
 * operand), and one float step for all 16 rows: convert, scale (16 rows'
 * weight scales x the token's block scale), fma; the 16 results store as
 * one vector of y (token-major output: y[c][r0..r0+15]).
 *
 * Offsets: weights enter unsigned (Q4_0: nibble q, value q - 8; Q8_0: w ^
 * 0x80 = w + 128; Q4_K: nibble q, value d*sc*q - dmin*m), so the integer
 * sum is seeded with -off * sum(x of the group) (Q4_0 / Q8_0), and Q4_K's
 * mins enter as dmin*m (16 rows) x -sum(x)*dx (per token and group, from
 * the Q8_K bsums).
 *
 * Per call: tokens in chunks of CHUNK_BYTES of activations (in practice
 * all of a prefill's); per chunk, each token group's scale and seed once;
 * per chunk and pair of panels, both re-laid once (dword gathers) and run
 * against PC tokens at a time. Integer sums are exact; the float summation
 * order differs from the reference and from the tiles (per group, then over
 * groups), but it is the same in every lane whatever the panel's other rows
 * (partial panels repeat a row), the tile width or the chunk: a token's
 * result depends only on its row and its own activations. */
#include "tensor/quant_isa.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/types.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__) && !defined(__STRICT_ANSI__)
#pragma GCC optimize("fp-contract=off")
#endif

#define TGT __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INL TGT static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

enum { P_Q4_0, P_Q8_0, P_Q4_K, P_Q6_K };
enum {
    PR = 16,                  /* rows per panel: the 16 lanes */
    PC = 6,                   /* tokens per tile: 2 x 6 sums + 2 x 6 accumulators + 2 weights */
    GW = 512,                 /* re-laid weight bytes per group (8 zmm) */
    /* activations of one token chunk: in practice every token of a prefill
     * (E2B/E4B: 0.8-2.6 MB at 512 tokens), so each panel is re-laid once
     * per call; the gathers of one re-laid group cost about as much as
     * 8-10 tokens of products, so chunks of ~50 tokens (a 384 KB L2-sized
     * chunk at n = 6144) lost ~15%, while streaming the activations from L3
     * once per 16 rows needs ~16 GB/s per core */
    CHUNK_BYTES = 8 << 20,
};
static size_t chunk_bytes = CHUNK_BYTES;
void g4_p512_set_chunk_bytes(size_t bytes) { chunk_bytes = bytes ? bytes : CHUNK_BYTES; }

/* Q6_K's scales are per 16 weights: its groups are 16 weights (4 dwords) */
static inline int nmv(int kind) { return kind == P_Q6_K ? 4 : 8; }
/* bytes per re-laid group: codes, scales (16 floats), Q4_K: mins (16 floats) */
static inline size_t gstride(int kind) { return kind == P_Q4_K ? GW + 128 : kind == P_Q6_K ? GW / 2 + 64 : GW + 64; }

/* ---- per-thread scratch ----------------------------------------------------
 * One buffer per thread, grown on demand, freed at thread exit (the pool's
 * workers; the main thread's stays reachable until the process ends). */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local struct { void *p; size_t cap; } scratch;
static void scratch_free(void *p) { free(p); }
static void scratch_init(void) { (void)pthread_key_create(&scratch_key, scratch_free); }

static void *scratch_get(size_t bytes) {
    if (scratch.cap >= bytes) return scratch.p;
    pthread_once(&scratch_once, scratch_init);
    free(scratch.p);
    scratch.cap = 0;
    scratch.p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    (void)pthread_setspecific(scratch_key, scratch.p);
    if (scratch.p) scratch.cap = bytes;
    return scratch.p;
}

/* ---- re-laying a panel -----------------------------------------------------
 * off: byte offsets of the panel's 16 rows (rows past the matrix repeat its
 * last row; their results are never stored). Dword gathers: lane j reads row
 * j at base + off[j]. */
#define G32(base, off) _mm512_i32gather_epi32((off), (const void *)(base), 1)

INL __m512 half_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }

/* The 8 dwords at base + ro[j] (row j, j < 16) as 8 vectors, out[m] lane j =
 * row j's dword m: what 8 gathers G32(base + 4m) give, from 16 row loads
 * and an in-register transpose (24 shuffles). The gathers cost ~80% of the
 * re-layout, ~5% of an E2B prefill. Reads exactly the 32 bytes per row the
 * gathers would. z[i] holds rows lo[i] | hi[i] so that after the 8 x 8
 * transpose of each half, lanes 0-3 / 8-11 of u[k] and u[k + 4] hold rows
 * 0-3, 4-7 | 8-11, 12-15 in the order the final 128-bit shuffle wants. */
INL void tr8(const uint8_t *base, const int32_t *ro, __m512i *out) {
    static const int lo[8] = { 0, 1, 2, 3, 8, 9, 10, 11 };
    __m512i z[8], t[8], u[8];
    UNROLL for (int i = 0; i < 8; i++)
        z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const void *)(base + ro[lo[i]]))),
                                  _mm256_loadu_si256((const void *)(base + ro[lo[i] + 4])), 1);
    UNROLL for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
    }
    UNROLL for (int h = 0; h < 8; h += 4) {
        u[h] = _mm512_unpacklo_epi64(t[h], t[h + 2]);
        u[h + 1] = _mm512_unpackhi_epi64(t[h], t[h + 2]);
        u[h + 2] = _mm512_unpacklo_epi64(t[h + 1], t[h + 3]);
        u[h + 3] = _mm512_unpackhi_epi64(t[h + 1], t[h + 3]);
    }
    /* u[k] (k < 4) = column k | k + 4 of the rows in z[0..3], u[k + 4] of z[4..7] */
    UNROLL for (int k = 0; k < 4; k++) {
        out[k] = _mm512_shuffle_i32x4(u[k], u[k + 4], 0x88);
        out[k + 4] = _mm512_shuffle_i32x4(u[k], u[k + 4], 0xDD);
    }
}

/* The same for 4 dwords per row (Q4_0's 16 code bytes): z[i] holds rows
 * i, i + 4, i + 8, i + 12, one per 128-bit lane; a 4 x 4 transpose per lane. */
INL void tr4(const uint8_t *base, const int32_t *ro, __m512i *out) {
    __m512i z[4];
    UNROLL for (int i = 0; i < 4; i++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const void *)(base + ro[i])));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(base + ro[i + 4])), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(base + ro[i + 8])), 2);
        z[i] = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(base + ro[i + 12])), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]),
                  t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(t0, t2);
    out[1] = _mm512_unpackhi_epi64(t0, t2);
    out[2] = _mm512_unpacklo_epi64(t1, t3);
    out[3] = _mm512_unpackhi_epi64(t1, t3);
}

INL void relay(const int kind, const uint8_t *w, const int32_t *ro, int64_t ng, uint8_t *out) {
    const __m512i off = _mm512_loadu_si512((const void *)ro);
    const size_t gs = gstride(kind);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (kind == P_Q8_0) {
        const __m512i k80 = _mm512_set1_epi8((char)0x80);
        for (int64_t g = 0; g < ng; g++) {
            const uint8_t *b = w + (size_t)g * 34;
            uint8_t *o = out + (size_t)g * gs;
            __m512i q[8];
            tr8(b + 2, ro, q);
            UNROLL for (int m = 0; m < 8; m++) _mm512_store_si512((void *)(o + 64 * m), _mm512_xor_si512(q[m], k80));
            _mm512_store_ps((void *)(o + GW), half_lo(G32(b, off)));
        }
    } else if (kind == P_Q4_0) {
        for (int64_t g = 0; g < ng; g++) {
            const uint8_t *b = w + (size_t)g * 18;
            uint8_t *o = out + (size_t)g * gs;
            /* qs byte i: low nibble = weight i, high = weight 16 + i */
            __m512i qv[4];
            tr4(b + 2, ro, qv);
            UNROLL for (int m = 0; m < 4; m++) {
                const __m512i q = qv[m];
                _mm512_store_si512((void *)(o + 64 * m), _mm512_and_si512(q, m4));
                _mm512_store_si512((void *)(o + 64 * (m + 4)), _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
            }
            _mm512_store_ps((void *)(o + GW), half_lo(G32(b, off)));
        }
    } else if (kind == P_Q6_K) { /* ql[128], qh[64], int8 scales[16], d; 16 groups of 16 per block */
        const __m512i m2 = _mm512_set1_epi8(3);
        for (int64_t blk = 0; blk < ng / 16; blk++) {
            const uint8_t *b = w + (size_t)blk * 210;
            uint8_t *ob = out + (size_t)(16 * blk) * gs;
            const __m512 d = half_lo(G32(b + 208, off));
            UNROLL for (int q = 0; q < 4; q++) {
                const __m512i sv = G32(b + 192 + 4 * q, off);
                UNROLL for (int i = 0; i < 4; i++) {
                    const __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(sv, 24 - 8 * i), 24);
                    _mm512_store_ps((void *)(ob + (size_t)(4 * q + i) * gs + GW / 2), _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)));
                }
            }
            /* half h, 32-weight group k, weight l (0..31): low 4 bits in
             * ql[64h + 32(k & 1) + l] (nibble k >> 1), high 2 in bits 2k of
             * qh[32h + l]; groups of 16: 8h + 2k + l / 16 */
            UNROLL for (int h = 0; h < 2; h++) {
                __m512i QH[8], QL0[8], QL1[8];
                tr8(b + 128 + 32 * h, ro, QH);
                tr8(b + 64 * h, ro, QL0);
                tr8(b + 64 * h + 32, ro, QL1);
                UNROLL for (int m = 0; m < 8; m++) {
                const __m512i qh = QH[m], ql0 = QL0[m], ql1 = QL1[m];
                UNROLL for (int k = 0; k < 4; k++) {
                    const __m512i ql = k & 1 ? ql1 : ql0;
                    const __m512i lo = _mm512_and_si512(k >> 1 ? _mm512_srli_epi16(ql, 4) : ql, _mm512_set1_epi8(0x0F));
                    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(qh, 2 * k), m2);
                    const __m512i v = _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
                    uint8_t *o = ob + (size_t)(8 * h + 2 * k + m / 4) * gs + 64 * (m % 4);
                    _mm512_store_si512((void *)o, v);
                }
                }
            }
        }
    } else { /* Q4_K: d, dmin, scales[12], qs[128]; 8 groups per block */
        const __m512i m6 = _mm512_set1_epi32(63), m4d = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3);
        for (int64_t blk = 0; blk < ng / 8; blk++) {
            const uint8_t *b = w + (size_t)blk * 144;
            const __m512i dd = G32(b, off);
            const __m512 d = half_lo(dd), dmin = half_lo(_mm512_srli_epi32(dd, 16));
            const __m512i a0 = G32(b + 4, off), a1 = G32(b + 8, off), a2 = G32(b + 12, off);
            UNROLL for (int j = 0; j < 8; j++) {
                __m512i sc, mn;
                if (j < 4) {
                    sc = _mm512_and_si512(_mm512_srli_epi32(a0, 8 * j), m6);
                    mn = _mm512_and_si512(_mm512_srli_epi32(a1, 8 * j), m6);
                } else {
                    const int i = j - 4;
                    sc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(a2, 8 * i), m4d),
                                         _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(a0, 8 * i + 6), m2), 4));
                    mn = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(a2, 8 * i + 4), m4d),
                                         _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(a1, 8 * i + 6), m2), 4));
                }
                uint8_t *o = out + (size_t)(8 * blk + j) * gs;
                _mm512_store_ps((void *)(o + GW), _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)));
                _mm512_store_ps((void *)(o + GW + 64), _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn)));
            }
            /* qs[32k + i]: low nibble = weight 64k + i (group 2k), high = 64k + 32 + i (group 2k + 1) */
            UNROLL for (int k = 0; k < 4; k++) {
                uint8_t *lo = out + (size_t)(8 * blk + 2 * k) * gs, *hi = lo + gs;
                __m512i Q[8];
                tr8(b + 16 + 32 * k, ro, Q);
                UNROLL for (int m = 0; m < 8; m++) {
                    const __m512i q = Q[m];
                    _mm512_store_si512((void *)(lo + 64 * m), _mm512_and_si512(q, m4));
                    _mm512_store_si512((void *)(hi + 64 * m), _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
                }
            }
        }
    }
}

/* ---- per-token group data --------------------------------------------------
 * For token c of the chunk and group g: dx (float block scale) and the
 * integer seed (-off * sum x: Q4_0 off 8, Q8_0 off 128, Q6_K off 32) or,
 * Q4_K (no offset), ms = -sum(x) * dx for the mins. */
typedef struct { float dx; union { int32_t seed; float ms; } u; } tgrp;

INL void prep(const int kind, const uint8_t *x, int64_t ng, tgrp *t) {
    if (kind == P_Q6_K) { /* per 16: dx, -32 * bsum */
        for (int64_t blk = 0; blk < ng / 16; blk++) {
            const uint8_t *b = x + (size_t)blk * 292;
            float d;
            memcpy(&d, b, 4);
            int16_t bs[16];
            memcpy(bs, b + 260, 32);
            for (int j = 0; j < 16; j++) {
                tgrp *o = &t[16 * blk + j];
                o->dx = d;
                o->u.seed = -32 * bs[j];
            }
        }
        return;
    }
    if (kind == P_Q4_K) { /* Q8_K: float d, qs[256], int16 bsums[16] */
        for (int64_t blk = 0; blk < ng / 8; blk++) {
            const uint8_t *b = x + (size_t)blk * 292;
            float d;
            memcpy(&d, b, 4);
            int16_t bs[16];
            memcpy(bs, b + 260, 32);
            for (int j = 0; j < 8; j++) {
                tgrp *o = &t[8 * blk + j];
                o->dx = d;
                o->u.ms = -(float)(bs[2 * j] + bs[2 * j + 1]) * d;
            }
        }
        return;
    }
    const int32_t off = kind == P_Q4_0 ? 8 : 128;
    const __m256i ones = _mm256_set1_epi8(1);
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *b = x + (size_t)g * 34;
        uint16_t h;
        memcpy(&h, b, 2);
        const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones,
                                              _mm256_loadu_si256((const __m256i *)(const void *)(b + 2)));
        __m128i r = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
        t[g].dx = _cvtsh_ss(h);
        t[g].u.seed = -off * _mm_cvtsi128_si32(r);
    }
}

/* byte offset of group g's 32 activations in a token row */
static inline size_t xoff(int kind, int64_t g) {
    if (kind == P_Q6_K) return (size_t)(g >> 4) * 292 + 4 + 16 * (size_t)(g & 15);
    return kind == P_Q4_K ? (size_t)(g >> 3) * 292 + 4 + 32 * (size_t)(g & 7) : (size_t)g * 34 + 2;
}

static inline int32_t rd32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

/* NP (1 or 2) panels x C tokens over ng groups: panel p at pan + p * pb.
 * xr[c]: token c's row; tg[c * ts + g]: its group data. yr[c][16p + j] for
 * the rows j in mask[p].
 *
 * Two panels (32 rows) share each broadcast activation dword, and per
 * group m runs outer, tokens inner, so 2C integer chains run side by side
 * (one panel x 8 tokens had ~1.4 vector loads per vpdpbusd and one
 * token's 8 vpdpbusd in a row formed a serial chain: with data in L1 it
 * ran ~250 ps per vpdpbusd against ~190 for 2 x 6, 139 at the probe's
 * peak, on this Zen 5 VM). W holds only vector m of each panel: 2C sums +
 * 2C accumulators + 2 weights fit the 32 registers at C = 6. The arithmetic of each lane (seed, the 8
 * products, then convert, scale, fma in that order) is the same whatever
 * NP, C or the lane's neighbours. */
INL void ptile(const int kind, const int NP, const int C, int64_t ng, const uint8_t *pan, size_t pb,
               const uint8_t *const *xr, const tgrp *tg, size_t ts, float *const *yr, const __mmask16 *mask) {
    const size_t gs = gstride(kind);
    const int NM = nmv(kind);
    __m512 acc[2][PC];
    UNROLL for (int p = 0; p < NP; p++) UNROLL for (int c = 0; c < C; c++) acc[p][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *pg = pan + (size_t)g * gs;
        const tgrp *t = tg + (size_t)g;
        const size_t xo = xoff(kind, g);
        __m512i I[2][PC];
        UNROLL for (int c = 0; c < C; c++) {
            const __m512i sd = kind == P_Q4_K ? _mm512_setzero_si512() : _mm512_set1_epi32(t[(size_t)c * ts].u.seed);
            UNROLL for (int p = 0; p < NP; p++) I[p][c] = sd;
        }
        UNROLL for (int m = 0; m < NM; m++) {
            __m512i W[2];
            UNROLL for (int p = 0; p < NP; p++) W[p] = _mm512_load_si512((const void *)(pg + (size_t)p * pb + 64 * m));
            UNROLL for (int c = 0; c < C; c++) {
                const __m512i xb = _mm512_set1_epi32(rd32(xr[c] + xo + 4 * m));
                UNROLL for (int p = 0; p < NP; p++) I[p][c] = _mm512_dpbusd_epi32(I[p][c], W[p], xb);
            }
        }
        UNROLL for (int p = 0; p < NP; p++) {
            const uint8_t *pp = pg + (size_t)p * pb;
            const __m512 s = _mm512_load_ps((const void *)(pp + 64 * NM));
            UNROLL for (int c = 0; c < C; c++) {
                acc[p][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I[p][c]), _mm512_mul_ps(s, _mm512_set1_ps(t[(size_t)c * ts].dx)),
                                            acc[p][c]);
                if (kind == P_Q4_K)
                    acc[p][c] = _mm512_fmadd_ps(_mm512_load_ps((const void *)(pp + GW + 64)), _mm512_set1_ps(t[(size_t)c * ts].u.ms),
                                                acc[p][c]);
            }
        }
    }
    UNROLL for (int p = 0; p < NP; p++) UNROLL for (int c = 0; c < C; c++)
        _mm512_mask_storeu_ps(yr[c] + 16 * p, mask[p], acc[p][c]);
}

#define TILE_NP(K, NP)                                                                                          \
    switch (C) {                                                                                              \
    case 6: ptile(K, NP, 6, ng, pan, pb, xr, tg, ts, yr, mask); break;                                         \
    case 4: ptile(K, NP, 4, ng, pan, pb, xr, tg, ts, yr, mask); break;                                         \
    case 2: ptile(K, NP, 2, ng, pan, pb, xr, tg, ts, yr, mask); break;                                         \
    default: ptile(K, NP, 1, ng, pan, pb, xr, tg, ts, yr, mask); break;                                        \
    }
#define TILE_KIND(K) if (np == 2) { TILE_NP(K, 2) } else { TILE_NP(K, 1) }
_Static_assert(PC == 6, "the switch covers tiles of 6, 4, 2, 1 tokens");

TGT static void tile_any(int kind, int np, int C, int64_t ng, const uint8_t *pan, size_t pb, const uint8_t *const *xr,
                         const tgrp *tg, size_t ts, float *const *yr, const __mmask16 *mask) {
    if (kind == P_Q4_0) { TILE_KIND(P_Q4_0) }
    else if (kind == P_Q8_0) { TILE_KIND(P_Q8_0) }
    else if (kind == P_Q6_K) { TILE_KIND(P_Q6_K) }
    else { TILE_KIND(P_Q4_K) }
}
#undef TILE_KIND
#undef TILE_NP

/* Scratch of one call: the re-laid panel, then the group data of one chunk
 * of ch tokens (ch: chunk_bytes of activations, whole tiles, at most nc). */
static int chunk_tokens(size_t chunk, size_t xs, int nc) {
    const size_t cb = chunk / (xs ? xs : 1) / PC * PC;
    return cb < PC ? PC : cb > (size_t)nc ? nc : (int)cb;
}

static size_t act_row_bytes(int kind, int64_t n) { return kind == P_Q4_0 || kind == P_Q8_0 ? (size_t)n / 32 * 34 : (size_t)n / 256 * 292; }

/* The group data this thread last computed, when it covered a whole call's
 * tokens (one chunk) under a nonzero input id (types.h): the next grab of
 * the same product (matmul.c hands a thread several row ranges) or another
 * job of the same type on the same activations skips prep. Q4_0 / Q8_0 prep
 * sums every group of every token: for a grab of 32 rows it cost ~15% of
 * the call. */
static _Thread_local struct {
    uint64_t input;
    int kind, nc;
    int64_t ng;
    size_t xs;
    const uint8_t *x, *buf;
    const int32_t *cols;
} tgc;

TGT static int gemm_p(int kind, int64_t n, int nr, int nc, const int32_t *cols, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys, uint64_t input, size_t chunk) {
    const int64_t ng = n / (4 * nmv(kind));
    /* the gathers take 32-bit offsets of the panel's rows */
    if (ng == 0 || nr < 1 || nc < 1 || ws > (size_t)INT32_MAX / PR) return 0;
    const int ch = chunk_tokens(chunk, xs, nc);
    const size_t gs = gstride(kind), pb = (size_t)ng * gs;
    /* two panels side by side (32 rows), then the chunk's group data */
    uint8_t *buf = scratch_get(2 * pb + (size_t)ch * (size_t)ng * sizeof(tgrp));
    if (!buf) return 0;
    tgrp *tg = (tgrp *)(void *)(buf + 2 * pb);
    for (int c0 = 0; c0 < nc; c0 += ch) {
        const int cn = nc - c0 < ch ? nc - c0 : ch;
        const int whole = input && cn == nc;
        if (!whole || tgc.input != input || tgc.kind != kind || tgc.nc != nc || tgc.ng != ng || tgc.xs != xs ||
            tgc.x != x || tgc.buf != buf || tgc.cols != cols) {
            tgc.input = 0;
            for (int c = 0; c < cn; c++)
                prep(kind, x + (size_t)(cols ? cols[c0 + c] : c0 + c) * xs, ng, tg + (size_t)c * (size_t)ng);
            if (whole) {
                tgc.input = input; tgc.kind = kind; tgc.nc = nc; tgc.ng = ng; tgc.xs = xs;
                tgc.x = x; tgc.buf = buf; tgc.cols = cols;
            }
        }
        for (int r0 = 0; r0 < nr; r0 += 2 * PR) {
            const int np = nr - r0 > PR ? 2 : 1;
            __mmask16 mask[2];
            for (int p = 0; p < np; p++) {
                const int rp = r0 + PR * p, nv = nr - rp < PR ? nr - rp : PR;
                int32_t o[PR];
                for (int j = 0; j < PR; j++) o[j] = (int32_t)((size_t)(j < nv ? j : nv - 1) * ws);
                relay(kind, w + (size_t)rp * ws, o, ng, buf + (size_t)p * pb);
                mask[p] = (__mmask16)((1u << nv) - 1);
            }
            /* K blocks that keep the two panels' slice in L1 were slower
             * (the activations then come from L2 for every tile) */
            for (int c = 0; c < cn;) {
                const int C = cn - c >= 6 ? 6 : cn - c >= 4 ? 4 : cn - c >= 2 ? 2 : 1;
                const uint8_t *xr[PC];
                float *yr[PC];
                for (int i = 0; i < C; i++) {
                    const size_t t = (size_t)(cols ? cols[c0 + c + i] : c0 + c + i);
                    xr[i] = x + t * xs;
                    yr[i] = y + t * ys + (size_t)r0;
                }
                tile_any(kind, np, C, ng, buf, pb, xr, tg + (size_t)c * (size_t)ng, (size_t)ng, yr, mask);
                c += C;
            }
        }
    }
    return 1;
}

#define PANEL(name, K)                                                                                         \
    static int name(int64_t n, int nr, int nc, const int32_t *cols, const void *w, size_t ws, const void *x,    \
                    size_t xs, float *y, size_t ys, uint64_t input) {                                          \
        return gemm_p(K, n, nr, nc, cols, w, ws, x, xs, y, ys, input, chunk_bytes);                            \
    }
PANEL(panel_q4_0, P_Q4_0)
PANEL(panel_q8_0, P_Q8_0)
PANEL(panel_q4_K, P_Q4_K)
PANEL(panel_q6_K, P_Q6_K)
#undef PANEL

/* Q8_0 rows from F32/F16/BF16 ones: per 32 weights d = amax / 127 (stored
 * as f16), q = nearest-even(w * 127 / amax). One pass over the stored row,
 * no f32 copy: the int8 fast path re-rounds every weight once per product
 * (matmul.h: g4_mm_scratch.i8), and the two-step decode + reference
 * quantizer cost ~6% of a vision encode. */
TGT static void q8_rows(int type, const uint8_t *w, size_t ws, int nr, int64_t n, uint8_t *dst, size_t ds,
                        const float *clamp) {
    const __m512 lo = _mm512_set1_ps(clamp ? clamp[0] : -INFINITY), hi = _mm512_set1_ps(clamp ? clamp[1] : INFINITY);
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * ws;
        uint8_t *o = dst + (size_t)r * ds;
        for (int64_t g = 0; g < n / 32; g++, o += 34) {
            __m512 x0, x1;
            if (type == G4_F16) {
                x0 = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(row + 64 * g)));
                x1 = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(row + 64 * g + 32)));
            } else if (type == G4_BF16) {
                x0 = _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)(row + 64 * g))), 16));
                x1 = _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)(row + 64 * g + 32))), 16));
            } else {
                x0 = _mm512_loadu_ps((const void *)(row + 128 * g));
                x1 = _mm512_loadu_ps((const void *)(row + 128 * g + 64));
            }
            if (clamp) {
                x0 = _mm512_min_ps(_mm512_max_ps(x0, lo), hi);
                x1 = _mm512_min_ps(_mm512_max_ps(x1, lo), hi);
            }
            const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
            const float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
            const uint16_t h = (uint16_t)_cvtss_sh(d, 0);
            memcpy(o, &h, 2);
            const __m512 vi = _mm512_set1_ps(id);
            _mm_storeu_si128((void *)(o + 2), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(x0, vi))));
            _mm_storeu_si128((void *)(o + 18), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(x1, vi))));
        }
    }
}

int g4_p512_q8_0_rows(int type, const void *w, size_t ws, int nr, int64_t n, void *dst, size_t ds,
                      const float *clamp) {
    if (n % 32 || (type != G4_F32 && type != G4_F16 && type != G4_BF16) || !g4_p512_kernel(G4_Q8_0)) return 0;
    q8_rows(type, w, ws, nr, n, dst, ds, clamp);
    return 1;
}

int g4_p512_q8_0_gemm(int64_t n, int nr, int nc, const void *w, size_t ws, const void *x, size_t xs, float *y,
                      size_t ys, size_t chunk) {
    if (!g4_p512_kernel(G4_Q8_0)) return 0;
    return gemm_p(P_Q8_0, n, nr, nc, NULL, w, ws, x, xs, y, ys, 0, chunk ? chunk : chunk_bytes);
}

g4_gemm_panel_fn g4_p512_kernel(int type) {
    return type == G4_Q4_0 ? panel_q4_0 : type == G4_Q8_0 ? panel_q8_0 : type == G4_Q4_K ? panel_q4_K
         : type == G4_Q6_K ? panel_q6_K : NULL;
}

/* Largest scratch of one call: the panel of the longest rows, and group
 * data for min(T, one chunk) tokens (a chunk's tokens x groups is at most
 * chunk_bytes x groups per activation byte, a constant per kind). */
size_t g4_p512_scratch_bytes(int64_t n, int T) {
    size_t most = 0;
    for (int kind = P_Q4_0; kind <= P_Q6_K; kind++) {
        const size_t ng = (size_t)(n / (4 * nmv(kind))), xs = act_row_bytes(kind, n);
        size_t toks = (size_t)(T > 0 ? T : 0) * ng, cap = chunk_bytes * ng / (xs ? xs : 1) + PC * ng;
        size_t b = 2 * ng * gstride(kind) + (toks < cap ? toks : cap) * sizeof(tgrp) + 64;
        if (b > most) most = b;
    }
    return most;
}

#else /* !__x86_64__ */

void g4_p512_set_chunk_bytes(size_t bytes) { (void)bytes; }

g4_gemm_panel_fn g4_p512_kernel(int type) { (void)type; return NULL; }
int g4_p512_q8_0_rows(int type, const void *w, size_t ws, int nr, int64_t n, void *dst, size_t ds,
                      const float *clamp) {
    (void)type; (void)w; (void)ws; (void)nr; (void)n; (void)dst; (void)ds; (void)clamp;
    return 0;
}
int g4_p512_q8_0_gemm(int64_t n, int nr, int nc, const void *w, size_t ws, const void *x, size_t xs, float *y,
                      size_t ys, size_t chunk) {
    (void)n; (void)nr; (void)nc; (void)w; (void)ws; (void)x; (void)xs; (void)y; (void)ys; (void)chunk;
    return 0;
}
size_t g4_p512_scratch_bytes(int64_t n, int T) { (void)n; (void)T; return 0; }

#endif
