/* libFuzzer target: the LoRA adapter readers on arbitrary bytes.
 * Build: make fuzz; run: build-fuzz/fuzz_lora -max_total_time=60 corpus/
 * The first input byte picks the reader: even -> a GGUF LoRA image; odd ->
 * a PEFT adapter: adapter_config.json text up to the first NUL byte, then
 * the adapter_model.safetensors image (no NUL: an empty safetensors). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "adapter/lora.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g4_error e;
    if (size < 1) return 0;
    g4_lora *l;
    if (data[0] & 1) {
        const uint8_t *nul = memchr(data + 1, 0, size - 1);
        size_t cl = nul ? (size_t)(nul - data - 1) : size - 1;
        const uint8_t *st = nul ? nul + 1 : data + size;
        l = g4_lora_parse_peft((const char *)data + 1, cl, st, (size_t)(data + size - st), "fuzz", &e);
    } else {
        l = g4_lora_parse_gguf(data + 1, size - 1, "fuzz", &e);
    }
    if (!l) return 0;
    /* every accepted pair: its storage holds r x n_in and n_out x r floats */
    volatile float acc = 0;
    for (int i = 0; i < l->n_pairs; i++) {
        const g4_lora_pair *p = &l->pairs[i];
        acc += p->a[0] + p->a[(size_t)p->r * (size_t)p->n_in - 1];
        acc += p->b[0] + p->b[(size_t)p->n_out * (size_t)p->r - 1];
        acc += g4_lora_pair_mult(l, p);
    }
    (void)acc;
    g4_lora_free(l);
    return 0;
}
