/* GGUF reader and model loader against hostile files. Starting from a valid
 * golden model, every test damages one thing (truncation at every byte of the
 * header and into the data, flipped counts, huge dims, unknown types, missing
 * or inconsistent metadata, wrong shapes) and checks for the specific error:
 * never a crash (run under ASan/UBSan in CI), never a silent success. */
#include "harness.h"

#include <stdint.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/gguf.h"
#include "format/mapfile.h"
#include "util/esc.h"
#include "gemma4c.h"

static uint8_t *G;          /* pristine file */
static size_t GN;

/* Offsets of interesting fields, found by walking the valid file. */
typedef struct field_map {
    size_t n_tensors, n_kv;
    size_t kv_key[256], kv_type[256];   /* offset of key length, of value type */
    char kv_name[256][96];
    int nkv;
    size_t t_ndims[512], t_ne0[512], t_type[512], t_off[512];
    char t_name[512][96];
    int nt;
    size_t header_end;
} field_map;
static field_map FM;

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static size_t skip_value(const uint8_t *b, size_t p, uint32_t t) {
    static const size_t sz[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    if (t == 8) return p + 8 + rd64(b + p);
    if (t == 9) {
        uint32_t at = rd32(b + p);
        uint64_t n = rd64(b + p + 4);
        p += 12;
        for (uint64_t i = 0; i < n; i++) p = skip_value(b, p, at);
        return p;
    }
    return p + sz[t];
}

static void map_fields(void) {
    size_t p = 8;
    FM.n_tensors = p; p += 8;
    FM.n_kv = p; p += 8;
    uint64_t nt = rd64(G + FM.n_tensors), nkv = rd64(G + FM.n_kv);
    for (uint64_t i = 0; i < nkv; i++) {
        FM.kv_key[i] = p;
        uint64_t l = rd64(G + p);
        snprintf(FM.kv_name[i], sizeof FM.kv_name[i], "%.*s", (int)l, (const char *)G + p + 8);
        p += 8 + l;
        FM.kv_type[i] = p;
        uint32_t t = rd32(G + p);
        p = skip_value(G, p + 4, t);
    }
    FM.nkv = (int)nkv;
    for (uint64_t i = 0; i < nt; i++) {
        uint64_t l = rd64(G + p);
        snprintf(FM.t_name[i], sizeof FM.t_name[i], "%.*s", (int)l, (const char *)G + p + 8);
        p += 8 + l;
        FM.t_ndims[i] = p;
        uint32_t nd = rd32(G + p);
        p += 4;
        FM.t_ne0[i] = p;
        p += 8 * nd;
        FM.t_type[i] = p;
        p += 4;
        FM.t_off[i] = p;
        p += 8;
    }
    FM.nt = (int)nt;
    FM.header_end = p;
}

static int kv_index(const char *name) {
    for (int i = 0; i < FM.nkv; i++) if (!strcmp(FM.kv_name[i], name)) return i;
    return -1;
}
static int t_index(const char *name) {
    for (int i = 0; i < FM.nt; i++) if (!strcmp(FM.t_name[i], name)) return i;
    return -1;
}

/* Parse a damaged copy; returns 1 if rejected with an error containing `want`. */
static int rejects(const uint8_t *buf, size_t n, const char *want) {
    g4_error e = { { 0 } };
    g4_gguf_file *f = g4_gguf_parse(buf, n, "bad.gguf", &e);
    if (f) { g4_gguf_close(f); return 0; }
    if (want && !strstr(e.msg, want)) {
        fprintf(stderr, "    message \"%s\" lacks \"%s\"\n", e.msg, want);
        return 0;
    }
    return 1;
}

/* Write to a temp file and open through the public API (parse + model load). */
static int model_rejects(const uint8_t *buf, size_t n, const char *want) {
    char path[] = "/tmp/g4test-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    int ok = write(fd, buf, n) == (ssize_t)n;
    close(fd);
    char err[600] = "";
    gemma4c_model *m = ok ? gemma4c_model_open(path, err, sizeof err) : NULL;
    unlink(path);
    if (m) { gemma4c_model_free(m); return 0; }
    if (want && !strstr(err, want)) {
        fprintf(stderr, "    message \"%s\" lacks \"%s\"\n", err, want);
        return 0;
    }
    return ok;
}

static uint8_t *copy(void) {
    uint8_t *b = malloc(GN);
    memcpy(b, G, GN);
    return b;
}

TEST(valid_file_parses) {
    g4_error e;
    g4_gguf_file *f = g4_gguf_parse(G, GN, "ok", &e);
    CHECK(f != NULL);
    if (!f) return;
    CHECK(f->version == 3 && f->n_tensors == (uint64_t)FM.nt && f->n_kv == (uint64_t)FM.nkv);
    uint32_t v = 0;
    CHECK(g4_gguf_get_u32(f, "gemma4.block_count", &v, &e) == 0 && v == 10);
    CHECK(g4_gguf_get_u32(f, "no.such.key", &v, &e) == 1);
    char *s = NULL;
    CHECK(g4_gguf_get_u32(f, "general.architecture", &v, &e) == -1 && strstr(e.msg, "expected an integer"));
    CHECK(g4_gguf_get_str(f, "general.architecture", &s, &e) == 0 && !strcmp(s, "gemma4"));
    free(s);
    const g4_gguf_tensor *t = g4_gguf_find_tensor(f, "blk.0.attn_q.weight");
    CHECK(t && t->ne[0] == 64 && t->ne[1] == 128 && t->nbytes == 64 * 128 * 4);
    g4_gguf_close(f);
}

TEST(truncation_everywhere) {
    /* every prefix of the header, then a sample of prefixes into the data */
    int bad = 0, n = 0;
    for (size_t len = 0; len < FM.header_end + 64; len++, n++)
        if (!rejects(G, len, NULL)) { bad++; if (bad < 4) fprintf(stderr, "    prefix %zu accepted\n", len); }
    for (size_t len = FM.header_end + 64; len < GN; len += 4093, n++)
        if (!rejects(G, len, "outside the file")) bad++;
    printf("  %d truncated files rejected\n", n - bad);
    CHECK(bad == 0);
    CHECK(rejects(G, 10, "truncated file"));
    CHECK(model_rejects(G, GN - 1, "outside the file"));
}

TEST(bad_magic_and_version) {
    uint8_t *b = copy();
    b[0] = 'X';
    CHECK(rejects(b, GN, "not a GGUF file"));
    memcpy(b, G, 8);
    uint32_t v = 1;
    memcpy(b + 4, &v, 4);
    CHECK(rejects(b, GN, "unsupported GGUF version 1"));
    v = 77;
    memcpy(b + 4, &v, 4);
    CHECK(rejects(b, GN, "version 77"));
    free(b);
}

TEST(flipped_counts) {
    uint8_t *b = copy();
    uint64_t big = UINT64_MAX / 3;
    memcpy(b + FM.n_tensors, &big, 8);
    CHECK(rejects(b, GN, "tensor count"));
    memcpy(b, G, GN);
    memcpy(b + FM.n_kv, &big, 8);
    CHECK(rejects(b, GN, "metadata count"));
    /* a plausible but wrong count: runs off into the tensor infos */
    memcpy(b, G, GN);
    uint64_t more = (uint64_t)FM.nkv + 3;
    memcpy(b + FM.n_kv, &more, 8);
    CHECK(rejects(b, GN, NULL));
    /* string length and array length flipped */
    memcpy(b, G, GN);
    memcpy(b + FM.kv_key[0], &big, 8);
    CHECK(rejects(b, GN, "length"));
    memcpy(b, G, GN);
    int tk = kv_index("tokenizer.ggml.tokens");
    CHECK(tk >= 0);
    memcpy(b + FM.kv_type[tk] + 8, &big, 8);  /* array count after u32 vtype + u32 elem type */
    CHECK(rejects(b, GN, "more than the file holds"));
    free(b);
}

TEST(huge_dims_and_types) {
    uint8_t *b = copy();
    int q = t_index("blk.0.attn_q.weight");
    CHECK(q >= 0);
    uint64_t huge = (uint64_t)1 << 41;
    memcpy(b + FM.t_ne0[q], &huge, 8);
    CHECK(rejects(b, GN, "dimension 0"));
    memcpy(b, G, GN);
    uint64_t zero = 0;
    memcpy(b + FM.t_ne0[q] + 8, &zero, 8);
    CHECK(rejects(b, GN, "dimension 1"));
    memcpy(b, G, GN);
    uint64_t big = (uint64_t)1 << 39;   /* each dim allowed, product too big for the file */
    memcpy(b + FM.t_ne0[q], &big, 8);
    memcpy(b + FM.t_ne0[q] + 8, &big, 8);
    CHECK(rejects(b, GN, NULL));
    memcpy(b, G, GN);
    uint32_t nd = 9;
    memcpy(b + FM.t_ndims[q], &nd, 4);
    CHECK(rejects(b, GN, "dimensions"));
    memcpy(b, G, GN);
    uint32_t ty = 99;
    memcpy(b + FM.t_type[q], &ty, 4);
    CHECK(rejects(b, GN, "unknown type id 99"));
    memcpy(b, G, GN);
    ty = 12; /* Q4_K: 64 is not a multiple of 256 */
    memcpy(b + FM.t_type[q], &ty, 4);
    CHECK(rejects(b, GN, "block size"));
    memcpy(b, G, GN);
    uint32_t vt = 99;
    memcpy(b + FM.kv_type[0], &vt, 4);
    CHECK(rejects(b, GN, "unknown value type"));
    memcpy(b, G, GN);
    uint64_t off = 3;   /* misaligned tensor offset */
    memcpy(b + FM.t_off[q], &off, 8);
    CHECK(rejects(b, GN, "alignment"));
    memcpy(b, G, GN);
    off = rd64(G + FM.t_off[q - 1]);  /* overlapping the previous tensor */
    memcpy(b + FM.t_off[q], &off, 8);
    CHECK(rejects(b, GN, "overlap"));
    free(b);
}

/* Rename a key by changing its last character: it is then "missing". */
static void rename_key(uint8_t *b, const char *name) {
    int i = kv_index(name);
    uint64_t l = rd64(G + FM.kv_key[i]);
    b[FM.kv_key[i] + 8 + l - 1] ^= 0x20;
}

TEST(model_level_errors) {
    uint8_t *b = copy();
    CHECK(!model_rejects(b, GN, NULL)); /* sanity: the pristine copy loads */
    rename_key(b, "gemma4.block_count");
    CHECK(model_rejects(b, GN, "required metadata 'gemma4.block_count' is missing"));
    memcpy(b, G, GN);
    rename_key(b, "gemma4.feed_forward_length");
    CHECK(model_rejects(b, GN, "feed_forward_length"));
    memcpy(b, G, GN);
    /* architecture string: "gemma4" -> "gemma5" */
    int a = kv_index("general.architecture");
    b[FM.kv_type[a] + 4 + 8 + 5] = '5';
    CHECK(model_rejects(b, GN, "architecture is 'gemma5'"));
    memcpy(b, G, GN);
    /* head count that does not divide: shapes no longer match */
    int h = kv_index("gemma4.attention.head_count");
    uint32_t heads = 3;
    memcpy(b + FM.kv_type[h] + 4, &heads, 4);
    CHECK(model_rejects(b, GN, "not a multiple"));
    heads = 8;
    memcpy(b + FM.kv_type[h] + 4, &heads, 4);
    CHECK(model_rejects(b, GN, "blk.0.attn_q.weight' has shape"));
    memcpy(b, G, GN);
    /* per-layer array with the wrong length: claim 11 layers */
    int bc = kv_index("gemma4.block_count");
    uint32_t L = 11;
    memcpy(b + FM.kv_type[bc] + 4, &L, 4);
    CHECK(model_rejects(b, GN, "one per layer"));
    memcpy(b, G, GN);
    /* a required tensor missing: rename it */
    int lo = t_index("blk.3.layer_output_scale.weight");
    b[FM.t_ndims[lo] - 1] ^= 0x20;
    CHECK(model_rejects(b, GN, "blk.3.layer_output_scale.weight' is missing"));
    memcpy(b, G, GN);
    /* rope_freqs stored as F16 would overflow 1e30 */
    int rf = t_index("rope_freqs.weight");
    uint32_t f16 = 1;
    memcpy(b + FM.t_type[rf], &f16, 4);
    CHECK(model_rejects(b, GN, "rope_freqs"));
    memcpy(b, G, GN);
    /* unsupported (but valid) weight type */
    int q = t_index("blk.0.attn_q.weight");
    uint32_t i8 = 24; /* a valid ggml type with no kernels */
    memcpy(b + FM.t_type[q], &i8, 4);
    CHECK(model_rejects(b, GN, "cannot compute with"));
    free(b);
}

/* Only printable ASCII: what a message quoting a hostile file may contain. */
static int printable_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) return 0;
    return 1;
}

