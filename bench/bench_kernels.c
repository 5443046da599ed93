/* Kernel microbenchmark: reference C vs each SIMD level this CPU runs, in the
 * same process, one thread.
 *
 *   build/bench/bench_kernels [--types Q4_0,Q4_K,...] [--mb 256] [--reps 5] [--n 4096] [--gemm 256x64] [--stream N]
 *   (--n: a multiple of 32; types whose blocks do not divide it are skipped)
 *
 * Per weight type:
 *   matvec: n_in = --n (4096), as many rows as make --mb MB of weights (larger than
 *           the caches, so it streams from DRAM), one token: GB/s of weight
 *           bytes (decode's limit is the memory bandwidth);
 *   gemm  : a 256-row x 64-token block (--gemm ROWSxTOKENS: e.g. 512x512,
 *           one thread's share of a prefill product), n_in = --n: GOP/s with
 *           2 ops per multiply-add (prefill's limit is integer throughput),
 *           against the int8 peak printed first (the probe, 1 thread);
 *   rows  : the same block as batched decode runs it (only for <= 16
 *           tokens, e.g. --gemm 256x8: matmul.c's small-T path);
 *   quant : activation quantizer (from_float of the vec_dot type), GB/s of
 *           f32 input.
 * Best of --reps runs; "x" columns are ratios to the reference level.
 *
 * --panel: only the panel column (the prefill panels' GOP/s), only at the
 * levels that have panels: a quick A/B of a panel change.
 *
 * --stream N: instead, for each type, decode's matrix-vector product as the
 * engine runs it (g4_matmul: fastest kernels, N threads, --mb MB of weights
 * in 2 MB pages) against a plain read of the same buffer on the same
 * threads, interleaved, best of --reps each. The ratio says whether the
 * kernel keeps up with the memory system: below 1, decode is limited by
 * the kernel's arithmetic, not by bandwidth. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/mman.h>

#include "tensor/pool.h"
#include "engine/probe.h"
#include "gemma4c.h"
#include "tensor/cpu.h"
#include "tensor/kernels.h"
#include "tensor/matmul.h"
#include "tensor/quant_ref.h"
#include "tensor/types.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) / 8388608.0 - 1.0);
}

static volatile float sink;

static int64_t g_n = 4096; /* --n: input width (Gemma 4 E2B's is 1536) */
static int g_gr = 256, g_gc = 64; /* --gemm ROWSxTOKENS: the gemm block */
/* --panel: only the panel column, at the levels that have panels (a quick A/B) */
static int g_panel_only;

/* The type named by a --types entry, or -1 (said on stderr) when it has no
 * fast-path kernel or --n does not hold whole blocks of its weights and of
 * their activation type (256 for the K-quants, 32 for the legacy types: 704,
 * the 26B-A4B expert width, only runs the latter). */
static int bench_type(const char *name) {
    const int type = g4_type_from_name(name);
    const g4_type_traits *ti = type >= 0 ? g4_type_info(type) : NULL;
    if (!ti || !ti->vec_dot) {
        fprintf(stderr, "skipping %s: no fast-path kernel\n", name);
        return -1;
    }
    const int64_t b = ti->blck_size, bx = g4_type_info(ti->vec_dot_type)->blck_size;
    if (g_n % b == 0 && g_n % bx == 0) return type;
    fprintf(stderr, "skipping %s: --n %lld is not a multiple of %lld\n", ti->name, (long long)g_n,
            (long long)(b > bx ? b : bx));
    return -1;
}

typedef struct { double mv_gbs, gemm_gops, panel_gops, rows_gops, q_gbs; } result;

/* rows x n weights of `type` at w: 16 distinct quantized rows (quantizing
 * every row would take long), repeated: the traffic is the same. f: n floats
 * of scratch. */
