/* gemma4c — public C API.
 *
 * A small, stable surface: open a model, create a context, evaluate token
 * batches, read logits, sample. The CLI and server use only this header.
 *
 * Conventions: functions that can fail return a negative value or NULL and,
 * when given a non-NULL `char *err` of `errlen` bytes, write a message naming
 * what went wrong. The library never prints and never exits. Its only
 * process-wide state is the worker threads: contexts with the same thread
 * count share one pool (created with the first, ended with the last), so
 * many contexts do not multiply threads; their sections run one at a time.
 * A model may be shared by several contexts (read-only), a context must be
 * used by one thread at a time. */
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
    uint64_t scratch_bytes;       /* activations for one batch, logits, LoRA adapters */
    uint64_t total_bytes;         /* resident weights + kv + scratch: the
                                     expected peak RSS of a long decode */
    int kv_type;                  /* enum gemma4c_kv_type the cache uses (never DEFAULT) */
    uint64_t overhead_bytes;      /* all but the resident weights: kv + scratch + the
                                     process's own (code, stacks, and the tokenizer's
                                     tables: 7 MiB + 96 bytes per vocabulary entry,
                                     measured) */
    int edge_ok;                  /* overhead_bytes <= GEMMA4C_EDGE_BUDGET */
} gemma4c_memory_plan;

/* The edge footprint goal: everything but the weights read per token within
 * 64 MiB (E2B/E4B at 4K context with an f16 or q8_0 cache). */
#define GEMMA4C_EDGE_BUDGET (64ull << 20)

/* The plan of a default context (fast path, f16 KV) of n_ctx and n_batch. */
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

void gemma4c_token_cost_at(const gemma4c_model *m, int pos, gemma4c_token_cost *out);   /* f32 KV */
/* The same with the KV cache stored as kv_type (enum gemma4c_kv_type; 0 = f16). */
void gemma4c_token_cost_kv(const gemma4c_model *m, int pos, int kv_type, gemma4c_token_cost *out);

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

/* A tokenizer on its own: the model's (borrowed, lives as long as the
 * model; NULL if the model has none) or one loaded from a .gguf file, a
 * Hugging Face tokenizer.json (tokenizer_config.json next to it names the
 * special tokens) or a folder holding tokenizer.json, without any weights.
 * Immutable: may be shared by threads. */
typedef struct gemma4c_tokenizer gemma4c_tokenizer;
const gemma4c_tokenizer *gemma4c_model_tokenizer(const gemma4c_model *m);
gemma4c_tokenizer *gemma4c_tokenizer_load(const char *path, char *err, size_t errlen);
void gemma4c_tokenizer_free(gemma4c_tokenizer *t);   /* only for loaded ones */
/* As gemma4c_tokenize. */
int gemma4c_tokenizer_encode(const gemma4c_tokenizer *t, const char *text, size_t len, int add_bos,
                             int parse_special, int32_t **ids, char *err, size_t errlen);
/* The stored piece of id (SentencePiece form: "▁Hello", "<0x0A>"), or NULL. */
const char *gemma4c_tokenizer_piece(const gemma4c_tokenizer *t, int32_t id, size_t *len);
/* Text of n ids as a malloc'd NUL-terminated string (*len without the NUL);
 * control tokens give their text only with render_special. Returns 0 or -1. */
int gemma4c_tokenizer_decode(const gemma4c_tokenizer *t, const int32_t *ids, size_t n, int render_special,
                             char **out, size_t *len, char *err, size_t errlen);

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

/* How the KV cache stores K and V. Queries and attention sums stay f32.
 * q8_0 is GGML's block (32 int8 and an f16 scale), q4_0 GGML's 4-bit block
 * (32 nibbles and an f16 scale: the edge setting, about 16x q8_0's rounding
 * error); a layer whose head size is not a multiple of 32 keeps f16 rows. The exact path defaults to f32 (its
 * promise is the reference's precision); asking it for f16/q8_0 is allowed
 * and isolates the cache's rounding from the activations' (the accuracy
 * tests do that). */
enum gemma4c_kv_type {
    GEMMA4C_KV_DEFAULT = 0,   /* f16 on the fast path (as llama.cpp), f32 on the exact path */
    GEMMA4C_KV_F32 = 1,
    GEMMA4C_KV_F16 = 2,
    GEMMA4C_KV_Q8_0 = 3,
    GEMMA4C_KV_Q4_0 = 4,
};
/* "f32", "f16", "q8_0", "q4_0" ("default" for 0); the enum value of a name, or -1. */
const char *gemma4c_kv_type_name(int kv_type);
int gemma4c_kv_type_from_name(const char *name);

typedef struct gemma4c_context_params {
    int n_ctx;        /* KV positions: of the sequence, or shared by all n_seq (0 = min(model, 4096)) */
    int n_batch;      /* max tokens per forward pass (0 = 512); longer evals are split */
    int n_threads;    /* 0 = number of online CPUs; a pool per count, shared */
    int precision;    /* enum gemma4c_precision */
    int n_seq;        /* sequences held at once (0 = 1), ids 0..n_seq-1 */
    int n_prefix;     /* prefix-cache snapshots kept (0 = no prefix cache), see below */
    /* LoRA adapters applied to every evaluation (see gemma4c_adapter_load):
     * n_adapters of them, with adapter_scales (NULL: 1.0 each) */
    struct gemma4c_adapter *const *adapters;
    const float *adapter_scales;
    int n_adapters;
    int kv_type;      /* enum gemma4c_kv_type */
} gemma4c_context_params;

/* The same for a context of p (n_seq sequences share the n_ctx positions of
 * the full-attention layers; each has its own sliding-window rings). */
int gemma4c_memory_plan_params(const gemma4c_model *m, const gemma4c_context_params *p, gemma4c_memory_plan *out);
gemma4c_context_params gemma4c_context_default_params(void);
gemma4c_context *gemma4c_context_new(gemma4c_model *m, const gemma4c_context_params *p, char *err,
                                     size_t errlen);
void gemma4c_context_free(gemma4c_context *c);
gemma4c_model *gemma4c_context_model(const gemma4c_context *c);

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
int gemma4c_n_batch(const gemma4c_context *c);  /* most tokens per forward pass */
/* The tokens sequence seq holds (positions 0..n-1, *n set), valid until the
 * next call on c; NULL for a bad id. */
