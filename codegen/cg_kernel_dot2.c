/* codegen/cg_kernel_dot2.c -- generator of the 2-bit-code ternary matmul (variant DOT2) and,
 * with 1-bit codes in the same loop nest, of the binary matmul (variant BIN1), and with five
 * base-3 codes a byte, of the 1.6-bit ternary matmul (variant TRIT5).
 *
 * Weights are codes c = w + 1 in {0,1,2}, row-interleaved (layout in codegen.h): one 64-byte
 * group holds 16 rows x 16 k. Shifting the group by 2s and masking with 3 leaves, in 32-bit
 * lane r, row r's codes for k = 16g+4s .. +3, so one unsigned x signed byte dot product
 * against the broadcast x[16g+4s .. +3] adds 4 MACs to every row's lane, and the 16 rows'
 * sums come out as one vector: no horizontal reductions. sum(c*x) - sum(x) = sum(w*x), with
 * sum(x) computed once per token per call. The dot product is vpdpbusd (zmm or ymm) where
 * VNNI exists, pmaddubsw on AVX2/AVX-512BW, and widening multiplies in plain vector IR for
 * generic x86-64. The pmaddubsw paths add the i16 products into i16 accumulators for
 * BJ_DOT2_WIDE k-groups (exact: see there) and only then widen them with one pmaddwd into
 * the i32 accumulators: one pmaddubsw + one add per 32 MACs, where widening every group
 * took 4 + 3 + pmaddwd + add per 128 (~30% faster prefill on Zen 3).
 *
 * Loop nest: token chunks of 64 (their sums on the stack) > row tiles of tile_m blocks >
 * token tiles of tile_t > (pmaddubsw paths: super-groups of BJ_DOT2_WIDE k-groups >)
 * k-groups (unroll per iteration), with remainder tiles of one block and, for tokens, of
 * the powers of two below tile_t, then one token.
 * Accumulators: tile_m * (64 / vector bytes) * tokens (the pmaddubsw paths: that many in i16
 * and in i32), times a split (VNNI only: vpdpbusd's latency is on its accumulator) that
 * keeps about eight chains in flight.
 * A tile whose rows all lie in [m0, m1) stores its vectors straight to y; an edge tile goes
 * through a stack buffer and copies only its rows in range.
 *
 * BIN1 (binary weights, layout in codegen.h) is the same kernel with 1-bit codes: a 64-byte
 * group holds 16 rows x 32 k, bit s of byte 4r + i is row r's sign bit at k = 32g + 4s + i, so
 * eight shift-and-mask slots (instead of four) each meet one broadcast x[32g+4s .. +3]. The
 * codes c = bit in {0,1} sum the activations where the weight is +1, and with w = 2c - 1,
 * sum(w*x) = 2 * sum(c*x) - sum(x): the last step replaces DOT2's subtraction; there is no
 * zero test and no multiply by a sign. Exactness as above: a pmaddubsw i16 slot gains at
 * most 2 * 128 per code slot, eight slots sum to <= 2048 (the same BJ_DOT2_WIDE bound).
 *
 * TRIT5 (layout in codegen.h) is DOT2 with five slots a byte (k-groups of 20) whose codes are
 * base-3 digits: each slot after the first multiplies the byte vector by 3 (two byte adds),
 * and the digit is two compares (bj_dot2_codes). That is 6-7 vector operations a slot where
 * DOT2 spends 2, for 20% fewer weight bytes: a kernel for CPUs with more vector throughput
 * than memory bandwidth per core, chosen by the autotuner or --kernel. A K that is not a
 * multiple of 20 ends in a short group of ceil((K % 20) / 4) slots, so that x is never read
 * past K rounded up to 4. */
#include "codegen/cg_llvm.h"

#include <string.h>

#define BJ_DOT2_TCHUNK 64 /* tokens whose activation sums one chunk keeps on the stack */
/* k-groups an i16 accumulator takes before it is widened. A pmaddubsw lane is c0*x0 + c1*x1
 * with codes c in {0,1,2} (BIN1: {0,1}) and x in [-128, 127], so a k-group adds at most
 * 4 slots * 2 * 2 * 128 = 2048 in magnitude (BIN1: 8 slots * 2 * 1 * 128, the same), and
 * precisely lies in [-2048, 2032]: 16 groups stay in [-32768, 32512], exact in i16. */
#define BJ_DOT2_WIDE 16
/* TRIT5: five slots a group, 5 * 2 * 2 * 128 = 2560 a group, so 12 groups (30720) fit i16. */
#define BJ_TRIT5_WIDE 12

