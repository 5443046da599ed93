/* gemma4c bench: prompt processing (pp) and generation (tg) speed, with each
 * result placed against this machine's measured limits:
 *   tg: weight + KV bytes read per token / read bandwidth  (memory roofline)
 *   pp: FLOPs per token / arithmetic peak                   (compute roofline)
 * Results are the median of -r repetitions, with min-max spread. On a shared
 * machine the bandwidth moves with the other tenants (±30% within minutes
 * was seen), so tg also probes it right before and right after each
 * repetition and reports the median of each repetition's share of the mean
 * of its two probes ("adjacent"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "gemma4c.h"
#include "opts.h"


/* --lora: every context of the run gets the adapters (loaded after the model) */
static run_opts g_lo;
static gemma4c_adapter *g_ad[MAX_LORA];
static void with_lora(gemma4c_context_params *cp) {
    cp->adapters = g_ad;
    cp->adapter_scales = g_lo.lora_scale;
    cp->n_adapters = g_lo.n_lora;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of n values, sorted in place; an even count averages the middle
 * two (taking the upper one reported the better of two repetitions). */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct result {
    char test[32];
    double med, lo, hi;     /* tokens/s */
    double roof;            /* t/s the limit allows */
    const char *limit;      /* "bw" or "int8"/"f32" */
    double adj_pct, adj_bw; /* tg: median % of the probes around each repetition, median of them; else 0 */
} result;

/* Start a test from `depth` tokens of context (untimed; eval batches them). */
static int fill_depth(gemma4c_context *c, const int32_t *ids, int depth, char *err, size_t len) {
    gemma4c_reset(c);
    return depth > 0 ? gemma4c_eval(c, ids, depth, 0, err, len) : 0;
}

/* Peak resident memory of the model's work, not of the bandwidth probe's
 * 1 GiB buffer: the kernel's high-water mark (VmHWM) is read before each
 * probe and reset after it (clear_refs 5). -1 where /proc lacks either. */
static double vm_hwm(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) { kb = atof(line + 6); break; }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024.0;
}

