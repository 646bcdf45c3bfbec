/* tests/unit/test_fe_tokenizer.c -- the HF tokenizer.json loader and byte-level BPE.
 *
 * References, all independent of this code:
 *  - models/<m>/oracle.json: "tokenizer" cases (text -> ids, no BOS) and "prompts" (ids with
 *    BOS), computed by HF transformers; checked for packed/, master/ and the bitnet1 model.
 *  - the tables below: ids from HF tokenizers 0.23.2 (the npm build of the Rust library) for
 *    edge cases (U+180E, long s, Unicode 15/16 letters and digits, CRLF, ZWJ emoji, specials)
 *    on the kjv tokenizer and on two variants this file writes: GPT-2 style ByteLevel
 *    (use_regex, add_prefix_space) with ignore_merges, and extra added tokens (lstrip/rstrip,
 *    normalized, non-special, content already in the vocab).
 * Plus: streaming decode of split UTF-8, special tokens with parse_special on/off, every
 * malformed-file error path, invalid UTF-8, and a random-bytes fuzz loop. */
#include "frontends/tokenizer.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KJV BJ_SOURCE_DIR "/models/kjv-bitnet-11m"
#define KJV1 BJ_SOURCE_DIR "/models/kjv-bitnet1-11m"

typedef struct tok_case {
    const char *text;
    size_t len;
    size_t n;
    int32_t ids[64];
} tok_case;

static const tok_case tok_hf_cases[] = {
    { "Hello World", 11, 6, { 39, 573, 78, 979, 280, 322 } },
    { "HELLO 'S 'Re 'LL 'd", 19, 18, {
          39, 36, 43, 43, 46, 220, 6, 50, 220, 6, 2868, 220, 6, 43, 43, 220, 6, 67
      } },
    { "it'\305\277 done", 10, 5, { 293, 6, 129, 123, 835 } },
    { "x\341\240\216's y", 8, 7, { 87, 157, 254, 236, 6, 82, 306 } },
    { "a\341\240\216 b", 6, 5, { 64, 157, 254, 236, 270 } },
    { "tab\011sep\302\240nbsp\343\200\200ideo", 20, 15, {
          83, 469, 197, 309, 79, 126, 254, 77, 1037, 79, 159, 222, 222, 602, 78
      } },
    { "line\015\012break\015\012\015\012  end  ", 22, 15, {
          75, 427, 201, 198, 65, 269, 601, 201, 198, 201, 198, 220, 880, 220, 220
      } },
    { "   ", 3, 3, { 220, 220, 220 } },
    { "\012", 1, 1, { 198 } },
    { "a  \012  b", 7, 6, { 64, 220, 220, 198, 220, 270 } },
    { "12345678901", 11, 10, { 3317, 18, 19, 20, 21, 22, 23, 24, 15, 16 } },
    { "\331\241\331\242\331\243\331\244 \342\205\247\302\262\302\275", 16, 16, {
          149, 94, 149, 95, 149, 96, 149, 97, 220, 158, 227, 100, 126, 110, 126, 121
      } },
    { "\360\261\215\220\360\261\215\221x", 9, 9, { 172, 109, 235, 238, 172, 109, 235, 239, 87 } },
    { "n\360\236\223\260\360\236\223\26112", 11, 11, {
          77, 172, 252, 241, 108, 172, 252, 241, 109, 16, 17
      } },
    { "\360\220\265\212\360\220\265\213z", 9, 9, { 172, 238, 113, 232, 172, 238, 113, 233, 89 } },
    { "\342\204\252\304\260\304\261", 7, 7, { 158, 226, 103, 128, 108, 128, 109 } },
    { "e\314\201te\314\201", 7, 6, { 68, 136, 223, 2208, 136, 223 } },
    { "\360\237\221\250\342\200\215\360\237\221\251\342\200\215\360\237\221\247 \360\237\221\215\360\237\217\275", 27, 27, {
          172, 253, 239, 101, 158, 222, 235, 172, 253, 239, 102, 158, 222, 235, 172, 253, 239, 100, 220,
          172, 253, 239, 235, 172, 253, 237, 121
      } },
    { "\357\273\277BOM\342\200\213zero", 13, 11, {
          171, 119, 123, 33, 46, 44, 158, 222, 233, 2201, 78
      } },
    { "\000nul\177del\302\255shy", 13, 11, { 188, 77, 681, 221, 67, 342, 126, 255, 82, 71, 88 } },
    { "And the LORD said unto Moses,", 29, 7, { 295, 258, 340, 387, 320, 687, 11 } },
    { "<|end_of_text|>x<|begin_of_text|>", 33, 3, { 4095, 87, 4094 } },
    { "<|begin_of_text<|end_of_text|>|>", 32, 13, {
          27, 91, 1169, 70, 264, 62, 605, 62, 2208, 2381, 4095, 91, 29
      } },
    { "\077\077!!...;;", 9, 9, { 30, 30, 0, 0, 13, 13, 13, 26, 26 } },
    { "caf\303\251 na\303\257ve \346\227\245\346\234\254\350\252\236 \360\237\231\202", 27, 25, {
          66, 64, 69, 127, 102, 292, 64, 127, 107, 316, 220, 162, 245, 98, 162, 250, 105, 164, 103, 252,
          220, 172, 253, 247, 224
      } },
};

