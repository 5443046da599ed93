/* The Gemma 4 vision tower (projector gemma4v) and its embedder:
 * shared/docs/gemma4-multimodal.md §2 (preprocessing, transformers rule), §3
 * (encoder), §3.4 (projection into the text width).
 *
 * Images are RGB u8 [h][w][3]. Soft tokens are [n_tok][n_embd_text] f32 in
 * pooled row-major order. */
#ifndef G4_ENCODER_VISION_H
#define G4_ENCODER_VISION_H

#include <stdbool.h>
#include <stdint.h>

#include "format/gguf.h"
#include "util/error.h"

#define G4_VISION_PATCH 16
#define G4_VISION_POOL 3
#define G4_VISION_CELL (G4_VISION_PATCH * G4_VISION_POOL)   /* 48 pixels per soft token side */

typedef struct g4_vision_enc g4_vision_enc;

/* The vision tower of an mmproj file (GGUF names). NULL with no error: the
 * file has none; NULL + err: malformed (the message names the tensor and the
 * shape expected). The file must outlive the encoder. */
g4_vision_enc *g4_vision_enc_load(const g4_gguf_file *mmproj, g4_error *err);
void g4_vision_enc_free(g4_vision_enc *e);
int g4_vision_n_embd_text(const g4_vision_enc *e);
int g4_vision_n_embd(const g4_vision_enc *e);          /* D_v */
/* Width, MLP width, layers (for rates in benchmarks). */
void g4_vision_shape(const g4_vision_enc *e, int *D, int *F, int *L);

/* Is budget one of 70, 140, 280, 560, 1120 (the processor's choices)? */
bool g4_vision_budget_ok(int budget);
/* transformers' target size (§2.1) for a W x H image and a soft-token budget:
 * the largest 48-aligned size of the same aspect with <= budget*2304 pixels.
 * Returns 0, or -1 + err (an image too thin for any target). */
int g4_vision_target_size(int W, int H, int budget, int *tw, int *th, g4_error *err);
/* Resize RGB u8 W x H -> tw x th as PIL's Image.resize(BICUBIC) does it (a =
 * -0.5, support widened by the downscale factor, horizontal pass then
 * vertical, 22-bit fixed-point coefficients, u8 intermediate). A plain copy
 * when the size does not change. Returns 0 or -1 (out of memory). */
int g4_vision_resize_bicubic(const uint8_t *src, int W, int H, uint8_t *dst, int tw, int th);
/* Soft tokens of a preprocessed w x h image (both multiples of 48). */
static inline int g4_vision_n_tokens(int w, int h) { return (w / G4_VISION_CELL) * (h / G4_VISION_CELL); }

/* Encode a preprocessed image (w, h multiples of 48; pixels used as u8/255):
 * out gets g4_vision_n_tokens(w, h) rows of n_embd_text floats. exact: f32
 * weight products (GEMMA4C_PREC_EXACT). Returns 0 or -1 + err. */
int g4_vision_encode(const g4_vision_enc *e, const uint8_t *rgb, int w, int h, float *out, int n_threads,
                     bool exact, g4_error *err);

/* Wall seconds of the calling thread's last g4_vision_encode by phase (for
 * bench/bench_vision): patch embedding + positions, the attention block's
 * linears (q/k/v/o with their norms, RoPE, clamps), the attention itself
 * (Q K^T, softmax, P V), the MLP (gate/up, GeGLU, down, norms), pooling +
 * standardization + the embedder. */
typedef struct g4_vision_phases {
    double patch, attn_lin, attn, mlp, pool;
} g4_vision_phases;
g4_vision_phases g4_vision_last_phases(void);

#endif
