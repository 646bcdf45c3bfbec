/* tests/unit/test_ir_dtype.c -- the dtype and op tables (built from the .def X-macros),
 * byte sizes with their overflow checks, the shape helpers, and the text buffer of ir/support.c. */
#include "ir/ir.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

Test(ir_dtype, names_round_trip) {
    for (int t = 0; t < BJ_DT_COUNT; t++) {
        const char *name = bj_dtype_name((bj_dtype)t);
        bj_dtype back = BJ_DT_COUNT;
        cr_assert(bj_dtype_from_name(name, strlen(name), &back), "%s", name);
        cr_assert_eq((int)back, t, "%s", name);
    }
    cr_assert_str_eq(bj_dtype_name(BJ_DT_T2HF), "t2hf");
    cr_assert_str_eq(bj_dtype_name(BJ_DT_COUNT), "?");
}

Test(ir_dtype, from_name_uses_length_not_nul) {
    bj_dtype t;
    cr_assert(bj_dtype_from_name("f32xyz", 3, &t));
    cr_assert_eq(t, BJ_DT_F32);
    cr_assert(bj_dtype_from_name("t2hf", 2, &t)); /* "t2" */
    cr_assert_eq(t, BJ_DT_T2);
    cr_assert_not(bj_dtype_from_name("f3", 2, &t));
    cr_assert_not(bj_dtype_from_name("f322", 4, &t));
    cr_assert_not(bj_dtype_from_name("", 0, &t));
    cr_assert_not(bj_dtype_from_name("F32", 3, &t));
}

Test(ir_dtype, classes_and_lowbit) {
    cr_assert_eq(bj_dtype_class_of(BJ_DT_BF16), BJ_DTC_FLOAT);
    cr_assert_eq(bj_dtype_class_of(BJ_DT_I32), BJ_DTC_INT);
    cr_assert_eq(bj_dtype_class_of(BJ_DT_Q8ROW), BJ_DTC_ACT);
    cr_assert_eq(bj_dtype_class_of(BJ_DT_T2), BJ_DTC_TERNARY);
    cr_assert_eq(bj_dtype_class_of(BJ_DT_B8), BJ_DTC_BINARY);
    const bj_dtype low[] = { BJ_DT_T8, BJ_DT_B8, BJ_DT_T2HF, BJ_DT_T2 };
    const bj_dtype high[] = { BJ_DT_F32, BJ_DT_F16, BJ_DT_BF16, BJ_DT_I8, BJ_DT_U8, BJ_DT_I32, BJ_DT_Q8ROW };
    for (size_t i = 0; i < BJ_COUNTOF(low); i++) cr_assert(bj_dtype_is_lowbit(low[i]), "%s", bj_dtype_name(low[i]));
    for (size_t i = 0; i < BJ_COUNTOF(high); i++) cr_assert_not(bj_dtype_is_lowbit(high[i]), "%s", bj_dtype_name(high[i]));
    cr_assert_not(bj_dtype_is_lowbit(BJ_DT_COUNT));
}

static uint64_t nbytes_of(bj_dtype t, uint64_t rows, uint64_t cols) {
    uint64_t n = 12345;
    cr_assert(bj_dtype_nbytes(t, rows, cols, &n), "%s [%llu,%llu]", bj_dtype_name(t),
              (unsigned long long)rows, (unsigned long long)cols);
    return n;
}

