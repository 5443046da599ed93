/* gemma4c run / chat: the Gemma 4 chat format end to end.
 *
 * A turn: messages (OpenAI style) -> the official template's prompt (C
 * renderer) -> ids (special tokens matched, since the template writes them)
 * -> decode until an end-of-generation token -> detokenized text (special
 * tokens kept as text) -> streaming parser -> reasoning / content / tool
 * calls. In `chat`, the conversation is re-rendered every turn and only the
 * part after the longest common prefix with the cached tokens is evaluated. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>
#include <jansson.h>

#include "commands.h"
#include "gemma4c.h"
#include "opts.h"
#include "text/chat.h"
#include "text/chat_parse.h"

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) { (void)sig; g_stop = 1; }

typedef struct session {
    run_opts o;
    gemma4c_sampler_params sp;
    gemma4c_model *m;
    gemma4c_context *c;
    gemma4c_sampler *s;
    g4_chat_family family;
    int n_predict;
    int think;             /* enable_thinking */
    int hide_thinking;
    int color;             /* dim the thoughts (stdout is a terminal) */
    int32_t *cached;       /* ids currently in the context */
    int n_cached, cap_cached;
} session;

/* Printing deltas as they arrive. */
typedef struct printer {
    session *ss;
    int in_thought;
    int printed_any;
} printer;

static void on_delta(void *user, const g4_chat_delta *d) {
    printer *p = user;
    session *ss = p->ss;
    if (d->kind == G4_DELTA_REASONING) {
        if (ss->hide_thinking) return;
        if (!p->in_thought) {
            fputs(ss->color ? "\033[2m" : "[thinking] ", stdout);
            p->in_thought = 1;
        }
        fwrite(d->text, 1, d->len, stdout);
    } else {
        if (p->in_thought) {
            fputs(ss->color ? "\033[0m\n" : "\n[/thinking]\n", stdout);
            p->in_thought = 0;
        }
        if (d->kind == G4_DELTA_CONTENT) fwrite(d->text, 1, d->len, stdout);
        else printf("%s[tool call] %s(%s)\n", p->printed_any ? "\n" : "", d->name, d->arguments);
    }
    p->printed_any = 1;
    fflush(stdout);
}

static int ensure_cap(session *ss, int n) {
    if (n <= ss->cap_cached) return 0;
    int cap = n * 2;
    int32_t *c = realloc(ss->cached, (size_t)cap * sizeof *c);
    if (!c) return -1;
    ss->cached = c;
    ss->cap_cached = cap;
    return 0;
}

/* Evaluate `ids` reusing the longest prefix already in the context. */
static int feed_prompt(session *ss, const int32_t *ids, int n, char *err, size_t errlen) {
    int common = 0;
    while (common < n && common < ss->n_cached && ids[common] == ss->cached[common]) common++;
    if (common == n) common = n - 1; /* re-evaluate the last token to get fresh logits */
    if (gemma4c_truncate(ss->c, common) != 0) {
        gemma4c_reset(ss->c); /* sliding caches no longer hold that prefix */
        common = 0;
    }
    ss->n_cached = common;
    if (ensure_cap(ss, n)) { snprintf(err, errlen, "out of memory"); return -1; }
    if (gemma4c_eval(ss->c, ids + common, n - common, 0, err, errlen)) return -1;
    memcpy(ss->cached + common, ids + common, (size_t)(n - common) * sizeof *ids);
    ss->n_cached = n;
    return 0;
}

/* One assistant turn for `request` (messages + options). Returns the parsed
 * assistant message (new reference) or NULL. */
