/* Backward pass: the training schedule (model/backward.c) on the golden tiny
 * models.
 *
 *   - its forward gives the reference logits (*.exact.logits.f32);
 *   - every tensor's gradient of the cross-entropy loss matches central
 *     finite differences of the same f32 loss on its largest entries (a
 *     coarse check in f32; the tight ones, against float64 finite
 *     differences and torch autograd, are tests/sh/grad_torch.sh, which runs
 *     this program with G4_GRAD_DUMP=DIR to write the gradients);
 *   - the gradients do not depend on the thread count (bit for bit).
 *
 * Loss: tokens[0..T) of NAME.tokens.txt, target of position t = token t+1,
 * mean over the T-1 targets. */
#include "harness.h"

#include <stdint.h>

#include "format/gguf.h"
#include "model/backward.h"
#include "model/lora.h"
#include "model/model.h"

static const char *MODELS[] = { "gemma4-e", "gemma4-dense", "gemma4-moe" };
enum { T_LOSS = 24 };

static g4_model *load(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s.gguf", name);
    g4_error e = { { 0 } };
    g4_gguf_file *f = g4_gguf_open(shared_path(rel), &e);
    if (!f) { fprintf(stderr, "  %s\n", e.msg); return NULL; }
    g4_model *m = g4_model_load(f, &e);
    if (!m) fprintf(stderr, "  %s\n", e.msg);
    return m;
}

static int read_tokens(const char *name, int32_t *tok, int max) {
    char rel[256];
    snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s.tokens.txt", name);
    char *s = th_read_file(shared_path(rel), NULL);
    if (!s) return 0;
    int n = 0;
    char *p = s, *end;
    for (long v; n < max && (v = strtol(p, &end, 10), end != p); p = end) tok[n++] = (int32_t)v;
    free(s);
    return n;
}

static double loss_of(g4_train_ws *tw, const int32_t *tok, const int32_t *tgt, int T) {
    double l = 0;
    g4_error e = { { 0 } };
    if (g4_train_seq(tw, NULL, tok, tgt, T, 1.0f, &l, NULL, &e)) fprintf(stderr, "  %s\n", e.msg);
    return l / (T - 1);
}

static void dump(const char *dir, const char *name, const g4_params *ps, double loss) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.grad", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "  cannot write %s\n", path); return; }
    fwrite("G4GR", 1, 4, f);
    fwrite(&loss, sizeof loss, 1, f);
    for (int i = 0; i < ps->n; i++) {
        uint32_t nl = (uint32_t)strlen(ps->p[i].name);
        uint64_t n = ps->p[i].n;
        fwrite(&nl, 4, 1, f);
        fwrite(ps->p[i].name, 1, nl, f);
        fwrite(&n, 8, 1, f);
        fwrite(ps->p[i].grad, sizeof(float), n, f);
    }
    fclose(f);
}

TEST(train_forward_equals_reference) {
    for (size_t mi = 0; mi < sizeof MODELS / sizeof MODELS[0]; mi++) {
        g4_model *m = load(MODELS[mi]);
        CHECK(m != NULL);
        if (!m) continue;
        int32_t tok[64];
        int T = read_tokens(MODELS[mi], tok, 64);
        CHECK(T == 40);
        g4_error e = { { 0 } };
        g4_train_ws *tw = g4_train_ws_new(m, T, 2, &e);
        CHECK(tw != NULL);
        float *lg = malloc((size_t)T * m->n_vocab * sizeof(float));
        char rel[256];
        snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s.exact.logits.f32", MODELS[mi]);
        size_t len = 0;
        float *ref = (float *)th_read_file(shared_path(rel), &len);
        CHECK(ref && len == (size_t)T * m->n_vocab * sizeof(float));
        double l = 0;
        CHECK(g4_train_seq(tw, NULL, tok, NULL, T, 1.0f, &l, lg, &e) == 0);
        double mx = 0;
        for (size_t i = 0; ref && i < (size_t)T * m->n_vocab; i++) {
            double d = fabs((double)lg[i] - ref[i]);
            if (!(d <= mx)) mx = d;
        }
        printf("  %s: training forward vs exact logits max abs %.2e\n", MODELS[mi], mx);
        CHECKF(mx <= 1e-3, "%s: %g", MODELS[mi], mx);
        free(ref);
        free(lg);
        g4_train_ws_free(tw);
        g4_model_free(m);
    }
}

