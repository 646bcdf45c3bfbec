/* tests/unit/test_cg_target.c -- target detection and overrides, the host check, kernel
 * descriptors (size, zero padding, validation, cost rule), packing round trips and bad
 * weights, and compile-only checks that every ISA path generates, passes the verifier and
 * emits the instructions it is meant to (vpdpbusd, pmaddubsw, k-register masks) for a CPU
 * this machine may not have: `x86-64-v4 +avx512vnni,+avxvnni`. Running those paths is
 * test_cg_kernels' job on a host that has them. */
#include "codegen/codegen.h"
#include "tests/support/cg_families.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_next(uint64_t *s);

static bj_cg_target detect(const char *mcpu, const char *mattr) {
    bj_cg_target t;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, mcpu, mattr, &err), BJ_OK, "%s", err.msg);
    return t;
}

/* A CPU by its cg_cpus.def entry even when it is the host's name. */
static bj_cg_target named(const char *mcpu, const char *mattr) {
    bj_cg_target t;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_named(&t, mcpu, mattr, &err), BJ_OK, "%s", err.msg);
    return t;
}

Test(cg_target, host) {
    bj_cg_target t = detect(NULL, NULL);
    bj_error err = { 0 };
    char info[2048];
    cr_expect(t.is_host && t.features_known);
    cr_expect(t.cpu[0] && t.features[0]);
    cr_expect(t.flags & BJ_CG_F_SSE2);
    cr_expect_eq(bj_cg_target_check_host(&t, &err), BJ_OK, "%s", err.msg);
    bj_cg_target_describe(&t, info, sizeof info);
    cr_expect(strstr(info, "cpu: ") && strstr(info, "LLVM: "), "%s", info);
    fprintf(stderr, "%s", info);
}

Test(cg_target, x86_64_is_the_sse2_baseline) {
    bj_cg_target t = detect("x86-64", NULL);
    bj_error err = { 0 };
    cr_expect_str_eq(t.cpu, "x86-64");
    cr_expect_str_eq(t.features, "");
    cr_expect_eq(t.flags, BJ_CG_F_SSE2);
    cr_expect(!t.is_host && t.features_known);
    cr_expect_eq(bj_cg_best_isa(&t), BJ_CG_ISA_GENERIC);
    cr_expect_eq(bj_cg_target_check_host(&t, &err), BJ_OK, "%s", err.msg);
}

Test(cg_target, isa_levels_and_mattr) {
    bj_cg_target v3 = detect("x86-64-v3", NULL), v4 = detect("x86-64-v4", "+avx512vnni,+avxvnni");
    cr_expect_eq(bj_cg_best_isa(&v3), BJ_CG_ISA_AVX2);
    cr_expect_eq(bj_cg_best_isa(&v4), BJ_CG_ISA_AVX512VNNI);
    cr_expect_str_eq(v4.features, "+avx512vnni,+avxvnni");
    cr_expect(bj_cg_isa_supported(&v4, BJ_CG_ISA_AVXVNNI));
    /* Turning a feature off turns off what depends on it, as LLVM does. */
    bj_cg_target no2 = detect("x86-64-v4", "+avx512vnni,-avx2");
    cr_expect_eq(no2.flags & (BJ_CG_F_AVX2 | BJ_CG_F_AVX512F | BJ_CG_F_AVX512VNNI | BJ_CG_F_V512), 0u);
    cr_expect_eq(bj_cg_best_isa(&no2), BJ_CG_ISA_GENERIC);
    /* Turning a feature on turns on what it implies, as LLVM does: AVX-512 VNNI on the baseline
     * brings AVX-512F, AVX2, FMA and below (not BW). */
    bj_cg_target lone = detect("x86-64", "+avx512vnni");
    cr_expect_eq(lone.flags & (BJ_CG_F_AVX512VNNI | BJ_CG_F_AVX512F | BJ_CG_F_AVX2 | BJ_CG_F_FMA | BJ_CG_F_SSE41),
                 BJ_CG_F_AVX512VNNI | BJ_CG_F_AVX512F | BJ_CG_F_AVX2 | BJ_CG_F_FMA | BJ_CG_F_SSE41);
    cr_expect_eq(lone.flags & BJ_CG_F_AVX512BW, 0u);
    bj_cg_target no512 = detect("x86-64-v4", "-evex512");
    cr_expect_eq(no512.flags & BJ_CG_F_V512, 0u);
    cr_expect_eq(bj_cg_best_isa(&no512), BJ_CG_ISA_AVX2);
}

/* A named CPU gets the features of cg_cpus.def, unless it is the host's own name: then the
 * host's features (the host may lack or add some). Which case a name falls in depends on the CPU
 * this runs on (znver5 on a Zen 5, sapphirerapids on a Sapphire Rapids), so each is checked as
 * what it is here; bj_cg_target_named gives the table's reading on every host. */
