/* LoRA adapters against a loaded model: checks, binding, the workspace's
 * hook scratch (model/lora.h). Merging is lora_merge.c. */
#include "model/lora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/gemma4.h"
#include "tensor/types.h"
#include "util/esc.h"

const g4_mat *g4_lora_target(const g4_model *m, int tid, int layer, bool *skip, g4_error *err) {
    *skip = false;
    if (tid < 0 || tid >= G4_T_COUNT) { g4_seterr(err, "bad tensor id %d", tid); return NULL; }
    const g4_tensor_info *ti = &g4_tensors[tid];
    char nm[96];
    g4_tensor_name(ti, layer, nm, sizeof nm);
    if (ti->layer && (layer < 0 || layer >= m->n_layer)) {
        g4_seterr(err, "%s: layer %d, but the model has %d layers (0..%d): an adapter for another base model?",
                  nm, layer, m->n_layer, m->n_layer - 1);
        return NULL;
    }
    const g4_layer *y = ti->layer ? &m->layers[layer] : NULL;
    const g4_mat *w = NULL;
    switch (tid) {
    case G4_T_ATTN_Q: w = &y->wq; break;
    case G4_T_ATTN_K: w = &y->wk; break;
    case G4_T_ATTN_V: w = &y->wv; break;
    case G4_T_ATTN_OUT: w = &y->wo; break;
    case G4_T_FFN_GATE: w = &y->ffn_gate; break;
    case G4_T_FFN_UP: w = &y->ffn_up; break;
    case G4_T_FFN_DOWN: w = &y->ffn_down; break;
    case G4_T_ROUTER: w = &y->router; break;
    case G4_T_PLE_GATE: w = &y->ple_gate; break;
    case G4_T_PLE_PROJ: w = &y->ple_proj; break;
    case G4_T_PLE_MODEL_PROJ: w = &m->ple_model_proj; break;
    default:
        g4_seterr(err, "%s: adapters on this tensor are not supported", nm);
        return NULL;
    }
    /* K/V of a layer that reads another layer's cache are never computed:
     * an adapter there changes nothing (llama.cpp accepts and ignores it) */
    if ((tid == G4_T_ATTN_K || tid == G4_T_ATTN_V) && !y->own_kv) { *skip = true; return NULL; }
    if (!w->data) {
        g4_seterr(err, "%s: the model has no such weight%s: an adapter for another base model?", nm,
                  tid == G4_T_ATTN_V && y->k_eq_v ? " (V is the raw K projection in this layer)" : "");
        return NULL;
    }
    return w;
}

static int check_pair(const g4_model *m, const g4_lora *l, const g4_lora_pair *p, const g4_mat **out,
                      g4_error *err) {
    bool skip;
    *out = g4_lora_target(m, p->tid, p->layer, &skip, err);
    if (!*out) return skip ? 0 : g4_preferr(err, "%s", G4_ESC(l->path));
    const g4_mat *w = *out;
    if (p->n_in != w->n_in || p->n_out != w->n_out) {
        char nm[200];
        const g4_tensor_info *ti = &g4_tensors[p->tid];
        int k = g4_tensor_name(ti, p->layer, nm, sizeof nm);
        if (ti->hf && k > 0 && (size_t)k < sizeof nm) {   /* and the Hugging Face name a PEFT user knows */
            if (ti->layer) snprintf(nm + k, sizeof nm - (size_t)k, " (layers.%d.%s)", p->layer, ti->hf);
            else snprintf(nm + k, sizeof nm - (size_t)k, " (%s)", ti->hf);
        }
        return g4_seterr(err,
                         "%s: %s: the adapter's A is [%d, %lld] and B [%lld, %d] (PyTorch order), so it adapts a "
                         "[%lld, %lld] weight, but the model's is [%lld, %lld]: an adapter for another base model?",
                         G4_ESC(l->path), nm, p->r, (long long)p->n_in, (long long)p->n_out, p->r,
                         (long long)p->n_out, (long long)p->n_in, (long long)w->n_out, (long long)w->n_in);
    }
    return 0;
}

