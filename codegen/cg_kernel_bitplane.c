/* codegen/cg_kernel_bitplane.c -- generator of the bit-plane ternary matmul (variant BITPLANE).
 *
 * Each row keeps, per group of 64 weights, a non-zero mask and a sign mask (layout in
 * codegen.h). From them, pos = nz & ~sign and neg = nz & sign select the activations to add
 * and to subtract: acc = select(pos, acc + x, acc); acc = select(neg, acc - x, acc). There is
 * no multiply, and a zero weight is a clear bit: it costs nothing in the arithmetic. With
 * AVX-512BW the masks are bitcast straight into <64 x i1> (k registers, masked vpaddw /
 * vpsubw); elsewhere each mask bit is spread to a byte (shuffle, and with the bit, compare)
 * and the select becomes a blend.
 *
 * Accumulation is in i16 lanes of the sign-extended activations: a lane gains at most 128
 * per group, so chunks of 128 groups (8192 k) cannot overflow; each chunk is then widened
 * and reduced into an i32 per (row, token). Loop nest: row tiles of tile_m > token tiles of
 * tile_t > chunks > groups (unroll per iteration), with one-row and one-token remainders. */
#include "codegen/cg_llvm.h"

#define BJ_BP_CHUNK 128 /* groups of 64 k per i16 accumulation chunk: 128 * 128 < 32768 */

typedef struct bj_bp {
    bj_cg *cg;
    int64_t xs, groups, row_bytes;
    bool kmask;                /* AVX-512BW: i64 -> <64 x i1> directly */
    LLVMTypeRef v64i8, v64i16, v64i1;
} bj_bp;

typedef struct bj_bp_tile {
    unsigned nr, nt;
    LLVMValueRef v_m, v_t;
    LLVMValueRef acc16[16][8], acc32[16][8]; /* allocas per (row, token) */
} bj_bp_tile;

/* Mask bits (i64, bit i = lane i) as <64 x i1>. */
static LLVMValueRef bj_bp_mask(bj_bp *k, LLVMValueRef v_bits) {
    bj_cg *cg = k->cg;
    if (k->kmask) return LLVMBuildBitCast(cg->b, v_bits, k->v64i1, "");
    LLVMValueRef v_b8 = LLVMBuildBitCast(cg->b, v_bits, bj_cg_vec(cg->i8, 8), "");
    int64_t idx[64], bit[64];
    for (int i = 0; i < 64; i++) { idx[i] = i / 8; bit[i] = (int8_t)(1u << (i % 8)); }
    LLVMValueRef v = LLVMBuildShuffleVector(cg->b, v_b8, LLVMGetUndef(bj_cg_vec(cg->i8, 8)),
                                            bj_cg_const_vec(cg, cg->i32, idx, 64), "");
    v = LLVMBuildAnd(cg->b, v, bj_cg_const_vec(cg, cg->i8, bit, 64), "");
    return LLVMBuildICmp(cg->b, LLVMIntNE, v, LLVMConstNull(k->v64i8), "");
}

static LLVMValueRef bj_bp_x16(bj_bp *k, bj_bp_tile *tl, unsigned j, LLVMValueRef v_g) {
    bj_cg *cg = k->cg;
    LLVMValueRef v_tok = bj_cg_add(cg, tl->v_t, bj_cg_i64c(cg, j));
    LLVMValueRef v_off = bj_cg_add(cg, bj_cg_mul(cg, v_tok, bj_cg_i64c(cg, k->xs)), bj_cg_mul(cg, v_g, bj_cg_i64c(cg, 64)));
    return LLVMBuildSExt(cg->b, bj_cg_load(cg, k->v64i8, bj_cg_gep(cg, cg->v_x, v_off)), k->v64i16, "");
}

/* a + x as llvm.vp.add (all lanes): InstCombine would turn select(m, a + x, a) into
 * a + select(m, x, 0), which x86 selects as a zeroing move plus an add instead of one
 * merge-masked vpaddw; the vector-predicated form reaches instruction selection intact. */
