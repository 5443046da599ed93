/* Safetensors reader (see safetensors.h). */
#include "format/safetensors.h"

#include "format/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/types.h"
#include "util/esc.h"

/* Largest dimension we accept; 2^40 elements is far beyond any real tensor
 * and keeps products of a few dims from overflowing before the range check. */
#define ST_MAX_DIM ((int64_t)1 << 40)

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

int64_t g4_st_nelements(const g4_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

static int dtype_of(const char *s, int *type, size_t *esize) {
    if (!strcmp(s, "F32")) { *type = G4_F32; *esize = 4; return 0; }
    if (!strcmp(s, "F16")) { *type = G4_F16; *esize = 2; return 0; }
    if (!strcmp(s, "BF16")) { *type = G4_BF16; *esize = 2; return 0; }
    return -1;
}

void g4_st_close(g4_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    free(f);
}

static int cmp_begin(const void *a, const void *b) {
    const g4_st_tensor *x = *(const g4_st_tensor *const *)a, *y = *(const g4_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Parse one tensor entry; returns 0 or -1 with err set. */
static int parse_entry(const char *name, json_t *v, uint64_t data_size, g4_st_tensor *t,
                       g4_error *err) {
    if (!json_is_object(v)) return g4_seterr(err, "tensor '%s': entry is not an object", G4_ESC(name));
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return g4_seterr(err, "tensor '%s': missing or non-string \"dtype\"", G4_ESC(name));
    size_t esize;
    if (dtype_of(json_string_value(dt), &t->type, &esize))
        return g4_seterr(err, "tensor '%s': unsupported dtype \"%s\" (supported: F32, F16, BF16)",
                         G4_ESC(name), G4_ESC(json_string_value(dt)));
    if (!json_is_array(sh)) return g4_seterr(err, "tensor '%s': missing or non-array \"shape\"", G4_ESC(name));
    size_t nd = json_array_size(sh);
    if (nd > ST_MAX_DIMS)
        return g4_seterr(err, "tensor '%s': shape has %zu dims (max %d)", G4_ESC(name), nd, ST_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t nel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(sh, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > ST_MAX_DIM)
            return g4_seterr(err, "tensor '%s': shape[%zu] is not an integer in [0, 2^40]", G4_ESC(name), i);
        t->shape[i] = (int64_t)json_integer_value(d);
        if (t->shape[i] != 0 && nel > UINT64_MAX / 8 / (uint64_t)t->shape[i])
            return g4_seterr(err, "tensor '%s': shape too large (element count overflows)", G4_ESC(name));
        nel *= (uint64_t)t->shape[i];
    }
    if (!json_is_array(off) || json_array_size(off) != 2)
        return g4_seterr(err, "tensor '%s': \"data_offsets\" must be an array [begin, end]", G4_ESC(name));
    json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b))
        return g4_seterr(err, "tensor '%s': \"data_offsets\" must be integers with 0 <= begin <= end", G4_ESC(name));
    t->begin = (uint64_t)json_integer_value(b);
    t->end = (uint64_t)json_integer_value(e);
    if (t->end > data_size)
        return g4_seterr(err, "tensor '%s': data_offsets [%llu, %llu) outside the data section (%llu bytes)",
                         G4_ESC(name), (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)data_size);
    if (t->end - t->begin != nel * esize)
        return g4_seterr(err, "tensor '%s': %llu bytes in data_offsets but dtype %s and shape need %llu",
                         G4_ESC(name), (unsigned long long)(t->end - t->begin), G4_ESC(json_string_value(dt)),
                         (unsigned long long)(nel * esize));
    return 0;
}

g4_st_file *g4_st_parse(const void *buf, size_t size, const char *name, g4_error *err) {
    const uint8_t *p = buf;
    if (!name) name = "<memory>";
    if (size < 8) { g4_seterr(err, "%s: file too short for a safetensors header (%zu bytes)", name, size); return NULL; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > ST_MAX_HEADER) {
        g4_seterr(err, "%s: header length %llu exceeds the %u-byte limit", name,
                  (unsigned long long)hlen, ST_MAX_HEADER);
        return NULL;
    }
    if (hlen < 2 || hlen > size - 8) {
        g4_seterr(err, "%s: header length %llu does not fit in the file (%zu bytes)", name,
                  (unsigned long long)hlen, size);
        return NULL;
    }
    g4_st_file *f = calloc(1, sizeof *f);
    if (!f) { g4_seterr(err, "%s: out of memory", name); return NULL; }
    f->buf = p;
    f->size = size;
    f->path = xstrdup(name);
    json_error_t je;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        g4_seterr(err, "%s: header JSON is invalid at byte %d: %s", name, je.position, G4_ESC(je.text));
        goto fail_nojson;
    }
    if (!json_is_object(root)) { g4_seterr(err, "%s: header JSON is not an object", name); goto fail; }
    uint64_t data_size = size - 8 - hlen;
    const uint8_t *data = p + 8 + hlen;
    size_t cap = json_object_size(root);
    f->t = calloc(cap ? cap : 1, sizeof *f->t);
    if (!f->t || !f->path) { g4_seterr(err, "%s: out of memory", name); goto fail; }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v) && !json_is_null(v)) {
                g4_seterr(err, "%s: \"__metadata__\" is not an object", name);
                goto fail;
            }
            continue;
        }
        if (!*key) { g4_seterr(err, "%s: empty tensor name", name); goto fail; }
        g4_st_tensor *t = &f->t[f->n];
        if (parse_entry(key, v, data_size, t, err)) { g4_preferr(err, "%s", name); goto fail; }
        t->name = xstrdup(key);
        if (!t->name) { g4_seterr(err, "%s: out of memory", name); goto fail; }
        t->data = data + t->begin;
        t->file = f;
        f->n++;
    }
    /* Overlap check: sort by begin and compare neighbours (empty tensors
     * occupy no bytes and may share an offset). */
    if (f->n > 1) {
        g4_st_tensor **ord = malloc(f->n * sizeof *ord);
        if (!ord) { g4_seterr(err, "%s: out of memory", name); goto fail; }
        for (size_t i = 0; i < f->n; i++) ord[i] = &f->t[i];
        qsort(ord, f->n, sizeof *ord, cmp_begin);
        const g4_st_tensor *prev = NULL;
        for (size_t i = 0; i < f->n; i++) {
            if (ord[i]->begin == ord[i]->end) continue;
            if (prev && ord[i]->begin < prev->end) {
                g4_seterr(err, "%s: tensors '%s' and '%s' have overlapping data ranges", name,
                          G4_ESC(prev->name), G4_ESC(ord[i]->name));
                free(ord);
                goto fail;
            }
            prev = ord[i];
        }
        free(ord);
    }
    json_decref(root);
    return f;
