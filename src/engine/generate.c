/* The decode loop every front end shares (raw continuation and chat turns),
 * built on the public context and sampler calls only.
 *
 * With a drafter each step is one forward pass over [pending, d1..dk]: the
 * pending token (the last one handed on, not yet evaluated) and k drafted
 * tokens, logits kept for all k + 1. Row i holds the distribution of the
 * token after d_i, so the walk samples from row i with d_{i+1} as the draft
 * and goes on while the draft is kept; the first token that differs (or the
 * bonus token from row k when all are kept) ends the step. The cache then
 * keeps exactly the tokens handed on but the last, as in plain decoding:
 * the positions of the rejected drafts are truncated. k + 1 <= n_batch keeps
 * that rollback within the sliding-window rings' slack (a ring holds
 * window - 1 + n_batch positions), so no position the next token needs was
 * overwritten by a rejected draft. Without a drafter k is 0 and this is the
 * plain loop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "gemma4c.h"

enum { DRAFT_DEFAULT = 4, NGRAM_DEFAULT = 3, DRAFT_LIMIT = 64 };

/* Prompt lookup: the latest earlier occurrence of the last n tokens of h
 * (n = ngram down to 1), and the max tokens that followed it. The copy runs
 * on into its own output (as an LZ77 match does), so a match close to the
 * end proposes its period repeated: "a b a b" drafts "a b a b ...". */
int g4_draft_ngram(const int32_t *h, int nh, int ngram, int32_t *out, int max) {
    for (int n = ngram; n >= 1; n--) {
        if (nh <= n) continue;
        const int32_t *suf = h + nh - n;
        for (int st = nh - n - 1; st >= 0; st--) {      /* h[st..st+n) == suffix, not the suffix itself */
            if (memcmp(h + st, suf, (size_t)n * sizeof *h)) continue;
            for (int k = 0; k < max; k++) {
                int from = st + n + k;                  /* < nh + k: h, or what was drafted already */
                out[k] = from < nh ? h[from] : out[from - nh];
            }
            return max;
        }
    }
    return 0;
}

