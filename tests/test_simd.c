/* SIMD kernels against the reference C kernels, at every level this CPU
 * supports: quantized activations byte for byte; vec_dot and gemm within
 * float reassociation error (relative to the sum of |terms|), on random data
 * with odd block counts and tile tails. */
#include "harness.h"

#include <stdint.h>

#include "tensor/cpu.h"
#include "tensor/kernels.h"
#include "tensor/quant_isa.h"
#include "tensor/quant_ref.h"
#include "tensor/types.h"
#include "tensor/vec.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float frand(void) { return (float)((rnd() & 0xFFFFFF) / 8388608.0 - 1.0); } /* [-1, 1) */

/* random floats with a per-32 scale so blocks differ in magnitude; a few
 * outliers and exact zeros */
static void fill_rand(float *x, int64_t n) {
    float s = 1;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0) s = 0.01f + 3.0f * (float)(rnd() % 1000) / 1000.f;
        const uint32_t k = rnd() % 64;
        x[i] = k == 0 ? 0.0f : k == 1 ? 8 * s * frand() : s * frand();
    }
}

static const int TYPES_UNDER_TEST[] = { G4_F32, G4_F16, G4_BF16, G4_Q4_0, G4_Q4_1, G4_Q5_0, G4_Q5_1,
                                        G4_Q8_0, G4_Q2_K, G4_Q3_K, G4_Q4_K, G4_Q5_K, G4_Q6_K,
                                        G4_IQ4_NL, G4_IQ4_XS };
#define NTYPES ((int)(sizeof TYPES_UNDER_TEST / sizeof TYPES_UNDER_TEST[0]))
static const int LEVELS[] = { G4_CPU_AVX2, G4_CPU_AVX512, G4_CPU_NEON, G4_CPU_DOTPROD };

static void traits_pair(int type, int level, g4_type_traits *ref, g4_type_traits *simd) {
    /* the reference table's gemm: the generic loop over the reference vec_dot */
    g4_kernels_for_level(type, G4_CPU_REF, ref);
    g4_kernels_for_level(type, level, simd);
}

static int tested_levels;

TEST(cpu_levels) {
    CHECK(g4_cpu_level_supported(G4_CPU_REF));
    CHECK(g4_cpu_level_supported(g4_cpu_level()));
    CHECK(g4_cpu_level_supported(g4_cpu_best_level()));
    CHECK(g4_cpu_level_from_name("AVX512") == G4_CPU_AVX512);
    CHECK(g4_cpu_level_from_name("ref") == G4_CPU_REF);
    CHECK(g4_cpu_level_from_name("nonsense") == -1);
    CHECK(g4_cpu_level_from_name(NULL) == -1);
    CHECK(strcmp(g4_cpu_level_name(G4_CPU_DOTPROD), "dotprod") == 0);
    CHECK(strcmp(g4_cpu_level_name(99), "?") == 0);
    g4_type_traits t;
    CHECK(g4_kernels_for_level(G4_Q4_0, 99, &t) == -1);
    CHECK(t.vec_dot != NULL && t.gemm != NULL); /* the reference kernels */
    CHECK(g4_kernels_for_level(4, G4_CPU_REF, &t) == -1); /* no type 4 */
    CHECK(g4_type_facts(G4_Q4_0)->vec_dot == NULL);         /* facts carry no kernels */
    char buf[256];
    g4_cpu_describe(buf, sizeof buf);
    printf("  cpu: %s (best %s)\n", buf, g4_cpu_level_name(g4_cpu_best_level()));
    /* the process-wide table carries a gemm for every type with a vec_dot */
    for (int i = 0; i < NTYPES; i++) CHECK(g4_type_info(TYPES_UNDER_TEST[i])->gemm != NULL);
}

