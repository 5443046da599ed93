/* The Gemma 4 audio encoder (projector gemma4a: USM-style conformer + the
 * audio embedder), shared/docs/gemma4-multimodal.md §5-§6. Written by the
 * audio side (audio.c, mel.c); mmproj.c loads it through this interface.
 *
 * Layouts: mel features are frame-major [n_frames][128] f32 (ln of the mel
 * magnitudes, §5); soft tokens are [n_tok][n_embd_text] f32, in time order. */
#ifndef G4_ENCODER_AUDIO_H
#define G4_ENCODER_AUDIO_H

#include <stdbool.h>
#include <stddef.h>

#include "format/gguf.h"
#include "util/error.h"

typedef struct g4_audio_enc g4_audio_enc;

/* The audio tower of an mmproj file (GGUF names, see arch/gemma4_mm.h). NULL
 * with no error set: the file has no audio tower; NULL + err: it has one but
 * it is malformed. The file must outlive the encoder (weights are views). */
g4_audio_enc *g4_audio_enc_load(const g4_gguf_file *mmproj, g4_error *err);
void g4_audio_enc_free(g4_audio_enc *e);

/* Soft tokens the encoder makes from n_mel_frames frames (two stride-2
 * convolutions: ceil(ceil(T/2)/2)). */
int g4_audio_n_tokens(const g4_audio_enc *e, int n_mel_frames);

/* Encode: out gets g4_audio_n_tokens(e, n_frames) rows of the text width.
 * exact: f32 weight products (GEMMA4C_PREC_EXACT) instead of quantized
 * activations. Returns 0 or -1 + err. */
int g4_audio_encode(g4_audio_enc *e, const float *mel, int n_frames, float *out, int n_threads, bool exact,
                    g4_error *err);

/* 16 kHz mono samples -> log-mel features (mel.c): *mel malloc'd
 * [*n_frames][128], caller frees. Returns 0 or -1 + err. */
int g4_audio_features(const float *pcm16k, size_t n, float **mel, int *n_frames, g4_error *err);

#endif
