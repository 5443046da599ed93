/* Minimal test harness. Each tests/test_*.c is its own program:
 *
 *   TEST(name) { CHECK(cond); CHECK_NEAR(a, b, tol); ... }
 *   int main(void) { RUN(name); ...; return test_summary(); }
 *
 * A test fails if any CHECK in it fails. test_summary() prints
 * "RESULT <passed> <failed>" which tests/run.sh adds up. Paths to shared test
 * data come from G4_SHARED (default ../shared). */
#ifndef G4_TEST_HARNESS_H
#define G4_TEST_HARNESS_H

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int th_passed, th_failed, th_cur_failed;
static const char *th_cur_name;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "  FAIL %s:%d in %s: %s\n", __FILE__, __LINE__,        \
                    th_cur_name, #cond);                                           \
            th_cur_failed = 1;                                                     \
        }                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                          \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "  FAIL %s:%d in %s: %s: ", __FILE__, __LINE__,        \
                    th_cur_name, #cond);                                           \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            th_cur_failed = 1;                                                     \
        }                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                      \
    do {                                                                           \
        double th_a = (a), th_b = (b);                                             \
        if (!(fabs(th_a - th_b) <= (tol))) {                                       \
            fprintf(stderr, "  FAIL %s:%d in %s: %s=%g vs %s=%g (tol %g)\n",       \
                    __FILE__, __LINE__, th_cur_name, #a, th_a, #b, th_b,           \
                    (double)(tol));                                                \
            th_cur_failed = 1;                                                     \
        }                                                                          \
    } while (0)

#define RUN(name)                                                                  \
    do {                                                                           \
        th_cur_name = #name;                                                       \
        th_cur_failed = 0;                                                         \
        name();                                                                    \
        if (th_cur_failed) { th_failed++; printf("FAIL %s\n", #name); }            \
        else { th_passed++; printf("ok   %s\n", #name); }                          \
        fflush(stdout);                                                            \
    } while (0)

static inline int test_summary(void) {
    printf("RESULT %d %d\n", th_passed, th_failed);
    return th_failed ? 1 : 0;
}

/* Path under the shared folder: "testdata/gemma4-ref/x" -> "../shared/testdata/...". */
static inline const char *shared_path(const char *rel) {
    static char buf[8][1024];
    static int slot;
    const char *root = getenv("G4_SHARED");
    if (!root || !*root) root = "../shared";
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

/* The reference models: every .gguf file and .hf folder in
 * testdata/gemma4-ref, as malloc'd names (the caller frees each) in
 * readdir order; dir gets the folder's path. Returns the count, or -1 if the
 * folder cannot be read. */
static inline int th_ref_models(char *dir, size_t dirlen, char **names, int cap) {
    snprintf(dir, dirlen, "%s", shared_path("testdata/gemma4-ref"));
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        size_t l = strlen(e->d_name);
        if ((l > 5 && !strcmp(e->d_name + l - 5, ".gguf")) || (l > 3 && !strcmp(e->d_name + l - 3, ".hf")))
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    return n;
}

/* Read a whole file; returns malloc'd buffer (NUL-terminated) or NULL. */
static inline char *th_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    if (p) { p[n] = 0; if (len) *len = (size_t)n; }
    return p;
}

/* Whitespace-separated integers of a text file (a golden *.tokens.txt) into
 * ids[cap]; the count, or -1 when the file cannot be read. */
static inline int th_read_ids(const char *path, int32_t *ids, int cap) {
    char *t = th_read_file(path, NULL);
    if (!t) return -1;
    int n = 0;
    char *p = t, *end;
    while (n < cap) {
        long x = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int32_t)x;
        p = end;
    }
    free(t);
    return n;
}

/* A raw little-endian f32 file (golden logits); *n floats, or NULL. */
static inline float *th_read_f32(const char *path, size_t *n) {
    size_t len;
    char *b = th_read_file(path, &len);
    if (!b) return NULL;
    *n = len / 4;
    return (float *)b;
}

/* Max and rms absolute difference of two [rows][V] logit tables and the
 * share of rows whose argmax agrees. A NaN makes max NaN (fails any bound). */
typedef struct th_stat { double max, rms, agree; } th_stat;

static inline th_stat th_compare(const float *a, const float *b, int rows, int V) {
    th_stat s = { 0, 0, 0 };
    double ss = 0;
    for (int r = 0; r < rows; r++) {
        int ia = 0, ib = 0;
        for (int j = 0; j < V; j++) {
            double d = fabs((double)a[(size_t)r * V + j] - b[(size_t)r * V + j]);
            if (!(d <= s.max)) s.max = d;
            ss += d * d;
            if (a[(size_t)r * V + j] > a[(size_t)r * V + ia]) ia = j;
            if (b[(size_t)r * V + j] > b[(size_t)r * V + ib]) ib = j;
        }
        s.agree += ia == ib;
    }
    s.rms = sqrt(ss / ((double)rows * V));
    s.agree /= rows;
    return s;
}

#endif
