/* Request bodies -> scheduler requests (server/convert.c), callable
 * without a socket (the routes and fuzz/fuzz_request.c use them). Each
 * returns a new JSON object for gemma4c_scheduler_submit, or NULL with err
 * naming the field first, in quotes. */
#ifndef G4_SERVER_CONVERT_H
#define G4_SERVER_CONVERT_H

#include <stddef.h>

#include <jansson.h>

/* A boolean field: def when absent or null, -1 (err set) when not a boolean. */
int conv_bool(const json_t *obj, const char *key, int def, char *err, size_t errlen);

/* /v1/chat/completions (completion = 0: "messages") or /v1/completions
 * (1: "prompt", sent as the scheduler's raw mode); *stream and *usage from
 * "stream" / "stream_options". */
json_t *conv_openai(const json_t *body, int completion, int *stream, int *usage, char *err, size_t errlen);

/* Ollama's /api/chat (chat = 1) or /api/generate (chat = 0); *stream
 * defaults to 1 as in Ollama. */
json_t *conv_ollama(const json_t *body, int chat, int *stream, char *err, size_t errlen);

#endif
