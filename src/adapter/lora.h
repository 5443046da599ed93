/* LoRA adapters: the one representation shared by the readers (GGUF LoRA as
 * llama.cpp writes it, PEFT folders), the writers, merging, the matmul hook
 * (ops/ops.c) and fine-tuning.
 *
 * An adapter is a list of pairs, one per adapted base weight W [n_out][n_in]
 * (ggml ne = {n_in, n_out}):
 *     A [r][n_in]   PyTorch lora_A.weight [r, in],  GGUF "<base>.lora_a" ne {in, r}
 *     B [n_out][r]  PyTorch lora_B.weight [out, r], GGUF "<base>.lora_b" ne {r, out}
 * both row-major f32 (the stored bytes of either format, decoded), and the
 * product becomes
 *     y = W x + S * m * B (A x),   m = alpha / r   (alpha / sqrt(r) with rsLoRA;
 *                                                   1 when a GGUF has no alpha)
 * with S the user's scale: llama.cpp's rule (llama-adapter.cpp) and PEFT's.
 * A pair names its base weight by the row of the Gemma 4 tensor table
 * (arch/gemma4.c) and a layer, so both formats map through the same names.
 *
 * Layering: adapter/ sits above format/ (it reads files) and below ops/
 * (the matmul hook applies it). Binding to a loaded model (shape checks,
 * which g4_mat each pair adds to) is model/lora.c. */
#ifndef G4_ADAPTER_LORA_H
#define G4_ADAPTER_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/mat.h"
#include "util/error.h"

typedef struct g4_lora_pair {
    int tid;             /* enum g4_tensor_id: the base weight's row of g4_tensors[] */
    int layer;           /* -1 for a global tensor */
    int r;               /* rank */
    int64_t n_in, n_out; /* the base weight's ggml ne[0], ne[1] */
    float *a;            /* [r][n_in] */
    float *b;            /* [n_out][r] */
    float alpha;         /* this pair's alpha (PEFT alpha_pattern may differ per module) */
} g4_lora_pair;

typedef struct g4_lora {
    char *path;          /* where it was read (messages), owned */
    char *name;          /* GGUF general.name, or NULL */
    char *base;          /* PEFT base_model_name_or_path, or NULL */
    float alpha;         /* adapter.lora.alpha / lora_alpha (0 in a GGUF: multiplier 1) */
    int rank;            /* PEFT r; GGUF: the rank of the first pair */
    bool rslora;         /* multiplier alpha / sqrt(r) (PEFT use_rslora) */
    g4_lora_pair *pairs; /* in reading order */
    int n_pairs;
} g4_lora;

/* The multiplier m of a pair (S not included). */
float g4_lora_pair_mult(const g4_lora *l, const g4_lora_pair *p);

/* ---- reading ---------------------------------------------------------------
 * Both readers check everything that does not need the base model: the
 * metadata, each tensor's name (a Gemma 4 weight that a matmul reads), type,
 * shape against its partner (A's r = B's r; A and B both present). Shapes
 * against the base are checked by g4_lora_bind (model/lora.h). */

/* A GGUF LoRA file (general.type "adapter", adapter.type "lora"). */
g4_lora *g4_lora_read_gguf(const char *path, g4_error *err);
/* The same from a GGUF image in memory (fuzzer, tests); buf must outlive
 * the call only (the result owns copies). */
g4_lora *g4_lora_parse_gguf(const void *buf, size_t size, const char *name, g4_error *err);
/* A PEFT folder: adapter_config.json + adapter_model.safetensors. */
g4_lora *g4_lora_read_peft(const char *dir, g4_error *err);
/* The same from the two files' contents in memory (fuzzer, tests). */
g4_lora *g4_lora_parse_peft(const char *config_json, size_t config_len, const void *st, size_t st_size,
                            const char *name, g4_error *err);
/* Either, by what path is (a folder: PEFT; a file: GGUF). */
g4_lora *g4_lora_read(const char *path, g4_error *err);
void g4_lora_free(g4_lora *l);

/* An empty adapter to fill (training): n pairs with zeroed storage of the
 * given shapes; the caller sets tid/layer/r/n_in/n_out first via specs. */
g4_lora *g4_lora_new(const g4_lora_pair *specs, int n, float alpha, int rank, g4_error *err);

/* ---- writing ---------------------------------------------------------------
 * Output files appear under their name only when complete. */

/* GGUF LoRA as llama.cpp's convert_lora_to_gguf.py writes it (F32 tensors in
 * the order of the sorted PEFT names, lora_a before lora_b; keys
 * general.architecture, general.type, adapter.type, general.name,
 * adapter.lora.alpha, general.quantization_version). name NULL: l->name or
 * "LoRA". An rsLoRA adapter is written with alpha * sqrt(r) (GGUF has no
 * rsLoRA flag; the product is the same). */
int g4_lora_write_gguf(const g4_lora *l, const char *path, const char *name, bool force, g4_error *err);
/* The same with the tensors stored as type (G4_F32, G4_F16 or G4_BF16: the
 * converter's --outtype f32/f16/bf16; the reader takes any decodable type). */
int g4_lora_write_gguf_as(const g4_lora *l, const char *path, const char *name, int type, bool force,
                          g4_error *err);
/* PEFT folder (created if missing): adapter_config.json and
 * adapter_model.safetensors with Hugging Face names
 * ("base_model.model.model.language_model.layers.N.self_attn.q_proj.lora_A.weight"). */
int g4_lora_write_peft(const g4_lora *l, const char *dir, bool force, g4_error *err);

/* ---- application (the matmul hook) -------------------------------------------
 * A set of adapters bound to one model's weights: per adapted g4_mat, the
 * pairs that add to its product, sorted by the g4_mat's address so the hook
 * finds them by binary search. The A/B views point at the adapters' storage
 * (not copies): an optimizer step on g4_lora_pair.a/b is seen by the next
 * forward pass. */
typedef struct g4_lora_entry {
    const g4_mat *w;     /* the base weight (identity: the model's g4_mat) */
    g4_mat a, b;         /* F32 views: a {n_in, r}, b {r, n_out} */
    float scale;         /* S * m */
    g4_lora_pair *pair;  /* where a/b live (training writes gradients for it) */
} g4_lora_entry;

typedef struct g4_lora_set {
    g4_lora_entry *e;    /* sorted by w */
    int n;
    int max_r;
    int64_t max_out;
} g4_lora_set;

/* First entry for w and the count (0 when w is not adapted). */
int g4_lora_find(const g4_lora_set *s, const g4_mat *w, const g4_lora_entry **first);

#endif