const int32_t *gemma4c_seq_tokens(const gemma4c_context *c, int seq, int *n);
/* Forget the sequence (the KV cache is reused). */
void gemma4c_reset(gemma4c_context *c);
/* Drop tokens after position n (n <= n_past): continue from a shared prefix. */
int gemma4c_truncate(gemma4c_context *c, int n);

/* ---- LoRA adapters ---------------------------------------------------------
 * Every adapted weight's product becomes W x + S * alpha / r * B (A x), with
 * S the adapter's scale (llama.cpp's rule; alpha / sqrt(r) for rsLoRA
 * adapters; S alone when a GGUF LoRA has no alpha). Applied at run time in
 * both precisions; gemma4c_merge bakes them into a model file instead. */
typedef struct gemma4c_adapter gemma4c_adapter;
/* A GGUF LoRA file (as llama.cpp's convert_lora_to_gguf.py writes it) or a
 * PEFT folder (adapter_config.json + adapter_model.safetensors). With m, it
 * is checked against m (layers, shapes: an adapter for another base model is
 * refused, naming the tensor and both shapes); m NULL reads it only. It must
 * outlive the contexts that use it. */
gemma4c_adapter *gemma4c_adapter_load(const gemma4c_model *m, const char *path, char *err, size_t errlen);
void gemma4c_adapter_free(gemma4c_adapter *a);
/* Split a "PATH[:SCALE]" option value (a trailing ":NUMBER" is the scale,
 * default 1; other colons belong to the path) into path (size n) and
 * *scale. 0, or -1 when the path is empty or too long. */
int gemma4c_adapter_spec(const char *spec, char *path, size_t n, float *scale);
/* Adapted weights and rank (of the first pair) and alpha, for display. */
void gemma4c_adapter_info(const gemma4c_adapter *a, int *n_weights, int *rank, float *alpha);
/* Write a as a GGUF LoRA file (format "gguf": F32 tensors; "gguf:F16",
 * "gguf:BF16": rounded as the converter's --outtype) or a PEFT folder ("peft"). */
int gemma4c_adapter_write(const gemma4c_adapter *a, const char *path, const char *format, int force, char *err,
                          size_t errlen);
/* Use these n adapters (scales NULL: 1.0 each; n 0: none) for the context's
 * evaluations from now on. Tokens already evaluated keep what they were
 * computed with; the prefix cache is emptied. */
int gemma4c_context_set_adapters(gemma4c_context *c, gemma4c_adapter *const *a, const float *scales, int n,
                                 char *err, size_t errlen);

/* ---- many sequences ------------------------------------------------------
 * A context of n_seq sequences evaluates tokens of several of them in one
 * forward pass, so a decode step of 8 conversations reads each weight once
 * for all 8. The functions above work on sequence 0. Sequence ids are
 * 0..n_seq-1; every call checks them. */

typedef struct gemma4c_batch {
    int n_tokens;
    const int32_t *token;   /* [n_tokens] */
    const int32_t *seq;     /* [n_tokens] sequence ids, or NULL: all 0 */
    const int32_t *pos;     /* [n_tokens] positions, or NULL: each sequence's next. A
                               sequence's tokens continue it, in batch order */
    const int8_t *logits;   /* [n_tokens] nonzero: keep that token's logits; NULL: the last token's */
    /* Media soft tokens (see "media" below): NULL, or [n_tokens][n_embd]
     * input rows used instead of the token's embedding where has_embd[i] is
     * set (has_embd NULL: every row). Such a token's id is only recorded
     * (the prefix cache never matches past it); its per-layer embedding is
     * the pad id's, as the reference does. */
    const float *embd;
    const uint8_t *has_embd;
    /* NULL, or [n_tokens] run ids: consecutive tokens with the same id >= 0
     * see each other on sliding layers (an image's soft tokens on models
     * where gemma4c_model_image_attention() is 1); -1 elsewhere. A run must
     * fit in one pass of n_batch tokens. */
    const int32_t *run;
} gemma4c_batch;

/* Evaluate a batch (split into passes of n_batch tokens where longer). On
 * error nothing after the failed pass is evaluated; gemma4c_seq_n_past says
 * where each sequence stands. */
int gemma4c_decode(gemma4c_context *c, const gemma4c_batch *b, char *err, size_t errlen);
/* Logits of batch index i of the last decode (a token whose logits were
 * kept), or NULL. */
const float *gemma4c_logits_ith(const gemma4c_context *c, int i);
int gemma4c_n_seq(const gemma4c_context *c);
int gemma4c_seq_n_past(const gemma4c_context *c, int seq);       /* -1 for a bad id */
/* Keep positions 0..n-1 of seq; -1 if the id or n is out of range, or the
 * sliding-window layers no longer hold the window before n (re-evaluate). */
int gemma4c_seq_truncate(gemma4c_context *c, int seq, int n);
/* dst becomes a copy of src (positions and KV state; pages shared until
 * either writes). dst's previous state is dropped. */
int gemma4c_seq_fork(gemma4c_context *c, int src, int dst, char *err, size_t errlen);
/* KV pages in use and in all, for statistics. */
void gemma4c_kv_usage(const gemma4c_context *c, int *pages_used, int *pages_total);

/* ---- prefix cache --------------------------------------------------------
 * Snapshots of sequences, kept in the context's KV pool: full-attention pages
 * shared with the sequence (copied only when one side writes), sliding-window
 * rings copied. A new prompt that starts with a snapshot's tokens (the same
 * system prompt and tools, the earlier turns of a conversation) continues
 * from it instead of recomputing them. A snapshot can also serve a prompt
 * that diverges inside it, as far back as its sliding rings still hold the
 * window (n_batch - 1 positions); never further, so reuse is always exact.
 * At most n_prefix snapshots, least recently used evicted first, and
 * evicted early when the pool runs out of pages. */

/* Snapshot sequence seq as it is now (its tokens and KV state). */
int gemma4c_prefix_store(gemma4c_context *c, int seq, char *err, size_t errlen);
/* Make seq continue the snapshot that shares the longest usable prefix with
 * tokens[0..n), keeping at most n - 1 of them (the last token is left to
 * evaluate, for its logits). seq's previous state is dropped. Returns the
 * tokens reused (0: no snapshot fits, seq is empty) or -1. */
int gemma4c_prefix_load(gemma4c_context *c, int seq, const int32_t *tokens, int n, char *err, size_t errlen);