Test(cg_target, named_cpus_get_their_features) {
    bj_cg_target host = detect(NULL, NULL);
    bj_error err = { 0 };
    const char *names[] = { "znver5", "sapphirerapids", "znver3", "haswell", "icelake-server", "skylake-avx512" };
    for (size_t i = 0; i < BJ_COUNTOF(names); i++) {
        bj_cg_target t = detect(names[i], NULL), n = named(names[i], NULL);
        cr_expect_str_eq(n.cpu, names[i]);
        cr_expect(!n.is_host && n.features_known, "%s", names[i]);
        cr_expect_str_eq(n.features, "", "%s: LLVM uses the CPU's own defaults", names[i]);
        cr_expect(n.flags & BJ_CG_F_V512 ? i != 2 && i != 3 : i == 2 || i == 3, "%s", names[i]);
        cr_expect_eq(bj_cg_best_isa(&n), i < 2 || i == 4 ? BJ_CG_ISA_AVX512VNNI : i == 5 ? BJ_CG_ISA_AVX512 : BJ_CG_ISA_AVX2,
                     "%s", names[i]);
        if (!strcmp(names[i], host.cpu)) { /* the host's own name: the host's features */
            cr_expect(t.is_host && t.features_known, "%s", names[i]);
            cr_expect_eq(t.flags, host.flags, "%s", names[i]);
        } else {
            cr_expect(!t.is_host && t.features_known, "%s", names[i]);
            cr_expect_str_eq(t.features, n.features, "%s", names[i]);
            cr_expect_eq(t.flags, n.flags, "%s", names[i]);
        }
    }
    bj_cg_target z3 = named("znver3", NULL), z5 = named("znver5", NULL);
    cr_expect_eq(z3.flags & BJ_CG_F_AVX512F, 0u);
    /* The host check agrees with the flags: znver5's code runs here exactly when the host has
     * every feature of it that bitjit uses. */
    bool has_all = (z5.flags & host.flags) == z5.flags;
    cr_expect_eq(bj_cg_target_check_host(&z5, &err) == BJ_OK, has_all, "%s", err.msg);
    if (!(host.flags & BJ_CG_F_AVX512F)) cr_expect(strstr(err.msg, "avx512f") != NULL, "%s", err.msg);
    bj_cg_target same = detect(host.cpu, NULL); /* the host's own name: the host's features */
    cr_expect(same.is_host && same.features_known);
    cr_expect_eq(same.flags, host.flags);
}

/* --mattr as LLVM reads it (issue 23): a bare name is +NAME (LLVM alone reads "avx2" as "-avx2"
 * and aborted on the AVX-512 code bitjit then generated); "-a" also turns off every feature
 * that implies a; unknown names, the x86-64 baseline turned off and modes are errors. */
Test(cg_target, mattr_reads_as_llvm) {
    bj_cg_target bare = named("x86-64", "avx2"), plus = named("x86-64", "+avx2");
    cr_expect_str_eq(bare.features, "+avx2");
    cr_expect_eq(bare.flags, plus.flags);
    cr_expect(bare.flags & BJ_CG_F_AVX && bare.flags & BJ_CG_F_SSE41);
    bj_cg_target mixed = named("x86-64-v3", "avx512vnni,,-fma,");
    cr_expect_str_eq(mixed.features, "+avx512vnni,-fma");
    /* -fma takes avx512f (which implies it) and so avx512vnni with it */
    cr_expect_eq(mixed.flags & (BJ_CG_F_FMA | BJ_CG_F_AVX512F | BJ_CG_F_AVX512VNNI), 0u);
    cr_expect(mixed.flags & BJ_CG_F_AVX2);
    /* sse4.2 is no flag of bitjit's, but avx and all above it need it */
    bj_cg_target s42 = named("x86-64-v4", "-sse4.2");
    cr_expect_eq(s42.flags & (BJ_CG_F_AVX | BJ_CG_F_AVX2 | BJ_CG_F_AVX512F | BJ_CG_F_V512), 0u);
    cr_expect(s42.flags & BJ_CG_F_SSE41);
    cr_expect_eq(bj_cg_best_isa(&s42), BJ_CG_ISA_GENERIC);
    bj_cg_target nobw = named("icelake-server", "+avx512vnni,-avx512bw");
    cr_expect(nobw.flags & BJ_CG_F_AVX512VNNI);
    cr_expect_eq(nobw.flags & (BJ_CG_F_AVX512BW | BJ_CG_F_AVX512VBMI), 0u);
    static const struct { const char *mattr, *says; } bad[] = {
        { "+nonsense", "unknown CPU feature '+nonsense'" }, { "AVX2", "unknown CPU feature 'AVX2'" },
        { "+", "unknown CPU feature '+'" }, { "+avx2 ", "unknown CPU feature '+avx2 '" },
        { "-sse2", "'sse2' cannot be turned off" }, { "-x87", "'x87' cannot be turned off" },
        { "+soft-float", "'soft-float' is a mode" }, { "-64bit-mode", "'64bit-mode' is a mode" },
    };
    for (size_t i = 0; i < BJ_COUNTOF(bad); i++) {
        bj_cg_target t;
        bj_error err = { 0 };
        cr_expect_eq(bj_cg_target_detect(&t, NULL, bad[i].mattr, &err), BJ_E_INVALID, "%s", bad[i].mattr);
        cr_expect(strstr(err.msg, bad[i].says) != NULL, "%s: %s", bad[i].mattr, err.msg);
    }
    cr_expect_gt(bj_cg_feature_count(), 100u);
    cr_expect_null(bj_cg_feature_name(bj_cg_feature_count()));
}

