/* Loading a Gemma 4 text model from a g4_gguf_file: hyper-parameters from the
 * `gemma4.*` metadata, the per-layer table, and weight views checked against
 * the shapes the config implies. Nothing is copied except 1-D vectors. */
#include "model/model.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/gemma4.h"
#include "tensor/types.h"
#include "tensor/vec_kv.h"
#include "util/esc.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

void g4_release_rows(const g4_mat *w, const void *p, size_t len) {
    /* A read fault maps more than the page it hits: up to 64 KB of cached
     * neighbours (fault-around), and, on kernels whose page cache holds
     * large folios (a file read or written through another path, e.g. a
     * mapping with 2 MB pages), the whole folio, up to one page table's
     * span (2 MB with 4 KB pages; measured: a 512-token prompt left 750 MB
     * of E2B's table mapped with a 64 KB window). Drop that whole aligned
     * span, kept inside the table; unmapped parts cost only the walk. */
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    const uintptr_t win = (uintptr_t)pg * ((uintptr_t)pg / sizeof(uint64_t));
    uintptr_t t0 = ((uintptr_t)w->data + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1);
    uintptr_t t1 = ((uintptr_t)w->data + (size_t)w->n_mat * (size_t)w->n_out * w->row_bytes) & ~(uintptr_t)(pg - 1);
    uintptr_t a = (uintptr_t)p & ~(win - 1), b = ((uintptr_t)p + len + win - 1) & ~(win - 1);
    if (a < t0) a = t0;
    if (b > t1) b = t1;
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* The per-layer-embedding table (~1-3 GB) is read one row (a few KB) per
 * token. Without this hint every row fault reads ahead 128 KB+, so a long
 * prompt pulls hundreds of MB of neighbouring rows into memory for nothing;
 * and it asks for 4 KB pages (the rest of the file asks for 2 MB ones, see
 * format/mapfile.h): a 2 MB page per row would do the same. */
void g4_advise_row_table(const g4_mat *w) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || !w->data) return;
    uintptr_t a = (uintptr_t)w->data, e = a + (size_t)w->n_mat * (size_t)w->n_out * w->row_bytes;
    a &= ~(uintptr_t)(pg - 1);
    (void)madvise((void *)a, e - a, MADV_RANDOM);   /* hints: failure changes nothing */
#ifdef MADV_NOHUGEPAGE
    (void)madvise((void *)a, e - a, MADV_NOHUGEPAGE);
#endif
}

#define ARCH G4_ARCH_NAME

typedef struct loader {
    g4_model *m;
    g4_gguf_file *f;
    g4_error *err;
    g4_arch_dims dims;   /* model sizes the tensor table's shapes refer to */
} loader;

/* Required scalar u32 metadata "gemma4.<key>". */
static int need_u32(loader *ld, const char *key, int *out, int lo, int hi) {
    char full[128];
    snprintf(full, sizeof full, ARCH ".%s", key);
    uint32_t v;
    int r = g4_gguf_get_u32(ld->f, full, &v, ld->err);
    if (r < 0) return -1;
    if (r > 0) return g4_seterr(ld->err, "%s: required metadata '%s' is missing", ld->f->path, full);
    if ((int64_t)v < lo || (int64_t)v > hi)
        return g4_seterr(ld->err, "%s: metadata '%s' = %u is out of range [%d, %d]", ld->f->path, full, v, lo, hi);
    *out = (int)v;
    return 0;
}

static int opt_u32(loader *ld, const char *key, int *out, int def, int lo, int hi) {
    char full[128];
    snprintf(full, sizeof full, ARCH ".%s", key);
    uint32_t v;
    int r = g4_gguf_get_u32(ld->f, full, &v, ld->err);
    if (r < 0) return -1;
    if (r > 0) { *out = def; return 0; }
    if ((int64_t)v < lo || (int64_t)v > hi)
        return g4_seterr(ld->err, "%s: metadata '%s' = %u is out of range [%d, %d]", ld->f->path, full, v, lo, hi);
    *out = (int)v;
    return 0;
}

static int opt_f32(loader *ld, const char *key, float *out, float def) {
    char full[128];
    snprintf(full, sizeof full, ARCH ".%s", key);
    int r = g4_gguf_get_f32(ld->f, full, out, ld->err);
    if (r < 0) return -1;
    if (r > 0) *out = def;
    if (!isfinite(*out)) return g4_seterr(ld->err, "%s: metadata '%s' is not finite", ld->f->path, full);
    return 0;
}

