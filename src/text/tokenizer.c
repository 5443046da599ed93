/* Gemma 4 BPE tokenizer. See tokenizer.h for the algorithm and policies.
 *
 * Data layout: all piece strings live in one arena; a power-of-two open
 * addressing table maps piece bytes -> id, a second one maps the id pair of a
 * merge -> (rank, merged id). Merging runs on a doubly linked list of symbols
 * with a binary heap of candidate pairs keyed by (rank, position), so a run of
 * n characters costs O(n log n) whatever its length (no quadratic rescans). */
#include "text/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arch/markers.h"
#include "format/gguf.h"
#include "util/esc.h"

#define MAX_VOCAB (1 << 24)       /* sanity bound on ids from files */
#define MAX_PIECE (1 << 16)       /* longest piece accepted, in bytes */

struct g4_tokenizer {
    int32_t n;
    char *arena;
    uint32_t *off;                  /* piece i is arena[off[i] .. off[i] + len[i]) */
    uint32_t *len;
    uint8_t *type;
    uint8_t *match;
    uint8_t *eog;
    uint8_t *byteval;               /* BYTE tokens: the byte they stand for */
    uint32_t *hslot;                /* id + 1, 0 = empty */
    size_t hmask;
    /* Merges by left id (CSR): the merges whose left part is piece a are
     * ment[moff[a] .. moff[a + 1]), sorted by right id. 12 bytes a merge
     * plus 4 a piece: 7.2 MB for Gemma's 514,906 merges, where an open
     * addressing table at half load took 16 MB (memory the edge budget of a
     * small board counts: include/gemma4c.h). */
    struct mslot { int32_t right; uint32_t rank; int32_t result; } *ment;
    uint32_t *moff;
    size_t n_merges;
    /* Per left id, a 64-bit filter of the right ids it merges with (bit
     * right % 64): most failed lookups stop here, in 2 MB that stays in
     * cache, before the binary search. */
    uint64_t *mfilter;
    int32_t byte_id[256];
    int32_t *bmp_id;                /* single-codepoint pieces, U+0000..U+FFFF */
    /* Whole-token matching: a byte trie of every matchable token, so the
     * longest match at a position costs one step per byte (no probing of
     * every candidate length). Children are sibling lists; the first level is
     * indexed by byte. */
    struct tnode { int32_t child, sibling, id; uint8_t byte; } *trie;
    size_t trie_n, trie_cap;
    int32_t trie_root[256];
    bool has_always;                /* any G4_MATCH_ALWAYS token */
    int32_t bos, eos, unk, pad;
};

/* ------------------------------------------------------------------------ */
/* hashing                                                                   */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 0x100000001b3ull; }
    return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

static int32_t find_piece(const g4_tokenizer *t, const char *s, size_t n) {
    size_t i = hash_bytes(s, n) & t->hmask;
    for (;;) {
        uint32_t v = t->hslot[i];
        if (!v) return -1;
        int32_t id = (int32_t)(v - 1);
        if (t->len[id] == n && memcmp(t->arena + t->off[id], s, n) == 0) return id;
        i = (i + 1) & t->hmask;
    }
}

static const struct mslot *find_merge(const g4_tokenizer *t, int32_t a, int32_t b) {
    if (!(t->mfilter[a] >> (b & 63) & 1)) return NULL;
    uint32_t lo = t->moff[a], hi = t->moff[a + 1];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->ment[mid].right < b) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->moff[a + 1] && t->ment[lo].right == b ? &t->ment[lo] : NULL;
}

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                     */

/* Length of the valid UTF-8 sequence at s (strict: no overlongs, surrogates
 * or code points above U+10FFFF); 0 if the bytes there are not one. */
