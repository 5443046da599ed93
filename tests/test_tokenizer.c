/* Tokenizer unit tests: llama.cpp's Gemma 4 vectors on the real vocabulary,
 * BPE mechanics on hand-made vocabularies, special-token policy, byte
 * fallback and round trips on hostile bytes, streaming detokenizer, GGUF and
 * tokenizer.json loaders (including broken files), and a linear-time check.
 * The big comparison against an independent implementation is
 * tests/sh/tokenizer_js.sh. */
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "format/gguf.h"
#include "harness.h"
#include "text/tokenizer.h"

static g4_tokenizer *g_real;   /* shared tokenizer.json (Gemma 3 file, Gemma 4 pieces) */
static g4_tokenizer *g_tiny_gguf, *g_tiny_hf;

static int encode_eq(const g4_tokenizer *t, const char *s, bool bos, bool special,
                     const int32_t *want, size_t n) {
    g4_tokens ids = {0};
    g4_error err = {{0}};
    int ok = g4_tok_encode(t, s, strlen(s), bos, special, &ids, &err) == 0 && ids.n == n &&
             (n == 0 || memcmp(ids.ids, want, n * sizeof *want) == 0);
    if (!ok) {
        fprintf(stderr, "    \"%s\" ->", s);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.ids[i]);
        fprintf(stderr, " (want");
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, ") %s\n", err.msg);
    }
    g4_tokens_free(&ids);
    return ok;
}
#define ENC(t, s, bos, sp, ...)                                                        \
    do {                                                                               \
        const int32_t w_[] = { __VA_ARGS__ };                                          \
        CHECKF(encode_eq(t, s, bos, sp, w_, sizeof w_ / sizeof *w_), "%s", #s);        \
    } while (0)

static int roundtrip(const g4_tokenizer *t, const char *s, size_t n) {
    g4_tokens ids = {0};
    g4_error err = {{0}};
    char *back = NULL;
    size_t bl = 0;
    int ok = g4_tok_encode(t, s, n, false, false, &ids, &err) == 0 &&
             g4_tok_decode(t, ids.ids, ids.n, false, &back, &bl, &err) == 0 && bl == n &&
             memcmp(back, s, n) == 0;
    free(back);
    g4_tokens_free(&ids);
    return ok;
}

/* --- real vocabulary ----------------------------------------------------- */

TEST(llama_cpp_vectors) {
    if (!g_real) { CHECK(!"shared tokenizer.json missing"); return; }
    /* gemma4-text.md §4.2, from llama.cpp's ggml-vocab-gemma-4 test set */
    ENC(g_real, "Hello world", false, false, 9259, 1902);
    ENC(g_real, " Hello world", false, false, 26352, 1902);
    ENC(g_real, "Hello, world!", false, false, 9259, 236764, 1902, 236888);
    ENC(g_real, "  Hello", false, false, 138, 9259);
    ENC(g_real, "    Hello\n    Hello", false, false, 140, 9259, 107, 140, 9259);
    ENC(g_real, "\t\n", false, false, 255968, 107);
    ENC(g_real, " this is \xf0\x9f\xa6\x99.cpp", false, false, 672, 563, 236743, 478, 397, 404,
        391, 236761, 12362);
    ENC(g_real, "Hello world", true, false, 2, 9259, 1902);
    ENC(g_real, "\n\n", false, false, 108);
    ENC(g_real, "\n\n\n", false, false, 109);
}

TEST(real_vocab_facts) {
    if (!g_real) { CHECK(!"shared tokenizer.json missing"); return; }
    CHECK(g4_tok_n_vocab(g_real) == 262145);   /* + <image_soft_token> added token */
    CHECK(g4_tok_bos(g_real) == 2);
    CHECK(g4_tok_eos(g_real) == 106);   /* Gemma 3's config names <end_of_turn> */
    CHECK(g4_tok_unk(g_real) == 3);
    CHECK(g4_tok_pad(g_real) == 0);
    CHECK(g4_tok_find(g_real, "\xe2\x96\x81", 3) == 236743);
    CHECK(g4_tok_find(g_real, "\t", 1) == 255968);
    CHECK(g4_tok_find(g_real, "\xe2\x96\x81world", 8) == 1902);
    CHECK(g4_tok_find(g_real, "<0x00>", 6) == 238);
    CHECK(g4_tok_find(g_real, "<0xFF>", 6) == 493);
    CHECK(g4_tok_find(g_real, "no such piece!", 14) == -1);
    CHECK(g4_tok_type(g_real, 238) == G4_TOK_BYTE);
    CHECK(g4_tok_type(g_real, 2) == G4_TOK_CONTROL);
    CHECK(g4_tok_type(g_real, 9259) == G4_TOK_NORMAL);
    CHECK(g4_tok_type(g_real, -1) == 0 && g4_tok_type(g_real, 1 << 30) == 0);
    CHECK(g4_tok_is_eog(g_real, 1) && g4_tok_is_eog(g_real, 106));
    CHECK(!g4_tok_is_eog(g_real, 212));   /* </s> is text */
    CHECK(!g4_tok_is_eog(g_real, 9259) && !g4_tok_is_eog(g_real, -5));
}

TEST(special_policy_real) {
    if (!g_real) { CHECK(!"shared tokenizer.json missing"); return; }
    /* special=true added tokens: only with parse_special */
    ENC(g_real, "<start_of_turn>", false, true, 105);
    g4_tokens ids = {0};
    g4_error err = {{0}};
    CHECK(g4_tok_encode(g_real, "<start_of_turn>user", 19, false, false, &ids, &err) == 0);
    for (size_t i = 0; i < ids.n; i++) CHECK(ids.ids[i] != 105);
    CHECK(ids.n > 2);
    g4_tokens_free(&ids);
    ENC(g_real, "<bos>", false, true, 2);
    /* special=false added tokens (HF splits them out of any text) */
    ENC(g_real, "<b>", false, false, 200);
    /* leftmost-longest: a 40-newline run is 31 + 9 */
    ENC(g_real, "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
        false, false, 137, 115);
}

TEST(byte_fallback_roundtrip) {
    if (!g_real) { CHECK(!"shared tokenizer.json missing"); return; }
    /* invalid UTF-8 of every kind goes out as <0xHH> and comes back exactly */
    const char *cases[] = { "\x80", "\xff\xfe", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                            "a\xe2\x96", "\xf0\x9f\xa6", "ok\x00zero", "\xe2\x96\x80 x" };
    size_t lens[] = { 1, 2, 2, 3, 4, 3, 3, 7, 5 };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECKF(roundtrip(g_real, cases[i], lens[i]), "case %zu", i);
    ENC(g_real, "\x80", false, false, 238 + 0x80);
    /* random bytes */
    uint32_t s = 12345;
    char buf[512];
    int bad = 0;
    for (int it = 0; it < 300; it++) {
        size_t n = (size_t)(it % 200) + 1;
        for (size_t k = 0; k < n; k++) {
            s = s * 1103515245u + 12345u;
            uint8_t b = (uint8_t)(s >> 16);
            buf[k] = (it % 3 == 0) ? (char)(b | 0x80) : (it % 3 == 1) ? (char)(b & 0x7f) : (char)b;
            if (buf[k] == (char)0xe2 && k + 2 < n) { buf[k + 1] = (char)0x96; buf[k + 2] = (char)0x81; }
        }
        /* U+2581 decodes to a space: take it out */
        for (size_t k = 0; k + 2 < n; k++)
            if (buf[k] == (char)0xe2 && buf[k + 1] == (char)0x96 && buf[k + 2] == (char)0x81) buf[k] = 'x';
        if (!roundtrip(g_real, buf, n)) bad++;
        /* with special matching on, any bytes still encode */
        g4_tokens ids = {0};
        g4_error err = {{0}};
        if (g4_tok_encode(g_real, buf, n, true, true, &ids, &err) != 0 || ids.n < 2) bad++;
        g4_tokens_free(&ids);
    }
    CHECKF(bad == 0, "%d random byte strings did not round-trip", bad);
}

TEST(decode_pieces) {
    if (!g_real) { CHECK(!"shared tokenizer.json missing"); return; }
    char buf[64];
    CHECK(g4_tok_piece(g_real, 26352, false, buf, sizeof buf) == 6 && !memcmp(buf, " Hello", 6));
    CHECK(g4_tok_piece(g_real, 238 + 'A', false, buf, sizeof buf) == 1 && buf[0] == 'A');
    CHECK(g4_tok_piece(g_real, 2, false, buf, sizeof buf) == 0);
    CHECK(g4_tok_piece(g_real, 2, true, buf, sizeof buf) == 5 && !memcmp(buf, "<bos>", 5));
    CHECK(g4_tok_piece(g_real, 26352, false, buf, 2) == 6);   /* snprintf-style length */
    CHECK(g4_tok_piece(g_real, -1, false, buf, sizeof buf) == -1);
    CHECK(g4_tok_piece(g_real, 262145, false, buf, sizeof buf) == -1);
    int32_t ids[] = { 2, 9259, 1902, 1 };
    char *s = NULL;
    size_t n = 0;
    g4_error err = {{0}};
    CHECK(g4_tok_decode(g_real, ids, 4, false, &s, &n, &err) == 0 && n == 11 && !strcmp(s, "Hello world"));
    free(s);
    CHECK(g4_tok_decode(g_real, ids, 4, true, &s, &n, &err) == 0 && !strcmp(s, "<bos>Hello world<eos>"));
    free(s);
    int32_t bad[] = { 5, 999999 };
    s = NULL;
    CHECK(g4_tok_decode(g_real, bad, 2, false, &s, &n, &err) == -1 && s == NULL);
    CHECK(strstr(err.msg, "999999") != NULL);
}

static int valid_utf8(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        size_t l = u[i] < 0x80 ? 1 : (u[i] >> 5) == 6 ? 2 : (u[i] >> 4) == 14 ? 3 : (u[i] >> 3) == 30 ? 4 : 0;
        if (!l || i + l > n) return 0;
        for (size_t k = 1; k < l; k++) if ((u[i + k] & 0xC0) != 0x80) return 0;
        i += l;
    }
    return 1;
}

