/* compiler/passes.h -- internal to compiler/: the pass context, the pass entry points and
 * the small graph-rewriting toolkit the passes share (style.md C6/C7).
 *
 * A pass is one file, compiler/passes/<name>.c, with one entry point
 *
 *   bj_status bj_pass_<name>(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
 *
 * that rewrites g in place and leaves it verifiable (bj_ir_verify). Passes keep no state
 * outside cx (no globals: several compiles may run at once). Analyses are recomputed when a
 * pass needs them (use counts: bj_pass_uses), never kept up to date across mutations. */
#ifndef BJ_COMPILER_PASSES_H
#define BJ_COMPILER_PASSES_H

#include "codegen/codegen.h"
#include "compiler/compiler.h"

#include <pthread.h>

typedef struct bj_pass_ctx {
    const bj_pipeline_opts *opts;
    FILE *out;            /* opts->out or stderr */
    bj_cg_target tgt;     /* for select-kernels / pack-weights; detected on first use */
    bool have_tgt;
    bj_plan kplan;        /* what goes to opts->plan: select-kernels' choices, the steps, the memory */
    bool steps_valid;     /* kplan's steps are for g as it is (fold-epilogues; cleared by any other pass) */
    bool mem_valid;       /* kplan's memory likewise (plan-memory) */
    bj_cg_tunedb tdb;     /* select-kernels: the tuning database, loaded on first use */
    bool tdb_tried, have_tdb;
    bool head_quantized;  /* quantize-head ran */
    bool autotune_tried;  /* select-kernels: the quick tune ran (once a pipeline run) */
} bj_pass_ctx;

/* ---- the passes (compiler/passes/<name>.c) ------------------------------------------------ */
bj_status bj_pass_canonicalize(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_quantize_weights(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_share_activation_quant(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_fuse_norm_quant_bitlinear(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_select_kernels(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_pack_weights(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_quantize_head(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_fold_epilogues(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_plan_memory(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
/* The plan's steps into cx->kplan (steps, val[].step/next_fold), folding epilogues or not. */
bj_status bj_pass_plan_steps(const bj_graph *g, bj_pass_ctx *cx, bool fold, bj_error *err);
/* plan-memory's planning into cx->kplan (after the steps; makes unfolded ones if none are current). */
bj_status bj_pass_plan_arena(const bj_graph *g, bj_pass_ctx *cx, bj_error *err);
/* select-kernels' choices into cx->kplan without rewriting g: for a plan the pipeline must hand
 * out when the pass itself was not selected. */
bj_status bj_pass_select_kernels_plan(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
/* pack-weights' packing into cx->kplan (opts->pack; once), without touching g. */
bj_status bj_pass_pack_weights_plan(bj_graph *g, bj_pass_ctx *cx, bj_error *err);

/* ---- toolkit (compiler/rewrite.c) --------------------------------------------------------- */
/* uses[i] = how many input slots of later nodes name node i (OUTPUT's operand counts once). */
bj_status bj_pass_uses(const bj_graph *g, uint32_t **uses, bj_error *err);
/* Every input slot that names `from` names `to` instead (to < from keeps the order). */
void bj_pass_replace_uses(bj_graph *g, uint32_t from, uint32_t to);
/* Re-derives node i's dtype and shape from its op rule after a rewrite changed it. */
bj_status bj_pass_retype(bj_graph *g, uint32_t i, bj_error *err);
/* Removes every node the OUTPUT does not (transitively) read; *removed counts them. */
bj_status bj_pass_dce(bj_graph *g, uint32_t *removed, bj_error *err);
/* Is node i a per-step value (not INPUT, WEIGHT, WEIGHT_QUANT)? */
bool bj_pass_is_step_value(const bj_node *n);
/* Is the op a ternary matmul in any spelling (matmul_t, matmul_tk, bitlinear)? Its weight operand. */
bool bj_pass_is_lowbit_matmul(const bj_node *n);
uint32_t bj_pass_matmul_weight(const bj_node *n);
/* The target of select-kernels / pack-weights: opts->target, else opts->mcpu/mattr, else the host. */
bj_status bj_pass_target(bj_pass_ctx *cx, const bj_cg_target **t, bj_error *err);
/* One statistics line "pass: text" to cx->out when opts->verbose. */
void bj_pass_note(bj_pass_ctx *cx, const char *pass, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Progress of one pass's work to opts->progress (compiler/meter.c): begin with the amount and
 * items to do (reports 0 done), add as each item is done (from any thread). No-ops without a
 * callback. */
typedef struct bj_pass_meter {
    const bj_pipeline_opts *opts;
    pthread_mutex_t mu;
    bj_pass_progress p;
} bj_pass_meter;
void bj_pass_meter_begin(bj_pass_meter *m, const bj_pass_ctx *cx, const char *pass, int64_t total, int64_t items);
void bj_pass_meter_add(bj_pass_meter *m, int64_t amount);
void bj_pass_meter_end(bj_pass_meter *m);

/* Pattern rewrites (style.md C7): a row matches at node i (uses are current) and fills m;
 * rewrite then changes the graph. The driver sweeps nodes in order trying rows by benefit,
 * recounts uses after each hit, runs DCE after each sweep and stops at a fixpoint or after
 * max_iter sweeps. hits[k] counts row k's rewrites. */
typedef struct bj_pass_match { uint32_t n[4]; } bj_pass_match;
typedef struct bj_pattern {
    const char *name;
    bool (*match)(const bj_graph *g, const uint32_t *uses, uint32_t i, bj_pass_match *m);
    bj_status (*rewrite)(bj_graph *g, uint32_t i, const bj_pass_match *m, bj_error *err);
    int benefit;
} bj_pattern;
bj_status bj_pass_rewrite_fixpoint(bj_graph *g, const bj_pattern *pats, size_t n_pats, int max_iter,
                                   uint32_t *hits, bj_error *err);

/* The pass manager prints the plan's steps with their epilogues and its memory, where current,
 * after the IR (as '#' comment lines, which the parser skips). */
void bj_pass_print_plan(const bj_graph *g, const bj_pass_ctx *cx, FILE *out);
/* ... and quantize-head's decisions, one '#' line per 8-bit head (compiler/passes/quantize_head.c). */
void bj_pass_print_heads(const bj_graph *g, const bj_plan *p, FILE *out);

#endif
