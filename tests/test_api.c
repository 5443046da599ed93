/* The public API a front end builds on (include/gemma4c.h only): chat
 * rendering and parsing as text, standalone tokenizers, the shared decode
 * loop and chat sessions, on a tiny synthetic model written by the API. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemma4c.h"
#include "harness.h"

static char g_dir[64], g_model[128];
static char err[600];

static const char *REQ = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"add_generation_prompt\":true}";

TEST(chat_render_text) {
    size_t n = 0;
    char *p = gemma4c_chat_render(GEMMA4C_CHAT_E, REQ, strlen(REQ), NULL, &n, err, sizeof err);
    const char *want = "<bos><|turn>user\nHi<turn|>\n<|turn>model\n";
    CHECK(p && n == strlen(want) && !memcmp(p, want, n));
    free(p);
    /* the 31B family pre-fills an empty thought block when not thinking */
    p = gemma4c_chat_render(GEMMA4C_CHAT_31B, REQ, strlen(REQ), NULL, &n, err, sizeof err);
    CHECK(p && strstr(p, "<|turn>model\n<|channel>thought\n<channel|>"));
    free(p);
    gemma4c_chat_options o = gemma4c_chat_default_options();
    o.add_generation_prompt = 0;
    p = gemma4c_chat_render(GEMMA4C_CHAT_E, REQ, strlen(REQ), &o, &n, err, sizeof err);
    CHECK(p && !strstr(p, "model"));
    free(p);
    err[0] = 0;
    CHECK(!gemma4c_chat_render(GEMMA4C_CHAT_E, "{\"messages\":", 12, NULL, &n, err, sizeof err) && err[0]);
    err[0] = 0;
    const char *bad = "{\"messages\":[{\"content\":\"x\"}]}";
    CHECK(!gemma4c_chat_render(GEMMA4C_CHAT_E, bad, strlen(bad), NULL, &n, err, sizeof err) && strstr(err, "role"));
}

TEST(chat_family_names) {
    CHECK(gemma4c_chat_family_from_name("31b") == GEMMA4C_CHAT_31B);
    CHECK(gemma4c_chat_family_from_name("E4B") == GEMMA4C_CHAT_E);
    CHECK(gemma4c_chat_family_from_name("nope") == GEMMA4C_CHAT_UNKNOWN);
    CHECK(!strcmp(gemma4c_chat_family_name(GEMMA4C_CHAT_E), "e"));
    CHECK(gemma4c_chat_family_from_template("hello") == GEMMA4C_CHAT_UNKNOWN);
    err[0] = 0;
    CHECK(gemma4c_chat_family_from_path("/nonexistent/x.gguf", err, sizeof err) == GEMMA4C_CHAT_UNKNOWN && err[0]);
}

static const char *OUT = "<|channel>thought\nhmm<channel|>Hello<|tool_call>call:f{a:1}<tool_call|><turn|>ignored";

TEST(chat_parse_one_shot) {
    char *m = gemma4c_chat_parse(OUT, strlen(OUT), NULL, err, sizeof err);
    CHECK(m && !strcmp(m, "{\"role\":\"assistant\",\"content\":\"Hello\",\"reasoning_content\":\"hmm\",\"tool_calls\":"
                          "[{\"id\":\"call_0\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
                          "\"{\\\"a\\\":1}\"}}]}"));
    free(m);
    /* only declared tools are calls */
    const char *names[] = { "g" };
    gemma4c_parse_options o = { 0, names, 1 };
    m = gemma4c_chat_parse(OUT, strlen(OUT), &o, err, sizeof err);
    CHECK(m && !strstr(m, "tool_calls"));
    free(m);
}

typedef struct deltas {
    char reasoning[64], content[64], call[64];
    int n_calls;
} deltas;

static void collect(void *user, const gemma4c_delta *d) {
    deltas *ds = user;
    char *dst = d->kind == GEMMA4C_DELTA_REASONING ? ds->reasoning : d->kind == GEMMA4C_DELTA_CONTENT ? ds->content : NULL;
    if (dst) strncat(dst, d->text, d->len < 32 ? d->len : 32);
    else { ds->n_calls++; snprintf(ds->call, sizeof ds->call, "%s(%s)", d->name, d->arguments); }
}

TEST(chat_parser_streams) {
    deltas ds;
    memset(&ds, 0, sizeof ds);
    gemma4c_chat_parser *p = gemma4c_chat_parser_new(NULL, collect, &ds);
    CHECK(p);
    if (!p) return;
    for (const char *c = OUT; *c; c++) CHECK(gemma4c_chat_parser_feed(p, c, 1) == 0);
    CHECK(gemma4c_chat_parser_stopped(p));
    CHECK(gemma4c_chat_parser_finish(p) == 0);
    CHECK(!strcmp(ds.reasoning, "hmm") && !strcmp(ds.content, "Hello"));
    CHECK(ds.n_calls == 1 && !strcmp(ds.call, "f({\"a\":1})"));
    char *m = gemma4c_chat_parser_message(p, 2);
    CHECK(m && strstr(m, "\n  \"role\": \"assistant\""));
    free(m);
    gemma4c_chat_parser_free(p);
    /* a prompt that ended inside the thought channel */
    memset(&ds, 0, sizeof ds);
    gemma4c_parse_options o = { 1, NULL, 0 };
    p = gemma4c_chat_parser_new(&o, collect, &ds);
    const char *t = "plan<channel|>Done";
    gemma4c_chat_parser_feed(p, t, strlen(t));
    gemma4c_chat_parser_finish(p);
    CHECK(!strcmp(ds.reasoning, "plan") && !strcmp(ds.content, "Done"));
    gemma4c_chat_parser_free(p);
}

