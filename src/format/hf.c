/* Hugging Face folder -> in-memory g4_gguf_file, laid out exactly like the
 * output of llama.cpp's convert_hf_to_gguf.py for Gemma 4 (see hf.h and
 * shared/docs/gemma4-text.md section 3). */
#include "format/hf.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arch/gemma4.h"
#include "arch/gemma4_mm.h"
#include "arch/markers.h"
#include "format/safetensors.h"
#include "tensor/types.h"
#include "util/esc.h"

#define MAX_LAYERS 4096

bool g4_hf_force_f32(const char *name, int n_dims) { return g4_tensor_keep_f32(name, n_dims); }

bool g4_hf_is_dir(const char *path) {
    struct stat sb;
    if (stat(path, &sb) || !S_ISDIR(sb.st_mode)) return false;
    char p[4096];
    if (snprintf(p, sizeof p, "%s/config.json", path) >= (int)sizeof p) return false;
    return stat(p, &sb) == 0;
}

/* --- JSON helpers with messages naming file and field -------------------- */

typedef struct cfgctx {
    const char *file;   /* "DIR/config.json" */
    const char *prefix; /* "text_config." or "" */
    g4_error *err;
} cfgctx;

static json_t *load_json(const char *dir, const char *name, bool required, char *fullpath, size_t fpn,
                         g4_error *err, int *rc) {
    snprintf(fullpath, fpn, "%s/%s", dir, name);
    *rc = 0;
    struct stat sb;
    if (stat(fullpath, &sb)) {
        if (required) *rc = g4_seterr(err, "%s: missing (%s)", fullpath, strerror(errno));
        return NULL;
    }
    if (sb.st_size > (256 << 20)) {
        *rc = g4_seterr(err, "%s: file too large", fullpath);
        return NULL;
    }
    /* read whole, then parse from memory: json_load_file reads byte by byte */
    FILE *fp = fopen(fullpath, "rb");
    char *buf = malloc((size_t)sb.st_size + 1);
    size_t got = fp && buf ? fread(buf, 1, (size_t)sb.st_size, fp) : 0;
    if (fp) fclose(fp);
    if (!buf || got != (size_t)sb.st_size) {
        free(buf);
        *rc = g4_seterr(err, "%s: cannot read", fullpath);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(buf, got, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!j) {
        *rc = g4_seterr(err, "%s: invalid JSON at line %d: %s", fullpath, je.line, G4_ESC(je.text));
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *rc = g4_seterr(err, "%s: top level is not a JSON object", fullpath);
        return NULL;
    }
    return j;
}

/* Integer field. Absent or null: 1 when !required (out untouched), error
 * otherwise. */
static int cfg_int(cfgctx *c, json_t *o, const char *key, bool required, int64_t lo, int64_t hi,
                   int64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return g4_seterr(c->err, "%s: required field %s%s is missing", c->file, c->prefix, key);
        return 1;
    }
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
        fabs(json_real_value(v)) < 9e15) {
        *out = (int64_t)json_real_value(v);
    } else if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else {
        return g4_seterr(c->err, "%s: %s%s must be an integer", c->file, c->prefix, key);
    }
    if (*out < lo || *out > hi)
        return g4_seterr(c->err, "%s: %s%s = %lld is out of range [%lld, %lld]", c->file, c->prefix, key,
                         (long long)*out, (long long)lo, (long long)hi);
    return 0;
}

static int cfg_num(cfgctx *c, json_t *o, const char *key, bool required, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return g4_seterr(c->err, "%s: required field %s%s is missing", c->file, c->prefix, key);
        return 1;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return g4_seterr(c->err, "%s: %s%s must be a finite number", c->file, c->prefix, key);
    *out = json_number_value(v);
    return 0;
}

static int cfg_bool(cfgctx *c, json_t *o, const char *key, bool *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 1;
    if (!json_is_boolean(v)) return g4_seterr(c->err, "%s: %s%s must be true or false", c->file, c->prefix, key);
    *out = json_is_true(v);
    return 0;
}

/* --- model hyperparameters ----------------------------------------------- */

typedef struct hparams {
    int64_t L, H, nH, nKV, nGKV, hd, ghd, ff, n_shared, ple, E, K, Fe, window, ctx, vocab;
    int64_t *ff_arr;          /* per-layer FFN width when config gives a list */
    bool double_wide, moe, has_gkv, has_softcap, k_eq_v;
    double eps, softcap, theta, theta_swa, prf, prf_swa;
    bool *sliding;            /* [L] */
} hparams;

