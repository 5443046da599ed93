/* The HF <-> GGUF name table of the Gemma 4 media towers (see gemma4_mm.h). */
#include "arch/gemma4_mm.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VL "model.vision_tower.encoder.layers.N."
const g4_mm_name g4_mm_names[] = {
    /* ---- vision (gemma4v) ---- */
    { "model.vision_tower.patch_embedder.input_proj.weight", "v.patch_embd.weight", G4_MM_PLAIN },
    { "model.vision_tower.patch_embedder.position_embedding_table", "v.position_embd.weight", G4_MM_PLAIN },
    { "model.vision_tower.std_bias", "v.std_bias", G4_MM_PLAIN },
    { "model.vision_tower.std_scale", "v.std_scale", G4_MM_PLAIN },
    { VL "input_layernorm.weight", "v.blk.N.ln1.weight", G4_MM_PLAIN },
    { VL "self_attn.q_proj", "v.blk.N.attn_q", G4_MM_CLIP },
    { VL "self_attn.k_proj", "v.blk.N.attn_k", G4_MM_CLIP },
    { VL "self_attn.v_proj", "v.blk.N.attn_v", G4_MM_CLIP },
    { VL "self_attn.o_proj", "v.blk.N.attn_out", G4_MM_CLIP },
    { VL "self_attn.q_norm.weight", "v.blk.N.attn_q_norm.weight", G4_MM_PLAIN },
    { VL "self_attn.k_norm.weight", "v.blk.N.attn_k_norm.weight", G4_MM_PLAIN },
    { VL "post_attention_layernorm.weight", "v.blk.N.attn_post_norm.weight", G4_MM_PLAIN },
    { VL "pre_feedforward_layernorm.weight", "v.blk.N.ln2.weight", G4_MM_PLAIN },
    { VL "mlp.gate_proj", "v.blk.N.ffn_gate", G4_MM_CLIP },
    { VL "mlp.up_proj", "v.blk.N.ffn_up", G4_MM_CLIP },
    { VL "mlp.down_proj", "v.blk.N.ffn_down", G4_MM_CLIP },
    { VL "post_feedforward_layernorm.weight", "v.blk.N.ffn_post_norm.weight", G4_MM_PLAIN },
    { VL "layer_scalar", "v.blk.N.out_scale.weight", G4_MM_PLAIN },
    { "model.embed_vision.embedding_projection.weight", "mm.input_projection.weight", G4_MM_PLAIN },
    /* ---- audio (gemma4a) ---- */
#define AS "model.audio_tower.subsample_conv_projection."
    { AS "layer0.conv.weight", "a.conv1d.0.weight", G4_MM_PLAIN },
    { AS "layer0.norm.weight", "a.conv1d.0.norm.weight", G4_MM_PLAIN },
    { AS "layer1.conv.weight", "a.conv1d.1.weight", G4_MM_PLAIN },
    { AS "layer1.norm.weight", "a.conv1d.1.norm.weight", G4_MM_PLAIN },
    { AS "input_proj_linear.weight", "a.input_projection.weight", G4_MM_PLAIN },
#undef AS
#define AL "model.audio_tower.layers.N."
    { AL "feed_forward1.pre_layer_norm.weight", "a.blk.N.ffn_norm.weight", G4_MM_PLAIN },
    { AL "feed_forward1.ffw_layer_1", "a.blk.N.ffn_up", G4_MM_CLIP },
    { AL "feed_forward1.ffw_layer_2", "a.blk.N.ffn_down", G4_MM_CLIP },
    { AL "feed_forward1.post_layer_norm.weight", "a.blk.N.ffn_post_norm.weight", G4_MM_PLAIN },
    { AL "norm_pre_attn.weight", "a.blk.N.attn_pre_norm.weight", G4_MM_PLAIN },
    { AL "self_attn.q_proj", "a.blk.N.attn_q", G4_MM_CLIP },
    { AL "self_attn.k_proj", "a.blk.N.attn_k", G4_MM_CLIP },
    { AL "self_attn.v_proj", "a.blk.N.attn_v", G4_MM_CLIP },
    { AL "self_attn.post", "a.blk.N.attn_out", G4_MM_CLIP },
    { AL "self_attn.relative_k_proj.weight", "a.blk.N.attn_k_rel.weight", G4_MM_PLAIN },
    { AL "self_attn.per_dim_scale", "a.blk.N.per_dim_scale.weight", G4_MM_PLAIN },   /* hf.c: softplus */
    { AL "norm_post_attn.weight", "a.blk.N.attn_post_norm.weight", G4_MM_PLAIN },
    /* the swapped-looking names are the converter's (§10.1) */
    { AL "lconv1d.pre_layer_norm.weight", "a.blk.N.conv_norm.weight", G4_MM_PLAIN },
    { AL "lconv1d.linear_start", "a.blk.N.conv_pw1", G4_MM_CLIP },
    { AL "lconv1d.depthwise_conv1d.weight", "a.blk.N.conv_dw.weight", G4_MM_PLAIN },   /* hf.c: [D][1][5] -> {5, D} */
    { AL "lconv1d.conv_norm.weight", "a.blk.N.norm_conv.weight", G4_MM_PLAIN },
    { AL "lconv1d.linear_end", "a.blk.N.conv_pw2", G4_MM_CLIP },
    { AL "feed_forward2.pre_layer_norm.weight", "a.blk.N.ffn_norm_1.weight", G4_MM_PLAIN },
    { AL "feed_forward2.ffw_layer_1", "a.blk.N.ffn_up_1", G4_MM_CLIP },
    { AL "feed_forward2.ffw_layer_2", "a.blk.N.ffn_down_1", G4_MM_CLIP },
    { AL "feed_forward2.post_layer_norm.weight", "a.blk.N.ffn_post_norm_1.weight", G4_MM_PLAIN },
    { AL "norm_out.weight", "a.blk.N.ln2.weight", G4_MM_PLAIN },
#undef AL
    { "model.audio_tower.output_proj.weight", "a.pre_encode.out.weight", G4_MM_PLAIN },
    { "model.audio_tower.output_proj.bias", "a.pre_encode.out.bias", G4_MM_PLAIN },
    { "model.embed_audio.embedding_projection.weight", "mm.a.input_projection.weight", G4_MM_PLAIN },
    { NULL, NULL, G4_MM_PLAIN },
};
#undef VL

