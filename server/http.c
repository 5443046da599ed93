/* HTTP/1.1 for gemma4c serve, on libmicrohttpd: Debian packages and
 * maintains it, it parses HTTP for us (no hand-written socket parser), and
 * its thread-per-connection mode lets a handler block on its request's
 * events while callback responses stream them (SSE) as they come.
 *
 * Each connection's thread collects the body (at most SRV_MAX_BODY), checks
 * the API key, finds the route and answers. Requests for the model go to the
 * one scheduler thread (serve.c) through job_submit; its events are copied
 * into the job's queue, which the connection thread drains. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "convert.h"
#include "server.h"

static struct MHD_Daemon *daemon_;

/* ---- request deadline --------------------------------------------------------
 * libmicrohttpd's timeout counts inactivity only, so a client that sends its
 * headers one byte a second would hold a thread forever (slowloris). Each
 * connection is tracked from its start (or the end of its last answer): a
 * request not fully received within req_timeout seconds has its socket shut
 * down by the watchdog thread; libmicrohttpd then closes it. While a request
 * is answered (busy) no deadline runs: answers may take long. */
typedef struct track {
    MHD_socket fd;
    double since;
    int busy, killed;
    struct track *next;
} track;
static pthread_mutex_t track_mu = PTHREAD_MUTEX_INITIALIZER;
static track *tracks;
static int req_timeout = 30, watch_stop;
static pthread_t watch_th;
static int watch_started;

static void track_set(struct MHD_Connection *conn, int busy) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    track *t = ci ? ci->socket_context : NULL;
    if (!t) return;
    pthread_mutex_lock(&track_mu);
    t->busy = busy;
    t->since = now_s();
    pthread_mutex_unlock(&track_mu);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        track *t = ci ? calloc(1, sizeof *t) : NULL;
        if (!t) return;
        t->fd = ci->connect_fd;
        t->since = now_s();
        pthread_mutex_lock(&track_mu);
        t->next = tracks;
        tracks = t;
        pthread_mutex_unlock(&track_mu);
        *socket_context = t;
    } else if (*socket_context) { /* closed: before libmicrohttpd closes the socket */
        track *t = *socket_context;
        pthread_mutex_lock(&track_mu);
        for (track **p = &tracks; *p; p = &(*p)->next)
            if (*p == t) { *p = t->next; break; }
        pthread_mutex_unlock(&track_mu);
        free(t);
        *socket_context = NULL;
    }
}

static void *watchdog(void *arg) {
    while (!__atomic_load_n(&watch_stop, __ATOMIC_RELAXED)) {
        usleep(250000);
        double now = now_s();
        pthread_mutex_lock(&track_mu);
        for (track *t = tracks; t; t = t->next)
            if (!t->busy && !t->killed && now - t->since > req_timeout) {
                t->killed = 1;
                shutdown(t->fd, SHUT_RDWR);
                fprintf(stderr, "connection timed out: no complete request in %d s\n", req_timeout);
            }
        pthread_mutex_unlock(&track_mu);
    }
    return NULL;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- jobs --------------------------------------------------------------------- */

void job_ev_free(job_ev *e) {
    if (!e) return;
    free(e->text);
    free(e->name);
    free(e->call_id);
    free(e);
}

static void job_unref(job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    for (job_ev *e = j->head, *n; e; e = n) { n = e->next; job_ev_free(e); }
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static char *memdup0(const char *p, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, p, n);
    d[n] = 0;
    return d;
}

/* On the scheduler thread: copy the event and return at once. */
static void on_event(void *user, const gemma4c_event *e) {
    job *j = user;
    int final = e->kind == GEMMA4C_EVENT_DONE || e->kind == GEMMA4C_EVENT_ERROR;
    job_ev *v = calloc(1, sizeof *v);
    if (v) {
        v->kind = e->kind;
        if (e->kind == GEMMA4C_EVENT_DELTA) {
            const gemma4c_delta *d = e->delta;
            v->dkind = d->kind;
            if (d->kind == GEMMA4C_DELTA_TOOL_CALL) {
                v->index = d->index;
                v->name = strdup(d->name ? d->name : "");
                v->call_id = strdup(d->id ? d->id : "");
                v->text = strdup(d->arguments ? d->arguments : "{}");
                v->len = v->text ? strlen(v->text) : 0;
            } else {
                v->text = memdup0(d->text, d->len);
                v->len = d->len;
            }
        } else if (e->kind == GEMMA4C_EVENT_DONE || e->kind == GEMMA4C_EVENT_LOGPROB) {
            v->text = memdup0(e->json, e->len);
            v->len = e->len;
        } else {
            v->text = strdup(e->error ? e->error : "failed");
        }
        if (!v->text) { job_ev_free(v); v = NULL; }
    }
    pthread_mutex_lock(&j->mu);
    if (v) {
        if (j->tail) j->tail->next = v;
        else j->head = v;
        j->tail = v;
    }
    if (final) j->ended = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (final) job_unref(j); /* the scheduler's reference: no event follows */
}

job_ev *job_next(job *j, int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&j->mu);
    while (!j->head && !j->ended)
        if (pthread_cond_timedwait(&j->cv, &j->mu, &until) == ETIMEDOUT) break;
    job_ev *e = j->head;
    if (e) {
        j->head = e->next;
        if (!j->head) j->tail = NULL;
        e->next = NULL;
    }
    int lost = !e && j->ended;
    pthread_mutex_unlock(&j->mu);
    if (lost && (e = calloc(1, sizeof *e))) { /* the final event could not be copied */
        e->kind = GEMMA4C_EVENT_ERROR;
        e->text = strdup("out of memory");
    }
    return e;
}

