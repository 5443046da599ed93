/* Gemma 4 MTP assistant: loader and one drafting step (docs/gemma4-mtp.md).
 *
 * The loader reads "gemma4-assistant.*" metadata and checks every tensor's
 * shape against it and against the target: the pre-projection's input is
 * 2 H_t, the head dims equal the target's of that layer kind, the query
 * heads divide over the target's KV heads, the vocabulary is the target's.
 * A step reads the target's caches read-only and writes nothing. */
#include "model/assistant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/attention.h"
#include "tensor/act.h"
#include "tensor/types.h"
#include "util/esc.h"

#define AK G4_ASSISTANT_ARCH "."

typedef struct aload {
    g4_assistant *a;
    g4_gguf_file *f;
    g4_error *err;
} aload;

/* u32 metadata "gemma4-assistant.<key>" in [lo, hi]; absent: def, or an
 * error when def < 0 (required). */
static int u32_key(aload *ld, const char *key, int *out, int def, int lo, int hi) {
    char full[128];
    snprintf(full, sizeof full, AK "%s", key);
    uint32_t v;
    int r = g4_gguf_get_u32(ld->f, full, &v, ld->err);
    if (r < 0) return -1;
    if (r > 0) {
        if (def < 0) return g4_seterr(ld->err, "%s: required metadata '%s' is missing", ld->f->path, full);
        *out = def;
        return 0;
    }
    if ((int64_t)v < lo || (int64_t)v > hi)
        return g4_seterr(ld->err, "%s: metadata '%s' = %u is out of range [%d, %d]", ld->f->path, full, v, lo, hi);
    *out = (int)v;
    return 0;
}

static int f32_key(aload *ld, const char *key, float *out, float def) {
    char full[128];
    snprintf(full, sizeof full, AK "%s", key);
    int r = g4_gguf_get_f32(ld->f, full, out, ld->err);
    if (r < 0) return -1;
    if (r > 0) *out = def;
    if (!isfinite(*out)) return g4_seterr(ld->err, "%s: metadata '%s' is not finite", ld->f->path, full);
    return 0;
}

static const g4_gguf_tensor *need_tensor(aload *ld, const char *name) {
    const g4_gguf_tensor *t = g4_gguf_find_tensor(ld->f, name);
    if (!t) g4_seterr(ld->err, "%s: tensor '%s' is missing", ld->f->path, name);
    return t;
}

/* Matrix {n_in, n_out} in a type the products compute with. */
static int get_mat(aload *ld, g4_mat *out, const char *name, int64_t n_in, int64_t n_out) {
    const g4_gguf_tensor *t = need_tensor(ld, name);
    if (!t) return -1;
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
        return g4_seterr(ld->err, "%s: tensor '%s' has shape {%lld, %lld, %lld}, expected {%lld, %lld}", ld->f->path,
                         name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)n_in,
                         (long long)n_out);
    const g4_type_traits *tr = g4_type_info(t->type);
    if (!tr || !tr->to_float || !tr->dot_f32 || !tr->vec_dot)
        return g4_seterr(ld->err, "%s: tensor '%s' has type %s, which gemma4c cannot compute with", ld->f->path,
                         name, g4_type_name(t->type));
    *out = (g4_mat){ .data = t->data, .type = t->type, .n_in = n_in, .n_out = n_out, .n_mat = 1,
                     .row_bytes = g4_row_size(t->type, n_in), .name = t->name };
    ld->a->weight_bytes += t->nbytes;
    return 0;
}

/* Vector of n elements decoded to f32 (owned by the file). */
static int get_vec(aload *ld, float **out, const char *name, int64_t n) {
    const g4_gguf_tensor *t = need_tensor(ld, name);
    if (!t) return -1;
    int64_t elems = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    if (elems != n)
        return g4_seterr(ld->err, "%s: tensor '%s' has %lld elements, expected %lld", ld->f->path, name,
                         (long long)elems, (long long)n);
    const g4_type_traits *tr = g4_type_info(t->type);
    if (!tr || !tr->to_float)
        return g4_seterr(ld->err, "%s: tensor '%s' has type %s, which gemma4c cannot read", ld->f->path, name,
                         g4_type_name(t->type));
    float *v = g4_gguf_own(ld->f, malloc((size_t)n * sizeof(float)));
    if (!v) return g4_seterr(ld->err, "out of memory");
    tr->to_float(t->data, v, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]) && !(t->type == G4_F32 && v[i] > 0))   /* rope_freqs holds 1e30 */
            return g4_seterr(ld->err, "%s: tensor '%s'[%lld] is not finite", ld->f->path, name, (long long)i);
    ld->a->weight_bytes += t->nbytes;
    *out = v;
    return 0;
}

