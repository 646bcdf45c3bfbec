/* tests/unit/test_ir_graph.c -- the builder and the verifier, on one realistic BitNet
 * decoder layer (embed, sub-normed attention with GQA and RoPE, squared-ReLU FFN, final
 * norm and a high-precision head), plus its print -> parse -> print round trip.
 *
 * The verifier tests start from the verified layer, break exactly one thing the way a
 * buggy pass would, and check that the error names the right node and problem. */
#include "ir/ir.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define D 384
#define H 6
#define HKV 2
#define HD 64
#define FFN 1024
#define VOCAB 4096

/* Indices of the nodes the tests poke at. */
typedef struct layer {
    uint32_t ids, embed, norm_w, norm, q_master, q_w, q, k_w, k, q_rope, k_rope, attn, sub_norm,
        o, resid1, up, gate_act, ffn_mul, down, resid2, head, out;
} layer;

static const float g_norm_data[D]; /* bound to one weight: binding is part of the contract */

static uint32_t w(bj_graph *g, const char *name, bj_dtype dt, int64_t rows, int64_t cols, double scale,
                  bj_error *err) {
    bj_shape s = rows ? bj_shape2(rows, cols) : bj_shape1(cols);
    return bj_ir_weight(g, name, dt, s, scale, NULL, 0, err);
}

static uint32_t rmsnorm(bj_graph *g, uint32_t x, uint32_t gain, bj_error *err) {
    const uint32_t in[2] = { x, gain };
    const double eps = 1e-5;
    return bj_ir_add(g, BJ_OP_RMSNORM, in, 2, NULL, &eps, err);
}

static uint32_t bitlinear(bj_graph *g, uint32_t xq, uint32_t weight, bj_error *err) {
    return bj_ir_binary(g, BJ_OP_MATMUL_T, xq, weight, err);
}

static uint32_t rope(bj_graph *g, uint32_t x, int64_t heads, bj_error *err) {
    const int64_t ia[2] = { heads, HD };
    const double theta = 10000.0;
    return bj_ir_add(g, BJ_OP_ROPE, &x, 1, ia, &theta, err);
}

static void build_attention(bj_graph *g, layer *L, uint32_t x, bj_error *err) {
    L->norm_w = bj_ir_weight(g, "model.layers.0.input_layernorm.weight", BJ_DT_F32, bj_shape1(D), 1,
                             g_norm_data, sizeof g_norm_data, err);
    L->norm = rmsnorm(g, x, L->norm_w, err);
    uint32_t xq = bj_ir_unary(g, BJ_OP_ACT_QUANT, L->norm, err);
    const int64_t mode = 0;
    L->q_master = w(g, "model.layers.0.self_attn.q_proj.weight", BJ_DT_BF16, D, D, 1, err);
    L->q_w = bj_ir_add(g, BJ_OP_WEIGHT_QUANT, &L->q_master, 1, &mode, NULL, err);
    L->q = bitlinear(g, xq, L->q_w, err);
    L->k_w = w(g, "model.layers.0.self_attn.k_proj.weight", BJ_DT_T8, HKV * HD, D, 0.0123, err);
    L->k = bitlinear(g, xq, L->k_w, err);
    uint32_t v_w = w(g, "model.layers.0.self_attn.v_proj.weight", BJ_DT_T2HF, HKV * HD, D, 0.5, err);
    uint32_t v = bitlinear(g, xq, v_w, err);
    L->q_rope = rope(g, L->q, H, err);
    L->k_rope = rope(g, L->k, HKV, err);
    const uint32_t qkv[3] = { L->q_rope, L->k_rope, v };
    const int64_t ia[4] = { 0, H, HKV, HD };
    L->attn = bj_ir_add(g, BJ_OP_ATTENTION, qkv, 3, ia, NULL, err);
    uint32_t sub_w = w(g, "model.layers.0.self_attn.attn_sub_norm.weight", BJ_DT_BF16, 0, D, 1, err);
    L->sub_norm = rmsnorm(g, L->attn, sub_w, err);
    uint32_t oq = bj_ir_unary(g, BJ_OP_ACT_QUANT, L->sub_norm, err);
    uint32_t o_w = w(g, "model.layers.0.self_attn.o_proj.weight", BJ_DT_T2, D, D, 0.25, err);
    L->o = bitlinear(g, oq, o_w, err);
    L->resid1 = bj_ir_binary(g, BJ_OP_ADD, x, L->o, err);
}

