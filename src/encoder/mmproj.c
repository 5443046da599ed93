/* Opening an mmproj (GGUF or HF folder) and its encoders. */
#include "encoder/mmproj.h"

#include <stdlib.h>
#include <string.h>

#include "format/hf.h"
#include "util/esc.h"

g4_mmproj *g4_mmproj_from_file(g4_gguf_file *f, g4_error *err) {
    if (!f) return NULL;
    g4_mmproj *p = calloc(1, sizeof *p);
    if (!p) { g4_gguf_close(f); g4_seterr(err, "out of memory"); return NULL; }
    p->file = f;
    p->image_budget = 280;
    char *arch = NULL;
    if (g4_gguf_get_str(f, "general.architecture", &arch, err) < 0) goto fail;
    if (!arch || strcmp(arch, "clip")) {
        g4_seterr(err, "%s: general.architecture is '%s', an mmproj file has 'clip' (is this the text model?)",
                  f->path, arch ? G4_ESC(arch) : "(absent)");
        free(arch);
        goto fail;
    }
    free(arch);
    bool has_v = false, has_a = false;
    if (g4_gguf_get_bool(f, "clip.has_vision_encoder", &has_v, err) < 0 ||
        g4_gguf_get_bool(f, "clip.has_audio_encoder", &has_a, err) < 0)
        goto fail;
    p->declares_audio = has_a;
    if (has_v) {
        p->vision = g4_vision_enc_load(f, err);
        if (!p->vision) {
            if (!err || !err->msg[0]) g4_seterr(err, "%s: clip.has_vision_encoder is set but there is no vision tower",
                                                f->path);
            goto fail;
        }
        p->n_embd_text = g4_vision_n_embd_text(p->vision);
        uint32_t b = 0;   /* from an HF folder's processor_config.json (format/hf.c) */
        if (g4_gguf_get_u32(f, "gemma4c.vision.image_soft_tokens", &b, err) < 0) goto fail;
        if (b) {
            if (!g4_vision_budget_ok((int)b)) {
                g4_seterr(err, "%s: image_processor.max_soft_tokens is %u; expected 70, 140, 280, 560 or 1120", f->path, b);
                goto fail;
            }
            p->image_budget = (int)b;
        }
    }
    if (has_a) {
        p->audio = g4_audio_enc_load(f, err);
        if (!p->audio) {
            if (!err || !err->msg[0])
                g4_seterr(err, "%s: clip.has_audio_encoder is set but there is no audio tower", f->path);
            goto fail;
        }
        int ea = g4_audio_n_embd(p->audio);
        if (p->vision && ea != p->n_embd_text) {
            g4_seterr(err, "%s: the audio tower makes soft tokens of width %d, the vision tower %d", f->path, ea,
                      p->n_embd_text);
            goto fail;
        }
        p->n_embd_text = ea;
    }
    if (!p->vision && !p->declares_audio) {
        g4_seterr(err, "%s: the mmproj has neither a vision nor an audio encoder", f->path);
        goto fail;
    }
    return p;
fail:
    g4_mmproj_free(p);
    return NULL;
}

g4_mmproj *g4_mmproj_open(const char *path, g4_error *err) {
    g4_gguf_file *f;
    if (g4_hf_is_dir(path)) {
        f = g4_hf_open_mmproj(path, err);
    } else {
        f = g4_gguf_open(path, err);
    }
    if (!f) return NULL;
    return g4_mmproj_from_file(f, err);
}

void g4_mmproj_free(g4_mmproj *p) {
    if (!p) return;
    g4_vision_enc_free(p->vision);
    g4_audio_enc_free(p->audio);
    g4_gguf_close(p->file);
    free(p);
}
