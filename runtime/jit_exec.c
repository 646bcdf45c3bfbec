/* runtime/jit_exec.c -- the JIT engine's executor: runs the plan's steps on the thread pool.
 *
 * The plan (bj_plan, compiler/compiler.h) is ordered steps; each names its op, the elementwise
 * epilogues folded into it (fold-epilogues), what the pool divides and its phases. Every piece of
 * every value lives in one activation arena at the plan's offset (plan-memory: in a step of T
 * tokens, at arena + off * T), the KV caches in one KV arena at the plan's offsets; both are
 * allocated once, of the planned size. A prompt runs in steps of at most plan.step_tokens tokens,
 * each attending to the KV cache the earlier ones filled: the same arithmetic row by row (every op
 * but attention is row-wise, and attention reads the same cached values), so the same bits. A
 * decode step allocates nothing.
 *
 * A step runs the same runtime/ops.c code as the reference engine, split by the plan's axis (token
 * rows, output rows, heads or elements); only the integer matmul is the generated kernel, exact in
 * int32 like the reference's loop, then the same rescale. So the two engines give identical logits.
 *
 * Matmuls and attention run each thread's fixed share (bj_pool_split) in chunks, taken from a
 * counter per share; a thread done with its own share takes the remaining chunks of the others'.
 * So every thread still streams its own contiguous rows, but on a machine where another process
 * holds a core for a while the thread that runs does the rest instead of waiting at the barrier.
 * Each row is computed by the same code whichever thread takes it, so results do not change. */
#include "runtime/jit_engine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t bj_jit_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- memory ------------------------------------------------------------------------------ */
/* The plan's offsets must stay inside what it sizes: a hand-made or edited plan may lie. */
static bj_status check_memory(const jit_engine *e, bj_error *err) {
    const bj_plan *p = &e->plan;
    if (!p->have_memory || !p->val || p->n_nodes != e->g->n_nodes || p->step_tokens < 1)
        return BJ_FAIL(err, BJ_E_INVALID, "plan: no memory plan for this graph (plan-memory)");
    if (p->act_elem_bytes != sizeof(double) || p->kv_elem_bytes != bj_rt_kv_elem_bytes(e->kv))
        return BJ_FAIL(err, BJ_E_INVALID, "plan: %u-byte activations and %u-byte KV elements; this engine has %zu and %zu",
                       p->act_elem_bytes, p->kv_elem_bytes, sizeof(double), bj_rt_kv_elem_bytes(e->kv));
    if (p->kv_seq < e->base.max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "plan: KV cache of %lld positions, the engine's context is %lld",
                       (long long)p->kv_seq, (long long)e->base.max_seq);
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        const bj_plan_value *v = &p->val[i];
        for (int k = 0; k < BJ_PIECES; k++)
            if (v->row[k] < 0 || v->off[k] < 0 || (v->row[k] && v->off[k] + v->row[k] > p->arena_row))
                return BJ_FAIL(err, BJ_E_INVALID, "plan: piece %d of %%%u outside the arena", k, i);
        if (e->g->nodes[i].op == BJ_OP_ATTENTION && v->kv_off + 2 * v->kv_half > p->kv_bytes)
            return BJ_FAIL(err, BJ_E_INVALID, "plan: KV cache of %%%u outside the KV arena", i);
    }
    return BJ_OK;
}

bj_status bj_jit_exec_memory(jit_engine *e, bj_error *err) {
    const bj_plan *p = &e->plan;
    BJ_TRY(check_memory(e, err));
    size_t bytes = (size_t)(p->arena_row * p->step_tokens);
    if (!(e->arena = malloc(bytes ? bytes : 1)))
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for activations (%zu bytes)", bytes);
    if (!(e->kv_arena = malloc(p->kv_bytes ? (size_t)p->kv_bytes : 1)))
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the KV cache (%llu bytes)", (unsigned long long)p->kv_bytes);
    for (uint32_t i = 0; i < e->g->n_nodes; i++)
        if (e->g->nodes[i].op == BJ_OP_ATTENTION) {
            e->kc[i] = e->kv_arena + p->val[i].kv_off;
            e->vc[i] = e->kv_arena + p->val[i].kv_off + p->val[i].kv_half;
        }
    return BJ_OK;
}

