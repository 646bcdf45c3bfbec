/* tests/unit/test_aot_plan.c -- bitjitc libraries that load without packing or compiling: the
 * library carries the plan's kernel picks and the packed weights (compiler/aot.h), and the
 * engine over it takes both from it (bj_plan_source). Checked against the HF oracle
 * (models/kjv-bitnet-11m/oracle.json: prompt ids, last-position logits, greedy ids) for a
 * library of the packed model and one of its GGUF export (and a TQ2_0 export's library gives
 * `bitjit run`'s greedy ids of the GGUF itself); logits bit-identical to the JIT engine
 * over the original model; the engine's report shows 0 kernels compiled and 0 matrices packed;
 * and a truncated library, a damaged plan or damaged packed bytes give a clear error, never a
 * crash or a silently different model; the bundle checks (the fuzz entry point) accept a
 * library's bundle and the committed fuzz seed. */
#include <criterion/criterion.h>

#include "compiler/aot.h"
#include "support/files.h"
#include "support/oracle_check.h"
#include "support/shell.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KJV BJ_SOURCE_DIR "/models/kjv-bitnet-11m"
#define ORACLE "models/kjv-bitnet-11m/oracle.json"

static void tmp_path(char *buf, size_t cap, const char *name) {
    mkdir(BJ_TEST_TMP, 0755);
    snprintf(buf, cap, "%s/aot-plan-%d-%s", BJ_TEST_TMP, (int)getpid(), name);
}

/* `bitjitc ARGS`, which must succeed. */
static void bitjitc(const char *args) {
    char exe[4096], cmd[16384], out[16384];
    snprintf(cmd, sizeof cmd, "'%s' %s", tool("bitjitc", exe, sizeof exe), args);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "bitjitc %s: %s", args, out);
}

/* A library of the kjv packed model (gguf: of its I2_S GGUF export) at lib. */
static void build_lib(bool gguf, char *lib, size_t cap) {
    char args[16384], src[4096];
    tmp_path(lib, cap, gguf ? "kjv-gguf.so" : "kjv.so");
    snprintf(src, sizeof src, "%s/packed", KJV);
    if (gguf) {
        tmp_path(src, sizeof src, "kjv.gguf");
        snprintf(args, sizeof args, "convert '%s/packed' -o '%s' --type i2_s -q", KJV, src);
        bitjitc(args);
    }
    snprintf(args, sizeof args, "'%s' -o '%s'", src, lib);
    bitjitc(args);
    if (gguf) unlink(src);
}

/* The library's engine; its report checked: nothing compiled, packed or taken from a cache. */
static bj_engine *lib_engine(const bj_graph *g, const bj_aot_lib *lib) {
    bj_jit_report r;
    bj_engine *e = bj_test_engine("jit", g, BJ_TEST_TMP "/aot-plan-cache", lib, &r);
    cr_expect_eq(r.compiled, 0u, "a library's engine compiled %llu kernels", (unsigned long long)r.compiled);
    cr_expect_eq(r.loaded, 0u, "a library's engine read %llu kernels from a cache", (unsigned long long)r.loaded);
    cr_expect_eq(r.packed_now, 0u, "a library's engine packed %llu matrices", (unsigned long long)r.packed_now);
    cr_expect_eq(r.packed_loaded, 0u, "a library's engine read packed weights from the cache");
    cr_expect_eq((int64_t)r.packed_source, r.n_matmuls, "%llu of %lld matrices from the library",
                 (unsigned long long)r.packed_source, (long long)r.n_matmuls);
    cr_expect_gt(r.n_matmuls, 0);
    return e;
}

/* Every oracle prompt through the library's engine. */
static void check_library(const char *lib, const char *what) {
    bj_error err = { 0 };
    bj_model m;
    bj_aot_lib *l;
    cr_assert_eq(bj_aot_load(&l, &m, lib, &err), BJ_OK, "%s", err.msg);
    bj_engine *e = lib_engine(&m.graph, l);
    bj_test_oracle_check(e, m.tok, &(bj_oracle_check){ .oracle = ORACLE, .key = "packed", .what = what,
                                                        .add_bos = bj_tok_add_bos(m.tok), .logits = true });
    bj_engine_free(e);
    bj_model_free(&m);
    bj_aot_close(l);
}

Test(aot_plan, packed_model_library_reproduces_the_oracle, .timeout = 300) {
    char lib[4096];
    build_lib(false, lib, sizeof lib);
    check_library(lib, "library of kjv packed");
    unlink(lib);
}

