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
 * trie would be walked almost whole. Instead each token knows where its
 * "plain" tail starts (from there: complete UTF-8, no quote/backslash/
 * control byte, no marker text begun or spelled out). A plain tail keeps a
 * string thread in the same state and only adds code points, so wherever
 * the walk reaches a node whose state has such threads (at the root inside
 * a string, after "\n", in every string alternative of an anyOf), the
 * tokens below it with a plain tail from there are decided by one
 * comparison with the length left. The walk goes on only towards tokens
 * whose tail is not plain (exactly, from the whole state) and, for the
 * other threads, towards the plain-tailed ones (from those threads alone). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/markers.h"
#include "constrain/constrain.h"
#include "text/tokenizer.h"

/* Plain tails are tracked up to this byte; a token whose tail starts later
 * counts as never plain (kept exact by the walk). */
#define PK_NONE 255
/* Deepest node whose state may be split into plain and other threads. */
#define SPLIT_MAX 64
/* Plain kinds (g4_athread_plain - 1): JSON string, raw text, bare Gemma key. */
#define NK 3

typedef struct tnode {
    uint32_t end;        /* index after this node's subtree */
    uint32_t tpre;       /* tokens before this node in preorder; ids[tpre ..+ tcount] end here */
    uint16_t tcount;
    uint16_t depth;
    uint16_t ncb;        /* characters begun on the path (bytes that are not UTF-8 continuations) */
    uint8_t byte;
    uint8_t pkmin[NK], pkmax[NK]; /* over the subtree's tokens, plain-tail starts per kind */
} tnode;

typedef struct trie {
    tnode *nodes;
    uint32_t n_nodes;
    int32_t *ids;        /* sorted by text: a subtree's tokens are one range */
    uint32_t n_ids;
    int max_depth;
    uint8_t *pk[NK];     /* per position and kind: where the plain tail starts (PK_NONE) */
    uint16_t *ncb;       /* per position: characters begun in the whole text */
} trie;

struct g4_tindex {
    int32_t n_vocab;
    int8_t *sym;             /* -2 never, -1 text, else G4_SYM_* - 256 */
    uint32_t *off;           /* text bytes in arena */
    uint16_t *len;
    uint8_t *arena;
    int32_t *sym_ids[G4_NSYM - 256];
    int n_sym_ids[G4_NSYM - 256];
    trie all;
    /* by id, for the split at the root (the whole vocabulary, written in
     * id order): plain from byte 0 (per kind), characters, first byte */
    uint8_t *root_plain[NK];
    uint16_t *root_ncb;
    uint8_t *first;
};

struct g4_mask_scratch {
    g4_astate *st;           /* one per trie depth */
    g4_astate *q;            /* per split depth: the threads that are not plain */
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
            nd->tpre = i;   /* tokens sorted by text come in preorder */
            nd->ncb = (uint16_t)(t->nodes[path[d - 1]].ncb + ((s[d - 1] & 0xc0) != 0x80));
            path[d] = t->n_nodes++;
        }
        t->nodes[path[l]].tcount++;
        prev = s;
        plen = l;
        if (l > t->max_depth) t->max_depth = l;
    }
    for (int d = plen; d >= 0; d--) t->nodes[path[d]].end = t->n_nodes;
    tnode *shrunk = realloc(t->nodes, (size_t)t->n_nodes * sizeof *t->nodes);
    if (shrunk) t->nodes = shrunk;
    return 0;
}

static void trie_free(trie *t) {
    free(t->nodes); free(t->ids); free(t->ncb);
    for (int k = 0; k < NK; k++) free(t->pk[k]);
}

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

/* Where the plain tail of p[0..n) starts: the least k at which p[k..n) is
 * complete UTF-8 without a marker begun or spelled out, and without a byte
 * that bad[] flags. A later character start is plain too (markers restart
 * only at '<'), so this one number says it for every depth. */
static int plain_from(const uint8_t *p, int n, const uint8_t bad[256]) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (bad[p[i]]) k = i + 1;
    for (; k <= n && k < PK_NONE; k++) {
        if (k < n && (p[k] & 0xc0) == 0x80) continue;
        if (utf8_count(p + k, n - k) >= 0 && g4_marker_scan(p + k, n - k) == 0) return k;
    }
    return PK_NONE;
}

