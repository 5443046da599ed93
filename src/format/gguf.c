/* GGUF reader and in-memory builder.
 *
 * File layout (v2/v3, little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 vtype, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset },
 *   padding to `general.alignment` (default 32), tensor data.
 * A string is u64 length + bytes (no NUL). Arrays are u32 elem type, u64 count,
 * elements. Version 1 (u32 counts) is long obsolete and refused.
 *
 * Parsing walks a bounds-checked cursor; every length is checked against the
 * bytes left before anything is allocated, so a hostile file cannot make us
 * allocate more than a small multiple of its own size. */
#include "format/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/mapfile.h"
#include "tensor/types.h"
#include "util/esc.h"

/* Limits that no real model comes near; they turn absurd values into errors. */
#define MAX_KEY_LEN      (1u << 16)
#define MAX_NAME_LEN     (1u << 12)   /* ggml allows 64; be lenient */
#define MAX_DIM          ((int64_t)1 << 40)
#define MAX_ELEMS        ((int64_t)1 << 50)

typedef struct cursor {
    const uint8_t *p;
    size_t pos, size;
    g4_error *err;
    const char *name;
} cursor;

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > c->size - c->pos)
        return g4_seterr(c->err, "%s: truncated file: %s needs %llu bytes at offset %zu, only %zu left",
                         c->name, G4_ESC(what), (unsigned long long)n, c->pos, c->size - c->pos);
    return 0;
}

