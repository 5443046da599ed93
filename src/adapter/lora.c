/* LoRA adapters: core, the GGUF LoRA reader and the PEFT reader (lora.h).
 * Writers are lora_write.c. Facts from llama.cpp (convert_lora_to_gguf.py,
 * src/llama-adapter.cpp) and peft (LoraConfig, save_pretrained), read for
 * facts only; shared/testdata/gemma4-lora-ref/README.md sums them up. */
#include "adapter/lora.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arch/gemma4.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "tensor/types.h"
#include "util/esc.h"

/* ranks beyond this are not LoRA (and would let a hostile file ask for
 * absurd allocations before any other check) */
#define MAX_RANK 65536

float g4_lora_pair_mult(const g4_lora *l, const g4_lora_pair *p) {
    if (p->alpha == 0.0f) return 1.0f;     /* llama.cpp: no alpha, scale alone */
    return l->rslora ? p->alpha / sqrtf((float)p->r) : p->alpha / (float)p->r;
}

void g4_lora_free(g4_lora *l) {
    if (!l) return;
    for (int i = 0; i < l->n_pairs; i++) { free(l->pairs[i].a); free(l->pairs[i].b); }
    free(l->pairs);
    free(l->path);
    free(l->name);
    free(l->base);
    free(l);
}

static g4_lora *lora_alloc(const char *path) {
    g4_lora *l = calloc(1, sizeof *l);
    if (l && !(l->path = strdup(path ? path : "<memory>"))) { free(l); l = NULL; }
    return l;
}

g4_lora *g4_lora_new(const g4_lora_pair *specs, int n, float alpha, int rank, g4_error *err) {
    g4_lora *l = lora_alloc("<new>");
    if (!l || !(l->pairs = calloc((size_t)(n > 0 ? n : 1), sizeof *l->pairs))) {
        g4_lora_free(l);
        g4_seterr(err, "out of memory");
        return NULL;
    }
    l->alpha = alpha;
    l->rank = rank;
    for (int i = 0; i < n; i++) {
        g4_lora_pair p = specs[i];
        if (p.r < 1 || p.r > MAX_RANK || p.n_in < 1 || p.n_out < 1 || p.tid < 0 || p.tid >= G4_T_COUNT) {
            g4_lora_free(l);
            g4_seterr(err, "adapter pair %d: bad rank %d or shape [%lld, %lld]", i, p.r, (long long)p.n_out,
                      (long long)p.n_in);
            return NULL;
        }
        p.a = calloc((size_t)p.r * (size_t)p.n_in, sizeof(float));
        p.b = calloc((size_t)p.n_out * (size_t)p.r, sizeof(float));
        l->pairs[l->n_pairs++] = p;
        if (!p.a || !p.b) { g4_lora_free(l); g4_seterr(err, "out of memory"); return NULL; }
    }
    return l;
}

int g4_lora_find(const g4_lora_set *s, const g4_mat *w, const g4_lora_entry **first) {
    int lo = 0, hi = s->n;
    while (lo < hi) {            /* first entry with e.w >= w */
        int mid = lo + (hi - lo) / 2;
        if ((uintptr_t)s->e[mid].w < (uintptr_t)w) lo = mid + 1;
        else hi = mid;
    }
    int n = 0;
    while (lo + n < s->n && s->e[lo + n].w == w) n++;
    *first = s->e + lo;
    return n;
}

/* ---- shared by both readers ------------------------------------------------- */

/* Which base weights an adapter may change: the 2-D matrices every matmul
 * reads. Embedding tables (read one row per token; llama.cpp transposes
 * their lora_a), the LM head (its product is softcapped in the same pass)
 * and the 3-D expert tensors are refused. */
