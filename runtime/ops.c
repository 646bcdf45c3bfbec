/* runtime/ops.c -- the plain C ops every engine shares (see ops.h).
 * Activations are f64 and every op fixes its own summation order, so all engines give the
 * same bits. Where the arithmetic is narrower on purpose (the f32 KV cache, the LM head's f32
 * dots) the function says so; docs/numerics.md says why the rest is f64. */
#include "runtime/ops.h"

#include "ir/weights.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* BJ_HOT (ir/support.h): the hot loops below get an AVX2 clone. */

#define BJ_STACK_ROW 8192 /* rows of up to this many floats are converted on the stack */

/* A row buffer of n floats: stack (BJ_STACK_ROW of them) when it fits, else the heap; release
 * with row_free(buf, stack). */
static float *row_buf(float *stack, int64_t n) {
    float *b = n <= BJ_STACK_ROW ? stack : malloc((size_t)n * sizeof *b);
    BJ_ASSERT(b);
    return b;
}

static void row_free(float *b, const float *stack) {
    if (b != stack) free(b);
}

/* Float weights' rows convert with ir/weights.c's bj_ir_float_row (F16C where the CPU has it),
 * the rule the quantize-head pass converts the 8-bit head with too. */

/* sum_k a[k] * b[k] in f32 for the LM head's dots (K = 2560 for 2B4T, 128256 of them per
 * token), where double was 10x slower. Lane j sums the products with k = j (mod 32) in order,
 * the lanes fold by halving, and the tail (n mod 32) is added last. Every variant below keeps
 * exactly this order, so all of them (and both engines) give the same bits. */
#define BJ_DOT_LANES 32

static float dot_fold(float *s, float tail) {
    for (int w = BJ_DOT_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) s[j] += s[j + w];
    return s[0] + tail;
}

BJ_HOT static float dot_f32(const float *a, const float *b, int64_t n) {
    float s[BJ_DOT_LANES] = { 0 }, tail = 0;
    int64_t k = 0;
    for (; k + BJ_DOT_LANES <= n; k += BJ_DOT_LANES)
        for (int j = 0; j < BJ_DOT_LANES; j++) s[j] += a[k + j] * b[k + j];
    for (; k < n; k++) tail += a[k] * b[k];
    return dot_fold(s, tail);
}

/* Software prefetch distance of the head's streaming dots, in bytes: the rows are read once
 * and sequentially, from 4 KiB pages (an mmap of the model file) at whose boundaries the
 * hardware prefetcher stops; running this far ahead keeps the next page's lines in flight. */
#define BJ_HEAD_PREFETCH 4096

#if defined(__x86_64__) && defined(__GNUC__)
/* The same dot against an F16 row, converting in registers (decode reads the head once, so
 * converting into a buffer first doubled its memory traffic). Multiply then add, no FMA. */
__attribute__((target("avx,f16c"))) static float dot_f16_f16c(const float *a, const uint8_t *w, int64_t n) {
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    int64_t k = 0;
    for (; k + BJ_DOT_LANES <= n; k += BJ_DOT_LANES) {
        _mm_prefetch((const char *)(w + 2 * k + BJ_HEAD_PREFETCH), _MM_HINT_T0); /* one 64-byte line a step */
        for (int q = 0; q < 4; q++) {
            __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + 2 * (k + 8 * q))));
            acc[q] = _mm256_add_ps(acc[q], _mm256_mul_ps(_mm256_loadu_ps(a + k + 8 * q), wv));
        }
    }
    float s[BJ_DOT_LANES], tail = 0;
    for (int q = 0; q < 4; q++) _mm256_storeu_ps(s + 8 * q, acc[q]);
    for (; k < n; k++) tail += a[k] * bj_f16_to_f32(bj_rd16(w + 2 * k));
    return dot_fold(s, tail);
}
#endif

/* The f64 sums below run over 8 independent lanes (lane j: index j mod 8), combined pairwise,
 * then the tail: the order is fixed by this code (not by the compiler), so every engine gets
 * the same bits, and the lanes let the loops run at throughput rather than at add latency. */
static inline double lanes8(const double s[8], double tail) {
    return (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))) + tail;
}

/* fmax(amax, fabs(v)) for amax >= 0, inline (GCC calls libm's fmaxf to honour NaNs; a NaN
 * v leaves amax as fmaxf does, since the comparison is false). The f32 twin is ir/weights.c's. */
static inline double absmax_step(double amax, double v) {
    double a = fabs(v);
    return a > amax ? a : amax;
}

/* ---- ops --------------------------------------------------------------------------------- */
/* The f32 (or narrower) values of a weight row, widened: exact. */
BJ_HOT static void widen(const float *x, int64_t n, double *y) {
    for (int64_t k = 0; k < n; k++) y[k] = x[k];
}