static int read_hparams(const char *dir, json_t *root, hparams *hp, g4_error *err) {
    char file[4200];
    snprintf(file, sizeof file, "%s/config.json", dir);
    json_t *tc = json_object_get(root, "text_config");
    bool nested = json_is_object(tc);
    if (!nested) tc = root;
    cfgctx c = { file, nested ? "text_config." : "", err };
    memset(hp, 0, sizeof *hp);
    int r;
#define REQ(k, lo, hi, dst) if (cfg_int(&c, tc, k, true, lo, hi, dst)) return -1
    REQ("num_hidden_layers", 1, MAX_LAYERS, &hp->L);
    REQ("hidden_size", 1, 1 << 20, &hp->H);
    REQ("num_attention_heads", 1, 4096, &hp->nH);
    REQ("num_key_value_heads", 1, 4096, &hp->nKV);
    REQ("head_dim", 1, 1 << 16, &hp->hd);
    REQ("vocab_size", 1, 1 << 24, &hp->vocab);  /* 262144 in Gemma 4 */
    REQ("sliding_window", 1, INT32_MAX, &hp->window);
    REQ("max_position_embeddings", 1, UINT32_MAX, &hp->ctx);
#undef REQ
    hp->ghd = hp->hd;
    if ((r = cfg_int(&c, tc, "global_head_dim", false, 2, 1 << 16, &hp->ghd)) < 0) return -1;
    if ((r = cfg_int(&c, tc, "num_global_key_value_heads", false, 1, 4096, &hp->nGKV)) < 0) return -1;
    hp->has_gkv = r == 0;
    if (cfg_int(&c, tc, "num_kv_shared_layers", false, 0, hp->L - 1, &hp->n_shared) < 0) return -1;
    if (cfg_int(&c, tc, "hidden_size_per_layer_input", false, 0, 1 << 20, &hp->ple) < 0) return -1;
    if (cfg_bool(&c, tc, "use_double_wide_mlp", &hp->double_wide) < 0) return -1;
    if (cfg_bool(&c, tc, "enable_moe_block", &hp->moe) < 0) return -1;
    if (cfg_bool(&c, tc, "attention_k_eq_v", &hp->k_eq_v) < 0) return -1;
    if (cfg_num(&c, tc, "rms_norm_eps", true, &hp->eps) < 0) return -1;
    if ((r = cfg_num(&c, tc, "final_logit_softcapping", false, &hp->softcap)) < 0) return -1;
    hp->has_softcap = r == 0;

    /* intermediate_size: one number, or one per layer */
    json_t *is = json_object_get(tc, "intermediate_size");
    if (json_is_array(is)) {
        if ((int64_t)json_array_size(is) != hp->L)
            return g4_seterr(err, "%s: %sintermediate_size has %zu entries, expected %lld", file, c.prefix,
                             json_array_size(is), (long long)hp->L);
        hp->ff_arr = calloc((size_t)hp->L, sizeof *hp->ff_arr);
        if (!hp->ff_arr) return g4_seterr(err, "out of memory");
        for (int64_t i = 0; i < hp->L; i++) {
            json_t *v = json_array_get(is, (size_t)i);
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX)
                return g4_seterr(err, "%s: %sintermediate_size[%lld] must be a positive integer", file,
                                 c.prefix, (long long)i);
            hp->ff_arr[i] = json_integer_value(v);
        }
        hp->ff = hp->ff_arr[0];
    } else if (cfg_int(&c, tc, "intermediate_size", true, 1, INT32_MAX, &hp->ff)) {
        return -1;
    }
    if (hp->moe) {
        if (cfg_int(&c, tc, "num_experts", true, 1, 1 << 16, &hp->E)) return -1;
        if (cfg_int(&c, tc, "top_k_experts", true, 1, hp->E, &hp->K)) return -1;
        if (cfg_int(&c, tc, "moe_intermediate_size", true, 1, INT32_MAX, &hp->Fe)) return -1;
    }

    /* layer_types: one "sliding_attention"/"full_attention" per layer */
    json_t *lt = json_object_get(tc, "layer_types");
    if (!json_is_array(lt))
        return g4_seterr(err, "%s: required field %slayer_types is missing or not a list", file, c.prefix);
    if ((int64_t)json_array_size(lt) != hp->L)
        return g4_seterr(err, "%s: %slayer_types has %zu entries but num_hidden_layers is %lld", file,
                         c.prefix, json_array_size(lt), (long long)hp->L);
    hp->sliding = calloc((size_t)hp->L, sizeof *hp->sliding);
    if (!hp->sliding) return g4_seterr(err, "out of memory");
    for (int64_t i = 0; i < hp->L; i++) {
        const char *s = json_string_value(json_array_get(lt, (size_t)i));
        if (s && !strcmp(s, "sliding_attention")) hp->sliding[i] = true;
        else if (s && !strcmp(s, "full_attention")) hp->sliding[i] = false;
        else
            return g4_seterr(err, "%s: %slayer_types[%lld] must be \"sliding_attention\" or \"full_attention\"",
                             file, c.prefix, (long long)i);
    }

    /* RoPE: rope_parameters.{full_attention,sliding_attention}, or the older
     * flat rope_theta / rope_local_base_freq / partial_rotary_factor. */
    hp->theta = 1e6;
    hp->theta_swa = 1e4;
    hp->prf = 1.0;
    json_t *rp = json_object_get(tc, "rope_parameters");
    if (json_is_object(rp)) {
        json_t *fa = json_object_get(rp, "full_attention"), *sa = json_object_get(rp, "sliding_attention");
        cfgctx c2 = { file, nested ? "text_config.rope_parameters.full_attention." : "rope_parameters.full_attention.", err };
        if (json_is_object(fa)) {
            if (cfg_num(&c2, fa, "rope_theta", false, &hp->theta) < 0) return -1;
            if (cfg_num(&c2, fa, "partial_rotary_factor", false, &hp->prf) < 0) return -1;
        }
        c2.prefix = nested ? "text_config.rope_parameters.sliding_attention." : "rope_parameters.sliding_attention.";
        if (json_is_object(sa) && cfg_num(&c2, sa, "rope_theta", false, &hp->theta_swa) < 0) return -1;
    } else {
        if (cfg_num(&c, tc, "rope_theta", false, &hp->theta) < 0) return -1;
        if (cfg_num(&c, tc, "rope_local_base_freq", false, &hp->theta_swa) < 0) return -1;
        if (cfg_num(&c, tc, "partial_rotary_factor", false, &hp->prf) < 0) return -1;
    }
    if (!(hp->prf > 0 && hp->prf <= 1))
        return g4_seterr(err, "%s: partial_rotary_factor %g must be in (0, 1]", file, hp->prf);
    /* sliding layers: the converter takes the top-level partial_rotary_factor
     * (absent in Gemma 4 configs: full rotation) */
    hp->prf_swa = 1.0;
    if (json_is_object(rp) && cfg_num(&c, tc, "partial_rotary_factor", false, &hp->prf_swa) < 0) return -1;
    if (!(hp->prf_swa > 0 && hp->prf_swa <= 1))
        return g4_seterr(err, "%s: %spartial_rotary_factor %g must be in (0, 1]", file, c.prefix, hp->prf_swa);
    if (hp->ghd % 2) return g4_seterr(err, "%s: %sglobal_head_dim must be even", file, c.prefix);
    return 0;
}

/* --- tensor names ---------------------------------------------------------- */

/* Map an HF name to a GGUF name through the tensor table (arch/gemma4.h).
 * Returns 1 (mapped), 0 (ignore), -1 (error: a text-model name we do not
 * know). */
static int map_name(const char *hf, const hparams *hp, char *out, size_t n, g4_error *err) {
    const g4_tensor_info *t = g4_tensor_by_hf(hf, false, true);
    if (t) { g4_tensor_name(t, 0, out, n); return 1; }
    const char *rest = NULL;
    for (size_t i = 0; g4_hf_prefixes[i] && !rest; i++)
        if (!strncmp(hf, g4_hf_prefixes[i], strlen(g4_hf_prefixes[i]))) rest = hf + strlen(g4_hf_prefixes[i]);
    if (!rest) return 0;  /* other towers / heads live outside the text model */
    for (size_t i = 0; g4_hf_ignored[i]; i++)
        if (!strncmp(rest, g4_hf_ignored[i], strlen(g4_hf_ignored[i]))) return 0;
    if ((t = g4_tensor_by_hf(rest, false, false))) { g4_tensor_name(t, 0, out, n); return 1; }
    if (!strncmp(rest, "layers.", 7)) {
        const char *p = rest + 7;
        char *end;
        if (!isdigit((unsigned char)*p)) goto unknown;
        errno = 0;
        long li = strtol(p, &end, 10);
        if (errno || *end != '.' || li < 0) goto unknown;
        if (li >= hp->L)
            return g4_seterr(err, "tensor '%s': layer %ld but num_hidden_layers is %lld", G4_ESC(hf), li,
                             (long long)hp->L);
        if ((t = g4_tensor_by_hf(end + 1, true, false))) {
            /* KV-shared layers reuse an earlier layer's cache: their own K/V
             * projections (present in some uploads) are never used. */
            bool kv = t->in == G4_IN_OWN_KV || t->in == G4_IN_OWN_V;
            if (kv && li >= hp->L - hp->n_shared) return 0;
            g4_tensor_name(t, (int)li, out, n);
            return 1;
        }
    }
unknown:
    return g4_seterr(err, "tensor '%s' is not a known Gemma 4 text-model tensor", G4_ESC(hf));
}