TEST(gradients_match_finite_differences) {
    const char *dump_dir = getenv("G4_GRAD_DUMP");
    for (size_t mi = 0; mi < sizeof MODELS / sizeof MODELS[0]; mi++) {
        g4_model *m = load(MODELS[mi]);
        CHECK(m != NULL);
        if (!m) continue;
        g4_error e = { { 0 } };
        g4_params *ps = g4_params_new(m, 1, &e);
        CHECK(ps != NULL);
        int32_t tok[64], tgt[64];
        int T = read_tokens(MODELS[mi], tok, 64);
        if (T > T_LOSS) T = T_LOSS;
        for (int t = 0; t < T; t++) tgt[t] = t + 1 < T ? tok[t + 1] : -1;
        g4_train_ws *tw = g4_train_ws_new(m, T, 2, &e);
        CHECK(tw != NULL);
        double loss = 0;
        CHECK(g4_train_seq(tw, ps, tok, tgt, T, 1.0f / (T - 1), &loss, NULL, &e) == 0);
        loss /= T - 1;
        if (dump_dir) dump(dump_dir, MODELS[mi], ps, loss);
        int bad = 0, checked = 0;
        double worst = 0;
        for (int i = 0; i < ps->n; i++) {
            g4_param *p = &ps->p[i];
            /* the largest-gradient entry: where f32 differences are informative */
            size_t j = 0;
            for (size_t i2 = 0; i2 < p->n; i2++)
                if (fabsf(p->grad[i2]) > fabsf(p->grad[j])) j = i2;
            {
                /* MoE: a smaller step, or the top-k selection flips (the
                 * gradient treats the selection as fixed) */
                float v0 = p->val[j], h = (m->n_expert ? 1e-3f : 1e-2f) * (fabsf(v0) > 0.1f ? fabsf(v0) : 0.1f);
                p->val[j] = v0 + h;
                double lp = loss_of(tw, tok, tgt, T);
                p->val[j] = v0 - h;
                double lm = loss_of(tw, tok, tgt, T);
                p->val[j] = v0;
                double fd = (lp - lm) / (2.0 * ((double)(v0 + h) - (double)v0));
                /* layer_output_scale: one number summed over the whole residual
                 * stream, with much cancellation: judged on the scale 3e-2 (f32 noise) */
                double g = p->grad[j], err = fabs(fd - g) / (p->n == 1 ? fmax(fabs(g), 3e-2) : fabs(g) + 1e-4);
                checked++;
                if (err > worst) worst = err;
                if (err > 3e-2) {
                    bad++;
                    fprintf(stderr, "  %s %s[%zu]: grad %.6g, finite difference %.6g\n", MODELS[mi], p->name, j, g,
                            fd);
                }
            }
        }
        printf("  %s: loss %.5f, %d tensors, %d entries, worst relative error %.2e (f32 differences)\n",
               MODELS[mi], loss, ps->n, checked, worst);
        CHECKF(bad == 0, "%s: %d of %d entries off", MODELS[mi], bad, checked);
        CHECK(ps->n > 20);

        /* same gradients with 1 and 3 threads, bit for bit */
        float **g2 = malloc((size_t)ps->n * sizeof *g2);
        for (int i = 0; i < ps->n; i++) {
            g2[i] = malloc(ps->p[i].n * sizeof(float));
            memcpy(g2[i], ps->p[i].grad, ps->p[i].n * sizeof(float));
        }
        int nth[2] = { 1, 3 };
        for (int r = 0; r < 2; r++) {
            g4_train_ws *t2 = g4_train_ws_new(m, T, nth[r], &e);
            g4_params_zero_grad(ps);
            double l2 = 0;
            CHECK(t2 && g4_train_seq(t2, ps, tok, tgt, T, 1.0f / (T - 1), &l2, NULL, &e) == 0);
            int same = 1;
            for (int i = 0; i < ps->n; i++) same &= memcmp(g2[i], ps->p[i].grad, ps->p[i].n * sizeof(float)) == 0;
            CHECKF(same, "%s: gradients with %d threads differ", MODELS[mi], nth[r]);
            g4_train_ws_free(t2);
        }
        for (int i = 0; i < ps->n; i++) free(g2[i]);
        free(g2);
        g4_train_ws_free(tw);
        g4_params_free(ps);
        g4_model_free(m);
    }
}

