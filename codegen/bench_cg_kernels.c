/* codegen/bench_cg_kernels.c -- micro-benchmark of the generated ternary matmul kernels (a
 * tool, not a test): for each shape, variant and ISA path the target allows, it JIT-compiles
 * the kernel (reporting compile time), checks one call against the C reference, and times
 * one thread on
 *   decode  T = 1: GB/s of packed weight bytes, from cache ("hot": one weight buffer) and
 *           streamed from memory ("mem": rotating through copies totalling >= 512 MiB);
 *   prefill T = 16, 64 and 128: G int8 MAC/s.
 * The check (also of every --cmp kernel): T of 1, 37, 48, 64 and 128, each over all rows and
 * over rows [5, M - 3) alone, bit for bit.
 *
 *   bj_cg_bench_cg_kernels [--mcpu CPU] [--mattr +a,-b] [--shape MxK]... [--variant NAME]
 *                          [--path NAME] [--tile tile_m,tile_t,unroll] [--quick] [--asm DIR]
 *                          [--cpu-time] [--cmp m,t,u[,p]/m,t,u[,p]/... T ROUNDS]
 * (--tile overrides the descriptor's tiles, 0 keeping a default: a manual autotuner; --asm DIR
 * writes each kernel's assembly to DIR/VARIANT-PATH-MxK.s; --cmp times dot2 kernels of the
 * given tiles against each other, interleaved call by call: see run_cmp.)
 * Default shapes: 2560x2560, 6912x2560 (M x K: the FFN up/gate), 2560x6912 (down).
 * Prints a table to stdout. */
#include "codegen/codegen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STREAM_BYTES (512ull << 20)

/* --cpu-time: this thread's CPU time instead of the wall clock, for A/B runs on a machine
 * that others load (time spent descheduled does not count; caches shared with them still do). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct bench {
    const bj_cg_target *t;
    bj_cg_jit *jit;
    int64_t M, K;
    int8_t *t8, *x;
    int8_t *t8_ter, *t8_bin;  /* the weights of the variant being run point at one of these */
    int32_t *y, *ref;
    bool quick;
    int tile_m, tile_t, unroll; /* 0: the path's default */
    int only_variant;           /* 0: all */
    int only_isa;               /* 0: every path the target allows */
    const char *cmp;            /* --cmp: tiles to compare ("m,t,u/m,t,u/..."), or NULL */
    int cmp_t, cmp_rounds;
    const char *asm_dir;        /* --asm DIR: each kernel's assembly written there, or NULL */
} bench;

/* Seconds per call: the best of 5 rounds, each long enough to be timed. wsets weight copies
 * of wbytes each are used in turn (1: the same, cache-resident buffer). */
static double time_calls(bj_cg_matmul_fn fn, const bench *b, const uint8_t *w, size_t wbytes, size_t wsets,
                         int64_t T, double min_s) {
    double best = 1e30;
    for (int round = 0; round < 5; round++) {
        long n = 0;
        double t0 = now_s(), t1;
        do {
            fn(b->x, w + (size_t)(n % (long)wsets) * wbytes, b->y, T, 0, b->M);
            n++;
        } while ((t1 = now_s()) - t0 < min_s || n < 3);
        if ((t1 - t0) / n < best) best = (t1 - t0) / n;
    }
    return best;
}

/* One reference for T tokens, then two calls against it: all rows, and rows [5, M - 3) alone
 * (edges inside 16-row blocks at both ends), which must leave every other row unwritten. */
static int check(bj_cg_matmul_fn fn, const bench *b, const uint8_t *w, int64_t T) {
    bj_cg_ref_matmul(b->x, b->t8, b->ref, T, b->M, b->K, 0, b->M);
    fn(b->x, w, b->y, T, 0, b->M);
    if (memcmp(b->y, b->ref, (size_t)(T * b->M) * 4)) return 1;
    int64_t m0 = 5, m1 = b->M - 3;
    if (m1 <= m0) return 0;
    memset(b->y, 0x7f, (size_t)(T * b->M) * 4);
    fn(b->x, w, b->y, T, m0, m1);
    for (int64_t t = 0; t < T; t++)
        for (int64_t m = 0; m < b->M; m++)
            if (b->y[t * b->M + m] != (m >= m0 && m < m1 ? b->ref[t * b->M + m] : 0x7f7f7f7f)) return 1;
    return 0;
}