TEST(streaming_detokenizer) {
    if (!g_real) { CHECK(!"shared tokenizer.json missing"); return; }
    const char *text = " this is \xf0\x9f\xa6\x99.cpp \xe1\x9e\x97\xe1\x9e\xb6\xe1\x9e\x9f\xe1\x9e\xb6 "
                       "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9 \xe6\x97\xa5\xe6\x9c\xac end";
    g4_tokens ids = {0};
    g4_error err = {{0}};
    CHECK(g4_tok_encode(g_real, text, strlen(text), true, false, &ids, &err) == 0);
    g4_detok *d = g4_detok_new(g_real, false);
    char acc[512];
    size_t an = 0;
    int all_valid = 1, held_llama = 0;
    for (size_t i = 0; i < ids.n; i++) {
        size_t l = 0;
        const char *o = g4_detok_push(d, ids.ids[i], &l, &err);
        CHECK(o != NULL);
        if (!o) break;
        if (!valid_utf8(o, l)) all_valid = 0;
        /* the llama emoji is 4 byte tokens: the first three emit nothing */
        if (ids.ids[i] == 238 + 0xF0 && l == 0) held_llama++;
        if (an + l < sizeof acc) { memcpy(acc + an, o, l); an += l; }
    }
    size_t fl = 1;
    g4_detok_flush(d, &fl);
    CHECK(fl == 0);
    CHECK(all_valid);
    CHECK(held_llama == 1);
    CHECK(an == strlen(text) && !memcmp(acc, text, an));
    /* a stream cut inside a character: flush hands back the held bytes */
    size_t l = 0;
    g4_detok_push(d, 238 + 0xF0, &l, &err);
    CHECK(l == 0);
    g4_detok_push(d, 238 + 0x9F, &l, &err);
    CHECK(l == 0);
    const char *f = g4_detok_flush(d, &l);
    CHECK(l == 2 && (uint8_t)f[0] == 0xF0 && (uint8_t)f[1] == 0x9F);
    /* a lone continuation byte is not held forever */
    g4_detok_push(d, 238 + 0x80, &l, &err);
    CHECK(l == 1);
    CHECK(g4_detok_push(d, -3, &l, &err) == NULL);
    g4_detok_free(d);
    g4_tokens_free(&ids);
}

