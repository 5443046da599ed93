/* Public file and tokenizer calls (include/gemma4c.h): convert, quantize,
 * synth and standalone tokenizers, over format/, model/ and text/. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "format/gguf_write.h"
#include "format/hf.h"
#include "gemma4c.h"
#include "model/lora.h"
#include "model/quantize.h"
#include "model/synth.h"
#include "text/tokenizer.h"

static void copy_err(char *dst, size_t len, const g4_error *e) {
    if (dst && len) snprintf(dst, len, "%s", e->msg);
}

/* ---- tokenizer ------------------------------------------------------------- */

/* gemma4c_tokenizer is never defined: a handle is the internal tokenizer. */
static const g4_tokenizer *tk(const gemma4c_tokenizer *t) { return (const g4_tokenizer *)t; }

const gemma4c_tokenizer *gemma4c_model_tokenizer(const gemma4c_model *m) {
    return (const gemma4c_tokenizer *)m->tok;
}

gemma4c_tokenizer *gemma4c_tokenizer_load(const char *path, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    g4_tokenizer *t = g4_tokenizer_load(path, &e);
    if (!t) copy_err(err, errlen, &e);
    return (gemma4c_tokenizer *)t;
}

void gemma4c_tokenizer_free(gemma4c_tokenizer *t) { g4_tokenizer_free((g4_tokenizer *)t); }

int gemma4c_tokenizer_encode(const gemma4c_tokenizer *t, const char *text, size_t len, int add_bos,
                             int parse_special, int32_t **ids, char *err, size_t errlen) {
    g4_tokens v = { 0 };
    g4_error e = { { 0 } };
    if (g4_tok_encode(tk(t), text, len, add_bos, parse_special, &v, &e)) {
        g4_tokens_free(&v);
        copy_err(err, errlen, &e);
        return -1;
    }
    if (v.n > INT32_MAX) { g4_tokens_free(&v); copy_err(err, errlen, &(g4_error){ "text too long" }); return -1; }
    *ids = v.ids ? v.ids : malloc(sizeof(int32_t));
    return (int)v.n;
}

const char *gemma4c_tokenizer_piece(const gemma4c_tokenizer *t, int32_t id, size_t *len) {
    return g4_tok_text(tk(t), id, len);
}

int gemma4c_tokenizer_decode(const gemma4c_tokenizer *t, const int32_t *ids, size_t n, int render_special,
                             char **out, size_t *len, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    if (g4_tok_decode(tk(t), ids, n, render_special, out, len, &e)) { copy_err(err, errlen, &e); return -1; }
    return 0;
}

/* ---- files ------------------------------------------------------------------- */

int gemma4c_file_type_from_name(const char *name) { return g4_ftype_from_name(name); }

void gemma4c_write_abort_cleanup(void) { g4_gguf_write_cleanup_tmp(); }

/* The writers report progress with a bool; the public callback takes an int. */
typedef struct progress_fwd {
    gemma4c_progress_fn fn;
    void *user;
} progress_fwd;

static void forward_progress(void *ud, uint64_t done, uint64_t total, double elapsed_s, bool final) {
    progress_fwd *f = ud;
    f->fn(f->user, done, total, elapsed_s, final);
}

static int n_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static g4_conv_opts conv_opts(const gemma4c_write_params *p, progress_fwd *fw) {
    g4_conv_opts o = { 0, false, NULL, NULL };
    if (!p) return o;
    o.n_threads = p->n_threads;   /* <= 0: the converter uses all CPUs */
    o.force = p->force;
    if (p->progress) {
        fw->fn = p->progress;
        fw->user = p->progress_user;
        o.progress = forward_progress;
        o.progress_ud = fw;
    }
    return o;
}

static int file_type(const char *type, char *err, size_t errlen) {
    int ft = g4_ftype_from_name(type);
    if (ft < 0 && err && errlen) snprintf(err, errlen, "unknown type '%s'", type);
    return ft;
}