/* Activations rounded to f32 (round to nearest), for the LM head's f32 arithmetic. */
BJ_HOT static void narrow(const double *x, int64_t n, float *y) {
    for (int64_t k = 0; k < n; k++) y[k] = (float)x[k];
}

void bj_rt_embed(const bj_node *table, const int32_t *tokens, int64_t t0, int64_t t1, double *y) {
    int64_t D = table->shape.d[1];
    float stack_row[BJ_STACK_ROW], *row = row_buf(stack_row, D);
    for (int64_t t = t0; t < t1; t++) {
        bj_ir_float_row(table->dtype, table->data, (uint64_t)(tokens[t] * D), D, row);
        widen(row, D, y + t * D);
    }
    row_free(row, stack_row);
}

/* RMSNorm in f64: mean = (sum of x^2) * (1/D), r = 1/sqrt(mean + eps), y = w * (x * r). The
 * squares are summed in lanes8's order. The norm weight is converted once per call (load_row,
 * exact). */
BJ_HOT static void rmsnorm_rows(const double *x, const float *wr, double eps, int64_t D, int64_t t0, int64_t t1,
                                double *y) {
    for (int64_t t = t0; t < t1; t++) {
        const double *xr = x + t * D;
        double s8[8] = { 0 }, tail = 0;
        int64_t d = 0;
        for (; d + 8 <= D; d += 8)
            for (int j = 0; j < 8; j++) s8[j] += xr[d + j] * xr[d + j];
        for (; d < D; d++) tail += xr[d] * xr[d];
        double r = 1.0 / sqrt(lanes8(s8, tail) * (1.0 / (double)D) + eps);
        for (d = 0; d < D; d++) y[t * D + d] = wr[d] * (xr[d] * r);
    }
}

void bj_rt_rmsnorm(const double *x, const bj_node *w, double eps, int64_t D, int64_t t0, int64_t t1, double *y) {
    float stack_w[BJ_STACK_ROW], *wr = row_buf(stack_w, D);
    bj_ir_float_row(w->dtype, w->data, 0, D, wr);
    rmsnorm_rows(x, wr, eps, D, t0, t1, y);
    row_free(wr, stack_w);
}

/* s = 127 / max(max|x|, 1e-5), q = clamp(rint(x * s), -128, 127), all in f64. max|x| runs
 * over 8 lanes (a max is exact: any order gives the same value), so the comparisons do not
 * form one serial chain (that took 5 us for 2560 values); act_amax folds the lanes m8 and
 * the values x[k..K) the lanes did not take, act_scale and act_q are the rest of the rule. */
static inline double act_amax(const double m8[8], const double *x, int64_t k, int64_t K) {
    double amax = 0;
    for (int j = 0; j < 8; j++) amax = absmax_step(amax, m8[j]);
    for (; k < K; k++) amax = absmax_step(amax, x[k]);
    return amax;
}

static inline double act_scale(double amax) { return 127.0 / (amax > 1e-5 ? amax : 1e-5); }

static inline int8_t act_q(double x, double sc) {
    double r = rint(x * sc); /* half to even, as torch.round */
    r = r > 127 ? 127 : r;
    r = r < -128 ? -128 : r;
    return (int8_t)(int32_t)r;
}

/* The rule in plain C (CPUs without AVX2). */
static void act_quant_row(const double *xr, int64_t K, int8_t *qr, double *qs) {
    double m8[8] = { 0 };
    int64_t k0 = 0;
    for (; k0 + 8 <= K; k0 += 8)
        for (int j = 0; j < 8; j++) m8[j] = absmax_step(m8[j], xr[k0 + j]);
    double sc = act_scale(act_amax(m8, xr, k0, K));
    for (int64_t k = 0; k < K; k++) qr[k] = act_q(xr[k], sc);
    *qs = sc;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same row with AVX2 intrinsics: GCC's vectorization of the loops above kept the max
 * scalar and spent a dozen shuffles and blends a vector on the int8 narrowing (1 ns a value,
 * 2.5 us for 2560, in cache). Same values: vmaxpd(|x|, m) keeps m when |x| is NaN as
 * absmax_step does; vroundpd in the current mode is rint; vminpd(127, r) and vmaxpd(-128, r)
 * keep a NaN r as the compares above do; cvttpd truncates (r is integral) and the byte shuffle
 * takes the low byte of each int32, as the (int8_t) conversion does. */
__attribute__((target("avx2"))) static void act_quant_row_avx2(const double *xr, int64_t K, int8_t *qr, double *qs) {
    __m256d sign = _mm256_set1_pd(-0.0), m0 = _mm256_setzero_pd(), m1 = _mm256_setzero_pd();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        m0 = _mm256_max_pd(_mm256_andnot_pd(sign, _mm256_loadu_pd(xr + k)), m0);
        m1 = _mm256_max_pd(_mm256_andnot_pd(sign, _mm256_loadu_pd(xr + k + 4)), m1);
    }
    double m8[8];
    _mm256_storeu_pd(m8, m0);
    _mm256_storeu_pd(m8 + 4, m1);
    double sc = act_scale(act_amax(m8, xr, k, K));
    __m256d vs = _mm256_set1_pd(sc), hi = _mm256_set1_pd(127), lo = _mm256_set1_pd(-128);
    __m128i low = _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    for (k = 0; k + 16 <= K; k += 16) {
        __m128i b[4];
        for (int i = 0; i < 4; i++) {
            __m256d r = _mm256_round_pd(_mm256_mul_pd(_mm256_loadu_pd(xr + k + 4 * i), vs), _MM_FROUND_CUR_DIRECTION);
            r = _mm256_max_pd(lo, _mm256_min_pd(hi, r));
            b[i] = _mm_shuffle_epi8(_mm256_cvttpd_epi32(r), low); /* 4 bytes in the low dword */
        }
        __m128i v = _mm_unpacklo_epi64(_mm_unpacklo_epi32(b[0], b[1]), _mm_unpacklo_epi32(b[2], b[3]));
        _mm_storeu_si128((__m128i *)(void *)(qr + k), v);
    }
    for (; k < K; k++) qr[k] = act_q(xr[k], sc);
    *qs = sc;
}
#endif

