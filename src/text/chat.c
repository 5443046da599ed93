/* Gemma 4 chat template in C. Mirrors google-gemma-4-31B-it.jinja
 * (2026-04-10) statement by statement; see gemma4-chat-format.md §3-§5.
 *
 * Jinja/Python semantics imitated (they decide bytes of the prompt):
 *  - a lookup on a missing key or on a non-mapping is "undefined" (NULL
 *    here), which prints as "" and is falsy; JSON null is Python None, which
 *    prints as "None";
 *  - `{{ x }}` and `| trim` / `| upper` use Python str(): floats as repr(),
 *    True/False, lists and dicts as their Python repr;
 *  - `dictsort` orders keys by key.lower(), stable;
 *  - `trim` is str.strip() with Unicode whitespace;
 *  - `for x in v` iterates list items, dict keys or string characters;
 *  - `str + non-str` raises, so those inputs are errors here. */
#include "text/chat.h"

#include <sys/stat.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/markers.h"
#include "format/gguf.h"

/* ---- growable byte buffer ------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) {
            if (cap > ((size_t)1 << 40)) { b->oom = 1; return; }
            cap *= 2;
        }
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

#define Q G4_MK_QUOTE   /* the string delimiter token */

/* ---- render context ------------------------------------------------------ */

typedef struct rctx {
    sbuf out;
    g4_error *err;
    int failed;
    unsigned compat;
    int interleaved;  /* google-gemma-4-31B-it-interleaved.jinja rules */
    char path[256];   /* field being rendered, for error messages */
} rctx;

static int fail(rctx *c, const char *what) {
    if (!c->failed) g4_seterr(c->err, "%s: %s", c->path[0] ? c->path : "request", what);
    c->failed = 1;
    return -1;
}

/* Jinja item lookup: undefined (NULL) unless v is an object with the key. */
static json_t *get(const json_t *v, const char *key) {
    return json_is_object(v) ? json_object_get(v, key) : NULL;
}

static int truthy(const json_t *v) {
    if (!v) return 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: return json_object_size(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0.0;
    case JSON_TRUE: return 1;
    default: return 0;
    }
}

static int str_is(const json_t *v, const char *s) {
    return json_is_string(v) && json_string_length(v) == strlen(s) &&
           !memcmp(json_string_value(v), s, json_string_length(v));
}

/* ---- Python str() / repr() ---------------------------------------------- */

/* repr(float): shortest round-trip digits; positional for decimal exponents
 * in [-4, 16), else d[.ddd]e+XX (CPython float_repr_style 'short'). */
static void py_float(sbuf *b, double d) {
    if (isnan(d)) { sb_puts(b, "nan"); return; }
    if (isinf(d)) { sb_puts(b, d < 0 ? "-inf" : "inf"); return; }
    char buf[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d) break;
    }
    /* buf = [-]D[.DDD]e[+-]XX */
    char digits[32];
    int nd = 0, neg = 0;
    const char *s = buf;
    if (*s == '-') { neg = 1; s++; }
    for (; *s && *s != 'e'; s++)
        if (isdigit((unsigned char)*s) && nd < 30) digits[nd++] = *s;
    int e = (*s == 'e') ? atoi(s + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    if (neg) sb_puts(b, "-");
    if (e >= -4 && e < 16) {
        if (e >= 0) {
            if (nd <= e + 1) {
                sb_put(b, digits, (size_t)nd);
                for (int i = nd; i < e + 1; i++) sb_puts(b, "0");
                sb_puts(b, ".0");
            } else {
                sb_put(b, digits, (size_t)e + 1);
                sb_puts(b, ".");
                sb_put(b, digits + e + 1, (size_t)(nd - e - 1));
            }
        } else {
            sb_puts(b, "0.");
            for (int i = 0; i < -e - 1; i++) sb_puts(b, "0");
            sb_put(b, digits, (size_t)nd);
        }
    } else {
        sb_put(b, digits, 1);
        if (nd > 1) { sb_puts(b, "."); sb_put(b, digits + 1, (size_t)nd - 1); }
        char eb[16];
        snprintf(eb, sizeof eb, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        sb_puts(b, eb);
    }
}

/* Decode one UTF-8 code point (input is valid UTF-8: jansson checks). */
static uint32_t utf8_dec(const unsigned char *s, size_t n, size_t *len) {
    uint32_t c = s[0];
    size_t l = 1;
    if (c >= 0xF0 && n >= 4) { c = ((c & 7u) << 18) | ((s[1] & 63u) << 12) | ((s[2] & 63u) << 6) | (s[3] & 63u); l = 4; }
    else if (c >= 0xE0 && n >= 3) { c = ((c & 15u) << 12) | ((s[1] & 63u) << 6) | (s[2] & 63u); l = 3; }
    else if (c >= 0xC0 && n >= 2) { c = ((c & 31u) << 6) | (s[1] & 63u); l = 2; }
    *len = l;
    return c;
}

/* Approximation of Python's str.isprintable() for non-ASCII code points:
 * controls, format characters, separators other than ' ', private use. */
static int py_printable(uint32_t c) {
    if (c < 0x20 || c == 0x7F) return 0;
    if (c < 0x7F) return 1;
    if (c <= 0xA0 || c == 0xAD || c == 0x1680 || c == 0x180E || c == 0x061C || c == 0x06DD ||
        c == 0x070F || c == 0x3000 || c == 0xFEFF)
        return 0;
    if ((c >= 0x0600 && c <= 0x0605) || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
        (c >= 0x205F && c <= 0x206F) || (c >= 0xD800 && c <= 0xF8FF) || (c >= 0xFFF9 && c <= 0xFFFB) ||
        (c >= 0xE0000 && c <= 0xE0FFF) || c >= 0xF0000)
        return 0;
    return 1;
}

static void py_repr_str(sbuf *b, const char *s, size_t n) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    sb_put(b, &q, 1);
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t c = utf8_dec((const unsigned char *)s + i, n - i, &l);
        char eb[16];
        if (c == (uint32_t)q || c == '\\') { eb[0] = '\\'; eb[1] = (char)c; sb_put(b, eb, 2); }
        else if (c == '\t') sb_puts(b, "\\t");
        else if (c == '\n') sb_puts(b, "\\n");
        else if (c == '\r') sb_puts(b, "\\r");
        else if (py_printable(c)) sb_put(b, s + i, l);
        else {
            if (c <= 0xFF) snprintf(eb, sizeof eb, "\\x%02x", c);
            else if (c <= 0xFFFF) snprintf(eb, sizeof eb, "\\u%04x", c);
            else snprintf(eb, sizeof eb, "\\U%08x", c);
            sb_puts(b, eb);
        }
        i += l;
    }
    sb_put(b, &q, 1);
}