static size_t utf8_seq(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len; uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* ------------------------------------------------------------------------ */
/* construction                                                              */

void g4_tokenizer_free(g4_tokenizer *t) {
    if (!t) return;
    free(t->arena); free(t->off); free(t->len); free(t->type); free(t->match);
    free(t->eog); free(t->byteval); free(t->hslot); free(t->ment); free(t->moff); free(t->bmp_id);
    free(t->mfilter);
    free(t->trie);
    free(t);
}

typedef struct mpair { const char *l; size_t ll; const char *r; size_t rl; } mpair;

static int parse_hex_byte(const char *s, size_t n) {
    /* "<0xHH>" with upper- or lower-case hex */
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int32_t trie_new(g4_tokenizer *t, uint8_t byte) {
    if (t->trie_n == t->trie_cap) {
        size_t nc = t->trie_cap ? t->trie_cap * 2 : 1024;
        struct tnode *p = realloc(t->trie, nc * sizeof *p);
        if (!p) return -1;
        t->trie = p;
        t->trie_cap = nc;
    }
    struct tnode *nd = &t->trie[t->trie_n];
    nd->child = nd->sibling = nd->id = -1;
    nd->byte = byte;
    return (int32_t)t->trie_n++;
}

static int trie_add(g4_tokenizer *t, const char *s, size_t l, int32_t id) {
    uint8_t b0 = (uint8_t)s[0];
    if (t->trie_root[b0] < 0 && (t->trie_root[b0] = trie_new(t, b0)) < 0) return -1;
    int32_t nd = t->trie_root[b0];
    for (size_t k = 1; k < l; k++) {
        uint8_t b = (uint8_t)s[k];
        int32_t c = t->trie[nd].child;
        while (c >= 0 && t->trie[c].byte != b) c = t->trie[c].sibling;
        if (c < 0) {
            if ((c = trie_new(t, b)) < 0) return -1;
            t->trie[c].sibling = t->trie[nd].child;
            t->trie[nd].child = c;
        }
        nd = c;
    }
    if (t->trie[nd].id < 0) t->trie[nd].id = id;
    return 0;
}

/* Longest matchable token at s[0..n); returns its id and sets *len, or -1. */
static int32_t trie_match(const g4_tokenizer *t, const char *s, size_t n, bool special, size_t *len) {
    int32_t nd = t->trie_root[(uint8_t)s[0]], best = -1;
    for (size_t k = 1;; k++) {
        int32_t id = t->trie[nd].id;
        if (id >= 0 && (t->match[id] == G4_MATCH_ALWAYS || (special && t->match[id] == G4_MATCH_SPECIAL))) {
            best = id;
            *len = k;
        }
        if (k >= n) break;
        uint8_t b = (uint8_t)s[k];
        int32_t c = t->trie[nd].child;
        while (c >= 0 && t->trie[c].byte != b) c = t->trie[c].sibling;
        if (c < 0) break;
        nd = c;
    }
    return best;
}

/* Core constructor; merges as already-split pairs. */
static g4_tokenizer *build(const g4_tok_vocab *v, const mpair *mp, size_t n_mp, g4_error *err) {
    if (!v || !v->tokens || v->n_tokens == 0)
        return g4_seterr(err, "tokenizer: empty vocabulary"), NULL;
    if (v->n_tokens > MAX_VOCAB)
        return g4_seterr(err, "tokenizer: vocabulary of %zu tokens exceeds %d", v->n_tokens,
                         MAX_VOCAB), NULL;
    g4_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return g4_seterr(err, "tokenizer: out of memory"), NULL;
    size_t n = v->n_tokens;
    t->n = (int32_t)n;
    t->off = malloc(n * sizeof *t->off);
    t->len = malloc(n * sizeof *t->len);
    t->type = malloc(n);
    t->match = malloc(n);
    t->eog = calloc(n, 1);
    t->byteval = calloc(n, 1);
    t->hmask = pow2_at_least(n + n / 2) - 1;   /* load 0.5-0.67: short probes, 2 MB for 262,144 */
    t->hslot = calloc(t->hmask + 1, sizeof *t->hslot);
    t->bmp_id = malloc(0x10000 * sizeof *t->bmp_id);
    if (!t->off || !t->len || !t->type || !t->match || !t->eog || !t->byteval || !t->hslot ||
        !t->bmp_id)
        goto oom;

    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!v->tokens[i]) { g4_seterr(err, "tokenizer: token %zu is NULL", i); goto fail; }
        size_t l = v->token_lens ? v->token_lens[i] : strlen(v->tokens[i]);
        if (l > MAX_PIECE) {
            g4_seterr(err, "tokenizer: token %zu is %zu bytes long (max %d)", i, l, MAX_PIECE);
            goto fail;
        }
        t->len[i] = (uint32_t)l;
        total += l;
    }
    if (total > UINT32_MAX) {
        g4_seterr(err, "tokenizer: the pieces total %zu bytes (max %u)", total, UINT32_MAX);
        goto fail;
    }
    t->arena = malloc(total + 1);
    if (!t->arena) goto oom;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(t->arena + pos, v->tokens[i], t->len[i]);
        t->off[i] = (uint32_t)pos;
        pos += t->len[i];
    }

    for (int b = 0; b < 256; b++) t->byte_id[b] = t->trie_root[b] = -1;
    for (size_t i = 0; i < 0x10000; i++) t->bmp_id[i] = -1;
    for (size_t i = 0; i < n; i++) {
        const char *s = t->arena + t->off[i];
        size_t l = t->len[i];
        int hb = parse_hex_byte(s, l);
        int ty;
        if (v->types) {
            ty = v->types[i];
            if (ty < G4_TOK_NORMAL || ty > G4_TOK_BYTE) {
                g4_seterr(err, "tokenizer: token %zu has invalid type %d", i, ty);
                goto fail;
            }
            if (ty == G4_TOK_BYTE && hb < 0) {
                g4_seterr(err, "tokenizer: token %zu is of type BYTE but is not <0xHH>", i);
                goto fail;
            }
        } else {
            ty = hb >= 0 ? G4_TOK_BYTE : G4_TOK_NORMAL;
        }
        t->type[i] = (uint8_t)ty;
        if (ty == G4_TOK_BYTE) t->byteval[i] = (uint8_t)hb;
        uint8_t m;
        if (v->match) {
            m = v->match[i];
            if (m > G4_MATCH_ALWAYS) {
                g4_seterr(err, "tokenizer: token %zu has invalid match policy %d", i, m);
                goto fail;
            }
        } else {
            m = (ty == G4_TOK_CONTROL || ty == G4_TOK_USER_DEFINED || ty == G4_TOK_UNKNOWN)
                    ? G4_MATCH_SPECIAL : G4_MATCH_NEVER;
        }
        if (l == 0) m = G4_MATCH_NEVER;
        t->match[i] = m;
        if (l == 0) continue;  /* empty pieces are never looked up */
        /* first occurrence of a string wins */
        size_t h = hash_bytes(s, l) & t->hmask;
        int dup = 0;
        while (t->hslot[h]) {
            int32_t o = (int32_t)(t->hslot[h] - 1);
            if (t->len[o] == l && memcmp(t->arena + t->off[o], s, l) == 0) { dup = 1; break; }
            h = (h + 1) & t->hmask;
        }
        if (dup) continue;
        t->hslot[h] = (uint32_t)i + 1;
        uint32_t cp;
        if (utf8_seq((const uint8_t *)s, l, &cp) == l && cp < 0x10000) t->bmp_id[cp] = (int32_t)i;
        if (m != G4_MATCH_NEVER) {
            if (trie_add(t, s, l, (int32_t)i)) goto oom;
            if (m == G4_MATCH_ALWAYS) t->has_always = true;
        }
    }
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        t->byte_id[b] = find_piece(t, buf, 6);
    }

    /* Merges: a pair whose parts or result are not pieces can never fire in
     * an id-based merge, so it is dropped (Hugging Face refuses such files;
     * llama.cpp would keep them but its vocabularies do not contain any). A
     * repeated pair keeps its first (best) rank. */
    if (n_mp > (size_t)INT32_MAX) { g4_seterr(err, "tokenizer: %zu merges is too many", n_mp); goto fail; }
    /* Two passes: the valid merges as (left, right, rank, result) in rank
     * order, counted per left id; then placed by left id (counting sort,
     * stable, so each group stays in rank order), each group sorted by right
     * id, a repeated pair keeping its first rank. */
    struct mfull { int32_t left; struct mslot m; } *tmp = n_mp ? malloc(n_mp * sizeof *tmp) : NULL;
    t->moff = calloc(n + 1, sizeof *t->moff);
    t->mfilter = calloc(n, sizeof *t->mfilter);
    if ((n_mp && !tmp) || !t->moff || !t->mfilter) { free(tmp); goto oom; }
    size_t nv = 0;
    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t r = 0; r < n_mp; r++) {
        int32_t a = find_piece(t, mp[r].l, mp[r].ll), b = find_piece(t, mp[r].r, mp[r].rl);
        if (a < 0 || b < 0) continue;
        size_t cl = mp[r].ll + mp[r].rl;
        if (cl > cat_cap) {
            char *p = realloc(cat, cl);
            if (!p) { free(cat); free(tmp); goto oom; }
            cat = p; cat_cap = cl;
        }
        memcpy(cat, mp[r].l, mp[r].ll);
        memcpy(cat + mp[r].ll, mp[r].r, mp[r].rl);
        int32_t c = find_piece(t, cat, cl);
        if (c < 0) continue;
        tmp[nv++] = (struct mfull){ a, { b, (uint32_t)r, c } };
        t->moff[a + 1]++;
    }
    free(cat);
    for (size_t i = 0; i < n; i++) t->moff[i + 1] += t->moff[i];
    t->ment = malloc((nv ? nv : 1) * sizeof *t->ment);
    if (!t->ment) { free(tmp); goto oom; }
    {
        uint32_t *fill = t->moff;                 /* moff[a] advances as group a fills */
        for (size_t i = 0; i < nv; i++) t->ment[fill[tmp[i].left]++] = tmp[i].m;
        /* now moff[a] is group a's end = group a + 1's start: shift back */
        memmove(t->moff + 1, t->moff, n * sizeof *t->moff);
        t->moff[0] = 0;
    }
    free(tmp);
    uint32_t w = 0;
    for (size_t a = 0; a < n; a++) {
        uint32_t lo = t->moff[a], hi = t->moff[a + 1];
        t->moff[a] = w;
        /* insertion sort by (right, rank): groups are short (2 on average;
         * the longest few hundred), and rank order is already there */
        for (uint32_t i = lo + 1; i < hi; i++) {
            struct mslot x = t->ment[i];
            uint32_t j = i;
            while (j > lo && t->ment[j - 1].right > x.right) { t->ment[j] = t->ment[j - 1]; j--; }
            t->ment[j] = x;
        }
        for (uint32_t i = lo; i < hi; i++) {
            if (w > t->moff[a] && t->ment[w - 1].right == t->ment[i].right) continue;
            t->ment[w++] = t->ment[i];
            t->mfilter[a] |= (uint64_t)1 << (t->ment[i].right & 63);
        }
    }
    t->moff[n] = w;
    t->n_merges = w;

    int32_t ids[4] = { v->bos, v->eos, v->unk, v->pad };
    const char *names[4] = { "bos", "eos", "unk", "pad" };
    for (int k = 0; k < 4; k++)
        if (ids[k] < -1 || ids[k] >= t->n) {
            g4_seterr(err, "tokenizer: %s id %d out of range [0, %d)", names[k], ids[k], t->n);
            goto fail;
        }
    t->bos = v->bos; t->eos = v->eos; t->unk = v->unk; t->pad = v->pad;

    if (t->eos >= 0) t->eog[t->eos] = 1;
    /* Gemma 4's end-of-generation markers, found by text (arch/markers.h) */
    for (size_t k = 0; k < g4_n_markers; k++) {
        if (!(g4_markers[k].flags & G4_MKF_EOG)) continue;
        int32_t id = find_piece(t, g4_markers[k].s, strlen(g4_markers[k].s));
        if (id >= 0) t->eog[id] = 1;
    }
    for (size_t k = 0; k < v->n_eog_ids; k++) {
        int32_t id = v->eog_ids[k];
        if (id < 0 || id >= t->n) {
            g4_seterr(err, "tokenizer: end-of-generation id %d out of range", id);
            goto fail;
        }
        t->eog[id] = 1;
    }
    /* llama.cpp drops </s> from Gemma 4's EOG set: it is ordinary text there */
    int32_t es = find_piece(t, "</s>", 4);
    if (es >= 0 && es != t->eos) t->eog[es] = 0;
    return t;

