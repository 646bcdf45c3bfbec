/* runtime/engine_jit.c -- the JIT engine: an execution plan over the graph whose ternary
 * matmuls are generated kernels.
 *
 * Creation: run the pass pipeline over the engine's own copy of the graph (bj_jit_compile:
 * the caller's graph is left as it was). Its plan names the target, every matmul's kernels
 * (select-kernels: forced, IR, tuning database, cost rule, prefill default) and their packed
 * weights (pack-weights: from the packed-weight cache or packed now); the engine chooses and
 * packs nothing. It gets each kernel from the JIT, the disk cache or a fresh compile
 * (bj_cg_kernel_get), or from an AOT library (kernel_lookup); identical shapes share one
 * kernel. Each matmul step keeps a libffi call interface prepared once, so kernels keep their
 * natural typed C signature. Still the engine's own (docs/architecture.md): the --head q8
 * conversion, the folding of elementwise ops into matmul steps and the activation arena.
 *
 * A step runs on the thread pool: every op is split by rows (tokens, output rows or heads)
 * and runs the same runtime/ops.c code as the reference engine; only the integer matmul is
 * the generated kernel, exact in int32 like the reference's loop, then the same rescale.
 * So the two engines give identical logits. Buffers are sized for the largest step seen and
 * reused; a decode step allocates nothing. */
#include "codegen/codegen.h"
#include "codegen/cg_tunedb.h"
#include "compiler/compiler.h"
#include "runtime/ops.h"
#include "runtime/runtime.h"
#include "runtime/threads.h"
#include "runtime/tune.h"

#include <ffi.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef struct jit_mm {   /* one ternary matmul step */
    bj_cg_kdesc desc;
    bj_cg_matmul_fn fn;
    bj_cg_matmul_fn fn_pp; /* the kernel for steps of >= BJ_CG_TUNE_PREFILL_MIN_T tokens (tuning database or the
                              path's prefill default: bj_cg_kdesc_prefill_default), or NULL */
    bj_cg_kdesc desc_pp;   /* fn_pp's descriptor */
    bool tuned;            /* desc came from the tuning database */
    bool pp_tuned;         /* fn_pp came from it (else the path's default prefill tiles) */
    ffi_cif cif;
    const uint8_t *packed; /* weights in the kernel's layout (NULL for weights-as-code): the plan's (pack-weights) */
    double scale;
    int64_t M, K, row_block;
} jit_mm;

/* The pieces of one node's step, each cap_T rows inside the activation arena (see "buffers"). */
enum { JIT_F, JIT_Q, JIT_QS, JIT_ACC, JIT_TMP, JIT_PIECES };

typedef struct jit_buf {  /* one node's result and scratch, cap_T rows each, NULL where unused */
    double *f;            /* f64 activations (runtime/ops.h) */
    int8_t *q;            /* q8row: rows of stride bj_cg_x_stride(K), zero padded */
    double *qs;
    int32_t *acc;         /* matmul_t: integer sums before the rescale */
    double *tmp;          /* rmsnorm_quant, bitlinear: the normed rows before quantization */
    int64_t row[JIT_PIECES], off[JIT_PIECES]; /* bytes a token and arena offset a token (plan_buffers) */
} jit_buf;

typedef struct jit_engine {
    bj_engine base;
    const bj_graph *g;    /* &own */
    bj_graph own;         /* the caller's graph as the pass pipeline left it */
    bj_plan plan;         /* the pipeline's decisions (select-kernels: every matmul's kernels) */
    bj_pool *pool;
    bj_cg_target tgt;
    bj_cg_cache cache;
    bj_cg_jit *jit;
    ffi_type *argt[6];
    jit_mm **mm;          /* per node: matmul_t steps */
    bj_rt_q8w *head8;     /* per node: matmul_f weights at 8 bits (--head q8), q NULL otherwise */
    bj_cg_head_fn *headf; /* per node: matmul_f's generated exact kernel (cg_kernel_head.c), or NULL: plain C */
    bj_cg_wmap *head8map; /* per node: where head8 is mapped from the packed-weight cache (else malloc'd) */
    bj_cg_srcidx sidx;    /* while preparing: source hashes by file identity */
    uint64_t released;    /* while preparing: bytes of source pages given back */
    uint32_t head;        /* the matmul_f the output reads (bj_engine_check_head) */
    uint32_t *done;       /* per node: the step that computes it (itself, or the matmul it is folded into) */
    uint32_t *tail;       /* per matmul: the first elementwise node folded into its chunks, BJ_NONE if none */
    uint32_t *tail_next;  /* per folded node: the next one of the same matmul */
    void **kc, **vc;      /* per node: attention KV caches, of kv elements */
    int kv;               /* the caches' element type (bj_jit_options.kv) */
    jit_buf *buf;         /* per node */
    int64_t plan_row;     /* the arena's bytes per token of capacity (plan_buffers) */
    int64_t plan_naive;   /* ... were every piece its own buffer */
    uint8_t *arena;       /* activations for cap_T tokens */
    int64_t cap_T;
    double **scratch;     /* per thread: attention scores, max_seq doubles */
    struct jit_ctr *ctr;  /* per thread: chunked steps' progress through that thread's share */
    uint64_t *prof_ns;    /* options.profile: per node, time in its steps; NULL otherwise */
    int64_t *prof_steps;
    bj_jit_profile_sum prof_sum;
} jit_engine;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

void bj_jit_options_default(bj_jit_options *o) {
    memset(o, 0, sizeof *o);
    o->n_threads = 1;
}

/* ---- creation ------------------------------------------------------------------------- */
/* The kernel for m's descriptor: from an AOT library when the caller gives a lookup,
 * else from the JIT, the disk cache or a fresh compile. */
static bj_status get_kernel(jit_engine *e, jit_mm *m, const int8_t *t8, const bj_jit_options *o, bj_error *err) {
    if (!o->kernel_lookup) return bj_cg_kernel_get(&e->cache, e->jit, &e->tgt, &m->desc, t8, &m->fn, err);
    char sym[32];
    bj_cg_kernel_symbol(&m->desc, sym, sizeof sym);
    void *fn = NULL;
    BJ_TRY(o->kernel_lookup(o->kernel_ud, &m->desc, sym, &fn, err));
    m->fn = (bj_cg_matmul_fn)fn;
    return BJ_OK;
}

/* The kernels select-kernels chose (the plan): m->desc = the decode descriptor, unless it came
 * from the tuning database and its kernel cannot be had (an ahead-of-time library built without
 * it, a generator refusing a hand-edited entry: then the untuned one, pk->def); a second kernel
 * for prefill steps where the plan has one that packs weights the same way. Never fails:
 * anything missing falls back to def, and every kernel is exact. */
