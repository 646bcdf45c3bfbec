/* tests/unit/test_fe_tok_llama3.c -- the tiktoken rank-file loader (tok_tiktoken.c) with the
 * byte-level BPE encoder (tok_bpe.c): LLaMA-3's tokenizer.
 *
 * References, independent of this code:
 *  - tests/data/vocab/llama3-tokenizer.model: LLaMA-3's 128000 BPE ranks as BitNet ships them
 *    (gpu/tokenizer.model), and ggml-vocab-llama-bpe.gguf.{inp,out}: llama.cpp's LLaMA-3 test
 *    vectors (inputs separated by "\n__ggml_vocab_test__\n", one line of ids per input, no BOS,
 *    no special-token parsing; see tests/data/vocab/README.md). Every vector must match exactly.
 *  - LLaMA-3's special-token ids (gpu/tokenizer.py, formats.md §2.4) and a few well-known ids.
 *  - hand-computed ids on small rank files written here: the lowest-rank pair first, the
 *    leftmost of a tie, a merge whose halves rank above the whole, ignore_merges.
 * Plus: decoding and round trips (invalid UTF-8 included), and every malformed-file error, which
 * must name the line. */
#include "frontends/tokenizer.h"
#include "frontends/gguf.h"

#include <criterion/criterion.h>
#include "support/tok_helpers.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANKS BJ_SOURCE_DIR "/tests/data/vocab/llama3-tokenizer.model"
#define VECTORS BJ_SOURCE_DIR "/tests/data/vocab/ggml-vocab-llama-bpe.gguf"

static bj_tokenizer *load(const char *path) {
    bj_tokenizer *t;
    bj_error err = { 0 };
    cr_assert_eq(bj_tok_load_tiktoken(&t, path, &err), BJ_OK, "%s", err.msg);
    return t;
}


static void expect_piece(const bj_tokenizer *t, int32_t id, const char *want) {
    size_t len;
    const char *p = bj_tok_piece(t, id, &len);
    cr_expect(p && len == strlen(want) && !memcmp(p, want, len), "piece %d: \"%.*s\", want \"%s\"", (int)id,
              p ? (int)len : 6, p ? p : "(null)", want);
}

/* ---- llama.cpp's vectors -------------------------------------------------------------------- */


Test(tok_llama3, llama_cpp_vectors) {
    bj_tokenizer *t = load(RANKS);
    size_t ni, no;
    char *inp = read_all(VECTORS ".inp", &ni), *out = read_all(VECTORS ".out", &no);
    const char *pi = inp, *po = out, *s;
    size_t n, total = 0, ok = 0, rt = 0;
    while (next_input(&pi, inp + ni, &s, &n)) {
        cr_assert_lt(po, out + no, "more inputs than output lines");
        int32_t want[512], *ids;
        size_t nw = next_ids(&po, out + no, want, 512), k;
        encode(t, s, n, false, false, &ids, &k);
        bool same = k == nw && (k == 0 || !memcmp(ids, want, k * sizeof *ids));
        cr_expect(same, "vector %zu (\"%.*s\"): %zu ids, want %zu", total, (int)n, s, k, nw);
        ok += same;
        size_t dl;
        char *d = decode(t, ids, k, false, &dl);
        bool back = dl == n && !memcmp(d, s, n);
        cr_expect(back, "vector %zu does not round-trip: \"%s\"", total, d);
        rt += back;
        free(d);
        free(ids);
        total++;
    }
    cr_expect_eq(po, out + no, "more output lines than inputs");
    printf("llama-bpe: %zu/%zu llama.cpp vectors reproduced, %zu round-tripped\n", ok, total, rt);
    cr_expect_eq(ok, total);
    cr_expect_eq(rt, total);
    cr_expect_eq(total, 46); /* the .inp ends with a separator: 46 cases */
    free(inp);
    free(out);
    bj_tok_free(t);
}

/* ---- the real vocabulary: structure, specials, decoding -------------------------------------- */