static void run_one(bench *b, bj_cg_variant v, bj_cg_isa isa) {
    bj_error err = { 0 };
    bj_cg_kdesc d;
    bj_cg_object o;
    bj_cg_times tm;
    void *addr;
    bool bin = v == BJ_CG_V_BIN1; /* binary weights for the binary kernel, ternary for the rest */
    b->t8 = bin ? b->t8_bin : b->t8_ter;
    bj_status s = bj_cg_kdesc_init(&d, b->t, v, isa, bin ? BJ_CG_W_BINARY : BJ_CG_W_TERNARY, (uint32_t)b->M, (uint32_t)b->K, b->t8, &err);
    if (b->tile_m) d.tile_m = (uint8_t)b->tile_m;
    if (b->tile_t) d.tile_t = (uint8_t)b->tile_t;
    if (b->unroll) d.unroll = (uint8_t)b->unroll;
    if (s || bj_cg_kdesc_check(&d, b->t, &err) || bj_cg_compile(b->t, &d, b->t8, &o, &tm, &err) || bj_cg_jit_add_object(b->jit, o.data, o.size, &err) ||
        bj_cg_jit_lookup(b->jit, o.sym, &addr, &err)) {
        printf("%-8s %-10s %5lldx%-5lld  error: %s\n", bj_cg_variant_name(v), bj_cg_isa_name(isa), (long long)b->M,
               (long long)b->K, err.msg);
        return;
    }
    bj_cg_matmul_fn fn = (bj_cg_matmul_fn)addr;
    if (b->asm_dir) { /* what the generator and O3 made of it, for reading */
        char *text = NULL, path[4096];
        snprintf(path, sizeof path, "%s/%s-%s-%lldx%lld.s", b->asm_dir, bj_cg_variant_name(v), bj_cg_isa_name(isa),
                 (long long)b->M, (long long)b->K);
        FILE *f = bj_cg_compile_text(b->t, &d, b->t8, BJ_CG_EMIT_ASM, &text, &err) ? NULL : fopen(path, "w");
        if (f) {
            fputs(text, f);
            fclose(f);
        }
        free(text);
    }
    size_t wbytes = bj_cg_packed_size(&d) ? bj_cg_packed_size(&d) : 64;
    size_t wsets = b->quick ? 1 : (STREAM_BYTES + wbytes - 1) / wbytes;
    uint8_t *w = malloc(wbytes * wsets);
    if (!w || bj_cg_pack(&d, b->t8, w, &err)) {
        printf("pack failed: %s\n", err.msg);
        exit(1);
    }
    for (size_t i = 1; i < wsets; i++) memcpy(w + i * wbytes, w, wbytes);
    int bad = check(fn, b, w, 1) || check(fn, b, w, 64) || check(fn, b, w, 128) || check(fn, b, w, 37) ||
              check(fn, b, w, 48);
    double min_s = b->quick ? 0.02 : 0.1;
    double hot = time_calls(fn, b, w, wbytes, 1, 1, min_s);
    double mem = wsets > 1 ? time_calls(fn, b, w, wbytes, wsets, 1, min_s) : hot;
    double p16 = time_calls(fn, b, w, wbytes, 1, 16, min_s), p64 = time_calls(fn, b, w, wbytes, 1, 64, min_s);
    double p128 = time_calls(fn, b, w, wbytes, 1, 128, min_s);
    double macs = (double)b->M * b->K;
    printf("%-8s %-10s %5lldx%-5lld %8.1f %9zu %8.1f %8.1f %9.1f %9.1f %9.1f %8.1f  %s\n", bj_cg_variant_name(v),
           bj_cg_isa_name(isa), (long long)b->M, (long long)b->K, tm.build_ms + tm.opt_ms + tm.emit_ms, o.size,
           wbytes / hot / 1e9, wbytes / mem / 1e9, macs * 16 / p16 / 1e9, macs * 64 / p64 / 1e9, macs * 128 / p128 / 1e9, hot * 1e6,
           bad ? "MISMATCH" : "ok");
    fflush(stdout);
    bj_cg_object_free(&o);
    free(w);
}

/* --cmp: the tiles given, compiled once each, then timed call by call in turn (T = cmp_t,
 * cmp_rounds rounds, the fastest call of each kept), so that a load that comes and goes
 * meets them all alike. */
