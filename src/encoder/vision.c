/* The Gemma 4 vision tower: preprocessing (transformers rule), encoder,
 * pooler, embedder. shared/docs/gemma4-multimodal.md §2-§3. */
#include "encoder/vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "ops/attention.h"
#include "ops/ops.h"
#include "tensor/types.h"
#include "util/esc.h"

/* ---- weights ---------------------------------------------------------------- */

/* A ClippableLinear: y = clamp(W clamp(x, in_lo, in_hi), out_lo, out_hi);
 * absent bounds are +-inf (a plain product). */
typedef struct clin {
    g4_mat w;
    float in_lo, in_hi, out_lo, out_hi;
} clin;

typedef struct vlayer {
    float *ln1, *ln2, *q_norm, *k_norm, *post_attn, *post_ffn;
    clin q, k, v, o, gate, up, down;
    float out_scale;          /* v.blk.N.out_scale (llama.cpp's layer scalar), 1 when absent */
} vlayer;

struct g4_vision_enc {
    int D, n_head, hd, F, L, n_pos, D_text;
    float eps;
    g4_mat patch;             /* [D][768], input order (c, dy, dx) as GGUF stores it */
    g4_mat pos;               /* [2 * n_pos][D]: x table rows then y table rows */
    float *std_bias, *std_scale;   /* [D] or NULL (on-device encoders have none) */
    g4_mat embed;             /* [D_text][D] */
    vlayer *layers;
    void **owned; int n_owned;
};

typedef struct ld {
    const g4_gguf_file *f;
    g4_vision_enc *e;
    g4_error *err;
} ld;

static const g4_gguf_tensor *need(ld *l, const char *name) {
    const g4_gguf_tensor *t = g4_gguf_find_tensor(l->f, name);
    if (!t) g4_seterr(l->err, "%s: the vision tower has no tensor '%s'", l->f->path, name);
    return t;
}

static void *own(ld *l, void *p) {
    if (!p) return NULL;
    void **o = realloc(l->e->owned, (size_t)(l->e->n_owned + 1) * sizeof *o);
    if (!o) { free(p); return NULL; }
    l->e->owned = o;
    o[l->e->n_owned++] = p;
    return p;
}

/* A matrix {n_in, n_out} (GGUF ne order); extra dims of size 1 allowed. */
static int get_mat(ld *l, const char *name, int64_t n_in, int64_t n_out, g4_mat *out) {
    const g4_gguf_tensor *t = need(l, name);
    if (!t) return -1;
    int64_t elems = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    /* the patch embedding is stored {16, 16, 3, D}: rows of 768 all the same */
    bool patch = !strcmp(name, "v.patch_embd.weight") && t->ne[0] == 16 && t->ne[1] == 16 && t->ne[2] == 3;
    if ((t->ne[0] != n_in && !patch) || elems != n_in * n_out)
        return g4_seterr(l->err, "%s: tensor '%s' has shape {%lld, %lld, %lld, %lld}, expected {%lld, %lld}",
                         l->f->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3], (long long)n_in, (long long)n_out);
    const g4_type_traits *tr = g4_type_info(t->type);
    if (!tr || !tr->to_float || !tr->dot_f32 || !tr->vec_dot || !g4_row_size(t->type, n_in))
        return g4_seterr(l->err, "%s: tensor '%s' has type %s, which gemma4c cannot compute with", l->f->path,
                         name, g4_type_name(t->type));
    *out = (g4_mat){ .data = t->data, .type = t->type, .n_in = n_in, .n_out = n_out, .n_mat = 1,
                     .row_bytes = g4_row_size(t->type, n_in), .name = t->name };
    return 0;
}

/* A vector of n elements decoded to f32 (owned). */
static int get_vec(ld *l, const char *name, int64_t n, float **out, bool optional) {
    const g4_gguf_tensor *t = g4_gguf_find_tensor(l->f, name);
    if (!t) {
        *out = NULL;
        return optional ? 0 : (need(l, name), -1);
    }
    int64_t elems = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    const g4_type_traits *tr = g4_type_info(t->type);
    if (elems != n)
        return g4_seterr(l->err, "%s: tensor '%s' has %lld elements, expected %lld", l->f->path, name,
                         (long long)elems, (long long)n);
    if (!tr || !tr->to_float || tr->blck_size != 1)
        return g4_seterr(l->err, "%s: tensor '%s' has type %s, expected F32, F16 or BF16", l->f->path, name,
                         g4_type_name(t->type));
    float *v = own(l, malloc((size_t)n * sizeof(float)));
    if (!v) return g4_seterr(l->err, "out of memory");
    tr->to_float(t->data, v, n);
    *out = v;
    return 0;
}