static void tune_resolve(jit_engine *e, jit_mm *m, const bj_cg_tune_pick *pk, const int8_t *t8,
                         const bj_jit_options *o) {
    bj_error ign = { 0 };
    jit_mm tmp = *m;
    m->desc = pk->dec;
    m->tuned = pk->dec_tuned;
    tmp.desc = pk->dec;
    /* the weights are packed for dec's layout: def only where it reads the same one */
    if (pk->dec_tuned && pk->def.variant == pk->dec.variant && get_kernel(e, &tmp, t8, o, &ign) != BJ_OK) {
        m->desc = pk->def;
        m->tuned = false;
    }
    tmp.desc = pk->pp;
    if (pk->has_pp && pk->pp.variant == m->desc.variant && memcmp(&pk->pp, &m->desc, sizeof m->desc) &&
        get_kernel(e, &tmp, t8, o, &ign) == BJ_OK) {
        m->fn_pp = tmp.fn;
        m->desc_pp = pk->pp;
        m->pp_tuned = !pk->pp_default;
    }
}

/* The ternary matmuls: matmul_t, and the compiler's matmul_tk / bitlinear (weight operand 2). */
static bool is_lowbit_matmul(const bj_node *n) {
    return n->op == BJ_OP_MATMUL_T || n->op == BJ_OP_MATMUL_TK || n->op == BJ_OP_BITLINEAR;
}
static uint32_t matmul_weight(const bj_node *n) { return n->op == BJ_OP_BITLINEAR ? n->in[2] : n->in[1]; }

static bool pick_has_wcode(const bj_cg_tune_pick *pk) {
    return pk->def.variant == BJ_CG_V_WCODE || pk->dec.variant == BJ_CG_V_WCODE ||
           (pk->has_pp && pk->pp.variant == BJ_CG_V_WCODE);
}

/* Node id's kernels as select-kernels chose them (the plan), its weights from the packed-weight
 * cache (or pending), the ffi call interface. */
static bj_status prepare_matmul(jit_engine *e, uint32_t id, const bj_jit_options *o, bj_error *err) {
    const bj_node *n = &e->g->nodes[id];
    uint32_t wid = matmul_weight(n);
    const bj_node *w = &e->g->nodes[wid];
    jit_mm *m = calloc(1, sizeof *m);
    if (!m) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    e->mm[id] = m;
    m->M = w->shape.d[0];
    m->K = w->shape.d[1];
    if (id >= e->plan.n_nodes || !e->plan.kern[id].set)
        return BJ_FAIL(err, BJ_E_INTERNAL, "matmul %%%u has no kernel in the plan (select-kernels did not see it)", id);
    const bj_cg_tune_pick *pk = &e->plan.kern[id].pick;
    /* The values are needed up front only to compile weights-as-code; otherwise only to pack,
     * which the packed-weight cache may spare. */
    int8_t *t8 = NULL;
    bj_status s = pick_has_wcode(pk) ? bj_ir_lowbit_values(e->g, wid, &t8, &m->scale, err)
                                     : bj_ir_lowbit_scale(e->g, wid, &m->scale, err);
    if (s == BJ_OK) tune_resolve(e, m, pk, t8, o);
    m->packed = e->plan.kern[id].packed;
    if (s == BJ_OK && !m->packed && bj_cg_packed_size(&m->desc))
        s = BJ_FAIL(err, BJ_E_INTERNAL, "no packed weights in the plan (pack-weights did not pack them)");
    if (s == BJ_OK) s = get_kernel(e, m, t8, o, err);
    if (s == BJ_OK && ffi_prep_cif(&m->cif, FFI_DEFAULT_ABI, 6, &ffi_type_void, e->argt) != FFI_OK)
        s = BJ_FAIL(err, BJ_E_INTERNAL, "libffi cannot describe the kernel signature");
    free(t8);
    m->row_block = bj_cg_row_block(&m->desc);
    if (s != BJ_OK) bj_error_prefix(err, "matmul %%%u (weight '%s', %lldx%lld)", id, w->name ? w->name : "?",
                                    (long long)m->M, (long long)m->K);
    return s;
}

/* "dot2/avx512vnni x210", then "; prefill dot2/amx x210" for the matmuls with a prefill kernel. */
static void describe_variants(jit_engine *e, bj_jit_report *r) {
    size_t off = 0;
    r->variants[0] = 0;
    for (int pp = 0; pp < 2; pp++) {
        int counts[BJ_CG_V_COUNT][BJ_CG_ISA_COUNT] = { { 0 } }, n = 0;
        for (uint32_t i = 0; i < e->g->n_nodes; i++) {
            const jit_mm *m = e->mm[i];
            if (!m || (pp && !m->fn_pp)) continue;
            const bj_cg_kdesc *d = pp ? &m->desc_pp : &m->desc;
            counts[d->variant][d->isa]++;
        }
        for (int v = 0; v < BJ_CG_V_COUNT; v++)
            for (int a = 0; a < BJ_CG_ISA_COUNT; a++)
                if (counts[v][a] && off < sizeof r->variants)
                    off += (size_t)snprintf(r->variants + off, sizeof r->variants - off, "%s%s/%s x%d",
                                            n++ ? ", " : pp ? "; prefill " : "", bj_cg_variant_name((bj_cg_variant)v),
                                            bj_cg_isa_name((bj_cg_isa)a), counts[v][a]);
    }
}

/* --head q8: the int8 copy of a float weight, rows split over the pool. */
typedef struct q8_ctx {
    bj_rt_q8w *w;
    const bj_node *weight;
    int64_t r0, r1; /* this round's rows */
} q8_ctx;

static void q8_rows(void *ctx, int ith, int nth) {
    q8_ctx *c = ctx;
    int64_t n0, n1;
    bj_pool_split(c->r1 - c->r0, 64, ith, nth, &n0, &n1);
    if (n0 < n1) bj_rt_q8w_rows(c->w, c->weight, c->r0 + n0, c->r0 + n1);
}

/* The packed-weight cache's kind for an int8 head (bj_cg_wcache_load_raw): int8 rows of
 * bj_rt_q8w's stride, then one float scale per row. */
#define HEAD_Q8_KIND 1
#define HEAD_Q8_CHECK_ROWS 33

/* A cached int8 head is keyed by the float head's bytes, but the conversion rule lives in
 * runtime/ops.c: rows spread over the matrix are converted again and must match bit for bit,
 * so a changed rule (or a wrong entry) is a miss, never a silently different head. */
