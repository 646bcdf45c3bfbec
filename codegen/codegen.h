/* codegen/codegen.h -- the code generator as the rest of the tree sees it: target detection,
 * kernel descriptors, weight packing, shape-specialised ternary and binary matmul kernels generated
 * through the LLVM C API, object emission, an ORC LLJIT wrapper and the on-disk kernel cache.
 * No llvm-c type appears here: only codegen/ sources include llvm-c headers (style.md C2).
 *
 * The kernel contract (every variant, every ISA path):
 *
 *   void k(const int8_t *x, const uint8_t *w, int32_t *y, int64_t T, int64_t m0, int64_t m1);
 *
 *   y[t*M + m] = sum_{k<K} x[t*XS + k] * W[m][k]   exactly, in int32,
 *   for 0 <= t < T and m0 <= m < m1, where W is ternary {-1,0,+1} (or binary {-1,+1}),
 *   XS = bj_cg_x_stride(K) (K rounded up to 64) and x[t*XS + k] == 0 for K <= k < XS
 *   (the caller zeroes that padding). Every int8 value, -128 included, is exact. y rows
 *   outside [m0, m1) are never written. M and K are constants baked into the code; w is the
 *   buffer bj_cg_pack wrote for the same descriptor (unused, may be NULL, for weights-as-code).
 *   Any 0 <= m0 <= m1 <= M is correct; splitting rows across threads at multiples of
 *   bj_cg_row_block(d) avoids computing a shared block twice. T may be 0.
 *
 * The pipeline is IR -> O3 -> object bytes -> LLJIT (llvm.md): the same object bytes go to
 * the disk cache and, later, to AOT output. Everything is re-entrant: each compile makes its
 * own LLVM context and target machine; nothing is global except LLVM's one-time target
 * initialisation. Library functions return bj_status, fill bj_error and never print. */
#ifndef BJ_CODEGEN_H
#define BJ_CODEGEN_H

#include "ir/support.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- target --------------------------------------------------------------------------------
 * Features the generators care about, one row each: flag, LLVM feature name, the flags it
 * needs. A flag whose requirements are not all present is cleared after parsing, so a
 * "-avx2" in --mattr also turns off AVX-512 the way LLVM does, and no generator emits an
 * intrinsic LLVM cannot select. */
#define BJ_CG_FEATURES(X)                                                                       \
    X(SSE2,       "sse2",       0)                                                              \
    X(SSSE3,      "ssse3",      BJ_CG_F_SSE2)                                                   \
    X(SSE41,      "sse4.1",     BJ_CG_F_SSSE3)                                                  \
    X(AVX,        "avx",        BJ_CG_F_SSE41)                                                  \
    X(AVX2,       "avx2",       BJ_CG_F_AVX)                                                    \
    X(FMA,        "fma",        BJ_CG_F_AVX)                                                    \
    X(AVXVNNI,    "avxvnni",    BJ_CG_F_AVX2)                                                   \
    X(AVX512F,    "avx512f",    BJ_CG_F_AVX2 | BJ_CG_F_FMA)                                     \
    X(AVX512BW,   "avx512bw",   BJ_CG_F_AVX512F | BJ_CG_F_AVX512VL) /* see cg_target.c */          \
    X(AVX512VL,   "avx512vl",   BJ_CG_F_AVX512F)                                                \
    X(AVX512VNNI, "avx512vnni", BJ_CG_F_AVX512F)                                                \
    X(AVX512VBMI, "avx512vbmi", BJ_CG_F_AVX512BW)                                               \
    X(AMXTILE,    "amx-tile",   0)                                                              \
    X(AMXINT8,    "amx-int8",   BJ_CG_F_AMXTILE)

enum {
#define BJ_CG_F_BIT_(id, name, req) BJ_CG_FBIT_##id,
    BJ_CG_FEATURES(BJ_CG_F_BIT_)
#undef BJ_CG_F_BIT_
    BJ_CG_FBIT_COUNT
};
enum {
#define BJ_CG_F_MASK_(id, name, req) BJ_CG_F_##id = 1u << BJ_CG_FBIT_##id,
    BJ_CG_FEATURES(BJ_CG_F_MASK_)
#undef BJ_CG_F_MASK_
    /* Not an LLVM feature: 512-bit vectors may be used (AVX512F and no explicit -evex512). */
    BJ_CG_F_V512 = 1u << 30,
};