/* What made LLVM abort (issue 23), and their neighbours, on the host and on named CPUs: each one
 * accepted must give code for every kernel family (an abort ends the test as a crash). */
Test(cg_target, mattr_strings_that_aborted_llvm_compile, .timeout = 600) {
    const char *cpus[] = { NULL, "icelake-server", "znver3", "x86-64" };
    const char *mattrs[] = { "avx2", "avx512vnni", "-sse4.2", "+soft-float", "+avx512vnni,-avx512bw", "-avx2",
                             "+avx512f", "-avx512vl", "-f16c" };
    for (size_t c = 0; c < BJ_COUNTOF(cpus); c++)
        for (size_t m = 0; m < BJ_COUNTOF(mattrs); m++) {
            bj_cg_target t;
            bj_error err = { 0 };
            if (bj_cg_target_named(&t, cpus[c], mattrs[m], &err) != BJ_OK) {
                cr_expect(strstr(err.msg, "soft-float") != NULL, "%s %s: %s", cpus[c], mattrs[m], err.msg);
                continue;
            }
            cr_expect_eq(bj_test_compile_families(&t, &err), BJ_OK, "%s %s: %s", cpus[c] ? cpus[c] : "host",
                         mattrs[m], err.msg);
        }
}

/* The committed feature table is what clang and llc say today (skipped when they are absent). */
Test(cg_target, feature_table_matches_llvm, .timeout = 300) {
    if (system("command -v clang-19 >/dev/null 2>&1 && command -v llc-19 >/dev/null 2>&1") != 0) {
        cr_skip_test("clang-19 or llc-19 not installed");
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s/scripts/gen-feature-table.sh clang-19 llc-19 %s/cg_feats.def >/dev/null && "
             "diff -u %s/codegen/cg_feats.def %s/cg_feats.def >&2",
             BJ_SOURCE_DIR, BJ_TEST_TMP, BJ_SOURCE_DIR, BJ_TEST_TMP);
    cr_expect_eq(system(cmd), 0, "codegen/cg_feats.def differs from LLVM 19's features: run scripts/gen-feature-table.sh");
}

Test(cg_target, unknown_cpu_is_an_error) {
    bj_cg_target t;
    bj_error err = { 0 };
    cr_expect_eq(bj_cg_target_detect(&t, "bj-unknown-cpu", NULL, &err), BJ_E_INVALID);
    cr_expect(strstr(err.msg, "unknown CPU 'bj-unknown-cpu'") != NULL, "%s", err.msg);
    cr_expect_gt(bj_cg_cpu_count(), 60u);
    cr_expect_null(bj_cg_cpu_name(bj_cg_cpu_count()));
}

/* The committed table is what clang says today (skipped when clang-19 is absent). */
Test(cg_target, cpu_table_matches_clang) {
    if (system("command -v clang-19 >/dev/null 2>&1") != 0) { cr_skip_test("clang-19 not installed"); }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s/scripts/gen-cpu-table.sh clang-19 %s/cg_cpus.def >/dev/null && "
             "diff -u %s/codegen/cg_cpus.def %s/cg_cpus.def >&2",
             BJ_SOURCE_DIR, BJ_TEST_TMP, BJ_SOURCE_DIR, BJ_TEST_TMP);
    cr_expect_eq(system(cmd), 0, "codegen/cg_cpus.def differs from clang-19's CPUs: run scripts/gen-cpu-table.sh");
}

/* AVX-512 turned on by --mattr on a CPU without it: LLVM 18-21 need +evex512 for 512-bit vectors
 * (bitjit adds it), and avx512bw without avx512vl is not used (LLVM 19 aborted selecting it). */
