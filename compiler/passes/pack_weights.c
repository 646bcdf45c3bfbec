/* compiler/passes/pack_weights.c -- pack-weights: every kernel-selected matmul's weights in the
 * layout its kernel reads, through the packed-weight cache; the layout on the node.
 *
 *   %y = matmul_tk %a, %w {variant=1, isa=5, layout=0, packed=0}
 *     => %y = matmul_tk %a, %w {variant=1, isa=5, layout=1, packed=147456}
 *
 * layout is the variant whose packing the kernel reads (1 dot2: 16-row interleaved 2-bit
 * codes; 2 bitplane: non-zero + sign bit planes; 3 wcode: no buffer, weights are code; 4 bin1:
 * 16-row interleaved sign bits, 1 bit a weight; 5 trit5: five codes a byte), and packed its bytes
 * (bj_cg_packed_size). Both are the plan's decode kernel's (select-kernels: a tuned kernel may
 * have another variant than the one on the node). The IR keeps the weight in its file dtype
 * (t2hf, t8, b1, ...): the packed bytes are the plan's (bj_plan_kernel.packed), so the graph
 * needs no dtype per kernel layout.
 *
 * With opts->pack (executors: bj_jit_compile), the bytes themselves: mapped from the
 * packed-weight cache (found by the source tensor's hash, from the source index when the model
 * file is unchanged), else unpacked and packed, stored in the cache and mapped back from it.
 * Misses are packed after all look-ups, whole matrices handed out to opts->n_threads threads
 * as they come free; a thread unpacks a weight a block of rows at a time into a buffer of its
 * own (a block stays in L2 from being unpacked to being packed), packs it into its buffer,
 * stores it with its own copy of the cache handle (entries are separate files written whole
 * and renamed, so stores run in parallel; the copies' warnings and counters are folded back
 * after) and runs from the entry just written (page cache, shared between processes). A
 * weight whose rows cannot be read on their own (a float master's weight_quant) is unpacked
 * whole, and its scale kept beside the packed entry (a warm start reads nothing of the master;
 * quantize-weights leaves such weights unfolded for executors). Source pages are given back once packed (bj_fmap_release: only a mapped model
 * file's, whose bytes stay as they are), so RSS holds one copy of the weights.
 * With opts->source (an AOT library), the bytes are the library's, in the layout of the plan it
 * was built with, read in place from its mapping (it checks them as it hands them out): nothing
 * is packed, hashed or cached, which is what makes loading a library cheap.
 * Matmuls without a kernel choice (variant 0) are left alone: run select-kernels first.
 * Needs: select-kernels. Invalidates: nothing (attributes only). */
#include "compiler/passes.h"

#include "ir/weights.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- the annotation ------------------------------------------------------------------------ */
/* Layout and size of the plan's decode kernel, or (a graph whose kernels were chosen by an
 * earlier run: no plan) of the node's variant and path. */
static bj_status bj_pw_record(const bj_cg_target *t, bj_node *n, const bj_node *w, const bj_plan_kernel *k,
                              uint64_t *total, bj_error *err) {
    bj_cg_kdesc d;
    if (k && k->set) d = k->pick.dec;
    else if (n->iattr[0] == BJ_CG_V_WCODE) d = (bj_cg_kdesc){ .variant = BJ_CG_V_WCODE };
    else {
        bj_cg_wtype wt = bj_dtype_class_of((bj_dtype)w->dtype) == BJ_DTC_BINARY ? BJ_CG_W_BINARY : BJ_CG_W_TERNARY;
        BJ_TRY(bj_cg_kdesc_init(&d, t, (bj_cg_variant)n->iattr[0], (bj_cg_isa)n->iattr[1], wt, (uint32_t)w->shape.d[0],
                                (uint32_t)w->shape.d[1], NULL, err));
    }
    n->iattr[2] = d.variant;
    n->iattr[3] = d.variant == BJ_CG_V_WCODE ? 0 : (int64_t)bj_cg_packed_size(&d); /* weights are code: no buffer */
    *total += (uint64_t)n->iattr[3];
    return BJ_OK;
}

/* ---- packing -------------------------------------------------------------------------------- */
/* The source tensor a lowbit weight's values come from: itself, or the float master of a weight_quant. */
static const bj_node *bj_pw_src(const bj_graph *g, uint32_t wid) {
    const bj_node *w = &g->nodes[wid];
    return w->op == BJ_OP_WEIGHT_QUANT ? &g->nodes[w->in[0]] : w;
}

