/* tests/unit/test_jit_srcidx.c -- engine creation without keeping or re-reading the model's
 * source weights: the source-hash index (codegen.h, bj_cg_srcidx) spares hashing an unchanged
 * model file and notices a file edited in place (same size, mtime set back); a file written
 * "just now" is not indexed; pages given back (bj_fmap_release) read back the same bytes and
 * leave the outputs bit-identical; the --head q8 int8 copy comes from the packed-weight cache;
 * a float master (kjv bf16) is packed straight from the master file: no folded byte-a-weight copy
 * in the engine's graph, and a warm start hashes nothing and reads its scales from the cache. */
#include "codegen/codegen.h"
#include "frontends/gguf.h"
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const int32_t k_prompt[] = { 4094, 1144, 258, 2079 }; /* "In the beginning" */
#define N_PROMPT 4
#define V 4096

/* The kjv packed model as an I2_S GGUF at path (a fresh file: ctime now). */
static void make_gguf(const char *path) {
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed", &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_gguf_convert(&m.graph, &m.cfg, m.tok, BJ_GGUF_OUT_I2_S, path, NULL, NULL, &err), BJ_OK, "%s",
                 err.msg);
    bj_model_free(&m);
}

static void logits_of(bj_engine *e, float *l) {
    bj_error err = { 0 };
    bj_engine_reset(e);
    cr_assert_eq(bj_engine_forward(e, k_prompt, N_PROMPT, true, l, &err), BJ_OK, "%s", err.msg);
}

static void jit(const bj_graph *g, const char *dir, bool head_q8, float *l, bj_jit_report *r) {
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.cache_dir = dir;
    o.head_q8 = head_q8;
    o.no_autotune = true; /* a start that tunes may change a layout: the packed-cache counts here are the engine's */
    bj_engine *e;
    bj_error err = { 0 };
    cr_assert_eq(bj_jit_engine_create(&e, g, &o, r, &err), BJ_OK, "%s", err.msg);
    if (l) logits_of(e, l);
    bj_engine_free(e);
}

static void ref(const bj_graph *g, float *l) {
    bj_engine *e;
    bj_error err = { 0 };
    cr_assert_eq(bj_ref_engine_create(&e, g, &err), BJ_OK, "%s", err.msg);
    logits_of(e, l);
    bj_engine_free(e);
}

static void load(bj_model *m, const char *path) {
    bj_error err = { 0 };
    cr_assert_eq(bj_model_load(m, path, &err), BJ_OK, "%s", err.msg);
}

static int64_t ctime_ns(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
}

