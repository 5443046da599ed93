/* arm64 fast-path kernels for one level; included by quant_arm.c with LVL
 * (name suffix), TGT (target attribute) and HAVE_DOT. Not a public header. */

#define G4A_CAT_(a, b) a##_##b
#define G4A_CAT(a, b) G4A_CAT_(a, b)
#define F(name) G4A_CAT(name, LVL)
#define INL TGT static inline __attribute__((always_inline))

/* acc + 4-lane sums of a*b over 16 signed bytes */
#if HAVE_DOT && defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)
/* older clang hides vdotq_s32 unless the whole file targets dotprod */
#define DOT16(acc, a, b) g4a_sdot(acc, a, b)
TGT static inline int32x4_t g4a_sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
    __asm__(".arch armv8.2-a+dotprod\n\tsdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
    return acc;
}
#elif HAVE_DOT
#define DOT16(acc, a, b) vdotq_s32(acc, a, b)
#else
#define DOT16(acc, a, b) \
    vpadalq_s16(vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b))), vmull_high_s8(a, b))
#endif

INL float F(dot_q4_0)(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float32x4_t acc = vdupq_n_f32(0);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t k8 = vdupq_n_s8(8);
    for (int64_t ib = 0; ib < nb; ib++, w += Q4_0_SIZE, x += Q8_0_SIZE) {
        const uint8x16_t raw = vld1q_u8(w + 2);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, m4)), k8);
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), k8);
        int32x4_t s = DOT16(vdupq_n_s32(0), lo, vld1q_s8((const int8_t *)(x + 2)));
        s = DOT16(s, hi, vld1q_s8((const int8_t *)(x + 18)));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), h2f(w) * h2f(x));
    }
    return vaddvq_f32(acc);
}

INL float F(dot_q8_0)(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t ib = 0; ib < nb; ib++, w += Q8_0_SIZE, x += Q8_0_SIZE) {
        int32x4_t s = DOT16(vdupq_n_s32(0), vld1q_s8((const int8_t *)(w + 2)), vld1q_s8((const int8_t *)(x + 2)));
        s = DOT16(s, vld1q_s8((const int8_t *)(w + 18)), vld1q_s8((const int8_t *)(x + 18)));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), h2f(w) * h2f(x));
    }
    return vaddvq_f32(acc);
}

/* Q4_K / Q5_K: d*sc_j*q - dmin*m_j with q unsigned (0..15 / 0..31) */
INL float F(dot_qk45)(const int five, const uint8_t *w, const uint8_t *x, int64_t nb) {
    float32x4_t acc = vdupq_n_f32(0);
    float summ = 0;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m16 = vdupq_n_u8(0x10);
    const size_t bsz = five ? Q5_K_SIZE : Q4_K_SIZE, qoff = five ? 48 : 16;
    for (int64_t ib = 0; ib < nb; ib++, w += bsz, x += Q8_K_SIZE) {
        uint32_t a[3], u[4];
        memcpy(a, w + 4, 12);
        u[0] = a[0] & 0x3f3f3f3fu;
        u[1] = (a[2] & 0x0f0f0f0fu) | (((a[0] >> 6) & 0x03030303u) << 4);
        u[2] = a[1] & 0x3f3f3f3fu;
        u[3] = ((a[2] >> 4) & 0x0f0f0f0fu) | (((a[1] >> 6) & 0x03030303u) << 4);
        const uint8_t *sc = (const uint8_t *)u, *mn = sc + 8;
        const int8_t *q8 = (const int8_t *)(x + 4);
        /* mins: sum_j m_j * (bsum[2j] + bsum[2j+1]) */
        const int16x8_t b0 = vld1q_s16((const int16_t *)(const void *)(x + 260));
        const int16x8_t b1 = vld1q_s16((const int16_t *)(const void *)(x + 276));
        const int16x8_t bp = vpaddq_s16(b0, b1);
        const int16x8_t mv = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
        const int32x4_t mm = vmlal_high_s16(vmull_s16(vget_low_s16(bp), vget_low_s16(mv)), bp, mv);
        const float dx = rdf32(x);
        summ += h2f(w + 2) * dx * (float)vaddvq_s32(mm);
        uint8x16_t h0 = vdupq_n_u8(0), h1 = vdupq_n_u8(0);
        if (five) { h0 = vld1q_u8(w + 16); h1 = vld1q_u8(w + 32); }
        int32x4_t is = vdupq_n_s32(0);
        for (int k = 0; k < 4; k++) {
            const uint8x16_t v0 = vld1q_u8(w + qoff + 32 * k), v1 = vld1q_u8(w + qoff + 32 * k + 16);
            uint8x16_t l0 = vandq_u8(v0, m4), l1 = vandq_u8(v1, m4), u0 = vshrq_n_u8(v0, 4), u1 = vshrq_n_u8(v1, 4);
            if (five) {
                const uint8x16_t bl = vdupq_n_u8((uint8_t)(1u << (2 * k))), bh = vdupq_n_u8((uint8_t)(2u << (2 * k)));
                l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(h0, bl), m16));
                l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(h1, bl), m16));
                u0 = vorrq_u8(u0, vandq_u8(vtstq_u8(h0, bh), m16));
                u1 = vorrq_u8(u1, vandq_u8(vtstq_u8(h1, bh), m16));
            }
            int32x4_t pl = DOT16(vdupq_n_s32(0), vreinterpretq_s8_u8(l0), vld1q_s8(q8 + 64 * k));
            pl = DOT16(pl, vreinterpretq_s8_u8(l1), vld1q_s8(q8 + 64 * k + 16));
            int32x4_t ph = DOT16(vdupq_n_s32(0), vreinterpretq_s8_u8(u0), vld1q_s8(q8 + 64 * k + 32));
            ph = DOT16(ph, vreinterpretq_s8_u8(u1), vld1q_s8(q8 + 64 * k + 48));
            is = vmlaq_n_s32(is, pl, sc[2 * k]);
            is = vmlaq_n_s32(is, ph, sc[2 * k + 1]);
        }
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(is), h2f(w) * dx);
    }
    return vaddvq_f32(acc) - summ;
}
INL float F(dot_q4_K)(const uint8_t *w, const uint8_t *x, int64_t nb) { return F(dot_qk45)(0, w, x, nb); }
INL float F(dot_q5_K)(const uint8_t *w, const uint8_t *x, int64_t nb) { return F(dot_qk45)(1, w, x, nb); }

