/* Hardware roofline probes: sustained read bandwidth and arithmetic peaks,
 * measured on this machine so benchmarks can say how far from the limit a
 * result is. Each probe runs on n threads of a fresh pool for a fraction of
 * a second and reports the best of a few repetitions. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "tensor/pool.h"
#include "engine/probe.h"
#include "tensor/cpu.h"
#include "gemma4c.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- bandwidth: every thread sums its share of a buffer far larger than the caches */

typedef struct bw_task {
    const uint64_t *buf;
    size_t n;
    uint64_t sink[256];
} bw_task;

#if defined(__x86_64__)
/* 256-bit loads, 4 independent accumulators: enough to keep the load units
 * and the memory system saturated (a scalar loop measures the core instead). */
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, a);
    uint64_t s = v[0] + v[1] + v[2] + v[3];
    for (; i < n; i++) s += p[i];
    return s;
}
#endif

uint64_t g4_read_sum(const void *vp, size_t n) {
    const uint64_t *p = vp;
    n /= 8;
#if defined(__x86_64__)
    if (g4_cpu_features_get()->avx2) return sum_avx2(p, n);
#endif
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a += p[i];
        b ^= p[i + 1];
        c += p[i + 2];
        d ^= p[i + 3];
    }
    for (; i < n; i++) a += p[i];
    return a + b + c + d;
}

static void bw_worker(void *arg, int ith, int nth) {
    bw_task *t = arg;
    long lo, hi;
    g4_split((long)t->n, ith, nth, &lo, &hi);
    t->sink[ith & 255] = g4_read_sum(t->buf + lo, (size_t)(hi - lo) * 8);
}

double gemma4c_probe_bandwidth(int n_threads) {
    size_t bytes = (size_t)1 << 30; /* 1 GiB: well past any L3 */
    /* in 2 MB pages where the kernel gives them, as the model weights are
     * mapped (format/mapfile.h): 4 KB pages measured lower and noisier, and
     * the roofline should be the best the memory system does */
    uint64_t *buf = aligned_alloc((size_t)2 << 20, bytes);
#ifdef MADV_HUGEPAGE
    if (buf) (void)madvise(buf, bytes, MADV_HUGEPAGE);
#endif
    if (!buf) return 0;
    g4_pool *pool = g4_pool_new(n_threads);
    if (!pool) { free(buf); return 0; }
    bw_task t = { .buf = buf, .n = bytes / 8 };

    /* touch every page from the threads that will read it */
    memset(buf, 1, bytes);
    double best = 0;
    for (int r = 0; r < 4; r++) {
        double t0 = now();
        g4_pool_run(pool, bw_worker, &t);
        double dt = now() - t0;
        if (r > 0 && bytes / dt > best) best = bytes / dt;
    }
    g4_pool_free(pool);
    free(buf);
    return best / 1e9;
}

/* ---- arithmetic peaks --------------------------------------------------- */

#define PEAK_ITERS 20000000L

#if defined(__x86_64__)
/* The twelve chains start from different values and the constants come
 * through a volatile, so the compiler can neither merge the chains nor fold
 * the loop: each iteration really issues twelve FMAs. */
static volatile float g_m = 0.999999f, g_c = 1e-7f;
static volatile int g_u = 3, g_s = -2;