Test(jit_srcidx, index_spares_hashing_and_notices_an_in_place_edit, .timeout = 600) {
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/srcidx-edit-%d.gguf", BJ_TEST_TMP, (int)getpid());
    snprintf(dir, sizeof dir, "%s/srcidx-edit-%d", BJ_TEST_TMP, (int)getpid());
    make_gguf(path);
    bj_cg_srcidx_racy_ns = 0; /* the file was written a moment ago; the edit below is checked to change ctime */
    float *l0 = malloc(N_PROMPT * V * sizeof *l0), *l1 = malloc(N_PROMPT * V * sizeof *l1);
    bj_model m;
    load(&m, path);
    bj_jit_report r;
    jit(&m.graph, dir, false, l0, &r);
    cr_expect_eq(r.src_hashed, (uint64_t)r.n_matmuls, "a cold start hashes every source tensor");
    cr_expect_eq(r.src_indexed, 0u);
    jit(&m.graph, dir, false, l1, &r);
    cr_expect_eq(r.src_hashed, 0u, "an unchanged file is not read to find its packed weights");
    cr_expect_eq(r.src_indexed, (uint64_t)r.n_matmuls);
    cr_expect_eq(r.packed_loaded, (uint64_t)r.n_matmuls);
    cr_expect_arr_eq(l0, l1, N_PROMPT * V * sizeof *l0);

    /* One byte of the first ternary weight, in place (same size), mtime set back afterwards. */
    uint64_t off = 0;
    for (uint32_t i = 0; i < m.graph.n_nodes && !off; i++) {
        const bj_node *n = &m.graph.nodes[i];
        if (n->op == BJ_OP_WEIGHT && n->dtype == BJ_DT_I2S) off = (uint64_t)((const uint8_t *)n->data - m.gguf->map.data) + 17;
    }
    cr_assert_gt(off, 0u);
    bj_model_free(&m);
    struct stat st0;
    cr_assert_eq(stat(path, &st0), 0);
    int64_t c0 = ctime_ns(path);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
    uint8_t nb = b == 0x66 ? 0x99 : 0x66; /* codes 1,2 / 2,1: valid ternary values, different from b's */
    for (int tries = 0; tries == 0 || ctime_ns(path) == c0; tries++) { /* same ctime tick: write again later */
        cr_assert_lt(tries, 100);
        if (tries) nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
        cr_assert_eq(pwrite(fd, &nb, 1, (off_t)off), 1);
        struct timespec ts[2] = { st0.st_atim, st0.st_mtim };
        cr_assert_eq(futimens(fd, ts), 0);
    }
    close(fd);
    struct stat st1;
    cr_assert_eq(stat(path, &st1), 0);
    cr_expect_eq(st1.st_size, st0.st_size);
    cr_expect(st1.st_mtim.tv_sec == st0.st_mtim.tv_sec && st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec);

    load(&m, path);
    jit(&m.graph, dir, false, l1, &r);
    cr_expect_eq(r.src_hashed, (uint64_t)r.n_matmuls, "an edited file is hashed again");
    cr_expect_eq(r.packed_loaded, (uint64_t)r.n_matmuls - 1, "only the edited weight is packed again");
    ref(&m.graph, l0);
    cr_expect_arr_eq(l0, l1, N_PROMPT * V * sizeof *l0, "the engine runs the edited weights, not stale ones");
    jit(&m.graph, dir, false, NULL, &r);
    cr_expect_eq(r.src_indexed, (uint64_t)r.n_matmuls, "and indexes the file as it is now");
    bj_model_free(&m);
    bj_cg_srcidx_racy_ns = 2000000000;
    free(l0);
    free(l1);
    unlink(path);
}

Test(jit_srcidx, a_file_changed_just_now_is_not_indexed, .timeout = 600) {
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/srcidx-racy-%d.gguf", BJ_TEST_TMP, (int)getpid());
    snprintf(dir, sizeof dir, "%s/srcidx-racy-%d", BJ_TEST_TMP, (int)getpid());
    bj_cg_srcidx_racy_ns = 3600LL * 1000000000; /* "just now": within the hour */
    make_gguf(path);
    bj_model m;
    load(&m, path);
    bj_jit_report r;
    jit(&m.graph, dir, false, NULL, &r);
    jit(&m.graph, dir, false, NULL, &r);
    cr_expect_eq(r.src_indexed, 0u, "a write in the same timestamp tick might not change the identity");
    cr_expect_eq(r.src_hashed, (uint64_t)r.n_matmuls);
    cr_expect_eq(r.packed_loaded, (uint64_t)r.n_matmuls, "the packed weights are still found by hashing");
    bj_model_free(&m);
    bj_cg_srcidx_racy_ns = 2000000000;
    unlink(path);
}

/* Giving pages back never changes bytes: on a file map they read back from the file; memory
 * that is not a bj_fmap's (where MADV_DONTNEED would zero anonymous pages) is left alone. */
Test(jit_srcidx, released_pages_read_back_the_same) {
    char path[4096];
    snprintf(path, sizeof path, "%s/srcidx-release-%d.bin", BJ_TEST_TMP, (int)getpid());
    size_t n = 1 << 20;
    uint8_t *a = malloc(n), *b = malloc(n);
    for (size_t i = 0; i < n; i++) a[i] = (uint8_t)(i * 2654435761u >> 13);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(a, 1, n, f), n);
    fclose(f);
    bj_fmap fm;
    bj_error err = { 0 };
    cr_assert_eq(bj_fmap_open(&fm, path, &err), BJ_OK, "%s", err.msg);
    cr_assert_arr_eq(fm.data, a, n);
    cr_expect_gt(bj_fmap_release(fm.data + 100, n - 200), 0u);
    cr_expect_arr_eq(fm.data, a, n, "the file's bytes after their pages were given back");
    bj_fmap_loc loc;
    cr_expect(bj_fmap_locate(fm.data + 4096, 10, &loc));
    cr_expect_eq(loc.offset, 4096u);
    cr_expect_eq(loc.size, n);
    cr_expect_not(bj_fmap_locate(fm.data + n - 5, 10, &loc), "a range past the map's end is not in it");
    bj_fmap_close(&fm);
    memcpy(b, a, n);
    cr_expect_eq(bj_fmap_release(b, n), 0u, "malloc'd memory is not a map");
    cr_expect_arr_eq(a, b, n);
    cr_expect_not(bj_fmap_locate(b, n, &loc));
    free(a);
    free(b);
    unlink(path);
}

