/* Full-width AVX-512 (zmm) kernels for IQ4_XS weights x Q8_K activations
 * (see quant_simd.h; only used at the AVX-512 level).
 *
 * IQ4_XS block (136 bytes, 256 weights): fp16 d, 16 bits of scale high
 * parts, 4 bytes of scale low parts, 128 bytes qs. Sub-block j (32 weights)
 * has scale ls_j - 32 (6 bits) and qs[16j..16j+15]: low nibbles are weights
 * 0..15, high nibbles 16..31; a weight is d * (ls_j - 32) * kvalues[nibble]
 * (ggml's non-linear table, -127..113).
 *
 * Unpacked per block: W[k] (k = 0..3) holds weights 64k..64k+63 in natural
 * order as unsigned codes u = kvalues + 128 (one vpshufb), so activations
 * load as they are. vpdpbusd gives P[k], 16 lanes of 4 products, lanes 0..7
 * in sub-block 2k, 8..15 in 2k+1. Sums reach 4 * 241 * 127, too wide for the
 * 16-bit scale multiply of the Q4_K kernels, so the scales multiply the
 * 32-bit lanes (vpmulld). The +128 of the codes comes out through the
 * activation block sums: -128 * sc_j * (bsum[2j] + bsum[2j+1]).
 *
 * Decode (nc == 1): one row stream at a time with software prefetch, as the
 * other K-quant kernels. Prefill: 2 rows x 4 tokens tiles.
 *
 * Integer sums are exact; results equal the reference up to float summation
 * order. Rows may be unaligned. */
#include "tensor/quant_simd.h"

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
#define IQ4_XS_SIZE 136
#define Q8_K_SIZE 292
#define PF_DIST 8192 /* decode software prefetch distance, as the Q4_K kernel */
enum { RT = 2, CT = 4 }; /* prefill tile: rows x tokens */

#define T512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INL T512 static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

typedef struct {
    __m512i W[4];  /* unsigned codes, weights 64k..64k+63 */
    __m512i S[4];  /* 32-bit scales per lane of P[k] */
    __m256i E;     /* words 2j, 2j+1: -128 * sc_j (multiply the 16 bsums) */
    float d;
} xsblk;

INL void unpack(const uint8_t *wb, xsblk *b) {
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

    const __m512i kv = _mm512_broadcast_i32x4(_mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141, (char)153,
                                                            (char)166, (char)181, (char)197, (char)217, (char)241));
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
INL __m512i block_int(const xsblk *b, const uint8_t *xb) {
    const __m512i z = _mm512_setzero_si512();
    __m512i i = _mm512_mullo_epi32(_mm512_dpbusd_epi32(z, b->W[0], _mm512_loadu_si512((const void *)(xb + 4))), b->S[0]);
    UNROLL for (int k = 1; k < 4; k++)
        i = _mm512_add_epi32(i, _mm512_mullo_epi32(_mm512_dpbusd_epi32(z, b->W[k], _mm512_loadu_si512((const void *)(xb + 4 + 64 * k))),
                                                   b->S[k]));
    const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(xb + 260));
    return _mm512_add_epi32(i, _mm512_zextsi256_si512(_mm256_madd_epi16(b->E, bs)));
}

INL __m512 block_acc(const xsblk *b, const uint8_t *xb, __m512 acc) {
    float dx;
    memcpy(&dx, xb, 4);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(block_int(b, xb)), _mm512_set1_ps(b->d * dx), acc);
}

INL float row_dot(int64_t nb, const uint8_t *w, const uint8_t *x, uintptr_t pf_end) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
        const uintptr_t pf = (uintptr_t)(w + (size_t)ib * IQ4_XS_SIZE) + PF_DIST;
        if (pf < pf_end)
            for (int o = 0; o < 2 * IQ4_XS_SIZE; o += 64) _mm_prefetch((const char *)(pf + (uintptr_t)o), _MM_HINT_T0);
        xsblk b0, b1;
        unpack(w + (size_t)ib * IQ4_XS_SIZE, &b0);
        unpack(w + (size_t)(ib + 1) * IQ4_XS_SIZE, &b1);
        a0 = block_acc(&b0, x + (size_t)ib * Q8_K_SIZE, a0);
        a1 = block_acc(&b1, x + (size_t)(ib + 1) * Q8_K_SIZE, a1);
    }
    if (ib < nb) {
        xsblk b0;
        unpack(w + (size_t)ib * IQ4_XS_SIZE, &b0);
        a0 = block_acc(&b0, x + (size_t)ib * Q8_K_SIZE, a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* R rows x C tokens over nb blocks: y[c*ys + r] */
INL void tile(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, float *y,
              size_t ys) {
    __m512 acc[RT][CT];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++)
        UNROLL for (int r = 0; r < R; r++) {
            xsblk b;
            unpack(w + (size_t)r * ws + (size_t)ib * IQ4_XS_SIZE, &b);
            UNROLL for (int c = 0; c < C; c++) acc[r][c] = block_acc(&b, x + (size_t)c * xs + (size_t)ib * Q8_K_SIZE, acc[r][c]);
        }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++)
        y[(size_t)c * ys + (size_t)r] = _mm512_reduce_add_ps(acc[r][c]);
}

#define TILE_CASE(R, C) case (R) * 8 + (C): tile(R, C, nb, w, ws, x, xs, y, ys); break;
_Static_assert(RT == 2 && CT == 4, "the switch below covers 1..2 x 1..4");
INL void tile_any(int R, int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, float *y, size_t ys) {
    switch (R * 8 + C) {
        TILE_CASE(1, 1) TILE_CASE(1, 2) TILE_CASE(1, 3) TILE_CASE(1, 4)
        TILE_CASE(2, 1) TILE_CASE(2, 2) TILE_CASE(2, 3) TILE_CASE(2, 4)
    default: break;
    }
}
#undef TILE_CASE

T512 static void gemm_iq4_xs(int64_t n, int nr, int nc, const void *vw, size_t ws, const void *vx, size_t xs, float *y,
                             size_t ys) {
    const int64_t nb = n / QK_K;
    const uint8_t *w = vw, *x = vx;
    if (nc == 1) {
        const uintptr_t end = (uintptr_t)(w + (size_t)nr * ws);
        for (int r = 0; r < nr; r++) y[r] = row_dot(nb, w + (size_t)r * ws, x, end);
        return;
    }
    for (int r0 = 0; r0 < nr; r0 += RT) {
        const int R = nr - r0 < RT ? nr - r0 : RT;
        for (int c0 = 0; c0 < nc; c0 += CT) {
            const int C = nc - c0 < CT ? nc - c0 : CT;
            tile_any(R, C, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs, y + (size_t)c0 * ys + (size_t)r0, ys);
        }
    }
}

T512 static float vd_iq4_xs(const void *w, const void *x, int64_t n) {
    return row_dot(n / QK_K, w, x, UINTPTR_MAX);
}

void g4_quant_avx512_iq4xs_fill(int type, g4_type_traits *tr) {
    if (type == G4_IQ4_XS) {
        tr->vec_dot = vd_iq4_xs;
        tr->gemm = gemm_iq4_xs;
    }
}

#else /* !__x86_64__ */

void g4_quant_avx512_iq4xs_fill(int type, g4_type_traits *tr) { (void)type; (void)tr; }

#endif
