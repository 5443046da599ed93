/* `gemma4c merge`: adapters baked into a model file (model/lora.h).
 *
 * The base is opened as a model (so every adapter is checked against it as
 * at run time), then written tensor by tensor through the streaming GGUF
 * writer: each chunk of rows is decoded, gets sum S m B[o] A added in
 * double (one rounding, as a float64 merge then f32), and is encoded to
 * the output type. Memory: the writer's chunk and one row, never the model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arch/gemma4.h"
#include "format/gguf_write.h"
#include "format/hf.h"
#include "model/lora.h"
#include "tensor/types.h"
#include "util/esc.h"

typedef struct merge_src {
    const g4_lora_pair *p;
    float scale;          /* S * m */
} merge_src;

typedef struct merge_ctx {
    const g4_gguf_file *f;
    const int *types;          /* output type per tensor */
    merge_src **src;           /* per tensor: its pairs (NULL: none) */
    int *n_src;
    double *acc;               /* one row */
    float *row;
} merge_ctx;

static int decode_row(int type, const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    if (type == G4_F32) { memcpy(dst, src, (size_t)n * 4); return 0; }
    if (type == G4_F16) { for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = g4_fp16_to_fp32(h); } return 0; }
    if (type == G4_BF16) { for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = g4_bf16_to_fp32(h); } return 0; }
    const g4_type_traits *t = g4_type_info(type);
    if (!t || !t->to_float) return -1;
    t->to_float(src, dst, n);
    return 0;
}

static int encode_row(int type, const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    if (type == G4_F32) { memcpy(dst, src, (size_t)n * 4); return 0; }
    if (type == G4_F16) { for (int64_t i = 0; i < n; i++) { uint16_t h = g4_fp32_to_fp16(src[i]); memcpy(p + 2 * i, &h, 2); } return 0; }
    if (type == G4_BF16) { for (int64_t i = 0; i < n; i++) { uint16_t h = g4_fp32_to_bf16(src[i]); memcpy(p + 2 * i, &h, 2); } return 0; }
    const g4_type_traits *t = g4_type_info(type);
    if (!t || !t->from_float) return -1;
    t->from_float(src, dst, n);
    return 0;
}

static int merge_fill(void *ud, uint64_t ti, int64_t row0, int64_t nrows, void *dst, g4_error *err) {
    merge_ctx *c = ud;
    const g4_gguf_tensor *s = &c->f->tensors[ti];
    int dt = c->types[ti];
    int64_t n = s->ne[0];
    size_t srow = g4_row_size(s->type, n), drow = g4_row_size(dt, n);
    if (s->type == dt && !c->src[ti]) {       /* untouched: the stored bytes */
        memcpy(dst, (const uint8_t *)s->data + (size_t)row0 * srow, (size_t)nrows * srow);
        return 0;
    }
    for (int64_t r = 0; r < nrows; r++) {
        int64_t o = row0 + r;                  /* output row of the (2-D when adapted) weight */
        if (decode_row(s->type, (const uint8_t *)s->data + (size_t)o * srow, c->row, n))
            return g4_seterr(err, "tensor '%s': cannot decode %s", G4_ESC(s->name), g4_type_name(s->type));
        if (c->src[ti]) {
            for (int64_t i = 0; i < n; i++) c->acc[i] = c->row[i];
            for (int k = 0; k < c->n_src[ti]; k++) {
                const g4_lora_pair *p = c->src[ti][k].p;
                for (int j = 0; j < p->r; j++) {
                    double bj = (double)c->src[ti][k].scale * p->b[(size_t)o * p->r + j];
                    const float *a = p->a + (size_t)j * p->n_in;
                    for (int64_t i = 0; i < n; i++) c->acc[i] += bj * a[i];
                }
            }
            for (int64_t i = 0; i < n; i++) c->row[i] = (float)c->acc[i];
        }
        if (encode_row(dt, c->row, (uint8_t *)dst + (size_t)r * drow, n))
            return g4_seterr(err, "tensor '%s': cannot encode %s", G4_ESC(s->name), g4_type_name(dt));
    }
    return 0;
}

