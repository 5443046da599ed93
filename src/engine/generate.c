/* The decode loop every front end shares (raw continuation and chat turns),
 * built on the public context and sampler calls only. */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemma4c.h"

int gemma4c_generate(gemma4c_context *c, gemma4c_sampler *s, const gemma4c_generate_params *p, char *err,
                     size_t errlen) {
    if (!gemma4c_logits_last(c)) {
        if (err && errlen) snprintf(err, errlen, "generate: no logits (evaluate a prompt first)");
        return -1;
    }
    const gemma4c_model *m = gemma4c_context_model(c);
    int nv = gemma4c_n_vocab(c);
    /* the context's logits are read-only: a constraint masks a copy */
    int copy = p->constraint || p->n_ban > 0;
    float *masked = copy ? malloc((size_t)nv * sizeof *masked) : NULL;
    if (copy && !masked) {
        if (err && errlen) snprintf(err, errlen, "generate: out of memory");
        return -1;
    }
    int rc = GEMMA4C_FINISH_LENGTH;
    int32_t prev = -1;
    for (int k = 0; k < p->n_predict; k++) {
        /* evaluated lazily, so the last token never costs a forward pass
         * nobody reads */
        if (prev >= 0 && gemma4c_eval(c, &prev, 1, 0, err, errlen)) { rc = -1; break; }
        if (p->cancel && p->cancel(p->user)) { rc = GEMMA4C_FINISH_CANCEL; break; }
        const float *logits = gemma4c_logits_last(c);
        if (masked) {
            memcpy(masked, logits, (size_t)nv * sizeof *masked);
            for (int i = 0; i < p->n_ban; i++)
                if (p->ban[i] >= 0 && p->ban[i] < nv) masked[p->ban[i]] = -INFINITY;
            if (p->constraint && gemma4c_constraint_apply(p->constraint, masked, nv) <= 0) {
                /* only after an end token: the output is complete */
                rc = GEMMA4C_FINISH_STOP;
                break;
            }
            logits = masked;
        }
        int32_t t = gemma4c_sampler_sample(s, logits, nv);
        if (p->constraint && gemma4c_constraint_accept(p->constraint, t)) {
            if (err && errlen) snprintf(err, errlen, "generate: the sampler picked token %d the constraint forbids", (int)t);
            rc = -1;
            break;
        }
        gemma4c_sampler_accept(s, t);
        if (p->stop_at_eog && gemma4c_is_eog(m, t)) { rc = GEMMA4C_FINISH_STOP; break; }
        if (p->on_token && p->on_token(p->user, t)) { rc = GEMMA4C_FINISH_STOP; break; }
        prev = t;
    }
    free(masked);
    return rc;
}
