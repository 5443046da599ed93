/* The audio path against shared/testdata/gemma4-mm-ref (see its README):
 * WAV -> 16 kHz samples (media/audio.c), log-mel (encoder/mel.c) against the
 * transformers features, the conformer + embedder (encoder/audio.c) on
 * llama.cpp's features against the exact (float64, transformers semantics)
 * soft tokens, and the whole WAV -> soft token path against the
 * transformers pipeline; token counts against the HF prompts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "encoder/audio.h"
#include "encoder/mmproj.h"
#include "encoder/mmproj_synth.h"
#include "format/gguf.h"
#include "format/hf.h"
#include "gemma4c.h"
#include "harness.h"
#include "media/audio.h"
#include "tensor/bf16.h"
#include "tensor/types.h"

#define REF "testdata/gemma4-mm-ref/"

static const char *items[] = { "aud-chirp-0.5s", "aud-noise-1s", "aud-pluck-real-0.3s", "aud-silence-1s",
                               "aud-speechlike-2.5s", "aud-speechlike-30s" };
#define N_ITEMS (int)(sizeof items / sizeof items[0])
#define N_SHORT 5 /* the 30 s clip ships no feature files */

static int threads(void) {
    const char *e = getenv("G4_TEST_THREADS");
    return e && atoi(e) > 0 ? atoi(e) : 2;
}

static float *read_f32(const char *rel, size_t *n) {
    size_t len = 0;
    char *p = th_read_file(shared_path(rel), &len);
    if (!p) return NULL;
    *n = len / sizeof(float);
    return (float *)p;
}

/* count of <|audio|> (17) placeholders in a tokens file */
static int count_placeholders(const char *rel) {
    char *p = th_read_file(shared_path(rel), NULL);
    if (!p) return -1;
    int n = 0;
    for (char *s = strtok(p, " \n"); s; s = strtok(NULL, " \n")) n += atoi(s) == 17;
    free(p);
    return n;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;   /* NaN wins */
    }
    return m;
}

static g4_gguf_file *g_mmproj, *g_hf;
static g4_audio_enc *g_enc_gguf, *g_enc_hf;
static g4_audio_enc *g_enc;   /* the one the shared checks below run on */

