/* Media options of the commands that run a model (--image/--audio/--video,
 * --mmproj, --image-tokens) and filling a prompt's placeholder runs. */
#ifndef G4_CLI_MEDIA_H
#define G4_CLI_MEDIA_H

#include "gemma4c.h"

#define CLI_MAX_MEDIA 64

typedef struct media_opts {
    const char *mmproj;
    int image_tokens;                /* 0: the processor's default */
    int video_tokens, video_frames;  /* 0: 70 per frame, 32 frames */
    int n;
    int kind[CLI_MAX_MEDIA];         /* enum gemma4c_media_kind */
    const char *path[CLI_MAX_MEDIA];
} media_opts;

extern const char *MEDIA_HELP;

/* --image F, --audio F, --video F (repeatable, kept in order), --mmproj F,
 * --image-tokens N. Same contract as common_opt: 1 consumed, 0 not ours, -1. */
int media_opt(media_opts *mo, int argc, char **argv, int *i);

/* The media of a prompt: loaded and encoded, in order. */
typedef struct media_set {
    gemma4c_mmproj *mp;
    int n;
    gemma4c_media *it[CLI_MAX_MEDIA];
} media_set;

/* Open the mmproj (given or beside the model) and load + encode every item.
 * Prints the error and returns -1 on failure. */
int media_load(media_set *ms, const media_opts *mo, gemma4c_model *m, int n_threads, int exact);
void media_set_free(media_set *ms);

/* For ids[0..n): find the runs of placeholder ids (image / audio / video
 * soft ids), match them in order with the items, and build the batch rows:
 * *embd [n][n_embd] (malloc'd), *has [n], *run [n] (or NULL when the model's
 * image attention is causal). A run whose length differs from its item's
 * token count, or a count mismatch, is an error naming both numbers. */
int media_fill(const media_set *ms, gemma4c_model *m, const int32_t *ids, int n, float **embd, uint8_t **has,
               int32_t **run);

#endif
