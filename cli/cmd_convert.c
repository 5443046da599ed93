/* gemma4c convert: Hugging Face folder -> GGUF, as llama.cpp's
 * convert_hf_to_gguf.py lays it out (plus the quantized types, whose tensor
 * types follow llama-quantize). */
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
        "usage: gemma4c convert HF_DIR -o OUT.gguf [options]\n"
        "\n"
        "Writes a GGUF with the names, shapes, types and metadata of llama.cpp's\n"
        "converter for Gemma 4 (tokenizer and chat template included). Tensors are\n"
        "streamed one chunk at a time; the file appears under its name only when\n"
        "complete.\n"
        "\n"
        "  -o, --output PATH  output file (required)\n"
        "  --type TYPE        F32, F16, BF16 (default), Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,\n"
        "                     Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS\n"
        "  --name NAME        general.name (default: from the folder name)\n"
        "  --force            overwrite OUT.gguf if it exists\n"
        "  -t N               threads for quantization (default: all cores)\n"
        "  -h, --help         this help\n");
}

int cmd_convert(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *type = "BF16", *name = NULL;
    gemma4c_write_params o = { 0, 0, cli_show_progress, NULL };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && more) out = argv[++i];
        else if (!strcmp(a, "--type") && more) type = argv[++i];
        else if (!strcmp(a, "--name") && more) name = argv[++i];
        else if (!strcmp(a, "--force")) o.force = 1;
        else if (!strcmp(a, "-t") && more) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1024) { fprintf(stderr, "gemma4c convert: bad thread count '%s'\n", argv[i]); return 2; }
            o.n_threads = (int)n;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "gemma4c convert: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        } else if (!dir) dir = a;
        else { fprintf(stderr, "gemma4c convert: unexpected argument '%s'\n", a); return 2; }
    }
    if (!dir || !out) { usage(stderr); return 2; }
    if (gemma4c_file_type_from_name(type) < 0) { fprintf(stderr, "gemma4c convert: unknown type '%s'\n", type); return 2; }
    signal(SIGINT, cli_cleanup_on_signal);
    signal(SIGTERM, cli_cleanup_on_signal);
    char err[600];
    if (gemma4c_convert(dir, out, type, name, &o, err, sizeof err)) {
        fprintf(stderr, "gemma4c convert: %s\n", err);
        return 1;
    }
    return 0;
}