TEST(long_inputs_linear) {
    if (!g_real) { CHECK(!"shared tokenizer.json missing"); return; }
    /* one 2 MB line (no newline) and one 1 MB run of a single letter: both
     * must stay fast; a quadratic merge loop takes minutes here */
    size_t n = 2u << 20;
    char *s = malloc(n);
    const char *w[] = { "alpha ", "beta ", "\xd0\xbf\xd1\x80\xd0\xb8 ", "\xe6\x97\xa5\xe6\x9c\xac ", "x" };
    size_t o = 0;
    for (int i = 0; o + 16 < n; i++) { size_t l = strlen(w[i % 5]); memcpy(s + o, w[i % 5], l); o += l; }
    g4_tokens ids = {0};
    g4_error err = {{0}};
    clock_t c0 = clock();
    CHECK(g4_tok_encode(g_real, s, o, false, false, &ids, &err) == 0);
    double t1 = (double)(clock() - c0) / CLOCKS_PER_SEC;
    CHECK(ids.n > 100000);
    g4_tokens_free(&ids);
    memset(s, 'a', n / 2);
    c0 = clock();
    CHECK(g4_tok_encode(g_real, s, n / 2, false, false, &ids, &err) == 0);
    double t2 = (double)(clock() - c0) / CLOCKS_PER_SEC;
    CHECK(ids.n > 0 && ids.n < n / 2);
    CHECK(roundtrip(g_real, s, n / 2));
    g4_tokens_free(&ids);
    free(s);
    printf("  2 MB line: %.3f s, 1 MB 'a' run: %.3f s\n", t1, t2);
    CHECK(t1 < 30.0 && t2 < 30.0);   /* quadratic would take minutes */
}

