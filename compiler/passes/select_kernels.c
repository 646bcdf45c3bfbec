/* compiler/passes/select_kernels.c -- select-kernels: the one place kernel choice happens. Every
 * ternary or binary matmul gets its kernels for the target CPU (opts->target, else
 * opts->mcpu/mattr, else the host).
 *
 *   %y = matmul_t %a, %w        =>   %y = matmul_tk %a, %w {variant=1, isa=5, layout=0, packed=0}
 *   %y = bitlinear %x, %g, %w {variant=0, ...}  =>  the same with variant/isa filled in
 *
 * The choice is codegen's bj_cg_tune_pick_descs over, in this order: a variant forced by the
 * options (--kernel: opts->variant, which also turns the tuning database off), a variant already
 * in the IR (a graph bjopt or an earlier run selected), else the cost rule
 * (bj_cg_pick_variant_for: the binary kernel for binary weights); then the tuning database
 * (opts->tune_db / default_tune_db) for the decode kernel and the prefill kernel, or the path's
 * prefill default (bj_cg_kdesc_prefill_default). Where the default database lacks a shape of
 * the model, a bounded quick tune measures it first and writes its entry (below: bj_sk_autotune). Where only a library's kernels can be had
 * (opts->kernel_lookup), a tuned or prefill kernel it lacks is not chosen: the untuned one is.
 * With opts->source (an AOT library's plan), every pick is the one the library was built with.
 * The weights' values are read only where
 * weights-as-code may be chosen (its descriptor hashes them): small bound matrices, or forced.
 *
 * The IR keeps the selected variant (the cost rule's or the forced one, before the database)
 * and the target's best ISA path as integers: variant 1 dot2, 2 bitplane, 3 wcode, 4 bin1,
 * 5 trit5 (bj_cg_variant); isa 1 generic, 2 avx2, 3 avxvnni, 4 avx512, 5 avx512vnni (bj_cg_isa).
 * The whole choice, descriptors with tiles, goes to the plan (bj_plan.kern, compiler.h), which
 * every executor reads: the JIT engine, bitjitc's library, bench, tune. Nothing else chooses.
 * A ternary variant forced on binary weights is recorded in the plan only (the IR keeps binary
 * weights on bin1). The LM head (matmul_f) gets its exact generated kernel's descriptor in the
 * plan too (bj_plan_kernel.head / head_desc), unless opts->head_c keeps the C head. When the pipeline must hand out a plan but this pass was not selected (--passes=,
 * --disable-passes=select-kernels), bj_pass_select_kernels_plan records the same choices
 * without rewriting the IR.
 * Needs: nothing. Invalidates: nothing (attributes only; the result is unchanged). */
#include "compiler/passes.h"

#include "ir/weights.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The tuning database the options name (loaded once per pipeline run into cx). */
static bj_status bj_sk_tunedb(bj_pass_ctx *cx, const bj_cg_target *t, bj_error *err) {
    const bj_pipeline_opts *o = cx->opts;
    bj_plan *p = &cx->kplan;
    bj_error ign = { 0 };
    if (cx->tdb_tried) return BJ_OK;
    cx->tdb_tried = true;
    if (o->no_tune_db || o->variant) snprintf(p->tune_db, sizeof p->tune_db, "(off)");
    else if (o->tune_db && *o->tune_db) snprintf(p->tune_db, sizeof p->tune_db, "%s", o->tune_db);
    else if (!o->default_tune_db || bj_cg_tunedb_default_path(t, o->cache_dir, p->tune_db, sizeof p->tune_db, &ign) != BJ_OK)
        p->tune_db[0] = 0;
    if (!strcmp(p->tune_db, "(off)") || !p->tune_db[0]) return BJ_OK;
    bool found = false;
    BJ_TRY(bj_cg_tunedb_load(&cx->tdb, t, p->tune_db, &found, p->tune_warning, sizeof p->tune_warning, err));
    if (found) cx->have_tdb = p->tune_db_found = true;
    else bj_cg_tunedb_free(&cx->tdb);
    return BJ_OK;
}

/* Whether the kernel of d can be had: always, unless only a library's kernels can. */
static bool bj_sk_have(const bj_pass_ctx *cx, const bj_cg_kdesc *d) {
    const bj_pipeline_opts *o = cx->opts;
    if (!o->kernel_lookup) return true;
    char sym[32];
    void *fn = NULL;
    bj_error ign = { 0 };
    bj_cg_kernel_symbol(d, sym, sizeof sym);
    return o->kernel_lookup(o->kernel_ud, d, sym, &fn, &ign) == BJ_OK && fn;
}