oom:
    g4_seterr(err, "tokenizer: out of memory");
fail:
    g4_tokenizer_free(t);
    return NULL;
}

/* Split "left right" at the first space after position 0. */
static int split_merge(const char *s, size_t i, mpair *out, g4_error *err) {
    size_t n = strlen(s);
    const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
    if (!sp) return g4_seterr(err, "tokenizer: merge %zu (\"%s\") has no space", i, G4_ESC(s));
    out->l = s; out->ll = (size_t)(sp - s);
    out->r = sp + 1; out->rl = n - out->ll - 1;
    return 0;
}

g4_tokenizer *g4_tokenizer_create(const g4_tok_vocab *v, g4_error *err) {
    if (!v) return g4_seterr(err, "tokenizer: no vocabulary"), NULL;
    mpair *mp = NULL;
    if (v->n_merges) {
        if (!v->merges) return g4_seterr(err, "tokenizer: merges missing"), NULL;
        mp = malloc(v->n_merges * sizeof *mp);
        if (!mp) return g4_seterr(err, "tokenizer: out of memory"), NULL;
        for (size_t i = 0; i < v->n_merges; i++) {
            if (!v->merges[i]) { free(mp); return g4_seterr(err, "tokenizer: merge %zu NULL", i), NULL; }
            if (split_merge(v->merges[i], i, &mp[i], err)) { free(mp); return NULL; }
        }
    }
    g4_tokenizer *t = build(v, mp, v->n_merges, err);
    free(mp);
    return t;
}

/* ------------------------------------------------------------------------ */
/* GGUF                                                                      */

static int gguf_opt_id(const struct g4_gguf_file *f, const char *key, int32_t *out, g4_error *err) {
    int64_t v;
    int r = g4_gguf_get_i64(f, key, &v, err);
    if (r < 0) return -1;
    if (r == 1) { *out = -1; return 0; }
    if (v < -1 || v > INT32_MAX) return g4_seterr(err, "%s = %lld out of range", key, (long long)v);
    *out = (int32_t)v;
    return 0;
}

g4_tokenizer *g4_tokenizer_from_gguf(const struct g4_gguf_file *f, g4_error *err) {
    char *model = NULL;
    int r = g4_gguf_get_str(f, "tokenizer.ggml.model", &model, err);
    if (r < 0) return NULL;
    if (r == 1) return g4_seterr(err, "tokenizer.ggml.model missing (no tokenizer in this file)"), NULL;
    if (strcmp(model, "gemma4") != 0) {
        g4_seterr(err, "tokenizer.ggml.model is \"%s\"; only \"gemma4\" is supported", G4_ESC(model));
        free(model);
        return NULL;
    }
    free(model);

    const g4_gguf_kv *kt = g4_gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (!kt || kt->type != GGUF_ARRAY || kt->arr_type != GGUF_STRING)
        return g4_seterr(err, "tokenizer.ggml.tokens missing or not a string array"), NULL;
    if (kt->arr_n == 0 || kt->arr_n > MAX_VOCAB)
        return g4_seterr(err, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)kt->arr_n), NULL;
    size_t n = (size_t)kt->arr_n;
    const g4_gguf_kv *ky = g4_gguf_find_kv(f, "tokenizer.ggml.token_type");
    if (ky && (ky->type != GGUF_ARRAY || ky->arr_type == GGUF_STRING || ky->arr_n != n))
        return g4_seterr(err, "tokenizer.ggml.token_type must be a numeric array of %zu", n), NULL;
    const g4_gguf_kv *km = g4_gguf_find_kv(f, "tokenizer.ggml.merges");
    if (km && (km->type != GGUF_ARRAY || km->arr_type != GGUF_STRING))
        return g4_seterr(err, "tokenizer.ggml.merges is not a string array"), NULL;
    const g4_gguf_kv *ke = g4_gguf_find_kv(f, "tokenizer.ggml.eos_token_ids");
    if (ke && (ke->type != GGUF_ARRAY || ke->arr_type == GGUF_STRING || ke->arr_n > 64))
        return g4_seterr(err, "tokenizer.ggml.eos_token_ids must be a short numeric array"), NULL;

    g4_tok_vocab v = {0};
    g4_tokenizer *t = NULL;
    const char **toks = malloc(n * sizeof *toks);
    size_t *lens = malloc(n * sizeof *lens);
    int32_t *types = ky ? malloc(n * sizeof *types) : NULL;
    size_t nm = km ? (size_t)km->arr_n : 0;
    mpair *mp = nm ? malloc(nm * sizeof *mp) : NULL;
    int32_t eog[64];
    if (!toks || !lens || (ky && !types) || (nm && !mp)) { g4_seterr(err, "tokenizer: out of memory"); goto done; }
    g4_gguf_str_iter it;
    g4_gguf_str_iter_init(&it, kt);
    for (size_t i = 0; i < n; i++) {
        g4_gguf_str st;
        if (g4_gguf_str_iter_next(&it, &st) != 1) {
            g4_seterr(err, "tokenizer.ggml.tokens[%zu] is not a string", i);
            goto done;
        }
        toks[i] = st.ptr ? st.ptr : "";
        lens[i] = st.ptr ? (size_t)st.len : 0;
        if (ky) {
            int64_t ty = g4_gguf_arr_i64(ky, i);
            if (ty < G4_TOK_NORMAL || ty > G4_TOK_BYTE) {
                g4_seterr(err, "tokenizer.ggml.token_type[%zu] = %lld is not a valid type", i, (long long)ty);
                goto done;
            }
            types[i] = (int32_t)ty;
        }
    }
    if (km) g4_gguf_str_iter_init(&it, km);
    for (size_t i = 0; i < nm; i++) {
        g4_gguf_str st;
        if (g4_gguf_str_iter_next(&it, &st) != 1) {
            g4_seterr(err, "tokenizer.ggml.merges[%zu] is not a string", i);
            goto done;
        }
        const g4_gguf_str *s = &st;
        const char *sp = s->ptr && s->len > 1 ? memchr(s->ptr + 1, ' ', (size_t)s->len - 1) : NULL;
        if (!sp) { g4_seterr(err, "tokenizer.ggml.merges[%zu] has no space", i); goto done; }
        mp[i].l = s->ptr; mp[i].ll = (size_t)(sp - s->ptr);
        mp[i].r = sp + 1; mp[i].rl = (size_t)s->len - mp[i].ll - 1;
    }
    v.n_tokens = n; v.tokens = toks; v.token_lens = lens; v.types = types;
    if (gguf_opt_id(f, "tokenizer.ggml.bos_token_id", &v.bos, err) ||
        gguf_opt_id(f, "tokenizer.ggml.eos_token_id", &v.eos, err) ||
        gguf_opt_id(f, "tokenizer.ggml.unknown_token_id", &v.unk, err) ||
        gguf_opt_id(f, "tokenizer.ggml.padding_token_id", &v.pad, err))
        goto done;
    if (ke) {
        for (size_t i = 0; i < ke->arr_n; i++) {
            int64_t id = g4_gguf_arr_i64(ke, i);
            if (id < 0 || id >= (int64_t)n) {
                g4_seterr(err, "tokenizer.ggml.eos_token_ids[%zu] = %lld out of range", i, (long long)id);
                goto done;
            }
            eog[i] = (int32_t)id;
        }
        v.eog_ids = eog;
        v.n_eog_ids = (size_t)ke->arr_n;
    }
    t = build(&v, mp, nm, err);