/* Q6_K: d*sc_j*(q-32), sixteen 16-element sub-blocks */
INL float F(dot_q6_K)(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float32x4_t acc = vdupq_n_f32(0);
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(0x30);
    const int8x16_t k32 = vdupq_n_s8(32);
    for (int64_t ib = 0; ib < nb; ib++, w += Q6_K_SIZE, x += Q8_K_SIZE) {
        const int8_t *sc = (const int8_t *)(w + 192);
        const int8_t *q8 = (const int8_t *)(x + 4);
        int32x4_t is = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
            for (int p = 0; p < 2; p++) { /* 16-byte halves: l in [16p, 16p+16) */
                const uint8x16_t A = vld1q_u8(ql + 16 * p), B = vld1q_u8(ql + 32 + 16 * p), H = vld1q_u8(qh + 16 * p);
                int8x16_t q[4];
                q[0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(A, m4), vandq_u8(vshlq_n_u8(H, 4), m3)));
                q[1] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(B, m4), vandq_u8(vshlq_n_u8(H, 2), m3)));
                q[2] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(A, 4), vandq_u8(H, m3)));
                q[3] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(B, 4), vandq_u8(vshrq_n_u8(H, 2), m3)));
                for (int g = 0; g < 4; g++) {
                    /* elements 128h + 32g + 16p .. +16: sub-block 8h + 2g + p */
                    const int j = 8 * h + 2 * g + p;
                    const int32x4_t s = DOT16(vdupq_n_s32(0), vsubq_s8(q[g], k32), vld1q_s8(q8 + 16 * j));
                    is = vmlaq_n_s32(is, s, sc[j]);
                }
            }
        }
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(is), h2f(w + 208) * rdf32(x));
    }
    return vaddvq_f32(acc);
}

/* ---- legacy 32-weight types and IQ4_NL (x Q8_0 / Q8_1) ---------------------
 * Element j (0..15): low nibble of qs[j]; j + 16: its high nibble; Q5_x
 * adds bit j of qh as the 5th bit. Values enter SDOT signed: Q5_0 q - 16,
 * IQ4_NL the table value; Q4_1 / Q5_1 unsigned q (0..31), plus m * s. */

