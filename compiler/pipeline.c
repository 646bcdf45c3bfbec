/* compiler/pipeline.c -- the pass manager (DESIGN.md "Passes", style.md C6).
 *
 * The pipeline is the one table below: each row is a pass (compiler/passes/<name>.c, one
 * entry point) in the order a BitNet model needs them. bj_pipeline_run selects rows
 * (--passes=a,b = exactly these, in table order; --disable=a,b = the default pipeline minus
 * these), runs them over the graph in place and, in the LLVM tradition, can print the IR
 * before/after a named pass or after all, verify after each pass (always in debug builds)
 * and time the passes. Printing goes only to opts->out (stderr by default); dumps are headed
 * "# *** IR Dump After NAME ***", a comment line, so every dump is parsable text IR. A
 * plan's steps (fold-epilogues) and memory (plan-memory), once made, print after the IR as '#'
 * lines (bj_pass_print_plan).
 *
 * Invariants: passes run strictly in table order, each at most once; the graph verifies
 * after every pass when checking is on, and an error names the pass that broke it.
 * All state is in a bj_pass_ctx on the stack: no globals, so compiles may run in parallel. */
#include "compiler/passes.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef bj_status (*bj_pass_fn)(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
typedef struct bj_pass_info {
    const char *name;
    bj_pass_fn entry;
    const char *desc;
} bj_pass_info;

/* THE pipeline, in order. One row per pass: name, entry point, what it does. */
#define BJ_PIPELINE(X)                                                                                       \
    X("canonicalize",              bj_pass_canonicalize,              "canonical operand order; dead nodes dropped") \
    X("quantize-weights",          bj_pass_quantize_weights,          "weight_quant(master) -> bound t8/b8 weight + scale") \
    X("share-activation-quant",    bj_pass_share_activation_quant,    "one quantized activation per distinct input (Q/K/V, gate/up)") \
    X("fuse-norm-quant-bitlinear", bj_pass_fuse_norm_quant_bitlinear, "rmsnorm+act_quant(+matmul_t) -> rmsnorm_quant / bitlinear") \
    X("select-kernels",            bj_pass_select_kernels,            "kernels per ternary matmul: forced, IR, cost rule, tuning database, prefill default") \
    X("pack-weights",              bj_pass_pack_weights,              "record each kernel's weight layout and packed bytes") \
    X("quantize-head",             bj_pass_quantize_head,             "--head q8: the float LM head's int8 copy (through the packed-weight cache)") \
    X("fold-epilogues",            bj_pass_fold_epilogues,            "the executor's steps; elementwise ops folded into matmul steps as epilogues") \
    X("plan-memory",               bj_pass_plan_memory,               "the executor's activation arena (offsets a token, liveness over the steps) and KV cache")

#define BJ_PASS_ROW(name, fn, desc) { name, fn, desc },
#define BJ_PASS_NAME(name, fn, desc) name,
static const bj_pass_info bj_pipeline[] = { BJ_PIPELINE(BJ_PASS_ROW) };
static const char *const bj_pipeline_names[] = { BJ_PIPELINE(BJ_PASS_NAME) NULL };
#define BJ_N_PASSES BJ_COUNTOF(bj_pipeline)

void bj_pipeline_opts_default(bj_pipeline_opts *o) { memset(o, 0, sizeof *o); }

const char *const *bj_pipeline_pass_names(void) { return bj_pipeline_names; }

static int bj_pass_find(const char *s, size_t n) {
    for (size_t i = 0; i < BJ_N_PASSES; i++)
        if (strlen(bj_pipeline[i].name) == n && !memcmp(bj_pipeline[i].name, s, n)) return (int)i;
    return -1;
}

static bj_status bj_unknown_pass(const char *s, size_t n, const char *flag, bj_error *err) {
    char known[512];
    size_t off = 0;
    known[0] = 0;
    for (size_t i = 0; i < BJ_N_PASSES && off < sizeof known; i++)
        off += (size_t)snprintf(known + off, sizeof known - off, "%s%s", i ? ", " : "", bj_pipeline[i].name);
    return BJ_FAIL(err, BJ_E_INVALID, "%s: unknown pass '%.*s' (passes: %s)", flag, (int)n, s, known);
}

