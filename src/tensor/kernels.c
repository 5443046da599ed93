/* The kernel registry (see kernels.h): per type, the facts (types.c), then
 * the reference kernels (quant_ref.c), then the SIMD variants of the CPU
 * level in use (the ISA files, quant_isa.h). The generic gemm below is the
 * fallback block kernel: a loop over the reference vec_dot of the same type. */
#include "tensor/kernels.h"

#include <pthread.h>

#include "tensor/cpu.h"
#include "tensor/quant_isa.h"
#include "tensor/quant_ref.h"

/* Reference vec_dot per type, recorded at fill time (before any override) so
 * the generic gemm of a type always calls the reference kernel. Written only
 * inside the fill (pthread_once below) or by single-threaded tests. */
static g4_vec_dot_fn REF_VD[G4_TYPE_COUNT];

static inline void gemm_loop(g4_vec_dot_fn vd, int64_t n, int nr, int nc, const void *w, size_t w_stride,
                             const void *xq, size_t x_stride, float *y, size_t y_stride) {
    const char *wp = w, *xp = xq;
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++)
            y[(size_t)c * y_stride + (size_t)r] = vd(wp + (size_t)r * w_stride, xp + (size_t)c * x_stride, n);
}

#define GENERIC(T)                                                                            \
    static void gemm_generic_##T(int64_t n, int nr, int nc, const void *w, size_t ws,         \
                                 const void *xq, size_t xs, float *y, size_t ys) {            \
        gemm_loop(REF_VD[T], n, nr, nc, w, ws, xq, xs, y, ys);                                \
    }
GENERIC(0) GENERIC(1) GENERIC(2) GENERIC(3) GENERIC(6) GENERIC(7) GENERIC(8) GENERIC(9)
GENERIC(10) GENERIC(11) GENERIC(12) GENERIC(13) GENERIC(14) GENERIC(15) GENERIC(20) GENERIC(23)
GENERIC(30)
#undef GENERIC

static g4_gemm_fn generic_for(int type) {
    switch (type) {
#define G(T) case T: return gemm_generic_##T;
    G(0) G(1) G(2) G(3) G(6) G(7) G(8) G(9) G(10) G(11) G(12) G(13) G(14) G(15) G(20) G(23) G(30)
#undef G
    default: return NULL;
    }
}

/* The ISA fills in override order: the AVX-512 zmm kernels replace the
 * 256-bit ones of the same types. Each ignores levels it does not have. */
static void (*const ISA_FILLS[])(int type, int level, g4_type_traits *tr) = {
    g4_quant_x86_fill,
    g4_quant_x86_legacy_fill,
    g4_quant_avx512_k_fill,
    g4_quant_avx512_q_fill,
    g4_quant_arm_fill,
};

int g4_kernels_for_level(int type, int level, g4_type_traits *out) {
    const g4_type_traits *facts = g4_type_facts(type);
    if (!facts || !out) return -1;
    *out = *facts;
    g4_quant_ref_fill(type, out);
    if (out->vec_dot && !REF_VD[type]) REF_VD[type] = out->vec_dot;
    if (out->vec_dot) out->gemm = generic_for(type);
    if (!g4_cpu_level_supported(level)) return -1;
    for (size_t i = 0; i < sizeof ISA_FILLS / sizeof ISA_FILLS[0]; i++) ISA_FILLS[i](type, level, out);
    return 0;
}

static g4_type_traits TABLE[G4_TYPE_COUNT];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/* Kernel pointers are chosen once per process and never change afterwards,
 * so the table is read-only for every caller. */
static void fill(void) {
    const int level = g4_cpu_level();
    for (int t = 0; t < G4_TYPE_COUNT; t++) (void)g4_kernels_for_level(t, level, &TABLE[t]);
}

const g4_type_traits *g4_type_info(int type) {
    if (!g4_type_facts(type)) return NULL;
    pthread_once(&table_once, fill);
    return &TABLE[type];
}
