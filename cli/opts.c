/* Options shared by the commands that run a model (see opts.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opts.h"


/* Parse an int option value; prints an error and returns -1 on bad input. */
int parse_int(const char *opt, const char *v, int lo, int hi, int *out) {
    if (!v) { fprintf(stderr, "gemma4c: %s needs a value\n", opt); return -1; }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "gemma4c: %s expects an integer in [%d, %d], got '%s'\n", opt, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* Common model/context options. Returns 1 if argv[*i] was consumed, 0 if not
 * ours, -1 on error. */
int common_opt(run_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!v) { fprintf(stderr, "gemma4c: %s needs a path\n", a); return -1; }
        o->model = v; (*i)++; return 1;
    }
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { (*i)++; return parse_int(a, v, 1, 1024, &o->threads) ? -1 : 1; }
    if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { (*i)++; return parse_int(a, v, 1, 1 << 24, &o->n_ctx) ? -1 : 1; }
    if (!strcmp(a, "-b") || !strcmp(a, "--batch")) { (*i)++; return parse_int(a, v, 1, 1 << 16, &o->n_batch) ? -1 : 1; }
    if (!strcmp(a, "--exact")) { o->exact = 1; return 1; }
    if (!strcmp(a, "--kv-type")) {
        (*i)++;
        if ((o->kv_type = gemma4c_kv_type_from_name(v)) < 0) {
            fprintf(stderr, "gemma4c: --kv-type expects f32, f16, q8_0 or q4_0, got '%s'\n", v ? v : "");
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--lora")) { (*i)++; return parse_lora(o, v) ? -1 : 1; }
    return 0;
}

/* Adapters and the --lora path copies live until exit (freed there, so
 * LeakSanitizer stays quiet); a context may use them to its end. */
static gemma4c_adapter *g_adapters[4 * MAX_LORA];
static int g_n_adapters;
static char *g_paths[4 * MAX_LORA];
static int g_n_paths;

static void free_adapters(void) {
    for (int i = 0; i < g_n_adapters; i++) gemma4c_adapter_free(g_adapters[i]);
    for (int i = 0; i < g_n_paths; i++) free(g_paths[i]);
    g_n_adapters = g_n_paths = 0;
}

static void register_cleanup(void) {
    static int registered;
    if (!registered) registered = !atexit(free_adapters);
}

int parse_lora(run_opts *o, const char *v) {
    if (!v) { fprintf(stderr, "gemma4c: --lora needs PATH[:SCALE]\n"); return -1; }
    if (o->n_lora == MAX_LORA || g_n_paths == (int)(sizeof g_paths / sizeof *g_paths)) {
        fprintf(stderr, "gemma4c: at most %d --lora adapters\n", MAX_LORA);
        return -1;
    }
    char path[4096];
    if (gemma4c_adapter_spec(v, path, sizeof path, &o->lora_scale[o->n_lora])) {
        fprintf(stderr, "gemma4c: --lora '%s': expected PATH[:SCALE]\n", v);
        return -1;
    }
    register_cleanup();
    if (!(g_paths[g_n_paths] = strdup(path))) return -1;
    o->lora[o->n_lora++] = g_paths[g_n_paths++];
    return 0;
}

int load_adapters(gemma4c_model *m, const char *const *paths, int n, gemma4c_adapter **out) {
    register_cleanup();
    for (int i = 0; i < n; i++) {
        char err[600];
        if (g_n_adapters == (int)(sizeof g_adapters / sizeof *g_adapters)) {
            fprintf(stderr, "gemma4c: too many adapters\n");
            return -1;
        }
        out[i] = gemma4c_adapter_load(m, paths[i], err, sizeof err);
        if (!out[i]) { fprintf(stderr, "gemma4c: --lora: %s\n", err); return -1; }
        g_adapters[g_n_adapters++] = out[i];
    }
    return 0;
}

const char *COMMON_HELP =
    "  -m, --model PATH   GGUF file or Hugging Face checkpoint folder (required)\n"
    "  -t, --threads N    worker threads (default: all CPUs)\n"
    "  -c, --ctx N        context size in tokens (default: min(model, 4096))\n"
    "  -b, --batch N      tokens per forward batch (default 512)\n"
    "      --exact        f32 activations against decoded weights (reference\n"
    "                     precision) instead of llama.cpp-style quantized activations\n"
    "      --lora PATH[:S]  LoRA adapter (GGUF LoRA file or PEFT folder) at scale S\n"
    "                     (default 1; W x + S alpha/r B A x); repeatable\n"
    "      --kv-type T    KV cache f32, f16, q8_0 or q4_0 (default f16; f32 with --exact)\n";

gemma4c_model *open_model(const run_opts *o) {
    if (!o->model) {
        fprintf(stderr, "gemma4c: no model given (use -m FILE.gguf)\n");
        return NULL;
    }
    char err[600];
    gemma4c_model *m = gemma4c_model_open(o->model, err, sizeof err);
    if (!m) fprintf(stderr, "gemma4c: %s\n", err);
    return m;
}

gemma4c_context *open_ctx(gemma4c_model *m, const run_opts *o) {
    gemma4c_context_params p = gemma4c_context_default_params();
    p.n_ctx = o->n_ctx;
    p.n_batch = o->n_batch;
    p.n_threads = o->threads;
    p.precision = o->exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    gemma4c_adapter *ad[MAX_LORA];
    if (load_adapters(m, o->lora, o->n_lora, ad)) return NULL;
    p.adapters = ad;
    p.adapter_scales = o->lora_scale;
    p.n_adapters = o->n_lora;
    p.kv_type = o->kv_type;
    char err[600];
    gemma4c_context *c = gemma4c_context_new(m, &p, err, sizeof err);
    if (!c) fprintf(stderr, "gemma4c: %s\n", err);
    return c;
}

/* Read whitespace-separated token ids from a string. Returns count or -1. */
int parse_ids(const char *s, int32_t **out, const char *src) {
    int cap = 64, n = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            fprintf(stderr, "gemma4c: %s: expected a token id at \"%.20s\"\n", src, p);
            free(v);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) { free(v); return -1; }
            v = nv;
        }
        v[n++] = (int32_t)x;
        p = end;
    }
    *out = v;
    return n;
}

