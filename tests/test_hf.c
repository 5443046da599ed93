/* Hugging Face folders, safetensors validation, GGUF writer, convert and
 * quantize against the golden gemma4-ref files. */
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#include "format/gguf.h"
#include "format/gguf_write.h"
#include "format/hf.h"
#include "format/safetensors.h"
#include "model/quantize.h"
#include "tensor/types.h"

static char tmpdir[256];

/* --- comparison helpers -------------------------------------------------- */

static int kv_equal(const g4_gguf_kv *a, const g4_gguf_kv *b, char *why, size_t n) {
    if (strcmp(a->key, b->key)) { snprintf(why, n, "key %s vs %s", a->key, b->key); return 0; }
    if (a->type != b->type) { snprintf(why, n, "%s: type %d vs %d", a->key, a->type, b->type); return 0; }
    switch (a->type) {
    case GGUF_STRING:
        if (a->str.len != b->str.len || memcmp(a->str.ptr, b->str.ptr, a->str.len)) {
            snprintf(why, n, "%s: string '%.*s' vs '%.*s'", a->key, (int)(a->str.len > 40 ? 40 : a->str.len),
                     a->str.ptr, (int)(b->str.len > 40 ? 40 : b->str.len), b->str.ptr);
            return 0;
        }
        return 1;
    case GGUF_ARRAY:
        if (a->arr_type != b->arr_type || a->arr_n != b->arr_n) {
            snprintf(why, n, "%s: array type/len %d/%llu vs %d/%llu", a->key, a->arr_type,
                     (unsigned long long)a->arr_n, b->arr_type, (unsigned long long)b->arr_n);
            return 0;
        }
        if (a->arr_type == GGUF_STRING) {
            g4_gguf_str_iter ia, ib;
            g4_gguf_str sa, sb;
            g4_gguf_str_iter_init(&ia, a);
            g4_gguf_str_iter_init(&ib, b);
            for (uint64_t i = 0; i < a->arr_n; i++)
                if (g4_gguf_str_iter_next(&ia, &sa) != 1 || g4_gguf_str_iter_next(&ib, &sb) != 1 ||
                    sa.len != sb.len || memcmp(sa.ptr, sb.ptr, sa.len)) {
                    snprintf(why, n, "%s[%llu] differs", a->key, (unsigned long long)i);
                    return 0;
                }
        } else if (memcmp(a->arr_data, b->arr_data, a->arr_n * g4_gguf_vtype_size(a->arr_type))) {
            snprintf(why, n, "%s: array data differs", a->key);
            return 0;
        }
        return 1;
    case GGUF_FLOAT32:
        if ((float)a->v.f != (float)b->v.f) { snprintf(why, n, "%s: %g vs %g", a->key, a->v.f, b->v.f); return 0; }
        return 1;
    case GGUF_BOOL:
        if (a->v.b != b->v.b) { snprintf(why, n, "%s: bool differs", a->key); return 0; }
        return 1;
    default:
        if (a->v.u != b->v.u) {
            snprintf(why, n, "%s: %llu vs %llu", a->key, (unsigned long long)a->v.u, (unsigned long long)b->v.u);
            return 0;
        }
        return 1;
    }
}

/* Same metadata (keys, order, types, values). */
static int same_metadata(const g4_gguf_file *a, const g4_gguf_file *b) {
    char why[256];
    if (a->n_kv != b->n_kv) {
        fprintf(stderr, "  n_kv %llu vs %llu\n", (unsigned long long)a->n_kv, (unsigned long long)b->n_kv);
        for (uint64_t i = 0; i < a->n_kv || i < b->n_kv; i++)
            fprintf(stderr, "    %s | %s\n", i < a->n_kv ? a->kv[i].key : "-", i < b->n_kv ? b->kv[i].key : "-");
        return 0;
    }
    for (uint64_t i = 0; i < a->n_kv; i++)
        if (!kv_equal(&a->kv[i], &b->kv[i], why, sizeof why)) {
            fprintf(stderr, "  kv %llu: %s\n", (unsigned long long)i, why);
            return 0;
        }
    return 1;
}

/* Same tensor set (any order): names, shapes, and types+bytes when
 * check_data; with check_data == 2, a holds the bfloat16-rounded values of
 * b's F32 tensors. */
static int same_tensors(const g4_gguf_file *a, const g4_gguf_file *b, int check_data) {
    if (a->n_tensors != b->n_tensors) {
        fprintf(stderr, "  n_tensors %llu vs %llu\n", (unsigned long long)a->n_tensors,
                (unsigned long long)b->n_tensors);
        return 0;
    }
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const g4_gguf_tensor *x = &a->tensors[i], *y = g4_gguf_find_tensor(b, x->name);
        if (!y) { fprintf(stderr, "  tensor %s missing\n", x->name); return 0; }
        if (x->n_dims != y->n_dims || memcmp(x->ne, y->ne, sizeof x->ne)) {
            fprintf(stderr, "  tensor %s: shape differs\n", x->name);
            return 0;
        }
        if (check_data == 2 && y->type == G4_F32 && strcmp(x->name, "rope_freqs.weight")) {
            /* a is the bfloat16 folder, b the F32 model: every value of a is
             * b rounded to bfloat16 (BF16 as stored, or widened to F32) */
            int64_t n = x->ne[0] * x->ne[1] * x->ne[2] * x->ne[3];
            const float *fy = y->data;
            for (int64_t k = 0; k < n; k++) {
                uint16_t want = g4_fp32_to_bf16(fy[k]), got;
                if (x->type == G4_BF16) memcpy(&got, (const uint16_t *)x->data + k, 2);
                else got = g4_fp32_to_bf16(((const float *)x->data)[k]);
                if (x->type == G4_F32 && g4_bf16_to_fp32(want) != ((const float *)x->data)[k]) got = (uint16_t)~want;
                if (got != want) {
                    fprintf(stderr, "  tensor %s[%lld]: not the bfloat16 rounding\n", x->name, (long long)k);
                    return 0;
                }
            }
            continue;
        }
        if (check_data && (x->type != y->type || x->nbytes != y->nbytes || memcmp(x->data, y->data, x->nbytes))) {
            fprintf(stderr, "  tensor %s: type %s vs %s or bytes differ\n", x->name, g4_type_name(x->type),
                    g4_type_name(y->type));
            return 0;
        }
    }
    return 1;
}

