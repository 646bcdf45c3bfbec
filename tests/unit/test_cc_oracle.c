/* tests/unit/test_cc_oracle.c -- the compiled graph still computes the model: for the kjv
 * packed and master checkpoints (and the 1-bit master), run the pass pipeline in full and
 * with each pass disabled in turn, then on the reference engine and the JIT engine check
 *   - the prompt's last-position logits are bit-identical to the uncompiled graph's (every
 *     pass is exact: fusions round as the ops they replace, quantize-weights is ops.c's rule);
 *   - the first N_GREEDY greedy ids equal the HF oracle's (models/.../oracle.json).
 * One prompt, 16 tokens, to keep it fast (each prompt's tokens run once). Links bj_runtime (tests/CMakeLists.txt pass block). */
#include "compiler/compiler.h"
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <string.h>

#include "support/oracle_check.h"

#define N_GREEDY 16
#define PROMPT_INDEX 1

typedef struct cc_case {
    const char *model, *oracle, *key;
    int32_t *ids, *greedy;
    size_t n_ids, n_greedy;
    float *base_logits; /* uncompiled graph, reference engine */
    int64_t n_vocab;
} cc_case;

static bj_engine *cc_engine(const char *kind, const bj_graph *g) {
    return bj_test_engine(kind, g, BJ_TEST_TMP "/cc-oracle-cache", NULL, NULL);
}

/* Loads the model and, unless opts is NULL, runs the pipeline on its graph. */
static void cc_load(bj_model *m, const cc_case *c, const bj_pipeline_opts *opts, const char *what) {
    char path[4096];
    bj_error err = { 0 };
    snprintf(path, sizeof path, "%s/%s", BJ_SOURCE_DIR, c->model);
    cr_assert_eq(bj_model_load(m, path, &err), BJ_OK, "load %s: %s", path, err.msg);
    if (opts) cr_assert_eq(bj_pipeline_run(&m->graph, opts, &err), BJ_OK, "%s: pipeline (%s): %s", c->key, what, err.msg);
}

static void cc_case_init(cc_case *c, const char *model, const char *oracle, const char *key) {
    bj_error err = { 0 };
    *c = (cc_case){ .model = model, .oracle = oracle, .key = key };
    json_t *o = bj_test_load_json(oracle);
    bj_oracle_prompt p;
    bj_test_oracle_prompt(json_array_get(json_object_get(o, "prompts"), PROMPT_INDEX), key, &p);
    c->ids = p.ids, c->n_ids = p.n_ids;
    c->greedy = p.greedy, c->n_greedy = p.n_greedy;
    cr_assert_geq(c->n_greedy, N_GREEDY);
    json_decref(o);
    bj_model m;
    cc_load(&m, c, NULL, "none");
    bj_engine *e = cc_engine("ref", &m.graph);
    c->n_vocab = e->n_vocab;
    c->base_logits = malloc((size_t)c->n_vocab * sizeof *c->base_logits);
    cr_assert_eq(bj_engine_forward(e, c->ids, (int64_t)c->n_ids, false, c->base_logits, &err), BJ_OK, "%s", err.msg);
    bj_engine_free(e);
    bj_model_free(&m);
}

static void cc_case_free(cc_case *c) {
    free(c->ids);
    free(c->greedy);
    free(c->base_logits);
}

/* Greedy decoding by hand (the sampler's greedy rule), so the prompt runs once: its logits
 * are compared with the uncompiled graph's, then N_GREEDY ids with the oracle's. */
static void cc_greedy(const cc_case *c, bj_engine *e, float *logits, int32_t *got, const char *what) {
    bj_error err = { 0 };
    bj_sampler s;
    bj_test_greedy_sampler(&s, e->n_vocab);
    cr_assert_eq(bj_engine_forward(e, c->ids, (int64_t)c->n_ids, false, logits, &err), BJ_OK, "%s", err.msg);
    cr_expect_arr_eq(logits, c->base_logits, (size_t)c->n_vocab * sizeof *logits,
                     "%s %s [%s]: last logits differ from the uncompiled graph's", c->model, e->name, what);
    for (int t = 0; t < N_GREEDY; t++) {
        got[t] = bj_sampler_sample(&s, logits, e->n_vocab);
        if (t + 1 < N_GREEDY)
            cr_assert_eq(bj_engine_forward(e, &got[t], 1, false, logits, &err), BJ_OK, "%s", err.msg);
    }
    bj_sampler_free(&s);
}

/* One configuration: pipeline opts as given, one engine kind. */
static void cc_check(const cc_case *c, const bj_pipeline_opts *opts, const char *what, const char *kind) {
    bj_model m;
    cc_load(&m, c, opts, what);
    bj_engine *e = cc_engine(kind, &m.graph);
    float *logits = malloc((size_t)c->n_vocab * sizeof *logits);
    int32_t got[N_GREEDY];
    cc_greedy(c, e, logits, got, what);
    int first = bj_test_first_diff(got, c->greedy, N_GREEDY);
    cr_expect_eq(first, -1, "%s %s [%s]: greedy ids differ from the oracle first at %d", c->model, kind, what, first);
    printf("[%s %s] %-34s ok=%d\n", c->model, kind, what, first < 0);
    free(logits);
    bj_engine_free(e);
    bj_model_free(&m);
}

/* The full pipeline, then each pass disabled in turn. */
static void cc_all_configs(const char *model, const char *oracle, const char *key, const char *kind) {
    cc_case c;
    cc_case_init(&c, model, oracle, key);
    bj_pipeline_opts o;
    bj_pipeline_opts_default(&o);
    o.verify_each = true;
    o.plan_tokens = 64;
    cc_check(&c, &o, "full pipeline", kind);
    for (const char *const *p = bj_pipeline_pass_names(); *p; p++) {
        char what[96];
        snprintf(what, sizeof what, "--disable=%s", *p);
        o.disable = *p;
        cc_check(&c, &o, what, kind);
    }
    cc_case_free(&c);
}

Test(cc_oracle, kjv_packed_ref, .timeout = 600) {
    cc_all_configs("models/kjv-bitnet-11m/packed", "models/kjv-bitnet-11m/oracle.json", "packed", "ref");
}
Test(cc_oracle, kjv_master_ref, .timeout = 600) {
    cc_all_configs("models/kjv-bitnet-11m/master", "models/kjv-bitnet-11m/oracle.json", "master", "ref");
}
Test(cc_oracle, kjv_packed_jit, .timeout = 600) {
    cc_all_configs("models/kjv-bitnet-11m/packed", "models/kjv-bitnet-11m/oracle.json", "packed", "jit");
}
Test(cc_oracle, kjv_master_jit, .timeout = 600) {
    cc_all_configs("models/kjv-bitnet-11m/master", "models/kjv-bitnet-11m/oracle.json", "master", "jit");
}

/* The 1-bit model exercises quantize-weights' binary mode (b1, one bit a weight) and the
 * binary kernel select-kernels picks for it; full pipeline only. */
Test(cc_oracle, kjv_binary_master_full, .timeout = 600) {
    cc_case c;
    cc_case_init(&c, "models/kjv-bitnet1-11m/master", "models/kjv-bitnet1-11m/oracle.json", "master");
    bj_pipeline_opts o;
    bj_pipeline_opts_default(&o);
    cc_check(&c, &o, "full pipeline", "ref");
    cc_check(&c, &o, "full pipeline", "jit");
    cc_case_free(&c);
}
