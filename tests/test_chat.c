/* Chat renderer and output parser tests.
 *
 * The byte-exact comparison with the Jinja template over all conversations
 * is tests/sh/chat_template.sh; here: the verified examples of the spec,
 * value formatting, errors, family selection, and the parser (hand cases,
 * round trip of every assistant turn in tests/chat/cases, every-byte-split
 * streaming, random input). Run from the repository root. */
#include <dirent.h>
#include <stdint.h>

#include "format/gguf.h"
#include "harness.h"
#include "text/chat.h"
#include "text/chat_parse.h"

static json_t *J(const char *s) {
    json_error_t e;
    json_t *j = json_loads(s, JSON_ALLOW_NUL, &e);
    if (!j) fprintf(stderr, "bad test JSON: %s: %s\n", e.text, s);
    return j;
}

static char *render_s(const char *req, g4_chat_family fam, g4_error *err) {
    json_t *r = J(req);
    char *o = r ? g4_chat_render(r, NULL, fam, NULL, err) : NULL;
    json_decref(r);
    return o;
}

/* ---- renderer ---------------------------------------------------------------- */

TEST(render_spec_examples) {
    static const char *ex[] = { "01-basic", "02-system-multiturn-thinking", "03-tools-declared",
                                "04-tool-roundtrip", "05-parallel-calls-thinking-midturn", "06-multimodal",
                                "07-legacy-tool-responses", "08-interleaved-llamacpp-converted" };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, "reference/chat-examples/%s.json", ex[i]);
        json_error_t e;
        json_t *r = json_load_file(shared_path(p), 0, &e);
        snprintf(p, sizeof p, "reference/chat-examples/%s.expected.txt", ex[i]);
        size_t elen = 0;
        char *want = th_read_file(shared_path(p), &elen);
        CHECKF(r && want, "missing %s", ex[i]);
        if (r && want) {
            g4_error err = {0};
            size_t n = 0;
            g4_chat_family fam = strstr(ex[i], "interleaved") ? G4_CHAT_FAMILY_INTERLEAVED : G4_CHAT_FAMILY_31B;
            char *got = g4_chat_render(r, NULL, fam, &n, &err);
            CHECKF(got && n == elen && !memcmp(got, want, n), "%s: %s", ex[i], got ? got : err.msg);
            free(got);
        }
        json_decref(r);
        free(want);
    }
}

TEST(render_generation_prompt_families) {
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"add_generation_prompt\":true}";
    g4_error err = {0};
    char *a = render_s(req, G4_CHAT_FAMILY_31B, &err), *b = render_s(req, G4_CHAT_FAMILY_E, &err);
    CHECK(a && !strcmp(a, "<bos><|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"));
    CHECK(b && !strcmp(b, "<bos><|turn>user\nHi<turn|>\n<|turn>model\n"));
    free(a);
    free(b);
    /* chat_template_kwargs wins over the top-level key; options win over both */
    const char *kw = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"add_generation_prompt\":true,"
                     "\"enable_thinking\":false,\"chat_template_kwargs\":{\"enable_thinking\":true}}";
    a = render_s(kw, G4_CHAT_FAMILY_31B, &err);
    CHECK(a && !strcmp(a, "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n"));
    free(a);
    json_t *r = J(kw);
    g4_chat_options o = { 0, 0, "", 0 };
    a = g4_chat_render(r, &o, G4_CHAT_FAMILY_31B, NULL, &err);
    CHECK(a && !strcmp(a, "<|turn>user\nHi<turn|>\n"));
    free(a);
    json_decref(r);
}

TEST(render_value_formatting) {
    /* Python repr(float) / str(int) / None / True through tool-call arguments */
    const char *req =
        "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":"
        "{\"a\":1e-05,\"b\":1e22,\"c\":123456.789,\"d\":5e-324,\"e\":1.7976931348623157e308,\"f\":0.0001,"
        "\"g\":1234567890123456.0,\"h\":12345678901234567.0,\"i\":-0.0,\"j\":100,\"k\":null,\"l\":[true,false],"
        "\"m\":{\"Y\":\"s\",\"x\":\"<|\\\"|>\"},\"n\":-2.5e-7}}}]}]}";
    g4_error err = {0};
    char *a = render_s(req, G4_CHAT_FAMILY_31B, &err);
    const char *want =
        "<bos><|turn>model\n<|tool_call>call:f{a:1e-05,b:1e+22,c:123456.789,d:5e-324,e:1.7976931348623157e+308,"
        "f:0.0001,g:1234567890123456.0,h:1.2345678901234568e+16,i:-0.0,j:100,k:None,l:[true,false],"
        "m:{x:<|\"|><|\"|><|\"|>,Y:<|\"|>s<|\"|>},n:-2.5e-07}<tool_call|><|tool_response>";
    CHECKF(a && !strcmp(a, want), "%s", a ? a : err.msg);
    free(a);
}

