/* Internals behind include/gemma4c.h shared by the engine's files. */
#ifndef G4_ENGINE_H
#define G4_ENGINE_H

#include "format/gguf.h"
#include "model/model.h"

struct gemma4c_model {
    g4_model *m;
};

/* Build the model description of a Hugging Face checkpoint folder. */
gguf_file *g4_open_hf_dir(const char *dir, g4_error *err);

#endif