/* Activation quantizers: byte-identical output, including hostile blocks. */
static void check_quantizer(int type, int level) {
    g4_type_traits ref, simd;
    traits_pair(type, level, &ref, &simd);
    const int64_t n = 256 * 9;
    float *x = malloc((size_t)n * sizeof *x);
    const size_t rs = g4_row_size(type, n);
    uint8_t *a = malloc(rs), *b = malloc(rs);
    for (int trial = 0; trial < 40; trial++) {
        fill_rand(x, n);
        if (trial % 4 == 1) /* scale exactly 1 and values k + 0.5: rounding ties */
            for (int64_t i = 0; i < n; i++) x[i] = i % 32 == 0 ? 127.0f : (float)((int)(rnd() % 254) - 127) + 0.5f;
        if (trial % 4 == 2) { /* an all-zero block, a block with a repeated +-max */
            memset(x, 0, 256 * sizeof *x);
            for (int i = 256; i < 512; i++) x[i] = (i % 3) ? 2.5f : -2.5f;
        }
        if (trial == 3) { x[5] = INFINITY; x[300] = NAN; x[700] = -INFINITY; x[1100] = -NAN; }
        if (trial == 7) { x[40] = 1e30f; x[41] = -1e30f; x[1000] = 1e-40f; }
        ref.from_float(x, a, n);
        simd.from_float(x, b, n);
        size_t diff = 0;
        while (diff < rs && a[diff] == b[diff]) diff++;
        CHECKF(diff == rs, "%s level %s trial %d: first differing byte %zu (%u vs %u)", g4_type_name(type),
               g4_cpu_level_name(level), trial, diff, diff < rs ? a[diff] : 0, diff < rs ? b[diff] : 0);
    }
    free(x); free(a); free(b);
}

TEST(activation_quantizers) {
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++) {
        if (!g4_cpu_level_supported(LEVELS[l])) continue;
        check_quantizer(G4_Q8_0, LEVELS[l]);
        check_quantizer(G4_Q8_K, LEVELS[l]);
    }
}

/* A weight matrix of nr rows (row stride padded by `pad` bytes so rows are
 * unaligned) and nc quantized activation rows, plus |terms| sums. */
typedef struct {
    int type, at;
    int64_t n;
    int nr, nc;
    size_t ws, xs;
    uint8_t *w, *xq;
    double *absum; /* [nc][nr] */
} problem;

static void problem_make(problem *p, int type, int64_t n, int nr, int nc, int pad) {
    const g4_type_traits *tr = g4_type_info(type);
    g4_type_traits ref = *tr;
    g4_quant_ref_fill(type, &ref);
    p->type = type;
    p->at = ref.vec_dot_type;
    g4_type_traits aref = *g4_type_info(p->at);
    g4_quant_ref_fill(p->at, &aref);
    p->n = n; p->nr = nr; p->nc = nc;
    p->ws = g4_row_size(type, n) + (size_t)pad;
    p->xs = g4_row_size(p->at, n) + (size_t)pad;
    p->w = calloc((size_t)nr, p->ws);
    p->xq = calloc((size_t)nc, p->xs);
    p->absum = calloc((size_t)nr * (size_t)nc, sizeof *p->absum);
    float *f = malloc((size_t)n * sizeof *f);
    float *wf = malloc((size_t)n * (size_t)nr * sizeof *wf), *xf = malloc((size_t)n * sizeof *xf);
    for (int r = 0; r < nr; r++) {
        fill_rand(f, n);
        ref.from_float(f, p->w + (size_t)r * p->ws, n);
        ref.to_float(p->w + (size_t)r * p->ws, wf + (size_t)r * (size_t)n, n);
    }
    for (int c = 0; c < nc; c++) {
        fill_rand(f, n);
        aref.from_float(f, p->xq + (size_t)c * p->xs, n);
        aref.to_float(p->xq + (size_t)c * p->xs, xf, n);
        for (int r = 0; r < nr; r++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += fabs((double)wf[(size_t)r * (size_t)n + (size_t)i] * xf[i]);
            p->absum[(size_t)c * (size_t)nr + (size_t)r] = s;
        }
    }
    free(f); free(wf); free(xf);
}

static void problem_free(problem *p) {
    free(p->w); free(p->xq); free(p->absum);
}

