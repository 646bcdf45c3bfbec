/* frontends/model_config.c -- the Hugging Face config.json reader (formats.md §3.2,
 * docs/formats-families.md) into bj_model_config, for three architectures:
 *   BitNetForCausalLM  (2B4T layout: sub-norms attn_sub_norm/ffn_sub_norm, ReLU^2 by default)
 *   BitnetForCausalLM  (1bitLLM bitnet_b1_58-*: sub-norms inner_attn_ln/ffn_layernorm, SiLU, fp16
 *                       masters quantized at load)
 *   LlamaForCausalLM   (only with quantization_config.quant_method "bitnet": Falcon3-*-1.58bit,
 *                       Llama3-8B-1.58, Falcon-E; no sub-norms, SiLU)
 *
 * Every field is looked up by name and checked for its JSON type before use; a missing
 * required field, a wrong type (hidden_size "384" or 384.5) or an out-of-range value is
 * BJ_E_FORMAT with a message naming the file and the key; a well-formed value bitjit does
 * not handle (another architecture, activation or quantization method) is
 * BJ_E_UNSUPPORTED. A JSON null counts as absent, since HF writes None as null. Defaults
 * follow HF's BitNetConfig / BitNetQuantConfig. Sizes are capped at INT32_MAX so that
 * products of two of them (hidden * vocab, ...) cannot overflow int64 downstream.
 *
 * Keys that would change the forward pass but have no field in bj_model_config are refused
 * rather than ignored: attention_bias true, mlp_bias true, a rope_scaling object. */
#include "frontends/model_config.h"
#include "frontends/fe_json.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define BJ_HF_ARCHS "BitNetForCausalLM, BitnetForCausalLM (1bitLLM), LlamaForCausalLM with quant_method bitnet"
#define BJ_HF_MAX_DIM INT32_MAX

/* Where the values come from: the file (for messages), the object, and the key prefix
 * ("" at top level, "quantization_config." inside it). */
typedef struct hf_obj {
    const char *path;
    const json_t *obj;
    const char *scope;
} hf_obj;

/* The value of key, or NULL when absent or null. */
static const json_t *hf_get(const hf_obj *o, const char *key) {
    const json_t *v = json_object_get(o->obj, key);
    return json_is_null(v) ? NULL : v;
}

static bj_status hf_type_error(const hf_obj *o, const char *key, const char *want, const json_t *v, bj_error *err) {
    char d[64];
    return BJ_FAIL(err, BJ_E_FORMAT, "%s: key '%s%s': expected %s, got %s", o->path, o->scope, key, want,
                   bj_fe_json_desc(v, d, sizeof d));
}

static bj_status hf_missing(const hf_obj *o, const char *key, const char *want, bj_error *err) {
    return BJ_FAIL(err, BJ_E_FORMAT, "%s: missing required key '%s%s' (%s)", o->path, o->scope, key, want);
}

/* ---- typed getters ------------------------------------------------------------------------ */

/* A positive integer <= BJ_HF_MAX_DIM; def when absent (required: an error). */
static bj_status hf_int(const hf_obj *o, const char *key, bool required, int64_t def, int64_t *out, bj_error *err) {
    const json_t *v = hf_get(o, key);
    *out = def;
    if (!v) return required ? hf_missing(o, key, "a positive integer", err) : BJ_OK;
    if (!json_is_integer(v)) return hf_type_error(o, key, "a positive integer", v, err);
    if (json_integer_value(v) < 1 || json_integer_value(v) > BJ_HF_MAX_DIM)
        return hf_type_error(o, key, "a positive integer <= 2147483647", v, err);
    *out = json_integer_value(v);
    return BJ_OK;
}

/* A positive number (integer or real); def when absent. */
static bj_status hf_num(const hf_obj *o, const char *key, double def, double *out, bj_error *err) {
    const json_t *v = hf_get(o, key);
    *out = def;
    if (!v) return BJ_OK;
    if (!json_is_number(v) || !(json_number_value(v) > 0)) return hf_type_error(o, key, "a positive number", v, err);
    *out = json_number_value(v);
    return BJ_OK;
}

