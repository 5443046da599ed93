/* Speculative decoding through the public API: the sampler's acceptance
 * rule keeps the distribution (goodness of fit against the exact softmax),
 * drafted + rolled-back decoding gives the same logits as plain decoding
 * across sliding-window ring wraps, greedy output is identical with every
 * drafter on every reference model, and sampled output keeps its token
 * distribution (chi-square, many seeds). */
#include "harness.h"

#include <stdint.h>

#include "gemma4c.h"

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)(mix(s) >> 11) * (1.0 / 9007199254740992.0); }

static int32_t argmax(const float *l, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++) if (l[i] > l[b]) b = i;
    return b;
}

/* Chi-square critical value at p = 0.001 (Wilson-Hilferty). */
static double chi2_crit(int df) {
    double z = 3.09, a = 2.0 / (9.0 * df), t = 1 - a + z * sqrt(a);
    return df * t * t * t;
}

/* Goodness of fit of counts[n] (N draws) to probabilities p[n]; bins with an
 * expectation under 5 are pooled. Returns statistic, *df set. */
static double chi2_fit(const long *counts, const double *p, int n, long N, int *df) {
    double x = 0, pe = 0, po = 0;
    int bins = 0;
    *df = 1;
    for (int i = 0; i < n; i++) {
        double e = p[i] * (double)N;
        if (e < 5) { pe += e; po += (double)counts[i]; if (counts[i] && p[i] == 0) return INFINITY; continue; }
        x += (counts[i] - e) * (counts[i] - e) / e;
        bins++;
    }
    if (pe >= 5) { x += (po - pe) * (po - pe) / pe; bins++; }
    *df = bins - 1;
    return x;
}

/* Two samples of equal size: bins with fewer than 10 together pooled. */
static double chi2_two(const long *a, const long *b, int n, int *df) {
    double x = 0, pa = 0, pb = 0;
    int bins = 0;
    *df = 1;
    for (int i = 0; i < n; i++) {
        if (a[i] + b[i] < 10) { pa += (double)a[i]; pb += (double)b[i]; continue; }
        x += (double)(a[i] - b[i]) * (double)(a[i] - b[i]) / (double)(a[i] + b[i]);
        bins++;
    }
    if (pa + pb >= 10) { x += (pa - pb) * (pa - pb) / (pa + pb); bins++; }
    *df = bins - 1;
    return x;
}

/* ---- the acceptance rule on its own ------------------------------------------ */

enum { NV = 40 };

static void exact_p(const float *lg, float temp, int top_k, double *p) {
    int ord[NV];
    for (int i = 0; i < NV; i++) ord[i] = i;
    for (int i = 0; i < NV; i++)            /* selection sort, descending */
        for (int j = i + 1; j < NV; j++)
            if (lg[ord[j]] > lg[ord[i]]) { int t = ord[i]; ord[i] = ord[j]; ord[j] = t; }
    int m = top_k > 0 ? top_k : NV;
    double s = 0;
    for (int i = 0; i < NV; i++) p[i] = 0;
    for (int i = 0; i < m; i++) s += p[ord[i]] = exp((double)lg[ord[i]] / temp - (double)lg[ord[0]] / temp);
    for (int i = 0; i < m; i++) p[ord[i]] /= s;
}

