/* gemma4c: command-line front end. Dispatches to cli/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const cli_command COMMANDS[] = {
    { "info",     "print a model's configuration and memory plan", cmd_info },
    { "logits",   "write prefill logits for a token file (raw f32)", cmd_logits },
    { "generate", "generate token ids from a prompt of ids", cmd_generate },
    { "render",   "print the exact chat prompt for an OpenAI-style request", cmd_render },
    { "parse",    "split model output into reasoning, content and tool calls (JSON)", cmd_parse },
    { "tokenize", "print the token ids (or pieces) of a text", cmd_tokenize },
    { "convert",  "convert a Hugging Face folder to GGUF", cmd_convert },
    { "quantize", "re-quantize a GGUF (llama-quantize type rules)", cmd_quantize },
    { "merge",    "bake LoRA adapters into a model file", cmd_merge },
    { "adapter",  "show a LoRA adapter, check it against a model, convert GGUF LoRA <-> PEFT", cmd_adapter },
    { "synth",    "write a random-weight Gemma 4 GGUF (demo / benchmark shapes)", cmd_synth },
    { "run",      "answer one message with the chat format (thinking, tools)", cmd_run },
    { "chat",     "interactive multi-turn chat", cmd_chat },
    { "batch",    "answer a JSONL file of chat requests, many at once (continuous batching)", cmd_batch },
    { "serve",    "an OpenAI-compatible HTTP server (server/)", cmd_serve },
    { "bench",    "measure prompt and generation speed against the machine's limits", cmd_bench },
    { "train",    "train a small Gemma 4 model from scratch on JSONL data (f32, AdamW)", cmd_train },
    { "finetune", "train a LoRA adapter on a frozen base model (PEFT folder + GGUF LoRA)", cmd_finetune },
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *o) {
    fprintf(o, "gemma4c - run Gemma 4 models locally\n\n"
               "usage: gemma4c <command> [options]   (gemma4c <command> --help for details)\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(o, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "gemma4c: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
