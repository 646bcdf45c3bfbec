/* tests/support/tok_helpers.h -- tokenizer test helpers shared by the vocabulary tests:
 * whole-file reads (support/files.h) and encode/decode/expect wrappers that fail the test with the library's
 * message. Include after <criterion/criterion.h>. */
#ifndef BJ_TEST_TOK_HELPERS_H
#define BJ_TEST_TOK_HELPERS_H

#include "frontends/tokenizer.h"
#include "support/files.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void encode(const bj_tokenizer *t, const char *s, size_t n, bool bos, bool special, int32_t **ids,
                   size_t *n_ids) {
    bj_error err = { 0 };
    cr_assert_eq(bj_tok_encode(t, s, n, bos, special, ids, n_ids, &err), BJ_OK, "%s", err.msg);
}

static char *decode(const bj_tokenizer *t, const int32_t *ids, size_t n, bool skip, size_t *len) {
    bj_error err = { 0 };
    char *out;
    cr_assert_eq(bj_tok_decode(t, ids, n, skip, &out, len, &err), BJ_OK, "%s", err.msg);
    return out;
}

static void expect_ids(const bj_tokenizer *t, const char *s, bool bos, bool special, size_t n, const int32_t *want) {
    int32_t *ids;
    size_t k;
    encode(t, s, strlen(s), bos, special, &ids, &k);
    cr_expect_eq(k, n, "\"%s\": %zu ids, want %zu", s, k, n);
    for (size_t i = 0; i < k && i < n; i++)
        cr_expect_eq(ids[i], want[i], "\"%s\"[%zu]: %d, want %d", s, i, ids[i], want[i]);
    free(ids);
}

/* llama.cpp vocab test files: .inp inputs separated by "\n__ggml_vocab_test__\n", .out
 * one line of ids per input. */
/* The next input of the .inp file (ends at the separator or the end), advancing *p. */
static bool next_input(const char **p, const char *end, const char **s, size_t *n) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    if (*p >= end) return false;
    const char *q = *p;
    while (q + sizeof sep - 1 <= end && memcmp(q, sep, sizeof sep - 1) != 0) q++;
    if (q + sizeof sep - 1 > end) q = end;
    *s = *p, *n = (size_t)(q - *p);
    *p = q < end ? q + sizeof sep - 1 : end;
    return true;
}

/* The ids of the next .out line, advancing *p. */
static size_t next_ids(const char **p, const char *end, int32_t *ids, size_t cap) {
    size_t k = 0;
    while (*p < end && **p != '\n') {
        char *e;
        long v = strtol(*p, &e, 10);
        if (e == *p) { (*p)++; continue; }
        cr_assert_lt(k, cap);
        ids[k++] = (int32_t)v;
        *p = e;
    }
    if (*p < end) (*p)++;
    return k;
}

#endif
