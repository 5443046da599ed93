/* gemma4c batch: many chat requests from a JSONL file through the library's
 * scheduler (continuous batching), one chat.completion per line out, in
 * input order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "commands.h"
#include "gemma4c.h"
#include "opts.h"

typedef struct line_out {
    char *json;          /* chat.completion, or an error object */
    int done;
} line_out;

typedef struct batch_run {
    line_out *out;
    uint64_t *ids;       /* request id of each line */
    int n, n_done;
} batch_run;

static int line_of(batch_run *b, uint64_t id) {
    for (int i = 0; i < b->n; i++) if (b->ids[i] == id) return i;
    return -1;
}

static void on_event(void *user, const gemma4c_event *e) {
    batch_run *b = user;
    if (e->kind == GEMMA4C_EVENT_DELTA) return;
    int i = line_of(b, e->id);
    if (i < 0 || b->out[i].done) return;
    if (e->kind == GEMMA4C_EVENT_DONE) b->out[i].json = strdup(e->json);
    else {
        json_t *o = json_pack("{s:{s:s}}", "error", "message", e->error ? e->error : "failed");
        b->out[i].json = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
    }
    b->out[i].done = 1;
    b->n_done++;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_batch(int argc, char **argv) {
    run_opts o = { 0 };
    const char *in = NULL, *outp = NULL;
    int par = 4, n_prefix = 0, quiet = 0;
    gemma4c_draft_params dp = { 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemma4c batch -m MODEL --prompts FILE.jsonl [--parallel N] [--ctx N] [-o OUT.jsonl]\n\n"
                   "Answer many chat requests at once: one OpenAI-style request per line of FILE\n"
                   "(\"messages\", \"tools\", \"temperature\", \"top_p\", \"top_k\", \"min_p\", penalties,\n"
                   "\"seed\", \"max_tokens\", \"stop\", \"chat_template_kwargs\": {\"enable_thinking\"},\n"
                   "\"reasoning_effort\"). N requests decode together, every step one forward pass\n"
                   "for all of them (continuous batching: a finished request's place goes to\n"
                   "the next). Writes one chat.completion object per request as a JSON line, in\n"
                   "input order (a request that fails after starting gives {\"error\":{...}}).\n"
                   "Blank lines are skipped; a malformed line is an error naming the line.\n\n"
                   "      --prompts FILE   the requests, JSON lines (required)\n"
                   "      --parallel N     requests decoded at once (default 4)\n"
                   "  -c, --ctx N          positions per request, prompt + answer (default\n"
                   "                       min(model, 4096))\n"
                   "      --prefix N       keep N prompt snapshots for reuse (prefix cache; default 0)\n"
                   "  -o, --output FILE    write the results there (default stdout)\n"
                   "  -q, --quiet          no progress on stderr\n%s%s",
                   COMMON_HELP, DRAFT_HELP);
            return 0;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--prompts")) {
            if (!v) { fprintf(stderr, "gemma4c batch: --prompts needs a file\n"); return 2; }
            in = v; i++; continue;
        }
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!v) { fprintf(stderr, "gemma4c batch: %s needs a file\n", a); return 2; }
            outp = v; i++; continue;
        }
        if (!strcmp(a, "--parallel")) { i++; if (parse_int(a, v, 1, 4096, &par)) return 2; continue; }
        if (!strcmp(a, "--prefix")) { i++; if (parse_int(a, v, 0, 4096, &n_prefix)) return 2; continue; }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { quiet = 1; continue; }
        int r = draft_opt(&dp, argc, argv, &i);
        if (r == 0) r = common_opt(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) { fprintf(stderr, "gemma4c batch: unknown or incomplete option '%s'\n", a); return 2; }
    }
    if (!in) { fprintf(stderr, "gemma4c batch: need --prompts FILE.jsonl (see --help)\n"); return 2; }
    char *text = read_text_file(in);
    if (!text) return 1;
    /* the lines, each checked as JSON before the model is loaded */
    int cap = 64, n = 0, rc = 1;
    char **lines = malloc((size_t)cap * sizeof *lines);
    int *lineno = malloc((size_t)cap * sizeof *lineno);
    int no = 0;
    for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = 0;
        no++;
        size_t len = strlen(p);
        while (len && (p[len - 1] == '\r' || p[len - 1] == ' ' || p[len - 1] == '\t')) p[--len] = 0;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) continue;
        json_error_t je;
        json_t *j = json_loads(p, 0, &je);
        if (!j || !json_is_object(j)) {
            if (j) fprintf(stderr, "gemma4c batch: %s:%d: the request must be a JSON object\n", in, no);
            else fprintf(stderr, "gemma4c batch: %s:%d:%d: %s\n", in, no, je.column, je.text);
            json_decref(j);
            goto out_lines;
        }
        json_decref(j);
        if (n == cap) {
            cap *= 2;
            char **nl2 = realloc(lines, (size_t)cap * sizeof *lines);
            int *nn = realloc(lineno, (size_t)cap * sizeof *lineno);
            if (nl2) lines = nl2;
            if (nn) lineno = nn;
            if (!nl2 || !nn) { fprintf(stderr, "gemma4c: out of memory\n"); goto out_lines; }
        }
        lines[n] = p;
        lineno[n++] = no;
    }
    if (!n) { fprintf(stderr, "gemma4c batch: %s: no requests\n", in); goto out_lines; }

    FILE *out = stdout;
    if (outp && !(out = fopen(outp, "w"))) {
        fprintf(stderr, "gemma4c: %s: %s\n", outp, strerror(errno));
        goto out_lines;
    }
    gemma4c_model *m = open_model(&o);
    if (!m) goto out_file;
    gemma4c_scheduler_params sp = gemma4c_scheduler_default_params();
    sp.n_parallel = par;
    sp.n_ctx = o.n_ctx;
    sp.n_batch = o.n_batch;
    sp.n_threads = o.threads;
    sp.precision = o.exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    sp.kv_type = o.kv_type;
    sp.n_prefix = n_prefix;
    sp.draft = dp;
    sp.max_queue = n;          /* the whole file waits in the queue */
    char err[600];
    gemma4c_scheduler *s = gemma4c_scheduler_new(m, &sp, err, sizeof err);
    if (!s) { fprintf(stderr, "gemma4c: %s\n", err); gemma4c_model_free(m); goto out_file; }
    batch_run b = { calloc((size_t)n, sizeof *b.out), calloc((size_t)n, sizeof *b.ids), n, 0 };
    if (!b.out || !b.ids) { fprintf(stderr, "gemma4c: out of memory\n"); goto out_sched; }
    /* every request is checked (rendered, tokenized) before any is run */
    for (int i = 0; i < n; i++) {
        int r = gemma4c_scheduler_submit(s, lines[i], strlen(lines[i]), on_event, &b, &b.ids[i], err, sizeof err);
        if (r) { fprintf(stderr, "gemma4c batch: %s:%d: %s\n", in, lineno[i], err); goto out_sched; }
    }
    double t0 = now(), last = t0;
    int left;
    while ((left = gemma4c_scheduler_step(s)) > 0 || left < 0) {
        double t = now();
        if (!quiet && t - last >= 1.0) {
            gemma4c_scheduler_stats st;
            gemma4c_scheduler_stats_get(s, &st);
            fprintf(stderr, "\r  %d/%d done, %d running, %d waiting, %.1f tokens/s out ", b.n_done, n, st.active,
                    st.queued, st.completion_tokens / (t - t0));
            last = t;
        }
    }
    gemma4c_scheduler_stats st;
    gemma4c_scheduler_stats_get(s, &st);
    double el = now() - t0;
    if (!quiet)
        fprintf(stderr, "\r%d requests in %.2f s: %llu prompt tokens (%llu cached), %llu generated (%.1f t/s), "
                "%llu steps, --parallel %d\n", n, el, (unsigned long long)st.prompt_tokens,
                (unsigned long long)st.cached_tokens, (unsigned long long)st.completion_tokens,
                el > 0 ? st.completion_tokens / el : 0, (unsigned long long)st.steps, par);
    if (!quiet && st.drafted)
        fprintf(stderr, "  drafts: %llu verified, %llu kept\n", (unsigned long long)st.drafted,
                (unsigned long long)st.draft_accepted);
    rc = 0;
    for (int i = 0; i < n; i++) {
        if (!b.out[i].json) { fprintf(stderr, "gemma4c batch: %s:%d: no result\n", in, lineno[i]); rc = 1; continue; }
        if (!strncmp(b.out[i].json, "{\"error\"", 8)) {
            fprintf(stderr, "gemma4c batch: %s:%d: %s\n", in, lineno[i], b.out[i].json);
            rc = 1;
        }
        fprintf(out, "%s\n", b.out[i].json);
    }
    if (fflush(out)) { fprintf(stderr, "gemma4c: %s: %s\n", outp ? outp : "stdout", strerror(errno)); rc = 1; }
out_sched:
    for (int i = 0; b.out && i < n; i++) free(b.out[i].json);
    free(b.out);
    free(b.ids);
    gemma4c_scheduler_free(s);
    gemma4c_model_free(m);
out_file:
    if (out != stdout && fclose(out) && !rc) { fprintf(stderr, "gemma4c: %s: %s\n", outp, strerror(errno)); rc = 1; }
out_lines:
    free(lines);
    free(lineno);
    free(text);
    return rc;
}