static bj_status hf_bool(const hf_obj *o, const char *key, bool def, bool *out, bj_error *err) {
    const json_t *v = hf_get(o, key);
    *out = def;
    if (!v) return BJ_OK;
    if (!json_is_boolean(v)) return hf_type_error(o, key, "true or false", v, err);
    *out = json_is_true(v);
    return BJ_OK;
}

/* A string that must be one of names[] (its index into *out); def when absent. A string not
 * in the list is unsupported, anything else a format error. */
static bj_status hf_enum(const hf_obj *o, const char *key, const char *const *names, int n, int def, int *out,
                         bj_error *err) {
    const json_t *v = hf_get(o, key);
    *out = def;
    if (!v) return BJ_OK;
    if (!json_is_string(v)) return hf_type_error(o, key, "a string", v, err);
    for (int i = 0; i < n; i++) {
        if (strcmp(json_string_value(v), names[i]) == 0) {
            *out = i;
            return BJ_OK;
        }
    }
    char list[128] = "";
    for (int i = 0; i < n; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 1);
        if (i + 1 < n) strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: unsupported %s%s '%.60s' (bitjit supports %s)", o->path, o->scope,
                   key, json_string_value(v), list);
}

/* bos/eos: a non-negative integer below vocab, or (eos) an array whose first element is
 * one; -1 when absent or an empty array. */
static bj_status hf_token(const hf_obj *o, const char *key, bool list_ok, int64_t vocab, int64_t *out,
                          bj_error *err) {
    const json_t *v = hf_get(o, key);
    const char *want = list_ok ? "a token id or an array of token ids" : "a token id (a non-negative integer)";
    *out = -1;
    if (v && list_ok && json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!json_is_integer(json_array_get(v, i))) return hf_type_error(o, key, want, v, err);
        v = json_array_get(v, 0);
    }
    if (!v) return BJ_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0) return hf_type_error(o, key, want, v, err);
    if (json_integer_value(v) >= vocab)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: key '%s': token id %" JSON_INTEGER_FORMAT " is not below vocab_size %"
                       PRId64, o->path, key, json_integer_value(v), vocab);
    *out = json_integer_value(v);
    return BJ_OK;
}

/* ---- sections ------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    bj_block block;
    bj_hf_names names;
    bj_act act;
    double rope_theta;
} k_hf_archs[] = {
    { "BitNetForCausalLM", BJ_BLOCK_BITNET, BJ_NAMES_BITNET, BJ_ACT_RELU2, 500000.0 },
    { "BitnetForCausalLM", BJ_BLOCK_BITNET, BJ_NAMES_1BITLLM, BJ_ACT_SILU, 10000.0 },
    { "LlamaForCausalLM", BJ_BLOCK_LLAMA, BJ_NAMES_BITNET, BJ_ACT_SILU, 10000.0 },
};

/* The architecture's index into k_hf_archs. */
static bj_status hf_arch(bj_model_config *c, const hf_obj *o, int *which, bj_error *err) {
    const json_t *v = hf_get(o, "architectures");
    if (!v) return hf_missing(o, "architectures", "an array of strings", err);
    if (!json_is_array(v) || json_array_size(v) == 0)
        return hf_type_error(o, "architectures", "a non-empty array of strings", v, err);
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_string(json_array_get(v, i)))
            return hf_type_error(o, "architectures", "an array of strings", v, err);
    for (size_t i = 0; i < json_array_size(v); i++) {
        for (int a = 0; a < (int)BJ_COUNTOF(k_hf_archs); a++) {
            if (strcmp(json_string_value(json_array_get(v, i)), k_hf_archs[a].name) == 0) {
                snprintf(c->arch, sizeof c->arch, "%s", k_hf_archs[a].name);
                c->block = k_hf_archs[a].block;
                c->hf_names = k_hf_archs[a].names;
                *which = a;
                return BJ_OK;
            }
        }
    }
    return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: unsupported architecture '%.60s' (bitjit supports " BJ_HF_ARCHS ")",
                   o->path, json_string_value(json_array_get(v, 0)));
}

