/* Golden logits: every model and weight variant in shared/testdata/gemma4-ref
 * against the two independent references (README there: formats, bounds).
 *
 *  - exact precision vs *.exact.logits.f32: max abs <= 1e-3, and greedy ids
 *    equal *.exact.greedy.txt;
 *  - fast precision (llama.cpp-style activation rounding) vs *.logits.f32 with
 *    the README's per-type bounds, prefill and teacher-forced decode
 *    (*.greedy.logits.f32), argmax equal wherever the top-2 gap is clear;
 *  - batch and one-token-at-a-time paths agree to ~1e-4 on F32 models;
 *  - 1 and 2 threads give identical logits.
 * All with an f32 KV cache, as the references were made (test_kv checks the
 * f16 and q8_0 caches). */
#include "harness.h"

#include <stdint.h>

#include "gemma4c.h"

#define MAXTOK 128

typedef struct bounds { double max, rms, argmax; } bounds;

static const char *VARIANTS[] = {
    "gemma4-e", "gemma4-e.Q8_0", "gemma4-e.Q4_0", "gemma4-e.BF16", "gemma4-e.F16",
    "gemma4-dense", "gemma4-moe",
    "gemma4-kq.Q4_K_M", "gemma4-kq.Q6_K", "gemma4-kq.Q4_0", "gemma4-kq.Q4_1", "gemma4-kq.Q5_0",
    "gemma4-kq.Q5_1", "gemma4-kq.Q8_0", "gemma4-kq.Q2_K", "gemma4-kq.Q3_K_M", "gemma4-kq.Q5_K_M",
    "gemma4-kq.IQ4_NL", "gemma4-kq.IQ4_XS",
};

static bounds llama_bounds(const char *v) {
    const char *dot = strchr(v, '.');
    if (!dot) return (bounds){ 0.1, 0.01, 0.975 };           /* F32 */
    if (!strcmp(dot, ".F16")) return (bounds){ 0.1, 0.02, 0.975 };
    if (!strcmp(dot, ".BF16")) return (bounds){ 0.5, 0.06, 0.95 };
    return (bounds){ 1.0, 0.1, 0.9 };                        /* quantized */
}

/* Threads for the "2 threads" cases: G4_TEST_THREADS overrides (qemu-user in
 * this sandbox cannot create threads, so the arm64 run uses 1). */
static int threads2(void) {
    const char *e = getenv("G4_TEST_THREADS");
    return e && atoi(e) > 0 ? atoi(e) : 2;
}

static gemma4c_context *ctx_for(gemma4c_model *m, int prec, int threads, int n_batch) {
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_ctx = MAXTOK;
    p.n_threads = threads;
    p.precision = prec;
    p.n_batch = n_batch;
    p.kv_type = GEMMA4C_KV_F32;   /* as llama.cpp made the goldens (f16/q8_0: test_kv) */
    char err[600];
    gemma4c_context *c = gemma4c_context_new(m, &p, err, sizeof err);
    if (!c) fprintf(stderr, "context: %s\n", err);
    return c;
}

static char PATHBUF[4][1024];
static const char *ref(int slot, const char *name, const char *suffix) {
    char rel[512];
    snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s%s", name, suffix);
    snprintf(PATHBUF[slot], sizeof PATHBUF[slot], "%s", shared_path(rel));
    return PATHBUF[slot];
}