typedef struct bj_cg_target {
    char cpu[64];          /* LLVM CPU name: the host's, or --mcpu */
    char features[4096];   /* the exact feature string given to LLVM ("" = the CPU's defaults) */
    uint32_t flags;        /* BJ_CG_F_* parsed from what is known of the features */
    bool is_host;          /* detected, with at most --mattr on top */
    bool features_known;   /* flags describe the CPU (host, an x86-64-vN level, or host cpu name);
                              false for a named CPU whose defaults LLVM knows but we cannot read */
} bj_cg_target;

/* Detects the host (mcpu == NULL or "native") or takes a named CPU, then applies mattr
 * ("+a,-b", a bare "a" is "+a") on top, reading it as LLVM does: "+a" turns on what a implies,
 * "-a" turns off what implies a (codegen/cg_feats.def); the string LLVM gets has every item
 * signed. A feature name LLVM does not know, turning off the x86-64 baseline or changing a mode
 * (soft-float, 16bit-mode, ...) is BJ_E_INVALID. A named CPU gets "" as its LLVM feature string (LLVM uses that CPU's
 * defaults) and the flags codegen/cg_cpus.def lists for it; a name not in that table (LLVM's
 * x86-64 CPUs) is BJ_E_INVALID. So `--mcpu x86-64` is the SSE2 baseline and `--mcpu znver5`
 * gets AVX-512 VNNI kernels. With LLVM 18-21, "+evex512" is added when the string turns on
 * avx512f (or what implies it) on a CPU without AVX-512 and does not mention evex512 (else LLVM has no 512-bit vectors and aborts).
 * Generators never look at the CPU name, only at flags. */
bj_status bj_cg_target_detect(bj_cg_target *t, const char *mcpu, const char *mattr, bj_error *err);
/* The same, except that a named CPU always gets its cg_cpus.def entry, also when it is the host's
 * own name (detect gives the host's features then): what a CPU of that name has, on any host. */
bj_status bj_cg_target_named(bj_cg_target *t, const char *mcpu, const char *mattr, bj_error *err);
/* The x86 feature names --mattr accepts (LLVM's, codegen/cg_feats.def): i < bj_cg_feature_count(). */
size_t bj_cg_feature_count(void);
const char *bj_cg_feature_name(size_t i);
/* BJ_OK when code built for t can run on this host; else BJ_E_UNSUPPORTED naming the
 * features the host lacks (or saying that a named CPU's features cannot be verified). */
bj_status bj_cg_target_check_host(const bj_cg_target *t, bj_error *err);
/* Multi-line text for `bitjit info`: cpu, features used, LLVM version, kernel paths. */
void bj_cg_target_describe(const bj_cg_target *t, char *buf, size_t cap);
/* The named CPUs bitjit knows (cg_cpus.def), for listings: i < bj_cg_cpu_count(). */
size_t bj_cg_cpu_count(void);
const char *bj_cg_cpu_name(size_t i);
/* "19.1.7": the LLVM this binary runs with. */
void bj_cg_llvm_version(char *buf, size_t cap);

/* ---- kernel descriptor ------------------------------------------------------------------- */
typedef enum bj_cg_variant {
    BJ_CG_V_AUTO = 0,   /* bj_cg_kdesc_init picks one by bj_cg_pick_variant */
    BJ_CG_V_DOT2,       /* 2-bit codes, integer dot products (vpdpbusd / pmaddubsw / widening) */
    BJ_CG_V_BITPLANE,   /* non-zero and sign bit planes, masked add / masked subtract */
    BJ_CG_V_WCODE,      /* weights compiled into the code: one add/sub per non-zero weight */
    BJ_CG_V_BIN1,       /* binary weights, 1-bit sign codes: 2 * sum(x where bit set) - sum(x) */
    BJ_CG_V_TRIT5,      /* DOT2's kernel over 5 codes a byte in base 3: 1.6 bits a weight */
    BJ_CG_V_COUNT
} bj_cg_variant;

/* Instruction-set path of a generator. Stored resolved in the descriptor, so a test (or the
 * autotuner) can run a lower path on a richer CPU; a path the target lacks is refused. */
