/* Log-mel features, as transformers' Gemma4AudioFeatureExtractor computes them
 * (shared/docs/gemma4-multimodal.md §5): 160 zeros prepended ("semicausal"),
 * 320-sample frames every 160 samples, periodic Hann(320), 512-point FFT
 * magnitude (not power), 128 HTK mel filters over 0-8 kHz without area
 * normalization, ln(M + 0.001). Not llama.cpp's ln(max(M, 0.001)) (§12.4).
 *
 * Everything is computed in double and rounded to f32 at the end: the
 * reference builds the filterbank and takes the product in float64, and in
 * f32 the near-silent bins (M ~ 1e-3, where the log is steepest) would move
 * by ~1e-4. The FFT is a 512-point radix-2 written here: one fixed size, 40
 * lines, not worth a library. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/audio.h"

#define FRAME 320
#define HOP 160
#define NFFT 512
#define NBIN (NFFT / 2 + 1)
#define NMEL G4_AUDIO_N_MEL
#define MEL_FLOOR 0.001

typedef struct melctx {
    double win[FRAME];
    double cs[NFFT / 2], sn[NFFT / 2];    /* twiddles e^(-2 pi i k / 512) */
    int rev[NFFT];
    /* filter j covers bins [lo[j], hi[j]) with weights w[j][k - lo[j]] */
    int lo[NMEL], hi[NMEL];
    double w[NMEL][NBIN];
} melctx;

static double hz_to_mel(double f) { return 2595.0 * log10(1.0 + f / 700.0); }
static double mel_to_hz(double m) { return 700.0 * (pow(10.0, m / 2595.0) - 1.0); }

static void mel_init(melctx *c) {
    for (int i = 0; i < FRAME; i++) c->win[i] = 0.5 - 0.5 * cos(2.0 * M_PI * i / FRAME);
    for (int k = 0; k < NFFT / 2; k++) {
        c->cs[k] = cos(2.0 * M_PI * k / NFFT);
        c->sn[k] = -sin(2.0 * M_PI * k / NFFT);
    }
    for (int i = 0; i < NFFT; i++) {
        int r = 0;
        for (int b = 0; b < 9; b++) r |= ((i >> b) & 1) << (8 - b);
        c->rev[i] = r;
    }
    /* 130 edges equally spaced in mel, bins at k * 8000 / 256 */
    double e[NMEL + 2], m0 = hz_to_mel(0.0), m1 = hz_to_mel(8000.0);
    for (int j = 0; j < NMEL + 2; j++) e[j] = mel_to_hz(m0 + (m1 - m0) * j / (NMEL + 1));
    for (int j = 0; j < NMEL; j++) {
        c->lo[j] = NBIN;
        c->hi[j] = 0;
        for (int k = 0; k < NBIN; k++) {
            double f = 8000.0 * k / (NBIN - 1);
            double down = (f - e[j]) / (e[j + 1] - e[j]), up = (e[j + 2] - f) / (e[j + 2] - e[j + 1]);
            double v = fmin(down, up);
            c->w[j][k] = v > 0 ? v : 0;
            if (v > 0) {
                if (k < c->lo[j]) c->lo[j] = k;
                c->hi[j] = k + 1;
            }
        }
        if (c->hi[j] == 0) c->lo[j] = 0;   /* filter 0 is empty: its feature is ln(0.001) */
    }
}

/* In-place iterative radix-2 FFT of 512 complex values. */
static void fft512(const melctx *c, double *re, double *im) {
    for (int i = 0; i < NFFT; i++) {
        int r = c->rev[i];
        if (r > i) {
            double t = re[i]; re[i] = re[r]; re[r] = t;
            t = im[i]; im[i] = im[r]; im[r] = t;
        }
    }
    for (int len = 2; len <= NFFT; len <<= 1) {
        int half = len / 2, step = NFFT / len;
        for (int s = 0; s < NFFT; s += len)
            for (int k = 0; k < half; k++) {
                double wr = c->cs[k * step], wi = c->sn[k * step];
                int a = s + k, b = a + half;
                double xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
                re[b] = re[a] - xr; im[b] = im[a] - xi;
                re[a] += xr; im[a] += xi;
            }
    }
}

/* Frames of one piece of n samples (0 when shorter than one frame). */
static int piece_frames(size_t n) { return n + HOP < FRAME + 1 ? 0 : (int)((n + HOP - (FRAME + 1)) / HOP) + 1; }

static void piece_features(const melctx *c, const float *x, size_t n, float *out) {
    int T = piece_frames(n);
    double re[NFFT], im[NFFT], mag[NBIN];
    for (int t = 0; t < T; t++) {
        /* frame t covers x'[160 t, 160 t + 320) of x' = 160 zeros + x */
        long start = (long)t * HOP - HOP;
        for (int i = 0; i < NFFT; i++) {
            long j = start + i;
            re[i] = i < FRAME && j >= 0 && (size_t)j < n ? (double)x[j] * c->win[i] : 0.0;
            im[i] = 0;
        }
        fft512(c, re, im);
        for (int k = 0; k < NBIN; k++) mag[k] = sqrt(re[k] * re[k] + im[k] * im[k]);
        float *o = out + (size_t)t * NMEL;
        for (int j = 0; j < NMEL; j++) {
            double s = 0;
            for (int k = c->lo[j]; k < c->hi[j]; k++) s += mag[k] * c->w[j][k];
            o[j] = (float)log(s + MEL_FLOOR);
        }
    }
}

int g4_audio_features(const float *pcm, size_t n, float **mel, int *n_frames, g4_error *err) {
    *mel = NULL;
    *n_frames = 0;
    if (!pcm || piece_frames(n) == 0)
        return g4_seterr(err, "audio too short: %zu samples at 16 kHz; at least %d (one 20 ms frame) needed", n,
                         FRAME + 1 - HOP);
    /* pieces of 30 s, each framed on its own; the last may be too short for
     * a frame and then gives none */
    size_t total = 0;
    for (size_t at = 0; at < n; at += G4_AUDIO_PIECE_SAMPLES) {
        size_t len = n - at < G4_AUDIO_PIECE_SAMPLES ? n - at : G4_AUDIO_PIECE_SAMPLES;
        total += (size_t)piece_frames(len);
    }
    if (total > (size_t)0x7fffffff / NMEL) return g4_seterr(err, "audio too long: %zu samples", n);
    melctx *c = malloc(sizeof *c);
    float *out = malloc(total * NMEL * sizeof(float));
    if (!c || !out) {
        free(c);
        free(out);
        return g4_seterr(err, "out of memory for %zu frames of audio features", total);
    }
    mel_init(c);
    size_t t = 0;
    for (size_t at = 0; at < n; at += G4_AUDIO_PIECE_SAMPLES) {
        size_t len = n - at < G4_AUDIO_PIECE_SAMPLES ? n - at : G4_AUDIO_PIECE_SAMPLES;
        piece_features(c, pcm + at, len, out + t * NMEL);
        t += (size_t)piece_frames(len);
    }
    free(c);
    *mel = out;
    *n_frames = (int)total;
    return 0;
}
