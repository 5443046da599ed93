/* Image (and audio) encode + prefill timing on a real-shape mmproj (not a test):
 *
 *   build/gemma4c synth --arch e2b --mmproj -o /tmp/mmproj-e2b.gguf
 *   build/gemma4c synth --arch e2b --type Q4_K_M -o /tmp/e2b.gguf      (optional: the prefill)
 *   build/bench/bench_vision /tmp/mmproj-e2b.gguf [/tmp/e2b.gguf] [-t N] [--exact]
 *                            [--image FILE] [--audio FILE] [--reps N] [--soft-out F]
 *
 * Without --image, a 640x480 noise image at the default budget: 912x672
 * after the transformers resize, 2394 patches, 266 soft tokens. --image
 * FILE decodes and preprocesses a file as `gemma4c run --image` does (a
 * 960x672 image is exactly 280 tokens, in llama.cpp's mtmd as well). Prints
 * the median (and best) of --reps encodes (preprocessing excluded, as
 * llama.cpp's "image slice encoded in" is), its arithmetic rate (2 x
 * multiply-adds of the linears and the attention) and that rate as a share
 * of the machine's measured f32 peak (gemma4c_probe_f32_gflops); with a
 * model, the prefill of the image run + a short prompt and encode + prefill.
 * --audio FILE: the same for a clip (encode time and tokens; its share of
 * the peak is bench_audio's). --soft-out F writes the image's soft tokens
 * ([n][n_embd_text] f32) to compare the fast path with --exact. Run it on a
 * quiet machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "encoder/vision.h"   /* g4_vision_last_phases: phase timers */
#include "gemma4c.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median and best of n sorted times */
static void stats(double *t, int n, double *med, double *best) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    *med = t[n / 2];
    *best = t[0];
}