static void fill_weights(int type, int64_t n, int64_t rows, uint8_t *w, float *f) {
    const size_t rs = g4_row_size(type, n);
    g4_type_traits wr = *g4_type_info(type);
    g4_quant_ref_fill(type, &wr);
    for (int64_t r = 0; r < 16 && r < rows; r++) {
        for (int64_t i = 0; i < n; i++) f[i] = frand();
        wr.from_float(f, w + (size_t)r * rs, n);
    }
    for (int64_t r = 16; r < rows; r++) memcpy(w + (size_t)r * rs, w + (size_t)(r % 16) * rs, rs);
}

static int tr_has_panel(int type, int level) {
    g4_type_traits tr;
    return g4_kernels_for_level(type, level, &tr) == 0 && tr.gemm_panel;
}

static result run_level(int type, int level, size_t mb, int reps) {
    result res = { 0, 0, 0, 0, 0 };
    g4_type_traits tr, at;
    if (g4_kernels_for_level(type, level, &tr) != 0 && level != G4_CPU_REF) return res;
    g4_kernels_for_level(tr.vec_dot_type, level, &at);

    const int64_t n = g_n;
    const size_t rs = g4_row_size(type, n), xs = g4_row_size(tr.vec_dot_type, n);
    const int rows = (int)((mb << 20) / rs);
    uint8_t *w = malloc((size_t)rows * rs);
    const int nx = g_gc > 64 ? g_gc : 64;
    float *f = malloc((size_t)n * (size_t)nx * sizeof *f);
    uint8_t *xq = malloc(xs * (size_t)nx);
    float *y = malloc((size_t)(rows > g_gr ? rows : g_gr) * (size_t)nx * sizeof *y);
    if (!w || !f || !xq || !y) { fprintf(stderr, "out of memory\n"); exit(1); }
    fill_weights(type, n, rows, w, f);
    for (int64_t i = 0; i < n * nx; i++) f[i] = frand();
    for (int c = 0; c < nx; c++) at.from_float(f + c * n, xq + (size_t)c * xs, n);

    double best = 1e30;
    for (int k = 0; k < reps && !g_panel_only; k++) {
        const double t0 = now();
        for (int r0 = 0; r0 < rows; r0 += 64) {
            const int nr = rows - r0 < 64 ? rows - r0 : 64;
            tr.gemm(n, nr, 1, w + (size_t)r0 * rs, rs, xq, xs, y + r0, (size_t)rows);
        }
        const double t = now() - t0;
        if (t < best) best = t;
    }
    sink = y[rows / 2];
    res.mv_gbs = (double)rows * (double)rs / best / 1e9;

    /* 256 x 64 block, cache resident; repeat to get a measurable time */
    /* the reference is slow: its rate on at most 256 x 64 */
    const int gr = level == G4_CPU_REF && g_gr > 256 ? 256 : g_gr, gc = level == G4_CPU_REF && g_gc > 64 ? 64 : g_gc;
    const int nr = rows < gr ? rows : gr, nc = gc, inner = level == G4_CPU_REF ? 1 : 4;
    best = 1e30;
    for (int k = 0; k < reps && !g_panel_only; k++) {
        const double t0 = now();
        for (int i = 0; i < inner; i++) tr.gemm(n, nr, nc, w, rs, xq, xs, y, (size_t)nr);
        const double t = (now() - t0) / inner;
        if (t < best) best = t;
    }
    sink = y[3];
    res.gemm_gops = 2.0 * nr * nc * (double)n / best / 1e9;
    /* the same block through the prefill panels (AVX-512 Q4_0/Q8_0/Q4_K/Q6_K:
     * what prompt tokens take), where the type has them */
    if (tr.gemm_panel) {
        best = 1e30;
        for (int k = 0; k < reps; k++) {
            const double t0 = now();
            for (int i = 0; i < inner; i++) tr.gemm_panel(n, nr, nc, NULL, w, rs, xq, xs, y, (size_t)nr, 0);
            const double t = (now() - t0) / inner;
            if (t < best) best = t;
        }
        sink = y[5];
        res.panel_gops = 2.0 * nr * nc * (double)n / best / 1e9;
    }
    /* the same block as batched decode (2..16 tokens, matmul.c's small-T
     * path) runs it: one call for all rows where the type reads its rows
     * one at a time itself (gemm_row_stream), else one call per row */
    if (nc <= 16 && !g_panel_only) {
        best = 1e30;
        for (int k = 0; k < reps; k++) {
            const double t0 = now();
            for (int i = 0; i < inner; i++) {
                if (tr.gemm_row_stream) tr.gemm(n, nr, nc, w, rs, xq, xs, y, (size_t)nr);
                else
                    for (int r = 0; r < nr; r++) tr.gemm(n, 1, nc, w + (size_t)r * rs, rs, xq, xs, y + r, (size_t)nr);
            }
            const double t = (now() - t0) / inner;
            if (t < best) best = t;
        }
        sink = y[7];
        res.rows_gops = 2.0 * nr * nc * (double)n / best / 1e9;
    }

    best = 1e30;
    for (int k = 0; k < reps && !g_panel_only; k++) {
        const double t0 = now();
        for (int c = 0; c < 64; c++) at.from_float(f + c * n, xq + (size_t)c * xs, n);
        const double t = now() - t0;
        if (t < best) best = t;
    }
    res.q_gbs = 64.0 * (double)n * 4 / best / 1e9;
    free(w); free(f); free(xq); free(y);
    return res;
}

