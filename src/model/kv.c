/* KV pool and sequences (kv.h). */
#include "model/kv.h"

#include <stdlib.h>
#include <string.h>

struct g4_kv_pool {
    const g4_model *m;
    int page, n_pages;         /* full layers */
    int ring_cap, n_seq;       /* sliding layers: one ring block per sequence */
    int n_batch, n_pos;
    int type;                  /* g4_kv_type asked for (a layer may fall back, g4_kv_type_for) */
    char **k, **v;             /* [n_cache] arenas */
    size_t *row;               /* [n_cache] bytes per position (n_kv_head rows of head_dim) */
    int *refs;                 /* [n_pages] sequences holding each page */
    int32_t *free_pages;       /* stack of free page ids */
    int n_free;
    unsigned char *ring_used;  /* [n_seq] */
    int32_t *ring_ids;         /* [n_seq]: 0, 1, ...: the one-entry page table of each ring */
    int n_alive;
};

static int n_cache(const g4_model *m) {
    int n = 0;
    for (int l = 0; l < m->n_layer; l++) n += m->layers[l].kv_slot >= 0;
    return n;
}

void g4_kv_pool_free(g4_kv_pool *p) {
    if (!p) return;
    int nc = n_cache(p->m);
    for (int i = 0; i < nc && p->k; i++) { free(p->k[i]); free(p->v[i]); }
    free(p->k); free(p->v); free(p->row);
    free(p->refs); free(p->free_pages); free(p->ring_used); free(p->ring_ids);
    free(p);
}

g4_kv_pool *g4_kv_pool_new(const g4_model *m, int n_pos, int n_seq, int n_batch, int page, g4_error *err) {
    return g4_kv_pool_new_t(m, n_pos, n_seq, n_batch, page, G4_KV_F32, err);
}

g4_kv_pool *g4_kv_pool_new_t(const g4_model *m, int n_pos, int n_seq, int n_batch, int page, int type,
                             g4_error *err) {
    if (type < 0 || type >= G4_KV_NTYPES) return g4_seterr(err, "KV pool: unknown cache type %d", type), NULL;
    if (n_pos < 1 || n_seq < 1 || n_batch < 1)
        return g4_seterr(err, "KV pool: positions, sequences and batch size must be positive"), NULL;
    if (page <= 0 || page > n_pos) page = n_pos;
    if (n_batch > n_pos) n_batch = n_pos;
    g4_kv_plan plan;
    g4_kv_plan_type(m, n_pos, n_batch, type, &plan);
    g4_kv_pool *p = calloc(1, sizeof *p);
    int nc = n_cache(m);
    if (!p) goto oom;
    p->m = m;
    p->type = type;
    p->page = page;
    p->n_pages = (int)(((long)n_pos + page - 1) / page);
    p->ring_cap = (int)plan.swa_ring;
    p->n_seq = n_seq;
    p->n_batch = n_batch;
    p->n_pos = n_pos;
    p->k = calloc((size_t)(nc ? nc : 1), sizeof *p->k);
    p->v = calloc((size_t)(nc ? nc : 1), sizeof *p->v);
    p->row = calloc((size_t)(nc ? nc : 1), sizeof *p->row);
    p->refs = calloc((size_t)p->n_pages, sizeof *p->refs);
    p->free_pages = malloc((size_t)p->n_pages * sizeof *p->free_pages);
    p->ring_used = calloc((size_t)n_seq, 1);
    p->ring_ids = malloc((size_t)n_seq * sizeof *p->ring_ids);
    if (!p->k || !p->v || !p->row || !p->refs || !p->free_pages || !p->ring_used || !p->ring_ids) goto oom;
    for (int i = 0; i < p->n_pages; i++) p->free_pages[i] = p->n_pages - 1 - i;   /* page 0 first */
    p->n_free = p->n_pages;
    for (int i = 0; i < n_seq; i++) p->ring_ids[i] = i;
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        if (y->kv_slot < 0) continue;
        size_t rs = (size_t)y->n_kv_head * g4_kv_row_bytes(g4_kv_type_for(type, y->head_dim), (size_t)y->head_dim);
        size_t rows = y->swa ? (size_t)p->ring_cap * (size_t)n_seq : (size_t)p->n_pages * (size_t)page;
        p->row[y->kv_slot] = rs;
        /* untouched pages cost no memory until a sequence writes them */
        p->k[y->kv_slot] = malloc(rows * rs);
        p->v[y->kv_slot] = malloc(rows * rs);
        if (!p->k[y->kv_slot] || !p->v[y->kv_slot]) goto oom;
    }
    return p;