static json_t *turn(session *ss, json_t *request) {
    char err[600];
    g4_error e = { { 0 } };
    g4_chat_options co = G4_CHAT_OPTIONS_DEFAULT;
    co.enable_thinking = ss->think;
    co.add_generation_prompt = 1;
    size_t plen;
    char *prompt = g4_chat_render(request, &co, ss->family, &plen, &e);
    if (!prompt) { fprintf(stderr, "gemma4c: chat format: %s\n", e.msg); return NULL; }
    int32_t *ids = NULL;
    int n = gemma4c_tokenize(ss->m, prompt, plen, 0, 1, &ids, err, sizeof err);
    g4_chat_parse_options po = { 0 };
    const char *tail = "<|channel>thought\n";
    po.in_reasoning = plen >= strlen(tail) && !memcmp(prompt + plen - strlen(tail), tail, strlen(tail));
    free(prompt);
    if (n < 0) { fprintf(stderr, "gemma4c: %s\n", err); return NULL; }
    /* the answer may use what the context has left, up to -n */
    int n_gen = gemma4c_n_ctx(ss->c) - n;
    if (n_gen < 1) {
        fprintf(stderr, "gemma4c: the conversation (%d tokens) fills the context (%d); use /clear or a larger "
                "--ctx\n", n, gemma4c_n_ctx(ss->c));
        free(ids);
        return NULL;
    }
    if (n_gen > ss->n_predict) n_gen = ss->n_predict;
    if (feed_prompt(ss, ids, n, err, sizeof err)) {
        fprintf(stderr, "gemma4c: %s\n", err);
        free(ids);
        return NULL;
    }
    free(ids);
    printer pr = { ss, 0, 0 };
    g4_chat_parser *parser = g4_chat_parser_new(&po, on_delta, &pr);
    gemma4c_detok *dt = gemma4c_detok_new(ss->m, 1);
    if (!parser || !dt) {
        fprintf(stderr, "gemma4c: out of memory\n");
        g4_chat_parser_free(parser);
        gemma4c_detok_free(dt);
        return NULL;
    }
    gemma4c_sampler_reset(ss->s);
    g_stop = 0;
    int k = 0, failed = 0;
    for (; k < n_gen && !g_stop; k++) {
        int32_t t = gemma4c_sampler_sample(ss->s, gemma4c_logits_last(ss->c), gemma4c_n_vocab(ss->c));
        gemma4c_sampler_accept(ss->s, t);
        if (gemma4c_is_eog(ss->m, t)) break;
        size_t len;
        const char *piece = gemma4c_detok_push(dt, t, &len);
        if (g4_chat_parser_feed(parser, piece, len)) { failed = 1; break; }
        if (g4_chat_parser_stopped(parser)) break;
        if (gemma4c_eval(ss->c, &t, 1, 0, err, sizeof err)) {
            fprintf(stderr, "\ngemma4c: %s\n", err);
            failed = 1;
            break;
        }
        if (ensure_cap(ss, ss->n_cached + 1) == 0) ss->cached[ss->n_cached++] = t;
    }
    size_t len;
    const char *rest = gemma4c_detok_flush(dt, &len);
    if (rest && len) g4_chat_parser_feed(parser, rest, len);
    g4_chat_parser_finish(parser);
    if (pr.in_thought) fputs(ss->color ? "\033[0m" : "\n[/thinking]", stdout);
    if (g_stop) fputs(" [stopped]", stdout);
    else if (k == n_gen) fputs(" [length limit]", stdout);
    fputc('\n', stdout);
    fflush(stdout);
    g_stop = 0;
    json_t *msg = failed ? NULL : g4_chat_parser_message(parser);
    g4_chat_parser_free(parser);
    gemma4c_detok_free(dt);
    return msg;
}

static int session_open(session *ss) {
    ss->m = open_model(&ss->o);
    if (!ss->m) return -1;
    g4_error e = { { 0 } };
    if (ss->family == G4_CHAT_FAMILY_UNKNOWN) ss->family = g4_chat_family_from_path(ss->o.model, &e);
    if (ss->family == G4_CHAT_FAMILY_UNKNOWN) ss->family = G4_CHAT_FAMILY_E;
    ss->c = open_ctx(ss->m, &ss->o);
    ss->s = gemma4c_sampler_new(&ss->sp);
    if (!ss->c || !ss->s) return -1;
    ss->color = isatty(1);
    struct sigaction sa = { 0 };
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* at the prompt, the line editor just carries on */
    sigaction(SIGINT, &sa, NULL);
    return 0;
}

