/* The Gemma 4 audio encoder (USM-style conformer) and audio embedder, on the
 * weights of an mmproj file: shared/docs/gemma4-multimodal.md §6-§7, GGUF
 * names §10.1. Every weight product goes through g4_op_matmul on the stored
 * weights; the rest (convolution gathers, norms, the 12-frame attention) is
 * plain f32 here.
 *
 * Activations are time-major rows. The subsampling convolutions keep
 * channels innermost ([t][f][c]), so a 3x3 stride-2 convolution is a gather
 * of its 9*C inputs per output position (the PyTorch weight [O][C][3][3]
 * flattened is exactly a [O][9C] matrix over that gather order c*9+ky*3+kx)
 * followed by one matmul, the channel LayerNorm is over contiguous values,
 * and the flatten u_t[f*C + c] that feeds the input projection is the
 * output row as it lies. The convolutions run over blocks of output time
 * rows so their gathers stay small (a 30 s piece of E2B would need 110 MB
 * gathered at once). */
#include "encoder/audio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "tensor/act.h"
#include "tensor/types.h"
#include "tensor/vec.h"

#define EPS 1e-6f
#define CHUNK 12          /* attention_chunk_size: each frame sees itself and 11 before */
#define SOFTCAP 50.0f     /* attention_logit_cap */
#define RESIDUAL 0.5f     /* FFN residual weight */
#define DW_K 5            /* depthwise conv kernel */
#define CONV_BLOCK 16     /* output time rows of the second convolution per pass */

typedef struct clip4 { float in_lo, in_hi, out_lo, out_hi; } clip4;
typedef struct clin { g4_mat w; clip4 c; } clin;   /* ClippableLinear */
typedef struct ffn_w { const float *pre, *post; clin up, down; } ffn_w;

typedef struct alayer {
    ffn_w ffn[2];
    const float *attn_pre, *attn_post, *pds;   /* pds: softplus(per_dim_scale) [hd] */
    clin q, k, v, o;
    g4_mat rel;
    const float *conv_pre, *conv_post, *dw;    /* dw: [D][5] */
    clin pw1, pw2;
    const float *out_norm;
} alayer;

struct g4_audio_enc {
    int D, H, hd, FF, n_layer, C0, C1, F1, F2, P, E;
    g4_mat conv0, conv1, in_proj, out_proj, embed;
    const float *norm0, *norm1, *out_bias;
    alayer *L;
};

/* ---- loading ----------------------------------------------------------------- */

static const g4_gguf_tensor *find(const g4_gguf_file *f, g4_error *err, const char *fmt, int l, char *name) {
    snprintf(name, 96, fmt, l);
    const g4_gguf_tensor *t = g4_gguf_find_tensor(f, name);
    if (!t) g4_seterr(err, "%s: audio tower: missing tensor %s", f->path, name);
    return t;
}

static int64_t n_elem(const g4_gguf_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->ne[i];
    return n;
}

/* A vector of n F32 values (norm weights, biases, the depthwise kernel). */
static int get_vec(const g4_gguf_file *f, const float **out, int64_t n, g4_error *err, const char *fmt, int l) {
    char name[96];
    const g4_gguf_tensor *t = find(f, err, fmt, l, name);
    if (!t) return -1;
    if (t->type != G4_F32 || n_elem(t) != n)
        return g4_seterr(err, "%s: %s: expected %lld F32 values, found %lld of type %s", f->path, name,
                         (long long)n, (long long)n_elem(t), g4_type_name(t->type));
    *out = t->data;
    return 0;
}

/* A weight matrix of n_out rows of n_in (all dims but the last make n_in);
 * 0 in n_in / n_out: take it from the file. */
static int get_mat(const g4_gguf_file *f, g4_mat *m, int64_t n_in, int64_t n_out, g4_error *err,
                   const char *fmt, int l) {
    char name[96];
    const g4_gguf_tensor *t = find(f, err, fmt, l, name);
    if (!t) return -1;
    int64_t in = 1;
    for (int i = 0; i < t->n_dims - 1; i++) in *= t->ne[i];
    int64_t out = t->n_dims > 1 ? t->ne[t->n_dims - 1] : 1;
    if ((n_in && in != n_in) || (n_out && out != n_out)) {
        char want[64];
        if (n_out) snprintf(want, sizeof want, "%lld x %lld", (long long)n_in, (long long)n_out);
        else snprintf(want, sizeof want, "rows of %lld", (long long)n_in);
        return g4_seterr(err, "%s: %s: expected %s (in x out), found %lld x %lld", f->path, name, want,
                         (long long)in, (long long)out);
    }
    const g4_type_traits *tr = g4_type_info(t->type);
    size_t rb = g4_row_size(t->type, in);
    if (!tr || !tr->dot_f32 || !tr->vec_dot || rb == 0 || rb * (size_t)out != t->nbytes)
        return g4_seterr(err, "%s: %s: type %s cannot be used for rows of %lld", f->path, name,
                         g4_type_name(t->type), (long long)in);
    *m = (g4_mat){ t->data, t->type, in, out, 1, rb, t->name };
    return 0;
}

