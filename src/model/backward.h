/* Training: the decoder's forward and backward schedule over the ops and
 * their backward twins (ops/ops_grad.h), for one sequence at a time.
 *
 * The inference pass (forward.c) runs over paged KV caches and batches of
 * many sequences; training needs every position of one sequence at once and
 * the inputs of every op again in backward. So this schedule keeps, per
 * layer, only the residual stream entering it (activation checkpointing) and
 * the K/V of the layers that own a cache (read by KV-sharing layers), and
 * recomputes a layer's internals when its backward runs: memory grows with
 * n_layer * n_ctx * n_embd, not with every intermediate; or, within a memory
 * budget, keeps the product outputs of some layers (g4_train_ws_keep). Layer order, norms
 * and scales are those of forward.c (spec §2.4.1); test_grad checks that both
 * passes give the same logits.
 *
 * Gradients: every tensor of the model has a slot, indexed by its row id in
 * the tensor table (arch/gemma4.h); NULL means frozen. Full training decodes
 * every tensor to an owned f32 copy (g4_params_new(.., 1, ..)); fine-tuning
 * keeps the base in its stored form and gives gradients to an adapter only. */
#ifndef G4_BACKWARD_H
#define G4_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

#include "arch/gemma4.h"
#include "model/forward.h"
#include "model/model.h"

typedef struct g4_param {
    int id, layer;        /* tensor row (arch/gemma4.h) and layer, -1 for globals */
    char name[64];        /* GGUF name */
    float *val;           /* f32 values the forward reads (owned copy) */
    float *grad;          /* its gradient */
    size_t n;             /* elements */
    int64_t ne[3];        /* ggml shape (n_in, n_out, n_mat), 1 where unused */
} g4_param;

typedef struct g4_params {
    g4_model *m;
    g4_param *p;                    /* trainable tensors, in file order */
    int n;
    float *g[G4_T_COUNT];           /* global gradients by tensor id (NULL: frozen) */
    float *(*lg)[G4_T_COUNT];       /* [n_layer][id] */
    void **owned;
    int n_owned;
} g4_params;

/* trainable: 1 decodes every tensor of m to owned f32 (m's views are
 * repointed, so m must outlive the params and not be shared with inference
 * that expects the stored types) and gives each a gradient; 0: everything
 * frozen (an empty set, for a forward-only loss or an adapter's run). */
g4_params *g4_params_new(g4_model *m, int trainable, g4_error *err);
void g4_params_free(g4_params *ps);
void g4_params_zero_grad(g4_params *ps);

typedef struct g4_train_ws g4_train_ws;

/* Scratch for sequences of up to n_ctx tokens. */
g4_train_ws *g4_train_ws_new(const g4_model *m, int n_ctx, int n_threads, g4_error *err);
void g4_train_ws_free(g4_train_ws *tw);
size_t g4_train_ws_bytes(const g4_train_ws *tw);

/* Activation memory against recomputation. By default every layer but the
 * last is recomputed in backward from the residual stream entering it (one
 * more forward of work); g4_train_ws_keep keeps the internals of as many
 * layers as fit in budget bytes (from the top layer down; SIZE_MAX: all) so
 * their backward reruns no product. The same bits either way. Layers of a
 * model with experts are always recomputed (their routing state is not
 * kept). Call once, after g4_train_ws_new; returns the layers kept, or -1 +
 * err. g4_train_keep_bytes: what layer l would take at n_ctx (0: never
 * kept); g4_train_ws_kept: layers kept and their bytes (within
 * g4_train_ws_bytes). */
size_t g4_train_keep_bytes(const g4_model *m, int n_ctx, int l);
int g4_train_ws_keep(g4_train_ws *tw, size_t budget, g4_error *err);
int g4_train_ws_kept(const g4_train_ws *tw, size_t *bytes);

/* Wall seconds of g4_train_seq's parts, summed over its calls: the layers'
 * forward, the head's forward (norm, logits, loss), the head's backward
 * (its input gradient), the layers' recomputed forward, the layers'
 * backward (with the embeddings' at the end). */
enum { G4_TRAIN_FWD, G4_TRAIN_HEAD, G4_TRAIN_HEAD_BWD, G4_TRAIN_RECOMPUTE, G4_TRAIN_BWD, G4_TRAIN_PARTS };
void g4_train_ws_profile(const g4_train_ws *tw, double s[G4_TRAIN_PARTS]);

/* 1 (the default): every product exact (f32 activations against the stored
 * rows, each row decoded per use): the gradient tests' path. 0: the fast
 * path for fine-tuning a quantized base: forward products through the
 * inference prefill kernels (int8 activations, panels), the backward's
 * input gradients through decoded panels and a tiled f32 product, the
 * adapters' gradients threaded. */
void g4_train_ws_set_precision(g4_train_ws *tw, int precision);

/* LoRA fine-tuning: the adapters of s are added to the weight products of
 * this workspace's passes (the forward hook, ops/ops.c) and their gradients
 * ADDED by g4_train_seq's backward into ga[i] ([r][n_in]) and gb[i]
 * ([n_out][r]) for entry i of s (NULL arrays: not trained). s NULL: none. */
int g4_train_ws_set_lora(g4_train_ws *tw, const g4_lora_set *s, float *const *ga, float *const *gb,
                         g4_error *err);

/* One sequence tok[0..T) at positions 0..T-1. loss (double) = sum over t
 * with tgt[t] >= 0 of -log p(tgt[t] | tok[0..t]); ps non-NULL: gradients of
 * gscale * loss are ADDED to ps's gradients. logits: NULL or [T][n_vocab],
 * the (softcapped) logits of the forward. Returns 0, or -1 + err. */
int g4_train_seq(g4_train_ws *tw, g4_params *ps, const int32_t *tok, const int32_t *tgt, int T, float gscale,
                 double *loss, float *logits, g4_error *err);

#endif