typedef struct gemma4c_prefix_stats {
    uint64_t lookups, hits;      /* prefix_load calls, and those that reused tokens */
    uint64_t tokens_reused;      /* tokens not recomputed thanks to hits */
    uint64_t stores, evictions;
    uint64_t tokens_evaluated;   /* every token the context has run through the model */
    int entries;                 /* snapshots kept now */
} gemma4c_prefix_stats;
void gemma4c_prefix_stats_get(const gemma4c_context *c, gemma4c_prefix_stats *out);

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
/* The same draw from the logits with bias[i] added to logit id[i] (in
 * order; -INFINITY bans; ids outside the vocabulary are skipped): OpenAI's
 * logit_bias without a biased copy of the whole vocabulary (up to 64
 * distinct ids with top-k or greedy; beyond that it copies). -1: out of memory. */
int32_t gemma4c_sampler_sample_biased(gemma4c_sampler *s, const float *logits, int n_vocab, const int32_t *id,
                                      const float *bias, int n_bias);
/* Tell the sampler which token was chosen/fed (for the penalties). */
void gemma4c_sampler_accept(gemma4c_sampler *s, int32_t token);
void gemma4c_sampler_reset(gemma4c_sampler *s);
/* Speculative sampling: the token gemma4c_sampler_sample would draw, given a
 * token `draft` a drafter proposed with probabilities q (n_vocab floats;
 * NULL: a deterministic drafter, q one-hot on draft). The draft is kept with
 * probability min(1, p(draft)/q(draft)), else a token is drawn from
 * norm(max(0, p - q)), so the result is distributed exactly as a plain draw
 * (p: the sampler's distribution after penalties, temperature, top-k/p,
 * min-p). Greedy: the draft is kept iff it is the argmax. *accepted says
 * whether the draft was kept. Nothing is accepted into the history. */
int32_t gemma4c_sampler_sample_draft(gemma4c_sampler *s, const float *logits, int n_vocab, int32_t draft,
                                     const float *q, int *accepted);

/* ---- constrained decoding ----------------------------------------------------- */

/* A token index: every token's text in a byte trie, built once per
 * tokenizer (a fraction of a second for the real vocabulary), immutable,
 * shared by any number of constraints and threads. It must not outlive its
 * tokenizer. */
typedef struct gemma4c_token_index gemma4c_token_index;
gemma4c_token_index *gemma4c_token_index_new(const gemma4c_tokenizer *t, char *err, size_t errlen);
void gemma4c_token_index_free(gemma4c_token_index *x);

enum gemma4c_constraint_mode {
    GEMMA4C_CONSTRAIN_JSON_OBJECT = 1,  /* the answer is any JSON object */
    GEMMA4C_CONSTRAIN_JSON_SCHEMA = 2,  /* the answer is JSON valid for schema */
    GEMMA4C_CONSTRAIN_TOOLS = 3,        /* Gemma 4 tool calls: declared names, arguments valid for
                                           their parameter schemas; text and thoughts free */
};

typedef struct gemma4c_constraint_params {
    int mode;                  /* enum gemma4c_constraint_mode */
    const char *schema;        /* JSON_SCHEMA: JSON Schema text (the subset structured outputs
                                  accept: types, properties, required, enum, const, anyOf,
                                  items, min/maxItems, min/maxLength, additionalProperties,
                                  $defs/$ref) */
    const char *tools;         /* TOOLS: OpenAI tools array text */
    const char *tool_choice;   /* TOOLS: "auto" (NULL), "required", "none", a tool name or
                                  {"type":"function","function":{"name":...}} */
    int thinking;              /* 0: no thought block; 1: an optional leading
                                  <|channel>thought...<channel|>; 2: output starts inside one */
} gemma4c_constraint_params;

/* At each step only tokens that keep the output a valid prefix are allowed;
 * once the value (or, with tools, the turn) is complete the end-of-generation
 * tokens are allowed too. Never a dead end: some token is always allowed
 * until an end token was accepted. Numbers are written with at most 15
 * digits before and after the point; JSON allows one space after ':' and ','.
 * Errors name the schema field as a JSON pointer. */
typedef struct gemma4c_constraint gemma4c_constraint;
gemma4c_constraint *gemma4c_constraint_new(const gemma4c_token_index *x, const gemma4c_constraint_params *p,
                                           char *err, size_t errlen);
void gemma4c_constraint_free(gemma4c_constraint *c);
/* Back to the start. */
void gemma4c_constraint_reset(gemma4c_constraint *c);
/* Set the logits of disallowed tokens to -INFINITY (n_vocab may exceed the
 * index's vocabulary: the extra ids are disallowed). Returns the number of
 * allowed tokens (0 only after an end token). */
int gemma4c_constraint_apply(gemma4c_constraint *c, float *logits, int n_vocab);
/* The allowed set as bytes (1 = allowed), n_vocab of them; returns the count. */
int gemma4c_constraint_mask(gemma4c_constraint *c, uint8_t *allowed, int n_vocab);
/* Advance by the chosen token: 0, or -1 if it was not allowed (state unchanged). */
int gemma4c_constraint_accept(gemma4c_constraint *c, int32_t token);
/* 1 when the output so far is complete (an end token may follow or came). */
int gemma4c_constraint_done(const gemma4c_constraint *c);

/* ---- generation -------------------------------------------------------------- */

/* Why a generation ended. */
enum gemma4c_finish {
    GEMMA4C_FINISH_STOP = 0,    /* end-of-generation token, stop marker, or on_token asked */
    GEMMA4C_FINISH_LENGTH = 1,  /* n_predict tokens (or what the context had left) */
    GEMMA4C_FINISH_CANCEL = 2,  /* the cancel callback returned nonzero */
    GEMMA4C_FINISH_ERROR = 3,   /* decoding failed part way (see err) */
};

/* Speculative decoding: a drafter proposes tokens, one forward pass
 * evaluates the pending token and the drafts (reading every weight once for
 * all of them), and the longest prefix the sampler keeps
 * (gemma4c_sampler_sample_draft) is handed on; the KV cache of the rest is
 * dropped. Greedy output is identical to plain decoding, sampled output has
 * the same distribution (not the same tokens for a seed: the draws differ). */
enum gemma4c_draft_kind {
    GEMMA4C_DRAFT_NONE = 0,
    GEMMA4C_DRAFT_NGRAM = 1,   /* prompt lookup: the tokens that followed the latest
                                  earlier occurrence of the text's last n-gram */
    GEMMA4C_DRAFT_CUSTOM = 2,  /* fn proposes them (tests, benchmarks, other drafters) */
    GEMMA4C_DRAFT_MTP = 3,     /* Gemma 4's multi-token-prediction assistant (drafter below):
                                  greedy drafts from the target's last hidden row and KV cache */
};

