/* Audio encoder speed: 30 s of audio (2999 feature frames -> 750 soft tokens)
 * through a synthetic audio tower of the released E2B/E4B shape (hidden 1024,
 * 12 conformer layers, 8 heads, FFN 4096, SSCP channels 128/32, output 1536,
 * soft tokens of E2B's 1536), weights random in the stored type.
 *
 *   build/bench/bench_audio [--type BF16|F16|F32|Q8_0] [-t THREADS] [--reps 3] [--exact]
 *   build/bench/bench_audio --distance [--type ...]   fast vs exact path on 1 s
 *
 * Prints the best and median of --reps encodes, the FLOPs of one encode
 * (2 per multiply-add: weight products and convolutions; the attention's
 * 12-frame window is counted too) and their rate as a share of the arithmetic
 * peak gemma4c_probe_* measures on the same threads right before (f32 FMA
 * for F32/F16/BF16 weights and the exact path, int8 for Q8_0 on the fast
 * path where the CPU has it). Both are same-run numbers; on a shared machine
 * compare only the ratio. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "encoder/audio.h"
#include "format/gguf.h"
#include "gemma4c.h"
#include "tensor/types.h"

enum { D = 1024, FF = 4096, L = 12, H = 8, C0 = 128, C1 = 32, P = 1536, E = 1536, F1 = 64, F2 = 32 };

static uint64_t rng = 0x243f6a8885a308d3ull;
static float frand(void) {   /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static int add(g4_gguf_file *f, const char *name, int type, int64_t n_in, int64_t n_out, float scale, float base) {
    int64_t ne[2] = { n_in, n_out };
    const g4_type_traits *tr = g4_type_info(type);
    size_t rb = g4_row_size(type, n_in);
    void *buf = g4_gguf_own(f, malloc(rb * (size_t)n_out));
    float *row = malloc((size_t)n_in * sizeof *row);
    if (!buf || !row) { free(row); return -1; }
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = base + scale * frand();
        if (type == G4_F32) memcpy((char *)buf + rb * (size_t)o, row, rb);
        else tr->from_float(row, (char *)buf + rb * (size_t)o, n_in);
    }
    free(row);
    g4_error err;
    return g4_gguf_add_tensor(f, name, type, n_out > 1 ? 2 : 1, ne, buf, &err) ? 0 : -1;
}

static int add_vec(g4_gguf_file *f, const char *name, int64_t n, float scale, float base) {
    return add(f, name, G4_F32, n, 1, scale, base);
}

static int add_clip(g4_gguf_file *f, const char *base, int type, int64_t n_in, int64_t n_out) {
    char nm[128];
    snprintf(nm, sizeof nm, "%s.weight", base);
    if (add(f, nm, type, n_in, n_out, 1.7f / sqrtf((float)n_in), 0)) return -1;
    static const char *sfx[4] = { "input_min", "input_max", "output_min", "output_max" };
    static const float v[4] = { -4, 4, -8, 8 };
    for (int i = 0; i < 4; i++) {
        snprintf(nm, sizeof nm, "%s.%s", base, sfx[i]);
        if (add_vec(f, nm, 1, 0, v[i])) return -1;
    }
    return 0;
}

static g4_gguf_file *synth(int type) {
    g4_gguf_file *f = g4_gguf_new("synthetic-e2b-audio");
    if (!f) return NULL;
    g4_gguf_set_str(f, "general.architecture", "clip");
    g4_gguf_set_bool(f, "clip.has_audio_encoder", true);
    g4_gguf_set_str(f, "clip.audio.projector_type", "gemma4a");
    g4_gguf_set_u32(f, "clip.audio.embedding_length", D);
    g4_gguf_set_u32(f, "clip.audio.feed_forward_length", FF);
    g4_gguf_set_u32(f, "clip.audio.block_count", L);
    g4_gguf_set_u32(f, "clip.audio.attention.head_count", H);
    g4_gguf_set_u32(f, "clip.audio.num_mel_bins", 128);
    g4_gguf_set_u32(f, "clip.audio.projection_dim", E);
    int rc = 0;
    /* the convolutions stay F32, as the converter writes them */
    rc |= add(f, "a.conv1d.0.weight", G4_F32, 9, C0, 0.3f, 0);
    rc |= add_vec(f, "a.conv1d.0.norm.weight", C0, 0.1f, 1);
    rc |= add(f, "a.conv1d.1.weight", G4_F32, 9 * C0, C1, 0.05f, 0);
    rc |= add_vec(f, "a.conv1d.1.norm.weight", C1, 0.1f, 1);
    rc |= add(f, "a.input_projection.weight", type, F2 * C1, D, 0.05f, 0);
    char nm[128], b[128];
    for (int l = 0; l < L && !rc; l++) {
        static const char *s[2] = { "", "_1" };
        for (int i = 0; i < 2; i++) {
            snprintf(nm, sizeof nm, "a.blk.%d.ffn_norm%s.weight", l, s[i]); rc |= add_vec(f, nm, D, 0.1f, 1);
            snprintf(nm, sizeof nm, "a.blk.%d.ffn_post_norm%s.weight", l, s[i]); rc |= add_vec(f, nm, D, 0.1f, 1);
            snprintf(b, sizeof b, "a.blk.%d.ffn_up%s", l, s[i]); rc |= add_clip(f, b, type, D, FF);
            snprintf(b, sizeof b, "a.blk.%d.ffn_down%s", l, s[i]); rc |= add_clip(f, b, type, FF, D);
        }
        static const char *norms[] = { "attn_pre_norm", "attn_post_norm", "conv_norm", "norm_conv", "ln2" };
        for (int i = 0; i < 5; i++) {
            snprintf(nm, sizeof nm, "a.blk.%d.%s.weight", l, norms[i]);
            rc |= add_vec(f, nm, D, 0.1f, 1);
        }
        snprintf(nm, sizeof nm, "a.blk.%d.per_dim_scale.weight", l); rc |= add_vec(f, nm, D / H, 0.1f, 0.7f);
        static const char *sq[] = { "attn_q", "attn_k", "attn_v", "attn_out", "conv_pw2" };
        for (int i = 0; i < 5; i++) { snprintf(b, sizeof b, "a.blk.%d.%s", l, sq[i]); rc |= add_clip(f, b, type, D, D); }
        snprintf(b, sizeof b, "a.blk.%d.conv_pw1", l); rc |= add_clip(f, b, type, D, 2 * D);
        snprintf(nm, sizeof nm, "a.blk.%d.attn_k_rel.weight", l); rc |= add(f, nm, type, D, D, 0.03f, 0);
        snprintf(nm, sizeof nm, "a.blk.%d.conv_dw.weight", l); rc |= add(f, nm, G4_F32, 5, D, 0.4f, 0);
    }
    rc |= add(f, "a.pre_encode.out.weight", type, D, P, 0.03f, 0);
    rc |= add_vec(f, "a.pre_encode.out.bias", P, 0.1f, 0);
    rc |= add(f, "mm.a.input_projection.weight", type, P, E, 0.03f, 0);
    if (rc) { g4_gguf_close(f); return NULL; }
    return f;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int type = G4_BF16, threads = 2, reps = 3;
    bool exact = false, distance = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--type") && i + 1 < argc) type = g4_type_from_name(argv[++i]);
        else if ((!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--exact")) exact = true;
        else if (!strcmp(argv[i], "--distance")) distance = true;
        else { fprintf(stderr, "usage: bench_audio [--type BF16|F16|F32|Q8_0] [-t N] [--reps N] [--exact]\n"); return 2; }
    }
    if (type < 0 || threads < 1 || reps < 1 || reps > 100) { fprintf(stderr, "bench_audio: bad arguments\n"); return 2; }
    g4_gguf_file *f = synth(type);
    g4_error err = { { 0 } };
    g4_audio_enc *enc = f ? g4_audio_enc_load(f, &err) : NULL;
    if (!enc) { fprintf(stderr, "bench_audio: %s\n", f ? err.msg : "out of memory"); return 1; }
    if (distance) {   /* the fast path's distance from the exact one, 1 s of features (25 tokens) */
        int Td = 99, Nd = g4_audio_n_tokens(enc, Td);
        float *m1 = malloc((size_t)Td * 128 * sizeof *m1), *a = malloc((size_t)Nd * E * sizeof *a),
              *b = malloc((size_t)Nd * E * sizeof *b);
        for (size_t i = 0; i < (size_t)Td * 128; i++) m1[i] = -3.0f + 2.5f * frand();
        if (g4_audio_encode(enc, m1, Td, a, threads, true, &err) || g4_audio_encode(enc, m1, Td, b, threads, false, &err)) {
            fprintf(stderr, "bench_audio: %s\n", err.msg);
            return 1;
        }
        double md = 0, mx = 0, se = 0, ss = 0;
        for (size_t i = 0; i < (size_t)Nd * E; i++) {
            double d = fabs((double)a[i] - b[i]);
            md = d > md ? d : md;
            mx = fabs(a[i]) > mx ? fabs(a[i]) : mx;
            se += d * d;
            ss += (double)a[i] * a[i];
        }
        printf("fast vs exact, %s weights, 1 s (%d tokens): max |d| %.3g (max |exact| %.3g), rms d / rms %.3g\n",
               g4_type_name(type), Nd, md, mx, sqrt(se / (ss > 0 ? ss : 1)));
        free(m1); free(a); free(b);
        g4_audio_enc_free(enc);
        g4_gguf_close(f);
        return 0;
    }
    const int T = G4_AUDIO_PIECE_FRAMES, T1 = (T - 1) / 2 + 1, T2 = g4_audio_n_tokens(enc, T);
    float *mel = malloc((size_t)T * 128 * sizeof *mel), *out = malloc((size_t)T2 * E * sizeof *out);
    if (!mel || !out) return 1;
    for (size_t i = 0; i < (size_t)T * 128; i++) mel[i] = -3.0f + 2.5f * frand();
    /* FLOPs of one encode */
    double mm = 0;
    mm += (double)T1 * F1 * C0 * 9 + (double)T2 * F2 * C1 * C0 * 9 + (double)T2 * F2 * C1 * D;   /* SSCP */
    double per_layer = 2.0 * (2.0 * D * FF) + 4.0 * D * D + 2.0 * D * D + D * D;              /* FFNx2, qkvo, pw1, pw2 */
    mm += (double)L * (T2 * per_layer + 12.0 * D * D);                                          /* + relative rows */
    mm += (double)L * T2 * H * 12.0 * (D / H) * 2;                                              /* attention: qk, pv */
    mm += (double)T2 * ((double)D * P + (double)P * E);
    double flops = 2 * mm;
    /* warm-up (page in the weights, start the pool), then the probe, then the runs */
    if (g4_audio_encode(enc, mel, T, out, threads, exact, &err)) { fprintf(stderr, "bench_audio: %s\n", err.msg); return 1; }
    double f32 = gemma4c_probe_f32_gflops(threads), i8 = gemma4c_probe_int8_gops(threads);
    bool int8 = !exact && type == G4_Q8_0 && i8 > 0;
    double peak = int8 ? i8 : f32;
    double *t = malloc((size_t)reps * sizeof *t);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        g4_audio_encode(enc, mel, T, out, threads, exact, &err);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    double best = t[0], med = t[reps / 2];
    printf("audio encode, 30 s (%d frames -> %d tokens), E2B shape, %s weights, %s path, %d threads\n", T, T2,
           g4_type_name(type), exact ? "exact" : "fast", threads);
    printf("  %.1f GFLOP per encode; best %.3f s (%.1f GFLOP/s), median %.3f s; %.1fx faster than real time\n",
           flops * 1e-9, best, flops / best * 1e-9, med, 30.0 / best);
    printf("  peak (%s, same threads, same run): %.0f GFLOP/s -> best run at %.1f%% of peak\n",
           int8 ? "int8" : "f32 FMA", peak, 100.0 * flops / best * 1e-9 / (peak > 0 ? peak : 1));
    free(t); free(mel); free(out);
    g4_audio_enc_free(enc);
    g4_gguf_close(f);
    return 0;
}