/* Per variant: exact prefill + exact greedy; fast prefill + teacher-forced decode. */
static void check_variant(const char *v) {
    char base[64];
    snprintf(base, sizeof base, "%s", v);
    char *dot = strchr(base, '.');
    if (dot) *dot = 0;
    int32_t prompt[MAXTOK], greedy[32], xgreedy[32];
    int n = th_read_ids(ref(0, base, ".tokens.txt"), prompt, MAXTOK);
    int ng = th_read_ids(ref(1, v, ".greedy.txt"), greedy, 32);
    int nxg = th_read_ids(ref(2, v, ".exact.greedy.txt"), xgreedy, 32);
    CHECKF(n > 0 && ng == 16 && nxg == 16, "%s: reading golden ids", v);
    if (n <= 0 || ng != 16 || nxg != 16) return;
    char err[600];
    gemma4c_model *m = gemma4c_model_open(ref(3, v, ".gguf"), err, sizeof err);
    CHECKF(m != NULL, "%s: %s", v, err);
    if (!m) return;
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    int V = info.n_vocab;
    size_t nl;

    /* exact precision vs the float64 reference */
    float *xl = th_read_f32(ref(0, v, ".exact.logits.f32"), &nl);
    gemma4c_context *c = ctx_for(m, GEMMA4C_PREC_EXACT, threads2(), 512);
    CHECK(xl && nl == (size_t)n * V && c);
    if (xl && c && gemma4c_eval(c, prompt, n, 1, err, sizeof err) == 0) {
        float *got = malloc((size_t)n * V * sizeof(float));
        for (int i = 0; i < n; i++) memcpy(got + (size_t)i * V, gemma4c_logits(c, i), (size_t)V * sizeof(float));
        th_stat s = th_compare(got, xl, n, V);
        printf("  %-18s exact: max %.2e rms %.2e", v, s.max, s.rms);
        CHECKF(s.max <= 1e-3, "%s exact prefill max %g", v, s.max);
        /* greedy continuation, one token at a time */
        int ok = 1;
        const float *lg = gemma4c_logits_last(c);
        for (int k = 0; k < 16 && ok; k++) {
            int32_t best = 0;
            for (int j = 1; j < V; j++) if (lg[j] > lg[best]) best = j;
            ok = best == xgreedy[k];
            CHECKF(ok, "%s exact greedy step %d: got %d want %d", v, k, best, xgreedy[k]);
            if (!ok || gemma4c_eval(c, &best, 1, 0, err, sizeof err)) break;
            lg = gemma4c_logits_last(c);
        }
        printf(" greedy %s", ok ? "ok" : "DIFF");
        free(got);
    }
    gemma4c_context_free(c);
    free(xl);

    /* fast precision vs llama.cpp: prefill, then teacher-forced decode */
    bounds b = llama_bounds(v);
    float *ll = th_read_f32(ref(0, v, ".logits.f32"), &nl);
    float *gl = th_read_f32(ref(1, v, ".greedy.logits.f32"), &nl);
    c = ctx_for(m, GEMMA4C_PREC_FAST, threads2(), 512);
    if (ll && gl && c && gemma4c_eval(c, prompt, n, 1, err, sizeof err) == 0) {
        float *got = malloc((size_t)n * V * sizeof(float));
        for (int i = 0; i < n; i++) memcpy(got + (size_t)i * V, gemma4c_logits(c, i), (size_t)V * sizeof(float));
        th_stat s = th_compare(got, ll, n, V);
        printf(" | llama: max %.3f rms %.4f argmax %.3f", s.max, s.rms, s.agree);
        CHECKF(s.max <= b.max && s.rms <= b.rms && s.agree >= b.argmax, "%s vs llama.cpp prefill: max %g rms %g agree %g",
               v, s.max, s.rms, s.agree);
        float *dec = malloc((size_t)16 * V * sizeof(float));
        memcpy(dec, gemma4c_logits_last(c), (size_t)V * sizeof(float));
        for (int k = 1; k < 16; k++) {
            if (gemma4c_eval(c, &greedy[k - 1], 1, 0, err, sizeof err)) { CHECK(0); break; }
            memcpy(dec + (size_t)k * V, gemma4c_logits_last(c), (size_t)V * sizeof(float));
        }
        th_stat d = th_compare(dec, gl, 16, V);
        printf(" | decode: max %.3f rms %.4f\n", d.max, d.rms);
        CHECKF(d.max <= b.max && d.rms <= b.rms, "%s teacher-forced decode max %g rms %g", v, d.max, d.rms);
        for (int k = 0; k < 16; k++) {
            const float *r = gl + (size_t)k * V, *o = dec + (size_t)k * V;
            int i1 = 0, i2 = -1, io = 0;
            for (int j = 1; j < V; j++) if (r[j] > r[i1]) i1 = j;
            for (int j = 0; j < V; j++) if (j != i1 && (i2 < 0 || r[j] > r[i2])) i2 = j;
            for (int j = 1; j < V; j++) if (o[j] > o[io]) io = j;
            if (r[i1] - r[i2] > b.max) CHECKF(io == i1, "%s decode step %d argmax %d vs %d", v, k, io, i1);
        }
        free(dec);
        free(got);
    } else {
        CHECKF(0, "%s: fast path eval failed: %s", v, err);
    }
    gemma4c_context_free(c);
    free(ll);
    free(gl);
    gemma4c_model_free(m);
}


