/* GGUF v3 writer: header in memory, tensor data streamed chunk by chunk into a
 * temporary file that is renamed over the destination at the end. */
#include "format/gguf_write.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tensor/types.h"

/* --- growable byte buffer for the header -------------------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} wbuf;

static void put(wbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u32(wbuf *b, uint32_t v) { put(b, &v, 4); }  /* little-endian host (x86/arm) */
static void put_u64(wbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(wbuf *b, const char *s, uint64_t n) { put_u64(b, n); put(b, s, n); }

static int put_scalar(wbuf *b, const g4_gguf_kv *kv) {
    switch (kv->type) {
    case GGUF_UINT8:   { uint8_t x = (uint8_t)kv->v.u;   put(b, &x, 1); break; }
    case GGUF_INT8:    { int8_t x = (int8_t)kv->v.i;     put(b, &x, 1); break; }
    case GGUF_UINT16:  { uint16_t x = (uint16_t)kv->v.u; put(b, &x, 2); break; }
    case GGUF_INT16:   { int16_t x = (int16_t)kv->v.i;   put(b, &x, 2); break; }
    case GGUF_UINT32:  { uint32_t x = (uint32_t)kv->v.u; put(b, &x, 4); break; }
    case GGUF_INT32:   { int32_t x = (int32_t)kv->v.i;   put(b, &x, 4); break; }
    case GGUF_UINT64:  { uint64_t x = kv->v.u;           put(b, &x, 8); break; }
    case GGUF_INT64:   { int64_t x = kv->v.i;            put(b, &x, 8); break; }
    case GGUF_FLOAT32: { float x = (float)kv->v.f;       put(b, &x, 4); break; }
    case GGUF_FLOAT64: { double x = kv->v.f;             put(b, &x, 8); break; }
    case GGUF_BOOL:    { uint8_t x = kv->v.b ? 1 : 0;    put(b, &x, 1); break; }
    default: return -1;
    }
    return 0;
}

static int put_kv(wbuf *b, const g4_gguf_kv *kv, g4_error *err) {
    put_str(b, kv->key, strlen(kv->key));
    put_u32(b, (uint32_t)kv->type);
    if (kv->type == GGUF_STRING) {
        put_str(b, kv->str.ptr, kv->str.len);
    } else if (kv->type == GGUF_ARRAY) {
        put_u32(b, (uint32_t)kv->arr_type);
        put_u64(b, kv->arr_n);
        if (kv->arr_type == GGUF_STRING) {
            g4_gguf_str_iter it;
            g4_gguf_str st;
            int r;
            g4_gguf_str_iter_init(&it, kv);
            while ((r = g4_gguf_str_iter_next(&it, &st)) == 1) put_str(b, st.ptr, st.len);
            if (r < 0 || it.i != kv->arr_n)
                return g4_seterr(err, "metadata '%s': string array changed under its mapping", kv->key);
        } else {
            size_t es = g4_gguf_vtype_size(kv->arr_type);
            if (!es || kv->arr_type == GGUF_ARRAY)
                return g4_seterr(err, "metadata '%s': bad array element type %d", kv->key, kv->arr_type);
            if (kv->arr_n > SIZE_MAX / es)
                return g4_seterr(err, "metadata '%s': array too large", kv->key);
            put(b, kv->arr_data, (size_t)kv->arr_n * es);
        }
    } else if (put_scalar(b, kv)) {
        return g4_seterr(err, "metadata '%s': bad value type %d", kv->key, kv->type);
    }
    return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static uint32_t alignment_of(const g4_gguf_file *f, const g4_gguf_write_opts *o) {
    const g4_gguf_kv *const *kvs = o && o->kvs ? o->kvs : NULL;
    uint64_t n = kvs ? o->n_kvs : f->n_kv;
    for (uint64_t i = 0; i < n; i++) {
        const g4_gguf_kv *kv = kvs ? kvs[i] : &f->kv[i];
        if (!strcmp(kv->key, "general.alignment") && kv->type == GGUF_UINT32 && kv->v.u &&
            kv->v.u <= (1u << 20) && !(kv->v.u & (kv->v.u - 1)))
            return (uint32_t)kv->v.u;
    }
    return GGUF_DEFAULT_ALIGNMENT;
}

/* Serialize the header (with trailing padding). */
static int build_header(const g4_gguf_file *f, const g4_gguf_write_opts *o, wbuf *b, uint64_t *data_total,
                        g4_error *err) {
    const g4_gguf_kv *const *kvs = o && o->kvs ? o->kvs : NULL;
    uint64_t n_kv = kvs ? o->n_kvs : f->n_kv;
    const g4_gguf_tensor *ts = o && o->tensors ? o->tensors : f->tensors;
    uint64_t n_t = o && o->tensors ? o->n_tensors : f->n_tensors;
    uint32_t al = alignment_of(f, o);
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, n_t);
    put_u64(b, n_kv);
    for (uint64_t i = 0; i < n_kv; i++)
        if (put_kv(b, kvs ? kvs[i] : &f->kv[i], err)) return -1;
    uint64_t off = 0;
    for (uint64_t i = 0; i < n_t; i++) {
        const g4_gguf_tensor *t = &ts[i];
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return g4_seterr(err, "tensor '%s': %d dims", t->name, t->n_dims);
        put_str(b, t->name, strlen(t->name));
        put_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(b, (uint64_t)t->ne[d]);
        put_u32(b, (uint32_t)t->type);
        put_u64(b, off);
        off = align_up(off + t->nbytes, al);
    }
    static const uint8_t zero[64];
    uint64_t pad = align_up(b->n, al) - b->n;
    while (pad) { size_t k = pad > 64 ? 64 : (size_t)pad; put(b, zero, k); pad -= k; }
    if (b->oom) return g4_seterr(err, "out of memory building the GGUF header");
    *data_total = off;
    return 0;
}

int g4_gguf_write_sizes(const g4_gguf_file *f, const g4_gguf_write_opts *o, uint64_t *header, uint64_t *total,
                     g4_error *err) {
    wbuf b = {0};
    uint64_t data = 0;
    int rc = build_header(f, o, &b, &data, err);
    if (!rc) {
        if (header) *header = b.n;
        if (total) *total = b.n + data;
    }
    free(b.p);
    return rc;
}

static int write_all(int fd, const void *p, size_t n, const char *path, g4_error *err) {
    const uint8_t *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return g4_seterr(err, "%s: write failed: %s", path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}


/* Output with early writeback: every 32 MiB we start writing the new range
 * to disk and wait for the previous one, then drop it from the page cache.
 * The disk stays busy from the start (instead of one long fsync at the end)
 * and a multi-GB output does not fill the page cache with dirty pages. */
typedef struct outf {
    int fd;
    const char *path;
    uint64_t pos, issued, waited;
} outf;

#define WB_STEP (32u << 20)

static int out_write(outf *o, const void *p, size_t n, g4_error *err) {
    if (write_all(o->fd, p, n, o->path, err)) return -1;
    o->pos += n;
    if (o->pos - o->issued >= WB_STEP) {
        sync_file_range(o->fd, (off_t)o->issued, (off_t)(o->pos - o->issued), SYNC_FILE_RANGE_WRITE);
        if (o->issued > o->waited) {
            sync_file_range(o->fd, (off_t)o->waited, (off_t)(o->issued - o->waited),
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
            posix_fadvise(o->fd, (off_t)o->waited, (off_t)(o->issued - o->waited), POSIX_FADV_DONTNEED);
            o->waited = o->issued;
        }
        o->issued = o->pos;
    }
    return 0;
}

/* Double-buffered sink: the caller fills one buffer (conversion, in the
 * caller's threads) while a background thread writes the other, so compute
 * and disk overlap. Data goes out strictly in order. */
typedef struct sink {
    outf *of;
    pthread_t th;
    bool threaded;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *buf[2];
    size_t cap, len[2];
    bool full[2], stop;
    int cur, rc;
    g4_error err;
} sink;

static void *sink_main(void *p) {
    sink *s = p;
    int w = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->full[w] && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
        if (!s->full[w]) break;  /* stop and nothing left */
        pthread_mutex_unlock(&s->mu);
        g4_error e;
        int rc = s->rc ? 0 : out_write(s->of, s->buf[w], s->len[w], &e);
        pthread_mutex_lock(&s->mu);
        if (rc && !s->rc) { s->rc = -1; s->err = e; }
        s->full[w] = false;
        s->len[w] = 0;
        w ^= 1;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int sink_init(sink *s, outf *of, size_t cap) {
    memset(s, 0, sizeof *s);
    s->of = of;
    s->cap = cap;
    s->buf[0] = malloc(cap);
    s->buf[1] = malloc(cap);
    if (!s->buf[0] || !s->buf[1]) { free(s->buf[0]); free(s->buf[1]); return -1; }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->threaded = pthread_create(&s->th, NULL, sink_main, s) == 0;
    return 0;
}

/* Hand the current buffer to the writer and switch to the other one. */
static void sink_submit(sink *s) {
    if (!s->len[s->cur]) return;
    if (!s->threaded) {
        g4_error e;
        if (!s->rc && out_write(s->of, s->buf[s->cur], s->len[s->cur], &e)) { s->rc = -1; s->err = e; }
        s->len[s->cur] = 0;
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->full[s->cur] = true;
    pthread_cond_broadcast(&s->cv);
    s->cur ^= 1;
    while (s->full[s->cur]) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* Room for n bytes (n <= cap) at the end of the current buffer. */
static uint8_t *sink_reserve(sink *s, size_t n) {
    if (s->len[s->cur] + n > s->cap) sink_submit(s);
    return s->rc ? NULL : s->buf[s->cur] + s->len[s->cur];
}

static int sink_put(sink *s, const void *p, size_t n) {
    const uint8_t *c = p;
    while (n) {
        size_t k = n < s->cap ? n : s->cap;
        uint8_t *d = sink_reserve(s, k);
        if (!d) return -1;
        memcpy(d, c, k);
        s->len[s->cur] += k;
        c += k;
        n -= k;
    }
    return 0;
}

/* Flush, stop the writer; returns the first write error (err filled). */
static int sink_finish(sink *s, g4_error *err) {
    sink_submit(s);
    if (s->threaded) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->buf[0]);
    free(s->buf[1]);
    if (s->rc && err) *err = s->err;
    return s->rc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct progress {
    g4_gguf_progress_fn fn;
    void *ud;
    double t0, last;
    uint64_t total;
} progress;

static void progress_show(progress *p, uint64_t done, bool final) {
    if (!p->fn) return;
    double t = now_s();
    if (!final && t - p->last < 0.25) return;
    p->last = t;
    p->fn(p->ud, done, p->total, t - p->t0, final);
}

/* Path of the temporary file being written, for g4_gguf_write_cleanup_tmp().
 * One write at a time per process is the front ends' use. */
static char g_tmp_path[4096];
static volatile sig_atomic_t g_tmp_set;

void g4_gguf_write_cleanup_tmp(void) {
    if (g_tmp_set) unlink(g_tmp_path);
}

static void tmp_register(const char *p) {
    size_t n = strlen(p);
    if (n >= sizeof g_tmp_path) return;
    g_tmp_set = 0;
    memcpy(g_tmp_path, p, n + 1);
    g_tmp_set = 1;
}

int g4_gguf_write_ex(const g4_gguf_file *f, const char *path, const g4_gguf_write_opts *o, g4_error *err) {
    g4_gguf_write_opts defo = {0};
    if (!o) o = &defo;
    const g4_gguf_tensor *ts = o->tensors ? o->tensors : f->tensors;
    uint64_t n_t = o->tensors ? o->n_tensors : f->n_tensors;
    uint32_t al = alignment_of(f, o);
    size_t chunk = o->chunk_bytes ? o->chunk_bytes : (32u << 20);

    if (!o->force && access(path, F_OK) == 0)
        return g4_seterr(err, "%s: already exists (use --force to overwrite)", path);

    wbuf hb = {0};
    uint64_t data_total = 0;
    if (build_header(f, o, &hb, &data_total, err)) { free(hb.p); return -1; }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) { free(hb.p); return g4_seterr(err, "out of memory"); }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", 12);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        g4_seterr(err, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
        free(tmp);
        free(hb.p);
        return -1;
    }
    fchmod(fd, 0644);
    tmp_register(tmp);
    outf of = { fd, tmp, 0, 0, 0 };
    /* buffers hold a whole chunk of rows plus the padding after a tensor;
     * a single row larger than a chunk gets a bigger buffer */
    size_t cap = chunk;
    for (uint64_t i = 0; i < n_t; i++) {
        size_t row = g4_row_size(ts[i].type, ts[i].ne[0]);
        if (row > cap) cap = row;
    }
    cap += al;
    sink sk;
    int rc = 0;
    if (sink_init(&sk, &of, cap)) {
        rc = g4_seterr(err, "out of memory");
        close(fd);
        unlink(tmp);
        free(tmp);
        free(hb.p);
        return rc;
    }
    bool sink_failed = false;
    rc = sink_put(&sk, hb.p, hb.n);
    sink_failed = rc != 0;
    free(hb.p);
    hb.p = NULL;

    progress pg = { .fn = o->progress_fn, .ud = o->progress_ud, .total = data_total };
    pg.t0 = pg.last = now_s();
    static const uint8_t zero[256] = {0};
    uint64_t done = 0;
    for (uint64_t i = 0; i < n_t && !rc; i++) {
        const g4_gguf_tensor *t = &ts[i];
        size_t row = g4_row_size(t->type, t->ne[0]);
        int64_t nrows = t->ne[1] * t->ne[2] * t->ne[3];
        if (!row || (uint64_t)row * (uint64_t)nrows != t->nbytes) {
            rc = g4_seterr(err, "tensor '%s': size %zu does not match its type and shape", t->name, t->nbytes);
            break;
        }
        if (t->data) {
            rc = sink_put(&sk, t->data, t->nbytes);
            sink_failed = rc != 0;
            done += t->nbytes;
            progress_show(&pg, done, false);
        } else {
            if (!o->fill) { rc = g4_seterr(err, "tensor '%s': no data", t->name); break; }
            int64_t rows_per = (int64_t)(chunk / row);
            if (rows_per < 1) rows_per = 1;
            for (int64_t r = 0; r < nrows && !rc; r += rows_per) {
                int64_t k = nrows - r < rows_per ? nrows - r : rows_per;
                uint8_t *d = sink_reserve(&sk, (size_t)k * row);
                if (!d) { rc = -1; sink_failed = true; break; }
                rc = o->fill(o->ud, i, r, k, d, err);
                if (!rc) sk.len[sk.cur] += (size_t)k * row;
                done += (uint64_t)k * row;
                progress_show(&pg, done, false);
            }
        }
        uint64_t pad = align_up(t->nbytes, al) - t->nbytes;
        if (pad && !rc) { rc = sink_put(&sk, zero, (size_t)pad); sink_failed = rc != 0; done += pad; }
    }
    {
        g4_error werr;
        /* a failed sink_put/sink_reserve means the writer failed: report its error */
        int wrc = sink_finish(&sk, &werr);
        if (wrc && (!rc || sink_failed)) { rc = -1; if (err) *err = werr; }
    }
    if (!rc && fsync(fd)) rc = g4_seterr(err, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) && !rc) rc = g4_seterr(err, "%s: close failed: %s", tmp, strerror(errno));
    if (!rc) {
        progress_show(&pg, done, true);
        if (o->force) {
            if (rename(tmp, path)) rc = g4_seterr(err, "%s: rename failed: %s", path, strerror(errno));
        } else {
            /* no-replace rename: an existing file appearing meanwhile is kept */
            if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE)) {
                if (errno == EEXIST)
                    rc = g4_seterr(err, "%s: already exists (use --force to overwrite)", path);
                else if (errno == EINVAL || errno == ENOSYS) {
                    if (access(path, F_OK) == 0)
                        rc = g4_seterr(err, "%s: already exists (use --force to overwrite)", path);
                    else if (rename(tmp, path))
                        rc = g4_seterr(err, "%s: rename failed: %s", path, strerror(errno));
                } else
                    rc = g4_seterr(err, "%s: rename failed: %s", path, strerror(errno));
            }
        }
    }
    if (rc) unlink(tmp);
    g_tmp_set = 0;
    free(tmp);
    return rc;
}

int g4_gguf_write(const g4_gguf_file *f, const char *path, g4_error *err) {
    g4_gguf_write_opts o = { .force = true };
    return g4_gguf_write_ex(f, path, &o, err);
}