static int rd(cursor *c, void *dst, size_t n, const char *what) {
    if (need(c, n, what)) return -1;
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static int rd_u64(cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

static int rd_str(cursor *c, g4_gguf_str *s, uint64_t max, const char *what) {
    uint64_t len;
    if (rd_u64(c, &len, what)) return -1;
    if (len > max)
        return g4_seterr(c->err, "%s: %s has length %llu at offset %zu (limit %llu)", c->name, G4_ESC(what),
                         (unsigned long long)len, c->pos - 8, (unsigned long long)max);
    if (need(c, len, what)) return -1;
    s->len = len;
    s->ptr = (const char *)c->p + c->pos;
    c->pos += len;
    return 0;
}

static char *dup_str(g4_gguf_str s) {
    char *r = malloc(s.len + 1);
    if (!r) return NULL;
    memcpy(r, s.ptr, s.len);
    r[s.len] = 0;
    return r;
}

static const size_t VSIZE[GGUF_VTYPE_COUNT] = {
    [GGUF_UINT8] = 1, [GGUF_INT8] = 1, [GGUF_UINT16] = 2, [GGUF_INT16] = 2,
    [GGUF_UINT32] = 4, [GGUF_INT32] = 4, [GGUF_FLOAT32] = 4, [GGUF_BOOL] = 1,
    [GGUF_UINT64] = 8, [GGUF_INT64] = 8, [GGUF_FLOAT64] = 8,
};

size_t g4_gguf_vtype_size(int t) { return (t >= 0 && t < GGUF_VTYPE_COUNT) ? VSIZE[t] : 0; }

const char *g4_gguf_vtype_name(int t) {
    static const char *N[GGUF_VTYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return (t >= 0 && t < GGUF_VTYPE_COUNT) ? N[t] : "?";
}

/* Widen a packed scalar of type t at p into kv->v. */
static void load_scalar(g4_gguf_kv *kv, int t, const void *p) {
    switch (t) {
    case GGUF_UINT8:   { uint8_t x;  memcpy(&x, p, 1); kv->v.u = x; break; }
    case GGUF_INT8:    { int8_t x;   memcpy(&x, p, 1); kv->v.i = x; break; }
    case GGUF_UINT16:  { uint16_t x; memcpy(&x, p, 2); kv->v.u = x; break; }
    case GGUF_INT16:   { int16_t x;  memcpy(&x, p, 2); kv->v.i = x; break; }
    case GGUF_UINT32:  { uint32_t x; memcpy(&x, p, 4); kv->v.u = x; break; }
    case GGUF_INT32:   { int32_t x;  memcpy(&x, p, 4); kv->v.i = x; break; }
    case GGUF_UINT64:  { uint64_t x; memcpy(&x, p, 8); kv->v.u = x; break; }
    case GGUF_INT64:   { int64_t x;  memcpy(&x, p, 8); kv->v.i = x; break; }
    case GGUF_FLOAT32: { float x;    memcpy(&x, p, 4); kv->v.f = x; break; }
    case GGUF_FLOAT64: { double x;   memcpy(&x, p, 8); kv->v.f = x; break; }
    case GGUF_BOOL:    { uint8_t x;  memcpy(&x, p, 1); kv->v.b = x != 0; break; }
    }
}

static int is_signed(int t) {
    return t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64;
}
static int is_int(int t) {
    return t == GGUF_UINT8 || t == GGUF_UINT16 || t == GGUF_UINT32 || t == GGUF_UINT64 || is_signed(t);
}

static int parse_kv(cursor *c, g4_gguf_kv *kv, uint64_t idx) {
    g4_gguf_str key;
    char what[64];
    snprintf(what, sizeof what, "key of metadata entry %llu", (unsigned long long)idx);
    if (rd_str(c, &key, MAX_KEY_LEN, what)) return -1;
    if (key.len == 0 || memchr(key.ptr, 0, key.len))
        return g4_seterr(c->err, "%s: metadata entry %llu has an empty key or a key with a NUL byte",
                         c->name, (unsigned long long)idx);
    kv->key = dup_str(key);
    if (!kv->key) return g4_seterr(c->err, "out of memory");
    uint32_t t;
    if (rd_u32(c, &t, "metadata value type")) return -1;
    if (t >= GGUF_VTYPE_COUNT)
        return g4_seterr(c->err, "%s: metadata '%s' has unknown value type %u (expected 0..12)", c->name,
                         G4_ESC(kv->key), t);
    kv->type = (int)t;
    if (t == GGUF_STRING) return rd_str(c, &kv->str, c->size, kv->key);
    if (t != GGUF_ARRAY) {
        if (need(c, VSIZE[t], kv->key)) return -1;
        load_scalar(kv, (int)t, c->p + c->pos);
        c->pos += VSIZE[t];
        return 0;
    }
    uint32_t at;
    uint64_t n;
    if (rd_u32(c, &at, "array element type") || rd_u64(c, &n, "array length")) return -1;
    if (at >= GGUF_VTYPE_COUNT || at == GGUF_ARRAY)
        return g4_seterr(c->err, "%s: metadata array '%s' has unsupported element type %u", c->name,
                         G4_ESC(kv->key), at);
    kv->arr_type = (int)at;
    kv->arr_n = n;
    if (at == GGUF_STRING) {
        /* each element takes at least 8 bytes: bound n before allocating */
        if (n > (c->size - c->pos) / 8)
            return g4_seterr(c->err, "%s: metadata array '%s' claims %llu strings, more than the file holds",
                             c->name, G4_ESC(kv->key), (unsigned long long)n);
        /* checked here, walked in place later (no index: gguf.h) */
        size_t start = c->pos;
        for (uint64_t i = 0; i < n; i++) {
            g4_gguf_str s;
            if (rd_str(c, &s, c->size, kv->key)) return -1;
        }
        kv->arr_data = c->p + start;
        kv->arr_span = c->pos - start;
        return 0;
    }
    size_t es = VSIZE[at];
    if (n > (c->size - c->pos) / es)
        return g4_seterr(c->err, "%s: metadata array '%s' claims %llu elements, more than the file holds",
                         c->name, G4_ESC(kv->key), (unsigned long long)n);
    kv->arr_data = c->p + c->pos;
    c->pos += n * es;
    return 0;
}

static int parse_tensor(cursor *c, g4_gguf_tensor *t, uint64_t idx) {
    g4_gguf_str name;
    char what[64];
    snprintf(what, sizeof what, "name of tensor %llu", (unsigned long long)idx);
    if (rd_str(c, &name, MAX_NAME_LEN, what)) return -1;
    if (name.len == 0 || memchr(name.ptr, 0, name.len))
        return g4_seterr(c->err, "%s: tensor %llu has an empty name or a name with a NUL byte", c->name,
                         (unsigned long long)idx);
    t->name = dup_str(name);
    if (!t->name) return g4_seterr(c->err, "out of memory");
    uint32_t nd;
    if (rd_u32(c, &nd, "tensor n_dims")) return -1;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return g4_seterr(c->err, "%s: tensor '%s' has %u dimensions (expected 1..%d)", c->name, G4_ESC(t->name), nd,
                         GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    int64_t elems = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        if (rd_u64(c, &ne, "tensor dimension")) return -1;
        if (ne == 0 || ne > (uint64_t)MAX_DIM)
            return g4_seterr(c->err, "%s: tensor '%s' dimension %u is %llu (expected 1..2^40)", c->name,
                             G4_ESC(t->name), d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        if (elems > MAX_ELEMS / (int64_t)ne)
            return g4_seterr(c->err, "%s: tensor '%s' has too many elements", c->name, G4_ESC(t->name));
        elems *= (int64_t)ne;
    }
    uint32_t type;
    if (rd_u32(c, &type, "tensor type")) return -1;
    const g4_type_traits *tr = g4_type_info((int)type);
    if (!tr)
        return g4_seterr(c->err, "%s: tensor '%s' has unknown type id %u", c->name, G4_ESC(t->name), type);
    t->type = (int)type;
    if (t->ne[0] % tr->blck_size)
        return g4_seterr(c->err, "%s: tensor '%s' row length %lld is not a multiple of the %s block size %lld",
                         c->name, G4_ESC(t->name), (long long)t->ne[0], tr->name, (long long)tr->blck_size);
    size_t row = g4_row_size(t->type, t->ne[0]);
    uint64_t rows = (uint64_t)(elems / t->ne[0]);
    if (row == 0 || rows > (UINT64_MAX / 4) / row)
        return g4_seterr(c->err, "%s: tensor '%s' byte size overflows", c->name, G4_ESC(t->name));
    t->nbytes = (size_t)(row * rows);
    if (rd_u64(c, &t->offset, "tensor offset")) return -1;
    return 0;
}

static void free_contents(g4_gguf_file *f) {
    for (uint64_t i = 0; i < f->n_kv; i++) {
        free(f->kv[i].key);
        free(f->kv[i].arr_str);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    for (size_t i = 0; i < f->n_owned; i++) free(f->owned[i]);
    free(f->owned);
}

void g4_gguf_close(g4_gguf_file *f) {
    if (!f) return;
    free_contents(f);
    if (f->extra_free) f->extra_free(f->extra);
    if (f->map) munmap(f->map, f->map_size);
    free(f->path);
    free(f);
}

/* Tensor names must be unique and data ranges must not overlap. Both checks
 * sort (O(n log n)) so a hostile file with many tensors stays cheap. */
static int cmp_off(const void *a, const void *b) {
    const g4_gguf_tensor *x = *(const g4_gguf_tensor *const *)a, *y = *(const g4_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}
static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const g4_gguf_tensor *const *)a)->name, (*(const g4_gguf_tensor *const *)b)->name);
}
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
static int check_unique_keys(g4_gguf_file *f, g4_error *err) {
    uint64_t n = f->n_kv;
    if (n < 2) return 0;
    const char **k = malloc(n * sizeof *k);
    if (!k) return g4_seterr(err, "out of memory");
    for (uint64_t i = 0; i < n; i++) k[i] = f->kv[i].key;
    qsort(k, n, sizeof *k, cmp_str);
    int rc = 0;
    for (uint64_t i = 1; i < n && !rc; i++)
        if (!strcmp(k[i - 1], k[i]))
            rc = g4_seterr(err, "%s: duplicate metadata key '%s'", f->path, G4_ESC(k[i]));
    free(k);
    return rc;
}
static int check_unique_and_disjoint(g4_gguf_file *f, g4_error *err) {
    uint64_t n = f->n_tensors;
    if (n < 2) return 0;
    g4_gguf_tensor **ix = malloc(n * sizeof *ix);
    if (!ix) return g4_seterr(err, "out of memory");
    for (uint64_t i = 0; i < n; i++) ix[i] = &f->tensors[i];
    int rc = 0;
    qsort(ix, n, sizeof *ix, cmp_off);
    for (uint64_t i = 1; i < n && !rc; i++)
        if (ix[i - 1]->offset + ix[i - 1]->nbytes > ix[i]->offset)
            rc = g4_seterr(err, "%s: tensors '%s' and '%s' overlap in the data section", f->path,
                           G4_ESC(ix[i - 1]->name), G4_ESC(ix[i]->name));
    qsort(ix, n, sizeof *ix, cmp_name);
    for (uint64_t i = 1; i < n && !rc; i++)
        if (!strcmp(ix[i - 1]->name, ix[i]->name))
            rc = g4_seterr(err, "%s: duplicate tensor name '%s'", f->path, G4_ESC(ix[i]->name));
    free(ix);
    return rc;
}

g4_gguf_file *g4_gguf_parse(const void *buf, size_t size, const char *name, g4_error *err) {
    if (!name) name = "<memory>";
    cursor c = { .p = buf, .pos = 0, .size = size, .err = err, .name = name };
    g4_gguf_file *f = calloc(1, sizeof *f);
    if (!f) { g4_seterr(err, "out of memory"); return NULL; }
    f->path = strdup(name);
    char magic[4];
    if (rd(&c, magic, 4, "magic")) goto fail;
    if (memcmp(magic, "GGUF", 4)) {
        g4_seterr(err, "%s: not a GGUF file (magic bytes are not \"GGUF\")", name);
        goto fail;
    }
    if (rd_u32(&c, &f->version, "version")) goto fail;
    if (f->version != 2 && f->version != 3) {
        g4_seterr(err, "%s: unsupported GGUF version %u (expected 2 or 3)", name, f->version);
        goto fail;
    }
    uint64_t n_tensors, n_kv;
    if (rd_u64(&c, &n_tensors, "tensor count") || rd_u64(&c, &n_kv, "metadata count")) goto fail;
    /* a kv takes >= 13 bytes, a tensor info >= 25: bound the counts by the size */
    if (n_kv > size / 13) {
        g4_seterr(err, "%s: metadata count %llu is larger than the file could hold", name,
                  (unsigned long long)n_kv);
        goto fail;
    }
    if (n_tensors > size / 25) {
        g4_seterr(err, "%s: tensor count %llu is larger than the file could hold", name,
                  (unsigned long long)n_tensors);
        goto fail;
    }
    f->kv = calloc(n_kv ? n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) { g4_seterr(err, "out of memory"); goto fail; }
    for (uint64_t i = 0; i < n_kv; i++) {
        f->n_kv = i + 1;
        if (parse_kv(&c, &f->kv[i], i)) goto fail;
    }
    if (check_unique_keys(f, err)) goto fail;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const g4_gguf_kv *al = g4_gguf_find_kv(f, "general.alignment");
    if (al) {
        if (!is_int(al->type) || al->v.u == 0 || al->v.u > (1u << 20) || (al->v.u & (al->v.u - 1))) {
            g4_seterr(err, "%s: general.alignment must be a power-of-two integer up to 1 MiB", name);
            goto fail;
        }
        f->alignment = (uint32_t)al->v.u;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        f->n_tensors = i + 1;
        if (parse_tensor(&c, &f->tensors[i], i)) goto fail;
    }
    uint64_t data = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (data > size && n_tensors > 0) {
        g4_seterr(err, "%s: truncated file: tensor data section would start at %llu, past the end (%zu)", name,
                  (unsigned long long)data, size);
        goto fail;
    }
    f->data_offset = data;
    uint64_t avail = data <= size ? size - data : 0;
    /* tensor ranges: inside the data section, aligned, not overlapping */
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        g4_gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment) {
            g4_seterr(err, "%s: tensor '%s' offset %llu is not a multiple of the alignment %u", name, G4_ESC(t->name),
                      (unsigned long long)t->offset, f->alignment);
            goto fail;
        }
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            g4_seterr(err, "%s: tensor '%s' data [%llu, +%zu) lies outside the file (data section holds %llu bytes)",
                      name, G4_ESC(t->name), (unsigned long long)t->offset, t->nbytes, (unsigned long long)avail);
            goto fail;
        }
        t->data = (const uint8_t *)buf + data + t->offset;
    }
    if (check_unique_and_disjoint(f, err)) goto fail;
    return f;
