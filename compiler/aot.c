/* compiler/aot.c -- ahead-of-time output of a compiled model (the layout is in aot.h).
 *
 * Steps: take the target and every matmul's kernels from the pipeline's plan (select-kernels
 * chose them: the library holds each matmul's untuned kernel, its tuned one and its prefill
 * one) and the exact head's kernel; collect the distinct descriptors; then either print text
 * (graph IR, LLVM IR or assembly of all kernels) or compile each kernel to an object and link
 * the objects with the bundle (target, graph IR, model description, the plan's picks and packed
 * weights, weights, tokenizer files or a GGUF's metadata) through the system C compiler driver.
 * The bundle is streamed to its file item by item (a 2B4T library's is 1.7 GB), never held whole.
 *
 * Text merging: codegen gives one module (or one assembly file) per kernel. LLVM IR modules
 * are merged as text: the header once, each intrinsic declaration once, attribute groups
 * and metadata renumbered per kernel. Assembly files are concatenated with every local
 * label (.L...) renamed per kernel, so `cc -c` accepts the whole file.
 *
 * Everything a step allocates is freed on every path; temporary files live in a private
 * directory removed at the end; the destination appears only complete (rename). */
#include "compiler/aot.h"

#include "codegen/codegen.h"
#include "codegen/cg_tunedb.h"
#include "frontends/gguf.h"
#include "ir/weights.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- growable byte buffer --------------------------------------------------------------- */
typedef struct bj_aot_buf { char *p; size_t n, cap; bool oom; } bj_aot_buf;

