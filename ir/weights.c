/* ir/weights.c -- the values of weight tensors, for every weight dtype (see weights.h). */
#include "ir/weights.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

float bj_ir_weight_float(bj_dtype dt, const void *data, uint64_t i) {
    const uint8_t *p = data;
    switch (dt) {
    case BJ_DT_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case BJ_DT_F16: return bj_f16_to_f32(bj_rd16(p + 2 * i));
    case BJ_DT_BF16: return bj_bf16_to_f32(bj_rd16(p + 2 * i));
    case BJ_DT_Q8_0: { /* rows are whole 32-value blocks (the importer checks K % 32 == 0) */
        const uint8_t *b = p + 34 * (i / 32);
        return bj_f16_to_f32(bj_rd16(b)) * (float)(int8_t)b[2 + i % 32];
    }
    default: BJ_ASSERT(!"not a float dtype");
    }
    return 0;
}

/* ---- weights ----------------------------------------------------------------------------- */
bj_status bj_ir_weight_check(const bj_node *n, bj_error *err) {
    uint64_t need;
    int64_t rows = n->shape.ndim == 2 ? n->shape.d[0] : 1;
    if (!bj_dtype_nbytes(n->dtype, (uint64_t)rows, (uint64_t)bj_shape_cols(n->shape), &need) || !n->data ||
        n->nbytes < need)
        return BJ_FAIL(err, BJ_E_INVALID, "weight '%s' is not bound to its %llu bytes of data", n->name,
                       (unsigned long long)need);
    return BJ_OK;
}

/* Ternary value (n, k) of an [N, K] lowbit weight in any packing (code 3 comes back as 2). */
static int lowbit_get(bj_dtype dt, const uint8_t *d, int64_t N, int64_t K, int64_t n, int64_t k) {
    switch (dt) {
    case BJ_DT_T8:
    case BJ_DT_B8: return (int8_t)d[n * K + k];
    case BJ_DT_T2HF: { /* u8[N/4][K]: row n lives in byte row n % (N/4), lane n / (N/4) */
        int64_t R = N / 4;
        return ((d[(n % R) * K + k] >> (2 * (n / R))) & 3) - 1;
    }
    case BJ_DT_T2: return ((d[n * ((K + 3) / 4) + k / 4] >> (2 * (k % 4))) & 3) - 1;
    case BJ_DT_B1: return (d[n * ((K + 7) / 8) + k / 8] >> (k % 8)) & 1 ? 1 : -1;
    case BJ_DT_I2S: { /* formats.md §1.5.7, x86 layout: 128 flat values per 32 bytes */
        int64_t i = n * K + k;
        return ((d[32 * (i >> 7) + (i & 31)] >> (6 - 2 * ((i & 127) >> 5))) & 3) - 1;
    }
    case BJ_DT_TQ2: { /* §1.5.3: per block qs[64] then d; the common d is the node's scale */
        const uint8_t *b = d + n * (K / 256) * 66 + (k / 256) * 66;
        int64_t i = k % 256;
        return ((b[32 * (i / 128) + i % 32] >> (2 * (i % 128 / 32))) & 3) - 1;
    }
    case BJ_DT_TQ1: { /* §1.5.4: trit t of byte q is ((q * 3^t mod 256) * 3) >> 8 */
        static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
        const uint8_t *b = d + n * (K / 256) * 54 + (k / 256) * 54;
        int64_t i = k % 256;
        uint8_t q = i < 160 ? b[i % 32] : i < 240 ? b[32 + (i - 160) % 16] : b[48 + (i - 240) % 4];
        int t = (int)(i < 160 ? i / 32 : i < 240 ? (i - 160) / 16 : (i - 240) / 4);
        return (((uint8_t)(q * pow3[t]) * 3) >> 8) - 1;
    }
    default: BJ_ASSERT(!"not a lowbit dtype");
    }
    return 0;
}

/* Row decoders for the layouts large models ship in (2B4T: 2 G values), with the layout's
 * loops instead of a per-value switch; lowbit_get covers every layout. Rows [r0, r1) into v;
 * false when the layout or the range does not suit one (I2_S: whole 128-value blocks). */
