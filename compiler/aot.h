/* compiler/aot.h -- ahead-of-time compilation: a model's graph and its kernels, compiled for
 * a named CPU, written as text (graph IR, LLVM IR, assembly), a relocatable object or a
 * shared library that `bitjit run -m model.so` and bitjit.h load (runtime/aot_load.c).
 *
 * The kernels are the plan's (select-kernels: the cost rule, the tuning database read at build
 * time, the prefill kernel), one per distinct descriptor, compiled by the one code generator
 * (bj_cg_compile); the weights go in packed for them (pack-weights). A JIT engine over the library
 * takes the plan, the packed weights and (by dlsym) the kernels from it, and agrees with the JIT
 * over the model bit for bit. Where the library runs, no tuning database is read: its kernel
 * choices are the ones baked in.
 *
 * Library layout (--emit=so, and the same sections in --emit=obj):
 *   - the kernels' code, each a global function named bj_cg_kernel_symbol(descriptor): every
 *     matmul's kernels as the plan has them, and the exact LM head's generated kernel where the
 *     target has a path for it (bj_cg_head_kdesc_init, the descriptor the engine makes);
 *   - one read-only data symbol BJ_AOT_BUNDLE_SYM, page-aligned (BJ_AOT_PAGE), holding a bundle:
 *       header  { char magic[8] = "BJAOT\0\0\1"; u32 version; u32 n_entries; u64 size; }
 *       entries { u32 kind; u32 name_len; u64 name_off; u64 data_off; u64 data_size; } x n
 *       then names and data (offsets from the bundle start; data 64-byte aligned, packed
 *       weights BJ_AOT_PAGE-aligned, so they lie on pages of their own in the file and in memory),
 *       where kind is a bj_aot_entry below.
 *   Weights are embedded, not a side file: one file to copy, mapped by dlopen, read in place.
 *   Loading a library packs nothing and compiles nothing: the kernels are dlsym'd, the plan's
 *   picks and packed weights are the library's (bj_plan_source, runtime/aot_load.c).
 *
 * The plan entry ("plan", text): one line a lowbit matmul,
 *     <def> <dec> <pp> <dec_tuned><has_pp><pp_default> <packed bytes> <xxh3-128 of them> <key>
 * where def/dec/pp are the bj_cg_tune_pick descriptors as 64 hex digits (their 32 bytes), the
 * flags three digits 0/1, the hash 32 hex digits (bj_cg_wcache_src_hash of the packed bytes
 * with BJ_AOT_PACKED_HOW), and key the matmul's weight name (bj_aot_matmul_key), whose packed
 * bytes are the PACKED entry of that name.
 *
 * The object and library are linked by the system C compiler driver ($BITJIT_CC, else $CC,
 * else "cc"): the bundle goes in through a generated assembly file (.incbin, so a large
 * weight blob costs no compile time), then `cc -c` assembles it, `cc -r` (obj) or
 * `cc -shared` (so) links it with the kernel objects. Outputs are written to a temporary
 * file next to the destination and renamed: a failed compile leaves no partial output.
 * Library functions return bj_status and never print. */
#ifndef BJ_CC_AOT_H
#define BJ_CC_AOT_H

#include "compiler/compiler.h"
#include "frontends/model_config.h"
#include "ir/ir.h"

#include <stdbool.h>

#define BJ_AOT_BUNDLE_SYM "bitjit_aot_bundle"
#define BJ_AOT_MAGIC "BJAOT\0\0\1"
#define BJ_AOT_VERSION 2u /* 2: packed weights, the plan, the model config, GGUF metadata */
#define BJ_AOT_HEADER_SIZE 24u
#define BJ_AOT_ENTRY_SIZE 32u
#define BJ_AOT_PAGE 4096u
#define BJ_AOT_PACKED_HOW "bitjit aot packed"

