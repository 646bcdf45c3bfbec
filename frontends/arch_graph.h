/* frontends/arch_graph.h -- the one graph builder of every architecture family (arch_graph.c).
 *
 * The importers (arch_bitnet.c for HF safetensors, arch_bitnet_gguf.c for GGUF) differ only in
 * how a weight is named, checked and bound; the decoder blocks (BitNet with sub-norms, Llama
 * without, docs/formats-families.md) are written once here and call back into the importer
 * through bj_wsource for every weight. */
#ifndef BJ_FE_ARCH_GRAPH_H
#define BJ_FE_ARCH_GRAPH_H

#include "frontends/model_config.h"

/* The weights a decoder asks for. */
typedef enum bj_wpiece {
    BJ_W_EMBED, BJ_W_OUT_NORM, BJ_W_HEAD,
    BJ_W_ATTN_NORM, BJ_W_Q, BJ_W_K, BJ_W_V, BJ_W_ATTN_SUB_NORM, BJ_W_O,
    BJ_W_FFN_NORM, BJ_W_GATE, BJ_W_UP, BJ_W_FFN_SUB_NORM, BJ_W_DOWN,
    BJ_W_COUNT
} bj_wpiece;

typedef struct bj_wsource {
    void *ctx;
    /* The name of piece p of layer l (-1 for model-level pieces) into buf: for a BitLinear the
     * prefix without ".weight" (HF "model.layers.0.self_attn.q_proj", GGUF "blk.0.attn_q"),
     * otherwise the tensor's full name. */
    void (*name)(void *ctx, bj_wpiece p, int64_t l, char *buf, size_t cap);
    /* A float weight node (norm, embedding, head) of IR shape [d0] (d1 < 0) or [d0, d1]. */
    uint32_t (*float_weight)(void *ctx, const char *name, int64_t d0, int64_t d1);
    /* The weight operand of a BitLinear [n_out, n_in] (a low-bit weight, or a master followed by
     * weight_quant). p says which projection (the GGUF llama arch un-permutes q and k). */
    uint32_t (*bitlinear)(void *ctx, bj_wpiece p, const char *prefix, int64_t n_out, int64_t n_in);
    /* Whether the untied head exists (model-level; NULL: tie_embeddings decides alone). */
    bool (*has)(void *ctx, const char *name);
    bj_error *err;
} bj_wsource;

/* Builds the verified step graph of config c (c->block picks the decoder block; c->proj_norm
 * adds an RMSNorm "<prefix>.rms_norm.weight" before each BitLinear's activation quantization). */
bj_status bj_fe_build_graph(bj_graph *g, const bj_model_config *c, const bj_wsource *w, bj_error *err);

#endif
