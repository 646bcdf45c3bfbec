/* tests/unit/test_e2e_binary.c -- issue 10 end to end, on the 1-bit kjv-bitnet1-11m against
 * its oracle (the training code's own fp32 forward, not bitjit): for every prompt identical
 * prompt ids, last logits within 0.05, and the 48 greedy ids; through the
 * JIT engine with the binary kernels (bin1, asserted), the reference engine, bitjit's own
 * 1-bit format written by `bitjitc convert --type b1` and read back, and an AOT library (also
 * its perplexity of heldout.txt, within 0.5% of the oracle's; the JIT's and the reference
 * engine's are in test_perplexity).
 * Also: a binary model's kernels hold exactly half the weight bytes of 2-bit ternary ones,
 * a b1 -> b1 conversion is byte-identical, and `bitjit run` prints the same ids for the
 * master and its b1 copy. */
#include "codegen/codegen.h"
#include "frontends/b1_model.h"
#include "runtime/aot_load.h"
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "support/oracle_check.h"
#include "support/shell.h"

#define MASTER BJ_SOURCE_DIR "/models/kjv-bitnet1-11m/master"
#define ORACLE "models/kjv-bitnet1-11m/oracle.json"

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/e2e-binary-%d-%s", BJ_TEST_TMP, (int)getpid(), name);
}

static void rm_rf(const char *path) {
    char cmd[8192], out[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    sh(cmd, out, sizeof out);
}

/* kind: "ref", "jit" or "jit-x86-64"; lib: take the kernels from an AOT library. */
static bj_engine *make_engine(const char *kind, const bj_graph *g, const bj_aot_lib *lib, bj_jit_report *r) {
    return bj_test_engine(kind, g, BJ_TEST_TMP "/e2e-binary-cache", lib, r);
}

/* Every oracle prompt through engine e on model m: prompt ids, last logits within
 * BJ_ORACLE_LOGIT_TOL (0.05, every prompt), greedy ids (support/oracle_check.h). */
static void check_oracle(const bj_model *m, bj_engine *e, const char *what) {
    bj_test_oracle_check(e, m->tok, &(bj_oracle_check){ .oracle = ORACLE, .key = "master", .what = what,
                                                         .add_bos = true, .logits = true });
}

/* The master converted to bitjit's b1 format in a fresh temporary directory. */
static void convert_b1(const char *src, const char *dst) {
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, src, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_b1_convert(&m, src, dst, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    bj_model_free(&m);
}

/* Every matmul weight of the b1 model is a b1 tensor of N * ceil(K/8) bytes. */
static void expect_one_bit(const bj_graph *g) {
    int n = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *nd = &g->nodes[i];
        if (nd->op != BJ_OP_MATMUL_T) continue;
        const bj_node *w = &g->nodes[nd->in[1]];
        cr_expect_eq(w->dtype, BJ_DT_B1, "%s is %s", w->name, bj_dtype_name((bj_dtype)w->dtype));
        cr_expect_eq(w->nbytes, (uint64_t)(w->shape.d[0] * ((w->shape.d[1] + 7) / 8)), "%s", w->name);
        n++;
    }
    cr_expect_eq(n, 42, "6 layers x 7 projections");
}

Test(e2e_binary, jit_runs_bin1_at_half_the_bytes, .timeout = 600) {
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, MASTER, &err), BJ_OK, "%s", err.msg);
    bj_jit_report rb, rt;
    bj_engine *e = make_engine("jit", &m.graph, NULL, &rb);
    cr_expect(strstr(rb.variants, "bin1/") && !strstr(rb.variants, "dot2"), "binary model ran %s", rb.variants);
    check_oracle(&m, e, "jit bin1, master");
    bj_engine_free(e);
    /* the same binary values through the 2-bit ternary kernel: twice the bytes */
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.cache_dir = BJ_TEST_TMP "/e2e-binary-cache";
    o.variant = BJ_CG_V_DOT2;
    cr_assert_eq(bj_jit_engine_create(&e, &m.graph, &o, &rt, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(2 * rb.packed_bytes, rt.packed_bytes, "bin1 %llu bytes, dot2 %llu", (unsigned long long)rb.packed_bytes,
                 (unsigned long long)rt.packed_bytes);
    printf("kjv-bitnet1: kernels hold %llu weight bytes (bin1) vs %llu (dot2, 2 bits)\n",
           (unsigned long long)rb.packed_bytes, (unsigned long long)rt.packed_bytes);
    bj_engine_free(e);
    bj_model_free(&m);
}

Test(e2e_binary, jit_x86_64_baseline, .timeout = 600) {
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, MASTER, &err), BJ_OK, "%s", err.msg);
    bj_jit_report r;
    bj_engine *e = make_engine("jit-x86-64", &m.graph, NULL, &r);
    cr_expect(strstr(r.variants, "bin1/generic"), "%s", r.variants);
    check_oracle(&m, e, "jit bin1 x86-64, master");
    bj_engine_free(e);
    bj_model_free(&m);
}

/* Convert, load back (b1 weights), then the oracle through the JIT and the reference engine. */
Test(e2e_binary, b1_format_oracle_jit_and_ref, .timeout = 600) {
    char dir[4096];
    tmp_path(dir, sizeof dir, "b1");
    convert_b1(MASTER, dir);
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, dir, &err), BJ_OK, "%s", err.msg);
    expect_one_bit(&m.graph);
    bj_jit_report r;
    bj_engine *e = make_engine("jit", &m.graph, NULL, &r);
    cr_expect(strstr(r.variants, "bin1/"), "%s", r.variants);
    check_oracle(&m, e, "jit, b1 format");
    bj_engine_free(e);
    e = make_engine("ref", &m.graph, NULL, NULL);
    check_oracle(&m, e, "ref, b1 format");
    bj_engine_free(e);
    bj_model_free(&m);
    rm_rf(dir);
}

