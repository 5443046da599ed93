/* Gemma 4 chat rendering: an OpenAI-style chat request -> the exact prompt
 * text the official Jinja chat template produces (no Jinja engine).
 *
 * The algorithm, value serialization and the Python/Jinja quirks imitated
 * here are in docs gemma4-chat-format.md §3-§5 (2026-04-10 31B template).
 * Two template families exist; they differ only in the generation prompt
 * with thinking off (26B/31B pre-fill an empty thought block, E2B/E4B do
 * not). The prompt starts with the literal text "<bos>"; the tokenizer must
 * match special tokens in it. */
#ifndef G4_CHAT_H
#define G4_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/error.h"

typedef enum g4_chat_family {
    G4_CHAT_FAMILY_UNKNOWN = 0,
    G4_CHAT_FAMILY_E   = 1,   /* E2B / E4B: generation prompt "<|turn>model\n" */
    G4_CHAT_FAMILY_31B = 2,   /* 26B-A4B / 31B: + "<|channel>thought\n<channel|>" when not thinking */
    /* llama.cpp's google-gemma-4-31B-it-interleaved.jinja (spec §9): role:"tool"
     * messages are plain turns, results only via legacy "tool_responses". */
    G4_CHAT_FAMILY_INTERLEAVED = 3,
} g4_chat_family;

typedef struct g4_chat_options {
    /* -1: take from the request (chat_template_kwargs.enable_thinking, else
     * top-level enable_thinking; absent = off), 0/1: override. */
    int enable_thinking;
    /* -1: take from the request (absent = false, like apply_chat_template),
     * 0/1: override. */
    int add_generation_prompt;
    /* NULL: request's "bos_token", else "<bos>". */
    const char *bos_token;
    /* G4_CHAT_COMPAT_* flags; 0 renders exactly what the official template does. */
    unsigned compat;
} g4_chat_options;

/* OpenAI clients send tool-call "arguments" as a JSON string, which the
 * template would paste raw (`call:f{{"a": 1}}`); parse it into an object
 * first, as llama.cpp does. */
#define G4_CHAT_COMPAT_JSON_ARGS 1u
/* Trap 5 of the spec: a requested generation prompt is dropped after an
 * assistant message with tool results and content, leaving "<turn|>\n";
 * append "<|turn>model\n" then, as llama.cpp does. */
#define G4_CHAT_COMPAT_GEN_AFTER_TURN 2u
#define G4_CHAT_COMPAT_LLAMACPP (G4_CHAT_COMPAT_JSON_ARGS | G4_CHAT_COMPAT_GEN_AFTER_TURN)

/* Options that take everything from the request. */
#define G4_CHAT_OPTIONS_DEFAULT { -1, -1, NULL, 0 }

/* Render `request` (an object with "messages", optional "tools",
 * "add_generation_prompt", "enable_thinking", "chat_template_kwargs",
 * "bos_token"; a bare array is taken as the message list). opt may be NULL.
 * Returns a malloc'd NUL-terminated prompt (it may contain NUL bytes if the
 * request did; *len gets the byte length when len != NULL) or NULL with err
 * set, naming the offending field. Inputs the official template rejects
 * (e.g. a tool result whose name cannot be resolved) are errors here too. */
char *g4_chat_render(const json_t *request, const g4_chat_options *opt,
                     g4_chat_family family, size_t *len, g4_error *err);

/* Family from chat-template text (GGUF tokenizer.chat_template or HF
 * chat_template.jinja). UNKNOWN if the text is not a Gemma 4 template. */
g4_chat_family g4_chat_family_from_template(const char *text);
/* Family from model facts when no template is available: E2B/E4B are the
 * models with per-layer embeddings (ple_dim > 0), or 35/42 layers. */
g4_chat_family g4_chat_family_from_model(uint32_t n_layers, uint32_t ple_dim);
/* "e", "e2b", "e4b" -> E; "31b", "26b", "26b-a4b", "dense", "moe" -> 31B;
 * "interleaved" -> INTERLEAVED (case-insensitive); UNKNOWN otherwise. */
g4_chat_family g4_chat_family_from_name(const char *name);
const char *g4_chat_family_name(g4_chat_family f);

struct g4_gguf_file;
/* From a GGUF: tokenizer.chat_template if it is a Gemma 4 template, else
 * block_count / embedding_length_per_layer_input. Never UNKNOWN. */
g4_chat_family g4_chat_family_from_gguf(const struct g4_gguf_file *g);
/* From a model path: a Hugging Face folder (chat_template.jinja, then
 * tokenizer_config.json "chat_template", then config.json's shape) or a
 * .gguf file. UNKNOWN with err set if it cannot be read. */
g4_chat_family g4_chat_family_from_path(const char *path, g4_error *err);

#endif
