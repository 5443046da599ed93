/* Image files -> RGB u8 pixels, decoded the way the reference (PIL, as
 * transformers' load_image + convert("RGB") uses it) does:
 *   - alpha is dropped, not composited (RGBA, LA, palette + tRNS);
 *   - palette and greyscale are expanded to RGB; 16-bit samples keep their
 *     high byte;
 *   - a JPEG's EXIF orientation is applied (PIL exif_transpose, as
 *     transformers' load_image); a PNG's eXIf is not (the reference data and
 *     llama.cpp keep PNG pixels as stored);
 *   - GIF: the first frame on the logical screen (background elsewhere).
 * Formats by content, not by name: PNG (libspng), JPEG (libjpeg-turbo), WebP
 * (libwebp), GIF (giflib), BMP (own parser: uncompressed 1/4/8/16/24/32-bit
 * and bitfields; RLE is refused).
 *
 * Every size is checked from the header before anything is allocated: at
 * most G4_IMAGE_MAX_SIDE pixels a side and G4_IMAGE_MAX_PIXELS in all
 * (a 100000 x 100000 header is refused with an error that says so). */
#ifndef G4_MEDIA_IMAGE_H
#define G4_MEDIA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define G4_IMAGE_MAX_SIDE 32768
#define G4_IMAGE_MAX_PIXELS (64u << 20)   /* 64 Mpx: 192 MiB of RGB */
#define G4_IMAGE_MAX_FILE (512u << 20)

typedef struct g4_image {
    int w, h;
    uint8_t *rgb;      /* [h][w][3], malloc'd */
} g4_image;

/* Decode a file in memory; name is for messages. 0, or -1 + err (naming
 * the file and what was wrong). */
int g4_image_decode(const void *buf, size_t n, const char *name, g4_image *out, g4_error *err);
/* Read and decode a file. */
int g4_image_load(const char *path, g4_image *out, g4_error *err);
void g4_image_free(g4_image *im);

/* "png", "jpeg", "webp", "gif", "bmp" or NULL from the first bytes. */
const char *g4_image_sniff(const void *buf, size_t n);

/* Apply an EXIF orientation (1..8) in place (may swap w and h). 0 or -1. */
int g4_image_orient(g4_image *im, int orientation);

#endif