static void bj_aot_put(bj_aot_buf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void bj_aot_puts(bj_aot_buf *b, const char *s) { bj_aot_put(b, s, strlen(s)); }

static void bj_aot_printf(bj_aot_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bj_aot_printf(bj_aot_buf *b, const char *fmt, ...) {
    char tmp[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) { b->oom = true; return; }
    bj_aot_put(b, tmp, (size_t)n);
}

static double bj_aot_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

bool bj_aot_emit_from_name(const char *s, bj_aot_emit *out) {
    static const char *const names[] = { "ir", "llvm", "asm", "obj", "so" };
    for (int i = 0; i < (int)BJ_COUNTOF(names); i++)
        if (!strcmp(s, names[i])) { *out = (bj_aot_emit)i; return true; }
    return false;
}

/* ---- kernels: the descriptors the JIT engine would make -------------------------------- */
typedef struct bj_aot_kernel {
    bj_cg_kdesc desc;       /* a lowbit matmul's, or the exact head's (kind BJ_CG_KIND_HEAD_F) */
    int8_t *t8;       /* kept for weights-as-code only (its compile needs the values) */
    int count;        /* matmul nodes using it */
} bj_aot_kernel;

typedef struct bj_aot_set {
    bj_cg_target tgt;
    bj_aot_kernel *k;
    size_t n;
    int64_t n_matmuls;
    int64_t n_heads;         /* exact-head kernels */
    int64_t n_tuned;         /* matmuls whose kernel came from the tuning database */
    bool tune_db_found;      /* tune_db existed and was read */
    char tune_db[4096], tune_warning[512];
} bj_aot_set;

static void bj_aot_set_free(bj_aot_set *s) {
    for (size_t i = 0; i < s->n; i++) free(s->k[i].t8);
    free(s->k);
    memset(s, 0, sizeof *s);
}

static bj_status bj_aot_add_kernel(bj_aot_set *s, const bj_cg_kdesc *d, int8_t **t8, bj_error *err) {
    for (size_t i = 0; i < s->n; i++)
        if (!memcmp(&s->k[i].desc, d, sizeof *d)) { s->k[i].count++; return BJ_OK; }
    bj_aot_kernel *k = realloc(s->k, (s->n + 1) * sizeof *k);
    if (!k) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    s->k = k;
    k[s->n] = (bj_aot_kernel){ .desc = *d, .count = 1 };
    if (d->variant == BJ_CG_V_WCODE) { k[s->n].t8 = *t8; *t8 = NULL; }
    s->n++;
    return BJ_OK;
}

/* The ternary matmuls: matmul_t, and the pipeline's matmul_tk / bitlinear (weight last). */
static bool bj_aot_is_matmul(const bj_node *n) {
    return n->op == BJ_OP_MATMUL_T || n->op == BJ_OP_MATMUL_TK || n->op == BJ_OP_BITLINEAR;
}

/* Node id's kernels as the plan has them: the untuned one, the tuned decode one, the prefill
 * one (weights-as-code kernels keep a copy of the values their compile needs). */
static bj_status bj_aot_matmul_desc(bj_aot_set *s, const bj_graph *g, const bj_plan *p, uint32_t id, bj_error *err) {
    const bj_node *n = &g->nodes[id];
    uint32_t wid = n->op == BJ_OP_BITLINEAR ? n->in[2] : n->in[1];
    const bj_node *w = &g->nodes[wid];
    if (id >= p->n_nodes || !p->kern[id].set)
        return BJ_FAIL(err, BJ_E_INTERNAL, "matmul %%%u (weight '%s') has no kernel in the plan", id, w->name ? w->name : "?");
    const bj_cg_tune_pick *pk = &p->kern[id].pick;
    const bj_cg_kdesc *ds[3] = { &pk->def, pk->dec_tuned ? &pk->dec : NULL, pk->has_pp ? &pk->pp : NULL };
    s->n_tuned += pk->dec_tuned;
    bj_status st = BJ_OK;
    for (int i = 0; i < 3 && st == BJ_OK; i++) {
        if (!ds[i]) continue;
        int8_t *mine = NULL; /* weights-as-code keeps its own copy of the values */
        double scale;
        if (ds[i]->variant == BJ_CG_V_WCODE) st = bj_ir_lowbit_values(g, wid, &mine, &scale, err);
        if (st == BJ_OK) st = bj_aot_add_kernel(s, ds[i], &mine, err);
        free(mine);
    }
    if (st != BJ_OK)
        bj_error_prefix(err, "matmul %%%u (weight '%s')", id, w->name ? w->name : "?");
    return st;
}

/* The exact LM head's generated kernel: the descriptor the JIT engine makes for a float matmul
 * (engine_jit.c prepare_head_f, bj_cg_head_kdesc_init with the widest path), so an engine over
 * the library finds it by symbol; none where the target has no path (the engine then runs the
 * plain C head, the same bits). When select-kernels puts the head's descriptor into the plan,
 * this reads it from there instead. */
/* The exact LM head's generated kernel, as select-kernels chose it into the plan (kern[id].head);
 * a head left to the plain C code (`--head exact-c`, a CPU without a path) adds nothing. */
static bj_status bj_aot_head_desc(bj_aot_set *s, const bj_plan *p, uint32_t id, bj_error *err) {
    if (id >= p->n_nodes || p->kern[id].head != BJ_PLAN_HEAD_KERNEL) return BJ_OK;
    size_t before = s->n;
    BJ_TRY(bj_aot_add_kernel(s, &p->kern[id].head_desc, NULL, err));
    s->n_heads += s->n > before;
    return BJ_OK;
}

static bj_status bj_aot_collect(bj_aot_set *s, const bj_graph *g, const bj_aot_opts *o, bj_error *err) {
    memset(s, 0, sizeof *s);
    if (!o->plan) return BJ_FAIL(err, BJ_E_INVALID, "no plan: run the pass pipeline with a plan first");
    BJ_TRY(bj_ir_verify(g, err));
    s->tgt = o->plan->tgt;
    snprintf(s->tune_db, sizeof s->tune_db, "%s", o->plan->tune_db);
    snprintf(s->tune_warning, sizeof s->tune_warning, "%s", o->plan->tune_warning);
    bj_status st = BJ_OK;
    for (uint32_t i = 0; i < g->n_nodes && st == BJ_OK; i++) {
        if (g->nodes[i].op == BJ_OP_MATMUL_F) st = bj_aot_head_desc(s, o->plan, i, err);
        if (!bj_aot_is_matmul(&g->nodes[i])) continue;
        s->n_matmuls++;
        st = bj_aot_matmul_desc(s, g, o->plan, i, err);
    }
    s->tune_db_found = o->plan->tune_db_found;
    if (st != BJ_OK) bj_aot_set_free(s);
    return st;
}

static const char *bj_aot_kind_name(const bj_cg_kdesc *d) {
    return d->kind == BJ_CG_KIND_HEAD_F ? "head" : bj_cg_variant_name((bj_cg_variant)d->variant);
}

static void bj_aot_fill_report(const bj_aot_set *s, bj_aot_report *r) {
    snprintf(r->cpu, sizeof r->cpu, "%s", s->tgt.cpu);
    r->n_matmuls = s->n_matmuls;
    r->n_kernels = (int64_t)s->n;
    r->n_head_kernels = s->n_heads;
    r->n_tuned = s->n_tuned;
    snprintf(r->tune_db, sizeof r->tune_db, "%s", s->tune_db);
    snprintf(r->tune_warning, sizeof r->tune_warning, "%s", s->tune_warning);
    size_t off = 0;
    r->variants[0] = 0;
    for (size_t i = 0; i < s->n && off < sizeof r->variants; i++)
        off += (size_t)snprintf(r->variants + off, sizeof r->variants - off, "%s%ux%u %s/%s", i ? ", " : "",
                                s->k[i].desc.m, s->k[i].desc.k, bj_aot_kind_name(&s->k[i].desc),
                                bj_cg_isa_name((bj_cg_isa)s->k[i].desc.isa));
    if (off >= sizeof r->variants) memcpy(r->variants + sizeof r->variants - 4, "...", 4); /* cut: say so */
}

/* ---- text: LLVM IR merge ------------------------------------------------------------------ */
/* Copies line to b with every "#N" / "!N" (attribute group, metadata id) shifted by base. */
static void bj_aot_renumber(bj_aot_buf *b, const char *line, size_t n, unsigned base) {
    size_t i = 0;
    while (i < n) {
        char c = line[i];
        bool ref = (c == '#' || c == '!') && i + 1 < n && isdigit((unsigned char)line[i + 1]);
        if (c == '"') { /* strings are copied verbatim */
            size_t j = i + 1;
            while (j < n && line[j] != '"') j++;
            bj_aot_put(b, line + i, j < n ? j - i + 1 : n - i);
            i = j < n ? j + 1 : n;
            continue;
        }
        if (!ref) { bj_aot_put(b, &c, 1); i++; continue; }
        char *end;
        unsigned long v = strtoul(line + i + 1, &end, 10);
        bj_aot_printf(b, "%c%lu", c, v + base);
        i = (size_t)(end - line);
    }
}

static bool bj_aot_starts(const char *line, size_t n, const char *prefix) {
    size_t p = strlen(prefix);
    return n >= p && !memcmp(line, prefix, p);
}

/* "declare ... @name(" -> whether name was seen (and records it). */
static bool bj_aot_declared(bj_aot_buf *seen, const char *line, size_t n) {
    const char *at = memchr(line, '@', n);
    if (!at) return false;
    const char *paren = memchr(at, '(', n - (size_t)(at - line));
    if (!paren) return false;
    char key[512];
    snprintf(key, sizeof key, "\n%.*s\n", (int)(paren - at), at);
    if (seen->p && strstr(seen->p, key)) return true;
    bj_aot_put(seen, key, strlen(key));
    return false;
}

static void bj_aot_merge_llvm(bj_aot_buf *b, bj_aot_buf *seen, const char *text, size_t k) {
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        bool header = bj_aot_starts(p, n, "; ModuleID") || bj_aot_starts(p, n, "source_filename") ||
                      bj_aot_starts(p, n, "target datalayout") || bj_aot_starts(p, n, "target triple");
        bool skip = (k > 0 && header) || (k > 0 && bj_aot_starts(p, n, "!llvm.")) ||
                    (bj_aot_starts(p, n, "declare ") && bj_aot_declared(seen, p, n));
        if (!skip) {
            bj_aot_renumber(b, p, n, (unsigned)k * 1000u);
            bj_aot_puts(b, "\n");
        }
        p += n + (p[n] == '\n');
    }
}

/* ---- text: assembly merge ----------------------------------------------------------------- */
static bool bj_aot_ident(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '$'; }

static void bj_aot_merge_asm(bj_aot_buf *b, const char *text, size_t k) {
    for (const char *p = text; *p; p++) {
        bool label = p[0] == '.' && p[1] == 'L' && bj_aot_ident(p[2]) && (p == text || !bj_aot_ident(p[-1]));
        if (label) {
            bj_aot_printf(b, ".Lbjk%zu_", k);
            p++;
            continue;
        }
        bj_aot_put(b, p, 1);
    }
    bj_aot_puts(b, "\n");
}

static bj_status bj_aot_kernels_text(const bj_aot_set *s, bj_aot_emit what, bj_aot_buf *b, bj_error *err) {
    bj_aot_buf seen = { 0 };
    bj_cg_emit mode = what == BJ_AOT_EMIT_LLVM ? BJ_CG_EMIT_LLVM_O3 : BJ_CG_EMIT_ASM;
    const char *c = what == BJ_AOT_EMIT_LLVM ? ";" : "#";
    bj_aot_printf(b, "%s bitjit %s: %zu kernels for cpu '%s'\n", c, BJ_VERSION_STRING, s->n, s->tgt.cpu);
    bj_status st = BJ_OK;
    for (size_t i = 0; i < s->n && st == BJ_OK; i++) {
        char *text = NULL, sym[32];
        st = bj_cg_compile_text(&s->tgt, &s->k[i].desc, s->k[i].t8, mode, &text, err);
        if (st != BJ_OK) break;
        bj_cg_kernel_symbol(&s->k[i].desc, sym, sizeof sym);
        bj_aot_printf(b, "\n%s ---- kernel %zu: %s (M=%u K=%u %s/%s, %d matmuls)\n", c, i, sym, s->k[i].desc.m,
                      s->k[i].desc.k, bj_aot_kind_name(&s->k[i].desc),
                      bj_cg_isa_name((bj_cg_isa)s->k[i].desc.isa), s->k[i].count);
        if (what == BJ_AOT_EMIT_LLVM) bj_aot_merge_llvm(b, &seen, text, i);
        else bj_aot_merge_asm(b, text, i);
        free(text);
    }
    free(seen.p);
    if (st == BJ_OK && b->oom) st = BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    return st;
}

bj_status bj_aot_emit_text(const bj_graph *g, const bj_aot_opts *o, bj_aot_emit what, char **out,
                           bj_aot_report *r, bj_error *err) {
    *out = NULL;
    bj_aot_report dummy;
    if (!r) r = &dummy;
    memset(r, 0, sizeof *r);
    if (what == BJ_AOT_EMIT_IR) return bj_ir_print_str(g, out, err);
    if (what != BJ_AOT_EMIT_LLVM && what != BJ_AOT_EMIT_ASM)
        return BJ_FAIL(err, BJ_E_INVALID, "emit: obj and so are files, not text");
    double t0 = bj_aot_now_ms();
    bj_aot_set s;
    BJ_TRY(bj_aot_collect(&s, g, o, err));
    bj_aot_buf b = { 0 };
    bj_status st = bj_aot_kernels_text(&s, what, &b, err);
    bj_aot_fill_report(&s, r);
    r->compile_ms = bj_aot_now_ms() - t0;
    bj_aot_set_free(&s);
    if (st != BJ_OK) { free(b.p); return st; }
    *out = b.p;
    return BJ_OK;
}

/* ---- the bundle --------------------------------------------------------------------------- */
typedef struct bj_aot_item { uint32_t kind; const char *name; const void *data; uint64_t size; } bj_aot_item;
typedef struct bj_aot_items { bj_aot_item *v; size_t n, cap; char *owned[16]; int n_owned; } bj_aot_items;

static bj_status bj_aot_item_add(bj_aot_items *it, uint32_t kind, const char *name, const void *data, uint64_t size,
                                 bj_error *err) {
    if (it->n == it->cap) {
        size_t cap = it->cap ? it->cap * 2 : 64;
        bj_aot_item *v = realloc(it->v, cap * sizeof *v);
        if (!v) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
        it->v = v;
        it->cap = cap;
    }
    it->v[it->n++] = (bj_aot_item){ kind, name, data, size };
    return BJ_OK;
}

static void bj_aot_items_free(bj_aot_items *it) {
    for (int i = 0; i < it->n_owned; i++) free(it->owned[i]);
    free(it->v);
}

/* Adds text owned by it (freed with it). */
static bj_status bj_aot_item_text(bj_aot_items *it, uint32_t kind, const char *name, char *text, bj_error *err) {
    if (it->n_owned == (int)BJ_COUNTOF(it->owned)) { free(text); return BJ_FAIL(err, BJ_E_INTERNAL, "too many texts"); }
    it->owned[it->n_owned++] = text;
    return bj_aot_item_add(it, kind, name, text, strlen(text), err);
}

/* A finished buffer's text as an item (NOMEM when it ran out). */
static bj_status bj_aot_item_buf(bj_aot_items *it, uint32_t kind, const char *name, bj_aot_buf *b, bj_error *err) {
    if (b->oom || !b->p) { free(b->p); return BJ_FAIL(err, BJ_E_NOMEM, "out of memory"); }
    return bj_aot_item_text(it, kind, name, b->p, err);
}

static bj_status bj_aot_add_target(bj_aot_items *it, const bj_aot_set *s, const bj_aot_opts *o, bj_error *err) {
    const bj_cg_target *t = &s->tgt;
    bj_aot_buf b = { 0 };
    char llvm[32];
    bj_cg_llvm_version(llvm, sizeof llvm);
    bj_aot_printf(&b, "cpu=%s\nflags=%u\nfeatures_known=%d\nis_host=%d\n", t->cpu, t->flags, t->features_known,
                  t->is_host);
    bj_aot_puts(&b, "features=");
    bj_aot_puts(&b, t->features);
    bj_aot_puts(&b, "\n");
    BJ_TRY(bj_aot_item_buf(it, BJ_AOT_E_TARGET, "target", &b, err));
    bj_aot_buf m = { 0 };
    bj_aot_printf(&m, "bitjit=%s\nllvm=%s\nabi=%d\n", BJ_VERSION_STRING, llvm, BJ_CG_ABI_VERSION);
    if (o->model_path) bj_aot_printf(&m, "model=%s\n", o->model_path);
    /* the tuning database read at build time ("(off)", "" for none) and what it gave */
    bj_aot_printf(&m, "tune_db=%s\ntuned=%lld\nmatmuls=%lld\nhead_kernels=%lld\n", s->tune_db_found ? s->tune_db : "",
                  (long long)s->n_tuned, (long long)s->n_matmuls, (long long)s->n_heads);
    return bj_aot_item_buf(it, BJ_AOT_E_META, "meta", &m, err);
}

/* The model's description as key=value lines (runtime/aot_load.c reads them back). */
static bj_status bj_aot_add_config(bj_aot_items *it, const bj_model_config *c, bj_error *err) {
    if (!c) return BJ_FAIL(err, BJ_E_INVALID, "no model config given for the library");
    bj_aot_buf b = { 0 };
    bj_aot_printf(&b, "arch=%s\nhidden=%lld\nintermediate=%lld\nn_layer=%lld\nn_head=%lld\nn_kv_head=%lld\n", c->arch,
                  (long long)c->hidden, (long long)c->intermediate, (long long)c->n_layer, (long long)c->n_head,
                  (long long)c->n_kv_head);
    bj_aot_printf(&b, "head_dim=%lld\nvocab=%lld\nmax_seq=%lld\nrms_eps=%.17g\nrope_theta=%.17g\nact=%d\n",
                  (long long)c->head_dim, (long long)c->vocab, (long long)c->max_seq, c->rms_eps, c->rope_theta, (int)c->act);
    bj_aot_printf(&b, "tie_embeddings=%d\nbos_id=%lld\neos_id=%lld\nlinear_class=%d\nonline_quant=%d\nweight_quant=%d\n",
                  c->tie_embeddings, (long long)c->bos_id, (long long)c->eos_id, (int)c->linear_class, c->online_quant,
                  (int)c->weight_quant);
    bj_aot_printf(&b, "block=%d\nhf_names=%d\nproj_norm=%d\nproj_norm_eps=%.17g\n", (int)c->block, (int)c->hf_names,
                  c->proj_norm, c->proj_norm_eps);
    return bj_aot_item_buf(it, BJ_AOT_E_CONFIG, "model", &b, err);
}

const char *bj_aot_matmul_key(const bj_graph *g, uint32_t node) {
    const bj_node *n = &g->nodes[node];
    const bj_node *w = &g->nodes[n->op == BJ_OP_BITLINEAR ? n->in[2] : n->in[1]];
    if (w->name && *w->name) return w->name;
    if (w->op == BJ_OP_WEIGHT_QUANT && g->nodes[w->in[0]].name && *g->nodes[w->in[0]].name) return g->nodes[w->in[0]].name;
    return NULL;
}

static void bj_aot_hex(bj_aot_buf *b, const void *p, size_t n) {
    const uint8_t *u = p;
    for (size_t i = 0; i < n; i++) bj_aot_printf(b, "%02x", u[i]);
    bj_aot_puts(b, " ");
}

/* One matmul's plan line and its packed weights (once per key: a weight two matmuls share). */
static bj_status bj_aot_add_pick(bj_aot_items *it, bj_aot_buf *b, const bj_graph *g, const bj_plan *p, uint32_t i,
                                 uint64_t *bytes, bj_error *err) {
    const char *key = bj_aot_matmul_key(g, i);
    if (!key || strchr(key, '\n'))
        return BJ_FAIL(err, BJ_E_INVALID, "matmul %%%u: its weight has no usable name for the library's plan", i);
    for (size_t j = 0; j < it->n; j++)
        if (it->v[j].kind == BJ_AOT_E_PACKED && !strcmp(it->v[j].name, key)) return BJ_OK;
    const bj_plan_kernel *k = &p->kern[i];
    uint64_t size = bj_cg_packed_size(&k->pick.dec), h[2] = { 0, 0 };
    if (size && !k->packed)
        return BJ_FAIL(err, BJ_E_INTERNAL, "matmul %%%u (weight '%s'): the plan has no packed weights", i, key);
    if (size) bj_cg_wcache_src_hash(k->packed, (size_t)size, BJ_AOT_PACKED_HOW, h);
    bj_aot_hex(b, &k->pick.def, sizeof k->pick.def);
    bj_aot_hex(b, &k->pick.dec, sizeof k->pick.dec);
    bj_aot_hex(b, &k->pick.pp, sizeof k->pick.pp);
    bj_aot_printf(b, "%d%d%d %llu %016llx%016llx %s\n", k->pick.dec_tuned, k->pick.has_pp, k->pick.pp_default,
                  (unsigned long long)size, (unsigned long long)h[0], (unsigned long long)h[1], key);
    *bytes += size;
    return bj_aot_item_add(it, BJ_AOT_E_PACKED, key, size ? (const void *)k->packed : (const void *)"", size, err);
}

/* The plan's picks and packed weights (bitjitc packs them: bj_pipeline_opts.pack). */
static bj_status bj_aot_add_plan(bj_aot_items *it, const bj_graph *g, const bj_plan *p, uint64_t *bytes, bj_error *err) {
    if (!p->packed) return BJ_FAIL(err, BJ_E_INTERNAL, "the plan's weights are not packed (run pack-weights with pack)");
    bj_aot_buf b = { 0 };
    bj_status st = BJ_OK;
    for (uint32_t i = 0; i < g->n_nodes && i < p->n_nodes && st == BJ_OK; i++)
        if (bj_aot_is_matmul(&g->nodes[i]) && p->kern[i].set) st = bj_aot_add_pick(it, &b, g, p, i, bytes, err);
    if (st != BJ_OK) { free(b.p); return st; }
    if (!b.p) bj_aot_puts(&b, ""); /* no matmuls: an empty plan */
    return bj_aot_item_buf(it, BJ_AOT_E_PLAN, "plan", &b, err);
}

/* Where a GGUF's metadata ends: after its last key's value (the tensor infos follow). */
static uint64_t bj_aot_gguf_meta_end(const bj_gguf *f) {
    static const uint8_t sizes[BJ_GGUF_VTYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    if (!f->n_kv) return 24;
    const bj_gguf_kv *kv = &f->kv[f->n_kv - 1];
    const uint8_t *end = kv->data;
    if (kv->type == BJ_GGUF_STRING) end += kv->len;
    else if (kv->type != BJ_GGUF_ARRAY) end += sizes[kv->type];
    else if (kv->arr_type != BJ_GGUF_STRING) end += kv->n * sizes[kv->arr_type];
    else if (kv->n) end = (const uint8_t *)kv->strs[kv->n - 1].s + kv->strs[kv->n - 1].len;
    return (uint64_t)(end - f->base);
}

/* A GGUF model's header and metadata with no tensors (a vocab-only GGUF): its tokenizer. */
static bj_status bj_aot_add_gguf(bj_aot_items *it, const bj_gguf *f, bj_error *err) {
    if (!f) return BJ_OK;
    uint64_t n = bj_aot_gguf_meta_end(f);
    char *img = malloc((size_t)n + 1);
    if (!img) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the GGUF metadata (%llu bytes)", (unsigned long long)n);
    memcpy(img, f->base, (size_t)n);
    memset(img + 8, 0, 8); /* tensor count 0 */
    if (it->n_owned == (int)BJ_COUNTOF(it->owned)) { free(img); return BJ_FAIL(err, BJ_E_INTERNAL, "too many texts"); }
    it->owned[it->n_owned++] = img;
    return bj_aot_item_add(it, BJ_AOT_E_GGUF, "metadata.gguf", img, n, err);
}

static bool bj_aot_has_weight(const bj_aot_items *it, const char *name) {
    for (size_t i = 0; i < it->n; i++)
        if (it->v[i].kind == BJ_AOT_E_WEIGHT && !strcmp(it->v[i].name, name)) return true;
    return false;
}

static bj_status bj_aot_add_weights(bj_aot_items *it, const bj_graph *g, uint64_t *bytes, bj_error *err) {
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op != BJ_OP_WEIGHT || bj_aot_has_weight(it, n->name)) continue;
        if (!n->data) return BJ_FAIL(err, BJ_E_INVALID, "weight %%%u '%s' has no data bound", i, n->name);
        BJ_TRY(bj_aot_item_add(it, BJ_AOT_E_WEIGHT, n->name, n->data, n->nbytes, err));
        *bytes += n->nbytes;
    }
    return BJ_OK;
}

