/* tests/unit/test_cg_bin1.c -- the binary kernel's descriptor, layout and code paths (issue
 * 10; its results are checked bit-exactly in test_cg_kernels.c): bin1 is what AUTO picks
 * for binary weights, it refuses ternary ones, its cache key differs from a ternary
 * kernel's of the same shape, its packing round-trips at half of dot2's bytes, and every ISA
 * path compiles for an AVX-512 VNNI CPU with the instructions that make the path (compiled
 * to objects only: this host need not run them). */
#include "codegen/codegen.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static bj_cg_target detect(const char *mcpu, const char *mattr) {
    bj_cg_target t;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, mcpu, mattr, &err), BJ_OK, "%s", err.msg);
    return t;
}

static void random_signs(int8_t *w, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (seed >> 33) & 1 ? 1 : -1;
    }
}

Test(cg_bin1, descriptor_rules) {
    bj_cg_target t = detect("x86-64-v3", NULL);
    bj_cg_kdesc b, d;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_kdesc_init(&b, &t, BJ_CG_V_AUTO, BJ_CG_ISA_AUTO, BJ_CG_W_BINARY, 2560, 6912, NULL, &err), BJ_OK);
    cr_expect_eq(b.variant, BJ_CG_V_BIN1, "AUTO picks bin1 for binary weights");
    cr_expect_str_eq(bj_cg_variant_name(BJ_CG_V_BIN1), "bin1");
    cr_expect_eq(bj_cg_pick_variant_for(&t, BJ_CG_W_BINARY, 64, 64, 64, true), BJ_CG_V_BIN1);
    cr_expect_eq(bj_cg_pick_variant_for(&t, BJ_CG_W_TERNARY, 2560, 2560, 1, true), BJ_CG_V_DOT2);
    cr_assert_eq(bj_cg_kdesc_init(&d, &t, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, BJ_CG_W_BINARY, 2560, 6912, NULL, &err), BJ_OK);
    cr_expect_eq(bj_cg_packed_size(&b) * 2, bj_cg_packed_size(&d), "1 bit vs 2 bits a weight");
    cr_expect_eq(bj_cg_packed_size(&b), 2560ull * 6912 / 8);
    cr_expect_eq(bj_cg_row_block(&b), 16);
    char sb[32], sd[32];
    bj_cg_kernel_symbol(&b, sb, sizeof sb);
    bj_cg_kernel_symbol(&d, sd, sizeof sd);
    cr_expect_str_neq(sb, sd, "the cache key (descriptor bytes) tells bin1 from dot2");
    cr_expect_eq(bj_cg_kdesc_init(&d, &t, BJ_CG_V_BIN1, BJ_CG_ISA_AUTO, BJ_CG_W_TERNARY, 64, 64, NULL, &err), BJ_E_INVALID);
    cr_expect(strstr(err.msg, "bin1 (binary) cannot run ternary weights"), "%s", err.msg);
}

/* Odd sizes: M 21 (two row blocks, the second partial), K 77 (three 32-k groups, the last
 * partial, padded to 128); pack then unpack gives the weights back, padding bits are 0. */
Test(cg_bin1, pack_round_trip) {
    bj_cg_target t = detect("x86-64", NULL);
    bj_cg_kdesc d;
    bj_error err = { 0 };
    int8_t w[21 * 77], back[21 * 77];
    random_signs(w, sizeof w, 5);
    cr_assert_eq(bj_cg_kdesc_init(&d, &t, BJ_CG_V_BIN1, BJ_CG_ISA_AUTO, BJ_CG_W_BINARY, 21, 77, NULL, &err), BJ_OK);
    uint64_t size = bj_cg_packed_size(&d);
    cr_assert_eq(size, 32u * 128 / 8);
    uint8_t *p = malloc(size);
    cr_assert_eq(bj_cg_pack(&d, w, p, &err), BJ_OK, "%s", err.msg);
    bj_cg_unpack(&d, p, back);
    cr_expect_arr_eq(back, w, sizeof w);
    /* row 0's byte 0 of group 0: bit s is w[0][4s] */
    unsigned want = 0;
    for (unsigned s = 0; s < 8; s++) want |= (unsigned)(w[4 * s] > 0) << s;
    cr_expect_eq(p[0], want);
    /* rows 21..31 are padding: all bits 0 */
    for (uint64_t g = 0; g < 4; g++)
        for (int r = 21 - 16; r < 16; r++)
            for (int i = 0; i < 4; i++) cr_expect_eq(p[(1 * 4 + g) * 64 + 4 * r + i], 0);
    w[3] = 0;
    cr_expect_eq(bj_cg_pack(&d, w, p, &err), BJ_E_INVALID, "a zero is not binary");
    free(p);
}

Test(cg_bin1, every_path_for_an_avx512_cpu, .timeout = 300) {
    bj_cg_target t = detect("x86-64-v4", "+avx512vnni,+avxvnni");
    static const struct { int isa; const char *must; } paths[] = {
        { BJ_CG_ISA_AVX512VNNI, "vpdpbusd\t%zmm" }, { BJ_CG_ISA_AVX512, "vpmaddubsw\t%zmm" },
        { BJ_CG_ISA_AVXVNNI, "vpdpbusd\t%ymm" },    { BJ_CG_ISA_AVX2, "vpmaddubsw\t%ymm" },
        { BJ_CG_ISA_GENERIC, "pmullw" },
    };
    static const uint32_t shapes[][2] = { { 1, 1 }, { 17, 1001 }, { 2560, 6912 } };
    for (size_t i = 0; i < BJ_COUNTOF(paths); i++)
        for (size_t j = 0; j < BJ_COUNTOF(shapes); j++) {
            bj_cg_kdesc d;
            bj_error err = { 0 };
            bj_cg_object o;
            char *asm_text = NULL;
            cr_assert_eq(bj_cg_kdesc_init(&d, &t, BJ_CG_V_BIN1, (bj_cg_isa)paths[i].isa, BJ_CG_W_BINARY, shapes[j][0],
                                          shapes[j][1], NULL, &err), BJ_OK, "%s", err.msg);
            cr_assert_eq(bj_cg_compile(&t, &d, NULL, &o, NULL, &err), BJ_OK, "%s", err.msg);
            cr_expect_gt(o.size, 0u);
            bj_cg_object_free(&o);
            cr_assert_eq(bj_cg_compile_text(&t, &d, NULL, BJ_CG_EMIT_ASM, &asm_text, &err), BJ_OK, "%s", err.msg);
            cr_expect(strstr(asm_text, paths[i].must) != NULL, "bin1/%s %ux%u: no '%s' in the assembly",
                      bj_cg_isa_name((bj_cg_isa)paths[i].isa), shapes[j][0], shapes[j][1], paths[i].must);
            free(asm_text);
        }
}
