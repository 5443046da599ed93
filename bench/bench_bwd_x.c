/* Training's backward input-gradient product dx += W^T dy (not a test).
 *
 *   build/bench/bench_bwd_x [-t N] [-T tokens] [--reps R]
 *   GEMMA4C_TRAIN_DX=bf16 build/bench/bench_bwd_x ...   (the bf16 panels)
 *
 * g4_op_matmul_bwd_x on the fast path over E2B's layer shapes (q, k/v, o,
 * gate/up, down; Q4_K, the down product Q6_K as Q4_K_M stores it) and the
 * head's 128-row chunk, random weights quantized once. Per product: best
 * wall ms of --reps and GMAC/s of process CPU time (both threads' seconds:
 * steadier than wall time on a shared machine). Run it twice, plain and
 * with GEMMA4C_TRAIN_DX=bf16, for the int8 panels' gain. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/ops_grad.h"
#include "tensor/pool.h"
#include "tensor/types.h"

static double clk(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t st = 1;
static float frand(void) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((int)(st >> 40) % 2001 - 1000) * 1e-3f;
}

int main(int argc, char **argv) {
    int nth = 2, T = 512, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-t")) nth = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-T")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else { fprintf(stderr, "usage: bench_bwd_x [-t N] [-T tokens] [--reps R]\n"); return 2; }
    }
    if (nth < 1 || T < 1 || reps < 1) return 2;
    const struct { const char *name; int type; int64_t n_in, n_out; int T; } sh[] = {
        { "q", G4_Q4_K, 1536, 2048, 0 },    { "k/v", G4_Q4_K, 1536, 256, 0 }, { "o", G4_Q4_K, 2048, 1536, 0 },
        { "gate/up", G4_Q4_K, 1536, 6144, 0 }, { "down", G4_Q6_K, 6144, 1536, 0 },
        { "head chunk", G4_Q6_K, 1536, 16384, 128 },
    };
    const char *e = getenv("GEMMA4C_TRAIN_DX");
    printf("dx += W^T dy, %d threads, %d tokens (head chunk 128), %s\n", nth, T,
           e && !strcmp(e, "bf16") ? "bf16 panels (GEMMA4C_TRAIN_DX=bf16)" : "default (int8 panels for quantized weights)");
    g4_exec ex = { .pool = g4_pool_acquire(nth), .n_threads = nth, .precision = 0 };
    double tot_wall = 0;
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        const g4_type_traits *tt = g4_type_info(sh[s].type);
        const int64_t ni = sh[s].n_in, no = sh[s].n_out;
        const int tk = sh[s].T ? sh[s].T : T;
        const size_t rb = g4_row_size(sh[s].type, ni);
        float *row = malloc((size_t)ni * sizeof(float));
        char *wq = malloc(rb * (size_t)no);
        float *dy = malloc((size_t)tk * no * sizeof(float)), *dx = calloc((size_t)tk * ni, sizeof(float));
        float *buf = malloc(g4_op_matmul_bwd_buf_floats(nth, ni, tk) * sizeof(float));
        if (!row || !wq || !dy || !dx || !buf) { fprintf(stderr, "out of memory\n"); return 1; }
        for (int64_t o = 0; o < no; o++) {
            for (int64_t i = 0; i < ni; i++) row[i] = frand() * 0.02f;
            tt->from_float(row, wq + (size_t)o * rb, ni);
        }
        for (size_t i = 0; i < (size_t)tk * no; i++) dy[i] = frand() * 1e-4f;
        g4_mat w = { .data = wq, .type = sh[s].type, .n_in = ni, .n_out = no, .n_mat = 1, .row_bytes = rb };
        double bw = 1e30, bc = 1e30;
        for (int r = 0; r < reps; r++) {
            double w0 = clk(CLOCK_MONOTONIC), c0 = clk(CLOCK_PROCESS_CPUTIME_ID);
            g4_op_matmul_bwd_x(&ex, &w, 0, dy, no, tk, dx, ni, buf);
            double w1 = clk(CLOCK_MONOTONIC) - w0, c1 = clk(CLOCK_PROCESS_CPUTIME_ID) - c0;
            if (w1 < bw) bw = w1;
            if (c1 < bc) bc = c1;
        }
        tot_wall += bw;
        printf("%-10s %-4s %5lld x %-5lld T %4d: %8.2f ms  %6.1f GMAC/s per CPU second\n", sh[s].name,
               g4_type_name(sh[s].type), (long long)no, (long long)ni, tk, bw * 1e3,
               (double)tk * ni * no / bc / 1e9);
        free(row); free(wq); free(dy); free(dx); free(buf);
    }
    printf("sum of best wall times: %.1f ms\n", tot_wall * 1e3);
    g4_pool_release(ex.pool);
    return 0;
}
