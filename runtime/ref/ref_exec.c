/* runtime/ref/ref_exec.c -- the reference executor: interprets the graph in plain C.
 *
 * This is the baseline every generated kernel and JIT path is compared against, so each op
 * is written the way HF transformers computes it (formats.md §3.6), in f32, with no
 * cleverness:
 *   - activation quant: s = 127 / max(max|x|, 1e-5), q = clamp(rint(x*s), -128, 127)
 *     (rint = round half to even, as torch.round);
 *   - BitLinear: y = (sum_k q[k] * w[k]) / s * scale, the sum exact in int32;
 *   - master weights: absmean ternary (g = max(mean|W|, 1e-5), w = clamp(rint(W * (1/g)), -1, 1))
 *     or the 1-bit rule (w = W > mean(W) ? +1 : -1, scale mean|W|), evaluated once at creation;
 *   - RoPE half-split (HF rotate_half), causal softmax attention with GQA over the KV cache.
 * Weights are unpacked to one int8 per value at creation; activations are allocated per step.
 * Single-threaded on purpose.
 *
 * Why the f32 details matter: greedy decoding of these models meets near-ties (two logits
 * within 0.01), and one activation that lands an ulp from a .5 rounding boundary of the
 * int8 quantizer flips a code, which is enough to tip such a tie. So where torch
 * materialises an f32 tensor we round at the same point, and where torch reduces (sums,
 * dots, means) we sum in double and round once, which is what torch's accurate cascade
 * reductions get close to. Tested against torch 1.13 and the HF oracle: with sequential f32
 * sums, 3 of the 12 oracle continuations diverged at such ties; as written, none do.
 * BitLinear keeps the integer form y = f32(acc) / s * scale for packed and master weights
 * alike (HF's master path dequantizes first; the difference moved no oracle token), so the
 * generated kernels can reproduce it bit for bit. */
#include "runtime/runtime.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ref_value { /* one node's result for the current step */
    float *f;   /* f32 [T, cols] */
    int8_t *q;  /* q8row values [T, cols] */
    float *qs;  /* q8row per-row scale s [T] (x ~ q / s) */
} ref_value;

typedef struct ref_lowbit { /* a ternary/binary weight prepared once */
    int8_t *v;              /* [N, K] values in {-1, 0, +1} */
    double scale;           /* W = v * scale */
} ref_lowbit;

typedef struct ref_engine {
    bj_engine base;
    const bj_graph *g;
    ref_lowbit *lowbit; /* per node: set for lowbit WEIGHT and WEIGHT_QUANT nodes */
    float **kc, **vc;   /* per node: KV cache of ATTENTION nodes, [max_seq, n_kv*head_dim] */
    ref_value *val;     /* per node, valid during a step */
} ref_engine;

/* ---- element access ------------------------------------------------------------------ */
static float load_float(bj_dtype dt, const void *data, uint64_t i) {
    const uint8_t *p = data;
    switch (dt) {
    case BJ_DT_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case BJ_DT_F16: return bj_f16_to_f32(bj_rd16(p + 2 * i));
    case BJ_DT_BF16: return bj_bf16_to_f32(bj_rd16(p + 2 * i));
    default: BJ_ASSERT(!"not a float dtype");
    }
    return 0;
}

/* Ternary value (n, k) of an [N, K] lowbit weight in any packing. */
static int ref_lowbit_get(bj_dtype dt, const uint8_t *d, int64_t N, int64_t K, int64_t n, int64_t k) {
    switch (dt) {
    case BJ_DT_T8:
    case BJ_DT_B8: return (int8_t)d[n * K + k];
    case BJ_DT_T2HF: { /* u8[N/4][K]: row n lives in byte row n % (N/4), lane n / (N/4) */
        int64_t R = N / 4;
        return ((d[(n % R) * K + k] >> (2 * (n / R))) & 3) - 1;
    }
    case BJ_DT_T2: return ((d[n * ((K + 3) / 4) + k / 4] >> (2 * (k % 4))) & 3) - 1;
    default: BJ_ASSERT(!"not a lowbit dtype");
    }
    return 0;
}