Test(aot_plan, gguf_library_reproduces_the_oracle, .timeout = 300) {
    char lib[4096];
    build_lib(true, lib, sizeof lib);
    check_library(lib, "library of kjv packed as I2_S GGUF");
    unlink(lib);
}

/* The library's kernel lookup, counting the exact-head kernels it hands out. */
static bj_status (*real_lookup)(void *, const void *, const char *, void **, bj_error *);
static int heads_found;
static bj_status counting_lookup(void *ud, const void *kd, const char *sym, void **fn, bj_error *err) {
    bj_status s = real_lookup(ud, kd, sym, fn, err);
    if (s == BJ_OK && ((const bj_cg_kdesc *)kd)->kind == BJ_CG_KIND_HEAD_F) heads_found++;
    return s;
}

/* The library's logits are the JIT engine's over the model it was built from, bit for bit, and
 * its exact head is the generated kernel the library contains (where the CPU has a path for it). */
Test(aot_plan, library_logits_equal_the_jit_engines, .timeout = 300) {
    char lib[4096];
    build_lib(false, lib, sizeof lib);
    bj_error err = { 0 };
    bj_model src, m;
    bj_aot_lib *l;
    cr_assert_eq(bj_model_load(&src, KJV "/packed", &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_aot_load(&l, &m, lib, &err), BJ_OK, "%s", err.msg);
    bj_engine *a = bj_test_engine("jit", &src.graph, BJ_TEST_TMP "/aot-plan-cache", NULL, NULL);
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    bj_aot_jit_options(l, &o);
    real_lookup = o.kernel_lookup;
    o.kernel_lookup = counting_lookup;
    bj_engine *b = NULL;
    cr_assert_eq(bj_jit_engine_create(&b, &m.graph, &o, NULL, &err), BJ_OK, "%s", err.msg);
    bool head_path = false; /* whether codegen has a head kernel for this model's head on the library's CPU */
    for (uint32_t i = 0; i < m.graph.n_nodes; i++) {
        const bj_node *n = &m.graph.nodes[i], *w = &m.graph.nodes[n->in[1]];
        if (n->op != BJ_OP_MATMUL_F) continue;
        bj_cg_head_dtype dt = w->dtype == BJ_DT_F16 ? BJ_CG_HEAD_F16 : w->dtype == BJ_DT_BF16 ? BJ_CG_HEAD_BF16 : BJ_CG_HEAD_F32;
        bj_cg_kdesc hd;
        bj_error ign = { 0 };
        head_path = bj_cg_head_kdesc_init(&hd, bj_aot_target(l), dt, BJ_CG_ISA_AUTO, (uint32_t)w->shape.d[0],
                                          (uint32_t)w->shape.d[1], &ign) == BJ_OK;
    }
    /* select-kernels asks the library whether it holds the head's kernel, the engine then fetches it */
    cr_expect(head_path ? heads_found >= 1 : heads_found == 0, "exact-head kernel lookups in the library: %d (path: %d)",
              heads_found, head_path);
    const int32_t ids[] = { 1, 400, 35, 1200, 9, 77, 3000, 12, 5, 600, 41 };
    const int64_t T = (int64_t)(sizeof ids / sizeof *ids), V = a->n_vocab;
    float *la = malloc((size_t)(T * V) * sizeof *la), *lb = malloc((size_t)(T * V) * sizeof *lb);
    cr_assert(la && lb && b->n_vocab == V);
    cr_assert_eq(bj_engine_forward(a, ids, T, true, la, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_engine_forward(b, ids, T, true, lb, &err), BJ_OK, "%s", err.msg);
    cr_expect_arr_eq(la, lb, (size_t)(T * V) * sizeof *la, "library and JIT logits differ");
    free(la);
    free(lb);
    bj_engine_free(a);
    bj_engine_free(b);
    bj_model_free(&src);
    bj_model_free(&m);
    bj_aot_close(l);
    unlink(lib);
}

/* ---- damaged libraries ---------------------------------------------------------------------- */
typedef struct lib_bytes { uint8_t *p; size_t n, bundle; } lib_bytes;

static void read_lib(const char *path, lib_bytes *b) {
    bj_error err = { 0 };
    char *text;
    cr_assert_eq(bj_read_file(path, &text, &b->n, &err), BJ_OK, "%s", err.msg);
    b->p = (uint8_t *)text;
    uint8_t *m = memmem(b->p, b->n, BJ_AOT_MAGIC, 8);
    cr_assert(m, "%s: no bundle found", path);
    b->bundle = (size_t)(m - b->p);
}

/* Entry i's data offset (from the file start) and size, when it is of kind; else false. */
static bool entry_of(const lib_bytes *b, uint32_t kind, int skip, size_t *off, size_t *size) {
    const uint8_t *base = b->p + b->bundle;
    uint32_t n = bj_rd32(base + 12);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = base + BJ_AOT_HEADER_SIZE + (size_t)i * BJ_AOT_ENTRY_SIZE;
        if (bj_rd32(e) != kind || bj_rd64(e + 24) == 0 || skip-- > 0) continue;
        *off = b->bundle + (size_t)bj_rd64(e + 16);
        *size = (size_t)bj_rd64(e + 24);
        return true;
    }
    return false;
}

/* bitjit run on lib exits 1 (never a signal) with an error containing want. */
static void expect_cli_error(const char *lib, const char *want) {
    char cmd[8192], out[16384];
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p hi -n 2 --temp 0 --ids", BJ_BITJIT_EXE, lib);
    int rc = sh(cmd, out, sizeof out);
    cr_expect_eq(rc, 1, "%s: exit %d (1 expected): %s", lib, rc, out);
    cr_expect(strstr(out, want), "%s: the error should say '%s': %s", lib, want, out);
    cr_expect(strstr(out, lib), "%s: the error should name the library: %s", lib, out);
}

Test(aot_plan, damaged_packed_weights_are_refused, .timeout = 300) {
    char lib[4096], bad[4096];
    build_lib(false, lib, sizeof lib);
    tmp_path(bad, sizeof bad, "bad-packed.so");
    lib_bytes b;
    read_lib(lib, &b);
    size_t off, size;
    cr_assert(entry_of(&b, BJ_AOT_E_PACKED, 3, &off, &size), "no packed weights in the library");
    cr_expect_eq(off % BJ_AOT_PAGE, 0u, "packed weights at file offset %zu are not on a page of their own", off);
    b.p[off + size / 2] ^= 0x10; /* one bit of one code: a different model, which must not run */
    write_all(bad, (const char *)b.p, b.n);
    bj_error err = { 0 };
    bj_model m;
    bj_aot_lib *l;
    cr_assert_eq(bj_aot_load(&l, &m, bad, &err), BJ_OK, "%s", err.msg); /* the bundle itself is sound */
    bj_jit_options o;
    bj_jit_options_default(&o);
    bj_aot_jit_options(l, &o);
    bj_engine *e = NULL;
    cr_expect_eq(bj_jit_engine_create(&e, &m.graph, &o, NULL, &err), BJ_E_FORMAT, "damaged weights were accepted");
    cr_expect(strstr(err.msg, "damaged") && strstr(err.msg, bad), "%s", err.msg);
    cr_expect_null(e);
    bj_model_free(&m);
    bj_aot_close(l);
    expect_cli_error(bad, "damaged");
    free(b.p);
    unlink(bad);
    unlink(lib);
}

Test(aot_plan, damaged_plan_is_refused, .timeout = 300) {
    char lib[4096], bad[4096];
    build_lib(false, lib, sizeof lib);
    tmp_path(bad, sizeof bad, "bad-plan.so");
    lib_bytes b;
    read_lib(lib, &b);
    size_t off, size;
    cr_assert(entry_of(&b, BJ_AOT_E_PLAN, 0, &off, &size), "no plan in the library");
    b.p[off + 5] = 'z'; /* not a hex digit: the first line's def descriptor */
    write_all(bad, (const char *)b.p, b.n);
    bj_error err = { 0 };
    bj_model m;
    bj_aot_lib *l = NULL;
    cr_expect_eq(bj_aot_load(&l, &m, bad, &err), BJ_E_FORMAT);
    cr_expect(strstr(err.msg, "plan is damaged"), "%s", err.msg);
    cr_expect_null(l);
    expect_cli_error(bad, "plan is damaged");
    /* hex that parses to a descriptor the target refuses: byte 3 (the variant) 200 */
    free(b.p);
    read_lib(lib, &b);
    cr_assert(entry_of(&b, BJ_AOT_E_PLAN, 0, &off, &size));
    memcpy(b.p + off + 6, "c8", 2);
    write_all(bad, (const char *)b.p, b.n);
    cr_expect_eq(bj_aot_load(&l, &m, bad, &err), BJ_E_FORMAT);
    cr_expect(strstr(err.msg, "plan is damaged"), "%s", err.msg);
    free(b.p);
    unlink(bad);
    unlink(lib);
}

Test(aot_plan, truncated_library_is_refused, .timeout = 300) {
    char lib[4096], bad[4096];
    build_lib(false, lib, sizeof lib);
    tmp_path(bad, sizeof bad, "cut.so");
    lib_bytes b;
    read_lib(lib, &b);
    size_t cuts[] = { b.n / 2, b.bundle + 4096, 64 };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        write_all(bad, (const char *)b.p, cuts[i]);
        bj_error err = { 0 };
        bj_model m;
        bj_aot_lib *l = NULL;
        cr_expect_neq(bj_aot_load(&l, &m, bad, &err), BJ_OK, "a library cut at %zu loaded", cuts[i]);
        cr_expect(strstr(err.msg, bad), "cut at %zu: %s", cuts[i], err.msg);
        cr_expect_null(l);
        expect_cli_error(bad, "");
    }
    free(b.p);
    unlink(bad);
    unlink(lib);
}