/* The source-tensor hash the packed-weight cache is keyed by: the bytes of the lowbit weight
 * (or of the float master and the quantization rule applied to it). */
static void bj_pw_src_hash(bj_cg_cache *c, bj_cg_srcidx *x, const bj_graph *g, uint32_t wid, uint64_t out[2]) {
    const bj_node *w = &g->nodes[wid], *src = bj_pw_src(g, wid);
    char how[160];
    snprintf(how, sizeof how, "%s|%s|mode %lld|%lldx%lld", bj_op_get((bj_op)w->op)->name, bj_dtype_name((bj_dtype)src->dtype),
             (long long)(w->op == BJ_OP_WEIGHT_QUANT ? w->iattr[0] : -1), (long long)w->shape.d[0],
             (long long)w->shape.d[1]);
    bj_cg_srcidx_hash(c, x, src->data, (size_t)src->nbytes, how, out);
}

/* A float master's scale beside its packed entry (raw kind 2: one double), keyed by the same
 * source hash: a warm start then reads nothing of the master (its scale is a mean over it). */
#define BJ_PW_SCALE_KIND 2

static void bj_pw_scale_load(bj_cg_cache *c, const bj_graph *g, uint32_t wid, const uint64_t src[2], bj_plan_kernel *k) {
    bj_cg_wmap m = { 0 };
    bj_error ign = { 0 };
    const bj_node *w = &g->nodes[wid];
    if (w->op != BJ_OP_WEIGHT_QUANT || !c->enabled) return;
    if (bj_cg_wcache_load_raw(c, BJ_PW_SCALE_KIND, (uint32_t)w->shape.d[0], (uint32_t)w->shape.d[1], sizeof(double), src,
                              &m, &ign) != BJ_OK || !m.data)
        return;
    memcpy(&k->scale, m.data, sizeof k->scale);
    k->has_scale = true;
    bj_cg_wmap_free(&m);
}

static void bj_pw_scale_store(bj_cg_cache *c, const bj_graph *g, uint32_t wid, const uint64_t src[2], bj_plan_kernel *k) {
    bj_error ign = { 0 };
    const bj_node *w = &g->nodes[wid];
    if (w->op != BJ_OP_WEIGHT_QUANT || !k->has_scale || !c->enabled) return;
    bj_cg_part part = { &k->scale, sizeof k->scale };
    bj_cg_wcache_store_raw(c, BJ_PW_SCALE_KIND, (uint32_t)w->shape.d[0], (uint32_t)w->shape.d[1], src, &part, 1, &ign);
}

typedef struct bj_pw_job {  /* one matrix to pack */
    uint32_t id, wid;
    bj_plan_kernel *k;
    uint64_t src[2];
    bj_status st;
    bj_error err;
} bj_pw_job;

typedef struct bj_pw_ctx {
    const bj_graph *g;
    const bj_plan_source *src; /* an AOT library: its packed bytes, checked by it, nothing packed */
    bj_pw_job *jobs;
    int64_t n;
    atomic_int_fast64_t next; /* the next job to take */
    bj_cg_cache *cache;       /* per thread: a copy of the pass's handle */
    int nth;
    bj_pass_meter meter;      /* packed bytes of those to pack, to opts->progress */
} bj_pw_ctx;

/* Unpacked bytes a block of rows aims at (L2 of every x86 core of the last decade holds it). */
#define BJ_PACK_BLOCK_BYTES (128 * 1024)

/* *buf (an anonymous map, so no heap keeps every size it saw) grown to n bytes. */
static bool bj_pw_buf(int8_t **buf, size_t *cap, size_t n) {
    if (n <= *cap) return true;
    if (*buf) munmap(*buf, *cap);
    *cap = 0;
    *buf = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (*buf == MAP_FAILED) {
        *buf = NULL;
        return false;
    }
    *cap = n;
    return true;
}

