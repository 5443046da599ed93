/* Safetensors reader: single files and sharded checkpoints.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON mapping each
 * tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
 * relative to the end of the header) plus an optional "__metadata__" object,
 * then the raw little-endian tensor bytes.
 *
 * Everything in the header is validated before use: N is bounded and inside
 * the file, every [begin, end) lies in the data section, ranges do not
 * overlap, the byte count equals prod(shape) * element size (overflow-safe),
 * and only F32 / F16 / BF16 are accepted (other dtypes, e.g. F8_E4M3, give an
 * error naming the tensor). Files are memory-mapped read-only. */
#ifndef G4_SAFETENSORS_H
#define G4_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20)  /* 100 MiB: real headers are < 1 MiB */

typedef struct g4_st_tensor {
    char *name;          /* owned, NUL-terminated */
    int type;            /* enum g4_type: G4_F32, G4_F16 or G4_BF16 */
    int n_dims;          /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS]; /* PyTorch order: shape[n_dims-1] fastest */
    uint64_t begin, end; /* byte range inside the data section */
    const void *data;    /* points into the file image */
    struct g4_st_file *file;
} g4_st_tensor;

typedef struct g4_st_file {
    char *path;          /* owned, for messages */
    const uint8_t *buf;  /* whole file image */
    size_t size;
    void *map;           /* non-NULL when we mapped it (g4_st_open) */
    g4_st_tensor *t;
    size_t n;
} g4_st_file;

/* Parse a safetensors image already in memory (the fuzz entry point). The
 * buffer must outlive the result. */
g4_st_file *g4_st_parse(const void *buf, size_t size, const char *name, g4_error *err);
/* Map and parse one .safetensors file. */
g4_st_file *g4_st_open(const char *path, g4_error *err);
void g4_st_close(g4_st_file *f);

/* A checkpoint: one model.safetensors, or the shards listed by
 * model.safetensors.index.json. Tensor names are unique across shards. */
typedef struct g4_st_set {
    g4_st_file **files;
    size_t n_files;
    g4_st_tensor **all;     /* every tensor, sorted by name */
    size_t n;
} g4_st_set;

/* Open the weights of a Hugging Face folder. */
g4_st_set *g4_st_open_dir(const char *dir, g4_error *err);
/* Validate an index JSON (text in memory) against the shard files in dir and
 * open them; exposed for tests. */
g4_st_set *g4_st_open_index(const char *dir, const char *json, size_t len, g4_error *err);
const g4_st_tensor *g4_st_find(const g4_st_set *s, const char *name);
void g4_st_set_close(g4_st_set *s);

/* Number of elements (1 for a scalar). */
int64_t g4_st_nelements(const g4_st_tensor *t);

#endif