Test(tok_llama3, vocabulary_and_specials) {
    bj_tokenizer *t = load(RANKS);
    cr_expect_eq(bj_tok_vocab_size(t), 128256);
    cr_expect_eq(bj_tok_bos(t), 128000);
    cr_expect_eq(bj_tok_eos(t), 128001);
    cr_expect(bj_tok_add_bos(t));
    expect_piece(t, 0, "!");
    expect_piece(t, 9906, "Hello");
    expect_piece(t, 1917, " world");
    expect_piece(t, 128000, "<|begin_of_text|>");
    expect_piece(t, 128001, "<|end_of_text|>");
    expect_piece(t, 128002, "<|reserved_special_token_0|>");
    expect_piece(t, 128005, "<|reserved_special_token_3|>");
    expect_piece(t, 128006, "<|start_header_id|>");
    expect_piece(t, 128007, "<|end_header_id|>");
    expect_piece(t, 128008, "<|reserved_special_token_4|>");
    expect_piece(t, 128009, "<|eot_id|>");
    expect_piece(t, 128010, "<|reserved_special_token_5|>");
    expect_piece(t, 128255, "<|reserved_special_token_250|>");
    cr_expect_null(bj_tok_piece(t, 128256, NULL));
    for (int32_t id = 128000; id < 128256; id++) cr_expect(bj_tok_is_special(t, id), "%d", (int)id);
    cr_expect(!bj_tok_is_special(t, 127999) && !bj_tok_is_special(t, 0));
    expect_ids(t, "Hello world", true, false, 3, (int32_t[]){ 128000, 9906, 1917 });
    expect_ids(t, "", true, false, 1, (int32_t[]){ 128000 });
    expect_ids(t, "", false, false, 0, NULL);
    /* specials are split out only with parse_special */
    static const char chat[] = "<|start_header_id|>user<|end_header_id|>\n\nHello world<|eot_id|>";
    int32_t *ids;
    size_t k, dl;
    encode(t, chat, strlen(chat), false, true, &ids, &k);
    cr_expect(k == 7 && ids[0] == 128006 && ids[2] == 128007 && ids[3] == 271 && ids[4] == 9906 && ids[5] == 1917 &&
              ids[6] == 128009, "%zu ids", k);
    char *d = decode(t, ids, k, false, &dl);
    cr_expect_str_eq(d, chat);
    free(d);
    d = decode(t, ids, k, true, &dl);
    cr_expect_str_eq(d, "user\n\nHello world");
    free(d);
    free(ids);
    encode(t, chat, strlen(chat), false, false, &ids, &k);
    for (size_t i = 0; i < k; i++) cr_expect(ids[i] < 128000, "[%zu] = %d", i, (int)ids[i]);
    d = decode(t, ids, k, false, &dl);
    cr_expect_str_eq(d, chat);
    free(d);
    free(ids);
    bj_tok_free(t);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* Any bytes round-trip: invalid UTF-8 is BPE'd from its byte tokens. */
Test(tok_llama3, round_trip_fuzz) {
    static const char *frags[] = { " ", "  ", "\n", "\r\n", "\t", "Hello", " world", "1234567", "'s", "'LL",
                                   "\xC3\xA9", "\xF0\x9F\xA6\x99", "\xE2\x80\x8D", "<|eot_id|>", "\xFF", "\xC3",
                                   "\xE2\x82", "\x80" };
    bj_tokenizer *t = load(RANKS);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    char buf[300];
    for (int it = 0; it < 1000; it++) {
        size_t n = 0, target = rng_next(&seed) % 200;
        while (n < target) {
            if (rng_next(&seed) % 4 == 0) { buf[n++] = (char)rng_next(&seed); continue; }
            const char *fr = frags[rng_next(&seed) % (sizeof frags / sizeof *frags)];
            size_t fl = strlen(fr);
            if (n + fl > sizeof buf) break;
            memcpy(buf + n, fr, fl), n += fl;
        }
        int32_t *ids;
        size_t k, dl;
        encode(t, buf, n, false, it % 2, &ids, &k);
        for (size_t i = 0; i < k; i++) cr_assert(ids[i] >= 0 && ids[i] < 128256);
        char *d = decode(t, ids, k, false, &dl);
        cr_assert(dl == n && !memcmp(d, buf, n), "iteration %d does not round-trip", it);
        free(d);
        free(ids);
    }
    bj_tok_free(t);
}

/* ---- small hand-made rank files ------------------------------------------------------------ */

static void b64(const char *s, size_t n, char *out) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)(uint8_t)s[i] << 16 | (i + 1 < n ? (uint32_t)(uint8_t)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? (uint8_t)s[i + 2] : 0);
        out[k++] = al[w >> 18], out[k++] = al[w >> 12 & 63];
        out[k++] = i + 1 < n ? al[w >> 6 & 63] : '=';
        out[k++] = i + 2 < n ? al[w & 63] : '=';
    }
    out[k] = 0;
}