static void build_ffn(bj_graph *g, layer *L, bj_error *err) {
    uint32_t nw = w(g, "model.layers.0.post_attention_layernorm.weight", BJ_DT_F32, 0, D, 1, err);
    uint32_t xq = bj_ir_unary(g, BJ_OP_ACT_QUANT, rmsnorm(g, L->resid1, nw, err), err);
    uint32_t gate_w = w(g, "model.layers.0.mlp.gate_proj.weight", BJ_DT_T8, FFN, D, 0.031, err);
    uint32_t up_w = w(g, "model.layers.0.mlp.up_proj.weight", BJ_DT_B8, FFN, D, 0.75, err);
    uint32_t gate = bitlinear(g, xq, gate_w, err);
    L->up = bitlinear(g, xq, up_w, err);
    L->gate_act = bj_ir_unary(g, BJ_OP_RELU_SQR, gate, err);
    L->ffn_mul = bj_ir_binary(g, BJ_OP_MUL, L->gate_act, L->up, err);
    uint32_t sw = w(g, "model.layers.0.mlp.ffn_sub_norm.weight", BJ_DT_F32, 0, FFN, 1, err);
    uint32_t dq = bj_ir_unary(g, BJ_OP_ACT_QUANT, rmsnorm(g, L->ffn_mul, sw, err), err);
    uint32_t down_w = w(g, "model.layers.0.mlp.down_proj.weight", BJ_DT_T8, D, FFN, 0.02, err);
    L->down = bitlinear(g, dq, down_w, err);
    L->resid2 = bj_ir_binary(g, BJ_OP_ADD, L->resid1, L->down, err);
}

/* The whole layer; asserts that every builder call succeeded and the result verifies. */
static layer build_layer(bj_graph *g) {
    layer L;
    bj_error err = { 0 };
    cr_assert_eq(bj_graph_init(g, "kjv", &err), BJ_OK);
    g->max_seq = 512;
    L.ids = bj_ir_input(g, &err);
    uint32_t table = w(g, "model.embed_tokens.weight", BJ_DT_BF16, VOCAB, D, 1, &err);
    L.embed = bj_ir_binary(g, BJ_OP_EMBED, table, L.ids, &err);
    build_attention(g, &L, L.embed, &err);
    build_ffn(g, &L, &err);
    uint32_t fw = w(g, "model.norm.weight", BJ_DT_F32, 0, D, 1, &err);
    uint32_t final = rmsnorm(g, L.resid2, fw, &err);
    uint32_t head_w = w(g, "lm_head.weight", BJ_DT_BF16, VOCAB, D, 1, &err);
    L.head = bj_ir_binary(g, BJ_OP_MATMUL_F, final, head_w, &err);
    L.out = bj_ir_unary(g, BJ_OP_OUTPUT, L.head, &err);
    cr_assert_neq(L.out, BJ_NONE, "builder failed: %s", err.msg);
    cr_assert_eq(bj_ir_verify(g, &err), BJ_OK, "verify: %s", err.msg);
    return L;
}

/* Verify must fail, with a message containing each of the given fragments. */
static void expect_verify_error(const bj_graph *g, const char *frag1, const char *frag2) {
    bj_error err = { 0 };
    cr_assert_neq(bj_ir_verify(g, &err), BJ_OK, "verify accepted a broken graph");
    cr_assert_eq(err.code, BJ_E_INVALID, "%s", err.msg);
    cr_assert(strstr(err.msg, frag1), "message '%s' lacks '%s'", err.msg, frag1);
    if (frag2) cr_assert(strstr(err.msg, frag2), "message '%s' lacks '%s'", err.msg, frag2);
}

