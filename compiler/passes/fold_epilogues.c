/* compiler/passes/fold_epilogues.c -- fold-epilogues: the executor's steps, in order, with the
 * elementwise ops that run inside a ternary matmul's step as its epilogues.
 *
 * An elementwise op (add, mul, relu_sqr, silu) whose last operand to be computed is a ternary
 * matmul (matmul_t, matmul_tk, bitlinear) of the same width runs in that matmul's step: on each
 * chunk of output columns right after the chunk is rescaled, by the thread that computed it. The
 * values are still in its cache, where a step of their own would read them from every core (at
 * 16 threads relu_sqr alone took 48 us a layer that way) and cost a fork-join. The residual adds
 * after o_proj/down, relu^2 and the gate*up product of the FFN fold this way; an op reading an
 * epilogue of the same matmul folds too (the epilogues run in node order on each chunk). The same
 * function on the same elements, so the same bits.
 *
 *   %y = bitlinear %x, %g, %w            # fold-epilogues: steps ...
 *   %z = add %r, %y                 =>   #   step %y bitlinear split=rows: epilogue %z add
 *
 * The graph is not changed: the steps go to the plan (bj_plan.steps, .val[].step/next_fold), which
 * the pass manager prints after the IR as '#' lines and the JIT engine executes. Each step also
 * records what the pool divides (bj_split) and its phases. Where the pass is not run (disabled),
 * the plan still gets its steps, one a node (bj_pass_plan_steps with fold = false).
 * Needs: nothing. Invalidates: nothing (the graph is unchanged); a memory plan is re-made after. */
#include "compiler/passes.h"

#include <stdlib.h>

static bool bj_fe_is_elementwise(const bj_node *n) {
    return n->op == BJ_OP_ADD || n->op == BJ_OP_MUL || n->op == BJ_OP_RELU_SQR || n->op == BJ_OP_SILU;
}

/* What the pool divides in node n's step, and in how many phases. */
static void bj_fe_split(const bj_node *n, bj_plan_step *s) {
    s->phases = 1;
    switch (n->op) {
    case BJ_OP_EMBED: case BJ_OP_RMSNORM: case BJ_OP_ACT_QUANT: case BJ_OP_RMSNORM_QUANT: case BJ_OP_ROPE:
        s->split = BJ_SPLIT_TOKENS;
        break;
    case BJ_OP_BITLINEAR: s->phases = 2; /* fall through */
    case BJ_OP_MATMUL_T: case BJ_OP_MATMUL_TK: case BJ_OP_MATMUL_F: s->split = BJ_SPLIT_ROWS; break;
    case BJ_OP_ATTENTION: s->split = BJ_SPLIT_HEADS, s->phases = 2; break;
    default: s->split = BJ_SPLIT_ELEMS;
    }
}

/* val[i].step for every node: the matmul step an elementwise op folds into (fold), else itself. */
static void bj_fe_assign(const bj_graph *g, bj_plan *p, bool fold) {
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *nd = &g->nodes[i];
        bj_plan_value *v = &p->val[i];
        v->step = bj_pass_is_step_value(nd) && nd->op != BJ_OP_OUTPUT ? i : BJ_NONE;
        v->next_fold = BJ_NONE;
        if (!fold || !bj_fe_is_elementwise(nd)) continue;
        uint32_t last = 0;
        for (uint32_t k = 0; k < nd->nin; k++) {
            uint32_t s = p->val[nd->in[k]].step;
            if (s != BJ_NONE && s >= last) last = s;
        }
        if (bj_pass_is_lowbit_matmul(&g->nodes[last]) && bj_shape_cols(g->nodes[last].shape) == bj_shape_cols(nd->shape)) {
            v->step = last;
            p->n_epilogues++;
        }
    }
}

bj_status bj_pass_plan_steps(const bj_graph *g, bj_pass_ctx *cx, bool fold, bj_error *err) {
    bj_plan *p = &cx->kplan;
    free(p->steps);
    free(p->val);
    p->steps = NULL;
    p->n_steps = 0;
    p->n_epilogues = 0;
    p->have_memory = cx->mem_valid = false;
    p->val = calloc(g->n_nodes + 1, sizeof *p->val);
    p->steps = calloc(g->n_nodes + 1, sizeof *p->steps);
    if (!p->val || !p->steps) return BJ_FAIL(err, BJ_E_NOMEM, "fold-epilogues: out of memory");
    bj_fe_assign(g, p, fold);
    uint32_t *step_of = malloc((g->n_nodes + 1) * sizeof *step_of), *tail = malloc((g->n_nodes + 1) * sizeof *tail);
    if (!step_of || !tail) { free(step_of); free(tail); return BJ_FAIL(err, BJ_E_NOMEM, "fold-epilogues: out of memory"); }
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        uint32_t s = p->val[i].step;
        if (s == BJ_NONE) continue;
        if (s == i) { /* a step of its own */
            bj_plan_step *st = &p->steps[p->n_steps];
            *st = (bj_plan_step){ .node = i, .epilogue = BJ_NONE };
            bj_fe_split(&g->nodes[i], st);
            step_of[i] = p->n_steps++;
            tail[i] = BJ_NONE;
            continue;
        }
        bj_plan_step *st = &p->steps[step_of[s]]; /* appended: epilogues run in node order */
        if (tail[s] == BJ_NONE) st->epilogue = i;
        else p->val[tail[s]].next_fold = i;
        tail[s] = i;
    }
    free(step_of);
    free(tail);
    cx->steps_valid = true;
    return BJ_OK;
}

bj_status bj_pass_fold_epilogues(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    BJ_TRY(bj_pass_plan_steps(g, cx, true, err));
    int with = 0;
    for (uint32_t k = 0; k < cx->kplan.n_steps; k++) with += cx->kplan.steps[k].epilogue != BJ_NONE;
    bj_pass_note(cx, "fold-epilogues", "%u steps; %d elementwise ops folded into %d matmul steps", cx->kplan.n_steps,
                 cx->kplan.n_epilogues, with);
    return BJ_OK;
}