void bj_rt_act_quant(const double *x, int64_t K, int64_t qstride, int64_t t0, int64_t t1, int8_t *q, double *qs) {
    void (*row)(const double *, int64_t, int8_t *, double *) = act_quant_row;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2")) row = act_quant_row_avx2;
#endif
    for (int64_t t = t0; t < t1; t++) {
        row(x + t * K, K, q + t * qstride, &qs[t]);
        memset(q + t * qstride + K, 0, (size_t)(qstride - K));
    }
}

BJ_HOT void bj_rt_rescale(const int32_t *acc, const double *qs, double scale, int64_t N, int64_t t0, int64_t t1,
                          int64_t n0, int64_t n1, double *y) {
    for (int64_t t = t0; t < t1; t++)
        for (int64_t n = n0; n < n1; n++) y[t * N + n] = (double)acc[t * N + n] / qs[t] * scale;
}

void bj_rt_matmul_t8(const int8_t *q, int64_t qstride, const int8_t *w, int64_t K, int64_t N, int64_t t0,
                     int64_t t1, int64_t n0, int64_t n1, int32_t *acc) {
    for (int64_t t = t0; t < t1; t++)
        for (int64_t n = n0; n < n1; n++) {
            int32_t a = 0; /* ternary x int8: adds and subtracts, exact */
            for (int64_t k = 0; k < K; k++) a += w[n * K + k] * q[t * qstride + k];
            acc[t * N + n] = a;
        }
}


/* x rounded to f32 (T x K) in row_buf(stack, T * K). */
static float *narrow_rows(const double *x, int64_t T, int64_t K, float *stack) {
    float *xf = row_buf(stack, T * K);
    narrow(x, T * K, xf);
    return xf;
}

void bj_rt_matmul_f(const double *x, const bj_node *w, int64_t K, int64_t N, int64_t T, int64_t n0, int64_t n1,
                    float *y) {
    float stack_x[BJ_STACK_ROW], *xf = narrow_rows(x, T, K, stack_x);
#if defined(__x86_64__) && defined(__GNUC__)
    if (T == 1 && w->dtype == BJ_DT_F16 && __builtin_cpu_supports("f16c")) { /* decode: one pass */
        for (int64_t n = n0; n < n1; n++) y[n] = dot_f16_f16c(xf, (const uint8_t *)w->data + 2 * n * K, K);
        row_free(xf, stack_x);
        return;
    }
#endif
    float stack_row[BJ_STACK_ROW], *row = row_buf(stack_row, K);
    for (int64_t n = n0; n < n1; n++) {
        bj_ir_float_row(w->dtype, w->data, (uint64_t)(n * K), K, row);
        for (int64_t t = 0; t < T; t++) y[t * N + n] = dot_f32(xf + t * K, row, K);
    }
    row_free(row, stack_row);
    row_free(xf, stack_x);
}

void bj_rt_matmul_f_fn(bj_rt_head_fn fn, const double *x, const bj_node *w, int64_t K, int64_t T, int64_t n0,
                       int64_t n1, float *y) {
    float stack_x[BJ_STACK_ROW], *xf = narrow_rows(x, T, K, stack_x);
    fn(xf, w->data, y, T, n0, n1);
    row_free(xf, stack_x);
}

