/* frontends/arch_bitnet.c -- the HF safetensors weight source of the graph builder
 * (arch_graph.c, which writes the decoder blocks once for HF and GGUF): HF tensor names of
 * BitNetForCausalLM, 1bitLLM's BitnetForCausalLM (sub-norms inner_attn_ln / ffn_layernorm) and
 * LlamaForCausalLM with quant_method bitnet (no sub-norms; with use_rms_norm a
 * "<proj>.rms_norm.weight" per BitLinear).
 *
 * A BitLinear is act_quant -> matmul_t. Its weight is either packed (U8 [out/4, in] in the HF
 * bitlinear layout plus a one-element weight_scale, imported as t2hf with the effective
 * multiplier as scale) or a float master (imported as is, followed by weight_quant, which
 * the reference executor evaluates once and the compiler folds). A binary model
 * (quantization_config.weight_quant "binary") has float masters or bitjit's 1-bit packing,
 * U8 [out, ceil(in/8)] sign bits with weight_scale the multiplier (docs/formats-bitjit.md),
 * imported as b1; the two packings never mix with the other weight_quant. Every tensor is checked
 * for presence, dtype and shape before it enters the graph; errors name the tensor. */
#include "frontends/arch_graph.h"
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

/* What transformers' bitnet integration (integrations/bitnet.py) builds from quantization_config:
 * linear_class "bitlinear" is its BitLinear, whose weight is packed U8 whatever quantization_mode
 * says; "autobitlinear" with quantization_mode "online" is a float master quantized in every
 * forward pass, with "offline" a packed U8 weight (unpacked at load) times weight_scale. A weight
 * of the other kind does not load there, or (a float weight under autobitlinear offline) runs
 * unquantized, so it is refused here naming the key and value. Without a quantization_config
 * (1bitLLM) the weights are masters. */
static bool weight_kind_ok(bj_builder *b, const bj_st_tensor *t, const char *name) {
    const bj_model_config *c = b->c;
    bool packed = t->dtype == BJ_ST_U8;
    if (!c->qconfig) return true;
    if (c->linear_class == BJ_LC_BITLINEAR && !packed) {
        BJ_FAIL(b->err, BJ_E_UNSUPPORTED, "tensor '%s' (%s): is a %s master, but quantization_config.linear_class "
                "'bitlinear' stores packed U8 weights; a float master needs linear_class 'autobitlinear' with "
                "quantization_mode 'online'", name, t->path, bj_st_dtype_name(t->dtype));
        return false;
    }
    if (c->linear_class == BJ_LC_AUTOBITLINEAR && c->online_quant && packed) {
        BJ_FAIL(b->err, BJ_E_UNSUPPORTED, "tensor '%s' (%s): is packed U8, but quantization_config.quantization_mode "
                "'online' (linear_class 'autobitlinear') quantizes float masters at load; packed weights need "
                "quantization_mode 'offline'", name, t->path);
        return false;
    }
    if (c->linear_class == BJ_LC_AUTOBITLINEAR && !c->online_quant && !packed) {
        BJ_FAIL(b->err, BJ_E_UNSUPPORTED, "tensor '%s' (%s): is %s, but quantization_config.quantization_mode "
                "'offline' (linear_class 'autobitlinear') expects packed U8 weights with a weight_scale (transformers "
                "would run this one unquantized); a float master needs quantization_mode 'online'", name, t->path,
                bj_st_dtype_name(t->dtype));
        return false;
    }
    return true;
}

/* The weight operand of a BitLinear with out x in = [n_out, n_in]. */
static uint32_t bitlinear_weight(bj_builder *b, const char *prefix, int64_t n_out, int64_t n_in) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const bj_st_tensor *t = find_tensor(b, name);
    if (!t || !weight_kind_ok(b, t, name)) return BJ_NONE;
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
        char want[160];
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

/* ---- the weight source of arch_graph.c: HF tensor names ------------------------------------- */

static void hf_name(void *ctx, bj_wpiece p, int64_t l, char *buf, size_t cap) {
    const bj_builder *b = ctx;
    bool llm1 = b->c->hf_names == BJ_NAMES_1BITLLM;
    static const char *const layer[BJ_W_COUNT] = {
        [BJ_W_ATTN_NORM] = "input_layernorm.weight", [BJ_W_Q] = "self_attn.q_proj", [BJ_W_K] = "self_attn.k_proj",
        [BJ_W_V] = "self_attn.v_proj", [BJ_W_O] = "self_attn.o_proj",
        [BJ_W_FFN_NORM] = "post_attention_layernorm.weight", [BJ_W_GATE] = "mlp.gate_proj", [BJ_W_UP] = "mlp.up_proj",
        [BJ_W_DOWN] = "mlp.down_proj",
    };
    switch (p) {
    case BJ_W_EMBED: snprintf(buf, cap, "model.embed_tokens.weight"); return;
    case BJ_W_OUT_NORM: snprintf(buf, cap, "model.norm.weight"); return;
    case BJ_W_HEAD: snprintf(buf, cap, "lm_head.weight"); return;
    case BJ_W_ATTN_SUB_NORM:
        snprintf(buf, cap, "model.layers.%lld.self_attn.%s.weight", (long long)l, llm1 ? "inner_attn_ln" : "attn_sub_norm");
        return;
    case BJ_W_FFN_SUB_NORM:
        snprintf(buf, cap, "model.layers.%lld.mlp.%s.weight", (long long)l, llm1 ? "ffn_layernorm" : "ffn_sub_norm");
        return;
    default: snprintf(buf, cap, "model.layers.%lld.%s", (long long)l, layer[p] ? layer[p] : "?"); return;
    }
}

static uint32_t hf_float(void *ctx, const char *name, int64_t d0, int64_t d1) { return float_weight(ctx, name, d0, d1); }

static uint32_t hf_bitlinear(void *ctx, bj_wpiece p, const char *prefix, int64_t n_out, int64_t n_in) {
    (void)p;
    return bitlinear_weight(ctx, prefix, n_out, n_in);
}

static bool hf_has(void *ctx, const char *name) { return bj_st_find(((bj_builder *)ctx)->st, name) != NULL; }

bj_status bj_fe_build_bitnet_hf(bj_graph *g, const bj_model_config *c, const bj_st_model *st, bj_error *err) {
    bj_builder b = { g, c, st, err };
    bj_wsource w = { &b, hf_name, hf_float, hf_bitlinear, hf_has, err };
    return bj_fe_build_graph(g, c, &w, err);
}
