/* tests/unit/test_fe_config.c -- the HF config.json reader (frontends/model_config.c).
 *
 * The bundled kjv configs are read field by field; synthetic configs are built from a table
 * of key/value pairs (one key replaced or dropped per case) so that every required key,
 * every type check and every unsupported value is one table row that asserts the status
 * code and that the message names the key (or value) and the file. */
#include "frontends/model_config.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define CFG_PATH "cfgdir/config.json"

/* ---- the bundled models -------------------------------------------------------------------- */

static void load_ok(bj_model_config *c, const char *path) {
    bj_error err = { 0 };
    cr_assert_eq(bj_hf_config_load(c, path, &err), BJ_OK, "%s", err.msg);
}

static void expect_kjv_shape(const bj_model_config *c) {
    cr_expect_str_eq(c->arch, "BitNetForCausalLM");
    cr_expect_eq(c->hidden, 384);
    cr_expect_eq(c->intermediate, 1024);
    cr_expect_eq(c->n_layer, 6);
    cr_expect_eq(c->n_head, 6);
    cr_expect_eq(c->n_kv_head, 2);
    cr_expect_eq(c->head_dim, 64);
    cr_expect_eq(c->vocab, 4096);
    cr_expect_eq(c->max_seq, 512);
    cr_expect_float_eq(c->rms_eps, 1e-5, 1e-12);
    cr_expect_float_eq(c->rope_theta, 10000.0, 1e-9);
    cr_expect_eq(c->act, BJ_ACT_RELU2);
    cr_expect(c->tie_embeddings);
    cr_expect_eq(c->bos_id, 4094);
    cr_expect_eq(c->eos_id, 4095);
}

Test(cfg_real, kjv_master) {
    bj_model_config c;
    load_ok(&c, BJ_SOURCE_DIR "/models/kjv-bitnet-11m/master/config.json");
    expect_kjv_shape(&c);
    cr_expect_eq(c.linear_class, BJ_LC_AUTOBITLINEAR);
    cr_expect(c.online_quant);
    cr_expect_eq(c.weight_quant, BJ_WQ_TERNARY);
}

Test(cfg_real, kjv_packed) {
    bj_model_config c;
    load_ok(&c, BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed/config.json");
    expect_kjv_shape(&c);
    cr_expect_eq(c.linear_class, BJ_LC_BITLINEAR);
    cr_expect_not(c.online_quant);
    cr_expect_eq(c.weight_quant, BJ_WQ_TERNARY);
}

Test(cfg_real, kjv_bitnet1_binary) {
    bj_model_config c;
    load_ok(&c, BJ_SOURCE_DIR "/models/kjv-bitnet1-11m/master/config.json");
    expect_kjv_shape(&c);
    cr_expect_eq(c.weight_quant, BJ_WQ_BINARY);
    cr_expect_eq(c.linear_class, BJ_LC_AUTOBITLINEAR);
    cr_expect(c.online_quant);
}

Test(cfg_real, missing_file) {
    bj_model_config c;
    bj_error err = { 0 };
    cr_expect_eq(bj_hf_config_load(&c, BJ_TEST_TMP "/cfg_nope/config.json", &err), BJ_E_IO);
    cr_expect(strstr(err.msg, "cfg_nope/config.json") != NULL, "%s", err.msg);
}

/* ---- synthetic configs ------------------------------------------------------------------- */

/* The minimal valid config: only the required keys. */
static const char *const base_kv[][2] = {
    { "architectures", "[\"BitNetForCausalLM\"]" },
    { "hidden_size", "384" },
    { "intermediate_size", "1024" },
    { "num_hidden_layers", "6" },
    { "num_attention_heads", "6" },
    { "vocab_size", "4096" },
};

/* The base config with key set to val (appended when not a base key); val NULL drops it.
 * A second pair (key2, val2) may be given too. */
static const char *cfg_build2(char *buf, size_t cap, const char *key, const char *val, const char *key2,
                              const char *val2) {
    size_t n = (size_t)snprintf(buf, cap, "{");
    bool seen = false, seen2 = false;
    for (size_t i = 0; i < sizeof base_kv / sizeof *base_kv; i++) {
        const char *k = base_kv[i][0], *v = base_kv[i][1];
        if (key && strcmp(k, key) == 0) { v = val; seen = true; }
        if (key2 && strcmp(k, key2) == 0) { v = val2; seen2 = true; }
        if (v) n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\":%s", n > 1 ? "," : "", k, v);
    }
    if (key && !seen && val) n += (size_t)snprintf(buf + n, cap - n, ",\"%s\":%s", key, val);
    if (key2 && !seen2 && val2) n += (size_t)snprintf(buf + n, cap - n, ",\"%s\":%s", key2, val2);
    cr_assert_lt(n + 2, cap);
    snprintf(buf + n, cap - n, "}");
    return buf;
}

