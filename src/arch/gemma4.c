#include "arch/gemma4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shorthands so each row reads as one line of the spec's table (§3.1-3.2). */
#define D(a, b, c) { G4_D_##a, G4_D_##b, G4_D_##c }
#define G(id, gguf, hf, ne, in, kind, q, fl) \
    [G4_T_##id] = { G4_T_##id, false, gguf, hf, ne, G4_IN_##in, G4_TK_##kind, G4_Q_##q, fl }
#define L(id, gguf, hf, ne, in, kind, q, fl) \
    [G4_T_##id] = { G4_T_##id, true, gguf, hf, ne, G4_IN_##in, G4_TK_##kind, G4_Q_##q, fl }
#define F32 G4_TF_F32
#define OPT G4_TF_OPTIONAL
#define VAR G4_TF_VARIANT

const g4_tensor_info g4_tensors[G4_T_COUNT] = {
    /* id              GGUF name                      HF name                               ne                 in      kind    quant     flags */
    G(ROPE_FREQS,      "rope_freqs.weight",           NULL,                                 D(ROPE, NONE, NONE), ALL, ROPE,   KEEP,     F32 | OPT),
    G(TOKEN_EMBD,      "token_embd.weight",           "embed_tokens.weight",                D(H, V, NONE),     ALL,    EMBD,   EMBD,     0),
    G(PLE_EMBD,        "per_layer_token_embd.weight", "embed_tokens_per_layer.weight",      D(LP, V, NONE),    PLE,    EMBD,   EMBD,     0),
    /* llama-quantize leaves per_layer_model_proj unquantized */
    G(PLE_MODEL_PROJ,  "per_layer_model_proj.weight", "per_layer_model_projection.weight",  D(H, LP, NONE),    PLE,    WEIGHT, KEEP,     0),
    G(PLE_PROJ_NORM,   "per_layer_proj_norm.weight",  "per_layer_projection_norm.weight",   D(P, NONE, NONE),  PLE,    NORM,   KEEP,     F32),

    L(ATTN_NORM,       "attn_norm.weight",            "input_layernorm.weight",             D(H, NONE, NONE),  ALL,    NORM,   KEEP,     F32),
    L(ATTN_Q,          "attn_q.weight",               "self_attn.q_proj.weight",            D(H, Q, NONE),     ALL,    WEIGHT, BASE,     0),
    L(ATTN_Q_NORM,     "attn_q_norm.weight",          "self_attn.q_norm.weight",            D(HD, NONE, NONE), ALL,    NORM,   KEEP,     F32),
    L(ATTN_K,          "attn_k.weight",               "self_attn.k_proj.weight",            D(H, KV, NONE),    OWN_KV, WEIGHT, BASE,     0),
    L(ATTN_K_NORM,     "attn_k_norm.weight",          "self_attn.k_norm.weight",            D(HD, NONE, NONE), OWN_KV, NORM,   KEEP,     F32),
    /* absent on K=V layers (26B/31B full layers): V is the raw K projection */
    L(ATTN_V,          "attn_v.weight",               "self_attn.v_proj.weight",            D(H, KV, NONE),    OWN_V,  WEIGHT, ATTN_V,   OPT),
    L(ATTN_OUT,        "attn_output.weight",          "self_attn.o_proj.weight",            D(Q, H, NONE),     ALL,    WEIGHT, ATTN_OUT, 0),
    L(POST_ATTN_NORM,  "post_attention_norm.weight",  "post_attention_layernorm.weight",    D(H, NONE, NONE),  ALL,    NORM,   KEEP,     F32),
    /* ffn_norm is the PRE-feed-forward norm */
    L(FFN_NORM,        "ffn_norm.weight",             "pre_feedforward_layernorm.weight",   D(H, NONE, NONE),  ALL,    NORM,   KEEP,     F32),
    L(FFN_GATE,        "ffn_gate.weight",             "mlp.gate_proj.weight",               D(H, FF, NONE),    ALL,    WEIGHT, BASE,     0),
    L(FFN_UP,          "ffn_up.weight",               "mlp.up_proj.weight",                 D(H, FF, NONE),    ALL,    WEIGHT, BASE,     0),
    L(FFN_DOWN,        "ffn_down.weight",             "mlp.down_proj.weight",               D(FF, H, NONE),    ALL,    WEIGHT, FFN_DOWN, 0),
    /* the router matrix is forced F32 by the converter, never quantized */
    L(ROUTER,          "ffn_gate_inp.weight",         "router.proj.weight",                 D(H, E, NONE),     MOE,    WEIGHT, KEEP,     F32),
    L(ROUTER_SCALE,    "ffn_gate_inp.scale",          "router.scale",                       D(H, NONE, NONE),  MOE,    NORM,   KEEP,     F32),
    /* fused experts: per expert, rows [0, Fe) gate, [Fe, 2Fe) up; the loader
     * wants either this or the split pair below */
    L(EXP_GATE_UP,     "ffn_gate_up_exps.weight",     "experts.gate_up_proj",               D(H, 2FE, E),      MOE,    WEIGHT, BASE,     OPT),
    L(EXP_GATE,        "ffn_gate_exps.weight",        NULL,                                 D(H, FE, E),       MOE,    WEIGHT, BASE,     OPT | VAR),
    L(EXP_UP,          "ffn_up_exps.weight",          NULL,                                 D(H, FE, E),       MOE,    WEIGHT, BASE,     OPT | VAR),
    L(EXP_DOWN,        "ffn_down_exps.weight",        "experts.down_proj",                  D(FE, H, E),       MOE,    WEIGHT, FFN_DOWN, 0),
    /* NVFP4 conversions fold it into their scales */
    L(EXP_SCALE,       "ffn_down_exps.scale",         "router.per_expert_scale",            D(E, NONE, NONE),  MOE,    NORM,   KEEP,     F32 | OPT),
    L(POST_FFW_NORM_1, "post_ffw_norm_1.weight",      "post_feedforward_layernorm_1.weight", D(H, NONE, NONE), MOE,    NORM,   KEEP,     F32),
    L(PRE_FFW_NORM_2,  "pre_ffw_norm_2.weight",       "pre_feedforward_layernorm_2.weight", D(H, NONE, NONE),  MOE,    NORM,   KEEP,     F32),
    L(POST_FFW_NORM_2, "post_ffw_norm_2.weight",      "post_feedforward_layernorm_2.weight", D(H, NONE, NONE), MOE,    NORM,   KEEP,     F32),
    L(POST_FFW_NORM,   "post_ffw_norm.weight",        "post_feedforward_layernorm.weight",  D(H, NONE, NONE),  ALL,    NORM,   KEEP,     F32),
    L(OUT_SCALE,       "layer_output_scale.weight",   "layer_scalar",                       D(ONE, NONE, NONE), ALL,   SCALE,  KEEP,     F32),
    L(PLE_GATE,        "inp_gate.weight",             "per_layer_input_gate.weight",        D(H, P, NONE),     PLE,    WEIGHT, BASE,     0),
    L(PLE_PROJ,        "proj.weight",                 "per_layer_projection.weight",        D(P, H, NONE),     PLE,    WEIGHT, BASE,     0),
    L(PLE_POST_NORM,   "post_norm.weight",            "post_per_layer_input_norm.weight",   D(H, NONE, NONE),  PLE,    NORM,   KEEP,     F32),

    G(OUTPUT_NORM,     "output_norm.weight",          "norm.weight",                        D(H, NONE, NONE),  ALL,    NORM,   KEEP,     F32),
    /* absent when tied to token_embd (all released models) */
    G(OUTPUT,          "output.weight",               "lm_head.weight",                     D(H, V, NONE),     ALL,    WEIGHT, OUTPUT,   OPT | VAR | G4_TF_HF_TOP),
};

const char *const g4_hf_prefixes[] = { "model.language_model.", "language_model.model.", "model.", NULL };
const char *const g4_hf_ignored[] = { "vision_tower.", "audio_tower.", "embed_vision.", "embed_audio.",
                                      "multi_modal_projector.", "vision_model.", "audio_model.", NULL };

bool g4_tensor_present(const g4_tensor_info *t, const g4_arch_dims *d) {
    switch (t->in) {
    case G4_IN_OWN_KV: return d->own_kv;
    case G4_IN_OWN_V: return d->own_kv && !d->k_eq_v;
    case G4_IN_PLE: return d->n_ple > 0;
    case G4_IN_MOE: return d->n_expert > 0;
    default: return true;
    }
}

static int64_t dim(int k, const g4_arch_dims *d) {
    switch (k) {
    case G4_D_H: return d->n_embd;
    case G4_D_V: return d->n_vocab;
    case G4_D_P: return d->n_ple;
    case G4_D_LP: return d->n_layer * d->n_ple;
    case G4_D_HD: return d->head_dim;
    case G4_D_Q: return d->n_head * d->head_dim;
    case G4_D_KV: return d->n_kv_head * d->head_dim;
    case G4_D_FF: return d->n_ff;
    case G4_D_E: return d->n_expert;
    case G4_D_FE: return d->n_ff_exp;
    case G4_D_2FE: return 2 * d->n_ff_exp;
    case G4_D_ROPE: return d->n_rope_pairs;
    default: return 1;
    }
}

int g4_tensor_shape(const g4_tensor_info *t, const g4_arch_dims *d, int64_t ne[3]) {
    int n = 0;
    for (int i = 0; i < 3; i++) {
        ne[i] = dim(t->ne[i], d);
        if (t->ne[i] != G4_D_NONE) n = i + 1;
    }
    return n;
}

int g4_tensor_name(const g4_tensor_info *t, int layer, char *out, size_t n) {
    return t->layer ? snprintf(out, n, "blk.%d.%s", layer, t->gguf) : snprintf(out, n, "%s", t->gguf);
}

const g4_tensor_info *g4_tensor_find(const char *name, int *layer) {
    int l = -1;
    const char *rest = name;
    if (!strncmp(name, "blk.", 4) && name[4] >= '0' && name[4] <= '9') {
        char *end;
        long v = strtol(name + 4, &end, 10);
        if (*end != '.' || v > 1 << 20) return NULL;
        l = (int)v;
        rest = end + 1;
    }
    for (int i = 0; i < G4_T_COUNT; i++)
        if (g4_tensors[i].layer == (l >= 0) && !strcmp(g4_tensors[i].gguf, rest)) {
            if (layer) *layer = l;
            return &g4_tensors[i];
        }
    return NULL;
}

const g4_tensor_info *g4_tensor_by_hf(const char *name, bool layer, bool top) {
    for (int i = 0; i < G4_T_COUNT; i++) {
        const g4_tensor_info *t = &g4_tensors[i];
        if (t->hf && t->layer == layer && !!(t->flags & G4_TF_HF_TOP) == top && !strcmp(t->hf, name)) return t;
    }
    return NULL;
}

bool g4_tensor_keep_f32(const char *name, int n_dims) {
    const g4_tensor_info *t = g4_tensor_find(name, NULL);
    return n_dims <= 1 || (t && (t->flags & G4_TF_F32));
}