typedef struct bj_dot2 {
    bj_cg *cg;
    bool i16;                 /* pmaddubsw paths: products summed in i16 over `wide` k-groups */
    unsigned vb, lanes, nh;   /* vector bytes, i32 lanes (rows) per vector, vectors per block */
    unsigned bits, slots;     /* code width (2 DOT2, 1 BIN1) and codes per byte (4 or 8; TRIT5 5) */
    bool trit;                /* TRIT5: base-3 codes (layout in codegen.h) */
    unsigned tail_slots;      /* TRIT5: slots of a last, short k-group after `groups` full ones */
    int64_t wide;             /* i16 paths: k-groups summed in i16 before widening */
    unsigned acc_lanes;       /* lanes, or 2 * lanes where the accumulator keeps byte pairs */
    int64_t groups, blk_bytes; /* k-groups (of 4 * slots k) per row block, bytes per row block */
    LLVMTypeRef vbytes, vacc;  /* <vb x i8>, <acc_lanes x i32> */
    LLVMTypeRef v16;           /* <vb / 2 x i16> */
    LLVMValueRef v_sums, v_tc, v_nt, v_tilebuf; /* tilebuf: [8 tokens][4 blocks * 16 rows] i32 */
} bj_dot2;

/* One tile: nb row blocks starting at v_rb, nt tokens starting at v_t (chunk-relative). */
typedef struct bj_dot2_tile {
    unsigned nb, nt, split;
    LLVMValueRef v_rb, v_t;
    LLVMValueRef acc[4][4][8][4]; /* [block][sub-vector][token][split] allocas */
    LLVMValueRef acc16[4][4][8];  /* i16 paths: [block][sub-vector][token], widened into acc[..][0] */
} bj_dot2_tile;

/* acc += sum over the given slots of codes[s] . x[s] (u8 x s8 in groups of 4 bytes). */
static LLVMValueRef bj_dot2_vnni(bj_dot2 *k, LLVMValueRef v_acc, LLVMValueRef *codes,
                                 LLVMValueRef *xs, unsigned n) {
    const char *name = k->vb == 64 ? "llvm.x86.avx512.vpdpbusd.512" : "llvm.x86.avx512.vpdpbusd.256";
    for (unsigned i = 0; i < n; i++) {
        LLVMValueRef a[] = { v_acc, codes[i], xs[i] };
        v_acc = LLVMBuildBitCast(k->cg->b, bj_cg_intrinsic(k->cg, name, NULL, 0, a, 3), k->vacc, "");
    }
    return v_acc;
}

/* Plain vector IR: i16 products summed over the slots, then adjacent i16 pairs widened and
 * added (the pmaddwd shape). The accumulator keeps pairs; bj_dot2_final adds them to rows. */
static LLVMValueRef bj_dot2_generic(bj_dot2 *k, LLVMValueRef v_acc, LLVMValueRef *codes,
                                    LLVMValueRef *xs, unsigned n) {
    bj_cg *cg = k->cg;
    LLVMTypeRef v16 = bj_cg_vec(cg->i16, k->vb);
    LLVMValueRef v_sum = NULL;
    for (unsigned i = 0; i < n; i++) {
        LLVMValueRef v = bj_cg_mul(cg, LLVMBuildZExt(cg->b, codes[i], v16, ""),
                                   LLVMBuildSExt(cg->b, xs[i], v16, ""));
        v_sum = v_sum ? bj_cg_add(cg, v_sum, v) : v;
    }
    for (unsigned q = 0; q < 2; q++) {
        int64_t idx[32];
        for (unsigned p = 0; p < k->vb / 2; p++) idx[p] = 2 * p + q;
        LLVMValueRef v = LLVMBuildShuffleVector(cg->b, v_sum, LLVMGetUndef(v16),
                                                bj_cg_const_vec(cg, cg->i32, idx, k->vb / 2), "");
        v_acc = bj_cg_add(cg, v_acc, LLVMBuildSExt(cg->b, v, k->vacc, ""));
    }
    return v_acc;
}

/* The accumulator as one i32 per row: generic keeps byte pairs, so add them. */
static LLVMValueRef bj_dot2_final(bj_dot2 *k, LLVMValueRef v_acc) {
    bj_cg *cg = k->cg;
    if (k->acc_lanes == k->lanes) return v_acc;
    LLVMValueRef v_sum = NULL;
    for (unsigned q = 0; q < 2; q++) {
        int64_t idx[16];
        for (unsigned p = 0; p < k->lanes; p++) idx[p] = 2 * p + q;
        LLVMValueRef v = LLVMBuildShuffleVector(cg->b, v_acc, LLVMGetUndef(k->vacc),
                                                bj_cg_const_vec(cg, cg->i32, idx, k->lanes), "");
        v_sum = v_sum ? bj_cg_add(cg, v_sum, v) : v;
    }
    return v_sum;
}

