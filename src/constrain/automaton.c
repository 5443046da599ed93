/* The constraint automaton: a stack of frames per thread, stepped one
 * symbol at a time. A frame that is pushed sets its parent's state to what
 * follows it, so popping needs no notification; numbers and enum literals
 * end only when a byte cannot continue them, so they pop and hand that
 * byte to their parent. anyOf forks a thread per alternative; threads that
 * reach the same stack merge, which keeps their number small. */
#include <string.h>

#include "constrain/constrain.h"

enum { K_JTOP = 1, K_TTOP, K_THOUGHT, K_VAL, K_OBJ, K_ARR, K_STR, K_NUM, K_LIT, K_KEY, K_CALL, K_NAME, K_GKEY };
enum { O_OPEN, O_VALWAIT, O_AFTER_VAL, O_AFTER_COMMA, O_FREECOLON };
enum { A_OPEN, A_AFTER_VAL, A_AFTER_COMMA };
enum { S_BODY, S_ESC, S_HEX };
enum { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { T_START, T_CONTENT, T_AFTER_CALL, T_ENDED };
#define J_START 0
#define J_AFTER 1
#define J_ENDED 2
#define J_THOUGHT_DONE 3

/* Control-marker texts the output parser reacts to: free text and strings
 * must never spell one out in plain bytes, or the parser would see a
 * marker the model never emitted as a token. Each starts with '<' and has
 * no other '<', so a failed partial match restarts only at '<'. */
static const char *const MARKERS[] = { "<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<turn|>",
                                       "<|tool_response>", "<tool_response|>", "<eos>", "<|\"|>", "<|turn>",
                                       "<|tool>", "<tool|>", "<|think|>" };
#define N_MARKERS (int)(sizeof MARKERS / sizeof MARKERS[0])
#define MK_ALL ((uint16_t)((1u << N_MARKERS) - 1))

/* 0, or -1 if byte b completes a marker. */
static int marker_byte(g4_frame *f, int b) {
    if (f->mk) {
        uint16_t set = 0;
        for (int i = 0; i < N_MARKERS; i++)
            if ((f->mkset >> i & 1) && (uint8_t)MARKERS[i][f->mk] == b) set |= (uint16_t)(1u << i);
        if (set) {
            f->mk++;
            for (int i = 0; i < N_MARKERS; i++)
                if ((set >> i & 1) && MARKERS[i][f->mk] == 0) return -1;
            f->mkset = set;
            return 0;
        }
    }
    if (b == '<') { f->mk = 1; f->mkset = MK_ALL; }
    else { f->mk = 0; f->mkset = 0; }
    return 0;
}

/* UTF-8 well-formedness (no overlongs, surrogates or > U+10FFFF).
 * Returns -1 (invalid), 1 (b starts a character), 0 (continuation). */
static int utf8_byte(g4_frame *f, int b) {
    if (f->u8) {
        int lo = f->aux & 0xff, hi = f->aux >> 8;
        if (b < lo || b > hi) return -1;
        f->u8--;
        f->aux = 0x80 | 0xbf << 8;
        return 0;
    }
    if (b < 0x80) return 1;
    int n, lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) n = 1;
    else if (b == 0xe0) { n = 2; lo = 0xa0; }
    else if (b == 0xed) { n = 2; hi = 0x9f; }
    else if (b >= 0xe1 && b <= 0xef) n = 2;
    else if (b == 0xf0) { n = 3; lo = 0x90; }
    else if (b >= 0xf1 && b <= 0xf3) n = 3;
    else if (b == 0xf4) { n = 3; hi = 0x8f; }
    else return -1;
    f->u8 = (uint8_t)n;
    f->aux = (uint16_t)(lo | hi << 8);
    return 1;
}

/* A byte of free text or of a raw (Gemma) string: tab, newline, CR and
 * printable bytes, well-formed UTF-8, no marker spelled out. Returns -1,
 * or 1 when it starts a character, else 0. */
static int raw_byte(g4_frame *f, int b) {
    if (b < 0x20 && b != '\t' && b != '\n' && b != '\r') return -1;
    int r = utf8_byte(f, b);
    if (r < 0 || marker_byte(f, b)) return -1;
    return r;
}