/* Past 512 positions one-token decode splits each full layer's positions
 * into parts merged afterwards (forward.c): token by token must still give
 * the batch's logits, and 1 vs 2 threads the same bits. */
TEST(long_context_decode) {
    const char *models[] = { "gemma4-e", "gemma4-dense" };
    enum { N = 600 };
    for (int mi = 0; mi < 2; mi++) {
        int32_t base[MAXTOK], prompt[N];
        int nb = th_read_ids(ref(0, models[mi], ".tokens.txt"), base, MAXTOK);
        char err[600];
        gemma4c_model *m = gemma4c_model_open(ref(1, models[mi], ".gguf"), err, sizeof err);
        CHECK(m && nb > 0);
        if (!m || nb <= 0) continue;
        for (int i = 0; i < N; i++) prompt[i] = base[(i * 7) % nb];
        const int V = 512;
        gemma4c_context_params p = gemma4c_context_default_params();
        p.n_ctx = N;
        p.precision = GEMMA4C_PREC_EXACT;
        p.n_batch = N;
        p.n_threads = 1;
        gemma4c_context *cb = gemma4c_context_new(m, &p, err, sizeof err);
        p.n_batch = 1;
        gemma4c_context *c1 = gemma4c_context_new(m, &p, err, sizeof err);
        p.n_threads = threads2();
        gemma4c_context *c2 = gemma4c_context_new(m, &p, err, sizeof err);
        CHECK(cb && c1 && c2);
        if (cb && c1 && c2) {
            CHECK(gemma4c_eval(cb, prompt, N, 1, err, sizeof err) == 0);
            double mx = 0;
            int same = 1;
            for (int i = 0; i < N; i++) {
                CHECK(gemma4c_eval(c1, &prompt[i], 1, 0, err, sizeof err) == 0);
                CHECK(gemma4c_eval(c2, &prompt[i], 1, 0, err, sizeof err) == 0);
                const float *a = gemma4c_logits(cb, i), *b = gemma4c_logits_last(c1);
                for (int j = 0; j < V; j++) mx = fmax(mx, fabs(a[j] - b[j]));
                same &= memcmp(b, gemma4c_logits_last(c2), (size_t)V * 4) == 0;
            }
            printf("  %-14s %d tokens, batch vs one-by-one: max %.2e\n", models[mi], N, mx);
            CHECKF(mx <= 1e-4, "%s long decode vs batch %g", models[mi], mx);
            CHECKF(same, "%s: 1 and %d threads differ", models[mi], threads2());
        }
        gemma4c_context_free(cb);
        gemma4c_context_free(c1);
        gemma4c_context_free(c2);
        gemma4c_model_free(m);
    }
}

/* Batch prefill vs token-by-token, and chunked batches (n_batch 7, crossing
 * the sliding window mid-batch), on the F32 models in exact precision. */
