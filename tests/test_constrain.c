/* Constrained decoding: schema compile errors, the automaton on known
 * strings, no dead ends, and randomized generation over the real Gemma
 * vocabulary with random logits as the "model". With G4_CONSTRAIN_DUMP=FILE
 * every output is also written (one JSON line each: schema, data) for
 * tests/sh/constrain_js.sh to validate with ajv, an independent validator. */
#include <jansson.h>
#include <stdint.h>

#include "constrain/constrain.h"
#include "gemma4c.h"
#include "harness.h"

static char tokpath[512];
static gemma4c_tokenizer *tok;
static gemma4c_token_index *tix;
static FILE *dump;

/* Does the automaton accept text (bytes; "\x01" stands for <|"|>) as a
 * complete output? 1 complete, 0 valid prefix only, -1 rejected. */
static int run_text(const g4_grammar *g, const char *text) {
    static g4_astate a, b;
    g4_astate_init(g, &a);
    for (const char *p = text; *p; p++) {
        int sym = *p == 1 ? G4_SYM_QUOTE : *p == 2 ? G4_SYM_CALL_OPEN : *p == 3 ? G4_SYM_CALL_CLOSE : (uint8_t)*p;
        if (!g4_astate_step(g, &a, sym, &b)) return -1;
        g4_astate_copy(&a, &b);
    }
    return g4_astate_done(g, &a) ? 1 : 0;
}

static int accepts(const char *schema, const char *text) {
    char err[256];
    g4_grammar *g = g4_grammar_json(schema, strlen(schema), 0, err, sizeof err);
    if (!g) { fprintf(stderr, "compile %s: %s\n", schema, err); return -2; }
    int r = run_text(g, text);
    g4_grammar_free(g);
    return r;
}

TEST(compile_errors) {
    static const struct { const char *schema, *want; } C[] = {
        { "{\"type\":\"strin\"}", "#/type" },
        { "{\"properties\":{\"a\":{\"type\":\"object\",\"properties\":{\"b\":{\"type\":7}}}}}", "#/properties/a/properties/b/type" },
        { "{\"type\":\"string\",\"pattern\":\"x\"}", "#/pattern" },
        { "{\"type\":\"string\",\"minLength\":5,\"maxLength\":2}", "minLength > maxLength" },
        { "{\"$ref\":\"#/$defs/nope\"}", "points nowhere" },
        { "{\"$ref\":\"http://x\"}", "only local" },
        { "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"}},\"required\":[\"a\"]}", "finite" },
        { "{\"enum\":[]}", "#/enum" },
        { "{\"type\":\"string\",\"enum\":[1,2]}", "no value matches" },
        { "{\"required\":[\"x\"],\"properties\":{}}", "not in properties" },
        { "{\"anyOf\":[]}", "#/anyOf" },
        { "[1,2]", "must be an object" },
        { "{\"items\":[{}]}", "#/items" },
        { "{\"type\":\"array\",\"minItems\":-1}", "#/minItems" },
        { "{not json", "JSON error" },
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        char err[512] = "";
        g4_grammar *g = g4_grammar_json(C[i].schema, strlen(C[i].schema), 0, err, sizeof err);
        CHECKF(!g && strstr(err, C[i].want), "%s -> %s (want %s)", C[i].schema, err, C[i].want);
        g4_grammar_free(g);
    }
    /* deep nesting: an error, not a crash */
    char *deep = malloc(200000);
    size_t o = 0;
    for (int i = 0; i < 5000; i++) o += (size_t)sprintf(deep + o, "{\"items\":");
    o += (size_t)sprintf(deep + o, "{}");
    for (int i = 0; i < 5000; i++) deep[o++] = '}';
    deep[o] = 0;
    char err[512] = "";
    g4_grammar *g = g4_grammar_json(deep, o, 0, err, sizeof err);
    CHECKF(!g, "deep nesting compiled");
    g4_grammar_free(g);
    free(deep);
    /* a huge enum compiles */
    json_t *e = json_array();
    for (int i = 0; i < 20000; i++) json_array_append_new(e, json_sprintf("v%d", i));
    json_t *sc = json_pack("{s:o}", "enum", e);
    char *t = json_dumps(sc, 0);
    g = g4_grammar_json(t, strlen(t), 0, err, sizeof err);
    CHECKF(g != NULL, "huge enum: %s", err);
    if (g) CHECK(run_text(g, "\"v19999\"") == 1 && run_text(g, "\"v20000\"") == -1);
    g4_grammar_free(g);
    free(t);
    json_decref(sc);
    /* tools */
    g = g4_grammar_tools("[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]", 47, NULL, 0, err, sizeof err);
    CHECKF(!g && strstr(err, "#/0/function/name"), "%s", err);
    g4_grammar_free(g);
    const char *tl = "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]";
    g = g4_grammar_tools(tl, strlen(tl), "g", 0, err, sizeof err);
    CHECKF(!g && strstr(err, "not a declared tool"), "%s", err);
    g4_grammar_free(g);
}

