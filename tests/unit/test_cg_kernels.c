/* tests/unit/test_cg_kernels.c -- every generated ternary matmul variant against the plain C
 * reference (bj_cg_ref_matmul), bit-exactly, over the shape table of issue 4:
 * M in {1, 3, 64, 2560, 6912} x K in {64, 96, 130, 2560, 6912} (weights-as-code only where
 * its size rule allows), T in {1, 3}, weight patterns all-zero rows, all +1, all -1, random
 * ternary with ~30% zeros, and binary; activations random int8 plus rows of -128 and +127.
 * Each variant runs for the host CPU and for --mcpu x86-64 (the generic SSE2 path, which
 * still runs on any x86-64 host); the host's lower paths (AVX2 on an AVX-512 CPU, ...) run
 * on a smaller table. Row sub-ranges [m0, m1) are checked to write exactly their rows.
 * Compile times are printed, not asserted. Big shapes run with few tokens to keep the
 * binary near a minute on two cores.
 * The binary kernel (bin1) runs the same table on its binary patterns (all +1, all -1,
 * random signs), plus odd shapes (K in {1, 7, 33, 1001}, M in {1, 17, 100}), and is also
 * checked against its own formula over b1 sign bits (bj_cg_ref_matmul_b1). The 1.6-bit
 * kernel (trit5) runs the table and odd K that leave a short last k-group of every length. */
#include "codegen/codegen.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PAT_ZERO_ROWS, PAT_PLUS, PAT_MINUS, PAT_RANDOM, PAT_BINARY, PAT_COUNT };
static const char *const pat_names[PAT_COUNT] = { "zero-rows", "all+1", "all-1", "random30", "binary" };
static const int64_t shapes_m[] = { 1, 3, 64, 2560, 6912 };
static const int64_t shapes_k[] = { 64, 96, 130, 2560, 6912 };
#define SENTINEL 0x7f7f7f7f
#define TT 3

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void gen_weights(int8_t *w, int64_t M, int64_t K, int pat, uint64_t seed) {
    uint64_t s = seed;
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k += 8) {
            uint64_t r = rng_next(&s);
            for (int64_t i = k; i < K && i < k + 8; i++, r >>= 8) {
                int8_t v;
                unsigned b = (unsigned)(r & 0xff);
                switch (pat) {
                case PAT_ZERO_ROWS: v = m % 3 == 0 ? 0 : (int8_t)((int)(b % 3) - 1); break;
                case PAT_PLUS: v = 1; break;
                case PAT_MINUS: v = -1; break;
                case PAT_RANDOM: v = b < 77 ? 0 : (b & 1) ? 1 : -1; break; /* 77/256 = 30% zeros */
                default: v = (b & 1) ? 1 : -1; break;
                }
                w[m * K + i] = v;
            }
        }
}

/* Token 0 random int8 (every value, -128 included), token 1 all -128, token 2 all +127;
 * the padding up to the x stride is zero, as the contract requires. */
static int8_t *gen_x(int64_t K, uint64_t seed) {
    int64_t xs = bj_cg_x_stride(K);
    int8_t *x = calloc((size_t)(TT * xs), 1);
    uint64_t s = seed;
    for (int64_t k = 0; k < K; k++) {
        x[k] = (int8_t)(rng_next(&s) & 0xff);
        x[xs + k] = -128;
        x[2 * xs + k] = 127;
    }
    return x;
}

typedef struct kcase {
    const bj_cg_target *t;
    bj_cg_variant v;
    bj_cg_isa isa;
    int64_t M, K;
    int pat;
} kcase;

/* Compares y (T x M) with ref for rows [m0, m1); elsewhere y must still hold SENTINEL. */
static int64_t compare(const kcase *c, const int32_t *y, const int32_t *ref, int64_t T, int64_t m0,
                       int64_t m1, const char *what) {
    int64_t bad = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t m = 0; m < c->M; m++) {
            int32_t want = m >= m0 && m < m1 ? ref[t * c->M + m] : SENTINEL, got = y[t * c->M + m];
            if (got != want && bad++ == 0)
                cr_log_error("%s/%s on %s, %lldx%lld %s, %s: first mismatch at t=%lld m=%lld: got %d want %d",
                             bj_cg_variant_name(c->v), bj_cg_isa_name(c->isa), c->t->cpu, (long long)c->M,
                             (long long)c->K, pat_names[c->pat], what, (long long)t, (long long)m, got, want);
        }
    return bad;
}

