/* tests/unit/test_rt_ops.c -- the shared ops' fast paths agree bit for bit with their plain
 * paths: the LM head's one-pass F16 dot (decode, F16C) against convert-then-dot (prefill),
 * for odd K, and the F16 row conversion against the scalar rule for every half value. */
#include "ir/weights.h"
#include "runtime/ops.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x243F6A8885A308D3ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) % 2000001) / 1000000.0f - 1.0f;
}

Test(rt_ops, head_f16_decode_equals_prefill_path) {
    const int64_t Ks[] = { 1, 31, 32, 33, 384, 1000, 2560, 2563 };
    for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) {
        int64_t K = Ks[c], N = 7;
        uint16_t *w = malloc((size_t)(N * K) * 2);
        float *x = malloc((size_t)(2 * K) * sizeof *x), y1[7], y2[14];
        for (int64_t i = 0; i < N * K; i++) w[i] = bj_f32_to_f16(frand() * 3);
        for (int64_t k = 0; k < K; k++) x[k] = x[K + k] = frand() * 5;
        bj_node node = { .op = BJ_OP_WEIGHT, .dtype = BJ_DT_F16, .shape = bj_shape2(N, K), .data = w,
                         .nbytes = (uint64_t)(N * K * 2), .name = "w" };
        bj_rt_matmul_f(x, &node, K, N, 1, 0, N, y1); /* T = 1: the one-pass path where F16C exists */
        bj_rt_matmul_f(x, &node, K, N, 2, 0, N, y2); /* T = 2: convert the row, then dot */
        for (int64_t n = 0; n < N; n++) {
            cr_expect_eq(memcmp(&y1[n], &y2[n], 4), 0, "K %lld row %lld: %.9g vs %.9g", (long long)K, (long long)n,
                         y1[n], y2[n]);
            cr_expect_eq(memcmp(&y2[n], &y2[N + n], 4), 0);
        }
        free(w);
        free(x);
    }
}

Test(rt_ops, f16_rows_convert_every_half_exactly) {
    /* embed reads rows through the same converter the head uses */
    static uint16_t all[65536];
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    bj_node table = { .op = BJ_OP_WEIGHT, .dtype = BJ_DT_F16, .shape = bj_shape2(1, 65536), .data = all,
                      .nbytes = sizeof all, .name = "t" };
    static float out[65536];
    int32_t tok = 0;
    bj_rt_embed(&table, &tok, 0, 1, out);
    for (uint32_t i = 0; i < 65536; i++) {
        float want = bj_f16_to_f32((uint16_t)i);
        if (want != want) cr_expect(out[i] != out[i], "half 0x%04x: NaN expected", i);
        else cr_expect_eq(memcmp(&out[i], &want, 4), 0, "half 0x%04x: %g vs %g", i, out[i], want);
    }
}
