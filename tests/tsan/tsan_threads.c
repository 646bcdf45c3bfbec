/* tests/tsan/tsan_threads.c -- what ThreadSanitizer runs (ctest label "tsan", .ci/run stage 3): the
 * code that runs on several threads, driven without Criterion (Criterion's process arena cannot be
 * mapped under TSan: "Could not initialize inheritable arena"). Plain main(); exit 0 on success,
 * 1 on a wrong result; a data race is a TSan report (halt_on_error=1 makes it fatal, and the
 * ctest entry fails on "WARNING: ThreadSanitizer" in any case).
 *  1. the thread pool: back-to-back fork-join jobs (workers spinning), jobs after the workers fell
 *     asleep, pools created and freed repeatedly, every result visible to the caller;
 *  2. the JIT engine on the bundled model with 2 and 3 threads: prompt + 24 greedy tokens, the
 *     ids equal to the 1-thread engine's (the kernels, norms and attention split by rows).
 * Needs BJ_SOURCE_DIR and BJ_TEST_TMP. */
#include "runtime/runtime.h"
#include "runtime/threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); failures++; } } while (0)

typedef struct job { int64_t n, round, *out; } job;

static void fill(void *ctx, int ith, int nth) {
    job *j = ctx;
    int64_t b, e;
    bj_pool_split(j->n, 4, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) j->out[i] = i * 3 + j->round;
}

static void pool_rounds(int threads, int rounds, int sleep_ms) {
    bj_pool *p;
    bj_error err = { 0 };
    if (bj_pool_create(&p, threads, &err) != BJ_OK) { CHECK(0, "%s", err.msg); return; }
    job j = { .n = 1003 };
    j.out = calloc((size_t)j.n, sizeof *j.out);
    for (int r = 0; r < rounds; r++) {
        j.round = r;
        bj_pool_run(p, fill, &j);
        for (int64_t i = 0; i < j.n; i++)
            if (j.out[i] != i * 3 + r) { CHECK(0, "pool %d threads, round %d: out[%lld] wrong", threads, r, (long long)i); break; }
        if (sleep_ms) nanosleep(&(struct timespec){ 0, sleep_ms * 1000000L }, NULL);
    }
    free(j.out);
    bj_pool_free(p);
}

static const int32_t k_prompt[] = { 4094, 1144, 258, 2079 }; /* "In the beginning" */
#define N_GEN 24

static void generate(const bj_graph *g, int threads, int32_t *ids) {
    bj_error err = { 0 };
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = threads;
    o.cache_dir = BJ_TEST_TMP "/tsan-cache";
    bj_engine *e;
    if (bj_jit_engine_create(&e, g, &o, NULL, &err) != BJ_OK) { CHECK(0, "%s", err.msg); return; }
    bj_sampler s;
    bj_sampler_params p;
    bj_sampler_params_default(&p);
    p.temp = 0;
    int64_t n = 0;
    CHECK(bj_sampler_init(&s, &p, e->n_vocab, &err) == BJ_OK, "%s", err.msg);
    CHECK(bj_generate(e, &s, k_prompt, 4, N_GEN, -1, NULL, NULL, ids, &n, &err) == BJ_OK, "%s", err.msg);
    CHECK(n == N_GEN, "%d threads: %lld tokens", threads, (long long)n);
    bj_sampler_free(&s);
    bj_engine_free(e);
}

int main(void) {
    pool_rounds(2, 2000, 0);
    pool_rounds(4, 300, 0);
    pool_rounds(3, 4, 20);
    for (int i = 0; i < 12; i++) pool_rounds(1 + i % 4, i % 3, 0);

    bj_model m;
    bj_error err = { 0 };
    if (bj_model_load(&m, BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed", &err) != BJ_OK) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    int32_t one[N_GEN] = { 0 }, many[N_GEN] = { 0 };
    generate(&m.graph, 1, one);
    for (int t = 2; t <= 3; t++) {
        memset(many, 0, sizeof many);
        generate(&m.graph, t, many);
        CHECK(!memcmp(one, many, sizeof one), "%d threads: greedy ids differ from 1 thread", t);
    }
    bj_model_free(&m);
    printf("tsan_threads: %s\n", failures ? "FAILED" : "ok");
    return failures != 0;
}