typedef enum bj_cg_isa {
    BJ_CG_ISA_AUTO = 0,    /* best the target allows */
    BJ_CG_ISA_GENERIC,     /* plain vector IR, 16-byte vectors, no intrinsics (x86-64 SSE2) */
    BJ_CG_ISA_AVX2,        /* 32-byte vectors, pmaddubsw + pmaddwd, byte-mask selects */
    BJ_CG_ISA_AVXVNNI,     /* 32-byte vectors, vpdpbusd ymm (AVX-VNNI or AVX512-VNNI+VL) */
    BJ_CG_ISA_AVX512,      /* 64-byte vectors, AVX512BW: pmaddubsw zmm, k-register masks */
    BJ_CG_ISA_AVX512VNNI,  /* 64-byte vectors, vpdpbusd zmm, k-register masks */
    BJ_CG_ISA_AMX,         /* DOT2 prefill on AMX-INT8 tiles (tdpbssd), edges on AVX512VNNI: never
                              the best path (a decode step is one token), only the prefill default;
                              its kernels use tile_m x unroll KiB of stack (64 by default, 128 at most) */
    BJ_CG_ISA_COUNT
} bj_cg_isa;

typedef enum bj_cg_wtype { BJ_CG_W_TERNARY = 0, BJ_CG_W_BINARY = 1 } bj_cg_wtype;
enum { BJ_CG_KIND_MATMUL_T = 1 };
#define BJ_CG_ABI_VERSION 1
/* Bumped whenever a generator emits different code for the same descriptor: it is part of the
 * kernel cache key (the descriptor alone would load a kernel an older generator made).
 * 2: dot2/bin1 pmaddubsw paths sum in i16 over 16 k-groups. 3: dot2/bin1 remainder token
 * tiles of the powers of two below tile_t. */
#define BJ_CG_GEN_VERSION 3
#define BJ_CG_MAX_K (1 << 20)
#define BJ_CG_MAX_M (1 << 24)
/* Weights-as-code size rule: codegen takes ~30-40 us per non-zero weight (2 s for 64 K
 * weights on a loaded 2-core Zen 3), and the code is ~8x the 2-bit weights. */
#define BJ_CG_WCODE_MAX_MK (64 * 1024)
#define BJ_CG_WCODE_MAX_K 16384

/* The bytes ARE the cache key (with the target, LLVM and bitjit versions): memset to zero
 * by bj_cg_kdesc_init, then filled; never hash a descriptor built field by field. */
typedef struct bj_cg_kdesc {
    uint16_t abi;        /* BJ_CG_ABI_VERSION */
    uint8_t kind;        /* BJ_CG_KIND_MATMUL_T */
    uint8_t variant;     /* bj_cg_variant, never AUTO */
    uint8_t isa;         /* bj_cg_isa, never AUTO */
    uint8_t wtype;       /* bj_cg_wtype */
    uint8_t tile_m;      /* rows per register tile (dot2: 16-row blocks; wcode: rows per function) */
    uint8_t tile_t;      /* tokens per register tile (wcode: i16 vector lanes = tokens) */
    uint32_t m;          /* output rows M */
    uint32_t k;          /* reduction length K */
    uint8_t unroll;      /* k-groups per loop iteration (unused by WCODE; AMX: 64-k chunks a panel) */
    uint8_t prefetch;    /* DOT2/BIN1: software prefetch of each weight stream this many 256-byte
                          * units ahead of the k-group being read (0: none); AMX: of the A and B
                          * tiles this many 64-k chunks ahead; 0 for the others */
    uint8_t reserved[2];
    uint32_t flags;      /* none yet */
    uint64_t whash;      /* weights-as-code: XXH3_64 of the t8 weights; 0 otherwise */
} bj_cg_kdesc;
_Static_assert(sizeof(bj_cg_kdesc) == 32, "bj_cg_kdesc is a hash key: keep it fixed and padded");

/* Fills d for (M, K) on target t. variant AUTO picks BIN1 for binary weights, else by the
 * cost rule; isa AUTO picks the target's
 * best path. t8 (M x K row-major, values in {-1,0,1}) is required for WCODE (its hash is in
 * the key) and ignored otherwise. BIN1 needs wt BINARY (the ternary variants accept binary
 * values too: they are exact for them, at 2 bits a weight; the IR verifier is what keeps a
 * graph's binary weights on BIN1). Fails with BJ_E_INVALID (sizes, BIN1 with ternary) or BJ_E_UNSUPPORTED
 * (isa the target lacks, WCODE over its size rule). Tiles get the path's defaults; callers
 * (the autotuner) may then change tile_m / tile_t / unroll / prefetch and call bj_cg_kdesc_check. */
