/* compiler/passes/quantize_head.c -- quantize-head: the float LM head at 8 bits (`--head q8`).
 *
 *   %y = matmul_f %x, %w        (the IR is unchanged: the 8-bit copy is the plan's)
 *   # head %y: q8, int8 rows of S bytes + f32 scales (B bytes) from f16 "W"; in the plan
 *                               (a '#' line after the IR in --print-after-all / --print-after)
 *
 * With opts->head_q8, every matmul_f whose weight is a bound f32/f16/bf16 matrix (or, for a
 * compile that packs nothing, any matmul_f) becomes BJ_PLAN_HEAD_Q8 in the plan, replacing
 * select-kernels' exact head. The rule is ir/weights.h bj_ir_q8_row: per row, symmetric absmax
 * to int8 in [-127, 127], rows padded to bj_ir_q8_stride(K) bytes, one f32 scale a row; the
 * engines' bj_rt_matmul_q8 quantizes the activations with the same function.
 *
 * With opts->pack (executors: bj_jit_compile), the bytes themselves, kept as packed weights
 * are: looked up in the packed-weight cache by the hash of the float head's bytes (from the
 * source index when the model file is unchanged, so a warm start reads nothing but the rows it
 * checks), else converted on opts->n_threads threads in blocks of rows, stored and mapped back
 * from the entry. The conversion rule is ours, not the file's, so a cached entry is checked by
 * converting rows spread over the matrix again: a changed rule (or a wrong entry) is a miss,
 * never a silently different head. The float head's pages are given back as its rows are
 * converted and after a hit (a tied head is also the embedding table: the embed step then
 * reads only the rows of the tokens it looks up), so the float head and its copy are never
 * resident whole together (2B4T: 656 + 328 MB).
 * Without opts->head_q8 the pass changes nothing. An executor's plan asked for with head_q8 when
 * this pass is not selected is an error (compiler/pipeline.c): the 8-bit head has no fallback.
 * Needs: select-kernels' table (made here if that pass did not run). Invalidates: nothing. */
#include "compiler/passes.h"

#include "ir/weights.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The packed-weight cache's kind for an int8 head (bj_cg_wcache_load_raw): N int8 rows of the
 * stride, then N f32 scales. Rows checked again against a cached entry: HEAD_CHECK_ROWS. */
#define BJ_QH_KIND 1
#define BJ_QH_CHECK_ROWS 33
#define BJ_QH_BLOCK_ROWS 1024

typedef struct bj_qh_head {   /* one head being made */
    const bj_node *w;
    int64_t N, K, S;
    uint64_t size;            /* N * S + N * 4 */
    bool sliced;              /* rows are equal slices of the float bytes */
} bj_qh_head;

static int8_t *bj_qh_q(const bj_qh_head *h, const uint8_t *p) { return (int8_t *)p; }
static float *bj_qh_d(const bj_qh_head *h, const uint8_t *p) { return (float *)(p + (uint64_t)h->N * (uint64_t)h->S); }

/* ---- conversion on threads ------------------------------------------------------------------- */
typedef struct bj_qh_job {
    const bj_qh_head *h;
    uint8_t *out;
    atomic_int_fast64_t next; /* the next block of rows to take */
} bj_qh_job;

static void *bj_qh_thread(void *arg) {
    bj_qh_job *j = arg;
    const bj_qh_head *h = j->h;
    uint64_t row_bytes = h->sliced ? h->w->nbytes / (uint64_t)h->N : 0;
    for (int64_t r0; (r0 = atomic_fetch_add(&j->next, BJ_QH_BLOCK_ROWS)) < h->N;) {
        int64_t r1 = r0 + BJ_QH_BLOCK_ROWS < h->N ? r0 + BJ_QH_BLOCK_ROWS : h->N;
        bj_ir_q8_rows(h->w, r0, r1, h->S, bj_qh_q(h, j->out), bj_qh_d(h, j->out));
        if (h->sliced) /* read once: given back as converted */
            bj_fmap_release((const uint8_t *)h->w->data + (uint64_t)r0 * row_bytes, (uint64_t)(r1 - r0) * row_bytes);
    }
    return NULL;
}

