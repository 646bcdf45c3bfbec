/* tests/unit/test_rt_ops.c -- the shared ops' fast paths agree bit for bit with their plain
 * paths: the LM head's one-pass F16 dot (decode, F16C) against convert-then-dot (prefill),
 * for odd K, the F16 row conversion against the scalar rule for every half value,
 * attention's contiguous p.V accumulation against the strided per-column dot it replaced, and
 * the activation quantizer deciding a near-tie in f64 (docs/numerics.md). */
#include "ir/weights.h"
#include "runtime/ops.h"

#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x243F6A8885A308D3ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) % 2000001) / 1000000.0f - 1.0f;
}

Test(rt_ops, head_f16_decode_equals_prefill_path) {
    const int64_t Ks[] = { 1, 31, 32, 33, 384, 1000, 2560, 2563 };
    for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) {
        int64_t K = Ks[c], N = 7;
        uint16_t *w = malloc((size_t)(N * K) * 2);
        double *x = malloc((size_t)(2 * K) * sizeof *x);
        float y1[7], y2[14];
        for (int64_t i = 0; i < N * K; i++) w[i] = bj_f32_to_f16(frand() * 3);
        for (int64_t k = 0; k < K; k++) x[k] = x[K + k] = frand() * 5;
        bj_node node = { .op = BJ_OP_WEIGHT, .dtype = BJ_DT_F16, .shape = bj_shape2(N, K), .data = w,
                         .nbytes = (uint64_t)(N * K * 2), .name = "w" };
        bj_rt_matmul_f(x, &node, K, N, 1, 0, N, y1); /* T = 1: the one-pass path where F16C exists */
        bj_rt_matmul_f(x, &node, K, N, 2, 0, N, y2); /* T = 2: convert the row, then dot */
        for (int64_t n = 0; n < N; n++) {
            cr_expect_eq(memcmp(&y1[n], &y2[n], 4), 0, "K %lld row %lld: %.9g vs %.9g", (long long)K, (long long)n,
                         y1[n], y2[n]);
            cr_expect_eq(memcmp(&y2[n], &y2[N + n], 4), 0);
        }
        free(w);
        free(x);
    }
}

Test(rt_ops, f16_rows_convert_every_half_exactly) {
    /* embed reads rows through the same converter the head uses */
    static uint16_t all[65536];
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    bj_node table = { .op = BJ_OP_WEIGHT, .dtype = BJ_DT_F16, .shape = bj_shape2(1, 65536), .data = all,
                      .nbytes = sizeof all, .name = "t" };
    static double out[65536];
    int32_t tok = 0;
    bj_rt_embed(&table, &tok, 0, 1, out);
    for (uint32_t i = 0; i < 65536; i++) {
        double want = bj_f16_to_f32((uint16_t)i);
        if (want != want) cr_expect(out[i] != out[i], "half 0x%04x: NaN expected", i);
        else cr_expect_eq(memcmp(&out[i], &want, sizeof want), 0, "half 0x%04x: %g vs %g", i, out[i], want);
    }
}

/* The attention op with its p.V sum as a strided per-column dot (as it was written before it
 * walked v rows contiguously): a double dot over 8 lanes (position mod 8), lanes summed
 * pairwise, then the tail. */
static double strided_dot(const double *a, const float *b, int64_t n, int64_t bstride) {
    double s[8] = { 0 }, tail = 0;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) s[j] += a[k + j] * b[(k + j) * bstride];
    for (; k < n; k++) tail += a[k] * b[k * bstride];
    return (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))) + tail;
}

static void attention_strided(const double *q, const float *kc, const float *vc, int64_t n_head, int64_t n_kv,
                              int64_t d, int64_t pos0, int64_t T, double *p, double *y) {
    int64_t Wq = n_head * d, Wkv = n_kv * d, group = n_head / n_kv;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < n_head; h++) {
            const double *qr = q + t * Wq + h * d;
            const float *kh = kc + (h / group) * d, *vh = vc + (h / group) * d;
            int64_t L = pos0 + t + 1;
            double mx = -DBL_MAX;
            for (int64_t j = 0; j < L; j++) {
                p[j] = strided_dot(qr, kh + j * Wkv, d, 1) / sqrt((double)d);
                mx = fmax(mx, p[j]);
            }
            double sum = 0;
            for (int64_t j = 0; j < L; j++) sum += (p[j] = exp(p[j] - mx));
            for (int64_t i = 0; i < d; i++) y[t * Wq + h * d + i] = strided_dot(p, vh + i, L, Wkv) / sum;
        }
}

