/* tests/unit/test_rt_head_kernel.c -- the generated exact LM head (codegen/cg_kernel_head.c)
 * gives the same bits as its plain C reference (bj_cg_ref_head) and as the runtime's head
 * (bj_rt_matmul_f, which the reference executor runs), over F16, BF16 and F32 weights, both
 * vector paths the host has, odd K (tails of 1-31), odd N, row ranges that start and end off the
 * row groups, T of 1-3 tokens, tiles of 1-16 rows and prefetch on and off. Bitwise comparisons:
 * one changed rounding anywhere in the order shows. */
#include "codegen/codegen.h"
#include "ir/weights.h"
#include "runtime/ops.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) % 2000001) / 1000000.0f - 1.0f;
}

static const bj_dtype dts[] = { BJ_DT_F32, BJ_DT_F16, BJ_DT_BF16 };
static const bj_cg_head_dtype hdts[] = { BJ_CG_HEAD_F32, BJ_CG_HEAD_F16, BJ_CG_HEAD_BF16 };

/* N x K weights of type dt, values spread over several binades (so the order matters). */
static uint8_t *gen_w(bj_dtype dt, int64_t N, int64_t K) {
    uint8_t *w = malloc((size_t)(N * K) * 4);
    for (int64_t i = 0; i < N * K; i++) {
        float v = frand() * (i % 7 == 0 ? 40.0f : i % 3 == 0 ? 0.01f : 1.5f);
        if (dt == BJ_DT_F32) memcpy(w + 4 * i, &v, 4);
        else {
            uint16_t h = dt == BJ_DT_F16 ? bj_f32_to_f16(v) : bj_f32_to_bf16(v);
            w[2 * i] = (uint8_t)h;
            w[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
    return w;
}

typedef struct hstate {
    bj_cg_target t;
    bj_cg_cache cache;
    bj_cg_jit *jit;
} hstate;

static void hstate_open(hstate *st) {
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&st->t, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_cache_open(&st->cache, NULL, &st->t, true, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_jit_create(&st->jit, &err), BJ_OK, "%s", err.msg);
}

/* One case: every (T, range) against both references; returns the mismatches. */
static int check_case(hstate *st, int di, bj_cg_isa isa, int64_t N, int64_t K, int tile_m, int prefetch) {
    bj_error err = { 0 };
    bj_cg_kdesc d;
    bj_status s = bj_cg_head_kdesc_init(&d, &st->t, hdts[di], isa, (uint32_t)N, (uint32_t)K, &err);
    if (s == BJ_E_UNSUPPORTED) return 0;
    cr_assert_eq(s, BJ_OK, "%s", err.msg);
    d.tile_m = (uint8_t)tile_m;
    d.prefetch = (uint8_t)prefetch;
    bj_cg_matmul_fn f = NULL;
    cr_assert_eq(bj_cg_kernel_get(&st->cache, st->jit, &st->t, &d, NULL, &f, &err), BJ_OK, "%s", err.msg);
    bj_cg_head_fn fn = bj_cg_head_fn_of(f);
    uint8_t *w = gen_w(dts[di], N, K);
    bj_node node = { .op = BJ_OP_WEIGHT, .dtype = dts[di], .shape = bj_shape2(N, K), .data = w,
                     .nbytes = (uint64_t)(N * K) * (dts[di] == BJ_DT_F32 ? 4 : 2), .name = "w" };
    int bad = 0;
    for (int64_t T = 1; T <= 3; T++) {
        double *x = malloc((size_t)(T * K) * sizeof *x);
        float *xf = malloc((size_t)(T * K) * sizeof *xf);
        for (int64_t i = 0; i < T * K; i++) {
            x[i] = (double)frand() * (i % 5 == 0 ? 30.0 : 1.0) + 1e-9 * (double)frand();
            xf[i] = (float)x[i];
        }
        int64_t ranges[3][2] = { { 0, N }, { N > 2 ? 1 : 0, N > 2 ? N - 1 : N }, { N / 2, N / 2 } };
        for (int r = 0; r < 3; r++) {
            int64_t n0 = ranges[r][0], n1 = ranges[r][1];
            size_t ny = (size_t)(T * N);
            float *y = malloc(ny * 4), *yr = malloc(ny * 4), *yt = malloc(ny * 4);
            for (size_t i = 0; i < ny; i++) y[i] = yr[i] = yt[i] = -7.0f; /* rows outside stay */
            fn(xf, w, y, T, n0, n1);
            bj_cg_ref_head(xf, w, hdts[di], yr, T, N, K, n0, n1);
            bj_rt_matmul_f(x, &node, K, N, T, n0, n1, yt);
            for (size_t i = 0; i < ny; i++) {
                if (memcmp(&y[i], &yr[i], 4) || memcmp(&yr[i], &yt[i], 4)) {
                    if (bad++ < 5)
                        cr_log_error("%s %s %lldx%lld tile %d pf %d T %lld [%lld,%lld) at %zu: kernel %.9g ref %.9g runtime %.9g",
                                     bj_dtype_name(dts[di]), bj_cg_isa_name(isa), (long long)N, (long long)K, tile_m,
                                     prefetch, (long long)T, (long long)n0, (long long)n1, i, y[i], yr[i], yt[i]);
                }
            }
            free(y);
            free(yr);
            free(yt);
        }
        free(x);
        free(xf);
    }
    free(w);
    return bad;
}

static const bj_cg_isa isas[] = { BJ_CG_ISA_AVX512, BJ_CG_ISA_AVX2 };

Test(rt_head_kernel, kernel_equals_references_bitwise, .timeout = 600) {
    hstate st;
    hstate_open(&st);
    const int64_t Ns[] = { 1, 3, 4, 5, 17, 64 };
    const int64_t Ks[] = { 1, 7, 31, 32, 33, 64, 100, 2560, 2563 };
    int bad = 0, ran = 0;
    for (size_t ii = 0; ii < 2; ii++)
        for (int di = 0; di < 3; di++)
            for (size_t a = 0; a < sizeof Ns / sizeof *Ns; a++)
                for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++) {
                    bj_cg_kdesc d;
                    bj_error e2 = { 0 };
                    if (bj_cg_head_kdesc_init(&d, &st.t, hdts[di], isas[ii], 1, 1, &e2) == BJ_OK) ran++;
                    bad += check_case(&st, di, isas[ii], Ns[a], Ks[b], 4, 16);
                }
    cr_expect_eq(bad, 0, "%d mismatches", bad);
    cr_log_info("%d (path, dtype, shape) cases ran", ran);
    bj_cg_jit_free(st.jit);
}

Test(rt_head_kernel, tiles_and_prefetch, .timeout = 600) {
    hstate st;
    hstate_open(&st);
    const int tiles[] = { 1, 2, 3, 8, 16 };
    int bad = 0;
    for (size_t ii = 0; ii < 2; ii++)
        for (size_t ti = 0; ti < sizeof tiles / sizeof *tiles; ti++) {
            bad += check_case(&st, 1, isas[ii], 37, 77, tiles[ti], ti % 2 ? 0 : 4);
            bad += check_case(&st, 2, isas[ii], 19, 2561, tiles[ti], 16);
        }
    cr_expect_eq(bad, 0, "%d mismatches", bad);
    bj_cg_jit_free(st.jit);
}

Test(rt_head_kernel, descriptor_rules) {
    bj_cg_target t;
    bj_error err = { 0 };
    bj_cg_kdesc d;
    cr_assert_eq(bj_cg_target_detect(&t, "x86-64", NULL, &err), BJ_OK, "%s", err.msg);
    /* the SSE2 baseline has no path: the engine keeps the plain C head */
    cr_expect_eq(bj_cg_head_kdesc_init(&d, &t, BJ_CG_HEAD_F16, BJ_CG_ISA_AUTO, 8, 64, &err), BJ_E_UNSUPPORTED);
    cr_assert_eq(bj_cg_target_detect(&t, "skylake-avx512", NULL, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(bj_cg_head_kdesc_init(&d, &t, BJ_CG_HEAD_F16, BJ_CG_ISA_AUTO, 8, 64, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(d.isa, BJ_CG_ISA_AVX512);
    cr_assert_eq(bj_cg_target_detect(&t, "haswell", NULL, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(bj_cg_head_kdesc_init(&d, &t, BJ_CG_HEAD_BF16, BJ_CG_ISA_AUTO, 8, 64, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(d.isa, BJ_CG_ISA_AVX2);
    d.tile_t = 2;
    cr_expect_eq(bj_cg_kdesc_check(&d, &t, &err), BJ_E_INVALID);
    d.tile_t = 1;
    d.tile_m = 0;
    cr_expect_eq(bj_cg_kdesc_check(&d, &t, &err), BJ_E_INVALID);
}
