/* compiler/passes/pack_weights.c -- pack-weights: record, on every kernel-selected matmul, the
 * weight layout its kernel reads and the packed size.
 *
 *   %y = matmul_tk %a, %w {variant=1, isa=5, layout=0, packed=0}
 *     => %y = matmul_tk %a, %w {variant=1, isa=5, layout=1, packed=147456}
 *
 * layout is the variant whose packing the kernel reads (1 dot2: 16-row interleaved 2-bit
 * codes; 2 bitplane: non-zero + sign bit planes; 3 wcode: no buffer, weights are code; 4 bin1:
 * 16-row interleaved sign bits, 1 bit a weight), and
 * packed its bytes (bj_cg_packed_size of the kernel's descriptor).
 *
 * An annotation only, for now: no executor reads layout/packed. The JIT engine packs the
 * weights itself, through the packed-weight cache, in the layout of the kernel the plan gives
 * it (select-kernels' descriptor, which may be a tuned one: this pass states the untuned
 * variant's layout), and `bitjitc` embeds the weights in their file dtype
 * (docs/architecture.md, "not yet in its pass"). Matmuls without a kernel choice
 * (variant 0) are left alone: run select-kernels first.
 * Needs: select-kernels. Invalidates: nothing (attributes only). */
#include "compiler/passes.h"

static bj_status bj_pw_record(const bj_cg_target *t, bj_node *n, const bj_node *w, uint64_t *total, bj_error *err) {
    bj_cg_variant v = (bj_cg_variant)n->iattr[0];
    n->iattr[2] = v;
    if (v == BJ_CG_V_WCODE) { n->iattr[3] = 0; return BJ_OK; } /* weights are code: no buffer */
    bj_cg_kdesc d;
    bj_cg_wtype wt = bj_dtype_class_of((bj_dtype)w->dtype) == BJ_DTC_BINARY ? BJ_CG_W_BINARY : BJ_CG_W_TERNARY;
    BJ_TRY(bj_cg_kdesc_init(&d, t, v, (bj_cg_isa)n->iattr[1], wt, (uint32_t)w->shape.d[0], (uint32_t)w->shape.d[1],
                            NULL, err));
    n->iattr[3] = (int64_t)bj_cg_packed_size(&d);
    *total += (uint64_t)n->iattr[3];
    return BJ_OK;
}

bj_status bj_pass_pack_weights(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    const bj_cg_target *t;
    uint64_t total = 0;
    uint32_t done = 0, skipped = 0;
    BJ_TRY(bj_pass_target(cx, &t, err));
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bj_node *n = &g->nodes[i];
        if (n->op != BJ_OP_MATMUL_TK && n->op != BJ_OP_BITLINEAR) continue;
        if (n->iattr[0] == 0) { skipped++; continue; }
        bj_status st = bj_pw_record(t, n, &g->nodes[bj_pass_matmul_weight(n)], &total, err);
        if (st != BJ_OK) return bj_error_prefix(err, "pack-weights %%%u", i);
        done++;
    }
    bj_pass_note(cx, "pack-weights", "%u layouts recorded (%llu packed bytes), %u matmuls without a kernel choice",
                 done, (unsigned long long)total, skipped);
    return BJ_OK;
}
