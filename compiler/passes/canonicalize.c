/* compiler/passes/canonicalize.c -- canonicalize: one spelling per computation, no dead nodes.
 *
 * Rewrites (a pattern table, style.md C7):
 *   - commute: add/mul take their operands in ascending node order (IEEE + and * are
 *     commutative bit for bit, so results do not change); two spellings of one sum become
 *     one, which share-activation-quant and any CSE can then see;
 *   - output-of-output / self-copies: none exist in the core op set today; the importers
 *     emit only core ops (there is no architecture-specific spelling to lower yet), so new
 *     lowerings are new rows here;
 * then dead-node elimination: every node the OUTPUT does not read is dropped (unused
 * weights, the float masters left behind by quantize-weights, dead branches).
 * Needs: nothing. Invalidates: node indices (compaction), a memory plan. */
#include "compiler/passes.h"

static bool bj_match_commute(const bj_graph *g, const uint32_t *uses, uint32_t i, bj_pass_match *m) {
    const bj_node *n = &g->nodes[i];
    (void)uses; (void)m;
    return (n->op == BJ_OP_ADD || n->op == BJ_OP_MUL) && n->in[0] > n->in[1];
}

static bj_status bj_rewrite_commute(bj_graph *g, uint32_t i, const bj_pass_match *m, bj_error *err) {
    bj_node *n = &g->nodes[i];
    uint32_t a = n->in[0];
    (void)m; (void)err;
    n->in[0] = n->in[1];
    n->in[1] = a;
    return BJ_OK;
}

static const bj_pattern bj_canon_patterns[] = {
    /* name       match              rewrite              benefit */
    { "commute", bj_match_commute, bj_rewrite_commute, 1 },
};

bj_status bj_pass_canonicalize(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    uint32_t hits[BJ_COUNTOF(bj_canon_patterns)], before = g->n_nodes, removed;
    BJ_TRY(bj_pass_rewrite_fixpoint(g, bj_canon_patterns, BJ_COUNTOF(bj_canon_patterns), 4, hits, err));
    BJ_TRY(bj_pass_dce(g, &removed, err));
    bj_pass_note(cx, "canonicalize", "%u operand orders fixed, %u dead nodes removed", hits[0], before - g->n_nodes);
    return BJ_OK;
}
