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
    bool planned;              /* plan-memory ran (the rest is 0 otherwise) */
    int64_t plan_tokens;       /* tokens per step the plan is sized for (bj_plan.step_tokens) */
    uint64_t peak_bytes;       /* the activation arena: bj_plan.arena_row * plan_tokens */
    uint64_t naive_bytes;      /* ... were every piece its own buffer */
    uint64_t kv_bytes;         /* KV cache, all layers */
    int n_passes_run;
} bj_pipeline_stats;

/* What the pipeline hands an executor (the JIT engine, bitjitc's AOT output, bench, tune): the
 * decisions its passes made that the graph's attributes cannot hold. Filled when
 * bj_pipeline_opts.plan is non-NULL; free with bj_plan_free. It is ordered steps (fold-epilogues),
 * each with its node's kernels and packed weights (kern[node]), its epilogues and split axis, and
 * every value's arena offsets and KV layout (plan-memory: val[node]); docs/architecture.md.
 *
 * Kernels (select-kernels, the one place kernel choice happens): for every ternary/binary matmul
 * node, bj_cg_tune_pick_descs over the tuning database, the cost rule, the path's prefill
 * default and a forced variant: def is the cost rule's (or the forced / IR-chosen variant's)
 * descriptor, dec the decode kernel (the database's where it applies, else def), pp the kernel
 * for steps of >= BJ_CG_TUNE_PREFILL_MIN_T tokens when has_pp. An executor uses dec and pp and
 * falls back to def only when it cannot obtain them (a library built without them). */
/* How a matmul_f (the LM head) runs: plain C (runtime/ops.c bj_rt_matmul_f), select-kernels'
 * generated exact kernel (head_desc: bj_cg_head_kdesc_init, the same bits as the C head), or
 * quantize-head's int8 copy (--head q8: bj_plan_kernel.packed holds the rows). */
typedef enum bj_plan_head { BJ_PLAN_HEAD_C = 0, BJ_PLAN_HEAD_KERNEL, BJ_PLAN_HEAD_Q8 } bj_plan_head;

typedef struct bj_plan_kernel {
    bool set;             /* node is a lowbit matmul that select-kernels saw */
    bj_cg_tune_pick pick;
    /* pack-weights with opts.pack: the weights in pick.dec's layout (pick.pp shares it), NULL for
     * weights as code; mapped from the packed-weight cache or an anonymous map (freed with the plan).
     * For a BJ_PLAN_HEAD_Q8 head (quantize-head with opts.pack): N int8 rows of head_stride
     * bytes (ir/weights.h bj_ir_q8_row), then N f32 scales, mapped the same ways. */
    const uint8_t *packed;
    bj_cg_wmap map;
    /* pack-weights, for a float master's weight_quant that quantize-weights left unfolded: its
     * scale (as bj_ir_lowbit_scale gives it), from packing it or from the packed-weight cache, so
     * an executor need not read the whole master again for it. */
    bool has_scale;
    double scale;
    uint8_t head;         /* matmul_f only: bj_plan_head */
    bj_cg_kdesc head_desc; /* BJ_PLAN_HEAD_KERNEL: the generated head's descriptor */
    int64_t head_stride;  /* BJ_PLAN_HEAD_Q8: bytes per int8 row (bj_ir_q8_stride) */
} bj_plan_kernel;

/* The pieces of a step value in the activation arena (plan-memory): its result in f64
 * activations (F), or as a q8row (Q rows of bj_cg_x_stride(K) bytes, QS one f64 scale a row); a
 * ternary matmul's i32 sums before the rescale (ACC); rmsnorm_quant's / bitlinear's f64 normed
 * rows before quantization (TMP). A bitlinear has Q/QS for its quantized input besides F. */
enum { BJ_PIECE_F, BJ_PIECE_Q, BJ_PIECE_QS, BJ_PIECE_ACC, BJ_PIECE_TMP, BJ_PIECES };

/* What the thread pool divides in a step (fold-epilogues, from the op). */
typedef enum bj_split {
    BJ_SPLIT_TOKENS = 1, /* token rows: embed, rmsnorm, act_quant, rmsnorm_quant, rope (bitlinear's phase 0) */
    BJ_SPLIT_ROWS,       /* output rows of a matmul, in chunks (matmul_t/tk, bitlinear's phase 1, the head) */
    BJ_SPLIT_HEADS,      /* attention heads, in chunks (phase 0 stores k/v by token rows) */
    BJ_SPLIT_ELEMS,      /* the elements of an elementwise op */
} bj_split;

/* Per node of the graph: which step computes it and where its pieces live. */
typedef struct bj_plan_value {
    uint32_t step;          /* node whose step computes it: itself, or the ternary matmul it is folded into
                               as an epilogue (fold-epilogues); BJ_NONE: no step (input, weights) */
    uint32_t next_fold;     /* an epilogue's next one of the same matmul, in node order; BJ_NONE */
    int64_t row[BJ_PIECES]; /* plan-memory: bytes a token of each piece, 64-aligned; 0: no such piece */
    int64_t off[BJ_PIECES]; /* ... its offset a token: in a step of T tokens, at arena + off * T */
    uint32_t live_from, live_to; /* ... steps (node ids) during which its result is live */
    uint64_t kv_off;        /* attention: its K cache in the KV arena; V at kv_off + kv_half */
    uint64_t kv_half;       /* attention: bytes of its K (= of its V) cache */
} bj_plan_value;