TEST(escape_helper) {
    char b[G4_ESC_MAX];
    CHECK(!strcmp(g4_esc(b, sizeof b, "blk.0.attn_q.weight", SIZE_MAX), "blk.0.attn_q.weight"));
    CHECK(!strcmp(g4_esc(b, sizeof b, "a\nb\tc\rd\\e", SIZE_MAX), "a\\nb\\tc\\rd\\\\e"));
    CHECK(!strcmp(g4_esc(b, sizeof b, "x\xff\x1b[2Jy\x7f", SIZE_MAX), "x\\xff\\x1b[2Jy\\x7f"));
    /* valid UTF-8 stays; C1 controls, overlongs, surrogates, truncated sequences do not */
    CHECK(!strcmp(g4_esc(b, sizeof b, "\xe2\x96\x81" "caf\xc3\xa9", SIZE_MAX), "\xe2\x96\x81" "caf\xc3\xa9"));
    CHECK(!strcmp(g4_esc(b, sizeof b, "\xc2\x9b", SIZE_MAX), "\\xc2\\x9b"));
    CHECK(!strcmp(g4_esc(b, sizeof b, "\xc0\xaf", SIZE_MAX), "\\xc0\\xaf"));
    CHECK(!strcmp(g4_esc(b, sizeof b, "\xed\xa0\x80", SIZE_MAX), "\\xed\\xa0\\x80"));
    CHECK(!strcmp(g4_esc(b, sizeof b, "ab\xe2\x96", SIZE_MAX), "ab\\xe2\\x96"));
    /* explicit length: embedded NUL shown, bytes past len ignored */
    CHECK(!strcmp(g4_esc(b, sizeof b, "a\0bc", 3), "a\\x00b"));
    CHECK(!strcmp(g4_esc(b, sizeof b, NULL, 0), "(null)"));
    /* long text: cut at a character boundary with "...", never past the buffer */
    char long_s[400];
    memset(long_s, 'k', sizeof long_s - 1);
    long_s[sizeof long_s - 1] = 0;
    g4_esc(b, sizeof b, long_s, SIZE_MAX);
    CHECK(strlen(b) == sizeof b - 1 && !strcmp(b + sizeof b - 4, "..."));
    memset(long_s, 0xff, sizeof long_s - 1);
    g4_esc(b, sizeof b, long_s, SIZE_MAX);
    CHECK(strlen(b) < sizeof b && !strcmp(b + strlen(b) - 3, "...") && printable_ascii(b));
    char small[8];
    CHECK(!strcmp(g4_esc(small, sizeof small, "abcdefgh", SIZE_MAX), "abcd..."));
    CHECK(!strcmp(g4_esc(small, sizeof small, "abcdefg", SIZE_MAX), "abcdefg"));
    /* the printf form */
    CHECK(!strcmp(G4_ESC("\x01"), "\\x01"));
}