/* The JIT engine gives the ternary source pages back once packed; the reference engine then
 * reads them again (from the page cache) and both still agree bit for bit. */
Test(jit_srcidx, outputs_unchanged_after_pages_are_given_back, .timeout = 600) {
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/srcidx-out-%d.gguf", BJ_TEST_TMP, (int)getpid());
    snprintf(dir, sizeof dir, "%s/srcidx-out-%d", BJ_TEST_TMP, (int)getpid());
    make_gguf(path);
    float *l0 = malloc(N_PROMPT * V * sizeof *l0), *l1 = malloc(N_PROMPT * V * sizeof *l1),
          *l2 = malloc(N_PROMPT * V * sizeof *l2);
    bj_model m;
    load(&m, path);
    ref(&m.graph, l0);
    bj_jit_report r;
    jit(&m.graph, dir, false, l1, &r);
    cr_expect_gt(r.released_bytes, 0u);
    cr_expect_arr_eq(l0, l1, N_PROMPT * V * sizeof *l0);
    ref(&m.graph, l2);
    cr_expect_arr_eq(l0, l2, N_PROMPT * V * sizeof *l0, "the reference engine reads the released weights back");
    jit(&m.graph, dir, false, l1, &r); /* warm: mapped packed weights */
    cr_expect_eq(r.packed_loaded, (uint64_t)r.n_matmuls);
    cr_expect_arr_eq(l0, l1, N_PROMPT * V * sizeof *l0);
    bj_model_free(&m);
    free(l0);
    free(l1);
    free(l2);
    unlink(path);
}

/* --head q8: the int8 head is stored in the packed-weight cache by the first engine and mapped
 * by the next, with identical logits; with the cache off it is converted as before. */
