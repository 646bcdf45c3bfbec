/* compiler/compiler.h -- the pass pipeline (DESIGN.md "Passes") and the bitjitc subcommands,
 * as the drivers see them.
 *
 * The pipeline is one table of passes, each one file with one entry point
 * (compiler/passes/<name>.c). bj_pipeline_run runs the selected passes over a graph in
 * table order, with the LLVM-style instrumentation options below. Printing goes to the
 * FILE the caller gives (drivers pass stderr/stdout); the library itself never prints
 * anything else. */
#ifndef BJ_COMPILER_H
#define BJ_COMPILER_H

#include "ir/ir.h"

#include <stdio.h>

/* What the pipeline reports back (optional; see bj_pipeline_opts.stats). */
typedef struct bj_pipeline_stats {
    bool planned;              /* plan-memory ran */
    int64_t plan_tokens;       /* tokens per step the plan is sized for */
    uint64_t peak_bytes;       /* activation arena from plan-memory */
    uint64_t naive_bytes;      /* one buffer per step value */
    uint64_t kv_bytes;         /* KV cache, all layers */
    int n_passes_run;
} bj_pipeline_stats;

typedef struct bj_pipeline_opts {
    const char *passes;        /* "a,b,c": run exactly these (table order); NULL = the default pipeline */
    const char *disable;       /* "a,b": the default pipeline minus these; NULL = none */
    const char *print_after;   /* pass name, or NULL */
    const char *print_before;  /* pass name, or NULL */
    bool print_after_all;
    bool verify_each;          /* bj_ir_verify after every pass (always on in debug builds) */
    bool time_passes;          /* per-pass wall time to `out` at the end */
    bool verbose;              /* pass statistics (e.g. plan-memory's peak bytes) to `out` */
    FILE *out;                 /* where the above print; NULL = stderr */
    /* For select-kernels / pack-weights: the target (NULL = the host). */
    const char *mcpu, *mattr;
    /* For plan-memory: tokens per step to size the arena for (0 = the graph's max_seq). */
    int64_t plan_tokens;
    bj_pipeline_stats *stats;  /* filled when non-NULL */
} bj_pipeline_opts;

void bj_pipeline_opts_default(bj_pipeline_opts *o);
/* Runs the pipeline on g in place. Unknown pass names are BJ_E_INVALID naming them. */
bj_status bj_pipeline_run(bj_graph *g, const bj_pipeline_opts *o, bj_error *err);
/* Names of the passes in table order, NULL-terminated. */
const char *const *bj_pipeline_pass_names(void);

/* bitjitc subcommands implemented in compiler/cmd_gguf.c (drivers: may print and exit codes). */
int bj_cmd_convert(int argc, char **argv);
int bj_cmd_synth(int argc, char **argv);

#endif