static int check_target(const g4_tensor_info *t, const char *tensor, g4_error *err) {
    if (t->kind != G4_TK_WEIGHT)
        return g4_seterr(err, "tensor '%s': %s is not a matrix product weight; adapters on it are not supported",
                         G4_ESC(tensor), t->gguf);
    if (t->id == G4_T_OUTPUT)
        return g4_seterr(err, "tensor '%s': adapters on the LM head (output.weight / lm_head) are not supported",
                         G4_ESC(tensor));
    if (t->ne[2] != G4_D_NONE)
        return g4_seterr(err, "tensor '%s': adapters on the 3-D expert tensor %s are not supported",
                         G4_ESC(tensor), t->gguf);
    return 0;
}

/* Find (or add) the pair of (tid, layer). */
static g4_lora_pair *pair_of(g4_lora *l, int tid, int layer, int *cap) {
    for (int i = 0; i < l->n_pairs; i++)
        if (l->pairs[i].tid == tid && l->pairs[i].layer == layer) return &l->pairs[i];
    if (l->n_pairs == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        g4_lora_pair *np = realloc(l->pairs, (size_t)nc * sizeof *np);
        if (!np) return NULL;
        l->pairs = np;
        *cap = nc;
    }
    g4_lora_pair *p = &l->pairs[l->n_pairs++];
    *p = (g4_lora_pair){ .tid = tid, .layer = layer };
    return p;
}

/* Decode n elements of a stored type into a new f32 array. */
static float *decode(int type, const void *src, int64_t n, const char *tensor, g4_error *err) {
    const g4_type_traits *tt = g4_type_info(type);
    if (type != G4_F32 && type != G4_F16 && type != G4_BF16 && (!tt || !tt->to_float)) {
        g4_seterr(err, "tensor '%s': type %s cannot be decoded", G4_ESC(tensor), g4_type_name(type));
        return NULL;
    }
    if (tt && tt->blck_size > 1 && n % tt->blck_size) {
        g4_seterr(err, "tensor '%s': %lld elements are not whole %s blocks", G4_ESC(tensor), (long long)n,
                  g4_type_name(type));
        return NULL;
    }
    float *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
    if (!d) { g4_seterr(err, "tensor '%s': out of memory", G4_ESC(tensor)); return NULL; }
    const uint8_t *p = src;
    if (type == G4_F32) memcpy(d, src, (size_t)n * 4);
    else if (type == G4_F16)
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); d[i] = g4_fp16_to_fp32(h); }
    else if (type == G4_BF16)
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); d[i] = g4_bf16_to_fp32(h); }
    else tt->to_float(src, d, n);
    return d;
}

/* Set one side of a pair. A: rows r of n_in; B: rows n_out of r (both the
 * tensor's own row-major layout). Checks the side against the other one. */
static int set_side(g4_lora_pair *p, bool is_a, int64_t rows, int64_t cols, int type, const void *data,
                    const char *tensor, const char *shape_word, g4_error *err) {
    if ((is_a ? p->a : p->b) != NULL) return g4_seterr(err, "tensor '%s' appears twice", G4_ESC(tensor));
    int64_t r = is_a ? rows : cols;
    if (r < 1 || r > MAX_RANK || rows < 1 || cols < 1 || rows > (1LL << 31) || cols > (1LL << 31))
        return g4_seterr(err, "tensor '%s': shape %s is not a LoRA %s (rank 1..%d)", G4_ESC(tensor), shape_word,
                         is_a ? "A" : "B", MAX_RANK);
    if (p->r && p->r != r)
        return g4_seterr(err, "tensor '%s': rank %lld, but its %s has rank %d", G4_ESC(tensor), (long long)r,
                         is_a ? "B" : "A", p->r);
    if (rows * cols > (1LL << 34)) return g4_seterr(err, "tensor '%s': too large", G4_ESC(tensor));
    float *d = decode(type, data, rows * cols, tensor, err);
    if (!d) return -1;
    p->r = (int)r;
    if (is_a) { p->a = d; p->n_in = cols; }
    else { p->b = d; p->n_out = rows; }
    return 0;
}

