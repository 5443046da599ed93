/* libFuzzer target: the GGUF reader and the model loader on arbitrary bytes.
 * Build: make fuzz; run: build-fuzz/fuzz_gguf -max_total_time=60 corpus/ */
#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g4_error e;
    g4_gguf_file *f = g4_gguf_parse(data, size, "fuzz", &e);
    if (!f) return 0;
    /* walk what was parsed, as the tokenizer and loader do */
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const g4_gguf_kv *kv = &f->kv[i];
        if (kv->type == GGUF_ARRAY && kv->arr_type != GGUF_STRING)
            for (uint64_t j = 0; j < kv->arr_n && j < 64; j++) (void)g4_gguf_arr_i64(kv, j);
    }
    g4_model *m = g4_model_load(f, &e); /* takes ownership of f */
    g4_model_free(m);
    return 0;
}