TEST(acceptance_rule_keeps_the_distribution) {
    uint64_t r = 42;
    float lg[NV];
    for (int i = 0; i < NV; i++) lg[i] = (float)(4 * unif(&r) - 2);
    lg[7] = 3.0f;                                    /* a likely token */
    struct { float temp; int top_k; } cfg[] = { { 1.0f, 0 }, { 0.7f, 10 } };
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        double p[NV];
        exact_p(lg, cfg[c].temp, cfg[c].top_k, p);
        gemma4c_sampler_params sp = gemma4c_sampler_default_params();
        sp.temperature = cfg[c].temp; sp.top_k = cfg[c].top_k; sp.top_p = 1.0f; sp.seed = 7 + c;
        /* deterministic drafts: likely, unlikely, outside top-k; then a random q */
        int32_t drafts[] = { 7, 3, -1 };
        for (int mode = 0; mode < 4; mode++) {
            gemma4c_sampler *s = gemma4c_sampler_new(&sp);
            long counts[NV] = { 0 }, acc = 0;
            const long N = 60000;
            float q[NV];
            double qs = 0;
            for (int i = 0; i < NV; i++) qs += q[i] = (float)(unif(&r) + (i == 7 ? 3 : 0));
            for (int i = 0; i < NV; i++) q[i] = (float)(q[i] / qs);
            int32_t outside = 0;
            while (p[outside] > 0 && outside < NV - 1) outside++;
            for (long k = 0; k < N; k++) {
                int32_t d;
                if (mode < 3) d = drafts[mode] < 0 ? outside : drafts[mode];
                else {                             /* d ~ q */
                    double u = unif(&r), cum = 0;
                    d = NV - 1;
                    for (int i = 0; i < NV; i++) { cum += q[i]; if (u < cum) { d = i; break; } }
                }
                int a = -1;
                int32_t t = gemma4c_sampler_sample_draft(s, lg, NV, d, mode == 3 ? q : NULL, &a);
                CHECK(t >= 0 && t < NV && (a == 0 || a == 1) && (!a || t == d));
                if (t < 0 || t >= NV) break;
                counts[t]++;
                acc += a;
            }
            int df;
            double x = chi2_fit(counts, p, NV, N, &df);
            CHECKF(x < chi2_crit(df), "cfg %zu mode %d: chi2 %.1f df %d (crit %.1f)", c, mode, x, df, chi2_crit(df));
            /* a one-hot drafter keeps its draft with probability p(draft) */
            if (mode < 3) {
                int32_t d = drafts[mode] < 0 ? outside : drafts[mode];
                double pd = p[d], sd = sqrt(pd * (1 - pd) / (double)N);
                CHECKF(fabs((double)acc / (double)N - pd) <= 5 * sd + 1e-9, "mode %d: accepted %ld of %ld, p %.4f",
                       mode, acc, N, pd);
            }
            gemma4c_sampler_free(s);
        }
    }
    /* greedy: kept iff it is the argmax, no randomness */
    gemma4c_sampler_params g = gemma4c_sampler_default_params();
    g.temperature = 0;
    gemma4c_sampler *s = gemma4c_sampler_new(&g);
    int a;
    CHECK(gemma4c_sampler_sample_draft(s, lg, NV, 7, NULL, &a) == 7 && a == 1);
    CHECK(gemma4c_sampler_sample_draft(s, lg, NV, 3, NULL, &a) == 7 && a == 0);
    CHECK(gemma4c_sampler_sample_draft(s, lg, NV, -5, NULL, &a) == 7 && a == 0);   /* hostile draft id */
    CHECK(gemma4c_sampler_sample_draft(s, lg, NV, 1 << 30, NULL, &a) == 7 && a == 0);
    gemma4c_sampler_free(s);
}

/* ---- verification and rollback ------------------------------------------------ */

static int read_prompt(const char *name, int32_t *ids, int cap) {
    char rel[256];
    snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s.tokens.txt", name);
    char *t = th_read_file(shared_path(rel), NULL);
    if (!t) return -1;
    int n = 0;
    char *p = t, *end;
    for (long v; n < cap && (v = strtol(p, &end, 10), end != p); p = end) ids[n++] = (int32_t)v;
    free(t);
    return n;
}

/* Decode [t, junk...] in one pass, keep t and r of the junk (as if r drafts
 * were accepted), drop the rest; a plain context evaluates the same tokens
 * one by one. With n_batch = k + 1 the rollback uses the sliding rings'
 * whole slack, and the window (8) wraps many times: a ring slot of a
 * position still needed, overwritten by a rejected draft, would show. */
