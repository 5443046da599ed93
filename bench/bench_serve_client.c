/* A light load generator for bench/serve_overhead.sh: the same C streaming
 * chat requests as bench/serve_overhead.js, the same JSON line out, but one
 * thread, plain sockets and poll(): per token a read() and a few memchr,
 * where node runs an event loop, a JSON parse and a garbage collector on the
 * two cores the server's compute threads need. The figure measured is the
 * server's; the client should cost it as little as possible.
 *   build/bench/bench_serve_client BASE_URL C T BAN_IDS_JSON
 * BASE_URL is http://HOST:PORT (IPv4 or a name); BAN_IDS_JSON a list of
 * token ids banned by logit_bias -100 so that every answer has T tokens.
 * Output: {"clients","aggregate_tps","steady_tps","p50_ttft_ms",
 * "prompt_tokens","completion_tokens"}, as the node client prints. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_C = 4096, MAX_T = 1 << 16 };

typedef struct conn {
    int fd;
    char *req;                 /* the whole request, sent with one write when possible */
    size_t req_len, req_off;
    char *in;                  /* bytes read, not yet decoded */
    size_t in_len, in_cap;
    char *ev;                  /* de-chunked SSE text, not yet split into events */
    size_t ev_len, ev_cap;
    int head_done, chunked, status;
    long chunk_left;           /* body bytes left in the current chunk; -1: at a size line */
    int done;
    double t0, *times;         /* arrival of each delta with text, seconds after t0 */
    int n_times, cap_times;    /* a delta holds at least one token: T + a margin */
    long prompt_tokens, completion_tokens;
} conn;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what) {
    printf("{\"error\":\"%s\"}\n", what);
    exit(1);
}

static void grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) die("out of memory");
    *p = q;
    *cap = c;
}

