/* compiler/passes/share_activation_quant.c -- share-activation-quant: projections that read
 * the same activation read one quantized copy of it.
 *
 *   %h = rmsnorm %x, %g            %h = rmsnorm %x, %g
 *   %a = act_quant %h        =>    %a = act_quant %h
 *   %b = act_quant %h              %q = matmul_t %a, %wq
 *   %q = matmul_t %a, %wq          %k = matmul_t %a, %wk
 *   %k = matmul_t %b, %wk
 *
 * General rule: two nodes of a quantization chain (rmsnorm, act_quant, rmsnorm_quant) with
 * the same op, the same operands and the same attributes compute the same bytes (the ops are
 * pure and deterministic), so the later one is replaced by the earlier. Merging an rmsnorm
 * first makes its act_quants identical, so one pass in node order reaches the fixpoint.
 * The HF importer already shares Q/K/V and gate/up; this pass makes that a checked property
 * of every graph. Fusing the shared projections into one concatenated matmul is not done
 * (it needs a slice op the IR does not have yet).
 * Needs: nothing. Invalidates: node indices (merged nodes are removed), a memory plan. */
#include "compiler/passes.h"

#include <stdlib.h>
#include <string.h>

static bool bj_saq_is_quant_chain(const bj_node *n) {
    return n->op == BJ_OP_RMSNORM || n->op == BJ_OP_ACT_QUANT || n->op == BJ_OP_RMSNORM_QUANT;
}

static bool bj_saq_same(const bj_node *a, const bj_node *b) {
    if (a->op != b->op || a->nin != b->nin) return false;
    for (int k = 0; k < a->nin; k++)
        if (a->in[k] != b->in[k]) return false;
    return !memcmp(a->iattr, b->iattr, sizeof a->iattr) && !memcmp(a->fattr, b->fattr, sizeof a->fattr);
}

/* The earliest node before i computing the same as i, or BJ_NONE. Quadratic in the worst
 * case, but only over the few quantization nodes that share i's first operand. */
static uint32_t bj_saq_twin(const bj_graph *g, uint32_t i) {
    const bj_node *n = &g->nodes[i];
    for (uint32_t j = n->in[0] + 1; j < i; j++)
        if (bj_saq_same(&g->nodes[j], n)) return j;
    return BJ_NONE;
}

bj_status bj_pass_share_activation_quant(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    uint32_t merged = 0, removed, *uses, shared = 0, readers = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (!bj_saq_is_quant_chain(&g->nodes[i])) continue;
        uint32_t twin = bj_saq_twin(g, i);
        if (twin == BJ_NONE) continue;
        bj_pass_replace_uses(g, i, twin);
        merged++;
    }
    BJ_TRY(bj_pass_dce(g, &removed, err));
    BJ_TRY(bj_pass_uses(g, &uses, err));
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bj_op op = (bj_op)g->nodes[i].op;
        if ((op == BJ_OP_ACT_QUANT || op == BJ_OP_RMSNORM_QUANT) && uses[i] > 1) shared++, readers += uses[i];
    }
    free(uses);
    bj_pass_note(cx, "share-activation-quant", "%u duplicate quantizations merged; %u quantized activations feed %u matmuls",
                 merged, shared, readers);
    return BJ_OK;
}
