/* The Ollama-compatible API: /api/chat, /api/generate (NDJSON streams, one
 * JSON object a line, or one object), /api/tags, /api/show, /api/ps,
 * /api/version. Field names and shapes follow Ollama's api/types.go
 * (ChatResponse, GenerateResponse, ListResponse, ShowResponse,
 * ProcessResponse); durations are nanoseconds; errors are {"error": text}
 * (http.c, for every /api/ path). Bodies become scheduler requests in
 * convert.c; the answers are built from the scheduler's events here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "convert.h"
#include "server.h"

/* Ollama's version this API follows (clients compare it for features). */
#define OLLAMA_API_VERSION "0.12.0"

/* RFC 3339 with nanoseconds, UTC: Ollama's created_at / modified_at. */
static void rfc3339(char *buf, size_t n, const struct timespec *ts) {
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    char d[40];
    strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%09ldZ", d, ts->tv_nsec);
}

static void now_rfc3339(char *buf, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rfc3339(buf, n, &ts);
}

/* The names Ollama clients use for our model: "<id>", "<id>:latest", the
 * file name. */
static int our_model(srv *S, const char *n) {
    size_t il = strlen(S->model_id);
    return !strcmp(n, S->model_id) || !strcmp(n, S->model_file) ||
           (!strncmp(n, S->model_id, il) && !strcmp(n + il, ":latest"));
}

/* "model" (or the older "name") of an Ollama body: 0, or -1 after 404/400. */
static int ollama_model(http_req *r, json_t *body, int *ret) {
    json_t *m = json_object_get(body, "model");
    if (!m || json_is_null(m) || (json_is_string(m) && !json_string_length(m))) m = json_object_get(body, "name");
    if (!m || json_is_null(m)) return 0;
    if (!json_is_string(m)) {
        *ret = reply_error(r, 400, "invalid_request_error", "model", NULL, "\"model\" must be a string");
        return -1;
    }
    if (our_model(r->S, json_string_value(m))) return 0;
    *ret = reply_error(r, 404, "invalid_request_error", "model", NULL, "model '%s' not found", json_string_value(m));
    return -1;
}

static const char *done_reason(const char *finish) {
    /* Ollama knows "stop" and "length"; a call ends the turn like a stop.
     * A cancelled answer (server shutdown) says so. */
    if (!finish || !strcmp(finish, "tool_calls")) return "stop";
    return finish;
}

/* Ollama's tool call from ours: arguments as an object, not JSON text. */
static json_t *tool_call(int index, const char *name, const char *args, size_t alen) {
    json_t *a = json_loadb(args, alen, 0, NULL);
    if (!json_is_object(a)) { json_decref(a); a = json_object(); }
    return json_pack("{s:{s:i,s:s,s:o}}", "function", "index", index, "name", name, "arguments", a);
}

typedef struct ostream {
    job *j;
    int chat;
    char *model;           /* the name the request used */
    double t0, t_first;    /* submitted, first token */
} ostream;

static void os_free(void *p) {
    ostream *o = p;
    free(o->model);
    free(o);
}

static json_t *head(const char *model) {
    char ts[64];
    now_rfc3339(ts, sizeof ts);
    return json_pack("{s:s,s:s}", "model", model, "created_at", ts);
}

/* The final object's counters (Ollama's Metrics, nanoseconds). */
static void metrics(json_t *o, json_t *done, double t0, double t_first) {
    json_t *u = json_object_get(done, "usage");
    double t1 = now_s();
    if (t_first <= 0) t_first = t1;
    json_object_set_new(o, "total_duration", json_integer((json_int_t)((t1 - t0) * 1e9)));
    json_object_set_new(o, "load_duration", json_integer(0));
    json_object_set_new(o, "prompt_eval_count", json_integer(json_integer_value(json_object_get(u, "prompt_tokens"))));
    json_object_set_new(o, "prompt_eval_duration", json_integer((json_int_t)((t_first - t0) * 1e9)));
    json_object_set_new(o, "eval_count", json_integer(json_integer_value(json_object_get(u, "completion_tokens"))));
    json_object_set_new(o, "eval_duration", json_integer((json_int_t)((t1 - t_first) * 1e9)));
}

static void line(sbuf *out, json_t *o) {
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!t) return;
    sbuf_add(out, t, strlen(t));
    sbuf_add(out, "\n", 1);
    free(t);
}

