/* libFuzzer target for the Gemma 4 output parser (and, for inputs that are
 * JSON, the chat renderer).
 *
 * Checks beyond "no crash": the message from one-shot parsing equals the
 * message from feeding the same bytes in chunks whose sizes come from the
 * input itself, and equals byte-by-byte feeding. A mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "text/chat_parse.h"

static void sink(void *user, const g4_chat_delta *d) {
    size_t *n = user;
    *n += d->len;
}

static json_t *parse_chunked(const uint8_t *data, size_t size, size_t step_seed, int bytewise) {
    size_t seen = 0;
    g4_chat_parse_options opt = { .max_call_bytes = 4096 };
    g4_chat_parser *p = g4_chat_parser_new(&opt, sink, &seen);
    if (!p) return NULL;
    size_t at = 0, k = step_seed;
    while (at < size) {
        size_t step = bytewise ? 1 : 1 + (k * 2654435761u >> 7) % 37;
        k++;
        if (step > size - at) step = size - at;
        g4_chat_parser_feed(p, (const char *)data + at, step);
        at += step;
    }
    g4_chat_parser_finish(p);
    json_t *m = g4_chat_parser_message(p);
    g4_chat_parser_free(p);
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    g4_chat_parse_options opt = { .max_call_bytes = 4096 };
    json_t *whole = g4_chat_parse((const char *)data, size, &opt, NULL);
    json_t *chunked = parse_chunked(data, size, size ? data[0] : 0, 0);
    json_t *bytes = parse_chunked(data, size, 0, 1);
    if (whole && chunked && !json_equal(whole, chunked)) abort();
    if (whole && bytes && !json_equal(whole, bytes)) abort();
    json_decref(whole);
    json_decref(chunked);
    json_decref(bytes);

    if (size && (data[0] == '{' || data[0] == '[')) {
        json_t *req = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
        if (req) {
            g4_error err;
            for (int fam = G4_CHAT_FAMILY_E; fam <= G4_CHAT_FAMILY_INTERLEAVED; fam++) {
                char *s = g4_chat_render(req, NULL, (g4_chat_family)fam, NULL, &err);
                free(s);
            }
            json_decref(req);
        }
    }
    return 0;
}
