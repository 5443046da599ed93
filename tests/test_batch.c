/* Many sequences in one context, through the public API only: for every
 * reference model (GGUF files and HF folders), sequences that start and stop
 * at different steps, are forked and truncated, decoded together in mixed
 * batches, each get the logits and greedy tokens of the same sequence
 * evaluated alone (exact path). */
#include "harness.h"

#include <stdint.h>
#include <unistd.h>

#include "gemma4c.h"

enum { NSEQ = 4, MAXOPS = 64, MAXTOK = 32 };

/* What happened to one sequence: feeds (tokens, and the logits of the last
 * one) and truncations, replayed alone afterwards. */
typedef struct op { int trunc; int n; int32_t tok[MAXTOK]; float *logits; } op;
typedef struct seqlog { op ops[MAXOPS]; int n_ops, active; int32_t next; } seqlog;

static int32_t argmax(const float *l, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++) if (l[i] > l[b]) b = i;
    return b;
}

static double max_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static op *add_feed(seqlog *s, const int32_t *tok, int n) {
    op *o = &s->ops[s->n_ops++];
    memset(o, 0, sizeof *o);
    o->n = n;
    memcpy(o->tok, tok, (size_t)n * sizeof *tok);
    return o;
}

/* One step: every active sequence's pending tokens in one batch. */
static int step(gemma4c_context *c, seqlog *L, int32_t pend[NSEQ][MAXTOK], int npend[NSEQ], int V, char *err) {
    int32_t tok[NSEQ * MAXTOK], seq[NSEQ * MAXTOK];
    int8_t keep[NSEQ * MAXTOK];
    int n = 0, last[NSEQ];
    /* interleave the sequences token by token: a real scheduler's worst case */
    for (int k = 0; k < MAXTOK; k++)
        for (int s = 0; s < NSEQ; s++)
            if (k < npend[s]) { tok[n] = pend[s][k]; seq[n] = s; keep[n] = k == npend[s] - 1; last[s] = n; n++; }
    if (!n) return 0;
    gemma4c_batch b = { .n_tokens = n, .token = tok, .seq = seq, .logits = keep };
    if (gemma4c_decode(c, &b, err, 600)) return -1;
    for (int s = 0; s < NSEQ; s++) {
        if (!npend[s]) continue;
        op *o = add_feed(&L[s], pend[s], npend[s]);
        o->logits = malloc((size_t)V * sizeof(float));
        memcpy(o->logits, gemma4c_logits_ith(c, last[s]), (size_t)V * sizeof(float));
        L[s].next = argmax(o->logits, V);
        npend[s] = 0;
    }
    return 0;
}

/* Replay a log in a fresh one-sequence context: max logit difference, or -1. */
static double replay(gemma4c_model *m, const seqlog *L, int V, int *greedy_ok) {
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_ctx = 128; p.n_batch = 32; p.n_threads = 2; p.precision = GEMMA4C_PREC_EXACT;
    char err[600];
    gemma4c_context *c = gemma4c_context_new(m, &p, err, sizeof err);
    if (!c) return -1;
    double worst = 0;
    for (int i = 0; i < L->n_ops; i++) {
        const op *o = &L->ops[i];
        if (o->trunc >= 0 && o->n == 0) { if (gemma4c_truncate(c, o->trunc)) { worst = -1; break; } continue; }
        if (gemma4c_eval(c, o->tok, o->n, 0, err, sizeof err)) { worst = -1; break; }
        const float *l = gemma4c_logits_last(c);
        double d = max_diff(l, o->logits, V);
        if (!(d <= worst)) worst = d;
        if (argmax(l, V) != argmax(o->logits, V)) *greedy_ok = 0;
    }
    gemma4c_context_free(c);
    return worst;
}

static void free_log(seqlog *L) {
    for (int i = 0; i < L->n_ops; i++) free(L->ops[i].logits);
}

