/* Synthetic Gemma 4 checkpoints: random weights in the exact GGUF layout of
 * the released models (names, shapes, metadata, per-tensor types of a file
 * type), written streaming. Used for the default demo model (`tiny`) and for
 * benchmarking real shapes without downloading 3-20 GB. */
#ifndef G4_SYNTH_H
#define G4_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef struct g4_synth_opts {
    const char *arch;     /* "tiny", "e2b", "e4b", "26b-a4b", "31b" */
    const char *ftype;    /* "F32", "Q8_0", "Q4_K_M", ... (see quantize.h) */
    uint64_t seed;
    int n_threads;
    bool force;
    const char *corpus;   /* NULL, or a text file the vocabulary's merges are learned from (V = 0 presets) */
    /* optional progress callback (see gguf_write.h); the library never prints */
    void (*progress)(void *ud, uint64_t done, uint64_t total, double elapsed_s, bool final);
    void *progress_ud;
} g4_synth_opts;

int g4_synth(const char *out_path, const g4_synth_opts *o, g4_error *err);

/* A random-weight Gemma 4 MTP assistant ("gemma4-assistant" GGUF,
 * docs/gemma4-mtp.md) for a target: either a preset (o->arch "e2b", "e4b",
 * "26b-a4b", "31b": the released drafter shapes, 4 layers SSSF) or, with
 * target given, a tiny one (2 layers SF, width 64) whose shared shapes
 * (width, head dims, vocabulary, window, rope factors) are the target's.
 * Matrices in the file type's base type, vectors F32. */
struct g4_model;
int g4_synth_assistant(const char *out_path, const struct g4_model *target, const g4_synth_opts *o, g4_error *err);

/* Names of the presets, NULL-terminated, for --help. */
extern const char *const g4_synth_archs[];

#endif
