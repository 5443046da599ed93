/* gemma4c — public C API.
 *
 * A small, stable surface: open a model, create a context, evaluate token
 * batches, read logits, sample. The CLI and server use only this header.
 *
 * Conventions: functions that can fail return a negative value or NULL and,
 * when given a non-NULL `char *err` of `errlen` bytes, write a message naming
 * what went wrong. The library never prints, never exits and holds no global
 * mutable state; a model may be shared by several contexts (read-only), a
 * context must be used by one thread at a time. */
#ifndef GEMMA4C_H
#define GEMMA4C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GEMMA4C_VERSION "0.1.0"

typedef struct gemma4c_model gemma4c_model;
typedef struct gemma4c_context gemma4c_context;
typedef struct gemma4c_sampler gemma4c_sampler;

/* ---- model ---------------------------------------------------------------- */

/* Open a GGUF file or a Hugging Face checkpoint folder. Weights are memory-
 * mapped and used in their stored form. */
gemma4c_model *gemma4c_model_open(const char *path, char *err, size_t errlen);
void gemma4c_model_free(gemma4c_model *m);

typedef struct gemma4c_model_info {
    const char *name;        /* general.name or the file name */
    const char *arch;        /* "gemma4" */
    int n_layer, n_embd, n_head, n_vocab;
    int n_ctx_train;         /* context length the model was trained for */
    int n_expert, n_expert_used;
    int n_embd_per_layer;    /* PLE width, 0 if none */
    int n_kv_shared;         /* layers that reuse another layer's KV */
    int sliding_window;
    int bos_id, eos_id;
    uint64_t n_params;       /* elements in all tensors */
    uint64_t weight_bytes;   /* bytes of all tensors as stored */
} gemma4c_model_info;

void gemma4c_model_get_info(const gemma4c_model *m, gemma4c_model_info *out);

/* Memory a context of n_ctx tokens (and batch size n_batch) will use. */
typedef struct gemma4c_memory_plan {
    uint64_t weight_bytes;        /* memory-mapped (the whole file's tensors) */
    uint64_t weight_resident_bytes; /* of those, read for every token: all but the
                                     per-layer-embedding table, of which only the
                                     rows of tokens seen are paged in */
    uint64_t kv_bytes_per_token;  /* full-attention layers: grows with context */
    uint64_t kv_bytes_swa;        /* sliding layers: fixed ring, independent of n_ctx */
    uint64_t kv_bytes;            /* total KV cache at n_ctx */
    uint64_t scratch_bytes;       /* activations for one batch, logits */
    uint64_t total_bytes;         /* resident weights + kv + scratch: the
                                     expected peak RSS of a long decode */
} gemma4c_memory_plan;

int gemma4c_memory_plan_for(const gemma4c_model *m, int n_ctx, int n_batch, gemma4c_memory_plan *out);

/* Describe layer l in one line (type, head dim, KV heads, FFN width, KV
 * source) into buf; returns 0 or -1 if l is out of range. */
int gemma4c_model_layer_desc(const gemma4c_model *m, int l, char *buf, size_t len);

/* What one token costs at context position pos (0-based): the bytes it reads
 * (weights as stored, and the KV cache it attends over) and its arithmetic.
 * Used by benchmarks to compare with the machine's limits. */
typedef struct gemma4c_token_cost {
    uint64_t weight_bytes;   /* stored weight bytes read (LM head included, one
                                embedding row, only the selected experts' share) */
    uint64_t kv_bytes;       /* KV cache bytes read by attention at pos */
    double matmul_flops;     /* 2 x multiply-adds against weights */
    double attn_flops;       /* 2 x multiply-adds in QK^T and PV at pos */
} gemma4c_token_cost;

void gemma4c_token_cost_at(const gemma4c_model *m, int pos, gemma4c_token_cost *out);

/* ---- machine ---------------------------------------------------------------- */

/* Measured on this machine with n_threads (a second or two each): sustained
 * read bandwidth in GB/s, f32 FMA peak in GFLOP/s, int8 dot-product peak
 * (AVX-512 VNNI) in GOP/s. 0 when the probe does not apply here. */
double gemma4c_probe_bandwidth(int n_threads);
double gemma4c_probe_f32_gflops(int n_threads);
double gemma4c_probe_int8_gops(int n_threads);

/* ---- text ------------------------------------------------------------------ */

/* Token ids of text[0..len) with the model's tokenizer. add_bos puts BOS first;
 * parse_special lets control-token strings ("<|turn>") in the text become
 * their ids (for rendered chat prompts; never for raw user text). Returns the
 * count and a malloc'd array in *ids (free() it), or -1. */
