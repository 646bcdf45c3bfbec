/* tests/unit/test_jit_engine.c -- the JIT engine against the reference engine (identical
 * logits bit for bit, identical greedy ids, for every kernel variant and thread count), the
 * kernel cache (cold compiles, warm loads, corrupt entries rebuilt, unusable directory), and
 * refusing code for CPU features this host lacks. */
#include "codegen/codegen.h"
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/oracle_check.h"

static const int32_t k_prompt[] = { 4094, 1144, 258, 2079 }; /* "In the beginning" */
#define N_PROMPT 4
#define N_GEN 32

static void load(bj_model *m, const char *rel) {
    char path[4096];
    bj_error err = { 0 };
    snprintf(path, sizeof path, "%s/%s", BJ_SOURCE_DIR, rel);
    cr_assert_eq(bj_model_load(m, path, &err), BJ_OK, "%s", err.msg);
}

/* Prompt logits (all positions) and N_GEN greedy ids of an engine. */
static void run(bj_engine *e, float *logits, int32_t *ids) {
    bj_error err = { 0 };
    bj_engine_reset(e);
    cr_assert_eq(bj_engine_forward(e, k_prompt, N_PROMPT, true, logits, &err), BJ_OK, "%s", err.msg);
    bj_test_greedy(e, k_prompt, N_PROMPT, N_GEN, ids);
}

static bj_status make_jit(bj_engine **e, const bj_graph *g, int threads, int variant, const char *mcpu,
                          const char *cache, bj_jit_report *r, bj_error *err) {
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = threads;
    o.variant = variant;
    o.mcpu = mcpu;
    o.cache_dir = cache;
    return bj_jit_engine_create(e, g, &o, r, err);
}

static void compare_with_ref(const char *model_rel) {
    bj_model m;
    load(&m, model_rel);
    bj_error err = { 0 };
    bj_engine *ref;
    cr_assert_eq(bj_ref_engine_create(&ref, &m.graph, &err), BJ_OK, "%s", err.msg);
    size_t V = (size_t)ref->n_vocab;
    float *lr = malloc(N_PROMPT * V * sizeof *lr), *lj = malloc(N_PROMPT * V * sizeof *lj);
    int32_t ir[N_GEN], ij[N_GEN];
    run(ref, lr, ir);
    const struct { int threads, variant; const char *mcpu; } cfg[] = {
        { 1, BJ_CG_V_AUTO, NULL }, { 2, BJ_CG_V_AUTO, NULL }, { 3, BJ_CG_V_AUTO, NULL }, { 2, BJ_CG_V_DOT2, NULL },
        { 2, BJ_CG_V_BITPLANE, NULL }, { 2, BJ_CG_V_DOT2, "x86-64" }, { 1, BJ_CG_V_BITPLANE, "x86-64" },
        { 2, BJ_CG_V_TRIT5, NULL }, { 1, BJ_CG_V_TRIT5, "x86-64" },
    };
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        bj_engine *jit;
        bj_jit_report r;
        cr_assert_eq(make_jit(&jit, &m.graph, cfg[c].threads, cfg[c].variant, cfg[c].mcpu, BJ_TEST_TMP "/jit-cache",
                              &r, &err), BJ_OK, "%s", err.msg);
        /* the steps share one activation arena (pieces whose lifetimes do not overlap share
         * bytes): far smaller than a buffer per step, and the logits still equal ref's */
        cr_expect(r.act_row_bytes > 0 && r.act_row_bytes * 4 < r.act_row_naive, "%s: arena %lld bytes a token, %lld unshared",
                  model_rel, (long long)r.act_row_bytes, (long long)r.act_row_naive);
        if (c == 0) { /* a one-token step first: the arena then grows to the prompt's rows */
            cr_assert_eq(bj_engine_forward(jit, k_prompt, 1, false, lj, &err), BJ_OK, "%s", err.msg);
            bj_engine_reset(jit);
        }
        run(jit, lj, ij);
        cr_expect_arr_eq(lj, lr, N_PROMPT * V * sizeof *lj, "%s: logits differ from ref (threads %d, variant %d, mcpu %s)",
                         model_rel, cfg[c].threads, cfg[c].variant, cfg[c].mcpu ? cfg[c].mcpu : "host");
        cr_expect_arr_eq(ij, ir, sizeof ij, "%s: greedy ids differ from ref (threads %d, variant %d)", model_rel,
                         cfg[c].threads, cfg[c].variant);
        bj_engine_free(jit);
    }
    free(lr);
    free(lj);
    bj_engine_free(ref);
    bj_model_free(&m);
}