/* A library built without the database's kernels: its untuned ones instead. */
static void bj_sk_available(const bj_pass_ctx *cx, bj_cg_tune_pick *pk) {
    if (pk->dec_tuned && !bj_sk_have(cx, &pk->dec)) {
        pk->dec = pk->def;
        pk->dec_tuned = false;
    }
    if (pk->has_pp && (pk->pp.variant != pk->dec.variant || !bj_sk_have(cx, &pk->pp))) pk->has_pp = false;
}

/* Node i's kernels into the plan; the variant they were chosen from into *v. */
static bj_status bj_sk_pick(bj_pass_ctx *cx, const bj_graph *g, uint32_t i, const bj_cg_target *t, bj_cg_variant *v,
                            bj_error *err) {
    const bj_node *n = &g->nodes[i];
    uint32_t wid = bj_pass_matmul_weight(n);
    const bj_node *w = &g->nodes[wid];
    uint32_t M = (uint32_t)w->shape.d[0], K = (uint32_t)w->shape.d[1];
    bool forced = cx->opts->variant != 0;
    *v = forced ? (bj_cg_variant)cx->opts->variant : n->op != BJ_OP_MATMUL_T ? (bj_cg_variant)n->iattr[0] : BJ_CG_V_AUTO;
    bj_cg_wtype wt = bj_dtype_class_of((bj_dtype)w->dtype) == BJ_DTC_BINARY ? BJ_CG_W_BINARY : BJ_CG_W_TERNARY;
    bool bound = (w->op == BJ_OP_WEIGHT_QUANT ? g->nodes[w->in[0]].data : w->data) != NULL;
    int8_t *t8 = NULL;
    double scale;
    bj_status st = BJ_OK;
    const bj_plan_source *src = cx->opts->source; /* an AOT library: its plan, as it was built */
    if (!src && bound && (*v == BJ_CG_V_WCODE || (*v == BJ_CG_V_AUTO && bj_cg_wcode_fits(M, K))))
        st = bj_ir_lowbit_values(g, wid, &t8, &scale, err);
    bj_plan_kernel *k = &cx->kplan.kern[i];
    if (st == BJ_OK && src) {
        st = src->pick(src->ud, g, i, &k->pick, err);
        if (st == BJ_OK && forced && k->pick.dec.variant != *v) /* the library's kernels are fixed */
            st = BJ_FAIL(err, BJ_E_UNSUPPORTED, "variant %s asked, but the library was built with %s (rebuild it, or run "
                         "the model itself)", bj_cg_variant_name(*v), bj_cg_variant_name((bj_cg_variant)k->pick.dec.variant));
    } else if (st == BJ_OK)
        st = bj_cg_tune_pick_descs(cx->have_tdb ? &cx->tdb : NULL, t, *v, forced, wt, M, K, t8, &k->pick, err);
    free(t8);
    if (st != BJ_OK)
        return bj_error_prefix(err, "matmul %%%u (weight '%s', %ux%u)", i, w->name ? w->name : "?", M, K);
    bj_sk_available(cx, &k->pick);
    k->set = true;
    *v = (bj_cg_variant)k->pick.def.variant;
    cx->kplan.n_matmuls++;
    cx->kplan.n_tuned += k->pick.dec_tuned;
    cx->kplan.n_tuned_pp += k->pick.has_pp && !k->pick.pp_default;
    return BJ_OK;
}

/* ---- the LM head ---------------------------------------------------------------------------- */
/* A matmul_f's exact generated kernel (codegen/cg_kernel_head.c) where the target has a path
 * for its weights' float type, into the plan (BJ_PLAN_HEAD_KERNEL); else, or with opts->head_c,
 * or where a library lacks it, the plain C head (the same bits). quantize-head may then replace
 * either by the 8-bit copy (--head q8). Nothing on the IR: the head's result does not change. */
static void bj_sk_head(bj_pass_ctx *cx, const bj_graph *g, uint32_t i, const bj_cg_target *t) {
    const bj_node *w = &g->nodes[g->nodes[i].in[1]];
    bj_plan_kernel *k = &cx->kplan.kern[i];
    bj_error ign = { 0 };
    bj_cg_kdesc d;
    k->head = BJ_PLAN_HEAD_C;
    if (cx->opts->head_c || (w->dtype != BJ_DT_F16 && w->dtype != BJ_DT_BF16 && w->dtype != BJ_DT_F32) ||
        w->shape.ndim != 2 || w->shape.d[0] > UINT32_MAX || w->shape.d[1] > UINT32_MAX)
        return;
    bj_cg_head_dtype dt = w->dtype == BJ_DT_F16 ? BJ_CG_HEAD_F16 : w->dtype == BJ_DT_BF16 ? BJ_CG_HEAD_BF16 : BJ_CG_HEAD_F32;
    if (bj_cg_head_kdesc_init(&d, t, dt, BJ_CG_ISA_AUTO, (uint32_t)w->shape.d[0], (uint32_t)w->shape.d[1], &ign) != BJ_OK ||
        !bj_sk_have(cx, &d))
        return;
    k->head = BJ_PLAN_HEAD_KERNEL;
    k->head_desc = d;
}