char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "gemma4c: %s: %s\n", path, strerror(errno)); return NULL; }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) break;
        if (n + 1 >= cap) {
            if (cap > (64u << 20)) { fprintf(stderr, "gemma4c: %s: file too large\n", path); free(b); b = NULL; break; }
            char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); b = NULL; break; }
            b = nb;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        if (!r) break;
        n += r;
    }
    fclose(f);
    if (b) b[n] = 0;
    return b;
}


const char *SAMPLING_HELP =
    "      --greedy            argmax decoding (same as --temp 0)\n"
    "      --temp X            temperature (default 1.0)\n"
    "      --top-k N           (default 64; 0 = off)\n"
    "      --top-p X           (default 0.95; 1 = off)\n"
    "      --min-p X           (default 0 = off)\n"
    "      --repeat-penalty X  (default 1 = off)\n"
    "      --presence-penalty X, --frequency-penalty X  (default 0)\n"
    "      --seed N            RNG seed (default fixed: runs are reproducible)\n";

int sampling_opt(gemma4c_sampler_params *sp, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "--greedy")) { sp->temperature = 0; return 1; }
    if (!strcmp(a, "--top-k")) { (*i)++; return parse_int(a, v, 0, 1 << 24, &sp->top_k) ? -1 : 1; }
    if (!strcmp(a, "--seed")) {
        (*i)++;
        char *end;
        errno = 0;
        if (!v || (sp->seed = strtoull(v, &end, 10), *end || errno)) {
            fprintf(stderr, "gemma4c: --seed expects a non-negative integer\n");
            return -1;
        }
        return 1;
    }
    float *dst = !strcmp(a, "--temp") ? &sp->temperature : !strcmp(a, "--top-p") ? &sp->top_p
               : !strcmp(a, "--min-p") ? &sp->min_p : !strcmp(a, "--repeat-penalty") ? &sp->repeat_penalty
               : !strcmp(a, "--presence-penalty") ? &sp->presence_penalty
               : !strcmp(a, "--frequency-penalty") ? &sp->frequency_penalty : NULL;
    if (!dst) return 0;
    (*i)++;
    char *end;
    float x = v ? strtof(v, &end) : 0;
    if (!v || *end || x != x) {
        fprintf(stderr, "gemma4c: %s expects a number\n", a);
        return -1;
    }
    *dst = x;
    return 1;
}

void cli_show_progress(void *ud, uint64_t done, uint64_t total, double el, int final) {
    (void)ud;
    if (!isatty(2)) return;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 && !final ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r  %8.1f / %.1f MiB  %7.1f MB/s  ETA %4.0fs ", done / 1048576.0, total / 1048576.0,
            rate / 1e6, eta);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

void cli_cleanup_on_signal(int sig) {
    gemma4c_write_abort_cleanup();
    _exit(128 + sig);
}

const char *DRAFT_HELP =
    "      --draft ngram       speculative decoding with prompt-lookup drafts (output\n"
    "                          unchanged: greedy identical, sampling same distribution)\n"
    "      --draft mtp:FILE    ... with drafts from a Gemma 4 multi-token-prediction\n"
    "                          assistant (gemma4-assistant GGUF) for this model\n"
    "      --draft-model FILE  the same as --draft mtp:FILE\n"
    "      --draft-max K       most drafted tokens verified per step (default 4)\n"
    "      --ngram N           longest n-gram looked up in the text so far (default 3)\n";

const char *cli_draft_model;

int draft_attach(gemma4c_draft_params *dp, const gemma4c_model *m, int threads, int exact) {
    if (dp->kind != GEMMA4C_DRAFT_MTP || dp->drafter) return 0;
    char err[600];
    dp->drafter = gemma4c_drafter_open(m, cli_draft_model, threads, exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST,
                                       err, sizeof err);
    if (!dp->drafter) { fprintf(stderr, "gemma4c: drafter: %s\n", err); return -1; }
    return 0;
}

int draft_opt(gemma4c_draft_params *dp, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "--draft")) {
        (*i)++;
        if (v && !strcmp(v, "ngram")) dp->kind = GEMMA4C_DRAFT_NGRAM;
        else if (v && !strcmp(v, "none")) dp->kind = GEMMA4C_DRAFT_NONE;
        else if (v && !strncmp(v, "mtp:", 4) && v[4]) { dp->kind = GEMMA4C_DRAFT_MTP; cli_draft_model = v + 4; }
        else { fprintf(stderr, "gemma4c: --draft expects ngram, mtp:FILE or none\n"); return -1; }
        return 1;
    }
    if (!strcmp(a, "--draft-model")) {
        (*i)++;
        if (!v) { fprintf(stderr, "gemma4c: --draft-model expects a file\n"); return -1; }
        dp->kind = GEMMA4C_DRAFT_MTP;
        cli_draft_model = v;
        return 1;
    }
    if (!strcmp(a, "--draft-max")) { (*i)++; return parse_int(a, v, 1, 64, &dp->max) ? -1 : 1; }
    if (!strcmp(a, "--ngram")) { (*i)++; return parse_int(a, v, 1, 64, &dp->ngram) ? -1 : 1; }
    return 0;
}