/* The paths that accumulate in i32 every group (the pmaddubsw ones: bj_dot2_group16). */
static LLVMValueRef bj_dot2_dot(bj_dot2 *k, LLVMValueRef v_acc, LLVMValueRef *codes,
                                LLVMValueRef *xs, unsigned n) {
    switch ((bj_cg_isa)k->cg->d->isa) {
    case BJ_CG_ISA_AVX512VNNI:
    case BJ_CG_ISA_AVXVNNI: return bj_dot2_vnni(k, v_acc, codes, xs, n);
    default: return bj_dot2_generic(k, v_acc, codes, xs, n);
    }
}

/* x[t][4*slots*g + 4s .. +3] broadcast to every 32-bit lane, as bytes. */
static LLVMValueRef bj_dot2_xbcast(bj_dot2 *k, LLVMValueRef v_xrow, LLVMValueRef v_goff, unsigned s) {
    bj_cg *cg = k->cg;
    LLVMValueRef v_p = bj_cg_gepc(cg, bj_cg_gep(cg, v_xrow, v_goff), 4 * s);
    LLVMValueRef v = bj_cg_splat(cg, bj_cg_load(cg, cg->i32, v_p), k->lanes);
    return LLVMBuildBitCast(cg->b, v, k->vbytes, "");
}

/* Slot s's codes of the weight vector *v_w, slots taken in order 0, 1, ...: a shift and a
 * mask, or for TRIT5 (biased bytes x', codegen.h) *v_w = 3 * *v_w (mod 256) before each slot
 * after the first, then the top base-3 digit 0 - (x' > -43) - (x' > 42) from the compares'
 * all-ones masks (with mask registers: two masked moves of constants). Left to itself,
 * InstCombine folds the chain of byte adds into a multiply by 3^s, which x86 has no byte
 * instruction for (it became two pmaddubsw, an and, a shift and an or a slot, on the dot
 * products' port); an empty asm statement around 2x keeps it two byte adds. */
static LLVMValueRef bj_dot2_codes(bj_dot2 *k, LLVMValueRef *v_w, unsigned s) {
    bj_cg *cg = k->cg;
    LLVMBuilderRef b = cg->b;
    if (k->trit) {
        LLVMValueRef x = *v_w;
        if (s) { /* 2x passes through an empty asm statement, which InstCombine cannot see into */
            LLVMTypeRef fty = LLVMFunctionType(k->vbytes, &k->vbytes, 1, 0);
            const char *cons = k->vb == 64 ? "=v,0" : "=x,0";
            LLVMValueRef opaque = LLVMGetInlineAsm(fty, "", 0, cons, strlen(cons), 0, 0, LLVMInlineAsmDialectATT, 0);
            LLVMValueRef x2 = bj_cg_add(cg, x, x);
            x2 = LLVMBuildCall2(b, fty, opaque, &x2, 1, "");
            *v_w = x = bj_cg_add(cg, x2, x);
        }
        LLVMValueRef c1 = LLVMBuildICmp(b, LLVMIntSGT, x, bj_cg_splat(cg, LLVMConstInt(cg->i8, (uint64_t)-43, 1), k->vb), "");
        LLVMValueRef c2 = LLVMBuildICmp(b, LLVMIntSGT, x, bj_cg_splat(cg, LLVMConstInt(cg->i8, 42, 1), k->vb), "");
        if (k->vb == 64) { /* mask registers: a zero-masked move of ones, then a masked add of one */
            LLVMValueRef one = bj_cg_splat(cg, LLVMConstInt(cg->i8, 1, 0), k->vb);
            LLVMValueRef a = LLVMBuildSelect(b, c1, one, LLVMConstNull(k->vbytes), "");
            return LLVMBuildSelect(b, c2, bj_cg_add(cg, a, one), a, "");
        }
        return bj_cg_sub(cg, bj_cg_sub(cg, LLVMConstNull(k->vbytes), LLVMBuildSExt(b, c1, k->vbytes, "")),
                         LLVMBuildSExt(b, c2, k->vbytes, ""));
    }
    LLVMValueRef v = *v_w;
    if (s) v = LLVMBuildLShr(b, v, bj_cg_splat(cg, LLVMConstInt(cg->i8, k->bits * s, 0), k->vb), "");
    return LLVMBuildAnd(b, v, bj_cg_splat(cg, LLVMConstInt(cg->i8, (1u << k->bits) - 1, 0), k->vb), "");
}

static LLVMValueRef bj_dot2_xrow(bj_dot2 *k, bj_dot2_tile *tl, unsigned j) {
    bj_cg *cg = k->cg;
    LLVMValueRef v_tok = bj_cg_add(cg, bj_cg_add(cg, k->v_tc, tl->v_t), bj_cg_i64c(cg, j));
    return bj_cg_gep(cg, cg->v_x, bj_cg_mul(cg, v_tok, bj_cg_i64c(cg, bj_cg_x_stride(cg->d->k))));
}