static void scenario(const char *path) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(path, err, sizeof err);
    CHECKF(m, "%s: %s", path, err);
    if (!m) return;
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_ctx = 128; p.n_batch = 16; p.n_threads = 2; p.precision = GEMMA4C_PREC_EXACT; p.n_seq = NSEQ;
    gemma4c_context *c = gemma4c_context_new(m, &p, err, sizeof err);
    CHECKF(c, "%s", err);
    if (!c) { gemma4c_model_free(m); return; }
    int V = gemma4c_n_vocab(c);
    static seqlog L[NSEQ];
    memset(L, 0, sizeof L);
    int32_t pend[NSEQ][MAXTOK];
    int npend[NSEQ] = { 0 };
    int ok = 1;
    for (int st = 0; st < 14 && ok; st++) {
        for (int s = 0; s < NSEQ; s++) {
            /* starts: seq 0 at step 0 (7 tokens), 1 at step 2 (12), 2 at step 1 (3) */
            int start_len = st == 0 && s == 0 ? 7 : st == 2 && s == 1 ? 12 : st == 1 && s == 2 ? 3 : 0;
            if (start_len) {
                for (int k = 0; k < start_len; k++) pend[s][k] = (int32_t)((s * 97 + k * 31 + 2) % V);
                npend[s] = start_len;
                L[s].active = 1;
            } else if (L[s].active) {
                pend[s][0] = L[s].next;          /* greedy */
                npend[s] = 1;
            }
        }
        if (st == 5) {          /* seq 2 stops; its id is reused for a new prompt at step 7 */
            npend[2] = 0;
            L[2].active = 0;
            CHECK(gemma4c_seq_truncate(c, 2, 0) == 0);
            free_log(&L[2]);
            memset(&L[2], 0, sizeof L[2]);
        }
        if (st == 7) {
            for (int k = 0; k < 5; k++) pend[2][k] = (int32_t)((k * 13 + 40) % V);
            npend[2] = 5;
            L[2].active = 1;
        }
        if (st == 4) {          /* seq 3 = fork of seq 0, then fed its own token */
            CHECK(gemma4c_seq_fork(c, 0, 3, err, sizeof err) == 0);
            CHECK(gemma4c_seq_n_past(c, 3) == gemma4c_seq_n_past(c, 0));
            L[3] = L[0];
            for (int i = 0; i < L[3].n_ops; i++) {
                if (!L[0].ops[i].logits) continue;
                L[3].ops[i].logits = malloc((size_t)V * sizeof(float));
                memcpy(L[3].ops[i].logits, L[0].ops[i].logits, (size_t)V * sizeof(float));
            }
            L[3].active = 1;
            pend[3][0] = (int32_t)(V / 3);
            npend[3] = 1;
        }
        if (st == 9) {          /* seq 1 goes back 2 positions and takes another way */
            int n = gemma4c_seq_n_past(c, 1) - 2;
            CHECK(gemma4c_seq_truncate(c, 1, n) == 0);
            op *o = &L[1].ops[L[1].n_ops++];
            memset(o, 0, sizeof *o);
            o->trunc = n;
            pend[1][0] = 5;
            npend[1] = 1;
        }
        if (step(c, L, pend, npend, V, err)) { CHECKF(0, "%s step %d: %s", path, st, err); ok = 0; }
    }
    for (int s = 0; s < NSEQ && ok; s++) {
        for (int i = 0; i < L[s].n_ops; i++) if (L[s].ops[i].n) L[s].ops[i].trunc = -1;
        int greedy_ok = 1;
        double d = replay(m, &L[s], V, &greedy_ok);
        CHECKF(d >= 0 && d <= 3e-5 && greedy_ok, "%s seq %d: max %.3g greedy %d", path, s, d, greedy_ok);
        if (s == 0) printf("  %-40s", strrchr(path, '/') + 1);
        printf(" seq%d %.1e", s, d);
    }
    printf("\n");
    int used, total;
    gemma4c_kv_usage(c, &used, &total);
    CHECK(used > 0 && used <= total);
    for (int s = 0; s < NSEQ; s++) free_log(&L[s]);
    gemma4c_context_free(c);
    gemma4c_model_free(m);
}