/* --- size label (gguf-py's model_weight_count_rounded_notation) ----------- */

static void rounded_notation(double n, char *out, size_t sz) {
    double s;
    const char *suf;
    if (n > 1e12) { s = n * 1e-12; suf = "T"; }
    else if (n > 1e9) { s = n * 1e-9; suf = "B"; }
    else if (n > 1e6) { s = n * 1e-6; suf = "M"; }
    else { s = n * 1e-3; suf = "K"; }
    /* fix = max(2 - len(str(round(s)).lstrip('0')), 0); Python rounds half to even */
    double r = nearbyint(s);
    char digits[64];
    snprintf(digits, sizeof digits, "%.0f", r);
    const char *d = digits;
    while (*d == '0') d++;
    int fix = 2 - (int)strlen(d);
    if (fix < 0) fix = 0;
    snprintf(out, sz, "%.*f%s", fix, s, suf);
}

void g4_hf_size_label(const g4_gguf_file *f, char *out, size_t n) {
    uint64_t total = 0, shared = 0, expert = 0, expert_sum = 0, n_exp_t = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const g4_gguf_tensor *t = &f->tensors[i];
        uint64_t size = (uint64_t)t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (strstr(t->name, "_exps.") && t->n_dims >= 3) {
            uint64_t ec = (uint64_t)t->ne[t->n_dims - 1];
            expert += size / ec;
            expert_sum += ec;
            n_exp_t++;
        } else {
            shared += size;
        }
        total += size;
    }
    if (n_exp_t) {
        char tmp[48];
        rounded_notation((double)(shared + expert), tmp, sizeof tmp);
        snprintf(out, n, "%llux%s", (unsigned long long)(expert_sum / n_exp_t), tmp);
    } else {
        rounded_notation((double)total, out, n);
    }
}

/* --- tokenizer --------------------------------------------------------------- */

static bool is_byte_token(const char *s) {
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && isxdigit((unsigned char)s[3]) &&
           isxdigit((unsigned char)s[4]) && s[5] == '>';
}

