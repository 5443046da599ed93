/* arm64 SIMD kernels: placeholder until the NEON kernels land. */
#include "tensor/quant_simd.h"

void g4_quant_arm_fill(int type, int level, g4_type_traits *tr) {
    (void)type; (void)level; (void)tr;
}
