/* MoE prefill schedule, in one process: one 26B-A4B-shaped expert layer
 * (E 128, K 8, H 2816, Fe 704; fused Q4_K gate|up, Q8_0 down, ~560 MB:
 * larger than the caches) over T tokens, through
 *   grouped : g4_op_moe_experts (chunks of experts, one parallel section
 *             per chunk's gate/up and one per its down products);
 *   per-exp : the earlier schedule, re-stated here as the baseline: per
 *             selected expert its own gather, gate/up product, GEGLU, down
 *             product (4 pool sections per expert);
 * alternated, median of --reps each, and the ratio.
 *
 *   build/bench/bench_moe [-t THREADS] [-T TOKENS] [--reps N] [--skew]
 *
 * --skew routes half of the tokens' choices to 16 experts (a real router's
 * uneven load); default uniform at random, as a synthetic model's router.
 * Weights: one expert quantized from random values and copied to all (the
 * values do not change the time; the bytes read do). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/ops.h"
#include "tensor/act.h"
#include "tensor/pool.h"
#include "tensor/types.h"

enum { E = 128, K = 8, H = 2816, FE = 704 };

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static g4_mat make_mat(int type, int64_t n_in, int64_t n_out) {
    g4_mat m = { .type = type, .n_in = n_in, .n_out = n_out, .n_mat = E, .row_bytes = g4_row_size(type, n_in) };
    size_t one = m.row_bytes * (size_t)n_out;
    uint8_t *d = malloc(one * E);
    float *row = malloc((size_t)n_in * sizeof(float));
    if (!d || !row) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = (float)(urand() - 0.5) * 0.1f;
        g4_type_info(type)->from_float(row, d + (size_t)r * m.row_bytes, n_in);
    }
    for (int e = 1; e < E; e++) memcpy(d + (size_t)e * one, d, one);
    free(row);
    m.data = d;
    return m;
}

static double clock_s(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* The earlier schedule: per expert, its own sections. */
static void per_expert(g4_exec *ex, const g4_moe_weights *mw, const float *x, int T, const int *sel, const float *w,
                       g4_moe_scratch *sc, float *out) {
    memset(out, 0, (size_t)T * H * sizeof(float));
    for (int e = 0; e < E; e++) {
        int n = 0;
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++) if (sel[t * K + k] == e) sc->rows[n++] = t;
        if (!n) continue;
        for (int i = 0; i < n; i++) memcpy(sc->in + (size_t)i * H, x + (size_t)sc->rows[i] * H, H * sizeof(float));
        g4_op_matmul(ex, mw->gate_up, e, sc->in, H, n, sc->ff_a, 2 * FE);
        for (int i = 0; i < n; i++)
            g4_geglu(sc->ff_b + (size_t)i * FE, sc->ff_a + (size_t)i * 2 * FE, sc->ff_a + (size_t)i * 2 * FE + FE, FE,
                     0);
        g4_op_matmul(ex, mw->down, e, sc->ff_b, FE, n, sc->out, H);
        for (int i = 0; i < n; i++) {
            float wt = w[(size_t)sc->rows[i] * E + e], *o = out + (size_t)sc->rows[i] * H;
            for (int j = 0; j < H; j++) o[j] += wt * sc->out[(size_t)i * H + j];
        }
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int nth = 2, T = 512, reps = 5, skew = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-T") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--skew")) skew = 1;
        else { fprintf(stderr, "usage: bench_moe [-t THREADS] [-T TOKENS] [--reps N] [--skew]\n"); return 2; }
    }
    if (nth < 1 || T < 2 || T > 65536 || reps < 1 || reps > 99) { fprintf(stderr, "bad arguments\n"); return 2; }
    g4_act_init();
    g4_mat gu = make_mat(G4_Q4_K, H, 2 * FE), down = make_mat(G4_Q8_0, FE, H);
    g4_moe_weights mw = { .gate_up = &gu, .down = &down, .E = E, .K = K, .Fe = FE };
    float *x = malloc(sizeof(float) * T * H), *w = calloc((size_t)T * E, sizeof(float));
    float *out = malloc(sizeof(float) * T * H), *out2 = malloc(sizeof(float) * T * H);
    int *sel = malloc(sizeof(int) * T * K);
    g4_moe_scratch sc = { .in = malloc(sizeof(float) * T * H), .out = malloc(sizeof(float) * T * H),
                          .ff_a = malloc(sizeof(float) * T * 2 * FE), .ff_b = malloc(sizeof(float) * T * 2 * FE),
                          .rows = malloc(sizeof(int) * T) };
    g4_exec ex = { .pool = g4_pool_new(nth), .n_threads = nth, .precision = 0 };
    ex.mm.act_bytes = (size_t)T * H * 4 + 4096;
    ex.mm.act = malloc(ex.mm.act_bytes);
    if (!x || !w || !out || !out2 || !sel || !sc.in || !sc.out || !sc.ff_a || !sc.ff_b || !sc.rows || !ex.pool || !ex.mm.act) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)T * H; i++) x[i] = (float)(urand() - 0.5);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            int e, dup;
            do {
                e = skew && k < K / 2 ? (int)(urand() * 16) : (int)(urand() * E);
                dup = 0;
                for (int j = 0; j < k; j++) dup |= sel[t * K + j] == e;
            } while (dup);
            sel[t * K + k] = e;
            w[(size_t)t * E + e] = 1.0f / K;
        }
    /* wall time, and CPU time of all threads (spinning included): on a busy
     * machine with -t 1 the CPU time still compares the arithmetic */
    double tg[100], tp[100], cg[100], cp[100];
    for (int r = -1; r < reps; r++) {   /* r = -1: warm-up */
        double t0 = now(), c0 = cpu();
        g4_op_moe_experts(&ex, &mw, x, T, H, sel, w, &sc, out);
        double t1 = now(), c1 = cpu();
        per_expert(&ex, &mw, x, T, sel, w, &sc, out2);
        double t2 = now(), c2 = cpu();
        if (r >= 0) { tg[r] = t1 - t0; tp[r] = t2 - t1; cg[r] = c1 - c0; cp[r] = c2 - c1; }
    }
    qsort(tg, reps, sizeof(double), cmp);
    qsort(tp, reps, sizeof(double), cmp);
    qsort(cg, reps, sizeof(double), cmp);
    qsort(cp, reps, sizeof(double), cmp);
    double g = tg[reps / 2], p = tp[reps / 2], ops = 2.0 * T * K * 3.0 * FE * H;
    printf("MoE layer E %d K %d H %d Fe %d, T %d, %d threads, %s routing, median of %d\n", E, K, H, FE, T, nth,
           skew ? "skewed" : "uniform", reps);
    printf("grouped  %8.2f ms  %6.1f GOP/s  cpu %8.2f ms\n", g * 1e3, ops / g * 1e-9, cg[reps / 2] * 1e3);
    printf("per-exp  %8.2f ms  %6.1f GOP/s  cpu %8.2f ms\n", p * 1e3, ops / p * 1e-9, cp[reps / 2] * 1e3);
    printf("per-exp / grouped: time %.3f, cpu %.3f; outputs %s\n", p / g, cp[reps / 2] / cg[reps / 2],
           memcmp(out, out2, sizeof(float) * T * H) ? "DIFFER" : "identical");
    return 0;
}
