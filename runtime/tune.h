/* runtime/tune.h -- the autotuner behind `bitjit tune`: for each distinct matmul shape of a
 * graph (M, K, weight type) and each T-class (decode: 1 token a call; prefill: t_prefill
 * tokens), it times kernel variants, ISA paths, tiles (tile_m, tile_t, unroll) and the weight
 * prefetch distance on this CPU
 * with random packed weights of that shape, split by rows over n_threads threads as the JIT
 * engine splits them, checks every candidate's output against the C reference
 * (bj_cg_ref_matmul) before it may win, and writes the winners to the tuning database
 * (codegen/cg_tunedb.h) that later JIT engines and bitjitc compiles read.
 *
 * Search per shape: the default (the cost rule's descriptor, what the engine uses without a
 * database) first, then every (variant, ISA path) the target allows at its default tiles,
 * then coordinate descent over tile_t, tile_m, unroll and prefetch from the fastest. Decode streams the
 * weights through as many copies as the model's low-bit weights take, and at least twice the
 * last-level cache (bj_tune_stream_bytes), so caches hold what they would hold in a real decode
 * step and no matrix is timed from cache. A prefill winner must pack weights
 * as the decode winner does (the engine keeps one packed copy); a faster one that does not is
 * reported, not written. Each timing is the 25th percentile of individually timed calls over
 * >= 60 ms; the winner and the default are then timed again alternately (three times each,
 * best kept), and the winner must beat the default by min_gain to replace it (noise).
 * Weights-as-code is tried only for layers of at most 16 K weights (it compiles one kernel per
 * layer, ~35 us a weight). The budget (wall-clock seconds) stops the search; shapes reached
 * keep their best so far. Library code: returns bj_status, never prints. */
#ifndef BJ_RT_TUNE_H
#define BJ_RT_TUNE_H

#include "codegen/cg_tunedb.h"
#include "ir/ir.h"

typedef struct bj_tune_opts {
    const char *mcpu, *mattr;  /* NULL: the host (tuning another CPU is refused by the host check) */
    const char *cache_dir;     /* kernel cache for the candidates (NULL: default) */
    bool no_cache;
    const char *db_path;       /* NULL: the default file next to the kernel cache */
    int n_threads;             /* >= 1 */
    double budget_s;           /* wall-clock seconds for the whole search; <= 0: no limit */
    int t_prefill;             /* tokens of a prefill call (default 64) */
    double min_gain;           /* a candidate must be this much faster than the default (0.03) */
    bool dry_run;              /* measure and report, write nothing */
    /* Quick mode (a first start's tune, bj_tune_autotune): shapes largest first; on the first,
     * the variants and paths at their default tiles (dot2/trit5 on the widest path and the 256-bit
     * ones; AMX for prefill; prefill only in the decode winner's variant); on the others only
     * the default and the first shape's winner of each T-class; no tile descent; each timing
     * >= 10 ms; one confirming pair. */
    bool quick;
    /* Progress: candidates measured of an estimated total, and what is being measured. */
    void (*progress)(void *ud, int64_t done, int64_t total, const char *note);
    void *progress_ud;
} bj_tune_opts;

typedef struct bj_tune_result {
    uint32_t m, k;
    uint8_t wtype, tclass;     /* bj_cg_wtype, bj_cg_tclass */
    int64_t T;                 /* tokens a call in the timing */
    int count;                 /* matmuls of the graph with this shape */
    bj_cg_kdesc def, best;     /* best == def when nothing beat the default */
    double def_ns, best_ns;    /* ns a call (0: not measured) */
    bj_cg_kdesc fastest;       /* prefill: the fastest of any layout (may differ from best) */
    double fastest_ns;
    int tried, rejected, failed; /* measured / wrong output (never accepted) / refused by codegen */
    bool measured;             /* the default was measured: an entry is written */
} bj_tune_result;

typedef struct bj_tune_report {
    bj_tune_result *r;
    size_t n;
    char cpu[64];
    char db_path[4096];
    char db_warning[512];      /* the existing database could not be used (it is replaced) */
    double elapsed_s;
    bool budget_hit;           /* the search stopped on the budget */
    int64_t n_written;         /* entries written */
    uint64_t llc_bytes;        /* this CPU's last-level cache (0: unknown) */
    uint64_t stream_bytes;     /* bytes each decode timing cycles through (bj_tune_stream_bytes) */
} bj_tune_report;

/* The bytes a decode timing cycles its weight copies through, for a model whose low-bit
 * weights take model_bytes2: max(model_bytes2, 2 x LLC), capped at 256 MiB or 2 x LLC if
 * that is larger. Below 2 x LLC only when the LLC is unknown. */
uint64_t bj_tune_stream_bytes(uint64_t model_bytes2);

/* The quick tune's wall-clock budget: shapes not reached have no entry and are tuned at the next start. */
#define BJ_TUNE_QUICK_BUDGET_S 8.0

void bj_tune_opts_default(bj_tune_opts *o);
bj_status bj_tune_graph(const bj_graph *g, const bj_tune_opts *o, bj_tune_report *rep, bj_error *err);
/* The same for given shapes on target t (it must be the host's or one it runs); bytes2: the
 * model's low-bit weight bytes for bj_tune_stream_bytes (0: 2 x LLC). */
bj_status bj_tune_shapes(const bj_cg_target *t, const bj_cg_tune_shape *shapes, size_t n, uint64_t bytes2,
                         const bj_tune_opts *o, bj_tune_report *rep, bj_error *err);
/* bj_pipeline_opts.autotune for the JIT engine: ud is its bj_jit_options; quick mode,
 * BJ_TUNE_QUICK_BUDGET_S, its threads and kernel cache, entries written to db_path. */
bj_status bj_tune_autotune(void *ud, const bj_cg_target *t, const bj_cg_tune_shape *shapes, size_t n, const char *db_path,
                           bj_error *err);
void bj_tune_report_free(bj_tune_report *rep);
/* "dot2/avx2 m1 t4 u1" */
void bj_tune_desc_str(const bj_cg_kdesc *d, char *buf, size_t cap);

#endif
