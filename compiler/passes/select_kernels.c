/* compiler/passes/select_kernels.c -- select-kernels: a kernel variant and ISA path for every
 * ternary or binary matmul, for the target CPU (opts->mcpu/mattr, else the host).
 *
 *   %y = matmul_t %a, %w        =>   %y = matmul_tk %a, %w {variant=1, isa=5, layout=0, packed=0}
 *   %y = bitlinear %x, %g, %w {variant=0, ...}  =>  the same with variant/isa filled in
 *
 * The choice is codegen's cost rule, bj_cg_pick_variant_for(target, weight type, M, K,
 * T_hint = 1, have weights): the binary kernel for binary weights (b8, b1), else the ternary
 * rule; with the target's best ISA path (bj_cg_best_isa): exactly what the JIT engine
 * picks on its own for a decode-shaped step, so the kernels (and the kernel cache entries)
 * are the same ones. The ids print as integers: variant 1 dot2, 2 bitplane, 3 wcode, 4 bin1 (codegen's
 * bj_cg_variant); isa 1 generic, 2 avx2, 3 avxvnni, 4 avx512, 5 avx512vnni (bj_cg_isa). The
 * JIT engine honours a node's variant (unless its options force one); the ISA path stays the
 * engine's own, since the engine may run for another CPU than the one compiled for.
 * A choice already made (variant != 0) is kept, so a tuned graph survives a re-run.
 * Needs: nothing. Invalidates: nothing (attributes only; the result is unchanged). */
#include "compiler/passes.h"

static void bj_sk_choose(const bj_cg_target *t, bj_node *n, const bj_node *w, uint32_t *counts) {
    if (n->iattr[0] == 0) {
        bool have = w->op == BJ_OP_WEIGHT && w->data != NULL;
        bj_cg_wtype wt = bj_dtype_class_of((bj_dtype)w->dtype) == BJ_DTC_BINARY ? BJ_CG_W_BINARY : BJ_CG_W_TERNARY;
        n->iattr[0] = bj_cg_pick_variant_for(t, wt, (uint32_t)w->shape.d[0], (uint32_t)w->shape.d[1], 1, have);
        n->iattr[1] = bj_cg_best_isa(t);
    }
    if ((unsigned)n->iattr[0] < BJ_CG_V_COUNT) counts[n->iattr[0]]++;
}

bj_status bj_pass_select_kernels(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    const bj_cg_target *t;
    uint32_t counts[BJ_CG_V_COUNT] = { 0 };
    BJ_TRY(bj_pass_target(cx, &t, err));
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bj_node *n = &g->nodes[i];
        if (!bj_pass_is_lowbit_matmul(n)) continue;
        if (n->op == BJ_OP_MATMUL_T) n->op = BJ_OP_MATMUL_TK; /* same operands; attrs start at 0 */
        bj_sk_choose(t, n, &g->nodes[bj_pass_matmul_weight(n)], counts);
        BJ_TRY(bj_pass_retype(g, i, err));
    }
    bj_pass_note(cx, "select-kernels", "target %s (%s): %u dot2, %u bitplane, %u wcode, %u bin1", t->cpu,
                 bj_cg_isa_name(bj_cg_best_isa(t)), counts[BJ_CG_V_DOT2], counts[BJ_CG_V_BITPLANE],
                 counts[BJ_CG_V_WCODE], counts[BJ_CG_V_BIN1]);
    return BJ_OK;
}