BJ_HOT static bool unpack_fast(const bj_node *n, int64_t N, int64_t K, int64_t r0, int64_t r1, int8_t *v) {
    const uint8_t *d = n->data;
    switch (n->dtype) {
    case BJ_DT_I2S:
        if ((N * K) % 128 || (r0 * K) % 128 || (r1 * K) % 128) return false;
        for (int64_t b = r0 * K / 128, o = 0; b < r1 * K / 128; b++, o += 128)
            for (int g = 0; g < 4; g++)
                for (int p = 0; p < 32; p++) v[o + 32 * g + p] = (int8_t)(((d[32 * b + p] >> (6 - 2 * g)) & 3) - 1);
        return true;
    case BJ_DT_B1: { /* 2 * bit - 1 */
        int64_t rb = (K + 7) / 8;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t k = 0; k < K; k++) v[(r - r0) * K + k] = (int8_t)(((d[r * rb + k / 8] >> (k % 8)) & 1) * 2 - 1);
        return true;
    }
    case BJ_DT_T2HF: { /* row r: byte row r % (N/4), lane r / (N/4) */
        if (N % 4) return false;
        int64_t R = N / 4;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *b = d + (r % R) * K;
            int sh = (int)(2 * (r / R));
            for (int64_t k = 0; k < K; k++) v[(r - r0) * K + k] = (int8_t)(((b[k] >> sh) & 3) - 1);
        }
        return true;
    }
    default: return false;
    }
}

BJ_HOT bool bj_ir_values_valid(const int8_t *v, int64_t n, bool binary) {
    uint8_t bad = 0, zero_bad = binary ? 1 : 0; /* bytes throughout, so the loop vectorizes */
    for (int64_t i = 0; i < n; i++) {
        uint8_t u = (uint8_t)(v[i] + 1); /* 0, 1, 2 for -1, 0, 1 */
        bad |= (uint8_t)((u > 2) | (zero_bad & (u == 1)));
    }
    return !bad;
}

/* Rows [r0, r1) of lowbit weight n into v, every code checked. */
static bj_status unpack_rows(const bj_node *n, int64_t r0, int64_t r1, int8_t *v, bj_error *err) {
    int64_t N = n->shape.d[0], K = n->shape.d[1], nv = (r1 - r0) * K;
    if (!unpack_fast(n, N, K, r0, r1, v))
        for (int64_t r = r0; r < r1; r++)
            for (int64_t k = 0; k < K; k++) v[(r - r0) * K + k] = (int8_t)lowbit_get(n->dtype, n->data, N, K, r, k);
    unsigned binary = bj_dtype_class_of((bj_dtype)n->dtype) == BJ_DTC_BINARY;
    if (!bj_ir_values_valid(v, nv, binary))
        for (int64_t i = 0; i < nv; i++)
            if (v[i] < -1 || v[i] > 1 || (binary && v[i] == 0))
                return BJ_FAIL(err, BJ_E_FORMAT, "weight '%s': invalid %s value at [%lld,%lld]", n->name,
                               bj_dtype_name(n->dtype), (long long)(r0 + i / K), (long long)(i % K));
    return BJ_OK;
}

/* weight_quant of a float master m, as the model was trained: mode 0 absmean ternary
 * (HF WeightQuant: rint(W * (1/g)) clipped), mode 1 the 1-bit rule mean|W| * Sign(W - mean W). */
/* mean(W) and mean|W| of a master, as the rules below round them. */
static void master_means(const bj_node *m, float *mean, float *mean_abs) {
    int64_t NK = m->shape.d[0] * m->shape.d[1];
    double sum = 0, sum_abs = 0;
    for (int64_t i = 0; i < NK; i++) {
        float x = bj_ir_weight_float(m->dtype, m->data, (uint64_t)i);
        sum += x;
        sum_abs += fabsf(x);
    }
    *mean = (float)sum * (1.0f / (float)NK);
    *mean_abs = (float)sum_abs * (1.0f / (float)NK);
}

void bj_ir_quantize_master(const bj_node *m, int64_t mode, int8_t *v, double *scale) {
    int64_t NK = m->shape.d[0] * m->shape.d[1];
    float mean, mean_abs;
    master_means(m, &mean, &mean_abs);
    if (mode == 1) {
        for (int64_t i = 0; i < NK; i++) v[i] = bj_ir_weight_float(m->dtype, m->data, (uint64_t)i) - mean > 0 ? 1 : -1;
        *scale = mean_abs;
        return;
    }
    float g = fmaxf(mean_abs, 1e-5f), inv = 1.0f / g;
    for (int64_t i = 0; i < NK; i++) {
        float r = rintf(bj_ir_weight_float(m->dtype, m->data, (uint64_t)i) * inv);
        v[i] = (int8_t)(r > 1 ? 1 : r < -1 ? -1 : r);
    }
    *scale = g;
}

