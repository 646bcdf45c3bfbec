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

/* ---- plan-memory's result ---------------------------------------------------------------- */
typedef struct bj_mem_slot {
    uint64_t offset, bytes; /* in the activation arena; bytes 0: not a step value */
    uint32_t def, last;     /* live from node def to node last (inclusive) */
} bj_mem_slot;

typedef struct bj_mem_plan {
    bool valid;           /* set by plan-memory, cleared by any later pass that changes g */
    int64_t tokens;       /* tokens per step the plan is sized for */
    uint32_t n_nodes;
    bj_mem_slot *slot;    /* malloc'd, per node */
    uint64_t *kv_offset;  /* malloc'd, per node: ATTENTION's K cache offset in the KV arena */
    uint64_t kv_layer_bytes_max;
    uint64_t peak_bytes;  /* activation arena size */
    uint64_t naive_bytes; /* one buffer per step value */
    uint64_t kv_bytes;    /* KV arena: every layer's K then V, [max_seq, n_kv*head_dim] f32 each */
} bj_mem_plan;

typedef struct bj_pass_ctx {
    const bj_pipeline_opts *opts;
    FILE *out;            /* opts->out or stderr */
    bj_cg_target tgt;     /* for select-kernels / pack-weights; detected on first use */
    bool have_tgt;
    bj_mem_plan plan;
    bj_plan kplan;        /* what goes to opts->plan: select-kernels' choices, ... */
    bj_cg_tunedb tdb;     /* select-kernels: the tuning database, loaded on first use */
    bool tdb_tried, have_tdb;
    bool autotune_tried;  /* select-kernels: the quick tune ran (once a pipeline run) */
} bj_pass_ctx;

/* ---- the passes (compiler/passes/<name>.c) ------------------------------------------------ */
bj_status bj_pass_canonicalize(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_quantize_weights(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_share_activation_quant(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_fuse_norm_quant_bitlinear(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_select_kernels(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_pack_weights(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
bj_status bj_pass_plan_memory(bj_graph *g, bj_pass_ctx *cx, bj_error *err);
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

/* The pass manager prints a plan (as '#' comment lines, which the parser skips) after the IR. */
void bj_pass_print_plan(const bj_graph *g, const bj_mem_plan *p, FILE *out);
void bj_mem_plan_free(bj_mem_plan *p);

#endif