bj_status bj_cg_kdesc_init(bj_cg_kdesc *d, const bj_cg_target *t, bj_cg_variant v, bj_cg_isa isa,
                           bj_cg_wtype wt, uint32_t M, uint32_t K, const int8_t *t8, bj_error *err);
bj_status bj_cg_kdesc_check(const bj_cg_kdesc *d, const bj_cg_target *t, bj_error *err);
/* Turns d, a decode descriptor for target t, into the default for prefill steps: DOT2 on the
 * AMX path where t has AMX-INT8, else the path's own prefill tiles (more tokens a tile where
 * the registers hold them); true if that changed d. */
bool bj_cg_kdesc_prefill_default(bj_cg_kdesc *d, const bj_cg_target *t);
/* The cost rule: the variant bitjit uses when none is forced. T_hint: expected tokens per
 * call (1 for decode). WCODE is only chosen when weights are given and it fits its rule. */
bj_cg_variant bj_cg_pick_variant(const bj_cg_target *t, uint32_t M, uint32_t K, uint32_t T_hint,
                                 bool have_weights);
/* The variant for weights of type wt: BIN1 for binary, else bj_cg_pick_variant. */
bj_cg_variant bj_cg_pick_variant_for(const bj_cg_target *t, bj_cg_wtype wt, uint32_t M, uint32_t K,
                                     uint32_t T_hint, bool have_weights);
bj_cg_isa bj_cg_best_isa(const bj_cg_target *t);
bool bj_cg_isa_supported(const bj_cg_target *t, bj_cg_isa isa);
bool bj_cg_wcode_fits(uint32_t M, uint32_t K);
const char *bj_cg_variant_name(bj_cg_variant v);
const char *bj_cg_isa_name(bj_cg_isa isa);
/* "bjk_<16 hex digits>": the kernel's symbol, from the descriptor's bytes. cap >= 24. */
void bj_cg_kernel_symbol(const bj_cg_kdesc *d, char *buf, size_t cap);

/* ---- shapes and packing --------------------------------------------------------------------
 * DOT2 layout (row-interleaved, no horizontal sums in the kernel): rows in blocks of 16
 * (M padded up to 16 with zero weights), K padded to XS. Block b, k-group g (16 k values)
 * is 64 bytes at w + (b * XS/16 + g) * 64; byte 4*r + i holds, at bits 2s..2s+1, the code
 * (w + 1, in {0,1,2}) of row 16b + r at k = 16g + 4s + i. So shifting by 2s and masking
 * with 3 gives, in each 32-bit lane r, the four codes that meet the broadcast x[16g+4s ..+3]
 * in one vpdpbusd; the kernel subtracts the token's activation sum at the end.
 * BITPLANE layout: row m is XS/4 bytes; 64-weight group g is 16 bytes at m*XS/4 + 16g:
 * a little-endian u64 non-zero mask, then a u64 sign mask (bit i: weight k = 64g + i < 0).
 * WCODE: no weight buffer (bj_cg_packed_size = 0).
 * BIN1 layout (DOT2's, with 1-bit codes): rows in blocks of 16 (M padded up to 16), K padded
 * to XS. Block b, k-group g (32 k values) is 64 bytes at w + (b * XS/32 + g) * 64; byte 4*r + i
 * holds, at bit s, the sign bit (1 for +1, 0 for -1) of row 16b + r at k = 32g + 4s + i.
 * Padding bits are 0 (they meet zero activations or rows nobody reads). 1 bit a weight:
 * half of DOT2's bytes. The kernel sums x where the bit is set (a {0,1} x int8 dot product,
 * the same instructions as DOT2) and returns 2 * that - sum(x).
 * TRIT5 layout (DOT2's, with five codes a byte, 1.6 bits a weight, as GGUF's TQ1_0 stores
 * them): rows in blocks of 16 (M padded up to 16), k-groups of 20 k, bj_cg_trit5_groups(K)
 * of them (the last may hold fewer than 20 real k). Block b, group g is 64 bytes at
 * w + (b * groups + g) * 64; byte 4*r + i holds the codes c_s (w + 1) of row 16b + r at
 * k = 20g + 4s + i, s = 0..4, as q ^ 0x80, q = ceil(v * 256 / 243), v = sum_s c_s * 3^(4-s).
 * Then c_s = (x_s * 3) >> 8 with x_s = q * 3^s mod 256 (TQ1_0's rule; every v is checked by a
 * test) = (x_s >= 86) + (x_s >= 171). The stored byte is x_0 ^ 0x80 = x_0 - 128 as a signed
 * byte, and 3 (x - 128) = 3x - 128 (mod 256), so the kernel gets x'_{s+1} = 3 x'_s with two
 * byte adds and c_s from two signed compares: (x'_s > -43) + (x'_s > 42). Padding (k >= K,
 * rows past M) is code 1, weight 0: byte 0. */