TEST(automaton_json) {
    CHECK(accepts("{\"type\":\"integer\"}", "-120") == 1);
    CHECK(accepts("{\"type\":\"integer\"}", "01") == -1);
    CHECK(accepts("{\"type\":\"integer\"}", "1.5") == -1);
    CHECK(accepts("{\"type\":\"number\"}", "-1.5e+10") == 1);
    CHECK(accepts("{\"type\":\"number\"}", "1.") == 0);
    CHECK(accepts("{\"type\":\"string\"}", "\"a\\u00e9\\n\xc3\xa9\"") == 1);
    CHECK(accepts("{\"type\":\"string\"}", "\"\\ud800\"") == -1);
    CHECK(accepts("{\"type\":\"string\"}", "\"\xc3\"") == -1);
    CHECK(accepts("{\"type\":\"string\"}", "\"a\nb\"") == -1);
    CHECK(accepts("{\"type\":\"string\"}", "\"x<turn|>\"") == -1);
    CHECK(accepts("{\"type\":\"string\",\"maxLength\":2}", "\"\xc3\xa9\\n\"") == 1);
    CHECK(accepts("{\"type\":\"string\",\"maxLength\":2}", "\"abc\"") == -1);
    CHECK(accepts("{\"type\":\"string\",\"minLength\":2}", "\"a\"") == -1);
    CHECK(accepts("{\"enum\":[\"red\",\"green\",1,null]}", "\"green\"") == 1);
    CHECK(accepts("{\"enum\":[\"red\",\"green\",1,null]}", "\"gree\"") == -1);
    CHECK(accepts("{\"enum\":[1,12]}", "1") == 1);
    CHECK(accepts("{\"enum\":[1,12]}", "12") == 1);
    CHECK(accepts("{\"const\":{\"a\":[1,2]}}", "{\"a\":[1,2]}") == 1);
    const char *o = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"boolean\"}},"
                    "\"required\":[\"a\"],\"additionalProperties\":false}";
    CHECK(accepts(o, "{\"a\":1}") == 1);
    CHECK(accepts(o, "{\"b\":true, \"a\": 2}") == 1);
    CHECK(accepts(o, "{\"b\":true}") == -1);
    CHECK(accepts(o, "{\"a\":1,\"a\":2}") == -1);
    CHECK(accepts(o, "{\"c\":1}") == -1);
    CHECK(accepts(o, "{\"a\":1,}") == -1);
    CHECK(accepts("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"},{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":2}]}", "[1,2]") == 1);
    CHECK(accepts("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"},{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":2}]}", "[1,2,3]") == -1);
    CHECK(accepts("{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":\"#/$defs/n\"}}}},\"$ref\":\"#/$defs/n\"}",
                  "{\"next\":{\"next\":{}}}") == 1);
    CHECK(accepts("{\"type\":\"array\",\"minItems\":2}", "[1]") == -1);
    CHECK(accepts("{\"type\":\"array\",\"minItems\":2}", "[1,{\"x\":[]}]") == 1);
    CHECK(accepts("{}", "tru") == 0);
    CHECK(accepts("{}", "true") == 1);
}

TEST(automaton_tools) {
    const char *tl = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
                     "\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"}},\"required\":[\"city\"]}}},"
                     "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}]";
    char err[256];
    g4_grammar *g = g4_grammar_tools(tl, strlen(tl), "auto", 0, err, sizeof err);
    CHECKF(g != NULL, "%s", err);
    if (!g) return;
    CHECK(run_text(g, "Sure.") == 1);
    CHECK(run_text(g, "\x02" "call:get_weather{city:\x01Paris\x01,days:3}\x03") == 1);
    CHECK(run_text(g, "\x02" "call:get_weather{days:3}\x03") == -1);
    CHECK(run_text(g, "\x02" "call:get_wether{") == -1);
    CHECK(run_text(g, "\x02" "call:get_time{anything:\x01x\x01}\x03") == 1);
    CHECK(run_text(g, "hi <|tool_call>") == -1);
    g4_grammar_free(g);
    g = g4_grammar_tools(tl, strlen(tl), "none", 0, err, sizeof err);
    CHECK(g && run_text(g, "\x02") == -1 && run_text(g, "ok") == 1);
    g4_grammar_free(g);
    g = g4_grammar_tools(tl, strlen(tl), "required", 0, err, sizeof err);
    CHECK(g && run_text(g, "ok") == -1 && run_text(g, "") == 0);
    g4_grammar_free(g);
    g = g4_grammar_tools(tl, strlen(tl), "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}", 0, err, sizeof err);
    CHECK(g && run_text(g, "\x02" "call:get_weather{") == -1 && run_text(g, "\x02" "call:get_time{}\x03") == 1);
    g4_grammar_free(g);
}

/* ---- randomized generation over the real vocabulary ------------------------- */

