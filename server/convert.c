/* Request bodies -> the scheduler's request (OpenAI-style JSON, as
 * include/gemma4c.h's scheduler reads it). No sockets and no HTTP here, so
 * that fuzz/fuzz_request.c can drive the same code the routes run.
 *
 * OpenAI bodies go to the scheduler nearly as they came (it reads the
 * OpenAI fields itself); Ollama bodies are rewritten: their options, think,
 * format, system/prompt and message fields become the OpenAI ones. Every
 * field the server reads is type-checked here, and an error message starts
 * with the field's name in quotes (http.c takes it for "param"). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "gemma4c.h"

__attribute__((format(printf, 3, 4))) static json_t *fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return NULL;
}

static int absent(const json_t *v) { return !v || json_is_null(v); }

int conv_bool(const json_t *obj, const char *key, int def, char *err, size_t errlen) {
    json_t *v = json_object_get(obj, key);
    if (absent(v)) return def;
    if (json_is_boolean(v)) return json_is_true(v);
    snprintf(err, errlen, "\"%s\" must be a boolean", key);
    return -1;
}

json_t *conv_openai(const json_t *body, int completion, int *stream, int *usage, char *err, size_t errlen) {
    if (!json_is_object(body)) return fail(err, errlen, "\"body\" must be a JSON object");
    json_t *so = json_object_get(body, "stream_options");
    if ((*stream = conv_bool(body, "stream", 0, err, errlen)) < 0) return NULL;
    *usage = 0;
    if (!absent(so)) {
        json_t *u = json_object_get(so, "include_usage");
        if (!json_is_object(so) || (u && !json_is_boolean(u)))
            return fail(err, errlen, "\"stream_options\" must be an object with a boolean \"include_usage\"");
        *usage = json_is_true(u);
    }
    json_t *m = json_object_get(body, "model");
    if (!absent(m) && !json_is_string(m)) return fail(err, errlen, "\"model\" must be a string");
    /* the objects the scheduler hands on without looking at their type */
    json_t *tl = json_object_get(body, "tools"), *tc = json_object_get(body, "tool_choice");
    json_t *kw = json_object_get(body, "chat_template_kwargs"), *rf = json_object_get(body, "response_format");
    if (!absent(tl) && !json_is_array(tl)) return fail(err, errlen, "\"tools\" must be an array of tools");
    if (!absent(tc) && !json_is_string(tc) && !json_is_object(tc))
        return fail(err, errlen, "\"tool_choice\" must be \"auto\", \"none\", \"required\" or an object naming a function");
    if (!absent(kw) && !json_is_object(kw)) return fail(err, errlen, "\"chat_template_kwargs\" must be an object");
    if (!absent(rf) && !json_is_object(rf)) return fail(err, errlen, "\"response_format\" must be an object with a \"type\"");
    json_t *p = json_object_get(body, "prompt");
    if (!completion && !json_is_array(json_object_get(body, "messages")))
        return fail(err, errlen, "\"messages\" must be an array of messages");
    if (completion) { /* one prompt, alone or in a list */
        if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
        if (!json_is_string(p)) return fail(err, errlen, "\"prompt\" must be a string (or a list of one)");
    }
    /* logprobs: chat's boolean + "top_logprobs" 0..20; the legacy
     * completion's "logprobs" is the count of alternatives (0..20) */
    json_t *lp = json_object_get(body, "logprobs"), *tlp = json_object_get(body, "top_logprobs");
    if (!completion && !absent(lp) && !json_is_boolean(lp)) return fail(err, errlen, "\"logprobs\" must be a boolean");
    if (!completion && !absent(tlp) &&
        (!json_is_integer(tlp) || json_integer_value(tlp) < 0 || json_integer_value(tlp) > 20))
        return fail(err, errlen, "\"top_logprobs\" must be an integer in [0, 20]");
    if (!completion && !absent(tlp) && json_integer_value(tlp) > 0 && !json_is_true(lp))
        return fail(err, errlen, "\"top_logprobs\" needs \"logprobs\": true");
    if (completion && !absent(lp) && (!json_is_integer(lp) || json_integer_value(lp) < 0 || json_integer_value(lp) > 20))
        return fail(err, errlen, "\"logprobs\" must be an integer in [0, 20] (the alternatives per token)");
    json_t *n = json_object_get(body, "n");
    if (!absent(n) && (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 1000))
        return fail(err, errlen, "\"n\" must be an integer >= 1 (the number of choices)");
    json_t *out = json_deep_copy(body);
    if (!out) return fail(err, errlen, "out of memory");
    if (completion) {
        json_object_del(out, "top_logprobs");
        if (!absent(lp)) {
            json_object_set_new(out, "top_logprobs", json_integer(json_integer_value(lp)));
            json_object_set_new(out, "logprobs", json_true());
        }
        json_object_set(out, "prompt", p);
        json_object_del(out, "messages"); /* the scheduler's raw mode: a prompt and no messages */
    }
    json_object_del(out, "stream");
    json_object_del(out, "stream_options");
    return out;
}