Test(ir_dtype, nbytes_per_layout) {
    cr_assert_eq(nbytes_of(BJ_DT_F32, 3, 5), 60);
    cr_assert_eq(nbytes_of(BJ_DT_BF16, 4096, 384), 4096 * 384 * 2);
    cr_assert_eq(nbytes_of(BJ_DT_F16, 1, 7), 14);
    cr_assert_eq(nbytes_of(BJ_DT_I8, 3, 5), 15);
    cr_assert_eq(nbytes_of(BJ_DT_U8, 3, 5), 15);
    cr_assert_eq(nbytes_of(BJ_DT_I32, 1, 9), 36);
    cr_assert_eq(nbytes_of(BJ_DT_T8, 2, 3), 6);
    cr_assert_eq(nbytes_of(BJ_DT_B8, 2, 3), 6);
    /* t2: ceil(K/4) bytes per row */
    cr_assert_eq(nbytes_of(BJ_DT_T2, 3, 5), 6);
    cr_assert_eq(nbytes_of(BJ_DT_T2, 1, 4), 1);
    cr_assert_eq(nbytes_of(BJ_DT_T2, 384, 384), 384 * 96);
    /* t2hf: u8[ceil(N/4)][K] */
    cr_assert_eq(nbytes_of(BJ_DT_T2HF, 4, 3), 3);
    cr_assert_eq(nbytes_of(BJ_DT_T2HF, 5, 3), 6);
    cr_assert_eq(nbytes_of(BJ_DT_T2HF, 128, 384), 32 * 384);
    /* q8row: K int8 + one f32 scale per row */
    cr_assert_eq(nbytes_of(BJ_DT_Q8ROW, 2, 10), 28);
    cr_assert_eq(nbytes_of(BJ_DT_F32, 0, 10), 0);
    cr_assert_eq(nbytes_of(BJ_DT_T2, 10, 0), 0);
}

Test(ir_dtype, nbytes_overflow) {
    uint64_t n;
    cr_assert_not(bj_dtype_nbytes(BJ_DT_F32, 1ull << 62, 4, &n));          /* rows * row bytes */
    cr_assert_not(bj_dtype_nbytes(BJ_DT_F32, 1, 1ull << 60, &n));          /* cols * bits */
    cr_assert_not(bj_dtype_nbytes(BJ_DT_Q8ROW, 1, UINT64_MAX - 3, &n));    /* cols + 4 */
    cr_assert_not(bj_dtype_nbytes(BJ_DT_Q8ROW, 1ull << 33, 1ull << 31, &n));
    cr_assert_not(bj_dtype_nbytes(BJ_DT_T2, UINT64_MAX, 8, &n));
    cr_assert_not(bj_dtype_nbytes(BJ_DT_T2HF, UINT64_MAX, 5, &n));
    cr_assert_not(bj_dtype_nbytes(BJ_DT_I8, UINT64_MAX, 2, &n));
    cr_assert_not(bj_dtype_nbytes(BJ_DT_COUNT, 1, 1, &n));
    /* Right at the edge still works. */
    cr_assert_eq(nbytes_of(BJ_DT_F32, 1, 1ull << 58), 1ull << 60);
    cr_assert_eq(nbytes_of(BJ_DT_T2HF, UINT64_MAX, 1), (UINT64_MAX >> 2) + 1);
    cr_assert_eq(nbytes_of(BJ_DT_I8, UINT64_MAX, 1), UINT64_MAX);
    cr_assert_eq(nbytes_of(BJ_DT_Q8ROW, 1, UINT64_MAX - 4), UINT64_MAX);
}

Test(ir_ops, table_matches_def) {
    const bj_op_info *rope = bj_op_get(BJ_OP_ROPE);
    cr_assert_str_eq(rope->name, "rope");
    cr_assert_eq(rope->nin, 1);
    cr_assert_eq(rope->n_iattr, 2);
    cr_assert_str_eq(rope->iattr[0], "n_head");
    cr_assert_str_eq(rope->iattr[1], "head_dim");
    cr_assert_eq(rope->n_fattr, 1);
    cr_assert_str_eq(rope->fattr[0], "theta");

    const bj_op_info *att = bj_op_get(BJ_OP_ATTENTION);
    const char *want[] = { "layer", "n_head", "n_kv", "head_dim" };
    cr_assert_eq(att->nin, 3);
    cr_assert_eq(att->n_iattr, 4);
    cr_assert_eq(att->n_fattr, 0);
    for (int i = 0; i < 4; i++) cr_assert_str_eq(att->iattr[i], want[i]);

    const bj_op_info *w = bj_op_get(BJ_OP_WEIGHT);
    cr_assert_eq(w->nin, 0);
    cr_assert_eq(w->n_iattr, 0);
    cr_assert_eq(w->n_fattr, 1);
    cr_assert_str_eq(w->fattr[0], "scale");
    cr_assert_eq(bj_op_get(BJ_OP_ADD)->n_iattr + bj_op_get(BJ_OP_ADD)->n_fattr, 0);
    cr_assert_str_eq(bj_op_get(BJ_OP_WEIGHT_QUANT)->iattr[0], "mode");
    cr_assert_null(bj_op_get(BJ_OP_COUNT));
    cr_assert_null(bj_op_get((bj_op)-1));
}

