/* libFuzzer target: the MTP assistant loader (GGUF reader + every check
 * against the target) on arbitrary bytes, and three chained drafting steps
 * when a small drafter loads. The target is the tiny reference model
 * gemma4-e ($G4_SHARED, default ../shared) with four tokens in its cache.
 * Build: make fuzz; run: build-fuzz/fuzz_assistant -max_total_time=60 corpus/
 * (seed: gemma4c synth --assistant-for .../gemma4-e.gguf -o corpus/seed.gguf) */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/assistant.h"
#include "model/forward.h"

static g4_model *target;
static g4_seq *seq;
static float hidden[4096];

static void init(void) {
    const char *root = getenv("G4_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/testdata/gemma4-ref/gemma4-e.gguf", root && *root ? root : "../shared");
    g4_error e;
    g4_gguf_file *f = g4_gguf_open(path, &e);
    if (!f || !(target = g4_model_load(f, &e))) { fprintf(stderr, "fuzz_assistant: %s\n", e.msg); abort(); }
    g4_workspace *w = g4_workspace_new(target, 4, 1, 0, &e);
    seq = g4_seq_new(target, 16, 4, &e);
    int32_t tok[4] = { 2, 40, 41, 42 }, pos[4] = { 0, 1, 2, 3 };
    float *logits = malloc((size_t)target->n_vocab * sizeof *logits);
    g4_batch b = { .n = 4, .tokens = tok, .pos = pos, .seq0 = seq, .hidden = hidden };
    if (!w || !seq || !logits || target->n_embd > 4096 || g4_forward(w, &b, logits, 0, &e)) abort();
    free(logits);
    g4_workspace_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!target) init();
    g4_error e;
    g4_gguf_file *f = g4_gguf_parse(data, size, "fuzz", &e);
    if (!f) return 0;
    g4_assistant *a = g4_assistant_load(f, target, &e);   /* takes f */
    if (a && a->n_embd <= 1024 && a->ff_max <= 8192 && a->nq_max <= 8192) {
        g4_asst_ws *w = g4_asst_ws_new(a, 1, 0, &e);
        float h[4096];
        memcpy(h, hidden, sizeof h);
        int32_t x = 43;
        for (int k = 0; w && k < 3 && x >= 0; k++) x = g4_assistant_step(w, target, seq, x, h, seq->n_past, h, NULL, &e);
        g4_asst_ws_free(w);
    }
    g4_assistant_free(a);
    return 0;
}