static const char *cfg_build(char *buf, size_t cap, const char *key, const char *val) {
    return cfg_build2(buf, cap, key, val, NULL, NULL);
}

static bj_status parse(bj_model_config *c, const char *json, bj_error *err) {
    memset(err, 0, sizeof *err);
    return bj_hf_config_parse(c, json, strlen(json), CFG_PATH, err);
}

static bj_model_config parse_ok(const char *json) {
    bj_model_config c;
    bj_error err;
    cr_assert_eq(parse(&c, json, &err), BJ_OK, "%s -> %s", json, err.msg);
    return c;
}

Test(cfg_parse, defaults) {
    char b[2048];
    bj_model_config c = parse_ok(cfg_build(b, sizeof b, NULL, NULL));
    cr_expect_str_eq(c.arch, "BitNetForCausalLM");
    cr_expect_eq(c.n_kv_head, 6, "num_key_value_heads defaults to num_attention_heads");
    cr_expect_eq(c.head_dim, 64, "head_dim defaults to hidden / heads");
    cr_expect_eq(c.max_seq, 2048);
    cr_expect_float_eq(c.rms_eps, 1e-6, 1e-15);
    cr_expect_float_eq(c.rope_theta, 500000.0, 1e-9);
    cr_expect_eq(c.act, BJ_ACT_RELU2);
    cr_expect_not(c.tie_embeddings);
    cr_expect_eq(c.bos_id, -1);
    cr_expect_eq(c.eos_id, -1);
    cr_expect_eq(c.linear_class, BJ_LC_BITLINEAR);
    cr_expect_not(c.online_quant);
    cr_expect_eq(c.weight_quant, BJ_WQ_TERNARY);
    /* an empty quantization_config gives the same defaults */
    c = parse_ok(cfg_build(b, sizeof b, "quantization_config", "{}"));
    cr_expect_eq(c.linear_class, BJ_LC_BITLINEAR);
    cr_expect_not(c.online_quant);
    cr_expect_eq(c.weight_quant, BJ_WQ_TERNARY);
}

Test(cfg_parse, optional_values) {
    char b[2048];
    bj_model_config c = parse_ok(cfg_build2(b, sizeof b, "eos_token_id", "[7, 8, 9]", "bos_token_id", "null"));
    cr_expect_eq(c.eos_id, 7, "eos array: the first id");
    cr_expect_eq(c.bos_id, -1, "null is absent");
    c = parse_ok(cfg_build(b, sizeof b, "eos_token_id", "[]"));
    cr_expect_eq(c.eos_id, -1);
    c = parse_ok(cfg_build2(b, sizeof b, "head_dim", "32", "hidden_size", "200"));
    cr_expect_eq(c.head_dim, 32, "an explicit head_dim needs no divisibility");
    c = parse_ok(cfg_build2(b, sizeof b, "hidden_act", "\"silu\"", "tie_word_embeddings", "true"));
    cr_expect_eq(c.act, BJ_ACT_SILU);
    cr_expect(c.tie_embeddings);
    c = parse_ok(cfg_build2(b, sizeof b, "rms_norm_eps", "1e-5", "rope_theta", "10000"));
    cr_expect_float_eq(c.rms_eps, 1e-5, 1e-15);
    cr_expect_float_eq(c.rope_theta, 10000.0, 1e-9);
    c = parse_ok(cfg_build(b, sizeof b, "architectures", "[\"Other\", \"BitNetForCausalLM\"]"));
    cr_expect_str_eq(c.arch, "BitNetForCausalLM");
    c = parse_ok(cfg_build(b, sizeof b, "quantization_config",
                           "{\"quant_method\":\"bitnet\",\"linear_class\":\"autobitlinear\","
                           "\"quantization_mode\":\"online\",\"weight_quant\":\"binary\",\"use_rms_norm\":false}"));
    cr_expect_eq(c.linear_class, BJ_LC_AUTOBITLINEAR);
    cr_expect(c.online_quant);
    cr_expect_eq(c.weight_quant, BJ_WQ_BINARY);
    c = parse_ok(cfg_build2(b, sizeof b, "num_key_value_heads", "3", "max_position_embeddings", "128"));
    cr_expect_eq(c.n_kv_head, 3);
    cr_expect_eq(c.max_seq, 128);
    c = parse_ok(cfg_build2(b, sizeof b, "model_type", "\"bitnet\"", "torch_dtype", "\"bfloat16\""));
    cr_expect_eq(c.hidden, 384, "unknown keys are ignored");
}