/* The 64 bytes of k-group v_g in the tile's 16-row block i, with that block's weight stream
 * prefetched d->prefetch * 256 bytes ahead, one 64-byte line a k-group (llvm.prefetch: read,
 * locality 3, data). Past the block's end it touches the next block's first lines, which the
 * next tile reads. */
static LLVMValueRef bj_dot2_wgroup(bj_dot2 *k, bj_dot2_tile *tl, unsigned i, LLVMValueRef v_g) {
    bj_cg *cg = k->cg;
    LLVMValueRef v_blk = bj_cg_mul(cg, bj_cg_add(cg, tl->v_rb, bj_cg_i64c(cg, i)), bj_cg_i64c(cg, k->blk_bytes));
    LLVMValueRef v_wg = bj_cg_gep(cg, bj_cg_gep(cg, cg->v_w, v_blk), bj_cg_mul(cg, v_g, bj_cg_i64c(cg, 64)));
    if (cg->d->prefetch) {
        LLVMTypeRef pty = LLVMTypeOf(v_wg);
        LLVMValueRef a[] = { bj_cg_gepc(cg, v_wg, 256 * (int64_t)cg->d->prefetch), LLVMConstInt(cg->i32, 0, 0),
                             LLVMConstInt(cg->i32, 3, 0), LLVMConstInt(cg->i32, 1, 0) };
        bj_cg_intrinsic(cg, "llvm.prefetch", &pty, 1, a, 4);
    }
    return v_wg;
}

/* One k-group (4 * slots k values: 16 for DOT2, 32 for BIN1, 20 for TRIT5) of the tile, its
 * first ns slots (fewer only in TRIT5's short last group). */
static void bj_dot2_group(bj_dot2 *k, bj_dot2_tile *tl, LLVMValueRef v_g, unsigned ns) {
    bj_cg *cg = k->cg;
    LLVMValueRef xb[8][8], v_goff = bj_cg_mul(cg, v_g, bj_cg_i64c(cg, 4 * k->slots));
    for (unsigned j = 0; j < tl->nt; j++)
        for (unsigned s = 0; s < ns; s++) xb[j][s] = bj_dot2_xbcast(k, bj_dot2_xrow(k, tl, j), v_goff, s);
    for (unsigned i = 0; i < tl->nb; i++) {
        LLVMValueRef v_wg = bj_dot2_wgroup(k, tl, i, v_g);
        for (unsigned h = 0; h < k->nh; h++) {
            LLVMValueRef v_w = bj_cg_load(cg, k->vbytes, bj_cg_gepc(cg, v_wg, h * k->vb)), codes[8];
            for (unsigned s = 0; s < ns; s++) codes[s] = bj_dot2_codes(k, &v_w, s);
            for (unsigned j = 0; j < tl->nt; j++)
                for (unsigned p = 0; p < tl->split; p++) {
                    LLVMValueRef cs[8], xs[8];
                    unsigned n = 0;
                    for (unsigned s = p; s < ns; s += tl->split) { cs[n] = codes[s]; xs[n++] = xb[j][s]; }
                    LLVMValueRef v_a = tl->acc[i][h][j][p];
                    bj_cg_st(cg, bj_dot2_dot(k, bj_cg_ld(cg, v_a, k->vacc), cs, xs, n), v_a);
                }
        }
    }
}

/* i16 paths: one k-group of the tile, products added to the i16 accumulators (one
 * pmaddubsw and one add per 32 MACs; the widening pmaddwd comes once per `wide` groups, in
 * bj_dot2_widen). Emitted slot by slot, token by token, so that only the tile's codes of one
 * slot and one broadcast need to be live beside the accumulators. O3 reassociates the adds
 * pairwise (a few spills at tiles 1/4/1 on AVX2); llvm.sadd.sat, which it leaves in order and
 * which is exact here too, measured ~10% slower on Zen 3, and splitting a tile's two ymm
 * halves into separate k-loops (so that tile_t 8 fits the registers) did not beat 1/4/1. */
