/* gemma4c_train: full training of a Gemma 4 model in f32 with AdamW.
 *
 * The loop lives here, beside generate.c: like decoding it is a client of
 * the model (model/backward.c computes the loss and gradients of one
 * sequence) that needs the session layer's chat rendering for its data.
 *
 *   data     JSONL, one example a line: {"text": ...} (loss on every token) or
 *            {"messages": [...]} rendered with the model's chat format; the
 *            loss covers the assistant turns only (each turn's text and its
 *            end marker, found by rendering the conversation up to it with and
 *            without the turn). Longer than n_ctx: cut (default) or packed.
 *   steps    examples in a seeded shuffled order per epoch, gathered until a
 *            step holds batch_tokens (x grad_accum); gradients of the mean
 *            loss per target token; global-norm clip 1.0; AdamW (0.9, 0.95,
 *            1e-8), decoupled weight decay on matrices; linear warmup then
 *            cosine to 10%.
 *   state    a checkpoint is a folder DIR/step-N: model.gguf (the weights, f32) and
 *            state.bin (step, epoch, cursor, AdamW moments); resuming with the
 *            same data, options and threads continues the run bit for bit
 *            (every sum in the backward pass is independent of the thread
 *            split). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "format/gguf_write.h"
#include "model/backward.h"
#include "model/lora.h"
#include "model/synth.h"
#include "tensor/pool.h"
#include "tensor/types.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "util/esc.h"

/* ---- examples ----------------------------------------------------------------------- */

typedef struct example {
    int32_t *tok;
    uint8_t *w;        /* w[t]: token t is a target (its prediction from t-1 counts) */
    int n, n_tgt;
} example;

typedef struct dataset {
    example *ex;
    int n, cap;
    long n_tok;
} dataset;

static void dataset_free(dataset *d) {
    for (int i = 0; i < d->n; i++) { free(d->ex[i].tok); free(d->ex[i].w); }
    free(d->ex);
    memset(d, 0, sizeof *d);
}

typedef struct seqbuf {
    int32_t *tok;
    uint8_t *w;
    int n, cap;
} seqbuf;

static int seq_add(seqbuf *s, const g4_tokens *t, int w) {
    if (s->n + (int)t->n > s->cap) {
        int cap = (s->n + (int)t->n) * 2 + 64;
        int32_t *nt = realloc(s->tok, (size_t)cap * sizeof *nt);
        if (!nt) return -1;
        s->tok = nt;
        uint8_t *nw = realloc(s->w, (size_t)cap);
        if (!nw) return -1;
        s->w = nw;
        s->cap = cap;
    }
    for (size_t i = 0; i < t->n; i++) { s->tok[s->n] = t->ids[i]; s->w[s->n++] = (uint8_t)w; }
    return 0;
}

static int encode_into(const g4_tokenizer *tk, seqbuf *s, const char *text, size_t len, int w, g4_error *err) {
    g4_tokens t = { 0 };
    int rc = g4_tok_encode(tk, text, len, false, true, &t, err);
    if (!rc) rc = seq_add(s, &t, w) ? g4_seterr(err, "out of memory") : 0;
    g4_tokens_free(&t);
    return rc;
}

static const char *const ROLES[] = { "system", "developer", "user", "assistant", "model", "tool", NULL };

/* A {"messages": [...]} example: tokens of the rendered chat, targets on the
 * assistant turns. */
static int render_messages(const g4_tokenizer *tk, int family, const json_t *msgs, seqbuf *s, g4_error *err) {
    size_t n = json_array_size(msgs);
    if (!json_is_array(msgs) || n == 0) return g4_seterr(err, "field 'messages': expected a non-empty array");
    int n_asst = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(msgs, i);
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m)) return g4_seterr(err, "field 'messages[%zu]': expected an object", i);
        if (!json_is_string(role)) return g4_seterr(err, "field 'messages[%zu].role': expected a string", i);
        int known = 0;
        for (int r = 0; ROLES[r]; r++) known |= !strcmp(json_string_value(role), ROLES[r]);
        if (!known)
            return g4_seterr(err, "field 'messages[%zu].role': '%s' is not a chat role (system, user, assistant, tool)",
                             i, G4_ESC(json_string_value(role)));
        bool asst = !strcmp(json_string_value(role), "assistant") || !strcmp(json_string_value(role), "model");
        if (asst) {
            if (!json_is_string(content) || !json_string_length(content))
                return g4_seterr(err, "field 'messages[%zu].content': an assistant turn needs non-empty text", i);
            n_asst++;
        }
    }
    if (!n_asst) return g4_seterr(err, "field 'messages': no assistant turn to learn from");
    size_t done = 0;     /* bytes of the full rendering already tokenized */
    char *full = NULL;
    json_t *req = json_object();
    json_t *sub = json_array();
    json_object_set(req, "messages", sub);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        bool asst = !strcmp(role, "assistant") || !strcmp(role, "model");
        g4_chat_options o = G4_CHAT_OPTIONS_DEFAULT;
        size_t lp = 0, lf = 0;
        char *pre = NULL;
        if (asst) {      /* everything before the turn, generation prompt included */
            o.add_generation_prompt = 1;
            pre = g4_chat_render(req, &o, (g4_chat_family)family, &lp, err);
            if (!pre) { rc = -1; break; }
        }
        json_array_append(sub, (json_t *)m);
        o.add_generation_prompt = 0;
        free(full);
        full = g4_chat_render(req, &o, (g4_chat_family)family, &lf, err);
        if (!full) { free(pre); rc = -1; break; }
        if (asst) {
            if (lp < done || lp > lf || memcmp(pre, full, lp)) {
                free(pre);
                rc = g4_seterr(err, "field 'messages[%zu]': the chat format does not render this turn after the "
                                    "conversation before it", i);
                break;
            }
            rc = encode_into(tk, s, full + done, lp - done, 0, err);
            if (!rc) rc = encode_into(tk, s, full + lp, lf - lp, 1, err);
            done = lf;
            free(pre);
        }
    }
    free(full);
    json_decref(req);
    json_decref(sub);
    return rc;
}