static const tok_case tok_hf_cases_gpt2[] = {
    { "Hello World", 11, 6, { 482, 573, 78, 979, 280, 322 } },
    { "HELLO 'S 'Re 'LL 'd", 19, 18, {
          482, 36, 43, 43, 46, 220, 6, 50, 220, 6, 2868, 220, 6, 43, 43, 220, 6, 67
      } },
    { "it'\305\277 done", 10, 5, { 353, 6, 129, 123, 835 } },
    { "x\341\240\216's y", 8, 8, { 220, 87, 157, 254, 236, 6, 82, 306 } },
    { "a\341\240\216 b", 6, 5, { 259, 157, 254, 236, 270 } },
    { "tab\011sep\302\240nbsp\343\200\200ideo", 20, 14, {
          878, 197, 309, 79, 126, 254, 77, 1037, 79, 159, 222, 222, 602, 78
      } },
    { "line\015\012break\015\012\015\012  end  ", 22, 14, {
          4056, 201, 198, 65, 269, 601, 201, 198, 201, 198, 220, 880, 220, 220
      } },
    { "   ", 3, 3, { 220, 220, 220 } },
    { "\012", 1, 2, { 220, 198 } },
    { "a  \012  b", 7, 6, { 259, 220, 220, 198, 220, 270 } },
    { "12345678901", 11, 11, { 220, 3317, 18, 19, 20, 21, 22, 23, 24, 15, 16 } },
    { "\331\241\331\242\331\243\331\244 \342\205\247\302\262\302\275", 16, 17, {
          220, 149, 94, 149, 95, 149, 96, 149, 97, 220, 158, 227, 100, 126, 110, 126, 121
      } },
    { "\360\261\215\220\360\261\215\221x", 9, 10, { 220, 172, 109, 235, 238, 172, 109, 235, 239, 87 } },
    { "n\360\236\223\260\360\236\223\26112", 11, 10, {
          292, 172, 252, 241, 108, 172, 252, 241, 109, 3317
      } },
    { "\360\220\265\212\360\220\265\213z", 9, 10, { 220, 172, 238, 113, 232, 172, 238, 113, 233, 89 } },
    { "\342\204\252\304\260\304\261", 7, 8, { 220, 158, 226, 103, 128, 108, 128, 109 } },
    { "e\314\201te\314\201", 7, 6, { 330, 136, 223, 2208, 136, 223 } },
    { "\360\237\221\250\342\200\215\360\237\221\251\342\200\215\360\237\221\247 \360\237\221\215\360\237\217\275", 27, 28, {
          220, 172, 253, 239, 101, 158, 222, 235, 172, 253, 239, 102, 158, 222, 235, 172, 253, 239, 100,
          220, 172, 253, 239, 235, 172, 253, 237, 121
      } },
    { "\357\273\277BOM\342\200\213zero", 13, 12, {
          220, 171, 119, 123, 33, 46, 44, 158, 222, 233, 2201, 78
      } },
    { "\000nul\177del\302\255shy", 13, 12, { 220, 188, 77, 681, 221, 67, 342, 126, 255, 82, 71, 88 } },
    { "And the LORD said unto Moses,", 29, 7, { 570, 258, 340, 387, 320, 687, 11 } },
    { "<|end_of_text|>x<|begin_of_text|>", 33, 4, { 4095, 220, 87, 4094 } },
    { "<|begin_of_text<|end_of_text|>|>", 32, 15, {
          220, 27, 91, 1169, 70, 264, 62, 605, 62, 2208, 2381, 4095, 220, 91, 29
      } },
    { "\077\077!!...;;", 9, 10, { 220, 30, 30, 0, 0, 13, 13, 13, 26, 26 } },
    { "caf\303\251 na\303\257ve \346\227\245\346\234\254\350\252\236 \360\237\231\202", 27, 24, {
          466, 69, 127, 102, 292, 64, 127, 107, 316, 220, 162, 245, 98, 162, 250, 105, 164, 103, 252, 220,
          172, 253, 247, 224
      } },
};

static const tok_case tok_hf_cases_added[] = {
    { "Hello World", 11, 6, { 39, 573, 78, 979, 280, 322 } },
    { "HELLO 'S 'Re 'LL 'd", 19, 18, {
          39, 36, 43, 43, 46, 220, 6, 50, 220, 6, 2868, 220, 6, 43, 43, 220, 6, 67
      } },
    { "it'\305\277 done", 10, 5, { 293, 6, 129, 123, 835 } },
    { "x\341\240\216's y", 8, 6, { 87, 157, 254, 236, 499, 306 } },
    { "a\341\240\216 b", 6, 5, { 64, 157, 254, 236, 270 } },
    { "tab\011sep\302\240nbsp\343\200\200ideo", 20, 15, {
          83, 469, 197, 309, 79, 126, 254, 77, 1037, 79, 159, 222, 222, 602, 78
      } },
    { "line\015\012break\015\012\015\012  end  ", 22, 15, {
          75, 427, 201, 198, 65, 269, 601, 201, 198, 201, 198, 220, 880, 220, 220
      } },
    { "   ", 3, 3, { 220, 220, 220 } },
    { "\012", 1, 1, { 198 } },
    { "a  \012  b", 7, 6, { 64, 220, 220, 198, 220, 270 } },
    { "12345678901", 11, 10, { 3317, 18, 19, 20, 21, 22, 23, 24, 15, 16 } },
    { "\331\241\331\242\331\243\331\244 \342\205\247\302\262\302\275", 16, 16, {
          149, 94, 149, 95, 149, 96, 149, 97, 220, 158, 227, 100, 126, 110, 126, 121
      } },
    { "\360\261\215\220\360\261\215\221x", 9, 9, { 172, 109, 235, 238, 172, 109, 235, 239, 87 } },
    { "n\360\236\223\260\360\236\223\26112", 11, 11, {
          77, 172, 252, 241, 108, 172, 252, 241, 109, 16, 17
      } },
    { "\360\220\265\212\360\220\265\213z", 9, 9, { 172, 238, 113, 232, 172, 238, 113, 233, 89 } },
    { "\342\204\252\304\260\304\261", 7, 7, { 158, 226, 103, 128, 108, 128, 109 } },
    { "e\314\201te\314\201", 7, 6, { 68, 136, 223, 2208, 136, 223 } },
    { "\360\237\221\250\342\200\215\360\237\221\251\342\200\215\360\237\221\247 \360\237\221\215\360\237\217\275", 27, 27, {
          172, 253, 239, 101, 158, 222, 235, 172, 253, 239, 102, 158, 222, 235, 172, 253, 239, 100, 220,
          172, 253, 239, 235, 172, 253, 237, 121
      } },
    { "\357\273\277BOM\342\200\213zero", 13, 11, {
          171, 119, 123, 33, 46, 44, 158, 222, 233, 2201, 78
      } },
    { "\000nul\177del\302\255shy", 13, 11, { 188, 77, 681, 221, 67, 342, 126, 255, 82, 71, 88 } },
    { "And the LORD said unto Moses,", 29, 9, { 295, 4098, 220, 4099, 82, 1414, 320, 687, 11 } },
    { "<|end_of_text|>x<|begin_of_text|>", 33, 3, { 4095, 87, 4094 } },
    { "<|begin_of_text<|end_of_text|>|>", 32, 9, { 4100, 62, 605, 62, 2208, 2381, 4095, 91, 29 } },
    { "\077\077!!...;;", 9, 9, { 30, 30, 0, 0, 13, 13, 13, 26, 26 } },
    { "caf\303\251 na\303\257ve \346\227\245\346\234\254\350\252\236 \360\237\231\202", 27, 19, {
          66, 64, 69, 165, 292, 64, 127, 107, 316, 220, 4097, 164, 103, 252, 220, 172, 253, 247, 224
      } },
};

/* ---- helpers ------------------------------------------------------------------------------- */

