/* libFuzzer target: the tokenizer on arbitrary bytes. Builds a small BPE
 * vocabulary with byte fallback and special tokens once, then encodes the
 * input with and without special-token matching and checks that decoding
 * gives the input back (byte fallback makes every byte string encodable). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"

static g4_tokenizer *tok;

static void build(void) {
    static const char *base[] = { "<pad>", "<eos>", "<bos>", "<unk>", "<|turn>", "<turn|>", "<|\"|>", "\n", "\n\n",
                                  "\xe2\x96\x81", "a", "b", "c", "ab", "abc", "\xe2\x96\x81" "a", "th", "the",
                                  "\xe2\x96\x81the", "h", "t", "e" };
    static const char *merges[] = { "a b", "ab c", "\xe2\x96\x81 a", "t h", "th e", "\xe2\x96\x81 the" };
    enum { NB = sizeof base / sizeof base[0] };
    static char bytes[256][8];
    const char *toks[NB + 256];
    int32_t types[NB + 256];
    for (int i = 0; i < NB; i++) { toks[i] = base[i]; types[i] = i < 7 ? 3 : 1; }
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[NB + b] = bytes[b];
        types[NB + b] = 6;
    }
    g4_tok_vocab v = { .n_tokens = NB + 256, .tokens = toks, .types = types, .n_merges = 6, .merges = merges,
                       .bos = 2, .eos = 1, .unk = 3, .pad = 0 };
    g4_error e;
    tok = g4_tokenizer_create(&v, &e);
    if (!tok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) build();
    for (int special = 0; special < 2; special++) {
        g4_tokens t = { 0 };
        g4_error e;
        if (g4_tok_encode(tok, (const char *)data, size, false, special, &t, &e) == 0) {
            char *out = NULL;
            size_t len = 0;
            if (g4_tok_decode(tok, t.ids, t.n, true, &out, &len, &e) == 0) {
                /* U+2581 in the input decodes to a space, so compare only without it */
                if (!memmem(data, size, "\xe2\x96\x81", 3) && (len != size || memcmp(out, data, size))) abort();
                free(out);
            }
            g4_detok *d = g4_detok_new(tok, false);
            for (size_t i = 0; d && i < t.n; i++) {
                size_t l;
                (void)g4_detok_push(d, t.ids[i], &l, &e);
            }
            g4_detok_free(d);
        }
        g4_tokens_free(&t);
    }
    return 0;
}