/* The last target layer of a kind (its cache resolved through sharing). */
static int last_of_kind(const g4_model *t, bool swa) {
    for (int l = t->n_layer - 1; l >= 0; l--)
        if (t->layers[l].swa == swa) return l;
    return -1;
}

static int load_all(aload *ld, const g4_model *tm) {
    g4_assistant *a = ld->a;
    g4_gguf_file *f = ld->f;
    char *arch = NULL;
    int r = g4_gguf_get_str(f, "general.architecture", &arch, ld->err);
    if (r < 0) return -1;
    if (r > 0) return g4_seterr(ld->err, "%s: metadata 'general.architecture' is missing", f->path);
    if (strcmp(arch, G4_ASSISTANT_ARCH)) {
        g4_seterr(ld->err, "%s: architecture is '%s'; a drafter must be a '" G4_ASSISTANT_ARCH "' (Gemma 4 "
                  "multi-token-prediction assistant) file", f->path, G4_ESC(arch));
        free(arch);
        return -1;
    }
    free(arch);
    int hd_full, hd_swa, vl, vl_swa, rot_full, rot_swa, shared, ff;
    if (u32_key(ld, "block_count", &a->n_layer, -1, 1, 64) ||
        u32_key(ld, "embedding_length", &a->n_embd, -1, 1, 1 << 16) ||
        u32_key(ld, "embedding_length_out", &a->n_embd_out, -1, 1, 1 << 20) ||
        u32_key(ld, "attention.head_count", &a->n_head, -1, 1, 1024) ||
        u32_key(ld, "attention.key_length", &hd_full, -1, 2, 1 << 12) ||
        u32_key(ld, "attention.key_length_swa", &hd_swa, hd_full, 2, 1 << 12) ||
        u32_key(ld, "attention.value_length", &vl, hd_full, 1, 1 << 12) ||
        u32_key(ld, "attention.value_length_swa", &vl_swa, hd_swa, 1, 1 << 12) ||
        u32_key(ld, "attention.sliding_window", &a->sliding_window, tm->sliding_window, 0, 1 << 24) ||
        u32_key(ld, "attention.shared_kv_layers", &shared, a->n_layer, 0, 64) ||
        u32_key(ld, "rope.dimension_count", &rot_full, hd_full, 2, hd_full) ||
        u32_key(ld, "rope.dimension_count_swa", &rot_swa, hd_swa, 2, hd_swa) ||
        u32_key(ld, "feed_forward_length", &ff, -1, 1, 1 << 20) ||
        f32_key(ld, "attention.layer_norm_rms_epsilon", &a->eps, 1e-6f))
        return -1;
    float base_full, base_swa;
    if (f32_key(ld, "rope.freq_base", &base_full, 1e6f) || f32_key(ld, "rope.freq_base_swa", &base_swa, 1e4f))
        return -1;
    if (vl != hd_full || vl_swa != hd_swa)
        return g4_seterr(ld->err, "%s: value_length (%d/%d) differs from key_length (%d/%d)", f->path, vl, vl_swa,
                         hd_full, hd_swa);
    if ((rot_full & 1) || (rot_swa & 1)) return g4_seterr(ld->err, "%s: rope dimension counts must be even", f->path);
    if (shared != a->n_layer)
        return g4_seterr(ld->err, "%s: '" AK "attention.shared_kv_layers' = %d, but every one of the %d layers of an "
                         "assistant reads the target's cache", f->path, shared, a->n_layer);
    if (a->n_embd_out != tm->n_embd)
        return g4_seterr(ld->err, "%s: '" AK "embedding_length_out' = %d, but the target's width is %d (a drafter "
                         "for another model?)", f->path, a->n_embd_out, tm->n_embd);
    if (!(a->eps > 0 && a->eps <= 1))
        return g4_seterr(ld->err, "%s: layer_norm_rms_epsilon %g is not in (0, 1]", f->path, a->eps);
    if (a->sliding_window != tm->sliding_window)
        return g4_seterr(ld->err, "%s: sliding_window %d differs from the target's %d", f->path, a->sliding_window,
                         tm->sliding_window);
    const g4_gguf_kv *pat = g4_gguf_find_kv(f, AK "attention.sliding_window_pattern");
    if (pat && (pat->type != GGUF_ARRAY || pat->arr_type == GGUF_STRING || pat->arr_n != (uint64_t)a->n_layer))
        return g4_seterr(ld->err, "%s: metadata '" AK "attention.sliding_window_pattern' must be a bool array with "
                         "one entry per layer (%d)", f->path, a->n_layer);
    int H = a->n_embd, Ht = a->n_embd_out;

    const g4_gguf_tensor *te = need_tensor(ld, "token_embd.weight");
    if (!te) return -1;
    if (te->n_dims != 2 || te->ne[1] != tm->n_vocab)
        return g4_seterr(ld->err, "%s: tensor 'token_embd.weight' must be {%d, %d} (the target's vocabulary)",
                         f->path, H, tm->n_vocab);
    a->n_vocab = tm->n_vocab;
    if (get_mat(ld, &a->tok_embd, "token_embd.weight", H, a->n_vocab) ||
        get_mat(ld, &a->pre_proj, "nextn.pre_projection.weight", 2 * (int64_t)Ht, H) ||
        get_mat(ld, &a->post_proj, "nextn.post_projection.weight", H, Ht) ||
        get_vec(ld, &a->output_norm, "output_norm.weight", H))
        return -1;
    if (g4_gguf_find_tensor(f, "rope_freqs.weight")) {
        const g4_gguf_tensor *rf = g4_gguf_find_tensor(f, "rope_freqs.weight");
        if (rf->type != G4_F32)
            return g4_seterr(ld->err, "%s: 'rope_freqs.weight' must be F32", f->path);
        if (get_vec(ld, &a->rope_freqs, "rope_freqs.weight", rot_full / 2)) return -1;
        for (int i = 0; i < rot_full / 2; i++)
            if (!(a->rope_freqs[i] > 0))
                return g4_seterr(ld->err, "%s: 'rope_freqs.weight'[%d] = %g, expected a positive factor", f->path, i,
                                 a->rope_freqs[i]);
    }
    a->layers = g4_gguf_own(f, calloc((size_t)a->n_layer, sizeof *a->layers));
    if (!a->layers) return g4_seterr(ld->err, "out of memory");
    for (int l = 0; l < a->n_layer; l++) {
        g4_asst_layer *y = &a->layers[l];
        y->swa = pat ? g4_gguf_arr_i64(pat, (uint64_t)l) != 0 : false;
        y->head_dim = y->swa ? hd_swa : hd_full;
        y->n_rot = y->swa ? rot_swa : rot_full;
        y->rope_base = y->swa ? base_swa : base_full;
        y->rope_freqs = y->swa ? NULL : a->rope_freqs;
        int src = last_of_kind(tm, y->swa);
        if (src < 0)
            return g4_seterr(ld->err, "%s: layer %d is a %s layer, but the target has none whose cache it could read",
                             f->path, l, y->swa ? "sliding" : "full");
        const g4_layer *ty = &tm->layers[tm->layers[src].kv_src];
        if (ty->head_dim != y->head_dim)
            return g4_seterr(ld->err, "%s: layer %d: head dim %d, but the target's %s cache has %d", f->path, l,
                             y->head_dim, y->swa ? "sliding" : "full", ty->head_dim);
        if (a->n_head % ty->n_kv_head)
            return g4_seterr(ld->err, "%s: %d query heads do not divide over the target's %d KV heads (layer %d)",
                             f->path, a->n_head, ty->n_kv_head, l);
        y->src = src;
        int nq = a->n_head * y->head_dim;
        if (nq > a->nq_max) a->nq_max = nq;
        if (y->head_dim > a->hd_max) a->hd_max = y->head_dim;
        char n[96];
#define NM(s) (snprintf(n, sizeof n, "blk.%d." s ".weight", l), n)
        if (get_vec(ld, &y->attn_norm, NM("attn_norm"), H) || get_mat(ld, &y->wq, NM("attn_q"), H, nq) ||
            get_vec(ld, &y->q_norm, NM("attn_q_norm"), y->head_dim) ||
            get_mat(ld, &y->wo, NM("attn_output"), nq, H) ||
            get_vec(ld, &y->post_attn_norm, NM("post_attention_norm"), H) ||
            get_vec(ld, &y->ffn_norm, NM("ffn_norm"), H) || get_mat(ld, &y->ffn_gate, NM("ffn_gate"), H, ff) ||
            get_mat(ld, &y->ffn_up, NM("ffn_up"), H, ff) || get_mat(ld, &y->ffn_down, NM("ffn_down"), ff, H) ||
            get_vec(ld, &y->post_ffw_norm, NM("post_ffw_norm"), H))
            return -1;
        float *sc;
        if (get_vec(ld, &sc, NM("layer_output_scale"), 1)) return -1;
#undef NM
        y->out_scale = sc[0];
    }
    a->ff_max = ff;
    return 0;
}