TEST(render_compat) {
    const char *req =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"Checking.\","
        "\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"b\\\": 1, \\\"A\\\": \\\"x\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"r\"}],\"add_generation_prompt\":true}";
    const char *body = "<bos><|turn>user\nq<turn|>\n<|turn>model\n<|tool_call>call:f{%s}<tool_call|>"
                       "<|tool_response>response:f{value:<|\"|>r<|\"|>}<tool_response|>Checking.<turn|>\n%s";
    char want[1024];
    json_t *r = J(req);
    g4_error err = {0};
    char *a = g4_chat_render(r, NULL, G4_CHAT_FAMILY_E, NULL, &err);
    snprintf(want, sizeof want, body, "{\"b\": 1, \"A\": \"x\"}", "");
    CHECKF(a && !strcmp(a, want), "%s", a ? a : err.msg);   /* the template: raw string, no new turn */
    free(a);
    g4_chat_options o = G4_CHAT_OPTIONS_DEFAULT;
    o.compat = G4_CHAT_COMPAT_LLAMACPP;
    a = g4_chat_render(r, &o, G4_CHAT_FAMILY_E, NULL, &err);
    snprintf(want, sizeof want, body, "A:<|\"|>x<|\"|>,b:1", "<|turn>model\n");
    CHECKF(a && !strcmp(a, want), "%s", a ? a : err.msg);
    free(a);
    json_decref(r);
}

TEST(render_errors) {
    static const char *bad[] = {
        "{}",
        "{\"messages\":[]}",
        "{\"messages\":{}}",
        "[1]",
        "{\"messages\":[{\"role\":5,\"content\":\"x\"}]}",
        "{\"messages\":[{\"content\":\"x\"}]}",
        /* tool result whose name cannot be resolved (template: str + None) */
        "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"b\",\"content\":\"r\"}]}",
        "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":\"abc\"}]}",
        "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":3}}]}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"function\":{\"name\":\"f\","
        "\"parameters\":{\"properties\":[1]}}}]}",
        "{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":5}]}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g4_error err = {0};
        char *o = render_s(bad[i], G4_CHAT_FAMILY_31B, &err);
        CHECKF(!o && err.msg[0], "case %zu rendered: %s", i, o ? o : "");
        free(o);
    }
    g4_error err = {0};
    char *o = render_s("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", G4_CHAT_FAMILY_UNKNOWN, &err);
    CHECK(!o);
    /* the error names the field */
    o = render_s("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":7}]}", G4_CHAT_FAMILY_E, &err);
    CHECKF(!o && strstr(err.msg, "messages[1]"), "%s", err.msg);
}