static bj_tokenizer *load_ok(const char *dir) {
    bj_tokenizer *t = NULL;
    bj_error err = { 0 };
    bj_status s = bj_tok_load_hf(&t, dir, &err);
    cr_assert_eq(s, BJ_OK, "loading %s: %s", dir, err.msg);
    return t;
}

static void encode_ok(const bj_tokenizer *t, const char *text, size_t len, bool bos, bool special,
                      int32_t **ids, size_t *n) {
    bj_error err = { 0 };
    bj_status s = bj_tok_encode(t, text, len, bos, special, ids, n, &err);
    cr_assert_eq(s, BJ_OK, "encode: %s", err.msg);
    cr_assert_not_null(*ids);
}

static void assert_ids(const int32_t *got, size_t n, const int32_t *want, size_t nwant, const char *what) {
    cr_assert_eq(n, nwant, "%s: %zu ids, want %zu", what, n, nwant);
    for (size_t i = 0; i < n; i++) cr_assert_eq(got[i], want[i], "%s: ids[%zu] = %d, want %d", what, i, got[i], want[i]);
}

static void assert_decodes_to(const bj_tokenizer *t, const int32_t *ids, size_t n, const char *text, size_t len,
                              const char *what) {
    char *out = NULL;
    size_t out_len = 0;
    bj_error err = { 0 };
    cr_assert_eq(bj_tok_decode(t, ids, n, false, &out, &out_len, &err), BJ_OK, "%s: decode: %s", what, err.msg);
    cr_assert(out_len == len && memcmp(out, text, len) == 0, "%s: decodes to [%.*s]", what, (int)out_len, out);
    cr_assert_eq(out[out_len], 0);
    free(out);
}

/* Encodes (no BOS, specials parsed) to exactly want, and decodes back to the text. */
static void check_case(const bj_tokenizer *t, const char *text, size_t len, const int32_t *want, size_t nwant,
                       const char *what) {
    int32_t *ids;
    size_t n;
    encode_ok(t, text, len, false, true, &ids, &n);
    assert_ids(ids, n, want, nwant, what);
    assert_decodes_to(t, ids, n, text, len, what);
    free(ids);
}

static json_t *load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "%s: %s", path, je.text);
    return j;
}

static size_t json_ids(const json_t *arr, int32_t *ids, size_t cap) {
    cr_assert(json_is_array(arr) && json_array_size(arr) <= cap);
    for (size_t i = 0; i < json_array_size(arr); i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return json_array_size(arr);
}

/* Writes BJ_TEST_TMP/name/tokenizer.json (and tokenizer_config.json when cfg) and returns
 * the directory (static buffer). Steals both references. */
static const char *write_dir(const char *name, json_t *tok, json_t *cfg) {
    static char dir[1024];
    char path[1200];
    snprintf(dir, sizeof dir, "%s/tok_%s", BJ_TEST_TMP, name);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    remove(path);
    if (cfg) cr_assert_eq(json_dump_file(cfg, path, 0), 0);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(json_dump_file(tok, path, 0), 0);
    json_decref(tok);
    json_decref(cfg);
    return dir;
}

static const char *write_text(const char *name, const char *text) {
    static char dir[1024];
    char path[1200];
    snprintf(dir, sizeof dir, "%s/tok_%s", BJ_TEST_TMP, name);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return dir;
}

/* ---- the oracles ------------------------------------------------------------------------------ */

static void check_oracle(const char *dir, const char *oracle) {
    bj_tokenizer *t = load_ok(dir);
    json_t *o = load_json(oracle);
    const json_t *cases = json_object_get(o, "tokenizer"), *prompts = json_object_get(o, "prompts");
    cr_assert(json_array_size(cases) >= 8 && json_array_size(prompts) >= 4);
    int32_t want[512];
    for (size_t i = 0; i < json_array_size(cases); i++) {
        const json_t *c = json_array_get(cases, i), *text = json_object_get(c, "text");
        size_t n = json_ids(json_object_get(c, "ids"), want, 512);
        check_case(t, json_string_value(text), json_string_length(text), want, n, json_string_value(text));
    }
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        const json_t *p = json_array_get(prompts, i), *text = json_object_get(p, "prompt");
        size_t nw = json_ids(json_object_get(p, "ids"), want, 512), n;
        int32_t *ids;
        encode_ok(t, json_string_value(text), json_string_length(text), bj_tok_add_bos(t), true, &ids, &n);
        assert_ids(ids, n, want, nw, json_string_value(text));
        free(ids);
    }
    json_decref(o);
    bj_tok_free(t);
}

Test(tokenizer, oracle_kjv_packed) { check_oracle(KJV "/packed", KJV "/oracle.json"); }
Test(tokenizer, oracle_kjv_master) { check_oracle(KJV "/master", KJV "/oracle.json"); }
Test(tokenizer, oracle_kjv_bitnet1) { check_oracle(KJV1 "/master", KJV1 "/oracle.json"); }

Test(tokenizer, kjv_metadata) {
    bj_tokenizer *t = load_ok(KJV "/master");
    cr_assert_eq(bj_tok_vocab_size(t), 4096);
    cr_assert_eq(bj_tok_bos(t), 4094);
    cr_assert_eq(bj_tok_eos(t), 4095);
    cr_assert(bj_tok_add_bos(t));
    cr_assert(bj_tok_is_special(t, 4094) && bj_tok_is_special(t, 4095));
    cr_assert(!bj_tok_is_special(t, 0) && !bj_tok_is_special(t, -1) && !bj_tok_is_special(t, 4096));
    size_t len;
    const char *p = bj_tok_piece(t, 4094, &len);
    cr_assert(p && len == 17 && memcmp(p, "<|begin_of_text|>", 17) == 0);
    p = bj_tok_piece(t, 220, &len); /* "Ġ" in the file: a raw space */
    cr_assert(p && len == 1 && p[0] == ' ');
    cr_assert_null(bj_tok_piece(t, -1, &len));
    cr_assert_null(bj_tok_piece(t, 4096, &len));
    bj_tok_free(t);
}

Test(tokenizer, hf_edge_cases) {
    bj_tokenizer *t = load_ok(KJV "/master");
    for (size_t i = 0; i < BJ_COUNTOF(tok_hf_cases); i++)
        check_case(t, tok_hf_cases[i].text, tok_hf_cases[i].len, tok_hf_cases[i].ids, tok_hf_cases[i].n,
                   tok_hf_cases[i].text);
    bj_tok_free(t);
}

/* ---- variants written from the real file ------------------------------------------------------ */

