#include "engine/engine.h"

gguf_file *g4_open_hf_dir(const char *dir, g4_error *err) {
    g4_seterr(err, "%s: Hugging Face folders are not supported by this build yet", dir);
    return NULL;
}
