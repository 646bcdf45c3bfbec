/* codegen/cg_llvm.h -- codegen-private: the build context every generator fills, thin
 * one-line helpers over the LLVM C API (style.md C8, PostgreSQL's l_* helpers), and the
 * generator entry points. Included only by the codegen/ sources.
 *
 * Invariants: a bj_cg owns nothing it did not create (its context and module belong to the
 * compile that made them); every intrinsic is declared through its ID and called with
 * operands bitcast to the declaration's parameter types, because signatures differ between
 * LLVM releases (vpdpbusd takes <16 x i32> in 19 and <64 x i8> in 22, llvm.md). Loop
 * counters and accumulators live in entry-block allocas that O3's SROA turns into registers:
 * generators stay straight C without phi bookkeeping. */
#ifndef BJ_CG_LLVM_H
#define BJ_CG_LLVM_H

#include "codegen/codegen.h"

#include <llvm-c/Core.h>

typedef struct bj_cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    const bj_cg_target *tgt;
    const bj_cg_kdesc *d;
    const int8_t *t8;          /* weights (WCODE only) */
    LLVMTypeRef i1, i8, i16, i32, i64, ptr, void_t;
    LLVMValueRef fn;           /* function being built */
    LLVMValueRef v_x, v_w, v_y, v_T, v_m0, v_m1; /* the kernel's parameters */
} bj_cg;

/* A counted loop: for (iv = start; iv < end; iv += step). The counter is an alloca, so
 * the value after the loop (for a remainder loop) is bj_cg_loop_final. */
typedef struct bj_cg_loop {
    LLVMValueRef v_ivp, v_iv, v_end, v_step;
    LLVMBasicBlockRef b_head, b_body, b_exit;
} bj_cg_loop;

/* ---- cg_build.c ------------------------------------------------------------------------- */
void bj_cg_init(bj_cg *cg, LLVMContextRef ctx, LLVMModuleRef mod, const bj_cg_target *t,
                const bj_cg_kdesc *d, const int8_t *t8);
void bj_cg_fini(bj_cg *cg); /* idempotent; safe on a zeroed bj_cg */
/* Adds a function with the target attributes, positions the builder in its entry block. */
LLVMValueRef bj_cg_function(bj_cg *cg, const char *name, LLVMTypeRef fty, bool internal);
/* The kernel function of the contract in codegen.h; sets cg->v_x ... cg->v_m1. */
LLVMValueRef bj_cg_kernel_begin(bj_cg *cg, const char *name);
LLVMValueRef bj_cg_alloca(bj_cg *cg, LLVMTypeRef ty, const char *name);
LLVMValueRef bj_cg_alloca_zero(bj_cg *cg, LLVMTypeRef ty, const char *name); /* stores 0 here */
void bj_cg_loop_begin(bj_cg *cg, bj_cg_loop *l, LLVMValueRef v_start, LLVMValueRef v_end,
                      LLVMValueRef v_step, const char *name);
void bj_cg_loop_end(bj_cg *cg, bj_cg_loop *l);
LLVMValueRef bj_cg_loop_final(bj_cg *cg, bj_cg_loop *l);
/* if (cond) { then } -- begin returns the block to finish in bj_cg_if_end. */
LLVMBasicBlockRef bj_cg_if_begin(bj_cg *cg, LLVMValueRef v_cond, const char *name);
void bj_cg_if_end(bj_cg *cg, LLVMBasicBlockRef b_merge);
/* Calls intrinsic `name` (overloaded on tys[0..ntys)), bitcasting args to its parameter
 * types; the result keeps the intrinsic's own type. */
LLVMValueRef bj_cg_intrinsic(bj_cg *cg, const char *name, LLVMTypeRef *tys, unsigned ntys,
                             LLVMValueRef *args, unsigned nargs);
LLVMValueRef bj_cg_reduce_add(bj_cg *cg, LLVMValueRef v_vec);
LLVMValueRef bj_cg_min(bj_cg *cg, LLVMValueRef a, LLVMValueRef b); /* signed i64 */
LLVMValueRef bj_cg_splat(bj_cg *cg, LLVMValueRef v_scalar, unsigned lanes);
/* Vector of lanes constants from an int array. */
LLVMValueRef bj_cg_const_vec(bj_cg *cg, LLVMTypeRef elem, const int64_t *vals, unsigned lanes);
/* Sum over the 64-byte-padded row x[0 .. XS) of one token, as i32 (every path's sums). */
LLVMValueRef bj_cg_emit_act_sum(bj_cg *cg, LLVMValueRef v_xrow);