Test(jit_engine, identical_to_ref_packed, .timeout = 600) { compare_with_ref("models/kjv-bitnet-11m/packed"); }

/* A prompt longer than the JIT's step (it runs prompts in steps of 64 rows, each attending to
 * the cache the earlier ones filled): every position's logits equal ref's, which runs the whole
 * prompt at once; so does the last row alone, and a decode step after the prompt. */
Test(jit_engine, long_prompt_in_steps_identical_to_ref, .timeout = 300) {
    bj_model m;
    load(&m, "models/kjv-bitnet-11m/packed");
    bj_error err = { 0 };
    bj_engine *ref, *jit;
    cr_assert_eq(bj_ref_engine_create(&ref, &m.graph, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(make_jit(&jit, &m.graph, 2, BJ_CG_V_AUTO, NULL, BJ_TEST_TMP "/jit-cache", NULL, &err), BJ_OK, "%s",
                 err.msg);
    enum { T = 150 }; /* two full steps and a partial one */
    size_t V = (size_t)ref->n_vocab;
    int32_t toks[T + 1];
    for (int t = 0; t <= T; t++) toks[t] = (int32_t)((t * 7919 + 13) % (int)V);
    float *lr = malloc((T + 1) * V * sizeof *lr), *lj = malloc((T + 1) * V * sizeof *lj);
    cr_assert(lr && lj);
    cr_assert_eq(bj_engine_forward(ref, toks, T, true, lr, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_engine_forward(jit, toks, T, true, lj, &err), BJ_OK, "%s", err.msg);
    cr_expect_arr_eq(lj, lr, T * V * sizeof *lj, "all-position logits of a %d-token prompt differ from ref", T);
    cr_assert_eq(bj_engine_forward(ref, toks + T, 1, false, lr + T * V, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_engine_forward(jit, toks + T, 1, false, lj + T * V, &err), BJ_OK, "%s", err.msg);
    cr_expect_arr_eq(lj + T * V, lr + T * V, V * sizeof *lj, "the decode step after the prompt differs from ref");
    bj_engine_reset(jit);
    cr_assert_eq(bj_engine_forward(jit, toks, T, false, lj, &err), BJ_OK, "%s", err.msg);
    cr_expect_arr_eq(lj, lr + (T - 1) * V, V * sizeof *lj, "the last row alone differs from ref's");
    free(lr);
    free(lj);
    bj_engine_free(jit);
    bj_engine_free(ref);
    bj_model_free(&m);
}
Test(jit_engine, identical_to_ref_binary, .timeout = 600) { compare_with_ref("models/kjv-bitnet1-11m/master"); }

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));) n += strstr(de->d_name, ".bjk") != NULL;
    if (d) closedir(d);
    return n;
}

static void corrupt_one(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert(d);
    for (struct dirent *de; (de = readdir(d));) {
        if (!strstr(de->d_name, ".bjk")) continue;
        char p[4096 + 256];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        FILE *f = fopen(p, "r+b");
        cr_assert(f);
        fseek(f, 200, SEEK_SET); /* inside the object: only the checksum can tell */
        int c = fgetc(f);
        fseek(f, 200, SEEK_SET);
        fputc(c ^ 0x5A, f);
        fclose(f);
        break;
    }
    closedir(d);
}

/* The cache tests: the packed model, a fresh cache directory and the results of the engine
 * that filled it (l0, i0), to compare later engines' (l1, i1) with. */
typedef struct cache_case {
    char dir[4096];
    bj_model m;
    float *l0, *l1;
    int32_t i0[N_GEN], i1[N_GEN];
} cache_case;

