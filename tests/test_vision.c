/* Vision path against shared/testdata/gemma4-mm-ref (README there): the
 * encoder + embedder on llama.cpp's preprocessed images (*.preproc.u8) vs the
 * transformers-semantics reference (*.exact.embd.f32), from the mmproj GGUF
 * and from the HF folder; the transformers resize rule and PIL-bicubic
 * resize vs *.hf.preproc.png; decode + preprocess + encode vs *.hf.embd.f32. */
#include "harness.h"

#include <unistd.h>

#include "encoder/mmproj.h"
#include "encoder/vision.h"
#include "media/image.h"
#include "tensor/bf16.h"
#include "tensor/types.h"
#include "gemma4c.h"


#define REF "testdata/gemma4-mm-ref/"

static const struct item { const char *name, *file; int pw, ph, hw, hh; } items[] = {
    { "img-grey-300x200", "img-grey-300x200.png", 384, 288, 960, 624 },
    { "img-jpeg-493x312", "img-jpeg-493x312.jpg", 480, 336, 1008, 624 },
    { "img-logo-180x361", "img-logo-180x361.png", 240, 432, 528, 1104 },
    { "img-pngtest-91x69", "img-pngtest-91x69.png", 384, 288, 912, 672 },
    { "img-tiny-2x3", "img-tiny-2x3.png", 288, 384, 624, 960 },
    { "img-wide-1000x40", "img-wide-1000x40.png", 1536, 96, 3984, 144 },
};
#define N_ITEMS (int)(sizeof items / sizeof *items)

static int n_threads(void) {
    const char *s = getenv("G4_TEST_THREADS");
    return s && atoi(s) > 0 ? atoi(s) : 2;
}

static void *read_ref(const char *name, const char *sfx, size_t *len) {
    char rel[256];
    snprintf(rel, sizeof rel, REF "%s%s", name, sfx);
    return th_read_file(shared_path(rel), len);
}

static double max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;   /* NaN sticks */
    }
    return m;
}

/* The fast path's bound on the soft tokens. Without AVX512_BF16 / VNNI the
 * f32 tiles and blocked attention: 1e-3 (reassociation; measured <= 3.7e-4).
 * With AVX512_BF16 the attention products (Q K^T, P V) round both operands
 * to bf16 (tensor/bf16.h, u = 2^-8): each rounding a relative error of rms
 * u / sqrt(3) (RNE over uniform mantissas). With VNNI (the Q8_0 panel
 * kernel) the linears round weights and activations to Q8_0 (matmul.h
 * g4_mm_scratch.i8): per 32 values a step of amax / 127, an error of rms
 * step / sqrt(12) (uniform), so relative to the group's rms e8 = (amax /
 * rms) / (127 sqrt(12)); amax / rms is ~2.5 for 32 normal values, taken as
 * 3.5 (heavier tails): e8 = 7.96e-3, 3.5x bf16's (where VNNI is off but
 * bf16 on, the linears are bf16: u / sqrt(3)). On the longest path, two
 * operands each: R8 = 2 (1 + 4 L) linear roundings (per layer q/k/v,
 * output, gate/up, down; the embedder), Rb = 4 L attention ones. First
 * order, independent, zero-mean, carried to the output at its scale (the
 * norms renormalize): rms error sqrt(R8 e8^2 + Rb u^2 / 3) rms(ref), and
 * the largest of a few thousand values within 4.5 of those (a normal tail
 * of 7e-6 per value). L = 2: 0.155 rms(ref), 0.13-0.15 here; measured
 * 0.015-0.021 (bf16 linears: bound 0.044-0.051, measured 0.0035-0.0076;
 * the tiny tower's widths leave only its down projection (96 inputs) in
 * int8, so the count of roundings is the part of the bound that is loose). */
static double fast_bound(const g4_vision_enc *v, const float *ref, size_t n) {
    const bool bf = g4_bf16_dot_ok(), i8 = g4_type_info(G4_Q8_0)->gemm_panel != NULL;
    if (!bf && !i8) return 1e-3;
    int D, F, L;
    g4_vision_shape(v, &D, &F, &L);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)ref[i] * ref[i];
    const double ub = 0x1p-8 / sqrt(3.0), e8 = 3.5 / (127 * sqrt(12.0)), el = i8 ? e8 : ub, ea = bf ? ub : 0;
    return 4.5 * sqrt(2.0 * (1 + 4 * L) * el * el + 4.0 * L * ea * ea) * sqrt(ss / (double)n);
}

