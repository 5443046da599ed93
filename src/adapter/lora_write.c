/* LoRA writers (lora.h): GGUF LoRA as llama.cpp's convert_lora_to_gguf.py
 * lays it out, and PEFT folders as peft's save_pretrained does. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter/lora.h"
#include "arch/gemma4.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "tensor/types.h"
#include "util/esc.h"

/* Hugging Face module name of a pair (a Gemma4ForConditionalGeneration
 * base, as peft names it after "base_model.model."): 0 or -1. */
static int hf_module(const g4_lora_pair *p, char *out, size_t n, g4_error *err) {
    const g4_tensor_info *t = &g4_tensors[p->tid];
    size_t hl = t->hf ? strlen(t->hf) : 0;
    if (hl < 8 || strcmp(t->hf + hl - 7, ".weight") || (t->flags & G4_TF_HF_TOP))
        return g4_seterr(err, "%s has no Hugging Face module name", t->gguf);
    int k = t->layer ? snprintf(out, n, "%slayers.%d.%.*s", g4_hf_prefixes[0], p->layer, (int)(hl - 7), t->hf)
                     : snprintf(out, n, "%s%.*s", g4_hf_prefixes[0], (int)(hl - 7), t->hf);
    return k > 0 && (size_t)k < n ? 0 : g4_seterr(err, "module name too long");
}

typedef struct named {
    char name[200];     /* PEFT tensor-name stem: "base_model.model.<module>" */
    const g4_lora_pair *p;
} named;

static int by_name(const void *a, const void *b) { return strcmp(((const named *)a)->name, ((const named *)b)->name); }

/* The pairs sorted by their PEFT names: the converter's tensor order. */
static named *sorted_pairs(const g4_lora *l, g4_error *err) {
    named *v = calloc((size_t)(l->n_pairs ? l->n_pairs : 1), sizeof *v);
    if (!v) { g4_seterr(err, "out of memory"); return NULL; }
    for (int i = 0; i < l->n_pairs; i++) {
        char mod[160];
        if (hf_module(&l->pairs[i], mod, sizeof mod, err)) { free(v); return NULL; }
        snprintf(v[i].name, sizeof v[i].name, "base_model.model.%s", mod);
        v[i].p = &l->pairs[i];
    }
    qsort(v, (size_t)l->n_pairs, sizeof *v, by_name);
    return v;
}

/* One alpha for every pair in a format whose multiplier is alpha / r (GGUF;
 * PEFT without rsLoRA) or alpha / sqrt(r) (PEFT with): the first pair's,
 * checked against the others. */
static int common_alpha(const g4_lora *l, bool sqrt_r, float *out, g4_error *err) {
    if (!l->n_pairs) return g4_seterr(err, "adapter without pairs");
    const g4_lora_pair *p0 = &l->pairs[0];
    float m0 = g4_lora_pair_mult(l, p0);
    *out = m0 * (sqrt_r ? sqrtf((float)p0->r) : (float)p0->r);
    if (p0->alpha == 0.0f && !sqrt_r) *out = 0.0f;   /* GGUF: "no alpha" stays so */
    for (int i = 1; i < l->n_pairs; i++) {
        const g4_lora_pair *p = &l->pairs[i];
        float m = *out == 0.0f ? 1.0f : *out / (sqrt_r ? sqrtf((float)p->r) : (float)p->r);
        if (fabsf(m - g4_lora_pair_mult(l, p)) > 1e-6f * fabsf(m))
            return g4_seterr(err, "pairs with different alpha / rank cannot share one alpha (pair %d)", i);
    }
    return 0;
}

/* n floats as type (F16/BF16 round to nearest even), owned by f. */
static const void *as_type(g4_gguf_file *f, const float *src, size_t n, int type) {
    if (type == G4_F32) return src;
    uint16_t *d = g4_gguf_own(f, malloc((n ? n : 1) * sizeof *d));
    for (size_t i = 0; d && i < n; i++) d[i] = type == G4_F16 ? g4_fp32_to_fp16(src[i]) : g4_fp32_to_bf16(src[i]);
    return d;
}

int g4_lora_write_gguf(const g4_lora *l, const char *path, const char *name, bool force, g4_error *err) {
    return g4_lora_write_gguf_as(l, path, name, G4_F32, force, err);
}