/* The number after "key": in s (the usage object's fields), or -1. */
static long field(const char *s, const char *key) {
    const char *p = strstr(s, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* One SSE event (NUL-terminated): a delta with text counts as a token's
 * arrival, as the node client counts them (content or reasoning_content
 * not empty); the usage chunk gives the token counts. */
static void on_event(conn *c, char *e, double t) {
    if (strncmp(e, "data: {", 7)) return;
    char *u = strstr(e, "\"usage\":{");
    if (u) {
        long pt = field(u, "\"prompt_tokens\":"), ct = field(u, "\"completion_tokens\":");
        if (pt >= 0) c->prompt_tokens = pt;
        if (ct >= 0) c->completion_tokens = ct;
    }
    char *d = strstr(e, "\"delta\":{");
    if (!d) return;
    /* inside a JSON string a quote is escaped, so these keys only match keys */
    char *k = strstr(d, "\"content\":\"");
    char *r = strstr(d, "\"reasoning_content\":\"");
    int text = (k && k[11] != '"') || (r && r[21] != '"');
    if (text && c->n_times < c->cap_times) c->times[c->n_times++] = t - c->t0;
}

/* Split the de-chunked text into events at blank lines. */
static void events(conn *c, double t) {
    size_t start = 0;
    for (size_t i = 0; i + 1 < c->ev_len; i++) {
        if (c->ev[i] != '\n' || c->ev[i + 1] != '\n') continue;
        c->ev[i] = 0;
        on_event(c, c->ev + start, t);
        start = i + 2;
        i++;
    }
    memmove(c->ev, c->ev + start, c->ev_len - start);
    c->ev_len -= start;
}

static void add_ev(conn *c, const char *p, size_t n) {
    grow(&c->ev, &c->ev_cap, c->ev_len + n + 1);
    memcpy(c->ev + c->ev_len, p, n);
    c->ev_len += n;
}

/* Decode what has arrived: the head once, then the body (chunked or not). */
static void parse(conn *c, double t) {
    size_t off = 0;
    if (!c->head_done) {
        char *e = NULL;
        for (size_t i = 0; i + 3 < c->in_len && !e; i++)
            if (!memcmp(c->in + i, "\r\n\r\n", 4)) e = c->in + i;
        if (!e) return;
        *e = 0;
        if (sscanf(c->in, "HTTP/1.%*d %d", &c->status) != 1) die("no status line");
        if (c->status != 200) die("status not 200");
        for (char *p = c->in; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        c->chunked = strstr(c->in, "transfer-encoding: chunked") != NULL;
        c->head_done = 1;
        c->chunk_left = -1;
        off = (size_t)(e - c->in) + 4;
    }
    while (off < c->in_len) {
        if (!c->chunked) {
            add_ev(c, c->in + off, c->in_len - off);
            off = c->in_len;
            break;
        }
        if (c->chunk_left < 0) { /* "SIZE[;ext]\r\n" */
            char *nl = memchr(c->in + off, '\n', c->in_len - off);
            if (!nl) break;
            long n = strtol(c->in + off, NULL, 16);
            off = (size_t)(nl - c->in) + 1;
            if (n == 0) { c->done = 1; break; }
            c->chunk_left = n;
            continue;
        }
        if (c->chunk_left == 0) { /* the CRLF after a chunk */
            if (c->in_len - off < 2) break;
            off += 2;
            c->chunk_left = -1;
            continue;
        }
        size_t n = c->in_len - off < (size_t)c->chunk_left ? c->in_len - off : (size_t)c->chunk_left;
        add_ev(c, c->in + off, n);
        off += n;
        c->chunk_left -= (long)n;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    events(c, t);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bench_serve_client http://HOST:PORT CLIENTS TOKENS BAN_IDS_JSON\n");
        return 2;
    }
    char host[256], port[16];
    if (sscanf(argv[1], "http://%255[^:/]:%15[0-9]", host, port) != 2) die("BASE_URL must be http://HOST:PORT");
    int C = atoi(argv[2]), T = atoi(argv[3]);
    if (C < 1 || C > MAX_C || T < 1 || T > MAX_T) die("CLIENTS in [1, 4096], TOKENS in [1, 65536]");
    /* logit_bias from the id list: "[1,106]" -> {"1":-100,"106":-100} */
    size_t bl = strlen(argv[4]);
    char *bias = malloc(bl * 10 + 16), *o = bias;
    if (!bias) die("out of memory");
    *o++ = '{';
    for (const char *p = argv[4]; *p;) {
        if (*p < '0' || *p > '9') { p++; continue; }
        char *e;
        long id = strtol(p, &e, 10);
        o += sprintf(o, "%s\"%ld\":-100", o[-1] == '{' ? "" : ",", id);
        p = e;
    }
    *o++ = '}';
    *o = 0;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    if (getaddrinfo(host, port, &hints, &ai)) die("cannot resolve the host");
    conn *cs = calloc((size_t)C, sizeof *cs);
    struct pollfd *pf = calloc((size_t)C, sizeof *pf);
    if (!cs || !pf) die("out of memory");
    for (int k = 0; k < C; k++) {
        conn *c = &cs[k];
        char body[512 + 64];
        int n = snprintf(body, sizeof body,
                         "{\"messages\":[{\"role\":\"user\",\"content\":\"Write a long story about the sea, number %d\"}],"
                         "\"max_tokens\":%d,\"temperature\":1,\"seed\":%d,\"logit_bias\":", k, T, k);
        size_t cap = (size_t)n + strlen(bias) + 512;
        c->req = malloc(cap);
        c->cap_times = T + 64;
        c->times = malloc((size_t)c->cap_times * sizeof *c->times);
        if (!c->req || !c->times) die("out of memory");
        size_t blen = (size_t)n + strlen(bias) + strlen(",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
        c->req_len = (size_t)snprintf(c->req, cap,
                                      "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s%s,\"stream\":true,"
                                      "\"stream_options\":{\"include_usage\":true}}",
                                      host, port, blen, body, bias);
        c->fd = socket(ai->ai_family, SOCK_STREAM, 0);
        if (c->fd < 0) die("socket");
        c->prompt_tokens = c->completion_tokens = -1;
    }
    /* connect and send all before reading any: the requests arrive together */
    for (int k = 0; k < C; k++) {
        conn *c = &cs[k];
        c->t0 = now();
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen)) die("connect");
        while (c->req_off < c->req_len) {
            ssize_t w = write(c->fd, c->req + c->req_off, c->req_len - c->req_off);
            if (w < 0 && errno != EINTR) die("write");
            if (w > 0) c->req_off += (size_t)w;
        }
        pf[k] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
    }
    freeaddrinfo(ai);
    for (int left = C; left > 0;) {
        if (poll(pf, (nfds_t)C, 60000) <= 0) die("no answer for 60 s");
        double t = now();
        for (int k = 0; k < C; k++) {
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            conn *c = &cs[k];
            grow(&c->in, &c->in_cap, c->in_len + 65536);
            ssize_t r = read(c->fd, c->in + c->in_len, 65536);
            if (r < 0 && errno == EINTR) continue;
            if (r > 0) {
                c->in_len += (size_t)r;
                parse(c, t);
            }
            if (r <= 0 || c->done) {
                close(c->fd);
                pf[k].fd = -1;
                left--;
            }
        }
    }
    /* as the node client: each stream's rate from its first to its last
     * token, summed; p50 of the first tokens' times. And the steady rate:
     * tokens that arrived while every stream was decoding (after the last
     * first token, up to the first last token) over that window. The
     * scheduler starts a step with the requests that have arrived, so a
     * late one's prompt can share steps with the others' first decode
     * tokens; bench --parallel runs its N streams in step from the start,
     * and so does this window. */
    double agg = 0, *ttft = malloc((size_t)C * sizeof *ttft), t_all = 0, t_end = 1e30;
    long gen = 0, in_win = 0;
    if (!ttft) die("out of memory");
    for (int k = 0; k < C; k++) {
        conn *c = &cs[k];
        if (c->n_times < 2 || c->completion_tokens < 2) die("a stream ended with fewer than 2 tokens");
        agg += (double)(c->completion_tokens - 1) / (c->times[c->n_times - 1] - c->times[0]);
        ttft[k] = c->times[0] * 1e3;
        gen += c->completion_tokens;
        if (c->times[0] > t_all) t_all = c->times[0];
        if (c->times[c->n_times - 1] < t_end) t_end = c->times[c->n_times - 1];
    }
    /* a token's text can come as several deltas (the chat parser's
     * pieces): a stream's deltas in the window count as that share of its
     * tokens (with one stream, exactly the first-to-last rate) */
    double tok_win = 0;
    for (int k = 0; k < C; k++) {
        long d = 0;
        for (int i = 0; i < cs[k].n_times; i++) d += cs[k].times[i] > t_all && cs[k].times[i] <= t_end;
        tok_win += (double)d * (double)(cs[k].completion_tokens - 1) / (cs[k].n_times - 1);
        in_win += d;
    }
    double steady = t_end > t_all && in_win > 0 ? tok_win / (t_end - t_all) : agg;
    qsort(ttft, (size_t)C, sizeof *ttft, cmp_d);
    printf("{\"clients\":%d,\"aggregate_tps\":%.4f,\"steady_tps\":%.4f,\"p50_ttft_ms\":%.3f,\"prompt_tokens\":%ld,"
           "\"completion_tokens\":%ld}\n", C, agg, steady, ttft[C / 2], cs[0].prompt_tokens, gen);
    return 0;
}