/* Every node's pieces for a step of T tokens: at arena + off * T. */
static void bind(jit_engine *e, int64_t T) {
    if (e->buf_T == T) return;
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        const bj_plan_value *v = &e->plan.val[i];
        void *at[BJ_PIECES];
        for (int k = 0; k < BJ_PIECES; k++) at[k] = v->row[k] ? e->arena + v->off[k] * T : NULL;
        e->buf[i] = (jit_buf){ .f = at[BJ_PIECE_F], .q = at[BJ_PIECE_Q], .qs = at[BJ_PIECE_QS],
                               .acc = at[BJ_PIECE_ACC], .tmp = at[BJ_PIECE_TMP] };
    }
    e->buf_T = T;
}

/* ---- the chunk scheduler ------------------------------------------------------------------ */
typedef struct step_ctx {
    jit_engine *e;
    const bj_plan_step *st;
    const bj_node *n;
    int64_t T;
    const int32_t *tokens;
    int phase;      /* bitlinear: 0 quantizes rows, 1 runs the kernel; attention: 0 stores k/v, 1 attends */
    bool last_only; /* only the last token's logits are wanted */
    float *logits;  /* where the head writes: T rows, or the last row only */
} step_ctx;

/* About BJ_CHUNKS_PER_THREAD chunks a share, in multiples of align, at least min_items. */
#define BJ_CHUNKS_PER_THREAD 8

static int64_t chunk_size(int64_t n, int64_t align, int64_t min_items, int nth) {
    int64_t c = n / ((int64_t)nth * BJ_CHUNKS_PER_THREAD);
    if (c < min_items) c = min_items;
    return (c + align - 1) / align * align;
}

/* The next chunk [*a, *b) of n items for thread ith of nth: from its own share, else from the
 * next share with some left; false when none is left. */
static bool next_chunk(step_ctx *c, int ith, int nth, int64_t n, int64_t align, int64_t size, int64_t *a,
                       int64_t *b) {
    for (int k = 0; k < nth; k++) {
        int j = (ith + k) % nth;
        int64_t s, e;
        bj_pool_split(n, align, j, nth, &s, &e);
        if (s >= e || atomic_load_explicit(&c->e->ctr[j].taken, memory_order_relaxed) >= e - s) continue;
        int64_t i = s + atomic_fetch_add_explicit(&c->e->ctr[j].taken, size, memory_order_relaxed);
        if (i >= e) continue;
        *a = i;
        *b = i + size < e ? i + size : e;
        return true;
    }
    return false;
}

/* ---- the ops ------------------------------------------------------------------------------ */
/* The kernel over chunks of output rows, the rescale, then the step's epilogues on the chunk. */
static void run_matmul_t(step_ctx *c, int ith, int nth) {
    jit_engine *e = c->e;
    uint32_t id = c->st->node;
    jit_mm *m = e->mm[id];
    jit_buf *y = &e->buf[id];
    const jit_buf *x = c->n->op == BJ_OP_BITLINEAR ? y : &e->buf[c->n->in[0]];
    int64_t m0, m1, size = chunk_size(m->M, m->row_block, 64, nth);
    const int8_t *xq = x->q;
    const uint8_t *w = m->packed;
    int32_t *acc = y->acc;
    int64_t T = c->T;
    void *args[6] = { &xq, &w, &acc, &T, &m0, &m1 };
    while (next_chunk(c, ith, nth, m->M, m->row_block, size, &m0, &m1)) {
        ffi_call(&m->cif, FFI_FN((T >= BJ_CG_TUNE_PREFILL_MIN_T && m->fn_pp ? m->fn_pp : m->fn)), NULL, args);
        bj_rt_rescale(acc, x->qs, m->scale, m->M, 0, T, m0, m1, y->f);
        for (uint32_t f = c->st->epilogue; f != BJ_NONE; f = e->plan.val[f].next_fold) {
            const bj_node *fn = &e->g->nodes[f];
            const double *b = fn->nin > 1 ? e->buf[fn->in[1]].f : NULL;
            for (int64_t t = 0; t < T; t++)
                bj_rt_elementwise((bj_op)fn->op, e->buf[fn->in[0]].f, b, t * m->M + m0, t * m->M + m1, e->buf[f].f);
        }
    }
}