static int get_clin(ld *l, const char *base, int64_t n_in, int64_t n_out, clin *c) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", base);
    if (get_mat(l, name, n_in, n_out, &c->w)) return -1;
    static const char *sfx[4] = { "input_min", "input_max", "output_min", "output_max" };
    float *dst[4] = { &c->in_lo, &c->in_hi, &c->out_lo, &c->out_hi };
    for (int i = 0; i < 4; i++) {
        float *v;
        snprintf(name, sizeof name, "%s.%s", base, sfx[i]);
        if (get_vec(l, name, 1, &v, true)) return -1;
        *dst[i] = v ? v[0] : (i & 1 ? INFINITY : -INFINITY);
        if (v && isnan(v[0])) return g4_seterr(l->err, "%s: tensor '%s' is NaN", l->f->path, name);
    }
    return 0;
}

static int get_u32(ld *l, const char *key, uint32_t *v, uint32_t lo, uint32_t hi) {
    int r = g4_gguf_get_u32(l->f, key, v, l->err);
    if (r < 0) return -1;
    if (r > 0) return g4_seterr(l->err, "%s: key '%s' is missing", l->f->path, key);
    if (*v < lo || *v > hi)
        return g4_seterr(l->err, "%s: key '%s' is %u, expected %u..%u", l->f->path, key, *v, lo, hi);
    return 0;
}