static const char *write_file(const char *name, const char *text, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/tiktoken-%s", BJ_TEST_TMP, name); /* a prefix of its own */
    FILE *fp = fopen(path, "wb");
    cr_assert(fp && fwrite(text, 1, n, fp) == n);
    fclose(fp);
    return path;
}

/* Ranks 0-255: the bytes in order; then 256 "bc", 257 "ab", 258 "cd", 259 "xyz", 260 "aa",
 * 261 "mno", 262 "mn". */
static const char *mini_file(void) {
    static const char *extra[] = { "bc", "ab", "cd", "xyz", "aa", "mno", "mn" };
    static char text[8192];
    size_t k = 0;
    char enc[16];
    for (int i = 0; i < 256 + 7; i++) {
        char c = (char)i;
        if (i < 256) b64(&c, 1, enc);
        else b64(extra[i - 256], strlen(extra[i - 256]), enc);
        k += (size_t)snprintf(text + k, sizeof text - k, "%s %d\n", enc, i);
    }
    return write_file("mini", text, k);
}

Test(tok_llama3, rank_order) {
    bj_tokenizer *t = load(mini_file());
    cr_expect_eq(bj_tok_vocab_size(t), 263 + 256);
    cr_expect_eq(bj_tok_bos(t), 263);
    expect_piece(t, 263 + 9, "<|eot_id|>");
    expect_piece(t, 263 + 255, "<|reserved_special_token_250|>");
    expect_ids(t, "abcd", false, false, 3, (int32_t[]){ 'a', 256, 'd' }); /* bc (256) before ab, cd */
    expect_ids(t, "aaa", false, false, 2, (int32_t[]){ 260, 'a' });       /* a tie: the leftmost pair */
    expect_ids(t, "mnox", false, false, 2, (int32_t[]){ 261, 'x' });      /* mn (262), then mn+o = mno (261) */
    expect_ids(t, "xyz", false, false, 1, (int32_t[]){ 259 });            /* ignore_merges: a whole token */
    expect_ids(t, "xyzw", false, false, 4, (int32_t[]){ 'x', 'y', 'z', 'w' }); /* no pair of it is a token */
    expect_ids(t, "ab cd", true, false, 4, (int32_t[]){ 263, 257, ' ', 258 }); /* " cd" splits as " " + "cd" by BPE */
    expect_ids(t, "ab<|end_of_text|>", false, true, 2, (int32_t[]){ 257, 264 });
    size_t n;
    char *d = decode(t, (int32_t[]){ 263, 261, 'x', 264 }, 4, true, &n);
    cr_expect_str_eq(d, "mnox");
    free(d);
    bj_tok_free(t);
}

typedef struct bad_case { const char *name, *text, *msg; bj_status code; } bad_case;