/* The model's small files: config for the runtime's model description, the tokenizer. */
static bj_status bj_aot_add_files(bj_aot_items *it, const char *dir, bj_error *err) {
    static const char *const files[] = { "config.json", "tokenizer.json", "tokenizer_config.json",
                                         "generation_config.json", "tokenizer.model" };
    char spm[4096]; /* a SentencePiece tokenizer.model (LLaMA, 1bitLLM) stands in for tokenizer.json */
    bool have_spm = dir && bj_path_join(spm, sizeof spm, dir, "tokenizer.model", err) == BJ_OK && access(spm, R_OK) == 0;
    for (size_t i = 0; dir && i < BJ_COUNTOF(files); i++) {
        char path[4096];
        BJ_TRY(bj_path_join(path, sizeof path, dir, files[i], err));
        if (access(path, R_OK) != 0) {
            if (i == 0 || (i == 1 && !have_spm))
                return BJ_FAIL(err, BJ_E_IO, "%s: cannot read it (the library embeds it): %s", path, strerror(errno));
            continue;
        }
        char *text;
        size_t len;
        BJ_TRY(bj_read_file(path, &text, &len, err));
        BJ_TRY(bj_aot_item_text(it, BJ_AOT_E_FILE, files[i], text, err));
        it->v[it->n - 1].size = len;
    }
    return BJ_OK;
}

