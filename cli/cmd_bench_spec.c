/* gemma4c bench --spec: the mechanism of speculative decoding, measured
 * apart from any drafter's quality (random weights make acceptance
 * meaningless):
 *   1. verification cost: one forward pass over the pending token and k
 *      drafts (logits for all k + 1) against one plain decode step, at the
 *      same depth; each timed pass is rolled back, so every repetition starts
 *      from the same cache;
 *   2. end to end: greedy decoding of N tokens plainly, then with a drafter
 *      that proposes the target's own next token with probability a (else a
 *      wrong one), for a = 0.5, 0.75, 1, each checked against the plain output
 *      (reported where the fast path's batched rounding parted from it);
 *   3. with an MTP assistant (--draft-model): its cost per drafted token,
 *      greedy decoding with it, and the speed those costs give at a. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "gemma4c.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double med(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct forced {
    const int32_t *ref;    /* the plain run's tokens */
    int n_ref, n_prompt, n_vocab;
    double a;
    uint64_t rng;
} forced;

static int draft_forced(void *u, const int32_t *hist, int nh, int32_t *out, int max) {
    (void)hist;
    forced *f = u;
    int at = nh - f->n_prompt, k = 0;
    for (; k < max && at + k >= 0 && at + k < f->n_ref; k++) {
        int32_t good = f->ref[at + k];
        double u01 = (double)(rnd(&f->rng) >> 11) * (1.0 / 9007199254740992.0);
        out[k] = u01 < f->a ? good : (int32_t)((good + 1 + (int32_t)(rnd(&f->rng) % 97)) % f->n_vocab);
    }
    return k;
}

typedef struct rec { int32_t *tok; int n, cap; } rec;
static int on_tok(void *u, int32_t t) {
    rec *r = u;
    if (r->n < r->cap) r->tok[r->n++] = t;
    return 0;
}

