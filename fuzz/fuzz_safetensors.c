/* libFuzzer target: the safetensors header parser and the shard index
 * validator on arbitrary bytes.
 * Build: make fuzz; run: build-fuzz/fuzz_safetensors -max_total_time=60 corpus/
 * The first input byte picks the target: even -> a safetensors image, odd ->
 * a model.safetensors.index.json text (checked against an empty folder, so
 * only the JSON validation runs). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g4_error e;
    if (size < 1) return 0;
    if (data[0] & 1) {
        g4_st_set *s = g4_st_open_index("/nonexistent-fuzz-dir", (const char *)data + 1, size - 1, &e);
        g4_st_set_close(s);
        return 0;
    }
    g4_st_file *f = g4_st_parse(data + 1, size - 1, "fuzz", &e);
    if (!f) return 0;
    /* touch every accepted tensor's bytes: must lie inside the buffer */
    volatile uint8_t acc = 0;
    for (size_t i = 0; i < f->n; i++) {
        const g4_st_tensor *t = &f->t[i];
        const uint8_t *p = t->data;
        if (t->end > t->begin) acc ^= p[0] ^ p[t->end - t->begin - 1];
        (void)g4_st_nelements(t);
    }
    (void)acc;
    g4_st_close(f);
    return 0;
}