typedef struct ctx {
    const g4_grammar *g;
    g4_astate *out;
} ctx;

static void emit(ctx *c, const g4_frame *w, int n) {
    g4_astate *o = c->out;
    for (int t = 0; t < o->nt; t++) {
        int tn = o->off[t + 1] - o->off[t];
        if (tn == n && !memcmp(o->f + o->off[t], w, (size_t)n * sizeof *w)) return;
    }
    if (o->nt >= G4_MAXT) return;   /* dropping a live alternative only narrows the choice */
    memcpy(o->f + o->nf, w, (size_t)n * sizeof *w);
    o->nf += n;
    o->nt++;
    o->off[o->nt] = (uint16_t)o->nf;
}

static g4_frame mkframe(int kind, int st, int32_t node) {
    g4_frame f;
    memset(&f, 0, sizeof f);
    f.kind = (uint8_t)kind;
    f.st = (uint8_t)st;
    f.node = node;
    return f;
}

static int containers(const g4_frame *w, int n) {
    int d = 0;
    for (int i = 0; i < n; i++) d += w[i].kind == K_OBJ || w[i].kind == K_ARR;
    return d;
}

static const g4_cnode *node_of(const g4_grammar *g, int32_t i) { return &g->nodes[i]; }

/* Least nesting an object / array of node n needs. */
static int obj_depth(const g4_grammar *g, const g4_cnode *n) {
    int d = 0;
    if (n->props >= 0) {
        const g4_litset *ls = &g->sets[n->props];
        for (int i = 0; i < ls->n; i++) {
            int k = ls->first + i;
            if (g->lit_req[k] && g->nodes[g->lit_val[k]].mindepth > d) d = g->nodes[g->lit_val[k]].mindepth;
        }
    }
    return 1 + d;
}
static int arr_depth(const g4_grammar *g, const g4_cnode *n) {
    return 1 + (n->min_items > 0 ? g->nodes[n->items].mindepth : 0);
}

/* A key of the object below w[n-1] may still be written: not yet seen and
 * its value fits the nesting left. Over lits [lo, hi) of its set. */
static int key_ok(const g4_grammar *g, const g4_frame *obj, int k, int avail) {
    return !(obj->seen >> g->lit_bit[k] & 1) && g->nodes[g->lit_val[k]].mindepth <= avail;
}

static int more_keys(const g4_grammar *g, const g4_frame *w, int n) {
    const g4_frame *o = &w[n - 1];
    const g4_cnode *nd = node_of(g, o->node);
    int avail = G4_CMAX_DEPTH - containers(w, n);
    if (nd->props >= 0) {
        const g4_litset *ls = &g->sets[nd->props];
        for (int i = 0; i < ls->n; i++)
            if (key_ok(g, o, ls->first + i, avail)) return 1;
        return 0;
    }
    return nd->addl >= 0 && o->a < 256 && g->nodes[nd->addl].mindepth <= avail;
}

/* Narrow a literal range [*lo, *hi) at position pos to the strings whose
 * symbol there is sym (they are contiguous: the set is sorted with a
 * prefix before its extensions). */
static int lit_narrow(const g4_grammar *g, const g4_litset *ls, int32_t *lo, int32_t *hi, int pos, int sym) {
    int32_t a = *lo, b = *hi;
    /* key(i) = symbol at pos, -1 past the end: nondecreasing over the range */
#define LKEY(i) (g->lit_len[ls->first + (i)] > pos ? (int)g->syms[g->lit_off[ls->first + (i)] + pos] : -1)
    int32_t l = a, r = b;
    while (l < r) { int32_t m = l + (r - l) / 2; if (LKEY(m) < sym) l = m + 1; else r = m; }
    int32_t s = l;
    r = b;
    while (l < r) { int32_t m = l + (r - l) / 2; if (LKEY(m) <= sym) l = m + 1; else r = m; }
#undef LKEY
    if (s >= l) return 0;
    *lo = s;
    *hi = l;
    return 1;
}