/* master -> b1 -> b1: the second conversion writes the same bytes, and the b1 model's logits
 * are the master's bit for bit (same values, same f32 scale). */
Test(e2e_binary, b1_round_trip_is_exact, .timeout = 600) {
    char a[4096], b[4096], fa[4200], fb[4200];
    tmp_path(a, sizeof a, "rt-a");
    tmp_path(b, sizeof b, "rt-b");
    convert_b1(MASTER, a);
    convert_b1(a, b);
    snprintf(fa, sizeof fa, "%s/model.safetensors", a);
    snprintf(fb, sizeof fb, "%s/model.safetensors", b);
    char *da, *db;
    size_t na, nb;
    bj_error err = { 0 };
    cr_assert_eq(bj_read_file(fa, &da, &na, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_read_file(fb, &db, &nb, &err), BJ_OK, "%s", err.msg);
    cr_expect(na == nb && !memcmp(da, db, na), "b1 -> b1 changed model.safetensors");
    free(da);
    free(db);
    const int32_t ids[] = { 4094, 268, 258, 1031 };
    float *la = NULL, *lb = NULL;
    const char *paths[2] = { MASTER, a };
    for (int i = 0; i < 2; i++) {
        bj_model m;
        cr_assert_eq(bj_model_load(&m, paths[i], &err), BJ_OK, "%s", err.msg);
        bj_engine *e = make_engine("ref", &m.graph, NULL, NULL);
        float *l = malloc((size_t)e->n_vocab * sizeof *l);
        cr_assert_eq(bj_engine_forward(e, ids, 4, false, l, &err), BJ_OK, "%s", err.msg);
        if (i == 0) la = l;
        else {
            lb = l;
            cr_expect_arr_eq(la, lb, (size_t)e->n_vocab * sizeof *la, "b1 logits differ from the master's");
        }
        bj_engine_free(e);
        bj_model_free(&m);
    }
    free(la);
    free(lb);
    rm_rf(a);
    rm_rf(b);
}

/* An AOT library of the master (bitjitc), run by the JIT engine with the library's kernels. */
Test(e2e_binary, aot_library_oracle, .timeout = 600) {
    char lib[4096], cmd[16384], out[16384], exe[4096];
    tmp_path(lib, sizeof lib, "kjv1.so");
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o '%s' -v", tool("bitjitc", exe, sizeof exe), MASTER, lib);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "bin1/"), "bitjitc built: %s", out);
    bj_error err = { 0 };
    bj_model m;
    bj_aot_lib *l;
    cr_assert_eq(bj_aot_load(&l, &m, lib, &err), BJ_OK, "%s", err.msg);
    bj_jit_report r;
    bj_engine *e = make_engine("jit", &m.graph, l, &r);
    cr_expect(strstr(r.variants, "bin1/"), "%s", r.variants);
    check_oracle(&m, e, "aot library");
    bj_engine_free(e);
    bj_model_free(&m);
    bj_aot_close(l);
#ifndef BJ_TEST_SANITIZED /* the whole file at -O0 under a sanitizer is slow; the normal build checks it */
    /* perplexity of heldout.txt through the library (`bitjit perplexity -m LIB`, the oracle's
     * windows of 256) within 0.5% of oracle.json's "ppl" */
    json_t *o = bj_test_load_json(ORACLE);
    double want = json_number_value(json_object_get(json_object_get(json_object_get(o, "ppl"), "heldout.txt"), "ppl"));
    json_decref(o);
    snprintf(cmd, sizeof cmd, "'%s' perplexity -m '%s' -f '%s/models/kjv-bitnet1-11m/heldout.txt' --ctx 256 -q -t 2",
             BJ_BITJIT_EXE, lib, BJ_SOURCE_DIR);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    const char *p = strstr(out, "perplexity: ");
    double got = 0;
    cr_assert(p && sscanf(p, "perplexity: %lf", &got) == 1, "%s", out);
    printf("[aot library] perplexity of heldout.txt %.4f, oracle %.4f (%+.4f%%)\n", got, want, (got / want - 1) * 100);
    cr_expect(want > 1 && fabs(got / want - 1) < 0.005, "aot library perplexity %.4f, oracle %.4f", got, want);
#endif
    unlink(lib);
}

/* The user's path: bitjitc convert --type b1, then bitjit run on both gives the same ids. */
Test(e2e_binary, cli_convert_and_run, .timeout = 600) {
    char dir[4096], cmd[16384], out[2][16384], exe[4096];
    tmp_path(dir, sizeof dir, "cli-b1");
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --type b1 -q", tool("bitjitc", exe, sizeof exe), MASTER, dir);
    cr_assert_eq(sh(cmd, out[0], sizeof out[0]), 0, "%s", out[0]);
    const char *models[2] = { MASTER, dir };
    for (int i = 0; i < 2; i++) { /* -q: sh() merges stderr, where a first start's tune shows progress */
        snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'And God said' -n 32 --temp 0 --ids -t 2 -q 2>/dev/null",
                 BJ_BITJIT_EXE, models[i]);
        cr_assert_eq(sh(cmd, out[i], sizeof out[i]), 0, "%s", out[i]);
    }
    cr_expect_str_eq(out[1], out[0], "bitjit run on the b1 copy differs from the master:\n%s\n%s", out[1], out[0]);
    /* converting again onto a non-empty directory is refused and leaves it alone */
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --type b1 -q", exe, MASTER, dir);
    cr_expect_eq(sh(cmd, out[0], sizeof out[0]), 1);
    cr_expect(strstr(out[0], "not an empty directory"), "%s", out[0]);
    rm_rf(dir);
}
