/* The decoder forward pass and the state it needs: KV caches and scratch.
 *
 * One sequence per state. Tokens are appended in batches of at most n_batch;
 * prefill (many tokens) and decode (one token) run the same code. */
#ifndef G4_FORWARD_H
#define G4_FORWARD_H

#include "tensor/pool.h"
#include "model/model.h"
#include "tensor/matmul.h"

typedef struct g4_kv {
    float *k, *v;   /* [cap][n_kv_head][head_dim] */
    int cap;        /* positions held: n_ctx (full) or the sliding ring */
} g4_kv;

typedef struct g4_state {
    const g4_model *m;
    int n_ctx, n_batch, precision, n_threads;
    g4_pool *pool;
    int n_past;
    g4_kv *kv;      /* one per owning layer (layer.kv_slot) */

    /* scratch for one batch of T <= n_batch tokens */
    float *x, *xn, *h2, *q, *k, *v, *att, *ff_a, *ff_b;
    float *ple, *ple_g;           /* [T][L*P], [T][P] */
    float *rope;                  /* cos/sin tables, see forward.c */
    float *scores;                /* [n_threads][n_ctx] */
    float *moe_logit, *moe_w;     /* [T][E] */
    int *moe_sel;                 /* [T][K] */
    float *moe_in, *moe_out, *moe_acc; /* gathered rows */
    int *moe_rows;
    g4_mm_scratch mm;
    size_t scratch_bytes;
} g4_state;

g4_state *g4_state_new(const g4_model *m, int n_ctx, int n_batch, int n_threads, int precision, g4_error *err);
void g4_state_free(g4_state *s);

/* Run T (1..n_batch) tokens at positions n_past.. and advance n_past.
 * logits: NULL, or room for T (all_rows) or 1 row of n_vocab floats. */
int g4_forward(g4_state *s, const int32_t *tokens, int T, float *logits, int all_rows, g4_error *err);

/* Bytes of scratch a state of this shape allocates (for the memory plan). */
size_t g4_state_scratch_bytes(const g4_model *m, int n_ctx, int n_batch, int n_threads);

#endif