/* One bad config: replace key by val (NULL: drop it), expect code and a message holding
 * want (and the file path). */
typedef struct bad_case {
    const char *key, *val;
    bj_status code;
    const char *want;
} bad_case;

static void run_bad(const bad_case *cases, size_t n) {
    char b[2048];
    for (size_t i = 0; i < n; i++) {
        const bad_case *t = &cases[i];
        bj_model_config c;
        bj_error err;
        const char *json = cfg_build(b, sizeof b, t->key, t->val);
        bj_status s = parse(&c, json, &err);
        cr_expect_eq(s, t->code, "%s=%s: status %s, want %s (%s)", t->key, t->val ? t->val : "(dropped)",
                     bj_status_name(s), bj_status_name(t->code), err.msg);
        cr_expect_eq(err.code, t->code);
        cr_expect(strstr(err.msg, t->want) != NULL, "%s=%s: message lacks '%s': %s", t->key,
                  t->val ? t->val : "(dropped)", t->want, err.msg);
        cr_expect(strstr(err.msg, CFG_PATH) != NULL, "message lacks the file: %s", err.msg);
    }
}

Test(cfg_bad, missing_required) {
    static const bad_case cases[] = {
        { "architectures", NULL, BJ_E_FORMAT, "missing required key 'architectures'" },
        { "hidden_size", NULL, BJ_E_FORMAT, "missing required key 'hidden_size' (a positive integer)" },
        { "intermediate_size", NULL, BJ_E_FORMAT, "missing required key 'intermediate_size'" },
        { "num_hidden_layers", NULL, BJ_E_FORMAT, "missing required key 'num_hidden_layers'" },
        { "num_attention_heads", NULL, BJ_E_FORMAT, "missing required key 'num_attention_heads'" },
        { "vocab_size", NULL, BJ_E_FORMAT, "missing required key 'vocab_size'" },
        { "vocab_size", "null", BJ_E_FORMAT, "missing required key 'vocab_size'" },
    };
    run_bad(cases, BJ_COUNTOF(cases));
}

