/* tests/unit/test_fe_gguf.c -- the GGUF reader on hand-built files: every metadata value type,
 * v2/v3, alignment, per-type decode against hand-computed blocks, the fork type-id clash
 * (formats.md §1.6), and bad inputs, each of which must give a clear error naming the thing. */
#include "frontends/gguf.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- a tiny GGUF image builder ------------------------------------------------------------- */
typedef struct img { uint8_t b[1 << 16]; size_t n; } img;

static void put(img *m, const void *p, size_t n) { cr_assert(m->n + n <= sizeof m->b); memcpy(m->b + m->n, p, n); m->n += n; }
static void u32(img *m, uint32_t v) { put(m, &v, 4); }
static void u64(img *m, uint64_t v) { put(m, &v, 8); }
static void str(img *m, const char *s) { u64(m, strlen(s)); put(m, s, strlen(s)); }
static void header(img *m, uint32_t version, uint64_t nt, uint64_t nkv) { put(m, "GGUF", 4); u32(m, version); u64(m, nt); u64(m, nkv); }
static void kv_str(img *m, const char *k, const char *v) { str(m, k); u32(m, BJ_GGUF_STRING); str(m, v); }
static void kv_u32(img *m, const char *k, uint32_t v) { str(m, k); u32(m, BJ_GGUF_U32); u32(m, v); }
static void tinfo(img *m, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    str(m, name); u32(m, nd);
    for (uint32_t i = 0; i < nd; i++) u64(m, ne[i]);
    u32(m, type); u64(m, off);
}
static void pad(img *m, size_t a) { while (m->n % a) m->b[m->n++] = 0; }
static void zeros(img *m, size_t n) { memset(m->b + m->n, 0, n); m->n += n; }

static bj_status parse(const img *m, bj_gguf *g, bj_error *err) {
    memset(g, 0, sizeof *g);
    bj_arena_init(&g->arena);
    return bj_gguf_parse(g, m->b, m->n, "t.gguf", err);
}