/* The four optional clamp scalars of a ClippableLinear (absent: no clamp). */
static int get_clip(const g4_gguf_file *f, clip4 *c, g4_error *err, const char *base, int l) {
    static const char *sfx[4] = { "input_min", "input_max", "output_min", "output_max" };
    float *v[4] = { &c->in_lo, &c->in_hi, &c->out_lo, &c->out_hi };
    char b[96], name[128];
    snprintf(b, sizeof b, base, l);
    for (int i = 0; i < 4; i++) {
        *v[i] = i % 2 ? INFINITY : -INFINITY;
        snprintf(name, sizeof name, "%s.%s", b, sfx[i]);
        const g4_gguf_tensor *t = g4_gguf_find_tensor(f, name);
        if (!t) continue;
        if (t->type != G4_F32 || n_elem(t) != 1)
            return g4_seterr(err, "%s: %s: expected one F32 value", f->path, name);
        float x;
        memcpy(&x, t->data, sizeof x);
        if (isnan(x)) return g4_seterr(err, "%s: %s is NaN", f->path, name);
        *v[i] = x;
    }
    return 0;
}

static int get_clin(const g4_gguf_file *f, clin *c, int64_t n_in, int64_t n_out, g4_error *err,
                    const char *base, int l) {
    char fmt[96];
    snprintf(fmt, sizeof fmt, "%s.weight", base);
    if (get_mat(f, &c->w, n_in, n_out, err, fmt, l)) return -1;
    return get_clip(f, &c->c, err, base, l);
}

static int get_u32(const g4_gguf_file *f, const char *key, int lo, int hi, int *out, g4_error *err) {
    uint32_t v;
    int rc = g4_gguf_get_u32(f, key, &v, err);
    if (rc < 0) return -1;
    if (rc > 0) return g4_seterr(err, "%s: audio tower: missing key %s", f->path, key);
    if ((int64_t)v < lo || (int64_t)v > hi)
        return g4_seterr(err, "%s: %s = %u; expected %d to %d", f->path, key, v, lo, hi);
    *out = (int)v;
    return 0;
}

