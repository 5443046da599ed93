/* The bf16 products (tensor/bf16.h) against f32 references, within the
 * bound the header derives: |y - W x| <= (2u + u^2 + n 2^-24) sum |w_k x_k|
 * with u = 2^-8 (u + n 2^-24 for BF16-stored weights). Panel tails (rows
 * not a multiple of 32), input tails (n not a multiple of 32, odd n) and
 * token tails (the 12 / 4 / 1 tiles). Then the matmul dispatch (mm.bf16):
 * the same bits as the kernel; off (or on a CPU without AVX512_BF16) the
 * F16 tiles as before. Where the CPU has AVX512_BF16, the whole program runs
 * a second time under GEMMA4C_CPU=avx2: the fallback. */
#include "harness.h"

#include <stdint.h>
#include <unistd.h>

#include "tensor/bf16.h"
#include "tensor/cpu.h"
#include "tensor/matmul.h"
#include "tensor/pool.h"
#include "tensor/types.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
/* [-1, 1) times a per-16 scale (magnitudes differ across a row), some zeros */
static void fill(float *x, int64_t n) {
    float s = 1;
    for (int64_t i = 0; i < n; i++) {
        if (i % 16 == 0) s = 0.05f + 4.0f * (float)(rnd() % 1000) / 1000.f;
        x[i] = rnd() % 50 == 0 ? 0.0f : s * (float)((rnd() & 0xFFFFFF) / 8388608.0 - 1.0);
    }
}

/* stored rows of `type` from f32 values; vals gets what they store */
static void *store(int type, float *vals, int64_t count) {
    const size_t es = type == G4_F32 ? 4 : 2;
    uint8_t *d = malloc((size_t)count * es);
    for (int64_t i = 0; i < count; i++) {
        if (type == G4_F32) { memcpy(d + 4 * i, &vals[i], 4); continue; }
        uint16_t h = type == G4_F16 ? g4_fp32_to_fp16(vals[i]) : g4_fp32_to_bf16(vals[i]);
        vals[i] = type == G4_F16 ? g4_fp16_to_fp32(h) : g4_bf16_to_fp32(h);
        memcpy(d + 2 * i, &h, 2);
    }
    return d;
}

static double bound(int type, int64_t n, double abs_sum) {
    const double u = 0x1p-8, acc = (double)n * 0x1p-24;
    return (type == G4_BF16 ? u + acc : 2 * u + u * u + acc) * abs_sum + 1e-30;
}

TEST(round_row_is_nearest_even) {
    for (int n = 1; n <= 70; n += 23) {
        float x[80];
        uint16_t d[82];
        fill(x, n);
        x[0] = 1.0f + 0x1p-8f;            /* a tie: to even (1.0) */
        memset(d, 0xff, sizeof d);
        g4_bf16_round_row(x, d, n);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += d[i] != g4_fp32_to_bf16(x[i]);
        CHECKF(bad == 0, "n=%d: %d elements differ from g4_fp32_to_bf16", n, bad);
        CHECK(d[0] == 0x3f80);
        if (n & 1) CHECK(d[n] == 0);     /* the odd row's pad */
    }
}

/* packed panels of `type` rows x bf16 activations against the f32 (double)
 * product of the stored values */