/* Runs fn over [m0, m1) pieces into a sentinel-filled y and checks it. */
static void run_ranges(const kcase *c, bj_cg_matmul_fn fn, const int8_t *x, const uint8_t *w,
                       const int32_t *ref, int32_t *y) {
    int64_t M = c->M, a = M / 3 + (M > 2), b = 2 * M / 3 + (M > 5);
    if (b < a) b = a;
    for (int64_t i = 0; i < TT * M; i++) y[i] = SENTINEL;
    fn(x, w, y, 1, 0, M); /* decode shape: one token, all rows */
    int64_t bad = compare(c, y, ref, 1, 0, M, "T=1");
    for (int64_t i = 0; i < TT * M; i++) y[i] = SENTINEL;
    fn(x, w, y, TT, a, b); /* a middle slice only: nothing else written */
    bad += compare(c, y, ref, TT, a, b, "T=3 rows [a,b)");
    fn(x, w, y, TT, 0, a);
    fn(x, w, y, TT, b, M);
    fn(x, w, y, 0, 0, M); /* no tokens: writes nothing */
    bad += compare(c, y, ref, TT, 0, M, "T=3 rows in three pieces");
    cr_expect_eq(bad, 0, "%s/%s on %s, %lldx%lld %s: %lld mismatches", bj_cg_variant_name(c->v),
                 bj_cg_isa_name(c->isa), c->t->cpu, (long long)M, (long long)c->K, pat_names[c->pat],
                 (long long)bad);
}

typedef struct kstate {
    bj_cg_jit *jit;
    double compile_ms, max_ms;
    int n_compiled;
} kstate;