static void run(ctx *c, g4_frame *w, int n, int sym);

static void push_run(ctx *c, g4_frame *w, int n, g4_frame f, int sym) {
    if (n >= G4_MAXF) return;
    w[n] = f;
    run(c, w, n + 1, sym);
}

static void push_emit(ctx *c, g4_frame *w, int n, g4_frame f) {
    if (n >= G4_MAXF) return;
    w[n] = f;
    emit(c, w, n + 1);
}

/* Pop a finished value and give sym to the frame below. */
static void pop_run(ctx *c, g4_frame *w, int n, int sym) { run(c, w, n - 1, sym); }

static int is_json(const ctx *c) { return !c->g->gemma; }

static void val_start(ctx *c, g4_frame *w, int n, int sym) {
    const g4_grammar *g = c->g;
    g4_frame *f = &w[n - 1];
    const g4_cnode *nd = node_of(g, f->node);
    int avail = G4_CMAX_DEPTH - containers(w, n - 1);
    if (nd->n_any > 0) {
        for (int i = 0; i < nd->n_any; i++) {
            int32_t alt = g->anys[nd->any_first + i];
            if (g->nodes[alt].mindepth > avail) continue;
            g4_frame cw[G4_MAXF];
            memcpy(cw, w, (size_t)n * sizeof *w);
            cw[n - 1].node = alt;
            val_start(c, cw, n, sym);
        }
        return;
    }
    if (nd->lits >= 0) {
        g4_frame l = mkframe(K_LIT, 0, nd->lits);
        l.b = g->sets[nd->lits].n;
        w[n - 1] = l;
        run(c, w, n, sym);
        return;
    }
    if (sym == '{' && (nd->types & G4_T_OBJ) && obj_depth(g, nd) <= avail) {
        w[n - 1] = mkframe(K_OBJ, O_OPEN, f->node);
        emit(c, w, n);
    } else if (sym == '[' && (nd->types & G4_T_ARR) && arr_depth(g, nd) <= avail) {
        w[n - 1] = mkframe(K_ARR, A_OPEN, f->node);
        emit(c, w, n);
    } else if (sym == (is_json(c) ? '"' : G4_SYM_QUOTE) && (nd->types & G4_T_STR)) {
        w[n - 1] = mkframe(K_STR, S_BODY, f->node);
        emit(c, w, n);
    } else if ((sym == '-' || (sym >= '0' && sym <= '9')) && (nd->types & (G4_T_INT | G4_T_NUM))) {
        g4_frame num = mkframe(K_NUM, N_START, f->node);
        num.a = !(nd->types & G4_T_NUM);
        w[n - 1] = num;
        run(c, w, n, sym);
    } else if ((sym == 't' || sym == 'f') && (nd->types & G4_T_BOOL)) {
        g4_frame l = mkframe(K_LIT, 0, 0);   /* set 0: false, true */
        l.b = 2;
        w[n - 1] = l;
        run(c, w, n, sym);
    } else if (sym == 'n' && (nd->types & G4_T_NULL)) {
        g4_frame l = mkframe(K_LIT, 0, 1);   /* set 1: null */
        l.b = 1;
        w[n - 1] = l;
        run(c, w, n, sym);
    }
}