static json_t *kjv_json(void) { return load_json(KJV "/master/tokenizer.json"); }

/* GPT-2 style: ByteLevel(add_prefix_space, use_regex) alone, ignore_merges on. */
Test(tokenizer, hf_gpt2_bytelevel_variant) {
    json_t *j = kjv_json();
    json_object_set_new(j, "pre_tokenizer", json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                                      "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1));
    json_object_set_new(json_object_get(j, "model"), "ignore_merges", json_true());
    bj_tokenizer *t = load_ok(write_dir("gpt2", j, NULL));
    for (size_t i = 0; i < BJ_COUNTOF(tok_hf_cases_gpt2); i++) {
        const tok_case *c = &tok_hf_cases_gpt2[i];
        int32_t *ids;
        size_t n;
        encode_ok(t, c->text, c->len, false, true, &ids, &n);
        assert_ids(ids, n, c->ids, c->n, c->text); /* (decoding has the added prefix space) */
        free(ids);
    }
    bj_tok_free(t);
}

static void add_token(json_t *j, const char *content, bool special, bool normalized, bool lstrip, bool rstrip,
                      int32_t *next) {
    const json_t *v = json_object_get(json_object_get(json_object_get(j, "model"), "vocab"), content);
    int32_t id = v ? (int32_t)json_integer_value(v) : (*next)++;
    json_array_append_new(json_object_get(j, "added_tokens"),
                          json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
                                    "single_word", 0, "lstrip", lstrip, "rstrip", rstrip, "normalized",
                                    normalized, "special", special));
}

Test(tokenizer, hf_added_tokens_variant) {
    json_t *j = kjv_json();
    int32_t next = 4096;
    add_token(j, "<|x|>", true, false, true, true, &next);
    add_token(j, "\346\227\245\346\234\254", false, true, false, false, &next); /* 日本 */
    add_token(j, " the", false, false, false, false, &next);
    add_token(j, "\303\251", false, false, false, false, &next); /* é: a vocab token (byte 0xE9) */
    add_token(j, "LORD", false, true, false, true, &next);
    add_token(j, "<|begin", false, false, false, false, &next);
    add_token(j, "'s", true, false, true, false, &next); /* in the vocab too */
    bj_tokenizer *t = load_ok(write_dir("added", j, NULL));
    cr_assert_eq(bj_tok_vocab_size(t), 4101);
    for (size_t i = 0; i < BJ_COUNTOF(tok_hf_cases_added); i++) {
        const tok_case *c = &tok_hf_cases_added[i];
        int32_t *ids;
        size_t n;
        encode_ok(t, c->text, c->len, false, true, &ids, &n);
        assert_ids(ids, n, c->ids, c->n, c->text);
        free(ids);
    }
    /* HF decodes added tokens through the ByteLevel decoder too: é (in the alphabet) is the
     * byte 0xE9, " the" (not in it) its own text. */
    size_t len;
    const char *p = bj_tok_piece(t, 4098, &len);
    cr_assert(p && len == 4 && memcmp(p, " the", 4) == 0);
    bj_tok_free(t);
}

/* ---- special tokens ---------------------------------------------------------------------------- */

Test(tokenizer, special_tokens_parse_on_off) {
    bj_tokenizer *t = load_ok(KJV "/master");
    static const char text[] = "<|begin_of_text|>hi";
    static const int32_t on[] = { 4094, 414 };
    /* Off: plain text, as HF with split_special_tokens (checked: HF with no added tokens). */
    static const int32_t off[] = { 27, 91, 1169, 70, 264, 62, 605, 62, 2208, 2381, 91, 29, 414 };
    static const int32_t bos_on[] = { 4094, 4094, 414 };
    int32_t *ids;
    size_t n;
    encode_ok(t, text, sizeof text - 1, false, true, &ids, &n);
    assert_ids(ids, n, on, 2, "parse_special on");
    assert_decodes_to(t, ids, n, text, sizeof text - 1, "specials kept");
    char *out;
    size_t out_len;
    cr_assert_eq(bj_tok_decode(t, ids, n, true, &out, &out_len, NULL), BJ_OK);
    cr_assert(out_len == 2 && strcmp(out, "hi") == 0, "skip_special: [%s]", out);
    free(out);
    free(ids);
    encode_ok(t, text, sizeof text - 1, false, false, &ids, &n);
    assert_ids(ids, n, off, BJ_COUNTOF(off), "parse_special off");
    assert_decodes_to(t, ids, n, text, sizeof text - 1, "specials as text");
    free(ids);
    encode_ok(t, text, sizeof text - 1, true, true, &ids, &n);
    assert_ids(ids, n, bos_on, 3, "BOS + parse_special on");
    free(ids);
    encode_ok(t, "", 0, true, true, &ids, &n);
    assert_ids(ids, n, bos_on, 1, "empty text with BOS");
    free(ids);
    bj_tok_free(t);
}

/* ---- streaming decode -------------------------------------------------------------------------- */

Test(tokenizer, utf8_complete_prefix) {
    static const struct { const char *s; size_t n, want; } cases[] = {
        { "", 0, 0 },                     { "abc", 3, 3 },
        { "\360\237\231\202", 4, 4 },     { "a\360\237\231", 4, 1 },
        { "\360\237", 2, 0 },             { "\360", 1, 0 },
        { "\303", 1, 0 },                 { "x\303\251", 3, 3 },
        { "\346\227", 2, 0 },             { "\346\227\245", 3, 3 },
        { "\377", 1, 1 },                 { "\200", 1, 1 },         /* invalid: never held back */
        { "\340\200", 2, 2 },             { "\355\240", 2, 2 },     /* overlong, surrogate */
        { "\364\220", 2, 2 },             { "\300", 1, 1 },         /* > U+10FFFF, C0 */
        { "\360\237\231\202\360", 5, 4 }, { "\302\200\342\202", 4, 2 },
    };
    for (size_t i = 0; i < BJ_COUNTOF(cases); i++)
        cr_assert_eq(bj_utf8_complete_prefix(cases[i].s, cases[i].n), cases[i].want, "case %zu", i);
}

/* Decodes ids one token at a time as a streaming caller would; every emitted chunk must be
 * valid UTF-8 and the concatenation the text. Returns how often bytes were held back. */
