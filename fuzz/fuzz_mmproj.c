/* libFuzzer target: the mmproj loader (GGUF reader + vision and audio tower
 * checks) on arbitrary bytes, and one 48x48 image / 0.5 s audio encode when a
 * small tower loads.
 * Build: make fuzz; run: build-fuzz/fuzz_mmproj -max_total_time=60 corpus/ */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/mmproj.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g4_error e;
    g4_gguf_file *f = g4_gguf_parse(data, size, "fuzz", &e);
    if (!f) return 0;
    g4_mmproj *p = g4_mmproj_from_file(f, &e);   /* takes f */
    if (p && p->vision && g4_vision_n_embd(p->vision) <= 1024 && p->n_embd_text <= 4096) {
        uint8_t img[48 * 48 * 3];
        for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 7);
        float *out = malloc((size_t)p->n_embd_text * sizeof *out);
        if (out) g4_vision_encode(p->vision, img, 48, 48, out, 1, true, &e);
        free(out);
    }
    if (p && p->audio && p->n_embd_text <= 4096) {   /* 0.5 s of features: 13 soft tokens */
        float mel[49 * 128];
        for (size_t i = 0; i < 49 * 128; i++) mel[i] = (float)(i % 37) * 0.1f - 2.0f;
        float *out = malloc((size_t)13 * p->n_embd_text * sizeof *out);
        if (out && g4_audio_n_tokens(p->audio, 49) == 13) g4_audio_encode(p->audio, mel, 49, out, 1, true, &e);
        free(out);
    }
    g4_mmproj_free(p);
    return 0;
}