static void obj_step(ctx *c, g4_frame *w, int n, int sym) {
    const g4_grammar *g = c->g;
    g4_frame *o = &w[n - 1];
    const g4_cnode *nd = node_of(g, o->node);
    int avail = G4_CMAX_DEPTH - containers(w, n);
    switch (o->st) {
    case O_OPEN:
    case O_AFTER_COMMA:
        if (is_json(c) && o->st == O_AFTER_COMMA && sym == ' ' && !o->b) { o->b = 1; emit(c, w, n); return; }
        if (o->st == O_OPEN && sym == '}') {
            if ((o->seen & nd->req) == nd->req) emit(c, w, n - 1);
            return;
        }
        if (nd->props >= 0) {
            g4_frame k = mkframe(K_KEY, 0, nd->props);
            k.b = g->sets[nd->props].n;
            push_run(c, w, n, k, sym);
        } else if (nd->addl >= 0 && g->nodes[nd->addl].mindepth <= avail) {
            if (is_json(c)) {
                if (sym != '"') return;
                o->st = O_FREECOLON;
                push_emit(c, w, n, mkframe(K_STR, S_BODY, -1));
            } else {
                o->st = O_VALWAIT;
                o->pos = -1;
                o->b = 0;
                push_run(c, w, n, mkframe(K_GKEY, 0, -1), sym);
            }
        }
        return;
    case O_FREECOLON:
        if (sym == ':') { o->st = O_VALWAIT; o->pos = -1; o->b = 0; o->a++; emit(c, w, n); }
        return;
    case O_VALWAIT: {
        if (is_json(c) && sym == ' ' && !o->b) { o->b = 1; emit(c, w, n); return; }
        int32_t vn = o->pos >= 0 ? g->lit_val[o->pos] : nd->addl;
        o->st = O_AFTER_VAL;
        o->b = 0;
        push_run(c, w, n, mkframe(K_VAL, 0, vn), sym);
        return;
    }
    case O_AFTER_VAL:
        if (sym == ',' && more_keys(g, w, n)) { o->st = O_AFTER_COMMA; o->b = 0; emit(c, w, n); }
        else if (sym == '}' && (o->seen & nd->req) == nd->req) emit(c, w, n - 1);
        return;
    }
}

static void arr_step(ctx *c, g4_frame *w, int n, int sym) {
    const g4_grammar *g = c->g;
    g4_frame *a = &w[n - 1];
    const g4_cnode *nd = node_of(g, a->node);
    int fits = g->nodes[nd->items].mindepth <= G4_CMAX_DEPTH - containers(w, n);
    switch (a->st) {
    case A_OPEN:
        if (sym == ']') { if (nd->min_items <= 0) emit(c, w, n - 1); return; }
        if (!fits || nd->max_items == 0) return;
        a->st = A_AFTER_VAL;
        a->a = 1;
        push_run(c, w, n, mkframe(K_VAL, 0, nd->items), sym);
        return;
    case A_AFTER_VAL:
        if (sym == ',' && fits && (nd->max_items < 0 || a->a < nd->max_items)) {
            a->st = A_AFTER_COMMA;
            a->b = 0;
            emit(c, w, n);
        } else if (sym == ']' && a->a >= nd->min_items) {
            emit(c, w, n - 1);
        }
        return;
    case A_AFTER_COMMA:
        if (is_json(c) && sym == ' ' && !a->b) { a->b = 1; emit(c, w, n); return; }
        a->st = A_AFTER_VAL;
        a->a++;
        push_run(c, w, n, mkframe(K_VAL, 0, nd->items), sym);
        return;
    }
}

static int hexval(int b) {
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    if (b >= 'A' && b <= 'F') return b - 'A' + 10;
    return -1;
}

static void str_step(ctx *c, g4_frame *w, int n, int sym) {
    g4_frame *s = &w[n - 1];
    const g4_cnode *nd = s->node >= 0 ? node_of(c->g, s->node) : NULL;
    int32_t minl = nd ? nd->min_len : 0, maxl = nd ? nd->max_len : -1;
    int room = maxl < 0 || s->a < maxl;
    if (!is_json(c)) {
        if (sym == G4_SYM_QUOTE) { if (!s->u8 && s->a >= minl) emit(c, w, n - 1); return; }
        if (sym > 255) return;
        if (!s->u8 && !room) return;
        int r = raw_byte(s, sym);
        if (r < 0) return;
        s->a += r;
        emit(c, w, n);
        return;
    }
    if (sym > 255) return;
    switch (s->st) {
    case S_BODY:
        if (sym == '"') { if (!s->u8 && s->a >= minl) emit(c, w, n - 1); return; }
        if (sym < 0x20) return;
        if (!s->u8 && !room) return;
        if (sym == '\\') {
            if (s->u8) return;
            s->st = S_ESC;
            s->a++;
            marker_byte(s, sym);
            emit(c, w, n);
            return;
        }
        {
            int r = utf8_byte(s, sym);
            if (r < 0 || marker_byte(s, sym)) return;
            s->a += r;
        }
        emit(c, w, n);
        return;
    case S_ESC:
        if (strchr("\"\\/bfnrt", sym) && sym) { s->st = S_BODY; marker_byte(s, sym); emit(c, w, n); }
        else if (sym == 'u') { s->st = S_HEX; s->pos = 0; marker_byte(s, sym); emit(c, w, n); }
        return;
    case S_HEX: {
        int v = hexval(sym);
        if (v < 0) return;
        /* no surrogate halves: a lone one is not a character */
        if (s->pos == 0) s->aux = (uint16_t)v;
        else if (s->pos == 1 && s->aux == 0xd && v >= 8) return;
        marker_byte(s, sym);
        if (++s->pos == 4) { s->st = S_BODY; s->aux = 0; }
        emit(c, w, n);
        return;
    }
    }
}