/* Encoder alone, f32 products, on llama.cpp's preprocessed input. */
static void encoder_on_preproc(g4_mmproj *p, const char *what) {
    for (int i = 0; i < N_ITEMS; i++) {
        const struct item *it = &items[i];
        size_t ln, le;
        uint8_t *img = read_ref(it->name, ".preproc.u8", &ln);
        float *ref = read_ref(it->name, ".exact.embd.f32", &le);
        CHECKF(img && ref, "%s: reference files missing", it->name);
        if (!img || !ref) { free(img); free(ref); continue; }
        CHECK(ln == (size_t)it->pw * it->ph * 3);
        int nt = g4_vision_n_tokens(it->pw, it->ph), D = p->n_embd_text;
        CHECKF(le == (size_t)nt * D * 4, "%s: %d tokens, reference has %zu floats", it->name, nt, le / 4);
        float *out = calloc((size_t)nt * D, sizeof *out);
        g4_error e = { { 0 } };
        int rc = g4_vision_encode(p->vision, img, it->pw, it->ph, out, n_threads(), true, &e);
        CHECKF(rc == 0, "%s", e.msg);
        if (rc == 0 && le == (size_t)nt * D * 4) {
            double m = max_abs(out, ref, (size_t)nt * D);
            printf("  %s %s: encoder vs exact max |d| = %.3g\n", what, it->name, m);
            CHECKF(m <= 1e-3, "%s %s: max |d| %g", what, it->name, m);
            /* the fast path (blocked dense attention, tiled products) too */
            rc = g4_vision_encode(p->vision, img, it->pw, it->ph, out, n_threads(), false, &e);
            CHECKF(rc == 0, "%s", e.msg);
            m = rc == 0 ? max_abs(out, ref, (size_t)nt * D) : 1;
            const double tol = fast_bound(p->vision, ref, (size_t)nt * D);
            printf("  %s %s: fast encoder vs exact max |d| = %.3g (bound %.3g)\n", what, it->name, m, tol);
            CHECKF(m <= tol, "%s %s: fast path max |d| %g, bound %g", what, it->name, m, tol);
        }
        free(out); free(img); free(ref);
    }
}

TEST(encoder_gguf) {
    g4_error e = { { 0 } };
    g4_mmproj *p = g4_mmproj_open(shared_path(REF "gemma4-mm.mmproj.gguf"), &e);
    CHECKF(p, "%s", e.msg);
    if (!p) return;
    CHECK(p->vision && p->n_embd_text == 64);
    encoder_on_preproc(p, "gguf");
    g4_mmproj_free(p);
}

TEST(encoder_hf) {
    g4_error e = { { 0 } };
    g4_mmproj *p = g4_mmproj_open(shared_path(REF "gemma4-mm.hf"), &e);
    CHECKF(p, "%s", e.msg);
    if (!p) return;
    CHECK(p->vision && p->n_embd_text == 64);
    encoder_on_preproc(p, "hf");
    g4_mmproj_free(p);
}

/* Token counts and target sizes of the transformers rule (README table and
 * the spec's worked sizes). */
TEST(target_sizes) {
    for (int i = 0; i < N_ITEMS; i++) {
        const struct item *it = &items[i];
        int W, H, tw, th;
        sscanf(strrchr(it->name, '-') + 1, "%dx%d", &W, &H);
        CHECK(g4_vision_target_size(W, H, 280, &tw, &th, NULL) == 0);
        CHECKF(tw == it->hw && th == it->hh, "%s: %dx%d, expected %dx%d", it->name, tw, th, it->hw, it->hh);
    }
    static const int t[][5] = { { 640, 480, 70, 432, 336 }, { 1920, 1080, 280, 1056, 576 },
                                { 224, 224, 1120, 1584, 1584 }, { 4000, 300, 280, 2928, 192 },
                                { 4000, 300, 1120, 5856, 432 } };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        int tw, th;
        CHECK(g4_vision_target_size(t[i][0], t[i][1], t[i][2], &tw, &th, NULL) == 0);
        CHECKF(tw == t[i][3] && th == t[i][4], "%dx%d @%d: %dx%d", t[i][0], t[i][1], t[i][2], tw, th);
    }
    CHECK(!g4_vision_budget_ok(100) && g4_vision_budget_ok(70) && g4_vision_budget_ok(1120));
}

