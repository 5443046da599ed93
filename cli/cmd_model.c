/* gemma4c info | logits | generate: commands that run the model on token ids. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gemma4c.h"
#include "media.h"
#include "opts.h"

static void human(double b, char *out, size_t len) {
    const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int i = 0;
    while (b >= 1024 && i < 4) { b /= 1024; i++; }
    snprintf(out, len, i ? "%.2f %s" : "%.0f %s", b, u[i]);
}

int cmd_info(int argc, char **argv) {
    run_opts o = { 0 };
    int layers = 0, n_seq = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: gemma4c info -m MODEL [--ctx N] [--batch N] [--seq S] [--layers]\n\n"
                   "Print the model's configuration and the memory plan for a context of N tokens:\n"
                   "weights (memory-mapped), KV cache per token and in total, and scratch.\n\n%s"
                   "      --seq S        plan for S sequences sharing the N positions (each has\n"
                   "                     its own sliding-window rings), as `batch --parallel S`\n"
                   "      --layers       also print the per-layer table\n", COMMON_HELP);
            return 0;
        }
        if (!strcmp(argv[i], "--layers")) { layers = 1; continue; }
        if (!strcmp(argv[i], "--seq")) {
            if (parse_int("--seq", i + 1 < argc ? argv[i + 1] : NULL, 1, 4096, &n_seq)) return 2;
            i++;
            continue;
        }
        int r = common_opt(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) { fprintf(stderr, "gemma4c info: unknown option '%s'\n", argv[i]); return 2; }
    }
    gemma4c_model *m = open_model(&o);
    if (!m) return 1;
    gemma4c_model_info in;
    gemma4c_model_get_info(m, &in);
    int n_ctx = o.n_ctx ? o.n_ctx : in.n_ctx_train;
    int n_batch = o.n_batch ? o.n_batch : 512;
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
    printf("model:           %s (%s)\n", in.name, o.model);
    printf("architecture:    %s, %d layers, n_embd %d, %d heads, vocab %d\n", in.arch, in.n_layer, in.n_embd,
           in.n_head, in.n_vocab);
    printf("context:         trained %d, sliding window %d\n", in.n_ctx_train, in.sliding_window);
    if (in.n_embd_per_layer) printf("per-layer embd:  %d per layer\n", in.n_embd_per_layer);
    if (in.n_kv_shared) printf("kv sharing:      last %d layers reuse earlier caches\n", in.n_kv_shared);
    if (in.n_expert) printf("experts:         %d, %d used per token\n", in.n_expert, in.n_expert_used);
    printf("parameters:      %llu\n", (unsigned long long)in.n_params);
    if (layers)
        for (int l = 0; l < in.n_layer; l++) {
            char d[256];
            gemma4c_model_layer_desc(m, l, d, sizeof d);
            printf("  layer %3d: %s\n", l, d);
        }
    gemma4c_memory_plan p;
    gemma4c_context_params cp = gemma4c_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_seq = n_seq;
    cp.precision = o.exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    cp.kv_type = o.kv_type;
    gemma4c_memory_plan_params(m, &cp, &p);
    const char *kvn = gemma4c_kv_type_name(p.kv_type);
    human((double)p.weight_bytes, b1, sizeof b1);
    human((double)p.kv_bytes_per_token, b2, sizeof b2);
    human((double)p.kv_bytes_swa, b3, sizeof b3);
    human((double)p.kv_bytes, b4, sizeof b4);
    human((double)p.scratch_bytes, b5, sizeof b5);
    human((double)p.total_bytes, b6, sizeof b6);
    if (n_seq > 1)
        printf("memory plan for n_ctx = %d shared by %d sequences, n_batch = %d (%s KV cache):\n", n_ctx, n_seq,
               n_batch, kvn);
    else
        printf("memory plan for n_ctx = %d, n_batch = %d (%s KV cache):\n", n_ctx, n_batch, kvn);
    printf("  weights:            %12llu bytes (%s, memory-mapped)\n", (unsigned long long)p.weight_bytes, b1);
    human((double)p.weight_resident_bytes, b1, sizeof b1);
    printf("  weights resident:   %12llu bytes (%s, read every token)\n", (unsigned long long)p.weight_resident_bytes, b1);
    printf("  kv per token:       %12llu bytes (%s, full-attention layers)\n",
           (unsigned long long)p.kv_bytes_per_token, b2);
    if (n_seq > 1)
        printf("  kv sliding (fixed): %12llu bytes (%s, %d rings)\n", (unsigned long long)p.kv_bytes_swa, b3, n_seq);
    else
        printf("  kv sliding (fixed): %12llu bytes (%s)\n", (unsigned long long)p.kv_bytes_swa, b3);
    printf("  kv total:           %12llu bytes (%s)\n", (unsigned long long)p.kv_bytes, b4);
    printf("  scratch:            %12llu bytes (%s)\n", (unsigned long long)p.scratch_bytes, b5);
    printf("  total:              %12llu bytes (%s)\n", (unsigned long long)p.total_bytes, b6);
    /* the edge goal: all but the resident weights (KV, scratch, the process's
     * own: code, stacks, tokenizer) within 64 MiB */
    human((double)p.overhead_bytes, b1, sizeof b1);
    printf("  edge footprint:     %12llu bytes (%s beyond the resident weights: %s the %llu MiB budget)\n",
           (unsigned long long)p.overhead_bytes, b1, p.edge_ok ? "within" : "over",
           (unsigned long long)(GEMMA4C_EDGE_BUDGET >> 20));
    if (!p.edge_ok) {   /* the largest batch that fits (scratch and rings shrink with it) */
        gemma4c_memory_plan q = p;
        int nb = n_batch;
        while (nb > 1 && !q.edge_ok) {
            cp.n_batch = nb /= 2;
            if (gemma4c_memory_plan_params(m, &cp, &q)) break;
        }
        if (q.edge_ok) printf("                      within it at --batch %d\n", nb);
        else {   /* the same search with the smaller caches, q8_0 first */
            int fit = 0, kt = 0;
            for (int t = GEMMA4C_KV_Q8_0; t <= GEMMA4C_KV_Q4_0 && !fit; t++) {
                if (t <= p.kv_type) continue;
                cp.kv_type = kt = t;
                for (nb = n_batch; nb >= 1 && !fit; nb /= 2) {
                    cp.n_batch = nb;
                    if (gemma4c_memory_plan_params(m, &cp, &q)) break;
                    if (q.edge_ok) fit = nb;
                }
            }
            if (fit) printf("                      within it with --kv-type %s --batch %d\n", gemma4c_kv_type_name(kt), fit);
            else printf("                      over it at any batch: a smaller --ctx\n");
        }
    }
    gemma4c_model_free(m);
    return 0;
}

