/* Options shared by the commands that run a model. */
#ifndef G4_CLI_OPTS_H
#define G4_CLI_OPTS_H

#include "gemma4c.h"

#define MAX_LORA 16

typedef struct run_opts {
    const char *model;
    int threads, n_ctx, n_batch, exact;
    const char *lora[MAX_LORA];   /* --lora PATH[:SCALE], in order */
    float lora_scale[MAX_LORA];
    int n_lora;
    int kv_type;              /* enum gemma4c_kv_type (0: the default) */
} run_opts;

extern const char *COMMON_HELP;
extern const char *SAMPLING_HELP;

/* Parse an int option value; prints an error and returns -1 on bad input. */
int parse_int(const char *opt, const char *v, int lo, int hi, int *out);
/* Model/context options (-m -t -c -b --exact --lora --kv-type). Returns 1 if argv[*i] was
 * consumed (advancing *i past a value), 0 if not ours, -1 on error. */
int common_opt(run_opts *o, int argc, char **argv, int *i);
/* Sampling options (--temp --top-k --top-p --min-p --repeat-penalty
 * --presence-penalty --frequency-penalty --seed --greedy); same contract. */
int sampling_opt(gemma4c_sampler_params *sp, int argc, char **argv, int *i);
/* Speculative decoding options (--draft ngram --draft-max K --ngram N);
 * same contract. */
extern const char *DRAFT_HELP;
int draft_opt(gemma4c_draft_params *dp, int argc, char **argv, int *i);
/* --draft mtp:FILE / --draft-model FILE: the file, opened for the model by
 * draft_attach once it is loaded (0, or -1 after printing why). */
extern const char *cli_draft_model;
int draft_attach(gemma4c_draft_params *dp, const gemma4c_model *m, int threads, int exact);
gemma4c_model *open_model(const run_opts *o);
/* The context of o (its adapters loaded and checked against m; they live
 * until the process exits). */
gemma4c_context *open_ctx(gemma4c_model *m, const run_opts *o);
/* --lora's value "PATH[:SCALE]" into o; prints an error and returns -1 on bad input. */
int parse_lora(run_opts *o, const char *v);
/* Load the n adapters of paths against m into out (kept until exit). 0 or -1 (printed). */
int load_adapters(gemma4c_model *m, const char *const *paths, int n, gemma4c_adapter **out);
/* Whitespace/comma-separated token ids. Returns count (>= 0) or -1. */
int parse_ids(const char *s, int32_t **out, const char *src);
/* Whole file as a NUL-terminated string (64 MiB limit), or NULL with a message. */
char *read_text_file(const char *path);

/* Progress line for long writes (synth, convert, quantize): bytes done/total,
 * rate, ETA; printed on stderr only when it is a terminal. A
 * gemma4c_progress_fn. */
void cli_show_progress(void *ud, uint64_t done, uint64_t total, double elapsed_s, int final);

/* SIGINT/SIGTERM handler for commands that write files: removes the partial
 * temporary file of a write in progress, then exits 128 + sig. */
void cli_cleanup_on_signal(int sig);

#endif