/* Parse a damaged copy and return its error message in msg. */
static int parse_msg(const uint8_t *buf, size_t n, char *msg, size_t cap) {
    g4_error e = { { 0 } };
    g4_gguf_file *f = g4_gguf_parse(buf, n, "bad.gguf", &e);
    if (f) { g4_gguf_close(f); return 0; }
    snprintf(msg, cap, "%s", e.msg);
    return 1;
}

TEST(hostile_text_is_escaped) {
    uint8_t *b = copy();
    char msg[600];
    /* a key with 0xff and an escape sequence, and an unknown value type */
    int k = kv_index("gemma4.block_count");
    b[FM.kv_key[k] + 8 + 0] = 0xff;
    b[FM.kv_key[k] + 8 + 6] = 0x1b;
    b[FM.kv_key[k] + 8 + 7] = '\n';
    uint32_t vt = 99;
    memcpy(b + FM.kv_type[k], &vt, 4);
    CHECK(parse_msg(b, GN, msg, sizeof msg));
    CHECKF(printable_ascii(msg) && strstr(msg, "'\\xffemma4\\x1b\\nlock_count'"), "%s", msg);
    memcpy(b, G, GN);
    /* a tensor name with control bytes and invalid UTF-8, and an unknown type */
    int t = t_index("blk.0.attn_q.weight");
    size_t name_at = FM.t_ndims[t] - 19;   /* the 19 name bytes precede n_dims */
    b[name_at + 1] = 0x07;
    b[name_at + 2] = 0xc3;
    b[name_at + 3] = 0x9b;   /* U+00DB is fine ... */
    b[name_at + 4] = 0x80;   /* ... a stray continuation byte is not */
    uint32_t ty = 99;
    memcpy(b + FM.t_type[t], &ty, 4);
    CHECK(parse_msg(b, GN, msg, sizeof msg));
    CHECKF(strstr(msg, "'b\\x07\xc3\x9b\\x80.attn_q.weight'") != NULL, "%s", msg);
    for (const char *p = msg; *p; p++) CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    memcpy(b, G, GN);
    /* through the public API: the architecture string */
    int a = kv_index("general.architecture");
    b[FM.kv_type[a] + 4 + 8 + 3] = 0xff;
    b[FM.kv_type[a] + 4 + 8 + 4] = 0x1b;
    char path[] = "/tmp/g4test-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, b, GN) == (ssize_t)GN);
    if (fd >= 0) close(fd);
    char err[600] = "";
    gemma4c_model *m = gemma4c_model_open(path, err, sizeof err);
    unlink(path);
    CHECK(!m);
    if (m) gemma4c_model_free(m);
    CHECKF(printable_ascii(err) && strstr(err, "architecture is 'gem\\xff\\x1b4'"), "%s", err);
    free(b);
}

