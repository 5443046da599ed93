/* Type choice (llama.cpp's converter and llama-quantize rules) and the
 * multi-threaded tensor conversion driver (see quantize.h). */
#include "model/quantize.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/gemma4.h"
#include "format/gguf_write.h"
#include "format/hf.h"
#include "format/safetensors.h"
#include "tensor/types.h"
#include "util/esc.h"

static const struct { const char *name; int ftype, base; } FTYPES[] = {
    { "F32", G4_FTYPE_F32, G4_F32 },       { "F16", G4_FTYPE_F16, G4_F16 },
    { "BF16", G4_FTYPE_BF16, G4_BF16 },    { "Q4_0", G4_FTYPE_Q4_0, G4_Q4_0 },
    { "Q4_1", G4_FTYPE_Q4_1, G4_Q4_1 },    { "Q5_0", G4_FTYPE_Q5_0, G4_Q5_0 },
    { "Q5_1", G4_FTYPE_Q5_1, G4_Q5_1 },    { "Q8_0", G4_FTYPE_Q8_0, G4_Q8_0 },
    { "Q2_K", G4_FTYPE_Q2_K, G4_Q2_K },    { "Q3_K_S", G4_FTYPE_Q3_K_S, G4_Q3_K },
    { "Q3_K_M", G4_FTYPE_Q3_K_M, G4_Q3_K }, { "Q3_K_L", G4_FTYPE_Q3_K_L, G4_Q3_K },
    { "Q4_K_S", G4_FTYPE_Q4_K_S, G4_Q4_K }, { "Q4_K_M", G4_FTYPE_Q4_K_M, G4_Q4_K },
    { "Q5_K_S", G4_FTYPE_Q5_K_S, G4_Q5_K }, { "Q5_K_M", G4_FTYPE_Q5_K_M, G4_Q5_K },
    { "Q6_K", G4_FTYPE_Q6_K, G4_Q6_K },    { "IQ4_NL", G4_FTYPE_IQ4_NL, G4_IQ4_NL },
    { "IQ4_XS", G4_FTYPE_IQ4_XS, G4_IQ4_XS },
    /* llama-quantize aliases */
    { "Q3_K", G4_FTYPE_Q3_K_M, G4_Q3_K },  { "Q4_K", G4_FTYPE_Q4_K_M, G4_Q4_K },
    { "Q5_K", G4_FTYPE_Q5_K_M, G4_Q5_K },
};
#define N_FTYPES (sizeof FTYPES / sizeof *FTYPES)

int g4_ftype_from_name(const char *s) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (!strcasecmp(s, FTYPES[i].name)) return FTYPES[i].ftype;
    return -1;
}
const char *g4_ftype_name(int ftype) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (FTYPES[i].ftype == ftype) return FTYPES[i].name;
    return NULL;
}
int g4_ftype_base_type(int ftype) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (FTYPES[i].ftype == ftype) return FTYPES[i].base;
    return -1;
}

/* llama-quantize processes tensors ordered by layer (non-layer tensors
 * first), then by name; its counters (i_attention_wv, i_ffn_down) and its
 * output follow this order. */
static int layer_of(const char *name) {
    int l = -1;
    if (sscanf(name, "blk.%d.", &l) != 1) l = -1;
    return l;
}
static int cmp_llama(const void *a, const void *b, void *ctx) {
    const g4_gguf_file *f = ctx;
    const char *x = f->tensors[*(const uint64_t *)a].name, *y = f->tensors[*(const uint64_t *)b].name;
    int lx = layer_of(x), ly = layer_of(y);
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x, y);
}
static uint64_t *llama_order(const g4_gguf_file *f) {
    uint64_t *o = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *o);
    if (!o) return NULL;
    for (uint64_t i = 0; i < f->n_tensors; i++) o[i] = i;
    qsort_r(o, f->n_tensors, sizeof *o, cmp_llama, (void *)f);
    return o;
}

static bool use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static int blck(int type) {
    const g4_type_traits *t = g4_type_info(type);
    return t ? (int)t->blck_size : 1;
}

static uint32_t kv_u32(const g4_gguf_file *f, const char *arch, const char *suffix, uint32_t def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, key);
    if (!kv) return def;
    if (kv->type == GGUF_ARRAY) return kv->arr_n && kv->arr_type != GGUF_STRING ? (uint32_t)g4_gguf_arr_i64(kv, 0) : def;
    uint32_t v = def;
    if (g4_gguf_get_u32(f, key, &v, NULL)) return def;
    return v;
}