TEST(batch_vs_incremental) {
    const char *models[] = { "gemma4-e", "gemma4-dense", "gemma4-moe" };
    for (int mi = 0; mi < 3; mi++) {
        int32_t prompt[MAXTOK];
        int n = th_read_ids(ref(0, models[mi], ".tokens.txt"), prompt, MAXTOK);
        char err[600];
        gemma4c_model *m = gemma4c_model_open(ref(1, models[mi], ".gguf"), err, sizeof err);
        CHECK(m && n > 0);
        if (!m) continue;
        int V = 512;
        float *a = malloc((size_t)n * V * sizeof(float)), *b = malloc((size_t)n * V * sizeof(float));
        gemma4c_context *c1 = ctx_for(m, GEMMA4C_PREC_EXACT, 1, 512);
        gemma4c_context *c2 = ctx_for(m, GEMMA4C_PREC_EXACT, threads2(), 1);
        gemma4c_context *c3 = ctx_for(m, GEMMA4C_PREC_EXACT, threads2(), 7);
        CHECK(gemma4c_eval(c1, prompt, n, 1, err, sizeof err) == 0);
        for (int i = 0; i < n; i++) memcpy(a + (size_t)i * V, gemma4c_logits(c1, i), (size_t)V * 4);
        for (int i = 0; i < n; i++) {
            CHECK(gemma4c_eval(c2, &prompt[i], 1, 0, err, sizeof err) == 0);
            memcpy(b + (size_t)i * V, gemma4c_logits_last(c2), (size_t)V * 4);
        }
        th_stat s = th_compare(a, b, n, V);
        printf("  %-14s batch vs one-by-one: max %.2e\n", models[mi], s.max);
        CHECKF(s.max <= 1e-4, "%s batch vs incremental %g", models[mi], s.max);
        CHECK(gemma4c_eval(c3, prompt, n, 1, err, sizeof err) == 0);
        for (int i = 0; i < n; i++) memcpy(b + (size_t)i * V, gemma4c_logits(c3, i), (size_t)V * 4);
        s = th_compare(a, b, n, V);
        CHECKF(s.max <= 1e-4, "%s batch vs chunks of 7: %g", models[mi], s.max);
        /* thread count must not change results at all */
        gemma4c_context *c4 = ctx_for(m, GEMMA4C_PREC_FAST, 1, 512), *c5 = ctx_for(m, GEMMA4C_PREC_FAST, threads2(), 512);
        CHECK(gemma4c_eval(c4, prompt, n, 0, err, sizeof err) == 0 && gemma4c_eval(c5, prompt, n, 0, err, sizeof err) == 0);
        CHECK(memcmp(gemma4c_logits_last(c4), gemma4c_logits_last(c5), (size_t)V * 4) == 0);
        /* truncate + re-eval gives the same logits as the first time */
        CHECK(gemma4c_truncate(c1, n - 3) == 0);
        CHECK(gemma4c_eval(c1, prompt + n - 3, 3, 0, err, sizeof err) == 0);
        const float *l = gemma4c_logits_last(c1);
        double mx = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, fabs(l[j] - a[(size_t)(n - 1) * V + j]));
        CHECKF(mx <= 1e-4, "%s truncate/re-eval %g", models[mi], mx);
        /* the context refuses to overflow with a clear error */
        gemma4c_reset(c1);
        int32_t many[MAXTOK + 1];
        for (int i = 0; i <= MAXTOK; i++) many[i] = 2;
        CHECK(gemma4c_eval(c1, many, MAXTOK + 1, 0, err, sizeof err) != 0 && strstr(err, "context"));
        int32_t bad = 100000;
        CHECK(gemma4c_eval(c1, &bad, 1, 0, err, sizeof err) != 0 && strstr(err, "vocabulary"));
        gemma4c_context_free(c1); gemma4c_context_free(c2); gemma4c_context_free(c3);
        gemma4c_context_free(c4); gemma4c_context_free(c5);
        gemma4c_model_free(m);
        free(a); free(b);
    }
}