Test(cfg_bad, wrong_type) {
    static const bad_case cases[] = {
        { "hidden_size", "\"384\"", BJ_E_FORMAT, "key 'hidden_size': expected a positive integer, got string \"384\"" },
        { "hidden_size", "384.5", BJ_E_FORMAT, "key 'hidden_size': expected a positive integer, got 384.5" },
        { "hidden_size", "384.0", BJ_E_FORMAT, "key 'hidden_size': expected a positive integer" },
        { "hidden_size", "0", BJ_E_FORMAT, "key 'hidden_size': expected a positive integer" },
        { "num_hidden_layers", "-6", BJ_E_FORMAT, "key 'num_hidden_layers': expected a positive integer" },
        { "vocab_size", "4294967296", BJ_E_FORMAT, "key 'vocab_size': expected a positive integer <= 2147483647" },
        { "intermediate_size", "[1024]", BJ_E_FORMAT, "key 'intermediate_size': expected a positive integer, got an array" },
        { "num_attention_heads", "true", BJ_E_FORMAT, "key 'num_attention_heads'" },
        { "num_key_value_heads", "\"2\"", BJ_E_FORMAT, "key 'num_key_value_heads'" },
        { "head_dim", "64.0", BJ_E_FORMAT, "key 'head_dim'" },
        { "max_position_embeddings", "{}", BJ_E_FORMAT, "key 'max_position_embeddings'" },
        { "rms_norm_eps", "\"1e-5\"", BJ_E_FORMAT, "key 'rms_norm_eps': expected a positive number" },
        { "rms_norm_eps", "0", BJ_E_FORMAT, "key 'rms_norm_eps': expected a positive number" },
        { "rope_theta", "-1.0", BJ_E_FORMAT, "key 'rope_theta': expected a positive number" },
        { "tie_word_embeddings", "1", BJ_E_FORMAT, "key 'tie_word_embeddings': expected true or false, got 1" },
        { "tie_word_embeddings", "\"true\"", BJ_E_FORMAT, "key 'tie_word_embeddings'" },
        { "hidden_act", "2", BJ_E_FORMAT, "key 'hidden_act': expected a string" },
        { "bos_token_id", "\"<s>\"", BJ_E_FORMAT, "key 'bos_token_id'" },
        { "bos_token_id", "[1]", BJ_E_FORMAT, "key 'bos_token_id'" },
        { "bos_token_id", "-1", BJ_E_FORMAT, "key 'bos_token_id'" },
        { "eos_token_id", "[1, \"x\"]", BJ_E_FORMAT, "key 'eos_token_id'" },
        { "eos_token_id", "2.0", BJ_E_FORMAT, "key 'eos_token_id'" },
        { "architectures", "\"BitNetForCausalLM\"", BJ_E_FORMAT, "key 'architectures': expected a non-empty array" },
        { "architectures", "[]", BJ_E_FORMAT, "key 'architectures'" },
        { "architectures", "[\"BitNetForCausalLM\", 3]", BJ_E_FORMAT, "key 'architectures': expected an array of strings" },
        { "quantization_config", "[]", BJ_E_FORMAT, "key 'quantization_config': expected an object" },
        { "quantization_config", "\"bitnet\"", BJ_E_FORMAT, "key 'quantization_config'" },
        { "attention_bias", "\"no\"", BJ_E_FORMAT, "key 'attention_bias'" },
    };
    run_bad(cases, BJ_COUNTOF(cases));
}

Test(cfg_bad, unsupported) {
    static const bad_case cases[] = {
        { "architectures", "[\"MistralForCausalLM\"]", BJ_E_UNSUPPORTED,
          "unsupported architecture 'MistralForCausalLM' (bitjit supports BitNetForCausalLM, BitnetForCausalLM" },
        { "mlp_bias", "true", BJ_E_UNSUPPORTED, "mlp_bias true" },
        { "rope_scaling", "{\"rope_type\":\"llama3\",\"factor\":8.0}", BJ_E_UNSUPPORTED,
          "unsupported rope_scaling (type 'llama3')" },
        { "hidden_act", "\"gelu\"", BJ_E_UNSUPPORTED, "unsupported hidden_act 'gelu' (bitjit supports relu2, silu)" },
        { "hidden_act", "\"RELU2\"", BJ_E_UNSUPPORTED, "hidden_act 'RELU2'" },
        { "attention_bias", "true", BJ_E_UNSUPPORTED, "attention_bias" },
    };
    run_bad(cases, BJ_COUNTOF(cases));
}

Test(cfg_bad, quantization_config) {
    static const bad_case cases[] = {
        { "quantization_config", "{\"quant_method\":\"gptq\"}", BJ_E_UNSUPPORTED,
          "unsupported quantization_config.quant_method 'gptq' (bitjit supports bitnet)" },
        { "quantization_config", "{\"quant_method\":1}", BJ_E_FORMAT,
          "key 'quantization_config.quant_method': expected a string" },
        { "quantization_config", "{\"linear_class\":\"linear\"}", BJ_E_UNSUPPORTED,
          "quantization_config.linear_class 'linear' (bitjit supports bitlinear, autobitlinear)" },
        { "quantization_config", "{\"linear_class\":[]}", BJ_E_FORMAT, "key 'quantization_config.linear_class'" },
        { "quantization_config", "{\"quantization_mode\":\"dynamic\"}", BJ_E_UNSUPPORTED,
          "quantization_config.quantization_mode 'dynamic' (bitjit supports offline, online)" },
        { "quantization_config", "{\"weight_quant\":\"int4\"}", BJ_E_UNSUPPORTED,
          "quantization_config.weight_quant 'int4' (bitjit supports ternary, binary)" },
        { "quantization_config", "{\"weight_quant\":true}", BJ_E_FORMAT, "key 'quantization_config.weight_quant'" },
        { "quantization_config", "{\"modules_to_not_convert\":[\"model.layers.0.mlp\"]}", BJ_E_UNSUPPORTED,
          "quantization_config.modules_to_not_convert entry 'model.layers.0.mlp' (only lm_head may stay dense)" },
        { "quantization_config", "{\"rms_norm_eps\":\"x\"}", BJ_E_FORMAT, "key 'quantization_config.rms_norm_eps'" },
        { "quantization_config", "{\"use_rms_norm\":\"yes\"}", BJ_E_FORMAT, "key 'quantization_config.use_rms_norm'" },
    };
    run_bad(cases, BJ_COUNTOF(cases));
}