int g4_quant_plan(const g4_gguf_file *f, int ftype, int *out, g4_error *err) {
    int base = g4_ftype_base_type(ftype);
    if (base < 0) return g4_seterr(err, "unknown file type %d", ftype);
    char *arch = NULL;
    if (g4_gguf_get_str(f, "general.architecture", &arch, NULL) || !arch) arch = strdup(G4_ARCH_NAME);
    if (!arch) return g4_seterr(err, "out of memory");
    int n_layer = (int)kv_u32(f, arch, "block_count", 1);
    int n_expert = (int)kv_u32(f, arch, "expert_count", 0);
    uint32_t n_head = kv_u32(f, arch, "attention.head_count", 1);
    uint32_t n_head_kv = kv_u32(f, arch, "attention.head_count_kv", n_head);
    free(arch);
    int n_gqa = n_head_kv ? (int)(n_head / n_head_kv) : 1;
    bool has_output = g4_gguf_find_tensor(f, g4_tensors[G4_T_OUTPUT].gguf) != NULL;
    /* llama-quantize's per-tensor rules, by the tensor table's class of each
     * name (arch/gemma4.h); tensors outside the table keep their type */
    int n_attn_wv = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const g4_tensor_info *ti = g4_tensor_find(f->tensors[i].name, NULL);
        if (ti && ti->quant == G4_Q_ATTN_V) n_attn_wv++;
    }
    const g4_type_traits *bt = g4_type_info(base);
    bool quant = bt && bt->is_quantized;
    uint64_t *ord = llama_order(f);
    if (!ord) return g4_seterr(err, "out of memory");
    int i_attn_wv = 0, i_ffn_down = 0;
    for (uint64_t k = 0; k < f->n_tensors; k++) {
        const g4_gguf_tensor *t = &f->tensors[ord[k]];
        int layer = -1;
        const g4_tensor_info *ti = g4_tensor_find(t->name, &layer);
        int rule = ti ? ti->quant : G4_Q_KEEP;
        if (rule == G4_Q_KEEP || t->n_dims < 2) { out[ord[k]] = t->type; continue; }
        int nt = base;
        if (quant) {
            int ft = ftype;
            if (rule == G4_Q_OUTPUT || (rule == G4_Q_EMBD && !has_output)) {
                if (t->ne[0] % blck(nt)) nt = G4_Q8_0;
                else if (nt != G4_Q8_0) nt = G4_Q6_K;
            } else if (rule == G4_Q_ATTN_V) {
                if (ft == G4_FTYPE_Q2_K) nt = n_gqa >= 4 ? G4_Q4_K : G4_Q3_K;
                else if (ft == G4_FTYPE_Q3_K_M) nt = i_attn_wv < 2 ? G4_Q5_K : G4_Q4_K;
                else if (ft == G4_FTYPE_Q3_K_L) nt = G4_Q5_K;
                else if ((ft == G4_FTYPE_IQ4_NL || ft == G4_FTYPE_IQ4_XS) && n_gqa >= 4) nt = G4_Q5_K;
                else if ((ft == G4_FTYPE_Q4_K_M || ft == G4_FTYPE_Q5_K_M) && use_more_bits(i_attn_wv, n_attn_wv))
                    nt = G4_Q6_K;
                else if (ft == G4_FTYPE_Q4_K_S && i_attn_wv < 4) nt = G4_Q5_K;
                i_attn_wv++;
            } else if (rule == G4_Q_FFN_DOWN) {
                int il = i_ffn_down, nl = n_layer;
                if (n_expert > 1) {
                    il = layer;
                    if (il < 0 || il >= nl) il = 0;
                }
                if (ft == G4_FTYPE_Q2_K) nt = G4_Q3_K;
                else if (ft == G4_FTYPE_Q3_K_M) nt = il < nl / 16 ? G4_Q5_K : G4_Q4_K;
                else if (ft == G4_FTYPE_Q3_K_L) nt = G4_Q5_K;
                else if (ft == G4_FTYPE_Q4_K_M || ft == G4_FTYPE_Q5_K_M) { if (use_more_bits(il, nl)) nt = G4_Q6_K; }
                else if (ft == G4_FTYPE_Q4_K_S && il < nl / 8) nt = G4_Q5_K;
                else if (il < nl / 8 && (ft == G4_FTYPE_IQ4_NL || ft == G4_FTYPE_IQ4_XS)) nt = G4_Q5_K;
                i_ffn_down++;
            } else if (rule == G4_Q_ATTN_OUT) {
                if (ft == G4_FTYPE_Q2_K) nt = G4_Q3_K;
                else if (ft == G4_FTYPE_Q3_K_M) nt = G4_Q4_K;
                else if (ft == G4_FTYPE_Q3_K_L) nt = G4_Q5_K;
            }
            /* fallbacks when the row length is not a multiple of the block */
            if (t->ne[0] % blck(nt)) {
                switch (nt) {
                case G4_Q2_K: case G4_Q3_K: nt = G4_Q4_0; break;
                case G4_IQ4_XS: nt = G4_IQ4_NL; break;
                case G4_Q4_K: nt = G4_Q5_0; break;
                case G4_Q5_K: nt = G4_Q5_1; break;
                case G4_Q6_K: nt = G4_Q8_0; break;
                default: break;
                }
                if (t->ne[0] % blck(nt)) nt = G4_F16;
            }
        }
        out[ord[k]] = nt;
    }
    free(ord);
    return 0;
}