static void check_gemm(int type, int rows, int64_t n, int T) {
    float *wv = malloc((size_t)rows * n * sizeof(float)), *x = malloc((size_t)T * n * sizeof(float));
    fill(wv, (int64_t)rows * n);
    fill(x, (int64_t)T * n);
    uint8_t *w = store(type, wv, (int64_t)rows * n);
    const size_t rb = (size_t)n * (type == G4_F32 ? 4 : 2), xs = (size_t)(n + 1) / 2 * 2;
    uint16_t *pan = malloc(g4_bf16_panel_elems(rows, n) * 2), *xb = malloc((size_t)T * xs * 2);
    const size_t pe = g4_bf16_panel_elems(G4_BF16_PR, n);
    for (int r = 0; r < rows; r += G4_BF16_PR)
        g4_bf16_pack_rows(pan + (size_t)(r / G4_BF16_PR) * pe, type, w + (size_t)r * rb, rb,
                          rows - r < G4_BF16_PR ? rows - r : G4_BF16_PR, n);
    for (int t = 0; t < T; t++) g4_bf16_round_row(x + (size_t)t * n, xb + (size_t)t * xs, n);
    float *y = malloc((size_t)T * (rows + 3) * sizeof(float));
    for (size_t i = 0; i < (size_t)T * (rows + 3); i++) y[i] = 12345.0f;
    g4_bf16_gemm(pan, n, rows, xb, xs, T, y, (size_t)rows + 3);
    int bad = 0, clobbered = 0;
    double worst = 0;
    for (int t = 0; t < T; t++) {
        for (int r = 0; r < rows; r++) {
            double ref = 0, abs_sum = 0;
            for (int64_t k = 0; k < n; k++) {
                const double p = (double)wv[(size_t)r * n + k] * x[(size_t)t * n + k];
                ref += p;
                abs_sum += fabs(p);
            }
            const double e = fabs(y[(size_t)t * (rows + 3) + r] - ref), b = bound(type, n, abs_sum);
            bad += !(e <= b);
            if (e / b > worst) worst = e / b;
        }
        for (int r = rows; r < rows + 3; r++) clobbered += y[(size_t)t * (rows + 3) + r] != 12345.0f;
    }
    CHECKF(bad == 0, "%s rows=%d n=%lld T=%d: %d results past the bound (worst %.2f of it)", g4_type_name(type),
           rows, (long long)n, T, bad, worst);
    CHECKF(clobbered == 0, "%s rows=%d: %d results written past the rows", g4_type_name(type), rows, clobbered);
    /* a wrong layout is off by O(1) of the bound; rounding stays well inside */
    CHECKF(worst < 0.5, "%s rows=%d n=%lld: worst error %.2f of the bound", g4_type_name(type), rows,
           (long long)n, worst);
    free(wv); free(x); free(w); free(pan); free(xb); free(y);
}

TEST(gemm_within_bound) {
    static const int types[] = { G4_F32, G4_F16, G4_BF16 };
    for (int i = 0; i < 3; i++) {
        check_gemm(types[i], 70, 96, 29);     /* panel and token tails */
        check_gemm(types[i], 32, 770, 17);    /* n past the 32-input steps */
        check_gemm(types[i], 5, 9, 13);       /* odd n: the pad pair */
        check_gemm(types[i], 64, 768, 24);
    }
}

/* g4_bf16_gemm_add: onto zeros the same bits as g4_bf16_gemm (each lane
 * starts at 0 either way); onto y0 within the bound of y0 + the product, and
 * nothing written past the rows */
TEST(gemm_add_accumulates) {
    const int rows = 45, T = 14;
    const int64_t n = 131;
    const size_t xs = (size_t)(n + 1) / 2 * 2, ld = rows + 2;
    float *wv = malloc((size_t)rows * n * sizeof(float)), *x = malloc((size_t)T * n * sizeof(float));
    fill(wv, (int64_t)rows * n);
    fill(x, (int64_t)T * n);
    uint16_t *pan = malloc(g4_bf16_panel_elems(rows, n) * 2), *xb = malloc((size_t)T * xs * 2);
    const size_t pe = g4_bf16_panel_elems(G4_BF16_PR, n);
    for (int r = 0; r < rows; r += G4_BF16_PR)
        g4_bf16_pack_f32(pan + (size_t)(r / G4_BF16_PR) * pe, wv + (size_t)r * n, (size_t)n, 1,
                         rows - r < G4_BF16_PR ? rows - r : G4_BF16_PR, n);
    for (int t = 0; t < T; t++) g4_bf16_round_row(x + (size_t)t * n, xb + (size_t)t * xs, n);
    float *y = malloc((size_t)T * ld * sizeof(float)), *z = malloc((size_t)T * ld * sizeof(float)),
          *y0 = malloc((size_t)T * ld * sizeof(float));
    for (size_t i = 0; i < (size_t)T * ld; i++) { y[i] = 7.0f; z[i] = 0; }
    fill(y0, (int64_t)T * ld);
    g4_bf16_gemm(pan, n, rows, xb, xs, T, y, ld);
    g4_bf16_gemm_add(pan, n, rows, xb, xs, T, z, ld);
    int same = 1, bad = 0, clobbered = 0;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < rows; r++) same &= memcmp(&y[(size_t)t * ld + r], &z[(size_t)t * ld + r], 4) == 0;
    CHECK(same);
    memcpy(z, y0, (size_t)T * ld * sizeof(float));
    g4_bf16_gemm_add(pan, n, rows, xb, xs, T, z, ld);
    for (int t = 0; t < T; t++) {
        for (int r = 0; r < rows; r++) {
            double ref = y0[(size_t)t * ld + r], abs_sum = fabs(ref);
            for (int64_t k = 0; k < n; k++) {
                const double p = (double)wv[(size_t)r * n + k] * x[(size_t)t * n + k];
                ref += p;
                abs_sum += fabs(p);
            }
            bad += !(fabs(z[(size_t)t * ld + r] - ref) <= bound(G4_F32, n + 1, abs_sum));
        }
        for (int r = rows; r < (int)ld; r++) clobbered += z[(size_t)t * ld + r] != y0[(size_t)t * ld + r];
    }
    CHECKF(bad == 0, "%d accumulated results past the bound", bad);
    CHECK(clobbered == 0);
    free(wv); free(x); free(pan); free(xb); free(y); free(z); free(y0);
}

