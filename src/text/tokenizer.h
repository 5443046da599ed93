/* Gemma 4 tokenizer: BPE over UTF-8 with SentencePiece-style spaces.
 *
 * Encoding (gemma4-text.md §4): spaces become U+2581 "▁", no prefix space is
 * added, the text is cut into newline runs and non-newline runs, each run is
 * merged by merge rank (lowest rank first, leftmost on ties) starting from
 * single UTF-8 characters, and characters the vocabulary lacks fall back to
 * `<0xHH>` byte tokens. This is what llama.cpp's gemma4 tokenizer and Hugging
 * Face's tokenizer.json pipeline both compute.
 *
 * Added tokens (special markers such as `<|turn>`, plain added pieces such as
 * "\n\n" or "<b>" in Hugging Face files) are matched as whole tokens in the
 * text, leftmost-longest, according to their match policy:
 *   G4_MATCH_SPECIAL  only when the caller passes parse_special (chat
 *                     rendering); otherwise the string is ordinary text, so
 *                     user content can never inject a control token;
 *   G4_MATCH_ALWAYS   always (Hugging Face added tokens with special=false,
 *                     which HF splits out of every text).
 * Loaded from GGUF, CONTROL / USER_DEFINED / UNKNOWN tokens are SPECIAL (note:
 * llama.cpp also matches USER_DEFINED tokens without parse_special; for Gemma 4
 * those are the tool/channel markers, which user text must not inject).
 *
 * The tokenizer is immutable after loading and can be shared by threads;
 * every call keeps its scratch memory on its own. Errors are g4_error values. */
#ifndef G4_TOKENIZER_H
#define G4_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct g4_gguf_file;

/* ggml token types (tokenizer.ggml.token_type). */
enum g4_tok_type {
    G4_TOK_NORMAL = 1,
    G4_TOK_UNKNOWN = 2,
    G4_TOK_CONTROL = 3,
    G4_TOK_USER_DEFINED = 4,
    G4_TOK_UNUSED = 5,
    G4_TOK_BYTE = 6,
};

/* How a token may be matched as a whole in input text. */
enum g4_tok_match {
    G4_MATCH_NEVER = 0,    /* only reachable through BPE */
    G4_MATCH_SPECIAL = 1,  /* only with parse_special */
    G4_MATCH_ALWAYS = 2,   /* in any text */
};

typedef struct g4_tokenizer g4_tokenizer;

/* Everything needed to build a tokenizer, as plain arrays (no file format).
 * Arrays are copied; the caller keeps ownership. */
typedef struct g4_tok_vocab {
    size_t n_tokens;
    const char *const *tokens;    /* n_tokens strings, SentencePiece form */
    const size_t *token_lens;     /* optional: byte lengths (NULL: strlen) */
    const int32_t *types;         /* optional: enum g4_tok_type (NULL: NORMAL,
                                     and "<0xHH>" strings are BYTE) */
    const uint8_t *match;         /* optional: enum g4_tok_match (NULL: from
                                     types, see the header comment) */
    size_t n_merges;
    const char *const *merges;    /* "left right", rank = index */
    int32_t bos, eos, unk, pad;   /* -1 when absent */
    const int32_t *eog_ids;       /* optional extra end-of-generation ids */
    size_t n_eog_ids;
} g4_tok_vocab;

g4_tokenizer *g4_tokenizer_create(const g4_tok_vocab *v, g4_error *err);
void g4_tokenizer_free(g4_tokenizer *t);

/* From a GGUF's tokenizer.ggml.* block (model must be "gemma4"). */
g4_tokenizer *g4_tokenizer_from_gguf(const struct g4_gguf_file *f, g4_error *err);
/* From a Hugging Face tokenizer.json; config_path (tokenizer_config.json) is
 * optional (NULL: look next to json_path, silently skip if absent). It only
 * names the bos/eos/unk/pad tokens. Requires model.type "BPE" and Gemma's
 * space handling (normalizer Replace " " -> "▁", or none); added tokens with
 * special=true become CONTROL/SPECIAL (the seven Gemma 4 markers llama.cpp
 * renders, `<|channel>` ... `<|"|>`, become USER_DEFINED/SPECIAL), the others
 * USER_DEFINED/ALWAYS. Their lstrip/rstrip/single_word/normalized options are
 * not applied (all false in Gemma files). */