/* Read a JSONL file; a bad line is an error naming file, line and field. */
static int load_jsonl(const char *path, const g4_tokenizer *tk, int family, int n_ctx, int pack, dataset *d,
                      g4_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return g4_seterr(err, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    seqbuf stream = { 0 };     /* pack: every example back to back */
    int32_t bos = g4_tok_bos(tk);
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)len, 0, &je);
        seqbuf s = { 0 };
        if (!j) {
            rc = g4_seterr(err, "%s:%d: not JSON (%s)", path, lineno, je.text);
        } else if (!json_is_object(j)) {
            rc = g4_seterr(err, "%s:%d: expected an object with \"text\" or \"messages\"", path, lineno);
        } else if (json_object_get(j, "messages")) {
            if (render_messages(tk, family, json_object_get(j, "messages"), &s, err))
                rc = g4_preferr(err, "%s:%d", path, lineno);
        } else if (json_object_get(j, "text")) {
            const json_t *t = json_object_get(j, "text");
            if (!json_is_string(t) || !json_string_length(t)) {
                rc = g4_seterr(err, "%s:%d: field 'text': expected a non-empty string", path, lineno);
            } else {
                if (bos >= 0) {
                    int32_t one = bos;
                    g4_tokens bt = { &one, 1, 1 };
                    rc = seq_add(&s, &bt, 1) ? g4_seterr(err, "out of memory") : 0;
                }
                if (!rc) rc = encode_into(tk, &s, json_string_value(t), json_string_length(t), 1, err);
                if (rc) g4_preferr(err, "%s:%d: field 'text'", path, lineno);
            }
        } else {
            rc = g4_seterr(err, "%s:%d: expected a field \"text\" or \"messages\"", path, lineno);
        }
        json_decref(j);
        if (!rc && s.n >= 2) {
            if (pack) {
                g4_tokens v = { s.tok, (size_t)s.n, (size_t)s.n };
                if (seq_add(&stream, &v, 0)) rc = g4_seterr(err, "out of memory");
                else memcpy(stream.w + stream.n - s.n, s.w, (size_t)s.n);
            } else {
                if (d->n == d->cap) {
                    d->cap = d->cap * 2 + 64;
                    example *ne = realloc(d->ex, (size_t)d->cap * sizeof *ne);
                    if (!ne) { rc = g4_seterr(err, "out of memory"); free(s.tok); free(s.w); break; }
                    d->ex = ne;
                }
                example *e = &d->ex[d->n++];
                e->n = s.n < n_ctx ? s.n : n_ctx;     /* truncation: the start is kept */
                e->tok = s.tok;
                e->w = s.w;
                s.tok = NULL;
                s.w = NULL;
            }
        }
        free(s.tok);
        free(s.w);
    }
    free(line);
    fclose(f);
    if (!rc && pack)
        for (int o = 0; o + 1 < stream.n; o += n_ctx) {
            if (d->n == d->cap) {
                d->cap = d->cap * 2 + 64;
                example *ne = realloc(d->ex, (size_t)d->cap * sizeof *ne);
                if (!ne) { rc = g4_seterr(err, "out of memory"); break; }
                d->ex = ne;
            }
            int n = stream.n - o < n_ctx ? stream.n - o : n_ctx;
            example *e = &d->ex[d->n];
            e->tok = malloc((size_t)n * sizeof *e->tok);
            e->w = malloc((size_t)n);
            if (!e->tok || !e->w) { free(e->tok); free(e->w); rc = g4_seterr(err, "out of memory"); break; }
            memcpy(e->tok, stream.tok + o, (size_t)n * sizeof *e->tok);
            memcpy(e->w, stream.w + o, (size_t)n);
            e->n = n;
            d->n++;
        }
    free(stream.tok);
    free(stream.w);
    if (rc) return -1;
    int kept = 0;     /* an example cut before its first target teaches nothing: dropped */
    for (int i = 0; i < d->n; i++) {
        example *e = &d->ex[i];
        e->n_tgt = 0;
        for (int t = 1; t < e->n; t++) e->n_tgt += e->w[t];
        if (!e->n_tgt) { free(e->tok); free(e->w); continue; }
        d->n_tok += e->n;
        d->ex[kept++] = *e;
    }
    d->n = kept;
    if (!d->n) return g4_seterr(err, "%s: no example has a target token within the first %d tokens", path, n_ctx);
    return 0;
}

/* ---- random numbers (splitmix64) ------------------------------------------------------ */

