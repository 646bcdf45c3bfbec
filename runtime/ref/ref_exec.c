/* runtime/ref/ref_exec.c -- the reference executor: interprets the graph in plain C.
 *
 * This is the baseline every generated kernel and JIT path is compared against, so each op
 * is written the way the BitNet forward is defined (formats.md §3.6), in f64 (docs/numerics.md),
 * with no cleverness:
 *   - activation quant: s = 127 / max(max|x|, 1e-5), q = clamp(rint(x*s), -128, 127)
 *     (rint = round half to even, as torch.round);
 *   - BitLinear: y = (sum_k q[k] * w[k]) / s * scale, the sum exact in int32;
 *   - master weights: absmean ternary (g = max(mean|W|, 1e-5), w = clamp(rint(W * (1/g)), -1, 1))
 *     or the 1-bit rule (w = W > mean(W) ? +1 : -1, scale mean|W|), evaluated once at creation;
 *   - RoPE half-split (HF rotate_half), causal softmax attention with GQA over the KV cache.
 * The ops themselves live in runtime/ops.c, shared with the JIT engine; this file is the
 * interpreter around them. Weights are unpacked to one int8 per value at creation;
 * activations are allocated per step. Single-threaded on purpose.
 *
 * Why f64: greedy decoding of these models meets near-ties (two logits within 0.01), and an
 * activation within an ulp of a .5 rounding boundary of the int8 quantizer flips a code,
 * which is enough to tip such a tie. Carried in f64, the residual stream, the norms and the
 * BitLinear rescale decide those codes as the exact forward does (to 1e-16 instead of 6e-8);
 * the narrower parts (the f32 KV cache, the head's f32 dots) are where the oracles'
 * arithmetic is f32 too. BitLinear keeps the integer form
 * y = acc / s * scale for packed and master weights alike, so the generated kernels
 * reproduce it bit for bit. */
#include "runtime/ops.h"
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

typedef struct ref_value { /* one node's result for the current step */
    double *f;  /* f64 [T, cols] */
    float *lg;  /* matmul_f: the f32 logits [T, cols] */
    int8_t *q;  /* q8row values [T, cols] */
    double *qs; /* q8row per-row scale s [T] (x ~ q / s) */
} ref_value;

typedef struct ref_lowbit { /* a ternary/binary weight prepared once */
    int8_t *v;              /* [N, K] values in {-1, 0, +1} */
    double scale;           /* W = v * scale */
} ref_lowbit;

typedef struct ref_engine {
    bj_engine base;
    const bj_graph *g;
    ref_lowbit *lowbit; /* per node: set for lowbit WEIGHT and WEIGHT_QUANT nodes */
    void **kc, **vc;    /* per node: KV cache of ATTENTION nodes, [max_seq, n_kv*head_dim] of kv */
    int kv;             /* the cache's element type (bj_kv_type) */
    ref_value *val;     /* per node, valid during a step */
    uint32_t head;      /* the matmul_f the output reads */
} ref_engine;

static bj_status prepare(ref_engine *e, bj_error *err) {
    const bj_graph *g = e->g;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        bool lowbit = n->op == BJ_OP_WEIGHT_QUANT || (n->op == BJ_OP_WEIGHT && bj_dtype_is_lowbit(n->dtype));
        if (lowbit) BJ_TRY(bj_ir_lowbit_values(g, i, &e->lowbit[i].v, &e->lowbit[i].scale, err));
        else if (n->op == BJ_OP_WEIGHT) BJ_TRY(bj_ir_weight_check(n, err));
        if (n->op == BJ_OP_ATTENTION) {
            size_t sz = (size_t)e->base.max_seq * (size_t)(n->iattr[2] * n->iattr[3]) * bj_rt_kv_elem_bytes(e->kv);
            if (!(e->kc[i] = malloc(sz)) || !(e->vc[i] = malloc(sz)))
                return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the KV cache (%zu bytes per layer)", sz);
        }
    }
    return BJ_OK;
}

