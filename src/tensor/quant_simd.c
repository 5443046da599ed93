/* Kernel selection: reference kernels first (quant_ref.c), then the SIMD
 * variants of the CPU level in use. The generic gemm below is the fallback
 * block kernel: a loop over the reference vec_dot of the same type. */
#include "tensor/quant_simd.h"

#include "tensor/cpu.h"

/* Reference vec_dot per type, recorded at fill time (before any override) so
 * the generic gemm of a type always calls the reference kernel. Written only
 * inside the fill (pthread_once in types.c) or by single-threaded tests. */
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

int g4_quant_simd_fill_level(int type, int level, g4_type_traits *tr) {
    if (type < 0 || type >= G4_TYPE_COUNT || !tr) return -1;
    if (tr->vec_dot && !REF_VD[type]) REF_VD[type] = tr->vec_dot;
    if (!tr->gemm && tr->vec_dot) tr->gemm = generic_for(type);
    if (!g4_cpu_level_supported(level)) return -1;
    g4_quant_x86_fill(type, level, tr);
    g4_quant_arm_fill(type, level, tr);
    return 0;
}

void g4_quant_simd_fill(int type, g4_type_traits *tr) {
    (void)g4_quant_simd_fill_level(type, g4_cpu_level(), tr);
}
