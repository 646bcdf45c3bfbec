/* frontends/model.c -- load a model from a path: detect the format, read the config,
 * map the weights, load the tokenizer and build the graph: HF directories (config.json +
 * safetensors, single or sharded), a bare .safetensors file whose directory holds
 * config.json, and .gguf files (everything from the one file, gguf.h). */
#include "frontends/model.h"
#include "frontends/gguf.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bj_status model_dir(const char *path, char *dir, size_t cap, bj_error *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return BJ_FAIL(err, BJ_E_IO, "%s: model path does not exist: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (strlen(path) >= cap) return BJ_FAIL(err, BJ_E_INVALID, "%s: path too long", path);
        strcpy(dir, path);
        return BJ_OK;
    }
    size_t n = strlen(path);
    if (n < 12 || strcmp(path + n - 12, ".safetensors") != 0)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED,
                       "%s: not a model: give a model directory, a .safetensors or .gguf file, or a "
                       "library made by bitjitc (.so)", path);
    char tmp[4096];
    if (n >= sizeof tmp) return BJ_FAIL(err, BJ_E_INVALID, "%s: path too long", path);
    strcpy(tmp, path);
    const char *d = dirname(tmp);
    if (strlen(d) >= cap) return BJ_FAIL(err, BJ_E_INVALID, "%s: path too long", path);
    strcpy(dir, d);
    return BJ_OK;
}

/* Warns (m->warning) about ternary weights that are all zero: a packed t2hf weight whose every
 * code is 1 (v + 1 = 1), or a float master of a weight_quant that is all zero bytes. The model
 * still runs (such a projection contributes nothing), so this is a warning, not an error. */
static void warn_zero_weights(bj_model *m, const char *path) {
    const bj_graph *g = &m->graph;
    int n_zero = 0;
    const char *first = NULL;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op != BJ_OP_WEIGHT || !n->data || !n->nbytes) continue;
        uint8_t zero;
        if (n->dtype == BJ_DT_T2HF) zero = 0x55;
        else if (bj_dtype_class_of(n->dtype) == BJ_DTC_FLOAT) zero = 0;
        else continue;
        if (zero == 0) { /* a float is ternary only as a weight_quant master */
            bool master = false;
            for (uint32_t j = i + 1; j < g->n_nodes && !master; j++)
                master = g->nodes[j].op == BJ_OP_WEIGHT_QUANT && g->nodes[j].nin > 0 && g->nodes[j].in[0] == i;
            if (!master) continue;
        }
        const uint8_t *p = n->data;
        uint64_t k = 0;
        while (k < n->nbytes && p[k] == zero) k++;
        if (k == n->nbytes && n_zero++ == 0) first = n->name;
    }
    if (n_zero)
        snprintf(m->warning, sizeof m->warning, "%s: ternary weight '%s' is all zeros%s (the model runs, but "
                 "that projection contributes nothing)", path, first ? first : "?",
                 n_zero > 1 ? " (and others)" : "");
}

static bj_status load_parts(bj_model *m, const char *path, const char *dir, bj_error *err) {
    char buf[4096];
    BJ_TRY(bj_path_join(buf, sizeof buf, dir, "config.json", err));
    BJ_TRY(bj_hf_config_load(&m->cfg, buf, err));
    BJ_TRY(bj_st_open(&m->st, path, err));
    BJ_TRY(bj_tok_load_hf(&m->tok, dir, err));
    if (bj_tok_vocab_size(m->tok) > m->cfg.vocab)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tokenizer has %d tokens but config.json vocab_size is %lld",
                       dir, bj_tok_vocab_size(m->tok), (long long)m->cfg.vocab);
    BJ_TRY(bj_graph_init(&m->graph, "bitnet", err));
    bj_status s = bj_fe_build_bitnet_hf(&m->graph, &m->cfg, &m->st, err);
    if (s != BJ_OK) return bj_error_prefix(err, "%s", path);
    warn_zero_weights(m, path);
    return BJ_OK;
}

static bool is_gguf_path(const char *path) {
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".gguf") == 0;
}

/* A .gguf file: metadata -> config, tokenizer from metadata, GGUF architecture builder. */
static bj_status load_gguf(bj_model *m, const char *path, bj_error *err) {
    m->gguf = calloc(1, sizeof *m->gguf);
    if (!m->gguf) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    BJ_TRY(bj_gguf_open(m->gguf, path, err));
    BJ_TRY(bj_gguf_config(m->gguf, &m->cfg, err));
    BJ_TRY(bj_tok_load_gguf(&m->tok, m->gguf, err));
    if (bj_tok_vocab_size(m->tok) > m->cfg.vocab)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tokenizer has %d tokens but token_embd.weight has %lld rows", path,
                       bj_tok_vocab_size(m->tok), (long long)m->cfg.vocab);
    BJ_TRY(bj_graph_init(&m->graph, "bitnet", err));
    BJ_TRY(bj_fe_build_bitnet_gguf(&m->graph, &m->cfg, m->gguf, err));
    if (m->gguf->warnings) snprintf(m->warning, sizeof m->warning, "%s", m->gguf->warning);
    /* The metadata (for Llama 3 vocabularies: megabytes of token strings and merges) has been
     * parsed into the tokenizer and config; its pages need not stay resident. Reading it again
     * faults them back in with the same bytes (bj_fmap_release). */
    if (m->gguf->map.data) bj_fmap_release(m->gguf->map.data, m->gguf->data_start);
    return BJ_OK;
}

bj_status bj_model_load(bj_model *m, const char *path, bj_error *err) {
    memset(m, 0, sizeof *m);
    bj_arena_init(&m->st.arena);
    if (is_gguf_path(path)) {
        bj_status s = (m->path = strdup(path)) ? load_gguf(m, path, err) : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
        if (s != BJ_OK) bj_model_free(m);
        return s;
    }
    char dir[4096];
    bj_status s = model_dir(path, dir, sizeof dir, err);
    if (s == BJ_OK) {
        m->path = strdup(path);
        s = m->path ? load_parts(m, path, dir, err) : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    }
    if (s != BJ_OK) bj_model_free(m);
    return s;
}

void bj_model_free(bj_model *m) {
    bj_tok_free(m->tok);
    bj_graph_free(&m->graph);
    bj_st_close(&m->st);
    if (m->gguf) bj_gguf_close(m->gguf);
    free(m->gguf);
    free(m->path);
    memset(m, 0, sizeof *m);
}