/* Token string of a tokenizer_config.json entry: "<bos>" or {"content": ...}. */
static const char *tok_content(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static int add_tokenizer(g4_gguf_file *f, const char *dir, const hparams *hp, json_t *cfg_root, json_t *tcfg,
                         bool eos_ids, json_t *gen, g4_error *err) {
    char path[4200];
    int rc = 0;
    json_t *tj = load_json(dir, "tokenizer.json", true, path, sizeof path, err, &rc);
    if (!tj) return -1;
    const char **toks = NULL;
    int32_t *types = NULL;
    float *scores = NULL;
    const char **merges = NULL;
    char **owned = NULL;
    size_t n_owned = 0;
    int64_t n = 0;
    json_t *model = json_object_get(tj, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(tj, "added_tokens");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || !mtype || strcmp(mtype, "BPE")) {
        rc = g4_seterr(err, "%s: model.type must be \"BPE\" (Gemma 4 tokenizer)", path);
        goto out;
    }
    if (!json_is_object(vocab) || json_object_size(vocab) == 0) {
        rc = g4_seterr(err, "%s: model.vocab missing or empty", path);
        goto out;
    }
    if (added && !json_is_array(added)) { rc = g4_seterr(err, "%s: added_tokens must be a list", path); goto out; }
    /* Size: the model's vocab_size (ids beyond it are dropped, holes padded,
     * as the converter does). */
    n = hp->vocab;
    toks = calloc((size_t)n, sizeof *toks);
    types = calloc((size_t)n, sizeof *types);
    scores = malloc((size_t)n * sizeof *scores);
    owned = calloc((size_t)n, sizeof *owned);
    if (!toks || !types || !scores || !owned) { rc = g4_seterr(err, "out of memory"); goto out; }
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            rc = g4_seterr(err, "%s: model.vocab[\"%s\"] is not a non-negative integer id", path, G4_ESC(key));
            goto out;
        }
        int64_t id = json_integer_value(v);
        if (id >= n) continue;
        if (toks[id]) {
            rc = g4_seterr(err, "%s: id %lld is used by two vocabulary entries", path, (long long)id);
            goto out;
        }
        toks[id] = key;
        types[id] = is_byte_token(key) ? G4_TT_BYTE : G4_TT_NORMAL;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        json_t *idv = json_object_get(a, "id");
        const char *content = json_string_value(json_object_get(a, "content"));
        if (!json_is_integer(idv) || json_integer_value(idv) < 0 || !content) {
            rc = g4_seterr(err, "%s: added_tokens[%zu] needs an integer \"id\" and a string \"content\"", path, i);
            goto out;
        }
        int64_t id = json_integer_value(idv);
        if (id >= n) continue;
        /* gguf-py's LlamaHfVocab: a token of the base vocabulary keeps its
         * type (CONTROL when special, else NORMAL/BYTE); an added token
         * outside it is CONTROL when special, else USER_DEFINED. */
        bool special = json_is_true(json_object_get(a, "special"));
        json_t *vid = json_object_get(vocab, content);
        bool in_vocab = json_is_integer(vid) && json_integer_value(vid) == id;
        int t = special ? G4_TT_CONTROL : in_vocab ? (is_byte_token(content) ? G4_TT_BYTE : G4_TT_NORMAL) : G4_TT_USER_DEFINED;
        toks[id] = content;
        types[id] = t;
    }
    /* Tokens tokenizer_config.json names as special (transformers'
     * all_special_ids) are CONTROL too. */
    if (tcfg) {
        static const char *const NAMED[] = { "bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                                             "cls_token", "mask_token" };
        const char *names[4096];
        size_t nn = 0;
        for (size_t k = 0; k < sizeof NAMED / sizeof *NAMED; k++) {
            const char *c = tok_content(json_object_get(tcfg, NAMED[k]));
            if (c) names[nn++] = c;
        }
        json_t *lists[2] = { json_object_get(tcfg, "extra_special_tokens"),
                             json_object_get(tcfg, "additional_special_tokens") };
        for (int l = 0; l < 2; l++) {
            const char *kk;
            json_t *vv;
            size_t ix;
            if (json_is_object(lists[l])) {
                json_object_foreach(lists[l], kk, vv)
                    if (nn < 4096 && tok_content(vv)) names[nn++] = tok_content(vv);
            } else if (json_is_array(lists[l])) {
                json_array_foreach(lists[l], ix, vv)
                    if (nn < 4096 && tok_content(vv)) names[nn++] = tok_content(vv);
            }
        }
        for (size_t k = 0; k < nn; k++) {
            json_t *vid = json_object_get(vocab, names[k]);
            int64_t id = json_is_integer(vid) ? json_integer_value(vid) : -1;
            for (size_t i = 0; id < 0 && i < json_array_size(added); i++) {
                json_t *a = json_array_get(added, i);
                const char *c = json_string_value(json_object_get(a, "content"));
                if (c && !strcmp(c, names[k])) id = json_integer_value(json_object_get(a, "id"));
            }
            if (id >= 0 && id < n && toks[id] && !strcmp(toks[id], names[k])) types[id] = G4_TT_CONTROL;
        }
    }
    /* Gemma 4's converter marks these USER_DEFINED so they are always rendered */
    for (int64_t i = 0; i < n; i++)
        for (size_t k = 0; toks[i] && k < g4_n_markers; k++)
            if ((g4_markers[k].flags & G4_MKF_RENDERED) && !strcmp(toks[i], g4_markers[k].s))
                types[i] = G4_TT_USER_DEFINED;
    for (int64_t i = 0; i < n; i++) {
        scores[i] = -1000.0f;
        if (!toks[i]) {
            char buf[32];
            snprintf(buf, sizeof buf, "[PAD%lld]", (long long)i);
            owned[n_owned] = strdup(buf);
            if (!owned[n_owned]) { rc = g4_seterr(err, "out of memory"); goto out; }
            toks[i] = owned[n_owned++];
            types[i] = G4_TT_UNUSED;
        }
    }
    /* merges: ["a b", ...] or [["a", "b"], ...] */
    json_t *jm = json_object_get(model, "merges");
    size_t n_m = json_is_array(jm) ? json_array_size(jm) : 0;
    if (jm && !json_is_array(jm)) { rc = g4_seterr(err, "%s: model.merges must be a list", path); goto out; }
    merges = calloc(n_m ? n_m : 1, sizeof *merges);
    char **mown = calloc(n_m ? n_m : 1, sizeof *mown);
    if (!merges || !mown) { free(mown); rc = g4_seterr(err, "out of memory"); goto out; }
    for (size_t i = 0; i < n_m && !rc; i++) {
        json_t *m = json_array_get(jm, i);
        if (json_is_string(m)) {
            merges[i] = json_string_value(m);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
            size_t la = strlen(a), lb = strlen(b);
            mown[i] = malloc(la + lb + 2);
            if (!mown[i]) { rc = g4_seterr(err, "out of memory"); break; }
            memcpy(mown[i], a, la);
            mown[i][la] = ' ';
            memcpy(mown[i] + la + 1, b, lb + 1);
            merges[i] = mown[i];
        } else {
            rc = g4_seterr(err, "%s: model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", path, i);
        }
    }
    if (!rc) {
        if (g4_gguf_set_str(f, "tokenizer.ggml.model", "gemma4") ||
            g4_gguf_set_arr_str(f, "tokenizer.ggml.tokens", toks, (uint64_t)n) ||
            g4_gguf_set_arr(f, "tokenizer.ggml.scores", GGUF_FLOAT32, scores, (uint64_t)n) ||
            g4_gguf_set_arr(f, "tokenizer.ggml.token_type", GGUF_INT32, types, (uint64_t)n) ||
            (n_m && g4_gguf_set_arr_str(f, "tokenizer.ggml.merges", merges, n_m)))
            rc = g4_seterr(err, "out of memory");
    }
    for (size_t i = 0; i < n_m; i++) free(mown[i]);
    free(mown);
    if (rc) goto out;

    /* Special ids, in gguf-py SpecialVocab order: bos, eos, unk, (sep), pad,
     * (cls), mask. tokenizer_config.json names the tokens; config.json's
     * *_token_id is the fallback. */
    static const char *const TYP[] = { "bos", "eos", "unk", "sep", "pad", "cls", "mask" };
    static const char *const KEY[] = { "bos", "eos", "unknown", "seperator", "padding", "cls", "mask" };
    json_t *tcc = json_object_get(cfg_root, "text_config");
    for (size_t k = 0; k < sizeof TYP / sizeof *TYP; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s_token", TYP[k]);
        const char *content = tcfg ? tok_content(json_object_get(tcfg, name)) : NULL;
        int64_t id = -1;
        if (content) {
            for (size_t i = 0; i < json_array_size(added) && id < 0; i++) {
                json_t *a = json_array_get(added, i);
                const char *c = json_string_value(json_object_get(a, "content"));
                if (c && !strcmp(c, content)) id = json_integer_value(json_object_get(a, "id"));
            }
            if (id < 0) {
                json_t *vid = json_object_get(vocab, content);
                if (json_is_integer(vid)) id = json_integer_value(vid);
            }
        }
        if (id < 0) {
            snprintf(name, sizeof name, "%s_token_id", TYP[k]);
            json_t *c = json_object_get(cfg_root, name);
            if (!json_is_integer(c) && json_is_object(tcc)) c = json_object_get(tcc, name);
            if (json_is_integer(c)) id = json_integer_value(c);
        }
        if (id < 0 || id >= n) continue;
        char gk[80];
        snprintf(gk, sizeof gk, "tokenizer.ggml.%s_token_id", KEY[k]);
        if (g4_gguf_set_u32(f, gk, (uint32_t)id)) { rc = g4_seterr(err, "out of memory"); goto out; }
    }
    /* add_{bos,eos}_token as tokenizer_config.json gives them (SpecialVocab);
     * the converter later sets add_bos to true, in place if it exists. */
    for (int k = 0; k < 2; k++) {
        json_t *ae = tcfg ? json_object_get(tcfg, k ? "add_eos_token" : "add_bos_token") : NULL;
        if (json_is_boolean(ae) &&
            g4_gguf_set_bool(f, k ? "tokenizer.ggml.add_eos_token" : "tokenizer.ggml.add_bos_token", json_is_true(ae))) {
            rc = g4_seterr(err, "out of memory");
            goto out;
        }
    }
    /* chat template: chat_template.jinja, else tokenizer_config's string */
    {
        char tp[4200];
        snprintf(tp, sizeof tp, "%s/chat_template.jinja", dir);
        FILE *fp = fopen(tp, "rb");
        char *tmpl = NULL;
        if (fp) {
            struct stat sb;
            if (fstat(fileno(fp), &sb) || sb.st_size > (16 << 20)) {
                fclose(fp);
                rc = g4_seterr(err, "%s: unreadable or larger than 16 MiB", tp);
                goto out;
            }
            tmpl = malloc((size_t)sb.st_size + 1);
            size_t got = tmpl ? fread(tmpl, 1, (size_t)sb.st_size, fp) : 0;
            fclose(fp);
            if (!tmpl || got != (size_t)sb.st_size) {
                free(tmpl);
                rc = g4_seterr(err, "%s: read error", tp);
                goto out;
            }
            tmpl[got] = 0;
            if (strlen(tmpl) != got) {
                free(tmpl);
                rc = g4_seterr(err, "%s: contains a NUL byte", tp);
                goto out;
            }
        } else if (tcfg && json_is_string(json_object_get(tcfg, "chat_template"))) {
            tmpl = strdup(json_string_value(json_object_get(tcfg, "chat_template")));
        }
        if (tmpl) {
            int e = g4_gguf_set_str(f, "tokenizer.chat_template", tmpl);
            free(tmpl);
            if (e) { rc = g4_seterr(err, "out of memory"); goto out; }
        }
    }
    if (g4_gguf_set_bool(f, "tokenizer.ggml.add_space_prefix", false) ||
        g4_gguf_set_bool(f, "tokenizer.ggml.add_bos_token", true)) {  /* llama.cpp forces BOS for gemma4 */
        rc = g4_seterr(err, "out of memory");
        goto out;
    }
    /* EOS list from generation_config.json (for running directly) */
    json_t *eos = gen ? json_object_get(gen, "eos_token_id") : NULL;
    if (eos_ids && json_is_array(eos) && json_array_size(eos) > 1 && json_array_size(eos) < 1024) {
        int32_t ids[1024];
        size_t k = 0;
        for (size_t i = 0; i < json_array_size(eos); i++) {
            json_t *e = json_array_get(eos, i);
            if (json_is_integer(e) && json_integer_value(e) >= 0 && json_integer_value(e) < n)
                ids[k++] = (int32_t)json_integer_value(e);
        }
        if (k && g4_gguf_set_arr(f, "tokenizer.ggml.eos_token_ids", GGUF_INT32, ids, k)) {
            rc = g4_seterr(err, "out of memory");
            goto out;
        }
    }
out:
    for (size_t i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    free(toks);
    free(types);
    free(scores);
    free(merges);
    json_decref(tj);
    return rc;
}

/* --- tensors ------------------------------------------------------------------ */

typedef struct mapped {
    const g4_st_tensor *st;
    char name[128];
} mapped;

static int add_weights(g4_gguf_file *f, g4_st_set *s, const hparams *hp, int *file_type, g4_error *err) {
    /* rope_freqs: 1.0 on the rotated pairs of the full layers, 1e30 (no
     * rotation) on the rest; the converter writes it first. */
    int64_t nf = hp->ghd / 2;
    float *rf = g4_gguf_own(f, malloc((size_t)nf * sizeof *rf));
    if (!rf) return g4_seterr(err, "out of memory");
    int64_t ones = (int64_t)(hp->ghd * hp->prf / 2);
    for (int64_t i = 0; i < nf; i++) rf[i] = i < ones ? 1.0f : 1e30f;
    if (!g4_gguf_add_tensor(f, "rope_freqs.weight", G4_F32, 1, &nf, rf, err)) return -1;

    int n16 = 0, nbf = 0, n32 = 0;
    /* s->all is sorted by HF name: the converter's order */
    for (size_t i = 0; i < s->n; i++) {
        const g4_st_tensor *t = s->all[i];
        char name[128];
        int r = map_name(t->name, hp, name, sizeof name, err);
        if (r < 0) return g4_preferr(err, "%s", t->file->path);
        if (r == 0) continue;
        if (t->n_dims > GGUF_MAX_DIMS)
            return g4_seterr(err, "%s: tensor '%s' has %d dims (max 4)", t->file->path, G4_ESC(t->name), t->n_dims);
        int64_t ne[GGUF_MAX_DIMS] = { 1, 1, 1, 1 };
        int nd = t->n_dims ? t->n_dims : 1;
        for (int d = 0; d < t->n_dims; d++) {
            ne[d] = t->shape[t->n_dims - 1 - d];
            if (ne[d] < 1)
                return g4_seterr(err, "%s: tensor '%s' has an empty dimension", t->file->path, G4_ESC(t->name));
        }
        int64_t nel = g4_st_nelements(t);
        const void *data = t->data;
        int type = t->type;
        size_t es = type == G4_F32 ? 4 : 2;
        if (g4_hf_force_f32(name, nd) && type != G4_F32) {
            float *w = g4_gguf_own(f, malloc((size_t)nel * sizeof *w));
            if (!w) return g4_seterr(err, "out of memory");
            const uint16_t *src = t->data;
            for (int64_t k = 0; k < nel; k++) {
                uint16_t h;
                memcpy(&h, src + k, 2);
                w[k] = type == G4_BF16 ? g4_bf16_to_fp32(h) : g4_fp16_to_fp32(h);
            }
            data = w;
            type = G4_F32;
        } else if ((uintptr_t)data % es) {
            /* safetensors does not promise alignment; the engine reads
             * elements in place, so copy misaligned tensors */
            void *w = g4_gguf_own(f, malloc((size_t)nel * es));
            if (!w) return g4_seterr(err, "out of memory");
            memcpy(w, data, (size_t)nel * es);
            data = w;
        }
        if (nd >= 2) {
            if (type == G4_F16) n16++;
            else if (type == G4_BF16) nbf++;
            else n32++;
        }
        if (!g4_gguf_add_tensor(f, name, type, nd, ne, data, err))
            return g4_preferr(err, "%s", t->file->path);
    }
    if (!g4_gguf_find_tensor(f, "token_embd.weight"))
        return g4_seterr(err, "no embed_tokens.weight in the checkpoint (is this a Gemma 4 text model?)");
    *file_type = nbf > n16 && nbf > n32 ? 32 : n16 > n32 ? 1 : 0;
    return 0;
}

/* --- assembly ---------------------------------------------------------------- */

static void default_name(const char *dir, char *out, size_t n) {
    /* gguf-py names an unnamed model after its folder: "gemma4-e.hf" ->
     * "Gemma4 E.Hf" (dashes to spaces, Python str.title()). */
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && dir[b - 1] != '/') b--;
    size_t k = 0;
    bool prev_alpha = false;
    for (size_t i = b; i < len && k + 1 < n; i++) {
        unsigned char c = (unsigned char)dir[i];
        if (c == '-' || c == '_') c = ' ';
        if (isalpha(c)) { c = (unsigned char)(prev_alpha ? tolower(c) : toupper(c)); prev_alpha = true; }
        else prev_alpha = (c >= 0x80);
        out[k++] = (char)c;
    }
    out[k] = 0;
    if (!k) snprintf(out, n, "Gemma4");
}

