/* gemma4c synth: write a random-weight Gemma 4 GGUF (tiny demo or real shapes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "gemma4c.h"
#include "opts.h"

int cmd_synth(int argc, char **argv) {
    const char *arch = "tiny", *type = "F32";
    uint64_t seed = 1;
    gemma4c_write_params o = { 0, 0, cli_show_progress, NULL };   /* 0 threads: all CPUs */
    const char *out = NULL;
    int mmproj = 0, type_given = 0, assistant = 0;
    const char *target = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemma4c synth [--arch ARCH] [--type TYPE] [--seed N] [--force] -o FILE.gguf\n\n"
                   "Write a Gemma 4 GGUF with random weights: the exact tensor names, shapes,\n"
                   "metadata and per-tensor types of the chosen size and file type, and a working\n"
                   "tokenizer. For demos, tests and benchmarks without downloading a model; its\n"
                   "text is meaningless.\n\n"
                   "  --arch ARCH   tiny (default, 4.5M params, E2B-style), e2b, e4b, 26b-a4b, 31b,\n"
                   "                mini (1.7M, the shape gemma4c train --arch mini starts from)\n"
                   "  --type TYPE   F32 (default), F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K,\n"
                   "                Q3_K_M, Q4_K_M, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS\n"
                   "  --seed N      random seed (default 1); same seed, same bytes\n"
                   "  -t N          threads (default: all CPUs; the output does not depend on it)\n"
                   "  --force       overwrite FILE if it exists\n"
                   "  --mmproj      write the media encoders (mmproj, vision tower) of ARCH instead,\n"
                   "                TYPE F16 (default here), BF16 or F32; pairs with synth's model\n"
                   "  --assistant   write ARCH's multi-token-prediction drafter instead (gemma4-assistant,\n"
                   "                e2b, e4b, 26b-a4b, 31b; use with --draft mtp:FILE)\n"
                   "  --assistant-for MODEL  a tiny drafter (2 layers, width 64) fitting MODEL, any size\n");
            return 0;
        }
        if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && v) { out = v; i++; }
        else if (!strcmp(a, "--arch") && v) { arch = v; i++; }
        else if (!strcmp(a, "--type") && v) { type = v; type_given = 1; i++; }
        else if (!strcmp(a, "--seed") && v) {
            char *end;
            seed = strtoull(v, &end, 10);
            if (*end) { fprintf(stderr, "gemma4c synth: --seed expects an integer\n"); return 2; }
            i++;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) {
            o.n_threads = atoi(v);
            if (o.n_threads < 1 || o.n_threads > 1024) { fprintf(stderr, "gemma4c synth: -t expects 1..1024\n"); return 2; }
            i++;
        } else if (!strcmp(a, "--force")) o.force = 1;
        else if (!strcmp(a, "--mmproj")) mmproj = 1;
        else if (!strcmp(a, "--assistant")) assistant = 1;
        else if (!strcmp(a, "--assistant-for") && v) { target = v; assistant = 1; i++; }
        else { fprintf(stderr, "gemma4c synth: unknown or incomplete option '%s'\n", a); return 2; }
    }
    if (!out) { fprintf(stderr, "gemma4c synth: need -o FILE.gguf (see --help)\n"); return 2; }
    char err[600];
    if (mmproj) {
        if (gemma4c_synth_mmproj(out, arch, strcmp(type, "F32") || type_given ? type : "F16", seed, o.force, err, sizeof err)) {
            fprintf(stderr, "gemma4c synth: %s\n", err);
            return 1;
        }
        fprintf(stderr, "wrote %s (mmproj, %s)\n", out, arch);
        return 0;
    }
    if (assistant) {
        if (gemma4c_synth_assistant(out, arch, target, type, seed, &o, err, sizeof err)) {
            fprintf(stderr, "gemma4c synth: %s\n", err);
            return 1;
        }
        fprintf(stderr, "wrote %s (assistant for %s, %s)\n", out, target ? target : arch, type);
        return 0;
    }
    if (gemma4c_synth(out, arch, type, seed, &o, err, sizeof err)) {
        fprintf(stderr, "gemma4c synth: %s\n", err);
        return 1;
    }
    fprintf(stderr, "wrote %s (%s, %s)\n", out, arch, type);
    return 0;
}