/* ---- --stream: the threaded matvec against a plain read ----------------- */

typedef struct { const uint8_t *p; size_t n; uint64_t sink[64]; } read_task;

static void read_worker(void *arg, int ith, int nth) {
    read_task *t = arg;
    const size_t lo = t->n * (size_t)ith / (size_t)nth / 64 * 64, hi = t->n * (size_t)(ith + 1) / (size_t)nth / 64 * 64;
    t->sink[ith & 63] = g4_read_sum(t->p + lo, hi - lo); /* the bandwidth probe's loop */
}

static void run_stream(int type, size_t mb, int reps, int nth) {
    const int64_t n = g_n;
    const size_t rs = g4_row_size(type, n), huge = (size_t)2 << 20;
    const int64_t rows = (int64_t)((mb << 20) / rs);
    const size_t bytes = (size_t)rows * rs;
    uint8_t *w = aligned_alloc(huge, (bytes + huge - 1) / huge * huge);
    float *f = malloc((size_t)n * sizeof *f), *y = malloc((size_t)rows * sizeof *y);
    g4_mm_scratch sc = { .act = malloc((size_t)n * 8), .act_bytes = (size_t)n * 8 };
    g4_pool *pool = g4_pool_new(nth);
    if (!w || !f || !y || !sc.act || !pool) { fprintf(stderr, "out of memory\n"); exit(1); }
#ifdef MADV_HUGEPAGE
    (void)madvise(w, bytes, MADV_HUGEPAGE);
#endif
    fill_weights(type, n, rows, w, f);
    for (int64_t i = 0; i < n; i++) f[i] = frand();
    const g4_mat m = { .data = w, .type = type, .n_in = n, .n_out = rows, .n_mat = 1, .row_bytes = rs, .name = "w" };
    read_task rt = { .p = w, .n = bytes };
    double bm = 1e30, br = 1e30;
    for (int k = 0; k < reps + 1; k++) { /* the first round warms both up */
        double t0 = now();
        g4_matmul(pool, &m, 0, f, n, 1, y, rows, GEMMA4C_PREC_FAST, &sc);
        double tm = now() - t0;
        t0 = now();
        g4_pool_run(pool, read_worker, &rt);
        double tr = now() - t0;
        if (k && tm < bm) bm = tm;
        if (k && tr < br) br = tr;
    }
    sink = y[rows / 2] + (float)rt.sink[0];
    printf("%-6s %12.1f %12.1f %7.2f\n", g4_type_name(type), bytes / bm / 1e9, bytes / br / 1e9, br / bm);
    fflush(stdout);
    g4_pool_free(pool);
    free(w); free(f); free(y); free(sc.act);
}