TEST(mixed_sequences_equal_alone_every_model) {
    char dir[1024], *names[128];
    int n = th_ref_models(dir, sizeof dir, names, 128);
    CHECK(n >= 0);
    if (n < 0) return;
    CHECK(n >= 20);
    for (int i = 0; i < n; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        scenario(path);
        free(names[i]);
    }
}

TEST(hostile_sequence_use) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path("testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    CHECK(m);
    if (!m) return;
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_ctx = 16; p.n_batch = 4; p.n_threads = 1; p.n_seq = 2;
    gemma4c_context *c = gemma4c_context_new(m, &p, err, sizeof err);
    CHECK(c && gemma4c_n_seq(c) == 2);
    int32_t tok[6] = { 2, 3, 4, 5, 6, 7 }, seq[6] = { 0, 5, 0, 0, 0, 0 }, pos[6] = { 0, 3, 0, 0, 0, 0 };
    gemma4c_batch b = { .n_tokens = 2, .token = tok, .seq = seq };
    CHECK(gemma4c_decode(c, &b, err, sizeof err) < 0 && strstr(err, "sequence id 5 out of range"));
    seq[1] = 1;
    b.pos = pos;
    CHECK(gemma4c_decode(c, &b, err, sizeof err) < 0 && strstr(err, "continues at 0"));   /* skipped positions */
    b.pos = NULL;
    b.n_tokens = 0;
    CHECK(gemma4c_decode(c, &b, err, sizeof err) < 0);
    CHECK(gemma4c_seq_fork(c, 0, 9, err, sizeof err) < 0 && strstr(err, "out of range"));
    CHECK(gemma4c_seq_truncate(c, 1, 3) < 0 && gemma4c_seq_truncate(c, -1, 0) < 0);
    CHECK(gemma4c_seq_n_past(c, 7) == -1);
    /* a batch longer than n_batch is split into passes */
    int32_t many[6] = { 2, 3, 4, 5, 6, 7 };
    gemma4c_batch lb = { .n_tokens = 6, .token = many };
    CHECK(gemma4c_decode(c, &lb, err, sizeof err) == 0 && gemma4c_seq_n_past(c, 0) == 6);
    CHECK(gemma4c_logits_ith(c, 5) && !gemma4c_logits_ith(c, 4) && !gemma4c_logits_ith(c, 6));
    /* the context fills: an error, the sequence stays where it was */
    int32_t more[12] = { 0 };
    gemma4c_batch fb = { .n_tokens = 12, .token = more };
    CHECK(gemma4c_decode(c, &fb, err, sizeof err) < 0 && strstr(err, "context full"));
    CHECK(gemma4c_seq_n_past(c, 0) <= 16);
    gemma4c_context_free(c);
    gemma4c_model_free(m);
}

/* Last-token logits of tokens[0..n) in a fresh one-sequence context. */
static int recompute(gemma4c_model *m, const int32_t *tok, int n, float *out, int V) {
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_ctx = 128; p.n_batch = 8; p.n_threads = 2; p.precision = GEMMA4C_PREC_EXACT;
    gemma4c_context *c = gemma4c_context_new(m, &p, NULL, 0);
    int rc = c && gemma4c_eval(c, tok, n, 0, NULL, 0) == 0 ? 0 : -1;
    if (!rc) memcpy(out, gemma4c_logits_last(c), (size_t)V * sizeof(float));
    gemma4c_context_free(c);
    return rc;
}

/* Load tokens into seq 1 from the cache, evaluate the rest, compare with a
 * recompute; returns the tokens reused (-1 on failure). */
