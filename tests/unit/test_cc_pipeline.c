/* tests/unit/test_cc_pipeline.c -- the pass manager and the passes' graph-level contracts:
 * the table, option errors, --print-after-all dumps that each parse and verify, a memory
 * plan below the naive sum and a valid layout, the pipeline is idempotent, and the fused ops'
 * shape rules. */
#include "compiler/compiler.h"
#include "frontends/model.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static void load_kjv(bj_model *m, const char *which) {
    char path[4096];
    bj_error err = { 0 };
    snprintf(path, sizeof path, "%s/models/kjv-bitnet-11m/%s", BJ_SOURCE_DIR, which);
    cr_assert_eq(bj_model_load(m, path, &err), BJ_OK, "%s", err.msg);
}

static char *print_graph(const bj_graph *g) {
    char *s;
    bj_error err = { 0 };
    cr_assert_eq(bj_ir_print_str(g, &s, &err), BJ_OK);
    return s;
}

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

Test(cc_pipeline, table_order) {
    const char *want[] = { "canonicalize", "quantize-weights", "share-activation-quant", "fuse-norm-quant-bitlinear",
                           "select-kernels", "pack-weights", "quantize-head", "fold-epilogues", "plan-memory", NULL };
    const char *const *got = bj_pipeline_pass_names();
    for (int i = 0; want[i]; i++) cr_assert_str_eq(got[i], want[i]);
    cr_assert_null(got[9]);
}

static void expect_unknown(bj_pipeline_opts *o, const char *needle) {
    bj_model m;
    bj_error err = { 0 };
    load_kjv(&m, "packed");
    cr_assert_eq(bj_pipeline_run(&m.graph, o, &err), BJ_E_INVALID);
    cr_assert(strstr(err.msg, needle), "message '%s' does not name '%s'", err.msg, needle);
    bj_model_free(&m);
}

Test(cc_pipeline, unknown_names_are_errors) {
    bj_pipeline_opts o;
    bj_pipeline_opts_default(&o);
    o.passes = "canonicalize,no-such-pass";
    expect_unknown(&o, "'no-such-pass'");
    bj_pipeline_opts_default(&o);
    o.disable = "fuse";
    expect_unknown(&o, "--disable: unknown pass 'fuse'");
    bj_pipeline_opts_default(&o);
    o.print_after = "plan";
    expect_unknown(&o, "--print-after");
    bj_pipeline_opts_default(&o);
    o.print_before = "x";
    expect_unknown(&o, "--print-before");
}

/* Every dump of --print-after-all is a whole graph that parses back and verifies. */
Test(cc_pipeline, print_after_all_dumps_parse) {
    bj_model m;
    bj_error err = { 0 };
    char *buf = NULL;
    size_t len = 0;
    load_kjv(&m, "master");
    FILE *f = open_memstream(&buf, &len);
    bj_pipeline_opts o;
    bj_pipeline_opts_default(&o);
    o.print_after_all = true;
    o.verify_each = true;
    o.out = f;
    cr_assert_eq(bj_pipeline_run(&m.graph, &o, &err), BJ_OK, "%s", err.msg);
    fclose(f);
    cr_assert_eq(count(buf, "# *** IR Dump After "), 9);
    for (char *p = strstr(buf, "# *** IR Dump"); p;) {
        char *next = strstr(p + 1, "# *** IR Dump");
        bj_graph g;
        cr_assert_eq(bj_ir_parse(&g, p, next ? (size_t)(next - p) : strlen(p), &err), BJ_OK, "%s", err.msg);
        cr_assert_eq(bj_ir_verify(&g, &err), BJ_OK, "%s", err.msg);
        bj_graph_free(&g);
        p = next;
    }
    free(buf);
    bj_model_free(&m);
}

