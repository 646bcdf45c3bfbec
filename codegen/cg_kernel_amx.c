/* codegen/cg_kernel_amx.c -- generator of DOT2's prefill kernel on AMX-INT8 tiles (path AMX):
 * the same contract and the same packed weights (DOT2 layout, codegen.h), for CPUs with
 * AMX-TILE and AMX-INT8 (Sapphire Rapids and later).
 *
 * A tile register holds 16 rows of 64 bytes. tdpbssd C += A . B takes A as 16 tokens x 64
 * int8 activations (k = 64c .. 64c+63 of chunk c: one tileloadd straight from x, stride XS)
 * and B in the VNNI layout, B[j][4r + i] = W[row r][64c + 4j + i] (16 rows of 4 consecutive
 * k for 16 weight rows), and adds C[token][row] in int32. A DOT2 k-group's byte 4r + i holds,
 * at bits 2s, the code of row r at k = 16g + 4s + i, so (group >> 2s) & 3, minus 1, is B's
 * row j = 4(g - 4c) + s as signed weights: three byte operations per 64 bytes decode a chunk's
 * four groups into one B tile (1 KiB).
 *
 * Loop nest: row groups of tile_m 16-row blocks > k panels of at most `unroll` chunks (as
 * many as that needs, of equal size but the last), whose B tiles are decoded once into a
 * stack buffer (tile_m x unroll KiB at most) > token groups of tile_t (16 or 32) tokens >
 * the panel's chunks: tile_t / 16 A tiles and tile_m B tiles loaded, tile_m x tile_t / 16
 * tdpbssd (2 x 2 fills the 8 tile registers). C starts at zero in
 * the first panel and is read back from y in the others; each panel stores it to y. With
 * prefetch p, each chunk prefetches the rows of its A and B tiles p chunks ahead (in the
 * panel: x rows and the decoded buffer).
 * Only whole 16-token tiles of whole 16-row blocks inside [m0, m1) run on tiles. The rows at
 * the edges of [m0, m1) and the last T % 16 tokens go to DOT2's AVX-512 VNNI kernel
 * (bj_cg_kdesc_amx_edges), generated into the same module as an internal function. Every sum
 * is exact in int32, so the split changes no bit.
 * LLVM writes the tile configuration (ldtilecfg, from the constant shapes) and tilerelease;
 * tile values cross blocks as <256 x i32> through the casts clang uses for __tile1024i, and
 * live in entry-block allocas like every other accumulator here (SROA makes them phis). */
#include "codegen/cg_llvm.h"

#include <stdio.h>

typedef struct bj_amx {
    bj_cg *cg;
    LLVMTypeRef v256, vbytes;  /* <256 x i32> (a tile as a value), <64 x i8> */
    int64_t xs, chunks;        /* x stride, 64-k chunks */
    LLVMValueRef v_bbuf;       /* decoded B tiles of a panel: [block][chunk] x 1 KiB */
    LLVMValueRef acc[2][2];    /* [block][token tile] allocas of <256 x i32> */
} bj_amx;

static LLVMValueRef amx_i16(bj_cg *cg, int v) { return LLVMConstInt(cg->i16, (unsigned long long)v, 0); }

