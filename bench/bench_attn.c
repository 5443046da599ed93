/* Attention per layer kind at depth, for each KV cache type (not a test).
 *
 *   build/bench/bench_attn [--depths 4096,32768] [-t N] [--reps 5] [--shape e2b|e4b]
 *
 * One decode token's g4_op_attention over a cache of E2B's (or E4B's) shape,
 * random rows, at each depth: a sliding layer (ring of window - 1 + 512
 * positions, the last `window` visible) and a full layer (every position in
 * pages of 256). Best of --reps, in microseconds per layer; then one token's
 * attention over all layers (sliding layers x their time + full x theirs).
 * The sliding time must not grow with depth; the full time grows linearly
 * and shrinks with the bytes per row (f16 half of f32, q8_0 ~0.27). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/attention.h"
#include "tensor/pool.h"
#include "tensor/vec_kv.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t st = 1;
static float frand(void) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((int32_t)(st >> 32)) / 2147483648.0f;
}

typedef struct shape { const char *name; int nH, nkv, hd_swa, hd_full, W, n_swa, n_full; } shape;

static const shape SHAPES[] = {
    /* E2B: 35 layers, every 5th full; E4B: 42, every 6th */
    { "e2b", 8, 1, 256, 512, 512, 28, 7 },
    { "e4b", 8, 2, 256, 512, 512, 35, 7 },
};

/* Best time (s) of one decode token at position pos over a cache of n_rows
 * rows (paged by `page`; a ring when n_rows < pos + 1), window W (0: full). */
static double time_layer(g4_exec *ex, int type, int nH, int nkv, int hd, int n_rows, int page, int pos, int W,
                         int reps) {
    size_t hs = g4_kv_row_bytes(type, (size_t)hd), rs = (size_t)nkv * hs;
    char *k = malloc(rs * (size_t)n_rows), *v = malloc(rs * (size_t)n_rows);
    float *src = malloc((size_t)hd * sizeof(float));
    for (size_t r = 0; r < (size_t)n_rows * nkv; r++) {
        for (int i = 0; i < hd; i++) src[i] = frand();
        g4_kv_store(type, k + r * hs, src, hd);
        for (int i = 0; i < hd; i++) src[i] = frand();
        g4_kv_store(type, v + r * hs, src, hd);
    }
    int n_pages = n_rows / page;
    int32_t *pages = malloc((size_t)n_pages * sizeof *pages);
    for (int i = 0; i < n_pages; i++) pages[i] = i;
    g4_kv_view view = { k, v, page, n_pages, pages, type, rs, hs };
    const g4_kv_view *kvp[1] = { &view };
    int nq = nH * hd;
    float *q = malloc((size_t)nq * sizeof(float)), *out = malloc((size_t)nq * sizeof(float));
    for (int i = 0; i < nq; i++) q[i] = frand() * 0.1f;
    float *ws = malloc(g4_attn_ws_floats(ex->n_threads, nH, nq) * sizeof(float));
    g4_mask mk = { .kind = W ? G4_MASK_SLIDING : G4_MASK_CAUSAL, .window = W };
    int32_t p = pos, lo, hi;
    g4_attn_ranges(&mk, &p, 1, 0, &lo, &hi);
    g4_attn a = { .q = q, .out = out, .T = 1, .n_head = nH, .n_kv_head = nkv, .head_dim = hd, .kv = kvp,
                  .lo = &lo, .hi = &hi };
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        /* the cache of a real step is cold: a long decode reads other layers
         * between two reads of this one; evict by touching 64 MB */
        static char *flush;
        if (!flush) flush = calloc(64 << 20, 1);
        for (size_t i = 0; i < (64u << 20); i += 64) flush[i]++;
        double t0 = now();
        g4_op_attention(ex, &a, ws, nq);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    free(k); free(v); free(src); free(pages); free(q); free(out); free(ws);
    return best;
}

int main(int argc, char **argv) {
    int depths[8] = { 4096, 32768 }, nd = 2, threads = 2, reps = 5;
    const shape *sh = &SHAPES[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--depths") && v) {
            nd = 0;
            for (char *s = (char *)v, *e; *s && nd < 8; s = *e ? e + 1 : e) {
                depths[nd++] = (int)strtol(s, &e, 10);
                if (e == s || depths[nd - 1] < 1) { fprintf(stderr, "bench_attn: bad --depths\n"); return 2; }
            }
            i++;
        } else if (!strcmp(a, "-t") && v) { threads = atoi(v); i++; }
        else if (!strcmp(a, "--reps") && v) { reps = atoi(v); i++; }
        else if (!strcmp(a, "--shape") && v) { sh = !strcmp(v, "e4b") ? &SHAPES[1] : &SHAPES[0]; i++; }
        else { fprintf(stderr, "usage: bench_attn [--depths 4096,32768] [-t N] [--reps 5] [--shape e2b|e4b]\n"); return 2; }
    }
    if (threads < 1) threads = 1;
    if (reps < 1) reps = 1;
    g4_exec ex = { 0 };
    ex.pool = g4_pool_acquire(threads);
    ex.n_threads = g4_pool_size(ex.pool);
    printf("%s shape, %d threads, one decode token; microseconds per layer (best of %d)\n\n", sh->name, ex.n_threads,
           reps);
    printf("| depth | kv | sliding layer | full layer | all %d layers | full rows MiB/layer |\n", sh->n_swa + sh->n_full);
    printf("|---:|---|---:|---:|---:|---:|\n");
    for (int d = 0; d < nd; d++)
        for (int t = 0; t < G4_KV_NTYPES; t++) {
            int pos = depths[d], ring = sh->W - 1 + 512;
            double ts = time_layer(&ex, t, sh->nH, sh->nkv, sh->hd_swa, ring, ring, pos, sh->W, reps);
            int rows = (pos + 1 + 255) / 256 * 256;
            double tf = time_layer(&ex, t, sh->nH, sh->nkv, sh->hd_full, rows, 256, pos, 0, reps);
            double mib = 2.0 * (pos + 1) * sh->nkv * g4_kv_row_bytes(t, (size_t)sh->hd_full) / 1048576.0;
            printf("| %d | %s | %.1f | %.1f | %.0f | %.1f |\n", pos, g4_kv_type_name(t), ts * 1e6, tf * 1e6,
                   (sh->n_swa * ts + sh->n_full * tf) * 1e6, mib);
            fflush(stdout);
        }
    g4_pool_release(ex.pool);
    return 0;
}
