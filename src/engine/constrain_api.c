/* Public constrained-decoding calls (include/gemma4c.h) over src/constrain/:
 * a constraint is a compiled grammar, its automaton state, the shared token
 * index and its own mask scratch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "constrain/constrain.h"
#include "engine/engine.h"
#include "gemma4c.h"
#include "text/tokenizer.h"

/* gemma4c_token_index is never defined: a handle is the internal index. */
gemma4c_token_index *gemma4c_token_index_new(const gemma4c_tokenizer *t, char *err, size_t errlen) {
    if (!t) {
        if (err && errlen) snprintf(err, errlen, "token index: no tokenizer");
        return NULL;
    }
    return (gemma4c_token_index *)g4_tindex_new((const g4_tokenizer *)t, err, errlen);
}

void gemma4c_token_index_free(gemma4c_token_index *x) { g4_tindex_free((g4_tindex *)x); }

struct gemma4c_constraint {
    const g4_tindex *x;
    g4_grammar *g;
    g4_astate *cur, *next;
    g4_mask_scratch *m;
    uint8_t *allowed;
};

void gemma4c_constraint_free(gemma4c_constraint *c) {
    if (!c) return;
    g4_grammar_free(c->g);
    free(c->cur);
    free(c->next);
    g4_mask_scratch_free(c->m);
    free(c->allowed);
    free(c);
}

gemma4c_constraint *gemma4c_constraint_new(const gemma4c_token_index *xi, const gemma4c_constraint_params *p,
                                           char *err, size_t errlen) {
    const g4_tindex *x = (const g4_tindex *)xi;
    if (!x || !p) {
        if (err && errlen) snprintf(err, errlen, "constraint: no token index or parameters");
        return NULL;
    }
    g4_grammar *g = NULL;
    switch (p->mode) {
    case GEMMA4C_CONSTRAIN_JSON_OBJECT: g = g4_grammar_json(NULL, 0, p->thinking, err, errlen); break;
    case GEMMA4C_CONSTRAIN_JSON_SCHEMA:
        if (!p->schema) { if (err && errlen) snprintf(err, errlen, "constraint: json_schema mode needs a schema"); return NULL; }
        g = g4_grammar_json(p->schema, strlen(p->schema), p->thinking, err, errlen);
        break;
    case GEMMA4C_CONSTRAIN_TOOLS:
        if (!p->tools) { if (err && errlen) snprintf(err, errlen, "constraint: tools mode needs tools"); return NULL; }
        g = g4_grammar_tools(p->tools, strlen(p->tools), p->tool_choice, p->thinking, err, errlen);
        break;
    default:
        if (err && errlen) snprintf(err, errlen, "constraint: unknown mode %d", p->mode);
        return NULL;
    }
    if (!g) return NULL;
    /* the grammar's control tokens must exist, or it could not end */
    int need[3] = { G4_SYM_END, g->tools ? G4_SYM_CALL_OPEN : 0, g->tools ? G4_SYM_QUOTE : 0 };
    for (int i = 0; i < 3; i++)
        if (need[i] && !g4_tindex_has_sym(x, need[i]) &&
            !(need[i] != G4_SYM_END && g->choice == G4_CHOICE_NONE)) {
            if (err && errlen)
                snprintf(err, errlen, "constraint: the vocabulary lacks the %s token",
                         need[i] == G4_SYM_END ? "end-of-generation" : need[i] == G4_SYM_QUOTE ? "<|\"|>" : "<|tool_call>");
            g4_grammar_free(g);
            return NULL;
        }
    gemma4c_constraint *c = calloc(1, sizeof *c);
    if (c) {
        c->x = x;
        c->g = g;
        c->cur = malloc(sizeof *c->cur);
        c->next = malloc(sizeof *c->next);
        c->m = g4_mask_scratch_new(x);
        c->allowed = malloc((size_t)g4_tindex_n_vocab(x));
    }
    if (!c || !c->cur || !c->next || !c->m || !c->allowed) {
        if (c) gemma4c_constraint_free(c);
        else g4_grammar_free(g);
        if (err && errlen) snprintf(err, errlen, "constraint: out of memory");
        return NULL;
    }
    g4_astate_init(g, c->cur);
    return c;
}

void gemma4c_constraint_reset(gemma4c_constraint *c) { g4_astate_init(c->g, c->cur); }

int gemma4c_constraint_mask(gemma4c_constraint *c, uint8_t *allowed, int n_vocab) {
    int nv = g4_tindex_n_vocab(c->x);
    int count = g4_mask_compute(c->x, c->g, c->cur, c->m, c->allowed);
    if (allowed) {
        int k = n_vocab < nv ? n_vocab : nv;
        memcpy(allowed, c->allowed, (size_t)k);
        if (n_vocab > nv) memset(allowed + nv, 0, (size_t)(n_vocab - nv));
    }
    return count;
}