/* Sets sel[i] = val for each name of the comma list (empty items are skipped). */
static bj_status bj_pass_list(const char *list, bool *sel, bool val, const char *flag, bj_error *err) {
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        int i = n ? bj_pass_find(p, n) : 0;
        if (n && i < 0) return bj_unknown_pass(p, n, flag, err);
        if (n) sel[i] = val;
        p += n + (p[n] == ',');
    }
    return BJ_OK;
}

static bj_status bj_pass_select(const bj_pipeline_opts *o, bool *run, bj_error *err) {
    for (size_t i = 0; i < BJ_N_PASSES; i++) run[i] = o->passes == NULL;
    if (o->passes) BJ_TRY(bj_pass_list(o->passes, run, true, "--passes", err));
    if (o->disable) BJ_TRY(bj_pass_list(o->disable, run, false, "--disable", err));
    if (o->print_after && bj_pass_find(o->print_after, strlen(o->print_after)) < 0)
        return bj_unknown_pass(o->print_after, strlen(o->print_after), "--print-after", err);
    if (o->print_before && bj_pass_find(o->print_before, strlen(o->print_before)) < 0)
        return bj_unknown_pass(o->print_before, strlen(o->print_before), "--print-before", err);
    return BJ_OK;
}

static double bj_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static void bj_dump(const bj_graph *g, const bj_pass_ctx *cx, const char *when, const char *pass) {
    fprintf(cx->out, "# *** IR Dump %s %s ***\n", when, pass);
    bj_ir_print(g, cx->out);
    bj_pass_print_plan(g, cx, cx->out);
    bj_pass_print_heads(g, &cx->kplan, cx->out);
}

static bool bj_verify_on(const bj_pipeline_opts *o) {
#ifndef NDEBUG
    (void)o;
    return true; /* debug builds always check (style.md C6) */
#else
    return o->verify_each;
#endif
}

/* Runs row i: print-before, the pass, verify, print-after. */
static bj_status bj_run_one(bj_graph *g, bj_pass_ctx *cx, size_t i, double *ms, bj_error *err) {
    const bj_pipeline_opts *o = cx->opts;
    const char *name = bj_pipeline[i].name;
    if (o->print_before && !strcmp(o->print_before, name)) bj_dump(g, cx, "Before", name);
    double t0 = bj_now_ms();
    /* g may change: the steps and the memory plan go stale */
    if (strcmp(name, "plan-memory") != 0) cx->mem_valid = false;
    if (strcmp(name, "plan-memory") != 0 && strcmp(name, "fold-epilogues") != 0) cx->steps_valid = false;
    bj_status st = bj_pipeline[i].entry(g, cx, err);
    *ms = bj_now_ms() - t0;
    if (st != BJ_OK) return bj_error_prefix(err, "pass %s", name);
    if (bj_verify_on(o) && bj_ir_verify(g, err) != BJ_OK) return bj_error_prefix(err, "IR invalid after pass %s", name);
    if (o->print_after_all || (o->print_after && !strcmp(o->print_after, name))) bj_dump(g, cx, "After", name);
    return BJ_OK;
}

static void bj_print_times(const bj_pass_ctx *cx, const bool *run, const double *ms) {
    double total = 0;
    for (size_t i = 0; i < BJ_N_PASSES; i++) total += run[i] ? ms[i] : 0;
    fprintf(cx->out, "===-- bitjit pass execution timing report --===\n  total %.3f ms\n", total);
    for (size_t i = 0; i < BJ_N_PASSES; i++)
        if (run[i])
            fprintf(cx->out, "  %10.3f ms (%5.1f%%)  %s\n", ms[i], total > 0 ? 100.0 * ms[i] / total : 0.0,
                    bj_pipeline[i].name);
}