/* the strided f32 packers (attention's K rows and V columns) give the same
 * panel as the rows they describe */
TEST(pack_f32_layouts) {
    const int nr = 27;
    const int64_t n = 100;
    const size_t ld = 130;
    float *m = malloc(ld * n * sizeof(float)), *rows = malloc((size_t)nr * n * sizeof(float));
    fill(m, (int64_t)ld * n);
    const size_t pe = g4_bf16_panel_elems(G4_BF16_PR, n);
    uint16_t *a = malloc(pe * 2), *b = malloc(pe * 2), *c = malloc(pe * 2);
    /* rows contiguous over k: element (r, k) = m[r * ld + k] */
    for (int r = 0; r < nr; r++) memcpy(rows + (size_t)r * n, m + (size_t)r * ld, (size_t)n * sizeof(float));
    g4_bf16_pack_f32(a, m, ld, 1, nr, n);
    g4_bf16_pack_rows(b, G4_F32, rows, (size_t)n * 4, nr, n);
    CHECK(memcmp(a, b, pe * 2) == 0);
    /* columns: element (r, k) = m[k * ld + r] */
    for (int r = 0; r < nr; r++)
        for (int64_t k = 0; k < n; k++) rows[(size_t)r * n + k] = m[(size_t)k * ld + r];
    g4_bf16_pack_f32(c, m, 1, ld, nr, n);
    g4_bf16_pack_rows(b, G4_F32, rows, (size_t)n * 4, nr, n);
    CHECK(memcmp(c, b, pe * 2) == 0);
    free(m); free(rows); free(a); free(b); free(c);
}

/* g4_matmul with mm.bf16: the kernel's bits where the CPU has it, else the
 * F16 tiles' (the flag changes nothing) */