static bj_status hf_sizes(bj_model_config *c, const hf_obj *o, bj_error *err) {
    BJ_TRY(hf_int(o, "hidden_size", true, 0, &c->hidden, err));
    BJ_TRY(hf_int(o, "intermediate_size", true, 0, &c->intermediate, err));
    BJ_TRY(hf_int(o, "num_hidden_layers", true, 0, &c->n_layer, err));
    BJ_TRY(hf_int(o, "num_attention_heads", true, 0, &c->n_head, err));
    BJ_TRY(hf_int(o, "vocab_size", true, 0, &c->vocab, err));
    BJ_TRY(hf_int(o, "num_key_value_heads", false, c->n_head, &c->n_kv_head, err));
    BJ_TRY(hf_int(o, "max_position_embeddings", false, 2048, &c->max_seq, err));
    if (c->n_head % c->n_kv_head)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: num_attention_heads %" PRId64 " is not a multiple of "
                       "num_key_value_heads %" PRId64, o->path, c->n_head, c->n_kv_head);
    if (!hf_get(o, "head_dim") && c->hidden % c->n_head)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: hidden_size %" PRId64 " is not divisible by num_attention_heads %"
                       PRId64 " (and there is no head_dim)", o->path, c->hidden, c->n_head);
    BJ_TRY(hf_int(o, "head_dim", false, c->hidden / c->n_head, &c->head_dim, err));
    if (c->head_dim % 2)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: head_dim %" PRId64 " is odd (rotary embeddings need an even head_dim)",
                       o->path, c->head_dim);
    return BJ_OK;
}

static bj_status hf_misc(bj_model_config *c, const hf_obj *o, int arch, bj_error *err) {
    static const char *const acts[] = { [BJ_ACT_RELU2] = "relu2", [BJ_ACT_SILU] = "silu" };
    int act;
    bool bias;
    BJ_TRY(hf_num(o, "rms_norm_eps", 1e-6, &c->rms_eps, err));
    BJ_TRY(hf_num(o, "rope_theta", k_hf_archs[arch].rope_theta, &c->rope_theta, err));
    BJ_TRY(hf_enum(o, "hidden_act", acts, (int)BJ_COUNTOF(acts), (int)k_hf_archs[arch].act, &act, err));
    c->act = (bj_act)act;
    BJ_TRY(hf_bool(o, "tie_word_embeddings", false, &c->tie_embeddings, err));
    BJ_TRY(hf_token(o, "bos_token_id", false, c->vocab, &c->bos_id, err));
    BJ_TRY(hf_token(o, "eos_token_id", true, c->vocab, &c->eos_id, err));
    BJ_TRY(hf_bool(o, "attention_bias", false, &bias, err));
    if (bias)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: unsupported attention_bias true (BitNet has no biases)", o->path);
    BJ_TRY(hf_bool(o, "mlp_bias", false, &bias, err));
    if (bias) return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: unsupported mlp_bias true (BitNet has no biases)", o->path);
    const json_t *rs = hf_get(o, "rope_scaling");
    if (rs) {
        const json_t *ty = json_is_object(rs) ? json_object_get(rs, "rope_type") : NULL;
        if (!ty && json_is_object(rs)) ty = json_object_get(rs, "type");
        if (!(json_is_string(ty) && !strcmp(json_string_value(ty), "default")))
            return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: unsupported rope_scaling (type '%.40s'): bitjit implements "
                           "unscaled RoPE only", o->path, json_is_string(ty) ? json_string_value(ty) : "?");
    }
    return BJ_OK;
}

