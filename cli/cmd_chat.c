/* gemma4c run / chat: the Gemma 4 chat format end to end, through the
 * library's chat sessions (gemma4c_session_*): this file only reads input,
 * builds the OpenAI-style request and prints the deltas. In `chat`, the
 * whole conversation is sent every turn; the session evaluates only what
 * follows the prefix already in the context. */
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
#include "media.h"
#include "opts.h"

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) { (void)sig; g_stop = 1; }
static int stop_requested(void *user) { (void)user; return g_stop; }

typedef struct chat_cli {
    run_opts o;
    gemma4c_session_params sp;
    gemma4c_model *m;
    gemma4c_context *c;
    gemma4c_session *ss;
    int think;             /* enable_thinking */
    int hide_thinking;
    int color;             /* dim the thoughts (stdout is a terminal) */
    media_opts mo;         /* --image / --audio / --mmproj / --image-tokens */
    gemma4c_mmproj *mp;    /* opened on the first media item */
    gemma4c_media **items; /* every item of the conversation, in order */
    int n_items;
} chat_cli;

/* Printing deltas as they arrive. */
typedef struct printer {
    chat_cli *cc;
    int in_thought;
    int printed_any;
} printer;

static void on_delta(void *user, const gemma4c_delta *d) {
    printer *p = user;
    chat_cli *cc = p->cc;
    if (d->kind == GEMMA4C_DELTA_REASONING) {
        if (cc->hide_thinking) return;
        if (!p->in_thought) {
            fputs(cc->color ? "\033[2m" : "[thinking] ", stdout);
            p->in_thought = 1;
        }
        fwrite(d->text, 1, d->len, stdout);
    } else {
        if (p->in_thought) {
            fputs(cc->color ? "\033[0m\n" : "\n[/thinking]\n", stdout);
            p->in_thought = 0;
        }
        if (d->kind == GEMMA4C_DELTA_CONTENT) fwrite(d->text, 1, d->len, stdout);
        else printf("%s[tool call] %s(%s)\n", p->printed_any ? "\n" : "", d->name, d->arguments);
    }
    p->printed_any = 1;
    fflush(stdout);
}

/* One assistant turn for the messages (the thinking switch is added here).
 * Returns the parsed assistant message (new reference) or NULL. */
static json_t *turn(chat_cli *cc, json_t *messages) {
    json_t *req = json_pack("{s:O,s:b}", "messages", messages, "enable_thinking", cc->think);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text) { fprintf(stderr, "gemma4c: out of memory\n"); return NULL; }
    char err[600];
    printer pr = { cc, 0, 0 };
    gemma4c_turn_result res;
    g_stop = 0;
    int rc = gemma4c_session_turn(cc->ss, text, strlen(text), on_delta, &pr, &res, err, sizeof err);
    free(text);
    if (rc == GEMMA4C_ERR_CONTEXT_FULL) {
        fprintf(stderr, "gemma4c: %s; use /clear or a larger --ctx\n", err);
        return NULL;
    }
    if (res.finish < 0) { fprintf(stderr, "gemma4c: %s\n", err); return NULL; }
    /* the answer was (partly) streamed: close it */
    if (res.finish == GEMMA4C_FINISH_ERROR) fprintf(stderr, "\ngemma4c: %s\n", err);
    if (pr.in_thought) fputs(cc->color ? "\033[0m" : "\n[/thinking]", stdout);
    if (res.finish == GEMMA4C_FINISH_CANCEL) fputs(" [stopped]", stdout);
    else if (res.finish == GEMMA4C_FINISH_LENGTH) fputs(" [length limit]", stdout);
    fputc('\n', stdout);
    fflush(stdout);
    g_stop = 0;
    json_t *msg = NULL;
    if (rc == 0) {
        msg = json_loads(res.message, JSON_ALLOW_NUL, NULL);
        if (!msg) fprintf(stderr, "gemma4c: out of memory\n");
    }
    free(res.message);
    return msg;
}

static int session_open(chat_cli *cc) {
    cc->m = open_model(&cc->o);
    if (!cc->m) return -1;
    if (draft_attach(&cc->sp.draft, cc->m, cc->o.threads, cc->o.exact)) return -1;
    cc->c = open_ctx(cc->m, &cc->o);
    if (!cc->c) return -1;
    char err[600];
    cc->sp.cancel = stop_requested;
    cc->ss = gemma4c_session_new(cc->c, &cc->sp, err, sizeof err);
    if (!cc->ss) { fprintf(stderr, "gemma4c: %s\n", err); return -1; }
    cc->color = isatty(1);
    struct sigaction sa = { 0 };
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* at the prompt, the line editor just carries on */
    sigaction(SIGINT, &sa, NULL);
    return 0;
}

/* Load, encode and add one media item to the session; its content part
 * (type image / audio) is appended to parts. 0 or -1 (printed). */