static float *load_wav(const char *item, size_t *n) {
    char rel[256];
    snprintf(rel, sizeof rel, REF "media/%s.wav", item);
    float *pcm = NULL;
    g4_error err = { { 0 } };
    if (g4_audio_load_file(shared_path(rel), 0, &pcm, n, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    return pcm;
}

TEST(mel_matches_transformers) {
    for (int i = 0; i < N_SHORT; i++) {
        size_t n = 0, nref = 0;
        float *pcm = load_wav(items[i], &n), *mel = NULL;
        char rel[256];
        snprintf(rel, sizeof rel, REF "%s.hf.preproc.mel.f32", items[i]);
        float *ref = read_f32(rel, &nref);
        CHECKF(pcm && ref, "%s: inputs", items[i]);
        if (!pcm || !ref) { free(pcm); free(ref); continue; }
        int T = 0;
        g4_error err = { { 0 } };
        CHECKF(g4_audio_features(pcm, n, &mel, &T, &err) == 0, "%s: %s", items[i], err.msg);
        CHECKF((size_t)T * G4_AUDIO_N_MEL == nref, "%s: %d frames, reference %zu", items[i], T, nref / 128);
        if (mel && (size_t)T * G4_AUDIO_N_MEL == nref) {
            double d = max_diff(mel, ref, nref);
            printf("  %-22s mel: %d frames, max |diff| %.2e\n", items[i], T, d);
            CHECKF(d <= 1e-4, "%s: mel max diff %g", items[i], d);
        }
        free(pcm); free(ref); free(mel);
    }
}

/* The fast path's bound on the soft tokens: 1e-3 without AVX512_BF16 or
 * VNNI. With them (test_vision.c's fast_bound, the same derivation) R = 2
 * (2 + 8 L) roundings on the longest path: per block the two FFNs' up and
 * down, q/k/v (the relative-position product beside them), output, the
 * conv module's two pointwise products (its attention stays f32); the
 * output projection and the embedder (the sub-sampling convolutions stay
 * f32: audio.c's sscp). Each a relative error of rms e8 = 3.5 / (127
 * sqrt(12)) where the linears run in int8 (VNNI: Q8_0 weights and
 * activations, matmul.h), u / sqrt(3) in bf16 (u = 2^-8). L = 2, int8:
 * 4.5 sqrt(36) e8 rms(ref) = 0.215 rms(ref), ~0.23 here; measured 0.023
 * (the 2.5 s clip; the shorter ones have fewer than G4_MM_BF16_MIN_T tokens
 * and stay f32) and 0.030 on the 30 s clip (bf16: bound 0.061 rms(ref),
 * measured 0.009 and 0.02). */
static double fast_bound(const float *ref, size_t n) {
    const bool bf = g4_bf16_dot_ok(), i8 = g4_type_info(G4_Q8_0)->gemm_panel != NULL;
    if (!bf && !i8) return 1e-3;
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)ref[i] * ref[i];
    const double e = i8 ? 3.5 / (127 * sqrt(12.0)) : 0x1p-8 / sqrt(3.0);
    return 4.5 * sqrt(2.0 * (2 + 8 * g4_audio_n_layers(g_enc))) * e * sqrt(ss / (double)n);
}

/* encoder alone on llama.cpp's features vs the exact soft tokens (tol < 0:
 * the fast path's bound) */
static void encoder_on_preproc(bool exact, double tol) {
    CHECK(g_enc != NULL);
    if (!g_enc) return;
    int E = g4_audio_n_embd(g_enc);
    CHECK(E == 64);
    for (int i = 0; i < N_SHORT; i++) {
        char rel[256];
        size_t nm = 0, nr = 0;
        snprintf(rel, sizeof rel, REF "%s.preproc.mel.f32", items[i]);
        float *mel = read_f32(rel, &nm);
        snprintf(rel, sizeof rel, REF "%s.exact.embd.f32", items[i]);
        float *ref = read_f32(rel, &nr);
        CHECKF(mel && ref, "%s: inputs", items[i]);
        if (!mel || !ref) { free(mel); free(ref); continue; }
        int T = (int)(nm / G4_AUDIO_N_MEL), n_tok = g4_audio_n_tokens(g_enc, T);
        CHECKF((size_t)n_tok * E == nr, "%s: %d tokens, reference %zu", items[i], n_tok, nr / E);
        float *out = calloc((size_t)n_tok * E, sizeof(float));
        g4_error err = { { 0 } };
        int got = g4_audio_encode(g_enc, mel, T, out, threads(), exact, &err);
        CHECKF(got == 0, "%s: encode: %s", items[i], err.msg);
        if (got == 0 && (size_t)n_tok * E == nr) {
            double d = max_diff(out, ref, nr), b = tol < 0 ? fast_bound(ref, nr) : tol;
            printf("  %-22s encoder (%s): %d tokens, max |diff| %.2e (bound %.2e)\n", items[i],
                   exact ? "exact" : "fast", n_tok, d, b);
            CHECKF(d <= b, "%s: max diff %g, bound %g", items[i], d, b);
        }
        free(mel); free(ref); free(out);
    }
}

TEST(encoder_exact_on_preproc_mel) { encoder_on_preproc(true, 1e-3); }
TEST(encoder_fast_on_preproc_mel) { encoder_on_preproc(false, -1); }
TEST(hf_encoder_exact_on_preproc_mel) { encoder_on_preproc(true, 1e-3); }

/* the whole path from the WAV file against transformers' (fast: the fast
 * path's bound, fast_bound) */
static void wav_to_soft_tokens_on(bool exact) {
    CHECK(g_enc != NULL);
    if (!g_enc) return;
    int E = g4_audio_n_embd(g_enc);
    for (int i = 0; i < N_ITEMS; i++) {
        char rel[256];
        size_t n = 0, nr = 0;
        float *pcm = load_wav(items[i], &n), *mel = NULL;
        snprintf(rel, sizeof rel, REF "%s.hf.embd.f32", items[i]);
        float *ref = read_f32(rel, &nr);
        snprintf(rel, sizeof rel, REF "%s.hf.tokens.txt", items[i]);
        int n_ph = count_placeholders(rel);
        CHECKF(pcm && ref && n_ph > 0, "%s: inputs", items[i]);
        if (!pcm || !ref) { free(pcm); free(ref); continue; }
        int T = 0;
        g4_error err = { { 0 } };
        CHECKF(g4_audio_features(pcm, n, &mel, &T, &err) == 0, "%s: %s", items[i], err.msg);
        int n_tok = g4_audio_n_tokens(g_enc, T);
        CHECKF(n_tok == n_ph, "%s: %d tokens, the HF prompt has %d", items[i], n_tok, n_ph);
        CHECKF((size_t)n_tok * E == nr, "%s: %d tokens, reference %zu", items[i], n_tok, nr / E);
        float *out = calloc((size_t)n_tok * E, sizeof(float));
        int got = mel ? g4_audio_encode(g_enc, mel, T, out, threads(), exact, &err) : -1;
        CHECKF(got == 0, "%s: encode: %s", items[i], err.msg);
        if (got == 0 && (size_t)n_tok * E == nr) {
            double d = max_diff(out, ref, nr), b = exact ? 1e-3 : fast_bound(ref, nr);
            printf("  %-22s wav -> soft tokens (%s): %zu samples, %d tokens, max |diff| %.2e (bound %.2e)\n",
                   items[i], exact ? "exact" : "fast", n, n_tok, d, b);
            CHECKF(d <= b, "%s: max diff %g, bound %g", items[i], d, b);
        }
        free(pcm); free(ref); free(out); free(mel);
    }
}

TEST(wav_to_soft_tokens) { wav_to_soft_tokens_on(true); }
TEST(wav_to_soft_tokens_fast) { wav_to_soft_tokens_on(false); }
TEST(hf_wav_to_soft_tokens) { wav_to_soft_tokens_on(true); }

/* the engine's opener (encoder/mmproj.c) finds the audio tower in both */
TEST(mmproj_open_has_audio) {
    const char *paths[2] = { REF "gemma4-mm.mmproj.gguf", REF "gemma4-mm.hf" };
    for (int i = 0; i < 2; i++) {
        g4_error err = { { 0 } };
        g4_mmproj *p = g4_mmproj_open(shared_path(paths[i]), &err);
        CHECKF(p && p->audio && p->n_embd_text == 64, "%s: %s", paths[i], err.msg);
        g4_mmproj_free(p);
    }
}

/* the public API: a WAV loaded with kind 0 is found to be audio, and its
 * soft tokens are the encoder's */
TEST(public_api_audio_item) {
    char err[600] = "";
    gemma4c_mmproj *p = gemma4c_mmproj_open(NULL, shared_path(REF "gemma4-mm.mmproj.gguf"), err, sizeof err);
    CHECKF(p && gemma4c_mmproj_supports(p, GEMMA4C_MEDIA_AUDIO), "%s", err);
    if (!p) return;
    gemma4c_media_params mp = gemma4c_media_default_params();
    mp.precision = GEMMA4C_PREC_EXACT;
    mp.n_threads = threads();
    gemma4c_media *it = gemma4c_media_load(p, shared_path(REF "media/aud-noise-1s.wav"), 0, &mp, err, sizeof err);
    CHECKF(it && gemma4c_media_kind(it) == GEMMA4C_MEDIA_AUDIO && gemma4c_media_n_tokens(it) == 25, "%s", err);
    size_t nr = 0;
    float *ref = read_f32(REF "aud-noise-1s.hf.embd.f32", &nr);
    const float *soft = it ? gemma4c_media_encode(it, err, sizeof err) : NULL;
    CHECKF(soft && ref && nr == 25 * 64 && max_diff(soft, ref, nr) <= 1e-3, "%s", err);
    free(ref);
    gemma4c_media_free(it);
    /* not audio, named */
    it = gemma4c_media_load(p, shared_path(REF "README.md"), GEMMA4C_MEDIA_AUDIO, &mp, err, sizeof err);
    CHECKF(!it && strstr(err, "README.md") && strstr(err, "not a readable audio file"), "%s", err);
    gemma4c_mmproj_free(p);
}

/* the split over threads never changes a value: 30 s encoded with 1 and 3
 * threads, both paths, bit-identical */
TEST(threads_do_not_change_results) {
    CHECK(g_enc != NULL);
    if (!g_enc) return;
    size_t n = 0;
    float *pcm = load_wav("aud-speechlike-30s", &n), *mel = NULL;
    int T = 0;
    g4_error err = { { 0 } };
    CHECK(pcm && g4_audio_features(pcm, n, &mel, &T, &err) == 0);
    int N = g4_audio_n_tokens(g_enc, T), E = g4_audio_n_embd(g_enc);
    float *a = malloc((size_t)N * E * sizeof *a), *b = malloc((size_t)N * E * sizeof *b);
    for (int exact = 0; exact < 2 && mel; exact++) {
        CHECK(g4_audio_encode(g_enc, mel, T, a, 1, exact, &err) == 0);
        CHECK(g4_audio_encode(g_enc, mel, T, b, 3, exact, &err) == 0);
        CHECKF(!memcmp(a, b, (size_t)N * E * sizeof *a), "exact=%d: 1 and 3 threads differ", exact);
    }
    free(a); free(b); free(pcm); free(mel);
}

/* synth --mmproj writes an audio tower for tiny (gemma4-mm-ref's shape, into
 * the tiny model's width 128) and e2b/e4b (the released shape): tiny loads
 * and encodes 1 s into 25 finite soft tokens */
TEST(synth_mmproj_has_audio) {
    char path[] = "/tmp/g4aud-synth-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    g4_error err = { { 0 } };
    CHECKF(g4_mmproj_synth(path, "tiny", NULL, 7, true, &err) == 0, "%s", err.msg);
    g4_gguf_file *f = g4_gguf_open(path, &err);
    g4_audio_enc *e = f ? g4_audio_enc_load(f, &err) : NULL;
    CHECKF(e && g4_audio_n_embd(e) == 128, "%s", err.msg);
    size_t n = 0;
    float *pcm = load_wav("aud-noise-1s", &n), *mel = NULL;
    int T = 0;
    if (e && pcm && g4_audio_features(pcm, n, &mel, &T, &err) == 0) {
        int N = g4_audio_n_tokens(e, T);
        float *out = malloc((size_t)N * 128 * sizeof *out);
        CHECK(N == 25 && g4_audio_encode(e, mel, T, out, threads(), false, &err) == 0);
        bool finite = true;
        for (int i = 0; i < N * 128; i++) finite &= isfinite(out[i]) != 0;
        CHECK(finite);
        free(out);
    }
    free(pcm); free(mel);
    g4_audio_enc_free(e);
    g4_gguf_close(f);
    unlink(path);
}

TEST(token_counts) {
    CHECK(g_enc != NULL);
    if (!g_enc) return;
    /* spec §6.5 examples; over 30 s: 30 s pieces of 750 each */
    CHECK(g4_audio_n_tokens(g_enc, 49) == 13);
    CHECK(g4_audio_n_tokens(g_enc, 99) == 25);
    CHECK(g4_audio_n_tokens(g_enc, 249) == 63);
    CHECK(g4_audio_n_tokens(g_enc, 999) == 250);
    CHECK(g4_audio_n_tokens(g_enc, 2999) == 750);
    CHECK(g4_audio_n_tokens(g_enc, 2999 + 99) == 750 + 25);
    CHECK(g4_audio_n_tokens(g_enc, 0) == 0);
    /* 31 s of samples: one full piece and one of 1 s */
    size_t n = 31 * 16000;
    float *pcm = calloc(n, sizeof(float)), *mel = NULL;
    int T = 0;
    g4_error err = { { 0 } };
    CHECK(pcm && g4_audio_features(pcm, n, &mel, &T, &err) == 0);
    CHECKF(T == 2999 + 99, "T = %d", T);
    CHECK(g4_audio_n_tokens(g_enc, T) == 775);
    free(pcm); free(mel);
    /* too short for one frame */
    float one[160] = { 0 };
    CHECK(g4_audio_features(one, 160, &mel, &T, &err) == -1 && strstr(err.msg, "too short"));
    CHECK(g4_audio_features(one, 0, &mel, &T, &err) == -1);
}

/* a malformed audio tower: NULL with an error naming the file and the tensor */
static void expect_load_error(const char *what, const char *needle, void (*spoil)(g4_gguf_file *)) {
    g4_error err = { { 0 } };
    g4_gguf_file *f = g4_gguf_open(shared_path(REF "gemma4-mm.mmproj.gguf"), &err);
    CHECK(f != NULL);
    if (!f) return;
    spoil(f);
    g4_audio_enc *e = g4_audio_enc_load(f, &err);
    CHECKF(!e && strstr(err.msg, "mmproj.gguf") && strstr(err.msg, needle), "%s: '%s'", what, err.msg);
    g4_audio_enc_free(e);
    g4_gguf_close(f);
}
static g4_gguf_tensor *tensor(g4_gguf_file *f, const char *name) {
    return (g4_gguf_tensor *)g4_gguf_find_tensor(f, name);
}
static void drop_q(g4_gguf_file *f) { tensor(f, "a.blk.1.attn_q.weight")->name[0] = 'x'; }
static void reshape_up(g4_gguf_file *f) {
    g4_gguf_tensor *t = tensor(f, "a.blk.0.ffn_up.weight");
    t->ne[0] = 64; t->ne[1] = 64;   /* same bytes, wrong shape */
}
static void f16_norm(g4_gguf_file *f) { tensor(f, "a.blk.0.ln2.weight")->type = 1; }
static void clip_shape(g4_gguf_file *f) { tensor(f, "a.blk.0.attn_v.input_min")->type = 1; }
static void odd_conv(g4_gguf_file *f) { tensor(f, "a.conv1d.1.weight")->ne[2] = 7; }
static void bad_heads(g4_gguf_file *f) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, "clip.audio.attention.head_count")) f->kv[i].v.u = 3;
}
static void bad_projector(g4_gguf_file *f) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, "clip.audio.projector_type")) f->kv[i].str.len = 6;   /* "gemma4" */
}