/* Every path of bj_rt_attention (the AVX2 scores for any d, the AVX2 p.V for d a multiple of
 * 16 up to 256, the C p.V, the strided sum beyond 256) gives the rule's bits: head dims with
 * and without an 8-value tail, cache lengths around multiples of 8 and of the 4-key blocks,
 * one and several query rows, and a head range that is not all heads. With an f16 cache
 * (--kv f16), the bits of the rule over f32 caches holding the same values rounded to f16 (by
 * the CPU's own vcvtps2ph where it has F16C: an independent rounding). */
static void attention_case(int kv, int64_t d, int64_t pos0, int64_t T, int64_t h0, int64_t h1);

Test(rt_ops, attention_equals_the_strided_sum) {
    const int64_t H = 4, ds[] = { 1, 7, 8, 12, 16, 48, 64, 80, 128, 256, 264 }, pos0s[] = { 0, 6, 7, 8, 15, 40 },
                  Ts[] = { 1, 3, 9 };
    for (int kv = 0; kv < 2; kv++)
        for (size_t a = 0; a < sizeof ds / sizeof *ds; a++)
            for (size_t b = 0; b < sizeof pos0s / sizeof *pos0s; b++)
                for (size_t c = 0; c < sizeof Ts / sizeof *Ts; c++)
                    attention_case(kv, ds[a], pos0s[b], Ts[c], c == 1 ? 1 : 0, c == 1 ? 3 : H);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("f16c"))) static float f16c_round(float x) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT)));
}
#endif

/* f32 to f16 to f32, nearest even: F16C where the CPU has it, else the library's rule. */
static float round_f16(float x) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("f16c")) return f16c_round(x);
#endif
    return bj_f16_to_f32(bj_f32_to_f16(x));
}

/* The f16 cache's bound against the f32 one, per output of head h at row t: a key value moves
 * by at most u|k| + 2^-25 (u = 2^-11; 2^-25 below f16's normal range), so a score by at most
 * delta = sum_i |q_i| (u|k_i| + 2^-25) / sqrt(d), the weights p_j / sum p by a factor within
 * e^(+-2 delta_max), and the output, an average of values each within u|v| + 2^-25, by at most
 *   u vmax + 2^-25 + (e^(2 delta_max) - 1) 2 vmax        (vmax: max |v| over the positions). */
static double f16_bound(const double *qr, const float *kc, const float *vc, int64_t Wkv, int64_t ho, int64_t L, int64_t d) {
    const double u = 0x1p-11, lo = 0x1p-25;
    double dmax = 0, vmax = 0;
    for (int64_t j = 0; j < L; j++) {
        double del = 0;
        for (int64_t i = 0; i < d; i++) {
            del += fabs(qr[i]) * (u * fabs(kc[j * Wkv + ho + i]) + lo);
            vmax = fmax(vmax, fabs(vc[j * Wkv + ho + i]));
        }
        dmax = fmax(dmax, del / sqrt((double)d));
    }
    return u * vmax + lo + expm1(2 * dmax) * 2 * vmax;
}

