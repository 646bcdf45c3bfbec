/* runtime/threads.h -- a persistent thread pool for splitting each step by rows.
 *
 * bj_pool_run(p, fn, ctx) calls fn(ctx, ith, nth) once on each of nth threads (the caller
 * is thread 0) and returns when all have finished: a fork-join barrier. Workers spin briefly
 * between jobs, so decode steps (hundreds of small jobs per token) do not pay a futex wake
 * each time, then sleep on a condition variable when idle. Kernels follow ggml's convention:
 * each gets (ith, nth) and computes its own slice. */
#ifndef BJ_RT_THREADS_H
#define BJ_RT_THREADS_H

#include "ir/support.h"

typedef struct bj_pool bj_pool;
typedef void (*bj_pool_fn)(void *ctx, int ith, int nth);

bj_status bj_pool_create(bj_pool **out, int n_threads, bj_error *err);
int bj_pool_size(const bj_pool *p);
void bj_pool_run(bj_pool *p, bj_pool_fn fn, void *ctx);
void bj_pool_free(bj_pool *p);

/* The [begin, end) share of n items for thread ith of nth, in multiples of align. */
static inline void bj_pool_split(int64_t n, int64_t align, int ith, int nth, int64_t *begin, int64_t *end) {
    int64_t blocks = (n + align - 1) / align;
    int64_t b0 = blocks * ith / nth, b1 = blocks * (ith + 1) / nth;
    *begin = b0 * align < n ? b0 * align : n;
    *end = b1 * align < n ? b1 * align : n;
}

#endif
