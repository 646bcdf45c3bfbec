/* compiler/passes/plan_memory.c -- plan-memory: the activation arena and the KV cache exactly as
 * the JIT engine lays them out (bj_plan: val[].row/off/kv_off, arena_row, kv_bytes).
 *
 * Every piece of a step (bj_plan_value, BJ_PIECE_*: a node's result, its integer sums, its normed
 * rows, a bitlinear's quantized input) is T rows of a fixed number of bytes, in the engines' f64
 * activations (act_elem_bytes 8; a q8row is bj_cg_x_stride(K) int8 and an f64 scale a row), each
 * rounded up to 64 bytes: so one plan in bytes a token serves a step of any T. In a step of T
 * tokens a piece is at arena + off * T; the arena holds step_tokens (opts->plan_tokens, else
 * BJ_PLAN_STEP_TOKENS, at most max_seq) tokens: arena_row * step_tokens bytes, allocated once.
 *
 * Liveness is over the plan's steps (fold-epilogues: an epilogue's pieces are live from its
 * matmul's step): a node's result from its step to the last step that reads it, its scratch
 * (ACC, TMP, a bitlinear's Q/QS) during its own step only. Two pieces whose live ranges overlap
 * (inclusive: a step's inputs and results coexist) never share bytes. Placement is greedy,
 * largest piece first, each at the lowest offset that clears the placed pieces it overlaps (the
 * usual offline heuristic for interval packing). The matmul_f head writes the caller's logits
 * and the output is no value: neither has pieces. arena_row_naive = every piece its own buffer.
 *
 * KV cache: one arena, each attention layer's K then V, [kv_seq, n_kv * head_dim] elements of
 * kv_elem_bytes each (opts: the engine's context and element type; default max_seq and f32),
 * in node order, each rounded up to 64 bytes.
 *
 * Printed after the IR as '#' lines (bj_pass_print_plan). Where the pass is not run, the plan an
 * executor gets is made all the same (pipeline.c): it cannot run without one.
 * Needs: the plan's steps (made here, unfolded, when fold-epilogues did not run).
 * Invalidates: nothing; any later change to g invalidates the plan. */
#include "compiler/passes.h"

#include <stdlib.h>

#define BJ_PM_ALIGN 64

typedef struct bj_pm_piece {
    uint32_t node, from, to; /* live during steps (node ids) [from, to] */
    int kind;                /* BJ_PIECE_* */
    int64_t row, off;        /* bytes a token; offset a token */
} bj_pm_piece;

static int64_t bj_pm_round(int64_t b) { return (b + BJ_PM_ALIGN - 1) / BJ_PM_ALIGN * BJ_PM_ALIGN; }

/* Node nd's pieces in bytes a token (row[k] = 0: none). */
static void bj_pm_rows(const bj_graph *g, const bj_node *nd, int64_t act, int64_t *row) {
    for (int k = 0; k < BJ_PIECES; k++) row[k] = 0;
    if (!bj_pass_is_step_value(nd) || nd->op == BJ_OP_OUTPUT || nd->op == BJ_OP_MATMUL_F) return;
    int64_t cols = bj_shape_cols(nd->shape);
    /* rmsnorm_quant: q8row of its own columns; bitlinear: its result plus its quantized input (K columns) */
    int64_t qcols = nd->op == BJ_OP_BITLINEAR ? g->nodes[nd->in[2]].shape.d[1] : cols;
    bool q8 = nd->dtype == BJ_DT_Q8ROW;
    if (q8 || nd->op == BJ_OP_BITLINEAR) {
        row[BJ_PIECE_Q] = bj_cg_x_stride(qcols);
        row[BJ_PIECE_QS] = act;
    }
    if (nd->op == BJ_OP_RMSNORM_QUANT || nd->op == BJ_OP_BITLINEAR) row[BJ_PIECE_TMP] = qcols * act;
    if (!q8) row[BJ_PIECE_F] = cols * act;
    if (bj_pass_is_lowbit_matmul(nd)) row[BJ_PIECE_ACC] = cols * (int64_t)sizeof(int32_t);
}

/* The pieces of every node with their live ranges; *n of them. */
static bj_status bj_pm_pieces(const bj_graph *g, const bj_plan *p, bj_pm_piece *pc, size_t *n, bj_error *err) {
    uint32_t *last = malloc((g->n_nodes + 1) * sizeof *last);
    if (!last) return BJ_FAIL(err, BJ_E_NOMEM, "plan-memory: out of memory");
    for (uint32_t i = 0; i < g->n_nodes; i++) last[i] = p->val[i].step;
    for (uint32_t i = 0; i < g->n_nodes; i++)
        for (uint32_t k = 0; k < g->nodes[i].nin; k++) {
            uint32_t in = g->nodes[i].in[k], s = p->val[i].step;
            if (s != BJ_NONE && last[in] != BJ_NONE && last[in] < s) last[in] = s;
        }
    *n = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *nd = &g->nodes[i];
        bj_plan_value *v = &p->val[i];
        bj_pm_rows(g, nd, p->act_elem_bytes, v->row);
        bool q8 = nd->dtype == BJ_DT_Q8ROW;
        for (int k = 0; k < BJ_PIECES; k++) {
            v->row[k] = bj_pm_round(v->row[k]);
            if (!v->row[k]) continue;
            bool result = k == BJ_PIECE_F || (q8 && (k == BJ_PIECE_Q || k == BJ_PIECE_QS));
            pc[(*n)++] = (bj_pm_piece){ .node = i, .from = v->step, .to = result ? last[i] : v->step, .kind = k,
                                        .row = v->row[k] };
        }
    }
    free(last);
    return BJ_OK;
}

