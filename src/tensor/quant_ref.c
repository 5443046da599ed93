/* Reference kernels: placeholder until the per-type kernels land. */
#include "tensor/quant_ref.h"

void g4_quant_ref_fill(int type, g4_type_traits *tr) {
    (void)type; (void)tr;
}
