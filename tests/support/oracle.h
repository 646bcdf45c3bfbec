/* tests/support/oracle.h -- reading the oracle files (reference outputs computed by HF
 * transformers / the training code, not by bitjit) that the end-to-end tests compare with. */
#ifndef BJ_TEST_ORACLE_H
#define BJ_TEST_ORACLE_H

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

/* Loads BJ_SOURCE_DIR/rel; aborts the test with a message when it cannot. */
static inline json_t *bj_test_load_json(const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", BJ_SOURCE_DIR, rel);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) { fprintf(stderr, "cannot load %s: %s\n", path, je.text); abort(); }
    return j;
}

/* A JSON array of integers as a malloc'd int32 array. */
static inline int32_t *bj_test_ids(json_t *arr, size_t *n) {
    *n = json_array_size(arr);
    int32_t *v = malloc((*n + 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return v;
}

#endif
