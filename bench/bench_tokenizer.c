/* Tokenizer benchmark: load time (tokenizer.json, and GGUF-style arrays),
 * encode and decode throughput on a mixed-language corpus of 1 MB+.
 *
 *   build/bench/bench_tokenizer [--tokenizer tokenizer.json] [--corpus FILE]
 *                               [--write-corpus FILE] [--iters N]
 *
 * Without --corpus a deterministic corpus is built: real English text from
 * /usr/share/common-licenses interleaved with generated paragraphs in other
 * scripts (Cyrillic, CJK, Arabic, Devanagari, Khmer, Greek, emoji, code), about
 * half each. --write-corpus saves it so bench/bench_tokenizer.sh can time the
 * JavaScript reference on the same bytes. Prints "encode_mb_s X" for scripts. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/gguf.h"
#include "text/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct { char *p; size_t n, cap; } buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1 << 20;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) { fprintf(stderr, "out of memory\n"); exit(1); }
        b->p = q; b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static const char *const WORDS[] = {
    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", "\xd0\xbc\xd0\xb8\xd1\x80",
    "\xd1\x8f\xd0\xb7\xd1\x8b\xd0\xba", "\xd0\xbc\xd0\xbe\xd0\xb4\xd0\xb5\xd0\xbb\xd1\x8c",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xe4\xb8\xad\xe6\x96\x87", "\xe6\xa8\xa1\xe5\x9e\x8b",
    "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
    "\xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9", "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7",
    "\xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d\xe0\xa4\xa6\xe0\xa5\x80",
    "\xe1\x9e\x97\xe1\x9e\xb6\xe1\x9e\x9f\xe1\x9e\xb6\xe1\x9e\x81\xe1\x9f\x92\xe1\x9e\x98\xe1\x9f\x82\xe1\x9e\x9a",
    "\xce\xb5\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac", "\xd7\xa2\xd7\x91\xd7\xa8\xd7\x99\xd7\xaa",
    "caf\xc3\xa9", "na\xc3\xafve", "Stra\xc3\x9f\x65", "\xf0\x9f\xa6\x99", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
    "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", "model", "tokenizer",
    "for (int i = 0; i < n; i++) {", "return x * 2;", "}", "12345", "3.14", "<div>", "\t",
};

static void build_corpus(buf *b, size_t want) {
    /* real text first, interleaved below with generated paragraphs */
    buf real = {0};
    DIR *d = opendir("/usr/share/common-licenses");
    if (d) {
        char *names[256];
        int nn = 0;
        struct dirent *e;
        while ((e = readdir(d)) && nn < 256)
            if (e->d_name[0] != '.') names[nn++] = strdup(e->d_name);
        closedir(d);
        for (int i = 0; i < nn; i++)   /* fixed order */
            for (int j = i + 1; j < nn; j++)
                if (strcmp(names[i], names[j]) > 0) { char *t = names[i]; names[i] = names[j]; names[j] = t; }
        for (int i = 0; i < nn; i++) {
            char path[512];
            snprintf(path, sizeof path, "/usr/share/common-licenses/%s", names[i]);
            FILE *f = fopen(path, "rb");
            free(names[i]);
            if (!f) continue;
            char chunk[1 << 16];
            size_t r;
            while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) put(&real, chunk, r);
            fclose(f);
        }
    }
    if (!real.n) puts_(&real, "The quick brown fox jumps over the lazy dog.\n");
    uint32_t s = 42;
    size_t rp = 0;
    size_t nw = sizeof WORDS / sizeof *WORDS;
    while (b->n < want) {
        /* ~4 KB of real text */
        size_t take = 4096;
        if (rp + take > real.n) rp = 0;
        if (take > real.n) take = real.n;
        size_t end = rp + take;
        while (end < real.n && real.p[end] != '\n') end++;
        put(b, real.p + rp, end - rp);
        rp = end;
        /* ~4 KB generated */
        size_t start = b->n;
        while (b->n - start < 4096) {
            s = s * 1664525u + 1013904223u;
            puts_(b, WORDS[(s >> 8) % nw]);
            uint32_t r = (s >> 20) % 16;
            puts_(b, r < 11 ? " " : r < 13 ? ", " : r < 15 ? ". " : "\n");
        }
        puts_(b, "\n");
    }
    free(real.p);
}

/* GGUF-style load: the same vocabulary as tokenizer.ggml.* arrays in an
 * in-memory g4_gguf_file (what a .gguf holds), then the tokenizer built from it. */