static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif01(uint64_t *s) { return ((double)(sm64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* Epoch e's order: a Fisher-Yates shuffle seeded by (seed, e). */
static void epoch_order(int *ord, int n, uint64_t seed, int epoch) {
    uint64_t s = seed * 0x2545f4914f6cdd1dull + (uint64_t)epoch * 0x9e3779b97f4a7c15ull + 1;
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(sm64(&s) % (uint64_t)(i + 1)), t = ord[i];
        ord[i] = ord[j];
        ord[j] = t;
    }
}

/* A new model's weights: norms and scales 1, matrices N(0, 1/n_in). */
static void init_weights(g4_params *ps, uint64_t seed) {
    for (int i = 0; i < ps->n; i++) {
        g4_param *p = &ps->p[i];
        int kind = g4_tensors[p->id].kind;
        if (kind == G4_TK_NORM || kind == G4_TK_SCALE) {
            for (size_t j = 0; j < p->n; j++) p->val[j] = 1.0f;
            continue;
        }
        uint64_t s = seed ^ (0x51ed2701ull * (uint64_t)(i + 1));
        double sd = 1.0 / sqrt((double)p->ne[0]);
        for (size_t j = 0; j < p->n; j++) {
            double u1 = unif01(&s), u2 = unif01(&s);
            p->val[j] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        }
    }
}

/* ---- checkpoints ------------------------------------------------------------------------- */

/* What the optimizer updates: every tensor (full training) or every LoRA
 * A and B (fine-tuning), by name. */
typedef struct tparam {
    char name[80];
    float *val, *grad;
    size_t n;
    bool decay;            /* weight decay: matrices */
} tparam;

typedef struct trainer {
    const gemma4c_train_params *o;
    g4_gguf_file *f;       /* full: the file the model came from (metadata, tensor order of the output) */
    g4_model *m;
    gemma4c_model *base;   /* fine-tuning: the frozen base */
    g4_params *ps;         /* full: every tensor; fine-tuning: none */
    g4_lora *lora;         /* fine-tuning: the adapter, bound as set */
    g4_lora_set *set;
    float **ga, **gb;      /* per entry of set */
    const g4_tokenizer *tk;
    g4_tokenizer *own_tk;
    int family;
    tparam *tp;
    int n_tp;
    float *am, *av;        /* AdamW moments, tp concatenated */
    size_t n_all;
    int step, epoch, cursor;
    int exact;             /* 1: every product exact (full training, finetune --exact); recorded in state.bin */
} trainer;

/* Write the weights as an f32 GGUF with the source file's metadata. */
static int write_model(trainer *tr, const char *path, g4_error *err) {
    g4_gguf_tensor *ts = malloc(tr->f->n_tensors * sizeof *ts);
    if (!ts) return g4_seterr(err, "out of memory");
    memcpy(ts, tr->f->tensors, tr->f->n_tensors * sizeof *ts);
    for (uint64_t i = 0; i < tr->f->n_tensors; i++)
        for (int k = 0; k < tr->ps->n; k++)
            if (!strcmp(ts[i].name, tr->ps->p[k].name)) {
                ts[i].data = tr->ps->p[k].val;
                ts[i].type = G4_F32;
                ts[i].nbytes = tr->ps->p[k].n * sizeof(float);
            }
    g4_gguf_write_opts wo = { .tensors = ts, .n_tensors = tr->f->n_tensors, .force = true };
    int rc = g4_gguf_write_ex(tr->f, path, &wo, err);
    free(ts);
    return rc;
}

/* G4TRAIN2 adds the precision (--exact) after the seed; G4TRAIN1 (before
 * it) still loads, unchecked */
#define STATE_MAGIC "G4TRAIN2"
#define STATE_MAGIC1 "G4TRAIN1"

/* mkdir -p */
static int make_dirs(const char *path, g4_error *err) {
    char b[4200];
    snprintf(b, sizeof b, "%s", path);
    for (char *p = b + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(b, 0755) && errno != EEXIST) return g4_seterr(err, "%s: %s", b, strerror(errno));
            *p = '/';
        }
    if (mkdir(b, 0755) && errno != EEXIST) return g4_seterr(err, "%s: %s", b, strerror(errno));
    return 0;
}

/* base/step-N: model.gguf + state.bin (a new folder per save, so an earlier
 * state stays to resume from) */
static int save_ckpt(trainer *tr, const char *base, g4_error *err) {
    if (make_dirs(base, err)) return -1;
    char dir[4200], path[4300], tmp[4320];
    snprintf(dir, sizeof dir, "%s/step-%d", base, tr->step);
    if (mkdir(dir, 0755) && errno != EEXIST) return g4_seterr(err, "%s: %s", dir, strerror(errno));
    if (tr->lora) {
        snprintf(path, sizeof path, "%s/adapter.gguf", dir);
        if (g4_lora_write_gguf(tr->lora, path, NULL, true, err)) return -1;
    } else {
        snprintf(path, sizeof path, "%s/model.gguf", dir);
        if (write_model(tr, path, err)) return -1;
    }
    snprintf(path, sizeof path, "%s/state.bin", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return g4_seterr(err, "%s: %s", tmp, strerror(errno));
    int32_t hdr[4] = { tr->step, tr->epoch, tr->cursor, tr->n_tp };
    uint64_t n_all = tr->n_all, seed = tr->o->seed;
    int32_t exact = tr->exact;
    bool ok = fwrite(STATE_MAGIC, 8, 1, f) == 1 && fwrite(hdr, sizeof hdr, 1, f) == 1 &&
              fwrite(&n_all, 8, 1, f) == 1 && fwrite(&seed, 8, 1, f) == 1 && fwrite(&exact, 4, 1, f) == 1;
    for (int i = 0; ok && i < tr->n_tp; i++) {
        char name[80] = { 0 };
        snprintf(name, sizeof name, "%s", tr->tp[i].name);
        uint64_t n = tr->tp[i].n;
        ok = fwrite(name, 80, 1, f) == 1 && fwrite(&n, 8, 1, f) == 1;
    }
    ok = ok && fwrite(tr->am, sizeof(float), n_all, f) == n_all && fwrite(tr->av, sizeof(float), n_all, f) == n_all;
    ok = ok && fwrite(STATE_MAGIC, 8, 1, f) == 1;
    if (fclose(f) || !ok) { unlink(tmp); return g4_seterr(err, "%s: write failed", tmp); }
    if (rename(tmp, path)) return g4_seterr(err, "%s: %s", path, strerror(errno));
    return 0;
}

static int load_state(trainer *tr, const char *dir, g4_error *err) {
    char path[4300];
    snprintf(path, sizeof path, "%s/state.bin", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return g4_seterr(err, "%s: %s", path, strerror(errno));
    char magic[8];
    int32_t hdr[4];
    uint64_t n_all, seed;
    int32_t exact = -1;     /* -1: a G4TRAIN1 state, which did not record it */
    int rc = 0;
    bool v1 = false;
    if (fread(magic, 8, 1, f) != 1 || (memcmp(magic, STATE_MAGIC, 8) && !(v1 = !memcmp(magic, STATE_MAGIC1, 8))) ||
        fread(hdr, sizeof hdr, 1, f) != 1 || fread(&n_all, 8, 1, f) != 1 || fread(&seed, 8, 1, f) != 1 ||
        (!v1 && fread(&exact, 4, 1, f) != 1)) {
        rc = g4_seterr(err, "%s: not a gemma4c training state (bad header)", path);
        goto done;
    }
    if (!v1 && exact != 0 && exact != 1) {
        rc = g4_seterr(err, "%s: corrupted (precision flag %d, expected 0 or 1)", path, (int)exact);
        goto done;
    }
    if (exact >= 0 && exact != tr->exact) {
        rc = g4_seterr(err, "%s: the checkpoint ran %s, this run %s: the run would not be the same (%s --exact)",
                       path, exact ? "with --exact" : "on the fast path", tr->exact ? "with --exact" : "on the fast path",
                       exact ? "add" : "drop");
        goto done;
    }
    if (hdr[3] != tr->n_tp || n_all != tr->n_all) {
        rc = g4_seterr(err, "%s: the checkpoint is for another model (%d tensors, %llu weights; this one has %d, %zu)",
                       path, hdr[3], (unsigned long long)n_all, tr->n_tp, tr->n_all);
        goto done;
    }
    /* tensors by name: an adapter read back lists its pairs in its own order */
    size_t *at = malloc((size_t)tr->n_tp * sizeof *at), *off = malloc((size_t)tr->n_tp * sizeof *off);
    float *tmp = malloc(2 * n_all * sizeof(float));
    if (!at || !off || !tmp) { free(at); free(off); free(tmp); rc = g4_seterr(err, "out of memory"); goto done; }
    for (int i = 0, o = 0; i < tr->n_tp; i++) { off[i] = (size_t)o; o += (int)tr->tp[i].n; }
    for (int i = 0; i < tr->n_tp && !rc; i++) {
        char name[80];
        uint64_t n;
        if (fread(name, 80, 1, f) != 1 || fread(&n, 8, 1, f) != 1) { rc = g4_seterr(err, "%s: truncated", path); break; }
        name[79] = 0;
        int j = 0;
        while (j < tr->n_tp && strcmp(name, tr->tp[j].name)) j++;
        if (j == tr->n_tp || n != tr->tp[j].n)
            rc = g4_seterr(err, "%s: the checkpoint is for another model (its tensor '%s' of %llu values is not in "
                                "this one)", path, G4_ESC(name), (unsigned long long)n);
        else at[i] = off[j];
    }
    if (!rc && (fread(tmp, sizeof(float), 2 * n_all, f) != 2 * n_all || fread(magic, 8, 1, f) != 1 ||
                memcmp(magic, v1 ? STATE_MAGIC1 : STATE_MAGIC, 8) || fgetc(f) != EOF))
        rc = g4_seterr(err, "%s: truncated or corrupted (optimizer state)", path);
    if (!rc) {
        size_t src = 0;
        for (int i = 0; i < tr->n_tp; i++) {
            size_t n = 0;
            for (int j = 0; j < tr->n_tp; j++) if (off[j] == at[i]) n = tr->tp[j].n;
            memcpy(tr->am + at[i], tmp + src, n * sizeof(float));
            memcpy(tr->av + at[i], tmp + n_all + src, n * sizeof(float));
            src += n;
        }
    }
    free(at);
    free(off);
    free(tmp);
    if (rc) goto done;
    if (hdr[0] < 0 || hdr[1] < 0 || hdr[2] < 0) {
        rc = g4_seterr(err, "%s: corrupted (negative step)", path);
        goto done;
    }
    for (size_t i = 0; i < n_all; i++)
        if (!isfinite(tr->am[i]) || !(tr->av[i] >= 0) || !isfinite(tr->av[i])) {
            rc = g4_seterr(err, "%s: corrupted (optimizer moment %zu is not a finite value)", path, i);
            goto done;
        }
    if (seed != tr->o->seed) {
        rc = g4_seterr(err, "%s: the checkpoint ran with --seed %llu, not %llu (the run would not be the same)", path,
                       (unsigned long long)seed, (unsigned long long)tr->o->seed);
        goto done;
    }
    tr->step = hdr[0];
    tr->epoch = hdr[1];
    tr->cursor = hdr[2];
done:
    fclose(f);
    return rc;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int32_t *targets_of(const example *e, int32_t *tgt) {
    for (int t = 0; t < e->n; t++) tgt[t] = t + 1 < e->n && e->w[t + 1] ? e->tok[t + 1] : -1;
    return tgt;
}

static int eval_loss(trainer *tr, g4_train_ws *tw, const dataset *ev, int32_t *tgt, double *out, g4_error *err) {
    double sum = 0;
    long n = 0;
    for (int i = 0; i < ev->n; i++) {
        double l = 0;
        if (g4_train_seq(tw, NULL, ev->ex[i].tok, targets_of(&ev->ex[i], tgt), ev->ex[i].n, 1, &l, NULL, err))
            return -1;
        sum += l;
        n += ev->ex[i].n_tgt;
    }
    *out = n ? sum / n : NAN;
    return 0;
}

/* Examples of one step starting at the cursor of the epoch's order. */
static int step_span(const dataset *d, const int *ord, int cursor, long want, int *n_tgt) {
    int k = 0;
    long tok = 0;
    *n_tgt = 0;
    while (cursor + k < d->n && (k == 0 || tok < want)) {
        tok += d->ex[ord[cursor + k]].n;
        *n_tgt += d->ex[ord[cursor + k]].n_tgt;
        k++;
    }
    return k;
}

static int add_tp(trainer *tr, const char *name, float *val, float *grad, size_t n, bool decay) {
    tparam *np = realloc(tr->tp, (size_t)(tr->n_tp + 1) * sizeof *np);
    if (!np) return -1;
    tr->tp = np;
    tparam *t = &tr->tp[tr->n_tp++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->val = val;
    t->grad = grad;
    t->n = n;
    t->decay = decay;
    return 0;
}

/* AdamW over the trainables (tp concatenated: element j of the run at
 * offset j), threads splitting the elements: each element's update reads
 * only itself, so any thread count gives the same bits. */
typedef struct adam_task {
    trainer *tr;
    float clip, wd;
    double lr, c1, c2;    /* the arithmetic of the serial loop it replaced, bit for bit */
} adam_task;

static void adam_worker(void *arg, int ith, int nth) {
    adam_task *k = arg;
    trainer *tr = k->tr;
    const float b1 = 0.9f, b2 = 0.95f, aeps = 1e-8f;
    long lo, hi;
    g4_split((long)tr->n_all, ith, nth, &lo, &hi);
    size_t off = 0;
    for (int i = 0; i < tr->n_tp && off < (size_t)hi; off += tr->tp[i++].n) {
        tparam *p = &tr->tp[i];
        size_t j0 = (size_t)lo > off ? (size_t)lo - off : 0, j1 = (size_t)hi - off < p->n ? (size_t)hi - off : p->n;
        float *m1 = tr->am + off, *m2 = tr->av + off;
        for (size_t j = j0; j < j1; j++) {
            float g = p->grad[j] * k->clip;
            m1[j] = b1 * m1[j] + (1 - b1) * g;
            m2[j] = b2 * m2[j] + (1 - b2) * g * g;
            float upd = (float)((m1[j] / k->c1) / (sqrt(m2[j] / k->c2) + aeps));
            if (p->decay) p->val[j] -= (float)(k->lr * k->wd) * p->val[j];
            p->val[j] -= (float)k->lr * upd;
        }
    }
}

static const struct { const char *name; int tid; } TARGETS[] = {
    { "q", G4_T_ATTN_Q }, { "k", G4_T_ATTN_K }, { "v", G4_T_ATTN_V }, { "o", G4_T_ATTN_OUT },
    { "gate", G4_T_FFN_GATE }, { "up", G4_T_FFN_UP }, { "down", G4_T_FFN_DOWN },
};

/* Fine-tuning: the base frozen as stored, a new adapter (A ~ U(+-1/sqrt(n_in)),
 * B = 0: the product starts as the base's) or the checkpoint's. */
static int open_lora(trainer *tr, g4_error *err) {
    const gemma4c_train_params *o = tr->o;
    char msg[1024];
    tr->base = gemma4c_model_open(o->base, msg, sizeof msg);
    if (!tr->base) return g4_seterr(err, "%s", msg);
    tr->m = tr->base->m;
    tr->tk = tr->base->tok;
    tr->family = tr->base->chat_family;
    if (!tr->tk) return g4_seterr(err, "%s: no usable tokenizer (%s)", o->base, tr->base->tok_err ? tr->base->tok_err : "");
    tr->ps = g4_params_new(tr->m, 0, err);
    if (!tr->ps) return -1;
    if (o->resume) {
        char path[4300];
        snprintf(path, sizeof path, "%s/adapter.gguf", o->resume);
        tr->lora = g4_lora_read_gguf(path, err);
        if (!tr->lora) return -1;
        if (g4_lora_check(tr->m, tr->lora, err)) return g4_preferr(err, "%s: the checkpoint is for another model", path);
    } else {
        uint64_t mask = 0;
        const char *t = o->targets ? o->targets : "q,k,v,o,gate,up,down";
        while (*t) {
            size_t n = strcspn(t, ",");
            bool found = false;
            for (size_t i = 0; i < sizeof TARGETS / sizeof TARGETS[0]; i++)
                if (strlen(TARGETS[i].name) == n && !strncmp(t, TARGETS[i].name, n)) {
                    mask |= 1ull << TARGETS[i].tid;
                    found = true;
                }
            if (!found) return g4_seterr(err, "--targets: '%.*s' is not one of q, k, v, o, gate, up, down", (int)n, t);
            t += n + (t[n] == ',');
        }
        tr->lora = g4_lora_create(tr->m, mask, o->rank > 0 ? o->rank : 16, o->alpha > 0 ? o->alpha : 32, err);
        if (!tr->lora) return -1;
        for (int i = 0; i < tr->lora->n_pairs; i++) {
            g4_lora_pair *p = &tr->lora->pairs[i];
            uint64_t s = o->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(i + 1));
            double lim = 1.0 / sqrt((double)p->n_in);
            for (size_t j = 0; j < (size_t)p->r * p->n_in; j++) p->a[j] = (float)((2 * unif01(&s) - 1) * lim);
        }
    }
    tr->set = g4_lora_bind(tr->m, &tr->lora, NULL, 1, err);
    if (!tr->set) return -1;
    tr->ga = calloc((size_t)tr->set->n, sizeof *tr->ga);
    tr->gb = calloc((size_t)tr->set->n, sizeof *tr->gb);
    if (!tr->ga || !tr->gb) return g4_seterr(err, "out of memory");
    for (int i = 0; i < tr->set->n; i++) {
        g4_lora_pair *p = tr->set->e[i].pair;
        size_t na = (size_t)p->r * p->n_in, nb = (size_t)p->r * p->n_out;
        tr->ga[i] = calloc(na, sizeof(float));
        tr->gb[i] = calloc(nb, sizeof(float));
        if (!tr->ga[i] || !tr->gb[i]) return g4_seterr(err, "out of memory");
        char base[64], name[80];
        g4_tensor_name(&g4_tensors[p->tid], p->layer, base, sizeof base);
        snprintf(name, sizeof name, "%s.lora_a", base);
        if (add_tp(tr, name, p->a, tr->ga[i], na, false)) return g4_seterr(err, "out of memory");
        snprintf(name, sizeof name, "%s.lora_b", base);
        if (add_tp(tr, name, p->b, tr->gb[i], nb, false)) return g4_seterr(err, "out of memory");
    }
    return 0;
}

static int open_model_for_training(trainer *tr, g4_error *err) {
    const gemma4c_train_params *o = tr->o;
    if (o->base) {
        if (open_lora(tr, err)) return -1;
    } else {
        char init[4200];
        const char *path;
        if (o->resume) {
            snprintf(init, sizeof init, "%s/model.gguf", o->resume);
            path = init;
        } else {
            if (!o->arch) return g4_seterr(err, "need an architecture (--arch) or a checkpoint (--resume)");
            snprintf(init, sizeof init, "%s.init.gguf", o->out);
            g4_synth_opts so = { .arch = o->arch, .ftype = "F32", .seed = o->seed, .n_threads = 1, .force = true,
                                 .corpus = o->corpus };
            if (g4_synth(init, &so, err)) return -1;
            path = init;
        }
        tr->f = g4_gguf_open(path, err);
        if (!o->resume) unlink(init);   /* mapped: stays readable until closed */
        if (!tr->f) return -1;
        /* the model takes the file; our pointer is for its metadata */
        tr->m = g4_model_load(tr->f, err);
        if (!tr->m) { tr->f = NULL; return -1; }
        tr->tk = tr->own_tk = g4_tokenizer_from_gguf(tr->f, err);
        if (!tr->tk) return g4_preferr(err, "%s: the model's tokenizer", path);
        tr->family = g4_chat_family_from_gguf(tr->f);
        tr->ps = g4_params_new(tr->m, 1, err);
        if (!tr->ps) return -1;
        if (!o->resume) init_weights(tr->ps, o->seed);
        for (int i = 0; i < tr->ps->n; i++)
            if (add_tp(tr, tr->ps->p[i].name, tr->ps->p[i].val, tr->ps->p[i].grad, tr->ps->p[i].n,
                       tr->ps->p[i].ne[1] > 1))
                return g4_seterr(err, "out of memory");
    }
    if (tr->family == G4_CHAT_FAMILY_UNKNOWN) tr->family = G4_CHAT_FAMILY_E;
    for (int i = 0; i < tr->n_tp; i++) tr->n_all += tr->tp[i].n;
    tr->am = calloc(tr->n_all, sizeof(float));
    tr->av = calloc(tr->n_all, sizeof(float));
    if (!tr->am || !tr->av) return g4_seterr(err, "out of memory for the optimizer state");
    return 0;
}

/* Fine-tuning output: OUT (".gguf" stripped) as a PEFT folder, and OUT.gguf. */
static int write_adapter(trainer *tr, const char *out, g4_error *err) {
    char dir[4200], gg[4300];
    snprintf(dir, sizeof dir, "%s", out);
    size_t n = strlen(dir);
    if (n > 5 && !strcmp(dir + n - 5, ".gguf")) dir[n - 5] = 0;
    snprintf(gg, sizeof gg, "%s.gguf", dir);
    if (g4_lora_write_peft(tr->lora, dir, true, err)) return -1;
    return g4_lora_write_gguf(tr->lora, gg, NULL, true, err);
}

static void copy_err(char *err, size_t errlen, const g4_error *e) {
    if (err && errlen) snprintf(err, errlen, "%s", e->msg);
}

int gemma4c_train(const gemma4c_train_params *o, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    if (!o || !o->data || !o->out) {
        if (err && errlen) snprintf(err, errlen, "need training data and an output path");
        return -1;
    }
    trainer tr = { .o = o, .exact = !o->base || o->exact };
    dataset d = { 0 }, ev = { 0 };
    g4_train_ws *tw = NULL;
    g4_pool *pool = NULL;    /* the optimizer's threads */
    int *ord = NULL;
    int32_t *tgt = NULL;
    int rc = -1;
    int n_ctx = o->n_ctx > 0 ? o->n_ctx : 256, accum = o->grad_accum > 0 ? o->grad_accum : 1;
    int epochs = o->epochs > 0 ? o->epochs : 1, nth = o->n_threads > 0 ? o->n_threads : 1;
    long want = (long)(o->batch_tokens > 0 ? o->batch_tokens : 2048) * accum;
    float lr0 = o->lr > 0 ? o->lr : 1e-3f, wd = o->weight_decay >= 0 ? o->weight_decay : 0.01f;
    char ckdir[4200];
    snprintf(ckdir, sizeof ckdir, "%s", o->ckpt_dir ? o->ckpt_dir : "");
    if (!o->ckpt_dir) snprintf(ckdir, sizeof ckdir, "%s.ckpt", o->out);

    if (open_model_for_training(&tr, &e)) goto out;
    if (load_jsonl(o->data, tr.tk, tr.family, n_ctx, o->pack, &d, &e)) goto out;
    if (o->eval && load_jsonl(o->eval, tr.tk, tr.family, n_ctx, o->pack, &ev, &e)) goto out;
    if (o->resume && load_state(&tr, o->resume, &e)) goto out;
    tw = g4_train_ws_new(tr.m, n_ctx, nth, &e);
    if (tw && tr.set && g4_train_ws_set_lora(tw, tr.set, tr.ga, tr.gb, &e)) goto out;
    if (tw && tr.base && !o->exact) g4_train_ws_set_precision(tw, 0);
    if (tw && o->recompute != 1) {
        /* auto's default budget, a quarter of the physical memory: leaves the
         * rest for the mapped weights (E2B Q4_K_M: 3.2 GiB, E4B: 5 GiB), the
         * workspace and the page cache; at ctx 512 it keeps every layer of
         * E2B and E4B on a 16 GiB machine */
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        size_t budget = o->act_mem_mib > 0 ? (size_t)o->act_mem_mib << 20
                        : pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 4 : (size_t)1 << 30;
        if (o->recompute == 2) budget = SIZE_MAX;
        if (g4_train_ws_keep(tw, budget, &e) < 0) goto out;
    }
    pool = g4_pool_acquire(nth);
    ord = malloc((size_t)d.n * sizeof *ord);
    tgt = malloc((size_t)n_ctx * sizeof *tgt);
    if (!tw || !ord || !tgt || !pool) { if (tw) g4_seterr(&e, "out of memory"); goto out; }

    /* steps of the whole run (the schedule's length): count each epoch's spans */
    int total = 0;
    for (int ep = 0; ep < epochs; ep++) {
        epoch_order(ord, d.n, o->seed, ep);
        for (int c = 0, nt; c < d.n;) { c += step_span(&d, ord, c, want, &nt); total++; }
    }
    if (o->max_steps > 0 && o->max_steps < total) total = o->max_steps;
    int warm = total / 20 < 100 ? total / 20 : 100;
    double unigram = NAN;
    if (ev.n) {     /* baseline: eval targets under the training targets' frequencies (add-one) */
        int V = tr.m->n_vocab;
        double *cnt = calloc((size_t)V, sizeof *cnt), tot = V, s = 0;
        long n = 0;
        if (!cnt) { g4_seterr(&e, "out of memory"); goto out; }
        for (int i = 0; i < V; i++) cnt[i] = 1;
        for (int i = 0; i < d.n; i++)
            for (int t = 1; t < d.ex[i].n; t++)
                if (d.ex[i].w[t]) { cnt[d.ex[i].tok[t]]++; tot++; }
        for (int i = 0; i < ev.n; i++)
            for (int t = 1; t < ev.ex[i].n; t++)
                if (ev.ex[i].w[t]) { s -= log(cnt[ev.ex[i].tok[t]] / tot); n++; }
        unigram = n ? s / n : NAN;
        free(cnt);
    }
    double t0 = now_s(), eval_l = NAN;
    int step0 = tr.step;
    long tok_done = 0;
    epoch_order(ord, d.n, o->seed, tr.epoch);
    while (tr.step < total && tr.epoch < epochs) {
        if (tr.cursor >= d.n) {
            tr.epoch++;
            tr.cursor = 0;
            if (tr.epoch >= epochs) break;
            epoch_order(ord, d.n, o->seed, tr.epoch);
        }
        if (o->stop && *o->stop) {
            if (save_ckpt(&tr, ckdir, &e)) goto out;
            rc = 1;
            goto out;
        }
        double ts0 = now_s(), pp0[G4_TRAIN_PARTS], pp1[G4_TRAIN_PARTS];
        g4_train_ws_profile(tw, pp0);
        long tok0 = tok_done;
        int n_tgt, k = step_span(&d, ord, tr.cursor, want, &n_tgt);
        for (int i = 0; i < tr.n_tp; i++) memset(tr.tp[i].grad, 0, tr.tp[i].n * sizeof(float));
        double loss = 0;
        for (int i = 0; i < k; i++) {
            const example *x = &d.ex[ord[tr.cursor + i]];
            double l = 0;
            if (!x->n_tgt) continue;
            if (g4_train_seq(tw, tr.ps, x->tok, targets_of(x, tgt), x->n, 1.0f / (float)n_tgt, &l, NULL, &e))
                goto out;
            loss += l;
            tok_done += x->n;
        }
        tr.cursor += k;
        loss = n_tgt ? loss / n_tgt : NAN;
        if (!isfinite(loss) && n_tgt) { g4_seterr(&e, "step %d: the loss is not finite (lower --lr)", tr.step + 1); goto out; }
        /* clip the global gradient norm to 1 */
        double gn = 0;
        for (int i = 0; i < tr.n_tp; i++)
            for (size_t j = 0; j < tr.tp[i].n; j++) gn += (double)tr.tp[i].grad[j] * tr.tp[i].grad[j];
        gn = sqrt(gn);
        float clip = gn > 1.0 ? (float)(1.0 / gn) : 1.0f;
        /* AdamW */
        int s = tr.step + 1;
        double lr = s <= warm ? lr0 * (double)s / (warm + 1)
                              : lr0 * (0.1 + 0.45 * (1 + cos(3.141592653589793 * (s - warm) / (double)(total - warm + 1))));
        adam_task ak = { &tr, clip, wd, lr, 1.0 - pow(0.9f, s), 1.0 - pow(0.95f, s) };
        g4_pool_run(pool, adam_worker, &ak);
        tr.step = s;
        double step_s = now_s() - ts0;
        g4_train_ws_profile(tw, pp1);
        eval_l = NAN;
        bool last = tr.step == total;
        if (ev.n && (last || (o->eval_every > 0 && tr.step % o->eval_every == 0)) &&
            eval_loss(&tr, tw, &ev, tgt, &eval_l, &e))
            goto out;
        if (o->save_every > 0 && tr.step % o->save_every == 0 && !last && save_ckpt(&tr, ckdir, &e)) goto out;
        if (o->progress) {
            double el = now_s() - t0;
            gemma4c_train_progress pr = { .step = tr.step, .total_steps = total, .epoch = tr.epoch, .loss = loss,
                                          .eval_loss = eval_l, .eval_unigram = unigram, .tokens_per_s = el > 0 ? tok_done / el : 0,
                                          .eta_s = el / (tr.step - step0) * (total - tr.step), .final = last,
                                          .step_s = step_s, .step_tokens = tok_done - tok0,
                                          .mem_weights = tr.base ? tr.m->weight_bytes : 0,
                                          .mem_activations = g4_train_ws_bytes(tw),
                                          .mem_trainable = (uint64_t)tr.n_all * 4 * sizeof(float),
                                          .n_layers = tr.m->n_layer };
            if (tr.base) {
                pr.mem_weights_read = tr.m->weight_bytes;
                if (tr.m->n_ple) pr.mem_weights_read -= tr.m->ple_embd.row_bytes * (uint64_t)tr.m->ple_embd.n_out;
            }
            size_t kb = 0;
            pr.kept_layers = g4_train_ws_kept(tw, &kb);
            pr.mem_kept = kb;
            for (int i = 0; i < G4_TRAIN_PARTS && i < 5; i++) pr.part_s[i] = pp1[i] - pp0[i];
            o->progress(o->progress_user, &pr);
        }
    }
    if (o->dump_logits) {
        const example *x = &d.ex[0];
        float *lg = malloc((size_t)x->n * tr.m->n_vocab * sizeof(float));
        char tp[4200];
        snprintf(tp, sizeof tp, "%s.tokens", o->dump_logits);
        FILE *f1 = fopen(o->dump_logits, "wb"), *f2 = fopen(tp, "w");
        g4_train_ws_set_precision(tw, 1);   /* comparable with inference's --exact */
        int bad = !lg || !f1 || !f2 || g4_train_seq(tw, NULL, x->tok, NULL, x->n, 1, NULL, lg, &e);
        if (!bad) {
            bad = fwrite(lg, sizeof(float), (size_t)x->n * tr.m->n_vocab, f1) != (size_t)x->n * tr.m->n_vocab;
            for (int t = 0; t < x->n; t++) fprintf(f2, "%d ", x->tok[t]);
        }
        if (f1) fclose(f1);
        if (f2) fclose(f2);
        free(lg);
        if (bad) { if (!e.msg[0]) g4_seterr(&e, "%s: cannot write the logits", o->dump_logits); goto out; }
    }
    if (save_ckpt(&tr, ckdir, &e) || (tr.lora ? write_adapter(&tr, o->out, &e) : write_model(&tr, o->out, &e)))
        goto out;
    rc = 0;
out:
    if (rc < 0) copy_err(err, errlen, &e);
    free(ord);
    free(tgt);
    g4_train_ws_free(tw);
    if (pool) g4_pool_release(pool);
    dataset_free(&d);
    dataset_free(&ev);
    free(tr.am);
    free(tr.av);
    g4_params_free(tr.ps);
    free(tr.tp);
    if (tr.set)
        for (int i = 0; i < tr.set->n; i++) { free(tr.ga[i]); free(tr.gb[i]); }
    free(tr.ga);
    free(tr.gb);
    g4_lora_set_free(tr.set);
    g4_lora_free(tr.lora);
    g4_tokenizer_free(tr.own_tk);
    if (tr.base) gemma4c_model_free(tr.base);
    else if (tr.m) g4_model_free(tr.m);     /* closes the file */
    else if (tr.f) g4_gguf_close(tr.f);
    return rc;
}
