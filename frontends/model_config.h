/* frontends/model_config.h -- the architecture description every importer fills
 * (HF config.json now; GGUF metadata later) and the architecture builder reads. */
#ifndef BJ_FE_MODEL_CONFIG_H
#define BJ_FE_MODEL_CONFIG_H

#include "ir/ir.h"

typedef enum bj_act { BJ_ACT_RELU2, BJ_ACT_SILU } bj_act;

/* How a stored weight_scale relates to the effective weight (formats.md §0.3, §3.4). */
typedef enum bj_linear_class {
    BJ_LC_BITLINEAR,     /* W = ternary / weight_scale (default when the key is missing) */
    BJ_LC_AUTOBITLINEAR, /* W = ternary * weight_scale */
} bj_linear_class;

typedef enum bj_wquant { BJ_WQ_TERNARY, BJ_WQ_BINARY } bj_wquant;

/* The decoder block of an architecture family (arch_graph.c builds both from the same pieces):
 * BitNet: sub-norms before o_proj and down_proj (2B4T's BitNetForCausalLM with ReLU^2, 1bitLLM's
 * BitnetForCausalLM with SiLU; GGUF bitnet*); Llama: no sub-norms, SiLU-gated (LlamaForCausalLM
 * with quantization_config.quant_method "bitnet": Falcon3-*-1.58bit, Llama3-8B-1.58, Falcon-E;
 * GGUF llama). */
typedef enum bj_block { BJ_BLOCK_BITNET, BJ_BLOCK_LLAMA } bj_block;

/* How HF names the sub-norms: BitNetForCausalLM's attn_sub_norm / ffn_sub_norm, or 1bitLLM's
 * inner_attn_ln / ffn_layernorm (BitnetForCausalLM). */
typedef enum bj_hf_names { BJ_NAMES_BITNET, BJ_NAMES_1BITLLM } bj_hf_names;

typedef struct bj_model_config {
    char arch[64];          /* "BitNetForCausalLM", ... */
    int64_t hidden, intermediate, n_layer, n_head, n_kv_head, head_dim, vocab, max_seq;
    double rms_eps, rope_theta;
    bj_act act;
    bool tie_embeddings;
    int64_t bos_id, eos_id; /* -1 when absent */
    bj_linear_class linear_class;
    bool qconfig;           /* config.json has a quantization_config: transformers' bitnet integration
                               decides from linear_class / quantization_mode what a weight must be */
    bool online_quant;      /* quantization_mode "online": weights are masters */
    bj_wquant weight_quant; /* "weight_quant": "binary" selects the 1-bit BitNet rule */
    bj_block block;         /* which decoder block */
    bj_hf_names hf_names;   /* HF tensor names of the sub-norms */
    bool proj_norm;         /* quantization_config.use_rms_norm: an RMSNorm (weight
                               "<proj>.rms_norm.weight") inside every BitLinear */
    double proj_norm_eps;   /* its epsilon (quantization_config.rms_norm_eps, default 1e-6) */
} bj_model_config;

/* Parses an HF config.json (path to the file). Every required field is checked for presence
 * and type; errors name the key and the file. */
bj_status bj_hf_config_load(bj_model_config *c, const char *path, bj_error *err);
/* Same, from text (for tests). */
bj_status bj_hf_config_parse(bj_model_config *c, const char *json, size_t len, const char *path, bj_error *err);

#endif
