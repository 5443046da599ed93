/* The KV state of one sequence: a cache per layer that owns one (layers
 * that share KV read their donor's), holding positions 0..n_past-1.
 *
 * Full-attention caches keep every position up to n_ctx; sliding ones are
 * rings of window - 1 + n_batch positions (the last window, plus one whole
 * batch whose queries must still see their own keys). Many sequences may be
 * evaluated by one workspace (forward.h), each token naming its sequence. */
#ifndef G4_KV_H
#define G4_KV_H

#include "model/model.h"
#include "ops/attention.h"
#include "util/error.h"

typedef struct g4_seq {
    const g4_model *m;
    int n_ctx;          /* positions it can hold */
    int n_batch;        /* most of its tokens in one forward call */
    int n_past;         /* positions cached so far */
    g4_kv_view *kv;     /* [n_cache], indexed by g4_layer.kv_slot */
} g4_seq;

g4_seq *g4_seq_new(const g4_model *m, int n_ctx, int n_batch, g4_error *err);
void g4_seq_free(g4_seq *s);

/* The cache layer l attends over (its own, or its donor's). */
static inline g4_kv_view *g4_seq_cache(g4_seq *s, int l) {
    return &s->kv[s->m->layers[s->m->layers[l].kv_src].kv_slot];
}

/* Keep positions 0..n-1. Full caches hold any prefix; a sliding ring only
 * its last positions: returns -1 (nothing changed) when the ring no longer
 * holds the window before n, and the caller must re-evaluate. */
int g4_seq_truncate(g4_seq *s, int n);

#endif