fail:
    g4_gguf_close(f);
    return NULL;
}

g4_gguf_file *g4_gguf_open(const char *path, g4_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        g4_seterr(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        g4_seterr(err, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    if (size < 24) {
        close(fd);
        g4_seterr(err, "%s: file is %zu bytes, too small to be a GGUF file", path, size);
        return NULL;
    }
    void *map = g4_map_file(fd, size);
    close(fd);
    if (!map) {
        g4_seterr(err, "%s: mmap failed: %s", path, strerror(errno));
        return NULL;
    }
    g4_gguf_file *f = g4_gguf_parse(map, size, path, err);
    if (!f) {
        munmap(map, size);
        return NULL;
    }
    f->map = map;
    f->map_size = size;
    return f;
}

const g4_gguf_kv *g4_gguf_find_kv(const g4_gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const g4_gguf_tensor *g4_gguf_find_tensor(const g4_gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static int get_int(const g4_gguf_file *f, const char *key, int64_t lo, uint64_t hi, uint64_t *out_u,
                   int64_t *out_i, g4_error *err) {
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, key);
    if (!kv) return 1;
    if (!is_int(kv->type))
        return g4_seterr(err, "%s: metadata '%s' is %s, expected an integer", f->path, G4_ESC(key),
                         g4_gguf_vtype_name(kv->type));
    if (is_signed(kv->type)) {
        if (kv->v.i < lo || (kv->v.i > 0 && (uint64_t)kv->v.i > hi))
            return g4_seterr(err, "%s: metadata '%s' = %lld is out of range", f->path, G4_ESC(key), (long long)kv->v.i);
        if (out_i) *out_i = kv->v.i;
        if (out_u) *out_u = (uint64_t)kv->v.i;
    } else {
        if (kv->v.u > hi)
            return g4_seterr(err, "%s: metadata '%s' = %llu is out of range", f->path, G4_ESC(key),
                             (unsigned long long)kv->v.u);
        if (out_i) *out_i = (int64_t)kv->v.u;
        if (out_u) *out_u = kv->v.u;
    }
    return 0;
}

int g4_gguf_get_u32(const g4_gguf_file *f, const char *key, uint32_t *out, g4_error *err) {
    uint64_t u;
    int r = get_int(f, key, 0, UINT32_MAX, &u, NULL, err);
    if (r == 0) *out = (uint32_t)u;
    return r;
}

int g4_gguf_get_i64(const g4_gguf_file *f, const char *key, int64_t *out, g4_error *err) {
    return get_int(f, key, INT64_MIN, INT64_MAX, NULL, out, err);
}

int g4_gguf_get_f32(const g4_gguf_file *f, const char *key, float *out, g4_error *err) {
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, key);
    if (!kv) return 1;
    if (kv->type == GGUF_FLOAT32 || kv->type == GGUF_FLOAT64) *out = (float)kv->v.f;
    else if (is_signed(kv->type)) *out = (float)kv->v.i;
    else if (is_int(kv->type)) *out = (float)kv->v.u;
    else
        return g4_seterr(err, "%s: metadata '%s' is %s, expected a number", f->path, G4_ESC(key),
                         g4_gguf_vtype_name(kv->type));
    return 0;
}

int g4_gguf_get_bool(const g4_gguf_file *f, const char *key, bool *out, g4_error *err) {
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, key);
    if (!kv) return 1;
    if (kv->type == GGUF_BOOL) *out = kv->v.b;
    else if (is_int(kv->type)) *out = kv->v.u != 0;
    else
        return g4_seterr(err, "%s: metadata '%s' is %s, expected a bool", f->path, G4_ESC(key), g4_gguf_vtype_name(kv->type));
    return 0;
}

int g4_gguf_get_str(const g4_gguf_file *f, const char *key, char **out, g4_error *err) {
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, key);
    if (!kv) return 1;
    if (kv->type != GGUF_STRING)
        return g4_seterr(err, "%s: metadata '%s' is %s, expected a string", f->path, G4_ESC(key),
                         g4_gguf_vtype_name(kv->type));
    if (memchr(kv->str.ptr, 0, kv->str.len))
        return g4_seterr(err, "%s: metadata '%s' contains a NUL byte", f->path, G4_ESC(key));
    *out = dup_str(kv->str);
    if (!*out) return g4_seterr(err, "out of memory");
    return 0;
}

