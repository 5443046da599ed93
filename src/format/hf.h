/* Hugging Face checkpoint folders as an in-memory GGUF description.
 *
 * g4_hf_open() reads config.json (fields nested under text_config, or flat for a
 * text-only save), generation_config.json, tokenizer.json +
 * tokenizer_config.json, chat_template.jinja and the safetensors weights, and
 * builds the g4_gguf_file that llama.cpp's convert_hf_to_gguf.py would write for
 * Gemma 4: the same metadata keys in the same order with the same types and
 * values, the same tensor names and shapes, tensors in the converter's order
 * (rope_freqs.weight first, then sorted by Hugging Face name).
 *
 * Tensor data points into the memory-mapped shards in its stored type
 * (F32/F16/BF16). Tensors the converter always stores as F32 (1-D tensors,
 * *_norm.weight, names not ending in .weight, the MoE router matrix) are
 * widened to F32 in owned memory; they are small. rope_freqs is generated.
 * Vision/audio tensors and the unused K/V projections of KV-shared layers
 * are skipped. */
#ifndef G4_HF_H
#define G4_HF_H

#include <stdbool.h>

#include "format/gguf.h"

typedef struct g4_hf_opts {
    const char *name;   /* general.name; NULL: derived from the folder name */
    /* Add tokenizer.ggml.eos_token_ids when generation_config.json lists
     * several EOS ids (llama.cpp's converter does not write this key). */
    bool eos_ids;
} g4_hf_opts;

/* g4_hf_open(dir) == g4_hf_open_ex(dir, {NULL, true}). */
g4_gguf_file *g4_hf_open(const char *dir, g4_error *err);
g4_gguf_file *g4_hf_open_ex(const char *dir, const g4_hf_opts *o, g4_error *err);

/* mmproj mode: the folder's media towers (vision_tower, embed_vision; the
 * audio ones once arch/gemma4_mm.c names them) as the g4_gguf_file llama.cpp's
 * `convert_hf_to_gguf.py --mmproj` writes (general.architecture "clip",
 * GGUF tensor names), so the encoders load one way from both. */
g4_gguf_file *g4_hf_open_mmproj(const char *dir, g4_error *err);

/* True when dir looks like a Hugging Face folder (has config.json). */
bool g4_hf_is_dir(const char *path);

/* The converter's rule: tensors stored as F32 whatever the output type. */
bool g4_hf_force_f32(const char *gguf_name, int n_dims);

/* general.size_label the way gguf-py computes it ("876K", "16x313K"). */
void g4_hf_size_label(const g4_gguf_file *f, char *out, size_t n);

#endif