TEST(rollback_gives_plain_logits) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path("testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    CHECK(m);
    if (!m) return;
    int32_t prompt[64];
    int np = read_prompt("gemma4-e", prompt, 64);
    CHECK(np > 8);
    enum { K = 4 };
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = 256; cp.n_batch = K + 1; cp.n_threads = 1; cp.precision = GEMMA4C_PREC_EXACT;
    gemma4c_context *a = gemma4c_context_new(m, &cp, err, sizeof err), *b = gemma4c_context_new(m, &cp, err, sizeof err);
    CHECK(a && b);
    if (!a || !b) goto out;
    CHECK(gemma4c_eval(a, prompt, np, 0, err, sizeof err) == 0 && gemma4c_eval(b, prompt, np, 0, err, sizeof err) == 0);
    int V = gemma4c_n_vocab(a);
    uint64_t r = 5;
    double worst = 0;
    int32_t t = argmax(gemma4c_logits_last(b), V);
    int8_t keep[K + 1];
    memset(keep, 1, sizeof keep);
    for (int step = 0; step < 40 && gemma4c_n_past(a) + K + 1 <= cp.n_ctx; step++) {
        int32_t toks[K + 1] = { t };
        for (int i = 1; i <= K; i++) toks[i] = 5 + (int32_t)(mix(&r) % (uint64_t)(V - 5));
        int base = gemma4c_n_past(a), kept = (int)(mix(&r) % (K + 1));
        gemma4c_batch bt = { .n_tokens = K + 1, .token = toks, .logits = keep };
        CHECK(gemma4c_decode(a, &bt, err, sizeof err) == 0);
        float rows[K + 1][512];
        for (int i = 0; i <= kept; i++) memcpy(rows[i], gemma4c_logits_ith(a, i), sizeof rows[i]);
        CHECK(gemma4c_seq_truncate(a, 0, base + 1 + kept) == 0);
        for (int i = 0; i <= kept; i++) {
            CHECK(gemma4c_eval(b, &toks[i], 1, 0, err, sizeof err) == 0);
            const float *l = gemma4c_logits_last(b);
            for (int v = 0; v < V; v++) {
                double d = fabs((double)l[v] - (double)rows[i][v]);
                if (!(d <= worst)) worst = d;
            }
        }
        t = argmax(gemma4c_logits_last(b), V);
    }
    CHECKF(worst < 1e-4, "max logit difference %g", worst);
    /* a rollback past the rings' slack (n_batch positions: the ring keeps
     * window - 1 + n_batch) is refused, not wrong */
    int32_t five[K + 1] = { 9, 10, 11, 12, 13 };
    int base = gemma4c_n_past(a);
    CHECK(gemma4c_eval(a, five, K + 1, 0, err, sizeof err) == 0);
    CHECK(gemma4c_eval(a, five, K + 1, 0, err, sizeof err) == 0);
    CHECK(gemma4c_seq_truncate(a, 0, base + K) < 0 && gemma4c_n_past(a) == base + 2 * (K + 1));
    CHECK(gemma4c_seq_truncate(a, 0, base + K + 1) == 0);
    /* a ring as long as the context never wraps: any rollback is fine */
    cp.n_ctx = 7 + cp.n_batch;    /* window 8: the ring is capped at the context */
    gemma4c_context *w = gemma4c_context_new(m, &cp, err, sizeof err);
    CHECK(w && gemma4c_eval(w, prompt, cp.n_ctx, 0, err, sizeof err) == 0);
    CHECK(w && gemma4c_seq_truncate(w, 0, 1) == 0);
    gemma4c_context_free(w);
out:
    gemma4c_context_free(a);
    gemma4c_context_free(b);
    gemma4c_model_free(m);
}

/* ---- greedy identity ---------------------------------------------------------- */

enum { NGEN = 40 };

typedef struct collect { int32_t tok[NGEN + 1]; int n; } collect;
static int on_tok(void *u, int32_t t) {
    collect *c = u;
    if (c->n < NGEN + 1) c->tok[c->n++] = t;
    return 0;
}

