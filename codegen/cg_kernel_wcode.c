/* codegen/cg_kernel_wcode.c -- generator of the weights-as-code matmul (variant WCODE).
 *
 * Every non-zero weight becomes one vector add (w = +1) or subtract (w = -1) of an activation
 * column; zeros emit nothing; the kernel reads no weight pointer. Work is vectorised across
 * tokens: K is cut into chunks of BJ_WC_KC columns, and each chunk of a token tile (tile_t
 * tokens, one per i16 lane) is transposed into a small stack buffer xT[k][tile_t] of
 * sign-extended activations (zero lanes past the last token). One add is then a single
 * vpaddw with a memory operand. A chunk has at most 128 adds of |x| <= 128, so its i16 sum
 * is exact; chunk sums are widened and added into y.
 *
 * Code shape: one noinline function per slice (tile_m rows x one chunk), equal slices sharing
 * one function, called through a constant table [chunk][row group]. Small functions keep
 * codegen time linear in the number of non-zero weights (a huge basic block makes it explode,
 * llvm.md). Four accumulators per row take the adds in turn so the chains overlap. The slices
 * are added after O3 (bj_cg_gen_wcode_late): O3 cannot improve straight-line adds, and its
 * InstCombine and GVN over them cost more than everything else.
 *
 * Only for small layers (bj_cg_wcode_fits): the code is far larger than 2-bit weights and
 * is compiled per weight set (the weights' hash is in the descriptor). */
#include "codegen/cg_llvm.h"

#include <xxhash.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BJ_WC_KC 128 /* k per chunk: 128 * 128 < 32768, so i16 sums are exact */
#define BJ_WC_TABLE "bj.wcode.slices"

typedef struct bj_wc {
    bj_cg *cg;
    unsigned lanes;
    int64_t xs, nchunks, rows, ngroups; /* rows per slice function = tile_m */
    LLVMTypeRef vsum, fty;              /* <lanes x i16>, void f(ptr xT, ptr out) */
} bj_wc;

static LLVMValueRef bj_wc_func(bj_wc *k, const char *name) {
    bj_cg *cg = k->cg;
    LLVMValueRef fn = bj_cg_function(cg, name, k->fty, true);
    LLVMSetFunctionCallConv(fn, LLVMFastCallConv);
    unsigned noinline = LLVMGetEnumAttributeKindForName("noinline", 8);
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, noinline, 0));
    for (unsigned i = 1; i <= 2; i++) /* xT and out never overlap: loads need not wait for stores */
        LLVMAddAttributeAtIndex(fn, i, LLVMCreateEnumAttribute(cg->ctx, noalias, 0));
    return fn;
}

/* The function of one slice, rows [m, m + nr) x columns [k0, k0 + len): for each row,
 * out[r][0 .. lanes) = sum of +-xT[k] over the row's non-zeros. */
static LLVMValueRef bj_wc_slice(bj_wc *k, int64_t m, int64_t nr, int64_t k0, int64_t len, const char *name) {
    bj_cg *cg = k->cg;
    LLVMValueRef fn = bj_wc_func(k, name), v_xt = LLVMGetParam(fn, 0), v_out = LLVMGetParam(fn, 1);
    for (int64_t r = 0; r < nr; r++) {
        const int8_t *w = cg->t8 + (m + r) * cg->d->k + k0;
        LLVMValueRef acc[4] = { LLVMConstNull(k->vsum), LLVMConstNull(k->vsum), LLVMConstNull(k->vsum),
                                LLVMConstNull(k->vsum) };
        unsigned used = 0;
        for (int64_t kk = 0; kk < len; kk++) {
            if (!w[kk]) continue;
            LLVMValueRef v = LLVMBuildLoad2(cg->b, k->vsum, bj_cg_gepc(cg, v_xt, kk * k->lanes * 2), "");
            LLVMSetAlignment(v, k->lanes * 2 < 64 ? k->lanes * 2 : 64);
            acc[used % 4] = w[kk] > 0 ? bj_cg_add(cg, acc[used % 4], v) : bj_cg_sub(cg, acc[used % 4], v);
            used++;
        }
        LLVMValueRef v = bj_cg_add(cg, bj_cg_add(cg, acc[0], acc[1]), bj_cg_add(cg, acc[2], acc[3]));
        bj_cg_store(cg, v, bj_cg_gepc(cg, v_out, r * k->lanes * 2));
    }
    LLVMBuildRetVoid(cg->b);
    return fn;
}

