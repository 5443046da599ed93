#include "tensor/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#define SPIN_ITERS 4000 /* x pause (~10-60 ns each): ~0.1 ms; the caller's wait is 4x this */
/* A worker's spin before it sleeps, ~0.7 ms (72 us per 4000 measured on an
 * EPYC VM): a server's pause between decode steps (sampling, text, events,
 * ~60-100 us at one stream) outlasted 4000, so every step began by waking
 * the worker through the kernel, and the one-stream forward pass ran 3-16%
 * longer than in `bench` (bench/serve_overhead.sh's step table); at 40000
 * the two match. An idle process burns at most this once per section. */
#define WORKER_SPIN_ITERS 40000

struct g4_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t run_mu; /* one section at a time: contexts in several threads share a pool */
    atomic_uint gen;        /* bumped once per run */
    atomic_int pending;     /* workers still running the current task */
    atomic_int sleepers;
    atomic_bool stop;
    /* (generation << 32) | CLOSED | workers admitted; a worker joins a
     * section only through it, so one that saw a generation late never
     * runs a later section's task in its name */
    atomic_ullong entry;
    g4_task_fn fn;
    void *arg;
};

#define ENTRY_CLOSED (1ull << 31)

/* A worker's admission to section g: false once the caller has closed it
 * (a dynamic section whose work is all claimed) or moved on to a later one
 * (only past a dynamic section: a plain one waits for every worker). */
static bool enter(g4_pool *p, unsigned g) {
    unsigned long long e = atomic_load_explicit(&p->entry, memory_order_acquire);
    for (;;) {
        if ((unsigned)(e >> 32) != g || (e & ENTRY_CLOSED)) return false;
        if (atomic_compare_exchange_weak_explicit(&p->entry, &e, e + 1, memory_order_acq_rel, memory_order_acquire))
            return true;
    }
}

typedef struct { g4_pool *p; int ith; } worker_arg;

static void *worker(void *v) {
    worker_arg wa = *(worker_arg *)v;
    free(v);
    g4_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < WORKER_SPIN_ITERS) { g4_cpu_relax(); continue; }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (atomic_load(&p->stop)) return NULL;
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        seen = g;
        /* admitted to section g, the caller is still in it (it waits for
         * every worker admitted), so fn and arg are g's; not admitted: a
         * dynamic section that closed before this worker arrived */
        if (!enter(p, g)) continue;
        p->fn(p->arg, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

g4_pool *g4_pool_new(int n) {
    if (n < 1) n = 1;
    g4_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n, sizeof *p->threads);
    if (!p->threads) { free(p); return NULL; }
    for (int i = 1; i < n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) { p->n = i; g4_pool_free(p); return NULL; }
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker, wa)) {
            free(wa);
            p->n = i;
            g4_pool_free(p);
            return NULL;
        }
    }
    return p;
}

void g4_pool_free(g4_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int g4_pool_size(const g4_pool *p) { return p->n; }

static void run(g4_pool *p, g4_task_fn fn, void *arg, bool dyn) {
    if (p->n == 1) { fn(arg, 0, 1); return; }
    pthread_mutex_lock(&p->run_mu);   /* uncontended: ~20 ns of a ~50 us section */
    p->fn = fn;
    p->arg = arg;
    unsigned g = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&p->entry, (unsigned long long)g << 32, memory_order_relaxed);
    /* dynamic: pending counts the workers admitted, added when it closes */
    atomic_store_explicit(&p->pending, dyn ? 0 : p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with the sleepers check */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    if (dyn) {
        /* all the work is claimed (the caller's fn returned): a worker that
         * has not entered yet (descheduled, asleep, still spinning up) has
         * nothing left to do and is not waited for; those inside finish
         * their claims. pending may go negative until the add lands. */
        unsigned long long e = atomic_fetch_or_explicit(&p->entry, ENTRY_CLOSED, memory_order_acq_rel);
        atomic_fetch_add_explicit(&p->pending, (int)(e & (ENTRY_CLOSED - 1)), memory_order_acq_rel);
    }
    /* the workers usually finish within microseconds of us: spin, and only
     * yield the CPU when one is late (descheduled, or a long imbalance).
     * Spins 16x longer than the first version (SPIN_ITERS / 4): in a VM
     * every sched_yield is a costly exit (measured 0.5% per decode step,
     * within the bias of the A/B used then; see bench/README.md). */
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < SPIN_ITERS * 4) g4_cpu_relax();
        else sched_yield();
    }
    pthread_mutex_unlock(&p->run_mu);
}

void g4_pool_run(g4_pool *p, g4_task_fn fn, void *arg) { run(p, fn, arg, false); }

void g4_pool_run_dyn(g4_pool *p, g4_task_fn fn, void *arg) { run(p, fn, arg, true); }

/* ---- the process-wide pools ----------------------------------------------------
 * One pool per thread count, shared by every context that asks for it, so a
 * server with many sequences runs one set of workers, not one per request. */

static struct shared_pool { g4_pool *p; int n, refs; } g_shared[8];
static pthread_mutex_t g_shared_mu = PTHREAD_MUTEX_INITIALIZER;

g4_pool *g4_pool_acquire(int n) {
    if (n < 1) n = 1;
    g4_pool *r = NULL;
    pthread_mutex_lock(&g_shared_mu);
    struct shared_pool *free_slot = NULL;
    for (size_t i = 0; i < sizeof g_shared / sizeof g_shared[0] && !r; i++) {
        if (g_shared[i].p && g_shared[i].n == n) { g_shared[i].refs++; r = g_shared[i].p; }
        else if (!g_shared[i].p && !free_slot) free_slot = &g_shared[i];
    }
    if (!r && free_slot && (r = g4_pool_new(n))) *free_slot = (struct shared_pool){ r, n, 1 };
    pthread_mutex_unlock(&g_shared_mu);
    return r;   /* NULL: out of memory, or more than 8 distinct thread counts at once */
}

void g4_pool_release(g4_pool *p) {
    if (!p) return;
    g4_pool *dead = NULL;
    pthread_mutex_lock(&g_shared_mu);
    for (size_t i = 0; i < sizeof g_shared / sizeof g_shared[0]; i++)
        if (g_shared[i].p == p && --g_shared[i].refs == 0) { dead = p; g_shared[i].p = NULL; }
    pthread_mutex_unlock(&g_shared_mu);
    g4_pool_free(dead);
}
