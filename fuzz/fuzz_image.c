/* libFuzzer target: the image decoders (PNG, JPEG, WebP, GIF, BMP by
 * content) and, for small results, the transformers resize.
 * Build: make fuzz; run: build-fuzz/fuzz_image -max_total_time=60 corpus/ */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "encoder/vision.h"
#include "media/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g4_error e;
    g4_image im;
    if (g4_image_decode(data, size, "fuzz", &im, &e)) return 0;
    /* every pixel is readable */
    unsigned acc = 0;
    for (size_t i = 0; i < (size_t)im.w * im.h * 3; i++) acc += im.rgb[i];
    (void)acc;
    int tw, th;
    if ((size_t)im.w * im.h <= 4096 && g4_vision_target_size(im.w, im.h, 70, &tw, &th, &e) == 0) {
        uint8_t *r = malloc((size_t)tw * th * 3);
        if (r) g4_vision_resize_bicubic(im.rgb, im.w, im.h, r, tw, th);
        free(r);
    }
    g4_image_free(&im);
    return 0;
}
