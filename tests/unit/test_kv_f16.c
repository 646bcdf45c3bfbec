/* tests/unit/test_kv_f16.c -- the f16 KV cache (`--kv f16`, bj_jit_options.kv,
 * bj_ref_engine_create_kv), tested as the q8 head is (test_head_q8.c):
 * (1) attention over an f16 cache stays within its analytic bound of the f32 cache's result
 *     over random shapes (test_rt_ops.c's attention_equals_the_strided_sum, which also checks
 *     the f16 rounding against the CPU's own vcvtps2ph);
 * (2) on the bundled kjv model the JIT engine with an f16 cache gives the reference engine's
 *     bits with an f16 cache (all positions of a long prompt, then decode steps), its last
 *     logits stay within 0.1 of the oracle's (HF transformers, f32 cache) with the oracle's
 *     top-1 token for every prompt, and within 0.1 of our own f32 cache's; f32 stays the default;
 * (3) bench's bytes per token count the KV cache at 2 bytes a value instead of 4. */
#include "runtime/bench.h"
#include "runtime/ops.h"
#include "runtime/runtime.h"
#include "support/oracle.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static bj_engine *jit_kv(const bj_graph *g, bj_kv_type kv) {
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.kv = kv;
    o.no_autotune = true; /* the kernels do not matter here: every one is exact */
    o.cache_dir = BJ_TEST_TMP "/kv-f16-cache";
    bj_engine *e;
    bj_error err = { 0 };
    cr_assert_eq(bj_jit_engine_create(&e, g, &o, NULL, &err), BJ_OK, "%s", err.msg);
    return e;
}

static void load_kjv(bj_model *m) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/kjv-bitnet-11m/packed", BJ_SOURCE_DIR);
    bj_error err = { 0 };
    cr_assert_eq(bj_model_load(m, path, &err), BJ_OK, "%s", err.msg);
}