int64_t g4_gguf_arr_i64(const g4_gguf_kv *kv, uint64_t i) {
    if (kv->type != GGUF_ARRAY || i >= kv->arr_n || kv->arr_type == GGUF_STRING) return 0;
    g4_gguf_kv tmp = { 0 };
    const uint8_t *p = (const uint8_t *)kv->arr_data + i * VSIZE[kv->arr_type];
    load_scalar(&tmp, kv->arr_type, p);
    if (kv->arr_type == GGUF_FLOAT32 || kv->arr_type == GGUF_FLOAT64) return (int64_t)tmp.v.f;
    if (kv->arr_type == GGUF_BOOL) return tmp.v.b;
    if (is_signed(kv->arr_type)) return tmp.v.i;
    return (int64_t)tmp.v.u;
}

double g4_gguf_arr_f64(const g4_gguf_kv *kv, uint64_t i) {
    if (kv->type != GGUF_ARRAY || i >= kv->arr_n || kv->arr_type == GGUF_STRING) return 0;
    g4_gguf_kv tmp = { 0 };
    const uint8_t *p = (const uint8_t *)kv->arr_data + i * VSIZE[kv->arr_type];
    load_scalar(&tmp, kv->arr_type, p);
    if (kv->arr_type == GGUF_FLOAT32 || kv->arr_type == GGUF_FLOAT64) return tmp.v.f;
    if (kv->arr_type == GGUF_BOOL) return tmp.v.b;
    if (is_signed(kv->arr_type)) return (double)tmp.v.i;
    return (double)tmp.v.u;
}