/* A Gemma 4 multi-token-prediction assistant ("gemma4-assistant" GGUF,
 * docs/gemma4-mtp.md) opened for one target model: it reads the target's
 * embeddings and KV cache, so every shape it shares with the target is
 * checked here (errors name the tensor or key). It holds its own scratch:
 * one generation at a time per drafter. Free it before the model. */
typedef struct gemma4c_drafter gemma4c_drafter;
gemma4c_drafter *gemma4c_drafter_open(const gemma4c_model *target, const char *path, int n_threads, int precision,
                                      char *err, size_t errlen);
void gemma4c_drafter_free(gemma4c_drafter *d);
/* Drafting steps run and seconds spent in them so far. */
void gemma4c_drafter_cost(const gemma4c_drafter *d, uint64_t *steps, double *seconds);

typedef struct gemma4c_draft_params {
    int kind;        /* enum gemma4c_draft_kind */
    int max;         /* most drafted tokens per step (0 = 4; capped at n_batch - 1,
                        the sliding-window rings' slack for a rollback) */
    int ngram;       /* NGRAM: longest suffix looked up, shorter ones tried next (0 = 3) */
    /* CUSTOM: write up to max tokens that follow hist[0..n_hist) (every token
     * of the sequence, the last one not yet evaluated) to out; return how many. */
    int (*fn)(void *user, const int32_t *hist, int n_hist, int32_t *out, int max);
    void *user;
    gemma4c_drafter *drafter;   /* MTP: opened for the context's model */
} gemma4c_draft_params;

typedef struct gemma4c_draft_stats {
    uint64_t steps;       /* forward passes of the decode loop */
    uint64_t drafted;     /* tokens proposed and verified */
    uint64_t accepted;    /* of those, kept */
} gemma4c_draft_stats;

typedef struct gemma4c_generate_params {
    int n_predict;      /* most tokens to generate (>= 0) */
    int stop_at_eog;    /* end at an end-of-generation token (it is not passed on) */
    /* Each new token, in order; nonzero ends the generation (FINISH_STOP). */
    int (*on_token)(void *user, int32_t token);
    /* Polled before each token (may read a flag set by a signal handler);
     * nonzero ends the generation (FINISH_CANCEL). May be NULL. */
    int (*cancel)(void *user);
    void *user;
    /* Optional: only tokens it allows are sampled, and each is accepted by
     * it. Its state carries over (reset it for a new output). */
    gemma4c_constraint *constraint;
    /* Optional: tokens never sampled (e.g. the thought channel's opening
     * token with thinking off); NULL / 0 for none. */
    const int32_t *ban;
    int n_ban;
    gemma4c_draft_params draft;     /* speculative decoding (kind 0: off) */
    gemma4c_draft_stats *stats;     /* NULL, or added to */
} gemma4c_generate_params;

/* Decode from the logits the last eval left (evaluate the prompt first):
 * sample, accept, hand the token on, evaluate it, repeat. The last token
 * handed on is not evaluated (a continuation would start by evaluating it);
 * the others are in the context on return. Returns enum gemma4c_finish
 * (never FINISH_ERROR) or -1. */
int gemma4c_generate(gemma4c_context *c, gemma4c_sampler *s, const gemma4c_generate_params *p, char *err,
                     size_t errlen);

/* ---- chat format ----------------------------------------------------------------- */

/* Gemma 4 ships two chat templates that differ only in the generation prompt
 * with thinking off (26B/31B pre-fill an empty thought block). */
enum gemma4c_chat_family {
    GEMMA4C_CHAT_UNKNOWN = 0,
    GEMMA4C_CHAT_E = 1,           /* E2B / E4B */
    GEMMA4C_CHAT_31B = 2,         /* 26B-A4B / 31B */
    GEMMA4C_CHAT_INTERLEAVED = 3, /* llama.cpp's 31B-it-interleaved variant */
};

/* The family of an open model: its chat template (GGUF tokenizer.chat_template,
 * HF chat_template.jinja / tokenizer_config.json), else its shape. Never UNKNOWN. */
int gemma4c_model_chat_family(const gemma4c_model *m);
/* The same from a model path without loading the weights; UNKNOWN (0) with
 * err set if it cannot be read. */
int gemma4c_chat_family_from_path(const char *path, char *err, size_t errlen);
/* From chat template text; UNKNOWN if it is not a Gemma 4 template. */
int gemma4c_chat_family_from_template(const char *text);
/* "e", "e2b", "e4b", "31b", "26b", "26b-a4b", "dense", "moe", "interleaved"
 * (case-insensitive); UNKNOWN otherwise. */
int gemma4c_chat_family_from_name(const char *name);
const char *gemma4c_chat_family_name(int family);   /* "e", "31b", ... */

typedef struct gemma4c_chat_options {
    int enable_thinking;        /* -1: from the request (absent = off); 0/1: override */
    int add_generation_prompt;  /* -1: from the request (absent = off); 0/1: override */
    int openai_compat;          /* llama.cpp behaviour: JSON-string tool-call arguments
                                   become objects; a generation prompt after a closed
                                   tool-use turn is kept. 0: exactly the official template */
} gemma4c_chat_options;

gemma4c_chat_options gemma4c_chat_default_options(void);   /* -1, -1, 0 */

/* The prompt the official template renders for an OpenAI-style chat request
 * (JSON text of len bytes: "messages", "tools", "add_generation_prompt",
 * "enable_thinking", "chat_template_kwargs"; a bare array is the message
 * list). Returns a malloc'd NUL-terminated string (*out_len bytes: it holds
 * NULs if the request did) or NULL naming the offending field. o may be NULL. */
char *gemma4c_chat_render(int family, const char *request_json, size_t len, const gemma4c_chat_options *o,
                          size_t *out_len, char *err, size_t errlen);

/* Model output, split as it streams. */
enum gemma4c_delta_kind {
    GEMMA4C_DELTA_REASONING = 1,
    GEMMA4C_DELTA_CONTENT = 2,
    GEMMA4C_DELTA_TOOL_CALL = 3,
};

typedef struct gemma4c_delta {
    int kind;               /* enum gemma4c_delta_kind */
    const char *text;       /* REASONING / CONTENT: bytes, not NUL-terminated */
    size_t len;
    int index;              /* TOOL_CALL: 0-based call number */
    const char *id;         /* TOOL_CALL: "call_<index>" */
    const char *name;       /* TOOL_CALL: function name */
    const char *arguments;  /* TOOL_CALL: arguments as compact JSON object text */
} gemma4c_delta;

