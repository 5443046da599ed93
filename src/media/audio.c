/* Audio decoding and resampling (media/audio.h).
 *
 * Why these libraries: libsndfile (Debian libsndfile1) decodes every format we
 * take -- WAV in each PCM width and float, FLAC, Ogg/Vorbis, Opus and, since
 * 1.1, MP3 -- behind one read call with normalized floats; libsoxr (Debian
 * libsoxr0) resamples. transformers' load_audio decodes a file either with
 * torchcodec (FFmpeg's decoders and swresample) when installed or with
 * librosa.load (libsndfile through soundfile, then soxr at "soxr_hq", its
 * default res_type, after the mono mix): we follow the librosa path. Writing
 * either by hand would be a few thousand lines of codec and filter code to
 * get wrong. */
#include "media/audio.h"

#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- libsndfile virtual I/O over a memory image ------------------------------ */

typedef struct memfile {
    const unsigned char *p;
    sf_count_t size, pos;
} memfile;

static sf_count_t mf_len(void *u) { return ((memfile *)u)->size; }
static sf_count_t mf_seek(sf_count_t off, int whence, void *u) {
    memfile *m = u;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
    if (off < -base || off > m->size - base) return -1;
    m->pos = base + off;
    return m->pos;
}
static sf_count_t mf_read(void *dst, sf_count_t n, void *u) {
    memfile *m = u;
    if (n < 0) return 0;
    if (n > m->size - m->pos) n = m->size - m->pos;
    memcpy(dst, m->p + m->pos, (size_t)n);
    m->pos += n;
    return n;
}
static sf_count_t mf_write(const void *src, sf_count_t n, void *u) { return 0; }
static sf_count_t mf_tell(void *u) { return ((memfile *)u)->pos; }

/* ---- decode + downmix + resample ------------------------------------------- */

#define BLOCK_FRAMES 4096

typedef struct outbuf {
    float *p;
    size_t n, cap, limit;   /* limit: most samples allowed (max_seconds at 16 kHz) */
} outbuf;