static void bj_aot_le(bj_aot_buf *b, uint64_t v, int bytes) {
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    bj_aot_put(b, tmp, (size_t)bytes);
}

static uint64_t bj_aot_align_of(const bj_aot_item *e) { return e->kind == BJ_AOT_E_PACKED ? BJ_AOT_PAGE : 64; }

/* The bundle's head (header, entry table, names) into b; each item's data offset into off[];
 * the bundle's total size into *total. The data follow, each at its offset (bj_aot_write_bundle). */
static bj_status bj_aot_serialize(const bj_aot_items *it, bj_aot_buf *b, uint64_t *off, uint64_t *total, bj_error *err) {
    uint64_t pos = BJ_AOT_HEADER_SIZE + (uint64_t)it->n * BJ_AOT_ENTRY_SIZE, name_off = pos;
    for (size_t i = 0; i < it->n; i++) pos += strlen(it->v[i].name);
    for (size_t i = 0; i < it->n; i++) {
        uint64_t a = bj_aot_align_of(&it->v[i]);
        off[i] = (pos + a - 1) / a * a;
        pos = off[i] + it->v[i].size;
    }
    *total = pos;
    bj_aot_put(b, BJ_AOT_MAGIC, 8);
    bj_aot_le(b, BJ_AOT_VERSION, 4);
    bj_aot_le(b, it->n, 4);
    bj_aot_le(b, pos, 8);
    for (size_t i = 0; i < it->n; i++) {
        size_t nl = strlen(it->v[i].name);
        bj_aot_le(b, it->v[i].kind, 4);
        bj_aot_le(b, nl, 4);
        bj_aot_le(b, name_off, 8);
        bj_aot_le(b, off[i], 8);
        bj_aot_le(b, it->v[i].size, 8);
        name_off += nl;
    }
    for (size_t i = 0; i < it->n; i++) bj_aot_puts(b, it->v[i].name);
    if (b->oom) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the library's entry table");
    return BJ_OK;
}

