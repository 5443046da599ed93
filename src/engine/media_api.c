/* The public media API: mmproj, media items, soft tokens (include/gemma4c.h,
 * "media"). The soft tokens enter the text model through gemma4c_batch.embd
 * (engine.c), never through a second forward pass. */
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/markers.h"
#include "encoder/audio.h"
#include "encoder/mmproj.h"
#include "encoder/mmproj_synth.h"
#include "encoder/vision.h"
#include "engine/engine.h"
#include "media/audio.h"
#include "media/image.h"
#include "media/video.h"
#include "util/esc.h"

struct gemma4c_mmproj {
    g4_mmproj *p;
};

struct gemma4c_media {
    gemma4c_mmproj *mp;
    int kind;
    gemma4c_media_params par;
    int w, h;               /* preprocessed size (every frame of a video) */
    uint8_t *rgb;           /* preprocessed pixels [n_frames][h][w][3] */
    int n_frames;           /* 1 for an image */
    double *t;              /* video: [n_frames] seconds */
    float *mel;             /* audio: log-mel features [n_mel][128] */
    int n_mel;
    int n_tokens;           /* all frames */
    float *soft;            /* [n_tokens][n_embd] once encoded */
};

static void put_err(char *dst, size_t len, const char *msg) {
    if (dst && len) snprintf(dst, len, "%s", msg);
}

/* The single *mmproj*.gguf in the model file's folder. */
static int find_beside(const char *model, char *out, size_t n, g4_error *e) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", model);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    DIR *d = opendir(dir);
    if (!d) return g4_seterr(e, "%s: cannot list the model's folder to find its mmproj", G4_ESC(dir));
    int found = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 5, ".gguf") || !strstr(de->d_name, "mmproj")) continue;
        if (found++) continue;
        snprintf(out, n, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    if (found == 0)
        return g4_seterr(e, "no *mmproj*.gguf beside %s (give one with --mmproj FILE)", G4_ESC(model));
    if (found > 1)
        return g4_seterr(e, "%d *mmproj*.gguf files beside %s: say which with --mmproj FILE", found, G4_ESC(model));
    return 0;
}

gemma4c_mmproj *gemma4c_mmproj_open(const gemma4c_model *m, const char *path, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    char found[4400];
    if (!path) {
        if (!m) { put_err(err, errlen, "mmproj: no path and no model to look beside"); return NULL; }
        const char *mp = m->m->file->path;
        struct stat st;
        if (stat(mp, &st) == 0 && S_ISDIR(st.st_mode)) path = mp;      /* an HF folder holds its towers */
        else if (find_beside(mp, found, sizeof found, &e)) { put_err(err, errlen, e.msg); return NULL; }
        else path = found;
    }
    g4_mmproj *p = g4_mmproj_open(path, &e);
    if (!p) { put_err(err, errlen, e.msg); return NULL; }
    if (m && p->n_embd_text && p->n_embd_text != m->m->n_embd) {
        g4_seterr(&e, "%s: the mmproj makes soft tokens of width %d but the model's width is %d (an mmproj of "
                  "another model?)", G4_ESC(path), p->n_embd_text, m->m->n_embd);
        g4_mmproj_free(p);
        put_err(err, errlen, e.msg);
        return NULL;
    }
    gemma4c_mmproj *r = calloc(1, sizeof *r);
    if (!r) { g4_mmproj_free(p); put_err(err, errlen, "out of memory"); return NULL; }
    r->p = p;
    return r;
}

void gemma4c_mmproj_free(gemma4c_mmproj *p) {
    if (!p) return;
    g4_mmproj_free(p->p);
    free(p);
}

int gemma4c_mmproj_n_embd(const gemma4c_mmproj *p) { return p ? p->p->n_embd_text : 0; }

int gemma4c_mmproj_vision_shape(const gemma4c_mmproj *p, int *width, int *ff, int *layers) {
    if (!p || !p->p->vision) return -1;
    g4_vision_shape(p->p->vision, width, ff, layers);
    return 0;
}

int gemma4c_mmproj_supports(const gemma4c_mmproj *p, int kind) {
    if (!p) return 0;
    if (kind == GEMMA4C_MEDIA_IMAGE || kind == GEMMA4C_MEDIA_VIDEO) return p->p->vision != NULL;
    if (kind == GEMMA4C_MEDIA_AUDIO) return p->p->audio != NULL;
    return 0;
}

