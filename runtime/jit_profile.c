/* runtime/jit_profile.c -- where a JIT engine created with options.profile spent its forward
 * time (bj_jit_profile): the executor (jit_exec.c) sums each step's wall time on its node and
 * counts the epilogues folded into it; here the sums become one row per op kind, the ternary
 * matmuls one row per shape and the head apart, by time. */
#include "runtime/jit_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int prof_row(bj_jit_profile_row *rows, int *n, int cap, const char *what) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(rows[i].what, what)) return i;
    if (*n == cap) return -1;
    memset(&rows[*n], 0, sizeof rows[*n]);
    snprintf(rows[*n].what, sizeof rows[*n].what, "%s", what);
    return (*n)++;
}

static int prof_by_time(const void *a, const void *b) {
    double x = ((const bj_jit_profile_row *)a)->ms, y = ((const bj_jit_profile_row *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

bj_status bj_jit_profile(const bj_engine *base, bj_jit_profile_row *rows, int cap, int *n, bj_jit_profile_sum *sum,
                         bj_error *err) {
    *n = 0;
    if (base->forward != bj_jit_exec_forward || !((const jit_engine *)base)->prof_ns)
        return BJ_FAIL(err, BJ_E_INVALID, "no profile: not a JIT engine created with the profile option");
    const jit_engine *e = (const jit_engine *)base;
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        if (!e->prof_steps[i]) continue;
        const bj_node *nd = &e->g->nodes[i];
        char what[48];
        uint64_t bytes = 0;
        if (e->mm[i]) {
            snprintf(what, sizeof what, "matmul %lldx%lld", (long long)e->mm[i]->M, (long long)e->mm[i]->K);
            bytes = bj_cg_packed_size(&e->mm[i]->desc);
        } else if (nd->op == BJ_OP_MATMUL_F) {
            const bj_node *w = &e->g->nodes[nd->in[1]];
            snprintf(what, sizeof what, "head %lldx%lld%s", (long long)w->shape.d[0], (long long)w->shape.d[1],
                     e->head8[i].q ? " (8-bit)" : "");
            bytes = e->head8[i].q ? bj_rt_q8w_bytes(w->shape.d[0], w->shape.d[1]) : w->nbytes;
        } else {
            snprintf(what, sizeof what, "%s", bj_op_name((bj_op)nd->op));
        }
        int r = prof_row(rows, n, cap, what);
        if (r < 0) continue;
        rows[r].steps += e->prof_steps[i];
        rows[r].ms += (double)e->prof_ns[i] * 1e-6;
        rows[r].bytes += bytes * (uint64_t)e->prof_steps[i];
    }
    qsort(rows, (size_t)*n, sizeof *rows, prof_by_time);
    if (sum) *sum = e->prof_sum;
    return BJ_OK;
}