static void py_repr(sbuf *b, const json_t *v, int depth);

/* Python str(v); NULL (undefined) prints nothing. */
static void py_str(sbuf *b, const json_t *v, int depth) {
    if (!v) return;
    if (json_is_string(v)) sb_put(b, json_string_value(v), json_string_length(v));
    else py_repr(b, v, depth);
}

static void py_repr(sbuf *b, const json_t *v, int depth) {
    char nb[32];
    if (!v) return;
    if (depth > 1000) { b->oom = 1; return; }
    switch (json_typeof(v)) {
    case JSON_NULL: sb_puts(b, "None"); break;
    case JSON_TRUE: sb_puts(b, "True"); break;
    case JSON_FALSE: sb_puts(b, "False"); break;
    case JSON_INTEGER:
        snprintf(nb, sizeof nb, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sb_puts(b, nb);
        break;
    case JSON_REAL: py_float(b, json_real_value(v)); break;
    case JSON_STRING: py_repr_str(b, json_string_value(v), json_string_length(v)); break;
    case JSON_ARRAY: {
        sb_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_puts(b, ", ");
            py_repr(b, json_array_get(v, i), depth + 1);
        }
        sb_puts(b, "]");
        break;
    }
    case JSON_OBJECT: {
        sb_puts(b, "{");
        const char *k;
        json_t *x;
        int first = 1;
        json_object_foreach((json_t *)v, k, x) {
            if (!first) sb_puts(b, ", ");
            first = 0;
            py_repr_str(b, k, strlen(k));
            sb_puts(b, ": ");
            py_repr(b, x, depth + 1);
        }
        sb_puts(b, "}");
        break;
    }
    }
}

/* str(v).upper() into a fresh buffer. ASCII letters only (str.upper also
 * maps non-ASCII letters; JSON-schema type names are ASCII). */
static char *py_upper(const json_t *v, size_t *n) {
    sbuf t = {0};
    py_str(&t, v, 0);
    sb_put(&t, "", 0);
    if (!t.p) { t.p = calloc(1, 1); t.n = 0; }
    if (!t.p) return NULL;
    for (size_t i = 0; i < t.n; i++) t.p[i] = (char)toupper((unsigned char)t.p[i]);
    *n = t.n;
    return t.p;
}

static int upper_is(const json_t *v, const char *s) {
    size_t n;
    char *u = py_upper(v, &n);
    int r = u && n == strlen(s) && !memcmp(u, s, n);
    free(u);
    return r;
}

/* Python str.isspace() code points. */
static int py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* str.strip(): returns the [*b, *e) span. */
static void py_strip(const char *s, size_t n, size_t *b, size_t *e) {
    size_t i = 0, j = n;
    while (i < j) {
        size_t l;
        if (!py_space(utf8_dec((const unsigned char *)s + i, j - i, &l))) break;
        i += l;
    }
    while (j > i) {
        size_t k = j - 1;
        while (k > i && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        size_t l;
        if (!py_space(utf8_dec((const unsigned char *)s + k, j - k, &l))) break;
        j = k;
    }
    *b = i;
    *e = j;
}

static void put_trimmed(sbuf *o, const char *s, size_t n) {
    size_t b, e;
    py_strip(s, n, &b, &e);
    sb_put(o, s + b, e - b);
}

/* `v | trim`: str(v).strip() */
static void put_trim(rctx *c, const json_t *v) {
    sbuf t = {0};
    py_str(&t, v, 0);
    if (t.oom) c->out.oom = 1;
    if (t.p) put_trimmed(&c->out, t.p, t.n);
    free(t.p);
}

/* The template's strip_thinking macro. */
static void put_strip_thinking(rctx *c, const char *s, size_t n) {
    static const char END[] = G4_MK_CHANNEL_CLOSE, BEG[] = G4_MK_CHANNEL_OPEN;
    sbuf t = {0};
    size_t i = 0;
    for (;;) {
        const char *e = memmem(s + i, n - i, END, 10);
        size_t pe = e ? (size_t)(e - s) : n;
        const char *bg = memmem(s + i, pe - i, BEG, 10);
        sb_put(&t, s + i, (bg ? (size_t)(bg - s) : pe) - i);
        if (!e) break;
        i = pe + 10;
    }
    if (t.oom) c->out.oom = 1;
    if (t.p) put_trimmed(&c->out, t.p, t.n);
    free(t.p);
}

/* ---- dictsort ------------------------------------------------------------- */

typedef struct kv_ent {
    const char *key;
    json_t *val;
    size_t idx;
} kv_ent;

/* Python str.lower() for the common cases: ASCII, Latin-1, Latin
 * Extended-A, basic Greek and Cyrillic capitals (checked against Python for
 * U+0000-U+017F). Other code points compare as they are. */
static uint32_t py_lower(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3AB && c != 0x3A2) ||
        (c >= 0x410 && c <= 0x42F))
        return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if (c == 0x178) return 0xFF;
    if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x178 &&
        c != 0x17F) {
        /* pairs: even upper / odd lower, except 0x139-0x148 and 0x179-0x17E (odd upper) */
        int odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        if (odd_upper ? (c & 1) : !(c & 1)) return c + 1;
    }
    return c;
}

static int lower_cmp(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b), i = 0, j = 0;
    while (i < na && j < nb) {
        size_t la, lb;
        uint32_t x = py_lower(utf8_dec((const unsigned char *)a + i, na - i, &la));
        uint32_t y = py_lower(utf8_dec((const unsigned char *)b + j, nb - j, &lb));
        if (x != y) return x < y ? -1 : 1;
        i += la;
        j += lb;
    }
    return (i < na) - (j < nb);
}

static int kv_cmp(const void *pa, const void *pb) {
    const kv_ent *a = pa, *b = pb;
    int r = lower_cmp(a->key, b->key);
    if (r) return r;
    return a->idx < b->idx ? -1 : a->idx > b->idx;   /* stable */
}