/* ---- the generators, one file each ------------------------------------------------------ */
bj_status bj_cg_gen_dot2(bj_cg *cg, const char *name, bj_error *err);     /* cg_kernel_dot2.c: DOT2, BIN1 */
bj_status bj_cg_gen_amx(bj_cg *cg, const char *name, bj_error *err);      /* cg_kernel_amx.c: DOT2 on AMX */
bj_status bj_cg_gen_bitplane(bj_cg *cg, const char *name, bj_error *err); /* cg_kernel_bitplane.c */
bj_status bj_cg_gen_wcode(bj_cg *cg, const char *name, bj_error *err);    /* cg_kernel_wcode.c */
bj_status bj_cg_gen_wcode_late(bj_cg *cg, bj_error *err);                 /* after O3 */
bj_status bj_cg_gen_head(bj_cg *cg, const char *name, bj_error *err);     /* cg_kernel_head.c: float LM head */

/* ---- cg_compile.c: LLVM's native target, initialised once per process ------------------ */
void bj_cg_llvm_init(void);

/* ---- cg_jit.c ---------------------------------------------------------------------------- */
bool bj_cg_jit_has(bj_cg_jit *j, const char *sym);

/* ---- cg_cache.c -------------------------------------------------------------------------- */
uint64_t bj_cg_env_hash(const bj_cg_target *t);

/* ---- cg_kdesc.c -------------------------------------------------------------------------- */
unsigned bj_cg_isa_vector_bytes(bj_cg_isa isa); /* 16, 32 or 64 */
/* out = the DOT2 AVX-512 VNNI descriptor an AMX kernel hands its edges to (same M, K, weights). */
void bj_cg_kdesc_amx_edges(const bj_cg_kdesc *amx, bj_cg_kdesc *out);

/* ---- one-liners ------------------------------------------------------------------------- */
static inline LLVMValueRef bj_cg_i64c(bj_cg *cg, int64_t v) {
    return LLVMConstInt(cg->i64, (unsigned long long)v, 1);
}
static inline LLVMValueRef bj_cg_i32c(bj_cg *cg, int32_t v) {
    return LLVMConstInt(cg->i32, (unsigned long long)(int64_t)v, 1);
}
static inline LLVMTypeRef bj_cg_vec(LLVMTypeRef elem, unsigned lanes) {
    return LLVMVectorType(elem, lanes);
}
/* base + off bytes (off an i64 value). */
static inline LLVMValueRef bj_cg_gep(bj_cg *cg, LLVMValueRef v_base, LLVMValueRef v_off) {
    return LLVMBuildGEP2(cg->b, cg->i8, v_base, &v_off, 1, "");
}
static inline LLVMValueRef bj_cg_gepc(bj_cg *cg, LLVMValueRef v_base, int64_t off) {
    return off ? bj_cg_gep(cg, v_base, bj_cg_i64c(cg, off)) : v_base;
}
/* Unaligned load / store (packed weights and activation rows promise no alignment). */
static inline LLVMValueRef bj_cg_load(bj_cg *cg, LLVMTypeRef ty, LLVMValueRef v_ptr) {
    LLVMValueRef v = LLVMBuildLoad2(cg->b, ty, v_ptr, "");
    LLVMSetAlignment(v, 1);
    return v;
}
static inline void bj_cg_store(bj_cg *cg, LLVMValueRef v_val, LLVMValueRef v_ptr) {
    LLVMSetAlignment(LLVMBuildStore(cg->b, v_val, v_ptr), 1);
}
static inline LLVMValueRef bj_cg_add(bj_cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildAdd(cg->b, a, b, "");
}
static inline LLVMValueRef bj_cg_sub(bj_cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSub(cg->b, a, b, "");
}
static inline LLVMValueRef bj_cg_mul(bj_cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildMul(cg->b, a, b, "");
}
static inline LLVMValueRef bj_cg_lt(bj_cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, "");
}
static inline LLVMValueRef bj_cg_ld(bj_cg *cg, LLVMValueRef v_alloca, LLVMTypeRef ty) {
    return LLVMBuildLoad2(cg->b, ty, v_alloca, "");
}
static inline void bj_cg_st(bj_cg *cg, LLVMValueRef v_val, LLVMValueRef v_alloca) {
    LLVMBuildStore(cg->b, v_val, v_alloca);
}

/* cg_cache.c's file helpers, shared with the packed-weight cache (cg_wcache.c) and the tuning
 * database (cg_tunedb.c). mkdir -p: 0, or the errno (ENOTDIR: the path exists as a file). */
int bj_cg_mkdirs(const char *dir);
void bj_cg_cache_warn(bj_cg_cache *c, uint32_t what, const char *fmt, const char *arg, int e);
bool bj_cg_read_all(int fd, void *buf, size_t n);
bool bj_cg_write_all(int fd, const void *buf, size_t n);
/* Writes a then b to path through a temp file and rename (an entry is whole or absent); a
 * failure turns the cache off with a warning. */
void bj_cg_cache_write(bj_cg_cache *c, const char *path, const void *a, size_t na, const void *b, size_t nb);
/* The same for the concatenation of n_parts parts. */
void bj_cg_cache_writev(bj_cg_cache *c, const char *path, const bj_cg_part *parts, int n_parts);

#endif
