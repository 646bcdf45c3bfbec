/* tests/unit/test_rt_threads.c -- the persistent thread pool (runtime/threads.c) under load, the
 * test ThreadSanitizer runs first (label "tsan", .ci/run): many back-to-back fork-join jobs (the
 * decode pattern: workers still spinning when the next job is published), jobs after a pause
 * long enough for the workers to fall asleep on the condition variable, results written by every
 * thread visible to the caller after bj_pool_run returns, and pools created and freed repeatedly
 * (including freeing a pool whose workers are asleep). */
#include "runtime/threads.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <time.h>

typedef struct job {
    int64_t n;
    int64_t *out;   /* each thread writes only its own slice */
    int64_t round;
    int max_ith;
} job;

static void fill(void *ctx, int ith, int nth) {
    job *j = ctx;
    int64_t b, e;
    bj_pool_split(j->n, 4, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) j->out[i] = i * 3 + j->round;
}

static void check(const job *j) {
    for (int64_t i = 0; i < j->n; i++)
        if (j->out[i] != i * 3 + j->round) cr_assert_fail("round %lld: out[%lld] = %lld", (long long)j->round, (long long)i, (long long)j->out[i]);
}

static void pool_rounds(int threads, int rounds, bool sleep_between) {
    bj_pool *p;
    bj_error err = { 0 };
    cr_assert_eq(bj_pool_create(&p, threads, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_pool_size(p), threads);
    job j = { .n = 1003 };
    j.out = calloc((size_t)j.n, sizeof *j.out);
    for (int r = 0; r < rounds; r++) {
        j.round = r;
        bj_pool_run(p, fill, &j);
        check(&j);
        if (sleep_between) nanosleep(&(struct timespec){ 0, 20 * 1000 * 1000 }, NULL); /* workers go to sleep */
    }
    free(j.out);
    bj_pool_free(p);
}

Test(rt_threads, back_to_back_jobs) {
    pool_rounds(2, 2000, false);
    pool_rounds(4, 500, false);
}

Test(rt_threads, jobs_after_workers_sleep) { pool_rounds(3, 6, true); }

Test(rt_threads, single_thread_pool_runs_inline) { pool_rounds(1, 50, false); }

Test(rt_threads, create_free_repeatedly) {
    for (int i = 0; i < 20; i++) {
        bj_pool *p;
        bj_error err = { 0 };
        cr_assert_eq(bj_pool_create(&p, 1 + i % 4, &err), BJ_OK, "%s", err.msg);
        if (i % 2) {
            job j = { .n = 64, .round = i };
            j.out = calloc(64, sizeof *j.out);
            bj_pool_run(p, fill, &j);
            check(&j);
            free(j.out);
        }
        bj_pool_free(p); /* with workers spinning (odd i) or just started (even i) */
    }
}
