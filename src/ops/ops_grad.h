/* Backward twins of the ops in ops.h and attention.h (training, f32).
 *
 * Convention: every backward op ADDS into its gradient outputs (dx, dw, ...)
 * so that contributions from several paths (a residual and its branch, a KV
 * donor read by several layers, a tied embedding) meet without extra copies;
 * callers zero the buffers once. Inputs are the forward op's inputs, kept or
 * recomputed by the schedule (model/backward.c), never its outputs alone.
 *
 * Results are independent of the thread count: each output element is summed
 * by one thread in a fixed order (a resumed run reproduces a run bit for bit
 * only if that holds). */
#ifndef G4_OPS_GRAD_H
#define G4_OPS_GRAD_H

#include "ops/attention.h"
#include "ops/ops.h"

/* ---- weight products y[t] = W x[t] ------------------------------------------
 * Input gradient dx[t] += W^T dy[t] over the stored rows (any weight type: a
 * frozen, quantized base weight is decoded a row or a panel of rows at a
 * time, never whole). Exact (ex->precision 1): row by row, axpy per token.
 * Fast (0): quantized weights with n_out a multiple of 32 and T >= 64,
 * where the Q8_0 panel kernel runs (AVX-512 VNNI): W^T and dy in Q8_0
 * through prefill's int8 panels (ops_grad.c: relative error ~5e-3, the
 * int8 rounding of both per 32-group); otherwise panels of 128 rows x 256
 * columns decoded to f32, then a register-tiled product in bf16 pairs with
 * f32 sums (f32 without AVX512_BF16): relative error ~2e-3 (bf16 rounding
 * of dy and W). GEMMA4C_TRAIN_DX=bf16 keeps every weight on the second.
 * row_buf: g4_op_matmul_bwd_buf_floats(ex->n_threads, largest n_in, largest
 * T) floats. */
size_t g4_op_matmul_bwd_buf_floats(int n_threads, int64_t n_in_max, int T_max);
void g4_op_matmul_bwd_x(g4_exec *ex, const g4_mat *w, int64_t mat, const float *dy, int64_t ldy, int T, float *dx,
                        int64_t ldx, float *row_buf);
/* Weight gradient dW[o][i] += sum_t dy[t][o] x[t][i]; dW is f32 [n_out][n_in]. */
void g4_op_matmul_bwd_w(g4_exec *ex, float *dw, int64_t n_out, int64_t n_in, const float *x, int64_t ldx,
                        const float *dy, int64_t ldy, int T);

/* ---- row ops ------------------------------------------------------------------ */

/* y = x / rms(x) * w over n rows of `width` (ld apart): dx += ..., dw += ...
 * (w NULL: no weight, dw ignored; dw may be NULL for a frozen weight). */
void g4_op_rmsnorm_bwd(g4_exec *ex, float *dx, float *dw, const float *x, const float *w, const float *dy, int n,
                       int width, size_t ld, float eps);

/* out = gelu_tanh(g) * u: dg += dout * u * gelu'(g), du += dout * gelu(g)
 * (u NULL: out = gelu(g), du ignored). Elementwise: the pool splits long
 * runs (ex NULL: the calling thread). */
void g4_op_geglu_bwd(g4_exec *ex, float *dg, float *du, const float *g, const float *u, const float *dout, long n);

/* y = cap * tanh(z / cap) given the output y: dz = dy * (1 - (y/cap)^2), in place on dy. */
void g4_op_softcap_bwd(float *dy, const float *y, long n, float cap);

/* The inverse rotation: the gradient of g4_op_rope, in place on dx. */
void g4_op_rope_bwd(float *dx, const float *cs, int n_rot);

/* ---- per-layer embeddings: backward of g4_op_ple_combine -----------------------
 * c_in: the op's input (the projected context part, before scaling), dc: the
 * output gradient [L*P]. Adds into dc_in [L*P] (gradient of c_in), dtok [L*P]
 * (gradient of the token row, may be NULL) and dnorm [P] (may be NULL).
 * tmp: L*P floats. */
void g4_op_ple_combine_bwd(const float *c_in, const float *dc, int L, int P, int H, const float *proj_norm,
                           float eps, float *dc_in, float *dtok, float *dnorm, float *tmp);

/* ---- attention ------------------------------------------------------------------
 * Backward of g4_op_attention for caches laid out contiguously by position
 * (position p is row p of k/v, [n_kv_head][head_dim] each): recomputes each
 * query's probabilities over [lo, hi) from q and k, then adds dq [T][nq],
 * dk, dv [n_pos][nkv*hd]. Mask kinds reach it as the ranges (g4_attn_ranges).
 * softcap > 0: scores were cap * tanh(s / cap) (Gemma 4 uses none; kept so
 * the op is the general one). ws: g4_attn_bwd_ws_floats() floats. */
typedef struct g4_attn_bwd {
    const float *q, *k, *v, *dout;
    float *dq, *dk, *dv;
    int T, n_pos, n_head, n_kv_head, head_dim;
    const int32_t *lo, *hi;
    float softcap;
    /* optional, fast path: g4_attn_bwd_store_floats(T, n_pos, n_head)
     * floats where pass 1 leaves P^T and dS^T [n_head][n_pos][T] for pass 2
     * (which otherwise recomputes both: 2 of attention's 7 products); the
     * same bits either way. NULL: recompute. */
    float *ps_store;
} g4_attn_bwd;
size_t g4_attn_bwd_ws_floats(int n_threads, int n_pos, int n_head, int n_kv_head, int head_dim);
size_t g4_attn_bwd_store_floats(int T, int n_pos, int n_head);
void g4_op_attention_bwd(g4_exec *ex, const g4_attn_bwd *a, float *ws);

/* ---- loss -------------------------------------------------------------------------
 * Cross entropy of one row of logits against target tgt: returns -log p(tgt)
 * (in double) and writes dlogits = (softmax - onehot) * scale in place.
 * softcap > 0: the row holds cap * tanh(z / cap) and the gradient written is
 * the one of the uncapped z (the head's product output). */
double g4_op_xent_fwd_bwd(float *logits, int V, int tgt, float scale, float softcap);

/* g4_op_xent_fwd_bwd over the rows of lg [n][V] (row i's target tgt[i];
 * tgt NULL or tgt[i] < 0: no loss, the row zeroed when zero_untargeted), the rows split
 * over ex's threads; loss[i] gets row i's loss (0 without a target), so a
 * caller summing them in row order gets the same bits with any thread count.
 * ex->precision 0 (training's fast path): e^x in f32 vector code (a few ulp
 * from the double exp of the exact path). */
void g4_op_xent_rows(g4_exec *ex, float *lg, int n, int V, const int32_t *tgt, float scale, float softcap,
                     int zero_untargeted, double *loss);

#endif