/* ---- builder ----------------------------------------------------------------------------- */
Test(ir_build, layer_types) {
    bj_graph g;
    layer L = build_layer(&g);
    char buf[BJ_TYPE_STR_MAX];
    const bj_node *n = g.nodes;
#define TYPE(i) bj_ir_type_str((bj_dtype)n[i].dtype, n[i].shape, buf, sizeof buf)
    cr_assert_str_eq(TYPE(L.ids), "i32[T]");
    cr_assert_str_eq(TYPE(L.embed), "f32[T,384]");
    cr_assert_str_eq(TYPE(L.q_w), "t8[384,384]");
    cr_assert_str_eq(TYPE(L.k), "f32[T,128]");
    cr_assert_str_eq(TYPE(L.attn), "f32[T,384]");
    cr_assert_str_eq(TYPE(L.up), "f32[T,1024]");
    cr_assert_str_eq(TYPE(L.head), "f32[T,4096]");
    cr_assert_str_eq(TYPE(L.out), "f32[T,4096]");
    cr_assert_str_eq(TYPE(L.norm_w + 2), "q8row[T,384]"); /* act_quant after the first norm */
#undef TYPE
    cr_assert_eq(n[L.norm_w].data, g_norm_data);
    cr_assert_eq(n[L.norm_w].nbytes, sizeof g_norm_data);
    cr_assert_eq(n[L.k_w].fattr[0], 0.0123);
    cr_assert_eq(n[L.q].in[0], L.norm_w + 2);
    cr_assert_eq(n[L.q].in[1], L.q_w);
    cr_assert_eq(n[L.q].in[2], BJ_NONE);
    cr_assert_eq(bj_ir_find_output(&g), L.out);
    cr_assert_eq(L.out, g.n_nodes - 1);
    cr_assert_eq(g.n_nodes, 42);
    bj_graph_free(&g);
    cr_assert_null(g.nodes);
}

Test(ir_build, error_names_op_node_and_operand) {
    bj_graph g;
    layer L = build_layer(&g);
    bj_error err = { 0 };
    uint32_t n0 = g.n_nodes;
    uint32_t bad = w(&g, "bad.weight", BJ_DT_T8, D, 385, 1, &err);
    uint32_t xq = L.norm_w + 2;
    cr_assert_eq(bitlinear(&g, xq, bad, &err), BJ_NONE);
    char want[128];
    snprintf(want, sizeof want, "matmul_t %%%u: weight %%%u has 385 columns, activation %%%u has 384", n0 + 1, bad, xq);
    cr_assert_str_eq(err.msg, want);
    cr_assert_eq(err.code, BJ_E_INVALID);
    cr_assert_eq(g.n_nodes, n0 + 1, "a failed add must not leave a node behind");

    cr_assert_eq(bitlinear(&g, L.q, bad, &err), BJ_NONE); /* f32 where q8row is wanted */
    cr_assert(strstr(err.msg, "activation %") && strstr(err.msg, "must be q8row[T,D], got f32[T,384]"), "%s", err.msg);
    cr_assert_eq(bj_ir_binary(&g, BJ_OP_MATMUL_F, L.embed, bad, &err), BJ_NONE); /* t8 where float is wanted */
    cr_assert(strstr(err.msg, "must be a float matrix [N,K], got t8[384,385]"), "%s", err.msg);
    cr_assert_eq(bj_ir_binary(&g, BJ_OP_ADD, L.embed, L.k, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "add %") && strstr(err.msg, "shapes differ"), "%s", err.msg);
    bj_graph_free(&g);
}