/* The tensor holding a lowbit weight's data: the node, or a weight_quant's float master. */
static bj_status lowbit_source(const bj_graph *g, uint32_t node, const bj_node **src, bj_error *err) {
    const bj_node *n = &g->nodes[node];
    bool is_quant = n->op == BJ_OP_WEIGHT_QUANT;
    *src = is_quant ? &g->nodes[n->in[0]] : n;
    if ((*src)->op != BJ_OP_WEIGHT || (!is_quant && !bj_dtype_is_lowbit(n->dtype)))
        return BJ_FAIL(err, BJ_E_INVALID, "node %%%u: not a ternary/binary weight", node);
    return bj_ir_weight_check(*src, err);
}

bj_status bj_ir_lowbit_scale(const bj_graph *g, uint32_t node, double *scale, bj_error *err) {
    const bj_node *n = &g->nodes[node], *src;
    BJ_TRY(lowbit_source(g, node, &src, err));
    if (n->op != BJ_OP_WEIGHT_QUANT) {
        *scale = n->fattr[0];
        return BJ_OK;
    }
    float mean, mean_abs;
    master_means(src, &mean, &mean_abs);
    *scale = n->iattr[0] == 1 ? mean_abs : fmaxf(mean_abs, 1e-5f);
    return BJ_OK;
}

bj_status bj_ir_lowbit_values_into(const bj_graph *g, uint32_t node, int8_t *v, double *scale, bj_error *err) {
    const bj_node *n = &g->nodes[node], *src;
    BJ_TRY(lowbit_source(g, node, &src, err));
    if (n->op == BJ_OP_WEIGHT_QUANT) {
        bj_ir_quantize_master(src, n->iattr[0], v, scale);
        return BJ_OK;
    }
    BJ_TRY(unpack_rows(n, 0, n->shape.d[0], v, err));
    *scale = n->fattr[0];
    return BJ_OK;
}

bool bj_ir_lowbit_by_rows(const bj_graph *g, uint32_t node) {
    return g->nodes[node].op == BJ_OP_WEIGHT && bj_dtype_is_lowbit(g->nodes[node].dtype);
}

bj_status bj_ir_lowbit_rows_into(const bj_graph *g, uint32_t node, int64_t r0, int64_t r1, int8_t *v,
                                 bj_error *err) {
    const bj_node *n = &g->nodes[node], *src;
    BJ_TRY(lowbit_source(g, node, &src, err));
    if (!bj_ir_lowbit_by_rows(g, node) || r0 < 0 || r0 > r1 || r1 > n->shape.d[0])
        return BJ_FAIL(err, BJ_E_INVALID, "node %%%u: rows [%lld, %lld) cannot be read on their own", node,
                       (long long)r0, (long long)r1);
    return unpack_rows(n, r0, r1, v, err);
}

bj_status bj_ir_lowbit_values(const bj_graph *g, uint32_t node, int8_t **t8, double *scale, bj_error *err) {
    const bj_node *n = &g->nodes[node], *src;
    *t8 = NULL;
    BJ_TRY(lowbit_source(g, node, &src, err));
    size_t nk = (size_t)(n->shape.d[0] * n->shape.d[1]);
    int8_t *v = malloc(nk ? nk : 1);
    if (!v) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory (%zu bytes for '%s')", nk, src->name);
    bj_status s = bj_ir_lowbit_values_into(g, node, v, scale, err);
    if (s != BJ_OK) { free(v); return s; }
    *t8 = v;
    return BJ_OK;
}

void bj_ir_pack_b1(const int8_t *v, int64_t N, int64_t K, uint8_t *out) {
    int64_t rb = (K + 7) / 8;
    memset(out, 0, (size_t)(N * rb));
    for (int64_t r = 0; r < N; r++)
        for (int64_t k = 0; k < K; k++) out[r * rb + k / 8] |= (uint8_t)((v[r * K + k] > 0) << (k % 8));
}

