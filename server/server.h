/* gemma4c serve: shared declarations of the HTTP server (server/).
 *
 * http.c    libmicrohttpd glue: bodies, routing, auth, errors, logging, the
 *           per-request event queue (jobs) and SSE responses fed from it
 * openai.c  the OpenAI-compatible routes (/v1/...) and the utility routes
 * serve.c   the command: options, model, scheduler thread, signals
 *
 * ollama.c  the Ollama-compatible routes (/api/...)
 * media.c   requests with image/audio parts: a session on its own context
 * convert.c request bodies -> scheduler requests (no sockets: fuzzed)
 * page.c    the chat page at / (server/page.html, compiled in)
 *
 * An API family (OpenAI, Ollama, the chat page) is a table of
 * routes; http.c tries the tables in srv.routes in order. */
#ifndef G4_SERVER_H
#define G4_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gemma4c.h"

#define SRV_MAX_N 8             /* choices per request ("n"), also bounded by --parallel */
#define SRV_MAX_BODY (8u << 20) /* 8 MiB: far above any chat request; bounds memory per connection */

struct MHD_Connection;
typedef struct srv srv;
typedef struct http_req http_req;

/* A route handler answers with one of the reply_* calls below and returns
 * what it returns. */
typedef int (*route_fn)(srv *S, http_req *r);
typedef struct route {
    const char *method;   /* "GET", "POST" */
    const char *path;     /* exact path */
    route_fn fn;
} route;

/* One scheduler request seen from its HTTP thread: the scheduler's events
 * copied into a queue (the scheduler thread must never wait on a client). */
typedef struct job_ev {
    struct job_ev *next;
    int kind;             /* GEMMA4C_EVENT_* */
    int dkind;            /* DELTA: GEMMA4C_DELTA_* */
    int index;            /* TOOL_CALL */
    char *text;           /* DELTA text / tool arguments, DONE json, ERROR message */
    size_t len;
    char *name, *call_id; /* TOOL_CALL */
} job_ev;

typedef struct job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_ev *head, *tail;
    int ended;            /* DONE or ERROR queued: no more events */
    int cancel;           /* the client left (a media request polls it) */
    int refs;             /* the scheduler (until its last event) + the HTTP side */
    uint64_t id;
    struct job *next_live; /* srv.live list, for cancelling at shutdown */
} job;

struct srv {
    gemma4c_model *model;
    gemma4c_scheduler *sched;
    const char *model_id;     /* the name /v1/models lists */
    const char *model_file;   /* base name of the file, accepted as a model name too */
    const char *model_path;   /* as given (Ollama's /api/tags, /api/show) */
    const char *api_key;      /* NULL: no auth */
    size_t api_key_len;
    int n_ctx, verbose, n_parallel;
    const route *const *routes; /* NULL-terminated list of NULL-path-terminated tables */
    pthread_mutex_t mu;       /* live, stopping, counters */
    job *live;
    int stopping;
    uint64_t http_requests, http_errors;
    /* media (server/media.c): the encoders (NULL: text only), and the
     * context + lock of the one media request answered at a time */
    gemma4c_mmproj *mmproj;
    int n_threads;
    pthread_mutex_t media_mu;
    gemma4c_context *mctx;
    uint64_t media_ids;
};

struct http_req {
    srv *S;
    struct MHD_Connection *conn;
    char method[8];
    char *path;
    char *body;               /* NUL-terminated */
    size_t len, cap;
    int too_big;
    double t0;
    int status;               /* for the log */
    long tokens_in, tokens_out;
    job *jobs[SRV_MAX_N];     /* the scheduler requests this HTTP request waits on ("n" choices) */
    int n_jobs;
    int streamed;
    int ollama;               /* an /api/ route: errors as Ollama's {"error": text} */
    struct conv_media *media; /* the body's media parts (media_check), n_media of them */
    int n_media;
};

/* ---- http.c ---- */
/* Starts the daemon; a request must arrive whole within timeout_s seconds. */
int http_run(srv *S, const char *host, int port, int timeout_s, char *err, size_t errlen);
void http_quiesce(void);   /* stop accepting connections */
void http_stop(void);      /* close everything (after in-flight requests ended) */
double now_s(void);

int reply_json(http_req *r, int status, json_t *body);           /* steals body */
int reply_text(http_req *r, int status, const char *ctype, const char *text, size_t len);
/* OpenAI's error object; param may be NULL (then taken from the first
 * "quoted" name in msg), code may be NULL. */
int reply_error(http_req *r, int status, const char *type, const char *param, const char *code,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The body as a JSON object, or NULL after replying 400. */
json_t *body_object(http_req *r, int *ret);

/* Submit req (JSON) to the scheduler for r; on failure replies with the
 * right status and returns NULL (*ret holds the MHD result). */
job *job_submit(http_req *r, json_t *req, int *ret);
/* Next event (blocks up to timeout_ms; NULL on timeout). Caller frees it. */
job_ev *job_next(job *j, int timeout_ms);
void job_ev_free(job_ev *e);
/* Is the client of r gone (non-streaming waits poll this)? */
int client_gone(http_req *r);

/* A streaming response: fill(ctx, r, out) appends SSE text to out (a
 * growing buffer) from the job's events and returns 1 when the stream is
 * complete; it runs on the connection's thread and may block in job_next. */
typedef struct sbuf { char *p; size_t len, cap, off; } sbuf;
void sbuf_add(sbuf *b, const char *s, size_t n);
void sbuf_sse(sbuf *b, json_t *obj);   /* "data: <compact json>\n\n"; steals obj */
typedef int (*stream_fill)(void *ctx, http_req *r, sbuf *out);
int reply_stream(http_req *r, stream_fill fill, void *ctx, void (*ctx_free)(void *));
/* The same with another Content-Type; keepalive NULL: a quiet second sends
 * nothing (NDJSON has no comments) and a client that left ends the stream. */
int reply_stream_as(http_req *r, const char *ctype, const char *keepalive, stream_fill fill, void *ctx,
                    void (*ctx_free)(void *));

/* ---- openai.c ---- */
extern const route OPENAI_ROUTES[];
/* "model" of a request: NULL/absent/ours is fine; else replies 404 and returns -1. */
int check_model(http_req *r, json_t *req, int *ret);
/* Non-streaming: wait for the request's final event (cancelling it if the
 * client leaves). The DONE json (caller decrefs), or NULL after replying. */
json_t *wait_done(http_req *r, job *j, int *ret);

/* ---- ollama.c ---- */
extern const route OLLAMA_ROUTES[];

/* ---- media.c ---- */
/* Collect the body's media parts into r (0), or reply 400 (-1): a bad part,
 * or a kind the server has no encoder for. */
int media_check(http_req *r, const json_t *body, int ollama, int *ret);
/* job_submit's path for r->n_media > 0: decode the items (a bad file is an
 * error, nothing sent) and answer req on a worker thread with fn's events. */
int media_submit(http_req *r, json_t *req, gemma4c_event_fn fn, void *user, uint64_t *id, char *err, size_t errlen);

/* ---- page.c: the chat page (GET /) ---- */
extern const route PAGE_ROUTES[];

#endif
