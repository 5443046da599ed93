/* Chat sessions (include/gemma4c.h): one conversation on one context.
 *
 * A turn: request -> prompt (the official template) -> ids (special tokens
 * matched, since the template writes them) -> only the part after the
 * longest prefix already in the context is evaluated -> the shared decode
 * loop -> detokenized text (special tokens kept as text) -> streaming parser
 * -> reasoning / content / tool-call deltas and the final message. Built on
 * the public context calls, so it keeps working whatever the context holds
 * inside. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arch/markers.h"
#include "engine/engine.h"
#include "gemma4c.h"

struct gemma4c_session {
    gemma4c_context *c;
    const gemma4c_model *m;
    gemma4c_sampler *s;
    gemma4c_session_params p;
    int family;
    int32_t *cached;       /* ids currently in the context, in order */
    int n_cached, cap_cached;
};

gemma4c_session_params gemma4c_session_default_params(void) {
    gemma4c_session_params p;
    memset(&p, 0, sizeof p);
    p.n_predict = 1024;
    p.chat = gemma4c_chat_default_options();
    p.sampling = gemma4c_sampler_default_params();
    return p;
}

static void set_err(char *dst, size_t len, const char *msg) {
    if (dst && len) snprintf(dst, len, "%s", msg);
}

gemma4c_session *gemma4c_session_new(gemma4c_context *c, const gemma4c_session_params *p, char *err,
                                     size_t errlen) {
    gemma4c_session *s = calloc(1, sizeof *s);
    if (!s) { set_err(err, errlen, "out of memory"); return NULL; }
    s->c = c;
    s->m = gemma4c_context_model(c);
    s->p = p ? *p : gemma4c_session_default_params();
    s->family = s->p.family ? s->p.family : gemma4c_model_chat_family(s->m);
    s->s = gemma4c_sampler_new(&s->p.sampling);
    if (!s->s) { set_err(err, errlen, "out of memory"); free(s); return NULL; }
    return s;
}

void gemma4c_session_free(gemma4c_session *s) {
    if (!s) return;
    gemma4c_sampler_free(s->s);
    free(s->cached);
    free(s);
}

void gemma4c_session_reset(gemma4c_session *s) {
    gemma4c_reset(s->c);
    s->n_cached = 0;
}

int gemma4c_session_family(const gemma4c_session *s) { return s->family; }

static int ensure_cap(gemma4c_session *s, int n) {
    if (n <= s->cap_cached) return 0;
    int cap = n * 2;
    int32_t *c = realloc(s->cached, (size_t)cap * sizeof *c);
    if (!c) return -1;
    s->cached = c;
    s->cap_cached = cap;
    return 0;
}

/* Evaluate ids reusing the longest prefix already in the context; returns
 * the number of reused tokens or -1. */
static int feed_prompt(gemma4c_session *s, const int32_t *ids, int n, char *err, size_t errlen) {
    if (s->n_cached > gemma4c_n_past(s->c)) s->n_cached = gemma4c_n_past(s->c);
    int common = 0;
    while (common < n && common < s->n_cached && ids[common] == s->cached[common]) common++;
    if (common == n) common = n - 1; /* re-evaluate the last token to get fresh logits */
    if (gemma4c_truncate(s->c, common) != 0) {
        gemma4c_reset(s->c); /* sliding caches no longer hold that prefix */
        common = 0;
    }
    s->n_cached = common;
    if (ensure_cap(s, n)) { set_err(err, errlen, "out of memory"); return -1; }
    if (gemma4c_eval(s->c, ids + common, n - common, 0, err, errlen)) return -1;
    memcpy(s->cached + common, ids + common, (size_t)(n - common) * sizeof *ids);
    s->n_cached = n;
    return common;
}

/* State of the decode callbacks during one turn. */
typedef struct turn_state {
    gemma4c_session *s;
    gemma4c_detok *dt;
    gemma4c_chat_parser *parser;
    int n_generated;
    int failed;
    int cache_broken;      /* an id could not be recorded: stop recording */
} turn_state;

static int on_token(void *user, int32_t t) {
    turn_state *ts = user;
    gemma4c_session *s = ts->s;
    ts->n_generated++;
    size_t len;
    const char *piece = gemma4c_detok_push(ts->dt, t, &len);
    if (gemma4c_chat_parser_feed(ts->parser, piece, len)) { ts->failed = 1; return 1; }
    if (gemma4c_chat_parser_stopped(ts->parser)) return 1;
    /* the loop evaluates it next; a short list only costs reuse later */
    if (!ts->cache_broken && ensure_cap(s, s->n_cached + 1)) ts->cache_broken = 1;
    if (!ts->cache_broken) s->cached[s->n_cached++] = t;
    return 0;
}

static int on_cancel(void *user) {
    turn_state *ts = user;
    return ts->s->p.cancel && ts->s->p.cancel(ts->s->p.cancel_user);
}

/* The template opens the thought channel itself when thinking is on; the
 * parser must then start inside the reasoning. */
