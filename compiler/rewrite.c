/* compiler/rewrite.c -- the graph-rewriting toolkit every pass shares (passes.h): use
 * counts, replace-all-uses, in-place retyping, dead-node elimination with index
 * compaction, and the pattern-table fixpoint driver (style.md C7).
 *
 * Invariant: every function here leaves g in topological order with each node's stored
 * type equal to what its rule infers, as long as the rewrites it drives do. Node indices
 * change only in bj_pass_dce (compaction); callers must not hold indices across it. */
#include "compiler/passes.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

bool bj_pass_is_step_value(const bj_node *n) {
    return n->op != BJ_OP_INPUT && n->op != BJ_OP_WEIGHT && n->op != BJ_OP_WEIGHT_QUANT;
}

bool bj_pass_is_lowbit_matmul(const bj_node *n) {
    return n->op == BJ_OP_MATMUL_T || n->op == BJ_OP_MATMUL_TK || n->op == BJ_OP_BITLINEAR;
}

uint32_t bj_pass_matmul_weight(const bj_node *n) {
    return n->op == BJ_OP_BITLINEAR ? n->in[2] : n->in[1];
}

void bj_pass_note(bj_pass_ctx *cx, const char *pass, const char *fmt, ...) {
    if (!cx->opts->verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(cx->out, "%s: ", pass);
    vfprintf(cx->out, fmt, ap);
    fputc('\n', cx->out);
    va_end(ap);
}

bj_status bj_pass_target(bj_pass_ctx *cx, const bj_cg_target **t, bj_error *err) {
    if (!cx->have_tgt) {
        const char *mcpu = cx->opts->mcpu && strcmp(cx->opts->mcpu, "native") ? cx->opts->mcpu : NULL;
        if (cx->opts->target) cx->tgt = *cx->opts->target;
        else BJ_TRY(bj_cg_target_detect(&cx->tgt, mcpu, cx->opts->mattr, err));
        cx->have_tgt = true;
    }
    *t = &cx->tgt;
    return BJ_OK;
}

bj_status bj_pass_uses(const bj_graph *g, uint32_t **uses, bj_error *err) {
    uint32_t *u = calloc(g->n_nodes ? g->n_nodes : 1, sizeof *u);
    if (!u) return BJ_FAIL(err, BJ_E_NOMEM, "use counts of @%s: out of memory", g->name);
    for (uint32_t i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].nin; k++)
            if (g->nodes[i].in[k] < g->n_nodes) u[g->nodes[i].in[k]]++;
    *uses = u;
    return BJ_OK;
}

void bj_pass_replace_uses(bj_graph *g, uint32_t from, uint32_t to) {
    for (uint32_t i = from + 1; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].nin; k++)
            if (g->nodes[i].in[k] == from) g->nodes[i].in[k] = to;
}

bj_status bj_pass_retype(bj_graph *g, uint32_t i, bj_error *err) {
    bj_dtype dt;
    bj_shape s;
    BJ_TRY(bj_ir_infer(g, &g->nodes[i], &dt, &s, err));
    g->nodes[i].dtype = (uint8_t)dt;
    g->nodes[i].shape = s;
    return BJ_OK;
}

/* Marks what the OUTPUT reads, walking backwards (inputs always come earlier). */
static void bj_dce_mark(const bj_graph *g, bool *live) {
    for (uint32_t i = g->n_nodes; i-- > 0;) {
        const bj_node *n = &g->nodes[i];
        if (n->op == BJ_OP_OUTPUT) live[i] = true;
        if (!live[i]) continue;
        for (int k = 0; k < n->nin; k++)
            if (n->in[k] < i) live[n->in[k]] = true;
    }
}

/* Moves kept nodes down and renumbers their inputs through map. */
static void bj_dce_compact(bj_graph *g, const bool *live, uint32_t *map) {
    uint32_t j = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (!live[i]) { map[i] = BJ_NONE; continue; }
        bj_node n = g->nodes[i];
        for (int k = 0; k < n.nin; k++) n.in[k] = map[n.in[k]];
        map[i] = j;
        g->nodes[j++] = n;
    }
    g->n_nodes = j;
}

bj_status bj_pass_dce(bj_graph *g, uint32_t *removed, bj_error *err) {
    uint32_t n = g->n_nodes;
    *removed = 0;
    if (bj_ir_find_output(g) == BJ_NONE) return BJ_OK; /* a fragment: nothing defines liveness */
    bool *live = calloc(n ? n : 1, sizeof *live);
    uint32_t *map = calloc(n ? n : 1, sizeof *map);
    if (!live || !map) {
        free(live);
        free(map);
        return BJ_FAIL(err, BJ_E_NOMEM, "dce @%s: out of memory", g->name);
    }
    bj_dce_mark(g, live);
    bj_dce_compact(g, live, map);
    *removed = n - g->n_nodes;
    free(live);
    free(map);
    return BJ_OK;
}

