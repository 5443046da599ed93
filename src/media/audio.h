/* Audio files -> 16 kHz mono f32 samples, the input of the Gemma 4 audio
 * feature extractor (encoder/mel.c).
 *
 * Decoding is libsndfile's (WAV 8/16/24/32-bit PCM and float, FLAC,
 * Ogg/Vorbis, Opus, MP3 and the other containers it knows), resampling
 * libsoxr's, as transformers' load_audio does when it goes through
 * librosa: samples are libsndfile's normalized floats (PCM / 2^(bits-1)),
 * the channels are averaged into one (librosa's to_mono) before resampling
 * with soxr "HQ" (librosa's default). Its torchcodec path (FFmpeg) mixes
 * and resamples the same way up to the resampler's filter.
 *
 * Bounds: the file is read in blocks and resampled as a stream, so memory is
 * the output (4 bytes per 16 kHz sample) plus a fixed amount; a clip longer
 * than max_seconds is refused from its header before anything is decoded
 * (and again while decoding, for streams whose header does not say). */
#ifndef G4_MEDIA_AUDIO_H
#define G4_MEDIA_AUDIO_H

#include <stddef.h>

#include "util/error.h"

#define G4_AUDIO_RATE 16000           /* what the Gemma 4 feature extractor takes */
#define G4_AUDIO_MAX_SECONDS_DEFAULT 600.0  /* 10 min = 15,000 soft tokens */
#define G4_AUDIO_MAX_CHANNELS 16
#define G4_AUDIO_MIN_RATE 1000
#define G4_AUDIO_MAX_RATE 768000

/* Decode `path` to *pcm (malloc'd, *n samples at 16 kHz, mono). max_seconds
 * <= 0 means G4_AUDIO_MAX_SECONDS_DEFAULT. Returns 0, or -1 with err naming
 * the file and what was wrong (not audio, truncated, no samples, too long,
 * a channel count or rate outside the limits above). */
int g4_audio_load_file(const char *path, double max_seconds, float **pcm, size_t *n, g4_error *err);

/* The same from a file image in memory (`name` for messages). */
int g4_audio_load_mem(const void *buf, size_t size, const char *name, double max_seconds, float **pcm,
                      size_t *n, g4_error *err);

#endif
