/* Audio files (media/audio.c): every format and rate we take decodes to the
 * same 16 kHz mono signal, and hostile files give a clear error or a
 * bounded result.
 *
 * The sound is generated: two tones per channel, different on the left and
 * the right (so the downmix is checked), made by ffmpeg's aevalsrc directly
 * at each rate and written by ffmpeg's encoders (an independent writer for
 * every format). The reference is the exact signal, (L + R) / 2 evaluated
 * at k / 16000 s. Edges (the first and last 25 ms, where the resampler
 * sees the start and end of the signal) are left out of the comparison.
 * Needs ffmpeg (scripts/setup.sh installs it); without it the format checks
 * fail, they do not skip. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "encoder/audio.h"
#include "harness.h"
#include "media/audio.h"

#define DUR 1.0   /* seconds */

static char g_dir[64];

/* L = 0.3 sin(2 pi 440 t) + 0.2 sin(2 pi 1250 t), R = 0.25 sin(2 pi 700 t) + 0.15 sin(2 pi 2900 t):
 * all under the 3.6 kHz passband edge of an 8 kHz source */
static double ref_mono(double t) {
    double L = 0.3 * sin(2 * M_PI * 440 * t) + 0.2 * sin(2 * M_PI * 1250 * t);
    double R = 0.25 * sin(2 * M_PI * 700 * t) + 0.15 * sin(2 * M_PI * 2900 * t);
    return 0.5 * (L + R);
}

typedef struct fmt {
    const char *name, *ext, *codec;
    double max_err;     /* bound on |decoded - reference| away from the edges */
    double min_snr_db;  /* bound on the signal-to-error ratio */
} fmt;

/* Bounds: about twice the errors measured (1 s, these four rates): the PCM
 * widths are their quantization step (u8 4.6e-3, s16 1.7e-5) or the
 * resampler's own error (~2.3e-7, soxr HQ); the lossy codecs are bounded
 * by their error and SNR (vorbis q6 1.2e-2 / 34 dB, opus 96k 6.4e-3 /
 * 40 dB, mp3 128k 2.2e-2 / 26 dB). */
static const fmt fmts[] = {
    { "wav-u8", "wav", "pcm_u8", 0.01, 35 },
    { "wav-s16", "wav", "pcm_s16le", 5e-5, 80 },
    { "wav-s24", "wav", "pcm_s24le", 1e-6, 115 },
    { "wav-s32", "wav", "pcm_s32le", 1e-6, 115 },
    { "wav-f32", "wav", "pcm_f32le", 1e-6, 115 },
    { "flac", "flac", "flac", 1e-6, 115 },
    { "vorbis", "ogg", "libvorbis", 0.03, 30 },
    { "opus", "opus", "libopus", 0.015, 35 },
    { "mp3", "mp3", "libmp3lame", 0.04, 22 },
};
#define N_FMTS (int)(sizeof fmts / sizeof fmts[0])
static const int rates[] = { 8000, 22050, 44100, 48000 };
#define N_RATES 4

static void file_name(char *out, size_t n, const fmt *f, int rate) {
    snprintf(out, n, "%s/%s-%d.%s", g_dir, f->name, rate, f->ext);
}

/* Every format at one rate from one ffmpeg run (one output per format). */
static int make_files(int rate) {
    char cmd[4096], path[256];
    int k = snprintf(cmd, sizeof cmd,
                     "ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i "
                     "'aevalsrc=0.3*sin(2*PI*440*t)+0.2*sin(2*PI*1250*t)|0.25*sin(2*PI*700*t)+0.15*sin(2*PI*2900*t)"
                     ":s=%d:d=%g'",
                     rate, DUR);
    for (int i = 0; i < N_FMTS; i++) {
        const fmt *f = &fmts[i];
        /* libopus takes 8/12/16/24/48 kHz: ffmpeg resamples other rates for
         * it (the file still holds the same sound) */
        const char *extra = !strcmp(f->codec, "libopus") ? "-b:a 96k" : !strcmp(f->codec, "libmp3lame") ? "-b:a 128k" :
                            !strcmp(f->codec, "libvorbis") ? "-q:a 6" : "";
        file_name(path, sizeof path, f, rate);
        k += snprintf(cmd + k, sizeof cmd - (size_t)k, " -map 0 -c:a %s %s %s", f->codec, extra, path);
    }
    return system(cmd);
}

static char *read_all(const char *path, size_t *n) { return th_read_file(path, n); }