/* `bitjit run -m lib.so` of a GGUF's library: the greedy ids `bitjit run -m model.gguf` gives. */
Test(aot_plan, gguf_library_runs_as_the_gguf, .timeout = 300) {
    char lib[4096], gguf[4096], args[16384], cmd[16384], a[16384], b[16384];
    tmp_path(gguf, sizeof gguf, "same.gguf");
    tmp_path(lib, sizeof lib, "same.so");
    snprintf(args, sizeof args, "convert '%s/packed' -o '%s' --type tq2_0 -q", KJV, gguf);
    bitjitc(args);
    snprintf(args, sizeof args, "'%s' -o '%s'", gguf, lib);
    bitjitc(args);
    const char *paths[] = { gguf, lib };
    char *outs[] = { a, b };
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'And the LORD said unto Moses,' -n 40 --temp 0 --ids 2>/dev/null",
                 BJ_BITJIT_EXE, paths[i]);
        cr_assert_eq(sh(cmd, outs[i], sizeof a), 0, "%s: %s", paths[i], outs[i]);
    }
    cr_expect_str_eq(b, a, "the library's greedy ids differ from the GGUF's");
    cr_expect_gt(strlen(a), 40u, "%s", a);
    unlink(gguf);
    unlink(lib);
}

/* `bitjit run -v` on a library says what it compiled and packed: nothing. */
Test(aot_plan, verbose_shows_nothing_compiled_or_packed, .timeout = 300) {
    char lib[4096], cmd[8192], out[65536];
    build_lib(true, lib, sizeof lib);
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p hi -n 1 --temp 0 -v", BJ_BITJIT_EXE, lib);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "ahead-of-time library"), "%s", out);
    cr_expect(strstr(out, "(0 compiled, no kernel cache)"), "%s", out);
    cr_expect(strstr(out, "packed weights of 42 matrices from the library, 0 packed"), "%s", out);
    cr_expect(strstr(out, "pack-weights: 42 of 42 matrices from the library, 0 packed"), "%s", out);
    unlink(lib);
}