int gemma4c_constraint_apply(gemma4c_constraint *c, float *logits, int n_vocab) {
    int nv = g4_tindex_n_vocab(c->x);
    gemma4c_constraint_mask(c, NULL, 0);
    int count = 0;
    for (int i = 0; i < n_vocab; i++) {
        if (i < nv && c->allowed[i]) count++;
        else logits[i] = -INFINITY;
    }
    return count;
}

int gemma4c_constraint_accept(gemma4c_constraint *c, int32_t token) {
    if (!g4_mask_step_token(c->x, c->g, c->cur, token, c->next, c->m)) return -1;
    g4_astate *t = c->cur;
    c->cur = c->next;
    c->next = t;
    return 0;
}

int gemma4c_constraint_done(const gemma4c_constraint *c) {
    /* after an end token the state itself is final */
    if (g4_astate_done(c->g, c->cur)) return 1;
    return c->cur->nt == 1 && c->cur->nf == 1 &&
           ((c->g->tools && c->cur->f[0].st == 3) || (!c->g->tools && c->cur->f[0].st == 2));
}

/* ---- the constraint a request asks for (sessions and the scheduler) ------- */

const gemma4c_token_index *g4_engine_token_index(const gemma4c_model *cm, char *err, size_t errlen) {
    /* a cache filled once under its lock: the model stays logically const */
    gemma4c_model *m = (gemma4c_model *)cm;
    pthread_mutex_lock(&m->tix_mu);
    if (!m->tix) m->tix = gemma4c_token_index_new(gemma4c_model_tokenizer(m), err, errlen);
    const gemma4c_token_index *x = m->tix;
    pthread_mutex_unlock(&m->tix_mu);
    return x;
}

gemma4c_constraint *g4_engine_request_constraint(const gemma4c_model *m, const json_t *req, int thinking, int *failed,
                                                 char *err, size_t errlen) {
    *failed = 0;
    if (!req || !json_is_object(req)) return NULL;
    gemma4c_constraint_params cp = { 0 };
    cp.thinking = thinking;
    char *schema = NULL, *tools = NULL, *choice = NULL;
    json_t *rf = json_object_get(req, "response_format"), *fmt = json_object_get(req, "format");
    json_t *tl = json_object_get(req, "tools"), *tc = json_object_get(req, "tool_choice");
    const char *rft = json_string_value(json_object_get(rf, "type"));
    if (rf && !json_is_null(rf) && (!json_is_object(rf) || !rft)) {
        if (err && errlen) snprintf(err, errlen, "response_format: expected an object with a \"type\"");
        *failed = 1;
        return NULL;
    }
    if (rft && !strcmp(rft, "json_object")) {
        cp.mode = GEMMA4C_CONSTRAIN_JSON_OBJECT;
    } else if (rft && !strcmp(rft, "json_schema")) {
        json_t *sc = json_object_get(json_object_get(rf, "json_schema"), "schema");
        cp.mode = GEMMA4C_CONSTRAIN_JSON_SCHEMA;
        schema = sc ? json_dumps(sc, JSON_COMPACT) : NULL;
        if (!schema) {
            if (err && errlen) snprintf(err, errlen, "response_format: json_schema needs a \"schema\"");
            *failed = 1;
            return NULL;
        }
    } else if (rft && strcmp(rft, "text")) {
        if (err && errlen) snprintf(err, errlen, "response_format: unknown type (expected text, json_object or json_schema)");
        *failed = 1;
        return NULL;
    } else if (json_is_string(fmt) && !strcmp(json_string_value(fmt), "json")) {
        cp.mode = GEMMA4C_CONSTRAIN_JSON_OBJECT;
    } else if (json_is_object(fmt)) {
        cp.mode = GEMMA4C_CONSTRAIN_JSON_SCHEMA;
        schema = json_dumps(fmt, JSON_COMPACT);
    } else if (json_is_array(tl) && json_array_size(tl)) {
        cp.mode = GEMMA4C_CONSTRAIN_TOOLS;
        tools = json_dumps(tl, JSON_COMPACT);
        choice = json_is_string(tc) ? strdup(json_string_value(tc)) : tc ? json_dumps(tc, JSON_COMPACT) : NULL;
    } else {
        return NULL;
    }
    cp.schema = schema;
    cp.tools = tools;
    cp.tool_choice = choice;
    gemma4c_constraint *c = NULL;
    const gemma4c_token_index *x = g4_engine_token_index(m, err, errlen);
    if (x) c = gemma4c_constraint_new(x, &cp, err, errlen);
    free(schema);
    free(tools);
    free(choice);
    *failed = !c;
    return c;
}