/* Room for `more` samples; -1 past the limit or out of memory. */
static int out_reserve(outbuf *o, size_t more) {
    if (o->n + more <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 16384;
    while (cap < o->n + more) cap *= 2;
    if (cap > o->limit + 2 * (size_t)BLOCK_FRAMES * 64) cap = o->limit + 2 * (size_t)BLOCK_FRAMES * 64;
    if (cap < o->n + more) return -1;
    float *p = realloc(o->p, cap * sizeof(float));
    if (!p) return -1;
    o->p = p;
    o->cap = cap;
    return 0;
}

static int decode(SNDFILE *sf, const SF_INFO *info, const char *name, double max_s, float **pcm, size_t *n,
                  g4_error *err) {
    if (max_s <= 0) max_s = G4_AUDIO_MAX_SECONDS_DEFAULT;
    int ch = info->channels, rate = info->samplerate;
    if (ch < 1 || ch > G4_AUDIO_MAX_CHANNELS)
        return g4_seterr(err, "%s: %d audio channels; expected 1 to %d", name, ch, G4_AUDIO_MAX_CHANNELS);
    if (rate < G4_AUDIO_MIN_RATE || rate > G4_AUDIO_MAX_RATE)
        return g4_seterr(err, "%s: sample rate %d Hz; expected %d to %d Hz", name, rate, G4_AUDIO_MIN_RATE,
                         G4_AUDIO_MAX_RATE);
    /* Refuse long clips from the header, before any decoding work. Streams
     * that do not know their length say SF_COUNT_MAX or 0 and are checked
     * as they are read. */
    if (info->frames > 0 && info->frames != SF_COUNT_MAX && (double)info->frames / rate > max_s)
        return g4_seterr(err, "%s: %.1f s of audio; the limit is %.0f s", name, (double)info->frames / rate,
                         max_s);
    double ratio = (double)G4_AUDIO_RATE / rate;
    size_t in_limit = (size_t)(max_s * rate) + 1;

    soxr_t sx = NULL;
    if (rate != G4_AUDIO_RATE) {
        /* SOXR_HQ (20-bit precision, linear phase) is librosa's default
         * "soxr_hq", the resampling of transformers' librosa path; its error
         * on an 8 kHz source is ~2e-7 (test_audio_media) */
        soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
        soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
        soxr_error_t e = NULL;
        sx = soxr_create(rate, G4_AUDIO_RATE, 1, &e, &io, &q, NULL);
        if (!sx || e) {
            if (sx) soxr_delete(sx);
            return g4_seterr(err, "%s: cannot resample %d Hz to %d Hz: %s", name, rate, G4_AUDIO_RATE,
                             e ? e : "soxr_create failed");
        }
    }
    float *blk = malloc((size_t)BLOCK_FRAMES * ch * sizeof(float));
    float *mono = malloc((size_t)BLOCK_FRAMES * sizeof(float));
    outbuf o = { NULL, 0, 0, (size_t)(max_s * G4_AUDIO_RATE) + 1 };
    size_t in_total = 0;
    int rc = -1;
    if (!blk || !mono) { g4_seterr(err, "%s: out of memory", name); goto done; }
    for (;;) {
        sf_count_t got = sf_readf_float(sf, blk, BLOCK_FRAMES);
        if (got < 0 || got > BLOCK_FRAMES) got = 0;
        if (got == 0) break;
        in_total += (size_t)got;
        if (in_total > in_limit) {
            g4_seterr(err, "%s: more than %.0f s of audio (the limit)", name, max_s);
            goto done;
        }
        /* the mean of the channels (librosa.to_mono), summed in channel order */
        for (sf_count_t i = 0; i < got; i++) {
            float s = 0;
            for (int c = 0; c < ch; c++) s += blk[i * ch + c];
            mono[i] = ch == 1 ? s : s / (float)ch;
            if (!isfinite(mono[i])) mono[i] = 0;   /* a float WAV may hold NaN/inf */
        }
        if (!sx) {
            if (out_reserve(&o, (size_t)got)) { g4_seterr(err, "%s: out of memory", name); goto done; }
            memcpy(o.p + o.n, mono, (size_t)got * sizeof(float));
            o.n += (size_t)got;
            continue;
        }
        size_t off = 0;
        while (off < (size_t)got) {
            size_t room = (size_t)ceil(((size_t)got - off) * ratio) + 1024;
            if (out_reserve(&o, room)) { g4_seterr(err, "%s: out of memory", name); goto done; }
            size_t idone = 0, odone = 0;
            soxr_error_t e = soxr_process(sx, mono + off, (size_t)got - off, &idone, o.p + o.n, room, &odone);
            if (e) { g4_seterr(err, "%s: resampling failed: %s", name, e); goto done; }
            o.n += odone;
            off += idone;
            if (idone == 0 && odone == 0) break;
        }
    }
    if (sf_error(sf) != SF_ERR_NO_ERROR) {
        g4_seterr(err, "%s: decoding failed: %s", name, sf_strerror(sf));
        goto done;
    }
    if (sx) {   /* flush the filter's delay line */
        for (;;) {
            if (out_reserve(&o, 4096)) { g4_seterr(err, "%s: out of memory", name); goto done; }
            size_t odone = 0;
            soxr_error_t e = soxr_process(sx, NULL, 0, NULL, o.p + o.n, 4096, &odone);
            if (e) { g4_seterr(err, "%s: resampling failed: %s", name, e); goto done; }
            o.n += odone;
            if (odone == 0) break;
        }
        /* soxr's output length is round(in * ratio); keep exactly that */
        size_t want = (size_t)llround((double)in_total * ratio);
        if (o.n > want) o.n = want;
    }
    if (o.n == 0) { g4_seterr(err, "%s: the file holds no audio samples", name); goto done; }
    *pcm = o.p;
    *n = o.n;
    o.p = NULL;
    rc = 0;
done:
    if (sx) soxr_delete(sx);
    free(blk);
    free(mono);
    free(o.p);
    return rc;
}

int g4_audio_load_file(const char *path, double max_seconds, float **pcm, size_t *n, g4_error *err) {
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) return g4_seterr(err, "%s: not a readable audio file: %s", path, sf_strerror(NULL));
    int rc = decode(sf, &info, path, max_seconds, pcm, n, err);
    sf_close(sf);
    return rc;
}

int g4_audio_load_mem(const void *buf, size_t size, const char *name, double max_seconds, float **pcm,
                      size_t *n, g4_error *err) {
    if (!name) name = "<audio>";
    if (!buf || size == 0) return g4_seterr(err, "%s: empty audio file", name);
    memfile m = { buf, (sf_count_t)size, 0 };
    SF_VIRTUAL_IO vio = { mf_len, mf_seek, mf_read, mf_write, mf_tell };
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &info, &m);
    if (!sf) return g4_seterr(err, "%s: not a readable audio file: %s", name, sf_strerror(NULL));
    int rc = decode(sf, &info, name, max_seconds, pcm, n, err);
    sf_close(sf);
    return rc;
}
