/* Video files -> sampled RGB frames (libavformat / libavcodec / libswscale),
 * for the vision tower's video path (shared/docs/gemma4-multimodal.md §4).
 *
 * Sampling as transformers' Gemma4VideoProcessor: max_frames (32) frames
 * uniformly, idx_j = floor(j * total / max_frames); a source with fewer
 * frames keeps all of them (transformers refuses those: here short clips,
 * animated GIFs and small folders work). Timestamps t_j = idx_j / fps.
 *
 * Sources: any container/codec FFmpeg decodes (an animated GIF included), or
 * a folder of image files taken in name order at 24 frames per second (the
 * processor's fallback rate when a video has none). Each frame's size is
 * checked against the image limits before its pixels are converted. */
#ifndef G4_MEDIA_VIDEO_H
#define G4_MEDIA_VIDEO_H

#include "media/image.h"
#include "util/error.h"

#define G4_VIDEO_MAX_DECODED 1000000   /* frames read from one source at most */

typedef struct g4_video {
    int n;              /* frames kept */
    g4_image *frames;   /* [n], RGB */
    double *t;          /* [n] seconds */
    int total;          /* frames in the source */
    double fps;
} g4_video;

int g4_video_load(const char *path, int max_frames, g4_video *out, g4_error *err);
void g4_video_free(g4_video *v);

#endif
