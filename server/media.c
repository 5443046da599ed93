/* Media requests (images, audio) of gemma4c serve. The scheduler takes text
 * requests only, so a request with media parts is answered by a chat
 * session (the library's media path: gemma4c_session_add_media expands the
 * parts into soft tokens) on a context of its own, one such request at a
 * time, on a worker thread that sends the scheduler's events to the job:
 * the routes stream and answer it exactly as a scheduler request. The items
 * are decoded when the request arrives, so a bad file is a 400. Not here
 * (the session has no such fields): logit_bias, stop, logprobs, n > 1. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "convert.h"
#include "server.h"

static const char *kind_name(int k) { return k == GEMMA4C_MEDIA_AUDIO ? "audio" : "vision"; }

int media_check(http_req *r, const json_t *body, int ollama, int *ret) {
    conv_media *mv = NULL;
    int n = 0;
    char err[600];
    if (conv_media_collect(body, ollama, &mv, &n, err, sizeof err)) {
        *ret = reply_error(r, 400, "invalid_request_error", NULL, NULL, "%s", err);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (!r->S->mmproj || !gemma4c_mmproj_supports(r->S->mmproj, mv[i].kind)) {
            *ret = reply_error(r, 400, "invalid_request_error", NULL, NULL,
                               "media item %d: the model has no %s encoder (start gemma4c serve with --mmproj FILE)",
                               i + 1, kind_name(mv[i].kind));
            conv_media_free(mv, n);
            return -1;
        }
    if (n && json_is_true(json_object_get(body, "logprobs"))) {
        *ret = reply_error(r, 400, "invalid_request_error", "logprobs", NULL,
                           "\"logprobs\" is not available for requests with media parts");
        conv_media_free(mv, n);
        return -1;
    }
    r->media = mv;
    r->n_media = n;
    return 0;
}

/* The bytes to a temporary file for gemma4c_media_load (which reads files),
 * removed at once. */
