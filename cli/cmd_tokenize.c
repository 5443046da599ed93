/* gemma4c tokenize: text -> token ids (or pieces) with a model's tokenizer.
 * Also a batch mode (--jsonl) used by the tests to compare many strings with
 * an independent tokenizer in one process. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gemma4c.h"

static void usage(FILE *o) {
    fprintf(o,
        "usage: gemma4c tokenize (-m MODEL | --tokenizer FILE) [options] [TEXT]\n"
        "\n"
        "Prints the token ids of TEXT on one line, separated by spaces.\n"
        "\n"
        "  -m MODEL           a .gguf file, or a Hugging Face folder with tokenizer.json\n"
        "  --tokenizer FILE   a Hugging Face tokenizer.json (tokenizer_config.json next to it\n"
        "                     is read for the special-token names) or a .gguf\n"
        "  --no-bos           do not put <bos> first (it is added by default: Gemma needs it)\n"
        "  --special          match special tokens written in the text (\"<|turn>\") as single\n"
        "                     tokens; without it they are tokenized as plain text\n"
        "  --pieces           print the pieces (escaped, space separated) instead of ids\n"
        "  --file PATH        read the text from PATH ('-' = stdin) instead of TEXT\n"
        "  --jsonl PATH       batch mode: each line of PATH is a JSON string; prints one\n"
        "                     line of ids per record and checks decode(encode(x)) == x\n"
        "                     (mismatches reported on stderr, exit status 1)\n"
        "  -h, --help         this help\n"
        "\n"
        "examples:\n"
        "  gemma4c tokenize -m model.gguf \"Hello world\"\n"
        "  gemma4c tokenize --tokenizer tokenizer.json --no-bos --pieces \"  Hello\"\n");
}

static void print_piece(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c <= 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
}

static void print_tokens(const gemma4c_tokenizer *t, const int32_t *ids, int n, int pieces) {
    for (int i = 0; i < n; i++) {
        if (i) putchar(' ');
        if (pieces) {
            size_t l = 0;
            const char *s = gemma4c_tokenizer_piece(t, ids[i], &l);
            print_piece(s, l);
        } else {
            printf("%d", ids[i]);
        }
    }
    putchar('\n');
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n == cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) { free(buf); buf = NULL; break; }
            buf = p; cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    if (f != stdin) fclose(f);
    *len = n;
    return buf;
}

static int run_jsonl(const gemma4c_tokenizer *t, const char *path, int bos, int special, int pieces) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) { fprintf(stderr, "gemma4c tokenize: cannot open %s\n", path); return 1; }
    char *line = NULL;
    size_t cap = 0, rec = 0, bad = 0;
    ssize_t got;
    int rc = 0;
    char err[600];
    while ((got = getline(&line, &cap, f)) >= 0) {
        rec++;
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!json_is_string(j)) {
            fprintf(stderr, "gemma4c tokenize: %s:%zu: not a JSON string (%s)\n", path, rec, je.text);
            json_decref(j);
            rc = 1;
            break;
        }
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        int32_t *ids = NULL;
        int nid = gemma4c_tokenizer_encode(t, s, n, bos, special, &ids, err, sizeof err);
        if (nid < 0) {
            fprintf(stderr, "gemma4c tokenize: %s:%zu: %s\n", path, rec, err);
            json_decref(j);
            rc = 1;
            break;
        }
        print_tokens(t, ids, nid, pieces);
        char *back = NULL;
        size_t bl = 0;
        if (gemma4c_tokenizer_decode(t, ids, (size_t)nid, special, &back, &bl, err, sizeof err) == 0) {
            if (bl != n || memcmp(back, s, n) != 0) {
                if (bad < 10) fprintf(stderr, "roundtrip mismatch at record %zu\n", rec);
                bad++;
            }
            free(back);
        }
        free(ids);
        json_decref(j);
    }
    free(line);
    if (f != stdin) fclose(f);
    fprintf(stderr, "records: %zu, roundtrip mismatches: %zu\n", rec, bad);
    return rc ? rc : (bad ? 1 : 0);
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL, *jsonl = NULL;
    int bos = 1, special = 0, pieces = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--tokenizer")) && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(a, "--no-bos")) bos = 0;
        else if (!strcmp(a, "--special")) special = 1;
        else if (!strcmp(a, "--pieces")) pieces = 1;
        else if (!strcmp(a, "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(a, "--jsonl") && i + 1 < argc) jsonl = argv[++i];
        else if (a[0] == '-' && a[1] && !text) {
            fprintf(stderr, "gemma4c tokenize: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        } else if (!text) text = a;
        else { fprintf(stderr, "gemma4c tokenize: more than one TEXT argument\n"); return 2; }
    }
    if (!model) { fprintf(stderr, "gemma4c tokenize: -m MODEL or --tokenizer FILE is required\n\n"); usage(stderr); return 2; }
    if (!!text + !!file + !!jsonl != 1) {
        fprintf(stderr, "gemma4c tokenize: give exactly one of TEXT, --file, --jsonl\n\n");
        usage(stderr);
        return 2;
    }
    char err[600];
    gemma4c_tokenizer *t = gemma4c_tokenizer_load(model, err, sizeof err);
    if (!t) { fprintf(stderr, "gemma4c tokenize: %s\n", err); return 1; }
    int rc = 0;
    if (jsonl) {
        rc = run_jsonl(t, jsonl, bos, special, pieces);
    } else {
        size_t n = 0;
        char *buf = NULL;
        if (file) {
            buf = read_all(file, &n);
            if (!buf) { fprintf(stderr, "gemma4c tokenize: cannot read %s\n", file); gemma4c_tokenizer_free(t); return 1; }
            text = buf;
        } else {
            n = strlen(text);
        }
        int32_t *ids = NULL;
        int nid = gemma4c_tokenizer_encode(t, text, n, bos, special, &ids, err, sizeof err);
        if (nid < 0) {
            fprintf(stderr, "gemma4c tokenize: %s\n", err);
            rc = 1;
        } else {
            print_tokens(t, ids, nid, pieces);
        }
        free(ids);
        free(buf);
    }
    gemma4c_tokenizer_free(t);
    return rc;
}
