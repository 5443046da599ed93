/* JSON Schema (the subset structured-output APIs accept) -> g4_grammar.
 * Nodes are indexes, so a recursive $ref is a cycle in the graph; each
 * node's least nesting depth (a fixpoint) then tells the automaton which
 * branches can still finish, so no reachable state is a dead end. Keywords
 * that constrain values in ways the automaton does not enforce (pattern,
 * minimum, ...) are errors rather than silently ignored. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "constrain/constrain.h"

#define INF_DEPTH (1 << 20)

typedef struct comp {
    g4_grammar *g;
    json_t *doc;
    json_t **memo_k;
    int32_t *memo_v;
    int n_memo, cap_memo;
    char *err;
    size_t errlen;
    int failed, depth;
} comp;

static int fail(comp *c, const char *ptr, const char *fmt, ...) {
    if (c->failed) return -1;
    c->failed = 1;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->err && c->errlen) snprintf(c->err, c->errlen, "schema %s: %s", ptr[0] ? ptr : "#", msg);
    return -1;
}

static int grow(void **p, int64_t *cap, int64_t need, size_t el) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * el);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static int new_node(comp *c, const char *ptr) {
    g4_grammar *g = c->g;
    if (g->n_nodes >= G4_CMAX_NODES) return fail(c, ptr, "more than %d schema nodes", G4_CMAX_NODES);
    int64_t cap = g->cap_nodes;
    if (grow((void **)&g->nodes, &cap, g->n_nodes + 1, sizeof *g->nodes)) return fail(c, ptr, "out of memory");
    g->cap_nodes = (int32_t)cap;
    g4_cnode *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->lits = n->props = n->addl = -1;
    n->max_len = n->max_items = -1;
    n->items = 0;
    n->mindepth = INF_DEPTH;
    return g->n_nodes++;
}

/* ---- literal sets ------------------------------------------------------------ */

typedef struct sbuf {
    uint16_t *s;
    int n, cap, bad;
} sbuf;

static void sb_sym(sbuf *b, int sym) {
    if (b->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 64;
        uint16_t *q = realloc(b->s, (size_t)nc * sizeof *q);
        if (!q) { b->bad = 1; return; }
        b->s = q;
        b->cap = nc;
    }
    b->s[b->n++] = (uint16_t)sym;
}
static void sb_bytes(sbuf *b, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) sb_sym(b, (uint8_t)p[i]);
}

static int add_lit(comp *c, const sbuf *b, int32_t val, int32_t bit, int req, const char *ptr) {
    g4_grammar *g = c->g;
    if (g->n_lits >= G4_CMAX_LITS) return fail(c, ptr, "more than %d enum values, keys and tool names", G4_CMAX_LITS);
    int64_t cap = g->cap_lits, cs = g->n_syms + b->n;
    int64_t capo = cap, capl = cap, capv = cap, capb = cap, capr = cap;
    if (grow((void **)&g->lit_off, &capo, g->n_lits + 1, sizeof *g->lit_off) ||
        grow((void **)&g->lit_len, &capl, g->n_lits + 1, sizeof *g->lit_len) ||
        grow((void **)&g->lit_val, &capv, g->n_lits + 1, sizeof *g->lit_val) ||
        grow((void **)&g->lit_bit, &capb, g->n_lits + 1, sizeof *g->lit_bit) ||
        grow((void **)&g->lit_req, &capr, g->n_lits + 1, sizeof *g->lit_req) ||
        grow((void **)&g->syms, &g->cap_syms, cs, sizeof *g->syms))
        return fail(c, ptr, "out of memory");
    g->cap_lits = (int32_t)capo;
    memcpy(g->syms + g->n_syms, b->s, (size_t)b->n * sizeof *b->s);
    int k = g->n_lits++;
    g->lit_off[k] = g->n_syms;
    g->lit_len[k] = b->n;
    g->lit_val[k] = val;
    g->lit_bit[k] = bit;
    g->lit_req[k] = (uint8_t)req;
    g->n_syms += b->n;
    return k;
}

static int lit_cmp(const void *a, const void *b, void *ctx) {
    int x = *(const int *)a, y = *(const int *)b;
    const g4_grammar *g = ctx;
    int lx = g->lit_len[x], ly = g->lit_len[y], l = lx < ly ? lx : ly;
    for (int i = 0; i < l; i++) {
        int d = (int)g->syms[g->lit_off[x] + i] - (int)g->syms[g->lit_off[y] + i];
        if (d) return d;
    }
    return lx - ly;
}