/* Test drafter: the target's own greedy continuation (from a plain run),
 * each token with probability a, else a wrong one. */
typedef struct forced { const int32_t *ref; int n_ref, n_prompt, V; double a; uint64_t rng; } forced;
static int draft_forced(void *u, const int32_t *hist, int nh, int32_t *out, int max) {
    forced *f = u;
    int at = nh - f->n_prompt;       /* hist[nh-1] is generated token at - 1 */
    int k = 0;
    for (; k < max && at + k < f->n_ref; k++) {
        int32_t good = f->ref[at + k];
        out[k] = unif(&f->rng) < f->a ? good : (good + 1 + (int32_t)(mix(&f->rng) % 7)) % f->V;
    }
    return k;
}

static int run_gen(gemma4c_model *m, const int32_t *prompt, int np, int n_batch, int exact, gemma4c_draft_params dp,
                   collect *out, gemma4c_draft_stats *st, char *err) {
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = np + NGEN + 8; cp.n_batch = n_batch; cp.n_threads = 1;
    cp.precision = exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    gemma4c_context *c = gemma4c_context_new(m, &cp, err, 600);
    if (!c) return -1;
    gemma4c_sampler_params sp = gemma4c_sampler_default_params();
    sp.temperature = 0;
    gemma4c_sampler *s = gemma4c_sampler_new(&sp);
    int rc = gemma4c_eval(c, prompt, np, 0, err, 600);
    memset(out, 0, sizeof *out);
    gemma4c_generate_params gp = { .n_predict = NGEN, .on_token = on_tok, .user = out, .draft = dp, .stats = st };
    if (!rc) rc = gemma4c_generate(c, s, &gp, err, 600) == GEMMA4C_FINISH_LENGTH ? 0 : -1;
    /* the cache holds every token but the last, as plain decoding leaves it */
    if (!rc && gemma4c_n_past(c) != np + NGEN - 1) rc = -2;
    gemma4c_sampler_free(s);
    gemma4c_context_free(c);
    return rc;
}

static void greedy_identity(const char *path, const int32_t *prompt, int np) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(path, err, sizeof err);
    CHECKF(m, "%s: %s", path, err);
    if (!m) return;
    int V = 0;
    {
        gemma4c_model_info mi;
        gemma4c_model_get_info(m, &mi);
        V = mi.n_vocab;
    }
    for (int exact = 0; exact < 2; exact++) {
        /* the reference is plain decoding with the same batch size: a prompt
         * split into other chunks may round differently in the fast path
         * (gemma4-kq.Q3_K_M's first token is a 0.01 near-tie) */
        struct { int kind, max, ngram, n_batch; double a; } cases[] = {
            { GEMMA4C_DRAFT_NGRAM, 4, 2, 64, 0 }, { GEMMA4C_DRAFT_NGRAM, 8, 1, 9, 0 },
            { GEMMA4C_DRAFT_CUSTOM, 4, 0, 5, 1.0 }, { GEMMA4C_DRAFT_CUSTOM, 4, 0, 5, 0.75 },
            { GEMMA4C_DRAFT_CUSTOM, 8, 0, 64, 0.5 }, { GEMMA4C_DRAFT_CUSTOM, 3, 0, 2, 0.5 },
        };
        collect refs[4];
        int ref_nb[4], n_ref = 0;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            int r = 0;
            while (r < n_ref && ref_nb[r] != cases[i].n_batch) r++;
            if (r == n_ref) {
                gemma4c_draft_params none = { 0 };
                ref_nb[n_ref++] = cases[i].n_batch;
                CHECKF(run_gen(m, prompt, np, cases[i].n_batch, exact, none, &refs[r], NULL, err) == 0, "%s: %s",
                       path, err);
            }
            const collect *ref = &refs[r];
            forced f = { ref->tok, ref->n, np, V, cases[i].a, 99 + i };
            gemma4c_draft_params dp = { cases[i].kind, cases[i].max, cases[i].ngram, draft_forced, &f, NULL };
            gemma4c_draft_stats st = { 0 };
            collect got;
            int rc = run_gen(m, prompt, np, cases[i].n_batch, exact, dp, &got, &st, err);
            CHECKF(rc == 0, "%s case %zu: rc %d %s", path, i, rc, err);
            int same = got.n == ref->n && !memcmp(got.tok, ref->tok, (size_t)ref->n * sizeof *ref->tok);
            CHECKF(same, "%s exact %d case %zu: drafted output differs", path, exact, i);
            if (cases[i].a == 1.0) {
                CHECKF(st.accepted == st.drafted && st.drafted > 0 && st.steps < NGEN / 2,
                       "%s: forced 100%%: %llu of %llu kept in %llu steps", path, (unsigned long long)st.accepted,
                       (unsigned long long)st.drafted, (unsigned long long)st.steps);
            }
            if (cases[i].kind == GEMMA4C_DRAFT_CUSTOM) CHECK(st.accepted < st.drafted || cases[i].a == 1.0);
        }
    }
    gemma4c_model_free(m);
}