/* Sorted entries of an object; NULL with *n = 0 for an empty one. */
static kv_ent *dictsort(rctx *c, const json_t *obj, size_t *n) {
    *n = json_object_size(obj);
    if (!*n) return NULL;
    kv_ent *v = malloc(*n * sizeof *v);
    if (!v) { c->out.oom = 1; *n = 0; return NULL; }
    size_t i = 0;
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)obj, k, x) {
        if (i < *n) { v[i].key = k; v[i].val = x; v[i].idx = i; i++; }
    }
    *n = i;
    qsort(v, *n, sizeof *v, kv_cmp);
    return v;
}

/* ---- `for x in v` ---------------------------------------------------------- */

/* Python iteration over a JSON value as a list of new references (dict keys
 * and string characters become strings). Non-iterables are an error. */
static json_t *py_list(rctx *c, const json_t *v, const char *what) {
    json_t *l = json_array();
    if (!l) { c->out.oom = 1; return NULL; }
    if (json_is_array(v)) {
        json_array_extend(l, (json_t *)v);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) json_array_append_new(l, json_string(k));
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        for (size_t i = 0; i < n;) {
            size_t len;
            utf8_dec((const unsigned char *)s + i, n - i, &len);
            json_array_append_new(l, json_stringn(s + i, len));
            i += len;
        }
    } else {
        json_decref(l);
        fail(c, what);
        return NULL;
    }
    return l;
}

/* ---- format_argument (§4) --------------------------------------------------- */

static void fmt(rctx *c, const json_t *v, int escape_keys, int depth) {
    sbuf *o = &c->out;
    if (depth > 1000) { fail(c, "value nested too deeply"); return; }
    /* Jinja's Undefined passes `is sequence` (it has __len__/__getitem__) */
    if (!v) { sb_puts(o, "[]"); return; }
    if (json_is_string(v)) {
        sb_puts(o, Q);
        sb_put(o, json_string_value(v), json_string_length(v));
        sb_puts(o, Q);
    } else if (json_is_boolean(v)) {
        sb_puts(o, json_is_true(v) ? "true" : "false");
    } else if (json_is_object(v)) {
        size_t n;
        kv_ent *e = dictsort(c, v, &n);
        sb_puts(o, "{");
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(o, ",");
            if (escape_keys) sb_puts(o, Q);
            sb_puts(o, e[i].key);
            if (escape_keys) sb_puts(o, Q);
            sb_puts(o, ":");
            fmt(c, e[i].val, escape_keys, depth + 1);
        }
        sb_puts(o, "}");
        free(e);
    } else if (json_is_array(v)) {
        sb_puts(o, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_puts(o, ",");
            fmt(c, json_array_get(v, i), escape_keys, depth + 1);
        }
        sb_puts(o, "]");
    } else {
        py_str(o, v, depth);
    }
}

/* `required:[` + <|"|>item<|"|>,... + `]` over `for item in v` */
static void put_required(rctx *c, const json_t *v) {
    json_t *l = py_list(c, v, "\"required\" must be a list");
    if (!l) return;
    sb_puts(&c->out, "required:[");
    for (size_t i = 0; i < json_array_size(l); i++) {
        if (i) sb_puts(&c->out, ",");
        sb_puts(&c->out, Q);
        py_str(&c->out, json_array_get(l, i), 0);
        sb_puts(&c->out, Q);
    }
    sb_puts(&c->out, "]");
    json_decref(l);
}

/* ---- tool declarations (§5) -------------------------------------------------- */

static void format_parameters(rctx *c, const json_t *props, int depth);

static void comma(rctx *c, int *add_comma) {
    if (*add_comma) sb_puts(&c->out, ",");
    else *add_comma = 1;
}

static void format_items(rctx *c, const json_t *items, int depth) {
    size_t n;
    kv_ent *e = dictsort(c, items, &n);
    int first = 0;
    sb_puts(&c->out, "items:{");
    for (size_t i = 0; i < n && !c->failed; i++) {
        const char *ik = e[i].key;
        json_t *iv = e[i].val;
        if (json_is_null(iv)) continue;
        if (first) sb_puts(&c->out, ",");
        first = 1;
        if (!strcmp(ik, "properties")) {
            sb_puts(&c->out, "properties:{");
            if (json_is_object(iv)) format_parameters(c, iv, depth + 1);
            sb_puts(&c->out, "}");
        } else if (!strcmp(ik, "required")) {
            put_required(c, iv);
        } else if (!strcmp(ik, "type")) {
            sb_puts(&c->out, "type:");
            if (json_is_string(iv)) {
                size_t un;
                char *u = py_upper(iv, &un);
                json_t *us = u ? json_stringn(u, un) : NULL;
                fmt(c, us, 1, depth + 1);
                json_decref(us);
                free(u);
            } else {
                json_t *l = py_list(c, iv, "items.type must be a string or a list");
                json_t *ul = json_array();
                for (size_t k = 0; l && ul && k < json_array_size(l); k++) {
                    size_t un;
                    char *u = py_upper(json_array_get(l, k), &un);
                    if (u) json_array_append_new(ul, json_stringn(u, un));
                    free(u);
                }
                if (l) fmt(c, ul, 1, depth + 1);
                json_decref(ul);
                json_decref(l);
            }
        } else {
            sb_puts(&c->out, ik);
            sb_puts(&c->out, ":");
            fmt(c, iv, 1, depth + 1);
        }
    }
    sb_puts(&c->out, "}");
    free(e);
}

/* The -interleaved template's property body (spec §9): nullable before the
 * type-specific part, and hard-coded leading commas for properties,
 * required and items that do not set add_comma. */
static void format_property_interleaved(rctx *c, const json_t *v, int is_string, int is_array, int is_object,
                                        int *add_comma, int depth) {
    if (truthy(get(v, "nullable"))) {
        comma(c, add_comma);
        sb_puts(&c->out, "nullable:true");
    }
    if (is_string) {
        json_t *en = get(v, "enum");
        if (truthy(en)) {
            comma(c, add_comma);
            sb_puts(&c->out, "enum:");
            fmt(c, en, 1, depth + 1);
        }
    } else if (is_object) {
        json_t *pp = get(v, "properties");
        sb_puts(&c->out, ",properties:{");
        format_parameters(c, json_is_object(pp) ? pp : v, depth + 1);
        sb_puts(&c->out, "}");
        json_t *req = get(v, "required");
        if (truthy(req)) {
            sb_puts(&c->out, ",");
            put_required(c, req);
        }
    } else if (is_array) {
        json_t *items = get(v, "items");
        if (json_is_object(items) && json_object_size(items)) {
            sb_puts(&c->out, ",");
            format_items(c, items, depth);
        }
    }
}