/* A per-layer integer that GGUF stores either as one scalar or as an array
 * with one entry per layer (feed_forward_length, head_count_kv). */
static int per_layer_u32(loader *ld, const char *key, int *out, int n_layer, int def, bool required, int lo,
                         int hi) {
    char full[128];
    snprintf(full, sizeof full, ARCH ".%s", key);
    const g4_gguf_kv *kv = g4_gguf_find_kv(ld->f, full);
    if (!kv) {
        if (required) return g4_seterr(ld->err, "%s: required metadata '%s' is missing", ld->f->path, full);
        for (int i = 0; i < n_layer; i++) out[i] = def;
        return 0;
    }
    if (kv->type == GGUF_ARRAY) {
        if (kv->arr_type == GGUF_STRING || kv->arr_type == GGUF_FLOAT32 || kv->arr_type == GGUF_FLOAT64 ||
            kv->arr_type == GGUF_BOOL)
            return g4_seterr(ld->err, "%s: metadata '%s' must be an integer array", ld->f->path, full);
        if (kv->arr_n != (uint64_t)n_layer)
            return g4_seterr(ld->err, "%s: metadata '%s' has %llu entries, expected one per layer (%d)",
                             ld->f->path, full, (unsigned long long)kv->arr_n, n_layer);
        for (int i = 0; i < n_layer; i++) {
            int64_t v = g4_gguf_arr_i64(kv, (uint64_t)i);
            if (v < lo || v > hi)
                return g4_seterr(ld->err, "%s: metadata '%s'[%d] = %lld is out of range [%d, %d]", ld->f->path,
                                 full, i, (long long)v, lo, hi);
            out[i] = (int)v;
        }
        return 0;
    }
    int v;
    if (need_u32(ld, key, &v, lo, hi)) return -1;
    for (int i = 0; i < n_layer; i++) out[i] = v;
    return 0;
}

static int check_type(loader *ld, const g4_gguf_tensor *t, bool matrix) {
    const g4_type_traits *tr = g4_type_info(t->type);
    if (!tr || !tr->to_float || (matrix && (!tr->dot_f32 || !tr->vec_dot)))
        return g4_seterr(ld->err, "%s: tensor '%s' has type %s, which gemma4c cannot compute with yet",
                         ld->f->path, G4_ESC(t->name), g4_type_name(t->type));
    return 0;
}

/* Matrix view of t with the shape the table gives {n_in, n_out[, n_mat]}. */
static int get_mat(loader *ld, g4_mat *out, const g4_gguf_tensor *t, const int64_t ne[3]) {
    int64_t n_in = ne[0], n_out = ne[1], n_mat = ne[2];
    int want_dims = n_mat > 1 ? 3 : 2;
    int64_t got_mat = t->n_dims >= 3 ? t->ne[2] : 1;
    if (t->n_dims > want_dims || t->ne[0] != n_in || t->ne[1] != n_out || got_mat != n_mat || t->ne[3] != 1)
        return g4_seterr(ld->err,
                         "%s: tensor '%s' has shape {%lld, %lld, %lld}, the config implies {%lld, %lld, %lld}",
                         ld->f->path, G4_ESC(t->name), (long long)t->ne[0], (long long)t->ne[1],
                         (long long)got_mat, (long long)n_in, (long long)n_out, (long long)n_mat);
    if (check_type(ld, t, true)) return -1;
    out->data = t->data;
    out->type = t->type;
    out->n_in = n_in;
    out->n_out = n_out;
    out->n_mat = n_mat;
    out->row_bytes = g4_row_size(t->type, n_in);
    out->name = t->name;
    return 0;
}

/* 1-D vector of n elements, decoded to f32 and owned by the file. */
static int get_vec(loader *ld, float **out, const g4_gguf_tensor *t, int64_t n) {
    int64_t elems = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    if (elems != n)
        return g4_seterr(ld->err, "%s: tensor '%s' has %lld elements, expected %lld", ld->f->path,
                         G4_ESC(t->name), (long long)elems, (long long)n);
    if (check_type(ld, t, false)) return -1;
    float *v = g4_gguf_own(ld->f, malloc((size_t)n * sizeof(float)));
    if (!v) return g4_seterr(ld->err, "out of memory");
    g4_type_info(t->type)->to_float(t->data, v, n);
    *out = v;
    return 0;
}

