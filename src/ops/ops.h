/* The operations a Gemma 4 decoder is made of, on plain f32 rows and stored
 * weights. forward.c is the schedule that calls them in the spec's order
 * (shared/docs/gemma4-text.md §2); a backward pass, an encoder or another
 * backend plugs in here, never by copying the forward pass.
 *
 * Every op takes a g4_exec: the thread pool, the precision, the matmul
 * scratch. Activations are row-major [T][width] f32 with an explicit row
 * stride where it matters. Ops never allocate: callers pass scratch.
 * Attention has its own header (ops/attention.h). */
#ifndef G4_OPS_H
#define G4_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter/lora.h"
#include "tensor/mat.h"
#include "tensor/matmul.h"
#include "tensor/pool.h"

typedef struct g4_exec {
    g4_pool *pool;
    int n_threads;       /* g4_pool_size(pool) */
    int precision;       /* 0 fast (quantized activations), 1 exact (f32) */
    g4_mm_scratch mm;
    /* LoRA adapters added to the weight products (NULL: none), and the
     * hook's scratch: G4_LORA_ROWS rows of max_r + max_out floats */
    const g4_lora_set *lora;
    float *lora_tmp;
    /* NULL, or (training's fast path) scratch of max_r * (largest adapted
     * n_in + T + max_out) floats: the adapters' products then run as tiled
     * f32 products over token slabs (ops.c lora_add_tiled) instead of
     * short dots through the weights' matmul */
    float *lora_tiled;
} g4_exec;

/* Tokens per adapter step: bounds the hook's scratch whatever the batch. */
#define G4_LORA_ROWS 64

/* ---- weight products: the one path every weight is read through ----------
 * (a LoRA adapter or another backend hooks in here). y[t] = W x[t], plus
 * scale * B (A x[t]) for each adapter pair of W in ex->lora. */
void g4_op_matmul(g4_exec *ex, const g4_mat *w, int64_t mat, const float *x, int64_t ldx, int T, float *y,
                  int64_t ldy);
/* Several products over the same input rows in one parallel section (q/k/v,
 * gate/up, the selected experts); a job's softcap > 0 caps its output. */
void g4_op_matmul_multi(g4_exec *ex, const g4_mm_job *jobs, int n_jobs, const float *x, int64_t ldx, int T);

/* ---- elementwise and row ops ---------------------------------------------- */

/* dst[t] = rmsnorm(src[t]) * w (w NULL: no weight) for n rows of `width`,
 * rows `ld` floats apart; then add[t] += dst[t] when add is not NULL (the
 * residual add that follows most norms). dst may equal src. */
void g4_op_rmsnorm(g4_exec *ex, float *dst, const float *src, const float *w, int n, int width, size_t ld,
                   float eps, float *add);

/* out = gelu_tanh(g) * u over n elements (u NULL: gelu only). out may be g. */
void g4_op_geglu(g4_exec *ex, float *out, const float *g, const float *u, long n);

/* dst[i] = min(max(src[i], lo), hi) over n elements, split across the pool
 * when large (the encoders' ClippableLinear bounds). dst may equal src. */
void g4_op_clamp(g4_exec *ex, float *dst, const float *src, size_t n, float lo, float hi);

/* x *= s over n elements. */
void g4_op_scale(float *x, size_t n, float s);

/* ---- rotary position embedding (NeoX pairs i, i + n_rot/2) ---------------- */

/* cos/sin table for T tokens at positions pos[]: out[t][2i], out[t][2i+1] =
 * cos, sin of pos[t] * base^(-2i/n_rot) / factors[i] (factors may be NULL). */
void g4_op_rope_table(float *out, const int32_t *pos, int T, int n_rot, float base, const float *factors);
/* Rotate the first n_rot dims of one head with one token's table row. */
void g4_op_rope(float *x, const float *cs, int n_rot);

/* ---- mixture of experts (26B-A4B, §2.4.4) ---------------------------------- */

typedef struct g4_moe_weights {
    const g4_mat *router;          /* [E][H] */
    const float *router_scale;     /* [H] */
    const float *expert_scale;     /* [E] or NULL */
    const g4_mat *gate_up;         /* fused [E][2 Fe][H] (gate rows first), or NULL: */
    const g4_mat *gate, *up;       /*   split [E][Fe][H] */
    const g4_mat *down;            /* [E][H][Fe] */
    int E, K, Fe;
} g4_moe_weights;

/* Routing: logits = router(rmsnorm(x) * router_scale / sqrt(H)), softmax over
 * all E experts, top K (lowest id on ties), renormalised, times
 * expert_scale. Writes sel[T][K] and the dense weights w[T][E] (0 where not
 * selected). logit and xs are scratch of [T][E] and [T][H] floats. */
void g4_op_moe_route(g4_exec *ex, const g4_moe_weights *mw, const float *x, int T, int H, float eps,
                     float *logit, float *xs, int *sel, float *w);

/* Scratch for the expert products of T tokens (sizes in floats / ints);
 * prefill works through the experts in chunks of at most cap group rows. */
typedef struct g4_moe_scratch {
    float *in;      /* [T][H] gathered rows */
    float *out;     /* [max(T, K)][H] */
    float *ff_a;    /* [max(T, K)][2 Fe] */
    float *ff_b;    /* [max(T, K)][2 Fe] */
    int *rows;      /* [T] */
    int cap;        /* rows in, out, ff_a, ff_b, rows and the matmul scratch hold
                     * (>= T; 0: T): a chunk takes up to cap group rows, so a
                     * few tokens (batched decode, draft verification) in a
                     * larger workspace run in few sections */
} g4_moe_scratch;

/* out[t] = sum_k w[t][sel[t][k]] * down_e(geglu(gate_e x[t], up_e x[t])).
 * Tokens are grouped per expert so each selected expert is read once per
 * batch, its products matrix-matrix over its group, several experts' groups
 * per parallel section; one token runs all its experts as two parallel
 * sections. Outputs are added in ascending expert id in both cases. */
void g4_op_moe_experts(g4_exec *ex, const g4_moe_weights *mw, const float *x, int T, int H, const int *sel,
                       const float *w, g4_moe_scratch *sc, float *out);

/* ---- per-layer embeddings (E2B/E4B, §2.3) ----------------------------------- */

/* One token's per-layer inputs, [L*P], in place in c: c holds the context
 * part proj(e) (e the input embedding, proj [L*P][H]) on entry; each layer
 * slice is scaled by 1/sqrt(H) and RMS-normed with proj_norm, then the token
 * part tok (its row of the [V][L*P] table, decoded) times sqrt(P) is added
 * and the sum scaled by 1/sqrt(2). */
void g4_op_ple_combine(float *c, const float *tok, int L, int P, int H, const float *proj_norm, float eps);

#endif