Test(cc_pipeline, plan_peak_below_naive) {
    int64_t tokens[] = { 1, 64, 512 };
    for (size_t k = 0; k < 3; k++) {
        bj_model m;
        bj_error err = { 0 };
        bj_pipeline_stats st;
        load_kjv(&m, "packed");
        bj_pipeline_opts o;
        bj_pipeline_opts_default(&o);
        o.plan_tokens = tokens[k];
        o.stats = &st;
        cr_assert_eq(bj_pipeline_run(&m.graph, &o, &err), BJ_OK, "%s", err.msg);
        cr_assert(st.planned);
        cr_assert_eq(st.plan_tokens, tokens[k]);
        cr_assert_gt(st.peak_bytes, 0);
        cr_assert_lt(st.peak_bytes, st.naive_bytes, "peak %llu naive %llu", (unsigned long long)st.peak_bytes,
                     (unsigned long long)st.naive_bytes);
        cr_assert_eq(st.kv_bytes, 6ull * 2 * 512 * 128 * 4); /* 6 layers, K+V, max_seq x n_kv*head_dim f32 */
        printf("plan-memory %lld tokens: peak %llu, naive %llu\n", (long long)tokens[k],
               (unsigned long long)st.peak_bytes, (unsigned long long)st.naive_bytes);
        bj_model_free(&m);
    }
}

/* The plan an executor gets is a valid layout, checked here from the graph alone: liveness
 * recomputed over the plan's steps (a result from its step to its last reader's step, scratch in
 * its own step only); no two pieces live at once share a byte; all fit the arena; the epilogues
 * are ternary matmuls' elementwise readers; the KV caches are disjoint. With fold-epilogues off
 * there are no epilogues and the layout is still valid. */
typedef struct piece { int64_t off, row; uint32_t from, to; } piece;

static void check_plan_layout(const bj_graph *g, const bj_plan *p) {
    piece *pc = malloc((size_t)g->n_nodes * BJ_PIECES * sizeof *pc);
    size_t n = 0;
    cr_assert(p->have_memory && p->n_steps > 0 && p->arena_row > 0);
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_plan_value *v = &p->val[i];
        uint32_t last = v->step;
        for (uint32_t j = i + 1; j < g->n_nodes; j++)
            for (int k = 0; k < g->nodes[j].nin; k++)
                if (g->nodes[j].in[k] == i && p->val[j].step != BJ_NONE && p->val[j].step > last) last = p->val[j].step;
        if (v->step != i && v->step != BJ_NONE) { /* an epilogue */
            const bj_node *m = &g->nodes[v->step];
            cr_assert(m->op == BJ_OP_MATMUL_TK || m->op == BJ_OP_BITLINEAR || m->op == BJ_OP_MATMUL_T);
            cr_assert(g->nodes[i].op == BJ_OP_ADD || g->nodes[i].op == BJ_OP_MUL || g->nodes[i].op == BJ_OP_RELU_SQR ||
                      g->nodes[i].op == BJ_OP_SILU);
        }
        bool q8 = g->nodes[i].dtype == BJ_DT_Q8ROW;
        for (int k = 0; k < BJ_PIECES; k++) {
            if (!v->row[k]) continue;
            bool result = k == BJ_PIECE_F || (q8 && (k == BJ_PIECE_Q || k == BJ_PIECE_QS));
            cr_assert_leq(v->off[k] + v->row[k], p->arena_row, "%%%u piece %d outside the arena", i, k);
            pc[n++] = (piece){ v->off[k], v->row[k], v->step, result ? last : v->step };
        }
    }
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++) {
            bool live = pc[a].from <= pc[b].to && pc[b].from <= pc[a].to;
            bool share = pc[a].off < pc[b].off + pc[b].row && pc[b].off < pc[a].off + pc[a].row;
            cr_assert(!(live && share), "two live pieces share bytes at %lld and %lld", (long long)pc[a].off,
                      (long long)pc[b].off);
        }
    uint64_t kv = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == BJ_OP_ATTENTION) { /* laid out in node order, back to back */
            cr_assert_eq(p->val[i].kv_off, kv);
            kv += 2 * p->val[i].kv_half;
        }
    cr_assert_eq(kv, p->kv_bytes);
    free(pc);
}

Test(cc_pipeline, plan_layout_valid) {
    const char *disable[] = { NULL, "fold-epilogues", "plan-memory", "fuse-norm-quant-bitlinear" };
    for (size_t k = 0; k < 4; k++) {
        bj_model m;
        bj_error err = { 0 };
        bj_plan plan;
        load_kjv(&m, "packed");
        bj_pipeline_opts o;
        bj_pipeline_opts_default(&o);
        o.disable = disable[k];
        o.plan = &plan;
        cr_assert_eq(bj_pipeline_run(&m.graph, &o, &err), BJ_OK, "%s", err.msg);
        check_plan_layout(&m.graph, &plan);
        cr_expect_eq(plan.n_epilogues, k == 1 ? 0 : 24, "--disable=%s: %d epilogues", disable[k] ? disable[k] : "", plan.n_epilogues);
        cr_expect_eq(plan.step_tokens, 64);
        bj_plan_free(&plan);
        bj_model_free(&m);
    }
}