/* ---- the 8-bit head (its rule: ir/weights.c bj_ir_q8_row, shared with the quantize-head pass) ---- */
uint64_t bj_rt_q8w_bytes(int64_t N, int64_t K) { return (uint64_t)N * (uint64_t)bj_ir_q8_stride(K) + (uint64_t)N * 4; }

bj_status bj_rt_q8w_alloc(bj_rt_q8w *w, const bj_node *weight, bj_error *err) {
    memset(w, 0, sizeof *w);
    w->N = weight->shape.d[0];
    w->K = weight->shape.d[1];
    w->stride = bj_ir_q8_stride(w->K);
    w->q = malloc((size_t)(w->N * w->stride));
    w->d = malloc((size_t)w->N * sizeof *w->d);
    if (!w->q || !w->d) {
        bj_rt_q8w_free(w);
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the 8-bit copy of '%s' (%lld x %lld)",
                       weight->name ? weight->name : "?", (long long)weight->shape.d[0], (long long)weight->shape.d[1]);
    }
    return BJ_OK;
}

void bj_rt_q8w_rows(bj_rt_q8w *w, const bj_node *weight, int64_t n0, int64_t n1) {
    bj_ir_q8_rows(weight, n0, n1, w->stride, w->q, w->d);
}

bj_status bj_rt_q8w_make(bj_rt_q8w *w, const bj_node *weight, bj_error *err) {
    BJ_TRY(bj_rt_q8w_alloc(w, weight, err));
    bj_rt_q8w_rows(w, weight, 0, w->N);
    return BJ_OK;
}

void bj_rt_q8w_free(bj_rt_q8w *w) {
    free(w->q);
    free(w->d);
    memset(w, 0, sizeof *w);
}

/* sum_k a[k] * b[k] over int8 in [-127, 127], n a multiple of 32: exact in int32. */
BJ_HOT static int32_t dot_i8(const int8_t *a, const int8_t *b, int64_t n) {
    int32_t s = 0;
    for (int64_t k = 0; k < n; k++) s += (int16_t)a[k] * (int16_t)b[k];
    return s;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same with AVX2's unsigned x signed byte products: |a| times b with a's sign moved onto
 * b (pairs of products fit int16: 2 * 127 * 127 < 32768), then widened to int32. */
__attribute__((target("avx2"))) static inline __m256i dot_i8_step(__m256i acc, const int8_t *a, const int8_t *b) {
    __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)a);
    __m256i y = _mm256_loadu_si256((const __m256i *)(const void *)b);
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(y, x));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Two independent accumulators over 64-byte steps, the weight row prefetched ahead (integer
 * sums: any order gives the same result). */
__attribute__((target("avx2"))) static int32_t dot_i8_avx2(const int8_t *a, const int8_t *b, int64_t n) {
    __m256i acc = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
    int64_t k = 0;
    for (; k + 64 <= n; k += 64) {
        _mm_prefetch((const char *)(b + k + BJ_HEAD_PREFETCH), _MM_HINT_T0);
        acc = dot_i8_step(acc, a + k, b + k);
        acc2 = dot_i8_step(acc2, a + k + 32, b + k + 32);
    }
    if (k < n) acc = dot_i8_step(acc, a + k, b + k);
    acc = _mm256_add_epi32(acc, acc2);
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    return _mm_cvtsi128_si32(h);
}
#endif

void bj_rt_matmul_q8(const double *x64, const bj_rt_q8w *w, int64_t T, int64_t n0, int64_t n1, float *y) {
    int64_t K = w->K, S = w->stride;
    float stack_x[BJ_STACK_ROW], *x = narrow_rows(x64, T, K, stack_x);
    int8_t stack_q[BJ_STACK_ROW];
    float stack_d[BJ_STACK_ROW / 256];
    bool small = T * S <= BJ_STACK_ROW && T <= BJ_STACK_ROW / 256; /* decode: no malloc per call */
    int8_t *xq = small ? stack_q : malloc((size_t)(T * S));
    float *xd = small ? stack_d : malloc((size_t)T * sizeof *xd);
    BJ_ASSERT(xq && xd);
    for (int64_t t = 0; t < T; t++) xd[t] = bj_ir_q8_row(x + t * K, K, S, xq + t * S);
    int32_t (*dot)(const int8_t *, const int8_t *, int64_t) = dot_i8;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2")) dot = dot_i8_avx2;
#endif
    for (int64_t n = n0; n < n1; n++) {
        const int8_t *wr = w->q + n * S;
        for (int64_t t = 0; t < T; t++) y[t * w->N + n] = (float)dot(xq + t * S, wr, S) * (xd[t] * w->d[n]);
    }
    if (!small) {
        free(xq);
        free(xd);
    }
    row_free(x, stack_x);
}