/* Load table row ti (of layer `layer`) into dst: a g4_mat for matrices, a
 * float * for vectors. Absent and not required: dst cleared, 0. */
static int get_row(loader *ld, const g4_tensor_info *ti, int layer, const g4_arch_dims *d, void *dst,
                   bool required) {
    char name[128];
    g4_tensor_name(ti, layer, name, sizeof name);
    const g4_gguf_tensor *t = g4_gguf_find_tensor(ld->f, name);
    bool mat = ti->kind == G4_TK_WEIGHT || ti->kind == G4_TK_EMBD;
    if (mat) memset(dst, 0, sizeof(g4_mat));
    else *(float **)dst = NULL;
    if (!t) return required ? g4_seterr(ld->err, "%s: tensor '%s' is missing", ld->f->path, name) : 0;
    int64_t ne[3];
    g4_tensor_shape(ti, d, ne);
    return mat ? get_mat(ld, dst, t, ne) : get_vec(ld, dst, t, ne[0] * ne[1] * ne[2]);
}

static int load_hparams(loader *ld) {
    g4_model *m = ld->m;
    g4_gguf_file *f = ld->f;
    char *arch = NULL;
    int r = g4_gguf_get_str(f, "general.architecture", &arch, ld->err);
    if (r < 0) return -1;
    if (r > 0) return g4_seterr(ld->err, "%s: metadata 'general.architecture' is missing", f->path);
    if (strcmp(arch, ARCH)) {
        g4_seterr(ld->err, "%s: architecture is '%s'; gemma4c runs only '" ARCH "' (Gemma 4) models", f->path,
                  G4_ESC(arch));
        free(arch);
        return -1;
    }
    free(arch);
    if (g4_gguf_get_str(f, "general.name", &m->name, ld->err) < 0) return -1;

    if (need_u32(ld, "block_count", &m->n_layer, 1, 4096) ||
        need_u32(ld, "embedding_length", &m->n_embd, 1, 1 << 20) ||
        need_u32(ld, "attention.head_count", &m->n_head, 1, 4096) ||
        opt_u32(ld, "context_length", &m->n_ctx_train, 131072, 1, 1 << 24) ||
        need_u32(ld, "attention.key_length", &m->head_dim_full, 1, 1 << 16) ||
        opt_u32(ld, "attention.key_length_swa", &m->head_dim_swa, m->head_dim_full, 1, 1 << 16) ||
        opt_u32(ld, "attention.sliding_window", &m->sliding_window, 0, 0, 1 << 24) ||
        opt_u32(ld, "attention.shared_kv_layers", &m->n_kv_shared, 0, 0, m->n_layer) ||
        opt_u32(ld, "embedding_length_per_layer_input", &m->n_ple, 0, 0, 1 << 16) ||
        opt_u32(ld, "expert_count", &m->n_expert, 0, 0, 4096) ||
        opt_u32(ld, "expert_used_count", &m->n_expert_used, 0, 0, 4096) ||
        opt_u32(ld, "expert_feed_forward_length", &m->n_ff_exp, 0, 0, 1 << 20) ||
        opt_f32(ld, "attention.layer_norm_rms_epsilon", &m->eps, 1e-6f) ||
        opt_f32(ld, "final_logit_softcapping", &m->softcap, 0.0f))
        return -1;
    int vl, vl_swa;
    if (opt_u32(ld, "attention.value_length", &vl, m->head_dim_full, 1, 1 << 16) ||
        opt_u32(ld, "attention.value_length_swa", &vl_swa, m->head_dim_swa, 1, 1 << 16))
        return -1;
    if (vl != m->head_dim_full || vl_swa != m->head_dim_swa)
        return g4_seterr(ld->err, "%s: value_length (%d/%d) differs from key_length (%d/%d); Gemma 4 uses equal "
                         "K and V head sizes", f->path, vl, vl_swa, m->head_dim_full, m->head_dim_swa);
    if (m->n_expert && (m->n_expert_used < 1 || m->n_expert_used > m->n_expert || m->n_ff_exp < 1))
        return g4_seterr(ld->err, "%s: inconsistent MoE metadata: expert_count %d, expert_used_count %d, "
                         "expert_feed_forward_length %d", f->path, m->n_expert, m->n_expert_used, m->n_ff_exp);
    if (m->eps <= 0 || m->eps > 1)
        return g4_seterr(ld->err, "%s: layer_norm_rms_epsilon %g is not in (0, 1]", f->path, m->eps);
    return 0;
}