/* ---- in-memory builder -------------------------------------------------- */

g4_gguf_file *g4_gguf_new(const char *name) {
    g4_gguf_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->path = strdup(name ? name : "<memory>");
    f->version = 3;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!f->path) { free(f); return NULL; }
    return f;
}

void *g4_gguf_own(g4_gguf_file *f, void *p) {
    if (!p) return NULL;
    if (f->n_owned == f->cap_owned) {
        size_t cap = f->cap_owned ? f->cap_owned * 2 : 64;
        void **o = realloc(f->owned, cap * sizeof *o);
        if (!o) { free(p); return NULL; }
        f->owned = o;
        f->cap_owned = cap;
    }
    f->owned[f->n_owned++] = p;
    return p;
}

/* Find or append the slot for key. Replacing keeps the position (GGUF key
 * order is part of what a converter must reproduce). */
static g4_gguf_kv *slot(g4_gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, key)) {
            g4_gguf_kv *kv = &f->kv[i];
            char *k = kv->key;
            free(kv->arr_str);
            memset(kv, 0, sizeof *kv);
            kv->key = k;
            return kv;
        }
    /* grow by doubling: n_kv is small but avoid quadratic reallocs anyway */
    uint64_t n = f->n_kv;
    if ((n & (n - 1)) == 0) {
        g4_gguf_kv *kv = realloc(f->kv, (n ? 2 * n : 8) * sizeof *kv);
        if (!kv) return NULL;
        f->kv = kv;
    }
    g4_gguf_kv *kv = &f->kv[n];
    memset(kv, 0, sizeof *kv);
    kv->key = strdup(key);
    if (!kv->key) return NULL;
    f->n_kv = n + 1;
    return kv;
}

