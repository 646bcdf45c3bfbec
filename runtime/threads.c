/* runtime/threads.c -- the persistent thread pool (see threads.h).
 *
 * A job is published by bumping `gen`; workers that see a new generation run their share
 * and decrement `pending`; the caller runs share 0 and then spins until pending is zero.
 * Idle workers spin for a bounded number of checks (cheap wake-up for back-to-back decode
 * jobs) and then sleep on `cv`; the caller broadcasts only if someone may be asleep. */
#include "runtime/threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* Checks before an idle worker sleeps (~0.5 ms of pause loops), and before a waiting
 * thread starts yielding its core: on an oversubscribed machine a spinning waiter would
 * otherwise hold the core the thread it waits for needs. */
#define BJ_SPIN_CHECKS 20000
#define BJ_SPIN_BEFORE_YIELD 2000

struct bj_pool {
    int n;
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint_fast64_t gen;
    atomic_int pending;
    atomic_int sleepers;
    atomic_bool stop;
    bj_pool_fn fn;
    void *ctx;
};

typedef struct worker_arg { bj_pool *p; int ith; } worker_arg;

static uint64_t wait_for_job(bj_pool *p, uint64_t seen) {
    for (int i = 0; i < BJ_SPIN_CHECKS; i++) {
        uint64_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen || atomic_load(&p->stop)) return g;
        if (i >= BJ_SPIN_BEFORE_YIELD) sched_yield();
#if defined(__x86_64__)
        else __builtin_ia32_pause();
#endif
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    uint64_t g;
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker(void *arg) {
    worker_arg a = *(worker_arg *)arg;
    free(arg);
    bj_pool *p = a.p;
    uint64_t seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load(&p->stop)) return NULL;
        p->fn(p->ctx, a.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

bj_status bj_pool_create(bj_pool **out, int n_threads, bj_error *err) {
    *out = NULL;
    if (n_threads < 1) return BJ_FAIL(err, BJ_E_INVALID, "thread count must be at least 1, got %d", n_threads);
    bj_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->tid = calloc((size_t)n_threads, sizeof *p->tid))) {
        free(p);
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    }
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a) { p->n = i; bj_pool_free(p); return BJ_FAIL(err, BJ_E_NOMEM, "out of memory"); }
        *a = (worker_arg){ p, i };
        if (pthread_create(&p->tid[i], NULL, worker, a) != 0) {
            free(a);
            p->n = i;
            bj_pool_free(p);
            return BJ_FAIL(err, BJ_E_INTERNAL, "cannot start worker thread %d", i);
        }
    }
    *out = p;
    return BJ_OK;
}

int bj_pool_size(const bj_pool *p) { return p->n; }

void bj_pool_run(bj_pool *p, bj_pool_fn fn, void *ctx) {
    if (p->n == 1) { fn(ctx, 0, 1); return; }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with the sleeper check (Dekker-style) */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins >= BJ_SPIN_BEFORE_YIELD) sched_yield();
#if defined(__x86_64__)
        else __builtin_ia32_pause();
#endif
    }
}

void bj_pool_free(bj_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->tid);
    free(p);
}
