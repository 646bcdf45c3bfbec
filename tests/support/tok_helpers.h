/* tests/support/tok_helpers.h -- tokenizer test helpers shared by the vocabulary tests:
 * whole-file reads and encode/decode/expect wrappers that fail the test with the library's
 * message. Include after <criterion/criterion.h>. */
#ifndef BJ_TEST_TOK_HELPERS_H
#define BJ_TEST_TOK_HELPERS_H

#include "frontends/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    cr_assert(fp, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    cr_assert(b && fread(b, 1, (size_t)sz, fp) == (size_t)sz);
    fclose(fp);
    b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

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

#endif
