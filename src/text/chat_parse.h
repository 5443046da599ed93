/* Gemma 4 model-output parser: splits generated text into reasoning (the
 * thought channel), content and tool calls, incrementally.
 *
 * Input is detokenized text in which special tokens appear as their strings
 * (`<|channel>`, `<channel|>`, `<|tool_call>`, `<tool_call|>`, `<|"|>`,
 * `<turn|>`, `<|tool_response>`, `<eos>`). Grammar (gemma4-chat-format.md
 * §6-§7):
 *
 *   [<|turn>model\n] [<|channel>[thought] REASONING <channel|>] CONTENT
 *   (<|tool_call>call:NAME{k:v,...}<tool_call|>)* [CONTENT]
 *   [<turn|> | <|tool_response> | <eos>]        (stop: the rest is ignored)
 *
 * Values: <|"|>strings<|"|>, bare keys, numbers, true/false/null (also
 * Python's True/False/None, which the template writes for null), nested
 * {} and []. JSON "strings" and "keys" are accepted too.
 *
 * Reasoning and content are each trimmed of ASCII whitespace at both ends;
 * several thought blocks are joined with "\n". A tool call that does not
 * parse, is unterminated at finish, or exceeds max_call_bytes is given back
 * verbatim as content. Feeding the same bytes in any chunking yields the same
 * concatenated deltas and the same final message. Memory: the pending window
 * is bounded (one marker, or one call up to max_call_bytes); the final
 * message keeps the whole reasoning/content text. */
#ifndef G4_CHAT_PARSE_H
#define G4_CHAT_PARSE_H

#include <stddef.h>

#include <jansson.h>

#include "util/error.h"

typedef enum g4_delta_kind {
    G4_DELTA_REASONING = 1,
    G4_DELTA_CONTENT = 2,
    G4_DELTA_TOOL_CALL = 3,
} g4_delta_kind;

typedef struct g4_chat_delta {
    g4_delta_kind kind;
    const char *text;       /* REASONING / CONTENT: bytes, not NUL-terminated */
    size_t len;
    int index;              /* TOOL_CALL: 0-based call number */
    const char *id;         /* TOOL_CALL: "<id_prefix><index>" */
    const char *name;       /* TOOL_CALL: function name */
    const char *arguments;  /* TOOL_CALL: arguments as compact JSON object text */
} g4_chat_delta;

/* Called synchronously from feed/finish; pointers are valid only during the call. */
typedef void (*g4_chat_delta_fn)(void *user, const g4_chat_delta *d);

typedef struct g4_chat_parse_options {
    size_t max_call_bytes;  /* longest tool call kept pending; 0 = 1 MiB */
    const char *id_prefix;  /* tool-call ids; NULL = "call_" */
    /* If n_tool_names > 0, a call to any other name is not a call (kept as
     * content), like llama.cpp's grammar over the declared tools. The
     * strings must outlive the parser. */
    const char *const *tool_names;
    size_t n_tool_names;
    int in_reasoning;       /* the prompt already opened the thought channel
                               (it ends with "<|channel>thought\n"): the output
                               starts inside the reasoning */
} g4_chat_parse_options;

typedef struct g4_chat_parser g4_chat_parser;

/* opt and fn may be NULL. Returns NULL on allocation failure. */
g4_chat_parser *g4_chat_parser_new(const g4_chat_parse_options *opt, g4_chat_delta_fn fn, void *user);
/* Feed any number of bytes (any split). 0, or -1 on allocation failure
 * (the parser is then unusable). Bytes after a stop marker are ignored. */
int g4_chat_parser_feed(g4_chat_parser *p, const char *data, size_t n);
/* End of output: flushes held text (an unfinished call becomes content). */
int g4_chat_parser_finish(g4_chat_parser *p);
/* 1 once a stop marker (<turn|>, <|tool_response>, <eos>) was seen. */
int g4_chat_parser_stopped(const g4_chat_parser *p);
/* OpenAI-style assistant message so far: {"role":"assistant","content":
 * string|null, ["reasoning_content": string], ["tool_calls": [{"id","type":
 * "function","function":{"name","arguments": JSON string}}]]}. content is
 * null only when there are tool calls and no text. New reference. */
json_t *g4_chat_parser_message(const g4_chat_parser *p);
void g4_chat_parser_free(g4_chat_parser *p);

/* One-shot: parse a whole output. NULL with err set on allocation failure. */
json_t *g4_chat_parse(const char *text, size_t n, const g4_chat_parse_options *opt, g4_error *err);

#endif
