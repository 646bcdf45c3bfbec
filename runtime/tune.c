/* runtime/tune.c -- the autotuner (search, checks and rules in tune.h): measures kernel
 * candidates per matmul shape and T-class and writes the tuning database. */
#include "runtime/tune.h"

#include "runtime/runtime.h"
#include "runtime/threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TUNE_STREAM_CAP (256ull << 20) /* bytes of weight copies a decode timing streams through */
#define TUNE_WCODE_MAX_MK 16384

static double tune_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t tune_rng(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void bj_tune_opts_default(bj_tune_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_threads = 1;
    o->budget_s = 60;
    o->t_prefill = 64;
    o->min_gain = 0.03;
}

void bj_tune_desc_str(const bj_cg_kdesc *d, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%s/%s m%u t%u u%u", bj_cg_variant_name((bj_cg_variant)d->variant),
                     bj_cg_isa_name((bj_cg_isa)d->isa), d->tile_m, d->tile_t, d->unroll);
    if (d->prefetch && n > 0 && (size_t)n < cap) /* bytes ahead; the AMX path counts 64-k chunks */
        snprintf(buf + n, cap - (size_t)n, d->isa == BJ_CG_ISA_AMX ? " pf%uc" : " pf%u",
                 d->isa == BJ_CG_ISA_AMX ? d->prefetch : 256u * d->prefetch);
}

void bj_tune_report_free(bj_tune_report *rep) {
    free(rep->r);
    rep->r = NULL;
    rep->n = 0;
}

/* ---- the graph's shapes ---------------------------------------------------------------------
 * Read from the plan of the pipeline run as the JIT engine runs it without a database
 * (bj_jit_compile): each distinct shape with the kernels engines use when it has no entry. */
static bj_status tune_graph_shapes(const bj_graph *g, const bj_tune_opts *o, bj_cg_target *tgt, bj_cg_tune_shape **out,
                             size_t *n_out, uint64_t *bytes2, bj_error *err) {
    bj_jit_options jo;
    bj_jit_options_default(&jo);
    jo.mcpu = o->mcpu;
    jo.mattr = o->mattr;
    jo.cache_dir = o->cache_dir;
    jo.no_tune_db = true;
    bj_graph own;
    bj_plan plan;
    BJ_TRY(bj_jit_compile(g, &jo, &own, &plan, err));
    *tgt = plan.tgt;
    bj_cg_tune_shape *s = NULL;
    size_t n = 0;
    bj_status st = BJ_OK;
    *bytes2 = 0;
    for (uint32_t i = 0; i < own.n_nodes && st == BJ_OK; i++) {
        if (!plan.kern[i].set) continue;
        const bj_cg_tune_pick *pk = &plan.kern[i].pick;
        uint32_t m = pk->def.m, k = pk->def.k;
        bj_cg_wtype wt = (bj_cg_wtype)pk->def.wtype;
        *bytes2 += (uint64_t)m * k / 4;
        size_t j = 0;
        while (j < n && !(s[j].m == m && s[j].k == k && s[j].wtype == wt)) j++;
        if (j < n) { s[j].count++; continue; }
        bj_cg_tune_shape *p = realloc(s, (n + 1) * sizeof *p);
        if (!p) { st = BJ_FAIL(err, BJ_E_NOMEM, "out of memory"); break; }
        s = p;
        s[n++] = (bj_cg_tune_shape){ .m = m, .k = k, .wtype = (uint8_t)wt, .def = { pk->dec, pk->has_pp ? pk->pp : pk->dec },
                                     .count = 1 };
    }
    bj_plan_free(&plan);
    bj_graph_free(&own);
    if (st != BJ_OK) { free(s); return st; }
    *out = s;
    *n_out = n;
    return BJ_OK;
}

