/* tests/unit/test_ir_binary.c -- the 1-bit weight dtype b1 (issue 10): its table row and
 * byte size, its values (bit k%8 of byte k/8 of a row, 1 = +1) through bj_ir_lowbit_values
 * against bits written here by hand, the packer's round trip, and the verifier keeping binary
 * and ternary apart: a binary weight under a ternary kernel choice, or a ternary weight under
 * the binary kernel, is refused with a message naming both. */
#include "ir/ir.h"
#include "ir/weights.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

Test(ir_binary, dtype_row) {
    bj_dtype dt;
    uint64_t n;
    cr_assert(bj_dtype_from_name("b1", 2, &dt));
    cr_assert_eq(dt, BJ_DT_B1);
    cr_assert_str_eq(bj_dtype_name(BJ_DT_B1), "b1");
    cr_assert_eq(bj_dtype_class_of(BJ_DT_B1), BJ_DTC_BINARY);
    cr_assert(bj_dtype_is_lowbit(BJ_DT_B1));
    cr_assert(bj_dtype_nbytes(BJ_DT_B1, 3, 64, &n) && n == 24, "8 bytes a 64-wide row");
    cr_assert(bj_dtype_nbytes(BJ_DT_B1, 3, 65, &n) && n == 27, "rows are ceil(K/8) bytes");
    cr_assert(bj_dtype_nbytes(BJ_DT_B1, 5, 1, &n) && n == 5);
    uint64_t t2;
    cr_assert(bj_dtype_nbytes(BJ_DT_T2, 2560, 6912, &t2) && bj_dtype_nbytes(BJ_DT_B1, 2560, 6912, &n));
    cr_assert_eq(2 * n, t2, "b1 is half the bytes of 2-bit ternary");
}

/* A graph with one bound b1 weight [2, 10]: row 0 has +1 at k = 0, 3, 9; row 1 all +1. */
Test(ir_binary, values_from_bits) {
    static const uint8_t bits[4] = { 0x09, 0x02, 0xff, 0x03 }; /* row 0: bytes 0..1, row 1: bytes 2..3 */
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_graph_init(&g, "b1", &err), BJ_OK);
    uint32_t w = bj_ir_weight(&g, "w", BJ_DT_B1, bj_shape2(2, 10), 0.25, bits, sizeof bits, &err);
    cr_assert_neq(w, BJ_NONE, "%s", err.msg);
    int8_t *v;
    double scale;
    cr_assert_eq(bj_ir_lowbit_values(&g, w, &v, &scale, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(scale, 0.25);
    for (int k = 0; k < 10; k++) {
        cr_expect_eq(v[k], (k == 0 || k == 3 || k == 9) ? 1 : -1, "row 0 k %d", k);
        cr_expect_eq(v[10 + k], 1, "row 1 k %d", k);
    }
    uint8_t back[4];
    bj_ir_pack_b1(v, 2, 10, back);
    cr_assert_arr_eq(back, bits, sizeof bits, "packer round trip (padding bits 0)");
    free(v);
    bj_graph_free(&g);
}

/* matmul_tk / bitlinear over a t8 or b1 weight with a given variant; returns verify's status. */
static bj_status verify_choice(bj_op op, bj_dtype wdt, int64_t variant, int64_t layout, char *msg, size_t cap) {
    static const char *const fmt =
        "graph @g {max_seq=0}\n"
        "%%0 = input : i32[T]\n"
        "%%1 = weight \"emb\" {scale=1} : f32[16,8]\n"
        "%%2 = embed %%1, %%0 : f32[T,8]\n"
        "%%3 = weight \"gain\" {scale=1} : f32[8]\n"
        "%%4 = rmsnorm_quant %%2, %%3 {eps=1.0000000000000001e-05} : q8row[T,8]\n"
        "%%5 = weight \"w\" {scale=0.5} : %s[8,8]\n"
        "%s\n"
        "%%7 = output %%6 : f32[T,8]\n";
    char line[256], text[2048];
    if (op == BJ_OP_MATMUL_TK)
        snprintf(line, sizeof line, "%%6 = matmul_tk %%4, %%5 {variant=%lld, isa=2, layout=%lld, packed=0} : f32[T,8]",
                 (long long)variant, (long long)layout);
    else
        snprintf(line, sizeof line, "%%6 = bitlinear %%2, %%3, %%5 {variant=%lld, isa=2, layout=%lld, packed=0, "
                 "eps=1.0000000000000001e-05} : f32[T,8]", (long long)variant, (long long)layout);
    snprintf(text, sizeof text, fmt, bj_dtype_name(wdt), line);
    bj_graph g;
    bj_error err = { 0 };
    bj_status s = bj_ir_parse(&g, text, strlen(text), &err);
    if (s == BJ_OK) s = bj_ir_verify(&g, &err);
    snprintf(msg, cap, "%.400s", err.msg);
    if (g.nodes) bj_graph_free(&g);
    return s;
}

Test(ir_binary, verifier_keeps_binary_and_ternary_apart) {
    char msg[512];
    const bj_op ops[] = { BJ_OP_MATMUL_TK, BJ_OP_BITLINEAR };
    for (int i = 0; i < 2; i++) {
        bj_op op = ops[i];
        /* accepted: no choice yet, the binary kernel on b1 / b8, a ternary one on t8 */
        cr_expect_eq(verify_choice(op, BJ_DT_B1, 0, 0, msg, sizeof msg), BJ_OK, "%s", msg);
        cr_expect_eq(verify_choice(op, BJ_DT_B1, BJ_IR_VARIANT_BIN1, BJ_IR_VARIANT_BIN1, msg, sizeof msg), BJ_OK, "%s", msg);
        cr_expect_eq(verify_choice(op, BJ_DT_B8, BJ_IR_VARIANT_BIN1, 0, msg, sizeof msg), BJ_OK, "%s", msg);
        cr_expect_eq(verify_choice(op, BJ_DT_T8, 1, 1, msg, sizeof msg), BJ_OK, "%s", msg);
        /* refused: a ternary kernel (dot2 = 1, bitplane = 2, wcode = 3) on binary weights */
        for (int v = 1; v <= 3; v++) {
            cr_expect_neq(verify_choice(op, BJ_DT_B1, v, 0, msg, sizeof msg), BJ_OK, "variant %d on b1 accepted", v);
            cr_expect(strstr(msg, "is a ternary kernel, but weight %5 is binary (b1)"), "%s", msg);
        }
        cr_expect_neq(verify_choice(op, BJ_DT_B8, 1, 0, msg, sizeof msg), BJ_OK);
        /* refused: the binary kernel (variant or recorded layout) on ternary weights */
        cr_expect_neq(verify_choice(op, BJ_DT_T8, BJ_IR_VARIANT_BIN1, 0, msg, sizeof msg), BJ_OK);
        cr_expect(strstr(msg, "variant 4 is a binary kernel, but weight %5 is ternary (t8)"), "%s", msg);
        cr_expect_neq(verify_choice(op, BJ_DT_T2, 1, BJ_IR_VARIANT_BIN1, msg, sizeof msg), BJ_OK);
        cr_expect(strstr(msg, "layout 4 is a binary kernel, but weight %5 is ternary (t2)"), "%s", msg);
        cr_expect(strstr(msg, i == 0 ? "matmul_tk %6" : "bitlinear %6"), "names the node: %s", msg);
    }
}