Test(ir_ops, names_unique_and_round_trip) {
    for (int op = 0; op < BJ_OP_COUNT; op++) {
        const bj_op_info *o = bj_op_get((bj_op)op);
        cr_assert_not_null(o);
        cr_assert(o->doc && *o->doc);
        bj_op back = BJ_OP_COUNT;
        cr_assert(bj_op_from_name(o->name, strlen(o->name), &back), "%s", o->name);
        cr_assert_eq((int)back, op, "%s", o->name);
        for (int other = 0; other < op; other++)
            cr_assert_str_neq(o->name, bj_op_get((bj_op)other)->name);
    }
    bj_op op;
    cr_assert_not(bj_op_from_name("matmul", 6, &op));
    cr_assert_not(bj_op_from_name("matmul_tx", 9, &op));
    cr_assert(bj_op_from_name("matmul_tx", 8, &op));
    cr_assert_eq(op, BJ_OP_MATMUL_T);
}

Test(ir_shape, type_str_and_eq) {
    char buf[BJ_TYPE_STR_MAX];
    cr_assert_str_eq(bj_ir_type_str(BJ_DT_F32, bj_shape2(BJ_DIM_T, 384), buf, sizeof buf), "f32[T,384]");
    cr_assert_str_eq(bj_ir_type_str(BJ_DT_I32, bj_shape1(BJ_DIM_T), buf, sizeof buf), "i32[T]");
    cr_assert_str_eq(bj_ir_type_str(BJ_DT_T2HF, bj_shape2(128, 384), buf, sizeof buf), "t2hf[128,384]");
    bj_shape big = { 4, { INT64_MIN, INT64_MIN, INT64_MIN, INT64_MIN } };
    bj_ir_type_str(BJ_DT_Q8ROW, big, buf, sizeof buf); /* widest possible: must fit */
    cr_assert_eq(buf[strlen(buf) - 1], ']', "%s", buf);
    char tiny[6];
    cr_assert_str_eq(bj_ir_type_str(BJ_DT_F32, bj_shape2(BJ_DIM_T, 384), tiny, sizeof tiny), "f32[T");

    bj_shape a = bj_shape2(BJ_DIM_T, 8), b = a;
    b.d[3] = 99; /* unused dims do not count */
    cr_assert(bj_shape_eq(a, b));
    b.d[1] = 9;
    cr_assert_not(bj_shape_eq(a, b));
    cr_assert_not(bj_shape_eq(bj_shape1(8), bj_shape2(8, 1)));
    bj_shape bad = { BJ_MAX_DIMS + 1, { 0 } };
    cr_assert_not(bj_shape_eq(bad, bad));
    cr_assert_eq(bj_shape_cols(a), 8);
}

/* bj_text_append (ir/support.c): grows past its first capacity, stays NUL-terminated, keeps NUL
 * bytes inside the text. */
Test(ir_support, text_append_grows) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    cr_assert(bj_text_append(&buf, &len, &cap, "", 0, 4));
    cr_assert_str_eq(buf, "");
    char want[1001];
    for (int i = 0; i < 100; i++) {
        cr_assert(bj_text_append(&buf, &len, &cap, "0123456789", 10, 4));
        memcpy(want + 10 * i, "0123456789", 10);
    }
    want[1000] = 0;
    cr_assert_eq(len, 1000u);
    cr_assert_geq(cap, 1001u);
    cr_assert_str_eq(buf, want);
    cr_assert(bj_text_append(&buf, &len, &cap, "a\0b", 3, 4));
    cr_assert_eq(len, 1003u);
    cr_assert(!memcmp(buf + 1000, "a\0b", 4));
    free(buf);
}