/* One sweep: at each node, the first row (by benefit) that matches rewrites it. */
static bj_status bj_sweep(bj_graph *g, const bj_pattern *const *order, size_t n_pats, const bj_pattern *pats,
                          uint32_t *hits, bool *changed, bj_error *err) {
    uint32_t *uses;
    BJ_TRY(bj_pass_uses(g, &uses, err));
    bj_status st = BJ_OK;
    for (uint32_t i = 0; i < g->n_nodes && st == BJ_OK; i++)
        for (size_t k = 0; k < n_pats; k++) {
            bj_pass_match m = { { 0 } };
            if (!order[k]->match(g, uses, i, &m)) continue;
            st = order[k]->rewrite(g, i, &m, err);
            hits[order[k] - pats]++;
            *changed = true;
            free(uses);
            if (st == BJ_OK) st = bj_pass_uses(g, &uses, err);
            else uses = NULL;
            break;
        }
    free(uses);
    return st;
}

static int bj_cmp_benefit(const void *a, const void *b) {
    const bj_pattern *x = *(const bj_pattern *const *)a, *y = *(const bj_pattern *const *)b;
    if (x->benefit != y->benefit) return x->benefit > y->benefit ? -1 : 1;
    return (x > y) - (x < y); /* table order among equals */
}

bj_status bj_pass_rewrite_fixpoint(bj_graph *g, const bj_pattern *pats, size_t n_pats, int max_iter,
                                   uint32_t *hits, bj_error *err) {
    const bj_pattern **order = malloc((n_pats ? n_pats : 1) * sizeof *order);
    if (!order) return BJ_FAIL(err, BJ_E_NOMEM, "rewrite @%s: out of memory", g->name);
    for (size_t k = 0; k < n_pats; k++) order[k] = &pats[k], hits[k] = 0;
    qsort(order, n_pats, sizeof *order, bj_cmp_benefit);
    bj_status st = BJ_OK;
    bool changed = true;
    for (int it = 0; it < max_iter && changed && st == BJ_OK; it++) {
        uint32_t removed;
        changed = false;
        st = bj_sweep(g, order, n_pats, pats, hits, &changed, err);
        if (st == BJ_OK) st = bj_pass_dce(g, &removed, err);
    }
    free(order);
    return st;
}

static const char *bj_split_name(int s) {
    static const char *const names[] = { "?", "tokens", "rows", "heads", "elems" };
    return s >= 0 && s < (int)BJ_COUNTOF(names) ? names[s] : "?";
}

/* "# steps: N (E epilogues)", then each step that has epilogues: "#   step %12 bitlinear split=rows
 * phases=2: epilogue %13 add, %14 relu_sqr". */
static void bj_print_steps(const bj_graph *g, const bj_plan *p, FILE *out) {
    fprintf(out, "# steps: %u, %d epilogues folded into them\n", p->n_steps, p->n_epilogues);
    for (uint32_t k = 0; k < p->n_steps; k++) {
        const bj_plan_step *st = &p->steps[k];
        if (st->epilogue == BJ_NONE) continue;
        fprintf(out, "#   step %%%u %s split=%s phases=%d: epilogue", st->node, bj_op_name((bj_op)g->nodes[st->node].op),
                bj_split_name(st->split), st->phases);
        for (uint32_t f = st->epilogue; f != BJ_NONE; f = p->val[f].next_fold)
            fprintf(out, "%s %%%u %s", f == st->epilogue ? "" : ",", f, bj_op_name((bj_op)g->nodes[f].op));
        fputc('\n', out);
    }
}

/* "# plan-memory: ...", then each node's pieces "f@offset+bytes" (a token) and live steps. */
static void bj_print_memory(const bj_graph *g, const bj_plan *p, FILE *out) {
    static const char *const piece[BJ_PIECES] = { "f", "q", "qs", "acc", "tmp" };
    fprintf(out, "# plan-memory: tokens=%lld arena=%lld (%lld a token) naive=%lld a token kv=%llu (%u-byte elements, %lld positions)\n",
            (long long)p->step_tokens, (long long)(p->arena_row * p->step_tokens), (long long)p->arena_row,
            (long long)p->arena_row_naive, (unsigned long long)p->kv_bytes, p->kv_elem_bytes, (long long)p->kv_seq);
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_plan_value *v = &p->val[i];
        bool att = g->nodes[i].op == BJ_OP_ATTENTION, any = false;
        for (int k = 0; k < BJ_PIECES; k++) any |= v->row[k] != 0;
        if (!any && !att) continue;
        fprintf(out, "#   %%%u", i);
        for (int k = 0; k < BJ_PIECES; k++)
            if (v->row[k]) fprintf(out, " %s@%lld+%lld", piece[k], (long long)v->off[k], (long long)v->row[k]);
        if (any) fprintf(out, " live=%u..%u", v->live_from, v->live_to);
        if (att) fprintf(out, " kv=%llu+2x%llu", (unsigned long long)v->kv_off, (unsigned long long)v->kv_half);
        fputc('\n', out);
    }
}

void bj_pass_print_plan(const bj_graph *g, const bj_pass_ctx *cx, FILE *out) {
    if (cx->steps_valid) bj_print_steps(g, &cx->kplan, out);
    if (cx->mem_valid) bj_print_memory(g, &cx->kplan, out);
}