/* Job j's weight unpacked, checked and packed into out (bj_cg_packed_size bytes). */
static bj_status bj_pw_pack(const bj_graph *g, const bj_pw_job *j, uint8_t *out, int8_t **buf, size_t *cap,
                            bj_error *err) {
    const bj_cg_kdesc *d = &j->k->pick.dec;
    uint64_t M = d->m, K = d->k;
    if (!bj_ir_lowbit_by_rows(g, j->wid)) { /* a master's weight_quant: its scale comes with the values */
        if (!bj_pw_buf(buf, cap, M * K))
            return BJ_FAIL(err, BJ_E_NOMEM, "out of memory (%llu bytes of unpacked weights)", (unsigned long long)(M * K));
        BJ_TRY(bj_ir_lowbit_values_into(g, j->wid, *buf, &j->k->scale, err));
        j->k->has_scale = true;
        return bj_cg_pack(d, *buf, out, err);
    }
    uint64_t rb = (uint64_t)bj_cg_row_block(d), rows = BJ_PACK_BLOCK_BYTES / K / rb * rb;
    if (rows < rb) rows = rb;
    if (!bj_pw_buf(buf, cap, rows * K))
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory (%llu bytes of unpacked weights)", (unsigned long long)(rows * K));
    for (uint64_t r0 = 0; r0 < M; r0 += rows) {
        uint64_t r1 = r0 + rows < M ? r0 + rows : M;
        BJ_TRY(bj_ir_lowbit_rows_into(g, j->wid, (int64_t)r0, (int64_t)r1, *buf, err));
        BJ_TRY(bj_cg_pack_rows(d, *buf, r0, r1, out, err));
    }
    return BJ_OK;
}

/* A map of size bytes for k's packed weights, kept by k (freed with the plan), or NULL. */
static uint8_t *bj_pw_map(bj_plan_kernel *k, size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) return NULL;
    k->map = (bj_cg_wmap){ .data = p, .base = p, .len = size };
    k->packed = p;
    return p;
}

/* Packed into this thread's buffer, stored, then run from the entry (else a map of its own). */
static void bj_pw_one(bj_pw_ctx *c, bj_cg_cache *cache, bj_pw_job *j, int8_t **buf, size_t *cap, int8_t **pk,
                      size_t *pk_cap) {
    bj_plan_kernel *k = j->k;
    if (c->src) { /* read in place from the library's mapping (which checks the bytes), never copied */
        j->st = c->src->packed(c->src->ud, c->g, j->id, &k->pick.dec, &k->packed, &j->err);
        return;
    }
    size_t size = (size_t)bj_cg_packed_size(&k->pick.dec);
    uint8_t *out = cache->enabled && bj_pw_buf(pk, pk_cap, size) ? (uint8_t *)*pk : bj_pw_map(k, size);
    if (!out) {
        j->st = BJ_FAIL(&j->err, BJ_E_NOMEM, "out of memory (%zu bytes of packed weights)", size);
        return;
    }
    j->st = bj_pw_pack(c->g, j, out, buf, cap, &j->err);
    const bj_node *sn = bj_pw_src(c->g, j->wid);
    bj_fmap_release(sn->data, sn->nbytes); /* read once more only by a later hash of a changed file */
    if (j->st != BJ_OK || out != (uint8_t *)*pk) return;
    j->st = bj_cg_wcache_store(cache, &k->pick.dec, j->src, out, &j->err);
    if (j->st == BJ_OK) bj_pw_scale_store(cache, c->g, j->wid, j->src, k);
    bj_cg_wmap back = { 0 };
    if (j->st == BJ_OK) j->st = bj_cg_wcache_load(cache, &k->pick.dec, j->src, &back, &j->err);
    if (back.data) {
        cache->n_wloaded--; /* counted as packed now, not as found in the cache */
        k->map = back;
        k->packed = back.data;
    } else if (j->st == BJ_OK) { /* not stored after all (disk trouble): a copy of its own */
        if (bj_pw_map(k, size)) memcpy(k->map.base, out, size);
        else j->st = BJ_FAIL(&j->err, BJ_E_NOMEM, "out of memory (%zu bytes of packed weights)", size);
    }
}

typedef struct bj_pw_thread { bj_pw_ctx *c; int ith; pthread_t tid; } bj_pw_thread;

static void *bj_pw_thread_main(void *arg) {
    bj_pw_thread *t = arg;
    bj_pw_ctx *c = t->c;
    int8_t *buf = NULL, *pk = NULL; /* unpacked rows; packed bytes on their way to the cache */
    size_t cap = 0, pk_cap = 0;
    for (int64_t j; (j = atomic_fetch_add(&c->next, 1)) < c->n;) {
        bj_pw_one(c, &c->cache[t->ith], &c->jobs[j], &buf, &cap, &pk, &pk_cap);
        bj_pass_meter_add(&c->meter, (int64_t)bj_cg_packed_size(&c->jobs[j].k->pick.dec));
    }
    if (buf) munmap(buf, cap);
    if (pk) munmap(pk, pk_cap);
    return NULL;
}