static int finish(g4_lora *l, g4_error *err) {
    if (!l->n_pairs) return g4_seterr(err, "no LoRA tensors");
    for (int i = 0; i < l->n_pairs; i++) {
        g4_lora_pair *p = &l->pairs[i];
        if (!p->a || !p->b) {
            char nm[96];
            g4_tensor_name(&g4_tensors[p->tid], p->layer, nm, sizeof nm);
            return g4_seterr(err, "%s has lora_%s but no lora_%s", nm, p->a ? "a" : "b", p->a ? "b" : "a");
        }
    }
    if (!l->rank) l->rank = l->pairs[0].r;
    return 0;
}

/* ---- GGUF LoRA ----------------------------------------------------------------- */

static int str_key(const g4_gguf_file *f, const char *key, const char *want, bool required, g4_error *err) {
    char *v = NULL;
    int rc = g4_gguf_get_str(f, key, &v, err);
    if (rc < 0) return -1;
    if (rc == 1) return required ? g4_seterr(err, "missing key %s (want \"%s\")", key, want) : 0;
    if (strcmp(v, want)) {
        g4_seterr(err, "%s is \"%s\", want \"%s\"", key, G4_ESC(v), want);
        free(v);
        return -1;
    }
    free(v);
    return 0;
}

static g4_lora *from_gguf(g4_gguf_file *f, const char *path, g4_error *err) {
    g4_lora *l = lora_alloc(path);
    int cap = 0;
    if (!l) { g4_seterr(err, "out of memory"); goto fail; }
    /* llama.cpp's loader: general.type adapter, adapter.type lora, the
     * model's architecture */
    if (str_key(f, "general.type", "adapter", true, err) || str_key(f, "adapter.type", "lora", true, err) ||
        str_key(f, "general.architecture", G4_ARCH_NAME, true, err))
        goto fail;
    if (g4_gguf_get_f32(f, "adapter.lora.alpha", &l->alpha, err) < 0) goto fail;
    if (!(l->alpha == l->alpha) || l->alpha < 0 || l->alpha > 1e6f) {
        g4_seterr(err, "adapter.lora.alpha %g is not a usable alpha", (double)l->alpha);
        goto fail;
    }
    if (g4_gguf_get_str(f, "general.name", &l->name, err) < 0) goto fail;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const g4_gguf_tensor *t = &f->tensors[i];
        size_t nl = strlen(t->name);
        bool is_a = nl > 7 && !strcmp(t->name + nl - 7, ".lora_a"), is_b = nl > 7 && !strcmp(t->name + nl - 7, ".lora_b");
        if (!is_a && !is_b) {
            /* llama.cpp skips norm tensors a converter may carry along */
            if (nl > 12 && !strcmp(t->name + nl - 12, "_norm.weight")) continue;
            g4_seterr(err, "tensor '%s': not a LoRA tensor (name ends neither in .lora_a nor .lora_b)", G4_ESC(t->name));
            goto fail;
        }
        char base[256];
        if (nl - 7 >= sizeof base) { g4_seterr(err, "tensor '%s': name too long", G4_ESC(t->name)); goto fail; }
        memcpy(base, t->name, nl - 7);
        base[nl - 7] = 0;
        int layer = -1;
        const g4_tensor_info *ti = g4_tensor_find(base, &layer);
        if (!ti) {
            g4_seterr(err, "tensor '%s': %s is not a Gemma 4 weight", G4_ESC(t->name), G4_ESC(base));
            goto fail;
        }
        if (check_target(ti, t->name, err)) goto fail;
        if (t->n_dims != 2) {
            g4_seterr(err, "tensor '%s': %d dimensions, want 2", G4_ESC(t->name), t->n_dims);
            goto fail;
        }
        g4_lora_pair *p = pair_of(l, ti->id, layer, &cap);
        if (!p) { g4_seterr(err, "out of memory"); goto fail; }
        p->alpha = l->alpha;
        char shape[64];
        snprintf(shape, sizeof shape, "{%lld, %lld}", (long long)t->ne[0], (long long)t->ne[1]);
        /* ggml ne {n_in, r} for lora_a: r rows of n_in; {r, n_out} for lora_b */
        if (set_side(p, is_a, t->ne[1], t->ne[0], t->type, t->data, t->name, shape, err)) goto fail;
    }
    if (finish(l, err)) goto fail;
    g4_gguf_close(f);
    return l;
