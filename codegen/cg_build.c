/* codegen/cg_build.c -- the build context and the structured-IR helpers generators share:
 * functions with target attributes, entry-block allocas, counted loops, if-blocks, intrinsic
 * calls through their IDs, reductions, splats, and the per-token activation sum.
 *
 * Invariants: allocas are always created in the function's entry block (so SROA promotes
 * them), the builder is left positioned where the caller continues, and no helper reads a
 * CPU flag: ISA choice is the generator's, from its descriptor (style.md C8). */
#include "codegen/cg_llvm.h"

#include <string.h>

void bj_cg_init(bj_cg *cg, LLVMContextRef ctx, LLVMModuleRef mod, const bj_cg_target *t,
                const bj_cg_kdesc *d, const int8_t *t8) {
    memset(cg, 0, sizeof *cg);
    cg->ctx = ctx;
    cg->mod = mod;
    cg->b = LLVMCreateBuilderInContext(ctx);
    cg->tgt = t;
    cg->d = d;
    cg->t8 = t8;
    cg->i1 = LLVMInt1TypeInContext(ctx);
    cg->i8 = LLVMInt8TypeInContext(ctx);
    cg->i16 = LLVMInt16TypeInContext(ctx);
    cg->i32 = LLVMInt32TypeInContext(ctx);
    cg->i64 = LLVMInt64TypeInContext(ctx);
    cg->ptr = LLVMPointerTypeInContext(ctx, 0);
    cg->void_t = LLVMVoidTypeInContext(ctx);
}

void bj_cg_fini(bj_cg *cg) {
    if (cg->b) LLVMDisposeBuilder(cg->b);
    cg->b = NULL;
}

static void bj_cg_fn_attr(bj_cg *cg, LLVMValueRef fn, const char *name) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

LLVMValueRef bj_cg_function(bj_cg *cg, const char *name, LLVMTypeRef fty, bool internal) {
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, fty);
    LLVMAddTargetDependentFunctionAttr(fn, "target-cpu", cg->tgt->cpu);
    if (cg->tgt->features[0]) LLVMAddTargetDependentFunctionAttr(fn, "target-features", cg->tgt->features);
    bj_cg_fn_attr(cg, fn, "nounwind");
    if (internal) LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg->fn = fn;
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    return fn;
}

LLVMValueRef bj_cg_kernel_begin(bj_cg *cg, const char *name) {
    LLVMTypeRef ps[] = { cg->ptr, cg->ptr, cg->ptr, cg->i64, cg->i64, cg->i64 };
    LLVMValueRef fn = bj_cg_function(cg, name, LLVMFunctionType(cg->void_t, ps, 6, 0), false);
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    for (unsigned i = 1; i <= 3; i++) /* x, w, y never overlap: y stores cannot clobber x, w */
        LLVMAddAttributeAtIndex(fn, i, LLVMCreateEnumAttribute(cg->ctx, noalias, 0));
    cg->v_x = LLVMGetParam(fn, 0);
    cg->v_w = LLVMGetParam(fn, 1);
    cg->v_y = LLVMGetParam(fn, 2);
    cg->v_T = LLVMGetParam(fn, 3);
    cg->v_m0 = LLVMGetParam(fn, 4);
    cg->v_m1 = LLVMGetParam(fn, 5);
    return fn;
}

LLVMValueRef bj_cg_alloca(bj_cg *cg, LLVMTypeRef ty, const char *name) {
    LLVMBasicBlockRef b_here = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef b_entry = LLVMGetEntryBasicBlock(cg->fn);
    LLVMValueRef v_first = LLVMGetFirstInstruction(b_entry);
    if (v_first) LLVMPositionBuilderBefore(cg->b, v_first);
    else LLVMPositionBuilderAtEnd(cg->b, b_entry);
    LLVMValueRef v = LLVMBuildAlloca(cg->b, ty, name);
    LLVMPositionBuilderAtEnd(cg->b, b_here);
    return v;
}

LLVMValueRef bj_cg_alloca_zero(bj_cg *cg, LLVMTypeRef ty, const char *name) {
    LLVMValueRef v = bj_cg_alloca(cg, ty, name);
    bj_cg_st(cg, LLVMConstNull(ty), v);
    return v;
}

void bj_cg_loop_begin(bj_cg *cg, bj_cg_loop *l, LLVMValueRef v_start, LLVMValueRef v_end,
                      LLVMValueRef v_step, const char *name) {
    l->v_ivp = bj_cg_alloca(cg, cg->i64, name);
    l->v_end = v_end;
    l->v_step = v_step;
    bj_cg_st(cg, v_start, l->v_ivp);
    l->b_head = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "head");
    l->b_body = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "body");
    l->b_exit = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "exit");
    LLVMBuildBr(cg->b, l->b_head);
    LLVMPositionBuilderAtEnd(cg->b, l->b_head);
    LLVMValueRef v_iv = bj_cg_ld(cg, l->v_ivp, cg->i64);
    LLVMBuildCondBr(cg->b, bj_cg_lt(cg, v_iv, v_end), l->b_body, l->b_exit);
    LLVMPositionBuilderAtEnd(cg->b, l->b_body);
    l->v_iv = bj_cg_ld(cg, l->v_ivp, cg->i64);
}