Test(cg_target, mattr_avx512_without_evex512_compiles) {
    bj_cg_target t = detect("x86-64-v3", "+avx512f,+avx512bw");
    char llvm[32];
    bj_cg_llvm_version(llvm, sizeof llvm);
    int major = atoi(llvm);
    if (major >= 18 && major <= 21) cr_expect(strstr(t.features, "+evex512") != NULL, "%s", t.features);
    cr_expect_eq(t.flags & BJ_CG_F_AVX512BW, 0u);
    int8_t w[32 * 80];
    uint64_t s = 5;
    for (size_t i = 0; i < sizeof w; i++) w[i] = (int8_t)(rng_next(&s) % 3) - 1;
    bj_cg_kdesc d;
    bj_error err = { 0 };
    bj_cg_object o;
    cr_assert_eq(bj_cg_kdesc_init(&d, &t, BJ_CG_V_AUTO, BJ_CG_ISA_AUTO, 0, 32, 80, w, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_compile(&t, &d, w, &o, NULL, &err), BJ_OK, "%s", err.msg);
    bj_cg_object_free(&o);
}

Test(cg_target, host_check_refuses_missing_features) {
    bj_cg_target host = detect(NULL, NULL);
    bj_error err = { 0 };
    /* A feature the host lists as absent ("-name"), turned on. */
    const char *p = strstr(host.features, ",-");
    cr_assert(p, "host lists no absent feature");
    char mattr[96];
    size_t n = strcspn(p + 2, ",");
    cr_assert(n + 2 < sizeof mattr);
    snprintf(mattr, sizeof mattr, "+%.*s", (int)n, p + 2);
    bj_cg_target t = detect(NULL, mattr);
    cr_expect_eq(bj_cg_target_check_host(&t, &err), BJ_E_UNSUPPORTED, "%s should be refused", mattr);
    cr_expect(strstr(err.msg, mattr + 1) != NULL, "%s", err.msg);
    if (!(host.flags & BJ_CG_F_AVX512VNNI)) {
        bj_cg_target v4 = detect("x86-64-v4", "+avx512vnni");
        cr_expect_eq(bj_cg_target_check_host(&v4, &err), BJ_E_UNSUPPORTED);
    }
}

Test(cg_kdesc, is_a_zero_padded_key) {
    bj_cg_target t = detect("x86-64-v4", "+avx512vnni");
    bj_cg_kdesc a, b;
    bj_error err = { 0 };
    char sa[32], sb[32];
    memset(&a, 0xff, sizeof a);
    cr_assert_eq(bj_cg_kdesc_init(&a, &t, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, BJ_CG_W_TERNARY, 2560, 6912, NULL, &err), BJ_OK,
                 "%s", err.msg);
    cr_expect_eq(sizeof a, 32u);
    cr_expect_eq(a.reserved[0] | a.reserved[1], 0);
    cr_expect_gt(a.prefetch, 0, "DOT2 prefetches its weight streams by default");
    bj_cg_kdesc bp;
    cr_assert_eq(bj_cg_kdesc_init(&bp, &t, BJ_CG_V_BITPLANE, BJ_CG_ISA_AUTO, BJ_CG_W_TERNARY, 64, 64, NULL, &err), BJ_OK);
    cr_expect_eq(bp.prefetch, 0);
    bp.prefetch = 1;
    cr_expect_eq(bj_cg_kdesc_check(&bp, &t, &err), BJ_E_INVALID, "only DOT2/BIN1 prefetch");
    cr_expect_eq(a.whash, 0u);
    cr_expect_eq(a.isa, BJ_CG_ISA_AVX512VNNI);
    cr_assert_eq(bj_cg_kdesc_init(&b, &t, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, BJ_CG_W_TERNARY, 6912, 2560, NULL, &err), BJ_OK);
    bj_cg_kernel_symbol(&a, sa, sizeof sa);
    bj_cg_kernel_symbol(&b, sb, sizeof sb);
    cr_expect_str_neq(sa, sb);
    cr_expect_eq(strncmp(sa, "bjk_", 4), 0);
    cr_expect_eq(strlen(sa), 20u);
}

Test(cg_kdesc, validation) {
    bj_cg_target x = detect("x86-64", NULL);
    bj_cg_kdesc d;
    bj_error err = { 0 };
    int8_t w[4] = { 1, 0, -1, 1 };
    cr_expect_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_DOT2, BJ_CG_ISA_AVX2, 0, 64, 64, NULL, &err), BJ_E_UNSUPPORTED);
    cr_expect(strstr(err.msg, "avx2") != NULL, "%s", err.msg);
    cr_expect_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, 0, 0, 64, NULL, &err), BJ_E_INVALID);
    cr_expect_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, 0, 64, BJ_CG_MAX_K + 1, NULL, &err), BJ_E_INVALID);
    cr_expect_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_WCODE, BJ_CG_ISA_AUTO, 0, 2560, 2560, w, &err), BJ_E_UNSUPPORTED);
    cr_expect_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_WCODE, BJ_CG_ISA_AUTO, 0, 2, 2, NULL, &err), BJ_E_INVALID);
    cr_assert_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_WCODE, BJ_CG_ISA_AUTO, 0, 2, 2, w, &err), BJ_OK, "%s", err.msg);
    cr_expect_neq(d.whash, 0u);
    cr_assert_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_BITPLANE, BJ_CG_ISA_AUTO, 0, 64, 64, NULL, &err), BJ_OK);
    d.tile_t = 0;
    cr_expect_eq(bj_cg_kdesc_check(&d, &x, &err), BJ_E_INVALID);
    /* The cost rule: dot2 unless weights-as-code is tiny, wanted for prefill and possible. */
    cr_expect_eq(bj_cg_pick_variant(&x, 2560, 2560, 1, true), BJ_CG_V_DOT2);
    cr_expect_eq(bj_cg_pick_variant(&x, 16, 64, 64, true), BJ_CG_V_WCODE);
    cr_expect_eq(bj_cg_pick_variant(&x, 16, 64, 64, false), BJ_CG_V_DOT2);
    bj_cg_target v3 = detect("x86-64-v3", NULL);
    cr_expect_eq(bj_cg_pick_variant(&x, 256, 256, 64, true), BJ_CG_V_WCODE); /* SSE2: dot2 is slow */
    cr_expect_eq(bj_cg_pick_variant(&v3, 256, 256, 64, true), BJ_CG_V_DOT2);
    cr_expect_eq(bj_cg_pick_variant(&v3, 256, 256, 1, true), BJ_CG_V_DOT2);
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

