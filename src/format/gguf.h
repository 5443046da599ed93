/* GGUF reader (versions 2 and 3) and in-memory GGUF model description.
 *
 * A gguf_file is the engine's one description of a checkpoint: metadata
 * key/values plus tensor descriptors whose `data` points at the weights as
 * stored. gguf_open() fills it from a memory-mapped .gguf file; the Hugging
 * Face loader builds the same structure from safetensors shards (gguf_new +
 * gguf_set_* + gguf_add_tensor), so the model loader and the converter see a
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

enum gguf_vtype {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3,
    GGUF_UINT32 = 4, GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7,
    GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12, GGUF_VTYPE_COUNT
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* A string as stored: not NUL-terminated, may point into the mapping. */
typedef struct gguf_str {
    uint64_t len;
    const char *ptr;
} gguf_str;

typedef struct gguf_kv {
    char *key;              /* NUL-terminated, owned */
    int type;               /* enum gguf_vtype */
    /* scalars (type != STRING/ARRAY): value widened into one of these */
    union { uint64_t u; int64_t i; double f; bool b; } v;
    gguf_str str;           /* type == STRING */
    int arr_type;           /* type == ARRAY: element type (never ARRAY) */
    uint64_t arr_n;         /* element count */
    const void *arr_data;   /* numeric arrays: packed little-endian elements */
    gguf_str *arr_str;      /* string arrays: arr_n entries (owned index) */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;             /* owned */
    int type;               /* enum g4_type */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] fastest; unused dims are 1 */
    uint64_t offset;        /* relative to the data section (files only) */
    size_t nbytes;
    const void *data;       /* weights as stored */
} gguf_tensor;

typedef struct gguf_file {
    char *path;             /* for messages; "<memory>" when built in memory */
    uint32_t version;
    uint32_t alignment;
    gguf_kv *kv;
    uint64_t n_kv;
    gguf_tensor *tensors;
    uint64_t n_tensors;
    uint64_t data_offset;   /* start of the tensor data section in the file */
    /* private */
    void *map; size_t map_size;     /* mmap of the whole file, if any */
    void **owned; size_t n_owned, cap_owned; /* extra allocations to free */
    void *extra;                    /* user data freed with extra_free */
    void (*extra_free)(void *);
} gguf_file;

/* Open and validate a .gguf file (memory-mapped, read-only). */
gguf_file *gguf_open(const char *path, g4_error *err);
/* Parse a GGUF image already in memory (used by the fuzzer and tests). The
 * buffer must outlive the result. */
gguf_file *gguf_parse(const void *buf, size_t size, const char *name, g4_error *err);
void gguf_close(gguf_file *f);

/* Lookups: NULL / -1 when absent. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed getters. They return 0 on success, 1 if the key is absent (out is
 * untouched) and -1 with err set if present with an incompatible type or an
 * out-of-range value. Integer getters accept any integer type whose value fits. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, g4_error *err);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, g4_error *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, g4_error *err);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, g4_error *err);
/* Returns a malloc'd NUL-terminated copy (caller frees). Embedded NULs are an error. */
int gguf_get_str(const gguf_file *f, const char *key, char **out, g4_error *err);
/* Element i of a numeric array as int64 / double / bool. No bounds beyond arr_n. */
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);
double  gguf_arr_f64(const gguf_kv *kv, uint64_t i);
size_t  gguf_vtype_size(int vtype);        /* 0 for STRING/ARRAY/unknown */
const char *gguf_vtype_name(int vtype);

/* --- Building in memory (HF loader, converter, synthetic models) --------- */
gguf_file *gguf_new(const char *name);
/* Each setter appends (or replaces in place, keeping the key's position). The
 * value is copied. Returns 0 or -1 on allocation failure. */
int gguf_set_u32(gguf_file *f, const char *key, uint32_t v);
int gguf_set_i32(gguf_file *f, const char *key, int32_t v);
int gguf_set_f32(gguf_file *f, const char *key, float v);
int gguf_set_bool(gguf_file *f, const char *key, bool v);
int gguf_set_str(gguf_file *f, const char *key, const char *v);
/* Numeric array of element type vtype (n elements, packed LE). */
int gguf_set_arr(gguf_file *f, const char *key, int vtype, const void *data, uint64_t n);
int gguf_set_arr_str(gguf_file *f, const char *key, const char *const *v, uint64_t n);
/* Add a tensor descriptor; `data` is not copied (it must outlive f).
 * nbytes is computed from type and ne. Returns the tensor or NULL. */
gguf_tensor *gguf_add_tensor(gguf_file *f, const char *name, int type, int n_dims,
                             const int64_t *ne, const void *data, g4_error *err);
/* Hand an allocation to f, freed by gguf_close. Returns p (NULL on failure,
 * in which case p was freed). */
void *gguf_own(gguf_file *f, void *p);

/* Write f as a GGUF v3 file (atomic: temp name then rename). See gguf_write.c. */
int gguf_write(const gguf_file *f, const char *path, g4_error *err);

#endif
