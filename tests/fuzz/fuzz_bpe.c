/* tests/fuzz/fuzz_bpe.c -- libFuzzer harness for the encoders on arbitrary bytes: the kjv
 * byte-level BPE (tokenizer.json), LLaMA-3's tiktoken ranks and LLaMA-2's SentencePiece vocab
 * (GGUF), each loaded once. The first input byte picks the tokenizer (% 3) and whether special
 * tokens written in the text are parsed (/ 3 % 2); the rest is the text. Properties: nothing
 * crashes or leaks; every id has a piece; and for the two byte-level tokenizers
 * decode(encode(x)) == x for ANY bytes (tokenizer.h promises it, valid UTF-8 or not). For the
 * SentencePiece vocab the round trip is not a promise (its space prefix and normalisation),
 * so only decode succeeding is checked. A broken property aborts, so libFuzzer keeps the input.
 * Needs BJ_SOURCE_DIR (the repo root) for the vocab files. Seeds: tests/fuzz/corpus/bpe. */
#include "frontends/gguf.h"
#include "frontends/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bj_tokenizer *g_tok[3];
static bj_gguf g_spm;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(bj_status s, const bj_error *err) {
    if (s != BJ_OK) { fprintf(stderr, "fuzz_bpe: cannot load a tokenizer: %s\n", err->msg); abort(); }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    bj_error err = { 0 };
    must(bj_tok_load_hf(&g_tok[0], BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed", &err), &err);
    must(bj_tok_load_tiktoken(&g_tok[1], BJ_SOURCE_DIR "/tests/data/vocab/llama3-tokenizer.model", &err), &err);
    memset(&g_spm, 0, sizeof g_spm);
    must(bj_gguf_open(&g_spm, BJ_SOURCE_DIR "/tests/data/vocab/ggml-vocab-llama-spm.gguf", &err), &err);
    must(bj_tok_load_gguf(&g_tok[2], &g_spm, &err), &err);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % 3;
    bool special = data[0] / 3 % 2;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    const bj_tokenizer *t = g_tok[which];
    bj_error err = { 0 };
    int32_t *ids = NULL;
    size_t n = 0;
    if (bj_tok_encode(t, text, len, false, special, &ids, &n, &err) != BJ_OK) {
        fprintf(stderr, "fuzz_bpe: encode failed: %s\n", err.msg);
        abort(); /* any bytes are valid input */
    }
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        if (!bj_tok_piece(t, ids[i], &pl)) { fprintf(stderr, "fuzz_bpe: id %d has no piece\n", ids[i]); abort(); }
    }
    char *out = NULL;
    size_t out_len = 0;
    if (bj_tok_decode(t, ids, n, false, &out, &out_len, &err) != BJ_OK) {
        fprintf(stderr, "fuzz_bpe: decode failed: %s\n", err.msg);
        abort();
    }
    if (which != 2 && (out_len != len || memcmp(out, text, len))) {
        fprintf(stderr, "fuzz_bpe: tokenizer %d (special %d): decode(encode(x)) != x (%zu -> %zu ids -> %zu bytes)\n",
                which, special, len, n, out_len);
        abort();
    }
    free(out);
    free(ids);
    return 0;
}
