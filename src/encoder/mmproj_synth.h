/* A random-weight mmproj GGUF of a released size's vision tower ("tiny",
 * "e2b", "e4b", "26b-a4b", "31b"; matrices in type F32/F16/BF16, default
 * F16) and, for e2b/e4b/tiny, its audio tower, as llama.cpp's converter lays
 * it out. Same seed, same bytes. */
#ifndef G4_ENCODER_MMPROJ_SYNTH_H
#define G4_ENCODER_MMPROJ_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

int g4_mmproj_synth(const char *out, const char *arch, const char *type, uint64_t seed, bool force, g4_error *err);

#endif