/* ---- one shape's workspace ------------------------------------------------------------------- */
typedef struct tune_ws {
    const bj_tune_opts *o;
    const bj_cg_target *t;
    bj_cg_cache *cache;
    bj_cg_jit *jit;
    bj_pool *pool;
    uint32_t M, K;
    bj_cg_wtype wt;
    int64_t XS, Tp;
    int8_t *t8, *x;
    int32_t *y, *ref;
    uint8_t *packed[BJ_CG_V_COUNT]; /* per variant: `copies` packed copies, one after another */
    size_t psize[BJ_CG_V_COUNT], copies[BJ_CG_V_COUNT];
    uint64_t model_bytes2;
    const bj_cg_kdesc *only[BJ_CG_TC_COUNT]; /* quick mode after the first shape: its winners */
    double t_start;
    int64_t done, total;
    bool over;                      /* the budget is spent */
} tune_ws;

typedef struct tune_call {
    bj_cg_matmul_fn fn;
    const int8_t *x;
    const uint8_t *w;
    int32_t *y;
    int64_t T, M, rb;
} tune_call;

static void tune_run(void *ctx, int ith, int nth) {
    const tune_call *c = ctx;
    int64_t m0, m1;
    bj_pool_split(c->M, c->rb, ith, nth, &m0, &m1);
    if (m0 < m1) c->fn(c->x, c->w, c->y, c->T, m0, m1);
}

static void tune_ws_free(tune_ws *w) {
    free(w->t8);
    free(w->x);
    free(w->y);
    free(w->ref);
    for (int v = 0; v < BJ_CG_V_COUNT; v++) free(w->packed[v]);
}

static bj_status tune_ws_init(tune_ws *w, const bj_cg_tune_shape *s, bj_error *err) {
    size_t mk = (size_t)s->m * s->k;
    w->M = s->m;
    w->K = s->k;
    w->wt = (bj_cg_wtype)s->wtype;
    w->XS = bj_cg_x_stride(s->k);
    w->Tp = w->o->t_prefill;
    w->t8 = malloc(mk);
    w->x = calloc((size_t)(w->Tp * w->XS), 1);
    w->y = malloc((size_t)w->Tp * s->m * sizeof(int32_t));
    w->ref = malloc((size_t)w->Tp * s->m * sizeof(int32_t));
    if (!w->t8 || !w->x || !w->y || !w->ref) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for a %ux%u shape", s->m, s->k);
    uint64_t r = 0x5eedull ^ ((uint64_t)s->m << 32) ^ s->k;
    for (size_t i = 0; i < mk; i++) {
        uint64_t z = tune_rng(&r) % 3;
        w->t8[i] = w->wt == BJ_CG_W_BINARY ? (z & 1 ? 1 : -1) : (int8_t)((int)z - 1);
    }
    for (int64_t t = 0; t < w->Tp; t++)
        for (int64_t k = 0; k < s->k; k++) w->x[t * w->XS + k] = (int8_t)(tune_rng(&r) & 0xff); /* -128 included */
    bj_cg_ref_matmul(w->x, w->t8, w->ref, w->Tp, s->m, s->k, 0, s->m);
    return BJ_OK;
}

/* This CPU's last-level cache in bytes (the largest "size" under cpu0's sysfs cache index), 0
 * when unknown. Decode timings stream at least twice this, so no copy is still cached when the
 * kernel comes back to it. */
static uint64_t tune_llc_bytes(void) {
    uint64_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[32];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(buf, sizeof buf, f)) {
            char *end;
            unsigned long long v = strtoull(buf, &end, 10);
            v *= *end == 'K' ? 1024ull : *end == 'M' ? 1024ull * 1024 : 1;
            if (v > best) best = v;
        }
        fclose(f);
    }
    return best;
}

/* The bytes a decode timing streams through: the model's low-bit weights (what a decode step
 * reads), at least 2x the last-level cache, at most TUNE_STREAM_CAP (or 2x the LLC if larger). */
uint64_t bj_tune_stream_bytes(uint64_t model_bytes2) {
    uint64_t llc2 = 2 * tune_llc_bytes(), cap = TUNE_STREAM_CAP > llc2 ? TUNE_STREAM_CAP : llc2;
    uint64_t want = model_bytes2 > llc2 ? model_bytes2 : llc2;
    return want < cap ? want : cap;
}