/* Called synchronously; the pointers are valid only during the call. */
typedef void (*gemma4c_delta_fn)(void *user, const gemma4c_delta *d);

typedef struct gemma4c_parse_options {
    int in_reasoning;              /* the prompt ended inside the thought channel */
    const char *const *tool_names; /* if n_tool_names > 0, calls to other names stay
                                      content; the strings must outlive the parser */
    size_t n_tool_names;
} gemma4c_parse_options;

/* Incremental parser of output text (special tokens written as text:
 * "<|channel>", "<|tool_call>", ...) into reasoning, content and tool calls.
 * Any chunking gives the same deltas and message. o and fn may be NULL. */
typedef struct gemma4c_chat_parser gemma4c_chat_parser;
gemma4c_chat_parser *gemma4c_chat_parser_new(const gemma4c_parse_options *o, gemma4c_delta_fn fn, void *user);
/* 0, or -1 on allocation failure (the parser is then unusable). */
int gemma4c_chat_parser_feed(gemma4c_chat_parser *p, const char *data, size_t n);
/* End of output: held text is flushed (an unfinished call becomes content). */
int gemma4c_chat_parser_finish(gemma4c_chat_parser *p);
/* 1 once a stop marker (<turn|>, <|tool_response>, <eos>) was seen. */
int gemma4c_chat_parser_stopped(const gemma4c_chat_parser *p);
/* The OpenAI-style assistant message so far as malloc'd JSON text:
 * {"role":"assistant","content":string|null,["reasoning_content"],
 * ["tool_calls":[{"id","type":"function","function":{"name","arguments"}}]]}.
 * indent 0: one line, else pretty-printed with indent spaces. NULL on
 * allocation failure or invalid UTF-8 in the output. */
char *gemma4c_chat_parser_message(const gemma4c_chat_parser *p, int indent);
void gemma4c_chat_parser_free(gemma4c_chat_parser *p);
/* One shot: the message (compact JSON text) of a whole output, or NULL. */
char *gemma4c_chat_parse(const char *text, size_t len, const gemma4c_parse_options *o, char *err,
                         size_t errlen);

/* ---- chat sessions ------------------------------------------------------------ */

/* A conversation on a context: each turn renders the whole request, reuses
 * the longest prefix of it already in the context, decodes the answer and
 * parses it as it streams. A session uses its context alone; hold many
 * conversations with one context (and session) each over one shared model. */
typedef struct gemma4c_session gemma4c_session;

typedef struct gemma4c_session_params {
    int n_predict;                    /* most tokens per answer (0 = what the context has left) */
    int family;                       /* enum gemma4c_chat_family; 0 = the model's */
    gemma4c_chat_options chat;        /* add_generation_prompt is always on */
    gemma4c_sampler_params sampling;
    /* Polled before each token (may read a flag set by a signal handler);
     * nonzero ends the answer with FINISH_CANCEL. May be NULL. */
    int (*cancel)(void *user);
    void *cancel_user;
    /* Constrained decoding from the request (off when 0): "response_format"
     * {"type":"json_object"} or {"type":"json_schema","json_schema":{"schema":...}}
     * (or Ollama's "format": "json" / a schema), and "tools" with
     * "tool_choice" (auto, required, none, named). */
    int constrain;
    gemma4c_draft_params draft;       /* speculative decoding (kind 0: off) */
} gemma4c_session_params;

/* n_predict 1024, the model's family, options from the request, Gemma's sampling. */
gemma4c_session_params gemma4c_session_default_params(void);
gemma4c_session *gemma4c_session_new(gemma4c_context *c, const gemma4c_session_params *p, char *err,
                                     size_t errlen);
void gemma4c_session_free(gemma4c_session *s);
/* Forget what the context holds (e.g. the conversation was cleared). */
void gemma4c_session_reset(gemma4c_session *s);
int gemma4c_session_family(const gemma4c_session *s);

typedef struct gemma4c_turn_result {
    int finish;            /* enum gemma4c_finish; -1 if it failed before decoding */
    int n_prompt;          /* tokens of the rendered prompt */
    int n_reused;          /* of those, already in the context */
    int n_generated;
    char *message;         /* malloc'd compact JSON text of the assistant message
                              (as gemma4c_chat_parser_message); NULL on failure */
} gemma4c_turn_result;

/* The prompt leaves no room in the context for an answer. */
#define GEMMA4C_ERR_CONTEXT_FULL (-2)

/* Answer the chat request (JSON text, as gemma4c_chat_render) with deltas
 * streamed to on_delta (may be NULL). Returns 0 with out->message set; -1
 * (out->finish tells whether deltas were already streamed: FINISH_ERROR) or
 * GEMMA4C_ERR_CONTEXT_FULL with err set. A cancelled or cut answer is a
 * success: its message is what was generated. */
int gemma4c_session_turn(gemma4c_session *s, const char *request_json, size_t len, gemma4c_delta_fn on_delta,
                         void *user, gemma4c_turn_result *out, char *err, size_t errlen);

/* ---- scheduler: many conversations at once ---------------------------------
 * Continuous batching over one context of n_parallel sequences. Requests are
 * OpenAI-style chat requests as JSON text ("messages", "tools", "temperature",
 * "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
 * "repeat_penalty", "seed", "max_tokens" / "max_completion_tokens", "stop",
 * "chat_template_kwargs": {"enable_thinking"}, "reasoning_effort", "logprobs",
 * "top_logprobs" (0..20; LOGPROB events and the result's logprobs); or, for a
 * plain continuation, "prompt": text without "messages": BOS + the text,
 * no chat format, the answer all content). Each is
 * rendered and tokenized when submitted, waits in a bounded FIFO queue for a
 * free sequence, has its prompt evaluated in chunks (at most n_batch tokens per
 * step, shared with one decode token of every running request, so a long
 * prompt does not stall the others) and then decodes with every running
 * request contributing one token to one forward pass per step (the weights
 * are read once for all of them). Each request samples with its own sampler
 * (its own seed), so its tokens do not depend on its neighbours. With
 * n_prefix > 0 a prompt continues the longest cached prefix (same system
 * prompt and tools, earlier turns) and each evaluated prompt is cached.
 *
 * Threads: submit, cancel, wait and stats may be called from any thread;
 * step from one thread at a time, and the event callbacks run inside step on
 * that thread, without the scheduler's lock (they may submit or cancel). */