Test(ir_build, none_propagates_without_touching_err) {
    bj_graph g;
    build_layer(&g);
    bj_error err = { 0 };
    uint32_t n0 = g.n_nodes;
    uint32_t x = bj_ir_unary(&g, BJ_OP_RELU_SQR, 9999, &err); /* a real error */
    cr_assert_eq(x, BJ_NONE);
    cr_assert(strstr(err.msg, "relu_sqr %"), "%s", err.msg);
    strcpy(err.msg, "first error");
    cr_assert_eq(bj_ir_unary(&g, BJ_OP_SILU, x, &err), BJ_NONE);
    cr_assert_eq(bj_ir_binary(&g, BJ_OP_ADD, 0, x, &err), BJ_NONE);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_ROPE, &x, 1, NULL, NULL, &err), BJ_NONE);
    cr_assert_str_eq(err.msg, "first error");
    cr_assert_eq(g.n_nodes, n0);
    bj_graph_free(&g);
}

Test(ir_build, weight_rules) {
    bj_graph g;
    bj_error err = { 0 };
    static const uint8_t bytes[4 * 384];
    cr_assert_eq(bj_graph_init(&g, "w", &err), BJ_OK);
    cr_assert_neq(w(&g, "a", BJ_DT_T8, 4, 4, 0.5, &err), BJ_NONE);
    cr_assert_eq(w(&g, "a", BJ_DT_T2, 4, 4, 0.5, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "\"a\" is already used by weight %0"), "%s", err.msg);
    cr_assert_eq(w(&g, "", BJ_DT_F32, 0, 4, 1, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "name is empty"), "%s", err.msg);
    cr_assert_eq(bj_ir_weight(&g, NULL, BJ_DT_F32, bj_shape1(4), 1, NULL, 0, &err), BJ_NONE);
    cr_assert_eq(w(&g, "nl\n", BJ_DT_F32, 0, 4, 1, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "control byte 0x0a"), "%s", err.msg);
    cr_assert_eq(w(&g, "f", BJ_DT_F32, 0, 4, 2, &err), BJ_NONE); /* float weights have scale 1 */
    cr_assert(strstr(err.msg, "scale must be 1"), "%s", err.msg);
    cr_assert_eq(w(&g, "t", BJ_DT_T8, 4, 4, 0, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "scale must be positive"), "%s", err.msg);
    cr_assert_eq(w(&g, "q", BJ_DT_Q8ROW, 4, 4, 1, &err), BJ_NONE);
    cr_assert_eq(w(&g, "z", BJ_DT_F32, 4, 0, 1, &err), BJ_NONE);
    cr_assert_eq(bj_ir_weight(&g, "T", BJ_DT_F32, bj_shape2(BJ_DIM_T, 4), 1, NULL, 0, &err), BJ_NONE);
    cr_assert_eq(bj_ir_weight(&g, "3d", BJ_DT_F32, (bj_shape){ 3, { 2, 2, 2 } }, 1, NULL, 0, &err), BJ_NONE);
    cr_assert_eq(bj_ir_weight(&g, "huge", BJ_DT_F32, bj_shape2(INT64_MAX, INT64_MAX), 1, NULL, 0, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "too large"), "%s", err.msg);
    cr_assert_eq(bj_ir_weight(&g, "dt", (bj_dtype)300, bj_shape1(4), 1, NULL, 0, &err), BJ_NONE);
    /* Bound data must be exactly the type's size (t2hf [16,384] = 4 * 384 bytes). */
    cr_assert_eq(bj_ir_weight(&g, "p", BJ_DT_T2HF, bj_shape2(16, 384), 1, bytes, sizeof bytes - 1, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "1535 bytes, its type needs 1536"), "%s", err.msg);
    cr_assert_neq(bj_ir_weight(&g, "p", BJ_DT_T2HF, bj_shape2(16, 384), 1, bytes, sizeof bytes, &err), BJ_NONE,
                  "%s", err.msg);
    cr_assert_eq(g.n_nodes, 2);
    /* Weights only come from bj_ir_weight. */
    cr_assert_eq(bj_ir_add(&g, BJ_OP_WEIGHT, NULL, 0, NULL, NULL, &err), BJ_NONE);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_COUNT, NULL, 0, NULL, NULL, &err), BJ_NONE);
    bj_graph_free(&g);
}