/* Decode + transformers resize (PIL bicubic) vs the reference's resized
 * image, within +-1 level. */
TEST(preprocess_vs_pil) {
    static const char *names[] = { "img-pngtest-91x69", "img-jpeg-493x312" };
    static const char *files[] = { "media/img-pngtest-91x69.png", "media/img-jpeg-493x312.jpg" };
    for (int i = 0; i < 2; i++) {
        g4_image im, ref;
        g4_error e = { { 0 } };
        char rel[256];
        snprintf(rel, sizeof rel, REF "%s", files[i]);
        CHECKF(g4_image_load(shared_path(rel), &im, &e) == 0, "%s", e.msg);
        snprintf(rel, sizeof rel, REF "%s.hf.preproc.png", names[i]);
        CHECKF(g4_image_load(shared_path(rel), &ref, &e) == 0, "%s", e.msg);
        if (!im.rgb || !ref.rgb) { g4_image_free(&im); g4_image_free(&ref); continue; }
        if (i == 1) {   /* the JPEG decoders themselves: ours (libjpeg-turbo) vs stb_image's M.rgb.u8 */
            size_t ls;
            uint8_t *stb = read_ref(names[i], ".rgb.u8", &ls);
            CHECK(stb && ls == (size_t)im.w * im.h * 3);
            int md = 0;
            size_t nd = 0;
            for (size_t k = 0; stb && k < ls && k < (size_t)im.w * im.h * 3; k++) {
                int d = abs((int)stb[k] - im.rgb[k]);
                if (d > md) md = d;
                nd += d != 0;
            }
            printf("  %s: libjpeg-turbo vs stb_image decode: max |d| %d levels, %zu of %zu values differ\n", names[i], md,
                   nd, ls);
            CHECKF(md <= 3, "decoders differ by %d levels", md);
            free(stb);
        }
        int tw, th;
        CHECK(g4_vision_target_size(im.w, im.h, 280, &tw, &th, NULL) == 0);
        CHECK(tw == ref.w && th == ref.h);
        uint8_t *r = malloc((size_t)tw * th * 3);
        CHECK(g4_vision_resize_bicubic(im.rgb, im.w, im.h, r, tw, th) == 0);
        int md = 0;
        size_t ndiff = 0;
        for (size_t k = 0; tw == ref.w && th == ref.h && k < (size_t)tw * th * 3; k++) {
            int d = abs((int)r[k] - ref.rgb[k]);
            if (d > md) md = d;
            ndiff += d != 0;
        }
        printf("  %s: resized %dx%d vs PIL: max |d| %d levels, %zu values differ\n", names[i], tw, th, md, ndiff);
        /* PNG decoding is exact; JPEG decoders differ by 1-2 levels (PIL's
         * libjpeg-turbo build vs Debian's), which the resize carries: <= 2 */
        CHECKF(md <= (i == 0 ? 1 : 2), "%s: max %d levels", names[i], md);
        free(r);
        g4_image_free(&im);
        g4_image_free(&ref);
    }
}

/* The whole transformers path: decode, resize (budget 280), encode, vs
 * *.hf.embd.f32. PNG: 1e-3 (decode and resize are exact). JPEG: the
 * decoders differ by <= 2 levels in ~0.05% of the resized values (an input
 * step of 2/255 * 2 = 0.016 after 2v - 1, on few patches, averaged by the
 * 3x3 pooler); measured 2.5e-3 on the soft tokens, bound 1e-2. */
