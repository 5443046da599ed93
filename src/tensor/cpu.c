/* CPU feature detection: cpuid + xgetbv on x86-64 (an instruction set is
 * usable only if the OS saves its registers), getauxval(AT_HWCAP) on arm64. */
#include "tensor/cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1UL << 13)
#endif
#endif

static g4_cpu_features FEAT;
static int LEVEL;
static pthread_once_t once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect_x86(g4_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29),
               avx = c & (1u << 28);
    if (!osxsave || !avx) return;
    const unsigned long long xcr0 = xgetbv0();
    const bool ymm_ok = (xcr0 & 6) == 6;          /* SSE + AVX state */
    const bool zmm_ok = (xcr0 & 0xe6) == 0xe6;    /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_ok) return;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    f->avx2 = b & (1u << 5);
    f->fma = fma;
    f->f16c = f16c;
    if (zmm_ok) {
        f->avx512f = b & (1u << 16);
        f->avx512bw = b & (1u << 30);
        f->avx512vl = b & (1u << 31);
        f->avx512vnni = c & (1u << 11);
    }
    unsigned a1, b1, c1, d1;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    (void)b1; (void)c1; (void)d1;
    f->avxvnni = a1 & (1u << 4);
    if (zmm_ok) f->avx512bf16 = a1 & (1u << 5);
}
#endif

static bool supported(const g4_cpu_features *f, int level);

static int best_of(const g4_cpu_features *f) {
#if defined(__x86_64__)
    if (f->avx2 && f->fma && f->f16c) {
        if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni) return G4_CPU_AVX512;
        return G4_CPU_AVX2;
    }
#elif defined(__aarch64__)
    if (f->asimd) return f->dotprod ? G4_CPU_DOTPROD : G4_CPU_NEON;
#endif
    (void)f;
    return G4_CPU_REF;
}

static void detect(void) {
#if defined(__x86_64__)
    detect_x86(&FEAT);
#elif defined(__aarch64__)
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    FEAT.asimd = hw & HWCAP_ASIMD;
    FEAT.dotprod = hw & HWCAP_ASIMDDP;
    FEAT.i8mm = hw2 & HWCAP2_I8MM;
#endif
    LEVEL = best_of(&FEAT);
    const char *env = getenv("GEMMA4C_CPU");
    if (env && *env) {
        int want = g4_cpu_level_from_name(env);
        /* a level this CPU lacks steps down to what runs (called inside the
         * pthread_once: use FEAT directly); an unknown name is ignored */
        if (want >= 0) {
            while (want > G4_CPU_REF && !supported(&FEAT, want)) {
                want = want == G4_CPU_NEON ? G4_CPU_REF : want - 1;
            }
            LEVEL = want;
        }
    }
}

const g4_cpu_features *g4_cpu_features_get(void) {
    pthread_once(&once, detect);
    return &FEAT;
}

int g4_cpu_best_level(void) {
    pthread_once(&once, detect);
    return best_of(&FEAT);
}

static bool supported(const g4_cpu_features *f, int level) {
    if (level == G4_CPU_REF) return true;
    switch (level) {
#if defined(__x86_64__)
    case G4_CPU_AVX2: return f->avx2 && f->fma && f->f16c;
    case G4_CPU_AVX512:
        return f->avx2 && f->fma && f->f16c && f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni;
#elif defined(__aarch64__)
    case G4_CPU_NEON: return f->asimd;
    case G4_CPU_DOTPROD: return f->asimd && f->dotprod;
#endif
    default: return false;
    }
}

bool g4_cpu_level_supported(int level) {
    return supported(g4_cpu_features_get(), level);
}

int g4_cpu_level(void) {
    pthread_once(&once, detect);
    return LEVEL;
}

static const char *const NAMES[] = { "ref", "avx2", "avx512", "neon", "dotprod" };

const char *g4_cpu_level_name(int level) {
    if (level < 0 || level >= (int)(sizeof NAMES / sizeof NAMES[0])) return "?";
    return NAMES[level];
}

int g4_cpu_level_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < (int)(sizeof NAMES / sizeof NAMES[0]); i++)
        if (strcasecmp(name, NAMES[i]) == 0) return i;
    if (strcasecmp(name, "generic") == 0 || strcasecmp(name, "c") == 0) return G4_CPU_REF;
    return -1;
}

void g4_cpu_describe(char *buf, unsigned len) {
    if (!buf || !len) return;
    const g4_cpu_features *f = g4_cpu_features_get();
    snprintf(buf, len,
             "level=%s%s%s%s%s%s%s%s%s%s%s%s%s",
             g4_cpu_level_name(g4_cpu_level()), f->avx2 ? " avx2" : "", f->fma ? " fma" : "",
             f->f16c ? " f16c" : "", f->avx512f ? " avx512f" : "", f->avx512bw ? " avx512bw" : "",
             f->avx512vl ? " avx512vl" : "", f->avx512vnni ? " avx512vnni" : "",
             f->avxvnni ? " avxvnni" : "", f->avx512bf16 ? " avx512bf16" : "",
             f->asimd ? " asimd" : "", f->dotprod ? " dotprod" : "", f->i8mm ? " i8mm" : "");
}