/* ---- one node of one step -------------------------------------------------------------- */
/* matmul_t / matmul_tk read (x, W) as operands 0, 1; bitlinear passes its own quantized x and W = operand 2. */
static void run_matmul_t(ref_engine *e, const bj_node *n, const ref_value *x, uint32_t w_id, ref_value *out, int64_t T) {
    const ref_lowbit *w = &e->lowbit[w_id];
    int64_t N = bj_shape_cols(n->shape), K = e->g->nodes[w_id].shape.d[1];
    int32_t *acc = malloc((size_t)(T * N) * sizeof *acc);
    BJ_ASSERT(acc);
    bj_rt_matmul_t8(x->q, K, w->v, K, N, 0, T, 0, N, acc);
    bj_rt_rescale(acc, x->qs, w->scale, N, 0, T, 0, N, out->f);
    free(acc);
}

/* rmsnorm_quant, and the first half of bitlinear: the rmsnorm and act_quant ops in sequence. */
static void run_norm_quant(ref_engine *e, const bj_node *n, int64_t T, int8_t *q, double *qs) {
    int64_t D = bj_shape_cols(e->g->nodes[n->in[0]].shape);
    double *h = malloc((size_t)(T * D) * sizeof *h);
    BJ_ASSERT(h);
    bj_rt_rmsnorm(e->val[n->in[0]].f, &e->g->nodes[n->in[1]], n->fattr[0], D, 0, T, h);
    bj_rt_act_quant(h, D, D, 0, T, q, qs);
    free(h);
}

static void run_bitlinear(ref_engine *e, const bj_node *n, ref_value *out, int64_t T) {
    int64_t K = e->g->nodes[n->in[2]].shape.d[1];
    ref_value x = { .q = malloc((size_t)(T * K)), .qs = malloc((size_t)T * sizeof(double)) };
    BJ_ASSERT(x.q && x.qs);
    run_norm_quant(e, n, T, x.q, x.qs);
    run_matmul_t(e, n, &x, n->in[2], out, T);
    free(x.q);
    free(x.qs);
}

static void run_attention(ref_engine *e, const bj_node *n, ref_value *out, int64_t T) {
    uint32_t id = (uint32_t)(n - e->g->nodes);
    int64_t H = n->iattr[1], Hkv = n->iattr[2], d = n->iattr[3], pos0 = e->base.n_past;
    bj_rt_kv_store(e->val[n->in[1]].f, e->val[n->in[2]].f, Hkv * d, pos0, 0, T, e->kv, e->kc[id], e->vc[id]);
    double *scratch = malloc((size_t)(pos0 + T) * sizeof *scratch);
    BJ_ASSERT(scratch);
    bj_rt_attention(e->val[n->in[0]].f, e->kc[id], e->vc[id], e->kv, H, Hkv, d, pos0, T, 0, H, scratch, out->f);
    free(scratch);
}