TEST(pipeline_hf) {
    g4_error e = { { 0 } };
    g4_mmproj *p = g4_mmproj_open(shared_path(REF "gemma4-mm.mmproj.gguf"), &e);
    CHECKF(p, "%s", e.msg);
    if (!p) return;
    for (int i = 0; i < N_ITEMS; i++) {
        const struct item *it = &items[i];
        char rel[256];
        snprintf(rel, sizeof rel, REF "media/%s", it->file);
        g4_image im;
        CHECKF(g4_image_load(shared_path(rel), &im, &e) == 0, "%s", e.msg);
        if (!im.rgb) continue;
        int tw, th;
        CHECK(g4_vision_target_size(im.w, im.h, 280, &tw, &th, NULL) == 0);
        CHECK(tw == it->hw && th == it->hh);
        uint8_t *r = malloc((size_t)tw * th * 3);
        CHECK(g4_vision_resize_bicubic(im.rgb, im.w, im.h, r, tw, th) == 0);
        int nt = g4_vision_n_tokens(tw, th), D = p->n_embd_text;
        size_t le;
        float *ref = read_ref(it->name, ".hf.embd.f32", &le), *out = calloc((size_t)nt * D, sizeof *out);
        CHECKF(ref && le == (size_t)nt * D * 4, "%s: token count %d vs reference %zu", it->name, nt, le / 4 / D);
        CHECKF(g4_vision_encode(p->vision, r, tw, th, out, n_threads(), true, &e) == 0, "%s", e.msg);
        if (ref && le == (size_t)nt * D * 4) {
            double m = max_abs(out, ref, (size_t)nt * D), tol = strstr(it->file, ".jpg") ? 1e-2 : 1e-3;
            printf("  %s: decode+resize+encode vs hf max |d| = %.3g (bound %g)\n", it->name, m, tol);
            CHECKF(m <= tol, "%s: %g", it->name, m);
        }
        free(ref); free(out); free(r);
        g4_image_free(&im);
    }
    g4_mmproj_free(p);
}

static int32_t *read_ids(const char *name, const char *sfx, int *n) {
    size_t len;
    char *t = read_ref(name, sfx, &len);
    if (!t) return NULL;
    int32_t *ids = malloc((len / 2 + 1) * sizeof *ids);
    int k = 0;
    for (char *p = t, *e; ids; p = e) {
        long v = strtol(p, &e, 10);
        if (e == p) break;
        ids[k++] = (int32_t)v;
    }
    free(t);
    *n = k;
    return ids;
}

/* Soft tokens into the text model through gemma4c_batch.embd: the golden
 * token file with the reference's soft tokens at the placeholders (PLE row of
 * the pad id, causal: E2B-like) vs the reference logits. */
static double logits_with(gemma4c_model *m, const int32_t *ids, int n, const float *soft, int n_soft,
                          const float *ref) {
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = n; cp.n_batch = n; cp.n_threads = n_threads(); cp.precision = GEMMA4C_PREC_EXACT;
    char err[600];
    gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
    if (!c) return INFINITY;
    int H = 64, V = 512, k = 0;
    float *embd = calloc((size_t)n * H, sizeof *embd);
    uint8_t *has = calloc((size_t)n, 1);
    int8_t *keep = malloc((size_t)n);
    memset(keep, 1, (size_t)n);
    for (int i = 0; i < n; i++)
        if ((ids[i] == 14 || ids[i] == 17) && k < n_soft) {
            memcpy(embd + (size_t)i * H, soft + (size_t)k++ * H, (size_t)H * 4);
            has[i] = 1;
        }
    double m_ = INFINITY;
    gemma4c_batch b = { .n_tokens = n, .token = ids, .logits = keep, .embd = embd, .has_embd = has };
    if (k == n_soft && gemma4c_decode(c, &b, err, sizeof err) == 0) {
        m_ = 0;
        for (int i = 0; i < n; i++) {
            double d = max_abs(gemma4c_logits_ith(c, i), ref + (size_t)i * V, (size_t)V);
            if (!(d <= m_)) m_ = d;
        }
    }
    free(embd); free(has); free(keep);
    gemma4c_context_free(c);
    return m_;
}