static void bj_qh_convert(const bj_qh_head *h, uint8_t *out, int nth) {
    bj_qh_job j = { .h = h, .out = out };
    atomic_init(&j.next, 0);
    pthread_t tid[64];
    int started = 0;
    for (int i = 1; i < nth && i < 64; i++) started += pthread_create(&tid[started], NULL, bj_qh_thread, &j) == 0;
    bj_qh_thread(&j); /* threads that did not start leave their blocks to the others */
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

/* Rows spread over the matrix converted again match the entry p bit for bit. */
static bool bj_qh_matches(const bj_qh_head *h, const uint8_t *p) {
    uint64_t row_bytes = h->w->nbytes / (uint64_t)h->N;
    int8_t *q = malloc((size_t)h->S);
    bool ok = q != NULL;
    for (int i = 0; ok && i < BJ_QH_CHECK_ROWS; i++) {
        int64_t n = i == BJ_QH_CHECK_ROWS - 1 ? h->N - 1 : (int64_t)((uint64_t)i * (uint64_t)h->N / BJ_QH_CHECK_ROWS);
        bj_node row = *h->w;
        row.data = (const uint8_t *)h->w->data + (uint64_t)n * row_bytes;
        row.nbytes = row_bytes;
        row.shape.d[0] = 1;
        float d;
        bj_ir_q8_rows(&row, 0, 1, h->S, q, &d);
        ok = !memcmp(q, bj_qh_q(h, p) + n * h->S, (size_t)h->S) && !memcmp(&d, &bj_qh_d(h, p)[n], sizeof d);
    }
    free(q);
    return ok;
}

/* ---- through the packed-weight cache --------------------------------------------------------- */
/* The entry for h: mapped into k when the cache has a good one (*hit). */
static bj_status bj_qh_lookup(bj_cg_cache *c, bj_cg_srcidx *x, const bj_qh_head *h, uint64_t src[2],
                              bj_plan_kernel *k, bool *hit, bj_plan *p, bj_error *err) {
    char how[160];
    snprintf(how, sizeof how, "head q8|%s|%lldx%lld|stride %llu", bj_dtype_name((bj_dtype)h->w->dtype),
             (long long)h->N, (long long)h->K, (unsigned long long)h->S);
    bj_cg_srcidx_hash(c, x, h->w->data, (size_t)h->w->nbytes, how, src);
    /* If that read the float head (not in the index), it need not stay: a hit reads 33 rows
     * of it, a conversion faults it in again a block of rows at a time. */
    bj_fmap_release(h->w->data, h->w->nbytes);
    *hit = false;
    BJ_TRY(bj_cg_wcache_load_raw(c, BJ_QH_KIND, (uint32_t)h->N, (uint32_t)h->K, h->size, src, &k->map, err));
    if (!k->map.data) return BJ_OK;
    if (!bj_qh_matches(h, k->map.data)) {
        bj_cg_wmap_free(&k->map);
        return BJ_OK;
    }
    *hit = true;
    k->packed = k->map.data;
    p->released_bytes += bj_fmap_release(h->w->data, h->w->nbytes);
    return BJ_OK;
}

/* A miss: converted into an anonymous map, stored, then run from the entry (the heap copy
 * unmapped first, so the two are never resident together); the map itself when the cache is
 * off or the entry does not map back. */
static bj_status bj_qh_make(bj_cg_cache *c, const bj_qh_head *h, const uint64_t src[2], bool cacheable,
                            bj_plan_kernel *k, int nth, bj_plan *p, bj_error *err) {
    void *m = mmap(NULL, h->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the 8-bit copy of '%s' (%llu bytes)",
                       h->w->name ? h->w->name : "?", (unsigned long long)h->size);
    bj_qh_convert(h, m, nth);
    p->released_bytes += h->sliced ? h->w->nbytes : 0;
    if (cacheable) {
        bj_cg_part part = { m, (size_t)h->size };
        bj_status st = bj_cg_wcache_store_raw(c, BJ_QH_KIND, (uint32_t)h->N, (uint32_t)h->K, src, &part, 1, err);
        munmap(m, h->size); /* before mapping the entry back: the two are never resident together */
        if (st == BJ_OK) st = bj_cg_wcache_load_raw(c, BJ_QH_KIND, (uint32_t)h->N, (uint32_t)h->K, h->size, src, &k->map, err);
        if (st != BJ_OK) return st;
        if (k->map.data) {
            k->packed = k->map.data;
            return BJ_OK;
        }
        /* not stored after all (disk trouble): converted once more, kept in a map of its own */
        if ((m = mmap(NULL, h->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED)
            return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the 8-bit copy of '%s' (%llu bytes)",
                           h->w->name ? h->w->name : "?", (unsigned long long)h->size);
        bj_qh_convert(h, m, nth);
    }
    k->map = (bj_cg_wmap){ .data = m, .base = m, .len = h->size };
    k->packed = m;
    return BJ_OK;
}

/* Node i's head: its description, and with opts->pack its bytes into the plan. */
static bj_status bj_qh_one(bj_pass_ctx *cx, const bj_graph *g, uint32_t i, bj_cg_cache *c, bj_cg_srcidx *x,
                           bj_error *err) {
    const bj_node *w = &g->nodes[g->nodes[i].in[1]];
    bj_plan *p = &cx->kplan;
    bj_plan_kernel *k = &p->kern[i];
    bj_qh_head h = { .w = w, .N = w->shape.d[0], .K = w->shape.d[1] };
    h.S = bj_ir_q8_stride(h.K);
    h.size = (uint64_t)h.N * (uint64_t)h.S + (uint64_t)h.N * 4;
    k->head = BJ_PLAN_HEAD_Q8;
    k->head_stride = h.S;
    p->n_head_q8++;
    if (!cx->opts->pack) return BJ_OK;
    if (!w->data || w->shape.ndim != 2 || h.N < 1 ||
        (w->dtype != BJ_DT_F32 && w->dtype != BJ_DT_F16 && w->dtype != BJ_DT_BF16))
        return BJ_FAIL(err, BJ_E_INVALID, "quantize-head %%%u: head weight '%s' is not a bound f32/f16/bf16 matrix", i,
                       w->name ? w->name : "?");
    BJ_TRY(bj_ir_weight_check(w, err));
    h.sliced = w->nbytes % (uint64_t)h.N == 0;
    bool cacheable = c->enabled && h.sliced && h.N <= UINT32_MAX && h.K <= UINT32_MAX;
    uint64_t src[2] = { 0, 0 };
    bool hit = false;
    if (cacheable) BJ_TRY(bj_qh_lookup(c, x, &h, src, k, &hit, p, err));
    if (hit) { p->head_q8_loaded++; return BJ_OK; }
    return bj_qh_make(c, &h, src, cacheable, k, cx->opts->n_threads > 1 ? cx->opts->n_threads : 1, p, err);
}

bj_status bj_pass_quantize_head(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    const bj_pipeline_opts *o = cx->opts;
    bj_plan *p = &cx->kplan;
    cx->head_quantized = true;
    if (!o->head_q8) {
        bj_pass_note(cx, "quantize-head", "off (the head stays exact; --head q8 turns this on)");
        return BJ_OK;
    }
    if (!p->have_kernels || p->n_nodes != g->n_nodes) BJ_TRY(bj_pass_select_kernels_plan(g, cx, err));
    bj_cg_cache c = { 0 };
    bj_cg_srcidx x;
    bj_cg_srcidx_init(&x);
    if (o->pack) BJ_TRY(bj_cg_cache_open(&c, o->cache_dir, &p->tgt, o->no_cache, err));
    bj_status st = BJ_OK;
    for (uint32_t i = 0; i < g->n_nodes && st == BJ_OK; i++)
        if (g->nodes[i].op == BJ_OP_MATMUL_F && p->kern[i].head != BJ_PLAN_HEAD_Q8) st = bj_qh_one(cx, g, i, &c, &x, err);
    if (st == BJ_OK && o->pack) bj_cg_srcidx_save(&c, &x);
    p->src_hashed += x.n_hashed;
    p->src_indexed += x.n_hits;
    p->cache_corrupt += c.n_corrupt;
    if (c.warn && !p->cache_warning[0]) snprintf(p->cache_warning, sizeof p->cache_warning, "%s", c.warn_msg);
    bj_cg_srcidx_free(&x);
    BJ_TRY(st);
    bj_pass_note(cx, "quantize-head", "%lld head(s) at 8 bits%s, %lld from the packed-weight cache", (long long)p->n_head_q8,
                 o->pack ? "" : " (planned only: nothing packs here)", (long long)p->head_q8_loaded);
    return BJ_OK;
}

void bj_pass_print_heads(const bj_graph *g, const bj_plan *p, FILE *out) {
    for (uint32_t i = 0; p->kern && i < p->n_nodes && i < g->n_nodes; i++) {
        const bj_plan_kernel *k = &p->kern[i];
        if (g->nodes[i].op != BJ_OP_MATMUL_F || k->head != BJ_PLAN_HEAD_Q8) continue;
        const bj_node *w = &g->nodes[g->nodes[i].in[1]];
        uint64_t N = (uint64_t)w->shape.d[0];
        fprintf(out, "# head %%%u: q8, int8 rows of %lld bytes + f32 scales (%llu bytes) from %s \"%s\"; %s\n", i,
                (long long)k->head_stride, (unsigned long long)(N * (uint64_t)k->head_stride + N * 4),
                bj_dtype_name((bj_dtype)w->dtype), w->name ? w->name : "?",
                k->packed ? "in the plan" : "planned (nothing packs without an executor)");
    }
}