static bj_status bj_aot_items_of(const bj_graph *g, const bj_aot_set *s, const bj_aot_opts *o, bj_aot_items *it,
                                 bj_aot_report *r, bj_error *err) {
    char *ir = NULL;
    bj_status st = bj_aot_add_target(it, s, o, err);
    if (st == BJ_OK) st = bj_ir_print_str(g, &ir, err);
    if (st == BJ_OK) st = bj_aot_item_text(it, BJ_AOT_E_IR, "graph", ir, err);
    if (st == BJ_OK) st = bj_aot_add_config(it, o->cfg, err);
    if (st == BJ_OK) st = bj_aot_add_plan(it, g, o->plan, &r->packed_bytes, err);
    if (st == BJ_OK) st = bj_aot_add_weights(it, g, &r->weight_bytes, err);
    if (st == BJ_OK) st = bj_aot_add_files(it, o->model_dir, err);
    if (st == BJ_OK) st = bj_aot_add_gguf(it, o->gguf, err);
    return st;
}

/* ---- files, temporary directory, the C compiler driver ------------------------------------ */
static bj_status bj_aot_write_fd(int fd, const char *path, const void *data, size_t size, bj_error *err) {
    const char *p = data;
    while (size) {
        ssize_t w = write(fd, p, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return BJ_FAIL(err, BJ_E_IO, "%s: write failed: %s", path, strerror(errno));
        p += w;
        size -= (size_t)w;
    }
    return BJ_OK;
}

/* ---- interruption (bj_aot_interrupt) ----------------------------------------------------------- */
static volatile sig_atomic_t bj_aot_stopped; /* a signal asked the build to stop */
static volatile sig_atomic_t bj_aot_active;  /* a build or file write with temporary state is running */
static volatile sig_atomic_t bj_aot_child;   /* the C compiler's pid while it runs, else 0 */

bool bj_aot_interrupt(void) {
    bj_aot_stopped = 1;
    pid_t c = (pid_t)bj_aot_child;
    if (c > 0) kill(c, SIGTERM);
    return bj_aot_active;
}

static bj_status bj_aot_check_stop(bj_error *err) {
    return bj_aot_stopped ? BJ_FAIL(err, BJ_E_IO, "interrupted by a signal (temporary files removed)") : BJ_OK;
}

/* A fresh temporary file name next to path (created, empty): "<path>.tmp-XXXXXX". */
static bj_status bj_aot_temp_next_to(const char *path, char *tmp, size_t cap, int *fd, bj_error *err) {
    if ((size_t)snprintf(tmp, cap, "%s.tmp-XXXXXX", path) >= cap)
        return BJ_FAIL(err, BJ_E_INVALID, "%s: path too long", path);
    *fd = mkstemp(tmp);
    if (*fd < 0) return BJ_FAIL(err, BJ_E_IO, "%s: cannot create a file there: %s", path, strerror(errno));
    return BJ_OK;
}

static bj_status bj_aot_commit(const char *tmp, const char *path, bj_error *err) {
    if (rename(tmp, path) == 0) return BJ_OK;
    int e = errno;
    unlink(tmp);
    return BJ_FAIL(err, BJ_E_IO, "%s: cannot write it: %s", path, strerror(e));
}

bj_status bj_aot_write_file(const char *path, const void *data, size_t size, bj_error *err) {
    char tmp[4200];
    int fd = -1;
    bj_aot_active = 1;
    bj_status st = bj_aot_check_stop(err);
    if (st == BJ_OK) st = bj_aot_temp_next_to(path, tmp, sizeof tmp, &fd, err);
    if (st != BJ_OK) { bj_aot_active = 0; return st; }
    st = bj_aot_write_fd(fd, tmp, data, size, err);
    if (st == BJ_OK) st = bj_aot_check_stop(err);
    if (st == BJ_OK) fchmod(fd, 0644); /* mkstemp made it 0600 */
    if (close(fd) != 0 && st == BJ_OK) st = BJ_FAIL(err, BJ_E_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (st != BJ_OK) unlink(tmp);
    else st = bj_aot_commit(tmp, path, err);
    bj_aot_active = 0;
    return st;
}

typedef struct bj_aot_work {
    char dir[4096];
    char **files;  /* paths created in dir, removed at the end */
    size_t n_files;
} bj_aot_work;

static bj_status bj_aot_work_open(bj_aot_work *w, bj_error *err) {
    memset(w, 0, sizeof *w);
    const char *t = getenv("TMPDIR");
    snprintf(w->dir, sizeof w->dir, "%s/bitjitc-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(w->dir)) return BJ_FAIL(err, BJ_E_IO, "%s: cannot create a temporary directory: %s", w->dir, strerror(errno));
    return BJ_OK;
}

/* Removes the work directory: our files, and whatever the C compiler left there (it runs with
 * TMPDIR set to it, and one stopped by a signal may leave its temporary files). */
static void bj_aot_work_close(bj_aot_work *w) {
    for (size_t i = 0; i < w->n_files; i++) { unlink(w->files[i]); free(w->files[i]); }
    free(w->files);
    if (!w->dir[0]) return;
    DIR *d = opendir(w->dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[4400];
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            (size_t)snprintf(path, sizeof path, "%s/%s", w->dir, e->d_name) < sizeof path)
            unlink(path);
    }
    if (d) closedir(d);
    rmdir(w->dir);
}

/* Writes a file named name in the work directory; its path into path. */
static bj_status bj_aot_work_file(bj_aot_work *w, const char *name, const void *data, size_t size, char *path,
                                  size_t cap, bj_error *err) {
    BJ_TRY(bj_path_join(path, cap, w->dir, name, err));
    char **f = realloc(w->files, (w->n_files + 1) * sizeof *f);
    if (!f) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    w->files = f;
    if (!(f[w->n_files] = strdup(path))) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    w->n_files++;
    if (!data) return BJ_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return BJ_FAIL(err, BJ_E_IO, "%s: cannot create: %s", path, strerror(errno));
    bj_status st = bj_aot_write_fd(fd, path, data, size, err);
    close(fd);
    return st;
}

static const char *bj_aot_cc(void) {
    const char *v = getenv("BITJIT_CC");
    if (!v || !*v) v = getenv("CC");
    return v && *v ? v : "cc";
}

/* Runs argv (argv[0] from PATH) with its output in log; BJ_E_IO quoting the log on failure. */
static bj_status bj_aot_spawn(char *const argv[], const char *log, const char *tmpdir, bj_error *err) {
    BJ_TRY(bj_aot_check_stop(err));
    pid_t pid = fork();
    if (pid < 0) return BJ_FAIL(err, BJ_E_IO, "cannot start %s: %s", argv[0], strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        setenv("TMPDIR", tmpdir, 1); /* the compiler's own temporary files go where ours are removed */
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run '%s': %s (set $BITJIT_CC or $CC to a C compiler driver)\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    bj_aot_child = pid;
    if (bj_aot_stopped) kill(pid, SIGTERM); /* the signal came between fork and the line above */
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            bj_aot_child = 0;
            return BJ_FAIL(err, BJ_E_IO, "waiting for %s: %s", argv[0], strerror(errno));
        }
    bj_aot_child = 0;
    BJ_TRY(bj_aot_check_stop(err));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return BJ_OK;
    char *text = NULL;
    size_t len = 0;
    bj_error ignore = { 0 };
    bj_read_file(log, &text, &len, &ignore);
    bj_status st = BJ_FAIL(err, BJ_E_IO, "%s %s failed (status %d): %.700s", argv[0], argv[1],
                           WIFEXITED(status) ? WEXITSTATUS(status) : -1, text ? text : "");
    free(text);
    return st;
}

/* The assembly stub that places the bundle in .rodata under BJ_AOT_BUNDLE_SYM. */
static char *bj_aot_stub_text(const char *bundle_path) {
    bj_aot_buf b = { 0 };
    bj_aot_printf(&b,
                  "# bitjit AOT data: the bundle of compiler/aot.h, included as raw bytes.\n"
                  "\t.section .rodata.bitjit,\"a\",@progbits\n"
                  "\t.p2align 12\n" /* BJ_AOT_PAGE: packed weights on pages of their own */
                  "\t.globl %s\n"
                  "\t.type %s,@object\n"
                  "%s:\n"
                  "\t.incbin \"%s\"\n"
                  "\t.size %s, .-%s\n"
                  "\t.section .note.GNU-stack,\"\",@progbits\n",
                  BJ_AOT_BUNDLE_SYM, BJ_AOT_BUNDLE_SYM, BJ_AOT_BUNDLE_SYM, bundle_path, BJ_AOT_BUNDLE_SYM,
                  BJ_AOT_BUNDLE_SYM);
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

/* Streams the bundle to fd: its head, then every item's data at its offset (zeros between). */
static bj_status bj_aot_write_bundle(int fd, const char *path, const bj_aot_items *it, bj_error *err) {
    static const char zeros[BJ_AOT_PAGE] = { 0 };
    bj_aot_buf head = { 0 };
    uint64_t *off = calloc(it->n + 1, sizeof *off), total = 0, pos;
    bj_status st = off ? bj_aot_serialize(it, &head, off, &total, err) : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    if (st == BJ_OK) st = bj_aot_write_fd(fd, path, head.p, head.n, err);
    pos = head.n;
    for (size_t i = 0; i < it->n && st == BJ_OK; i++) {
        if (off[i] > pos) st = bj_aot_write_fd(fd, path, zeros, (size_t)(off[i] - pos), err);
        if (st == BJ_OK) st = bj_aot_write_fd(fd, path, it->v[i].data, (size_t)it->v[i].size, err);
        if (st == BJ_OK) st = bj_aot_check_stop(err);
        pos = off[i] + it->v[i].size;
    }
    free(head.p);
    free(off);
    return st;
}

/* Writes the bundle and its stub, assembles the stub; the object's path into obj. */
static bj_status bj_aot_data_object(bj_aot_work *w, const bj_aot_items *it, char *obj, size_t cap, bj_error *err) {
    char bin[4200], src[4200], log[4200];
    BJ_TRY(bj_aot_work_file(w, "bundle.bin", NULL, 0, bin, sizeof bin, err));
    int fd = open(bin, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return BJ_FAIL(err, BJ_E_IO, "%s: cannot create: %s", bin, strerror(errno));
    bj_status st = bj_aot_write_bundle(fd, bin, it, err);
    if (close(fd) != 0 && st == BJ_OK) st = BJ_FAIL(err, BJ_E_IO, "%s: close failed: %s", bin, strerror(errno));
    BJ_TRY(st);
    if (strchr(bin, '"') || strchr(bin, '\\')) return BJ_FAIL(err, BJ_E_INVALID, "%s: unusable temporary path", bin);
    char *stub = bj_aot_stub_text(bin);
    if (!stub) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    st = bj_aot_work_file(w, "bundle.s", stub, strlen(stub), src, sizeof src, err);
    free(stub);
    BJ_TRY(st);
    BJ_TRY(bj_aot_work_file(w, "bundle.o", NULL, 0, obj, cap, err));
    BJ_TRY(bj_aot_work_file(w, "cc.log", NULL, 0, log, sizeof log, err));
    char *argv[] = { (char *)bj_aot_cc(), "-c", src, "-o", obj, NULL };
    return bj_aot_spawn(argv, log, w->dir, err);
}

/* Compiles every kernel to an object file in the work directory; paths into objs[1..]. */
static bj_status bj_aot_kernel_objects(bj_aot_work *w, const bj_aot_set *s, char **objs, uint64_t *code,
                                       bj_error *err) {
    for (size_t i = 0; i < s->n; i++) {
        bj_cg_object o = { 0 };
        char name[64], path[4200];
        BJ_TRY(bj_aot_check_stop(err));
        BJ_TRY(bj_cg_compile(&s->tgt, &s->k[i].desc, s->k[i].t8, &o, NULL, err));
        snprintf(name, sizeof name, "%s.o", o.sym);
        bj_status st = bj_aot_work_file(w, name, o.data, o.size, path, sizeof path, err);
        *code += o.size;
        bj_cg_object_free(&o);
        BJ_TRY(st);
        if (!(objs[i + 1] = strdup(path))) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    }
    return BJ_OK;
}

/* cc -shared (so) or cc -r (obj) of the objects into a temp file next to out, then rename. */
static bj_status bj_aot_link(bj_aot_work *w, bj_aot_emit what, char **objs, size_t n_objs, const char *out,
                             bj_error *err) {
    char tmp[4200], log[4200];
    int fd = -1;
    BJ_TRY(bj_aot_temp_next_to(out, tmp, sizeof tmp, &fd, err));
    close(fd);
    bj_status st = bj_aot_work_file(w, "link.log", NULL, 0, log, sizeof log, err);
    char **argv = calloc(n_objs + 8, sizeof *argv);
    if (st == BJ_OK && !argv) st = BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    if (st == BJ_OK) {
        size_t a = 0;
        argv[a++] = (char *)bj_aot_cc();
        argv[a++] = what == BJ_AOT_EMIT_SO ? "-shared" : "-r";
        if (what == BJ_AOT_EMIT_OBJ) argv[a++] = "-nostdlib";
        argv[a++] = "-o";
        argv[a++] = tmp;
        for (size_t i = 0; i < n_objs; i++) argv[a++] = objs[i];
        argv[a] = NULL;
        st = bj_aot_spawn(argv, log, w->dir, err);
    }
    free(argv);
    if (st != BJ_OK) { unlink(tmp); return st; }
    chmod(tmp, what == BJ_AOT_EMIT_SO ? 0755 : 0644);
    return bj_aot_commit(tmp, out, err);
}

static bj_status bj_aot_build(const bj_graph *g, const bj_aot_set *s, const bj_aot_opts *o, bj_aot_emit what,
                              const char *out, bj_aot_report *r, bj_error *err) {
    bj_aot_work w;
    bj_aot_active = 1;
    bj_status st0 = bj_aot_check_stop(err);
    if (st0 == BJ_OK) st0 = bj_aot_work_open(&w, err);
    if (st0 != BJ_OK) { bj_aot_active = 0; return st0; }
    bj_aot_items it = { 0 };
    char **objs = calloc(s->n + 1, sizeof *objs), data_obj[4200];
    bj_status st = objs ? BJ_OK : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    if (st == BJ_OK) st = bj_aot_items_of(g, s, o, &it, r, err);
    if (st == BJ_OK) st = bj_aot_check_stop(err);
    if (st == BJ_OK) st = bj_aot_data_object(&w, &it, data_obj, sizeof data_obj, err);
    bj_aot_items_free(&it);
    if (st == BJ_OK) st = bj_aot_kernel_objects(&w, s, objs, &r->code_bytes, err);
    if (st == BJ_OK) {
        objs[0] = data_obj;
        st = bj_aot_link(&w, what, objs, s->n + 1, out, err);
    }
    for (size_t i = 1; objs && i <= s->n; i++) free(objs[i]);
    free(objs);
    bj_aot_work_close(&w);
    bj_aot_active = 0;
    return st;
}

bj_status bj_aot_emit_file(const bj_graph *g, const bj_aot_opts *o, bj_aot_emit what, const char *out_path,
                           bj_aot_report *r, bj_error *err) {
    bj_aot_report dummy;
    if (!r) r = &dummy;
    memset(r, 0, sizeof *r);
    if (what != BJ_AOT_EMIT_OBJ && what != BJ_AOT_EMIT_SO)
        return BJ_FAIL(err, BJ_E_INVALID, "emit: ir, llvm and asm are text, not files");
    double t0 = bj_aot_now_ms();
    bj_aot_set s;
    BJ_TRY(bj_aot_collect(&s, g, o, err));
    bj_status st = bj_aot_build(g, &s, o, what, out_path, r, err);
    bj_aot_fill_report(&s, r);
    r->compile_ms = bj_aot_now_ms() - t0;
    bj_aot_set_free(&s);
    return st;
}