/* The misses, packed on up to nth threads (the calling one among them). */
static bj_status bj_pw_run(bj_pw_ctx *c, bj_cg_cache *cache, bj_error *err) {
    bj_pw_thread *t = calloc((size_t)c->nth, sizeof *t);
    c->cache = malloc((size_t)c->nth * sizeof *c->cache);
    if (!t || !c->cache) { free(t); free(c->cache); return BJ_FAIL(err, BJ_E_NOMEM, "pack-weights: out of memory"); }
    atomic_init(&c->next, 0);
    int started = 1;
    for (int i = 0; i < c->nth; i++) {
        c->cache[i] = *cache;
        t[i] = (bj_pw_thread){ .c = c, .ith = i };
    }
    for (int i = 1; i < c->nth; i++) started += pthread_create(&t[i].tid, NULL, bj_pw_thread_main, &t[i]) == 0;
    bj_pw_thread_main(&t[0]); /* threads that did not start leave their jobs to the others */
    for (int i = 1; i < started; i++) pthread_join(t[i].tid, NULL);
    bj_cg_cache copy0 = *cache;
    for (int i = 0; i < c->nth; i++) bj_cg_cache_merge(cache, &copy0, &c->cache[i]);
    free(c->cache);
    free(t);
    return BJ_OK;
}

/* Looks every matrix up in the cache; the misses become jobs. */
static bj_status bj_pw_lookup(const bj_graph *g, bj_plan *p, bj_cg_cache *cache, bj_cg_srcidx *sidx, bj_pw_job *jobs,
                              int64_t *n_jobs, bj_error *err) {
    *n_jobs = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bj_plan_kernel *k = &p->kern[i];
        if (!k->set || k->packed || !bj_cg_packed_size(&k->pick.dec)) continue;
        bj_pw_job *j = &jobs[*n_jobs];
        *j = (bj_pw_job){ .id = i, .wid = bj_pass_matmul_weight(&g->nodes[i]), .k = k };
        if (!cache) { (*n_jobs)++; continue; } /* a plan source has them all */
        const bj_node *sn = bj_pw_src(g, j->wid);
        if (cache->enabled) { /* else nothing is looked up: no need to read the source twice */
            bj_pw_src_hash(cache, sidx, g, j->wid, j->src);
            BJ_TRY(bj_cg_wcache_load(cache, &k->pick.dec, j->src, &k->map, err));
        }
        if (k->map.data) {
            bj_pw_scale_load(cache, g, j->wid, j->src, k);
            k->packed = k->map.data;
            p->released_bytes += bj_fmap_release(sn->data, sn->nbytes);
            continue;
        }
        /* A miss: hashing read the source; it is read again when packed after all look-ups. */
        bj_fmap_release(sn->data, sn->nbytes);
        (*n_jobs)++;
    }
    return BJ_OK;
}

/* The matrices an AOT library holds (opts->source), taken on n_threads threads: the library
 * checks each one's bytes as it hands them out. Nothing is packed, hashed or cached. */
static bj_status bj_pw_from_source(bj_graph *g, bj_plan *p, const bj_pipeline_opts *o, bj_error *err) {
    bj_pw_job *jobs = calloc(g->n_nodes + 1, sizeof *jobs);
    int64_t n = 0;
    bj_status st = jobs ? bj_pw_lookup(g, p, NULL, NULL, jobs, &n, err) : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    bj_pw_ctx c = { .g = g, .src = o->source, .jobs = jobs, .n = n, .nth = o->n_threads > 1 ? o->n_threads : 1 };
    if (c.nth > n) c.nth = n > 0 ? (int)n : 1;
    bj_cg_cache none = { 0 };
    if (st == BJ_OK && n) st = bj_pw_run(&c, &none, err);
    for (int64_t j = 0; st == BJ_OK && j < n; j++) {
        if (jobs[j].st == BJ_OK) continue;
        *err = jobs[j].err;
        st = bj_error_prefix(err, "matmul %%%u", jobs[j].id);
    }
    p->packed_source = st == BJ_OK ? (uint64_t)n : 0;
    p->packed = p->from_source = st == BJ_OK;
    free(jobs);
    return st;
}

