/* gemma4c render: print the exact prompt the official Gemma 4 chat template
 * produces for an OpenAI-style chat request, so it can be diffed against
 * the Jinja template (tests/sh/chat_template.sh does exactly that). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gemma4c.h"

static void render_usage(FILE *o) {
    fprintf(o,
        "usage: gemma4c render (-m MODEL | --family e|31b | --template FILE.jinja) --request REQ.json\n"
        "\n"
        "Print the prompt (bytes, nothing appended) the official Gemma 4 chat template\n"
        "renders for an OpenAI-style chat request body.\n"
        "\n"
        "  -m, --model PATH      .gguf file (tokenizer.chat_template, else block count /\n"
        "                        per-layer-embedding size) or Hugging Face folder\n"
        "                        (chat_template.jinja or tokenizer_config.json's\n"
        "                        chat_template, else config.json)\n"
        "  --family e|31b|interleaved  template family: e = E2B/E4B, 31b = 26B-A4B/31B,\n"
        "                        interleaved = llama.cpp's 31B-it-interleaved variant\n"
        "                        (also overrides what -m / --template detect)\n"
        "  --template FILE       detect the family from a chat template file\n"
        "  --request FILE        request JSON ('-' = stdin): messages, tools,\n"
        "                        add_generation_prompt (absent = false),\n"
        "                        enable_thinking or chat_template_kwargs.enable_thinking\n"
        "  --think / --no-think  override enable_thinking\n"
        "  --gen / --no-gen      override add_generation_prompt\n"
        "  --openai-compat       llama.cpp behaviour: JSON-string tool-call arguments\n"
        "                        are parsed to objects; a generation prompt after a\n"
        "                        closed tool-use turn is not dropped (default: exactly\n"
        "                        the official template)\n"
        "  --print-family        print the selected family on stderr\n"
        "\n"
        "Batch mode (tests): gemma4c render --family F --out-dir DIR REQ.json...\n"
        "  writes DIR/NAME.F.txt per request (NAME.F.err, empty, when it is rejected;\n"
        "  the reason goes to stderr).\n");
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    while (p) {
        if (n + 1 >= cap) {
            char *q = realloc(p, cap * 2);
            if (!q) { free(p); p = NULL; break; }
            p = q;
            cap *= 2;
        }
        size_t r = fread(p + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (f != stdin) fclose(f);
    if (p) { p[n] = 0; if (len) *len = n; }
    return p;
}

/* Render one request file; returns the malloc'd prompt or NULL with a message. */
static char *render_file(const char *path, const gemma4c_chat_options *opt, int fam, size_t *n, char *msg,
                         size_t msz) {
    size_t rlen = 0;
    char *rtext = slurp(path, &rlen);
    if (!rtext) { snprintf(msg, msz, "cannot read %s", path); return NULL; }
    char err[600];
    char *out = gemma4c_chat_render(fam, rtext, rlen, opt, n, err, sizeof err);
    free(rtext);
    if (!out) snprintf(msg, msz, "%s: %s", path, err);
    return out;
}

static int render_batch(const char *dir, char **files, int nfiles, const gemma4c_chat_options *opt, int fam) {
    int rc = 0;
    for (int i = 0; i < nfiles; i++) {
        const char *base = strrchr(files[i], '/');
        base = base ? base + 1 : files[i];
        size_t bl = strlen(base);
        if (bl > 5 && !strcmp(base + bl - 5, ".json")) bl -= 5;
        char msg[1024], path[4096];
        size_t n = 0;
        char *out = render_file(files[i], opt, fam, &n, msg, sizeof msg);
        snprintf(path, sizeof path, "%s/%.*s.%s.%s", dir, (int)bl, base, gemma4c_chat_family_name(fam), out ? "txt" : "err");
        if (!out) fprintf(stderr, "gemma4c render: %s\n", msg);
        FILE *f = fopen(path, "wb");
        if (!f || (out && fwrite(out, 1, n, f) != n)) { fprintf(stderr, "gemma4c render: cannot write %s\n", path); rc = 1; }
        if (f && fclose(f)) rc = 1;
        free(out);
    }
    return rc;
}

int cmd_render(int argc, char **argv) {
    const char *model = NULL, *family = NULL, *tmpl = NULL, *req = NULL, *outdir = NULL;
    int nfiles = 0;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    if (!files) return 1;
    gemma4c_chat_options opt = gemma4c_chat_default_options();
    int print_family = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { render_usage(stdout); free(files); return 0; }
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--family") && has) family = argv[++i];
        else if (!strcmp(a, "--template") && has) tmpl = argv[++i];
        else if (!strcmp(a, "--request") && has) req = argv[++i];
        else if (!strcmp(a, "--think")) opt.enable_thinking = 1;
        else if (!strcmp(a, "--no-think")) opt.enable_thinking = 0;
        else if (!strcmp(a, "--gen")) opt.add_generation_prompt = 1;
        else if (!strcmp(a, "--no-gen")) opt.add_generation_prompt = 0;
        else if (!strcmp(a, "--print-family")) print_family = 1;
        else if (!strcmp(a, "--openai-compat")) opt.openai_compat = 1;
        else if (!strcmp(a, "--out-dir") && has) outdir = argv[++i];
        else if (a[0] != '-') files[nfiles++] = argv[i];
        else { fprintf(stderr, "gemma4c render: bad argument '%s'\n\n", a); render_usage(stderr); free(files); return 2; }
    }
    if ((!req && !outdir) || (nfiles && !outdir) || (!model && !family && !tmpl)) {
        render_usage(stderr);
        free(files);
        return 2;
    }

    int fam = GEMMA4C_CHAT_UNKNOWN;
    if (family) {
        fam = gemma4c_chat_family_from_name(family);
        if (fam == GEMMA4C_CHAT_UNKNOWN) {
            fprintf(stderr, "gemma4c render: unknown family '%s' (use e, 31b or interleaved)\n", family);
            free(files);
            return 2;
        }
    } else if (tmpl) {
        char *t = slurp(tmpl, NULL);
        if (!t) { fprintf(stderr, "gemma4c render: cannot read %s\n", tmpl); free(files); return 1; }
        fam = gemma4c_chat_family_from_template(t);
        free(t);
        if (fam == GEMMA4C_CHAT_UNKNOWN) {
            fprintf(stderr, "gemma4c render: %s is not a Gemma 4 chat template (use --family)\n", tmpl);
            free(files);
            return 1;
        }
    } else {
        char err[600];
        fam = gemma4c_chat_family_from_path(model, err, sizeof err);
        if (fam == GEMMA4C_CHAT_UNKNOWN) {
            fprintf(stderr, "gemma4c render: %s\n", err);
            free(files);
            return 1;
        }
    }
    if (print_family) fprintf(stderr, "family: %s\n", gemma4c_chat_family_name(fam));
    if (outdir) {
        int rc = render_batch(outdir, files, nfiles, &opt, fam);
        free(files);
        return rc;
    }
    free(files);

    char msg[1024];
    size_t n = 0;
    char *out = render_file(req, &opt, fam, &n, msg, sizeof msg);
    if (!out) { fprintf(stderr, "gemma4c render: %s\n", msg); return 1; }
    fwrite(out, 1, n, stdout);
    free(out);
    return fflush(stdout) == 0 ? 0 : 1;
}