static void bj_dot2_group16(bj_dot2 *k, bj_dot2_tile *tl, LLVMValueRef v_g, unsigned ns) {
    bj_cg *cg = k->cg;
    const char *ubsw = k->vb == 64 ? "llvm.x86.avx512.pmaddubs.w.512" : "llvm.x86.avx2.pmadd.ub.sw";
    LLVMValueRef v_goff = bj_cg_mul(cg, v_g, bj_cg_i64c(cg, 4 * k->slots)), v_w[4][4], v_xrow[8];
    for (unsigned i = 0; i < tl->nb; i++) {
        LLVMValueRef v_wg = bj_dot2_wgroup(k, tl, i, v_g);
        for (unsigned h = 0; h < k->nh; h++) v_w[i][h] = bj_cg_load(cg, k->vbytes, bj_cg_gepc(cg, v_wg, h * k->vb));
    }
    for (unsigned j = 0; j < tl->nt; j++) v_xrow[j] = bj_dot2_xrow(k, tl, j);
    for (unsigned s = 0; s < ns; s++) {
        LLVMValueRef codes[4][4];
        for (unsigned i = 0; i < tl->nb; i++)
            for (unsigned h = 0; h < k->nh; h++) codes[i][h] = bj_dot2_codes(k, &v_w[i][h], s);
        for (unsigned j = 0; j < tl->nt; j++) {
            LLVMValueRef v_xb = bj_dot2_xbcast(k, v_xrow[j], v_goff, s);
            for (unsigned i = 0; i < tl->nb; i++)
                for (unsigned h = 0; h < k->nh; h++) {
                    LLVMValueRef a[] = { codes[i][h], v_xb }, v_a = tl->acc16[i][h][j];
                    LLVMValueRef v = LLVMBuildBitCast(cg->b, bj_cg_intrinsic(cg, ubsw, NULL, 0, a, 2), k->v16, "");
                    bj_cg_st(cg, bj_cg_add(cg, bj_cg_ld(cg, v_a, k->v16), v), v_a);
                }
        }
    }
}

/* i16 paths: acc += adjacent i16 pairs of acc16 (pmaddwd by 1: the pair of lane r is row r's
 * four bytes), acc16 = 0. */
static void bj_dot2_widen(bj_dot2 *k, bj_dot2_tile *tl) {
    bj_cg *cg = k->cg;
    const char *wd = k->vb == 64 ? "llvm.x86.avx512.pmaddw.d.512" : "llvm.x86.avx2.pmadd.wd";
    for (unsigned i = 0; i < tl->nb; i++)
        for (unsigned h = 0; h < k->nh; h++)
            for (unsigned j = 0; j < tl->nt; j++) {
                LLVMValueRef a[] = { bj_cg_ld(cg, tl->acc16[i][h][j], k->v16),
                                     bj_cg_splat(cg, LLVMConstInt(cg->i16, 1, 0), k->vb / 2) };
                LLVMValueRef v = LLVMBuildBitCast(cg->b, bj_cg_intrinsic(cg, wd, NULL, 0, a, 2), k->vacc, "");
                bj_cg_st(cg, bj_cg_add(cg, bj_cg_ld(cg, tl->acc[i][h][j][0], k->vacc), v), tl->acc[i][h][j][0]);
                bj_cg_st(cg, LLVMConstNull(k->v16), tl->acc16[i][h][j]);
            }
}

/* k-groups [v_g0, v_g0 + n) of the tile (n a constant > 0), unroll groups an iteration and a
 * remainder loop. */
static void bj_dot2_kloop(bj_dot2 *k, bj_dot2_tile *tl, LLVMValueRef v_g0, int64_t n) {
    bj_cg *cg = k->cg;
    int64_t unroll = cg->d->unroll;
    void (*group)(bj_dot2 *, bj_dot2_tile *, LLVMValueRef, unsigned) = k->i16 ? bj_dot2_group16 : bj_dot2_group;
    bj_cg_loop l, r;
    bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), bj_cg_i64c(cg, n - unroll + 1), bj_cg_i64c(cg, unroll), "g");
    LLVMValueRef v_g = bj_cg_add(cg, v_g0, l.v_iv);
    for (int64_t u = 0; u < unroll; u++) group(k, tl, bj_cg_add(cg, v_g, bj_cg_i64c(cg, u)), k->slots);
    bj_cg_loop_end(cg, &l);
    if (n % unroll) {
        bj_cg_loop_begin(cg, &r, bj_cg_loop_final(cg, &l), bj_cg_i64c(cg, n), bj_cg_i64c(cg, 1), "gr");
        group(k, tl, bj_cg_add(cg, v_g0, r.v_iv), k->slots);
        bj_cg_loop_end(cg, &r);
    }
}

/* y row of token (chunk-relative) v_tj. */
static LLVMValueRef bj_dot2_yrow(bj_dot2 *k, LLVMValueRef v_tj) {
    bj_cg *cg = k->cg;
    LLVMValueRef v_tok = bj_cg_add(cg, k->v_tc, v_tj);
    return bj_cg_gep(cg, cg->v_y, bj_cg_mul(cg, v_tok, bj_cg_i64c(cg, 4 * (int64_t)cg->d->m)));
}

/* Results of the tile, (rows - token sum; BIN1: 2 * rows - token sum), to y directly (fast)
 * or to the tile buffer. */