/* the 5th bits of elements 16h .. 16h+15 as 0x10 bytes (qh little-endian) */
INL uint8x16_t F(qh_bits)(const uint8_t *qh, int h) {
    static const uint8_t bit[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
    const uint8x16_t b = vcombine_u8(vdup_n_u8(qh[2 * h]), vdup_n_u8(qh[2 * h + 1]));
    return vandq_u8(vtstq_u8(b, vld1q_u8(bit)), vdupq_n_u8(0x10));
}

/* kind: 0 Q4_1, 1 Q5_0, 2 Q5_1, 3 IQ4_NL */
INL float F(dot_leg)(const int kind, const uint8_t *w, const uint8_t *x, int64_t nb) {
    const size_t wbs = kind == 0 ? 20 : kind == 1 ? 22 : kind == 2 ? 24 : 18;
    const size_t qo = kind == 0 ? 4 : kind == 1 ? 6 : kind == 2 ? 8 : 2; /* qs offset */
    const size_t xbs = kind == 1 || kind == 3 ? Q8_0_SIZE : 36, xo = kind == 1 || kind == 3 ? 2 : 4;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t tbl = vld1q_s8(g4_kvalues_iq4nl);
    float32x4_t acc = vdupq_n_f32(0);
    float summ = 0;
    for (int64_t ib = 0; ib < nb; ib++, w += wbs, x += xbs) {
        const uint8x16_t raw = vld1q_u8(w + qo);
        uint8x16_t lo = vandq_u8(raw, m4), hi = vshrq_n_u8(raw, 4);
        int8x16_t a, b;
        if (kind == 3) {
            a = vqtbl1q_s8(tbl, lo);
            b = vqtbl1q_s8(tbl, hi);
        } else {
            if (kind != 0) {
                const uint8_t *qh = w + (kind == 1 ? 2 : 4);
                lo = vorrq_u8(lo, F(qh_bits)(qh, 0));
                hi = vorrq_u8(hi, F(qh_bits)(qh, 1));
            }
            a = vreinterpretq_s8_u8(lo);
            b = vreinterpretq_s8_u8(hi);
            if (kind == 1) {
                a = vsubq_s8(a, vdupq_n_s8(16));
                b = vsubq_s8(b, vdupq_n_s8(16));
            }
        }
        int32x4_t s = DOT16(vdupq_n_s32(0), a, vld1q_s8((const int8_t *)(x + xo)));
        s = DOT16(s, b, vld1q_s8((const int8_t *)(x + xo + 16)));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), h2f(w) * h2f(x));
        if (kind == 0 || kind == 2) summ += h2f(w + 2) * h2f(x + 2);
    }
    return vaddvq_f32(acc) + summ;
}
INL float F(dot_q4_1)(const uint8_t *w, const uint8_t *x, int64_t nb) { return F(dot_leg)(0, w, x, nb); }
INL float F(dot_q5_0)(const uint8_t *w, const uint8_t *x, int64_t nb) { return F(dot_leg)(1, w, x, nb); }
INL float F(dot_q5_1)(const uint8_t *w, const uint8_t *x, int64_t nb) { return F(dot_leg)(2, w, x, nb); }
INL float F(dot_iq4_nl)(const uint8_t *w, const uint8_t *x, int64_t nb) { return F(dot_leg)(3, w, x, nb); }

/* ---- IQ4_XS x Q8_K: d * (ls_j - 32) * kvalues[nibble], 32-weight sub-blocks */
INL float F(dot_iq4_xs)(const uint8_t *w, const uint8_t *x, int64_t nb) {
    const int8x16_t tbl = vld1q_s8(g4_kvalues_iq4nl);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t ib = 0; ib < nb; ib++, w += 136, x += Q8_K_SIZE) {
        const int8_t *q8 = (const int8_t *)(x + 4);
        int32x4_t is = vdupq_n_s32(0);
        for (int j = 0; j < 8; j++) {
            const uint8x16_t raw = vld1q_u8(w + 8 + 16 * j);
            int32x4_t s = DOT16(vdupq_n_s32(0), vqtbl1q_s8(tbl, vandq_u8(raw, m4)), vld1q_s8(q8 + 32 * j));
            s = DOT16(s, vqtbl1q_s8(tbl, vshrq_n_u8(raw, 4)), vld1q_s8(q8 + 32 * j + 16));
            is = vmlaq_n_s32(is, s, g4_iq4xs_scale(w, j));
        }
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(is), h2f(w) * rdf32(x));
    }
    return vaddvq_f32(acc);
}

