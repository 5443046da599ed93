/* Matrix products against stored (possibly quantized) weights.
 *
 * y[t][o] = sum_i W[o][i] * x[t][i] for t < T tokens, o < n_out rows.
 * Weights are read once per call: threads split the output rows, and each
 * row is used against all T activation rows while it is hot in cache.
 * Precision (see types.h): FAST quantizes each activation row once to the
 * weight's vec_dot_type; EXACT runs every (row, token) through dot_f32, which
 * decodes blocks on the fly: the same arithmetic whatever else is in the
 * batch, so a token batched with others equals that token alone.
 *
 * Several products with the same input width can run as one parallel
 * section (g4_matmul_multi): q/k/v of a layer, gate/up, the selected
 * experts of a MoE layer. At batch 1 a decode step is ~300 small products,
 * so fewer sections mean fewer barriers and fewer idle tails, and the
 * threads split the jobs' combined bytes, not each job's rows. */
#ifndef G4_MATMUL_H
#define G4_MATMUL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/mat.h"
#include "tensor/pool.h"

typedef struct g4_mm_scratch {
    void *act;        /* quantized activations: >= T * n_in * 4 bytes */
    size_t act_bytes;
    /* Tokens whose logits nobody reads (a prompt's tokens but its last): np
     * of them, at the shared input's rows pcol[0..np), ascending. Where a
     * weight's type has a panel kernel (types.h: gemm_panel, AVX-512) they
     * go through it, every other token through gemm. The panels round
     * differently from gemm, so the kernel a token goes through must follow
     * from its own role, never from its neighbours: then a request's tokens
     * get the same arithmetic batched or alone, however its prompt is
     * chunked. NULL / 0: every token through gemm. The forward pass sets it
     * only around products whose input rows are the batch's tokens in batch
     * order; jobs with their own input (MoE groups) never use it. The exact
     * path ignores it. */
    const int32_t *pcol;
    int np;
    /* Fast path may round to bf16 (tensor/bf16.h): F32/F16/BF16 weights in
     * 32-row panels against bf16 activations, where the CPU has AVX512_BF16,
     * T >= G4_MM_BF16_MIN_T and act holds the bf16 rows plus one panel per
     * thread. The media encoders set it (their towers are F16/BF16); the
     * text model never does (its F16 products keep their precision). */
    bool bf16;
    /* Fast path may go further, to int8 (wins over bf16 where both are set):
     * F32/F16/BF16 weights of >= G4_MM_BF16_MIN_T tokens and inputs a
     * multiple of 32 are rounded to Q8_0 (int8, one f16 scale per 32) per
     * block of rows into a per-thread slice of act, the activations to Q8_0
     * once per call, and the pair runs through Q8_0's prefill panel kernel
     * (AVX-512 VNNI: four int8 multiply-adds per lane and instruction, twice
     * vdpbf16ps's rate). Only where that kernel exists; else bf16 / f32.
     * act must hold g4_matmul_i8_bytes beyond the activations. The vision
     * tower sets it (its error: bench/README.md "int8 products"). */
    bool i8;
    /* int8 path only: x is clamped to [x_lo, x_hi] as it is rounded to
     * Q8_0 (a ClippableLinear's input clamp without a pass of its own). Set
     * it only for a call g4_matmul_i8_takes() says takes that path. */
    bool x_clamp;
    float x_lo, x_hi;
    /* The panel tokens (pcol) of F32/F16/BF16 weights as bf16 products (the
     * same kernels, AVX512_BF16 only), the other tokens through gemm, at any
     * count: set by the forward pass around the per-layer-embedding
     * projection only (F32 in the files, bf16 in the checkpoints it comes
     * from: the f32 tiles ran it at ~1/3 of the int8 panels' rate, ~4% of
     * an E2B prefill). act must hold T f32 rows, np bf16 rows, one panel
     * per thread and 128 bytes (g4_matmul_bf16_bytes), else gemm. */
    bool pbf16;
} g4_mm_scratch;

/* Packing a panel costs about as much as 15-30 tokens of its products, so
 * fewer tokens keep the F16/F32 tiles (the audio tower's 16-row
 * input-projection blocks, its 12-row position product). */
#define G4_MM_BF16_MIN_T 32
/* Inputs narrower than this keep f32 too: a few multiply-adds per output
 * gain nothing from the dot instruction, and the audio tower's first
 * convolution (9 inputs: raw log-mel values up to ~10 in magnitude) would
 * round its input to 8 bits */
#define G4_MM_BF16_MIN_N 64
/* Bytes the bf16 path needs in act beyond the activations' own T * n_in * 2
 * (the threads' panels, alignment) for inputs of at most n_in_max. */
size_t g4_matmul_bf16_bytes(int64_t n_in_max, int n_threads);
/* The same for the int8 path: T * n_in_max * 34 / 32 bytes of Q8_0
 * activations, plus per thread a block of 256 Q8_0 rows and one f32 row. */
size_t g4_matmul_i8_bytes(int64_t n_in_max, int T, int n_threads);

/* Per-thread scratch the panel kernels hold (bytes; 0 at levels without
 * them) for inputs of at most n_in_max floats and T tokens: each thread of
 * the pool that ran one keeps its buffer (memory plan). */
size_t g4_matmul_panel_bytes(int64_t n_in_max, int T);

/* Whether g4_matmul(pool, w, ..., T, precision, s) runs the int8 path. */
bool g4_matmul_i8_takes(const g4_pool *pool, const g4_mat *w, int T, int precision, const g4_mm_scratch *s);

/* x: T rows with stride ldx floats; y: T rows with stride ldy floats.
 * `mat` selects the matrix of a 3-D (expert) tensor. */
void g4_matmul(g4_pool *pool, const g4_mat *w, int64_t mat, const float *x, int64_t ldx, int T, float *y,
               int64_t ldy, int precision, g4_mm_scratch *s);

typedef struct g4_mm_job {
    const g4_mat *w;
    int64_t mat;
    const float *x;     /* this job's input rows, or NULL: the shared x */
    float *y;
    int64_t ldy;
    float softcap;      /* > 0: y = softcap * tanh(y / softcap), applied by the thread that wrote y */
    int T;              /* > 0: this job's own row count (x must be set), e.g. one expert's token
                         * group; 0: the call's T */
} g4_mm_job;

/* Run n_jobs products (at most G4_MM_MAX_JOBS) over T input rows of stride
 * ldx as one parallel section. All weights must have the same n_in. Falls
 * back to one section per job where the scratch cannot hold every job's
 * quantized input or the activation types differ. */
#define G4_MM_MAX_JOBS 16
void g4_matmul_multi(g4_pool *pool, const g4_mm_job *jobs, int n_jobs, const float *x, int64_t ldx, int T,
                     int precision, g4_mm_scratch *s);

/* A new id for a panel kernel's input (types.h: g4_gemm_panel_fn), from the
 * same counter as g4_matmul_multi's: for callers that run the panels
 * themselves (training's backward, ops_grad.c). */
uint64_t g4_matmul_input_id(void);

#endif
