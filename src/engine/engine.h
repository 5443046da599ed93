/* Internals behind include/gemma4c.h shared by the engine's files. */
#ifndef G4_ENGINE_H
#define G4_ENGINE_H

#include "format/gguf.h"
#include "model/forward.h"
#include "model/kv.h"
#include "model/model.h"

#include <pthread.h>

#include "text/tokenizer.h"
#include "gemma4c.h"

struct gemma4c_model {
    g4_model *m;
    g4_tokenizer *tok;   /* NULL if the file has no usable tokenizer block */
    char *tok_err;       /* why not, for the error of text functions */
    char *chat_template;
    int chat_family;     /* enum gemma4c_chat_family, never UNKNOWN */
    /* the token index of constrained decoding: built on first use (~0.1 s
     * and tens of MB for the real vocabulary), then shared read-only */
    gemma4c_token_index *tix;
    pthread_mutex_t tix_mu;
};

/* The model's token index, built on first use (thread-safe), or NULL + err. */
const gemma4c_token_index *g4_engine_token_index(const gemma4c_model *m, char *err, size_t errlen);

/* The constraint an OpenAI/Ollama-style request asks for: response_format
 * json_object / json_schema, Ollama's format, or tools + tool_choice.
 * thinking: 0 none, 1 an optional leading thought, 2 the output starts inside
 * one. NULL with *failed = 0: the request asks for none; NULL with
 * *failed = 1: an error (err says which field). */
struct json_t;
gemma4c_constraint *g4_engine_request_constraint(const gemma4c_model *m, const struct json_t *req, int thinking,
                                                 int *failed, char *err, size_t errlen);

struct gemma4c_context {
    gemma4c_model *model;
    g4_workspace *ws;       /* scratch for one pass; the thread pool inside is shared */
    g4_kv_pool *pool;       /* KV memory of all its sequences */
    g4_seq **seqs;          /* [n_seq] */
    int n_seq;
    int32_t *pos;           /* [n_batch] one pass's positions, */
    g4_seq **bseq;          /*           sequences */
    int8_t *bout;           /*           and logits flags */
    float *logits;          /* [rows][n_vocab] kept by the last decode */
    size_t logits_cap;      /* rows allocated */
    float *hidden;          /* [rows][n_embd]: the same rows' LM-head inputs (an MTP drafter's input) */
    size_t hidden_cap;
    int *row_of;            /* [n_idx]: batch index -> row of logits, -1 */
    size_t row_of_cap;
    int n_idx, n_rows;
    int32_t **toks;         /* [n_seq][n_ctx]: each sequence's tokens, by position */
    int n_ctx;

    /* prefix cache (prefix.c): snapshots are sequences of the same pool */
    struct g4_prefix *pfx;  /* [n_prefix] */
    int n_prefix;
    uint64_t clock;         /* LRU time */
    gemma4c_prefix_stats pst;

    struct g4_lora_set *lora;  /* adapters bound for this context (lora_api.c), or NULL */
};

/* A prefix-cache snapshot: a frozen sequence and the tokens it holds. */
typedef struct g4_prefix {
    g4_seq *seq;            /* NULL: free slot */
    int32_t *toks;
    uint64_t used;
} g4_prefix;

/* Memory of p's adapters (their pairs, the hook's scratch), for the plan. */
uint64_t g4_engine_adapter_bytes(const gemma4c_context_params *p);
/* Bind p's adapters to c (lora_api.c); 0 or -1 + err. */
int g4_engine_context_adapters(gemma4c_context *c, const gemma4c_context_params *p, char *err, size_t errlen);

/* Free the least recently used snapshot; 0, or -1 when there is none. */
int g4_prefix_evict(gemma4c_context *c);
void g4_prefix_free_all(gemma4c_context *c);


/* Prompt-lookup drafts (generate.c): up to max tokens that followed the
 * latest earlier occurrence of the last n-gram of h[0..nh) (n = ngram down
 * to 1). Returns how many were written to out. */
int g4_draft_ngram(const int32_t *h, int nh, int ngram, int32_t *out, int max);

/* MTP drafting (drafter.c): up to max tokens after `token` (the pending
 * token, at the context's n_past in sequence 0) from the target's hidden
 * row h of the logits row that chose it. Returns how many were written. */
int g4_engine_draft_mtp(gemma4c_context *c, gemma4c_drafter *d, int32_t token, const float *h, int32_t *out,
                        int max);
/* The hidden row of batch index i of the last decode (-1: the last row). */
const float *g4_engine_hidden(const gemma4c_context *c, int i);

/* The chat family of the model at path whose file f is (chat_api.c). */
int g4_engine_chat_family(const char *path, const g4_gguf_file *f);

/* gemma4c_chat_render for a request already parsed (the session layer). */
struct json_t;
char *g4_engine_render(int family, const struct json_t *req, const gemma4c_chat_options *o, size_t *out_len,
                       char *err, size_t errlen);

/* 1 if a rendered prompt ends inside the thought channel (session.c): the
 * output parser must then start in the reasoning. */
int g4_engine_ends_in_thought(const char *prompt, size_t len);

#endif
