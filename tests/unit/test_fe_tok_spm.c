/* tests/unit/test_fe_tok_spm.c -- the SentencePiece-BPE tokenizer of `llama` GGUFs (tok_spm.c).
 *
 * References, independent of this code:
 *  - tests/data/vocab/ggml-vocab-llama-spm.gguf{,.inp,.out}: llama.cpp's own LLaMA-2 vocab-only
 *    GGUF and its tokenizer test vectors (inputs separated by "\n__ggml_vocab_test__\n", ids one
 *    line per input, no BOS; see tests/data/vocab/README.md). Every vector must match exactly.
 *  - hand-computed ids on small vocabularies written here, for the merge order (score, then the
 *    left index), byte fallback and the special-token partition.
 * Plus: the GGUF reader on a vocab-only file (0 tensors), BOS handling, decoding (the stripped
 * leading space, byte tokens, skip_special), malformed metadata with clear errors, and a
 * random-input fuzz loop (invalid UTF-8, spaces, special-token text) that must never fail. */
#include "frontends/gguf.h"
#include "frontends/tokenizer.h"

#include <criterion/criterion.h>
#include "support/tok_helpers.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB BJ_SOURCE_DIR "/tests/data/vocab/ggml-vocab-llama-spm.gguf"

typedef struct spm_fixture { bj_gguf g; bj_tokenizer *t; } spm_fixture;