static bj_status hf_quant(bj_model_config *c, const char *path, const json_t *q, bj_error *err) {
    static const char *const methods[] = { "bitnet" };
    static const char *const classes[] = { [BJ_LC_BITLINEAR] = "bitlinear", [BJ_LC_AUTOBITLINEAR] = "autobitlinear" };
    static const char *const modes[] = { "offline", "online" };
    static const char *const wquants[] = { [BJ_WQ_TERNARY] = "ternary", [BJ_WQ_BINARY] = "binary" };
    hf_obj o = { path, q, "quantization_config." };
    int method, lc, mode, wq;
    bool rms;
    BJ_TRY(hf_enum(&o, "quant_method", methods, 1, 0, &method, err));
    BJ_TRY(hf_enum(&o, "linear_class", classes, 2, BJ_LC_BITLINEAR, &lc, err));
    BJ_TRY(hf_enum(&o, "quantization_mode", modes, 2, 0, &mode, err));
    BJ_TRY(hf_enum(&o, "weight_quant", wquants, 2, BJ_WQ_TERNARY, &wq, err));
    BJ_TRY(hf_bool(&o, "use_rms_norm", false, &rms, err));
    BJ_TRY(hf_num(&o, "rms_norm_eps", 1e-6, &c->proj_norm_eps, err));
    c->proj_norm = rms;
    const json_t *skip = hf_get(&o, "modules_to_not_convert");
    if (skip && !(json_is_array(skip) && json_array_size(skip) == 0)) {
        /* lm_head is never a BitLinear here; any other module left dense is not supported */
        for (size_t i = 0; json_is_array(skip) && i < json_array_size(skip); i++) {
            const json_t *e = json_array_get(skip, i);
            if (!json_is_string(e)) return hf_type_error(&o, "modules_to_not_convert", "an array of strings", skip, err);
            if (strcmp(json_string_value(e), "lm_head") != 0)
                return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: unsupported quantization_config.modules_to_not_convert "
                               "entry '%.60s' (only lm_head may stay dense)", path, json_string_value(e));
        }
        if (!json_is_array(skip)) return hf_type_error(&o, "modules_to_not_convert", "an array of strings", skip, err);
    }
    c->qconfig = true;
    c->linear_class = (bj_linear_class)lc;
    c->online_quant = mode == 1;
    c->weight_quant = (bj_wquant)wq;
    return BJ_OK;
}

static bj_status hf_config(bj_model_config *c, const char *path, const json_t *root, bj_error *err) {
    char d[64];
    if (!json_is_object(root))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: expected a JSON object, got %s", path, bj_fe_json_desc(root, d, sizeof d));
    hf_obj o = { path, root, "" };
    int arch = 0;
    BJ_TRY(hf_arch(c, &o, &arch, err));
    BJ_TRY(hf_sizes(c, &o, err));
    BJ_TRY(hf_misc(c, &o, arch, err));
    const json_t *q = hf_get(&o, "quantization_config");
    if (q && !json_is_object(q)) return hf_type_error(&o, "quantization_config", "an object", q, err);
    if (!q && c->block == BJ_BLOCK_LLAMA)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: LlamaForCausalLM without quantization_config is a full-precision "
                       "model; bitjit runs 1.58-bit ones (quantization_config.quant_method \"bitnet\")", path);
    return q ? hf_quant(c, path, q, err) : BJ_OK;
}

bj_status bj_hf_config_parse(bj_model_config *c, const char *json, size_t len, const char *path, bj_error *err) {
    memset(c, 0, sizeof *c);
    c->bos_id = c->eos_id = -1;
    json_error_t je;
    bool oom;
    json_t *root = bj_fe_json_loadb(json, len, JSON_REJECT_DUPLICATES, &je, &oom);
    if (oom) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory parsing JSON", path);
    if (!root) return BJ_FAIL(err, BJ_E_FORMAT, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
    bj_status s = hf_config(c, path, root, err);
    json_decref(root);
    return s;
}

bj_status bj_hf_config_load(bj_model_config *c, const char *path, bj_error *err) {
    char *text;
    size_t len;
    memset(c, 0, sizeof *c);
    BJ_TRY(bj_read_file(path, &text, &len, err));
    bj_status s = bj_hf_config_parse(c, text, len, path, err);
    free(text);
    return s;
}
