/* frontends/model.h -- import a model into a graph: config + weights + tokenizer.
 *
 * bj_model_load detects the format from the path (an HF directory, a .safetensors file or a
 * .gguf file) and runs the architecture builder, leaving a verified graph whose WEIGHT nodes
 * point into the mapped files. */
#ifndef BJ_FE_MODEL_H
#define BJ_FE_MODEL_H

#include "frontends/model_config.h"
#include "frontends/safetensors.h"
#include "frontends/tokenizer.h"

typedef struct bj_model {
    char *path;
    bj_model_config cfg;
    bj_graph graph;
    bj_st_model st;
    bj_tokenizer *tok;
    struct bj_gguf *gguf; /* a GGUF model's reader (weights point into its map); NULL otherwise */
    char warning[512];    /* "" or the first load warning (e.g. an all-zero ternary weight), for drivers to print */
} bj_model;

bj_status bj_model_load(bj_model *m, const char *path, bj_error *err);
void bj_model_free(bj_model *m);

/* Architecture builder for BitNetForCausalLM (HF names), given a tensor lookup. */
bj_status bj_fe_build_bitnet_hf(bj_graph *g, const bj_model_config *c, const bj_st_model *st, bj_error *err);

#endif
