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

#include <stdbool.h>
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

typedef struct bh_opts {
    int64_t N, K, hot;
    int rounds, tile, prefetch; /* tile 0, prefetch -1: the descriptor's defaults */
    bj_dtype dt;
} bh_opts;

/* false on a bad argument. */
static bool parse_args(int argc, char **argv, bh_opts *o) {
    *o = (bh_opts){ .N = 128256, .K = 2560, .hot = 192, .rounds = 5, .prefetch = -1, .dt = BJ_DT_F16 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long p, q;
        if (!strcmp(a, "--shape") && v && sscanf(v, "%lldx%lld", &p, &q) == 2) o->N = p, o->K = q, i++;
        else if (!strcmp(a, "--dtype") && v) {
            o->dt = !strcmp(v, "f32") ? BJ_DT_F32 : !strcmp(v, "bf16") ? BJ_DT_BF16 : BJ_DT_F16;
            i++;
        } else if (!strcmp(a, "--rounds") && v) o->rounds = atoi(v), i++;
        else if (!strcmp(a, "--hot-rows") && v) o->hot = atoll(v), i++;
        else if (!strcmp(a, "--tile") && v) o->tile = atoi(v), i++;
        else if (!strcmp(a, "--prefetch") && v) o->prefetch = atoi(v), i++;
        else return false;
    }
    if (o->hot > o->N) o->hot = o->N;
    return true;
}