/* LoRA fine-tuning: the base frozen in its stored form (Q8_0 for gemma4-e:
 * the input gradients go through the transposed product over decoded rows),
 * an adapter of rank 4 on q, k, v, o, gate, up, down with random A and B;
 * each pair's A and B gradients against f32 finite differences. */
TEST(lora_gradients_match_finite_differences) {
    const char *files[] = { "gemma4-e.Q8_0", "gemma4-dense" }, *toks[] = { "gemma4-e", "gemma4-dense" };
    for (int mi = 0; mi < 2; mi++) {
        g4_model *m = load(files[mi]);
        CHECK(m != NULL);
        if (!m) continue;
        g4_error e = { { 0 } };
        g4_params *ps = g4_params_new(m, 0, &e);
        uint64_t tg = (1ull << G4_T_ATTN_Q) | (1ull << G4_T_ATTN_K) | (1ull << G4_T_ATTN_V) | (1ull << G4_T_ATTN_OUT) |
                      (1ull << G4_T_FFN_GATE) | (1ull << G4_T_FFN_UP) | (1ull << G4_T_FFN_DOWN);
        g4_lora *lo = g4_lora_create(m, tg, 4, 8.0f, &e);
        CHECK(lo != NULL);
        if (!lo) { fprintf(stderr, "  %s\n", e.msg); g4_model_free(m); continue; }
        uint64_t rs = 12345;
        for (int i = 0; i < lo->n_pairs; i++) {
            g4_lora_pair *p = &lo->pairs[i];
            for (size_t j = 0; j < (size_t)p->r * p->n_in; j++) { rs = rs * 6364136223846793005ull + 1; p->a[j] = ((int)(rs >> 40) % 2001 - 1000) * 1e-4f; }
            for (size_t j = 0; j < (size_t)p->r * p->n_out; j++) { rs = rs * 6364136223846793005ull + 1; p->b[j] = ((int)(rs >> 40) % 2001 - 1000) * 1e-4f; }
        }
        g4_lora_set *set = g4_lora_bind(m, &lo, NULL, 1, &e);
        CHECK(set != NULL);
        float **ga = calloc((size_t)set->n, sizeof *ga), **gb = calloc((size_t)set->n, sizeof *gb);
        for (int i = 0; i < set->n; i++) {
            ga[i] = calloc((size_t)set->e[i].pair->r * set->e[i].pair->n_in, sizeof(float));
            gb[i] = calloc((size_t)set->e[i].pair->r * set->e[i].pair->n_out, sizeof(float));
        }
        int32_t tok[64], tgt[64];
        int T = read_tokens(toks[mi], tok, 64);
        if (T > T_LOSS) T = T_LOSS;
        for (int t = 0; t < T; t++) tgt[t] = t + 1 < T ? tok[t + 1] : -1;
        g4_train_ws *tw = g4_train_ws_new(m, T, 2, &e);
        CHECK(tw && g4_train_ws_set_lora(tw, set, ga, gb, &e) == 0);
        double loss = 0;
        CHECK(g4_train_seq(tw, ps, tok, tgt, T, 1.0f / (T - 1), &loss, NULL, &e) == 0);
        int bad = 0, checked = 0;
        double worst = 0;
        for (int i = 0; i < set->n; i++)
            for (int ab = 0; ab < 2; ab++) {
                g4_lora_pair *p = set->e[i].pair;
                float *v = ab ? p->b : p->a, *g = ab ? gb[i] : ga[i];
                size_t n = (size_t)p->r * (size_t)(ab ? p->n_out : p->n_in), j = 0;
                for (size_t k = 0; k < n; k++)
                    if (fabsf(g[k]) > fabsf(g[j])) j = k;
                float v0 = v[j], h = 1e-2f * (fabsf(v0) > 0.1f ? fabsf(v0) : 0.1f);
                v[j] = v0 + h;
                double lp = loss_of(tw, tok, tgt, T);
                v[j] = v0 - h;
                double lm = loss_of(tw, tok, tgt, T);
                v[j] = v0;
                double fd = (lp - lm) / (2.0 * ((double)(v0 + h) - (double)v0)), err = fabs(fd - g[j]) / (fabs(g[j]) + 1e-4);
                checked++;
                if (err > worst) worst = err;
                if (err > 3e-2) {
                    bad++;
                    fprintf(stderr, "  %s pair %d %s[%zu]: grad %.6g, finite difference %.6g\n", files[mi], i,
                            ab ? "B" : "A", j, g[j], fd);
                }
            }
        const char *dump_dir = getenv("G4_GRAD_DUMP");
        if (dump_dir) {       /* for tests/py/grad_torch.py --lora: values and gradients of every A and B */
            char path[1024];
            snprintf(path, sizeof path, "%s/%s.lora", dump_dir, files[mi]);
            FILE *f = fopen(path, "wb");
            if (f) {
                double l = loss / (T - 1);
                float sc = set->e[0].scale;
                fwrite("G4LR", 1, 4, f);
                fwrite(&l, 8, 1, f);
                fwrite(&sc, 4, 1, f);
                for (int i = 0; i < set->n; i++)
                    for (int ab = 0; ab < 2; ab++) {
                        g4_lora_pair *p = set->e[i].pair;
                        char base[64], name[80];
                        g4_tensor_name(&g4_tensors[p->tid], p->layer, base, sizeof base);
                        snprintf(name, sizeof name, "%s.lora_%s", base, ab ? "b" : "a");
                        uint32_t nl = (uint32_t)strlen(name), dims[2] = { (uint32_t)(ab ? p->n_out : p->r),
                                                                          (uint32_t)(ab ? p->r : p->n_in) };
                        fwrite(&nl, 4, 1, f);
                        fwrite(name, 1, nl, f);
                        fwrite(dims, 4, 2, f);
                        fwrite(ab ? p->b : p->a, 4, (size_t)dims[0] * dims[1], f);
                        fwrite(ab ? gb[i] : ga[i], 4, (size_t)dims[0] * dims[1], f);
                    }
                fclose(f);
            }
        }
        printf("  %s: LoRA loss %.5f, %d pairs, %d entries, worst relative error %.2e (f32 differences)\n",
               files[mi], loss / (T - 1), set->n, checked, worst);
        CHECKF(bad == 0 && checked > 20, "%s: %d of %d entries off", files[mi], bad, checked);
        for (int i = 0; i < set->n; i++) { free(ga[i]); free(gb[i]); }
        free(ga);
        free(gb);
        g4_train_ws_free(tw);
        g4_lora_set_free(set);
        g4_lora_free(lo);
        g4_params_free(ps);
        g4_model_free(m);
    }
}

TEST(bad_input_is_an_error) {
    g4_model *m = load("gemma4-e");
    CHECK(m != NULL);
    if (!m) return;
    g4_error e = { { 0 } };
    g4_train_ws *tw = g4_train_ws_new(m, 8, 1, &e);
    int32_t tok[9] = { 2, 3, 4, 5, 6, 7, 8, 9, 10 }, bad[2] = { 2, 999 };
    CHECK(g4_train_seq(tw, NULL, tok, NULL, 9, 1, NULL, NULL, &e) == -1 && strstr(e.msg, "allowed"));
    CHECK(g4_train_seq(tw, NULL, bad, NULL, 2, 1, NULL, NULL, &e) == -1 && strstr(e.msg, "vocabulary"));
    CHECK(g4_train_seq(tw, NULL, tok, bad, 2, 1, NULL, NULL, &e) == -1 && strstr(e.msg, "target"));
    g4_train_ws_free(tw);
    g4_model_free(m);
}

int main(void) {
    RUN(train_forward_equals_reference);
    RUN(gradients_match_finite_differences);
    RUN(lora_gradients_match_finite_differences);
    RUN(bad_input_is_an_error);
    return test_summary();
}
