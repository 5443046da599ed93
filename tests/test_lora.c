/* LoRA adapters against shared/testdata/gemma4-lora-ref (README there):
 *  - every adapter as GGUF LoRA and as PEFT folder, at scales 1.0 and 0.5:
 *    exact precision within 1e-3 of the float64 merged reference and its
 *    greedy ids; fast precision within the F32 bounds of llama.cpp's logits
 *    (prefill and teacher-forced decode);
 *  - the PEFT folder on the Hugging Face base folder;
 *  - scale 0 = no adapter, bit for bit;
 *  - a batch longer than the hook's 64-token chunk = the same tokens in pieces;
 *  - merged files (F32, exact path) = the adapter at run time (<= 1e-4);
 *  - adapters for another base (layers, shapes, missing weights) and broken
 *    files are refused with messages naming the tensor and shapes;
 *  - writers: read, write GGUF LoRA and PEFT, read back: the same logits bit
 *    for bit; the GGUF written from the PEFT folder is byte for byte
 *    llama.cpp's convert_lora_to_gguf.py output. */
#include "harness.h"

#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

#include "adapter/lora.h"
#include "gemma4c.h"
#include "arch/gemma4.h"
#include "model/lora.h"
#include "tensor/types.h"

#define MAXTOK 128

static const char *NAMES[] = { "gemma4-e", "gemma4-dense" };
static const char *SCALES[] = { "1.0", "0.5" };
static char TMP[256];

static char PB[8][1024];
static const char *lref(int slot, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *lref(int slot, const char *fmt, ...) {
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(PB[slot], sizeof PB[slot], "%s", shared_path(rel));
    return PB[slot];
}

static gemma4c_context *ctx_with(gemma4c_model *m, int prec, gemma4c_adapter *a, float scale, int n_batch) {
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_ctx = MAXTOK + 64;
    p.n_threads = 2;
    p.precision = prec;
    p.n_batch = n_batch;
    if (a) {
        p.adapters = &a;
        p.adapter_scales = &scale;
        p.n_adapters = 1;
    }
    char err[600];
    gemma4c_context *c = gemma4c_context_new(m, &p, err, sizeof err);
    if (!c) fprintf(stderr, "context: %s\n", err);
    return c;
}

/* All logits of the prompt (malloc'd [n][V]) with adapter a at scale. */
static float *prompt_logits(gemma4c_model *m, int prec, gemma4c_adapter *a, float scale, const int32_t *ids, int n) {
    gemma4c_context *c = ctx_with(m, prec, a, scale, 512);
    char err[600];
    if (!c || gemma4c_eval(c, ids, n, 1, err, sizeof err)) {
        if (c) fprintf(stderr, "eval: %s\n", err);
        gemma4c_context_free(c);
        return NULL;
    }
    int V = gemma4c_n_vocab(c);
    float *out = malloc((size_t)n * V * sizeof *out);
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * V, gemma4c_logits(c, i), (size_t)V * sizeof *out);
    gemma4c_context_free(c);
    return out;
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int j = 1; j < n; j++) if (v[j] > v[b]) b = j;
    return b;
}

static gemma4c_adapter *load(gemma4c_model *m, const char *path) {
    char err[600];
    gemma4c_adapter *a = gemma4c_adapter_load(m, path, err, sizeof err);
    if (!a) fprintf(stderr, "adapter %s: %s\n", path, err);
    return a;
}