TEST(matmul_dispatch) {
    const int rows = 80, T = G4_MM_BF16_MIN_T + 5;
    const int64_t n = 256;
    float *wv = malloc((size_t)rows * n * sizeof(float)), *x = malloc((size_t)T * n * sizeof(float));
    fill(wv, (int64_t)rows * n);
    fill(x, (int64_t)T * n);
    uint8_t *w = store(G4_F16, wv, (int64_t)rows * n);
    g4_mat m = { .data = w, .type = G4_F16, .n_in = n, .n_out = rows, .n_mat = 1, .row_bytes = (size_t)n * 2 };
    g4_pool *pool = g4_pool_acquire(2);
    /* room for the bf16 rows and two threads' panels */
    g4_mm_scratch s = { .act_bytes = (size_t)T * n * 2 + g4_matmul_bf16_bytes(n, 2) };
    s.act = malloc(s.act_bytes);
    float *y0 = malloc((size_t)T * rows * sizeof(float)), *y1 = malloc((size_t)T * rows * sizeof(float)),
          *y2 = malloc((size_t)T * rows * sizeof(float));
    g4_matmul(pool, &m, 0, x, n, T, y0, rows, 0, &s);
    s.bf16 = true;
    g4_matmul(pool, &m, 0, x, n, T, y1, rows, 0, &s);
    /* the kernel by hand */
    uint16_t *pan = malloc(g4_bf16_panel_elems(rows, n) * 2), *xb = malloc((size_t)T * n * 2);
    for (int r = 0; r < rows; r += G4_BF16_PR)
        g4_bf16_pack_rows(pan + (size_t)(r / G4_BF16_PR) * g4_bf16_panel_elems(G4_BF16_PR, n), G4_F16,
                          w + (size_t)r * n * 2, (size_t)n * 2, rows - r < G4_BF16_PR ? rows - r : G4_BF16_PR, n);
    for (int t = 0; t < T; t++) g4_bf16_round_row(x + (size_t)t * n, xb + (size_t)t * n, n);
    g4_bf16_gemm(pan, n, rows, xb, (size_t)n, T, y2, rows);
    const size_t bytes = (size_t)T * rows * sizeof(float);
    if (g4_bf16_dot_ok()) {
        CHECK(memcmp(y1, y2, bytes) == 0);
        CHECK(memcmp(y0, y1, bytes) != 0);    /* it did round: not the F16 path */
    } else {
        CHECK(memcmp(y0, y1, bytes) == 0);
    }
    /* F16 path: activations as f16 (u = 2^-11), weights exact */
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < rows; r++) {
            double ref = 0, a = 0;
            for (int64_t k = 0; k < n; k++) {
                const double p = (double)wv[(size_t)r * n + k] * x[(size_t)t * n + k];
                ref += p;
                a += fabs(p);
            }
            bad += !(fabs(y0[(size_t)t * rows + r] - ref) <= (0x1p-11 + n * 0x1p-24) * a + 1e-30);
        }
    CHECKF(bad == 0, "%d F16-path results past (2^-11 + n 2^-24) sum |w x|", bad);
    /* too small a scratch for the panels: the F16 path, not a failure */
    s.act_bytes = (size_t)T * n * 2;
    g4_matmul(pool, &m, 0, x, n, T, y1, rows, 0, &s);
    CHECK(memcmp(y0, y1, bytes) == 0);
    g4_pool_release(pool);
    free(wv); free(x); free(w); free(s.act); free(y0); free(y1); free(y2); free(pan); free(xb);
}

/* g4_matmul with mm.i8 (matmul.h): F32/F16/BF16 weights and the activations
 * rounded to Q8_0, Q8_0's panel kernel. Each result within the rounding's
 * bound: per 32 a step s = amax / 127, the codes nearest (|e| <= s / 2),
 * the scale stored as f16 (2^-11 relative), so per element |dw| <= 0.51 s_w
 * + 2^-10 |w| (and so for x); |y - W x| <= sum |dw| |x| + |w| |dx| + |dw|
 * |dx| + n 2^-23 sum |w x| (the float steps). The same bits from 1 or 2
 * threads and for a token alone or with 36 others, and with x_clamp as
 * with x clamped first; without the kernel (GEMMA4C_CPU=avx2) the flag
 * changes nothing. */
static void q8_err(const float *v, int64_t n, float *e) {
    for (int64_t g = 0; g < n; g += 32) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fabsf(v[g + i]) > amax ? fabsf(v[g + i]) : amax;
        for (int i = 0; i < 32; i++) e[g + i] = 0.51f * amax / 127 + 0x1p-10f * fabsf(v[g + i]);
    }
}