static gemma4c_media *load_item(srv *S, const conv_media *m, int i, char *err, size_t errlen) {
    char path[] = "/tmp/gemma4c-media-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { snprintf(err, errlen, "media item %d: cannot write a temporary file", i + 1); return NULL; }
    size_t off = 0;
    while (off < m->len) {
        ssize_t w = write(fd, m->data + off, m->len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    gemma4c_media *it = NULL;
    char e2[500];
    if (off == m->len) {
        gemma4c_media_params mp = gemma4c_media_default_params();
        mp.n_threads = S->n_threads;
        it = gemma4c_media_load(S->mmproj, path, m->kind, &mp, e2, sizeof e2);
        if (!it) snprintf(err, errlen, "media item %d (%s): %s", i + 1, m->kind == GEMMA4C_MEDIA_AUDIO ? "audio" : "image",
                          strstr(e2, path) == e2 ? e2 + strlen(path) + (e2[strlen(path)] == ':' ? 2 : 0) : e2);
    } else {
        snprintf(err, errlen, "media item %d: cannot write a temporary file", i + 1);
    }
    unlink(path);
    return it;
}

typedef struct mjob {
    srv *S;
    char *text;               /* the request, media parts as {"type": "image"/"audio"} */
    gemma4c_media *it[CONV_MAX_MEDIA];
    int n;
    gemma4c_event_fn fn;
    void *user;
    uint64_t id;
} mjob;

static void mjob_free(mjob *mj) {
    for (int i = 0; i < mj->n; i++) gemma4c_media_free(mj->it[i]);
    free(mj->text);
    free(mj);
}

/* Deltas as the scheduler sends them: bytes that are not UTF-8 (a model can
 * emit any byte token) as U+FFFD, so that each is a valid JSON string. */
static void on_delta(void *user, const gemma4c_delta *d) {
    mjob *mj = user;
    gemma4c_delta c = *d;
    char *fix = NULL;
    if (d->kind != GEMMA4C_DELTA_TOOL_CALL && d->len && (fix = malloc(d->len * 3))) {
        size_t o = 0;
        for (size_t i = 0; i < d->len;) {
            json_t *one = NULL;
            size_t k = 1;
            unsigned char b = (unsigned char)d->text[i];
            if (b >= 0x80) { /* the longest valid sequence here, by asking jansson */
                k = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
                one = i + k <= d->len ? json_stringn(d->text + i, k) : NULL;
                if (!one) k = 1;
            }
            if (b >= 0x80 && !one) { memcpy(fix + o, "\xEF\xBF\xBD", 3); o += 3; }
            else { memcpy(fix + o, d->text + i, k); o += k; }
            json_decref(one);
            i += k;
        }
        c.text = fix;
        c.len = o;
    }
    gemma4c_event e = { .kind = GEMMA4C_EVENT_DELTA, .id = mj->id, .delta = &c };
    mj->fn(mj->user, &e);
    free(fix);
}

/* Stop at shutdown, or when the HTTP side left (the client is gone: the
 * job holds only the worker's reference). */
static int stopping(void *user) {
    mjob *mj = user;
    srv *S = mj->S;
    job *j = mj->user;
    pthread_mutex_lock(&S->mu);
    int s = S->stopping;
    pthread_mutex_unlock(&S->mu);
    pthread_mutex_lock(&j->mu);
    s |= j->refs < 2 || j->cancel;
    pthread_mutex_unlock(&j->mu);
    return s;
}

static void fail_event(mjob *mj, const char *msg) {
    gemma4c_event e = { .kind = GEMMA4C_EVENT_ERROR, .id = mj->id, .error = msg };
    mj->fn(mj->user, &e);
}

/* Sampling and the answer's limit from the request (types checked by convert.c). */
static void read_params(json_t *req, gemma4c_session_params *sp) {
    json_t *v;
    if (json_is_number(v = json_object_get(req, "temperature"))) sp->sampling.temperature = (float)json_number_value(v);
    if (json_is_number(v = json_object_get(req, "top_p"))) sp->sampling.top_p = (float)json_number_value(v);
    if (json_is_number(v = json_object_get(req, "min_p"))) sp->sampling.min_p = (float)json_number_value(v);
    if (json_is_integer(v = json_object_get(req, "top_k"))) sp->sampling.top_k = (int)json_integer_value(v);
    if (json_is_integer(v = json_object_get(req, "seed"))) sp->sampling.seed = (uint64_t)json_integer_value(v);
    if (json_is_integer(v = json_object_get(req, "max_tokens")) || json_is_integer(v = json_object_get(req, "max_completion_tokens")))
        sp->n_predict = json_integer_value(v) > 0 && json_integer_value(v) < (1 << 30) ? (int)json_integer_value(v) : 1;
}

static void *worker(void *p) {
    mjob *mj = p;
    srv *S = mj->S;
    char err[600];
    pthread_mutex_lock(&S->media_mu);
    json_t *req = json_loads(mj->text, 0, NULL);
    if (!S->mctx) {
        gemma4c_context_params cp = gemma4c_context_default_params();
        cp.n_ctx = S->n_ctx;
        cp.n_threads = S->n_threads;
        S->mctx = gemma4c_context_new(S->model, &cp, err, sizeof err);
    }
    gemma4c_session_params sp = gemma4c_session_default_params();
    sp.chat.openai_compat = 1;
    sp.constrain = 1; /* response_format and tools, as the scheduler */
    sp.cancel = stopping;
    sp.cancel_user = mj;
    if (req) read_params(req, &sp);
    gemma4c_session *ss = S->mctx && req ? gemma4c_session_new(S->mctx, &sp, err, sizeof err) : NULL;
    if (!req) snprintf(err, sizeof err, "out of memory");
    int ok = ss != NULL;
    for (int i = 0; ok && i < mj->n; i++) ok = !gemma4c_session_add_media(ss, mj->it[i]);
    gemma4c_turn_result res = { 0 };
    if (ok && gemma4c_session_turn(ss, mj->text, strlen(mj->text), on_delta, mj, &res, err, sizeof err)) ok = 0;
    if (ok) {
        json_t *msg = json_loads(res.message, 0, NULL);
        int tools = json_array_size(json_object_get(msg, "tool_calls")) > 0;
        const char *fin = res.finish == GEMMA4C_FINISH_LENGTH ? "length" : res.finish == GEMMA4C_FINISH_CANCEL ? "cancelled"
                        : tools ? "tool_calls" : "stop";
        char id[48];
        snprintf(id, sizeof id, "chatcmpl-%llu", (unsigned long long)mj->id);
        json_t *m = json_object_get(req, "model");
        json_t *o = msg ? json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:s,s:n}],s:{s:i,s:i,s:i,s:{s:i}}}", "id", id,
                                    "object", "chat.completion", "created", (json_int_t)time(NULL), "model",
                                    json_is_string(m) ? json_string_value(m) : S->model_id, "choices", "index", 0,
                                    "message", msg, "finish_reason", fin, "logprobs", "usage", "prompt_tokens",
                                    res.n_prompt, "completion_tokens", res.n_generated, "total_tokens",
                                    res.n_prompt + res.n_generated, "prompt_tokens_details", "cached_tokens", 0)
                          : NULL;
        char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (t) {
            gemma4c_event e = { .kind = GEMMA4C_EVENT_DONE, .id = mj->id, .json = t, .len = strlen(t), .finish = res.finish };
            mj->fn(mj->user, &e);
        } else {
            fail_event(mj, "out of memory");
        }
        free(t);
    } else {
        fail_event(mj, err);
    }
    free(res.message);
    gemma4c_session_free(ss);
    json_decref(req);
    pthread_mutex_unlock(&S->media_mu);
    mjob_free(mj);
    return NULL;
}