Test(cg_pack, round_trips_and_sizes) {
    bj_cg_target x = detect("x86-64", NULL);
    static const uint32_t ms[] = { 1, 3, 16, 17, 33 }, ks[] = { 1, 63, 64, 65, 130, 300 };
    bj_error err = { 0 };
    uint64_t s = 9;
    for (int v = BJ_CG_V_DOT2; v < BJ_CG_V_COUNT; v++)
        for (size_t i = 0; i < BJ_COUNTOF(ms); i++)
            for (size_t j = 0; j < BJ_COUNTOF(ks); j++) {
                uint32_t M = ms[i], K = ks[j];
                bj_cg_kdesc d;
                if (v == BJ_CG_V_WCODE || v == BJ_CG_V_BIN1) continue; /* no buffer; binary: its own test */
                cr_assert_eq(bj_cg_kdesc_init(&d, &x, (bj_cg_variant)v, BJ_CG_ISA_AUTO, 0, M, K, NULL, &err), BJ_OK);
                int64_t xs = bj_cg_x_stride(K);
                uint64_t want = v == BJ_CG_V_DOT2    ? (M + 15) / 16 * 16 * (uint64_t)xs / 4
                                : v == BJ_CG_V_TRIT5 ? (M + 15) / 16 * ((uint64_t)(K + 19) / 20) * 64
                                                     : M * (uint64_t)xs / 4;
                cr_expect_eq(bj_cg_packed_size(&d), want, "%s %ux%u", bj_cg_variant_name((bj_cg_variant)v), M, K);
                int8_t *t8 = malloc((size_t)M * K), *back = malloc((size_t)M * K);
                uint8_t *p = malloc(want);
                for (uint32_t k = 0; k < M * K; k++) t8[k] = (int8_t)(rng_next(&s) % 3) - 1;
                cr_assert_eq(bj_cg_pack(&d, t8, p, &err), BJ_OK, "%s", err.msg);
                bj_cg_unpack(&d, p, back);
                cr_expect_arr_eq(t8, back, (size_t)M * K, "%s %ux%u round trip", bj_cg_variant_name((bj_cg_variant)v), M, K);
                free(t8);
                free(back);
                free(p);
            }
}

Test(cg_pack, rejects_bad_weights) {
    bj_cg_target x = detect("x86-64", NULL);
    bj_cg_kdesc d;
    bj_error err = { 0 };
    int8_t w[2 * 70];
    uint8_t out[4096];
    memset(w, 1, sizeof w);
    w[70 + 5] = 2;
    cr_assert_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, BJ_CG_W_TERNARY, 2, 70, NULL, &err), BJ_OK);
    cr_expect_eq(bj_cg_pack(&d, w, out, &err), BJ_E_INVALID);
    cr_expect(strstr(err.msg, "row 1, col 5") != NULL, "%s", err.msg);
    w[70 + 5] = 0; /* a zero is not binary */
    cr_assert_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_BITPLANE, BJ_CG_ISA_AUTO, BJ_CG_W_BINARY, 2, 70, NULL, &err), BJ_OK);
    cr_expect_eq(bj_cg_pack(&d, w, out, &err), BJ_E_INVALID);
    cr_expect(strstr(err.msg, "-1 or 1") != NULL, "%s", err.msg);
}

/* Every path of the two packed variants for an AVX-512 VNNI CPU, plus weights-as-code:
 * generation, verifier, O3, object and the instructions that make each path what it is. */
Test(cg_compile, every_path_for_an_avx512_cpu, .timeout = 300) {
    bj_cg_target t = detect("x86-64-v4", "+avx512vnni,+avxvnni");
    static const struct { int v, isa; const char *must; } paths[] = {
        { BJ_CG_V_DOT2, BJ_CG_ISA_AVX512VNNI, "vpdpbusd\t%zmm" },
        { BJ_CG_V_DOT2, BJ_CG_ISA_AVX512, "vpmaddubsw\t%zmm" },
        { BJ_CG_V_DOT2, BJ_CG_ISA_AVXVNNI, "vpdpbusd\t%ymm" },
        { BJ_CG_V_DOT2, BJ_CG_ISA_AVX2, "vpmaddubsw\t%ymm" },
        { BJ_CG_V_DOT2, BJ_CG_ISA_GENERIC, "pmullw" },
        { BJ_CG_V_BITPLANE, BJ_CG_ISA_AVX512VNNI, "{%k" },
        { BJ_CG_V_BITPLANE, BJ_CG_ISA_AVX2, "vpaddw" },
        { BJ_CG_V_WCODE, BJ_CG_ISA_AVX512VNNI, "vpaddw\t" },
    };
    int8_t w[48 * 100];
    uint64_t s = 3;
    for (size_t i = 0; i < sizeof w; i++) w[i] = (int8_t)(rng_next(&s) % 3) - 1;
    for (size_t i = 0; i < BJ_COUNTOF(paths); i++) {
        bj_cg_kdesc d;
        bj_error err = { 0 };
        bj_cg_object o;
        char *asm_text = NULL;
        cr_assert_eq(bj_cg_kdesc_init(&d, &t, (bj_cg_variant)paths[i].v, (bj_cg_isa)paths[i].isa, 0, 48, 100, w, &err),
                     BJ_OK, "%s", err.msg);
        cr_assert_eq(bj_cg_compile(&t, &d, w, &o, NULL, &err), BJ_OK, "%s", err.msg);
        cr_expect_gt(o.size, 0u);
        bj_cg_object_free(&o);
        cr_assert_eq(bj_cg_compile_text(&t, &d, w, BJ_CG_EMIT_ASM, &asm_text, &err), BJ_OK, "%s", err.msg);
        cr_expect(strstr(asm_text, paths[i].must) != NULL, "%s/%s: no '%s' in the assembly",
                  bj_cg_variant_name((bj_cg_variant)paths[i].v), bj_cg_isa_name((bj_cg_isa)paths[i].isa), paths[i].must);
        free(asm_text);
    }
}