static void cache_case_init(cache_case *c, const char *name) {
    snprintf(c->dir, sizeof c->dir, "%s/%s-%d", BJ_TEST_TMP, name, (int)getpid());
    load(&c->m, "models/kjv-bitnet-11m/packed");
    c->l0 = malloc(N_PROMPT * 4096 * sizeof *c->l0);
    c->l1 = malloc(N_PROMPT * 4096 * sizeof *c->l1);
}

static void cache_case_free(cache_case *c) {
    free(c->l0);
    free(c->l1);
    bj_model_free(&c->m);
}

/* A JIT engine (2 threads, the cost rule's kernels) with its caches in c->dir. */
/* No quick tune: its candidates would go through the same cache, and the counts here are the
 * engine's (test_tune.c covers the tune's use of the cache). */
static bj_engine *cache_engine(cache_case *c, bj_jit_report *r) {
    bj_error err = { 0 };
    bj_engine *e;
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.cache_dir = c->dir;
    o.no_autotune = true;
    cr_assert_eq(bj_jit_engine_create(&e, &c->m.graph, &o, r, &err), BJ_OK, "%s", err.msg);
    return e;
}

/* Runs e into l1/i1: its logits (and, with ids, its greedy ids) equal the first engine's. */
static void expect_as_first(cache_case *c, bj_engine *e, bool ids) {
    run(e, c->l1, c->i1);
    cr_expect_arr_eq(c->l0, c->l1, N_PROMPT * 4096 * sizeof *c->l0, "logits differ from the first engine's");
    if (ids) cr_expect_arr_eq(c->i0, c->i1, sizeof c->i0, "greedy ids differ from the first engine's");
}

Test(jit_engine, kernel_cache_cold_warm_corrupt, .timeout = 600) {
    cache_case c;
    cache_case_init(&c, "cache");
    bj_jit_report r;
    bj_engine *e = cache_engine(&c, &r);
    printf("cold: compiled %llu loaded %llu in %.0f ms\n", (unsigned long long)r.compiled, (unsigned long long)r.loaded,
           r.create_ms);
    cr_expect_gt(r.compiled, 0);
    cr_expect_eq(r.loaded, 0);
    cr_expect_eq(count_entries(c.dir), (int)r.compiled);
    run(e, c.l0, c.i0);
    bj_engine_free(e);

    e = cache_engine(&c, &r);
    printf("warm: compiled %llu loaded %llu in %.0f ms\n", (unsigned long long)r.compiled, (unsigned long long)r.loaded,
           r.create_ms);
    cr_expect_eq(r.compiled, 0, "a warm start compiles nothing");
    cr_expect_gt(r.loaded, 0);
    expect_as_first(&c, e, true);
    bj_engine_free(e);

    corrupt_one(c.dir);
    e = cache_engine(&c, &r);
    cr_expect_eq(r.corrupt, 1);
    cr_expect_eq(r.compiled, 1, "the corrupt entry is rebuilt");
    cr_expect_neq(r.cache_warning[0], 0, "a corrupt entry is reported");
    expect_as_first(&c, e, false);
    bj_engine_free(e);

    e = cache_engine(&c, &r);
    cr_expect_eq(r.compiled, 0, "the rebuilt entry is reused");
    cr_expect_eq(r.corrupt, 0);
    bj_engine_free(e);
    cache_case_free(&c);
}

/* Packed weights (codegen/cg_wcache.c): stored by the first engine, mapped by the next with
 * identical results, and a corrupt entry is detected, reported and rebuilt. */
static int count_w(const char *dir, char *first, size_t cap) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        if (!strncmp(de->d_name, "w-", 2) && strstr(de->d_name, ".bin")) {
            if (!n++) snprintf(first, cap, "%s/%s", dir, de->d_name);
        }
    if (d) closedir(d);
    return n;
}