/* Absolute path of a golden file (tests symlink to them from tmpdir, so a
 * relative G4_SHARED would make dangling links). */
static const char *ref(const char *name) {
    static char buf[4][4096];
    static int k;
    char rel[256];
    snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s", name);
    char *b = buf[k++ & 3];
    if (!realpath(shared_path(rel), b)) snprintf(b, sizeof buf[0], "%s", shared_path(rel));
    return b;
}

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

/* --- g4_hf_open vs golden GGUF ---------------------------------------------- */

static void check_hf_vs_gguf(const char *hfname, const char *ggname, const char *model_name, int mode) {
    g4_error err = {0};
    g4_hf_opts o = { model_name, false };
    g4_gguf_file *h = g4_hf_open_ex(ref(hfname), &o, &err);
    CHECKF(h != NULL, "%s", err.msg);
    g4_gguf_file *g = g4_gguf_open(ref(ggname), &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (h && g) {
        if (mode == 2) {
            /* BF16 folder: file_type is BF16; everything else equal */
            const g4_gguf_kv *ft = g4_gguf_find_kv(h, "general.file_type");
            CHECK(ft && ft->v.u == 32);
            g4_gguf_set_u32(h, "general.file_type", 0);
        }
        CHECK(same_metadata(h, g));
        CHECK(same_tensors(h, g, mode == 2 ? 2 : 1));
        /* converter order: rope_freqs first */
        CHECK(!strcmp(h->tensors[0].name, "rope_freqs.weight"));
        if (mode == 2)
            for (uint64_t i = 0; i < h->n_tensors; i++) {
                const g4_gguf_tensor *t = &h->tensors[i];
                CHECKF(t->type == (g4_hf_force_f32(t->name, t->n_dims) ? G4_F32 : G4_BF16), "%s", t->name);
            }
    }
    g4_gguf_close(h);
    g4_gguf_close(g);
}

TEST(hf_open_e) { check_hf_vs_gguf("gemma4-e.hf", "gemma4-e.gguf", "tiny-gemma4-e-style", 1); }
TEST(hf_open_dense_sharded) { check_hf_vs_gguf("gemma4-dense.hf", "gemma4-dense.gguf", "tiny-gemma4-dense-style", 1); }
TEST(hf_open_moe) { check_hf_vs_gguf("gemma4-moe.hf", "gemma4-moe.gguf", "tiny-gemma4-moe-style", 1); }
TEST(hf_open_bf16) { check_hf_vs_gguf("gemma4-e.bf16.hf", "gemma4-e.gguf", "tiny-gemma4-e-style", 2); }

TEST(hf_default_name) {
    g4_error err = {0};
    g4_gguf_file *h = g4_hf_open(ref("gemma4-e.hf"), &err);
    CHECKF(h != NULL, "%s", err.msg);
    char *name = NULL;
    CHECK(h && g4_gguf_get_str(h, "general.name", &name, &err) == 0 && name && !strcmp(name, "Gemma4 E.Hf"));
    free(name);
    g4_gguf_close(h);
}


/* --- convert ---------------------------------------------------------------- */

static int files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = th_read_file(a, &na), *y = th_read_file(b, &nb);
    int eq = x && y && na == nb && !memcmp(x, y, na);
    if (x && y && !eq) {
        size_t i = 0;
        while (i < na && i < nb && x[i] == y[i]) i++;
        fprintf(stderr, "  %s vs %s: sizes %zu/%zu, first difference at byte %zu\n", a, b, na, nb, i);
    }
    free(x);
    free(y);
    return eq;
}

/* Rewrite `golden` with its tensors in the order of `like` (the converter's
 * order) so the two files can be compared byte for byte. */