fail:
    json_decref(root);
fail_nojson:
    g4_st_close(f);
    return NULL;
}

g4_st_file *g4_st_open(const char *path, g4_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { g4_seterr(err, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        g4_seterr(err, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (sb.st_size < 8) {
        g4_seterr(err, "%s: file too short for a safetensors header (%lld bytes)", path, (long long)sb.st_size);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    void *m = g4_map_file(fd, size);
    close(fd);
    if (!m) { g4_seterr(err, "%s: mmap failed: %s", path, strerror(errno)); return NULL; }
    g4_st_file *f = g4_st_parse(m, size, path, err);
    if (!f) { munmap(m, size); return NULL; }
    f->map = m;
    return f;
}

/* --- sets (single file or shards) -------------------------------------- */

void g4_st_set_close(g4_st_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) g4_st_close(s->files[i]);
    free(s->files);
    free(s->all);
    free(s);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const g4_st_tensor *const *)a)->name, (*(const g4_st_tensor *const *)b)->name);
}

const g4_st_tensor *g4_st_find(const g4_st_set *s, const char *name) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->all[mid]->name, name);
        if (!c) return s->all[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* Collect all tensors of the opened files, sorted; duplicates are an error. */
static int set_finish(g4_st_set *s, g4_error *err) {
    size_t n = 0;
    for (size_t i = 0; i < s->n_files; i++) n += s->files[i]->n;
    s->all = malloc((n ? n : 1) * sizeof *s->all);
    if (!s->all) return g4_seterr(err, "out of memory");
    for (size_t i = 0; i < s->n_files; i++)
        for (size_t j = 0; j < s->files[i]->n; j++) s->all[s->n++] = &s->files[i]->t[j];
    qsort(s->all, s->n, sizeof *s->all, cmp_name);
    for (size_t i = 1; i < s->n; i++)
        if (!strcmp(s->all[i]->name, s->all[i - 1]->name))
            return g4_seterr(err, "tensor '%s' is stored twice (%s and %s)", G4_ESC(s->all[i]->name),
                             s->all[i - 1]->file->path, s->all[i]->file->path);
    return 0;
}

static int add_file(g4_st_set *s, g4_st_file *f) {
    g4_st_file **nf = realloc(s->files, (s->n_files + 1) * sizeof *nf);
    if (!nf) return -1;
    s->files = nf;
    s->files[s->n_files++] = f;
    return 0;
}

/* A shard file name from the index: plain file name, no directories, and
 * nothing that would need escaping when a message quotes it (the shard
 * names end up in file paths, which messages print as they are). */
static bool shard_name_ok(const char *s) {
    if (!*s || strlen(s) > 255 || !strcmp(s, ".") || !strcmp(s, "..")) return false;
    char esc[512];
    return strchr(s, '/') == NULL && !strcmp(g4_esc(esc, sizeof esc, s, SIZE_MAX), s);
}

g4_st_set *g4_st_open_index(const char *dir, const char *json, size_t len, g4_error *err) {
    const char *iname = "model.safetensors.index.json";
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        g4_seterr(err, "%s/%s: invalid JSON at line %d: %s", dir, iname, je.line, G4_ESC(je.text));
        return NULL;
    }
    g4_st_set *s = calloc(1, sizeof *s);
    char **names = NULL;
    size_t n_names = 0;
    if (!s) { g4_seterr(err, "out of memory"); goto fail; }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm) || json_object_size(wm) == 0) {
        g4_seterr(err, "%s/%s: missing or empty \"weight_map\" object", dir, iname);
        goto fail;
    }
    /* Distinct shard names, in first-seen order. */
    names = calloc(json_object_size(wm), sizeof *names);
    if (!names) { g4_seterr(err, "out of memory"); goto fail; }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            g4_seterr(err, "%s/%s: weight_map[\"%s\"] is not a plain file name", dir, iname, G4_ESC(key));
            goto fail;
        }
        const char *fn = json_string_value(v);
        size_t i;
        for (i = 0; i < n_names; i++) if (!strcmp(names[i], fn)) break;
        if (i == n_names) names[n_names++] = (char *)fn;
    }
    for (size_t i = 0; i < n_names; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) {
            g4_seterr(err, "%s: path too long", dir);
            goto fail;
        }
        g4_st_file *f = g4_st_open(path, err);
        if (!f) { g4_preferr(err, "%s (listed in %s)", names[i], iname); goto fail; }
        if (add_file(s, f)) { g4_st_close(f); g4_seterr(err, "out of memory"); goto fail; }
    }
    if (set_finish(s, err)) { g4_preferr(err, "%s", dir); goto fail; }
    /* Every indexed name must be in the shard the index names, and every
     * stored tensor must be indexed. */
    json_object_foreach(wm, key, v) {
        const g4_st_tensor *t = g4_st_find(s, key);
        if (!t) {
            g4_seterr(err, "%s/%s: tensor '%s' is listed for %s but not stored there", dir, iname,
                      G4_ESC(key), json_string_value(v));
            goto fail;
        }
        const char *base = strrchr(t->file->path, '/');
        base = base ? base + 1 : t->file->path;
        if (strcmp(base, json_string_value(v))) {
            g4_seterr(err, "%s/%s: tensor '%s' is listed for %s but stored in %s", dir, iname, G4_ESC(key),
                      json_string_value(v), base);
            goto fail;
        }
    }
    if (s->n != json_object_size(wm)) {
        for (size_t i = 0; i < s->n; i++)
            if (!json_object_get(wm, s->all[i]->name)) {
                g4_seterr(err, "%s/%s: tensor '%s' stored in %s is missing from weight_map", dir,
                          iname, G4_ESC(s->all[i]->name), s->all[i]->file->path);
                goto fail;
            }
    }
    free(names);
    json_decref(root);
    return s;