static void bj_dot2_tile_put(bj_dot2 *k, bj_dot2_tile *tl, bool direct) {
    bj_cg *cg = k->cg;
    for (unsigned j = 0; j < tl->nt; j++) {
        LLVMValueRef v_tj = bj_cg_add(cg, tl->v_t, bj_cg_i64c(cg, j));
        LLVMValueRef v_sp = LLVMBuildGEP2(cg->b, cg->i32, k->v_sums, &v_tj, 1, "");
        LLVMValueRef v_sum = bj_cg_splat(cg, bj_cg_ld(cg, v_sp, cg->i32), k->lanes);
        LLVMValueRef v_yrow = bj_dot2_yrow(k, v_tj);
        for (unsigned i = 0; i < tl->nb; i++)
            for (unsigned h = 0; h < k->nh; h++) {
                LLVMValueRef v = bj_cg_ld(cg, tl->acc[i][h][j][0], k->vacc);
                for (unsigned p = 1; p < tl->split; p++) v = bj_cg_add(cg, v, bj_cg_ld(cg, tl->acc[i][h][j][p], k->vacc));
                v = bj_dot2_final(k, v);
                if (k->bits == 1) v = bj_cg_add(cg, v, v);
                v = bj_cg_sub(cg, v, v_sum);
                int64_t row = 16 * i + h * k->lanes; /* tile-relative */
                if (direct) {
                    LLVMValueRef v_row = bj_cg_add(cg, bj_cg_mul(cg, tl->v_rb, bj_cg_i64c(cg, 16)), bj_cg_i64c(cg, row));
                    bj_cg_store(cg, v, bj_cg_gep(cg, v_yrow, bj_cg_mul(cg, v_row, bj_cg_i64c(cg, 4))));
                } else {
                    bj_cg_store(cg, v, bj_cg_gepc(cg, k->v_tilebuf, 4 * (64 * j + row)));
                }
            }
    }
}

/* Edge tile: copy rows of the tile buffer inside [m0, m1) to y, token by token. */
static void bj_dot2_tile_copy(bj_dot2 *k, bj_dot2_tile *tl) {
    bj_cg *cg = k->cg;
    LLVMValueRef v_r0 = bj_cg_mul(cg, tl->v_rb, bj_cg_i64c(cg, 16));
    LLVMValueRef v_lo = bj_cg_sub(cg, cg->v_m0, v_r0), v_hi = bj_cg_sub(cg, cg->v_m1, v_r0);
    v_lo = LLVMBuildSelect(cg->b, bj_cg_lt(cg, v_lo, bj_cg_i64c(cg, 0)), bj_cg_i64c(cg, 0), v_lo, "");
    v_hi = bj_cg_min(cg, v_hi, bj_cg_i64c(cg, 16 * tl->nb));
    bj_cg_loop lj, lr;
    bj_cg_loop_begin(cg, &lj, bj_cg_i64c(cg, 0), bj_cg_i64c(cg, tl->nt), bj_cg_i64c(cg, 1), "cj");
    LLVMValueRef v_yrow = bj_dot2_yrow(k, bj_cg_add(cg, tl->v_t, lj.v_iv));
    bj_cg_loop_begin(cg, &lr, v_lo, v_hi, bj_cg_i64c(cg, 1), "cr");
    LLVMValueRef v_src = bj_cg_add(cg, bj_cg_mul(cg, lj.v_iv, bj_cg_i64c(cg, 64)), lr.v_iv);
    LLVMValueRef v = bj_cg_ld(cg, LLVMBuildGEP2(cg->b, cg->i32, k->v_tilebuf, &v_src, 1, ""), cg->i32);
    LLVMValueRef v_dst = bj_cg_add(cg, v_r0, lr.v_iv);
    bj_cg_store(cg, v, LLVMBuildGEP2(cg->b, cg->i32, v_yrow, &v_dst, 1, ""));
    bj_cg_loop_end(cg, &lr);
    bj_cg_loop_end(cg, &lj);
}

/* A tile whose rows all lie in [m0, m1) stores straight to y; an edge tile goes through
 * the stack buffer and a row-range copy. */
static void bj_dot2_tile_store(bj_dot2 *k, bj_dot2_tile *tl) {
    bj_cg *cg = k->cg;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef v_r0 = bj_cg_mul(cg, tl->v_rb, bj_cg_i64c(cg, 16));
    LLVMValueRef v_full = LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntSGE, v_r0, cg->v_m0, ""),
                                       LLVMBuildICmp(b, LLVMIntSLE, bj_cg_add(cg, v_r0, bj_cg_i64c(cg, 16 * tl->nb)),
                                                     cg->v_m1, ""), "");
    LLVMBasicBlockRef b_full = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "full");
    LLVMBasicBlockRef b_edge = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "edge");
    LLVMBasicBlockRef b_done = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "stored");
    LLVMBuildCondBr(b, v_full, b_full, b_edge);
    LLVMPositionBuilderAtEnd(b, b_full);
    bj_dot2_tile_put(k, tl, true);
    LLVMBuildBr(b, b_done);
    LLVMPositionBuilderAtEnd(b, b_edge);
    bj_dot2_tile_put(k, tl, false);
    bj_dot2_tile_copy(k, tl);
    LLVMBuildBr(b, b_done);
    LLVMPositionBuilderAtEnd(b, b_done);
}

