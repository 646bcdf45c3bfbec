/* runtime/runtime.h -- executing an imported model: engines, sampling, generation.
 *
 * An engine runs the graph one step at a time: a step is T tokens at positions
 * n_past .. n_past+T-1 and leaves their keys/values in the engine's KV cache. The reference
 * engine (runtime/ref/) interprets the graph in plain C; generated-code engines implement
 * the same vtable, so the runner, the tests and the perplexity tool never care which runs. */
#ifndef BJ_RUNTIME_H
#define BJ_RUNTIME_H

#include "compiler/compiler.h"
#include "frontends/model.h"

typedef struct bj_engine bj_engine;
struct bj_engine {
    const char *name;
    int64_t n_vocab;
    int64_t n_past;  /* positions already in the KV cache */
    int64_t max_seq; /* capacity of the KV cache */
    /* Runs tokens[0..n) at positions n_past.. and advances n_past. logits receives
     * f32[n_vocab] for the last token (all_logits false) or f32[n][n_vocab]. */
    bj_status (*forward)(bj_engine *e, const int32_t *tokens, int64_t n, bool all_logits,
                         float *logits, bj_error *err);
    void (*reset)(bj_engine *e); /* empties the KV cache */
    void (*free)(bj_engine *e);
};

/* The reference executor: f32 compute, int8 activation quantization and ternary weights
 * exactly as HF computes them. Clarity over speed; the baseline every other engine is
 * compared against. The graph must stay alive while the engine is used. */
bj_status bj_ref_engine_create(bj_engine **out, const bj_graph *g, bj_error *err);
/* The same with a KV cache of n_ctx positions (0: the graph's max_seq; at most max_seq). */
bj_status bj_ref_engine_create_ctx(bj_engine **out, const bj_graph *g, int64_t n_ctx, bj_error *err);
/* The same with the KV cache's element type (the JIT engine's bj_jit_options.kv: the same bits). */
bj_status bj_ref_engine_create_kv(bj_engine **out, const bj_graph *g, int64_t n_ctx, int kv, bj_error *err);

/* The JIT engine: the pass pipeline (compiler.h) runs over the engine's own copy of the graph
 * and chooses every kernel (select-kernels); the ternary matmuls then run as kernels generated
 * by LLVM for this model's shapes and the target CPU (codegen/), called through libffi
 * interfaces prepared once per step; the other ops are runtime/ops.c over row ranges on a
 * thread pool. Results equal the reference engine's bit for bit.
 * mcpu/mattr/target, variant and the tuning-database fields are select-kernels' inputs: the
 * engine hands them to the pipeline and never chooses a kernel itself. */
/* The KV cache's element type (bj_jit_options.kv, bj_ref_engine_create_kv): f32, or f16 with
 * half the bytes (each stored value rounded to f16; attention reads it back exactly). */
typedef enum bj_kv_type { BJ_KV_F32 = 0, BJ_KV_F16 = 1 } bj_kv_type;

typedef struct bj_jit_options {
    const char *mcpu, *mattr;  /* NULL: the host CPU and its features */
    const char *cache_dir;     /* NULL: $XDG_CACHE_HOME/bitjit or ~/.cache/bitjit */
    bool no_cache;
    int n_threads;             /* >= 1 */
    int variant;               /* bj_cg_variant to force; 0 = the cost rule */
    /* The LM head (float matmuls) at 8 bits: int8 rows with a scale per row and int8
     * activations per token (runtime/ops.h bj_rt_matmul_q8): half the bytes of an F16 head,
     * logits within a small bound of the exact ones. Off by default: the exact head. */
    bool head_q8;
    /* The exact head in plain C (runtime/ops.c) instead of its generated kernel (the same bits;
     * for comparisons: `--head exact-c`). */
    bool head_c;
    /* Ahead-of-time libraries: when set, each kernel comes from here (by its descriptor, a
     * bj_cg_kdesc, and its symbol name) instead of the JIT and the kernel cache. */
    bj_status (*kernel_lookup)(void *ud, const void *kdesc, const char *symbol, void **fn, bj_error *err);
    void *kernel_ud;
    /* Ahead-of-time libraries: the exact target (a const bj_cg_target *) the library's kernels
     * were built for, used instead of detecting one from mcpu/mattr, so the engine makes the
     * same descriptors; NULL otherwise. It is still checked against the host. */
    const void *target;
    /* Tuning database (codegen/cg_tunedb.h, written by `bitjit tune`): NULL reads the default
     * file next to the kernel cache (cache_dir or its default); no_tune_db ignores it. */
    const char *tune_db;
    bool no_tune_db;
    /* The quick tune of a first start (select-kernels, runtime/tune.h bj_tune_autotune): where the
     * default database has no entry for a shape of the model, up to BJ_TUNE_QUICK_BUDGET_S of
     * measuring writes one, once per CPU and model shape. no_autotune: the cost rule instead.
     * tune_progress (may be NULL) is called as candidates are measured. */
    bool no_autotune;
    void (*tune_progress)(void *ud, int64_t done, int64_t total, const char *note);
    void *tune_progress_ud;
    /* Called as kernels are prepared: done of total kernel keys (weight shape, dtype and variant:
     * the first matmul of each compiles or loads its kernels, where the time goes; the rest reuse
     * them); may be NULL. */
    void (*progress)(void *ud, int64_t done, int64_t total);
    void *progress_ud;
    /* Time every step of every forward (two clock reads a step): bj_jit_profile reads the sums. */
    bool profile;
    /* The pipeline's flags (--print-after-all, --disable-passes, --time-passes, -v statistics);
     * NULL: the default pipeline, silent. Its target, kernel and database fields are ignored:
     * the ones above are used. */
    const bj_pipeline_opts *pipeline;
    /* Ahead-of-time libraries: the plan's kernel picks and packed weights come from here
     * (select-kernels and pack-weights take them instead of choosing and packing); NULL otherwise. */
    const bj_plan_source *plan_source;
    /* Positions the KV cache holds: 0 = the graph's max_seq (the model's context); at most that. */
    int64_t n_ctx;
    bj_kv_type kv;             /* the KV cache's element type (default f32) */
} bj_jit_options;

