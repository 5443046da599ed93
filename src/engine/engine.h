/* Internals behind include/gemma4c.h shared by the engine's files. */
#ifndef G4_ENGINE_H
#define G4_ENGINE_H

#include "format/gguf.h"
#include "model/model.h"

#include "text/tokenizer.h"

struct gemma4c_model {
    g4_model *m;
    g4_tokenizer *tok;   /* NULL if the file has no usable tokenizer block */
    char *tok_err;       /* why not, for the error of text functions */
    char *chat_template;
};


#endif
