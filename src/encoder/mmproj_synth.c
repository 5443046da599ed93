/* Synthetic mmproj files: random weights in the layout llama.cpp's converter
 * writes for the released sizes (gemma4-multimodal.md §1, §10), for demos and
 * for benchmarking real shapes: the vision tower, and for E2B/E4B (and the
 * tiny demo pair) the audio tower. */
#include "encoder/mmproj_synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf_write.h"
#include "tensor/types.h"

typedef struct vpreset {
    const char *name;
    int D, F, L, nH, D_text, n_pos;
    bool clip, std;
    bool audio;            /* E2B/E4B (and tiny) carry an audio tower */
} vpreset;

/* Audio tower shapes: the released E2B/E4B one, and gemma4-mm-ref's tiny one
 * (so `synth --arch tiny --mmproj` pairs hear too). */
typedef struct apreset { int D, FF, L, H, C0, C1, P; } apreset;
static const apreset AP_RELEASED = { 1024, 4096, 12, 8, 128, 32, 1536 }, AP_TINY = { 32, 128, 2, 2, 8, 4, 48 };

static const vpreset VP[] = {
    /* tiny: the shapes of the tiny vision tower of shared/testdata/gemma4-mm-ref,
     * projecting into `synth --arch tiny`'s width (128) */
    { "tiny", 32, 96, 2, 2, 128, 512, true, true, true },
    { "e2b", 768, 3072, 16, 12, 1536, 10240, true, false, true },
    { "e4b", 768, 3072, 16, 12, 2560, 10240, true, false, true },
    { "26b-a4b", 1152, 4304, 27, 16, 2816, 10240, false, true, false },
    { "31b", 1152, 4304, 27, 16, 5376, 10240, false, true, false },
};

enum { K_MAT, K_NORM, K_POS, K_LO, K_HI, K_STDB, K_PATCH, K_MATF32 };

typedef struct sctx {
    uint64_t seed;
    const int *kinds;
    const g4_gguf_tensor *t;
    float *row;
    int64_t max_row;
} sctx;

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Rows seeded from (seed, tensor, row): the bytes do not depend on chunking. */
static int fill(void *ud, uint64_t ti, int64_t row0, int64_t nrows, void *dst, g4_error *err) {
    sctx *c = ud;
    const g4_gguf_tensor *t = &c->t[ti];
    int64_t n = t->ne[0];
    const g4_type_traits *tr = g4_type_info(t->type);
    size_t rb = g4_row_size(t->type, n);
    if (!tr || !tr->from_float || !rb) return g4_seterr(err, "cannot write type %s", g4_type_name(t->type));
    for (int64_t r = 0; r < nrows; r++) {
        uint64_t z = mix(c->seed ^ mix((ti + 1) * 0x100000001b3ull) ^ (uint64_t)(row0 + r) * 0x9e3779b97f4a7c15ull);
        float *x = c->row;
        for (int64_t i = 0; i < n; i++) {
            z ^= z << 13; z ^= z >> 7; z ^= z << 17;
            float u = (float)(int32_t)(z >> 32) * (1.0f / 2147483648.0f);   /* [-1, 1) */
            switch (c->kinds[ti]) {
            case K_NORM: x[i] = 1.0f + 0.25f * u; break;
            case K_POS: x[i] = 0.1f * u; break;
            case K_LO: x[i] = -2.0f - u; break;
            case K_HI: x[i] = 2.0f + u; break;
            case K_STDB: x[i] = 0.1f * u; break;
            case K_PATCH: x[i] = (float)sqrt(3.0 / 768.0) * u; break;   /* rows of 16 of a 768-wide input */
            default: x[i] = (float)sqrt(3.0 / (double)n) * u;
            }
        }
        tr->from_float(x, (char *)dst + (size_t)r * rb, n);
    }
    return 0;
}