g4_audio_enc *g4_audio_enc_load(const g4_gguf_file *f, g4_error *err) {
    if (err) err->msg[0] = 0;
    bool has = false;
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, "clip.has_audio_encoder");
    if (kv && kv->type == GGUF_BOOL) has = kv->v.b;
    if (!has) return NULL;
    char *pt = NULL;
    if (g4_gguf_get_str(f, "clip.audio.projector_type", &pt, err) < 0) return NULL;
    if (!pt || strcmp(pt, "gemma4a") != 0) {
        g4_seterr(err, "%s: clip.audio.projector_type is \"%s\"; this engine reads \"gemma4a\"", f->path,
                  pt ? pt : "(missing)");
        free(pt);
        return NULL;
    }
    free(pt);
    g4_audio_enc *e = calloc(1, sizeof *e);
    if (!e) { g4_seterr(err, "out of memory"); return NULL; }
    if (get_u32(f, "clip.audio.embedding_length", 1, 65536, &e->D, err) ||
        get_u32(f, "clip.audio.feed_forward_length", 1, 1 << 20, &e->FF, err) ||
        get_u32(f, "clip.audio.block_count", 1, 1024, &e->n_layer, err) ||
        get_u32(f, "clip.audio.attention.head_count", 1, 1024, &e->H, err))
        goto fail;
    int n_mel = G4_AUDIO_N_MEL;
    if (g4_gguf_find_kv(f, "clip.audio.num_mel_bins") && get_u32(f, "clip.audio.num_mel_bins", 1, 4096, &n_mel, err))
        goto fail;
    if (n_mel != G4_AUDIO_N_MEL) {
        g4_seterr(err, "%s: clip.audio.num_mel_bins = %d; the feature extractor makes %d", f->path, n_mel,
                  G4_AUDIO_N_MEL);
        goto fail;
    }
    if (e->D % e->H || (e->D / e->H) % 2) {
        g4_seterr(err, "%s: audio width %d does not split into %d heads of even size", f->path, e->D, e->H);
        goto fail;
    }
    e->hd = e->D / e->H;
    e->F1 = (G4_AUDIO_N_MEL - 1) / 2 + 1;
    e->F2 = (e->F1 - 1) / 2 + 1;
    /* the convolution channels, the output projection and text widths come from the shapes */
    if (get_mat(f, &e->conv0, 9, 0, err, "a.conv1d.0.weight", 0)) goto fail;
    e->C0 = (int)e->conv0.n_out;
    if (get_mat(f, &e->conv1, 9 * (int64_t)e->C0, 0, err, "a.conv1d.1.weight", 0)) goto fail;
    e->C1 = (int)e->conv1.n_out;
    if (get_vec(f, &e->norm0, e->C0, err, "a.conv1d.0.norm.weight", 0) ||
        get_vec(f, &e->norm1, e->C1, err, "a.conv1d.1.norm.weight", 0) ||
        get_mat(f, &e->in_proj, (int64_t)e->F2 * e->C1, e->D, err, "a.input_projection.weight", 0) ||
        get_mat(f, &e->out_proj, e->D, 0, err, "a.pre_encode.out.weight", 0))
        goto fail;
    e->P = (int)e->out_proj.n_out;
    if (get_vec(f, &e->out_bias, e->P, err, "a.pre_encode.out.bias", 0) ||
        get_mat(f, &e->embed, e->P, 0, err, "mm.a.input_projection.weight", 0))
        goto fail;
    e->E = (int)e->embed.n_out;
    e->L = calloc((size_t)e->n_layer, sizeof *e->L);
    if (!e->L) { g4_seterr(err, "out of memory"); goto fail; }
    for (int l = 0; l < e->n_layer; l++) {
        alayer *L = &e->L[l];
        int D = e->D, FF = e->FF;
        static const char *ffn_sfx[2] = { "", "_1" };
        for (int i = 0; i < 2; i++) {
            char a[64], b[64], c[64], d[64];
            snprintf(a, sizeof a, "a.blk.%%d.ffn_norm%s.weight", ffn_sfx[i]);
            snprintf(b, sizeof b, "a.blk.%%d.ffn_post_norm%s.weight", ffn_sfx[i]);
            snprintf(c, sizeof c, "a.blk.%%d.ffn_up%s", ffn_sfx[i]);
            snprintf(d, sizeof d, "a.blk.%%d.ffn_down%s", ffn_sfx[i]);
            if (get_vec(f, &L->ffn[i].pre, D, err, a, l) || get_vec(f, &L->ffn[i].post, D, err, b, l) ||
                get_clin(f, &L->ffn[i].up, D, FF, err, c, l) || get_clin(f, &L->ffn[i].down, FF, D, err, d, l))
                goto fail;
        }
        if (get_vec(f, &L->attn_pre, D, err, "a.blk.%d.attn_pre_norm.weight", l) ||
            get_vec(f, &L->attn_post, D, err, "a.blk.%d.attn_post_norm.weight", l) ||
            get_vec(f, &L->pds, e->hd, err, "a.blk.%d.per_dim_scale.weight", l) ||
            get_clin(f, &L->q, D, D, err, "a.blk.%d.attn_q", l) ||
            get_clin(f, &L->k, D, D, err, "a.blk.%d.attn_k", l) ||
            get_clin(f, &L->v, D, D, err, "a.blk.%d.attn_v", l) ||
            get_clin(f, &L->o, D, D, err, "a.blk.%d.attn_out", l) ||
            get_mat(f, &L->rel, D, D, err, "a.blk.%d.attn_k_rel.weight", l) ||
            get_vec(f, &L->conv_pre, D, err, "a.blk.%d.conv_norm.weight", l) ||
            get_vec(f, &L->conv_post, D, err, "a.blk.%d.norm_conv.weight", l) ||
            get_vec(f, &L->dw, (int64_t)D * DW_K, err, "a.blk.%d.conv_dw.weight", l) ||
            get_clin(f, &L->pw1, D, 2 * (int64_t)D, err, "a.blk.%d.conv_pw1", l) ||
            get_clin(f, &L->pw2, D, D, err, "a.blk.%d.conv_pw2", l) ||
            get_vec(f, &L->out_norm, D, err, "a.blk.%d.ln2.weight", l))
            goto fail;
    }
    return e;
fail:
    g4_audio_enc_free(e);
    return NULL;
}

void g4_audio_enc_free(g4_audio_enc *e) {
    if (!e) return;
    free(e->L);
    free(e);
}

int g4_audio_n_embd(const g4_audio_enc *e) { return e->E; }
int g4_audio_n_layers(const g4_audio_enc *e) { return e->n_layer; }

static int piece_tokens(int T) {
    int T1 = (T - 1) / 2 + 1;
    return T > 0 ? (T1 - 1) / 2 + 1 : 0;
}

int g4_audio_n_tokens(const g4_audio_enc *e, int n) {
    if (n <= 0) return 0;
    int full = n / G4_AUDIO_PIECE_FRAMES, rest = n % G4_AUDIO_PIECE_FRAMES;
    return full * piece_tokens(G4_AUDIO_PIECE_FRAMES) + piece_tokens(rest);
}