TEST(formats_and_rates) {
    for (int r = 0; r < N_RATES; r++) {
        int rc = make_files(rates[r]);
        CHECKF(rc == 0, "ffmpeg could not write the %d Hz files (exit %d)", rates[r], rc);
        if (rc) continue;
        for (int i = 0; i < N_FMTS; i++) {
            const fmt *f = &fmts[i];
            char path[256];
            file_name(path, sizeof path, f, rates[r]);
            float *pcm = NULL;
            size_t n = 0;
            g4_error err = { { 0 } };
            CHECKF(g4_audio_load_file(path, 0, &pcm, &n, &err) == 0, "%s: %s", path, err.msg);
            if (!pcm) continue;
            /* lossy codecs may pad the end (a frame's worth); never shorter */
            size_t want = (size_t)(DUR * 16000);
            bool lossy = f->min_snr_db < 50;
            CHECKF(n >= want - (lossy ? 160 : 1) && n <= want + (lossy ? 2000 : 1), "%s: %zu samples, expected %zu",
                   path, n, want);
            double m = 0, se = 0, ss = 0;
            size_t edge = 400;
            for (size_t k = edge; k + edge < want && k < n; k++) {
                double ref = ref_mono((double)k / 16000), d = fabs(pcm[k] - ref);
                if (d > m) m = d;
                se += d * d;
                ss += ref * ref;
            }
            double snr = 10 * log10(ss / (se > 0 ? se : 1e-30));
            printf("  %-8s %5d Hz: %zu samples, max |err| %.2e, SNR %.1f dB\n", f->name, rates[r], n, m, snr);
            CHECKF(m <= f->max_err && snr >= f->min_snr_db, "%s: max err %g (bound %g), SNR %.1f dB (bound %g)",
                   path, m, f->max_err, snr, f->min_snr_db);
            /* the same bytes from memory give the same samples */
            size_t sz = 0;
            char *buf = read_all(path, &sz);
            float *p2 = NULL;
            size_t n2 = 0;
            CHECKF(buf && g4_audio_load_mem(buf, sz, path, 0, &p2, &n2, &err) == 0 && n2 == n &&
                       !memcmp(p2, pcm, n * sizeof(float)), "%s: from memory differs: %s", path, err.msg);
            free(buf); free(p2); free(pcm);
        }
    }
}

/* ---- hostile files ------------------------------------------------------------ */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A load that must end in an error or a bounded result, quickly. */
static void check_bounded(const void *buf, size_t sz, const char *what, size_t max_n) {
    float *pcm = NULL;
    size_t n = 0;
    g4_error err = { { 0 } };
    double t0 = now();
    int rc = g4_audio_load_mem(buf, sz, what, 0, &pcm, &n, &err);
    double dt = now() - t0;
    if (rc == 0) {
        CHECKF(pcm && n > 0 && n <= max_n, "%s: %zu samples (bound %zu)", what, n, max_n);
        /* and the features of what came out are computable */
        float *mel = NULL;
        int T = 0;
        if (g4_audio_features(pcm, n, &mel, &T, &err) == 0) free(mel);
    } else {
        CHECKF(pcm == NULL && err.msg[0] && strstr(err.msg, what), "%s: error without a message naming it: '%s'",
               what, err.msg);
    }
    CHECKF(dt < 2.0, "%s: took %.2f s", what, dt);
    free(pcm);
}

TEST(truncated_and_corrupt) {
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int n_err = 0, n_ok = 0;
    for (int i = 0; i < N_FMTS; i++) {
        char path[256];
        file_name(path, sizeof path, &fmts[i], 44100);
        size_t sz = 0;
        unsigned char *buf = (unsigned char *)read_all(path, &sz);
        CHECKF(buf != NULL, "%s missing (formats_and_rates makes it)", path);
        if (!buf) continue;
        unsigned char *cp = malloc(sz);
        size_t cuts[] = { 1, 4, 12, 44, 58, 100, 300, sz / 3, sz / 2, sz - 1 };
        for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
            if (cuts[c] >= sz) continue;
            char what[300];
            snprintf(what, sizeof what, "%s[truncated to %zu]", fmts[i].name, cuts[c]);
            memcpy(cp, buf, cuts[c]);
            float *pcm = NULL;
            size_t n = 0;
            g4_error err = { { 0 } };
            int rc = g4_audio_load_mem(cp, cuts[c], what, 0, &pcm, &n, &err);
            rc ? n_err++ : n_ok++;
            free(pcm);
            check_bounded(cp, cuts[c], what, 20000);
        }
        for (int k = 0; k < 40; k++) {
            memcpy(cp, buf, sz);
            /* flip 1-8 random bytes, biased to the headers */
            int flips = 1 + k % 8;
            for (int j = 0; j < flips; j++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                size_t at = (size_t)(seed >> 33) % (k % 2 ? sz : (sz < 256 ? sz : 256));
                cp[at] ^= (unsigned char)(1 + (seed >> 20) % 255);
            }
            char what[300];
            snprintf(what, sizeof what, "%s[corrupt %d]", fmts[i].name, k);
            /* a flipped size field may claim more audio: at most the limit */
            check_bounded(cp, sz, what, (size_t)(G4_AUDIO_MAX_SECONDS_DEFAULT * 16000) + 16);
        }
        free(cp);
        free(buf);
    }
    printf("  truncations: %d errors, %d partial decodes\n", n_err, n_ok);
}

