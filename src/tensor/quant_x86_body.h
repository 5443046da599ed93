/* Integer fast-path kernels for one x86 level; included by quant_x86.c with
 * LVL (name suffix), TGT (target attribute), RT x CT (micro-tile: rows x
 * tokens) and HAVE_VNNI defined. Every tile keeps RT*CT float accumulators
 * of 8 lanes; each weight block is unpacked once per tile and used for CT
 * tokens, each activation block loaded once per tile and used for RT rows.
 * Not a public header. */

#define G4X_CAT_(a, b) a##_##b
#define G4X_CAT(a, b) G4X_CAT_(a, b)
#define F(name) G4X_CAT(name, LVL)
#define INL TGT static inline __attribute__((always_inline))

#if HAVE_VNNI
#define DPBUSD(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define DPWSSD(acc, a, b) _mm256_dpwssd_epi32(acc, a, b)
#else
#define DPBUSD(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
#define DPWSSD(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
#endif
#define H2F(p) _cvtsh_ss(rd16(p))

/* y[c*ys + r] for the tile from its accumulators */
#define TILE_STORE()                                                              \
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++)         \
        y[(size_t)c * ys + (size_t)r] = hsum8(acc[r][c]);
#define TILE_ZERO()                                                               \
    __m256 acc[RT][CT];                                                           \
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++)         \
        acc[r][c] = _mm256_setzero_ps();

/* ---- Q4_0 x Q8_0: sum((q-8)*x) = sum(q*x) - 8*sum(x) ---------------------- */
INL void F(tile_q4_0)(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                      size_t xs, float *y, size_t ys) {
    TILE_ZERO()
    const __m256i m4 = _mm256_set1_epi8(0x0F), k8 = _mm256_set1_epi8(8), z = _mm256_setzero_si256();
    /* one accumulator chain per (row, token), decode included: every path
     * must round alike (batch invariance; a two-chain decode loop was
     * faster at this level, where the fma latency limits one row) */
    int64_t ib = 0;
    for (; ib < nb; ib++) {
        __m256i xv[CT], xc[CT];
        float dx[CT];
        UNROLL for (int c = 0; c < C; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)ib * Q8_0_SIZE;
            xv[c] = _mm256_loadu_si256((const __m256i *)(const void *)(xb + 2));
            dx[c] = H2F(xb);
            xc[c] = _mm256_sub_epi32(z, DPBUSD(z, k8, xv[c]));
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ws + (size_t)ib * Q4_0_SIZE;
            const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(wb + 2));
            const __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
            const float dw = H2F(wb);
            UNROLL for (int c = 0; c < C; c++) {
                const __m256i s = DPBUSD(xc[c], q, xv[c]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * dx[c]), acc[r][c]);
            }
        }
    }
    TILE_STORE()
}

/* ---- Q8_0 x Q8_0 ---------------------------------------------------------- */
INL void F(tile_q8_0)(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                      size_t xs, float *y, size_t ys) {
    TILE_ZERO()
    const __m256i z = _mm256_setzero_si256();
#if HAVE_VNNI
    const __m256i k80 = _mm256_set1_epi8((char)0x80), k1 = _mm256_set1_epi8(1);
#endif
    for (int64_t ib = 0; ib < nb; ib++) {
        __m256i xv[CT];
        float dx[CT];
        UNROLL for (int c = 0; c < C; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)ib * Q8_0_SIZE;
            xv[c] = _mm256_loadu_si256((const __m256i *)(const void *)(xb + 2));
#if HAVE_VNNI
            xv[c] = _mm256_xor_si256(xv[c], k80); /* x + 128, unsigned */
#endif
            dx[c] = H2F(xb);
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ws + (size_t)ib * Q8_0_SIZE;
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 2));
            const float dw = H2F(wb);
#if HAVE_VNNI
            /* sum((x+128)*w) - 128*sum(w) */
            const __m256i seed = _mm256_sub_epi32(z, _mm256_slli_epi32(DPBUSD(z, k1, wv), 7));
#else
            const __m256i aw = _mm256_abs_epi8(wv);
#endif
            UNROLL for (int c = 0; c < C; c++) {
#if HAVE_VNNI
                const __m256i s = DPBUSD(seed, xv[c], wv);
#else
                const __m256i s = DPBUSD(z, aw, _mm256_sign_epi8(xv[c], wv));
#endif
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * dx[c]), acc[r][c]);
            }
        }
    }
    TILE_STORE()
}

/* ---- Q4_K / Q5_K x Q8_K ---------------------------------------------------
 * value = d*sc_j*q - dmin*m_j (q unsigned); the mins term uses the Q8_K
 * per-16 sums: sum_j m_j * (bsum[2j] + bsum[2j+1]). */