int g4_lora_write_gguf_as(const g4_lora *l, const char *path, const char *name, int type, bool force,
                          g4_error *err) {
    float alpha;
    if (type != G4_F32 && type != G4_F16 && type != G4_BF16)
        return g4_seterr(err, "GGUF LoRA tensors as %s: want F32, F16 or BF16", g4_type_name(type));
    if (common_alpha(l, false, &alpha, err)) return -1;
    named *v = sorted_pairs(l, err);
    if (!v) return -1;
    g4_gguf_file *f = g4_gguf_new(path);
    int rc = f ? 0 : g4_seterr(err, "out of memory");
    /* the converter's keys, in its order */
    if (!rc && (g4_gguf_set_str(f, "general.architecture", G4_ARCH_NAME) ||
                g4_gguf_set_str(f, "general.type", "adapter") || g4_gguf_set_str(f, "adapter.type", "lora") ||
                g4_gguf_set_str(f, "general.name", name ? name : l->name ? l->name : "LoRA") ||
                g4_gguf_set_f32(f, "adapter.lora.alpha", alpha) ||
                g4_gguf_set_u32(f, "general.quantization_version", 2)))
        rc = g4_seterr(err, "out of memory");
    for (int i = 0; i < l->n_pairs && !rc; i++) {
        const g4_lora_pair *p = v[i].p;
        char base[96], tn[128];
        g4_tensor_name(&g4_tensors[p->tid], p->layer, base, sizeof base);
        int64_t nea[2] = { p->n_in, p->r }, neb[2] = { p->r, p->n_out };
        const void *da = as_type(f, p->a, (size_t)p->r * (size_t)p->n_in, type);
        const void *db = as_type(f, p->b, (size_t)p->n_out * (size_t)p->r, type);
        if (!da || !db) { rc = g4_seterr(err, "out of memory"); break; }
        snprintf(tn, sizeof tn, "%s.lora_a", base);
        if (!g4_gguf_add_tensor(f, tn, type, 2, nea, da, err)) rc = -1;
        snprintf(tn, sizeof tn, "%s.lora_b", base);
        if (!rc && !g4_gguf_add_tensor(f, tn, type, 2, neb, db, err)) rc = -1;
    }
    if (!rc) {
        g4_gguf_write_opts o = { .force = force };
        rc = g4_gguf_write_ex(f, path, &o, err);
    }
    g4_gguf_close(f);
    free(v);
    return rc;
}

/* ---- PEFT folder ----------------------------------------------------------------- */

/* Write len bytes to dir/name through a temporary file renamed at the end. */
static int write_file(const char *dir, const char *name, const void *const *parts, const size_t *lens, int n,
                      bool force, g4_error *err) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    if (!force && !stat(path, &sb)) return g4_seterr(err, "%s exists (use force to replace it)", G4_ESC(path));
    snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return g4_seterr(err, "%s: cannot create: %s", G4_ESC(tmp), strerror(errno));
    FILE *fp = fdopen(fd, "wb");
    int ok = fp != NULL;
    for (int i = 0; ok && i < n; i++) ok = fwrite(parts[i], 1, lens[i], fp) == lens[i];
    if (fp) ok = (fflush(fp) == 0) & ok, ok = (fsync(fd) == 0) & ok, ok = (fclose(fp) == 0) & ok;
    else close(fd);
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return g4_seterr(err, "%s: write failed: %s", G4_ESC(path), strerror(errno));
    }
    return 0;
}

static int peft_config(const g4_lora *l, named *v, char **out, g4_error *err) {
    float alpha;
    if (common_alpha(l, l->rslora, &alpha, err)) return -1;
    int r = l->pairs[0].r;
    for (int i = 1; i < l->n_pairs; i++)
        if (l->pairs[i].r != r)
            return g4_seterr(err, "pairs of different ranks (%d, %d) need a rank_pattern: not written", r,
                             l->pairs[i].r);
    json_t *j = json_object(), *tm = json_array();
    /* target_modules: each module's last name, once, in sorted order of first use */
    for (int i = 0; i < l->n_pairs; i++) {
        const char *last = strrchr(v[i].name, '.') + 1;
        bool seen = false;
        size_t k;
        json_t *e;
        json_array_foreach(tm, k, e) seen |= !strcmp(json_string_value(e), last);
        if (!seen) json_array_append_new(tm, json_string(last));
    }
    json_object_set_new(j, "alpha_pattern", json_object());
    json_object_set_new(j, "auto_mapping", json_null());
    json_object_set_new(j, "base_model_name_or_path", l->base ? json_string(l->base) : json_null());
    json_object_set_new(j, "bias", json_string("none"));
    json_object_set_new(j, "fan_in_fan_out", json_false());
    json_object_set_new(j, "inference_mode", json_true());
    json_object_set_new(j, "init_lora_weights", json_true());
    json_object_set_new(j, "layer_replication", json_null());
    json_object_set_new(j, "layers_pattern", json_null());
    json_object_set_new(j, "layers_to_transform", json_null());
    json_object_set_new(j, "loftq_config", json_object());
    json_object_set_new(j, "lora_alpha", alpha == floorf(alpha) && fabsf(alpha) < 1e9f
                                             ? json_integer((json_int_t)alpha) : json_real(alpha));
    json_object_set_new(j, "lora_bias", json_false());
    json_object_set_new(j, "lora_dropout", json_real(0.0));
    json_object_set_new(j, "megatron_config", json_null());
    json_object_set_new(j, "megatron_core", json_string("megatron.core"));
    json_object_set_new(j, "modules_to_save", json_null());
    json_object_set_new(j, "peft_type", json_string("LORA"));
    json_object_set_new(j, "r", json_integer(r));
    json_object_set_new(j, "rank_pattern", json_object());
    json_object_set_new(j, "revision", json_null());
    json_object_set_new(j, "target_modules", tm);
    json_object_set_new(j, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(j, "use_dora", json_false());
    json_object_set_new(j, "use_rslora", l->rslora ? json_true() : json_false());
    *out = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(2));
    json_decref(j);
    return *out ? 0 : g4_seterr(err, "out of memory");
}

