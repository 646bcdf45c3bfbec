/* ir/verify.c -- the graph verifier (style.md C6: the pass manager runs it after every pass).
 *
 * Per node: a known op, the op's arity, inputs that exist and come earlier (topological
 * order), valid attributes, and a stored dtype/shape equal to what the op's rule infers
 * (bj_ir_infer, the same function the builder and parser use, so the three agree).
 * Per graph: a printable name, weight names unique, attention layer ids unique (each owns
 * one KV-cache slot), a positive max_seq when there is a KV cache to size, and exactly one
 * OUTPUT, last. Errors name the node (%N) and its op. Needs nothing; changes nothing. */
#include "ir/ir.h"

#include <stdlib.h>
#include <string.h>

/* Only weights carry a name or data: anything else would be silently dropped by the text
 * form and ignored by the executors. */
static bj_status bj_verify_payload(const bj_node *n, uint32_t i, bj_error *err) {
    if (n->op == BJ_OP_WEIGHT) return BJ_OK;
    if (n->name || n->data || n->nbytes)
        return BJ_FAIL(err, BJ_E_INVALID, "%s %%%u: only weights may have a name or data", bj_op_name((bj_op)n->op), i);
    return BJ_OK;
}

static bj_status bj_verify_node(const bj_graph *g, uint32_t i, bj_error *err) {
    const bj_node *n = &g->nodes[i];
    char have[BJ_TYPE_STR_MAX], want[BJ_TYPE_STR_MAX];
    bj_dtype dt;
    bj_shape s;
    BJ_TRY(bj_ir_infer(g, n, &dt, &s, err)); /* op id, arity, order, attrs, operand types */
    BJ_TRY(bj_verify_payload(n, i, err));
    if (n->dtype != dt || !bj_shape_eq(n->shape, s))
        return BJ_FAIL(err, BJ_E_INVALID, "%s %%%u: stored type %s differs from inferred %s",
                       bj_op_name((bj_op)n->op), i, bj_ir_type_str((bj_dtype)n->dtype, n->shape, have, sizeof have),
                       bj_ir_type_str(dt, s, want, sizeof want));
    return BJ_OK;
}

/* Collects pointers to the nodes of one op (malloc'd; *out NULL when there are none). */
static bj_status bj_verify_collect(const bj_graph *g, bj_op op, const bj_node ***out, size_t *count,
                                   bj_error *err) {
    size_t n = 0;
    *out = NULL;
    *count = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) n += g->nodes[i].op == op;
    if (!n) return BJ_OK;
    const bj_node **v = malloc(n * sizeof *v);
    if (!v) return BJ_FAIL(err, BJ_E_NOMEM, "verify @%s: out of memory", g->name);
    n = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == op) v[n++] = &g->nodes[i];
    *out = v;
    *count = n;
    return BJ_OK;
}

static int bj_cmp_name(const void *a, const void *b) {
    const bj_node *x = *(const bj_node *const *)a, *y = *(const bj_node *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x > y) - (x < y);
}

static int bj_cmp_layer(const void *a, const void *b) {
    const bj_node *x = *(const bj_node *const *)a, *y = *(const bj_node *const *)b;
    if (x->iattr[0] != y->iattr[0]) return x->iattr[0] < y->iattr[0] ? -1 : 1;
    return (x > y) - (x < y);
}

/* Sorting makes duplicates adjacent: O(n log n) for graphs with thousands of weights. */
static bj_status bj_verify_unique(const bj_graph *g, bj_op op, bj_error *err) {
    const bj_node **v;
    size_t n;
    bj_status st = BJ_OK;
    BJ_TRY(bj_verify_collect(g, op, &v, &n, err));
    if (!n) return BJ_OK;
    qsort(v, n, sizeof *v, op == BJ_OP_WEIGHT ? bj_cmp_name : bj_cmp_layer);
    for (size_t k = 1; k < n && st == BJ_OK; k++) {
        uint32_t a = (uint32_t)(v[k - 1] - g->nodes), b = (uint32_t)(v[k] - g->nodes);
        if (op == BJ_OP_WEIGHT && strcmp(v[k]->name, v[k - 1]->name) == 0)
            st = BJ_FAIL(err, BJ_E_INVALID, "weight %%%u: name \"%s\" is already used by weight %%%u",
                         b, v[k]->name, a);
        if (op == BJ_OP_ATTENTION && v[k]->iattr[0] == v[k - 1]->iattr[0])
            st = BJ_FAIL(err, BJ_E_INVALID, "attention %%%u: layer %lld is already used by attention %%%u",
                         b, (long long)v[k]->iattr[0], a);
    }
    free(v);
    return st;
}

static bj_status bj_verify_output(const bj_graph *g, bj_error *err) {
    uint32_t out = BJ_NONE;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != BJ_OP_OUTPUT) continue;
        if (out != BJ_NONE)
            return BJ_FAIL(err, BJ_E_INVALID, "output %%%u: graph @%s already has output %%%u", i, g->name, out);
        out = i;
    }
    if (out == BJ_NONE) return BJ_FAIL(err, BJ_E_INVALID, "graph @%s has no output node", g->name);
    if (out != g->n_nodes - 1)
        return BJ_FAIL(err, BJ_E_INVALID, "output %%%u: must be the last node (graph has %u nodes)", out, g->n_nodes);
    return BJ_OK;
}

static bj_status bj_verify_header(const bj_graph *g, bj_error *err) {
    if (!g->name || !*g->name) return BJ_FAIL(err, BJ_E_INVALID, "graph has no name");
    for (const char *p = g->name; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok) return BJ_FAIL(err, BJ_E_INVALID, "graph @%s: name may only use [A-Za-z0-9_.-]", g->name);
    }
    if (g->max_seq < 0) return BJ_FAIL(err, BJ_E_INVALID, "graph @%s: max_seq %lld is negative", g->name, (long long)g->max_seq);
    for (uint32_t i = 0; i < g->n_nodes && g->max_seq == 0; i++)
        if (g->nodes[i].op == BJ_OP_ATTENTION)
            return BJ_FAIL(err, BJ_E_INVALID, "attention %%%u: graph @%s has max_seq 0, the KV cache needs a size", i, g->name);
    return BJ_OK;
}

bj_status bj_ir_verify(const bj_graph *g, bj_error *err) {
    BJ_TRY(bj_verify_header(g, err));
    for (uint32_t i = 0; i < g->n_nodes; i++) BJ_TRY(bj_verify_node(g, i, err));
    BJ_TRY(bj_verify_unique(g, BJ_OP_WEIGHT, err));
    BJ_TRY(bj_verify_unique(g, BJ_OP_ATTENTION, err));
    return bj_verify_output(g, err);
}