/* --- hand-made vocabularies ---------------------------------------------- */

static g4_tokenizer *mini(const char *const *toks, size_t n, const char *const *merges, size_t nm,
                          g4_error *err) {
    g4_tok_vocab v = {0};
    v.n_tokens = n; v.tokens = toks; v.merges = merges; v.n_merges = nm;
    v.bos = v.eos = v.unk = v.pad = -1;
    return g4_tokenizer_create(&v, err);
}

TEST(bpe_rank_order) {
    g4_error err = {{0}};
    const char *toks[] = { "a", "b", "c", "ab", "bc", "abc", "aa", "\xe2\x96\x81", "\xe2\x96\x81\x61" };
    /* "b c" outranks "a b": abc -> a + bc, no "a bc" merge */
    const char *m1[] = { "b c", "a b", "a a" };
    g4_tokenizer *t = mini(toks, 9, m1, 3, &err);
    CHECK(t != NULL);
    if (!t) return;
    ENC(t, "abc", false, false, 0, 4);
    ENC(t, "aaa", false, false, 6, 0);   /* leftmost pair first on equal rank */
    ENC(t, "aaaa", false, false, 6, 6);
    ENC(t, " a", false, false, 7, 0);    /* no "▁ a" merge */
    g4_tokenizer_free(t);
    /* with "a b" first and "ab c" available, abc -> abc */
    const char *m2[] = { "a b", "ab c", "b c", "\xe2\x96\x81 a" };
    t = mini(toks, 9, m2, 4, &err);
    CHECK(t != NULL);
    if (!t) return;
    ENC(t, "abc", false, false, 5);
    ENC(t, "abcabc", false, false, 5, 5);
    ENC(t, "a a", false, false, 0, 8);
    ENC(t, "", false, false);
    /* no byte tokens and no <unk>: an unknown character is an error */
    g4_tokens ids = {0};
    CHECK(g4_tok_encode(t, "z", 1, false, false, &ids, &err) == -1);
    CHECK(strstr(err.msg, "0x7A") != NULL);
    g4_tokens_free(&ids);
    g4_tokenizer_free(t);
}