/* Emits the whole tile: zero accumulators, the k-group loops, the stores. */
static void bj_dot2_tile_emit(bj_dot2 *k, LLVMValueRef v_rb, unsigned nb, LLVMValueRef v_t, unsigned nt) {
    bj_cg *cg = k->cg;
    unsigned chains = nb * k->nh * nt;
    bj_dot2_tile tl = { .nb = nb, .nt = nt, .v_rb = v_rb, .v_t = v_t };
    /* Only vpdpbusd has the accumulator on its long-latency input; the other paths add the
     * finished products to it with a one-cycle add, so they keep one accumulator. */
    bool vnni = cg->d->isa == BJ_CG_ISA_AVX512VNNI || cg->d->isa == BJ_CG_ISA_AVXVNNI;
    tl.split = !vnni || chains >= 8 ? 1 : chains >= 4 ? 2 : 4;
    for (unsigned i = 0; i < nb; i++)
        for (unsigned h = 0; h < k->nh; h++)
            for (unsigned j = 0; j < nt; j++) {
                for (unsigned p = 0; p < tl.split; p++) tl.acc[i][h][j][p] = bj_cg_alloca_zero(cg, k->vacc, "acc");
                if (k->i16) tl.acc16[i][h][j] = bj_cg_alloca_zero(cg, k->v16, "acc16");
            }
    if (!k->i16) {
        if (k->groups) bj_dot2_kloop(k, &tl, bj_cg_i64c(cg, 0), k->groups);
        if (k->tail_slots) bj_dot2_group(k, &tl, bj_cg_i64c(cg, k->groups), k->tail_slots);
    } else { /* super-groups of `wide` k-groups in i16, each widened once; then the rest */
        int64_t wide = k->wide, full = k->groups / wide;
        if (full) {
            bj_cg_loop l;
            bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), bj_cg_i64c(cg, full * wide), bj_cg_i64c(cg, wide), "sg");
            bj_dot2_kloop(k, &tl, l.v_iv, wide);
            bj_dot2_widen(k, &tl);
            bj_cg_loop_end(cg, &l);
        }
        if (k->groups % wide) {
            bj_dot2_kloop(k, &tl, bj_cg_i64c(cg, full * wide), k->groups % wide);
            bj_dot2_widen(k, &tl);
        }
        if (k->tail_slots) {
            bj_dot2_group16(k, &tl, bj_cg_i64c(cg, k->groups), k->tail_slots);
            bj_dot2_widen(k, &tl);
        }
    }
    bj_dot2_tile_store(k, &tl);
}

/* All token tiles of the chunk for nb row blocks at v_rb. */
static void bj_dot2_tokens(bj_dot2 *k, LLVMValueRef v_rb, unsigned nb) {
    bj_cg *cg = k->cg;
    unsigned tt = cg->d->tile_t;
    bj_cg_loop l, r;
    bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), bj_cg_sub(cg, k->v_nt, bj_cg_i64c(cg, tt - 1)), bj_cg_i64c(cg, tt), "t");
    bj_dot2_tile_emit(k, v_rb, nb, l.v_iv, tt);
    bj_cg_loop_end(cg, &l);
    if (tt > 1) {
        /* The rest (< tt tokens): one tile of each power of two below tt that still fits,
         * largest first, leaves at most one token. A prompt of 37 tokens with tile_t 8 runs
         * 4 x 8 + 4 + 1 instead of 32 + 5 one-token tiles, each of which decodes the weights
         * for a single token. */
        LLVMValueRef v_tp = bj_cg_alloca(cg, cg->i64, "tpos");
        bj_cg_st(cg, bj_cg_loop_final(cg, &l), v_tp);
        unsigned p = 1;
        while (2 * p < tt) p *= 2;
        for (; p >= 2; p /= 2) {
            LLVMValueRef v_t = bj_cg_ld(cg, v_tp, cg->i64);
            LLVMValueRef v_fits = LLVMBuildICmp(cg->b, LLVMIntSLE, bj_cg_add(cg, v_t, bj_cg_i64c(cg, p)), k->v_nt, "");
            LLVMBasicBlockRef b_merge = bj_cg_if_begin(cg, v_fits, "tp");
            bj_dot2_tile_emit(k, v_rb, nb, v_t, p);
            bj_cg_st(cg, bj_cg_add(cg, v_t, bj_cg_i64c(cg, p)), v_tp);
            bj_cg_if_end(cg, b_merge);
        }
        bj_cg_loop_begin(cg, &r, bj_cg_ld(cg, v_tp, cg->i64), k->v_nt, bj_cg_i64c(cg, 1), "tr");
        bj_dot2_tile_emit(k, v_rb, nb, r.v_iv, 1);
        bj_cg_loop_end(cg, &r);
    }
}