static const char *SCHEMAS[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
    "{\"type\":\"string\"}",
    "{\"type\":\"string\",\"maxLength\":5}",
    "{\"type\":\"string\",\"minLength\":3,\"maxLength\":3}",
    "{\"type\":\"string\",\"minLength\":20}",
    "{\"type\":\"integer\"}",
    "{\"type\":\"number\"}",
    "{\"type\":\"boolean\"}",
    "{\"type\":\"null\"}",
    "{\"enum\":[\"red\",\"green\",\"blue\"]}",
    "{\"enum\":[1,2.5,\"x\",null,true,{\"a\":1},[1,2]]}",
    "{\"const\":\"fixed\"}",
    "{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}",
    "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":8},\"minItems\":2,\"maxItems\":4}",
    "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"tag\":{\"enum\":[\"a\",\"b\"]}},\"required\":[\"id\",\"tag\"],\"additionalProperties\":false},\"maxItems\":3}",
    "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":4},{\"type\":\"integer\"},{\"type\":\"null\"}]}",
    "{\"type\":[\"string\",\"null\"],\"maxLength\":6}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\",\"properties\":{\"b\":{\"type\":\"object\",\"properties\":{\"c\":{\"type\":\"boolean\"}},\"required\":[\"c\"]}},\"required\":[\"b\"]}},\"required\":[\"a\"]}",
    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},\"required\":[\"v\"],\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}",
    "{\"definitions\":{\"p\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},\"y\":{\"type\":\"number\"}},\"required\":[\"x\",\"y\"]}},\"type\":\"array\",\"items\":{\"$ref\":\"#/definitions/p\"},\"maxItems\":3}",
    "{\"type\":\"object\"}",
    "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"},\"maxProperties_note\":1}",
    "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\",\"maxLength\":30}},\"required\":[\"q\"]}",
    "{\"type\":\"object\",\"properties\":{\"k\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"a\"},\"x\":{\"type\":\"integer\"}},\"required\":[\"kind\",\"x\"],\"additionalProperties\":false},{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"b\"},\"y\":{\"type\":\"string\",\"maxLength\":5}},\"required\":[\"kind\",\"y\"],\"additionalProperties\":false}]}},\"required\":[\"k\"]}",
    "{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"maxItems\":3},\"maxItems\":3}",
    "{\"type\":\"object\",\"properties\":{\"date\":{\"type\":\"string\",\"minLength\":10,\"maxLength\":10},\"n\":{\"type\":\"integer\"},\"ok\":{\"type\":\"boolean\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":6},\"maxItems\":3}},\"required\":[\"date\",\"n\",\"ok\",\"tags\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"sp\\\"ecial\":{\"type\":\"integer\"},\"uni\xc3\xa9\":{\"type\":\"boolean\"}},\"required\":[\"sp\\\"ecial\",\"uni\xc3\xa9\"]}",
    "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1}},\"required\":[\"s\"]}",
    "{\"type\":\"string\",\"maxLength\":0}",
    "{\"type\":\"array\",\"maxItems\":0}",
    "{\"type\":\"array\",\"minItems\":3,\"maxItems\":3,\"items\":{\"enum\":[0,1]}}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"},\"c\":{\"type\":\"integer\"},\"d\":{\"type\":\"integer\"}},\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"price\":{\"type\":\"number\"},\"qty\":{\"type\":\"integer\"}},\"required\":[\"price\",\"qty\"]}",
    "{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}",
    "{\"anyOf\":[{\"$ref\":\"#/$defs/a\"},{\"$ref\":\"#/$defs/b\"}],\"$defs\":{\"a\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":2},\"b\":{\"type\":\"object\",\"properties\":{\"z\":{\"type\":\"null\"}},\"required\":[\"z\"]}}}",
    "{\"type\":\"object\",\"properties\":{\"e\":{\"enum\":[\"x\",\"xy\",\"xyz\"]}},\"required\":[\"e\"]}",
    "{\"type\":\"object\",\"properties\":{\"t\":{\"type\":\"string\",\"minLength\":5,\"maxLength\":12}},\"required\":[\"t\"],\"additionalProperties\":false}",
    "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"string\",\"maxLength\":3},{\"type\":\"number\"}]},\"maxItems\":5}",
    "{\"type\":[\"integer\",\"boolean\"]}",
    "{\"type\":\"object\",\"properties\":{\"list\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"string\",\"maxLength\":4}},\"required\":[\"n\"],\"additionalProperties\":false},\"minItems\":1,\"maxItems\":2}},\"required\":[\"list\"]}",
    "{\"$defs\":{\"expr\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"object\",\"properties\":{\"op\":{\"enum\":[\"neg\",\"abs\"]},\"x\":{\"$ref\":\"#/$defs/expr\"}},\"required\":[\"op\",\"x\"],\"additionalProperties\":false}]}},\"$ref\":\"#/$defs/expr\"}",
    "{\"type\":\"object\",\"properties\":{\"flag\":{\"const\":true},\"v\":{\"const\":3}},\"required\":[\"flag\",\"v\"]}",
    "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":[\"number\",\"null\"]}},\"required\":[\"x\"]}",
    "{\"type\":\"array\",\"items\":{\"type\":\"null\"},\"maxItems\":4}",
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":16},\"email\":{\"type\":\"string\",\"maxLength\":24},\"roles\":{\"type\":\"array\",\"items\":{\"enum\":[\"admin\",\"user\",\"guest\"]},\"maxItems\":3}},\"required\":[\"name\",\"roles\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"m\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"boolean\"}}},\"required\":[\"m\"]}",
    "{\"type\":\"string\",\"enum\":[\"\xe6\x97\xa5\xe6\x9c\xac\",\"caf\xc3\xa9\",\"a\\\"b\",\"tab\\t\"]}",
    "{\"type\":\"object\",\"properties\":{\"deep\":{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":2},\"maxItems\":2},\"maxItems\":2}},\"required\":[\"deep\"]}",
    "{\"type\":\"integer\",\"enum\":[10,20,30]}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":3},\"b\":{\"type\":\"string\",\"maxLength\":3}},\"required\":[\"b\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"v\":{\"anyOf\":[{\"type\":\"string\",\"minLength\":2,\"maxLength\":2},{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":2},\"maxItems\":2}]}},\"required\":[\"v\"]}",
    "{\"type\":\"object\",\"properties\":{\"long\":{\"type\":\"string\",\"minLength\":40,\"maxLength\":60}},\"required\":[\"long\"]}",
};
#define N_SCHEMAS (int)(sizeof SCHEMAS / sizeof SCHEMAS[0])