/* 12 packed bytes -> sc[0..7] in bytes 0..7, mins in bytes 8..15 */
INL void F(k4_scales)(const uint8_t *p, uint32_t u[4]) {
    uint32_t a[3];
    memcpy(a, p, 12);
    u[0] = a[0] & 0x3f3f3f3fu;
    u[1] = (a[2] & 0x0f0f0f0fu) | (((a[0] >> 6) & 0x03030303u) << 4);
    u[2] = a[1] & 0x3f3f3f3fu;
    u[3] = ((a[2] >> 4) & 0x0f0f0f0fu) | (((a[1] >> 6) & 0x03030303u) << 4);
}

INL void F(tile_qk45)(const int R, const int C, const int five, int64_t nb, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys) {
    TILE_ZERO()
    const __m256i m4 = _mm256_set1_epi8(0x0F), m16 = _mm256_set1_epi8(0x10);
    const __m128i dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const size_t bsz = five ? Q5_K_SIZE : Q4_K_SIZE;
    const size_t qoff = five ? 48 : 16;
    for (int64_t ib = 0; ib < nb; ib++) {
        float dx[CT];
        const uint8_t *xq[CT];
        UNROLL for (int c = 0; c < C; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)ib * Q8_K_SIZE;
            dx[c] = rdf32(xb);
            xq[c] = xb + 4;
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ws + (size_t)ib * bsz;
            const float d = H2F(wb), dmin = H2F(wb + 2);
            uint32_t u[4];
            F(k4_scales)(wb + 4, u);
            const uint8_t *sc = (const uint8_t *)u;
            const __m256i mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(u + 2)), dup));
            __m256i is[CT];
            UNROLL for (int c = 0; c < C; c++) is[c] = _mm256_setzero_si256();
            __m256i hb = five ? _mm256_loadu_si256((const __m256i *)(const void *)(wb + 16)) : _mm256_setzero_si256();
            UNROLL for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(wb + qoff + 32 * k));
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (five) {
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hb, 4), m16));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hb, 3), m16));
                    hb = _mm256_srli_epi16(hb, 2);
                }
                const __m256i slo = _mm256_set1_epi16(sc[2 * k]), shi = _mm256_set1_epi16(sc[2 * k + 1]);
                UNROLL for (int c = 0; c < C; c++) {
                    const __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)(xq[c] + 64 * k));
                    const __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(xq[c] + 64 * k + 32));
                    is[c] = DPWSSD(is[c], _mm256_maddubs_epi16(lo, x0), slo);
                    is[c] = DPWSSD(is[c], _mm256_maddubs_epi16(hi, x1), shi);
                }
            }
            UNROLL for (int c = 0; c < C; c++) {
                const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(xq[c] + 256));
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[c]), _mm256_set1_ps(d * dx[c]), acc[r][c]);
                acc[r][c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins)),
                                             _mm256_set1_ps(dmin * dx[c]), acc[r][c]);
            }
        }
    }
    TILE_STORE()
}
INL void F(tile_q4_K)(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                      size_t xs, float *y, size_t ys) {
    F(tile_qk45)(R, C, 0, nb, w, ws, x, xs, y, ys);
}
INL void F(tile_q5_K)(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                      size_t xs, float *y, size_t ys) {
    F(tile_qk45)(R, C, 1, nb, w, ws, x, xs, y, ys);
}

/* ---- Q6_K x Q8_K: value = d*sc_j*(q-32), q unsigned 6-bit ---------------- */
INL void F(tile_q6_K)(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                      size_t xs, float *y, size_t ys) {
    TILE_ZERO()
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), z = _mm256_setzero_si256();
    for (int64_t ib = 0; ib < nb; ib++) {
        float dx[CT];
        const uint8_t *xq[CT];
        UNROLL for (int c = 0; c < C; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)ib * Q8_K_SIZE;
            dx[c] = rdf32(xb);
            xq[c] = xb + 4;
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ws + (size_t)ib * Q6_K_SIZE;
            const int8_t *sc = (const int8_t *)(wb + 192);
            const float d = H2F(wb + 208);
            const __m256i scv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)sc));
            __m256i is[CT];
            UNROLL for (int c = 0; c < C; c++) {
                const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(xq[c] + 256));
                is[c] = _mm256_sub_epi32(z, _mm256_slli_epi32(_mm256_madd_epi16(bs, scv), 5));
            }
            UNROLL for (int h = 0; h < 2; h++) {
                const __m256i A = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 64 * h));
                const __m256i B = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 64 * h + 32));
                const __m256i H = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 128 + 32 * h));
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
                q[1] = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m30));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
                UNROLL for (int g = 0; g < 4; g++) {
                    const int G = 4 * h + g;
                    const __m256i sv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * G + 1]), _mm_set1_epi16(sc[2 * G]));
                    UNROLL for (int c = 0; c < C; c++) {
                        const __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(xq[c] + 32 * G));
                        is[c] = DPWSSD(is[c], _mm256_maddubs_epi16(q[g], xv), sv);
                    }
                }
            }
            UNROLL for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[c]), _mm256_set1_ps(d * dx[c]), acc[r][c]);
        }
    }
    TILE_STORE()
}