fail:
    free(names);
    json_decref(root);
    g4_st_set_close(s);
    return NULL;
}

g4_st_set *g4_st_open_dir(const char *dir, g4_error *err) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir) >= (int)sizeof path) {
        g4_seterr(err, "%s: path too long", dir);
        return NULL;
    }
    FILE *fp = fopen(path, "rb");
    if (fp) {
        /* Index files are small (a line per tensor); cap at 64 MiB. */
        char *buf = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
            if (len + 65536 > cap) {
                cap = cap ? cap * 2 : 65536 * 2;
                if (cap > (64u << 20)) {
                    free(buf);
                    fclose(fp);
                    g4_seterr(err, "%s: index file larger than 64 MiB", path);
                    return NULL;
                }
                char *nb = realloc(buf, cap);
                if (!nb) { free(buf); fclose(fp); g4_seterr(err, "out of memory"); return NULL; }
                buf = nb;
            }
            size_t r = fread(buf + len, 1, cap - len, fp);
            len += r;
            if (r == 0) break;
        }
        bool bad = ferror(fp);
        fclose(fp);
        if (bad) { free(buf); g4_seterr(err, "%s: read error", path); return NULL; }
        g4_st_set *s = g4_st_open_index(dir, buf, len, err);
        free(buf);
        return s;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK)) {
        g4_seterr(err, "%s: no model.safetensors or model.safetensors.index.json", dir);
        return NULL;
    }
    g4_st_set *s = calloc(1, sizeof *s);
    if (!s) { g4_seterr(err, "out of memory"); return NULL; }
    g4_st_file *f = g4_st_open(path, err);
    if (!f || add_file(s, f)) {
        if (f) { g4_st_close(f); g4_seterr(err, "out of memory"); }
        g4_st_set_close(s);
        return NULL;
    }
    if (set_finish(s, err)) { g4_preferr(err, "%s", path); g4_st_set_close(s); return NULL; }
    return s;
}