static int is_digit(int s) { return s >= '0' && s <= '9'; }

/* Digits are capped (15 before and after the point, 2 in the exponent) so
 * every number is exact as a double and an integer stays a safe integer. */
static void num_step(ctx *c, g4_frame *w, int n, int sym) {
    g4_frame *f = &w[n - 1];
    int st = f->st, intonly = f->a;
    int accepting = st == N_ZERO || st == N_INT || st == N_FRAC || st == N_EXP;
    int ok = 1;
    if (is_digit(sym)) {
        switch (st) {
        case N_START: case N_MINUS: f->st = sym == '0' ? N_ZERO : N_INT; f->pos = 1; break;
        case N_INT: if (f->pos < 15) f->pos++; else ok = 0; break;
        case N_DOT: f->st = N_FRAC; f->pos = 1; break;
        case N_FRAC: if (f->pos < 15) f->pos++; else ok = 0; break;
        case N_E: case N_ESIGN: f->st = N_EXP; f->pos = 1; break;
        case N_EXP: if (f->pos < 2) f->pos++; else ok = 0; break;
        default: ok = 0;
        }
    } else if (sym == '-' && st == N_START) f->st = N_MINUS;
    else if ((sym == '-' || sym == '+') && st == N_E) f->st = N_ESIGN;
    else if (sym == '.' && !intonly && (st == N_ZERO || st == N_INT)) f->st = N_DOT;
    else if ((sym == 'e' || sym == 'E') && !intonly && (st == N_ZERO || st == N_INT || st == N_FRAC)) f->st = N_E;
    else ok = 0;
    if (ok) { emit(c, w, n); return; }
    if (accepting) pop_run(c, w, n, sym);
}

static void lit_step(ctx *c, g4_frame *w, int n, int sym) {
    const g4_grammar *g = c->g;
    g4_frame *f = &w[n - 1];
    const g4_litset *ls = &g->sets[f->node];
    /* a complete literal (a number can be a prefix of a longer one) */
    int complete = g->lit_len[ls->first + f->a] == f->pos;
    g4_frame save = *f;
    if (lit_narrow(g, ls, &f->a, &f->b, f->pos, sym)) { f->pos++; emit(c, w, n); }
    if (complete) { *f = save; pop_run(c, w, n, sym); }
}

/* A property key (with its ':'): the range narrows as for literals, keys
 * already written or too deep for the nesting left are skipped. */
static void key_step(ctx *c, g4_frame *w, int n, int sym) {
    const g4_grammar *g = c->g;
    g4_frame *f = &w[n - 1], *o = &w[n - 2];
    const g4_litset *ls = &g->sets[f->node];
    if (!lit_narrow(g, ls, &f->a, &f->b, f->pos, sym)) return;
    f->pos++;
    int avail = G4_CMAX_DEPTH - containers(w, n);
    int any = 0;
    for (int32_t i = f->a; i < f->b; i++) {
        int k = ls->first + i;
        if (!key_ok(g, o, k, avail)) continue;
        any = 1;
        if (g->lit_len[k] == f->pos) {   /* keys end in ':', none is a prefix of another */
            o->seen |= 1ull << g->lit_bit[k];
            o->st = O_VALWAIT;
            o->pos = k;
            o->b = 0;
            emit(c, w, n - 1);
            return;
        }
    }
    if (any) emit(c, w, n);
}