typedef struct gemma4c_scheduler gemma4c_scheduler;

typedef struct gemma4c_scheduler_params {
    int n_parallel;    /* requests decoded at once, one sequence each (0 = 4) */
    int n_ctx;         /* positions one request may use, prompt + answer (0 = min(model, 4096)) */
    int n_batch;       /* tokens per step (0 = 512; at least n_parallel) */
    int n_threads;     /* as gemma4c_context_params */
    int precision;     /* enum gemma4c_precision */
    int n_prefix;      /* prefix-cache snapshots (0 = none) */
    int max_queue;     /* requests waiting for a sequence (0 = 256); more are refused */
    int n_predict;     /* answer limit when a request gives no max_tokens (0 = what the context has left) */
    int family;        /* enum gemma4c_chat_family; 0 = the model's */
    int openai_compat; /* as gemma4c_chat_options */
    int kv_type;       /* enum gemma4c_kv_type */
    /* Speculative decoding per request (kind 0: off; NGRAM only: CUSTOM is
     * refused): each decoding request adds up to draft.max prompt-lookup drafts
     * to the step's batch (within n_batch) and keeps the prefix its sampler
     * accepts, so a step can hand on several tokens of it. */
    gemma4c_draft_params draft;
} gemma4c_scheduler_params;

gemma4c_scheduler_params gemma4c_scheduler_default_params(void);

enum gemma4c_event_kind {
    GEMMA4C_EVENT_DELTA = 1,  /* a piece of the answer (delta) */
    GEMMA4C_EVENT_DONE = 2,   /* the request ended: json is its chat.completion */
    GEMMA4C_EVENT_ERROR = 3,  /* the request failed after it was accepted: error says why */
    /* "logprobs": true only: json is one sampled token's entry
     * {"token","logprob","bytes":[..],"top_logprobs":[{"token","logprob","bytes"}]}
     * (OpenAI's logprobs.content item), sent before the token's DELTA. The
     * log-softmax is of the logits the sampler drew from: after logit_bias
     * and the constraint's mask, before penalties and temperature. The end
     * of turn token has none. */
    GEMMA4C_EVENT_LOGPROB = 4,
};

typedef struct gemma4c_event {
    int kind;                    /* enum gemma4c_event_kind */
    uint64_t id;                 /* the request's id from submit */
    const gemma4c_delta *delta;  /* DELTA */
    /* DONE: {"id":"chatcmpl-<id>","object":"chat.completion","created","model",
     * "choices":[{"index":0,"message":{...as gemma4c_chat_parser_message},
     * "finish_reason":"stop"|"length"|"tool_calls"|"cancelled",
     * "logprobs":null or {"content":[entries as LOGPROB]}}],"usage":
     * {"prompt_tokens","completion_tokens","total_tokens",
     * "prompt_tokens_details":{"cached_tokens"}}} as compact JSON text */
    const char *json;
    size_t len;
    int finish;                  /* DONE: enum gemma4c_finish */
    const char *error;           /* ERROR */
} gemma4c_event;

/* Called inside gemma4c_scheduler_step; pointers are valid during the call.
 * Every accepted request gets exactly one DONE or ERROR event, its last. */
typedef void (*gemma4c_event_fn)(void *user, const gemma4c_event *e);

/* The queue is full: try again after some requests finished. */
#define GEMMA4C_ERR_QUEUE_FULL (-3)

/* The scheduler owns a context made from p (NULL: defaults) on the model. */
gemma4c_scheduler *gemma4c_scheduler_new(gemma4c_model *m, const gemma4c_scheduler_params *p, char *err,
                                         size_t errlen);
/* Requests still running or queued are dropped without events. */
void gemma4c_scheduler_free(gemma4c_scheduler *s);
/* Accept a request (JSON text of len bytes); its events go to fn(user, ...).
 * Returns 0 with *id set; -1 for a malformed request (err names the field),
 * GEMMA4C_ERR_CONTEXT_FULL for a prompt that leaves no room for an answer
 * (err gives both numbers) or GEMMA4C_ERR_QUEUE_FULL. No event follows an
 * error. */
int gemma4c_scheduler_submit(gemma4c_scheduler *s, const char *request_json, size_t len, gemma4c_event_fn fn,
                             void *user, uint64_t *id, char *err, size_t errlen);
/* Stop a request at the next step (DONE with finish_reason "cancelled", the
 * answer so far). Returns 0, or -1 if no such request is pending. */
int gemma4c_scheduler_cancel(gemma4c_scheduler *s, uint64_t id);
/* One step: admit queued requests to free sequences, evaluate one batch,
 * sample, send events. Returns the requests still running or queued (0:
 * idle), or -1 if the step's forward pass failed (its requests got ERROR
 * events; the scheduler stays usable). */
int gemma4c_scheduler_step(gemma4c_scheduler *s);
/* Block until a request is pending or timeout_ms passed (< 0: no limit);
 * returns the requests running or queued. For a driver thread that steps
 * only while there is work. */
int gemma4c_scheduler_wait(gemma4c_scheduler *s, int timeout_ms);
/* Wake a wait from another thread (e.g. to shut down). */
void gemma4c_scheduler_wake(gemma4c_scheduler *s);

typedef struct gemma4c_scheduler_stats {
    int n_parallel, active, queued;
    uint64_t submitted, rejected, completed, cancelled, failed;
    uint64_t prompt_tokens;      /* of the requests admitted */
    uint64_t cached_tokens;      /* of those, continued from the prefix cache */
    uint64_t completion_tokens;  /* sampled */
    uint64_t steps, batch_tokens;  /* forward passes, and tokens in them */
    uint64_t prefix_lookups, prefix_hits;
    uint64_t drafted, draft_accepted;  /* speculative drafts verified, and kept */
    /* steps without prompt tokens (decoding only): how many, seconds in the
     * forward pass, seconds in the whole step (forward, sampling, text and
     * events); with the rate a client sees, they split a server's decode
     * time into the library's share and the rest */
    uint64_t decode_steps;
    double decode_forward_s, decode_step_s;
} gemma4c_scheduler_stats;
void gemma4c_scheduler_stats_get(gemma4c_scheduler *s, gemma4c_scheduler_stats *out);
/* The scheduler's context (for memory statistics; do not decode on it). */
gemma4c_context *gemma4c_scheduler_context(gemma4c_scheduler *s);

