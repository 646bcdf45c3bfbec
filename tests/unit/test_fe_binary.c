/* tests/unit/test_fe_binary.c -- importing binary (1-bit BitNet) models (issue 10): masters
 * under weight_quant "binary" become weight_quant mode 1 (b8 values), bitjit's 1-bit packing
 * becomes b1 weights; and the bad inputs give errors naming the tensor and the key: a binary
 * config over packed ternary (HF bitlinear U8) tensors, 1-bit tensors under a ternary config,
 * an unknown weight_quant, and `bitjitc convert --type b1` of a ternary model. Models are
 * assembled in temporary directories from the bundled files with an edited config.json. */
#include "frontends/b1_model.h"
#include "frontends/model.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KJV_PACKED BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed"
#define KJV1_MASTER BJ_SOURCE_DIR "/models/kjv-bitnet1-11m/master"

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/fe-binary-%d-%s", BJ_TEST_TMP, (int)getpid(), name);
}

/* dst/: symlinks to every file of src except config.json, which is src's with
 * quantization_config.weight_quant set to wq (NULL: removed). */
static void model_with_wq(const char *src, const char *dst, const char *wq) {
    static const char *const files[] = { "model.safetensors", "model.safetensors.index.json",
                                         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                         "tokenizer.json", "tokenizer_config.json", "generation_config.json" };
    char a[4096], b[4096];
    cr_assert(mkdir(dst, 0777) == 0 || access(dst, F_OK) == 0);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dst, files[i]);
        unlink(b);
        if (access(a, F_OK) == 0) cr_assert_eq(symlink(a, b), 0, "symlink %s", b);
    }
    snprintf(a, sizeof a, "%s/config.json", src);
    snprintf(b, sizeof b, "%s/config.json", dst);
    json_error_t je;
    json_t *cfg = json_load_file(a, 0, &je), *q = json_object_get(cfg, "quantization_config");
    cr_assert(json_is_object(q));
    if (wq) json_object_set_new(q, "weight_quant", json_string(wq));
    else json_object_del(q, "weight_quant");
    cr_assert_eq(json_dump_file(cfg, b, JSON_INDENT(2)), 0);
    json_decref(cfg);
}

static void rm_dir(const char *dir) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void expect_load_error(const char *dir, const char *want1, const char *want2) {
    bj_error err = { 0 };
    bj_model m;
    cr_assert_neq(bj_model_load(&m, dir, &err), BJ_OK, "%s loaded", dir);
    cr_expect(strstr(err.msg, want1), "message lacks \"%s\": %s", want1, err.msg);
    cr_expect(!want2 || strstr(err.msg, want2), "message lacks \"%s\": %s", want2, err.msg);
}

Test(fe_binary, masters_are_binary_weight_quant) {
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, KJV1_MASTER, &err), BJ_OK, "%s", err.msg);
    int n = 0;
    for (uint32_t i = 0; i < m.graph.n_nodes; i++) {
        const bj_node *nd = &m.graph.nodes[i];
        if (nd->op != BJ_OP_WEIGHT_QUANT) continue;
        cr_expect_eq(nd->iattr[0], 1, "mode 1: the 1-bit rule");
        cr_expect_eq(bj_dtype_class_of((bj_dtype)nd->dtype), BJ_DTC_BINARY);
        n++;
    }
    cr_expect_eq(n, 42);
    bj_model_free(&m);
}

Test(fe_binary, b1_directory_imports_as_b1) {
    char dir[4096];
    tmp_path(dir, sizeof dir, "b1");
    bj_error err = { 0 };
    bj_model m, b;
    cr_assert_eq(bj_model_load(&m, KJV1_MASTER, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_b1_convert(&m, KJV1_MASTER, dir, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_model_load(&b, dir, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(b.cfg.weight_quant, BJ_WQ_BINARY);
    uint64_t bytes = 0;
    int n = 0;
    for (uint32_t i = 0; i < b.graph.n_nodes; i++) {
        const bj_node *w = &b.graph.nodes[i];
        if (w->op != BJ_OP_WEIGHT || w->dtype != BJ_DT_B1) continue;
        n++;
        bytes += w->nbytes;
    }
    cr_expect_eq(n, 42);
    /* per layer 4 x 384x384 + 3 x 1024x384 weights (q, o; k, v are 128 rows), one bit each */
    uint64_t weights = 6 * (2 * 384 * 384 + 2 * 128 * 384 + 3 * 1024 * 384);
    cr_expect_eq(bytes, weights / 8, "b1 holds %llu bytes for %llu weights", (unsigned long long)bytes,
                 (unsigned long long)weights);
    bj_model_free(&b);
    bj_model_free(&m);
    rm_dir(dir);
}

Test(fe_binary, binary_config_with_packed_ternary_tensors) {
    char dir[4096];
    tmp_path(dir, sizeof dir, "ter-as-bin");
    model_with_wq(KJV_PACKED, dir, "binary");
    expect_load_error(dir, "tensor 'model.layers.0.", "_proj.weight' (");
    expect_load_error(dir, "is packed ternary (U8 [96,", "the HF bitlinear layout");
    expect_load_error(dir, "quantization_config.weight_quant \"binary\"", NULL);
    rm_dir(dir);
}

Test(fe_binary, b1_tensors_under_a_ternary_config) {
    char b1[4096], dir[4096];
    tmp_path(b1, sizeof b1, "b1-src");
    tmp_path(dir, sizeof dir, "bin-as-ter");
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, KJV1_MASTER, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_b1_convert(&m, KJV1_MASTER, b1, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    bj_model_free(&m);
    model_with_wq(b1, dir, "ternary");
    expect_load_error(dir, "tensor 'model.layers.0.", "_proj.weight' (");
    expect_load_error(dir, "has bitjit's 1-bit packing U8 [", NULL);
    expect_load_error(dir, "does not set quantization_config.weight_quant \"binary\"", NULL);
    rm_dir(dir);
    rm_dir(b1);
}

Test(fe_binary, unknown_weight_quant) {
    char dir[4096];
    tmp_path(dir, sizeof dir, "wq-int4");
    model_with_wq(KJV_PACKED, dir, "int4");
    expect_load_error(dir, "quantization_config.weight_quant 'int4'", "config.json");
    rm_dir(dir);
    tmp_path(dir, sizeof dir, "wq-master-trit");
    model_with_wq(KJV1_MASTER, dir, "trinary");
    expect_load_error(dir, "quantization_config.weight_quant 'trinary' (bitjit supports ternary, binary)", NULL);
    rm_dir(dir);
}

Test(fe_binary, convert_b1_refuses_ternary_models) {
    char dir[4096];
    tmp_path(dir, sizeof dir, "never");
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, KJV_PACKED, &err), BJ_OK, "%s", err.msg);
    cr_expect_neq(bj_b1_convert(&m, KJV_PACKED, dir, NULL, NULL, &err), BJ_OK);
    cr_expect(strstr(err.msg, "'model.layers.0.self_attn.q_proj.weight' is ternary"), "%s", err.msg);
    cr_expect(access(dir, F_OK) != 0, "no output on failure");
    bj_model_free(&m);
}