static int reorder_like(const char *golden, const g4_gguf_file *like, const char *outp) {
    g4_error err = {0};
    g4_gguf_file *g = g4_gguf_open(golden, &err);
    if (!g || g->n_tensors != like->n_tensors) { g4_gguf_close(g); return -1; }
    g4_gguf_tensor *t = malloc(g->n_tensors * sizeof *t);
    for (uint64_t i = 0; i < like->n_tensors; i++) {
        const g4_gguf_tensor *x = g4_gguf_find_tensor(g, like->tensors[i].name);
        if (!x) { free(t); g4_gguf_close(g); return -1; }
        t[i] = *x;
    }
    g4_gguf_write_opts o = { .tensors = t, .n_tensors = g->n_tensors, .force = true };
    int rc = g4_gguf_write_ex(g, outp, &o, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    free(t);
    g4_gguf_close(g);
    return rc;
}

static void check_convert_f32(const char *hfname, const char *ggname, const char *model_name) {
    g4_error err = {0};
    char out[600];
    snprintf(out, sizeof out, "%s", tmp(ggname));
    g4_conv_opts o = { 2, true, NULL, NULL };
    int rc = g4_convert_hf(ref(hfname), out, G4_FTYPE_F32, model_name, &o, &err);
    CHECKF(rc == 0, "%s", err.msg);
    g4_gguf_file *a = g4_gguf_open(out, &err), *g = g4_gguf_open(ref(ggname), &err);
    CHECKF(a && g, "%s", err.msg);
    if (a && g) {
        CHECK(same_metadata(a, g));
        CHECK(same_tensors(a, g, 1));
        char re[700];
        snprintf(re, sizeof re, "%s.reordered", out);
        CHECK(reorder_like(ref(ggname), a, re) == 0);
        CHECK(files_equal(out, re));
    }
    g4_gguf_close(a);
    g4_gguf_close(g);
}

TEST(convert_e_f32) { check_convert_f32("gemma4-e.hf", "gemma4-e.gguf", "tiny-gemma4-e-style"); }
TEST(convert_dense_f32) { check_convert_f32("gemma4-dense.hf", "gemma4-dense.gguf", "tiny-gemma4-dense-style"); }
TEST(convert_moe_f32) { check_convert_f32("gemma4-moe.hf", "gemma4-moe.gguf", "tiny-gemma4-moe-style"); }

/* BF16 folder with --type BF16: matrices BF16 (bytes as stored), forced-F32
 * tensors widened exactly; F16 output of the F32 folder rounds like numpy. */
TEST(convert_bf16) {
    g4_error err = {0};
    g4_conv_opts o = { 1, true, NULL, NULL };
    CHECKF(g4_convert_hf(ref("gemma4-e.bf16.hf"), tmp("bf16.gguf"), G4_FTYPE_BF16, NULL, &o, &err) == 0, "%s", err.msg);
    g4_gguf_file *a = g4_gguf_open(tmp("bf16.gguf"), &err);
    g4_gguf_file *h = g4_hf_open(ref("gemma4-e.bf16.hf"), &err);
    CHECKF(a && h, "%s", err.msg);
    if (a && h) {
        uint32_t ft = 0;
        CHECK(g4_gguf_get_u32(a, "general.file_type", &ft, &err) == 0 && ft == 32);
        CHECK(same_tensors(a, h, 1));
        const g4_gguf_tensor *p = g4_gguf_find_tensor(a, "per_layer_model_proj.weight");
        CHECK(p && p->type == G4_BF16);
    }
    g4_gguf_close(a);
    g4_gguf_close(h);
    /* F16 from F32: every matrix F16, values round-trip within fp16 precision */
    CHECKF(g4_convert_hf(ref("gemma4-e.hf"), tmp("f16.gguf"), G4_FTYPE_F16, NULL, &o, &err) == 0, "%s", err.msg);
    a = g4_gguf_open(tmp("f16.gguf"), &err);
    g4_gguf_file *g = g4_gguf_open(ref("gemma4-e.gguf"), &err);
    CHECK(a && g);
    if (a && g) {
        const g4_gguf_tensor *x = g4_gguf_find_tensor(a, "blk.0.attn_q.weight"), *y = g4_gguf_find_tensor(g, "blk.0.attn_q.weight");
        CHECK(x && y && x->type == G4_F16 && y->type == G4_F32);
        if (x && y && x->type == G4_F16) {
            const uint16_t *hx = x->data;
            const float *fy = y->data;
            int bad = 0;
            for (int64_t i = 0; i < y->ne[0] * y->ne[1]; i++)
                if (hx[i] != g4_fp32_to_fp16(fy[i])) bad++;
            CHECK(bad == 0);
        }
    }
    g4_gguf_close(a);
    g4_gguf_close(g);
}

/* Refuses to overwrite without force; leaves no temporary file behind. */
TEST(convert_no_overwrite) {
    g4_error err = {0};
    const char *p = tmp("exists.gguf");
    FILE *fp = fopen(p, "w");
    fputs("keep", fp);
    fclose(fp);
    g4_conv_opts o = { 1, false, NULL, NULL };
    CHECK(g4_convert_hf(ref("gemma4-e.hf"), p, G4_FTYPE_F32, NULL, &o, &err) != 0);
    CHECK(strstr(err.msg, "already exists") != NULL);
    size_t n = 0;
    char *c = th_read_file(p, &n);
    CHECK(c && n == 4 && !memcmp(c, "keep", 4));
    free(c);
    /* a failing conversion (bad folder) leaves neither the file nor a temp */
    CHECK(g4_convert_hf("/nonexistent-folder", tmp("never.gguf"), G4_FTYPE_F32, NULL, &o, &err) != 0);
    CHECK(access(tmp("never.gguf"), F_OK) != 0);
    /* unwritable destination: clear error, nothing created */
    CHECK(g4_convert_hf(ref("gemma4-e.hf"), "/nonexistent-dir/x.gguf", G4_FTYPE_F32, NULL, &o, &err) != 0);
    CHECK(strstr(err.msg, "/nonexistent-dir/x.gguf") != NULL);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp-", tmpdir);
    CHECK(system(cmd) != 0);
}

/* --- quantize ----------------------------------------------------------------- */

/* Type plan of every shipped quantized file equals llama-quantize's choice. */
static void check_plan(const char *file, const char *ftname) {
    g4_error err = {0};
    g4_gguf_file *g = g4_gguf_open(ref(file), &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (!g) return;
    int ft = g4_ftype_from_name(ftname);
    CHECK(ft >= 0);
    int *types = malloc(g->n_tensors * sizeof *types);
    CHECK(g4_quant_plan(g, ft, types, &err) == 0);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        CHECKF(types[i] == g->tensors[i].type, "%s %s: planned %s, shipped %s", file, g->tensors[i].name,
               g4_type_name(types[i]), g4_type_name(g->tensors[i].type));
    free(types);
    g4_gguf_close(g);
}

TEST(quant_plan_matches_shipped) {
    static const char *const KQ[] = { "Q4_K_M", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K",
                                      "Q3_K_M", "Q5_K_M", "IQ4_NL", "IQ4_XS" };
    char f[128];
    for (size_t i = 0; i < sizeof KQ / sizeof *KQ; i++) {
        snprintf(f, sizeof f, "gemma4-kq.%s.gguf", KQ[i]);
        check_plan(f, KQ[i]);
    }
    static const char *const E[] = { "Q8_0", "Q4_0", "BF16", "F16" };
    for (size_t i = 0; i < 4; i++) {
        snprintf(f, sizeof f, "gemma4-e.%s.gguf", E[i]);
        check_plan(f, E[i]);
    }
}

static void check_quantize_exact(const char *ftname) {
    g4_error err = {0};
    char name[64];
    snprintf(name, sizeof name, "gemma4-e.%s.gguf", ftname);
    g4_conv_opts o = { 4, true, NULL, NULL };
    int rc = g4_quantize_gguf(ref("gemma4-e.gguf"), tmp(name), g4_ftype_from_name(ftname), &o, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (rc) return;
    g4_gguf_file *a = g4_gguf_open(tmp(name), &err), *g = g4_gguf_open(ref(name), &err);
    CHECK(a && g);
    if (a && g) {
        CHECK(same_metadata(a, g));
        CHECK(same_tensors(a, g, 1));
    }
    g4_gguf_close(a);
    g4_gguf_close(g);
    CHECK(files_equal(tmp(name), ref(name)));
}

TEST(quantize_e_q8_0) { check_quantize_exact("Q8_0"); }
TEST(quantize_e_q4_0) { check_quantize_exact("Q4_0"); }
TEST(quantize_e_bf16) { check_quantize_exact("BF16"); }
TEST(quantize_e_f16) { check_quantize_exact("F16"); }

/* --- hostile safetensors and index files ------------------------------------- */

/* Build a safetensors image: header JSON + data_len zero bytes. */
static uint8_t *mk_st(const char *json, size_t data_len, size_t *size) {
    size_t hl = strlen(json);
    *size = 8 + hl + data_len;
    uint8_t *b = calloc(1, *size);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    return b;
}

static void expect_st_error(const char *json, size_t data_len, const char *needle) {
    size_t n;
    uint8_t *b = mk_st(json, data_len, &n);
    g4_error err = {0};
    g4_st_file *f = g4_st_parse(b, n, "bad.safetensors", &err);
    CHECKF(f == NULL, "accepted: %s", json);
    CHECKF(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    CHECKF(strstr(err.msg, "bad.safetensors") != NULL, "message '%s' lacks the file name", err.msg);
    g4_st_close(f);
    free(b);
}

TEST(safetensors_valid_minimal) {
    size_t n;
    uint8_t *b = mk_st("{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                       "\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[24,26]}}",
                       26, &n);
    g4_error err = {0};
    g4_st_file *f = g4_st_parse(b, n, "ok.safetensors", &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (f) {
        CHECK(f->n == 2);
        for (size_t i = 0; i < f->n; i++) {
            if (!strcmp(f->t[i].name, "a")) CHECK(f->t[i].type == G4_F32 && f->t[i].n_dims == 2 && g4_st_nelements(&f->t[i]) == 6);
            else CHECK(f->t[i].type == G4_BF16 && f->t[i].n_dims == 0 && f->t[i].data == b + n - 2);
        }
    }
    g4_st_close(f);
    free(b);
}

TEST(safetensors_corrupt_headers) {
    g4_error err = {0};
    CHECK(g4_st_parse("abc", 3, "bad.safetensors", &err) == NULL && strstr(err.msg, "too short"));
    /* header length beyond the file / beyond the limit */
    uint8_t h[16] = { 200, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
    CHECK(g4_st_parse(h, sizeof h, "bad.safetensors", &err) == NULL && strstr(err.msg, "does not fit"));
    uint8_t h2[16] = { 0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}' };
    CHECK(g4_st_parse(h2, sizeof h2, "bad.safetensors", &err) == NULL && strstr(err.msg, "exceeds"));
    expect_st_error("{\"a\":{\"dtype\":\"F32\"", 0, "invalid");
    expect_st_error("[1,2,3]", 0, "not an object");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "invalid");
    expect_st_error("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, "unsupported dtype");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "outside the data section");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", 16, "need 16");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,4]}}", 16, "begin <= end");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "overlapping");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,16]}}", 16,
                    "overflows");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807],\"data_offsets\":[0,16]}}", 16,
                    "shape[0]");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,16]}}", 16, "shape[0]");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dims");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    expect_st_error("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    expect_st_error("{\"a\":7}", 4, "not an object");
}

