/* Synthetic Gemma 4 GGUF writer (see synth.h).
 *
 * Presets are data: the four released text decoders (shared/docs/
 * gemma4-text.md §1) and a tiny E-style model for demos and tests. The
 * metadata keys come in the order llama.cpp's converter writes them, tensor
 * types follow llama-quantize's rules for the requested file type
 * (model/quantize.c), and every row is generated on demand from a hash of
 * (seed, tensor, row), so output is deterministic whatever the chunking and
 * memory stays at one chunk. */
#include "model/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/gemma4.h"
#include "arch/markers.h"
#include "format/gguf.h"
#include "tensor/pool.h"
#include "format/gguf_write.h"
#include "model/model.h"
#include "model/quantize.h"
#include "tensor/types.h"

typedef struct preset {
    const char *name, *label;
    int L, H, nH, kv_swa, kv_full, hd_swa, hd_full, ff, ff_wide, window, shared, P;
    int E, K, Fe, V, ctx;
    bool k_eq_v;
    int period; /* every period-th layer is full (last of each group) */
} preset;

static const preset PRESETS[] = {
    /* name      label   L   H     nH kvS kvF hdS hdF  ff     wide   W    shr  P   E   K  Fe   V       ctx   k=v  per */
    { "tiny",    "4M",   10, 128,  4, 1,  1,  32, 64,  512,   1024,  64,  4,   16, 0,  0, 0,   0,      131072, false, 5 },
    { "e2b",     "E2B",  35, 1536, 8, 1,  1,  256, 512, 6144, 12288, 512, 20, 256, 0,  0, 0,   262144, 131072, false, 5 },
    { "e4b",     "E4B",  42, 2560, 8, 2,  2,  256, 512, 10240, 0,    512, 18, 256, 0,  0, 0,   262144, 131072, false, 6 },
    { "26b-a4b", "26B-A4B", 30, 2816, 16, 8, 2, 256, 512, 2112, 0,  1024, 0,  0,   128, 8, 704, 262144, 262144, true, 6 },
    { "31b",     "31B",  60, 5376, 32, 16, 4, 256, 512, 21504, 0,  1024, 0,  0,   0,  0, 0,   262144, 262144, true, 6 },
    /* the trained demo model (gemma4c train --arch mini; 1.7M params with its
     * corpus vocabulary, the label kept as shipped): SSF SSF, the last two
     * layers share the KV of layers 2 and 3, double-wide MLPs there, PLE */
    { "mini",    "1.5M", 6,  128,  4, 1,  1,  32, 64,  256,   512,   64,  2,   16, 0,  0, 0,   0,      1024,   false, 3 },
};
#define N_PRESETS (sizeof PRESETS / sizeof PRESETS[0])

const char *const g4_synth_archs[] = { "tiny", "e2b", "e4b", "26b-a4b", "31b", "mini", NULL };

/* ---- deterministic random numbers ------------------------------------------ */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct rng { uint64_t s; } rng;
static double unif(rng *r) { r->s += 0x9e3779b97f4a7c15ull; return (double)(mix64(r->s) >> 11) * (1.0 / 9007199254740992.0); }

/* ---- vocabulary --------------------------------------------------------------- */

/* Text the tiny vocabulary's merges are learned from. */
static const char CORPUS[] =
    "The quick brown fox jumps over the lazy dog. Gemma is a family of open models from Google. "
    "This model has random weights: it shows that the engine works end to end, from text to tokens, "
    "through the decoder and the sampler, and back to text. It will not say anything sensible. "
    "To run a real model, download a Gemma 4 GGUF file and pass it with -m. The weights are memory "
    "mapped and used in their stored form. Hello world! How are you today? I am fine, thank you. "
    "What is the weather like in Paris? It is sunny and warm, with a light breeze from the west. "
    "def main(): print('hello') return 0 if x > 1 else None; for i in range(10): total += i * 2 "
    "The first step is to read the file, then we parse the header, check every field and map the "
    "tensors. When the model answers, the tokens are turned back into text and printed to the screen.";

typedef struct vocab {
    char **tok;
    int32_t *type;
    int n, cap;
    char **merge;
    int n_merge;
} vocab;

static int vocab_add(vocab *v, const char *s, int type) {
    if (v->n == v->cap) return -1;
    v->tok[v->n] = strdup(s);
    v->type[v->n] = type;
    return v->tok[v->n++] ? 0 : -1;
}

/* Split UTF-8 text into symbols: one character each, spaces as U+2581. */
typedef struct sym { char s[64]; } sym;

/* A tiny deterministic BPE trainer: repeatedly merge the most frequent
 * adjacent pair inside words (ties: lexicographically smallest) until the
 * vocabulary is full. Small corpus, small vocab: quadratic is fine here. */