static inline int64_t bj_cg_x_stride(int64_t K) { return (K + 63) & ~(int64_t)63; }
/* TRIT5's k-groups of 20 for K: the last one's x reads stop at K rounded up to 4 (<= XS). */
static inline int64_t bj_cg_trit5_groups(int64_t K) { return (K + 19) / 20; }
int64_t bj_cg_row_block(const bj_cg_kdesc *d);   /* 16 for DOT2, BIN1 and TRIT5, 1 otherwise */
uint64_t bj_cg_packed_size(const bj_cg_kdesc *d);
/* Packs t8 (M x K row-major int8) for d. BJ_E_INVALID naming (row, col) on a value outside
 * {-1,0,1} ({-1,1} for binary). out must hold bj_cg_packed_size(d) bytes. */
bj_status bj_cg_pack(const bj_cg_kdesc *d, const int8_t *t8, uint8_t *out, bj_error *err);
/* Rows [r0, r1) of the same, from t8 holding those rows only ((r1 - r0) x K): r0 a multiple of
 * bj_cg_row_block(d), r1 too or M (BJ_E_INVALID otherwise). Writes every byte of those rows'
 * blocks (padding included) and no other, so calls over disjoint ranges may run on different
 * threads, and a large matrix can be packed a cache-sized block at a time. */
bj_status bj_cg_pack_rows(const bj_cg_kdesc *d, const int8_t *t8, uint64_t r0, uint64_t r1, uint8_t *out,
                          bj_error *err);
/* The inverse, for tests: writes M x K int8. */
void bj_cg_unpack(const bj_cg_kdesc *d, const uint8_t *packed, int8_t *t8);

/* Plain C reference with the kernel contract, over unpacked t8 weights (cg_ref.c). */
void bj_cg_ref_matmul(const int8_t *x, const int8_t *t8, int32_t *y, int64_t T, int64_t M,
                      int64_t K, int64_t m0, int64_t m1);
/* The binary kernel's formula in plain C, over b1 sign bits (the IR's b1 layout: row m is
 * ceil(K/8) bytes, bit k%8 of byte k/8 set for +1): y = 2 * sum(x where set) - sum(x). */
void bj_cg_ref_matmul_b1(const int8_t *x, const uint8_t *b1, int32_t *y, int64_t T, int64_t M,
                         int64_t K, int64_t m0, int64_t m1);

typedef void (*bj_cg_matmul_fn)(const int8_t *x, const uint8_t *w, int32_t *y, int64_t T,
                                int64_t m0, int64_t m1);

/* ---- compile: IR -> O3 -> object ---------------------------------------------------------- */
typedef struct bj_cg_object {
    uint8_t *data;  /* malloc'd object file bytes (ELF on Linux) */
    size_t size;
    char sym[32];   /* the kernel's symbol in it */
} bj_cg_object;
void bj_cg_object_free(bj_cg_object *o);

typedef struct bj_cg_times { double build_ms, opt_ms, emit_ms; } bj_cg_times;

/* Generates, optimises (default<O3>) and emits the kernel of d as an object for t.
 * t8 is needed for WCODE only. times may be NULL. */
bj_status bj_cg_compile(const bj_cg_target *t, const bj_cg_kdesc *d, const int8_t *t8,
                        bj_cg_object *out, bj_cg_times *times, bj_error *err);
typedef enum bj_cg_emit { BJ_CG_EMIT_LLVM, BJ_CG_EMIT_LLVM_O3, BJ_CG_EMIT_ASM } bj_cg_emit;
/* The same kernel as text (unoptimised or O3 LLVM IR, or assembly); *out is malloc'd. */
bj_status bj_cg_compile_text(const bj_cg_target *t, const bj_cg_kdesc *d, const int8_t *t8,
                             bj_cg_emit what, char **out, bj_error *err);