int g4_lora_merge(const char *base, g4_lora *const *ls, const float *scales, int n, const char *out, int ftype,
                  const g4_conv_opts *o, g4_error *err) {
    bool hf = g4_hf_is_dir(base);
    g4_gguf_file *f0 = hf ? g4_hf_open(base, err) : g4_gguf_open(base, err);
    if (!f0) return -1;
    g4_model *m = g4_model_load(f0, err);     /* owns f0 from here */
    if (!m) return -1;
    const g4_gguf_file *f = m->file;
    uint64_t nt = f->n_tensors;
    merge_ctx c = { .f = f };
    int *types = malloc((nt ? nt : 1) * sizeof *types);
    c.src = calloc(nt ? nt : 1, sizeof *c.src);
    c.n_src = calloc(nt ? nt : 1, sizeof *c.n_src);
    g4_gguf_tensor *outt = calloc(nt ? nt : 1, sizeof *outt);
    const g4_gguf_kv **kvs = malloc((f->n_kv + 2) * sizeof *kvs);
    int64_t maxn = 1;
    int rc = types && c.src && c.n_src && outt && kvs ? 0 : g4_seterr(err, "out of memory");
    for (int i = 0; i < n && !rc; i++) rc = g4_lora_check(m, ls[i], err);
    /* output types: each tensor's own (GGUF), the converter's F32 plan (an
     * HF folder), or llama-quantize's rules for ftype */
    if (!rc) {
        if (ftype >= 0 && !hf) rc = g4_quant_plan(f, ftype, types, err);
        else if (hf) rc = g4_convert_plan(f, ftype >= 0 ? ftype : G4_FTYPE_F32, types, err);
        else for (uint64_t i = 0; i < nt; i++) types[i] = f->tensors[i].type;
    }
    for (uint64_t i = 0; i < nt && !rc; i++) {
        const g4_gguf_tensor *s = &f->tensors[i];
        if (s->ne[0] > maxn) maxn = s->ne[0];
        int layer = -1;
        const g4_tensor_info *ti = g4_tensor_find(s->name, &layer);
        for (int a = 0; ti && a < n && !rc; a++) {
            float S = scales ? scales[a] : 1.0f;
            for (int k = 0; k < ls[a]->n_pairs && !rc; k++) {
                const g4_lora_pair *p = &ls[a]->pairs[k];
                bool skip;
                if (p->tid != ti->id || p->layer != layer || S == 0.0f) continue;
                if (!g4_lora_target(m, p->tid, p->layer, &skip, err)) { if (!skip) rc = -1; continue; }
                merge_src *ns = realloc(c.src[i], (size_t)(c.n_src[i] + 1) * sizeof *ns);
                if (!ns) { rc = g4_seterr(err, "out of memory"); break; }
                c.src[i] = ns;
                ns[c.n_src[i]++] = (merge_src){ p, S * g4_lora_pair_mult(ls[a], p) };
            }
        }
        size_t row = g4_row_size(types[i], s->ne[0]);
        if (!rc && !row)
            rc = g4_seterr(err, "tensor '%s': row of %lld is not a multiple of the %s block", G4_ESC(s->name),
                           (long long)s->ne[0], g4_type_name(types[i]));
        outt[i] = *s;
        outt[i].type = types[i];
        outt[i].data = NULL;
        outt[i].nbytes = row * (size_t)(s->ne[1] * s->ne[2] * s->ne[3]);
    }
    if (!rc && (!(c.acc = malloc((size_t)maxn * sizeof *c.acc)) || !(c.row = malloc((size_t)maxn * sizeof *c.row))))
        rc = g4_seterr(err, "out of memory");
    if (!rc) {
        uint64_t nk = 0;
        g4_gguf_kv ft = { .key = "general.file_type", .type = GGUF_UINT32, .v.u = (uint64_t)ftype };
        for (uint64_t i = 0; i < f->n_kv; i++)
            if (ftype < 0 || strcmp(f->kv[i].key, ft.key)) kvs[nk++] = &f->kv[i];
        if (ftype >= 0) kvs[nk++] = &ft;
        c.types = types;
        g4_gguf_write_opts wo = { .kvs = kvs, .n_kvs = nk, .tensors = outt, .n_tensors = nt, .fill = merge_fill,
                                  .ud = &c, .force = o && o->force, .progress_fn = o ? o->progress : NULL,
                                  .progress_ud = o ? o->progress_ud : NULL };
        rc = g4_gguf_write_ex(f, out, &wo, err);
    }
    for (uint64_t i = 0; c.src && i < nt; i++) free(c.src[i]);
    free(c.src);
    free(c.n_src);
    free(c.acc);
    free(c.row);
    free(outt);
    free(kvs);
    free(types);
    g4_model_free(m);
    return rc;
}