static LLVMValueRef amx_to_vec(bj_amx *a, LLVMValueRef v_tile) {
    return bj_cg_intrinsic(a->cg, "llvm.x86.cast.tile.to.vector", &a->v256, 1, &v_tile, 1);
}
static LLVMValueRef amx_to_tile(bj_amx *a, LLVMValueRef v_vec) {
    return bj_cg_intrinsic(a->cg, "llvm.x86.cast.vector.to.tile", &a->v256, 1, &v_vec, 1);
}
/* 16 rows of 64 bytes at p, rows stride bytes apart, as a <256 x i32> value. */
static LLVMValueRef amx_load(bj_amx *a, LLVMValueRef v_p, int64_t stride) {
    bj_cg *cg = a->cg;
    LLVMValueRef args[] = { amx_i16(cg, 16), amx_i16(cg, 64), v_p, bj_cg_i64c(cg, stride) };
    return amx_to_vec(a, bj_cg_intrinsic(cg, "llvm.x86.tileloadd64.internal", NULL, 0, args, 4));
}
static void amx_store(bj_amx *a, LLVMValueRef v_p, int64_t stride, LLVMValueRef v_vec) {
    bj_cg *cg = a->cg;
    LLVMValueRef args[] = { amx_i16(cg, 16), amx_i16(cg, 64), v_p, bj_cg_i64c(cg, stride), amx_to_tile(a, v_vec) };
    bj_cg_intrinsic(cg, "llvm.x86.tilestored64.internal", NULL, 0, args, 5);
}
static LLVMValueRef amx_zero(bj_amx *a) {
    LLVMValueRef args[] = { amx_i16(a->cg, 16), amx_i16(a->cg, 64) };
    return amx_to_vec(a, bj_cg_intrinsic(a->cg, "llvm.x86.tilezero.internal", NULL, 0, args, 2));
}
/* c + a . b (signed bytes), all 16 x 64-byte tiles. */
static LLVMValueRef amx_dp(bj_amx *a, LLVMValueRef v_c, LLVMValueRef v_a, LLVMValueRef v_b) {
    bj_cg *cg = a->cg;
    LLVMValueRef args[] = { amx_i16(cg, 16), amx_i16(cg, 64), amx_i16(cg, 64),
                            amx_to_tile(a, v_c), amx_to_tile(a, v_a), amx_to_tile(a, v_b) };
    return amx_to_vec(a, bj_cg_intrinsic(cg, "llvm.x86.tdpbssd.internal", NULL, 0, args, 6));
}

/* x's row of token v_tok. */
static LLVMValueRef amx_xrow(bj_amx *a, LLVMValueRef v_tok) {
    return bj_cg_gep(a->cg, a->cg->v_x, bj_cg_mul(a->cg, v_tok, bj_cg_i64c(a->cg, a->xs)));
}

static void amx_prefetch(bj_cg *cg, LLVMValueRef v_p) { /* llvm.prefetch: read, locality 3, data */
    LLVMTypeRef pty = LLVMTypeOf(v_p);
    LLVMValueRef a[] = { v_p, LLVMConstInt(cg->i32, 0, 0), LLVMConstInt(cg->i32, 3, 0), LLVMConstInt(cg->i32, 1, 0) };
    bj_cg_intrinsic(cg, "llvm.prefetch", &pty, 1, a, 4);
}

/* Decodes chunks [c0, c0 + kp) of nb blocks from v_rb into the B buffer: tile (i, c) at
 * (i * kp + c) KiB, its row 4q + s = (group 4(c0 + c) + q >> 2s) & 3, minus 1. */
static void amx_decode(bj_amx *a, LLVMValueRef v_rb, unsigned nb, LLVMValueRef v_c0, int64_t kp) {
    bj_cg *cg = a->cg;
    bj_cg_loop l;
    bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), bj_cg_i64c(cg, kp), bj_cg_i64c(cg, 1), "dc");
    LLVMValueRef v_chunk = bj_cg_add(cg, v_c0, l.v_iv);
    LLVMValueRef three = bj_cg_splat(cg, LLVMConstInt(cg->i8, 3, 0), 64);
    LLVMValueRef one = bj_cg_splat(cg, LLVMConstInt(cg->i8, 1, 0), 64);
    for (unsigned i = 0; i < nb; i++) {
        LLVMValueRef v_blk = bj_cg_mul(cg, bj_cg_add(cg, v_rb, bj_cg_i64c(cg, i)), bj_cg_i64c(cg, 4 * a->xs));
        LLVMValueRef v_src = bj_cg_gep(cg, bj_cg_gep(cg, cg->v_w, v_blk), bj_cg_mul(cg, v_chunk, bj_cg_i64c(cg, 256)));
        LLVMValueRef v_dst = bj_cg_gep(cg, a->v_bbuf, bj_cg_mul(cg, bj_cg_add(cg, bj_cg_i64c(cg, (int64_t)i * kp), l.v_iv),
                                                                bj_cg_i64c(cg, 1024)));
        for (unsigned q = 0; q < 4; q++) {
            LLVMValueRef v_g = bj_cg_load(cg, a->vbytes, bj_cg_gepc(cg, v_src, 64 * q));
            for (unsigned s = 0; s < 4; s++) {
                LLVMValueRef v = s ? LLVMBuildLShr(cg->b, v_g, bj_cg_splat(cg, LLVMConstInt(cg->i8, 2 * s, 0), 64), "") : v_g;
                v = bj_cg_sub(cg, LLVMBuildAnd(cg->b, v, three, ""), one);
                LLVMSetAlignment(LLVMBuildStore(cg->b, v, bj_cg_gepc(cg, v_dst, 64 * (4 * q + s))), 64);
            }
        }
    }
    bj_cg_loop_end(cg, &l);
}