static int learn_merges(vocab *v, int target) {
    size_t n = 0, cap = sizeof CORPUS;
    sym *w = malloc(cap * sizeof *w);
    v->merge = malloc((size_t)target * sizeof *v->merge);
    if (!w || !v->merge) { free(w); return -1; }
    for (const char *p = CORPUS; *p; p++) {
        if (*p == ' ') strcpy(w[n++].s, "\xe2\x96\x81");
        else { w[n].s[0] = *p; w[n].s[1] = 0; n++; }
    }
    while (v->n < target) {
        int best_i = -1, best_c = 1;
        for (size_t i = 0; i + 1 < n; i++) {
            if (!strncmp(w[i + 1].s, "\xe2\x96\x81", 3)) continue; /* merges never cross words */
            if (strlen(w[i].s) + strlen(w[i + 1].s) >= sizeof w[0].s) continue;
            int c = 0;
            for (size_t j = 0; j + 1 < n; j++)
                if (!strcmp(w[j].s, w[i].s) && !strcmp(w[j + 1].s, w[i + 1].s)) c++;
            if (c > best_c) { best_c = c; best_i = (int)i; }
        }
        if (best_i < 0) break;
        char a[64], b[64], merged[128], rule[140];
        strcpy(a, w[best_i].s);
        strcpy(b, w[best_i + 1].s);
        snprintf(merged, sizeof merged, "%s%s", a, b);
        snprintf(rule, sizeof rule, "%s %s", a, b);
        if (vocab_add(v, merged, 1)) break;
        v->merge[v->n_merge++] = strdup(rule);
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && !strcmp(w[i].s, a) && !strcmp(w[i + 1].s, b)) {
                strcpy(w[o++].s, merged);
                i++;
            } else if (o != i) w[o++] = w[i];
            else o++;
        }
        n = o;
    }
    free(w);
    return 0;
}

/* BPE merges from a text file (gemma4c train --corpus): the same rules as
 * learn_merges (merges inside words, a word starts at its U+2581), counted
 * over the distinct words with their frequencies so a corpus of megabytes
 * takes seconds. Bytes outside printable ASCII separate words. */
typedef struct cword { int *sym; int n, count; } cword;

