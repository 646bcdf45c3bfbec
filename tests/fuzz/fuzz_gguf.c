/* tests/fuzz/fuzz_gguf.c -- libFuzzer harness for the GGUF reader and everything that reads a
 * parsed file: the validating parser, the config reader, the architecture builder (including the
 * dense-ternary repacking and the all-zero scans) and the GGUF tokenizer loader plus an encode.
 * Any crash, sanitizer report, leak or unbounded allocation is a bug: malformed input must come
 * back as a bj_status. Build: cmake -DBJ_FUZZ=ON -DCMAKE_C_COMPILER=clang-19 (tests/CMakeLists.txt).
 * Seeds: tests/fuzz/corpus/gguf (small valid files written by bitjit's writer and tests). */
#include "frontends/gguf.h"

#include <stdlib.h>
#include <string.h>

static void fuzz_model(bj_gguf *g) {
    bj_error err = { 0 };
    bj_model_config c;
    if (bj_gguf_config(g, &c, &err) != BJ_OK) return;
    bj_graph gr;
    if (bj_graph_init(&gr, "fuzz", &err) != BJ_OK) return;
    bj_fe_build_bitnet_gguf(&gr, &c, g, &err);
    bj_graph_free(&gr);
}

static void fuzz_tokenizer(const bj_gguf *g) {
    bj_error err = { 0 };
    bj_tokenizer *t;
    if (bj_tok_load_gguf(&t, g, &err) != BJ_OK) return;
    int32_t *ids = NULL;
    size_t n = 0;
    static const char text[] = "In the beginning <s> ab\n 123 \xc3\xa9";
    if (bj_tok_encode(t, text, sizeof text - 1, bj_tok_add_bos(t), true, &ids, &n, &err) == BJ_OK) {
        char *out = NULL;
        size_t len;
        if (bj_tok_decode(t, ids, n, false, &out, &len, &err) == BJ_OK) free(out);
        free(ids);
    }
    bj_tok_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bj_gguf g;
    bj_error err = { 0 };
    memset(&g, 0, sizeof g);
    bj_arena_init(&g.arena);
    if (bj_gguf_parse(&g, data, size, "fuzz.gguf", &err) == BJ_OK) {
        fuzz_model(&g);
        fuzz_tokenizer(&g);
    }
    bj_gguf_close(&g);
    return 0;
}
