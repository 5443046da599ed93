/* gemma4c parse: model output text on stdin -> OpenAI-style assistant
 * message JSON (content, reasoning_content, tool_calls). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "gemma4c.h"

static void parse_usage(FILE *o) {
    fprintf(o,
        "usage: gemma4c parse [--stream] [--compact] < model_output.txt\n"
        "\n"
        "Split Gemma 4 output text (special tokens written as text, e.g. <|channel>,\n"
        "<|tool_call>, <|\"|>) into reasoning, content and tool calls, and print the\n"
        "OpenAI-style message: {\"role\",\"content\",\"reasoning_content\",\"tool_calls\":\n"
        "[{\"id\",\"type\":\"function\",\"function\":{\"name\",\"arguments\"}}]}.\n"
        "Malformed or unterminated tool calls are kept as content.\n"
        "\n"
        "  --stream    also print every delta as one JSON line while reading\n"
        "              ({\"reasoning\":...} / {\"content\":...} / {\"tool_call\":{...}})\n"
        "  --compact   print the message on one line\n"
        "  --tools a,b,c   only these tool names are calls (others stay content)\n"
        "  --in-reasoning  the prompt ended inside the thought channel\n"
        "              (\"<|channel>thought\\n\"), so the output starts as reasoning\n");
}

static void print_delta(void *user, const gemma4c_delta *d) {
    (void)user;
    json_t *j = NULL;
    if (d->kind == GEMMA4C_DELTA_TOOL_CALL)
        j = json_pack("{s:{s:i,s:s,s:s,s:s}}", "tool_call", "index", d->index, "id", d->id, "name", d->name,
                      "arguments", d->arguments);
    else
        j = json_pack("{s:s%}", d->kind == GEMMA4C_DELTA_REASONING ? "reasoning" : "content", d->text, d->len);
    if (!j) return;   /* e.g. a delta ending inside a UTF-8 sequence: shown in the final message */
    char *s = json_dumps(j, JSON_COMPACT);
    if (s) { puts(s); free(s); }
    json_decref(j);
}

int cmd_parse(int argc, char **argv) {
    int stream = 0, compact = 0;
    char *list = NULL;
    const char **names = NULL;
    gemma4c_parse_options opt = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            parse_usage(stdout);
            free(list);
            free(names);
            return 0;
        }
        else if (!strcmp(argv[i], "--stream")) stream = 1;
        else if (!strcmp(argv[i], "--compact")) compact = 1;
        else if (!strcmp(argv[i], "--in-reasoning")) opt.in_reasoning = 1;
        else if (!strcmp(argv[i], "--tools") && i + 1 < argc) {
            /* split a copy of the list in place; the names live until exit */
            free(list);
            free(names);
            list = strdup(argv[++i]);
            size_t cap = 1;
            for (char *q = list; q && *q; q++) cap += *q == ',';
            names = list ? calloc(cap, sizeof *names) : NULL;
            if (!names) { fprintf(stderr, "gemma4c parse: out of memory\n"); free(list); return 1; }
            size_t k = 0;
            for (char *tok = strtok(list, ","); tok && k < cap; tok = strtok(NULL, ",")) names[k++] = tok;
            opt.tool_names = names;
            opt.n_tool_names = k;
        }
        else {
            fprintf(stderr, "gemma4c parse: bad argument '%s'\n\n", argv[i]);
            parse_usage(stderr);
            free(list);
            free(names);
            return 2;
        }
    }
    gemma4c_chat_parser *p = gemma4c_chat_parser_new(&opt, stream ? print_delta : NULL, NULL);
    if (!p) { fprintf(stderr, "gemma4c parse: out of memory\n"); free(list); free(names); return 1; }
    char buf[4096];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        if (gemma4c_chat_parser_feed(p, buf, n)) { rc = 1; break; }
    if (!rc && gemma4c_chat_parser_finish(p)) rc = 1;
    char *s = rc ? NULL : gemma4c_chat_parser_message(p, compact ? 0 : 2);
    gemma4c_chat_parser_free(p);
    free(list);
    free(names);
    if (!s) { fprintf(stderr, "gemma4c parse: out of memory or invalid UTF-8 in output\n"); return 1; }
    puts(s);
    free(s);
    return 0;
}