job *job_submit(http_req *r, json_t *req, int *ret) {
    srv *S = r->S;
    char *text = json_dumps(req, JSON_COMPACT);
    job *j = calloc(1, sizeof *j);
    if (!text || !j) {
        free(text);
        free(j);
        *ret = reply_error(r, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 2;
    if (!json_is_string(json_object_get(req, "model"))) /* the answer names the model as /v1/models does */
        json_object_set_new(req, "model", json_string(S->model_id));
    free(text);
    text = json_dumps(req, JSON_COMPACT);
    if (!text) { pthread_mutex_destroy(&j->mu); pthread_cond_destroy(&j->cv); free(j);
        *ret = reply_error(r, 500, "server_error", NULL, NULL, "out of memory"); return NULL; }
    if (S->verbose) fprintf(stderr, "  request: %s\n", text);
    char err[600];
    uint64_t id = 0;
    int rc = r->n_media ? media_submit(r, req, on_event, j, &id, err, sizeof err)
                        : gemma4c_scheduler_submit(S->sched, text, strlen(text), on_event, j, &id, err, sizeof err);
    free(text);
    if (rc) {
        j->refs = 1;
        job_unref(j);
        if (rc == GEMMA4C_ERR_QUEUE_FULL) {
            *ret = reply_error(r, 503, "server_error", NULL, "queue_full", "the server is busy: %s; retry later", err);
        } else if (rc == GEMMA4C_ERR_CONTEXT_FULL) {
            *ret = reply_error(r, 400, "invalid_request_error", json_object_get(req, "messages") ? "messages" : "prompt",
                               "context_length_exceeded", "%s", err);
        } else {
            *ret = reply_error(r, 400, "invalid_request_error", NULL, NULL, "%s", err);
        }
        return NULL;
    }
    j->id = id;
    r->jobs[r->n_jobs++] = j;
    pthread_mutex_lock(&S->mu);
    j->next_live = S->live;
    S->live = j;
    pthread_mutex_unlock(&S->mu);
    return j;
}

/* The HTTP side is done with r's job: cancel it if it still runs (the
 * client left), take it off the live list, drop our reference. */
static void job_leave(http_req *r) {
    srv *S = r->S;
    for (int i = 0; i < r->n_jobs; i++) {
        job *j = r->jobs[i];
        pthread_mutex_lock(&j->mu);
        int ended = j->ended;
        pthread_mutex_unlock(&j->mu);
        if (!ended) gemma4c_scheduler_cancel(S->sched, j->id);
        pthread_mutex_lock(&S->mu);
        for (job **p = &S->live; *p; p = &(*p)->next_live)
            if (*p == j) { *p = j->next_live; break; }
        pthread_mutex_unlock(&S->mu);
        job_unref(j);
    }
    r->n_jobs = 0;
}

int client_gone(http_req *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd pf = { .fd = ci->connect_fd, .events = POLLRDHUP };
    return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* ---- replies -------------------------------------------------------------------- */

static int queue(http_req *r, int status, struct MHD_Response *resp) {
    if (!resp) return MHD_NO;
    r->status = status;
    if (status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    int rc = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

int reply_text(http_req *r, int status, const char *ctype, const char *text, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (resp) MHD_add_response_header(resp, "Content-Type", ctype);
    return queue(r, status, resp);
}

int reply_json(http_req *r, int status, json_t *body) {
    char *t = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!t) return reply_text(r, 500, "application/json", "{\"error\":{\"message\":\"out of memory\"}}", 36);
    int rc = reply_text(r, status, "application/json", t, strlen(t));
    free(t);
    return rc;
}

int reply_error(http_req *r, int status, const char *type, const char *param, const char *code, const char *fmt,
                ...) {
    char msg[1024], pbuf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* "name: ..." (the constraint's messages) names the field before a colon */
    size_t pre = strspn(msg, "abcdefghijklmnopqrstuvwxyz_");
    if (!param && status == 400 && pre && msg[pre] == ':' && strncmp(msg, "request:", 8) && pre < sizeof pbuf) {
        memcpy(pbuf, msg, pre);
        pbuf[pre] = 0;
        param = pbuf;
    }
    if (!param && status == 400) { /* the scheduler names the field first, in quotes */
        const char *a = strchr(msg, '"'), *b = a ? strchr(a + 1, '"') : NULL;
        if (a && b && (size_t)(b - a - 1) < sizeof pbuf && b > a + 1) {
            memcpy(pbuf, a + 1, (size_t)(b - a - 1));
            pbuf[b - a - 1] = 0;
            param = pbuf;
        }
    }
    if (r->ollama) return reply_json(r, status, json_pack("{s:s}", "error", msg));
    json_t *e = json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error", "message", msg, "type", type, "param", param, "code", code);
    if (e && !param) json_object_set_new(json_object_get(e, "error"), "param", json_null());
    if (e && !code) json_object_set_new(json_object_get(e, "error"), "code", json_null());
    return reply_json(r, status, e);
}

json_t *body_object(http_req *r, int *ret) {
    json_error_t je;
    json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, &je);
    if (!j) {
        *ret = reply_error(r, 400, "invalid_request_error", "body", "invalid_json",
                    "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *ret = reply_error(r, 400, "invalid_request_error", "body", "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ---- streaming -------------------------------------------------------------------- */

void sbuf_add(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) return; /* the event is dropped; the stream's end still comes */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void sbuf_sse(sbuf *b, json_t *obj) {
    char *t = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!t) return;
    sbuf_add(b, "data: ", 6);
    sbuf_add(b, t, strlen(t));
    sbuf_add(b, "\n\n", 2);
    free(t);
}

typedef struct stream {
    http_req *r;
    stream_fill fill;
    void *ctx;
    void (*ctx_free)(void *);
    sbuf out;
    int complete;
    const char *keepalive;  /* sent after a quiet second, or NULL */
} stream;

/* libmicrohttpd pulls the body from here on the connection's thread;
 * fill blocks at most about a second, and a quiet second sends an SSE
 * comment so that a client that left is noticed (the write fails). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    if (st->out.off == st->out.len) {
        if (st->complete) return MHD_CONTENT_READER_END_OF_STREAM;
        st->out.len = st->out.off = 0;
        for (;;) {
            st->complete = st->fill(st->ctx, st->r, &st->out);
            if (st->out.len || st->complete) break;
            if (st->keepalive) { sbuf_add(&st->out, st->keepalive, strlen(st->keepalive)); break; }
            if (client_gone(st->r)) return MHD_CONTENT_READER_END_WITH_ERROR; /* cancelled in on_completed */
        }
        if (st->out.len == 0) return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = st->out.len - st->out.off;
    if (n > max) n = max;
    memcpy(buf, st->out.p + st->out.off, n);
    st->out.off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    if (st->ctx_free) st->ctx_free(st->ctx);
    free(st->out.p);
    free(st);
}

int reply_stream(http_req *r, stream_fill fill, void *ctx, void (*ctx_free)(void *)) {
    return reply_stream_as(r, "text/event-stream", ": keep-alive\n\n", fill, ctx, ctx_free);
}

int reply_stream_as(http_req *r, const char *ctype, const char *keepalive, stream_fill fill, void *ctx,
                    void (*ctx_free)(void *)) {
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        if (ctx_free) ctx_free(ctx);
        return reply_error(r, 500, "server_error", NULL, NULL, "out of memory");
    }
    st->r = r;
    st->fill = fill;
    st->ctx = ctx;
    st->ctx_free = ctx_free;
    st->keepalive = keepalive;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
    if (!resp) { stream_free(st); return MHD_NO; }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    r->streamed = 1;
    return queue(r, 200, resp);
}

/* ---- the request cycle ---------------------------------------------------------- */

/* Constant time in the key's content: a timing attack learns nothing but
 * the length. */
static int key_ok(const srv *S, const char *auth) {
    if (!auth || strncmp(auth, "Bearer ", 7)) return 0;
    const char *k = auth + 7;
    size_t n = strlen(k);
    unsigned char d = n != S->api_key_len;
    for (size_t i = 0; i < S->api_key_len; i++) d |= (unsigned char)(S->api_key[i] ^ (i < n ? k[i] : 0));
    return d == 0;
}

static int dispatch(http_req *r) {
    srv *S = r->S;
    r->ollama = !strncmp(r->path, "/api/", 5);
    if (r->too_big)
        return reply_error(r, 413, "invalid_request_error", "body", "request_too_large",
                           "the body is larger than %u bytes", SRV_MAX_BODY);
    /* the page itself holds no data (its calls send the key): a browser
     * cannot add a header to a page load */
    if (S->api_key && strcmp(r->path, "/health") && strcmp(r->path, "/") && strcmp(r->path, "/index.html") &&
        !key_ok(S, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization")))
        return reply_error(r, 401, "invalid_request_error", NULL, "invalid_api_key",
                           "a valid API key is needed: Authorization: Bearer KEY");
    const route *other = NULL;
    for (int t = 0; S->routes[t]; t++)
        for (const route *rt = S->routes[t]; rt->path; rt++) {
            size_t pl = strlen(rt->path);
            int match = rt->path[pl - 1] == '*' ? !strncmp(r->path, rt->path, pl - 1) : !strcmp(r->path, rt->path);
            if (!match) continue;
            if (!strcmp(rt->method, r->method)) return rt->fn(S, r);
            other = rt;
        }
    if (other)
        return reply_error(r, 405, "invalid_request_error", NULL, "method_not_allowed", "%s %s: use %s",
                           r->method, r->path, other->method);
    return reply_error(r, 404, "invalid_request_error", NULL, "not_found", "no such endpoint: %s %s", r->method,
                       r->path);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv *S = cls;
    http_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r || !(r->path = strdup(url))) { free(r); return MHD_NO; }
        r->S = S;
        r->conn = conn;
        r->t0 = now_s();
        snprintf(r->method, sizeof r->method, "%s", method);
        *con_cls = r;
        pthread_mutex_lock(&S->mu);
        S->http_requests++;
        pthread_mutex_unlock(&S->mu);
        /* a declared size over the limit is refused before reading it */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > SRV_MAX_BODY) {
            r->too_big = 1;
            return (enum MHD_Result)dispatch(r);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_big && r->len + *upload_size > SRV_MAX_BODY) r->too_big = 1;
        if (!r->too_big) {
            if (r->len + *upload_size + 1 > r->cap) {
                size_t cap = (r->len + *upload_size + 1) * 2;
                char *b = realloc(r->body, cap);
                if (!b) return MHD_NO;
                r->body = b;
                r->cap = cap;
            }
            memcpy(r->body + r->len, upload, *upload_size);
            r->len += *upload_size;
            r->body[r->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->status) return MHD_YES; /* answered already (413 up front) */
    track_set(conn, 1); /* received: the deadline stops while it is answered */
    int stopping;
    pthread_mutex_lock(&S->mu);
    stopping = S->stopping;
    pthread_mutex_unlock(&S->mu);
    if (stopping) return (enum MHD_Result)reply_error(r, 503, "server_error", NULL, "shutting_down", "the server is stopping");
    return (enum MHD_Result)dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    http_req *r = *con_cls;
    if (!r) return;
    srv *S = cls;
    job_leave(r); /* a client that left mid-answer cancels it */
    track_set(conn, 0); /* a kept-alive connection has req_timeout for its next request */
    if (r->status >= 400) {
        pthread_mutex_lock(&S->mu);
        S->http_errors++;
        pthread_mutex_unlock(&S->mu);
    }
    fprintf(stderr, "%s %s %d %ld+%ld tokens %.0f ms%s\n", r->method, r->path, r->status, r->tokens_in, r->tokens_out,
            (now_s() - r->t0) * 1e3, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (client left)");
    if (S->verbose && r->body) fprintf(stderr, "  body: %.*s\n", (int)r->len, r->body);
    free(r->path);
    free(r->body);
    conv_media_free(r->media, r->n_media);
    free(r);
    *con_cls = NULL;
}

int http_run(srv *S, const char *host, int port, int timeout_s, char *err, size_t errlen) {
    req_timeout = timeout_s;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g) { snprintf(err, errlen, "%s: %s", host, gai_strerror(g)); return -1; }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    daemon_ = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, S, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, S, MHD_OPTION_NOTIFY_CONNECTION,
                               on_connection, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!daemon_) { snprintf(err, errlen, "cannot listen on %s:%d (in use, or not an address here)", host, port); return -1; }
    watch_started = !pthread_create(&watch_th, NULL, watchdog, NULL);
    return 0;
}

void http_quiesce(void) {
    if (!daemon_) return;
    MHD_socket fd = MHD_quiesce_daemon(daemon_);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_stop(void) {
    if (watch_started) {
        __atomic_store_n(&watch_stop, 1, __ATOMIC_RELAXED);
        pthread_join(watch_th, NULL);
        watch_started = 0;
    }
    if (daemon_) MHD_stop_daemon(daemon_);
    daemon_ = NULL;
}