int g4_convert_plan(const g4_gguf_file *f, int ftype, int *out, g4_error *err) {
    int base = g4_ftype_base_type(ftype);
    if (base < 0) return g4_seterr(err, "unknown file type %d", ftype);
    const g4_type_traits *bt = g4_type_info(base);
    if (bt->is_quantized) return g4_quant_plan(f, ftype, out, err);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const g4_gguf_tensor *t = &f->tensors[i];
        out[i] = g4_hf_force_f32(t->name, t->n_dims) ? G4_F32 : base;
    }
    return 0;
}

/* --- conversion driver ------------------------------------------------------ */

typedef struct range { uintptr_t lo, hi; } range;

typedef struct conv_ctx {
    const g4_gguf_file *f;
    const uint64_t *src_of;   /* output index -> f->tensors index */
    const g4_gguf_tensor *out;   /* output descriptors */
    int n_threads;
    const range *drop;        /* file mappings whose pages may be dropped */
    size_t n_drop;
} conv_ctx;

static int to_f32(int type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case G4_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case G4_F16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = g4_fp16_to_fp32(h); }
        return 0;
    }
    case G4_BF16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = g4_bf16_to_fp32(h); }
        return 0;
    }
    default: {
        const g4_type_traits *t = g4_type_info(type);
        if (!t || !t->to_float) return -1;
        t->to_float(src, dst, n);
        return 0;
    }
    }
}

static int from_f32(int type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case G4_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case G4_F16: {
        uint8_t *p = dst;
        for (int64_t i = 0; i < n; i++) { uint16_t h = g4_fp32_to_fp16(src[i]); memcpy(p + 2 * i, &h, 2); }
        return 0;
    }
    case G4_BF16: {
        uint8_t *p = dst;
        for (int64_t i = 0; i < n; i++) { uint16_t h = g4_fp32_to_bf16(src[i]); memcpy(p + 2 * i, &h, 2); }
        return 0;
    }
    default: {
        const g4_type_traits *t = g4_type_info(type);
        if (!t || !t->from_float) return -1;
        t->from_float(src, dst, n);
        return 0;
    }
    }
}

static bool can_convert(int from, int to) {
    if (from == to) return true;
    const g4_type_traits *a = g4_type_info(from), *b = g4_type_info(to);
    if (!a || !b) return false;
    bool ra = from == G4_F32 || from == G4_F16 || from == G4_BF16 || a->to_float;
    bool rb = to == G4_F32 || to == G4_F16 || to == G4_BF16 || b->from_float;
    return ra && rb;
}

typedef struct job {
    const g4_gguf_tensor *src;
    int dtype;
    int64_t row0, nrows;
    uint8_t *dst;
    int rc;
} job;

static void *run_job(void *p) {
    job *j = p;
    const g4_gguf_tensor *s = j->src;
    int64_t ne0 = s->ne[0];
    size_t srow = g4_row_size(s->type, ne0), drow = g4_row_size(j->dtype, ne0);
    const uint8_t *src = (const uint8_t *)s->data + (size_t)j->row0 * srow;
    if (s->type == j->dtype) {
        memcpy(j->dst, src, (size_t)j->nrows * srow);
        return NULL;
    }
    float *tmp = malloc((size_t)ne0 * sizeof *tmp);
    if (!tmp) { j->rc = -1; return NULL; }
    for (int64_t r = 0; r < j->nrows && !j->rc; r++) {
        if (to_f32(s->type, src + (size_t)r * srow, tmp, ne0) ||
            from_f32(j->dtype, tmp, j->dst + (size_t)r * drow, ne0))
            j->rc = -1;
    }
    free(tmp);
    return NULL;
}