/* ---- Q3_K / Q2_K x Q8_K: 16-weight sub-blocks ------------------------------
 * Weights 32G + l (G = 4n + j, l = 0..31) are bits 2j..2j+1 of qs[32n + l];
 * sub-block 2G holds l < 16 (lower 128 bits), 2G+1 the rest, as in Q6_K.
 * Q3_K: value d*sc*(q + 4*hbit - 4), hbit = bit 4n+j of hmask[l], the -4
 * through -4*sc.bsums; Q2_K: d*sc*q - dmin*m with 4-bit sc, m. */

INL void F(tile_qk23)(const int R, const int C, const int three, int64_t nb, const uint8_t *w, size_t ws,
                      const uint8_t *x, size_t xs, float *y, size_t ys) {
    TILE_ZERO()
    const size_t bsz = three ? Q3_K_SIZE : Q2_K_SIZE;
    const __m256i m3 = _mm256_set1_epi8(3), k4 = _mm256_set1_epi8(4), z = _mm256_setzero_si256();
    for (int64_t ib = 0; ib < nb; ib++) {
        float dx[CT];
        const uint8_t *xq[CT];
        UNROLL for (int c = 0; c < C; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)ib * Q8_K_SIZE;
            dx[c] = rdf32(xb);
            xq[c] = xb + 4;
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ws + (size_t)ib * bsz;
            const uint8_t *qs = wb + (three ? 32 : 16);
            int16_t sc[16];
            __m256i is[CT], mn[CT];
            float d, dmin = 0;
            if (three) {
                const __m128i s8 = g4_q3k_scales(wb + 96);
                _mm256_storeu_si256((__m256i *)(void *)sc, _mm256_cvtepi8_epi16(s8));
                d = H2F(wb + 108);
                const __m256i scv = _mm256_cvtepi8_epi16(s8);
                UNROLL for (int c = 0; c < C; c++) {
                    const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(xq[c] + 256));
                    is[c] = _mm256_sub_epi32(z, _mm256_slli_epi32(_mm256_madd_epi16(bs, scv), 2));
                }
            } else {
                const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)wb);
                const __m128i m4 = _mm_set1_epi8(0x0F);
                _mm256_storeu_si256((__m256i *)(void *)sc, _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4)));
                const __m256i mv = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
                d = H2F(wb + 80);
                dmin = H2F(wb + 82);
                UNROLL for (int c = 0; c < C; c++) {
                    mn[c] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(xq[c] + 256)), mv);
                    is[c] = z;
                }
            }
            const __m256i hm = three ? _mm256_loadu_si256((const __m256i *)(const void *)wb) : z;
            UNROLL for (int n = 0; n < 2; n++) {
                const __m256i Q = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * n));
                UNROLL for (int j = 0; j < 4; j++) {
                    const int G = 4 * n + j, hb = 4 * n + j; /* hmask bit, moved to bit 2 */
                    __m256i q = _mm256_and_si256(_mm256_srli_epi16(Q, 2 * j), m3);
                    if (three) {
                        const __m256i h = hb >= 2 ? _mm256_srli_epi16(hm, hb - 2) : _mm256_slli_epi16(hm, 2 - hb);
                        q = _mm256_or_si256(q, _mm256_and_si256(h, k4));
                    }
                    const __m256i sv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * G + 1]), _mm_set1_epi16(sc[2 * G]));
                    UNROLL for (int c = 0; c < C; c++) {
                        const __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(xq[c] + 32 * G));
                        is[c] = DPWSSD(is[c], _mm256_maddubs_epi16(q, xv), sv);
                    }
                }
            }
            UNROLL for (int c = 0; c < C; c++) {
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[c]), _mm256_set1_ps(d * dx[c]), acc[r][c]);
                if (!three) acc[r][c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mn[c]), _mm256_set1_ps(dmin * dx[c]), acc[r][c]);
            }
        }
    }
    TILE_STORE()
}
INL void F(tile_q3_K)(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                      size_t xs, float *y, size_t ys) {
    F(tile_qk23)(R, C, 1, nb, w, ws, x, xs, y, ys);
}
INL void F(tile_q2_K)(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                      size_t xs, float *y, size_t ys) {
    F(tile_qk23)(R, C, 0, nb, w, ws, x, xs, y, ys);
}

