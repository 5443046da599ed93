/* Per-tensor output types and the tensor conversion driver behind
 * `gemma4c convert` and `gemma4c quantize`.
 *
 * Type choice follows llama.cpp: convert_hf_to_gguf.py's rules for the plain
 * output types (F32/F16/BF16: 1-D tensors, norms, names not ending in
 * .weight and the MoE router stay F32), and llama-quantize's
 * llama_tensor_get_type() for the quantized file types (Q4_K_M gives attn_v
 * and ffn_down of some layers Q6_K, embeddings Q6_K, ...), including its
 * fallbacks when a row is not a multiple of the block size. The kernels come
 * from the type table (g4_type_info()->from_float / to_float). */
#ifndef G4_QUANTIZE_H
#define G4_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "format/gguf.h"

/* llama_ftype numbers (general.file_type). */
enum g4_ftype {
    G4_FTYPE_F32 = 0, G4_FTYPE_F16 = 1, G4_FTYPE_Q4_0 = 2, G4_FTYPE_Q4_1 = 3,
    G4_FTYPE_Q8_0 = 7, G4_FTYPE_Q5_0 = 8, G4_FTYPE_Q5_1 = 9, G4_FTYPE_Q2_K = 10,
    G4_FTYPE_Q3_K_S = 11, G4_FTYPE_Q3_K_M = 12, G4_FTYPE_Q3_K_L = 13,
    G4_FTYPE_Q4_K_S = 14, G4_FTYPE_Q4_K_M = 15, G4_FTYPE_Q5_K_S = 16,
    G4_FTYPE_Q5_K_M = 17, G4_FTYPE_Q6_K = 18, G4_FTYPE_IQ4_NL = 25,
    G4_FTYPE_IQ4_XS = 30, G4_FTYPE_BF16 = 32,
};

int g4_ftype_from_name(const char *s);   /* case-insensitive; -1 if unknown */
const char *g4_ftype_name(int ftype);    /* NULL if unknown */
int g4_ftype_base_type(int ftype);       /* Q4_K_M -> G4_Q4_K; -1 if unknown */

/* Output type of every tensor of f (out[i] for f->tensors[i]).
 * g4_convert_plan: convert_hf_to_gguf rules (F32/F16/BF16; quantized ftypes
 * use g4_quant_plan). g4_quant_plan: llama-quantize rules. */
int g4_convert_plan(const g4_gguf_file *f, int ftype, int *out, g4_error *err);
int g4_quant_plan(const g4_gguf_file *f, int ftype, int *out, g4_error *err);

typedef struct g4_conv_opts {
    int n_threads;       /* <= 0: 1 */
    bool force;          /* overwrite the output */
    /* optional progress callback (gguf_write.h); the library never prints */
    void (*progress)(void *ud, uint64_t done, uint64_t total, double elapsed_s, bool final);
    void *progress_ud;
} g4_conv_opts;

/* `gemma4c convert`: HF folder -> GGUF of file type ftype. name may be NULL. */
int g4_convert_hf(const char *dir, const char *out, int ftype, const char *name, const g4_conv_opts *o,
                  g4_error *err);
/* `gemma4c quantize`: GGUF -> GGUF of file type ftype (llama-quantize layout:
 * tensors ordered by layer then name, general.quantization_version and
 * general.file_type moved to the end). */
int g4_quantize_gguf(const char *in, const char *out, int ftype, const g4_conv_opts *o, g4_error *err);

/* Write f with tensor i converted to types[i] (tensors in f's order, or in
 * `order` if non-NULL), metadata kvs (NULL: f's). Exposed for tests. */
int g4_write_converted(const g4_gguf_file *f, const int *types, const uint64_t *order,
                       const g4_gguf_kv *const *kvs, uint64_t n_kvs, const char *path,
                       const g4_conv_opts *o, g4_error *err);

#endif
