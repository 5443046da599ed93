/* Vision path against shared/testdata/gemma4-mm-ref (README there): the
 * encoder + embedder on llama.cpp's preprocessed images (*.preproc.u8) vs the
 * transformers-semantics reference (*.exact.embd.f32), from the mmproj GGUF
 * and from the HF folder; the transformers resize rule and PIL-bicubic
 * resize vs *.hf.preproc.png; decode + preprocess + encode vs *.hf.embd.f32. */
#include "harness.h"

#include "encoder/mmproj.h"
#include "encoder/vision.h"


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

int main(void) {
    RUN(encoder_gguf);
    RUN(encoder_hf);
    return test_summary();
}