int gemma4c_generate(gemma4c_context *c, gemma4c_sampler *s, const gemma4c_generate_params *p, char *err,
                     size_t errlen) {
    if (!gemma4c_logits_last(c)) {
        if (err && errlen) snprintf(err, errlen, "generate: no logits (evaluate a prompt first)");
        return -1;
    }
    const gemma4c_model *m = gemma4c_context_model(c);
    int nv = gemma4c_n_vocab(c);
    const gemma4c_draft_params *dp = &p->draft;
    int spec = dp->kind == GEMMA4C_DRAFT_NGRAM || (dp->kind == GEMMA4C_DRAFT_CUSTOM && dp->fn) ||
               (dp->kind == GEMMA4C_DRAFT_MTP && dp->drafter);
    if (dp->kind < 0 || dp->kind > GEMMA4C_DRAFT_MTP || (dp->kind == GEMMA4C_DRAFT_CUSTOM && !dp->fn) ||
        (dp->kind == GEMMA4C_DRAFT_MTP && !dp->drafter)) {
        if (err && errlen)
            snprintf(err, errlen, "generate: draft kind %d unknown or without its function / drafter", dp->kind);
        return -1;
    }
    /* the MTP drafter reads the hidden row of the logits row that chose the
     * pending token (the last row after a plain step or the prompt, row i of
     * a verification), copied: a rollback invalidates the context's rows */
    float *hrow = NULL;
    size_t hbytes = (size_t)m->m->n_embd * sizeof *hrow;
    if (spec && dp->kind == GEMMA4C_DRAFT_MTP) {
        hrow = malloc(hbytes);
        if (!hrow) {
            if (err && errlen) snprintf(err, errlen, "generate: out of memory");
            return -1;
        }
        const float *h0 = g4_engine_hidden(c, -1);
        if (h0) memcpy(hrow, h0, hbytes);
        else memset(hrow, 0, hbytes);
    }
    int kmax = dp->max > 0 ? dp->max : DRAFT_DEFAULT;
    if (kmax > DRAFT_LIMIT) kmax = DRAFT_LIMIT;
    if (kmax > gemma4c_n_batch(c) - 1) kmax = gemma4c_n_batch(c) - 1;
    if (kmax < 1) spec = 0;
    int ngram = dp->ngram > 0 ? dp->ngram : NGRAM_DEFAULT;
    /* the context's logits are read-only: a constraint or a ban masks a copy */
    int copy = p->constraint || p->n_ban > 0;
    float *masked = copy ? malloc((size_t)nv * sizeof *masked) : NULL;
    /* the sequence's tokens and the ones handed on, for the drafter */
    int n0 = 0, hcap = 0, nh = 0;
    const int32_t *ctx_toks = gemma4c_seq_tokens(c, 0, &n0);
    int32_t *hist = NULL;
    if (spec) {
        hcap = gemma4c_n_ctx(c) + 1;   /* every token the context holds, and the pending one */
        hist = malloc((size_t)hcap * sizeof *hist);
        if (hist) { memcpy(hist, ctx_toks, (size_t)n0 * sizeof *hist); nh = n0; }
    }
    if ((copy && !masked) || (spec && !hist)) {
        if (err && errlen) snprintf(err, errlen, "generate: out of memory");
        free(masked);
        free(hist);
        free(hrow);
        return -1;
    }
    int rc = GEMMA4C_FINISH_LENGTH;
    int32_t prev = -1, drafts[DRAFT_LIMIT + 1], batch[DRAFT_LIMIT + 1];
    int8_t keep[DRAFT_LIMIT + 1];
    memset(keep, 1, sizeof keep);
    int n_out = 0, done = 0;
    while (n_out < p->n_predict && !done) {
        int k = 0, base = gemma4c_n_past(c);
        /* evaluated lazily, so the last token never costs a forward pass
         * nobody reads */
        if (prev >= 0) {
            int room = gemma4c_n_ctx(c) - base - 1, left = p->n_predict - n_out - 1;
            int lim = kmax < room ? kmax : room;
            if (lim > left) lim = left;
            if (spec && lim > 0) {
                if (dp->kind == GEMMA4C_DRAFT_MTP)
                    k = g4_engine_draft_mtp(c, dp->drafter, prev, hrow, drafts, lim);
                else
                    k = dp->kind == GEMMA4C_DRAFT_NGRAM ? g4_draft_ngram(hist, nh, ngram, drafts, lim)
                                                        : dp->fn(dp->user, hist, nh, drafts, lim);
                if (k < 0 || k > lim) k = k < 0 ? 0 : lim;
                for (int i = 0; i < k; i++)             /* a drafter's ids are input too */
                    if (drafts[i] < 0 || drafts[i] >= nv) { k = i; break; }
            }
            batch[0] = prev;
            memcpy(batch + 1, drafts, (size_t)k * sizeof *drafts);
            gemma4c_batch b = { .n_tokens = k + 1, .token = batch, .logits = k ? keep : NULL };
            if (base + 1 > gemma4c_n_ctx(c)) {
                if (err && errlen)
                    snprintf(err, errlen, "context full: %d tokens in context + 1 new exceed the context size %d "
                             "(use a larger --ctx)", base, gemma4c_n_ctx(c));
                rc = -1;
                break;
            }
            if (gemma4c_decode(c, &b, err, errlen)) { rc = -1; break; }
            if (p->stats) { p->stats->steps++; p->stats->drafted += (uint64_t)k; }
        }
        int i = 0;
        for (;; i++) {
            if (p->cancel && p->cancel(p->user)) { rc = GEMMA4C_FINISH_CANCEL; done = 1; break; }
            const float *logits = k ? gemma4c_logits_ith(c, i) : gemma4c_logits_last(c);
            if (masked) {
                memcpy(masked, logits, (size_t)nv * sizeof *masked);
                for (int j = 0; j < p->n_ban; j++)
                    if (p->ban[j] >= 0 && p->ban[j] < nv) masked[p->ban[j]] = -INFINITY;
                if (p->constraint && gemma4c_constraint_apply(p->constraint, masked, nv) <= 0) {
                    /* only after an end token: the output is complete */
                    rc = GEMMA4C_FINISH_STOP;
                    done = 1;
                    break;
                }
                logits = masked;
            }
            int acc = 0;
            int32_t t = i < k ? gemma4c_sampler_sample_draft(s, logits, nv, drafts[i], NULL, &acc)
                              : gemma4c_sampler_sample(s, logits, nv);
            if (acc && p->stats) p->stats->accepted++;
            if (p->constraint && gemma4c_constraint_accept(p->constraint, t)) {
                if (err && errlen) snprintf(err, errlen, "generate: the sampler picked token %d the constraint forbids", (int)t);
                rc = -1;
                done = 1;
                break;
            }
            gemma4c_sampler_accept(s, t);
            if (p->stop_at_eog && gemma4c_is_eog(m, t)) { rc = GEMMA4C_FINISH_STOP; done = 1; break; }
            if (p->on_token && p->on_token(p->user, t)) { rc = GEMMA4C_FINISH_STOP; done = 1; break; }
            if (hist && nh < hcap) hist[nh++] = t;
            n_out++;
            prev = t;
            if (!acc || n_out >= p->n_predict) break;
        }
        const float *hr = hrow ? g4_engine_hidden(c, k ? i : -1) : NULL;
        if (hr) memcpy(hrow, hr, hbytes);
        /* keep the pending token and the drafts the walk went past (i of them);
         * the token handed on at step i is the next pending one */
        if (k && base + 1 + i < gemma4c_n_past(c) && gemma4c_seq_truncate(c, 0, base + 1 + i)) {
            if (err && errlen) snprintf(err, errlen, "generate: cannot roll back %d drafted tokens", k - i);
            rc = -1;
            break;
        }
    }
    free(masked);
    free(hist);
    free(hrow);
    return rc;
}
