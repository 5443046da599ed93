/* The thread pool's two kinds of section: plain (every thread runs the task
 * once) and dynamic (threads claim items; a worker that arrives after the
 * caller has finished skips the section). Interleaved thousands of times
 * with more threads than cores, so workers are often late and the closing
 * races happen: every item must run exactly once, every plain section once
 * per thread, and a late worker must never run a later section's task in
 * the name of the one it saw. */
#include <stdatomic.h>

#include "harness.h"
#include "tensor/pool.h"

enum { ITEMS = 64, MAXTH = 8 };

typedef struct {
    atomic_long next;
    atomic_int hits[ITEMS];
    atomic_int inside[MAXTH];   /* threads of this ith inside now (must stay <= 1) */
    atomic_int overlap;
    atomic_int ran_by[MAXTH];   /* items done by each ith */
    long spin;                  /* per-item busy work */
} dyn_task;

static void dyn_fn(void *arg, int ith, int nth) {
    dyn_task *k = arg;
    (void)nth;
    if (atomic_fetch_add(&k->inside[ith], 1) != 0) atomic_fetch_add(&k->overlap, 1);
    for (long i; (i = atomic_fetch_add(&k->next, 1)) < ITEMS;) {
        long s = 0;   /* busy work the compiler keeps (the asm hides s's value) */
        for (long j = 0; j < k->spin; j++) { s += j; __asm__ __volatile__("" : "+r"(s)); }
        atomic_fetch_add(&k->hits[i], 1);
        atomic_fetch_add(&k->ran_by[ith], 1);
    }
    atomic_fetch_sub(&k->inside[ith], 1);
}

typedef struct {
    atomic_int runs[MAXTH];
    int nth_seen;
} plain_task;

static void plain_fn(void *arg, int ith, int nth) {
    plain_task *k = arg;
    atomic_fetch_add(&k->runs[ith], 1);
    if (ith == 0) k->nth_seen = nth;
}

static void mixed(int n_threads, int rounds) {
    g4_pool *p = g4_pool_new(n_threads);
    CHECK(p != NULL);
    if (!p) return;
    int bad_items = 0, bad_plain = 0, overlaps = 0, worker_items = 0, caller_alone = 0;
    for (int r = 0; r < rounds; r++) {
        dyn_task d;
        memset(&d, 0, sizeof d);
        d.spin = r % 3 == 0 ? 0 : r % 3 == 1 ? 50 : 2000;   /* from "caller does all" to shared */
        g4_pool_run_dyn(p, dyn_fn, &d);
        for (int i = 0; i < ITEMS; i++) bad_items += atomic_load(&d.hits[i]) != 1;
        overlaps += atomic_load(&d.overlap);
        int w = 0;
        for (int t = 1; t < n_threads; t++) w += atomic_load(&d.ran_by[t]);
        worker_items += w;
        caller_alone += w == 0;
        if (r % 2) {   /* a plain section right after: a late worker must run it exactly once */
            plain_task k;
            memset(&k, 0, sizeof k);
            g4_pool_run(p, plain_fn, &k);
            for (int t = 0; t < n_threads; t++) bad_plain += atomic_load(&k.runs[t]) != 1;
            bad_plain += k.nth_seen != n_threads;
        }
    }
    /* on a loaded machine the caller may have run every item itself: long
     * sections until a worker takes part (bounded), so the check below
     * waits on that event, not on luck */
    for (int extra = 0; worker_items == 0 && extra < 2000; extra++) {
        dyn_task d;
        memset(&d, 0, sizeof d);
        d.spin = 20000;
        g4_pool_run_dyn(p, dyn_fn, &d);
        for (int i = 0; i < ITEMS; i++) bad_items += atomic_load(&d.hits[i]) != 1;
        for (int t = 1; t < n_threads; t++) worker_items += atomic_load(&d.ran_by[t]);
    }
    CHECKF(bad_items == 0, "%d items not run exactly once (%d threads)", bad_items, n_threads);
    CHECKF(bad_plain == 0, "%d plain-section threads not run exactly once (%d threads)", bad_plain, n_threads);
    CHECKF(overlaps == 0, "%d sections ran one ith twice at once", overlaps);
    /* the workers did take part (not a pool that runs everything on the caller) */
    CHECKF(worker_items > 0, "workers ran no item in %d sections", rounds);
    printf("  %d threads: the caller ran all items of %d of %d dynamic sections\n", n_threads, caller_alone, rounds);
    g4_pool_free(p);
}

TEST(dyn_and_plain_sections_interleaved_2) { mixed(2, 2000); }
TEST(dyn_and_plain_sections_interleaved_4) { mixed(4, 400); }   /* more threads than this machine's cores */

/* One thread: both kinds run the task inline, once. */
TEST(single_thread_pool_runs_inline) {
    g4_pool *p = g4_pool_new(1);
    CHECK(p != NULL);
    if (!p) return;
    dyn_task d;
    memset(&d, 0, sizeof d);
    g4_pool_run_dyn(p, dyn_fn, &d);
    int ok = 1;
    for (int i = 0; i < ITEMS; i++) ok &= atomic_load(&d.hits[i]) == 1;
    CHECK(ok);
    CHECK(atomic_load(&d.ran_by[0]) == ITEMS);
    g4_pool_free(p);
}

int main(void) {
    RUN(dyn_and_plain_sections_interleaved_2);
    RUN(dyn_and_plain_sections_interleaved_4);
    RUN(single_thread_pool_runs_inline);
    return test_summary();
}
