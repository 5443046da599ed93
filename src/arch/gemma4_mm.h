/* Gemma 4 media towers: the Hugging Face <-> GGUF (mmproj) tensor names,
 * as llama.cpp's converter writes them (shared/docs/gemma4-multimodal.md
 * §10.1). format/hf.c's mmproj mode reads this table; the encoders load by
 * the GGUF names.
 *
 * An entry maps one HF module (the part after the tower prefix, with "N" for
 * the layer index) to one GGUF base name. Kinds:
 *   PLAIN: the HF name is the whole tensor name, the GGUF name likewise;
 *   CLIP:  a ClippableLinear: HF "<m>.linear.weight" -> GGUF "<b>.weight",
 *          HF "<m>.input_min|input_max|output_min|output_max" (0-d) -> GGUF
 *          "<b>.<same>" (1 element). */
#ifndef G4_GEMMA4_MM_H
#define G4_GEMMA4_MM_H

#include <stddef.h>

typedef enum g4_mm_kind { G4_MM_PLAIN, G4_MM_CLIP } g4_mm_kind;

typedef struct g4_mm_name {
    const char *hf;     /* e.g. "model.vision_tower.encoder.layers.N.self_attn.q_proj" */
    const char *gguf;   /* e.g. "v.blk.N.attn_q" */
    g4_mm_kind kind;
} g4_mm_name;

/* The table, ended by a {NULL} entry. */
extern const g4_mm_name g4_mm_names[];

/* Map a full HF tensor name to its GGUF name. Returns 1 (mapped), 0 (not a
 * media-tower tensor of the table). out gets the name ("" on 0). */
int g4_mm_map_hf(const char *hf, char *out, size_t n);

/* Is this HF tensor part of a media tower or embedder (mapped or not)? */
int g4_mm_is_media(const char *hf);

#endif