Test(ir_build, attribute_rules) {
    bj_graph g;
    layer L = build_layer(&g);
    bj_error err = { 0 };
    const int64_t mode2 = 2, rope_odd[2] = { H, 63 }, att_bad[4] = { 1, H, 4, HD }, att_neg[4] = { -1, H, HKV, HD };
    const double eps0 = 0, eps_neg = -1e-5, theta = 10000;
    const uint32_t qkv[3] = { L.q_rope, L.k_rope, L.k_rope };
    uint32_t rn[2] = { L.embed, L.norm_w };
    cr_assert_eq(bj_ir_add(&g, BJ_OP_WEIGHT_QUANT, &L.q_master, 1, &mode2, NULL, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "weight_quant %") && strstr(err.msg, "mode must be 0"), "%s", err.msg);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_ROPE, &L.q, 1, rope_odd, &theta, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "head_dim must be positive and even, got 63"), "%s", err.msg);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_ROPE, &L.q, 1, (int64_t[]){ H, HD }, NULL, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "theta must be positive"), "%s", err.msg);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_ROPE, &L.q, 1, (int64_t[]){ 5, HD }, &theta, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "input %") && strstr(err.msg, "384 columns, n_head*head_dim = 5*64 = 320"), "%s", err.msg);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_ATTENTION, qkv, 3, att_bad, NULL, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "n_head 6 is not a multiple of n_kv 4"), "%s", err.msg);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_ATTENTION, qkv, 3, att_neg, NULL, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "layer must be >= 0"), "%s", err.msg);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_RMSNORM, rn, 2, NULL, &eps0, &err), BJ_NONE);
    cr_assert(strstr(err.msg, "eps must be positive"), "%s", err.msg);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_RMSNORM, rn, 2, NULL, &eps_neg, &err), BJ_NONE);
    cr_assert_eq(bj_ir_add(&g, BJ_OP_RMSNORM, rn, 2, NULL, NULL, &err), BJ_NONE); /* NULL attrs are zeros */
    bj_graph_free(&g);
}

Test(ir_build, grows_past_initial_capacity) {
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_graph_init(&g, "long", &err), BJ_OK);
    uint32_t table = w(&g, "e", BJ_DT_F16, 8, 4, 1, &err), ids = bj_ir_input(&g, &err);
    uint32_t x = bj_ir_binary(&g, BJ_OP_EMBED, table, ids, &err);
    for (int i = 0; i < 5000; i++) x = bj_ir_unary(&g, i % 2 ? BJ_OP_SILU : BJ_OP_RELU_SQR, x, &err);
    x = bj_ir_unary(&g, BJ_OP_OUTPUT, x, &err);
    cr_assert_eq(x, 5003, "%s", err.msg);
    cr_assert_geq(g.cap, g.n_nodes);
    cr_assert_eq(bj_ir_verify(&g, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(g.nodes[5002].in[0], 5001);
    bj_graph_free(&g);
}

Test(ir_build, graph_name_is_sanitised) {
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_graph_init(&g, "my model/v1.5-b", &err), BJ_OK);
    cr_assert_str_eq(g.name, "my_model_v1.5-b");
    cr_assert_eq(g.n_nodes, 0);
    cr_assert_eq(bj_ir_find_output(&g), BJ_NONE);
    bj_graph_free(&g);
    cr_assert_eq(bj_graph_init(&g, NULL, &err), BJ_OK);
    cr_assert_str_eq(g.name, "graph");
    bj_graph_free(&g);
}

/* ---- verifier ---------------------------------------------------------------------------- */
Test(ir_verify, out_of_order_input) {
    bj_graph g;
    layer L = build_layer(&g);
    g.nodes[L.q].in[1] = L.resid1; /* a later node */
    char want[64];
    snprintf(want, sizeof want, "matmul_t %%%u: input 1 is %%%u", L.q, L.resid1);
    expect_verify_error(&g, want, "does not come before");
    g.nodes[L.q].in[1] = L.q; /* itself */
    expect_verify_error(&g, "does not come before", NULL);
    g.nodes[L.q].in[1] = BJ_NONE;
    expect_verify_error(&g, "input 1 is missing", NULL);
    bj_graph_free(&g);
}