static void hp_free(hparams *hp) {
    free(hp->sliding);
    free(hp->ff_arr);
}

static void g4_st_set_free_cb(void *p) { g4_st_set_close(p); }

#define SETX(call) do { if (call) { g4_seterr(err, "out of memory"); goto fail; } } while (0)

g4_gguf_file *g4_hf_open_ex(const char *dir, const g4_hf_opts *o, g4_error *err) {
    g4_hf_opts defo = { NULL, true };
    if (!o) o = &defo;
    char path[4200];
    int rc = 0;
    hparams hp;
    memset(&hp, 0, sizeof hp);
    json_t *cfg = NULL, *gen = NULL, *tcfg = NULL;
    g4_gguf_file *f = NULL;
    g4_st_set *s = NULL;

    cfg = load_json(dir, "config.json", true, path, sizeof path, err, &rc);
    if (!cfg) return NULL;
    if (read_hparams(dir, cfg, &hp, err)) goto fail;
    gen = load_json(dir, "generation_config.json", false, path, sizeof path, err, &rc);
    if (rc) goto fail;
    tcfg = load_json(dir, "tokenizer_config.json", false, path, sizeof path, err, &rc);
    if (rc) goto fail;
    s = g4_st_open_dir(dir, err);
    if (!s) goto fail;

    f = g4_gguf_new(dir);
    if (!f) { g4_seterr(err, "out of memory"); goto fail; }
    f->extra = s;
    f->extra_free = g4_st_set_free_cb;
    g4_st_set *sref = s;
    s = NULL;  /* owned by f now */

    char name[512];
    if (o->name) snprintf(name, sizeof name, "%s", o->name);
    else default_name(dir, name, sizeof name);

    /* Key order below is the order convert_hf_to_gguf.py writes them. */
    SETX(g4_gguf_set_str(f, "general.architecture", "gemma4"));
    SETX(g4_gguf_set_str(f, "general.type", "model"));
    if (gen) {
        cfgctx gc = { "generation_config.json", "", err };
        int64_t k;
        double d;
        if ((rc = cfg_int(&gc, gen, "top_k", false, 0, INT32_MAX, &k)) < 0) goto fail;
        if (rc == 0) SETX(g4_gguf_set_i32(f, "general.sampling.top_k", (int32_t)k));
        if ((rc = cfg_num(&gc, gen, "top_p", false, &d)) < 0) goto fail;
        if (rc == 0) SETX(g4_gguf_set_f32(f, "general.sampling.top_p", (float)d));
        if ((rc = cfg_num(&gc, gen, "temperature", false, &d)) < 0) goto fail;
        if (rc == 0) SETX(g4_gguf_set_f32(f, "general.sampling.temp", (float)d));
    }
    SETX(g4_gguf_set_str(f, "general.name", name));
    SETX(g4_gguf_set_str(f, "general.size_label", "?"));  /* filled in once the tensors are known */
    SETX(g4_gguf_set_u32(f, "gemma4.block_count", (uint32_t)hp.L));
    SETX(g4_gguf_set_u32(f, "gemma4.context_length", (uint32_t)hp.ctx));
    SETX(g4_gguf_set_u32(f, "gemma4.embedding_length", (uint32_t)hp.H));
    if (hp.ff_arr || hp.double_wide) {
        int32_t *ff = malloc((size_t)hp.L * sizeof *ff);
        if (!ff) { g4_seterr(err, "out of memory"); goto fail; }
        for (int64_t i = 0; i < hp.L; i++) {
            int64_t w = hp.ff_arr ? hp.ff_arr[i] : hp.ff;
            /* E2B-style: KV-shared layers have a double-width MLP */
            if (hp.double_wide && i >= hp.L - hp.n_shared) w *= 2;
            ff[i] = (int32_t)(w > INT32_MAX ? INT32_MAX : w);
        }
        int e = g4_gguf_set_arr(f, "gemma4.feed_forward_length", GGUF_INT32, ff, (uint64_t)hp.L);
        free(ff);
        SETX(e);
    } else {
        SETX(g4_gguf_set_u32(f, "gemma4.feed_forward_length", (uint32_t)hp.ff));
    }
    SETX(g4_gguf_set_u32(f, "gemma4.attention.head_count", (uint32_t)hp.nH));
    if (hp.has_gkv) {
        int32_t *kv = malloc((size_t)hp.L * sizeof *kv);
        if (!kv) { g4_seterr(err, "out of memory"); goto fail; }
        for (int64_t i = 0; i < hp.L; i++) kv[i] = (int32_t)(hp.sliding[i] ? hp.nKV : hp.nGKV);
        int e = g4_gguf_set_arr(f, "gemma4.attention.head_count_kv", GGUF_INT32, kv, (uint64_t)hp.L);
        free(kv);
        SETX(e);
    } else {
        SETX(g4_gguf_set_u32(f, "gemma4.attention.head_count_kv", (uint32_t)hp.nKV));
    }
    SETX(g4_gguf_set_f32(f, "gemma4.rope.freq_base", (float)hp.theta));
    SETX(g4_gguf_set_f32(f, "gemma4.rope.freq_base_swa", (float)hp.theta_swa));
    SETX(g4_gguf_set_f32(f, "gemma4.attention.layer_norm_rms_epsilon", (float)hp.eps));
    if (hp.moe) {
        SETX(g4_gguf_set_u32(f, "gemma4.expert_count", (uint32_t)hp.E));
        SETX(g4_gguf_set_u32(f, "gemma4.expert_used_count", (uint32_t)hp.K));
    }
    SETX(g4_gguf_set_u32(f, "gemma4.attention.key_length", (uint32_t)hp.ghd));
    SETX(g4_gguf_set_u32(f, "gemma4.attention.value_length", (uint32_t)hp.ghd));
    SETX(g4_gguf_set_u32(f, "general.file_type", 0));
    if (hp.has_softcap) SETX(g4_gguf_set_f32(f, "gemma4.final_logit_softcapping", (float)hp.softcap));
    SETX(g4_gguf_set_u32(f, "gemma4.attention.sliding_window", (uint32_t)hp.window));
    SETX(g4_gguf_set_u32(f, "gemma4.attention.shared_kv_layers", (uint32_t)hp.n_shared));
    SETX(g4_gguf_set_u32(f, "gemma4.embedding_length_per_layer_input", (uint32_t)hp.ple));
    {
        uint8_t *pat = malloc((size_t)hp.L);
        if (!pat) { g4_seterr(err, "out of memory"); goto fail; }
        for (int64_t i = 0; i < hp.L; i++) pat[i] = hp.sliding[i];
        int e = g4_gguf_set_arr(f, "gemma4.attention.sliding_window_pattern", GGUF_BOOL, pat, (uint64_t)hp.L);
        free(pat);
        SETX(e);
    }
    SETX(g4_gguf_set_u32(f, "gemma4.attention.key_length_swa", (uint32_t)hp.hd));
    SETX(g4_gguf_set_u32(f, "gemma4.attention.value_length_swa", (uint32_t)hp.hd));
    if (hp.moe) SETX(g4_gguf_set_u32(f, "gemma4.expert_feed_forward_length", (uint32_t)hp.Fe));
    SETX(g4_gguf_set_u32(f, "gemma4.rope.dimension_count", (uint32_t)hp.ghd));
    SETX(g4_gguf_set_u32(f, "gemma4.rope.dimension_count_swa", (uint32_t)(hp.hd * hp.prf_swa)));
    SETX(g4_gguf_set_u32(f, "general.quantization_version", 2));
    if (add_tokenizer(f, dir, &hp, cfg, tcfg, o->eos_ids, gen, err)) goto fail;

    int ftype = 0;
    if (add_weights(f, sref, &hp, &ftype, err)) goto fail;
    SETX(g4_gguf_set_u32(f, "general.file_type", (uint32_t)ftype));
    char label[64];
    g4_hf_size_label(f, label, sizeof label);
    SETX(g4_gguf_set_str(f, "general.size_label", label));

    hp_free(&hp);
    json_decref(cfg);
    json_decref(gen);
    json_decref(tcfg);
    return f;
fail:
    hp_free(&hp);
    json_decref(cfg);
    json_decref(gen);
    json_decref(tcfg);
    g4_st_set_close(s);
    g4_gguf_close(f);
    return NULL;
}