static unsigned str_hash(const char *s, size_t n) {
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int learn_merges_corpus(vocab *v, int target, const char *text, size_t len) {
    /* symbols: strings, index = id; initial ones are "\xe2\x96\x81" and 0x21..0x7e */
    int n_sym = 0, cap_sym = target + 128;
    char **syms = calloc((size_t)cap_sym, sizeof *syms);
    size_t hcap = 1 << 20;
    int *wh = malloc(hcap * sizeof *wh);          /* word hash: index into words, -1 empty */
    cword *words = NULL;
    int n_words = 0, cap_words = 0, rc = -1;
    v->merge = malloc((size_t)target * sizeof *v->merge);
    if (!syms || !wh || !v->merge) goto out;
    for (size_t i = 0; i < hcap; i++) wh[i] = -1;
    syms[n_sym++] = strdup("\xe2\x96\x81");
    for (int c = 0x21; c < 0x7f; c++) { char b[2] = { (char)c, 0 }; syms[n_sym++] = strdup(b); }
    for (size_t i = 0; i < len;) {
        while (i < len && (text[i] <= 0x20 || text[i] >= 0x7f)) i++;
        size_t j = i;
        while (j < len && text[j] > 0x20 && text[j] < 0x7f) j++;
        if (j == i) break;
        if (j - i > 40) { i = j; continue; }          /* not a word */
        unsigned h = str_hash(text + i, j - i) & (unsigned)(hcap - 1);
        for (;;) {
            int w = wh[h];
            if (w < 0) {
                if (n_words == cap_words) {
                    cap_words = cap_words * 2 + 1024;
                    cword *nw = realloc(words, (size_t)cap_words * sizeof *nw);
                    if (!nw) goto out;
                    words = nw;
                }
                if ((size_t)n_words * 2 >= hcap) goto out;   /* table full: corpus too varied */
                cword *cw = &words[n_words];
                cw->n = (int)(j - i) + 1;
                cw->count = 1;
                cw->sym = malloc((size_t)cw->n * sizeof(int));
                if (!cw->sym) goto out;
                cw->sym[0] = 0;
                for (size_t k = i; k < j; k++) cw->sym[k - i + 1] = 1 + (text[k] - 0x21);
                wh[h] = n_words++;
                break;
            }
            cword *cw = &words[w];
            bool same = cw->n == (int)(j - i) + 1;
            for (size_t k = i; same && k < j; k++) same = cw->sym[k - i + 1] == 1 + (text[k] - 0x21);
            if (same) { cw->count++; break; }
            h = (h + 1) & (unsigned)(hcap - 1);
        }
        i = j;
    }
    /* pair counts in a dense table would be n_sym^2: hash pairs instead */
    size_t pcap = 1 << 21;
    int64_t *pkey = malloc(pcap * sizeof *pkey);
    long *pcnt = malloc(pcap * sizeof *pcnt);
    if (!pkey || !pcnt) { free(pkey); free(pcnt); goto out; }
    while (v->n < target && n_sym < cap_sym) {
        for (size_t i = 0; i < pcap; i++) pkey[i] = -1;
        int64_t best = -1;
        long best_c = 1;
        for (int w = 0; w < n_words; w++)
            for (int k = 0; k + 1 < words[w].n; k++) {
                int a = words[w].sym[k], b = words[w].sym[k + 1];
                if (b == 0) continue;
                int64_t key = (int64_t)a * 65536 + b;
                size_t h = (size_t)(((uint64_t)key * 0x9e3779b97f4a7c15ull) >> 43) & (pcap - 1);
                while (pkey[h] >= 0 && pkey[h] != key) h = (h + 1) & (pcap - 1);
                if (pkey[h] < 0) { pkey[h] = key; pcnt[h] = 0; }
                pcnt[h] += words[w].count;
                long c = pcnt[h];
                /* ties: the pair seen first wins, deterministic for a given text */
                if (c > best_c || (c == best_c && key == best)) { best_c = c; best = key; }
            }
        if (best < 0) break;
        int a = (int)(best / 65536), b = (int)(best % 65536);
        char merged[128], rule[140];
        if (strlen(syms[a]) + strlen(syms[b]) >= 64) break;
        snprintf(merged, sizeof merged, "%s%s", syms[a], syms[b]);
        snprintf(rule, sizeof rule, "%s %s", syms[a], syms[b]);
        if (vocab_add(v, merged, 1)) break;
        v->merge[v->n_merge++] = strdup(rule);
        int id = n_sym;
        syms[n_sym++] = strdup(merged);
        for (int w = 0; w < n_words; w++) {
            cword *cw = &words[w];
            int o = 0;
            for (int k = 0; k < cw->n; k++) {
                if (k + 1 < cw->n && cw->sym[k] == a && cw->sym[k + 1] == b) { cw->sym[o++] = id; k++; }
                else cw->sym[o++] = cw->sym[k];
            }
            cw->n = o;
        }
    }
    free(pkey);
    free(pcnt);
    rc = 0;
out:
    for (int i = 0; i < n_words; i++) free(words[i].sym);
    free(words);
    for (int i = 0; i < n_sym; i++) free(syms[i]);
    free(syms);
    free(wh);
    return rc;
}

/* V = 0: as many tokens as the merges learned from CORPUS (or the corpus
 * text given) give (tiny, mini). */
static int build_vocab(vocab *v, int V, const char *corpus, size_t corpus_len) {
    if (V == 0) V = 238 + 256 + 1 + 94 + 2048;
    v->cap = V;
    v->tok = calloc((size_t)V, sizeof *v->tok);
    v->type = calloc((size_t)V, sizeof *v->type);
    if (!v->tok || !v->type) return -1;
    /* 0..237: control tokens at their Gemma 4 ids (arch/markers.h; the media
     * markers sit above 238 and are left out), the rest unused */
    for (int id = 0; id < 238; id++) {
        char buf[32];
        const char *s = NULL;
        int type = G4_TT_UNUSED;
        for (size_t k = 0; k < g4_n_markers; k++)
            if (g4_markers[k].id == id) { s = g4_markers[k].s; type = g4_markers[k].type; }
        if (!s) { snprintf(buf, sizeof buf, "<unused%d>", id); s = buf; }
        if (vocab_add(v, s, type)) return -1;
    }
    /* 238..493: byte fallback <0x00>..<0xFF>, as in the real vocabulary */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        if (vocab_add(v, buf, G4_TT_BYTE)) return -1;
    }
    if (vocab_add(v, "\xe2\x96\x81", 1)) return -1;
    for (int c = 0x21; c < 0x7f; c++) {
        char buf[2] = { (char)c, 0 };
        if (vocab_add(v, buf, 1)) return -1;
    }
    int merges_target = V < 4096 ? V : 4096;
    if (corpus ? learn_merges_corpus(v, merges_target, corpus, corpus_len) : learn_merges(v, merges_target))
        return -1;
    /* a full-size vocabulary gets filler pieces no text produces */
    for (int i = 0; v->n < V && v->cap >= 262144; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "<synthetic%d>", i);
        if (vocab_add(v, buf, 1)) return -1;
    }
    return 0;
}

static void vocab_free(vocab *v) {
    for (int i = 0; i < v->n; i++) free(v->tok[i]);
    for (int i = 0; i < v->n_merge; i++) free(v->merge[i]);
    free(v->tok);
    free(v->type);
    free(v->merge);
}

/* ---- tensors -------------------------------------------------------------------- */

#define MAX_TENSORS 4096

typedef struct synth_ctx {
    uint64_t seed;
    const int *kinds;
    const g4_gguf_tensor *src;      /* F32 descriptors (shapes) */
    const int *types;            /* output types */
    const preset *p;
    float *row;                  /* one f32 row per thread */
    int64_t max_row;
    g4_pool *pool;
    /* the chunk being filled (shared with the workers) */
    uint64_t ti;
    int64_t row0, nrows;
    void *dst;
} synth_ctx;