Test(ir_verify, wrong_arity) {
    bj_graph g;
    layer L = build_layer(&g);
    g.nodes[L.gate_act].nin = 2;
    g.nodes[L.gate_act].in[1] = 0;
    char want[64];
    snprintf(want, sizeof want, "relu_sqr %%%u: takes 1 input, node has 2", L.gate_act);
    expect_verify_error(&g, want, NULL);
    g.nodes[L.gate_act].nin = 1;
    g.nodes[L.attn].nin = 2;
    expect_verify_error(&g, "attention %", "takes 3 inputs, node has 2");
    bj_graph_free(&g);
}

Test(ir_verify, bad_op_id) {
    bj_graph g;
    layer L = build_layer(&g);
    g.nodes[L.o].op = BJ_OP_COUNT;
    expect_verify_error(&g, "unknown op id", NULL);
    bj_graph_free(&g);
}

Test(ir_verify, dtype_mismatch) {
    bj_graph g;
    layer L = build_layer(&g);
    g.nodes[L.resid1].dtype = BJ_DT_F16;
    char want[96];
    snprintf(want, sizeof want, "add %%%u: stored type f16[T,384] differs from inferred f32[T,384]", L.resid1);
    expect_verify_error(&g, want, NULL);
    g.nodes[L.resid1].dtype = BJ_DT_F32;
    g.nodes[L.q_w].dtype = BJ_DT_T2; /* what a repacking pass that forgot to retype would do */
    expect_verify_error(&g, "weight_quant %", "stored type t2[384,384] differs from inferred t8[384,384]");
    bj_graph_free(&g);
}

Test(ir_verify, shape_mismatch) {
    bj_graph g;
    layer L = build_layer(&g);
    g.nodes[L.head].shape.d[1] = 4095;
    expect_verify_error(&g, "matmul_f %", "stored type f32[T,4095] differs from inferred f32[T,4096]");
    g.nodes[L.head].shape.d[1] = 4096;
    g.nodes[L.head].shape.ndim = 3;
    expect_verify_error(&g, "matmul_f %", "differs");
    g.nodes[L.head].shape.ndim = 2;
    /* A weight whose shape changed makes its consumer fail with the consumer's rule. */
    g.nodes[L.k_w].shape.d[1] = 385;
    char want[96];
    snprintf(want, sizeof want, "matmul_t %%%u: weight %%%u has 385 columns", L.k, L.k_w);
    expect_verify_error(&g, want, NULL);
    bj_graph_free(&g);
}

Test(ir_verify, output_rules) {
    bj_graph g;
    layer L = build_layer(&g);
    bj_error err = { 0 };
    g.n_nodes--; /* drop the output */
    expect_verify_error(&g, "has no output node", NULL);
    cr_assert_eq(bj_ir_find_output(&g), BJ_NONE);
    g.n_nodes++;
    cr_assert_neq(bj_ir_unary(&g, BJ_OP_SILU, L.head, &err), BJ_NONE);
    expect_verify_error(&g, "must be the last node", NULL);
    cr_assert_neq(bj_ir_unary(&g, BJ_OP_OUTPUT, L.head, &err), BJ_NONE);
    expect_verify_error(&g, "already has output", NULL);
    cr_assert_eq(bj_ir_find_output(&g), BJ_NONE);
    bj_graph_free(&g);
}

Test(ir_verify, duplicate_weight_names) {
    bj_graph g;
    layer L = build_layer(&g);
    g.nodes[L.k_w].name = g.nodes[L.q_master].name;
    char want[160];
    snprintf(want, sizeof want, "weight %%%u: name \"%s\" is already used by weight %%%u", L.k_w,
             g.nodes[L.q_master].name, L.q_master);
    expect_verify_error(&g, want, NULL);
    bj_graph_free(&g);
}