static int add_media(chat_cli *cc, int kind, const char *path, json_t *parts) {
    char err[800];
    if (!cc->mp && !(cc->mp = gemma4c_mmproj_open(cc->m, cc->mo.mmproj, err, sizeof err))) {
        fprintf(stderr, "gemma4c: %s\n", err);
        return -1;
    }
    gemma4c_media_params p = gemma4c_media_default_params();
    p.image_tokens = cc->mo.image_tokens;
    p.video_tokens = cc->mo.video_tokens;
    p.video_frames = cc->mo.video_frames;
    p.n_threads = cc->o.threads;
    p.precision = cc->o.exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    gemma4c_media *it = gemma4c_media_load(cc->mp, path, kind, &p, err, sizeof err);
    gemma4c_media **grown = it ? realloc(cc->items, (size_t)(cc->n_items + 1) * sizeof *grown) : NULL;
    if (!it || !grown || !gemma4c_media_encode(it, err, sizeof err) || gemma4c_session_add_media(cc->ss, it)) {
        fprintf(stderr, "gemma4c: %s\n", it && grown ? err : it ? "out of memory" : err);
        if (grown) cc->items = grown;
        gemma4c_media_free(it);
        return -1;
    }
    cc->items = grown;
    cc->items[cc->n_items++] = it;
    json_array_append_new(parts, json_pack("{s:s}", "type", kind == GEMMA4C_MEDIA_AUDIO ? "audio" : kind == GEMMA4C_MEDIA_VIDEO ? "video" : "image"));
    return 0;
}

static void drop_media(chat_cli *cc) {
    if (cc->ss) gemma4c_session_clear_media(cc->ss);
    for (int i = 0; i < cc->n_items; i++) gemma4c_media_free(cc->items[i]);
    free(cc->items);
    cc->items = NULL;
    cc->n_items = 0;
}

static void session_close(chat_cli *cc) {
    drop_media(cc);
    gemma4c_mmproj_free(cc->mp);
    gemma4c_session_free(cc->ss);
    gemma4c_context_free(cc->c);
    gemma4c_drafter_free(cc->sp.draft.drafter);
    cc->sp.draft.drafter = NULL;
    gemma4c_model_free(cc->m);
}

/* Options common to run and chat. Returns 1 consumed, 0 not ours, -1 error. */
static int chat_opt(chat_cli *cc, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "--think")) { cc->think = 1; return 1; }
    if (!strcmp(a, "--no-think")) { cc->think = 0; return 1; }
    if (!strcmp(a, "--hide-thinking")) { cc->hide_thinking = 1; return 1; }
    if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { (*i)++; return parse_int(a, v, 1, 1 << 24, &cc->sp.n_predict) ? -1 : 1; }
    if (!strcmp(a, "--family")) {
        (*i)++;
        cc->sp.family = v ? gemma4c_chat_family_from_name(v) : GEMMA4C_CHAT_UNKNOWN;
        if (cc->sp.family == GEMMA4C_CHAT_UNKNOWN) { fprintf(stderr, "gemma4c: --family expects e or 31b\n"); return -1; }
        return 1;
    }
    int r = sampling_opt(&cc->sp.sampling, argc, argv, i);
    if (r == 0) r = draft_opt(&cc->sp.draft, argc, argv, i);
    if (r == 0) r = common_opt(&cc->o, argc, argv, i);
    if (r == 0) r = media_opt(&cc->mo, argc, argv, i);
    return r;
}

static const char *CHAT_HELP =
    "      --think             enable thinking (the model reasons before answering)\n"
    "      --hide-thinking     do not print the thoughts (default: shown dimmed)\n"
    "  -n, --n-predict N       most tokens per answer (default 1024)\n"
    "      --family e|31b      chat template family (default: from the model)\n";

static void session_defaults(chat_cli *cc) {
    memset(cc, 0, sizeof *cc);
    cc->sp = gemma4c_session_default_params();
    cc->sp.n_predict = 1024;
    cc->o.n_ctx = 8192;
}