bj_status bj_pass_pack_weights_plan(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    const bj_pipeline_opts *o = cx->opts;
    bj_plan *p = &cx->kplan;
    if (!o->pack || !p->have_kernels || p->n_nodes != g->n_nodes || p->packed) return BJ_OK;
    if (o->source) return bj_pw_from_source(g, p, o, err);
    bj_cg_cache cache;
    BJ_TRY(bj_cg_cache_open(&cache, o->cache_dir, &p->tgt, o->no_cache, err));
    bj_cg_srcidx sidx;
    bj_cg_srcidx_init(&sidx);
    bj_pw_job *jobs = calloc(g->n_nodes + 1, sizeof *jobs);
    int64_t n = 0;
    bj_status st = jobs ? bj_pw_lookup(g, p, &cache, &sidx, jobs, &n, err) : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    bj_pw_ctx c = { .g = g, .jobs = jobs, .n = n, .nth = o->n_threads > 1 ? o->n_threads : 1 };
    if (c.nth > n) c.nth = n > 0 ? (int)n : 1;
    int64_t bytes = 0;
    for (int64_t j = 0; j < n; j++) bytes += (int64_t)bj_cg_packed_size(&jobs[j].k->pick.dec);
    if (st == BJ_OK && n) bj_pass_meter_begin(&c.meter, cx, "pack-weights", bytes, n);
    if (st == BJ_OK && n) st = bj_pw_run(&c, &cache, err);
    bj_pass_meter_end(&c.meter);
    for (int64_t j = 0; st == BJ_OK && j < n; j++) {
        if (jobs[j].st == BJ_OK) { p->released_bytes += bj_pw_src(g, jobs[j].wid)->nbytes; continue; }
        *err = jobs[j].err;
        const bj_node *w = &g->nodes[jobs[j].wid];
        st = bj_error_prefix(err, "matmul %%%u (weight '%s', %ux%u)", jobs[j].id, w->name ? w->name : "?",
                             jobs[j].k->pick.dec.m, jobs[j].k->pick.dec.k);
    }
    if (st == BJ_OK) bj_cg_srcidx_save(&cache, &sidx);
    p->src_hashed += sidx.n_hashed;
    p->src_indexed += sidx.n_hits;
    p->packed_loaded += cache.n_wloaded;
    p->packed_now += st == BJ_OK ? (uint64_t)n : 0;
    p->cache_corrupt += cache.n_corrupt;
    if (cache.warn) snprintf(p->cache_warning, sizeof p->cache_warning, "%s", cache.warn_msg);
    p->packed = st == BJ_OK;
    bj_cg_srcidx_free(&sidx);
    free(jobs);
    return st;
}

bj_status bj_pass_pack_weights(bj_graph *g, bj_pass_ctx *cx, bj_error *err) {
    uint64_t total = 0;
    uint32_t done = 0, skipped = 0;
    const bj_plan *p = &cx->kplan;
    const bj_cg_target *t;
    BJ_TRY(bj_pass_target(cx, &t, err));
    bool have = p->have_kernels && p->n_nodes == g->n_nodes;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bj_node *n = &g->nodes[i];
        if (n->op != BJ_OP_MATMUL_TK && n->op != BJ_OP_BITLINEAR) continue;
        if (n->iattr[0] == 0) { skipped++; continue; }
        bj_status st = bj_pw_record(t, n, &g->nodes[bj_pass_matmul_weight(n)], have ? &p->kern[i] : NULL, &total, err);
        if (st != BJ_OK) return bj_error_prefix(err, "pack-weights %%%u", i);
        done++;
    }
    BJ_TRY(bj_pass_pack_weights_plan(g, cx, err));
    bj_pass_note(cx, "pack-weights", "%u layouts recorded (%llu packed bytes), %u matmuls without a kernel choice%s",
                 done, (unsigned long long)total, skipped, p->packed ? "; packed" : "");
    if (p->from_source)
        bj_pass_note(cx, "pack-weights", "%llu of %lld matrices from the library, 0 packed", (unsigned long long)p->packed_source,
                     (long long)p->n_matmuls);
    else if (p->packed)
        bj_pass_note(cx, "pack-weights", "%llu of %lld matrices from the packed-weight cache, %llu packed; %llu source tensors hashed, %llu from the source index",
                     (unsigned long long)p->packed_loaded, (long long)p->n_matmuls, (unsigned long long)p->packed_now,
                     (unsigned long long)p->src_hashed,
                     (unsigned long long)p->src_indexed);
    return BJ_OK;
}