g4_gguf_file *g4_hf_open(const char *dir, g4_error *err) {
    g4_hf_opts o = { NULL, true };
    return g4_hf_open_ex(dir, &o, err);
}

/* --- mmproj mode: the media towers as llama.cpp's --mmproj conversion ------ */

/* Vision keys from config.json's vision_config (+ text_config.hidden_size
 * for the projection width). Audio keys: the audio side adds its own block. */
static int mmproj_vision_keys(g4_gguf_file *f, json_t *cfg, const char *file, g4_error *err) {
    json_t *vc = json_object_get(cfg, "vision_config"), *tc = json_object_get(cfg, "text_config");
    if (!vc || json_is_null(vc)) return 1;
    if (!json_is_object(vc)) return g4_seterr(err, "%s: vision_config must be an object", file);
    cfgctx c = { file, "vision_config.", err }, ct = { file, "text_config.", err };
    int64_t D, F, L, nH, P = 16, pd, pool = 3;
    double eps = 1e-6;
    if (!json_is_object(tc)) return g4_seterr(err, "%s: text_config is missing (needed for the projection width)", file);
    if (cfg_int(&c, vc, "hidden_size", true, 1, 65536, &D) || cfg_int(&c, vc, "intermediate_size", true, 1, 1 << 20, &F) ||
        cfg_int(&c, vc, "num_hidden_layers", true, 1, 1024, &L) ||
        cfg_int(&c, vc, "num_attention_heads", true, 1, 1024, &nH) ||
        cfg_int(&c, vc, "patch_size", false, 16, 16, &P) < 0 ||
        cfg_int(&c, vc, "pooling_kernel_size", false, 3, 3, &pool) < 0 || cfg_num(&c, vc, "rms_norm_eps", false, &eps) < 0 ||
        cfg_int(&ct, tc, "hidden_size", true, 1, 1 << 20, &pd))
        return -1;
    if (g4_gguf_set_bool(f, "clip.has_vision_encoder", true) ||
        g4_gguf_set_u32(f, "clip.vision.projection_dim", (uint32_t)pd) ||
        g4_gguf_set_u32(f, "clip.vision.image_size", 224) || g4_gguf_set_u32(f, "clip.vision.patch_size", (uint32_t)P) ||
        g4_gguf_set_u32(f, "clip.vision.embedding_length", (uint32_t)D) ||
        g4_gguf_set_u32(f, "clip.vision.feed_forward_length", (uint32_t)F) ||
        g4_gguf_set_u32(f, "clip.vision.block_count", (uint32_t)L) ||
        g4_gguf_set_u32(f, "clip.vision.attention.head_count", (uint32_t)nH) ||
        g4_gguf_set_str(f, "clip.vision.projector_type", "gemma4v") ||
        g4_gguf_set_f32(f, "clip.vision.attention.layer_norm_epsilon", (float)eps))
        return g4_seterr(err, "out of memory");
    return 0;
}