static void bj_dot2_chunk(bj_dot2 *k) {
    bj_cg *cg = k->cg;
    LLVMBuilderRef b = cg->b;
    unsigned tm = cg->d->tile_m;
    bj_cg_loop ls;
    bj_cg_loop_begin(cg, &ls, bj_cg_i64c(cg, 0), k->v_nt, bj_cg_i64c(cg, 1), "sum");
    LLVMValueRef v_xrow = bj_cg_gep(cg, cg->v_x, bj_cg_mul(cg, bj_cg_add(cg, k->v_tc, ls.v_iv),
                                                          bj_cg_i64c(cg, bj_cg_x_stride(cg->d->k))));
    LLVMValueRef v_sp = LLVMBuildGEP2(b, cg->i32, k->v_sums, &ls.v_iv, 1, "");
    bj_cg_st(cg, bj_cg_emit_act_sum(cg, v_xrow), v_sp);
    bj_cg_loop_end(cg, &ls);
    LLVMValueRef v_b0 = LLVMBuildSDiv(b, cg->v_m0, bj_cg_i64c(cg, 16), "");
    LLVMValueRef v_b1 = LLVMBuildSDiv(b, bj_cg_add(cg, cg->v_m1, bj_cg_i64c(cg, 15)), bj_cg_i64c(cg, 16), "");
    bj_cg_loop l, r;
    bj_cg_loop_begin(cg, &l, v_b0, bj_cg_sub(cg, v_b1, bj_cg_i64c(cg, tm - 1)), bj_cg_i64c(cg, tm), "rb");
    bj_dot2_tokens(k, l.v_iv, tm);
    bj_cg_loop_end(cg, &l);
    if (tm > 1) {
        bj_cg_loop_begin(cg, &r, bj_cg_loop_final(cg, &l), v_b1, bj_cg_i64c(cg, 1), "rbr");
        bj_dot2_tokens(k, r.v_iv, 1);
        bj_cg_loop_end(cg, &r);
    }
}

bj_status bj_cg_gen_dot2(bj_cg *cg, const char *name, bj_error *err) {
    const bj_cg_kdesc *d = cg->d;
    if (d->tile_m > 4 || d->tile_t > 8)
        return BJ_FAIL(err, BJ_E_INVALID, "%s: tile_m %u (at most 4) tile_t %u (at most 8)",
                       bj_cg_variant_name((bj_cg_variant)d->variant), d->tile_m, d->tile_t);
    bj_dot2 k = { .cg = cg, .vb = bj_cg_isa_vector_bytes((bj_cg_isa)d->isa) };
    k.lanes = k.vb / 4;
    k.nh = 64 / k.vb;
    k.bits = d->variant == BJ_CG_V_BIN1 ? 1 : 2;
    k.trit = d->variant == BJ_CG_V_TRIT5;
    k.slots = k.trit ? 5 : 8 / k.bits;
    k.wide = k.trit ? BJ_TRIT5_WIDE : BJ_DOT2_WIDE;
    if (k.trit) { /* full groups, then the k left (K % 20, rounded up to 4) as a short group */
        k.groups = d->k / 20;
        k.tail_slots = (d->k % 20 + 3) / 4;
        k.blk_bytes = bj_cg_trit5_groups(d->k) * 64;
    } else {
        k.groups = bj_cg_x_stride(d->k) / (4 * k.slots);
        k.blk_bytes = k.groups * 64;
    }
    k.vbytes = bj_cg_vec(cg->i8, k.vb);
    k.acc_lanes = d->isa == BJ_CG_ISA_GENERIC ? 2 * k.lanes : k.lanes;
    k.vacc = bj_cg_vec(cg->i32, k.acc_lanes);
    k.v16 = bj_cg_vec(cg->i16, k.vb / 2);
    k.i16 = d->isa == BJ_CG_ISA_AVX2 || d->isa == BJ_CG_ISA_AVX512;
    bj_cg_kernel_begin(cg, name);
    k.v_sums = bj_cg_alloca(cg, LLVMArrayType(cg->i32, BJ_DOT2_TCHUNK), "sums");
    k.v_tilebuf = bj_cg_alloca(cg, LLVMArrayType(cg->i32, 8 * 64), "tilebuf");
    bj_cg_loop l;
    bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), cg->v_T, bj_cg_i64c(cg, BJ_DOT2_TCHUNK), "tc");
    k.v_tc = l.v_iv;
    k.v_nt = bj_cg_min(cg, bj_cg_sub(cg, cg->v_T, l.v_iv), bj_cg_i64c(cg, BJ_DOT2_TCHUNK));
    bj_dot2_chunk(&k);
    bj_cg_loop_end(cg, &l);
    LLVMBuildRetVoid(cg->b);
    return BJ_OK;
}
