/* The seams under the forward pass: per-sequence KV state, batches that mix
 * sequences, embedding-row input, attention mask kinds, the shared pool.
 *
 * "Alone" is the same model evaluating one sequence by itself; a mixed batch
 * must give each sequence the same logits (exact path). */
#include "harness.h"

#include <stdint.h>

#include "engine/engine.h"
#include "gemma4c.h"
#include "model/forward.h"
#include "model/kv.h"
#include "ops/attention.h"
#include "tensor/types.h"

static const char *MODELS[] = { "gemma4-e", "gemma4-dense", "gemma4-moe" };

static gemma4c_model *open_golden(const char *model) {
    char rel[256], err[600];
    snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s.gguf", model);
    gemma4c_model *m = gemma4c_model_open(shared_path(rel), err, sizeof err);
    if (!m) fprintf(stderr, "  %s\n", err);
    return m;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;   /* NaN counts as infinitely far */
    }
    return m;
}

/* Evaluate tokens of one sequence in batches of `step`, keeping every row. */
static int run_alone(g4_workspace *w, const g4_model *m, const int32_t *tok, int n, int step, float *logits) {
    g4_error e = { { 0 } };
    g4_seq *s = g4_seq_new(m, 64, 16, &e);
    if (!s) return -1;
    int32_t pos[16];
    for (int i = 0; i < n; i += step) {
        int T = n - i < step ? n - i : step;
        for (int t = 0; t < T; t++) pos[t] = i + t;
        g4_batch b = { .n = T, .tokens = tok + i, .pos = pos, .seq0 = s };
        if (g4_forward(w, &b, logits + (size_t)i * m->n_vocab, 1, &e)) { fprintf(stderr, "  %s\n", e.msg); break; }
    }
    int ok = s->n_past == n;
    g4_seq_free(s);
    return ok ? 0 : -1;
}

TEST(mask_ranges) {
    int32_t pos[6] = { 10, 11, 12, 13, 14, 15 }, lo[6], hi[6];
    g4_mask c = { .kind = G4_MASK_CAUSAL };
    g4_attn_ranges(&c, pos, 6, 16, lo, hi);
    CHECK(lo[0] == 0 && hi[0] == 11 && lo[5] == 0 && hi[5] == 16);
    g4_mask s = { .kind = G4_MASK_SLIDING, .window = 4 };
    g4_attn_ranges(&s, pos, 6, 16, lo, hi);
    CHECK(lo[0] == 7 && hi[0] == 11 && lo[5] == 12 && hi[5] == 16);
    /* tokens 1..3 form one run: each sees the run's end, the others stay causal */
    int32_t run[6] = { -1, 7, 7, 7, -1, 3 };
    g4_mask b = { .kind = G4_MASK_BIDIR, .window = 4, .run = run };
    g4_attn_ranges(&b, pos, 6, 16, lo, hi);
    CHECK(hi[0] == 11 && hi[1] == 14 && hi[2] == 14 && hi[3] == 14 && hi[4] == 15 && hi[5] == 16);
    CHECK(lo[1] == 8 && lo[3] == 10);
    /* the window still limits a run: a query sees at most window - 1 ahead */
    g4_mask b2 = { .kind = G4_MASK_BIDIR, .window = 2, .run = run };
    g4_attn_ranges(&b2, pos, 6, 16, lo, hi);
    CHECK(hi[1] == 13 && hi[2] == 14 && hi[3] == 14);
    g4_mask k = { .kind = G4_MASK_CHUNKED, .chunk = 4, .left = 1 };
    g4_attn_ranges(&k, pos, 6, 14, lo, hi);
    CHECK(lo[0] == 4 && hi[0] == 12 && lo[2] == 8 && hi[2] == 14 && lo[5] == 8 && hi[5] == 14);
}

/* Two sequences of different lengths, started at different steps, in batches
 * that interleave them, against each evaluated alone. */