g4_vision_enc *g4_vision_enc_load(const g4_gguf_file *f, g4_error *err) {
    char *pt = NULL;
    if (g4_gguf_get_str(f, "clip.vision.projector_type", &pt, err) < 0) return NULL;
    if (!pt) return NULL;   /* no vision tower */
    if (strcmp(pt, "gemma4v")) {
        g4_seterr(err, "%s: clip.vision.projector_type is '%s'; gemma4c supports 'gemma4v'", f->path, G4_ESC(pt));
        free(pt);
        return NULL;
    }
    free(pt);
    g4_vision_enc *e = calloc(1, sizeof *e);
    if (!e) { g4_seterr(err, "out of memory"); return NULL; }
    ld l = { f, e, err };
    uint32_t D, H, F, L, P = 16, pd = 0;
    if (get_u32(&l, "clip.vision.embedding_length", &D, 1, 65536) ||
        get_u32(&l, "clip.vision.attention.head_count", &H, 1, 1024) ||
        get_u32(&l, "clip.vision.feed_forward_length", &F, 1, 1 << 20) ||
        get_u32(&l, "clip.vision.block_count", &L, 1, 1024) ||
        get_u32(&l, "clip.vision.patch_size", &P, 16, 16) ||
        get_u32(&l, "clip.vision.projection_dim", &pd, 1, 1 << 20))
        goto fail;
    if (D % H || (D / H) % 4) {
        g4_seterr(err, "%s: vision width %u over %u heads is not a head size divisible by 4", f->path, D, H);
        goto fail;
    }
    uint32_t pool = 3;
    if (g4_gguf_get_u32(f, "clip.vision.projector.scale_factor", &pool, err) < 0) goto fail;
    if (pool != 3) {
        g4_seterr(err, "%s: clip.vision.projector.scale_factor is %u, the gemma4v pooler is 3x3", f->path, pool);
        goto fail;
    }
    e->D = (int)D; e->n_head = (int)H; e->hd = (int)(D / H); e->F = (int)F; e->L = (int)L;
    e->D_text = (int)pd;
    e->eps = 1e-6f;
    float eps;
    if (g4_gguf_get_f32(f, "clip.vision.attention.layer_norm_epsilon", &eps, err) < 0) goto fail;
    else if (eps > 0 && eps < 1) e->eps = eps;
    if (get_mat(&l, "v.patch_embd.weight", 3 * 16 * 16, D, &e->patch)) goto fail;
    const g4_gguf_tensor *pt_t = need(&l, "v.position_embd.weight");
    if (!pt_t) goto fail;
    if (pt_t->ne[0] != D || pt_t->ne[2] != 2 || pt_t->ne[3] != 1 || pt_t->ne[1] < 1 || pt_t->ne[1] > (1 << 20)) {
        g4_seterr(err, "%s: tensor 'v.position_embd.weight' has shape {%lld, %lld, %lld}, expected {%u, n, 2}",
                  f->path, (long long)pt_t->ne[0], (long long)pt_t->ne[1], (long long)pt_t->ne[2], D);
        goto fail;
    }
    e->n_pos = (int)pt_t->ne[1];
    if (get_mat(&l, "v.position_embd.weight", D, 2 * (int64_t)e->n_pos, &e->pos)) goto fail;
    if (get_vec(&l, "v.std_bias", D, &e->std_bias, true) || get_vec(&l, "v.std_scale", D, &e->std_scale, true))
        goto fail;
    if (!e->std_bias != !e->std_scale) {
        g4_seterr(err, "%s: the vision tower has only one of v.std_bias / v.std_scale", f->path);
        goto fail;
    }
    if (get_mat(&l, "mm.input_projection.weight", D, pd, &e->embed)) goto fail;
    e->layers = calloc(L, sizeof *e->layers);
    if (!e->layers) { g4_seterr(err, "out of memory"); goto fail; }
    for (int i = 0; i < (int)L; i++) {
        vlayer *y = &e->layers[i];
        char b[64], n[96];
#define VEC(field, nm, len) (snprintf(n, sizeof n, "v.blk.%d." nm, i), get_vec(&l, n, len, &y->field, false))
#define LIN(field, nm, in, out) (snprintf(b, sizeof b, "v.blk.%d." nm, i), get_clin(&l, b, in, out, &y->field))
        if (VEC(ln1, "ln1.weight", D) || VEC(ln2, "ln2.weight", D) || VEC(q_norm, "attn_q_norm.weight", e->hd) ||
            VEC(k_norm, "attn_k_norm.weight", e->hd) || VEC(post_attn, "attn_post_norm.weight", D) ||
            VEC(post_ffn, "ffn_post_norm.weight", D) || LIN(q, "attn_q", D, D) || LIN(k, "attn_k", D, D) ||
            LIN(v, "attn_v", D, D) || LIN(o, "attn_out", D, D) || LIN(gate, "ffn_gate", D, F) ||
            LIN(up, "ffn_up", D, F) || LIN(down, "ffn_down", F, D))
            goto fail;
#undef VEC
#undef LIN
        float *s;
        snprintf(n, sizeof n, "v.blk.%d.out_scale.weight", i);
        if (get_vec(&l, n, 1, &s, true)) goto fail;
        y->out_scale = s ? s[0] : 1.0f;
    }
    return e;
fail:
    g4_vision_enc_free(e);
    return NULL;
}

void g4_vision_enc_free(g4_vision_enc *e) {
    if (!e) return;
    for (int i = 0; i < e->n_owned; i++) free(e->owned[i]);
    free(e->owned);
    free(e->layers);
    free(e);
}

int g4_vision_n_embd_text(const g4_vision_enc *e) { return e->D_text; }
int g4_vision_n_embd(const g4_vision_enc *e) { return e->D; }

void g4_vision_shape(const g4_vision_enc *e, int *D, int *F, int *L) {
    *D = e->D;
    *F = e->F;
    *L = e->L;
}

/* ---- preprocessing ------------------------------------------------------------ */

bool g4_vision_budget_ok(int b) { return b == 70 || b == 140 || b == 280 || b == 560 || b == 1120; }

int g4_vision_target_size(int W, int H, int budget, int *tw, int *th, g4_error *err) {
    if (W <= 0 || H <= 0) return g4_seterr(err, "image has no pixels (%dx%d)", W, H);
    const int s = G4_VISION_CELL;
    double max_patches = (double)budget * 9, target_px = max_patches * 256;
    double factor = sqrt(target_px / ((double)H * W));
    long h = (long)floor(factor * H / s) * s, w = (long)floor(factor * W / s) * s;
    if (h == 0 && w == 0) return g4_seterr(err, "image %dx%d: no target size", W, H);
    long max_side = (long)budget * s;
    if (h == 0) {
        h = s;
        w = (long)floor((double)W / H) * s;
        if (w > max_side) w = max_side;
    } else if (w == 0) {
        w = s;
        h = (long)floor((double)H / W) * s;
        if (h > max_side) h = max_side;
    }
    if ((double)h * w > target_px)
        return g4_seterr(err, "image %dx%d: target %ldx%ld exceeds the budget of %d tokens", W, H, w, h, budget);
    *tw = (int)w;
    *th = (int)h;
    return 0;
}