/* The bundle's checks without dlopen (the fuzz harness's entry point): a library's bundle passes,
 * and the committed fuzz seed is such a bundle (so fuzzing starts past the header checks). */
Test(aot_plan, bundle_checks_accept_a_library_and_the_fuzz_seed, .timeout = 300) {
    char lib[4096];
    build_lib(false, lib, sizeof lib);
    lib_bytes b;
    read_lib(lib, &b);
    size_t size = (size_t)bj_rd64(b.p + b.bundle + 16);
    cr_assert_leq(b.bundle + size, b.n);
    uint8_t *copy = malloc(size);
    cr_assert(copy);
    memcpy(copy, b.p + b.bundle, size);
    bj_error err = { 0 };
    cr_expect_eq(bj_aot_check_bundle(copy, size, &err), BJ_OK, "%s", err.msg);
    size_t off, n;
    cr_assert(entry_of(&(lib_bytes){ .p = copy, .n = size, .bundle = 0 }, BJ_AOT_E_PLAN, 0, &off, &n));
    copy[off + 1] = 'g';
    cr_expect_eq(bj_aot_check_bundle(copy, size, &err), BJ_E_FORMAT);
    cr_expect(strstr(err.msg, "plan is damaged"), "%s", err.msg);
    free(copy);
    free(b.p);
    unlink(lib);
    char *seed;
    cr_assert_eq(bj_read_file(BJ_SOURCE_DIR "/tests/fuzz/corpus/aot_bundle/tiny-bundle.bin", &seed, &n, &err), BJ_OK, "%s",
                 err.msg);
    cr_expect_eq(bj_aot_check_bundle((const uint8_t *)seed, n, &err), BJ_OK, "the fuzz seed: %s", err.msg);
    free(seed);
}