static void spm_open(spm_fixture *f, const char *path) {
    bj_error err = { 0 };
    memset(f, 0, sizeof *f);
    cr_assert_eq(bj_gguf_open(&f->g, path, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_tok_load_gguf(&f->t, &f->g, &err), BJ_OK, "%s", err.msg);
}

static void spm_close(spm_fixture *f) {
    bj_tok_free(f->t);
    bj_gguf_close(&f->g);
}


/* ---- llama.cpp's vectors -------------------------------------------------------------------- */


/* Whether x round-trips through llama.cpp's encode + detokenize (add_space_prefix on). It does
 * unless the text has a U+2581 of its own (it decodes as a space) or an escaped space loses its
 * U+2581 to a broken character: symbols take their length from the lead byte alone, so in
 * "\xE2\x82 " the symbol "\xE2\x82\xE2" swallows part of the space's U+2581, whose bytes then
 * fall back to byte tokens and decode as raw bytes. */
static bool spm_round_trips(const char *s, size_t n) {
    static const uint8_t lead_len[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    for (size_t i = 0; i + 2 < n; i++)
        if (!memcmp(s + i, "\xE2\x96\x81", 3)) return false;
    for (size_t i = 0; i < n;) {
        size_t len = s[i] == ' ' ? 1 : lead_len[(uint8_t)s[i] >> 4];
        for (size_t k = 1; k < len && i + k < n; k++)
            if (s[i + k] == ' ') return false; /* this symbol reaches into an escaped space */
        i += len < n - i ? len : n - i;
    }
    return true;
}

Test(tok_spm, llama_cpp_vectors) {
    spm_fixture f;
    spm_open(&f, VOCAB);
    size_t ni, no;
    char *inp = read_all(VOCAB ".inp", &ni), *out = read_all(VOCAB ".out", &no);
    const char *pi = inp, *po = out, *s;
    size_t n, total = 0, ok = 0, rt = 0;
    while (next_input(&pi, inp + ni, &s, &n)) {
        cr_assert_lt(po, out + no, "more inputs than output lines");
        int32_t want[512], *ids;
        size_t nw = next_ids(&po, out + no, want, 512), k;
        encode(f.t, s, n, false, false, &ids, &k);
        bool same = k == nw && (k == 0 || !memcmp(ids, want, k * sizeof *ids));
        cr_expect(same, "vector %zu (\"%.*s\"): %zu ids, want %zu", total, (int)n, s, k, nw);
        ok += same;
        size_t dl;
        char *d = decode(f.t, ids, k, false, &dl);
        if (spm_round_trips(s, n)) {
            cr_expect(dl == n && !memcmp(d, s, n), "vector %zu does not round-trip: \"%s\"", total, d);
            rt++;
        }
        free(d);
        free(ids);
        total++;
    }
    cr_expect_eq(po, out + no, "more output lines than inputs");
    printf("llama-spm: %zu/%zu llama.cpp vectors reproduced, %zu round-tripped\n", ok, total, rt);
    cr_expect_eq(ok, total);
    cr_expect_eq(total, 46); /* the .inp/.out pair of llama.cpp holds 46 cases */
    free(inp);
    free(out);
    spm_close(&f);
}

Test(tok_spm, vocab_only_file) {
    spm_fixture f;
    spm_open(&f, VOCAB);
    cr_expect_eq(f.g.n_tensors, 0);
    cr_expect_eq(bj_tok_vocab_size(f.t), 32000);
    cr_expect_eq(bj_tok_bos(f.t), 1);
    cr_expect_eq(bj_tok_eos(f.t), 2);
    cr_expect(bj_tok_add_bos(f.t));
    cr_expect(bj_tok_is_special(f.t, 0) && bj_tok_is_special(f.t, 1) && bj_tok_is_special(f.t, 2));
    cr_expect(!bj_tok_is_special(f.t, 3) && !bj_tok_is_special(f.t, 15043));
    size_t len;
    const char *p = bj_tok_piece(f.t, 15043, &len); /* "▁Hello" */
    cr_expect(len == 6 && !memcmp(p, " Hello", 6));
    p = bj_tok_piece(f.t, 3 + 0x0A, &len); /* <0x0A> */
    cr_expect(len == 1 && p[0] == '\n');
    p = bj_tok_piece(f.t, 1, &len);
    cr_expect(len == 3 && !memcmp(p, "<s>", 3));
    bj_tok_gguf_arrays a;
    bj_error err = { 0 };
    /* the export (bitjitc convert of a SentencePiece model) gives back the file's own arrays */
    cr_assert_eq(bj_tok_gguf_export(f.t, &a, &err), BJ_OK, "%s", err.msg);
    cr_expect(a.spm);
    cr_assert_eq(a.n_tokens, 32000);
    const bj_gguf_kv *toks = bj_gguf_find_kv(&f.g, "tokenizer.ggml.tokens"), *sc = bj_gguf_find_kv(&f.g, "tokenizer.ggml.scores"),
                     *ty = bj_gguf_find_kv(&f.g, "tokenizer.ggml.token_type");
    cr_assert(toks && sc && ty);
    int bad = 0;
    for (int32_t i = 0; i < a.n_tokens; i++)
        bad += a.tokens[i].len != toks->strs[i].len || memcmp(a.tokens[i].s, toks->strs[i].s, a.tokens[i].len) ||
               a.scores[i] != (float)bj_gguf_arr_float(sc, (uint64_t)i) || a.types[i] != bj_gguf_arr_int(ty, (uint64_t)i);
    cr_expect_eq(bad, 0, "%d of 32000 exported tokens differ from the file's", bad);
    cr_expect(a.bos == 1 && a.eos == 2 && a.unk == 0 && a.add_bos && a.add_space_prefix);
    bj_tok_gguf_arrays_free(&a);
    spm_close(&f);
}

Test(tok_spm, bos_and_specials) {
    spm_fixture f;
    spm_open(&f, VOCAB);
    expect_ids(f.t, "Hello world", true, false, 3, (int32_t[]){ 1, 15043, 3186 });
    expect_ids(f.t, "Hello world", false, false, 2, (int32_t[]){ 15043, 3186 });
    expect_ids(f.t, "", true, false, 1, (int32_t[]){ 1 });
    expect_ids(f.t, "", false, false, 0, NULL);
    /* parse_special: <s> is split out and the text after it gets the space prefix again */
    expect_ids(f.t, "<s>Hello</s>", false, true, 3, (int32_t[]){ 1, 15043, 2 });
    expect_ids(f.t, "Hi<s> Hello", false, true, 4, (int32_t[]){ 6324, 1, 29871, 15043 });
    /* without it the text of <s> is plain text (never the control token) */
    int32_t *ids;
    size_t k;
    encode(f.t, "<s>Hello</s>", 12, false, false, &ids, &k);
    for (size_t i = 0; i < k; i++) cr_expect(ids[i] != 1 && ids[i] != 2);
    size_t dl;
    char *d = decode(f.t, ids, k, false, &dl);
    cr_expect_str_eq(d, "<s>Hello</s>");
    free(d);
    free(ids);
    spm_close(&f);
}

Test(tok_spm, decode) {
    spm_fixture f;
    spm_open(&f, VOCAB);
    size_t n;
    char *d = decode(f.t, (int32_t[]){ 15043, 3186 }, 2, false, &n);
    cr_expect_str_eq(d, "Hello world"); /* the added space is stripped */
    free(d);
    d = decode(f.t, (int32_t[]){ 3186, 15043 }, 2, false, &n);
    cr_expect_str_eq(d, "world Hello"); /* only from the first piece */
    free(d);
    /* as llama.cpp's detokenizer: after a leading BOS the space stays; skip_special drops BOS */
    d = decode(f.t, (int32_t[]){ 1, 15043, 2 }, 3, false, &n);
    cr_expect_str_eq(d, "<s> Hello</s>");
    free(d);
    d = decode(f.t, (int32_t[]){ 1, 15043, 2 }, 3, true, &n);
    cr_expect_str_eq(d, " Hello");
    free(d);
    /* byte tokens: "\xF0\x9F\xA6\x99" (U+1F999) and a lone invalid byte */
    d = decode(f.t, (int32_t[]){ 29871, 3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99, 3 + 0xFF }, 6, false, &n);
    cr_expect(n == 5 && !memcmp(d, "\xF0\x9F\xA6\x99\xFF", 5));
    free(d);
    d = decode(f.t, NULL, 0, false, &n);
    cr_expect(n == 0 && d[0] == 0);
    free(d);
    bj_error err = { 0 };
    char *out;
    cr_expect_eq(bj_tok_decode(f.t, (int32_t[]){ 32000 }, 1, false, &out, &n, &err), BJ_E_INVALID);
    cr_expect(strstr(err.msg, "32000"), "%s", err.msg);
    spm_close(&f);
}

Test(tok_spm, byte_fallback_invalid_utf8) {
    spm_fixture f;
    spm_open(&f, VOCAB);
    /* 0xFF: no such character, so the byte token <0xFF> (id 258) */
    expect_ids(f.t, "\xFF", false, false, 2, (int32_t[]){ 29871, 3 + 0xFF });
    /* 0xC3 claims two bytes: the symbol "\xC3(" is no token, so both bytes fall back */
    expect_ids(f.t, "\xC3(", false, false, 3, (int32_t[]){ 29871, 3 + 0xC3, 3 + '(' });
    /* a truncated lead byte at the end */
    expect_ids(f.t, "a\xE2", false, false, 2, (int32_t[]){ 263, 3 + 0xE2 }); /* "▁a" */
    spm_close(&f);
}

/* ---- small hand-made vocabularies --------------------------------------------------------- */

typedef struct mini {
    const char *model;
    int n;
    const char **tokens;
    const float *scores;
    int n_scores;
    const int32_t *types;
    int n_types;
    int64_t bos;            /* -2: leave the key out */
    int add_space_prefix;   /* -1: leave the key out */
} mini;

static char *mini_write(const mini *m, const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", BJ_TEST_TMP, name);
    bj_gguf_writer *w;
    bj_error err = { 0 };
    bj_gguf_str s[64];
    cr_assert_leq(m->n, 64);
    for (int i = 0; i < m->n; i++) s[i] = (bj_gguf_str){ m->tokens[i], strlen(m->tokens[i]) };
    cr_assert_eq(bj_gguf_writer_new(&w, 32, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_gguf_kv_str(w, "general.architecture", "llama", &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_str(w, "tokenizer.ggml.model", m->model ? m->model : "llama", &err), BJ_OK);
    cr_assert_eq(bj_gguf_kv_arr_str(w, "tokenizer.ggml.tokens", s, (uint64_t)m->n, &err), BJ_OK);
    if (m->scores)
        cr_assert_eq(bj_gguf_kv_arr_f32(w, "tokenizer.ggml.scores", m->scores, (uint64_t)m->n_scores, &err), BJ_OK);
    if (m->types)
        cr_assert_eq(bj_gguf_kv_arr_i32(w, "tokenizer.ggml.token_type", m->types, (uint64_t)m->n_types, &err), BJ_OK);
    if (m->bos != -2) cr_assert_eq(bj_gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)m->bos, &err), BJ_OK);
    if (m->add_space_prefix >= 0)
        cr_assert_eq(bj_gguf_kv_bool(w, "tokenizer.ggml.add_space_prefix", m->add_space_prefix, &err), BJ_OK);
    cr_assert_eq(bj_gguf_writer_begin(w, path, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_gguf_writer_finish(w, &err), BJ_OK, "%s", err.msg);
    bj_gguf_writer_free(w);
    return path;
}

/* ids 0-2 specials, 3 ▁, 4 a, 5 b, 6 c, 7 ab, 8 bc, 9 ▁a, 10 <0x21> (byte), 11 <x> (user-defined) */
static const char *k_mini_tokens[] = { "<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "ab", "bc",
                                       "\xE2\x96\x81" "a", "<0x21>", "<x>" };
static const int32_t k_mini_types[] = { 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 6, 4 };

static void mini_load(const mini *m, const char *name, spm_fixture *f) { spm_open(f, mini_write(m, name)); }

Test(tok_spm, merge_order) {
    float sc[12] = { 0, 0, 0, -1, -2, -2, -2, -5, -5, -9, 0, 0 };
    mini m = { NULL, 12, k_mini_tokens, sc, 12, k_mini_types, 12, -2, 0 };
    spm_fixture f;
    mini_load(&m, "spm_tie", &f);
    expect_ids(f.t, "abc", false, false, 2, (int32_t[]){ 7, 6 }); /* ab, bc tie: the left pair first */
    spm_close(&f);
    sc[8] = -4; /* bc now scores higher */
    mini_load(&m, "spm_score", &f);
    expect_ids(f.t, "abc", false, false, 2, (int32_t[]){ 4, 8 });
    /* byte fallback: '!' has <0x21>, '?' has neither a byte token nor a raw one: unk */
    expect_ids(f.t, "a!?", false, false, 3, (int32_t[]){ 4, 10, 0 });
    /* user-defined tokens are split out even without parse_special; controls are not */
    expect_ids(f.t, "a<x>b", false, false, 3, (int32_t[]){ 4, 11, 5 });
    spm_close(&f);
    m.add_space_prefix = -1; /* default on: "▁a" */
    mini_load(&m, "spm_prefix", &f);
    expect_ids(f.t, "a", true, false, 2, (int32_t[]){ 1, 9 });
    expect_ids(f.t, "a a<x>a", false, false, 4, (int32_t[]){ 9, 9, 11, 9 });
    spm_close(&f);
}

typedef struct bad_case {
    const char *name;
    int n_scores, n_types;
    int32_t type3;          /* token_type of id 3 */
    const char *tok10;      /* spelling of id 10 */
    const char *tok4;       /* spelling of id 4 */
    int64_t bos;
    bj_status code;
    const char *msg;
} bad_case;

Test(tok_spm, malformed_metadata) {
    static const bad_case cases[] = {
        { "spm_short_scores", 11, 12, 1, "<0x21>", "a", -2, BJ_E_FORMAT,
          "key 'tokenizer.ggml.scores': expected an f32 array of 12 entries (one per token), got 11" },
        { "spm_short_types", 12, 5, 1, "<0x21>", "a", -2, BJ_E_FORMAT,
          "key 'tokenizer.ggml.token_type': expected an integer array of 12 entries (one per token), got 5" },
        { "spm_type_range", 12, 12, 7, "<0x21>", "a", -2, BJ_E_FORMAT,
          "key 'tokenizer.ggml.token_type'[3]: 7 is not a token type (1..6)" },
        { "spm_type_zero", 12, 12, 0, "<0x21>", "a", -2, BJ_E_FORMAT,
          "key 'tokenizer.ggml.token_type'[3]: 0 is not a token type (1..6)" },
        { "spm_byte_name", 12, 12, 1, "<0xZ1>", "a", -2, BJ_E_FORMAT,
          "key 'tokenizer.ggml.tokens'[10]: byte token \"<0xZ1>\" is not spelled <0xXX>" },
        { "spm_dup", 12, 12, 1, "<0x21>", "b", -2, BJ_E_FORMAT,
          "key 'tokenizer.ggml.tokens'[5]: \"b\" repeats token 4" },
        { "spm_bos", 12, 12, 1, "<0x21>", "a", 12, BJ_E_FORMAT,
          "key 'tokenizer.ggml.bos_token_id': id 12 is outside the 12-token vocab" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        const char *tok[12];
        memcpy(tok, k_mini_tokens, sizeof tok);
        tok[10] = c->tok10, tok[4] = c->tok4;
        int32_t ty[12];
        memcpy(ty, k_mini_types, sizeof ty);
        ty[3] = c->type3;
        float sc[12] = { 0 };
        mini m = { NULL, 12, tok, sc, c->n_scores, ty, c->n_types, c->bos, 1 };
        bj_gguf g;
        bj_tokenizer *t = (bj_tokenizer *)&g; /* must come back NULL */
        bj_error err = { 0 };
        cr_assert_eq(bj_gguf_open(&g, mini_write(&m, c->name), &err), BJ_OK, "%s", err.msg);
        cr_expect_eq(bj_tok_load_gguf(&t, &g, &err), c->code, "%s: %s", c->name, err.msg);
        cr_expect(strstr(err.msg, c->msg), "%s: \"%s\" lacks \"%s\"", c->name, err.msg, c->msg);
        cr_expect_null(t);
        bj_gguf_close(&g);
    }
}

Test(tok_spm, other_models_unsupported) {
    float sc[12] = { 0 };
    mini m = { "t5", 12, k_mini_tokens, sc, 12, k_mini_types, 12, -2, 1 };
    bj_gguf g;
    bj_tokenizer *t;
    bj_error err = { 0 };
    cr_assert_eq(bj_gguf_open(&g, mini_write(&m, "spm_t5"), &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(bj_tok_load_gguf(&t, &g, &err), BJ_E_UNSUPPORTED);
    cr_expect(strstr(err.msg, "tokenizer \"t5\" is not supported (gpt2 and llama are)"), "%s", err.msg);
    bj_gguf_close(&g);
}

/* ---- fuzz ------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

Test(tok_spm, fuzz) {
    static const char *frags[] = { " ", "  ", "<s>", "</s>", "<unk>", "\xC3\xA9", "\xF0\x9F\xA6\x99", "\n", "\t",
                                   "Hello", " world", "1234", "\0", /* odd iterations also: */ "\xE2\x96\x81", "\xFF",
                                   "\xC3", "\xE2\x82", "\x80" };
    const size_t n_valid = 13, n_frags = sizeof frags / sizeof *frags;
    spm_fixture f;
    spm_open(&f, VOCAB);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    char buf[300];
    int n_rt = 0;
    for (int it = 0; it < 3000; it++) {
        size_t n = 0, target = rng_next(&seed) % 200;
        while (n < target) {
            if (it % 2 && rng_next(&seed) % 3 == 0) { buf[n++] = (char)rng_next(&seed); continue; }
            const char *fr = frags[rng_next(&seed) % (it % 2 ? n_frags : n_valid)];
            size_t fl = fr[0] ? strlen(fr) : 1;
            if (n + fl > sizeof buf) break;
            memcpy(buf + n, fr, fl), n += fl;
        }
        bool special = it % 3 == 0, bos = it % 5 == 0;
        int32_t *ids;
        size_t k, dl;
        encode(f.t, buf, n, bos, special, &ids, &k);
        for (size_t i = 0; i < k; i++) cr_assert(ids[i] >= 0 && ids[i] < 32000);
        char *d = decode(f.t, ids, k, false, &dl);
        if (!special && !bos && spm_round_trips(buf, n)) {
            cr_assert(dl == n && !memcmp(d, buf, n), "iteration %d does not round-trip", it);
            n_rt++;
        }
        free(d);
        for (size_t i = 0; i < k; i++) ids[i] = (int32_t)(rng_next(&seed) % 32000); /* random ids decode too */
        d = decode(f.t, ids, k, rng_next(&seed) & 1, &dl);
        free(d);
        free(ids);
    }
    printf("llama-spm fuzz: 3000 inputs encoded, %d round-trip checks\n", n_rt);
    cr_expect_gt(n_rt, 300);
    spm_close(&f);
}