done:
    free(toks); free(lens); free(types); free(mp);
    return t;
}

/* ------------------------------------------------------------------------ */
/* Hugging Face tokenizer.json                                               */

/* --- fast path for tokenizer.json's two big members ------------------------
 * model.vocab (262,144 keys) and model.merges (514,906 pairs) are most of the
 * file; building them as jansson values costs seconds of allocation. They are
 * located with a light structural scan and parsed here directly (strings are
 * unescaped in place in the file buffer); the rest of the document, with
 * those two values replaced by {} and [], goes through jansson as before,
 * which also validates it. If the scan fails the whole file goes through
 * jansson, which reports the error. */

static char *read_file(const char *path, size_t *len, g4_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return g4_seterr(err, "%s: cannot open", path), NULL;
    char *b = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || n > (1L << 30) || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return g4_seterr(err, "%s: not a readable file of at most 1 GiB", path), NULL;
    }
    b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        return g4_seterr(err, "%s: read failed", path), NULL;
    }
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

typedef struct jscan { char *p, *end; int depth; const char *why; } jscan;
typedef struct ventry { const char *s; size_t l; int64_t id; } ventry;

static void js_ws(jscan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static int js_hex4(jscan *s, uint32_t *u) {
    if (s->end - s->p < 4) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s->p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + (uint32_t)d;
    }
    s->p += 4;
    *u = v;
    return 0;
}

/* The string at s->p, unescaped in place (never longer than its source). */
static char *js_string(jscan *s, size_t *len) {
    if (s->p >= s->end || *s->p != '"') { s->why = "expected a string"; return NULL; }
    char *r = ++s->p, *w = r;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') { s->p++; *len = (size_t)(w - r); return r; }
        if (c < 0x20) { s->why = "control character in a string"; return NULL; }
        if (c != '\\') { *w++ = *s->p++; continue; }
        if (s->end - s->p < 2) break;
        char e = s->p[1];
        s->p += 2;
        uint32_t u;
        switch (e) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
            if (js_hex4(s, &u)) { s->why = "bad \\u escape"; return NULL; }
            if (u >= 0xD800 && u <= 0xDBFF) {
                uint32_t lo;
                if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u') { s->why = "lone surrogate"; return NULL; }
                s->p += 2;
                if (js_hex4(s, &lo) || lo < 0xDC00 || lo > 0xDFFF) { s->why = "lone surrogate"; return NULL; }
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                s->why = "lone surrogate";
                return NULL;
            }
            if (u < 0x80) *w++ = (char)u;
            else if (u < 0x800) { *w++ = (char)(0xC0 | (u >> 6)); *w++ = (char)(0x80 | (u & 0x3F)); }
            else if (u < 0x10000) {
                *w++ = (char)(0xE0 | (u >> 12)); *w++ = (char)(0x80 | ((u >> 6) & 0x3F));
                *w++ = (char)(0x80 | (u & 0x3F));
            } else {
                *w++ = (char)(0xF0 | (u >> 18)); *w++ = (char)(0x80 | ((u >> 12) & 0x3F));
                *w++ = (char)(0x80 | ((u >> 6) & 0x3F)); *w++ = (char)(0x80 | (u & 0x3F));
            }
            break;
        default: s->why = "bad escape"; return NULL;
        }
    }
    s->why = "unterminated string";
    return NULL;
}

/* Skip one value without interpreting it (jansson validates what is kept). */
static int js_skip(jscan *s) {
    js_ws(s);
    if (s->p >= s->end) return -1;
    char c = *s->p;
    if (c == '"') {
        for (s->p++; s->p < s->end; s->p++) {
            if (*s->p == '\\') { s->p++; continue; }
            if (*s->p == '"') { s->p++; return 0; }
        }
        return -1;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        if (++s->depth > 64) return -1;
        s->p++;
        js_ws(s);
        if (s->p < s->end && *s->p == close) { s->p++; s->depth--; return 0; }
        for (;;) {
            if (c == '{') {
                js_ws(s);
                if (js_skip(s)) return -1;   /* key */
                js_ws(s);
                if (s->p >= s->end || *s->p != ':') return -1;
                s->p++;
            }
            if (js_skip(s)) return -1;
            js_ws(s);
            if (s->p >= s->end) return -1;
            if (*s->p == ',') { s->p++; continue; }
            if (*s->p == close) { s->p++; s->depth--; return 0; }
            return -1;
        }
    }
    const char *st = s->p;
    while (s->p < s->end && (strchr("+-.eE", *s->p) || (*s->p >= '0' && *s->p <= '9') ||
                             (*s->p >= 'a' && *s->p <= 'z')))
        s->p++;
    return s->p > st ? 0 : -1;
}

/* Find the spans of model.vocab and model.merges. 0 on success. */
static int js_locate(char *buf, size_t n, char **vb, char **ve, char **mb, char **me) {
    jscan s = { buf, buf + n, 0, NULL };
    *vb = *ve = *mb = *me = NULL;
    js_ws(&s);
    if (s.p >= s.end || *s.p != '{') return -1;
    s.p++;
    for (;;) {
        js_ws(&s);
        if (s.p < s.end && *s.p == '}') return 0;
        char *k = s.p;
        if (js_skip(&s)) return -1;
        size_t kl = (size_t)(s.p - k);
        js_ws(&s);
        if (s.p >= s.end || *s.p != ':') return -1;
        s.p++;
        js_ws(&s);
        if (kl == 7 && !memcmp(k, "\"model\"", 7) && s.p < s.end && *s.p == '{') {
            s.p++;
            for (;;) {
                js_ws(&s);
                if (s.p < s.end && *s.p == '}') { s.p++; break; }
                char *mk = s.p;
                if (js_skip(&s)) return -1;
                size_t mkl = (size_t)(s.p - mk);
                js_ws(&s);
                if (s.p >= s.end || *s.p != ':') return -1;
                s.p++;
                js_ws(&s);
                char *vs = s.p;
                if (js_skip(&s)) return -1;
                if (mkl == 7 && !memcmp(mk, "\"vocab\"", 7)) { *vb = vs; *ve = s.p; }
                if (mkl == 8 && !memcmp(mk, "\"merges\"", 8)) { *mb = vs; *me = s.p; }
                js_ws(&s);
                if (s.p < s.end && *s.p == ',') { s.p++; continue; }
                if (s.p < s.end && *s.p == '}') { s.p++; break; }
                return -1;
            }
        } else if (js_skip(&s)) {
            return -1;
        }
        js_ws(&s);
        if (s.p < s.end && *s.p == ',') { s.p++; continue; }
        if (s.p < s.end && *s.p == '}') return 0;
        return -1;
    }
}