/* Every truncation of a real file is rejected (or, past the header, caught
 * by the range checks). */
TEST(safetensors_truncations) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", ref("gemma4-e.hf"));
    size_t n = 0;
    char *buf = th_read_file(path, &n);
    CHECK(buf != NULL);
    if (!buf) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (uint8_t)buf[i];
    size_t cuts[] = { 0, 1, 7, 8, 9, 100, 8 + hl / 2, 8 + hl - 1, 8 + hl, 8 + hl + 1, n / 2, n - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        g4_error err = {0};
        char *c = malloc(cuts[i] ? cuts[i] : 1);
        memcpy(c, buf, cuts[i]);
        g4_st_file *f = g4_st_parse(c, cuts[i], "cut.safetensors", &err);
        CHECKF(f == NULL, "truncation at %zu accepted", cuts[i]);
        CHECK(err.msg[0] != 0);
        g4_st_close(f);
        free(c);
    }
    g4_error err = {0};
    g4_st_file *f = g4_st_parse(buf, n, "whole.safetensors", &err);
    CHECKF(f != NULL, "%s", err.msg);
    g4_st_close(f);
    free(buf);
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (fp) { fputs(text, fp); fclose(fp); }
}

/* A folder with the dense model's two shards (symlinked) and our index. */
static const char *mk_sharded(const char *sub, const char *index) {
    static char d[4200];
    snprintf(d, sizeof d, "%s/%s", tmpdir, sub);
    mkdir(d, 0755);
    char a[8400], b[8400];
    for (int i = 1; i <= 2; i++) {
        snprintf(a, sizeof a, "%s/model-0000%d-of-00002.safetensors", ref("gemma4-dense.hf"), i);
        snprintf(b, sizeof b, "%s/model-0000%d-of-00002.safetensors", d, i);
        if (symlink(a, b)) {}
    }
    snprintf(b, sizeof b, "%s/model.safetensors.index.json", d);
    write_text(b, index);
    return d;
}

