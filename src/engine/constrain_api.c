/* Public constrained-decoding calls (include/gemma4c.h) over src/constrain/:
 * a constraint is a compiled grammar, its automaton state, the shared token
 * index and its own mask scratch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/constrain.h"
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