g4_lora *g4_lora_create(const g4_model *m, uint64_t targets, int r, float alpha, g4_error *err) {
    int cap = 0, n = 0;
    for (int t = 0; t < G4_T_COUNT; t++) cap += (targets >> t & 1) ? m->n_layer : 0;
    g4_lora_pair *specs = calloc((size_t)(cap ? cap : 1), sizeof *specs);
    if (!specs) { g4_seterr(err, "out of memory"); return NULL; }
    for (int t = 0; t < G4_T_COUNT; t++) {
        if (!(targets >> t & 1)) continue;
        int nl = g4_tensors[t].layer ? m->n_layer : 1;
        for (int l = 0; l < nl; l++) {
            bool skip;
            g4_error e2;
            const g4_mat *w = g4_lora_target(m, t, g4_tensors[t].layer ? l : -1, &skip, &e2);
            if (!w || w->n_mat != 1) continue;   /* not in this model / layer */
            specs[n++] = (g4_lora_pair){ .tid = t, .layer = g4_tensors[t].layer ? l : -1, .r = r, .n_in = w->n_in,
                                         .n_out = w->n_out, .alpha = alpha };
        }
    }
    g4_lora *lo = n ? g4_lora_new(specs, n, alpha, r, err) : NULL;
    if (!n) g4_seterr(err, "no weight of the model matches the targets");
    free(specs);
    return lo;
}

int g4_lora_check(const g4_model *m, const g4_lora *l, g4_error *err) {
    for (int i = 0; i < l->n_pairs; i++) {
        const g4_mat *w;
        if (check_pair(m, l, &l->pairs[i], &w, err)) return -1;
    }
    return 0;
}

/* by weight; several adapters on one weight by their pairs' addresses (a
 * fixed order, so a run is reproducible) */
static int by_mat(const void *a, const void *b) {
    const g4_lora_entry *x = a, *y = b;
    if (x->w != y->w) return (uintptr_t)x->w < (uintptr_t)y->w ? -1 : 1;
    return (uintptr_t)x->pair < (uintptr_t)y->pair ? -1 : (uintptr_t)x->pair > (uintptr_t)y->pair;
}

g4_lora_set *g4_lora_bind(const g4_model *m, g4_lora *const *ls, const float *scales, int n, g4_error *err) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)ls[i]->n_pairs;
    g4_lora_set *s = calloc(1, sizeof *s);
    if (!s || !(s->e = calloc(total ? total : 1, sizeof *s->e))) {
        free(s);
        g4_seterr(err, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const g4_lora *l = ls[i];
        float S = scales ? scales[i] : 1.0f;
        for (int k = 0; k < l->n_pairs; k++) {
            g4_lora_pair *p = &l->pairs[k];
            const g4_mat *w;
            if (check_pair(m, l, p, &w, err)) { g4_lora_set_free(s); return NULL; }
            if (!w || S == 0.0f) continue;   /* never computed, or scale 0: nothing to add */
            g4_lora_entry *e = &s->e[s->n++];
            e->w = w;
            e->pair = p;
            e->scale = S * g4_lora_pair_mult(l, p);
            e->a = (g4_mat){ .data = p->a, .type = G4_F32, .n_in = p->n_in, .n_out = p->r, .n_mat = 1,
                             .row_bytes = (size_t)p->n_in * sizeof(float), .name = "lora_a" };
            e->b = (g4_mat){ .data = p->b, .type = G4_F32, .n_in = p->r, .n_out = p->n_out, .n_mat = 1,
                             .row_bytes = (size_t)p->r * sizeof(float), .name = "lora_b" };
            if (p->r > s->max_r) s->max_r = p->r;
            if (p->n_out > s->max_out) s->max_out = p->n_out;
        }
    }
    qsort(s->e, (size_t)s->n, sizeof *s->e, by_mat);
    return s;
}

void g4_lora_set_free(g4_lora_set *s) {
    if (!s) return;
    free(s->e);
    free(s);
}

int g4_workspace_set_lora(g4_workspace *w, const g4_lora_set *s, g4_error *err) {
    free(w->ex.lora_tmp);
    w->ex.lora_tmp = NULL;
    w->ex.lora = NULL;
    if (!s || !s->n) return 0;
    size_t n = (size_t)G4_LORA_ROWS * ((size_t)s->max_r + (size_t)s->max_out);
    if (!(w->ex.lora_tmp = malloc(n * sizeof(float)))) return g4_seterr(err, "out of memory for the adapter scratch");
    w->ex.lora = s;
    return 0;
}