typedef struct work {
    g4_exec ex;
    const g4_audio_enc *e;
    /* [T2][.] rows of one piece */
    float *h, *a, *b, *q, *k, *v, *big, *rel;
    /* convolution blocks */
    float *g0, *y0, *g1, *y1;
} work;

/* ---- row-parallel loops ------------------------------------------------------------
 * Everything between the weight products (gathers, norms, activations, the
 * 12-frame attention, the depthwise conv) is split over the pool by rows:
 * at 16 threads it would otherwise cost as much as the products. A row's
 * arithmetic never depends on the split. */

typedef struct rows_job {
    void (*fn)(struct rows_job *j, long lo, long hi);
    work *w;
    long n;
    const void *p0;   /* the loop's arguments */
    float *x, *y;
    int i0, i1, i2;
    float f0, f1;
} rows_job;

static void rows_task(void *arg, int ith, int nth) {
    rows_job *j = arg;
    long lo, hi;
    g4_split(j->n, ith, nth, &lo, &hi);
    if (hi > lo) j->fn(j, lo, hi);
}

/* Run j->fn over rows [0, j->n); inline when the work is tiny. */
static void par_rows(rows_job *j, long work_per_row) {
    if (j->n * work_per_row < 16384 || j->n < 2 || !j->w->ex.pool || j->w->ex.n_threads < 2) j->fn(j, 0, j->n);
    else g4_pool_run(j->w->ex.pool, rows_task, j);
}

static void clamp_rows(rows_job *j, long lo, long hi) {
    if (hi > lo) g4_clamp(j->x + lo * j->i0, j->x + lo * j->i0, (hi - lo) * j->i0, j->f0, j->f1);
}

static void clampv(work *w, float *x, int T, int width, float lo, float hi) {
    if (lo == -INFINITY && hi == INFINITY) return;
    rows_job j = { .fn = clamp_rows, .w = w, .n = T, .x = x, .i0 = width, .f0 = lo, .f1 = hi };
    par_rows(&j, width);
}

/* y = clamp(W clamp(x)): x is copied to tmp first, since the other
 * projections of the same input clamp it to their own ranges (HF clamps
 * each separately; llama.cpp's in-place clamp leaks one into the next,
 * §12.9). tmp may be x when x is not needed afterwards. */
static void clin_apply(work *w, const clin *c, float *x, int T, float *tmp, float *y) {
    int n_in = (int)c->w.n_in, n_out = (int)c->w.n_out;
    const float *in = x;
    if (c->c.in_lo != -INFINITY || c->c.in_hi != INFINITY) {
        if (tmp != x) memcpy(tmp, x, (size_t)T * n_in * sizeof(float));
        clampv(w, tmp, T, n_in, c->c.in_lo, c->c.in_hi);
        in = tmp;
    }
    g4_op_matmul(&w->ex, &c->w, 0, in, n_in, T, y, n_out);
    clampv(w, y, T, n_out, c->c.out_lo, c->c.out_hi);
}

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

static void silu_rows(rows_job *j, long lo, long hi) {
    if (hi > lo) g4_silu(j->x + lo * j->i0, (hi - lo) * j->i0, j->w->ex.precision);
}

static void silu_inplace(work *w, float *x, int T, int width) {
    rows_job j = { .fn = silu_rows, .w = w, .n = T, .x = x, .i0 = width };
    par_rows(&j, 8L * width);
}

/* LayerNorm over each row of width C (weight p0, no bias), then ReLU. */
static void ln_relu_rows(rows_job *j, long lo, long hi) {
    const float *wt = j->p0;
    int C = j->i0;
    for (long r = lo; r < hi; r++) {
        float *p = j->x + r * C;
        float m = 0, v = 0;
        for (int c = 0; c < C; c++) m += p[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (p[c] - m) * (p[c] - m);
        float s = 1.0f / sqrtf(v / C + EPS);
        for (int c = 0; c < C; c++) {
            float y = (p[c] - m) * s * wt[c];
            p[c] = y > 0 ? y : 0;
        }
    }
}

static void layernorm_relu(work *w, float *x, long n, int C, const float *wt) {
    rows_job j = { .fn = ln_relu_rows, .w = w, .n = n, .x = x, .i0 = C, .p0 = wt };
    par_rows(&j, 4L * C);
}

/* ---- subsampling -------------------------------------------------------------- */

/* gather of the first convolution: rows (r, f) of 9 from mel [T][128];
 * p0 = mel, i0 = T, i1 = r0 (first output row) */
static void gather0_rows(rows_job *j, long lo, long hi) {
    const float *mel = j->p0;
    int F = G4_AUDIO_N_MEL, F1 = j->w->e->F1, T = j->i0, r0 = j->i1;
    for (long rf = lo; rf < hi; rf++) {
        int r = (int)(rf / F1), f = (int)(rf % F1);
        float *g = j->w->g0 + (size_t)rf * 9;
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                int t = 2 * (r0 + r) + ky - 1, x = 2 * f + kx - 1;
                g[ky * 3 + kx] = t >= 0 && t < T && x >= 0 && x < F ? mel[(size_t)t * F + x] : 0.0f;
            }
    }
}