/* ---- JIT ---------------------------------------------------------------------------------
 * One LLJIT instance for the host; objects are copied in. Add and lookup may be called from
 * several threads (ORC locks); free once no kernel from it runs. */
typedef struct bj_cg_jit bj_cg_jit;
bj_status bj_cg_jit_create(bj_cg_jit **out, bj_error *err);
void bj_cg_jit_free(bj_cg_jit *j);
bj_status bj_cg_jit_add_object(bj_cg_jit *j, const uint8_t *data, size_t size, bj_error *err);
bj_status bj_cg_jit_lookup(bj_cg_jit *j, const char *sym, void **addr, bj_error *err);

/* ---- kernel cache on disk -------------------------------------------------------------------
 * One file per kernel, <dir>/<key as 16 hex>.bjk: a header (magic, format, key, environment
 * hash, descriptor, symbol, object size and XXH3 checksum, header checksum) then the object.
 * key = XXH3_64(descriptor, seed = env), env = XXH3_64(cpu, features, LLVM version, bitjit
 * version, ABI, generator version). Written to a temp file in the same directory and
 * renamed, so readers see a whole entry or none. A bad entry (short, wrong magic, checksum
 * or key) counts in n_corrupt, sets BJ_CG_CACHE_W_CORRUPT and is rebuilt and overwritten.
 * A directory that cannot be made or written turns the cache off with
 * BJ_CG_CACHE_W_UNWRITABLE; kernels still compile. The library never prints: the caller
 * reports warn_msg once when warn changes.
 * Not thread-safe: one bj_cg_cache per compiling thread (files are safe across processes). */
enum {
    BJ_CG_CACHE_W_UNWRITABLE = 1u << 0, /* directory unusable: caching is off */
    BJ_CG_CACHE_W_CORRUPT = 1u << 1,    /* at least one entry was corrupt and was rebuilt */
    BJ_CG_CACHE_W_WRITE = 1u << 2,      /* writing an entry failed: caching is off */
};
typedef struct bj_cg_cache {
    bool enabled;
    char dir[4096];
    uint64_t env;
    uint32_t warn;          /* BJ_CG_CACHE_W_* seen so far */
    char warn_msg[512];     /* text of the first warning */
    uint64_t n_compiled;    /* kernels compiled by bj_cg_kernel_get */
    uint64_t n_loaded;      /* kernels read from disk */
    uint64_t n_corrupt;     /* entries found bad and rebuilt */
    uint64_t n_wloaded;     /* packed-weight entries mapped from disk (cg_wcache.c) */
    double compile_ms;      /* total time compiling */
} bj_cg_cache;

/* dir: explicit directory, or NULL for $XDG_CACHE_HOME/bitjit, else $HOME/.cache/bitjit.
 * disabled: --no-cache (counters still count). Creates the directory (and parents) and
 * probes it; failing that, returns BJ_OK with the cache off and a warning. */
bj_status bj_cg_cache_open(bj_cg_cache *c, const char *dir, const bj_cg_target *t, bool disabled,
                           bj_error *err);
/* Path of d's entry (whether or not it exists). */
bj_status bj_cg_cache_path(const bj_cg_cache *c, const bj_cg_kdesc *d, char *buf, size_t cap,
                           bj_error *err);
/* *hit = false on a miss or a corrupt entry (counted and flagged). */
bj_status bj_cg_cache_load(bj_cg_cache *c, const bj_cg_kdesc *d, bj_cg_object *out, bool *hit,
                           bj_error *err);
/* A thread may use a copy of the handle (struct assignment) while others use theirs: entries
 * are files written whole and renamed into place. Afterwards bj_cg_cache_merge folds what a
 * copy saw into c: cache turned off, warnings, counters (as changed since base, the state c
 * was in when copied). */
void bj_cg_cache_merge(bj_cg_cache *c, const bj_cg_cache *base, const bj_cg_cache *copy);
/* Failure to write only turns the cache off with a warning; it is not an error. */
bj_status bj_cg_cache_store(bj_cg_cache *c, const bj_cg_kdesc *d, const bj_cg_object *o,
                            bj_error *err);

/* ---- packed weights on disk (cg_wcache.c) --------------------------------------------------
 * bj_cg_pack's output for one matrix, stored in the kernel cache directory as w-<key>.bin and
 * mapped read-only on later starts. Keyed by d's layout (variant, wtype, m, k) and src, the
 * caller's hash of the source tensor (bj_cg_wcache_src_hash over its bytes, with `how` naming
 * dtype, shape and quantization rule). Verified (header, size, payload XXH3) before use. */
