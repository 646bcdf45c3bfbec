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

#include "codegen/cg_tunedb.h"
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

/* What the pipeline hands an executor (the JIT engine, bitjitc's AOT output, bench, tune): the
 * decisions its passes made that the graph's attributes cannot hold. Filled when
 * bj_pipeline_opts.plan is non-NULL; free with bj_plan_free.
 *
 * Kernels (select-kernels, the one place kernel choice happens): for every ternary/binary matmul
 * node, bj_cg_tune_pick_descs over the tuning database, the cost rule, the path's prefill
 * default and a forced variant: def is the cost rule's (or the forced / IR-chosen variant's)
 * descriptor, dec the decode kernel (the database's where it applies, else def), pp the kernel
 * for steps of >= BJ_CG_TUNE_PREFILL_MIN_T tokens when has_pp. An executor uses dec and pp and
 * falls back to def only when it cannot obtain them (a library built without them). */
typedef struct bj_plan_kernel {
    bool set;             /* node is a lowbit matmul that select-kernels saw */
    bj_cg_tune_pick pick;
    /* pack-weights with opts.pack: the weights in pick.dec's layout (pick.pp shares it), NULL for
     * weights as code; mapped from the packed-weight cache or an anonymous map (freed with the plan). */
    const uint8_t *packed;
    bj_cg_wmap map;
} bj_plan_kernel;

typedef struct bj_plan {
    bj_cg_target tgt;     /* the target the kernels were chosen for */
    bool have_kernels;    /* select-kernels ran (after every pass that renumbers nodes) */
    uint32_t n_nodes;
    bj_plan_kernel *kern; /* malloc'd, per node of the graph as the pipeline left it */
    int64_t n_matmuls;    /* lowbit matmuls */
    int64_t n_tuned;      /* ... whose decode kernel came from the tuning database */
    int64_t n_tuned_pp;   /* ... that also have a tuned (not the path default) prefill kernel */
    char tune_db[4096];   /* the database looked for ("(off)": none wanted; "": no path) */
    bool tune_db_found;   /* ... existed and was read */
    char tune_warning[512]; /* non-empty: it exists but could not be used (or the quick tune failed) */
    int64_t n_autotuned;  /* shapes the quick tune of this run gave entries (select-kernels) */
    double autotune_s;    /* ... and the seconds it took */
    char passes_run[512]; /* "canonicalize,quantize-weights,...": the passes that ran, in order */
    /* pack-weights (opts.pack) */
    bool packed;              /* every matmul's weights are in kern[].packed */
    uint64_t packed_loaded;   /* ... mapped from the packed-weight cache, not packed now */
    uint64_t cache_corrupt;   /* packed-weight entries found bad and rebuilt */
    uint64_t src_hashed, src_indexed; /* source tensors hashed / known unchanged from the source index */
    uint64_t released_bytes;  /* source pages given back once packed */
    char cache_warning[512];  /* the packed-weight cache is off or had to rebuild entries */
} bj_plan;

void bj_plan_free(bj_plan *p);

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
    /* For select-kernels / pack-weights: the target (NULL = the host), or an exact one
     * (an AOT library's, which wins over mcpu/mattr). */
    const char *mcpu, *mattr;
    const bj_cg_target *target;
    /* For select-kernels: a variant every matmul must use (bj_cg_variant; 0 = choose), and
     * the tuning database: tune_db's path; else, with default_tune_db, the default file next
     * to the kernel cache (cache_dir, NULL = its default); no_tune_db: none. Without any of
     * these no database is read (bjopt's default: its output depends on nothing outside). */
    int variant;
    /* For select-kernels: when set, the only kernels there are (an AOT library's, by descriptor
     * and symbol): a tuned or prefill kernel it lacks is not chosen. */
    bj_status (*kernel_lookup)(void *ud, const void *kdesc, const char *symbol, void **fn, bj_error *err);
    void *kernel_ud;
    const char *tune_db, *cache_dir;
    bool default_tune_db, no_tune_db;
    /* For select-kernels: the quick tune of a first start (select_kernels.c says when it runs).
     * Called with the distinct shapes the default database has no entry for; measures them on
     * this CPU and writes their entries to db_path (the runtime's bj_tune_autotune). NULL: never. */
    bj_status (*autotune)(void *ud, const bj_cg_target *t, const bj_cg_tune_shape *shapes, size_t n,
                          const char *db_path, bj_error *err);
    void *autotune_ud;
    /* Filled with the pipeline's decisions when non-NULL (zeroed first; bj_plan_free). */
    bj_plan *plan;
    /* For pack-weights: pack the weights into the plan (else only record layouts on the IR),
     * through the packed-weight cache in cache_dir (no_cache: neither read nor write it), on
     * n_threads threads. */
    bool pack, no_cache;
    int n_threads;
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