Test(tok_llama3, malformed_files) {
    static const bad_case cases[] = {
        { "empty", "", "empty file", BJ_E_FORMAT },
        { "b64_char", "IQ== 0\nI@== 1\n", "line 2: bad base64 \"I@==\"", BJ_E_FORMAT },
        { "b64_len", "IQ== 0\nIg= 1\n", "line 2: bad base64 \"Ig=\"", BJ_E_FORMAT },
        { "b64_pad", "IQ== 0\nI=g= 1\n", "line 2: bad base64", BJ_E_FORMAT },
        { "b64_empty", "IQ== 0\n 1\n", "line 2: bad base64 \"\"", BJ_E_FORMAT },
        { "b64_mid_pad", "IQ==IQ== 0\n", "line 1: bad base64", BJ_E_FORMAT },
        { "rank_gap", "IQ== 0\nIg== 2\n", "line 2: rank 2 out of order (expected 1", BJ_E_FORMAT },
        { "rank_dup", "IQ== 0\nIg== 1\nIw== 1\n", "line 3: rank 1 out of order (expected 2", BJ_E_FORMAT },
        { "rank_text", "IQ== 0\nIg== one\n", "line 2: rank \"one\" is not a decimal number", BJ_E_FORMAT },
        { "rank_none", "IQ== 0\nIg== \n", "line 2: rank \"\" is not a decimal number", BJ_E_FORMAT },
        { "rank_crlf", "IQ== 0\r\n", "line 1: rank \"0\r\" is not a decimal number", BJ_E_FORMAT },
        { "no_space", "IQ== 0\nIg==\n", "line 2: expected \"base64 rank\", got \"Ig==\"", BJ_E_FORMAT },
        { "dup_token", "IQ== 0\nIg== 1\nIQ== 2\n", "line 3: the token repeats line 1", BJ_E_FORMAT },
        { "truncated", "IQ== 0\nIg", "line 2: truncated (the file does not end with a newline)", BJ_E_FORMAT },
        { "no_bytes", "IQ== 0\n", "no token for the byte 0x00 (byte-level BPE needs all 256)", BJ_E_FORMAT },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        bj_tokenizer *t = (bj_tokenizer *)&cases; /* must come back NULL */
        bj_error err = { 0 };
        cr_expect_eq(bj_tok_load_tiktoken(&t, write_file(c->name, c->text, strlen(c->text)), &err), c->code,
                     "%s: %s", c->name, err.msg);
        cr_expect(strstr(err.msg, c->msg) && strstr(err.msg, c->name), "%s: \"%s\" lacks \"%s\"", c->name, err.msg,
                  c->msg);
        cr_expect_null(t, "%s", c->name);
    }
    bj_tokenizer *t;
    bj_error err = { 0 };
    cr_expect_eq(bj_tok_load_tiktoken(&t, BJ_TEST_TMP "/no-such-file", &err), BJ_E_IO);
    cr_expect(strstr(err.msg, "no-such-file"), "%s", err.msg);
}

/* ---- a GGUF vocabulary with tokenizer.ggml.pre "falcon3" --------------------------------------- */

/* src's vocabulary and merges (bj_tok_gguf_export) written as a GGUF with tokenizer.ggml.pre
 * `pre`, and read back by the GGUF tokenizer loader. */
