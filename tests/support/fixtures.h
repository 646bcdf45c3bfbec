/* tests/support/fixtures.h -- make broken copies of the bundled model for bad-input tests.
 * A copy is a directory under BJ_TEST_TMP with the model's small files copied and its
 * model.safetensors rewritten through a callback that edits the JSON header. */
#ifndef BJ_TEST_FIXTURES_H
#define BJ_TEST_FIXTURES_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static inline void bj_test_copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b) { fprintf(stderr, "copy %s -> %s failed\n", from, to); abort(); }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

static inline void bj_test_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

typedef void (*bj_header_edit)(json_t *header);

/* Copies the safetensors file src to dst with its JSON header passed through edit(header, ud)
 * (NULL: unchanged); the header is re-padded to 8 bytes and the data section copied whole. */
static inline void bj_test_st_copy_edited(const char *src, const char *dst, void (*edit)(json_t *, void *), void *ud) {
    FILE *f = fopen(src, "rb");
    uint8_t len8[8];
    if (!f || fread(len8, 1, 8, f) != 8) abort();
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    char *hdr = malloc(n + 1);
    if (!hdr || fread(hdr, 1, n, f) != n) abort();
    json_error_t je;
    json_t *h = json_loadb(hdr, n, 0, &je);
    if (!h) abort();
    if (edit) edit(h, ud);
    char *out = json_dumps(h, JSON_COMPACT);
    size_t m = strlen(out), padded = (m + 7) / 8 * 8;
    FILE *g = fopen(dst, "wb");
    if (!g) abort();
    for (int i = 0; i < 8; i++) fputc((int)((padded >> (8 * i)) & 0xFF), g);
    fwrite(out, 1, m, g);
    for (size_t i = m; i < padded; i++) fputc(' ', g);
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, k, g);
    fclose(g);
    fclose(f);
    free(out);
    free(hdr);
    json_decref(h);
}

static inline void bj_test_header_edit_call(json_t *h, void *ud) { (*(bj_header_edit *)ud)(h); }

/* Copies models/kjv-bitnet-11m/packed to BJ_TEST_TMP/name, applying edit to the
 * safetensors header (NULL: unchanged). Returns the new directory in dir. */
static inline void bj_test_model_copy(const char *name, bj_header_edit edit, char *dir, size_t cap) {
    const char *files[] = { "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json" };
    char src[4096], dst[4096];
    snprintf(dir, cap, "%s/%s", BJ_TEST_TMP, name);
    mkdir(dir, 0755);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(src, sizeof src, "%s/models/kjv-bitnet-11m/packed/%s", BJ_SOURCE_DIR, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        bj_test_copy_file(src, dst);
    }
    snprintf(src, sizeof src, "%s/models/kjv-bitnet-11m/packed/model.safetensors", BJ_SOURCE_DIR);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    bj_test_st_copy_edited(src, dst, edit ? bj_test_header_edit_call : NULL, &edit);
}

#endif