TEST(greedy_identical_every_model) {
    char dir[1024], *names[128];
    int n = th_ref_models(dir, sizeof dir, names, 128);
    CHECK(n >= 0);
    if (n < 0) return;
    CHECK(n >= 20);
    for (int i = 0; i < n; i++) {
        char path[1400], base[256];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        /* the prompt of the model family: the name up to the first '.' */
        snprintf(base, sizeof base, "%s", names[i]);
        char *dot = strchr(base, '.');
        if (dot) *dot = 0;
        int32_t prompt[64];
        int np = read_prompt(base, prompt, 64);
        CHECKF(np > 0, "%s: no prompt", base);
        if (np > 0) greedy_identity(path, prompt, np);
        free(names[i]);
    }
}

/* ---- sampling keeps its distribution -------------------------------------------- */

/* Drafter for the sampling test: the argmax continuation from a second
 * context of the same model, so drafts are often kept and often not. */
typedef struct selfd { gemma4c_context *c; int V; } selfd;
static int draft_self(void *u, const int32_t *hist, int nh, int32_t *out, int max) {
    selfd *d = u;
    char err[600];
    int have = gemma4c_n_past(d->c), keep = 0;
    int nt;
    const int32_t *t = gemma4c_seq_tokens(d->c, 0, &nt);
    while (keep < have && keep < nh - 1 && t[keep] == hist[keep]) keep++;
    if (keep < have) gemma4c_truncate(d->c, keep);
    if (gemma4c_eval(d->c, hist + keep, nh - keep, 0, err, sizeof err)) return 0;
    for (int k = 0; k < max; k++) {
        out[k] = argmax(gemma4c_logits_last(d->c), d->V);
        if (k + 1 < max && gemma4c_eval(d->c, &out[k], 1, 0, err, sizeof err)) return k + 1;
    }
    return max;
}

