/* Image encode + prefill timing on a real-shape mmproj (not a test):
 *
 *   build/gemma4c synth --arch e2b --mmproj -o /tmp/mmproj-e2b.gguf
 *   build/gemma4c synth --arch e2b --type Q4_K_M -o /tmp/e2b.gguf      (optional: the prefill)
 *   build/bench/bench_vision /tmp/mmproj-e2b.gguf [/tmp/e2b.gguf] [-t N] [--exact]
 *
 * A 640x480 image at the default budget: 912x672 after the transformers
 * resize, 2394 patches, 266 soft tokens. Prints the encode time, its
 * arithmetic rate (2 x multiply-adds of the linears and the attention) and
 * that rate as a share of the machine's measured f32 peak
 * (gemma4c_probe_f32_gflops); with a model, the prefill of the 268-token
 * image run + a short prompt. Run it on a quiet machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gemma4c.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *mmproj = NULL, *model = NULL;
    int threads = 0, exact = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--exact")) exact = 1;
        else if (!mmproj) mmproj = argv[i];
        else model = argv[i];
    }
    if (!mmproj) { fprintf(stderr, "usage: bench_vision MMPROJ.gguf [MODEL.gguf] [-t N] [--exact]\n"); return 2; }
    char err[600];
    gemma4c_mmproj *mp = gemma4c_mmproj_open(NULL, mmproj, err, sizeof err);
    if (!mp) { fprintf(stderr, "%s\n", err); return 1; }
    int W = 640, H = 480;
    uint8_t *rgb = malloc((size_t)W * H * 3);
    for (size_t i = 0; i < (size_t)W * H * 3; i++) rgb[i] = (uint8_t)(i * 2654435761u >> 24);
    gemma4c_media_params p = gemma4c_media_default_params();
    p.n_threads = threads;
    p.precision = exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    double t0 = now();
    gemma4c_media *it = gemma4c_media_from_rgb(mp, rgb, W, H, &p, err, sizeof err);
    double t1 = now();
    const float *soft = it ? gemma4c_media_encode(it, err, sizeof err) : NULL;
    double t2 = now();
    if (!soft) { fprintf(stderr, "%s\n", err); return 1; }
    int pw, ph;
    gemma4c_media_pixels(it, &pw, &ph);
    int Di, Fi, Li;
    gemma4c_mmproj_vision_shape(mp, &Di, &Fi, &Li);
    double D = Di, F = Fi, L = Li;
    double N = (pw / 16.0) * (ph / 16.0);
    double flop = 2 * L * (N * (4 * D * D + 3 * D * F) + 2 * N * N * D);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double peak = gemma4c_probe_f32_gflops(threads > 0 ? threads : (int)(ncpu > 0 ? ncpu : 1));
    printf("resize %dx%d -> %dx%d: %.3f s\n", W, H, pw, ph, t1 - t0);
    printf("encode %d patches -> %d soft tokens: %.3f s, %.1f GFLOP/s = %.1f%% of the f32 peak (%.1f GFLOP/s)\n",
           (int)N, gemma4c_media_n_tokens(it), t2 - t1, flop / (t2 - t1) * 1e-9, 100 * flop / (t2 - t1) * 1e-9 / peak,
           peak);
    if (model) {
        gemma4c_model *m = gemma4c_model_open(model, err, sizeof err);
        gemma4c_context_params cp = gemma4c_context_default_params();
        cp.n_threads = threads;
        cp.n_ctx = cp.n_batch = 512;
        gemma4c_context *c = m ? gemma4c_context_new(m, &cp, err, sizeof err) : NULL;
        if (!c) { fprintf(stderr, "%s\n", err); return 1; }
        int32_t o, s, cl;
        gemma4c_media_token_ids(m, GEMMA4C_MEDIA_IMAGE, &o, &s, &cl);
        int n = gemma4c_media_n_tokens(it) + 12, H2 = gemma4c_mmproj_n_embd(mp);
        int32_t *ids = malloc((size_t)n * sizeof *ids);
        uint8_t *has = calloc((size_t)n, 1);
        float *embd = calloc((size_t)n * H2, sizeof *embd);
        for (int i = 0; i < n; i++) ids[i] = 300 + i % 100;
        ids[0] = 2; ids[1] = o; ids[n - 10] = cl;
        for (int i = 2; i < n - 10; i++) { ids[i] = s; has[i] = 1; memcpy(embd + (size_t)i * H2, soft + (size_t)(i - 2) * H2, (size_t)H2 * 4); }
        gemma4c_batch b = { .n_tokens = n, .token = ids, .embd = embd, .has_embd = has };
        double t3 = now();
        if (gemma4c_decode(c, &b, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        printf("prefill %d tokens (image run + text): %.3f s, %.1f tokens/s\n", n, now() - t3, n / (now() - t3));
        gemma4c_context_free(c);
        gemma4c_model_free(m);
        free(ids); free(has); free(embd);
    }
    gemma4c_media_free(it);
    gemma4c_mmproj_free(mp);
    free(rgb);
    return 0;
}
