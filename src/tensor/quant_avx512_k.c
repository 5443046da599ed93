/* Placeholder: filled in by the 512-bit kernel work (see quant_simd.h). */
#include "tensor/quant_simd.h"

void g4_quant_avx512_k_fill(int type, g4_type_traits *tr) { (void)type; (void)tr; }