Test(ir_verify, bad_attrs) {
    bj_graph g;
    layer L = build_layer(&g);
    g.nodes[L.q_rope].iattr[1] = 63;
    expect_verify_error(&g, "rope %", "head_dim must be positive and even");
    g.nodes[L.q_rope].iattr[1] = HD;
    g.nodes[L.attn].iattr[2] = 4;
    expect_verify_error(&g, "attention %", "n_head 6 is not a multiple of n_kv 4");
    g.nodes[L.attn].iattr[2] = 3; /* a divisor, but then k has the wrong width */
    expect_verify_error(&g, "k %", "n_kv*head_dim");
    g.nodes[L.attn].iattr[2] = HKV;
    g.nodes[L.norm].fattr[0] = 0;
    expect_verify_error(&g, "rmsnorm %", "eps must be positive");
    g.nodes[L.norm].fattr[0] = -1e-6;
    expect_verify_error(&g, "eps must be positive", NULL);
    g.nodes[L.norm].fattr[0] = 1e-5;
    g.nodes[L.q_w].iattr[0] = 7;
    expect_verify_error(&g, "weight_quant %", "mode must be 0");
    g.nodes[L.q_w].iattr[0] = 0;
    g.nodes[L.resid1].iattr[0] = 1; /* add declares no attributes */
    expect_verify_error(&g, "add %", "undeclared int attribute slot 0");
    g.nodes[L.resid1].iattr[0] = 0;
    g.nodes[L.k_w].fattr[0] = -0.5;
    expect_verify_error(&g, "weight %", "scale must be positive");
    g.nodes[L.k_w].fattr[0] = 0.5;
    cr_assert_eq(bj_ir_verify(&g, NULL), BJ_OK, "all repaired");
    bj_graph_free(&g);
}

Test(ir_verify, payload_and_header) {
    bj_graph g;
    layer L = build_layer(&g);
    g.nodes[L.o].name = "x";
    expect_verify_error(&g, "only weights may have a name or data", NULL);
    g.nodes[L.o].name = NULL;
    g.nodes[L.norm_w].nbytes = 3;
    expect_verify_error(&g, "bound to 3 bytes", NULL);
    g.nodes[L.norm_w].nbytes = sizeof g_norm_data;
    g.name = "bad name";
    expect_verify_error(&g, "name may only use", NULL);
    g.name = "kjv";
    g.max_seq = 0;
    expect_verify_error(&g, "max_seq 0", NULL);
    g.max_seq = -1;
    expect_verify_error(&g, "negative", NULL);
    g.max_seq = 512;
    cr_assert_eq(bj_ir_verify(&g, NULL), BJ_OK);
    bj_graph_free(&g);
}

/* Two attention layers sharing one KV-cache slot. */
Test(ir_verify, attention_layers_unique) {
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_graph_init(&g, "two", &err), BJ_OK);
    g.max_seq = 64;
    uint32_t table = w(&g, "e", BJ_DT_F32, 100, 64, 1, &err), ids = bj_ir_input(&g, &err);
    uint32_t x = bj_ir_binary(&g, BJ_OP_EMBED, table, ids, &err);
    int64_t ia[4] = { 0, 4, 4, 16 };
    for (int l = 0; l < 2; l++) {
        const uint32_t qkv[3] = { x, x, x };
        x = bj_ir_add(&g, BJ_OP_ATTENTION, qkv, 3, ia, NULL, &err);
    }
    uint32_t out = bj_ir_unary(&g, BJ_OP_OUTPUT, bj_ir_binary(&g, BJ_OP_MATMUL_F, x, table, &err), &err);
    cr_assert_neq(out, BJ_NONE, "%s", err.msg);
    expect_verify_error(&g, "attention %4: layer 0 is already used by attention %3", NULL);
    g.nodes[4].iattr[0] = 1;
    cr_assert_eq(bj_ir_verify(&g, &err), BJ_OK, "%s", err.msg);
    bj_graph_free(&g);
}