static bool head_q8_matches(const bj_rt_q8w *w, const bj_node *weight) {
    uint64_t row_bytes = weight->nbytes / (uint64_t)w->N;
    int8_t *q = malloc((size_t)w->stride);
    bool ok = q != NULL;
    for (int i = 0; ok && i < HEAD_Q8_CHECK_ROWS; i++) {
        int64_t n = i == HEAD_Q8_CHECK_ROWS - 1 ? w->N - 1 : (int64_t)((uint64_t)i * (uint64_t)w->N / HEAD_Q8_CHECK_ROWS);
        bj_node row = *weight;
        row.data = (const uint8_t *)weight->data + (uint64_t)n * row_bytes;
        row.nbytes = row_bytes;
        row.shape.d[0] = 1;
        float d;
        bj_rt_q8w one = { .q = q, .d = &d, .N = 1, .K = w->K, .stride = w->stride };
        bj_rt_q8w_rows(&one, &row, 0, 1);
        ok = !memcmp(q, w->q + n * w->stride, (size_t)w->stride) && !memcmp(&d, &w->d[n], sizeof d);
    }
    free(q);
    return ok;
}

/* w = weight at 8 bits, converted on the pool in rounds of rows; with by_rows (rows are equal
 * slices of the bytes) each round's float rows are given back after it, so the float head and
 * its int8 copy are never resident whole at once (2B4T: 656 + 328 MB). */
static bj_status head_q8_convert(jit_engine *e, bj_rt_q8w *w, const bj_node *weight, bool by_rows, bj_error *err) {
    BJ_TRY(bj_rt_q8w_alloc(w, weight, err));
    int64_t N = w->N;
    uint64_t row_bytes = N > 0 ? weight->nbytes / (uint64_t)N : 0;
    for (int64_t r0 = 0; r0 < N; r0 += 4096) {
        q8_ctx c = { w, weight, r0, r0 + 4096 < N ? r0 + 4096 : N };
        bj_pool_run(e->pool, q8_rows, &c);
        if (by_rows) bj_fmap_release((const uint8_t *)weight->data + (uint64_t)r0 * row_bytes,
                                     (uint64_t)(c.r1 - r0) * row_bytes);
    }
    return BJ_OK;
}

/* --head q8: node id's float weight as int8 rows, mapped from the packed-weight cache (keyed
 * by the weight's bytes) or converted on the pool and stored there. Then the float head's
 * pages are given back: only rows an embedding looks up are read again. */
static bj_status prepare_head_q8(jit_engine *e, uint32_t id, bj_jit_report *r, bj_error *err) {
    const bj_node *weight = &e->g->nodes[e->g->nodes[id].in[1]];
    bj_rt_q8w *w = &e->head8[id];
    int64_t N = weight->shape.d[0], K = weight->shape.d[1];
    uint64_t S = (bj_rt_q8w_bytes(N, K) - (uint64_t)N * 4) / (uint64_t)N, size = bj_rt_q8w_bytes(N, K), src[2];
    /* Rows of the float weight must be equal slices of its bytes for the check above (and to
     * give rows back as they are converted). */
    bool sliced = N > 0 && weight->nbytes % (uint64_t)N == 0;
    bool cacheable = e->cache.enabled && sliced && N <= UINT32_MAX && K <= UINT32_MAX;
    if (cacheable) {
        char how[160];
        snprintf(how, sizeof how, "head q8|%s|%lldx%lld|stride %llu", bj_dtype_name((bj_dtype)weight->dtype),
                 (long long)N, (long long)K, (unsigned long long)S);
        bj_cg_srcidx_hash(&e->cache, &e->sidx, weight->data, (size_t)weight->nbytes, how, src);
        /* If that read the float head (not in the index), it need not stay: a cache hit reads
         * 33 rows of it, a conversion faults it in again one round of rows at a time. */
        bj_fmap_release(weight->data, weight->nbytes);
        bj_cg_wmap *mp = &e->head8map[id];
        BJ_TRY(bj_cg_wcache_load_raw(&e->cache, HEAD_Q8_KIND, (uint32_t)N, (uint32_t)K, size, src, mp, err));
        if (mp->data) {
            *w = (bj_rt_q8w){ .q = (int8_t *)mp->data, .d = (float *)(mp->data + (uint64_t)N * S), .N = N, .K = K,
                              .stride = (int64_t)S };
            if (head_q8_matches(w, weight)) {
                r->head_q8_loaded++;
                e->released += bj_fmap_release(weight->data, weight->nbytes);
                return BJ_OK;
            }
            memset(w, 0, sizeof *w);
            bj_cg_wmap_free(mp);
        }
    }
    BJ_TRY(head_q8_convert(e, w, weight, sliced, err));
    if (cacheable && (uint64_t)w->stride == S) {
        bj_cg_part parts[2] = { { w->q, (size_t)N * S }, { w->d, (size_t)N * sizeof(float) } };
        BJ_TRY(bj_cg_wcache_store_raw(&e->cache, HEAD_Q8_KIND, (uint32_t)N, (uint32_t)K, src, parts, 2, err));
        /* As for packed weights, run from the entry just written, and free the heap copy
         * first so that the two are not resident together (328 MB each for 2B4T). Should the
         * entry not map back (disk trouble), the head is converted once more. */
        bj_cg_wmap *mp = &e->head8map[id];
        if (e->cache.enabled) {
            bj_rt_q8w_free(w);
            BJ_TRY(bj_cg_wcache_load_raw(&e->cache, HEAD_Q8_KIND, (uint32_t)N, (uint32_t)K, size, src, mp, err));
            if (mp->data)
                *w = (bj_rt_q8w){ .q = (int8_t *)mp->data, .d = (float *)(mp->data + (uint64_t)N * S), .N = N,
                                  .K = K, .stride = (int64_t)S };
            else
                BJ_TRY(head_q8_convert(e, w, weight, false, err));
        }
    }
    e->released += bj_fmap_release(weight->data, weight->nbytes);
    return BJ_OK;
}

/* The exact head's generated kernel where the target has a path for it (codegen decides, in
 * bj_cg_head_kdesc_init); anything missing leaves the plain C head, which gives the same bits. */
