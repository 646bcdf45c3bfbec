/* runtime/engine_jit.c -- the JIT engine's creation: an executor (jit_exec.c) of the plan the
 * pass pipeline makes.
 *
 * bj_jit_compile runs the pass pipeline over the engine's own copy of the graph (the caller's graph
 * is left as it was). Its plan (bj_plan, compiler/compiler.h) names the target, every matmul's
 * kernels (select-kernels: forced, IR, tuning database, cost rule, prefill default) and their
 * packed weights (pack-weights: from the packed-weight cache or packed now), the steps with their
 * epilogues (fold-epilogues) and the arena and KV layout (plan-memory); the engine decides none of
 * it. Here each kernel comes from the JIT, the disk cache or a fresh compile (bj_cg_kernel_get), or
 * from an AOT library (kernel_lookup); identical picks share one kernel. Each matmul step keeps a
 * libffi call interface prepared once, so kernels keep their natural typed C signature. The LM head
 * runs as the plan says: select-kernels' generated exact kernel, quantize-head's int8 copy
 * (--head q8), or the C head. */
#include "runtime/jit_engine.h"
#include "codegen/cg_tunedb.h"
#include "runtime/tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

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
    const bj_plan_kernel *pkk = &e->plan.kern[id];
    bj_status s = pick_has_wcode(pk) ? bj_ir_lowbit_values(e->g, wid, &t8, &m->scale, err)
                  : pkk->has_scale   ? (m->scale = pkk->scale, BJ_OK) /* a master's, from pack-weights */
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

/* --head q8: node id's int8 copy as the quantize-head pass made it (the plan's, mapped from the
 * packed-weight cache or converted there). */
static bj_status prepare_head_q8(jit_engine *e, uint32_t id, bj_error *err) {
    const bj_plan_kernel *k = &e->plan.kern[id];
    const bj_node *w = &e->g->nodes[e->g->nodes[id].in[1]];
    int64_t N = w->shape.d[0], K = w->shape.d[1];
    if (!k->packed)
        return BJ_FAIL(err, BJ_E_INTERNAL, "head %%%u: no 8-bit copy in the plan (quantize-head did not make it)", id);
    e->head8[id] = (bj_rt_q8w){ .q = (int8_t *)k->packed, .d = (float *)(k->packed + (uint64_t)N * (uint64_t)k->head_stride),
                                .N = N, .K = K, .stride = k->head_stride };
    return BJ_OK;
}

/* The exact head's generated kernel as select-kernels chose it (the plan's head_desc), from the
 * JIT, the kernel cache or a library; anything missing leaves the plain C head, the same bits. */