static uint64_t rng;
static double urand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* Text of a generated token; markers by their Gemma 4 text (the test
 * vocabulary is Gemma 3's, which spells these ids differently). */
static int tok_text(int32_t id, char *buf, size_t cap) {
    static const char *const S[] = { "<|\"|>", "<|tool_call>", "<tool_call|>", "<|channel>", "<channel|>", "" };
    g4_tindex *x = (g4_tindex *)tix;
    int sym = g4_tindex_sym(x, id);
    if (sym >= 256) return snprintf(buf, cap, "%s", S[sym - 256]);
    int len;
    const uint8_t *p = g4_tindex_text(x, id, &len);
    if (!p || (size_t)len >= cap) return -1;
    memcpy(buf, p, (size_t)len);
    buf[len] = 0;
    return len;
}

static float *bias;   /* per token: favours JSON punctuation so values stay short */

/* Sample from random logits under c until an end token; the text goes to
 * out. Returns tokens generated, -1 on a dead end or a refused token. */
static int generate_random(gemma4c_constraint *c, uint64_t seed, float special_bias, char *out, size_t cap,
                           int max_steps) {
    int nv = 262144;
    static float *logits;
    if (!logits) logits = malloc((size_t)nv * sizeof *logits);
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t o = 0;
    out[0] = 0;
    for (int step = 0; step < max_steps; step++) {
        for (int i = 0; i < nv; i++) logits[i] = (float)(urand() * 4.0) + bias[i];
        for (int i = 0; i < nv; i++)
            if (g4_tindex_sym((g4_tindex *)tix, i) >= 256) logits[i] += special_bias;
        int n = gemma4c_constraint_apply(c, logits, nv);
        if (n <= 0) return -1;   /* dead end: the output did not end yet */
        int32_t best = 0;
        for (int i = 1; i < nv; i++) if (logits[i] > logits[best]) best = i;
        if (gemma4c_constraint_accept(c, best)) return -1;
        if (g4_tindex_sym((g4_tindex *)tix, best) == G4_SYM_END) return step + 1;
        char piece[1100];
        int l = tok_text(best, piece, sizeof piece);
        if (l < 0 || o + (size_t)l + 1 >= cap) return -2;
        memcpy(out + o, piece, (size_t)l);
        o += (size_t)l;
        out[o] = 0;
    }
    return -2;   /* too long */
}

static int load_tok(void) {
    if (tix) return 1;
    const char *sh = getenv("G4_SHARED");
    snprintf(tokpath, sizeof tokpath, "%s/testdata/tokenizer/tokenizer.json", sh ? sh : "../shared");
    char err[256];
    tok = gemma4c_tokenizer_load(tokpath, err, sizeof err);
    if (!tok) { fprintf(stderr, "tokenizer: %s\n", err); return 0; }
    tix = gemma4c_token_index_new(tok, err, sizeof err);
    if (!tix) { fprintf(stderr, "index: %s\n", err); return 0; }
    bias = calloc(262144, sizeof *bias);
    for (int i = 0; i < 262144; i++) {
        int len;
        const uint8_t *p = g4_tindex_text((g4_tindex *)tix, i, &len);
        for (int k = 0; p && k < len; k++)
            if (strchr("\"]},", p[k])) { bias[i] = 2.5f; break; }
    }
    return 1;
}

static void dump_line(const char *kind, const char *schema, const char *data) {
    if (!dump) return;
    json_t *sc = json_loads(schema, 0, NULL);
    json_t *l = json_pack("{s:s,s:o,s:s}", "kind", kind, "schema", sc ? sc : json_null(), "data", data);
    char *t = l ? json_dumps(l, JSON_COMPACT) : NULL;
    if (t) fprintf(dump, "%s\n", t);
    free(t);
    json_decref(l);
}

TEST(random_json_real_vocab) {
    if (!load_tok()) { CHECK(0); return; }
    int seeds = getenv("G4_CONSTRAIN_SEEDS") ? atoi(getenv("G4_CONSTRAIN_SEEDS")) : 4;
    static char out[1 << 17];
    int total = 0, good = 0;
    for (int si = 0; si < N_SCHEMAS; si++) {
        gemma4c_constraint_params p = { GEMMA4C_CONSTRAIN_JSON_SCHEMA, SCHEMAS[si], NULL, NULL, 0 };
        char err[256];
        gemma4c_constraint *c = gemma4c_constraint_new(tix, &p, err, sizeof err);
        CHECKF(c != NULL, "schema %d: %s", si, err);
        if (!c) continue;
        for (int seed = 0; seed < seeds; seed++) {
            gemma4c_constraint_reset(c);
            int n = generate_random(c, (uint64_t)(si * 1000 + seed), 0, out, sizeof out, 3000);
            total++;
            json_error_t je;
            json_t *v = n > 0 ? json_loads(out, JSON_DECODE_ANY, &je) : NULL;
            CHECKF(n > 0 && v, "schema %d seed %d: n=%d output %.300s", si, seed, n, out);
            if (v) good++;
            json_decref(v);
            dump_line("json", SCHEMAS[si], out);
        }
        gemma4c_constraint_free(c);
    }
    printf("random JSON: %d/%d outputs complete and parse (%d schemas)\n", good, total, N_SCHEMAS);
    CHECK(N_SCHEMAS >= 50);
}

TEST(random_json_object_mode) {
    if (!load_tok()) { CHECK(0); return; }
    gemma4c_constraint_params p = { GEMMA4C_CONSTRAIN_JSON_OBJECT, NULL, NULL, NULL, 0 };
    char err[256];
    gemma4c_constraint *c = gemma4c_constraint_new(tix, &p, err, sizeof err);
    CHECKF(c != NULL, "%s", err);
    if (!c) return;
    static char out[1 << 17];
    for (int seed = 0; seed < 6; seed++) {
        gemma4c_constraint_reset(c);
        int n = generate_random(c, 777 + (uint64_t)seed, 0, out, sizeof out, 4000);
        json_t *v = n > 0 ? json_loads(out, 0, NULL) : NULL;
        CHECKF(n == -2 || (v && json_is_object(v)), "seed %d n=%d: %.200s", seed, n, out);
        if (n > 0) dump_line("json", "{\"type\":\"object\"}", out);
        json_decref(v);
    }
    gemma4c_constraint_free(c);
}

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":20},\"unit\":{\"enum\":[\"c\",\"f\"]},\"days\":{\"type\":\"integer\"}},"
    "\"required\":[\"city\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"q\":{\"type\":\"string\",\"minLength\":1},\"filters\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
    "\"k\":{\"type\":\"string\",\"maxLength\":8},\"v\":{\"type\":[\"number\",\"boolean\",\"null\"]}},\"required\":[\"k\",\"v\"]},\"maxItems\":3}},"
    "\"required\":[\"q\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"noargs\"}}]";

TEST(random_tool_calls) {
    if (!load_tok()) { CHECK(0); return; }
    static const char *choices[] = { "auto", "required", "none", "search" };
    json_t *tools = json_loads(TOOLS, 0, NULL);
    static char out[1 << 17];
    for (int ci = 0; ci < 4; ci++) {
        gemma4c_constraint_params p = { GEMMA4C_CONSTRAIN_TOOLS, NULL, TOOLS, choices[ci], 0 };
        char err[256];
        gemma4c_constraint *c = gemma4c_constraint_new(tix, &p, err, sizeof err);
        CHECKF(c != NULL, "%s", err);
        if (!c) continue;
        int calls = 0;
        for (int seed = 0; seed < 12; seed++) {
            gemma4c_constraint_reset(c);
            /* free text only ends through a special token: favour them */
            int n = generate_random(c, 4242 + (uint64_t)seed * 7 + (uint64_t)ci, 9.0f, out, sizeof out, 3000);
            CHECKF(n > 0, "choice %s seed %d: n=%d %.200s", choices[ci], seed, n, out);
            if (n <= 0) continue;
            const char *names[] = { "get_weather", "search", "noargs" };
            gemma4c_parse_options po = { 0, names, 3 };
            char perr[256];
            char *msg = gemma4c_chat_parse(out, strlen(out), &po, perr, sizeof perr);
            json_t *m = msg ? json_loads(msg, 0, NULL) : NULL;
            CHECKF(m != NULL, "parse: %s", perr);
            json_t *tc = json_object_get(m, "tool_calls");
            size_t nc = json_array_size(tc);
            int in_text = strstr(out, "<|tool_call>") != NULL;
            if (ci == 2) CHECKF(nc == 0 && !in_text, "none: %s", out);
            if (ci == 1 || ci == 3) CHECKF(nc >= 1, "%s: no call in %s", choices[ci], out);
            /* every call the text holds was parsed as one */
            size_t opened = 0;
            for (const char *q = out; (q = strstr(q, "<|tool_call>")); q++) opened++;
            CHECKF(opened == nc, "%zu calls written, %zu parsed: %s", opened, nc, out);
            for (size_t i = 0; i < nc; i++) {
                json_t *fn = json_object_get(json_array_get(tc, i), "function");
                const char *name = json_string_value(json_object_get(fn, "name"));
                const char *args = json_string_value(json_object_get(fn, "arguments"));
                if (ci == 3) CHECK(name && !strcmp(name, "search"));
                json_t *schema = NULL;
                for (size_t k = 0; k < json_array_size(tools); k++) {
                    json_t *f = json_object_get(json_array_get(tools, k), "function");
                    if (name && !strcmp(json_string_value(json_object_get(f, "name")), name))
                        schema = json_object_get(f, "parameters");
                }
                CHECKF(name && args, "call %zu", i);
                char *st = schema ? json_dumps(schema, JSON_COMPACT) : strdup("{\"type\":\"object\"}");
                if (args) dump_line("tool", st, args);
                free(st);
                calls++;
            }
            json_decref(m);
            free(msg);
        }
        printf("tool_choice %s: %d calls\n", choices[ci], calls);
        gemma4c_constraint_free(c);
    }
    json_decref(tools);
}

/* Every state reached by random walks allows a token; and the mask agrees
 * with stepping token by token on a sample. */
TEST(no_dead_ends_and_mask_agrees) {
    if (!load_tok()) { CHECK(0); return; }
    int nv = 262144;
    uint8_t *allowed = malloc((size_t)nv);
    static char out[1 << 16];
    (void)out;
    for (int si = 0; si < N_SCHEMAS; si += 5) {
        gemma4c_constraint_params p = { GEMMA4C_CONSTRAIN_JSON_SCHEMA, SCHEMAS[si], NULL, NULL, 0 };
        gemma4c_constraint *c = gemma4c_constraint_new(tix, &p, NULL, 0);
        if (!c) { CHECK(0); continue; }
        rng = (uint64_t)si + 99;
        for (int step = 0; step < 60; step++) {
            int n = gemma4c_constraint_mask(c, allowed, nv);
            if (n == 0) { CHECK(gemma4c_constraint_done(c)); break; }
            /* spot-check: 200 random ids agree with accept on a copy */
            int bad = 0;
            for (int k = 0; k < 200; k++) {
                int32_t id = (int32_t)(urand() * nv);
                g4_astate tmp;
                g4_mask_scratch *ms = g4_mask_scratch_new((g4_tindex *)tix);
                const g4_astate *cur = *(g4_astate **)((char *)c + 2 * sizeof(void *));
                int ok = g4_mask_step_token((g4_tindex *)tix, *(g4_grammar **)((char *)c + sizeof(void *)), cur, id, &tmp, ms) > 0;
                g4_mask_scratch_free(ms);
                bad += ok != allowed[id];
            }
            CHECKF(bad == 0, "schema %d step %d: %d ids disagree", si, step, bad);
            /* pick a random allowed token */
            int pick = (int)(urand() * n), id = 0;
            for (id = 0; id < nv; id++) if (allowed[id] && pick-- == 0) break;
            if (gemma4c_constraint_accept(c, id)) { CHECK(0); break; }
        }
        gemma4c_constraint_free(c);
    }
    free(allowed);
}

/* The mask against token-by-token stepping in the states the mask decides
 * in bulk (string tails after an escape, inside \u, mid-character, near
 * the length limit, a marker begun, anyOf of several strings, bare Gemma
 * keys): every token with a byte that can end or break a plain tail, a
 * random sample, and for a few states the whole vocabulary. Prefix codes:
 * \x01 <|"|>, \x02 <|tool_call>, \x04 <|channel>, \x05 <channel|>. */
static int hard_state(const g4_grammar *g, const char *prefix, g4_astate *a) {
    static g4_astate b;
    g4_astate_init(g, a);
    for (const char *p = prefix; *p; p++) {
        int sym = *p == 1 ? G4_SYM_QUOTE : *p == 2 ? G4_SYM_CALL_OPEN : *p == 4 ? G4_SYM_CH_OPEN
                  : *p == 5 ? G4_SYM_CH_CLOSE : (uint8_t)*p;
        if (!g4_astate_step(g, a, sym, &b)) return 0;
        g4_astate_copy(a, &b);
    }
    return 1;
}

TEST(mask_agrees_hard_states) {
    if (!load_tok()) { CHECK(0); return; }
    g4_tindex *x = (g4_tindex *)tix;
    int nv = g4_tindex_n_vocab(x);
    /* tokens whose bytes can end, break or extend a plain tail oddly */
    int32_t *odd = malloc((size_t)nv * sizeof *odd);
    int n_odd = 0;
    for (int32_t id = 0; id < nv; id++) {
        int len;
        const uint8_t *p = g4_tindex_text(x, id, &len);
        int o = !p;
        for (int k = 0; p && k < len && !o; k++)
            o = p[k] < 0x20 || p[k] == '"' || p[k] == '\\' || p[k] == '<' || p[k] == '|' || p[k] == '>' ||
                (k == 0 && p[k] >= 0x80 && p[k] < 0xc2) || (k == len - 1 && p[k] >= 0xc0);
        if (o) odd[n_odd++] = id;
    }
    const struct { int tools; const char *spec, *choice; int thinking; const char *prefix; int full; } H[] = {
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"", 1 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"ab\\", 1 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"ab\\u", 0 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"ab\\u0", 0 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"ab\\u00e", 1 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"ab\\ud", 0 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"ab\\n\\", 0 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"ab<", 1 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"ab<|", 0 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"ab<tu", 0 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"\xc3", 0 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"\xe2\x82", 0 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"\xf0\x9f\x98", 0 },
        { 0, "{\"type\":\"string\"}", NULL, 0, "\"\xc3\xa9\\t", 0 },
        { 0, "{\"type\":\"string\",\"maxLength\":5}", NULL, 0, "\"abcd", 0 },
        { 0, "{\"type\":\"string\",\"maxLength\":5}", NULL, 0, "\"abc\\", 1 },
        { 0, "{\"type\":\"string\",\"maxLength\":5}", NULL, 0, "\"ab\\u00", 0 },
        { 0, "{\"type\":\"string\",\"maxLength\":5}", NULL, 0, "\"\xc3\xa9\xc3\xa9\xc3\xa9", 0 },
        { 0, "{\"type\":\"string\",\"maxLength\":5}", NULL, 0, "\"abcde", 0 },
        { 0, "{\"type\":\"string\",\"maxLength\":5}", NULL, 0, "\"abcd<", 0 },
        { 0, "{\"type\":\"string\",\"minLength\":3,\"maxLength\":3}", NULL, 0, "\"a\\", 0 },
        { 0, "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":3},{\"type\":\"string\",\"minLength\":5}]}", NULL, 0, "\"", 1 },
        { 0, "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":3},{\"type\":\"string\",\"minLength\":5}]}", NULL, 0, "\"ab", 0 },
        { 0, "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":3},{\"type\":\"string\",\"minLength\":5}]}", NULL, 0, "\"ab\\", 1 },
        { 0, "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":3},{\"type\":\"string\",\"minLength\":5}]}", NULL, 0, "\"a\\u00", 0 },
        { 0, "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"enum\":[\"red\",\"green\",\"blue\"]},{\"type\":\"number\"},{\"type\":\"string\",\"maxLength\":5}]},\"maxItems\":20}", NULL, 0, "[\"", 1 },
        { 0, "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"enum\":[\"red\",\"green\",\"blue\"]},{\"type\":\"number\"},{\"type\":\"string\",\"maxLength\":5}]},\"maxItems\":20}", NULL, 0, "[\"re", 0 },
        { 0, "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"enum\":[\"red\",\"green\",\"blue\"]},{\"type\":\"number\"},{\"type\":\"string\",\"maxLength\":5}]},\"maxItems\":20}", NULL, 0, "[\"red\", \"b", 0 },
        { 0, "{\"anyOf\":[{\"enum\":[\"a\\\"b\",\"x\\\\y\",\"x\\u00e9\"]},{\"type\":\"string\",\"maxLength\":4}]}", NULL, 0, "\"x", 0 },
        { 0, "{\"anyOf\":[{\"enum\":[\"a\\\"b\",\"x\\\\y\",\"x\\u00e9\"]},{\"type\":\"string\",\"maxLength\":4}]}", NULL, 0, "\"x\\", 0 },
        /* more string alternatives than the automaton keeps threads */
        { 0, "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"string\",\"maxLength\":1},{\"type\":\"string\",\"maxLength\":2},"
             "{\"type\":\"string\",\"maxLength\":3},{\"type\":\"string\",\"maxLength\":4},{\"type\":\"string\",\"maxLength\":5},"
             "{\"type\":\"string\",\"maxLength\":6},{\"enum\":[\"ab\",\"abc\\n\"]},{\"type\":\"string\",\"maxLength\":7},"
             "{\"type\":\"string\",\"maxLength\":8},{\"type\":\"string\",\"minLength\":9}]}}", NULL, 0, "[\"a", 1 },
        { 0, "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"enum\":[\"ab\",\"abc\"]},{\"enum\":[\"abd\",\"abe\"]},{\"enum\":[\"abf\"]},"
             "{\"enum\":[\"abg\"]},{\"enum\":[\"abh\"]},{\"enum\":[\"abi\"]},{\"enum\":[\"abj\"]},{\"type\":\"string\",\"maxLength\":3}]}}",
          NULL, 0, "[\"a", 0 },
        /* a non-string alternative that takes plain text the string has no room for */
        { 0, "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":2},{\"enum\":[\"abcdef\",\"abxyz\",\"ab\\\"c\"]}]}", NULL, 0, "\"ab", 1 },
        { 0, "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":2},{\"enum\":[\"abcdef\",\"abxyz\",\"ab\\\"c\"]}]}", NULL, 0, "\"a", 0 },
        { 0, "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"string\",\"maxLength\":1},{\"enum\":[\"nation\",\"the\"]}]}}", NULL, 0, "[\"", 1 },
        { 0, "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"string\",\"maxLength\":1},{\"enum\":[\"nation\",\"the\"]}]}}", NULL, 0, "[\"x\", ", 0 },
        { 0, NULL, NULL, 0, "{\"", 0 },
        { 0, NULL, NULL, 0, "{\"k\\", 0 },
        { 0, NULL, NULL, 0, "{\"a\": \"x<|", 0 },
        { 0, NULL, NULL, 1, "\x04th<", 0 },
        { 1, TOOLS, "auto", 0, "", 1 },
        { 1, TOOLS, "auto", 0, "Hi <|", 0 },
        { 1, TOOLS, "auto", 0, "Hi <tool", 0 },
        { 1, TOOLS, "auto", 0, "\x02" "call:get_weather{city:\x01", 0 },
        { 1, TOOLS, "auto", 0, "\x02" "call:get_weather{city:\x01Paris ab", 0 },
        { 1, TOOLS, "auto", 0, "\x02" "call:get_weather{city:\x01" "Par<|", 0 },
        { 1, TOOLS, "auto", 0, "\x02" "call:noargs{", 1 },
        { 1, TOOLS, "auto", 0, "\x02" "call:noargs{abcdefghijklmnopqrstuvwxyz0123", 0 },
        { 1, TOOLS, "auto", 0, "\x02" "call:noargs{abcdefghijklmnopqrstuvwxyz012345", 0 },
        { 1, TOOLS, "auto", 0, "\x02" "call:search{filters:[{k:\x01" "ab", 0 },
    };
    uint8_t *allowed = malloc((size_t)nv);
    g4_mask_scratch *ms = g4_mask_scratch_new(x);
    static g4_astate st, tmp;
    rng = 4711;
    for (size_t h = 0; h < sizeof H / sizeof H[0]; h++) {
        char err[256];
        g4_grammar *g = H[h].tools ? g4_grammar_tools(H[h].spec, strlen(H[h].spec), H[h].choice, H[h].thinking, err, sizeof err)
                                   : g4_grammar_json(H[h].spec, H[h].spec ? strlen(H[h].spec) : 0, H[h].thinking, err, sizeof err);
        CHECKF(g != NULL, "state %zu: %s", h, err);
        if (!g) continue;
        int ok = hard_state(g, H[h].prefix, &st);
        CHECKF(ok, "state %zu: prefix refused", h);
        if (ok) {
            int n = g4_mask_compute(x, g, &st, ms, allowed);
            int bad = 0, checked = 0, first_bad = -1;
            for (int k = 0; k < (H[h].full ? nv : n_odd + 4000); k++) {
                int32_t id = H[h].full ? k : k < n_odd ? odd[k] : (int32_t)(urand() * nv);
                int acc = g4_mask_step_token(x, g, &st, id, &tmp, ms) > 0;
                checked++;
                if (acc != allowed[id]) { if (first_bad < 0) first_bad = id; bad++; }
            }
            int len = 0;
            const uint8_t *tx = first_bad >= 0 ? g4_tindex_text(x, first_bad, &len) : NULL;
            CHECKF(bad == 0, "state %zu (%s): %d of %d ids disagree, first %d \"%.*s\" (mask %d)", h, H[h].prefix, bad,
                   checked, first_bad, len, tx ? (const char *)tx : "", first_bad >= 0 ? allowed[first_bad] : -1);
            CHECKF(n > 0, "state %zu: nothing allowed", h);
        }
        g4_grammar_free(g);
    }
    g4_mask_scratch_free(ms);
    free(allowed);
    free(odd);
}