/* RoPE's cos and sin of one position, as bj_rt_rope computes them, kept for the last
 * (theta, head_dim, position) this thread asked for: the 2 x n_layer rope calls of a decode
 * step share one position (they were 3% of a 2B4T decode step at 16 threads, in powf, cosf
 * and sinf). Same values, computed once. */
#define BJ_ROPE_MAXHALF 128

typedef struct rope_angles {
    double theta;
    int64_t head_dim, pos;
    double c[BJ_ROPE_MAXHALF], s[BJ_ROPE_MAXHALF];
} rope_angles;

static _Thread_local rope_angles rope_last = { .head_dim = -1 };

static void rope_angle(double theta, int64_t head_dim, int64_t i, float pos, double *c, double *sn) {
    float inv = 1.0f / powf((float)theta, (float)(2 * i) / (float)head_dim);
    *c = cosf(pos * inv);
    *sn = sinf(pos * inv);
}

static const rope_angles *rope_angles_of(double theta, int64_t head_dim, int64_t pos) {
    rope_angles *a = &rope_last;
    if (a->head_dim != head_dim || a->pos != pos || a->theta != theta) {
        for (int64_t i = 0; i < head_dim / 2; i++) rope_angle(theta, head_dim, i, (float)pos, &a->c[i], &a->s[i]);
        a->theta = theta;
        a->head_dim = head_dim;
        a->pos = pos;
    }
    return a;
}

/* HF rotate_half: pairs (i, i + d/2) rotated by pos * theta^(-2i/d); the angles, their cos
 * and sin in f32 as HF computes them, the rotation in f64. */
void bj_rt_rope(const double *x, int64_t n_head, int64_t head_dim, double theta, int64_t pos0, int64_t t0,
                int64_t t1, double *y) {
    int64_t half = head_dim / 2, W = n_head * head_dim;
    for (int64_t t = t0; t < t1; t++) {
        const rope_angles *ang = half <= BJ_ROPE_MAXHALF ? rope_angles_of(theta, head_dim, pos0 + t) : NULL;
        for (int64_t i = 0; i < half; i++) {
            double c, sn;
            if (ang) {
                c = ang->c[i];
                sn = ang->s[i];
            } else {
                rope_angle(theta, head_dim, i, (float)(pos0 + t), &c, &sn);
            }
            for (int64_t h = 0; h < n_head; h++) {
                const double *a = x + t * W + h * head_dim;
                double *o = y + t * W + h * head_dim;
                double a_c = a[i] * c, b_s = a[i + half] * sn, b_c = a[i + half] * c, a_s = a[i] * sn;
                o[i] = a_c - b_s;
                o[i + half] = b_c + a_s;
            }
        }
    }
}

/* ---- the KV cache and attention ---------------------------------------------------------------
 * The cache holds f32 or f16 values (bj_kv_type, runtime.h): each stored value is rounded to
 * f32, then for f16 to f16 (both to nearest even), and read back as f64 exactly either way
 * (kv_at, cvt4). So the arithmetic below is one piece of code for both types: each body is
 * always_inline with the type as a constant flag h, and instantiated once per type. */
#define BJ_KV_INLINE static inline __attribute__((always_inline))

size_t bj_rt_kv_elem_bytes(int kv) { return kv == 1 ? 2 : 4; }

void bj_rt_kv_store(const double *k, const double *v, int64_t width, int64_t pos0, int64_t t0, int64_t t1, int kv,
                    void *kc, void *vc) {
    if (kv == 1) {
        uint16_t *kh = kc, *vh = vc;
        for (int64_t i = t0 * width; i < t1 * width; i++) {
            kh[pos0 * width + i] = bj_f32_to_f16((float)k[i]);
            vh[pos0 * width + i] = bj_f32_to_f16((float)v[i]);
        }
        return;
    }
    float *kf = kc, *vf = vc;
    for (int64_t i = t0 * width; i < t1 * width; i++) {
        kf[pos0 * width + i] = (float)k[i];
        vf[pos0 * width + i] = (float)v[i];
    }
}

/* Element i of a cache row block, exactly. */
BJ_KV_INLINE double kv_at(const void *b, int64_t i, bool h) {
    return h ? (double)bj_f16_to_f32(((const uint16_t *)b)[i]) : (double)((const float *)b)[i];
}

/* sum_k a[k] * b[o + k * bstride] in that order. */
BJ_KV_INLINE double dot_kv(const double *a, const void *b, int64_t o, int64_t n, int64_t bstride, bool h) {
    double s[8] = { 0 }, tail = 0;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) s[j] += a[k + j] * kv_at(b, o + (k + j) * bstride, h);
    for (; k < n; k++) tail += a[k] * kv_at(b, o + k * bstride, h);
    return lanes8(s, tail);
}

