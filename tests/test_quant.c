/* Tensor type kernels: fp16/bf16 conversions, quantize/dequantize error per
 * type, exact and fast dot products, hand-built blocks with known values, and
 * golden checks against the GGUF files made by llama-quantize:
 *   - F32 weights of gemma4-e re-quantized here must give the shipped Q8_0,
 *     Q4_0, F16 and BF16 tensors byte for byte;
 *   - every quantized tensor of gemma4-kq.* decodes to finite values and
 *     re-quantizing its own decoded values lands (almost) on the same values.
 * GGUF files are read with a small bounds-checked walker below, so this test
 * does not depend on the GGUF reader. */
#include "harness.h"
#include "tensor/types.h"

#include <float.h>
#include <stdint.h>

/* ---------------------------------------------------------------- helpers */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 32);
}
static double rnd_unif(void) { return (rnd_u32() + 0.5) / 4294967296.0; }
static double rnd_gauss(void) {
    return sqrt(-2.0 * log(rnd_unif())) * cos(6.283185307179586 * rnd_unif());
}
/* Weight-like data: gaussian with a random per-row scale, a few outliers. */
static void fill_weights(float *x, int64_t n, double scale) {
    for (int64_t i = 0; i < n; i++) {
        double v = rnd_gauss() * scale;
        if (rnd_u32() % 97 == 0) v *= 4.0;
        x[i] = (float)v;
    }
}

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float ffrom(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static const int ALL_TYPES[] = {
    G4_F32, G4_F16, G4_BF16, G4_Q4_0, G4_Q4_1, G4_Q5_0, G4_Q5_1, G4_Q8_0, G4_Q8_1,
    G4_Q2_K, G4_Q3_K, G4_Q4_K, G4_Q5_K, G4_Q6_K, G4_Q8_K, G4_IQ4_NL, G4_IQ4_XS,
};
#define N_ALL_TYPES (int)(sizeof ALL_TYPES / sizeof ALL_TYPES[0])

/* Relative RMS error bound of quantize -> dequantize on gaussian data (with
 * 1% of values scaled x4 as outliers). Set ~15% above what the reference
 * quantizers reach (the numbers are printed; for gaussian data the optimal
 * uniform quantizer gives ~0.34 / 0.19 / 0.10 / 0.05 / 0.025 at 2..6 bits),
 * so a quantizer that loses a bit, truncates instead of rounding, or picks a
 * poor scale fails. */
static double err_bound(int t) {
    switch (t) {
    case G4_F32:    return 0.0;
    case G4_F16:    return 2.5e-4;
    case G4_BF16:   return 1.9e-3;
    case G4_Q8_0:   return 0.0069;
    case G4_Q8_1:   return 0.0070;
    case G4_Q8_K:   return 0.0130;
    case G4_Q6_K:   return 0.0235;
    case G4_Q5_0:   return 0.0550;
    case G4_Q5_1:   return 0.0460;
    case G4_Q5_K:   return 0.0456;
    case G4_Q4_0:   return 0.1120;
    case G4_Q4_1:   return 0.0950;
    case G4_Q4_K:   return 0.0890;
    case G4_IQ4_NL: return 0.0940;
    case G4_IQ4_XS: return 0.1000;
    case G4_Q3_K:   return 0.1960;
    case G4_Q2_K:   return 0.3600;
    }
    return 0;
}

static const g4_type_traits *T(int t) { return g4_type_info(t); }

/* ------------------------------------------------------------ fp16 / bf16 */
TEST(fp16_all_halves_round_trip) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = g4_fp16_to_fp32((uint16_t)h);
        const uint16_t back = g4_fp32_to_fp16(f);
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) {
            /* NaN: stays NaN, sign kept, quiet */
            if (!isnan(f) || (back & 0x7e00) != 0x7e00 || (back & 0x8000) != (h & 0x8000)) bad++;
        } else if (back != h) {
            bad++;
        }
    }
    CHECKF(bad == 0, "%d halves did not round-trip", bad);
    /* every finite half against the definition: (-1)^s * m * 2^(e-25) */
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        if (e == 0x1f) {
            const float f = g4_fp16_to_fp32((uint16_t)h);
            if (m ? !isnan(f) : !(isinf(f) && (f < 0) == !!(h & 0x8000))) bad++;
            continue;
        }
        double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (h & 0x8000) v = -v;
        const float f = g4_fp16_to_fp32((uint16_t)h);
        if ((double)f != v || !!signbit(f) != !!(h & 0x8000)) bad++;
    }
    CHECKF(bad == 0, "%d halves decode wrong", bad);
    /* the F16 row kernel decodes the same way */
    {
        uint16_t hs[1024];
        float fs[1024];
        bad = 0;
        for (uint32_t base = 0; base < 65536; base += 1024) {
            for (int i = 0; i < 1024; i++) hs[i] = (uint16_t)(base + i);
            T(G4_F16)->to_float(hs, fs, 1024);
            for (int i = 0; i < 1024; i++) {
                const float f = g4_fp16_to_fp32(hs[i]);
                if (isnan(f) ? !isnan(fs[i]) : fbits(f) != fbits(fs[i])) bad++;
            }
        }
        CHECKF(bad == 0, "%d F16 row decodes differ", bad);
    }
    /* known values */
    CHECK(g4_fp16_to_fp32(0x3c00) == 1.0f);
    CHECK(g4_fp16_to_fp32(0xc000) == -2.0f);
    CHECK(g4_fp16_to_fp32(0x7bff) == 65504.0f);
    CHECK(g4_fp16_to_fp32(0x0001) == ldexpf(1.0f, -24));
    CHECK(g4_fp16_to_fp32(0x03ff) == ldexpf(1023.0f, -24));
    CHECK(g4_fp16_to_fp32(0x0400) == ldexpf(1.0f, -14));
    CHECK(isinf(g4_fp16_to_fp32(0x7c00)) && g4_fp16_to_fp32(0xfc00) < 0);
    CHECK(fbits(g4_fp16_to_fp32(0x8000)) == 0x80000000u);
    CHECK(g4_fp32_to_fp16(INFINITY) == 0x7c00 && g4_fp32_to_fp16(-INFINITY) == 0xfc00);
    CHECK(g4_fp32_to_fp16(1e10f) == 0x7c00);
    CHECK(g4_fp32_to_fp16(1e-10f) == 0x0000 && g4_fp32_to_fp16(-1e-10f) == 0x8000);
    CHECK((g4_fp32_to_fp16(NAN) & 0x7fff) == 0x7e00);
}

