/* tests/fuzz/fuzz_tokenizer.c -- libFuzzer harness for the HF tokenizer loader (bj_tok_load_hf:
 * tokenizer.json's vocab, merges, added tokens, normalizer, pre-tokenizer regexes compiled by
 * PCRE2, decoder; tokenizer_config.json's BOS/EOS) and, when a tokenizer loads, an encode and
 * decode of a fixed text with and without special-token parsing. An input is
 * "TOKENIZER.JSON \0BJSEP\0 TOKENIZER_CONFIG.JSON" (without the separator there is no
 * tokenizer_config.json). The loader reads a directory, so each input is written to a private
 * temporary directory made once per process. Any crash, sanitizer report or leak is a bug.
 * Seeds: tests/fuzz/corpus/tokenizer (tests/fuzz/make_seeds.py). */
#include "frontends/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char k_sep[] = "\0BJSEP\0";
#define SEP_LEN (sizeof k_sep - 1)

static char g_dir[4096], g_tok[4200], g_cfg[4200];

static void cleanup(void) {
    unlink(g_tok);
    unlink(g_cfg);
    rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/bj-fuzz-tok-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_dir)) { perror(g_dir); abort(); }
    snprintf(g_tok, sizeof g_tok, "%s/tokenizer.json", g_dir);
    snprintf(g_cfg, sizeof g_cfg, "%s/tokenizer_config.json", g_dir);
    atexit(cleanup);
    return 0;
}

static void put(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) { perror(path); abort(); }
}

static void exercise(const bj_tokenizer *t) {
    static const char text[] = "In the beginning <|begin_of_text|> caf\xc3\xa9 \xff 12345\n\n  x";
    for (int special = 0; special < 2; special++) {
        bj_error err = { 0 };
        int32_t *ids = NULL;
        size_t n = 0;
        if (bj_tok_encode(t, text, sizeof text - 1, bj_tok_add_bos(t), special, &ids, &n, &err) != BJ_OK) continue;
        char *out = NULL;
        size_t len = 0;
        if (bj_tok_decode(t, ids, n, true, &out, &len, &err) == BJ_OK) free(out);
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            if (!bj_tok_piece(t, ids[i], &pl)) abort(); /* encode gave an id that has no piece */
        }
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = NULL;
    for (size_t i = 0; i + SEP_LEN <= size && !sep; i++)
        if (data[i] == 0 && !memcmp(data + i, k_sep, SEP_LEN)) sep = data + i;
    size_t tok_n = sep ? (size_t)(sep - data) : size;
    put(g_tok, data, tok_n);
    if (sep) put(g_cfg, sep + SEP_LEN, size - tok_n - SEP_LEN);
    else unlink(g_cfg);
    bj_tokenizer *t = NULL;
    bj_error err = { 0 };
    if (bj_tok_load_hf(&t, g_dir, &err) == BJ_OK) {
        exercise(t);
        bj_tok_free(t);
    }
    return 0;
}