static void run_attention(step_ctx *c, int ith, int nth) {
    jit_engine *e = c->e;
    const bj_node *n = c->n;
    uint32_t id = c->st->node;
    int64_t H = n->iattr[1], Hkv = n->iattr[2], d = n->iattr[3], pos0 = e->base.n_past, a, b;
    if (c->phase == 0) {
        bj_pool_split(c->T, 1, ith, nth, &a, &b);
        if (a < b) bj_rt_kv_store(e->buf[n->in[1]].f, e->buf[n->in[2]].f, Hkv * d, pos0, a, b, e->kv, e->kc[id], e->vc[id]);
        return;
    }
    while (next_chunk(c, ith, nth, H, 1, 1, &a, &b))
        bj_rt_attention(e->buf[n->in[0]].f, e->kc[id], e->vc[id], e->kv, H, Hkv, d, pos0, c->T, a, b, e->scratch[ith],
                        e->buf[id].f);
}

/* rmsnorm_quant, and bitlinear's phase 0: the rmsnorm and act_quant ops in sequence over rows [t0, t1). */
static void run_norm_quant(jit_engine *e, const bj_node *n, jit_buf *y, int64_t t0, int64_t t1) {
    int64_t D = bj_shape_cols(e->g->nodes[n->in[0]].shape);
    bj_rt_rmsnorm(e->buf[n->in[0]].f, &e->g->nodes[n->in[1]], n->fattr[0], D, t0, t1, y->tmp);
    bj_rt_act_quant(y->tmp, D, bj_cg_x_stride(D), t0, t1, y->q, y->qs);
}

/* The output head, straight into the caller's logits: when only the last token's are wanted, only
 * that row is computed (nothing but the output reads logits: bj_engine_check_head; a prompt of T
 * tokens would otherwise pay T times the largest matmul of the model). */
static void run_head(step_ctx *c, int ith, int nth) {
    jit_engine *e = c->e;
    const bj_node *n = c->n;
    uint32_t id = c->st->node;
    const double *a = e->buf[n->in[0]].f;
    int64_t n0, n1, cols = bj_shape_cols(n->shape), K = bj_shape_cols(e->g->nodes[n->in[0]].shape);
    int64_t r0 = c->last_only ? c->T - 1 : 0;
    const bj_rt_q8w *w8 = &e->head8[id];
    for (int64_t size = chunk_size(cols, 16, 256, nth); next_chunk(c, ith, nth, cols, 16, size, &n0, &n1);) {
        if (w8->q) bj_rt_matmul_q8(a + r0 * K, w8, c->T - r0, n0, n1, c->logits);
        else if (e->headf[id])
            bj_rt_matmul_f_fn(e->headf[id], a + r0 * K, &e->g->nodes[n->in[1]], K, c->T - r0, n0, n1, c->logits);
        else bj_rt_matmul_f(a + r0 * K, &e->g->nodes[n->in[1]], K, cols, c->T - r0, n0, n1, c->logits);
    }
}

static void run_step(void *ctx, int ith, int nth) {
    step_ctx *c = ctx;
    jit_engine *e = c->e;
    const bj_graph *g = e->g;
    const bj_node *n = c->n;
    jit_buf *y = &e->buf[c->st->node];
    const double *a = n->nin > 0 ? e->buf[n->in[0]].f : NULL;
    int64_t cols = bj_shape_cols(n->shape), t0, t1;
    bj_pool_split(c->T, 1, ith, nth, &t0, &t1);
    switch (n->op) {
    case BJ_OP_EMBED: bj_rt_embed(&g->nodes[n->in[0]], c->tokens, t0, t1, y->f); break;
    case BJ_OP_RMSNORM: bj_rt_rmsnorm(a, &g->nodes[n->in[1]], n->fattr[0], cols, t0, t1, y->f); break;
    case BJ_OP_ACT_QUANT: bj_rt_act_quant(a, cols, bj_cg_x_stride(cols), t0, t1, y->q, y->qs); break;
    case BJ_OP_MATMUL_T: case BJ_OP_MATMUL_TK: run_matmul_t(c, ith, nth); break;
    case BJ_OP_RMSNORM_QUANT: run_norm_quant(e, n, y, t0, t1); break;
    case BJ_OP_BITLINEAR:
        if (c->phase == 0) run_norm_quant(e, n, y, t0, t1);
        else run_matmul_t(c, ith, nth);
        break;
    case BJ_OP_MATMUL_F: run_head(c, ith, nth); break;
    case BJ_OP_ROPE: bj_rt_rope(a, n->iattr[0], n->iattr[1], n->fattr[0], e->base.n_past, t0, t1, y->f); break;
    case BJ_OP_ATTENTION: run_attention(c, ith, nth); break;
    default: {
        int64_t i0, i1;
        bj_pool_split(c->T * cols, 64, ith, nth, &i0, &i1);
        bj_rt_elementwise((bj_op)n->op, a, n->nin > 1 ? e->buf[n->in[1]].f : NULL, i0, i1, y->f);
    }
    }
}