g4_assistant *g4_assistant_load(g4_gguf_file *f, const g4_model *target, g4_error *err) {
    g4_assistant *a = calloc(1, sizeof *a);
    if (!a) {
        g4_gguf_close(f);
        g4_seterr(err, "out of memory");
        return NULL;
    }
    a->file = f;
    aload ld = { a, f, err };
    if (load_all(&ld, target)) {
        g4_assistant_free(a);
        return NULL;
    }
    return a;
}

void g4_assistant_free(g4_assistant *a) {
    if (!a) return;
    g4_gguf_close(a->file);
    free(a);
}

/* ---- one step ------------------------------------------------------------------ */

struct g4_asst_ws {
    const g4_assistant *a;
    g4_exec ex;
    float *in;       /* [2 H_t]: embedding, then the hidden row */
    float *z, *n, *h2, *q, *att, *ffa, *ffb, *cs, *attn_ws, *logits;
};

void g4_asst_ws_free(g4_asst_ws *w) {
    if (!w) return;
    free(w->in);
    free(w->ex.mm.act);
    g4_pool_release(w->ex.pool);
    free(w);
}

g4_asst_ws *g4_asst_ws_new(const g4_assistant *a, int n_threads, int precision, g4_error *err) {
    g4_asst_ws *w = calloc(1, sizeof *w);
    if (!w) { g4_seterr(err, "out of memory"); return NULL; }
    g4_act_init();
    w->a = a;
    w->ex.precision = precision;
    w->ex.pool = g4_pool_acquire(n_threads > 0 ? n_threads : 1);
    if (!w->ex.pool) goto oom;
    w->ex.n_threads = g4_pool_size(w->ex.pool);
    size_t H = (size_t)a->n_embd, Ht = (size_t)a->n_embd_out, nq = (size_t)a->nq_max, F = (size_t)a->ff_max;
    size_t rot = (size_t)a->hd_max;
    size_t aw = g4_attn_ws_floats(w->ex.n_threads, a->n_head, a->nq_max);
    size_t sizes[] = { 2 * Ht, H, H, H, nq, nq, F, F, rot, aw, (size_t)a->n_vocab };
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += sizes[i];
    w->in = malloc(total * sizeof(float));
    if (!w->in) goto oom;
    float **bufs[] = { &w->in, &w->z, &w->n, &w->h2, &w->q, &w->att, &w->ffa, &w->ffb, &w->cs, &w->attn_ws,
                       &w->logits };
    float *p = w->in;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) { *bufs[i] = p; p += sizes[i]; }
    /* quantized activations of the widest input (2 H_t, nq, F or H) */
    size_t mi = 2 * Ht;
    if (nq > mi) mi = nq;
    if (F > mi) mi = F;
    if (H > mi) mi = H;
    w->ex.mm.act_bytes = (mi + 1024) * sizeof(float);
    w->ex.mm.act = malloc(w->ex.mm.act_bytes);
    if (!w->ex.mm.act) goto oom;
    return w;