/* o[i] = sum_j p[j] * v[j * Wkv + i] for i < d, in dot_kv's order (lane j mod 8 in position
 * order, lanes combined pairwise, the tail of L mod 8 positions last), but walking each cached
 * v row contiguously: the same bits as d strided dot_kv calls, without their cache misses.
 * v's rows start at element vo. */
#define BJ_ATT_MAXD 256

BJ_KV_INLINE void pv_kv(const double *p, const void *v, int64_t vo, int64_t L, int64_t Wkv, int64_t d, double *o, bool h) {
    double s[8][BJ_ATT_MAXD], tail[BJ_ATT_MAXD];
    for (int j = 0; j < 8; j++)
        for (int64_t i = 0; i < d; i++) s[j][i] = 0;
    for (int64_t i = 0; i < d; i++) tail[i] = 0;
    int64_t k = 0;
    for (; k + 8 <= L; k += 8)
        for (int j = 0; j < 8; j++) {
            double pk = p[k + j];
            int64_t r = vo + (k + j) * Wkv;
            for (int64_t i = 0; i < d; i++) s[j][i] += pk * kv_at(v, r + i, h);
        }
    for (; k < L; k++) {
        double pk = p[k];
        int64_t r = vo + k * Wkv;
        for (int64_t i = 0; i < d; i++) tail[i] += pk * kv_at(v, r + i, h);
    }
    for (int64_t i = 0; i < d; i++)
        o[i] = (((s[0][i] + s[1][i]) + (s[2][i] + s[3][i])) + ((s[4][i] + s[5][i]) + (s[6][i] + s[7][i]))) + tail[i];
}

/* p[j] = (q . k_j) / sqrt_d for the keys j < L (row j at element ko + j * Wkv), each dot in
 * dot_kv's order. */
BJ_KV_INLINE void scores_kv(const double *qr, const void *kh, int64_t ko, int64_t L, int64_t Wkv, int64_t d,
                            double sqrt_d, double *p, bool h) {
    for (int64_t j = 0; j < L; j++) p[j] = dot_kv(qr, kh, ko + j * Wkv, d, 1, h) / sqrt_d;
}

typedef void (*bj_att_scores_fn)(const double *, const void *, int64_t, int64_t, int64_t, int64_t, double, double *);
typedef void (*bj_att_pv_fn)(const double *, const void *, int64_t, int64_t, int64_t, int64_t, double *);

static void scores_f32(const double *qr, const void *kh, int64_t ko, int64_t L, int64_t Wkv, int64_t d, double sqrt_d,
                       double *p) {
    scores_kv(qr, kh, ko, L, Wkv, d, sqrt_d, p, false);
}
static void scores_f16(const double *qr, const void *kh, int64_t ko, int64_t L, int64_t Wkv, int64_t d, double sqrt_d,
                       double *p) {
    scores_kv(qr, kh, ko, L, Wkv, d, sqrt_d, p, true);
}
BJ_HOT static void pv_f32(const double *p, const void *v, int64_t vo, int64_t L, int64_t Wkv, int64_t d, double *o) {
    pv_kv(p, v, vo, L, Wkv, d, o, false);
}
BJ_HOT static void pv_f16(const double *p, const void *v, int64_t vo, int64_t L, int64_t Wkv, int64_t d, double *o) {
    pv_kv(p, v, vo, L, Wkv, d, o, true);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The functions above with AVX2 intrinsics, same bits: a __m256d holds lanes 0-3 or 4-7
 * of dot_kv's eight (vmulpd then vaddpd, never an FMA; vcvtps2pd widens f32 exactly, and
 * vcvtph2ps f16), and fold8 combines them in lanes8's order. GCC left the scores scalar and kept
 * pv_kv's accumulators in memory (21 ms a layer for a 128-token 2B4T prompt, 18% of its prefill). */
#define BJ_KV_AVX2 __attribute__((target("avx2,f16c")))
BJ_KV_AVX2 BJ_KV_INLINE __m256d cvt4(const void *b, int64_t i, bool h) {
    if (h) return _mm256_cvtps_pd(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)((const uint16_t *)b + i))));
    return _mm256_cvtps_pd(_mm_loadu_ps((const float *)b + i));
}

BJ_KV_AVX2 BJ_KV_INLINE double fold8(__m256d lo, __m256d hi, double tail) {
    __m256d x = _mm256_hadd_pd(lo, hi); /* s0+s1, s4+s5, s2+s3, s6+s7 */
    __m128d y = _mm_add_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
    return (_mm_cvtsd_f64(y) + _mm_cvtsd_f64(_mm_unpackhi_pd(y, y))) + tail;
}

/* One step of a dot's lanes: lo/hi += q * k for 8 values (lanes 0-3, 4-7) of the key at kr. */
#define BJ_ATT_STEP(lo, hi, q0, q1, kr)                                            \
    do {                                                                           \
        (lo) = _mm256_add_pd((lo), _mm256_mul_pd((q0), cvt4(kh, (kr) + k, h)));     \
        (hi) = _mm256_add_pd((hi), _mm256_mul_pd((q1), cvt4(kh, (kr) + k + 4, h))); \
    } while (0)

