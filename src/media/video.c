/* Video decoding and frame sampling (see video.h). Two passes over a file:
 * the first counts the video stream's frames, the second decodes and keeps
 * only the sampled ones, so memory holds max_frames frames whatever the
 * length. */
#include "media/video.h"

#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libavcodec/avcodec.h>
#include <libavcodec/version.h>
#include <libavformat/avformat.h>
#include <libavformat/version.h>
#include <libavutil/version.h>
#include <libswscale/swscale.h>
#include <libswscale/version.h>

#include "util/esc.h"

/* ---- FFmpeg, loaded on the first video file --------------------------------
 * Linking FFmpeg maps ~125 shared objects into every process (~23 MiB of
 * relocated data and constructors, for `gemma4c --help` too), so the four
 * libraries are dlopen'ed only when a video file is opened. The headers still
 * give the types, struct layouts and macros: the sonames carry the major
 * versions the build saw, and FFmpeg keeps its ABI within a major version.
 * Folders of frames, images and audio never load it. */

#define FF_STR2(x) #x
#define FF_STR(x) FF_STR2(x)

/* Each library: soname, and the Debian package that ships it. Loaded in
 * dependency order (avformat needs avcodec needs avutil). */
enum { FF_AVUTIL, FF_SWSCALE, FF_AVCODEC, FF_AVFORMAT, FF_NLIB };
static const char *const ff_soname[FF_NLIB] = {
    "libavutil.so." FF_STR(LIBAVUTIL_VERSION_MAJOR),
    "libswscale.so." FF_STR(LIBSWSCALE_VERSION_MAJOR),
    "libavcodec.so." FF_STR(LIBAVCODEC_VERSION_MAJOR),
    "libavformat.so." FF_STR(LIBAVFORMAT_VERSION_MAJOR),
};
static const char *const ff_package[FF_NLIB] = {
    "libavutil" FF_STR(LIBAVUTIL_VERSION_MAJOR),
    "libswscale" FF_STR(LIBSWSCALE_VERSION_MAJOR),
    "libavcodec" FF_STR(LIBAVCODEC_VERSION_MAJOR),
    "libavformat" FF_STR(LIBAVFORMAT_VERSION_MAJOR),
};

/* The functions used below, with their library; each becomes a pointer of
 * the header's own type (so a call is checked as if linked). */
#define FF_FUNCS(X)                                                                                     \
    X(FF_AVUTIL, av_log_set_level) X(FF_AVUTIL, av_strerror) X(FF_AVUTIL, av_frame_alloc)               \
    X(FF_AVUTIL, av_frame_free) X(FF_AVUTIL, av_frame_unref)                                            \
    X(FF_SWSCALE, sws_getCachedContext) X(FF_SWSCALE, sws_scale) X(FF_SWSCALE, sws_freeContext)         \
    X(FF_AVCODEC, avcodec_alloc_context3) X(FF_AVCODEC, avcodec_parameters_to_context)                  \
    X(FF_AVCODEC, avcodec_open2) X(FF_AVCODEC, avcodec_send_packet) X(FF_AVCODEC, avcodec_receive_frame) \
    X(FF_AVCODEC, avcodec_free_context) X(FF_AVCODEC, av_packet_alloc) X(FF_AVCODEC, av_packet_free)    \
    X(FF_AVCODEC, av_packet_unref)                                                                      \
    X(FF_AVFORMAT, avformat_open_input) X(FF_AVFORMAT, avformat_find_stream_info)                       \
    X(FF_AVFORMAT, av_find_best_stream) X(FF_AVFORMAT, av_read_frame) X(FF_AVFORMAT, avformat_close_input)

static struct {
#define FF_FIELD(lib, fn) __typeof__(fn) *fn;
    FF_FUNCS(FF_FIELD)
#undef FF_FIELD
} ff;

static pthread_once_t ff_once = PTHREAD_ONCE_INIT;
static char ff_error[512];   /* why FFmpeg is unusable; "" once loaded */