/* The packed weights of d's variant (packed once per shape, copied for streaming). */
static bj_status tune_weights(tune_ws *w, const bj_cg_kdesc *d, bj_error *err) {
    int v = d->variant;
    if (w->packed[v] || v == BJ_CG_V_WCODE) return BJ_OK;
    uint64_t size = bj_cg_packed_size(d);
    uint64_t stream = bj_tune_stream_bytes(w->model_bytes2);
    uint64_t copies = (stream + size - 1) / size;
    if (copies < 1) copies = 1;
    if (copies > 4096) copies = 4096;
    if (!(w->packed[v] = malloc(size * copies)))
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for %llu packed bytes", (unsigned long long)(size * copies));
    BJ_TRY(bj_cg_pack(d, w->t8, w->packed[v], err));
    for (uint64_t c = 1; c < copies; c++) memcpy(w->packed[v] + c * size, w->packed[v], size);
    w->psize[v] = size;
    w->copies[v] = copies;
    return BJ_OK;
}

/* Runs d's kernel over T tokens on the pool; copy picks the weight copy. */
static void tune_call_run(tune_ws *w, bj_cg_matmul_fn fn, const bj_cg_kdesc *d, int64_t T, size_t copy) {
    int v = d->variant;
    tune_call c = { fn, w->x, w->packed[v] ? w->packed[v] + (copy % w->copies[v]) * w->psize[v] : NULL, w->y, T, w->M,
                    bj_cg_row_block(d) };
    bj_pool_run(w->pool, tune_run, &c);
}

typedef enum { TUNE_OK, TUNE_FAILED, TUNE_WRONG } tune_outcome;

static int tune_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Compiles (or loads) d, checks it against the reference at T = Tp, 3 and 1, then times it at
 * T: each call timed on its own for at least 60 ms (and at least one pass over the weight
 * copies), the figure being the 25th percentile of the calls, so that calls the scheduler
 * interrupted (other work on the machine) do not count. */
static tune_outcome tune_measure(tune_ws *w, const bj_cg_kdesc *d, int64_t T, double *ns, bj_error *err) {
    bj_cg_matmul_fn fn;
    bj_error e2 = { 0 };
    if (tune_weights(w, d, err) != BJ_OK) return TUNE_FAILED;
    if (bj_cg_kernel_get(w->cache, w->jit, w->t, d, w->t8, &fn, &e2) != BJ_OK) return TUNE_FAILED;
    const int64_t checks[3] = { w->Tp, 3 < w->Tp ? 3 : w->Tp, 1 };
    for (int i = 0; i < 3; i++) {
        memset(w->y, 0x55, (size_t)checks[i] * w->M * sizeof(int32_t));
        tune_call_run(w, fn, d, checks[i], 0);
        if (memcmp(w->y, w->ref, (size_t)checks[i] * w->M * sizeof(int32_t))) return TUNE_WRONG;
    }
    size_t copies = d->variant == BJ_CG_V_WCODE ? 1 : w->copies[d->variant];
    enum { MAX_SAMPLES = 8192 };
    double *dt = malloc(MAX_SAMPLES * sizeof *dt);
    if (!dt) { BJ_FAIL(err, BJ_E_NOMEM, "out of memory"); return TUNE_FAILED; }
    size_t n = 0;
    double start = tune_now_s(), t0 = start, t1;
    tune_call_run(w, fn, d, T, copies - 1); /* warm-up */
    do {
        t0 = tune_now_s();
        tune_call_run(w, fn, d, T, n);
        t1 = tune_now_s();
        dt[n % MAX_SAMPLES] = t1 - t0;
        n++;
    } while (t1 - start < (w->o->quick ? 0.01 : 0.06) || (T == 1 && n < copies) || n < 5); /* decode: one pass over the copies */
    size_t k = n < MAX_SAMPLES ? n : MAX_SAMPLES;
    qsort(dt, k, sizeof *dt, tune_cmp_double);
    *ns = dt[k / 4] * 1e9;
    free(dt);
    return TUNE_OK;
}

/* ---- search ------------------------------------------------------------------------------------ */
typedef struct tune_seen { bj_cg_kdesc d; double ns; tune_outcome oc; } tune_seen;
typedef struct tune_search {
    tune_ws *w;
    bj_tune_result *r;
    tune_seen *seen;
    size_t n_seen, cap_seen;
} tune_search;