typedef struct bj_jit_report {
    char cpu[64];
    char llvm[32];
    int64_t n_matmuls;         /* ternary matmul steps */
    uint64_t compiled, loaded; /* distinct kernels compiled now vs read from the cache */
    uint64_t corrupt;          /* cache entries found bad and rebuilt */
    uint64_t packed_loaded;    /* matmuls whose packed weights were mapped from the cache */
    uint64_t packed_now;       /* ... packed at this creation */
    uint64_t packed_source;    /* ... read in place from an AOT library */
    double compile_ms;         /* time spent compiling */
    double create_ms;          /* whole engine creation (packing, kernels, buffers) */
    uint64_t packed_bytes;     /* weight bytes in kernel layouts */
    bool head_q8;              /* the float matmuls run at 8 bits */
    uint64_t head_q8_loaded;   /* ... whose int8 copy was mapped from the cache (not converted) */
    uint64_t src_hashed;       /* source tensors whose bytes were hashed to find their cache entries */
    uint64_t src_indexed;      /* ... whose hash came from the source index (file unchanged: not read) */
    uint64_t released_bytes;   /* pages of mapped source tensors given back once packed (RSS not kept) */
    int64_t act_row_bytes;     /* activation arena per token of a step (pieces sharing bytes) */
    int64_t act_row_naive;     /* ... were every piece its own buffer */
    int n_epilogues;           /* elementwise ops the plan runs inside a matmul's step (fold-epilogues) */
    char cache_dir[4096];
    char cache_warning[512];   /* non-empty: the cache is off or had to rebuild entries */
    char variants[128];        /* e.g. "dot2/avx512vnni x42; prefill dot2/amx x42" */
    int64_t n_tuned;           /* matmuls whose kernel came from the tuning database */
    int64_t n_tuned_pp;        /* ... that also have a tuned prefill kernel */
    char tune_db[4096];        /* the database looked for ("(off)": ignored; "": no path) */
    char tune_warning[512];    /* non-empty: the database exists but could not be used */
    int64_t n_autotuned;       /* shapes the quick tune gave entries during this creation */
    double autotune_s;         /* ... and its seconds */
    char passes[512];          /* the passes the pipeline ran, in order, comma-separated */
} bj_jit_report;

void bj_jit_options_default(bj_jit_options *o);
/* The pass pipeline exactly as bj_jit_engine_create runs it: over *own, a copy of g (g itself
 * is not changed), with o's target, forced kernel, tuning database and pipeline flags; *plan
 * gets its decisions (select-kernels: every matmul's kernels). Free both with bj_plan_free and
 * bj_graph_free. For tools that want the engine's choices without an engine (bench). */
bj_status bj_jit_compile(const bj_graph *g, const bj_jit_options *o, bj_graph *own, bj_plan *plan, bj_error *err);
bj_status bj_jit_engine_create(bj_engine **out, const bj_graph *g, const bj_jit_options *o,
                               bj_jit_report *report, bj_error *err);
/* The engine as an executor of a plan made by bj_jit_compile with the same options (and possibly
 * edited since): it takes *own and *plan (zeroed here; freed with the engine, or on failure),
 * checks that the plan is for *own and that its arena offsets stay inside the arena, and runs
 * exactly what the plan says. bj_jit_engine_create is bj_jit_compile, then this. */
bj_status bj_jit_engine_from_plan(bj_engine **out, bj_graph *own, bj_plan *plan, const bj_jit_options *o,
                                  bj_jit_report *report, bj_error *err);

/* Where a JIT engine created with `profile` spent its forward time since creation: one row per
 * op kind, the ternary matmuls one row per shape and the float (head) matmuls apart, by time. */