TEST(create_rejects_bad_input) {
    g4_error err = {{0}};
    const char *toks[] = { "a", "b", "<0x41>" };
    g4_tok_vocab v = {0};
    v.tokens = toks; v.n_tokens = 3; v.bos = v.eos = v.unk = v.pad = -1;
    int32_t types[] = { 1, 6, 1 };
    v.types = types;
    CHECK(g4_tokenizer_create(&v, &err) == NULL && strstr(err.msg, "BYTE"));
    types[1] = 9;
    CHECK(g4_tokenizer_create(&v, &err) == NULL && strstr(err.msg, "type"));
    v.types = NULL;
    v.bos = 7;
    CHECK(g4_tokenizer_create(&v, &err) == NULL && strstr(err.msg, "bos"));
    v.bos = -1;
    const char *bad_merge[] = { "ab" };
    v.merges = bad_merge; v.n_merges = 1;
    CHECK(g4_tokenizer_create(&v, &err) == NULL && strstr(err.msg, "merge"));
    /* merges naming unknown pieces are dropped, not fatal */
    const char *unk_merge[] = { "a zz", "a b" };
    v.merges = unk_merge; v.n_merges = 2;
    g4_tokenizer *t = g4_tokenizer_create(&v, &err);
    CHECK(t != NULL);
    if (t) {
        ENC(t, "ab", false, false, 0, 1);   /* "ab" is not a piece */
        ENC(t, "A", false, false, 2);       /* <0x41> detected as a byte token */
        g4_tokenizer_free(t);
    }
    v.n_tokens = 0;
    CHECK(g4_tokenizer_create(&v, &err) == NULL);
    CHECK(g4_tokenizer_create(NULL, &err) == NULL);
}

/* --- GGUF and tokenizer.json loaders --------------------------------------- */

TEST(tiny_gguf) {
    if (!g_tiny_gguf) { CHECK(!"gemma4-e.gguf did not load"); return; }
    CHECK(g4_tok_n_vocab(g_tiny_gguf) == 512);
    CHECK(g4_tok_bos(g_tiny_gguf) == 2 && g4_tok_eos(g_tiny_gguf) == 1);
    CHECK(g4_tok_unk(g_tiny_gguf) == 3 && g4_tok_pad(g_tiny_gguf) == 0);
    int32_t turn = g4_tok_find(g_tiny_gguf, "<|turn>", 7), eot = g4_tok_find(g_tiny_gguf, "<turn|>", 7);
    CHECK(turn == 5 && eot == 6);
    CHECK(g4_tok_is_eog(g_tiny_gguf, 1) && g4_tok_is_eog(g_tiny_gguf, eot));
    CHECK(!g4_tok_is_eog(g_tiny_gguf, turn));
    ENC(g_tiny_gguf, "<|turn>user\n", true, true, 2, 5, 290, 288, 274, 287, 269);
}

TEST(tiny_special_policy) {
    if (!g_tiny_gguf) { CHECK(!"gemma4-e.gguf did not load"); return; }
    g4_tokens a = {0}, b = {0};
    g4_error err = {{0}};
    const char *s = "<|turn>user\nhi<turn|>\n<|\"|>x<|\"|>";
    CHECK(g4_tok_encode(g_tiny_gguf, s, strlen(s), true, true, &a, &err) == 0);
    CHECK(a.n > 4 && a.ids[0] == 2 && a.ids[1] == 5);
    int n11 = 0, n6 = 0;
    for (size_t i = 0; i < a.n; i++) { n11 += a.ids[i] == 11; n6 += a.ids[i] == 6; }
    CHECK(n11 == 2 && n6 == 1);
    /* user text: the markers are plain text, no control id appears */
    CHECK(g4_tok_encode(g_tiny_gguf, s, strlen(s), false, false, &b, &err) == 0);
    for (size_t i = 0; i < b.n; i++) CHECK(b.ids[i] > 11);
    CHECK(roundtrip(g_tiny_gguf, s, strlen(s)));
    /* <|"|> is rendered by the decoder even without render_special (USER_DEFINED) */
    char buf[16];
    CHECK(g4_tok_piece(g_tiny_gguf, 11, false, buf, sizeof buf) == 5);
    CHECK(g4_tok_piece(g_tiny_gguf, 5, false, buf, sizeof buf) == 0);
    g4_tokens_free(&a);
    g4_tokens_free(&b);
}