static void expect_index_error(const char *sub, const char *index, const char *needle) {
    g4_error err = {0};
    g4_st_set *s = g4_st_open_dir(mk_sharded(sub, index), &err);
    CHECKF(s == NULL, "index accepted: %s", index);
    CHECKF(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    g4_st_set_close(s);
}

TEST(safetensors_bad_index) {
    char idxp[4200];
    snprintf(idxp, sizeof idxp, "%s/model.safetensors.index.json", ref("gemma4-dense.hf"));
    char *good = th_read_file(idxp, NULL);
    CHECK(good != NULL);
    if (!good) return;
    g4_error err = {0};
    g4_st_set *s = g4_st_open_dir(mk_sharded("idx_ok", good), &err);
    CHECKF(s != NULL, "%s", err.msg);
    g4_st_set_close(s);
    expect_index_error("idx_json", "{\"weight_map\": {", "invalid JSON");
    expect_index_error("idx_nomap", "{\"metadata\": {}}", "weight_map");
    expect_index_error("idx_missing_shard",
                       "{\"weight_map\": {\"model.language_model.norm.weight\": \"model-00009-of-00009.safetensors\"}}",
                       "model-00009-of-00009.safetensors");
    expect_index_error("idx_path", "{\"weight_map\": {\"x\": \"../../etc/passwd\"}}", "plain file name");
    /* a tensor of shard 1 attributed to shard 2 */
    char *wrong = strdup(good);
    char *p = strstr(wrong, "\"model.language_model.embed_tokens.weight\": \"model-00001");
    if (p) { p = strstr(p, "00001-of"); p[4] = '2'; }
    expect_index_error("idx_wrong_shard", wrong, "stored in");
    free(wrong);
    /* an indexed name that is not stored */
    char *extra = malloc(strlen(good) + 200);
    const char *wm = strstr(good, "\"weight_map\": {");
    if (wm) {
        size_t k = (size_t)(wm - good) + strlen("\"weight_map\": {");
        memcpy(extra, good, k);
        strcpy(extra + k, "\"ghost.weight\": \"model-00001-of-00002.safetensors\",");
        strcat(extra, good + k);
        expect_index_error("idx_ghost", extra, "ghost.weight");
    }
    free(extra);
    /* a stored tensor missing from the index */
    char *miss = strdup(good);
    p = strstr(miss, "    \"model.language_model.layers.0.input_layernorm.weight\"");
    if (p) { char *e = strchr(p, '\n'); memmove(p, e + 1, strlen(e + 1) + 1); }
    expect_index_error("idx_unlisted", miss, "missing from weight_map");
    free(miss);
    free(good);
}

/* config.json problems name the file and the field. */
TEST(hf_bad_config) {
    char d[4200], a[8400], b[8400];
    snprintf(d, sizeof d, "%s/badcfg", tmpdir);
    mkdir(d, 0755);
    static const char *const FILES[] = { "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                         "generation_config.json" };
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", ref("gemma4-e.hf"), FILES[i]);
        snprintf(b, sizeof b, "%s/%s", d, FILES[i]);
        if (symlink(a, b)) {}
    }
    snprintf(a, sizeof a, "%s/config.json", ref("gemma4-e.hf"));
    char *cfg = th_read_file(a, NULL);
    CHECK(cfg != NULL);
    if (!cfg) return;
    snprintf(b, sizeof b, "%s/config.json", d);
    g4_error err = {0};
    /* missing hidden_size */
    char *c1 = strdup(cfg), *p = strstr(c1, "\"hidden_size\": 64,");
    if (p) memcpy(p, "\"hidden_sizX\"", 13);
    write_text(b, c1);
    g4_gguf_file *f = g4_hf_open(d, &err);
    CHECK(f == NULL && strstr(err.msg, "config.json") && strstr(err.msg, "text_config.hidden_size"));
    g4_gguf_close(f);
    free(c1);
    /* wrong layer_types length */
    c1 = strdup(cfg);
    p = strstr(c1, "\"num_hidden_layers\": 10");
    if (p) p[22] = '1';
    write_text(b, c1);
    f = g4_hf_open(d, &err);
    CHECK(f == NULL && strstr(err.msg, "layer_types"));
    g4_gguf_close(f);
    free(c1);
    /* not JSON */
    write_text(b, "{ nope");
    f = g4_hf_open(d, &err);
    CHECK(f == NULL && strstr(err.msg, "config.json") && strstr(err.msg, "invalid JSON"));
    g4_gguf_close(f);
    /* missing tokenizer.json */
    write_text(b, cfg);
    snprintf(a, sizeof a, "%s/tokenizer.json", d);
    unlink(a);
    f = g4_hf_open(d, &err);
    CHECK(f == NULL && strstr(err.msg, "tokenizer.json"));
    g4_gguf_close(f);
    free(cfg);
}

static int64_t kv_index(const g4_gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++) if (!strcmp(f->kv[i].key, key)) return (int64_t)i;
    return -1;
}