/* Greedy decoding of a tiny Gemma 4 (random weights, its own small
 * vocabulary) through a session: the answer is still valid JSON. */
TEST(session_greedy_tiny_model) {
    const char *sh = getenv("G4_SHARED");
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/testdata/gemma4-ref/gemma4-e.gguf", sh ? sh : "../shared");
    gemma4c_model *m = gemma4c_model_open(path, err, sizeof err);
    CHECKF(m != NULL, "%s", err);
    if (!m) return;
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = 1024;
    cp.n_threads = 1;
    gemma4c_context *ctx = gemma4c_context_new(m, &cp, err, sizeof err);
    gemma4c_session_params sp = gemma4c_session_default_params();
    sp.sampling.temperature = 0;
    sp.n_predict = 400;
    sp.constrain = 1;
    gemma4c_session *ss = ctx ? gemma4c_session_new(ctx, &sp, err, sizeof err) : NULL;
    CHECKF(ss != NULL, "%s", err);
    if (ss) {
        const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Give me a person.\"}],"
                          "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":"
                          "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8},"
                          "\"age\":{\"type\":\"integer\"}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}}}}";
        gemma4c_turn_result r;
        int rc = gemma4c_session_turn(ss, req, strlen(req), NULL, NULL, &r, err, sizeof err);
        CHECKF(rc == 0, "%s", err);
        json_t *msg = rc == 0 ? json_loads(r.message, 0, NULL) : NULL;
        const char *content = json_string_value(json_object_get(msg, "content"));
        json_t *v = content ? json_loads(content, 0, NULL) : NULL;
        CHECKF(v && json_is_string(json_object_get(v, "name")) && json_is_integer(json_object_get(v, "age")) &&
                   r.finish == GEMMA4C_FINISH_STOP,
               "finish %d message %s", r.finish, r.message ? r.message : "(null)");
        json_decref(v);
        json_decref(msg);
        free(r.message);
        /* required tool call */
        req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"}],\"tool_choice\":\"required\","
              "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
              "\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":6}},\"required\":[\"city\"]}}}]}";
        rc = gemma4c_session_turn(ss, req, strlen(req), NULL, NULL, &r, err, sizeof err);
        CHECKF(rc == 0, "%s", err);
        msg = rc == 0 ? json_loads(r.message, 0, NULL) : NULL;
        json_t *fn = json_object_get(json_array_get(json_object_get(msg, "tool_calls"), 0), "function");
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        v = args ? json_loads(args, 0, NULL) : NULL;
        CHECKF(v && json_is_string(json_object_get(v, "city")) &&
                   !strcmp(json_string_value(json_object_get(fn, "name")), "get_weather"),
               "message %s", r.message ? r.message : "(null)");
        json_decref(v);
        json_decref(msg);
        free(r.message);
    }
    gemma4c_session_free(ss);
    gemma4c_context_free(ctx);
    gemma4c_model_free(m);
}

int main(void) {
    const char *d = getenv("G4_CONSTRAIN_DUMP");
    if (d) dump = fopen(d, "w");
    RUN(compile_errors);
    RUN(automaton_json);
    RUN(automaton_tools);
    RUN(random_json_real_vocab);
    RUN(random_json_object_mode);
    RUN(random_tool_calls);
    RUN(no_dead_ends_and_mask_agrees);
    RUN(mask_agrees_hard_states);
    RUN(session_greedy_tiny_model);
    if (dump) fclose(dump);
    gemma4c_token_index_free(tix);
    gemma4c_tokenizer_free(tok);
    free(bias);
    return test_summary();
}