oom:
    g4_asst_ws_free(w);
    g4_seterr(err, "out of memory allocating the drafter's workspace");
    return NULL;
}

int32_t g4_assistant_step(g4_asst_ws *w, const g4_model *tm, g4_seq *seq, int32_t x, const float *h, int pos,
                          float *h_out, float *logits, g4_error *err) {
    const g4_assistant *a = w->a;
    g4_exec *ex = &w->ex;
    int H = a->n_embd, Ht = a->n_embd_out, nH = a->n_head;
    if (x < 0 || x >= tm->n_vocab) return g4_seterr(err, "drafter: token id %d outside the vocabulary", x);
    if (pos < 1 || pos > seq->n_past || seq->m != tm)
        return g4_seterr(err, "drafter: position %d but the target's cache holds %d", pos, seq->n_past);
    /* 1-2: the target's scaled embedding and h, projected to H_a */
    g4_type_info(tm->tok_embd.type)->to_float(g4_mat_row(&tm->tok_embd, 0, x), w->in, Ht);
    g4_op_scale(w->in, (size_t)Ht, sqrtf((float)Ht));
    memcpy(w->in + Ht, h, (size_t)Ht * sizeof(float));
    g4_op_matmul(ex, &a->pre_proj, 0, w->in, 2 * Ht, 1, w->z, H);
    /* 3: the layers; every query sits at pos and sees the target's keys
     * before it (the pending token is not in the cache) */
    for (int l = 0; l < a->n_layer; l++) {
        const g4_asst_layer *y = &a->layers[l];
        int hd = y->head_dim, nq = nH * hd;
        const g4_kv_view *kv = g4_seq_cache(seq, y->src);
        int nkv = tm->layers[tm->layers[y->src].kv_src].n_kv_head;
        int32_t p = pos, lo = 0, hi = pos;
        if (y->swa && a->sliding_window > 0 && pos - a->sliding_window + 1 > 0) lo = pos - a->sliding_window + 1;
        g4_op_rope_table(w->cs, &p, 1, y->n_rot, y->rope_base, y->rope_freqs);
        g4_op_rmsnorm(ex, w->n, w->z, y->attn_norm, 1, H, (size_t)H, a->eps, NULL);
        g4_op_matmul(ex, &y->wq, 0, w->n, H, 1, w->q, nq);
        for (int g = 0; g < nH; g++) {
            float *q = w->q + (size_t)g * hd;
            g4_rmsnorm(q, q, y->q_norm, hd, a->eps);
            g4_op_rope(q, w->cs, y->n_rot);
        }
        g4_attn at = { .q = w->q, .out = w->att, .T = 1, .n_head = nH, .n_kv_head = nkv, .head_dim = hd,
                       .kv = &kv, .lo = &lo, .hi = &hi };
        g4_op_attention(ex, &at, w->attn_ws, a->nq_max);
        g4_op_matmul(ex, &y->wo, 0, w->att, nq, 1, w->h2, H);
        g4_op_rmsnorm(ex, w->h2, w->h2, y->post_attn_norm, 1, H, (size_t)H, a->eps, w->z);
        int F = (int)y->ffn_gate.n_out;
        g4_op_rmsnorm(ex, w->n, w->z, y->ffn_norm, 1, H, (size_t)H, a->eps, NULL);
        g4_mm_job jobs[2] = { { .w = &y->ffn_gate, .y = w->ffa, .ldy = F }, { .w = &y->ffn_up, .y = w->ffb, .ldy = F } };
        g4_op_matmul_multi(ex, jobs, 2, w->n, H, 1);
        g4_op_geglu(ex, w->ffa, w->ffa, w->ffb, F);
        g4_op_matmul(ex, &y->ffn_down, 0, w->ffa, F, 1, w->h2, H);
        g4_op_rmsnorm(ex, w->h2, w->h2, y->post_ffw_norm, 1, H, (size_t)H, a->eps, w->z);
        g4_op_scale(w->z, (size_t)H, y->out_scale);
    }
    /* 4-6: final norm, tied head (no softcap), projection back to H_t */
    g4_op_rmsnorm(ex, w->n, w->z, a->output_norm, 1, H, (size_t)H, a->eps, NULL);
    float *lg = logits ? logits : w->logits;
    g4_op_matmul(ex, &a->tok_embd, 0, w->n, H, 1, lg, a->n_vocab);
    g4_op_matmul(ex, &a->post_proj, 0, w->n, H, 1, h_out, Ht);
    int32_t best = 0;   /* lowest id on ties; a NaN row drafts 0, which verification refuses */
    for (int i = 1; i < a->n_vocab; i++)
        if (lg[i] > lg[best]) best = i;
    return best;
}