static void attention_case(int kv, int64_t d, int64_t pos0, int64_t T, int64_t h0, int64_t h1) {
    const int64_t H = 4, Hkv = 2, L = pos0 + T, nkv = L * Hkv * d, ny = T * H * d;
    double *q = malloc((size_t)ny * sizeof *q), *p = malloc((size_t)L * sizeof *p);
    float *kc = malloc((size_t)nkv * sizeof *kc), *vc = malloc((size_t)nkv * sizeof *vc);
    float *k32 = malloc((size_t)nkv * sizeof *k32), *v32 = malloc((size_t)nkv * sizeof *v32);
    uint16_t *kh = malloc((size_t)nkv * 2), *vh = malloc((size_t)nkv * 2);
    double *y1 = malloc((size_t)ny * sizeof *y1), *y2 = malloc((size_t)ny * sizeof *y2), *y3 = malloc((size_t)ny * sizeof *y3);
    cr_assert(q && p && kc && vc && k32 && v32 && kh && vh && y1 && y2 && y3);
    /* q with all 53 bits (as RoPE leaves it), so the score sums round and their order shows */
    for (int64_t i = 0; i < ny; i++) q[i] = frand() * 2 + frand() * 0x1p-26;
    for (int64_t i = 0; i < nkv; i++) { k32[i] = kc[i] = frand() * 2; v32[i] = vc[i] = frand() * 3; }
    for (int64_t i = 0; kv == 1 && i < nkv; i++) {
        kh[i] = bj_f32_to_f16(kc[i]);
        vh[i] = bj_f32_to_f16(vc[i]);
        float rk = round_f16(kc[i]), rv = round_f16(vc[i]);
        cr_assert(bj_f16_to_f32(kh[i]) == rk && bj_f16_to_f32(vh[i]) == rv, "f16 rounding of %.9g / %.9g", kc[i], vc[i]);
        kc[i] = rk;
        vc[i] = rv;
    }
    memset(y1, 0, (size_t)ny * sizeof *y1);
    bj_rt_attention(q, kv ? (void *)kh : kc, kv ? (void *)vh : vc, kv, H, Hkv, d, pos0, T, h0, h1, p, y1);
    attention_strided(q, kc, vc, H, Hkv, d, pos0, T, p, y2);
    attention_strided(q, k32, v32, H, Hkv, d, pos0, T, p, y3);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < H * d; i++) {
            int64_t h = i / d, e = t * H * d + i;
            if (h < h0 || h >= h1) {
                cr_expect_eq(y1[e], 0.0, "d %lld: head %lld is outside [%lld, %lld) but was written", (long long)d,
                             (long long)h, (long long)h0, (long long)h1);
                continue;
            }
            cr_expect_eq(memcmp(&y1[e], &y2[e], sizeof *y1), 0, "kv %d d %lld pos0 %lld T %lld elem %lld: %.17g vs %.17g",
                         kv, (long long)d, (long long)pos0, (long long)T, (long long)e, y1[e], y2[e]);
            if (kv != 1) continue;
            double bound = f16_bound(q + t * H * d + h * d, k32, v32, Hkv * d, (h / (H / Hkv)) * d, pos0 + t + 1, d);
            cr_expect_leq(fabs(y1[e] - y3[e]), bound, "f16 cache, d %lld pos0 %lld elem %lld: |%.9g - %.9g| over the bound %g",
                          (long long)d, (long long)pos0, (long long)e, y1[e], y3[e], bound);
        }
    free(q); free(kc); free(vc); free(k32); free(v32); free(kh); free(vh); free(p); free(y1); free(y2); free(y3);
}

/* RoPE as HF computes it, written out: the angle pos * theta^(-2i/d) in f32, its cos and sin
 * in f32, the rotation of the pair (i, i + d/2) in f64. */
static void rope_rule(const double *x, int64_t H, int64_t d, double theta, int64_t pos0, int64_t T, double *y) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < d / 2; i++) {
                float inv = 1.0f / powf((float)theta, (float)(2 * i) / (float)d), pos = (float)(pos0 + t);
                double c = cosf(pos * inv), sn = sinf(pos * inv);
                const double *a = x + (t * H + h) * d;
                y[(t * H + h) * d + i] = a[i] * c - a[i + d / 2] * sn;
                y[(t * H + h) * d + i + d / 2] = a[i + d / 2] * c + a[i] * sn;
            }
}

/* bj_rt_rope keeps the last position's angles per thread: calls that repeat a position, that
 * change theta or the head dim at the same position, and head dims past its table (256) all
 * give the rule's bits. */
Test(rt_ops, rope_equals_the_rule) {
    static const int64_t ds[] = { 2, 8, 64, 128, 256, 258 }, pos0s[] = { 0, 5, 1000 };
    static const double thetas[] = { 10000.0, 500000.0 };
    const int64_t H = 3, T = 3, nd = BJ_COUNTOF(ds), nt = BJ_COUNTOF(thetas);
    double *x = malloc(T * H * 258 * sizeof *x), *y1 = malloc(T * H * 258 * sizeof *y1), *y2 = malloc(T * H * 258 * sizeof *y2);
    for (int64_t i = 0; i < T * H * 258; i++) x[i] = frand() * 3 + frand() * 0x1p-30;
    for (size_t a = 0; a < BJ_COUNTOF(pos0s); a++)
        /* passes 0 and 1: one row a call (a decode step), consecutive calls at the same position
         * changing theta first (pass 0) or the head dim first (pass 1); pass 2: all T rows */
        for (int pass = 0; pass < 3; pass++)
            for (int64_t j = 0; j < nd * nt; j++) {
                int64_t d = ds[pass == 1 ? j / nt : j % nd], rows = pass == 2 ? T : 1, pos0 = pos0s[a];
                double theta = thetas[pass == 1 ? j % nt : j / nd];
                bj_rt_rope(x, H, d, theta, pos0, 0, rows, y1);
                rope_rule(x, H, d, theta, pos0, rows, y2);
                cr_expect_eq(memcmp(y1, y2, (size_t)(rows * H * d) * sizeof *y1), 0, "d %lld theta %g pos0 %lld rows %lld",
                             (long long)d, theta, (long long)pos0, (long long)rows);
            }
    free(x); free(y1); free(y2);
}