int g4_mmproj_synth(const char *out, const char *arch, const char *type, uint64_t seed, bool force, g4_error *err) {
    const vpreset *p = NULL;
    for (size_t i = 0; i < sizeof VP / sizeof *VP; i++)
        if (!strcmp(VP[i].name, arch)) p = &VP[i];
    if (!p) return g4_seterr(err, "unknown --arch '%s' for an mmproj (expected tiny, e2b, e4b, 26b-a4b or 31b)", arch);
    int mt = type && *type ? g4_type_from_name(type) : G4_F16;
    if (mt != G4_F32 && mt != G4_F16 && mt != G4_BF16)
        return g4_seterr(err, "mmproj type '%s': expected F32, F16 or BF16", type ? type : "");
    g4_gguf_file *f = g4_gguf_new("<synth mmproj>");
    int *kinds = calloc(4096, sizeof *kinds);
    int rc = -1, e = 0;
    if (!f || !kinds) { g4_seterr(err, "out of memory"); goto done; }
    e |= g4_gguf_set_str(f, "general.architecture", "clip");
    e |= g4_gguf_set_str(f, "general.type", "mmproj");
    e |= g4_gguf_set_str(f, "general.name", "gemma4c synthetic mmproj");
    e |= g4_gguf_set_u32(f, "general.file_type", mt == G4_F32 ? 0 : mt == G4_F16 ? 1 : 32);
    e |= g4_gguf_set_bool(f, "clip.has_vision_encoder", true);
    e |= g4_gguf_set_u32(f, "clip.vision.projection_dim", (uint32_t)p->D_text);
    e |= g4_gguf_set_u32(f, "clip.vision.image_size", 224);
    e |= g4_gguf_set_u32(f, "clip.vision.patch_size", 16);
    e |= g4_gguf_set_u32(f, "clip.vision.embedding_length", (uint32_t)p->D);
    e |= g4_gguf_set_u32(f, "clip.vision.feed_forward_length", (uint32_t)p->F);
    e |= g4_gguf_set_u32(f, "clip.vision.block_count", (uint32_t)p->L);
    e |= g4_gguf_set_u32(f, "clip.vision.attention.head_count", (uint32_t)p->nH);
    e |= g4_gguf_set_str(f, "clip.vision.projector_type", "gemma4v");
    e |= g4_gguf_set_f32(f, "clip.vision.attention.layer_norm_epsilon", 1e-6f);
    /* the converter writes the processor's identity normalization (the model
     * maps v -> 2v - 1 itself); llama.cpp's mtmd refuses a file without them */
    static const float mean[3] = { 0, 0, 0 }, stdv[3] = { 1, 1, 1 };
    e |= g4_gguf_set_arr(f, "clip.vision.image_mean", GGUF_FLOAT32, mean, 3);
    e |= g4_gguf_set_arr(f, "clip.vision.image_std", GGUF_FLOAT32, stdv, 3);
    const apreset *ap = !strcmp(p->name, "tiny") ? &AP_TINY : &AP_RELEASED;
    if (p->audio) {
        e |= g4_gguf_set_bool(f, "clip.has_audio_encoder", true);
        e |= g4_gguf_set_u32(f, "clip.audio.projection_dim", (uint32_t)p->D_text);
        e |= g4_gguf_set_u32(f, "clip.audio.embedding_length", (uint32_t)ap->D);
        e |= g4_gguf_set_u32(f, "clip.audio.feed_forward_length", (uint32_t)ap->FF);
        e |= g4_gguf_set_u32(f, "clip.audio.block_count", (uint32_t)ap->L);
        e |= g4_gguf_set_u32(f, "clip.audio.attention.head_count", (uint32_t)ap->H);
        e |= g4_gguf_set_str(f, "clip.audio.projector_type", "gemma4a");
        e |= g4_gguf_set_u32(f, "clip.audio.num_mel_bins", 128);
        e |= g4_gguf_set_f32(f, "clip.audio.attention.layer_norm_epsilon", 1e-6f);
    }
    if (e) { g4_seterr(err, "out of memory"); goto done; }
    int hd = p->D / p->nH;
#define ADD(kind, name, nd, a, b, c, d)                                                                     \
    do {                                                                                                    \
        int64_t ne_[4] = { a, b, c, d };                                                                    \
        kinds[f->n_tensors] = (kind);                                                                       \
        if (!g4_gguf_add_tensor(f, name, (kind) == K_MAT || (kind) == K_PATCH ? mt : G4_F32, nd, ne_, NULL, err)) goto done; \
    } while (0)
    ADD(K_PATCH, "v.patch_embd.weight", 4, 16, 16, 3, p->D);
    ADD(K_POS, "v.position_embd.weight", 3, p->D, p->n_pos, 2, 1);
    if (p->std) {
        ADD(K_STDB, "v.std_bias", 1, p->D, 1, 1, 1);
        ADD(K_NORM, "v.std_scale", 1, p->D, 1, 1, 1);
    }
    ADD(K_MAT, "mm.input_projection.weight", 2, p->D, p->D_text, 1, 1);
    static const char *lin[7] = { "attn_q", "attn_k", "attn_v", "attn_out", "ffn_gate", "ffn_up", "ffn_down" };
    for (int l = 0; l < p->L; l++) {
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "v.blk.%d.%s", l, s), n)
        ADD(K_NORM, NAME("ln1.weight"), 1, p->D, 1, 1, 1);
        ADD(K_NORM, NAME("ln2.weight"), 1, p->D, 1, 1, 1);
        ADD(K_NORM, NAME("attn_q_norm.weight"), 1, hd, 1, 1, 1);
        ADD(K_NORM, NAME("attn_k_norm.weight"), 1, hd, 1, 1, 1);
        ADD(K_NORM, NAME("attn_post_norm.weight"), 1, p->D, 1, 1, 1);
        ADD(K_NORM, NAME("ffn_post_norm.weight"), 1, p->D, 1, 1, 1);
        for (int k = 0; k < 7; k++) {
            char b[64];
            snprintf(b, sizeof b, "%s.weight", lin[k]);
            int64_t in = k == 6 ? p->F : p->D, o = k >= 4 && k < 6 ? p->F : p->D;
            ADD(K_MAT, NAME(b), 2, in, o, 1, 1);
            if (p->clip) {
                static const char *sfx[4] = { "input_min", "input_max", "output_min", "output_max" };
                for (int s = 0; s < 4; s++) {
                    snprintf(b, sizeof b, "%s.%s", lin[k], sfx[s]);
                    ADD(s & 1 ? K_HI : K_LO, NAME(b), 1, 1, 1, 1, 1);
                }
            }
        }
