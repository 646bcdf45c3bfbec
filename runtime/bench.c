/* runtime/bench.c -- speed and bandwidth measurements (see bench.h). */
#include "runtime/bench.h"
#include "runtime/ops.h"

#include "runtime/threads.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void stat_of(const double *x, int n, bj_bench_stat *s) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    s->mean = m;
    s->sd = n > 1 ? sqrt(v / (n - 1)) : 0;
    s->n = n;
}

/* n token ids in [0, n_vocab) from a xorshift64 stream started at seed: the same every run. */
static void random_tokens(int32_t *tok, int64_t n, uint64_t seed, int64_t n_vocab) {
    uint64_t x = seed;
    for (int64_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        tok[i] = (int32_t)(x % (uint64_t)n_vocab);
    }
}

bj_status bj_bench_engine(bj_engine *e, int64_t p, int64_t n, int reps, bj_bench_stat *pp, bj_bench_stat *tg,
                          bj_error *err) {
    memset(pp, 0, sizeof *pp);
    memset(tg, 0, sizeof *tg);
    if (p + n > e->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "-p %lld + -n %lld exceed the model's context of %lld tokens",
                       (long long)p, (long long)n, (long long)e->max_seq);
    int64_t len = p > 0 ? p : 1;
    int32_t *tok = malloc((size_t)len * sizeof *tok);
    float *logits = malloc((size_t)(e->n_vocab * len) * sizeof *logits);
    double *tp = calloc((size_t)reps + 1, sizeof *tp), *tt = calloc((size_t)reps + 1, sizeof *tt);
    if (!tok || !logits || !tp || !tt) {
        free(tok); free(logits); free(tp); free(tt);
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    }
    random_tokens(tok, len, 0x9E3779B97F4A7C15ull, e->n_vocab);
    bj_status s = BJ_OK;
    for (int r = 0; r <= reps && s == BJ_OK; r++) { /* r == 0 is the warm-up */
        bj_engine_reset(e);
        double t0 = now_s();
        s = bj_engine_forward(e, tok, len, false, logits, err);
        double t1 = now_s();
        for (int64_t i = 0; i < n && s == BJ_OK; i++) s = bj_engine_forward(e, &tok[i % len], 1, false, logits, err);
        double t2 = now_s();
        if (r > 0) { tp[r - 1] = (double)len / (t1 - t0); tt[r - 1] = (double)n / (t2 - t1); }
    }
    if (s == BJ_OK && p > 0) stat_of(tp, reps, pp);
    if (s == BJ_OK && n > 0) stat_of(tt, reps, tg);
    bj_engine_reset(e);
    free(tok); free(logits); free(tp); free(tt);
    return s;
}

bj_status bj_bench_depth(bj_engine *e, int64_t depth, int64_t n, int reps, bj_bench_stat *tg, bj_error *err) {
    memset(tg, 0, sizeof *tg);
    if (depth < 0 || n < 1 || depth + n > e->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "--depth %lld + -n %lld exceed the model's context of %lld tokens",
                       (long long)depth, (long long)n, (long long)e->max_seq);
    enum { CHUNK = 512 };
    int32_t *tok = malloc(CHUNK * sizeof *tok);
    float *logits = malloc((size_t)e->n_vocab * sizeof *logits);
    double *tt = calloc((size_t)reps + 1, sizeof *tt);
    if (!tok || !logits || !tt) {
        free(tok); free(logits); free(tt);
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    }
    random_tokens(tok, CHUNK, 0xD1B54A32D192ED03ull, e->n_vocab);
    bj_status s = BJ_OK;
    for (int r = 0; r <= reps && s == BJ_OK; r++) { /* r == 0 is the warm-up */
        bj_engine_reset(e);
        for (int64_t d = 0; d < depth && s == BJ_OK; d += CHUNK) {
            int64_t len = depth - d < CHUNK ? depth - d : CHUNK;
            s = bj_engine_forward(e, tok, len, false, logits, err);
        }
        double t0 = now_s();
        for (int64_t i = 0; i < n && s == BJ_OK; i++) s = bj_engine_forward(e, &tok[i % CHUNK], 1, false, logits, err);
        double t1 = now_s();
        if (r > 0) tt[r - 1] = (double)n / (t1 - t0);
    }
    if (s == BJ_OK) stat_of(tt, reps, tg);
    bj_engine_reset(e);
    free(tok); free(logits); free(tt);
    return s;
}

