/* tests/unit/test_fe_safetensors.c -- the safetensors reader (frontends/safetensors.c).
 *
 * Three groups: the bundled kjv models (single file and sharded through an index), small
 * synthetic images built in memory (valid corner cases and one test per malformation, each
 * checking the status code and that the message names the tensor or file), directories
 * written under BJ_TEST_TMP (index handling), and a fixed-seed mutation fuzz loop over a
 * valid image that must never crash and must only accept images whose tensors lie inside
 * the buffer and tile the data section. Run it under -DBJ_SANITIZE=ON. */
#include "frontends/safetensors.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KJV BJ_SOURCE_DIR "/models/kjv-bitnet-11m"

/* ---- helpers --------------------------------------------------------------------------- */

typedef struct img {
    uint8_t *p;
    size_t n;
} img;

/* 8-byte length + header padded with spaces to a multiple of 8 + data_len pattern bytes. */
static img img_make(const char *header, size_t data_len) {
    size_t h = strlen(header), hp = (h + 7) & ~(size_t)7;
    img r = { malloc(8 + hp + data_len), 8 + hp + data_len };
    cr_assert(r.p);
    for (int i = 0; i < 8; i++) r.p[i] = (uint8_t)((uint64_t)hp >> (8 * i));
    memcpy(r.p + 8, header, h);
    memset(r.p + 8 + h, ' ', hp - h);
    for (size_t i = 0; i < data_len; i++) r.p[8 + hp + i] = (uint8_t)(i * 7 + 1);
    return r;
}

static bj_status parse_img(bj_st_model *m, img im, bj_error *err) {
    memset(m, 0, sizeof *m);
    bj_arena_init(&m->arena);
    memset(err, 0, sizeof *err);
    return bj_st_parse(m, im.p, im.n, "t.safetensors", err);
}

/* Parses header + data_len bytes and expects failure with code and a message holding both
 * substrings (either may be NULL). */
static void expect_bad(const char *header, size_t data_len, bj_status code, const char *s1, const char *s2) {
    img im = img_make(header, data_len);
    bj_st_model m;
    bj_error err;
    bj_status s = parse_img(&m, im, &err);
    cr_expect_eq(s, code, "header %s: status %s, want %s (%s)", header, bj_status_name(s), bj_status_name(code),
                 err.msg);
    cr_expect_eq(err.code, code);
    cr_expect(strstr(err.msg, "t.safetensors") != NULL, "message lacks the file: %s", err.msg);
    if (s1) cr_expect(strstr(err.msg, s1) != NULL, "message lacks '%s': %s", s1, err.msg);
    if (s2) cr_expect(strstr(err.msg, s2) != NULL, "message lacks '%s': %s", s2, err.msg);
    cr_expect_eq(m.n_tensors, 0, "a failed parse must leave no tensors");
    bj_st_close(&m);
    free(im.p);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void write_img(const char *dir, const char *name, const char *header, size_t data_len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    img im = img_make(header, data_len);
    write_file(path, im.p, im.n);
    free(im.p);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, text, strlen(text));
}

/* A fresh directory BJ_TEST_TMP/st_<name> (tests run in parallel processes: one each). */
static const char *tmp_dir(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/st_%s", BJ_TEST_TMP, name);
    cr_assert(mkdir(buf, 0755) == 0 || errno == EEXIST, "mkdir %s", buf);
    const char *files[] = { "model.safetensors", "model.safetensors.index.json", "a.safetensors",
                            "b.safetensors" };
    char p[1024];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", buf, files[i]);
        remove(p);
    }
    return buf;
}

static void expect_open_fail(const char *path, bj_status code, const char *s1, const char *s2) {
    bj_st_model m;
    bj_error err = { 0 };
    bj_status s = bj_st_open(&m, path, &err);
    cr_expect_eq(s, code, "%s: status %s, want %s (%s)", path, bj_status_name(s), bj_status_name(code), err.msg);
    if (s1) cr_expect(strstr(err.msg, s1) != NULL, "message lacks '%s': %s", s1, err.msg);
    if (s2) cr_expect(strstr(err.msg, s2) != NULL, "message lacks '%s': %s", s2, err.msg);
    cr_expect_eq(m.n_tensors, 0);
    cr_expect_eq(m.n_maps, 0);
    bj_st_close(&m);
}

static void expect_shape2(const bj_st_tensor *t, bj_st_dtype dt, int64_t d0, int64_t d1) {
    cr_assert(t);
    cr_expect_eq(t->dtype, dt, "%s: dtype %s", t->name, bj_st_dtype_name(t->dtype));
    cr_expect_eq(t->ndim, 2, "%s: ndim %d", t->name, t->ndim);
    cr_expect_eq(t->shape[0], d0, "%s: shape[0] %lld", t->name, (long long)t->shape[0]);
    cr_expect_eq(t->shape[1], d1, "%s: shape[1] %lld", t->name, (long long)t->shape[1]);
}