/* model.vocab: {"piece": id, ...} */
static int js_vocab(char *b, char *e, ventry **out, size_t *nout, const char **why) {
    jscan s = { b, e, 0, NULL };
    size_t cap = 0, n = 0;
    ventry *v = NULL;
    s.p++;   /* '{' */
    js_ws(&s);
    if (s.p < s.end && *s.p == '}') { *out = NULL; *nout = 0; return 0; }
    for (;;) {
        js_ws(&s);
        size_t l;
        char *k = js_string(&s, &l);
        if (!k) goto bad;
        js_ws(&s);
        if (s.p >= s.end || *s.p != ':') { s.why = "expected ':'"; goto bad; }
        s.p++;
        js_ws(&s);
        int neg = s.p < s.end && *s.p == '-';
        if (neg) s.p++;
        int64_t id = 0;
        const char *d0 = s.p;
        while (s.p < s.end && *s.p >= '0' && *s.p <= '9' && id < ((int64_t)1 << 40)) id = id * 10 + (*s.p++ - '0');
        if (s.p == d0 || (s.p < s.end && (*s.p == '.' || *s.p == 'e' || *s.p == 'E' || (*s.p >= '0' && *s.p <= '9')))) {
            s.why = "ids must be integers";
            goto bad;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 4096;
            ventry *q = realloc(v, nc * sizeof *q);
            if (!q) { s.why = "out of memory"; goto bad; }
            v = q; cap = nc;
        }
        v[n].s = k; v[n].l = l; v[n].id = neg ? -id : id;
        n++;
        js_ws(&s);
        if (s.p < s.end && *s.p == ',') { s.p++; continue; }
        if (s.p < s.end && *s.p == '}') break;
        s.why = "expected ',' or '}'";
        goto bad;
    }
    *out = v;
    *nout = n;
    return 0;
bad:
    free(v);
    *why = s.why;
    *nout = n;   /* index of the bad entry */
    return -1;
}

/* model.merges: ["a b", ...] or [["a", "b"], ...] */
static int js_merges(char *b, char *e, mpair **out, size_t *nout, const char **why) {
    jscan s = { b, e, 0, NULL };
    size_t cap = 0, n = 0;
    mpair *m = NULL;
    s.p++;   /* '[' */
    js_ws(&s);
    if (s.p < s.end && *s.p == ']') { *out = NULL; *nout = 0; return 0; }
    for (;;) {
        js_ws(&s);
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 4096;
            mpair *q = realloc(m, nc * sizeof *q);
            if (!q) { s.why = "out of memory"; goto bad; }
            m = q; cap = nc;
        }
        if (s.p < s.end && *s.p == '"') {
            size_t l;
            char *x = js_string(&s, &l);
            if (!x) goto bad;
            char *sp = l > 1 ? memchr(x + 1, ' ', l - 1) : NULL;
            if (!sp) { s.why = "a merge has no space"; goto bad; }
            m[n].l = x; m[n].ll = (size_t)(sp - x); m[n].r = sp + 1; m[n].rl = l - m[n].ll - 1;
        } else if (s.p < s.end && *s.p == '[') {
            s.p++;
            js_ws(&s);
            char *x = js_string(&s, &m[n].ll);
            if (!x) goto bad;
            js_ws(&s);
            if (s.p >= s.end || *s.p != ',') { s.why = "a merge pair needs two strings"; goto bad; }
            s.p++;
            js_ws(&s);
            char *y = js_string(&s, &m[n].rl);
            if (!y) goto bad;
            js_ws(&s);
            if (s.p >= s.end || *s.p != ']') { s.why = "a merge pair needs two strings"; goto bad; }
            s.p++;
            m[n].l = x; m[n].r = y;
        } else {
            s.why = "a merge is neither \"a b\" nor [a, b]";
            goto bad;
        }
        n++;
        js_ws(&s);
        if (s.p < s.end && *s.p == ',') { s.p++; continue; }
        if (s.p < s.end && *s.p == ']') break;
        s.why = "expected ',' or ']'";
        goto bad;
    }
    *out = m;
    *nout = n;
    return 0;
bad:
    free(m);
    *why = s.why;
    *nout = n;   /* index of the bad entry */
    return -1;
}

/* {"type": "Replace", "pattern": {"String": " "}, "content": "▁"} */
static bool is_space_replace(json_t *n) {
    json_t *ty = json_object_get(n, "type"), *pat = json_object_get(n, "pattern");
    json_t *ps = json_object_get(pat, "String"), *ct = json_object_get(n, "content");
    return json_is_string(ty) && !strcmp(json_string_value(ty), "Replace") && json_is_string(ps) &&
           !strcmp(json_string_value(ps), " ") && json_is_string(ct) &&
           !strcmp(json_string_value(ct), "\xe2\x96\x81");
}

static const char *cfg_token_name(json_t *cfg, const char *key) {
    json_t *x = cfg ? json_object_get(cfg, key) : NULL;
    if (json_is_object(x)) x = json_object_get(x, "content");
    return json_is_string(x) ? json_string_value(x) : NULL;
}

