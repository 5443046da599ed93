/* Incremental parser for Gemma 4 output (see chat_parse.h for the grammar).
 *
 * Bytes arrive in `pend`. Each mode scans pend for its markers; text before
 * a '<' that cannot start a marker is passed on at once, and a '<' that is
 * a proper prefix of a marker waits for more bytes. Because every decision
 * depends only on the bytes seen, never on where chunks end, any split of
 * the input gives the same result. */
#include "text/chat_parse.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/markers.h"

#define Q G4_MK_QUOTE
#define QLEN G4_MK_QUOTE_LEN
#define WS_HOLD_MAX 4096     /* trailing whitespace held back at most */
#define MAX_DEPTH 128        /* nesting of call argument values */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static int buf_put(buf *b, const char *s, size_t n) {
    if (n == 0) return 0;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->n + n + 1) {
            if (cap > ((size_t)1 << 46)) return -1;
            cap *= 2;
        }
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}
static int buf_puts(buf *b, const char *s) { return buf_put(b, s, strlen(s)); }

/* drop the first n bytes */
static void buf_consume(buf *b, size_t n) {
    if (n >= b->n) { b->n = 0; if (b->p) b->p[0] = 0; return; }
    memmove(b->p, b->p + n, b->n - n);
    b->n -= n;
    b->p[b->n] = 0;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* A trimmed output stream (reasoning or content): leading whitespace is
 * skipped, trailing whitespace is held until more text follows. */
typedef struct tstream {
    g4_delta_kind kind;
    int started;
    buf hold;     /* held whitespace */
    int sep;      /* a "\n" goes before the next text (new thought block) */
    char part[4]; /* incomplete UTF-8 sequence not yet emitted */
    size_t part_n;
    buf all;      /* everything emitted, for the final message */
} tstream;

typedef enum { M_CONTENT, M_CHANNEL_HEAD, M_REASONING, M_CALL, M_DONE } mode_t_;

struct g4_chat_parser {
    g4_chat_delta_fn fn;
    void *user;
    size_t max_call;
    char id_prefix[64];
    mode_t_ mode;
    int oom;
    buf pend;
    tstream reasoning, content;
    buf call;          /* body of the current call after <|tool_call> */
    int call_in_str;   /* inside <|"|>...<|"|> in the call body */
    json_t *calls;     /* OpenAI tool_calls array */
    const char *const *names;   /* declared tools, if restricted */
    size_t n_names;
};

/* Length of a UTF-8 sequence from its lead byte (1 for invalid leads). */
static size_t u8_len(unsigned char c) {
    return c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
}

/* Bytes at the end of t[0..n) that start an incomplete UTF-8 sequence. */
static size_t u8_incomplete_tail(const char *t, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)t[n - back];
        if ((c & 0xC0) == 0x80) continue;          /* continuation byte */
        return (c >= 0xC0 && u8_len(c) > back) ? back : 0;
    }
    return 0;
}

static void emit_raw(g4_chat_parser *p, tstream *s, const char *t, size_t n) {
    if (n == 0) return;
    if (buf_put(&s->all, t, n)) { p->oom = 1; return; }
    if (p->fn) {
        g4_chat_delta d = { .kind = s->kind, .text = t, .len = n };
        p->fn(p->user, &d);
    }
}

/* Deltas end on UTF-8 character boundaries (a server can put each in a JSON
 * string); an incomplete trailing sequence waits in s->part. */
static void emit_text(g4_chat_parser *p, tstream *s, const char *t, size_t n) {
    if (n == 0) return;
    if (s->part_n) {
        char tmp[8];
        size_t k = 0;
        memcpy(tmp, s->part, s->part_n);
        k = s->part_n;
        while (k < 4 && n && ((unsigned char)*t & 0xC0) == 0x80 && k < u8_len((unsigned char)tmp[0])) {
            tmp[k++] = *t++;
            n--;
        }
        s->part_n = 0;
        if (k < u8_len((unsigned char)tmp[0]) && n == 0) {
            memcpy(s->part, tmp, k);
            s->part_n = k;
            return;
        }
        emit_raw(p, s, tmp, k);
    }
    size_t tail = u8_incomplete_tail(t, n);
    emit_raw(p, s, t, n - tail);
    memcpy(s->part, t + n - tail, tail);
    s->part_n = tail;
}

