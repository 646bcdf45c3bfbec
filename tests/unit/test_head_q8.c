/* tests/unit/test_head_q8.c -- the 8-bit LM head (`--head q8`, runtime/ops.h bj_rt_matmul_q8):
 * (1) over random shapes (odd K, N, T = 1 and many), every output is within the analytic bound
 *     of int8 rounding against a double-precision dot of the same float inputs:
 *       |y - x.w| <= d_x/2 sum|w| + d_w/2 sum|x| + K d_x d_w / 4   (+ f32 slack),
 *     with d = absmax / 127 of the token row and of the weight row, and equals bit for bit
 *     the plain integer dot of the int8 rows (whichever SIMD path the CPU runs);
 * (2) on the bundled kjv model through the JIT engine, the last logits stay within 0.1 of the
 *     oracle's (HF transformers, exact head) and the oracle's top-1 token is unchanged for
 *     every prompt; the exact head stays the default. */
#include "runtime/bench.h"
#include "runtime/ops.h"
#include "runtime/runtime.h"
#include "support/oracle.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static uint64_t rng(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static float frand(uint64_t *s) { return (float)((double)(rng(s) >> 11) / 9007199254740992.0) * 2 - 1; }

static void check_shape(int64_t N, int64_t K, int64_t T, uint64_t seed) {
    uint64_t s = seed;
    float *wf = malloc((size_t)(N * K) * sizeof *wf), *x = malloc((size_t)(T * K) * sizeof *x);
    float *y = malloc((size_t)(T * N) * sizeof *y);
    cr_assert(wf && x && y);
    for (int64_t i = 0; i < N * K; i++) wf[i] = frand(&s) * (i % 7 == 0 ? 3.0f : 0.5f);
    for (int64_t i = 0; i < T * K; i++) x[i] = frand(&s) * 4;
    bj_node w = { .op = BJ_OP_WEIGHT, .dtype = BJ_DT_F32, .name = "w", .data = wf,
                  .shape = { .ndim = 2, .d = { N, K } }, .nbytes = (uint64_t)(N * K * 4) };
    bj_rt_q8w q;
    bj_error err = { 0 };
    cr_assert_eq(bj_rt_q8w_make(&q, &w, &err), BJ_OK, "%s", err.msg);
    /* Two column ranges, as two threads would split them; activations are f64 (f32 values here,
     * so the head's rounding to f32 gives x back). */
    double *xd = malloc((size_t)(T * K) * sizeof *xd);
    cr_assert(xd);
    for (int64_t i = 0; i < T * K; i++) xd[i] = x[i];
    bj_rt_matmul_q8(xd, &q, T, 0, N / 2, y);
    bj_rt_matmul_q8(xd, &q, T, N / 2, N, y);
    free(xd);
    /* The token rows quantized by the same rule (as a T x K weight), then a plain int dot. */
    bj_node xn = { .op = BJ_OP_WEIGHT, .dtype = BJ_DT_F32, .name = "x", .data = x,
                   .shape = { .ndim = 2, .d = { T, K } }, .nbytes = (uint64_t)(T * K * 4) };
    bj_rt_q8w xq;
    cr_assert_eq(bj_rt_q8w_make(&xq, &xn, &err), BJ_OK, "%s", err.msg);
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            int32_t acc = 0;
            for (int64_t k = 0; k < K; k++) acc += xq.q[t * xq.stride + k] * q.q[n * q.stride + k];
            float want = (float)acc * (xq.d[t] * q.d[n]), got = y[t * N + n];
            cr_assert_eq(memcmp(&got, &want, 4), 0, "N=%lld K=%lld T=%lld t=%lld n=%lld: %.9g, int dot gives %.9g",
                         (long long)N, (long long)K, (long long)T, (long long)t, (long long)n, got, want);
        }
    bj_rt_q8w_free(&xq);
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * K;
        double ax = 0, sx = 0;
        for (int64_t k = 0; k < K; k++) { ax = fmax(ax, fabs(xr[k])); sx += fabs(xr[k]); }
        for (int64_t n = 0; n < N; n++) {
            const float *wr = wf + n * K;
            double aw = 0, sw = 0, exact = 0;
            for (int64_t k = 0; k < K; k++) { aw = fmax(aw, fabs(wr[k])); sw += fabs(wr[k]); exact += (double)xr[k] * wr[k]; }
            double dx = ax / 127, dw = aw / 127;
            double bound = dx / 2 * sw + dw / 2 * sx + (double)K * dx * dw / 4;
            double got = y[t * N + n], diff = fabs(got - exact);
            cr_assert(diff <= bound * (1 + 1e-5) + 1e-5 * fabs(exact),
                      "N=%lld K=%lld T=%lld t=%lld n=%lld: |%g - %g| = %g > bound %g", (long long)N, (long long)K,
                      (long long)T, (long long)t, (long long)n, got, exact, diff, bound);
        }
    }
    bj_rt_q8w_free(&q);
    free(wf);
    free(x);
    free(y);
}

