/* Reference (portable C) kernels for every type we compute with. */
#ifndef G4_QUANT_REF_H
#define G4_QUANT_REF_H

#include "tensor/types.h"

/* Fill the kernel fields of `tr` for type `type` (leave NULL where none). */
void g4_quant_ref_fill(int type, g4_type_traits *tr);

#endif