/* One register tile: nb blocks at v_rb x na 16-token tiles at token v_t, over the panel's kp
 * chunks from v_c0; C from zero (first panel) or from y, back to y. */
static void amx_tile(bj_amx *a, LLVMValueRef v_rb, unsigned nb, LLVMValueRef v_t, unsigned na, LLVMValueRef v_c0,
                     int64_t kp, bool first) {
    bj_cg *cg = a->cg;
    int64_t ystride = 4 * (int64_t)cg->d->m;
    LLVMValueRef v_y[2][2];
    for (unsigned i = 0; i < nb; i++)
        for (unsigned j = 0; j < na; j++) {
            LLVMValueRef v_tok = bj_cg_add(cg, v_t, bj_cg_i64c(cg, 16 * j));
            LLVMValueRef v_off = bj_cg_add(cg, bj_cg_mul(cg, v_tok, bj_cg_i64c(cg, ystride)),
                                           bj_cg_mul(cg, bj_cg_add(cg, v_rb, bj_cg_i64c(cg, i)), bj_cg_i64c(cg, 64)));
            v_y[i][j] = bj_cg_gep(cg, cg->v_y, v_off);
            bj_cg_st(cg, first ? amx_zero(a) : amx_load(a, v_y[i][j], ystride), a->acc[i][j]);
        }
    bj_cg_loop l;
    bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), bj_cg_i64c(cg, kp), bj_cg_i64c(cg, 1), "kc");
    LLVMValueRef v_a[2], v_b[2];
    LLVMValueRef v_xoff = bj_cg_mul(cg, bj_cg_add(cg, v_c0, l.v_iv), bj_cg_i64c(cg, 64));
    int64_t pf = cg->d->prefetch;
    if (pf) { /* chunk c + pf of the panel, when there is one: its A rows and B tiles */
        LLVMValueRef v_pc = bj_cg_add(cg, l.v_iv, bj_cg_i64c(cg, pf));
        LLVMBasicBlockRef b_pf = bj_cg_if_begin(cg, bj_cg_lt(cg, v_pc, bj_cg_i64c(cg, kp)), "pf");
        LLVMValueRef v_pxoff = bj_cg_mul(cg, bj_cg_add(cg, v_c0, v_pc), bj_cg_i64c(cg, 64));
        for (unsigned j = 0; j < na; j++)
            for (int r = 0; r < 16; r++) {
                LLVMValueRef v_tok = bj_cg_add(cg, v_t, bj_cg_i64c(cg, 16 * j + r));
                amx_prefetch(cg, bj_cg_gep(cg, amx_xrow(a, v_tok), v_pxoff));
            }
        for (unsigned i = 0; i < nb; i++) {
            LLVMValueRef v_bp = bj_cg_gep(cg, a->v_bbuf, bj_cg_mul(cg, bj_cg_add(cg, bj_cg_i64c(cg, (int64_t)i * kp), v_pc),
                                                                   bj_cg_i64c(cg, 1024)));
            for (int r = 0; r < 16; r++) amx_prefetch(cg, bj_cg_gepc(cg, v_bp, 64 * r));
        }
        bj_cg_if_end(cg, b_pf);
    }
    for (unsigned j = 0; j < na; j++) {
        LLVMValueRef v_tok = bj_cg_add(cg, v_t, bj_cg_i64c(cg, 16 * j));
        v_a[j] = amx_load(a, bj_cg_gep(cg, amx_xrow(a, v_tok), v_xoff), a->xs);
    }
    for (unsigned i = 0; i < nb; i++) {
        LLVMValueRef v_boff = bj_cg_mul(cg, bj_cg_add(cg, bj_cg_i64c(cg, (int64_t)i * kp), l.v_iv), bj_cg_i64c(cg, 1024));
        v_b[i] = amx_load(a, bj_cg_gep(cg, a->v_bbuf, v_boff), 64);
    }
    for (unsigned i = 0; i < nb; i++)
        for (unsigned j = 0; j < na; j++)
            bj_cg_st(cg, amx_dp(a, bj_cg_ld(cg, a->acc[i][j], a->v256), v_a[j], v_b[i]), a->acc[i][j]);
    bj_cg_loop_end(cg, &l);
    for (unsigned i = 0; i < nb; i++)
        for (unsigned j = 0; j < na; j++) amx_store(a, v_y[i][j], ystride, bj_cg_ld(cg, a->acc[i][j], a->v256));
}