static int is_standard_key(const char *k) {
    return !strcmp(k, "description") || !strcmp(k, "type") || !strcmp(k, "properties") ||
           !strcmp(k, "required") || !strcmp(k, "nullable");
}

/* The template's format_parameters macro: one `key:{...}` per property. */
static void format_parameters(rctx *c, const json_t *props, int depth) {
    if (depth > 200) { fail(c, "schema nested too deeply"); return; }
    if (!json_is_object(props)) { fail(c, "\"properties\" must be an object"); return; }
    size_t n;
    kv_ent *e = dictsort(c, props, &n);
    int found_first = 0;
    for (size_t i = 0; i < n && !c->failed; i++) {
        const char *key = e[i].key;
        json_t *v = e[i].val;
        if (is_standard_key(key)) continue;
        if (found_first) sb_puts(&c->out, ",");
        found_first = 1;
        sb_puts(&c->out, key);
        sb_puts(&c->out, ":{");
        int add_comma = 0;
        json_t *desc = get(v, "description"), *type = get(v, "type");
        if (truthy(desc)) {
            sb_puts(&c->out, "description:" Q);
            py_str(&c->out, desc, 0);
            sb_puts(&c->out, Q);
            add_comma = 1;
        }
        size_t tn;
        char *T = py_upper(type, &tn);
        if (!T) { c->out.oom = 1; break; }
        int is_string = !strcmp(T, "STRING") && tn == 6, is_array = !strcmp(T, "ARRAY") && tn == 5,
            is_object = !strcmp(T, "OBJECT") && tn == 6;
        if (c->interleaved) {
            format_property_interleaved(c, v, is_string, is_array, is_object, &add_comma, depth);
        } else {
            if (is_string) {
                json_t *en = get(v, "enum");
                if (truthy(en)) {
                    comma(c, &add_comma);
                    sb_puts(&c->out, "enum:");
                    fmt(c, en, 1, depth + 1);
                }
            } else if (is_array) {
                json_t *items = get(v, "items");
                if (json_is_object(items) && json_object_size(items)) {
                    comma(c, &add_comma);
                    format_items(c, items, depth);
                }
            }
            if (truthy(get(v, "nullable"))) {
                comma(c, &add_comma);
                sb_puts(&c->out, "nullable:true");
            }
            if (is_object) {
                json_t *pp = get(v, "properties");
                comma(c, &add_comma);
                sb_puts(&c->out, "properties:{");
                /* properties defined and a mapping, else the schema itself (v is
                 * a mapping here: a non-mapping has no type). */
                format_parameters(c, json_is_object(pp) ? pp : v, depth + 1);
                sb_puts(&c->out, "}");
                json_t *req = get(v, "required");
                if (truthy(req)) {
                    comma(c, &add_comma);
                    put_required(c, req);
                }
            }
        }
        comma(c, &add_comma);
        sb_puts(&c->out, "type:" Q);
        sb_put(&c->out, T, tn);
        sb_puts(&c->out, Q "}");
        free(T);
    }
    free(e);
}

/* `'response' in function`: key test for a mapping, substring test for a
 * string, element test for a list. */
static int py_contains(rctx *c, const json_t *v, const char *s) {
    if (json_is_object(v)) return json_object_get(v, s) != NULL;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (str_is(json_array_get(v, i), s)) return 1;
        return 0;
    }
    if (json_is_string(v)) return memmem(json_string_value(v), json_string_length(v), s, strlen(s)) != NULL;
    fail(c, "\"function\" is not a container");
    return 0;
}

static void format_declaration(rctx *c, const json_t *tool) {
    json_t *fn = get(tool, "function");
    if (!fn) { fail(c, "missing \"function\""); return; }
    sb_puts(&c->out, "declaration:");
    py_str(&c->out, get(fn, "name"), 0);
    sb_puts(&c->out, "{description:" Q);
    py_str(&c->out, get(fn, "description"), 0);
    sb_puts(&c->out, Q);
    json_t *params = get(fn, "parameters");
    if (truthy(params)) {
        sb_puts(&c->out, ",parameters:{");
        json_t *props = get(params, "properties");
        if (truthy(props)) {
            sb_puts(&c->out, "properties:{");
            format_parameters(c, props, 0);
            sb_puts(&c->out, "},");
        }
        json_t *req = get(params, "required");
        if (truthy(req)) {
            put_required(c, req);
            sb_puts(&c->out, ",");
        }
        json_t *type = get(params, "type");
        if (truthy(type)) {
            size_t un;
            char *u = py_upper(type, &un);
            sb_puts(&c->out, "type:" Q);
            if (u) sb_put(&c->out, u, un);
            sb_puts(&c->out, Q "}");
            free(u);
        }
    }
    if (py_contains(c, fn, "response")) {
        json_t *rd = get(fn, "response");
        sb_puts(&c->out, ",response:{");
        json_t *d = get(rd, "description");
        if (truthy(d)) {
            sb_puts(&c->out, "description:" Q);
            py_str(&c->out, d, 0);
            sb_puts(&c->out, Q ",");
        }
        if (upper_is(get(rd, "type"), "OBJECT")) sb_puts(&c->out, "type:" Q "OBJECT" Q "}");
    }
    sb_puts(&c->out, "}");
}

/* ---- messages ---------------------------------------------------------------- */