int main(int argc, char **argv) {
    const char *types = "F32,F16,BF16,Q4_0,Q8_0,Q4_K,Q5_K,Q6_K";
    size_t mb = 256;
    int reps = 5, stream = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = (size_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) g_n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--stream") && i + 1 < argc) stream = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--panel")) g_panel_only = 1;
        else if (!strcmp(argv[i], "--gemm") && i + 1 < argc) {
            if (sscanf(argv[++i], "%dx%d", &g_gr, &g_gc) != 2 || g_gr < 1 || g_gr > 65536 || g_gc < 1 || g_gc > 4096) {
                fprintf(stderr, "--gemm ROWSxTOKENS, e.g. 512x512\n");
                return 2;
            }
        }
        else {
            fprintf(stderr, "usage: %s [--types T,T,...] [--mb MB] [--reps N] [--n WIDTH] [--gemm ROWSxTOKENS] [--stream THREADS] [--panel]\n", argv[0]);
            return 2;
        }
    }
    if (mb < 1 || mb > 16384 || reps < 1 || reps > 1000 || g_n < 32 || g_n > 65536 || g_n % 32 || stream < 0 ||
        stream > 64) {
        fprintf(stderr, "bad --mb, --reps, --stream (0..64) or --n (a multiple of 32, 32..65536)\n");
        return 2;
    }
    char desc[256];
    g4_cpu_describe(desc, sizeof desc);
    printf("cpu: %s\n", desc);
    if (stream) {
        printf("decode matvec (g4_matmul, %d threads) vs a plain read of the same %zu MB, n_in %lld, best of %d\n",
               stream, mb, (long long)g_n, reps);
        printf("%-6s %12s %12s %7s\n", "type", "matvec GB/s", "read GB/s", "ratio");
        char *list = strdup(types);
        for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
            const int type = bench_type(tok);
            if (type >= 0) run_stream(type, mb, reps, stream);
        }
        free(list);
        return 0;
    }
    printf("matvec: %lld x rows (%zu MB of weights), 1 token; gemm: %d rows x %d tokens x %lld; 1 thread, best of %d\n",
           (long long)g_n, mb, g_gr, g_gc, (long long)g_n, reps);
    /* the gemm column's ceiling: the same probe as `gemma4c bench` (best of 3) */
    double peak = 0;
    for (int i = 0; i < 3; i++) {
        const double p = gemma4c_probe_int8_gops(1);
        if (p > peak) peak = p;
    }
    printf("int8 peak (1 thread, probe): %.0f GOP/s\n", peak);
    printf("%-6s %-8s %12s %7s %12s %7s %12s %12s %12s %7s\n", "type", "level", "matvec GB/s", "x ref", "gemm GOP/s",
           "x ref", "panel GOP/s", "rows GOP/s", "quant GB/s", "x ref");
    char *list = strdup(types);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        const int type = bench_type(tok);
        if (type < 0) continue;
        result ref = { 0, 0, 0, 0, 0 };
        for (int level = G4_CPU_REF; level <= G4_CPU_DOTPROD; level++) {
            if (!g4_cpu_level_supported(level)) continue;
            if (g_panel_only && !tr_has_panel(type, level)) continue;
            const result r = run_level(type, level, mb, reps);
            if (level == G4_CPU_REF) ref = r;
            printf("%-6s %-8s %12.2f %7.2f %12.1f %7.2f %12.1f %12.1f %12.2f %7.2f\n", g4_type_name(type),
                   g4_cpu_level_name(level), r.mv_gbs, r.mv_gbs / ref.mv_gbs, r.gemm_gops, r.gemm_gops / ref.gemm_gops,
                   r.panel_gops, r.rows_gops, r.q_gbs, r.q_gbs / ref.q_gbs);
            fflush(stdout);
        }
    }
    free(list);
    return 0;
}
