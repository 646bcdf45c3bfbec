/* tests/unit/test_head_q8.c -- the 8-bit LM head (`--head q8`, runtime/ops.h bj_rt_matmul_q8):
 * (1) over random shapes (odd K, N, T = 1 and many), every output is within the analytic bound
 *     of int8 rounding against a double-precision dot of the same float inputs:
 *       |y - x.w| <= d_x/2 sum|w| + d_w/2 sum|x| + K d_x d_w / 4   (+ f32 slack),
 *     with d = absmax / 127 of the token row and of the weight row, and equals bit for bit
 *     the plain integer dot of the int8 rows (whichever SIMD path the CPU runs);
 * (2) on the bundled kjv model through the JIT engine, the last logits stay within 0.1 of the
 *     oracle's (HF transformers, exact head) and the oracle's top-1 token is unchanged for
 *     every prompt; the exact head stays the default;
 * (3) the 8-bit head is the quantize-head pass's (compiler/passes/quantize_head.c): --print-after-all
 *     shows it after that pass, the plan's int8 rows are the documented rule computed here
 *     from the float weight (absmax per row, lrintf(x * 127 / amax), rows padded to 32), and
 *     leaving the pass out with --head q8 is an error naming it (no silent exact head). */
#include "compiler/compiler.h"
#include "ir/weights.h"
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

/* The rule (ir/weights.h bj_ir_q8_row, whichever SIMD path the CPU takes) against its statement
 * computed here in scalar C: absmax, lrintf(x * (127 / amax)) as int8, zero padding, scale amax/127;
 * rows of every length mod 8, ties at .5 (rounding to even), an all-zero row. */