/* Do rows [m, m + nr) hold the same weights in [k0, k0 + len) as rows [m2, m2 + nr)? */
static bool bj_wc_same(const bj_cg *cg, int64_t m, int64_t m2, int64_t nr, int64_t k0, int64_t len) {
    for (int64_t r = 0; r < nr; r++)
        if (memcmp(cg->t8 + (m + r) * cg->d->k + k0, cg->t8 + (m2 + r) * cg->d->k + k0, (size_t)len)) return false;
    return true;
}

static uint64_t bj_wc_hash(const bj_cg *cg, int64_t m, int64_t nr, int64_t k0, int64_t len, uint64_t seed) {
    uint64_t h = seed;
    for (int64_t r = 0; r < nr; r++) h = XXH3_64bits_withSeed(cg->t8 + (m + r) * cg->d->k + k0, (size_t)len, h);
    return h;
}

/* fns[c * G + g]: the function of row group g (tile_m rows) in chunk c; equal slices share one. */
static bj_status bj_wc_slices(bj_wc *k, LLVMValueRef *fns, bj_error *err) {
    bj_cg *cg = k->cg;
    int64_t M = cg->d->m, K = cg->d->k, R = k->rows, G = k->ngroups, n = k->nchunks * G, cap = 1;
    while (cap < 2 * n) cap *= 2;
    int64_t *slot = malloc((size_t)cap * sizeof *slot);
    if (!slot) return BJ_FAIL(err, BJ_E_NOMEM, "weights-as-code: slice table of %lld entries", (long long)cap);
    for (int64_t i = 0; i < cap; i++) slot[i] = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = i / G, m = (i % G) * R, k0 = c * BJ_WC_KC;
        int64_t len = K - k0 < BJ_WC_KC ? K - k0 : BJ_WC_KC, nr = M - m < R ? M - m : R;
        int64_t h = (int64_t)(bj_wc_hash(cg, m, nr, k0, len, (uint64_t)c * 65537 + (uint64_t)nr) & (uint64_t)(cap - 1));
        while (slot[h] >= 0) {
            int64_t i2 = slot[h], m2 = (i2 % G) * R;
            if (i2 / G == c && (M - m2 < R ? M - m2 : R) == nr && bj_wc_same(cg, m, m2, nr, k0, len)) break;
            h = (h + 1) & (cap - 1);
        }
        if (slot[h] >= 0) { fns[i] = fns[slot[h]]; continue; }
        char name[48];
        snprintf(name, sizeof name, "w%lld.%lld", (long long)c, (long long)(i % G));
        slot[h] = i;
        fns[i] = bj_wc_slice(k, m, nr, k0, len, name);
    }
    free(slot);
    return BJ_OK;
}

/* xT[kk][j] = x[t0 + j][k0 + kk] as i16 for kk < len, j < nt; other lanes zero. */
static void bj_wc_transpose(bj_wc *k, LLVMValueRef v_xt, LLVMValueRef v_t0, LLVMValueRef v_nt,
                            LLVMValueRef v_k0, LLVMValueRef v_len) {
    bj_cg *cg = k->cg;
    LLVMBasicBlockRef b_merge = bj_cg_if_begin(cg, bj_cg_lt(cg, v_nt, bj_cg_i64c(cg, k->lanes)), "zero");
    LLVMBuildMemSet(cg->b, v_xt, LLVMConstInt(cg->i8, 0, 0), bj_cg_i64c(cg, BJ_WC_KC * k->lanes * 2), 64);
    bj_cg_if_end(cg, b_merge);
    bj_cg_loop lj, lk;
    bj_cg_loop_begin(cg, &lj, bj_cg_i64c(cg, 0), v_nt, bj_cg_i64c(cg, 1), "j");
    LLVMValueRef v_row = bj_cg_gep(cg, cg->v_x, bj_cg_add(cg, bj_cg_mul(cg, bj_cg_add(cg, v_t0, lj.v_iv),
                                                                      bj_cg_i64c(cg, k->xs)), v_k0));
    bj_cg_loop_begin(cg, &lk, bj_cg_i64c(cg, 0), v_len, bj_cg_i64c(cg, 1), "k");
    LLVMValueRef v = LLVMBuildSExt(cg->b, bj_cg_load(cg, cg->i8, bj_cg_gep(cg, v_row, lk.v_iv)), cg->i16, "");
    LLVMValueRef v_i = bj_cg_add(cg, bj_cg_mul(cg, lk.v_iv, bj_cg_i64c(cg, k->lanes)), lj.v_iv);
    bj_cg_st(cg, v, LLVMBuildGEP2(cg->b, cg->i16, v_xt, &v_i, 1, ""));
    bj_cg_loop_end(cg, &lk);
    bj_cg_loop_end(cg, &lj);
}