TEST(sampling_distribution_preserved) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path("testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    CHECK(m);
    if (!m) return;
    int32_t prompt[64];
    int np = read_prompt("gemma4-e", prompt, 64);
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = np + 16; cp.n_batch = 16; cp.n_threads = 1;
    gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
    gemma4c_context *dc = gemma4c_context_new(m, &cp, err, sizeof err);
    CHECK(c && dc && np > 1);
    if (!c || !dc || np <= 1) goto out;
    CHECK(gemma4c_eval(c, prompt, np - 1, 0, err, sizeof err) == 0);
    int V = gemma4c_n_vocab(c);
    enum { RUNS = 3000, LEN = 4 };
    /* tokens 1..3 of each answer (token 0 is drawn before any draft) */
    long *cnt[2][LEN];
    for (int a = 0; a < 2; a++)
        for (int j = 0; j < LEN; j++) cnt[a][j] = calloc((size_t)V, sizeof(long));
    gemma4c_draft_stats st = { 0 };
    selfd sd = { dc, V };
    for (int arm = 0; arm < 2; arm++) {
        for (int run = 0; run < RUNS; run++) {
            gemma4c_sampler_params sp = gemma4c_sampler_default_params();
            sp.temperature = 0.6f; sp.top_k = 0; sp.top_p = 1.0f;
            sp.seed = (uint64_t)run * 2 + (uint64_t)arm + 1;
            gemma4c_sampler *s = gemma4c_sampler_new(&sp);
            CHECK(gemma4c_truncate(c, np - 1) == 0);
            CHECK(gemma4c_eval(c, &prompt[np - 1], 1, 0, err, sizeof err) == 0);
            collect got = { { 0 }, 0 };
            gemma4c_draft_params dp = { 0 };
            if (arm) dp = (gemma4c_draft_params){ GEMMA4C_DRAFT_CUSTOM, 3, 0, draft_self, &sd, NULL };
            gemma4c_generate_params gp = { .n_predict = LEN, .on_token = on_tok, .user = &got, .draft = dp,
                                           .stats = arm ? &st : NULL };
            CHECK(gemma4c_generate(c, s, &gp, err, sizeof err) == GEMMA4C_FINISH_LENGTH && got.n == LEN);
            for (int j = 0; j < LEN && j < got.n; j++) cnt[arm][j][got.tok[j]]++;
            gemma4c_sampler_free(s);
        }
    }
    /* the drafts must have been both kept and refused for this to test anything */
    CHECKF(st.accepted > st.drafted / 10 && st.accepted < st.drafted, "kept %llu of %llu",
           (unsigned long long)st.accepted, (unsigned long long)st.drafted);
    for (int j = 0; j < LEN; j++) {
        int df;
        double x = chi2_two(cnt[0][j], cnt[1][j], V, &df);
        CHECKF(df > 0 && x < chi2_crit(df), "token %d: chi2 %.1f df %d (crit %.1f)", j, x, df, chi2_crit(df));
    }
    for (int a = 0; a < 2; a++)
        for (int j = 0; j < LEN; j++) free(cnt[a][j]);
out:
    gemma4c_context_free(c);
    gemma4c_context_free(dc);
    gemma4c_model_free(m);
}

/* ---- hostile parameters ----------------------------------------------------------- */

static int draft_bad(void *u, const int32_t *hist, int nh, int32_t *out, int max) {
    (void)hist; (void)nh;
    int *mode = u;
    if (*mode == 0) return -7;                 /* nonsense count */
    if (*mode == 1) return max + 100;          /* more than asked */
    for (int k = 0; k < max; k++) out[k] = k % 2 ? -3 : 1 << 30;   /* ids out of range */
    return max;
}

TEST(hostile_drafters) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path("testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    CHECK(m);
    if (!m) return;
    int32_t prompt[64];
    int np = read_prompt("gemma4-e", prompt, 64);
    collect ref;
    gemma4c_draft_params none = { 0 };
    CHECK(run_gen(m, prompt, np, 16, 0, none, &ref, NULL, err) == 0);
    for (int mode = 0; mode < 3; mode++) {
        gemma4c_draft_params dp = { GEMMA4C_DRAFT_CUSTOM, 4, 0, draft_bad, &mode, NULL };
        collect got;
        CHECK(run_gen(m, prompt, np, 16, 0, dp, &got, NULL, err) == 0);
        CHECK(got.n == ref.n && !memcmp(got.tok, ref.tok, sizeof ref.tok));
    }
    collect got;
    gemma4c_draft_params unknown = { 7, 0, 0, NULL, NULL, NULL };
    CHECK(run_gen(m, prompt, np, 16, 0, unknown, &got, NULL, err) == -1 && strstr(err, "draft kind"));
    gemma4c_draft_params nofn = { GEMMA4C_DRAFT_CUSTOM, 0, 0, NULL, NULL, NULL };
    CHECK(run_gen(m, prompt, np, 16, 0, nofn, &got, NULL, err) == -1);
    gemma4c_model_free(m);
}


