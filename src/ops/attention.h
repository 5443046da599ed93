/* Attention of query rows over a KV cache, with an explicit mask.
 *
 * The cache is a ring of `cap` positions: position p lives in slot p % cap,
 * each slot [n_kv_head][head_dim] f32 for K and for V. Each query token has
 * its own cache (tokens of different sequences may share a batch) and its
 * own visible key positions [lo, hi), which g4_attn_ranges derives from the
 * mask kind. Scores are q.k with scale 1 (Gemma 4 normalises q and k
 * instead); no softcap. */
#ifndef G4_ATTENTION_H
#define G4_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "ops/ops.h"
#include "tensor/vec_kv.h"

typedef enum g4_mask_kind {
    G4_MASK_CAUSAL,    /* keys at positions 0..pos */
    G4_MASK_SLIDING,   /* keys at pos - window + 1 .. pos */
    G4_MASK_BIDIR,     /* causal (or sliding when window > 0), and the tokens of one
                          run (same run id >= 0, consecutive in the batch) also see
                          each other: an image's soft tokens on 26B/31B sliding layers */
    G4_MASK_CHUNKED,   /* blocks of `chunk` positions; a query sees its own block and
                          `left` blocks before it (local attention of an encoder) */
} g4_mask_kind;

typedef struct g4_mask {
    g4_mask_kind kind;
    int window;           /* SLIDING, BIDIR: 0 = unlimited */
    int chunk, left;      /* CHUNKED */
    const int32_t *run;   /* BIDIR: per token, run id or -1 */
} g4_mask;

/* Visible positions [lo[t], hi[t]) of T query tokens at positions pos[t]
 * (n_pos: how many positions exist, bounds CHUNKED blocks). */
void g4_attn_ranges(const g4_mask *mask, const int32_t *pos, int T, int n_pos, int32_t *lo, int32_t *hi);

/* A cache as the attention reads it: position p's row [n_kv_head][head_dim]
 * is row g4_kv_row(c, p) of the arena, `rs` bytes at c->k + row * rs, head g
 * at + g * hs, stored as `type` (vec_kv.h: f32, f16, q8_0 or q4_0). Pages of
 * `page` positions; the page table wraps, so a ring is one page of its
 * capacity (n_pages = 1) and a paged cache a table of n_pages pages. */
typedef struct g4_kv_view {
    char *k, *v;              /* arenas */
    int page;                 /* positions per page */
    int n_pages;              /* entries of pages[] */
    const int32_t *pages;     /* page ids in the arena */
    int type;                 /* g4_kv_type */
    size_t rs, hs;            /* bytes per position (all KV heads), per head;
                                 0, 0 with type f32: packed f32 rows */
} g4_kv_view;

static inline size_t g4_kv_row(const g4_kv_view *c, int p) {
    return (size_t)c->pages[(p / c->page) % c->n_pages] * (size_t)c->page + (size_t)(p % c->page);
}

typedef struct g4_attn {
    const float *q;              /* [T][n_head * head_dim] */
    float *out;                  /* [T][n_head * head_dim] */
    int T, n_head, n_kv_head, head_dim;
    const g4_kv_view *const *kv; /* per token */
    const int32_t *lo, *hi;      /* per token; every position in [lo, hi) is in its cache */
    /* NULL / 0, or the np tokens (ascending) whose logits nobody reads (a
     * prompt's tokens but its last, g4_mm_scratch.pcol): where their cache
     * allows (vec_kv.h: g4_kv_tile_ok) they go in tiles of consecutive
     * tokens over 16-position blocks, each block converted once per tile;
     * a token's result depends only on its own positions, never on the
     * tile, so it is the same batched, chunked or alone */
    const int32_t *pcol;
    int np;
} g4_attn;

/* Workspace floats g4_op_attention needs for n_threads and heads of up to
 * nq_max = n_head * head_dim floats. */
size_t g4_attn_ws_floats(int n_threads, int n_head, int nq_max);

/* Grouped-query attention: the n_head / n_kv_head query heads sharing a KV
 * head read each cache row once; online softmax over blocks of positions.
 * ws: g4_attn_ws_floats(ex->n_threads, n_head, nq) floats. */
void g4_op_attention(g4_exec *ex, const g4_attn *a, float *ws, int nq_max);

/* Full attention (every token sees every token) over packed f32 rows, for
 * the encoders' fast path: q, k, v, out [N][n_head * hd], scores scaled by
 * `scale`. Blocked per (head, block of queries) as two products with
 * contiguous rows (scores = Q (K^T), K transposed once per head; out = P V),
 * so each K/V row loaded serves many queries without horizontal sums; the
 * per-query op above re-reads a head's whole K/V for every query. Not the
 * exact path's summation order. With ex->mm.bf16 (and AVX512_BF16) both
 * products take bf16 operands (tensor/bf16.h): K and V packed once per
 * call, the queries and the softmax weights rounded per block. ws:
 * g4_attn_dense_ws_floats(ex->n_threads, N, n_head, hd) floats. */
size_t g4_attn_dense_ws_floats(int n_threads, int N, int n_head, int hd);
void g4_op_attention_dense(g4_exec *ex, const float *q, const float *k, const float *v, float *out, int N,
                           int n_head, int hd, float scale, float *ws);

#endif