/* Expects a parse failure with code and a message containing want. */
static void expect_fail(const img *m, bj_status code, const char *want) {
    bj_gguf g;
    bj_error err = { 0 };
    bj_status s = parse(m, &g, &err);
    cr_expect_eq(s, code, "status %s (%s), expected %s", bj_status_name(s), err.msg, bj_status_name(code));
    cr_expect(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
    bj_gguf_close(&g);
}

/* A valid file: arch, one F32 [4] tensor "w" with values 1..4. */
static void minimal(img *m, uint32_t version) {
    m->n = 0;
    header(m, version, 1, 1);
    kv_str(m, "general.architecture", "bitnet");
    tinfo(m, "w", 1, (uint64_t[]){ 4 }, BJ_GGML_F32, 0);
    pad(m, 32);
    for (int i = 1; i <= 4; i++) { float f = (float)i; put(m, &f, 4); }
}

Test(gguf_reader, minimal_v3_and_v2) {
    for (uint32_t v = 2; v <= 3; v++) {
        img m;
        minimal(&m, v);
        bj_gguf g;
        bj_error err = { 0 };
        cr_assert_eq(parse(&m, &g, &err), BJ_OK, "%s", err.msg);
        cr_assert_eq(g.version, v);
        cr_assert_str_eq(g.arch, "bitnet");
        const bj_gguf_tensor *t = bj_gguf_find_tensor(&g, "w");
        cr_assert(t && t->nbytes == 16 && t->ndim == 1 && t->ne[0] == 4 && t->ne[1] == 1);
        float f;
        memcpy(&f, t->data + 12, 4);
        cr_assert_eq(f, 4.0f);
        cr_assert_eq(g.data_start % 32, 0);
        bj_gguf_close(&g);
    }
}

Test(gguf_reader, every_value_type) {
    img m = { .n = 0 };
    header(&m, 3, 0, 15);
    str(&m, "a.u8"); u32(&m, BJ_GGUF_U8); put(&m, "\xfe", 1);
    str(&m, "a.i8"); u32(&m, BJ_GGUF_I8); put(&m, "\xfe", 1);
    str(&m, "a.u16"); u32(&m, BJ_GGUF_U16); put(&m, "\x34\x12", 2);
    str(&m, "a.i16"); u32(&m, BJ_GGUF_I16); put(&m, "\xfe\xff", 2);
    kv_u32(&m, "a.u32", 4000000000u);
    str(&m, "a.i32"); u32(&m, BJ_GGUF_I32); u32(&m, (uint32_t)-7);
    str(&m, "a.f32"); u32(&m, BJ_GGUF_F32); { float f = 1.5f; put(&m, &f, 4); }
    str(&m, "a.bool"); u32(&m, BJ_GGUF_BOOL); put(&m, "\x01", 1);
    kv_str(&m, "a.str", "hello");
    str(&m, "a.u64"); u32(&m, BJ_GGUF_U64); u64(&m, 1ull << 40);
    str(&m, "a.i64"); u32(&m, BJ_GGUF_I64); u64(&m, (uint64_t)-5);
    str(&m, "a.f64"); u32(&m, BJ_GGUF_F64); { double d = -2.25; put(&m, &d, 8); }
    str(&m, "a.arr"); u32(&m, BJ_GGUF_ARRAY); u32(&m, BJ_GGUF_I32); u64(&m, 3); u32(&m, 1); u32(&m, (uint32_t)-2); u32(&m, 3);
    str(&m, "a.sarr"); u32(&m, BJ_GGUF_ARRAY); u32(&m, BJ_GGUF_STRING); u64(&m, 2); str(&m, "x"); str(&m, "yz");
    str(&m, "a.empty"); u32(&m, BJ_GGUF_ARRAY); u32(&m, BJ_GGUF_F32); u64(&m, 0);
    bj_gguf g;
    bj_error err = { 0 };
    cr_assert_eq(parse(&m, &g, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(g.n_tensors, 0); /* vocab-only style: no padding, no data */
    int64_t i = 0;
    double d = 0;
    bool b = false;
    bj_gguf_str s;
    const struct { const char *k; int64_t v; } ints[] = {
        { "a.u8", 254 }, { "a.i8", -2 }, { "a.u16", 0x1234 }, { "a.i16", -2 }, { "a.u32", 4000000000ll },
        { "a.i32", -7 }, { "a.u64", 1ll << 40 }, { "a.i64", -5 },
    };
    for (size_t k = 0; k < BJ_COUNTOF(ints); k++) {
        cr_assert_eq(bj_gguf_get_int(&g, ints[k].k, true, &i, &err), BJ_OK, "%s", err.msg);
        cr_assert_eq(i, ints[k].v, "%s", ints[k].k);
    }
    cr_assert_eq(bj_gguf_get_float(&g, "a.f32", true, &d, &err), BJ_OK);
    cr_assert_eq(d, 1.5);
    cr_assert_eq(bj_gguf_get_float(&g, "a.f64", true, &d, &err), BJ_OK);
    cr_assert_eq(d, -2.25);
    cr_assert_eq(bj_gguf_get_bool(&g, "a.bool", true, &b, &err), BJ_OK);
    cr_assert(b);
    cr_assert_eq(bj_gguf_get_str(&g, "a.str", true, &s, &err), BJ_OK);
    cr_assert(s.len == 5 && !memcmp(s.s, "hello", 5));
    const bj_gguf_kv *arr = bj_gguf_find_kv(&g, "a.arr"), *sarr = bj_gguf_find_kv(&g, "a.sarr");
    cr_assert(arr && arr->n == 3 && bj_gguf_arr_int(arr, 1) == -2 && bj_gguf_arr_float(arr, 2) == 3.0);
    cr_assert(sarr && sarr->n == 2 && sarr->strs[1].len == 2 && !memcmp(sarr->strs[1].s, "yz", 2));
    cr_assert_eq(bj_gguf_find_kv(&g, "a.empty")->n, 0);
    /* wrong type and missing keys name the key */
    cr_assert_eq(bj_gguf_get_int(&g, "a.str", true, &i, &err), BJ_E_FORMAT);
    cr_assert(strstr(err.msg, "'a.str'") && strstr(err.msg, "string"), "%s", err.msg);
    cr_assert_eq(bj_gguf_get_int(&g, "no.such", true, &i, &err), BJ_E_FORMAT);
    cr_assert(strstr(err.msg, "missing required key 'no.such'"), "%s", err.msg);
    i = 42;
    cr_assert_eq(bj_gguf_get_int(&g, "no.such", false, &i, &err), BJ_OK);
    cr_assert_eq(i, 42);
    bj_gguf_close(&g);
}

Test(gguf_reader, alignment_key) {
    img m = { .n = 0 };
    header(&m, 3, 1, 1);
    kv_u32(&m, "general.alignment", 64);
    tinfo(&m, "w", 1, (uint64_t[]){ 2 }, BJ_GGML_F16, 64);
    pad(&m, 64);
    zeros(&m, 64 + 4);
    bj_gguf g;
    bj_error err = { 0 };
    cr_assert_eq(parse(&m, &g, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(g.alignment, 64);
    cr_assert_eq(g.data_start % 64, 0);
    bj_gguf_close(&g);
    m.n = 0;
    header(&m, 3, 0, 1);
    kv_u32(&m, "general.alignment", 48);
    expect_fail(&m, BJ_E_FORMAT, "not a power of two");
    m.n = 0;
    header(&m, 3, 0, 1);
    str(&m, "general.alignment"); u32(&m, BJ_GGUF_U64); u64(&m, 32);
    expect_fail(&m, BJ_E_FORMAT, "'general.alignment': expected u32, got u64");
}

/* ---- bad inputs ---------------------------------------------------------------------------- */

Test(gguf_bad, wrong_magic) {
    img m;
    minimal(&m, 3);
    memcpy(m.b, "GGML", 4);
    expect_fail(&m, BJ_E_FORMAT, "not a GGUF file");
}

Test(gguf_bad, version_1_and_4) {
    img m;
    minimal(&m, 1);
    expect_fail(&m, BJ_E_UNSUPPORTED, "GGUF version 1 is not supported");
    minimal(&m, 4);
    expect_fail(&m, BJ_E_UNSUPPORTED, "GGUF version 4 is not supported");
    minimal(&m, 0x03000000);
    expect_fail(&m, BJ_E_UNSUPPORTED, "byte-swapped");
}

Test(gguf_bad, truncated_header) {
    img m;
    minimal(&m, 3);
    for (size_t cut = 0; cut < 24; cut += 5) {
        img t = m;
        t.n = cut;
        expect_fail(&t, BJ_E_FORMAT, "truncated");
    }
    img t = m;
    t.n = 40; /* inside the first key */
    expect_fail(&t, BJ_E_FORMAT, "past the end");
}

Test(gguf_bad, string_length_past_end) {
    img m = { .n = 0 };
    header(&m, 3, 0, 1);
    str(&m, "general.name"); u32(&m, BJ_GGUF_STRING); u64(&m, 1000); put(&m, "abc", 3);
    expect_fail(&m, BJ_E_FORMAT, "general.name: string length 1000 runs past the end of the file");
}

Test(gguf_bad, absurd_counts) {
    img m = { .n = 0 };
    header(&m, 3, 0, 1ull << 60);
    expect_fail(&m, BJ_E_FORMAT, "metadata count 1152921504606846976 cannot fit");
    m.n = 0;
    header(&m, 3, 1ull << 62, 0);
    expect_fail(&m, BJ_E_FORMAT, "tensor count");
    m.n = 0;
    header(&m, 3, 0, 1);
    str(&m, "a"); u32(&m, BJ_GGUF_ARRAY); u32(&m, BJ_GGUF_U64); u64(&m, 1ull << 61);
    expect_fail(&m, BJ_E_FORMAT, "key 'a': array of 2305843009213693952 u64 runs past the end");
    m.n = 0;
    header(&m, 3, 0, 1);
    str(&m, "a"); u32(&m, BJ_GGUF_ARRAY); u32(&m, BJ_GGUF_ARRAY); u64(&m, 1);
    expect_fail(&m, BJ_E_FORMAT, "nested arrays");
    m.n = 0;
    header(&m, 3, 0, 1);
    str(&m, "a"); u32(&m, 13); u32(&m, 0);
    expect_fail(&m, BJ_E_FORMAT, "key 'a': value type 13");
    m.n = 0;
    header(&m, 3, 0, 1);
    str(&m, "b"); u32(&m, BJ_GGUF_BOOL); put(&m, "\x02", 1);
    expect_fail(&m, BJ_E_FORMAT, "key 'b': bool byte 2");
}

Test(gguf_bad, tensor_offset_past_end) {
    img t = { .n = 0 };
    header(&t, 3, 1, 1);
    kv_str(&t, "general.architecture", "bitnet");
    tinfo(&t, "w", 1, (uint64_t[]){ 4 }, BJ_GGML_F32, 4096);
    pad(&t, 32);
    zeros(&t, 16);
    expect_fail(&t, BJ_E_FORMAT, "tensor 'w': offset 4096 is past the end of the file");
}

Test(gguf_bad, file_shorter_than_tensor_table) {
    img m;
    minimal(&m, 3);
    m.n -= 4; /* the last float is missing */
    expect_fail(&m, BJ_E_FORMAT, "file is truncated: tensor 'w' needs bytes [0, 16)");
}

Test(gguf_bad, misaligned_data) {
    img m = { .n = 0 };
    header(&m, 3, 2, 1);
    kv_str(&m, "general.architecture", "bitnet");
    tinfo(&m, "a", 1, (uint64_t[]){ 1 }, BJ_GGML_F32, 0);
    tinfo(&m, "b", 1, (uint64_t[]){ 1 }, BJ_GGML_F32, 4);
    pad(&m, 32);
    zeros(&m, 64);
    expect_fail(&m, BJ_E_FORMAT, "tensor 'b': offset 4 is not a multiple of the alignment 32");
}

Test(gguf_bad, n_dims_over_4) {
    img m = { .n = 0 };
    header(&m, 3, 1, 0);
    tinfo(&m, "w", 5, (uint64_t[]){ 1, 1, 1, 1, 1 }, BJ_GGML_F32, 0);
    pad(&m, 32);
    zeros(&m, 32);
    expect_fail(&m, BJ_E_FORMAT, "tensor 'w': n_dims 5 > 4");
}

Test(gguf_bad, ne_product_overflow) {
    img m = { .n = 0 };
    header(&m, 3, 1, 0);
    tinfo(&m, "big", 3, (uint64_t[]){ 1ull << 32, 1ull << 32, 4 }, BJ_GGML_F32, 0);
    pad(&m, 32);
    zeros(&m, 32);
    expect_fail(&m, BJ_E_FORMAT, "tensor 'big': the element count");
    m.n = 0;
    header(&m, 3, 1, 0);
    tinfo(&m, "neg", 2, (uint64_t[]){ 4, (uint64_t)-1 }, BJ_GGML_F32, 0);
    expect_fail(&m, BJ_E_FORMAT, "tensor 'neg': dimension 1");
}

Test(gguf_bad, duplicate_names_and_keys) {
    img m = { .n = 0 };
    header(&m, 3, 2, 0);
    tinfo(&m, "w", 1, (uint64_t[]){ 8 }, BJ_GGML_F32, 0);
    tinfo(&m, "w", 1, (uint64_t[]){ 8 }, BJ_GGML_F32, 32);
    pad(&m, 32);
    zeros(&m, 64);
    expect_fail(&m, BJ_E_FORMAT, "duplicate tensor name 'w'");
    m.n = 0;
    header(&m, 3, 0, 2);
    kv_u32(&m, "k", 1);
    kv_u32(&m, "k", 2);
    expect_fail(&m, BJ_E_FORMAT, "duplicate metadata key 'k'");
}

Test(gguf_bad, overlapping_tensors_and_long_names) {
    img m = { .n = 0 };
    header(&m, 3, 2, 0);
    tinfo(&m, "a", 1, (uint64_t[]){ 16 }, BJ_GGML_F32, 0);
    tinfo(&m, "b", 1, (uint64_t[]){ 1 }, BJ_GGML_F32, 32);
    pad(&m, 32);
    zeros(&m, 96);
    expect_fail(&m, BJ_E_FORMAT, "tensors 'a' and 'b' overlap");
    m.n = 0;
    header(&m, 3, 1, 0);
    tinfo(&m, "0123456789012345678901234567890123456789012345678901234567890123", 1, (uint64_t[]){ 1 }, 0, 0);
    expect_fail(&m, BJ_E_FORMAT, "tensor name of length 64");
}

Test(gguf_bad, unsupported_type_names_tensor_and_type) {
    img m = { .n = 0 };
    header(&m, 3, 1, 0);
    tinfo(&m, "blk.0.ffn_up.weight", 2, (uint64_t[]){ 256, 2 }, 12, 0);
    pad(&m, 32);
    zeros(&m, 4096);
    expect_fail(&m, BJ_E_UNSUPPORTED, "tensor 'blk.0.ffn_up.weight': ggml type 12 (Q4_K) is not supported");
    m.n = 0;
    header(&m, 3, 1, 0);
    tinfo(&m, "q", 2, (uint64_t[]){ 100, 2 }, BJ_GGML_TQ2_0, 0);
    pad(&m, 32);
    zeros(&m, 4096);
    expect_fail(&m, BJ_E_FORMAT, "ne0 = 100 is not a multiple of the TQ2_0 block size (256)");
}

Test(gguf_bad, missing_required_keys) {
    img m;
    minimal(&m, 3);
    bj_gguf g;
    bj_error err = { 0 };
    bj_model_config c;
    cr_assert_eq(parse(&m, &g, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_gguf_config(&g, &c, &err), BJ_E_FORMAT);
    cr_assert(strstr(err.msg, "missing required key 'bitnet.embedding_length'"), "%s", err.msg);
    bj_gguf_close(&g);
    m.n = 0;
    header(&m, 3, 0, 0);
    cr_assert_eq(parse(&m, &g, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_gguf_config(&g, &c, &err), BJ_E_FORMAT);
    cr_assert(strstr(err.msg, "missing required key 'general.architecture'"), "%s", err.msg);
    bj_tokenizer *tok;
    cr_assert_eq(bj_tok_load_gguf(&tok, &g, &err), BJ_E_FORMAT);
    cr_assert(strstr(err.msg, "missing required key 'tokenizer.ggml.model'"), "%s", err.msg);
    bj_gguf_close(&g);
}

/* ---- the fork type-id clash (formats.md §1.6) ------------------------------------------------ */

/* Two tensors: "x" of type id at offset 0 with `room` bytes before "y" (F32 [8]). */
static void clash(img *m, const char *arch, uint32_t id, uint64_t ne0, uint64_t ne1, uint64_t room) {
    m->n = 0;
    header(m, 3, 2, 1);
    kv_str(m, "general.architecture", arch);
    tinfo(m, "x", 2, (uint64_t[]){ ne0, ne1 }, id, 0);
    tinfo(m, "y", 1, (uint64_t[]){ 8 }, BJ_GGML_F32, room);
    pad(m, 32);
    zeros(m, (size_t)room + 32);
}

Test(gguf_fork, id36_is_i2s_for_bitnet_with_matching_size) {
    const char *archs[] = { "bitnet", "bitnet-b1.58", "bitnet-25", "bitnet-1.58" };
    for (size_t a = 0; a < BJ_COUNTOF(archs); a++) {
        img m;
        clash(&m, archs[a], 36, 256, 4, 256 * 4 / 4 + 32); /* 288 bytes: pads to 288 */
        bj_gguf g;
        bj_error err = { 0 };
        cr_assert_eq(parse(&m, &g, &err), BJ_OK, "%s: %s", archs[a], err.msg);
        cr_assert_eq(bj_gguf_find_tensor(&g, "x")->nbytes, 288);
        bj_gguf_close(&g);
    }
}

Test(gguf_fork, id36_rejected_elsewhere) {
    img m;
    clash(&m, "qwen2", 36, 256, 4, 288);
    expect_fail(&m, BJ_E_UNSUPPORTED, "type id 36 is I2_S only in bitnet.cpp files (architecture 'qwen2'");
    clash(&m, "bitnet", 36, 256, 4, 288 + 64); /* more room than I2_S + alignment: not I2_S */
    expect_fail(&m, BJ_E_FORMAT, "type id 36 (I2_S) needs 288 bytes");
    clash(&m, "bitnet", 36, 256, 4, 256);
    expect_fail(&m, BJ_E_FORMAT, "but 256 are allotted");
}

Test(gguf_fork, id39_mxfp4_or_tl2) {
    img m;
    clash(&m, "llama", 39, 256, 4, 544);
    expect_fail(&m, BJ_E_UNSUPPORTED, "type id 39 (MXFP4) is not supported");
    /* TL2 size for K=512, M=4: (256*4/3*5/8 + 256*4/2*4/8) = 213 + 256 = 469 -> 480, + 32 = 512 */
    clash(&m, "bitnet-b1.58", 39, 512, 4, 512);
    expect_fail(&m, BJ_E_UNSUPPORTED, "type id 39 (TL2");
}

/* ---- per-type decode against hand-computed blocks ------------------------------------------- */

static bj_gguf_tensor tensor_of(uint32_t type, int64_t K, int64_t N, const uint8_t *data, uint64_t nbytes) {
    return (bj_gguf_tensor){ .name = "t", .type = type, .ndim = 2, .ne = { K, N, 1, 1 }, .data = data, .nbytes = nbytes };
}

Test(gguf_decode, tq2_0_block) {
    uint8_t blk[66] = { 0 };
    for (int i = 0; i < 64; i++) blk[i] = 0x55; /* all codes 1: zero */
    blk[0] = 0x92;  /* bits: l0 = 2 (+1), l1 = 0 (-1), l2 = 1 (0), l3 = 2 (+1): values 0, 32, 64, 96 */
    blk[33] = 0x08; /* h1, m1: l0 = 0 (-1), l1 = 2 (+1), l2 = 0 (-1), l3 = 0 (-1): values 129, 161, 193, 225 */
    blk[64] = 0x00, blk[65] = 0x38; /* f16 0.5 */
    bj_gguf_tensor t = tensor_of(BJ_GGML_TQ2_0, 256, 1, blk, 66);
    const int idx[] = { 0, 32, 64, 96, 129, 161, 193, 225, 1, 255 }, want[] = { 1, -1, 0, 1, -1, 1, -1, -1, 0, 0 };
    float d;
    for (size_t i = 0; i < BJ_COUNTOF(idx); i++)
        cr_assert_eq(bj_gguf_ternary_at(&t, 0, idx[i], &d), want[i], "value %d", idx[i]);
    cr_assert_eq(d, 0.5f);
}

Test(gguf_decode, tq1_0_block) {
    uint8_t blk[54];
    memset(blk, 128, 48); /* 128 = five trits of 1 (zero) */
    memset(blk + 48, 127, 4);
    blk[0] = 186;  /* trits 2,0,1,1,2: t = 176, ceil(176*256/243) = 186 -> values 0,32,64,96,128 = +1,-1,0,0,+1 */
    blk[32] = 147; /* trits 1,2,0,1,1: t = 139 -> 147 -> values 160,176,192,208,224 = 0,+1,-1,0,0 */
    blk[48] = 70;  /* trits 0,2,1,1 (+0): t = 66 -> 70 -> values 240,244,248,252 = -1,+1,0,0 */
    blk[52] = 0x00, blk[53] = 0x3C; /* f16 1.0 */
    bj_gguf_tensor t = tensor_of(BJ_GGML_TQ1_0, 256, 1, blk, 54);
    const int idx[] = { 0, 32, 64, 96, 128, 160, 176, 192, 208, 224, 240, 244, 248, 252, 5, 255 };
    const int want[] = { 1, -1, 0, 0, 1, 0, 1, -1, 0, 0, -1, 1, 0, 0, 0, 0 };
    float d;
    for (size_t i = 0; i < BJ_COUNTOF(idx); i++)
        cr_assert_eq(bj_gguf_ternary_at(&t, 0, idx[i], &d), want[i], "value %d", idx[i]);
    cr_assert_eq(d, 1.0f);
}

Test(gguf_decode, i2_s_block) {
    uint8_t data[128 / 4 * 2 + 32];
    memset(data, 0x55, 64);
    memset(data + 64, 0, 32);
    data[0] = 0x86;  /* 10 00 01 10: values 0, 32, 64, 96 = +1, -1, 0, +1 */
    data[32 + 5] = 0x21; /* second 128-group, p = 5: 00 10 00 01: values 133, 165, 197, 229 = -1, +1, -1, 0 */
    float s = 1.5f;
    memcpy(data + 64, &s, 4);
    bj_gguf_tensor t = tensor_of(BJ_GGML_I2_S, 128, 2, data, sizeof data);
    const int flat[] = { 0, 32, 64, 96, 133, 165, 197, 229, 1 }, want[] = { 1, -1, 0, 1, -1, 1, -1, 0, 0 };
    float d;
    for (size_t i = 0; i < BJ_COUNTOF(flat); i++)
        cr_assert_eq(bj_gguf_ternary_at(&t, flat[i] / 128, flat[i] % 128, &d), want[i], "value %d", flat[i]);
    cr_assert_eq(d, 1.5f);
}

/* The writer's encoders and the reader's decoders agree on every value (pseudo-random rows). */
Test(gguf_decode, encoders_round_trip) {
    int8_t v[512 * 3];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof v; i++) { x = x * 1103515245u + 12345u; v[i] = (int8_t)((x >> 16) % 3) - 1; }
    uint8_t tq1[54 * 2 * 3], tq2[66 * 2 * 3], i2s[512 * 3 / 4 + 32];
    for (int r = 0; r < 3; r++) {
        bj_gguf_pack_tq1_row(v + 512 * r, 512, 0.25f, tq1 + 108 * r);
        bj_gguf_pack_tq2_row(v + 512 * r, 512, 0.25f, tq2 + 132 * r);
    }
    bj_gguf_pack_i2s(v, 512 * 3, i2s);
    bj_gguf_tensor t1 = tensor_of(BJ_GGML_TQ1_0, 512, 3, tq1, sizeof tq1);
    bj_gguf_tensor t2 = tensor_of(BJ_GGML_TQ2_0, 512, 3, tq2, sizeof tq2);
    bj_gguf_tensor t3 = tensor_of(BJ_GGML_I2_S, 512, 3, i2s, sizeof i2s);
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 512; k++) {
            cr_assert_eq(bj_gguf_ternary_at(&t1, r, k, NULL), v[512 * r + k], "tq1 [%d,%d]", r, k);
            cr_assert_eq(bj_gguf_ternary_at(&t2, r, k, NULL), v[512 * r + k], "tq2 [%d,%d]", r, k);
            cr_assert_eq(bj_gguf_ternary_at(&t3, r, k, NULL), v[512 * r + k], "i2s [%d,%d]", r, k);
        }
}

/* ---- the writer API and a whole micro model (also the fuzzer's richest seed) ----------------- */

/* A 1-layer bitnet-b1.58 model, hidden 128, 2 heads (1 KV head), ffn 128, a 6-token byte-level
 * vocab with one merge, I2_S projections, one all-zero projection (attn_v). */
static void write_micro(const char *path) {
    bj_gguf_writer *w;
    bj_error err = { 0 };
    cr_assert_eq(bj_gguf_writer_new(&w, 32, &err), BJ_OK);
    const char *a = "bitnet-b1.58";
    bj_gguf_kv_str(w, "general.architecture", a, &err);
    const struct { const char *k; uint32_t v; } u[] = {
        { "bitnet-b1.58.context_length", 64 }, { "bitnet-b1.58.embedding_length", 128 },
        { "bitnet-b1.58.block_count", 1 }, { "bitnet-b1.58.feed_forward_length", 128 },
        { "bitnet-b1.58.attention.head_count", 2 }, { "bitnet-b1.58.attention.head_count_kv", 1 },
        { "tokenizer.ggml.bos_token_id", 4 }, { "tokenizer.ggml.eos_token_id", 5 },
    };
    for (size_t i = 0; i < BJ_COUNTOF(u); i++) cr_assert_eq(bj_gguf_kv_u32(w, u[i].k, u[i].v, &err), BJ_OK);
    bj_gguf_kv_f32(w, "bitnet-b1.58.attention.layer_norm_rms_epsilon", 1e-5f, &err);
    bj_gguf_kv_str(w, "tokenizer.ggml.model", "gpt2", &err);
    bj_gguf_kv_str(w, "tokenizer.ggml.pre", "llama-bpe", &err);
    const bj_gguf_str toks[] = { { "a", 1 }, { "b", 1 }, { "ab", 2 }, { "\xc4\xa0", 2 }, { "<s>", 3 }, { "</s>", 4 } };
    const int32_t types[] = { 1, 1, 1, 1, 3, 3 };
    const bj_gguf_str merges[] = { { "a b", 3 } };
    bj_gguf_kv_arr_str(w, "tokenizer.ggml.tokens", toks, 6, &err);
    bj_gguf_kv_arr_i32(w, "tokenizer.ggml.token_type", types, 6, &err);
    bj_gguf_kv_arr_str(w, "tokenizer.ggml.merges", merges, 1, &err);
    cr_assert_eq(bj_gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", true, &err), BJ_OK);
    const char *norms[] = { "blk.0.attn_norm.weight", "blk.0.attn_sub_norm.weight", "blk.0.ffn_norm.weight",
                            "blk.0.ffn_sub_norm.weight", "output_norm.weight" };
    const struct { const char *n; int64_t out; } proj[] = {
        { "blk.0.attn_q.weight", 128 }, { "blk.0.attn_k.weight", 64 }, { "blk.0.attn_v.weight", 64 },
        { "blk.0.attn_output.weight", 128 }, { "blk.0.ffn_gate.weight", 128 }, { "blk.0.ffn_up.weight", 128 },
        { "blk.0.ffn_down.weight", 128 },
    };
    cr_assert_eq(bj_gguf_add_tensor(w, "token_embd.weight", BJ_GGML_F16, 2, (int64_t[]){ 128, 6 }, &err), BJ_OK);
    for (size_t i = 0; i < BJ_COUNTOF(norms); i++)
        cr_assert_eq(bj_gguf_add_tensor(w, norms[i], BJ_GGML_F32, 1, (int64_t[]){ 128 }, &err), BJ_OK);
    for (size_t i = 0; i < BJ_COUNTOF(proj); i++)
        cr_assert_eq(bj_gguf_add_tensor(w, proj[i].n, BJ_GGML_I2_S, 2, (int64_t[]){ 128, proj[i].out }, &err), BJ_OK);
    cr_assert_eq(bj_gguf_writer_begin(w, path, &err), BJ_OK, "%s", err.msg);
    uint16_t e[128 * 6];
    for (int i = 0; i < 128 * 6; i++) e[i] = bj_f32_to_f16((float)((i * 37) % 11 - 5) * 0.01f);
    bj_gguf_writer_write(w, e, sizeof e, &err);
    float ones[128];
    for (int i = 0; i < 128; i++) ones[i] = 1.0f;
    for (size_t i = 0; i < BJ_COUNTOF(norms); i++) bj_gguf_writer_write(w, ones, sizeof ones, &err);
    int8_t v[128 * 128];
    uint8_t packed[128 * 128 / 4 + 32];
    for (size_t i = 0; i < BJ_COUNTOF(proj); i++) {
        int64_t n = proj[i].out * 128;
        for (int64_t k = 0; k < n; k++) v[k] = i == 2 ? 0 : (int8_t)((k * 7 + (int64_t)i) % 3 - 1);
        bj_gguf_pack_i2s(v, n, packed);
        float s = 0.125f;
        memset(packed + n / 4, 0, 32);
        memcpy(packed + n / 4, &s, 4);
        cr_assert_eq(bj_gguf_writer_write(w, packed, (size_t)(n / 4 + 32), &err), BJ_OK, "%s", err.msg);
    }
    cr_assert_eq(bj_gguf_writer_finish(w, &err), BJ_OK, "%s", err.msg);
    bj_gguf_writer_free(w);
}

Test(gguf_writer, micro_model_reads_back) {
    const char *path = BJ_TEST_TMP "/micro-i2s.gguf";
    write_micro(path);
    bj_gguf g;
    bj_error err = { 0 };
    cr_assert_eq(bj_gguf_open(&g, path, &err), BJ_OK, "%s", err.msg);
    bj_model_config c;
    cr_assert_eq(bj_gguf_config(&g, &c, &err), BJ_OK, "%s", err.msg);
    cr_assert(c.hidden == 128 && c.n_head == 2 && c.n_kv_head == 1 && c.head_dim == 64 && c.vocab == 6);
    cr_assert(c.act == BJ_ACT_RELU2 && c.tie_embeddings && c.rope_theta == 10000.0);
    bj_graph gr;
    cr_assert_eq(bj_graph_init(&gr, "m", &err), BJ_OK);
    cr_assert_eq(bj_fe_build_bitnet_gguf(&gr, &c, &g, &err), BJ_OK, "%s", err.msg);
    cr_assert(g.warnings & BJ_GGUF_W_ZERO_TENSOR);
    cr_assert(strstr(g.warning, "'blk.0.attn_v.weight' (I2_S) is all zeros"), "%s", g.warning);
    bj_graph_free(&gr);
    bj_tokenizer *tok;
    cr_assert_eq(bj_tok_load_gguf(&tok, &g, &err), BJ_OK, "%s", err.msg);
    int32_t *ids;
    size_t n;
    cr_assert_eq(bj_tok_encode(tok, "ab a<s>b", 8, bj_tok_add_bos(tok), true, &ids, &n, &err), BJ_OK, "%s", err.msg);
    const int32_t want[] = { 4, 2, 3, 0, 4, 1 }; /* BOS, "ab", " ", "a", <s>, "b" */
    cr_assert_eq(n, BJ_COUNTOF(want));
    cr_assert_arr_eq(ids, want, sizeof want);
    free(ids);
    bj_tok_free(tok);
    bj_gguf_close(&g);
}

Test(gguf_writer, micro_model_truncated_is_an_error) {
    const char *path = BJ_TEST_TMP "/micro-trunc.gguf";
    write_micro(path);
    cr_assert_eq(truncate(path, 9000), 0);
    bj_gguf g;
    bj_error err = { 0 };
    cr_assert_eq(bj_gguf_open(&g, path, &err), BJ_E_FORMAT);
    cr_assert(strstr(err.msg, "file is truncated"), "%s", err.msg);
}

/* ---- scaled RoPE is refused, naming the key or tensor ----------------------------------------- */

/* The metadata of a 1-layer llama (hidden 128, 2 heads) plus a token_embd of 8 rows, then the
 * given string key, float key and (freqs) a rope_freqs.weight F32 [32] tensor; bj_gguf_config's
 * verdict. */
static bj_status llama_rope_config(const char *name, const char *skey, const char *sval, const char *fkey, float fval,
                                   bool freqs, bj_error *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/rope-%s.gguf", BJ_TEST_TMP, name);
    bj_gguf_writer *w;
    cr_assert_eq(bj_gguf_writer_new(&w, 32, err), BJ_OK);
    bj_gguf_kv_str(w, "general.architecture", "llama", err);
    const struct { const char *k; uint32_t v; } u[] = {
        { "llama.context_length", 64 }, { "llama.embedding_length", 128 }, { "llama.block_count", 1 },
        { "llama.feed_forward_length", 256 }, { "llama.attention.head_count", 2 },
    };
    for (size_t i = 0; i < BJ_COUNTOF(u); i++) cr_assert_eq(bj_gguf_kv_u32(w, u[i].k, u[i].v, err), BJ_OK);
    bj_gguf_kv_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err);
    if (skey) cr_assert_eq(bj_gguf_kv_str(w, skey, sval, err), BJ_OK);
    if (fkey) cr_assert_eq(bj_gguf_kv_f32(w, fkey, fval, err), BJ_OK);
    cr_assert_eq(bj_gguf_add_tensor(w, "token_embd.weight", BJ_GGML_F32, 2, (int64_t[]){ 128, 8 }, err), BJ_OK);
    if (freqs) cr_assert_eq(bj_gguf_add_tensor(w, "rope_freqs.weight", BJ_GGML_F32, 1, (int64_t[]){ 32 }, err), BJ_OK);
    cr_assert_eq(bj_gguf_writer_begin(w, path, err), BJ_OK, "%s", err->msg);
    static float zero[128 * 8];
    cr_assert_eq(bj_gguf_writer_write(w, zero, sizeof zero, err), BJ_OK);
    if (freqs) cr_assert_eq(bj_gguf_writer_write(w, zero, 32 * 4, err), BJ_OK);
    cr_assert_eq(bj_gguf_writer_finish(w, err), BJ_OK, "%s", err->msg);
    bj_gguf_writer_free(w);
    bj_gguf g;
    bj_model_config c;
    cr_assert_eq(bj_gguf_open(&g, path, err), BJ_OK, "%s", err->msg);
    bj_status s = bj_gguf_config(&g, &c, err);
    bj_gguf_close(&g);
    return s;
}

Test(gguf_rope, scaled_rope_refused_naming_the_key) {
    static const struct {
        const char *name, *skey, *sval, *fkey;
        float fval;
        bool freqs;
        const char *want; /* NULL: accepted */
    } cases[] = {
        { "plain", NULL, NULL, NULL, 0, false, NULL },
        { "none", "llama.rope.scaling.type", "none", "llama.rope.scaling.factor", 8, false, NULL },
        { "linear1", "llama.rope.scaling.type", "linear", "llama.rope.scaling.factor", 1, false, NULL },
        { "yarn", "llama.rope.scaling.type", "yarn", NULL, 0, false, "key 'llama.rope.scaling.type' is \"yarn\"" },
        /* no type key: llama.cpp's default type is linear, so a factor scales */
        { "factor", NULL, NULL, "llama.rope.scaling.factor", 8, false, "key 'llama.rope.scaling.factor' is 8" },
        { "scale_linear", NULL, NULL, "llama.rope.scale_linear", 4, false, "key 'llama.rope.scale_linear' is 4" },
        { "freqs", NULL, NULL, NULL, 0, true, "tensor 'rope_freqs.weight'" },
    };
    for (size_t i = 0; i < BJ_COUNTOF(cases); i++) {
        bj_error err = { 0 };
        bj_status s = llama_rope_config(cases[i].name, cases[i].skey, cases[i].sval, cases[i].fkey, cases[i].fval,
                                        cases[i].freqs, &err);
        if (!cases[i].want) {
            cr_expect_eq(s, BJ_OK, "%s: %s", cases[i].name, err.msg);
            continue;
        }
        cr_expect_eq(s, BJ_E_UNSUPPORTED, "%s: %s", cases[i].name, err.msg);
        cr_expect(strstr(err.msg, cases[i].want) && strstr(err.msg, "rope-"), "%s: '%s' lacks '%s'", cases[i].name,
                  err.msg, cases[i].want);
    }
}
