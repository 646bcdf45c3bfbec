/* compiler/passes/plan_memory.c -- plan-memory: one activation arena for a step, with a byte
 * offset for every step value from liveness, and the KV-cache layout.
 *
 * For a step of P tokens (opts->plan_tokens, else the graph's max_seq: the largest prompt a
 * step can take) every step value v (not input/weight/weight_quant) gets a slot of
 *   bytes(v) = its result, nbytes(dtype, P, cols), plus the op's own scratch (rmsnorm_quant:
 *              the f32 normed rows; matmul_t/tk: the i32 sums; bitlinear: f32 normed rows,
 *              the q8row activation and the i32 sums), each rounded up to 64 bytes,
 * live from its node to its last reader (the output to the end). Two values whose live
 * ranges overlap (inclusive: an op's inputs and result coexist) never share bytes.
 * Placement is greedy by size, largest first, each at the lowest offset that fits among
 * the already placed values it overlaps (the usual offline best-effort for interval
 * packing; optimal is NP-hard, this is within a few % on transformer graphs).
 * peak = the arena size; naive = one buffer per value.
 * Not yet the arena the JIT engine uses: the engine plans its own (runtime/engine_jit.c,
 * plan_buffers: f64 activations, bytes a token, steps of 64 tokens, folded elementwise ops live
 * in their matmul's step), and this plan is freed at the end of the pipeline
 * (docs/architecture.md, "not yet in its pass").
 *
 * KV cache: one arena, each attention layer's K then V, [max_seq, n_kv * head_dim] f32
 * each, in node order; kv_offset is printed per attention node.
 *
 * The plan is kept in the pass context (bj_pass_ctx.plan) and printed after the IR as '#'
 * comment lines (which the parser skips): the IR node has no free attribute slot for an
 * offset on every op, and a side table in bj_graph would change ir/, which this pass does
 * not own. Needs: nothing. Invalidates: nothing; any later change to g invalidates the plan. */
#include "compiler/passes.h"

#include <stdlib.h>

static uint64_t bj_pm_round(uint64_t b) { return (b + 63) & ~(uint64_t)63; }

static uint64_t bj_pm_bytes(bj_dtype dt, int64_t rows, int64_t cols) {
    uint64_t b = 0;
    if (!bj_dtype_nbytes(dt, (uint64_t)rows, (uint64_t)cols, &b)) return UINT64_MAX / 4;
    return bj_pm_round(b);
}

/* Result plus the op's own scratch, for P tokens. */
static uint64_t bj_pm_value_bytes(const bj_graph *g, const bj_node *n, int64_t P) {
    int64_t cols = bj_shape_cols(n->shape), k = n->nin ? bj_shape_cols(g->nodes[n->in[0]].shape) : 0;
    uint64_t b = bj_pm_bytes((bj_dtype)n->dtype, P, cols);
    switch (n->op) {
    case BJ_OP_RMSNORM_QUANT: return b + bj_pm_bytes(BJ_DT_F32, P, cols);
    case BJ_OP_MATMUL_T: case BJ_OP_MATMUL_TK: return b + bj_pm_bytes(BJ_DT_I32, P, cols);
    case BJ_OP_BITLINEAR:
        return b + bj_pm_bytes(BJ_DT_F32, P, k) + bj_pm_bytes(BJ_DT_Q8ROW, P, k) + bj_pm_bytes(BJ_DT_I32, P, cols);
    default: return b;
    }
}

static void bj_pm_liveness(const bj_graph *g, bj_mem_plan *p) {
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (!bj_pass_is_step_value(n)) continue;
        p->slot[i].bytes = bj_pm_value_bytes(g, n, p->tokens);
        p->slot[i].def = p->slot[i].last = i;
        if (n->op == BJ_OP_OUTPUT) p->slot[i].last = g->n_nodes - 1;
        for (int k = 0; k < n->nin; k++)
            if (p->slot[n->in[k]].bytes) p->slot[n->in[k]].last = i;
        p->naive_bytes += p->slot[i].bytes;
    }
}