/* Audio keys from audio_config, as the converter writes them (§10.2); the
 * FFN width is 4x the hidden size in Gemma 4 (no config field says it).
 * 1: no audio_config. */
static int mmproj_audio_keys(g4_gguf_file *f, json_t *cfg, const char *file, g4_error *err) {
    json_t *ac = json_object_get(cfg, "audio_config"), *tc = json_object_get(cfg, "text_config");
    if (!ac || json_is_null(ac)) return 1;
    if (!json_is_object(ac)) return g4_seterr(err, "%s: audio_config must be an object", file);
    if (!json_is_object(tc)) return g4_seterr(err, "%s: text_config is missing (needed for the projection width)", file);
    cfgctx c = { file, "audio_config.", err }, ct = { file, "text_config.", err };
    int64_t D, L, nH, pd;
    double eps = 1e-6;
    if (cfg_int(&c, ac, "hidden_size", true, 1, 65536, &D) || cfg_int(&c, ac, "num_hidden_layers", true, 1, 1024, &L) ||
        cfg_int(&c, ac, "num_attention_heads", true, 1, 1024, &nH) || cfg_num(&c, ac, "rms_norm_eps", false, &eps) < 0 ||
        cfg_int(&ct, tc, "hidden_size", true, 1, 1 << 20, &pd))
        return -1;
    if (g4_gguf_set_bool(f, "clip.has_audio_encoder", true) ||
        g4_gguf_set_u32(f, "clip.audio.projection_dim", (uint32_t)pd) ||
        g4_gguf_set_u32(f, "clip.audio.embedding_length", (uint32_t)D) ||
        g4_gguf_set_u32(f, "clip.audio.feed_forward_length", (uint32_t)(4 * D)) ||
        g4_gguf_set_u32(f, "clip.audio.block_count", (uint32_t)L) ||
        g4_gguf_set_u32(f, "clip.audio.attention.head_count", (uint32_t)nH) ||
        g4_gguf_set_str(f, "clip.audio.projector_type", "gemma4a") ||
        g4_gguf_set_u32(f, "clip.audio.num_mel_bins", 128) ||
        g4_gguf_set_f32(f, "clip.audio.attention.layer_norm_epsilon", (float)eps))
        return g4_seterr(err, "out of memory");
    return 0;
}

