/* Gemma 4's multi-token-prediction assistant ("gemma4-assistant" GGUF): a
 * small decoder without K/V projections that drafts the tokens after the
 * target's next one from the target's post-norm hidden row and its KV cache
 * (docs/gemma4-mtp.md). Loaded against its target (every shape it shares
 * with the target is checked), weights mapped as stored; its step is a
 * schedule of the ops in ops/ for one token (never the text forward pass:
 * it has no cache of its own and a different input and output). */
#ifndef G4_ASSISTANT_H
#define G4_ASSISTANT_H

#include <stdbool.h>

#include "format/gguf.h"
#include "model/kv.h"
#include "model/model.h"
#include "ops/ops.h"

#define G4_ASSISTANT_ARCH "gemma4-assistant"

typedef struct g4_asst_layer {
    bool swa;
    int head_dim, n_rot;
    float rope_base;
    const float *rope_freqs;      /* full layers: proportional-rope divisors, or NULL */
    int src;                      /* target layer whose (resolved) cache it reads */
    float *attn_norm, *q_norm, *post_attn_norm, *ffn_norm, *post_ffw_norm;
    float out_scale;
    g4_mat wq, wo, ffn_gate, ffn_up, ffn_down;
} g4_asst_layer;

typedef struct g4_assistant {
    g4_gguf_file *file;
    int n_layer;
    int n_embd;                   /* H_a */
    int n_embd_out;               /* H_t, the target's width */
    int n_head, n_vocab, sliding_window, ff_max, nq_max, hd_max;
    float eps;
    g4_asst_layer *layers;
    g4_mat tok_embd;              /* [V][H_a]: the tied LM head */
    g4_mat pre_proj;              /* [H_a][2 H_t]: concat(embedding, hidden) -> H_a */
    g4_mat post_proj;             /* [H_t][H_a]: y -> next step's hidden row */
    float *output_norm, *rope_freqs;
    uint64_t weight_bytes;
} g4_assistant;

/* Take ownership of f (closed by g4_assistant_free, also on failure). */
g4_assistant *g4_assistant_load(g4_gguf_file *f, const g4_model *target, g4_error *err);
void g4_assistant_free(g4_assistant *a);

/* Scratch for one drafting step. */
typedef struct g4_asst_ws g4_asst_ws;
g4_asst_ws *g4_asst_ws_new(const g4_assistant *a, int n_threads, int precision, g4_error *err);
void g4_asst_ws_free(g4_asst_ws *w);

/* One drafting step at position pos (the target's n_past: its cache holds
 * 0..pos-1): token id x, target-width row h [H_t] (the target's post-norm
 * row, or the previous step's h_out). Writes the next hidden row h_out [H_t]
 * (may alias h) and the logits [V] to logits (NULL: not kept); returns the
 * argmax draft. -1 + err on a bad token or position. */
int32_t g4_assistant_step(g4_asst_ws *w, const g4_model *target, g4_seq *seq, int32_t x, const float *h, int pos,
                          float *h_out, float *logits, g4_error *err);

#endif