/* Every rounding boundary: the midpoint between two neighbouring halves
 * (exact in float) must round to the even one, and one float ulp either side
 * must round to the nearer one. Covers subnormals, the subnormal/normal
 * seam, and overflow (the midpoint above 65504 rounds to infinity). */
TEST(fp16_rounding_all_midpoints) {
    int bad = 0;
    for (uint32_t h = 0; h < 0x7c00; h++) {
        const double lo = g4_fp16_to_fp32((uint16_t)h);
        const double hi = h == 0x7bff ? 65536.0 : g4_fp16_to_fp32((uint16_t)(h + 1));
        const float mid = (float)((lo + hi) / 2);
        if ((double)mid != (lo + hi) / 2) { bad++; continue; }
        const uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        const float up = nextafterf(mid, INFINITY), down = nextafterf(mid, 0.0f);
        for (int s = 0; s < 2; s++) {
            const float sg = s ? -1.0f : 1.0f;
            const uint16_t sb = s ? 0x8000 : 0;
            if (g4_fp32_to_fp16(sg * mid) != (sb | even)) bad++;
            if (g4_fp32_to_fp16(sg * up) != (sb | (h + 1))) bad++;
            if (g4_fp32_to_fp16(sg * down) != (sb | h)) bad++;
        }
    }
    CHECKF(bad == 0, "%d rounding cases wrong", bad);
#if defined(__FLT16_MAX__) && (defined(__x86_64__) || defined(__aarch64__))
    /* independent reference: the compiler's _Float16 conversion (IEEE RNE) */
    int bad2 = 0;
    for (int i = 0; i < 2000000; i++) {
        const float f = ffrom(rnd_u32());
        if (isnan(f)) continue;
        const _Float16 r = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &r, 2);
        if (g4_fp32_to_fp16(f) != rb) bad2++;
    }
    CHECKF(bad2 == 0, "%d random floats differ from _Float16", bad2);
#endif
}

TEST(bf16_conversion) {
    CHECK(g4_fp32_to_bf16(1.0f) == 0x3f80);
    CHECK(g4_fp32_to_bf16(ffrom(0x3f808000u)) == 0x3f80);  /* tie -> even (down) */
    CHECK(g4_fp32_to_bf16(ffrom(0x3f818000u)) == 0x3f82);  /* tie -> even (up) */
    CHECK(g4_fp32_to_bf16(ffrom(0x3f808001u)) == 0x3f81);
    CHECK(g4_fp32_to_bf16(ffrom(0x3f807fffu)) == 0x3f80);
    CHECK(g4_fp32_to_bf16(INFINITY) == 0x7f80);
    CHECK(g4_fp32_to_bf16(-INFINITY) == 0xff80);
    CHECK(g4_fp32_to_bf16(FLT_MAX) == 0x7f80);              /* rounds up to inf */
    CHECK(g4_fp32_to_bf16(ffrom(0x7f800001u)) == 0x7fc0);   /* NaN made quiet */
    CHECK(g4_fp32_to_bf16(ffrom(0x00000001u)) == 0x0000);   /* subnormals kept/rounded */
    CHECK(g4_fp32_to_bf16(ffrom(0x00018000u)) == 0x0002);
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = g4_bf16_to_fp32((uint16_t)h);
        if (isnan(f)) continue;
        if (g4_fp32_to_bf16(f) != h) bad++;
    }
    CHECKF(bad == 0, "%d bf16 values did not round-trip", bad);
    /* random floats: result is the nearest bf16, ties to even */
    bad = 0;
    for (int i = 0; i < 1000000; i++) {
        const uint32_t u = rnd_u32();
        const float f = ffrom(u);
        if (isnan(f) || isinf(f) || fabsf(f) > 3.3e38f) continue;
        const uint16_t b = g4_fp32_to_bf16(f);
        const double r = g4_bf16_to_fp32(b), e = fabs((double)f - r);
        const double other = g4_bf16_to_fp32((uint16_t)(b + ((double)f > r ? 1 : -1)));
        const double e2 = fabs((double)f - other);
        if (e > e2 || (e == e2 && (b & 1))) bad++;
    }
    CHECKF(bad == 0, "%d random floats not rounded to nearest even", bad);
}

/* ---------------------------------------------------------- the type table */
TEST(table_kernels_present) {
    for (int k = 0; k < N_ALL_TYPES; k++) {
        const g4_type_traits *tr = T(ALL_TYPES[k]);
        CHECK(tr && tr->to_float && tr->from_float && tr->dot_f32 && tr->vec_dot);
        if (!tr) continue;
        const g4_type_traits *v = T(tr->vec_dot_type);
        CHECKF(v && v->from_float && v->to_float, "%s vec_dot_type", tr->name);
    }
    CHECK(T(G4_Q4_0)->vec_dot_type == G4_Q8_0);
    CHECK(T(G4_Q5_0)->vec_dot_type == G4_Q8_0);
    CHECK(T(G4_Q8_0)->vec_dot_type == G4_Q8_0);
    CHECK(T(G4_IQ4_NL)->vec_dot_type == G4_Q8_0);
    CHECK(T(G4_Q4_1)->vec_dot_type == G4_Q8_1);
    CHECK(T(G4_Q5_1)->vec_dot_type == G4_Q8_1);
    CHECK(T(G4_Q2_K)->vec_dot_type == G4_Q8_K && T(G4_Q6_K)->vec_dot_type == G4_Q8_K);
    CHECK(T(G4_IQ4_XS)->vec_dot_type == G4_Q8_K);
    CHECK(T(G4_F16)->vec_dot_type == G4_F16 && T(G4_BF16)->vec_dot_type == G4_BF16);
    CHECK(T(G4_F32)->vec_dot_type == G4_F32);
    /* unsupported types have no kernels: the loader refuses them */
    CHECK(T(G4_IQ2_XXS) && !T(G4_IQ2_XXS)->to_float && !T(G4_IQ2_XXS)->vec_dot);
    CHECK(T(G4_MXFP4) && !T(G4_MXFP4)->dot_f32);
    CHECK(T(G4_I32) && !T(G4_I32)->from_float);
}