static int check_problem(const problem *p, const g4_type_traits *ref, const g4_type_traits *simd, int level) {
    int bad = 0;
    const size_t ys = (size_t)p->nr + 3;
    float *y = malloc(ys * (size_t)p->nc * sizeof *y);
    for (size_t i = 0; i < ys * (size_t)p->nc; i++) y[i] = -12345.f;
    simd->gemm(p->n, p->nr, p->nc, p->w, p->ws, p->xq, p->xs, y, ys);
    for (int c = 0; c < p->nc; c++) {
        for (int r = 0; r < p->nr; r++) {
            const void *wr = p->w + (size_t)r * p->ws, *xr = p->xq + (size_t)c * p->xs;
            const double e = ref->vec_dot(wr, xr, p->n);
            const double v = simd->vec_dot(wr, xr, p->n);
            const double g = y[(size_t)c * ys + (size_t)r];
            const double tol = 2e-5 * p->absum[(size_t)c * (size_t)p->nr + (size_t)r] + 1e-30;
            /* x86 float tiles keep vec_dot's summation: equal bit for bit */
            const bool same = g4_type_info(p->type)->blck_size != 1 ||
                              (level != G4_CPU_AVX2 && level != G4_CPU_AVX512) || g == v;
            if (!(fabs(v - e) <= tol) || !(fabs(g - e) <= tol) || !same) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s level %s n=%lld nr=%d nc=%d r=%d c=%d: ref %.9g vec_dot %.9g gemm %.9g (tol %.3g)\n",
                            g4_type_name(p->type), g4_cpu_level_name(level), (long long)p->n, p->nr, p->nc, r, c, e, v, g, tol);
            }
        }
        for (size_t r = (size_t)p->nr; r < ys; r++)
            if (y[(size_t)c * ys + r] != -12345.f && bad++ < 3)
                fprintf(stderr, "  %s: gemm wrote outside its tile\n", g4_type_name(p->type));
    }
    free(y);
    return bad;
}

/* The panel kernel against the reference, like check_problem. */
static int check_panel(const problem *p, const g4_type_traits *ref, const g4_type_traits *simd, int level) {
    g4_type_traits t = *simd;
    if (!t.gemm_panel) return 0;
    const size_t ys = (size_t)p->nr + 3;
    float *y = malloc(ys * (size_t)p->nc * sizeof *y);
    int bad = !t.gemm_panel(p->n, p->nr, p->nc, NULL, p->w, p->ws, p->xq, p->xs, y, ys, 0);
    int bad_val = 0;
    for (int c = 0; c < p->nc && !bad; c++)
        for (int r = 0; r < p->nr; r++) {
            const double e = ref->vec_dot(p->w + (size_t)r * p->ws, p->xq + (size_t)c * p->xs, p->n);
            const double g = y[(size_t)c * ys + (size_t)r];
            const double tol = 2e-5 * p->absum[(size_t)c * (size_t)p->nr + (size_t)r] + 1e-30;
            if (!(fabs(g - e) <= tol) && bad_val++ < 3)
                fprintf(stderr, "  panel %s level %s n=%lld nr=%d nc=%d r=%d c=%d: ref %.9g panel %.9g (tol %.3g)\n",
                        g4_type_name(p->type), g4_cpu_level_name(level), (long long)p->n, p->nr, p->nc, r, c, e, g, tol);
        }
    free(y);
    return bad + bad_val;
}