static int stream_decode(const bj_tokenizer *t, const int32_t *ids, size_t n, const char *text, size_t len) {
    char *pend = malloc(len + 64), *out = malloc(len + 64);
    size_t np = 0, no = 0;
    int held = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const char *p = bj_tok_piece(t, ids[i], &pl);
        cr_assert(p && np + pl <= len + 64);
        memcpy(pend + np, p, pl);
        np += pl;
        size_t k = bj_utf8_complete_prefix(pend, np);
        cr_assert_eq(bj_utf8_valid_prefix(pend, k), k, "token %zu: emitted invalid UTF-8", i);
        held += k < np;
        memcpy(out + no, pend, k);
        no += k;
        memmove(pend, pend + k, np - k);
        np -= k;
    }
    cr_assert_eq(np, 0, "bytes left over at the end");
    cr_assert(no == len && memcmp(out, text, len) == 0);
    free(pend);
    free(out);
    return held;
}

Test(tokenizer, streaming_decode_split_utf8) {
    bj_tokenizer *t = load_ok(KJV "/master");
    json_t *o = load_json(KJV "/oracle.json");
    const json_t *cases = json_object_get(o, "tokenizer");
    int held = 0;
    int32_t ids[512];
    for (size_t i = 0; i < json_array_size(cases); i++) {
        const json_t *c = json_array_get(cases, i), *text = json_object_get(c, "text");
        size_t n = json_ids(json_object_get(c, "ids"), ids, 512);
        held += stream_decode(t, ids, n, json_string_value(text), json_string_length(text));
    }
    cr_assert_geq(held, 5, "the oracle's emoji/CJK tokens split characters: %d hold-backs", held);
    for (size_t i = 0; i < BJ_COUNTOF(tok_hf_cases); i++)
        stream_decode(t, tok_hf_cases[i].ids, tok_hf_cases[i].n, tok_hf_cases[i].text, tok_hf_cases[i].len);
    json_decref(o);
    bj_tok_free(t);
}

/* ---- a small hand-made tokenizer --------------------------------------------------------------- */

static void put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; return; }
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    out[2] = 0;
}

static const char tok_llama3_re[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* 256 byte tokens (id = byte), merges h+e, l+l, he+ll, Ġ+w; <s> special = 260. */
static json_t *small_json(void) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char s[4];
        put_utf8(s, bj_tok_byte_to_cp((uint8_t)b));
        json_object_set_new(vocab, s, json_integer(b));
    }
    json_object_set_new(vocab, "he", json_integer(256));
    json_object_set_new(vocab, "ll", json_integer(257));
    json_object_set_new(vocab, "hell", json_integer(258));
    json_object_set_new(vocab, "\304\240w", json_integer(259));
    json_t *merges = json_pack("[s, [s, s], s, s]", "h e", "l", "l", "he ll", "\304\240 w");
    json_t *model = json_pack("{s:s, s:o, s:o, s:b, s:b}", "type", "BPE", "vocab", vocab, "merges", merges,
                              "ignore_merges", 0, "byte_fallback", 0);
    json_t *pre = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b}]}", "type", "Sequence",
                            "pretokenizers", "type", "Split", "pattern", "Regex", tok_llama3_re, "behavior",
                            "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 0);
    json_t *post = json_pack("{s:s, s:[{s:{s:s}}, {s:{s:s}}], s:{s:{s:[i]}}}", "type", "TemplateProcessing",
                             "single", "SpecialToken", "id", "<s>", "Sequence", "id", "A", "special_tokens",
                             "<s>", "ids", 260);
    return json_pack("{s:s, s:[{s:i, s:s, s:b, s:b}], s:n, s:o, s:o, s:o, s:{s:s}}", "version", "1.0",
                     "added_tokens", "id", 260, "content", "<s>", "special", 1, "normalized", 0, "normalizer",
                     "model", model, "pre_tokenizer", pre, "post_processor", post, "decoder", "type", "ByteLevel");
}

Test(tokenizer, small_tokenizer) {
    bj_tokenizer *t = load_ok(write_dir("small", small_json(), NULL));
    cr_assert_eq(bj_tok_vocab_size(t), 261);
    cr_assert_eq(bj_tok_bos(t), 260); /* from the template: no tokenizer_config.json */
    cr_assert(bj_tok_add_bos(t));
    cr_assert_eq(bj_tok_eos(t), -1);
    static const int32_t want[] = { 260, 258, 'o', 259, 'o', 'r', 'l', 'd', 260, 'h', 'e' };
    static const char text[] = "hello world<s>he";
    int32_t *ids;
    size_t n;
    encode_ok(t, text, sizeof text - 1, true, true, &ids, &n);
    /* "he" after <s> is its own fragment: h+e merge -> 256 */
    int32_t want2[BJ_COUNTOF(want) - 1];
    memcpy(want2, want, sizeof want2);
    want2[BJ_COUNTOF(want2) - 1] = 256;
    assert_ids(ids, n, want2, BJ_COUNTOF(want2), "small");
    free(ids);
    bj_tok_free(t);

    json_t *cfg = json_pack("{s:{s:s}, s:s, s:b}", "bos_token", "content", "<s>", "eos_token", "d", "add_bos_token", 0);
    t = load_ok(write_dir("small_cfg", small_json(), cfg));
    cr_assert(!bj_tok_add_bos(t));
    cr_assert_eq(bj_tok_bos(t), 260);
    cr_assert_eq(bj_tok_eos(t), 'd');
    bj_tok_free(t);

    /* No eos_token in tokenizer_config.json: generation_config.json's eos_token_id (a list). */
    const char *dir = write_dir("small_gen", small_json(), json_pack("{s:s}", "bos_token", "<s>"));
    char path[1200];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    json_t *gen = json_pack("{s:[i, i], s:i}", "eos_token_id", 'e', 'f', "bos_token_id", 'x');
    cr_assert_eq(json_dump_file(gen, path, 0), 0);
    json_decref(gen);
    t = load_ok(dir);
    cr_assert_eq(bj_tok_bos(t), 260); /* tokenizer_config.json wins */
    cr_assert_eq(bj_tok_eos(t), 'e');
    cr_assert(bj_tok_add_bos(t));     /* add_bos_token absent: the template prepends <s> */
    bj_tok_free(t);
}

/* ---- malformed files -------------------------------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    void (*mutate)(json_t *j, json_t **cfg);
    bj_status want;
    const char *msg1, *msg2; /* substrings of the message */
} bad_case;

static json_t *jget(json_t *j, const char *a) { return json_object_get(j, a); }
static json_t *model_of(json_t *j) { return jget(j, "model"); }
static json_t *pre_step(json_t *j, size_t i) { return json_array_get(jget(jget(j, "pre_tokenizer"), "pretokenizers"), i); }

