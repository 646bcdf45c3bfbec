/* runtime/bench/bench_head.c -- micro-benchmark of the exact LM head (a tool, not a test): the
 * generated kernel (codegen/cg_kernel_head.c) on each vector path the host has, against the plain
 * C head (runtime/ops.c bj_rt_matmul_f), one thread, decode (T = 1), alternating call by call:
 *   mem: the whole N x K matrix once a call (2B4T's F16 head is 656 MB: streamed from memory);
 *   hot: its first rows only (--hot-rows, default 192: 0.98 MB at F16, in L2 of most CPUs),
 *        what the arithmetic alone allows.
 * GB/s of weight bytes, best of --rounds. Every kernel's output is checked against the C head's,
 * bit for bit, before timing.
 *
 *   bj_bench_head [--shape NxK] [--dtype f16|bf16|f32] [--rounds R] [--hot-rows N] [--tile M]
 *                 [--prefetch P] */
#include "codegen/codegen.h"
#include "ir/weights.h"
#include "runtime/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct cand {
    const char *name;
    bj_rt_head_fn fn; /* NULL: the C head */
    double best_mem, best_hot;
} cand;

int main(int argc, char **argv) {
    int64_t N = 128256, K = 2560, hot = 192;
    int rounds = 5, tile = 0, prefetch = -1;
    bj_dtype dt = BJ_DT_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long p, q;
        if (!strcmp(a, "--shape") && v && sscanf(v, "%lldx%lld", &p, &q) == 2) N = p, K = q, i++;
        else if (!strcmp(a, "--dtype") && v) {
            dt = !strcmp(v, "f32") ? BJ_DT_F32 : !strcmp(v, "bf16") ? BJ_DT_BF16 : BJ_DT_F16;
            i++;
        } else if (!strcmp(a, "--rounds") && v) rounds = atoi(v), i++;
        else if (!strcmp(a, "--hot-rows") && v) hot = atoll(v), i++;
        else if (!strcmp(a, "--tile") && v) tile = atoi(v), i++;
        else if (!strcmp(a, "--prefetch") && v) prefetch = atoi(v), i++;
        else {
            fprintf(stderr, "usage: bj_bench_head [--shape NxK] [--dtype f16|bf16|f32] [--rounds R] [--hot-rows N] "
                            "[--tile M] [--prefetch P]\n");
            return 2;
        }
    }
    if (hot > N) hot = N;
    int64_t es = dt == BJ_DT_F32 ? 4 : 2;
    uint64_t bytes = (uint64_t)(N * K * es);
    uint8_t *w = malloc(bytes);
    double *x = malloc((size_t)K * sizeof *x);
    float *y = malloc((size_t)N * 4), *yc = malloc((size_t)N * 4), *xf = malloc((size_t)K * 4);
    if (!w || !x || !y || !yc || !xf) return fprintf(stderr, "bj_bench_head: out of memory\n"), 1;
    uint64_t s = 88172645463325252ull;
    for (uint64_t i = 0; i < bytes / 2; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        float f = (float)((s >> 11) % 2001) / 1000.0f - 1.0f;
        uint16_t h = dt == BJ_DT_BF16 ? bj_f32_to_bf16(f) : bj_f32_to_f16(f);
        w[2 * i] = (uint8_t)h, w[2 * i + 1] = (uint8_t)(h >> 8); /* f32: two halves a float, finite */
    }
    for (int64_t k = 0; k < K; k++) x[k] = (double)((k * 37) % 101) / 50.0 - 1.0, xf[k] = (float)x[k];
    bj_node node = { .op = BJ_OP_WEIGHT, .dtype = dt, .shape = bj_shape2(N, K), .data = w, .nbytes = bytes, .name = "head" };

    bj_cg_target t;
    bj_cg_cache cache;
    bj_cg_jit *jit;
    bj_error err = { 0 };
    if (bj_cg_target_detect(&t, NULL, NULL, &err) || bj_cg_cache_open(&cache, NULL, &t, true, &err) ||
        bj_cg_jit_create(&jit, &err))
        return fprintf(stderr, "bj_bench_head: %s\n", err.msg), 1;
    cand c[3] = { { .name = "C (bj_rt_matmul_f)" } };
    int nc = 1;
    const bj_cg_isa isas[] = { BJ_CG_ISA_AVX512, BJ_CG_ISA_AVX2 };
    bj_cg_head_dtype hdt = dt == BJ_DT_F32 ? BJ_CG_HEAD_F32 : dt == BJ_DT_BF16 ? BJ_CG_HEAD_BF16 : BJ_CG_HEAD_F16;
    for (int i = 0; i < 2; i++) {
        bj_cg_kdesc d;
        bj_cg_matmul_fn f;
        if (bj_cg_head_kdesc_init(&d, &t, hdt, isas[i], (uint32_t)N, (uint32_t)K, &err)) continue;
        if (tile > 0) d.tile_m = (uint8_t)tile;
        if (prefetch >= 0) d.prefetch = (uint8_t)prefetch;
        if (bj_cg_kernel_get(&cache, jit, &t, &d, NULL, &f, &err)) return fprintf(stderr, "bj_bench_head: %s\n", err.msg), 1;
        c[nc].name = isas[i] == BJ_CG_ISA_AVX512 ? "generated 512-bit" : "generated 256-bit";
        c[nc++].fn = bj_cg_head_fn_of(f);
    }
    bj_rt_matmul_f(x, &node, K, N, 1, 0, N, yc);
    for (int i = 1; i < nc; i++) {
        c[i].fn(xf, w, y, 1, 0, N);
        if (memcmp(y, yc, (size_t)N * 4)) return fprintf(stderr, "bj_bench_head: %s differs from the C head\n", c[i].name), 1;
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < nc; i++) {
            double t0 = now_s();
            if (c[i].fn) c[i].fn(xf, w, y, 1, 0, N);
            else bj_rt_matmul_f(x, &node, K, N, 1, 0, N, y);
            double t1 = now_s();
            int reps = 50;
            for (int j = 0; j < reps; j++) {
                if (c[i].fn) c[i].fn(xf, w, y, 1, 0, hot);
                else bj_rt_matmul_f(x, &node, K, N, 1, 0, hot, y);
            }
            double t2 = now_s();
            double mem = (double)bytes / (t1 - t0) * 1e-9, hotv = (double)(hot * K * es) * reps / (t2 - t1) * 1e-9;
            if (mem > c[i].best_mem) c[i].best_mem = mem;
            if (hotv > c[i].best_hot) c[i].best_hot = hotv;
        }
    printf("head %lldx%lld %s, 1 thread, cpu %s, best of %d (GB/s of weights)\n", (long long)N, (long long)K,
           bj_dtype_name(dt), t.cpu, rounds);
    printf("| head | mem GB/s | hot GB/s (%lld rows) | mem vs C | hot vs C |\n| --- | ---: | ---: | ---: | ---: |\n",
           (long long)hot);
    for (int i = 0; i < nc; i++)
        printf("| %s | %.2f | %.2f | %.2fx | %.2fx |\n", c[i].name, c[i].best_mem, c[i].best_hot,
               c[i].best_mem / c[0].best_mem, c[i].best_hot / c[0].best_hot);
    bj_cg_jit_free(jit);
    free(w), free(x), free(y), free(yc), free(xf);
    return 0;
}