TEST(logits_exact_injection) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path(REF "gemma4-mm.gguf"), err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) return;
    CHECK(gemma4c_model_image_attention(m) == 0);   /* E2B-like: causal over image tokens */
    for (int i = 0; i < N_ITEMS; i++) {
        int n;
        size_t le, ll;
        int32_t *ids = read_ids(items[i].name, ".tokens.txt", &n);
        float *soft = read_ref(items[i].name, ".exact.embd.f32", &le), *ref = read_ref(items[i].name, ".exact.logits.f32", &ll);
        CHECK(ids && soft && ref && ll == (size_t)n * 512 * 4);
        if (ids && soft && ref && ll == (size_t)n * 512 * 4) {
            double d = logits_with(m, ids, n, soft, (int)(le / 256), ref);
            printf("  %s: logits with the exact soft tokens: max |d| = %.3g\n", items[i].name, d);
            CHECKF(d <= 1e-3, "%s: %g", items[i].name, d);
        }
        free(ids); free(soft); free(ref);
    }
    gemma4c_model_free(m);
}

/* The public API end to end, from the GGUF pair and from the HF folder:
 * mmproj beside the model, load + encode a PNG, logits vs *.hf.logits.f32. */
TEST(api_end_to_end) {
    static const char *models[] = { REF "gemma4-mm.gguf", REF "gemma4-mm.hf" };
    for (int v = 0; v < 2; v++) {
        char err[600];
        gemma4c_model *m = gemma4c_model_open(shared_path(models[v]), err, sizeof err);
        CHECKF(m, "%s", err);
        if (!m) continue;
        gemma4c_mmproj *mp = gemma4c_mmproj_open(m, NULL, err, sizeof err);
        CHECKF(mp, "%s", err);
        gemma4c_media_params par = gemma4c_media_default_params();
        par.precision = GEMMA4C_PREC_EXACT;
        par.n_threads = n_threads();
        gemma4c_media *it = mp ? gemma4c_media_load(mp, shared_path(REF "media/img-pngtest-91x69.png"), 0, &par, err, sizeof err) : NULL;
        CHECKF(it, "%s", err);
        const float *soft = it ? gemma4c_media_encode(it, err, sizeof err) : NULL;
        int n;
        size_t ll;
        int32_t *ids = read_ids("img-pngtest-91x69", ".hf.tokens.txt", &n);
        float *ref = read_ref("img-pngtest-91x69", ".hf.logits.f32", &ll);
        CHECK(it && gemma4c_media_n_tokens(it) == 266);
        if (soft && ids && ref) {
            double d = logits_with(m, ids, n, soft, gemma4c_media_n_tokens(it), ref);
            printf("  %s: PNG -> logits vs hf: max |d| = %.3g\n", v ? "hf folder" : "gguf pair", d);
            CHECKF(d <= 1e-3, "%g", d);
        }
        free(ids); free(ref);
        gemma4c_media_free(it);
        gemma4c_mmproj_free(mp);
        gemma4c_model_free(m);
    }
}

/* A malformed mmproj: a missing tensor, a mis-shaped one, a wrong
 * projector type; each a clear error naming what was wrong. */
static void bad_mmproj(void (*mutate)(g4_gguf_file *), const char *expect) {
    g4_error e = { { 0 } };
    g4_gguf_file *f = g4_gguf_open(shared_path(REF "gemma4-mm.mmproj.gguf"), &e);
    CHECKF(f, "%s", e.msg);
    if (!f) return;
    mutate(f);
    g4_mmproj *p = g4_mmproj_from_file(f, &e);
    CHECKF(!p && strstr(e.msg, expect), "expected an error with '%s', got '%s'", expect, p ? "(loaded)" : e.msg);
    g4_mmproj_free(p);
}
static g4_gguf_tensor *tensor(g4_gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}
static void drop_q(g4_gguf_file *f) { tensor(f, "v.blk.1.attn_q.weight")->name[0] = 'x'; }
static void shape_up(g4_gguf_file *f) { tensor(f, "v.blk.0.ffn_up.weight")->ne[1] = 95; }
static void shape_pos(g4_gguf_file *f) { tensor(f, "v.position_embd.weight")->ne[0] = 31; }
static void no_embed(g4_gguf_file *f) { tensor(f, "mm.input_projection.weight")->name[0] = 'x'; }
static void proj_type(g4_gguf_file *f) { g4_gguf_set_str(f, "clip.vision.projector_type", "siglip"); }
static void text_arch(g4_gguf_file *f) { g4_gguf_set_str(f, "general.architecture", "gemma4"); }
static void nan_clip(g4_gguf_file *f) {
    g4_gguf_tensor *t = tensor(f, "v.blk.0.attn_k.input_max");
    float *v = g4_gguf_own(f, malloc(4));
    *v = NAN;
    t->data = v;
}