static void prepare_head_f(jit_engine *e, uint32_t id) {
    const bj_node *n = &e->g->nodes[id], *w = &e->g->nodes[n->in[1]];
    bj_cg_head_dtype dt = w->dtype == BJ_DT_F16 ? BJ_CG_HEAD_F16 : w->dtype == BJ_DT_BF16 ? BJ_CG_HEAD_BF16 : BJ_CG_HEAD_F32;
    bj_cg_kdesc d;
    bj_cg_matmul_fn fn = NULL;
    bj_error ign = { 0 };
    if ((w->dtype != BJ_DT_F16 && w->dtype != BJ_DT_BF16 && w->dtype != BJ_DT_F32) || w->shape.ndim != 2 ||
        w->shape.d[0] > UINT32_MAX || w->shape.d[1] > UINT32_MAX ||
        bj_cg_head_kdesc_init(&d, &e->tgt, dt, BJ_CG_ISA_AUTO, (uint32_t)w->shape.d[0], (uint32_t)w->shape.d[1], &ign) ||
        bj_cg_kernel_get(&e->cache, e->jit, &e->tgt, &d, NULL, &fn, &ign))
        return;
    e->headf[id] = bj_cg_head_fn_of(fn);
}

/* A matmul's kernels as the plan chose them: the first matmul of each distinct pick compiles (or
 * loads) them, the others of the pick reuse them. Progress counts picks, where the time goes (a cold
 * start of kjv compiles 8 kernels for 4 picks while preparing its first 7 of 42 matmuls).
 * bj_cg_kdesc is a fixed, padded hash key, so memcmp compares it. */
static bool same_kernels(const bj_cg_tune_pick *a, const bj_cg_tune_pick *b) {
    return !memcmp(&a->dec, &b->dec, sizeof a->dec) && a->has_pp == b->has_pp &&
           (!a->has_pp || !memcmp(&a->pp, &b->pp, sizeof a->pp));
}

static int64_t find_pick(const bj_cg_tune_pick *const *picks, int64_t from, int64_t n, const bj_cg_tune_pick *p) {
    for (int64_t i = from; i < n; i++)
        if (same_kernels(picks[i], p)) return i;
    return -1;
}

static bj_status prepare(jit_engine *e, const bj_jit_options *o, bj_jit_report *r, bj_error *err) {
    const bj_graph *g = e->g;
    int64_t total = 0, n_picks = 0, n_done = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) total += is_lowbit_matmul(&g->nodes[i]);
    /* the distinct picks of the plan; picks[0..n_done): kernels had */
    const bj_cg_tune_pick **picks = calloc((size_t)total + 1, sizeof *picks);
    if (!picks) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    for (uint32_t i = 0; i < g->n_nodes && i < e->plan.n_nodes; i++)
        if (is_lowbit_matmul(&g->nodes[i]) && e->plan.kern[i].set && find_pick(picks, 0, n_picks, &e->plan.kern[i].pick) < 0)
            picks[n_picks++] = &e->plan.kern[i].pick;
    bj_status s = BJ_OK;
    for (uint32_t i = 0; i < g->n_nodes && s == BJ_OK; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op == BJ_OP_WEIGHT && (s = bj_ir_weight_check(n, err)) != BJ_OK) break;
        if (n->op == BJ_OP_ATTENTION) {
            size_t sz = (size_t)e->base.max_seq * (size_t)(n->iattr[2] * n->iattr[3]) * bj_rt_kv_elem_bytes(e->kv);
            if (!(e->kc[i] = malloc(sz)) || !(e->vc[i] = malloc(sz))) {
                s = BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the KV cache (%zu bytes per layer)", sz);
                break;
            }
        }
        if (n->op == BJ_OP_MATMUL_F && o->head_q8) {
            if ((s = prepare_head_q8(e, i, r, err)) != BJ_OK) break;
            r->head_q8 = true;
        } else if (n->op == BJ_OP_MATMUL_F && !o->head_c && !o->kernel_lookup) {
            prepare_head_f(e, i);
        }
        if (!is_lowbit_matmul(n)) continue;
        if ((s = prepare_matmul(e, i, o, err)) != BJ_OK) break;
        r->packed_bytes += bj_cg_packed_size(&e->mm[i]->desc);
        r->n_tuned += e->mm[i]->tuned;
        r->n_tuned_pp += e->mm[i]->fn_pp && e->mm[i]->pp_tuned;
        int64_t j = find_pick(picks, n_done, n_picks, &e->plan.kern[i].pick);
        if (j >= 0) { /* the first matmul of its pick: its kernels are had */
            const bj_cg_tune_pick *p = picks[j];
            picks[j] = picks[n_done];
            picks[n_done++] = p;
            if (o->progress) o->progress(o->progress_ud, n_done, n_picks);
        }
    }
    free(picks);
    if (s != BJ_OK) return s;
    r->n_matmuls = total;
    return BJ_OK;
}

/* ---- buffers ---------------------------------------------------------------------------
 * Every piece of a step (a node's result, its integer sums, its normed rows, a bitlinear's
 * quantized input) is T rows of a fixed number of bytes, so one plan in bytes per token serves
 * every T. A node's result lives from its step to the last step that reads it, its scratch for
 * its own step only; first fit over those intervals gives each piece an offset, and one arena of
 * cap_T times the plan's row holds them all. Pieces whose lifetimes do not overlap share bytes,
 * so a prompt costs a few rows of the widest layers a token instead of one buffer per node
 * (11 MB a token for 2B4T in f32; twice that in f64). The head writes the caller's logits. */
#define JIT_ALIGN 64

static bool is_step_value(const bj_node *n) {
    return n->op != BJ_OP_INPUT && n->op != BJ_OP_WEIGHT && n->op != BJ_OP_WEIGHT_QUANT;
}

typedef struct jit_piece {
    uint32_t node, from, to; /* live during steps [from, to] */
    int kind;                /* JIT_F ... */
    int64_t row, off;        /* bytes a token; offset a token */
} jit_piece;

static int piece_by_off(const void *a, const void *b) {
    int64_t x = (*(const jit_piece *const *)a)->off, y = (*(const jit_piece *const *)b)->off;
    return (x > y) - (x < y);
}

/* Elementwise ops (add, mul, relu_sqr, silu) whose last operand to be computed is a ternary
 * matmul run in that matmul's step, on each chunk of output columns right after the chunk is
 * rescaled, by the thread that computed it: the values are still in its cache, where a step of
 * their own would read them from every core (at 16 threads relu_sqr alone took 48 us a layer
 * that way) and cost a fork-join or the calling thread's time. The same function on the same
 * elements, so the same bits. The residual adds after o_proj/down, and relu^2 and the gate*up
 * product of the FFN, fold this way. */