/* Rows are independent (each seeded from seed, tensor and row), so threads
 * split a chunk and the bytes do not depend on the thread count. */
static void fill_rows(void *arg, int ith, int nth) {
    synth_ctx *c = arg;
    uint64_t ti = c->ti;
    const g4_gguf_tensor *t = &c->src[ti];
    int64_t n = t->ne[0];
    const g4_type_traits *tr = g4_type_info(c->types[ti]);
    size_t rb = g4_row_size(c->types[ti], n);
    long lo, hi;
    g4_split((long)c->nrows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        rng g = { mix64(c->seed ^ mix64((ti + 1) * 0x100000001b3ull) ^ (uint64_t)(c->row0 + r) * 0x9e3779b97f4a7c15ull) };
        float *x = c->row + (size_t)ith * (size_t)c->max_row;
        switch (c->kinds[ti]) {
        case G4_TK_NORM: for (int64_t i = 0; i < n; i++) x[i] = (float)(0.5 + unif(&g)); break;
        case G4_TK_SCALE: x[0] = (float)(0.5 + 0.5 * unif(&g)); break;
        case G4_TK_ROPE: {
            int rot = (int)(c->p->hd_full * 0.25 / 2);
            for (int64_t i = 0; i < n; i++) x[i] = i < rot ? 1.0f : 1e30f;
            break;
        }
        default: {
            /* uniform with the variance of N(0, 1/n) (embeddings: 4/n): cheap
             * for billions of weights */
            float a = (float)(sqrt(3.0 / (double)n)) * (c->kinds[ti] == G4_TK_EMBD ? 2.0f : 1.0f);
            uint64_t z = g.s;
            for (int64_t i = 0; i < n; i++) {
                z ^= z << 13; z ^= z >> 7; z ^= z << 17;
                x[i] = a * ((float)(int32_t)(z >> 32) * (1.0f / 2147483648.0f));
            }
        }
        }
        tr->from_float(x, (char *)c->dst + (size_t)r * rb, n);
    }
}

static int fill(void *ud, uint64_t ti, int64_t row0, int64_t nrows, void *dst, g4_error *err) {
    synth_ctx *c = ud;
    const g4_type_traits *tr = g4_type_info(c->types[ti]);
    if (!tr || !tr->from_float || !g4_row_size(c->types[ti], c->src[ti].ne[0]))
        return g4_seterr(err, "cannot write type %s", g4_type_name(c->types[ti]));
    c->ti = ti;
    c->row0 = row0;
    c->nrows = nrows;
    c->dst = dst;
    g4_pool_run(c->pool, fill_rows, c);
    return 0;
}

static int add(g4_gguf_file *f, int *kinds, int kind, const char *name, int nd, int64_t a, int64_t b, int64_t c,
               g4_error *err) {
    int64_t ne[3] = { a, b, c };
    if (f->n_tensors >= MAX_TENSORS) return g4_seterr(err, "too many tensors");
    kinds[f->n_tensors] = kind;
    return g4_gguf_add_tensor(f, name, G4_F32, nd, ne, NULL, err) ? 0 : -1;
}

