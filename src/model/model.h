/* Gemma 4 text model: hyper-parameters, per-layer table and weights.
 *
 * Config is data: everything that differs between E2B, E4B, 26B-A4B and 31B
 * (sliding or full, head dim, KV heads, FFN width, KV donor, K=V) is computed
 * once into `g4_layer` entries from the GGUF metadata; the forward pass only
 * reads this table. Spec: shared/docs/gemma4-text.md §1-§3. */
#ifndef G4_MODEL_H
#define G4_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "format/gguf.h"
#include "tensor/mat.h"
#include "util/error.h"

typedef struct g4_layer {
    /* geometry */
    bool swa;            /* sliding-window attention (else full) */
    int head_dim;
    int n_kv_head;
    int n_ff;            /* dense MLP width */
    bool own_kv;         /* computes and caches its own K/V */
    int kv_src;          /* layer whose cache it reads (itself if own_kv) */
    bool k_eq_v;         /* no V projection: V is the raw K projection */
    float rope_base;
    int n_rot;           /* rotated dims (pairs i, i + n_rot/2) */
    const float *rope_freqs; /* per-pair divisor (full layers), or NULL */
    int kv_slot;         /* index into the context's cache array, -1 if none */

    /* weights (1-D ones decoded to f32 at load; they are tiny) */
    float *attn_norm, *q_norm, *k_norm, *post_attn_norm;
    float *ffn_norm, *post_ffw_norm;
    float *post_ffw_norm_1, *pre_ffw_norm_2, *post_ffw_norm_2;   /* MoE */
    float *router_scale, *expert_scale;                           /* MoE */
    float *ple_post_norm;                                         /* PLE */
    float out_scale;     /* layer_output_scale */
    g4_mat wq, wk, wv, wo;
    g4_mat ffn_gate, ffn_up, ffn_down;
    g4_mat router;                       /* [n_expert][n_embd] */
    g4_mat exp_gate_up;                  /* fused: n_mat = experts, rows 2*n_ff_exp (gate first) */
    g4_mat exp_gate, exp_up;             /* split form (when not fused) */
    g4_mat exp_down;                     /* n_mat = experts, rows n_embd */
    g4_mat ple_gate, ple_proj;           /* [P][H], [H][P] */
} g4_layer;

typedef struct g4_model {
    g4_gguf_file *file;
    char *name;

    /* hyper-parameters */
    int n_layer, n_embd, n_head, n_vocab;
    int n_ctx_train;
    int head_dim_full, head_dim_swa;
    int sliding_window;
    int n_kv_shared;
    int n_ple;                  /* per-layer embedding width P (0 = none) */
    int n_expert, n_expert_used, n_ff_exp;
    float eps, softcap;
    int bos_id, eos_id;

    g4_layer *layers;

    /* global weights */
    g4_mat tok_embd;            /* [V][H], also the LM head when tied */
    g4_mat output;              /* LM head (== tok_embd when tied) */
    float *output_norm;
    g4_mat ple_embd;            /* [V][L*P] */
    bool ple_in_file_map;       /* ple_embd lies in a read-only file mapping (see g4_release_rows) */
    g4_mat ple_model_proj;      /* [L*P][H] */
    float *ple_proj_norm;       /* [P] */
    float *rope_freqs;          /* [head_dim_full/2] or NULL */

    uint64_t n_params, weight_bytes;
} g4_model;

/* Take ownership of f (closed by g4_model_free, also on failure). */
/* Where each row of the tensor table (arch/gemma4.h) lands in g4_model /
 * g4_layer: byte offset + 1, 0 where it has no field. */
extern const size_t g4_model_field[];   /* G4_T_COUNT entries */
extern const size_t g4_layer_field[];

g4_model *g4_model_load(g4_gguf_file *f, g4_error *err);
void g4_model_free(g4_model *m);

/* Hint that a memory-mapped table is read one scattered row at a time (no
 * readahead, small pages); pair with g4_release_rows. */
void g4_advise_row_table(const g4_mat *w);

/* Unmap the pages of a row just read from a memory-mapped, read-only table
 * (and whatever the kernel mapped with it: fault-around, a large folio). Only for tables
 * in a file mapping: the next read faults them back in from the page cache.
 * Keeps the per-layer-embedding rows of past tokens out of the process's
 * resident memory, so RSS stays at the memory plan however long the text. */
void g4_release_rows(const g4_mat *w, const void *p, size_t len);

/* Number of layers that own a KV cache and the bytes they need. */
typedef struct g4_kv_plan {
    int n_cache;                 /* owning layers */
    uint64_t bytes_per_token_full; /* per position, all full owning layers (K+V, in the cache type) */
    uint64_t swa_ring;           /* positions kept by each sliding cache */
    uint64_t bytes_swa;          /* all sliding owning layers, fixed */
    uint64_t bytes_total;
} g4_kv_plan;

void g4_kv_plan_for(const g4_model *m, int n_ctx, int n_batch, g4_kv_plan *out);   /* f32 cache */
/* The same for a cache of g4_kv_type t (each layer's rows as g4_kv_type_for). */
void g4_kv_plan_type(const g4_model *m, int n_ctx, int n_batch, int t, g4_kv_plan *out);

#endif