static bj_cg_matmul_fn get_kernel(kstate *st, const kcase *c, const int8_t *t8, bj_cg_kdesc *d) {
    bj_error err = { 0 };
    bj_cg_object o;
    bj_cg_times tm;
    void *addr = NULL;
    bool bin = c->pat == PAT_BINARY || c->v == BJ_CG_V_BIN1;
    cr_assert_eq(bj_cg_kdesc_init(d, c->t, c->v, c->isa, bin ? BJ_CG_W_BINARY : BJ_CG_W_TERNARY,
                                  (uint32_t)c->M, (uint32_t)c->K, t8, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_compile(c->t, d, t8, &o, &tm, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_jit_add_object(st->jit, o.data, o.size, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_jit_lookup(st->jit, o.sym, &addr, &err), BJ_OK, "%s", err.msg);
    double ms = tm.build_ms + tm.opt_ms + tm.emit_ms;
    st->compile_ms += ms;
    st->n_compiled++;
    if (ms > st->max_ms) st->max_ms = ms;
    if (ms > 200)
        fprintf(stderr, "  slow compile: %s/%s %lldx%lld: build %.1f O3 %.1f emit %.1f ms, %zu-byte object\n",
                bj_cg_variant_name(c->v), bj_cg_isa_name(c->isa), (long long)c->M, (long long)c->K, tm.build_ms,
                tm.opt_ms, tm.emit_ms, o.size);
    bj_cg_object_free(&o);
    return (bj_cg_matmul_fn)addr;
}

/* The patterns a variant takes: bin1 only binary ones. */
static bool pat_fits(const kcase *c) {
    return c->v != BJ_CG_V_BIN1 || c->pat == PAT_PLUS || c->pat == PAT_MINUS || c->pat == PAT_BINARY;
}

/* b1 sign bits of binary t8, written here from the layout's definition (not the IR's packer). */
static uint8_t *to_b1(const int8_t *t8, int64_t M, int64_t K) {
    int64_t rb = (K + 7) / 8;
    uint8_t *b = calloc((size_t)(M * rb), 1);
    cr_assert(b);
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
            if (t8[m * K + k] == 1) b[m * rb + k / 8] |= (uint8_t)(1u << (k % 8));
    return b;
}

/* One shape, every pattern: compile once (WCODE: once per pattern), pack, run, compare. */
static void check_shape(kstate *st, kcase c) {
    int64_t M = c.M, K = c.K;
    int8_t *t8 = malloc((size_t)(M * K)), *x = gen_x(K, 7 + (uint64_t)K);
    int32_t *ref = malloc((size_t)(TT * M) * 4), *y = malloc((size_t)(TT * M) * 4);
    uint8_t *w = NULL;
    bj_cg_matmul_fn fn = NULL;
    bj_cg_kdesc d;
    cr_assert(t8 && x && ref && y);
    for (c.pat = 0; c.pat < PAT_COUNT; c.pat++) {
        if (!pat_fits(&c)) continue;
        gen_weights(t8, M, K, c.pat, 1000 * (uint64_t)M + (uint64_t)K + (uint64_t)c.pat);
        if (!fn || c.v == BJ_CG_V_WCODE || (c.pat == PAT_BINARY && c.v != BJ_CG_V_BIN1)) fn = get_kernel(st, &c, t8, &d);
        if (!w) w = malloc(bj_cg_packed_size(&d) + 1);
        bj_error err = { 0 };
        cr_assert_eq(bj_cg_pack(&d, t8, w, &err), BJ_OK, "%s", err.msg);
        bj_cg_ref_matmul(x, t8, ref, TT, M, K, 0, M);
        if (c.v == BJ_CG_V_BIN1) { /* the binary formula over sign bits agrees with the plain dot product */
            uint8_t *b1 = to_b1(t8, M, K);
            int32_t *ref_b1 = malloc((size_t)(TT * M) * 4);
            bj_cg_ref_matmul_b1(x, b1, ref_b1, TT, M, K, 0, M);
            cr_assert_arr_eq(ref_b1, ref, (size_t)(TT * M) * 4, "bj_cg_ref_matmul_b1 %lldx%lld %s", (long long)M,
                             (long long)K, pat_names[c.pat]);
            free(b1);
            free(ref_b1);
        }
        run_ranges(&c, fn, x, w, ref, y);
    }
    free(t8);
    free(x);
    free(ref);
    free(y);
    free(w);
}

static void check_table_of(const char *mcpu, bj_cg_variant v, bj_cg_isa isa, const int64_t *ms, size_t n_m,
                           const int64_t *ks, size_t n_k) {
    bj_error err = { 0 };
    bj_cg_target t;
    kstate st = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, mcpu, NULL, &err), BJ_OK, "%s", err.msg);
    if (isa != BJ_CG_ISA_AUTO && !bj_cg_isa_supported(&t, isa)) {
        fprintf(stderr, "  %s: path %s not available on %s, skipped\n", bj_cg_variant_name(v), bj_cg_isa_name(isa), t.cpu);
        return;
    }
    cr_assert_eq(bj_cg_jit_create(&st.jit, &err), BJ_OK, "%s", err.msg);
    bj_cg_isa used = isa == BJ_CG_ISA_AUTO ? bj_cg_best_isa(&t) : isa;
    for (size_t i = 0; i < n_m; i++)
        for (size_t j = 0; j < n_k; j++) {
            if (v == BJ_CG_V_WCODE && !bj_cg_wcode_fits((uint32_t)ms[i], (uint32_t)ks[j])) continue;
            check_shape(&st, (kcase){ &t, v, used, ms[i], ks[j], 0 });
        }
    fprintf(stderr, "%-8s %-10s on %-9s: %3d kernels compiled in %7.1f ms (mean %.1f, max %.1f ms)\n",
            bj_cg_variant_name(v), bj_cg_isa_name(used), t.cpu, st.n_compiled, st.compile_ms,
            st.compile_ms / (st.n_compiled ? st.n_compiled : 1), st.max_ms);
    bj_cg_jit_free(st.jit);
}

static void check_table(const char *mcpu, bj_cg_variant v, bj_cg_isa isa, size_t n_m, size_t n_k) {
    check_table_of(mcpu, v, isa, shapes_m, n_m, shapes_k, n_k);
}

#define ALL_M BJ_COUNTOF(shapes_m)
#define ALL_K BJ_COUNTOF(shapes_k)

Test(cg_kernels, dot2_host, .timeout = 600) { check_table(NULL, BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }
Test(cg_kernels, dot2_x86_64, .timeout = 600) { check_table("x86-64", BJ_CG_V_DOT2, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }
Test(cg_kernels, bitplane_host, .timeout = 600) { check_table(NULL, BJ_CG_V_BITPLANE, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }
Test(cg_kernels, bitplane_x86_64, .timeout = 600) { check_table("x86-64", BJ_CG_V_BITPLANE, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }
Test(cg_kernels, wcode_host, .timeout = 600) { check_table(NULL, BJ_CG_V_WCODE, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }
Test(cg_kernels, wcode_x86_64, .timeout = 600) { check_table("x86-64", BJ_CG_V_WCODE, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }
Test(cg_kernels, bin1_host, .timeout = 600) { check_table(NULL, BJ_CG_V_BIN1, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }
Test(cg_kernels, bin1_x86_64, .timeout = 600) { check_table("x86-64", BJ_CG_V_BIN1, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }

Test(cg_kernels, trit5_host, .timeout = 600) { check_table(NULL, BJ_CG_V_TRIT5, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }
Test(cg_kernels, trit5_x86_64, .timeout = 600) { check_table("x86-64", BJ_CG_V_TRIT5, BJ_CG_ISA_AUTO, ALL_M, ALL_K); }

/* trit5 where K leaves a short last k-group of every length (K % 20 in {1, 7, 13, 19}: 1 to 5
 * slots) or none (20, 40), and M one past a 16-row block. */
Test(cg_kernels, trit5_odd_shapes, .timeout = 600) {
    static const int64_t ms[] = { 1, 17, 100 }, ks[] = { 1, 7, 20, 33, 40, 59, 1001 };
    check_table_of(NULL, BJ_CG_V_TRIT5, BJ_CG_ISA_AUTO, ms, BJ_COUNTOF(ms), ks, BJ_COUNTOF(ks));
    check_table_of("x86-64", BJ_CG_V_TRIT5, BJ_CG_ISA_AUTO, ms, BJ_COUNTOF(ms), ks, BJ_COUNTOF(ks));
}

/* bin1 on shapes no vector width divides: K of 1 and 7 (one partial byte), 33 (one past a
 * 32-k group), 1001; M of 1, 17 (one past a 16-row block) and 100. */
Test(cg_kernels, bin1_odd_shapes, .timeout = 600) {
    static const int64_t ms[] = { 1, 17, 100 }, ks[] = { 1, 7, 33, 1001 };
    check_table_of(NULL, BJ_CG_V_BIN1, BJ_CG_ISA_AUTO, ms, BJ_COUNTOF(ms), ks, BJ_COUNTOF(ks));
    check_table_of("x86-64", BJ_CG_V_BIN1, BJ_CG_ISA_AUTO, ms, BJ_COUNTOF(ms), ks, BJ_COUNTOF(ks));
}

/* The host's other paths (e.g. AVX2 and AVX-VNNI ymm on an AVX-512 VNNI CPU) on the small
 * shapes: M in {1, 3, 64}, K in {64, 96, 130, 2560}. */
Test(cg_kernels, host_lower_paths, .timeout = 600) {
    bj_error err = { 0 };
    bj_cg_target t;
    cr_assert_eq(bj_cg_target_detect(&t, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    bj_cg_isa best = bj_cg_best_isa(&t);
    for (int isa = BJ_CG_ISA_GENERIC; isa < (int)best; isa++)
        for (int v = BJ_CG_V_DOT2; v < BJ_CG_V_COUNT; v++)
            if (v != BJ_CG_V_WCODE && bj_cg_isa_supported(&t, (bj_cg_isa)isa))
                check_table(NULL, (bj_cg_variant)v, (bj_cg_isa)isa, 3, 4);
}

/* Prefill tiles: the table above runs T <= 3, under every default tile_t, so only remainder
 * tiles would run. Here T in {1, 5, 13, 64, 70} (70: a second 64-token chunk of 6) meets full
 * token tiles, their remainders and the chunk edge, over tiles (tile_m, tile_t, unroll) whose
 * edges differ, and K of 64 (4 k-groups), 300 and 4200 (264 k-groups: 16 i16 super-groups of
 * 16 plus 8, see BJ_DOT2_WIDE; trit5: 210 groups of 20, 17 super-groups of 12 plus 6) so that
 * the i16 accumulators of the pmaddubsw paths meet their worst case: all +1 (code 2) against
 * rows of -128 sum to exactly -32768 in a dot2 super-group (-30720 in trit5's).
 * The AMX path (dot2 only) takes its own tiles: 16 or 32 tokens, 1 or 2 blocks, panels of at
 * most 1 to 64 chunks (K 4200 is 66 chunks: 8 panels of 8 and a short one of 2 at unroll 8, two of
 * 33 at 64; K 300 is one panel of 5), prefetch 0 or 2 chunks ahead,
 * and T 33 and 48 meet a pair of 16-token tiles and a single one after it. */
#define PT 70
static void check_prefill(const char *mcpu, bj_cg_variant v, bj_cg_isa isa) {
    static const int64_t ms[] = { 17, 64 }, ks[] = { 64, 300, 4200 }, ts[] = { 1, 5, 13, 33, 48, 64, PT };
    static const uint8_t vec_tiles[][3] = { { 1, 4, 1 }, { 2, 3, 3 }, { 1, 8, 2 }, { 3, 5, 1 }, { 4, 1, 4 } };
    static const uint8_t amx_tiles[][3] = { { 2, 32, 8 }, { 1, 16, 1 }, { 2, 16, 3 }, { 1, 32, 64 }, { 2, 32, 5 } };
    _Static_assert(BJ_COUNTOF(vec_tiles) == BJ_COUNTOF(amx_tiles), "one loop runs either table");
    const uint8_t(*tiles)[3] = isa == BJ_CG_ISA_AMX ? amx_tiles : vec_tiles;
    bj_error err = { 0 };
    bj_cg_target t;
    bj_cg_jit *jit;
    cr_assert_eq(bj_cg_target_detect(&t, mcpu, NULL, &err), BJ_OK, "%s", err.msg);
    if (isa != BJ_CG_ISA_AUTO && !bj_cg_isa_supported(&t, isa)) return;
    if (isa == BJ_CG_ISA_AMX && v != BJ_CG_V_DOT2) return; /* the AMX path runs dot2 only */
    cr_assert_eq(bj_cg_jit_create(&jit, &err), BJ_OK, "%s", err.msg);
    bool bin = v == BJ_CG_V_BIN1;
    const int pats[3] = { bin ? PAT_BINARY : PAT_RANDOM, PAT_PLUS, PAT_MINUS };
    for (size_t a = 0; a < BJ_COUNTOF(ms); a++)
        for (size_t b = 0; b < BJ_COUNTOF(ks); b++) {
            int64_t M = ms[a], K = ks[b], xs = bj_cg_x_stride(K);
            int8_t *t8 = malloc((size_t)(M * K)), *x = calloc((size_t)(PT * xs), 1);
            int32_t *ref = malloc((size_t)(PT * M) * 4), *y = malloc((size_t)(PT * M) * 4);
            uint64_t s = 77 + (uint64_t)K;
            cr_assert(t8 && x && ref && y);
            for (int64_t tok = 0; tok < PT; tok++) /* random rows, rows of -128 and rows of +127 */
                for (int64_t k = 0; k < K; k++)
                    x[tok * xs + k] = tok % 7 == 1 ? -128 : tok % 7 == 2 ? 127 : (int8_t)(rng_next(&s) & 0xff);
            for (size_t ti = 0; ti < BJ_COUNTOF(vec_tiles); ti++) {
                bj_cg_kdesc d;
                bj_cg_object o;
                void *addr = NULL;
                cr_assert_eq(bj_cg_kdesc_init(&d, &t, v, isa, bin ? BJ_CG_W_BINARY : BJ_CG_W_TERNARY, (uint32_t)M,
                                              (uint32_t)K, NULL, &err), BJ_OK, "%s", err.msg);
                d.tile_m = tiles[ti][0];
                d.tile_t = tiles[ti][1];
                d.unroll = tiles[ti][2];
                if (d.prefetch) d.prefetch = ti % 2 ? 0 : 255; /* none, or the farthest (64 KiB past small weights) */
                if (isa == BJ_CG_ISA_AMX) d.prefetch = ti % 2 ? 2 : 0; /* chunks ahead */
                cr_assert_eq(bj_cg_kdesc_check(&d, &t, &err), BJ_OK, "%s", err.msg);
                cr_assert_eq(bj_cg_compile(&t, &d, NULL, &o, NULL, &err), BJ_OK, "%s", err.msg);
                cr_assert_eq(bj_cg_jit_add_object(jit, o.data, o.size, &err), BJ_OK, "%s", err.msg);
                cr_assert_eq(bj_cg_jit_lookup(jit, o.sym, &addr, &err), BJ_OK, "%s", err.msg);
                bj_cg_object_free(&o);
                bj_cg_matmul_fn fn = (bj_cg_matmul_fn)addr;
                uint8_t *w = malloc(bj_cg_packed_size(&d));
                cr_assert(w);
                for (int p = 0; p < 3; p++) {
                    kcase c = { &t, v, (bj_cg_isa)d.isa, M, K, pats[p] };
                    gen_weights(t8, M, K, pats[p], 31 * (uint64_t)K + (uint64_t)M + (uint64_t)p);
                    cr_assert_eq(bj_cg_pack(&d, t8, w, &err), BJ_OK, "%s", err.msg);
                    bj_cg_ref_matmul(x, t8, ref, PT, M, K, 0, M);
                    char what[96];
                    int64_t bad = 0;
                    for (size_t j = 0; j < BJ_COUNTOF(ts); j++) {
                        for (int64_t i = 0; i < PT * M; i++) y[i] = SENTINEL;
                        fn(x, w, y, ts[j], 0, M);
                        snprintf(what, sizeof what, "tiles %u/%u/%u T=%lld", d.tile_m, d.tile_t, d.unroll,
                                 (long long)ts[j]);
                        bad += compare(&c, y, ref, ts[j], 0, M, what);
                    }
                    for (int64_t i = 0; i < PT * M; i++) y[i] = SENTINEL;
                    fn(x, w, y, PT, 16, M - 1); /* rows from a block edge to one short of the end */
                    snprintf(what, sizeof what, "tiles %u/%u/%u T=%d rows [16,%lld)", d.tile_m, d.tile_t, d.unroll,
                             PT, (long long)(M - 1));
                    bad += compare(&c, y, ref, PT, 16, M - 1, what);
                    for (int64_t i = 0; i < PT * M; i++) y[i] = SENTINEL;
                    fn(x, w, y, PT, 5, M); /* from inside the first block to the end */
                    snprintf(what, sizeof what, "tiles %u/%u/%u T=%d rows [5,%lld)", d.tile_m, d.tile_t, d.unroll, PT,
                             (long long)M);
                    bad += compare(&c, y, ref, PT, 5, M, what);
                    cr_expect_eq(bad, 0, "%s/%s %lldx%lld %s tiles %u/%u/%u: %lld mismatches", bj_cg_variant_name(v),
                                 bj_cg_isa_name((bj_cg_isa)d.isa), (long long)M, (long long)K, pat_names[pats[p]],
                                 d.tile_m, d.tile_t, d.unroll, (long long)bad);
                }
                free(w);
            }
            free(t8);
            free(x);
            free(ref);
            free(y);
        }
    bj_cg_jit_free(jit);
}

/* Every path of the host (AVX2 and the SSE2 generic path here; VNNI, AVX-512 and AMX where the
 * CPU has them), dot2, bin1 and trit5. */
Test(cg_kernels, prefill_tiles, .timeout = 600) {
    for (int isa = BJ_CG_ISA_GENERIC; isa < BJ_CG_ISA_COUNT; isa++) {
        check_prefill(NULL, BJ_CG_V_DOT2, (bj_cg_isa)isa);
        check_prefill(NULL, BJ_CG_V_BIN1, (bj_cg_isa)isa);
        check_prefill(NULL, BJ_CG_V_TRIT5, (bj_cg_isa)isa);
    }
}

/* The AMX path by name, so that a host without AMX-INT8 says it skipped it (prefill_tiles runs
 * it too where the CPU has it). */
Test(cg_kernels, amx_prefill, .timeout = 600) {
    bj_error err = { 0 };
    bj_cg_target t;
    cr_assert_eq(bj_cg_target_detect(&t, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    if (!bj_cg_isa_supported(&t, BJ_CG_ISA_AMX)) cr_skip_test("this host (%s) has no AMX-INT8 the process may use", t.cpu);
    check_prefill(NULL, BJ_CG_V_DOT2, BJ_CG_ISA_AMX);
}