/* The tower tensors under their GGUF names. The patch embedding is permuted
 * as the converter does: HF [D][(dy*16+dx)*3+c] -> GGUF {16, 16, 3, D}, i.e.
 * [D][c][dy][dx]. 0-d clip bounds become 1-element tensors. Tensors of a
 * tower this table does not know (audio until its entries land) are left
 * out; the encoder that needs them reports what is missing. */
static int mmproj_weights(g4_gguf_file *f, g4_st_set *s, g4_error *err) {
    for (size_t i = 0; i < s->n; i++) {
        const g4_st_tensor *t = s->all[i];
        if (!g4_mm_is_media(t->name)) continue;
        char name[160];
        if (!g4_mm_map_hf(t->name, name, sizeof name)) continue;
        if (t->n_dims > GGUF_MAX_DIMS)
            return g4_seterr(err, "%s: tensor '%s' has %d dims (max 4)", t->file->path, G4_ESC(t->name), t->n_dims);
        int64_t ne[GGUF_MAX_DIMS] = { 1, 1, 1, 1 };
        int nd = t->n_dims ? t->n_dims : 1;
        for (int d = 0; d < t->n_dims; d++) {
            ne[d] = t->shape[t->n_dims - 1 - d];
            if (ne[d] < 1)
                return g4_seterr(err, "%s: tensor '%s' has an empty dimension", t->file->path, G4_ESC(t->name));
        }
        int64_t nel = g4_st_nelements(t);
        size_t es = t->type == G4_F32 ? 4 : 2;
        const void *data = t->data;
        int type = t->type;
        bool patch = !strcmp(name, "v.patch_embd.weight");
        if (patch && (t->n_dims != 2 || ne[0] != 768))
            return g4_seterr(err, "%s: tensor '%s' has shape [%lld, %lld], expected [D, 768]", t->file->path,
                             G4_ESC(t->name), (long long)ne[1], (long long)ne[0]);
        /* audio: the converter keeps the convolution kernels and
         * per_dim_scale F32 and stores softplus(per_dim_scale) (§10.1) */
        bool pds = strstr(name, ".per_dim_scale.weight") != NULL;
        bool a_f32 = !strncmp(name, "a.", 2) && (pds || strstr(name, "conv1d.") || strstr(name, ".conv_dw."));
        if (patch || a_f32 || g4_hf_force_f32(name, nd) || (uintptr_t)data % es) {
            /* widen to F32 where the converter does (and for the permuted copy) */
            bool widen = type != G4_F32 && (a_f32 || g4_hf_force_f32(name, nd));
            size_t oes = widen ? 4 : es;
            uint8_t *w = g4_gguf_own(f, malloc((size_t)nel * oes));
            if (!w) return g4_seterr(err, "out of memory");
            for (int64_t k = 0; k < nel; k++) {
                int64_t src = k;
                if (patch) {   /* k = o*768 + c*256 + dy*16 + dx  <-  o*768 + (dy*16+dx)*3 + c */
                    int64_t o = k / 768, r = k % 768, c = r / 256, pix = r % 256;
                    src = o * 768 + pix * 3 + c;
                }
                const uint8_t *sp = (const uint8_t *)t->data + (size_t)src * es;
                if (widen) {
                    uint16_t h;
                    memcpy(&h, sp, 2);
                    float v = type == G4_BF16 ? g4_bf16_to_fp32(h) : g4_fp16_to_fp32(h);
                    memcpy(w + (size_t)k * 4, &v, 4);
                } else {
                    memcpy(w + (size_t)k * es, sp, es);
                }
            }
            if (widen) type = G4_F32;
            if (pds && type == G4_F32)
                for (int64_t k = 0; k < nel; k++) {
                    float v;
                    memcpy(&v, w + (size_t)k * 4, 4);
                    v = v > 20.0f ? v : log1pf(expf(v));
                    memcpy(w + (size_t)k * 4, &v, 4);
                }
            data = w;
            if (patch) { ne[0] = 16; ne[1] = 16; ne[2] = 3; ne[3] = t->shape[0]; nd = 4; }
        }
        if (strstr(name, ".conv_dw.") && nd == 3 && ne[1] == 1) { ne[1] = ne[2]; ne[2] = 1; nd = 2; } /* [D][1][K] -> {K, D} */
        if (!g4_gguf_add_tensor(f, name, type, nd, ne, data, err)) return g4_preferr(err, "%s", t->file->path);
    }
    return 0;
}

g4_gguf_file *g4_hf_open_mmproj(const char *dir, g4_error *err) {
    char path[4200];
    int rc = 0;
    g4_gguf_file *f = NULL;
    g4_st_set *s = NULL;
    json_t *cfg = load_json(dir, "config.json", true, path, sizeof path, err, &rc);
    if (!cfg) return NULL;
    s = g4_st_open_dir(dir, err);
    if (!s) goto fail;
    f = g4_gguf_new(dir);
    if (!f) { g4_seterr(err, "out of memory"); goto fail; }
    f->extra = s;
    f->extra_free = g4_st_set_free_cb;
    g4_st_set *sref = s;
    s = NULL;
    SETX(g4_gguf_set_str(f, "general.architecture", "clip"));
    SETX(g4_gguf_set_str(f, "general.type", "mmproj"));
    int v = mmproj_vision_keys(f, cfg, path, err);
    if (v < 0) goto fail;
    int a = mmproj_audio_keys(f, cfg, path, err);
    if (a < 0) goto fail;
    if (v > 0 && a > 0) {
        g4_seterr(err, "%s: no vision_config or audio_config: this folder has no media towers gemma4c can load", path);
        goto fail;
    }
    if (mmproj_weights(f, sref, err)) goto fail;
    /* the processor's image budget (image_processor.max_soft_tokens), under a
     * gemma4c key: llama.cpp's mmproj has none (280 is the default then) */
    json_t *pc = load_json(dir, "processor_config.json", false, path, sizeof path, err, &rc);
    if (rc) goto fail;
    json_t *ip = pc ? json_object_get(pc, "image_processor") : NULL;
    int64_t budget;
    cfgctx pcx = { path, "image_processor.", err };
    int r = ip && json_is_object(ip) ? cfg_int(&pcx, ip, "max_soft_tokens", false, 1, 1 << 20, &budget) : 1;
    json_decref(pc);
    if (r < 0) goto fail;
    if (r == 0) SETX(g4_gguf_set_u32(f, "gemma4c.vision.image_soft_tokens", (uint32_t)budget));
    json_decref(cfg);
    return f;
fail:
    json_decref(cfg);
    g4_st_set_close(s);
    g4_gguf_close(f);
    return NULL;
}