/* Ollama's "think": a boolean, or "high" / "medium" / "low" (on). */
static int think_of(const json_t *body, char *err, size_t errlen) {
    json_t *t = json_object_get(body, "think");
    if (absent(t)) return -1;
    if (json_is_boolean(t)) return json_is_true(t);
    if (json_is_string(t) && (!strcmp(json_string_value(t), "high") || !strcmp(json_string_value(t), "medium") ||
                              !strcmp(json_string_value(t), "low")))
        return 1;
    snprintf(err, errlen, "\"think\" must be a boolean or \"high\", \"medium\", \"low\"");
    return -2;
}

/* Ollama's options that the scheduler reads, by their OpenAI names. The
 * others (num_keep, num_gpu, mirostat, ...) are accepted and ignored, as
 * Ollama ignores options that do not apply. */
static int conv_options(const json_t *o, json_t *out, char *err, size_t errlen) {
    if (absent(o)) return 0;
    if (!json_is_object(o)) { snprintf(err, errlen, "\"options\" must be an object"); return -1; }
    static const char *const same[] = { "temperature", "top_k", "top_p", "min_p", "seed", "stop", "repeat_penalty",
                                        "presence_penalty", "frequency_penalty", "repeat_last_n" };
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        json_t *v = json_object_get(o, same[i]);
        if (absent(v)) continue;
        if (strcmp(same[i], "stop") ? !json_is_number(v) : !json_is_array(v) && !json_is_string(v)) {
            snprintf(err, errlen, "\"options.%s\" must be %s", same[i],
                     strcmp(same[i], "stop") ? "a number" : "an array of strings");
            return -1;
        }
        json_object_set(out, same[i], v);
    }
    json_t *np = json_object_get(o, "num_predict"), *nc = json_object_get(o, "num_ctx");
    if (!absent(np)) {
        if (!json_is_integer(np)) { snprintf(err, errlen, "\"options.num_predict\" must be an integer"); return -1; }
        /* -1 (no limit) and -2 (fill the context) leave the context's limit */
        json_int_t n = json_integer_value(np);
        if (n >= 0) json_object_set_new(out, "max_tokens", json_integer(n > 0 ? (n < (1 << 30) ? n : 1 << 30) : 1));
    }
    /* the server's --ctx holds for every request; a smaller num_ctx is
     * accepted and changes nothing (prompt + answer must fit either way) */
    if (!absent(nc) && (!json_is_integer(nc) || json_integer_value(nc) < 1)) {
        snprintf(err, errlen, "\"options.num_ctx\" must be a positive integer");
        return -1;
    }
    return 0;
}

/* Ollama's images + text -> content parts: one {"type":"image"} per image
 * (server/media.c gives the session their items, in order), then the text. */
static json_t *media_content(const json_t *images, const json_t *text) {
    json_t *c = json_array();
    for (size_t k = 0; k < json_array_size(images); k++) json_array_append_new(c, json_pack("{s:s}", "type", "image"));
    json_array_append_new(c, json_pack("{s:s,s:O}", "type", "text", "text", text));
    return c;
}