g4_tokenizer *g4_tokenizer_from_hf_json(const char *json_path, const char *config_path,
                                        g4_error *err) {
    json_error_t je;
    size_t fn = 0;
    char *fbuf = read_file(json_path, &fn, err);
    if (!fbuf) return NULL;
    char *vb, *ve, *mb, *me;
    ventry *vent = NULL;
    size_t nv = 0;
    mpair *mp = NULL;
    size_t nm = 0;
    json_t *root = NULL;
    int fast = js_locate(fbuf, fn, &vb, &ve, &mb, &me) == 0 && vb && *vb == '{' &&
               (!mb || (mb > ve && *mb == '['));
    if (fast) {
        /* the document without the two big values, for jansson */
        size_t sl = (size_t)(vb - fbuf) + 2 + (mb ? (size_t)(mb - ve) + 2 + (size_t)(fbuf + fn - me)
                                                  : (size_t)(fbuf + fn - ve));
        char *small = malloc(sl);
        if (!small) { free(fbuf); return g4_seterr(err, "tokenizer: out of memory"), NULL; }
        size_t o = 0;
        memcpy(small, fbuf, (size_t)(vb - fbuf)); o += (size_t)(vb - fbuf);
        memcpy(small + o, "{}", 2); o += 2;
        if (mb) {
            memcpy(small + o, ve, (size_t)(mb - ve)); o += (size_t)(mb - ve);
            memcpy(small + o, "[]", 2); o += 2;
            memcpy(small + o, me, (size_t)(fbuf + fn - me)); o += (size_t)(fbuf + fn - me);
        } else {
            memcpy(small + o, ve, (size_t)(fbuf + fn - ve)); o += (size_t)(fbuf + fn - ve);
        }
        root = json_loadb(small, o, 0, &je);
        free(small);
    } else {
        root = json_loadb(fbuf, fn, 0, &je);
    }
    if (!root) {
        free(fbuf);
        return g4_seterr(err, "%s: line %d: %s", json_path, je.line, G4_ESC(je.text)), NULL;
    }
    json_t *cfg = NULL;
    g4_tokenizer *t = NULL;
    const char **toks = NULL;
    size_t *lens = NULL;
    int32_t *types = NULL;
    uint8_t *match = NULL;
    char *cfgpath_alloc = NULL;

    json_t *model = json_object_get(root, "model");
    json_t *mtype = json_object_get(model, "type");
    if (!json_is_object(model) || !json_is_string(mtype) || strcmp(json_string_value(mtype), "BPE")) {
        g4_seterr(err, "%s: model.type must be \"BPE\"", json_path);
        goto done;
    }
    /* Gemma's pipeline: spaces become "▁" (normalizer Replace, alone or in a
     * Sequence, or a Metaspace pre-tokenizer without a prefix), nothing else
     * changes the text. Anything else would silently give wrong ids. */
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        json_t *ty = json_object_get(norm, "type");
        json_t *list = json_is_string(ty) && !strcmp(json_string_value(ty), "Sequence")
                           ? json_object_get(norm, "normalizers") : NULL;
        size_t nn = list ? json_array_size(list) : 1;
        for (size_t k = 0; k < nn; k++) {
            json_t *nk = list ? json_array_get(list, k) : norm;
            if (!is_space_replace(nk)) {
                g4_seterr(err, "%s: unsupported normalizer (expected Replace \" \" -> \"\xe2\x96\x81\")",
                          json_path);
                goto done;
            }
        }
    }
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *pty = json_object_get(pre, "type"), *pps = json_object_get(pre, "prepend_scheme");
    if (json_is_string(pty) && !strcmp(json_string_value(pty), "Metaspace") &&
        (json_is_true(json_object_get(pre, "add_prefix_space")) ||
         (json_is_string(pps) && strcmp(json_string_value(pps), "never")))) {
        g4_seterr(err, "%s: pre_tokenizer adds a prefix space; Gemma 4 does not", json_path);
        goto done;
    }
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) { g4_seterr(err, "%s: model.vocab is not an object", json_path); goto done; }
    if (merges && !json_is_array(merges)) { g4_seterr(err, "%s: model.merges is not an array", json_path); goto done; }
    const char *why = NULL;
    if (fast) {
        if (js_vocab(vb, ve, &vent, &nv, &why)) {
            g4_seterr(err, "%s: model.vocab entry %zu: %s", json_path, nv, why);
            nv = 0;
            goto done;
        }
        if (mb && js_merges(mb, me, &mp, &nm, &why)) {
            g4_seterr(err, "%s: model.merges[%zu]: %s", json_path, nm, why);
            goto done;
        }
    } else {
        const char *key;
        json_t *val;
        vent = malloc((json_object_size(vocab) + 1) * sizeof *vent);
        if (!vent) { g4_seterr(err, "tokenizer: out of memory"); goto done; }
        json_object_foreach(vocab, key, val) {
            if (!json_is_integer(val)) {
                g4_seterr(err, "%s: model.vocab[\"%.40s\"] is not an id in [0, %d)", json_path, key, MAX_VOCAB);
                goto done;
            }
            vent[nv].s = key; vent[nv].l = strlen(key); vent[nv].id = json_integer_value(val);
            nv++;
        }
        nm = merges ? json_array_size(merges) : 0;
        if (nm && !(mp = malloc(nm * sizeof *mp))) { g4_seterr(err, "tokenizer: out of memory"); goto done; }
        for (size_t i = 0; i < nm; i++) {
            json_t *m = json_array_get(merges, i);
            if (json_is_string(m)) {      /* old format: "left right" */
                const char *ms = json_string_value(m);
                size_t sl = json_string_length(m);
                const char *sp = sl > 1 ? memchr(ms + 1, ' ', sl - 1) : NULL;
                if (!sp) { g4_seterr(err, "%s: model.merges[%zu] has no space", json_path, i); goto done; }
                mp[i].l = ms; mp[i].ll = (size_t)(sp - ms); mp[i].r = sp + 1; mp[i].rl = sl - mp[i].ll - 1;
            } else if (json_is_array(m) && json_array_size(m) == 2 &&
                       json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
                json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
                mp[i].l = json_string_value(a); mp[i].ll = json_string_length(a);
                mp[i].r = json_string_value(b); mp[i].rl = json_string_length(b);
            } else {
                g4_seterr(err, "%s: model.merges[%zu] is neither \"a b\" nor [a, b]", json_path, i);
                goto done;
            }
        }
    }
    if (added && !json_is_null(added) && !json_is_array(added)) {
        g4_seterr(err, "%s: added_tokens is not an array", json_path);
        goto done;
    }

    /* size = highest id + 1 over vocab and added tokens */
    int64_t maxid = -1;
    for (size_t i = 0; i < nv; i++) {
        if (vent[i].id < 0 || vent[i].id >= MAX_VOCAB) {
            g4_seterr(err, "%s: model.vocab[\"%.40s\"] is not an id in [0, %d)", json_path, vent[i].s, MAX_VOCAB);
            goto done;
        }
        if (vent[i].id > maxid) maxid = vent[i].id;
    }
    size_t na = json_is_array(added) ? json_array_size(added) : 0;
    for (size_t i = 0; i < na; i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        json_t *c = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_VOCAB ||
            !json_is_string(c)) {
            g4_seterr(err, "%s: added_tokens[%zu] needs an id in [0, %d) and a string content",
                      json_path, i, MAX_VOCAB);
            goto done;
        }
        if (json_integer_value(id) > maxid) maxid = json_integer_value(id);
    }
    if (maxid < 0) { g4_seterr(err, "%s: empty vocabulary", json_path); goto done; }
    /* ids may have gaps, but not so many that a tiny file allocates gigabytes */
    if ((size_t)maxid > 4 * (nv + na) + 1024) {
        g4_seterr(err, "%s: highest id %lld but only %zu tokens", json_path, (long long)maxid, nv + na);
        goto done;
    }
    size_t n = (size_t)maxid + 1;
    toks = calloc(n, sizeof *toks);
    lens = calloc(n, sizeof *lens);
    types = malloc(n * sizeof *types);
    match = calloc(n, 1);
    if (!toks || !lens || !types || !match) { g4_seterr(err, "tokenizer: out of memory"); goto done; }
    for (size_t i = 0; i < nv; i++) {
        size_t id = (size_t)vent[i].id;
        if (toks[id]) {
            g4_seterr(err, "%s: model.vocab gives id %zu to two pieces", json_path, id);
            goto done;
        }
        toks[id] = vent[i].s;
        lens[id] = vent[i].l;
        types[id] = parse_hex_byte(vent[i].s, vent[i].l) >= 0 ? G4_TOK_BYTE : G4_TOK_NORMAL;
    }
    for (size_t i = 0; i < na; i++) {
        json_t *a = json_array_get(added, i), *c = json_object_get(a, "content");
        size_t id = (size_t)json_integer_value(json_object_get(a, "id"));
        int special = json_is_true(json_object_get(a, "special"));
        toks[id] = json_string_value(c);
        lens[id] = json_string_length(c);
        if (special) {
            types[id] = G4_TOK_CONTROL;
            /* markers llama.cpp's converter marks USER_DEFINED: always
             * rendered when decoding, so output parsers see them */
            for (size_t k = 0; k < g4_n_markers; k++)
                if ((g4_markers[k].flags & G4_MKF_RENDERED) && !strcmp(toks[id], g4_markers[k].s))
                    types[id] = G4_TOK_USER_DEFINED;
            match[id] = G4_MATCH_SPECIAL;
        } else {
            /* HF splits non-special added tokens out of any text */
            types[id] = G4_TOK_USER_DEFINED;
            match[id] = G4_MATCH_ALWAYS;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!toks[i]) { toks[i] = ""; lens[i] = 0; types[i] = G4_TOK_UNUSED; }

    /* tokenizer_config.json only names the special tokens */
    if (!config_path) {
        const char *slash = strrchr(json_path, '/');
        size_t dl = slash ? (size_t)(slash - json_path) + 1 : 0;
        cfgpath_alloc = malloc(dl + 32);
        if (!cfgpath_alloc) { g4_seterr(err, "tokenizer: out of memory"); goto done; }
        memcpy(cfgpath_alloc, json_path, dl);
        strcpy(cfgpath_alloc + dl, "tokenizer_config.json");
        struct stat st;
        if (stat(cfgpath_alloc, &st) == 0) config_path = cfgpath_alloc;
    }
    if (config_path) {
        cfg = json_load_file(config_path, 0, &je);
        if (!cfg) { g4_seterr(err, "%s: line %d: %s", config_path, je.line, G4_ESC(je.text)); goto done; }
    }

    g4_tok_vocab v = {0};
    v.n_tokens = n; v.tokens = toks; v.token_lens = lens; v.types = types; v.match = match;
    v.bos = v.eos = v.unk = v.pad = -1;   /* set by name below */
    t = build(&v, mp, nm, err);
    if (!t) goto done;
    const char *want[4] = { cfg_token_name(cfg, "bos_token"), cfg_token_name(cfg, "eos_token"),
                            cfg_token_name(cfg, "unk_token"), cfg_token_name(cfg, "pad_token") };
    const char *dflt[4] = { G4_MK_BOS, G4_MK_EOS, G4_MK_UNK, G4_MK_PAD };
    json_t *munk = json_object_get(model, "unk_token");
    if (!want[2] && json_is_string(munk)) want[2] = json_string_value(munk);
    int32_t *slot[4] = { &t->bos, &t->eos, &t->unk, &t->pad };
    for (int k = 0; k < 4; k++) {
        const char *s = want[k] ? want[k] : dflt[k];
        *slot[k] = find_piece(t, s, strlen(s));
        if (want[k] && *slot[k] < 0) {
            g4_seterr(err, "%s: special token \"%s\" is not in the vocabulary",
                      config_path ? config_path : json_path, G4_ESC(s));
            g4_tokenizer_free(t);
            t = NULL;
            goto done;
        }
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
done:
    free(toks); free(lens); free(types); free(match); free(mp); free(cfgpath_alloc);
    free(vent);
    free(fbuf);
    json_decref(root);
    json_decref(cfg);
    return t;
}

g4_tokenizer *g4_tokenizer_load(const char *path, g4_error *err) {
    struct stat st;
    if (stat(path, &st) != 0) return g4_seterr(err, "%s: cannot open", path), NULL;
    if (S_ISDIR(st.st_mode)) {
        size_t n = strlen(path);
        char *p = malloc(n + 20);
        if (!p) return g4_seterr(err, "out of memory"), NULL;
        snprintf(p, n + 20, "%s/tokenizer.json", path);
        g4_tokenizer *t = g4_tokenizer_from_hf_json(p, NULL, err);
        free(p);
        return t;
    }
    char magic[4] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return g4_seterr(err, "%s: cannot open", path), NULL;
    size_t got = fread(magic, 1, 4, fp);
    fclose(fp);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        g4_gguf_file *f = g4_gguf_open(path, err);
        if (!f) return NULL;
        g4_tokenizer *t = g4_tokenizer_from_gguf(f, err);
        if (!t) g4_preferr(err, "%s", path);
        g4_gguf_close(f);   /* the tokenizer holds copies */
        return t;
    }
    return g4_tokenizer_from_hf_json(path, NULL, err);
}