static int load_layers(loader *ld) {
    g4_model *m = ld->m;
    g4_gguf_file *f = ld->f;
    int L = m->n_layer;
    m->layers = g4_gguf_own(f, calloc((size_t)L, sizeof *m->layers));
    int *tmp = malloc((size_t)L * 2 * sizeof(int));
    if (!m->layers || !tmp) { free(tmp); return g4_seterr(ld->err, "out of memory"); }
    int *n_ff = tmp, *n_kv = tmp + L;
    if (per_layer_u32(ld, "feed_forward_length", n_ff, L, 0, true, 1, 1 << 22) ||
        per_layer_u32(ld, "attention.head_count_kv", n_kv, L, m->n_head, false, 1, m->n_head)) {
        free(tmp);
        return -1;
    }
    /* sliding pattern: bool array, true = sliding. Absent: all full. */
    const g4_gguf_kv *pat = g4_gguf_find_kv(f, ARCH ".attention.sliding_window_pattern");
    if (pat && (pat->type != GGUF_ARRAY || pat->arr_type == GGUF_STRING || pat->arr_n != (uint64_t)L)) {
        free(tmp);
        return g4_seterr(ld->err, "%s: metadata '" ARCH ".attention.sliding_window_pattern' must be a bool array "
                         "with one entry per layer (%d)", f->path, L);
    }
    float base_full, base_swa;
    int rot_full, rot_swa;
    if (opt_f32(ld, "rope.freq_base", &base_full, 1e6f) || opt_f32(ld, "rope.freq_base_swa", &base_swa, 1e4f) ||
        opt_u32(ld, "rope.dimension_count", &rot_full, m->head_dim_full, 2, m->head_dim_full) ||
        opt_u32(ld, "rope.dimension_count_swa", &rot_swa, m->head_dim_swa, 2, m->head_dim_swa)) {
        free(tmp);
        return -1;
    }
    if ((rot_full & 1) || (rot_swa & 1)) {
        free(tmp);
        return g4_seterr(ld->err, "%s: rope dimension counts must be even", f->path);
    }
    int first_shared = L - m->n_kv_shared;
    bool any_swa = false;
    for (int l = 0; l < L; l++) {
        g4_layer *y = &m->layers[l];
        y->swa = pat ? g4_gguf_arr_i64(pat, (uint64_t)l) != 0 : false;
        any_swa |= y->swa;
        y->head_dim = y->swa ? m->head_dim_swa : m->head_dim_full;
        y->n_kv_head = n_kv[l];
        y->n_ff = n_ff[l];
        y->rope_base = y->swa ? base_swa : base_full;
        y->n_rot = y->swa ? rot_swa : rot_full;
        y->own_kv = l < first_shared;
        y->kv_src = l;
        if (m->n_head % y->n_kv_head) {
            free(tmp);
            return g4_seterr(ld->err, "%s: layer %d: %d query heads are not a multiple of %d KV heads", f->path, l,
                             m->n_head, y->n_kv_head);
        }
    }
    free(tmp);
    if (any_swa && m->sliding_window < 1)
        return g4_seterr(ld->err, "%s: the model has sliding layers but no '" ARCH ".attention.sliding_window'",
                         f->path);
    /* KV sharing: a shared layer reads the last owning layer of the same type
     * (HF semantics; llama.cpp's positional rule agrees for released models). */
    for (int l = first_shared; l < L; l++) {
        g4_layer *y = &m->layers[l];
        int src = -1;
        for (int j = first_shared - 1; j >= 0; j--)
            if (m->layers[j].swa == y->swa) { src = j; break; }
        if (src < 0)
            return g4_seterr(ld->err, "%s: layer %d shares KV but no earlier %s layer owns a cache", f->path, l,
                             y->swa ? "sliding" : "full");
        if (m->layers[src].head_dim != y->head_dim || m->layers[src].n_kv_head != y->n_kv_head)
            return g4_seterr(ld->err, "%s: layer %d shares KV with layer %d but their head geometry differs",
                             f->path, l, src);
        y->kv_src = src;
    }
    int slot = 0;
    bool any_full = false;
    for (int l = 0; l < L; l++) {
        m->layers[l].kv_slot = m->layers[l].own_kv ? slot++ : -1;
        any_full |= !m->layers[l].swa;
    }
    ld->dims = (g4_arch_dims){ .n_embd = m->n_embd, .n_layer = L, .n_ple = m->n_ple, .n_head = m->n_head,
                               .n_expert = m->n_expert, .n_ff_exp = m->n_ff_exp,
                               /* rope_freqs: one divisor per rotated pair of the full layers */
                               .n_rope_pairs = (any_full ? rot_full : m->head_dim_full) / 2 };
    return 0;
}