TEST(matmul_i8) {
    const int rows = 80, T = G4_MM_BF16_MIN_T + 5;
    const int64_t n = 256;
    const bool i8 = g4_type_info(G4_Q8_0)->gemm_panel != NULL;
    printf("  int8 panels: %s\n", i8 ? "Q8_0 VNNI panel kernel" : "none (the flag changes nothing)");
    float *wv = malloc((size_t)rows * n * sizeof(float)), *x = malloc((size_t)T * n * sizeof(float));
    float *ew = malloc((size_t)rows * n * sizeof(float)), *ex = malloc((size_t)T * n * sizeof(float));
    fill(x, (int64_t)T * n);
    q8_err(x, (int64_t)T * n, ex);
    g4_pool *pool = g4_pool_acquire(2), *one = g4_pool_acquire(1);
    g4_mm_scratch s = { .act_bytes = g4_matmul_i8_bytes(n, T, 2) + (size_t)T * n * 4 };
    s.act = malloc(s.act_bytes);
    const size_t bytes = (size_t)T * rows * sizeof(float);
    float *y0 = malloc(bytes), *y1 = malloc(bytes), *y2 = malloc(bytes);
    static const int types[3] = { G4_F16, G4_F32, G4_BF16 };
    for (int ti = 0; ti < 3; ti++) {
        const int ty = types[ti];
        fill(wv, (int64_t)rows * n);
        uint8_t *w = store(ty, wv, (int64_t)rows * n);
        q8_err(wv, (int64_t)rows * n, ew);
        g4_mat m = { .data = w, .type = ty, .n_in = n, .n_out = rows, .n_mat = 1,
                     .row_bytes = (size_t)n * (ty == G4_F32 ? 4 : 2) };
        s.i8 = false;
        s.bf16 = true;
        g4_matmul(pool, &m, 0, x, n, T, y0, rows, 0, &s);
        s.i8 = true;
        g4_matmul(pool, &m, 0, x, n, T, y1, rows, 0, &s);
        if (!i8) {
            CHECK(memcmp(y0, y1, bytes) == 0);
            free(w);
            continue;
        }
        CHECK(memcmp(y0, y1, bytes) != 0);   /* it took another path than bf16 */
        int bad = 0;
        for (int t = 0; t < T; t++)
            for (int r = 0; r < rows; r++) {
                double ref = 0, a = 0, b = 0;
                for (int64_t k = 0; k < n; k++) {
                    const size_t iw = (size_t)r * n + k, ix = (size_t)t * n + k;
                    ref += (double)wv[iw] * x[ix];
                    a += fabs((double)wv[iw] * x[ix]);
                    b += (double)ew[iw] * fabs(x[ix]) + fabs(wv[iw]) * (double)ex[ix] + (double)ew[iw] * ex[ix];
                }
                bad += !(fabs(y1[(size_t)t * rows + r] - ref) <= b + n * 0x1p-23 * a + 1e-30);
            }
        CHECKF(bad == 0, "%s: %d int8 results past their bound", g4_type_name(ty), bad);
        /* one thread; the first 33 tokens alone */
        g4_matmul(one, &m, 0, x, n, T, y2, rows, 0, &s);
        CHECK(memcmp(y1, y2, bytes) == 0);
        g4_matmul(pool, &m, 0, x, n, G4_MM_BF16_MIN_T + 1, y2, rows, 0, &s);
        CHECK(memcmp(y1, y2, (size_t)(G4_MM_BF16_MIN_T + 1) * rows * sizeof(float)) == 0);
        /* x_clamp: the same bits as clamping x first */
        CHECK(g4_matmul_i8_takes(pool, &m, T, 0, &s));
        CHECK(!g4_matmul_i8_takes(pool, &m, T, 1, &s) && !g4_matmul_i8_takes(pool, &m, G4_MM_BF16_MIN_T - 1, 0, &s));
        float *xc = malloc((size_t)T * n * sizeof(float));
        for (size_t i = 0; i < (size_t)T * n; i++) xc[i] = x[i] < -0.5f ? -0.5f : x[i] > 0.25f ? 0.25f : x[i];
        g4_matmul(pool, &m, 0, xc, n, T, y1, rows, 0, &s);
        s.x_clamp = true;
        s.x_lo = -0.5f;
        s.x_hi = 0.25f;
        g4_matmul(pool, &m, 0, x, n, T, y2, rows, 0, &s);
        s.x_clamp = false;
        CHECK(memcmp(y1, y2, bytes) == 0);
        free(xc);
        free(w);
    }
    g4_pool_release(pool);
    g4_pool_release(one);
    free(wv); free(x); free(ew); free(ex); free(s.act); free(y0); free(y1); free(y2);
}

/* mm.pbf16 (the per-layer-embedding projection's prompt tokens): the panel
 * tokens (pcol) of F32 weights get the bf16 kernel's bits, in runs around
 * the others, whatever their neighbours (one token alone: the same bits);
 * the other tokens keep the f32 tiles' bits. Without AVX512_BF16 nothing
 * changes. */