Test(cfg_bad, inconsistent_sizes) {
    static const bad_case cases[] = {
        { "num_key_value_heads", "4", BJ_E_FORMAT, "num_attention_heads 6 is not a multiple of num_key_value_heads 4" },
        { "num_key_value_heads", "12", BJ_E_FORMAT, "num_key_value_heads 12" },
        { "hidden_size", "100", BJ_E_FORMAT, "hidden_size 100 is not divisible by num_attention_heads 6" },
        { "head_dim", "63", BJ_E_FORMAT, "head_dim 63 is odd" },
        { "hidden_size", "18", BJ_E_FORMAT, "head_dim 3 is odd" },
        { "bos_token_id", "4096", BJ_E_FORMAT, "key 'bos_token_id': token id 4096 is not below vocab_size 4096" },
        { "eos_token_id", "[5000]", BJ_E_FORMAT, "key 'eos_token_id': token id 5000" },
    };
    run_bad(cases, BJ_COUNTOF(cases));
}

Test(cfg_bad, not_json_or_not_object) {
    static const char *const texts[] = { "", "{", "[1, 2]", "\"config\"", "{\"hidden_size\": 1,}",
                                         "{\"hidden_size\":384,\"hidden_size\":384}" };
    static const char *const wants[] = { "invalid JSON", "invalid JSON", "expected a JSON object, got an array",
                                         "invalid JSON", "invalid JSON", "duplicate object key near '\"hidden_size\"'" };
    for (size_t i = 0; i < BJ_COUNTOF(texts); i++) {
        bj_model_config c;
        bj_error err;
        cr_expect_eq(parse(&c, texts[i], &err), BJ_E_FORMAT, "%s", texts[i]);
        cr_expect(strstr(err.msg, wants[i]) && strstr(err.msg, CFG_PATH), "%s -> %s", texts[i], err.msg);
    }
}

/* Every one-key truncation and byte flip of a full config must fail cleanly or parse to a
 * config that satisfies the reader's checks (no crash, no inconsistent result). */
Test(cfg_fuzz, mutations) {
    const char *good = "{\"architectures\":[\"BitNetForCausalLM\"],\"hidden_size\":384,\"intermediate_size\":1024,"
                       "\"num_hidden_layers\":6,\"num_attention_heads\":6,\"num_key_value_heads\":2,"
                       "\"vocab_size\":4096,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"bos_token_id\":4094,"
                       "\"eos_token_id\":[4095],\"tie_word_embeddings\":true,\"quantization_config\":"
                       "{\"quant_method\":\"bitnet\",\"linear_class\":\"bitlinear\"}}";
    size_t n = strlen(good);
    char buf[1024];
    uint64_t rng = 12345;
    int ok = 0;
    for (int it = 0; it < 5000; it++) {
        memcpy(buf, good, n);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t at = (rng >> 33) % n, len = n;
        if (it % 3 == 0) len = at;
        else buf[at] = "0123456789-.e\"{}[],:tfn x"[(rng >> 20) % 25];
        bj_model_config c;
        bj_error err;
        memset(&err, 0, sizeof err);
        bj_status s = bj_hf_config_parse(&c, buf, len, CFG_PATH, &err);
        if (s == BJ_OK) {
            ok++;
            cr_assert(c.hidden > 0 && c.n_head > 0 && c.n_kv_head > 0 && c.n_head % c.n_kv_head == 0);
            cr_assert(c.head_dim > 0 && c.head_dim % 2 == 0 && c.vocab > 0 && c.eos_id < c.vocab);
            cr_assert(c.rms_eps > 0 && c.rope_theta > 0 && isfinite(c.rope_theta));
        } else {
            cr_assert(s == BJ_E_FORMAT || s == BJ_E_UNSUPPORTED, "%s", bj_status_name(s));
            cr_assert(strstr(err.msg, CFG_PATH), "%s", err.msg);
        }
    }
    cr_expect_gt(ok, 0);
    cr_expect_lt(ok, 5000);
}

