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

/* Media parts of a body, base64-decoded: OpenAI's "image_url" (data: URIs
 * only) and "input_audio" content parts, or Ollama's "images" (ollama = 1).
 * 0 with *n items in *out (conv_media_free), or -1 with err naming the
 * field. At most CONV_MAX_MEDIA items. */
#define CONV_MAX_MEDIA 16
typedef struct conv_media {
    int kind;              /* GEMMA4C_MEDIA_IMAGE / _AUDIO */
    unsigned char *data;   /* the file's bytes */
    size_t len;
    char format[16];       /* "png", "wav", ... as the request says ("" for Ollama) */
} conv_media;
int conv_media_collect(const json_t *body, int ollama, conv_media **out, int *n, char *err, size_t errlen);
void conv_media_free(conv_media *m, int n);

#endif