static int conv_fill(void *ud, uint64_t ti, int64_t row0, int64_t nrows, void *dst, g4_error *err) {
    conv_ctx *c = ud;
    const g4_gguf_tensor *s = &c->f->tensors[c->src_of[ti]];
    int dtype = c->out[ti].type;
    int nt = c->n_threads;
    /* threads only pay off on big chunks */
    int64_t work = nrows * s->ne[0];
    if (work < (1 << 16) || s->type == dtype) nt = 1;
    if (nt > nrows) nt = (int)nrows;
    job jobs[256];
    pthread_t th[256];
    if (nt > 256) nt = 256;
    size_t drow = g4_row_size(dtype, s->ne[0]);
    int64_t per = (nrows + nt - 1) / nt, r = row0;
    int started = 0;
    for (int i = 0; i < nt && r < row0 + nrows; i++) {
        int64_t k = row0 + nrows - r < per ? row0 + nrows - r : per;
        jobs[i] = (job){ s, dtype, r, k, (uint8_t *)dst + (size_t)(r - row0) * drow, 0 };
        r += k;
        started++;
    }
    bool created[256] = { false };
    for (int i = 1; i < started; i++)
        created[i] = pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0;
    for (int i = 1; i < started; i++)
        if (!created[i]) run_job(&jobs[i]);   /* no thread: do it here */
    run_job(&jobs[0]);
    int rc = jobs[0].rc;
    for (int i = 1; i < started; i++) {
        if (created[i]) pthread_join(th[i], NULL);
        if (jobs[i].rc) rc = -1;
    }
    if (rc)
        return g4_seterr(err, "tensor '%s': cannot convert %s to %s (no kernel for this type)", G4_ESC(s->name),
                         g4_type_name(s->type), g4_type_name(dtype));
    /* Drop the source pages we just consumed so a multi-GB conversion keeps
     * a small resident set (they are clean file pages). */
    if (c->n_drop) {
        size_t srow = g4_row_size(s->type, s->ne[0]);
        long pg = sysconf(_SC_PAGESIZE);
        uintptr_t lo = (uintptr_t)s->data + (uintptr_t)row0 * srow, hi = lo + (uintptr_t)nrows * srow;
        for (size_t i = 0; i < c->n_drop; i++) {
            uintptr_t a = lo > c->drop[i].lo ? lo : c->drop[i].lo, b = hi < c->drop[i].hi ? hi : c->drop[i].hi;
            a = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
            b &= ~((uintptr_t)pg - 1);
            if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
        }
    }
    return 0;
}

static int write_converted(const g4_gguf_file *f, const int *types, const uint64_t *order, const g4_gguf_kv *const *kvs,
                           uint64_t n_kvs, const char *path, const g4_conv_opts *o, const range *drop,
                           size_t n_drop, g4_error *err) {
    g4_conv_opts defo = { 1, false, NULL, NULL };
    if (!o) o = &defo;
    uint64_t n = f->n_tensors;
    g4_gguf_tensor *out = calloc(n ? n : 1, sizeof *out);
    uint64_t *src_of = malloc((n ? n : 1) * sizeof *src_of);
    if (!out || !src_of) { free(out); free(src_of); return g4_seterr(err, "out of memory"); }
    int rc = 0;
    for (uint64_t i = 0; i < n && !rc; i++) {
        uint64_t si = order ? order[i] : i;
        const g4_gguf_tensor *s = &f->tensors[si];
        int dt = types[si];
        size_t row = g4_row_size(dt, s->ne[0]);
        if (!row) {
            rc = g4_seterr(err, "tensor '%s': row of %lld is not a multiple of the %s block", G4_ESC(s->name),
                           (long long)s->ne[0], g4_type_name(dt));
            break;
        }
        if (!can_convert(s->type, dt)) {
            rc = g4_seterr(err, "tensor '%s': no kernel to convert %s to %s", G4_ESC(s->name), g4_type_name(s->type),
                           g4_type_name(dt));
            break;
        }
        if (!s->data) { rc = g4_seterr(err, "tensor '%s': no data", G4_ESC(s->name)); break; }
        src_of[i] = si;
        out[i] = *s;
        out[i].type = dt;
        out[i].data = NULL;
        out[i].nbytes = row * (size_t)(s->ne[1] * s->ne[2] * s->ne[3]);
    }
    if (!rc) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        conv_ctx c = { f, src_of, out, o->n_threads > 0 ? o->n_threads : (int)(ncpu > 0 ? ncpu : 1), drop, n_drop };
        g4_gguf_write_opts wo = {
            .kvs = kvs, .n_kvs = n_kvs, .tensors = out, .n_tensors = n, .fill = conv_fill, .ud = &c,
            .force = o->force, .progress_fn = o->progress, .progress_ud = o->progress_ud,
        };
        rc = g4_gguf_write_ex(f, path, &wo, err);
    }
    free(out);
    free(src_of);
    return rc;
}