static int load_and_check(gemma4c_context *c, gemma4c_model *m, const int32_t *tok, int n, const char *what) {
    char err[600];
    int V = gemma4c_n_vocab(c);
    gemma4c_prefix_stats a, b;
    gemma4c_prefix_stats_get(c, &a);
    int k = gemma4c_prefix_load(c, 1, tok, n, err, sizeof err);
    CHECKF(k >= 0, "%s: %s", what, err);
    if (k < 0) return -1;
    CHECK(gemma4c_seq_n_past(c, 1) == k);
    int32_t seq[64];
    for (int i = 0; i < n - k; i++) seq[i] = 1;
    gemma4c_batch bt = { .n_tokens = n - k, .token = tok + k, .seq = seq };
    CHECKF(gemma4c_decode(c, &bt, err, sizeof err) == 0, "%s: %s", what, err);
    gemma4c_prefix_stats_get(c, &b);
    /* the hit skipped the computation: only the rest went through the model */
    CHECKF(b.tokens_evaluated - a.tokens_evaluated == (uint64_t)(n - k), "%s: evaluated %llu of %d (reused %d)",
           what, (unsigned long long)(b.tokens_evaluated - a.tokens_evaluated), n, k);
    float *ref = malloc((size_t)V * sizeof(float));
    CHECK(recompute(m, tok, n, ref, V) == 0);
    double d = max_diff(gemma4c_logits_ith(c, n - k - 1), ref, V);
    CHECKF(d <= 3e-5, "%s: reuse vs recompute %g", what, d);
    free(ref);
    return k;
}

TEST(prefix_cache_reuse_equals_recompute) {
    static const char *models[] = { "gemma4-e.gguf", "gemma4-dense.gguf", "gemma4-moe.gguf" };
    for (size_t mi = 0; mi < 3; mi++) {
        char err[600], rel[128];
        snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s", models[mi]);
        gemma4c_model *m = gemma4c_model_open(shared_path(rel), err, sizeof err);
        CHECK(m);
        if (!m) continue;
        gemma4c_context_params p = gemma4c_context_default_params();
        /* n_batch 8, window 8: a snapshot serves divergences up to 7 positions back */
        p.n_ctx = 128; p.n_batch = 8; p.n_threads = 2; p.precision = GEMMA4C_PREC_EXACT;
        p.n_seq = 2; p.n_prefix = 2;
        gemma4c_context *c = gemma4c_context_new(m, &p, err, sizeof err);
        CHECKF(c, "%s", err);
        if (!c) { gemma4c_model_free(m); continue; }
        int V = gemma4c_n_vocab(c);
        int32_t a[20], t[40];
        for (int i = 0; i < 20; i++) a[i] = (int32_t)((i * 37 + 3) % V);
        CHECK(gemma4c_eval(c, a, 20, 0, err, sizeof err) == 0);
        CHECK(gemma4c_prefix_store(c, 0, err, sizeof err) == 0);
        /* 1. the whole snapshot, then 6 new tokens */
        memcpy(t, a, sizeof a);
        for (int i = 20; i < 26; i++) t[i] = (int32_t)((i * 11 + 5) % V);
        CHECK(load_and_check(c, m, t, 26, "continuation") == 20);
        /* 2. diverging 3 positions before the snapshot's end: inside the window */
        for (int i = 17; i < 22; i++) t[i] = (int32_t)((a[i % 20] + 1 + i) % V);   /* differs from a */
        CHECK(load_and_check(c, m, t, 22, "divergence inside the window") == 17);
        /* 3. diverging 15 back: the rings no longer hold it; recomputed, never wrong */
        for (int i = 5; i < 15; i++) t[i] = (int32_t)((a[i] + 2) % V);
        CHECK(load_and_check(c, m, t, 15, "divergence outside the window") == 0);
        /* 4. the identical prompt: all but the last token reused */
        CHECK(load_and_check(c, m, a, 20, "same prompt") == 19);
        gemma4c_prefix_stats st;
        gemma4c_prefix_stats_get(c, &st);
        CHECK(st.lookups == 4 && st.hits == 3 && st.tokens_reused == 20 + 17 + 19 && st.entries == 1);
        /* LRU: two more snapshots evict the oldest (a); its prompt finds nothing */
        int32_t b2[10], c2[10];
        for (int i = 0; i < 10; i++) { b2[i] = (int32_t)(i + 100); c2[i] = (int32_t)(i + 200); }
        gemma4c_reset(c);
        CHECK(gemma4c_eval(c, b2, 10, 0, err, sizeof err) == 0 && gemma4c_prefix_store(c, 0, err, sizeof err) == 0);
        gemma4c_reset(c);
        CHECK(gemma4c_eval(c, c2, 10, 0, err, sizeof err) == 0 && gemma4c_prefix_store(c, 0, err, sizeof err) == 0);
        gemma4c_prefix_stats_get(c, &st);
        CHECK(st.entries == 2 && st.evictions == 1);
        CHECK(load_and_check(c, m, a, 20, "evicted") == 0);
        CHECK(load_and_check(c, m, b2, 10, "kept") == 9);
        gemma4c_context_free(c);
        gemma4c_model_free(m);
        printf("  %s: reuse equals recompute (continuation, divergence in/outside the window, LRU)\n",
               models[mi]);
    }
}

