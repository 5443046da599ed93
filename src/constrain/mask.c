/* Token index and mask.
 *
 * Every token is a symbol (the control tokens the grammar knows), text
 * (its decoded bytes) or never allowed (other control tokens, empty text).
 * Text tokens sit in a byte trie laid out in preorder, so the mask is one
 * forward scan: a node the automaton rejects skips its whole subtree, and
 * at structural positions (after '{', ',', ':') almost everything is cut at
 * the first byte.
 *
 * Inside a string or free text nearly every token is allowed, so there the
 * trie would be walked almost whole. Instead each token is classified once:
 * "plain" tokens (complete UTF-8, no quote/backslash/control byte, no
 * marker text begun or spelled out) keep the automaton in the same string
 * state and only add code points, so they are allowed by one comparison
 * with the length left; only the other tokens are walked, in their own
 * smaller tries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/markers.h"
#include "constrain/constrain.h"
#include "text/tokenizer.h"

typedef struct tnode {
    uint32_t end;        /* index after this node's subtree */
    uint32_t tfirst;     /* tokens ending here: ids[tfirst ..+ tcount] */
    uint16_t tcount;
    uint16_t depth;
    uint8_t byte;
} tnode;

typedef struct trie {
    tnode *nodes;
    uint32_t n_nodes;
    int32_t *ids;
    uint32_t n_ids;
    int max_depth;
} trie;

struct g4_tindex {
    int32_t n_vocab;
    int8_t *sym;             /* -2 never, -1 text, else G4_SYM_* - 256 */
    uint32_t *off;           /* text bytes in arena */
    uint16_t *len;
    uint8_t *arena;
    int32_t *sym_ids[G4_NSYM - 256];
    int n_sym_ids[G4_NSYM - 256];
    trie all, cj, cr;        /* every text token; the non-plain ones for JSON / raw strings */
    int32_t *pj, *pr;        /* plain tokens */
    uint16_t *pj_cp, *pr_cp; /* their code points */
    int32_t n_pj, n_pr;
};

struct g4_mask_scratch {
    g4_astate *st;           /* one per trie depth */
    int n;
};

static int tok_cmp(const void *a, const void *b, void *ctx) {
    const g4_tindex *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    int lx = t->len[x], ly = t->len[y], l = lx < ly ? lx : ly;
    int d = memcmp(t->arena + t->off[x], t->arena + t->off[y], (size_t)l);
    if (d) return d;
    if (lx != ly) return lx - ly;
    return x < y ? -1 : x > y;
}

/* Preorder trie of ids (sorted by text). */
static int trie_build(const g4_tindex *x, trie *t, const int32_t *ids_in, uint32_t n) {
    memset(t, 0, sizeof *t);
    t->ids = malloc((n ? n : 1) * sizeof *t->ids);
    if (!t->ids) return -1;
    memcpy(t->ids, ids_in, n * sizeof *ids_in);
    t->n_ids = n;
    qsort_r(t->ids, n, sizeof *t->ids, tok_cmp, (void *)x);
    uint64_t total = 1;
    for (uint32_t i = 0; i < n; i++) total += x->len[t->ids[i]];
    t->nodes = malloc((size_t)total * sizeof *t->nodes);   /* upper bound, trimmed below */
    uint32_t path[1026];   /* texts are at most 1024 bytes (see g4_tindex_new) */
    if (!t->nodes) return -1;
    memset(&t->nodes[0], 0, sizeof t->nodes[0]);
    t->n_nodes = 1;
    path[0] = 0;
    int plen = 0;
    const uint8_t *prev = NULL;
    for (uint32_t i = 0; i < n; i++) {
        int32_t id = t->ids[i];
        const uint8_t *s = x->arena + x->off[id];
        int l = x->len[id], lcp = 0;
        while (prev && lcp < plen && lcp < l && prev[lcp] == s[lcp]) lcp++;
        for (int d = plen; d > lcp; d--) t->nodes[path[d]].end = t->n_nodes;
        for (int d = lcp + 1; d <= l; d++) {
            tnode *nd = &t->nodes[t->n_nodes];
            memset(nd, 0, sizeof *nd);
            nd->byte = s[d - 1];
            nd->depth = (uint16_t)d;
            path[d] = t->n_nodes++;
        }
        tnode *leaf = &t->nodes[path[l]];
        if (!leaf->tcount) leaf->tfirst = i;
        leaf->tcount++;
        prev = s;
        plen = l;
        if (l > t->max_depth) t->max_depth = l;
    }
    for (int d = plen; d >= 0; d--) t->nodes[path[d]].end = t->n_nodes;
    tnode *shrunk = realloc(t->nodes, (size_t)t->n_nodes * sizeof *t->nodes);
    if (shrunk) t->nodes = shrunk;
    return 0;
}