/* PIL's Resample.c, restated: per output coordinate a window [xmin, xmin +
 * n) of input coordinates and normalized bicubic weights as 22-bit fixed
 * point (rounded half away from zero). */
#define PREC_BITS 22

static double cubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* bounds[2o] = first input, bounds[2o+1] = count; k[o*ks + j] fixed-point
 * weights. Returns ks, or -1 (out of memory). */
static int coeffs(int in, int out, int **bounds_out, int32_t **k_out) {
    double scale = (double)in / out, fs = scale < 1 ? 1 : scale, support = 2.0 * fs;
    int ks = (int)ceil(support) * 2 + 1;
    int *bounds = malloc((size_t)out * 2 * sizeof *bounds);
    int32_t *k = malloc((size_t)out * ks * sizeof *k);
    double *w = malloc((size_t)ks * sizeof *w);
    if (!bounds || !k || !w) { free(bounds); free(k); free(w); return -1; }
    for (int o = 0; o < out; o++) {
        double c = (o + 0.5) * scale, ww = 0, ss = 1.0 / fs;
        int xmin = (int)(c - support + 0.5), xmax = (int)(c + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = cubic((x + xmin - c + 0.5) * ss);
            ww += w[x];
        }
        for (int x = 0; x < ks; x++) {
            double v = x < xmax ? (ww != 0 ? w[x] / ww : w[x]) : 0;
            k[(size_t)o * ks + x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PREC_BITS) : 0.5 + v * (1 << PREC_BITS));
        }
        bounds[2 * o] = xmin;
        bounds[2 * o + 1] = xmax;
    }
    free(w);
    *bounds_out = bounds;
    *k_out = k;
    return ks;
}

