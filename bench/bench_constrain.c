/* Per-step cost of the constraint mask over the real 262,144-token
 * vocabulary: for several schemas, walks a random constrained generation
 * and times gemma4c_constraint_apply at each step, then times fixed hard
 * states (after a backslash, inside \u, anyOf of strings) that random
 * logits rarely reach (not a test).
 *   build/bench/bench_constrain [tokenizer.json] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemma4c.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    char path[512];
    const char *sh = getenv("G4_SHARED");
    snprintf(path, sizeof path, "%s", argc > 1 ? argv[1] : "");
    if (!path[0]) snprintf(path, sizeof path, "%s/testdata/tokenizer/tokenizer.json", sh ? sh : "../shared");
    char err[256];
    gemma4c_tokenizer *t = gemma4c_tokenizer_load(path, err, sizeof err);
    if (!t) { fprintf(stderr, "%s\n", err); return 1; }
    double t0 = now();
    gemma4c_token_index *x = gemma4c_token_index_new(t, err, sizeof err);
    if (!x) { fprintf(stderr, "%s\n", err); return 1; }
    printf("token index: %.0f ms to build\n", (now() - t0) * 1e3);
    static const struct { const char *name; int mode; const char *text; } S[] = {
        { "json_object", GEMMA4C_CONSTRAIN_JSON_OBJECT, NULL },
        { "person", GEMMA4C_CONSTRAIN_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":12},\"maxItems\":4}},\"required\":[\"name\",\"age\",\"tags\"],\"additionalProperties\":false}" },
        { "enum+anyOf", GEMMA4C_CONSTRAIN_JSON_SCHEMA, "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"enum\":[\"red\",\"green\",\"blue\"]},{\"type\":\"number\"},{\"type\":\"string\",\"maxLength\":5}]},\"maxItems\":20}" },
        { "tools", GEMMA4C_CONSTRAIN_TOOLS, "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"}},\"required\":[\"city\"]}}}]" },
    };
    /* per schema index above: prefixes whose next mask was the slowest */
    static const struct { int schema; const char *prefix; } PROBES[] = {
        { 0, "{\"a\": \"x" }, { 0, "{\"a\": \"x\\" }, { 0, "{\"a\": \"x\\u" }, { 0, "{\"a\": \"x\\u00" },
        { 0, "{\"a\": \"x<" }, { 0, "{\"a\": \"\xc3" }, { 0, "{\"" }, { 0, "{\"k\\" },
        { 1, "{\"name\": \"Bo\\" }, { 1, "{\"name\": \"B\", \"age\": 3, \"tags\": [\"abcdefghij\\" },
        { 2, "[\"" }, { 2, "[\"r" }, { 2, "[\"ab\\" }, { 2, "[\"ab\\u00" },
    };
    int nv = 262144;
    float *logits = malloc((size_t)nv * sizeof *logits);
    uint64_t r = 88172645463325252ull;
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        gemma4c_constraint_params p = { S[s].mode, S[s].mode == GEMMA4C_CONSTRAIN_JSON_SCHEMA ? S[s].text : NULL,
                                        S[s].mode == GEMMA4C_CONSTRAIN_TOOLS ? S[s].text : NULL, "required", 0 };
        gemma4c_constraint *c = gemma4c_constraint_new(x, &p, err, sizeof err);
        if (!c) { fprintf(stderr, "%s: %s\n", S[s].name, err); return 1; }
        double tot = 0, worst = 0;
        int steps = 0;
        static char text[1 << 16], worst_at[1 << 16];   /* the output so far, and before the slowest mask */
        size_t tl = 0;
        for (int rep = 0; rep < 5; rep++) {
            gemma4c_constraint_reset(c);
            tl = 0;
            text[0] = 0;
            for (int k = 0; k < 400; k++) {
                for (int i = 0; i < nv; i++) { r ^= r << 13; r ^= r >> 7; r ^= r << 17; logits[i] = (float)(r >> 40) * 1e-6f; }
                /* the least of 3 runs: on shared cores a preempted run
                 * would otherwise pass for a slow state */
                double d = 1e9;
                int n = 0;
                for (int rr = 0; rr < 3; rr++) {
                    double a = now();
                    n = gemma4c_constraint_apply(c, logits, nv);
                    double e = now() - a;
                    if (e < d) d = e;
                }
                tot += d; steps++;
                if (d > worst) { worst = d; memcpy(worst_at, text, tl + 1); }
                if (n <= 0) break;
                int best = 0;
                for (int i = 1; i < nv; i++) if (logits[i] > logits[best]) best = i;
                size_t pl = 0;
                const char *pc = gemma4c_tokenizer_piece(t, best, &pl);
                if (pc && tl + pl + 1 < sizeof text) { memcpy(text + tl, pc, pl); tl += pl; text[tl] = 0; }
                if (gemma4c_constraint_accept(c, best) || gemma4c_constraint_done(c)) break;
            }
        }
        printf("%-12s mask: %.3f ms/step mean, %.3f ms worst (%d steps, random logits, least of 3 runs each)\n", S[s].name, tot / steps * 1e3,
               worst * 1e3, steps);
        printf("  slowest after: %.60s%s\n", tl > 60 && strlen(worst_at) > 60 ? worst_at + strlen(worst_at) - 60 : worst_at,
               "");
        /* fixed states: the prefix is tokenized and accepted, then the
         * mask is timed a few times */
        for (size_t k = 0; k < sizeof PROBES / sizeof PROBES[0]; k++) {
            if (PROBES[k].schema != (int)s) continue;
            gemma4c_constraint_reset(c);
            int32_t *ids = NULL;
            int n = gemma4c_tokenizer_encode(t, PROBES[k].prefix, strlen(PROBES[k].prefix), 0, 0, &ids, err, sizeof err);
            int ok = n >= 0;
            for (int i = 0; ok && i < n; i++) ok = gemma4c_constraint_accept(c, ids[i]) == 0;
            free(ids);
            if (!ok) { printf("  %-24s (prefix refused)\n", PROBES[k].prefix); continue; }
            double pw = 1e9, pt = 0;
            int na = 0;
            for (int rep = 0; rep < 5; rep++) {
                double a = now();
                na = gemma4c_constraint_apply(c, logits, nv);
                double d = now() - a;
                pt += d;
                if (d < pw) pw = d;
            }
            printf("  state %-24s %8.3f ms mean, %8.3f ms least (%d allowed)\n", PROBES[k].prefix, pt / 5 * 1e3,
                   pw * 1e3, na);
        }
        gemma4c_constraint_free(c);
    }
    free(logits);
    gemma4c_token_index_free(x);
    gemma4c_tokenizer_free(t);
    return 0;
}