/* Where each row of the tensor table (arch/gemma4.h) lands (model.h);
 * shared with the training parameters (backward.c). */
#define MF(id, field) [G4_T_##id] = offsetof(g4_model, field) + 1
#define LF(id, field) [G4_T_##id] = offsetof(g4_layer, field) + 1
const size_t g4_model_field[G4_T_COUNT] = {
    MF(ROPE_FREQS, rope_freqs), MF(TOKEN_EMBD, tok_embd), MF(PLE_EMBD, ple_embd),
    MF(PLE_MODEL_PROJ, ple_model_proj), MF(PLE_PROJ_NORM, ple_proj_norm), MF(OUTPUT_NORM, output_norm),
    MF(OUTPUT, output),
};
const size_t g4_layer_field[G4_T_COUNT] = {
    LF(ATTN_NORM, attn_norm), LF(ATTN_Q, wq), LF(ATTN_Q_NORM, q_norm), LF(ATTN_K, wk), LF(ATTN_K_NORM, k_norm),
    LF(ATTN_V, wv), LF(ATTN_OUT, wo), LF(POST_ATTN_NORM, post_attn_norm), LF(FFN_NORM, ffn_norm),
    LF(FFN_GATE, ffn_gate), LF(FFN_UP, ffn_up), LF(FFN_DOWN, ffn_down), LF(ROUTER, router),
    LF(ROUTER_SCALE, router_scale), LF(EXP_GATE_UP, exp_gate_up), LF(EXP_GATE, exp_gate), LF(EXP_UP, exp_up),
    LF(EXP_DOWN, exp_down), LF(EXP_SCALE, expert_scale), LF(POST_FFW_NORM_1, post_ffw_norm_1),
    LF(PRE_FFW_NORM_2, pre_ffw_norm_2), LF(POST_FFW_NORM_2, post_ffw_norm_2), LF(POST_FFW_NORM, post_ffw_norm),
    /* out_scale is a float: the loader decodes the vector and keeps its value */
    LF(OUT_SCALE, out_scale), LF(PLE_GATE, ple_gate), LF(PLE_PROJ, ple_proj), LF(PLE_POST_NORM, ple_post_norm),
};
#undef MF
#undef LF