/* 26B-A4B / 31B (no per-layer embeddings) attend bidirectionally within an
 * image on sliding layers; E2B / E4B stay causal (gemma4-multimodal.md §8). */
int gemma4c_model_image_attention(const gemma4c_model *m) { return m->m->n_ple == 0 ? 1 : 0; }

gemma4c_media_params gemma4c_media_default_params(void) {
    return (gemma4c_media_params){ .image_tokens = 0, .n_threads = 0, .precision = GEMMA4C_PREC_FAST };
}

static int media_threads(const gemma4c_media_params *p) {
    long n = p->n_threads > 0 ? p->n_threads : sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
}

/* Preprocess a decoded image into the item (transformers rule, PIL bicubic). */
static gemma4c_media *image_item(gemma4c_mmproj *mp, const uint8_t *rgb, int w, int h,
                                 const gemma4c_media_params *par, g4_error *e) {
    if (!mp->p->vision) { g4_seterr(e, "the mmproj has no vision encoder"); return NULL; }
    int budget = par->image_tokens ? par->image_tokens : mp->p->image_budget;
    if (!g4_vision_budget_ok(budget)) {
        g4_seterr(e, "image token budget %d: expected 70, 140, 280, 560 or 1120", budget);
        return NULL;
    }
    int tw, th;
    if (g4_vision_target_size(w, h, budget, &tw, &th, e)) return NULL;
    gemma4c_media *it = calloc(1, sizeof *it);
    if (it) it->rgb = malloc((size_t)tw * th * 3);
    if (!it || !it->rgb || g4_vision_resize_bicubic(rgb, w, h, it->rgb, tw, th)) {
        if (it) free(it->rgb);
        free(it);
        g4_seterr(e, "out of memory for a %dx%d image", tw, th);
        return NULL;
    }
    it->mp = mp;
    it->kind = GEMMA4C_MEDIA_IMAGE;
    it->par = *par;
    it->w = tw;
    it->h = th;
    it->n_frames = 1;
    it->n_tokens = g4_vision_n_tokens(tw, th);
    return it;
}

/* A video: sampled frames, one target size for all (budget 70 by default),
 * each resized as an image. */
static gemma4c_media *video_item(gemma4c_mmproj *mp, const char *path, const gemma4c_media_params *par, g4_error *e) {
    if (!mp->p->vision) { g4_seterr(e, "the mmproj has no vision encoder"); return NULL; }
    int budget = par->video_tokens ? par->video_tokens : 70;
    if (!g4_vision_budget_ok(budget)) {
        g4_seterr(e, "video token budget %d per frame: expected 70, 140, 280, 560 or 1120", budget);
        return NULL;
    }
    g4_video v;
    if (g4_video_load(path, par->video_frames > 0 ? par->video_frames : 32, &v, e)) return NULL;
    int tw, th;
    gemma4c_media *it = NULL;
    if (g4_vision_target_size(v.frames[0].w, v.frames[0].h, budget, &tw, &th, e)) goto done;
    size_t fb = (size_t)tw * th * 3;
    it = calloc(1, sizeof *it);
    if (it) { it->rgb = malloc(fb * (size_t)v.n); it->t = malloc((size_t)v.n * sizeof *it->t); }
    if (!it || !it->rgb || !it->t) goto oom;
    for (int f = 0; f < v.n; f++) {
        if (g4_vision_resize_bicubic(v.frames[f].rgb, v.frames[f].w, v.frames[f].h, it->rgb + fb * f, tw, th)) goto oom;
        it->t[f] = v.t[f];
    }
    it->mp = mp;
    it->kind = GEMMA4C_MEDIA_VIDEO;
    it->par = *par;
    it->w = tw;
    it->h = th;
    it->n_frames = v.n;
    it->n_tokens = v.n * g4_vision_n_tokens(tw, th);
    g4_video_free(&v);
    return it;
oom:
    g4_seterr(e, "out of memory for %d frames of %dx%d", v.n, tw, th);
    if (it) { free(it->rgb); free(it->t); free(it); }
    it = NULL;
done:
    g4_video_free(&v);
    return it;
}

