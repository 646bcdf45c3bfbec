/* tests/support/files.h -- whole files in and out for tests, failing the test (not returning an
 * error) when a file cannot be read or written. Include after <criterion/criterion.h>. */
#ifndef BJ_TEST_FILES_H
#define BJ_TEST_FILES_H

#include <stdio.h>
#include <stdlib.h>

/* The whole file, malloc'd and NUL-terminated; its length into *n (may be NULL). */
static inline char *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    cr_assert(fp, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    cr_assert(b && fread(b, 1, (size_t)sz, fp) == (size_t)sz, "cannot read %s", path);
    fclose(fp);
    b[sz] = 0;
    if (n) *n = (size_t)sz;
    return b;
}

/* n bytes of text as the whole of path. */
static inline void write_all(const char *path, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(text, 1, n, f), n, "cannot write %s", path);
    cr_assert_eq(fclose(f), 0, "cannot write %s", path);
}

#endif
