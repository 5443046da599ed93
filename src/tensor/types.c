/* The ggml type facts: block sizes and byte sizes for every type id a GGUF
 * file may name (so the reader can validate any file). Pure data: the
 * kernels are attached above this, in kernels.c. */
#include "tensor/types.h"

#include <strings.h>

#define QK_K 256

/* designated initializers: the kernel fields start out NULL */
#define TY(n, b, s, q) { .name = n, .blck_size = b, .type_size = s, .is_quantized = q }

static const g4_type_traits TYPES[G4_TYPE_COUNT] = {
    [G4_F32]     = TY("F32", 1, 4, false),
    [G4_F16]     = TY("F16", 1, 2, false),
    [G4_BF16]    = TY("BF16", 1, 2, false),
    [G4_Q4_0]    = TY("Q4_0", 32, 18, true),
    [G4_Q4_1]    = TY("Q4_1", 32, 20, true),
    [G4_Q5_0]    = TY("Q5_0", 32, 22, true),
    [G4_Q5_1]    = TY("Q5_1", 32, 24, true),
    [G4_Q8_0]    = TY("Q8_0", 32, 34, true),
    [G4_Q8_1]    = TY("Q8_1", 32, 36, true),
    [G4_Q2_K]    = TY("Q2_K", QK_K, 84, true),
    [G4_Q3_K]    = TY("Q3_K", QK_K, 110, true),
    [G4_Q4_K]    = TY("Q4_K", QK_K, 144, true),
    [G4_Q5_K]    = TY("Q5_K", QK_K, 176, true),
    [G4_Q6_K]    = TY("Q6_K", QK_K, 210, true),
    [G4_Q8_K]    = TY("Q8_K", QK_K, 292, true),
    [G4_IQ2_XXS] = TY("IQ2_XXS", QK_K, 66, true),
    [G4_IQ2_XS]  = TY("IQ2_XS", QK_K, 74, true),
    [G4_IQ3_XXS] = TY("IQ3_XXS", QK_K, 98, true),
    [G4_IQ1_S]   = TY("IQ1_S", QK_K, 50, true),
    [G4_IQ4_NL]  = TY("IQ4_NL", 32, 18, true),
    [G4_IQ3_S]   = TY("IQ3_S", QK_K, 110, true),
    [G4_IQ2_S]   = TY("IQ2_S", QK_K, 82, true),
    [G4_IQ4_XS]  = TY("IQ4_XS", QK_K, 136, true),
    [G4_I8]      = TY("I8", 1, 1, false),
    [G4_I16]     = TY("I16", 1, 2, false),
    [G4_I32]     = TY("I32", 1, 4, false),
    [G4_I64]     = TY("I64", 1, 8, false),
    [G4_F64]     = TY("F64", 1, 8, false),
    [G4_IQ1_M]   = TY("IQ1_M", QK_K, 56, true),
    [G4_TQ1_0]   = TY("TQ1_0", QK_K, 54, true),
    [G4_TQ2_0]   = TY("TQ2_0", QK_K, 66, true),
    [G4_MXFP4]   = TY("MXFP4", 32, 17, true),
};

const g4_type_traits *g4_type_facts(int type) {
    if (type < 0 || type >= G4_TYPE_COUNT || !TYPES[type].name) return NULL;
    return &TYPES[type];
}

const char *g4_type_name(int type) {
    if (type < 0 || type >= G4_TYPE_COUNT || !TYPES[type].name) return "?";
    return TYPES[type].name;
}

int g4_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < G4_TYPE_COUNT; t++)
        if (TYPES[t].name && strcasecmp(TYPES[t].name, name) == 0) return t;
    return -1;
}

size_t g4_row_size(int type, int64_t n) {
    if (type < 0 || type >= G4_TYPE_COUNT || !TYPES[type].name || n < 0) return 0;
    int64_t b = TYPES[type].blck_size;
    if (n % b) return 0;
    uint64_t blocks = (uint64_t)(n / b);
    if (blocks > (UINT64_MAX / 2) / TYPES[type].type_size) return 0;
    return (size_t)(blocks * TYPES[type].type_size);
}
