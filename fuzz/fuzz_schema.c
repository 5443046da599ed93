/* libFuzzer target for the schema compiler and the automaton: the input is
 * a JSON Schema (or, if it starts with '[', a tools array). Whatever it
 * compiles to is walked for a few hundred symbols, each picked from the
 * allowed ones by the input's bytes. Checks beyond "no crash": a compiled
 * grammar is never at a dead end (some symbol is allowed until an end
 * symbol was taken). A dead end aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/constrain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    if (size > 65536) return 0;
    g4_grammar *g = data[0] == '[' && size > 0
        ? g4_grammar_tools((const char *)data, size, "auto", 0, err, sizeof err)
        : g4_grammar_json((const char *)data, size, 0, err, sizeof err);
    if (!g) return 0;
    static g4_astate a, b;
    g4_astate_init(g, &a);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
    for (int step = 0; step < 300; step++) {
        int allowed[G4_NSYM], n = 0;
        for (int s = 0; s < G4_NSYM; s++)
            if (g4_astate_step(g, &a, s, &b)) allowed[n++] = s;
        if (!n) {
            /* only after an end symbol */
            if (!(a.nt == 1 && a.nf == 1)) abort();
            break;
        }
        h = h * 1103515245u + 12345u;
        int pick = allowed[(h >> 8) % (uint32_t)n];
        /* prefer ending once possible, so outputs stay small */
        if (step > 200 && g4_astate_step(g, &a, G4_SYM_END, &b)) pick = G4_SYM_END;
        g4_astate_step(g, &a, pick, &b);
        g4_astate_copy(&a, &b);
    }
    g4_grammar_free(g);
    return 0;
}