static bool tune_budget_over(tune_ws *w) {
    if (!w->over && w->o->budget_s > 0 && tune_now_s() - w->t_start > w->o->budget_s) w->over = true;
    return w->over;
}

/* Measures d once per search (memo); *ns < 0 when it failed or was wrong. false: out of budget
 * or memory (err set for memory). */
static bool tune_try(tune_search *s, const bj_cg_kdesc *d, double *ns, bj_status *st, bj_error *err) {
    *ns = -1;
    for (size_t i = 0; i < s->n_seen; i++)
        if (!memcmp(&s->seen[i].d, d, sizeof *d)) { *ns = s->seen[i].oc == TUNE_OK ? s->seen[i].ns : -1; return true; }
    if (tune_budget_over(s->w)) return false;
    if (s->n_seen == s->cap_seen) {
        size_t cap = s->cap_seen ? 2 * s->cap_seen : 32;
        tune_seen *p = realloc(s->seen, cap * sizeof *p);
        if (!p) { *st = BJ_FAIL(err, BJ_E_NOMEM, "out of memory"); return false; }
        s->seen = p;
        s->cap_seen = cap;
    }
    char what[96], note[160];
    bj_tune_desc_str(d, what, sizeof what);
    snprintf(note, sizeof note, "%ux%u %s: %s", s->w->M, s->w->K, bj_cg_tclass_name((bj_cg_tclass)s->r->tclass), what);
    if (s->w->o->progress) s->w->o->progress(s->w->o->progress_ud, s->w->done, s->w->total, note);
    double t = 0;
    tune_outcome oc = tune_measure(s->w, d, s->r->T, &t, err);
    s->w->done++;
    if (oc == TUNE_FAILED && err->code == BJ_E_NOMEM) { *st = BJ_E_NOMEM; return false; }
    s->seen[s->n_seen++] = (tune_seen){ *d, t, oc };
    if (oc == TUNE_OK) { s->r->tried++; *ns = t; }
    else if (oc == TUNE_WRONG) s->r->rejected++;
    else s->r->failed++;
    return true;
}

/* Considers d as the new best (allowed: it packs as `layout` does, or layout < 0). */
static void tune_offer(tune_search *s, const bj_cg_kdesc *d, double ns, int layout) {
    bj_tune_result *r = s->r;
    if (ns < 0) return;
    if (!r->fastest_ns || ns < r->fastest_ns) { r->fastest = *d; r->fastest_ns = ns; }
    if (layout >= 0 && d->variant != layout) return;
    if (ns < r->best_ns) { r->best = *d; r->best_ns = ns; }
}

static const uint8_t tune_tt[] = { 1, 2, 4, 8, 16, 32 }, tune_tm[] = { 1, 2, 3, 4, 8 }, tune_un[] = { 1, 2, 4 },
                     tune_pf[] = { 0, 4, 8, 16, 32 }; /* prefetch: 0, 1, 2, 4, 8 KiB ahead */
/* The AMX path's unroll is its panel (64-k chunks) and prefetch counts chunks. */
static const uint8_t tune_un_amx[] = { 8, 16, 32, 64 }, tune_pf_amx[] = { 0, 1, 2 };

/* Coordinate descent from `from` over tile_t, then tile_m, then unroll, then prefetch. */
static bool tune_descend(tune_search *s, bj_cg_kdesc from, double from_ns, int layout, bj_status *st, bj_error *err) {
    static const uint8_t *const axes[] = { tune_tt, tune_tm, tune_un, tune_pf };
    static const size_t naxis[] = { sizeof tune_tt, sizeof tune_tm, sizeof tune_un, sizeof tune_pf };
    for (int axis = 0; axis < 4; axis++) {
        const uint8_t *vals = axes[axis];
        size_t nv = naxis[axis];
        if (from.isa == BJ_CG_ISA_AMX && axis >= 2) {
            vals = axis == 2 ? tune_un_amx : tune_pf_amx;
            nv = axis == 2 ? sizeof tune_un_amx : sizeof tune_pf_amx;
        }
        bj_cg_kdesc best = from;
        double best_ns = from_ns;
        for (size_t i = 0; i < nv; i++) {
            bj_cg_kdesc d = from;
            uint8_t *f = axis == 0 ? &d.tile_t : axis == 1 ? &d.tile_m : axis == 2 ? &d.unroll : &d.prefetch;
            if (*f == vals[i]) continue;
            *f = vals[i];
            bj_error ign = { 0 };
            if (bj_cg_kdesc_check(&d, s->w->t, &ign) != BJ_OK) continue;
            if (d.variant == BJ_CG_V_WCODE && axis == 2) continue; /* unroll is unused there */
            double ns;
            if (!tune_try(s, &d, &ns, st, err)) return false;
            tune_offer(s, &d, ns, layout);
            if (ns >= 0 && ns < best_ns) { best = d; best_ns = ns; }
        }
        from = best;
        from_ns = best_ns;
    }
    return true;
}