/* OpenAI's parts -> the chat template's: image_url -> {"type":"image"},
 * input_audio -> {"type":"audio"} (their items go to the session). */
static void plain_parts(json_t *req) {
    size_t i, k;
    json_t *m, *p;
    json_array_foreach(json_object_get(req, "messages"), i, m) {
        json_array_foreach(json_object_get(m, "content"), k, p) {
            const char *t = json_string_value(json_object_get(p, "type"));
            if (t && !strcmp(t, "image_url")) json_array_set_new(json_object_get(m, "content"), k, json_pack("{s:s}", "type", "image"));
            else if (t && !strcmp(t, "input_audio")) json_array_set_new(json_object_get(m, "content"), k, json_pack("{s:s}", "type", "audio"));
        }
    }
}

int media_submit(http_req *r, json_t *req, gemma4c_event_fn fn, void *user, uint64_t *id, char *err, size_t errlen) {
    srv *S = r->S;
    conv_media *mv = r->media;
    mjob *mj = calloc(1, sizeof *mj);
    if (!mj) { snprintf(err, errlen, "out of memory"); return -1; }
    mj->S = S;
    mj->fn = fn;
    mj->user = user;
    for (int i = 0; i < r->n_media; i++) {
        if (!(mj->it[i] = load_item(S, &mv[i], i, err, errlen))) { mjob_free(mj); return -1; }
        mj->n++;
    }
    json_t *c = json_deep_copy(req);
    if (c) plain_parts(c);
    mj->text = c ? json_dumps(c, JSON_COMPACT) : NULL;
    json_decref(c);
    if (!mj->text) { mjob_free(mj); snprintf(err, errlen, "out of memory"); return -1; }
    pthread_mutex_lock(&S->mu);
    mj->id = *id = ++S->media_ids | (1ull << 62); /* never a scheduler id */
    pthread_mutex_unlock(&S->mu);
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &at, worker, mj);
    pthread_attr_destroy(&at);
    if (rc) { mjob_free(mj); snprintf(err, errlen, "cannot start a thread"); return -1; }
    return 0;
}