/* The quantizer decides in f64: with max|x| = 127 (s = 1) an input 56.5 + 2^-30 is 56.5 in f32,
 * a tie that rint would send to the even 56; in f64 it lies above the tie and rounds to 57, as
 * the exact rule says. An exact tie still goes to even, and s is kept in f64. */
Test(rt_ops, act_quant_decides_near_ties_in_f64) {
    double x[4] = { 127.0, 56.5 + 0x1p-30, -57.5 - 0x1p-30, 56.5 }, s;
    int8_t q[32];
    cr_assert_eq((float)x[1], 56.5f, "the test input must be a tie at f32 precision");
    bj_rt_act_quant(x, 4, 32, 0, 1, q, &s);
    cr_expect_eq(s, 1.0);
    cr_expect_eq(q[0], 127);
    cr_expect_eq(q[1], 57, "56.5 + 2^-30 rounded to %d", q[1]);
    cr_expect_eq(q[2], -58, "-57.5 - 2^-30 rounded to %d", q[2]);
    cr_expect_eq(q[3], 56, "an exact tie goes to even: %d", q[3]);
    for (int k = 4; k < 32; k++) cr_expect_eq(q[k], 0, "padding %d", k);
}

/* The rule, written out: s = 127 / max(max|x|, 1e-5), q = clamp(rint(x s), -128, 127). */
static void act_quant_rule(const double *x, int64_t K, int8_t *q, double *s) {
    double m = 0;
    for (int64_t k = 0; k < K; k++) m = fabs(x[k]) > m ? fabs(x[k]) : m;
    *s = 127.0 / (m > 1e-5 ? m : 1e-5);
    for (int64_t k = 0; k < K; k++) {
        double r = nearbyint(x[k] * *s);
        q[k] = (int8_t)(r > 127 ? 127 : r < -128 ? -128 : r);
    }
}

/* The vector quantizer (AVX2 where the CPU has it) against the rule over rows of every length
 * around its 8- and 16-value steps: random values, exact ties (x s = n + 1/2, to even) and
 * near ties inside the vector body, the max at every position, an all-zero row, several rows
 * with padding up to the stride. */
Test(rt_ops, act_quant_equals_the_rule) {
    static const int64_t ks[] = { 1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 384, 2560, 2567 };
    for (size_t i = 0; i < BJ_COUNTOF(ks); i++) {
        int64_t K = ks[i], S = (K + 63) & ~(int64_t)63, T = 4;
        double *x = malloc((size_t)(T * K) * sizeof *x), s[4], sr;
        int8_t *q = malloc((size_t)(T * S)), *r = malloc((size_t)K);
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < K; k++) {
                double v = 3.0 * frand();
                if (t == 1) v = (double)((k * 37) % 255 - 127) + (k % 3 == 0 ? 0.5 : k % 3 == 1 ? 0.5 + 0x1p-40 : -0.5);
                if (t == 3) v = 0;
                x[t * K + k] = v;
            }
        x[1 * K + (K - 1) % K] = K > 1 ? -127.0 : 127.0; /* row 1: max|x| = 127, so s = 1 and the ties stay ties */
        memset(q, 0x5a, (size_t)(T * S));
        bj_rt_act_quant(x, K, S, 0, T, q, s);
        for (int64_t t = 0; t < T; t++) {
            act_quant_rule(x + t * K, K, r, &sr);
            cr_expect_eq(s[t], sr, "K %lld row %lld: scale %.17g, rule %.17g", (long long)K, (long long)t, s[t], sr);
            for (int64_t k = 0; k < K; k++)
                cr_expect_eq(q[t * S + k], r[k], "K %lld row %lld [%lld]: x %.17g -> %d, rule %d", (long long)K,
                             (long long)t, (long long)k, x[t * K + k], q[t * S + k], r[k]);
            for (int64_t k = K; k < S; k++) cr_expect_eq(q[t * S + k], 0, "padding");
        }
        free(x); free(q); free(r);
    }
}
