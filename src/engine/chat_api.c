/* Public chat-format calls (include/gemma4c.h): template family, rendering
 * and output parsing over text/chat and text/chat_parse, with JSON crossing
 * the API as text so front ends need no knowledge of the internals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "engine/engine.h"
#include "gemma4c.h"
#include "text/chat.h"
#include "text/chat_parse.h"

_Static_assert((int)GEMMA4C_CHAT_E == (int)G4_CHAT_FAMILY_E && (int)GEMMA4C_CHAT_31B == (int)G4_CHAT_FAMILY_31B &&
               (int)GEMMA4C_CHAT_INTERLEAVED == (int)G4_CHAT_FAMILY_INTERLEAVED, "family numbers are shared");
_Static_assert((int)GEMMA4C_DELTA_REASONING == (int)G4_DELTA_REASONING &&
               (int)GEMMA4C_DELTA_CONTENT == (int)G4_DELTA_CONTENT &&
               (int)GEMMA4C_DELTA_TOOL_CALL == (int)G4_DELTA_TOOL_CALL, "delta kinds are shared");

static void set_err(char *dst, size_t len, const char *msg) {
    if (dst && len) snprintf(dst, len, "%s", msg);
}

int g4_engine_chat_family(const char *path, const g4_gguf_file *f) {
    /* a folder's template files are not in the converted metadata the
     * model was read from; a GGUF's are */
    struct stat st;
    g4_chat_family fam = G4_CHAT_FAMILY_UNKNOWN;
    g4_error e = { { 0 } };
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) fam = g4_chat_family_from_path(path, &e);
    else fam = g4_chat_family_from_gguf(f);
    return fam == G4_CHAT_FAMILY_UNKNOWN ? G4_CHAT_FAMILY_E : (int)fam;
}

int gemma4c_model_chat_family(const gemma4c_model *m) { return m->chat_family; }

int gemma4c_chat_family_from_path(const char *path, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    g4_chat_family f = g4_chat_family_from_path(path, &e);
    if (f == G4_CHAT_FAMILY_UNKNOWN) set_err(err, errlen, e.msg[0] ? e.msg : "cannot select template family");
    return (int)f;
}

int gemma4c_chat_family_from_template(const char *text) { return (int)g4_chat_family_from_template(text); }
int gemma4c_chat_family_from_name(const char *name) { return (int)g4_chat_family_from_name(name); }
const char *gemma4c_chat_family_name(int family) { return g4_chat_family_name((g4_chat_family)family); }

gemma4c_chat_options gemma4c_chat_default_options(void) {
    gemma4c_chat_options o = { -1, -1, 0 };
    return o;
}

/* Request text -> JSON, with the position of a syntax error. */
static json_t *load_request(const char *text, size_t len, char *err, size_t errlen) {
    json_error_t je;
    json_t *r = json_loadb(text, len, JSON_ALLOW_NUL, &je);
    if (!r && err && errlen) snprintf(err, errlen, "%d:%d: %s", je.line, je.column, je.text);
    return r;
}

/* Render a parsed request; shared with the session layer. */
char *g4_engine_render(int family, const json_t *req, const gemma4c_chat_options *o, size_t *out_len, char *err,
                       size_t errlen) {
    gemma4c_chat_options d = gemma4c_chat_default_options();
    if (!o) o = &d;
    g4_chat_options co = G4_CHAT_OPTIONS_DEFAULT;
    co.enable_thinking = o->enable_thinking;
    co.add_generation_prompt = o->add_generation_prompt;
    if (o->openai_compat) co.compat = G4_CHAT_COMPAT_LLAMACPP;
    g4_error e = { { 0 } };
    char *out = g4_chat_render(req, &co, (g4_chat_family)family, out_len, &e);
    if (!out) set_err(err, errlen, e.msg);
    return out;
}

char *gemma4c_chat_render(int family, const char *request_json, size_t len, const gemma4c_chat_options *o,
                          size_t *out_len, char *err, size_t errlen) {
    json_t *req = load_request(request_json, len, err, errlen);
    if (!req) return NULL;
    char *out = g4_engine_render(family, req, o, out_len, err, errlen);
    json_decref(req);
    return out;
}

/* ---- parser ---------------------------------------------------------------- */

struct gemma4c_chat_parser {
    g4_chat_parser *p;
    gemma4c_delta_fn fn;
    void *user;
};

/* The public delta mirrors the internal one field by field. */
static void forward_delta(void *user, const g4_chat_delta *d) {
    gemma4c_chat_parser *p = user;
    gemma4c_delta o = { (int)d->kind, d->text, d->len, d->index, d->id, d->name, d->arguments };
    p->fn(p->user, &o);
}

static g4_chat_parse_options parse_opts(const gemma4c_parse_options *o) {
    g4_chat_parse_options po = { 0 };
    if (o) {
        po.in_reasoning = o->in_reasoning;
        po.tool_names = o->tool_names;
        po.n_tool_names = o->n_tool_names;
    }
    return po;
}

gemma4c_chat_parser *gemma4c_chat_parser_new(const gemma4c_parse_options *o, gemma4c_delta_fn fn, void *user) {
    gemma4c_chat_parser *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->fn = fn;
    p->user = user;
    g4_chat_parse_options po = parse_opts(o);
    p->p = g4_chat_parser_new(&po, fn ? forward_delta : NULL, p);
    if (!p->p) { free(p); return NULL; }
    return p;
}

int gemma4c_chat_parser_feed(gemma4c_chat_parser *p, const char *data, size_t n) {
    return g4_chat_parser_feed(p->p, data, n);
}
int gemma4c_chat_parser_finish(gemma4c_chat_parser *p) { return g4_chat_parser_finish(p->p); }
int gemma4c_chat_parser_stopped(const gemma4c_chat_parser *p) { return g4_chat_parser_stopped(p->p); }

static char *dump_message(json_t *m, int indent) {
    if (!m) return NULL;
    char *s = json_dumps(m, indent > 0 ? JSON_INDENT(indent > 31 ? 31 : indent) : JSON_COMPACT);
    json_decref(m);
    return s;
}

char *gemma4c_chat_parser_message(const gemma4c_chat_parser *p, int indent) {
    return dump_message(g4_chat_parser_message(p->p), indent);
}

void gemma4c_chat_parser_free(gemma4c_chat_parser *p) {
    if (!p) return;
    g4_chat_parser_free(p->p);
    free(p);
}

char *gemma4c_chat_parse(const char *text, size_t len, const gemma4c_parse_options *o, char *err, size_t errlen) {
    g4_chat_parse_options po = parse_opts(o);
    g4_error e = { { 0 } };
    json_t *m = g4_chat_parse(text, len, &po, &e);
    if (!m) { set_err(err, errlen, e.msg[0] ? e.msg : "out of memory"); return NULL; }
    char *s = dump_message(m, 0);
    if (!s) set_err(err, errlen, "cannot encode the message (invalid UTF-8 in the output?)");
    return s;
}
