/* Q3_K's scale decode for the x86 kernels (the AVX2 body, quant_x86_body.h,
 * and the AVX-512 kernels, quant_avx512_k.c). Not a public header. */
#ifndef G4_QUANT_X86_Q3K_H
#define G4_QUANT_X86_Q3K_H

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

/* The 16 six-bit scales, minus 32, as int8, from the 12 bytes at p: dwords
 * a0 a1 a2; scale j < 8 has its low 4 bits in byte j of a0 a1, j >= 8 in the
 * high nibble of byte j - 8, and its 2 high bits in byte j % 4 of a2 at bit
 * 2 * (j / 4). Reads p[-2..13]: in a block only 2 bytes (d) follow the
 * scales, so the 16-byte load starts 2 bytes early. */
__attribute__((target("avx2"), always_inline)) static inline __m128i g4_q3k_scales(const uint8_t *p) {
    const __m128i a = _mm_srli_si128(_mm_loadu_si128((const __m128i *)(const void *)(p - 2)), 2);
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(a, _MM_SHUFFLE(1, 0, 1, 0)), _mm_setr_epi32(0, 0, 4, 4)),
                                     _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_slli_epi32(_mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(a, _MM_SHUFFLE(2, 2, 2, 2)),
                                                                   _mm_setr_epi32(0, 2, 4, 6)),
                                                    _mm_set1_epi8(3)),
                                      4);
    return _mm_sub_epi8(_mm_or_si128(lo, hi), _mm_set1_epi8(32));
}
#endif

#endif