/* ---- IQ4_XS x Q8_K: value d*(ls-32)*kvalues[nibble], 32-weight sub-blocks -
 * Sub-block j: qs[16j..16j+15], low nibbles weights 0..15, high 16..31. The
 * table values are signed (-127..113): |w| times sign-applied x keeps the
 * 16-bit pair sums in range (2*127*127). */
INL void F(tile_iq4_xs)(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                        size_t xs, float *y, size_t ys) {
    TILE_ZERO()
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i kv = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)g4_kvalues_iq4nl));
    for (int64_t ib = 0; ib < nb; ib++) {
        float dx[CT];
        const uint8_t *xq[CT];
        UNROLL for (int c = 0; c < C; c++) {
            const uint8_t *xb = x + (size_t)c * xs + (size_t)ib * Q8_K_SIZE;
            dx[c] = rdf32(xb);
            xq[c] = xb + 4;
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ws + (size_t)ib * IQ4_XS_SIZE;
            const float d = H2F(wb);
            __m256i is[CT];
            UNROLL for (int c = 0; c < C; c++) is[c] = _mm256_setzero_si256();
            UNROLL for (int j = 0; j < 8; j++) {
                const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(wb + 8 + 16 * j));
                const __m256i v = _mm256_shuffle_epi8(kv, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4));
                const __m256i av = _mm256_abs_epi8(v), sv = _mm256_set1_epi16((short)g4_iq4xs_scale(wb, j));
                UNROLL for (int c = 0; c < C; c++) {
                    const __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(xq[c] + 32 * j));
                    is[c] = DPWSSD(is[c], _mm256_maddubs_epi16(av, _mm256_sign_epi8(xv, v)), sv);
                }
            }
            UNROLL for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[c]), _mm256_set1_ps(d * dx[c]), acc[r][c]);
        }
    }
    TILE_STORE()
}

/* ---- drivers: full tiles, then row and token tails ------------------------ */
#define DRIVER(t, BLK)                                                                          \
    TGT static void F(gemm_##t)(int64_t n, int nr, int nc, const void *vw, size_t ws, const void *vx, \
                                size_t xs, float *y, size_t ys) {                               \
        const int64_t nb = n / (BLK);                                                           \
        const uint8_t *w = vw, *x = vx;                                                         \
        int r0 = 0;                                                                             \
        if (nc == 1) { /* decode: one row stream at a time beats 4 interleaved streams from DRAM (measured) */                \
            for (int r = 0; r < nr; r++) F(tile_##t)(1, 1, nb, w + (size_t)r * ws, ws, x, xs, y + r, ys); \
            return;                                                                             \
        }                                                                                       \
        for (; r0 + RT <= nr; r0 += RT) {                                                       \
            int c0 = 0;                                                                         \
            for (; c0 + CT <= nc; c0 += CT)                                                     \
                F(tile_##t)(RT, CT, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs,       \
                            y + (size_t)c0 * ys + (size_t)r0, ys);                              \
            for (; c0 < nc; c0++)                                                               \
                F(tile_##t)(RT, 1, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs,        \
                            y + (size_t)c0 * ys + (size_t)r0, ys);                              \
        }                                                                                       \
        for (; r0 < nr; r0++) {                                                                 \
            int c0 = 0;                                                                         \
            for (; c0 + CT <= nc; c0 += CT)                                                     \
                F(tile_##t)(1, CT, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs,        \
                            y + (size_t)c0 * ys + (size_t)r0, ys);                              \
            for (; c0 < nc; c0++)                                                               \
                F(tile_##t)(1, 1, nb, w + (size_t)r0 * ws, ws, x + (size_t)c0 * xs, xs,         \
                            y + (size_t)c0 * ys + (size_t)r0, ys);                              \
        }                                                                                       \
    }                                                                                           \
    TGT static float F(vd_##t)(const void *vw, const void *vx, int64_t n) {                    \
        float r;                                                                                \
        F(tile_##t)(1, 1, n / (BLK), vw, 0, vx, 0, &r, 0);                                      \
        return r;                                                                               \
    }
DRIVER(q4_0, QK)
DRIVER(q8_0, QK)
DRIVER(q4_K, QK_K)
DRIVER(q5_K, QK_K)
DRIVER(q6_K, QK_K)
DRIVER(q3_K, QK_K)
DRIVER(q2_K, QK_K)
DRIVER(iq4_xs, QK_K)
#undef DRIVER

#undef TILE_STORE
#undef TILE_ZERO
#undef H2F
#undef DPBUSD
#undef DPWSSD
#undef INL
#undef F
