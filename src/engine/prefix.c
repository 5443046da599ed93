/* Prefix cache (include/gemma4c.h): snapshots of sequences in the context's
 * KV pool.
 *
 * A snapshot is a fork: it shares the sequence's full-attention pages (no
 * copy until one side writes into a shared page) and holds a copy of its
 * sliding-window rings, which is what makes reuse exact at the snapshot's
 * end and up to ring - window positions before it. Further back the rings
 * no longer hold the window, so such a snapshot is not used (never a
 * recomputation with wrong values). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static void drop(g4_prefix *p) {
    g4_seq_free(p->seq);
    free(p->toks);
    memset(p, 0, sizeof *p);
}

void g4_prefix_free_all(gemma4c_context *c) {
    for (int i = 0; c->pfx && i < c->n_prefix; i++)
        if (c->pfx[i].seq) drop(&c->pfx[i]);
}

int g4_prefix_evict(gemma4c_context *c) {
    g4_prefix *lru = NULL;
    for (int i = 0; i < c->n_prefix; i++)
        if (c->pfx[i].seq && (!lru || c->pfx[i].used < lru->used)) lru = &c->pfx[i];
    if (!lru) return -1;
    drop(lru);
    c->pst.evictions++;
    c->pst.entries--;
    return 0;
}

static int bad_seq(const gemma4c_context *c, int seq, char *err, size_t errlen) {
    if (err && errlen) snprintf(err, errlen, "sequence id %d out of range (0..%d)", seq, c->n_seq - 1);
    return -1;
}

int gemma4c_prefix_store(gemma4c_context *c, int seq, char *err, size_t errlen) {
    if (seq < 0 || seq >= c->n_seq) return bad_seq(c, seq, err, errlen);
    if (c->n_prefix <= 0) {
        if (err && errlen) snprintf(err, errlen, "the context has no prefix cache (n_prefix 0)");
        return -1;
    }
    const g4_seq *s = c->seqs[seq];
    const int32_t *toks = c->toks[seq];
    int n = s->n_past;
    if (n == 0) return 0;
    /* the same tokens already kept: only refresh its age */
    for (int i = 0; i < c->n_prefix; i++) {
        g4_prefix *p = &c->pfx[i];
        if (p->seq && p->seq->n_past == n && !memcmp(p->toks, toks, (size_t)n * sizeof *toks)) {
            p->used = ++c->clock;
            return 0;
        }
    }
    g4_prefix *slot = NULL;
    for (int i = 0; i < c->n_prefix && !slot; i++) if (!c->pfx[i].seq) slot = &c->pfx[i];
    if (!slot) {
        g4_prefix_evict(c);
        for (int i = 0; i < c->n_prefix && !slot; i++) if (!c->pfx[i].seq) slot = &c->pfx[i];
    }
    g4_error e = { { 0 } };
    slot->toks = malloc((size_t)n * sizeof *toks);
    slot->seq = slot->toks ? g4_seq_fork(s, &e) : NULL;
    if (!slot->seq) {
        if (err && errlen) snprintf(err, errlen, "prefix cache: %s", slot->toks ? e.msg : "out of memory");
        free(slot->toks);
        slot->toks = NULL;
        return -1;
    }
    memcpy(slot->toks, toks, (size_t)n * sizeof *toks);
    slot->used = ++c->clock;
    c->pst.stores++;
    c->pst.entries++;
    return 0;
}

int gemma4c_prefix_load(gemma4c_context *c, int seq, const int32_t *tokens, int n, char *err, size_t errlen) {
    if (seq < 0 || seq >= c->n_seq) return bad_seq(c, seq, err, errlen);
    if (n < 0 || (n > 0 && !tokens)) {
        if (err && errlen) snprintf(err, errlen, "prefix load: %d tokens", n);
        return -1;
    }
    c->pst.lookups++;
    c->n_idx = c->n_rows = 0;
    /* the sequence's ring goes back to the pool: a fork takes it */
    g4_error e = { { 0 } };
    g4_seq_free(c->seqs[seq]);
    c->seqs[seq] = NULL;
    int reused = 0;
    unsigned char tried[4096] = { 0 };   /* n_prefix <= 4096 */
    for (;;) {
        /* the snapshot sharing the most tokens (at most n - 1: the last token is
         * evaluated for its logits) not tried yet */
        g4_prefix *best = NULL;
        int best_k = 0;
        for (int i = 0; i < c->n_prefix; i++) {
            g4_prefix *p = &c->pfx[i];
            if (!p->seq || tried[i]) continue;
            int k = 0, lim = p->seq->n_past < n - 1 ? p->seq->n_past : n - 1;
            while (k < lim && p->toks[k] == tokens[k]) k++;
            if (k > best_k) { best = p; best_k = k; }
        }
        if (!best) break;
        tried[best - c->pfx] = 1;
        g4_seq *fork = g4_seq_fork(best->seq, &e);
        if (!fork) break;
        /* a divergence further back than the rings reach: of no use here */
        if (g4_seq_truncate(fork, best_k)) { g4_seq_free(fork); continue; }
        c->seqs[seq] = fork;
        memcpy(c->toks[seq], tokens, (size_t)best_k * sizeof *tokens);
        best->used = ++c->clock;
        c->pst.hits++;
        c->pst.tokens_reused += (uint64_t)best_k;
        reused = best_k;
        break;
    }
    if (!c->seqs[seq] && !(c->seqs[seq] = g4_seq_new_in(c->pool, &e))) {
        if (err && errlen) snprintf(err, errlen, "prefix cache: %s", e.msg);
        return -1;
    }
    return reused;
}

void gemma4c_prefix_stats_get(const gemma4c_context *c, gemma4c_prefix_stats *out) { *out = c->pst; }