/* ---- preparing weights --------------------------------------------------------------- */
static bj_status unpack_weight(ref_lowbit *w, const bj_node *n, bj_error *err) {
    int64_t N = n->shape.d[0], K = n->shape.d[1];
    uint64_t need;
    if (!bj_dtype_nbytes(n->dtype, (uint64_t)N, (uint64_t)K, &need) || !n->data || n->nbytes < need)
        return BJ_FAIL(err, BJ_E_INVALID, "weight '%s' is not bound to %llu bytes of data", n->name,
                       (unsigned long long)need);
    if (!(w->v = malloc((size_t)(N * K)))) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    for (int64_t r = 0; r < N; r++)
        for (int64_t k = 0; k < K; k++) {
            int v = ref_lowbit_get(n->dtype, n->data, N, K, r, k);
            if (v > 1) return BJ_FAIL(err, BJ_E_FORMAT, "weight '%s': invalid 2-bit code 3 at [%lld,%lld]",
                                      n->name, (long long)r, (long long)k);
            w->v[r * K + k] = (int8_t)v;
        }
    w->scale = n->fattr[0];
    return BJ_OK;
}

/* weight_quant of a float master, as the model was trained (see file comment). */
static bj_status quantize_weight(ref_lowbit *w, const bj_node *q, const bj_node *m, bj_error *err) {
    int64_t N = m->shape.d[0], K = m->shape.d[1], NK = N * K;
    uint64_t need;
    if (!bj_dtype_nbytes(m->dtype, (uint64_t)N, (uint64_t)K, &need) || !m->data || m->nbytes < need)
        return BJ_FAIL(err, BJ_E_INVALID, "weight '%s' is not bound to data", m->name);
    if (!(w->v = malloc((size_t)NK))) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    double sum = 0, sum_abs = 0;
    for (int64_t i = 0; i < NK; i++) {
        float x = load_float(m->dtype, m->data, (uint64_t)i);
        sum += x;
        sum_abs += fabsf(x);
    }
    /* torch's mean: an (accurate) f32 sum times f32(1/N) */
    float mean = (float)sum * (1.0f / (float)NK), mean_abs = (float)sum_abs * (1.0f / (float)NK);
    if (q->iattr[0] == 1) { /* binary: beta * Sign(W - alpha) */
        for (int64_t i = 0; i < NK; i++)
            w->v[i] = load_float(m->dtype, m->data, (uint64_t)i) - mean > 0 ? 1 : -1;
        w->scale = mean_abs;
        return BJ_OK;
    }
    float g = fmaxf(mean_abs, 1e-5f), inv = 1.0f / g; /* HF WeightQuant multiplies by 1/g */
    for (int64_t i = 0; i < NK; i++) {
        float r = rintf(load_float(m->dtype, m->data, (uint64_t)i) * inv);
        w->v[i] = (int8_t)(r > 1 ? 1 : r < -1 ? -1 : r);
    }
    w->scale = g;
    return BJ_OK;
}

static bj_status prepare(ref_engine *e, bj_error *err) {
    const bj_graph *g = e->g;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op == BJ_OP_WEIGHT && bj_dtype_is_lowbit(n->dtype)) BJ_TRY(unpack_weight(&e->lowbit[i], n, err));
        if (n->op == BJ_OP_WEIGHT_QUANT) BJ_TRY(quantize_weight(&e->lowbit[i], n, &g->nodes[n->in[0]], err));
        if (n->op == BJ_OP_WEIGHT && !bj_dtype_is_lowbit(n->dtype)) {
            uint64_t need;
            int64_t rows = n->shape.ndim == 2 ? n->shape.d[0] : 1;
            if (!bj_dtype_nbytes(n->dtype, (uint64_t)rows, (uint64_t)bj_shape_cols(n->shape), &need) ||
                !n->data || n->nbytes < need)
                return BJ_FAIL(err, BJ_E_INVALID, "weight '%s' is not bound to data", n->name);
        }
        if (n->op == BJ_OP_ATTENTION) {
            size_t sz = (size_t)g->max_seq * (size_t)(n->iattr[2] * n->iattr[3]) * sizeof(float);
            if (!(e->kc[i] = malloc(sz)) || !(e->vc[i] = malloc(sz)))
                return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the KV cache (%zu bytes per layer)", sz);
        }
    }
    return BJ_OK;
}