static int reset_hwm(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static double g_peak = 0;
static int g_hwm_ok = 1;
static void note_peak(void) {
    double h = vm_hwm();
    if (h < 0) g_hwm_ok = 0;
    else if (h > g_peak) g_peak = h;
}

static double probe_bw(int threads) {
    note_peak();
    double bw = gemma4c_probe_bandwidth(threads);
    if (reset_hwm()) g_hwm_ok = 0;
    return bw;
}

static int geti(const char *opt, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > hi) {
        fprintf(stderr, "gemma4c bench: %s expects an integer in [%d, %d]\n", opt, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* Random-looking valid ids (the same every run). */
static void fill_ids(int32_t *ids, int n, int n_vocab, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)(1000 + (s >> 33) % (uint64_t)(n_vocab > 2000 ? n_vocab - 1000 : 1));
        if (ids[i] >= n_vocab) ids[i] = (int32_t)((s >> 33) % (uint64_t)n_vocab);
    }
}

/* --parallel: N streams decoding together, one token each per forward pass
 * (gemma4c_decode of a batch of N, logits kept for all N as a server samples
 * each). A step reads the weights once and each stream's KV, and does N
 * tokens' arithmetic, so the roofline of a step is the larger of
 * (weights + N x KV) / bandwidth and N x FLOPs / int8 peak. Then the time to
 * the first token of a prompt whose first ttft_prefix tokens are in the
 * prefix cache, against the same prompt cold. */
/* --kv-type as given (enum gemma4c_kv_type), resolved by the context; the
 * cost model's bytes follow it */
static int g_kv_type;
/* --sample: each stream's next token drawn from its logits with the
 * server's default sampler (temperature 1, top-k 64, top-p 0.95), as a
 * served request at temperature 1 does per token; else the next tokens are
 * a fixed sequence and the logits are computed but not read */
static int g_sample;

static int bench_parallel(gemma4c_model *m, const char *model, const int *list, int n_list, int tg, int depth,
                          int reps, int threads, int exact, double bw, double i8, double f32, int ttft_prefix,
                          int json) {
    FILE *log = json ? stderr : stdout;
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    char err[600];
    if (tg < 1) tg = 1;
    double agg[64], per[64], roof[64], rss[64], plan_b[64];
    const char *limit[64];
    double *t = malloc((size_t)reps * sizeof *t);
    int rc = 0;
    for (int li = 0; li < n_list && !rc; li++) {
        int N = list[li];
        gemma4c_context_params cp = gemma4c_context_default_params();
        cp.n_ctx = N * ((depth + tg + 2 + 255) / 256 * 256); /* whole pages for each stream */
        cp.n_batch = N > 512 ? N : 512;
        if (cp.n_batch > cp.n_ctx) cp.n_batch = cp.n_ctx;
        cp.n_threads = threads;
        cp.n_seq = N;
        cp.precision = exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
        with_lora(&cp);
        cp.kv_type = g_kv_type;
        int hwm = reset_hwm() == 0;     /* peak RSS of this N alone (the weights stay mapped) */
        gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
        int32_t *tok = malloc((size_t)(N + depth + 1) * sizeof *tok), *seq = malloc((size_t)N * sizeof *seq);
        int8_t *keep = malloc((size_t)N);
        if (!c || !tok || !seq || !keep) {
            fprintf(stderr, "gemma4c: %s\n", c ? "out of memory" : err);
            rc = 1;
        }
        for (int r = 0; r < reps && !rc; r++) {
            /* each stream starts with depth + 1 tokens of its own */
            for (int q = 0; q < N && !rc; q++) {
                gemma4c_seq_truncate(c, q, 0);
                fill_ids(tok, depth + 1, info.n_vocab, 77 + (uint64_t)q);
                int32_t sq[1] = { q };
                for (int k = 0; k <= depth && !rc; k += 512) {
                    int n = depth + 1 - k < 512 ? depth + 1 - k : 512;
                    int32_t *sv = malloc((size_t)n * sizeof *sv);
                    for (int u = 0; sv && u < n; u++) sv[u] = sq[0];
                    gemma4c_batch b = { .n_tokens = n, .token = tok + k, .seq = sv };
                    if (!sv || gemma4c_decode(c, &b, err, sizeof err)) rc = 1;
                    free(sv);
                }
            }
            for (int q = 0; q < N; q++) { seq[q] = q; keep[q] = 1; tok[q] = (int32_t)(1000 + 37 * q) % info.n_vocab; }
            gemma4c_sampler **smp = g_sample ? calloc((size_t)N, sizeof *smp) : NULL;
            for (int q = 0; smp && q < N; q++) {
                gemma4c_sampler_params sp = gemma4c_sampler_default_params();
                sp.seed = (uint64_t)q;
                if (!(smp[q] = gemma4c_sampler_new(&sp))) rc = 1;
            }
            if (g_sample && (!smp || rc)) { rc = 1; snprintf(err, sizeof err, "out of memory"); }
            double t0 = now();
            for (int k = 0; k < tg && !rc; k++) {
                gemma4c_batch b = { .n_tokens = N, .token = tok, .seq = seq, .logits = keep };
                if (gemma4c_decode(c, &b, err, sizeof err)) rc = 1;
                for (int q = 0; q < N && !rc; q++) {
                    if (!smp) { tok[q] = (int32_t)((tok[q] * 7 + 13) % info.n_vocab); continue; }
                    tok[q] = gemma4c_sampler_sample(smp[q], gemma4c_logits_ith(c, q), info.n_vocab);
                    gemma4c_sampler_accept(smp[q], tok[q]);
                }
            }
            t[r] = tg / (now() - t0);
            for (int q = 0; smp && q < N; q++) gemma4c_sampler_free(smp[q]);
            free(smp);
        }
        if (rc) { if (c) fprintf(stderr, "gemma4c: %s\n", err); }
        else {
            double step = median(t, reps); /* steps per second */
            double wbytes = 0, kv = 0, flops = 0;
            for (int i = 0; i < tg; i++) {
                gemma4c_token_cost tc;
                gemma4c_token_cost_kv(m, depth + i, g_kv_type, &tc);
                wbytes += (double)tc.weight_bytes;
                kv += (double)tc.kv_bytes;
                flops += tc.matmul_flops + tc.attn_flops;
            }
            wbytes /= tg; kv /= tg; flops /= tg;
            double peak = (!exact && i8 > 0) ? i8 : f32;
            double t_mem = (wbytes + N * kv) / (bw * 1e9), t_cmp = N * flops / (peak * 1e9);
            gemma4c_memory_plan pl;
            gemma4c_memory_plan_params(m, &cp, &pl);
            plan_b[li] = (double)pl.total_bytes;
            rss[li] = hwm ? vm_hwm() : -1;
            agg[li] = step * N;
            per[li] = step;
            roof[li] = N / (t_mem > t_cmp ? t_mem : t_cmp);
            limit[li] = t_mem > t_cmp ? "bandwidth" : (!exact && i8 > 0) ? "int8 peak" : "f32 peak";
            fprintf(log, "  parallel %2d: %8.2f t/s aggregate, %7.2f t/s per stream, roofline %.1f t/s (%s): %.0f%%; "
                    "peak RSS %.1f MiB = %.1f%% of the plan\n", N, agg[li], per[li], roof[li], limit[li],
                    100 * agg[li] / roof[li], rss[li] / 1048576.0, 100 * rss[li] / plan_b[li]);
        }
        free(tok);
        free(seq);
        free(keep);
        gemma4c_context_free(c);
    }
    /* time to first token: ttft_prefix cached tokens + 16 new ones, vs cold */
    double cold = 0, warm = 0;
    int reused = 0, suffix = 16;
    if (!rc && ttft_prefix > 0) {
        int n = ttft_prefix + suffix;
        gemma4c_context_params cp = gemma4c_context_default_params();
        cp.n_ctx = n + 1;
        cp.n_threads = threads;
        cp.n_prefix = 1;
        cp.precision = exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
        with_lora(&cp);
        cp.kv_type = g_kv_type;
        gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
        int32_t *ids = malloc((size_t)n * sizeof *ids);
        double *tc = malloc((size_t)reps * sizeof *tc), *tw = malloc((size_t)reps * sizeof *tw);
        if (!c || !ids || !tc || !tw) rc = 1;
        else fill_ids(ids, n, info.n_vocab, 4242);
        for (int r = 0; r < reps && !rc; r++) {
            gemma4c_reset(c);
            double t0 = now();
            if (gemma4c_eval(c, ids, n, 0, err, sizeof err)) { rc = 1; break; }
            volatile float sink = gemma4c_logits_last(c)[0];
            (void)sink;
            tc[r] = now() - t0;
            /* the shared prefix, stored as a server stores each prompt */
            gemma4c_reset(c);
            if (gemma4c_eval(c, ids, ttft_prefix, 0, err, sizeof err) || gemma4c_prefix_store(c, 0, err, sizeof err)) {
                rc = 1;
                break;
            }
            gemma4c_reset(c);
            t0 = now();
            reused = gemma4c_prefix_load(c, 0, ids, n, err, sizeof err);
            if (reused < 0 || gemma4c_eval(c, ids + reused, n - reused, 0, err, sizeof err)) { rc = 1; break; }
            sink = gemma4c_logits_last(c)[0];
            tw[r] = now() - t0;
        }
        if (rc) fprintf(stderr, "gemma4c: %s\n", c ? err : "cannot make the prefix-cache context");
        else {
            cold = median(tc, reps) * 1e3;
            warm = median(tw, reps) * 1e3;
            fprintf(log, "  time to first token, %d-token prompt: cold %.1f ms, %d tokens from the prefix cache %.1f ms (%.1fx)\n",
                    n, cold, reused, warm, warm > 0 ? cold / warm : 0);
        }
        free(ids);
        free(tc);
        free(tw);
        gemma4c_context_free(c);
    }
    if (!rc && json) {
        printf("{\"model\":\"%s\",\"file\":\"%s\",\"size_bytes\":%llu,\"threads\":%d,\"bandwidth_gbs\":%.2f,"
               "\"f32_gflops\":%.1f,\"int8_gops\":%.1f,\"tg\":%d,\"depth\":%d,\"sampled\":%s,\"parallel\":[",
               info.name, model, (unsigned long long)info.weight_bytes, threads, bw, f32, i8, tg, depth,
               g_sample ? "true" : "false");
        for (int li = 0; li < n_list; li++)
            printf("%s{\"n\":%d,\"aggregate_tps\":%.3f,\"per_stream_tps\":%.3f,\"roofline_tps\":%.3f,"
                   "\"roofline_pct\":%.1f,\"limit\":\"%s\",\"peak_rss_bytes\":%.0f,\"plan_bytes\":%.0f}",
                   li ? "," : "", list[li], agg[li], per[li], roof[li], 100 * agg[li] / roof[li], limit[li], rss[li],
                   plan_b[li]);
        printf("]");
        if (ttft_prefix > 0)
            printf(",\"ttft\":{\"prompt_tokens\":%d,\"cached_tokens\":%d,\"cold_ms\":%.3f,\"cached_ms\":%.3f}",
                   ttft_prefix + suffix, reused, cold, warm);
        printf("}\n");
    } else if (!rc) {
        printf("\n| model | threads | streams | aggregate t/s | per stream t/s | roofline t/s | %% of roofline |\n");
        printf("|---|---:|---:|---:|---:|---:|---:|\n");
        for (int li = 0; li < n_list; li++)
            printf("| %s | %d | %d | %.2f | %.2f | %.1f (%s) | %.0f%% |\n", info.name, threads, list[li], agg[li],
                   per[li], roof[li], limit[li], 100 * agg[li] / roof[li]);
        if (ttft_prefix > 0)
            printf("\ntime to first token (%d-token prompt): cold %.1f ms, %d tokens cached %.1f ms\n",
                   ttft_prefix + suffix, cold, reused, warm);
    }
    free(t);
    return rc;
}

/* "1,2,4" -> list; returns the count or -1. */
static int parse_list(const char *v, int *out, int max) {
    int n = 0;
    for (const char *p = v; *p;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 1 || x > 4096 || n == max) return -1;
        out[n++] = (int)x;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n ? n : -1;
}

int cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    int pp = 512, tg = 128, depth = 0, reps = 3, json = 0, exact = 0, n_batch = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu > 0 ? (int)ncpu : 1;
    double bw = -1, f32 = -1, i8 = -1;
    int probe_each = 1; /* tg: probe before and after every repetition (off with --bw) */
    int plist[64], n_plist = 0, ttft = 2000;
    int klist[64], n_klist = 0, draft_max = 4;
    const char *draft_model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemma4c bench -m MODEL [-p 512] [-n 128] [-d DEPTH] [-t N] [-r REPS] [--json]\n\n"
                   "Measure prompt processing (pp: P tokens in one batch) and generation (tg: N\n"
                   "tokens one at a time), both after DEPTH tokens of context, and compare each\n"
                   "with this machine's limits, measured at the start: read bandwidth for tg\n"
                   "(bytes of weights and KV read per token) and the int8 / f32 arithmetic peak\n"
                   "for pp (FLOPs per token). Reports the median over REPS runs and the spread.\n"
                   "On a shared machine the bandwidth moves, so tg also probes it right before\n"
                   "and after every repetition and reports the median share of the mean of\n"
                   "those two adjacent probes.\n\n"
                   "  -m MODEL     GGUF file or HF folder (gemma4c synth makes real-shape ones)\n"
                   "  -p N         prompt tokens (default 512; 0 skips pp)\n"
                   "  -n N         generated tokens (default 128; 0 skips tg)\n"
                   "  -d N         context depth before each test (default 0)\n"
                   "  -t N         threads (default: all CPUs)\n"
                   "  -r N         repetitions (default 3)\n"
                   "  -b N         tokens per forward batch (default: P, all of pp in one; a\n"
                   "               32K prompt: -p 32768 -b 512)\n"
                   "  --bw GB/s    skip the bandwidth probes and use this value\n"
                   "  --exact      reference precision instead of the fast path\n"
                   "  --lora PATH[:S]  LoRA adapter at scale S (repeatable)\n"
                   "  --kv-type T  KV cache f32, f16, q8_0 or q4_0 (default f16; f32 with --exact)\n"
                   "  --json       one JSON object on stdout\n"
                   "  --parallel [N,N...]  instead of pp/tg: N streams decoding together, one\n"
                   "               forward pass per step for all (-n steps after -d tokens each;\n"
                   "               default list 1,2,4,8,16): aggregate and per-stream t/s against\n"
                   "               the step's roofline (weights once + N x KV over the bandwidth, or\n"
                   "               N x FLOPs over the int8 peak); then the time to first token of a\n"
                   "               prompt whose first --ttft-prefix tokens are in the prefix cache,\n"
                   "               against the same prompt cold\n"
                   "  --ttft-prefix N  cached prompt tokens for that (default 2000; 0 skips it)\n"
                   "  --sample     with --parallel: draw each stream's next token with the server's\n"
                   "               default sampler (temperature 1, top-k 64, top-p 0.95), as a\n"
                   "               served request does (default: a fixed token sequence)\n"
                   "  --spec [K,K...]  instead of pp/tg: speculative decoding's mechanism: one pass\n"
                   "               verifying K drafts (default 2,4,8) against one plain decode step\n"
                   "               at depth -d, then -n greedy tokens plainly and with a drafter\n"
                   "               whose drafts are right with probability 50/75/100%%\n"
                   "  --draft-max K    drafts per step for the end-to-end part (default 4)\n"
                   "  --draft-model F  with --spec: also an MTP assistant's cost per drafted token and\n"
                   "               the speed it gives at acceptance 50/75/100%% (from the costs)\n");
            return 0;
        }
        int bad = 0;
        if (!strcmp(a, "-m") && v) { model = v; i++; }
        else if (!strcmp(a, "-p")) { bad = geti(a, v, 0, 1 << 16, &pp); i++; }
        else if (!strcmp(a, "-n")) { bad = geti(a, v, 0, 1 << 20, &tg); i++; }
        else if (!strcmp(a, "-d")) { bad = geti(a, v, 0, 1 << 22, &depth); i++; }
        else if (!strcmp(a, "-t")) { bad = geti(a, v, 1, 1024, &threads); i++; }
        else if (!strcmp(a, "-r")) { bad = geti(a, v, 1, 1000, &reps); i++; }
        else if (!strcmp(a, "-b")) { bad = geti(a, v, 1, 1 << 16, &n_batch); i++; }
        else if (!strcmp(a, "--bw") && v) { bw = atof(v); probe_each = 0; i++; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--exact")) exact = 1;
        else if (!strcmp(a, "--lora")) { bad = parse_lora(&g_lo, v); i++; }
        else if (!strcmp(a, "--kv-type") && v) {
            if ((g_kv_type = gemma4c_kv_type_from_name(v)) < 0) {
                fprintf(stderr, "gemma4c bench: --kv-type expects f32, f16, q8_0 or q4_0\n");
                return 2;
            }
            i++;
        }
        else if (!strcmp(a, "--parallel")) {
            if (v && v[0] >= '0' && v[0] <= '9') {
                n_plist = parse_list(v, plist, 64);
                i++;
                if (n_plist < 0) { fprintf(stderr, "gemma4c bench: --parallel expects N[,N...] in [1, 4096]\n"); return 2; }
            } else {
                static const int def[] = { 1, 2, 4, 8, 16 };
                memcpy(plist, def, sizeof def);
                n_plist = 5;
            }
        }
        else if (!strcmp(a, "--sample")) g_sample = 1;
        else if (!strcmp(a, "--ttft-prefix")) { bad = geti(a, v, 0, 1 << 20, &ttft); i++; }
        else if (!strcmp(a, "--spec")) {
            if (v && v[0] >= '0' && v[0] <= '9') {
                n_klist = parse_list(v, klist, 64);
                i++;
                for (int j = 0; j < n_klist; j++) if (klist[j] > 64) n_klist = -1;
                if (n_klist < 0) { fprintf(stderr, "gemma4c bench: --spec expects K[,K...] in [1, 64]\n"); return 2; }
            } else {
                static const int def[] = { 2, 4, 8 };
                memcpy(klist, def, sizeof def);
                n_klist = 3;
            }
        }
        else if (!strcmp(a, "--draft-max")) { bad = geti(a, v, 1, 64, &draft_max); i++; }
        else if (!strcmp(a, "--draft-model") && v) { draft_model = v; i++; }
        else { fprintf(stderr, "gemma4c bench: unknown or incomplete option '%s'\n", a); return 2; }
        if (bad) return 2;
    }
    if (!model) { fprintf(stderr, "gemma4c bench: need -m MODEL (see --help)\n"); return 2; }
    if (g_kv_type == GEMMA4C_KV_DEFAULT) g_kv_type = exact ? GEMMA4C_KV_F32 : GEMMA4C_KV_F16;

    FILE *log = json ? stderr : stdout;
    if (bw < 0) bw = gemma4c_probe_bandwidth(threads);
    f32 = gemma4c_probe_f32_gflops(threads);
    i8 = gemma4c_probe_int8_gops(threads);
    if (reset_hwm()) g_hwm_ok = 0;
    fprintf(log, "machine (%d threads): read bandwidth %.1f GB/s, f32 FMA peak %.0f GFLOP/s, int8 peak %.0f GOP/s\n",
            threads, bw, f32, i8);

    char err[600];
    gemma4c_model *m = gemma4c_model_open(model, err, sizeof err);
    if (!m) { fprintf(stderr, "gemma4c: %s\n", err); return 1; }
    if (load_adapters(m, g_lo.lora, g_lo.n_lora, g_ad)) { gemma4c_model_free(m); return 1; }
    if (n_klist > 0) {
        int r = bench_spec(m, klist, n_klist, tg, depth, reps, threads, exact, draft_max, json, draft_model);
        gemma4c_model_free(m);
        return r;
    }
    if (n_plist > 0) {
        int r = bench_parallel(m, model, plist, n_plist, tg, depth, reps, threads, exact, bw, i8, f32, ttft, json);
        gemma4c_model_free(m);
        return r;
    }
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    int n_ctx = depth + (pp > tg ? pp : tg) + 1;
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch > 0 ? n_batch : pp > 0 ? pp : 512;
    cp.n_threads = threads;
    cp.precision = exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    with_lora(&cp);
    cp.kv_type = g_kv_type;
    gemma4c_context *c = gemma4c_context_new(m, &cp, err, sizeof err);
    if (!c) { fprintf(stderr, "gemma4c: %s\n", err); gemma4c_model_free(m); return 1; }
    int nmax = depth > pp ? depth : pp;
    if (nmax < 1) nmax = 1;
    int32_t *ids = malloc((size_t)(nmax > 1 ? nmax : 1) * sizeof *ids);
    double *t = malloc((size_t)reps * sizeof *t), *adj = malloc((size_t)reps * sizeof *adj),
           *adj_bw = malloc((size_t)reps * sizeof *adj_bw);
    uint64_t s = 12345;
    for (int i = 0; i < nmax; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)(1000 + (s >> 33) % (uint64_t)(info.n_vocab > 2000 ? info.n_vocab - 1000 : 1));
        if (ids[i] >= info.n_vocab) ids[i] = (int32_t)((s >> 33) % (uint64_t)info.n_vocab);
    }
    result res[2];
    int nres = 0, rc = 0;
    /* warm-up: touch the weights once so page faults are not measured */
    if (gemma4c_eval(c, ids, 1, 0, err, sizeof err)) { rc = 1; goto out; }
    if (pp > 0) {
        for (int r = 0; r < reps; r++) {
            if (fill_depth(c, ids, depth, err, sizeof err)) { rc = 1; goto out; }
            double t0 = now();
            if (gemma4c_eval(c, ids, pp, 0, err, sizeof err)) { rc = 1; goto out; }
            t[r] = pp / (now() - t0);
        }
        double med = median(t, reps);
        double flops = 0;
        for (int i = 0; i < pp; i++) {
            gemma4c_token_cost tc;
            gemma4c_token_cost_kv(m, depth + i, g_kv_type, &tc);
            flops += tc.matmul_flops + tc.attn_flops;
        }
        flops /= pp;
        double peak = (!exact && i8 > 0) ? i8 : f32;
        result r = { "", med, t[0], t[reps - 1], peak * 1e9 / flops, (!exact && i8 > 0) ? "int8 peak" : "f32 peak",
                     0, 0 };
        snprintf(r.test, sizeof r.test, depth ? "pp%d @ d%d" : "pp%d", pp, depth);
        res[nres++] = r;
    }
    if (tg > 0) {
        double bytes = 0;
        for (int i = 0; i < tg; i++) {
            gemma4c_token_cost tc;
            gemma4c_token_cost_kv(m, depth + i, g_kv_type, &tc);
            bytes += (double)tc.weight_bytes + (double)tc.kv_bytes;
        }
        bytes /= tg;
        for (int r = 0; r < reps; r++) {
            if (fill_depth(c, ids, depth, err, sizeof err)) { rc = 1; goto out; }
            double before = probe_each ? probe_bw(threads) : 0;
            int32_t tok = ids[0];
            double t0 = now();
            for (int k = 0; k < tg; k++) {
                if (gemma4c_eval(c, &tok, 1, 0, err, sizeof err)) { rc = 1; goto out; }
                tok = (int32_t)((tok * 7 + 13) % info.n_vocab);
            }
            t[r] = tg / (now() - t0);
            /* a probe takes ~0.2 s, a repetition seconds: the two around it
             * bracket what the memory system gave during it */
            adj_bw[r] = probe_each ? (before + probe_bw(threads)) / 2 : 0;
            adj[r] = adj_bw[r] > 0 ? 100.0 * t[r] * bytes / (adj_bw[r] * 1e9) : 0;
        }
        double med = median(t, reps), adj_med = median(adj, reps), adj_bw_med = median(adj_bw, reps);
        result r = { "", med, t[0], t[reps - 1], bw * 1e9 / bytes, "bandwidth", adj_med, adj_bw_med };
        snprintf(r.test, sizeof r.test, depth ? "tg%d @ d%d" : "tg%d", tg, depth);
        res[nres++] = r;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    note_peak();
    double peak_rss = g_hwm_ok ? g_peak : (double)ru.ru_maxrss * 1024.0;
    gemma4c_memory_plan plan;
    gemma4c_memory_plan_params(m, &cp, &plan);
    if (json) {
        printf("{\"model\":\"%s\",\"file\":\"%s\",\"size_bytes\":%llu,\"params\":%llu,\"threads\":%d,"
               "\"bandwidth_gbs\":%.2f,\"f32_gflops\":%.1f,\"int8_gops\":%.1f,\"peak_rss_bytes\":%.0f,"
               "\"plan_bytes\":%llu,\"kv_type\":\"%s\",\"weight_resident_bytes\":%llu,\"plan_overhead_bytes\":%llu,"
               "\"results\":[",
               info.name, model, (unsigned long long)info.weight_bytes, (unsigned long long)info.n_params, threads,
               bw, f32, i8, peak_rss, (unsigned long long)plan.total_bytes, gemma4c_kv_type_name(g_kv_type),
               (unsigned long long)plan.weight_resident_bytes, (unsigned long long)plan.overhead_bytes);
        for (int i = 0; i < nres; i++)
        {
            printf("%s{\"test\":\"%s\",\"tps\":%.3f,\"tps_min\":%.3f,\"tps_max\":%.3f,\"roofline_tps\":%.3f,"
                   "\"roofline_pct\":%.1f,\"limit\":\"%s\"", i ? "," : "", res[i].test, res[i].med, res[i].lo,
                   res[i].hi, res[i].roof, 100 * res[i].med / res[i].roof, res[i].limit);
            if (res[i].adj_bw > 0)
                printf(",\"adjacent_bandwidth_gbs\":%.2f,\"adjacent_pct\":%.1f", res[i].adj_bw, res[i].adj_pct);
            printf("}");
        }
        printf("]}\n");
    } else {
        printf("\n| model | size | params | threads | test | t/s | roofline t/s | %% of roofline |\n");
        printf("|---|---:|---:|---:|---|---:|---:|---:|\n");
        for (int i = 0; i < nres; i++)
        {
            char adjs[64] = "";
            if (res[i].adj_bw > 0)
                snprintf(adjs, sizeof adjs, " (%.0f%% of %.1f GB/s adjacent)", res[i].adj_pct, res[i].adj_bw);
            printf("| %s | %.2f GB | %.2f B | %d | %s | %.2f ± %.2f | %.1f (%s) | %.0f%%%s |\n", info.name,
                   info.weight_bytes / 1e9, info.n_params / 1e9, threads, res[i].test, res[i].med,
                   (res[i].hi - res[i].lo) / 2, res[i].roof, res[i].limit, 100 * res[i].med / res[i].roof, adjs);
        }
        printf("\npeak RSS %.1f MiB; memory plan for n_ctx %d, %s KV: %.1f MiB (%.1f%%)\n", peak_rss / 1048576.0, n_ctx,
               gemma4c_kv_type_name(g_kv_type),
               plan.total_bytes / 1048576.0, 100.0 * peak_rss / (double)plan.total_bytes);
        /* the edge goal counts all but the weights read per token */
        printf("beyond the resident weights: %.1f MiB measured, %.1f MiB planned (edge budget %llu MiB)\n",
               (peak_rss - (double)plan.weight_resident_bytes) / 1048576.0, plan.overhead_bytes / 1048576.0,
               (unsigned long long)(GEMMA4C_EDGE_BUDGET >> 20));
    }
out:
    if (rc) fprintf(stderr, "gemma4c: %s\n", err);
    free(ids);
    free(t);
    free(adj);
    free(adj_bw);
    gemma4c_context_free(c);
    gemma4c_model_free(m);
    return rc;
}
