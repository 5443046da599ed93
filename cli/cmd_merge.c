/* gemma4c merge: LoRA adapters baked into a model file; gemma4c adapter:
 * show an adapter or rewrite it as GGUF LoRA / PEFT folder. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gemma4c.h"
#include "opts.h"

static void merge_usage(FILE *o) {
    fprintf(o,
        "usage: gemma4c merge BASE --lora PATH[:S] [--lora ...] -o OUT.gguf [--type T] [options]\n"
        "\n"
        "Writes BASE (GGUF file or Hugging Face folder) with the adapters merged\n"
        "into its weights: W' = W + S * alpha / r * B A for every adapted matrix\n"
        "(the same product the adapters give at run time with --lora).\n"
        "One tensor at a time: the model is never held in memory.\n"
        "\n"
        "  --lora PATH[:S]  GGUF LoRA file or PEFT folder at scale S (default 1); repeatable\n"
        "  -o OUT.gguf      output file\n"
        "  --type T         re-quantize to file type T (Q8_0, Q4_K_M, F16, ... as\n"
        "                   `gemma4c quantize`); default: each tensor keeps its type\n"
        "                   (an HF folder base: F32)\n"
        "  -t N             threads\n"
        "  --force          overwrite OUT.gguf\n");
}

int cmd_merge(int argc, char **argv) {
    const char *base = NULL, *out = NULL, *type = NULL;
    run_opts lo = { 0 };
    gemma4c_write_params wp = { 0, 0, cli_show_progress, NULL };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { merge_usage(stdout); return 0; }
        else if (!strcmp(a, "--lora")) { if (parse_lora(&lo, v)) return 2; i++; }
        else if (!strcmp(a, "-o") && v) { out = v; i++; }
        else if (!strcmp(a, "--type") && v) { type = v; i++; }
        else if (!strcmp(a, "--force")) wp.force = 1;
        else if (!strcmp(a, "-t")) { if (parse_int(a, v, 1, 1024, &wp.n_threads)) return 2; i++; }
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "gemma4c merge: unknown or incomplete option '%s'\n", a); return 2; }
        else if (!base) base = a;
        else { fprintf(stderr, "gemma4c merge: unexpected argument '%s'\n", a); return 2; }
    }
    if (!base || !out || !lo.n_lora) { merge_usage(stderr); return 2; }
    if (type && gemma4c_file_type_from_name(type) < 0) {
        fprintf(stderr, "gemma4c merge: unknown type '%s'\n", type);
        return 2;
    }
    signal(SIGINT, cli_cleanup_on_signal);
    signal(SIGTERM, cli_cleanup_on_signal);
    char err[600];
    int rc = gemma4c_merge(base, lo.lora, lo.lora_scale, lo.n_lora, out, type, &wp, err, sizeof err);
    if (rc) { fprintf(stderr, "gemma4c merge: %s\n", err); return 1; }
    return 0;
}

static void adapter_usage(FILE *o) {
    fprintf(o,
        "usage: gemma4c adapter PATH [-m MODEL] [-o OUT --format gguf|gguf:F16|gguf:BF16|peft] [--force]\n"
        "\n"
        "Reads a LoRA adapter (GGUF LoRA file or PEFT folder) and prints what it\n"
        "adapts; with -m, checks it against MODEL; with -o, writes it as a GGUF\n"
        "LoRA file (as llama.cpp's convert_lora_to_gguf.py does) or a PEFT folder.\n");
}

int cmd_adapter(int argc, char **argv) {
    const char *path = NULL, *model = NULL, *out = NULL, *format = "gguf";
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { adapter_usage(stdout); return 0; }
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) { model = v; i++; }
        else if (!strcmp(a, "-o") && v) { out = v; i++; }
        else if (!strcmp(a, "--format") && v) { format = v; i++; }
        else if (!strcmp(a, "--force")) force = 1;
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "gemma4c adapter: unknown or incomplete option '%s'\n", a); return 2; }
        else if (!path) path = a;
        else { fprintf(stderr, "gemma4c adapter: unexpected argument '%s'\n", a); return 2; }
    }
    if (!path) { adapter_usage(stderr); return 2; }
    char err[600];
    gemma4c_model *m = NULL;
    if (model && !(m = gemma4c_model_open(model, err, sizeof err))) { fprintf(stderr, "gemma4c: %s\n", err); return 1; }
    gemma4c_adapter *ad = gemma4c_adapter_load(m, path, err, sizeof err);
    int rc = 0;
    if (!ad) { fprintf(stderr, "gemma4c adapter: %s\n", err); rc = 1; }
    else {
        int n, r;
        float alpha;
        gemma4c_adapter_info(ad, &n, &r, &alpha);
        printf("%s: LoRA, %d adapted weights, rank %d, alpha %g (multiplier %g)%s\n", path, n, r, (double)alpha,
               alpha != 0 && r ? (double)alpha / r : 1.0, m ? ", matches the model" : "");
        if (out && gemma4c_adapter_write(ad, out, format, force, err, sizeof err)) {
            fprintf(stderr, "gemma4c adapter: %s\n", err);
            rc = 1;
        }
    }
    gemma4c_adapter_free(ad);
    gemma4c_model_free(m);
    return rc;
}