/* generation_config sampling fields, EOS list and chat_template.jinja. */
TEST(hf_sampling_and_template) {
    char d[4200], a[8400], b[8400];
    snprintf(d, sizeof d, "%s/extras", tmpdir);
    mkdir(d, 0755);
    static const char *const FILES[] = { "model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json" };
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", ref("gemma4-e.hf"), FILES[i]);
        snprintf(b, sizeof b, "%s/%s", d, FILES[i]);
        if (symlink(a, b)) {}
    }
    snprintf(b, sizeof b, "%s/generation_config.json", d);
    write_text(b, "{\"bos_token_id\": 2, \"eos_token_id\": [1, 6, 11], \"do_sample\": true, "
                  "\"temperature\": 1.0, \"top_k\": 64, \"top_p\": 0.95}");
    snprintf(b, sizeof b, "%s/chat_template.jinja", d);
    write_text(b, "{{ bos_token }}{% for m in messages %}<|turn>{{ m.role }}\n{{ m.content }}<turn|>\n{% endfor %}");
    g4_error err = {0};
    g4_gguf_file *f = g4_hf_open(d, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (f) {
        int64_t ty = kv_index(f, "general.type"), k = kv_index(f, "general.sampling.top_k"),
                p = kv_index(f, "general.sampling.top_p"), t = kv_index(f, "general.sampling.temp"),
                nm = kv_index(f, "general.name");
        CHECK(ty >= 0 && k == ty + 1 && p == k + 1 && t == p + 1 && nm == t + 1);
        if (k >= 0) CHECK(f->kv[k].type == GGUF_INT32 && f->kv[k].v.i == 64);
        float tp = 0;
        CHECK(g4_gguf_get_f32(f, "general.sampling.top_p", &tp, &err) == 0 && tp == 0.95f);
        int64_t ct = kv_index(f, "tokenizer.chat_template"), ae = kv_index(f, "tokenizer.ggml.add_eos_token"),
                sp = kv_index(f, "tokenizer.ggml.add_space_prefix");
        CHECK(ct == ae + 1 && sp == ct + 1);
        char *tmpl = NULL;
        CHECK(g4_gguf_get_str(f, "tokenizer.chat_template", &tmpl, &err) == 0 && tmpl && !strncmp(tmpl, "{{ bos_token }}", 15));
        free(tmpl);
        const g4_gguf_kv *eos = g4_gguf_find_kv(f, "tokenizer.ggml.eos_token_ids");
        CHECK(eos && eos->arr_n == 3 && g4_gguf_arr_i64(eos, 1) == 6);
    }
    g4_gguf_close(f);
    /* the converter's layout has no eos_token_ids */
    g4_hf_opts o = { "x", false };
    f = g4_hf_open_ex(d, &o, &err);
    CHECK(f && !g4_gguf_find_kv(f, "tokenizer.ggml.eos_token_ids"));
    g4_gguf_close(f);
}

/* Token types with the real 262k vocabulary (shared/testdata/tokenizer):
 * base-vocabulary tokens stay NORMAL/BYTE, specials are CONTROL. */
TEST(hf_real_vocab_token_types) {
    char d[4200], a[8400], b[8400];
    snprintf(d, sizeof d, "%s/realvocab", tmpdir);
    mkdir(d, 0755);
    snprintf(a, sizeof a, "%s/model.safetensors", ref("gemma4-e.hf"));
    snprintf(b, sizeof b, "%s/model.safetensors", d);
    if (symlink(a, b)) {}
    static const char *const TOK[] = { "tokenizer.json", "tokenizer_config.json" };
    for (int i = 0; i < 2; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "testdata/tokenizer/%s", TOK[i]);
        if (!realpath(shared_path(rel), a)) snprintf(a, sizeof a, "%s", shared_path(rel));
        snprintf(b, sizeof b, "%s/%s", d, TOK[i]);
        if (symlink(a, b)) {}
    }
    snprintf(a, sizeof a, "%s/config.json", ref("gemma4-e.hf"));
    char *cfg = th_read_file(a, NULL);
    CHECK(cfg != NULL);
    if (!cfg) return;
    char *p = strstr(cfg, "\"vocab_size\": 512");
    CHECK(p != NULL);
    if (!p) { free(cfg); return; }
    char *c2 = malloc(strlen(cfg) + 16);
    size_t k = (size_t)(p - cfg);
    memcpy(c2, cfg, k);
    strcpy(c2 + k, "\"vocab_size\": 262144");
    strcat(c2, p + strlen("\"vocab_size\": 512"));
    snprintf(b, sizeof b, "%s/config.json", d);
    write_text(b, c2);
    free(c2);
    free(cfg);
    g4_error err = {0};
    g4_gguf_file *f = g4_hf_open(d, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (f) {
        const g4_gguf_kv *tt = g4_gguf_find_kv(f, "tokenizer.ggml.token_type"), *tk = g4_gguf_find_kv(f, "tokenizer.ggml.tokens"),
                      *mg = g4_gguf_find_kv(f, "tokenizer.ggml.merges");
        CHECK(tt && tk && tt->arr_n == 262144 && tk->arr_n == 262144);
        CHECK(mg && mg->arr_n == 514906);
        if (tt && tt->arr_n == 262144) {
            CHECK(g4_gguf_arr_i64(tt, 0) == 3 && g4_gguf_arr_i64(tt, 1) == 3 && g4_gguf_arr_i64(tt, 2) == 3);
            CHECK(g4_gguf_arr_i64(tt, 107) == 1);   /* "\n" is plain text */
            CHECK(g4_gguf_arr_i64(tt, 238) == 6);   /* <0x00> */
            CHECK(g4_gguf_arr_i64(tt, 9259) == 1);  /* "Hello" */
            CHECK(tk->arr_str[238].len == 6 && !memcmp(tk->arr_str[238].ptr, "<0x00>", 6));
        }
    }
    g4_gguf_close(f);
}