/* Rows [r0, r0 + nr) of the first convolution's output [T1][F1][C0] into
 * y0 (local rows), from mel [T][128]. */
static void conv0_rows(work *w, const float *mel, int T, int r0, int nr) {
    const g4_audio_enc *e = w->e;
    rows_job j = { .fn = gather0_rows, .w = w, .n = (long)nr * e->F1, .p0 = mel, .i0 = T, .i1 = r0 };
    par_rows(&j, 9);
    g4_op_matmul(&w->ex, &e->conv0, 0, w->g0, 9, nr * e->F1, w->y0, e->C0);
    layernorm_relu(w, w->y0, (long)nr * e->F1, e->C0, e->norm0);
}

/* gather of the second convolution: rows (t, f) of 9 C0 from y0;
 * i0 = t0 (first output row), i1 = r0 (y0's first row), i2 = T1 */
static void gather1_rows(rows_job *j, long lo, long hi) {
    const g4_audio_enc *e = j->w->e;
    int F1 = e->F1, F2 = e->F2, C0 = e->C0, T1 = j->i2, t0 = j->i0, r0 = j->i1;
    const float *y0 = j->w->y0;
    for (long tf = lo; tf < hi; tf++) {
        int t = (int)(tf / F2), f = (int)(tf % F2);
        float *g = j->w->g1 + (size_t)tf * 9 * C0;
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                int r = 2 * (t0 + t) + ky - 1, x = 2 * f + kx - 1;
                bool in = r >= 0 && r < T1 && x >= 0 && x < F1;
                const float *src = in ? y0 + ((size_t)(r - r0) * F1 + x) * C0 : NULL;
                for (int c = 0; c < C0; c++) g[c * 9 + ky * 3 + kx] = in ? src[c] : 0.0f;
            }
    }
}

/* Subsampling: mel [T][128] -> h [T2][D]. Its products stay f32 on the
 * fast path too: each convolution is followed by a LayerNorm over its few
 * channels, which multiplies a bf16 rounding of the convolution by up to
 * ~3 (measured: the 2.5 s clip's soft tokens 0.058 off with them in bf16,
 * 0.02 without), and they are a small share of the encode. */
static void sscp(work *w, const float *mel, int T, int T2) {
    const g4_audio_enc *e = w->e;
    const bool bf16 = w->ex.mm.bf16, i8 = w->ex.mm.i8;
    w->ex.mm.bf16 = w->ex.mm.i8 = false;
    int T1 = (T - 1) / 2 + 1, F2 = e->F2, C0 = e->C0, C1 = e->C1;
    for (int t0 = 0; t0 < T2; t0 += CONV_BLOCK) {
        int nb = T2 - t0 < CONV_BLOCK ? T2 - t0 : CONV_BLOCK;
        /* first-conv rows the block reads: 2 t0 - 1 .. 2 (t0 + nb - 1) + 1 */
        int r0 = 2 * t0 - 1, r1 = 2 * (t0 + nb - 1) + 1;
        if (r0 < 0) r0 = 0;
        if (r1 > T1 - 1) r1 = T1 - 1;
        conv0_rows(w, mel, T, r0, r1 - r0 + 1);
        rows_job j = { .fn = gather1_rows, .w = w, .n = (long)nb * F2, .i0 = t0, .i1 = r0, .i2 = T1 };
        par_rows(&j, 9L * C0);
        g4_op_matmul(&w->ex, &e->conv1, 0, w->g1, 9 * (int64_t)C0, nb * F2, w->y1, C1);
        layernorm_relu(w, w->y1, (long)nb * F2, C1, e->norm1);
        /* each row of y1 is u_t[f * C1 + c], the input projection's input */
        g4_op_matmul(&w->ex, &e->in_proj, 0, w->y1, (int64_t)F2 * C1, nb, w->h + (size_t)t0 * e->D, e->D);
    }
    w->ex.mm.bf16 = bf16;
    w->ex.mm.i8 = i8;
}

/* ---- conformer ------------------------------------------------------------------ */