/* Names sorted and unique, data inside some map, byte sizes that sum to the data sections. */
static void check_model_invariants(const bj_st_model *m) {
    for (int i = 0; i < m->n_tensors; i++) {
        const bj_st_tensor *t = &m->tensors[i];
        if (i) cr_expect(strcmp(m->tensors[i - 1].name, t->name) < 0, "not sorted at %s", t->name);
        bool inside = false;
        for (int k = 0; k < m->n_maps; k++) {
            const bj_fmap *f = &m->maps[k];
            if (t->data >= f->data && t->data + t->nbytes <= f->data + f->size && strcmp(t->path, f->path) == 0)
                inside = true;
        }
        cr_expect(inside, "%s: data outside its file map", t->name);
        cr_expect_eq(bj_st_find(m, t->name), t);
    }
}

/* ---- the bundled models ------------------------------------------------------------------- */

Test(st_real, packed_single_file) {
    bj_st_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_st_open(&m, KJV "/packed", &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(m.n_maps, 1);
    cr_expect_eq(m.n_tensors, 110, "111 header entries minus __metadata__, got %d", m.n_tensors);
    const bj_st_tensor *e = bj_st_find(&m, "model.embed_tokens.weight");
    expect_shape2(e, BJ_ST_BF16, 4096, 384);
    cr_expect_eq(e->nbytes, 4096u * 384 * 2);
    expect_shape2(bj_st_find(&m, "model.layers.0.self_attn.q_proj.weight"), BJ_ST_U8, 96, 384);
    expect_shape2(bj_st_find(&m, "model.layers.5.mlp.down_proj.weight"), BJ_ST_U8, 96, 1024);
    const bj_st_tensor *s = bj_st_find(&m, "model.layers.0.self_attn.q_proj.weight_scale");
    cr_assert(s);
    cr_expect(s->dtype == BJ_ST_BF16 && s->ndim == 1 && s->shape[0] == 1 && s->nbytes == 2);
    /* the embedding is the first range of the data section, right after the header */
    uint64_t hlen = bj_rd64(m.maps[0].data);
    cr_expect_eq(e->data, m.maps[0].data + 8 + hlen);
    cr_expect(strstr(e->path, "packed/model.safetensors") != NULL, "%s", e->path);
    cr_expect_null(bj_st_find(&m, "model.embed_tokens"));
    cr_expect_null(bj_st_find(&m, "__metadata__"));
    cr_expect_null(bj_st_find(&m, "zzz"));
    check_model_invariants(&m);
    bj_st_close(&m);
    cr_expect_eq(m.n_tensors, 0);
    cr_expect_null(m.tensors);
}

Test(st_real, packed_file_path) {
    bj_st_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_st_open(&m, KJV "/packed/model.safetensors", &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(m.n_tensors, 110);
    expect_shape2(bj_st_find(&m, "model.layers.3.mlp.gate_proj.weight"), BJ_ST_U8, 256, 384);
    bj_st_close(&m);
}

Test(st_real, master_sharded) {
    bj_st_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_st_open(&m, KJV "/master", &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(m.n_maps, 2);
    cr_expect_eq(m.n_tensors, 68);
    const bj_st_tensor *g0 = bj_st_find(&m, "model.layers.0.mlp.gate_proj.weight");
    const bj_st_tensor *g5 = bj_st_find(&m, "model.layers.5.mlp.gate_proj.weight");
    expect_shape2(g0, BJ_ST_BF16, 1024, 384);
    expect_shape2(g5, BJ_ST_BF16, 1024, 384);
    expect_shape2(bj_st_find(&m, "model.layers.2.self_attn.k_proj.weight"), BJ_ST_BF16, 128, 384);
    cr_expect(strstr(g0->path, "model-00001-of-00002.safetensors") != NULL, "%s", g0->path);
    cr_expect(strstr(g5->path, "model-00002-of-00002.safetensors") != NULL, "%s", g5->path);
    const bj_st_tensor *n = bj_st_find(&m, "model.norm.weight");
    cr_assert(n);
    cr_expect(n->ndim == 1 && n->shape[0] == 384 && n->dtype == BJ_ST_BF16);
    check_model_invariants(&m);
    bj_st_close(&m);
}

Test(st_real, bitnet1_master_sharded) {
    bj_st_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_st_open(&m, BJ_SOURCE_DIR "/models/kjv-bitnet1-11m/master", &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(m.n_maps, 2);
    expect_shape2(bj_st_find(&m, "model.layers.0.mlp.up_proj.weight"), BJ_ST_BF16, 1024, 384);
    bj_st_close(&m);
}

Test(st_dtype, names_and_ir) {
    bj_dtype d;
    cr_expect_str_eq(bj_st_dtype_name(BJ_ST_BF16), "BF16");
    cr_expect_str_eq(bj_st_dtype_name(BJ_ST_F8_E4M3FNUZ), "F8_E4M3FNUZ");
    cr_expect_str_eq(bj_st_dtype_name(BJ_ST_F6_E3M2), "F6_E3M2");
    cr_expect(bj_st_dtype_to_ir(BJ_ST_F32, &d) && d == BJ_DT_F32);
    cr_expect(bj_st_dtype_to_ir(BJ_ST_F16, &d) && d == BJ_DT_F16);
    cr_expect(bj_st_dtype_to_ir(BJ_ST_BF16, &d) && d == BJ_DT_BF16);
    cr_expect(bj_st_dtype_to_ir(BJ_ST_U8, &d) && d == BJ_DT_U8);
    cr_expect(bj_st_dtype_to_ir(BJ_ST_I8, &d) && d == BJ_DT_I8);
    cr_expect(bj_st_dtype_to_ir(BJ_ST_I32, &d) && d == BJ_DT_I32);
    cr_expect_not(bj_st_dtype_to_ir(BJ_ST_F64, &d));
    cr_expect_not(bj_st_dtype_to_ir(BJ_ST_BOOL, &d));
    cr_expect_not(bj_st_dtype_to_ir(BJ_ST_F4, &d));
}

/* ---- synthetic images: valid ------------------------------------------------------------- */

Test(st_synth, corner_cases_accepted) {
    /* scalar, empty tensors (zero dims, one at the very end), sub-byte dtypes, all dtypes'
     * sizes, metadata, space padding, keys out of offset order */
    const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"x\":\"y\"},"
                    "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                    "\"f4\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[7,10]},"
                    "\"f6\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[4,7]},"
                    "\"c\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[10,18]},"
                    "\"e0\":{\"dtype\":\"BF16\",\"shape\":[0,384],\"data_offsets\":[18,18]},"
                    "\"e1\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[18,18]},"
                    "\"b\":{\"dtype\":\"BOOL\",\"shape\":[1,1,1,1,1,1,1,3],\"data_offsets\":[18,21]},"
                    "\"end\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[21,21]}}";
    img im = img_make(h, 21);
    bj_st_model m;
    bj_error err;
    cr_assert_eq(parse_img(&m, im, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(m.n_tensors, 8);
    const uint8_t *base = im.p + 8 + bj_rd64(im.p);
    const bj_st_tensor *s = bj_st_find(&m, "s"), *f4 = bj_st_find(&m, "f4"), *f6 = bj_st_find(&m, "f6");
    cr_assert(s && f4 && f6);
    cr_expect(s->ndim == 0 && s->nbytes == 4 && s->data == base && s->dtype == BJ_ST_F32);
    cr_expect(f4->nbytes == 3 && f4->data == base + 7 && f4->dtype == BJ_ST_F4);
    cr_expect(f6->nbytes == 3 && f6->data == base + 4);
    cr_expect_eq(bj_st_find(&m, "b")->ndim, 8);
    cr_expect_eq(bj_st_find(&m, "end")->data, base + 21);
    cr_expect_str_eq(s->path, "t.safetensors");
    bj_st_close(&m);
    free(im.p);
}

Test(st_synth, metadata_only_empty_file) {
    img im = img_make("{\"__metadata__\":{}}", 0);
    bj_st_model m;
    bj_error err;
    cr_expect_eq(parse_img(&m, im, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(m.n_tensors, 0);
    cr_expect_null(bj_st_find(&m, "x"));
    bj_st_close(&m);
    free(im.p);
    im = img_make("{}", 0);
    cr_expect_eq(parse_img(&m, im, &err), BJ_OK, "%s", err.msg);
    bj_st_close(&m);
    free(im.p);
}

/* A failed parse appended to a model keeps what was there. */
Test(st_synth, failed_parse_keeps_model) {
    img a = img_make("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    img b = img_make("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                     "\"c\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[2,4]}}", 4);
    img c = img_make("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    bj_st_model m;
    bj_error err;
    cr_assert_eq(parse_img(&m, a, &err), BJ_OK, "%s", err.msg);
    cr_expect_neq(bj_st_parse(&m, b.p, b.n, "b.safetensors", &err), BJ_OK);
    cr_expect(strstr(err.msg, "'c'") != NULL, "%s", err.msg);
    cr_expect_eq(m.n_tensors, 1);
    cr_expect_not_null(bj_st_find(&m, "a"));
    cr_expect_null(bj_st_find(&m, "b"));
    cr_expect_eq(bj_st_parse(&m, c.p, c.n, "c.safetensors", &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(m.n_tensors, 2);
    cr_expect_str_eq(bj_st_find(&m, "b")->path, "c.safetensors");
    cr_expect_str_eq(bj_st_find(&m, "a")->path, "t.safetensors");
    /* the same name again, from another file */
    cr_expect_eq(bj_st_parse(&m, c.p, c.n, "d.safetensors", &err), BJ_E_FORMAT);
    cr_expect(strstr(err.msg, "'b'") && strstr(err.msg, "c.safetensors") && strstr(err.msg, "d.safetensors"),
              "%s", err.msg);
    cr_expect_eq(m.n_tensors, 2);
    bj_st_close(&m);
    free(a.p);
    free(b.p);
    free(c.p);
}

/* ---- synthetic images: malformed ----------------------------------------------------------- */

#define T1(name, dtype, shape, offs) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

Test(st_bad, file_shorter_than_8_bytes) {
    uint8_t buf[8] = { 2, 0, 0, 0, 0, 0, 0, 0 };
    for (size_t n = 0; n < 8; n++) {
        uint8_t *p = n ? malloc(n) : NULL;
        if (n) memcpy(p, buf, n);
        bj_st_model m = { 0 };
        bj_error err = { 0 };
        cr_expect_eq(bj_st_parse(&m, p, n, "short.safetensors", &err), BJ_E_FORMAT, "size %zu", n);
        cr_expect(strstr(err.msg, "short.safetensors") && strstr(err.msg, "too short"), "%s", err.msg);
        bj_st_close(&m);
        free(p);
    }
}

Test(st_bad, cut_in_data_section) {
    img im = img_make("{" T1("model.layers.0.mlp.up_proj.weight", "BF16", "[2,3]", "[0,12]") "}", 12);
    for (size_t cut = 1; cut <= 12; cut++) {
        bj_st_model m;
        bj_error err;
        img t = { im.p, im.n - cut };
        cr_expect_eq(parse_img(&m, t, &err), BJ_E_FORMAT, "cut %zu", cut);
        cr_expect(strstr(err.msg, "tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [0, 12] end is past "
                                  "the data section") != NULL, "%s", err.msg);
        bj_st_close(&m);
    }
    free(im.p);
}

Test(st_bad, cut_in_header) {
    img im = img_make("{" T1("w", "U8", "[2]", "[0,2]") "}", 2);
    size_t hend = 8 + bj_rd64(im.p);
    for (size_t n = 8; n < hend; n++) {
        bj_st_model m;
        bj_error err;
        img t = { im.p, n };
        cr_expect_eq(parse_img(&m, t, &err), BJ_E_FORMAT, "size %zu", n);
        cr_expect(strstr(err.msg, "runs past the end of the file") != NULL, "%s", err.msg);
        bj_st_close(&m);
    }
    free(im.p);
}

Test(st_bad, header_length_past_eof) {
    img im = img_make("{}", 0);
    im.p[0] = 200; /* header length 200 in a 16-byte file */
    bj_st_model m;
    bj_error err;
    cr_expect_eq(parse_img(&m, im, &err), BJ_E_FORMAT);
    cr_expect(strstr(err.msg, "header length 200 runs past the end of the file (16 bytes)") != NULL, "%s", err.msg);
    bj_st_close(&m);
    free(im.p);
}

Test(st_bad, header_length_absurd) {
    img im = img_make("{}", 0);
    const uint64_t lens[] = { 1ull << 63, UINT64_MAX, 100000001ull };
    for (size_t i = 0; i < 3; i++) {
        for (int b = 0; b < 8; b++) im.p[b] = (uint8_t)(lens[i] >> (8 * b));
        bj_st_model m;
        bj_error err;
        cr_expect_eq(parse_img(&m, im, &err), BJ_E_FORMAT);
        cr_expect(strstr(err.msg, "over the 100000000-byte limit") != NULL, "%s", err.msg);
        bj_st_close(&m);
    }
    free(im.p);
}

Test(st_bad, header_not_json) {
    expect_bad("{\"w\":{\"dtype\":\"U8\",", 0, BJ_E_FORMAT, "not valid JSON", NULL);
    expect_bad("{abc}", 0, BJ_E_FORMAT, "not valid JSON", NULL);
    expect_bad("{\"w\":1} trailing", 0, BJ_E_FORMAT, "not valid JSON", NULL);
    expect_bad("{\"w\":\"\xff\xfe\"}", 0, BJ_E_FORMAT, "not valid JSON", NULL); /* not UTF-8 */
    expect_bad("{\"w\\u0000x\":{}}", 0, BJ_E_FORMAT, "not valid JSON", NULL);
}

Test(st_bad, header_not_object) {
    expect_bad("[1,2,3]", 0, BJ_E_FORMAT, "not a JSON object", NULL);
    expect_bad("\"str\"", 0, BJ_E_FORMAT, "not a JSON object", NULL);
    expect_bad(" {}", 0, BJ_E_FORMAT, "not a JSON object", NULL);
    expect_bad("", 0, BJ_E_FORMAT, "not a JSON object", NULL);
    expect_bad("{\"w\":[]}", 0, BJ_E_FORMAT, "tensor 'w'", "expected an object");
}

Test(st_bad, offsets_out_of_range) {
    expect_bad("{" T1("model.layers.0.mlp.up_proj.weight", "U8", "[10]", "[10,20]") "}", 12, BJ_E_FORMAT,
               "t.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [10, 20] end is past the "
               "data section (12 bytes)", NULL);
    expect_bad("{" T1("w", "U8", "[2]", "[4,2]") "}", 4, BJ_E_FORMAT, "tensor 'w'", "begin is after end");
    expect_bad("{" T1("w", "U8", "[2]", "[-2,0]") "}", 4, BJ_E_FORMAT, "tensor 'w'", "data_offsets");
    expect_bad("{" T1("w", "U8", "[2]", "[0,2,4]") "}", 4, BJ_E_FORMAT, "tensor 'w'", "data_offsets");
    expect_bad("{" T1("w", "U8", "[2]", "[0]") "}", 2, BJ_E_FORMAT, "tensor 'w'", "data_offsets");
    expect_bad("{" T1("w", "U8", "[2]", "[0.0,2]") "}", 2, BJ_E_FORMAT, "tensor 'w'", "data_offsets");
    expect_bad("{" T1("w", "U8", "[2]", "\"0,2\"") "}", 2, BJ_E_FORMAT, "tensor 'w'", "data_offsets");
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[2]}}", 2, BJ_E_FORMAT, "tensor 'w'", "data_offsets");
    expect_bad("{" T1("w", "U8", "[2]", "[0,18446744073709551615]") "}", 2, BJ_E_FORMAT, "not valid JSON", NULL);
}

Test(st_bad, overlapping_offsets) {
    expect_bad("{" T1("a", "U8", "[10]", "[0,10]") "," T1("b", "U8", "[10]", "[5,15]") "}", 15, BJ_E_FORMAT,
               "tensor 'b'", "overlap tensor 'a' [0, 10]");
    /* identical ranges */
    expect_bad("{" T1("a", "U8", "[4]", "[0,4]") "," T1("b", "U8", "[4]", "[0,4]") "}", 4, BJ_E_FORMAT,
               "overlap", "'a'");
    /* an empty tensor strictly inside another */
    expect_bad("{" T1("a", "U8", "[4]", "[0,4]") "," T1("z", "U8", "[0]", "[2,2]") "}", 4, BJ_E_FORMAT,
               "tensor 'z'", "overlap tensor 'a'");
}

Test(st_bad, hole_in_data) {
    expect_bad("{" T1("a", "U8", "[4]", "[0,4]") "," T1("b", "U8", "[4]", "[6,10]") "}", 10, BJ_E_FORMAT,
               "hole at offset 4", "before tensor 'b'");
    expect_bad("{" T1("a", "U8", "[4]", "[2,6]") "}", 6, BJ_E_FORMAT, "hole at offset 0", "'a'");
    expect_bad("{" T1("a", "U8", "[4]", "[0,4]") "}", 9, BJ_E_FORMAT, "hole at offset 4", "after the last tensor");
    expect_bad("{\"__metadata__\":{}}", 3, BJ_E_FORMAT, "hole at offset 0", NULL);
    expect_bad("{}", 1, BJ_E_FORMAT, "hole at offset 0", NULL);
}

Test(st_bad, unknown_dtype) {
    expect_bad("{" T1("model.norm.weight", "Q4_0", "[2]", "[0,2]") "}", 2, BJ_E_FORMAT,
               "tensor 'model.norm.weight'", "unknown dtype 'Q4_0'");
    expect_bad("{" T1("w", "f32", "[2]", "[0,8]") "}", 8, BJ_E_FORMAT, "tensor 'w'", "unknown dtype 'f32'");
    expect_bad("{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,2]}}", 2, BJ_E_FORMAT, "tensor 'w'",
               "dtype: expected a string");
    expect_bad("{\"w\":{\"shape\":[2],\"data_offsets\":[0,2]}}", 2, BJ_E_FORMAT, "tensor 'w'", "dtype");
}

Test(st_bad, shape_not_non_negative_integers) {
    expect_bad("{" T1("w", "U8", "[-1]", "[0,0]") "}", 0, BJ_E_FORMAT, "tensor 'w'", "shape[0]: expected a "
               "non-negative integer, got -1");
    expect_bad("{" T1("w", "U8", "[2,2.5]", "[0,5]") "}", 5, BJ_E_FORMAT, "tensor 'w'", "shape[1]");
    expect_bad("{" T1("w", "U8", "[\"3\"]", "[0,3]") "}", 3, BJ_E_FORMAT, "tensor 'w'", "shape[0]");
    expect_bad("{" T1("w", "U8", "[null]", "[0,3]") "}", 3, BJ_E_FORMAT, "tensor 'w'", "shape[0]");
    expect_bad("{" T1("w", "U8", "3", "[0,3]") "}", 3, BJ_E_FORMAT, "tensor 'w'", "shape: expected an array");
    expect_bad("{" T1("w", "U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1, BJ_E_UNSUPPORTED, "tensor 'w'",
               "9 dimensions");
}

Test(st_bad, size_mismatch) {
    expect_bad("{" T1("model.embed_tokens.weight", "BF16", "[2,3]", "[0,10]") "}", 10, BJ_E_FORMAT,
               "tensor 'model.embed_tokens.weight'", "shape [2, 3] of BF16 needs 12 bytes but data_offsets [0, 10] "
               "hold 10");
    expect_bad("{" T1("w", "F32", "[]", "[0,2]") "}", 2, BJ_E_FORMAT, "tensor 'w'", "needs 4 bytes");
    expect_bad("{" T1("w", "F32", "[0]", "[0,4]") "}", 4, BJ_E_FORMAT, "tensor 'w'", "needs 0 bytes");
    expect_bad("{" T1("w", "F4", "[3]", "[0,2]") "}", 2, BJ_E_FORMAT, "tensor 'w'", "12 bits, not whole bytes");
    expect_bad("{" T1("w", "F6_E3M2", "[5]", "[0,4]") "}", 4, BJ_E_FORMAT, "tensor 'w'", "30 bits");
}

Test(st_bad, product_overflow) {
    expect_bad("{" T1("w", "U8", "[4294967296,4294967296]", "[0,0]") "}", 0, BJ_E_FORMAT, "tensor 'w'",
               "more elements than 64 bits");
    expect_bad("{" T1("w", "F64", "[4611686018427387904]", "[0,0]") "}", 0, BJ_E_FORMAT, "tensor 'w'",
               "more bits than 64 bits");
    /* wraps to exactly 0 bytes in 64-bit arithmetic: 2^32 * 2^32 * 1 == 0 mod 2^64 */
    expect_bad("{" T1("w", "U8", "[65536,65536,65536,65536]", "[0,0]") "}", 0, BJ_E_FORMAT, "tensor 'w'",
               "64 bits");
    /* product of a zero dim with huge ones is fine, and 0 bytes */
    img im = img_make("{" T1("w", "U8", "[0,9223372036854775807,9223372036854775807]", "[0,0]") "}", 0);
    bj_st_model m;
    bj_error err;
    cr_expect_eq(parse_img(&m, im, &err), BJ_OK, "%s", err.msg);
    bj_st_close(&m);
    free(im.p);
}

Test(st_bad, duplicate_key) {
    expect_bad("{" T1("model.norm.weight", "U8", "[2]", "[0,2]") "," T1("model.norm.weight", "U8", "[2]", "[2,4]") "}",
               4, BJ_E_FORMAT, "duplicate", "model.norm.weight");
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, BJ_E_FORMAT,
               "duplicate", "dtype");
}

Test(st_bad, metadata_not_strings) {
    expect_bad("{\"__metadata__\":{\"total\":5}}", 0, BJ_E_FORMAT, "__metadata__ key 'total'", "expected a string");
    expect_bad("{\"__metadata__\":[\"a\"]}", 0, BJ_E_FORMAT, "__metadata__", "expected an object");
    expect_bad("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, BJ_E_FORMAT, "__metadata__ key 'a'", NULL);
}

/* ---- directories ------------------------------------------------------------------------- */

#define HA "{" T1("a0", "U8", "[2]", "[0,2]") "," T1("a1", "F32", "[1]", "[2,6]") "}"
#define HB "{" T1("b0", "BF16", "[3]", "[0,6]") "}"

Test(st_dir, index_sharded_ok) {
    char d[512];
    tmp_dir(d, sizeof d, "index_ok");
    write_img(d, "a.safetensors", HA, 6);
    write_img(d, "b.safetensors", HB, 6);
    write_img(d, "model.safetensors", "{" T1("other", "U8", "[1]", "[0,1]") "}", 1); /* the index wins */
    write_text(d, "model.safetensors.index.json", "{\"metadata\":{\"total_size\":12},\"weight_map\":{"
               "\"a0\":\"a.safetensors\",\"b0\":\"b.safetensors\",\"a1\":\"a.safetensors\"}}");
    bj_st_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_st_open(&m, d, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(m.n_maps, 2, "each shard mapped once");
    cr_expect_eq(m.n_tensors, 3);
    cr_expect_null(bj_st_find(&m, "other"));
    cr_expect(strstr(bj_st_find(&m, "b0")->path, "/b.safetensors") != NULL);
    cr_expect_eq(bj_st_find(&m, "a1")->dtype, BJ_ST_F32);
    check_model_invariants(&m);
    bj_st_close(&m);
}

Test(st_dir, single_file_dir) {
    char d[512];
    tmp_dir(d, sizeof d, "single");
    write_img(d, "model.safetensors", HA, 6);
    bj_st_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_st_open(&m, d, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(m.n_tensors, 2);
    check_model_invariants(&m);
    bj_st_close(&m);
}

Test(st_dir, index_missing_shard) {
    char d[512];
    tmp_dir(d, sizeof d, "missing_shard");
    write_img(d, "a.safetensors", HA, 6);
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a0\":\"a.safetensors\",\"b0\":\"model-00002-of-00002.safetensors\"}}");
    expect_open_fail(d, BJ_E_IO, "model.safetensors.index.json", "model-00002-of-00002.safetensors");
}

Test(st_dir, index_tensor_missing_from_shard) {
    char d[512];
    tmp_dir(d, sizeof d, "missing_tensor");
    write_img(d, "a.safetensors", HA, 6);
    write_img(d, "b.safetensors", HB, 6);
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a0\":\"a.safetensors\",\"model.layers.9.mlp.up_proj.weight\":\"a.safetensors\"}}");
    expect_open_fail(d, BJ_E_FORMAT, "tensor 'model.layers.9.mlp.up_proj.weight'", "'a.safetensors'");
    /* present, but in another shard than the index says */
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a0\":\"a.safetensors\",\"b0\":\"a.safetensors\"}}");
    expect_open_fail(d, BJ_E_FORMAT, "tensor 'b0'", "does not contain it");
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a0\":\"a.safetensors\",\"a1\":\"b.safetensors\"}}");
    expect_open_fail(d, BJ_E_FORMAT, "tensor 'a1' is mapped to shard 'b.safetensors' but is in", "a.safetensors");
}

Test(st_dir, index_duplicate_across_shards) {
    char d[512];
    tmp_dir(d, sizeof d, "dup_shards");
    write_img(d, "a.safetensors", HA, 6);
    write_img(d, "b.safetensors", "{" T1("a1", "U8", "[1]", "[0,1]") "}", 1);
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a0\":\"a.safetensors\",\"a1\":\"b.safetensors\"}}");
    expect_open_fail(d, BJ_E_FORMAT, "tensor 'a1'", "unique across shards");
}

Test(st_dir, index_bad_shard_names) {
    char d[512];
    tmp_dir(d, sizeof d, "bad_names");
    write_img(d, "a.safetensors", HA, 6);
    const char *bad[] = { "../a.safetensors", "sub/a.safetensors", "/etc/passwd", "..", "" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char idx[256];
        snprintf(idx, sizeof idx, "{\"weight_map\":{\"a0\":\"a.safetensors\",\"a1\":\"%s\"}}", bad[i]);
        write_text(d, "model.safetensors.index.json", idx);
        expect_open_fail(d, BJ_E_FORMAT, "weight_map['a1']", "plain file name");
    }
}

Test(st_dir, index_malformed) {
    char d[512];
    tmp_dir(d, sizeof d, "bad_index");
    write_img(d, "a.safetensors", HA, 6);
    write_text(d, "model.safetensors.index.json", "{\"weight_map\":{\"a0\":\"a.safetensors\",}}");
    expect_open_fail(d, BJ_E_FORMAT, "model.safetensors.index.json", "invalid JSON");
    write_text(d, "model.safetensors.index.json", "{\"metadata\":{}}");
    expect_open_fail(d, BJ_E_FORMAT, "model.safetensors.index.json", "weight_map");
    write_text(d, "model.safetensors.index.json", "{\"weight_map\":{}}");
    expect_open_fail(d, BJ_E_FORMAT, "model.safetensors.index.json", "non-empty");
    write_text(d, "model.safetensors.index.json", "{\"weight_map\":{\"a0\":3}}");
    expect_open_fail(d, BJ_E_FORMAT, "weight_map['a0']", "expected a shard file name");
    write_text(d, "model.safetensors.index.json", "{\"weight_map\":{\"a0\":\"a.safetensors\",\"a0\":\"a.safetensors\"}}");
    expect_open_fail(d, BJ_E_FORMAT, "duplicate", "a0");
}

Test(st_dir, shard_malformed_names_shard) {
    char d[512];
    tmp_dir(d, sizeof d, "bad_shard");
    write_img(d, "a.safetensors", HA, 6);
    write_img(d, "b.safetensors", "{" T1("b0", "BF16", "[3]", "[0,5]") "}", 5);
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a0\":\"a.safetensors\",\"b0\":\"b.safetensors\"}}");
    expect_open_fail(d, BJ_E_FORMAT, "b.safetensors: tensor 'b0'", "needs 6 bytes");
}

Test(st_dir, no_model_files) {
    char d[512];
    tmp_dir(d, sizeof d, "empty");
    char want[600];
    snprintf(want, sizeof want, "no model.safetensors or model.safetensors.index.json in %s", d);
    expect_open_fail(d, BJ_E_IO, want, NULL);
    expect_open_fail(BJ_TEST_TMP "/st_does_not_exist.safetensors", BJ_E_IO, "st_does_not_exist", NULL);
}

/* ---- mutation fuzz ------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One random mutation of src into a fresh exact-size buffer (so ASan sees any over-read). */
static img mutate(const img *src, uint64_t *rng) {
    size_t hend = 8 + bj_rd64(src->p);
    img r = { malloc(src->n), src->n };
    memcpy(r.p, src->p, src->n);
    int kind = (int)(rng_next(rng) % 6), reps = 1 + (int)(rng_next(rng) % 4);
    for (int k = 0; k < reps; k++) {
        size_t at = rng_next(rng) % src->n, hat = 8 + rng_next(rng) % (hend - 8);
        switch (kind) {
        case 0: r.p[at] = (uint8_t)rng_next(rng); break;                       /* any byte */
        case 1: r.p[at] ^= (uint8_t)(1u << (rng_next(rng) % 8)); break;        /* one bit */
        case 2: r.p[rng_next(rng) % 8] = (uint8_t)rng_next(rng); break;        /* length field */
        case 3:                                                                /* a digit in the header */
            if (r.p[hat] >= '0' && r.p[hat] <= '9') r.p[hat] = (uint8_t)('0' + rng_next(rng) % 10);
            break;
        case 4: r.p[hat] = (uint8_t)"{}[],:\"- 0123456789.eE"[rng_next(rng) % 22]; break; /* JSON punctuation */
        default: r.n = rng_next(rng) % (src->n + 1); break;                    /* truncate */
        }
    }
    if (r.n < src->n) {
        uint8_t *p = r.n ? malloc(r.n) : NULL;
        if (r.n) memcpy(p, r.p, r.n);
        free(r.p);
        r.p = p;
    }
    return r;
}

/* Accepted images must satisfy what the reader promises: tensors inside the data section,
 * sizes that add up to it, names sorted and unique. */
static void check_accepted(const img *im, const bj_st_model *m) {
    const uint8_t *base = im->p + 8 + bj_rd64(im->p), *end = im->p + im->n;
    uint64_t sum = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const bj_st_tensor *t = &m->tensors[i];
        cr_assert(t->data >= base && t->data <= end && t->nbytes <= (uint64_t)(end - t->data), "%s", t->name);
        if (i) cr_assert(strcmp(m->tensors[i - 1].name, t->name) < 0);
        sum += t->nbytes;
    }
    cr_assert_eq(sum, (uint64_t)(end - base));
}

Test(st_fuzz, mutations_never_crash) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    T1("model.embed_tokens.weight", "BF16", "[4,3]", "[0,24]") ","
                    T1("model.layers.0.self_attn.q_proj.weight", "U8", "[2,3]", "[24,30]") ","
                    T1("model.layers.0.self_attn.q_proj.weight_scale", "BF16", "[1]", "[30,32]") ","
                    T1("model.norm.weight", "F32", "[3]", "[32,44]") ","
                    T1("f4", "F4", "[2,2]", "[44,46]") ","
                    T1("empty", "I64", "[0,5]", "[46,46]") "}";
    img good = img_make(h, 46);
    bj_st_model m;
    bj_error err;
    cr_assert_eq(parse_img(&m, good, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(m.n_tensors, 6);
    bj_st_close(&m);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    int ok = 0, bad = 0;
    for (int it = 0; it < 20000; it++) {
        img im = mutate(&good, &rng);
        bj_status s = parse_img(&m, im, &err);
        if (s == BJ_OK) {
            check_accepted(&im, &m);
            ok++;
        } else {
            cr_assert(s == BJ_E_FORMAT || s == BJ_E_UNSUPPORTED, "iteration %d: %s", it, bj_status_name(s));
            cr_assert(err.msg[0] && strstr(err.msg, "t.safetensors"), "iteration %d: %s", it, err.msg);
            bad++;
        }
        bj_st_close(&m);
        free(im.p);
    }
    cr_log_info("fuzz: %d accepted, %d rejected", ok, bad);
    cr_expect_gt(bad, 10000, "most mutations must be rejected (%d)", bad);
    cr_expect_gt(ok, 100, "some mutations (e.g. in padding or metadata) stay valid (%d)", ok);
    free(good.p);
}