TEST(mixed_batch_equals_alone) {
    for (size_t mi = 0; mi < sizeof MODELS / sizeof MODELS[0]; mi++) {
        gemma4c_model *mm = open_golden(MODELS[mi]);
        CHECK(mm);
        if (!mm) continue;
        const g4_model *m = mm->m;
        g4_error e = { { 0 } };
        g4_workspace *w = g4_workspace_new(m, 16, 2, 1, &e);
        CHECK(w);
        size_t V = (size_t)m->n_vocab;
        enum { NA = 20, NB = 13 };
        int32_t a[NA], b[NB];
        for (int i = 0; i < NA; i++) a[i] = (int32_t)((i * 37 + 5) % m->n_vocab);
        for (int i = 0; i < NB; i++) b[i] = (int32_t)((i * 53 + 11) % m->n_vocab);
        float *ra = malloc(NA * V * sizeof(float)), *rb = malloc(NB * V * sizeof(float));
        float *ma = calloc(NA * V, sizeof(float)), *mb = calloc(NB * V, sizeof(float));
        float *out = malloc(16 * V * sizeof(float));
        CHECK(run_alone(w, m, a, NA, 16, ra) == 0);
        CHECK(run_alone(w, m, b, NB, 1, rb) == 0);
        g4_seq *sa = g4_seq_new(m, 64, 16, &e), *sb = g4_seq_new(m, 64, 16, &e);
        /* steps: (tokens of A, tokens of B) per batch; B starts at the second step */
        static const int plan[][2] = { { 6, 0 }, { 3, 5 }, { 1, 1 }, { 0, 4 }, { 7, 2 }, { 2, 1 }, { 1, 0 } };
        int ia = 0, ib = 0;
        for (size_t st = 0; st < sizeof plan / sizeof plan[0]; st++) {
            int32_t tok[16], pos[16];
            g4_seq *seq[16];
            int n = 0, na = plan[st][0], nb = plan[st][1];
            /* interleave: A, B, A, B, ... then the rest */
            for (int k = 0; k < na || k < nb; k++) {
                if (k < na) { tok[n] = a[ia + k]; pos[n] = ia + k; seq[n++] = sa; }
                if (k < nb) { tok[n] = b[ib + k]; pos[n] = ib + k; seq[n++] = sb; }
            }
            g4_batch bt = { .n = n, .tokens = tok, .pos = pos, .seq = seq };
            int rc = g4_forward(w, &bt, out, 1, &e);
            CHECKF(rc == 0, "%s step %zu: %s", MODELS[mi], st, e.msg);
            if (rc) break;
            for (int t = 0; t < n; t++) {
                float *dst = seq[t] == sa ? ma + (size_t)pos[t] * V : mb + (size_t)pos[t] * V;
                memcpy(dst, out + (size_t)t * V, V * sizeof(float));
            }
            ia += na;
            ib += nb;
        }
        CHECK(ia == NA && ib == NB && sa->n_past == NA && sb->n_past == NB);
        double da = max_diff(ma, ra, NA * V), db = max_diff(mb, rb, NB * V);
        printf("  %-13s mixed batch vs alone: A %.2e, B %.2e\n", MODELS[mi], da, db);
        CHECK(da <= 3e-5 && db <= 3e-5);
        g4_seq_free(sa);
        g4_seq_free(sb);
        free(ra); free(rb); free(ma); free(mb); free(out);
        g4_workspace_free(w);
        gemma4c_model_free(mm);
    }
}

/* Embedding rows equal to the scaled token embeddings, with the token ids as
 * per-layer-embedding rows, give the same logits as the ids. */
TEST(embedding_rows_equal_token_ids) {
    for (size_t mi = 0; mi < sizeof MODELS / sizeof MODELS[0]; mi++) {
        gemma4c_model *mm = open_golden(MODELS[mi]);
        CHECK(mm);
        if (!mm) continue;
        const g4_model *m = mm->m;
        g4_error e = { { 0 } };
        g4_workspace *w = g4_workspace_new(m, 8, 2, 1, &e);
        size_t V = (size_t)m->n_vocab, H = (size_t)m->n_embd;
        int32_t tok[8], pos[8];
        float *embd = malloc(8 * H * sizeof(float)), *l1 = malloc(8 * V * sizeof(float)),
              *l2 = malloc(8 * V * sizeof(float));
        uint8_t has[8] = { 1, 0, 1, 1, 0, 1, 0, 1 };
        const g4_type_traits *tt = g4_type_info(m->tok_embd.type);
        for (int t = 0; t < 8; t++) {
            tok[t] = (int32_t)((t * 71 + 3) % m->n_vocab);
            pos[t] = t;
            tt->to_float(g4_mat_row(&m->tok_embd, 0, tok[t]), embd + t * H, (int64_t)H);
            for (size_t i = 0; i < H; i++) embd[t * H + i] *= sqrtf((float)H);
        }
        g4_seq *s1 = g4_seq_new(m, 32, 8, &e), *s2 = g4_seq_new(m, 32, 8, &e);
        g4_batch b1 = { .n = 8, .tokens = tok, .pos = pos, .seq0 = s1 };
        g4_batch b2 = { .n = 8, .tokens = tok, .embd = embd, .has_embd = has, .pos = pos, .seq0 = s2 };
        CHECK(g4_forward(w, &b1, l1, 1, &e) == 0);
        CHECK(g4_forward(w, &b2, l2, 1, &e) == 0);
        double d = max_diff(l1, l2, 8 * V);
        CHECKF(d <= 1e-6, "%s: %g", MODELS[mi], d);
        /* a different row where has_embd is set changes that token's logits */
        embd[0] += 1.0f;
        g4_seq_truncate(s2, 0);
        CHECK(g4_forward(w, &b2, l2, 1, &e) == 0);
        CHECK(max_diff(l1, l2, V) > 1e-3);
        g4_seq_free(s1);
        g4_seq_free(s2);
        free(embd); free(l1); free(l2);
        g4_workspace_free(w);
        gemma4c_model_free(mm);
    }
}