/* ---- bandwidth ------------------------------------------------------------------------- */
typedef uint64_t bj_v4u64 __attribute__((vector_size(32), aligned(32)));

typedef struct bw_ctx { const bj_v4u64 *buf; size_t n; uint64_t sink[64]; } bw_ctx;

/* Streams this thread's share with four independent accumulators. */
static void bw_read(void *ctx, int ith, int nth) {
    bw_ctx *c = ctx;
    int64_t a, b;
    bj_pool_split((int64_t)c->n, 4, ith, nth, &a, &b);
    bj_v4u64 s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
    for (int64_t i = a; i + 3 < b; i += 4) {
        s0 += c->buf[i];
        s1 += c->buf[i + 1];
        s2 += c->buf[i + 2];
        s3 += c->buf[i + 3];
    }
    bj_v4u64 s = s0 ^ s1 ^ s2 ^ s3;
    c->sink[ith % 64] = s[0] ^ s[1] ^ s[2] ^ s[3];
}

static void bw_fill(void *ctx, int ith, int nth) { /* first touch on the thread that reads it */
    bw_ctx *c = ctx;
    int64_t a, b;
    bj_pool_split((int64_t)c->n, 4, ith, nth, &a, &b);
    memset((void *)(c->buf + a), 1, (size_t)(b - a) * sizeof *c->buf);
}

bj_status bj_bench_bandwidth(int n_threads, size_t bytes, int reps, double *gbps, bj_error *err) {
    bj_pool *pool;
    BJ_TRY(bj_pool_create(&pool, n_threads, err));
    bw_ctx c = { .n = bytes / sizeof(bj_v4u64) };
    bj_v4u64 *buf = aligned_alloc(64, c.n * sizeof *buf);
    if (!buf) { bj_pool_free(pool); return BJ_FAIL(err, BJ_E_NOMEM, "cannot allocate %zu bytes", bytes); }
    c.buf = buf;
    bj_pool_run(pool, bw_fill, &c);
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        bj_pool_run(pool, bw_read, &c);
        double t = now_s() - t0;
        best = fmax(best, (double)(c.n * sizeof *buf) / t * 1e-9);
    }
    free(buf);
    bj_pool_free(pool);
    *gbps = best;
    return BJ_OK;
}

uint64_t bj_bench_bytes_per_token(const bj_graph *g, uint64_t packed_lowbit_bytes, bool head_q8, int64_t pos, int kv) {
    uint64_t bytes = packed_lowbit_bytes;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op == BJ_OP_ATTENTION) bytes += 2 * (uint64_t)pos * (uint64_t)(n->iattr[2] * n->iattr[3]) * bj_rt_kv_elem_bytes(kv);
        if (n->op != BJ_OP_WEIGHT || bj_dtype_is_lowbit(n->dtype)) continue;
        /* A float weight is read whole by a head or a norm, one row per token by an embedding,
         * and not at all per token when it is a master that weight_quant folds once. */
        bool whole = false, row = false, head = false;
        for (uint32_t j = i + 1; j < g->n_nodes; j++)
            for (int k = 0; k < g->nodes[j].nin; k++) {
                if (g->nodes[j].in[k] != i) continue;
                if (g->nodes[j].op == BJ_OP_EMBED) row = true;
                else if (g->nodes[j].op == BJ_OP_MATMUL_F && k == 1) head = true;
                else if (g->nodes[j].op != BJ_OP_WEIGHT_QUANT) whole = true;
            }
        if (head && head_q8) bytes += bj_rt_q8w_bytes(n->shape.d[0], n->shape.d[1]);
        else if (whole || head) bytes += n->nbytes;
        else if (row) bytes += n->nbytes / (uint64_t)n->shape.d[0];
    }
    return bytes;
}

uint64_t bj_bench_resident_need(const bj_graph *g, uint64_t packed_lowbit_bytes, bool head_q8, int64_t ctx, int kv) {
    return bj_bench_bytes_per_token(g, packed_lowbit_bytes, head_q8, ctx, kv);
}

void bj_bench_mem_read(bj_bench_mem *m) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) m->peak = kb * 1024;
        else if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) m->rss = kb * 1024;
        else if (sscanf(line, "RssAnon: %llu kB", &kb) == 1) m->anon = kb * 1024;
        else if (sscanf(line, "RssFile: %llu kB", &kb) == 1) m->file = kb * 1024;
    }
    fclose(f);
}

bool bj_bench_mem_reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}