/* bytes of pseudo-random weights in [-1, 1] as dt (f32: two finite halves a float). */
static void fill_weights(uint8_t *w, uint64_t bytes, bj_dtype dt) {
    uint64_t s = 88172645463325252ull;
    for (uint64_t i = 0; i < bytes / 2; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        float f = (float)((s >> 11) % 2001) / 1000.0f - 1.0f;
        uint16_t h = dt == BJ_DT_BF16 ? bj_f32_to_bf16(f) : bj_f32_to_f16(f);
        w[2 * i] = (uint8_t)h, w[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* The generated head on each vector path the host has, after c[0] (the C head); how many in c. */
static int add_generated(cand *c, const bh_opts *o, const bj_cg_target *t, bj_cg_cache *cache, bj_cg_jit *jit,
                         bj_error *err) {
    int nc = 1;
    const bj_cg_isa isas[] = { BJ_CG_ISA_AVX512, BJ_CG_ISA_AVX2 };
    bj_cg_head_dtype hdt = o->dt == BJ_DT_F32 ? BJ_CG_HEAD_F32 : o->dt == BJ_DT_BF16 ? BJ_CG_HEAD_BF16 : BJ_CG_HEAD_F16;
    for (int i = 0; i < 2; i++) {
        bj_cg_kdesc d;
        bj_cg_matmul_fn f;
        if (bj_cg_head_kdesc_init(&d, t, hdt, isas[i], (uint32_t)o->N, (uint32_t)o->K, err)) continue;
        if (o->tile > 0) d.tile_m = (uint8_t)o->tile;
        if (o->prefetch >= 0) d.prefetch = (uint8_t)o->prefetch;
        if (bj_cg_kernel_get(cache, jit, t, &d, NULL, &f, err)) return -1;
        c[nc].name = isas[i] == BJ_CG_ISA_AVX512 ? "generated 512-bit" : "generated 256-bit";
        c[nc++].fn = bj_cg_head_fn_of(f);
    }
    return nc;
}

/* One round: each candidate once over the whole matrix (mem), then 50 times over its hot rows;
 * the best GB/s of weights kept. */
static void time_round(cand *c, int nc, const bh_opts *o, const bj_node *node, const double *x, const float *xf,
                       float *y) {
    int64_t es = o->dt == BJ_DT_F32 ? 4 : 2, N = o->N, K = o->K;
    const uint8_t *w = node->data;
    for (int i = 0; i < nc; i++) {
        double t0 = now_s();
        if (c[i].fn) c[i].fn(xf, w, y, 1, 0, N);
        else bj_rt_matmul_f(x, node, K, N, 1, 0, N, y);
        double t1 = now_s();
        int reps = 50;
        for (int j = 0; j < reps; j++) {
            if (c[i].fn) c[i].fn(xf, w, y, 1, 0, o->hot);
            else bj_rt_matmul_f(x, node, K, N, 1, 0, o->hot, y);
        }
        double t2 = now_s();
        double mem = (double)node->nbytes / (t1 - t0) * 1e-9, hotv = (double)(o->hot * K * es) * reps / (t2 - t1) * 1e-9;
        if (mem > c[i].best_mem) c[i].best_mem = mem;
        if (hotv > c[i].best_hot) c[i].best_hot = hotv;
    }
}

static void print_table(const cand *c, int nc, const bh_opts *o, const bj_cg_target *t) {
    printf("head %lldx%lld %s, 1 thread, cpu %s, best of %d (GB/s of weights)\n", (long long)o->N, (long long)o->K,
           bj_dtype_name(o->dt), t->cpu, o->rounds);
    printf("| head | mem GB/s | hot GB/s (%lld rows) | mem vs C | hot vs C |\n| --- | ---: | ---: | ---: | ---: |\n",
           (long long)o->hot);
    for (int i = 0; i < nc; i++)
        printf("| %s | %.2f | %.2f | %.2fx | %.2fx |\n", c[i].name, c[i].best_mem, c[i].best_hot,
               c[i].best_mem / c[0].best_mem, c[i].best_hot / c[0].best_hot);
}

int main(int argc, char **argv) {
    bh_opts o;
    if (!parse_args(argc, argv, &o)) {
        fprintf(stderr, "usage: bj_bench_head [--shape NxK] [--dtype f16|bf16|f32] [--rounds R] [--hot-rows N] "
                        "[--tile M] [--prefetch P]\n");
        return 2;
    }
    int64_t N = o.N, K = o.K;
    uint64_t bytes = (uint64_t)(N * K * (o.dt == BJ_DT_F32 ? 4 : 2));
    uint8_t *w = malloc(bytes);
    double *x = malloc((size_t)K * sizeof *x);
    float *y = malloc((size_t)N * 4), *yc = malloc((size_t)N * 4), *xf = malloc((size_t)K * 4);
    if (!w || !x || !y || !yc || !xf) return fprintf(stderr, "bj_bench_head: out of memory\n"), 1;
    fill_weights(w, bytes, o.dt);
    for (int64_t k = 0; k < K; k++) x[k] = (double)((k * 37) % 101) / 50.0 - 1.0, xf[k] = (float)x[k];
    bj_node node = { .op = BJ_OP_WEIGHT, .dtype = o.dt, .shape = bj_shape2(N, K), .data = w, .nbytes = bytes, .name = "head" };

    bj_cg_target t;
    bj_cg_cache cache;
    bj_cg_jit *jit;
    bj_error err = { 0 };
    if (bj_cg_target_detect(&t, NULL, NULL, &err) || bj_cg_cache_open(&cache, NULL, &t, true, &err) ||
        bj_cg_jit_create(&jit, &err))
        return fprintf(stderr, "bj_bench_head: %s\n", err.msg), 1;
    cand c[3] = { { .name = "C (bj_rt_matmul_f)" } };
    int nc = add_generated(c, &o, &t, &cache, jit, &err);
    if (nc < 0) return fprintf(stderr, "bj_bench_head: %s\n", err.msg), 1;
    bj_rt_matmul_f(x, &node, K, N, 1, 0, N, yc);
    for (int i = 1; i < nc; i++) {
        c[i].fn(xf, w, y, 1, 0, N);
        if (memcmp(y, yc, (size_t)N * 4)) return fprintf(stderr, "bj_bench_head: %s differs from the C head\n", c[i].name), 1;
    }
    for (int r = 0; r < o.rounds; r++) time_round(c, nc, &o, &node, x, xf, y);
    print_table(c, nc, &o, &t);
    bj_cg_jit_free(jit);
    free(w), free(x), free(y), free(yc), free(xf);
    return 0;
}