typedef enum bj_aot_entry {
    BJ_AOT_E_TARGET = 1, /* key=value lines: cpu, features, flags, features_known, is_host */
    BJ_AOT_E_IR = 2,     /* graph IR text (weights as references by name) */
    BJ_AOT_E_WEIGHT = 3, /* name: tensor name; data: its bytes as the graph's dtype lays them out */
    BJ_AOT_E_FILE = 4,   /* name: a model file name (config.json, tokenizer.json, ...) */
    BJ_AOT_E_META = 5,   /* key=value lines: bitjit and LLVM versions, source model */
    BJ_AOT_E_PACKED = 6, /* name: a matmul's key; data: its weights in its decode kernel's layout */
    BJ_AOT_E_PLAN = 7,   /* "plan": the lowbit matmuls' kernel picks (lines above) */
    BJ_AOT_E_CONFIG = 8, /* "model": key=value lines of the model's bj_model_config */
    BJ_AOT_E_GGUF = 9,   /* "metadata.gguf": a GGUF model's header and metadata, no tensors (its tokenizer) */
} bj_aot_entry;

typedef enum bj_aot_emit { BJ_AOT_EMIT_IR, BJ_AOT_EMIT_LLVM, BJ_AOT_EMIT_ASM, BJ_AOT_EMIT_OBJ, BJ_AOT_EMIT_SO } bj_aot_emit;

typedef struct bj_aot_opts {
    /* The pipeline's plan for g (bj_pipeline_run with opts.plan): its target and every
     * matmul's kernels (select-kernels, the tuning database included). Required. */
    const bj_plan *plan;
    const char *model_dir;    /* where config.json / tokenizer files are taken from; NULL: none */
    const bj_model_config *cfg;     /* the model's description (required for obj/so) */
    const struct bj_gguf *gguf;     /* a GGUF model's reader: its metadata goes in (the tokenizer) */
    const char *model_path;   /* recorded in the library's metadata (may be NULL) */
} bj_aot_opts;

typedef struct bj_aot_report {
    char cpu[64];
    char variants[512];       /* each kernel's shape and path, e.g. "384x384 dot2/avx2, ..." ("..." when cut) */
    int64_t n_matmuls;        /* matmul_t nodes */
    int64_t n_kernels;        /* distinct kernels compiled */
    uint64_t code_bytes;      /* object bytes of the kernels */
    uint64_t weight_bytes;    /* embedded weight bytes (as the graph has them) */
    uint64_t packed_bytes;    /* embedded packed weights (in the kernels' layouts) */
    int64_t n_head_kernels;   /* generated exact-head kernels among n_kernels */
    double compile_ms;
    int64_t n_tuned;          /* matmuls whose kernel came from the tuning database */
    char tune_db[4096];       /* the database looked for ("(off)" with no_tune_db) */
    char tune_warning[512];   /* non-empty: it exists but could not be used (cost rule instead) */
} bj_aot_report;

/* The name a lowbit matmul's plan line and packed weights go by: its weight's name (or its
 * float master's); NULL when neither has one. */
const char *bj_aot_matmul_key(const bj_graph *g, uint32_t node);

/* Parses "ir", "llvm", "asm", "obj", "so". */
bool bj_aot_emit_from_name(const char *s, bj_aot_emit *out);

/* --emit=ir|llvm|asm: the text into *out (malloc'd, NUL-terminated). For llvm, all kernels
 * are one module (O3 IR); for asm, one assembly file (local labels renamed per kernel). */
bj_status bj_aot_emit_text(const bj_graph *g, const bj_aot_opts *o, bj_aot_emit what, char **out,
                           bj_aot_report *r, bj_error *err);
/* --emit=obj|so: writes out_path (temp file + rename). */
bj_status bj_aot_emit_file(const bj_graph *g, const bj_aot_opts *o, bj_aot_emit what, const char *out_path,
                           bj_aot_report *r, bj_error *err);
/* Writes data to path through a temporary file in the same directory, then renames. */
bj_status bj_aot_write_file(const char *path, const void *data, size_t size, bj_error *err);

/* Interruption, for a driver's SIGINT/SIGTERM/SIGHUP handler (async-signal-safe): the running
 * C compiler child, if any, gets SIGTERM, and the build or write in progress stops at its next
 * step with an error, removing its temporary directory and temporary output like any failed
 * build; every later build fails at once. Returns whether one was in progress (false: nothing
 * to clean up, the handler may terminate the process right away). */
bool bj_aot_interrupt(void);

#endif
