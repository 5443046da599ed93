/* LoRA adapters against a loaded model: binding (every pair checked against
 * the weight it adapts), the forward pass's hook scratch, and merging an
 * adapter into a model file. The representation is adapter/lora.h. */
#ifndef G4_MODEL_LORA_H
#define G4_MODEL_LORA_H

#include "adapter/lora.h"
#include "format/gguf.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/quantize.h"

/* The g4_mat of m that tensor row tid of layer adapts, or NULL + err (a
 * layer past the model's, a weight the model lacks, a tensor no matmul reads).
 * *skip is set (and NULL returned with no error) for a weight the model has
 * but never computes: K/V projections of layers that reuse another layer's
 * cache, whose adapters change nothing. */
const g4_mat *g4_lora_target(const g4_model *m, int tid, int layer, bool *skip, g4_error *err);

/* A new adapter for m (fine-tuning): a pair of rank r, A and B zero, for
 * every weight of m whose tensor id has its bit set in targets (1 << G4_T_ATTN_Q
 * | ...) and that the model computes (no K/V in layers reusing another
 * layer's cache, no V where K = V). alpha as PEFT's lora_alpha. */
g4_lora *g4_lora_create(const g4_model *m, uint64_t targets, int r, float alpha, g4_error *err);

/* Check adapter l against m: every pair's layer, weight and shapes. The
 * message names the tensor and both shapes. */
int g4_lora_check(const g4_model *m, const g4_lora *l, g4_error *err);

/* Bind n adapters with user scales (NULL: 1 each) to m. The adapters must
 * outlive the set. */
g4_lora_set *g4_lora_bind(const g4_model *m, g4_lora *const *ls, const float *scales, int n, g4_error *err);
void g4_lora_set_free(g4_lora_set *s);

/* Use s for the workspace's weight products from now on (NULL: none);
 * allocates the hook's scratch. s must outlive its use. */
int g4_workspace_set_lora(g4_workspace *w, const g4_lora_set *s, g4_error *err);

/* `gemma4c merge`: base (GGUF file or HF folder) with the adapters baked in,
 * W' = W + sum_i S_i m_i B_i A_i, written to out. One output tensor at a time
 * (a chunk of rows decoded, updated, re-encoded), never the whole model.
 * ftype < 0 keeps every tensor's type; else llama-quantize's rules for that
 * file type (model/quantize.h). */
int g4_lora_merge(const char *base, g4_lora *const *ls, const float *scales, int n, const char *out, int ftype,
                  const g4_conv_opts *o, g4_error *err);

#endif