/* ---- chat sessions: drafting on gives the same answers ---------------------------- */

TEST(session_answers_identical) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path("testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    CHECK(m);
    if (!m) return;
    static const char *reqs[] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi there, say something\"}]}",
        /* constrained: the masks apply to every verified row */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Give me a person.\"}],"
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":"
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8},"
        "\"age\":{\"type\":\"integer\"}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}}}}",
    };
    char *msgs[2][3] = { { 0 } };
    for (int arm = 0; arm < 2; arm++) {
        gemma4c_context_params cp = gemma4c_context_default_params();
        cp.n_ctx = 1024; cp.n_threads = 1;   /* n_batch 512: the rings can roll back a turn */
        gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
        gemma4c_session_params sp = gemma4c_session_default_params();
        sp.sampling.temperature = 0;
        sp.n_predict = 120;
        sp.constrain = 1;
        if (arm) sp.draft = (gemma4c_draft_params){ GEMMA4C_DRAFT_NGRAM, 6, 2, NULL, NULL, NULL };
        gemma4c_session *ss = c ? gemma4c_session_new(c, &sp, err, sizeof err) : NULL;
        CHECKF(ss, "%s", err);
        if (!ss) { gemma4c_context_free(c); continue; }
        gemma4c_turn_result r;
        CHECK(gemma4c_session_turn(ss, reqs[0], strlen(reqs[0]), NULL, NULL, &r, err, sizeof err) == 0);
        msgs[arm][0] = r.message;
        /* the next turn continues the conversation: prefix reuse after a drafted turn */
        char req[8192];
        snprintf(req, sizeof req, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi there, say something\"},%s,"
                 "{\"role\":\"user\",\"content\":\"Again, say something\"}]}", r.message ? r.message : "{}");
        CHECK(gemma4c_session_turn(ss, req, strlen(req), NULL, NULL, &r, err, sizeof err) == 0);
        CHECK(r.n_reused > 0);
        msgs[arm][1] = r.message;
        CHECK(gemma4c_session_turn(ss, reqs[1], strlen(reqs[1]), NULL, NULL, &r, err, sizeof err) == 0);
        msgs[arm][2] = r.message;
        gemma4c_session_free(ss);
        gemma4c_context_free(c);
    }
    for (int i = 0; i < 3; i++) {
        CHECKF(msgs[0][i] && msgs[1][i] && !strcmp(msgs[0][i], msgs[1][i]), "turn %d: %s vs %s", i,
               msgs[0][i] ? msgs[0][i] : "(null)", msgs[1][i] ? msgs[1][i] : "(null)");
        free(msgs[0][i]);
        free(msgs[1][i]);
    }
    gemma4c_model_free(m);
}

/* ---- the scheduler: drafts per request, same answers ------------------------------ */

typedef struct sched_out { char *done[8]; uint64_t id[8]; int n; } sched_out;
static void on_sched_event(void *u, const gemma4c_event *e) {
    sched_out *o = u;
    if (e->kind != GEMMA4C_EVENT_DONE && e->kind != GEMMA4C_EVENT_ERROR) return;
    for (int i = 0; i < o->n; i++)
        if (o->id[i] == e->id) o->done[i] = strdup(e->kind == GEMMA4C_EVENT_DONE ? e->json : "error");
}

/* The chat.completion without its "created" time. */
static void strip_created(char *j) {
    char *p = j ? strstr(j, "\"created\":") : NULL;
    if (!p) return;
    char *e = p + 10;
    while (*e >= '0' && *e <= '9') e++;
    if (*e == ',') e++;
    memmove(p, e, strlen(e) + 1);
}

