/* codegen/cg_tunedb.h -- the tuning database: which kernel descriptor (variant, ISA path, tile_m,
 * tile_t, unroll, prefetch) to use for a matmul shape on one CPU, as measured by `bitjit tune`
 * (runtime/tune.c), and read by the select-kernels pass (compiler/passes/select_kernels.c), the
 * one place kernel choice happens, for every JIT engine and `bitjitc` compile. It lives in codegen/ so that both can use it (compiler/ may not
 * depend on runtime/). Library code: returns bj_status, never prints.
 *
 * File format (text, one record a line, '#' starts a comment line; version 2, which added
 * the prefetch column: a version 1 file is refused with a warning, and `bitjit tune` rewrites it):
 *
 *   bitjit-tunedb 2
 *   cpu znver3
 *   features +avx2,+fma,...        (the exact LLVM feature string; may be empty)
 *   llvm 19.1.7
 *   abi 1                          (BJ_CG_ABI_VERSION)
 *   bitjit 0.1.0                   (informational)
 *   entry ternary 384 384 decode dot2 avx2 1 4 1 4096 1520.3 1402.9
 *         wtype   M   K   T-class variant isa tile_m tile_t unroll prefetch default_ns tuned_ns
 *   (prefetch: bytes ahead, a multiple of 256 up to 65280; 0 = none; bj_cg_kdesc.prefetch)
 *   ...
 *   end 8                          (the number of entries: a file cut short is detected)
 *
 * T-class "decode" is one token a call (the kernel the engine uses for every step), "prefill"
 * is BJ_CG_TUNE_PREFILL_MIN_T tokens or more (a second kernel the engine uses for such steps
 * when its variant packs weights the same way). The times are informational (ns a call at the
 * T the tuner measured; default = the cost rule's descriptor). The default path is
 * <kernel cache dir>/tune-<cpu>-<16 hex of XXH3(cpu, features, LLVM, ABI)>.txt, so a file is
 * found only by the CPU and toolchain it was measured on; the header is checked again on load.
 * Written to a temporary file in the same directory and renamed (readers see all or nothing).
 *
 * Loading never fails on a bad file: a missing file is "no database"; a truncated, corrupt,
 * other-version or other-target file gives an empty database and a warning text (the caller
 * prints it), and compiles fall back to the cost rule. An entry whose descriptor the target
 * refuses is ignored the same way (bj_cg_tune_pick). */
#ifndef BJ_CG_TUNEDB_H
#define BJ_CG_TUNEDB_H

#include "codegen/codegen.h"

#define BJ_CG_TUNEDB_VERSION 2
/* Steps of at least this many tokens use the prefill entry's kernel. */
#define BJ_CG_TUNE_PREFILL_MIN_T 8

typedef enum bj_cg_tclass { BJ_CG_TC_DECODE = 0, BJ_CG_TC_PREFILL = 1, BJ_CG_TC_COUNT } bj_cg_tclass;

typedef struct bj_cg_tune_entry {
    uint32_t m, k;
    uint8_t wtype, tclass;              /* bj_cg_wtype, bj_cg_tclass */
    uint8_t variant, isa;               /* resolved: never AUTO */
    uint8_t tile_m, tile_t, unroll, prefetch; /* prefetch in bj_cg_kdesc's 256-byte units */
    double default_ns, tuned_ns;        /* informational */
} bj_cg_tune_entry;

typedef struct bj_cg_tunedb {
    char cpu[64];
    char features[4096];
    char llvm[32];
    bj_cg_tune_entry *e;
    size_t n, cap;
} bj_cg_tunedb;

/* An empty database keyed to target t (and this LLVM and ABI). */
void bj_cg_tunedb_init(bj_cg_tunedb *db, const bj_cg_target *t);
void bj_cg_tunedb_free(bj_cg_tunedb *db);
/* <dir>/tune-<cpu>-<hash>.txt; dir NULL or "": the kernel cache's default directory
 * ($XDG_CACHE_HOME/bitjit, else $HOME/.cache/bitjit). BJ_E_INVALID when neither is known. */
bj_status bj_cg_tunedb_default_path(const bj_cg_target *t, const char *dir, char *buf, size_t cap, bj_error *err);
/* Reads path into db (initialised for t first). *found: the file existed and was used.
 * warn (cap bytes, may be NULL) gets a message when the file exists but cannot be used;
 * db is then empty. Fails only for out-of-memory. */
bj_status bj_cg_tunedb_load(bj_cg_tunedb *db, const bj_cg_target *t, const char *path, bool *found, char *warn,
                            size_t warn_cap, bj_error *err);
/* Adds or replaces the entry of (wtype, m, k, tclass). */
bj_status bj_cg_tunedb_set(bj_cg_tunedb *db, const bj_cg_tune_entry *e, bj_error *err);
const bj_cg_tune_entry *bj_cg_tunedb_find(const bj_cg_tunedb *db, bj_cg_wtype wt, uint32_t m, uint32_t k,
                                          bj_cg_tclass tc);
/* Writes the database (temp file in the same directory + rename; makes the directory). */
bj_status bj_cg_tunedb_save(const bj_cg_tunedb *db, const char *path, bj_error *err);

/* The descriptor of entry e for weights t8 (needed for weights-as-code only): kdesc_init with
 * its variant and path, then its tiles, then bj_cg_kdesc_check. */
bj_status bj_cg_tune_desc(const bj_cg_tune_entry *e, const bj_cg_target *t, bj_cg_wtype wt, uint32_t M, uint32_t K,
                          const int8_t *t8, bj_cg_kdesc *d, bj_error *err);

/* The descriptors a compile uses for one matmul, as the JIT engine and bitjitc both make them:
 *   def  = bj_cg_kdesc_init(v, AUTO path) -- the cost rule (or the forced / selected variant);
 *   dec  = the database's decode entry when db != NULL, !forced, and the entry applies
 *          (binary weights stay on BIN1), else def;
 *   pp   = the prefill entry when it applies, differs from dec and packs weights as dec does;
 *          with no prefill entry (no database, forced, none for the shape), dec with its path's
 *          prefill tiles (bj_cg_kdesc_prefill_default) where they differ.
 * Entries that do not apply are skipped silently (the result is still exact). Fails only as
 * bj_cg_kdesc_init fails for def. */
typedef struct bj_cg_tune_pick {
    bj_cg_kdesc def, dec, pp;
    bool dec_tuned;  /* dec came from the database */
    bool has_pp;     /* pp is a second kernel for steps of >= BJ_CG_TUNE_PREFILL_MIN_T tokens */
    bool pp_default; /* ... the path's default prefill tiles, not a database entry */
} bj_cg_tune_pick;
bj_status bj_cg_tune_pick_descs(const bj_cg_tunedb *db, const bj_cg_target *t, bj_cg_variant v, bool forced,
                                bj_cg_wtype wt, uint32_t M, uint32_t K, const int8_t *t8, bj_cg_tune_pick *out,
                                bj_error *err);

const char *bj_cg_tclass_name(bj_cg_tclass tc);

/* One distinct matmul shape of a model and, per T-class, the kernel engines use for it without a
 * database entry: what select-kernels hands the autotuner (bj_pipeline_opts.autotune) for the
 * shapes the database lacks, and what `bitjit tune` measures. */
typedef struct bj_cg_tune_shape {
    uint32_t m, k;
    uint8_t wtype;                   /* bj_cg_wtype */
    int count;                       /* matmuls of the model with this shape */
    bj_cg_kdesc def[BJ_CG_TC_COUNT];
} bj_cg_tune_shape;

#endif