static void ff_load(void) {
    void *lib[FF_NLIB];
    for (int i = 0; i < FF_NLIB; i++)
        if (!(lib[i] = dlopen(ff_soname[i], RTLD_NOW | RTLD_LOCAL))) {
            const char *why = dlerror();
            snprintf(ff_error, sizeof ff_error,
                     "video files need FFmpeg's %s, which cannot be loaded (%s): install Debian's %s "
                     "(or the ffmpeg package); images, audio and folders of frames work without it",
                     ff_soname[i], why ? why : "not found", ff_package[i]);
            return;
        }
    /* dlsym gives a void *; copying its bytes into the function pointer is
     * the POSIX-sanctioned conversion (ISO C has no cast between the two) */
    _Static_assert(sizeof(void *) == sizeof(void (*)(void)), "function and data pointers differ in size");
#define FF_RESOLVE(l, fn)                                                                                   \
    {                                                                                                       \
        void *p = dlsym(lib[l], #fn);                                                                       \
        if (!p) {                                                                                           \
            snprintf(ff_error, sizeof ff_error,                                                             \
                     "video files need FFmpeg, but %s has no %s (a different FFmpeg build than gemma4c was " \
                     "compiled for: install Debian's %s)",                                                  \
                     ff_soname[l], #fn, ff_package[l]);                                                     \
            return;                                                                                         \
        }                                                                                                   \
        memcpy(&ff.fn, &p, sizeof p);                                                                       \
    }
    FF_FUNCS(FF_RESOLVE)
#undef FF_RESOLVE
    ff.av_log_set_level(AV_LOG_QUIET);   /* errors come back as values, not printed */
    ff_error[0] = 0;
}

/* 0 when FFmpeg is usable (loading it on the first call), else -1 with why. */
static int ff_ready(const char *path, g4_error *err) {
    pthread_once(&ff_once, ff_load);
    return ff_error[0] ? g4_seterr(err, "%s: %s", G4_ESC(path), ff_error) : 0;
}

void g4_video_free(g4_video *v) {
    if (!v) return;
    for (int i = 0; v->frames && i < v->n; i++) g4_image_free(&v->frames[i]);
    free(v->frames);
    free(v->t);
    memset(v, 0, sizeof *v);
}

/* The sampled indices: idx_j = floor(j * total / k), k = min(max, total). */
static int sample(int total, int max_frames, int **idx) {
    int k = total < max_frames ? total : max_frames;
    *idx = malloc((size_t)(k > 0 ? k : 1) * sizeof **idx);
    if (!*idx) return -1;
    for (int j = 0; j < k; j++) (*idx)[j] = (int)((double)j * total / k);
    return k;
}

static int alloc_frames(g4_video *v, int k) {
    v->frames = calloc((size_t)k, sizeof *v->frames);
    v->t = calloc((size_t)k, sizeof *v->t);
    return v->frames && v->t ? 0 : -1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A folder of images, in name order, 24 fps. */
static int load_folder(const char *path, int max_frames, g4_video *v, g4_error *err) {
    DIR *d = opendir(path);
    if (!d) return g4_seterr(err, "%s: cannot open the folder", G4_ESC(path));
    char **names = NULL;
    int n = 0, cap = 0, rc = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (n >= G4_VIDEO_MAX_DECODED) break;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **g = realloc(names, (size_t)cap * sizeof *g);
            if (!g) goto oom;
            names = g;
        }
        if (!(names[n] = strdup(de->d_name))) goto oom;
        n++;
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    if (n == 0) { g4_seterr(err, "%s: the folder has no frames", G4_ESC(path)); goto done; }
    int *idx;
    int k = sample(n, max_frames, &idx);
    if (k < 0 || alloc_frames(v, k)) { free(k < 0 ? NULL : idx); goto oom; }
    v->total = n;
    v->fps = 24;
    for (int j = 0; j < k; j++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, names[idx[j]]);
        if (g4_image_load(p, &v->frames[j], err)) { free(idx); goto done; }
        v->n = j + 1;
        v->t[j] = idx[j] / v->fps;
        if (v->frames[j].w != v->frames[0].w || v->frames[j].h != v->frames[0].h) {
            g4_seterr(err, "%s: frame %s is %dx%d but the first is %dx%d (frames of a video share one size)",
                      G4_ESC(path), G4_ESC(names[idx[j]]), v->frames[j].w, v->frames[j].h, v->frames[0].w,
                      v->frames[0].h);
            free(idx);
            goto done;
        }
    }
    free(idx);
    rc = 0;
    goto done;
oom:
    g4_seterr(err, "out of memory");
done:
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

typedef struct av {
    AVFormatContext *fmt;
    AVCodecContext *dec;
    struct SwsContext *sws;
    AVPacket *pkt;
    AVFrame *fr;
    int stream;
} av;

static void av_close(av *a) {
    ff.sws_freeContext(a->sws);
    ff.av_frame_free(&a->fr);
    ff.av_packet_free(&a->pkt);
    ff.avcodec_free_context(&a->dec);
    ff.avformat_close_input(&a->fmt);
    memset(a, 0, sizeof *a);
}

static int av_fail(const char *path, const char *what, int e, g4_error *err) {
    char b[256];
    ff.av_strerror(e, b, sizeof b);
    return g4_seterr(err, "%s: %s: %s", G4_ESC(path), what, b);
}

static int av_open(av *a, const char *path, g4_error *err) {
    memset(a, 0, sizeof *a);
    int e;
    if ((e = ff.avformat_open_input(&a->fmt, path, NULL, NULL)) < 0) return av_fail(path, "cannot open as a video", e, err);
    if ((e = ff.avformat_find_stream_info(a->fmt, NULL)) < 0) return av_fail(path, "no stream information", e, err);
    const AVCodec *codec = NULL;
    a->stream = ff.av_find_best_stream(a->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (a->stream < 0 || !codec) return g4_seterr(err, "%s: no video stream gemma4c can decode", G4_ESC(path));
    AVCodecParameters *par = a->fmt->streams[a->stream]->codecpar;
    if (par->width <= 0 || par->height <= 0 || par->width > G4_IMAGE_MAX_SIDE || par->height > G4_IMAGE_MAX_SIDE ||
        (uint64_t)par->width * par->height > G4_IMAGE_MAX_PIXELS)
        return g4_seterr(err, "%s: video frames of %dx%d: gemma4c accepts at most %d pixels a side and %u in all",
                         G4_ESC(path), par->width, par->height, G4_IMAGE_MAX_SIDE, G4_IMAGE_MAX_PIXELS);
    if (!(a->dec = ff.avcodec_alloc_context3(codec)) || ff.avcodec_parameters_to_context(a->dec, par) < 0 ||
        (e = ff.avcodec_open2(a->dec, codec, NULL)) < 0)
        return g4_seterr(err, "%s: cannot open the %s decoder", G4_ESC(path), codec->name);
    if (!(a->pkt = ff.av_packet_alloc()) || !(a->fr = ff.av_frame_alloc())) return g4_seterr(err, "out of memory");
    return 0;
}

/* Decode every frame, calling keep(frame index) for each; 0 or -1. */
typedef int (*frame_fn)(void *u, int i, AVFrame *f, g4_error *err);

static int decode_all(av *a, const char *path, frame_fn fn, void *u, int *count, g4_error *err) {
    int i = 0, e;
    for (int eof = 0; !eof;) {
        e = ff.av_read_frame(a->fmt, a->pkt);
        if (e < 0) eof = 1;
        else if (a->pkt->stream_index != a->stream) { ff.av_packet_unref(a->pkt); continue; }
        e = ff.avcodec_send_packet(a->dec, eof ? NULL : a->pkt);
        ff.av_packet_unref(a->pkt);
        if (e < 0 && e != AVERROR(EAGAIN) && e != AVERROR_EOF) return av_fail(path, "corrupt video data", e, err);
        while ((e = ff.avcodec_receive_frame(a->dec, a->fr)) >= 0) {
            if (i >= G4_VIDEO_MAX_DECODED)
                return g4_seterr(err, "%s: more than %d frames", G4_ESC(path), G4_VIDEO_MAX_DECODED);
            if (fn && fn(u, i, a->fr, err)) return -1;
            i++;
            ff.av_frame_unref(a->fr);
        }
        if (e != AVERROR(EAGAIN) && e != AVERROR_EOF) return av_fail(path, "corrupt video data", e, err);
    }
    *count = i;
    return 0;
}

typedef struct keep_ctx {
    av *a;
    g4_video *v;
    const int *idx;
    int k, next;
    const char *path;
} keep_ctx;

static int keep_frame(void *u, int i, AVFrame *f, g4_error *err) {
    keep_ctx *c = u;
    while (c->next < c->k && c->idx[c->next] == i) {
        int w = f->width, h = f->height;
        if (w <= 0 || h <= 0 || w > G4_IMAGE_MAX_SIDE || h > G4_IMAGE_MAX_SIDE ||
            (uint64_t)w * h > G4_IMAGE_MAX_PIXELS)
            return g4_seterr(err, "%s: frame %d is %dx%d, outside the image limits", G4_ESC(c->path), i, w, h);
        if (c->next > 0 && (w != c->v->frames[0].w || h != c->v->frames[0].h))
            return g4_seterr(err, "%s: frame %d is %dx%d but the first kept frame is %dx%d", G4_ESC(c->path), i, w, h,
                             c->v->frames[0].w, c->v->frames[0].h);
        c->a->sws = ff.sws_getCachedContext(c->a->sws, w, h, f->format, w, h, AV_PIX_FMT_RGB24,
                                         SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
        g4_image *im = &c->v->frames[c->next];
        im->rgb = malloc((size_t)w * h * 3);
        if (!c->a->sws || !im->rgb) return g4_seterr(err, "%s: cannot convert frame %d to RGB", G4_ESC(c->path), i);
        im->w = w;
        im->h = h;
        c->v->n = c->next + 1;
        uint8_t *dst[4] = { im->rgb };
        int ls[4] = { w * 3 };
        ff.sws_scale(c->a->sws, (const uint8_t *const *)f->data, f->linesize, 0, h, dst, ls);
        c->v->t[c->next] = i / c->v->fps;
        c->next++;
    }
    return 0;
}

int g4_video_load(const char *path, int max_frames, g4_video *v, g4_error *err) {
    memset(v, 0, sizeof *v);
    if (max_frames < 1) max_frames = 32;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        int rc = load_folder(path, max_frames, v, err);
        if (rc) g4_video_free(v);
        return rc;
    }
    if (ff_ready(path, err)) return -1;
    av a;
    int total = 0, *idx = NULL, rc = -1;
    /* pass 1: count decoded frames */
    if (av_open(&a, path, err) || decode_all(&a, path, NULL, NULL, &total, err)) goto done;
    AVRational r = a.fmt->streams[a.stream]->avg_frame_rate;
    if (r.num <= 0 || r.den <= 0) r = a.fmt->streams[a.stream]->r_frame_rate;
    av_close(&a);
    if (total == 0) { g4_seterr(err, "%s: the video has no frames", G4_ESC(path)); goto done; }
    v->total = total;
    v->fps = r.num > 0 && r.den > 0 ? (double)r.num / r.den : 24;
    int k = sample(total, max_frames, &idx);
    if (k < 0 || alloc_frames(v, k)) { g4_seterr(err, "out of memory"); goto done; }
    /* pass 2: decode again, keep the sampled frames */
    keep_ctx kc = { &a, v, idx, k, 0, path };
    int again = 0;
    if (av_open(&a, path, err) || decode_all(&a, path, keep_frame, &kc, &again, err)) goto done;
    if (kc.next < k) {
        g4_seterr(err, "%s: the second read gave %d frames, the first %d", G4_ESC(path), again, total);
        goto done;
    }
    rc = 0;
done:
    av_close(&a);
    free(idx);
    if (rc) g4_video_free(v);
    return rc;
}