TEST(hostile_mmproj) {
    bad_mmproj(drop_q, "no tensor 'v.blk.1.attn_q.weight'");
    bad_mmproj(shape_up, "'v.blk.0.ffn_up.weight' has shape {32, 95, 1, 1}, expected {32, 96}");
    bad_mmproj(shape_pos, "'v.position_embd.weight' has shape {31, 512, 2}");
    bad_mmproj(no_embed, "no tensor 'mm.input_projection.weight'");
    bad_mmproj(proj_type, "projector_type is 'siglip'");
    bad_mmproj(text_arch, "an mmproj file has 'clip'");
    bad_mmproj(nan_clip, "'v.blk.0.attn_k.input_max' is NaN");
    g4_error e = { { 0 } };
    CHECK(!g4_mmproj_open(shared_path(REF "no-such.gguf"), &e) && e.msg[0]);
    /* a whole encode refuses sizes that are not multiples of 48 */
    g4_mmproj *p = g4_mmproj_open(shared_path(REF "gemma4-mm.mmproj.gguf"), &e);
    if (p) {
        uint8_t px[50 * 48 * 3] = { 0 };
        float out[64];
        CHECK(g4_vision_encode(p->vision, px, 50, 48, out, 1, true, &e) == -1 && strstr(e.msg, "multiple of 48"));
        g4_mmproj_free(p);
    }
}

/* A chat turn with an image part: the session expands the template's
 * <|image|> into the 266-token run (the reference prompt has 300 ids) and
 * its greedy first token is the argmax of the reference's last row. */
TEST(session_image_turn) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path(REF "gemma4-mm.gguf"), err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) return;
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = 512; cp.n_threads = n_threads(); cp.precision = GEMMA4C_PREC_EXACT;
    gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
    gemma4c_session_params sp = gemma4c_session_default_params();
    sp.n_predict = 1;
    sp.sampling.temperature = 0;
    gemma4c_session *ss = c ? gemma4c_session_new(c, &sp, err, sizeof err) : NULL;
    gemma4c_mmproj *mp = gemma4c_mmproj_open(m, NULL, err, sizeof err);
    gemma4c_media_params par = gemma4c_media_default_params();
    par.precision = GEMMA4C_PREC_EXACT;
    gemma4c_media *it = mp ? gemma4c_media_load(mp, shared_path(REF "media/img-pngtest-91x69.png"), 0, &par, err, sizeof err) : NULL;
    CHECKF(ss && it, "%s", err);
    static const char req[] = "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"},"
                              "{\"type\":\"text\",\"text\":\"Describe this image.\"}]}]}";
    gemma4c_turn_result res;
    if (ss && it) {
        /* without the item: a clear error */
        CHECK(gemma4c_session_turn(ss, req, strlen(req), NULL, NULL, &res, err, sizeof err) != 0 &&
              strstr(err, "more media parts than media items"));
        CHECK(gemma4c_session_add_media(ss, it) == 0);
        int rc = gemma4c_session_turn(ss, req, strlen(req), NULL, NULL, &res, err, sizeof err);
        CHECKF(rc == 0, "%s", err);
        CHECKF(res.n_prompt == 300, "n_prompt %d", res.n_prompt);
        size_t ll;
        float *ref = read_ref("img-pngtest-91x69", ".hf.logits.f32", &ll);
        if (rc == 0 && ref && ll == 300 * 512 * 4) {
            int best = 0;
            for (int v = 1; v < 512; v++) if (ref[299 * 512 + v] > ref[299 * 512 + best]) best = v;
            size_t len;
            const char *piece = gemma4c_tokenizer_piece(gemma4c_model_tokenizer(m), best, &len);
            char want[64] = { 0 };
            snprintf(want, sizeof want, "%.*s", (int)len, piece);
            printf("  session: greedy first token %d ('%s'), message %s\n", best, want, res.message);
            CHECK(res.n_generated == 1 && res.message);
            /* the piece as text: "\u2581" is a space, the parser trims it */
            const char *w = want;
            if (!strncmp(w, "\xe2\x96\x81", 3)) w += 3;
            char expect[96];
            snprintf(expect, sizeof expect, "\"content\":\"%s\"", w);
            CHECKF(res.message && strstr(res.message, expect), "expected %s in %s", expect, res.message);
        }
        free(ref);
        free(res.message);
    }
    gemma4c_session_free(ss);
    gemma4c_media_free(it);
    gemma4c_mmproj_free(mp);
    gemma4c_context_free(c);
    gemma4c_model_free(m);
}

