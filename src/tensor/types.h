/* Tensor element types, numbered exactly as ggml/GGUF numbers them: their
 * facts (names, block and row sizes; types.c) and the shape of the per-type
 * kernel table (filled by tensor/kernels.c).
 *
 * Weights stay in their stored (block-quantized) form. Two ways to multiply a
 * stored row with an activation vector:
 *   - exact: dot_f32(w_row, x_f32) decodes each weight block on the fly and
 *     accumulates in f32 against f32 activations (matches an f32 reference);
 *   - fast : the activation row is quantized ONCE to `vec_dot_type`
 *     (Q8_0 / Q8_1 / Q8_K / F16 / BF16, as llama.cpp's CPU backend does) and
 *     vec_dot() works block against block in integers.
 * Both read the weights as stored; nothing dequantizes a whole tensor. */
#ifndef G4_TYPES_H
#define G4_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* the half conversions, which most users of the types take from here */
#include "tensor/fp16.h"

enum g4_type {
    G4_F32 = 0, G4_F16 = 1, G4_Q4_0 = 2, G4_Q4_1 = 3,
    G4_Q5_0 = 6, G4_Q5_1 = 7, G4_Q8_0 = 8, G4_Q8_1 = 9,
    G4_Q2_K = 10, G4_Q3_K = 11, G4_Q4_K = 12, G4_Q5_K = 13, G4_Q6_K = 14, G4_Q8_K = 15,
    G4_IQ2_XXS = 16, G4_IQ2_XS = 17, G4_IQ3_XXS = 18, G4_IQ1_S = 19, G4_IQ4_NL = 20,
    G4_IQ3_S = 21, G4_IQ2_S = 22, G4_IQ4_XS = 23,
    G4_I8 = 24, G4_I16 = 25, G4_I32 = 26, G4_I64 = 27, G4_F64 = 28,
    G4_IQ1_M = 29, G4_BF16 = 30, G4_TQ1_0 = 34, G4_TQ2_0 = 35, G4_MXFP4 = 39,
    G4_TYPE_COUNT = 40
};

typedef void  (*g4_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void  (*g4_from_float_fn)(const float *src, void *dst, int64_t n);
typedef float (*g4_dot_f32_fn)(const void *w, const float *x, int64_t n);
typedef float (*g4_vec_dot_fn)(const void *w, const void *xq, int64_t n);
/* Fast-path block kernel: for r < nr, c < nc,
 *   y[c * y_stride + r] = vec_dot(w + r * w_stride, xq + c * x_stride, n)
 * (token-major output, like the activations). SIMD variants compute several
 * rows x several tokens per step so each loaded block is reused. */
typedef void (*g4_gemm_fn)(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *xq,
                           size_t x_stride, float *y, size_t y_stride);
/* Prefill panel kernel (AVX-512: quant_avx512_p.c): the same products for
 * the nc tokens cols[0..nc) (ascending; NULL: 0..nc-1), token c read at
 * xq + cols[c] * x_stride and written at y + cols[c] * y_stride. It sums in
 * another order than gemm (per 32 weights, then over groups), so its results
 * differ from gemm's in the last bits; each (row, token) result is the same
 * whatever nr, nc and the other tokens. Returns 0 (nothing written) when it
 * cannot run (rows shorter than one group, no scratch): the caller uses gemm.
 * input: 0, or an id that names these activations (xq, cols, nc) for the
 * caller's whole product and no other: calls with the same id on one thread
 * reuse the per-token data computed from the activations (matmul.c gives
 * every g4_matmul_multi call a new id; its grabs and jobs share it). */
typedef int (*g4_gemm_panel_fn)(int64_t n, int nr, int nc, const int32_t *cols, const void *w, size_t w_stride,
                                const void *xq, size_t x_stride, float *y, size_t y_stride, uint64_t input);

typedef struct g4_type_traits {
    const char *name;        /* "Q4_K", as ggml prints it; NULL = no such type id */
    int64_t blck_size;       /* elements per block (1 for F32/F16/BF16) */
    size_t type_size;        /* bytes per block */
    bool is_quantized;
    /* Kernels (NULL where a type cannot be computed with: the model loader
     * refuses such tensors with a clear error). n is a multiple of blck_size. */
    g4_to_float_fn   to_float;     /* decode n elements */
    g4_from_float_fn from_float;   /* reference quantizer (deterministic) */
    g4_dot_f32_fn    dot_f32;      /* exact path: stored row . f32 vector */
    int              vec_dot_type; /* activation type for the fast path */
    g4_vec_dot_fn    vec_dot;      /* fast path: stored row . quantized activations */
    g4_gemm_fn       gemm;         /* fast path, many rows x tokens; NULL: loop over vec_dot */
    g4_gemm_panel_fn gemm_panel;   /* NULL, or the panel kernel matmul uses for tokens whose
                                    * logits nobody reads (matmul.h: g4_mm_scratch.pcol) */
    bool             gemm_row_stream; /* gemm of 2..16 tokens reads its rows one at a time itself
                                    * (one weight stream): matmul hands it a whole row range */
} g4_type_traits;

/* A type's facts (name, sizes) with every kernel field NULL; NULL for ids
 * that are not a ggml type. */
const g4_type_traits *g4_type_facts(int type);
/* The facts plus the kernels this process uses; NULL for ids that are not a
 * ggml type. Declared here for its many users, defined by the kernel
 * registry (tensor/kernels.c): nothing in types.c calls up into kernels. */
const g4_type_traits *g4_type_info(int type);
const char *g4_type_name(int type);          /* "?" for unknown */
int g4_type_from_name(const char *name);     /* -1 if unknown; case-insensitive */

/* Bytes of a row of n elements; 0 if n is not a multiple of the block size or
 * the type is unknown. Overflow-safe for n < 2^62. */
size_t g4_row_size(int type, int64_t n);

#endif
