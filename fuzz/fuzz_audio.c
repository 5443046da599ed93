/* libFuzzer target: audio files (media/audio.c: libsndfile + libsoxr behind
 * our checks) and the log-mel features of whatever decodes.
 * Build: make fuzz; run: build-fuzz/fuzz_audio -max_total_time=60 corpus/
 * The limit is 5 s of audio here so one input stays a few milliseconds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "encoder/audio.h"
#include "media/audio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g4_error e;
    float *pcm = NULL, *mel = NULL;
    size_t n = 0;
    if (g4_audio_load_mem(data, size, "fuzz", 5.0, &pcm, &n, &e) == 0) {
        int T = 0;
        if (g4_audio_features(pcm, n, &mel, &T, &e) == 0) free(mel);
        free(pcm);
    }
    return 0;
}