/* Every token tile of [0, v_T16) for nb blocks at v_rb and one panel: groups of tile_t / 16
 * tiles, then a single tile when one is left. */
static void amx_tokens(bj_amx *a, LLVMValueRef v_T16, LLVMValueRef v_rb, unsigned nb, LLVMValueRef v_c0, int64_t kp,
                       bool first) {
    bj_cg *cg = a->cg;
    unsigned na = cg->d->tile_t / 16;
    bj_cg_loop l;
    bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, 0), bj_cg_sub(cg, v_T16, bj_cg_i64c(cg, 16 * (na - 1))),
                     bj_cg_i64c(cg, 16 * na), "t");
    amx_tile(a, v_rb, nb, l.v_iv, na, v_c0, kp, first);
    bj_cg_loop_end(cg, &l);
    if (na > 1) {
        LLVMValueRef v_t = bj_cg_loop_final(cg, &l);
        LLVMBasicBlockRef b_merge = bj_cg_if_begin(cg, bj_cg_lt(cg, v_t, v_T16), "t1");
        amx_tile(a, v_rb, nb, v_t, 1, v_c0, kp, first);
        bj_cg_if_end(cg, b_merge);
    }
}

/* nb blocks at v_rb: the first panel (C from zero), the other full panels, a short last one.
 * Panels: as few as `unroll` chunks a panel allows, of equal size but the last. */
static void amx_rows(bj_amx *a, LLVMValueRef v_T16, LLVMValueRef v_rb, unsigned nb) {
    bj_cg *cg = a->cg;
    int64_t panels = (a->chunks + cg->d->unroll - 1) / cg->d->unroll;
    int64_t kp = (a->chunks + panels - 1) / panels, full = a->chunks / kp, rest = a->chunks % kp;
    if (full) {
        amx_decode(a, v_rb, nb, bj_cg_i64c(cg, 0), kp);
        amx_tokens(a, v_T16, v_rb, nb, bj_cg_i64c(cg, 0), kp, true);
        if (full > 1) {
            bj_cg_loop l;
            bj_cg_loop_begin(cg, &l, bj_cg_i64c(cg, kp), bj_cg_i64c(cg, full * kp), bj_cg_i64c(cg, kp), "panel");
            amx_decode(a, v_rb, nb, l.v_iv, kp);
            amx_tokens(a, v_T16, v_rb, nb, l.v_iv, kp, false);
            bj_cg_loop_end(cg, &l);
        }
    }
    if (rest) {
        amx_decode(a, v_rb, nb, bj_cg_i64c(cg, full * kp), rest);
        amx_tokens(a, v_T16, v_rb, nb, bj_cg_i64c(cg, full * kp), rest, !full);
    }
}

static void amx_call(bj_cg *cg, LLVMValueRef v_fn, LLVMValueRef v_x, LLVMValueRef v_y, LLVMValueRef v_T,
                     LLVMValueRef v_m0, LLVMValueRef v_m1) {
    LLVMValueRef args[] = { v_x, cg->v_w, v_y, v_T, v_m0, v_m1 };
    LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(v_fn), v_fn, args, 6, "");
}

