/* tests/support/kernel_set.h -- a small set of ternary matmul kernels, one of each variant
 * (dot2 96 x 130, bitplane 40 x 200, weights-as-code 8 x 64), with random weights and
 * activations and their C reference results, for the kernel-cache tests (test_cg_cache, and
 * test_faults killing a cache writer). Include after <criterion/criterion.h>. */
#ifndef BJ_TEST_KERNEL_SET_H
#define BJ_TEST_KERNEL_SET_H

#include "codegen/codegen.h"

#include <stdint.h>
#include <stdlib.h>

#define KSET_N 3 /* kernels */
#define KSET_T 2 /* tokens a kernel runs */

typedef struct kset {
    bj_cg_target t; /* the host */
    bj_cg_kdesc d[KSET_N];
    int8_t *t8[KSET_N]; /* ternary weights, M x K */
    uint8_t *w[KSET_N]; /* packed for the kernel */
    int8_t *x[KSET_N];  /* KSET_T rows of activations */
    int32_t *ref[KSET_N];
} kset;

static inline uint64_t kset_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The kernels for the host, their data drawn from seed. */
static inline void kset_init(kset *ks, uint64_t seed) {
    static const struct { bj_cg_variant v; uint32_t m, k; } shapes[KSET_N] = {
        { BJ_CG_V_DOT2, 96, 130 }, { BJ_CG_V_BITPLANE, 40, 200 }, { BJ_CG_V_WCODE, 8, 64 } };
    bj_error err = { 0 };
    uint64_t s = seed;
    cr_assert_eq(bj_cg_target_detect(&ks->t, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    for (int i = 0; i < KSET_N; i++) {
        uint32_t M = shapes[i].m, K = shapes[i].k;
        int64_t xs = bj_cg_x_stride(K);
        ks->t8[i] = malloc((size_t)M * K);
        ks->x[i] = calloc((size_t)(KSET_T * xs), 1);
        ks->ref[i] = malloc((size_t)KSET_T * M * 4);
        for (uint32_t j = 0; j < M * K; j++) ks->t8[i][j] = (int8_t)(kset_rng_next(&s) % 3) - 1;
        for (int t = 0; t < KSET_T; t++)
            for (uint32_t k = 0; k < K; k++) ks->x[i][t * xs + k] = (int8_t)kset_rng_next(&s);
        cr_assert_eq(bj_cg_kdesc_init(&ks->d[i], &ks->t, shapes[i].v, BJ_CG_ISA_AUTO, BJ_CG_W_TERNARY, M, K,
                                      ks->t8[i], &err), BJ_OK, "%s", err.msg);
        ks->w[i] = malloc(bj_cg_packed_size(&ks->d[i]) + 1);
        cr_assert_eq(bj_cg_pack(&ks->d[i], ks->t8[i], ks->w[i], &err), BJ_OK, "%s", err.msg);
        bj_cg_ref_matmul(ks->x[i], ks->t8[i], ks->ref[i], KSET_T, M, K, 0, M);
    }
}

static inline void kset_free(kset *ks) {
    for (int i = 0; i < KSET_N; i++) {
        free(ks->t8[i]);
        free(ks->w[i]);
        free(ks->x[i]);
        free(ks->ref[i]);
    }
}

/* Gets every kernel through the cache c (compiled, or loaded from its directory, and stored
 * there) into a fresh JIT, and checks each one's results against the reference. */
static inline void kset_run_all(kset *ks, bj_cg_cache *c) {
    bj_error err = { 0 };
    bj_cg_jit *j;
    cr_assert_eq(bj_cg_jit_create(&j, &err), BJ_OK, "%s", err.msg);
    for (int i = 0; i < KSET_N; i++) {
        bj_cg_matmul_fn fn;
        uint32_t M = ks->d[i].m;
        cr_assert_eq(bj_cg_kernel_get(c, j, &ks->t, &ks->d[i], ks->t8[i], &fn, &err), BJ_OK, "%s", err.msg);
        int32_t *y = calloc((size_t)KSET_T * M, 4);
        fn(ks->x[i], ks->w[i], y, KSET_T, 0, M);
        cr_expect_arr_eq(y, ks->ref[i], (size_t)KSET_T * M * 4, "kernel %d (%s) differs from the reference", i,
                         bj_cg_variant_name((bj_cg_variant)ks->d[i].variant));
        free(y);
    }
    bj_cg_jit_free(j);
}

#endif