static int bj_pm_cmp_size(const void *a, const void *b, void *ud) {
    const bj_mem_plan *p = ud;
    const bj_mem_slot *x = &p->slot[*(const uint32_t *)a], *y = &p->slot[*(const uint32_t *)b];
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
    return (x->def > y->def) - (x->def < y->def);
}

static bool bj_pm_overlap(const bj_mem_slot *a, const bj_mem_slot *b) {
    return a->def <= b->last && b->def <= a->last;
}

/* Lowest offset for slot s that clears every placed, live-overlapping slot: try 0 and the end
 * of each conflicting slot, keep the smallest candidate that collides with none. */
static uint64_t bj_pm_fit(const bj_mem_plan *p, const uint32_t *placed, uint32_t n_placed, const bj_mem_slot *s) {
    uint64_t best = UINT64_MAX;
    for (uint32_t c = 0; c <= n_placed; c++) {
        uint64_t off = c == n_placed ? 0 : p->slot[placed[c]].offset + p->slot[placed[c]].bytes;
        if (off >= best) continue;
        bool ok = true;
        for (uint32_t j = 0; j < n_placed && ok; j++) {
            const bj_mem_slot *o = &p->slot[placed[j]];
            ok = !bj_pm_overlap(s, o) || off + s->bytes <= o->offset || o->offset + o->bytes <= off;
        }
        if (ok) best = off;
    }
    return best;
}

static bj_status bj_pm_place(const bj_graph *g, bj_mem_plan *p, bj_error *err) {
    uint32_t *order = malloc((g->n_nodes + 1) * sizeof *order), n = 0, *placed;
    placed = malloc((g->n_nodes + 1) * sizeof *placed);
    if (!order || !placed) { free(order); free(placed); return BJ_FAIL(err, BJ_E_NOMEM, "plan-memory: out of memory"); }
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (p->slot[i].bytes) order[n++] = i;
    qsort_r(order, n, sizeof *order, bj_pm_cmp_size, p);
    for (uint32_t k = 0; k < n; k++) {
        bj_mem_slot *s = &p->slot[order[k]];
        s->offset = bj_pm_fit(p, placed, k, s);
        placed[k] = order[k];
        if (s->offset + s->bytes > p->peak_bytes) p->peak_bytes = s->offset + s->bytes;
    }
    free(order);
    free(placed);
    return BJ_OK;
}

static void bj_pm_kv(const bj_graph *g, bj_mem_plan *p) {
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op != BJ_OP_ATTENTION) continue;
        uint64_t layer = 2 * bj_pm_round((uint64_t)g->max_seq * (uint64_t)(n->iattr[2] * n->iattr[3]) * 4);
        p->kv_offset[i] = p->kv_bytes;
        p->kv_bytes += layer;
        if (layer > p->kv_layer_bytes_max) p->kv_layer_bytes_max = layer;
    }
}

bj_status bj_pass_plan_memory(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    bj_mem_plan *p = &cx->plan;
    bj_mem_plan_free(p);
    p->tokens = cx->opts->plan_tokens > 0 ? cx->opts->plan_tokens : (g->max_seq > 0 ? g->max_seq : 1);
    p->n_nodes = g->n_nodes;
    p->slot = calloc(g->n_nodes + 1, sizeof *p->slot);
    p->kv_offset = calloc(g->n_nodes + 1, sizeof *p->kv_offset);
    if (!p->slot || !p->kv_offset) { bj_mem_plan_free(p); return BJ_FAIL(err, BJ_E_NOMEM, "plan-memory: out of memory"); }
    bj_pm_liveness(g, p);
    BJ_TRY(bj_pm_place(g, p, err));
    bj_pm_kv(g, p);
    p->valid = true;
    bj_pass_note(cx, "plan-memory", "peak activation bytes %llu vs naive %llu (%.1f%%) for %lld tokens; KV cache %llu bytes",
                 (unsigned long long)p->peak_bytes, (unsigned long long)p->naive_bytes,
                 p->naive_bytes ? 100.0 * (double)p->peak_bytes / (double)p->naive_bytes : 0.0, (long long)p->tokens,
                 (unsigned long long)p->kv_bytes);
    return BJ_OK;
}