static LLVMValueRef bj_bp_add_opaque(bj_bp *k, LLVMValueRef a, LLVMValueRef x) {
    bj_cg *cg = k->cg;
    LLVMTypeRef ty = LLVMTypeOf(a);
    LLVMValueRef args[] = { a, x, LLVMConstAllOnes(k->v64i1), bj_cg_i32c(cg, 64) };
    return bj_cg_intrinsic(cg, "llvm.vp.add", &ty, 1, args, 4);
}

/* One group of 64 k for every (row, token) of the tile. */
static void bj_bp_group(bj_bp *k, bj_bp_tile *tl, LLVMValueRef v_g) {
    bj_cg *cg = k->cg;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef x16[8];
    for (unsigned j = 0; j < tl->nt; j++) x16[j] = bj_bp_x16(k, tl, j, v_g);
    for (unsigned r = 0; r < tl->nr; r++) {
        LLVMValueRef v_row = bj_cg_mul(cg, bj_cg_add(cg, tl->v_m, bj_cg_i64c(cg, r)), bj_cg_i64c(cg, k->row_bytes));
        LLVMValueRef v_p = bj_cg_gep(cg, bj_cg_gep(cg, cg->v_w, v_row), bj_cg_mul(cg, v_g, bj_cg_i64c(cg, 16)));
        LLVMValueRef v_nz = bj_cg_load(cg, cg->i64, v_p), v_sg = bj_cg_load(cg, cg->i64, bj_cg_gepc(cg, v_p, 8));
        LLVMValueRef v_pos = bj_bp_mask(k, LLVMBuildAnd(b, v_nz, LLVMBuildNot(b, v_sg, ""), ""));
        LLVMValueRef v_neg = bj_bp_mask(k, LLVMBuildAnd(b, v_nz, v_sg, ""));
        for (unsigned j = 0; j < tl->nt; j++) {
            LLVMValueRef v_a = bj_cg_ld(cg, tl->acc16[r][j], k->v64i16);
            v_a = LLVMBuildSelect(b, v_pos, bj_bp_add_opaque(k, v_a, x16[j]), v_a, "");
            v_a = LLVMBuildSelect(b, v_neg, bj_cg_sub(cg, v_a, x16[j]), v_a, "");
            bj_cg_st(cg, v_a, tl->acc16[r][j]);
        }
    }
}

/* Groups [g0, g1) with unroll groups per iteration, then a one-group remainder loop. */
static void bj_bp_groups(bj_bp *k, bj_bp_tile *tl, int64_t g0, int64_t g1) {
    bj_cg *cg = k->cg;
    unsigned unroll = cg->d->unroll;
    bj_cg_loop l, r;
    bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, g0), bj_cg_i64c(cg, g1 - unroll + 1), bj_cg_i64c(cg, unroll), "g");
    for (unsigned u = 0; u < unroll; u++) bj_bp_group(k, tl, bj_cg_add(cg, l.v_iv, bj_cg_i64c(cg, u)));
    bj_cg_loop_end(cg, &l);
    if ((g1 - g0) % unroll) {
        bj_cg_loop_begin(cg, &r, bj_cg_loop_final(cg, &l), bj_cg_i64c(cg, g1), bj_cg_i64c(cg, 1), "gr");
        bj_bp_group(k, tl, r.v_iv);
        bj_cg_loop_end(cg, &r);
    }
}