/* ---- steps -------------------------------------------------------------------------------- */
/* Whether a step (phase) runs on the calling thread instead of the pool: what is split by token
 * rows in a one-token step, which the pool would hand to a single thread anyway, and elementwise
 * ops too small to be worth a fork-join (a few µs of work against a wake-up and a barrier, ~15 of
 * which a layer would otherwise pay per token). The same function runs over the same ranges, so
 * the arithmetic is unchanged. */
#define BJ_INLINE_ELEMS 16384

static bool step_inline(const step_ctx *c) {
    switch (c->st->split) {
    case BJ_SPLIT_TOKENS: return c->T == 1;
    case BJ_SPLIT_ROWS: case BJ_SPLIT_HEADS: /* two phases: the first is split by token rows */
        return c->st->phases == 2 && c->phase == 0 && c->T == 1;
    case BJ_SPLIT_ELEMS: return c->T * bj_shape_cols(c->n->shape) <= BJ_INLINE_ELEMS;
    default: return false;
    }
}

static void run_phase(jit_engine *e, step_ctx *c) {
    for (int i = 0; i < bj_pool_size(e->pool); i++) /* published by the pool's start */
        atomic_store_explicit(&e->ctr[i].taken, 0, memory_order_relaxed);
    if (step_inline(c)) run_step(c, 0, 1);
    else bj_pool_run(e->pool, run_step, c);
}

/* The plan's steps for T <= step_tokens tokens at positions n_past..; the head runs when logits is
 * not NULL (all T rows of it, or only the last into logits[0..V)). */
static void forward_rows(jit_engine *e, const int32_t *tokens, int64_t T, bool all_logits, float *logits) {
    bind(e, T);
    for (uint32_t k = 0; k < e->plan.n_steps; k++) {
        const bj_plan_step *st = &e->plan.steps[k];
        const bj_node *n = &e->g->nodes[st->node];
        /* the head writes the caller's logits; a matmul_f nothing reads is not run */
        if (n->op == BJ_OP_MATMUL_F && (st->node != e->head || !logits)) continue;
        uint64_t t0 = e->prof_ns ? bj_jit_now_ns() : 0;
        step_ctx c = { .e = e, .st = st, .n = n, .T = T, .tokens = tokens, .last_only = !all_logits, .logits = logits };
        for (c.phase = 0; c.phase < st->phases; c.phase++) run_phase(e, &c);
        if (e->prof_ns) {
            e->prof_ns[st->node] += bj_jit_now_ns() - t0;
            e->prof_steps[st->node]++;
            for (uint32_t f = st->epilogue; f != BJ_NONE; f = e->plan.val[f].next_fold) e->prof_steps[f]++;
        }
    }
    e->base.n_past += T;
}

bj_status bj_jit_exec_forward(bj_engine *base, const int32_t *tokens, int64_t T, bool all_logits, float *logits,
                              bj_error *err) {
    jit_engine *e = (jit_engine *)base;
    BJ_TRY(bj_engine_check_step(base, tokens, T, err));
    int64_t rows = e->plan.step_tokens;
    uint64_t f0 = e->prof_ns ? bj_jit_now_ns() : 0;
    for (int64_t s = 0; s < T; s += rows) {
        int64_t n = T - s < rows ? T - s : rows;
        float *lg = all_logits ? logits + s * base->n_vocab : s + n == T ? logits : NULL;
        forward_rows(e, tokens + s, n, all_logits, lg);
    }
    if (e->prof_ns) {
        e->prof_sum.forward_ms += (double)(bj_jit_now_ns() - f0) * 1e-6;
        e->prof_sum.forwards++;
        e->prof_sum.tokens += T;
    }
    return BJ_OK;
}