/* ---- media (images; audio and video where built) --------------------------------
 * An mmproj holds the model's media encoders: llama.cpp's mmproj GGUF, or the
 * model's Hugging Face folder. A media item is a decoded and preprocessed
 * file; encoding it gives n_tokens soft tokens of the text width, which go
 * into the prompt at a run of n_tokens placeholder ids (<|image|> etc.,
 * between <|image> and <image|>) through gemma4c_batch.embd. */

typedef struct gemma4c_mmproj gemma4c_mmproj;
typedef struct gemma4c_media gemma4c_media;

enum gemma4c_media_kind { GEMMA4C_MEDIA_IMAGE = 1, GEMMA4C_MEDIA_AUDIO = 2, GEMMA4C_MEDIA_VIDEO = 3 };

/* path: an mmproj .gguf or an HF folder; NULL: the one beside model m (its
 * HF folder, or the single *mmproj*.gguf in the model file's folder). */
gemma4c_mmproj *gemma4c_mmproj_open(const gemma4c_model *m, const char *path, char *err, size_t errlen);
void gemma4c_mmproj_free(gemma4c_mmproj *p);
/* Width of the soft tokens (0 for a NULL p). */
int gemma4c_mmproj_n_embd(const gemma4c_mmproj *p);
/* The vision tower's width, MLP width and layer count; -1 if it has none. */
int gemma4c_mmproj_vision_shape(const gemma4c_mmproj *p, int *width, int *ff, int *layers);
/* Can p encode items of this kind? */
int gemma4c_mmproj_supports(const gemma4c_mmproj *p, int kind);

/* Attention of the text model over an image's soft tokens: 0 causal (E2B,
 * E4B), 1 bidirectional within each image on the sliding-window layers
 * (26B-A4B, 31B), as transformers. */
int gemma4c_model_image_attention(const gemma4c_model *m);

typedef struct gemma4c_media_params {
    int image_tokens;   /* soft-token budget per image: 70, 140, 280, 560, 1120; 0 = the processor's (280) */
    int n_threads;      /* encoder threads, 0 = all CPUs */
    int precision;      /* enum gemma4c_precision */
    int video_tokens;   /* soft tokens per video frame (same choices); 0 = 70 */
    int video_frames;   /* frames sampled uniformly from a video; 0 = 32 */
} gemma4c_media_params;
gemma4c_media_params gemma4c_media_default_params(void);

/* Decode and preprocess a file (kind 0: an image, or a video when path is a
 * folder of frames). A video is any file FFmpeg decodes (animated GIF too)
 * or a folder of images in name order (24 fps). NULL + err. */
gemma4c_media *gemma4c_media_load(gemma4c_mmproj *p, const char *path, int kind, const gemma4c_media_params *mp,
                                  char *err, size_t errlen);
/* An image already decoded: RGB u8 [h][w][3]. */
gemma4c_media *gemma4c_media_from_rgb(gemma4c_mmproj *p, const uint8_t *rgb, int w, int h,
                                      const gemma4c_media_params *mp, char *err, size_t errlen);
void gemma4c_media_free(gemma4c_media *it);
int gemma4c_media_kind(const gemma4c_media *it);
int gemma4c_media_n_tokens(const gemma4c_media *it);     /* all frames of a video */
int gemma4c_media_n_frames(const gemma4c_media *it);     /* 1 for an image or audio */
/* The text that replaces the item's template placeholder (transformers'
 * processor): "<|image>" + n x "<|image|>" + "<image|>" (audio alike); a
 * video per frame "MM:SS <|image>" + n x "<|video|>" + "<image|>", frames
 * joined by a space. malloc'd, or NULL. */
char *gemma4c_media_prompt(const gemma4c_media *it);
/* The placeholder id of its soft tokens, and the ids that open and close
 * its run (from the model's vocabulary; -1 if the model lacks them). */
int gemma4c_media_token_ids(const gemma4c_model *m, int kind, int32_t *open, int32_t *soft, int32_t *close);
/* Encode (once; later calls return the same rows): [n_tokens][n_embd], owned
 * by the item. NULL + err. */
const float *gemma4c_media_encode(gemma4c_media *it, char *err, size_t errlen);
/* A session's media: the items of its conversation's media parts (type
 * image / audio in the request's messages, history included), in order.
 * Borrowed: they must live until the session is freed or cleared. Each
 * turn expands the template's placeholders with their soft tokens. */
int gemma4c_session_add_media(gemma4c_session *s, gemma4c_media *it);
void gemma4c_session_clear_media(gemma4c_session *s);
/* The preprocessed image (after resize) for inspection: RGB u8, or NULL. */
const uint8_t *gemma4c_media_pixels(const gemma4c_media *it, int *w, int *h);

/* ---- files -------------------------------------------------------------------- */

/* Progress of a long write: tensor bytes done of total, seconds since the
 * start; final is 1 once, after the last byte was synced. */
typedef void (*gemma4c_progress_fn)(void *user, uint64_t done, uint64_t total, double elapsed_s, int final);

typedef struct gemma4c_write_params {
    int n_threads;                 /* <= 0: all CPUs */
    int force;                     /* replace an existing output file */
    gemma4c_progress_fn progress;  /* may be NULL */
    void *progress_user;
} gemma4c_write_params;

/* llama_ftype number (general.file_type) of a file type name ("BF16",
 * "Q4_K_M", case-insensitive), or -1 if unknown. */
int gemma4c_file_type_from_name(const char *name);

/* Output files appear under their name only when complete. Returns 0 or -1. */
/* Hugging Face folder -> GGUF laid out as llama.cpp's converter does; name
 * (general.name) may be NULL. */
int gemma4c_convert(const char *hf_dir, const char *out, const char *type, const char *name,
                    const gemma4c_write_params *p, char *err, size_t errlen);
/* GGUF -> GGUF of another type, with llama-quantize's per-tensor rules. */
int gemma4c_quantize(const char *in, const char *out, const char *type, const gemma4c_write_params *p,
                     char *err, size_t errlen);
/* base (GGUF or HF folder) with n adapters (paths, scales NULL: 1.0 each)
 * merged into its weights: W' = W + sum S alpha / r B A, one tensor at a
 * time. type NULL keeps each tensor's type; else a file type name ("F32",
 * "Q8_0", "Q4_K_M") with llama-quantize's per-tensor rules. */
int gemma4c_merge(const char *base, const char *const *adapters, const float *scales, int n, const char *out,
                  const char *type, const gemma4c_write_params *p, char *err, size_t errlen);