/* A folder of 40 frames written here (BMP) as a video: 32 sampled, the
 * prompt layout of the spec (§4: "MM:SS <|image>" + 63 x <|video|> +
 * "<image|>", joined by spaces, t = idx / 24 fps), and each frame's soft
 * tokens equal that frame encoded as an image with budget 70. */
static void write_bmp(const char *path, int w, int h, int seed) {
    FILE *f = fopen(path, "wb");
    int stride = (w * 3 + 3) & ~3;
    uint32_t size = 54 + (uint32_t)stride * h;
    uint8_t hd[54] = { 'B', 'M' };
    memcpy(hd + 2, &size, 4);
    hd[10] = 54; hd[14] = 40;
    memcpy(hd + 18, &w, 4);
    memcpy(hd + 22, &h, 4);
    hd[26] = 1; hd[28] = 24;
    fwrite(hd, 1, 54, f);
    uint8_t *row = calloc((size_t)stride, 1);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) row[x * 3 + c] = (uint8_t)((x * 7 + y * 3 + c * 50 + seed * 13) & 255);
        fwrite(row, 1, (size_t)stride, f);
    }
    free(row);
    fclose(f);
}

TEST(video_folder) {
    char dir[] = "/tmp/g4visXXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    for (int i = 0; i < 40; i++) {
        snprintf(path, sizeof path, "%s/f%03d.bmp", dir, i);
        write_bmp(path, 160, 120, i);
    }
    char err[600];
    gemma4c_mmproj *mp = gemma4c_mmproj_open(NULL, shared_path(REF "gemma4-mm.mmproj.gguf"), err, sizeof err);
    CHECKF(mp, "%s", err);
    gemma4c_media_params par = gemma4c_media_default_params();
    par.precision = GEMMA4C_PREC_EXACT;
    par.n_threads = n_threads();
    gemma4c_media *v = mp ? gemma4c_media_load(mp, dir, GEMMA4C_MEDIA_VIDEO, &par, err, sizeof err) : NULL;
    CHECKF(v, "%s", err);
    if (v) {
        CHECK(gemma4c_media_n_frames(v) == 32 && gemma4c_media_n_tokens(v) == 32 * 63);
        char *pr = gemma4c_media_prompt(v);
        /* frame 31 is source frame 38: 38 / 24 = 1.58 s */
        CHECK(pr && !strncmp(pr, "00:00 <|image><|video|><|video|>", 32));
        CHECK(pr && strstr(pr, "<|video|><image|> 00:01 <|image><|video|>"));
        int nv = 0;
        for (const char *q = pr; q && (q = strstr(q, "<|video|>")); q += 9) nv++;
        CHECK(nv == 32 * 63);
        size_t L = pr ? strlen(pr) : 0;
        CHECK(L > 8 && !strcmp(pr + L - 8, "<image|>"));
        free(pr);
        const float *soft = gemma4c_media_encode(v, err, sizeof err);
        CHECKF(soft, "%s", err);
        for (int j = 0; soft && j < 32; j += 31) {
            snprintf(path, sizeof path, "%s/f%03d.bmp", dir, j * 40 / 32);
            gemma4c_media_params ip = par;
            ip.image_tokens = 70;
            gemma4c_media *im = gemma4c_media_load(mp, path, 0, &ip, err, sizeof err);
            const float *is = im ? gemma4c_media_encode(im, err, sizeof err) : NULL;
            CHECKF(is && gemma4c_media_n_tokens(im) == 63, "%s", err);
            if (is) CHECK(!memcmp(is, soft + (size_t)j * 63 * 64, 63 * 64 * sizeof(float)));
            gemma4c_media_free(im);
        }
    }
    gemma4c_media_free(v);
    gemma4c_mmproj_free(mp);
    for (int i = 0; i < 40; i++) {
        snprintf(path, sizeof path, "%s/f%03d.bmp", dir, i);
        remove(path);
    }
    rmdir(dir);
}