/* ------------------------------------------------------------------------ */
/* encoding                                                                  */

void g4_tokens_free(g4_tokens *t) {
    if (!t) return;
    free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}

static int push_id(g4_tokens *o, int32_t id, g4_error *err) {
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        int32_t *p = realloc(o->ids, nc * sizeof *p);
        if (!p) return g4_seterr(err, "tokenizer: out of memory");
        o->ids = p;
        o->cap = nc;
    }
    o->ids[o->n++] = id;
    return 0;
}

typedef struct sym { uint32_t start, len; int32_t id, prev, next; } sym;
typedef struct cand { uint64_t key; int32_t left, right, result; uint32_t llen, rlen; } cand;

/* Scratch memory of one encode call. */
typedef struct work {
    char *buf; size_t buf_cap;      /* normalized fragment */
    sym *syms; size_t syms_cap;
    cand *heap; size_t heap_n, heap_cap;
} work;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static int heap_push(work *w, cand c) {
    if (grow((void **)&w->heap, &w->heap_cap, w->heap_n + 1, sizeof *w->heap)) return -1;
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p].key <= c.key) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
    return 0;
}

static cand heap_pop(work *w) {
    cand top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && w->heap[c + 1].key < w->heap[c].key) c++;
        if (last.key <= w->heap[c].key) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* Restore the heap order of all of w->heap (after unordered appends), O(n). */
static void heapify(work *w) {
    size_t n = w->heap_n;
    for (size_t s = n / 2; s-- > 0;) {
        cand c = w->heap[s];
        size_t i = s;
        for (;;) {
            size_t k = 2 * i + 1;
            if (k >= n) break;
            if (k + 1 < n && w->heap[k + 1].key < w->heap[k].key) k++;
            if (c.key <= w->heap[k].key) break;
            w->heap[i] = w->heap[k];
            i = k;
        }
        w->heap[i] = c;
    }
}

/* Queue the pair (a, b) if a merge exists for it; sift=false appends only
 * (the caller heapifies). */
static int try_pair(const g4_tokenizer *t, work *w, int32_t a, int32_t b, bool sift) {
    if (a < 0 || b < 0) return 0;
    const sym *sa = &w->syms[a], *sb = &w->syms[b];
    if (sa->id < 0 || sb->id < 0) return 0;
    const struct mslot *m = find_merge(t, sa->id, sb->id);
    if (!m) return 0;
    /* (rank, position): lowest rank first, leftmost on ties */
    cand c = { ((uint64_t)m->rank << 32) | sa->start, a, b, m->result, sa->len, sb->len };
    if (sift) return heap_push(w, c);
    if (grow((void **)&w->heap, &w->heap_cap, w->heap_n + 1, sizeof *w->heap)) return -1;
    w->heap[w->heap_n++] = c;
    return 0;
}

static int emit_symbol(const g4_tokenizer *t, const char *s, const sym *y, g4_tokens *out,
                       g4_error *err) {
    if (y->id >= 0) return push_id(out, y->id, err);
    /* byte fallback, all bytes or <unk> (as Hugging Face's BPE does) */
    int all = 1;
    for (uint32_t k = 0; k < y->len; k++)
        if (t->byte_id[(uint8_t)s[y->start + k]] < 0) all = 0;
    if (all) {
        for (uint32_t k = 0; k < y->len; k++)
            if (push_id(out, t->byte_id[(uint8_t)s[y->start + k]], err)) return -1;
        return 0;
    }
    if (t->unk < 0)
        return g4_seterr(err, "tokenizer: no token for byte 0x%02X and no <unk> token",
                         (uint8_t)s[y->start]);
    return push_id(out, t->unk, err);
}

/* BPE over one newline-free (or newline-only) run s[0..n). */
static int bpe_run(const g4_tokenizer *t, work *w, const char *s, size_t n, g4_tokens *out,
                   g4_error *err) {
    if (n == 0) return 0;
    if (s[0] == '\n') {
        /* a newline run that is a piece is emitted whole (llama.cpp PR 21343) */
        int32_t whole = find_piece(t, s, n);
        if (whole >= 0) return push_id(out, whole, err);
    }
    if (grow((void **)&w->syms, &w->syms_cap, n, sizeof *w->syms)) return g4_seterr(err, "tokenizer: out of memory");
    const uint8_t *u = (const uint8_t *)s;
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_seq(u + i, n - i, &cp);
        sym *y = &w->syms[ns];
        if (l == 0) { l = 1; y->id = find_piece(t, s + i, 1); }
        else if (cp < 0x10000) y->id = t->bmp_id[cp];
        else y->id = find_piece(t, s + i, l);
        y->start = (uint32_t)i;
        y->len = (uint32_t)l;
        y->prev = ns - 1;
        y->next = ns + 1;
        ns++;
        i += l;
    }
    w->syms[ns - 1].next = -1;
    w->heap_n = 0;
    /* the first lookups are independent: prefetch their filter words and
     * group offsets ahead (each is otherwise a likely cache miss) */
    for (int32_t i = 0; i + 1 < ns; i++) {
        if (i + 9 < ns && w->syms[i + 8].id >= 0 && w->syms[i + 9].id >= 0) {
            __builtin_prefetch(&t->mfilter[w->syms[i + 8].id]);
            __builtin_prefetch(&t->moff[w->syms[i + 8].id]);
        }
        if (try_pair(t, w, i, i + 1, false)) return g4_seterr(err, "tokenizer: out of memory");
    }
    heapify(w);
    while (w->heap_n) {
        cand c = heap_pop(w);
        sym *a = &w->syms[c.left], *b = &w->syms[c.right];
        /* stale candidates: a side was merged away or grew since the push */
        if (a->len != c.llen || b->len != c.rlen || a->next != c.right || b->len == 0) continue;
        a->id = c.result;
        a->len += b->len;
        a->next = b->next;
        if (b->next >= 0) w->syms[b->next].prev = c.left;
        b->len = 0;
        if (try_pair(t, w, a->prev, c.left, true) || try_pair(t, w, c.left, a->next, true))
            return g4_seterr(err, "tokenizer: out of memory");
    }
    for (int32_t i = 0; i >= 0; i = w->syms[i].next)
        if (emit_symbol(t, s, &w->syms[i], out, err)) return -1;
    return 0;
}