TEST(matmul_pbf16_panel_tokens) {
    const int rows = 80, T = 21;
    const int64_t n = 200;
    const int32_t pcol[] = { 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19 }; /* not 5, 20 */
    const int np = (int)(sizeof pcol / sizeof pcol[0]);
    float *wv = malloc((size_t)rows * n * sizeof(float)), *x = malloc((size_t)T * n * sizeof(float));
    fill(wv, (int64_t)rows * n);
    fill(x, (int64_t)T * n);
    uint8_t *w = store(G4_F32, wv, (int64_t)rows * n);
    g4_mat m = { .data = w, .type = G4_F32, .n_in = n, .n_out = rows, .n_mat = 1, .row_bytes = (size_t)n * 4 };
    g4_pool *pool = g4_pool_acquire(2);
    g4_mm_scratch s = { .act_bytes = (size_t)T * n * 6 + g4_matmul_bf16_bytes(n, 2) + 64 };
    s.act = malloc(s.act_bytes);
    const size_t bytes = (size_t)T * rows * sizeof(float);
    float *y0 = malloc(bytes), *y1 = malloc(bytes), *y2 = malloc(bytes), *y3 = malloc(rows * sizeof(float));
    g4_matmul(pool, &m, 0, x, n, T, y0, rows, 0, &s);   /* f32 tiles, every token */
    s.pcol = pcol;
    s.np = np;
    g4_matmul(pool, &m, 0, x, n, T, y2, rows, 0, &s);   /* flag off: the same */
    CHECK(memcmp(y0, y2, bytes) == 0);
    s.pbf16 = true;
    g4_matmul(pool, &m, 0, x, n, T, y1, rows, 0, &s);
    /* the kernel by hand, every token */
    uint16_t *pan = malloc(g4_bf16_panel_elems(rows, n) * 2), *xb = malloc((size_t)T * (n + 1) * 2);
    for (int r = 0; r < rows; r += G4_BF16_PR)
        g4_bf16_pack_rows(pan + (size_t)(r / G4_BF16_PR) * g4_bf16_panel_elems(G4_BF16_PR, n), G4_F32,
                          w + (size_t)r * n * 4, (size_t)n * 4, rows - r < G4_BF16_PR ? rows - r : G4_BF16_PR, n);
    for (int t = 0; t < T; t++) g4_bf16_round_row(x + (size_t)t * n, xb + (size_t)t * n, n);
    g4_bf16_gemm(pan, n, rows, xb, (size_t)n, T, y2, rows);
    int wrong = 0, alone = 0;
    for (int t = 0, i = 0; t < T; t++) {
        const bool p = i < np && pcol[i] == t;
        i += p;
        const float *want = (p && g4_bf16_dot_ok() ? y2 : y0) + (size_t)t * rows;
        wrong += memcmp(y1 + (size_t)t * rows, want, rows * sizeof(float)) != 0;
        if (!p) continue;
        /* the same token as the only one of its call */
        const int32_t z = 0;
        g4_mm_scratch s1 = s;
        s1.pcol = &z;
        s1.np = 1;
        g4_matmul(pool, &m, 0, x + (size_t)t * n, n, 1, y3, rows, 0, &s1);
        alone += memcmp(y3, want, rows * sizeof(float)) != 0;
    }
    CHECKF(wrong == 0, "%d of %d tokens not the bits of their kernel", wrong, T);
    CHECKF(alone == 0, "%d panel tokens differ alone", alone);
    if (g4_bf16_dot_ok()) CHECK(memcmp(y0, y1, rows * sizeof(float)) != 0);   /* token 0 did round */
    g4_pool_release(pool);
    free(wv); free(x); free(w); free(s.act); free(y0); free(y1); free(y2); free(y3); free(pan); free(xb);
}

int main(void) {
    printf("  bf16 kernels: %s\n", g4_bf16_dot_ok() ? "AVX512_BF16" : "reference (no AVX512_BF16 in use)");
    RUN(round_row_is_nearest_even);
    RUN(gemm_within_bound);
    RUN(gemm_add_accumulates);
    RUN(pack_f32_layouts);
    RUN(matmul_dispatch);
    RUN(matmul_i8);
    RUN(matmul_pbf16_panel_tokens);
    if (g4_bf16_dot_ok() && !getenv("GEMMA4C_CPU")) {
        /* the other ISA path: the same checks without the BF16 kernels */
        th_cur_name = "fallback_avx2";
        char exe[4096], cmd[4200];
        const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[len > 0 ? len : 0] = 0;
        snprintf(cmd, sizeof cmd, "GEMMA4C_CPU=avx2 '%s' > /dev/null", exe);
        const int rc = len > 0 && !strchr(exe, '\'') ? system(cmd) : -1;
        CHECKF(rc == 0, "GEMMA4C_CPU=avx2 run exited %d", rc);
        if (th_cur_failed) th_failed++; else th_passed++;
        printf("%s fallback_avx2\n", th_cur_failed ? "FAIL" : "ok  ");
        th_cur_failed = 0;
    }
    return test_summary();
}