/* ---- the quick tune of a first start -----------------------------------------------------------
 * Every kernel is exact, so the choice is speed only, and no cost rule is right on every CPU
 * (on an Ice Lake server the 1.6-bit trit5/avx2 kernel ran a 2560x2560 decode step 1.9x faster
 * than the rule's dot2/avx512vnni; on a Zen 5 the 256-bit avxvnni kernels won three shapes of
 * four). So the choice is measured, not modelled: where the default tuning database (the one
 * next to the kernel cache) has no decode or prefill entry for a shape of this model and the caller gave
 * a tuner (opts->autotune: the JIT engine's bj_tune_autotune unless --no-autotune), those
 * shapes go to the tuner, which times them (bounded: runtime/tune.h's quick mode) and writes
 * their entries; the database is read again and the kernels chosen from it. Once written, an
 * entry is found like a cached kernel: later starts tune nothing. Not with a forced kernel, a
 * database named by path or turned off, an AOT library's kernels, or no kernel cache (nothing
 * to keep the result in). A tuner that fails leaves a warning and the cost rule. */
static bool bj_sk_autotune_wanted(const bj_pass_ctx *cx) {
    const bj_pipeline_opts *o = cx->opts;
    const char *db = cx->kplan.tune_db;
    return o->autotune && !cx->autotune_tried && !o->variant && !o->no_tune_db && !(o->tune_db && *o->tune_db) &&
           o->default_tune_db && !o->kernel_lookup && !o->no_cache && db[0] && strcmp(db, "(off)") != 0;
}

/* The distinct shapes of the plan whose decode or prefill entry the database lacks (a budget
 * may end between the two), with the kernels chosen for them (the tuner's baselines). */
static bj_status bj_sk_missing(const bj_pass_ctx *cx, bj_cg_tune_shape **out, size_t *n_out, bj_error *err) {
    const bj_plan *p = &cx->kplan;
    bj_cg_tune_shape *s = NULL;
    size_t n = 0;
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        if (!p->kern[i].set) continue;
        const bj_cg_tune_pick *pk = &p->kern[i].pick;
        bj_cg_wtype wt = (bj_cg_wtype)pk->def.wtype;
        if (cx->have_tdb && bj_cg_tunedb_find(&cx->tdb, wt, pk->def.m, pk->def.k, BJ_CG_TC_DECODE) &&
            bj_cg_tunedb_find(&cx->tdb, wt, pk->def.m, pk->def.k, BJ_CG_TC_PREFILL))
            continue;
        size_t j = 0;
        while (j < n && !(s[j].m == pk->def.m && s[j].k == pk->def.k && s[j].wtype == wt)) j++;
        if (j < n) { s[j].count++; continue; }
        bj_cg_tune_shape *q = realloc(s, (n + 1) * sizeof *q);
        if (!q) { free(s); return BJ_FAIL(err, BJ_E_NOMEM, "select-kernels: out of memory"); }
        s = q;
        s[n++] = (bj_cg_tune_shape){ .m = pk->def.m, .k = pk->def.k, .wtype = (uint8_t)wt, .count = 1,
                                     .def = { pk->dec, pk->has_pp ? pk->pp : pk->dec } };
    }
    *out = s;
    *n_out = n;
    return BJ_OK;
}

static double bj_sk_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs the quick tune where it is wanted; *ran: entries may have been written (the database
 * is then to be read again). */
static bj_status bj_sk_autotune(bj_pass_ctx *cx, const bj_cg_target *t, bool *ran, bj_error *err) {
    *ran = false;
    if (!bj_sk_autotune_wanted(cx)) return BJ_OK;
    cx->autotune_tried = true;
    bj_cg_tune_shape *s = NULL;
    size_t n = 0;
    BJ_TRY(bj_sk_missing(cx, &s, &n, err));
    if (!n) { free(s); return BJ_OK; }
    double t0 = bj_sk_now_s();
    bj_error e2 = { 0 };
    bj_status st = cx->opts->autotune(cx->opts->autotune_ud, t, s, n, cx->kplan.tune_db, &e2);
    free(s);
    cx->kplan.autotune_s = bj_sk_now_s() - t0;
    if (st == BJ_E_NOMEM) { *err = e2; return st; }
    if (st != BJ_OK) {
        snprintf(cx->kplan.tune_warning, sizeof cx->kplan.tune_warning,
                 "the quick tune failed: %.400s (kernels by the cost rule)", e2.msg);
        return BJ_OK;
    }
    cx->kplan.n_autotuned = (int64_t)n; /* less those still missing: bj_sk_choose */
    if (cx->have_tdb) bj_cg_tunedb_free(&cx->tdb);
    cx->have_tdb = cx->tdb_tried = false;
    *ran = true;
    return BJ_OK;
}