TEST(malformed_audio_tower) {
    expect_load_error("missing q", "missing tensor a.blk.1.attn_q.weight", drop_q);
    expect_load_error("reshaped ffn_up", "a.blk.0.ffn_up.weight: expected 32 x 128", reshape_up);
    expect_load_error("F16 norm", "a.blk.0.ln2.weight: expected 32 F32 values", f16_norm);
    expect_load_error("F16 clip bound", "a.blk.0.attn_v.input_min: expected one F32 value", clip_shape);
    expect_load_error("conv channels", "a.conv1d.1.weight: expected rows of 72", odd_conv);
    expect_load_error("3 heads of 32", "does not split into 3 heads", bad_heads);
    expect_load_error("projector", "this engine reads \"gemma4a\"", bad_projector);
}

TEST(no_audio_tower) {
    /* the text GGUF has no audio tower: NULL without an error */
    g4_error err = { { 0 } };
    g4_gguf_file *f = g4_gguf_open(shared_path(REF "gemma4-mm.gguf"), &err);
    CHECK(f != NULL);
    if (!f) return;
    strcpy(err.msg, "stale");
    CHECK(g4_audio_enc_load(f, &err) == NULL && err.msg[0] == 0);
    g4_gguf_close(f);
}

int main(void) {
    g4_error err = { { 0 } };
    g_mmproj = g4_gguf_open(shared_path(REF "gemma4-mm.mmproj.gguf"), &err);
    if (!g_mmproj) fprintf(stderr, "mmproj: %s\n", err.msg);
    else if (!(g_enc_gguf = g4_audio_enc_load(g_mmproj, &err))) fprintf(stderr, "audio tower: %s\n", err.msg);
    g_hf = g4_hf_open_mmproj(shared_path(REF "gemma4-mm.hf"), &err);
    if (!g_hf) fprintf(stderr, "HF folder: %s\n", err.msg);
    else if (!(g_enc_hf = g4_audio_enc_load(g_hf, &err))) fprintf(stderr, "HF audio tower: %s\n", err.msg);
    g_enc = g_enc_gguf;
    RUN(mel_matches_transformers);
    RUN(encoder_exact_on_preproc_mel);
    RUN(encoder_fast_on_preproc_mel);
    RUN(wav_to_soft_tokens);
    RUN(wav_to_soft_tokens_fast);
    g_enc = g_enc_hf;
    RUN(hf_encoder_exact_on_preproc_mel);
    RUN(hf_wav_to_soft_tokens);
    g_enc = g_enc_gguf;
    RUN(mmproj_open_has_audio);
    RUN(public_api_audio_item);
    RUN(threads_do_not_change_results);
    RUN(synth_mmproj_has_audio);
    RUN(token_counts);
    RUN(malformed_audio_tower);
    RUN(no_audio_tower);
    g4_audio_enc_free(g_enc_gguf);
    g4_audio_enc_free(g_enc_hf);
    g4_gguf_close(g_mmproj);
    g4_gguf_close(g_hf);
    return test_summary();
}