Test(jit_engine, packed_weight_cache, .timeout = 600) {
    char entry[8192];
    cache_case c;
    cache_case_init(&c, "wcache");
    bj_jit_report r;
    bj_engine *e = cache_engine(&c, &r);
    cr_expect_eq(r.packed_loaded, 0u);
    cr_expect_eq(count_w(c.dir, entry, sizeof entry), (int)r.n_matmuls, "one entry per matmul");
    run(e, c.l0, c.i0);
    bj_engine_free(e);

    e = cache_engine(&c, &r);
    cr_expect_eq(r.packed_loaded, (uint64_t)r.n_matmuls, "a warm start maps every matrix");
    expect_as_first(&c, e, true);
    bj_engine_free(e);

    FILE *f = fopen(entry, "r+b"); /* one payload byte: only the payload hash can tell */
    cr_assert(f);
    fseek(f, 4096 + 100, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 4096 + 100, SEEK_SET);
    fputc(ch ^ 0x21, f);
    fclose(f);
    e = cache_engine(&c, &r);
    cr_expect_eq(r.corrupt, 1u);
    cr_expect_eq(r.packed_loaded, (uint64_t)r.n_matmuls - 1);
    cr_expect(strstr(r.cache_warning, "corrupt"), "%s", r.cache_warning);
    expect_as_first(&c, e, false);
    bj_engine_free(e);
    cache_case_free(&c);
}

Test(jit_engine, unusable_cache_dir_falls_back, .timeout = 300) {
    char file[4096], dir[4200];
    snprintf(file, sizeof file, "%s/not-a-dir-%d", BJ_TEST_TMP, (int)getpid());
    FILE *f = fopen(file, "w");
    fclose(f);
    snprintf(dir, sizeof dir, "%s/sub", file); /* a directory under a regular file cannot exist */
    bj_model m;
    load(&m, "models/kjv-bitnet-11m/packed");
    bj_error err = { 0 };
    bj_jit_report r;
    bj_engine *e;
    cr_assert_eq(make_jit(&e, &m.graph, 1, 0, NULL, dir, &r, &err), BJ_OK, "%s", err.msg);
    cr_expect_gt(r.compiled, 0);
    cr_expect_neq(r.cache_warning[0], 0, "the fallback is reported");
    float *l = malloc(N_PROMPT * 4096 * sizeof *l);
    int32_t ids[N_GEN];
    run(e, l, ids);
    free(l);
    bj_engine_free(e);
    bj_model_free(&m);
}

Test(jit_engine, refuses_features_the_host_lacks) {
    bj_cg_target host;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&host, NULL, NULL, &err), BJ_OK);
    const char *feat = !(host.flags & BJ_CG_F_AVX512F) ? "+avx512f,+avx512bw" : "+amx-tile,+amx-int8";
    if (strstr(host.features, "+amx-tile")) cr_skip_test("this host has every feature we could ask for");
    bj_model m;
    load(&m, "models/kjv-bitnet-11m/packed");
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.mattr = feat;
    o.no_cache = true;
    bj_engine *e = NULL;
    cr_assert_eq(bj_jit_engine_create(&e, &m.graph, &o, NULL, &err), BJ_E_UNSUPPORTED);
    cr_expect(strstr(err.msg, "lacks") && strstr(err.msg, feat[1] == 'a' && feat[2] == 'v' ? "avx512f" : "amx-tile"),
              "%s", err.msg);
    cr_assert_null(e);
    bj_model_free(&m);
}

/* options.profile: every step of every forward is counted once, in its row (ternary matmuls by
 * shape, so their steps add up to the report's matmul count per forward), rows largest first,
 * and their time is part of the forward time; the profiled engine computes the same logits; an
 * engine made without the option (or the reference engine) has no profile. */