/* For the row groups over [m0, m1): call table[c][g](xT, out), then
 * y[t0 + j][m] (= in chunk 0, else +=) out[m - g*R][j] for m in [m0, m1), j < nt. */
static void bj_wc_call_rows(bj_wc *k, LLVMValueRef v_table, LLVMValueRef v_xt, LLVMValueRef v_out,
                            LLVMValueRef v_t0, LLVMValueRef v_nt, LLVMValueRef v_c) {
    bj_cg *cg = k->cg;
    LLVMBuilderRef b = cg->b;
    int64_t M = cg->d->m, R = k->rows;
    LLVMValueRef v_g0 = LLVMBuildSDiv(b, cg->v_m0, bj_cg_i64c(cg, R), "");
    LLVMValueRef v_g1 = LLVMBuildSDiv(b, bj_cg_add(cg, cg->v_m1, bj_cg_i64c(cg, R - 1)), bj_cg_i64c(cg, R), "");
    bj_cg_loop lg, lr, lj;
    bj_cg_loop_begin(cg, &lg, v_g0, v_g1, bj_cg_i64c(cg, 1), "g");
    LLVMValueRef v_ti = bj_cg_add(cg, bj_cg_mul(cg, v_c, bj_cg_i64c(cg, k->ngroups)), lg.v_iv);
    LLVMValueRef v_fn = bj_cg_ld(cg, LLVMBuildGEP2(b, cg->ptr, v_table, &v_ti, 1, ""), cg->ptr);
    LLVMValueRef args[] = { v_xt, v_out };
    LLVMSetInstructionCallConv(LLVMBuildCall2(b, k->fty, v_fn, args, 2, ""), LLVMFastCallConv);
    LLVMValueRef v_mb = bj_cg_mul(cg, lg.v_iv, bj_cg_i64c(cg, R));
    LLVMValueRef v_lo = LLVMBuildSelect(b, bj_cg_lt(cg, v_mb, cg->v_m0), cg->v_m0, v_mb, "");
    LLVMValueRef v_first = LLVMBuildICmp(b, LLVMIntEQ, v_c, bj_cg_i64c(cg, 0), "");
    bj_cg_loop_begin(cg, &lr, v_lo, bj_cg_min(cg, cg->v_m1, bj_cg_add(cg, v_mb, bj_cg_i64c(cg, R))), bj_cg_i64c(cg, 1), "r");
    bj_cg_loop_begin(cg, &lj, bj_cg_i64c(cg, 0), v_nt, bj_cg_i64c(cg, 1), "j");
    LLVMValueRef v_i = bj_cg_add(cg, bj_cg_mul(cg, bj_cg_add(cg, v_t0, lj.v_iv), bj_cg_i64c(cg, M)), lr.v_iv);
    LLVMValueRef v_yp = LLVMBuildGEP2(b, cg->i32, cg->v_y, &v_i, 1, "");
    LLVMValueRef v_old = LLVMBuildSelect(b, v_first, bj_cg_i32c(cg, 0), bj_cg_load(cg, cg->i32, v_yp), "");
    LLVMValueRef v_oi = bj_cg_add(cg, bj_cg_mul(cg, bj_cg_sub(cg, lr.v_iv, v_mb), bj_cg_i64c(cg, k->lanes)), lj.v_iv);
    LLVMValueRef v = bj_cg_ld(cg, LLVMBuildGEP2(b, cg->i16, v_out, &v_oi, 1, ""), cg->i16);
    bj_cg_store(cg, bj_cg_add(cg, v_old, LLVMBuildSExt(b, v, cg->i32, "")), v_yp);
    bj_cg_loop_end(cg, &lj);
    bj_cg_loop_end(cg, &lr);
    bj_cg_loop_end(cg, &lg);
}