static bool plan_folds(jit_engine *e) {
    const bj_graph *g = e->g;
    uint32_t n = g->n_nodes;
    if (!(e->done = malloc(n * sizeof *e->done)) || !(e->tail = malloc(n * sizeof *e->tail)) ||
        !(e->tail_next = malloc(n * sizeof *e->tail_next)))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        e->done[i] = i;
        e->tail[i] = e->tail_next[i] = BJ_NONE;
        const bj_node *nd = &g->nodes[i];
        if (nd->op != BJ_OP_ADD && nd->op != BJ_OP_MUL && nd->op != BJ_OP_RELU_SQR && nd->op != BJ_OP_SILU) continue;
        uint32_t p = 0;
        for (uint32_t k = 0; k < nd->nin; k++)
            if (e->done[nd->in[k]] >= p) p = e->done[nd->in[k]];
        if (!is_lowbit_matmul(&g->nodes[p]) || bj_shape_cols(g->nodes[p].shape) != bj_shape_cols(nd->shape)) continue;
        e->done[i] = p;
        uint32_t *at = &e->tail[p]; /* appended: the tail runs them in node order */
        while (*at != BJ_NONE) at = &e->tail_next[*at];
        *at = i;
    }
    return true;
}

/* Sets buf[].row and buf[].off for every piece and e->plan_row. Steps run in node order; a
 * folded node's pieces are live from its matmul's step. */
static bool plan_buffers(jit_engine *e) {
    const bj_graph *g = e->g;
    uint32_t n = g->n_nodes, *last = malloc(n * sizeof *last);
    jit_piece *p = malloc((size_t)n * JIT_PIECES * sizeof *p), **live = malloc((size_t)n * JIT_PIECES * sizeof *live);
    if (!last || !p || !live) { free(last); free(p); free(live); return false; }
    for (uint32_t i = 0; i < n; i++) last[i] = i;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < g->nodes[i].nin; k++)
            if (last[g->nodes[i].in[k]] < i) last[g->nodes[i].in[k]] = i;
    size_t np = 0;
    for (uint32_t i = 0; i < n; i++) {
        const bj_node *nd = &g->nodes[i];
        jit_buf *b = &e->buf[i];
        for (int k = 0; k < JIT_PIECES; k++) b->row[k] = 0;
        if (!is_step_value(nd) || nd->op == BJ_OP_OUTPUT || nd->op == BJ_OP_MATMUL_F) continue;
        int64_t cols = bj_shape_cols(nd->shape);
        /* rmsnorm_quant: q8row of its own columns; bitlinear: its result plus its quantized input (K columns) */
        int64_t qcols = nd->op == BJ_OP_BITLINEAR ? g->nodes[nd->in[2]].shape.d[1] : cols;
        bool q8 = nd->dtype == BJ_DT_Q8ROW;
        if (q8 || nd->op == BJ_OP_BITLINEAR) {
            b->row[JIT_Q] = bj_cg_x_stride(qcols);
            b->row[JIT_QS] = (int64_t)sizeof(double);
        }
        if (nd->op == BJ_OP_RMSNORM_QUANT || nd->op == BJ_OP_BITLINEAR) b->row[JIT_TMP] = qcols * (int64_t)sizeof(double);
        if (!q8) b->row[JIT_F] = cols * (int64_t)sizeof(double);
        if (is_lowbit_matmul(nd)) b->row[JIT_ACC] = cols * (int64_t)sizeof(int32_t);
        for (int k = 0; k < JIT_PIECES; k++) {
            if (!b->row[k]) continue;
            bool result = k == JIT_F || (q8 && (k == JIT_Q || k == JIT_QS));
            p[np++] = (jit_piece){ .node = i, .from = e->done[i], .to = result ? last[i] : e->done[i], .kind = k,
                                   .row = (b->row[k] + JIT_ALIGN - 1) / JIT_ALIGN * JIT_ALIGN };
        }
    }
    int64_t top = 0;
    /* first fit in step order, among the pieces still live */
    for (size_t a = 1; a < np; a++) /* insertion sort by step: folded pieces start before their node */
        for (size_t c = a; c > 0 && p[c - 1].from > p[c].from; c--) {
            jit_piece t = p[c];
            p[c] = p[c - 1];
            p[c - 1] = t;
        }
    for (size_t a = 0; a < np; a++) {
        size_t nl = 0;
        for (size_t c = 0; c < a; c++)
            if (p[c].to >= p[a].from) live[nl++] = &p[c];
        qsort(live, nl, sizeof *live, piece_by_off);
        int64_t off = 0;
        for (size_t c = 0; c < nl && live[c]->off < off + p[a].row; c++)
            if (live[c]->off + live[c]->row > off) off = live[c]->off + live[c]->row;
        p[a].off = off;
        if (off + p[a].row > top) top = off + p[a].row;
        e->buf[p[a].node].off[p[a].kind] = off;
    }
    e->plan_row = top;
    e->plan_naive = 0;
    for (size_t a = 0; a < np; a++) e->plan_naive += p[a].row;
    free(last);
    free(p);
    free(live);
    return true;
}

static void free_buffers(jit_engine *e) {
    free(e->arena);
    e->arena = NULL;
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        jit_buf *b = &e->buf[i];
        b->f = b->qs = b->tmp = NULL;
        b->q = NULL;
        b->acc = NULL;
    }
    e->cap_T = 0;
}

static bool alloc_buffers(jit_engine *e, int64_t T) {
    free_buffers(e);
    if (!(e->arena = malloc((size_t)(e->plan_row * T)))) return false;
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        jit_buf *b = &e->buf[i];
        void *at[JIT_PIECES];
        for (int k = 0; k < JIT_PIECES; k++) at[k] = b->row[k] ? e->arena + b->off[k] * T : NULL;
        b->f = at[JIT_F];
        b->q = at[JIT_Q];
        b->qs = at[JIT_QS];
        b->acc = at[JIT_ACC];
        b->tmp = at[JIT_TMP];
    }
    e->cap_T = T;
    return true;
}

/* ---- one step on the pool -------------------------------------------------------------- */
typedef struct step_ctx {
    jit_engine *e;
    const bj_node *n;
    int64_t T;
    const int32_t *tokens;
    int phase;      /* attention: 0 stores k/v, 1 attends */
    bool last_only; /* only the last token's logits are wanted */
    float *logits;  /* where the head writes: T rows, or the last row only */
} step_ctx;