/* ---- ops ------------------------------------------------------------------------------ */
typedef struct step { ref_engine *e; const bj_node *n; ref_value *out; int64_t T; const int32_t *tokens; } step;

#define IN(s, j) (&(s)->e->val[(s)->n->in[j]])
#define INNODE(s, j) (&(s)->e->g->nodes[(s)->n->in[j]])

static void op_embed(step *s) {
    const bj_node *tab = INNODE(s, 0);
    int64_t D = tab->shape.d[1];
    for (int64_t t = 0; t < s->T; t++)
        for (int64_t d = 0; d < D; d++)
            s->out->f[t * D + d] = load_float(tab->dtype, tab->data, (uint64_t)(s->tokens[t] * D + d));
}

/* As HF's BitNetRMSNorm materialises them: x^2 in f32, their mean, rsqrt(mean + eps),
 * x * r, then w * that. The sum of squares is taken in double (torch's reduction is more
 * accurate than a sequential f32 sum), so the f32 mean is as close to exact as torch's. */
static void op_rmsnorm(step *s) {
    const float *x = IN(s, 0)->f;
    const bj_node *w = INNODE(s, 1);
    int64_t D = bj_shape_cols(s->n->shape);
    for (int64_t t = 0; t < s->T; t++) {
        double ss = 0;
        for (int64_t d = 0; d < D; d++) {
            float sq = x[t * D + d] * x[t * D + d];
            ss += sq;
        }
        float mean = (float)ss * (1.0f / (float)D); /* torch's mean multiplies by 1/N */
        float r = 1.0f / sqrtf(mean + (float)s->n->fattr[0]);
        for (int64_t d = 0; d < D; d++) {
            float xr = x[t * D + d] * r;
            s->out->f[t * D + d] = load_float(w->dtype, w->data, (uint64_t)d) * xr;
        }
    }
}

static void op_act_quant(step *s) {
    const float *x = IN(s, 0)->f;
    int64_t K = bj_shape_cols(s->n->shape);
    for (int64_t t = 0; t < s->T; t++) {
        float amax = 0;
        for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(x[t * K + k]));
        float sc = 127.0f / fmaxf(amax, 1e-5f);
        for (int64_t k = 0; k < K; k++) {
            float r = rintf(x[t * K + k] * sc);
            s->out->q[t * K + k] = (int8_t)(r > 127 ? 127 : r < -128 ? -128 : r);
        }
        s->out->qs[t] = sc;
    }
}

static void op_matmul_t(step *s) {
    const ref_value *x = IN(s, 0);
    const ref_lowbit *w = &s->e->lowbit[s->n->in[1]];
    int64_t N = bj_shape_cols(s->n->shape), K = bj_shape_cols(INNODE(s, 0)->shape);
    for (int64_t t = 0; t < s->T; t++)
        for (int64_t n = 0; n < N; n++) {
            int32_t acc = 0; /* ternary x int8: adds and subtracts, exact */
            for (int64_t k = 0; k < K; k++) acc += w->v[n * K + k] * x->q[t * K + k];
            s->out->f[t * N + n] = (float)acc / x->qs[t] * (float)w->scale;
        }
}

static void op_matmul_f(step *s) {
    const float *x = IN(s, 0)->f;
    const bj_node *w = INNODE(s, 1);
    int64_t N = bj_shape_cols(s->n->shape), K = bj_shape_cols(INNODE(s, 0)->shape);
    for (int64_t t = 0; t < s->T; t++)
        for (int64_t n = 0; n < N; n++) {
            float acc = 0;
            for (int64_t k = 0; k < K; k++) acc += x[t * K + k] * load_float(w->dtype, w->data, (uint64_t)(n * K + k));
            s->out->f[t * N + n] = acc;
        }
}