/* Whether the quick mode tries variant v on path a: the target's widest path, the 256-bit ones
 * (avxvnni, avx2: they won on Zen 5 and Ice Lake), AMX for prefill; not the SSE2 baseline or
 * AVX-512 without VNNI on a CPU that has wider paths, nor bit planes (the same bytes as dot2 with
 * 3-8x its instructions: codegen's cost rule). */
static bool tune_quick_base(const tune_ws *w, int v, int a) {
    if (v == BJ_CG_V_BITPLANE) return false;
    return a == (int)bj_cg_best_isa(w->t) || a == BJ_CG_ISA_AVXVNNI || a == BJ_CG_ISA_AVX2 || a == BJ_CG_ISA_AMX;
}

/* All (variant, path) pairs the target and weight type allow, at default tiles; the AMX path
 * only for prefill (a decode step's one token would go to its edge kernel). Quick mode: the
 * bases of tune_quick_base; for prefill only the decode winner's variant (layout); after the
 * first shape only w->only, the first shape's winner of the class (prefill: if it packs as
 * layout). */
static size_t tune_bases(tune_ws *w, bool prefill, int layout, bj_cg_kdesc *out, size_t cap) {
    size_t n = 0;
    bool quick = w->o->quick;
    const bj_cg_kdesc *only = quick ? w->only[prefill ? BJ_CG_TC_PREFILL : BJ_CG_TC_DECODE] : NULL;
    if (only && (!prefill || layout < 0 || only->variant == layout)) {
        bj_error ign = { 0 };
        return cap && bj_cg_kdesc_init(&out[0], w->t, (bj_cg_variant)only->variant, (bj_cg_isa)only->isa, w->wt, w->M,
                                       w->K, w->t8, &ign) == BJ_OK;
    }
    for (int v = BJ_CG_V_AUTO + 1; v < BJ_CG_V_COUNT; v++) {
        if (w->wt == BJ_CG_W_BINARY && v != BJ_CG_V_BIN1) continue; /* the IR keeps binary weights on bin1 */
        if (v == BJ_CG_V_WCODE && (uint64_t)w->M * w->K > TUNE_WCODE_MAX_MK) continue;
        if (quick && prefill && layout >= 0 && v != layout) continue;
        for (int a = BJ_CG_ISA_AUTO + 1; a < BJ_CG_ISA_COUNT && n < cap; a++) {
            bj_error ign = { 0 };
            if (!bj_cg_isa_supported(w->t, (bj_cg_isa)a) || (a == BJ_CG_ISA_AMX && !prefill)) continue;
            if (quick && !tune_quick_base(w, v, a)) continue;
            if (bj_cg_kdesc_init(&out[n], w->t, (bj_cg_variant)v, (bj_cg_isa)a, w->wt, w->M, w->K, w->t8, &ign) == BJ_OK) n++;
        }
    }
    return n;
}

/* One (shape, T-class): default, bases, descent from the best base (and from the default's).
 * layout: the variant the winner must have (prefill), or -1. */