static void name_step(ctx *c, g4_frame *w, int n, int sym) {
    const g4_grammar *g = c->g;
    g4_frame *f = &w[n - 1];
    const g4_litset *ls = &g->sets[f->node];
    if (!lit_narrow(g, ls, &f->a, &f->b, f->pos, sym)) return;
    f->pos++;
    for (int32_t i = f->a; i < f->b; i++) {
        int k = ls->first + i;
        if (g->choice == G4_CHOICE_NAMED && g->lit_bit[k] != g->named) continue;
        if (g->lit_len[k] == f->pos) {   /* "NAME{": the arguments object is open */
            w[n - 2].st = 2;
            w[n - 1] = mkframe(K_OBJ, O_OPEN, g->lit_val[k]);
            emit(c, w, n);
            return;
        }
        emit(c, w, n);
        return;
    }
}

static int gkey_byte(int b) {
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '_' || b == '-';
}

static void thought_step(ctx *c, g4_frame *w, int n, int sym) {
    g4_frame *f = &w[n - 1];
    if (sym == G4_SYM_CH_CLOSE) { if (!f->u8) emit(c, w, n - 1); return; }
    if (sym > 255 || raw_byte(f, sym) < 0) return;
    emit(c, w, n);
}

static void ttop_step(ctx *c, g4_frame *w, int n, int sym) {
    const g4_grammar *g = c->g;
    g4_frame *f = &w[n - 1];
    int free_text = g->choice == G4_CHOICE_AUTO || g->choice == G4_CHOICE_NONE;
    switch (sym) {
    case G4_SYM_CH_OPEN:
        if (f->st == T_START && g->thinking == 1) {
            f->st = T_CONTENT;
            push_emit(c, w, n, mkframe(K_THOUGHT, 0, -1));
        }
        return;
    case G4_SYM_CALL_OPEN:
        if (g->choice == G4_CHOICE_NONE || f->u8 || f->st == T_ENDED) return;
        f->st = T_AFTER_CALL;
        f->mk = 0;
        f->mkset = 0;
        push_emit(c, w, n, mkframe(K_CALL, 0, -1));
        return;
    case G4_SYM_END:
        if (f->st == T_AFTER_CALL || (f->st != T_ENDED && free_text && !f->u8)) {
            f->st = T_ENDED;
            emit(c, w, n);
        }
        return;
    }
    if (sym > 255 || !free_text || f->st > T_CONTENT) return;
    if (raw_byte(f, sym) < 0) return;
    f->st = T_CONTENT;
    emit(c, w, n);
}

static void run(ctx *c, g4_frame *w, int n, int sym) {
    if (n <= 0) return;
    g4_frame *f = &w[n - 1];
    const g4_grammar *g = c->g;
    switch (f->kind) {
    case K_JTOP:
        if (f->st == J_START && sym == G4_SYM_CH_OPEN && g->thinking == 1) {
            f->st = J_THOUGHT_DONE;
            push_emit(c, w, n, mkframe(K_THOUGHT, 0, -1));
        } else if (f->st == J_START || f->st == J_THOUGHT_DONE) {
            f->st = J_AFTER;
            push_run(c, w, n, mkframe(K_VAL, 0, g->root), sym);
        } else if (f->st == J_AFTER && sym == G4_SYM_END) {
            f->st = J_ENDED;
            emit(c, w, n);
        }
        return;
    case K_TTOP: ttop_step(c, w, n, sym); return;
    case K_THOUGHT: thought_step(c, w, n, sym); return;
    case K_VAL: val_start(c, w, n, sym); return;
    case K_OBJ: obj_step(c, w, n, sym); return;
    case K_ARR: arr_step(c, w, n, sym); return;
    case K_STR: str_step(c, w, n, sym); return;
    case K_NUM: num_step(c, w, n, sym); return;
    case K_LIT: lit_step(c, w, n, sym); return;
    case K_KEY: key_step(c, w, n, sym); return;
    case K_NAME: name_step(c, w, n, sym); return;
    case K_GKEY:
        if (sym == ':' && f->pos > 0) emit(c, w, n - 1);
        else if (sym < 256 && gkey_byte(sym) && f->pos < 32) { f->pos++; emit(c, w, n); }
        return;
    case K_CALL:
        if (f->st == 0) {
            static const char head[] = "call:";
            if (sym != head[f->pos]) return;
            if (++f->pos < 5) { emit(c, w, n); return; }
            f->st = 1;
            g4_frame k = mkframe(K_NAME, 0, g->tool_set);
            k.b = g->sets[g->tool_set].n;
            push_emit(c, w, n, k);
        } else if (f->st == 2 && sym == G4_SYM_CALL_CLOSE) {
            emit(c, w, n - 1);
        }
        return;
    }
}