int g4_gguf_set_u32(g4_gguf_file *f, const char *key, uint32_t v) {
    g4_gguf_kv *kv = slot(f, key);
    if (!kv) return -1;
    kv->type = GGUF_UINT32;
    kv->v.u = v;
    return 0;
}

int g4_gguf_set_i32(g4_gguf_file *f, const char *key, int32_t v) {
    g4_gguf_kv *kv = slot(f, key);
    if (!kv) return -1;
    kv->type = GGUF_INT32;
    kv->v.i = v;
    return 0;
}

int g4_gguf_set_f32(g4_gguf_file *f, const char *key, float v) {
    g4_gguf_kv *kv = slot(f, key);
    if (!kv) return -1;
    kv->type = GGUF_FLOAT32;
    kv->v.f = v;
    return 0;
}

int g4_gguf_set_bool(g4_gguf_file *f, const char *key, bool v) {
    g4_gguf_kv *kv = slot(f, key);
    if (!kv) return -1;
    kv->type = GGUF_BOOL;
    kv->v.b = v;
    return 0;
}

int g4_gguf_set_str(g4_gguf_file *f, const char *key, const char *v) {
    char *copy = g4_gguf_own(f, strdup(v));
    if (!copy) return -1;
    g4_gguf_kv *kv = slot(f, key);
    if (!kv) return -1;
    kv->type = GGUF_STRING;
    kv->str.ptr = copy;
    kv->str.len = strlen(copy);
    return 0;
}