fail:
    g4_gguf_close(f);
    g4_lora_free(l);
    return NULL;
}

g4_lora *g4_lora_read_gguf(const char *path, g4_error *err) {
    g4_gguf_file *f = g4_gguf_open(path, err);
    if (!f) return NULL;
    g4_lora *l = from_gguf(f, path, err);
    if (!l) g4_preferr(err, "%s", G4_ESC(path));
    return l;
}

g4_lora *g4_lora_parse_gguf(const void *buf, size_t size, const char *name, g4_error *err) {
    g4_gguf_file *f = g4_gguf_parse(buf, size, name, err);
    if (!f) return NULL;
    return from_gguf(f, name, err);
}

/* ---- PEFT folder ------------------------------------------------------------------ */

/* The tensor-table row of a PEFT module name ("model.language_model.layers.3.self_attn.q_proj"),
 * its layer, or skip for a vision/audio tower module. 0, 1 (skip) or -1. */
static int peft_module(const char *mod, const char *tensor, const g4_tensor_info **out, int *layer,
                       g4_error *err) {
    char buf[256];
    for (int i = 0; g4_hf_prefixes[i]; i++) {
        size_t pl = strlen(g4_hf_prefixes[i]);
        if (strncmp(mod, g4_hf_prefixes[i], pl)) continue;
        const char *rest = mod + pl;
        for (int k = 0; g4_hf_ignored[k]; k++)
            if (!strncmp(rest, g4_hf_ignored[k], strlen(g4_hf_ignored[k]))) return 1;
        *layer = -1;
        if (!strncmp(rest, "layers.", 7) && rest[7] >= '0' && rest[7] <= '9') {
            char *end;
            long v = strtol(rest + 7, &end, 10);
            if (*end != '.' || v > 1 << 20) break;
            *layer = (int)v;
            rest = end + 1;
        }
        if (snprintf(buf, sizeof buf, "%s.weight", rest) >= (int)sizeof buf) break;
        *out = g4_tensor_by_hf(buf, *layer >= 0, false);
        if (*out) return 0;
        break;
    }
    /* a top-level module (lm_head) */
    if (snprintf(buf, sizeof buf, "%s.weight", mod) < (int)sizeof buf && (*out = g4_tensor_by_hf(buf, false, true))) {
        *layer = -1;
        return 0;
    }
    for (int k = 0; g4_hf_ignored[k]; k++)
        if (strstr(mod, g4_hf_ignored[k])) return 1;
    return g4_seterr(err, "tensor '%s': module %s is not a Gemma 4 text-model weight", G4_ESC(tensor), G4_ESC(mod));
}

/* PEFT's target_modules: a list of module-name suffixes, "all-linear", or a
 * regular expression (a string). Only a list is checked here. */
static bool in_targets(const json_t *tm, const char *mod) {
    if (!json_is_array(tm)) return true;
    size_t i;
    json_t *v;
    size_t ml = strlen(mod);
    json_array_foreach(tm, i, v) {
        const char *s = json_string_value(v);
        if (!s) continue;
        size_t sl = strlen(s);
        if (sl <= ml && !strcmp(mod + ml - sl, s) && (sl == ml || mod[ml - sl - 1] == '.')) return true;
    }
    return false;
}