/* Four keys at a time (independent add chains; each q load serves four), spelled out so that
 * GCC keeps the eight accumulators in registers. */
BJ_KV_AVX2 BJ_KV_INLINE void scores_avx2(const double *qr, const void *kh, int64_t ko, int64_t L, int64_t Wkv,
                                         int64_t d, double sqrt_d, double *p, bool h) {
    int64_t d8 = d & ~(int64_t)7;
    for (int64_t j = 0; j < L; j += 4) {
        int nk = L - j < 4 ? (int)(L - j) : 4;
        int64_t k0 = ko + j * Wkv, k1 = nk > 1 ? k0 + Wkv : k0, k2 = nk > 2 ? k0 + 2 * Wkv : k0,
                k3 = nk > 3 ? k0 + 3 * Wkv : k0; /* a short block repeats its first key */
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, e0 = a0, e1 = a0;
        for (int64_t k = 0; k < d8; k += 8) {
            __m256d q0 = _mm256_loadu_pd(qr + k), q1 = _mm256_loadu_pd(qr + k + 4);
            BJ_ATT_STEP(a0, a1, q0, q1, k0);
            BJ_ATT_STEP(b0, b1, q0, q1, k1);
            BJ_ATT_STEP(c0, c1, q0, q1, k2);
            BJ_ATT_STEP(e0, e1, q0, q1, k3);
        }
        __m256d lo[4] = { a0, b0, c0, e0 }, hi[4] = { a1, b1, c1, e1 };
        const int64_t kr[4] = { k0, k1, k2, k3 };
        for (int r = 0; r < nk; r++) {
            double tail = 0;
            for (int64_t k = d8; k < d; k++) tail += qr[k] * kv_at(kh, kr[r] + k, h);
            p[j + r] = fold8(lo[r], hi[r], tail) / sqrt_d;
        }
    }
}

/* pv_kv for d a multiple of 16: 16 outputs at a time, two lanes' accumulators in registers
 * (lane l sums positions l, l + 8, ... as pv_kv's s[l] does), then the pairwise combination
 * and the tail, elementwise. */
BJ_KV_AVX2 BJ_KV_INLINE void pv_avx2(const double *p, const void *v, int64_t vo, int64_t L, int64_t Wkv, int64_t d,
                                     double *o, bool h) {
    int64_t L8 = L & ~(int64_t)7;
    for (int64_t i0 = 0; i0 < d; i0 += 16) {
        double s[8][16];
        for (int l = 0; l < 8; l += 2) {
            __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int64_t k = 0; k < L8; k += 8) {
                __m256d pa = _mm256_set1_pd(p[k + l]), pb = _mm256_set1_pd(p[k + l + 1]);
                int64_t va = vo + (k + l) * Wkv + i0, vb = va + Wkv;
                a0 = _mm256_add_pd(a0, _mm256_mul_pd(pa, cvt4(v, va, h)));
                b0 = _mm256_add_pd(b0, _mm256_mul_pd(pb, cvt4(v, vb, h)));
                a1 = _mm256_add_pd(a1, _mm256_mul_pd(pa, cvt4(v, va + 4, h)));
                b1 = _mm256_add_pd(b1, _mm256_mul_pd(pb, cvt4(v, vb + 4, h)));
                a2 = _mm256_add_pd(a2, _mm256_mul_pd(pa, cvt4(v, va + 8, h)));
                b2 = _mm256_add_pd(b2, _mm256_mul_pd(pb, cvt4(v, vb + 8, h)));
                a3 = _mm256_add_pd(a3, _mm256_mul_pd(pa, cvt4(v, va + 12, h)));
                b3 = _mm256_add_pd(b3, _mm256_mul_pd(pb, cvt4(v, vb + 12, h)));
            }
            _mm256_storeu_pd(s[l], a0), _mm256_storeu_pd(s[l] + 4, a1);
            _mm256_storeu_pd(s[l] + 8, a2), _mm256_storeu_pd(s[l] + 12, a3);
            _mm256_storeu_pd(s[l + 1], b0), _mm256_storeu_pd(s[l + 1] + 4, b1);
            _mm256_storeu_pd(s[l + 1] + 8, b2), _mm256_storeu_pd(s[l + 1] + 12, b3);
        }
        for (int q = 0; q < 16; q += 4) {
            __m256d t = _mm256_setzero_pd();
            for (int64_t k = L8; k < L; k++)
                t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_set1_pd(p[k]), cvt4(v, vo + k * Wkv + i0 + q, h)));