g4_tokenizer *g4_tokenizer_from_hf_json(const char *json_path, const char *config_path,
                                        g4_error *err);
/* A .gguf file, a tokenizer.json, or a folder holding tokenizer.json. */
g4_tokenizer *g4_tokenizer_load(const char *path, g4_error *err);

/* --- encoding ------------------------------------------------------------ */

/* Growable id list. Zero-initialize; free with g4_tokens_free. */
typedef struct g4_tokens {
    int32_t *ids;
    size_t n, cap;
} g4_tokens;
void g4_tokens_free(g4_tokens *t);

/* Appends the ids of text[0..len) to out (BOS first when add_bos and the
 * vocabulary has one). Any bytes are accepted: invalid UTF-8 goes through byte
 * fallback. Returns 0, or -1 with err set (allocation failure, or a character
 * with neither a token nor byte tokens and no <unk>). */
int g4_tok_encode(const g4_tokenizer *t, const char *text, size_t len, bool add_bos,
                  bool parse_special, g4_tokens *out, g4_error *err);

/* --- vocabulary ---------------------------------------------------------- */

int32_t g4_tok_n_vocab(const g4_tokenizer *t);
/* Bytes the tokenizer's tables hold (for the memory plan); 0 for NULL. */
size_t g4_tok_mem_bytes(const g4_tokenizer *t);
int32_t g4_tok_bos(const g4_tokenizer *t);   /* -1 when absent */
int32_t g4_tok_eos(const g4_tokenizer *t);
int32_t g4_tok_unk(const g4_tokenizer *t);
int32_t g4_tok_pad(const g4_tokenizer *t);
/* End of generation: eos, `<eos>`, `<turn|>`, `<|tool_response>` (by string, when the
 * vocabulary has them) and any extra eog ids; never `</s>`. */
bool g4_tok_is_eog(const g4_tokenizer *t, int32_t id);
/* Exact piece lookup ("<|turn>", "▁Hello"); -1 when absent. */
int32_t g4_tok_find(const g4_tokenizer *t, const char *piece, size_t len);
/* The stored piece (SentencePiece form) or NULL for a bad id. */
const char *g4_tok_text(const g4_tokenizer *t, int32_t id, size_t *len);
int g4_tok_type(const g4_tokenizer *t, int32_t id);   /* 0 for a bad id */

/* --- decoding ------------------------------------------------------------ */

/* Bytes of token id as text: "▁" becomes a space, `<0xHH>` its byte; CONTROL,
 * UNKNOWN and UNUSED tokens give their text only with render_special. Writes
 * at most cap bytes (no NUL) and returns the full length, like snprintf; -1 for
 * a bad id. */
int g4_tok_piece(const g4_tokenizer *t, int32_t id, bool render_special, char *buf,
                 size_t cap);
/* Whole-sequence decode into a malloc'd NUL-terminated string (*len without
 * the NUL). Bad ids are an error. */
int g4_tok_decode(const g4_tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                  char **out, size_t *len, g4_error *err);

/* Streaming detokenizer: push ids one at a time and get back only complete
 * UTF-8 characters; a character whose bytes span several tokens is held until
 * its last byte arrives. Bytes that can never complete a character are passed
 * through as they are, so the concatenated output always equals
 * g4_tok_decode's. */
typedef struct g4_detok g4_detok;
g4_detok *g4_detok_new(const g4_tokenizer *t, bool render_special);
void g4_detok_free(g4_detok *d);
/* Returns text ready to print (valid until the next call; *len may be 0) or
 * NULL with err set for a bad id / allocation failure. */
const char *g4_detok_push(g4_detok *d, int32_t id, size_t *len, g4_error *err);
/* End of stream: returns the held incomplete bytes, if any, and resets. */
const char *g4_detok_flush(g4_detok *d, size_t *len);
void g4_detok_reset(g4_detok *d);

#endif
