/* gemma4c quantize: GGUF -> GGUF of another type, with llama-quantize's
 * per-tensor type rules and output layout. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "gemma4c.h"
#include "opts.h"

static void usage(FILE *o) {
    fprintf(o,
        "usage: gemma4c quantize IN.gguf OUT.gguf TYPE [options]\n"
        "\n"
        "TYPE: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S,\n"
        "      Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS, F16, BF16, F32.\n"
        "Per-tensor types follow llama-quantize (e.g. Q4_K_M keeps embeddings in\n"
        "Q6_K and gives some attn_v/ffn_down Q6_K); norms and small tensors stay F32.\n"
        "\n"
        "  -t N         threads (default: all cores)\n"
        "  --force      overwrite OUT.gguf if it exists\n"
        "  -h, --help   this help\n");
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = { NULL, NULL, NULL };
    int npos = 0;
    gemma4c_write_params o = { 0, 0, cli_show_progress, NULL };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--force")) o.force = 1;
        else if (!strcmp(a, "-t") && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1024) { fprintf(stderr, "gemma4c quantize: bad thread count '%s'\n", argv[i]); return 2; }
            o.n_threads = (int)n;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "gemma4c quantize: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        } else if (npos < 3) pos[npos++] = a;
        else { fprintf(stderr, "gemma4c quantize: unexpected argument '%s'\n", a); return 2; }
    }
    if (npos != 3) { usage(stderr); return 2; }
    if (gemma4c_file_type_from_name(pos[2]) < 0) {
        fprintf(stderr, "gemma4c quantize: unknown type '%s'\n", pos[2]);
        return 2;
    }
    signal(SIGINT, cli_cleanup_on_signal);
    signal(SIGTERM, cli_cleanup_on_signal);
    char err[600];
    if (gemma4c_quantize(pos[0], pos[1], pos[2], &o, err, sizeof err)) {
        fprintf(stderr, "gemma4c quantize: %s\n", err);
        return 1;
    }
    return 0;
}
