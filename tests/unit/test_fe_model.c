/* tests/unit/test_fe_model.c -- model import: the bundled model builds a verified graph whose
 * text form round-trips; broken models fail with errors naming what is wrong. */
#include "frontends/model.h"
#include "support/fixtures.h"

#include <criterion/criterion.h>
#include <string.h>

static bj_status load(const char *dir, bj_model *m, bj_error *err) {
    memset(err, 0, sizeof *err);
    return bj_model_load(m, dir, err);
}

Test(fe_model, packed_graph_round_trips) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/kjv-bitnet-11m/packed", BJ_SOURCE_DIR);
    bj_model m;
    bj_error err;
    cr_assert_eq(load(path, &m, &err), BJ_OK, "%s", err.msg);
    char *a, *b;
    cr_assert_eq(bj_ir_print_str(&m.graph, &a, &err), BJ_OK);
    /* weights print as references, not data */
    cr_assert(strstr(a, "weight \"model.layers.5.mlp.down_proj.weight\"") != NULL);
    cr_assert(strstr(a, ": t2hf[384,1024]") != NULL);
    cr_assert_lt(strlen(a), 64 * 1024, "printed graph is %zu bytes: weights must not be printed", strlen(a));
    bj_graph g2;
    cr_assert_eq(bj_ir_parse(&g2, a, strlen(a), &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_ir_verify(&g2, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_ir_print_str(&g2, &b, &err), BJ_OK);
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
    bj_graph_free(&g2);
    bj_model_free(&m);
}

Test(fe_model, master_uses_weight_quant) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/kjv-bitnet1-11m/master", BJ_SOURCE_DIR);
    bj_model m;
    bj_error err;
    cr_assert_eq(load(path, &m, &err), BJ_OK, "%s", err.msg);
    int n_quant = 0;
    for (uint32_t i = 0; i < m.graph.n_nodes; i++)
        if (m.graph.nodes[i].op == BJ_OP_WEIGHT_QUANT) {
            n_quant++;
            cr_assert_eq(m.graph.nodes[i].iattr[0], 1, "binary model must use mode 1");
            cr_assert_eq(m.graph.nodes[i].dtype, BJ_DT_B8);
        }
    cr_assert_eq(n_quant, 6 * 7);
    bj_model_free(&m);
}

static void rename_q0(json_t *h) {
    json_t *t = json_object_get(h, "model.layers.0.self_attn.q_proj.weight");
    json_object_set(h, "model.layers.0.self_attn.q_proj.weight_renamed", t);
    json_object_del(h, "model.layers.0.self_attn.q_proj.weight");
}

Test(fe_model, missing_tensor) {
    char dir[4096];
    bj_test_model_copy("missing_tensor", rename_q0, dir, sizeof dir);
    bj_model m;
    bj_error err;
    cr_assert_neq(load(dir, &m, &err), BJ_OK);
    cr_assert(strstr(err.msg, "missing tensor 'model.layers.0.self_attn.q_proj.weight'"), "%s", err.msg);
}

static void transpose_k3(json_t *h) {
    json_t *t = json_object_get(json_object_get(h, "model.layers.3.self_attn.k_proj.weight"), "shape");
    json_t *a = json_array_get(t, 0), *b = json_array_get(t, 1);
    json_int_t x = json_integer_value(a), y = json_integer_value(b);
    json_integer_set(a, y);
    json_integer_set(b, x);
}

Test(fe_model, wrong_shape) {
    char dir[4096];
    bj_test_model_copy("wrong_shape", transpose_k3, dir, sizeof dir);
    bj_model m;
    bj_error err;
    cr_assert_neq(load(dir, &m, &err), BJ_OK);
    cr_assert(strstr(err.msg, "model.layers.3.self_attn.k_proj.weight") && strstr(err.msg, "expected"), "%s", err.msg);
}

static void scale_to_u8(json_t *h) {
    json_object_set_new(json_object_get(h, "model.layers.2.mlp.up_proj.weight_scale"), "dtype", json_string("I16"));
}

Test(fe_model, wrong_dtype) {
    char dir[4096];
    bj_test_model_copy("wrong_dtype", scale_to_u8, dir, sizeof dir);
    bj_model m;
    bj_error err;
    cr_assert_neq(load(dir, &m, &err), BJ_OK);
    cr_assert(strstr(err.msg, "model.layers.2.mlp.up_proj.weight_scale"), "%s", err.msg);
}

Test(fe_model, config_missing_field) {
    char dir[4096], p[4200];
    bj_test_model_copy("config_missing", NULL, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    bj_test_write_text(p, "{\"architectures\":[\"BitNetForCausalLM\"],\"hidden_size\":384,"
                          "\"intermediate_size\":1024,\"num_attention_heads\":6,\"vocab_size\":4096}");
    bj_model m;
    bj_error err;
    cr_assert_neq(load(dir, &m, &err), BJ_OK);
    cr_assert(strstr(err.msg, "num_hidden_layers") && strstr(err.msg, "config.json"), "%s", err.msg);
}

Test(fe_model, config_wrong_type) {
    char dir[4096], p[4200];
    bj_test_model_copy("config_type", NULL, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    bj_test_write_text(p, "{\"architectures\":[\"BitNetForCausalLM\"],\"hidden_size\":\"384\",\"num_hidden_layers\":6,"
                          "\"intermediate_size\":1024,\"num_attention_heads\":6,\"vocab_size\":4096}");
    bj_model m;
    bj_error err;
    cr_assert_neq(load(dir, &m, &err), BJ_OK);
    cr_assert(strstr(err.msg, "hidden_size"), "%s", err.msg);
}

Test(fe_model, tokenizer_malformed) {
    char dir[4096], p[4200];
    bj_test_model_copy("tok_bad", NULL, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    bj_test_write_text(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": [1,2,3]");
    bj_model m;
    bj_error err;
    cr_assert_neq(load(dir, &m, &err), BJ_OK);
    cr_assert(strstr(err.msg, "tokenizer.json"), "%s", err.msg);
}

Test(fe_model, path_does_not_exist) {
    bj_model m;
    bj_error err;
    cr_assert_eq(load("/nonexistent/bitjit/model", &m, &err), BJ_E_IO);
    cr_assert(strstr(err.msg, "/nonexistent/bitjit/model") && strstr(err.msg, "does not exist"), "%s", err.msg);
}

Test(fe_model, unsupported_file) {
    char p[4096];
    snprintf(p, sizeof p, "%s/models/kjv-bitnet-11m/heldout.txt", BJ_SOURCE_DIR);
    bj_model m;
    bj_error err;
    cr_assert_eq(load(p, &m, &err), BJ_E_UNSUPPORTED);
    cr_assert(strstr(err.msg, "heldout.txt"), "%s", err.msg);
}