#undef NAME
    }
    /* the audio tower (gemma4-multimodal.md §10.1; convolution kernels, the
     * depthwise kernel and per_dim_scale (a softplus, ~1) stay F32 as the
     * converter writes them) */
    for (int l = 0; p->audio && l < ap->L; l++) {
        char n[96], b[64];
#define NAME(s) (snprintf(n, sizeof n, "a.blk.%d.%s", l, s), n)
        static const char *norms[9] = { "ffn_norm", "ffn_post_norm", "ffn_norm_1", "ffn_post_norm_1", "attn_pre_norm",
                                        "attn_post_norm", "conv_norm", "norm_conv", "ln2" };
        for (int k = 0; k < 9; k++) {
            snprintf(b, sizeof b, "%s.weight", norms[k]);
            ADD(K_NORM, NAME(b), 1, ap->D, 1, 1, 1);
        }
        ADD(K_NORM, NAME("per_dim_scale.weight"), 1, ap->D / ap->H, 1, 1, 1);
        ADD(K_MATF32, NAME("conv_dw.weight"), 2, 5, ap->D, 1, 1);
        ADD(K_MAT, NAME("attn_k_rel.weight"), 2, ap->D, ap->D, 1, 1);
        static const char *lin[9] = { "ffn_up", "ffn_down", "ffn_up_1", "ffn_down_1", "attn_q", "attn_k",
                                      "attn_v", "attn_out", "conv_pw1" };
        for (int k = 0; k < 10; k++) {
            const char *ln = k < 9 ? lin[k] : "conv_pw2";
            int64_t in = k == 1 || k == 3 ? ap->FF : ap->D;
            int64_t o = k == 0 || k == 2 ? ap->FF : k == 8 ? 2 * ap->D : ap->D;
            snprintf(b, sizeof b, "%s.weight", ln);
            ADD(K_MAT, NAME(b), 2, in, o, 1, 1);
            static const char *sfx[4] = { "input_min", "input_max", "output_min", "output_max" };
            for (int s = 0; s < 4; s++) {
                snprintf(b, sizeof b, "%s.%s", ln, sfx[s]);
                ADD(s & 1 ? K_HI : K_LO, NAME(b), 1, 1, 1, 1, 1);
            }
        }
#undef NAME
    }
    if (p->audio) {
        ADD(K_MATF32, "a.conv1d.0.weight", 4, 3, 3, 1, ap->C0);
        ADD(K_NORM, "a.conv1d.0.norm.weight", 1, ap->C0, 1, 1, 1);
        ADD(K_MATF32, "a.conv1d.1.weight", 4, 3, 3, ap->C0, ap->C1);
        ADD(K_NORM, "a.conv1d.1.norm.weight", 1, ap->C1, 1, 1, 1);
        ADD(K_MAT, "a.input_projection.weight", 2, 32 * ap->C1, ap->D, 1, 1);
        ADD(K_MAT, "a.pre_encode.out.weight", 2, ap->D, ap->P, 1, 1);
        ADD(K_STDB, "a.pre_encode.out.bias", 1, ap->P, 1, 1, 1);
        ADD(K_MAT, "mm.a.input_projection.weight", 2, ap->P, p->D_text, 1, 1);
    }
#undef ADD
    int64_t max_row = 1;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].ne[0] > max_row) max_row = f->tensors[i].ne[0];
    sctx c = { seed, kinds, f->tensors, malloc((size_t)max_row * sizeof(float)), max_row };
    if (!c.row) { g4_seterr(err, "out of memory"); goto done; }
    g4_gguf_write_opts wo = { .fill = fill, .ud = &c, .force = force };
    rc = g4_gguf_write_ex(f, out, &wo, err);
    free(c.row);
done:
    free(kinds);
    g4_gguf_close(f);
    return rc;
}