/* h += 0.5 * RMSNorm_post(W2 silu(W1 RMSNorm_pre(h))) */
static void ffn(work *w, const ffn_w *f, int T) {
    const g4_audio_enc *e = w->e;
    int D = e->D, FF = e->FF;
    g4_op_rmsnorm(&w->ex, w->a, w->h, f->pre, T, D, D, EPS, NULL);
    clin_apply(w, &f->up, w->a, T, w->b, w->big);
    silu_inplace(w, w->big, T, FF);
    clin_apply(w, &f->down, w->big, T, w->big, w->a);
    g4_op_rmsnorm(&w->ex, w->a, w->a, f->post, T, D, D, EPS, NULL);
    for (size_t i = 0; i < (size_t)T * D; i++) w->h[i] += RESIDUAL * w->a[i];
}

/* q, k scaling then the windowed attention of rows [lo, hi) into a;
 * p0 = the layer, x = the [hd] q scale */
static void attn_rows(rows_job *j, long lo, long hi) {
    work *w = j->w;
    const g4_audio_enc *e = w->e;
    int D = e->D, H = e->H, hd = e->hd;
    const float *qsc = j->x, ks = j->f0;
    if (j->i0 == 0) {   /* pass 0: scale q and k */
        for (long t = lo; t < hi; t++)
            for (int hh = 0; hh < H; hh++) {
                float *qp = w->q + (size_t)t * D + hh * hd, *kp = w->k + (size_t)t * D + hh * hd;
                for (int i = 0; i < hd; i++) { qp[i] *= qsc[i]; kp[i] *= ks; }
            }
        return;
    }
    /* fast path: the level's vector dot and axpy (the exact path keeps its
     * serial sums: another order) */
    const g4_vec_ops *vo = w->ex.precision ? NULL : g4_vec_get();
    for (long t = lo; t < hi; t++)
        for (int hh = 0; hh < H; hh++) {
            const float *qp = w->q + (size_t)t * D + hh * hd;
            float lg[CHUNK], m = -INFINITY;
            int n = t + 1 < CHUNK ? (int)t + 1 : CHUNK;
            for (int d = 0; d < n; d++) {
                const float *kp = w->k + (size_t)(t - d) * D + hh * hd, *rp = w->rel + (size_t)d * D + hh * hd;
                float s = 0;
                if (vo) s = vo->dot(qp, kp, hd) + vo->dot(qp, rp, hd);
                else
                    for (int i = 0; i < hd; i++) s += qp[i] * (kp[i] + rp[i]);
                s = SOFTCAP * tanhf(s / SOFTCAP);
                lg[d] = s;
                if (s > m) m = s;
            }
            float sum = 0;
            if (vo) sum = vo->expsum(lg, n, m);
            else
                for (int d = 0; d < n; d++) { lg[d] = expf(lg[d] - m); sum += lg[d]; }
            float *op = w->a + (size_t)t * D + hh * hd;
            for (int i = 0; i < hd; i++) op[i] = 0;
            for (int d = 0; d < n; d++) {
                const float *vp = w->v + (size_t)(t - d) * D + hh * hd;
                float p = lg[d] / sum;
                if (vo) vo->axpy(op, p, vp, hd);
                else
                    for (int i = 0; i < hd; i++) op[i] += p * vp[i];
            }
        }
}

/* Chunked local self-attention (§6.3): frame t attends to s in [t-11, t]
 * with logit q_t.(k_s + R[t-s]) soft-capped at 50. The reference's blocks
 * of 12 queries over 24 keys with a relative shift give exactly this. */
static void attention(work *w, const alayer *L, int T) {
    const g4_audio_enc *e = w->e;
    int D = e->D, hd = e->hd, half = D / 2;
    g4_op_rmsnorm(&w->ex, w->a, w->h, L->attn_pre, T, D, D, EPS, NULL);
    clin_apply(w, &L->q, w->a, T, w->b, w->q);
    clin_apply(w, &L->k, w->a, T, w->b, w->k);
    clin_apply(w, &L->v, w->a, T, w->b, w->v);
    /* q scale per dim: 1/sqrt(hd) / softplus(0) * softplus(per_dim_scale)
     * (the file stores the softplus); k: softplus(1) / softplus(0) */
    float *qsc = w->big + (size_t)CHUNK * D;   /* [hd], after the sinusoids */
    const float r_sp0 = 1.0f / logf(2.0f);
    for (int i = 0; i < hd; i++) qsc[i] = (1.0f / sqrtf((float)hd)) * r_sp0 * L->pds[i];
    /* relative position rows R[d] = W_rel [sin(d w_i), cos(d w_i)], d = 0..11,
     * w_i = 10000^(-i / (D/2 - 1)) */
    float *sinus = w->big;   /* [CHUNK][D] */
    for (int d = 0; d < CHUNK; d++)
        for (int i = 0; i < half; i++) {
            float om = expf(-(float)i * logf(10000.0f) / (float)(half > 1 ? half - 1 : 1));
            sinus[(size_t)d * D + i] = sinf((float)d * om);
            sinus[(size_t)d * D + half + i] = cosf((float)d * om);
        }
    g4_op_matmul(&w->ex, &L->rel, 0, sinus, D, CHUNK, w->rel, D);
    rows_job j = { .fn = attn_rows, .w = w, .n = T, .x = qsc, .f0 = log1pf(expf(1.0f)) * r_sp0, .i0 = 0 };
    par_rows(&j, 2L * D);
    j.i0 = 1;   /* o = softmax(logits) v, written over a (the normed input is done with) */
    par_rows(&j, 2L * CHUNK * 2 * D);
    clin_apply(w, &L->o, w->a, T, w->b, w->q);
    g4_op_rmsnorm(&w->ex, w->q, w->q, L->attn_post, T, D, D, EPS, w->h);
}

