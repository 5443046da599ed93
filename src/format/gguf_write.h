/* Streaming GGUF v3 writer (g4_gguf_write() in gguf.h is the simple form).
 *
 * The writer emits the header (metadata, tensor infos), then each tensor's
 * bytes padded to the alignment. Tensor bytes come either from the
 * descriptor's `data` or, when `data` is NULL, from a fill callback asked for
 * a range of rows at a time, so a converter never holds more than one chunk
 * (default 64 MiB) of output in memory. Output goes to "PATH.tmp-XXXXXX" in
 * the same folder and is renamed over PATH only after everything was written
 * and synced: PATH never holds a partial file. */
#ifndef G4_GGUF_WRITE_H
#define G4_GGUF_WRITE_H

#include <stdbool.h>
#include <stdint.h>

#include "format/gguf.h"

/* Progress report: bytes of tensor data written so far, total, seconds
 * since the start; final is true once, after the last byte was synced. */
typedef void (*g4_gguf_progress_fn)(void *ud, uint64_t done, uint64_t total, double elapsed_s, bool final);

/* Fill rows [row0, row0+nrows) of output tensor ti into dst (nrows * row
 * size bytes, row = ne[0] elements of the output type). Return 0 or -1. */
typedef int (*g4_gguf_fill_fn)(void *ud, uint64_t ti, int64_t row0, int64_t nrows, void *dst,
                            g4_error *err);

typedef struct g4_gguf_write_opts {
    const g4_gguf_kv *const *kvs;  /* metadata in order; NULL: f->kv */
    uint64_t n_kvs;
    const g4_gguf_tensor *tensors; /* output descriptors; NULL: f->tensors */
    uint64_t n_tensors;
    g4_gguf_fill_fn fill;          /* used for descriptors whose data is NULL */
    void *ud;
    bool force;                 /* replace an existing PATH */
    g4_gguf_progress_fn progress_fn; /* optional; called at most every 0.25 s */
    void *progress_ud;
    size_t chunk_bytes;         /* 0: 64 MiB */
} g4_gguf_write_opts;

int g4_gguf_write_ex(const g4_gguf_file *f, const char *path, const g4_gguf_write_opts *o, g4_error *err);

/* Serialized size of the header (everything before the first tensor byte,
 * alignment padding included) and of the whole file. */
int g4_gguf_write_sizes(const g4_gguf_file *f, const g4_gguf_write_opts *o, uint64_t *header,
                     uint64_t *total, g4_error *err);

/* Async-signal-safe: unlink the temporary file of a write in progress (for a
 * SIGINT/SIGTERM handler in a front end, so Ctrl-C leaves nothing behind). */
void g4_gguf_write_cleanup_tmp(void);

#endif