/* ------------------------------------------- random data: error and dots */
static int nblocks_list[] = {1, 2, 3, 7};

TEST(quantize_dequantize_error) {
    double errs[G4_TYPE_COUNT] = {0};
    for (int k = 0; k < N_ALL_TYPES; k++) {
        const int t = ALL_TYPES[k];
        const g4_type_traits *tr = T(t);
        const int64_t qb = tr->blck_size == 1 ? 32 : tr->blck_size;
        double worst = 0, sum_rel2 = 0;
        int rows = 0;
        for (int s = 0; s < 4; s++) {
            for (int rep = 0; rep < 24; rep++) {
                const int64_t n = nblocks_list[s] * qb;
                float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
                void *q = malloc(g4_row_size(t, n));
                /* scales from 1e-3 to 10: exercises fp16 scale rounding too */
                fill_weights(x, n, pow(10.0, -3.0 + 4.0 * rnd_unif()));
                tr->from_float(x, q, n);
                tr->to_float(q, y, n);
                double e = 0, d = 0;
                int finite = 1;
                for (int64_t i = 0; i < n; i++) {
                    if (!isfinite(y[i])) finite = 0;
                    e += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
                    d += (double)x[i] * x[i];
                }
                CHECKF(finite, "%s: non-finite output", tr->name);
                sum_rel2 += e / d;
                rows++;
                worst = fmax(worst, sqrt(e / d));
                free(x); free(y); free(q);
            }
        }
        /* root of the mean per-row relative squared error */
        const double rel = sqrt(sum_rel2 / rows);
        printf("  %-7s rel rms err %.5f (worst row %.5f, bound %.4f)\n", tr->name, rel, worst,
               err_bound(t));
        CHECKF(rel <= err_bound(t), "%s rel err %g > %g", tr->name, rel, err_bound(t));
        if (t == G4_F32) CHECK(worst == 0);
        else CHECKF(rel > err_bound(t) / 20, "%s: error %g suspiciously small", tr->name, rel);
        errs[t] = rel;
    }
    /* more bits, less error; the K-quants and IQ4 beat the legacy 4/5-bit */
    CHECK(errs[G4_Q2_K] > errs[G4_Q3_K] && errs[G4_Q3_K] > errs[G4_Q4_K]);
    CHECK(errs[G4_Q4_K] > errs[G4_Q5_K] && errs[G4_Q5_K] > errs[G4_Q6_K]);
    CHECK(errs[G4_Q6_K] > errs[G4_Q8_0]);
    CHECK(errs[G4_Q4_K] < errs[G4_Q4_0] && errs[G4_IQ4_NL] < errs[G4_Q4_0]);
    CHECK(errs[G4_Q5_K] < errs[G4_Q5_0]);
}

/* ggml's own unit test (tests/test-quantize-fns.cpp) on its synthetic data
 * 0.1 + 2 cos(i + offset), 4096 values, with its thresholds: "total error"
 * sqrt(sum d^2) / n below 0.002 (0.0075 for 2-bit, 0.004 for 3-bit), and the
 * fast dot product against the f32 dot, |err| / n below 0.02 (0.04 for
 * 2-bit). A quantizer following ggml's algorithms passes the same bars. */
TEST(ggml_unit_test_thresholds) {
    const int64_t n = 32 * 128;
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        a[i] = (float)(0.1 + 2 * cosf((float)i));
        b[i] = (float)(0.1 + 2 * cosf((float)i + 1.0f));
    }
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += a[i] * b[i];
    for (int k = 0; k < N_ALL_TYPES; k++) {
        const int t = ALL_TYPES[k];
        const g4_type_traits *tr = T(t), *vt = T(tr->vec_dot_type);
        void *q = malloc(g4_row_size(t, n)), *xq = malloc(g4_row_size(tr->vec_dot_type, n));
        tr->from_float(a, q, n);
        tr->to_float(q, y, n);
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += ((double)a[i] - y[i]) * ((double)a[i] - y[i]);
        const double total = sqrt(sum) / n;
        vt->from_float(b, xq, n);
        const double dot_err = fabs(tr->vec_dot(q, xq, n) - ref) / n;
        const double tmax = t == G4_Q2_K ? 0.0075 : t == G4_Q3_K ? 0.0040 : 0.002;
        const double dmax = t == G4_Q2_K ? 0.04 : 0.02;
        printf("  %-7s total error %.6f (max %.4f)  dot error %.6f (max %.2f)\n", tr->name, total,
               tmax, dot_err, dmax);
        CHECKF(total < tmax, "%s total error %g", tr->name, total);
        CHECKF(dot_err < dmax, "%s dot error %g", tr->name, dot_err);
        free(q); free(xq);
    }
    free(a); free(b); free(y);
}