#define BJ_S(l) _mm256_loadu_pd(s[l] + q)
            __m256d x = _mm256_add_pd(_mm256_add_pd(_mm256_add_pd(BJ_S(0), BJ_S(1)), _mm256_add_pd(BJ_S(2), BJ_S(3))),
                                      _mm256_add_pd(_mm256_add_pd(BJ_S(4), BJ_S(5)), _mm256_add_pd(BJ_S(6), BJ_S(7))));
#undef BJ_S
            _mm256_storeu_pd(o + i0 + q, _mm256_add_pd(x, t));
        }
    }
}

BJ_KV_AVX2 static void scores_avx2_f32(const double *qr, const void *kh, int64_t ko, int64_t L, int64_t Wkv, int64_t d,
                                       double sqrt_d, double *p) {
    scores_avx2(qr, kh, ko, L, Wkv, d, sqrt_d, p, false);
}
BJ_KV_AVX2 static void scores_avx2_f16(const double *qr, const void *kh, int64_t ko, int64_t L, int64_t Wkv, int64_t d,
                                       double sqrt_d, double *p) {
    scores_avx2(qr, kh, ko, L, Wkv, d, sqrt_d, p, true);
}
BJ_KV_AVX2 static void pv_avx2_f32(const double *p, const void *v, int64_t vo, int64_t L, int64_t Wkv, int64_t d,
                                   double *o) {
    pv_avx2(p, v, vo, L, Wkv, d, o, false);
}
BJ_KV_AVX2 static void pv_avx2_f16(const double *p, const void *v, int64_t vo, int64_t L, int64_t Wkv, int64_t d,
                                   double *o) {
    pv_avx2(p, v, vo, L, Wkv, d, o, true);
}
#endif

/* Softmax attention in f64 over the cache: scores q.k / sqrt(d), numerators
 * exp(score - max), then (sum_j p_j v_j) / sum_j p_j. (With the scores rounded to f32 and
 * expf, the binary model's second oracle prompt flipped an int8 code downstream and its
 * greedy continuation left the oracle's at token 14.) */
void bj_rt_attention(const double *q, const void *kc, const void *vc, int kv, int64_t n_head, int64_t n_kv,
                     int64_t head_dim, int64_t pos0, int64_t T, int64_t h0, int64_t h1, double *p, double *y) {
    int64_t d = head_dim, Wq = n_head * d, Wkv = n_kv * d, group = n_head / n_kv;
    double sqrt_d = sqrt((double)d);
    bool h16 = kv == 1;
    bj_att_scores_fn scores = h16 ? scores_f16 : scores_f32;
    bj_att_pv_fn pv = d > BJ_ATT_MAXD ? NULL : h16 ? pv_f16 : pv_f32;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) {
        scores = h16 ? scores_avx2_f16 : scores_avx2_f32;
        if (pv && d % 16 == 0) pv = h16 ? pv_avx2_f16 : pv_avx2_f32;
    }
#endif
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = h0; h < h1; h++) {
            const double *qr = q + t * Wq + h * d;
            int64_t ho = (h / group) * d;    /* this head's columns in a cache row */
            int64_t L = pos0 + t + 1;         /* causal: positions 0 .. pos0+t */
            scores(qr, kc, ho, L, Wkv, d, sqrt_d, p);
            double mx = -DBL_MAX;
            for (int64_t j = 0; j < L; j++) mx = p[j] > mx ? p[j] : mx; /* fmax inline: a NaN p[j] keeps mx as fmax does */
            double sum = 0;
            for (int64_t j = 0; j < L; j++) sum += (p[j] = exp(p[j] - mx));
            double *o = y + t * Wq + h * d;
            if (pv) {
                double od[BJ_ATT_MAXD];
                pv(p, vc, ho, L, Wkv, d, od);
                for (int64_t i = 0; i < d; i++) o[i] = od[i] / sum;
            } else {
                for (int64_t i = 0; i < d; i++) o[i] = dot_kv(p, vc, ho + i, L, Wkv, h16) / sum;
            }
        }
}

BJ_HOT void bj_rt_elementwise(bj_op op, const double *a, const double *b, int64_t i0, int64_t i1, double *y) {
    switch (op) {
    case BJ_OP_ADD: for (int64_t i = i0; i < i1; i++) y[i] = a[i] + b[i]; break;
    case BJ_OP_MUL: for (int64_t i = i0; i < i1; i++) y[i] = a[i] * b[i]; break;
    case BJ_OP_RELU_SQR: for (int64_t i = i0; i < i1; i++) y[i] = a[i] > 0 ? a[i] * a[i] : 0; break;
    case BJ_OP_SILU: for (int64_t i = i0; i < i1; i++) y[i] = a[i] / (1.0 + exp(-a[i])); break;
    default: BJ_ASSERT(!"not an elementwise op");
    }
}
