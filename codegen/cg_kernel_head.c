/* codegen/cg_kernel_head.c -- the exact float LM head (F16, BF16 or F32 weights) as a
 * generated kernel: the contract of bj_cg_head_fn (codegen.h), the summation order of the
 * runtime's f32 dot (runtime/ops.c, docs/numerics.md) on the widest vectors the target has.
 *
 * The order, per output row: 32 lanes, lane j the sum in k order of the products x[k] * w[k]
 * with k = j (mod 32) below K rounded down to 32 (each product rounded to f32, then added:
 * fmul then fadd, never a fused multiply-add, and no fast-math flag anywhere, so LLVM keeps
 * every rounding); the lanes fold by halving (j += j + 16, then 8, 4, 2, 1); then the tail
 * (k from K rounded down to 32 up to K, summed in order from 0) is added last. The 32 lanes are
 * two 512-bit or four 256-bit vectors; folding by halving pairs vector i with vector i + n/2
 * while there are several, then halves within one vector by shuffles: the same additions.
 *
 * Speed: decode reads the head once a token (656 MB for 2B4T at F16), from memory. tile_m rows
 * are summed at once (2 vectors each: 2 x tile_m independent add chains, so add latency never
 * bounds a row), each row's stream prefetched d->prefetch 256-byte units ahead (4 KiB pages end
 * the hardware prefetcher's run). The token loop sits inside the row group, so prefill's T
 * tokens re-read a group's rows from L1 rather than from memory. */
#include "codegen/cg_llvm.h"

#include <string.h>

typedef struct head_gen {
    bj_cg *cg;
    unsigned L;       /* float lanes a vector: 16 (512-bit) or 8 (256-bit) */
    unsigned NV;      /* vectors a row's 32 lanes take: 2 or 4 */
    unsigned es;      /* weight element bytes: 2 or 4 */
    LLVMTypeRef f32, vf;
    LLVMValueRef v_xrow;   /* x row of the current token */
} head_gen;

/* L weights at byte address p as L floats (exact: f16 and bf16 widen without rounding). */
static LLVMValueRef head_load_w(head_gen *h, LLVMValueRef p) {
    bj_cg *cg = h->cg;
    switch (cg->d->wtype) {
    case BJ_CG_HEAD_F16: {
        LLVMTypeRef vh = bj_cg_vec(LLVMHalfTypeInContext(cg->ctx), h->L);
        return LLVMBuildFPExt(cg->b, bj_cg_load(cg, vh, p), h->vf, "");
    }
    case BJ_CG_HEAD_BF16: {
        LLVMTypeRef v16 = bj_cg_vec(cg->i16, h->L), v32 = bj_cg_vec(cg->i32, h->L);
        LLVMValueRef v = LLVMBuildZExt(cg->b, bj_cg_load(cg, v16, p), v32, "");
        v = LLVMBuildShl(cg->b, v, bj_cg_splat(cg, bj_cg_i32c(cg, 16), h->L), "");
        return LLVMBuildBitCast(cg->b, v, h->vf, "");
    }
    default: return bj_cg_load(cg, h->vf, p);
    }
}

static LLVMValueRef head_load_w1(head_gen *h, LLVMValueRef p) {
    bj_cg *cg = h->cg;
    switch (cg->d->wtype) {
    case BJ_CG_HEAD_F16: return LLVMBuildFPExt(cg->b, bj_cg_load(cg, LLVMHalfTypeInContext(cg->ctx), p), h->f32, "");
    case BJ_CG_HEAD_BF16: {
        LLVMValueRef v = LLVMBuildZExt(cg->b, bj_cg_load(cg, cg->i16, p), cg->i32, "");
        return LLVMBuildBitCast(cg->b, LLVMBuildShl(cg->b, v, bj_cg_i32c(cg, 16), ""), h->f32, "");
    }
    default: return bj_cg_load(cg, h->f32, p);
    }
}

/* The first n lanes of v (n < lanes of v) and the n after them. */
static LLVMValueRef head_half(head_gen *h, LLVMValueRef v, unsigned n, unsigned from) {
    bj_cg *cg = h->cg;
    int64_t idx[16];
    for (unsigned i = 0; i < n; i++) idx[i] = from + i;
    return LLVMBuildShuffleVector(cg->b, v, LLVMGetUndef(LLVMTypeOf(v)), bj_cg_const_vec(cg, cg->i32, idx, n), "");
}

