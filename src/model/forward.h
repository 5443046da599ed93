/* The decoder forward pass: a schedule of the ops in ops/ over one batch.
 *
 * State is split three ways:
 *   - the thread pool is process-wide (g4_pool_acquire), shared by every
 *     workspace with the same thread count;
 *   - a workspace (g4_workspace) is the scratch for one batch of up to
 *     n_batch tokens: activations, rope tables, matmul staging;
 *   - the KV state is per sequence (g4_seq, kv.h); a batch may mix tokens of
 *     several sequences, each with its own positions.
 * Prefill (many tokens) and decode (one token) run the same code. */
#ifndef G4_FORWARD_H
#define G4_FORWARD_H

#include "model/kv.h"
#include "model/model.h"
#include "ops/ops.h"

/* Sizes derived from the model once (the widest layer decides the scratch). */
typedef struct g4_dims {
    int H, nH, L, P, E, K, Fe, V;
    int hd_max, nq_max, nkv_max, ff_max, max_in;
    int rot_full, rot_swa;
    int l_swa, l_full;       /* first sliding / full layer (their rope), -1 if none */
} g4_dims;

void g4_dims_of(const g4_model *m, g4_dims *d);

typedef struct g4_workspace {
    const g4_model *m;
    g4_dims d;
    int n_batch;
    g4_exec ex;              /* pool (shared), precision, matmul scratch */

    /* scratch for T <= n_batch tokens */
    float *x, *xn, *h2, *q, *k, *v, *att, *ff_a, *ff_b;
    float *ple, *ple_g;           /* [T][L*P], [T][P] */
    float *rope;                  /* cos/sin: [T][rot_swa] then [T][rot_full] */
    float *attn_ws;               /* g4_attn_ws_floats */
    float *moe_logit, *moe_w;     /* [T][E] */
    int *moe_sel;                 /* [T][K] */
    float *moe_in, *moe_out, *moe_acc;
    int *moe_rows;
    int32_t *pos, *lo_swa, *hi_swa, *lo_full, *hi_full;   /* [T] */
    int32_t *pcol;                /* [T] the batch's panel tokens (ex.mm.pcol) */
    const g4_kv_view **kvp;       /* [T] */
    size_t scratch_bytes;
} g4_workspace;

g4_workspace *g4_workspace_new(const g4_model *m, int n_batch, int n_threads, int precision, g4_error *err);
void g4_workspace_free(g4_workspace *w);

/* Bytes of scratch a workspace of this shape allocates (memory plan). */
size_t g4_workspace_bytes(const g4_model *m, int n_batch, int n_threads);

/* One batch of n tokens. Each token is a token id or an embedding row:
 *   tokens[t]  the id embedded (x sqrt(H)), unless embd gives the row; also
 *              the row of the per-layer-embedding table (E2B/E4B) the token
 *              reads: a media soft token uses 0, the pad id, as the reference
 *   embd       NULL, or [n][H] input rows (not scaled) used where has_embd[t]
 *              is set (has_embd NULL: every row)
 *   pos        [n] positions; a sequence's tokens must continue it: the first
 *              at its n_past, then one apart, in batch order
 *   seq        [n] the sequence of each token, or NULL: all in seq0
 *   run        NULL, or [n] run ids: consecutive tokens with the same id >= 0
 *              see each other on sliding layers (G4_MASK_BIDIR, the image
 *              tokens of 26B-A4B/31B); -1 for causal tokens
 *   out        NULL, or [n] flags: the tokens whose logits are computed, in
 *              batch order (NULL: g4_forward's all_rows decides) */
typedef struct g4_batch {
    int n;
    const int32_t *tokens;
    const float *embd;
    const uint8_t *has_embd;
    const int32_t *pos;
    g4_seq *const *seq;
    g4_seq *seq0;
    const int32_t *run;
    const int8_t *out;
    float *hidden;             /* NULL, or [rows][H]: the logits rows' LM-head input (after
                                  the final norm), for a drafter that continues from it */
} g4_batch;

/* Run the batch and advance each sequence's n_past. Returns 0, -1 + err, or
 * -2 + err when the KV pool has no page left (nothing was computed). logits: NULL, or room
 * for the rows asked for (b->out's flagged tokens; else n rows with all_rows,
 * or the last token's row), of n_vocab floats each. */
int g4_forward(g4_workspace *w, const g4_batch *b, float *logits, int all_rows, g4_error *err);

#endif