TEST(render_family_selection) {
    size_t n = 0;
    char *t = th_read_file(shared_path("reference/templates/google-gemma-4-31B-it.jinja"), &n);
    CHECK(t != NULL);
    if (t) {
        CHECK(g4_chat_family_from_template(t) == G4_CHAT_FAMILY_31B);
        /* the E2B/E4B template lacks the empty-thought pre-fill */
        char *p = strstr(t, "{{- '<|channel>thought\\n<channel|>' -}}");
        CHECK(p != NULL);
        if (p) memset(p, ' ', strlen("{{- '<|channel>thought\\n<channel|>' -}}"));
        CHECK(g4_chat_family_from_template(t) == G4_CHAT_FAMILY_E);
        free(t);
    }
    t = th_read_file(shared_path("reference/templates/google-gemma-4-31B-it-interleaved.jinja"), &n);
    CHECK(t && g4_chat_family_from_template(t) == G4_CHAT_FAMILY_INTERLEAVED);
    free(t);
    CHECK(g4_chat_family_from_name("interleaved") == G4_CHAT_FAMILY_INTERLEAVED);
    CHECK(g4_chat_family_from_template("{{ bos_token }}{% for m in messages %}<start_of_turn>{% endfor %}") ==
          G4_CHAT_FAMILY_UNKNOWN);
    CHECK(g4_chat_family_from_template(NULL) == G4_CHAT_FAMILY_UNKNOWN);
    CHECK(g4_chat_family_from_model(35, 0) == G4_CHAT_FAMILY_E);
    CHECK(g4_chat_family_from_model(42, 256) == G4_CHAT_FAMILY_E);
    CHECK(g4_chat_family_from_model(10, 32) == G4_CHAT_FAMILY_E);
    CHECK(g4_chat_family_from_model(60, 0) == G4_CHAT_FAMILY_31B);
    CHECK(g4_chat_family_from_model(30, 0) == G4_CHAT_FAMILY_31B);
    CHECK(g4_chat_family_from_name("E4B") == G4_CHAT_FAMILY_E);
    CHECK(g4_chat_family_from_name("31b") == G4_CHAT_FAMILY_31B);
    CHECK(g4_chat_family_from_name("26B-A4B") == G4_CHAT_FAMILY_31B);
    CHECK(g4_chat_family_from_name("7b") == G4_CHAT_FAMILY_UNKNOWN);
}

TEST(render_family_from_gguf) {
    g4_gguf_file *g = g4_gguf_new("mem");
    CHECK(g != NULL);
    if (!g) return;
    g4_gguf_set_str(g, "general.architecture", "gemma4");
    g4_gguf_set_u32(g, "gemma4.block_count", 60);
    CHECK(g4_chat_family_from_gguf(g) == G4_CHAT_FAMILY_31B);
    g4_gguf_set_u32(g, "gemma4.embedding_length_per_layer_input", 256);
    CHECK(g4_chat_family_from_gguf(g) == G4_CHAT_FAMILY_E);
    /* an embedded template wins over the shape */
    char *t = th_read_file(shared_path("reference/templates/google-gemma-4-31B-it.jinja"), NULL);
    if (t) g4_gguf_set_str(g, "tokenizer.chat_template", t);
    CHECK(t && g4_chat_family_from_gguf(g) == G4_CHAT_FAMILY_31B);
    free(t);
    g4_gguf_set_str(g, "tokenizer.chat_template", "{{ messages }}");   /* not Gemma 4: shape decides */
    CHECK(g4_chat_family_from_gguf(g) == G4_CHAT_FAMILY_E);
    g4_gguf_close(g);
    g4_error err = {0};
    CHECK(g4_chat_family_from_path("/nonexistent/model.gguf", &err) == G4_CHAT_FAMILY_UNKNOWN && err.msg[0]);
    CHECK(g4_chat_family_from_path(shared_path("testdata/gemma4-ref/gemma4-e.hf"), &err) == G4_CHAT_FAMILY_E);
    CHECK(g4_chat_family_from_path(shared_path("testdata/gemma4-ref/gemma4-dense.hf"), &err) == G4_CHAT_FAMILY_31B);
}

/* ---- parser helpers ----------------------------------------------------------- */

typedef struct collect {
    char *reasoning, *content;
    size_t nr, nc;
    int calls, bad_utf8_split;
} collect;

static void app(char **s, size_t *n, const char *t, size_t l) {
    char *q = realloc(*s, *n + l + 1);
    if (!q) return;
    memcpy(q + *n, t, l);
    *n += l;
    q[*n] = 0;
    *s = q;
}

static void on_delta(void *u, const g4_chat_delta *d) {
    collect *c = u;
    if (d->kind == G4_DELTA_TOOL_CALL) { c->calls++; return; }
    /* deltas end on UTF-8 boundaries: the last byte is not a lead byte */
    if (d->len && ((unsigned char)d->text[d->len - 1] >= 0xC0)) c->bad_utf8_split = 1;
    if (d->kind == G4_DELTA_REASONING) app(&c->reasoning, &c->nr, d->text, d->len);
    else app(&c->content, &c->nc, d->text, d->len);
}