/* The plan's kernel table for g, every lowbit matmul chosen; with rewrite, the IR too. */
static bj_status bj_sk_run(bj_graph *g, bj_pass_ctx *cx, bool rewrite, uint32_t *counts, const bj_cg_target **tp,
                           bj_error *err) {
    const bj_cg_target *t;
    BJ_TRY(bj_pass_target(cx, &t, err));
    *tp = t;
    BJ_TRY(bj_sk_tunedb(cx, t, err));
    bj_plan *p = &cx->kplan;
    free(p->kern);
    p->n_matmuls = p->n_tuned = p->n_tuned_pp = 0;
    p->n_nodes = g->n_nodes;
    p->tgt = *t;
    if (!(p->kern = calloc(g->n_nodes + 1, sizeof *p->kern))) return BJ_FAIL(err, BJ_E_NOMEM, "select-kernels: out of memory");
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bj_node *n = &g->nodes[i];
        if (n->op == BJ_OP_MATMUL_F) bj_sk_head(cx, g, i, t);
        if (!bj_pass_is_lowbit_matmul(n)) continue;
        bj_cg_variant v;
        BJ_TRY(bj_sk_pick(cx, g, i, t, &v, err));
        if ((unsigned)v < BJ_CG_V_COUNT) counts[v]++;
        /* A ternary kernel forced on binary weights runs them exactly (2 bits a weight), but the
         * IR keeps binary weights on bin1 (the verifier's rule): that choice lives in the plan only. */
        bool binw = bj_dtype_class_of((bj_dtype)g->nodes[bj_pass_matmul_weight(n)].dtype) == BJ_DTC_BINARY;
        if (!rewrite || (binw && v != BJ_CG_V_BIN1)) continue;
        if (n->op == BJ_OP_MATMUL_T) n->op = BJ_OP_MATMUL_TK; /* same operands; attrs start at 0 */
        n->iattr[0] = v;
        n->iattr[1] = bj_cg_best_isa(t);
        BJ_TRY(bj_pass_retype(g, i, err));
    }
    p->have_kernels = true;
    return BJ_OK;
}

/* bj_sk_run, then the quick tune where it is wanted and, when it ran, bj_sk_run again with the
 * entries it wrote (the second run reads the variants the first left in the IR: the same). */
static bj_status bj_sk_choose(bj_graph *g, bj_pass_ctx *cx, bool rewrite, uint32_t *counts, const bj_cg_target **tp,
                              bj_error *err) {
    BJ_TRY(bj_sk_run(g, cx, rewrite, counts, tp, err));
    bool ran;
    char warn[sizeof cx->kplan.tune_warning];
    BJ_TRY(bj_sk_autotune(cx, *tp, &ran, err));
    if (!ran) return BJ_OK;
    memset(counts, 0, BJ_CG_V_COUNT * sizeof *counts);
    snprintf(warn, sizeof warn, "%s", cx->kplan.tune_warning);
    BJ_TRY(bj_sk_run(g, cx, rewrite, counts, tp, err));
    if (!cx->kplan.tune_warning[0]) snprintf(cx->kplan.tune_warning, sizeof cx->kplan.tune_warning, "%s", warn);
    bj_cg_tune_shape *left;
    size_t n_left;
    BJ_TRY(bj_sk_missing(cx, &left, &n_left, err)); /* the budget may have ended before some */
    free(left);
    cx->kplan.n_autotuned -= (int64_t)n_left;
    return BJ_OK;
}

bj_status bj_pass_select_kernels_plan(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    uint32_t counts[BJ_CG_V_COUNT] = { 0 };
    const bj_cg_target *t;
    return bj_sk_choose(g, cx, false, counts, &t, err);
}

bj_status bj_pass_select_kernels(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    uint32_t counts[BJ_CG_V_COUNT] = { 0 };
    const bj_cg_target *t;
    BJ_TRY(bj_sk_choose(g, cx, true, counts, &t, err));
    bj_pass_note(cx, "select-kernels", "target %s (%s): %u dot2, %u bitplane, %u wcode, %u bin1, %u trit5; %lld of %lld from the tuning database (%s)",
                 t->cpu, bj_cg_isa_name(bj_cg_best_isa(t)), counts[BJ_CG_V_DOT2], counts[BJ_CG_V_BITPLANE],
                 counts[BJ_CG_V_WCODE], counts[BJ_CG_V_BIN1], counts[BJ_CG_V_TRIT5], (long long)cx->kplan.n_tuned,
                 (long long)cx->kplan.n_matmuls, cx->kplan.tune_db[0] ? cx->kplan.tune_db : "none");
    return BJ_OK;
}