int cmd_run(int argc, char **argv) {
    chat_cli cc;
    session_defaults(&cc);
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
                   "Media (--image photo.jpg) come before the text, in the order given.\n\n"
                   "%s%s%s%s%s", CHAT_HELP, COMMON_HELP, MEDIA_HELP, SAMPLING_HELP, DRAFT_HELP);
            return 0;
        }
        if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && v) { prompt = v; i++; continue; }
        if ((!strcmp(a, "-s") || !strcmp(a, "--system")) && v) { system = v; i++; continue; }
        if (!strcmp(a, "--json")) { json_out = 1; continue; }
        int r = chat_opt(&cc, argc, argv, &i);
        if (r == 0) { fprintf(stderr, "gemma4c run: unknown or incomplete option '%s'\n", a); return 2; }
        if (r < 0) return 2;
    }
    if (!prompt) { fprintf(stderr, "gemma4c run: need -p PROMPT (see --help)\n"); return 2; }
    if (session_open(&cc)) { session_close(&cc); return 1; }
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_t *msg = NULL;
    if (cc.mo.n) {
        json_t *parts = json_array();
        for (int i = 0; i < cc.mo.n; i++)
            if (add_media(&cc, cc.mo.kind[i], cc.mo.path[i], parts)) {
                json_decref(parts);
                json_decref(msgs);
                session_close(&cc);
                return 1;
            }
        json_array_append_new(parts, json_pack("{s:s,s:s}", "type", "text", "text", prompt));
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "user", "content", parts));
    } else {
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", prompt));
    }
    msg = turn(&cc, msgs);
    int rc = msg ? 0 : 1;
    if (msg && json_out) {
        char *s = json_dumps(msg, JSON_COMPACT);
        if (s) printf("%s\n", s);
        free(s);
    }
    json_decref(msg);
    json_decref(msgs);
    session_close(&cc);
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
    chat_cli cc;
    session_defaults(&cc);
    const char *system = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemma4c chat -m MODEL [--system S] [--think] [options]\n\n"
                   "Interactive multi-turn chat with line editing and history. Commands:\n"
                   "  /think        toggle thinking        /system TEXT  set the system prompt\n"
                   "  /clear        forget the conversation /quit         leave (or Ctrl-D)\n"
                   "  /image PATH   attach an image to the next message (/audio PATH: a clip)\n"
                   "Ctrl-C stops the answer being generated without leaving. Thoughts are\n"
                   "dropped from the history, as the official template requires.\n\n"
                   "  -s, --system TEXT       system prompt\n%s%s%s%s%s", CHAT_HELP, COMMON_HELP, MEDIA_HELP,
                   SAMPLING_HELP, DRAFT_HELP);
            return 0;
        }
        if ((!strcmp(a, "-s") || !strcmp(a, "--system")) && v) { system = v; i++; continue; }
        int r = chat_opt(&cc, argc, argv, &i);
        if (r == 0) { fprintf(stderr, "gemma4c chat: unknown or incomplete option '%s'\n", a); return 2; }
        if (r < 0) return 2;
    }
    if (session_open(&cc)) { session_close(&cc); return 1; }
    int tty = isatty(0);
    char *sys = system ? strdup(system) : NULL;
    json_t *msgs = json_array(), *pending = json_array();   /* media parts for the next message */
    for (int i = 0; i < cc.mo.n; i++)
        if (add_media(&cc, cc.mo.kind[i], cc.mo.path[i], pending)) {
            json_decref(pending); json_decref(msgs); free(sys); session_close(&cc);
            return 1;
        }
    if (tty)
        printf("gemma4c chat (%s template, thinking %s). /help for commands, Ctrl-D to leave.\n",
               gemma4c_chat_family_name(gemma4c_session_family(cc.ss)), cc.think ? "on" : "off");
    for (;;) {
        char *line = read_line(tty);
        if (!line) break;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) { free(line); break; }
        if (!strcmp(line, "/help")) {
            printf("/think  /system TEXT  /image PATH  /audio PATH  /clear  /quit\n");
        } else if ((!strncmp(line, "/image ", 7) || !strncmp(line, "/audio ", 7)) && line[7]) {
            int kind = line[1] == 'i' ? GEMMA4C_MEDIA_IMAGE : GEMMA4C_MEDIA_AUDIO;
            if (add_media(&cc, kind, line + 7, pending) == 0)
                printf("%s attached to the next message (%d soft tokens)\n", line[1] == 'i' ? "image" : "audio",
                       gemma4c_media_n_tokens(cc.items[cc.n_items - 1]));
        } else if (!strcmp(line, "/think")) {
            cc.think = !cc.think;
            printf("thinking %s\n", cc.think ? "on" : "off");
        } else if (!strncmp(line, "/system", 7) && (line[7] == ' ' || line[7] == 0)) {
            free(sys);
            sys = line[7] ? strdup(line + 8) : NULL;
            printf("system prompt %s\n", sys ? "set" : "cleared");
        } else if (!strcmp(line, "/clear")) {
            json_array_clear(msgs);
            json_array_clear(pending);
            gemma4c_session_reset(cc.ss);
            drop_media(&cc);
            printf("conversation cleared\n");
        } else if (line[0] == '/') {
            printf("unknown command %s (/help)\n", line);
        } else if (line[0]) {
            if (json_array_size(pending)) {
                json_array_append_new(pending, json_pack("{s:s,s:s}", "type", "text", "text", line));
                json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "user", "content", pending));
                pending = json_array();
            } else {
                json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", line));
            }
            json_t *all = json_array();
            if (sys) json_array_append_new(all, json_pack("{s:s,s:s}", "role", "system", "content", sys));
            json_array_extend(all, msgs);
            json_t *msg = turn(&cc, all);
            json_decref(all);
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
    json_decref(pending);
    session_close(&cc);
    return 0;
}