static void m_no_model(json_t *j, json_t **c) { (void)c; json_object_del(j, "model"); }
static void m_model_type(json_t *j, json_t **c) { (void)c; json_object_set_new(model_of(j), "type", json_string("WordPiece")); }
static void m_vocab_array(json_t *j, json_t **c) { (void)c; json_object_set_new(model_of(j), "vocab", json_array()); }
static void m_vocab_id_string(json_t *j, json_t **c) { (void)c; json_object_set_new(jget(model_of(j), "vocab"), "he", json_string("256")); }
static void m_vocab_id_neg(json_t *j, json_t **c) { (void)c; json_object_set_new(jget(model_of(j), "vocab"), "he", json_integer(-1)); }
static void m_vocab_id_big(json_t *j, json_t **c) { (void)c; json_object_set_new(jget(model_of(j), "vocab"), "he", json_integer(1LL << 40)); }
static void m_vocab_id_dup(json_t *j, json_t **c) { (void)c; json_object_set_new(jget(model_of(j), "vocab"), "ll", json_integer(256)); }
static void m_merges_object(json_t *j, json_t **c) { (void)c; json_object_set_new(model_of(j), "merges", json_object()); }
static void m_merge_unknown(json_t *j, json_t **c) { (void)c; json_array_set_new(jget(model_of(j), "merges"), 1, json_string("l zz")); }
static void m_merge_result(json_t *j, json_t **c) { (void)c; json_array_set_new(jget(model_of(j), "merges"), 0, json_string("h o")); }
static void m_merge_nospace(json_t *j, json_t **c) { (void)c; json_array_set_new(jget(model_of(j), "merges"), 0, json_string("he")); }
static void m_merge_number(json_t *j, json_t **c) { (void)c; json_array_set_new(jget(model_of(j), "merges"), 0, json_integer(3)); }
static void m_merge_triple(json_t *j, json_t **c) { (void)c; json_array_set_new(jget(model_of(j), "merges"), 0, json_pack("[s,s,s]", "h", "e", "l")); }
static void m_bad_regex(json_t *j, json_t **c) { (void)c; json_object_set_new(jget(pre_step(j, 0), "pattern"), "Regex", json_string("(\\p{L")); }
static void m_no_pattern(json_t *j, json_t **c) { (void)c; json_object_del(pre_step(j, 0), "pattern"); }
static void m_split_removed(json_t *j, json_t **c) { (void)c; json_object_set_new(pre_step(j, 0), "behavior", json_string("Removed")); }
static void m_pretok_digits(json_t *j, json_t **c) { (void)c; json_object_set_new(pre_step(j, 0), "type", json_string("Digits")); }
static void m_pretok_missing(json_t *j, json_t **c) { (void)c; json_object_del(j, "pre_tokenizer"); }
static void m_pretok_no_bytelevel(json_t *j, json_t **c) { (void)c; json_array_remove(jget(jget(j, "pre_tokenizer"), "pretokenizers"), 1); }
static void m_pretoks_string(json_t *j, json_t **c) { (void)c; json_object_set_new(jget(j, "pre_tokenizer"), "pretokenizers", json_string("x")); }
static void m_normalizer(json_t *j, json_t **c) { (void)c; json_object_set_new(j, "normalizer", json_pack("{s:s}", "type", "NFC")); }
static void m_decoder(json_t *j, json_t **c) { (void)c; json_object_set_new(j, "decoder", json_pack("{s:s}", "type", "Metaspace")); }
static void m_byte_fallback(json_t *j, json_t **c) { (void)c; json_object_set_new(model_of(j), "byte_fallback", json_true()); }
static void m_ignore_merges_str(json_t *j, json_t **c) { (void)c; json_object_set_new(model_of(j), "ignore_merges", json_string("yes")); }
static void m_unk_missing(json_t *j, json_t **c) { (void)c; json_object_set_new(model_of(j), "unk_token", json_string("<unk>")); }
static void m_added_not_array(json_t *j, json_t **c) { (void)c; json_object_set_new(j, "added_tokens", json_object()); }
static void m_added_no_content(json_t *j, json_t **c) { (void)c; json_object_del(json_array_get(jget(j, "added_tokens"), 0), "content"); }
static void m_added_wrong_id(json_t *j, json_t **c) { (void)c; json_object_set_new(json_array_get(jget(j, "added_tokens"), 0), "id", json_integer(300)); }
static void m_added_vocab_id(json_t *j, json_t **c) { (void)c; json_object_set_new(json_array_get(jget(j, "added_tokens"), 0), "content", json_string("he")); }
static void m_added_single_word(json_t *j, json_t **c) { (void)c; json_object_set_new(json_array_get(jget(j, "added_tokens"), 0), "single_word", json_true()); }
static void m_cfg_bos_unknown(json_t *j, json_t **c) { (void)j; *c = json_pack("{s:s}", "bos_token", "<nope>"); }
static void m_cfg_bos_number(json_t *j, json_t **c) { (void)j; *c = json_pack("{s:i}", "bos_token", 5); }
static void m_cfg_add_bos(json_t *j, json_t **c) { (void)j; *c = json_pack("{s:s}", "add_bos_token", "true"); }