/* One Ollama message -> the OpenAI message the chat template reads. */
static json_t *conv_message(const json_t *m, size_t i, char *err, size_t errlen) {
    if (!json_is_object(m)) return fail(err, errlen, "\"messages[%zu]\" must be an object", i);
    json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
    json_t *thinking = json_object_get(m, "thinking"), *calls = json_object_get(m, "tool_calls");
    json_t *images = json_object_get(m, "images"), *tname = json_object_get(m, "tool_name");
    if (!json_is_string(role)) return fail(err, errlen, "\"messages[%zu].role\" must be a string", i);
    if (!absent(content) && !json_is_string(content))
        return fail(err, errlen, "\"messages[%zu].content\" must be a string", i);
    if (!absent(thinking) && !json_is_string(thinking))
        return fail(err, errlen, "\"messages[%zu].thinking\" must be a string", i);
    if (!absent(tname) && !json_is_string(tname))
        return fail(err, errlen, "\"messages[%zu].tool_name\" must be a string", i);
    if (!absent(images) && !json_is_array(images))
        return fail(err, errlen, "\"messages[%zu].images\" must be an array of base64 strings", i);
    json_t *o = json_pack("{s:O,s:s}", "role", role, "content", json_is_string(content) ? json_string_value(content) : "");
    if (!o) return fail(err, errlen, "out of memory");
    if (json_array_size(images)) json_object_set_new(o, "content", media_content(images, json_object_get(o, "content")));
    if (json_is_string(thinking) && json_string_length(thinking)) json_object_set(o, "reasoning_content", thinking);
    if (json_is_string(tname)) json_object_set(o, "name", tname);
    if (!absent(calls)) {
        if (!json_is_array(calls)) {
            json_decref(o);
            return fail(err, errlen, "\"messages[%zu].tool_calls\" must be an array", i);
        }
        json_t *tc = json_array();
        json_object_set_new(o, "tool_calls", tc);
        for (size_t k = 0; k < json_array_size(calls); k++) {
            json_t *f = json_object_get(json_array_get(calls, k), "function");
            json_t *name = json_object_get(f, "name"), *args = json_object_get(f, "arguments");
            if (!json_is_string(name) || !(absent(args) || json_is_object(args))) {
                json_decref(o);
                return fail(err, errlen,
                            "\"messages[%zu].tool_calls[%zu]\" must be {\"function\": {\"name\": string, \"arguments\": object}}",
                            i, k);
            }
            char id[32];
            snprintf(id, sizeof id, "call_%zu", k);
            json_array_append_new(tc, json_pack("{s:s,s:s,s:{s:O,s:o}}", "id", id, "type", "function", "function", "name",
                                                name, "arguments", absent(args) ? json_object() : json_incref(args)));
        }
    }
    return o;
}

json_t *conv_ollama(const json_t *body, int chat, int *stream, char *err, size_t errlen) {
    if (!json_is_object(body)) return fail(err, errlen, "\"body\" must be a JSON object");
    if ((*stream = conv_bool(body, "stream", 1, err, errlen)) < 0) return NULL; /* Ollama streams by default */
    json_t *m = json_object_get(body, "model"), *ka = json_object_get(body, "keep_alive");
    json_t *fmt = json_object_get(body, "format"), *tools = json_object_get(body, "tools");
    if (!absent(m) && !json_is_string(m)) return fail(err, errlen, "\"model\" must be a string");
    if (!absent(ka) && !json_is_string(ka) && !json_is_number(ka))
        return fail(err, errlen, "\"keep_alive\" must be a duration string or a number of seconds");
    if (!absent(fmt) && !json_is_object(fmt) &&
        !(json_is_string(fmt) && (!strcmp(json_string_value(fmt), "json") || !json_string_length(fmt))))
        return fail(err, errlen, "\"format\" must be \"json\" or a JSON schema object");
    if (!absent(tools) && !json_is_array(tools)) return fail(err, errlen, "\"tools\" must be an array of tools");
    json_t *tc = json_object_get(body, "tool_choice");
    if (!absent(tc) && !json_is_string(tc) && !json_is_object(tc))
        return fail(err, errlen, "\"tool_choice\" must be \"auto\", \"none\", \"required\" or an object naming a function");
    int think = think_of(body, err, errlen);
    if (think == -2) return NULL;
    json_t *out = json_object();
    if (!out) return fail(err, errlen, "out of memory");
    if (conv_options(json_object_get(body, "options"), out, err, errlen)) goto bad;
    if (json_is_object(fmt) || (json_is_string(fmt) && json_string_length(fmt))) json_object_set(out, "format", fmt);
    if (think >= 0) json_object_set_new(out, "chat_template_kwargs", json_pack("{s:b}", "enable_thinking", think));
    /* gemma4c's extensions of Ollama's API, with OpenAI's meaning: a random
     * model's tests need them to force a call or a thought */
    static const char *const ext[] = { "tool_choice", "logit_bias" };
    for (int i = 0; i < 2; i++)
        if (!absent(json_object_get(body, ext[i]))) json_object_set(out, ext[i], json_object_get(body, ext[i]));
    if (chat) {
        json_t *msgs = json_object_get(body, "messages");
        if (!absent(msgs) && !json_is_array(msgs)) { fail(err, errlen, "\"messages\" must be an array of messages"); goto bad; }
        json_t *om = json_array();
        json_object_set_new(out, "messages", om);
        for (size_t i = 0; i < json_array_size(msgs); i++) {
            json_t *x = conv_message(json_array_get(msgs, i), i, err, errlen);
            if (!x) goto bad;
            json_array_append_new(om, x);
        }
        if (json_array_size(tools)) json_object_set(out, "tools", tools);
        return out;
    }
    json_t *p = json_object_get(body, "prompt"), *sys = json_object_get(body, "system");
    json_t *sfx = json_object_get(body, "suffix"), *tpl = json_object_get(body, "template");
    json_t *img = json_object_get(body, "images"), *ctx = json_object_get(body, "context");
    int raw = conv_bool(body, "raw", 0, err, errlen);
    if (raw < 0) goto bad;
    if (!absent(p) && !json_is_string(p)) { fail(err, errlen, "\"prompt\" must be a string"); goto bad; }
    if (!absent(sys) && !json_is_string(sys)) { fail(err, errlen, "\"system\" must be a string"); goto bad; }
    if (!absent(sfx) && (!json_is_string(sfx) || json_string_length(sfx))) {
        fail(err, errlen, "\"suffix\": fill-in-the-middle is not supported by Gemma 4's chat format");
        goto bad;
    }
    if (!absent(tpl) && (!json_is_string(tpl) || json_string_length(tpl))) {
        fail(err, errlen, "\"template\": the model's own chat template is always used (send raw: true for a raw prompt)");
        goto bad;
    }
    if (!absent(img) && (!json_is_array(img) || (raw && json_array_size(img)))) {
        fail(err, errlen, "\"images\" must be an array of base64 strings (and not with raw: true)");
        goto bad;
    }
    if (!absent(ctx) && !json_is_array(ctx)) { fail(err, errlen, "\"context\" must be an array of token ids"); goto bad; }
    const char *ptext = json_is_string(p) ? json_string_value(p) : "";
    size_t plen = json_is_string(p) ? json_string_length(p) : 0;
    if (raw) {
        json_object_set_new(out, "prompt", json_stringn(ptext, plen));
    } else {
        json_t *om = json_array();
        json_object_set_new(out, "messages", om);
        if (json_is_string(sys) && json_string_length(sys))
            json_array_append_new(om, json_pack("{s:s,s:O}", "role", "system", "content", sys));
        json_t *um = json_pack("{s:s,s:s%}", "role", "user", "content", ptext, plen);
        if (um && json_array_size(img)) json_object_set_new(um, "content", media_content(img, json_object_get(um, "content")));
        json_array_append_new(om, um);
    }
    return out;
bad:
    json_decref(out);
    return NULL;
}