Test(jit_srcidx, head_q8_from_the_cache, .timeout = 600) {
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/srcidx-q8-%d.gguf", BJ_TEST_TMP, (int)getpid());
    snprintf(dir, sizeof dir, "%s/srcidx-q8-%d", BJ_TEST_TMP, (int)getpid());
    make_gguf(path);
    float *l0 = malloc(N_PROMPT * V * sizeof *l0), *l1 = malloc(N_PROMPT * V * sizeof *l1);
    bj_model m;
    load(&m, path);
    bj_jit_report r;
    jit(&m.graph, dir, true, l0, &r);
    cr_expect(r.head_q8);
    cr_expect_eq(r.head_q8_loaded, 0u);
    jit(&m.graph, dir, true, l1, &r);
    cr_expect_eq(r.head_q8_loaded, 1u, "the second engine maps the int8 head");
    cr_expect_arr_eq(l0, l1, N_PROMPT * V * sizeof *l0);
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.no_cache = true;
    o.head_q8 = true;
    bj_engine *e;
    bj_error err = { 0 };
    cr_assert_eq(bj_jit_engine_create(&e, &m.graph, &o, &r, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(r.head_q8_loaded, 0u);
    logits_of(e, l1);
    bj_engine_free(e);
    cr_expect_arr_eq(l0, l1, N_PROMPT * V * sizeof *l0, "a converted head and a cached one give the same logits");
    bj_model_free(&m);
    free(l0);
    free(l1);
    unlink(path);
}

/* A weight with an invalid code fails engine creation with the matmul and weight named, when
 * the cache misses are packed on the pool (2 threads) as when they were packed one by one. */
Test(jit_srcidx, invalid_code_found_when_packing_on_the_pool, .timeout = 600) {
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/srcidx-bad-%d.gguf", BJ_TEST_TMP, (int)getpid());
    snprintf(dir, sizeof dir, "%s/srcidx-bad-%d", BJ_TEST_TMP, (int)getpid());
    make_gguf(path);
    bj_model m;
    load(&m, path);
    uint64_t off = 0;
    int seen = 0;
    for (uint32_t i = 0; i < m.graph.n_nodes && !off; i++) { /* the third ternary weight */
        const bj_node *n = &m.graph.nodes[i];
        if (n->op == BJ_OP_WEIGHT && n->dtype == BJ_DT_I2S && ++seen == 3)
            off = (uint64_t)((const uint8_t *)n->data - m.gguf->map.data) + 5;
    }
    cr_assert_gt(off, 0u);
    bj_model_free(&m);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t bad = 0xFF; /* code 3: not a ternary value */
    cr_assert_eq(pwrite(fd, &bad, 1, (off_t)off), 1);
    close(fd);
    load(&m, path);
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.cache_dir = dir;
    bj_engine *e = (bj_engine *)1;
    bj_error err = { 0 };
    cr_expect_eq(bj_jit_engine_create(&e, &m.graph, &o, NULL, &err), BJ_E_FORMAT, "%s", err.msg);
    cr_expect_null(e);
    cr_expect(strstr(err.msg, "matmul %") && strstr(err.msg, "invalid"), "%s", err.msg);
    bj_model_free(&m);
    unlink(path);
}

/* quantize-weights leaves an executor's masters unfolded (weight_quant of the mapped bf16 tensor),
 * pack-weights packs them from the master and keeps their scales in the cache: the second engine
 * hashes no source tensor (the master file is in the source index), maps every matrix, and both
 * give the reference engine's logits bit for bit. */
Test(jit_srcidx, master_packed_from_the_master_file, .timeout = 600) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/srcidx-master-%d", BJ_TEST_TMP, (int)getpid());
    bj_cg_srcidx_racy_ns = 0; /* the bundled files are old anyway */
    float *l0 = malloc(N_PROMPT * V * sizeof *l0), *l1 = malloc(N_PROMPT * V * sizeof *l1);
    bj_model m;
    load(&m, BJ_SOURCE_DIR "/models/kjv-bitnet-11m/master");
    ref(&m.graph, l0);
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.no_cache = true; /* the cold engine below finds nothing */
    bj_graph own;
    bj_plan plan;
    bj_error err = { 0 };
    cr_assert_eq(bj_jit_compile(&m.graph, &o, &own, &plan, &err), BJ_OK, "%s", err.msg);
    int quant = 0, t8 = 0, scaled = 0;
    for (uint32_t i = 0; i < own.n_nodes; i++) {
        quant += own.nodes[i].op == BJ_OP_WEIGHT_QUANT;
        t8 += own.nodes[i].op == BJ_OP_WEIGHT && own.nodes[i].dtype == BJ_DT_T8;
        scaled += plan.kern[i].set && plan.kern[i].has_scale;
    }
    cr_expect_eq(quant, 42, "every master stays a weight_quant in the engine's graph");
    cr_expect_eq(t8, 0, "no folded t8 copy");
    cr_expect_eq(scaled, 42, "pack-weights hands over every master's scale");
    bj_plan_free(&plan);
    bj_graph_free(&own);
    bj_jit_report r;
    jit(&m.graph, dir, false, l1, &r);
    cr_expect_arr_eq(l0, l1, N_PROMPT * V * sizeof *l0, "cold: the JIT's logits are the reference engine's");
    cr_expect_eq(r.packed_loaded, 0u);
    jit(&m.graph, dir, false, l1, &r);
    cr_expect_eq(r.src_hashed, 0u, "a warm start hashes no source tensor");
    cr_expect_eq(r.packed_loaded, (uint64_t)r.n_matmuls);
    cr_expect_arr_eq(l0, l1, N_PROMPT * V * sizeof *l0, "warm: scales from the cache give the same logits");
    bj_model_free(&m);
    free(l0);
    free(l1);
}