int bench_spec(gemma4c_model *m, const int *ks, int n_k, int tg, int depth, int reps, int threads,
                      int exact, int draft_max, int json, const char *draft_model) {
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    FILE *log = json ? stderr : stdout;
    char err[600];
    int kmax = draft_max;
    for (int i = 0; i < n_k; i++) if (ks[i] > kmax) kmax = ks[i];
    if (depth < 1) depth = 1;
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = depth + tg + kmax + 2;
    cp.n_batch = kmax + 1 > 64 ? kmax + 1 : 64;
    cp.n_threads = threads;
    cp.precision = exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
    int32_t *ids = malloc((size_t)(depth + kmax + 1) * sizeof *ids);
    int32_t *ref = malloc((size_t)(tg + 1) * sizeof *ref), *got = malloc((size_t)(tg + 1) * sizeof *got);
    double *t = malloc((size_t)reps * sizeof *t);
    int8_t *all = malloc((size_t)kmax + 1);
    int rc = 0;
    if (!c || !ids || !ref || !got || !t || !all) {
        fprintf(stderr, "gemma4c: %s\n", c ? "out of memory" : err);
        rc = 1;
        goto out;
    }
    memset(all, 1, (size_t)kmax + 1);
    uint64_t s = 777;
    for (int i = 0; i < depth + kmax + 1; i++) ids[i] = (int32_t)(rnd(&s) % (uint64_t)info.n_vocab);
    /* the context at depth (its weights paged in by this first pass) */
    if (gemma4c_eval(c, ids, depth, 0, err, sizeof err)) { fprintf(stderr, "gemma4c: %s\n", err); rc = 1; goto out; }
    double plain = 0, cost[64] = { 0 };
    for (int pass = 0; pass <= n_k && !rc; pass++) {
        int k = pass == 0 ? 0 : ks[pass - 1];
        for (int r = 0; r < reps; r++) {
            gemma4c_batch b = { .n_tokens = k + 1, .token = ids + depth, .logits = k ? all : NULL };
            double t0 = now_s();
            if (gemma4c_decode(c, &b, err, sizeof err)) { rc = 1; break; }
            t[r] = now_s() - t0;
            if (gemma4c_seq_truncate(c, 0, depth)) { snprintf(err, sizeof err, "rollback refused"); rc = 1; break; }
        }
        if (rc) { fprintf(stderr, "gemma4c: %s\n", err); break; }
        double mt = med(t, reps);
        if (pass == 0) plain = mt;
        else cost[pass - 1] = mt;
        if (pass == 0)
            fprintf(log, "verify cost at depth %d (%s, %d threads, median of %d):\n  plain step  %8.2f ms\n", depth,
                    exact ? "exact" : "fast", threads, reps, mt * 1e3);
        else
            fprintf(log, "  k = %-2d      %8.2f ms  %.2fx a plain step (%d tokens, %.2f ms each)\n", k, mt * 1e3,
                    mt / plain, k + 1, mt * 1e3 / (k + 1));
    }
    /* end to end at forced acceptance rates */
    double rates[] = { 0, 0.5, 0.75, 1.0 }, tps[4] = { 0 }, kept[4] = { 0 };
    int diverged[4] = { -1, -1, -1, -1 };
    for (int ri = 0; ri < 4 && !rc && tg > 0; ri++) {
        for (int r = 0; r < reps && !rc; r++) {
            gemma4c_reset(c);
            gemma4c_sampler_params spp = gemma4c_sampler_default_params();
            spp.temperature = 0;
            gemma4c_sampler *sm = gemma4c_sampler_new(&spp);
            if (!sm || gemma4c_eval(c, ids, depth, 0, err, sizeof err)) { rc = 1; gemma4c_sampler_free(sm); break; }
            rec out = { ri ? got : ref, 0, tg };
            forced f = { ref, tg, depth, info.n_vocab, rates[ri], 1000 + (uint64_t)r };
            gemma4c_draft_stats st = { 0 };
            gemma4c_generate_params gp = { .n_predict = tg, .on_token = on_tok, .user = &out, .stats = &st };
            if (ri) gp.draft = (gemma4c_draft_params){ GEMMA4C_DRAFT_CUSTOM, draft_max, 0, draft_forced, &f, NULL };
            double t0 = now_s();
            int fin = gemma4c_generate(c, sm, &gp, err, sizeof err);
            t[r] = now_s() - t0;
            gemma4c_sampler_free(sm);
            if (fin < 0) { rc = 1; break; }
            /* the fast path's kernels may round a batch of k + 1 rows differently
             * from one row: at a near-tie (random weights have many) greedy
             * output can part from the plain run's; say where */
            for (int j = 0; ri && diverged[ri] < 0 && j < tg; j++)
                if (j >= out.n || got[j] != ref[j]) diverged[ri] = j;
            kept[ri] = st.drafted ? (double)st.accepted / (double)st.drafted : 0;
        }
        if (rc) { fprintf(stderr, "gemma4c: %s\n", err); break; }
        tps[ri] = tg / med(t, reps);
        if (ri == 0) fprintf(log, "end to end, %d greedy tokens after %d, drafts of %d:\n  plain        %7.2f t/s\n", tg,
                             depth, draft_max, tps[0]);
        else
        {
            char note[96] = "output identical";
            if (diverged[ri] >= 0)
                snprintf(note, sizeof note, "OUTPUT DIFFERS from token %d: batched rows rounded differently", diverged[ri]);
            fprintf(log, "  a = %3.0f%%     %7.2f t/s  %.2fx plain (%.0f%% of drafts kept; %s)\n", rates[ri] * 100,
                    tps[ri], tps[ri] / tps[0], kept[ri] * 100, note);
        }
    }
    /* the MTP drafter: greedy decoding with it (random weights: its drafts
     * are refused, so this is its overhead), its own cost per drafted token,
     * and the speed that cost and the verify cost give at acceptance a:
     * E tokens per step = (1 - a^(k+1)) / (1 - a), one step = verify(k) +
     * k drafter steps */
    double d_ms = 0, mtp_tps = 0, est[3] = { 0 };
    int mtp_same = -1;
    if (!rc && draft_model) {
        gemma4c_drafter *d = gemma4c_drafter_open(m, draft_model, threads, cp.precision, err, sizeof err);
        if (!d) { fprintf(stderr, "gemma4c: drafter: %s\n", err); rc = 1; goto out; }
        uint64_t s0 = 0, s1 = 0;
        double d0 = 0, d1 = 0;
        for (int r = 0; r < reps && !rc && tg > 0; r++) {
            gemma4c_reset(c);
            gemma4c_sampler_params spp = gemma4c_sampler_default_params();
            spp.temperature = 0;
            gemma4c_sampler *sm = gemma4c_sampler_new(&spp);
            if (!sm || gemma4c_eval(c, ids, depth, 0, err, sizeof err)) { rc = 1; gemma4c_sampler_free(sm); break; }
            rec out = { got, 0, tg };
            gemma4c_generate_params gp = { .n_predict = tg, .on_token = on_tok, .user = &out,
                                           .draft = { .kind = GEMMA4C_DRAFT_MTP, .max = draft_max, .drafter = d } };
            gemma4c_drafter_cost(d, &s0, &d0);
            double t0 = now_s();
            int fin = gemma4c_generate(c, sm, &gp, err, sizeof err);
            t[r] = now_s() - t0;
            gemma4c_drafter_cost(d, &s1, &d1);
            gemma4c_sampler_free(sm);
            if (fin < 0) { rc = 1; break; }
            mtp_same = out.n == tg && !memcmp(got, ref, (size_t)tg * sizeof *ref);
        }
        gemma4c_drafter_free(d);
        if (rc) { fprintf(stderr, "gemma4c: %s\n", err); goto out; }
        if (tg > 0) {
            mtp_tps = tg / med(t, reps);
            d_ms = s1 > s0 ? 1e3 * (d1 - d0) / (double)(s1 - s0) : 0;
        }
        /* verify(k) for k = draft_max: measured above when listed, else
         * interpolated as plain (a lower bound on the cost) */
        double vk = plain;
        for (int i = 0; i < n_k; i++) if (ks[i] == draft_max) vk = cost[i];
        double as[3] = { 0.5, 0.75, 1.0 };
        for (int i = 0; i < 3; i++) {
            double a = as[i], e = a < 1 ? (1 - pow(a, draft_max + 1)) / (1 - a) : draft_max + 1;
            est[i] = e / (vk + draft_max * d_ms * 1e-3);
        }
        fprintf(log, "MTP drafter %s, drafts of %d:\n  drafter      %8.3f ms per drafted token (%.2fx a plain step)\n"
                "  greedy       %7.2f t/s  %.2fx plain (random weights: its drafts are refused; %s)\n", draft_model,
                draft_max, d_ms, plain > 0 ? d_ms * 1e-3 / plain : 0, mtp_tps, tps[0] > 0 ? mtp_tps / tps[0] : 0,
                mtp_same ? "output identical" : "OUTPUT DIFFERS: batched rows rounded differently");
        for (int i = 0; i < 3; i++)
            fprintf(log, "  a = %3.0f%%     %7.2f t/s  %.2fx plain (estimated from the verify and drafter costs)\n",
                    as[i] * 100, est[i], plain > 0 ? est[i] * plain : 0);
    }
    if (!rc && json) {
        printf("{\"model\":\"%s\",\"threads\":%d,\"depth\":%d,\"plain_step_ms\":%.3f,\"verify\":[", info.name, threads,
               depth, plain * 1e3);
        for (int i = 0; i < n_k; i++)
            printf("%s{\"k\":%d,\"ms\":%.3f,\"ratio\":%.3f}", i ? "," : "", ks[i], cost[i] * 1e3, cost[i] / plain);
        printf("],\"tg\":%d,\"draft_max\":%d,\"plain_tps\":%.3f,\"forced\":[", tg, draft_max, tps[0]);
        for (int i = 1; i < 4; i++)
            printf("%s{\"rate\":%.2f,\"tps\":%.3f,\"speedup\":%.3f,\"kept\":%.3f,\"diverged_at\":%d}", i > 1 ? "," : "",
                   rates[i], tps[i], tps[0] > 0 ? tps[i] / tps[0] : 0, kept[i], diverged[i]);
        printf("]");
        if (draft_model)
            printf(",\"mtp\":{\"draft_ms\":%.4f,\"tps\":%.3f,\"identical\":%d,\"est_tps\":[%.3f,%.3f,%.3f]}", d_ms,
                   mtp_tps, mtp_same, est[0], est[1], est[2]);
        printf("}\n");
    }
out:
    free(ids);
    free(ref);
    free(got);
    free(t);
    free(all);
    gemma4c_context_free(c);
    return rc;
}