int cmd_logits(int argc, char **argv) {
    run_opts o = { 0 };
    media_opts mo = { 0 };
    const char *tokfile = NULL, *out = NULL, *tokens = NULL, *embd_out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemma4c logits -m MODEL (--tokens-file F | --tokens \"2 ...\") --out OUT.f32\n"
                   "                      [--image F | --audio F ...] [--mmproj P] [--embd-out SOFT.f32]\n\n"
                   "Run the tokens as a prompt and write the logits of every position as raw\n"
                   "little-endian float32, row-major [n_tokens][n_vocab] (the layout of the golden\n"
                   "*.logits.f32 files). Token ids are used as given: include BOS (2) yourself.\n"
                   "With media, each run of placeholder ids (<|image|>, <|audio|>) is filled, in\n"
                   "order, with the next item's soft tokens; a run's length must equal the item's\n"
                   "token count. --embd-out writes those soft tokens [n_soft][n_embd] f32.\n\n%s%s",
                   COMMON_HELP, MEDIA_HELP);
            return 0;
        }
        if (!strcmp(a, "--tokens-file") && i + 1 < argc) { tokfile = argv[++i]; continue; }
        if (!strcmp(a, "--tokens") && i + 1 < argc) { tokens = argv[++i]; continue; }
        if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && i + 1 < argc) { out = argv[++i]; continue; }
        if (!strcmp(a, "--embd-out") && i + 1 < argc) { embd_out = argv[++i]; continue; }
        int r = common_opt(&o, argc, argv, &i);
        if (r == 0) r = media_opt(&mo, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) { fprintf(stderr, "gemma4c logits: unknown or incomplete option '%s'\n", a); return 2; }
    }
    if ((!tokfile && !tokens) || !out) {
        fprintf(stderr, "gemma4c logits: need --tokens-file F (or --tokens) and --out OUT.f32 (see --help)\n");
        return 2;
    }
    char *text = tokfile ? read_text_file(tokfile) : strdup(tokens);
    if (!text) return 1;
    int32_t *ids = NULL;
    int n = parse_ids(text, &ids, tokfile ? tokfile : "--tokens");
    free(text);
    if (n <= 0) {
        if (n == 0) { fprintf(stderr, "gemma4c logits: no token ids given\n"); free(ids); }
        return 1;
    }
    gemma4c_model *m = open_model(&o);
    if (!m) { free(ids); return 1; }
    media_set ms;
    float *embd = NULL;
    uint8_t *has = NULL;
    int32_t *run = NULL;
    int rc = 1;
    if (media_load(&ms, &mo, m, o.threads, o.exact)) goto done_model;
    if (mo.n && media_fill(&ms, m, ids, n, &embd, &has, &run)) goto done_media;
    if (!o.n_ctx) o.n_ctx = n;
    if (mo.n && !o.n_batch) o.n_batch = n;     /* an image's run is seen whole in one pass */
    gemma4c_context *c = open_ctx(m, &o);
    char err[600];
    int8_t *keep = malloc((size_t)n);
    if (keep) memset(keep, 1, (size_t)n);
    gemma4c_batch b = { .n_tokens = n, .token = ids, .logits = keep, .embd = embd, .has_embd = has, .run = run };
    if (c && keep && gemma4c_decode(c, &b, err, sizeof err) == 0) {
        FILE *f = fopen(out, "wb");
        if (!f) fprintf(stderr, "gemma4c: %s: %s\n", out, strerror(errno));
        else {
            int V = gemma4c_n_vocab(c);
            size_t w = 0;
            for (int i = 0; i < n; i++) w += fwrite(gemma4c_logits_ith(c, i), sizeof(float), (size_t)V, f);
            if (fclose(f) || w != (size_t)n * V) fprintf(stderr, "gemma4c: %s: write failed\n", out);
            else rc = 0;
        }
    } else if (c) fprintf(stderr, "gemma4c: %s\n", keep ? err : "out of memory");
    if (rc == 0 && embd_out) {
        FILE *f = fopen(embd_out, "wb");
        size_t w = 0, want = 0;
        int H = gemma4c_mmproj_n_embd(ms.mp);
        for (int i = 0; f && i < ms.n; i++) {
            size_t k = (size_t)gemma4c_media_n_tokens(ms.it[i]) * H;
            want += k;
            w += fwrite(gemma4c_media_encode(ms.it[i], NULL, 0), sizeof(float), k, f);
        }
        if (!f || fclose(f) || w != want) { fprintf(stderr, "gemma4c: %s: write failed\n", embd_out); rc = 1; }
    }
    free(keep);
    gemma4c_context_free(c);