Test(jit_engine, profile_counts_every_step, .timeout = 300) {
    bj_model m;
    load(&m, "models/kjv-bitnet-11m/packed");
    bj_error err = { 0 };
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.cache_dir = BJ_TEST_TMP "/jit-profile-cache";
    o.profile = true;
    bj_jit_report r;
    bj_engine *e, *plain, *ref;
    cr_assert_eq(bj_jit_engine_create(&e, &m.graph, &o, &r, &err), BJ_OK, "%s", err.msg);
    o.profile = false;
    cr_assert_eq(bj_jit_engine_create(&plain, &m.graph, &o, NULL, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_ref_engine_create(&ref, &m.graph, &err), BJ_OK, "%s", err.msg);
    size_t V = (size_t)e->n_vocab;
    float *a = malloc(N_PROMPT * V * sizeof *a), *b = malloc(N_PROMPT * V * sizeof *b);
    const int forwards = 3;
    for (int i = 0; i < forwards; i++) {
        bj_engine_reset(e);
        bj_engine_reset(plain);
        cr_assert_eq(bj_engine_forward(e, k_prompt, N_PROMPT, true, a, &err), BJ_OK, "%s", err.msg);
        cr_assert_eq(bj_engine_forward(plain, k_prompt, N_PROMPT, true, b, &err), BJ_OK, "%s", err.msg);
        cr_expect_arr_eq(a, b, N_PROMPT * V * sizeof *a, "profiling changed the logits");
    }
    bj_jit_profile_row rows[64];
    bj_jit_profile_sum sum;
    int n;
    cr_assert_eq(bj_jit_profile(e, rows, 64, &n, &sum, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(sum.forwards, forwards);
    cr_expect_eq(sum.tokens, forwards * N_PROMPT);
    int64_t mm_steps = 0, steps = 0;
    double ms = 0;
    for (int i = 0; i < n; i++) {
        if (!strncmp(rows[i].what, "matmul ", 7)) {
            mm_steps += rows[i].steps;
            cr_expect_gt(rows[i].bytes, 0, "%s: no weight bytes", rows[i].what);
        }
        cr_expect_eq(rows[i].steps % forwards, 0, "%s: %lld steps in %d forwards", rows[i].what,
                     (long long)rows[i].steps, forwards);
        if (i) cr_expect_geq(rows[i - 1].ms, rows[i].ms, "rows not largest first");
        steps += rows[i].steps;
        ms += rows[i].ms;
    }
    cr_expect_eq(mm_steps, r.n_matmuls * forwards);
    /* nodes a forward runs: everything but inputs, weights and the output, of the graph the
     * pass pipeline hands the engine (the same pipeline, run apart) */
    bj_graph own;
    bj_plan plan;
    o.profile = true;
    cr_assert_eq(bj_jit_compile(&m.graph, &o, &own, &plan, &err), BJ_OK, "%s", err.msg);
    int64_t values = 0;
    for (uint32_t i = 0; i < own.n_nodes; i++) {
        uint8_t op = own.nodes[i].op;
        values += op != BJ_OP_INPUT && op != BJ_OP_WEIGHT && op != BJ_OP_WEIGHT_QUANT && op != BJ_OP_OUTPUT;
    }
    cr_expect_lt(own.n_nodes, m.graph.n_nodes, "the pipeline fused nothing");
    bj_plan_free(&plan);
    bj_graph_free(&own);
    cr_expect_eq(steps, values * forwards);
    cr_expect_leq(ms, sum.forward_ms);
    cr_expect_neq(bj_jit_profile(plain, rows, 64, &n, &sum, &err), BJ_OK);
    cr_expect_neq(bj_jit_profile(ref, rows, 64, &n, &sum, &err), BJ_OK);
    free(a);
    free(b);
    bj_engine_free(e);
    bj_engine_free(plain);
    bj_engine_free(ref);
    bj_model_free(&m);
}

/* The engine runs what the pass pipeline made of the graph: disabling a pass changes the printed
 * IR and which passes ran, not the logits; a kernel variant written into the IR (as bjopt
 * would) or forced by the options is the kernel the engine calls. */
static char *jit_printed(bj_engine **e, const bj_graph *g, const char *disable, int variant, bj_jit_report *r) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert(out);
    bj_pipeline_opts po;
    bj_pipeline_opts_default(&po);
    po.print_after_all = true;
    po.disable = disable;
    po.out = out;
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.no_tune_db = true;
    o.variant = variant;
    o.cache_dir = BJ_TEST_TMP "/jit-pipeline-cache";
    o.pipeline = &po;
    bj_error err = { 0 };
    cr_assert_eq(bj_jit_engine_create(e, g, &o, r, &err), BJ_OK, "%s", err.msg);
    fclose(out);
    return text;
}

Test(jit_engine, runs_what_the_pipeline_made, .timeout = 300) {
    bj_model m;
    load(&m, "models/kjv-bitnet-11m/packed");
    bj_error err = { 0 };
    bj_engine *ref, *fused, *plain, *forced, *ir;
    cr_assert_eq(bj_ref_engine_create(&ref, &m.graph, &err), BJ_OK, "%s", err.msg);
    size_t V = (size_t)ref->n_vocab;
    float *lr = malloc(N_PROMPT * V * sizeof *lr), *lj = malloc(N_PROMPT * V * sizeof *lj);
    int32_t ir_ids[N_GEN], ij[N_GEN];
    run(ref, lr, ir_ids);
    bj_jit_report rf, rp, rk, ri, ru, rn;
    bj_engine *unfolded, *neither;
    char *tf = jit_printed(&fused, &m.graph, NULL, 0, &rf);
    char *tp = jit_printed(&plain, &m.graph, "fuse-norm-quant-bitlinear", 0, &rp);
    char *tu = jit_printed(&unfolded, &m.graph, "fold-epilogues", 0, &ru);
    char *tn = jit_printed(&neither, &m.graph, "fuse-norm-quant-bitlinear,fold-epilogues", 0, &rn);
    cr_expect(strstr(tf, "= bitlinear ") != NULL, "the default pipeline fuses into bitlinear");
    cr_expect(strstr(tp, "= bitlinear ") == NULL, "fuse-norm-quant-bitlinear disabled, still fused");
    cr_expect(strstr(rf.passes, "fuse-norm-quant-bitlinear") != NULL, "%s", rf.passes);
    cr_expect(strstr(rp.passes, "fuse-norm-quant-bitlinear") == NULL, "%s", rp.passes);
    /* fold-epilogues: the plan prints the elementwise ops run inside matmul steps, and the engine
     * runs that many; disabled, the plan has none and neither has the engine */
    cr_expect(strstr(tf, "bitlinear split=rows phases=2: epilogue %") != NULL, "no folded epilogue printed");
    cr_expect(strstr(tp, "matmul_tk split=rows phases=1: epilogue %") != NULL, "no folded epilogue printed (unfused)");
    cr_expect(strstr(tu, ": epilogue %") == NULL && strstr(tn, ": epilogue %") == NULL, "fold-epilogues disabled, still folded");
    cr_expect(strstr(tu, "# steps: ") != NULL && strstr(tu, ", 0 epilogues folded") != NULL, "the unfolded plan is printed");
    cr_expect_eq(rf.n_epilogues, 24);
    cr_expect_eq(rp.n_epilogues, 24);
    cr_expect_eq(ru.n_epilogues, 0);
    cr_expect_eq(rn.n_epilogues, 0);
    cr_expect(strstr(ru.passes, "fold-epilogues") == NULL && strstr(rf.passes, "fold-epilogues") != NULL, "%s", ru.passes);
    bj_engine *js[] = { fused, plain, unfolded, neither };
    for (int k = 0; k < 4; k++) {
        run(js[k], lj, ij);
        cr_expect_arr_eq(lj, lr, N_PROMPT * V * sizeof *lr, "pipeline %d: logits differ from ref", k);
        cr_expect_arr_eq(ij, ir_ids, sizeof ij, "pipeline %d: greedy ids differ from ref", k);
    }
    /* --kernel: every matmul runs the forced variant */
    free(jit_printed(&forced, &m.graph, NULL, BJ_CG_V_BITPLANE, &rk));
    cr_expect(!strncmp(rk.variants, "bitplane/", 9) && !strstr(rk.variants, "dot2"), "%s", rk.variants);
    /* a variant in the IR (bjopt --passes=select-kernels, then edited) is the one the engine calls */
    bj_graph g2;
    cr_assert_eq(bj_graph_clone(&g2, &m.graph, &err), BJ_OK);
    bj_pipeline_opts po;
    bj_pipeline_opts_default(&po);
    po.passes = "select-kernels";
    cr_assert_eq(bj_pipeline_run(&g2, &po, &err), BJ_OK, "%s", err.msg);
    int n_tk = 0;
    for (uint32_t i = 0; i < g2.n_nodes; i++)
        if (g2.nodes[i].op == BJ_OP_MATMUL_TK) g2.nodes[i].iattr[0] = BJ_CG_V_BITPLANE, n_tk++;
    cr_assert_gt(n_tk, 0);
    free(jit_printed(&ir, &g2, NULL, 0, &ri));
    cr_expect(!strncmp(ri.variants, "bitplane/", 9) && !strstr(ri.variants, "dot2"), "%s", ri.variants);
    cr_expect(strncmp(rf.variants, "bitplane/", 9) != 0, "the default is not bitplane here: %s", rf.variants);
    bj_engine *more[] = { forced, ir };
    for (int k = 0; k < 2; k++) {
        run(more[k], lj, ij);
        cr_expect_arr_eq(lj, lr, N_PROMPT * V * sizeof *lr, "forced %d: logits differ from ref", k);
    }
    free(tf);
    free(tp);
    free(tu);
    free(tn);
    bj_engine_free(unfolded);
    bj_engine_free(neither);
    free(lr);
    free(lj);
    bj_engine_free(ref);
    bj_engine_free(fused);
    bj_engine_free(plain);
    bj_engine_free(forced);
    bj_engine_free(ir);
    bj_graph_free(&g2);
    bj_model_free(&m);
}

/* The engine lays activations out where the plan says: the unedited plan given back through
 * bj_jit_engine_from_plan runs bit-identical to ref, and the same plan with one wrong arena offset
 * (an attention's keys written over its queries, both live until the attention step) does not.
 * An offset outside the arena is refused with an error, not run. */
static bj_status from_plan(bj_engine **e, const bj_graph *g, int edit, bj_error *err) {
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.no_tune_db = true;
    o.cache_dir = BJ_TEST_TMP "/jit-pipeline-cache";
    bj_graph own;
    bj_plan plan;
    cr_assert_eq(bj_jit_compile(g, &o, &own, &plan, err), BJ_OK, "%s", err->msg);
    uint32_t att = BJ_NONE;
    for (uint32_t i = 0; i < own.n_nodes && att == BJ_NONE; i++)
        if (own.nodes[i].op == BJ_OP_ATTENTION) att = i;
    cr_assert_neq(att, BJ_NONE);
    bj_plan_value *q = &plan.val[own.nodes[att].in[0]], *k = &plan.val[own.nodes[att].in[1]];
    cr_assert(q->row[BJ_PIECE_F] >= k->row[BJ_PIECE_F] && q->off[BJ_PIECE_F] != k->off[BJ_PIECE_F]);
    if (edit == 1) k->off[BJ_PIECE_F] = q->off[BJ_PIECE_F];
    if (edit == 2) k->off[BJ_PIECE_F] = plan.arena_row;
    return bj_jit_engine_from_plan(e, &own, &plan, &o, NULL, err);
}

Test(jit_engine, runs_the_plans_offsets, .timeout = 300) {
    bj_model m;
    load(&m, "models/kjv-bitnet-11m/packed");
    bj_error err = { 0 };
    bj_engine *ref, *good, *bad, *out;
    cr_assert_eq(bj_ref_engine_create(&ref, &m.graph, &err), BJ_OK, "%s", err.msg);
    size_t V = (size_t)ref->n_vocab;
    float *lr = malloc(N_PROMPT * V * sizeof *lr), *lj = malloc(N_PROMPT * V * sizeof *lj);
    int32_t ir_ids[N_GEN], ij[N_GEN];
    run(ref, lr, ir_ids);
    cr_assert_eq(from_plan(&good, &m.graph, 0, &err), BJ_OK, "%s", err.msg);
    run(good, lj, ij);
    cr_expect_arr_eq(lj, lr, N_PROMPT * V * sizeof *lr, "the plan as made: logits differ from ref");
    cr_assert_eq(from_plan(&bad, &m.graph, 1, &err), BJ_OK, "%s", err.msg);
    run(bad, lj, ij);
    cr_expect(memcmp(lj, lr, N_PROMPT * V * sizeof *lr) != 0, "keys aliased onto queries, yet the logits equal ref's");
    cr_expect_eq(from_plan(&out, &m.graph, 2, &err), BJ_E_INVALID);
    cr_expect(strstr(err.msg, "outside the arena") != NULL, "%s", err.msg);
    free(lr);
    free(lj);
    bj_engine_free(ref);
    bj_engine_free(good);
    bj_engine_free(bad);
    bj_model_free(&m);
}