static bj_status tune_class(tune_ws *w, const bj_cg_tune_shape *sh, bj_tune_result *r, int layout, bj_error *err) {
    tune_search s = { .w = w, .r = r };
    bj_status st = BJ_OK;
    bj_cg_kdesc bases[BJ_CG_V_COUNT * BJ_CG_ISA_COUNT];
    size_t nb = tune_bases(w, r->tclass == BJ_CG_TC_PREFILL, layout, bases, sizeof bases / sizeof bases[0]);
    double ns;
    r->best_ns = 1e300;
    if (!tune_try(&s, &r->def, &ns, &st, err)) goto out;
    if (ns < 0) goto out; /* the default itself failed: leave this class alone */
    r->measured = true;
    r->def_ns = ns;
    r->best = r->def;
    r->best_ns = ns;
    tune_offer(&s, &r->def, ns, -1);
    bj_cg_kdesc top = r->def;
    double top_ns = ns;
    for (size_t i = 0; i < nb; i++) {
        if (!tune_try(&s, &bases[i], &ns, &st, err)) goto out;
        tune_offer(&s, &bases[i], ns, layout);
        if (ns >= 0 && ns < top_ns && (layout < 0 || bases[i].variant == layout)) { top = bases[i]; top_ns = ns; }
    }
    if (!w->o->quick) { /* quick mode: the paths at their default tiles only */
        if (!tune_descend(&s, top, top_ns, layout, &st, err)) goto out;
        if (memcmp(&top, &r->def, sizeof top) && !tune_descend(&s, r->def, r->def_ns, layout, &st, err)) goto out;
    }
    /* Confirm: time the default and the winner again, alternately three times each, each
     * keeping its best figure, so a default measured while the machine was busy gets its
     * chance (a loaded machine shows as large, not small, times). */
    for (int rep = 0; rep < (w->o->quick ? 1 : 3) && memcmp(&r->best, &r->def, sizeof r->best) && !tune_budget_over(w); rep++) {
        double a, b;
        if (tune_measure(w, &r->def, r->T, &a, err) == TUNE_OK && a < r->def_ns) r->def_ns = a;
        if (tune_measure(w, &r->best, r->T, &b, err) == TUNE_OK && b < r->best_ns) r->best_ns = b;
    }
out:
    (void)sh;
    free(s.seen);
    if (r->measured && r->best_ns > r->def_ns * (1 - w->o->min_gain)) { r->best = r->def; r->best_ns = r->def_ns; }
    if (!r->measured) r->best_ns = 0;
    return st;
}

/* The measured results merged into the database file (its other entries kept). */
static bj_status tune_write_db(const bj_cg_target *tgt, bj_tune_report *rep, bj_error *err) {
    bj_cg_tunedb db;
    bool found;
    bj_status st = bj_cg_tunedb_load(&db, tgt, rep->db_path, &found, rep->db_warning, sizeof rep->db_warning, err);
    for (size_t i = 0; st == BJ_OK && i < rep->n; i++) {
        const bj_tune_result *r = &rep->r[i];
        if (!r->measured) continue;
        bj_cg_tune_entry e = { .m = r->m, .k = r->k, .wtype = r->wtype, .tclass = r->tclass,
                               .variant = r->best.variant, .isa = r->best.isa, .tile_m = r->best.tile_m,
                               .tile_t = r->best.tile_t, .unroll = r->best.unroll,
                               .prefetch = r->best.prefetch, .default_ns = r->def_ns,
                               .tuned_ns = r->best_ns };
        st = bj_cg_tunedb_set(&db, &e, err);
        rep->n_written += st == BJ_OK;
    }
    if (st == BJ_OK) st = bj_cg_tunedb_save(&db, rep->db_path, err);
    bj_cg_tunedb_free(&db);
    return st;
}

/* Quick mode: the shapes by bytes a decode step reads (M x K x count), largest first, so that
 * the first (whose decode search picks the path the others then try) matters most and a budget
 * cut leaves the small ones. */
static int tune_cmp_bytes(const void *a, const void *b) {
    const bj_cg_tune_shape *x = a, *y = b;
    uint64_t bx = (uint64_t)x->m * x->k * (uint64_t)x->count, by = (uint64_t)y->m * y->k * (uint64_t)y->count;
    return bx > by ? -1 : bx < by;
}

