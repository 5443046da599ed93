/* Loading a Gemma 4 text model from a g4_gguf_file: hyper-parameters from the
 * `gemma4.*` metadata, the per-layer table, and weight views checked against
 * the shapes the config implies. Nothing is copied except 1-D vectors. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/types.h"

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

#define ARCH "gemma4"

typedef struct loader {
    g4_model *m;
    g4_gguf_file *f;
    g4_error *err;
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

static const g4_gguf_tensor *find(loader *ld, const char *fmt, int layer) {
    char name[128];
    snprintf(name, sizeof name, fmt, layer);
    return g4_gguf_find_tensor(ld->f, name);
}

static int check_type(loader *ld, const g4_gguf_tensor *t, bool matrix) {
    const g4_type_traits *tr = g4_type_info(t->type);
    if (!tr || !tr->to_float || (matrix && (!tr->dot_f32 || !tr->vec_dot)))
        return g4_seterr(ld->err, "%s: tensor '%s' has type %s, which gemma4c cannot compute with yet",
                         ld->f->path, t->name, g4_type_name(t->type));
    return 0;
}

/* Matrix view with the expected shape {n_in, n_out[, n_mat]}. */
static int get_mat(loader *ld, g4_mat *out, const char *fmt, int layer, int64_t n_in, int64_t n_out,
                   int64_t n_mat, bool required) {
    const g4_gguf_tensor *t = find(ld, fmt, layer);
    memset(out, 0, sizeof *out);
    char name[128];
    snprintf(name, sizeof name, fmt, layer);
    if (!t) {
        if (required) return g4_seterr(ld->err, "%s: tensor '%s' is missing", ld->f->path, name);
        return 0;
    }
    int want_dims = n_mat > 1 ? 3 : 2;
    int64_t got_mat = t->n_dims >= 3 ? t->ne[2] : 1;
    if (t->n_dims > want_dims || t->ne[0] != n_in || t->ne[1] != n_out || got_mat != n_mat || t->ne[3] != 1)
        return g4_seterr(ld->err,
                         "%s: tensor '%s' has shape {%lld, %lld, %lld}, the config implies {%lld, %lld, %lld}",
                         ld->f->path, t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)got_mat,
                         (long long)n_in, (long long)n_out, (long long)n_mat);
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
static int get_vec(loader *ld, float **out, const char *fmt, int layer, int64_t n, bool required) {
    const g4_gguf_tensor *t = find(ld, fmt, layer);
    *out = NULL;
    if (!t) {
        if (!required) return 0;
        char name[128];
        snprintf(name, sizeof name, fmt, layer);
        return g4_seterr(ld->err, "%s: tensor '%s' is missing", ld->f->path, name);
    }
    int64_t elems = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    if (elems != n)
        return g4_seterr(ld->err, "%s: tensor '%s' has %lld elements, expected %lld", ld->f->path, t->name,
                         (long long)elems, (long long)n);
    if (check_type(ld, t, false)) return -1;
    float *v = g4_gguf_own(ld->f, malloc((size_t)n * sizeof(float)));
    if (!v) return g4_seterr(ld->err, "out of memory");
    g4_type_info(t->type)->to_float(t->data, v, n);
    *out = v;
    return 0;
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
                  arch);
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
    for (int l = 0; l < L; l++) m->layers[l].kv_slot = m->layers[l].own_kv ? slot++ : -1;
    return 0;
}