Test(head_q8, row_rule_matches_its_statement) {
    uint64_t s = 42;
    float x[300];
    int8_t q[320];
    for (int n = 1; n <= 300; n += (n < 40 ? 1 : 37)) {
        for (int k = 0; k < n; k++) x[k] = k % 11 == 3 ? (float)(k % 5) - 2.5f : frand(&s) * (k % 3 ? 1.0f : 9.0f);
        if (n == 17) memset(x, 0, sizeof x);
        if (n == 9) x[4] = 127.0f, x[5] = -0.5f, x[6] = 1.5f, x[7] = 2.5f;
        int64_t S = bj_ir_q8_stride(n);
        memset(q, 0x55, sizeof q);
        float d = bj_ir_q8_row(x, n, S, q), amax = 0;
        for (int k = 0; k < n; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
        float inv = amax > 0 ? 127.0f / amax : 0, want_d = amax / 127.0f;
        cr_expect_eq(memcmp(&d, &want_d, sizeof d), 0, "n=%d: scale %.9g, want %.9g", n, d, want_d);
        for (int64_t k = 0; k < S; k++) {
            int want = k < n ? (int8_t)lrintf(x[k] * inv) : 0;
            cr_expect_eq(q[k], want, "n=%d k=%lld: %d, want %d", n, (long long)k, q[k], want);
        }
    }
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

static void load_kjv_packed(bj_model *m) {
    char path[4096];
    bj_error err = { 0 };
    snprintf(path, sizeof path, "%s/models/kjv-bitnet-11m/packed", BJ_SOURCE_DIR);
    cr_assert_eq(bj_model_load(m, path, &err), BJ_OK, "%s", err.msg);
}

/* The JIT's pipeline (bj_jit_compile, as bitjit run runs it) with --print-after-all into *dump. */
static bj_status compile_q8(const bj_graph *g, bool q8, const char *disable, bj_graph *own, bj_plan *plan, char **dump,
                            bj_error *err) {
    size_t len = 0;
    FILE *f = open_memstream(dump, &len);
    cr_assert(f);
    bj_pipeline_opts po;
    bj_pipeline_opts_default(&po);
    po.print_after_all = true;
    po.disable = disable;
    po.out = f;
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.no_cache = true;
    o.no_tune_db = true;
    o.head_q8 = q8;
    o.pipeline = &po;
    bj_status st = bj_jit_compile(g, &o, own, plan, err);
    fclose(f);
    return st;
}

static uint32_t find_head(const bj_graph *g) {
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == BJ_OP_MATMUL_F) return i;
    cr_assert_fail("no matmul_f");
    return 0;
}

Test(head_q8, print_after_all_shows_quantize_head, .timeout = 300) {
    bj_model m;
    bj_error err = { 0 };
    load_kjv_packed(&m);
    bj_graph own;
    bj_plan plan;
    char *dump = NULL;
    cr_assert_eq(compile_q8(&m.graph, true, NULL, &own, &plan, &dump, &err), BJ_OK, "%s", err.msg);
    const char *after = strstr(dump, "# *** IR Dump After quantize-head ***");
    cr_assert(after, "no dump after quantize-head");
    const char *next = strstr(after + 1, "# *** IR Dump");
    uint32_t h = find_head(&own);
    const bj_node *w = &own.nodes[own.nodes[h].in[1]];
    int64_t N = w->shape.d[0], K = w->shape.d[1], S = (K + 31) / 32 * 32;
    char want[128];
    snprintf(want, sizeof want, "# head %%%u: q8, int8 rows of %lld bytes", h, (long long)S);
    const char *line = strstr(after, want);
    cr_expect(line && (!next || line < next), "the dump after quantize-head has no '%s'", want);
    cr_expect(line && strstr(line, "in the plan"), "the head's bytes are not in the plan");
    const char *before = strstr(dump, "# *** IR Dump After pack-weights ***");
    cr_expect(before && !memmem(before, (size_t)(after - before), "# head %", 8), "a head line before quantize-head");
    /* The plan's bytes against the rule, computed here from the float weight. */
    const bj_plan_kernel *k = &plan.kern[h];
    cr_assert_eq(k->head, BJ_PLAN_HEAD_Q8);
    cr_assert_eq(k->head_stride, S);
    cr_assert(k->packed);
    const int8_t *q = (const int8_t *)k->packed;
    const float *d = (const float *)(k->packed + N * S);
    int64_t bad = 0;
    for (int64_t n = 0; n < N; n++) {
        float amax = 0;
        for (int64_t c = 0; c < K; c++) amax = fmaxf(amax, fabsf(bj_ir_weight_float(w->dtype, w->data, (uint64_t)(n * K + c))));
        float inv = amax > 0 ? 127.0f / amax : 0, dn = amax / 127.0f;
        bad += memcmp(&d[n], &dn, sizeof dn) != 0;
        for (int64_t c = 0; c < S; c++) {
            long v = c < K ? lrintf(bj_ir_weight_float(w->dtype, w->data, (uint64_t)(n * K + c)) * inv) : 0;
            bad += q[n * S + c] != v;
        }
    }
    cr_expect_eq(bad, 0, "%lld bytes of the 8-bit head differ from the rule", (long long)bad);
    free(dump);
    bj_plan_free(&plan);
    bj_graph_free(&own);
    /* Without --head q8 the pass leaves the head exact and prints no head line. */
    cr_assert_eq(compile_q8(&m.graph, false, NULL, &own, &plan, &dump, &err), BJ_OK, "%s", err.msg);
    cr_expect(strstr(dump, "# *** IR Dump After quantize-head ***"));
    cr_expect(!strstr(dump, "# head %"));
    cr_expect_neq(plan.kern[find_head(&own)].head, BJ_PLAN_HEAD_Q8);
    cr_expect_null(plan.kern[find_head(&own)].packed);
    free(dump);
    bj_plan_free(&plan);
    bj_graph_free(&own);
    bj_model_free(&m);
}

/* --head q8 with the pass left out: an error naming it, from the pipeline and from engine creation. */
Test(head_q8, disabled_pass_is_an_error, .timeout = 300) {
    bj_model m;
    bj_error err = { 0 };
    load_kjv_packed(&m);
    bj_graph own;
    bj_plan plan;
    char *dump = NULL;
    cr_assert_eq(compile_q8(&m.graph, true, "quantize-head", &own, &plan, &dump, &err), BJ_E_INVALID);
    cr_expect(strstr(err.msg, "quantize-head") && strstr(err.msg, "--head q8"), "message: %s", err.msg);
    cr_expect(!strstr(dump, "IR Dump After quantize-head"));
    free(dump);
    bj_pipeline_opts po;
    bj_pipeline_opts_default(&po);
    po.disable = "quantize-head";
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.no_cache = true;
    o.head_q8 = true;
    o.pipeline = &po;
    bj_engine *e = NULL;
    err = (bj_error){ 0 };
    cr_expect_eq(bj_jit_engine_create(&e, &m.graph, &o, NULL, &err), BJ_E_INVALID);
    cr_expect_null(e);
    cr_expect(strstr(err.msg, "quantize-head"), "message: %s", err.msg);
    /* The exact head does not need the pass. */
    o.head_q8 = false;
    cr_assert_eq(bj_jit_engine_create(&e, &m.graph, &o, NULL, &err), BJ_OK, "%s", err.msg);
    bj_engine_free(e);
    bj_model_free(&m);
}