void g4_astate_init(const g4_grammar *g, g4_astate *s) {
    s->nt = 1;
    s->off[0] = 0;
    s->f[0] = mkframe(g->tools ? K_TTOP : K_JTOP, 0, -1);
    s->nf = 1;
    if (g->thinking == 2) {
        s->f[0].st = g->tools ? T_CONTENT : J_THOUGHT_DONE;
        s->f[1] = mkframe(K_THOUGHT, 0, -1);
        s->nf = 2;
    }
    s->off[1] = (uint16_t)s->nf;
}

int g4_astate_step(const g4_grammar *g, const g4_astate *s, int sym, g4_astate *out) {
    ctx c = { g, out };
    out->nt = 0;
    out->nf = 0;
    out->off[0] = 0;
    g4_frame w[G4_MAXF];
    for (int t = 0; t < s->nt; t++) {
        int n = s->off[t + 1] - s->off[t];
        memcpy(w, s->f + s->off[t], (size_t)n * sizeof *w);
        run(&c, w, n, sym);
    }
    return out->nt;
}

void g4_astate_copy(g4_astate *dst, const g4_astate *src) {
    dst->nt = src->nt;
    dst->nf = src->nf;
    memcpy(dst->off, src->off, (size_t)(src->nt + 1) * sizeof src->off[0]);
    memcpy(dst->f, src->f, (size_t)src->nf * sizeof src->f[0]);
}

int g4_athread_plain(const g4_grammar *g, const g4_astate *s, int t, int32_t *room, uint8_t risky[32]) {
    const g4_frame *f = &s->f[s->off[t + 1] - 1];
    int kind = 0;
    *room = -1;
    if (f->kind == K_STR && f->st == S_BODY) {
        kind = g->gemma ? 2 : 1;
        if (f->node >= 0 && g->nodes[f->node].max_len >= 0) *room = g->nodes[f->node].max_len - f->a;
    } else if (f->kind == K_THOUGHT) {
        kind = 2;
    } else if (f->kind == K_GKEY) {
        *room = 32 - f->pos;
        memset(risky, 0, 32);
        return 3;
    } else if (f->kind == K_TTOP && f->st <= T_CONTENT &&
               (g->choice == G4_CHOICE_AUTO || g->choice == G4_CHOICE_NONE)) {
        kind = 2;
    }
    if (!kind || f->u8) return 0;
    memset(risky, 0, 32);
    if (f->mk)
        for (int i = 0; i < N_MARKERS; i++)
            if (f->mkset >> i & 1) {
                uint8_t b = (uint8_t)MARKERS[i][f->mk];
                risky[b >> 3] |= (uint8_t)(1u << (b & 7));
            }
    return kind;
}

int g4_astate_plain(const g4_grammar *g, const g4_astate *s, int32_t *room, uint8_t risky[32]) {
    if (s->nt != 1) return 0;
    return g4_athread_plain(g, s, 0, room, risky);
}

int g4_astate_done(const g4_grammar *g, const g4_astate *s) {
    g4_astate tmp;
    return g4_astate_step(g, s, G4_SYM_END, &tmp) > 0;
}

int g4_marker_scan(const uint8_t *p, int n) {
    g4_frame f;
    memset(&f, 0, sizeof f);
    for (int i = 0; i < n; i++)
        if (marker_byte(&f, p[i])) return -1;
    return f.mk;
}