__attribute__((target("avx512f"))) static double fma512(long iters) {
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = _mm512_set1_ps(1.1f), a2 = _mm512_set1_ps(1.2f),
           a3 = _mm512_set1_ps(1.3f), a4 = _mm512_set1_ps(1.4f), a5 = _mm512_set1_ps(1.5f),
           a6 = _mm512_set1_ps(1.6f), a7 = _mm512_set1_ps(1.7f), a8 = _mm512_set1_ps(1.8f),
           a9 = _mm512_set1_ps(1.9f), a10 = _mm512_set1_ps(2.0f), a11 = _mm512_set1_ps(2.1f);
    const __m512 m = _mm512_set1_ps(g_m), c = _mm512_set1_ps(g_c);
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c); a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c); a4 = _mm512_fmadd_ps(a4, m, c); a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c); a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c); a10 = _mm512_fmadd_ps(a10, m, c); a11 = _mm512_fmadd_ps(a11, m, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return (double)_mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static double fma256(long iters) {
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f),
           a3 = _mm256_set1_ps(1.3f), a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f),
           a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f), a8 = _mm256_set1_ps(1.8f),
           a9 = _mm256_set1_ps(1.9f), a10 = _mm256_set1_ps(2.0f), a11 = _mm256_set1_ps(2.1f);
    const __m256 m = _mm256_set1_ps(g_m), c = _mm256_set1_ps(g_c);
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c); a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[7];
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double vnni512(long iters) {
    __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2),
            a3 = _mm512_set1_epi32(3), a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5),
            a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7), a8 = _mm512_set1_epi32(8),
            a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
    const __m512i u = _mm512_set1_epi8((char)g_u), s8 = _mm512_set1_epi8((char)g_s);
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_dpbusd_epi32(a0, u, s8); a1 = _mm512_dpbusd_epi32(a1, u, s8);
        a2 = _mm512_dpbusd_epi32(a2, u, s8); a3 = _mm512_dpbusd_epi32(a3, u, s8);
        a4 = _mm512_dpbusd_epi32(a4, u, s8); a5 = _mm512_dpbusd_epi32(a5, u, s8);
        a6 = _mm512_dpbusd_epi32(a6, u, s8); a7 = _mm512_dpbusd_epi32(a7, u, s8);
        a8 = _mm512_dpbusd_epi32(a8, u, s8); a9 = _mm512_dpbusd_epi32(a9, u, s8);
        a10 = _mm512_dpbusd_epi32(a10, u, s8); a11 = _mm512_dpbusd_epi32(a11, u, s8);
    }
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                 _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
    return (double)_mm512_reduce_add_epi32(s);
}
#endif

#if defined(__x86_64__)
typedef struct peak_task {
    int kind;           /* 0 fma512, 1 fma256, 2 vnni512 */
    long iters;
    double sink[256];
} peak_task;

static void peak_worker(void *arg, int ith, int nth) {
    (void)nth;
    peak_task *t = arg;
    double r;
    if (t->kind == 0) r = fma512(t->iters);
    else if (t->kind == 1) r = fma256(t->iters);
    else r = vnni512(t->iters);
    t->sink[ith & 255] = r;
}

/* ops per iteration per thread: 12 vectors x lanes x 2 (multiply + add) */
static double run_peak(int kind, int n_threads, double ops_per_iter) {
    g4_pool *pool = g4_pool_new(n_threads);
    if (!pool) return 0;
    peak_task t = { .kind = kind, .iters = PEAK_ITERS / 4 };
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        g4_pool_run(pool, peak_worker, &t);
        double dt = now() - t0;
        double g = ops_per_iter * (double)t.iters * n_threads / dt / 1e9;
        if (g > best) best = g;
    }
    g4_pool_free(pool);
    return best;
}

#endif

double gemma4c_probe_f32_gflops(int n_threads) {
#if defined(__x86_64__)
    const g4_cpu_features *cf = g4_cpu_features_get();
    if (cf->avx512f) return run_peak(0, n_threads, 12 * 16 * 2);
    if (cf->avx2 && cf->fma) return run_peak(1, n_threads, 12 * 8 * 2);
#endif
    (void)n_threads;
    return 0;
}

double gemma4c_probe_int8_gops(int n_threads) {
#if defined(__x86_64__)
    /* vpdpbusd: 64 u8 x s8 products + adds per instruction = 128 ops */
    const g4_cpu_features *cf = g4_cpu_features_get();
    if (cf->avx512f && cf->avx512bw && cf->avx512vnni) return run_peak(2, n_threads, 12 * 64 * 2);
#endif
    (void)n_threads;
    return 0;
}