static void run_cmp(bench *b, const char *list, int64_t T, int rounds) {
    enum { MAXC = 16 };
    bj_cg_matmul_fn fns[MAXC];
    uint8_t *ws[MAXC];
    bj_cg_jit *jits[MAXC]; /* one each: the same tiles may come twice (a repeat shows the noise) */
    char names[MAXC][64];
    double best[MAXC];
    int n = 0;
    for (const char *p = list; *p && n < MAXC; n++) {
        int tm = 0, tt = 0, un = 0, pf = -1, len = 0;
        if (sscanf(p, "%d,%d,%d%n", &tm, &tt, &un, &len) != 3) break;
        p += len;
        if (*p == ',' && sscanf(p, ",%d%n", &pf, &len) == 1) p += len; /* optional prefetch */
        if (*p == '/') p++;
        bj_error err = { 0 };
        bj_cg_kdesc d;
        bj_cg_object o;
        void *addr;
        bj_status s = bj_cg_kdesc_init(&d, b->t, BJ_CG_V_DOT2, b->only_isa ? (bj_cg_isa)b->only_isa : BJ_CG_ISA_AUTO,
                                       BJ_CG_W_TERNARY, (uint32_t)b->M, (uint32_t)b->K, NULL, &err);
        d.tile_m = (uint8_t)tm;
        d.tile_t = (uint8_t)tt;
        d.unroll = (uint8_t)un;
        if (pf >= 0) d.prefetch = (uint8_t)pf;
        if (s || bj_cg_kdesc_check(&d, b->t, &err) || bj_cg_compile(b->t, &d, NULL, &o, NULL, &err) ||
            bj_cg_jit_create(&jits[n], &err) || bj_cg_jit_add_object(jits[n], o.data, o.size, &err) ||
            bj_cg_jit_lookup(jits[n], o.sym, &addr, &err)) {
            printf("%d,%d,%d: %s\n", tm, tt, un, err.msg);
            exit(1);
        }
        bj_cg_object_free(&o);
        fns[n] = (bj_cg_matmul_fn)addr;
        ws[n] = malloc(bj_cg_packed_size(&d));
        if (!ws[n] || bj_cg_pack(&d, b->t8, ws[n], &err)) exit(1);
        snprintf(names[n], sizeof names[n], "%d,%d,%d,%d", tm, tt, un, d.prefetch);
        best[n] = 1e30;
        if (check(fns[n], b, ws[n], T)) printf("%s: MISMATCH\n", names[n]);
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            double t0 = now_s();
            fns[i](b->x, ws[i], b->y, T, 0, b->M);
            double t = now_s() - t0;
            if (t < best[i]) best[i] = t;
        }
    for (int i = 0; i < n; i++) {
        printf("%5lldx%-5lld T=%-3lld %-24s %8.1f G MAC/s (%.3f ms)\n", (long long)b->M, (long long)b->K, (long long)T,
               names[i], (double)b->M * b->K * T / best[i] / 1e9, best[i] * 1e3);
        free(ws[i]);
        bj_cg_jit_free(jits[i]);
    }
}

static void run_shape(bench *b) {
    uint64_t s = 1;
    int64_t xs = bj_cg_x_stride(b->K);
    b->t8_ter = malloc((size_t)(b->M * b->K));
    b->t8_bin = malloc((size_t)(b->M * b->K));
    b->x = calloc((size_t)(128 * xs), 1);
    b->y = malloc((size_t)(128 * b->M) * 4);
    b->ref = malloc((size_t)(128 * b->M) * 4);
    for (int64_t i = 0; i < b->M * b->K; i++) {
        unsigned r = (unsigned)(rng_next(&s) & 0xff);
        b->t8_ter[i] = r < 77 ? 0 : (r & 1) ? 1 : -1; /* ~30% zeros, as absmean quantisation gives */
        b->t8_bin[i] = (r & 1) ? 1 : -1;
    }
    for (int64_t t = 0; t < 128; t++)
        for (int64_t k = 0; k < b->K; k++) b->x[t * xs + k] = (int8_t)rng_next(&s);
    if (b->cmp) {
        b->t8 = b->t8_ter;
        run_cmp(b, b->cmp, b->cmp_t, b->cmp_rounds);
    }
    for (int v = BJ_CG_V_DOT2; v < BJ_CG_V_COUNT && !b->cmp; v++)
        for (int isa = BJ_CG_ISA_COUNT - 1; isa > BJ_CG_ISA_AUTO; isa--) {
            if (!bj_cg_isa_supported(b->t, (bj_cg_isa)isa) || (b->only_variant && b->only_variant != v) ||
                (b->only_isa && b->only_isa != isa))
                continue;
            if (v == BJ_CG_V_WCODE && !bj_cg_wcode_fits((uint32_t)b->M, (uint32_t)b->K)) continue;
            if (isa == BJ_CG_ISA_AMX && v != BJ_CG_V_DOT2) continue; /* dot2's prefill path only */
            run_one(b, (bj_cg_variant)v, (bj_cg_isa)isa);
        }
    free(b->t8_ter);
    free(b->t8_bin);
    free(b->x);
    free(b->y);
    free(b->ref);
}