TEST(file_types) {
    CHECK(gemma4c_file_type_from_name("q4_k_m") == 15);
    CHECK(gemma4c_file_type_from_name("BF16") == 32);
    CHECK(gemma4c_file_type_from_name("Q9") == -1);
    gemma4c_write_params wp = { 1, 0, NULL, NULL };
    char path[160];
    snprintf(path, sizeof path, "%s/x.gguf", g_dir);
    err[0] = 0;
    CHECK(gemma4c_synth(path, "nope", "F32", 1, &wp, err, sizeof err) < 0 && strstr(err, "nope"));
    CHECK(gemma4c_quantize(g_model, path, "Q9", &wp, err, sizeof err) < 0 && strstr(err, "Q9"));
    CHECK(access(path, F_OK) != 0);
}

TEST(tokenizer_handles) {
    gemma4c_tokenizer *t = gemma4c_tokenizer_load(g_model, err, sizeof err);
    gemma4c_model *m = gemma4c_model_open(g_model, err, sizeof err);
    CHECK(t && m);
    if (!t || !m) { gemma4c_tokenizer_free(t); gemma4c_model_free(m); return; }
    const gemma4c_tokenizer *mt = gemma4c_model_tokenizer(m);
    CHECK(mt != NULL);
    int32_t *a = NULL, *b = NULL;
    const char *text = "Hello world <|turn>";
    int na = gemma4c_tokenizer_encode(t, text, strlen(text), 1, 1, &a, err, sizeof err);
    int nb = gemma4c_tokenizer_encode(mt, text, strlen(text), 1, 1, &b, err, sizeof err);
    CHECK(na > 2 && na == nb && !memcmp(a, b, (size_t)na * sizeof *a));
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    CHECK(na > 0 && a[0] == info.bos_id);
    size_t len = 0;
    CHECK(na > 1 && gemma4c_tokenizer_piece(t, a[1], &len) && len > 0);
    CHECK(gemma4c_tokenizer_piece(t, -5, &len) == NULL);
    char *back = NULL;
    CHECK(gemma4c_tokenizer_decode(t, a + 1, (size_t)na - 1, 1, &back, &len, err, sizeof err) == 0);
    CHECK(back && len == strlen(text) && !strcmp(back, text));
    free(back);
    free(a);
    free(b);
    CHECK(gemma4c_tokenizer_load("/nonexistent.json", err, sizeof err) == NULL);
    gemma4c_tokenizer_free(t);
    gemma4c_model_free(m);
}

typedef struct counter {
    int n, stop_at, cancel_at;
} counter;

static int count_token(void *user, int32_t t) {
    counter *c = user;
    (void)t;
    return ++c->n == c->stop_at;
}
static int cancel_when(void *user) {
    counter *c = user;
    return c->cancel_at >= 0 && c->n >= c->cancel_at;
}

TEST(generate_loop) {
    gemma4c_model *m = gemma4c_model_open(g_model, err, sizeof err);
    CHECK(m);
    if (!m) return;
    CHECK(gemma4c_model_chat_family(m) == GEMMA4C_CHAT_E);   /* tiny is E2B-shaped */
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
    gemma4c_sampler_params sp = gemma4c_sampler_default_params();
    sp.temperature = 0;
    gemma4c_sampler *s = gemma4c_sampler_new(&sp);
    CHECK(c && s && gemma4c_context_model(c) == m);
    counter k = { 0, 0, -1 };
    gemma4c_generate_params gp = { .n_predict = 5, .on_token = count_token, .cancel = cancel_when, .user = &k };
    CHECK(gemma4c_generate(c, s, &gp, err, sizeof err) == -1);   /* no prompt evaluated */
    int32_t prompt[] = { 2, 10, 20 };
    CHECK(gemma4c_eval(c, prompt, 3, 0, err, sizeof err) == 0);
    CHECK(gemma4c_generate(c, s, &gp, err, sizeof err) == GEMMA4C_FINISH_LENGTH);
    CHECK(k.n == 5 && gemma4c_n_past(c) == 3 + 4);   /* the last token is left unevaluated */
    /* back to the prompt, with its logits */
    gemma4c_reset(c);
    CHECK(gemma4c_eval(c, prompt, 3, 0, err, sizeof err) == 0);
    k = (counter){ 0, 2, -1 };
    CHECK(gemma4c_generate(c, s, &gp, err, sizeof err) == GEMMA4C_FINISH_STOP);
    CHECK(k.n == 2 && gemma4c_n_past(c) == 3 + 1);
    gemma4c_reset(c);
    CHECK(gemma4c_eval(c, prompt, 3, 0, err, sizeof err) == 0);
    k = (counter){ 0, 0, 3 };
    CHECK(gemma4c_generate(c, s, &gp, err, sizeof err) == GEMMA4C_FINISH_CANCEL);
    CHECK(k.n == 3 && gemma4c_n_past(c) == 3 + 3);
    gemma4c_sampler_free(s);
    gemma4c_context_free(c);
    gemma4c_model_free(m);
}