/* Degenerate rows: zeros, constants, one spike. No NaN, zeros stay zero. */
TEST(quantize_degenerate_rows) {
    for (int k = 0; k < N_ALL_TYPES; k++) {
        const int t = ALL_TYPES[k];
        const g4_type_traits *tr = T(t);
        const int64_t n = 512;
        float x[512], y[512];
        void *q = malloc(g4_row_size(t, n));
        for (int c = 0; c < 3; c++) {
            for (int i = 0; i < n; i++) x[i] = c == 0 ? 0.0f : c == 1 ? 0.75f : 0.0f;
            if (c == 2) x[37] = -3.0f;
            tr->from_float(x, q, n);
            tr->to_float(q, y, n);
            double maxe = 0;
            int finite = 1;
            for (int i = 0; i < n; i++) {
                if (!isfinite(y[i])) finite = 0;
                maxe = fmax(maxe, fabs((double)y[i] - x[i]));
            }
            CHECKF(finite, "%s case %d: non-finite", tr->name, c);
            if (c == 0) CHECKF(maxe == 0, "%s: zeros decode to %g", tr->name, maxe);
            else CHECKF(maxe <= 0.1 * (c == 1 ? 0.75 : 3.0), "%s case %d: max err %g", tr->name, c, maxe);
            float xs[512];
            for (int i = 0; i < n; i++) xs[i] = 1.0f;
            CHECKF(isfinite(tr->dot_f32(q, xs, n)), "%s dot_f32 non-finite", tr->name);
        }
        free(q);
    }
}

/* Hostile values (NaN, infinities, FLT_MAX, subnormals) must not crash or
 * reach undefined behaviour in any kernel (run under UBSan by make asan). */
TEST(quantize_hostile_values) {
    const float specials[] = {NAN, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, 1e-40f, -0.0f, 3e38f};
    for (int k = 0; k < N_ALL_TYPES; k++) {
        const int t = ALL_TYPES[k];
        const g4_type_traits *tr = T(t), *vt = T(tr->vec_dot_type);
        const int64_t n = 512;
        float x[512], y[512];
        uint8_t *q = malloc(g4_row_size(t, n)), *xq = malloc(g4_row_size(tr->vec_dot_type, n));
        for (int c = 0; c < 8; c++) {
            fill_weights(x, n, 1.0);
            for (int i = c; i < n; i += 9 + c) x[i] = specials[(i + c) % 8];
            if (c == 7) for (int i = 0; i < n; i++) x[i] = specials[c % 8];
            tr->from_float(x, q, n);
            tr->to_float(q, y, n);
            vt->from_float(x, xq, n);
            volatile float a = tr->dot_f32(q, x, n), b = tr->vec_dot(q, xq, n);
            (void)a; (void)b;
        }
        /* random bytes as a stored row: decoding and dots must be safe too */
        for (size_t i = 0; i < g4_row_size(t, n); i++) q[i] = (uint8_t)rnd_u32();
        tr->to_float(q, y, n);
        volatile float a = tr->dot_f32(q, x, n);
        (void)a;
        free(q); free(xq);
    }
    CHECK(1);
}

/* Per-element bound on the activation rounding of the fast path. */
static double act_err_bound(int vdt, const float *x, int64_t i) {
    if (vdt == G4_F32) return 0;
    if (vdt == G4_F16) return fabs(x[i]) * ldexp(1, -11) + ldexp(1, -25);
    if (vdt == G4_BF16) return fabs(x[i]) * ldexp(1, -8);
    const int64_t qb = vdt == G4_Q8_K ? 256 : 32, b0 = i / qb * qb;
    double amax = 0;
    for (int64_t j = b0; j < b0 + qb; j++) amax = fmax(amax, fabs(x[j]));
    /* half a step, plus the fp16 rounding of d times the largest quant */
    return amax * (0.5 / 127 + (vdt == G4_Q8_K ? 1e-6 : 6e-4)) * 1.0001;
}

TEST(dot_products_random) {
    for (int k = 0; k < N_ALL_TYPES; k++) {
        const int t = ALL_TYPES[k];
        const g4_type_traits *tr = T(t), *vt = T(tr->vec_dot_type);
        const int64_t qb = tr->blck_size == 1 ? 256 : tr->blck_size;
        double worst_exact = 0, worst_fast = 0, worst_true = 0;
        for (int s = 0; s < 4; s++) {
            for (int rep = 0; rep < 16; rep++) {
                /* blocks of the vec-dot type must also divide n */
                int64_t n = nblocks_list[s] * qb;
                if (n % vt->blck_size) n = (n / 256 + 1) * 256;
                float *w = malloc((size_t)n * 4), *wd = malloc((size_t)n * 4);
                float *x = malloc((size_t)n * 4), *xd = malloc((size_t)n * 4);
                void *q = malloc(g4_row_size(t, n)), *xq = malloc(g4_row_size(tr->vec_dot_type, n));
                fill_weights(w, n, 0.05);
                fill_weights(x, n, pow(10.0, -2.0 + 3.0 * rnd_unif()));
                tr->from_float(w, q, n);
                tr->to_float(q, wd, n);
                /* (b) exact path = float64 dot of the decoded row with x */
                double ref = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    ref += (double)wd[i] * x[i];
                    mag += fabs((double)wd[i] * x[i]);
                }
                const double ex = tr->dot_f32(q, x, n);
                worst_exact = fmax(worst_exact, fabs(ex - ref) / mag);
                CHECKF(fabs(ex - ref) <= 2e-6 * mag, "%s dot_f32 %.9g vs %.9g (mag %g, n %lld)",
                       tr->name, ex, ref, mag, (long long)n);
                /* (c) fast path = float64 dot of decoded row and decoded activations */
                vt->from_float(x, xq, n);
                vt->to_float(xq, xd, n);
                double refq = 0, magq = 0, actsum = 0;
                int act_ok = 1;
                for (int64_t i = 0; i < n; i++) {
                    refq += (double)wd[i] * xd[i];
                    magq += fabs((double)wd[i] * xd[i]);
                    const double ae = fabs((double)xd[i] - x[i]);
                    if (ae > act_err_bound(tr->vec_dot_type, x, i)) act_ok = 0;
                    actsum += fabs((double)wd[i]) * ae;
                }
                CHECKF(act_ok, "%s: activation rounding (%s) out of bounds", tr->name, vt->name);
                /* Q8_1's block sum s is itself stored as fp16 */
                double slack = 2e-6 * magq;
                if (tr->vec_dot_type == G4_Q8_1) {
                    const uint8_t *wb = q, *yb = xq;
                    for (int64_t b = 0; b < n / 32; b++) {
                        const float m = g4_fp16_to_fp32((uint16_t)(wb[b * tr->type_size + 2] |
                                                                   wb[b * tr->type_size + 3] << 8));
                        const float sv = g4_fp16_to_fp32((uint16_t)(yb[b * 36 + 2] | yb[b * 36 + 3] << 8));
                        slack += fabs((double)m * sv) * ldexp(1, -10);
                    }
                }
                const double fast = tr->vec_dot(q, xq, n);
                worst_fast = fmax(worst_fast, fabs(fast - refq) / magq);
                CHECKF(fabs(fast - refq) <= slack, "%s vec_dot %.9g vs %.9g (slack %g)", tr->name,
                       fast, refq, slack);
                /* looser: against the true dot of decoded weights and f32 x */
                worst_true = fmax(worst_true, fabs(fast - ref) / mag);
                CHECKF(fabs(fast - ref) <= actsum + slack + 2e-6 * mag,
                       "%s vec_dot %.9g vs true %.9g (bound %g)", tr->name, fast, ref, actsum + slack);
                free(w); free(wd); free(x); free(xd); free(q); free(xq);
            }
        }
        printf("  %-7s dot_f32 rel dev %.2e  vec_dot vs quantized-act ref %.2e  vs f32-act ref %.2e\n",
               tr->name, worst_exact, worst_fast, worst_true);
    }
}