/* One adapter form on one base at one scale: exact vs float64, fast vs llama.cpp. */
static void check_one(gemma4c_model *m, const char *name, const char *form, const char *sc, const char *base_kind) {
    int32_t prompt[MAXTOK], xg[16], lg[16];
    int n = th_read_ids(lref(0, "testdata/gemma4-lora-ref/%s.tokens.txt", name), prompt, MAXTOK);
    int nxg = th_read_ids(lref(0, "testdata/gemma4-lora-ref/%s.scale%s.exact.greedy.txt", name, sc), xg, 16);
    int nlg = th_read_ids(lref(0, "testdata/gemma4-lora-ref/%s.scale%s.greedy.txt", name, sc), lg, 16);
    CHECKF(n == 40 && nxg == 8 && nlg == 8, "%s: reading ids", name);
    gemma4c_adapter *a = load(m, !strcmp(form, "gguf") ? lref(1, "testdata/gemma4-lora-ref/%s.lora.gguf", name)
                                                        : lref(1, "testdata/gemma4-lora-ref/%s.peft", name));
    CHECK(a != NULL);
    if (!a || n != 40 || nxg != 8 || nlg != 8) { gemma4c_adapter_free(a); return; }
    float S = (float)atof(sc);
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    int V = info.n_vocab;
    size_t nl;
    char err[600];

    float *xl = th_read_f32(lref(0, "testdata/gemma4-lora-ref/%s.scale%s.exact.logits.f32", name, sc), &nl);
    gemma4c_context *c = ctx_with(m, GEMMA4C_PREC_EXACT, a, S, 512);
    CHECK(xl && nl == (size_t)n * V && c);
    if (xl && c && !gemma4c_eval(c, prompt, n, 1, err, sizeof err)) {
        float *got = malloc((size_t)n * V * sizeof *got);
        for (int i = 0; i < n; i++) memcpy(got + (size_t)i * V, gemma4c_logits(c, i), (size_t)V * sizeof *got);
        th_stat s = th_compare(got, xl, n, V);
        printf("  %-12s %-4s on %-4s S=%s exact: max %.2e", name, form, base_kind, sc, s.max);
        CHECKF(s.max <= 1e-3, "%s %s S=%s exact max %g", name, form, sc, s.max);
        int ok = 1;
        for (int k = 0; k < 8 && ok; k++) {
            int32_t best = argmax(gemma4c_logits_last(c), V);
            ok = best == xg[k];
            CHECKF(ok, "%s %s S=%s exact greedy step %d: %d want %d", name, form, sc, k, best, xg[k]);
            if (gemma4c_eval(c, &best, 1, 0, err, sizeof err)) break;
        }
        printf(" greedy %s", ok ? "ok" : "DIFF");
        free(got);
    } else CHECKF(0, "exact eval failed");
    gemma4c_context_free(c);
    free(xl);

    float *ll = th_read_f32(lref(0, "testdata/gemma4-lora-ref/%s.scale%s.logits.f32", name, sc), &nl);
    float *gl = th_read_f32(lref(1, "testdata/gemma4-lora-ref/%s.scale%s.greedy.logits.f32", name, sc), &nl);
    c = ctx_with(m, GEMMA4C_PREC_FAST, a, S, 512);
    if (ll && gl && c && !gemma4c_eval(c, prompt, n, 1, err, sizeof err)) {
        float *got = malloc((size_t)n * V * sizeof *got);
        for (int i = 0; i < n; i++) memcpy(got + (size_t)i * V, gemma4c_logits(c, i), (size_t)V * sizeof *got);
        th_stat s = th_compare(got, ll, n, V);
        printf(" | llama: max %.3f rms %.4f argmax %.3f", s.max, s.rms, s.agree);
        CHECKF(s.max <= 0.1 && s.rms <= 0.01 && s.agree >= 0.975, "%s %s S=%s vs llama.cpp: max %g rms %g agree %g",
               name, form, sc, s.max, s.rms, s.agree);
        float *dec = malloc((size_t)8 * V * sizeof *dec);
        memcpy(dec, gemma4c_logits_last(c), (size_t)V * sizeof *dec);
        for (int k = 1; k < 8; k++) {
            if (gemma4c_eval(c, &lg[k - 1], 1, 0, err, sizeof err)) { CHECK(0); break; }
            memcpy(dec + (size_t)k * V, gemma4c_logits_last(c), (size_t)V * sizeof *dec);
        }
        th_stat d = th_compare(dec, gl, 8, V);
        printf(" | decode: max %.3f rms %.4f\n", d.max, d.rms);
        CHECKF(d.max <= 0.1 && d.rms <= 0.01, "%s %s S=%s teacher-forced decode max %g rms %g", name, form, sc, d.max,
               d.rms);
        for (int k = 0; k < 8; k++)   /* greedy ids: the README's gaps are >= 0.14, far above the noise */
            CHECKF(argmax(dec + (size_t)k * V, V) == lg[k], "%s %s S=%s decode step %d argmax", name, form, sc, k);
        free(dec);
        free(got);
    } else CHECKF(0, "fast eval failed: %s", err);
    gemma4c_context_free(c);
    free(ll);
    free(gl);
    gemma4c_adapter_free(a);
}

TEST(golden_gguf_and_peft) {
    for (int i = 0; i < 2; i++) {
        char err[600];
        gemma4c_model *m = gemma4c_model_open(lref(2, "testdata/gemma4-ref/%s.gguf", NAMES[i]), err, sizeof err);
        CHECKF(m != NULL, "%s", err);
        if (!m) continue;
        for (int s = 0; s < 2; s++) {
            check_one(m, NAMES[i], "gguf", SCALES[s], "gguf");
            check_one(m, NAMES[i], "peft", SCALES[s], "gguf");
        }
        gemma4c_model_free(m);
    }
}

/* PEFT folder on the Hugging Face folder it was trained for. */
TEST(peft_on_hf_base) {
    for (int i = 0; i < 2; i++) {
        char err[600];
        gemma4c_model *m = gemma4c_model_open(lref(2, "testdata/gemma4-ref/%s.hf", NAMES[i]), err, sizeof err);
        CHECKF(m != NULL, "%s", err);
        if (!m) continue;
        check_one(m, NAMES[i], "peft", "1.0", "hf");
        gemma4c_model_free(m);
    }
}