static uint8_t clip8(int64_t v) {
    v >>= PREC_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int g4_vision_resize_bicubic(const uint8_t *src, int W, int H, uint8_t *dst, int tw, int th) {
    if (W == tw && H == th) {
        memcpy(dst, src, (size_t)W * H * 3);
        return 0;
    }
    int *bx = NULL, *by = NULL;
    int32_t *kx = NULL, *ky = NULL;
    int ksx = coeffs(W, tw, &bx, &kx), ksy = coeffs(H, th, &by, &ky);
    uint8_t *mid = NULL;
    int rc = -1;
    if (ksx < 0 || ksy < 0) goto done;
    /* horizontal pass over the rows the vertical pass reads */
    int y0 = by[0], y1 = by[2 * (th - 1)] + by[2 * (th - 1) + 1];
    if (W != tw) {
        mid = malloc((size_t)(y1 - y0) * tw * 3);
        if (!mid) goto done;
        for (int y = y0; y < y1; y++)
            for (int o = 0; o < tw; o++) {
                const int32_t *k = kx + (size_t)o * ksx;
                const uint8_t *s = src + ((size_t)y * W + bx[2 * o]) * 3;
                for (int c = 0; c < 3; c++) {
                    int64_t acc = 1 << (PREC_BITS - 1);
                    for (int j = 0; j < bx[2 * o + 1]; j++) acc += (int64_t)s[j * 3 + c] * k[j];
                    mid[((size_t)(y - y0) * tw + o) * 3 + c] = clip8(acc);
                }
            }
    }
    const uint8_t *rows = mid ? mid : src + (size_t)y0 * W * 3;
    if (H != th) {
        for (int o = 0; o < th; o++) {
            const int32_t *k = ky + (size_t)o * ksy;
            for (int x = 0; x < tw; x++)
                for (int c = 0; c < 3; c++) {
                    int64_t acc = 1 << (PREC_BITS - 1);
                    for (int j = 0; j < by[2 * o + 1]; j++)
                        acc += (int64_t)rows[((size_t)(by[2 * o] - y0 + j) * tw + x) * 3 + c] * k[j];
                    dst[((size_t)o * tw + x) * 3 + c] = clip8(acc);
                }
        }
    } else {
        memcpy(dst, rows, (size_t)th * tw * 3);
    }
    rc = 0;
done:
    free(bx); free(by); free(kx); free(ky); free(mid);
    return rc;
}

/* ---- encoder ------------------------------------------------------------------ */

/* y = clamp(W clamp(x)); tmp holds the clamped input [N][n_in]. On the
 * int8 path the input clamp happens as x is rounded to Q8_0 (no pass of
 * its own: ~3% of the fast encode). */
static void clin_apply(g4_exec *ex, const clin *c, const float *x, int N, float *tmp, float *y) {
    size_t n_in = (size_t)c->w.n_in, n_out = (size_t)c->w.n_out;
    const float *in = x;
    if (isfinite(c->in_lo) || isfinite(c->in_hi)) {
        if (g4_matmul_i8_takes(ex->pool, &c->w, N, ex->precision, &ex->mm)) {
            ex->mm.x_clamp = true;
            ex->mm.x_lo = c->in_lo;
            ex->mm.x_hi = c->in_hi;
        } else {
            g4_op_clamp(ex, tmp, x, (size_t)N * n_in, c->in_lo, c->in_hi);
            in = tmp;
        }
    }
    g4_op_matmul(ex, &c->w, 0, in, (int64_t)n_in, N, y, (int64_t)n_out);
    ex->mm.x_clamp = false;
    if (isfinite(c->out_lo) || isfinite(c->out_hi)) g4_op_clamp(ex, y, y, (size_t)N * n_out, c->out_lo, c->out_hi);
}

static _Thread_local g4_vision_phases last_phases;

g4_vision_phases g4_vision_last_phases(void) { return last_phases; }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The encode's big buffers (~200 MB at 2520 patches), in 2 MB pages where
 * the kernel gives them (THP in madvise mode): every encode touches them
 * fresh, and faulting them in 4 KB pages cost ~10% of a fast-path encode
 * on this VM. free() releases them. */
static void *big(size_t bytes) {
    const size_t hp = (size_t)2 << 20;
    if (bytes < hp) return malloc(bytes);
    const size_t b = (bytes + hp - 1) / hp * hp;
    void *p = aligned_alloc(hp, b);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, b, MADV_HUGEPAGE);   /* a hint: failure changes nothing */
#endif
    return p;
}

