/* gemma4c serve: an OpenAI- and Ollama-compatible HTTP server over the library's
 * scheduler. One thread steps the scheduler while there is work; the
 * connection threads (http.c) submit requests and wait on their events.
 * SIGINT/SIGTERM: stop accepting, end running answers (streams get their
 * final event), exit 0. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

int cmd_serve(int argc, char **argv); /* listed in cli/commands.h */

#define DEFAULT_MODEL "models/gemma4c-tiny.gguf"

static const route *const ROUTE_TABLES[] = { OPENAI_ROUTES, OLLAMA_ROUTES, PAGE_ROUTES, NULL };

static atomic_int sched_stop;

static void *sched_main(void *p) {
    gemma4c_scheduler *s = p;
    while (!sched_stop && gemma4c_scheduler_wait(s, -1) >= 0) gemma4c_scheduler_step(s);
    return NULL;
}

static int opt_int(const char *opt, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "gemma4c serve: %s needs an integer in [%d, %d]\n", opt, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static void usage(void) {
    printf("usage: gemma4c serve [-m MODEL] [--host ADDR] [--port N] [--parallel N] [--ctx N]\n"
           "                     [--api-key KEY] [--prefix N] [--timeout N] [-t N] [--lora PATH[:S]]\n"
           "                     [--kv-type T] [--draft ngram] [--verbose]\n\n"
           "An OpenAI-compatible HTTP server: POST /v1/chat/completions (streaming too),\n"
           "POST /v1/completions, GET /v1/models, GET /health, GET /metrics (Prometheus),\n"
           "POST /tokenize, /detokenize, /apply-template; Ollama's /api/chat, /api/generate,\n"
           "/api/tags, /api/show, /api/ps, /api/version; a chat page at /. N requests decode together\n"
           "(continuous batching); more wait in a queue, and past it get 503.\n\n"
           "  -m, --model FILE   the model (default " DEFAULT_MODEL ", written by\n"
           "                     `gemma4c synth --arch tiny` when missing)\n"
           "      --host ADDR    address to listen on (default 127.0.0.1: this machine only)\n"
           "      --port N       port (default 8080)\n"
           "      --parallel N   requests decoded at once (default 4)\n"
           "  -c, --ctx N        positions per request, prompt + answer (default min(model, 4096))\n"
           "      --queue N      requests waiting beyond those (default 64)\n"
           "      --api-key KEY  require Authorization: Bearer KEY (all but /health and the page)\n"
           "      --prefix N     prompt snapshots kept for reuse (prefix cache; default 8)\n"
           "      --timeout N    seconds a request may take to arrive, headers and body\n"
           "                     (default 30; slower clients are cut off)\n"
           "  -t, --threads N    compute threads (default: all CPUs)\n"
           "      --lora PATH[:S]  LoRA adapter (GGUF LoRA or PEFT folder) at scale S (repeatable)\n"
           "      --kv-type T    KV cache f32, f16, q8_0 or q4_0 (default f16)\n"
           "      --draft ngram  speculative decoding with prompt-lookup drafts (answers unchanged)\n"
           "      --draft-max K  drafts verified per request and step (default 4)\n"
           "      --mmproj PATH  media encoders (mmproj .gguf or HF folder) for image and audio\n"
           "                     parts (default: the one beside the model, if any)\n"
           "      --verbose      log request bodies (prompts) too\n"
           "Bodies are limited to %u MiB.\n", SRV_MAX_BODY >> 20);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *host = "127.0.0.1", *key = NULL;
    int port = 8080, par = 4, n_ctx = 0, queue = 64, n_prefix = 8, threads = 0, verbose = 0, timeout = 30,
        kv_type = 0;
    const char *lora[16];
    int n_lora = 0;
    int draft = 0, draft_max = 0;
    const char *mmproj = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) { model = v; i++; }
        else if (!strcmp(a, "--host") && v) { host = v; i++; }
        else if (!strcmp(a, "--api-key") && v) { key = v; i++; }
        else if (!strcmp(a, "--port")) { bad = opt_int(a, v, 0, 65535, &port); i++; }
        else if (!strcmp(a, "--parallel")) { bad = opt_int(a, v, 1, 4096, &par); i++; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { bad = opt_int(a, v, 1, 1 << 24, &n_ctx); i++; }
        else if (!strcmp(a, "--queue")) { bad = opt_int(a, v, 1, 1 << 20, &queue); i++; }
        else if (!strcmp(a, "--timeout")) { bad = opt_int(a, v, 1, 86400, &timeout); i++; }
        else if (!strcmp(a, "--prefix")) { bad = opt_int(a, v, 0, 4096, &n_prefix); i++; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { bad = opt_int(a, v, 0, 4096, &threads); i++; }
        else if (!strcmp(a, "--lora") && v && n_lora < 16) { lora[n_lora++] = v; i++; }
        else if (!strcmp(a, "--verbose")) verbose = 1;
        else if (!strcmp(a, "--mmproj") && v) { mmproj = v; i++; }
        else if (!strcmp(a, "--kv-type") && v) {
            if ((kv_type = gemma4c_kv_type_from_name(v)) < 0) {
                fprintf(stderr, "gemma4c serve: --kv-type expects f32, f16, q8_0 or q4_0, got '%s'\n", v);
                return 2;
            }
            i++;
        }
        else if (!strcmp(a, "--draft") && v && (!strcmp(v, "ngram") || !strcmp(v, "none"))) {
            draft = !strcmp(v, "ngram");
            i++;
        }
        else if (!strcmp(a, "--draft-max")) { bad = opt_int(a, v, 1, 64, &draft_max); i++; }
        else { fprintf(stderr, "gemma4c serve: unknown or incomplete option '%s' (see --help)\n", a); return 2; }
        if (bad) return 2;
    }
    if (key && !*key) { fprintf(stderr, "gemma4c serve: --api-key must not be empty\n"); return 2; }
    char err[600];
    if (!model) {
        model = DEFAULT_MODEL;
        struct stat sb;
        if (stat(model, &sb)) { /* the project's demo model, as `make demo` writes it */
            fprintf(stderr, "gemma4c serve: writing %s (gemma4c synth --arch tiny)\n", model);
            mkdir("models", 0777);
            if (gemma4c_synth(model, "tiny", "F32", 1, NULL, err, sizeof err)) {
                fprintf(stderr, "gemma4c: %s\n", err);
                return 1;
            }
        }
    }
    gemma4c_model *m = gemma4c_model_open(model, err, sizeof err);
    if (!m) { fprintf(stderr, "gemma4c: %s\n", err); return 1; }
    gemma4c_scheduler_params sp = gemma4c_scheduler_default_params();
    sp.n_parallel = par;
    sp.n_ctx = n_ctx;
    sp.n_threads = threads;
    sp.n_prefix = n_prefix;
    sp.max_queue = queue;
    sp.kv_type = kv_type;
    sp.draft.kind = draft ? GEMMA4C_DRAFT_NGRAM : GEMMA4C_DRAFT_NONE;
    sp.draft.max = draft_max;
    /* the OpenAI client sends tool-call arguments as JSON strings */
    sp.openai_compat = 1;
    gemma4c_scheduler *s = gemma4c_scheduler_new(m, &sp, err, sizeof err);
    if (!s) { fprintf(stderr, "gemma4c: %s\n", err); gemma4c_model_free(m); return 1; }
    /* adapters: on the scheduler's context, before its thread starts */
    gemma4c_adapter *ad[16] = { NULL };
    float sc[16];
    int lrc = 0;
    for (int i = 0; i < n_lora && !lrc; i++) {
        char path[4096];
        if (gemma4c_adapter_spec(lora[i], path, sizeof path, &sc[i])) { snprintf(err, sizeof err, "--lora '%s': expected PATH[:SCALE]", lora[i]); lrc = -1; }
        else if (!(ad[i] = gemma4c_adapter_load(m, path, err, sizeof err))) lrc = -1;
    }
    if (!lrc && n_lora) lrc = gemma4c_context_set_adapters(gemma4c_scheduler_context(s), ad, sc, n_lora, err, sizeof err);
    if (lrc) {
        fprintf(stderr, "gemma4c serve: %s\n", err);
        gemma4c_scheduler_free(s);
        for (int i = 0; i < n_lora; i++) gemma4c_adapter_free(ad[i]);
        gemma4c_model_free(m);
        return 1;
    }

    /* the media encoders: as given (an error is fatal), else the ones
     * beside the model if there are any (text only otherwise) */
    gemma4c_mmproj *mp = gemma4c_mmproj_open(m, mmproj, err, sizeof err);
    if (!mp && mmproj) {
        fprintf(stderr, "gemma4c serve: --mmproj: %s\n", err);
        gemma4c_scheduler_free(s);
        for (int i = 0; i < n_lora; i++) gemma4c_adapter_free(ad[i]);
        gemma4c_model_free(m);
        return 1;
    }
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    char id[256];
    snprintf(id, sizeof id, "%s", base_name(model));
    size_t il = strlen(id);
    if (il > 5 && !strcmp(id + il - 5, ".gguf")) id[il - 5] = 0;
    srv S = { .model = m, .sched = s, .model_id = id, .model_file = base_name(model), .model_path = model, .api_key = key,
              .api_key_len = key ? strlen(key) : 0, .verbose = verbose, .routes = ROUTE_TABLES, .mmproj = mp,
              .n_threads = threads, .n_parallel = par };
    pthread_mutex_init(&S.media_mu, NULL);
    /* positions per request, as the scheduler bounds them (Ollama's /api/ps) */
    int per = n_ctx > 0 ? n_ctx : info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    int all = gemma4c_n_ctx(gemma4c_scheduler_context(s));
    S.n_ctx = per < all ? per : all;
    pthread_mutex_init(&S.mu, NULL);

    /* the signals are taken by sigwait below, never by another thread */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t th;
    if (pthread_create(&th, NULL, sched_main, s)) {
        fprintf(stderr, "gemma4c: cannot start the scheduler thread\n");
        gemma4c_scheduler_free(s);
        gemma4c_model_free(m);
        return 1;
    }
    int rc = 0;
    if (http_run(&S, host, port, timeout, err, sizeof err)) {
        fprintf(stderr, "gemma4c serve: %s\n", err);
        rc = 1;
    } else {
        gemma4c_memory_plan mp = { 0 };
        gemma4c_context_params cp = gemma4c_context_default_params();
        cp.n_ctx = gemma4c_n_ctx(gemma4c_scheduler_context(s));
        cp.n_batch = 512; /* the scheduler's default */
        cp.n_seq = par;
        cp.n_prefix = n_prefix;
        cp.n_threads = threads;
        cp.kv_type = kv_type;
        if (gemma4c_memory_plan_params(m, &cp, &mp)) memset(&mp, 0, sizeof mp);
        printf("gemma4c serve: http://%s:%d/v1 (OpenAI API; GET /health, /metrics; Ollama API at http://%s:%d)\n"
               "  model %s (%s, %d layers, %.1f M parameters), id \"%s\"\n"
               "  %d parallel, %d positions shared, queue %d, prefix cache %d%s\n"
               "  memory plan: weights %.1f MiB, KV %.1f MiB, scratch %.1f MiB, total %.1f MiB\n",
               host, port, host, port, model, info.name ? info.name : "?", info.n_layer, info.n_params / 1e6, id, par, cp.n_ctx,
               queue, n_prefix, key ? ", API key required" : "", mp.weight_resident_bytes / 1048576.0,
               mp.kv_bytes / 1048576.0, mp.scratch_bytes / 1048576.0, mp.total_bytes / 1048576.0);
        fflush(stdout);
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "gemma4c serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        http_quiesce();
        pthread_mutex_lock(&S.mu);
        S.stopping = 1;
        for (job *j = S.live; j; j = j->next_live) gemma4c_scheduler_cancel(s, j->id);
        pthread_mutex_unlock(&S.mu);
        /* running answers end within a step; wait for their final events to go out */
        double t0 = now_s();
        for (;;) {
            pthread_mutex_lock(&S.mu);
            int left = S.live != NULL;
            pthread_mutex_unlock(&S.mu);
            if (!left || now_s() - t0 > 10) break;
            usleep(20000);
        }
        http_stop();
    }
    sched_stop = 1;
    gemma4c_scheduler_wake(s);
    pthread_join(th, NULL);
    gemma4c_scheduler_free(s);
    pthread_mutex_lock(&S.media_mu); /* a media request still decoding stops (S.stopping) */
    gemma4c_context_free(S.mctx);
    gemma4c_mmproj_free(mp);
    pthread_mutex_unlock(&S.media_mu);
    for (int i = 0; i < n_lora; i++) gemma4c_adapter_free(ad[i]);
    gemma4c_model_free(m);
    pthread_mutex_destroy(&S.mu);
    return rc;
}