TEST(random_header_damage_never_crashes) {
    uint8_t *b = copy();
    uint64_t s = 12345;
    int rejected = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(b, G, FM.header_end);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(s >> 33) % FM.header_end;
            b[pos] ^= (uint8_t)(1u << ((s >> 20) & 7));
        }
        g4_error e;
        g4_gguf_file *f = g4_gguf_parse(b, GN, "fuzz", &e);
        if (f) g4_gguf_close(f);
        else rejected++;
    }
    printf("  3000 damaged headers: %d rejected, the rest parsed safely\n", rejected);
    CHECK(rejected > 0);
    free(b);
}

/* g4_map_file: the mapping reads back the file's bytes whichever way it is
 * made (a file just written sits in small cached pages, so the 2 MB
 * re-cache path runs where THP is on; GEMMA4C_HUGEPAGES=0 maps plainly;
 * small files map plainly), and large mappings are 2 MB-aligned when the
 * kernel has THP. */
static int map_matches(const char *path, const uint8_t *want, size_t n) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    uint8_t *m = g4_map_file(fd, n);
    close(fd);
    if (!m) return 0;
    int ok = memcmp(m, want, n) == 0;
    FILE *t = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char mode[128] = "";
    if (t) { if (!fgets(mode, sizeof mode, t)) mode[0] = 0; fclose(t); }
    const char *env = getenv("GEMMA4C_HUGEPAGES");
    if (n >= (8u << 20) && mode[0] && !strstr(mode, "[never]") && !(env && !strcmp(env, "0")))
        ok &= (uintptr_t)m % (2u << 20) == 0;
    munmap(m, n);
    return ok;
}