void bj_cg_loop_end(bj_cg *cg, bj_cg_loop *l) {
    LLVMValueRef v_iv = bj_cg_ld(cg, l->v_ivp, cg->i64);
    bj_cg_st(cg, bj_cg_add(cg, v_iv, l->v_step), l->v_ivp);
    LLVMBuildBr(cg->b, l->b_head);
    LLVMMoveBasicBlockAfter(l->b_exit, LLVMGetInsertBlock(cg->b));
    LLVMPositionBuilderAtEnd(cg->b, l->b_exit);
}

LLVMValueRef bj_cg_loop_final(bj_cg *cg, bj_cg_loop *l) { return bj_cg_ld(cg, l->v_ivp, cg->i64); }

LLVMBasicBlockRef bj_cg_if_begin(bj_cg *cg, LLVMValueRef v_cond, const char *name) {
    LLVMBasicBlockRef b_then = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, name);
    LLVMBasicBlockRef b_merge = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "endif");
    LLVMBuildCondBr(cg->b, v_cond, b_then, b_merge);
    LLVMPositionBuilderAtEnd(cg->b, b_then);
    return b_merge;
}

void bj_cg_if_end(bj_cg *cg, LLVMBasicBlockRef b_merge) {
    LLVMBuildBr(cg->b, b_merge);
    LLVMMoveBasicBlockAfter(b_merge, LLVMGetInsertBlock(cg->b));
    LLVMPositionBuilderAtEnd(cg->b, b_merge);
}

LLVMValueRef bj_cg_intrinsic(bj_cg *cg, const char *name, LLVMTypeRef *tys, unsigned ntys,
                             LLVMValueRef *args, unsigned nargs) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    BJ_ASSERT(id != 0);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, tys, ntys);
    LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, tys, ntys);
    BJ_ASSERT(LLVMCountParamTypes(fty) == nargs && nargs <= 8);
    LLVMTypeRef pt[8];
    LLVMValueRef a[8];
    LLVMGetParamTypes(fty, pt);
    for (unsigned i = 0; i < nargs; i++)
        a[i] = LLVMTypeOf(args[i]) == pt[i] ? args[i] : LLVMBuildBitCast(cg->b, args[i], pt[i], "");
    return LLVMBuildCall2(cg->b, fty, fn, a, nargs, "");
}

LLVMValueRef bj_cg_reduce_add(bj_cg *cg, LLVMValueRef v_vec) {
    LLVMTypeRef ty = LLVMTypeOf(v_vec);
    return bj_cg_intrinsic(cg, "llvm.vector.reduce.add", &ty, 1, &v_vec, 1);
}

LLVMValueRef bj_cg_min(bj_cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(cg->b, bj_cg_lt(cg, a, b), a, b, "");
}

LLVMValueRef bj_cg_splat(bj_cg *cg, LLVMValueRef v_scalar, unsigned lanes) {
    LLVMTypeRef vty = LLVMVectorType(LLVMTypeOf(v_scalar), lanes);
    LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vty), v_scalar, bj_cg_i32c(cg, 0), "");
    LLVMValueRef v_mask = LLVMConstNull(LLVMVectorType(cg->i32, lanes));
    return LLVMBuildShuffleVector(cg->b, v, LLVMGetUndef(vty), v_mask, "");
}

LLVMValueRef bj_cg_const_vec(bj_cg *cg, LLVMTypeRef elem, const int64_t *vals, unsigned lanes) {
    LLVMValueRef c[64];
    BJ_ASSERT(lanes <= 64);
    for (unsigned i = 0; i < lanes; i++) c[i] = LLVMConstInt(elem, (unsigned long long)vals[i], 1);
    return LLVMConstVector(c, lanes);
}

/* Sum of one padded activation row, 64 bytes at a time widened to i32 (exact for any K). */
LLVMValueRef bj_cg_emit_act_sum(bj_cg *cg, LLVMValueRef v_xrow) {
    LLVMTypeRef v64i8 = bj_cg_vec(cg->i8, 64), v64i32 = bj_cg_vec(cg->i32, 64);
    LLVMValueRef v_acc = bj_cg_alloca(cg, v64i32, "xsum");
    bj_cg_st(cg, LLVMConstNull(v64i32), v_acc);
    bj_cg_loop l;
    bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), bj_cg_i64c(cg, bj_cg_x_stride(cg->d->k)),
                     bj_cg_i64c(cg, 64), "kx");
    LLVMValueRef v = bj_cg_load(cg, v64i8, bj_cg_gep(cg, v_xrow, l.v_iv));
    v = LLVMBuildSExt(cg->b, v, v64i32, "");
    bj_cg_st(cg, bj_cg_add(cg, bj_cg_ld(cg, v_acc, v64i32), v), v_acc);
    bj_cg_loop_end(cg, &l);
    return bj_cg_reduce_add(cg, bj_cg_ld(cg, v_acc, v64i32));
}