static const bad_case bad_cases[] = {
    { "no_model", m_no_model, BJ_E_FORMAT, "'model'", "expected an object" },
    { "model_type", m_model_type, BJ_E_UNSUPPORTED, "model.type", "WordPiece" },
    { "vocab_array", m_vocab_array, BJ_E_FORMAT, "'model.vocab'", "expected an object" },
    { "vocab_id_string", m_vocab_id_string, BJ_E_FORMAT, "'model.vocab'", "expected an integer id" },
    { "vocab_id_neg", m_vocab_id_neg, BJ_E_FORMAT, "'model.vocab'", "out of range" },
    { "vocab_id_big", m_vocab_id_big, BJ_E_FORMAT, "'model.vocab'", "out of range" },
    { "vocab_id_dup", m_vocab_id_dup, BJ_E_FORMAT, "'model.vocab'", "given to both" },
    { "merges_object", m_merges_object, BJ_E_FORMAT, "'model.merges'", "expected an array" },
    { "merge_unknown", m_merge_unknown, BJ_E_FORMAT, "'model.merges[1]'", "\"zz\" is not in the vocab" },
    { "merge_result", m_merge_result, BJ_E_FORMAT, "'model.merges[0]'", "merged token \"ho\"" },
    { "merge_nospace", m_merge_nospace, BJ_E_FORMAT, "'model.merges[0]'", "expected" },
    { "merge_number", m_merge_number, BJ_E_FORMAT, "'model.merges[0]'", "expected" },
    { "merge_triple", m_merge_triple, BJ_E_FORMAT, "'model.merges[0]'", "expected" },
    { "bad_regex", m_bad_regex, BJ_E_FORMAT, "pre_tokenizer.pretokenizers[0].pattern.Regex", "bad regex" },
    { "no_pattern", m_no_pattern, BJ_E_FORMAT, "pre_tokenizer.pretokenizers[0].pattern", "Regex" },
    { "split_removed", m_split_removed, BJ_E_UNSUPPORTED, "pretokenizers[0].behavior", "Isolated" },
    { "pretok_digits", m_pretok_digits, BJ_E_UNSUPPORTED, "pretokenizers[0].type", "Digits" },
    { "pretok_missing", m_pretok_missing, BJ_E_UNSUPPORTED, "'pre_tokenizer'", "ByteLevel" },
    { "pretok_no_bytelevel", m_pretok_no_bytelevel, BJ_E_UNSUPPORTED, "'pre_tokenizer'", "ByteLevel" },
    { "pretoks_string", m_pretoks_string, BJ_E_FORMAT, "pre_tokenizer.pretokenizers", "expected an array" },
    { "normalizer", m_normalizer, BJ_E_UNSUPPORTED, "'normalizer'", "NFC" },
    { "decoder", m_decoder, BJ_E_UNSUPPORTED, "'decoder'", "Metaspace" },
    { "byte_fallback", m_byte_fallback, BJ_E_UNSUPPORTED, "model.byte_fallback", "not supported" },
    { "ignore_merges_str", m_ignore_merges_str, BJ_E_FORMAT, "model.ignore_merges", "expected a boolean" },
    { "unk_missing", m_unk_missing, BJ_E_FORMAT, "model.unk_token", "not in the vocab" },
    { "added_not_array", m_added_not_array, BJ_E_FORMAT, "'added_tokens'", "expected an array" },
    { "added_no_content", m_added_no_content, BJ_E_FORMAT, "'added_tokens[0]'", "content" },
    { "added_wrong_id", m_added_wrong_id, BJ_E_FORMAT, "added_tokens[0].id", "must be 260" },
    { "added_vocab_id", m_added_vocab_id, BJ_E_FORMAT, "added_tokens[0].id", "must be 256" },
    { "added_single_word", m_added_single_word, BJ_E_UNSUPPORTED, "added_tokens[0].single_word", "not supported" },
    { "cfg_bos_unknown", m_cfg_bos_unknown, BJ_E_FORMAT, "tokenizer_config.json: key 'bos_token'", "<nope>" },
    { "cfg_bos_number", m_cfg_bos_number, BJ_E_FORMAT, "tokenizer_config.json: key 'bos_token'", "expected" },
    { "cfg_add_bos", m_cfg_add_bos, BJ_E_FORMAT, "tokenizer_config.json: key 'add_bos_token'", "boolean" },
};

static void expect_fail(const char *dir, bj_status want, const char *file, const char *m1, const char *m2) {
    bj_tokenizer *t = (bj_tokenizer *)(uintptr_t)1;
    bj_error err = { 0 };
    bj_status s = bj_tok_load_hf(&t, dir, &err);
    cr_assert_eq(s, want, "%s: status %s, want %s (%s)", dir, bj_status_name(s), bj_status_name(want), err.msg);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, file), "%s: message does not name %s: %s", dir, file, err.msg);
    cr_assert(strstr(err.msg, m1) && strstr(err.msg, m2), "%s: message [%s] lacks [%s] or [%s]", dir, err.msg, m1, m2);
}

Test(tokenizer, malformed_files) {
    for (size_t i = 0; i < BJ_COUNTOF(bad_cases); i++) {
        const bad_case *b = &bad_cases[i];
        json_t *j = small_json(), *cfg = NULL;
        b->mutate(j, &cfg);
        const char *dir = write_dir(b->name, j, cfg);
        expect_fail(dir, b->want, cfg ? "tokenizer_config.json" : "tokenizer.json", b->msg1, b->msg2);
    }
}