/* The matmuls and attention run each thread's fixed share (bj_pool_split) in chunks, taken
 * from a counter per share; a thread done with its own share takes the remaining chunks of the
 * others'. So every thread still streams its own contiguous rows, but on a machine where
 * another process holds a core for a while the thread that runs does the rest instead of
 * waiting at the barrier. Each row is computed by the same code whichever thread takes it, so
 * results do not change. About BJ_CHUNKS_PER_THREAD chunks a share, in multiples of align,
 * at least min_items. */
#define BJ_CHUNKS_PER_THREAD 8

typedef struct jit_ctr {  /* one cache line each: the threads' counters do not share lines */
    atomic_int_fast64_t taken; /* items of this share handed out so far */
    char pad[64 - sizeof(atomic_int_fast64_t)];
} jit_ctr;

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

static void run_matmul_t(step_ctx *c, int ith, int nth) {
    jit_engine *e = c->e;
    uint32_t id = (uint32_t)(c->n - e->g->nodes);
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
        for (uint32_t f = e->tail[id]; f != BJ_NONE; f = e->tail_next[f]) { /* plan_folds */
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
    uint32_t id = (uint32_t)(n - e->g->nodes);
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

static void run_step(void *ctx, int ith, int nth) {
    step_ctx *c = ctx;
    jit_engine *e = c->e;
    const bj_graph *g = e->g;
    const bj_node *n = c->n;
    jit_buf *y = &e->buf[n - g->nodes];
    const double *a = n->nin > 0 ? e->buf[n->in[0]].f : NULL;
    int64_t cols = bj_shape_cols(n->shape), t0, t1;
    bj_pool_split(c->T, 1, ith, nth, &t0, &t1);
    switch (n->op) {
    case BJ_OP_EMBED: bj_rt_embed(&g->nodes[n->in[0]], c->tokens, t0, t1, y->f); break;
    case BJ_OP_RMSNORM: bj_rt_rmsnorm(a, &g->nodes[n->in[1]], n->fattr[0], cols, t0, t1, y->f); break;
    case BJ_OP_ACT_QUANT: bj_rt_act_quant(a, cols, bj_cg_x_stride(cols), t0, t1, y->q, y->qs); break;
    case BJ_OP_MATMUL_T: case BJ_OP_MATMUL_TK: run_matmul_t(c, ith, nth); break;
    case BJ_OP_RMSNORM_QUANT: run_norm_quant(e, n, y, t0, t1); break;
    case BJ_OP_BITLINEAR: /* phase 0 quantizes rows, phase 1 runs the kernel over output rows */
        if (c->phase == 0) run_norm_quant(e, n, y, t0, t1);
        else run_matmul_t(c, ith, nth);
        break;
    case BJ_OP_MATMUL_F: {
        /* The output head, straight into the caller's logits: when only the last token's are
         * wanted, only that row is computed (nothing but the output reads logits:
         * bj_engine_check_head; a prompt of T tokens would otherwise pay T times the largest
         * matmul of the model). */
        int64_t n0, n1, K = bj_shape_cols(g->nodes[n->in[0]].shape), r0 = c->last_only ? c->T - 1 : 0;
        const bj_rt_q8w *w8 = &e->head8[n - g->nodes];
        for (int64_t size = chunk_size(cols, 16, 256, nth); next_chunk(c, ith, nth, cols, 16, size, &n0, &n1);) {
            if (w8->q) bj_rt_matmul_q8(a + r0 * K, w8, c->T - r0, n0, n1, c->logits);
            else if (e->headf[n - g->nodes])
                bj_rt_matmul_f_fn(e->headf[n - g->nodes], a + r0 * K, &g->nodes[n->in[1]], K, c->T - r0, n0, n1, c->logits);
            else bj_rt_matmul_f(a + r0 * K, &g->nodes[n->in[1]], K, cols, c->T - r0, n0, n1, c->logits);
        }
        break;
    }
    case BJ_OP_ROPE: bj_rt_rope(a, n->iattr[0], n->iattr[1], n->fattr[0], e->base.n_past, t0, t1, y->f); break;
    case BJ_OP_ATTENTION: run_attention(c, ith, nth); break;
    default: {
        int64_t i0, i1;
        bj_pool_split(c->T * cols, 64, ith, nth, &i0, &i1);
        bj_rt_elementwise((bj_op)n->op, a, n->nin > 1 ? e->buf[n->in[1]].f : NULL, i0, i1, y->f);
    }
    }
}

/* Whether a step (phase) runs on the calling thread instead of the pool: the row-wise ops of
 * a one-token step, which the pool would hand to a single thread anyway (they split by token
 * rows), and elementwise ops too small to be worth a fork-join (a few µs of work against a
 * wake-up and a barrier, ~15 of which a layer would otherwise pay per token). The same
 * function runs over the same ranges, so the arithmetic is unchanged. */
#define BJ_INLINE_ELEMS 16384

static bool step_inline(const bj_node *n, int64_t T, int phase) {
    switch (n->op) {
    case BJ_OP_EMBED: case BJ_OP_RMSNORM: case BJ_OP_ACT_QUANT: case BJ_OP_RMSNORM_QUANT: case BJ_OP_ROPE:
        return T == 1;
    case BJ_OP_BITLINEAR: case BJ_OP_ATTENTION: /* phase 0: quantize rows, store k/v */
        return T == 1 && phase == 0;
    case BJ_OP_ADD: case BJ_OP_MUL: case BJ_OP_RELU_SQR: case BJ_OP_SILU:
        return T * bj_shape_cols(n->shape) <= BJ_INLINE_ELEMS;
    default: return false;
    }
}

static void run_phase(jit_engine *e, step_ctx *c) {
    for (int i = 0; i < bj_pool_size(e->pool); i++) /* published by the pool's start */
        atomic_store_explicit(&e->ctr[i].taken, 0, memory_order_relaxed);
    if (step_inline(c->n, c->T, c->phase)) run_step(c, 0, 1);
    else bj_pool_run(e->pool, run_step, c);
}

/* One step of T <= cap_T tokens at positions n_past..; the head runs when logits is not NULL
 * (all T rows of it, or only the last into logits[0..V)). */
static void forward_rows(jit_engine *e, const int32_t *tokens, int64_t T, bool all_logits, float *logits) {
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        const bj_node *n = &e->g->nodes[i];
        if (!is_step_value(n)) continue;
        /* the head writes the caller's logits; a matmul_f nothing reads is not run */
        if (n->op == BJ_OP_OUTPUT || (n->op == BJ_OP_MATMUL_F && (i != e->head || !logits))) continue;
        if (e->done[i] != i) { /* folded into a matmul's step */
            if (e->prof_ns) e->prof_steps[i]++;
            continue;
        }
        uint64_t t0 = e->prof_ns ? now_ns() : 0;
        step_ctx c = { .e = e, .n = n, .T = T, .tokens = tokens, .last_only = !all_logits, .logits = logits };
        run_phase(e, &c);
        if (n->op == BJ_OP_ATTENTION || n->op == BJ_OP_BITLINEAR) { c.phase = 1; run_phase(e, &c); }
        if (e->prof_ns) {
            e->prof_ns[i] += now_ns() - t0;
            e->prof_steps[i]++;
        }
    }
    e->base.n_past += T;
}

/* A prompt runs in steps of at most BJ_JIT_STEP_ROWS tokens, each attending to the KV cache the
 * earlier ones filled: the same arithmetic row by row (every op but attention is row-wise, and
 * attention reads the same cached values), so the same bits, with activations for that many
 * rows only (the arena: ~14 MB for 2B4T) however long the prompt. The prefill kernels reuse
 * each weight across a step's rows; 64 keeps the extra weight traffic of a long prompt small
 * (one more pass over the weights per 64 tokens). */
#define BJ_JIT_STEP_ROWS 64

static bj_status jit_forward(bj_engine *base, const int32_t *tokens, int64_t T, bool all_logits, float *logits,
                             bj_error *err) {
    jit_engine *e = (jit_engine *)base;
    BJ_TRY(bj_engine_check_step(base, tokens, T, err));
    int64_t rows = T < BJ_JIT_STEP_ROWS ? T : BJ_JIT_STEP_ROWS;
    if (rows > e->cap_T && !alloc_buffers(e, rows)) {
        free_buffers(e);
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for activations of %lld tokens", (long long)rows);
    }
    uint64_t f0 = e->prof_ns ? now_ns() : 0;
    for (int64_t s = 0; s < T; s += rows) {
        int64_t n = T - s < rows ? T - s : rows;
        float *lg = all_logits ? logits + s * base->n_vocab : s + n == T ? logits : NULL;
        forward_rows(e, tokens + s, n, all_logits, lg);
    }
    if (e->prof_ns) {
        e->prof_sum.forward_ms += (double)(now_ns() - f0) * 1e-6;
        e->prof_sum.forwards++;
        e->prof_sum.tokens += T;
    }
    return BJ_OK;
}

/* ---- profile (options.profile) --------------------------------------------------------- */
static int prof_row(bj_jit_profile_row *rows, int *n, int cap, const char *what) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(rows[i].what, what)) return i;
    if (*n == cap) return -1;
    memset(&rows[*n], 0, sizeof rows[*n]);
    snprintf(rows[*n].what, sizeof rows[*n].what, "%s", what);
    return (*n)++;
}