/* Scale 0 is no adapter (bit for bit); the reference without adapter holds. */
TEST(scale_zero_is_base) {
    int32_t prompt[MAXTOK];
    int n = th_read_ids(lref(0, "testdata/gemma4-lora-ref/gemma4-e.tokens.txt"), prompt, MAXTOK);
    char err[600];
    gemma4c_model *m = gemma4c_model_open(lref(2, "testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    gemma4c_adapter *a = m ? load(m, lref(1, "testdata/gemma4-lora-ref/gemma4-e.lora.gguf")) : NULL;
    CHECK(m && a && n == 40);
    if (!m || !a || n != 40) { gemma4c_adapter_free(a); gemma4c_model_free(m); return; }
    float *base = prompt_logits(m, GEMMA4C_PREC_EXACT, NULL, 0, prompt, n);
    float *zero = prompt_logits(m, GEMMA4C_PREC_EXACT, a, 0.0f, prompt, n);
    float *one = prompt_logits(m, GEMMA4C_PREC_EXACT, a, 1.0f, prompt, n);
    size_t nl;
    float *xl = th_read_f32(lref(0, "testdata/gemma4-ref/gemma4-e.exact.logits.f32"), &nl);
    CHECK(base && zero && one && xl);
    if (base && zero && one && xl) {
        CHECK(!memcmp(base, zero, (size_t)n * 512 * sizeof(float)));
        CHECK(memcmp(base, one, (size_t)n * 512 * sizeof(float)) != 0);
        th_stat s = th_compare(zero, xl, n, 512);
        CHECKF(s.max <= 1e-3, "scale 0 vs base exact reference: %g", s.max);
    }
    free(base); free(zero); free(one); free(xl);
    gemma4c_adapter_free(a);
    gemma4c_model_free(m);
}

/* 80 tokens in one batch (two chunks of the hook) = the same in pieces of 7;
 * set_adapters on a live context switches the adapter on and off. */
TEST(batch_chunks_and_switching) {
    int32_t prompt[MAXTOK];
    int n = th_read_ids(lref(0, "testdata/gemma4-lora-ref/gemma4-dense.tokens.txt"), prompt, MAXTOK);
    char err[600];
    gemma4c_model *m = gemma4c_model_open(lref(2, "testdata/gemma4-ref/gemma4-dense.gguf"), err, sizeof err);
    gemma4c_adapter *a = m ? load(m, lref(1, "testdata/gemma4-lora-ref/gemma4-dense.peft")) : NULL;
    CHECK(m && a && n == 40);
    if (!m || !a || n != 40) { gemma4c_adapter_free(a); gemma4c_model_free(m); return; }
    memcpy(prompt + 40, prompt + 1, 39 * sizeof *prompt);
    int N = 79, V = 512;
    float *one = prompt_logits(m, GEMMA4C_PREC_EXACT, a, 1.0f, prompt, N);
    gemma4c_context *c = ctx_with(m, GEMMA4C_PREC_EXACT, a, 1.0f, 512);
    float *pieces = malloc((size_t)N * V * sizeof *pieces);
    int ok = one && c && pieces;
    for (int i = 0; ok && i < N; i += 7) {
        int k = N - i < 7 ? N - i : 7;
        ok = !gemma4c_eval(c, prompt + i, k, 1, err, sizeof err);
        for (int j = 0; ok && j < k; j++) memcpy(pieces + (size_t)(i + j) * V, gemma4c_logits(c, j), (size_t)V * 4);
    }
    CHECK(ok);
    if (ok) {
        th_stat s = th_compare(one, pieces, N, V);
        printf("  79 tokens in one batch vs pieces of 7 (exact): max %.2e\n", s.max);
        CHECKF(s.max <= 1e-4, "batch vs pieces max %g", s.max);
        /* off again: the base model's logits */
        gemma4c_reset(c);
        CHECK(!gemma4c_context_set_adapters(c, NULL, NULL, 0, err, sizeof err));
        float *base = prompt_logits(m, GEMMA4C_PREC_EXACT, NULL, 0, prompt, 40);
        CHECK(base && !gemma4c_eval(c, prompt, 40, 1, err, sizeof err));
        if (base) CHECK(!memcmp(gemma4c_logits(c, 39), base + (size_t)39 * V, (size_t)V * 4));
        free(base);
        /* a prefix snapshot made without the adapter is dropped when it changes */
        gemma4c_context_params pp = gemma4c_context_default_params();
        pp.n_ctx = MAXTOK;
        pp.n_threads = 2;
        pp.precision = GEMMA4C_PREC_EXACT;
        pp.n_prefix = 2;
        gemma4c_context *pc = gemma4c_context_new(m, &pp, err, sizeof err);
        gemma4c_prefix_stats ps = { 0 };
        CHECK(pc && !gemma4c_eval(pc, prompt, 40, 0, err, sizeof err) && !gemma4c_prefix_store(pc, 0, err, sizeof err));
        if (pc) gemma4c_prefix_stats_get(pc, &ps);
        CHECK(ps.entries == 1);
        CHECK(pc && !gemma4c_context_set_adapters(pc, &a, NULL, 1, err, sizeof err));
        if (pc) gemma4c_prefix_stats_get(pc, &ps);
        CHECK(ps.entries == 0);
        CHECK(pc && gemma4c_prefix_load(pc, 0, prompt, 40, err, sizeof err) == 0);
        CHECK(pc && !gemma4c_eval(pc, prompt, 40, 0, err, sizeof err));
        /* (a paged KV pool: attention sums in another order, so not bit for bit) */
        for (int j = 0; pc && j < V; j++) CHECK_NEAR(gemma4c_logits_last(pc)[j], one[(size_t)39 * V + j], 1e-4);
        gemma4c_context_free(pc);
        /* and on, at scale 0.5 */
        float h = 0.5f;
        gemma4c_reset(c);
        CHECK(!gemma4c_context_set_adapters(c, &a, &h, 1, err, sizeof err));
        float *half = prompt_logits(m, GEMMA4C_PREC_EXACT, a, 0.5f, prompt, 40);
        CHECK(half && !gemma4c_eval(c, prompt, 40, 1, err, sizeof err));
        if (half) CHECK(!memcmp(gemma4c_logits(c, 39), half + (size_t)39 * V, (size_t)V * 4));
        free(half);
    }
    free(one);
    free(pieces);
    gemma4c_context_free(c);
    gemma4c_adapter_free(a);
    gemma4c_model_free(m);
}

/* gemma4c merge: the merged F32 file's exact logits = the adapter at run time. */
TEST(merge_equals_runtime) {
    for (int i = 0; i < 2; i++) {
        int32_t prompt[MAXTOK];
        int n = th_read_ids(lref(0, "testdata/gemma4-lora-ref/%s.tokens.txt", NAMES[i]), prompt, MAXTOK);
        char err[600], out[512];
        snprintf(out, sizeof out, "%s/%s.merged.gguf", TMP, NAMES[i]);
        const char *base = lref(2, "testdata/gemma4-ref/%s.gguf", NAMES[i]);
        const char *ad = lref(3, "testdata/gemma4-lora-ref/%s.lora.gguf", NAMES[i]);
        float S = 0.5f;
        gemma4c_write_params wp = { .n_threads = 1, .force = 1 };
        int rc = gemma4c_merge(base, &ad, &S, 1, out, NULL, &wp, err, sizeof err);
        CHECKF(rc == 0, "merge: %s", err);
        gemma4c_model *m = gemma4c_model_open(base, err, sizeof err);
        gemma4c_model *mm = rc ? NULL : gemma4c_model_open(out, err, sizeof err);
        gemma4c_adapter *a = m ? load(m, ad) : NULL;
        CHECK(m && mm && a && n == 40);
        if (m && mm && a && n == 40) {
            float *rt = prompt_logits(m, GEMMA4C_PREC_EXACT, a, S, prompt, n);
            float *mg = prompt_logits(mm, GEMMA4C_PREC_EXACT, NULL, 0, prompt, n);
            size_t nl;
            float *xl = th_read_f32(lref(0, "testdata/gemma4-lora-ref/%s.scale0.5.exact.logits.f32", NAMES[i]), &nl);
            CHECK(rt && mg && xl);
            if (rt && mg && xl) {
                th_stat s = th_compare(mg, rt, n, 512), x = th_compare(mg, xl, n, 512);
                printf("  %-12s merged F32 vs run-time adapter (exact): max %.2e; vs float64 reference: max %.2e\n",
                       NAMES[i], s.max, x.max);
                CHECKF(s.max <= 1e-4, "merged vs runtime max %g", s.max);
                CHECKF(x.max <= 1e-3, "merged vs reference max %g", x.max);
            }
            free(rt); free(mg); free(xl);
        }
        gemma4c_adapter_free(a);
        gemma4c_model_free(mm);
        gemma4c_model_free(m);
        unlink(out);
    }
    /* to a quantized type: llama-quantize's rules, and the model still runs */
    char err[600], out[512];
    snprintf(out, sizeof out, "%s/q8.gguf", TMP);
    const char *ad = lref(3, "testdata/gemma4-lora-ref/gemma4-e.peft");
    gemma4c_write_params wp = { .n_threads = 1, .force = 1 };
    CHECKF(!gemma4c_merge(lref(2, "testdata/gemma4-ref/gemma4-e.gguf"), &ad, NULL, 1, out, "Q8_0", &wp, err, sizeof err),
           "merge Q8_0: %s", err);
    gemma4c_model *m = gemma4c_model_open(out, err, sizeof err);
    CHECKF(m != NULL, "%s", err);
    gemma4c_model_free(m);
    unlink(out);
}

static void expect_refused(gemma4c_model *m, const char *path, const char *want1, const char *want2) {
    char err[600] = "";
    gemma4c_adapter *a = gemma4c_adapter_load(m, path, err, sizeof err);
    CHECKF(a == NULL, "%s was accepted", path);
    CHECKF(strstr(err, want1) && (!want2 || strstr(err, want2)), "message '%s' lacks '%s' / '%s'", err, want1,
           want2 ? want2 : "");
    printf("  refused: %s\n", err);
    gemma4c_adapter_free(a);
}

/* Adapters for another base, edited copies and broken files. */
TEST(mismatch_refused) {
    char err[600], p[512];
    gemma4c_model *e = gemma4c_model_open(lref(2, "testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    CHECK(e != NULL);
    if (!e) return;
    /* the dense adapter on the E model: 12 layers vs 10 (or a shape first) */
    expect_refused(e, lref(1, "testdata/gemma4-lora-ref/gemma4-dense.lora.gguf"), "another base model", NULL);
    expect_refused(e, lref(1, "testdata/gemma4-lora-ref/gemma4-dense.peft"), "another base model", NULL);

    g4_error ge = { { 0 } };
    g4_lora *l = g4_lora_read(lref(1, "testdata/gemma4-lora-ref/gemma4-e.lora.gguf"), &ge);
    CHECKF(l != NULL, "%s", ge.msg);
    if (!l) { gemma4c_model_free(e); return; }
    /* a shape edited: pair 0's input width halved (A keeps its first rows) */
    g4_lora_pair keep = l->pairs[0];
    l->pairs[0].n_in /= 2;
    snprintf(p, sizeof p, "%s/shape.lora.gguf", TMP);
    CHECKF(!g4_lora_write_gguf(l, p, "edited", true, &ge), "%s", ge.msg);
    expect_refused(e, p, "adapts a [64, 64] weight", "the model's is [64, 128]");
    l->pairs[0] = keep;
    /* a layer past the model's */
    l->pairs[0].layer = 10;
    snprintf(p, sizeof p, "%s/layer.lora.gguf", TMP);
    CHECKF(!g4_lora_write_gguf(l, p, "edited", true, &ge), "%s", ge.msg);
    expect_refused(e, p, "layer 10, but the model has 10 layers", NULL);
    /* the same as a PEFT folder */
    snprintf(p, sizeof p, "%s/layer.peft", TMP);
    CHECKF(!g4_lora_write_peft(l, p, true, &ge), "%s", ge.msg);
    expect_refused(e, p, "layer 10", NULL);
    l->pairs[0] = keep;
    g4_lora_free(l);
    gemma4c_model_free(e);

    /* files that are not what they claim: a base model as adapter, missing
     * halves, a config whose r disagrees with the tensors */
    expect_refused(NULL, lref(1, "testdata/gemma4-ref/gemma4-e.gguf"), "general.type", NULL);
    size_t len;
    char *cfg = th_read_file(lref(1, "testdata/gemma4-lora-ref/gemma4-e.peft/adapter_config.json"), &len);
    char *st = th_read_file(lref(1, "testdata/gemma4-lora-ref/gemma4-e.peft/adapter_model.safetensors"), &len);
    CHECK(cfg && st);
    if (cfg && st) {
        char *r = strstr(cfg, "\"r\": 4");
        CHECK(r != NULL);
        if (r) r[5] = '8';
        l = g4_lora_parse_peft(cfg, strlen(cfg), st, len, "edited", &ge);
        CHECK(l == NULL && strstr(ge.msg, "the config's r for it is 8"));
        printf("  refused: %s\n", ge.msg);
        g4_lora_free(l);
        if (r) r[5] = '4';
        char *rs = strstr(cfg, "\"use_dora\": false");
        if (rs) memcpy(rs + 12, "true ", 5);
        l = g4_lora_parse_peft(cfg, strlen(cfg), st, len, "edited", &ge);
        CHECK(l == NULL && strstr(ge.msg, "DoRA"));
        g4_lora_free(l);
    }
    free(cfg);
    free(st);
}

/* rsLoRA multiplies by alpha / sqrt(r): an rsLoRA config with alpha' =
 * alpha * sqrt(r) / r ... is the plain adapter at alpha: same logits. */
TEST(rslora_rule) {
    size_t len;
    char *cfg = th_read_file(lref(1, "testdata/gemma4-lora-ref/gemma4-e.peft/adapter_config.json"), &len);
    char *st = th_read_file(lref(1, "testdata/gemma4-lora-ref/gemma4-e.peft/adapter_model.safetensors"), &len);
    g4_error ge = { { 0 } };
    CHECK(cfg && st);
    if (!cfg || !st) { free(cfg); free(st); return; }
    /* r 4, alpha 8: plain m = 2; rsLoRA with alpha 4: 4 / sqrt(4) = 2 */
    char *a = strstr(cfg, "\"lora_alpha\": 8"), *u = strstr(cfg, "\"use_rslora\": false");
    CHECK(a && u);
    if (a && u) {
        a[14] = '4';
        memcpy(u + 14, "true ", 5);
        g4_lora *l = g4_lora_parse_peft(cfg, strlen(cfg), st, len, "rslora", &ge);
        CHECKF(l != NULL, "%s", ge.msg);
        if (l) {
            CHECK(l->rslora);
            CHECK_NEAR(g4_lora_pair_mult(l, &l->pairs[0]), 2.0, 1e-6);
            /* written as GGUF: alpha * sqrt(r) / r keeps the product */
            char p[512];
            snprintf(p, sizeof p, "%s/rs.lora.gguf", TMP);
            CHECKF(!g4_lora_write_gguf(l, p, NULL, true, &ge), "%s", ge.msg);
            g4_lora *g = g4_lora_read(p, &ge);
            CHECK(g && fabs(g->alpha - 8.0) < 1e-5);
            g4_lora_free(g);
        }
        g4_lora_free(l);
    }
    free(cfg);
    free(st);
}

/* Read each reference adapter in both forms, write both forms, read back:
 * logits bit for bit; the GGUF from the PEFT folder is llama.cpp's file. */
TEST(writers_roundtrip) {
    for (int i = 0; i < 2; i++) {
        int32_t prompt[MAXTOK];
        int n = th_read_ids(lref(0, "testdata/gemma4-lora-ref/%s.tokens.txt", NAMES[i]), prompt, MAXTOK);
        char err[600];
        gemma4c_model *m = gemma4c_model_open(lref(2, "testdata/gemma4-ref/%s.gguf", NAMES[i]), err, sizeof err);
        CHECK(m && n == 40);
        if (!m) continue;
        const char *forms[2] = { "gguf", "peft" };
        for (int f = 0; f < 2; f++) {
            const char *src = f ? lref(1, "testdata/gemma4-lora-ref/%s.peft", NAMES[i])
                                : lref(1, "testdata/gemma4-lora-ref/%s.lora.gguf", NAMES[i]);
            gemma4c_adapter *a = load(m, src);
            float *want = a ? prompt_logits(m, GEMMA4C_PREC_EXACT, a, 1.0f, prompt, n) : NULL;
            CHECK(want != NULL);
            for (int g = 0; want && g < 2; g++) {
                char out[512];
                snprintf(out, sizeof out, "%s/rt.%s.%s.%s", TMP, NAMES[i], forms[f], forms[g]);
                CHECKF(!gemma4c_adapter_write(a, out, forms[g], 1, err, sizeof err), "write %s: %s", out, err);
                gemma4c_adapter *b = load(m, out);
                float *got = b ? prompt_logits(m, GEMMA4C_PREC_EXACT, b, 1.0f, prompt, n) : NULL;
                CHECKF(got && !memcmp(got, want, (size_t)n * 512 * sizeof(float)), "%s %s -> %s logits differ",
                       NAMES[i], forms[f], forms[g]);
                free(got);
                gemma4c_adapter_free(b);
            }
            free(want);
            gemma4c_adapter_free(a);
        }
        /* PEFT -> GGUF with the converter's general.name: the same bytes */
        g4_error ge = { { 0 } };
        g4_lora *l = g4_lora_read(lref(1, "testdata/gemma4-lora-ref/%s.peft", NAMES[i]), &ge);
        char out[512];
        snprintf(out, sizeof out, "%s/conv.lora.gguf", TMP);
        CHECK(l && !g4_lora_write_gguf(l, out, i ? "Gemma4 Dense.Peft" : "Gemma4 E.Peft", true, &ge));
        size_t la = 0, lb = 0;
        char *x = th_read_file(out, &la), *y = th_read_file(lref(1, "testdata/gemma4-lora-ref/%s.lora.gguf", NAMES[i]), &lb);
        CHECKF(x && y && la == lb && !memcmp(x, y, la), "%s: written GGUF LoRA differs from llama.cpp's (%zu vs %zu bytes)",
               NAMES[i], la, lb);
        free(x);
        free(y);
        g4_lora_free(l);
        gemma4c_model_free(m);
    }
}

/* Two adapters add up (a at 0.5 twice = a at 1.0); g4_lora_create makes
 * the pairs PEFT makes for the seven projections (60 / 82), and filled with
 * the reference values it writes llama.cpp's file byte for byte. */
TEST(two_adapters_and_create) {
    int32_t prompt[MAXTOK];
    int n = th_read_ids(lref(0, "testdata/gemma4-lora-ref/gemma4-e.tokens.txt"), prompt, MAXTOK);
    char err[600];
    gemma4c_model *m = gemma4c_model_open(lref(2, "testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    gemma4c_adapter *a = m ? load(m, lref(1, "testdata/gemma4-lora-ref/gemma4-e.peft")) : NULL;
    CHECK(m && a && n == 40);
    if (m && a && n == 40) {
        /* the memory plan counts the pairs (53760 parameters, README) and the hook's scratch */
        gemma4c_context_params pp = gemma4c_context_default_params();
        pp.n_ctx = 64;
        pp.n_batch = 64;
        gemma4c_memory_plan p0, p1;
        CHECK(!gemma4c_memory_plan_params(m, &pp, &p0));
        pp.adapters = &a;
        pp.n_adapters = 1;
        CHECK(!gemma4c_memory_plan_params(m, &pp, &p1));
        CHECKF(p1.scratch_bytes - p0.scratch_bytes == 53760 * 4 + 64 * (4 + 256) * 4, "plan grew by %llu",
               (unsigned long long)(p1.scratch_bytes - p0.scratch_bytes));
        float *one = prompt_logits(m, GEMMA4C_PREC_EXACT, a, 1.0f, prompt, n);
        gemma4c_context_params p = gemma4c_context_default_params();
        p.n_ctx = MAXTOK;
        p.n_threads = 2;
        p.precision = GEMMA4C_PREC_EXACT;
        gemma4c_adapter *two[2] = { a, a };
        float sc[2] = { 0.5f, 0.5f };
        p.adapters = two;
        p.adapter_scales = sc;
        p.n_adapters = 2;
        gemma4c_context *c = gemma4c_context_new(m, &p, err, sizeof err);
        CHECK(one && c && !gemma4c_eval(c, prompt, n, 1, err, sizeof err));
        if (one && c) {
            double mx = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < 512; j++) {
                    double d = fabs((double)gemma4c_logits(c, i)[j] - one[(size_t)i * 512 + j]);
                    if (d > mx) mx = d;
                }
            printf("  a at 0.5 + a at 0.5 vs a at 1.0 (exact): max %.2e\n", mx);
            CHECK(mx <= 1e-4);
        }
        gemma4c_context_free(c);
        free(one);
    }
    gemma4c_adapter_free(a);
    gemma4c_model_free(m);

    uint64_t seven = 1ull << G4_T_ATTN_Q | 1ull << G4_T_ATTN_K | 1ull << G4_T_ATTN_V | 1ull << G4_T_ATTN_OUT |
                     1ull << G4_T_FFN_GATE | 1ull << G4_T_FFN_UP | 1ull << G4_T_FFN_DOWN;
    for (int i = 0; i < 2; i++) {
        g4_error ge = { { 0 } };
        g4_gguf_file *f = g4_gguf_open(lref(2, "testdata/gemma4-ref/%s.gguf", NAMES[i]), &ge);
        g4_model *gm = f ? g4_model_load(f, &ge) : NULL;
        g4_lora *ref = g4_lora_read(lref(1, "testdata/gemma4-lora-ref/%s.peft", NAMES[i]), &ge);
        g4_lora *nl = gm && ref ? g4_lora_create(gm, seven, ref->rank, ref->alpha, &ge) : NULL;
        CHECKF(nl != NULL, "%s", ge.msg);
        if (nl) {
            CHECKF(nl->n_pairs == (i ? 82 : 60), "%s: %d pairs", NAMES[i], nl->n_pairs);
            int found = 0;
            for (int k = 0; k < nl->n_pairs; k++)
                for (int j = 0; j < ref->n_pairs; j++) {
                    g4_lora_pair *d = &nl->pairs[k], *r = &ref->pairs[j];
                    if (d->tid != r->tid || d->layer != r->layer) continue;
                    found++;
                    CHECK(d->r == r->r && d->n_in == r->n_in && d->n_out == r->n_out);
                    if (d->r != r->r || d->n_in != r->n_in || d->n_out != r->n_out) continue;
                    memcpy(d->a, r->a, (size_t)r->r * r->n_in * 4);
                    memcpy(d->b, r->b, (size_t)r->n_out * r->r * 4);
                }
            CHECK(found == nl->n_pairs);
            char out[512];
            snprintf(out, sizeof out, "%s/created.lora.gguf", TMP);
            CHECK(!g4_lora_write_gguf(nl, out, i ? "Gemma4 Dense.Peft" : "Gemma4 E.Peft", true, &ge));
            size_t la = 0, lb = 0;
            char *x = th_read_file(out, &la), *y = th_read_file(lref(1, "testdata/gemma4-lora-ref/%s.lora.gguf", NAMES[i]), &lb);
            CHECKF(x && y && la == lb && !memcmp(x, y, la), "%s: created adapter's file differs", NAMES[i]);
            free(x);
            free(y);
        }
        g4_lora_free(nl);
        g4_lora_free(ref);
        g4_model_free(gm);
    }
}

/* GGUF LoRA in F16 / BF16 (the converter's --outtype): read back as the
 * rounded values; logits stay within the rounding's effect. */
TEST(half_precision_gguf) {
    g4_error ge = { { 0 } };
    g4_lora *l = g4_lora_read(lref(1, "testdata/gemma4-lora-ref/gemma4-e.lora.gguf"), &ge);
    CHECKF(l != NULL, "%s", ge.msg);
    if (!l) return;
    int types[2] = { G4_F16, G4_BF16 };
    for (int k = 0; k < 2; k++) {
        char out[512];
        snprintf(out, sizeof out, "%s/half.lora.gguf", TMP);
        CHECKF(!g4_lora_write_gguf_as(l, out, NULL, types[k], true, &ge), "%s", ge.msg);
        g4_lora *h = g4_lora_read(out, &ge);
        CHECKF(h && h->n_pairs == l->n_pairs, "%s", ge.msg);
        double mx = 0;
        for (int i = 0; h && i < l->n_pairs; i++) {
            const g4_lora_pair *p = &l->pairs[i], *q = &h->pairs[i];
            CHECK(q->r == p->r && q->n_in == p->n_in && q->n_out == p->n_out);
            for (size_t j = 0; j < (size_t)p->r * p->n_in; j++) {
                float want = types[k] == G4_F16 ? g4_fp16_to_fp32(g4_fp32_to_fp16(p->a[j]))
                                                : g4_bf16_to_fp32(g4_fp32_to_bf16(p->a[j]));
                if (q->a[j] != want) mx = 1;
            }
        }
        CHECKF(mx == 0, "%s values are not the rounded F32 ones", k ? "BF16" : "F16");
        g4_lora_free(h);
    }
    CHECK(g4_lora_write_gguf_as(l, TMP, NULL, G4_Q8_0, true, &ge) < 0);
    g4_lora_free(l);
}

/* PEFT's alpha_pattern / rank_pattern: read per module, written back by
 * both writers (PEFT: pattern entries; GGUF: B rescaled), same logits. */
TEST(rank_and_alpha_patterns) {
    size_t len, slen;
    char *cfg = th_read_file(lref(1, "testdata/gemma4-lora-ref/gemma4-e.peft/adapter_config.json"), &len);
    char *st = th_read_file(lref(1, "testdata/gemma4-lora-ref/gemma4-e.peft/adapter_model.safetensors"), &slen);
    char err[600];
    g4_error ge = { { 0 } };
    gemma4c_model *m = gemma4c_model_open(lref(2, "testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    int32_t prompt[MAXTOK];
    int n = th_read_ids(lref(0, "testdata/gemma4-lora-ref/gemma4-e.tokens.txt"), prompt, MAXTOK);
    CHECK(cfg && st && m && n == 40);
    char *ap = cfg ? strstr(cfg, "\"alpha_pattern\": {}") : NULL;
    CHECK(ap != NULL);
    if (!cfg || !st || !m || n != 40 || !ap) goto out;
    /* alpha 16 for every q_proj: multiplier 4 there, 2 elsewhere */
    char *cfg2 = malloc(len + 64);
    snprintf(cfg2, len + 64, "%.*s\"alpha_pattern\": {\"q_proj\": 16}%s", (int)(ap - cfg), cfg,
             ap + strlen("\"alpha_pattern\": {}"));
    g4_lora *pa = g4_lora_parse_peft(cfg2, strlen(cfg2), st, slen, "alpha_pattern", &ge);
    free(cfg2);
    g4_lora *base = g4_lora_read(lref(1, "testdata/gemma4-lora-ref/gemma4-e.peft"), &ge);
    CHECKF(pa && base, "%s", ge.msg);
    if (pa && base) {
        for (int i = 0; i < pa->n_pairs; i++) {
            g4_lora_pair *p = &pa->pairs[i];
            CHECK_NEAR(g4_lora_pair_mult(pa, p), p->tid == G4_T_ATTN_Q ? 4.0 : 2.0, 0);
            /* the same product the plain way: B doubled on q */
            if (p->tid == G4_T_ATTN_Q)
                for (size_t j = 0; j < (size_t)p->n_out * p->r; j++) base->pairs[i].b[j] *= 2;
        }
        char a1[512], a2[512], a3[512];
        snprintf(a1, sizeof a1, "%s/pat.peft", TMP);
        snprintf(a2, sizeof a2, "%s/pat.lora.gguf", TMP);
        snprintf(a3, sizeof a3, "%s/plain.lora.gguf", TMP);
        CHECK(!g4_lora_write_peft(pa, a1, true, &ge) && !g4_lora_write_gguf(pa, a2, "x", true, &ge) &&
              !g4_lora_write_gguf(base, a3, "x", true, &ge));
        size_t l2 = 0, l3 = 0;
        char *x = th_read_file(a2, &l2), *y = th_read_file(a3, &l3);
        CHECKF(x && y && l2 == l3 && !memcmp(x, y, l2), "GGUF of the alpha_pattern adapter != B doubled");
        free(x);
        free(y);
        gemma4c_adapter *g1 = load(m, a1), *g3 = load(m, a3);
        float *y1 = g1 ? prompt_logits(m, GEMMA4C_PREC_EXACT, g1, 1.0f, prompt, n) : NULL;
        float *y3 = g3 ? prompt_logits(m, GEMMA4C_PREC_EXACT, g3, 1.0f, prompt, n) : NULL;
        CHECKF(y1 && y3 && !memcmp(y1, y3, (size_t)n * 512 * 4), "alpha_pattern PEFT vs doubled-B GGUF logits differ");
        free(y1);
        free(y3);
        gemma4c_adapter_free(g1);
        gemma4c_adapter_free(g3);
    }
    g4_lora_free(pa);
    /* rank 2 on q_proj (A's first rows, B's first columns): rank_pattern */
    if (base) {
        for (int i = 0; i < base->n_pairs; i++) {
            g4_lora_pair *p = &base->pairs[i];
            if (p->tid != G4_T_ATTN_Q) continue;
            for (int64_t o = 0; o < p->n_out; o++)
                for (int k = 0; k < 2; k++) p->b[o * 2 + k] = p->b[o * p->r + k];
            p->r = 2;
        }
        char a1[512], a2[512];
        snprintf(a1, sizeof a1, "%s/rank.peft", TMP);
        snprintf(a2, sizeof a2, "%s/rank.lora.gguf", TMP);
        CHECK(!g4_lora_write_peft(base, a1, true, &ge) && !g4_lora_write_gguf(base, a2, "x", true, &ge));
        char p1[600];
        snprintf(p1, sizeof p1, "%s/adapter_config.json", a1);
        char *c = th_read_file(p1, NULL);
        CHECKF(c && strstr(c, "\"model\\\\.language_model\\\\.layers\\\\.0\\\\.self_attn\\\\.q_proj\": 2"),
               "rank_pattern entry missing: %s", c ? c : "");
        free(c);
        g4_lora *back = g4_lora_read(a1, &ge);
        CHECKF(back != NULL, "%s", ge.msg);
        for (int i = 0; back && i < back->n_pairs; i++) {
            const g4_lora_pair *p = &back->pairs[i];
            CHECK(p->r == (p->tid == G4_T_ATTN_Q ? 2 : 4));
            CHECK_NEAR(g4_lora_pair_mult(back, p), p->tid == G4_T_ATTN_Q ? 4.0 : 2.0, 0);
        }
        g4_lora_free(back);
        gemma4c_adapter *g1 = load(m, a1), *g2 = load(m, a2);
        float *y1 = g1 ? prompt_logits(m, GEMMA4C_PREC_EXACT, g1, 1.0f, prompt, n) : NULL;
        float *y2 = g2 ? prompt_logits(m, GEMMA4C_PREC_EXACT, g2, 1.0f, prompt, n) : NULL;
        CHECKF(y1 && y2 && !memcmp(y1, y2, (size_t)n * 512 * 4), "rank_pattern PEFT vs GGUF logits differ");
        free(y1);
        free(y2);
        gemma4c_adapter_free(g1);
        gemma4c_adapter_free(g2);
    }
    g4_lora_free(base);
out:
    gemma4c_model_free(m);
    free(cfg);
    free(st);
}

/* Targets beyond the seven projections, on the other model kinds: the MoE
 * router (gemma4-moe) and the per-layer-embedding matrices, global one
 * included (gemma4-e). Random pairs from g4_lora_create, written as PEFT
 * (Hugging Face names of those modules) and read back: at run time (exact)
 * = merged into an F32 file, and they change the logits. */
static void check_created(const char *name, uint64_t targets, int expect_pairs) {
    g4_error ge = { { 0 } };
    char err[600], ad[512], out[512];
    int32_t prompt[MAXTOK];
    int n = th_read_ids(lref(0, "testdata/gemma4-ref/%s.tokens.txt", name), prompt, MAXTOK);
    const char *base = lref(2, "testdata/gemma4-ref/%s.gguf", name);
    g4_gguf_file *f = g4_gguf_open(base, &ge);
    g4_model *gm = f ? g4_model_load(f, &ge) : NULL;
    g4_lora *l = gm ? g4_lora_create(gm, targets, 2, 4.0f, &ge) : NULL;
    CHECKF(l && n > 0, "%s: %s", name, ge.msg);
    if (!l || n <= 0) { g4_model_free(gm); return; }
    CHECKF(l->n_pairs == expect_pairs, "%s: %d pairs, want %d", name, l->n_pairs, expect_pairs);
    uint64_t x = 88172645463325252ull;   /* xorshift: A ~ U(-1,1)/sqrt(in), B ~ U(-.02,.02) */
    for (int i = 0; i < l->n_pairs; i++) {
        g4_lora_pair *p = &l->pairs[i];
        for (size_t j = 0; j < (size_t)p->r * p->n_in; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            p->a[j] = (float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1) / sqrtf((float)p->n_in);
        }
        for (size_t j = 0; j < (size_t)p->n_out * p->r; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            p->b[j] = (float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1) * 0.02f;
        }
    }
    snprintf(ad, sizeof ad, "%s/created-%s.peft", TMP, name);
    snprintf(out, sizeof out, "%s/created-%s.merged.gguf", TMP, name);
    CHECKF(!g4_lora_write_peft(l, ad, true, &ge), "%s", ge.msg);
    g4_lora_free(l);
    g4_model_free(gm);
    gemma4c_write_params wp = { .n_threads = 1, .force = 1 };
    const char *adp = ad;
    CHECKF(!gemma4c_merge(base, &adp, NULL, 1, out, NULL, &wp, err, sizeof err), "merge: %s", err);
    gemma4c_model *m = gemma4c_model_open(base, err, sizeof err), *mm = gemma4c_model_open(out, err, sizeof err);
    gemma4c_adapter *a = m ? load(m, ad) : NULL;
    float *rt = a ? prompt_logits(m, GEMMA4C_PREC_EXACT, a, 1.0f, prompt, n) : NULL;
    float *mg = mm ? prompt_logits(mm, GEMMA4C_PREC_EXACT, NULL, 0, prompt, n) : NULL;
    float *b0 = m ? prompt_logits(m, GEMMA4C_PREC_EXACT, NULL, 0, prompt, n) : NULL;
    CHECK(rt && mg && b0);
    if (rt && mg && b0) {
        th_stat s = th_compare(rt, mg, n, 512), d = th_compare(rt, b0, n, 512);
        printf("  %-12s %d created pairs: run time vs merged (exact) max %.2e; change vs no adapter max %.3f\n", name,
               expect_pairs, s.max, d.max);
        CHECKF(s.max <= 1e-4, "%s: run time vs merged %g", name, s.max);
        CHECKF(d.max > 0.01, "%s: the adapter changes nothing (%g)", name, d.max);
    }
    free(rt); free(mg); free(b0);
    gemma4c_adapter_free(a);
    gemma4c_model_free(m);
    gemma4c_model_free(mm);
    unlink(out);
}

TEST(router_and_ple_targets) {
    /* gemma4-moe: router of every layer (+ q for a dense reference point) */
    check_created("gemma4-moe", 1ull << G4_T_ROUTER | 1ull << G4_T_ATTN_Q, 12);   /* 6 layers */
    /* gemma4-e: per-layer input gate and projection (10 layers each) + the global model projection */
    check_created("gemma4-e", 1ull << G4_T_PLE_GATE | 1ull << G4_T_PLE_PROJ | 1ull << G4_T_PLE_MODEL_PROJ, 21);
}

int main(void) {
    snprintf(TMP, sizeof TMP, "/tmp/g4lora-XXXXXX");
    if (!mkdtemp(TMP)) { perror("mkdtemp"); return 1; }
    RUN(golden_gguf_and_peft);
    RUN(peft_on_hf_base);
    RUN(scale_zero_is_base);
    RUN(batch_chunks_and_switching);
    RUN(merge_equals_runtime);
    RUN(mismatch_refused);
    RUN(rslora_rule);
    RUN(writers_roundtrip);
    RUN(two_adapters_and_create);
    RUN(half_precision_gguf);
    RUN(rank_and_alpha_patterns);
    RUN(router_and_ple_targets);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", TMP);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", TMP);
    return test_summary();
}