static int peft_config(g4_lora *l, const char *text, size_t len, json_t **targets, g4_error *err) {
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) return g4_seterr(err, "adapter_config.json: line %d: %s", je.line, je.text);
    int rc = -1;
    if (!json_is_object(j)) { g4_seterr(err, "adapter_config.json: not a JSON object"); goto out; }
    json_t *v = json_object_get(j, "peft_type");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), "LORA"))) {
        g4_seterr(err, "adapter_config.json: peft_type is not \"LORA\"");
        goto out;
    }
    v = json_object_get(j, "r");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_RANK) {
        g4_seterr(err, "adapter_config.json: r must be an integer in 1..%d", MAX_RANK);
        goto out;
    }
    l->rank = (int)json_integer_value(v);
    v = json_object_get(j, "lora_alpha");
    if (!json_is_number(v) || !(json_number_value(v) >= 0) || json_number_value(v) > 1e6) {
        g4_seterr(err, "adapter_config.json: lora_alpha must be a number in 0..1e6");
        goto out;
    }
    l->alpha = (float)json_number_value(v);
    v = json_object_get(j, "use_rslora");
    if (v && !json_is_boolean(v) && !json_is_null(v)) { g4_seterr(err, "adapter_config.json: use_rslora is not a boolean"); goto out; }
    l->rslora = json_is_true(v);
    if (json_is_true(json_object_get(j, "use_dora"))) {
        g4_seterr(err, "adapter_config.json: use_dora: DoRA adapters are not supported");
        goto out;
    }
    static const char *const patterns[] = { "rank_pattern", "alpha_pattern", NULL };
    for (int i = 0; patterns[i]; i++) {
        v = json_object_get(j, patterns[i]);
        if (v && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0)) {
            g4_seterr(err, "adapter_config.json: %s: per-module ranks or alphas are not supported", patterns[i]);
            goto out;
        }
    }
    v = json_object_get(j, "bias");
    if (v && json_is_string(v) && strcmp(json_string_value(v), "none")) {
        g4_seterr(err, "adapter_config.json: bias \"%s\": adapter biases are not supported",
                  G4_ESC(json_string_value(v)));
        goto out;
    }
    v = json_object_get(j, "modules_to_save");
    if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0)) {
        g4_seterr(err, "adapter_config.json: modules_to_save: fully trained modules are not supported");
        goto out;
    }
    /* fan_in_fan_out describes Conv1D weights (GPT-2); every Gemma 4 target is
     * an nn.Linear, for which peft itself resets it to false (with a warning),
     * so lora_A / lora_B keep their [r, in] / [out, r] shapes either way */
    v = json_object_get(j, "base_model_name_or_path");
    if (json_is_string(v) && !(l->base = strdup(json_string_value(v)))) { g4_seterr(err, "out of memory"); goto out; }
    *targets = json_incref(json_object_get(j, "target_modules"));
    rc = 0;
out:
    json_decref(j);
    return rc;
}