static int load_weights(loader *ld) {
    g4_model *m = ld->m;
    int H = m->n_embd, L = m->n_layer, P = m->n_ple;
    const g4_gguf_tensor *te = g4_gguf_find_tensor(ld->f, "token_embd.weight");
    if (!te) return g4_seterr(ld->err, "%s: tensor 'token_embd.weight' is missing", ld->f->path);
    if (te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return g4_seterr(ld->err, "%s: tensor 'token_embd.weight' must be 2-D {n_embd, n_vocab}", ld->f->path);
    m->n_vocab = (int)te->ne[1];
    if (get_mat(ld, &m->tok_embd, "token_embd.weight", 0, H, m->n_vocab, 1, true) ||
        get_mat(ld, &m->output, "output.weight", 0, H, m->n_vocab, 1, false) ||
        get_vec(ld, &m->output_norm, "output_norm.weight", 0, H, true))
        return -1;
    if (!m->output.data) m->output = m->tok_embd; /* tied */

    /* rope_freqs: one divisor per rotated pair of the full layers */
    const g4_gguf_tensor *rf = g4_gguf_find_tensor(ld->f, "rope_freqs.weight");
    if (rf) {
        int rot_full = 0;
        for (int l = 0; l < L; l++) if (!m->layers[l].swa) rot_full = m->layers[l].n_rot;
        if (rot_full == 0) rot_full = m->head_dim_full;
        if (rf->type != 0)
            return g4_seterr(ld->err, "%s: 'rope_freqs.weight' must be F32 (its 1e30 entries overflow %s)",
                             ld->f->path, g4_type_name(rf->type));
        if (get_vec(ld, &m->rope_freqs, "rope_freqs.weight", 0, rot_full / 2, true)) return -1;
        for (int i = 0; i < rot_full / 2; i++)
            if (!(m->rope_freqs[i] > 0))
                return g4_seterr(ld->err, "%s: 'rope_freqs.weight'[%d] = %g, expected a positive factor",
                                 ld->f->path, i, m->rope_freqs[i]);
    }
    if (P > 0) {
        if (get_mat(ld, &m->ple_embd, "per_layer_token_embd.weight", 0, (int64_t)L * P, m->n_vocab, 1, true) ||
            get_mat(ld, &m->ple_model_proj, "per_layer_model_proj.weight", 0, H, (int64_t)L * P, 1, true) ||
            get_vec(ld, &m->ple_proj_norm, "per_layer_proj_norm.weight", 0, P, true))
            return -1;
        g4_advise_row_table(&m->ple_embd);
        const char *base = ld->f->map, *d = m->ple_embd.data;
        m->ple_in_file_map = base && d >= base &&
                             (size_t)(d - base) + (size_t)m->n_vocab * m->ple_embd.row_bytes <= ld->f->map_size;
    }
    for (int l = 0; l < L; l++) {
        g4_layer *y = &m->layers[l];
        int hd = y->head_dim, nq = m->n_head * hd, nkv = y->n_kv_head * hd;
        if (!y->swa) y->rope_freqs = m->rope_freqs;
        if (get_vec(ld, &y->attn_norm, "blk.%d.attn_norm.weight", l, H, true) ||
            get_mat(ld, &y->wq, "blk.%d.attn_q.weight", l, H, nq, 1, true) ||
            get_vec(ld, &y->q_norm, "blk.%d.attn_q_norm.weight", l, hd, true) ||
            get_mat(ld, &y->wo, "blk.%d.attn_output.weight", l, nq, H, 1, true) ||
            get_vec(ld, &y->post_attn_norm, "blk.%d.post_attention_norm.weight", l, H, true) ||
            get_vec(ld, &y->ffn_norm, "blk.%d.ffn_norm.weight", l, H, true) ||
            get_mat(ld, &y->ffn_gate, "blk.%d.ffn_gate.weight", l, H, y->n_ff, 1, true) ||
            get_mat(ld, &y->ffn_up, "blk.%d.ffn_up.weight", l, H, y->n_ff, 1, true) ||
            get_mat(ld, &y->ffn_down, "blk.%d.ffn_down.weight", l, y->n_ff, H, 1, true) ||
            get_vec(ld, &y->post_ffw_norm, "blk.%d.post_ffw_norm.weight", l, H, true))
            return -1;
        if (y->own_kv) {
            /* shared layers may carry unused K/V tensors (Google's upload): ignored */
            if (get_mat(ld, &y->wk, "blk.%d.attn_k.weight", l, H, nkv, 1, true) ||
                get_vec(ld, &y->k_norm, "blk.%d.attn_k_norm.weight", l, hd, true) ||
                get_mat(ld, &y->wv, "blk.%d.attn_v.weight", l, H, nkv, 1, false))
                return -1;
            y->k_eq_v = y->wv.data == NULL;
        }
        float *scale = NULL;
        if (get_vec(ld, &scale, "blk.%d.layer_output_scale.weight", l, 1, true)) return -1;
        y->out_scale = scale[0];
        if (P > 0) {
            if (get_mat(ld, &y->ple_gate, "blk.%d.inp_gate.weight", l, H, P, 1, true) ||
                get_mat(ld, &y->ple_proj, "blk.%d.proj.weight", l, P, H, 1, true) ||
                get_vec(ld, &y->ple_post_norm, "blk.%d.post_norm.weight", l, H, true))
                return -1;
        }
        if (m->n_expert > 0) {
            int E = m->n_expert, Fe = m->n_ff_exp;
            if (get_mat(ld, &y->router, "blk.%d.ffn_gate_inp.weight", l, H, E, 1, true) ||
                get_vec(ld, &y->router_scale, "blk.%d.ffn_gate_inp.scale", l, H, true) ||
                get_vec(ld, &y->expert_scale, "blk.%d.ffn_down_exps.scale", l, E, false) ||
                get_mat(ld, &y->exp_gate_up, "blk.%d.ffn_gate_up_exps.weight", l, H, 2 * Fe, E, false) ||
                get_mat(ld, &y->exp_down, "blk.%d.ffn_down_exps.weight", l, Fe, H, E, true) ||
                get_vec(ld, &y->pre_ffw_norm_2, "blk.%d.pre_ffw_norm_2.weight", l, H, true) ||
                get_vec(ld, &y->post_ffw_norm_1, "blk.%d.post_ffw_norm_1.weight", l, H, true) ||
                get_vec(ld, &y->post_ffw_norm_2, "blk.%d.post_ffw_norm_2.weight", l, H, true))
                return -1;
            if (!y->exp_gate_up.data &&
                (get_mat(ld, &y->exp_gate, "blk.%d.ffn_gate_exps.weight", l, H, Fe, E, true) ||
                 get_mat(ld, &y->exp_up, "blk.%d.ffn_up_exps.weight", l, H, Fe, E, true)))
                return g4_preferr(ld->err, "MoE layer %d needs ffn_gate_up_exps or ffn_gate_exps + ffn_up_exps", l);
        }
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
    loader ld = { m, f, err };
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
        uint64_t per_pos = 2ull * (uint64_t)y->n_kv_head * (uint64_t)y->head_dim * sizeof(float);
        if (y->swa) out->bytes_swa += per_pos * ring;
        else out->bytes_per_token_full += per_pos;
    }
    out->bytes_total = out->bytes_swa + out->bytes_per_token_full * (uint64_t)n_ctx;
}