int g4_write_converted(const g4_gguf_file *f, const int *types, const uint64_t *order, const g4_gguf_kv *const *kvs,
                       uint64_t n_kvs, const char *path, const g4_conv_opts *o, g4_error *err) {
    return write_converted(f, types, order, kvs, n_kvs, path, o, NULL, 0, err);
}

int g4_convert_hf(const char *dir, const char *out, int ftype, const char *name, const g4_conv_opts *o,
                  g4_error *err) {
    if (g4_ftype_base_type(ftype) < 0) return g4_seterr(err, "unknown output type %d", ftype);
    g4_hf_opts ho = { name, false };
    g4_gguf_file *f = g4_hf_open_ex(dir, &ho, err);
    if (!f) return -1;
    int *types = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *types);
    int rc = types ? g4_convert_plan(f, ftype, types, err) : g4_seterr(err, "out of memory");
    if (!rc && g4_gguf_set_u32(f, "general.file_type", (uint32_t)ftype)) rc = g4_seterr(err, "out of memory");
    range *drop = NULL;
    size_t n_drop = 0;
    const g4_st_set *s = f->extra;  /* g4_hf_open keeps the shards here */
    if (!rc && s && s->n_files) {
        drop = malloc(s->n_files * sizeof *drop);
        for (size_t i = 0; drop && i < s->n_files; i++)
            if (s->files[i]->map)
                drop[n_drop++] = (range){ (uintptr_t)s->files[i]->buf, (uintptr_t)s->files[i]->buf + s->files[i]->size };
    }
    if (!rc) rc = write_converted(f, types, NULL, NULL, 0, out, o, drop, n_drop, err);
    free(drop);
    free(types);
    g4_gguf_close(f);
    return rc;
}

int g4_quantize_gguf(const char *in, const char *out, int ftype, const g4_conv_opts *o, g4_error *err) {
    if (g4_ftype_base_type(ftype) < 0) return g4_seterr(err, "unknown output type %d", ftype);
    g4_gguf_file *f = g4_gguf_open(in, err);
    if (!f) return -1;
    int rc = 0;
    int *types = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *types);
    uint64_t *ord = llama_order(f);
    const g4_gguf_kv **kvs = malloc((f->n_kv + 2) * sizeof *kvs);
    if (!types || !ord || !kvs) rc = g4_seterr(err, "out of memory");
    if (!rc) rc = g4_quant_plan(f, ftype, types, err);
    uint64_t n_kvs = 0;
    /* llama-quantize re-adds these two at the end */
    g4_gguf_kv qv = { .key = "general.quantization_version", .type = GGUF_UINT32, .v.u = 2 };
    g4_gguf_kv ft = { .key = "general.file_type", .type = GGUF_UINT32, .v.u = (uint64_t)ftype };
    if (!rc) {
        for (uint64_t i = 0; i < f->n_kv; i++)
            if (strcmp(f->kv[i].key, qv.key) && strcmp(f->kv[i].key, ft.key)) kvs[n_kvs++] = &f->kv[i];
        kvs[n_kvs++] = &qv;
        kvs[n_kvs++] = &ft;
        range drop = { (uintptr_t)f->map, (uintptr_t)f->map + f->map_size };
        rc = write_converted(f, types, ord, (const g4_gguf_kv *const *)kvs, n_kvs, out, o, &drop, f->map ? 1 : 0, err);
    }
    free(kvs);
    free(ord);
    free(types);
    g4_gguf_close(f);
    return rc;
}