/* With a run, an earlier token of the run sees a later one on sliding layers
 * (its logits change when the later token changes); without, it cannot. */
TEST(bidirectional_run_sees_later_tokens) {
    gemma4c_model *mm = open_golden("gemma4-dense");
    CHECK(mm);
    if (!mm) return;
    const g4_model *m = mm->m;
    g4_error e = { { 0 } };
    g4_workspace *w = g4_workspace_new(m, 8, 2, 1, &e);
    size_t V = (size_t)m->n_vocab;
    int32_t tok[6] = { 2, 40, 41, 42, 43, 9 }, pos[6] = { 0, 1, 2, 3, 4, 5 }, run[6] = { -1, 0, 0, 0, 0, -1 };
    float *base = malloc(6 * V * sizeof(float)), *chg = malloc(6 * V * sizeof(float));
    for (int bidir = 0; bidir < 2; bidir++) {
        g4_seq *s = g4_seq_new(m, 32, 8, &e);
        g4_batch b = { .n = 6, .tokens = tok, .pos = pos, .seq0 = s, .run = bidir ? run : NULL };
        CHECK(g4_forward(w, &b, base, 1, &e) == 0);
        tok[3] = 77;                       /* a later token of the run */
        g4_seq_truncate(s, 0);
        CHECK(g4_forward(w, &b, chg, 1, &e) == 0);
        tok[3] = 42;
        double first = max_diff(base + V, chg + V, V), before = max_diff(base, chg, V);
        CHECKF(before == 0, "token before the run changed: %g", before);
        if (bidir) CHECKF(first > 1e-4, "run's first token did not see a later one: %g", first);
        else CHECKF(first == 0, "causal token saw a later one: %g", first);
        g4_seq_free(s);
    }
    free(base); free(chg);
    g4_workspace_free(w);
    gemma4c_model_free(mm);
}

TEST(bad_batches_are_errors) {
    gemma4c_model *mm = open_golden("gemma4-e");
    gemma4c_model *other = open_golden("gemma4-dense");
    CHECK(mm && other);
    if (!mm || !other) { gemma4c_model_free(mm); gemma4c_model_free(other); return; }
    const g4_model *m = mm->m;
    g4_error e = { { 0 } };
    g4_workspace *w = g4_workspace_new(m, 4, 1, 1, &e);
    g4_seq *s = g4_seq_new(m, 6, 4, &e), *s2 = g4_seq_new(m, 6, 4, &e), *so = g4_seq_new(other->m, 6, 4, &e);
    int32_t tok[5] = { 1, 2, 3, 4, 5 }, pos[5] = { 0, 2, 3, 4, 5 };
    g4_batch b = { .n = 2, .tokens = tok, .pos = pos, .seq0 = s };
    CHECK(g4_forward(w, &b, NULL, 0, &e) < 0 && strstr(e.msg, "continues at 1"));     /* skipped position */
    b.n = 5;
    CHECK(g4_forward(w, &b, NULL, 0, &e) < 0 && strstr(e.msg, "allowed 1..4"));       /* larger than the workspace */
    int32_t bad[1] = { 1 << 30 }, p0[1] = { 0 };
    g4_batch bb = { .n = 1, .tokens = bad, .pos = p0, .seq0 = s };
    CHECK(g4_forward(w, &bb, NULL, 0, &e) < 0 && strstr(e.msg, "outside the vocabulary"));
    g4_batch bo = { .n = 1, .tokens = tok, .pos = p0, .seq0 = so };
    CHECK(g4_forward(w, &bo, NULL, 0, &e) < 0 && strstr(e.msg, "sequence of this model"));
    /* two sequences: each continues its own positions */
    g4_seq *seqs[2] = { s, s2 };
    int32_t p2[2] = { 0, 1 };
    g4_batch bm = { .n = 2, .tokens = tok, .pos = p2, .seq = seqs };
    CHECK(g4_forward(w, &bm, NULL, 0, &e) < 0 && strstr(e.msg, "continues at 0"));
    p2[1] = 0;
    CHECK(g4_forward(w, &bm, NULL, 0, &e) == 0 && s->n_past == 1 && s2->n_past == 1);
    /* a full context is an error, nothing advances */
    int32_t p4[4] = { 1, 2, 3, 4 };
    g4_batch bf = { .n = 4, .tokens = tok, .pos = p4, .seq0 = s };
    CHECK(g4_forward(w, &bf, NULL, 0, &e) == 0 && s->n_past == 5);
    int32_t p5[2] = { 5, 6 };
    g4_batch bx = { .n = 2, .tokens = tok, .pos = p5, .seq0 = s };
    CHECK(g4_forward(w, &bx, NULL, 0, &e) < 0 && strstr(e.msg, "context full") && s->n_past == 5);
    g4_seq_free(s);
    g4_seq_free(s2);
    g4_seq_free(so);
    g4_workspace_free(w);
    gemma4c_model_free(mm);
    gemma4c_model_free(other);
}