/* ---- media parts ------------------------------------------------------------------ */

static int b64_val(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
         : c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Strict base64 (RFC 4648 alphabet, '=' padding optional at the end only). */
static unsigned char *b64_decode(const char *s, size_t n, size_t *out_len) {
    while (n && s[n - 1] == '=') n--;
    if (n % 4 == 1) return NULL;
    unsigned char *o = malloc(n / 4 * 3 + 3);
    if (!o) return NULL;
    size_t k = 0;
    unsigned acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) { free(o); return NULL; }
        acc = acc << 6 | (unsigned)v;
        if (i % 4 == 3) { o[k++] = (unsigned char)(acc >> 16); o[k++] = (unsigned char)(acc >> 8); o[k++] = (unsigned char)acc; acc = 0; }
    }
    if (n % 4 == 2) o[k++] = (unsigned char)(acc >> 4);
    else if (n % 4 == 3) { o[k++] = (unsigned char)(acc >> 10); o[k++] = (unsigned char)(acc >> 2); }
    *out_len = k;
    return o;
}

static int add_media(conv_media **v, int *n, int kind, const char *b64, size_t len, const char *fmt, const char *field,
                     char *err, size_t errlen) {
    if (*n >= CONV_MAX_MEDIA) { snprintf(err, errlen, "\"%s\": at most %d media items per request", field, CONV_MAX_MEDIA); return -1; }
    size_t dl = 0;
    unsigned char *d = b64_decode(b64, len, &dl);
    if (!d || !dl) {
        free(d);
        snprintf(err, errlen, "\"%s\": the data is not valid base64", field);
        return -1;
    }
    conv_media *nv = realloc(*v, (size_t)(*n + 1) * sizeof *nv);
    if (!nv) { free(d); snprintf(err, errlen, "out of memory"); return -1; }
    *v = nv;
    nv[*n].kind = kind;
    nv[*n].data = d;
    nv[*n].len = dl;
    snprintf(nv[*n].format, sizeof nv[*n].format, "%s", fmt);
    (*n)++;
    return 0;
}

