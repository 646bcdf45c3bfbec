/* frontends/arch_bitnet.c -- architecture builder for HF BitNetForCausalLM.
 *
 * Builds the step graph of formats.md §3.6 from HF tensor names:
 *
 *   x = embed(tokens)
 *   per layer:  h = rmsnorm(x) ; q,k,v = bitlinear(h) ; q,k = rope ; a = attention
 *               a = rmsnorm(a)·attn_sub_norm ; x += bitlinear(a, o)
 *               h = rmsnorm(x) ; f = act(bitlinear(h, gate)) * bitlinear(h, up)
 *               f = rmsnorm(f)·ffn_sub_norm ; x += bitlinear(f, down)
 *   logits = matmul_f(rmsnorm(x)·norm, embed or lm_head)
 *
 * A BitLinear is act_quant -> matmul_t. Its weight is either packed (U8 [out/4, in] in the HF
 * bitlinear layout plus a one-element weight_scale, imported as t2hf with the effective
 * multiplier as scale) or a float master (imported as is, followed by weight_quant, which
 * the reference executor evaluates once and the compiler folds). A binary model
 * (quantization_config.weight_quant "binary") has float masters or bitjit's 1-bit packing,
 * U8 [out, ceil(in/8)] sign bits with weight_scale the multiplier (docs/formats-bitjit.md),
 * imported as b1; the two packings never mix with the other weight_quant. Every tensor is checked
 * for presence, dtype and shape before it enters the graph; errors name the tensor. */
#include "frontends/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct bj_builder {
    bj_graph *g;
    const bj_model_config *c;
    const bj_st_model *st;
    bj_error *err;
} bj_builder;

static const bj_st_tensor *find_tensor(bj_builder *b, const char *name) {
    const bj_st_tensor *t = bj_st_find(b->st, name);
    if (!t) BJ_FAIL(b->err, BJ_E_FORMAT, "missing tensor '%s'", name);
    return t;
}

static bool shape_is(const bj_st_tensor *t, int64_t d0, int64_t d1) {
    if (d1 < 0) return t->ndim == 1 && t->shape[0] == d0;
    return t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1;
}