/* ---- Q3_K / Q2_K x Q8_K: 16-weight sub-blocks --------------------------------
 * Weights 128n + 32j + l are bits 2j..2j+1 of qs[32n + l], sub-block
 * 8n + 2j + (l >= 16). Q3_K: value q + 4*hbit - 4 (hbit: bit 4n + j of
 * hmask[l]), scales 6-bit - 32; Q2_K: d*sc*q - dmin*m, 4-bit sc and m. */
INL float F(dot_qk23)(const int three, const uint8_t *w, const uint8_t *x, int64_t nb) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    float32x4_t acc = vdupq_n_f32(0);
    float summ = 0;
    const size_t bsz = three ? 110 : 84;
    for (int64_t ib = 0; ib < nb; ib++, w += bsz, x += Q8_K_SIZE) {
        const int8_t *q8 = (const int8_t *)(x + 4);
        const uint8_t *qs = w + (three ? 32 : 16);
        int sc[16];
        if (three) {
            for (int j = 0; j < 16; j++) sc[j] = g4_q3k_scale(w + 96, j);
        } else {
            int summs = 0;
            for (int j = 0; j < 16; j++) {
                sc[j] = w[j] & 0xF;
                summs += (w[j] >> 4) * (int16_t)rd16(x + 260 + 2 * j);
            }
            summ += h2f(w + 82) * rdf32(x) * (float)summs;
        }
        int32x4_t is = vdupq_n_s32(0);
        for (int n = 0; n < 2; n++)
            for (int p = 0; p < 2; p++) { /* l in [16p, 16p + 16) */
                const uint8x16_t Q = vld1q_u8(qs + 32 * n + 16 * p);
                const uint8x16_t H = three ? vld1q_u8(w + 16 * p) : vdupq_n_u8(0);
                for (int j = 0; j < 4; j++) {
                    uint8x16_t q = vandq_u8(vshlq_u8(Q, vdupq_n_s8((int8_t)(-2 * j))), m3);
                    int8x16_t v;
                    if (three) {
                        const uint8x16_t hb = vtstq_u8(H, vdupq_n_u8((uint8_t)(1u << (4 * n + j))));
                        v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(q, vandq_u8(hb, vdupq_n_u8(4)))), vdupq_n_s8(4));
                    } else {
                        v = vreinterpretq_s8_u8(q);
                    }
                    const int sb = 8 * n + 2 * j + p;
                    const int32x4_t s = DOT16(vdupq_n_s32(0), v, vld1q_s8(q8 + 128 * n + 32 * j + 16 * p));
                    is = vmlaq_n_s32(is, s, sc[sb]);
                }
            }
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(is), h2f(w + (three ? 108 : 80)) * rdf32(x));
    }
    return vaddvq_f32(acc) - summ;
}
INL float F(dot_q3_K)(const uint8_t *w, const uint8_t *x, int64_t nb) { return F(dot_qk23)(1, w, x, nb); }
INL float F(dot_q2_K)(const uint8_t *w, const uint8_t *x, int64_t nb) { return F(dot_qk23)(0, w, x, nb); }

#define DRIVER(t, BLK)                                                                          \
    TGT static float F(vd_##t)(const void *vw, const void *vx, int64_t n) {                    \
        return F(dot_##t)(vw, vx, n / (BLK));                                                   \
    }                                                                                           \
    TGT static void F(gemm_##t)(int64_t n, int nr, int nc, const void *vw, size_t ws, const void *vx, \
                                size_t xs, float *y, size_t ys) {                               \
        const uint8_t *w = vw, *x = vx;                                                         \
        for (int c = 0; c < nc; c++)                                                            \
            for (int r = 0; r < nr; r++)                                                        \
                y[(size_t)c * ys + (size_t)r] = F(dot_##t)(w + (size_t)r * ws, x + (size_t)c * xs, n / (BLK)); \
    }
DRIVER(q4_0, QK)
DRIVER(q8_0, QK)
DRIVER(q4_K, QK_K)
DRIVER(q5_K, QK_K)
DRIVER(q6_K, QK_K)
DRIVER(q4_1, QK)
DRIVER(q5_0, QK)
DRIVER(q5_1, QK)
DRIVER(iq4_nl, QK)
DRIVER(iq4_xs, QK_K)
DRIVER(q3_K, QK_K)
DRIVER(q2_K, QK_K)
#undef DRIVER
#undef DOT16
#undef INL
#undef F