static int prof_by_time(const void *a, const void *b) {
    double x = ((const bj_jit_profile_row *)a)->ms, y = ((const bj_jit_profile_row *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

bj_status bj_jit_profile(const bj_engine *base, bj_jit_profile_row *rows, int cap, int *n, bj_jit_profile_sum *sum,
                         bj_error *err) {
    *n = 0;
    if (base->forward != jit_forward || !((const jit_engine *)base)->prof_ns)
        return BJ_FAIL(err, BJ_E_INVALID, "no profile: not a JIT engine created with the profile option");
    const jit_engine *e = (const jit_engine *)base;
    for (uint32_t i = 0; i < e->g->n_nodes; i++) {
        if (!e->prof_steps[i]) continue;
        const bj_node *nd = &e->g->nodes[i];
        char what[48];
        uint64_t bytes = 0;
        if (e->mm[i]) {
            snprintf(what, sizeof what, "matmul %lldx%lld", (long long)e->mm[i]->M, (long long)e->mm[i]->K);
            bytes = bj_cg_packed_size(&e->mm[i]->desc);
        } else if (nd->op == BJ_OP_MATMUL_F) {
            const bj_node *w = &e->g->nodes[nd->in[1]];
            snprintf(what, sizeof what, "head %lldx%lld%s", (long long)w->shape.d[0], (long long)w->shape.d[1],
                     e->head8[i].q ? " (8-bit)" : "");
            bytes = e->head8[i].q ? bj_rt_q8w_bytes(w->shape.d[0], w->shape.d[1]) : w->nbytes;
        } else {
            snprintf(what, sizeof what, "%s", bj_op_name((bj_op)nd->op));
        }
        int r = prof_row(rows, n, cap, what);
        if (r < 0) continue;
        rows[r].steps += e->prof_steps[i];
        rows[r].ms += (double)e->prof_ns[i] * 1e-6;
        rows[r].bytes += bytes * (uint64_t)e->prof_steps[i];
    }
    qsort(rows, (size_t)*n, sizeof *rows, prof_by_time);
    if (sum) *sum = e->prof_sum;
    return BJ_OK;
}

static void jit_reset(bj_engine *base) { base->n_past = 0; }

static void jit_free(bj_engine *base) {
    jit_engine *e = (jit_engine *)base;
    if (e->buf) free_buffers(e);
    for (uint32_t i = 0; e->g && i < e->g->n_nodes; i++) {
        if (e->mm && e->mm[i]) free(e->mm[i]); /* packed weights: the plan's */
        if (e->head8map && e->head8map[i].base) bj_cg_wmap_free(&e->head8map[i]);
        else if (e->head8) bj_rt_q8w_free(&e->head8[i]);
        if (e->kc) free(e->kc[i]);
        if (e->vc) free(e->vc[i]);
    }
    for (int i = 0; e->scratch && e->pool && i < bj_pool_size(e->pool); i++) free(e->scratch[i]);
    free(e->scratch);
    free(e->ctr);
    free(e->prof_ns);
    free(e->prof_steps);
    bj_pool_free(e->pool);
    bj_cg_jit_free(e->jit); /* after the pool: no kernel runs any more */
    free(e->mm); free(e->done); free(e->tail); free(e->tail_next); free(e->head8); free(e->headf); free(e->head8map); free(e->kc); free(e->vc); free(e->buf);
    bj_plan_free(&e->plan);
    bj_graph_free(&e->own);
    free(e);
}

static bj_status setup(jit_engine *e, const bj_jit_options *o, bj_jit_report *r, bj_error *err) {
    e->tgt = e->plan.tgt; /* the target select-kernels chose for */
    BJ_TRY(bj_cg_target_check_host(&e->tgt, err));
    BJ_TRY(bj_cg_cache_open(&e->cache, o->cache_dir, &e->tgt, o->no_cache, err));
    BJ_TRY(bj_cg_jit_create(&e->jit, err));
    BJ_TRY(bj_pool_create(&e->pool, o->n_threads, err));
    size_t n = e->g->n_nodes;
    e->mm = calloc(n, sizeof *e->mm);
    e->head8 = calloc(n, sizeof *e->head8);
    e->headf = calloc(n, sizeof *e->headf);
    e->head8map = calloc(n, sizeof *e->head8map);
    e->kc = calloc(n, sizeof *e->kc);
    e->vc = calloc(n, sizeof *e->vc);
    e->buf = calloc(n, sizeof *e->buf);
    e->scratch = calloc((size_t)o->n_threads, sizeof *e->scratch);
    if (o->profile && (!(e->prof_ns = calloc(n, sizeof *e->prof_ns)) || !(e->prof_steps = calloc(n, sizeof *e->prof_steps))))
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    e->ctr = aligned_alloc(64, (size_t)o->n_threads * sizeof *e->ctr);
    if (!e->mm || !e->head8 || !e->headf || !e->head8map || !e->kc || !e->vc || !e->buf || !e->scratch || !e->ctr)
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    if (!plan_folds(e) || !plan_buffers(e)) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    for (int i = 0; i < o->n_threads; i++)
        if (!(e->scratch[i] = malloc((size_t)e->base.max_seq * sizeof(double))))
            return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    ffi_type *argt[6] = { &ffi_type_pointer, &ffi_type_pointer, &ffi_type_pointer,
                          &ffi_type_sint64, &ffi_type_sint64, &ffi_type_sint64 };
    memcpy(e->argt, argt, sizeof argt);
    snprintf(r->tune_db, sizeof r->tune_db, "%s", e->plan.tune_db);
    snprintf(r->tune_warning, sizeof r->tune_warning, "%s", e->plan.tune_warning);
    r->n_autotuned = e->plan.n_autotuned;
    r->autotune_s = e->plan.autotune_s;
    bj_cg_srcidx_init(&e->sidx);
    bj_status s = prepare(e, o, r, err);
    if (s == BJ_OK) bj_cg_srcidx_save(&e->cache, &e->sidx);
    r->src_hashed = e->plan.src_hashed + e->sidx.n_hashed;
    r->src_indexed = e->plan.src_indexed + e->sidx.n_hits;
    r->released_bytes = e->plan.released_bytes + e->released;
    r->act_row_bytes = e->plan_row;
    r->act_row_naive = e->plan_naive;
    bj_cg_srcidx_free(&e->sidx);
    return s;
}

bj_status bj_jit_compile(const bj_graph *g, const bj_jit_options *o, bj_graph *own, bj_plan *plan, bj_error *err) {
    bj_pipeline_opts po;
    if (o->pipeline) po = *o->pipeline;
    else bj_pipeline_opts_default(&po);
    po.mcpu = o->mcpu;
    po.mattr = o->mattr;
    po.target = o->target;
    po.variant = o->variant;
    po.cache_dir = o->cache_dir;
    po.tune_db = o->tune_db;
    po.no_tune_db = o->no_tune_db;
    po.default_tune_db = true;
    po.kernel_lookup = o->kernel_lookup;
    po.kernel_ud = o->kernel_ud;
    po.autotune = o->no_autotune ? NULL : bj_tune_autotune;
    po.autotune_ud = (void *)o;
    po.plan = plan;
    po.pack = true;
    po.no_cache = o->no_cache;
    po.n_threads = o->n_threads;
    memset(plan, 0, sizeof *plan);
    BJ_TRY(bj_graph_clone(own, g, err));
    bj_status s = bj_pipeline_run(own, &po, err);
    if (s != BJ_OK) { bj_plan_free(plan); bj_graph_free(own); }
    return s;
}

bj_status bj_jit_engine_create(bj_engine **out, const bj_graph *g, const bj_jit_options *o,
                               bj_jit_report *report, bj_error *err) {
    *out = NULL;
    double t0 = now_ms();
    bj_jit_report dummy, *r = report ? report : &dummy;
    memset(r, 0, sizeof *r);
    if (o->n_threads < 1) return BJ_FAIL(err, BJ_E_INVALID, "thread count must be at least 1");
    if (o->kv != BJ_KV_F32 && o->kv != BJ_KV_F16) return BJ_FAIL(err, BJ_E_INVALID, "unknown KV cache type %d", (int)o->kv);
    if (o->n_ctx < 0 || o->n_ctx > g->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "context of %lld tokens asked: the model's is %lld (at least 1)",
                       (long long)o->n_ctx, (long long)g->max_seq);
    BJ_TRY(bj_ir_verify(g, err));
    jit_engine *e = calloc(1, sizeof *e);
    if (!e) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    uint32_t head = 0;
    bj_status s = bj_jit_compile(g, o, &e->own, &e->plan, err);
    e->g = s == BJ_OK ? &e->own : NULL;
    if (s == BJ_OK) s = bj_engine_check_head(e->g, &head, err);
    if (s != BJ_OK) { jit_free(&e->base); return s; }
    e->head = head;
    e->kv = o->kv;
    snprintf(r->passes, sizeof r->passes, "%s", e->plan.passes_run);
    e->base = (bj_engine){ .name = "jit", .n_vocab = bj_shape_cols(e->g->nodes[bj_ir_find_output(e->g)].shape),
                           .max_seq = o->n_ctx ? o->n_ctx : e->g->max_seq, .forward = jit_forward, .reset = jit_reset,
                           .free = jit_free };
    s = setup(e, o, r, err);
    snprintf(r->cpu, sizeof r->cpu, "%s", e->tgt.cpu);
    bj_cg_llvm_version(r->llvm, sizeof r->llvm);
    r->compiled = e->cache.n_compiled;
    r->loaded = e->cache.n_loaded;
    r->corrupt = e->cache.n_corrupt + e->plan.cache_corrupt;
    r->packed_loaded = e->plan.packed_loaded;
    r->compile_ms = e->cache.compile_ms;
    snprintf(r->cache_dir, sizeof r->cache_dir, "%s", e->cache.enabled ? e->cache.dir : "(off)");
    if (e->cache.warn) snprintf(r->cache_warning, sizeof r->cache_warning, "%s", e->cache.warn_msg);
    else if (e->plan.cache_warning[0]) snprintf(r->cache_warning, sizeof r->cache_warning, "%s", e->plan.cache_warning);
    if (s != BJ_OK) { jit_free(&e->base); return s; }
    describe_variants(e, r);
    r->create_ms = now_ms() - t0;
    *out = &e->base;
    return BJ_OK;
}