/* The fold of one row's NV accumulators, plus its tail: the order of the header. */
static LLVMValueRef head_fold(head_gen *h, LLVMValueRef *acc, LLVMValueRef v_tail) {
    bj_cg *cg = h->cg;
    LLVMValueRef v[4];
    unsigned nv = h->NV;
    memcpy(v, acc, nv * sizeof *v);
    for (; nv > 1; nv /= 2)
        for (unsigned i = 0; i < nv / 2; i++) v[i] = LLVMBuildFAdd(cg->b, v[i], v[i + nv / 2], "");
    LLVMValueRef s = v[0];
    for (unsigned n = h->L / 2; n >= 1; n /= 2) {
        if (n == 1) {
            s = LLVMBuildFAdd(cg->b, LLVMBuildExtractElement(cg->b, s, bj_cg_i32c(cg, 0), ""),
                              LLVMBuildExtractElement(cg->b, s, bj_cg_i32c(cg, 1), ""), "");
            break;
        }
        s = LLVMBuildFAdd(cg->b, head_half(h, s, n, 0), head_half(h, s, n, n), "");
    }
    return LLVMBuildFAdd(cg->b, s, v_tail, "");
}

/* Rows [n, n + R) of the current token: y[t * M + n + r]. */
static void head_rows(head_gen *h, LLVMValueRef v_n, unsigned R, LLVMValueRef v_t) {
    bj_cg *cg = h->cg;
    const bj_cg_kdesc *d = cg->d;
    int64_t K = d->k, K32 = K & ~(int64_t)31, rowb = K * h->es;
    LLVMValueRef v_wrow[16], v_acc[16][4];
    for (unsigned r = 0; r < R; r++) {
        LLVMValueRef v_row = bj_cg_add(cg, v_n, bj_cg_i64c(cg, r));
        v_wrow[r] = bj_cg_gep(cg, cg->v_w, bj_cg_mul(cg, v_row, bj_cg_i64c(cg, rowb)));
        for (unsigned q = 0; q < h->NV; q++) v_acc[r][q] = bj_cg_alloca(cg, h->vf, "acc");
        for (unsigned q = 0; q < h->NV; q++) bj_cg_st(cg, LLVMConstNull(h->vf), v_acc[r][q]);
    }
    if (K32 > 0) {
        bj_cg_loop l;
        bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), bj_cg_i64c(cg, K32), bj_cg_i64c(cg, 32), "k");
        LLVMValueRef v_xk = bj_cg_gep(cg, h->v_xrow, bj_cg_mul(cg, l.v_iv, bj_cg_i64c(cg, 4)));
        LLVMValueRef v_wk = bj_cg_mul(cg, l.v_iv, bj_cg_i64c(cg, h->es));
        LLVMValueRef v_x[4];
        for (unsigned q = 0; q < h->NV; q++) v_x[q] = bj_cg_load(cg, h->vf, bj_cg_gepc(cg, v_xk, 4 * q * h->L));
        for (unsigned r = 0; r < R; r++) {
            LLVMValueRef v_p = bj_cg_gep(cg, v_wrow[r], v_wk);
            if (d->prefetch) { /* each 32 k read 64 (or 128) bytes of the row: a line or two ahead */
                for (unsigned lb = 0; lb < h->es * 32; lb += 64) {
                    LLVMValueRef a[] = { bj_cg_gepc(cg, v_p, (int64_t)d->prefetch * 256 + lb), bj_cg_i32c(cg, 0),
                                         bj_cg_i32c(cg, 3), bj_cg_i32c(cg, 1) };
                    LLVMTypeRef pty = cg->ptr;
                    bj_cg_intrinsic(cg, "llvm.prefetch", &pty, 1, a, 4);
                }
            }
            for (unsigned q = 0; q < h->NV; q++) {
                LLVMValueRef v_w = head_load_w(h, bj_cg_gepc(cg, v_p, (int64_t)q * h->L * h->es));
                LLVMValueRef v_prod = LLVMBuildFMul(cg->b, v_x[q], v_w, "");
                bj_cg_st(cg, LLVMBuildFAdd(cg->b, bj_cg_ld(cg, v_acc[r][q], h->vf), v_prod, ""), v_acc[r][q]);
            }
        }
        bj_cg_loop_end(cg, &l);
    }
    LLVMValueRef v_M = bj_cg_i64c(cg, d->m);
    for (unsigned r = 0; r < R; r++) {
        LLVMValueRef v_tail = LLVMConstReal(h->f32, 0.0);
        for (int64_t k = K32; k < K; k++) {
            LLVMValueRef v_xv = bj_cg_load(cg, h->f32, bj_cg_gepc(cg, h->v_xrow, 4 * k));
            LLVMValueRef v_wv = head_load_w1(h, bj_cg_gepc(cg, v_wrow[r], k * h->es));
            v_tail = LLVMBuildFAdd(cg->b, v_tail, LLVMBuildFMul(cg->b, v_xv, v_wv, ""), "");
        }
        LLVMValueRef acc[4];
        for (unsigned q = 0; q < h->NV; q++) acc[q] = bj_cg_ld(cg, v_acc[r][q], h->vf);
        LLVMValueRef v_s = head_fold(h, acc, v_tail);
        LLVMValueRef v_off = bj_cg_add(cg, bj_cg_mul(cg, v_t, v_M), bj_cg_add(cg, v_n, bj_cg_i64c(cg, r)));
        bj_cg_store(cg, v_s, bj_cg_gep(cg, cg->v_y, bj_cg_mul(cg, v_off, bj_cg_i64c(cg, 4))));
    }
}