/* "data:<type>;base64,<data>": the media type's subtype in fmt; other
 * schemes (http:, file:, ...) are refused (nothing is fetched). */
static int data_uri(const char *u, const char **b64, char *fmt, size_t fl, const char *field, char *err, size_t errlen) {
    if (strncmp(u, "data:", 5)) {
        const char *c = strchr(u, ':');
        snprintf(err, errlen, "\"%s\": only data: URIs (base64 images) are accepted, not '%.*s:' URLs (nothing is fetched)",
                 field, c && c - u < 16 ? (int)(c - u) : 0, u);
        return -1;
    }
    const char *comma = strchr(u, ',');
    if (!comma || comma - u < 12 || strncmp(comma - 7, ";base64", 7)) {
        snprintf(err, errlen, "\"%s\": a data: URI must be data:image/<type>;base64,<data>", field);
        return -1;
    }
    const char *sl = memchr(u + 5, '/', (size_t)(comma - 7 - (u + 5)));
    size_t tl = sl ? (size_t)(comma - 7 - sl - 1) : 0;
    snprintf(fmt, fl, "%.*s", (int)(tl < fl ? tl : fl - 1), sl ? sl + 1 : "");
    *b64 = comma + 1;
    return 0;
}

int conv_media_collect(const json_t *body, int ollama, conv_media **out, int *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    char field[96];
    json_t *msgs = json_object_get(body, "messages");
    size_t i, k;
    json_t *m, *p;
    if (ollama) { /* "images" (base64 strings) on the body (/api/generate) and on messages */
        json_t *lists[2] = { json_object_get(body, "images"), NULL };
        for (size_t mi = 0; mi <= json_array_size(msgs); mi++) {
            json_t *im = mi == 0 ? lists[0] : json_object_get(json_array_get(msgs, mi - 1), "images");
            if (absent(im)) continue;
            if (mi) snprintf(field, sizeof field, "messages[%zu].images", mi - 1);
            else snprintf(field, sizeof field, "images");
            if (!json_is_array(im)) { snprintf(err, errlen, "\"%s\" must be an array of base64 strings", field); goto bad; }
            json_array_foreach(im, k, p) {
                if (!json_is_string(p)) { snprintf(err, errlen, "\"%s[%zu]\" must be a base64 string", field, k); goto bad; }
                char f2[128];
                snprintf(f2, sizeof f2, "%s[%zu]", field, k);
                if (add_media(out, n, GEMMA4C_MEDIA_IMAGE, json_string_value(p), json_string_length(p), "", f2, err, errlen)) goto bad;
            }
        }
        return 0;
    }
    json_array_foreach(msgs, i, m) {
        json_t *c = json_object_get(m, "content");
        if (!json_is_array(c)) continue;
        json_array_foreach(c, k, p) {
            const char *t = json_string_value(json_object_get(p, "type"));
            if (!t) continue;
            if (!strcmp(t, "image_url")) {
                snprintf(field, sizeof field, "messages[%zu].content[%zu].image_url", i, k);
                json_t *iu = json_object_get(p, "image_url");
                const char *u = json_is_string(iu) ? json_string_value(iu) : json_string_value(json_object_get(iu, "url"));
                if (!u) { snprintf(err, errlen, "\"%s\" must be an object with a \"url\" string", field); goto bad; }
                const char *b64;
                char fmt[16];
                if (data_uri(u, &b64, fmt, sizeof fmt, field, err, errlen) ||
                    add_media(out, n, GEMMA4C_MEDIA_IMAGE, b64, strlen(b64), fmt, field, err, errlen))
                    goto bad;
            } else if (!strcmp(t, "input_audio")) {
                snprintf(field, sizeof field, "messages[%zu].content[%zu].input_audio", i, k);
                json_t *ia = json_object_get(p, "input_audio"), *d = json_object_get(ia, "data"), *f = json_object_get(ia, "format");
                if (!json_is_string(d) || !json_is_string(f) || json_string_length(f) > 8) {
                    snprintf(err, errlen, "\"%s\" must be {\"data\": base64, \"format\": \"wav\", \"mp3\", ...}", field);
                    goto bad;
                }
                if (add_media(out, n, GEMMA4C_MEDIA_AUDIO, json_string_value(d), json_string_length(d), json_string_value(f),
                              field, err, errlen))
                    goto bad;
            }
        }
    }
    return 0;
bad:
    conv_media_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
}

void conv_media_free(conv_media *m, int n) {
    for (int i = 0; i < n; i++) free(m[i].data);
    free(m);
}