static void trie_free(trie *t) { free(t->nodes); free(t->ids); }

/* Valid complete UTF-8: number of code points, or -1. */
static int utf8_count(const uint8_t *p, int n) {
    int cp = 0;
    for (int i = 0; i < n;) {
        int b = p[i], k, lo = 0x80, hi = 0xbf;
        if (b < 0x80) k = 0;
        else if (b >= 0xc2 && b <= 0xdf) k = 1;
        else if (b == 0xe0) { k = 2; lo = 0xa0; }
        else if (b == 0xed) { k = 2; hi = 0x9f; }
        else if (b >= 0xe1 && b <= 0xef) k = 2;
        else if (b == 0xf0) { k = 3; lo = 0x90; }
        else if (b >= 0xf1 && b <= 0xf3) k = 3;
        else if (b == 0xf4) { k = 3; hi = 0x8f; }
        else return -1;
        for (int j = 1; j <= k; j++) {
            if (i + j >= n) return -1;
            int c = p[i + j];
            if (c < (j == 1 ? lo : 0x80) || c > (j == 1 ? hi : 0xbf)) return -1;
        }
        i += k + 1;
        cp++;
    }
    return cp;
}

/* A control token's symbol: by its Gemma 4 text, else by the fixed id when
 * that id holds a non-text token (the test vocabulary is Gemma 3's, whose
 * strings differ at those ids; see shared/testdata/tokenizer/README.md). */
static int32_t find_marker(const g4_tokenizer *tk, const char *s, int32_t fixed) {
    int32_t id = g4_tok_find(tk, s, strlen(s));
    if (id >= 0) return id;
    int ty = g4_tok_type(tk, fixed);
    if (fixed < g4_tok_n_vocab(tk) && ty != G4_TOK_NORMAL && ty != G4_TOK_BYTE && ty != 0) return fixed;
    return -1;
}

void g4_tindex_free(g4_tindex *x) {
    if (!x) return;
    free(x->sym); free(x->off); free(x->len); free(x->arena);
    for (int i = 0; i < G4_NSYM - 256; i++) free(x->sym_ids[i]);
    trie_free(&x->all); trie_free(&x->cj); trie_free(&x->cr);
    free(x->pj); free(x->pr); free(x->pj_cp); free(x->pr_cp);
    free(x);
}