static int load_weights(loader *ld) {
    g4_model *m = ld->m;
    int L = m->n_layer;
    const g4_gguf_tensor *te = g4_gguf_find_tensor(ld->f, g4_tensors[G4_T_TOKEN_EMBD].gguf);
    if (!te) return g4_seterr(ld->err, "%s: tensor 'token_embd.weight' is missing", ld->f->path);
    if (te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return g4_seterr(ld->err, "%s: tensor 'token_embd.weight' must be 2-D {n_embd, n_vocab}", ld->f->path);
    m->n_vocab = (int)te->ne[1];
    g4_arch_dims d = ld->dims;
    d.n_vocab = m->n_vocab;

    for (int i = 0; i < G4_T_COUNT; i++) {
        const g4_tensor_info *ti = &g4_tensors[i];
        if (ti->layer || !g4_tensor_present(ti, &d)) continue;
        if (ti->kind == G4_TK_ROPE) {
            const g4_gguf_tensor *rf = g4_gguf_find_tensor(ld->f, ti->gguf);
            if (rf && rf->type != G4_F32)
                return g4_seterr(ld->err, "%s: 'rope_freqs.weight' must be F32 (its 1e30 entries overflow %s)",
                                 ld->f->path, g4_type_name(rf->type));
        }
        if (get_row(ld, ti, 0, &d, (char *)m + g4_model_field[i] - 1, !(ti->flags & G4_TF_OPTIONAL))) return -1;
    }
    if (!m->output.data) m->output = m->tok_embd; /* tied */
    for (int i = 0; m->rope_freqs && i < d.n_rope_pairs; i++)
        if (!(m->rope_freqs[i] > 0))
            return g4_seterr(ld->err, "%s: 'rope_freqs.weight'[%d] = %g, expected a positive factor",
                             ld->f->path, i, m->rope_freqs[i]);
    if (m->n_ple > 0) {
        g4_advise_row_table(&m->ple_embd);
        const char *base = ld->f->map, *p = m->ple_embd.data;
        m->ple_in_file_map = base && p >= base &&
                             (size_t)(p - base) + (size_t)m->n_vocab * m->ple_embd.row_bytes <= ld->f->map_size;
    }

    for (int l = 0; l < L; l++) {
        g4_layer *y = &m->layers[l];
        d.head_dim = y->head_dim;
        d.n_kv_head = y->n_kv_head;
        d.n_ff = y->n_ff;
        d.own_kv = y->own_kv;
        d.k_eq_v = false;   /* not in the metadata: a missing V projection says so */
        if (!y->swa) y->rope_freqs = m->rope_freqs;
        float *scale = NULL;
        for (int i = 0; i < G4_T_COUNT; i++) {
            const g4_tensor_info *ti = &g4_tensors[i];
            /* the split experts are read only where the fused tensor is absent */
            if (!ti->layer || (ti->flags & G4_TF_VARIANT) || !g4_tensor_present(ti, &d)) continue;
            void *dst = i == G4_T_OUT_SCALE ? (void *)&scale : (char *)y + g4_layer_field[i] - 1;
            if (get_row(ld, ti, l, &d, dst, !(ti->flags & G4_TF_OPTIONAL))) return -1;
        }
        y->out_scale = scale[0];
        y->k_eq_v = y->own_kv && !y->wv.data;
        if (m->n_expert > 0 && !y->exp_gate_up.data &&
            (get_row(ld, &g4_tensors[G4_T_EXP_GATE], l, &d, &y->exp_gate, true) ||
             get_row(ld, &g4_tensors[G4_T_EXP_UP], l, &d, &y->exp_up, true)))
            return g4_preferr(ld->err, "MoE layer %d needs ffn_gate_up_exps or ffn_gate_exps + ffn_up_exps", l);
    }
    for (uint64_t i = 0; i < ld->f->n_tensors; i++) {
        const g4_gguf_tensor *t = &ld->f->tensors[i];
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        m->weight_bytes += t->nbytes;
    }
    return 0;
}

g4_model *g4_model_load(g4_gguf_file *f, g4_error *err) {
    g4_model *m = calloc(1, sizeof *m);
    if (!m) {
        g4_gguf_close(f);
        g4_seterr(err, "out of memory");
        return NULL;
    }
    m->file = f;
    m->bos_id = 2;
    m->eos_id = 1;
    loader ld = { .m = m, .f = f, .err = err };
    if (load_hparams(&ld) || load_layers(&ld) || load_weights(&ld)) {
        g4_model_free(m);
        return NULL;
    }
    uint32_t v;
    if (g4_gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &v, NULL) == 0) m->bos_id = (int)v;
    if (g4_gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &v, NULL) == 0) m->eos_id = (int)v;
    if (!m->name) {
        const char *base = strrchr(f->path, '/');
        m->name = strdup(base ? base + 1 : f->path);
    }
    return m;
}

void g4_model_free(g4_model *m) {
    if (!m) return;
    g4_gguf_close(m->file);
    free(m->name);
    free(m);
}

void g4_kv_plan_for(const g4_model *m, int n_ctx, int n_batch, g4_kv_plan *out) {
    g4_kv_plan_type(m, n_ctx, n_batch, G4_KV_F32, out);
}

void g4_kv_plan_type(const g4_model *m, int n_ctx, int n_batch, int t, g4_kv_plan *out) {
    memset(out, 0, sizeof *out);
    /* a sliding cache keeps W-1 past positions plus a whole batch (the batch's
     * own keys must stay until every query of it has attended) */
    uint64_t ring = (uint64_t)(m->sliding_window > 0 ? m->sliding_window - 1 : 0) + (uint64_t)n_batch;
    if (ring > (uint64_t)n_ctx) ring = (uint64_t)n_ctx;
    out->swa_ring = ring;
    for (int l = 0; l < m->n_layer; l++) {
        const g4_layer *y = &m->layers[l];
        if (!y->own_kv) continue;
        out->n_cache++;
        uint64_t per_pos = 2ull * (uint64_t)y->n_kv_head *
                           g4_kv_row_bytes(g4_kv_type_for(t, y->head_dim), (size_t)y->head_dim);
        if (y->swa) out->bytes_swa += per_pos * ring;
        else out->bytes_per_token_full += per_pos;
    }
    out->bytes_total = out->bytes_swa + out->bytes_per_token_full * (uint64_t)n_ctx;
}