/* Python == between JSON values (1 == 1.0 == True). */
static int py_eq(const json_t *a, const json_t *b) {
    if (!a) a = json_null();
    if (!b) b = json_null();
    int an = json_is_number(a) || json_is_boolean(a), bn = json_is_number(b) || json_is_boolean(b);
    if (an && bn) {
        double x = json_is_boolean(a) ? (double)json_is_true(a) : json_number_value(a);
        double y = json_is_boolean(b) ? (double)json_is_true(b) : json_number_value(b);
        if (json_is_integer(a) && json_is_integer(b)) return json_integer_value(a) == json_integer_value(b);
        return x == y;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

static void tool_response_block(rctx *c, const json_t *name, const json_t *resp) {
    if (!json_is_string(name)) {
        fail(c, name && !json_is_null(name) ? "tool name must be a string"
                                            : "tool result has no name (no matching tool_call_id and no \"name\")");
        return;
    }
    sb_puts(&c->out, G4_MK_RESPONSE_OPEN "response:");
    py_str(&c->out, name, 0);
    if (json_is_object(resp)) {
        size_t n;
        kv_ent *e = dictsort(c, resp, &n);
        sb_puts(&c->out, "{");
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(&c->out, ",");
            sb_puts(&c->out, e[i].key);
            sb_puts(&c->out, ":");
            fmt(c, e[i].val, 0, 1);
        }
        sb_puts(&c->out, "}");
        free(e);
    } else {
        sb_puts(&c->out, "{value:");
        fmt(c, resp, 0, 1);
        sb_puts(&c->out, "}");
    }
    sb_puts(&c->out, G4_MK_RESPONSE_CLOSE);
}

enum prev_type { P_NONE, P_THINK, P_TOOL, P_TOOL_CALL, P_TOOL_RESPONSE, P_MEDIA };

static const json_t *role_of(const json_t *m) { return get(m, "role"); }

/* Render one non-tool message loop[i]. Returns the new prev type. */
static int render_message(rctx *c, const json_t *loop, size_t i, size_t nloop, long last_user) {
    const json_t *m = json_array_get(loop, i);
    const json_t *mrole = role_of(m);
    if (!json_is_string(mrole)) { fail(c, "\"role\" must be a string"); return P_NONE; }
    int prev = P_NONE;
    int is_model = str_is(mrole, "assistant");
    /* role word: "model" for assistant, anything else verbatim */
    int role_model = is_model || str_is(mrole, "model");

    /* nearest earlier non-tool message */
    const json_t *prev_role = NULL;
    for (size_t j = i; j-- > 0;) {
        const json_t *r = role_of(json_array_get(loop, j));
        if (!str_is(r, "tool")) { prev_role = r; break; }
    }
    if (!(role_model && str_is(prev_role, "assistant"))) {
        sb_puts(&c->out, G4_MK_TURN_OPEN);
        if (is_model) sb_puts(&c->out, "model");
        else sb_put(&c->out, json_string_value(mrole), json_string_length(mrole));
        sb_puts(&c->out, "\n");
    }

    json_t *tool_calls = get(m, "tool_calls");
    json_t *thinking = get(m, "reasoning");
    if (!truthy(thinking)) thinking = get(m, "reasoning_content");
    if (truthy(thinking) && (long)i > last_user && truthy(tool_calls)) {
        if (!json_is_string(thinking)) { fail(c, "\"reasoning_content\" must be a string"); return prev; }
        sb_puts(&c->out, G4_MK_CHANNEL_OPEN "thought\n");
        sb_put(&c->out, json_string_value(thinking), json_string_length(thinking));
        sb_puts(&c->out, "\n" G4_MK_CHANNEL_CLOSE);
    }

    json_t *calls = NULL;
    if (truthy(tool_calls)) {
        calls = py_list(c, tool_calls, "\"tool_calls\" must be a list");
        if (!calls) return prev;
        for (size_t k = 0; k < json_array_size(calls) && !c->failed; k++) {
            json_t *tc = json_array_get(calls, k);
            json_t *fn = get(tc, "function");
            json_t *name = get(fn, "name");
            if (!json_is_string(name)) {
                snprintf(c->path + strlen(c->path), sizeof c->path - strlen(c->path), ".tool_calls[%zu]", k);
                fail(c, "function.name must be a string");
                break;
            }
            sb_puts(&c->out, G4_MK_CALL_OPEN "call:");
            sb_put(&c->out, json_string_value(name), json_string_length(name));
            sb_puts(&c->out, "{");
            json_t *args = get(fn, "arguments"), *parsed = NULL;
            if (json_is_string(args) && (c->compat & G4_CHAT_COMPAT_JSON_ARGS)) {
                parsed = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
                if (json_is_object(parsed)) args = parsed;
            }
            if (json_is_object(args)) {
                size_t n;
                kv_ent *e = dictsort(c, args, &n);
                for (size_t a = 0; a < n; a++) {
                    if (a) sb_puts(&c->out, ",");
                    sb_puts(&c->out, e[a].key);
                    sb_puts(&c->out, ":");
                    fmt(c, e[a].val, 0, 1);
                }
                free(e);
            } else if (json_is_string(args)) {
                /* inserted raw (the template does not parse it) */
                sb_put(&c->out, json_string_value(args), json_string_length(args));
            }
            sb_puts(&c->out, "}" G4_MK_CALL_CLOSE);
            json_decref(parsed);
        }
        prev = P_TOOL_CALL;
    }

    int responded = 0;
    json_t *legacy = get(m, "tool_responses");
    if (!c->failed && truthy(legacy)) {
        json_t *l = py_list(c, legacy, "\"tool_responses\" must be a list");
        for (size_t k = 0; l && k < json_array_size(l) && !c->failed; k++) {
            json_t *tr = json_array_get(l, k);
            json_t *name = get(tr, "name");
            json_t *unknown = json_string("unknown");
            tool_response_block(c, name ? name : unknown, get(tr, "response"));
            json_decref(unknown);
            responded = 1;
            prev = P_TOOL_RESPONSE;
        }
        json_decref(l);
    } else if (!c->failed && calls) {
        /* OpenAI form: the run of role:"tool" messages that follows */
        for (size_t k = i + 1; k < nloop && !c->failed; k++) {
            const json_t *f = json_array_get(loop, k);
            if (!str_is(role_of(f), "tool")) break;
            snprintf(c->path, sizeof c->path, "messages[%zu] (tool result)", k);
            const json_t *name = get(f, "name");
            if (!name) name = json_null();
            for (size_t t = 0; t < json_array_size(calls); t++) {
                json_t *tc = json_array_get(calls, t);
                if (py_eq(get(tc, "id"), get(f, "tool_call_id"))) name = get(get(tc, "function"), "name");
            }
            json_t *body = get(f, "content");
            if (json_is_string(body)) {
                tool_response_block(c, name, body);
            } else if (json_is_array(body) || json_is_object(body)) {
                json_t *parts = py_list(c, body, "content");
                sbuf t = {0};
                for (size_t p = 0; parts && p < json_array_size(parts); p++) {
                    json_t *part = json_array_get(parts, p);
                    if (!json_is_object(part)) { fail(c, "content parts must be objects"); break; }
                    if (!str_is(get(part, "type"), "text")) continue;
                    json_t *tx = get(part, "text");
                    if (!json_is_string(tx)) { fail(c, "text part needs a string \"text\""); break; }
                    sb_put(&t, json_string_value(tx), json_string_length(tx));
                }
                json_decref(parts);
                if (t.oom) c->out.oom = 1;
                json_t *s = json_stringn(t.p ? t.p : "", t.n);
                if (!c->failed) tool_response_block(c, name, s);
                json_decref(s);
                free(t.p);
            } else {
                tool_response_block(c, name, body ? body : json_null());
            }
            responded = 1;
            prev = P_TOOL_RESPONSE;
        }
        snprintf(c->path, sizeof c->path, "messages[%zu]", i);
    }
    json_decref(calls);
    if (c->failed) return prev;

    json_t *content = get(m, "content");
    if (json_is_string(content)) {
        if (role_model) put_strip_thinking(c, json_string_value(content), json_string_length(content));
        else put_trimmed(&c->out, json_string_value(content), json_string_length(content));
    } else if (json_is_array(content) || json_is_object(content)) {
        json_t *parts = py_list(c, content, "content");
        for (size_t p = 0; parts && p < json_array_size(parts) && !c->failed; p++) {
            json_t *it = json_array_get(parts, p);
            json_t *type = get(it, "type");
            if (str_is(type, "text")) {
                json_t *tx = get(it, "text");
                if (role_model) {
                    if (!json_is_string(tx)) { fail(c, "text part needs a string \"text\""); break; }
                    put_strip_thinking(c, json_string_value(tx), json_string_length(tx));
                } else {
                    put_trim(c, tx);
                }
            } else if (str_is(type, "image")) {
                sb_puts(&c->out, G4_MK_IMAGE);
                prev = P_MEDIA;
            } else if (str_is(type, "audio")) {
                sb_puts(&c->out, G4_MK_AUDIO);
                prev = P_MEDIA;
            } else if (str_is(type, "video")) {
                sb_puts(&c->out, G4_MK_VIDEO);
                prev = P_MEDIA;
            }
        }
        json_decref(parts);
    }
    if (prev == P_TOOL_CALL && !responded) sb_puts(&c->out, G4_MK_RESPONSE_OPEN);
    else if (!(responded && !truthy(content))) sb_puts(&c->out, G4_MK_TURN_CLOSE "\n");
    return prev;
}

/* One message under the -interleaved template (spec §9): role:"tool"
 * messages are ordinary turns, only legacy tool_responses are results,
 * reasoning_content goes before the calls without the extra "\n", and the
 * header is suppressed only for calls right after tool responses. */
static void render_message_il(rctx *c, const json_t *m, size_t i, long last_user, int *prev) {
    const json_t *mrole = role_of(m);
    if (!json_is_string(mrole)) { fail(c, "\"role\" must be a string"); return; }
    int is_model = str_is(mrole, "assistant");
    int role_model = is_model || str_is(mrole, "model");
    json_t *tool_calls = get(m, "tool_calls");
    if (!(*prev == P_TOOL_RESPONSE && truthy(tool_calls))) {
        sb_puts(&c->out, G4_MK_TURN_OPEN);
        if (is_model) sb_puts(&c->out, "model");
        else sb_put(&c->out, json_string_value(mrole), json_string_length(mrole));
        sb_puts(&c->out, "\n");
    }
    *prev = P_NONE;
    if (truthy(tool_calls)) {
        json_t *rc = get(m, "reasoning_content");
        if (truthy(rc) && (long)i > last_user) {
            sb_puts(&c->out, G4_MK_CHANNEL_OPEN "thought\n");
            py_str(&c->out, rc, 0);
            sb_puts(&c->out, G4_MK_CHANNEL_CLOSE);
        }
        json_t *calls = py_list(c, tool_calls, "\"tool_calls\" must be a list");
        for (size_t k = 0; calls && k < json_array_size(calls) && !c->failed; k++) {
            json_t *fn = get(json_array_get(calls, k), "function");
            json_t *name = get(fn, "name");
            if (!json_is_string(name)) { fail(c, "tool_calls[].function.name must be a string"); break; }
            sb_puts(&c->out, G4_MK_CALL_OPEN "call:");
            sb_put(&c->out, json_string_value(name), json_string_length(name));
            sb_puts(&c->out, "{");
            json_t *args = get(fn, "arguments"), *parsed = NULL;
            if (json_is_string(args) && (c->compat & G4_CHAT_COMPAT_JSON_ARGS)) {
                parsed = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
                if (json_is_object(parsed)) args = parsed;
            }
            if (json_is_object(args)) {
                size_t n;
                kv_ent *e = dictsort(c, args, &n);
                for (size_t a = 0; a < n; a++) {
                    if (a) sb_puts(&c->out, ",");
                    sb_puts(&c->out, e[a].key);
                    sb_puts(&c->out, ":");
                    fmt(c, e[a].val, 0, 1);
                }
                free(e);
            } else if (json_is_string(args)) {
                sb_put(&c->out, json_string_value(args), json_string_length(args));
            }
            sb_puts(&c->out, "}" G4_MK_CALL_CLOSE);
            json_decref(parsed);
        }
        json_decref(calls);
        if (c->failed) return;
        *prev = P_TOOL_CALL;
    }
    json_t *trs = get(m, "tool_responses");
    if (truthy(trs)) {
        json_t *l = py_list(c, trs, "\"tool_responses\" must be a list");
        for (size_t k = 0; l && k < json_array_size(l) && !c->failed; k++) {
            json_t *tr = json_array_get(l, k);
            json_t *name = get(tr, "name");
            json_t *unknown = json_string("unknown");
            tool_response_block(c, name ? name : unknown, get(tr, "response"));
            json_decref(unknown);
        }
        json_decref(l);
        if (c->failed) return;
        *prev = P_TOOL_RESPONSE;
    }
    json_t *content = get(m, "content");
    if (json_is_string(content)) {
        if (role_model) put_strip_thinking(c, json_string_value(content), json_string_length(content));
        else put_trimmed(&c->out, json_string_value(content), json_string_length(content));
    } else if (json_is_array(content) || json_is_object(content)) {
        json_t *parts = py_list(c, content, "content");
        for (size_t p = 0; parts && p < json_array_size(parts) && !c->failed; p++) {
            json_t *it = json_array_get(parts, p);
            json_t *type = get(it, "type");
            if (str_is(type, "text")) {
                json_t *tx = get(it, "text");
                if (role_model) {
                    if (!json_is_string(tx)) { fail(c, "text part needs a string \"text\""); break; }
                    put_strip_thinking(c, json_string_value(tx), json_string_length(tx));
                } else {
                    put_trim(c, tx);
                }
            } else if (str_is(type, "image")) { sb_puts(&c->out, G4_MK_IMAGE); *prev = P_MEDIA; }
            else if (str_is(type, "audio")) { sb_puts(&c->out, G4_MK_AUDIO); *prev = P_MEDIA; }
            else if (str_is(type, "video")) { sb_puts(&c->out, G4_MK_VIDEO); *prev = P_MEDIA; }
        }
        json_decref(parts);
    }
    if (!(truthy(trs) && !truthy(content))) sb_puts(&c->out, G4_MK_TURN_CLOSE "\n");
}

char *g4_chat_render(const json_t *request, const g4_chat_options *opt, g4_chat_family family,
                     size_t *len, g4_error *err) {
    rctx c = { .err = err, .compat = opt ? opt->compat : 0, .interleaved = family == G4_CHAT_FAMILY_INTERLEAVED };
    const json_t *messages, *tools = NULL, *think = NULL, *agp = NULL, *bos = NULL;
    if (family != G4_CHAT_FAMILY_E && family != G4_CHAT_FAMILY_31B && family != G4_CHAT_FAMILY_INTERLEAVED) {
        g4_seterr(err, "chat render: unknown template family");
        return NULL;
    }
    if (json_is_array(request)) {
        messages = request;
    } else if (json_is_object(request)) {
        messages = json_object_get(request, "messages");
        tools = json_object_get(request, "tools");
        agp = json_object_get(request, "add_generation_prompt");
        bos = json_object_get(request, "bos_token");
        think = json_object_get(request, "enable_thinking");
        json_t *kw = json_object_get(request, "chat_template_kwargs");
        if (json_is_object(kw) && json_object_get(kw, "enable_thinking"))
            think = json_object_get(kw, "enable_thinking");
    } else {
        g4_seterr(err, "chat request: must be a JSON object");
        return NULL;
    }
    if (!json_is_array(messages)) {
        g4_seterr(err, "chat request: \"messages\" must be a list");
        return NULL;
    }
    if (json_array_size(messages) == 0) {
        g4_seterr(err, "chat request: \"messages\" is empty");
        return NULL;
    }
    int thinking = truthy(think);
    int gen = truthy(agp);
    if (opt && opt->enable_thinking >= 0) thinking = opt->enable_thinking != 0;
    if (opt && opt->add_generation_prompt >= 0) gen = opt->add_generation_prompt != 0;

    if (opt && opt->bos_token) sb_puts(&c.out, opt->bos_token);
    else if (bos) py_str(&c.out, bos, 0);
    else sb_puts(&c.out, G4_MK_BOS);

    int prev = P_NONE;
    const json_t *m0 = json_array_get(messages, 0);
    int first_is_system = str_is(role_of(m0), "system") || str_is(role_of(m0), "developer");
    size_t skip = 0;
    if (thinking || truthy(tools) || first_is_system) {
        sb_puts(&c.out, G4_MK_TURN_OPEN "system\n");
        if (thinking) { sb_puts(&c.out, G4_MK_THINK "\n"); prev = P_THINK; }
        if (first_is_system) {
            put_trim(&c, get(m0, "content"));
            skip = 1;
        }
        if (truthy(tools)) {
            json_t *tl = py_list(&c, tools, "\"tools\" must be a list");
            for (size_t t = 0; tl && t < json_array_size(tl) && !c.failed; t++) {
                snprintf(c.path, sizeof c.path, "tools[%zu]", t);
                sbuf save = c.out;
                /* declaration | trim: render into a scratch buffer first */
                c.out = (sbuf){0};
                format_declaration(&c, json_array_get(tl, t));
                sbuf decl = c.out;
                c.out = save;
                if (decl.oom) c.out.oom = 1;
                sb_puts(&c.out, G4_MK_TOOL_OPEN);
                if (decl.p) put_trimmed(&c.out, decl.p, decl.n);
                sb_puts(&c.out, G4_MK_TOOL_CLOSE);
                free(decl.p);
            }
            json_decref(tl);
            prev = P_TOOL;
        }
        sb_puts(&c.out, G4_MK_TURN_CLOSE "\n");
    }

    /* loop = messages[skip:] as a view */
    json_t *loop = json_array();
    if (!loop) c.out.oom = 1;
    for (size_t i = skip; loop && i < json_array_size(messages); i++)
        json_array_append(loop, json_array_get(messages, i));
    size_t nloop = loop ? json_array_size(loop) : 0;
    long last_user = -1;
    for (size_t i = 0; i < nloop; i++)
        if (str_is(role_of(json_array_get(loop, i)), "user")) last_user = (long)i;

    for (size_t i = 0; i < nloop && !c.failed && !c.out.oom; i++) {
        const json_t *m = json_array_get(loop, i);
        snprintf(c.path, sizeof c.path, "messages[%zu]", i + skip);
        if (!json_is_object(m)) { fail(&c, "must be an object"); break; }
        if (c.interleaved) {
            render_message_il(&c, m, i, last_user, &prev);
            continue;
        }
        if (str_is(role_of(m), "tool")) continue;
        prev = render_message(&c, loop, i, nloop, last_user);
    }
    json_decref(loop);

    if (c.interleaved) {
        /* header unless the turn is open after tool responses; the empty
         * thought pre-fill independently of it */
        if (!c.failed && gen) {
            if (prev != P_TOOL_RESPONSE) sb_puts(&c.out, G4_MK_TURN_OPEN "model\n");
            if (!thinking) sb_puts(&c.out, G4_MK_CHANNEL_OPEN "thought\n" G4_MK_CHANNEL_CLOSE);
        }
        gen = 0;
    }

    if (!c.failed && gen && prev != P_TOOL_RESPONSE && prev != P_TOOL_CALL) {
        sb_puts(&c.out, G4_MK_TURN_OPEN "model\n");
        if (!thinking && family == G4_CHAT_FAMILY_31B) sb_puts(&c.out, G4_MK_CHANNEL_OPEN "thought\n" G4_MK_CHANNEL_CLOSE);
    } else if (!c.failed && gen && (c.compat & G4_CHAT_COMPAT_GEN_AFTER_TURN) && c.out.n >= 8 &&
               !memcmp(c.out.p + c.out.n - 8, G4_MK_TURN_CLOSE "\n", 8)) {
        sb_puts(&c.out, G4_MK_TURN_OPEN "model\n");
    }
    if (!c.failed && c.out.oom) g4_seterr(err, "chat render: out of memory");
    if (c.failed || c.out.oom) {
        free(c.out.p);
        return NULL;
    }
    if (!c.out.p) c.out.p = calloc(1, 1);
    if (len) *len = c.out.n;
    return c.out.p;
}

/* ---- family selection ------------------------------------------------------------ */

g4_chat_family g4_chat_family_from_template(const char *text) {
    if (!text) return G4_CHAT_FAMILY_UNKNOWN;
    /* Both official templates contain the tool-call syntax and turn markers
     * (llama.cpp keys on '<|tool_call>call:'); only the 26B/31B one writes
     * the empty thought block, as the Jinja literal '<|channel>thought\n<channel|>'. */
    if (!strstr(text, G4_MK_CALL_OPEN "call:") && !strstr(text, G4_MK_TURN_OPEN))
        return G4_CHAT_FAMILY_UNKNOWN;
    /* llama.cpp's -interleaved variant of the earlier template: no OpenAI
     * tool-message branch, reasoning kept between calls */
    if (!strstr(text, "OpenAI Chat Completions") && strstr(text, "last_user_message"))
        return G4_CHAT_FAMILY_INTERLEAVED;
    if (strstr(text, G4_MK_CHANNEL_OPEN "thought\\n" G4_MK_CHANNEL_CLOSE)) return G4_CHAT_FAMILY_31B;
    return G4_CHAT_FAMILY_E;
}

g4_chat_family g4_chat_family_from_model(uint32_t n_layers, uint32_t ple_dim) {
    if (ple_dim > 0 || n_layers == 35 || n_layers == 42) return G4_CHAT_FAMILY_E;
    return G4_CHAT_FAMILY_31B;
}

g4_chat_family g4_chat_family_from_name(const char *name) {
    static const char *const e[] = { "e", "e2b", "e4b", "gemma-4-e2b", "gemma-4-e4b" };
    static const char *const b[] = { "31b", "26b", "26b-a4b", "dense", "moe", "gemma-4-31b", "gemma-4-26b-a4b" };
    if (name && (!strcasecmp(name, "interleaved") || !strcasecmp(name, "31b-interleaved")))
        return G4_CHAT_FAMILY_INTERLEAVED;
    if (!name) return G4_CHAT_FAMILY_UNKNOWN;
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
        if (!strcasecmp(name, e[i])) return G4_CHAT_FAMILY_E;
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (!strcasecmp(name, b[i])) return G4_CHAT_FAMILY_31B;
    return G4_CHAT_FAMILY_UNKNOWN;
}

const char *g4_chat_family_name(g4_chat_family f) {
    switch (f) {
    case G4_CHAT_FAMILY_E: return "e";
    case G4_CHAT_FAMILY_31B: return "31b";
    case G4_CHAT_FAMILY_INTERLEAVED: return "interleaved";
    default: return "unknown";
    }
}

/* Whole small text file, NUL-terminated; NULL if unreadable. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    sbuf b = {0};
    char tmp[8192];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0 && b.n < ((size_t)64 << 20)) sb_put(&b, tmp, n);
    fclose(f);
    if (b.oom) { free(b.p); return NULL; }
    return b.p ? b.p : calloc(1, 1);
}

g4_chat_family g4_chat_family_from_gguf(const struct g4_gguf_file *g) {
    g4_chat_family f = G4_CHAT_FAMILY_UNKNOWN;
    char *tmpl = NULL;
    g4_error err;
    if (g4_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &err) == 0) {
        f = g4_chat_family_from_template(tmpl);
        free(tmpl);
    }
    if (f == G4_CHAT_FAMILY_UNKNOWN) {
        char *arch = NULL;
        char key[256];
        uint32_t nl = 0, ple = 0;
        if (g4_gguf_get_str(g, "general.architecture", &arch, &err) != 0) arch = NULL;
        snprintf(key, sizeof key, "%s.block_count", arch ? arch : "gemma4");
        g4_gguf_get_u32(g, key, &nl, &err);
        snprintf(key, sizeof key, "%s.embedding_length_per_layer_input", arch ? arch : "gemma4");
        g4_gguf_get_u32(g, key, &ple, &err);
        free(arch);
        f = g4_chat_family_from_model(nl, ple);
    }
    return f;
}

/* HF folder: chat_template.jinja, tokenizer_config.json's chat_template,
 * else config.json's shape; a file is read as GGUF. */
g4_chat_family g4_chat_family_from_path(const char *path, g4_error *err) {
    struct stat st;
    if (stat(path, &st) != 0) { g4_seterr(err, "%s: cannot open", path); return G4_CHAT_FAMILY_UNKNOWN; }
    if (S_ISDIR(st.st_mode)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/chat_template.jinja", path);
        char *t = read_text(p);
        if (t) {
            g4_chat_family f = g4_chat_family_from_template(t);
            free(t);
            if (f != G4_CHAT_FAMILY_UNKNOWN) return f;
        }
        /* older HF layout: the template inside tokenizer_config.json */
        snprintf(p, sizeof p, "%s/tokenizer_config.json", path);
        json_t *tc_cfg = json_load_file(p, 0, NULL);
        const char *ct = json_string_value(json_object_get(tc_cfg, "chat_template"));
        g4_chat_family tf = ct ? g4_chat_family_from_template(ct) : G4_CHAT_FAMILY_UNKNOWN;
        json_decref(tc_cfg);
        if (tf != G4_CHAT_FAMILY_UNKNOWN) return tf;
        snprintf(p, sizeof p, "%s/config.json", path);
        json_error_t je;
        json_t *cfg = json_load_file(p, 0, &je);
        if (!cfg) { g4_seterr(err, "%s: %s", p, je.text); return G4_CHAT_FAMILY_UNKNOWN; }
        json_t *tc = json_object_get(cfg, "text_config");
        json_t *src = json_is_object(tc) ? tc : cfg;
        json_int_t nl = json_integer_value(json_object_get(src, "num_hidden_layers"));
        json_int_t ple = json_integer_value(json_object_get(src, "hidden_size_per_layer_input"));
        json_decref(cfg);
        if (nl < 0 || ple < 0 || nl > 100000 || ple > 1000000) {
            g4_seterr(err, "%s: bad num_hidden_layers / hidden_size_per_layer_input", p);
            return G4_CHAT_FAMILY_UNKNOWN;
        }
        return g4_chat_family_from_model((uint32_t)nl, (uint32_t)ple);
    }
    g4_gguf_file *g = g4_gguf_open(path, err);
    if (!g) return G4_CHAT_FAMILY_UNKNOWN;
    g4_chat_family f = g4_chat_family_from_gguf(g);
    g4_gguf_close(g);
    return f;
}