bj_status bj_cg_gen_amx(bj_cg *cg, const char *name, bj_error *err) {
    const bj_cg_kdesc *d = cg->d;
    /* The edge kernel first, in the same module. */
    bj_cg_kdesc ed;
    bj_cg_kdesc_amx_edges(d, &ed);
    bj_cg ecg;
    char ename[48];
    snprintf(ename, sizeof ename, "%s_edges", name);
    bj_cg_init(&ecg, cg->ctx, cg->mod, cg->tgt, &ed, NULL);
    bj_status st = bj_cg_gen_dot2(&ecg, ename, err);
    LLVMValueRef v_edges = ecg.fn;
    bj_cg_fini(&ecg);
    if (st != BJ_OK) return st;
    LLVMSetLinkage(v_edges, LLVMInternalLinkage);

    bj_amx a = { .cg = cg, .xs = bj_cg_x_stride(d->k) };
    a.chunks = a.xs / 64;
    a.v256 = bj_cg_vec(cg->i32, 256);
    a.vbytes = bj_cg_vec(cg->i8, 64);
    bj_cg_kernel_begin(cg, name);
    LLVMBuilderRef b = cg->b;
    a.v_bbuf = bj_cg_alloca(cg, LLVMArrayType(cg->i8, (unsigned)(d->tile_m * d->unroll * 1024)), "bbuf");
    LLVMSetAlignment(a.v_bbuf, 64);
    for (unsigned i = 0; i < 2; i++)
        for (unsigned j = 0; j < 2; j++) a.acc[i][j] = bj_cg_alloca(cg, a.v256, "c");

    /* Whole 16-row blocks [mb0, mb1) inside [m0, m1) (m1 <= M, so they are inside M), whole
     * 16-token tiles [0, T16). */
    LLVMValueRef v_T16 = LLVMBuildAnd(b, cg->v_T, bj_cg_i64c(cg, ~(int64_t)15), "");
    LLVMValueRef v_mb0 = LLVMBuildAShr(b, bj_cg_add(cg, cg->v_m0, bj_cg_i64c(cg, 15)), bj_cg_i64c(cg, 4), "");
    LLVMValueRef v_mb1 = LLVMBuildAShr(b, cg->v_m1, bj_cg_i64c(cg, 4), "");
    LLVMValueRef v_r0 = bj_cg_mul(cg, v_mb0, bj_cg_i64c(cg, 16)), v_r1 = bj_cg_mul(cg, v_mb1, bj_cg_i64c(cg, 16));
    LLVMValueRef v_tiles = LLVMBuildAnd(b, bj_cg_lt(cg, bj_cg_i64c(cg, 0), v_T16), bj_cg_lt(cg, v_mb0, v_mb1), "");

    LLVMBasicBlockRef b_merge = bj_cg_if_begin(cg, LLVMBuildNot(b, v_tiles, ""), "edges_only");
    amx_call(cg, v_edges, cg->v_x, cg->v_y, cg->v_T, cg->v_m0, cg->v_m1);
    bj_cg_if_end(cg, b_merge);

    b_merge = bj_cg_if_begin(cg, v_tiles, "tiles");
    unsigned tm = d->tile_m;
    bj_cg_loop l;
    bj_cg_loop_begin(cg, &l, v_mb0, bj_cg_sub(cg, v_mb1, bj_cg_i64c(cg, tm - 1)), bj_cg_i64c(cg, tm), "rb");
    amx_rows(&a, v_T16, l.v_iv, tm);
    bj_cg_loop_end(cg, &l);
    if (tm > 1) {
        LLVMValueRef v_rb = bj_cg_loop_final(cg, &l);
        LLVMBasicBlockRef b_one = bj_cg_if_begin(cg, bj_cg_lt(cg, v_rb, v_mb1), "rb1");
        amx_rows(&a, v_T16, v_rb, 1);
        bj_cg_if_end(cg, b_one);
    }
    /* Rows of [m0, m1) outside the whole blocks, for the tiles' tokens; then the last tokens. */
    LLVMBasicBlockRef b_e = bj_cg_if_begin(cg, bj_cg_lt(cg, cg->v_m0, v_r0), "lo");
    amx_call(cg, v_edges, cg->v_x, cg->v_y, v_T16, cg->v_m0, v_r0);
    bj_cg_if_end(cg, b_e);
    b_e = bj_cg_if_begin(cg, bj_cg_lt(cg, v_r1, cg->v_m1), "hi");
    amx_call(cg, v_edges, cg->v_x, cg->v_y, v_T16, v_r1, cg->v_m1);
    bj_cg_if_end(cg, b_e);
    b_e = bj_cg_if_begin(cg, bj_cg_lt(cg, v_T16, cg->v_T), "tail");
    amx_call(cg, v_edges, bj_cg_gep(cg, cg->v_x, bj_cg_mul(cg, v_T16, bj_cg_i64c(cg, a.xs))),
             bj_cg_gep(cg, cg->v_y, bj_cg_mul(cg, v_T16, bj_cg_i64c(cg, 4 * (int64_t)d->m))),
             bj_cg_sub(cg, cg->v_T, v_T16), cg->v_m0, cg->v_m1);
    bj_cg_if_end(cg, b_e);
    bj_cg_if_end(cg, b_merge);
    LLVMBuildRetVoid(b);
    return BJ_OK;
}