static double time_gguf_load(const char *json_path, const g4_tokenizer *ref) {
    json_t *root = json_load_file(json_path, 0, NULL);
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    if (!root || !json_is_array(merges)) { json_decref(root); return -1; }
    int32_t n = g4_tok_n_vocab(ref);
    const char **toks = malloc((size_t)n * sizeof *toks);
    char **own = malloc((size_t)n * sizeof *own);
    int32_t *types = malloc((size_t)n * sizeof *types);
    size_t nm = json_array_size(merges);
    char **ms = malloc(nm * sizeof *ms);
    for (int32_t i = 0; i < n; i++) {
        size_t l = 0;
        const char *p = g4_tok_text(ref, i, &l);
        own[i] = strndup(p, l);
        toks[i] = own[i];
        types[i] = g4_tok_type(ref, i);
    }
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) { ms[i] = strdup(json_string_value(m)); continue; }
        const char *a = json_string_value(json_array_get(m, 0)), *c = json_string_value(json_array_get(m, 1));
        size_t la = strlen(a ? a : ""), lc = strlen(c ? c : "");
        ms[i] = malloc(la + lc + 2);
        memcpy(ms[i], a ? a : "", la);
        ms[i][la] = ' ';
        memcpy(ms[i] + la + 1, c ? c : "", lc + 1);
    }
    json_decref(root);
    g4_gguf_file *f = g4_gguf_new("bench");
    g4_gguf_set_str(f, "tokenizer.ggml.model", "gemma4");
    g4_gguf_set_arr_str(f, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    g4_gguf_set_arr(f, "tokenizer.ggml.token_type", GGUF_INT32, types, (uint64_t)n);
    g4_gguf_set_arr_str(f, "tokenizer.ggml.merges", (const char *const *)ms, nm);
    g4_gguf_set_u32(f, "tokenizer.ggml.bos_token_id", 2);
    g4_gguf_set_u32(f, "tokenizer.ggml.eos_token_id", 1);
    g4_error err = {{0}};
    double t0 = now();
    g4_tokenizer *t = g4_tokenizer_from_gguf(f, &err);
    double dt = now() - t0;
    if (!t) { fprintf(stderr, "gguf load: %s\n", err.msg); dt = -1; }
    g4_tokenizer_free(t);
    g4_gguf_close(f);
    for (int32_t i = 0; i < n; i++) free(own[i]);
    for (size_t i = 0; i < nm; i++) free(ms[i]);
    free(own); free(toks); free(types); free(ms);
    return dt;
}

int main(int argc, char **argv) {
    const char *tok_path = "../shared/testdata/tokenizer/tokenizer.json";
    const char *corpus = NULL, *write_corpus = NULL;
    int iters = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc) corpus = argv[++i];
        else if (!strcmp(argv[i], "--write-corpus") && i + 1 < argc) write_corpus = argv[++i];
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_tokenizer [--tokenizer tokenizer.json] [--corpus FILE] "
                            "[--write-corpus FILE] [--iters N]\n");
            return 2;
        }
    }
    if (iters < 1) iters = 1;
    buf text = {0};
    if (corpus) {
        FILE *f = fopen(corpus, "rb");
        if (!f) { fprintf(stderr, "cannot open %s\n", corpus); return 1; }
        char chunk[1 << 16];
        size_t r;
        while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) put(&text, chunk, r);
        fclose(f);
    } else {
        build_corpus(&text, 3u << 19);   /* 1.5 MB */
    }
    if (write_corpus) {
        FILE *f = fopen(write_corpus, "wb");
        if (!f || fwrite(text.p, 1, text.n, f) != text.n) { fprintf(stderr, "cannot write %s\n", write_corpus); return 1; }
        fclose(f);
    }

    g4_error err = {{0}};
    double t0 = now();
    g4_tokenizer *t = g4_tokenizer_load(tok_path, &err);
    double load_json = now() - t0;
    if (!t) { fprintf(stderr, "%s\n", err.msg); return 1; }
    double load_gguf = time_gguf_load(tok_path, t);

    double best = 1e30, first = 0;
    g4_tokens ids = {0};
    for (int it = 0; it < iters; it++) {
        ids.n = 0;
        double a = now();
        if (g4_tok_encode(t, text.p, text.n, false, false, &ids, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        double dt = now() - a;
        if (it == 0) first = dt;
        if (dt < best) best = dt;
    }
    double mb = (double)text.n / 1e6;

    /* decode: whole sequence and the streaming detokenizer */
    double dbest = 1e30, sbest = 1e30;
    for (int it = 0; it < iters; it++) {
        char *s = NULL;
        size_t sl = 0;
        double a = now();
        g4_tok_decode(t, ids.ids, ids.n, false, &s, &sl, &err);
        double dt = now() - a;
        if (dt < dbest) dbest = dt;
        if (sl != text.n || memcmp(s, text.p, sl)) { fprintf(stderr, "round trip failed\n"); return 1; }
        free(s);
        g4_detok *d = g4_detok_new(t, false);
        size_t total = 0, l;
        a = now();
        for (size_t i = 0; i < ids.n; i++) { g4_detok_push(d, ids.ids[i], &l, &err); total += l; }
        g4_detok_flush(d, &l);
        total += l;
        dt = now() - a;
        if (dt < sbest) sbest = dt;
        g4_detok_free(d);
        if (total != text.n) { fprintf(stderr, "streaming decode lost bytes\n"); return 1; }
    }

    printf("corpus: %zu bytes, %zu tokens (%.2f bytes/token)\n", text.n, ids.n, (double)text.n / (double)ids.n);
    printf("load tokenizer.json: %.3f s (%d pieces)\n", load_json, g4_tok_n_vocab(t));
    if (load_gguf >= 0) printf("build from GGUF arrays: %.3f s\n", load_gguf);
    printf("encode: first %.3f s, best of %d %.3f s\n", first, iters, best);
    printf("decode: %.1f MB/s, streaming detokenizer: %.1f MB/s\n", mb / dbest, mb / sbest);
    printf("encode_mb_s %.2f\n", mb / best);
    g4_tokens_free(&ids);
    g4_tokenizer_free(t);
    free(text.p);
    return 0;
}