TEST(tiny_gguf_equals_hf) {
    if (!g_tiny_gguf || !g_tiny_hf) { CHECK(!"tiny tokenizers did not load"); return; }
    CHECK(g4_tok_n_vocab(g_tiny_gguf) == g4_tok_n_vocab(g_tiny_hf));
    const char *cases[] = { "Hello world", " the quick brown fox\n\n  jumps", "\xf0\x9f\xa6\x99 caf\xc3\xa9",
                            "<|turn>model\n<|channel>thought\n<channel|>", "\t\t\n\n\n x", "" };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int sp = 0; sp < 2; sp++) {
            g4_tokens a = {0}, b = {0};
            g4_error err = {{0}};
            CHECK(g4_tok_encode(g_tiny_gguf, cases[i], strlen(cases[i]), true, sp, &a, &err) == 0);
            CHECK(g4_tok_encode(g_tiny_hf, cases[i], strlen(cases[i]), true, sp, &b, &err) == 0);
            CHECKF(a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof *a.ids), "case %zu special %d", i, sp);
            g4_tokens_free(&a);
            g4_tokens_free(&b);
        }
    for (int32_t id = 0; id < g4_tok_n_vocab(g_tiny_gguf); id++)
        CHECKF(g4_tok_type(g_tiny_gguf, id) == g4_tok_type(g_tiny_hf, id) ||
               (g4_tok_type(g_tiny_gguf, id) == G4_TOK_CONTROL && g4_tok_type(g_tiny_hf, id) == G4_TOK_CONTROL),
               "type of id %d: gguf %d hf %d", id, g4_tok_type(g_tiny_gguf, id), g4_tok_type(g_tiny_hf, id));
}

static g4_gguf_file *mem_vocab(const char *model) {
    g4_gguf_file *f = g4_gguf_new("test");
    const char *toks[] = { "<pad>", "<eos>", "<bos>", "a", "b", "ab" };
    const char *merges[] = { "a b" };
    int32_t types[] = { 3, 3, 3, 1, 1, 1 };
    if (model) g4_gguf_set_str(f, "tokenizer.ggml.model", model);
    g4_gguf_set_arr_str(f, "tokenizer.ggml.tokens", toks, 6);
    g4_gguf_set_arr(f, "tokenizer.ggml.token_type", GGUF_INT32, types, 6);
    g4_gguf_set_arr_str(f, "tokenizer.ggml.merges", merges, 1);
    g4_gguf_set_u32(f, "tokenizer.ggml.bos_token_id", 2);
    g4_gguf_set_u32(f, "tokenizer.ggml.eos_token_id", 1);
    return f;
}

TEST(gguf_loader_errors) {
    g4_error err = {{0}};
    g4_gguf_file *f = mem_vocab("gemma4");
    g4_tokenizer *t = g4_tokenizer_from_gguf(f, &err);
    CHECKF(t != NULL, "%s", err.msg);
    if (t) {
        ENC(t, "abab", true, false, 2, 5, 5);
        CHECK(g4_tok_unk(t) == -1);
        g4_tokenizer_free(t);
    }
    g4_gguf_set_u32(f, "tokenizer.ggml.bos_token_id", 99);
    CHECK(g4_tokenizer_from_gguf(f, &err) == NULL && strstr(err.msg, "bos"));
    g4_gguf_close(f);
    f = mem_vocab("llama");
    CHECK(g4_tokenizer_from_gguf(f, &err) == NULL && strstr(err.msg, "tokenizer.ggml.model"));
    g4_gguf_close(f);
    f = mem_vocab(NULL);
    CHECK(g4_tokenizer_from_gguf(f, &err) == NULL && strstr(err.msg, "tokenizer.ggml.model"));
    g4_gguf_close(f);
    f = mem_vocab("gemma4");
    int32_t short_types[] = { 1, 1 };
    g4_gguf_set_arr(f, "tokenizer.ggml.token_type", GGUF_INT32, short_types, 2);
    CHECK(g4_tokenizer_from_gguf(f, &err) == NULL && strstr(err.msg, "token_type"));
    int32_t bad_types[] = { 1, 1, 1, 1, 1, 77 };
    g4_gguf_set_arr(f, "tokenizer.ggml.token_type", GGUF_INT32, bad_types, 6);
    CHECK(g4_tokenizer_from_gguf(f, &err) == NULL && strstr(err.msg, "token_type[5]"));
    g4_gguf_close(f);
    f = g4_gguf_new("empty");
    g4_gguf_set_str(f, "tokenizer.ggml.model", "gemma4");
    CHECK(g4_tokenizer_from_gguf(f, &err) == NULL && strstr(err.msg, "tokenizer.ggml.tokens"));
    g4_gguf_close(f);
}

