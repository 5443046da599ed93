/* An mmproj: the media encoders of a Gemma 4 model, from a GGUF file written
 * by llama.cpp's converter (general.architecture "clip", projector types
 * gemma4v / gemma4a) or from a Hugging Face folder's vision_tower /
 * audio_tower / embed_* tensors (format/hf.c's mmproj mode names them as the
 * GGUF does, so one loader serves both). */
#ifndef G4_ENCODER_MMPROJ_H
#define G4_ENCODER_MMPROJ_H

#include <stdbool.h>

#include "encoder/audio.h"
#include "encoder/vision.h"
#include "format/gguf.h"
#include "util/error.h"

typedef struct g4_mmproj {
    g4_gguf_file *file;        /* owned: the encoders' weights are views into it */
    g4_vision_enc *vision;     /* NULL: no vision tower */
    g4_audio_enc *audio;       /* NULL: no audio tower */
    bool declares_audio;       /* clip.has_audio_encoder (for the error when audio is NULL) */
    int n_embd_text;           /* width of the soft tokens (both towers agree) */
    int image_budget;          /* default soft tokens per image (processor config; 280) */
} g4_mmproj;

/* path: an mmproj .gguf file, or a Hugging Face model folder. NULL + err. */
g4_mmproj *g4_mmproj_open(const char *path, g4_error *err);
/* From a parsed file (taken over: closed on error too). */
g4_mmproj *g4_mmproj_from_file(g4_gguf_file *f, g4_error *err);
void g4_mmproj_free(g4_mmproj *p);

#endif
