#include "tensor/act.h"

#include <pthread.h>
#include <stdint.h>

#include "tensor/types.h"

uint16_t g4_gelu_f16[1 << 16];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

/* Filled once per process, read-only afterwards. The f32 formula is ggml's
 * arrangement (x * (1 + a*x*x)), which differs from g4_gelu's in the last bit. */
static void gelu_init(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) {
        float x = g4_fp16_to_fp32((uint16_t)i);
        float y = 0.5f * x * (1.0f + tanhf(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
        g4_gelu_f16[i] = g4_fp32_to_fp16(y);
    }
}

void g4_act_init(void) { pthread_once(&gelu_once, gelu_init); }