static const char *clip_sfx[][2] = {
    { ".linear.weight", ".weight" }, { ".input_min", ".input_min" }, { ".input_max", ".input_max" },
    { ".output_min", ".output_min" }, { ".output_max", ".output_max" },
};

/* Does name start with pattern ("N" after a dot stands for a layer number,
 * stored in *layer)? *rest: the rest of name. */
static int match(const char *pat, const char *name, long *layer, const char **rest) {
    const char *p0 = pat;
    *layer = -1;
    while (*pat) {
        if (pat[0] == 'N' && (pat[1] == '.' || pat[1] == 0) && pat > p0 && pat[-1] == '.') {
            if (!isdigit((unsigned char)*name)) return 0;
            char *end;
            long v = strtol(name, &end, 10);
            if (v < 0 || v > 100000 || (name[0] == '0' && end - name > 1)) return 0;
            *layer = v;
            name = end;
            pat++;
            continue;
        }
        if (*pat != *name) return 0;
        pat++;
        name++;
    }
    *rest = name;
    return 1;
}

static void fill(const char *gguf, long layer, const char *sfx, char *out, size_t n) {
    size_t k = 0;
    for (const char *p = gguf; *p && k + 1 < n; p++) {
        if (p[0] == 'N' && p > gguf && p[-1] == '.' && (p[1] == '.' || p[1] == 0) && layer >= 0) {
            int w = snprintf(out + k, n - k, "%ld", layer);
            if (w < 0 || (size_t)w >= n - k) { out[0] = 0; return; }
            k += (size_t)w;
        } else {
            out[k++] = *p;
        }
    }
    out[k] = 0;
    if (strlen(sfx) + k + 1 > n) { out[0] = 0; return; }
    strcat(out, sfx);
}

int g4_mm_map_hf(const char *hf, char *out, size_t n) {
    if (n) out[0] = 0;
    for (const g4_mm_name *e = g4_mm_names; e->hf; e++) {
        long layer;
        const char *rest;
        if (!match(e->hf, hf, &layer, &rest)) continue;
        if (e->kind == G4_MM_PLAIN) {
            if (*rest) continue;
            fill(e->gguf, layer, "", out, n);
            return out[0] != 0;
        }
        for (size_t i = 0; i < sizeof clip_sfx / sizeof *clip_sfx; i++)
            if (!strcmp(rest, clip_sfx[i][0])) {
                fill(e->gguf, layer, clip_sfx[i][1], out, n);
                return out[0] != 0;
            }
    }
    return 0;
}

int g4_mm_is_media(const char *hf) {
    static const char *pfx[] = { "model.vision_tower.", "model.audio_tower.", "model.embed_vision.",
                                 "model.embed_audio." };
    for (size_t i = 0; i < sizeof pfx / sizeof *pfx; i++)
        if (!strncmp(hf, pfx[i], strlen(pfx[i]))) return 1;
    return 0;
}