/* for (t = 0; t < T; t++) rows [n, n + R) of token t. */
static void head_group(head_gen *h, LLVMValueRef v_n, unsigned R) {
    bj_cg *cg = h->cg;
    bj_cg_loop lt;
    bj_cg_loop_begin(cg, &lt, bj_cg_i64c(cg, 0), cg->v_T, bj_cg_i64c(cg, 1), "t");
    h->v_xrow = bj_cg_gep(cg, cg->v_x, bj_cg_mul(cg, lt.v_iv, bj_cg_i64c(cg, 4 * (int64_t)cg->d->k)));
    head_rows(h, v_n, R, lt.v_iv);
    bj_cg_loop_end(cg, &lt);
}

bj_status bj_cg_gen_head(bj_cg *cg, const char *name, bj_error *err) {
    (void)err;
    const bj_cg_kdesc *d = cg->d;
    head_gen h = { .cg = cg };
    h.L = bj_cg_isa_vector_bytes((bj_cg_isa)d->isa) / 4;
    h.NV = 32 / h.L;
    h.es = d->wtype == BJ_CG_HEAD_F32 ? 4 : 2;
    h.f32 = LLVMFloatTypeInContext(cg->ctx);
    h.vf = bj_cg_vec(h.f32, h.L);
    bj_cg_kernel_begin(cg, name);
    unsigned R = d->tile_m;
    /* whole groups of R rows, then the rows left one at a time */
    LLVMValueRef v_span = bj_cg_sub(cg, cg->v_m1, cg->v_m0);
    LLVMValueRef v_end = bj_cg_add(cg, cg->v_m0, bj_cg_sub(cg, v_span, LLVMBuildSRem(cg->b, v_span, bj_cg_i64c(cg, R), "")));
    bj_cg_loop lg;
    bj_cg_loop_begin(cg, &lg, cg->v_m0, v_end, bj_cg_i64c(cg, R), "n");
    head_group(&h, lg.v_iv, R);
    bj_cg_loop_end(cg, &lg);
    if (R > 1) {
        bj_cg_loop l1;
        bj_cg_loop_begin(cg, &l1, bj_cg_loop_final(cg, &lg), cg->v_m1, bj_cg_i64c(cg, 1), "n1");
        head_group(&h, l1.v_iv, 1);
        bj_cg_loop_end(cg, &l1);
    }
    LLVMBuildRetVoid(cg->b);
    return BJ_OK;
}