static void run_node(ref_engine *e, const bj_node *n, ref_value *out, int64_t T, const int32_t *tokens) {
    const bj_graph *g = e->g;
    const double *a = n->nin > 0 ? e->val[n->in[0]].f : NULL;
    int64_t cols = bj_shape_cols(n->shape);
    switch (n->op) {
    case BJ_OP_INPUT: case BJ_OP_WEIGHT: case BJ_OP_WEIGHT_QUANT: break; /* prepared once */
    case BJ_OP_OUTPUT: break; /* the logits are copied from the head's result */
    case BJ_OP_EMBED: bj_rt_embed(&g->nodes[n->in[0]], tokens, 0, T, out->f); break;
    case BJ_OP_RMSNORM: bj_rt_rmsnorm(a, &g->nodes[n->in[1]], n->fattr[0], cols, 0, T, out->f); break;
    case BJ_OP_ACT_QUANT: bj_rt_act_quant(a, cols, cols, 0, T, out->q, out->qs); break;
    case BJ_OP_MATMUL_T: case BJ_OP_MATMUL_TK: run_matmul_t(e, n, &e->val[n->in[0]], n->in[1], out, T); break;
    case BJ_OP_RMSNORM_QUANT: run_norm_quant(e, n, T, out->q, out->qs); break;
    case BJ_OP_BITLINEAR: run_bitlinear(e, n, out, T); break;
    case BJ_OP_MATMUL_F:
        bj_rt_matmul_f(a, &g->nodes[n->in[1]], bj_shape_cols(g->nodes[n->in[0]].shape), cols, T, 0, cols, out->lg);
        break;
    case BJ_OP_ROPE: bj_rt_rope(a, n->iattr[0], n->iattr[1], n->fattr[0], e->base.n_past, 0, T, out->f); break;
    case BJ_OP_ATTENTION: run_attention(e, n, out, T); break;
    default: bj_rt_elementwise((bj_op)n->op, a, n->nin > 1 ? e->val[n->in[1]].f : NULL, 0, T * cols, out->f); break;
    }
}

/* ---- the engine ------------------------------------------------------------------------ */
static bool is_step_value(const bj_node *n) {
    return n->op != BJ_OP_INPUT && n->op != BJ_OP_WEIGHT && n->op != BJ_OP_WEIGHT_QUANT && n->op != BJ_OP_OUTPUT;
}

static void free_values(ref_engine *e) {
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        free(e->val[i].f);
        free(e->val[i].lg);
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
            e->val[i].qs = malloc((size_t)T * sizeof(double));
            if (!e->val[i].q || !e->val[i].qs) return false;
        } else if (n->op == BJ_OP_MATMUL_F) {
            if (!(e->val[i].lg = malloc((size_t)T * cols * sizeof(float)))) return false;
        } else if (!(e->val[i].f = malloc((size_t)T * cols * sizeof(double)))) {
            return false;
        }
    }
    return true;
}

static bj_status ref_forward(bj_engine *base, const int32_t *tokens, int64_t T, bool all_logits,
                             float *logits, bj_error *err) {
    ref_engine *e = (ref_engine *)base;
    BJ_TRY(bj_engine_check_step(base, tokens, T, err));
    if (!alloc_values(e, T)) { free_values(e); return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for activations"); }
    for (uint32_t i = 0; i < e->g->n_nodes; i++) run_node(e, &e->g->nodes[i], &e->val[i], T, tokens);
    bj_engine_copy_logits(base, e->val[e->head].lg, T, all_logits, logits);
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
    return bj_ref_engine_create_ctx(out, g, 0, err);
}

bj_status bj_ref_engine_create_ctx(bj_engine **out, const bj_graph *g, int64_t n_ctx, bj_error *err) {
    return bj_ref_engine_create_kv(out, g, n_ctx, BJ_KV_F32, err);
}

bj_status bj_ref_engine_create_kv(bj_engine **out, const bj_graph *g, int64_t n_ctx, int kv, bj_error *err) {
    *out = NULL;
    if (kv != BJ_KV_F32 && kv != BJ_KV_F16) return BJ_FAIL(err, BJ_E_INVALID, "unknown KV cache type %d", kv);
    BJ_TRY(bj_ir_verify(g, err));
    if (n_ctx < 0 || n_ctx > g->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "context of %lld tokens asked: the model's is %lld (at least 1)",
                       (long long)n_ctx, (long long)g->max_seq);
    uint32_t o = bj_ir_find_output(g), head;
    BJ_TRY(bj_engine_check_head(g, &head, err));
    ref_engine *e = calloc(1, sizeof *e);
    if (!e) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    e->base = (bj_engine){ .name = "ref", .n_vocab = bj_shape_cols(g->nodes[o].shape), .max_seq = n_ctx ? n_ctx : g->max_seq,
                           .forward = ref_forward, .reset = ref_reset, .free = ref_free };
    e->g = g;
    e->head = head;
    e->kv = kv;
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