/* A canonical 44-byte WAV header + data. */
static size_t wav(unsigned char *b, int ch, int rate, int bits, uint32_t data_bytes, size_t actual) {
    uint32_t v;
    memcpy(b, "RIFF", 4);
    v = 36 + data_bytes; memcpy(b + 4, &v, 4);
    memcpy(b + 8, "WAVEfmt ", 8);
    v = 16; memcpy(b + 16, &v, 4);
    uint16_t s = 1; memcpy(b + 20, &s, 2);
    s = (uint16_t)ch; memcpy(b + 22, &s, 2);
    v = (uint32_t)rate; memcpy(b + 24, &v, 4);
    v = (uint32_t)(rate * ch * bits / 8); memcpy(b + 28, &v, 4);
    s = (uint16_t)(ch * bits / 8); memcpy(b + 32, &s, 2);
    s = (uint16_t)bits; memcpy(b + 34, &s, 2);
    memcpy(b + 36, "data", 4);
    memcpy(b + 40, &data_bytes, 4);
    memset(b + 44, 0, actual);
    return 44 + actual;
}

static void expect_error(const void *buf, size_t sz, const char *what, const char *needle) {
    float *pcm = NULL;
    size_t n = 0;
    g4_error err = { { 0 } };
    int rc = g4_audio_load_mem(buf, sz, what, 0, &pcm, &n, &err);
    CHECKF(rc == -1 && pcm == NULL && strstr(err.msg, what) && strstr(err.msg, needle), "%s: rc %d, '%s'", what, rc,
           err.msg);
    free(pcm);
}

TEST(empty_and_wrong_shapes) {
    static unsigned char b[44 + 64000];
    expect_error(b, 0, "empty", "empty");
    expect_error("not audio at all, just text", 27, "text", "not a readable audio file");
    size_t n = wav(b, 1, 16000, 16, 0, 0);
    expect_error(b, n, "no-samples", "no audio samples");
    n = wav(b, 20, 16000, 16, 20 * 2 * 100, 20 * 2 * 100);
    expect_error(b, n, "twenty-channels", "channels");
    n = wav(b, 1, 200, 16, 400, 400);
    expect_error(b, n, "rate-200", "sample rate");
    n = wav(b, 1, 0, 16, 400, 400);
    check_bounded(b, n, "rate-0", 0);   /* refused (libsndfile or us): a bound of 0 samples */
    n = wav(b, 0, 16000, 16, 400, 400);
    check_bounded(b, n, "zero-channels", 0);
    /* a too-short clip decodes, and the features say it is too short */
    n = wav(b, 1, 16000, 16, 200, 200);
    float *pcm = NULL, *mel = NULL;
    size_t np = 0;
    int T = 0;
    g4_error err = { { 0 } };
    CHECK(g4_audio_load_mem(b, n, "100-samples", 0, &pcm, &np, &err) == 0 && np == 100);
    CHECK(pcm && g4_audio_features(pcm, np, &mel, &T, &err) == -1 && strstr(err.msg, "too short"));
    free(pcm);
}

/* Ten hours: refused from the header before any decoding. */
TEST(ten_hours) {
    /* a FLAC whose STREAMINFO says 10 h (36-bit total_samples at byte 8+13
     * of the block after "fLaC"); the frames are the 1 s file's */
    char path[256];
    file_name(path, sizeof path, &fmts[5], 48000);
    size_t sz = 0;
    unsigned char *buf = (unsigned char *)read_all(path, &sz);
    CHECK(buf && sz > 42 && !memcmp(buf, "fLaC", 4));
    if (buf && sz > 42) {
        uint64_t total = 10ull * 3600 * 48000;
        unsigned char *si = buf + 8;   /* STREAMINFO body */
        si[13] = (unsigned char)((si[13] & 0xf0) | ((total >> 32) & 0x0f));
        si[14] = (unsigned char)(total >> 24);
        si[15] = (unsigned char)(total >> 16);
        si[16] = (unsigned char)(total >> 8);
        si[17] = (unsigned char)total;
        double t0 = now();
        expect_error(buf, sz, "ten-hour-flac", "the limit is 600 s");
        CHECK(now() - t0 < 0.5);
    }
    free(buf);
    /* a WAV header claiming 10 h over 64 KB of data: an error, or only what is there */
    static unsigned char b[44 + 65536];
    size_t n = wav(b, 2, 48000, 16, 0xFFFFFFF0u, 65536);
    check_bounded(b, n, "ten-hour-wav", 65536 / 4 / 3 + 16);
    /* and a real 11 minute stream over the limit (silent 8 kHz u8 WAV, 5 MB) is refused */
    size_t big = 11 * 60 * 8000;
    unsigned char *w = malloc(44 + big);
    n = wav(w, 1, 8000, 8, (uint32_t)big, big);
    memset(w + 44, 128, big);
    expect_error(w, n, "eleven-minutes", "the limit is 600 s");
    float *pcm = NULL;
    size_t np = 0;
    g4_error err = { { 0 } };
    CHECK(g4_audio_load_mem(w, n, "eleven-minutes", 700, &pcm, &np, &err) == 0 && np == big * 2);
    free(pcm);
    free(w);
}

static void cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (g_dir[0] && system(cmd)) fprintf(stderr, "could not remove %s\n", g_dir);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/g4audXXXXXX", tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    RUN(formats_and_rates);
    RUN(truncated_and_corrupt);
    RUN(empty_and_wrong_shapes);
    RUN(ten_hours);
    cleanup();
    return test_summary();
}
