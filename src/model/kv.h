/* KV state: a pool of cache memory sized up front, and sequences in it.
 *
 * Full-attention layers keep every position, in pages of `page` positions
 * handed out on demand: a sequence holds a page table, so sequences of any
 * length share the pool, a fork shares its source's pages (copy on write of
 * the one page both would write) and truncation gives pages back. One page
 * id covers every full layer (each layer has its own arena, rows differ).
 * Sliding-window layers keep a ring of window - 1 + n_batch positions per
 * sequence (the last window, plus one whole batch whose queries must still
 * see their own keys), one block per sequence, copied on fork. Layers that
 * share KV read their donor's cache. Rows are f32, f16, q8_0 or q4_0 (vec_kv.h):
 * one type per pool, chosen at creation. */
#ifndef G4_KV_H
#define G4_KV_H

#include "model/model.h"
#include "ops/attention.h"
#include "util/error.h"

typedef struct g4_kv_pool g4_kv_pool;

/* n_pos: full-layer positions of all sequences together (rounded up to
 * pages); n_seq: most sequences alive at once (one ring each); n_batch: most
 * tokens of one sequence per forward call; page: positions per page (0 =
 * n_pos, one page: a single sequence's contiguous cache). */
g4_kv_pool *g4_kv_pool_new(const g4_model *m, int n_pos, int n_seq, int n_batch, int page, g4_error *err);
/* The same with rows stored as g4_kv_type `type` (f32 above); a layer whose
 * head the type cannot hold (q8_0, head_dim not a multiple of 32) keeps f16. */
g4_kv_pool *g4_kv_pool_new_t(const g4_model *m, int n_pos, int n_seq, int n_batch, int page, int type,
                             g4_error *err);
void g4_kv_pool_free(g4_kv_pool *p);   /* after every sequence in it */
/* Pages in use and in all (full layers), sequences alive. */
void g4_kv_pool_usage(const g4_kv_pool *p, int *pages_used, int *pages_total, int *seqs);

typedef struct g4_seq {
    g4_kv_pool *pool;
    const g4_model *m;
    int n_ctx;          /* positions it can hold (the pool's n_pos) */
    int n_batch;        /* most of its tokens in one forward call */
    int n_past;         /* positions cached so far */
    g4_kv_view *kv;     /* [n_cache], indexed by g4_layer.kv_slot */
    int32_t *pages;     /* full-layer page table, -1 where none */
    int ring;           /* its sliding-ring block */
    int owns_pool;      /* made by g4_seq_new: the pool goes with it */
} g4_seq;

/* A sequence in the pool (NULL + err when n_seq are alive). */
g4_seq *g4_seq_new_in(g4_kv_pool *p, g4_error *err);
/* A sequence with a private pool of n_ctx positions (one page). */
g4_seq *g4_seq_new(const g4_model *m, int n_ctx, int n_batch, g4_error *err);
g4_seq *g4_seq_new_t(const g4_model *m, int n_ctx, int n_batch, int type, g4_error *err);
void g4_seq_free(g4_seq *s);

/* A new sequence in src's pool with src's positions: full pages shared,
 * rings copied. */
g4_seq *g4_seq_fork(const g4_seq *src, g4_error *err);

/* The cache layer l attends over (its own, or its donor's). */
static inline g4_kv_view *g4_seq_cache(g4_seq *s, int l) {
    return &s->kv[s->m->layers[s->m->layers[l].kv_src].kv_slot];
}

/* Make positions pos0 .. pos0 + n - 1 writable: pages allocated, a shared
 * page copied. -2 + err when the pool is out of pages, -1 + err for a
 * position past the context. */
int g4_seq_reserve(g4_seq *s, int pos0, int n, g4_error *err);

/* Keep positions 0..n-1 (pages past them go back to the pool). A sliding
 * ring only holds its last positions: returns -1 (nothing changed) when it
 * no longer holds the window before n; the caller must re-evaluate. */
int g4_seq_truncate(g4_seq *s, int n);

#endif