static void bj_fill_stats(const bj_pass_ctx *cx, bj_pipeline_stats *s, int n_run) {
    memset(s, 0, sizeof *s);
    s->n_passes_run = n_run;
    s->planned = cx->mem_valid;
    if (!cx->mem_valid) return;
    const bj_plan *p = &cx->kplan;
    s->plan_tokens = p->step_tokens;
    s->peak_bytes = (uint64_t)(p->arena_row * p->step_tokens);
    s->naive_bytes = (uint64_t)(p->arena_row_naive * p->step_tokens);
    s->kv_bytes = p->kv_bytes;
}

void bj_plan_free(bj_plan *p) {
    if (!p) return;
    for (uint32_t i = 0; p->kern && i < p->n_nodes; i++)
        if (p->kern[i].map.base) bj_cg_wmap_free(&p->kern[i].map);
    free(p->kern);
    free(p->steps);
    free(p->val);
    memset(p, 0, sizeof *p);
}

static void bj_note_run(bj_pass_ctx *cx, const char *name) {
    size_t off = strlen(cx->kplan.passes_run);
    if (off < sizeof cx->kplan.passes_run)
        snprintf(cx->kplan.passes_run + off, sizeof cx->kplan.passes_run - off, "%s%s", off ? "," : "", name);
}

/* The plan an executor needs: select-kernels' choices even where that pass was not selected
 * (its IR rewrite then does not happen), steps (unfolded where fold-epilogues did not run) and
 * memory likewise, then handed to the caller. */
static bj_status bj_finish_plan(bj_graph *g, bj_pass_ctx *cx, const bj_pipeline_opts *o, bj_error *err) {
    if (!o->plan) return BJ_OK;
    if (o->head_q8 && !cx->head_quantized)
        return BJ_FAIL(err, BJ_E_INVALID, "--head q8: the quantize-head pass, which makes the 8-bit head, was not run "
                       "(left out by --passes or --disable-passes)");
    if (!cx->kplan.have_kernels || cx->kplan.n_nodes != g->n_nodes)
        BJ_TRY(bj_pass_select_kernels_plan(g, cx, err));
    BJ_TRY(bj_pass_pack_weights_plan(g, cx, err)); /* when asked for and not done yet */
    if (!cx->steps_valid) BJ_TRY(bj_pass_plan_steps(g, cx, false, err));
    if (!cx->mem_valid) BJ_TRY(bj_pass_plan_arena(g, cx, err));
    *o->plan = cx->kplan;
    memset(&cx->kplan, 0, sizeof cx->kplan);
    return BJ_OK;
}

bj_status bj_pipeline_run(bj_graph *g, const bj_pipeline_opts *o, bj_error *err) {
    bj_pipeline_opts dflt;
    if (!o) { bj_pipeline_opts_default(&dflt); o = &dflt; }
    bool run[BJ_N_PASSES];
    double ms[BJ_N_PASSES] = { 0 };
    BJ_TRY(bj_pass_select(o, run, err));
    if (bj_verify_on(o)) BJ_TRY(bj_ir_verify(g, err) == BJ_OK ? BJ_OK : bj_error_prefix(err, "IR invalid before the pipeline"));
    bj_pass_ctx cx = { .opts = o, .out = o->out ? o->out : stderr };
    bj_status st = BJ_OK;
    int n_run = 0;
    if (o->plan) memset(o->plan, 0, sizeof *o->plan);
    for (size_t i = 0; i < BJ_N_PASSES && st == BJ_OK; i++)
        if (run[i]) st = bj_run_one(g, &cx, i, &ms[i], err), n_run++, bj_note_run(&cx, bj_pipeline[i].name);
    if (o->stats) bj_fill_stats(&cx, o->stats, n_run);
    if (st == BJ_OK) st = bj_finish_plan(g, &cx, o, err);
    if (st == BJ_OK && o->time_passes) bj_print_times(&cx, run, ms);
    bj_plan_free(&cx.kplan);
    if (cx.have_tdb) bj_cg_tunedb_free(&cx.tdb);
    return st;
}