/* Parse text fed in pieces cut at cuts[0..ncuts); NULL cuts = byte by byte. */
static json_t *parse_split(const char *t, size_t n, const size_t *cuts, size_t ncuts, collect *c,
                           const g4_chat_parse_options *opt) {
    g4_chat_parser *p = g4_chat_parser_new(opt, c ? on_delta : NULL, c);
    if (!p) return NULL;
    if (!cuts) {
        for (size_t i = 0; i < n; i++) g4_chat_parser_feed(p, t + i, 1);
    } else {
        size_t at = 0;
        for (size_t k = 0; k <= ncuts; k++) {
            size_t end = k < ncuts ? cuts[k] : n;
            if (end < at) end = at;
            g4_chat_parser_feed(p, t + at, end - at);
            at = end;
        }
    }
    g4_chat_parser_finish(p);
    json_t *m = g4_chat_parser_message(p);
    g4_chat_parser_free(p);
    return m;
}

static const char *mstr(const json_t *m, const char *k) {
    const char *s = json_string_value(json_object_get(m, k));
    return s ? s : "";
}

/* Whole, byte-by-byte and every two-piece split give the same message, and
 * the streamed deltas add up to it. Returns the message. */
static json_t *parse_all_ways(const char *t, size_t n, int *ok) {
    collect c = {0};
    json_t *whole = parse_split(t, n, (size_t[]){ 0 }, 0, &c, NULL);
    *ok = whole != NULL;
    if (!whole) return NULL;
    if (strcmp(c.content ? c.content : "", mstr(whole, "content")) ||
        strcmp(c.reasoning ? c.reasoning : "", mstr(whole, "reasoning_content")) ||
        (size_t)c.calls != json_array_size(json_object_get(whole, "tool_calls")))
        *ok = 0;
    free(c.content);
    free(c.reasoning);
    collect b = {0};
    json_t *bytes = parse_split(t, n, NULL, 0, &b, NULL);
    if (!bytes || !json_equal(bytes, whole) || b.bad_utf8_split ||
        strcmp(b.content ? b.content : "", mstr(whole, "content")) ||
        strcmp(b.reasoning ? b.reasoning : "", mstr(whole, "reasoning_content")))
        *ok = 0;
    free(b.content);
    free(b.reasoning);
    json_decref(bytes);
    for (size_t k = 1; k < n && *ok; k++) {
        json_t *m = parse_split(t, n, &k, 1, NULL, NULL);
        if (!m || !json_equal(m, whole)) *ok = 0;
        json_decref(m);
    }
    return whole;
}

static json_t *P(const char *t) {
    int ok = 0;
    json_t *m = parse_all_ways(t, strlen(t), &ok);
    if (!ok) fprintf(stderr, "  split mismatch for: %s\n", t);
    return ok ? m : (json_decref(m), NULL);
}

static int has_call(const json_t *m, size_t i, const char *name, const char *args_json) {
    json_t *tc = json_array_get(json_object_get(m, "tool_calls"), i);
    json_t *fn = json_object_get(tc, "function");
    if (!fn || strcmp(mstr(fn, "name"), name) || strcmp(mstr(tc, "type"), "function")) return 0;
    json_t *a = J(mstr(fn, "arguments")), *b = J(args_json);
    int r = a && b && json_equal(a, b);
    json_decref(a);
    json_decref(b);
    return r;
}

static size_t ncalls(const json_t *m) { return json_array_size(json_object_get(m, "tool_calls")); }

/* ---- parser ------------------------------------------------------------------- */

