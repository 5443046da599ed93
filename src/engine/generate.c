/* The decode loop every front end shares (raw continuation and chat turns),
 * built on the public context and sampler calls only. */
#include <stdio.h>

#include "gemma4c.h"

int gemma4c_generate(gemma4c_context *c, gemma4c_sampler *s, const gemma4c_generate_params *p, char *err,
                     size_t errlen) {
    if (!gemma4c_logits_last(c)) {
        if (err && errlen) snprintf(err, errlen, "generate: no logits (evaluate a prompt first)");
        return -1;
    }
    const gemma4c_model *m = gemma4c_context_model(c);
    int32_t prev = -1;
    for (int k = 0; k < p->n_predict; k++) {
        /* evaluated lazily, so the last token never costs a forward pass
         * nobody reads */
        if (prev >= 0 && gemma4c_eval(c, &prev, 1, 0, err, errlen)) return -1;
        if (p->cancel && p->cancel(p->user)) return GEMMA4C_FINISH_CANCEL;
        int32_t t = gemma4c_sampler_sample(s, gemma4c_logits_last(c), gemma4c_n_vocab(c));
        gemma4c_sampler_accept(s, t);
        if (p->stop_at_eog && gemma4c_is_eog(m, t)) return GEMMA4C_FINISH_STOP;
        if (p->on_token && p->on_token(p->user, t)) return GEMMA4C_FINISH_STOP;
        prev = t;
    }
    return GEMMA4C_FINISH_LENGTH;
}
