/* tests/unit/test_tune.c -- the autotuner and the tuning database (runtime/tune.h,
 * codegen/cg_tunedb.h): a short tune of the bundled kjv model into a temporary database, then
 * the kjv oracle's greedy ids and bit-identical logits against the reference engine with that
 * database in effect; a hand-written database that forces other variants, paths and tiles
 * (decode and a separate prefill kernel) gives the same outputs; corrupt, truncated,
 * other-version and other-CPU databases and unusable entries warn and fall back to the cost
 * rule, never fail; save/load round trip; a bitjitc library built with a database runs with
 * and without it. Speed is reported by `bitjit tune`, never asserted here. */
#include "codegen/cg_tunedb.h"
#include "runtime/aot_load.h"
#include "runtime/runtime.h"
#include "runtime/tune.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "support/files.h"
#include "support/oracle_check.h"
#include "support/shell.h"

#define KJV "models/kjv-bitnet-11m/packed"
#define N_LONG 40 /* a prompt long enough for the prefill kernels (>= BJ_CG_TUNE_PREFILL_MIN_T) */

static void load(bj_model *m) {
    bj_error err = { 0 };
    cr_assert_eq(bj_model_load(m, BJ_SOURCE_DIR "/" KJV, &err), BJ_OK, "%s", err.msg);
}

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/tune-%d-%s", BJ_TEST_TMP, (int)getpid(), name);
}

static bj_engine *jit(const bj_graph *g, const char *db, bool no_db, bj_jit_report *r) {
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.cache_dir = BJ_TEST_TMP "/tune-cache";
    o.tune_db = db;
    o.no_tune_db = no_db;
    bj_engine *e;
    bj_error err = { 0 };
    cr_assert_eq(bj_jit_engine_create(&e, g, &o, r, &err), BJ_OK, "%s", err.msg);
    return e;
}

/* The first max_prompts oracle prompts' greedy ids, as in test_e2e_oracle. */
static void expect_oracle_ids(bj_engine *e, const bj_model *m, const char *what, size_t max_prompts) {
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json"), *prompts = json_object_get(o, "prompts");
    size_t i;
    json_t *p;
    cr_assert_gt(json_array_size(prompts), 0);
    json_array_foreach(prompts, i, p) {
        if (i >= max_prompts) break;
        bj_oracle_prompt op;
        bj_test_oracle_prompt(p, "packed", &op);
        int32_t got[128];
        cr_assert_leq(op.n_greedy, 128);
        /* up to a known near-tie of the oracle's (support/oracle.h) */
        int tie = bj_test_oracle_greedy_tie("models/kjv-bitnet-11m/oracle.json", "packed", op.text);
        if (tie >= 0 && (size_t)tie < op.n_greedy) op.n_greedy = (size_t)tie;
        bj_test_greedy(e, op.ids, (int64_t)op.n_ids, (int64_t)op.n_greedy, got);
        for (size_t t = 0; t < op.n_greedy; t++)
            cr_expect_eq(got[t], op.greedy[t], "%s: prompt %zu token %zu: got %d, oracle %d", what, i, t, got[t],
                         op.greedy[t]);
        bj_test_oracle_prompt_free(&op);
    }
    (void)m;
    json_decref(o);
}