static void op_rope(step *s) {
    const float *x = IN(s, 0)->f;
    int64_t H = s->n->iattr[0], d = s->n->iattr[1], half = d / 2, W = H * d;
    for (int64_t t = 0; t < s->T; t++) {
        float pos = (float)(s->e->base.n_past + t);
        for (int64_t i = 0; i < half; i++) {
            /* as HF: inv_freq = 1 / theta^(2i/d) in f32, angle = pos * inv_freq */
            float inv = 1.0f / powf((float)s->n->fattr[0], (float)(2 * i) / (float)d);
            float c = cosf(pos * inv), sn = sinf(pos * inv);
            for (int64_t h = 0; h < H; h++) {
                const float *a = x + t * W + h * d;
                float *o = s->out->f + t * W + h * d;
                o[i] = a[i] * c - a[i + half] * sn;
                o[i + half] = a[i + half] * c + a[i] * sn;
            }
        }
    }
}

/* Scores as one f32 gemm gives them (dot in higher precision, rounded once), scaled,
 * softmax numerators exp(score - max), then (sum_j p_j v_j) / sum_j p_j, the order of
 * torch's CPU attention kernels. */
static void op_attention(step *s) {
    ref_engine *e = s->e;
    const bj_node *n = s->n;
    int64_t H = n->iattr[1], Hkv = n->iattr[2], d = n->iattr[3], Wq = H * d, Wkv = Hkv * d;
    int64_t p0 = e->base.n_past;
    float *kc = e->kc[n - e->g->nodes], *vc = e->vc[n - e->g->nodes];
    memcpy(kc + p0 * Wkv, IN(s, 1)->f, (size_t)(s->T * Wkv) * sizeof(float));
    memcpy(vc + p0 * Wkv, IN(s, 2)->f, (size_t)(s->T * Wkv) * sizeof(float));
    float *p = malloc((size_t)(p0 + s->T) * sizeof(float)); /* scores of one query row */
    BJ_ASSERT(p);
    float scale = 1.0f / sqrtf((float)d);
    for (int64_t t = 0; t < s->T; t++)
        for (int64_t h = 0; h < H; h++) {
            const float *q = IN(s, 0)->f + t * Wq + h * d;
            int64_t kvh = h / (H / Hkv), L = p0 + t + 1; /* causal: positions 0 .. p0+t */
            float mx = -FLT_MAX;
            for (int64_t j = 0; j < L; j++) {
                double dot = 0;
                for (int64_t i = 0; i < d; i++) dot += (double)q[i] * kc[j * Wkv + kvh * d + i];
                p[j] = (float)dot * scale;
                mx = fmaxf(mx, p[j]);
            }
            double sum = 0;
            for (int64_t j = 0; j < L; j++) sum += (p[j] = expf(p[j] - mx));
            float *o = s->out->f + t * Wq + h * d;
            for (int64_t i = 0; i < d; i++) {
                double acc = 0;
                for (int64_t j = 0; j < L; j++) acc += (double)p[j] * vc[j * Wkv + kvh * d + i];
                o[i] = (float)acc / (float)sum;
            }
        }
    free(p);
}

static void op_elementwise(step *s) {
    int64_t n = s->T * bj_shape_cols(s->n->shape);
    const float *a = IN(s, 0)->f, *b = s->n->nin > 1 ? IN(s, 1)->f : NULL;
    float *y = s->out->f;
    for (int64_t i = 0; i < n; i++) {
        switch (s->n->op) {
        case BJ_OP_ADD: y[i] = a[i] + b[i]; break;
        case BJ_OP_MUL: y[i] = a[i] * b[i]; break;
        case BJ_OP_RELU_SQR: y[i] = a[i] > 0 ? a[i] * a[i] : 0; break;
        case BJ_OP_SILU: y[i] = a[i] / (1.0f + expf(-a[i])); break;
        case BJ_OP_OUTPUT: y[i] = a[i]; break;
        default: BJ_ASSERT(!"not elementwise");
        }
    }
}

static void run_node(step *s) {
    switch (s->n->op) {
    case BJ_OP_INPUT: case BJ_OP_WEIGHT: case BJ_OP_WEIGHT_QUANT: break; /* prepared once */
    case BJ_OP_EMBED: op_embed(s); break;
    case BJ_OP_RMSNORM: op_rmsnorm(s); break;
    case BJ_OP_ACT_QUANT: op_act_quant(s); break;
    case BJ_OP_MATMUL_T: op_matmul_t(s); break;
    case BJ_OP_MATMUL_F: op_matmul_f(s); break;
    case BJ_OP_ROPE: op_rope(s); break;
    case BJ_OP_ATTENTION: op_attention(s); break;
    default: op_elementwise(s); break;
    }
}