/* A random-weight Gemma 4 GGUF of preset arch ("tiny", "e2b", "e4b",
 * "26b-a4b", "31b") and type; same seed, same bytes. */
int gemma4c_synth(const char *out, const char *arch, const char *type, uint64_t seed,
                  const gemma4c_write_params *p, char *err, size_t errlen);
/* A random-weight Gemma 4 MTP assistant (drafter): for preset arch ("e2b",
 * "e4b", "26b-a4b", "31b": real shapes), or, with target (a model file) given,
 * a tiny one (2 layers, width 64) that fits that model; matrices in type's
 * base type. */
int gemma4c_synth_assistant(const char *out, const char *arch, const char *target, const char *type, uint64_t seed,
                            const gemma4c_write_params *p, char *err, size_t errlen);
/* A random-weight mmproj (vision tower + embedder) of arch ("tiny": the
 * width of synth's tiny model; "e2b", "e4b", "26b-a4b", "31b": the released
 * shapes), matrices in type F32 / F16 / BF16 (NULL: F16). */
int gemma4c_synth_mmproj(const char *out, const char *arch, const char *type, uint64_t seed, int force, char *err,
                         size_t errlen);
/* Async-signal-safe: remove the temporary file of a write in progress (for
 * a SIGINT/SIGTERM handler, so an interrupted write leaves nothing behind). */
void gemma4c_write_abort_cleanup(void);

/* ---- training ------------------------------------------------------------------ */

/* One optimizer step's report (and a final one with final = 1). */
typedef struct gemma4c_train_progress {
    int step, total_steps, epoch;
    double loss;          /* mean cross entropy per target token of this step */
    double eval_loss;     /* on --eval data when measured at this step, else NaN */
    double eval_unigram;  /* the eval targets' loss under the training targets' unigram
                             frequencies (add-one): the baseline eval_loss must beat; NaN without eval */
    double tokens_per_s;  /* training tokens (forward + backward) per second */
    double eta_s;
    int final;
    double step_s;        /* wall seconds of this step's forward, backward and update (no eval, no save) */
    long step_tokens;     /* tokens this step trained on */
    /* the run's memory plan (bytes): frozen base weights (memory-mapped, resident as read;
     * 0 when training every weight), training workspace (activations of one sequence, the
     * checkpointed residual stream, products' scratch), and the trainable values with
     * their gradients and AdamW moments (4 floats per trainable value) */
    uint64_t mem_weights, mem_activations, mem_trainable;
    uint64_t mem_weights_read;   /* of mem_weights: what a step reads, so what is resident after
                             one (all but the per-layer embedding table, read a row per token) */
    uint64_t mem_kept;    /* of mem_activations: the layers' internals kept for the backward
                             (gemma4c_train_params.recompute); the rest is the workspace */
    int kept_layers, n_layers;   /* layers whose backward reruns no forward product, of all */
    double part_s[5];     /* this step's seconds in: the layers' forward, the head's forward (logits,
                             loss), the head's backward, the layers' recomputed forward, the layers'
                             backward (the rest of step_s: the optimizer) */
} gemma4c_train_progress;

/* Full training of every weight in f32 with AdamW (gemma4c train), or a
 * LoRA adapter on a frozen base (base set: gemma4c finetune). Data:
 * JSONL lines {"text": "..."} (loss on every token) or {"messages": [...]}
 * rendered with the model's chat format (loss on the assistant turns). */
typedef struct gemma4c_train_params {
    const char *arch;         /* a new model of this synth preset ("tiny", "mini") ... */
    const char *corpus;       /*   whose tokenizer learns its merges from this text file (NULL: built in) */
    const char *base;         /* fine-tuning (gemma4c finetune): the frozen base model (GGUF or HF
                                 folder, used in its stored form); a LoRA adapter is trained */
    int rank;                 /*   <= 0: 16 */
    float alpha;              /*   <= 0: 32 */
    const char *targets;      /*   "q,k,v,o,gate,up,down" (NULL: all seven) */
    const char *data;         /* JSONL training data */
    const char *eval;         /* JSONL held-out data, or NULL */
    const char *out;          /* output .gguf (f32); fine-tuning: OUT (PEFT folder) and OUT.gguf
                                 (GGUF LoRA), ".gguf" stripped from OUT for the folder */
    const char *ckpt_dir;     /* checkpoints go to DIR/step-N; NULL: OUT.ckpt */
    const char *resume;       /* a checkpoint folder to continue from, or NULL */
    float lr;                 /* <= 0: 1e-3 */
    float weight_decay;       /* < 0: 0.01 (matrices only) */
    int epochs;               /* <= 0: 1 */
    int max_steps;            /* > 0: stop after this many steps */
    int n_ctx;                /* <= 0: 256; longer examples are cut (or packed) */
    int pack;                 /* 1: concatenate examples and cut windows of n_ctx; 0: truncate each */
    int batch_tokens;         /* <= 0: 2048 tokens per step */
    int grad_accum;           /* <= 0: 1 (batches per optimizer step) */
    int save_every;           /* > 0: a checkpoint every N steps */
    int eval_every;           /* > 0: eval loss every N steps (and at the end) */
    int n_threads;            /* <= 0: 1 */
    uint64_t seed;
    void (*progress)(void *user, const gemma4c_train_progress *p);
    void *progress_user;
    volatile int *stop;       /* set (from a signal handler): checkpoint and return 1 */
    const char *dump_logits;  /* tests: after training, the in-memory model's logits of the first
                                 training example (raw f32 [n][n_vocab]) and its ids (FILE.tokens),
                                 computed on the exact path */
    int exact;                /* fine-tuning: 1 runs every product exactly (f32 activations against
                                 the stored rows: the gradient tests' path, ~10x slower); 0 (default):
                                 the fast path (int8 activations in the forward products like prefill,
                                 decoded f32 panels in the backward). Full training is always exact.
                                 A checkpoint records it; --resume with the other setting is refused. */
    int recompute;            /* the backward's layer internals: 0 auto (kept for as many layers as
                                 fit in act_mem_mib, the rest recomputed), 1 always recompute (the
                                 least memory), 2 never (keep every layer); the same results */
    int act_mem_mib;          /* auto's budget for kept internals in MiB; <= 0: a quarter of the
                                 physical memory */
} gemma4c_train_params;

/* Returns 0 when done, 1 when stopped by *stop (a checkpoint was written),
 * -1 with err. */
int gemma4c_train(const gemma4c_train_params *p, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
