/* GGUF reader (versions 2 and 3) and in-memory GGUF model description.
 *
 * A g4_gguf_file is the engine's one description of a checkpoint: metadata
 * key/values plus tensor descriptors whose `data` points at the weights as
 * stored. g4_gguf_open() fills it from a memory-mapped .gguf file; the Hugging
 * Face loader builds the same structure from safetensors shards (g4_gguf_new +
 * gguf_set_* + g4_gguf_add_tensor), so the model loader and the converter see a
 * single format.
 *
 * Every count, length, offset and dimension read from a file is validated
 * against the file size before use; a bad file yields an error naming the
 * field, never an out-of-bounds read. */
#ifndef G4_GGUF_H
#define G4_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

enum g4_gguf_vtype {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3,
    GGUF_UINT32 = 4, GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7,
    GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12, GGUF_VTYPE_COUNT
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* A string as stored: not NUL-terminated, may point into the mapping. */
typedef struct g4_gguf_str {
    uint64_t len;
    const char *ptr;
} g4_gguf_str;

typedef struct g4_gguf_kv {
    char *key;              /* NUL-terminated, owned */
    int type;               /* enum g4_gguf_vtype */
    /* scalars (type != STRING/ARRAY): value widened into one of these */
    union { uint64_t u; int64_t i; double f; bool b; } v;
    g4_gguf_str str;           /* type == STRING */
    int arr_type;           /* type == ARRAY: element type (never ARRAY) */
    uint64_t arr_n;         /* element count */
    const void *arr_data;   /* numeric arrays: packed little-endian elements;
                               string arrays read from a file: their bytes */
    uint64_t arr_span;      /* string arrays read from a file: bytes at arr_data */
    g4_gguf_str *arr_str;   /* string arrays built in memory: arr_n entries
                               (owned); NULL for those read from a file, which
                               are walked in place (g4_gguf_str_iter): an index
                               of a real vocabulary's 777K strings would hold
                               12 MB for as long as the file is open */
} g4_gguf_kv;

/* In-order walk of a string array, either representation. next returns 1
 * with *out set, 0 at the end, -1 if the bytes no longer hold a string
 * (they were checked at open; a file changed under its mapping). */
typedef struct g4_gguf_str_iter {
    const g4_gguf_kv *kv;
    uint64_t i, pos;
} g4_gguf_str_iter;
void g4_gguf_str_iter_init(g4_gguf_str_iter *it, const g4_gguf_kv *kv);
int g4_gguf_str_iter_next(g4_gguf_str_iter *it, g4_gguf_str *out);

typedef struct g4_gguf_tensor {
    char *name;             /* owned */
    int type;               /* enum g4_type */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] fastest; unused dims are 1 */
    uint64_t offset;        /* relative to the data section (files only) */
    size_t nbytes;
    const void *data;       /* weights as stored */
} g4_gguf_tensor;

typedef struct g4_gguf_file {
    char *path;             /* for messages; "<memory>" when built in memory */
    uint32_t version;
    uint32_t alignment;
    g4_gguf_kv *kv;
    uint64_t n_kv;
    g4_gguf_tensor *tensors;
    uint64_t n_tensors;
    uint64_t data_offset;   /* start of the tensor data section in the file */
    /* private */
    void *map; size_t map_size;     /* mmap of the whole file, if any */
    void **owned; size_t n_owned, cap_owned; /* extra allocations to free */
    void *extra;                    /* user data freed with extra_free */
    void (*extra_free)(void *);
} g4_gguf_file;

/* Open and validate a .gguf file (memory-mapped, read-only). */
g4_gguf_file *g4_gguf_open(const char *path, g4_error *err);
/* Parse a GGUF image already in memory (used by the fuzzer and tests). The
 * buffer must outlive the result. */
g4_gguf_file *g4_gguf_parse(const void *buf, size_t size, const char *name, g4_error *err);
void g4_gguf_close(g4_gguf_file *f);
/* Hand the header's pages (metadata and tensor index, before the data
 * section) back to the page cache: a real vocabulary's strings are ~12 MB a
 * process keeps resident only while it builds its tokenizer. Everything stays
 * readable (a later read faults the page in again). No-op for files not
 * mapped. */
void g4_gguf_release_header(const g4_gguf_file *f);

/* Lookups: NULL / -1 when absent. */
const g4_gguf_kv *g4_gguf_find_kv(const g4_gguf_file *f, const char *key);
const g4_gguf_tensor *g4_gguf_find_tensor(const g4_gguf_file *f, const char *name);

/* Typed getters. They return 0 on success, 1 if the key is absent (out is
 * untouched) and -1 with err set if present with an incompatible type or an
 * out-of-range value. Integer getters accept any integer type whose value fits. */
int g4_gguf_get_u32(const g4_gguf_file *f, const char *key, uint32_t *out, g4_error *err);
int g4_gguf_get_i64(const g4_gguf_file *f, const char *key, int64_t *out, g4_error *err);
int g4_gguf_get_f32(const g4_gguf_file *f, const char *key, float *out, g4_error *err);
int g4_gguf_get_bool(const g4_gguf_file *f, const char *key, bool *out, g4_error *err);
/* Returns a malloc'd NUL-terminated copy (caller frees). Embedded NULs are an error. */
int g4_gguf_get_str(const g4_gguf_file *f, const char *key, char **out, g4_error *err);
/* Element i of a numeric array as int64 / double / bool. No bounds beyond arr_n. */
int64_t g4_gguf_arr_i64(const g4_gguf_kv *kv, uint64_t i);
double  g4_gguf_arr_f64(const g4_gguf_kv *kv, uint64_t i);
size_t  g4_gguf_vtype_size(int vtype);        /* 0 for STRING/ARRAY/unknown */
const char *g4_gguf_vtype_name(int vtype);

/* --- Building in memory (HF loader, converter, synthetic models) --------- */
g4_gguf_file *g4_gguf_new(const char *name);
/* Each setter appends (or replaces in place, keeping the key's position). The
 * value is copied. Returns 0 or -1 on allocation failure. */
int g4_gguf_set_u32(g4_gguf_file *f, const char *key, uint32_t v);
int g4_gguf_set_i32(g4_gguf_file *f, const char *key, int32_t v);
int g4_gguf_set_f32(g4_gguf_file *f, const char *key, float v);
int g4_gguf_set_bool(g4_gguf_file *f, const char *key, bool v);
int g4_gguf_set_str(g4_gguf_file *f, const char *key, const char *v);
/* Numeric array of element type vtype (n elements, packed LE). */
int g4_gguf_set_arr(g4_gguf_file *f, const char *key, int vtype, const void *data, uint64_t n);
int g4_gguf_set_arr_str(g4_gguf_file *f, const char *key, const char *const *v, uint64_t n);
/* Add a tensor descriptor; `data` is not copied (it must outlive f).
 * nbytes is computed from type and ne. Returns the tensor or NULL. */
g4_gguf_tensor *g4_gguf_add_tensor(g4_gguf_file *f, const char *name, int type, int n_dims,
                             const int64_t *ne, const void *data, g4_error *err);
/* Hand an allocation to f, freed by g4_gguf_close. Returns p (NULL on failure,
 * in which case p was freed). */
void *g4_gguf_own(g4_gguf_file *f, void *p);

/* Write f as a GGUF v3 file (atomic: temp name then rename). See g4_gguf_write.c. */
int g4_gguf_write(const g4_gguf_file *f, const char *path, g4_error *err);

#endif
