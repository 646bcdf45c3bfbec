/* compiler/passes/fuse_norm_quant_bitlinear.c -- fuse-norm-quant-bitlinear: RMSNorm, per-token
 * int8 quantization, ternary matmul and rescale become one op.
 *
 *   %h = rmsnorm %x, %g {eps}
 *   %a = act_quant %h                 =>   %y = bitlinear %x, %g, %w {eps, variant=0, ...}
 *   %y = matmul_t %a, %w                   (when %h and %a have no other reader)
 *
 * and where the quantized activation is shared (Q/K/V, gate/up), the norm and the quant
 * still fuse, the matmuls keep reading the one shared result:
 *
 *   %h = rmsnorm %x, %g ; %a = act_quant %h   =>   %a = rmsnorm_quant %x, %g {eps}
 *
 * (matmul_t already includes the rescale y = acc / s * scale, so "+ rescale" needs no node.)
 * The fused ops round exactly as the chain they replace (the engines run the same
 * runtime/ops.c functions in the same order), so results are bit-identical.
 * Patterns by benefit: the whole chain first, then norm+quant; the fixpoint driver also
 * catches an rmsnorm_quant left with one matmul reader.
 * Needs: nothing (use counts are recomputed). Invalidates: node indices, a memory plan. */
#include "compiler/passes.h"

/* %a is act_quant(rmsnorm) or rmsnorm_quant, read only once (by the matmul at hand). */
static bool bj_fuse_norm_source(const bj_graph *g, const uint32_t *uses, uint32_t a, uint32_t *norm) {
    const bj_node *q = &g->nodes[a];
    if (uses[a] != 1) return false;
    if (q->op == BJ_OP_RMSNORM_QUANT) { *norm = a; return true; }
    if (q->op != BJ_OP_ACT_QUANT) return false;
    const bj_node *h = &g->nodes[q->in[0]];
    if (h->op != BJ_OP_RMSNORM || uses[q->in[0]] != 1) return false;
    *norm = q->in[0];
    return true;
}

static bool bj_match_bitlinear(const bj_graph *g, const uint32_t *uses, uint32_t i, bj_pass_match *m) {
    const bj_node *n = &g->nodes[i];
    if (n->op != BJ_OP_MATMUL_T && n->op != BJ_OP_MATMUL_TK) return false;
    if (!bj_fuse_norm_source(g, uses, n->in[0], &m->n[0])) return false;
    m->n[1] = n->in[1];
    return true;
}

/* Node i becomes bitlinear(x, g, w); the norm node m->n[0] (rmsnorm or rmsnorm_quant) has x, g, eps.
 * A kernel choice already made on a matmul_tk carries over. */
static bj_status bj_rewrite_bitlinear(bj_graph *g, uint32_t i, const bj_pass_match *m, bj_error *err) {
    const bj_node *norm = &g->nodes[m->n[0]];
    bj_node *n = &g->nodes[i];
    bj_node f = { .op = BJ_OP_BITLINEAR, .nin = 3, .in = { norm->in[0], norm->in[1], m->n[1], BJ_NONE } };
    if (n->op == BJ_OP_MATMUL_TK)
        for (int k = 0; k < 4; k++) f.iattr[k] = n->iattr[k];
    f.fattr[0] = norm->fattr[0];
    *n = f;
    return bj_pass_retype(g, i, err);
}

static bool bj_match_norm_quant(const bj_graph *g, const uint32_t *uses, uint32_t i, bj_pass_match *m) {
    const bj_node *n = &g->nodes[i];
    if (n->op != BJ_OP_ACT_QUANT) return false;
    m->n[0] = n->in[0];
    return g->nodes[n->in[0]].op == BJ_OP_RMSNORM && uses[n->in[0]] == 1;
}

static bj_status bj_rewrite_norm_quant(bj_graph *g, uint32_t i, const bj_pass_match *m, bj_error *err) {
    const bj_node *norm = &g->nodes[m->n[0]];
    bj_node f = { .op = BJ_OP_RMSNORM_QUANT, .nin = 2, .in = { norm->in[0], norm->in[1], BJ_NONE, BJ_NONE } };
    f.fattr[0] = norm->fattr[0];
    g->nodes[i] = f;
    return bj_pass_retype(g, i, err);
}

static const bj_pattern bj_fuse_patterns[] = {
    /* name                      match                rewrite                benefit */
    { "rmsnorm+quant+matmul_t", bj_match_bitlinear,  bj_rewrite_bitlinear,  2 },
    { "rmsnorm+act_quant",      bj_match_norm_quant, bj_rewrite_norm_quant, 1 },
};

bj_status bj_pass_fuse_norm_quant_bitlinear(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    uint32_t hits[BJ_COUNTOF(bj_fuse_patterns)], n_bl = 0, n_nq = 0;
    BJ_TRY(bj_pass_rewrite_fixpoint(g, bj_fuse_patterns, BJ_COUNTOF(bj_fuse_patterns), 8, hits, err));
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        n_bl += g->nodes[i].op == BJ_OP_BITLINEAR;
        n_nq += g->nodes[i].op == BJ_OP_RMSNORM_QUANT;
    }
    bj_pass_note(cx, "fuse-norm-quant-bitlinear", "%u rewrites (%u whole chains, %u norm+quant); graph has %u bitlinear, %u rmsnorm_quant",
                 hits[0] + hits[1], hits[0], hits[1], n_bl, n_nq);
    return BJ_OK;
}
