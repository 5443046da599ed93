/* Subcommands of the gemma4c CLI. Each lives in its own cli/cmd_*.c file and
 * is listed in the table in cli/main.c. A command returns the process exit
 * status: 0 success, 1 bad input/model/runtime error, 2 usage error. */
#ifndef G4_CLI_COMMANDS_H
#define G4_CLI_COMMANDS_H

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);   /* argv[0] is the command name */
} cli_command;

int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_parse(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_merge(int argc, char **argv);     /* cmd_merge.c */
int cmd_adapter(int argc, char **argv);   /* cmd_merge.c */
int cmd_bench(int argc, char **argv);
/* bench --spec (cli/cmd_bench_spec.c): verification cost of k drafts and
 * end-to-end speed at forced acceptance rates; with draft_model (an MTP
 * assistant, or NULL) also its cost per drafted token. */
struct gemma4c_model;
int bench_spec(struct gemma4c_model *m, const int *ks, int n_k, int tg, int depth, int reps, int threads, int exact,
               int draft_max, int json, const char *draft_model);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_serve(int argc, char **argv);   /* server/serve.c */
int cmd_train(int argc, char **argv);
int cmd_finetune(int argc, char **argv);

#endif