/* Hugging Face folders run directly (safetensors, F32 / sharded / BF16):
 * exact precision against the float64 logits of the same weights. */
TEST(hf_folders) {
    const char *dirs[][3] = {
        { "gemma4-e.hf", "gemma4-e", "gemma4-e.exact" },
        { "gemma4-dense.hf", "gemma4-dense", "gemma4-dense.exact" },
        { "gemma4-moe.hf", "gemma4-moe", "gemma4-moe.exact" },
        { "gemma4-e.bf16.hf", "gemma4-e", "gemma4-e.bf16.hf.exact" },
    };
    for (int i = 0; i < 4; i++) {
        int32_t prompt[MAXTOK], greedy[32];
        int n = th_read_ids(ref(0, dirs[i][1], ".tokens.txt"), prompt, MAXTOK);
        int ng = th_read_ids(ref(1, dirs[i][2], ".greedy.txt"), greedy, 32);
        char err[600];
        gemma4c_model *m = gemma4c_model_open(ref(2, dirs[i][0], ""), err, sizeof err);
        CHECKF(m && n > 0 && ng == 16, "%s: %s", dirs[i][0], m ? "ids" : err);
        if (!m) continue;
        size_t nl;
        float *xl = th_read_f32(ref(3, dirs[i][2], ".logits.f32"), &nl);
        gemma4c_context *c = ctx_for(m, GEMMA4C_PREC_EXACT, threads2(), 512);
        if (xl && c && gemma4c_eval(c, prompt, n, 1, err, sizeof err) == 0) {
            float *got = malloc((size_t)n * 512 * sizeof(float));
            for (int k = 0; k < n; k++) memcpy(got + (size_t)k * 512, gemma4c_logits(c, k), 512 * sizeof(float));
            th_stat st = th_compare(got, xl, n, 512);
            printf("  %-18s exact: max %.2e\n", dirs[i][0], st.max);
            CHECKF(st.max <= 1e-3, "%s max %g", dirs[i][0], st.max);
            int ok = 1;
            for (int k = 0; k < 16 && ok; k++) {
                const float *lg = gemma4c_logits_last(c);
                int32_t best = 0;
                for (int j = 1; j < 512; j++) if (lg[j] > lg[best]) best = j;
                ok = best == greedy[k];
                if (ok && gemma4c_eval(c, &best, 1, 0, err, sizeof err)) ok = 0;
            }
            CHECKF(ok, "%s greedy ids differ", dirs[i][0]);
            free(got);
        } else CHECKF(0, "%s: eval failed: %s", dirs[i][0], err);
        free(xl);
        gemma4c_context_free(c);
        gemma4c_model_free(m);
    }
}

/* G4_GOLDEN_ONLY="a,b": only those variants (slow emulated runs, e.g. arm64
 * under qemu); the folder and batch tests then run only if "hf" / "batch"
 * are listed. */
static int wanted(const char *name) {
    const char *only = getenv("G4_GOLDEN_ONLY");
    if (!only || !*only) return 1;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, name, n)) return 1;
        p += l + (e != NULL);
    }
    return 0;
}

int main(void) {
    if (wanted("hf")) RUN(hf_folders);
    /* one test per variant, so a failure names the file */
    for (size_t i = 0; i < sizeof VARIANTS / sizeof VARIANTS[0]; i++) {
        if (!wanted(VARIANTS[i])) continue;
        th_cur_name = VARIANTS[i];
        th_cur_failed = 0;
        check_variant(VARIANTS[i]);
        if (th_cur_failed) { th_failed++; printf("FAIL golden %s\n", VARIANTS[i]); }
        else { th_passed++; printf("ok   golden %s\n", VARIANTS[i]); }
    }
    if (wanted("batch")) RUN(batch_vs_incremental);
    if (wanted("long")) RUN(long_context_decode);
    return test_summary();
}