int gemma4c_tokenize(const gemma4c_model *m, const char *text, size_t len, int add_bos, int parse_special,
                     int32_t **ids, char *err, size_t errlen);
/* End of generation: <eos>, <turn|>, <|tool_response>. */
int gemma4c_is_eog(const gemma4c_model *m, int32_t id);
/* The model's chat template text (GGUF tokenizer.chat_template or HF
 * chat_template.jinja), or NULL. */
const char *gemma4c_chat_template(const gemma4c_model *m);

/* Streaming detokenizer: returns only complete UTF-8 characters; a character
 * split across tokens is held until it is complete. The returned text is
 * valid until the next call. */
typedef struct gemma4c_detok gemma4c_detok;
gemma4c_detok *gemma4c_detok_new(const gemma4c_model *m, int render_special);
const char *gemma4c_detok_push(gemma4c_detok *d, int32_t id, size_t *len);
const char *gemma4c_detok_flush(gemma4c_detok *d, size_t *len);
void gemma4c_detok_free(gemma4c_detok *d);

/* ---- context ------------------------------------------------------------- */

enum gemma4c_precision {
    /* Activations are quantized once per row to the weight's dot-product type
     * (as llama.cpp's CPU backend does): fastest. */
    GEMMA4C_PREC_FAST = 0,
    /* Weights are decoded block by block and multiplied with f32 activations:
     * matches an f32/f64 reference implementation to ~1e-5. */
    GEMMA4C_PREC_EXACT = 1,
};

typedef struct gemma4c_context_params {
    int n_ctx;        /* max tokens in the sequence (0 = min(model, 4096)) */
    int n_batch;      /* max tokens per eval call (0 = 512) */
    int n_threads;    /* 0 = number of online CPUs */
    int precision;    /* enum gemma4c_precision */
} gemma4c_context_params;

gemma4c_context_params gemma4c_context_default_params(void);
gemma4c_context *gemma4c_context_new(gemma4c_model *m, const gemma4c_context_params *p, char *err,
                                     size_t errlen);
void gemma4c_context_free(gemma4c_context *c);

/* Append n tokens to the sequence and run them through the model in batches
 * of at most n_batch. If all_logits is nonzero, logits are kept for every
 * token of this call (gemma4c_logits(c, i) for i < n); otherwise only for the
 * last one (i = n - 1, or use gemma4c_logits_last). Returns 0 or -1. */
int gemma4c_eval(gemma4c_context *c, const int32_t *tokens, int n, int all_logits, char *err,
                 size_t errlen);
const float *gemma4c_logits(const gemma4c_context *c, int i);
const float *gemma4c_logits_last(const gemma4c_context *c);
int gemma4c_n_vocab(const gemma4c_context *c);
int gemma4c_n_past(const gemma4c_context *c);    /* tokens in the sequence */
int gemma4c_n_ctx(const gemma4c_context *c);
/* Forget the sequence (the KV cache is reused). */
void gemma4c_reset(gemma4c_context *c);
/* Drop tokens after position n (n <= n_past): continue from a shared prefix. */
int gemma4c_truncate(gemma4c_context *c, int n);

/* ---- sampling --------------------------------------------------------------- */

typedef struct gemma4c_sampler_params {
    float temperature;       /* <= 0: greedy (argmax, lowest id on ties) */
    int top_k;               /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float repeat_penalty;    /* 1: off; divides positive / multiplies negative logits */
    float presence_penalty;  /* 0: off */
    float frequency_penalty; /* 0: off */
    int penalty_last_n;      /* window of recent tokens the penalties see (0 = all kept) */
    uint64_t seed;           /* same seed, same inputs -> same tokens */
} gemma4c_sampler_params;

/* Gemma's recommended defaults: temperature 1.0, top-k 64, top-p 0.95. */
gemma4c_sampler_params gemma4c_sampler_default_params(void);
gemma4c_sampler *gemma4c_sampler_new(const gemma4c_sampler_params *p);
void gemma4c_sampler_free(gemma4c_sampler *s);
/* Pick a token from n_vocab logits (not modified). */
int32_t gemma4c_sampler_sample(gemma4c_sampler *s, const float *logits, int n_vocab);
/* Tell the sampler which token was chosen/fed (for the penalties). */
void gemma4c_sampler_accept(gemma4c_sampler *s, int32_t token);
void gemma4c_sampler_reset(gemma4c_sampler *s);

#ifdef __cplusplus
}
#endif
#endif
