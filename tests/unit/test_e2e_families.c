/* tests/unit/test_e2e_families.c -- issue 22's model families end to end against their oracles
 * (models/README.md; made by scripts/oracles/families_ref.py, independent of bitjit):
 *
 *   falcon3-tiny    LlamaForCausalLM, quant_method bitnet / bitlinear / offline (Falcon3-*-1.58bit,
 *                   Llama3-8B-1.58 layout): packed U8 + weight_scale, no sub-norms, SiLU, GQA, untied
 *   falcone-tiny    LlamaForCausalLM, autobitlinear / online / use_rms_norm (Falcon-E's variants):
 *                   bf16 masters, an RMSNorm inside every BitLinear, tied
 *   bitnet158-tiny  1bitLLM's BitnetForCausalLM: fp16 masters, inner_attn_ln / ffn_layernorm, SiLU,
 *                   SentencePiece tokenizer.model
 *
 * For each: prompt ids, last logits within 0.05, 48 greedy ids through the reference engine, the
 * JIT and an AOT library; through GGUF (bitjitc convert: arch llama for the Llama block, bitnet
 * for 1bitLLM) where the family has a GGUF form; the tokenizer.model against sentencepiece's own
 * ids; the chat templates against Jinja's rendering; bad inputs with their messages. */
#include "frontends/gguf.h"
#include "frontends/model.h"
#include "runtime/aot_load.h"
#include "runtime/chat.h"
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <sys/stat.h>

#include "support/fixtures.h"
#include "support/oracle_check.h"
#include "support/shell.h"

typedef struct family {
    const char *dir, *key;
} family;

static const family k_falcon3 = { "models/falcon3-tiny", "packed" };
static const family k_falcone = { "models/falcone-tiny", "master" };
static const family k_bitnet158 = { "models/bitnet158-tiny", "master" };

static void oracle_path(const family *f, char *buf, size_t cap) { snprintf(buf, cap, "%s/oracle.json", f->dir); }

static void check_loaded(bj_model *m, bj_engine *e, const family *f, const char *what) {
    char oracle[512];
    oracle_path(f, oracle, sizeof oracle);
    bj_test_oracle_check(e, m->tok, &(bj_oracle_check){ .oracle = oracle, .key = f->key, .what = what,
                                                         .add_bos = true, .logits = true });
}

static void check_engine(const family *f, const char *path, const char *kind) {
    char what[4200];
    snprintf(what, sizeof what, "%s %s", kind, path);
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, path, &err), BJ_OK, "load %s: %s", path, err.msg);
    bj_engine *e = bj_test_engine(kind, &m.graph, BJ_TEST_TMP "/fam-cache", NULL, NULL);
    check_loaded(&m, e, f, what);
    bj_engine_free(e);
    bj_model_free(&m);
}

static void check_family(const family *f, const char *kind) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", BJ_SOURCE_DIR, f->dir);
    check_engine(f, path, kind);
}

/* An AOT library (bitjitc) of the family, its kernels run by the JIT engine. */
static void check_aot(const family *f, const char *name) {
    char src[4096], lib[4096], cmd[16384], out[16384], exe[4096];
    snprintf(src, sizeof src, "%s/%s", BJ_SOURCE_DIR, f->dir);
    snprintf(lib, sizeof lib, "%s/fam-%s.so", BJ_TEST_TMP, name);
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o '%s'", tool("bitjitc", exe, sizeof exe), src, lib);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    bj_error err = { 0 };
    bj_model m;
    bj_aot_lib *l;
    cr_assert_eq(bj_aot_load(&l, &m, lib, &err), BJ_OK, "%s", err.msg);
    bj_engine *e = bj_test_engine("jit", &m.graph, BJ_TEST_TMP "/fam-cache", l, NULL);
    check_loaded(&m, e, f, lib);
    bj_engine_free(e);
    bj_model_free(&m);
    bj_aot_close(l);
}

/* bitjitc convert to GGUF; returns the path in out_path. */
static int convert(const family *f, const char *type, char *out_path, size_t cap, char *log, size_t log_cap) {
    char src[4096], cmd[16384], exe[4096];
    snprintf(src, sizeof src, "%s/%s", BJ_SOURCE_DIR, f->dir);
    const char *base = strrchr(f->dir, '/') + 1;
    snprintf(out_path, cap, "%s/fam-%s-%s.gguf", BJ_TEST_TMP, base, type);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --type %s -q", tool("bitjitc", exe, sizeof exe), src, out_path,
             type);
    return sh(cmd, log, log_cap);
}

