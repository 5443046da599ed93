/* Internals behind include/gemma4c.h shared by the engine's files. */
#ifndef G4_ENGINE_H
#define G4_ENGINE_H

#include "format/gguf.h"
#include "model/model.h"

#include "text/tokenizer.h"
#include "gemma4c.h"

struct gemma4c_model {
    g4_model *m;
    g4_tokenizer *tok;   /* NULL if the file has no usable tokenizer block */
    char *tok_err;       /* why not, for the error of text functions */
    char *chat_template;
    int chat_family;     /* enum gemma4c_chat_family, never UNKNOWN */
};

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