int g4_lora_write_peft(const g4_lora *l, const char *dir, bool force, g4_error *err) {
    named *v = sorted_pairs(l, err);
    if (!v) return -1;
    char *cfg = NULL, *hdr = NULL;
    const void **parts = NULL;
    size_t *lens = NULL;
    int rc = peft_config(l, v, &cfg, err);
    if (!rc && mkdir(dir, 0777) && errno != EEXIST) rc = g4_seterr(err, "%s: cannot create: %s", G4_ESC(dir), strerror(errno));
    /* safetensors: u64 header length, the JSON header (names sorted, A
     * before B, padded with spaces to 8 bytes as the safetensors library
     * does), then the F32 data in header order */
    size_t cap = 256 + (size_t)l->n_pairs * 2 * 420, hl = 0;   /* names < 200 bytes */
    if (!rc && !(hdr = malloc(cap))) rc = g4_seterr(err, "out of memory");
    if (!rc) {
        hl = (size_t)snprintf(hdr, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
        uint64_t off = 0;
        for (int i = 0; i < l->n_pairs; i++) {
            const g4_lora_pair *p = v[i].p;
            uint64_t na = (uint64_t)p->r * (uint64_t)p->n_in * 4, nb = (uint64_t)p->n_out * (uint64_t)p->r * 4;
            hl += (size_t)snprintf(hdr + hl, cap - hl,
                                   ",\"%s.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[%d,%lld],\"data_offsets\":[%llu,%llu]}"
                                   ",\"%s.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[%lld,%d],\"data_offsets\":[%llu,%llu]}",
                                   v[i].name, p->r, (long long)p->n_in, (unsigned long long)off,
                                   (unsigned long long)(off + na), v[i].name, (long long)p->n_out, p->r,
                                   (unsigned long long)(off + na), (unsigned long long)(off + na + nb));
            off += na + nb;
        }
        hdr[hl++] = '}';
        while (hl % 8) hdr[hl++] = ' ';
    }
    int np = 2 + 2 * l->n_pairs;
    uint8_t len8[8];
    if (!rc && (!(parts = malloc((size_t)np * sizeof *parts)) || !(lens = malloc((size_t)np * sizeof *lens))))
        rc = g4_seterr(err, "out of memory");
    if (!rc) {
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
        parts[0] = len8; lens[0] = 8;
        parts[1] = hdr; lens[1] = hl;
        for (int i = 0; i < l->n_pairs; i++) {
            const g4_lora_pair *p = v[i].p;
            parts[2 + 2 * i] = p->a; lens[2 + 2 * i] = (size_t)p->r * (size_t)p->n_in * 4;
            parts[3 + 2 * i] = p->b; lens[3 + 2 * i] = (size_t)p->n_out * (size_t)p->r * 4;
        }
        rc = write_file(dir, "adapter_model.safetensors", parts, lens, np, force, err);
    }
    if (!rc) {
        const void *cp[2] = { cfg, "\n" };
        size_t cl[2] = { strlen(cfg), 1 };
        rc = write_file(dir, "adapter_config.json", cp, cl, 2, force, err);
    }
    free(parts);
    free(lens);
    free(hdr);
    free(cfg);
    free(v);
    return rc;
}