/* The candidates a search of n shapes is estimated to measure (progress only). */
static int64_t tune_estimate(const bj_tune_opts *o, const bj_cg_target *tgt, size_t n) {
    tune_ws probe = { .o = o, .t = tgt, .M = 1024, .K = 1024, .wt = BJ_CG_W_TERNARY };
    bj_cg_kdesc b[BJ_CG_V_COUNT * BJ_CG_ISA_COUNT];
    int64_t nb = (int64_t)tune_bases(&probe, false, -1, b, sizeof b / sizeof b[0]);
    if (o->quick) return n ? 1 + nb + 4 + 4 * ((int64_t)n - 1) : 0; /* the first shape's search; 2 + 2 the others */
    return (1 + nb + 20) * (int64_t)n * BJ_CG_TC_COUNT; /* default + bases + ~10 tiles, twice, per class */
}

/* One shape's T-classes into rep (decode first: the prefill winner packs as its winner does). */
static bj_status tune_one_shape(tune_ws *ws, const bj_cg_tune_shape *sh, const bj_cg_target *tgt, bj_tune_report *rep,
                                bj_error *err) {
    bj_status st = BJ_OK;
    for (int tc = 0; st == BJ_OK && tc < BJ_CG_TC_COUNT && !ws->over; tc++) {
        bj_tune_result *r = &rep->r[rep->n];
        *r = (bj_tune_result){ .m = sh->m, .k = sh->k, .wtype = sh->wtype, .tclass = (uint8_t)tc,
                               .T = tc == BJ_CG_TC_DECODE ? 1 : ws->o->t_prefill, .count = sh->count };
        r->def = sh->def[tc]; /* what engines run without an entry */
        if (r->def.variant == BJ_CG_V_WCODE) /* its code is the measured (random) weights', so is its key */
            st = bj_cg_kdesc_init(&r->def, tgt, BJ_CG_V_WCODE, BJ_CG_ISA_AUTO, (bj_cg_wtype)sh->wtype, sh->m, sh->k,
                                  ws->t8, err);
        int layout = tc == BJ_CG_TC_DECODE ? -1 : rep->r[rep->n - 1].best.variant;
        if (layout >= 0 && r->def.variant != layout) {
            /* The decode winner packs differently from the default: prefill's baseline is the
             * winner with its path's prefill tiles (what engines run without a prefill entry), so
             * the entry written packs as the decode one and applies (bj_cg_tune_pick_descs). */
            bj_cg_kdesc d = rep->r[rep->n - 1].best;
            bj_error ign = { 0 };
            if (!bj_cg_kdesc_prefill_default(&d, tgt) || d.variant != layout || bj_cg_kdesc_check(&d, tgt, &ign) != BJ_OK)
                d = rep->r[rep->n - 1].best;
            r->def = d;
        }
        if (st == BJ_OK) st = tune_class(ws, sh, r, layout, err);
        rep->n++;
    }
    return st;
}