/* ---- the families of issue 22 (docs/formats-families.md) -------------------------------------- */

Test(cfg_families, llama_bitnet) {
    char b[2048];
    bj_model_config c = parse_ok(cfg_build2(b, sizeof b, "architectures", "[\"LlamaForCausalLM\"]", "quantization_config",
                                            "{\"quant_method\":\"bitnet\",\"linear_class\":\"bitlinear\","
                                            "\"quantization_mode\":\"offline\"}"));
    cr_expect_str_eq(c.arch, "LlamaForCausalLM");
    cr_expect_eq(c.block, BJ_BLOCK_LLAMA);
    cr_expect_eq(c.act, BJ_ACT_SILU); /* LlamaConfig's default */
    cr_expect_float_eq(c.rope_theta, 10000.0, 1e-9);
    cr_expect_eq(c.linear_class, BJ_LC_BITLINEAR);
    cr_expect_not(c.proj_norm);
}

Test(cfg_families, falcon_e_use_rms_norm) {
    char b[2048];
    bj_model_config c = parse_ok(cfg_build2(b, sizeof b, "architectures", "[\"LlamaForCausalLM\"]", "quantization_config",
                                            "{\"quant_method\":\"bitnet\",\"linear_class\":\"autobitlinear\","
                                            "\"quantization_mode\":\"online\",\"use_rms_norm\":true,"
                                            "\"rms_norm_eps\":1e-5}"));
    cr_expect(c.proj_norm);
    cr_expect_float_eq(c.proj_norm_eps, 1e-5, 1e-15);
    cr_expect(c.online_quant);
    cr_expect_eq(c.linear_class, BJ_LC_AUTOBITLINEAR);
}

Test(cfg_families, onebitllm) {
    char b[2048];
    bj_model_config c = parse_ok(cfg_build(b, sizeof b, "architectures", "[\"BitnetForCausalLM\"]"));
    cr_expect_eq(c.block, BJ_BLOCK_BITNET);
    cr_expect_eq(c.hf_names, BJ_NAMES_1BITLLM);
    cr_expect_eq(c.act, BJ_ACT_SILU);
    c = parse_ok(cfg_build(b, sizeof b, "architectures", "[\"BitNetForCausalLM\"]"));
    cr_expect_eq(c.hf_names, BJ_NAMES_BITNET);
    cr_expect_eq(c.act, BJ_ACT_RELU2);
}

Test(cfg_families, llama_needs_bitnet_quantization) {
    char b[2048];
    bj_model_config c;
    bj_error err;
    cr_expect_eq(parse(&c, cfg_build(b, sizeof b, "architectures", "[\"LlamaForCausalLM\"]"), &err), BJ_E_UNSUPPORTED);
    cr_expect(strstr(err.msg, "LlamaForCausalLM without quantization_config is a full-precision model") != NULL, "%s",
              err.msg);
    cr_expect_eq(parse(&c, cfg_build2(b, sizeof b, "architectures", "[\"LlamaForCausalLM\"]", "quantization_config",
                                      "{\"quant_method\":\"awq\"}"), &err), BJ_E_UNSUPPORTED);
    cr_expect(strstr(err.msg, "quantization_config.quant_method 'awq' (bitjit supports bitnet)") != NULL, "%s", err.msg);
    cr_expect_eq(parse(&c, cfg_build2(b, sizeof b, "architectures", "[\"LlamaForCausalLM\"]", "quantization_config",
                                      "{\"quant_method\":\"bitnet\",\"linear_class\":\"bitlinear2\"}"), &err),
                 BJ_E_UNSUPPORTED);
    cr_expect(strstr(err.msg, "quantization_config.linear_class 'bitlinear2' (bitjit supports bitlinear, "
                              "autobitlinear)") != NULL, "%s", err.msg);
}