static const char *shape_str(const bj_st_tensor *t, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

static uint32_t fail_shape(bj_builder *b, const bj_st_tensor *t, const char *want) {
    char got[96];
    BJ_FAIL(b->err, BJ_E_FORMAT, "tensor '%s' (%s): has %s %s, expected %s", t->name, t->path,
            bj_st_dtype_name(t->dtype), shape_str(t, got, sizeof got), want);
    return BJ_NONE;
}

/* A float tensor (norm weight, embedding, master) of the given shape; d1 < 0 for 1-D. */
static uint32_t float_weight(bj_builder *b, const char *name, int64_t d0, int64_t d1) {
    const bj_st_tensor *t = find_tensor(b, name);
    if (!t) return BJ_NONE;
    bj_dtype dt;
    char want[96];
    if (d1 < 0) snprintf(want, sizeof want, "F32/F16/BF16 [%lld]", (long long)d0);
    else snprintf(want, sizeof want, "F32/F16/BF16 [%lld,%lld]", (long long)d0, (long long)d1);
    if (!bj_st_dtype_to_ir(t->dtype, &dt) || bj_dtype_class_of(dt) != BJ_DTC_FLOAT || !shape_is(t, d0, d1))
        return fail_shape(b, t, want);
    bj_shape s = d1 < 0 ? bj_shape1(d0) : bj_shape2(d0, d1);
    return bj_ir_weight(b->g, name, dt, s, 1.0, t->data, t->nbytes, b->err);
}

/* The effective multiplier of a packed weight from its stored weight_scale: HF bitlinear
 * stores the divisor, autobitlinear and bitjit's b1 packing the multiplier. */
static bool packed_scale(bj_builder *b, const char *wname, bool is_b1, double *alpha) {
    char name[320];
    snprintf(name, sizeof name, "%s_scale", wname);
    const bj_st_tensor *t = find_tensor(b, name);
    if (!t) return false;
    bj_dtype dt;
    if (!bj_st_dtype_to_ir(t->dtype, &dt) || bj_dtype_class_of(dt) != BJ_DTC_FLOAT ||
        !((t->ndim == 1 && t->shape[0] == 1) || t->ndim == 0)) {
        fail_shape(b, t, "one F32/F16/BF16 value, shape [1] or []");
        return false;
    }
    double s;
    if (dt == BJ_DT_F32) { float f; memcpy(&f, t->data, 4); s = f; } /* data may be unaligned */
    else if (dt == BJ_DT_BF16) s = bj_bf16_to_f32(bj_rd16(t->data));
    else s = bj_f16_to_f32(bj_rd16(t->data));
    if (!isfinite(s) || s <= 0) {
        BJ_FAIL(b->err, BJ_E_FORMAT, "tensor '%s': weight scale %g is not a positive finite number", name, s);
        return false;
    }
    *alpha = b->c->linear_class == BJ_LC_BITLINEAR && !is_b1 ? 1.0 / s : s;
    return true;
}

/* The weight operand of a BitLinear with out x in = [n_out, n_in]. */
static uint32_t bitlinear_weight(bj_builder *b, const char *prefix, int64_t n_out, int64_t n_in) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const bj_st_tensor *t = find_tensor(b, name);
    if (!t) return BJ_NONE;
    bool binary = b->c->weight_quant == BJ_WQ_BINARY;
    int64_t b1_cols = (n_in + 7) / 8;
    bool ternary_shape = n_out % 4 == 0 && shape_is(t, n_out / 4, n_in), b1_shape = shape_is(t, n_out, b1_cols);
    if (t->dtype == BJ_ST_U8 && binary) { /* bitjit's b1: 1 bit per weight, row-major sign bits */
        char want[160];
        if (ternary_shape) {
            BJ_FAIL(b->err, BJ_E_FORMAT, "tensor '%s' (%s): is packed ternary (U8 [%lld,%lld], the HF bitlinear "
                    "layout), but config.json sets quantization_config.weight_quant \"binary\"; a binary model "
                    "needs float masters or bitjit's 1-bit packing U8 [%lld,%lld]", name, t->path,
                    (long long)(n_out / 4), (long long)n_in, (long long)n_out, (long long)b1_cols);
            return BJ_NONE;
        }
        snprintf(want, sizeof want, "U8 [%lld,%lld] (1-bit, weight_quant binary) or a float master [%lld,%lld]",
                 (long long)n_out, (long long)b1_cols, (long long)n_out, (long long)n_in);
        if (!b1_shape) return fail_shape(b, t, want);
        double alpha;
        if (!packed_scale(b, name, true, &alpha)) return BJ_NONE;
        return bj_ir_weight(b->g, name, BJ_DT_B1, bj_shape2(n_out, n_in), alpha, t->data, t->nbytes, b->err);
    }
    if (t->dtype == BJ_ST_U8) { /* packed: 4 output rows per byte */
        char want[96];
        if (b1_shape && !ternary_shape) {
            BJ_FAIL(b->err, BJ_E_FORMAT, "tensor '%s' (%s): has bitjit's 1-bit packing U8 [%lld,%lld], but config.json "
                    "does not set quantization_config.weight_quant \"binary\" (packed ternary is U8 [%lld,%lld])",
                    name, t->path, (long long)n_out, (long long)b1_cols, (long long)(n_out / 4), (long long)n_in);
            return BJ_NONE;
        }
        snprintf(want, sizeof want, "U8 [%lld,%lld] (packed) or a float master [%lld,%lld]",
                 (long long)(n_out / 4), (long long)n_in, (long long)n_out, (long long)n_in);
        if (!ternary_shape) return fail_shape(b, t, want);
        double alpha;
        if (!packed_scale(b, name, false, &alpha)) return BJ_NONE;
        return bj_ir_weight(b->g, name, BJ_DT_T2HF, bj_shape2(n_out, n_in), alpha, t->data, t->nbytes, b->err);
    }
    uint32_t w = float_weight(b, name, n_out, n_in);
    int64_t mode = b->c->weight_quant == BJ_WQ_BINARY ? 1 : 0;
    return bj_ir_add(b->g, BJ_OP_WEIGHT_QUANT, &w, 1, &mode, NULL, b->err);
}

static uint32_t rmsnorm(bj_builder *b, uint32_t x, const char *wname, int64_t d) {
    uint32_t in[2] = { x, float_weight(b, wname, d, -1) };
    double eps = b->c->rms_eps;
    return bj_ir_add(b->g, BJ_OP_RMSNORM, in, 2, NULL, &eps, b->err);
}

static uint32_t matmul_t(bj_builder *b, uint32_t xq, const char *prefix, int64_t n_out, int64_t n_in) {
    uint32_t in[2] = { xq, bitlinear_weight(b, prefix, n_out, n_in) };
    return bj_ir_add(b->g, BJ_OP_MATMUL_T, in, 2, NULL, NULL, b->err);
}

static uint32_t rope(bj_builder *b, uint32_t x, int64_t n_head) {
    int64_t ia[2] = { n_head, b->c->head_dim };
    double theta = b->c->rope_theta;
    return bj_ir_add(b->g, BJ_OP_ROPE, &x, 1, ia, &theta, b->err);
}