int gemma4c_convert(const char *hf_dir, const char *out, const char *type, const char *name,
                    const gemma4c_write_params *p, char *err, size_t errlen) {
    int ft = file_type(type, err, errlen);
    if (ft < 0) return -1;
    progress_fwd fw;
    g4_conv_opts o = conv_opts(p, &fw);
    g4_error e = { { 0 } };
    if (g4_convert_hf(hf_dir, out, ft, name, &o, &e)) { copy_err(err, errlen, &e); return -1; }
    return 0;
}

int gemma4c_quantize(const char *in, const char *out, const char *type, const gemma4c_write_params *p,
                     char *err, size_t errlen) {
    int ft = file_type(type, err, errlen);
    if (ft < 0) return -1;
    progress_fwd fw;
    g4_conv_opts o = conv_opts(p, &fw);
    g4_error e = { { 0 } };
    if (g4_quantize_gguf(in, out, ft, &o, &e)) { copy_err(err, errlen, &e); return -1; }
    return 0;
}

int gemma4c_merge(const char *base, const char *const *adapters, const float *scales, int n, const char *out,
                  const char *type, const gemma4c_write_params *p, char *err, size_t errlen) {
    int ft = type ? file_type(type, err, errlen) : -1;
    if (type && ft < 0) return -1;
    progress_fwd fw;
    g4_conv_opts o = conv_opts(p, &fw);
    g4_error e = { { 0 } };
    g4_lora **ls = calloc((size_t)(n > 0 ? n : 1), sizeof *ls);
    int rc = ls ? 0 : g4_seterr(&e, "out of memory");
    for (int i = 0; i < n && !rc; i++)
        if (!(ls[i] = g4_lora_read(adapters[i], &e))) rc = -1;
    if (!rc) rc = g4_lora_merge(base, ls, scales, n, out, ft, &o, &e);
    for (int i = 0; ls && i < n; i++) g4_lora_free(ls[i]);
    free(ls);
    if (rc) copy_err(err, errlen, &e);
    return rc;
}

/* synth's options from the public write params (fw must outlive o's use) */
static g4_synth_opts synth_opts(const char *arch, const char *type, uint64_t seed, const gemma4c_write_params *p,
                                progress_fwd *fw) {
    g4_synth_opts o = { .arch = arch, .ftype = type, .seed = seed, .n_threads = n_cpus() };
    if (p) {
        if (p->n_threads > 0) o.n_threads = p->n_threads;
        o.force = p->force;
        if (p->progress) {
            fw->fn = p->progress;
            fw->user = p->progress_user;
            o.progress = forward_progress;
            o.progress_ud = fw;
        }
    }
    return o;
}

int gemma4c_synth(const char *out, const char *arch, const char *type, uint64_t seed,
                  const gemma4c_write_params *p, char *err, size_t errlen) {
    progress_fwd fw;
    g4_synth_opts o = synth_opts(arch, type, seed, p, &fw);
    g4_error e = { { 0 } };
    if (g4_synth(out, &o, &e)) { copy_err(err, errlen, &e); return -1; }
    return 0;
}

int gemma4c_synth_assistant(const char *out, const char *arch, const char *target, const char *type, uint64_t seed,
                            const gemma4c_write_params *p, char *err, size_t errlen) {
    progress_fwd fw;
    g4_synth_opts o = synth_opts(arch ? arch : "", type, seed, p, &fw);
    g4_error e = { { 0 } };
    g4_model *tm = NULL;
    if (target) {   /* a GGUF or an HF folder, as gemma4c_model_open reads them */
        struct stat st;
        g4_gguf_file *f = stat(target, &st) == 0 && S_ISDIR(st.st_mode) ? g4_hf_open(target, &e)
                                                                       : g4_gguf_open(target, &e);
        if (!f || !(tm = g4_model_load(f, &e))) { copy_err(err, errlen, &e); return -1; }
    }
    int rc = g4_synth_assistant(out, tm, &o, &e);
    g4_model_free(tm);
    if (rc) copy_err(err, errlen, &e);
    return rc ? -1 : 0;
}