/* Snapshots give their pages back when sequences need them. */
TEST(prefix_cache_yields_pages) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path("testdata/gemma4-ref/gemma4-dense.gguf"), err, sizeof err);
    if (!m) { CHECK(0); return; }
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_ctx = 32; p.n_batch = 8; p.n_threads = 1; p.n_seq = 2; p.n_prefix = 4;
    gemma4c_context *c = gemma4c_context_new(m, &p, err, sizeof err);
    CHECK(c);
    int32_t t[32];
    for (int i = 0; i < 32; i++) t[i] = i + 2;
    /* a snapshot of 30 positions shares pages; overwriting them (after a
     * reset) needs new pages, which only the snapshot can give back */
    CHECK(gemma4c_eval(c, t, 30, 0, err, sizeof err) == 0 && gemma4c_prefix_store(c, 0, err, sizeof err) == 0);
    gemma4c_reset(c);
    for (int i = 0; i < 32; i++) t[i] = 300 + i;
    CHECKF(gemma4c_eval(c, t, 30, 0, err, sizeof err) == 0, "%s", err);
    gemma4c_prefix_stats st;
    gemma4c_prefix_stats_get(c, &st);
    CHECK(st.evictions == 1 && st.entries == 0);
    CHECK(gemma4c_prefix_store(c, 5, err, sizeof err) < 0);
    gemma4c_context_free(c);
    gemma4c_model_free(m);
}

/* The fast path, bit for bit: a token's logits do not depend on what else is
 * in its forward pass. A sequence 92 tokens deep continues token by token
 * (decode, T = 1; attention split into parts by length, crossing 96); the
 * same continuation as one batch (a speculative verify, T = 9), and token by
 * token after a shorter sequence in the same pass (batched decode, T = 2),
 * give the same logits, memcmp equal; on a K-quant (Q4_K_M) and a Q8_0
 * model, f16 cache. */
enum { INV_P = 92, INV_D = 9, INV_O = 40 };

static gemma4c_context *inv_ctx(gemma4c_model *m, int n_seq) {
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_ctx = 256; p.n_batch = 128; p.n_threads = 2; p.precision = GEMMA4C_PREC_FAST; p.n_seq = n_seq;
    return gemma4c_context_new(m, &p, NULL, 0);
}

static int inv_same(const float *a, const float *b, int V) {
    for (int i = 0; i < V; i++)
        if (memcmp(&a[i], &b[i], sizeof a[i])) return i;
    return -1;
}

