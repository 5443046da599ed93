/* gemma4c train: full training of a small Gemma 4 model (engine/train.c). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "gemma4c.h"
#include "opts.h"

static volatile int g_stop;
static void on_sigint(int sig) { (void)sig; g_stop = 1; }

typedef struct curve {
    double *loss, *eval;
    int n, cap;
    int quiet, last_step, profile;
} curve;

static void fmt_time(double s, char *b, size_t n) {
    if (!(s >= 0) || s > 1e7) snprintf(b, n, "?");
    else if (s >= 3600) snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

static void on_progress(void *ud, const gemma4c_train_progress *p) {
    curve *c = ud;
    if (c->n == c->cap) {
        c->cap = c->cap * 2 + 256;
        double *l = realloc(c->loss, (size_t)c->cap * sizeof *l), *e = l ? realloc(c->eval, (size_t)c->cap * sizeof *e) : NULL;
        if (l) c->loss = l;
        if (e) c->eval = e;
        if (!l || !e) { c->cap = c->n; return; }
    }
    c->last_step = p->step;
    if (c->n == 0) {
        /* resident: the weights a step reads, the workspace, the trainables
         * and ~35 MiB of process (libraries, the tokenizer) */
        double res = (p->mem_weights_read + p->mem_activations + p->mem_trainable) / 1048576.0 + 35;
        fprintf(stderr, "memory plan: weights %.1f MiB (mapped), activations %.1f MiB, trainable + gradients + "
                        "AdamW %.1f MiB; activations: kept internals of %d of %d layers %.1f MiB (the rest "
                        "recomputed) + workspace %.1f MiB; resident after a step ~%.0f MiB (weights read %.1f MiB)\n",
                p->mem_weights / 1048576.0, p->mem_activations / 1048576.0, p->mem_trainable / 1048576.0,
                p->kept_layers, p->n_layers, p->mem_kept / 1048576.0, (p->mem_activations - p->mem_kept) / 1048576.0,
                res, p->mem_weights_read / 1048576.0);
    }
    if (c->n == 0 && isfinite(p->eval_unigram))
        fprintf(stderr, "eval baseline (unigram frequencies of the training targets): %.4f\n", p->eval_unigram);
    c->loss[c->n] = p->loss;
    c->eval[c->n++] = p->eval_loss;
    if (c->quiet && !p->final && !isfinite(p->eval_loss) && p->step % 50) return;
    char eta[32], ev[32] = "";
    fmt_time(p->eta_s, eta, sizeof eta);
    if (isfinite(p->eval_loss)) snprintf(ev, sizeof ev, "  eval %.4f", p->eval_loss);
    fprintf(stderr, "step %d/%d  epoch %d  loss %.4f%s  %.0f tok/s  ETA %s  (step: %ld tokens, %.2f s)\n", p->step,
            p->total_steps, p->epoch + 1, p->loss, ev, p->tokens_per_s, eta, p->step_tokens, p->step_s);
    if (c->profile)
        fprintf(stderr, "  parts (s): forward %.2f  head %.2f  head backward %.2f  recomputed forward %.2f  backward "
                        "%.2f  optimizer %.2f\n", p->part_s[0], p->part_s[1], p->part_s[2], p->part_s[3], p->part_s[4],
                p->step_s - p->part_s[0] - p->part_s[1] - p->part_s[2] - p->part_s[3] - p->part_s[4]);
}