static bj_tokenizer *via_gguf(const bj_tokenizer *src, const char *pre, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/tok-pre-%s.gguf", BJ_TEST_TMP, name);
    bj_error err = { 0 };
    bj_tok_gguf_arrays a;
    bj_gguf_writer *w;
    cr_assert_eq(bj_tok_gguf_export(src, &a, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_gguf_writer_new(&w, 32, &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_str(w, "general.architecture", "llama", &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_str(w, "tokenizer.ggml.model", "gpt2", &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_str(w, "tokenizer.ggml.pre", pre, &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_arr_str(w, "tokenizer.ggml.tokens", a.tokens, (uint64_t)a.n_tokens, &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_arr_i32(w, "tokenizer.ggml.token_type", a.types, (uint64_t)a.n_tokens, &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_arr_str(w, "tokenizer.ggml.merges", a.merges, a.n_merges, &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)a.bos, &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)a.eos, &err), BJ_OK);
    cr_assert_eq(bj_gguf_writer_begin(w, path, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_gguf_writer_finish(w, &err), BJ_OK, "%s", err.msg);
    bj_gguf_writer_free(w);
    bj_tok_gguf_arrays_free(&a);
    bj_gguf g;
    bj_tokenizer *t;
    cr_assert_eq(bj_gguf_open(&g, path, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_tok_load_gguf(&t, &g, &err), BJ_OK, "%s", err.msg);
    bj_gguf_close(&g);
    return t;
}

/* llama.cpp (c392e5094 and later, src/llama-vocab.cpp) gives tokenizer.ggml.pre "falcon3" the
 * LLaMA-3 pre-tokenizer type: the LLaMA-3 split regex, BOS added, ignore_merges on. So Falcon3's
 * GGUFs tokenize by the same rules as llama-bpe, and llama.cpp's llama-bpe vectors are what a
 * "falcon3" GGUF of LLaMA-3's vocabulary must reproduce (numbers split in threes, contractions,
 * whitespace runs: the regex's cases). */
Test(tok_llama3, gguf_pre_falcon3_llama_cpp_vectors, .timeout = 300) {
    bj_tokenizer *src = load(RANKS), *t = via_gguf(src, "falcon3", "falcon3");
    bj_tok_free(src);
    cr_expect(bj_tok_add_bos(t), "falcon3 adds BOS");
    size_t ni, no, total = 0, ok = 0;
    char *inp = read_all(VECTORS ".inp", &ni), *out = read_all(VECTORS ".out", &no);
    const char *pi = inp, *po = out, *s;
    size_t n;
    while (next_input(&pi, inp + ni, &s, &n)) {
        int32_t want[512], *ids;
        size_t nw = next_ids(&po, out + no, want, 512), k;
        encode(t, s, n, false, false, &ids, &k);
        bool same = k == nw && (k == 0 || !memcmp(ids, want, k * sizeof *ids));
        cr_expect(same, "vector %zu (\"%.*s\"): %zu ids, want %zu", total, (int)n, s, k, nw);
        ok += same, total++;
        free(ids);
    }
    cr_expect_eq(total, 46);
    cr_expect_eq(ok, total);
    free(inp);
    free(out);
    bj_tok_free(t);
}

/* ignore_merges is what tells "falcon3" from "gpt-2" / "default" on a vocabulary whose token
 * "xyz" no merge reaches: as a whole word it is one token only with ignore_merges. The regex too:
 * "12345" is "123" + "45" under LLaMA-3's \p{N}{1,3}, one word under GPT-2's; with merges for
 * "12"/"123" and "45" the ids tell them apart. */
Test(tok_llama3, gguf_pre_falcon3_ignore_merges_and_regex) {
    static const char *extra[] = { "xyz", "12", "123", "45", "1234", "12345" };
    char text[8192], enc[16];
    size_t k = 0;
    for (int i = 0; i < 256 + 6; i++) {
        char c = (char)i;
        if (i < 256) b64(&c, 1, enc);
        else b64(extra[i - 256], strlen(extra[i - 256]), enc);
        k += (size_t)snprintf(text + k, sizeof text - k, "%s %d\n", enc, i);
    }
    bj_tokenizer *src = load(write_file("pre-mini", text, k));
    bj_tokenizer *f3 = via_gguf(src, "falcon3", "mini-falcon3"), *g2 = via_gguf(src, "gpt-2", "mini-gpt2");
    expect_ids(f3, "xyz", false, false, 1, (int32_t[]){ 256 });
    expect_ids(g2, "xyz", false, false, 3, (int32_t[]){ 'x', 'y', 'z' });
    expect_ids(f3, "12345", false, false, 2, (int32_t[]){ 258, 259 });
    expect_ids(g2, "12345", false, false, 1, (int32_t[]){ 261 });
    expect_ids(f3, "xyz", true, false, 2, (int32_t[]){ bj_tok_bos(f3), 256 });
    bj_tok_free(src);
    bj_tok_free(f3);
    bj_tok_free(g2);
}