TEST(scheduler_answers_identical) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path("testdata/gemma4-ref/gemma4-e.gguf"), err, sizeof err);
    CHECK(m);
    if (!m) return;
    static const char *reqs[] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"one two three one two three one two\"}],\"max_tokens\":60,\"temperature\":0}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":45,\"temperature\":0}",
        "{\"prompt\":\"a b c a b c a b c\",\"max_tokens\":50,\"temperature\":0}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Say hi\"}],\"max_tokens\":40,\"temperature\":0,\"stop\":[\"zz\"]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"random\"}],\"max_tokens\":30,\"temperature\":0.8,\"seed\":5}",
    };
    enum { NR = sizeof reqs / sizeof reqs[0] };
    sched_out out[2] = { { { 0 }, { 0 }, 0 }, { { 0 }, { 0 }, 0 } };
    gemma4c_scheduler_stats st[2];
    for (int arm = 0; arm < 2; arm++) {
        gemma4c_scheduler_params p = gemma4c_scheduler_default_params();
        p.n_parallel = 3; p.n_ctx = 256; p.n_batch = 24; p.n_threads = 1;
        if (arm) p.draft = (gemma4c_draft_params){ GEMMA4C_DRAFT_NGRAM, 5, 2, NULL, NULL, NULL };
        gemma4c_scheduler *s = gemma4c_scheduler_new(m, &p, err, sizeof err);
        CHECKF(s, "%s", err);
        if (!s) continue;
        out[arm].n = NR;
        for (int i = 0; i < NR; i++)
            CHECK(gemma4c_scheduler_submit(s, reqs[i], strlen(reqs[i]), on_sched_event, &out[arm], &out[arm].id[i], err,
                                           sizeof err) == 0);
        int n, guard = 0;
        while ((n = gemma4c_scheduler_step(s)) > 0 && guard++ < 10000) {}
        CHECK(n == 0);
        gemma4c_scheduler_stats_get(s, &st[arm]);
        gemma4c_scheduler_free(s);
    }
    CHECKF(st[1].drafted > 0 && st[1].draft_accepted > 0 && st[1].steps < st[0].steps,
           "drafted %llu kept %llu, steps %llu vs %llu", (unsigned long long)st[1].drafted,
           (unsigned long long)st[1].draft_accepted, (unsigned long long)st[1].steps, (unsigned long long)st[0].steps);
    CHECK(st[0].drafted == 0);
    for (int i = 0; i < NR; i++) {
        strip_created(out[0].done[i]);
        strip_created(out[1].done[i]);
        if (i < NR - 1)   /* greedy: the same answer; sampled: an answer */
            CHECKF(out[0].done[i] && out[1].done[i] && !strcmp(out[0].done[i], out[1].done[i]), "request %d:\n%s\n%s",
                   i, out[0].done[i] ? out[0].done[i] : "(null)", out[1].done[i] ? out[1].done[i] : "(null)");
        else
            CHECK(out[1].done[i] && strstr(out[1].done[i], "chat.completion"));
        free(out[0].done[i]);
        free(out[1].done[i]);
    }
    gemma4c_scheduler_params bad = gemma4c_scheduler_default_params();
    bad.draft.kind = GEMMA4C_DRAFT_CUSTOM;
    CHECK(!gemma4c_scheduler_new(m, &bad, err, sizeof err) && strstr(err, "n-grams only"));
    gemma4c_model_free(m);
}

int main(void) {
    /* SPEC_ONLY=name runs the tests whose name contains it */
    const char *only = getenv("SPEC_ONLY");
#define RUN_IF(t) do { if (!only || strstr(#t, only)) RUN(t); } while (0)
    RUN_IF(acceptance_rule_keeps_the_distribution);
    RUN_IF(rollback_gives_plain_logits);
    RUN_IF(greedy_identical_every_model);
    RUN_IF(sampling_distribution_preserved);
    RUN_IF(hostile_drafters);
    RUN_IF(session_answers_identical);
    RUN_IF(scheduler_answers_identical);
    return test_summary();
}
