/* Placeholder: filled in by the Q5_0/Q5_1/Q4_1 kernel work (see quant_simd.h). */
#include "tensor/quant_simd.h"

void g4_quant_x86_legacy_fill(int type, int level, g4_type_traits *tr) { (void)type; (void)level; (void)tr; }