static int g_cancel;
static int cancel_flag(void *user) { (void)user; return g_cancel; }

static void count_deltas(void *user, const gemma4c_delta *d) { (void)d; ++*(int *)user; }

TEST(session_turns) {
    gemma4c_model *m = gemma4c_model_open(g_model, err, sizeof err);
    CHECK(m);
    if (!m) return;
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 1;
    gemma4c_context *c1 = gemma4c_context_new(m, &cp, err, sizeof err);
    gemma4c_context *c2 = gemma4c_context_new(m, &cp, err, sizeof err);
    gemma4c_session_params sp = gemma4c_session_default_params();
    sp.n_predict = 8;
    sp.sampling.temperature = 0;
    sp.cancel = cancel_flag;
    gemma4c_session *a = gemma4c_session_new(c1, &sp, err, sizeof err);
    gemma4c_session *b = gemma4c_session_new(c2, &sp, err, sizeof err);   /* two conversations, one model */
    CHECK(a && b && gemma4c_session_family(a) == GEMMA4C_CHAT_E);
    gemma4c_turn_result r1, r2;
    int nd = 0;
    CHECK(gemma4c_session_turn(a, REQ, strlen(REQ), count_deltas, &nd, &r1, err, sizeof err) == 0);
    CHECK(r1.message && strstr(r1.message, "\"role\":\"assistant\""));
    CHECK(r1.n_prompt > 5 && r1.n_reused == 0 && r1.n_generated > 0);
    CHECK(r1.finish == GEMMA4C_FINISH_LENGTH || r1.finish == GEMMA4C_FINISH_STOP);
    /* greedy: another session answers the same */
    CHECK(gemma4c_session_turn(b, REQ, strlen(REQ), NULL, NULL, &r2, err, sizeof err) == 0);
    CHECK(r1.message && r2.message && !strcmp(r1.message, r2.message));
    free(r2.message);
    /* the next turn re-sends the conversation: its prefix is reused */
    char req[4096];
    snprintf(req, sizeof req, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},%s,"
             "{\"role\":\"user\",\"content\":\"More\"}]}", r1.message ? r1.message : "{}");
    free(r1.message);
    CHECK(gemma4c_session_turn(a, req, strlen(req), NULL, NULL, &r2, err, sizeof err) == 0);
    CHECK(r2.n_reused > r1.n_prompt / 2 && r2.n_reused < r2.n_prompt);
    free(r2.message);
    /* cancelled before the first token: still an (empty) answer */
    g_cancel = 1;
    CHECK(gemma4c_session_turn(a, req, strlen(req), NULL, NULL, &r2, err, sizeof err) == 0);
    CHECK(r2.finish == GEMMA4C_FINISH_CANCEL && r2.n_generated == 0 && r2.message);
    CHECK(r2.n_reused == r2.n_prompt - 1);
    free(r2.message);
    g_cancel = 0;
    gemma4c_session_reset(a);
    CHECK(gemma4c_n_past(c1) == 0);
    err[0] = 0;
    CHECK(gemma4c_session_turn(a, "[", 1, NULL, NULL, &r2, err, sizeof err) == -1 && r2.finish == -1 &&
          !r2.message && strstr(err, "chat format"));
    gemma4c_session_free(a);
    gemma4c_session_free(b);
    gemma4c_context_free(c1);
    gemma4c_context_free(c2);
    /* a prompt that fills the context */
    cp.n_ctx = 8;
    gemma4c_context *small = gemma4c_context_new(m, &cp, err, sizeof err);
    gemma4c_session *s = gemma4c_session_new(small, NULL, err, sizeof err);
    CHECK(gemma4c_session_turn(s, REQ, strlen(REQ), NULL, NULL, &r2, err, sizeof err) == GEMMA4C_ERR_CONTEXT_FULL);
    CHECK(strstr(err, "fills the context") != NULL);
    gemma4c_session_free(s);
    gemma4c_context_free(small);
    gemma4c_model_free(m);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/g4-api-XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    snprintf(g_model, sizeof g_model, "%s/tiny.gguf", g_dir);
    gemma4c_write_params wp = { 1, 0, NULL, NULL };
    if (gemma4c_synth(g_model, "tiny", "F32", 1, &wp, err, sizeof err)) {
        fprintf(stderr, "synth: %s\n", err);
        return 1;
    }
    RUN(chat_render_text);
    RUN(chat_family_names);
    RUN(chat_parse_one_shot);
    RUN(chat_parser_streams);
    RUN(file_types);
    RUN(tokenizer_handles);
    RUN(generate_loop);
    RUN(session_turns);
    unlink(g_model);
    rmdir(g_dir);
    return test_summary();
}