typedef struct bj_cg_wmap {
    const uint8_t *data; /* bj_cg_packed_size(d) bytes; NULL on a miss */
    void *base;
    size_t len;
} bj_cg_wmap;
void bj_cg_wcache_src_hash(const void *data, size_t n, const char *how, uint64_t out[2]);
/* out->data NULL on a miss or a corrupt entry (counted and warned as for kernels). */
bj_status bj_cg_wcache_load(bj_cg_cache *c, const bj_cg_kdesc *d, const uint64_t src[2], bj_cg_wmap *out,
                            bj_error *err);
/* Failure to write only turns the cache off with a warning. */
bj_status bj_cg_wcache_store(bj_cg_cache *c, const bj_cg_kdesc *d, const uint64_t src[2], const uint8_t *packed,
                             bj_error *err);
void bj_cg_wmap_free(bj_cg_wmap *m);

/* Other bytes derived from a source tensor and kept in the same cache with the same checks
 * (the --head q8 int8 copy of a float head): kind names the derivation (the caller's numbering,
 * part of the key), m x k its shape, size its bytes; stored as the concatenation of parts. */
typedef struct bj_cg_part {
    const void *p;
    size_t n;
} bj_cg_part;
bj_status bj_cg_wcache_load_raw(bj_cg_cache *c, uint8_t kind, uint32_t m, uint32_t k, uint64_t size,
                                const uint64_t src[2], bj_cg_wmap *out, bj_error *err);
bj_status bj_cg_wcache_store_raw(bj_cg_cache *c, uint8_t kind, uint32_t m, uint32_t k, const uint64_t src[2],
                                 const bj_cg_part *parts, int n_parts, bj_error *err);

/* ---- source hashes remembered by file identity (cg_wcache.c) ------------------------------
 * Hashing the source tensors to find their packed entries reads them whole (0.5 GB for 2B4T)
 * at every start, so they stay resident beside the packed copy. The index remembers each
 * tensor's bj_cg_wcache_src_hash in the cache directory (s-<file>.idx, one per model file),
 * keyed by the mapped file's identity (bj_fmap_locate: device, inode, size, mtime, ctime) and
 * the tensor's offset, size and `how`; a later start takes the hash from it without reading a
 * byte. Any write to the file changes its ctime, so an edited file misses and is hashed again.
 * A write in the same timestamp tick as the identity was taken might not change it, so an
 * index is only written for a file whose ctime was at least bj_cg_srcidx_racy_ns before the
 * identity was taken and is unchanged after the hashing (as git treats "racily clean" files).
 * Memory that is not an open bj_fmap (buffers of a repacked graph) is always hashed. */
typedef struct bj_cg_srcidx_file bj_cg_srcidx_file;
typedef struct bj_cg_srcidx {
    bj_cg_srcidx_file *files;
    int n_files;
    uint64_t n_hits;   /* hashes taken from the index */
    uint64_t n_hashed; /* hashes computed from the bytes */
} bj_cg_srcidx;
extern int64_t bj_cg_srcidx_racy_ns; /* 2 s; a test may lower it */
void bj_cg_srcidx_init(bj_cg_srcidx *x);
/* out = bj_cg_wcache_src_hash(data, n, how), from the index when it has it for this file as
 * it is now, else computed (and remembered for bj_cg_srcidx_save). With the cache off: computed. */
void bj_cg_srcidx_hash(bj_cg_cache *c, bj_cg_srcidx *x, const void *data, size_t n, const char *how,
                       uint64_t out[2]);
/* Writes the index of every file that got new hashes (when the rule above allows). Failure to
 * write only turns the cache off with a warning, as for other entries. */
void bj_cg_srcidx_save(bj_cg_cache *c, bj_cg_srcidx *x);
void bj_cg_srcidx_free(bj_cg_srcidx *x);

/* The runtime's one call: the kernel for d, from j if already added, else from the cache,
 * else compiled (and stored). c counts what happened. t8 is needed for WCODE only. */
bj_status bj_cg_kernel_get(bj_cg_cache *c, bj_cg_jit *j, const bj_cg_target *t,
                           const bj_cg_kdesc *d, const int8_t *t8, bj_cg_matmul_fn *fn,
                           bj_error *err);

#endif