/* Literals first..n_lits become one set, sorted, duplicates dropped
 * (dup_ok = 0: a duplicate is an error). Returns the set index. */
static int close_set(comp *c, int first, int dup_ok, const char *ptr) {
    g4_grammar *g = c->g;
    int n = g->n_lits - first;
    if (n <= 0) return fail(c, ptr, "empty set of values");
    int *ix = malloc((size_t)n * sizeof *ix);
    int64_t *o = malloc((size_t)n * sizeof *o);
    int32_t *l = malloc((size_t)n * sizeof *l), *v = malloc((size_t)n * sizeof *v), *bt = malloc((size_t)n * sizeof *bt);
    uint8_t *r = malloc((size_t)n);
    if (!ix || !o || !l || !v || !bt || !r) {
        free(ix); free(o); free(l); free(v); free(bt); free(r);
        return fail(c, ptr, "out of memory");
    }
    for (int i = 0; i < n; i++) ix[i] = first + i;
    qsort_r(ix, (size_t)n, sizeof *ix, lit_cmp, g);   /* glibc: thread-safe, no global */
    int m = 0, dup = 0;
    for (int i = 0; i < n; i++) {
        if (m && lit_cmp(&ix[i], &ix[i - 1], g) == 0) { dup = 1; continue; }
        o[m] = g->lit_off[ix[i]]; l[m] = g->lit_len[ix[i]]; v[m] = g->lit_val[ix[i]];
        bt[m] = g->lit_bit[ix[i]]; r[m] = g->lit_req[ix[i]];
        m++;
    }
    for (int i = 0; i < m; i++) {
        g->lit_off[first + i] = o[i]; g->lit_len[first + i] = l[i]; g->lit_val[first + i] = v[i];
        g->lit_bit[first + i] = bt[i]; g->lit_req[first + i] = r[i];
    }
    free(ix); free(o); free(l); free(v); free(bt); free(r);
    if (dup && !dup_ok) return fail(c, ptr, "duplicate name");
    g->n_lits = first + m;
    int64_t cap = g->cap_sets;
    if (grow((void **)&g->sets, &cap, g->n_sets + 1, sizeof *g->sets)) return fail(c, ptr, "out of memory");
    g->cap_sets = (int32_t)cap;
    g->sets[g->n_sets].first = first;
    g->sets[g->n_sets].n = m;
    return g->n_sets++;
}

/* A value as the output writes it: compact JSON, or Gemma's call syntax
 * (strings between <|"|>, bare keys, no whitespace). */
static int write_value(comp *c, sbuf *b, json_t *v, const char *ptr, int depth) {
    if (depth > G4_CMAX_DEPTH) return fail(c, ptr, "enum value nested deeper than %d", G4_CMAX_DEPTH);
    if (!c->g->gemma || !(json_is_string(v) || json_is_object(v) || json_is_array(v))) {
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!t) return fail(c, ptr, "out of memory");
        sb_bytes(b, t, strlen(t));
        free(t);
        return 0;
    }
    if (json_is_string(v)) {
        sb_sym(b, G4_SYM_QUOTE);
        sb_bytes(b, json_string_value(v), json_string_length(v));
        sb_sym(b, G4_SYM_QUOTE);
        return 0;
    }
    if (json_is_array(v)) {
        sb_sym(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_sym(b, ',');
            if (write_value(c, b, json_array_get(v, i), ptr, depth + 1)) return -1;
        }
        sb_sym(b, ']');
        return 0;
    }
    sb_sym(b, '{');
    const char *k;
    json_t *x;
    int first = 1;
    json_object_foreach(v, k, x) {
        if (!first) sb_sym(b, ',');
        first = 0;
        sb_bytes(b, k, strlen(k));
        sb_sym(b, ':');
        if (write_value(c, b, x, ptr, depth + 1)) return -1;
    }
    sb_sym(b, '}');
    return 0;
}