static int bj_pm_by_size(const void *a, const void *b) {
    const bj_pm_piece *x = a, *y = b;
    if (x->row != y->row) return x->row > y->row ? -1 : 1;
    if (x->from != y->from) return x->from < y->from ? -1 : 1;
    return x->kind - y->kind;
}

static int bj_pm_by_off(const void *a, const void *b) {
    int64_t x = (*(const bj_pm_piece *const *)a)->off, y = (*(const bj_pm_piece *const *)b)->off;
    return (x > y) - (x < y);
}

/* pc[0..n) placed in order, each at the lowest offset clearing the earlier ones it overlaps.
 * Returns the arena's bytes a token. */
static int64_t bj_pm_place(bj_pm_piece *pc, size_t n, bj_pm_piece **live) {
    int64_t top = 0;
    for (size_t a = 0; a < n; a++) {
        size_t nl = 0;
        for (size_t c = 0; c < a; c++)
            if (pc[c].to >= pc[a].from && pc[a].to >= pc[c].from) live[nl++] = &pc[c];
        qsort(live, nl, sizeof *live, bj_pm_by_off);
        int64_t off = 0;
        for (size_t c = 0; c < nl && live[c]->off < off + pc[a].row; c++)
            if (live[c]->off + live[c]->row > off) off = live[c]->off + live[c]->row;
        pc[a].off = off;
        if (off + pc[a].row > top) top = off + pc[a].row;
    }
    return top;
}

static void bj_pm_kv(const bj_graph *g, bj_plan *p) {
    p->kv_bytes = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op != BJ_OP_ATTENTION) continue;
        int64_t half = bj_pm_round(p->kv_seq * n->iattr[2] * n->iattr[3] * (int64_t)p->kv_elem_bytes);
        p->val[i].kv_off = p->kv_bytes;
        p->val[i].kv_half = (uint64_t)half;
        p->kv_bytes += 2 * (uint64_t)half;
    }
}

/* The plan's memory for g (its steps must be current). */
bj_status bj_pass_plan_arena(const bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    bj_plan *p = &cx->kplan;
    const bj_pipeline_opts *o = cx->opts;
    int64_t max_seq = g->max_seq > 0 ? g->max_seq : 1;
    if (!cx->steps_valid) BJ_TRY(bj_pass_plan_steps(g, cx, false, err));
    p->act_elem_bytes = 8;
    p->kv_elem_bytes = o->kv_elem_bytes ? o->kv_elem_bytes : 4;
    p->kv_seq = o->kv_seq > 0 && o->kv_seq < max_seq ? o->kv_seq : max_seq;
    p->step_tokens = o->plan_tokens > 0 ? o->plan_tokens : BJ_PLAN_STEP_TOKENS < max_seq ? BJ_PLAN_STEP_TOKENS : max_seq;
    size_t cap = (size_t)g->n_nodes * BJ_PIECES + 1, n = 0;
    bj_pm_piece *pc = malloc(cap * sizeof *pc);
    bj_pm_piece **live = malloc(cap * sizeof *live);
    bj_status s = pc && live ? bj_pm_pieces(g, p, pc, &n, err) : BJ_FAIL(err, BJ_E_NOMEM, "plan-memory: out of memory");
    if (s == BJ_OK) {
        qsort(pc, n, sizeof *pc, bj_pm_by_size);
        p->arena_row = bj_pm_place(pc, n, live);
        p->arena_row_naive = 0;
        for (size_t a = 0; a < n; a++) {
            p->val[pc[a].node].off[pc[a].kind] = pc[a].off;
            p->arena_row_naive += pc[a].row;
            if (pc[a].kind == BJ_PIECE_F || pc[a].kind == BJ_PIECE_Q) {
                p->val[pc[a].node].live_from = pc[a].from;
                p->val[pc[a].node].live_to = pc[a].to;
            }
        }
        bj_pm_kv(g, p);
        p->have_memory = cx->mem_valid = true;
    }
    free(pc);
    free(live);
    return s;
}

bj_status bj_pass_plan_memory(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    BJ_TRY(bj_pass_plan_arena(g, cx, err));
    const bj_plan *p = &cx->kplan;
    bj_pass_note(cx, "plan-memory", "arena %lld bytes a token, %lld were every piece its own (%.1f%%), for steps of %lld tokens; KV cache %llu bytes",
                 (long long)p->arena_row, (long long)p->arena_row_naive,
                 p->arena_row_naive ? 100.0 * (double)p->arena_row / (double)p->arena_row_naive : 0.0,
                 (long long)p->step_tokens, (unsigned long long)p->kv_bytes);
    return BJ_OK;
}