int g4_synth(const char *out_path, const g4_synth_opts *o, g4_error *err) {
    const preset *p = NULL;
    for (size_t i = 0; i < N_PRESETS; i++)
        if (!strcmp(PRESETS[i].name, o->arch)) p = &PRESETS[i];
    if (!p) return g4_seterr(err, "unknown --arch '%s' (expected tiny, e2b, e4b, 26b-a4b, 31b or mini)", o->arch);
    char *corpus = NULL;
    size_t corpus_len = 0;
    if (o->corpus) {
        FILE *cf = fopen(o->corpus, "rb");
        if (!cf) return g4_seterr(err, "%s: cannot open the tokenizer corpus", o->corpus);
        corpus = malloc(64u << 20);
        corpus_len = corpus ? fread(corpus, 1, (64u << 20) - 1, cf) : 0;
        fclose(cf);
        if (!corpus) return g4_seterr(err, "out of memory");
    }
    int ftype = g4_ftype_from_name(o->ftype ? o->ftype : "F32");
    if (ftype < 0) return g4_seterr(err, "unknown --type '%s'", o->ftype);

    g4_gguf_file *f = g4_gguf_new(out_path);
    vocab v = { 0 };
    int *kinds = malloc(MAX_TENSORS * sizeof *kinds);
    int *types = NULL;
    synth_ctx sc = { 0 };
    int rc = -1;
    int bv = !f || !kinds ? -1 : build_vocab(&v, p->V, corpus, corpus_len);
    free(corpus);
    if (bv) { g4_seterr(err, "out of memory"); goto done; }
    int V = v.n;

    int L = p->L, first_shared = L - p->shared;
    uint32_t *ffl = malloc((size_t)L * sizeof *ffl), *kvl = malloc((size_t)L * sizeof *kvl);
    uint8_t *pat = malloc((size_t)L);
    if (!ffl || !kvl || !pat) { free(ffl); free(kvl); free(pat); g4_seterr(err, "out of memory"); goto done; }
    for (int l = 0; l < L; l++) {
        bool full = (l % p->period) == p->period - 1;
        pat[l] = !full;
        ffl[l] = (uint32_t)(p->ff_wide && l >= first_shared ? p->ff_wide : p->ff);
        kvl[l] = (uint32_t)(full ? p->kv_full : p->kv_swa);
    }
    char name[64];
    snprintf(name, sizeof name, "gemma4c-synthetic-%s", p->name);
    /* metadata in the converter's order */
    int e = 0;
    e |= g4_gguf_set_str(f, "general.architecture", "gemma4");
    e |= g4_gguf_set_str(f, "general.type", "model");
    e |= g4_gguf_set_str(f, "general.name", name);
    e |= g4_gguf_set_str(f, "general.size_label", p->label);
    e |= g4_gguf_set_u32(f, "gemma4.block_count", (uint32_t)L);
    e |= g4_gguf_set_u32(f, "gemma4.context_length", (uint32_t)p->ctx);
    e |= g4_gguf_set_u32(f, "gemma4.embedding_length", (uint32_t)p->H);
    if (p->ff_wide) e |= g4_gguf_set_arr(f, "gemma4.feed_forward_length", GGUF_INT32, ffl, (uint64_t)L);
    else e |= g4_gguf_set_u32(f, "gemma4.feed_forward_length", (uint32_t)p->ff);
    e |= g4_gguf_set_u32(f, "gemma4.attention.head_count", (uint32_t)p->nH);
    if (p->kv_swa != p->kv_full) e |= g4_gguf_set_arr(f, "gemma4.attention.head_count_kv", GGUF_INT32, kvl, (uint64_t)L);
    else e |= g4_gguf_set_u32(f, "gemma4.attention.head_count_kv", (uint32_t)p->kv_swa);
    e |= g4_gguf_set_f32(f, "gemma4.rope.freq_base", 1e6f);
    e |= g4_gguf_set_f32(f, "gemma4.rope.freq_base_swa", 1e4f);
    e |= g4_gguf_set_f32(f, "gemma4.attention.layer_norm_rms_epsilon", 1e-6f);
    if (p->E) {
        e |= g4_gguf_set_u32(f, "gemma4.expert_count", (uint32_t)p->E);
        e |= g4_gguf_set_u32(f, "gemma4.expert_used_count", (uint32_t)p->K);
    }
    e |= g4_gguf_set_u32(f, "gemma4.attention.key_length", (uint32_t)p->hd_full);
    e |= g4_gguf_set_u32(f, "gemma4.attention.value_length", (uint32_t)p->hd_full);
    e |= g4_gguf_set_u32(f, "general.file_type", (uint32_t)ftype);
    e |= g4_gguf_set_f32(f, "gemma4.final_logit_softcapping", 30.0f);
    e |= g4_gguf_set_u32(f, "gemma4.attention.sliding_window", (uint32_t)p->window);
    e |= g4_gguf_set_u32(f, "gemma4.attention.shared_kv_layers", (uint32_t)p->shared);
    e |= g4_gguf_set_u32(f, "gemma4.embedding_length_per_layer_input", (uint32_t)p->P);
    e |= g4_gguf_set_arr(f, "gemma4.attention.sliding_window_pattern", GGUF_BOOL, pat, (uint64_t)L);
    e |= g4_gguf_set_u32(f, "gemma4.attention.key_length_swa", (uint32_t)p->hd_swa);
    e |= g4_gguf_set_u32(f, "gemma4.attention.value_length_swa", (uint32_t)p->hd_swa);
    if (p->E) e |= g4_gguf_set_u32(f, "gemma4.expert_feed_forward_length", (uint32_t)p->Fe);
    e |= g4_gguf_set_u32(f, "gemma4.rope.dimension_count", (uint32_t)p->hd_full);
    e |= g4_gguf_set_u32(f, "gemma4.rope.dimension_count_swa", (uint32_t)p->hd_swa);
    e |= g4_gguf_set_u32(f, "general.quantization_version", 2);
    e |= g4_gguf_set_str(f, "tokenizer.ggml.model", "gemma4");
    e |= g4_gguf_set_arr_str(f, "tokenizer.ggml.tokens", (const char *const *)v.tok, (uint64_t)v.n);
    float *scores = malloc((size_t)v.n * sizeof *scores);
    if (scores) for (int i = 0; i < v.n; i++) scores[i] = -1000.0f;
    e |= !scores || g4_gguf_set_arr(f, "tokenizer.ggml.scores", GGUF_FLOAT32, scores, (uint64_t)v.n);
    free(scores);
    e |= g4_gguf_set_arr(f, "tokenizer.ggml.token_type", GGUF_INT32, v.type, (uint64_t)v.n);
    e |= g4_gguf_set_arr_str(f, "tokenizer.ggml.merges", (const char *const *)v.merge, (uint64_t)v.n_merge);
    e |= g4_gguf_set_u32(f, "tokenizer.ggml.bos_token_id", 2);
    e |= g4_gguf_set_u32(f, "tokenizer.ggml.eos_token_id", 1);
    e |= g4_gguf_set_u32(f, "tokenizer.ggml.unknown_token_id", 3);
    e |= g4_gguf_set_u32(f, "tokenizer.ggml.padding_token_id", 0);
    e |= g4_gguf_set_u32(f, "tokenizer.ggml.mask_token_id", 4);
    e |= g4_gguf_set_bool(f, "tokenizer.ggml.add_bos_token", true);
    e |= g4_gguf_set_bool(f, "tokenizer.ggml.add_eos_token", false);
    e |= g4_gguf_set_bool(f, "tokenizer.ggml.add_space_prefix", false);
    free(ffl); free(kvl); free(pat);
    if (e) { g4_seterr(err, "out of memory"); goto done; }

    /* tensors: the table's rows in its (the converter's) order; the block of
     * per-layer rows is written once per layer */
    g4_arch_dims d = { .n_embd = p->H, .n_vocab = V, .n_layer = L, .n_ple = p->P, .n_head = p->nH,
                       .n_expert = p->E, .n_ff_exp = p->Fe, .n_rope_pairs = p->hd_full / 2 };
    for (int i = 0; i < G4_T_COUNT; i++) {
        int end = i + 1;
        if (g4_tensors[i].layer)
            while (end < G4_T_COUNT && g4_tensors[end].layer) end++;
        for (int l = 0; l < (g4_tensors[i].layer ? L : 1); l++) {
            bool full = (l % p->period) == p->period - 1;
            d.head_dim = full ? p->hd_full : p->hd_swa;
            d.n_kv_head = full ? p->kv_full : p->kv_swa;
            d.n_ff = p->ff_wide && l >= first_shared ? p->ff_wide : p->ff;
            d.own_kv = l < first_shared;
            d.k_eq_v = full && p->k_eq_v;
            for (int j = i; j < end; j++) {
                const g4_tensor_info *t = &g4_tensors[j];
                if ((t->flags & G4_TF_VARIANT) || !g4_tensor_present(t, &d)) continue;
                char n[96];
                int64_t ne[3];
                int nd = g4_tensor_shape(t, &d, ne);
                g4_tensor_name(t, l, n, sizeof n);
                if (add(f, kinds, t->kind, n, nd, ne[0], ne[1], ne[2], err)) goto done;
            }
        }
        i = end - 1;
    }

    types = malloc(f->n_tensors * sizeof *types);
    if (!types) { g4_seterr(err, "out of memory"); goto done; }
    if (g4_quant_plan(f, ftype, types, err)) goto done;
    /* output descriptors: same shapes, planned types, data generated by fill() */
    g4_gguf_tensor *outd = calloc(f->n_tensors, sizeof *outd);
    if (!outd) { g4_seterr(err, "out of memory"); goto done; }
    int64_t max_row = 1;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        outd[i] = f->tensors[i];
        outd[i].type = types[i];
        outd[i].data = NULL;
        int64_t rows = outd[i].ne[1] * outd[i].ne[2] * outd[i].ne[3];
        outd[i].nbytes = g4_row_size(types[i], outd[i].ne[0]) * (size_t)rows;
        if (outd[i].ne[0] > max_row) max_row = outd[i].ne[0];
    }
    int nth = o->n_threads > 0 ? o->n_threads : 1;
    sc = (synth_ctx){ .seed = o->seed, .kinds = kinds, .src = f->tensors, .types = types, .p = p,
                      .row = malloc((size_t)nth * (size_t)max_row * sizeof(float)), .max_row = max_row,
                      .pool = g4_pool_new(nth) };
    if (!sc.row || !sc.pool) { free(outd); g4_seterr(err, "out of memory"); goto done; }
    g4_gguf_write_opts wo = { .tensors = outd, .n_tensors = f->n_tensors, .fill = fill, .ud = &sc,
                           .force = o->force, .progress_fn = o->progress, .progress_ud = o->progress_ud };
    rc = g4_gguf_write_ex(f, out_path, &wo, err);
    free(outd);