/* Evaluate `n` tokens of sequence s in one batch, logits of every row. */
static int eval_seq(g4_workspace *w, g4_seq *s, const int32_t *tok, int n, float *logits, g4_error *e) {
    int32_t pos[16];
    for (int t = 0; t < n; t++) pos[t] = s->n_past + t;
    g4_batch b = { .n = n, .tokens = tok, .pos = pos, .seq0 = s };
    return g4_forward(w, &b, logits, 1, e);
}

/* Sequences in one paged pool (pages of 4 positions, so batches cross page
 * boundaries): a fork shares its source's pages and both continue
 * differently (the shared partial page is copied on write); a truncated
 * fork continues from an earlier point; each equals its tokens alone. */
TEST(paged_pool_fork_truncate_equal_alone) {
    for (size_t mi = 0; mi < sizeof MODELS / sizeof MODELS[0]; mi++) {
        gemma4c_model *mm = open_golden(MODELS[mi]);
        CHECK(mm);
        if (!mm) continue;
        const g4_model *m = mm->m;
        size_t V = (size_t)m->n_vocab;
        g4_error e = { { 0 } };
        g4_workspace *w = g4_workspace_new(m, 16, 2, 1, &e);
        g4_kv_pool *pool = g4_kv_pool_new(m, 64, 4, 16, 4, &e);
        CHECK(w && pool);
        int32_t a[15], b[15], c[13];
        for (int i = 0; i < 15; i++) a[i] = b[i] = (int32_t)((i * 29 + 7) % m->n_vocab);
        for (int i = 10; i < 15; i++) b[i] = (int32_t)((i * 31 + 1) % m->n_vocab);
        for (int i = 0; i < 13; i++) c[i] = i < 7 ? a[i] : (int32_t)((i * 43 + 2) % m->n_vocab);
        float *ref = malloc(15 * V * sizeof(float)), *got = malloc(16 * V * sizeof(float));
        g4_seq *sa = g4_seq_new_in(pool, &e);
        CHECK(sa && eval_seq(w, sa, a, 6, got, &e) == 0 && eval_seq(w, sa, a + 6, 4, got, &e) == 0);
        g4_seq *sb = g4_seq_fork(sa, &e), *sc = g4_seq_fork(sa, &e);
        CHECK(sb && sc && sb->n_past == 10);
        int used0, total;
        g4_kv_pool_usage(pool, &used0, &total, NULL);
        CHECKF(used0 == 3, "%d pages after 10 positions and two forks", used0);   /* shared, not copied */
        CHECK(g4_seq_truncate(sc, 7) == 0);
        /* A and B continue in one batch; C on its own */
        int32_t tok[10], pos[10];
        g4_seq *seq[10];
        for (int i = 0; i < 5; i++) {
            tok[2 * i] = a[10 + i]; pos[2 * i] = 10 + i; seq[2 * i] = sa;
            tok[2 * i + 1] = b[10 + i]; pos[2 * i + 1] = 10 + i; seq[2 * i + 1] = sb;
        }
        g4_batch bt = { .n = 10, .tokens = tok, .pos = pos, .seq = seq };
        CHECK(g4_forward(w, &bt, got, 1, &e) == 0);
        double da = 0, db = 0, dc = 0;
        CHECK(run_alone(w, m, a, 15, 16, ref) == 0);
        for (int i = 0; i < 5; i++) {
            double d = max_diff(got + (size_t)(2 * i) * V, ref + (size_t)(10 + i) * V, V);
            if (d > da) da = d;
        }
        CHECK(run_alone(w, m, b, 15, 16, ref) == 0);
        for (int i = 0; i < 5; i++) {
            double d = max_diff(got + (size_t)(2 * i + 1) * V, ref + (size_t)(10 + i) * V, V);
            if (d > db) db = d;
        }
        CHECK(eval_seq(w, sc, c + 7, 6, got, &e) == 0);
        CHECK(run_alone(w, m, c, 13, 16, ref) == 0);
        dc = max_diff(got, ref + 7 * V, 6 * V);
        printf("  %-13s paged pool: continued %.2e, fork %.2e, truncated fork %.2e\n", MODELS[mi], da, db, dc);
        CHECK(da <= 3e-5 && db <= 3e-5 && dc <= 3e-5);
        g4_seq_free(sa);
        g4_seq_free(sb);
        g4_seq_free(sc);
        int used, seqs;
        g4_kv_pool_usage(pool, &used, &total, &seqs);
        CHECK(used == 0 && seqs == 0 && total == 16);
        free(ref); free(got);
        g4_kv_pool_free(pool);
        g4_workspace_free(w);
        gemma4c_model_free(mm);
    }
}