static int type_bit(const char *t) {
    static const struct { const char *s; int b; } T[] = {
        { "null", G4_T_NULL }, { "boolean", G4_T_BOOL }, { "integer", G4_T_INT }, { "number", G4_T_NUM | G4_T_INT },
        { "string", G4_T_STR }, { "array", G4_T_ARR }, { "object", G4_T_OBJ } };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (!strcmp(t, T[i].s)) return T[i].b;
    return 0;
}

static int value_types(json_t *v) {
    switch (json_typeof(v)) {
    case JSON_NULL: return G4_T_NULL;
    case JSON_TRUE: case JSON_FALSE: return G4_T_BOOL;
    case JSON_INTEGER: return G4_T_INT;
    case JSON_REAL: return G4_T_NUM;
    case JSON_STRING: return G4_T_STR;
    case JSON_ARRAY: return G4_T_ARR;
    default: return G4_T_OBJ;
    }
}

/* ptr + "/" + key with JSON pointer escapes, truncated to fit */
static void ptr_join(char *out, size_t cap, const char *ptr, const char *key) {
    size_t o = (size_t)snprintf(out, cap, "%s/", ptr[0] ? ptr : "#");
    if (o >= cap) { out[cap - 1] = 0; return; }
    for (const char *k = key; *k && o + 3 < cap; k++) {
        if (*k == '~') { out[o++] = '~'; out[o++] = '0'; }
        else if (*k == '/') { out[o++] = '~'; out[o++] = '1'; }
        else out[o++] = *k;
    }
    out[o] = 0;
}