static const char *write_tmp(const char *name, const char *content) {
    static char path[32][256];
    static int slot;
    char *p = path[slot++ & 31];
    snprintf(p, 256, "/tmp/g4tok_%d_%s", (int)getpid(), name);
    FILE *fp = fopen(p, "wb");
    if (fp) { fputs(content, fp); fclose(fp); }
    return p;
}

TEST(hf_loader_errors) {
    g4_error err = {{0}};
    const char *ok = write_tmp("ok.json",
        "{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"<bos>\":0,\"a\":1,\"b\":2,\"ab\":3,\"\\u2581\":4},"
        "\"merges\":[[\"a\",\"b\"]]},"
        "\"added_tokens\":[{\"id\":0,\"content\":\"<bos>\",\"special\":true},"
        "{\"id\":5,\"content\":\"<x>\",\"special\":false}]}");
    g4_tokenizer *t = g4_tokenizer_from_hf_json(ok, NULL, &err);
    CHECKF(t != NULL, "%s", err.msg);
    if (t) {
        CHECK(g4_tok_n_vocab(t) == 6 && g4_tok_bos(t) == 0 && g4_tok_eos(t) == -1);
        ENC(t, "ab a<x>", true, false, 0, 3, 4, 1, 5);
        ENC(t, "<bos>", false, true, 0);
        g4_tokenizer_free(t);
    }
    struct { const char *name, *json, *want; } bad[] = {
        { "b1.json", "{\"model\":{\"type\":\"Unigram\",\"vocab\":{}}}", "BPE" },
        { "b2.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", "model.vocab" },
        { "b3.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}}", "two pieces" },
        { "b4.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}", "merges[0]" },
        { "b5.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":\"x\"}]}", "added_tokens[0]" },
        { "b6.json", "{\"model\":", "line" },
        { "b7.json", "{\"normalizer\":{\"type\":\"NFKC\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", "normalizer" },
        { "b8.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999}}}", "model.vocab" },
        { "b8b.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":9999999}}}", "highest id" },
        { "b9.json", "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"}]},"
                     "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", "normalizer" },
        { "b10.json", "{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"x\",\"prepend_scheme\":\"always\"},"
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", "prefix" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = write_tmp(bad[i].name, bad[i].json);
        g4_tokenizer *b = g4_tokenizer_from_hf_json(p, NULL, &err);
        CHECKF(b == NULL && strstr(err.msg, bad[i].want), "%s: %s", bad[i].name, err.msg);
        g4_tokenizer_free(b);
        unlink(p);
    }
    /* a config naming a missing token is an error */
    const char *cfg = write_tmp("cfg.json", "{\"eos_token\":{\"content\":\"<nope>\"}}");
    CHECK(g4_tokenizer_from_hf_json(ok, cfg, &err) == NULL && strstr(err.msg, "<nope>"));
    unlink(cfg);
    unlink(ok);
    CHECK(g4_tokenizer_load("/nonexistent/tok.json", &err) == NULL);
}

