/* tests/unit/test_e2e_oracle.c -- the whole path (import, tokenizer, engine, greedy
 * generation) against the oracles, for the reference engine and the JIT engine: HF transformers for kjv-bitnet-11m (packed and
 * master), the training code's own forward for the 1-bit kjv-bitnet1-11m. For every prompt:
 * identical prompt ids, last-position logits within 0.05 max abs, identical 48 greedy ids
 * (support/oracle_check.h; two prompts at a rounding boundary of the oracle: within 0.15, same top-5). */
#include "runtime/runtime.h"

#include <criterion/criterion.h>

#include "support/oracle_check.h"

/* The prompts, logits and greedy ids (support/oracle_check.h: tolerances and the prompts at an
 * int8 rounding boundary of the oracle's machine) through a fresh engine of the given kind. */
static void check_model(const char *model_rel, const char *oracle_rel, const char *key, const char *kind) {
    char path[4096], what[4200];
    snprintf(path, sizeof path, "%s/%s", BJ_SOURCE_DIR, model_rel);
    snprintf(what, sizeof what, "%s %s, %s", kind, model_rel, key);
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, path, &err), BJ_OK, "load %s: %s", path, err.msg);
    bj_engine *e = bj_test_engine(kind, &m.graph, BJ_TEST_TMP "/e2e-cache", NULL, NULL);
    bj_test_oracle_check(e, m.tok, &(bj_oracle_check){ .oracle = oracle_rel, .key = key, .what = what,
                                                        .add_bos = true, .logits = true });
    bj_engine_free(e);
    bj_model_free(&m);
}

#define ORACLE_TESTS(kind, suffix)                                                                       \
    Test(e2e_oracle, kjv_packed_##suffix, .timeout = 600) {                                              \
        check_model("models/kjv-bitnet-11m/packed", "models/kjv-bitnet-11m/oracle.json", "packed", kind); \
    }                                                                                                    \
    Test(e2e_oracle, kjv_master_sharded_##suffix, .timeout = 600) {                                      \
        check_model("models/kjv-bitnet-11m/master", "models/kjv-bitnet-11m/oracle.json", "master", kind); \
    }                                                                                                    \
    Test(e2e_oracle, kjv_binary_master_##suffix, .timeout = 600) {                                       \
        check_model("models/kjv-bitnet1-11m/master", "models/kjv-bitnet1-11m/oracle.json", "master", kind); \
    }

ORACLE_TESTS("ref", ref)
ORACLE_TESTS("jit", jit)
ORACLE_TESTS("jit-x86-64", jit_x86_64)