static void hold_ws(g4_chat_parser *p, tstream *s, char c) {
    if (buf_put(&s->hold, &c, 1)) { p->oom = 1; return; }
    if (s->hold.n >= WS_HOLD_MAX) {
        emit_text(p, s, s->hold.p, s->hold.n);
        s->hold.n = 0;
    }
}

static void stream_put(g4_chat_parser *p, tstream *s, const char *t, size_t n) {
    size_t i = 0;
    if (!s->started) {
        while (i < n && is_ws(t[i])) i++;
        if (i == n) return;
        s->started = 1;
        if (s->sep) emit_text(p, s, "\n", 1);
        s->sep = 0;
    }
    size_t j = n;
    while (j > i && is_ws(t[j - 1])) j--;
    if (j > i) {
        if (s->hold.n) { emit_text(p, s, s->hold.p, s->hold.n); s->hold.n = 0; }
        emit_text(p, s, t + i, j - i);
    }
    for (size_t k = j; k < n; k++) hold_ws(p, s, t[k]);
}

/* ---- call arguments -> JSON ---------------------------------------------- */

typedef struct vp {
    const char *s;
    size_t n, i;
    int depth;
} vp;

static void vp_ws(vp *v) { while (v->i < v->n && is_ws(v->s[v->i])) v->i++; }
static int vp_lit(vp *v, const char *lit) {
    size_t l = strlen(lit);
    if (v->n - v->i >= l && !memcmp(v->s + v->i, lit, l)) { v->i += l; return 1; }
    return 0;
}

/* <|"|>text<|"|> */
static json_t *vp_qstring(vp *v) {
    const char *e = memmem(v->s + v->i, v->n - v->i, Q, QLEN);
    if (!e) return NULL;
    json_t *r = json_stringn(v->s + v->i, (size_t)(e - (v->s + v->i)));
    v->i = (size_t)(e - v->s) + QLEN;
    return r;   /* NULL for invalid UTF-8 */
}