TEST(vec_dot_and_gemm_match_reference) {
    /* row lengths in blocks: partial 4-block groups of 1, 2 and 3 blocks
     * (22: the 704-wide 26B-A4B expert rows), one past a tile */
    static const int NBLK[] = { 1, 2, 3, 7, 22, 33 };
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++) {
        const int level = LEVELS[l];
        if (!g4_cpu_level_supported(level)) continue;
        tested_levels++;
        for (int ti = 0; ti < NTYPES; ti++) {
            const int type = TYPES_UNDER_TEST[ti];
            g4_type_traits ref, simd;
            traits_pair(type, level, &ref, &simd);
            CHECK(simd.gemm != NULL && simd.vec_dot != NULL);
            const int64_t bs = g4_type_info(type)->blck_size;
            const int64_t unit = bs == 1 ? 32 : bs; /* float types: 32-element "blocks" */
            int bad = 0;
            /* long rows, small tiles */
            for (size_t k = 0; k < sizeof NBLK / sizeof NBLK[0]; k++) {
                problem p;
                problem_make(&p, type, NBLK[k] * unit + (bs == 1 ? (int64_t)k : 0), 5, 6, (int)k);
                bad += check_problem(&p, &ref, &simd, level);
                problem q = p; /* and as decode (one token) */
                q.nc = 1;
                bad += check_problem(&q, &ref, &simd, level);
                problem_free(&p);
            }
            /* rows long enough that kernels staging activations on the
             * stack go through several chunks (decode and prefill) */
            {
                problem p;
                problem_make(&p, type, (bs == 256 ? 200 : 600) * unit + 1 * (bs == 1), 3, 5, 2);
                bad += check_problem(&p, &ref, &simd, level);
                problem q = p;
                q.nc = 1;
                bad += check_problem(&q, &ref, &simd, level);
                problem_free(&p);
            }
            /* prefill shapes, through gemm and (AVX-512 Q4_0 / Q8_0 / Q4_K /
             * Q6_K) the 16-row panels: a pair of full panels and a partial
             * one, 45 tokens = tiles of 6, 2 and 1; short rows, and rows long enough
             * that the tokens go in several chunks */
            for (int k = 0; k < 2; k++) {
                problem p;
                problem_make(&p, type, (k ? (bs == 256 ? 40 : 260) : 3) * unit + (bs == 1 ? 3 : 0), 37, 45, k);
                bad += check_problem(&p, &ref, &simd, level);
                bad += check_panel(&p, &ref, &simd, level);
                /* the same in token chunks of 16, 16 and 13 */
                g4_p512_set_chunk_bytes(16 * p.xs);
                bad += check_panel(&p, &ref, &simd, level);
                g4_p512_set_chunk_bytes(0);
                problem q = p; /* exactly one panel, 17 tokens */
                q.nr = 16; q.nc = 17;
                double *ab = malloc((size_t)16 * 17 * sizeof *ab);
                for (int c = 0; c < 17; c++)
                    for (int r = 0; r < 16; r++) ab[c * 16 + r] = p.absum[c * 37 + r];
                q.absum = ab;
                bad += check_problem(&q, &ref, &simd, level);
                bad += check_panel(&q, &ref, &simd, level);
                free(ab);
                problem_free(&p);
            }
            /* every tile shape with tails: nr in 1..9, nc in 1..9 and the
             * wide single-row tiles of batched decode (8, 16 tokens + tails) */
            problem p;
            problem_make(&p, type, 3 * unit, 9, 19, 1);
            static const int NCS[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 19 };
            for (int nr = 1; nr <= 9; nr++)
                for (size_t ci = 0; ci < sizeof NCS / sizeof NCS[0]; ci++) {
                    int nc = NCS[ci];
                    problem q = p;
                    q.nr = nr; q.nc = nc;
                    /* absum is [nc][9]: view it through a copy with nr rows */
                    double *ab = malloc((size_t)nr * (size_t)nc * sizeof *ab);
                    for (int c = 0; c < nc; c++)
                        for (int r = 0; r < nr; r++) ab[c * nr + r] = p.absum[c * 9 + r];   /* [nc][9] */
                    q.absum = ab;
                    bad += check_problem(&q, &ref, &simd, level);
                    bad += check_panel(&q, &ref, &simd, level);
                    free(ab);
                }
            problem_free(&p);
            CHECKF(bad == 0, "%s at level %s: %d mismatches", g4_type_name(type), g4_cpu_level_name(level), bad);
        }
    }
    printf("  SIMD levels tested: %d\n", tested_levels);
}

/* A product's value must not depend on the tile it was computed in: the
 * matmul's threads grab row ranges of varying size at run time and batches
 * hold varying token counts (decode gemm(nr, 1), a few streams or a
 * speculative verify gemm(1, T), prefill tiles), so if a 4-row tile and a
 * tail row rounded differently, a logit would change with thread timing or
 * with the other sequences of a batch. Every (row, token) of gemm over many
 * shapes equals the same product computed alone (nr = nc = 1), bit for bit,
 * at every level; so does vec_dot. A long row (200 blocks) covers decode's
 * chunking of the activation row. */