static int get_count(comp *c, json_t *s, const char *key, int32_t dflt, const char *ptr, int32_t *out) {
    json_t *v = json_object_get(s, key);
    *out = dflt;
    if (!v) return 0;
    char p[300];
    ptr_join(p, sizeof p, ptr, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
        return fail(c, p, "must be an integer from 0 to 1000000");
    *out = (int32_t)json_integer_value(v);
    return 0;
}

static json_t *resolve_ref(comp *c, const char *ref, const char *ptr) {
    if (ref[0] != '#') { fail(c, ptr, "only local references (#/...) are supported, not \"%.80s\"", ref); return NULL; }
    json_t *cur = c->doc;
    const char *p = ref + 1;
    while (*p == '/') {
        p++;
        char key[256];
        size_t k = 0;
        while (*p && *p != '/' && k + 1 < sizeof key) {
            if (p[0] == '~' && p[1] == '0') { key[k++] = '~'; p += 2; }
            else if (p[0] == '~' && p[1] == '1') { key[k++] = '/'; p += 2; }
            else key[k++] = *p++;
        }
        key[k] = 0;
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        if (!cur) { fail(c, ptr, "$ref \"%.80s\" points nowhere", ref); return NULL; }
    }
    if (*p) { fail(c, ptr, "$ref \"%.80s\" is not a JSON pointer", ref); return NULL; }
    return cur;
}

static int compile(comp *c, json_t *s, const char *ptr);

static int compile_props(comp *c, json_t *s, int32_t id, const char *ptr) {
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    char p[300], q[300];
    if (props && !json_is_object(props)) { ptr_join(p, sizeof p, ptr, "properties"); return fail(c, p, "must be an object"); }
    if (req && !json_is_array(req)) { ptr_join(p, sizeof p, ptr, "required"); return fail(c, p, "must be an array of names"); }
    size_t nreq = req ? json_array_size(req) : 0;
    for (size_t i = 0; i < nreq; i++) {
        json_t *r = json_array_get(req, i);
        ptr_join(p, sizeof p, ptr, "required");
        if (!json_is_string(r)) return fail(c, p, "entry %zu is not a string", i);
        if (!props || !json_object_get(props, json_string_value(r)))
            return fail(c, p, "\"%.80s\" is not in properties", json_string_value(r));
    }
    if (props && json_object_size(props) > 0) {
        if (json_object_size(props) > G4_CMAX_PROPS)
            return fail(c, ptr, "more than %d properties in one object", G4_CMAX_PROPS);
        ptr_join(p, sizeof p, ptr, "properties");
        /* values first: their own literals must not land inside this set */
        size_t np = json_object_size(props), pi = 0;
        int32_t *vals = malloc(np * sizeof *vals);
        if (!vals) return fail(c, p, "out of memory");
        const char *k;
        json_t *v;
        json_object_foreach(props, k, v) {
            ptr_join(q, sizeof q, p, k);
            vals[pi] = compile(c, v, q);
            if (vals[pi++] < 0) { free(vals); return -1; }
        }
        int first = c->g->n_lits, bit = 0;
        uint64_t reqm = 0;
        pi = 0;
        json_object_foreach(props, k, v) {
            ptr_join(q, sizeof q, p, k);
            int isreq = 0;
            for (size_t i = 0; i < nreq; i++) isreq |= !strcmp(json_string_value(json_array_get(req, i)), k);
            int32_t vn = vals[pi++];
            sbuf b = { 0 };
            if (c->g->gemma) {
                size_t kl = strlen(k);
                int ok = kl > 0;
                for (size_t i = 0; i < kl; i++) ok &= !strchr(":{},<>\"[] \t\r\n", k[i]);
                if (!ok) { free(vals); return fail(c, q, "this name cannot be written as a key of a Gemma 4 tool call"); }
                sb_bytes(&b, k, kl);
            } else {
                json_t *ks = json_string(k);
                char *t = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL;
                json_decref(ks);
                if (!t) { free(vals); return fail(c, q, "out of memory"); }
                sb_bytes(&b, t, strlen(t));
                free(t);
            }
            sb_sym(&b, ':');
            if (g4_marker_scan((const uint8_t *)k, (int)strlen(k)) < 0) { free(b.s); free(vals); return fail(c, q, "name holds a control marker"); }
            int r = b.bad ? fail(c, q, "out of memory") : add_lit(c, &b, vn, bit, isreq, q);
            free(b.s);
            if (r < 0) { free(vals); return -1; }
            if (isreq) reqm |= 1ull << bit;
            bit++;
        }
        free(vals);
        int set = close_set(c, first, 0, p);
        if (set < 0) return -1;
        c->g->nodes[id].props = set;
        c->g->nodes[id].req = reqm;
    }
    json_t *ap = json_object_get(s, "additionalProperties");
    int has_props = c->g->nodes[id].props >= 0;
    /* Declared properties win: extra keys are only generated for an object
     * that declares none (free-form maps), as llama.cpp does. */
    if (!ap) c->g->nodes[id].addl = has_props ? -1 : 0;
    else if (json_is_false(ap)) c->g->nodes[id].addl = -1;
    else if (json_is_true(ap)) c->g->nodes[id].addl = has_props ? -1 : 0;
    else if (json_is_object(ap)) {
        ptr_join(p, sizeof p, ptr, "additionalProperties");
        int32_t an = compile(c, ap, p);
        if (an < 0) return -1;
        c->g->nodes[id].addl = has_props ? -1 : an;
    } else {
        ptr_join(p, sizeof p, ptr, "additionalProperties");
        return fail(c, p, "must be a boolean or a schema");
    }
    return 0;
}

static int compile(comp *c, json_t *s, const char *ptr) {
    if (c->failed) return -1;
    if (json_is_true(s)) return 0;
    if (!json_is_object(s)) return fail(c, ptr, "a schema must be an object");
    for (int i = 0; i < c->n_memo; i++)
        if (c->memo_k[i] == s) return c->memo_v[i];
    if (c->depth > 200) return fail(c, ptr, "schema nested deeper than 200");
    int id = new_node(c, ptr);
    if (id < 0) return -1;
    if (c->n_memo == c->cap_memo) {
        int nc = c->cap_memo ? c->cap_memo * 2 : 64;
        json_t **k = realloc(c->memo_k, (size_t)nc * sizeof *k);
        if (k) c->memo_k = k;
        int32_t *v = realloc(c->memo_v, (size_t)nc * sizeof *v);
        if (v) c->memo_v = v;
        if (!k || !v) return fail(c, ptr, "out of memory");
        c->cap_memo = nc;
    }
    c->memo_k[c->n_memo] = s;
    c->memo_v[c->n_memo++] = id;
    c->depth++;
    int rc = 0;
    char p[300];
    static const char *const unsupported[] = { "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "multipleOf", "patternProperties", "prefixItems", "not", "allOf", "oneOf", "if",
        "dependentRequired", "dependentSchemas", "minProperties", "maxProperties", "contains", "propertyNames",
        "unevaluatedProperties", "unevaluatedItems" };
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (json_object_get(s, unsupported[i])) {
            ptr_join(p, sizeof p, ptr, unsupported[i]);
            rc = fail(c, p, "keyword not supported by constrained decoding");
            goto out;
        }
    json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        ptr_join(p, sizeof p, ptr, "$ref");
        if (!json_is_string(ref)) { rc = fail(c, p, "must be a string"); goto out; }
        json_t *t = resolve_ref(c, json_string_value(ref), p);
        int32_t tn = t ? compile(c, t, json_string_value(ref)) : -1;
        if (tn < 0) { rc = -1; goto out; }
        int64_t cap = c->g->cap_anys;
        if (grow((void **)&c->g->anys, &cap, c->g->n_anys + 1, sizeof *c->g->anys)) { rc = fail(c, p, "out of memory"); goto out; }
        c->g->cap_anys = (int32_t)cap;
        c->g->nodes[id].any_first = c->g->n_anys;
        c->g->nodes[id].n_any = 1;
        c->g->anys[c->g->n_anys++] = tn;
        goto out;
    }
    json_t *any = json_object_get(s, "anyOf");
    if (any) {
        ptr_join(p, sizeof p, ptr, "anyOf");
        if (!json_is_array(any) || !json_array_size(any)) { rc = fail(c, p, "must be a non-empty array"); goto out; }
        size_t na = json_array_size(any);
        int32_t *alts = malloc(na * sizeof *alts);
        if (!alts) { rc = fail(c, p, "out of memory"); goto out; }
        for (size_t i = 0; i < na && !c->failed; i++) {
            char q[320];
            snprintf(q, sizeof q, "%s/%zu", p, i);
            alts[i] = compile(c, json_array_get(any, i), q);
        }
        int64_t cap = c->g->cap_anys;
        if (!c->failed && grow((void **)&c->g->anys, &cap, c->g->n_anys + (int64_t)na, sizeof *c->g->anys))
            fail(c, p, "out of memory");
        if (c->failed) { free(alts); rc = -1; goto out; }
        c->g->cap_anys = (int32_t)cap;
        c->g->nodes[id].any_first = c->g->n_anys;
        c->g->nodes[id].n_any = (int32_t)na;
        memcpy(c->g->anys + c->g->n_anys, alts, na * sizeof *alts);
        c->g->n_anys += (int32_t)na;
        free(alts);
        goto out;
    }
    int types = 0;
    json_t *ty = json_object_get(s, "type");
    ptr_join(p, sizeof p, ptr, "type");
    if (json_is_string(ty)) {
        types = type_bit(json_string_value(ty));
        if (!types) { rc = fail(c, p, "unknown type \"%.40s\"", json_string_value(ty)); goto out; }
    } else if (json_is_array(ty) && json_array_size(ty)) {
        for (size_t i = 0; i < json_array_size(ty); i++) {
            json_t *t = json_array_get(ty, i);
            int b = json_is_string(t) ? type_bit(json_string_value(t)) : 0;
            if (!b) { rc = fail(c, p, "entry %zu is not a type name", i); goto out; }
            types |= b;
        }
    } else if (ty) {
        rc = fail(c, p, "must be a type name or an array of them");
        goto out;
    } else if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties") ||
               json_object_get(s, "required")) {
        types = G4_T_OBJ;
    } else if (json_object_get(s, "items")) {
        types = G4_T_ARR;
    } else {
        types = G4_T_ANY;
    }
    c->g->nodes[id].types = (uint8_t)types;
    json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    if (en || cn) {
        ptr_join(p, sizeof p, ptr, en ? "enum" : "const");
        if (en && (!json_is_array(en) || !json_array_size(en))) { rc = fail(c, p, "must be a non-empty array"); goto out; }
        size_t nv = en ? json_array_size(en) : 1;
        int first = c->g->n_lits;
        for (size_t i = 0; i < nv; i++) {
            json_t *v = en ? json_array_get(en, i) : cn;
            int vt = value_types(v);
            if (!(vt & types) && !(vt == G4_T_INT && (types & G4_T_NUM))) continue;
            if (json_is_real(v) && (types & G4_T_INT) && !(types & G4_T_NUM) && json_real_value(v) != (double)(long long)json_real_value(v)) continue;
            sbuf b = { 0 };
            if (write_value(c, &b, v, p, 0)) { free(b.s); rc = -1; goto out; }
            int bad = 0;
            for (int k = 0; k < b.n && !bad; k++) bad = b.s[k] == '<';
            if (bad) {
                uint8_t *tmp = malloc((size_t)b.n);
                int sc = 0;
                if (tmp) { for (int k = 0; k < b.n; k++) tmp[k] = (uint8_t)b.s[k]; sc = g4_marker_scan(tmp, b.n); }
                free(tmp);
                if (sc < 0) { free(b.s); rc = fail(c, p, "value %zu holds a control marker", i); goto out; }
            }
            int r = b.bad ? fail(c, p, "out of memory") : add_lit(c, &b, -1, 0, 0, p);
            free(b.s);
            if (r < 0) { rc = -1; goto out; }
        }
        if (c->g->n_lits == first) { rc = fail(c, p, "no value matches the type"); goto out; }
        int set = close_set(c, first, 1, p);
        if (set < 0) { rc = -1; goto out; }
        c->g->nodes[id].lits = set;
        goto out;
    }
    g4_cnode tmp;
    if (types & G4_T_STR) {
        if (get_count(c, s, "minLength", 0, ptr, &tmp.min_len) || get_count(c, s, "maxLength", -1, ptr, &tmp.max_len)) { rc = -1; goto out; }
        if (tmp.max_len >= 0 && tmp.min_len > tmp.max_len) { rc = fail(c, ptr, "minLength > maxLength"); goto out; }
        c->g->nodes[id].min_len = tmp.min_len;
        c->g->nodes[id].max_len = tmp.max_len;
    }
    if (types & G4_T_ARR) {
        if (get_count(c, s, "minItems", 0, ptr, &tmp.min_items) || get_count(c, s, "maxItems", -1, ptr, &tmp.max_items)) { rc = -1; goto out; }
        if (tmp.max_items >= 0 && tmp.min_items > tmp.max_items) { rc = fail(c, ptr, "minItems > maxItems"); goto out; }
        json_t *it = json_object_get(s, "items");
        int32_t in = 0;
        if (it) {
            ptr_join(p, sizeof p, ptr, "items");
            if (!json_is_object(it) && !json_is_true(it)) { rc = fail(c, p, "must be a schema (tuple form is not supported)"); goto out; }
            in = compile(c, it, p);
            if (in < 0) { rc = -1; goto out; }
        }
        c->g->nodes[id].items = in;
        c->g->nodes[id].min_items = tmp.min_items;
        c->g->nodes[id].max_items = tmp.max_items;
        json_t *u = json_object_get(s, "uniqueItems");
        if (json_is_true(u)) { ptr_join(p, sizeof p, ptr, "uniqueItems"); rc = fail(c, p, "keyword not supported by constrained decoding"); goto out; }
    }
    if ((types & G4_T_OBJ) && compile_props(c, s, id, ptr)) { rc = -1; goto out; }