/* Per-position plain tails and characters, and their per-node bounds. */
static int trie_summarize(const g4_tindex *x, trie *t) {
    uint8_t bad[NK][256];
    for (int b = 0; b < 256; b++) {
        bad[0][b] = b < 0x20 || b == '"' || b == '\\';
        bad[1][b] = b < 0x20 && b != '\t' && b != '\n' && b != '\r';
        bad[2][b] = !((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '_' || b == '-');
    }
    uint32_t n = t->n_ids ? t->n_ids : 1;
    t->ncb = malloc(n * sizeof *t->ncb);
    if (!t->ncb) return -1;
    for (int k = 0; k < NK; k++)
        if (!(t->pk[k] = malloc(n))) return -1;
    for (uint32_t i = 0; i < t->n_ids; i++) {
        int32_t id = t->ids[i];
        const uint8_t *p = x->arena + x->off[id];
        int l = x->len[id], c = 0;
        for (int k = 0; k < NK; k++) t->pk[k][i] = (uint8_t)plain_from(p, l, bad[k]);
        for (int j = 0; j < l; j++) c += (p[j] & 0xc0) != 0x80;
        t->ncb[i] = (uint16_t)c;
    }
    for (uint32_t j = 0; j < t->n_nodes; j++) {
        tnode *nd = &t->nodes[j];
        uint32_t hi = nd->end < t->n_nodes ? t->nodes[nd->end].tpre : t->n_ids;
        for (int k = 0; k < NK; k++) {
            uint8_t lo = PK_NONE, up = 0;
            for (uint32_t i = nd->tpre; i < hi; i++) {
                if (t->pk[k][i] < lo) lo = t->pk[k][i];
                if (t->pk[k][i] > up) up = t->pk[k][i];
            }
            nd->pkmin[k] = lo;
            nd->pkmax[k] = up;
        }
    }
    return 0;
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
    trie_free(&x->all);
    for (int k = 0; k < NK; k++) free(x->root_plain[k]);
    free(x->root_ncb); free(x->first);
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
    int32_t *all = malloc((size_t)n * sizeof *all);
    if (!all) goto oom;
    uint32_t na = 0;
    for (int32_t id = 0; id < n; id++) {
        if (x->sym[id] >= 0) {
            int k = x->sym[id];
            int32_t *p = realloc(x->sym_ids[k], (size_t)(x->n_sym_ids[k] + 1) * sizeof *p);
            if (!p) { free(all); goto oom; }
            x->sym_ids[k] = p;
            p[x->n_sym_ids[k]++] = id;
            continue;
        }
        if (x->sym[id] == -1) all[na++] = id;
    }
    int rc = trie_build(x, &x->all, all, na) || trie_summarize(x, &x->all);
    free(all);
    if (rc) goto oom;
    for (int k = 0; k < NK; k++)
        if (!(x->root_plain[k] = calloc((size_t)n, 1))) goto oom;
    x->root_ncb = calloc((size_t)n, sizeof *x->root_ncb);
    x->first = calloc((size_t)n, 1);
    if (!x->root_ncb || !x->first) goto oom;
    for (uint32_t p = 0; p < x->all.n_ids; p++) {
        int32_t id = x->all.ids[p];
        for (int k = 0; k < NK; k++) x->root_plain[k][id] = x->all.pk[k][p] == 0;
        x->root_ncb[id] = x->all.ncb[p];
        x->first[id] = x->arena[x->off[id]];
    }
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
    m->q = malloc(SPLIT_MAX * sizeof *m->q);
    if (!m->st || !m->q) { g4_mask_scratch_free(m); return NULL; }
    return m;
}

void g4_mask_scratch_free(g4_mask_scratch *m) {
    if (!m) return;
    free(m->st);
    free(m->q);
    free(m);
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

typedef struct walker {
    const g4_tindex *x;
    const trie *t;
    const g4_grammar *g;
    g4_mask_scratch *m;
    uint8_t *allowed;
} walker;

static int bit(const uint8_t *set, int b) { return set && (set[b >> 3] >> (b & 7) & 1); }

static uint32_t tpre_at(const trie *t, uint32_t j) { return j < t->n_nodes ? t->nodes[j].tpre : t->n_ids; }

static void mark_here(const walker *w, const tnode *nd) {
    for (uint32_t k = 0; k < nd->tcount; k++) w->allowed[w->t->ids[nd->tpre + k]] = 1;
}

/* Walk below node top (state base) stepping every byte, no splitting.
 * filt: 0 none; 1 only towards tokens whose plain tail (kind k) starts
 * after depth d0; 2 only towards those starting at or before d0, and only
 * they are marked (the other threads' walk: see split()). skip: children
 * of top left out. reserve: threads kept aside; a state that could crowd
 * them out (the automaton keeps G4_MAXT) returns -1. */
static int fwalk(const walker *w, const g4_astate *base, uint32_t top, int filt, int k, int d0,
                 const uint8_t *skip, int reserve) {
    const tnode *nd = w->t->nodes;
    g4_astate *st = w->m->st;
    int dp = nd[top].depth;
    for (uint32_t i = top + 1; i < nd[top].end;) {
        int d = nd[i].depth;
        if ((filt == 1 && nd[i].pkmax[k] <= d0) || (filt == 2 && nd[i].pkmin[k] > d0) ||
            (d == dp + 1 && bit(skip, nd[i].byte))) {
            i = nd[i].end;
            continue;
        }
        const g4_astate *parent = d == dp + 1 ? base : &st[d - 1];
        if (!g4_astate_step(w->g, parent, nd[i].byte, &st[d])) { i = nd[i].end; continue; }
        if (reserve && st[d].nt + reserve > G4_MAXT) return -1;
        if (filt == 2) {
            for (uint32_t j = 0; j < nd[i].tcount; j++)
                if (w->t->pk[k][nd[i].tpre + j] <= d0) w->allowed[w->t->ids[nd[i].tpre + j]] = 1;
        } else {
            mark_here(w, &nd[i]);
        }
        i++;
    }
    return 0;
}

static int split(const walker *w, uint32_t i, const g4_astate *s);

/* Walk below node top from its exact state base, splitting where string
 * threads appear; only: children of top to take (NULL: all). */
static void full(const walker *w, const g4_astate *base, uint32_t top, const uint8_t *only) {
    const tnode *nd = w->t->nodes;
    g4_astate *st = w->m->st;
    int dp = nd[top].depth;
    for (uint32_t i = top + 1; i < nd[top].end;) {
        int d = nd[i].depth;
        if (only && d == dp + 1 && !bit(only, nd[i].byte)) { i = nd[i].end; continue; }
        const g4_astate *parent = d == dp + 1 ? base : &st[d - 1];
        if (!g4_astate_step(w->g, parent, nd[i].byte, &st[d])) { i = nd[i].end; continue; }
        mark_here(w, &nd[i]);
        if (split(w, i, &st[d])) i = nd[i].end;
        else i++;
    }
}

/* Node i (depth d) is reached in state s. If some threads of s are plain
 * strings (P), its subtree is decided here: a token whose tail from d is
 * plain, starts a character and is not a marker's next byte is allowed by
 * P iff its code points fit the most room; every other token is walked
 * exactly from s; and the remaining threads (Q) walk the plain-tailed
 * tokens alone. P's threads never fork on a plain tail, so "some thread
 * survives" is exact as long as Q cannot crowd them out of the thread
 * cap; if it could, the subtree is walked exactly instead. Returns 1 if
 * the subtree is done. */
static int split(const walker *w, uint32_t i, const g4_astate *s) {
    const trie *t = w->t;
    const tnode *nd = &t->nodes[i];
    int d = nd->depth;
    if (d >= SPLIT_MAX || nd->end == i + 1) return 0;
    int kind = 0, np = 0;
    int32_t room = -2, r;
    uint8_t risky[32], rk[32];
    uint32_t pmask = 0;
    memset(risky, 0, sizeof risky);
    for (int th = 0; th < s->nt; th++) {
        int kd = g4_athread_plain(w->g, s, th, &r, rk);
        if (!kd || (kind && kd != kind)) continue;
        kind = kd;
        pmask |= 1u << th;
        np++;
        if (r < 0 || room == -1) room = -1;
        else if (r > room) room = r;
        for (int b = 0; b < 32; b++) risky[b] |= rk[b];
    }
    if (!np) return 0;
    int k = kind - 1;
    if (nd->pkmin[k] > d) return 0;   /* nothing below has a plain tail from here */
    if (np < s->nt) {
        g4_astate *q = &w->m->q[d];
        q->nt = 0;
        q->nf = 0;
        q->off[0] = 0;
        for (int th = 0; th < s->nt; th++) {
            if (pmask >> th & 1) continue;
            int n = s->off[th + 1] - s->off[th];
            memcpy(q->f + q->nf, s->f + s->off[th], (size_t)n * sizeof *q->f);
            q->nf += n;
            q->off[++q->nt] = (uint16_t)q->nf;
        }
        if (fwalk(w, q, i, 2, k, d, risky, np) < 0) {
            /* undo Q's marks below i, then walk exactly */
            for (uint32_t p = nd->tpre + nd->tcount; p < tpre_at(t, nd->end); p++) w->allowed[t->ids[p]] = 0;
            fwalk(w, s, i, 0, 0, 0, NULL, 0);
            return 1;
        }
    }
    const uint8_t *pk = t->pk[k];
    uint32_t base = nd->ncb;
    int any_risky = 0;
    for (int b = 0; b < 32; b++) any_risky |= risky[b];
    if (i == 0) {
        /* the whole vocabulary: in id order, so the stores stream */
        const g4_tindex *x = w->x;
        const uint8_t *restrict rp = x->root_plain[k];
        uint8_t *restrict al = w->allowed;
        int32_t nv = x->n_vocab;
        uint32_t lim = room < 0 ? UINT16_MAX : (uint32_t)room;
        const uint16_t *restrict cnt = k == 2 ? x->len : x->root_ncb;   /* a key counts bytes */
        if (any_risky)
            for (int32_t id = 0; id < nv; id++)
                al[id] |= rp[id] & (cnt[id] <= lim) & !bit(risky, x->first[id]);
        else
            for (int32_t id = 0; id < nv; id++) al[id] |= rp[id] & (cnt[id] <= lim);
    }
    for (uint32_t c = i + 1; i && c < nd->end; c = t->nodes[c].end) {
        const tnode *cn = &t->nodes[c];
        if ((cn->byte & 0xc0) == 0x80 || bit(risky, cn->byte) || cn->pkmin[k] > d) continue;
        uint32_t lo = cn->tpre, hi = tpre_at(t, cn->end);
        if (room < 0) {
            for (uint32_t p = lo; p < hi; p++)
                if (pk[p] <= d) w->allowed[t->ids[p]] = 1;
        } else if (k == 2) {
            uint32_t lim = (uint32_t)room + (uint32_t)d;
            for (uint32_t p = lo; p < hi; p++)
                if (pk[p] <= d && w->x->len[t->ids[p]] <= lim) w->allowed[t->ids[p]] = 1;
        } else {
            uint32_t lim = (uint32_t)room + base;
            for (uint32_t p = lo; p < hi; p++)
                if (pk[p] <= d && t->ncb[p] <= lim) w->allowed[t->ids[p]] = 1;
        }
    }
    fwalk(w, s, i, 1, k, d, risky, 0);
    if (any_risky) full(w, s, i, risky);
    return 1;
}

/* Bytes that are 1 in a[0..n) (each is 0 or 1), eight at a time: up to
 * 255 words add lane by lane without carrying over. */
static int count_ones(const uint8_t *a, int32_t n) {
    const uint64_t lo = 0x00ff00ff00ff00ffull;
    int count = 0;
    int32_t i = 0;
    while (n - i >= 8) {
        uint64_t acc = 0;
        for (int k = 0; k < 255 && n - i >= 8; k++, i += 8) {
            uint64_t wd;
            memcpy(&wd, a + i, 8);
            acc += wd;
        }
        acc = (acc & lo) + (acc >> 8 & lo);
        count += (int)((acc * 0x0001000100010001ull) >> 48);
    }
    for (; i < n; i++) count += a[i];
    return count;
}

int g4_mask_compute(const g4_tindex *x, const g4_grammar *g, const g4_astate *s, g4_mask_scratch *m,
                    uint8_t *allowed) {
    memset(allowed, 0, (size_t)x->n_vocab);
    walker w = { x, &x->all, g, m, allowed };
    if (!split(&w, 0, s)) full(&w, s, 0, NULL);
    int count = count_ones(allowed, x->n_vocab);
    for (int k = 0; k < G4_NSYM - 256; k++) {
        if (!x->n_sym_ids[k] || !g4_astate_step(g, s, 256 + k, &m->st[0])) continue;
        for (int i = 0; i < x->n_sym_ids[k]; i++)
            if (!allowed[x->sym_ids[k][i]]) { allowed[x->sym_ids[k][i]] = 1; count++; }
    }
    return count;
}