static void note_usage(http_req *r, json_t *done) {
    json_t *u = json_object_get(done, "usage");
    r->tokens_in = (long)json_integer_value(json_object_get(u, "prompt_tokens"));
    r->tokens_out = (long)json_integer_value(json_object_get(u, "completion_tokens"));
}

static int os_fill(void *ctx, http_req *r, sbuf *out) {
    ostream *o = ctx;
    job_ev *e = job_next(o->j, 1000);
    if (!e) return 0;
    int end = 0;
    if (e->kind == GEMMA4C_EVENT_DELTA) {
        if (o->t_first <= 0) o->t_first = now_s();
        json_t *h = head(o->model);
        int think = e->dkind == GEMMA4C_DELTA_REASONING, call = e->dkind == GEMMA4C_DELTA_TOOL_CALL;
        if (o->chat) {
            json_t *m = json_pack("{s:s,s:s%}", "role", "assistant", "content", think || call ? "" : e->text,
                                  think || call ? (size_t)0 : e->len);
            if (think) json_object_set_new(m, "thinking", json_stringn(e->text, e->len));
            if (call) json_object_set_new(m, "tool_calls", json_pack("[o]", tool_call(e->index, e->name, e->text, e->len)));
            json_object_set_new(h, "message", m);
        } else {
            json_object_set_new(h, "response", json_stringn(think || call ? "" : e->text, think || call ? 0 : e->len));
            if (think) json_object_set_new(h, "thinking", json_stringn(e->text, e->len));
        }
        json_object_set_new(h, "done", json_false());
        if (!call || o->chat) line(out, h);
        else json_decref(h);
    } else if (e->kind == GEMMA4C_EVENT_DONE) {
        json_t *done = json_loadb(e->text, e->len, 0, NULL);
        json_t *ch0 = json_array_get(json_object_get(done, "choices"), 0);
        note_usage(r, done);
        json_t *h = head(o->model);
        if (o->chat) json_object_set_new(h, "message", json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
        else json_object_set_new(h, "response", json_string(""));
        json_object_set_new(h, "done", json_true());
        json_object_set_new(h, "done_reason",
                            json_string(done_reason(json_string_value(json_object_get(ch0, "finish_reason")))));
        metrics(h, done, o->t0, o->t_first);
        line(out, h);
        json_decref(done);
        end = 1;
    } else {
        line(out, json_pack("{s:s}", "error", e->text));
        end = 1;
    }
    job_ev_free(e);
    return end;
}

/* The whole answer as one object (stream: false). */
static json_t *whole(const char *model, int chat, json_t *done, double t0) {
    json_t *ch0 = json_array_get(json_object_get(done, "choices"), 0), *msg = json_object_get(ch0, "message");
    json_t *content = json_object_get(msg, "content"), *rc = json_object_get(msg, "reasoning_content");
    json_t *calls = json_object_get(msg, "tool_calls");
    json_t *h = head(model);
    const char *text = json_is_string(content) ? json_string_value(content) : "";
    size_t tlen = json_is_string(content) ? json_string_length(content) : 0;
    if (chat) {
        json_t *m = json_pack("{s:s,s:s%}", "role", "assistant", "content", text, tlen);
        if (json_is_string(rc) && json_string_length(rc)) json_object_set(m, "thinking", rc);
        if (json_array_size(calls)) {
            json_t *tc = json_array();
            for (size_t i = 0; i < json_array_size(calls); i++) {
                json_t *f = json_object_get(json_array_get(calls, i), "function");
                json_t *a = json_object_get(f, "arguments");
                const char *n = json_string_value(json_object_get(f, "name"));
                char *at = json_is_string(a) ? NULL : json_dumps(a ? a : json_object(), JSON_COMPACT);
                const char *as = json_is_string(a) ? json_string_value(a) : at ? at : "{}";
                json_array_append_new(tc, tool_call((int)i, n ? n : "", as, strlen(as)));
                free(at);
            }
            json_object_set_new(m, "tool_calls", tc);
        }
        json_object_set_new(h, "message", m);
    } else {
        json_object_set_new(h, "response", json_stringn(text, tlen));
        if (json_is_string(rc) && json_string_length(rc)) json_object_set(h, "thinking", rc);
    }
    json_object_set_new(h, "done", json_true());
    json_object_set_new(h, "done_reason", json_string(done_reason(json_string_value(json_object_get(ch0, "finish_reason")))));
    metrics(h, done, t0, 0);
    return h;
}

static int ollama_generate(srv *S, http_req *r, int chat) {
    int ret = 0, stream;
    json_t *body = body_object(r, &ret), *req = NULL;
    if (!body) return ret;
    char err[600];
    if (ollama_model(r, body, &ret)) goto out;
    if (!(req = conv_ollama(body, chat, &stream, err, sizeof err))) {
        ret = reply_error(r, 400, "invalid_request_error", NULL, NULL, "%s", err);
        goto out;
    }
    if (media_check(r, body, 1, &ret)) goto out;
    json_t *mj = json_object_get(body, "model");
    const char *model = json_is_string(mj) && json_string_length(mj) ? json_string_value(mj) : S->model_id;
    /* Ollama answers an empty request by loading the model: done at once */
    json_t *msgs = json_object_get(req, "messages"), *p = json_object_get(body, "prompt");
    if (chat ? !json_array_size(msgs) : !json_is_string(p) || !json_string_length(p)) {
        json_t *h = head(model);
        if (chat) json_object_set_new(h, "message", json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
        else json_object_set_new(h, "response", json_string(""));
        json_object_set_new(h, "done", json_true());
        json_object_set_new(h, "done_reason", json_string("load"));
        ret = reply_json(r, 200, h);
        goto out;
    }
    double t0 = now_s();
    job *j = job_submit(r, req, &ret);
    if (!j) goto out;
    if (stream) {
        ostream *o = calloc(1, sizeof *o);
        if (!o || !(o->model = strdup(model))) {
            free(o);
            ret = reply_error(r, 500, "server_error", NULL, NULL, "out of memory");
            goto out;
        }
        o->j = j;
        o->chat = chat;
        o->t0 = t0;
        ret = reply_stream_as(r, "application/x-ndjson", NULL, os_fill, o, os_free);
        goto out;
    }
    json_t *d = wait_done(r, j, &ret);
    if (!d) goto out;
    ret = reply_json(r, 200, whole(model, chat, d, t0));
    json_decref(d);
out:
    json_decref(body);
    json_decref(req);
    return ret;
}

static int api_chat(srv *S, http_req *r) { return ollama_generate(S, r, 1); }
static int api_generate(srv *S, http_req *r) { return ollama_generate(S, r, 0); }

/* Ollama's ModelDetails. The public model info has no file type, so the
 * quantization level is read from the file name as llama.cpp names files
 * (...-Q4_K_M.gguf), else "unknown". */
static json_t *details(srv *S) {
    gemma4c_model_info mi;
    gemma4c_model_get_info(S->model, &mi);
    char ps[32], q[32] = "unknown";
    double np = (double)mi.n_params;
    if (np >= 1e9) snprintf(ps, sizeof ps, "%.1fB", np / 1e9);
    else snprintf(ps, sizeof ps, "%.1fM", np / 1e6);
    const char *dash = strrchr(S->model_id, '-'), *dot = strrchr(S->model_id, '.');
    const char *tail = dash && (!dot || dash > dot) ? dash + 1 : dot ? dot + 1 : NULL;
    if (tail && (tail[0] == 'Q' || tail[0] == 'q' || !strncmp(tail, "F16", 3) || !strncmp(tail, "BF16", 4) ||
                 !strncmp(tail, "F32", 3)))
        snprintf(q, sizeof q, "%s", tail);
    return json_pack("{s:s,s:s,s:s,s:[s],s:s,s:s}", "parent_model", "", "format", "gguf", "family", "gemma4",
                     "families", "gemma4", "parameter_size", ps, "quantization_level", q);
}

/* The file's size, modification time and a digest standing for its
 * identity (64 hex digits as Ollama's; hashed from path, size and mtime, not
 * the bytes: reading a large model at every listing would cost seconds). */
static void file_facts(srv *S, json_int_t *size, char *mtime, size_t mlen, char *digest) {
    struct stat sb;
    struct timespec ts = { 0, 0 };
    *size = 0;
    if (!stat(S->model_path, &sb)) {
        *size = (json_int_t)sb.st_size;
        ts = sb.st_mtim;
    }
    rfc3339(mtime, mlen, &ts);
    uint64_t h[4] = { 0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull };
    char key[512];
    int n = snprintf(key, sizeof key, "%s|%lld|%lld.%ld", S->model_path, (long long)*size, (long long)ts.tv_sec, ts.tv_nsec);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < n && i < (int)sizeof key; i++) h[k] = (h[k] ^ (unsigned char)key[i]) * 0x100000001b3ull;
    for (int k = 0; k < 4; k++) snprintf(digest + 16 * k, 17, "%016llx", (unsigned long long)h[k]);
}

static json_t *model_entry(srv *S, int running) {
    json_int_t size;
    char mt[64], dg[65], name[300];
    file_facts(S, &size, mt, sizeof mt, dg);
    snprintf(name, sizeof name, "%s:latest", S->model_id);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:o}", "name", name, "model", name, "size", size, "digest", dg, "details",
                          details(S));
    if (running) { /* loaded for as long as the server runs: no expiry to report */
        char far[64];
        struct timespec ts = { 4102444800, 0 }; /* 2100-01-01 */
        rfc3339(far, sizeof far, &ts);
        json_object_set_new(o, "expires_at", json_string(far));
        json_object_set_new(o, "size_vram", json_integer(0));
        json_object_set_new(o, "context_length", json_integer(S->n_ctx));
    } else {
        json_object_set_new(o, "modified_at", json_string(mt));
    }
    return o;
}