/* --------------------------------------------- hand-built blocks (layouts) */
static const int8_t KV_IQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1, 13, 25, 38, 53, 69, 89, 113};

TEST(known_blocks_decode) {
    float y[256];
    uint8_t b[292];
    /* Q4_0: d = 1.0 (0x3c00), low nibbles 0..15, high nibbles 15..0 */
    b[0] = 0x00; b[1] = 0x3c;
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    T(G4_Q4_0)->to_float(b, y, 32);
    for (int j = 0; j < 16; j++) { CHECK(y[j] == j - 8); CHECK(y[j + 16] == 7 - j); }
    /* Q4_1: d = 0.5, m = -1 */
    b[0] = 0x00; b[1] = 0x38; b[2] = 0x00; b[3] = 0xbc;
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(j | ((15 - j) << 4));
    T(G4_Q4_1)->to_float(b, y, 32);
    for (int j = 0; j < 16; j++) { CHECK(y[j] == 0.5f * j - 1); CHECK(y[j + 16] == 0.5f * (15 - j) - 1); }
    /* Q5_0: d = 2, qh bit j set for odd j (element j and element j+16 share
     * the pattern via bits j and j+16) */
    b[0] = 0x00; b[1] = 0x40;
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) if (j & 1) qh |= 1u << j;
    memcpy(b + 2, &qh, 4);
    for (int j = 0; j < 16; j++) b[6 + j] = (uint8_t)(j | ((15 - j) << 4));
    T(G4_Q5_0)->to_float(b, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == 2.0f * ((j | ((j & 1) << 4)) - 16));
        CHECK(y[j + 16] == 2.0f * (((15 - j) | ((j & 1) << 4)) - 16));
    }
    /* Q8_0: d = 0.5, qs = j - 16 */
    b[0] = 0x00; b[1] = 0x38;
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j - 16);
    T(G4_Q8_0)->to_float(b, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == 0.5f * (j - 16));
    /* IQ4_NL: d = 1 */
    b[0] = 0x00; b[1] = 0x3c;
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    T(G4_IQ4_NL)->to_float(b, y, 32);
    for (int j = 0; j < 16; j++) { CHECK(y[j] == KV_IQ4NL[j]); CHECK(y[j + 16] == KV_IQ4NL[15 - j]); }
    /* Q6_K: every quant = 33 (ql nibble 1, qh pair 2) -> value 1; scales[k] =
     * k+1 - 8; d = 0.25: element e decodes to 0.25 * scale[e / 16] */
    memset(b, 0, sizeof b);
    memset(b, 0x11, 128);           /* ql */
    memset(b + 128, 0xaa, 64);      /* qh */
    for (int k = 0; k < 16; k++) b[192 + k] = (uint8_t)(int8_t)(k + 1 - 8);
    b[208] = 0x00; b[209] = 0x34;   /* 0.25 */
    T(G4_Q6_K)->to_float(b, y, 256);
    int bad = 0;
    for (int e = 0; e < 256; e++) if (y[e] != 0.25f * (e / 16 + 1 - 8)) bad++;
    CHECKF(bad == 0, "Q6_K: %d wrong", bad);
    /* Q2_K: byte pattern 0xE4 -> quant (p % 128) / 32 for element p; scale
     * nibble k % 16 = (k % 7) + 1, min nibble k % 5; d = 1, dmin = 0.5 */
    memset(b, 0, sizeof b);
    for (int k = 0; k < 16; k++) b[k] = (uint8_t)(((k % 7) + 1) | ((k % 5) << 4));
    memset(b + 16, 0xe4, 64);
    b[80] = 0x00; b[81] = 0x3c; b[82] = 0x00; b[83] = 0x38;
    T(G4_Q2_K)->to_float(b, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++) {
        const int k = e / 16, q = (e % 128) / 32;
        if (y[e] != (float)((k % 7) + 1) * q - 0.5f * (k % 5)) bad++;
    }
    CHECKF(bad == 0, "Q2_K: %d wrong", bad);
    /* Q4_K: 6-bit scales sc_j = 10 + 7j and mins m_j = 63 - 5j packed per the
     * layout (j < 4: low 6 bits of bytes j / j+4; j >= 4: nibbles in byte
     * j+4, top 2 bits in bytes j-4 / j); all quants 3; d = 1, dmin = 0.5 */
    memset(b, 0, sizeof b);
    b[0] = 0x00; b[1] = 0x3c; b[2] = 0x00; b[3] = 0x38;
    uint8_t *s = b + 4;
    for (int j = 0; j < 8; j++) {
        const int sc = 10 + 7 * j, m = 63 - 5 * j;
        if (j < 4) { s[j] = (uint8_t)sc; s[j + 4] = (uint8_t)m; }
        else {
            s[j + 4] = (uint8_t)((sc & 0xF) | ((m & 0xF) << 4));
            s[j - 4] |= (uint8_t)((sc >> 4) << 6);
            s[j] |= (uint8_t)((m >> 4) << 6);
        }
    }
    memset(b + 16, 0x33, 128);
    T(G4_Q4_K)->to_float(b, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++) {
        const int j = e / 32;
        if (y[e] != (float)(10 + 7 * j) * 3 - 0.5f * (63 - 5 * j)) bad++;
    }
    CHECKF(bad == 0, "Q4_K: %d wrong", bad);
    /* Q5_K: same scales, quants 3 + 16 (all high bits set) */
    memmove(b + 48, b + 16, 128);   /* qs after qh */
    memset(b + 16, 0xff, 32);
    T(G4_Q5_K)->to_float(b, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++) {
        const int j = e / 32;
        if (y[e] != (float)(10 + 7 * j) * 19 - 0.5f * (63 - 5 * j)) bad++;
    }
    CHECKF(bad == 0, "Q5_K: %d wrong", bad);
    /* IQ4_XS: d = 0.5, block scale ib = (ib*9 % 64) - 32 (low 4 bits in
     * scales_l nibbles, high 2 bits in scales_h), all quants index 12 */
    memset(b, 0, sizeof b);
    b[0] = 0x00; b[1] = 0x38;
    uint16_t sh = 0;
    for (int ib = 0; ib < 8; ib++) {
        const int ls = ib * 9 % 64;
        b[4 + ib / 2] |= (uint8_t)((ls & 0xF) << 4 * (ib % 2));
        sh |= (uint16_t)((ls >> 4) << 2 * ib);
    }
    b[2] = (uint8_t)sh; b[3] = (uint8_t)(sh >> 8);
    memset(b + 8, 0xcc, 128);
    T(G4_IQ4_XS)->to_float(b, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++) if (y[e] != 0.5f * ((e / 32) * 9 % 64 - 32) * KV_IQ4NL[12]) bad++;
    CHECKF(bad == 0, "IQ4_XS: %d wrong", bad);
    /* Q3_K: quants: 2-bit value (p % 128) / 32 from 0xE4, high bit set on
     * elements whose hmask bit is set (hmask[l] bit g, g = e / 32) -> q - 4
     * otherwise; scales all 32 + 3 = 35 (low nibble 3, high pair 2); d = 1 */
    memset(b, 0, sizeof b);
    for (int l = 0; l < 32; l++) b[l] = (uint8_t)(l % 3 == 0 ? 0xff : 0x55);
    memset(b + 32, 0xe4, 64);
    for (int k = 0; k < 8; k++) b[96 + k] = 0x33;
    for (int k = 8; k < 12; k++) b[96 + k] = 0xaa;
    b[108] = 0x00; b[109] = 0x3c;
    T(G4_Q3_K)->to_float(b, y, 256);
    bad = 0;
    for (int e = 0; e < 256; e++) {
        const int l = e % 32, g = e / 32, q = (e % 128) / 32;
        const int hbit = (b[l] >> g) & 1;
        if (y[e] != 3.0f * (q - (hbit ? 0 : 4))) bad++;
    }
    CHECKF(bad == 0, "Q3_K: %d wrong", bad);
}