int g4_vision_encode(const g4_vision_enc *e, const uint8_t *rgb, int w, int h, float *out, int n_threads,
                     bool exact, g4_error *err) {
    const int p = G4_VISION_PATCH, cell = G4_VISION_CELL;
    if (w <= 0 || h <= 0 || w % cell || h % cell)
        return g4_seterr(err, "vision encoder: image %dx%d is not a positive multiple of %d on both sides", w, h,
                         cell);
    int Wp = w / p, Hp = h / p, N = Wp * Hp, D = e->D, F = e->F, hd = e->hd;
    if (Wp > e->n_pos || Hp > e->n_pos)
        return g4_seterr(err, "vision encoder: image %dx%d has %dx%d patches; the position table has %d per side",
                         w, h, Wp, Hp, e->n_pos);
    int wide = F > D ? F : D;
    if (wide < 768) wide = 768;
    size_t nD = (size_t)N * D, nW = (size_t)N * wide;
    float *hbuf = big(nD * sizeof(float)), *a = big(nD * sizeof(float)), *q = big(nD * sizeof(float)),
          *k = big(nD * sizeof(float)), *v = big(nD * sizeof(float)), *o = big(nD * sizeof(float)),
          *t1 = big(nW * sizeof(float)), *t2 = big(nW * sizeof(float)), *t3 = big(nW * sizeof(float));
    float *rope = malloc((size_t)N * 2 * (hd / 2) * sizeof(float));
    int32_t *px = malloc((size_t)N * 2 * sizeof(int32_t));
    g4_pool *pool = g4_pool_acquire(n_threads > 0 ? n_threads : 1);
    int nth = pool ? g4_pool_size(pool) : 1;
    /* exact: the patches' K/V as one cache page of N positions that every
     * patch sees whole (the decoder's attention op, scale 1, bidirectional);
     * fast: the blocked dense op */
    float *scores = big((exact ? g4_attn_ws_floats(nth, e->n_head, D)
                                  : g4_attn_dense_ws_floats(nth, N, e->n_head, hd)) * sizeof(float));
    const g4_kv_view **kvp = malloc((size_t)N * sizeof *kvp);
    int32_t *alo = calloc((size_t)N, sizeof *alo), *ahi = malloc((size_t)N * sizeof *ahi);
    g4_exec ex = { .pool = pool, .n_threads = nth, .precision = exact ? 1 : 0 };
    /* fast path: the linears in int8 (Q8_0 panels, matmul.h) where the CPU
     * has VNNI, else bf16 (tensor/bf16.h) where it has AVX512_BF16; the
     * attention products bf16 */
    ex.mm.bf16 = !exact;
    ex.mm.i8 = !exact;
    ex.mm.act_bytes = nW * sizeof(float) + 4096 + g4_matmul_bf16_bytes(wide, nth);
    if (ex.mm.act_bytes < g4_matmul_i8_bytes(wide, N, nth)) ex.mm.act_bytes = g4_matmul_i8_bytes(wide, N, nth);
    ex.mm.act = big(ex.mm.act_bytes);
    int rc = -1;
    if (!hbuf || !a || !q || !k || !v || !o || !t1 || !t2 || !t3 || !rope || !px || !pool || !scores || !ex.mm.act ||
        !kvp || !alo || !ahi) {
        g4_seterr(err, "vision encoder: out of memory for %d patches", N);
        goto done;
    }
    g4_vision_phases ph = { 0 };
    double c0 = now_s(), c1;
    /* patches in the GGUF weight's input order (c, dy, dx), mapped to 2v - 1 */
    for (int py = 0; py < Hp; py++)
        for (int pxx = 0; pxx < Wp; pxx++) {
            float *dst = t1 + (size_t)(py * Wp + pxx) * 768;
            for (int dy = 0; dy < p; dy++)
                for (int dx = 0; dx < p; dx++) {
                    const uint8_t *s = rgb + ((size_t)(py * p + dy) * w + (size_t)(pxx * p + dx)) * 3;
                    for (int c = 0; c < 3; c++) dst[c * 256 + dy * 16 + dx] = 2.0f * ((float)s[c] / 255.0f) - 1.0f;
                }
        }
    /* the patch embedding stays f32 on the fast path: its rounding travels
     * through every layer (bf16 here was most of the fast path's error,
     * 0.011-0.026 on the reference soft tokens against 0.003-0.008
     * without) for 0.3% of the encode's arithmetic */
    ex.mm.bf16 = ex.mm.i8 = false;
    g4_op_matmul(&ex, &e->patch, 0, t1, 768, N, hbuf, D);
    ex.mm.bf16 = ex.mm.i8 = !exact;
    const g4_type_traits *pt = g4_type_info(e->pos.type);
    for (int n = 0; n < N; n++) {
        int x = n % Wp, y = n / Wp;
        float *r = hbuf + (size_t)n * D;
        pt->to_float(g4_mat_row(&e->pos, 0, x), a, D);
        pt->to_float(g4_mat_row(&e->pos, 0, (int64_t)e->n_pos + y), a + D, D);
        for (int j = 0; j < D; j++) r[j] += a[j] + a[D + j];
        px[n] = x;
        px[N + n] = y;
    }
    /* 2-D RoPE: the first half of each head rotates with x, the second with y */
    int nr = hd / 2;
    float *rx = rope, *ry = rope + (size_t)N * nr;
    g4_op_rope_table(rx, px, N, nr, 100.0f, NULL);
    g4_op_rope_table(ry, px + N, N, nr, 100.0f, NULL);
    c1 = now_s();
    ph.patch = c1 - c0;
    for (int l = 0; l < e->L; l++) {
        const vlayer *y = &e->layers[l];
        c0 = c1;
        g4_op_rmsnorm(&ex, a, hbuf, y->ln1, N, D, (size_t)D, e->eps, NULL);
        clin_apply(&ex, &y->q, a, N, t1, q);
        clin_apply(&ex, &y->k, a, N, t1, k);
        clin_apply(&ex, &y->v, a, N, t1, v);
        g4_op_rmsnorm(&ex, q, q, y->q_norm, N * e->n_head, hd, (size_t)hd, e->eps, NULL);
        g4_op_rmsnorm(&ex, k, k, y->k_norm, N * e->n_head, hd, (size_t)hd, e->eps, NULL);
        g4_op_rmsnorm(&ex, v, v, NULL, N * e->n_head, hd, (size_t)hd, e->eps, NULL);
        for (int n = 0; n < N; n++)
            for (int hh = 0; hh < e->n_head; hh++) {
                float *qh = q + (size_t)n * D + (size_t)hh * hd, *kh = k + (size_t)n * D + (size_t)hh * hd;
                g4_op_rope(qh, rx + (size_t)n * nr, nr);
                g4_op_rope(qh + nr, ry + (size_t)n * nr, nr);
                g4_op_rope(kh, rx + (size_t)n * nr, nr);
                g4_op_rope(kh + nr, ry + (size_t)n * nr, nr);
            }
        c1 = now_s();
        ph.attn_lin += c1 - c0;
        c0 = c1;
        if (exact) {
            int32_t page0 = 0;
            g4_kv_view kv = { .k = (char *)k, .v = (char *)v, .page = N, .n_pages = 1, .pages = &page0 };
            for (int n = 0; n < N; n++) { kvp[n] = &kv; ahi[n] = N; }
            g4_attn at = { .q = q, .out = o, .T = N, .n_head = e->n_head, .n_kv_head = e->n_head, .head_dim = hd,
                           .kv = kvp, .lo = alo, .hi = ahi };
            g4_op_attention(&ex, &at, scores, D);
        } else {
            /* fast path: blocked, each K/V row serves a block of queries */
            g4_op_attention_dense(&ex, q, k, v, o, N, e->n_head, hd, 1.0f, scores);
        }
        c1 = now_s();
        ph.attn += c1 - c0;
        c0 = c1;
        clin_apply(&ex, &y->o, o, N, t1, a);
        g4_op_rmsnorm(&ex, a, a, y->post_attn, N, D, (size_t)D, e->eps, hbuf);
        c1 = now_s();
        ph.attn_lin += c1 - c0;
        c0 = c1;
        g4_op_rmsnorm(&ex, a, hbuf, y->ln2, N, D, (size_t)D, e->eps, NULL);
        clin_apply(&ex, &y->gate, a, N, t1, t2);
        clin_apply(&ex, &y->up, a, N, t1, t3);
        g4_op_geglu(&ex, t2, t2, t3, (long)N * F);
        clin_apply(&ex, &y->down, t2, N, t1, a);
        g4_op_rmsnorm(&ex, a, a, y->post_ffn, N, D, (size_t)D, e->eps, hbuf);
        if (y->out_scale != 1.0f) g4_op_scale(hbuf, nD, y->out_scale);
        c1 = now_s();
        ph.mlp += c1 - c0;
    }
    c0 = c1;
    /* 3x3 average pool (row-major cells), x sqrt(D), standardize, then the
     * embedder: W_embed . RMSNorm(no weight) */
    int gw = Wp / 3, gh = Hp / 3, G = gw * gh;
    float sc = sqrtf((float)D);
    for (int gy = 0; gy < gh; gy++)
        for (int gx = 0; gx < gw; gx++) {
            float *d = a + (size_t)(gy * gw + gx) * D;
            for (int j = 0; j < D; j++) d[j] = 0;
            for (int dy = 0; dy < 3; dy++)
                for (int dx = 0; dx < 3; dx++) {
                    const float *s = hbuf + (size_t)((gy * 3 + dy) * Wp + gx * 3 + dx) * D;
                    for (int j = 0; j < D; j++) d[j] += s[j];
                }
            for (int j = 0; j < D; j++) {
                d[j] = d[j] / 9.0f * sc;
                if (e->std_bias) d[j] = (d[j] - e->std_bias[j]) * e->std_scale[j];
            }
        }
    g4_op_rmsnorm(&ex, a, a, NULL, G, D, (size_t)D, e->eps, NULL);
    g4_op_matmul(&ex, &e->embed, 0, a, D, G, out, e->D_text);
    ph.pool = now_s() - c0;
    last_phases = ph;
    rc = 0;
done:
    free(hbuf); free(a); free(q); free(k); free(v); free(o); free(t1); free(t2); free(t3);
    free(rope); free(px); free(scores); free(ex.mm.act); free(kvp); free(alo); free(ahi);
    if (pool) g4_pool_release(pool);
    return rc;
}