/* ---- text round trip --------------------------------------------------------------------- */
static char *print_str(const bj_graph *g) {
    char *s = NULL;
    bj_error err = { 0 };
    cr_assert_eq(bj_ir_print_str(g, &s, &err), BJ_OK, "%s", err.msg);
    return s;
}

Test(ir_text, layer_round_trip) {
    bj_graph g, back;
    layer L = build_layer(&g);
    bj_error err = { 0 };
    char *text = print_str(&g);
    cr_assert_eq(bj_ir_parse(&back, text, strlen(text), &err), BJ_OK, "%s\n%s", err.msg, text);
    cr_assert_eq(bj_ir_verify(&back, &err), BJ_OK, "%s", err.msg);
    char *again = print_str(&back);
    cr_assert_str_eq(again, text);
    cr_assert_eq(back.n_nodes, g.n_nodes);
    cr_assert_eq(back.max_seq, 512);
    cr_assert_null(back.nodes[L.norm_w].data, "parsed weights are unbound");
    cr_assert_eq(back.nodes[L.norm_w].nbytes, 0);
    cr_assert_eq(back.nodes[L.k_w].fattr[0], 0.0123, "scales survive exactly");
    cr_assert_eq(memcmp(back.nodes[L.attn].iattr, g.nodes[L.attn].iattr, sizeof g.nodes[0].iattr), 0);
    free(again);
    free(text);
    bj_graph_free(&back);
    bj_graph_free(&g);
}

Test(ir_text, layer_prints_expected_lines) {
    bj_graph g;
    layer L = build_layer(&g);
    char *text = print_str(&g), want[256];
    const char *head = "graph @kjv {max_seq=512}\n%0 = input : i32[T]\n"
                       "%1 = weight \"model.embed_tokens.weight\" {scale=1} : bf16[4096,384]\n"
                       "%2 = embed %1, %0 : f32[T,384]\n";
    cr_assert_eq(strncmp(text, head, strlen(head)), 0, "%s", text);
    snprintf(want, sizeof want, "\n%%%u = rmsnorm %%%u, %%%u {eps=1.0000000000000001e-05} : f32[T,384]\n",
             L.norm, L.embed, L.norm_w);
    cr_assert(strstr(text, want), "missing '%s' in\n%s", want, text);
    snprintf(want, sizeof want, "\n%%%u = attention %%%u, %%%u, %%%u {layer=0, n_head=6, n_kv=2, head_dim=64} : f32[T,384]\n",
             L.attn, L.q_rope, L.k_rope, L.attn - 3);
    cr_assert(strstr(text, want), "missing '%s' in\n%s", want, text);
    snprintf(want, sizeof want, "\n%%%u = rope %%%u {n_head=2, head_dim=64, theta=10000} : f32[T,128]\n", L.k_rope, L.k);
    cr_assert(strstr(text, want), "missing '%s' in\n%s", want, text);
    snprintf(want, sizeof want, "\n%%%u = weight_quant %%%u {mode=0} : t8[384,384]\n", L.q_w, L.q_master);
    cr_assert(strstr(text, want), "missing '%s' in\n%s", want, text);
    cr_assert(strstr(text, "{scale=0.0123} : t8[128,384]\n"), "%s", text);
    snprintf(want, sizeof want, "\n%%%u = output %%%u : f32[T,4096]\n", L.out, L.head);
    size_t n = strlen(text), wn = strlen(want);
    cr_assert(n > wn && strcmp(text + n - wn, want) == 0, "output is not the last line:\n%s", text);
    free(text);
    bj_graph_free(&g);
}

Test(ir_text, print_to_file_matches_string) {
    bj_graph g;
    build_layer(&g);
    char *text = print_str(&g), *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(bj_ir_print(&g, f), BJ_OK);
    fclose(f);
    cr_assert_str_eq(buf, text);
    free(buf);
    free(text);
    bj_graph_free(&g);
}