TEST(parse_wellformed) {
    json_t *m = P("<|channel>thought\nThe user wants weather.\n<channel|>Checking."
                  "<|tool_call>call:get_weather{location:<|\"|>Paris<|\"|>,days:3,hourly:true,"
                  "opts:{unit:<|\"|>C<|\"|>,ratio:0.5,tags:[<|\"|>a<|\"|>,1,null,None,False]}}<tool_call|>"
                  "<|tool_call>call:now{}<tool_call|><|tool_response>");
    CHECK(m);
    if (m) {
        CHECK(!strcmp(mstr(m, "reasoning_content"), "The user wants weather."));
        CHECK(!strcmp(mstr(m, "content"), "Checking."));
        CHECK(ncalls(m) == 2);
        CHECK(has_call(m, 0, "get_weather",
                       "{\"location\":\"Paris\",\"days\":3,\"hourly\":true,\"opts\":{\"unit\":\"C\","
                       "\"ratio\":0.5,\"tags\":[\"a\",1,null,null,false]}}"));
        CHECK(has_call(m, 1, "now", "{}"));
        CHECK(!strcmp(mstr(json_array_get(json_object_get(m, "tool_calls"), 1), "id"), "call_1"));
        json_decref(m);
    }
    /* plain answer with a stop token; text after it is ignored */
    m = P("<|turn>model\nHello there!<turn|>\n<|turn>user\nignored");
    CHECK(m && !strcmp(mstr(m, "content"), "Hello there!") && !json_object_get(m, "reasoning_content") &&
          !ncalls(m));
    json_decref(m);
    /* empty thought block, without newline, then answer */
    m = P("<|channel>thought<channel|>42");
    CHECK(m && !strcmp(mstr(m, "content"), "42") && !json_object_get(m, "reasoning_content"));
    json_decref(m);
    /* stray trailing channel close */
    m = P("Answer.<channel|>");
    CHECK(m && !strcmp(mstr(m, "content"), "Answer."));
    json_decref(m);
    /* strings keep everything, including markers and quotes */
    m = P("<|tool_call>call:w{s:<|\"|>a<tool_call|>b \"q\" {x:1}, \\n<|\"|>}<tool_call|>");
    CHECK(m && ncalls(m) == 1 && has_call(m, 0, "w", "{\"s\":\"a<tool_call|>b \\\"q\\\" {x:1}, \\\\n\"}"));
    json_decref(m);
    /* lenient: whitespace, JSON-style keys and strings, trailing comma, exponents */
    m = P("<|tool_call>call: f { \"a\" : \"x\\u00e9\" , b : [ 1 , 2.5e3, -4 , ] , c:-0.0,}<tool_call|>");
    CHECK(m && ncalls(m) == 1 && has_call(m, 0, "f", "{\"a\":\"x\\u00e9\",\"b\":[1,2500.0,-4],\"c\":-0.0}"));
    json_decref(m);
    /* arguments JSON text uses shortest round-trip reals */
    m = P("<|tool_call>call:f{x:0.1,y:1e-05,z:15.0}<tool_call|>");
    json_t *fn = json_object_get(json_array_get(json_object_get(m, "tool_calls"), 0), "function");
    CHECKF(fn && !strcmp(mstr(fn, "arguments"), "{\"x\":0.1,\"y\":1e-05,\"z\":15.0}"), "%s", mstr(fn, "arguments"));
    json_decref(m);
    /* two thought blocks are joined by a newline; unterminated reasoning is reasoning */
    m = P("<|channel>thought\nA\n<channel|>x<|channel>thought\nB");
    CHECK(m && !strcmp(mstr(m, "reasoning_content"), "A\nB") && !strcmp(mstr(m, "content"), "x"));
    json_decref(m);
    /* only declared tools are calls when a list is given */
    {
        static const char *const names[] = { "get_weather", "now" };
        g4_chat_parse_options o = { .tool_names = names, .n_tool_names = 2 };
        const char *t = "<|tool_call>call:now{}<tool_call|><|tool_call>call:rm_rf{p:1}<tool_call|>";
        m = parse_split(t, strlen(t), NULL, 0, NULL, &o);
        CHECK(m && ncalls(m) == 1 && has_call(m, 0, "now", "{}") &&
              !strcmp(mstr(m, "content"), "<|tool_call>call:rm_rf{p:1}<tool_call|>"));
        json_decref(m);
    }
    /* the prompt opened the thought channel already */
    {
        g4_chat_parse_options o = { .in_reasoning = 1 };
        const char *t = "still thinking\n<channel|>Done.";
        m = parse_split(t, strlen(t), (size_t[]){ 0 }, 0, NULL, &o);
        CHECK(m && !strcmp(mstr(m, "reasoning_content"), "still thinking") && !strcmp(mstr(m, "content"), "Done."));
        json_decref(m);
    }
    /* unicode survives any split */
    m = P("<|channel>thought\nпривет 👋🏽<channel|>日本語 — ok <|tool_call>call:t{s:<|\"|>émoji 🎉<|\"|>}<tool_call|>");
    CHECK(m && !strcmp(mstr(m, "content"), "日本語 — ok") && has_call(m, 0, "t", "{\"s\":\"émoji 🎉\"}"));
    json_decref(m);
}

