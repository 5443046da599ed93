/* The Gemma 4 audio path (E2B/E4B, projector type gemma4a): log-mel features
 * (mel.c) and the USM-style conformer plus the audio embedder (audio.c),
 * from 16 kHz mono samples to soft tokens of the text model's width.
 * Spec: shared/docs/gemma4-multimodal.md §5-§7, §10. encoder/mmproj.c
 * loads the tower through this interface.
 *
 * Follows transformers (Gemma4AudioFeatureExtractor, Gemma4AudioModel,
 * Gemma4MultimodalEmbedder), not llama.cpp's deviations (§12: log floor,
 * f16 im2col). One exception, clips over 30 s: transformers truncates them
 * to the first 30 s; we keep everything the way llama.cpp does, as
 * consecutive 30 s pieces (480,000 samples -> 2999 frames -> 750 tokens each)
 * whose features and encoding are independent. The first piece equals the
 * transformers result. */
#ifndef G4_ENCODER_AUDIO_H
#define G4_ENCODER_AUDIO_H

#include <stdbool.h>
#include <stddef.h>

#include "format/gguf.h"
#include "util/error.h"

#define G4_AUDIO_N_MEL 128
#define G4_AUDIO_PIECE_SAMPLES 480000   /* 30 s at 16 kHz */
#define G4_AUDIO_PIECE_FRAMES 2999      /* its frames: (480000 - 161) / 160 + 1 */

typedef struct g4_audio_enc g4_audio_enc;

/* The audio tower of an mmproj file (GGUF names, §10.1). NULL with no error
 * set (err->msg[0] == 0) when the file has no audio tower; NULL with err set
 * when it has a malformed one. The weights stay in the file's mapping: f
 * must outlive the encoder. */
g4_audio_enc *g4_audio_enc_load(const g4_gguf_file *mmproj, g4_error *err);
void g4_audio_enc_free(g4_audio_enc *);

/* Soft tokens for n_mel_frames frames of features (pieces of 2999 frames,
 * each ceil(ceil(T/2)/2) tokens). */
int g4_audio_n_tokens(const g4_audio_enc *, int n_mel_frames);
/* Width of a soft token (the text model's n_embd). */
int g4_audio_n_embd(const g4_audio_enc *);
/* Conformer blocks (the tests' error bound counts products per block). */
int g4_audio_n_layers(const g4_audio_enc *);

/* mel: [n_frames][128] as g4_audio_features makes it; out: [n_tok][n_embd]
 * with n_tok = g4_audio_n_tokens(n_frames). exact: every weight product in
 * f32 (dot_f32, as the text model's --exact); otherwise the activations are
 * quantized to each weight's vec_dot type. Returns 0 or -1 + err. */
int g4_audio_encode(g4_audio_enc *, const float *mel, int n_frames, float *out /*[n_tok][n_embd_text]*/,
                    int n_threads, bool exact, g4_error *err);

/* Log-mel features of n samples of 16 kHz mono audio (mel.c): *mel is
 * malloc'd [*n_frames][128], time-major. Audio longer than 30 s is cut into
 * 30 s pieces, each with its own features (see above). Fewer than 161
 * samples (one frame) is an error. */
int g4_audio_features(const float *pcm16k, size_t n, float **mel, int *n_frames, g4_error *err);

#endif