static void bj_wc_kernel(bj_wc *k, const char *name, LLVMValueRef v_table) {
    bj_cg *cg = k->cg;
    bj_cg_kernel_begin(cg, name);
    LLVMValueRef v_xt = bj_cg_alloca(cg, LLVMArrayType(cg->i16, BJ_WC_KC * k->lanes), "xT");
    LLVMSetAlignment(v_xt, 64);
    LLVMValueRef v_out = bj_cg_alloca(cg, LLVMArrayType(cg->i16, (unsigned)(k->rows * k->lanes)), "out");
    bj_cg_loop lt, lc;
    bj_cg_loop_begin(cg, &lt, bj_cg_i64c(cg, 0), cg->v_T, bj_cg_i64c(cg, k->lanes), "t0");
    LLVMValueRef v_nt = bj_cg_min(cg, bj_cg_sub(cg, cg->v_T, lt.v_iv), bj_cg_i64c(cg, k->lanes));
    bj_cg_loop_begin(cg, &lc, bj_cg_i64c(cg, 0), bj_cg_i64c(cg, k->nchunks), bj_cg_i64c(cg, 1), "c");
    LLVMValueRef v_k0 = bj_cg_mul(cg, lc.v_iv, bj_cg_i64c(cg, BJ_WC_KC));
    LLVMValueRef v_len = bj_cg_min(cg, bj_cg_sub(cg, bj_cg_i64c(cg, cg->d->k), v_k0), bj_cg_i64c(cg, BJ_WC_KC));
    bj_wc_transpose(k, v_xt, lt.v_iv, v_nt, v_k0, v_len);
    bj_wc_call_rows(k, v_table, v_xt, v_out, lt.v_iv, v_nt, lc.v_iv);
    bj_cg_loop_end(cg, &lc);
    bj_cg_loop_end(cg, &lt);
    LLVMBuildRetVoid(cg->b);
}

static bj_status bj_wc_setup(bj_cg *cg, bj_wc *k, bj_error *err) {
    const bj_cg_kdesc *d = cg->d;
    if (!cg->t8) return BJ_FAIL(err, BJ_E_INVALID, "weights-as-code %u x %u: no weights given", d->m, d->k);
    if (d->tile_t & (d->tile_t - 1))
        return BJ_FAIL(err, BJ_E_INVALID, "weights-as-code: tile_t %u is not a power of two", d->tile_t);
    *k = (bj_wc){ .cg = cg, .lanes = d->tile_t, .xs = bj_cg_x_stride(d->k) };
    k->nchunks = (d->k + BJ_WC_KC - 1) / BJ_WC_KC;
    k->rows = d->tile_m;
    k->ngroups = (d->m + k->rows - 1) / k->rows;
    k->vsum = bj_cg_vec(cg->i16, k->lanes);
    LLVMTypeRef ps[] = { cg->ptr, cg->ptr };
    k->fty = LLVMFunctionType(cg->void_t, ps, 2, 0);
    return BJ_OK;
}

/* Before O3: the kernel, calling through a table that is only declared, so O3 optimises the
 * loops without seeing (or spending time on) the slices. */
bj_status bj_cg_gen_wcode(bj_cg *cg, const char *name, bj_error *err) {
    bj_wc k;
    BJ_TRY(bj_wc_setup(cg, &k, err));
    uint64_t n = (uint64_t)k.nchunks * k.ngroups;
    LLVMValueRef v_table = LLVMAddGlobal(cg->mod, LLVMArrayType(cg->ptr, (unsigned)n), BJ_WC_TABLE);
    LLVMSetGlobalConstant(v_table, 1);
    bj_wc_kernel(&k, name, v_table);
    return BJ_OK;
}

/* After O3: one function per distinct slice, and the table, now defined and internal. */
bj_status bj_cg_gen_wcode_late(bj_cg *cg, bj_error *err) {
    bj_wc k;
    BJ_TRY(bj_wc_setup(cg, &k, err));
    uint64_t n = (uint64_t)k.nchunks * k.ngroups;
    LLVMValueRef *fns = malloc(n * sizeof *fns);
    if (!fns) return BJ_FAIL(err, BJ_E_NOMEM, "weights-as-code: %llu slice functions", (unsigned long long)n);
    bj_status s = bj_wc_slices(&k, fns, err);
    if (s == BJ_OK) {
        LLVMValueRef v_table = LLVMGetNamedGlobal(cg->mod, BJ_WC_TABLE);
        BJ_ASSERT(v_table);
        LLVMSetInitializer(v_table, LLVMConstArray(cg->ptr, fns, (unsigned)n));
        LLVMSetLinkage(v_table, LLVMInternalLinkage);
    }
    free(fns);
    return s;
}