Test(cg_compile, text_forms) {
    bj_cg_target x = detect("x86-64", NULL);
    bj_cg_kdesc d;
    bj_error err = { 0 };
    char *ir = NULL, *o3 = NULL, sym[32];
    cr_assert_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, 0, 32, 64, NULL, &err), BJ_OK);
    bj_cg_kernel_symbol(&d, sym, sizeof sym);
    cr_assert_eq(bj_cg_compile_text(&x, &d, NULL, BJ_CG_EMIT_LLVM, &ir, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_compile_text(&x, &d, NULL, BJ_CG_EMIT_LLVM_O3, &o3, &err), BJ_OK, "%s", err.msg);
    cr_expect(strstr(ir, sym) && strstr(o3, sym));
    cr_expect(strstr(ir, "alloca") != NULL);
    cr_expect(strstr(ir, "\"target-cpu\"=\"x86-64\"") != NULL);
    free(ir);
    free(o3);
}

Test(cg_jit, lookup_and_duplicates) {
    bj_cg_target t = detect(NULL, NULL);
    bj_cg_kdesc d;
    bj_error err = { 0 };
    bj_cg_object o;
    bj_cg_jit *j;
    void *a;
    cr_assert_eq(bj_cg_kdesc_init(&d, &t, BJ_CG_V_BITPLANE, BJ_CG_ISA_AUTO, 0, 4, 64, NULL, &err), BJ_OK);
    cr_assert_eq(bj_cg_compile(&t, &d, NULL, &o, NULL, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_jit_create(&j, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(bj_cg_jit_lookup(j, o.sym, &a, &err), BJ_E_INVALID);
    cr_assert_eq(bj_cg_jit_add_object(j, o.data, o.size, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(bj_cg_jit_add_object(j, o.data, o.size, &err), BJ_E_INVALID);
    cr_expect_eq(bj_cg_jit_lookup(j, o.sym, &a, &err), BJ_OK, "%s", err.msg);
    cr_expect_neq(a, NULL);
    uint8_t junk[64] = { 1, 2, 3 };
    cr_expect_eq(bj_cg_jit_add_object(j, junk, sizeof junk, &err), BJ_E_FORMAT);
    bj_cg_jit_free(j);
    bj_cg_object_free(&o);
}

/* bj_cg_pack_rows over blocks of rows (what the JIT runs, a cache-sized block at a time) writes
 * the same bytes as bj_cg_pack over the whole matrix, padding included (the output starts as
 * garbage), and refuses ranges that are not whole row blocks. */
Test(cg_pack, by_row_blocks_equals_whole) {
    bj_cg_target x = detect("x86-64", NULL);
    static const uint32_t ms[] = { 1, 16, 17, 40, 64 }, ks[] = { 1, 16, 63, 64, 100, 2560 };
    bj_error err = { 0 };
    uint64_t s = 11;
    for (int v = BJ_CG_V_DOT2; v < BJ_CG_V_COUNT; v++)
        for (size_t i = 0; i < BJ_COUNTOF(ms); i++)
            for (size_t j = 0; j < BJ_COUNTOF(ks); j++) {
                uint32_t M = ms[i], K = ks[j];
                bj_cg_kdesc d;
                bj_cg_wtype wt = v == BJ_CG_V_BIN1 ? BJ_CG_W_BINARY : BJ_CG_W_TERNARY;
                if (v == BJ_CG_V_WCODE) continue;
                cr_assert_eq(bj_cg_kdesc_init(&d, &x, (bj_cg_variant)v, BJ_CG_ISA_AUTO, wt, M, K, NULL, &err), BJ_OK, "%s", err.msg);
                uint64_t size = bj_cg_packed_size(&d), rb = (uint64_t)bj_cg_row_block(&d);
                int8_t *t8 = malloc((size_t)M * K);
                uint8_t *whole = malloc(size), *blocks = malloc(size);
                for (uint32_t k = 0; k < M * K; k++)
                    t8[k] = wt == BJ_CG_W_BINARY ? (rng_next(&s) & 1 ? 1 : -1) : (int8_t)(rng_next(&s) % 3) - 1;
                cr_assert_eq(bj_cg_pack(&d, t8, whole, &err), BJ_OK, "%s", err.msg);
                for (uint64_t step = rb; step <= 2 * rb; step += rb) {
                    memset(blocks, 0xa7, size);
                    for (uint64_t r0 = 0; r0 < M; r0 += step) {
                        uint64_t r1 = r0 + step < M ? r0 + step : M;
                        cr_assert_eq(bj_cg_pack_rows(&d, t8 + r0 * K, r0, r1, blocks, &err), BJ_OK, "%s", err.msg);
                    }
                    cr_expect_arr_eq(blocks, whole, size, "%s %ux%u in blocks of %llu rows",
                                     bj_cg_variant_name((bj_cg_variant)v), M, K, (unsigned long long)step);
                }
                if (rb > 1 && M > 1) cr_expect_eq(bj_cg_pack_rows(&d, t8, 1, M, blocks, &err), BJ_E_INVALID);
                cr_expect_eq(bj_cg_pack_rows(&d, t8, 0, M + 1, blocks, &err), BJ_E_INVALID);
                free(t8);
                free(whole);
                free(blocks);
            }
}

/* TRIT5's bytes as codegen.h states the layout, computed here from the rule (not by the
 * packer): row 16b + r, k = 20g + 4s + i is code c_s of byte 4r + i of group g, byte =
 * ceil(v * 256 / 243) ^ 0x80 with v = sum_s c_s 3^(4-s), padding code 1. The 3^5 = 243 code
 * combinations all occur (rows x groups x byte positions), and each decodes back to its codes
 * by TQ1_0's rule, the kernel's: c_s = (3 * (q * 3^s mod 256)) >> 8. */
Test(cg_pack, trit5_bytes_follow_the_layout) {
    bj_cg_target x = detect("x86-64", NULL);
    const uint32_t M = 20, K = 4 * 20 * 4 + 7; /* 17 groups, the last with 7 k: two slots */
    bj_cg_kdesc d;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_TRIT5, BJ_CG_ISA_AUTO, BJ_CG_W_TERNARY, M, K, NULL, &err), BJ_OK, "%s", err.msg);
    uint32_t G = (K + 19) / 20;
    cr_assert_eq(bj_cg_packed_size(&d), 2 * G * 64);
    int8_t *t8 = malloc((size_t)M * K);
    uint8_t *p = malloc(bj_cg_packed_size(&d));
    bool seen[243] = { false };
    for (uint32_t m = 0; m < M; m++)
        for (uint32_t g = 0; g < G; g++)
            for (uint32_t i = 0; i < 4; i++) {
                uint32_t v = (m * 4 * G + g * 4 + i) * 7 % 243; /* 7 is prime to 243: every v */
                for (uint32_t s = 0, pw = 81; s < 5; s++, pw /= 3) {
                    uint32_t k = 20 * g + 4 * s + i;
                    if (k < K) t8[m * K + k] = (int8_t)((v / pw) % 3) - 1;
                }
            }
    cr_assert_eq(bj_cg_pack(&d, t8, p, &err), BJ_OK, "%s", err.msg);
    for (uint32_t m = 0; m < 32; m++)
        for (uint32_t g = 0; g < G; g++)
            for (uint32_t i = 0; i < 4; i++) {
                uint32_t v = 0, c[5];
                for (uint32_t s = 0; s < 5; s++) {
                    uint32_t k = 20 * g + 4 * s + i;
                    c[s] = m < M && k < K ? (uint32_t)(t8[m * K + k] + 1) : 1;
                    v = 3 * v + c[s];
                }
                if (m < M && 20 * g + 16 + i < K) seen[v] = true;
                uint8_t want = (uint8_t)((v * 256 + 242) / 243) ^ 0x80, got = p[((m / 16) * G + g) * 64 + 4 * (m % 16) + i];
                cr_expect_eq(got, want, "row %u group %u byte %u: %u, expected %u", m, g, i, got, want);
                for (uint32_t s = 0, q = (uint32_t)(got ^ 0x80); s < 5; s++, q = q * 3 % 256)
                    cr_expect_eq((q * 3) >> 8, c[s], "row %u group %u byte %u slot %u decodes to %u, code %u", m, g, i, s,
                                 (q * 3) >> 8, c[s]);
            }
    for (uint32_t v = 0; v < 243; v++) cr_expect(seen[v], "code combination %u not covered", v);
    free(t8);
    free(p);
}

Test(cg_pack, rows_name_a_bad_weight_by_its_row) {
    bj_cg_target x = detect("x86-64", NULL);
    bj_cg_kdesc d;
    bj_error err = { 0 };
    int8_t w[16 * 70];
    uint8_t out[64 * 1024];
    memset(w, 0, sizeof w);
    w[3 * 70 + 5] = -2; /* row 16 + 3 of the matrix */
    cr_assert_eq(bj_cg_kdesc_init(&d, &x, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, BJ_CG_W_TERNARY, 40, 70, NULL, &err), BJ_OK);
    cr_expect_eq(bj_cg_pack_rows(&d, w, 16, 32, out, &err), BJ_E_INVALID);
    cr_expect(strstr(err.msg, "row 19, col 5") != NULL, "%s", err.msg);
}

/* The AMX path (cg_kernel_amx.c) for a named Sapphire Rapids: only DOT2 prefill gets it, never
 * the best path; its code has the tile instructions, the configuration LLVM writes and the
 * AVX-512 VNNI edge kernel. Shapes whose K is and is not a multiple of the 8-chunk panel. */
Test(cg_compile, amx_path_for_sapphirerapids, .timeout = 300) {
    bj_cg_target spr = named("sapphirerapids", NULL), z5 = named("znver5", NULL);
    bj_error err = { 0 };
    bj_cg_kdesc d, pp;
    cr_expect(bj_cg_isa_supported(&spr, BJ_CG_ISA_AMX));
    cr_expect(!bj_cg_isa_supported(&z5, BJ_CG_ISA_AMX));
    cr_expect_eq(bj_cg_best_isa(&spr), BJ_CG_ISA_AVX512VNNI);
    char info[2048];
    bj_cg_target_describe(&spr, info, sizeof info);
    cr_expect(strstr(info, "dot2 prefill on amx") != NULL, "%s", info);
    bj_cg_target_describe(&z5, info, sizeof info);
    cr_expect(strstr(info, "amx") == NULL, "%s", info);
    cr_expect_eq(bj_cg_kdesc_init(&d, &z5, BJ_CG_V_DOT2, BJ_CG_ISA_AMX, 0, 64, 64, NULL, &err), BJ_E_UNSUPPORTED);
    cr_expect_eq(bj_cg_kdesc_init(&d, &spr, BJ_CG_V_TRIT5, BJ_CG_ISA_AMX, 0, 64, 64, NULL, &err), BJ_E_INVALID);
    cr_expect(strstr(err.msg, "amx runs dot2 only") != NULL, "%s", err.msg);
    /* Prefill default: DOT2 -> AMX on Sapphire Rapids, the VNNI tiles on Zen 5, trit5 untouched. */
    cr_assert_eq(bj_cg_kdesc_init(&pp, &spr, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, 0, 2560, 6912, NULL, &err), BJ_OK, "%s", err.msg);
    cr_expect(bj_cg_kdesc_prefill_default(&pp, &spr));
    cr_expect(pp.isa == BJ_CG_ISA_AMX && pp.tile_m == 2 && pp.tile_t == 32 && pp.unroll == 32 && pp.prefetch == 1);
    cr_expect_eq(bj_cg_kdesc_check(&pp, &spr, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(bj_cg_kdesc_check(&pp, &z5, &err), BJ_E_UNSUPPORTED);
    bj_cg_kdesc v = pp;
    v.tile_t = 8;
    cr_expect_eq(bj_cg_kdesc_check(&v, &spr, &err), BJ_E_INVALID);
    cr_assert_eq(bj_cg_kdesc_init(&v, &z5, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, 0, 2560, 6912, NULL, &err), BJ_OK);
    cr_expect(bj_cg_kdesc_prefill_default(&v, &z5) && v.isa == BJ_CG_ISA_AVX512VNNI && v.tile_t == 8);
    cr_assert_eq(bj_cg_kdesc_init(&v, &spr, BJ_CG_V_TRIT5, BJ_CG_ISA_AUTO, 0, 64, 64, NULL, &err), BJ_OK);
    bj_cg_kdesc_prefill_default(&v, &spr);
    cr_expect_neq(v.isa, BJ_CG_ISA_AMX);
    static const uint32_t shapes[][3] = { { 48, 100, 8 }, { 40, 2560, 8 }, { 17, 700, 1 }, { 33, 1100, 3 } };
    static const char *const must[] = { "tdpbssd\t%tmm", "tileloadd\t", "tilestored\t", "ldtilecfg", "tilerelease",
                                         "vpdpbusd\t%zmm" };
    for (size_t i = 0; i < BJ_COUNTOF(shapes); i++) {
        char *asm_text = NULL;
        cr_assert_eq(bj_cg_kdesc_init(&d, &spr, BJ_CG_V_DOT2, BJ_CG_ISA_AMX, 0, shapes[i][0], shapes[i][1], NULL, &err),
                     BJ_OK, "%s", err.msg);
        d.unroll = (uint8_t)shapes[i][2];
        d.tile_m = (uint8_t)(1 + i % 2);
        d.tile_t = (uint8_t)(16 << (i / 2 % 2));
        d.prefetch = (uint8_t)(i % 2);
        cr_assert_eq(bj_cg_kdesc_check(&d, &spr, &err), BJ_OK, "%s", err.msg);
        cr_assert_eq(bj_cg_compile_text(&spr, &d, NULL, BJ_CG_EMIT_ASM, &asm_text, &err), BJ_OK, "%s", err.msg);
        for (size_t j = 0; j < BJ_COUNTOF(must); j++)
            cr_expect(strstr(asm_text, must[j]) != NULL, "%ux%u: no '%s' in the assembly", shapes[i][0], shapes[i][1], must[j]);
        free(asm_text);
    }
}