out:
    c->depth--;
    return rc < 0 ? -1 : id;
}

/* Least nesting each node needs, by relaxation from "infinite". */
static void mindepths(g4_grammar *g) {
    for (int32_t i = 0; i < g->n_nodes; i++) g->nodes[i].mindepth = INF_DEPTH;
    for (int changed = 1, it = 0; changed && it < 1000; it++) {
        changed = 0;
        for (int32_t i = 0; i < g->n_nodes; i++) {
            g4_cnode *n = &g->nodes[i];
            int d = INF_DEPTH;
            if (n->n_any) {
                for (int k = 0; k < n->n_any; k++)
                    if (g->nodes[g->anys[n->any_first + k]].mindepth < d) d = g->nodes[g->anys[n->any_first + k]].mindepth;
            } else if (n->lits >= 0) {
                d = 0;
            } else {
                if (n->types & (G4_T_NULL | G4_T_BOOL | G4_T_INT | G4_T_NUM | G4_T_STR)) d = 0;
                if (n->types & G4_T_ARR) {
                    int a = 1 + (n->min_items > 0 ? g->nodes[n->items].mindepth : 0);
                    if (a < d) d = a;
                }
                if (n->types & G4_T_OBJ) {
                    int o = 0;
                    if (n->props >= 0)
                        for (int k = 0; k < g->sets[n->props].n; k++) {
                            int l = g->sets[n->props].first + k;
                            if (g->lit_req[l] && g->nodes[g->lit_val[l]].mindepth > o) o = g->nodes[g->lit_val[l]].mindepth;
                        }
                    if (o < INF_DEPTH && 1 + o < d) d = 1 + o;
                }
            }
            if (d > INF_DEPTH) d = INF_DEPTH;
            if (d < n->mindepth) { n->mindepth = d; changed = 1; }
        }
    }
}