static void check_gguf(const family *f, const char *type, const char *want_arch) {
    char gguf[4096], log[16384];
    cr_assert_eq(convert(f, type, gguf, sizeof gguf, log, sizeof log), 0, "%s", log);
    bj_error err = { 0 };
    bj_gguf g;
    cr_assert_eq(bj_gguf_open(&g, gguf, &err), BJ_OK, "%s", err.msg);
    cr_expect_str_eq(g.arch, want_arch);
    cr_expect_null(bj_gguf_find_tensor(&g, "blk.0.attn_sub_norm.weight") && !strcmp(want_arch, "llama") ? "x" : NULL,
                   "a llama GGUF has no sub-norms");
    /* llama.cpp's `llama` tensor list has no `<proj>.scale`, and its loader refuses a file with a
     * tensor it does not create ("wrong number of tensors"): the scale lives in the values */
    for (uint64_t i = 0; !strcmp(want_arch, "llama") && i < g.n_tensors; i++)
        cr_expect(!strstr(g.tensors[i].name, ".scale"), "llama GGUF has tensor '%s'", g.tensors[i].name);
    bj_gguf_close(&g);
    check_engine(f, gguf, "jit");
}

/* ---- the oracles through every engine --------------------------------------------------------- */

#define ENGINE_TESTS(name, fam)                                                                  \
    Test(e2e_families, name##_ref, .timeout = 600) { check_family(&fam, "ref"); }                \
    Test(e2e_families, name##_jit, .timeout = 600) { check_family(&fam, "jit"); }                \
    Test(e2e_families, name##_jit_x86_64, .timeout = 600) { check_family(&fam, "jit-x86-64"); } \
    Test(e2e_families, name##_aot, .timeout = 600) { check_aot(&fam, #name); }

ENGINE_TESTS(falcon3, k_falcon3)
ENGINE_TESTS(falcone, k_falcone)
ENGINE_TESTS(bitnet158, k_bitnet158)

/* ---- GGUF ------------------------------------------------------------------------------------- */

Test(e2e_families, falcon3_gguf_tq2_0, .timeout = 600) { check_gguf(&k_falcon3, "tq2_0", "llama"); }
Test(e2e_families, falcon3_gguf_tq1_0, .timeout = 600) { check_gguf(&k_falcon3, "tq1_0", "llama"); }
Test(e2e_families, falcon3_gguf_i2_s, .timeout = 600) { check_gguf(&k_falcon3, "i2_s", "llama"); }
/* dense llama projections hold ternary * scale (no .scale tensor), which is what llama.cpp multiplies by */
Test(e2e_families, falcon3_gguf_f16, .timeout = 600) { check_gguf(&k_falcon3, "f16", "llama"); }
Test(e2e_families, bitnet158_gguf_tq2_0, .timeout = 600) { check_gguf(&k_bitnet158, "tq2_0", "bitnet"); }
Test(e2e_families, bitnet158_gguf_i2_s, .timeout = 600) { check_gguf(&k_bitnet158, "i2_s", "bitnet"); }

/* q and k of arch llama are stored in llama.cpp's order (convert_hf_to_gguf.py LlamaModel.permute):
 * GGUF row h*hd + 2j + s holds HF row h*hd + s*hd/2 + j. Checked on the packed HF rows. */
Test(e2e_families, falcon3_gguf_qk_rows_permuted, .timeout = 300) {
    char gguf[4096], log[16384], src[4096];
    cr_assert_eq(convert(&k_falcon3, "tq2_0", gguf, sizeof gguf, log, sizeof log), 0, "%s", log);
    bj_error err = { 0 };
    bj_gguf g;
    bj_st_model st;
    bj_arena_init(&st.arena);
    cr_assert_eq(bj_gguf_open(&g, gguf, &err), BJ_OK, "%s", err.msg);
    snprintf(src, sizeof src, "%s/%s/model.safetensors", BJ_SOURCE_DIR, k_falcon3.dir);
    memset(&st, 0, sizeof st);
    bj_arena_init(&st.arena);
    cr_assert_eq(bj_st_open(&st, src, &err), BJ_OK, "%s", err.msg);
    const char *pairs[2][2] = { { "blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight" },
                                { "blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight" } };
    for (int p = 0; p < 2; p++) {
        const bj_gguf_tensor *t = bj_gguf_find_tensor(&g, pairs[p][0]);
        const bj_st_tensor *h = bj_st_find(&st, pairs[p][1]);
        cr_assert(t && h);
        int64_t N = t->ne[1], K = t->ne[0], hd = 64, rows4 = N / 4, diff = 0;
        for (int64_t r = 0; r < N; r++)
            for (int64_t k = 0; k < K; k++) {
                int hf = ((h->data[(r % rows4) * K + k] >> (2 * (r / rows4))) & 3) - 1;
                int64_t head = r / hd, j = r % hd, gr = head * hd + 2 * (j % (hd / 2)) + j / (hd / 2);
                diff += bj_gguf_ternary_at(t, gr, k, NULL) != hf;
            }
        cr_expect_eq(diff, 0, "%s: %lld values not at llama.cpp's permuted rows", pairs[p][0], (long long)diff);
    }
    bj_st_close(&st);
    bj_gguf_close(&g);
}

Test(e2e_families, falcone_gguf_refused) {
    char gguf[4096], log[16384];
    cr_expect_eq(convert(&k_falcone, "tq2_0", gguf, sizeof gguf, log, sizeof log), 1, "%s", log);
    cr_expect(strstr(log, "quantization_config.use_rms_norm") != NULL, "%s", log);
    cr_expect(access(gguf, F_OK) != 0, "a refused conversion left %s", gguf);
}

/* ---- tokenizers --------------------------------------------------------------------------------- */

/* tokenizer.model (SentencePiece BPE, byte fallback) against sentencepiece's own ids, from the HF
 * directory and from the GGUF bitjitc writes (tokenizer.ggml.model "llama"). */
static void check_spm_cases(const bj_tokenizer *tok, const char *what) {
    json_t *o = bj_test_load_json("models/bitnet158-tiny/oracle.json"), *cases = json_object_get(o, "tokenizer"), *c;
    size_t i;
    cr_assert_geq(json_array_size(cases), 10);
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t n_want, n;
        int32_t *want = bj_test_ids(json_object_get(c, "ids"), &n_want), *ids;
        bj_error err = { 0 };
        cr_assert_eq(bj_tok_encode(tok, text, strlen(text), false, false, &ids, &n, &err), BJ_OK, "%s", err.msg);
        cr_expect(n == n_want && !memcmp(ids, want, n * sizeof *ids), "%s: '%s': %zu ids, sentencepiece %zu", what,
                  text, n, n_want);
        char *back;
        size_t blen;
        cr_assert_eq(bj_tok_decode(tok, ids, n, true, &back, &blen, &err), BJ_OK, "%s", err.msg);
        cr_expect(strstr(text, "\xE2\x96\x81") || !strcmp(back, text) || /* a literal U+2581 decodes as a space */ (text[0] == ' ' && !strcmp(back, text + 1)) || !strcmp(back + (back[0] == ' '), text),
                  "%s: decode('%s') = '%s'", what, text, back);
        free(back);
        free(ids);
        free(want);
    }
    json_decref(o);
}

Test(e2e_families, bitnet158_tokenizer_model) {
    bj_tokenizer *t;
    bj_error err = { 0 };
    cr_assert_eq(bj_tok_load_hf(&t, BJ_SOURCE_DIR "/models/bitnet158-tiny", &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(bj_tok_bos(t), 1);
    cr_expect_eq(bj_tok_eos(t), 2);
    cr_expect(bj_tok_add_bos(t));
    check_spm_cases(t, "tokenizer.model");
    bj_tok_free(t);
}

Test(e2e_families, bitnet158_tokenizer_gguf, .timeout = 300) {
    char gguf[4096], log[16384];
    cr_assert_eq(convert(&k_bitnet158, "tq2_0", gguf, sizeof gguf, log, sizeof log), 0, "%s", log);
    bj_error err = { 0 };
    bj_gguf g;
    bj_tokenizer *t;
    cr_assert_eq(bj_gguf_open(&g, gguf, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_tok_load_gguf(&t, &g, &err), BJ_OK, "%s", err.msg);
    check_spm_cases(t, "GGUF llama vocab");
    bj_tok_free(t);
    bj_gguf_close(&g);
}

/* ---- chat templates ---------------------------------------------------------------------------- */

static void check_chat(const family *f, bj_chat_kind want_kind) {
    char path[4096], oracle[512];
    snprintf(path, sizeof path, "%s/%s", BJ_SOURCE_DIR, f->dir);
    oracle_path(f, oracle, sizeof oracle);
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, path, &err), BJ_OK, "%s", err.msg);
    bj_chat_template t;
    cr_assert_eq(bj_chat_template_for_model(&t, &m, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(t.kind, want_kind, "%s: template %s", f->dir, bj_chat_kind_name(t.kind));
    json_t *o = bj_test_load_json(oracle), *chat = json_object_get(o, "chat"), *msgs = json_object_get(chat, "messages");
    bj_chat_msg mv[8];
    size_t n = json_array_size(msgs);
    cr_assert(n > 0 && n <= 8);
    for (size_t i = 0; i < n; i++)
        mv[i] = (bj_chat_msg){ json_string_value(json_object_get(json_array_get(msgs, i), "role")),
                               json_string_value(json_object_get(json_array_get(msgs, i), "content")) };
    char *text;
    cr_assert_eq(bj_chat_render(&t, mv, n, true, &text, NULL, &err), BJ_OK, "%s", err.msg);
    cr_expect_str_eq(text, json_string_value(json_object_get(chat, "text")), "%s: rendered chat differs from Jinja's",
                     f->dir);
    free(text);
    json_decref(o);
    bj_model_free(&m);
}

Test(e2e_families, falcon3_chat_template) { check_chat(&k_falcon3, BJ_CHAT_FALCON3); }
Test(e2e_families, falcone_chat_template) { check_chat(&k_falcone, BJ_CHAT_LLAMA3); }

/* ---- bad inputs --------------------------------------------------------------------------------- */

/* A copy of a family's directory under BJ_TEST_TMP with the safetensors header edited (renaming or
 * reshaping a tensor keeps the data section whole) and config.json replaced when cfg is given. */
typedef struct header_change {
    const char *ren_from, *ren_to, *reshape; /* rename ren_from to ren_to; give reshape the shape [d0, d1] */
    int64_t d0, d1;
} header_change;

static void change_header(json_t *h, void *ud) {
    const header_change *c = ud;
    if (c->ren_from) {
        json_t *v = json_incref(json_object_get(h, c->ren_from));
        cr_assert(v, "no tensor %s", c->ren_from);
        json_object_del(h, c->ren_from);
        json_object_set_new(h, c->ren_to, v);
    }
    if (c->reshape)
        json_object_set_new(json_object_get(h, c->reshape), "shape", json_pack("[II]", (json_int_t)c->d0, (json_int_t)c->d1));
}

static void family_copy(const family *f, const char *name, const char *ren_from, const char *ren_to,
                        const char *reshape, int64_t d0, int64_t d1, const char *cfg, char *dir, size_t cap) {
    static const char *const files[] = { "config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model" };
    char src[4096], dst[4096];
    snprintf(dir, cap, "%s/%s", BJ_TEST_TMP, name);
    mkdir(dir, 0755);
    for (size_t i = 0; i < BJ_COUNTOF(files); i++) {
        snprintf(src, sizeof src, "%s/%s/%s", BJ_SOURCE_DIR, f->dir, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        if (access(src, R_OK) == 0) bj_test_copy_file(src, dst);
    }
    if (cfg) {
        snprintf(dst, sizeof dst, "%s/config.json", dir);
        bj_test_write_text(dst, cfg);
    }
    snprintf(src, sizeof src, "%s/%s/model.safetensors", BJ_SOURCE_DIR, f->dir);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    header_change c = { ren_from, ren_to, reshape, d0, d1 };
    bj_test_st_copy_edited(src, dst, change_header, &c);
}

static void expect_load_error(const char *dir, bj_status code, const char *want) {
    bj_error err = { 0 };
    bj_model m;
    cr_expect_eq(bj_model_load(&m, dir, &err), code, "%s: %s", dir, err.msg);
    cr_expect(strstr(err.msg, want) != NULL, "message lacks '%s': %s", want, err.msg);
}

Test(e2e_families, bad_missing_weight_scale) {
    char dir[4096];
    family_copy(&k_falcon3, "fam-no-scale", "model.layers.1.mlp.up_proj.weight_scale", "model.layers.1.mlp.up_proj.wscale",
                NULL, 0, 0, NULL, dir, sizeof dir);
    expect_load_error(dir, BJ_E_FORMAT, "missing tensor 'model.layers.1.mlp.up_proj.weight_scale'");
}

Test(e2e_families, bad_shape_mismatch) {
    char dir[4096];
    /* k_proj is U8 [32,256] packed (128 rows); the same bytes as [16,512] */
    family_copy(&k_falcon3, "fam-bad-shape", NULL, NULL, "model.layers.0.self_attn.k_proj.weight", 16, 512, NULL, dir,
                sizeof dir);
    expect_load_error(dir, BJ_E_FORMAT, "tensor 'model.layers.0.self_attn.k_proj.weight'");
    expect_load_error(dir, BJ_E_FORMAT, "expected U8 [32,256] (packed)");
}

Test(e2e_families, bad_missing_proj_norm) {
    char dir[4096];
    family_copy(&k_falcone, "fam-no-projnorm", "model.layers.0.mlp.down_proj.rms_norm.weight", "x.rms_norm.weight", NULL,
                0, 0, NULL, dir, sizeof dir);
    expect_load_error(dir, BJ_E_FORMAT, "missing tensor 'model.layers.0.mlp.down_proj.rms_norm.weight'");
}

Test(e2e_families, bad_linear_class) {
    char dir[4096], cfg[4096];
    snprintf(cfg, sizeof cfg, "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":256,\"intermediate_size\":512,"
             "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":4096,"
             "\"quantization_config\":{\"quant_method\":\"bitnet\",\"linear_class\":\"bitlinear_v2\"}}");
    family_copy(&k_falcon3, "fam-bad-class", NULL, NULL, NULL, 0, 0, cfg, dir, sizeof dir);
    expect_load_error(dir, BJ_E_UNSUPPORTED, "quantization_config.linear_class 'bitlinear_v2' (bitjit supports "
                                             "bitlinear, autobitlinear)");
}

/* The family's config.json with quantization_config.<k1> = v1 (and <k2> = v2 when k2 is given),
 * as text for family_copy (malloc'd). */
static char *cfg_quant(const family *f, const char *k1, const char *v1, const char *k2, const char *v2) {
    char path[4096];
    json_error_t je;
    snprintf(path, sizeof path, "%s/%s/config.json", BJ_SOURCE_DIR, f->dir);
    json_t *root = json_load_file(path, 0, &je);
    cr_assert(root, "%s: %s", path, je.text);
    json_t *q = json_object_get(root, "quantization_config");
    json_object_set_new(q, k1, json_string(v1));
    if (k2) json_object_set_new(q, k2, json_string(v2));
    char *text = json_dumps(root, 0);
    json_decref(root);
    return text;
}

/* transformers' integration: linear_class bitlinear is BitLinear (packed U8) whatever
 * quantization_mode says, autobitlinear online a float master, autobitlinear offline packed U8 times
 * weight_scale. Weights of the other kind are refused naming the key and value. */
Test(e2e_families, bad_bitlinear_with_float_masters) {
    char dir[4096], *cfg = cfg_quant(&k_falcone, "linear_class", "bitlinear", NULL, NULL);
    family_copy(&k_falcone, "fam-bitlinear-masters", NULL, NULL, NULL, 0, 0, cfg, dir, sizeof dir);
    expect_load_error(dir, BJ_E_UNSUPPORTED, "quantization_config.linear_class 'bitlinear' stores packed U8 weights");
    expect_load_error(dir, BJ_E_UNSUPPORTED, "is a BF16 master");
    free(cfg);
}

Test(e2e_families, bad_online_with_packed_weights) {
    char dir[4096], *cfg = cfg_quant(&k_falcon3, "linear_class", "autobitlinear", "quantization_mode", "online");
    family_copy(&k_falcon3, "fam-online-packed", NULL, NULL, NULL, 0, 0, cfg, dir, sizeof dir);
    expect_load_error(dir, BJ_E_UNSUPPORTED, "is packed U8, but quantization_config.quantization_mode 'online'");
    free(cfg);
}

Test(e2e_families, bad_offline_with_float_weights) {
    char dir[4096], *cfg = cfg_quant(&k_falcone, "quantization_mode", "offline", NULL, NULL);
    family_copy(&k_falcone, "fam-offline-float", NULL, NULL, NULL, 0, 0, cfg, dir, sizeof dir);
    expect_load_error(dir, BJ_E_UNSUPPORTED, "is BF16, but quantization_config.quantization_mode 'offline'");
    free(cfg);
}

/* quantization_mode "online" with linear_class bitlinear: transformers builds BitLinear and never
 * reads the mode, so the packed model runs as it is, matching its oracle. */
Test(e2e_families, bitlinear_ignores_quantization_mode, .timeout = 300) {
    char dir[4096], *cfg = cfg_quant(&k_falcon3, "quantization_mode", "online", NULL, NULL);
    family_copy(&k_falcon3, "fam-bitlinear-online", NULL, NULL, NULL, 0, 0, cfg, dir, sizeof dir);
    check_engine(&k_falcon3, dir, "ref");
    free(cfg);
}

/* A handmade ModelProto: one piece "<unk>" (type 2) and trainer_spec.model_type = mt. */
static void write_proto(const char *path, int mt, bool truncate) {
    uint8_t b[64];
    size_t n = 0;
    const char piece[] = "<unk>";
    b[n++] = 0x0A, b[n++] = (uint8_t)(2 + 5 + 2); /* pieces: { 1: "<unk>", 3: 2 } */
    b[n++] = 0x0A, b[n++] = 5;
    memcpy(b + n, piece, 5), n += 5;
    b[n++] = 0x18, b[n++] = 2;
    b[n++] = 0x12, b[n++] = 2, b[n++] = 0x18, b[n++] = (uint8_t)mt; /* trainer_spec { 3: mt } */
    if (truncate) b[n++] = 0x0A, b[n++] = 40;                       /* a piece of 40 bytes that is not there */
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

Test(e2e_families, bad_tokenizer_model) {
    char dir[4096], path[4200];
    family_copy(&k_bitnet158, "fam-unigram", NULL, NULL, NULL, 0, 0, NULL, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    write_proto(path, 1, false);
    bj_tokenizer *t = NULL;
    bj_error err = { 0 };
    cr_expect_eq(bj_tok_load_hf(&t, dir, &err), BJ_E_UNSUPPORTED, "%s", err.msg);
    cr_expect(strstr(err.msg, "unknown tokenizer model: trainer_spec.model_type 1 (unigram)") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "tokenizer.model") != NULL, "%s", err.msg);
    write_proto(path, 2, true);
    cr_expect_eq(bj_tok_load_hf(&t, dir, &err), BJ_E_FORMAT, "%s", err.msg);
    cr_expect(strstr(err.msg, "truncated or malformed protobuf") != NULL, "%s", err.msg);
    bj_test_write_text(path, "");
    cr_expect_eq(bj_tok_load_hf(&t, dir, &err), BJ_E_FORMAT, "%s", err.msg);
    cr_expect(strstr(err.msg, "no pieces") != NULL, "%s", err.msg);
}

/* Prefixes of the real tokenizer.model (every 7th length) and 600 single-byte corruptions of it
 * load or fail with a message, never crash (the sanitizer builds run this too). */
Test(e2e_families, tokenizer_model_truncated_and_corrupted, .timeout = 300) {
    char dir[4096], path[4200];
    family_copy(&k_bitnet158, "fam-tokmut", NULL, NULL, NULL, 0, 0, NULL, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    char *orig;
    size_t n;
    bj_error err = { 0 };
    cr_assert_eq(bj_read_file(BJ_SOURCE_DIR "/models/bitnet158-tiny/tokenizer.model", &orig, &n, &err), BJ_OK);
    uint32_t rng = 22;
    int ok = 0, failed = 0;
    for (size_t i = 0; i < n + 600; i += (i < n ? 7 : 1)) {
        FILE *f = fopen(path, "wb");
        if (i < n) fwrite(orig, 1, i, f); /* a prefix */
        else {                             /* a corrupted byte */
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % n;
            char save = orig[at];
            orig[at] = (char)(rng >> 24);
            fwrite(orig, 1, n, f);
            orig[at] = save;
        }
        fclose(f);
        bj_tokenizer *t = NULL;
        bj_status s = bj_tok_load_hf(&t, dir, &err);
        if (s == BJ_OK) {
            int32_t *ids;
            size_t k;
            if (bj_tok_encode(t, "In the beginning \xF0\x9F\x98\x80", 20, true, true, &ids, &k, &err) == BJ_OK) free(ids);
            bj_tok_free(t);
            ok++;
        } else {
            cr_expect(err.msg[0] != 0);
            failed++;
        }
    }
    cr_log_info("tokenizer.model mutations: %d loaded, %d refused", ok, failed);
    cr_expect_gt(failed, 0);
    free(orig);
}