/* ------------------------------------------------------ tiny GGUF walker */
typedef struct {
    char name[96];
    int type;
    int64_t ne[4];
    int n_dims;
    uint64_t off;
} gt_tensor;
typedef struct {
    char *buf;
    size_t size;
    gt_tensor *t;
    uint64_t nt;
    size_t data;
} gt_file;

typedef struct { const uint8_t *p; size_t n, o; int bad; } gt_rd;
static uint64_t gt_get(gt_rd *r, size_t k) {
    if (r->bad || k > r->n - r->o) { r->bad = 1; return 0; }
    uint64_t v = 0;
    for (size_t i = 0; i < k; i++) v |= (uint64_t)r->p[r->o + i] << (8 * i);
    r->o += k;
    return v;
}
static void gt_skip(gt_rd *r, uint64_t k) {
    if (r->bad || k > r->n - r->o) { r->bad = 1; return; }
    r->o += (size_t)k;
}
static size_t gt_scalar_size(uint32_t ty) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return ty < 13 ? sz[ty] : 0;
}
static void gt_skip_value(gt_rd *r, uint32_t ty, uint64_t *align, int is_align_key) {
    if (ty == 8) { gt_skip(r, gt_get(r, 8)); return; }
    if (ty == 9) {
        const uint32_t et = (uint32_t)gt_get(r, 4);
        const uint64_t n = gt_get(r, 8);
        if (et == 8) { for (uint64_t i = 0; i < n && !r->bad; i++) gt_skip(r, gt_get(r, 8)); return; }
        const size_t es = gt_scalar_size(et);
        if (!es || n > (r->n - r->o) / es) { r->bad = 1; return; }
        gt_skip(r, n * es);
        return;
    }
    const size_t s = gt_scalar_size(ty);
    if (!s) { r->bad = 1; return; }
    const uint64_t v = gt_get(r, s);
    if (is_align_key && ty == 4) *align = v;
}