static void bj_bp_tile_emit(bj_bp *k, LLVMValueRef v_m, unsigned nr, LLVMValueRef v_t, unsigned nt) {
    bj_cg *cg = k->cg;
    bj_bp_tile tl = { .nr = nr, .nt = nt, .v_m = v_m, .v_t = v_t };
    LLVMTypeRef v64i32 = bj_cg_vec(cg->i32, 64);
    for (unsigned r = 0; r < nr; r++)
        for (unsigned j = 0; j < nt; j++) {
            tl.acc16[r][j] = bj_cg_alloca(cg, k->v64i16, "acc16");
            tl.acc32[r][j] = bj_cg_alloca_zero(cg, cg->i32, "acc32");
        }
    for (int64_t g0 = 0; g0 < k->groups; g0 += BJ_BP_CHUNK) {
        int64_t g1 = g0 + BJ_BP_CHUNK < k->groups ? g0 + BJ_BP_CHUNK : k->groups;
        for (unsigned r = 0; r < nr; r++)
            for (unsigned j = 0; j < nt; j++) bj_cg_st(cg, LLVMConstNull(k->v64i16), tl.acc16[r][j]);
        bj_bp_groups(k, &tl, g0, g1);
        for (unsigned r = 0; r < nr; r++)
            for (unsigned j = 0; j < nt; j++) {
                LLVMValueRef v = LLVMBuildSExt(cg->b, bj_cg_ld(cg, tl.acc16[r][j], k->v64i16), v64i32, "");
                bj_cg_st(cg, bj_cg_add(cg, bj_cg_ld(cg, tl.acc32[r][j], cg->i32), bj_cg_reduce_add(cg, v)), tl.acc32[r][j]);
            }
    }
    for (unsigned j = 0; j < nt; j++)
        for (unsigned r = 0; r < nr; r++) {
            LLVMValueRef v_tok = bj_cg_add(cg, v_t, bj_cg_i64c(cg, j));
            LLVMValueRef v_i = bj_cg_add(cg, bj_cg_mul(cg, v_tok, bj_cg_i64c(cg, cg->d->m)), bj_cg_add(cg, v_m, bj_cg_i64c(cg, r)));
            bj_cg_store(cg, bj_cg_ld(cg, tl.acc32[r][j], cg->i32), LLVMBuildGEP2(cg->b, cg->i32, cg->v_y, &v_i, 1, ""));
        }
}

static void bj_bp_tokens(bj_bp *k, LLVMValueRef v_m, unsigned nr) {
    bj_cg *cg = k->cg;
    unsigned tt = cg->d->tile_t;
    bj_cg_loop l, r;
    bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), bj_cg_sub(cg, cg->v_T, bj_cg_i64c(cg, tt - 1)), bj_cg_i64c(cg, tt), "t");
    bj_bp_tile_emit(k, v_m, nr, l.v_iv, tt);
    bj_cg_loop_end(cg, &l);
    if (tt > 1) {
        bj_cg_loop_begin(cg, &r, bj_cg_loop_final(cg, &l), cg->v_T, bj_cg_i64c(cg, 1), "tr");
        bj_bp_tile_emit(k, v_m, nr, r.v_iv, 1);
        bj_cg_loop_end(cg, &r);
    }
}

bj_status bj_cg_gen_bitplane(bj_cg *cg, const char *name, bj_error *err) {
    const bj_cg_kdesc *d = cg->d;
    if (d->tile_t > 8) return BJ_FAIL(err, BJ_E_INVALID, "bitplane: tile_t %u (at most 8)", d->tile_t);
    bj_bp k = { .cg = cg, .xs = bj_cg_x_stride(d->k) };
    k.groups = k.xs / 64;
    k.row_bytes = k.xs / 4;
    k.kmask = d->isa == BJ_CG_ISA_AVX512 || d->isa == BJ_CG_ISA_AVX512VNNI;
    k.v64i8 = bj_cg_vec(cg->i8, 64);
    k.v64i16 = bj_cg_vec(cg->i16, 64);
    k.v64i1 = bj_cg_vec(cg->i1, 64);
    bj_cg_kernel_begin(cg, name);
    unsigned tm = d->tile_m;
    bj_cg_loop l, r;
    bj_cg_loop_begin(cg, &l, cg->v_m0, bj_cg_sub(cg, cg->v_m1, bj_cg_i64c(cg, tm - 1)), bj_cg_i64c(cg, tm), "m");
    bj_bp_tokens(&k, l.v_iv, tm);
    bj_cg_loop_end(cg, &l);
    if (tm > 1) {
        bj_cg_loop_begin(cg, &r, bj_cg_loop_final(cg, &l), cg->v_m1, bj_cg_i64c(cg, 1), "mr");
        bj_bp_tokens(&k, r.v_iv, 1);
        bj_cg_loop_end(cg, &r);
    }
    LLVMBuildRetVoid(cg->b);
    return BJ_OK;
}