static uint32_t attention_block(bj_builder *b, int64_t l, uint32_t x) {
    const bj_model_config *c = b->c;
    char p[200], n[256];
    int64_t d = c->hidden, dq = c->n_head * c->head_dim, dkv = c->n_kv_head * c->head_dim;
    snprintf(p, sizeof p, "model.layers.%lld", (long long)l);
    snprintf(n, sizeof n, "%s.input_layernorm.weight", p);
    uint32_t hq = bj_ir_unary(b->g, BJ_OP_ACT_QUANT, rmsnorm(b, x, n, d), b->err);
    snprintf(n, sizeof n, "%s.self_attn.q_proj", p);
    uint32_t q = rope(b, matmul_t(b, hq, n, dq, d), c->n_head);
    snprintf(n, sizeof n, "%s.self_attn.k_proj", p);
    uint32_t k = rope(b, matmul_t(b, hq, n, dkv, d), c->n_kv_head);
    snprintf(n, sizeof n, "%s.self_attn.v_proj", p);
    uint32_t v = matmul_t(b, hq, n, dkv, d);
    uint32_t qkv[3] = { q, k, v };
    int64_t ia[4] = { l, c->n_head, c->n_kv_head, c->head_dim };
    uint32_t a = bj_ir_add(b->g, BJ_OP_ATTENTION, qkv, 3, ia, NULL, b->err);
    snprintf(n, sizeof n, "%s.self_attn.attn_sub_norm.weight", p);
    uint32_t aq = bj_ir_unary(b->g, BJ_OP_ACT_QUANT, rmsnorm(b, a, n, dq), b->err);
    snprintf(n, sizeof n, "%s.self_attn.o_proj", p);
    return bj_ir_binary(b->g, BJ_OP_ADD, x, matmul_t(b, aq, n, d, dq), b->err);
}

static uint32_t ffn_block(bj_builder *b, int64_t l, uint32_t x) {
    const bj_model_config *c = b->c;
    char p[200], n[256];
    int64_t d = c->hidden, f = c->intermediate;
    snprintf(p, sizeof p, "model.layers.%lld", (long long)l);
    snprintf(n, sizeof n, "%s.post_attention_layernorm.weight", p);
    uint32_t hq = bj_ir_unary(b->g, BJ_OP_ACT_QUANT, rmsnorm(b, x, n, d), b->err);
    snprintf(n, sizeof n, "%s.mlp.gate_proj", p);
    uint32_t gate = matmul_t(b, hq, n, f, d);
    snprintf(n, sizeof n, "%s.mlp.up_proj", p);
    uint32_t up = matmul_t(b, hq, n, f, d);
    bj_op act = c->act == BJ_ACT_RELU2 ? BJ_OP_RELU_SQR : BJ_OP_SILU;
    uint32_t h = bj_ir_binary(b->g, BJ_OP_MUL, bj_ir_unary(b->g, act, gate, b->err), up, b->err);
    snprintf(n, sizeof n, "%s.mlp.ffn_sub_norm.weight", p);
    uint32_t fq = bj_ir_unary(b->g, BJ_OP_ACT_QUANT, rmsnorm(b, h, n, f), b->err);
    snprintf(n, sizeof n, "%s.mlp.down_proj", p);
    return bj_ir_binary(b->g, BJ_OP_ADD, x, matmul_t(b, fq, n, d, f), b->err);
}

/* The LM head: lm_head.weight when the model has an untied one, else the embedding. */
static uint32_t lm_head(bj_builder *b, uint32_t embed) {
    if (b->c->tie_embeddings || !bj_st_find(b->st, "lm_head.weight")) {
        if (!b->c->tie_embeddings) {
            BJ_FAIL(b->err, BJ_E_FORMAT, "missing tensor 'lm_head.weight' (tie_word_embeddings is false)");
            return BJ_NONE;
        }
        return embed;
    }
    return float_weight(b, "lm_head.weight", b->c->vocab, b->c->hidden);
}

bj_status bj_fe_build_bitnet_hf(bj_graph *g, const bj_model_config *c, const bj_st_model *st, bj_error *err) {
    bj_builder b = { g, c, st, err };
    g->max_seq = c->max_seq;
    uint32_t tokens = bj_ir_input(g, err);
    uint32_t embed = float_weight(&b, "model.embed_tokens.weight", c->vocab, c->hidden);
    uint32_t ein[2] = { embed, tokens };
    uint32_t x = bj_ir_add(g, BJ_OP_EMBED, ein, 2, NULL, NULL, err);
    for (int64_t l = 0; l < c->n_layer && x != BJ_NONE; l++)
        x = ffn_block(&b, l, attention_block(&b, l, x));
    uint32_t h = rmsnorm(&b, x, "model.norm.weight", c->hidden);
    uint32_t hin[2] = { h, lm_head(&b, embed) };
    uint32_t logits = bj_ir_add(g, BJ_OP_MATMUL_F, hin, 2, NULL, NULL, err);
    if (bj_ir_unary(g, BJ_OP_OUTPUT, logits, err) == BJ_NONE) return err->code ? err->code : BJ_E_INTERNAL;
    return bj_ir_verify(g, err);
}