int g4_gguf_set_arr(g4_gguf_file *f, const char *key, int vtype, const void *data, uint64_t n) {
    size_t es = g4_gguf_vtype_size(vtype);
    if (!es || n > SIZE_MAX / es) return -1;
    void *copy = g4_gguf_own(f, malloc(n * es + 1));
    if (!copy) return -1;
    if (n) memcpy(copy, data, n * es);
    g4_gguf_kv *kv = slot(f, key);
    if (!kv) return -1;
    kv->type = GGUF_ARRAY;
    kv->arr_type = vtype;
    kv->arr_n = n;
    kv->arr_data = copy;
    return 0;
}

void g4_gguf_release_header(const g4_gguf_file *f) {
    long pg = sysconf(_SC_PAGESIZE);
    if (!f || !f->map || pg <= 0) return;
    size_t end = (size_t)(f->data_offset < f->map_size ? f->data_offset : f->map_size);
    end &= ~(size_t)(pg - 1);               /* the data's first page stays */
    if (end) (void)madvise(f->map, end, MADV_DONTNEED);
}

void g4_gguf_str_iter_init(g4_gguf_str_iter *it, const g4_gguf_kv *kv) {
    it->kv = kv;
    it->i = it->pos = 0;
}

int g4_gguf_str_iter_next(g4_gguf_str_iter *it, g4_gguf_str *out) {
    const g4_gguf_kv *kv = it->kv;
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || it->i >= kv->arr_n) return 0;
    if (kv->arr_str) {
        *out = kv->arr_str[it->i++];
        return 1;
    }
    const unsigned char *p = kv->arr_data;
    uint64_t len;
    if (!p || kv->arr_span - it->pos < 8) return -1;
    memcpy(&len, p + it->pos, 8);
    if (len > kv->arr_span - it->pos - 8) return -1;
    out->len = len;
    out->ptr = (const char *)p + it->pos + 8;
    it->pos += 8 + len;
    it->i++;
    return 1;
}

int g4_gguf_set_arr_str(g4_gguf_file *f, const char *key, const char *const *v, uint64_t n) {
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += strlen(v[i]);
    char *pool = g4_gguf_own(f, malloc(total + 1));
    g4_gguf_str *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!pool || !idx) { free(idx); return -1; }
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t l = strlen(v[i]);
        memcpy(pool + off, v[i], l);
        idx[i].ptr = pool + off;
        idx[i].len = l;
        off += l;
    }
    g4_gguf_kv *kv = slot(f, key);
    if (!kv) { free(idx); return -1; }
    kv->type = GGUF_ARRAY;
    kv->arr_type = GGUF_STRING;
    kv->arr_n = n;
    kv->arr_str = idx;
    return 0;
}

g4_gguf_tensor *g4_gguf_add_tensor(g4_gguf_file *f, const char *name, int type, int n_dims, const int64_t *ne,
                             const void *data, g4_error *err) {
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) {
        g4_seterr(err, "tensor '%s': %d dimensions (expected 1..4)", G4_ESC(name), n_dims);
        return NULL;
    }
    if (g4_gguf_find_tensor(f, name)) {
        g4_seterr(err, "duplicate tensor name '%s'", G4_ESC(name));
        return NULL;
    }
    const g4_type_traits *tr = g4_type_info(type);
    if (!tr) {
        g4_seterr(err, "tensor '%s': unknown type %d", G4_ESC(name), type);
        return NULL;
    }
    int64_t rows = 1;
    for (int d = 1; d < n_dims; d++) {
        if (ne[d] < 1 || ne[d] > MAX_DIM || rows > MAX_ELEMS / ne[d]) {
            g4_seterr(err, "tensor '%s': bad dimension %d", G4_ESC(name), d);
            return NULL;
        }
        rows *= ne[d];
    }
    size_t row = g4_row_size(type, ne[0]);
    if (ne[0] < 1 || row == 0 || (uint64_t)rows > (UINT64_MAX / 4) / row) {
        g4_seterr(err, "tensor '%s': row of %lld elements does not fit type %s", G4_ESC(name), (long long)ne[0], tr->name);
        return NULL;
    }
    uint64_t n = f->n_tensors;
    if ((n & (n - 1)) == 0) {
        g4_gguf_tensor *t = realloc(f->tensors, (n ? 2 * n : 8) * sizeof *t);
        if (!t) { g4_seterr(err, "out of memory"); return NULL; }
        f->tensors = t;
    }
    g4_gguf_tensor *t = &f->tensors[n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) { g4_seterr(err, "out of memory"); return NULL; }
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = row * (size_t)rows;
    t->data = data;
    f->n_tensors = n + 1;
    return t;
}
