/* Per-sequence KV caches (kv.h). */
#include "model/kv.h"

#include <stdlib.h>

void g4_seq_free(g4_seq *s) {
    if (!s) return;
    if (s->kv) {
        for (int l = 0; l < s->m->n_layer; l++) {
            int slot = s->m->layers[l].kv_slot;
            if (slot >= 0) { free(s->kv[slot].k); free(s->kv[slot].v); }
        }
        free(s->kv);
    }
    free(s);
}

g4_seq *g4_seq_new(const g4_model *m, int n_ctx, int n_batch, g4_error *err) {
    if (n_ctx < 1 || n_batch < 1) { g4_seterr(err, "context and batch size must be positive"); return NULL; }
    if (n_batch > n_ctx) n_batch = n_ctx;
    g4_kv_plan plan;
    g4_kv_plan_for(m, n_ctx, n_batch, &plan);
    g4_seq *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->kv = calloc((size_t)(plan.n_cache ? plan.n_cache : 1), sizeof *s->kv);
    if (!s->kv) goto oom;
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        if (y->kv_slot < 0) continue;
        g4_kv_view *c = &s->kv[y->kv_slot];
        c->cap = y->swa ? (int)plan.swa_ring : n_ctx;
        size_t n = (size_t)c->cap * (size_t)y->n_kv_head * (size_t)y->head_dim;
        c->k = malloc(n * sizeof(float));
        c->v = malloc(n * sizeof(float));
        if (!c->k || !c->v) goto oom;
    }
    return s;
oom:
    g4_seq_free(s);
    g4_seterr(err, "out of memory allocating the KV cache (n_ctx %d); try a smaller --ctx", n_ctx);
    return NULL;
}

int g4_seq_truncate(g4_seq *s, int n) {
    if (n < 0 || n > s->n_past) return -1;
    int dropped = s->n_past - n;
    const g4_model *m = s->m;
    if (n == 0) { s->n_past = 0; return 0; }   /* nothing before 0 is needed */
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        /* positions n-W+1 .. n-1 must still be in the ring */
        if (y->kv_slot >= 0 && y->swa && dropped > s->kv[y->kv_slot].cap - m->sliding_window) return -1;
    }
    s->n_past = n;
    return 0;
}
