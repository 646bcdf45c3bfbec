/* frontends/arch_graph.c -- the step graph of every architecture family, from weights that the
 * importer's bj_wsource supplies (formats.md §3.6, docs/formats-families.md):
 *
 *   x = embed(tokens)
 *   per layer:  h = rmsnorm(x)·attn_norm ; q,k,v = bitlinear(h) ; q,k = rope ; a = attention(q,k,v)
 *               BitNet: a = rmsnorm(a)·attn_sub_norm
 *               x += bitlinear(a, o)
 *               h = rmsnorm(x)·ffn_norm ; f = act(bitlinear(h, gate)) * bitlinear(h, up)
 *               BitNet: f = rmsnorm(f)·ffn_sub_norm
 *               x += bitlinear(f, down)
 *   logits = matmul_f(rmsnorm(x)·norm, embed or head)
 *
 * A BitLinear is act_quant -> matmul_t; with use_rms_norm (Falcon-E's quantization_config) its
 * input first goes through its own RMSNorm (weight "<prefix>.rms_norm.weight"). act is ReLU^2 or
 * SiLU from the config. */
#include "frontends/arch_graph.h"

#include <stdio.h>

typedef struct gbuild {
    bj_graph *g;
    const bj_model_config *c;
    const bj_wsource *w;
    bj_error *err;
} gbuild;

static uint32_t weight_f(gbuild *b, bj_wpiece p, int64_t l, int64_t d0, int64_t d1) {
    char n[256];
    b->w->name(b->w->ctx, p, l, n, sizeof n);
    return b->w->float_weight(b->w->ctx, n, d0, d1);
}

static uint32_t rmsnorm_w(gbuild *b, uint32_t x, uint32_t w, double eps) {
    uint32_t in[2] = { x, w };
    return bj_ir_add(b->g, BJ_OP_RMSNORM, in, 2, NULL, &eps, b->err);
}

static uint32_t rmsnorm(gbuild *b, uint32_t x, bj_wpiece p, int64_t l, int64_t d) {
    return rmsnorm_w(b, x, weight_f(b, p, l, d, -1), b->c->rms_eps);
}

static uint32_t quant(gbuild *b, uint32_t x) { return bj_ir_unary(b->g, BJ_OP_ACT_QUANT, x, b->err); }

/* BitLinear p of layer l on x (x is the projection's input, not yet quantized). hq: the shared
 * quantized input when the block has no per-projection norm (BJ_NONE: make one here). */
static uint32_t bitlinear(gbuild *b, bj_wpiece p, int64_t l, uint32_t x, uint32_t hq, int64_t n_out, int64_t n_in) {
    char prefix[256];
    b->w->name(b->w->ctx, p, l, prefix, sizeof prefix);
    if (b->c->proj_norm) {
        char nn[300];
        snprintf(nn, sizeof nn, "%s.rms_norm.weight", prefix);
        hq = quant(b, rmsnorm_w(b, x, b->w->float_weight(b->w->ctx, nn, n_in, -1), b->c->proj_norm_eps));
    } else if (hq == BJ_NONE) {
        hq = quant(b, x);
    }
    uint32_t in[2] = { hq, b->w->bitlinear(b->w->ctx, p, prefix, n_out, n_in) };
    return bj_ir_add(b->g, BJ_OP_MATMUL_T, in, 2, NULL, NULL, b->err);
}

static uint32_t rope(gbuild *b, uint32_t x, int64_t n_head) {
    int64_t ia[2] = { n_head, b->c->head_dim };
    double theta = b->c->rope_theta;
    return bj_ir_add(b->g, BJ_OP_ROPE, &x, 1, ia, &theta, b->err);
}