/* K-quant files through the whole quantize path: re-quantizing the Q8_0
 * gemma4-kq file gives every shipped K-quant file's types, metadata and size
 * (the bytes differ: the source here is Q8_0, not the unshipped F32). */
TEST(quantize_kq_kquants_layout) {
    static const char *const T[] = { "Q4_K_M", "Q6_K", "Q5_K_M", "Q3_K_M", "Q2_K" };
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        g4_error err = {0};
        char name[64], shipped[64];
        snprintf(name, sizeof name, "kq.%s.gguf", T[i]);
        snprintf(shipped, sizeof shipped, "gemma4-kq.%s.gguf", T[i]);
        g4_conv_opts o = { 2, true, NULL, NULL };
        int rc = g4_quantize_gguf(ref("gemma4-kq.Q8_0.gguf"), tmp(name), g4_ftype_from_name(T[i]), &o, &err);
        CHECKF(rc == 0, "%s: %s", T[i], err.msg);
        if (rc) continue;
        g4_gguf_file *a = g4_gguf_open(tmp(name), &err), *g = g4_gguf_open(ref(shipped), &err);
        CHECK(a && g);
        if (a && g) {
            CHECK(same_metadata(a, g));
            CHECK(a->n_tensors == g->n_tensors);
            for (uint64_t k = 0; k < a->n_tensors && k < g->n_tensors; k++)
                CHECKF(!strcmp(a->tensors[k].name, g->tensors[k].name) && a->tensors[k].type == g->tensors[k].type &&
                       a->tensors[k].offset == g->tensors[k].offset, "%s %s", T[i], g->tensors[k].name);
            CHECK(a->map_size == g->map_size);
        }
        g4_gguf_close(a);
        g4_gguf_close(g);
    }
}

/* Write a safetensors file from (name, tensor) pairs; extra F32 tensors of
 * shape [r, c] filled with zeros when src is NULL. */
typedef struct wt { char name[160]; const g4_st_tensor *src; int64_t r, c; } wt;

static int write_st(const char *path, const wt *t, size_t n) {
    json_t *h = json_object();
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_object(), *shape = json_array();
        uint64_t nb;
        if (t[i].src) {
            for (int d = 0; d < t[i].src->n_dims; d++) json_array_append_new(shape, json_integer(t[i].src->shape[d]));
            nb = t[i].src->end - t[i].src->begin;
            json_object_set_new(e, "dtype", json_string(t[i].src->type == G4_BF16 ? "BF16" : "F32"));
        } else {
            json_array_append_new(shape, json_integer(t[i].r));
            json_array_append_new(shape, json_integer(t[i].c));
            nb = (uint64_t)t[i].r * (uint64_t)t[i].c * 4;
            json_object_set_new(e, "dtype", json_string("F32"));
        }
        json_object_set_new(e, "shape", shape);
        json_t *o = json_array();
        json_array_append_new(o, json_integer((json_int_t)off));
        json_array_append_new(o, json_integer((json_int_t)(off + nb)));
        json_object_set_new(e, "data_offsets", o);
        json_object_set_new(h, t[i].name, e);
        off += nb;
    }
    char *js = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t hl = strlen(js), pad = (8 - hl % 8) % 8;
    FILE *fp = fopen(path, "wb");
    if (!fp) { free(js); return -1; }
    uint64_t L = hl + pad;
    fwrite(&L, 8, 1, fp);
    fwrite(js, 1, hl, fp);
    for (size_t i = 0; i < pad; i++) fputc(' ', fp);
    free(js);
    for (size_t i = 0; i < n; i++) {
        if (t[i].src) fwrite(t[i].src->data, 1, t[i].src->end - t[i].src->begin, fp);
        else for (int64_t k = 0; k < t[i].r * t[i].c * 4; k++) fputc(0, fp);
    }
    return fclose(fp);
}

/* Vision tensors and unused K/V of KV-shared layers are ignored; a text-only
 * save (prefix "model.", flat config.json) loads the same model. */