/* The loss curve as an SVG: training loss per step (and eval points). */
static int write_svg(const char *path, const curve *c) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < c->n; i++) {
        if (isfinite(c->loss[i])) { lo = fmin(lo, c->loss[i]); hi = fmax(hi, c->loss[i]); }
        if (isfinite(c->eval[i])) { lo = fmin(lo, c->eval[i]); hi = fmax(hi, c->eval[i]); }
    }
    if (!(hi > lo)) { hi = lo + 1; }
    const int W = 640, Hh = 360, M = 40;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
               "<text x=\"%d\" y=\"20\" font-family=\"sans-serif\" font-size=\"14\">loss per step "
               "(%.3f .. %.3f; blue train, red eval)</text>\n<polyline fill=\"none\" stroke=\"#1f77b4\" points=\"",
            W, Hh, M, lo, hi);
    for (int i = 0; i < c->n; i++)
        if (isfinite(c->loss[i]))
            fprintf(f, "%.1f,%.1f ", M + (W - 2.0 * M) * i / (c->n > 1 ? c->n - 1 : 1),
                    Hh - M - (Hh - 2.0 * M) * (c->loss[i] - lo) / (hi - lo));
    fprintf(f, "\"/>\n");
    for (int i = 0; i < c->n; i++)
        if (isfinite(c->eval[i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d62728\"/>\n",
                    M + (W - 2.0 * M) * i / (c->n > 1 ? c->n - 1 : 1),
                    Hh - M - (Hh - 2.0 * M) * (c->eval[i] - lo) / (hi - lo));
    fprintf(f, "</svg>\n");
    return fclose(f);
}

static int parse_f(const char *opt, const char *v, float *out) {
    char *end;
    double d = strtod(v, &end);
    if (*end || !(d >= 0) || d > 1e3) { fprintf(stderr, "gemma4c: %s expects a non-negative number\n", opt); return -1; }
    *out = (float)d;
    return 0;
}

static int run_train(int argc, char **argv, int lora) {
    const char *cmd = lora ? "finetune" : "train";
    gemma4c_train_params p = { .weight_decay = -1, .seed = 1, .n_threads = 1 };
    const char *plot = NULL;
    curve c = { 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if ((!strcmp(a, "-h") || !strcmp(a, "--help")) && lora) {
            printf("usage: gemma4c finetune -m BASE -d DATA.jsonl -o OUT [options]\n\n"
                   "Train a LoRA adapter on a frozen base model (used in its stored, possibly\n"
                   "quantized form). Writes OUT/ (PEFT folder: adapter_config.json +\n"
                   "adapter_model.safetensors) and OUT.gguf (GGUF LoRA); both load with --lora\n"
                   "and bake in with gemma4c merge.\n\n"
                   "  -m, --model BASE   GGUF file or Hugging Face folder\n"
                   "  --rank N           adapter rank (default 16)\n"
                   "  --alpha X          LoRA alpha (default 32; the product is scaled alpha/rank)\n"
                   "  --targets LIST     of q,k,v,o,gate,up,down (default all)\n"
                   "  --lr X             peak learning rate (default 1e-3)\n"
                   "  --exact            every product in f32 against the decoded weights (the\n"
                   "                     gradient tests' path, ~10x slower; default: int8\n"
                   "                     activations in the forward like prefill)\n"
                   "  --recompute MODE   auto (default), always or never: whether a layer's\n"
                   "                     backward reruns its forward (activation checkpointing)\n"
                   "                     or reads the internals kept from the forward; auto keeps\n"
                   "                     as many layers as fit in --act-mem (same results)\n"
                   "  --act-mem MIB      auto's budget for kept internals (default: a quarter\n"
                   "                     of the physical memory)\n"
                   "  the data, schedule, checkpoint and resume options of gemma4c train\n"
                   "  (--resume DIR/step-N continues from a checkpoint of this base)\n");
            return 0;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemma4c train (--arch ARCH | --resume DIR) -d DATA.jsonl -o OUT.gguf [options]\n\n"
                   "Train every weight of a new small Gemma 4 model (f32, AdamW) and write it as\n"
                   "an F32 GGUF that every other command runs.\n\n"
                   "  --arch ARCH        synth preset of the new model: mini (1.7M params, default\n"
                   "                     demo), tiny (4.5M); random init N(0, 1/n_in), norms 1\n"
                   "  --corpus FILE      learn the tokenizer's BPE merges from this text\n"
                   "  -d, --data FILE    JSONL: {\"text\": ...} (loss on all tokens) or\n"
                   "                     {\"messages\": [...]} in the chat format (loss on the\n"
                   "                     assistant turns)\n"
                   "  --eval FILE        held-out JSONL: its loss is printed (--eval-every, end)\n"
                   "  --ctx N            tokens per sequence (default 256); longer examples are\n"
                   "                     cut at N (default) or, with --pack, concatenated and cut\n"
                   "                     into windows of N\n"
                   "  --batch-tokens N   tokens per optimizer step (default 2048)\n"
                   "  --grad-accum N     batches per optimizer step (default 1)\n"
                   "  --lr X             peak learning rate (default 1e-3; warmup, cosine to 10%%)\n"
                   "  --wd X             weight decay on matrices (default 0.01)\n"
                   "  --epochs N         passes over the data (default 1)\n"
                   "  --steps N          stop after N steps\n"
                   "  --save-every N     checkpoint every N steps (also at the end and on Ctrl-C)\n"
                   "  --eval-every N     eval loss every N steps\n"
                   "  --ckpt-dir DIR     checkpoints go to DIR/step-N (default OUT.gguf.ckpt)\n"
                   "  --resume DIR       continue from a checkpoint DIR/step-N (same data, options,\n"
                   "                     seed and\n"
                   "                     threads give the uninterrupted run bit for bit)\n"
                   "  --seed N           init and data order (default 1)\n"
                   "  --plot FILE.svg    write the loss curve\n"
                   "  -t N               threads (default 1)\n"
                   "  --recompute MODE   auto, always, never; --act-mem MIB: see finetune --help\n"
                   "  -q                 print every 50th step only\n"
                   "  --profile          each step's seconds by part (forward, head, backward...)\n"
                   "  --dump-logits F    (tests) the trained model's logits of the first example\n");
            return 0;
        }
        if ((!strcmp(a, "-d") || !strcmp(a, "--data")) && v) { p.data = v; i++; }
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && v) { p.out = v; i++; }
        else if (!strcmp(a, "--arch") && v && !lora) { p.arch = v; i++; }
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v && lora) { p.base = v; i++; }
        else if (!strcmp(a, "--targets") && v && lora) { p.targets = v; i++; }
        else if (!strcmp(a, "--rank") && v && lora) { r = parse_int(a, v, 1, 4096, &p.rank); i++; }
        else if (!strcmp(a, "--alpha") && v && lora) { r = parse_f(a, v, &p.alpha); i++; }
        else if (!strcmp(a, "--corpus") && v) { p.corpus = v; i++; }
        else if (!strcmp(a, "--eval") && v) { p.eval = v; i++; }
        else if (!strcmp(a, "--resume") && v) { p.resume = v; i++; }
        else if (!strcmp(a, "--ckpt-dir") && v) { p.ckpt_dir = v; i++; }
        else if (!strcmp(a, "--plot") && v) { plot = v; i++; }
        else if (!strcmp(a, "--dump-logits") && v) { p.dump_logits = v; i++; }
        else if (!strcmp(a, "--pack")) p.pack = 1;
        else if (!strcmp(a, "--exact") && lora) p.exact = 1;
        else if (!strcmp(a, "--recompute") && v) {
            if (!strcmp(v, "auto")) p.recompute = 0;
            else if (!strcmp(v, "always")) p.recompute = 1;
            else if (!strcmp(v, "never")) p.recompute = 2;
            else { fprintf(stderr, "gemma4c %s: --recompute expects auto, always or never, not '%s'\n", cmd, v); return 2; }
            i++;
        }
        else if (!strcmp(a, "--act-mem") && v) { r = parse_int(a, v, 1, 1 << 30, &p.act_mem_mib); i++; }
        else if (!strcmp(a, "-q")) c.quiet = 1;
        else if (!strcmp(a, "--profile")) c.profile = 1;
        else if (!strcmp(a, "--lr") && v) { r = parse_f(a, v, &p.lr); i++; }
        else if (!strcmp(a, "--wd") && v) { r = parse_f(a, v, &p.weight_decay); i++; }
        else if (!strcmp(a, "--ctx") && v) { r = parse_int(a, v, 8, 1 << 16, &p.n_ctx); i++; }
        else if (!strcmp(a, "--batch-tokens") && v) { r = parse_int(a, v, 1, 1 << 24, &p.batch_tokens); i++; }
        else if (!strcmp(a, "--grad-accum") && v) { r = parse_int(a, v, 1, 1 << 16, &p.grad_accum); i++; }
        else if (!strcmp(a, "--epochs") && v) { r = parse_int(a, v, 1, 1 << 20, &p.epochs); i++; }
        else if (!strcmp(a, "--steps") && v) { r = parse_int(a, v, 1, 1 << 30, &p.max_steps); i++; }
        else if (!strcmp(a, "--save-every") && v) { r = parse_int(a, v, 1, 1 << 30, &p.save_every); i++; }
        else if (!strcmp(a, "--eval-every") && v) { r = parse_int(a, v, 1, 1 << 30, &p.eval_every); i++; }
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) { r = parse_int(a, v, 1, 1024, &p.n_threads); i++; }
        else if (!strcmp(a, "--seed") && v) {
            char *end;
            p.seed = strtoull(v, &end, 10);
            if (*end) { fprintf(stderr, "gemma4c train: --seed expects an integer\n"); return 2; }
            i++;
        } else { fprintf(stderr, "gemma4c %s: unknown or incomplete option '%s'\n", cmd, a); return 2; }
        if (r) return 2;
    }
    if (lora && (!p.data || !p.out || !p.base)) {
        fprintf(stderr, "gemma4c finetune: need -m BASE, -d DATA.jsonl and -o OUT (see --help)\n");
        return 2;
    }
    if (!lora && (!p.data || !p.out || (!p.arch && !p.resume))) {
        fprintf(stderr, "gemma4c train: need -d DATA.jsonl, -o OUT.gguf and --arch or --resume (see --help)\n");
        return 2;
    }
    p.progress = on_progress;
    p.progress_user = &c;
    p.stop = &g_stop;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    char err[1024];
    int rc = gemma4c_train(&p, err, sizeof err);
    if (plot && c.n && write_svg(plot, &c)) fprintf(stderr, "gemma4c train: cannot write %s\n", plot);
    free(c.loss);
    free(c.eval);
    if (rc < 0) { fprintf(stderr, "gemma4c %s: %s\n", cmd, err); return 1; }
    if (rc == 1) {
        fprintf(stderr, "interrupted: checkpoint written to %s%s/step-%d (continue with --resume)\n",
                p.ckpt_dir ? p.ckpt_dir : p.out, p.ckpt_dir ? "" : ".ckpt", c.last_step);
        return 130;
    }
    fprintf(stderr, "wrote %s%s\n", p.out, lora ? " (PEFT folder) and its .gguf" : "");
    return 0;
}

int cmd_train(int argc, char **argv) { return run_train(argc, argv, 0); }
int cmd_finetune(int argc, char **argv) { return run_train(argc, argv, 1); }
