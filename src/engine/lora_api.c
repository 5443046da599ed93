/* Public LoRA calls (include/gemma4c.h): load, write, attach to a context.
 * The representation and readers are adapter/, binding is model/lora.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/lora.h"
#include "engine/engine.h"
#include "gemma4c.h"
#include "model/lora.h"
#include "tensor/types.h"

struct gemma4c_adapter {
    g4_lora *l;
};

static void copy_err(char *dst, size_t len, const g4_error *e) {
    if (dst && len) snprintf(dst, len, "%s", e->msg);
}

gemma4c_adapter *gemma4c_adapter_load(const gemma4c_model *m, const char *path, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    g4_lora *l = g4_lora_read(path, &e);
    if (l && m && g4_lora_check(m->m, l, &e)) { g4_lora_free(l); l = NULL; }
    gemma4c_adapter *a = l ? malloc(sizeof *a) : NULL;
    if (!a) {
        if (l) { g4_lora_free(l); g4_seterr(&e, "out of memory"); }
        copy_err(err, errlen, &e);
        return NULL;
    }
    a->l = l;
    return a;
}

int gemma4c_adapter_spec(const char *spec, char *path, size_t n, float *scale) {
    const char *c = strrchr(spec, ':');
    size_t len = strlen(spec);
    *scale = 1.0f;
    if (c && c[1]) {
        char *end;
        errno = 0;
        float x = strtof(c + 1, &end);
        if (!*end && !errno && x == x && !isinf(x)) { *scale = x; len = (size_t)(c - spec); }
    }
    if (!len || len >= n) return -1;
    memcpy(path, spec, len);
    path[len] = 0;
    return 0;
}

void gemma4c_adapter_free(gemma4c_adapter *a) {
    if (!a) return;
    g4_lora_free(a->l);
    free(a);
}

void gemma4c_adapter_info(const gemma4c_adapter *a, int *n_weights, int *rank, float *alpha) {
    if (n_weights) *n_weights = a->l->n_pairs;
    if (rank) *rank = a->l->rank;
    if (alpha) *alpha = a->l->alpha;
}

int gemma4c_adapter_write(const gemma4c_adapter *a, const char *path, const char *format, int force, char *err,
                          size_t errlen) {
    g4_error e = { { 0 } };
    int rc;
    if (format && !strcmp(format, "peft")) rc = g4_lora_write_peft(a->l, path, force != 0, &e);
    else if (!format || !strcmp(format, "gguf")) rc = g4_lora_write_gguf(a->l, path, NULL, force != 0, &e);
    else if (!strncmp(format, "gguf:", 5) && g4_type_from_name(format + 5) >= 0)
        rc = g4_lora_write_gguf_as(a->l, path, NULL, g4_type_from_name(format + 5), force != 0, &e);
    else rc = g4_seterr(&e, "adapter format '%s': want \"gguf\", \"gguf:F16\", \"gguf:BF16\" or \"peft\"", format);
    if (rc) copy_err(err, errlen, &e);
    return rc;
}

int gemma4c_context_set_adapters(gemma4c_context *c, gemma4c_adapter *const *a, const float *scales, int n,
                                 char *err, size_t errlen) {
    g4_error e = { { 0 } };
    g4_lora_set *s = NULL;
    if (n > 0) {
        g4_lora **ls = malloc((size_t)n * sizeof *ls);
        if (!ls) { copy_err(err, errlen, &(g4_error){ "out of memory" }); return -1; }
        for (int i = 0; i < n; i++) ls[i] = a[i]->l;
        s = g4_lora_bind(c->model->m, ls, scales, n, &e);
        free(ls);
        if (!s) { copy_err(err, errlen, &e); return -1; }
    }
    if (g4_workspace_set_lora(c->ws, s, &e)) {
        g4_lora_set_free(s);
        copy_err(err, errlen, &e);
        return -1;
    }
    g4_lora_set_free(c->lora);
    c->lora = s;
    /* snapshots hold KV computed with the old adapters */
    g4_prefix_free_all(c);
    return 0;
}

int g4_engine_context_adapters(gemma4c_context *c, const gemma4c_context_params *p, char *err, size_t errlen) {
    return gemma4c_context_set_adapters(c, p->adapters, p->adapter_scales, p->n_adapters, err, errlen);
}

uint64_t g4_engine_adapter_bytes(const gemma4c_context_params *p) {
    uint64_t b = 0, max_r = 0, max_out = 0;
    for (int i = 0; p->adapters && i < p->n_adapters; i++) {
        const g4_lora *l = p->adapters[i]->l;
        for (int k = 0; k < l->n_pairs; k++) {
            const g4_lora_pair *q = &l->pairs[k];
            b += (uint64_t)q->r * (uint64_t)(q->n_in + q->n_out) * sizeof(float);
            if ((uint64_t)q->r > max_r) max_r = (uint64_t)q->r;
            if ((uint64_t)q->n_out > max_out) max_out = (uint64_t)q->n_out;
        }
    }
    return b + (b ? (uint64_t)G4_LORA_ROWS * (max_r + max_out) * sizeof(float) : 0);
}