TEST(map_file_reads_back) {
    const size_t sizes[3] = { 100, (16u << 20) + 12345, 9u << 20 };
    char path[] = "/tmp/g4_mapXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    for (int k = 0; k < 3; k++) {
        size_t n = sizes[k];
        uint8_t *buf = malloc(n);
        uint64_t st = 1234 + k;
        for (size_t i = 0; i < n; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            buf[i] = (uint8_t)(st >> 56);
        }
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(buf, 1, n, f) == n);
        if (f) fclose(f);
        CHECKF(map_matches(path, buf, n), "size %zu", n);
        CHECKF(map_matches(path, buf, n), "size %zu, second map", n);
        setenv("GEMMA4C_HUGEPAGES", "0", 1);
        CHECKF(map_matches(path, buf, n), "size %zu, GEMMA4C_HUGEPAGES=0", n);
        unsetenv("GEMMA4C_HUGEPAGES");
        free(buf);
    }
    unlink(path);
}

/* String arrays read from a file are walked in place (no index): the walk
 * gives back exactly what was written, in order, also after the header's
 * pages were handed back; a built-in-memory array walks the same way. */
TEST(string_arrays_walk_in_place) {
    static const char *const words[5] = { "a", "", "hello world", "\xe2\x96\x81x", "<0x0A>" };
    g4_gguf_file *w = g4_gguf_new("mem");
    CHECK(w && g4_gguf_set_arr_str(w, "t.words", words, 5) == 0);
    /* the file by hand (g4_gguf_write starts a thread, which qemu-user in
     * tests/sh/arm64.sh cannot): header, then t.words (array of 5
     * strings) and t.n (u32 5), no tensors */
    uint8_t img[256];
    size_t n = 0;
#define PUT(p, l) (memcpy(img + n, (p), (l)), n += (l))
#define PUT64(v) do { uint64_t v_ = (v); PUT(&v_, 8); } while (0)
#define PUT32(v) do { uint32_t v_ = (v); PUT(&v_, 4); } while (0)
    PUT("GGUF", 4); PUT32(3); PUT64(0); PUT64(2);
    PUT64(7); PUT("t.words", 7); PUT32(GGUF_ARRAY); PUT32(GGUF_STRING); PUT64(5);
    for (int i = 0; i < 5; i++) { PUT64(strlen(words[i])); PUT(words[i], strlen(words[i])); }
    PUT64(3); PUT("t.n", 3); PUT32(GGUF_UINT32); PUT32(5);
#undef PUT
#undef PUT64
#undef PUT32
    char path[] = "/tmp/g4strXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (!w || fd < 0) { g4_gguf_close(w); return; }
    CHECK(write(fd, img, n) == (ssize_t)n);
    close(fd);
    g4_error e = {{0}};
    g4_gguf_file *f = g4_gguf_open(path, &e);
    CHECKF(f != NULL, "%s", e.msg);
    for (int pass = 0; f && pass < 3; pass++) {
        const g4_gguf_kv *kv = g4_gguf_find_kv(pass == 2 ? w : f, "t.words");
        CHECK(kv && kv->arr_n == 5 && (pass == 2 ? kv->arr_str != NULL : kv->arr_str == NULL));
        if (!kv) break;
        g4_gguf_str_iter it;
        g4_gguf_str st;
        g4_gguf_str_iter_init(&it, kv);
        for (int i = 0; i < 5; i++)
            CHECKF(g4_gguf_str_iter_next(&it, &st) == 1 && st.len == strlen(words[i]) &&
                   !memcmp(st.ptr, words[i], st.len), "pass %d word %d", pass, i);
        CHECK(g4_gguf_str_iter_next(&it, &st) == 0);
        if (pass == 0) g4_gguf_release_header(f);
    }
    /* a walk over a non-string kv ends at once */
    const g4_gguf_kv *nk = f ? g4_gguf_find_kv(f, "t.n") : NULL;
    if (nk) {
        g4_gguf_str_iter it;
        g4_gguf_str st;
        g4_gguf_str_iter_init(&it, nk);
        CHECK(g4_gguf_str_iter_next(&it, &st) == 0);
    }
    g4_gguf_close(f);
    g4_gguf_close(w);
    unlink(path);
}

int main(void) {
    G = (uint8_t *)th_read_file(shared_path("testdata/gemma4-ref/gemma4-e.gguf"), &GN);
    if (!G) {
        fprintf(stderr, "cannot read gemma4-e.gguf under G4_SHARED\n");
        printf("RESULT 0 1\n");
        return 1;
    }
    map_fields();
    RUN(valid_file_parses);
    RUN(map_file_reads_back);
    RUN(string_arrays_walk_in_place);
    RUN(truncation_everywhere);
    RUN(bad_magic_and_version);
    RUN(flipped_counts);
    RUN(huge_dims_and_types);
    RUN(model_level_errors);
    RUN(escape_helper);
    RUN(hostile_text_is_escaped);
    RUN(random_header_damage_never_crashes);
    free(G);
    return test_summary();
}