g4_tindex *g4_tindex_new(const g4_tokenizer *tk, char *err, size_t errlen) {
    g4_tindex *x = calloc(1, sizeof *x);
    int32_t n = g4_tok_n_vocab(tk);
    if (!x) goto oom;
    x->n_vocab = n;
    x->sym = malloc((size_t)n);
    x->off = malloc((size_t)n * sizeof *x->off);
    x->len = calloc((size_t)n, sizeof *x->len);
    if (!x->sym || !x->off || !x->len) goto oom;
    memset(x->sym, -2, (size_t)n);
    struct { const char *s; int32_t id; int sym; } mk[] = {
        { G4_MK_QUOTE, G4_ID_QUOTE, G4_SYM_QUOTE }, { G4_MK_CALL_OPEN, G4_ID_CALL_OPEN, G4_SYM_CALL_OPEN },
        { G4_MK_CALL_CLOSE, G4_ID_CALL_CLOSE, G4_SYM_CALL_CLOSE }, { G4_MK_CHANNEL_OPEN, G4_ID_CHANNEL_OPEN, G4_SYM_CH_OPEN },
        { G4_MK_CHANNEL_CLOSE, G4_ID_CHANNEL_CLOSE, G4_SYM_CH_CLOSE }, { G4_MK_TURN_CLOSE, G4_ID_TURN_CLOSE, G4_SYM_END },
        { G4_MK_RESPONSE_OPEN, G4_ID_RESPONSE_OPEN, G4_SYM_END }, { G4_MK_EOS, G4_ID_EOS, G4_SYM_END } };
    for (size_t i = 0; i < sizeof mk / sizeof mk[0]; i++) {
        int32_t id = find_marker(tk, mk[i].s, mk[i].id);
        if (id >= 0) x->sym[id] = (int8_t)(mk[i].sym - 256);
    }
    if (g4_tok_eos(tk) >= 0) x->sym[g4_tok_eos(tk)] = G4_SYM_END - 256;
    /* text of every other token */
    size_t cap = 1 << 20, used = 0;
    x->arena = malloc(cap);
    if (!x->arena) goto oom;
    char buf[1024];
    for (int32_t id = 0; id < n; id++) {
        if (x->sym[id] != -2) continue;
        int ty = g4_tok_type(tk, id);
        if (ty == G4_TOK_CONTROL || ty == G4_TOK_UNKNOWN || ty == G4_TOK_UNUSED) continue;
        int l = g4_tok_piece(tk, id, false, buf, sizeof buf);
        if (l <= 0 || l > (int)sizeof buf) continue;   /* empty or absurdly long: never offered */
        if (used + (size_t)l > cap) {
            uint8_t *a = realloc(x->arena, cap * 2);
            if (!a) goto oom;
            x->arena = a;
            cap *= 2;
        }
        memcpy(x->arena + used, buf, (size_t)l);
        x->off[id] = (uint32_t)used;
        x->len[id] = (uint16_t)l;
        used += (size_t)l;
        x->sym[id] = -1;
    }
    int32_t *all = malloc((size_t)n * sizeof *all), *cj = malloc((size_t)n * sizeof *cj), *cr = malloc((size_t)n * sizeof *cr);
    x->pj = malloc((size_t)n * sizeof *x->pj);
    x->pr = malloc((size_t)n * sizeof *x->pr);
    x->pj_cp = malloc((size_t)n * sizeof *x->pj_cp);
    x->pr_cp = malloc((size_t)n * sizeof *x->pr_cp);
    if (!all || !cj || !cr || !x->pj || !x->pr || !x->pj_cp || !x->pr_cp) { free(all); free(cj); free(cr); goto oom; }
    uint32_t na = 0, ncj = 0, ncr = 0;
    for (int32_t id = 0; id < n; id++) {
        if (x->sym[id] >= 0) {
            int k = x->sym[id];
            int32_t *p = realloc(x->sym_ids[k], (size_t)(x->n_sym_ids[k] + 1) * sizeof *p);
            if (!p) { free(all); free(cj); free(cr); goto oom; }
            x->sym_ids[k] = p;
            p[x->n_sym_ids[k]++] = id;
            continue;
        }
        if (x->sym[id] != -1) continue;
        all[na++] = id;
        const uint8_t *s = x->arena + x->off[id];
        int l = x->len[id], cp = utf8_count(s, l), ctl = 0, rawctl = 0, qb = 0;
        for (int i = 0; i < l; i++) {
            ctl |= s[i] < 0x20;
            rawctl |= s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r';
            qb |= s[i] == '"' || s[i] == '\\';
        }
        int mk = g4_marker_scan(s, l);
        int clean = cp >= 0 && mk == 0 && cp < 65536;
        if (clean && !ctl && !qb) { x->pj[x->n_pj] = id; x->pj_cp[x->n_pj++] = (uint16_t)cp; }
        else cj[ncj++] = id;
        if (clean && !rawctl) { x->pr[x->n_pr] = id; x->pr_cp[x->n_pr++] = (uint16_t)cp; }
        else cr[ncr++] = id;
    }
    int rc = trie_build(x, &x->all, all, na) || trie_build(x, &x->cj, cj, ncj) || trie_build(x, &x->cr, cr, ncr);
    free(all); free(cj); free(cr);
    if (rc) goto oom;
    return x;
oom:
    g4_tindex_free(x);
    if (err && errlen) snprintf(err, errlen, "token index: out of memory");
    return NULL;
}

