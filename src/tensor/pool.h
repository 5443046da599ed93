/* A persistent thread pool for data-parallel kernels.
 *
 * g4_pool_run(p, fn, arg) calls fn(arg, ith, nth) on every thread (the caller
 * is thread 0) and returns when all are done. Workers spin briefly on a
 * generation counter before sleeping on a condition variable, so the many
 * short parallel sections of a decode step cost microseconds, while an idle
 * pool costs no CPU. */
#ifndef G4_POOL_H
#define G4_POOL_H

/* Tell the core we are spinning: cheaper for the sibling hyper-thread and
 * for a VM's scheduler than a tight load loop, and far cheaper than a
 * sched_yield system call (~1 us in a VM) per check. */
static inline void g4_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef void (*g4_task_fn)(void *arg, int ith, int nth);
typedef struct g4_pool g4_pool;

g4_pool *g4_pool_new(int n_threads);   /* n_threads >= 1; NULL on failure */
void g4_pool_free(g4_pool *p);
int g4_pool_size(const g4_pool *p);

/* The process-wide pool of n threads, created on first use and shared
 * (reference counted) by every caller asking for n; NULL on failure.
 * Sections from several threads run one after the other. */
g4_pool *g4_pool_acquire(int n_threads);
void g4_pool_release(g4_pool *p);
void g4_pool_run(g4_pool *p, g4_task_fn fn, void *arg);

/* As g4_pool_run, for a task whose threads claim its work dynamically (any
 * subset of the threads, each with its own ith, completes it): once the
 * caller's fn returns, a worker that has not started yet is no longer
 * waited for and skips the section. A worker descheduled or asleep when a
 * section starts then costs the caller nothing (on a busy machine most of
 * a batched decode step's waits were such late workers). */
void g4_pool_run_dyn(g4_pool *p, g4_task_fn fn, void *arg);

/* Split [0, n) into nth nearly equal chunks; chunk ith is [*lo, *hi). */
static inline void g4_split(long n, int ith, int nth, long *lo, long *hi) {
    long q = n / nth, r = n % nth;
    *lo = ith * q + (ith < r ? ith : r);
    *hi = *lo + q + (ith < r);
}

#endif