void g4_grammar_free(g4_grammar *g) {
    if (!g) return;
    free(g->nodes); free(g->anys); free(g->sets); free(g->syms);
    free(g->lit_off); free(g->lit_len); free(g->lit_val); free(g->lit_bit); free(g->lit_req);
    for (int i = 0; i < g->n_tools; i++) free(g->tool_names[i]);
    free(g->tool_names);
    free(g);
}

/* Node 0 accepts any value; sets 0 and 1 are false/true and null. */
static g4_grammar *grammar_new(comp *c, int gemma, int thinking) {
    g4_grammar *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    c->g = g;
    g->gemma = gemma;
    g->thinking = thinking < 0 ? 0 : thinking > 2 ? 2 : thinking;
    int a = new_node(c, "");
    if (a < 0) return g;
    g->nodes[0].types = G4_T_ANY;
    g->nodes[0].addl = 0;
    static const char *const w[] = { "false", "true", "null" };
    for (int i = 0; i < 3 && !c->failed; i++) {
        sbuf b = { 0 };
        sb_bytes(&b, w[i], strlen(w[i]));
        if (b.bad || add_lit(c, &b, -1, 0, 0, "") < 0) fail(c, "", "out of memory");
        free(b.s);
        if (i == 1 || i == 2) close_set(c, i == 1 ? 0 : 2, 0, "");
    }
    return g;
}

