/* Run-time CPU feature detection and the SIMD level the kernels use.
 *
 * One binary runs everywhere: SIMD kernels are compiled per function with
 * target attributes and chosen once per process from these features.
 * GEMMA4C_CPU=ref|avx2|avx512|neon|dotprod forces a level (never above what
 * the CPU has: an unsupported request falls back to the best supported level
 * below it), e.g. to test or benchmark the reference kernels. */
#ifndef G4_CPU_H
#define G4_CPU_H

#include <stdbool.h>

typedef struct g4_cpu_features {
    /* x86-64 (OS support for the register state checked with xgetbv) */
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16, avxvnni;
    /* arm64 */
    bool asimd, dotprod, i8mm;
} g4_cpu_features;

/* Kernel levels, ordered within each architecture. */
enum g4_cpu_level {
    G4_CPU_REF = 0,
    G4_CPU_AVX2 = 1,     /* AVX2 + FMA + F16C */
    G4_CPU_AVX512 = 2,   /* AVX-512 F/BW/VL + VNNI (256-bit vectors, 32 registers) */
    G4_CPU_NEON = 3,     /* ARMv8 Advanced SIMD */
    G4_CPU_DOTPROD = 4,  /* + SDOT/UDOT */
};

/* Features of this CPU (detected once, thread-safe). */
const g4_cpu_features *g4_cpu_features_get(void);
/* Best level this CPU supports, ignoring GEMMA4C_CPU. */
int g4_cpu_best_level(void);
/* Whether this CPU can run kernels of `level`. */
bool g4_cpu_level_supported(int level);
/* Level in use: the best one, or GEMMA4C_CPU's choice (read once). */
int g4_cpu_level(void);
/* "ref", "avx2", "avx512", "neon", "dotprod"; "?" otherwise. */
const char *g4_cpu_level_name(int level);
/* -1 if unknown. */
int g4_cpu_level_from_name(const char *name);
/* One line describing the features, for logs and benchmarks. */
void g4_cpu_describe(char *buf, unsigned len);

#endif