/* "json string" */
static json_t *vp_jstring(vp *v) {
    size_t b = v->i, k = v->i + 1;
    while (k < v->n && v->s[k] != '"') k += (v->s[k] == '\\') ? 2 : 1;
    if (k >= v->n) return NULL;
    v->i = k + 1;
    return json_loadb(v->s + b, k + 1 - b, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static json_t *vp_number(vp *v) {
    size_t b = v->i, k = v->i;
    int real = 0;
    if (k < v->n && (v->s[k] == '-' || v->s[k] == '+')) k++;
    size_t d0 = k;
    while (k < v->n && v->s[k] >= '0' && v->s[k] <= '9') k++;
    if (k == d0) return NULL;
    if (k < v->n && v->s[k] == '.') {
        real = 1;
        k++;
        while (k < v->n && v->s[k] >= '0' && v->s[k] <= '9') k++;
    }
    if (k < v->n && (v->s[k] == 'e' || v->s[k] == 'E')) {
        real = 1;
        k++;
        if (k < v->n && (v->s[k] == '-' || v->s[k] == '+')) k++;
        size_t e0 = k;
        while (k < v->n && v->s[k] >= '0' && v->s[k] <= '9') k++;
        if (k == e0) return NULL;
    }
    char tmp[128];
    if (k - b >= sizeof tmp) return NULL;
    memcpy(tmp, v->s + b, k - b);
    tmp[k - b] = 0;
    v->i = k;
    if (!real) {
        char *end;
        errno = 0;
        long long x = strtoll(tmp, &end, 10);
        if (errno == 0 && *end == 0) return json_integer((json_int_t)x);
    }
    double d = strtod(tmp, NULL);
    if (!isfinite(d)) return NULL;
    return json_real(d);
}

static json_t *vp_value(vp *v);

static json_t *vp_key(vp *v) {
    vp_ws(v);
    if (vp_lit(v, Q)) return vp_qstring(v);
    if (v->i < v->n && v->s[v->i] == '"') return vp_jstring(v);
    size_t b = v->i;
    while (v->i < v->n && v->s[v->i] != ':' && v->s[v->i] != '}') v->i++;
    size_t e = v->i;
    while (e > b && is_ws(v->s[e - 1])) e--;
    if (e == b) return NULL;
    return json_stringn(v->s + b, e - b);
}

static json_t *vp_object(vp *v) {
    json_t *o = json_object();
    if (!o) return NULL;
    vp_ws(v);
    if (vp_lit(v, "}")) return o;
    for (;;) {
        json_t *k = vp_key(v);
        if (!k || !json_is_string(k)) { json_decref(k); break; }
        vp_ws(v);
        json_t *x = vp_lit(v, ":") ? vp_value(v) : NULL;
        int bad = !x || json_object_setn_new(o, json_string_value(k), json_string_length(k), x);
        json_decref(k);
        if (bad) break;
        vp_ws(v);
        if (vp_lit(v, "}")) return o;
        if (!vp_lit(v, ",")) break;
        vp_ws(v);
        if (vp_lit(v, "}")) return o;   /* trailing comma */
    }
    json_decref(o);
    return NULL;
}

static json_t *vp_array(vp *v) {
    json_t *a = json_array();
    if (!a) return NULL;
    vp_ws(v);
    if (vp_lit(v, "]")) return a;
    for (;;) {
        json_t *x = vp_value(v);
        if (!x || json_array_append_new(a, x)) break;
        vp_ws(v);
        if (vp_lit(v, "]")) return a;
        if (!vp_lit(v, ",")) break;
        vp_ws(v);
        if (vp_lit(v, "]")) return a;
    }
    json_decref(a);
    return NULL;
}

static json_t *vp_value(vp *v) {
    vp_ws(v);
    if (v->i >= v->n || v->depth >= MAX_DEPTH) return NULL;
    json_t *r = NULL;
    char c = v->s[v->i];
    if (vp_lit(v, Q)) return vp_qstring(v);
    if (c == '"') return vp_jstring(v);
    if (c == '{' || c == '[') {
        v->i++;
        v->depth++;
        r = c == '{' ? vp_object(v) : vp_array(v);
        v->depth--;
        return r;
    }
    if (vp_lit(v, "true") || vp_lit(v, "True")) return json_true();
    if (vp_lit(v, "false") || vp_lit(v, "False")) return json_false();
    if (vp_lit(v, "null") || vp_lit(v, "None")) return json_null();
    return vp_number(v);
}

/* ---- compact JSON writer (shortest round-trip reals) ---------------------- */

static int jw(buf *b, const json_t *x, int depth) {
    char nb[64];
    if (depth > MAX_DEPTH + 2) return -1;
    switch (json_typeof(x)) {
    case JSON_NULL: return buf_puts(b, "null");
    case JSON_TRUE: return buf_puts(b, "true");
    case JSON_FALSE: return buf_puts(b, "false");
    case JSON_INTEGER:
        snprintf(nb, sizeof nb, "%" JSON_INTEGER_FORMAT, json_integer_value(x));
        return buf_puts(b, nb);
    case JSON_REAL: {
        double d = json_real_value(x);
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(nb, sizeof nb, "%.*g", prec, d);
            if (strtod(nb, NULL) == d) break;
        }
        if (!strpbrk(nb, ".eE")) strcat(nb, ".0");
        return buf_puts(b, nb);
    }
    case JSON_STRING: {
        const unsigned char *s = (const unsigned char *)json_string_value(x);
        size_t n = json_string_length(x), r = 0;
        int rc = buf_puts(b, "\"");
        for (size_t i = 0; i < n && !rc; i++) {
            const char *esc = NULL;
            char u[8];
            switch (s[i]) {
            case '"': esc = "\\\""; break;
            case '\\': esc = "\\\\"; break;
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            default:
                if (s[i] < 0x20 || s[i] == 0x7F) { snprintf(u, sizeof u, "\\u%04x", s[i]); esc = u; }
            }
            if (esc) {
                rc = buf_put(b, (const char *)s + r, i - r) || buf_puts(b, esc);
                r = i + 1;
            }
        }
        if (!rc) rc = buf_put(b, (const char *)s + r, n - r) || buf_puts(b, "\"");
        return rc;
    }
    case JSON_ARRAY: {
        int rc = buf_puts(b, "[");
        for (size_t i = 0; i < json_array_size(x) && !rc; i++)
            rc = (i ? buf_puts(b, ",") : 0) || jw(b, json_array_get(x, i), depth + 1);
        return rc || buf_puts(b, "]");
    }
    case JSON_OBJECT: {
        int rc = buf_puts(b, "{"), first = 1;
        const char *k;
        size_t kl;
        json_t *v;
        json_object_keylen_foreach((json_t *)x, k, kl, v) {
            if (rc) break;
            json_t *ks = json_stringn(k, kl);
            rc = (!first ? buf_puts(b, ",") : 0) || !ks || jw(b, ks, depth + 1) || buf_puts(b, ":") ||
                 jw(b, v, depth + 1);
            json_decref(ks);
            first = 0;
        }
        return rc || buf_puts(b, "}");
    }
    }
    return -1;
}

/* ---- calls ------------------------------------------------------------------ */

/* Parse "call:NAME{...}" into a tool call; 0 on success. */
static int finish_call(g4_chat_parser *p) {
    vp v = { p->call.p ? p->call.p : "", p->call.n, 0, 0 };
    vp_ws(&v);
    if (!vp_lit(&v, "call:")) return -1;
    size_t nb = v.i;
    while (v.i < v.n && v.s[v.i] != '{') v.i++;
    size_t ne = v.i;
    while (nb < ne && is_ws(v.s[nb])) nb++;
    while (ne > nb && is_ws(v.s[ne - 1])) ne--;
    if (ne == nb || v.i >= v.n) return -1;
    for (size_t k = nb; k < ne; k++)
        if (is_ws(v.s[k]) || v.s[k] == '<' || v.s[k] == '>' || v.s[k] == '"') return -1;
    if (p->n_names) {
        size_t k = 0;
        while (k < p->n_names && !(p->names[k] && strlen(p->names[k]) == ne - nb &&
                                   !memcmp(p->names[k], v.s + nb, ne - nb)))
            k++;
        if (k == p->n_names) return -1;
    }
    v.i++;
    v.depth = 1;
    json_t *args = vp_object(&v);
    if (!args) return -1;
    vp_ws(&v);
    json_t *name = json_stringn(v.s + nb, ne - nb);
    buf aj = {0};
    int rc = -1;
    if (v.i == v.n && name && !jw(&aj, args, 0)) {
        char id[96];
        int index = (int)json_array_size(p->calls);
        snprintf(id, sizeof id, "%s%d", p->id_prefix, index);
        json_t *fn = json_pack("{s:O,s:s%}", "name", name, "arguments", aj.p, aj.n);
        json_t *tc = fn ? json_pack("{s:s,s:s,s:o}", "id", id, "type", "function", "function", fn) : NULL;
        if (tc && !json_array_append_new(p->calls, tc)) {
            rc = 0;
            if (p->fn) {
                g4_chat_delta d = { .kind = G4_DELTA_TOOL_CALL, .index = index, .id = id,
                                    .name = json_string_value(name), .arguments = aj.p };
                p->fn(p->user, &d);
            }
        } else {
            p->oom = 1;
        }
    }
    free(aj.p);
    json_decref(name);
    json_decref(args);
    return rc;
}

/* An unusable call goes back to the content verbatim. */
static void call_to_content(g4_chat_parser *p, const char *tail) {
    stream_put(p, &p->content, G4_MK_CALL_OPEN, sizeof G4_MK_CALL_OPEN - 1);
    stream_put(p, &p->content, p->call.p ? p->call.p : "", p->call.n);
    if (tail) stream_put(p, &p->content, tail, strlen(tail));
    p->call.n = 0;
    p->call_in_str = 0;
}

/* A call longer than max_call is not a call: give it back as content and
 * scan what follows as content. Checked after every append, so the decision
 * depends only on the bytes, not on the chunking. */
static void call_check_size(g4_chat_parser *p) {
    if (p->mode == M_CALL && p->call.n > p->max_call) {
        call_to_content(p, NULL);
        p->mode = M_CONTENT;
    }
}

/* ---- scanner ----------------------------------------------------------------- */

enum { K_NONE, K_CHANNEL_OPEN, K_CHANNEL_CLOSE, K_CALL_OPEN, K_CALL_CLOSE, K_STOP, K_TURN_MODEL, K_QUOTE };

typedef struct marker {
    const char *s;
    int kind;
} marker;

static const marker CONTENT_M[] = {
    { G4_MK_CHANNEL_OPEN, K_CHANNEL_OPEN }, { G4_MK_CHANNEL_CLOSE, K_CHANNEL_CLOSE }, { G4_MK_CALL_OPEN, K_CALL_OPEN },
    { G4_MK_TURN_CLOSE, K_STOP }, { G4_MK_RESPONSE_OPEN, K_STOP }, { G4_MK_EOS, K_STOP },
    { G4_MK_TURN_OPEN "model\n", K_TURN_MODEL }, { NULL, 0 } };
static const marker REASON_M[] = {
    { G4_MK_CHANNEL_CLOSE, K_CHANNEL_CLOSE }, { G4_MK_CALL_OPEN, K_CALL_OPEN }, { G4_MK_TURN_CLOSE, K_STOP },
    { G4_MK_RESPONSE_OPEN, K_STOP }, { G4_MK_EOS, K_STOP }, { NULL, 0 } };
static const marker CALL_M[] = {
    { Q, K_QUOTE }, { G4_MK_CALL_CLOSE, K_CALL_CLOSE }, { G4_MK_CALL_OPEN, K_CALL_OPEN }, { G4_MK_TURN_CLOSE, K_STOP },
    { G4_MK_RESPONSE_OPEN, K_STOP }, { G4_MK_EOS, K_STOP }, { NULL, 0 } };
static const marker STRING_M[] = { { Q, K_QUOTE }, { NULL, 0 } };

/* Match markers at s[0..n). Returns kind and *len, K_NONE if none can
 * match, or -1 if more bytes are needed (a proper prefix). */
static int match(const marker *m, const char *s, size_t n, int final, size_t *len) {
    int partial = 0;
    for (; m->s; m++) {
        size_t l = strlen(m->s);
        if (n >= l) {
            if (!memcmp(s, m->s, l)) { *len = l; return m->kind; }
        } else if (!memcmp(s, m->s, n)) {
            partial = 1;
        }
    }
    return (partial && !final) ? -1 : K_NONE;
}

/* Pass text of the current mode on. */
static void put_mode_text(g4_chat_parser *p, const char *t, size_t n) {
    if (p->mode == M_CONTENT) stream_put(p, &p->content, t, n);
    else if (p->mode == M_REASONING) stream_put(p, &p->reasoning, t, n);
    else if (p->mode == M_CALL) {
        if (buf_put(&p->call, t, n)) p->oom = 1;
        call_check_size(p);
    }
}

static void start_reasoning(g4_chat_parser *p) {
    p->mode = M_CHANNEL_HEAD;
    /* each block is trimmed on its own; blocks after the first are joined
     * by a newline, written only once the new block has text */
    tstream *r = &p->reasoning;
    if (r->all.n || r->part_n) r->sep = 1;
    r->started = 0;
    r->hold.n = 0;
}

static void run(g4_chat_parser *p, int final) {
    size_t i = 0;
    while (i < p->pend.n && p->mode != M_DONE && !p->oom) {
        const char *s = p->pend.p + i;
        size_t n = p->pend.n - i;
        if (p->mode == M_CHANNEL_HEAD) {
            /* optional channel name "thought" right after <|channel> */
            size_t l = n < 7 ? n : 7;
            if (!memcmp(s, "thought", l)) {
                if (l < 7 && !final) break;
                if (l == 7) i += 7;
            }
            p->mode = M_REASONING;
            continue;
        }
        const marker *ms = p->mode == M_CONTENT ? CONTENT_M : p->mode == M_REASONING ? REASON_M
                         : p->call_in_str ? STRING_M : CALL_M;
        const char *lt = memchr(s, '<', n);
        size_t off = lt ? (size_t)(lt - s) : n;
        if (off) { put_mode_text(p, s, off); i += off; continue; }
        size_t ml = 0;
        int k = match(ms, s, n, final, &ml);
        if (k < 0) break;            /* wait for more bytes */
        if (k == K_NONE) { put_mode_text(p, s, 1); i += 1; continue; }
        i += ml;
        switch (k) {
        case K_CHANNEL_OPEN: start_reasoning(p); break;
        case K_CHANNEL_CLOSE: p->mode = M_CONTENT; break;   /* stray close in content: dropped */
        case K_TURN_MODEL: break;
        case K_QUOTE:
            if (buf_put(&p->call, Q, QLEN)) p->oom = 1;
            p->call_in_str = !p->call_in_str;
            call_check_size(p);
            break;
        case K_CALL_OPEN:
            if (p->mode == M_CALL) call_to_content(p, NULL);   /* previous call never closed */
            p->mode = M_CALL;
            p->call.n = 0;
            p->call_in_str = 0;
            break;
        case K_CALL_CLOSE:
            if (finish_call(p) != 0) call_to_content(p, G4_MK_CALL_CLOSE);
            p->call.n = 0;
            p->mode = M_CONTENT;
            break;
        case K_STOP:
            if (p->mode == M_CALL) call_to_content(p, NULL);
            p->mode = M_DONE;
            break;
        }
    }
    buf_consume(&p->pend, i);
    if (p->mode == M_DONE) p->pend.n = 0;
}

/* ---- public ------------------------------------------------------------------ */

g4_chat_parser *g4_chat_parser_new(const g4_chat_parse_options *opt, g4_chat_delta_fn fn, void *user) {
    g4_chat_parser *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->fn = fn;
    p->user = user;
    p->max_call = (opt && opt->max_call_bytes) ? opt->max_call_bytes : ((size_t)1 << 20);
    snprintf(p->id_prefix, sizeof p->id_prefix, "%s", (opt && opt->id_prefix) ? opt->id_prefix : "call_");
    p->reasoning.kind = G4_DELTA_REASONING;
    p->content.kind = G4_DELTA_CONTENT;
    if (opt && opt->in_reasoning) p->mode = M_REASONING;
    if (opt && opt->n_tool_names && opt->tool_names) {
        p->names = opt->tool_names;
        p->n_names = opt->n_tool_names;
    }
    p->calls = json_array();
    if (!p->calls) { free(p); return NULL; }
    return p;
}

int g4_chat_parser_feed(g4_chat_parser *p, const char *data, size_t n) {
    if (!p || p->oom) return -1;
    if (p->mode == M_DONE || n == 0) return 0;
    /* Feed in slices so the pending window stays bounded even for one huge
     * chunk: run() consumes everything but an undecided marker prefix or
     * a call body (itself capped by max_call). */
    while (n && p->mode != M_DONE && !p->oom) {
        size_t k = n < 65536 ? n : 65536;
        if (buf_put(&p->pend, data, k)) { p->oom = 1; break; }
        data += k;
        n -= k;
        run(p, 0);
    }
    return p->oom ? -1 : 0;
}

int g4_chat_parser_finish(g4_chat_parser *p) {
    if (!p || p->oom) return -1;
    run(p, 1);
    if (p->mode == M_CHANNEL_HEAD) p->mode = M_REASONING;
    if (p->mode == M_CALL) {
        call_to_content(p, NULL);
        p->mode = M_CONTENT;
    }
    /* an incomplete UTF-8 sequence at the very end goes out as is */
    emit_raw(p, &p->reasoning, p->reasoning.part, p->reasoning.part_n);
    emit_raw(p, &p->content, p->content.part, p->content.part_n);
    p->reasoning.part_n = p->content.part_n = 0;
    p->mode = M_DONE;
    return p->oom ? -1 : 0;
}

int g4_chat_parser_stopped(const g4_chat_parser *p) { return p && p->mode == M_DONE; }

/* JSON string from bytes; invalid UTF-8 becomes U+FFFD. */
static json_t *u8_string(const char *t, size_t n) {
    json_t *j = json_stringn(t ? t : "", n);
    if (j) return j;
    buf b = {0};
    for (size_t i = 0; i < n;) {
        size_t l = u8_len((unsigned char)t[i]);
        json_t *one = (i + l <= n && (unsigned char)t[i] < 0xF8 && ((unsigned char)t[i] & 0xC0) != 0x80)
                          ? json_stringn(t + i, l) : NULL;
        if (one) { buf_put(&b, t + i, l); json_decref(one); i += l; }
        else { buf_puts(&b, "\xEF\xBF\xBD"); i++; }
    }
    j = json_stringn(b.p ? b.p : "", b.n);
    free(b.p);
    return j;
}

json_t *g4_chat_parser_message(const g4_chat_parser *p) {
    if (!p) return NULL;
    json_t *m = json_object();
    if (!m) return NULL;
    int ok = !json_object_set_new(m, "role", json_string("assistant"));
    size_t nc = json_array_size(p->calls);
    if (p->content.all.n || !nc)
        ok = ok && !json_object_set_new(m, "content", u8_string(p->content.all.p, p->content.all.n));
    else
        ok = ok && !json_object_set_new(m, "content", json_null());
    if (p->reasoning.all.n)
        ok = ok && !json_object_set_new(m, "reasoning_content", u8_string(p->reasoning.all.p, p->reasoning.all.n));
    if (nc) ok = ok && !json_object_set_new(m, "tool_calls", json_deep_copy(p->calls));
    if (!ok) { json_decref(m); return NULL; }
    return m;
}

void g4_chat_parser_free(g4_chat_parser *p) {
    if (!p) return;
    free(p->pend.p);
    free(p->call.p);
    free(p->reasoning.hold.p);
    free(p->reasoning.all.p);
    free(p->content.hold.p);
    free(p->content.all.p);
    json_decref(p->calls);
    free(p);
}

json_t *g4_chat_parse(const char *text, size_t n, const g4_chat_parse_options *opt, g4_error *err) {
    g4_chat_parser *p = g4_chat_parser_new(opt, NULL, NULL);
    json_t *m = NULL;
    if (p && !g4_chat_parser_feed(p, text, n) && !g4_chat_parser_finish(p)) m = g4_chat_parser_message(p);
    g4_chat_parser_free(p);
    if (!m) g4_seterr(err, "chat parse: out of memory");
    return m;
}