/* GLU of pw1's output (big [T][2D]) into q (pass 0); the causal depthwise
 * conv q -> k, y[t][c] = sum_j K[c][j] g[t-4+j][c] (pass 1) */
static void lconv_rows(rows_job *j, long lo, long hi) {
    work *w = j->w;
    const alayer *L = j->p0;
    int D = w->e->D;
    if (j->i0 == 0) {
        for (long t = lo; t < hi; t++) {
            float *z = w->big + (size_t)t * 2 * D, *g = w->q + (size_t)t * D;
            for (int c = 0; c < D; c++) g[c] = z[c] * sigm(z[D + c]);
        }
        return;
    }
    for (long t = lo; t < hi; t++)
        for (int c = 0; c < D; c++) {
            float s = 0;
            for (int k = 0; k < DW_K; k++) {
                long tt = t - (DW_K - 1) + k;
                if (tt >= 0) s += L->dw[(size_t)c * DW_K + k] * w->q[(size_t)tt * D + c];
            }
            w->k[(size_t)t * D + c] = s;
        }
}

/* h += W_end silu(RMSNorm_post(DWConv(GLU(W_start RMSNorm_pre(h))))) */
static void lconv(work *w, const alayer *L, int T) {
    int D = w->e->D;
    g4_op_rmsnorm(&w->ex, w->a, w->h, L->conv_pre, T, D, D, EPS, NULL);
    clin_apply(w, &L->pw1, w->a, T, w->b, w->big);   /* [T][2D] */
    rows_job j = { .fn = lconv_rows, .w = w, .n = T, .p0 = L, .i0 = 0 };
    par_rows(&j, 8L * D);
    j.i0 = 1;
    par_rows(&j, 2L * DW_K * D);
    g4_op_rmsnorm(&w->ex, w->k, w->k, L->conv_post, T, D, D, EPS, NULL);
    silu_inplace(w, w->k, T, D);
    clin_apply(w, &L->pw2, w->k, T, w->b, w->a);
    for (size_t i = 0; i < (size_t)T * D; i++) w->h[i] += w->a[i];
}

/* One piece (<= 2999 frames) -> T2 soft tokens in out. */
static void encode_piece(work *w, const float *mel, int T, float *out) {
    const g4_audio_enc *e = w->e;
    int T2 = piece_tokens(T), D = e->D;
    sscp(w, mel, T, T2);
    for (int l = 0; l < e->n_layer; l++) {
        const alayer *L = &e->L[l];
        ffn(w, &L->ffn[0], T2);
        attention(w, L, T2);
        lconv(w, L, T2);
        ffn(w, &L->ffn[1], T2);
        g4_op_rmsnorm(&w->ex, w->h, w->h, L->out_norm, T2, D, D, EPS, NULL);
    }
    /* e_t = W_out h_t + b; soft token = W_embed RMSNorm(e_t) without weight */
    g4_op_matmul(&w->ex, &e->out_proj, 0, w->h, D, T2, w->big, e->P);
    for (int t = 0; t < T2; t++) {
        float *r = w->big + (size_t)t * e->P;
        for (int i = 0; i < e->P; i++) r[i] += e->out_bias[i];
    }
    g4_op_rmsnorm(&w->ex, w->big, w->big, NULL, T2, e->P, e->P, EPS, NULL);
    g4_op_matmul(&w->ex, &e->embed, 0, w->big, e->P, T2, out, e->E);
}