static uint32_t attention_block(gbuild *b, int64_t l, uint32_t x) {
    const bj_model_config *c = b->c;
    int64_t d = c->hidden, dq = c->n_head * c->head_dim, dkv = c->n_kv_head * c->head_dim;
    uint32_t h = rmsnorm(b, x, BJ_W_ATTN_NORM, l, d);
    uint32_t hq = c->proj_norm ? BJ_NONE : quant(b, h);
    uint32_t q = rope(b, bitlinear(b, BJ_W_Q, l, h, hq, dq, d), c->n_head);
    uint32_t k = rope(b, bitlinear(b, BJ_W_K, l, h, hq, dkv, d), c->n_kv_head);
    uint32_t v = bitlinear(b, BJ_W_V, l, h, hq, dkv, d);
    uint32_t qkv[3] = { q, k, v };
    int64_t ia[4] = { l, c->n_head, c->n_kv_head, c->head_dim };
    uint32_t a = bj_ir_add(b->g, BJ_OP_ATTENTION, qkv, 3, ia, NULL, b->err);
    if (c->block == BJ_BLOCK_BITNET) a = rmsnorm(b, a, BJ_W_ATTN_SUB_NORM, l, dq);
    return bj_ir_binary(b->g, BJ_OP_ADD, x, bitlinear(b, BJ_W_O, l, a, BJ_NONE, d, dq), b->err);
}

static uint32_t ffn_block(gbuild *b, int64_t l, uint32_t x) {
    const bj_model_config *c = b->c;
    int64_t d = c->hidden, f = c->intermediate;
    uint32_t h = rmsnorm(b, x, BJ_W_FFN_NORM, l, d);
    uint32_t hq = c->proj_norm ? BJ_NONE : quant(b, h);
    uint32_t gate = bitlinear(b, BJ_W_GATE, l, h, hq, f, d);
    uint32_t up = bitlinear(b, BJ_W_UP, l, h, hq, f, d);
    bj_op act = c->act == BJ_ACT_RELU2 ? BJ_OP_RELU_SQR : BJ_OP_SILU;
    uint32_t m = bj_ir_binary(b->g, BJ_OP_MUL, bj_ir_unary(b->g, act, gate, b->err), up, b->err);
    if (c->block == BJ_BLOCK_BITNET) m = rmsnorm(b, m, BJ_W_FFN_SUB_NORM, l, f);
    return bj_ir_binary(b->g, BJ_OP_ADD, x, bitlinear(b, BJ_W_DOWN, l, m, BJ_NONE, d, f), b->err);
}

/* The LM head: the untied head tensor when the model has one, else the embedding. */
static uint32_t lm_head(gbuild *b, uint32_t embed) {
    char n[256];
    b->w->name(b->w->ctx, BJ_W_HEAD, -1, n, sizeof n);
    bool present = b->w->has ? b->w->has(b->w->ctx, n) : !b->c->tie_embeddings;
    if (b->c->tie_embeddings || !present) {
        if (!b->c->tie_embeddings) {
            BJ_FAIL(b->err, BJ_E_FORMAT, "missing tensor '%s' (tie_word_embeddings is false)", n);
            return BJ_NONE;
        }
        return embed;
    }
    return b->w->float_weight(b->w->ctx, n, b->c->vocab, b->c->hidden);
}

bj_status bj_fe_build_graph(bj_graph *g, const bj_model_config *c, const bj_wsource *w, bj_error *err) {
    gbuild b = { g, c, w, err };
    g->max_seq = c->max_seq;
    uint32_t tokens = bj_ir_input(g, err);
    uint32_t embed = weight_f(&b, BJ_W_EMBED, -1, c->vocab, c->hidden);
    uint32_t ein[2] = { embed, tokens };
    uint32_t x = bj_ir_add(g, BJ_OP_EMBED, ein, 2, NULL, NULL, err);
    for (int64_t l = 0; l < c->n_layer && x != BJ_NONE; l++) x = ffn_block(&b, l, attention_block(&b, l, x));
    uint32_t h = rmsnorm(&b, x, BJ_W_OUT_NORM, -1, c->hidden);
    uint32_t hin[2] = { h, lm_head(&b, embed) };
    uint32_t logits = bj_ir_add(g, BJ_OP_MATMUL_F, hin, 2, NULL, NULL, err);
    if (bj_ir_unary(g, BJ_OP_OUTPUT, logits, err) == BJ_NONE) return err->code ? err->code : BJ_E_INTERNAL;
    return bj_ir_verify(g, err);
}