static int tile_check(const g4_type_traits *k, const problem *p, int level, int64_t n, const int *nrs, int n_nr,
                      const int *ncs, int n_nc) {
    float *one = malloc((size_t)p->nr * (size_t)p->nc * sizeof *one);
    int bad = 0;
    for (int c = 0; c < p->nc; c++)
        for (int r = 0; r < p->nr; r++) {
            const uint8_t *wr = p->w + (size_t)r * p->ws, *xr = p->xq + (size_t)c * p->xs;
            float *o = &one[(size_t)c * (size_t)p->nr + (size_t)r];
            k->gemm(n, 1, 1, wr, p->ws, xr, p->xs, o, 1);
            const float v = k->vec_dot(wr, xr, n);
            if (memcmp(&v, o, sizeof v) && bad++ < 2)
                fprintf(stderr, "  %s level %s n=%lld r=%d c=%d: vec_dot %.9g, gemm(1,1) %.9g\n", g4_type_name(p->type),
                        g4_cpu_level_name(level), (long long)n, r, c, v, *o);
        }
    const size_t ys = (size_t)p->nr + 1;
    float *y = malloc(ys * (size_t)p->nc * sizeof *y);
    for (int a = 0; a < n_nr; a++)
        for (int b = 0; b < n_nc; b++) {
            const int nr = nrs[a], nc = ncs[b];
            k->gemm(n, nr, nc, p->w, p->ws, p->xq, p->xs, y, ys);
            for (int c = 0; c < nc; c++)
                for (int r = 0; r < nr; r++) {
                    const float want = one[(size_t)c * (size_t)p->nr + (size_t)r];
                    if (memcmp(&want, &y[(size_t)c * ys + (size_t)r], sizeof want) && bad++ < 2)
                        fprintf(stderr, "  %s level %s n=%lld gemm(%d,%d) r=%d c=%d: %.9g, alone %.9g\n",
                                g4_type_name(p->type), g4_cpu_level_name(level), (long long)n, nr, nc, r, c,
                                y[(size_t)c * ys + (size_t)r], want);
                }
        }
    free(y);
    free(one);
    return bad;
}

TEST(gemm_value_independent_of_tile) {
    static const int NR[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    static const int NC[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 19 };
    static const int NR_LONG[] = { 1, 3, 5 }, NC_LONG[] = { 1, 2, 3 };
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0] + 1; l++) {
        /* the reference level too: it is what G4_CPU_REF / GEMMA4C_CPU=ref runs */
        const int level = l == 0 ? G4_CPU_REF : LEVELS[l - 1];
        if (!g4_cpu_level_supported(level)) continue;
        for (int ti = 0; ti < NTYPES; ti++) {
            const int type = TYPES_UNDER_TEST[ti];
            g4_type_traits k;
            g4_kernels_for_level(type, level, &k);
            const int64_t bs = g4_type_info(type)->blck_size;
            const int64_t unit = bs == 1 ? 32 : bs;
            problem p;
            problem_make(&p, type, 7 * unit, 9, 19, 4);
            int bad = tile_check(&k, &p, level, p.n, NR, 9, NC, 13);
            problem_free(&p);
            problem_make(&p, type, 200 * unit, 5, 3, 2);
            bad += tile_check(&k, &p, level, p.n, NR_LONG, 3, NC_LONG, 3);
            problem_free(&p);
            CHECKF(bad == 0, "%s at level %s: %d products change with their tile", g4_type_name(type),
                   g4_cpu_level_name(level), bad);
        }
    }
}

/* Decode shapes of gemm are bitwise consistent: a token's result for a row
 * is the same computed alone (nc = 1, one row or a range of rows, as a
 * decode step runs) or as one of 2..16 tokens on one row or on a range of
 * rows (batched decode of several sequences, matmul's path for a few
 * tokens), in any place among them. Otherwise a request's greedy answer changes with its neighbours in
 * the scheduler's batch. Long rows cross the kernels' activation chunks. */
