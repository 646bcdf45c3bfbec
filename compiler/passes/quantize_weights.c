/* compiler/passes/quantize_weights.c -- quantize-weights: fold weight_quant of a float master
 * into a bound lowbit WEIGHT.
 *
 *   %m = weight "W" : bf16[N,K]          %q = weight "W.t8" {scale=g} : t8[N,K]
 *   %q = weight_quant %m {mode=0}   =>   (the master becomes dead and is removed)
 *
 * mode 0 (BitNet b1.58): g = max(mean|W|, 1e-5), v = clamp(rint(W * (1/g)), -1, 1) -> t8;
 * mode 1 (1-bit BitNet): v = W - mean(W) > 0 ? +1 : -1, scale mean|W| -> b1, stored at one
 * bit per weight ("W.b1"; weight_quant's own result type b8 is only the unfolded view).
 * The arithmetic is ir/weights.c's bj_ir_quantize_master, the same function the engines run
 * for an unfolded weight_quant, so a folded graph gives them the same values and scale bit
 * for bit.
 *
 * The new bytes live in the graph's arena, so they live exactly as long as the graph. In an
 * executor's pipeline (opts->pack) a weight_quant that only lowbit matmuls read is left as it
 * is: pack-weights packs it straight from the master, so no byte-a-weight copy stays resident.
 * Unbound masters (a parsed text graph), and masters in other float encodings, are left as
 * they are.
 * Needs: nothing. Invalidates: node indices (dead masters are removed), a memory plan. */
#include "compiler/passes.h"

#include "ir/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool bj_qw_name_taken(const bj_graph *g, const char *name) {
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == BJ_OP_WEIGHT && g->nodes[i].name && !strcmp(g->nodes[i].name, name)) return true;
    return false;
}

/* "<master>.t8" (or .b8), made unique with a counter if the model already uses the name. */
static const char *bj_qw_name(bj_graph *g, const char *master, const char *suffix) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s.%s", master, suffix);
    for (int k = 2; bj_qw_name_taken(g, buf) && k < 1000; k++) snprintf(buf, sizeof buf, "%s.%s%d", master, suffix, k);
    return bj_arena_strdup(&g->arena, buf);
}

/* Bound f32/f16/bf16 masters only: other float dtypes (block formats) stay as weight_quant for
 * the engines, whose loaders know them; this copy of the rule reads exactly these three. */
static bool bj_qw_foldable(const bj_node *m) {
    return m->data && (m->dtype == BJ_DT_F32 || m->dtype == BJ_DT_F16 || m->dtype == BJ_DT_BF16);
}

/* Whether node i, a weight_quant of a bound master, is left for pack-weights (an executor's
 * pipeline: opts->pack): every use is a lowbit matmul's weight operand, whose bytes pack-weights
 * packs straight from the master. Folding it here would keep a byte a weight in the graph's
 * arena for the engine's lifetime (3.3 GB for a 3B model), never read again once packed, and
 * its bytes, in no file, would be hashed on every start; the master, a mapped file, is found
 * in the source index instead, and its scale kept in the packed-weight cache. */
static bool bj_qw_packed_from_master(const bj_graph *g, uint32_t i) {
    for (uint32_t j = i + 1; j < g->n_nodes; j++) {
        const bj_node *u = &g->nodes[j];
        for (uint32_t k = 0; k < u->nin; k++)
            if (u->in[k] == i && (!bj_pass_is_lowbit_matmul(u) || bj_pass_matmul_weight(u) != i)) return false;
    }
    return true;
}

/* Turns node i (a weight_quant of a bound master) into the bound lowbit weight. */
static bj_status bj_qw_fold(bj_graph *g, uint32_t i, bj_error *err) {
    bj_node *n = &g->nodes[i];
    const bj_node *m = &g->nodes[n->in[0]];
    int64_t mode = n->iattr[0];
    int64_t N = m->shape.d[0], K = m->shape.d[1];
    uint64_t nvals = (uint64_t)N * (uint64_t)K;
    uint64_t nbytes = mode == 1 ? (uint64_t)N * (uint64_t)((K + 7) / 8) : nvals;
    if (m->nbytes < nvals * (m->dtype == BJ_DT_F32 ? 4 : 2))
        return BJ_FAIL(err, BJ_E_INVALID, "quantize-weights %%%u: master '%s' is bound to %llu bytes, too few", i,
                       m->name, (unsigned long long)m->nbytes);
    int8_t *v = bj_arena_alloc(&g->arena, nbytes ? nbytes : 1, 64);
    int8_t *vb = mode == 1 ? malloc(nvals ? nvals : 1) : v; /* binary: values, then packed to bits */
    const char *name = bj_qw_name(g, m->name, mode == 1 ? "b1" : "t8");
    if (!v || !vb || !name) {
        if (vb != v) free(vb);
        return BJ_FAIL(err, BJ_E_NOMEM, "quantize-weights: out of memory for '%s'", m->name);
    }
    double scale;
    bj_ir_quantize_master(m, mode, vb, &scale);
    if (mode == 1) {
        bj_ir_pack_b1(vb, N, K, (uint8_t *)v);
        free(vb);
    }
    bj_node w = { .op = BJ_OP_WEIGHT, .nin = 0, .dtype = (uint8_t)(mode == 1 ? BJ_DT_B1 : BJ_DT_T8),
                  .shape = m->shape, .name = name, .data = v, .nbytes = nbytes };
    for (int k = 0; k < BJ_MAX_IN; k++) w.in[k] = BJ_NONE;
    w.fattr[0] = scale;
    *n = w;
    return bj_pass_retype(g, i, err);
}

bj_status bj_pass_quantize_weights(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    uint32_t folded = 0, unbound = 0, left = 0, removed;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op != BJ_OP_WEIGHT_QUANT) continue;
        if (!bj_qw_foldable(&g->nodes[n->in[0]])) { unbound++; continue; }
        if (cx->opts->pack && bj_qw_packed_from_master(g, i)) { left++; continue; }
        BJ_TRY(bj_qw_fold(g, i, err));
        folded++;
    }
    BJ_TRY(bj_pass_dce(g, &removed, err));
    bj_pass_note(cx, "quantize-weights", "%u masters folded, %u unbound or non-f32/f16/bf16 left as weight_quant, %u left for pack-weights to pack from the master, %u dead nodes removed",
                 folded, unbound, left, removed);
    return BJ_OK;
}