static void session_close(session *ss) {
    gemma4c_sampler_free(ss->s);
    gemma4c_context_free(ss->c);
    gemma4c_model_free(ss->m);
    free(ss->cached);
}

/* Options common to run and chat. Returns 1 consumed, 0 not ours, -1 error. */
static int chat_opt(session *ss, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "--think")) { ss->think = 1; return 1; }
    if (!strcmp(a, "--no-think")) { ss->think = 0; return 1; }
    if (!strcmp(a, "--hide-thinking")) { ss->hide_thinking = 1; return 1; }
    if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { (*i)++; return parse_int(a, v, 1, 1 << 24, &ss->n_predict) ? -1 : 1; }
    if (!strcmp(a, "--family")) {
        (*i)++;
        ss->family = v ? g4_chat_family_from_name(v) : G4_CHAT_FAMILY_UNKNOWN;
        if (ss->family == G4_CHAT_FAMILY_UNKNOWN) { fprintf(stderr, "gemma4c: --family expects e or 31b\n"); return -1; }
        return 1;
    }
    int r = sampling_opt(&ss->sp, argc, argv, i);
    if (r == 0) r = common_opt(&ss->o, argc, argv, i);
    return r;
}

static const char *CHAT_HELP =
    "      --think             enable thinking (the model reasons before answering)\n"
    "      --hide-thinking     do not print the thoughts (default: shown dimmed)\n"
    "  -n, --n-predict N       most tokens per answer (default 1024)\n"
    "      --family e|31b      chat template family (default: from the model)\n";

static void session_defaults(session *ss) {
    memset(ss, 0, sizeof *ss);
    ss->sp = gemma4c_sampler_default_params();
    ss->n_predict = 1024;
    ss->o.n_ctx = 8192;
}

int cmd_run(int argc, char **argv) {
    session ss;
    session_defaults(&ss);
    const char *prompt = NULL, *system = NULL;
    int json_out = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemma4c run -m MODEL -p PROMPT [--system S] [--think] [-n N] [options]\n\n"
                   "Answer one user message with the model's chat format, streaming the answer.\n"
                   "Thoughts (--think) are shown dimmed on a terminal, or hidden with\n"
                   "--hide-thinking; tool calls are printed as [tool call] name(arguments).\n\n"
                   "  -p, --prompt TEXT       the user message\n"
                   "  -s, --system TEXT       system prompt\n"
                   "      --json              print the parsed assistant message as JSON at the end\n"
                   "%s%s%s", CHAT_HELP, COMMON_HELP, SAMPLING_HELP);
            return 0;
        }
        if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && v) { prompt = v; i++; continue; }
        if ((!strcmp(a, "-s") || !strcmp(a, "--system")) && v) { system = v; i++; continue; }
        if (!strcmp(a, "--json")) { json_out = 1; continue; }
        int r = chat_opt(&ss, argc, argv, &i);
        if (r == 0) { fprintf(stderr, "gemma4c run: unknown or incomplete option '%s'\n", a); return 2; }
        if (r < 0) return 2;
    }
    if (!prompt) { fprintf(stderr, "gemma4c run: need -p PROMPT (see --help)\n"); return 2; }
    if (session_open(&ss)) { session_close(&ss); return 1; }
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", prompt));
    json_t *req = json_pack("{s:o}", "messages", msgs);
    json_t *msg = turn(&ss, req);
    int rc = msg ? 0 : 1;
    if (msg && json_out) {
        char *s = json_dumps(msg, JSON_COMPACT);
        if (s) printf("%s\n", s);
        free(s);
    }
    json_decref(msg);
    json_decref(req);
    session_close(&ss);
    return rc;
}

