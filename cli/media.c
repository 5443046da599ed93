/* Media options and placeholder filling (see media.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media.h"
#include "opts.h"

const char *MEDIA_HELP =
    "      --image FILE   an image (PNG, JPEG, WebP, GIF first frame, BMP); repeatable, in order\n"
    "      --audio FILE   an audio clip (needs the audio encoder); repeatable\n"
    "      --video FILE   a video; repeatable\n"
    "      --mmproj PATH  the media encoders: mmproj .gguf or HF folder (default: the\n"
    "                     *mmproj*.gguf beside the model, or the model's HF folder)\n"
    "      --image-tokens N  soft tokens per image: 70, 140, 280, 560 or 1120 (default 280)\n"
    "      --video-tokens N  soft tokens per video frame (default 70)\n"
    "      --video-frames N  frames sampled from a video (default 32)\n";

int media_opt(media_opts *mo, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    int kind = !strcmp(a, "--image") ? GEMMA4C_MEDIA_IMAGE : !strcmp(a, "--audio") ? GEMMA4C_MEDIA_AUDIO
             : !strcmp(a, "--video") ? GEMMA4C_MEDIA_VIDEO : 0;
    if (kind) {
        if (!v) { fprintf(stderr, "gemma4c: %s needs a file\n", a); return -1; }
        if (mo->n >= CLI_MAX_MEDIA) { fprintf(stderr, "gemma4c: at most %d media items\n", CLI_MAX_MEDIA); return -1; }
        mo->kind[mo->n] = kind;
        mo->path[mo->n++] = v;
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--mmproj")) {
        if (!v) { fprintf(stderr, "gemma4c: --mmproj needs a path\n"); return -1; }
        mo->mmproj = v;
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--video-frames")) { (*i)++; return parse_int(a, v, 1, 1024, &mo->video_frames) ? -1 : 1; }
    if (!strcmp(a, "--image-tokens") || !strcmp(a, "--video-tokens")) {
        int *dst = a[2] == 'i' ? &mo->image_tokens : &mo->video_tokens;
        (*i)++;
        if (parse_int(a, v, 70, 1120, dst)) return -1;
        int b = *dst;
        if (b != 70 && b != 140 && b != 280 && b != 560 && b != 1120) {
            fprintf(stderr, "gemma4c: %s expects 70, 140, 280, 560 or 1120, got %d\n", a, b);
            return -1;
        }
        return 1;
    }
    return 0;
}

int media_load(media_set *ms, const media_opts *mo, gemma4c_model *m, int n_threads, int exact) {
    memset(ms, 0, sizeof *ms);
    if (mo->n == 0) return 0;
    char err[800];
    ms->mp = gemma4c_mmproj_open(m, mo->mmproj, err, sizeof err);
    if (!ms->mp) { fprintf(stderr, "gemma4c: %s\n", err); return -1; }
    gemma4c_media_params p = gemma4c_media_default_params();
    p.image_tokens = mo->image_tokens;
    p.video_tokens = mo->video_tokens;
    p.video_frames = mo->video_frames;
    p.n_threads = n_threads;
    p.precision = exact ? GEMMA4C_PREC_EXACT : GEMMA4C_PREC_FAST;
    for (int i = 0; i < mo->n; i++) {
        gemma4c_media *it = gemma4c_media_load(ms->mp, mo->path[i], mo->kind[i], &p, err, sizeof err);
        if (!it || !gemma4c_media_encode(it, err, sizeof err)) {
            fprintf(stderr, "gemma4c: %s\n", err);
            gemma4c_media_free(it);
            media_set_free(ms);
            return -1;
        }
        ms->it[ms->n++] = it;
    }
    return 0;
}

void media_set_free(media_set *ms) {
    for (int i = 0; i < ms->n; i++) gemma4c_media_free(ms->it[i]);
    gemma4c_mmproj_free(ms->mp);
    memset(ms, 0, sizeof *ms);
}

static const char *kind_name(int k) {
    return k == GEMMA4C_MEDIA_IMAGE ? "image" : k == GEMMA4C_MEDIA_AUDIO ? "audio" : "video";
}

int media_fill(const media_set *ms, gemma4c_model *m, const int32_t *ids, int n, float **embd, uint8_t **has,
               int32_t **run) {
    *embd = NULL; *has = NULL; *run = NULL;
    int32_t soft[4] = { -1, -1, -1, -1 }, o, c;
    for (int k = 1; k <= 3; k++) gemma4c_media_token_ids(m, k, &o, &soft[k], &c);
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    int H = info.n_embd, bidir = gemma4c_model_image_attention(m);
    *embd = calloc((size_t)n * H, sizeof **embd);
    *has = calloc((size_t)n, 1);
    if (bidir) *run = malloc((size_t)n * sizeof **run);
    if (!*embd || !*has || (bidir && !*run)) { fprintf(stderr, "gemma4c: out of memory\n"); goto fail; }
    if (*run) for (int i = 0; i < n; i++) (*run)[i] = -1;
    int item = 0, frame = 0, runs = 0;
    for (int i = 0; i < n;) {
        int k = 0;
        for (int q = 1; q <= 3; q++) if (soft[q] >= 0 && ids[i] == soft[q]) k = q;
        if (!k) { i++; continue; }
        int j = i;
        while (j < n && ids[j] == ids[i]) j++;
        if (item >= ms->n) {
            fprintf(stderr, "gemma4c: the prompt has more placeholder runs than media given: run %d (%s, %d tokens at "
                    "position %d) has no item\n", runs + 1, kind_name(k), j - i, i);
            goto fail;
        }
        gemma4c_media *it = ms->it[item];
        int nf = gemma4c_media_n_frames(it), want = gemma4c_media_n_tokens(it) / nf, ik = gemma4c_media_kind(it);
        if (ik != k) {
            fprintf(stderr, "gemma4c: placeholder run %d at position %d is %s but media item %d is %s\n", runs + 1, i,
                    kind_name(k), item + 1, kind_name(ik));
            goto fail;
        }
        if (j - i != want) {
            fprintf(stderr, "gemma4c: placeholder run %d at position %d has %d tokens but %s item %d gives %d soft "
                    "tokens%s\n", runs + 1, i, j - i, kind_name(k), item + 1, want, nf > 1 ? " per frame" : "");
            goto fail;
        }
        const float *rows = gemma4c_media_encode(it, NULL, 0) + (size_t)frame * want * H;
        memcpy(*embd + (size_t)i * H, rows, (size_t)want * H * sizeof **embd);
        memset(*has + i, 1, (size_t)want);
        if (*run && k != GEMMA4C_MEDIA_AUDIO) for (int t = i; t < j; t++) (*run)[t] = runs;
        runs++;
        if (++frame == nf) { item++; frame = 0; }
        i = j;
    }
    if (item != ms->n || frame) {
        fprintf(stderr, "gemma4c: %d media given but the prompt's %d placeholder runs fill %d%s\n", ms->n, runs, item,
                frame ? " and part of a video" : "");
        goto fail;
    }
    return 0;
fail:
    free(*embd); free(*has); free(*run);
    *embd = NULL; *has = NULL; *run = NULL;
    return -1;
}