/* ---- the engine ------------------------------------------------------------------------ */
static bool is_step_value(const bj_node *n) {
    return n->op != BJ_OP_INPUT && n->op != BJ_OP_WEIGHT && n->op != BJ_OP_WEIGHT_QUANT;
}

static void free_values(ref_engine *e) {
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        free(e->val[i].f);
        free(e->val[i].q);
        free(e->val[i].qs);
        memset(&e->val[i], 0, sizeof e->val[i]);
    }
}

static bool alloc_values(ref_engine *e, int64_t T) {
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        const bj_node *n = &e->g->nodes[i];
        if (!is_step_value(n)) continue;
        size_t cols = (size_t)bj_shape_cols(n->shape);
        if (n->dtype == BJ_DT_Q8ROW) {
            e->val[i].q = malloc((size_t)T * cols);
            e->val[i].qs = malloc((size_t)T * sizeof(float));
            if (!e->val[i].q || !e->val[i].qs) return false;
        } else if (!(e->val[i].f = malloc((size_t)T * cols * sizeof(float)))) {
            return false;
        }
    }
    return true;
}

static bj_status ref_forward(bj_engine *base, const int32_t *tokens, int64_t T, bool all_logits,
                             float *logits, bj_error *err) {
    ref_engine *e = (ref_engine *)base;
    if (T <= 0) return BJ_FAIL(err, BJ_E_INVALID, "forward: no tokens");
    if (base->n_past + T > base->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "context full: %lld + %lld tokens exceed the maximum of %lld",
                       (long long)base->n_past, (long long)T, (long long)base->max_seq);
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= base->n_vocab)
            return BJ_FAIL(err, BJ_E_INVALID, "token id %d out of range [0, %lld)", tokens[t], (long long)base->n_vocab);
    if (!alloc_values(e, T)) { free_values(e); return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for activations"); }
    uint32_t out = BJ_NONE;
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        step s = { e, &e->g->nodes[i], &e->val[i], T, tokens };
        run_node(&s);
        if (s.n->op == BJ_OP_OUTPUT) out = i;
    }
    int64_t V = base->n_vocab;
    const float *y = e->val[out].f;
    if (all_logits) memcpy(logits, y, (size_t)(T * V) * sizeof(float));
    else memcpy(logits, y + (T - 1) * V, (size_t)V * sizeof(float));
    free_values(e);
    base->n_past += T;
    return BJ_OK;
}

static void ref_reset(bj_engine *base) { base->n_past = 0; }

static void ref_free(bj_engine *base) {
    ref_engine *e = (ref_engine *)base;
    for (uint32_t i = 0; e->g && i < e->g->n_nodes; i++) {
        if (e->lowbit) free(e->lowbit[i].v);
        if (e->kc) free(e->kc[i]);
        if (e->vc) free(e->vc[i]);
    }
    if (e->val) free_values(e);
    free(e->lowbit); free(e->kc); free(e->vc); free(e->val);
    free(e);
}

bj_status bj_ref_engine_create(bj_engine **out, const bj_graph *g, bj_error *err) {
    *out = NULL;
    BJ_TRY(bj_ir_verify(g, err));
    uint32_t o = bj_ir_find_output(g);
    ref_engine *e = calloc(1, sizeof *e);
    if (!e) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    e->base = (bj_engine){ .name = "ref", .n_vocab = bj_shape_cols(g->nodes[o].shape), .max_seq = g->max_seq,
                           .forward = ref_forward, .reset = ref_reset, .free = ref_free };
    e->g = g;
    size_t n = g->n_nodes;
    e->lowbit = calloc(n, sizeof *e->lowbit);
    e->kc = calloc(n, sizeof *e->kc);
    e->vc = calloc(n, sizeof *e->vc);
    e->val = calloc(n, sizeof *e->val);
    bj_status s = (e->lowbit && e->kc && e->vc && e->val) ? prepare(e, err)
                                                          : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    if (s != BJ_OK) { ref_free(&e->base); return s; }
    *out = &e->base;
    return BJ_OK;
}