Test(head_q8, within_the_rounding_bound_over_shapes) {
    static const int64_t shapes[][3] = { { 1, 1, 1 },    { 3, 31, 1 },   { 17, 32, 2 },   { 64, 33, 1 },
                                         { 5, 100, 7 },  { 129, 257, 1 }, { 33, 2560, 3 }, { 1000, 384, 1 },
                                         { 7, 4097, 16 }, { 300, 2560, 1 } };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], 0x9e3779b97f4a7c15ull + i);
}

Test(head_q8, kjv_logits_close_to_the_oracle, .timeout = 300) {
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/kjv-bitnet-11m/packed", BJ_SOURCE_DIR);
    bj_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_model_load(&m, path, &err), BJ_OK, "%s", err.msg);
    bj_jit_options opt;
    bj_jit_options_default(&opt);
    cr_expect(!opt.head_q8, "the exact head must stay the default");
    opt.n_threads = 2;
    opt.head_q8 = true;
    bj_engine *e;
    bj_jit_report r;
    cr_assert_eq(bj_jit_engine_create(&e, &m.graph, &opt, &r, &err), BJ_OK, "%s", err.msg);
    cr_expect(r.head_q8);
    /* bench's bytes per token: the head counts at its int8 size instead of its float size. */
    const bj_node *head = NULL;
    for (uint32_t i = 0; i < m.graph.n_nodes; i++)
        if (m.graph.nodes[i].op == BJ_OP_MATMUL_F) head = &m.graph.nodes[m.graph.nodes[i].in[1]];
    cr_assert(head);
    uint64_t exact = bj_bench_bytes_per_token(&m.graph, 0, false, 0, 0), q8 = bj_bench_bytes_per_token(&m.graph, 0, true, 0, 0);
    cr_expect_eq(exact - q8, head->nbytes - bj_rt_q8w_bytes(head->shape.d[0], head->shape.d[1]));
    cr_expect_geq(exact, head->nbytes);
    float *logits = malloc((size_t)e->n_vocab * sizeof *logits);
    json_t *prompts = json_object_get(o, "prompts");
    double worst = 0;
    for (size_t p = 0; p < json_array_size(prompts); p++) {
        json_t *pr = json_array_get(prompts, p), *want = json_object_get(pr, "packed_last_logits");
        size_t n_ids;
        int32_t *ids = bj_test_ids(json_object_get(pr, "ids"), &n_ids);
        cr_assert_eq(json_array_size(want), (size_t)e->n_vocab);
        bj_engine_reset(e);
        cr_assert_eq(bj_engine_forward(e, ids, (int64_t)n_ids, false, logits, &err), BJ_OK, "%s", err.msg);
        double md = 0;
        size_t top_want = 0, top_got = 0;
        for (size_t v = 0; v < json_array_size(want); v++) {
            double wv = json_real_value(json_array_get(want, v));
            md = fmax(md, fabs(wv - logits[v]));
            if (wv > json_real_value(json_array_get(want, top_want))) top_want = v;
            if (logits[v] > logits[top_got]) top_got = v;
        }
        worst = fmax(worst, md);
        cr_expect_leq(md, 0.1, "prompt %zu: max |q8 head - oracle| = %g", p, md);
        cr_expect_eq(top_got, top_want, "prompt %zu: top-1 %zu, oracle %zu", p, top_got, top_want);
        free(ids);
    }
    fprintf(stderr, "q8 head on kjv packed: max |logit - oracle| = %.4f over %zu prompts\n", worst,
            json_array_size(prompts));
    free(logits);
    bj_engine_free(e);
    bj_model_free(&m);
    json_decref(o);
}