gemma4c_media *gemma4c_media_from_rgb(gemma4c_mmproj *p, const uint8_t *rgb, int w, int h,
                                      const gemma4c_media_params *mp, char *err, size_t errlen) {
    g4_error e = { { 0 } };
    gemma4c_media_params d = gemma4c_media_default_params();
    if (!mp) mp = &d;
    if (w <= 0 || h <= 0 || (uint64_t)w * h > G4_IMAGE_MAX_PIXELS) {
        g4_seterr(&e, "image %dx%d: outside 1..%u pixels", w, h, G4_IMAGE_MAX_PIXELS);
        put_err(err, errlen, e.msg);
        return NULL;
    }
    gemma4c_media *it = image_item(p, rgb, w, h, mp, &e);
    if (!it) put_err(err, errlen, e.msg);
    return it;
}

/* kind 0: audio by its first bytes (WAV, FLAC, Ogg, MP3 with an ID3 tag
 * or a frame sync); anything else is tried as an image. */
static bool looks_like_audio(const char *path) {
    unsigned char b[12] = { 0 };
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n < 4) return false;
    return (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WAVE", 4)) || !memcmp(b, "fLaC", 4) ||
           !memcmp(b, "OggS", 4) || !memcmp(b, "ID3", 3) || (b[0] == 0xFF && (b[1] & 0xE0) == 0xE0);
}

/* Decode (any rate, any channels -> 16 kHz mono) and compute the features;
 * encoding comes later, in gemma4c_media_encode. */
static gemma4c_media *audio_item(gemma4c_mmproj *mp, const char *path, const gemma4c_media_params *par,
                                 g4_error *e) {
    if (!mp->p->audio) {
        g4_seterr(e, "%s: the mmproj has no audio encoder (only E2B and E4B have one)", G4_ESC(path));
        return NULL;
    }
    float *pcm = NULL;
    size_t n = 0;
    if (g4_audio_load_file(path, 0, &pcm, &n, e)) return NULL;
    gemma4c_media *it = calloc(1, sizeof *it);
    if (!it) { free(pcm); g4_seterr(e, "out of memory"); return NULL; }
    if (g4_audio_features(pcm, n, &it->mel, &it->n_mel, e)) {
        free(pcm);
        free(it);
        g4_preferr(e, "%s", G4_ESC(path));
        return NULL;
    }
    free(pcm);
    it->mp = mp;
    it->kind = GEMMA4C_MEDIA_AUDIO;
    it->n_frames = 1;   /* one run of soft tokens (its 30 s pieces are not separate runs) */
    it->par = *par;
    it->n_tokens = g4_audio_n_tokens(mp->p->audio, it->n_mel);
    return it;
}

