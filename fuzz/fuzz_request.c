/* libFuzzer target for gemma4c serve's request conversion: an HTTP body ->
 * the scheduler's request (server/convert.c, linked directly: it has no
 * socket) -> rendered prompt, tokens, sampling, stop strings, logit_bias
 * and constraint (gemma4c_scheduler_submit on a tiny synthetic model, which
 * does all of that before queueing). The first byte picks the route and
 * the chat family:
 *   bits 0-1: 0 /v1/chat/completions, 1 /v1/completions, 2 /api/chat,
 *             3 /api/generate
 *   bit 2:    the 26B/31B chat family instead of E2B/E4B
 * the rest is the body (its media parts are base64-decoded too). Checks beyond "no crash": a conversion that fails
 * names a field (its message starts with a quote); an accepted request
 * serialises to JSON. Queued requests are dropped by recreating the
 * scheduler now and then (no forward pass runs here). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../server/convert.h"
#include "gemma4c.h"

static gemma4c_model *model;
static gemma4c_scheduler *sched[2];
static int queued[2];

static gemma4c_scheduler *scheduler(int fam) {
    if (sched[fam] && queued[fam] < 128) return sched[fam];
    gemma4c_scheduler_free(sched[fam]);
    gemma4c_scheduler_params p = gemma4c_scheduler_default_params();
    p.n_parallel = 1;
    p.n_ctx = 512;
    p.n_threads = 1;
    p.max_queue = 1 << 20;
    p.openai_compat = 1;
    p.family = fam ? GEMMA4C_CHAT_31B : GEMMA4C_CHAT_E;
    char err[300];
    sched[fam] = gemma4c_scheduler_new(model, &p, err, sizeof err);
    if (!sched[fam]) { fprintf(stderr, "fuzz_request: %s\n", err); abort(); }
    queued[fam] = 0;
    return sched[fam];
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char path[64], err[600];
    snprintf(path, sizeof path, "/tmp/g4-fuzz-request-%d.gguf", (int)getpid());
    if (gemma4c_synth(path, "tiny", "F32", 1, NULL, err, sizeof err)) { fprintf(stderr, "fuzz_request: %s\n", err); abort(); }
    model = gemma4c_model_open(path, err, sizeof err);
    unlink(path); /* mapped: the file goes when the process does */
    if (!model) { fprintf(stderr, "fuzz_request: %s\n", err); abort(); }
    return 0;
}

static void on_event(void *user, const gemma4c_event *e) { (void)user; (void)e; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    int route = data[0] & 3, fam = (data[0] >> 2) & 1;
    json_t *body = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (!body) return 0;
    char err[600] = "";
    int stream = 0, usage = 0;
    json_t *req = route < 2 ? conv_openai(body, route, &stream, &usage, err, sizeof err)
                            : conv_ollama(body, route == 2, &stream, err, sizeof err);
    /* the media parts (data: URIs, base64) as the routes collect them */
    conv_media *mv = NULL;
    int nm = 0;
    char merr[600] = "";
    if (req && conv_media_collect(body, route >= 2, &mv, &nm, merr, sizeof merr)) {
        if (merr[0] != '"' && strcmp(merr, "out of memory")) abort();
    }
    for (int i = 0; i < nm; i++) if (!mv[i].len || !mv[i].data) abort();
    conv_media_free(mv, nm);
    json_decref(body);
    if (!req) {
        if (err[0] != '"' && strcmp(err, "out of memory")) abort(); /* every error names its field */
        return 0;
    }
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text) abort();
    uint64_t id;
    gemma4c_scheduler *s = scheduler(fam);
    if (!gemma4c_scheduler_submit(s, text, strlen(text), on_event, NULL, &id, err, sizeof err)) queued[fam]++;
    free(text);
    return 0;
}