/* tokenizer.json's vocab and merges are parsed by a dedicated scanner (fast
 * path); a file with merges before vocab goes through jansson instead. Both
 * must agree, including on escapes. */
TEST(hf_fast_path) {
    g4_error err = {{0}};
    const char *vocab = "\"vocab\":{\"<bos>\":0,\"\\u00e9\":1,\"t\":2,\"\\u00e9t\":3,\"\\ud83e\\udd99\":4,"
                        "\"\\n\":5,\"\\\"q\\\\\":6,\"\\u2581\":7,\"\\u2581t\":8,\"<0x41>\":9}";
    const char *merges = "\"merges\":[\"\\u00e9 t\",[\"\\u2581\",\"t\"]]";
    char a[1024], b[1024];
    snprintf(a, sizeof a, "{\"model\":{\"type\":\"BPE\",%s,%s},\"added_tokens\":[]}", vocab, merges);
    snprintf(b, sizeof b, "{\"model\":{\"type\":\"BPE\",%s,%s},\"added_tokens\":[]}", merges, vocab);
    const char *pa = write_tmp("fa.json", a), *pb = write_tmp("fb.json", b);
    g4_tokenizer *ta = g4_tokenizer_from_hf_json(pa, NULL, &err);
    CHECKF(ta != NULL, "%s", err.msg);
    g4_tokenizer *tb = g4_tokenizer_from_hf_json(pb, NULL, &err);
    CHECKF(tb != NULL, "%s", err.msg);
    if (ta && tb) {
        const char *txt = "\xc3\xa9t t\xf0\x9f\xa6\x99\nA";
        ENC(ta, txt, false, false, 3, 8, 4, 5, 9);
        ENC(tb, txt, false, false, 3, 8, 4, 5, 9);
        CHECK(g4_tok_find(ta, "\"q\\", 3) == 6);
    }
    g4_tokenizer_free(ta);
    g4_tokenizer_free(tb);
    unlink(pa);
    unlink(pb);
    struct { const char *json, *want; } bad[] = {
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"\\ud800\":0}}}", "surrogate" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5}}}", "integer" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\"}}}", "line" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\\q\":0}}}", "escape" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\"]]}}", "merges[0]" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a\",\"x\"]}}", "merges[1]" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0", "line" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = write_tmp("fbad.json", bad[i].json);
        g4_tokenizer *t = g4_tokenizer_from_hf_json(p, NULL, &err);
        CHECKF(t == NULL && strstr(err.msg, bad[i].want), "case %zu: %s", i, err.msg);
        g4_tokenizer_free(t);
        unlink(p);
    }
}

int main(void) {
    g4_error err = {{0}};
    g_real = g4_tokenizer_from_hf_json(shared_path("testdata/tokenizer/tokenizer.json"), NULL, &err);
    if (!g_real) fprintf(stderr, "real tokenizer: %s\n", err.msg);
    g_tiny_gguf = g4_tokenizer_load(shared_path("testdata/gemma4-ref/gemma4-e.gguf"), &err);
    if (!g_tiny_gguf) fprintf(stderr, "tiny gguf: %s\n", err.msg);
    g_tiny_hf = g4_tokenizer_load(shared_path("testdata/gemma4-ref/gemma4-e.hf"), &err);
    if (!g_tiny_hf) fprintf(stderr, "tiny hf: %s\n", err.msg);
    RUN(llama_cpp_vectors);
    RUN(real_vocab_facts);
    RUN(special_policy_real);
    RUN(byte_fallback_roundtrip);
    RUN(decode_pieces);
    RUN(streaming_detokenizer);
    RUN(long_inputs_linear);
    RUN(bpe_rank_order);
    RUN(create_rejects_bad_input);
    RUN(tiny_gguf);
    RUN(tiny_special_policy);
    RUN(tiny_gguf_equals_hf);
    RUN(gguf_loader_errors);
    RUN(hf_loader_errors);
    RUN(hf_fast_path);
    g4_tokenizer_free(g_real);
    g4_tokenizer_free(g_tiny_gguf);
    g4_tokenizer_free(g_tiny_hf);
    return test_summary();
}