/* A compiled graph is a fixpoint: compiling it again changes nothing. */
Test(cc_pipeline, idempotent) {
    bj_model m;
    bj_error err = { 0 };
    load_kjv(&m, "master");
    bj_pipeline_opts o;
    bj_pipeline_opts_default(&o);
    cr_assert_eq(bj_pipeline_run(&m.graph, &o, &err), BJ_OK, "%s", err.msg);
    char *a = print_graph(&m.graph);
    cr_assert_eq(bj_pipeline_run(&m.graph, &o, &err), BJ_OK, "%s", err.msg);
    char *b = print_graph(&m.graph);
    cr_assert_str_eq(a, b);
    cr_assert_eq(count(a, "weight_quant"), 0);
    cr_assert_eq(count(a, "= act_quant"), 0);
    cr_assert_eq(count(a, "= bitlinear"), 12);
    cr_assert_eq(count(a, "= rmsnorm_quant"), 12);
    cr_assert_eq(count(a, "= matmul_tk"), 30);
    free(a);
    free(b);
    bj_model_free(&m);
}

/* An empty --passes runs nothing; --disable of everything likewise. */
Test(cc_pipeline, empty_selection_changes_nothing) {
    bj_model m;
    bj_error err = { 0 };
    bj_pipeline_stats st;
    load_kjv(&m, "packed");
    char *a = print_graph(&m.graph);
    bj_pipeline_opts o;
    bj_pipeline_opts_default(&o);
    o.passes = "";
    o.stats = &st;
    cr_assert_eq(bj_pipeline_run(&m.graph, &o, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(st.n_passes_run, 0);
    char *b = print_graph(&m.graph);
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
    bj_model_free(&m);
}

static bj_status parse_text(const char *text, bj_graph *g, bj_error *err) {
    return bj_ir_parse(g, text, strlen(text), err);
}

Test(cc_ops, fused_shape_rules) {
    const char *head = "graph @t {max_seq=0}\n%0 = input : i32[T]\n%1 = weight \"e\" {scale=1} : f32[16,8]\n"
                       "%2 = embed %1, %0 : f32[T,8]\n%3 = weight \"g\" {scale=1} : f32[8]\n";
    char text[1024];
    bj_graph g;
    bj_error err = { 0 };
    snprintf(text, sizeof text, "%s%%4 = weight \"w\" {scale=1} : t8[4,6]\n"
             "%%5 = bitlinear %%2, %%3, %%4 {variant=0, isa=0, layout=0, packed=0, eps=1e-5} : f32[T,4]\n", head);
    cr_assert_eq(parse_text(text, &g, &err), BJ_E_FORMAT);
    cr_assert(strstr(err.msg, "weight %4 has 6 columns"), "%s", err.msg);
    snprintf(text, sizeof text, "%s%%4 = rmsnorm_quant %%2, %%3 {eps=1e-5} : q8row[T,8]\n%%5 = weight \"w\" {scale=1} : t8[4,8]\n"
             "%%6 = matmul_tk %%4, %%5 {variant=-1, isa=0, layout=0, packed=0} : f32[T,4]\n", head);
    cr_assert_eq(parse_text(text, &g, &err), BJ_E_FORMAT);
    cr_assert(strstr(err.msg, "variant must be >= 0"), "%s", err.msg);
    snprintf(text, sizeof text, "%s%%4 = rmsnorm_quant %%2, %%3 {eps=1e-5} : q8row[T,8]\n%%5 = weight \"w\" {scale=1} : t8[4,8]\n"
             "%%6 = matmul_tk %%4, %%5 {variant=1, isa=2, layout=1, packed=256} : f32[T,4]\n", head);
    cr_assert_eq(parse_text(text, &g, &err), BJ_OK, "%s", err.msg);
    bj_graph_free(&g);
}