static int gt_open(gt_file *g, const char *path) {
    memset(g, 0, sizeof *g);
    g->buf = th_read_file(path, &g->size);
    if (!g->buf) return -1;
    gt_rd r = {(const uint8_t *)g->buf, g->size, 0, 0};
    if (gt_get(&r, 4) != 0x46554747u) return -1; /* "GGUF" */
    if (gt_get(&r, 4) != 3) return -1;
    const uint64_t nt = gt_get(&r, 8), nkv = gt_get(&r, 8);
    if (r.bad || nt > 100000 || nkv > 100000) return -1;
    uint64_t align = 32;
    for (uint64_t i = 0; i < nkv && !r.bad; i++) {
        const uint64_t kl = gt_get(&r, 8);
        if (r.bad || kl > r.n - r.o) return -1;
        const int is_align = kl == 17 && !memcmp(r.p + r.o, "general.alignment", 17);
        gt_skip(&r, kl);
        gt_skip_value(&r, (uint32_t)gt_get(&r, 4), &align, is_align);
    }
    g->t = calloc((size_t)nt + 1, sizeof *g->t);
    g->nt = nt;
    for (uint64_t i = 0; i < nt && !r.bad; i++) {
        const uint64_t nl = gt_get(&r, 8);
        if (r.bad || nl >= sizeof g->t[i].name || nl > r.n - r.o) return -1;
        memcpy(g->t[i].name, r.p + r.o, (size_t)nl);
        r.o += (size_t)nl;
        g->t[i].n_dims = (int)gt_get(&r, 4);
        if (g->t[i].n_dims < 1 || g->t[i].n_dims > 4) return -1;
        for (int d = 0; d < 4; d++) g->t[i].ne[d] = d < g->t[i].n_dims ? (int64_t)gt_get(&r, 8) : 1;
        g->t[i].type = (int)gt_get(&r, 4);
        g->t[i].off = gt_get(&r, 8);
    }
    if (r.bad || !align) return -1;
    g->data = (r.o + align - 1) / align * align;
    for (uint64_t i = 0; i < nt; i++) {
        const int64_t n = g->t[i].ne[0] * g->t[i].ne[1] * g->t[i].ne[2] * g->t[i].ne[3];
        const size_t nb = g4_row_size(g->t[i].type, g->t[i].ne[0]) * (size_t)(n / g->t[i].ne[0]);
        if (!nb || g->t[i].off > g->size - g->data || nb > g->size - g->data - g->t[i].off) return -1;
    }
    return 0;
}
static void gt_close(gt_file *g) { free(g->buf); free(g->t); }
static int64_t gt_nel(const gt_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }
static const void *gt_data(const gt_file *g, const gt_tensor *t) { return g->buf + g->data + t->off; }
static const gt_tensor *gt_find(const gt_file *g, const char *name) {
    for (uint64_t i = 0; i < g->nt; i++) if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

/* ---------------------------------------------------- golden: byte-exact */
static void golden_requant(const char *variant, int *n_types_seen) {
    char p1[256], p2[256];
    snprintf(p1, sizeof p1, "testdata/gemma4-ref/gemma4-e.gguf");
    snprintf(p2, sizeof p2, "testdata/gemma4-ref/gemma4-e.%s.gguf", variant);
    gt_file src, dst;
    const int ok1 = gt_open(&src, shared_path(p1)) == 0, ok2 = gt_open(&dst, shared_path(p2)) == 0;
    CHECKF(ok1 && ok2, "cannot read %s / %s (G4_SHARED=%s)", p1, p2, getenv("G4_SHARED"));
    if (!ok1 || !ok2) { gt_close(&src); gt_close(&dst); return; }
    int counts[G4_TYPE_COUNT] = {0}, mism[G4_TYPE_COUNT] = {0};
    size_t bytes = 0, bad_bytes = 0;
    for (uint64_t i = 0; i < dst.nt; i++) {
        const gt_tensor *tq = &dst.t[i];
        const gt_tensor *tf = gt_find(&src, tq->name);
        CHECKF(tf && tf->type == G4_F32 && gt_nel(tf) == gt_nel(tq), "%s: no F32 source", tq->name);
        if (!tf || tf->type != G4_F32 || gt_nel(tf) != gt_nel(tq) || tq->type == G4_F32) continue;
        const g4_type_traits *tr = T(tq->type);
        CHECKF(tr && tr->from_float, "%s: type %d has no quantizer", tq->name, tq->type);
        if (!tr || !tr->from_float) continue;
        const int64_t n = gt_nel(tq);
        const size_t nb = g4_row_size(tq->type, n);
        uint8_t *out = malloc(nb);
        /* f32 data in the file is 32-byte aligned; copy anyway for safety */
        float *x = malloc((size_t)n * 4);
        memcpy(x, gt_data(&src, tf), (size_t)n * 4);
        tr->from_float(x, out, n);
        size_t diff = 0;
        const uint8_t *ref = gt_data(&dst, tq);
        for (size_t k = 0; k < nb; k++) diff += out[k] != ref[k];
        counts[tq->type]++;
        if (diff) {
            mism[tq->type]++;
            fprintf(stderr, "  %s %s: %zu of %zu bytes differ\n", variant, tq->name, diff, nb);
        }
        bytes += nb;
        bad_bytes += diff;
        free(out);
        free(x);
    }
    for (int t = 0; t < G4_TYPE_COUNT; t++) {
        if (!counts[t]) continue;
        n_types_seen[t] += counts[t];
        printf("  gemma4-e.%s: %d %s tensors re-quantized from F32, %d differ\n", variant,
               counts[t], g4_type_name(t), mism[t]);
        CHECKF(mism[t] == 0, "%s: %d %s tensors differ", variant, mism[t], g4_type_name(t));
    }
    printf("  gemma4-e.%s: %zu bytes compared, %zu differ\n", variant, bytes, bad_bytes);
    gt_close(&src);
    gt_close(&dst);
}

TEST(golden_byte_exact_requantize) {
    int seen[G4_TYPE_COUNT] = {0};
    golden_requant("Q8_0", seen);
    golden_requant("Q4_0", seen);
    golden_requant("F16", seen);
    golden_requant("BF16", seen);
    CHECK(seen[G4_Q8_0] > 0 && seen[G4_Q4_0] > 0 && seen[G4_F16] > 0 && seen[G4_BF16] > 0);
}

/* ---------------------------------------- golden: shipped quantized data */
static const char *KQ_VARIANTS[] = {"Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q4_0",
                                    "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "IQ4_XS"};

TEST(golden_shipped_tensors_decode_and_requantize) {
    double sum_e[G4_TYPE_COUNT] = {0}, sum_d[G4_TYPE_COUNT] = {0};
    size_t same[G4_TYPE_COUNT] = {0}, total[G4_TYPE_COUNT] = {0};
    int ntens[G4_TYPE_COUNT] = {0};
    double dot_worst = 0, vdot_worst = 0;
    for (size_t v = 0; v < sizeof KQ_VARIANTS / sizeof *KQ_VARIANTS; v++) {
        char p[256];
        snprintf(p, sizeof p, "testdata/gemma4-ref/gemma4-kq.%s.gguf", KQ_VARIANTS[v]);
        gt_file g;
        const int ok = gt_open(&g, shared_path(p)) == 0;
        CHECKF(ok, "cannot read %s", p);
        if (!ok) { gt_close(&g); continue; }
        for (uint64_t i = 0; i < g.nt; i++) {
            const gt_tensor *t = &g.t[i];
            if (t->type == G4_F32) continue;
            const g4_type_traits *tr = T(t->type);
            CHECKF(tr && tr->to_float, "%s %s: unsupported type %d", p, t->name, t->type);
            if (!tr || !tr->to_float) continue;
            const int64_t n = gt_nel(t);
            const size_t nb = g4_row_size(t->type, n);
            uint8_t *qd = malloc(nb), *q2 = malloc(nb);
            float *y = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
            memcpy(qd, gt_data(&g, t), nb);
            tr->to_float(qd, y, n);
            int finite = 1;
            for (int64_t k = 0; k < n; k++) if (!isfinite(y[k])) finite = 0;
            CHECKF(finite, "%s %s decodes to non-finite values", p, t->name);
            tr->from_float(y, q2, n);
            tr->to_float(q2, y2, n);
            for (int64_t k = 0; k < n; k++) {
                sum_e[t->type] += ((double)y2[k] - y[k]) * ((double)y2[k] - y[k]);
                sum_d[t->type] += (double)y[k] * y[k];
            }
            for (size_t k = 0; k < nb; k++) same[t->type] += q2[k] == qd[k];
            total[t->type] += nb;
            ntens[t->type]++;
            /* both dot paths on a few real rows */
            const int64_t ne0 = t->ne[0], rows = n / ne0;
            const size_t rs = g4_row_size(t->type, ne0);
            const g4_type_traits *vt = T(tr->vec_dot_type);
            if (ne0 % vt->blck_size == 0) {
                float *x = malloc((size_t)ne0 * 4), *xd = malloc((size_t)ne0 * 4);
                void *xq = malloc(g4_row_size(tr->vec_dot_type, ne0));
                fill_weights(x, ne0, 1.0);
                vt->from_float(x, xq, ne0);
                vt->to_float(xq, xd, ne0);
                for (int64_t r = 0; r < rows; r += 1 + rows / 5) {
                    double ref = 0, mag = 0, refq = 0, magq = 0;
                    for (int64_t k = 0; k < ne0; k++) {
                        ref += (double)y[r * ne0 + k] * x[k];
                        mag += fabs((double)y[r * ne0 + k] * x[k]);
                        refq += (double)y[r * ne0 + k] * xd[k];
                        magq += fabs((double)y[r * ne0 + k] * xd[k]);
                    }
                    const double a = tr->dot_f32(qd + r * rs, x, ne0);
                    const double b = tr->vec_dot(qd + r * rs, xq, ne0);
                    const double slack = tr->vec_dot_type == G4_Q8_1 ? 2e-3 : 2e-6;
                    if (mag > 0) dot_worst = fmax(dot_worst, fabs(a - ref) / mag);
                    if (magq > 0 && tr->vec_dot_type != G4_Q8_1) vdot_worst = fmax(vdot_worst, fabs(b - refq) / magq);
                    CHECKF(fabs(a - ref) <= 2e-6 * mag, "%s %s row %lld dot_f32", p, t->name, (long long)r);
                    CHECKF(fabs(b - refq) <= slack * magq, "%s %s row %lld vec_dot %g vs %g", p,
                           t->name, (long long)r, b, refq);
                }
                free(x); free(xd); free(xq);
            }
            free(qd); free(q2); free(y); free(y2);
        }
        gt_close(&g);
    }
    for (int t = 0; t < G4_TYPE_COUNT; t++) {
        if (!ntens[t]) continue;
        const double rel = sqrt(sum_e[t] / sum_d[t]);
        const double frac = (double)same[t] / (double)total[t];
        printf("  %-7s %3d shipped tensors: re-quantized decode rel rms diff %.2e, identical bytes %.4f\n",
               g4_type_name(t), ntens[t], rel, frac);
        /* The legacy formats (and IQ4_NL) re-quantize their own decoded values
         * exactly; the K-quants re-solve their scales and land within a
         * small fraction of their own quantization error. */
        switch (t) {
        case G4_Q4_0: case G4_Q5_0: case G4_Q8_0:
            CHECKF(frac == 1.0, "%s requant not exact (%.6f)", g4_type_name(t), frac); break;
        case G4_Q4_1: case G4_Q5_1:
            CHECKF(frac >= 0.999 && rel < 1e-3, "%s requant %.6f %.2e", g4_type_name(t), frac, rel); break;
        default:
            CHECKF(rel < 0.25 * err_bound(t), "%s requant rel %.3e too large", g4_type_name(t), rel);
        }
    }
    printf("  shipped rows: dot_f32 rel dev %.2e, vec_dot rel dev %.2e\n", dot_worst, vdot_worst);
    CHECK(ntens[G4_Q2_K] && ntens[G4_Q3_K] && ntens[G4_Q4_K] && ntens[G4_Q5_K] && ntens[G4_Q6_K]);
    CHECK(ntens[G4_IQ4_NL] && ntens[G4_IQ4_XS] && ntens[G4_Q4_1] && ntens[G4_Q5_1]);
}

int main(void) {
    RUN(fp16_all_halves_round_trip);
    RUN(fp16_rounding_all_midpoints);
    RUN(bf16_conversion);
    RUN(table_kernels_present);
    RUN(quantize_dequantize_error);
    RUN(ggml_unit_test_thresholds);
    RUN(quantize_degenerate_rows);
    RUN(quantize_hostile_values);
    RUN(dot_products_random);
    RUN(known_blocks_decode);
    RUN(golden_byte_exact_requantize);
    RUN(golden_shipped_tensors_decode_and_requantize);
    return test_summary();
}