static int api_tags(srv *S, http_req *r) {
    return reply_json(r, 200, json_pack("{s:[o]}", "models", model_entry(S, 0)));
}

static int api_ps(srv *S, http_req *r) {
    return reply_json(r, 200, json_pack("{s:[o]}", "models", model_entry(S, 1)));
}

static int api_version(srv *S, http_req *r) {
    return reply_json(r, 200, json_pack("{s:s}", "version", OLLAMA_API_VERSION));
}

static int api_show(srv *S, http_req *r) {
    int ret = 0;
    json_t *body = body_object(r, &ret);
    if (!body) return ret;
    if (ollama_model(r, body, &ret)) { json_decref(body); return ret; }
    json_decref(body);
    gemma4c_model_info mi;
    gemma4c_model_get_info(S->model, &mi);
    gemma4c_sampler_params sp = gemma4c_sampler_default_params();
    char params[256], mf[600], mt[64], dg[65];
    json_int_t size;
    file_facts(S, &size, mt, sizeof mt, dg);
    snprintf(params, sizeof params, "temperature %g\ntop_k %d\ntop_p %g", sp.temperature, sp.top_k, sp.top_p);
    snprintf(mf, sizeof mf, "# gemma4c serve: %s\nFROM %s\nPARAMETER temperature %g\nPARAMETER top_k %d\nPARAMETER top_p %g\n",
             S->model_id, S->model_path, sp.temperature, sp.top_k, sp.top_p);
    const char *fam = gemma4c_chat_family_name(gemma4c_model_chat_family(S->model));
    char tpl[160];
    snprintf(tpl, sizeof tpl, "(the Gemma 4 chat format, family \"%s\": POST /apply-template renders a request)", fam);
    json_t *info = json_pack("{s:s,s:I,s:i,s:i,s:i,s:i,s:i}", "general.architecture", "gemma4", "general.parameter_count",
                             (json_int_t)mi.n_params, "gemma4.context_length", mi.n_ctx_train, "gemma4.block_count",
                             mi.n_layer, "gemma4.embedding_length", mi.n_embd, "gemma4.attention.head_count", mi.n_head,
                             "gemma4.vocab_size", mi.n_vocab);
    json_object_set_new(info, "general.name", json_string(mi.name ? mi.name : S->model_id));
    json_t *caps = json_pack("[s]", "completion");
    if (gemma4c_mmproj_supports(S->mmproj, GEMMA4C_MEDIA_IMAGE)) json_array_append_new(caps, json_string("vision"));
    if (gemma4c_mmproj_supports(S->mmproj, GEMMA4C_MEDIA_AUDIO)) json_array_append_new(caps, json_string("audio"));
    json_array_append_new(caps, json_string("tools"));
    json_array_append_new(caps, json_string("thinking"));
    return reply_json(r, 200, json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:s}", "modelfile", mf, "parameters", params,
                                        "template", tpl, "details", details(S), "model_info", info, "capabilities",
                                        caps, "modified_at", mt));
}

const route OLLAMA_ROUTES[] = {
    { "POST", "/api/chat", api_chat },
    { "POST", "/api/generate", api_generate },
    { "GET", "/api/tags", api_tags },
    { "POST", "/api/show", api_show },
    { "GET", "/api/ps", api_ps },
    { "GET", "/api/version", api_version },
    { NULL, NULL, NULL },
};
