/* ir/print.c -- the textual form of a graph (bitjitc --emit=ir, --print-after-all).
 *
 *   graph @NAME {max_seq=N}
 *   %I = OP [%A, %B ...] [{attr=value, ...}] : TYPE          (weights: OP is weight "NAME")
 *
 * One node per line, %I equal to the node index, every declared attribute in .def table
 * order (ints %lld, floats %.17g so they parse back to the same double). parse.c reads
 * exactly this, and print(parse(print(g))) is byte-identical to print(g). The printer
 * never fails on a malformed graph (unknown ops or dtypes print as '?') because it is the
 * tool used to look at one. */
#include "ir/ir.h"

#include <stdlib.h>

static void bj_print_name(const char *name, FILE *out) {
    fputc('"', out);
    for (const char *p = name ? name : ""; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

static void bj_print_attrs(const bj_node *n, const bj_op_info *o, FILE *out) {
    if (!o->n_iattr && !o->n_fattr) return;
    fputs(" {", out);
    for (int i = 0; i < o->n_iattr; i++)
        fprintf(out, "%s%s=%lld", i ? ", " : "", o->iattr[i], (long long)n->iattr[i]);
    for (int i = 0; i < o->n_fattr; i++)
        fprintf(out, "%s%s=%.17g", i || o->n_iattr ? ", " : "", o->fattr[i], n->fattr[i]);
    fputc('}', out);
}

static void bj_print_node(const bj_graph *g, uint32_t i, FILE *out) {
    const bj_node *n = &g->nodes[i];
    const bj_op_info *o = bj_op_get((bj_op)n->op);
    char type[BJ_TYPE_STR_MAX];
    fprintf(out, "%%%u = %s", i, o ? o->name : "?");
    if (n->op == BJ_OP_WEIGHT) {
        fputc(' ', out);
        bj_print_name(n->name, out);
    }
    for (int k = 0; k < n->nin && k < BJ_MAX_IN; k++) fprintf(out, "%s%%%u", k ? ", " : " ", n->in[k]);
    if (o) bj_print_attrs(n, o, out);
    fprintf(out, " : %s\n", bj_ir_type_str((bj_dtype)n->dtype, n->shape, type, sizeof type));
}

bj_status bj_ir_print(const bj_graph *g, FILE *out) {
    fprintf(out, "graph @%s {max_seq=%lld}\n", g->name ? g->name : "graph", (long long)g->max_seq);
    for (uint32_t i = 0; i < g->n_nodes; i++) bj_print_node(g, i, out);
    return ferror(out) ? BJ_E_IO : BJ_OK;
}

bj_status bj_ir_print_str(const bj_graph *g, char **out, bj_error *err) {
    size_t len = 0;
    *out = NULL;
    FILE *f = open_memstream(out, &len);
    if (!f) return BJ_FAIL(err, BJ_E_NOMEM, "printing graph @%s: out of memory", g->name);
    bj_status st = bj_ir_print(g, f);
    if (fclose(f) != 0 || st != BJ_OK) {
        free(*out);
        *out = NULL;
        return BJ_FAIL(err, BJ_E_NOMEM, "printing graph @%s: out of memory", g->name);
    }
    return BJ_OK;
}