TEST(fast_logits_independent_of_batch) {
    static const char *TYPES[] = { "Q4_K_M", "Q8_0" };
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        char path[256], err[600];
        snprintf(path, sizeof path, "/tmp/g4-inv-%d.gguf", (int)getpid());
        gemma4c_write_params wp = { 0 };
        wp.n_threads = 2;
        wp.force = 1;
        gemma4c_model *m = NULL;
        if (gemma4c_synth(path, "tiny", TYPES[ti], 3, &wp, err, sizeof err) || !(m = gemma4c_model_open(path, err, sizeof err))) {
            CHECKF(0, "tiny %s: %s", TYPES[ti], err);
            unlink(path);
            continue;
        }
        int32_t tok[INV_P + INV_D], other[INV_O + INV_D];
        for (int i = 0; i < INV_P + INV_D; i++) tok[i] = 10 + (i * 37) % 250;
        for (int i = 0; i < INV_O + INV_D; i++) other[i] = 20 + (i * 53) % 240;
        gemma4c_context *a = inv_ctx(m, 1), *b = inv_ctx(m, 1), *c = inv_ctx(m, 2);
        CHECK(a && b && c);
        if (!a || !b || !c) goto next;
        const int V = gemma4c_n_vocab(a);
        float *alone = malloc((size_t)INV_D * V * sizeof *alone);
        /* alone: the prompt, then one token per pass */
        CHECK(gemma4c_eval(a, tok, INV_P, 0, err, sizeof err) == 0);
        for (int d = 0; d < INV_D; d++) {
            CHECK(gemma4c_eval(a, tok + INV_P + d, 1, 0, err, sizeof err) == 0);
            memcpy(alone + (size_t)d * V, gemma4c_logits_last(a), (size_t)V * sizeof *alone);
        }
        /* the continuation in one pass, logits for every token */
        CHECK(gemma4c_eval(b, tok, INV_P, 0, err, sizeof err) == 0);
        CHECK(gemma4c_eval(b, tok + INV_P, INV_D, 1, err, sizeof err) == 0);
        for (int d = 0; d < INV_D; d++) {
            const float *l = gemma4c_logits(b, d);
            int at = l ? inv_same(l, alone + (size_t)d * V, V) : 0;
            CHECKF(at < 0, "%s: token %d of a %d-token pass differs from decode at logit %d", TYPES[ti], d, INV_D, at);
        }
        /* after a shorter sequence in the same passes */
        int32_t os[INV_O], zs[INV_P];
        for (int i = 0; i < INV_O; i++) os[i] = 1;
        for (int i = 0; i < INV_P; i++) zs[i] = 0;
        gemma4c_batch ob = { .n_tokens = INV_O, .token = other, .seq = os };
        gemma4c_batch pb = { .n_tokens = INV_P, .token = tok, .seq = zs };
        CHECK(gemma4c_decode(c, &ob, err, sizeof err) == 0 && gemma4c_decode(c, &pb, err, sizeof err) == 0);
        for (int d = 0; d < INV_D; d++) {
            int32_t st[2] = { other[INV_O + d], tok[INV_P + d] }, ss[2] = { 1, 0 };
            int8_t keep[2] = { 1, 1 };
            gemma4c_batch sb = { .n_tokens = 2, .token = st, .seq = ss, .logits = keep };
            CHECK(gemma4c_decode(c, &sb, err, sizeof err) == 0);
            const float *l = gemma4c_logits_ith(c, 1);
            int at = l ? inv_same(l, alone + (size_t)d * V, V) : 0;
            CHECKF(at < 0, "%s: step %d beside another sequence differs from alone at logit %d", TYPES[ti], d, at);
        }
        free(alone);
    next:
        gemma4c_context_free(a);
        gemma4c_context_free(b);
        gemma4c_context_free(c);
        gemma4c_model_free(m);
        unlink(path);
    }
}

int main(void) {
    RUN(mixed_sequences_equal_alone_every_model);
    RUN(hostile_sequence_use);
    RUN(fast_logits_independent_of_batch);
    RUN(prefix_cache_reuse_equals_recompute);
    RUN(prefix_cache_yields_pages);
    return test_summary();
}