static void comp_done(comp *c) { free(c->memo_k); free(c->memo_v); }

static g4_grammar *finish(comp *c, int32_t check, const char *ptr) {
    g4_grammar *g = c->g;
    if (!c->failed) {
        mindepths(g);
        if (check >= 0 && g->nodes[check].mindepth > G4_CMAX_DEPTH)
            fail(c, ptr, "no value of finite size within nesting %d satisfies it (recursion through required "
                 "properties or minItems?)", G4_CMAX_DEPTH);
    }
    comp_done(c);
    if (c->failed) { g4_grammar_free(g); return NULL; }
    return g;
}

static json_t *load(const char *text, size_t len, const char *what, char *err, size_t errlen) {
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (!j && err && errlen) snprintf(err, errlen, "%s: JSON error at %d:%d: %s", what, je.line, je.column, je.text);
    return j;
}

g4_grammar *g4_grammar_json(const char *schema, size_t len, int thinking, char *err, size_t errlen) {
    comp c = { 0 };
    c.err = err;
    c.errlen = errlen;
    json_t *doc = NULL;
    if (schema) {
        doc = load(schema, len, "schema", err, errlen);
        if (!doc) return NULL;
    }
    g4_grammar *g = grammar_new(&c, 0, thinking);
    if (!g) { json_decref(doc); if (err && errlen) snprintf(err, errlen, "out of memory"); return NULL; }
    if (!c.failed) {
        if (!doc) {
            /* json_object mode: any object */
            int id = new_node(&c, "");
            if (id >= 0) { g->nodes[id].types = G4_T_OBJ; g->nodes[id].addl = 0; g->root = id; }
        } else {
            c.doc = doc;
            g->root = compile(&c, doc, "");
        }
    }
    g = finish(&c, c.failed ? -1 : g->root, "#");
    json_decref(doc);
    return g;
}