TEST(decode_shapes_bitwise_consistent) {
    static const int DT[] = { G4_F32, G4_F16, G4_BF16, G4_Q4_0, G4_Q8_0, G4_Q4_K, G4_Q5_K, G4_Q6_K, G4_Q3_K, G4_Q2_K,
                              G4_IQ4_XS, G4_IQ4_NL, G4_Q4_1, G4_Q5_0, G4_Q5_1 };
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++) {
        const int level = LEVELS[l];
        if (!g4_cpu_level_supported(level)) continue;
        for (size_t ti = 0; ti < sizeof DT / sizeof DT[0]; ti++) {
            g4_type_traits ref, simd;
            traits_pair(DT[ti], level, &ref, &simd);
            const int64_t bs = g4_type_info(DT[ti])->blck_size, unit = bs == 1 ? 32 : bs;
            int bad = 0;
            for (int k = 0; k < 3; k++) {
                /* k = 2: rows of 24 K-quant blocks, more than one call's
                 * rows of 2..16 tokens take in one group (AVX-512) */
                problem p;
                problem_make(&p, DT[ti], (k == 2 ? (unit == 256 ? 24 : 192) : k ? (unit == 256 ? 80 : 640) : 5) * unit,
                             k == 2 ? 90 : 7, 16, 0);
                const size_t ys = (size_t)p.nr;
                float *one = malloc(ys * 16 * sizeof(float)), *got = malloc(ys * 16 * sizeof(float));
                for (int c = 0; c < p.nc; c++)   /* alone, as a decode step: all rows in one call */
                    simd.gemm(p.n, p.nr, 1, p.w, p.ws, p.xq + (size_t)c * p.xs, p.xs, one + (size_t)c * ys, ys);
                for (int nc = 1; nc <= 16; nc++)
                    for (int c0 = 0; c0 + nc <= 16; c0 += nc) {
                        for (int r = 0; r < p.nr; r++)   /* one row at a time, nc tokens from c0 */
                            simd.gemm(p.n, 1, nc, p.w + (size_t)r * p.ws, p.ws, p.xq + (size_t)c0 * p.xs, p.xs,
                                      got + (size_t)c0 * ys + (size_t)r, ys);
                        for (int c = c0; c < c0 + nc; c++)
                            bad += memcmp(got + (size_t)c * ys, one + (size_t)c * ys, ys * sizeof(float)) != 0;
                        /* all rows in one call (matmul's form where the type has gemm_row_stream) */
                        simd.gemm(p.n, p.nr, nc, p.w, p.ws, p.xq + (size_t)c0 * p.xs, p.xs, got + (size_t)c0 * ys, ys);
                        for (int c = c0; c < c0 + nc; c++)
                            bad += memcmp(got + (size_t)c * ys, one + (size_t)c * ys, ys * sizeof(float)) != 0;
                    }
                free(one); free(got);
                problem_free(&p);
            }
            CHECKF(bad == 0, "%s at %s: %d token results differ between decode shapes", g4_type_name(DT[ti]),
                   g4_cpu_level_name(level), bad);
        }
    }
}

/* The panel kernels (types.h: gemm_panel) are used for the tokens whose
 * logits nobody reads, gemm for the others, so a token's result must not
 * depend on anything but its row and its own activations: bitwise the same
 * alone, among others (cols), in any row range or panel position, tile width
 * or token chunk. */
TEST(panel_results_independent_of_neighbours) {
    static const int PT[] = { G4_Q4_0, G4_Q8_0, G4_Q4_K, G4_Q6_K };
    int ran = 0;
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++) {
        const int level = LEVELS[l];
        if (!g4_cpu_level_supported(level)) continue;
        for (size_t ti = 0; ti < sizeof PT / sizeof PT[0]; ti++) {
            g4_type_traits ref, simd;
            traits_pair(PT[ti], level, &ref, &simd);
            if (!simd.gemm_panel) continue;
            ran++;
            const int64_t unit = g4_type_info(PT[ti])->blck_size;
            problem p;
            problem_make(&p, PT[ti], (unit == 256 ? 6 : 40) * unit, 37, 29, 3);
            const size_t ys = (size_t)p.nr;
            float *all = malloc(ys * (size_t)p.nc * sizeof(float)), *one = malloc(ys * (size_t)p.nc * sizeof(float));
            CHECK(simd.gemm_panel(p.n, p.nr, p.nc, NULL, p.w, p.ws, p.xq, p.xs, all, ys, 0));
            int bad = 0;
            /* every token alone, in rows 5..36 (panels start elsewhere) and rows 0..4 (a short panel) */
            for (int c = 0; c < p.nc; c++) {
                int32_t col = c;
                for (size_t i = 0; i < ys * (size_t)p.nc; i++) one[i] = -1.f;
                CHECK(simd.gemm_panel(p.n, p.nr - 5, 1, &col, p.w + 5 * p.ws, p.ws, p.xq, p.xs, one + 5, ys, 0));
                CHECK(simd.gemm_panel(p.n, 5, 1, &col, p.w, p.ws, p.xq, p.xs, one, ys, 0));
                for (int r = 0; r < p.nr; r++) bad += memcmp(&one[c * ys + r], &all[c * ys + r], sizeof(float)) != 0;
                for (int c2 = 0; c2 < p.nc; c2++) if (c2 != c) bad += one[c2 * ys] != -1.f; /* nothing else written */
                /* rows 0..20: a pair of panels whose second holds 5 rows */
                CHECK(simd.gemm_panel(p.n, 21, 1, &col, p.w, p.ws, p.xq, p.xs, one, ys, 0));
                for (int r = 0; r < 21; r++) bad += memcmp(&one[c * ys + r], &all[c * ys + r], sizeof(float)) != 0;
            }
            /* every third token, in token chunks of 8 */
            int32_t cols[29];
            int nc = 0;
            for (int c = 1; c < p.nc; c += 3) cols[nc++] = c;
            for (size_t i = 0; i < ys * (size_t)p.nc; i++) one[i] = -1.f;
            g4_p512_set_chunk_bytes(8 * p.xs);
            CHECK(simd.gemm_panel(p.n, p.nr, nc, cols, p.w, p.ws, p.xq, p.xs, one, ys, 0));
            g4_p512_set_chunk_bytes(0);
            for (int i = 0; i < nc; i++)
                bad += memcmp(&one[cols[i] * ys], &all[cols[i] * ys], ys * sizeof(float)) != 0;
            /* and the panel agrees with the reference */
            bad += check_panel(&p, &ref, &simd, level);
            CHECKF(bad == 0, "%s at %s: %d results depend on neighbours", g4_type_name(PT[ti]), g4_cpu_level_name(level), bad);
            free(all); free(one);
            problem_free(&p);
        }
    }
    printf("  panel kernels checked: %d\n", ran);
}