int g4_engine_ends_in_thought(const char *prompt, size_t len) {
    static const char tail[] = "<|channel>thought\n";
    size_t n = sizeof tail - 1;
    return len >= n && !memcmp(prompt + len - n, tail, n);
}

/* The request's output constraint (response_format / format, or tools with
 * tool_choice), NULL when it asks for none; *failed on a bad one. */
static gemma4c_constraint *turn_constraint(gemma4c_session *s, json_t *req, int thinking, int *failed, char *err,
                                           size_t errlen) {
    *failed = 0;
    if (!s->p.constrain) return NULL;
    return g4_engine_request_constraint(s->m, req, thinking, failed, err, errlen);
}

int gemma4c_session_turn(gemma4c_session *s, const char *request_json, size_t rlen, gemma4c_delta_fn on_delta,
                         void *user, gemma4c_turn_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->finish = -1;
    char msg[600];
    gemma4c_chat_options co = s->p.chat;
    co.add_generation_prompt = 1;
    size_t plen = 0;
    json_error_t je;
    json_t *req = json_loadb(request_json, rlen, JSON_ALLOW_NUL, &je);
    char *prompt = NULL;
    if (!req) snprintf(msg, sizeof msg, "%d:%d: %s", je.line, je.column, je.text);
    else prompt = g4_engine_render(s->family, req, &co, &plen, msg, sizeof msg);
    if (!prompt) {
        json_decref(req);
        if (err && errlen) snprintf(err, errlen, "chat format: %s", msg);
        return -1;
    }
    int cfailed;
    gemma4c_constraint *cons = turn_constraint(s, req, g4_engine_ends_in_thought(prompt, plen) ? 2 : strstr(prompt, G4_MK_THINK) ? 1 : 0,
                                               &cfailed, err, errlen);
    json_decref(req);
    if (cfailed) { free(prompt); return -1; }
    int32_t *ids = NULL;
    int n = gemma4c_tokenize(s->m, prompt, plen, 0, 1, &ids, err, errlen);
    gemma4c_parse_options po = { 0 };
    po.in_reasoning = g4_engine_ends_in_thought(prompt, plen);
    free(prompt);
    if (n < 0) { gemma4c_constraint_free(cons); return -1; }
    out->n_prompt = n;
    /* the answer may use what the context has left, up to n_predict */
    int n_gen = gemma4c_n_ctx(s->c) - n;
    if (n_gen < 1) {
        if (err && errlen)
            snprintf(err, errlen, "the conversation (%d tokens) fills the context (%d)", n, gemma4c_n_ctx(s->c));
        free(ids);
        gemma4c_constraint_free(cons);
        return GEMMA4C_ERR_CONTEXT_FULL;
    }
    if (s->p.n_predict > 0 && n_gen > s->p.n_predict) n_gen = s->p.n_predict;
    int reused = feed_prompt(s, ids, n, err, errlen);
    free(ids);
    if (reused < 0) { gemma4c_constraint_free(cons); return -1; }
    out->n_reused = reused;
    turn_state ts = { s, gemma4c_detok_new(s->m, 1), gemma4c_chat_parser_new(&po, on_delta, user), 0, 0, 0 };
    if (!ts.parser || !ts.dt) {
        set_err(err, errlen, "out of memory");
        gemma4c_chat_parser_free(ts.parser);
        gemma4c_detok_free(ts.dt);
        gemma4c_constraint_free(cons);
        return -1;
    }
    gemma4c_sampler_reset(s->s);
    gemma4c_generate_params gp = { n_gen, 1, on_token, on_cancel, &ts, cons, s->p.draft, NULL };
    int fin = gemma4c_generate(s->c, s->s, &gp, err, errlen);
    gemma4c_constraint_free(cons);
    /* the loop leaves the last token unevaluated; a later turn reuses it */
    if (fin == GEMMA4C_FINISH_LENGTH && !ts.cache_broken && s->n_cached > gemma4c_n_past(s->c) &&
        gemma4c_eval(s->c, &s->cached[s->n_cached - 1], 1, 0, err, errlen))
        fin = -1;
    if (s->n_cached > gemma4c_n_past(s->c)) s->n_cached = gemma4c_n_past(s->c);
    size_t len;
    const char *rest = gemma4c_detok_flush(ts.dt, &len);
    if (rest && len && gemma4c_chat_parser_feed(ts.parser, rest, len)) ts.failed = 1;
    if (!ts.failed && gemma4c_chat_parser_finish(ts.parser)) ts.failed = 1;
    if (ts.failed && fin >= 0) set_err(err, errlen, "out of memory");
    out->n_generated = ts.n_generated;
    out->finish = fin < 0 || ts.failed ? GEMMA4C_FINISH_ERROR : fin;
    if (out->finish != GEMMA4C_FINISH_ERROR) {
        out->message = gemma4c_chat_parser_message(ts.parser, 0);
        if (!out->message) {
            set_err(err, errlen, "cannot encode the answer (out of memory or invalid UTF-8)");
            out->finish = GEMMA4C_FINISH_ERROR;
        }
    }
    gemma4c_chat_parser_free(ts.parser);
    gemma4c_detok_free(ts.dt);
    return out->message ? 0 : -1;
}