TEST(hf_ignored_tensors_and_text_only_layout) {
    g4_error err = {0};
    g4_st_set *s = g4_st_open_dir(ref("gemma4-e.hf"), &err);
    CHECKF(s != NULL, "%s", err.msg);
    if (!s) return;
    g4_gguf_file *g = g4_gguf_open(ref("gemma4-e.gguf"), &err);
    wt *t = calloc(s->n + 4, sizeof *t);
    char d[4200], a[8400], b[8400];
    static const char *const FILES[] = { "tokenizer.json", "tokenizer_config.json", "generation_config.json" };
    for (int mode = 0; mode < 2; mode++) {
        snprintf(d, sizeof d, "%s/layout%d", tmpdir, mode);
        mkdir(d, 0755);
        for (int i = 0; i < 3; i++) {
            snprintf(a, sizeof a, "%s/%s", ref("gemma4-e.hf"), FILES[i]);
            snprintf(b, sizeof b, "%s/%s", d, FILES[i]);
            if (symlink(a, b)) {}
        }
        size_t n = 0;
        for (size_t i = 0; i < s->n; i++, n++) {
            const char *nm = s->all[i]->name;
            if (mode == 1 && !strncmp(nm, "model.language_model.", 21))
                snprintf(t[n].name, sizeof t[n].name, "model.%s", nm + 21);
            else
                snprintf(t[n].name, sizeof t[n].name, "%s", nm);
            t[n].src = s->all[i];
        }
        if (mode == 0) {
            t[n++] = (wt){ "model.vision_tower.encoder.patch.weight", NULL, 2, 2 };
            t[n++] = (wt){ "model.embed_audio.proj.weight", NULL, 2, 2 };
            t[n++] = (wt){ "model.language_model.layers.7.self_attn.k_proj.weight", NULL, 64, 64 };
            t[n++] = (wt){ "model.language_model.layers.9.self_attn.v_proj.weight", NULL, 128, 64 };
        }
        snprintf(b, sizeof b, "%s/model.safetensors", d);
        CHECK(write_st(b, t, n) == 0);
        snprintf(a, sizeof a, "%s/config.json", ref("gemma4-e.hf"));
        snprintf(b, sizeof b, "%s/config.json", d);
        if (mode == 0) {
            if (symlink(a, b)) {}
        } else {
            json_t *root = json_load_file(a, 0, NULL);
            json_t *tc = json_object_get(root, "text_config");
            CHECK(tc != NULL);
            if (tc) json_dump_file(tc, b, JSON_INDENT(2));
            json_decref(root);
        }
        g4_hf_opts o = { "tiny-gemma4-e-style", false };
        g4_gguf_file *h = g4_hf_open_ex(d, &o, &err);
        CHECKF(h != NULL, "mode %d: %s", mode, err.msg);
        if (h && g) {
            CHECK(same_metadata(h, g));
            CHECK(same_tensors(h, g, 1));
        }
        g4_gguf_close(h);
    }
    /* an unknown text-model tensor is an error naming it */
    snprintf(d, sizeof d, "%s/layout_unknown", tmpdir);
    mkdir(d, 0755);
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "%s/%s", ref("gemma4-e.hf"), FILES[i]);
        snprintf(b, sizeof b, "%s/%s", d, FILES[i]);
        if (symlink(a, b)) {}
    }
    snprintf(a, sizeof a, "%s/config.json", ref("gemma4-e.hf"));
    snprintf(b, sizeof b, "%s/config.json", d);
    if (symlink(a, b)) {}
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++, n++) {
        snprintf(t[n].name, sizeof t[n].name, "%s", s->all[i]->name);
        t[n].src = s->all[i];
    }
    t[n++] = (wt){ "model.language_model.layers.0.self_attn.mystery.weight", NULL, 2, 2 };
    snprintf(b, sizeof b, "%s/model.safetensors", d);
    CHECK(write_st(b, t, n) == 0);
    g4_gguf_file *h = g4_hf_open(d, &err);
    CHECK(h == NULL && strstr(err.msg, "mystery"));
    g4_gguf_close(h);
    free(t);
    g4_gguf_close(g);
    g4_st_set_close(s);
}

typedef struct prog_rec { int calls, finals; uint64_t done, total; } prog_rec;
static void rec_progress(void *ud, uint64_t done, uint64_t total, double el, bool final) {
    prog_rec *r = ud;
    (void)el;
    r->calls++;
    r->finals += final;
    r->done = done;
    r->total = total;
}

/* Progress reaches the total once, marked final; the count is the tensor data size. */
TEST(convert_progress_callback) {
    g4_error err = {0};
    prog_rec r = {0};
    g4_conv_opts o = { 1, true, rec_progress, &r };
    CHECKF(g4_convert_hf(ref("gemma4-e.hf"), tmp("prog.gguf"), G4_FTYPE_F32, NULL, &o, &err) == 0, "%s", err.msg);
    g4_gguf_file *a = g4_gguf_open(tmp("prog.gguf"), &err);
    CHECK(a != NULL);
    CHECK(r.finals == 1 && r.calls >= 1 && r.done == r.total);
    if (a) CHECK(r.total == a->map_size - a->data_offset);
    g4_gguf_close(a);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/g4test_hf_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    RUN(hf_open_e);
    RUN(hf_open_dense_sharded);
    RUN(hf_open_moe);
    RUN(hf_open_bf16);
    RUN(hf_default_name);
    RUN(safetensors_valid_minimal);
    RUN(safetensors_corrupt_headers);
    RUN(safetensors_truncations);
    RUN(safetensors_bad_index);
    RUN(hf_bad_config);
    RUN(hf_sampling_and_template);
    RUN(hf_real_vocab_token_types);
    RUN(hf_ignored_tensors_and_text_only_layout);
    RUN(convert_e_f32);
    RUN(convert_dense_f32);
    RUN(convert_moe_f32);
    RUN(convert_bf16);
    RUN(convert_no_overwrite);
    RUN(convert_progress_callback);
    RUN(quant_plan_matches_shipped);
    RUN(quantize_e_q8_0);
    RUN(quantize_e_q4_0);
    RUN(quantize_e_bf16);
    RUN(quantize_e_f16);
    RUN(quantize_kq_kquants_layout);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) {}
    return test_summary();
}