static void prepare_head_f(jit_engine *e, uint32_t id, const bj_jit_options *o) {
    const bj_plan_kernel *k = &e->plan.kern[id];
    bj_cg_matmul_fn fn = NULL;
    void *sym_fn = NULL;
    bj_error ign = { 0 };
    if (k->head != BJ_PLAN_HEAD_KERNEL) return;
    if (o->kernel_lookup) {
        char sym[32];
        bj_cg_kernel_symbol(&k->head_desc, sym, sizeof sym);
        if (o->kernel_lookup(o->kernel_ud, &k->head_desc, sym, &sym_fn, &ign) != BJ_OK || !sym_fn) return;
        fn = (bj_cg_matmul_fn)sym_fn;
    } else if (bj_cg_kernel_get(&e->cache, e->jit, &e->tgt, &k->head_desc, NULL, &fn, &ign) != BJ_OK) {
        return;
    }
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
        if (n->op == BJ_OP_MATMUL_F && i < e->plan.n_nodes && e->plan.kern[i].head == BJ_PLAN_HEAD_Q8) {
            if ((s = prepare_head_q8(e, i, err)) != BJ_OK) break;
            r->head_q8 = true;
        } else if (n->op == BJ_OP_MATMUL_F && i < e->plan.n_nodes) {
            prepare_head_f(e, i, o);
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

static void jit_reset(bj_engine *base) { base->n_past = 0; }

static void jit_free(bj_engine *base) {
    jit_engine *e = (jit_engine *)base;
    for (uint32_t i = 0; e->g && i < e->g->n_nodes; i++) {
        if (e->mm && e->mm[i]) free(e->mm[i]); /* packed weights: the plan's */
    }
    for (int i = 0; e->scratch && e->pool && i < bj_pool_size(e->pool); i++) free(e->scratch[i]);
    free(e->scratch);
    free(e->ctr);
    free(e->prof_ns);
    free(e->prof_steps);
    bj_pool_free(e->pool);
    bj_cg_jit_free(e->jit); /* after the pool: no kernel runs any more */
    free(e->mm); free(e->head8); free(e->headf); free(e->kc); free(e->vc); free(e->buf);
    free(e->arena);
    free(e->kv_arena);
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
    e->kc = calloc(n, sizeof *e->kc);
    e->vc = calloc(n, sizeof *e->vc);
    e->buf = calloc(n, sizeof *e->buf);
    e->scratch = calloc((size_t)o->n_threads, sizeof *e->scratch);
    if (o->profile && (!(e->prof_ns = calloc(n, sizeof *e->prof_ns)) || !(e->prof_steps = calloc(n, sizeof *e->prof_steps))))
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    e->ctr = aligned_alloc(64, (size_t)o->n_threads * sizeof *e->ctr);
    if (!e->mm || !e->head8 || !e->headf || !e->kc || !e->vc || !e->buf || !e->scratch || !e->ctr)
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    BJ_TRY(bj_jit_exec_memory(e, err));
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
    bj_status s = prepare(e, o, r, err);
    r->src_hashed = e->plan.src_hashed;
    r->src_indexed = e->plan.src_indexed;
    r->released_bytes = e->plan.released_bytes;
    r->head_q8_loaded = (uint64_t)e->plan.head_q8_loaded;
    r->act_row_bytes = e->plan.arena_row;
    r->act_row_naive = e->plan.arena_row_naive;
    r->n_epilogues = e->plan.n_epilogues;
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
    po.source = o->plan_source;
    po.autotune = o->no_autotune ? NULL : bj_tune_autotune;
    po.autotune_ud = (void *)o;
    po.plan = plan;
    po.pack = true;
    po.no_cache = o->no_cache;
    po.n_threads = o->n_threads;
    po.head_q8 = o->head_q8;
    po.head_c = o->head_c;
    /* plan-memory: the engine's steps, context and KV element */
    po.plan_tokens = BJ_PLAN_STEP_TOKENS;
    po.kv_seq = o->n_ctx;
    po.kv_elem_bytes = (uint32_t)bj_rt_kv_elem_bytes(o->kv);
    memset(plan, 0, sizeof *plan);
    BJ_TRY(bj_graph_clone(own, g, err));
    bj_status s = bj_pipeline_run(own, &po, err);
    if (s != BJ_OK) { bj_plan_free(plan); bj_graph_free(own); }
    return s;
}

/* The engine over *own as the pipeline left it, executing *plan: both are the engine's from here
 * (freed with it, or on failure). */
static bj_status engine_from(bj_engine **out, jit_engine *e, const bj_jit_options *o, bj_jit_report *r, double t0,
                             bj_error *err) {
    uint32_t head = 0;
    e->g = &e->own;
    bj_status s = bj_engine_check_head(e->g, &head, err);
    if (s == BJ_OK && (!e->plan.have_kernels || !e->plan.steps || e->plan.n_nodes != e->g->n_nodes))
        s = BJ_FAIL(err, BJ_E_INVALID, "plan: not made for this graph (no kernels or steps)");
    if (s != BJ_OK) { jit_free(&e->base); return s; }
    e->head = head;
    e->kv = o->kv;
    snprintf(r->passes, sizeof r->passes, "%s", e->plan.passes_run);
    e->base = (bj_engine){ .name = "jit", .n_vocab = bj_shape_cols(e->g->nodes[bj_ir_find_output(e->g)].shape),
                           .max_seq = o->n_ctx ? o->n_ctx : e->g->max_seq, .forward = bj_jit_exec_forward,
                           .reset = jit_reset, .free = jit_free };
    s = setup(e, o, r, err);
    snprintf(r->cpu, sizeof r->cpu, "%s", e->tgt.cpu);
    bj_cg_llvm_version(r->llvm, sizeof r->llvm);
    r->compiled = e->cache.n_compiled;
    r->loaded = e->cache.n_loaded;
    r->corrupt = e->cache.n_corrupt + e->plan.cache_corrupt;
    r->packed_loaded = e->plan.packed_loaded;
    r->packed_now = e->plan.packed_now;
    r->packed_source = e->plan.packed_source;
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

static bj_status check_options(const bj_graph *g, const bj_jit_options *o, bj_error *err) {
    if (o->n_threads < 1) return BJ_FAIL(err, BJ_E_INVALID, "thread count must be at least 1");
    if (o->kv != BJ_KV_F32 && o->kv != BJ_KV_F16) return BJ_FAIL(err, BJ_E_INVALID, "unknown KV cache type %d", (int)o->kv);
    if (o->n_ctx < 0 || o->n_ctx > g->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "context of %lld tokens asked: the model's is %lld (at least 1)",
                       (long long)o->n_ctx, (long long)g->max_seq);
    return bj_ir_verify(g, err);
}

bj_status bj_jit_engine_create(bj_engine **out, const bj_graph *g, const bj_jit_options *o,
                               bj_jit_report *report, bj_error *err) {
    *out = NULL;
    double t0 = now_ms();
    bj_jit_report dummy, *r = report ? report : &dummy;
    memset(r, 0, sizeof *r);
    BJ_TRY(check_options(g, o, err));
    jit_engine *e = calloc(1, sizeof *e);
    if (!e) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    bj_status s = bj_jit_compile(g, o, &e->own, &e->plan, err);
    if (s != BJ_OK) { free(e); return s; }
    return engine_from(out, e, o, r, t0, err);
}

bj_status bj_jit_engine_from_plan(bj_engine **out, bj_graph *own, bj_plan *plan, const bj_jit_options *o,
                                  bj_jit_report *report, bj_error *err) {
    *out = NULL;
    double t0 = now_ms();
    bj_jit_report dummy, *r = report ? report : &dummy;
    memset(r, 0, sizeof *r);
    jit_engine *e = calloc(1, sizeof *e);
    bj_status s = e ? check_options(own, o, err) : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    if (e) e->own = *own, e->plan = *plan;
    memset(own, 0, sizeof *own);
    memset(plan, 0, sizeof *plan);
    if (s != BJ_OK) { if (e) jit_free(&e->base); return s; }
    return engine_from(out, e, o, r, t0, err);
}