static g4_lora *from_peft(const char *cfg, size_t cfg_len, g4_st_file *st, const char *path, g4_error *err) {
    g4_lora *l = lora_alloc(path);
    json_t *targets = NULL;
    int cap = 0;
    if (!l) { g4_seterr(err, "out of memory"); goto fail; }
    if (peft_config(l, cfg, cfg_len, &targets, err)) goto fail;
    static const char pre[] = "base_model.model.";
    for (size_t i = 0; i < st->n; i++) {
        const g4_st_tensor *t = &st->t[i];
        size_t nl = strlen(t->name);
        /* ".lora_A.weight" / ".lora_B.weight": 14 bytes */
        bool is_a = nl > 14 && !strcmp(t->name + nl - 14, ".lora_A.weight");
        bool is_b = nl > 14 && !strcmp(t->name + nl - 14, ".lora_B.weight");
        if (strstr(t->name, "lora_magnitude_vector")) {
            g4_seterr(err, "tensor '%s': DoRA adapters are not supported", G4_ESC(t->name));
            goto fail;
        }
        if (strstr(t->name, "lora_embedding_")) {
            g4_seterr(err, "tensor '%s': adapters on embeddings are not supported", G4_ESC(t->name));
            goto fail;
        }
        if ((!is_a && !is_b) || strncmp(t->name, pre, sizeof pre - 1)) {
            g4_seterr(err, "tensor '%s': not a PEFT LoRA tensor (base_model.model.<module>.lora_A/B.weight)",
                      G4_ESC(t->name));
            goto fail;
        }
        char mod[256];
        size_t ml = nl < 14 + sizeof pre ? 0 : nl - 14 - (sizeof pre - 1);
        if (ml >= sizeof mod || ml == 0) { g4_seterr(err, "tensor '%s': bad module name", G4_ESC(t->name)); goto fail; }
        memcpy(mod, t->name + sizeof pre - 1, ml);
        mod[ml] = 0;
        const g4_tensor_info *ti = NULL;
        int layer = -1, rc = peft_module(mod, t->name, &ti, &layer, err);
        if (rc < 0) goto fail;
        if (rc == 1) continue;     /* vision/audio towers: as llama.cpp's converter, skipped */
        if (check_target(ti, t->name, err)) goto fail;
        if (!in_targets(targets, mod)) {
            g4_seterr(err, "tensor '%s': module %s is not in the config's target_modules", G4_ESC(t->name),
                      G4_ESC(mod));
            goto fail;
        }
        if (t->n_dims != 2) {
            g4_seterr(err, "tensor '%s': %d dimensions, want 2", G4_ESC(t->name), t->n_dims);
            goto fail;
        }
        char shape[64];
        snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
        /* PyTorch [r, in] for lora_A, [out, r] for lora_B */
        if (is_a ? t->shape[0] != l->rank : t->shape[1] != l->rank) {
            g4_seterr(err, "tensor '%s': shape %s, but the config's r is %d", G4_ESC(t->name), shape, l->rank);
            goto fail;
        }
        g4_lora_pair *p = pair_of(l, ti->id, layer, &cap);
        if (!p) { g4_seterr(err, "out of memory"); goto fail; }
        p->alpha = l->alpha;
        if (set_side(p, is_a, t->shape[0], t->shape[1], t->type, t->data, t->name, shape, err)) goto fail;
    }
    if (finish(l, err)) goto fail;
    json_decref(targets);
    return l;
fail:
    json_decref(targets);
    g4_lora_free(l);
    return NULL;
}

g4_lora *g4_lora_parse_peft(const char *cfg, size_t cfg_len, const void *st, size_t st_size, const char *name,
                            g4_error *err) {
    g4_st_file *f = g4_st_parse(st, st_size, name, err);
    if (!f) return NULL;
    g4_lora *l = from_peft(cfg, cfg_len, f, name, err);
    g4_st_close(f);
    return l;
}

g4_lora *g4_lora_read_peft(const char *dir, g4_error *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    FILE *fp = fopen(p, "rb");
    if (!fp) { g4_seterr(err, "%s: cannot open (a PEFT adapter folder holds adapter_config.json)", G4_ESC(p)); return NULL; }
    char *cfg = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 > cap) {
            if (cap > (16u << 20)) { free(cfg); fclose(fp); g4_seterr(err, "%s: too large", G4_ESC(p)); return NULL; }
            char *nc = realloc(cfg, cap = cap ? cap * 2 : 8192);
            if (!nc) { free(cfg); fclose(fp); g4_seterr(err, "out of memory"); return NULL; }
            cfg = nc;
        }
        size_t r = fread(cfg + n, 1, cap - n, fp);
        if (!r) break;
        n += r;
    }
    fclose(fp);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    g4_st_file *st = g4_st_open(p, err);
    if (!st) { free(cfg); return NULL; }
    g4_lora *l = from_peft(cfg, n, st, dir, err);
    if (!l) g4_preferr(err, "%s", G4_ESC(dir));
    g4_st_close(st);
    free(cfg);
    return l;
}

g4_lora *g4_lora_read(const char *path, g4_error *err) {
    struct stat sb;
    if (stat(path, &sb)) { g4_seterr(err, "%s: no such file or folder", G4_ESC(path)); return NULL; }
    return S_ISDIR(sb.st_mode) ? g4_lora_read_peft(path, err) : g4_lora_read_gguf(path, err);
}