/* ---- float rows and the 8-bit head --------------------------------------------------------- */
/* IEEE half to float, exact either way: F16C's vcvtph2ps where the CPU has it (the tied
 * head of a GGUF model is F16: 328 M conversions a token for 2B4T), else the scalar rule. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx,f16c"))) static void f16_row_f16c(const uint8_t *p, int64_t n, float *out) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(out + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * k))));
    for (; k < n; k++) out[k] = bj_f16_to_f32(bj_rd16(p + 2 * k));
}
#endif

static void f16_row(const uint8_t *p, int64_t n, float *out) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("f16c")) { f16_row_f16c(p, n, out); return; }
#endif
    for (int64_t k = 0; k < n; k++) out[k] = bj_f16_to_f32(bj_rd16(p + 2 * k));
}

BJ_HOT static void bf16_row(const uint8_t *p, int64_t n, float *out) {
    for (int64_t k = 0; k < n; k++) out[k] = bj_bf16_to_f32(bj_rd16(p + 2 * k));
}

void bj_ir_float_row(bj_dtype dt, const void *data, uint64_t i0, int64_t n, float *out) {
    const uint8_t *p = data;
    switch (dt) {
    case BJ_DT_F32: memcpy(out, p + 4 * i0, (size_t)n * sizeof *out); break;
    case BJ_DT_BF16: bf16_row(p + 2 * i0, n, out); break;
    case BJ_DT_F16: f16_row(p + 2 * i0, n, out); break;
    default: for (int64_t k = 0; k < n; k++) out[k] = bj_ir_weight_float(dt, data, i0 + (uint64_t)k); break;
    }
}

int64_t bj_ir_q8_stride(int64_t K) { return (K + 31) & ~(int64_t)31; }

/* The rule's two loops, 8 lanes at a time where the CPU has AVX2, with the same results: the
 * maximum of |x| over the same values (vmaxps(a, amax) keeps amax for a NaN, as the comparison
 * does), and vcvtps2dq rounding as lrintf does (the current mode, nearest-even), truncated to the
 * low byte as the int8_t cast of lrintf's result is. 2B4T's head is 328 M values to convert. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static float q8_amax_avx2(const float *x, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)), m);
    float lanes[8], amax = 0;
    _mm256_storeu_ps(lanes, m);
    for (int i = 0; i < 8; i++) amax = lanes[i] > amax ? lanes[i] : amax;
    for (; k < n; k++) {
        float a = fabsf(x[k]);
        amax = a > amax ? a : amax;
    }
    return amax;
}

__attribute__((target("avx2"))) static void q8_round_avx2(const float *x, int64_t n, float inv, int8_t *q) {
    const __m256 vi = _mm256_set1_ps(inv);
    const __m256i low = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                         0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i gather = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), vi));
        __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, low), gather);
        _mm_storel_epi64((__m128i *)(void *)(q + k), _mm256_castsi256_si128(b));
    }
    for (; k < n; k++) q[k] = (int8_t)lrintf(x[k] * inv);
}
#endif

float bj_ir_q8_row(const float *x, int64_t n, int64_t stride, int8_t *q) {
    float amax = 0, inv;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2")) {
        amax = q8_amax_avx2(x, n);
        inv = amax > 0 ? 127.0f / amax : 0;
        q8_round_avx2(x, n, inv, q);
        memset(q + n, 0, (size_t)(stride - n));
        return amax / 127.0f;
    }
#endif
    for (int64_t k = 0; k < n; k++) {
        float a = fabsf(x[k]); /* fmaxf's result without its call: a NaN leaves amax */
        amax = a > amax ? a : amax;
    }
    inv = amax > 0 ? 127.0f / amax : 0;
    for (int64_t k = 0; k < n; k++) q[k] = (int8_t)lrintf(x[k] * inv);
    memset(q + n, 0, (size_t)(stride - n));
    return amax / 127.0f;
}

void bj_ir_q8_rows(const bj_node *w, int64_t n0, int64_t n1, int64_t stride, int8_t *q, float *d) {
    int64_t K = w->shape.d[1];
    float *row = malloc((size_t)(K > 0 ? K : 1) * sizeof *row);
    BJ_ASSERT(row);
    for (int64_t n = n0; n < n1; n++) {
        bj_ir_float_row((bj_dtype)w->dtype, w->data, (uint64_t)(n * K), K, row);
        d[n] = bj_ir_q8_row(row, K, stride, q + n * stride);
    }
    free(row);
}