Test(kv_f16, jit_equals_the_reference_with_an_f16_cache, .timeout = 300) {
    bj_model m;
    load_kjv(&m);
    bj_jit_options d;
    bj_jit_options_default(&d);
    cr_expect_eq(d.kv, BJ_KV_F32, "the f32 cache must stay the default");
    bj_engine *e = jit_kv(&m.graph, BJ_KV_F16), *ref;
    bj_error err = { 0 };
    cr_assert_eq(bj_ref_engine_create_kv(&ref, &m.graph, 0, BJ_KV_F16, &err), BJ_OK, "%s", err.msg);
    enum { N = 40 };
    size_t V = (size_t)e->n_vocab;
    float *a = malloc(N * V * sizeof *a), *b = malloc(N * V * sizeof *b);
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = (int32_t)((i * 977 + 13) % 4000);
    cr_assert_eq(bj_engine_forward(ref, toks, N, true, a, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_engine_forward(e, toks, N, true, b, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(memcmp(a, b, N * V * sizeof *a), 0, "prefill logits differ from the reference engine's");
    for (int s = 0; s < 8; s++) {
        int32_t next = 7 + 31 * s;
        cr_assert_eq(bj_engine_forward(ref, &next, 1, false, a, &err), BJ_OK, "%s", err.msg);
        cr_assert_eq(bj_engine_forward(e, &next, 1, false, b, &err), BJ_OK, "%s", err.msg);
        cr_expect_eq(memcmp(a, b, V * sizeof *a), 0, "decode step %d: logits differ from the reference engine's", s);
    }
    bj_engine *bad = NULL;
    cr_expect_neq(bj_ref_engine_create_kv(&bad, &m.graph, 0, 7, &err), BJ_OK, "an unknown KV type is refused");
    cr_expect_null(bad, "a refused engine is not handed out");
    free(a);
    free(b);
    bj_engine_free(e);
    bj_engine_free(ref);
    bj_model_free(&m);
}

Test(kv_f16, kjv_logits_close_to_the_oracle_and_to_f32, .timeout = 300) {
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    bj_model m;
    load_kjv(&m);
    bj_engine *e16 = jit_kv(&m.graph, BJ_KV_F16), *e32 = jit_kv(&m.graph, BJ_KV_F32);
    bj_error err = { 0 };
    float *l16 = malloc((size_t)e16->n_vocab * sizeof *l16), *l32 = malloc((size_t)e16->n_vocab * sizeof *l32);
    json_t *prompts = json_object_get(o, "prompts");
    double worst_oracle = 0, worst_f32 = 0;
    for (size_t p = 0; p < json_array_size(prompts); p++) {
        json_t *pr = json_array_get(prompts, p), *want = json_object_get(pr, "packed_last_logits");
        size_t n_ids;
        int32_t *ids = bj_test_ids(json_object_get(pr, "ids"), &n_ids);
        cr_assert_eq(json_array_size(want), (size_t)e16->n_vocab);
        bj_engine_reset(e16);
        bj_engine_reset(e32);
        cr_assert_eq(bj_engine_forward(e16, ids, (int64_t)n_ids, false, l16, &err), BJ_OK, "%s", err.msg);
        cr_assert_eq(bj_engine_forward(e32, ids, (int64_t)n_ids, false, l32, &err), BJ_OK, "%s", err.msg);
        double mo = 0, mf = 0;
        size_t top_want = 0, top_got = 0;
        for (size_t v = 0; v < json_array_size(want); v++) {
            double wv = json_real_value(json_array_get(want, v));
            mo = fmax(mo, fabs(wv - l16[v]));
            mf = fmax(mf, fabs((double)l32[v] - l16[v]));
            if (wv > json_real_value(json_array_get(want, top_want))) top_want = v;
            if (l16[v] > l16[top_got]) top_got = v;
        }
        worst_oracle = fmax(worst_oracle, mo);
        worst_f32 = fmax(worst_f32, mf);
        cr_expect_leq(mo, 0.1, "prompt %zu: max |f16 KV - oracle| = %g", p, mo);
        cr_expect_leq(mf, 0.1, "prompt %zu: max |f16 KV - f32 KV| = %g", p, mf);
        cr_expect_eq(top_got, top_want, "prompt %zu: top-1 %zu, oracle %zu", p, top_got, top_want);
        free(ids);
    }
    fprintf(stderr, "f16 KV on kjv packed: max |logit - oracle| = %.4f, max |logit - f32 KV| = %.4f over %zu prompts\n",
            worst_oracle, worst_f32, json_array_size(prompts));
    free(l16);
    free(l32);
    bj_engine_free(e16);
    bj_engine_free(e32);
    bj_model_free(&m);
    json_decref(o);
}

Test(kv_f16, bench_counts_kv_bytes_at_the_kv_type) {
    bj_model m;
    load_kjv(&m);
    uint64_t kv_values = 0; /* K and V values a position adds over all layers */
    for (uint32_t i = 0; i < m.graph.n_nodes; i++)
        if (m.graph.nodes[i].op == BJ_OP_ATTENTION)
            kv_values += 2 * (uint64_t)(m.graph.nodes[i].iattr[2] * m.graph.nodes[i].iattr[3]);
    cr_assert_gt(kv_values, 0);
    const int64_t pos = 1024;
    uint64_t w = bj_bench_bytes_per_token(&m.graph, 0, false, 0, BJ_KV_F32);
    uint64_t f32 = bj_bench_bytes_per_token(&m.graph, 0, false, pos, BJ_KV_F32);
    uint64_t f16 = bj_bench_bytes_per_token(&m.graph, 0, false, pos, BJ_KV_F16);
    cr_expect_eq(bj_bench_bytes_per_token(&m.graph, 0, false, 0, BJ_KV_F16), w, "no KV at position 0");
    cr_expect_eq(f32 - w, (uint64_t)pos * kv_values * 4);
    cr_expect_eq(f16 - w, (uint64_t)pos * kv_values * 2);
    bj_model_free(&m);
}