TEST(parse_malformed) {
    static const struct { const char *in, *content; } cases[] = {
        { "<|tool_call>call:f{a:<|\"|>unterminated", "<|tool_call>call:f{a:<|\"|>unterminated" },
        { "<|tool_call>call:f{a:1}", "<|tool_call>call:f{a:1}" },
        { "Hi <|tool_call>call:f{a:1}<|tool_response>", "Hi <|tool_call>call:f{a:1}" },
        { "<|tool_call>call:f{a:1} junk}<tool_call|>", "<|tool_call>call:f{a:1} junk}<tool_call|>" },
        { "<|tool_call>call:{a:1}<tool_call|>", "<|tool_call>call:{a:1}<tool_call|>" },
        { "<|tool_call>call:f{a:}<tool_call|>", "<|tool_call>call:f{a:}<tool_call|>" },
        { "<|tool_call>call:f{a:bareword}<tool_call|>", "<|tool_call>call:f{a:bareword}<tool_call|>" },
        { "<|tool_call>f{a:1}<tool_call|>", "<|tool_call>f{a:1}<tool_call|>" },
        { "<|tool_call>call:f{a:1}<|tool_call>call:g{}<tool_call|>", "<|tool_call>call:f{a:1}" },
        { "<|tool_call>call:f{a:[1,2}<tool_call|>", "<|tool_call>call:f{a:[1,2}<tool_call|>" },
        { "<|tool_call>call:f{a:1e}<tool_call|>", "<|tool_call>call:f{a:1e}<tool_call|>" },
        { "Hello <|tool_ca", "Hello <|tool_ca" },
        { "a <tool_call|> b <|\"|> c", "a <tool_call|> b <|\"|> c" },
        { "", "" },
        { "   \n\t ", "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *m = P(cases[i].in);
        CHECKF(m && !strcmp(mstr(m, "content"), cases[i].content), "case %zu: got '%s'", i,
               m ? mstr(m, "content") : "(null)");
        json_decref(m);
    }
    /* garbage after a good call: the call plus content */
    json_t *m = P("<|tool_call>call:f{a:1}<tool_call|>garbage {here}");
    CHECK(m && ncalls(m) == 1 && has_call(m, 0, "f", "{\"a\":1}") && !strcmp(mstr(m, "content"), "garbage {here}"));
    json_decref(m);
    m = P("<|tool_call>call:f{a:1}<|tool_call>call:g{}<tool_call|>");
    CHECK(m && ncalls(m) == 1 && has_call(m, 0, "g", "{}"));
    json_decref(m);
    /* nesting deeper than the limit falls back to content */
    char deep[2048];
    size_t k = (size_t)snprintf(deep, sizeof deep, "<|tool_call>call:f{a:");
    for (int i = 0; i < 300; i++) deep[k++] = '[';
    for (int i = 0; i < 300; i++) deep[k++] = ']';
    k += (size_t)snprintf(deep + k, sizeof deep - k, "}<tool_call|>");
    m = parse_split(deep, k, (size_t[]){ 0 }, 0, NULL, NULL);
    CHECK(m && ncalls(m) == 0 && strlen(mstr(m, "content")) == k);
    json_decref(m);
    /* a call longer than max_call_bytes is content, whatever the chunking */
    g4_chat_parse_options o = { .max_call_bytes = 16 };
    const char *lc = "<|tool_call>call:f{a:<|\"|>0123456789abcdef<|\"|>}<tool_call|> tail";
    json_t *m1 = parse_split(lc, strlen(lc), (size_t[]){ 0 }, 0, NULL, &o);
    json_t *m2 = parse_split(lc, strlen(lc), NULL, 0, NULL, &o);
    CHECK(m1 && m2 && ncalls(m1) == 0 && json_equal(m1, m2) && !strcmp(mstr(m1, "content"), lc));
    json_decref(m1);
    json_decref(m2);
    /* invalid UTF-8 never breaks the message */
    m = parse_split("ok \xff\xfe <|tool_call>call:f{s:<|\"|>\xc3<|\"|>}<tool_call|>", 42, (size_t[]){ 0 }, 0,
                    NULL, NULL);
    CHECK(m && ncalls(m) == 0 && strstr(mstr(m, "content"), "ok \xEF\xBF\xBD"));
    json_decref(m);
    /* stop: later bytes are ignored */
    g4_chat_parser *p = g4_chat_parser_new(NULL, NULL, NULL);
    CHECK(p && !g4_chat_parser_feed(p, "a<eos>b", 7) && g4_chat_parser_stopped(p));
    CHECK(!g4_chat_parser_feed(p, "more", 4) && !g4_chat_parser_finish(p));
    m = g4_chat_parser_message(p);
    CHECK(m && !strcmp(mstr(m, "content"), "a"));
    json_decref(m);
    g4_chat_parser_free(p);
}

/* strip_thinking + ASCII trim, as the renderer applies to assistant content */
static void expect_text(char **s, size_t *n, const char *t) {
    const char *e;
    while ((e = strstr(t, "<channel|>"))) {
        const char *b = strstr(t, "<|channel>");
        app(s, n, t, (size_t)((b && b < e ? b : e) - t));
        t = e + 10;
    }
    const char *b = strstr(t, "<|channel>");
    app(s, n, t, b ? (size_t)(b - t) : strlen(t));
}

static char *trim_dup(const char *s) {
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    return strndup(s, n);
}

/* Every assistant message of every test conversation: render it as the
 * model's turn, parse the model-side text back, compare with the message. */
TEST(parse_roundtrip_cases) {
    DIR *d = opendir("tests/chat/cases");
    CHECK(d != NULL);
    if (!d) return;
    int turns = 0, skipped = 0, bad = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
        char path[1024];
        snprintf(path, sizeof path, "tests/chat/cases/%s", de->d_name);
        json_t *conv = json_load_file(path, 0, NULL);
        json_t *msgs = json_object_get(conv, "messages");
        for (size_t i = 0; i < json_array_size(msgs); i++) {
            json_t *msg = json_array_get(msgs, i);
            if (strcmp(mstr(msg, "role"), "assistant")) continue;
            json_t *calls = json_object_get(msg, "tool_calls");
            int skip = 0;
            for (size_t c = 0; c < json_array_size(calls); c++) {
                json_t *a = json_object_get(json_object_get(json_array_get(calls, c), "function"), "arguments");
                if (a && !json_is_object(a)) skip = 1;   /* raw string arguments are not a call syntax */
            }
            if (skip) { skipped++; continue; }
            json_t *m2 = json_deep_copy(msg);
            json_object_del(m2, "tool_responses");
            json_t *req = json_pack("{s:[{s:s,s:s},o]}", "messages", "role", "user", "content", "q", m2);
            g4_error err = {0};
            char *txt = g4_chat_render(req, NULL, G4_CHAT_FAMILY_31B, NULL, &err);
            json_decref(req);
            if (!txt) { bad++; fprintf(stderr, "  %s[%zu]: %s\n", de->d_name, i, err.msg); continue; }
            const char *model = strstr(txt, "<|turn>model\n");
            model = model ? model + 13 : txt;
            int ok = 0;
            json_t *got = parse_all_ways(model, strlen(model), &ok);
            /* expected content */
            char *ec = NULL;
            size_t en = 0;
            app(&ec, &en, "", 0);
            json_t *content = json_object_get(msg, "content");
            if (json_is_string(content)) expect_text(&ec, &en, json_string_value(content));
            for (size_t p = 0; json_is_array(content) && p < json_array_size(content); p++) {
                json_t *part = json_array_get(content, p);
                const char *ty = mstr(part, "type");
                if (!strcmp(ty, "text")) {
                    char *x = NULL;
                    size_t xn = 0;
                    app(&x, &xn, "", 0);
                    expect_text(&x, &xn, mstr(part, "text"));
                    char *tx = trim_dup(x);
                    app(&ec, &en, tx, strlen(tx));
                    free(tx);
                    free(x);
                } else if (!strcmp(ty, "image") || !strcmp(ty, "audio") || !strcmp(ty, "video")) {
                    char ph[16];
                    snprintf(ph, sizeof ph, "<|%s|>", ty);
                    app(&ec, &en, ph, strlen(ph));
                }
            }
            char *want_content = trim_dup(ec);
            /* expected reasoning: only re-emitted with tool calls */
            json_t *r = json_object_get(msg, "reasoning");
            if (!json_is_string(r) || !json_string_length(r)) r = json_object_get(msg, "reasoning_content");
            const char *want_reason = (json_array_size(calls) && json_is_string(r)) ? json_string_value(r) : "";
            int good = ok && got && !strcmp(mstr(got, "content"), want_content) &&
                       !strcmp(mstr(got, "reasoning_content"), want_reason) &&
                       ncalls(got) == json_array_size(calls);
            for (size_t c = 0; good && c < json_array_size(calls); c++) {
                json_t *fn = json_object_get(json_array_get(calls, c), "function");
                json_t *a = json_object_get(fn, "arguments");
                char *aj = a ? json_dumps(a, JSON_COMPACT) : strdup("{}");
                good = has_call(got, c, mstr(fn, "name"), aj);
                free(aj);
            }
            if (!good) {
                bad++;
                char *g = got ? json_dumps(got, JSON_COMPACT) : NULL;
                fprintf(stderr, "  %s[%zu]: split-consistent=%d got %s\n    want content '%s' reasoning '%s'\n",
                        de->d_name, i, ok, g ? g : "(null)", want_content, want_reason);
                free(g);
            }
            turns++;
            free(want_content);
            free(ec);
            json_decref(got);
            free(txt);
        }
        json_decref(conv);
    }
    closedir(d);
    printf("  parse round trip: %d assistant turns, %d mismatches, %d skipped (string arguments)\n", turns, bad,
           skipped);
    CHECK(turns >= 40);
    CHECK(bad == 0);
}