/* matmul.c gives the panels an input id per product, so a thread's later
 * grabs (row ranges) and jobs of the same type reuse the per-token data of
 * the activations: the results must equal a call without an id, and a new
 * id on changed activations must not see the old data. */
TEST(panel_input_ids_reuse_only_the_same_activations) {
    static const int PT[] = { G4_Q4_0, G4_Q8_0, G4_Q4_K, G4_Q6_K };
    int ran = 0;
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++) {
        const int level = LEVELS[l];
        if (!g4_cpu_level_supported(level)) continue;
        for (size_t ti = 0; ti < sizeof PT / sizeof PT[0]; ti++) {
            g4_type_traits ref, simd;
            traits_pair(PT[ti], level, &ref, &simd);
            if (!simd.gemm_panel) continue;
            ran++;
            const int64_t unit = g4_type_info(PT[ti])->blck_size;
            problem p, q;
            problem_make(&p, PT[ti], (unit == 256 ? 4 : 24) * unit, 37, 13, 0);
            problem_make(&q, PT[ti], (unit == 256 ? 4 : 24) * unit, 37, 13, 0);
            const size_t ys = (size_t)p.nr, yn = ys * (size_t)p.nc;
            float *a = malloc(yn * sizeof(float)), *b = malloc(yn * sizeof(float)), *c = malloc(yn * sizeof(float));
            int bad = 0;
            CHECK(simd.gemm_panel(p.n, p.nr, p.nc, NULL, p.w, p.ws, p.xq, p.xs, a, ys, 0));
            /* two grabs under one id */
            CHECK(simd.gemm_panel(p.n, 21, p.nc, NULL, p.w, p.ws, p.xq, p.xs, b, ys, 41));
            CHECK(simd.gemm_panel(p.n, p.nr - 21, p.nc, NULL, p.w + 21 * p.ws, p.ws, p.xq, p.xs, b + 21, ys, 41));
            bad += memcmp(a, b, yn * sizeof(float)) != 0;
            /* other activations in the same buffer under a new id */
            uint8_t *keep = malloc((size_t)p.nc * p.xs);
            memcpy(keep, p.xq, (size_t)p.nc * p.xs);
            memcpy(p.xq, q.xq, (size_t)p.nc * p.xs);
            CHECK(simd.gemm_panel(p.n, p.nr, p.nc, NULL, p.w, p.ws, p.xq, p.xs, b, ys, 42));
            CHECK(simd.gemm_panel(p.n, p.nr, p.nc, NULL, p.w, p.ws, p.xq, p.xs, c, ys, 0));
            bad += memcmp(c, b, yn * sizeof(float)) != 0;
            bad += memcmp(a, c, yn * sizeof(float)) == 0; /* the activations did change the results */
            memcpy(p.xq, keep, (size_t)p.nc * p.xs);
            CHECKF(bad == 0, "%s at %s: %d mismatches", g4_type_name(PT[ti]), g4_cpu_level_name(level), bad);
            free(keep); free(a); free(b); free(c);
            problem_free(&p);
            problem_free(&q);
        }
    }
    printf("  panel kernels checked: %d\n", ran);
}