oom:
    g4_kv_pool_free(p);
    g4_seterr(err, "out of memory allocating the KV cache (%d positions, %d sequences); try a smaller --ctx",
              n_pos, n_seq);
    return NULL;
}

void g4_kv_pool_usage(const g4_kv_pool *p, int *used, int *total, int *seqs) {
    if (used) *used = p->n_pages - p->n_free;
    if (total) *total = p->n_pages;
    if (seqs) *seqs = p->n_alive;
}

/* ---- sequences ----------------------------------------------------------------- */

void g4_seq_free(g4_seq *s) {
    if (!s) return;
    g4_kv_pool *p = s->pool;
    if (s->pages) {
        for (int i = 0; i < p->n_pages; i++)
            if (s->pages[i] >= 0 && --p->refs[s->pages[i]] == 0) p->free_pages[p->n_free++] = s->pages[i];
    }
    if (s->ring >= 0) { p->ring_used[s->ring] = 0; p->n_alive--; }
    free(s->pages);
    free(s->kv);
    if (s->owns_pool) g4_kv_pool_free(p);
    free(s);
}

g4_seq *g4_seq_new_in(g4_kv_pool *p, g4_error *err) {
    const g4_model *m = p->m;
    int ring = -1;
    for (int i = 0; i < p->n_seq && ring < 0; i++) if (!p->ring_used[i]) ring = i;
    if (ring < 0) return g4_seterr(err, "all %d sequences of the KV pool are in use", p->n_seq), NULL;
    g4_seq *s = calloc(1, sizeof *s);
    if (!s) return g4_seterr(err, "out of memory"), NULL;
    s->pool = p;
    s->m = m;
    s->n_ctx = p->n_pos;
    s->n_batch = p->n_batch;
    s->ring = -1;
    s->kv = calloc((size_t)(n_cache(m) ? n_cache(m) : 1), sizeof *s->kv);
    s->pages = malloc((size_t)p->n_pages * sizeof *s->pages);
    if (!s->kv || !s->pages) { g4_seq_free(s); return g4_seterr(err, "out of memory"), NULL; }
    for (int i = 0; i < p->n_pages; i++) s->pages[i] = -1;
    s->ring = ring;
    p->ring_used[ring] = 1;
    p->n_alive++;
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        if (y->kv_slot < 0) continue;
        /* a ring is a one-page table that wraps; full layers share the page table */
        int t = g4_kv_type_for(p->type, y->head_dim);
        size_t rs = p->row[y->kv_slot], hs = g4_kv_row_bytes(t, (size_t)y->head_dim);
        s->kv[y->kv_slot] = y->swa ? (g4_kv_view){ p->k[y->kv_slot], p->v[y->kv_slot], p->ring_cap, 1, &p->ring_ids[ring], t, rs, hs }
                                   : (g4_kv_view){ p->k[y->kv_slot], p->v[y->kv_slot], p->page, p->n_pages, s->pages, t, rs, hs };
    }
    return s;
}

g4_seq *g4_seq_new(const g4_model *m, int n_ctx, int n_batch, g4_error *err) {
    return g4_seq_new_t(m, n_ctx, n_batch, G4_KV_F32, err);
}