typedef struct bj_jit_profile_row {
    char what[48];   /* op name ("rmsnorm_quant", ...), "matmul 2560x6912", "head 128256x2560" */
    int64_t steps;   /* node executions (a forward runs each node once) */
    double ms;       /* wall time in them (for pool steps: until the last thread is done) */
    uint64_t bytes;  /* weight bytes they read (matmuls: kernel layout; head: as stored or 8-bit) */
} bj_jit_profile_row;
typedef struct bj_jit_profile_sum {
    double forward_ms;  /* all forwards, steps and what lies between them */
    int64_t forwards, tokens;
} bj_jit_profile_sum;
/* Up to cap rows into rows (*n of them); BJ_E_INVALID if e is not a JIT engine made with profile. */
bj_status bj_jit_profile(const bj_engine *e, bj_jit_profile_row *rows, int cap, int *n, bj_jit_profile_sum *sum,
                         bj_error *err);

/* For engine implementations: checks a step's tokens against the vocabulary and the
 * context left; copies the last row (or all rows) of f32 [T][n_vocab] logits out. */
bj_status bj_engine_check_step(const bj_engine *e, const int32_t *tokens, int64_t T, bj_error *err);
/* The engines keep activations in f64 and a matmul_f's result (the head) as f32 logits: the
 * graph's output must read a matmul_f, and nothing else may read one. *head: the output's. */
bj_status bj_engine_check_head(const bj_graph *g, uint32_t *head, bj_error *err);
void bj_engine_copy_logits(const bj_engine *e, const float *y, int64_t T, bool all_logits, float *logits);

/* ---- context length ------------------------------------------------------------------- */
/* Bytes an engine over g spends per position of its context: the keys and values of every
 * attention layer, and an attention score per position for each of n_threads threads. */
uint64_t bj_engine_ctx_bytes_per_pos(const bj_graph *g, int n_threads);
/* The context an engine over g gets. asked > 0: that (BJ_E_INVALID beyond the model's max_seq).
 * asked == 0: the model's max_seq, capped to what fits in half of the memory available now
 * (MemAvailable), shared by n_engines engines of n_threads threads each (serve --parallel); when
 * capped, note (cap bytes, may be NULL) says so and why, else note is "". */
bj_status bj_engine_ctx_choose(const bj_graph *g, int64_t asked, int n_threads, int n_engines, int64_t *n_ctx,
                               char *note, size_t cap, bj_error *err);
/* ... against an explicit byte budget instead of the memory available (for tests). */
int64_t bj_engine_ctx_fit(const bj_graph *g, int n_threads, uint64_t budget);

static inline bj_status bj_engine_forward(bj_engine *e, const int32_t *tokens, int64_t n,
                                          bool all_logits, float *logits, bj_error *err) {
    return e->forward(e, tokens, n, all_logits, logits, err);
}
static inline void bj_engine_reset(bj_engine *e) { e->reset(e); }
/* Drops positions n.. from the KV cache (0 <= n <= n_past): the next step runs at position n and
 * overwrites them. Both engines keep nothing per position beyond n_past, so this only moves it. */
static inline void bj_engine_truncate(bj_engine *e, int64_t n) { if (n >= 0 && n < e->n_past) e->n_past = n; }
static inline void bj_engine_free(bj_engine *e) { if (e) e->free(e); }

/* ---- sampling -------------------------------------------------------------------------- */
typedef struct bj_sampler_params {
    float temp;           /* 0 = greedy */
    int32_t top_k;        /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off */
    int32_t repeat_last_n;/* window of recent tokens the penalty looks at */
    uint64_t seed;
} bj_sampler_params;

typedef struct bj_sampler {
    bj_sampler_params p;
    uint64_t rng[2];      /* explicit RNG state: same seed, same samples */
    int32_t *recent;      /* ring of the last repeat_last_n tokens */
    int32_t n_recent, head;
    /* scratch for candidates */
    int32_t *idx;
    float *prob;
    int64_t cap;
} bj_sampler;

void bj_sampler_params_default(bj_sampler_params *p);
bj_status bj_sampler_init(bj_sampler *s, const bj_sampler_params *p, int64_t n_vocab, bj_error *err);
void bj_sampler_free(bj_sampler *s);
/* Remembers a token (prompt or generated) for the repetition penalty. */
void bj_sampler_accept(bj_sampler *s, int32_t tok);
/* Picks the next token from logits (modified in place by the penalty and temperature). */
int32_t bj_sampler_sample(bj_sampler *s, float *logits, int64_t n_vocab);

/* ---- generation ------------------------------------------------------------------------ */
/* Called for each generated token; return false to stop. */
typedef bool (*bj_token_cb)(void *ud, int32_t tok);

/* Feeds the prompt, then samples up to n_predict tokens, stopping after EOS (eos < 0: never)
 * or when the KV cache is full. Generated ids go to out (capacity n_predict) if non-NULL. */
bj_status bj_generate(bj_engine *e, bj_sampler *s, const int32_t *prompt, int64_t n_prompt,
                      int64_t n_predict, int32_t eos, bj_token_cb cb, void *ud,
                      int32_t *out, int64_t *n_out, bj_error *err);

#endif