/* The process-wide table (whatever GEMMA4C_CPU selected) agrees too. */
TEST(process_table_matches_reference) {
    for (int ti = 0; ti < NTYPES; ti++) {
        const int type = TYPES_UNDER_TEST[ti];
        g4_type_traits ref, cur = *g4_type_info(type);
        g4_kernels_for_level(type, G4_CPU_REF, &ref);
        problem p;
        problem_make(&p, type, 2 * (g4_type_info(type)->blck_size == 1 ? 32 : g4_type_info(type)->blck_size), 7, 5, 3);
        CHECKF(check_problem(&p, &ref, &cur, g4_cpu_level()) == 0, "%s", g4_type_name(type));
        problem_free(&p);
    }
}

/* gemma4c's encoder attention product c += a b at every level against the
 * portable one: shapes with row and 64-column tails, strides wider than the
 * rows, and c's prior contents kept (it accumulates) */
TEST(gemm_nn_matches_reference) {
    static const int SH[][3] = { { 1, 1, 1 }, { 4, 64, 64 }, { 5, 70, 3 }, { 7, 129, 33 }, { 48, 200, 64 }, { 3, 16, 256 } };
    const g4_vec_ops *ref = g4_vec_get_level(G4_CPU_REF);
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++) {
        if (!g4_cpu_level_supported(LEVELS[l])) continue;
        const g4_vec_ops *v = g4_vec_get_level(LEVELS[l]);
        int bad = 0;
        for (size_t s = 0; s < sizeof SH / sizeof SH[0]; s++) {
            const int M = SH[s][0], N = SH[s][1], K = SH[s][2], lda = K + 3, ldb = N + 5, ldc = N + 7;
            float *a = malloc(sizeof(float) * (size_t)M * lda), *b = malloc(sizeof(float) * (size_t)K * ldb);
            float *c0 = malloc(sizeof(float) * (size_t)M * ldc), *c1 = malloc(sizeof(float) * (size_t)M * ldc);
            fill_rand(a, (int64_t)M * lda);
            fill_rand(b, (int64_t)K * ldb);
            fill_rand(c0, (int64_t)M * ldc);
            memcpy(c1, c0, sizeof(float) * (size_t)M * ldc);
            ref->gemm_nn(c0, ldc, a, lda, b, ldb, M, N, K);
            v->gemm_nn(c1, ldc, a, lda, b, ldb, M, N, K);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < ldc; j++) {
                    float x = c0[(size_t)i * ldc + j], y = c1[(size_t)i * ldc + j];
                    /* outside the N columns: untouched, bit for bit */
                    if (j >= N ? x != y : !(fabsf(x - y) <= 1e-5f * (float)(K + 1))) bad++;
                }
            free(a); free(b); free(c0); free(c1);
        }
        CHECKF(bad == 0, "gemm_nn at level %s: %d mismatches", g4_cpu_level_name(LEVELS[l]), bad);
    }
}

/* GEMMA4C_CPU is read once, inside the kernel table's one-time fill: set it
 * before anything touches the table (unless the caller chose a level). */
static int env_forced;
TEST(env_override) {
    if (!env_forced) return;
#if defined(__x86_64__)
    const int want = g4_cpu_level_supported(G4_CPU_AVX2) ? G4_CPU_AVX2 : G4_CPU_REF;
#elif defined(__aarch64__)
    const int want = G4_CPU_NEON;
#else
    const int want = G4_CPU_REF;
#endif
    CHECK(g4_cpu_level() == want);
}

int main(void) {
    if (!getenv("GEMMA4C_CPU")) {
#if defined(__x86_64__)
        setenv("GEMMA4C_CPU", "avx2", 1);
#else
        setenv("GEMMA4C_CPU", "neon", 1);
#endif
        env_forced = 1;
    }
    RUN(env_override);
    RUN(cpu_levels);
    RUN(activation_quantizers);
    RUN(vec_dot_and_gemm_match_reference);
    RUN(gemm_value_independent_of_tile);
    RUN(panel_results_independent_of_neighbours);
    RUN(panel_input_ids_reuse_only_the_same_activations);
    RUN(decode_shapes_bitwise_consistent);
    RUN(process_table_matches_reference);
    RUN(gemm_nn_matches_reference);
    return test_summary();
}