Test(tokenizer, malformed_text) {
    expect_fail(write_text("not_json", "{\"model\": "), BJ_E_FORMAT, "tokenizer.json", "not valid JSON", "line 1");
    expect_fail(write_text("empty", ""), BJ_E_FORMAT, "tokenizer.json", "not valid JSON", "");
    expect_fail(write_text("array", "[1, 2]"), BJ_E_FORMAT, "tokenizer.json", "top level", "");
    expect_fail(write_text("dup_keys", "{\"model\": {}, \"model\": {}}"), BJ_E_FORMAT, "tokenizer.json", "not valid JSON", "");
    expect_fail(write_text("nul", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\\u0000\": 0}}}"), BJ_E_FORMAT,
                "tokenizer.json", "not valid JSON", "");
    expect_fail(BJ_TEST_TMP "/tok_does_not_exist", BJ_E_IO, "tokenizer.json", "cannot open", "");
    /* A bad tokenizer_config.json is not JSON: named, too. */
    json_t *cfg = json_object();
    const char *dir = write_dir("cfg_bad", small_json(), cfg);
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{bos", f);
    fclose(f);
    expect_fail(dir, BJ_E_FORMAT, "tokenizer_config.json", "not valid JSON", "");
}

/* Every top-level and model key replaced by every JSON type: an error or a tokenizer, never
 * a crash; errors name the file. */
Test(tokenizer, malformed_type_sweep) {
    static const char *const top[] = { "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model" };
    static const char *const model_keys[] = { "type", "vocab", "merges", "ignore_merges", "byte_fallback", "dropout",
                                              "unk_token", "fuse_unk", "continuing_subword_prefix" };
    json_t *vals = json_pack("[n, i, i, s, [], {}, b, f, [s], {s:s}]", 0, -1, "x", 1, 1.5, "y", "type", "ByteLevel");
    for (size_t k = 0; k < BJ_COUNTOF(top) + BJ_COUNTOF(model_keys); k++) {
        for (size_t v = 0; v < json_array_size(vals); v++) {
            json_t *j = small_json();
            json_t *obj = k < BJ_COUNTOF(top) ? j : json_object_get(j, "model");
            const char *key = k < BJ_COUNTOF(top) ? top[k] : model_keys[k - BJ_COUNTOF(top)];
            json_object_set(obj, key, json_array_get(vals, v));
            const char *dir = write_dir("sweep", j, NULL);
            bj_tokenizer *t = NULL;
            bj_error err = { 0 };
            bj_status s = bj_tok_load_hf(&t, dir, &err);
            if (s == BJ_OK) {
                int32_t *ids;
                size_t n;
                encode_ok(t, "hello <s>\377", 10, true, true, &ids, &n);
                free(ids);
                bj_tok_free(t);
            } else {
                cr_assert(strstr(err.msg, "tokenizer.json"), "%s=%zu: %s", key, v, err.msg);
            }
        }
    }
    json_decref(vals);
}

/* Random byte flips in the file text: load either fails cleanly or works. */
Test(tokenizer, malformed_byte_flips) {
    json_t *j = small_json();
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    size_t len = strlen(text);
    uint64_t rng = 12345;
    for (int it = 0; it < 300; it++) {
        char *m = strdup(text);
        for (int f = 0; f < 1 + it % 4; f++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            m[rng % len] = (char)(rng >> 32);
        }
        for (size_t i = 0; i < len; i++) if (!m[i]) m[i] = ' ';
        const char *dir = write_text("flips", m);
        bj_tokenizer *t = NULL;
        bj_error err = { 0 };
        if (bj_tok_load_hf(&t, dir, &err) == BJ_OK) bj_tok_free(t);
        else cr_assert(strstr(err.msg, "tokenizer.json"), "%s", err.msg);
        free(m);
    }
    free(text);
}

/* ---- invalid UTF-8, fuzzing, large inputs ------------------------------------------------------ */

static void concat_encode(const bj_tokenizer *t, const char *const *parts, size_t nparts, int32_t *out, size_t *n) {
    *n = 0;
    for (size_t i = 0; i < nparts; i++) {
        int32_t *ids;
        size_t k;
        encode_ok(t, parts[i], strlen(parts[i]), false, true, &ids, &k);
        memcpy(out + *n, ids, k * sizeof *ids);
        *n += k;
        free(ids);
    }
}

/* Documented behaviour: invalid bytes are kept. The regex runs on each maximal valid run and
 * each run of invalid bytes is a pre-token of its own, so the ids are those of the parts. */
Test(tokenizer, invalid_utf8_is_kept) {
    bj_tokenizer *t = load_ok(KJV "/master");
    static const char *const parts[] = { "abc", "\377", "def", "\346\227", " x", "\200\200", "  ", "\360\237\231" };
    int32_t want[64], *ids;
    size_t nw, n;
    concat_encode(t, parts, BJ_COUNTOF(parts), want, &nw);
    static const char text[] = "abc\377def\346\227 x\200\200  \360\237\231";
    encode_ok(t, text, sizeof text - 1, false, true, &ids, &n);
    assert_ids(ids, n, want, nw, "invalid UTF-8");
    assert_decodes_to(t, ids, n, text, sizeof text - 1, "invalid UTF-8");
    free(ids);
    encode_ok(t, "abc", 3, false, true, &ids, &n);
    size_t len, at = n;
    free(ids);
    encode_ok(t, text, sizeof text - 1, false, true, &ids, &n);
    const char *p = bj_tok_piece(t, ids[at], &len); /* \377 alone: its byte token */
    cr_assert(p && len == 1 && (uint8_t)p[0] == 0xFF);
    free(ids);
    bj_tok_free(t);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random text: raw bytes (invalid UTF-8 included), ASCII, multi-byte characters, specials. */
static size_t fuzz_text(uint64_t *rng, char *buf, size_t cap) {
    static const char *const atoms[] = { " ", "  ", "\n", "\r\n", "\t", "'s", "'LL", "the", "LORD", "123",
                                         "\303\251", "\346\227\245", "\360\237\231\202", "\341\240\216",
                                         "\302\240", "<|begin_of_text|>", "<|end_of_text|>", "<|", "!?" };
    size_t n = 0, parts = rng_next(rng) % 24;
    for (size_t i = 0; i < parts; i++) {
        uint64_t r = rng_next(rng);
        if (r % 3 == 0) {
            const char *a = atoms[(r >> 8) % BJ_COUNTOF(atoms)];
            size_t l = strlen(a);
            if (n + l > cap) break;
            memcpy(buf + n, a, l);
            n += l;
        } else if (n < cap) {
            buf[n++] = (char)(r % 2 ? (r >> 16) % 256 : 32 + (r >> 16) % 95);
        }
    }
    return n;
}

Test(tokenizer, fuzz_roundtrip) {
    bj_tokenizer *t = load_ok(KJV "/master");
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    char buf[256];
    size_t valid = 0;
    for (int it = 0; it < 4000; it++) {
        size_t n = fuzz_text(&rng, buf, sizeof buf);
        int32_t *ids;
        size_t k;
        bool special = it % 2;
        encode_ok(t, buf, n, it % 3 == 0, special, &ids, &k);
        size_t skip = it % 3 == 0; /* the BOS */
        /* decode(encode(x)) == x: for valid UTF-8 as HF does, and for any bytes by design. */
        assert_decodes_to(t, ids + skip, k - skip, buf, n, "fuzz");
        valid += bj_utf8_valid_prefix(buf, n) == n;
        free(ids);
    }
    cr_assert_geq(valid, 400, "the fuzz loop should see valid UTF-8 too (%zu)", valid);
    bj_tok_free(t);
}

Test(tokenizer, large_inputs) {
    bj_tokenizer *t = load_ok(KJV "/master");
    size_t n = 300000;
    char *buf = malloc(n + 1);
    static const char *const fill[] = { " ", "a", "1", "!", "\n \n", "\343\200\200" };
    for (size_t f = 0; f < BJ_COUNTOF(fill); f++) {
        size_t l = strlen(fill[f]), m = 0;
        while (m + l <= n) memcpy(buf + m, fill[f], l), m += l;
        buf[m++] = 'x';
        int32_t *ids;
        size_t k;
        encode_ok(t, buf, m, false, true, &ids, &k);
        assert_decodes_to(t, ids, k, buf, m, fill[f]);
        free(ids);
    }
    free(buf);
    bj_tok_free(t);
}

Test(tokenizer, decode_rejects_bad_ids) {
    bj_tokenizer *t = load_ok(KJV "/master");
    static const int32_t bad[][2] = { { 5, -1 }, { 4096, 5 } };
    for (size_t i = 0; i < BJ_COUNTOF(bad); i++) {
        char *out = (char *)1;
        bj_error err = { 0 };
        cr_assert_eq(bj_tok_decode(t, bad[i], 2, false, &out, NULL, &err), BJ_E_INVALID);
        cr_assert_null(out);
        cr_assert(strstr(err.msg, "not a token id"), "%s", err.msg);
    }
    char *out;
    size_t len;
    cr_assert_eq(bj_tok_decode(t, NULL, 0, false, &out, &len, NULL), BJ_OK);
    cr_assert(len == 0 && out[0] == 0);
    free(out);
    bj_tok_free(t);
}