/* All-position logits of an N_LONG-token prompt equal the reference engine's bit for bit. */
static void expect_ref_logits(bj_engine *e, const bj_graph *g, const char *what) {
    bj_error err = { 0 };
    bj_engine *ref;
    cr_assert_eq(bj_ref_engine_create(&ref, g, &err), BJ_OK, "%s", err.msg);
    size_t V = (size_t)ref->n_vocab;
    float *a = malloc(N_LONG * V * sizeof *a), *b = malloc(N_LONG * V * sizeof *b);
    int32_t toks[N_LONG];
    for (int i = 0; i < N_LONG; i++) toks[i] = (int32_t)((i * 977 + 13) % 4000);
    bj_engine_reset(e);
    cr_assert_eq(bj_engine_forward(ref, toks, N_LONG, true, a, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_engine_forward(e, toks, N_LONG, true, b, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(memcmp(a, b, N_LONG * V * sizeof *a), 0, "%s: logits differ from the reference engine", what);
    /* and one decode step after it */
    int32_t next = 7;
    cr_assert_eq(bj_engine_forward(ref, &next, 1, false, a, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_engine_forward(e, &next, 1, false, b, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(memcmp(a, b, V * sizeof *a), 0, "%s: decode logits differ from the reference engine", what);
    free(a);
    free(b);
    bj_engine_free(ref);
}

/* A database for this host that forces, for every distinct kjv shape, decode = bitplane on the
 * best path with changed tiles and prefill = bitplane on the generic path (a second kernel). */
static void write_forced_db(const bj_graph *g, const char *path) {
    bj_cg_target t;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    bj_cg_tunedb db;
    bj_cg_tunedb_init(&db, &t);
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op != BJ_OP_MATMUL_T && n->op != BJ_OP_MATMUL_TK && n->op != BJ_OP_BITLINEAR) continue;
        const bj_node *w = &g->nodes[n->op == BJ_OP_BITLINEAR ? n->in[2] : n->in[1]];
        bj_cg_tune_entry e = { .m = (uint32_t)w->shape.d[0], .k = (uint32_t)w->shape.d[1], .wtype = BJ_CG_W_TERNARY,
                               .tclass = BJ_CG_TC_DECODE, .variant = BJ_CG_V_BITPLANE, .isa = bj_cg_best_isa(&t),
                               .tile_m = 3, .tile_t = 2, .unroll = 2, .default_ns = 1, .tuned_ns = 1 };
        cr_assert_eq(bj_cg_tunedb_set(&db, &e, &err), BJ_OK);
        e.tclass = BJ_CG_TC_PREFILL;
        e.isa = BJ_CG_ISA_GENERIC;
        e.tile_m = 1;
        e.tile_t = 4;
        e.unroll = 1;
        cr_assert_eq(bj_cg_tunedb_set(&db, &e, &err), BJ_OK);
    }
    cr_assert_eq(bj_cg_tunedb_save(&db, path, &err), BJ_OK, "%s", err.msg);
    bj_cg_tunedb_free(&db);
}

Test(tune, short_tune_keeps_oracle_outputs, .timeout = 900) {
    bj_model m;
    load(&m);
    char db[4096];
    tmp_path(db, sizeof db, "short.txt");
    unlink(db);
    bj_tune_opts o;
    bj_tune_opts_default(&o);
    o.n_threads = 2;
    o.budget_s = 6;
    o.t_prefill = 16;
    o.cache_dir = BJ_TEST_TMP "/tune-cache";
    o.db_path = db;
    bj_tune_report rep;
    bj_error err = { 0 };
    cr_assert_eq(bj_tune_graph(&m.graph, &o, &rep, &err), BJ_OK, "%s", err.msg);
    cr_assert_gt(rep.n, 0);
    cr_assert_gt(rep.n_written, 0, "the budget reached no shape");
    for (size_t i = 0; i < rep.n; i++) {
        const bj_tune_result *r = &rep.r[i];
        cr_expect_eq(r->rejected, 0, "%ux%u: %d candidates gave wrong results", r->m, r->k, r->rejected);
        if (r->measured) cr_expect_gt(r->def_ns, 0);
        char a[96], b[96];
        bj_tune_desc_str(&r->def, a, sizeof a);
        bj_tune_desc_str(&r->best, b, sizeof b);
        printf("[tune] %ux%u %s: %s %.0f ns -> %s %.0f ns\n", r->m, r->k, bj_cg_tclass_name((bj_cg_tclass)r->tclass), a,
               r->def_ns, b, r->best_ns);
    }
    cr_assert_eq(access(db, R_OK), 0);
    bj_tune_report_free(&rep);

    bj_jit_report r;
    bj_engine *e = jit(&m.graph, db, false, &r);
    cr_expect_eq(r.tune_warning[0], 0, "%s", r.tune_warning);
    cr_expect_str_eq(r.tune_db, db);
    cr_expect_gt(r.n_tuned, 0, "no matmul took its kernel from the database");
    expect_oracle_ids(e, &m, "tuned", 100);
    expect_ref_logits(e, &m.graph, "tuned");
    bj_engine_free(e);
    unlink(db);
    bj_model_free(&m);
}

/* The quick tune of a first start (select-kernels + bj_tune_autotune): an engine over a fresh
 * kernel cache measures every kjv shape, writes the default database there with a decode entry
 * for each, takes its kernels from it and keeps the reference engine's bits; a second engine
 * over the same cache tunes nothing; --no-autotune (no_autotune) and --no-cache tune nothing
 * and write no database. */
static void autotune_engine(const bj_graph *g, const char *cache, bool no_autotune, bool no_cache, bj_jit_report *r) {
    bj_jit_options o;
    bj_jit_options_default(&o);
    o.n_threads = 2;
    o.cache_dir = cache;
    o.no_autotune = no_autotune;
    o.no_cache = no_cache;
    bj_engine *e;
    bj_error err = { 0 };
    cr_assert_eq(bj_jit_engine_create(&e, g, &o, r, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(r->tune_warning[0], 0, "%s", r->tune_warning);
    if (r->n_autotuned) expect_ref_logits(e, g, "quick-tuned");
    bj_engine_free(e);
}

Test(tune, autotune_on_first_start, .timeout = 600) {
    bj_model m;
    load(&m);
    char cache[4096], cmd[4200];
    tmp_path(cache, sizeof cache, "autotune-cache");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
    cr_assert_eq(system(cmd), 0);
    bj_jit_report r;
    autotune_engine(&m.graph, cache, true, false, &r); /* --no-autotune: nothing measured or written */
    cr_expect_eq(r.n_autotuned, 0);
    cr_expect_eq(r.n_tuned, 0);
    cr_expect_neq(access(r.tune_db, F_OK), 0, "--no-autotune wrote %s", r.tune_db);
    autotune_engine(&m.graph, cache, false, true, &r); /* --no-cache: nowhere to keep it */
    cr_expect_eq(r.n_autotuned, 0);

    autotune_engine(&m.graph, cache, false, false, &r);
    printf("[autotune] kjv: %lld shapes in %.2f s; %lld of %lld matmuls from %s\n", (long long)r.n_autotuned,
           r.autotune_s, (long long)r.n_tuned, (long long)r.n_matmuls, r.tune_db);
    cr_assert_gt(r.n_autotuned, 0, "the first start tuned nothing");
    cr_expect_gt(r.n_tuned, 0, "no matmul takes its kernel from the new entries");
    /* A busy machine may spend the budget before the last shapes: later starts tune those
     * (found like cached kernels: a start with every entry tunes nothing). */
    for (int start = 0; start < 8 && r.autotune_s > 0; start++) autotune_engine(&m.graph, cache, false, false, &r);
    cr_expect_eq(r.autotune_s, 0, "a start with every entry tuned again");
    cr_expect_eq(r.n_tuned, r.n_matmuls, "every matmul takes its kernel from the entries");
    bj_cg_target t;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    bj_cg_tunedb db;
    bool found = false;
    char warn[512];
    cr_assert_eq(bj_cg_tunedb_load(&db, &t, r.tune_db, &found, warn, sizeof warn, &err), BJ_OK, "%s", err.msg);
    cr_assert(found, "no database at %s (%s)", r.tune_db, warn);
    for (uint32_t i = 0; i < m.graph.n_nodes; i++) {
        const bj_node *n = &m.graph.nodes[i];
        if (n->op != BJ_OP_MATMUL_T && n->op != BJ_OP_BITLINEAR) continue;
        const bj_node *w = &m.graph.nodes[n->op == BJ_OP_BITLINEAR ? n->in[2] : n->in[1]];
        cr_expect_not_null(bj_cg_tunedb_find(&db, BJ_CG_W_TERNARY, (uint32_t)w->shape.d[0], (uint32_t)w->shape.d[1],
                                             BJ_CG_TC_DECODE), "no entry for %s", w->name);
        cr_expect_not_null(bj_cg_tunedb_find(&db, BJ_CG_W_TERNARY, (uint32_t)w->shape.d[0], (uint32_t)w->shape.d[1],
                                             BJ_CG_TC_PREFILL), "no prefill entry for %s", w->name);
    }
    bj_cg_tunedb_free(&db);
    cr_assert_eq(system(cmd), 0);
    bj_model_free(&m);
}

Test(tune, forced_database_keeps_outputs, .timeout = 600) {
    bj_model m;
    load(&m);
    char db[4096];
    tmp_path(db, sizeof db, "forced.txt");
    write_forced_db(&m.graph, db);
    bj_jit_report r;
    bj_engine *e = jit(&m.graph, db, false, &r);
    cr_expect_eq(r.tune_warning[0], 0, "%s", r.tune_warning);
    cr_expect_eq(r.n_tuned, r.n_matmuls);
    cr_expect_eq(r.n_tuned_pp, r.n_matmuls);
    cr_expect(strstr(r.variants, "bitplane") != NULL, "%s", r.variants);
    cr_expect(strstr(r.variants, "; prefill ") != NULL, "the summary names the prefill kernels: %s", r.variants);
    expect_oracle_ids(e, &m, "forced", 100);
    expect_ref_logits(e, &m.graph, "forced");
    bj_engine_free(e);

    /* --no-tune-db: the cost rule */
    e = jit(&m.graph, db, true, &r);
    cr_expect_eq(r.n_tuned, 0);
    cr_expect_str_eq(r.tune_db, "(off)");
    cr_expect(strstr(r.variants, "bitplane") == NULL, "%s", r.variants);
    bj_engine_free(e);
    unlink(db);
    bj_model_free(&m);
}

/* A bad file: the engine warns (when want_warning), uses no entry, and stays exact. */
static void expect_fallback(const bj_model *m, const char *path, bool want_warning, const char *what) {
    bj_jit_report r;
    bj_engine *e = jit(&m->graph, path, false, &r);
    if (want_warning) cr_expect_neq(r.tune_warning[0], 0, "%s: no warning", what);
    else cr_expect_eq(r.tune_warning[0], 0, "%s: %s", what, r.tune_warning);
    cr_expect_eq(r.n_tuned, 0, "%s: %lld matmuls used the database", what, (long long)r.n_tuned);
    cr_expect_eq(r.n_tuned_pp, 0, "%s", what);
    expect_oracle_ids(e, m, what, 1);
    bj_engine_free(e);
}

Test(tune, bad_databases_warn_and_fall_back, .timeout = 600) {
    bj_model m;
    load(&m);
    char good[4096], bad[4096];
    tmp_path(good, sizeof good, "good.txt");
    tmp_path(bad, sizeof bad, "bad.txt");
    write_forced_db(&m.graph, good);
    size_t n;
    char *text = read_all(good, &n);

    write_all(bad, text, n / 2); /* truncated mid-line */
    expect_fallback(&m, bad, true, "truncated");
    char *cut = strstr(text, "\nend ");
    cr_assert_not_null(cut);
    write_all(bad, text, (size_t)(cut - text) + 1); /* truncated at a line: no end record */
    expect_fallback(&m, bad, true, "no end record");
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(i * 131 + 7);
    write_all(bad, junk, sizeof junk);
    expect_fallback(&m, bad, true, "garbage");
    write_all(bad, "", 0);
    expect_fallback(&m, bad, true, "empty");

    char *other = malloc(n + 64);
    snprintf(other, n + 64, "bitjit-tunedb 99\n%s", strchr(text, '\n') + 1);
    write_all(bad, other, strlen(other));
    expect_fallback(&m, bad, true, "other version");
    char *cpu = strstr(text, "\ncpu ");
    cr_assert_not_null(cpu);
    snprintf(other, n + 64, "%.*s\ncpu not-this-cpu%s", (int)(cpu - text), text, strchr(cpu + 1, '\n'));
    write_all(bad, other, strlen(other));
    expect_fallback(&m, bad, true, "other cpu");
    char *abi = strstr(text, "\nabi ");
    cr_assert_not_null(abi);
    snprintf(other, n + 64, "%.*s\nabi 999%s", (int)(abi - text), text, strchr(abi + 1, '\n'));
    write_all(bad, other, strlen(other));
    expect_fallback(&m, bad, true, "other abi");

    /* Well-formed file, entries the target or the generators refuse: ignored silently. */
    bj_cg_target t;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, NULL, NULL, &err), BJ_OK);
    bj_cg_tunedb db;
    bool found;
    cr_assert_eq(bj_cg_tunedb_load(&db, &t, good, &found, NULL, 0, &err), BJ_OK);
    cr_assert(found);
    for (size_t i = 0; i < db.n; i++) {
        if (db.e[i].tclass == BJ_CG_TC_DECODE) {
            db.e[i].variant = BJ_CG_V_DOT2; /* passes the descriptor check, the dot2 generator refuses it */
            db.e[i].tile_m = 16;
        } else {
            db.e[i].variant = BJ_CG_V_BIN1; /* binary kernel for ternary weights: refused */
        }
    }
    cr_assert_eq(bj_cg_tunedb_save(&db, bad, &err), BJ_OK);
    bj_cg_tunedb_free(&db);
    expect_fallback(&m, bad, false, "refused entries");

    /* A missing file is no database and no warning. */
    unlink(bad);
    expect_fallback(&m, bad, false, "missing");
    free(other);
    free(text);
    unlink(good);
    bj_model_free(&m);
}

Test(tune, save_load_round_trip) {
    bj_cg_target t;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, NULL, NULL, &err), BJ_OK);
    bj_cg_tunedb db, back;
    bj_cg_tunedb_init(&db, &t);
    bj_cg_tune_entry e = { .m = 384, .k = 1024, .wtype = BJ_CG_W_TERNARY, .tclass = BJ_CG_TC_PREFILL,
                           .variant = BJ_CG_V_DOT2, .isa = BJ_CG_ISA_GENERIC, .tile_m = 2, .tile_t = 8, .unroll = 4,
                           .prefetch = 12, .default_ns = 1234.5, .tuned_ns = 1000.25 };
    cr_assert_eq(bj_cg_tunedb_set(&db, &e, &err), BJ_OK);
    e.tile_m = 1; /* replaces */
    cr_assert_eq(bj_cg_tunedb_set(&db, &e, &err), BJ_OK);
    e.wtype = BJ_CG_W_BINARY;
    e.variant = BJ_CG_V_BIN1;
    cr_assert_eq(bj_cg_tunedb_set(&db, &e, &err), BJ_OK);
    cr_assert_eq(db.n, 2);
    char path[4096];
    tmp_path(path, sizeof path, "rt/sub/db.txt"); /* directories are made */
    cr_assert_eq(bj_cg_tunedb_save(&db, path, &err), BJ_OK, "%s", err.msg);
    bool found;
    char warn[256];
    cr_assert_eq(bj_cg_tunedb_load(&back, &t, path, &found, warn, sizeof warn, &err), BJ_OK);
    cr_assert(found, "%s", warn);
    cr_assert_eq(back.n, 2);
    const bj_cg_tune_entry *f = bj_cg_tunedb_find(&back, BJ_CG_W_TERNARY, 384, 1024, BJ_CG_TC_PREFILL);
    cr_assert_not_null(f);
    cr_expect_eq(f->tile_m, 1);
    cr_expect_eq(f->tile_t, 8);
    cr_expect_eq(f->unroll, 4);
    cr_expect_eq(f->prefetch, 12);
    cr_expect_eq(f->isa, BJ_CG_ISA_GENERIC);
    cr_expect_null(bj_cg_tunedb_find(&back, BJ_CG_W_TERNARY, 384, 1024, BJ_CG_TC_DECODE));
    cr_expect_not_null(bj_cg_tunedb_find(&back, BJ_CG_W_BINARY, 384, 1024, BJ_CG_TC_PREFILL));
    char def[4096];
    cr_assert_eq(bj_cg_tunedb_default_path(&t, "/x/y", def, sizeof def, &err), BJ_OK);
    cr_expect(!strncmp(def, "/x/y/tune-", 10), "%s", def);
    bj_cg_tunedb_free(&db);
    bj_cg_tunedb_free(&back);
    unlink(path);
}

/* Without a database word on prefill, AVX-512 VNNI's dot2-family kernels get a second, 8-token
 * tile for prefill steps (the path's default, not a tuned entry), and where the CPU has AMX-INT8
 * dot2 gets the AMX path instead; other paths, and a database that has a prefill entry equal to
 * the decode kernel, get none. */
Test(tune, default_prefill_tiles) {
    bj_cg_target spr, vnni, z3;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_named(&spr, "sapphirerapids", NULL, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_target_named(&vnni, "sapphirerapids", "-amx-tile,-amx-int8", &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_target_named(&z3, "znver3", NULL, &err), BJ_OK, "%s", err.msg);
    bj_cg_tune_pick pk;
    for (int v = BJ_CG_V_AUTO; v < BJ_CG_V_COUNT; v++) {
        if (v == BJ_CG_V_WCODE || v == BJ_CG_V_BIN1) continue;
        cr_assert_eq(bj_cg_tune_pick_descs(NULL, &spr, (bj_cg_variant)v, v != BJ_CG_V_AUTO, BJ_CG_W_TERNARY, 2560, 6912,
                                           NULL, &pk, &err), BJ_OK, "%s", err.msg);
        if (pk.dec.variant == BJ_CG_V_DOT2) /* the AMX path, over the same packed weights */
            cr_expect(pk.has_pp && pk.pp_default && pk.pp.isa == BJ_CG_ISA_AMX && pk.pp.variant == BJ_CG_V_DOT2 &&
                      pk.pp.tile_t == 32 && pk.dec.isa == BJ_CG_ISA_AVX512VNNI);
        else if (pk.dec.variant == BJ_CG_V_TRIT5)
            cr_expect(pk.has_pp && pk.pp.isa == BJ_CG_ISA_AVX512VNNI && pk.pp.tile_t == 8, "trit5 keeps VNNI");
        cr_assert_eq(bj_cg_tune_pick_descs(NULL, &vnni, (bj_cg_variant)v, v != BJ_CG_V_AUTO, BJ_CG_W_TERNARY, 2560, 6912,
                                           NULL, &pk, &err), BJ_OK, "%s", err.msg);
        bool family = pk.dec.variant != BJ_CG_V_BITPLANE;
        cr_expect_eq(pk.has_pp, family, "%s", bj_cg_variant_name((bj_cg_variant)pk.dec.variant));
        if (!family) continue;
        cr_expect(pk.pp_default && pk.pp.isa == BJ_CG_ISA_AVX512VNNI && pk.pp.tile_t == 8 && pk.dec.tile_t == 4);
        bj_cg_kdesc x = pk.pp;
        x.tile_t = pk.dec.tile_t;
        cr_expect_eq(memcmp(&x, &pk.dec, sizeof x), 0, "only the token tile differs");
        cr_expect_eq(bj_cg_kdesc_check(&pk.pp, &vnni, &err), BJ_OK, "%s", err.msg);
    }
    cr_assert_eq(bj_cg_tune_pick_descs(NULL, &spr, BJ_CG_V_BIN1, false, BJ_CG_W_BINARY, 640, 2560, NULL, &pk, &err), BJ_OK);
    cr_expect(pk.has_pp && pk.pp.tile_t == 8, "bin1 too");
    cr_assert_eq(bj_cg_tune_pick_descs(NULL, &z3, BJ_CG_V_AUTO, false, BJ_CG_W_TERNARY, 2560, 6912, NULL, &pk, &err), BJ_OK);
    cr_expect(!pk.has_pp, "AVX2 keeps one kernel");
    /* a database whose prefill entry is the decode kernel: no second kernel */
    bj_cg_tunedb db;
    bj_cg_tunedb_init(&db, &spr);
    cr_assert_eq(bj_cg_tune_pick_descs(NULL, &spr, BJ_CG_V_AUTO, false, BJ_CG_W_TERNARY, 2560, 6912, NULL, &pk, &err), BJ_OK);
    bj_cg_tune_entry e = { .m = 2560, .k = 6912, .wtype = BJ_CG_W_TERNARY, .tclass = BJ_CG_TC_PREFILL,
                           .variant = pk.dec.variant, .isa = pk.dec.isa, .tile_m = pk.dec.tile_m, .tile_t = pk.dec.tile_t,
                           .unroll = pk.dec.unroll, .prefetch = pk.dec.prefetch, .default_ns = 2, .tuned_ns = 2 };
    cr_assert_eq(bj_cg_tunedb_set(&db, &e, &err), BJ_OK);
    cr_assert_eq(bj_cg_tune_pick_descs(&db, &spr, BJ_CG_V_AUTO, false, BJ_CG_W_TERNARY, 2560, 6912, NULL, &pk, &err), BJ_OK);
    cr_expect(!pk.has_pp, "the database said the decode kernel is best for prefill");
    bj_cg_tunedb_free(&db);
}

/* bitjitc with the forced database builds the library with the tuned kernels (its plan, and its
 * weights packed for them): the library runs them, exactly, whether or not a database is where it
 * is loaded, since a library's kernels are the ones it was built with (bj_plan_source). */

/* An engine over an AOT library's kernels (2 threads), with the tuning database db (or
 * ignoring it: no_tune_db); *l and *lm stay open for the caller to close. */
static bj_engine *lib_engine(const char *lib, const char *db, bool no_tune_db, bj_aot_lib **l, bj_model *lm,
                             bj_jit_report *r) {
    bj_error err = { 0 };
    cr_assert_eq(bj_aot_load(l, lm, lib, &err), BJ_OK, "%s", err.msg);
    bj_jit_options o;
    bj_jit_options_default(&o);
    bj_aot_jit_options(*l, &o);
    o.n_threads = 2;
    o.tune_db = db;
    o.no_tune_db = no_tune_db;
    bj_engine *e;
    cr_assert_eq(bj_jit_engine_create(&e, &lm->graph, &o, r, &err), BJ_OK, "%s", err.msg);
    return e;
}
Test(tune, bitjitc_library_with_database, .timeout = 900) {
    bj_model m;
    load(&m);
    char db[4096], lib[4096], exe[4096], cmd[16384], out[16384];
    tmp_path(db, sizeof db, "aot.txt");
    tmp_path(lib, sizeof lib, "aot.so");
    write_forced_db(&m.graph, db);
    bj_model_free(&m);
    snprintf(cmd, sizeof cmd, "'%s' '%s/%s' --tune-db '%s' -v -o '%s' 2>&1", tool("bitjitc", exe, sizeof exe),
             BJ_SOURCE_DIR, KJV, db, lib);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
    cr_expect(strstr(out, "matmuls took their kernel from the tuning database") != NULL, "%s", out);
    cr_expect(strstr(out, " 0 matmuls took") == NULL, "%s", out);
    for (int with = 0; with < 2; with++) {
        bj_aot_lib *l;
        bj_model lm;
        bj_jit_report r;
        bj_engine *e = lib_engine(lib, db, !with, &l, &lm, &r);
        cr_expect_eq(r.n_tuned, r.n_matmuls, "%s database at load: %lld of %lld tuned", with ? "with the" : "without a",
                     (long long)r.n_tuned, (long long)r.n_matmuls);
        cr_expect_eq(r.compiled, 0u);
        cr_expect_eq(r.packed_now, 0u);
        expect_oracle_ids(e, &lm, with ? "library, database at load" : "library, none at load", 100);
        expect_ref_logits(e, &lm.graph, with ? "library, database at load" : "library, none at load");
        bj_engine_free(e);
        bj_model_free(&lm);
        bj_aot_close(l);
    }
    /* A library built without the database, run with one: its plan (the cost rule's kernels) is what runs. */
    snprintf(cmd, sizeof cmd, "'%s' '%s/%s' --no-tune-db -o '%s' 2>&1", tool("bitjitc", exe, sizeof exe), BJ_SOURCE_DIR,
             KJV, lib);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
    bj_aot_lib *l;
    bj_model lm;
    bj_jit_report r;
    bj_engine *e = lib_engine(lib, db, false, &l, &lm, &r);
    cr_expect_eq(r.n_tuned, 0);
    cr_expect_eq(r.n_tuned_pp, 0);
    expect_oracle_ids(e, &lm, "library without the database's kernels", 1);
    bj_engine_free(e);
    bj_model_free(&lm);
    bj_aot_close(l);
    unlink(lib);
    unlink(db);
}

/* The line of ids in a command's output (the one that starts with a digit). */
static void ids_line(const char *out, char *buf, size_t cap) {
    buf[0] = 0;
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (*l >= '0' && *l <= '9') {
            size_t n = strcspn(l, "\n");
            snprintf(buf, cap, "%.*s", (int)n, l);
            return;
        }
}

/* The command: a short tune into a temporary database, its table, then `bitjit run -v` says how
 * many kernels came from it and gives the same ids as with --no-tune-db. */
Test(tune, cli_tune_then_run, .timeout = 900) {
    char db[4096], cmd[16384], out[16384], ids_tuned[16384], ids_plain[16384];
    tmp_path(db, sizeof db, "cli.txt");
    unlink(db);
    snprintf(cmd, sizeof cmd, "'%s' tune --budget 4 -t 1 -T 16 -q --db '%s' --cache-dir '%s/tune-cache'", BJ_BITJIT_EXE,
             db, BJ_TEST_TMP);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
    cr_expect(strstr(out, "| shape (M x K) | matmuls | T | default | ns | tuned | ns | speedup |") != NULL, "%s", out);
    cr_expect(strstr(out, "written to") != NULL, "%s", out);
    cr_assert_eq(access(db, R_OK), 0, "%s", out);
    const char *run = "run -p 'In the beginning' -n 24 --temp 0 --ids -t 2";
    snprintf(cmd, sizeof cmd, "'%s' %s -v --tune-db '%s' --cache-dir '%s/tune-cache'", BJ_BITJIT_EXE, run, db, BJ_TEST_TMP);
    cr_assert_eq(sh(cmd, ids_tuned, sizeof ids_tuned), 0, "%s: %s", cmd, ids_tuned);
    cr_expect(strstr(ids_tuned, "bitjit: tuning database: ") != NULL, "%s", ids_tuned);
    cr_expect(strstr(ids_tuned, "tuning database: 0 of") == NULL, "no kernel from the database: %s", ids_tuned);
    snprintf(cmd, sizeof cmd, "'%s' %s --no-tune-db --cache-dir '%s/tune-cache'", BJ_BITJIT_EXE, run, BJ_TEST_TMP);
    cr_assert_eq(sh(cmd, ids_plain, sizeof ids_plain), 0, "%s: %s", cmd, ids_plain);
    char a[4096], b[4096];
    ids_line(ids_tuned, a, sizeof a);
    ids_line(ids_plain, b, sizeof b);
    cr_expect_gt(strlen(a), 0, "%s", ids_tuned);
    cr_expect_str_eq(a, b, "ids differ with and without the database");
    unlink(db);
}
