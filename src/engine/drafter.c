/* The MTP drafter behind the public API: a gemma4-assistant opened for one
 * target model, and the drafting round the decode loop calls. A round chains
 * k steps at one position (the pending token's): step 1 takes the pending
 * token and the target's hidden row of the logits row that chose it, each
 * later step the previous draft and the assistant's own projected row
 * (docs/gemma4-mtp.md, "The drafting loop"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "model/assistant.h"

struct gemma4c_drafter {
    const gemma4c_model *target;
    g4_assistant *a;
    g4_asst_ws *ws;
    float *h;              /* [H_t] the chained hidden row */
    uint64_t steps;
    double seconds;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

gemma4c_drafter *gemma4c_drafter_open(const gemma4c_model *target, const char *path, int n_threads, int precision,
                                      char *err, size_t errlen) {
    g4_error e = { { 0 } };
    gemma4c_drafter *d = NULL;
    if (!target || !path) {
        g4_seterr(&e, "drafter: no target model or path");
        goto fail;
    }
    g4_gguf_file *f = g4_gguf_open(path, &e);
    if (!f) goto fail;
    d = calloc(1, sizeof *d);
    if (!d) { g4_gguf_close(f); g4_seterr(&e, "out of memory"); goto fail; }
    d->target = target;
    if (!(d->a = g4_assistant_load(f, target->m, &e))) goto fail;
    if (!(d->ws = g4_asst_ws_new(d->a, n_threads, precision, &e))) goto fail;
    if (!(d->h = malloc((size_t)d->a->n_embd_out * sizeof *d->h))) { g4_seterr(&e, "out of memory"); goto fail; }
    return d;
fail:
    gemma4c_drafter_free(d);
    if (err && errlen) snprintf(err, errlen, "%s", e.msg);
    return NULL;
}

void gemma4c_drafter_free(gemma4c_drafter *d) {
    if (!d) return;
    g4_asst_ws_free(d->ws);
    g4_assistant_free(d->a);
    free(d->h);
    free(d);
}

void gemma4c_drafter_cost(const gemma4c_drafter *d, uint64_t *steps, double *seconds) {
    if (steps) *steps = d ? d->steps : 0;
    if (seconds) *seconds = d ? d->seconds : 0;
}

const float *g4_engine_hidden(const gemma4c_context *c, int i) {
    size_t H = (size_t)c->model->m->n_embd;
    if (i < 0) return c->n_rows > 0 ? c->hidden + (size_t)(c->n_rows - 1) * H : NULL;
    if (i >= c->n_idx || c->row_of[i] < 0) return NULL;
    return c->hidden + (size_t)c->row_of[i] * H;
}

int g4_engine_draft_mtp(gemma4c_context *c, gemma4c_drafter *d, int32_t token, const float *h, int32_t *out,
                        int max) {
    if (!d || d->target != c->model || !h || max < 1) return 0;
    g4_seq *s = c->seqs[0];
    double t0 = now_s();
    memcpy(d->h, h, (size_t)d->a->n_embd_out * sizeof *d->h);
    int k = 0;
    for (int32_t x = token; k < max; k++) {
        int32_t y = g4_assistant_step(d->ws, c->model->m, s, x, d->h, s->n_past, d->h, NULL, NULL);
        if (y < 0) break;
        out[k] = x = y;
    }
    d->steps += (uint64_t)k;
    d->seconds += now_s() - t0;
    return k;
}