/* Random soups of markers, braces, quotes and UTF-8: no crash, and random
 * chunkings agree with one-shot parsing. */
TEST(parse_random_chunking) {
    static const char *atoms[] = { "<|channel>", "thought\n", "<channel|>", "<|tool_call>", "call:f", "<tool_call|>",
                                   "<|\"|>", "{", "}", "[", "]", ":", ",", "a", "12", "-1.5e3", "true", "None",
                                   " ", "\n", "<", "|", ">", "é", "\xe2\x82", "\xac", "<turn|>", "<|turn>model\n",
                                   "<|tool_response>", "x:", "<|tool_ca", "ll>" };
    uint64_t s = 0x9E3779B97F4A7C15ull;
    int mismatches = 0;
    for (int iter = 0; iter < 3000; iter++) {
        char t[2048];
        size_t n = 0;
        int len = 1 + (int)((s >> 33) % 60);
        for (int k = 0; k < len; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            const char *a = atoms[(s >> 33) % (sizeof atoms / sizeof atoms[0])];
            size_t al = strlen(a);
            if (n + al >= sizeof t) break;
            memcpy(t + n, a, al);
            n += al;
        }
        size_t cuts[8];
        for (int k = 0; k < 8; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            cuts[k] = n ? (s >> 33) % (n + 1) : 0;
        }
        for (int a = 0; a < 8; a++)   /* sort */
            for (int b = a + 1; b < 8; b++)
                if (cuts[b] < cuts[a]) { size_t x = cuts[a]; cuts[a] = cuts[b]; cuts[b] = x; }
        json_t *m1 = parse_split(t, n, (size_t[]){ 0 }, 0, NULL, NULL);
        json_t *m2 = parse_split(t, n, cuts, 8, NULL, NULL);
        json_t *m3 = parse_split(t, n, NULL, 0, NULL, NULL);
        if (!m1 || !m2 || !m3 || !json_equal(m1, m2) || !json_equal(m1, m3)) mismatches++;
        json_decref(m1);
        json_decref(m2);
        json_decref(m3);
    }
    CHECKF(mismatches == 0, "%d mismatches", mismatches);
}

int main(void) {
    RUN(render_spec_examples);
    RUN(render_generation_prompt_families);
    RUN(render_value_formatting);
    RUN(render_compat);
    RUN(render_errors);
    RUN(render_family_selection);
    RUN(render_family_from_gguf);
    RUN(parse_wellformed);
    RUN(parse_malformed);
    RUN(parse_roundtrip_cases);
    RUN(parse_random_chunking);
    return test_summary();
}