bj_status bj_tune_shapes(const bj_cg_target *tgt, const bj_cg_tune_shape *in, size_t n_shapes, uint64_t bytes2,
                         const bj_tune_opts *o, bj_tune_report *rep, bj_error *err) {
    memset(rep, 0, sizeof *rep);
    double t0 = tune_now_s();
    if (o->n_threads < 1) return BJ_FAIL(err, BJ_E_INVALID, "thread count must be at least 1");
    if (o->t_prefill < 2 || o->t_prefill > 4096)
        return BJ_FAIL(err, BJ_E_INVALID, "prefill tokens must be in [2, 4096], got %d", o->t_prefill);
    BJ_TRY(bj_cg_target_check_host(tgt, err));
    snprintf(rep->cpu, sizeof rep->cpu, "%s", tgt->cpu);
    if (o->db_path && *o->db_path) snprintf(rep->db_path, sizeof rep->db_path, "%s", o->db_path);
    else BJ_TRY(bj_cg_tunedb_default_path(tgt, o->cache_dir, rep->db_path, sizeof rep->db_path, err));
    bj_cg_tune_shape *shapes = malloc((n_shapes + 1) * sizeof *shapes);
    if (!shapes) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    if (n_shapes) memcpy(shapes, in, n_shapes * sizeof *shapes);
    if (o->quick) qsort(shapes, n_shapes, sizeof *shapes, tune_cmp_bytes);
    bj_cg_cache cache;
    bj_cg_jit *jit = NULL;
    bj_pool *pool = NULL;
    bj_status st = bj_cg_cache_open(&cache, o->cache_dir, tgt, o->no_cache, err);
    if (st == BJ_OK) st = bj_cg_jit_create(&jit, err);
    if (st == BJ_OK) st = bj_pool_create(&pool, o->n_threads, err);
    if (st == BJ_OK && !(rep->r = calloc(n_shapes * BJ_CG_TC_COUNT + 1, sizeof *rep->r)))
        st = BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    rep->llc_bytes = tune_llc_bytes();
    rep->stream_bytes = bj_tune_stream_bytes(bytes2);
    tune_ws w = { .o = o, .t = tgt, .cache = &cache, .jit = jit, .pool = pool, .model_bytes2 = bytes2,
                  .t_start = t0, .total = tune_estimate(o, tgt, n_shapes) };
    bj_cg_kdesc first[BJ_CG_TC_COUNT]; /* quick mode: the first shape's winners */
    for (size_t i = 0; st == BJ_OK && i < n_shapes && !w.over; i++) {
        tune_ws ws = w;
        memset(ws.packed, 0, sizeof ws.packed);
        st = tune_ws_init(&ws, &shapes[i], err);
        size_t r0 = rep->n;
        if (st == BJ_OK) st = tune_one_shape(&ws, &shapes[i], tgt, rep, err);
        bool lead = o->quick && !w.only[BJ_CG_TC_DECODE];
        for (size_t c = 0; lead && r0 + c < rep->n; c++)
            if (rep->r[r0 + c].measured) {
                first[rep->r[r0 + c].tclass] = rep->r[r0 + c].best;
                w.only[rep->r[r0 + c].tclass] = &first[rep->r[r0 + c].tclass];
            }
        w.done = ws.done;
        w.over = ws.over;
        tune_ws_free(&ws);
    }
    rep->budget_hit = w.over;
    if (st == BJ_OK && !o->dry_run) st = tune_write_db(tgt, rep, err);
    bj_pool_free(pool);
    bj_cg_jit_free(jit);
    free(shapes);
    rep->elapsed_s = tune_now_s() - t0;
    if (st != BJ_OK) bj_tune_report_free(rep);
    return st;
}

bj_status bj_tune_graph(const bj_graph *g, const bj_tune_opts *o, bj_tune_report *rep, bj_error *err) {
    memset(rep, 0, sizeof *rep);
    BJ_TRY(bj_ir_verify(g, err));
    bj_cg_target tgt;
    bj_cg_tune_shape *shapes = NULL;
    size_t n_shapes = 0;
    uint64_t bytes2;
    BJ_TRY(tune_graph_shapes(g, o, &tgt, &shapes, &n_shapes, &bytes2, err));
    bj_status st = bj_tune_shapes(&tgt, shapes, n_shapes, bytes2, o, rep, err);
    free(shapes);
    return st;
}

/* The quick tune of a first start (bj_pipeline_opts.autotune): ud is the engine's
 * bj_jit_options (threads, kernel cache, progress). */
bj_status bj_tune_autotune(void *ud, const bj_cg_target *t, const bj_cg_tune_shape *shapes, size_t n, const char *db_path,
                           bj_error *err) {
    const bj_jit_options *jo = ud;
    bj_tune_opts o;
    bj_tune_opts_default(&o);
    o.quick = true;
    o.budget_s = BJ_TUNE_QUICK_BUDGET_S;
    o.n_threads = jo->n_threads;
    o.cache_dir = jo->cache_dir;
    o.no_cache = jo->no_cache;
    o.db_path = db_path;
    o.progress = jo->tune_progress;
    o.progress_ud = jo->tune_progress_ud;
    bj_tune_report rep;
    BJ_TRY(bj_tune_shapes(t, shapes, n, 0, &o, &rep, err)); /* streams 2 x LLC, not the model */
    bj_tune_report_free(&rep);
    return BJ_OK;
}