/* A pool out of pages or sequences is an error naming it; nothing breaks. */
TEST(pool_limits_are_errors) {
    gemma4c_model *mm = open_golden("gemma4-dense");
    if (!mm) { CHECK(0); return; }
    const g4_model *m = mm->m;
    g4_error e = { { 0 } };
    g4_workspace *w = g4_workspace_new(m, 8, 1, 1, &e);
    g4_kv_pool *pool = g4_kv_pool_new(m, 8, 2, 8, 4, &e);
    g4_seq *x = g4_seq_new_in(pool, &e), *y = g4_seq_new_in(pool, &e);
    CHECK(x && y && !g4_seq_new_in(pool, &e) && strstr(e.msg, "sequences"));
    int32_t tok[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    float *l = malloc(8 * (size_t)m->n_vocab * sizeof(float));
    CHECK(eval_seq(w, x, tok, 8, l, &e) == 0);
    CHECK(eval_seq(w, y, tok, 1, l, &e) < 0 && strstr(e.msg, "KV cache full") && y->n_past == 0);
    CHECK(g4_seq_truncate(x, 0) == 0);     /* gives its pages back */
    CHECK(eval_seq(w, y, tok, 4, l, &e) == 0 && y->n_past == 4);
    free(l);
    g4_seq_free(x);
    g4_seq_free(y);
    g4_kv_pool_free(pool);
    g4_workspace_free(w);
    gemma4c_model_free(mm);
}

TEST(thread_pool_is_shared) {
    g4_pool *a = g4_pool_acquire(3), *b = g4_pool_acquire(3), *c = g4_pool_acquire(2);
    CHECK(a && a == b && c && c != a && g4_pool_size(a) == 3 && g4_pool_size(c) == 2);
    g4_pool_release(a);
    g4_pool_release(c);
    g4_pool *d = g4_pool_acquire(3);      /* still held by b: the same pool */
    CHECK(d == b);
    g4_pool_release(d);
    g4_pool_release(b);
    /* two contexts of one model share the workers */
    gemma4c_model *mm = open_golden("gemma4-e");
    if (!mm) { CHECK(0); return; }
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_threads = 2;
    p.n_ctx = 32;
    gemma4c_context *c1 = gemma4c_context_new(mm, &p, NULL, 0), *c2 = gemma4c_context_new(mm, &p, NULL, 0);
    CHECK(c1 && c2);
    int32_t t[3] = { 2, 5, 7 };
    CHECK(gemma4c_eval(c1, t, 3, 0, NULL, 0) == 0 && gemma4c_eval(c2, t, 3, 0, NULL, 0) == 0);
    CHECK(memcmp(gemma4c_logits_last(c1), gemma4c_logits_last(c2), (size_t)gemma4c_n_vocab(c1) * 4) == 0);
    gemma4c_context_free(c1);
    gemma4c_context_free(c2);
    gemma4c_model_free(mm);
}

int main(void) {
    RUN(mask_ranges);
    RUN(mixed_batch_equals_alone);
    RUN(embedding_rows_equal_token_ids);
    RUN(bidirectional_run_sees_later_tokens);
    RUN(bad_batches_are_errors);
    RUN(paged_pool_fork_truncate_equal_alone);
    RUN(pool_limits_are_errors);
    RUN(thread_pool_is_shared);
    return test_summary();
}