int main(int argc, char **argv) {
    const char *mcpu = NULL, *mattr = NULL;
    int64_t shapes[16][2], n = 0;
    bench b = { 0 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mcpu") && i + 1 < argc) mcpu = argv[++i];
        else if (!strcmp(argv[i], "--mattr") && i + 1 < argc) mattr = argv[++i];
        else if (!strcmp(argv[i], "--quick")) b.quick = true;
        else if (!strcmp(argv[i], "--asm") && i + 1 < argc) b.asm_dir = argv[++i];
        else if (!strcmp(argv[i], "--cpu-time")) bench_clock = CLOCK_THREAD_CPUTIME_ID;
        else if (!strcmp(argv[i], "--cmp") && i + 3 < argc) {
            b.cmp = argv[++i];
            b.cmp_t = atoi(argv[++i]);
            b.cmp_rounds = atoi(argv[++i]);
            if (b.cmp_t < 1 || b.cmp_t > 128 || b.cmp_rounds < 1) {
                fprintf(stderr, "--cmp TILES T ROUNDS: T in [1, 128], ROUNDS >= 1\n");
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--tile") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d,%d,%d", &b.tile_m, &b.tile_t, &b.unroll) != 3) {
                fprintf(stderr, "bad --tile %s (want tile_m,tile_t,unroll; 0 = default)\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--variant") && i + 1 < argc) {
            const char *name = argv[++i];
            for (int v = BJ_CG_V_DOT2; v < BJ_CG_V_COUNT; v++)
                if (!strcmp(name, bj_cg_variant_name((bj_cg_variant)v))) b.only_variant = v;
        } else if (!strcmp(argv[i], "--path") && i + 1 < argc) {
            const char *name = argv[++i];
            for (int isa = BJ_CG_ISA_GENERIC; isa < BJ_CG_ISA_COUNT; isa++)
                if (!strcmp(name, bj_cg_isa_name((bj_cg_isa)isa))) b.only_isa = isa;
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc && n < 16) {
            long long m, k;
            if (sscanf(argv[++i], "%lldx%lld", &m, &k) != 2 || m < 1 || k < 1) {
                fprintf(stderr, "bad --shape %s (want MxK)\n", argv[i]);
                return 2;
            }
            shapes[n][0] = m;
            shapes[n++][1] = k;
        } else {
            fprintf(stderr, "usage: %s [--mcpu CPU] [--mattr +a,-b] [--shape MxK]... [--variant NAME] "
                            "[--path NAME] [--tile tile_m,tile_t,unroll] [--quick] [--asm DIR] [--cpu-time] [--cmp m,t,u[,p]/... T ROUNDS]\n", argv[0]);
            return 2;
        }
    }
    if (!n) {
        static const int64_t def[3][2] = { { 2560, 2560 }, { 6912, 2560 }, { 2560, 6912 } };
        memcpy(shapes, def, sizeof def);
        n = 3;
    }
    bj_error err = { 0 };
    bj_cg_target t;
    char info[2048];
    if (bj_cg_target_detect(&t, mcpu, mattr, &err) || bj_cg_target_check_host(&t, &err) ||
        bj_cg_jit_create(&b.jit, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    bj_cg_target_describe(&t, info, sizeof info);
    printf("%s", info);
    printf("one thread; decode T=1 GB/s of packed weights (hot: cache-resident, mem: streamed); "
           "prefill G int8 MAC/s\n");
    printf("%-8s %-10s %11s %8s %9s %8s %8s %9s %9s %9s %8s\n", "variant", "path", "M x K", "comp ms", "obj B",
           "hot GB/s", "mem GB/s", "T=16 GMAC", "T=64 GMAC", "T=128 GMAC", "T=1 us");
    b.t = &t;
    for (int64_t i = 0; i < n; i++) {
        b.M = shapes[i][0];
        b.K = shapes[i][1];
        run_shape(&b);
    }
    bj_cg_jit_free(b.jit);
    return 0;
}