/* Plain text (no whole-token matches inside): normalize, pre-split, merge. */
static int encode_text(const g4_tokenizer *t, work *w, const char *s, size_t n, g4_tokens *out,
                       g4_error *err) {
    if (n == 0) return 0;
    if (n > (UINT32_MAX - 16) / 3) return g4_seterr(err, "tokenizer: text fragment too long (%zu bytes)", n);
    if (grow((void **)&w->buf, &w->buf_cap, 3 * n, 1)) return g4_seterr(err, "tokenizer: out of memory");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(w->buf + m, "\xe2\x96\x81", 3); m += 3; }
        else w->buf[m++] = s[i];
    }
    const char *b = w->buf;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        int nl = b[i] == '\n';
        while (j < m && (b[j] == '\n') == nl) j++;
        if (bpe_run(t, w, b + i, j - i, out, err)) return -1;
        i = j;
    }
    return 0;
}

int g4_tok_encode(const g4_tokenizer *t, const char *text, size_t len, bool add_bos,
                  bool parse_special, g4_tokens *out, g4_error *err) {
    if (!t || !out || (!text && len)) return g4_seterr(err, "tokenizer: bad arguments");
    if (add_bos && t->bos >= 0 && push_id(out, t->bos, err)) return -1;
    work w = {0};
    int rc = 0;
    size_t frag = 0;
    if (parse_special || t->has_always)
        for (size_t i = 0; i < len; i++) {
            if (t->trie_root[(uint8_t)text[i]] < 0) continue;
            /* leftmost-longest whole-token match */
            size_t hl = 0;
            int32_t hit = trie_match(t, text + i, len - i, parse_special, &hl);
            if (hit < 0) continue;
            if ((rc = encode_text(t, &w, text + frag, i - frag, out, err))) goto done;
            if ((rc = push_id(out, hit, err))) goto done;
            i += hl - 1;
            frag = i + 1;
        }
    rc = encode_text(t, &w, text + frag, len - frag, out, err);
done:
    free(w.buf); free(w.syms); free(w.heap);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* vocabulary queries                                                        */

int32_t g4_tok_n_vocab(const g4_tokenizer *t) { return t->n; }

size_t g4_tok_mem_bytes(const g4_tokenizer *t) {
    if (!t) return 0;
    size_t n = (size_t)t->n, arena = n ? t->off[n - 1] + t->len[n - 1] + 1 : 1;
    return sizeof *t + arena + n * (sizeof *t->off + sizeof *t->len + 4 + sizeof *t->mfilter) +
           (t->hmask + 1) * sizeof *t->hslot + 0x10000 * sizeof *t->bmp_id +
           t->n_merges * sizeof *t->ment + (n + 1) * sizeof *t->moff + t->trie_cap * sizeof *t->trie;
}
int32_t g4_tok_bos(const g4_tokenizer *t) { return t->bos; }
int32_t g4_tok_eos(const g4_tokenizer *t) { return t->eos; }
int32_t g4_tok_unk(const g4_tokenizer *t) { return t->unk; }
int32_t g4_tok_pad(const g4_tokenizer *t) { return t->pad; }

bool g4_tok_is_eog(const g4_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n && t->eog[id];
}

int32_t g4_tok_find(const g4_tokenizer *t, const char *piece, size_t len) {
    if (!piece || len == 0) return -1;
    return find_piece(t, piece, len);
}

const char *g4_tok_text(const g4_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n) return NULL;
    if (len) *len = t->len[id];
    return t->arena + t->off[id];
}

int g4_tok_type(const g4_tokenizer *t, int32_t id) {
    return (id >= 0 && id < t->n) ? t->type[id] : 0;
}

/* ------------------------------------------------------------------------ */
/* decoding                                                                  */

int g4_tok_piece(const g4_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n) return -1;
    const char *s = t->arena + t->off[id];
    size_t n = t->len[id], o = 0;
    switch (t->type[id]) {
    case G4_TOK_BYTE:
        if (cap) buf[0] = (char)t->byteval[id];
        return 1;
    case G4_TOK_CONTROL: case G4_TOK_UNKNOWN: case G4_TOK_UNUSED:
        if (!render_special) return 0;
        if (cap) memcpy(buf, s, n < cap ? n : cap);
        return (int)n;
    default:
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n && (uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81) {
                if (o < cap) buf[o] = ' ';
                o++;
                i += 2;
            } else {
                if (o < cap) buf[o] = s[i];
                o++;
            }
        }
        return (int)o;
    }
}

int g4_tok_decode(const g4_tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                  char **out, size_t *len, g4_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int l = g4_tok_piece(t, ids[i], render_special, NULL, 0);
        if (l < 0) return g4_seterr(err, "decode: id %d at position %zu is out of range [0, %d)",
                                    ids[i], i, t->n);
        total += (size_t)l;
    }
    char *s = malloc(total + 1);
    if (!s) return g4_seterr(err, "decode: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += (size_t)g4_tok_piece(t, ids[i], render_special, s + o, total - o);
    s[o] = 0;
    *out = s;
    if (len) *len = o;
    return 0;
}

struct g4_detok {
    const g4_tokenizer *t;
    bool render_special;
    char *buf; size_t n, cap;   /* held bytes, then the new piece */
    char *out; size_t out_cap;
};

g4_detok *g4_detok_new(const g4_tokenizer *t, bool render_special) {
    g4_detok *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->t = t;
    d->render_special = render_special;
    return d;
}

void g4_detok_free(g4_detok *d) {
    if (!d) return;
    free(d->buf);
    free(d->out);
    free(d);
}

void g4_detok_reset(g4_detok *d) { d->n = 0; }

/* Bytes at the end of s[0..n) that start a UTF-8 character still missing
 * continuation bytes (0 if none). */
static size_t incomplete_tail(const uint8_t *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t c = s[n - back];
        if ((c & 0xC0) == 0x80) continue;       /* continuation: keep looking */
        size_t need = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                    : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        return (need > back) ? back : 0;
    }
    return 0;
}

const char *g4_detok_push(g4_detok *d, int32_t id, size_t *len, g4_error *err) {
    int l = g4_tok_piece(d->t, id, d->render_special, NULL, 0);
    if (l < 0) return g4_seterr(err, "detokenize: id %d out of range [0, %d)", id, d->t->n), NULL;
    if (grow((void **)&d->buf, &d->cap, d->n + (size_t)l + 1, 1) ||
        grow((void **)&d->out, &d->out_cap, d->n + (size_t)l + 1, 1))
        return g4_seterr(err, "detokenize: out of memory"), NULL;
    g4_tok_piece(d->t, id, d->render_special, d->buf + d->n, (size_t)l);
    size_t n = d->n + (size_t)l;
    size_t hold = incomplete_tail((const uint8_t *)d->buf, n);
    size_t emit = n - hold;
    memcpy(d->out, d->buf, emit);
    d->out[emit] = 0;
    memmove(d->buf, d->buf + emit, hold);
    d->n = hold;
    *len = emit;
    return d->out;
}

const char *g4_detok_flush(g4_detok *d, size_t *len) {
    if (grow((void **)&d->out, &d->out_cap, d->n + 1, 1)) { *len = 0; return ""; }
    memcpy(d->out, d->buf ? d->buf : "", d->n);
    d->out[d->n] = 0;
    *len = d->n;
    d->n = 0;
    return d->out;
}