g4_seq *g4_seq_new_t(const g4_model *m, int n_ctx, int n_batch, int type, g4_error *err) {
    g4_kv_pool *p = g4_kv_pool_new_t(m, n_ctx, 1, n_batch, 0, type, err);
    if (!p) return NULL;
    g4_seq *s = g4_seq_new_in(p, err);
    if (!s) { g4_kv_pool_free(p); return NULL; }
    s->owns_pool = 1;
    return s;
}

/* Copy page `from` of every full layer to page `to`. */
static void copy_page(g4_kv_pool *p, int32_t from, int32_t to) {
    const g4_model *m = p->m;
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        if (y->kv_slot < 0 || y->swa) continue;
        size_t n = (size_t)p->page * p->row[y->kv_slot];
        memcpy(p->k[y->kv_slot] + (size_t)to * n, p->k[y->kv_slot] + (size_t)from * n, n);
        memcpy(p->v[y->kv_slot] + (size_t)to * n, p->v[y->kv_slot] + (size_t)from * n, n);
    }
}

g4_seq *g4_seq_fork(const g4_seq *src, g4_error *err) {
    g4_kv_pool *p = src->pool;
    g4_seq *s = g4_seq_new_in(p, err);
    if (!s) return NULL;
    for (int i = 0; i < p->n_pages; i++)
        if ((s->pages[i] = src->pages[i]) >= 0) p->refs[s->pages[i]]++;
    const g4_model *m = p->m;
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        if (y->kv_slot < 0 || !y->swa) continue;
        size_t n = (size_t)p->ring_cap * p->row[y->kv_slot];
        memcpy(p->k[y->kv_slot] + (size_t)s->ring * n, p->k[y->kv_slot] + (size_t)src->ring * n, n);
        memcpy(p->v[y->kv_slot] + (size_t)s->ring * n, p->v[y->kv_slot] + (size_t)src->ring * n, n);
    }
    s->n_past = src->n_past;
    return s;
}

int g4_seq_reserve(g4_seq *s, int pos0, int n, g4_error *err) {
    g4_kv_pool *p = s->pool;
    if (n <= 0) return 0;
    if (pos0 < 0 || pos0 + n > s->n_ctx)
        return g4_seterr(err, "context full: positions %d..%d exceed the context size %d", pos0, pos0 + n - 1,
                         s->n_ctx);
    for (int pg = pos0 / p->page; pg <= (pos0 + n - 1) / p->page; pg++) {
        int32_t have = s->pages[pg];
        if (have >= 0 && p->refs[have] == 1) continue;
        if (p->n_free == 0) {
            g4_seterr(err, "KV cache full: all %d pages of %d positions are in use by %d sequences", p->n_pages,
                      p->page, p->n_alive);
            return -2;
        }
        int32_t fresh = p->free_pages[--p->n_free];
        p->refs[fresh] = 1;
        if (have >= 0) {            /* shared with a fork: this sequence writes its own copy */
            copy_page(p, have, fresh);
            p->refs[have]--;
        }
        s->pages[pg] = fresh;
    }
    return 0;
}

int g4_seq_truncate(g4_seq *s, int n) {
    if (n < 0 || n > s->n_past) return -1;
    const g4_model *m = s->m;
    g4_kv_pool *p = s->pool;
    /* positions n-W+1 .. n-1 must still be in the ring: after writing
     * 0..n_past-1 it holds n_past - ring_cap .. n_past-1 (everything while
     * it has not wrapped, e.g. a ring as long as the context) */
    int need = n - m->sliding_window + 1 > 0 ? n - m->sliding_window + 1 : 0;
    if (n > 0 && need < s->n_past - p->ring_cap)
        for (int l = 0; l < m->n_layer; l++) {
            const g4_layer *y = &m->layers[l];
            if (y->kv_slot >= 0 && y->swa) return -1;
        }
    for (int pg = (n + p->page - 1) / p->page; pg < p->n_pages; pg++)
        if (s->pages[pg] >= 0) {
            if (--p->refs[s->pages[pg]] == 0) p->free_pages[p->n_free++] = s->pages[pg];
            s->pages[pg] = -1;
        }
    s->n_past = n;
    return 0;
}