int main(int argc, char **argv) {
    const char *mmproj = NULL, *model = NULL, *image = NULL, *audio = NULL, *soft_out = NULL;
    int threads = 0, exact = 0, reps = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--exact")) exact = 1;
        else if (!strcmp(argv[i], "--image") && i + 1 < argc) image = argv[++i];
        else if (!strcmp(argv[i], "--audio") && i + 1 < argc) audio = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--soft-out") && i + 1 < argc) soft_out = argv[++i];
        else if (argv[i][0] == '-') mmproj = NULL, i = argc;   /* unknown option: usage */
        else if (!mmproj) mmproj = argv[i];
        else model = argv[i];
    }
    if (!mmproj || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: bench_vision MMPROJ.gguf [MODEL.gguf] [-t N] [--exact] [--image F] [--audio F] [--reps N] [--soft-out F]\n");
        return 2;
    }
    char err[600];
    gemma4c_mmproj *mp = gemma4c_mmproj_open(NULL, mmproj, err, sizeof err);
    if (!mp) { fprintf(stderr, "%s\n", err); return 1; }
    int W = 640, H = 480;
    uint8_t *rgb = malloc((size_t)W * H * 3);
    for (size_t i = 0; i < (size_t)W * H * 3; i++) rgb[i] = (uint8_t)(i * 2654435761u >> 24);
    gemma4c_media_params p = gemma4c_media_default_params();
    p.n_threads = threads;
    p.precision = exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    double *t = malloc((size_t)reps * sizeof *t), tprep = 0, tmed = 0, tbest = 0;
    gemma4c_media *it = NULL;
    const float *soft = NULL;
    /* each rep a fresh item (an item encodes once); the last one is kept.
     * --audio alone skips the image (and the prefill) */
    const int do_image = image || !audio;
    for (int r = 0; do_image && r < reps; r++) {
        gemma4c_media_free(it);
        double t0 = now();
        it = image ? gemma4c_media_load(mp, image, GEMMA4C_MEDIA_IMAGE, &p, err, sizeof err)
                   : gemma4c_media_from_rgb(mp, rgb, W, H, &p, err, sizeof err);
        double t1 = now();
        soft = it ? gemma4c_media_encode(it, err, sizeof err) : NULL;
        t[r] = now() - t1;
        tprep = t1 - t0;
        if (!soft) { fprintf(stderr, "%s\n", err); return 1; }
    }
    if (do_image) {
        stats(t, reps, &tmed, &tbest);
        int pw, ph, Di, Fi, Li;
        gemma4c_media_pixels(it, &pw, &ph);
        gemma4c_mmproj_vision_shape(mp, &Di, &Fi, &Li);
        double D = Di, F = Fi, L = Li, N = (pw / 16.0) * (ph / 16.0);
        double flop = 2 * L * (N * (4 * D * D + 3 * D * F) + 2 * N * N * D);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        double peak = gemma4c_probe_f32_gflops(threads > 0 ? threads : (int)(ncpu > 0 ? ncpu : 1));
        printf("image %s: decode + resize -> %dx%d: %.3f s\n", image ? image : "640x480 noise", pw, ph, tprep);
        printf("encode %d patches -> %d soft tokens (%s path): median %.3f s, best %.3f s of %d; "
               "%.1f GFLOP/s = %.1f%% of the f32 peak (%.1f GFLOP/s)\n",
               (int)N, gemma4c_media_n_tokens(it), exact ? "exact" : "fast", tmed, tbest, reps, flop / tbest * 1e-9,
               100 * flop / tbest * 1e-9 / peak, peak);
        /* the last encode's phases (this thread ran it) and their rates */
        const g4_vision_phases vp = g4_vision_last_phases();
        const double lin_a = 2 * L * N * 4 * D * D, att = 2 * L * 2 * N * N * D, mlp = 2 * L * N * 3 * D * F;
        printf("phases: patch %.3f s | attention linears %.3f s (%.0f GFLOP/s) | attention %.3f s (%.0f GFLOP/s) | "
               "MLP %.3f s (%.0f GFLOP/s) | pool + embed %.3f s\n", vp.patch, vp.attn_lin, lin_a / vp.attn_lin * 1e-9,
               vp.attn, att / vp.attn * 1e-9, vp.mlp, mlp / vp.mlp * 1e-9, vp.pool);
        FILE *f = soft_out ? fopen(soft_out, "wb") : NULL;
        size_t ns = (size_t)gemma4c_media_n_tokens(it) * (size_t)gemma4c_mmproj_n_embd(mp);
        if (soft_out && (!f || fwrite(soft, sizeof *soft, ns, f) != ns)) { fprintf(stderr, "cannot write %s\n", soft_out); return 1; }
        if (f && fclose(f)) { fprintf(stderr, "cannot write %s\n", soft_out); return 1; }
    }
    if (audio) {
        gemma4c_media *au = NULL;
        for (int r = 0; r < reps; r++) {
            gemma4c_media_free(au);
            au = gemma4c_media_load(mp, audio, GEMMA4C_MEDIA_AUDIO, &p, err, sizeof err);
            double t1 = now();
            if (!au || !gemma4c_media_encode(au, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
            t[r] = now() - t1;
        }
        double am, ab;
        stats(t, reps, &am, &ab);
        printf("audio %s: encode -> %d soft tokens (%s path): median %.3f s, best %.3f s of %d\n", audio,
               gemma4c_media_n_tokens(au), exact ? "exact" : "fast", am, ab, reps);
        gemma4c_media_free(au);
    }
    if (model && do_image) {
        gemma4c_model *m = gemma4c_model_open(model, err, sizeof err);
        gemma4c_context_params cp = gemma4c_context_default_params();
        cp.n_threads = threads;
        cp.n_ctx = cp.n_batch = 512;
        gemma4c_context *c = m ? gemma4c_context_new(m, &cp, err, sizeof err) : NULL;
        if (!c) { fprintf(stderr, "%s\n", err); return 1; }
        int32_t o, s, cl;
        gemma4c_media_token_ids(m, GEMMA4C_MEDIA_IMAGE, &o, &s, &cl);
        /* a synthetic model's vocabulary names no media tokens: the
         * released ids (only timing matters, the rows carry the image) */
        if (o < 0 || s < 0 || cl < 0) { o = 255999; s = 258880; cl = 258882; }
        int n = gemma4c_media_n_tokens(it) + 12, H2 = gemma4c_mmproj_n_embd(mp);
        int32_t *ids = malloc((size_t)n * sizeof *ids);
        uint8_t *has = calloc((size_t)n, 1);
        float *embd = calloc((size_t)n * H2, sizeof *embd);
        for (int i = 0; i < n; i++) ids[i] = 300 + i % 100;
        ids[0] = 2; ids[1] = o; ids[n - 10] = cl;
        for (int i = 2; i < n - 10; i++) { ids[i] = s; has[i] = 1; memcpy(embd + (size_t)i * H2, soft + (size_t)(i - 2) * H2, (size_t)H2 * 4); }
        gemma4c_batch b = { .n_tokens = n, .token = ids, .embd = embd, .has_embd = has };
        /* each rep from an empty cache */
        for (int r = 0; r < reps; r++) {
            gemma4c_context_free(c);
            c = gemma4c_context_new(m, &cp, err, sizeof err);
            double t3 = now();
            if (!c || gemma4c_decode(c, &b, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
            t[r] = now() - t3;
        }
        double pm, pb;
        stats(t, reps, &pm, &pb);
        printf("prefill %d tokens (image run + text): median %.3f s, best %.3f s, %.1f tokens/s\n", n, pm, pb, n / pm);
        printf("image encode + prefill: %.3f s (medians)\n", tmed + pm);
        gemma4c_context_free(c);
        gemma4c_model_free(m);
        free(ids); free(has); free(embd);
    }
    free(t);
    gemma4c_media_free(it);
    gemma4c_mmproj_free(mp);
    free(rgb);
    return 0;
}