done:
    if (sc.pool) g4_pool_free(sc.pool);
    free(sc.row);
    free(types);
    free(kinds);
    vocab_free(&v);
    g4_gguf_close(f);
    return rc;
}

/* ---- the MTP assistant ------------------------------------------------------------- */

int g4_synth_assistant(const char *out_path, const struct g4_model *tm, const g4_synth_opts *o, g4_error *err) {
    /* shapes: Ht, hd, V, window, KV heads from the target (or its preset);
     * the assistant's own width, heads, FFN and layers per released drafter
     * (E2B: 256 wide, 4 heads, FFN 2048, SSSF; the larger ones' widths are
     * not published here: 256 for E4B, 1024 for 26B-A4B and 31B, assumed) */
    preset tp = { 0 };
    int Ha, nH, ff, L, V, kv_full;
    float eps = 1e-6f;
    const float *rope = NULL;
    if (tm) {
        tp.H = tm->n_embd;
        tp.hd_swa = tm->head_dim_swa;
        tp.hd_full = tm->head_dim_full;
        tp.window = tm->sliding_window;
        V = tm->n_vocab;
        Ha = 64; nH = tm->n_head; ff = 256; L = 2;
        kv_full = tm->layers[tm->n_layer - 1].n_kv_head;
        rope = tm->rope_freqs;
        eps = tm->eps;
    } else {
        const preset *p = NULL;
        for (size_t i = 0; i < N_PRESETS; i++)
            if (!strcmp(PRESETS[i].name, o->arch) && PRESETS[i].V) p = &PRESETS[i];
        if (!p)
            return g4_seterr(err, "no assistant preset '%s' (expected e2b, e4b, 26b-a4b or 31b)", o->arch);
        tp = *p;
        V = p->V;
        bool big = p->H > 2560;
        Ha = big ? 1024 : 256; nH = big ? 16 : 4; ff = big ? 8192 : 2048; L = 4;
        kv_full = p->kv_full;
    }
    int ftype = g4_ftype_from_name(o->ftype ? o->ftype : "F32");
    if (ftype < 0) return g4_seterr(err, "unknown --type '%s'", o->ftype);
    int base = g4_ftype_base_type(ftype);
    if (base < 0) base = G4_F32;
    bool any_full = false;
    uint8_t pat[64];
    for (int l = 0; l < L; l++) { pat[l] = l != L - 1; any_full |= !pat[l]; }
    int rot_full = tp.hd_full, rot_swa = tp.hd_swa;
    for (int l = 0; tm && l < tm->n_layer; l++) {
        if (tm->layers[l].swa) rot_swa = tm->layers[l].n_rot;
        else rot_full = tm->layers[l].n_rot;
    }
    int rot_pairs = rot_full / 2;

    g4_gguf_file *f = g4_gguf_new(out_path);
    int *kinds = malloc(MAX_TENSORS * sizeof *kinds);
    int *types = NULL;
    g4_gguf_tensor *outd = NULL;
    synth_ctx sc = { 0 };
    int rc = -1;
    if (!f || !kinds) { g4_seterr(err, "out of memory"); goto done; }
    char name[96];
    snprintf(name, sizeof name, "gemma4c-synthetic-assistant-%s", tm ? "tiny" : o->arch);
#define K_ "gemma4-assistant."
    int e = 0;
    e |= g4_gguf_set_str(f, "general.architecture", "gemma4-assistant");
    e |= g4_gguf_set_str(f, "general.type", "model");
    e |= g4_gguf_set_str(f, "general.name", name);
    e |= g4_gguf_set_u32(f, K_ "block_count", (uint32_t)L);
    e |= g4_gguf_set_u32(f, K_ "context_length", 131072);
    e |= g4_gguf_set_u32(f, K_ "embedding_length", (uint32_t)Ha);
    e |= g4_gguf_set_u32(f, K_ "embedding_length_out", (uint32_t)tp.H);
    e |= g4_gguf_set_u32(f, K_ "feed_forward_length", (uint32_t)ff);
    e |= g4_gguf_set_u32(f, K_ "attention.head_count", (uint32_t)nH);
    e |= g4_gguf_set_u32(f, K_ "attention.head_count_kv", (uint32_t)kv_full);
    e |= g4_gguf_set_f32(f, K_ "rope.freq_base", 1e6f);
    e |= g4_gguf_set_f32(f, K_ "rope.freq_base_swa", 1e4f);
    e |= g4_gguf_set_f32(f, K_ "attention.layer_norm_rms_epsilon", eps);
    e |= g4_gguf_set_u32(f, K_ "attention.key_length", (uint32_t)tp.hd_full);
    e |= g4_gguf_set_u32(f, K_ "attention.value_length", (uint32_t)tp.hd_full);
    e |= g4_gguf_set_u32(f, "general.file_type", (uint32_t)ftype);
    e |= g4_gguf_set_u32(f, K_ "attention.sliding_window", (uint32_t)tp.window);
    e |= g4_gguf_set_u32(f, K_ "attention.shared_kv_layers", (uint32_t)L);
    e |= g4_gguf_set_arr(f, K_ "attention.sliding_window_pattern", GGUF_BOOL, pat, (uint64_t)L);
    e |= g4_gguf_set_u32(f, K_ "attention.key_length_swa", (uint32_t)tp.hd_swa);
    e |= g4_gguf_set_u32(f, K_ "attention.value_length_swa", (uint32_t)tp.hd_swa);
    e |= g4_gguf_set_u32(f, K_ "rope.dimension_count", (uint32_t)rot_full);
    e |= g4_gguf_set_u32(f, K_ "rope.dimension_count_swa", (uint32_t)rot_swa);
    e |= g4_gguf_set_u32(f, K_ "nextn_predict_layers", (uint32_t)L);
    e |= g4_gguf_set_u32(f, "general.quantization_version", 2);
#undef K_
    if (e) { g4_seterr(err, "out of memory"); goto done; }
    /* GGUF ne order {in, out} */
    int64_t nq_s = (int64_t)nH * tp.hd_swa, nq_f = (int64_t)nH * tp.hd_full;
    if (add(f, kinds, G4_TK_EMBD, "token_embd.weight", 2, Ha, V, 1, err)) goto done;
    if (any_full && (rope || !tm) && add(f, kinds, G4_TK_ROPE, "rope_freqs.weight", 1, rot_pairs, 1, 1, err)) goto done;
    if (add(f, kinds, G4_TK_WEIGHT, "nextn.pre_projection.weight", 2, 2 * (int64_t)tp.H, Ha, 1, err) ||
        add(f, kinds, G4_TK_WEIGHT, "nextn.post_projection.weight", 2, Ha, tp.H, 1, err))
        goto done;
    for (int l = 0; l < L; l++) {
        int64_t nq = pat[l] ? nq_s : nq_f, hd = pat[l] ? tp.hd_swa : tp.hd_full;
        struct { const char *n; int kind, nd; int64_t a, b; } rows[] = {
            { "attn_norm", G4_TK_NORM, 1, Ha, 1 }, { "attn_q", G4_TK_WEIGHT, 2, Ha, nq },
            { "attn_q_norm", G4_TK_NORM, 1, hd, 1 }, { "attn_output", G4_TK_WEIGHT, 2, nq, Ha },
            { "post_attention_norm", G4_TK_NORM, 1, Ha, 1 }, { "ffn_norm", G4_TK_NORM, 1, Ha, 1 },
            { "ffn_gate", G4_TK_WEIGHT, 2, Ha, ff }, { "ffn_up", G4_TK_WEIGHT, 2, Ha, ff },
            { "ffn_down", G4_TK_WEIGHT, 2, ff, Ha }, { "post_ffw_norm", G4_TK_NORM, 1, Ha, 1 },
            { "layer_output_scale", G4_TK_SCALE, 1, 1, 1 },
        };
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            char n[96];
            snprintf(n, sizeof n, "blk.%d.%s.weight", l, rows[r].n);
            if (add(f, kinds, rows[r].kind, n, rows[r].nd, rows[r].a, rows[r].b, 1, err)) goto done;
        }
    }
    if (add(f, kinds, G4_TK_NORM, "output_norm.weight", 1, Ha, 1, 1, err)) goto done;

    types = malloc(f->n_tensors * sizeof *types);
    outd = calloc(f->n_tensors, sizeof *outd);
    if (!types || !outd) { g4_seterr(err, "out of memory"); goto done; }
    int64_t max_row = 1;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        outd[i] = f->tensors[i];
        bool mat = kinds[i] == G4_TK_WEIGHT || kinds[i] == G4_TK_EMBD;
        types[i] = mat && g4_row_size(base, outd[i].ne[0]) ? base : G4_F32;
        outd[i].type = types[i];
        outd[i].data = kinds[i] == G4_TK_ROPE && rope ? rope : NULL;   /* the target's factors as they are */
        outd[i].nbytes = g4_row_size(types[i], outd[i].ne[0]) * (size_t)(outd[i].ne[1] * outd[i].ne[2]);
        if (outd[i].ne[0] > max_row) max_row = outd[i].ne[0];
    }
    int nth = o->n_threads > 0 ? o->n_threads : 1;
    sc = (synth_ctx){ .seed = o->seed ^ 0xa55157a47ull, .kinds = kinds, .src = f->tensors, .types = types,
                      .p = &tp, .row = malloc((size_t)nth * (size_t)max_row * sizeof(float)), .max_row = max_row,
                      .pool = g4_pool_new(nth) };
    if (!sc.row || !sc.pool) { g4_seterr(err, "out of memory"); goto done; }
    g4_gguf_write_opts wo = { .tensors = outd, .n_tensors = f->n_tensors, .fill = fill, .ud = &sc,
                              .force = o->force, .progress_fn = o->progress, .progress_ud = o->progress_ud };
    rc = g4_gguf_write_ex(f, out_path, &wo, err);
done:
    if (sc.pool) g4_pool_free(sc.pool);
    free(sc.row);
    free(outd);
    free(types);
    free(kinds);
    g4_gguf_close(f);
    return rc;
}