/* 26B/31B-style model (no per-layer embeddings, gemma4-ref's dense one):
 * an image's soft tokens see each other (run ids through gemma4c_batch):
 * changing the run's last row changes the first row's logits; without run
 * ids (causal) it does not; text before the image never changes. */
static void dense_logits(gemma4c_model *m, const float *embd, const uint8_t *has, const int32_t *run, float *out) {
    int32_t ids[12] = { 2, 300, 301, 12, 14, 14, 14, 14, 13, 302, 303, 304 };
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = 32; cp.n_threads = n_threads(); cp.precision = GEMMA4C_PREC_EXACT;
    char err[600];
    gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
    int8_t keep[12];
    memset(keep, 1, sizeof keep);
    gemma4c_batch b = { .n_tokens = 12, .token = ids, .logits = keep, .embd = embd, .has_embd = has, .run = run };
    if (c && gemma4c_decode(c, &b, err, sizeof err) == 0) {
        int V = gemma4c_n_vocab(c);
        for (int i = 0; i < 12; i++) memcpy(out + (size_t)i * V, gemma4c_logits_ith(c, i), (size_t)V * sizeof *out);
    }
    gemma4c_context_free(c);
}

TEST(bidirectional_image_runs) {
    char err[600];
    gemma4c_model *m = gemma4c_model_open(shared_path("testdata/gemma4-ref/gemma4-dense.gguf"), err, sizeof err);
    CHECKF(m, "%s", err);
    if (!m) return;
    CHECK(gemma4c_model_image_attention(m) == 1);
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    int H = info.n_embd, V = info.n_vocab;
    float *embd = calloc((size_t)12 * H, sizeof *embd), *l[4];
    uint8_t has[12] = { 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0 };
    int32_t run[12] = { -1, -1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1 };
    for (int i = 0; i < 12 * H; i++) embd[i] = (float)sin(i * 0.37) * 0.5f;
    for (int k = 0; k < 4; k++) l[k] = calloc((size_t)12 * V, sizeof(float));
    dense_logits(m, embd, has, run, l[0]);
    dense_logits(m, embd, has, NULL, l[2]);
    for (int j = 0; j < H; j++) embd[7 * H + j] += 1.0f;   /* the run's last row */
    dense_logits(m, embd, has, run, l[1]);
    dense_logits(m, embd, has, NULL, l[3]);
    double bidir = max_abs(l[0] + 4 * V, l[1] + 4 * V, V), causal = max_abs(l[2] + 4 * V, l[3] + 4 * V, V),
           before = max_abs(l[0], l[1], 4 * (size_t)V);
    printf("  first image row moves by %.3g with run ids, %.3g without; text before: %.3g\n", bidir, causal, before);
    CHECK(bidir > 1e-3 && causal == 0 && before == 0);
    for (int k = 0; k < 4; k++) free(l[k]);
    free(embd);
    gemma4c_model_free(m);
}

int main(void) {
    RUN(bidirectional_image_runs);
    RUN(video_folder);
    RUN(session_image_turn);
    RUN(hostile_mmproj);
    RUN(logits_exact_injection);
    RUN(api_end_to_end);
    RUN(pipeline_hf);
    RUN(target_sizes);
    RUN(preprocess_vs_pil);
    RUN(encoder_gguf);
    RUN(encoder_hf);
    return test_summary();
}