done_media:
    free(embd); free(has); free(run);
    media_set_free(&ms);
done_model:
    gemma4c_model_free(m);
    free(ids);
    return rc;
}

/* Prints each generated token as it comes: ids, or text through the
 * streaming detokenizer. */
typedef struct gen_printer {
    gemma4c_detok *dt;   /* NULL: print ids */
    int n;
} gen_printer;

static int print_token(void *user, int32_t t) {
    gen_printer *p = user;
    if (!p->dt) printf(p->n ? " %d" : "%d", t);
    else {
        size_t len;
        const char *piece = gemma4c_detok_push(p->dt, t, &len);
        fwrite(piece, 1, len, stdout);
    }
    p->n++;
    fflush(stdout);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    run_opts o = { 0 };
    media_opts mo = { 0 };
    const char *tokens = NULL, *tokfile = NULL, *prompt = NULL;
    int n_gen = 16, stop_eos = 0, print_ids = 0;
    gemma4c_sampler_params sp = gemma4c_sampler_default_params();
    gemma4c_draft_params dp = { 0 };
    int show_stats = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: gemma4c generate -m MODEL (-p TEXT | --tokens \"2 ...\") [-n N] [options]\n\n"
                   "Continue a raw prompt (no chat template; see `gemma4c run` for chat). With -p the\n"
                   "text is tokenized (BOS added) and the continuation printed as text as it is\n"
                   "generated; with --tokens the ids are used as given and ids are printed.\n\n%s"
                   "  -p, --prompt TEXT       prompt text\n"
                   "      --ids               print token ids even with -p\n"
                   "      --tokens IDS        prompt token ids (include BOS 2 yourself)\n"
                   "      --tokens-file F     read the prompt ids from a file\n"
                   "  -n, --n-predict N       tokens to generate (default 16)\n"
                   "      --stop-at-eos       stop at an end-of-generation id (1, 106, 50)\n"
                   "      --draft-stats       print drafted / accepted counts on stderr\n"
                   "With media: -p puts each item's placeholder run (in order) after BOS, before the\n"
                   "text; --tokens must hold the runs expanded (see `gemma4c logits`).\n%s%s%s", COMMON_HELP,
                   MEDIA_HELP, SAMPLING_HELP, DRAFT_HELP);
            return 0;
        }
        if (!strcmp(a, "--tokens") && v) { tokens = v; i++; continue; }
        if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && v) { prompt = v; i++; continue; }
        if (!strcmp(a, "--ids")) { print_ids = 1; continue; }
        if (!strcmp(a, "--tokens-file") && v) { tokfile = v; i++; continue; }
        if (!strcmp(a, "--stop-at-eos")) { stop_eos = 1; continue; }
        if (!strcmp(a, "--draft-stats")) { show_stats = 1; continue; }
        int bad = 0;
        if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { i++; bad = parse_int(a, v, 0, 1 << 24, &n_gen); }
        else {
            int r = sampling_opt(&sp, argc, argv, &i);
            if (r == 0) r = draft_opt(&dp, argc, argv, &i);
            if (r == 0) r = common_opt(&o, argc, argv, &i);
            if (r == 0) r = media_opt(&mo, argc, argv, &i);
            if (r == 0) { fprintf(stderr, "gemma4c generate: unknown or incomplete option '%s'\n", a); return 2; }
            bad = r < 0;
        }
        if (bad) return 2;
    }
    if (!tokens && !tokfile && !prompt) {
        fprintf(stderr, "gemma4c generate: need -p TEXT, --tokens \"2 ...\" or --tokens-file F (see --help)\n");
        return 2;
    }
    gemma4c_model *m = open_model(&o);
    if (!m) return 1;
    int32_t *ids = NULL;
    int n;
    char err[600];
    media_set ms = { 0 };
    float *embd = NULL;
    uint8_t *has = NULL;
    int32_t *run = NULL;
    if (media_load(&ms, &mo, m, o.threads, o.exact)) { gemma4c_model_free(m); return 1; }
    if (prompt) {
        /* BOS, each item's run (its expansion, control tokens parsed), the text */
        char *pre = NULL;
        size_t plen = 0;
        FILE *mf = open_memstream(&pre, &plen);
        for (int i = 0; mf && i < ms.n; i++) {
            char *x = gemma4c_media_prompt(ms.it[i]);
            if (x) fputs(x, mf);
            free(x);
        }
        if (mf) fclose(mf);
        int32_t *a = NULL, *b = NULL;
        int na = pre ? gemma4c_tokenize(m, pre, plen, 1, 1, &a, err, sizeof err) : -1;
        int nb = na >= 0 ? gemma4c_tokenize(m, prompt, strlen(prompt), 0, 0, &b, err, sizeof err) : -1;
        free(pre);
        n = na >= 0 && nb >= 0 ? na + nb : -1;
        if (n >= 0 && (ids = malloc((size_t)(n ? n : 1) * sizeof *ids))) {
            memcpy(ids, a, (size_t)na * sizeof *ids);
            memcpy(ids + na, b, (size_t)nb * sizeof *ids);
        } else if (n >= 0) {
            n = -1;
            snprintf(err, sizeof err, "out of memory");
        }
        free(a);
        free(b);
        if (n < 0) { fprintf(stderr, "gemma4c: %s\n", err); media_set_free(&ms); gemma4c_model_free(m); return 1; }
    } else {
        print_ids = 1;
        char *text = tokfile ? read_text_file(tokfile) : strdup(tokens);
        if (!text) { gemma4c_model_free(m); return 1; }
        n = parse_ids(text, &ids, tokfile ? tokfile : "--tokens");
        free(text);
        if (n <= 0) {
            if (n == 0) { fprintf(stderr, "gemma4c generate: no prompt token ids given\n"); free(ids); }
            media_set_free(&ms);
            gemma4c_model_free(m);
            return 1;
        }
    }
    if (ms.n && media_fill(&ms, m, ids, n, &embd, &has, &run)) {
        free(ids);
        media_set_free(&ms);
        gemma4c_model_free(m);
        return 1;
    }
    if (ms.n && !o.n_batch) o.n_batch = n;
    gemma4c_detok *dt = print_ids ? NULL : gemma4c_detok_new(m, 0);
    if (!print_ids && !dt) {
        fprintf(stderr, "gemma4c: the model has no usable tokenizer\n");
        free(ids); free(embd); free(has); free(run);
        media_set_free(&ms);
        gemma4c_model_free(m);
        return 1;
    }
    if (!o.n_ctx) o.n_ctx = n + n_gen;
    if (draft_attach(&dp, m, o.threads, o.exact)) {
        gemma4c_detok_free(dt);
        free(ids); free(embd); free(has); free(run);
        media_set_free(&ms);
        gemma4c_model_free(m);
        return 1;
    }
    gemma4c_context *c = open_ctx(m, &o);
    gemma4c_sampler *s = gemma4c_sampler_new(&sp);
    int rc = 1;
    gemma4c_batch pb = { .n_tokens = n, .token = ids, .embd = embd, .has_embd = has, .run = run };
    if (c && s && gemma4c_decode(c, &pb, err, sizeof err) == 0) {
        for (int i = 0; i < n; i++) gemma4c_sampler_accept(s, ids[i]);
        gen_printer pr = { dt, 0 };
        gemma4c_draft_stats st = { 0 };
        gemma4c_generate_params gp = { .n_predict = n_gen, .stop_at_eog = stop_eos, .on_token = print_token,
                                       .user = &pr, .draft = dp, .stats = &st };
        rc = 0;
        if (gemma4c_generate(c, s, &gp, err, sizeof err) < 0) {
            fprintf(stderr, "\ngemma4c: %s\n", err);
            rc = 1;
        }
        if (show_stats)
            fprintf(stderr, "\ndraft: %llu steps, %llu drafted, %llu accepted\n", (unsigned long long)st.steps,
                    (unsigned long long)st.drafted, (unsigned long long)st.accepted);
        if (show_stats && dp.drafter) {
            uint64_t ds;
            double dsec;
            gemma4c_drafter_cost(dp.drafter, &ds, &dsec);
            fprintf(stderr, "drafter: %llu steps, %.3f ms per drafted token\n", (unsigned long long)ds,
                    ds ? 1e3 * dsec / (double)ds : 0.0);
        }
        if (dt) {
            size_t len;
            const char *rest = gemma4c_detok_flush(dt, &len);
            if (rest) fwrite(rest, 1, len, stdout);
        }
        printf("\n");
    } else if (c && s) fprintf(stderr, "gemma4c: %s\n", err);
    gemma4c_detok_free(dt);
    gemma4c_sampler_free(s);
    gemma4c_context_free(c);
    gemma4c_drafter_free(dp.drafter);
    free(embd); free(has); free(run);
    media_set_free(&ms);
    gemma4c_model_free(m);
    free(ids);
    return rc;
}