gemma4c_media *gemma4c_media_load(gemma4c_mmproj *p, const char *path, int kind, const gemma4c_media_params *mp,
                                  char *err, size_t errlen) {
    g4_error e = { { 0 } };
    gemma4c_media_params d = gemma4c_media_default_params();
    if (!mp) mp = &d;
    if (kind == 0 && looks_like_audio(path)) kind = GEMMA4C_MEDIA_AUDIO;
    if (kind == GEMMA4C_MEDIA_AUDIO) {
        gemma4c_media *it = audio_item(p, path, mp, &e);
        if (!it) put_err(err, errlen, e.msg);
        return it;
    }
    struct stat st;
    if (kind == GEMMA4C_MEDIA_VIDEO || (kind == 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
        gemma4c_media *it = video_item(p, path, mp, &e);
        if (!it) put_err(err, errlen, e.msg);
        return it;
    }
    g4_image im;
    if (g4_image_load(path, &im, &e)) { put_err(err, errlen, e.msg); return NULL; }
    gemma4c_media *it = image_item(p, im.rgb, im.w, im.h, mp, &e);
    g4_image_free(&im);
    if (!it) {
        g4_preferr(&e, "%s: ", G4_ESC(path));
        put_err(err, errlen, e.msg);
    }
    return it;
}

void gemma4c_media_free(gemma4c_media *it) {
    if (!it) return;
    free(it->rgb);
    free(it->mel);
    free(it->soft);
    free(it->t);
    free(it);
}

int gemma4c_media_n_frames(const gemma4c_media *it) { return it->n_frames; }

char *gemma4c_media_prompt(const gemma4c_media *it) {
    static const char *open[4] = { "", G4_MK_IMAGE_OPEN, G4_MK_AUDIO_OPEN, G4_MK_IMAGE_OPEN },
                      *soft[4] = { "", G4_MK_IMAGE, G4_MK_AUDIO, G4_MK_VIDEO },
                      *close[4] = { "", G4_MK_IMAGE_CLOSE, G4_MK_AUDIO_CLOSE, G4_MK_IMAGE_CLOSE };
    int k = it->kind, per = it->n_tokens / it->n_frames;
    size_t cap = (size_t)it->n_frames * (32 + strlen(open[k]) + strlen(close[k]) + (size_t)per * strlen(soft[k])) + 1;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    for (int f = 0; f < it->n_frames; f++) {
        if (k == GEMMA4C_MEDIA_VIDEO) {   /* "MM:SS <|image>...<image|>", frames joined by a space */
            double t = it->t[f];
            p += sprintf(p, "%s%02d:%02d ", f ? " " : "", (int)(t / 60), (int)fmod(t, 60));
        }
        p = stpcpy(p, open[k]);
        for (int i = 0; i < per; i++) p = stpcpy(p, soft[k]);
        p = stpcpy(p, close[k]);
    }
    return s;
}

int gemma4c_media_kind(const gemma4c_media *it) { return it->kind; }
int gemma4c_media_n_tokens(const gemma4c_media *it) { return it->n_tokens; }

const uint8_t *gemma4c_media_pixels(const gemma4c_media *it, int *w, int *h) {
    if (!it->rgb) return NULL;
    *w = it->w;
    *h = it->h;
    return it->rgb;
}

static int32_t special_id(const gemma4c_model *m, const char *s) {
    int32_t *ids = NULL;
    int n = gemma4c_tokenize(m, s, strlen(s), 0, 1, &ids, NULL, 0);
    int32_t r = n == 1 ? ids[0] : -1;
    free(ids);
    return r;
}

int gemma4c_media_token_ids(const gemma4c_model *m, int kind, int32_t *open, int32_t *soft, int32_t *close) {
    const char *o, *s, *c;
    switch (kind) {
    case GEMMA4C_MEDIA_IMAGE: o = G4_MK_IMAGE_OPEN; s = G4_MK_IMAGE; c = G4_MK_IMAGE_CLOSE; break;
    case GEMMA4C_MEDIA_AUDIO: o = G4_MK_AUDIO_OPEN; s = G4_MK_AUDIO; c = G4_MK_AUDIO_CLOSE; break;
    case GEMMA4C_MEDIA_VIDEO: o = G4_MK_IMAGE_OPEN; s = G4_MK_VIDEO; c = G4_MK_IMAGE_CLOSE; break;
    default: return -1;
    }
    *open = special_id(m, o);
    *soft = special_id(m, s);
    *close = special_id(m, c);
    return *open < 0 || *soft < 0 || *close < 0 ? -1 : 0;
}

const float *gemma4c_media_encode(gemma4c_media *it, char *err, size_t errlen) {
    if (it->soft) return it->soft;
    g4_error e = { { 0 } };
    g4_mmproj *p = it->mp->p;
    float *out = malloc((size_t)it->n_tokens * p->n_embd_text * sizeof *out);
    if (!out) { put_err(err, errlen, "out of memory for soft tokens"); return NULL; }
    bool exact = it->par.precision == GEMMA4C_PREC_EXACT;
    if (it->kind == GEMMA4C_MEDIA_AUDIO) {
        if (g4_audio_encode(p->audio, it->mel, it->n_mel, out, media_threads(&it->par), exact, &e)) {
            free(out);
            put_err(err, errlen, e.msg);
            return NULL;
        }
        it->soft = out;
        return out;
    }
    /* a video's frames are encoded one by one, as images */
    int per = it->n_tokens / it->n_frames;
    for (int f = 0; f < it->n_frames; f++)
        if (g4_vision_encode(p->vision, it->rgb + (size_t)f * it->w * it->h * 3, it->w, it->h,
                             out + (size_t)f * per * p->n_embd_text, media_threads(&it->par),
                             exact, &e)) {
            free(out);
            put_err(err, errlen, e.msg);
            return NULL;
        }
    it->soft = out;
    return out;
}

int gemma4c_synth_mmproj(const char *out, const char *arch, const char *type, uint64_t seed, int force, char *err,
                         size_t errlen) {
    g4_error e = { { 0 } };
    if (g4_mmproj_synth(out, arch, type, seed, force != 0, &e)) { put_err(err, errlen, e.msg); return -1; }
    return 0;
}