int g4_audio_encode(g4_audio_enc *e, const float *mel, int n_frames, float *out, int n_threads, bool exact,
                    g4_error *err) {
    if (!e || !mel || !out) return g4_seterr(err, "audio encode: no encoder, features or output");
    if (n_frames <= 0) return g4_seterr(err, "audio encode: no feature frames");
    if (n_threads < 1) n_threads = 1;
    int Tp = n_frames < G4_AUDIO_PIECE_FRAMES ? n_frames : G4_AUDIO_PIECE_FRAMES;
    int T2 = piece_tokens(Tp);
    size_t D = (size_t)e->D, FF = (size_t)e->FF;
    size_t wide = FF > 2 * D ? FF : 2 * D;
    if (wide < (size_t)e->P) wide = (size_t)e->P;
    size_t big = (size_t)T2 * wide;
    if (big < (size_t)CHUNK * D + e->hd) big = (size_t)CHUNK * D + e->hd;   /* sinusoids + q scale */
    size_t r1 = (size_t)2 * CONV_BLOCK + 1;
    size_t n_g0 = r1 * e->F1 * 9, n_y0 = r1 * e->F1 * e->C0;
    size_t n_g1 = (size_t)CONV_BLOCK * e->F2 * 9 * e->C0, n_y1 = (size_t)CONV_BLOCK * e->F2 * e->C1;
    /* the matmul scratch holds the largest quantized input: T rows of n_in */
    size_t act = (size_t)T2 * wide;
    if (act < n_g0) act = n_g0;
    if (act < n_g1) act = n_g1;
    if (act < (size_t)T2 * e->F2 * e->C1) act = (size_t)T2 * e->F2 * e->C1;
    if (act < (size_t)CHUNK * D) act = (size_t)CHUNK * D;
    work w;
    memset(&w, 0, sizeof w);
    w.e = e;
    w.ex.precision = exact ? 1 : 0;
    w.ex.pool = g4_pool_acquire(n_threads);
    w.ex.n_threads = w.ex.pool ? g4_pool_size(w.ex.pool) : 0;
    /* fast path: bf16 products (tensor/bf16.h) where the CPU has them */
    size_t n_in_max = wide;
    if (n_in_max < (size_t)e->F2 * e->C1) n_in_max = (size_t)e->F2 * e->C1;
    if (n_in_max < (size_t)9 * e->C0) n_in_max = (size_t)9 * e->C0;
    w.ex.mm.bf16 = !exact;
    /* int8 linears where the CPU has VNNI (matmul.h): Q8_0 activations
     * (34 bytes per 32 inputs) and each thread's block of Q8_0 rows */
    w.ex.mm.i8 = !exact;
    w.ex.mm.act_bytes = act * sizeof(float) + g4_matmul_bf16_bytes((int64_t)n_in_max, w.ex.n_threads);
    const size_t i8b = act / 32 * 34 + 128 + g4_matmul_i8_bytes((int64_t)n_in_max, 0, w.ex.n_threads);
    if (w.ex.mm.act_bytes < i8b) w.ex.mm.act_bytes = i8b;
    w.ex.mm.act = malloc(w.ex.mm.act_bytes);
    size_t rows = (size_t)T2 * D;
    w.h = malloc(rows * sizeof(float));
    w.a = malloc(rows * sizeof(float));
    w.b = malloc((size_t)T2 * wide * sizeof(float));
    w.q = malloc(rows * sizeof(float));
    w.k = malloc(rows * sizeof(float));
    w.v = malloc(rows * sizeof(float));
    w.big = malloc(big * sizeof(float));
    w.rel = malloc((size_t)CHUNK * D * sizeof(float));
    w.g0 = malloc(n_g0 * sizeof(float));
    w.y0 = malloc(n_y0 * sizeof(float));
    w.g1 = malloc(n_g1 * sizeof(float));
    w.y1 = malloc(n_y1 * sizeof(float));
    int rc = -1;
    if (!w.ex.pool || !w.ex.mm.act || !w.h || !w.a || !w.b || !w.q || !w.k || !w.v || !w.big || !w.rel ||
        !w.g0 || !w.y0 || !w.g1 || !w.y1) {
        g4_seterr(err, "audio encode: out of memory for %d frames", n_frames);
        goto done;
    }
    g4_act_init();
    int n_tok = 0;
    for (int at = 0; at < n_frames; at += G4_AUDIO_PIECE_FRAMES) {
        int T = n_frames - at < G4_AUDIO_PIECE_FRAMES ? n_frames - at : G4_AUDIO_PIECE_FRAMES;
        encode_piece(&w, mel + (size_t)at * G4_AUDIO_N_MEL, T, out + (size_t)n_tok * e->E);
        n_tok += piece_tokens(T);
    }
    rc = 0;
done:
    if (w.ex.pool) g4_pool_release(w.ex.pool);
    free(w.ex.mm.act);
    free(w.h); free(w.a); free(w.b); free(w.q); free(w.k); free(w.v); free(w.big); free(w.rel);
    free(w.g0); free(w.y0); free(w.g1); free(w.y1);
    return rc;
}