int32_t g4_tindex_n_vocab(const g4_tindex *x) { return x->n_vocab; }
int g4_tindex_sym(const g4_tindex *x, int32_t id) {
    if (id < 0 || id >= x->n_vocab || x->sym[id] < 0) return -1;
    return 256 + x->sym[id];
}
int g4_tindex_has_sym(const g4_tindex *x, int sym) { return sym >= 256 && sym < G4_NSYM && x->n_sym_ids[sym - 256] > 0; }
const uint8_t *g4_tindex_text(const g4_tindex *x, int32_t id, int *len) {
    if (id < 0 || id >= x->n_vocab || x->sym[id] != -1) return NULL;
    *len = x->len[id];
    return x->arena + x->off[id];
}

g4_mask_scratch *g4_mask_scratch_new(const g4_tindex *x) {
    g4_mask_scratch *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n = x->all.max_depth + 2;
    m->st = malloc((size_t)m->n * sizeof *m->st);
    if (!m->st) { free(m); return NULL; }
    return m;
}

void g4_mask_scratch_free(g4_mask_scratch *m) {
    if (!m) return;
    free(m->st);
    free(m);
}

static int walk(const trie *t, const g4_grammar *g, const g4_astate *s, g4_mask_scratch *m, uint8_t *allowed) {
    int count = 0;
    const tnode *nd = t->nodes;
    for (uint32_t i = 1; i < t->n_nodes;) {
        int d = nd[i].depth;
        const g4_astate *parent = d == 1 ? s : &m->st[d - 1];
        if (g4_astate_step(g, parent, nd[i].byte, &m->st[d])) {
            for (uint32_t k = 0; k < nd[i].tcount; k++) {
                int32_t id = t->ids[nd[i].tfirst + k];
                if (!allowed[id]) { allowed[id] = 1; count++; }
            }
            i++;
        } else {
            i = nd[i].end;
        }
    }
    return count;
}

int g4_mask_step_token(const g4_tindex *x, const g4_grammar *g, const g4_astate *s, int32_t id, g4_astate *out,
                       g4_mask_scratch *m) {
    if (id < 0 || id >= x->n_vocab || x->sym[id] == -2) return 0;
    if (x->sym[id] >= 0) return g4_astate_step(g, s, 256 + x->sym[id], out);
    const uint8_t *p = x->arena + x->off[id];
    int l = x->len[id];
    const g4_astate *cur = s;
    for (int i = 0; i < l; i++) {
        g4_astate *nx = i == l - 1 ? out : &m->st[1 + (i & 1)];
        if (!g4_astate_step(g, cur, p[i], nx)) return 0;
        cur = nx;
    }
    return 1;
}

int g4_mask_compute(const g4_tindex *x, const g4_grammar *g, const g4_astate *s, g4_mask_scratch *m,
                    uint8_t *allowed) {
    memset(allowed, 0, (size_t)x->n_vocab);
    int count = 0;
    int32_t room;
    uint8_t risky[32];
    int plain = g4_astate_plain(g, s, &room, risky);
    if (plain) {
        const int32_t *ids = plain == 1 ? x->pj : x->pr;
        const uint16_t *cps = plain == 1 ? x->pj_cp : x->pr_cp;
        int32_t n = plain == 1 ? x->n_pj : x->n_pr;
        int any_risky = 0;
        for (int i = 0; i < 32; i++) any_risky |= risky[i];
        for (int32_t i = 0; i < n; i++) {
            if (room >= 0 && cps[i] > room) continue;
            int32_t id = ids[i];
            if (any_risky) {
                uint8_t b = x->arena[x->off[id]];
                if (risky[b >> 3] >> (b & 7) & 1) {
                    /* it may finish a marker begun before it: check exactly */
                    if (!g4_mask_step_token(x, g, s, id, &m->st[0], m)) continue;
                }
            }
            allowed[id] = 1;
            count++;
        }
        count += walk(plain == 1 ? &x->cj : &x->cr, g, s, m, allowed);
    } else {
        count += walk(&x->all, g, s, m, allowed);
    }
    for (int k = 0; k < G4_NSYM - 256; k++) {
        if (!x->n_sym_ids[k] || !g4_astate_step(g, s, 256 + k, &m->st[0])) continue;
        for (int i = 0; i < x->n_sym_ids[k]; i++)
            if (!allowed[x->sym_ids[k][i]]) { allowed[x->sym_ids[k][i]] = 1; count++; }
    }
    return count;
}