/* Next line from the user: libedit on a terminal, plain stdin otherwise. */
static char *read_line(int tty) {
    if (tty) {
        for (;;) {
            g_stop = 0;
            char *l = readline("> ");
            /* Ctrl-C at the prompt makes the line editor return NULL like
             * Ctrl-D; only Ctrl-D (no signal) leaves */
            if (!l && g_stop) {
                fputs("(Ctrl-D or /quit to leave)\n", stdout);
                continue;
            }
            if (l && *l) add_history(l);
            return l;
        }
    }
    size_t cap = 0;
    char *l = NULL;
    ssize_t n = getline(&l, &cap, stdin);
    if (n < 0) { free(l); return NULL; }
    if (n > 0 && l[n - 1] == '\n') l[n - 1] = 0;
    return l;
}

int cmd_chat(int argc, char **argv) {
    session ss;
    session_defaults(&ss);
    const char *system = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemma4c chat -m MODEL [--system S] [--think] [options]\n\n"
                   "Interactive multi-turn chat with line editing and history. Commands:\n"
                   "  /think        toggle thinking        /system TEXT  set the system prompt\n"
                   "  /clear        forget the conversation /quit         leave (or Ctrl-D)\n"
                   "Ctrl-C stops the answer being generated without leaving. Thoughts are\n"
                   "dropped from the history, as the official template requires.\n\n"
                   "  -s, --system TEXT       system prompt\n%s%s%s", CHAT_HELP, COMMON_HELP, SAMPLING_HELP);
            return 0;
        }
        if ((!strcmp(a, "-s") || !strcmp(a, "--system")) && v) { system = v; i++; continue; }
        int r = chat_opt(&ss, argc, argv, &i);
        if (r == 0) { fprintf(stderr, "gemma4c chat: unknown or incomplete option '%s'\n", a); return 2; }
        if (r < 0) return 2;
    }
    if (session_open(&ss)) { session_close(&ss); return 1; }
    int tty = isatty(0);
    char *sys = system ? strdup(system) : NULL;
    json_t *msgs = json_array();
    if (tty)
        printf("gemma4c chat (%s template, thinking %s). /help for commands, Ctrl-D to leave.\n",
               g4_chat_family_name(ss.family), ss.think ? "on" : "off");
    for (;;) {
        char *line = read_line(tty);
        if (!line) break;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) { free(line); break; }
        if (!strcmp(line, "/help")) {
            printf("/think  /system TEXT  /clear  /quit\n");
        } else if (!strcmp(line, "/think")) {
            ss.think = !ss.think;
            printf("thinking %s\n", ss.think ? "on" : "off");
        } else if (!strncmp(line, "/system", 7) && (line[7] == ' ' || line[7] == 0)) {
            free(sys);
            sys = line[7] ? strdup(line + 8) : NULL;
            printf("system prompt %s\n", sys ? "set" : "cleared");
        } else if (!strcmp(line, "/clear")) {
            json_array_clear(msgs);
            gemma4c_reset(ss.c);
            ss.n_cached = 0;
            printf("conversation cleared\n");
        } else if (line[0] == '/') {
            printf("unknown command %s (/help)\n", line);
        } else if (line[0]) {
            json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", line));
            json_t *all = json_array();
            if (sys) json_array_append_new(all, json_pack("{s:s,s:s}", "role", "system", "content", sys));
            json_array_extend(all, msgs);
            json_t *req = json_pack("{s:o}", "messages", all);
            json_t *msg = turn(&ss, req);
            json_decref(req);
            if (msg) {
                /* history keeps content and tool calls; the thought is dropped */
                json_object_del(msg, "reasoning_content");
                json_array_append_new(msgs, msg);
            } else {
                json_array_remove(msgs, json_array_size(msgs) - 1);
            }
        }
        fflush(stdout);
        free(line);
    }
    free(sys);
    json_decref(msgs);
    session_close(&ss);
    return 0;
}