/* One step of the executor, in order: an op on the pool, then its epilogues on each chunk. */
typedef struct bj_plan_step {
    uint32_t node;          /* the op; its kernels (kern[node]) and pieces (val[node]) */
    uint32_t epilogue;      /* first elementwise node folded into it (then val[].next_fold), BJ_NONE */
    uint8_t split;          /* bj_split */
    uint8_t phases;         /* 2: bitlinear (quantize rows, then the kernel), attention (store k/v, attend) */
} bj_plan_step;

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
    /* from a plan source (an AOT library, bj_plan_source) */
    bool from_source;         /* the kernels and packed weights are the source's: nothing chosen or packed */
    uint64_t packed_source;   /* matrices whose packed weights are the source's bytes */
    uint64_t packed_now;      /* matrices packed by this run (neither cache nor source had them) */
    /* quantize-head (opts.head_q8) */
    int64_t n_head_q8;        /* matmul_f heads given an int8 copy */
    int64_t head_q8_loaded;   /* ... mapped from the packed-weight cache, not converted now */
    /* fold-epilogues (or, where it did not run, one step a node): the steps in order */
    uint32_t n_steps;
    bj_plan_step *steps;      /* malloc'd */
    bj_plan_value *val;       /* malloc'd, per node */
    int n_epilogues;          /* nodes folded into a matmul's step */
    /* plan-memory: the activation arena and the KV cache, as the executor lays them out */
    bool have_memory;
    int64_t step_tokens;      /* the most tokens one step takes (a longer prompt runs in steps) */
    uint32_t act_elem_bytes;  /* bytes of one activation (8: the engines compute in f64) */
    uint32_t kv_elem_bytes;   /* bytes of one cached key or value element */
    int64_t arena_row;        /* arena bytes a token: the arena is arena_row * step_tokens bytes */
    int64_t arena_row_naive;  /* ... were every piece its own buffer */
    int64_t kv_seq;           /* positions the KV cache holds */
    uint64_t kv_bytes;        /* the KV arena: every attention layer's K then V */
} bj_plan;

void bj_plan_free(bj_plan *p);

/* What a pass's progress callback sees (bj_pipeline_opts.progress): the work that takes the
 * time, in the unit it takes it in (pack-weights: bytes of packed weights written of those to
 * write, and matrices). */
typedef struct bj_pass_progress {
    const char *pass;                /* "pack-weights" */
    int64_t done, total;             /* bytes */
    int64_t items_done, items_total; /* matrices */
} bj_pass_progress;

/* Where a plan's decisions come from instead of the passes choosing and packing them: an
 * ahead-of-time library (runtime/aot_load.c) holds the plan it was built with and the packed
 * weights in its kernels' layouts. With one set, select-kernels takes every lowbit matmul's
 * pick from `pick` (no tuning database, no cost rule) and pack-weights takes the weights from
 * `packed` (no cache, no hashing, nothing packed); both identify a matmul by node id in the
 * graph being compiled. Both may be called from several threads at once. */
typedef struct bj_plan_source {
    bj_status (*pick)(void *ud, const bj_graph *g, uint32_t node, bj_cg_tune_pick *out, bj_error *err);
    /* the packed bytes of node's weights for descriptor d (bj_cg_packed_size(d) of them) */
    bj_status (*packed)(void *ud, const bj_graph *g, uint32_t node, const bj_cg_kdesc *d, const uint8_t **data,
                        bj_error *err);
    void *ud;
} bj_plan_source;
/* A prompt runs in steps of at most this many tokens, each attending to the KV cache the earlier
 * ones filled: the same arithmetic row by row, so the same bits, with an arena for that many
 * rows however long the prompt (~14 MB for 2B4T). The prefill kernels reuse each weight across a
 * step's rows; 64 keeps the extra weight traffic of a long prompt small. */
#define BJ_PLAN_STEP_TOKENS 64

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
    /* The LM head: head_c keeps it in plain C (select-kernels chooses no generated head kernel);
     * head_q8 (--head q8) has quantize-head make its int8 copy. An executor's plan asked for with
     * head_q8 while quantize-head is not selected is an error (BJ_E_INVALID naming the pass). */
    bool head_q8, head_c;
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
    /* For plan-memory: tokens per step to size the arena for (0 = BJ_PLAN_STEP_TOKENS, at most
     * the graph's max_seq); positions of the KV cache (0 = the graph's max_seq) and the bytes of
     * one cached element (0 = 4: f32). */
    int64_t plan_tokens, kv_seq;
    uint32_t kv_elem_bytes;
    bj_pipeline_stats *stats;  /* filled when non-NULL */
    /* Called as a long pass makes headway (pack-weights: once at 0, then after each matrix it
     * packs; not when every matrix came from the cache), from any of the pass's threads but one
     * call at a time; may be NULL. */
    void (*progress)(void *ud, const bj_pass_progress *p);
    void *progress_ud;
    /* For select-kernels / pack-weights: the plan's kernels and packed weights from here (an AOT
     * library) instead of choosing and packing them; NULL: choose and pack. */
    const bj_plan_source *source;
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