g4_grammar *g4_grammar_tools(const char *tools, size_t len, const char *choice, int thinking, char *err,
                             size_t errlen) {
    comp c = { 0 };
    c.err = err;
    c.errlen = errlen;
    json_t *doc = load(tools, len, "tools", err, errlen);
    if (!doc) return NULL;
    g4_grammar *g = grammar_new(&c, 1, thinking);
    if (!g) { json_decref(doc); if (err && errlen) snprintf(err, errlen, "out of memory"); return NULL; }
    g->tools = 1;
    json_t *arr = json_is_array(doc) ? doc : json_object_get(doc, "tools");
    size_t nt = json_is_array(arr) ? json_array_size(arr) : 0;
    if (!c.failed && !nt) fail(&c, "#", "tools must be a non-empty array");
    if (!c.failed) {
        g->tool_names = calloc(nt, sizeof *g->tool_names);
        if (!g->tool_names) fail(&c, "#", "out of memory");
    }
    int32_t *argn = calloc(nt ? nt : 1, sizeof *argn);
    if (!argn) fail(&c, "#", "out of memory");
    for (size_t i = 0; i < nt && !c.failed; i++) {
        char p[300];
        json_t *t = json_array_get(arr, i);
        json_t *fn = json_object_get(t, "function");
        json_t *name = json_object_get(fn, "name");
        snprintf(p, sizeof p, "#/%zu/function/name", i);
        if (!json_is_string(name) || !json_string_length(name)) { fail(&c, p, "a tool needs a name"); break; }
        const char *nm = json_string_value(name);
        for (const char *q = nm; *q; q++)
            if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || strchr("_-.", *q))) {
                fail(&c, p, "\"%.64s\": a tool name may hold only letters, digits, '_', '-' and '.'", nm);
                break;
            }
        if (c.failed) break;
        g->tool_names[g->n_tools++] = strdup(nm);
        json_t *par = json_object_get(fn, "parameters");
        snprintf(p, sizeof p, "#/%zu/function/parameters", i);
        int32_t an;
        if (!par) {
            an = new_node(&c, p);
            if (an >= 0) { g->nodes[an].types = G4_T_OBJ; g->nodes[an].addl = 0; }
        } else {
            c.doc = par;
            an = compile(&c, par, p);
            if (an >= 0 && (g->nodes[an].n_any || g->nodes[an].lits >= 0 || !(g->nodes[an].types & G4_T_OBJ))) {
                fail(&c, p, "tool parameters must be an object schema");
                break;
            }
        }
        if (an < 0) break;
        argn[i] = an;
    }
    /* names after all parameters, so the set's literals are contiguous */
    int first = g->n_lits;
    for (size_t i = 0; i < nt && !c.failed; i++) {
        sbuf b = { 0 };
        sb_bytes(&b, g->tool_names[i], strlen(g->tool_names[i]));
        sb_sym(&b, '{');
        if (b.bad || add_lit(&c, &b, argn[i], (int32_t)i, 0, "#") < 0) fail(&c, "#", "out of memory");
        free(b.s);
    }
    if (!c.failed) g->tool_set = close_set(&c, first, 0, "#/function/name");
    /* tool_choice */
    g->choice = G4_CHOICE_AUTO;
    if (!c.failed && choice && *choice) {
        char nm[256] = "";
        if (choice[0] == '{') {
            json_t *cj = json_loads(choice, 0, NULL);
            json_t *n = json_object_get(json_object_get(cj, "function"), "name");
            if (json_is_string(n)) snprintf(nm, sizeof nm, "%s", json_string_value(n));
            json_decref(cj);
            if (!nm[0]) fail(&c, "tool_choice", "expected {\"type\":\"function\",\"function\":{\"name\":...}}");
        } else if (!strcmp(choice, "auto")) g->choice = G4_CHOICE_AUTO;
        else if (!strcmp(choice, "required")) g->choice = G4_CHOICE_REQUIRED;
        else if (!strcmp(choice, "none")) g->choice = G4_CHOICE_NONE;
        else snprintf(nm, sizeof nm, "%s", choice);
        if (nm[0] && !c.failed) {
            int k = 0;
            while (k < g->n_tools && strcmp(g->tool_names[k], nm)) k++;
            if (k == g->n_tools) fail(&c, "tool_choice", "\"%.64s\" is not a declared tool", nm);
            g->choice = G4_CHOICE_NAMED;
            g->named = k;
        }
    }
    if (!c.failed) mindepths(g);
    for (size_t i = 0; i < nt && !c.failed; i++)
        if (g->nodes[argn[i]].mindepth > G4_CMAX_DEPTH) {
            char p[300];
            snprintf(p, sizeof p, "#/%zu/function/parameters", i);
            fail(&c, p, "no value of finite size within nesting %d satisfies it", G4_CMAX_DEPTH);
        }
    free(argn);
    g = finish(&c, -1, "#");
    json_decref(doc);
    return g;
}
