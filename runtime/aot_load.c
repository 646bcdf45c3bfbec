/* runtime/aot_load.c -- opening a bitjitc library (layout: compiler/aot.h).
 *
 * dlopen maps the library (its kernels have no constructors, so nothing generated runs);
 * the bundle symbol's size comes from its ELF symbol (dladdr1), and every entry offset is
 * checked against it before use. Then, in this order: the target is rebuilt from its
 * key=value entry and checked against the host (bj_cg_target_check_host: a refusal names the
 * missing features), the model description is read from its key=value entry, the graph IR is
 * parsed, each WEIGHT node is bound by name to its entry (the data stays in the mapping, read
 * in place), the plan's lines are parsed and checked (descriptors valid for the target, each
 * matmul's packed weights present at a page boundary with the size its layout has), and the
 * tokenizer is loaded: an HF model's from its embedded files, written for that into a private
 * temporary directory that is removed at once (the tokenizer loader reads a directory), a GGUF
 * model's from its embedded metadata (a vocab-only GGUF image).
 *
 * The JIT engine then runs the pass pipeline over the graph with the library's exact target,
 * kernel_lookup = dlsym and the library as its plan source (bj_plan_source): select-kernels
 * takes each matmul's kernels as the library was built with them and pack-weights takes its
 * packed weights from the mapping, checking their XXH3 against the plan as the packed-weight
 * cache checks its entries. So loading compiles nothing and packs nothing. */
#include "runtime/aot_load.h"

#include "codegen/codegen.h"
#include "compiler/aot.h"
#include "frontends/gguf.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct bj_aot_ent {
    uint32_t kind;
    const char *name;
    size_t name_len;
    const uint8_t *data;
    uint64_t size;
} bj_aot_ent;

/* One lowbit matmul of the plan entry: its picks and its packed weights in the mapping. */
typedef struct bj_aot_pick {
    char key[256];
    bj_cg_tune_pick pick;
    uint64_t size, hash[2];
    const uint8_t *data;
    atomic_bool checked;   /* its bytes' hash was found right (by any engine over the library) */
} bj_aot_pick;

struct bj_aot_lib {
    void *handle;
    char *path;
    bj_cg_target tgt;
    bj_aot_ent *ents;
    uint32_t n_ents;
    bj_aot_pick *picks;
    size_t n_picks;
    bj_plan_source source;
};

bool bj_aot_is_library(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    unsigned char m[4] = { 0 };
    bool elf = read(fd, m, 4) == 4 && m[0] == 0x7f && m[1] == 'E' && m[2] == 'L' && m[3] == 'F';
    close(fd);
    return elf;
}

/* ---- the bundle ------------------------------------------------------------------------- */
/* Every part of the ELF file that dlopen maps lies inside the file: a library cut short (a
 * copy that failed half-way) would otherwise map pages past its end, and the first read of one
 * is SIGBUS. Checked on the file as it is now: the ELF header, the program headers, every
 * PT_LOAD segment's bytes, the section headers. */
static bj_status bj_aot_check_elf(const char *path, bj_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return BJ_FAIL(err, BJ_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    ElfW(Ehdr) eh;
    bool ok = fstat(fd, &st) == 0 && pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh &&
              eh.e_phentsize == sizeof(ElfW(Phdr)) && eh.e_phnum > 0 && eh.e_phnum < 4096;
    uint64_t size = ok ? (uint64_t)st.st_size : 0, end = 0;
    ok = ok && !bj_add_overflow(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(ElfW(Phdr)), &end) && end <= size;
    ok = ok && (eh.e_shoff == 0 || (!bj_add_overflow(eh.e_shoff, (uint64_t)eh.e_shnum * eh.e_shentsize, &end) && end <= size));
    for (int i = 0; ok && i < eh.e_phnum; i++) {
        ElfW(Phdr) ph;
        ok = pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) == (ssize_t)sizeof ph;
        if (ok && ph.p_type == PT_LOAD) ok = !bj_add_overflow(ph.p_offset, ph.p_filesz, &end) && end <= size;
    }
    close(fd);
    return ok ? BJ_OK : BJ_FAIL(err, BJ_E_FORMAT, "%s: the library is truncated or damaged (its ELF headers name "
                                "bytes past its %llu bytes): rebuild or copy it again", path, (unsigned long long)size);
}

static bj_status bj_aot_open_handle(bj_aot_lib *lib, const uint8_t **base, size_t *size, bj_error *err) {
    BJ_TRY(bj_aot_check_elf(lib->path, err));
    char *real = realpath(lib->path, NULL); /* dlopen needs a '/' to not search the library path */
    if (!real) return BJ_FAIL(err, BJ_E_IO, "%s: %s", lib->path, strerror(errno));
    lib->handle = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    free(real);
    if (!lib->handle) return BJ_FAIL(err, BJ_E_FORMAT, "%s: cannot load the library: %s", lib->path, dlerror());
    void *sym = dlsym(lib->handle, BJ_AOT_BUNDLE_SYM);
    Dl_info info;
    const ElfW(Sym) *es = NULL;
    if (!sym || !dladdr1(sym, &info, (void **)&es, RTLD_DL_SYMENT) || !es)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: not a bitjitc library (no %s)", lib->path, BJ_AOT_BUNDLE_SYM);
    *base = sym;
    *size = es->st_size;
    return BJ_OK;
}

static bj_status bj_aot_parse_entry(bj_aot_lib *lib, const uint8_t *base, size_t size, uint32_t i, bj_error *err) {
    const uint8_t *e = base + BJ_AOT_HEADER_SIZE + (size_t)i * BJ_AOT_ENTRY_SIZE;
    uint32_t kind = bj_rd32(e), nl = bj_rd32(e + 4);
    uint64_t no = bj_rd64(e + 8), doff = bj_rd64(e + 16), ds = bj_rd64(e + 24), end;
    if (bj_add_overflow(no, nl, &end) || end > size || bj_add_overflow(doff, ds, &end) || end > size)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: bundle entry %u lies outside its %zu bytes", lib->path, i, size);
    if (kind == BJ_AOT_E_PACKED && doff % BJ_AOT_PAGE)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: bundle entry %u (packed weights) is not page-aligned", lib->path, i);
    lib->ents[i] = (bj_aot_ent){ kind, (const char *)base + no, nl, base + doff, ds };
    return BJ_OK;
}

static bj_status bj_aot_parse_bundle(bj_aot_lib *lib, const uint8_t *base, size_t size, bj_error *err) {
    if (size < BJ_AOT_HEADER_SIZE || memcmp(base, BJ_AOT_MAGIC, 8))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: bad bitjitc bundle header", lib->path);
    uint32_t ver = bj_rd32(base + 8), n = bj_rd32(base + 12);
    if (ver != BJ_AOT_VERSION)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: bundle version %u, this bitjit reads version %u (rebuild it)",
                       lib->path, ver, BJ_AOT_VERSION);
    if (bj_rd64(base + 16) != size || n > (size - BJ_AOT_HEADER_SIZE) / BJ_AOT_ENTRY_SIZE)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: bundle size or entry count is inconsistent", lib->path);
    if (!(lib->ents = calloc(n ? n : 1, sizeof *lib->ents))) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    lib->n_ents = n;
    for (uint32_t i = 0; i < n; i++) BJ_TRY(bj_aot_parse_entry(lib, base, size, i, err));
    return BJ_OK;
}

static const bj_aot_ent *bj_aot_find(const bj_aot_lib *lib, uint32_t kind, const char *name) {
    size_t n = strlen(name);
    for (uint32_t i = 0; i < lib->n_ents; i++)
        if (lib->ents[i].kind == kind && lib->ents[i].name_len == n && !memcmp(lib->ents[i].name, name, n))
            return &lib->ents[i];
    return NULL;
}

/* ---- target ----------------------------------------------------------------------------- */
/* Value of "key=" in key=value lines, copied into buf (false when absent or too long). */
static bool bj_aot_kv(const bj_aot_ent *e, const char *key, char *buf, size_t cap) {
    size_t kl = strlen(key);
    const char *p = (const char *)e->data, *end = p + e->size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (len > kl && !memcmp(p, key, kl) && p[kl] == '=') {
            if (len - kl - 1 >= cap) return false;
            memcpy(buf, p + kl + 1, len - kl - 1);
            buf[len - kl - 1] = 0;
            return true;
        }
        p += len + 1;
    }
    return false;
}

static bj_status bj_aot_parse_target(bj_aot_lib *lib, bj_error *err) {
    const bj_aot_ent *e = bj_aot_find(lib, BJ_AOT_E_TARGET, "target");
    char flags[32], known[8], host[8];
    bj_cg_target *t = &lib->tgt;
    if (!e || !bj_aot_kv(e, "cpu", t->cpu, sizeof t->cpu) || !bj_aot_kv(e, "features", t->features, sizeof t->features) ||
        !bj_aot_kv(e, "flags", flags, sizeof flags) || !bj_aot_kv(e, "features_known", known, sizeof known) ||
        !bj_aot_kv(e, "is_host", host, sizeof host))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: the library's target entry is missing or incomplete", lib->path);
    t->flags = (uint32_t)strtoul(flags, NULL, 10);
    t->features_known = atoi(known) != 0;
    t->is_host = atoi(host) != 0;
    return BJ_OK;
}

static bj_status bj_aot_read_target(bj_aot_lib *lib, bj_error *err) {
    BJ_TRY(bj_aot_parse_target(lib, err));
    bj_status st = bj_cg_target_check_host(&lib->tgt, err);
    if (st != BJ_OK) bj_error_prefix(err, "%s: refusing to run", lib->path);
    return st;
}

/* ---- graph and weights ------------------------------------------------------------------- */
static bj_status bj_aot_bind(const bj_aot_lib *lib, bj_graph *g, bj_error *err) {
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bj_node *n = &g->nodes[i];
        if (n->op != BJ_OP_WEIGHT) continue;
        const bj_aot_ent *e = bj_aot_find(lib, BJ_AOT_E_WEIGHT, n->name);
        if (!e) return BJ_FAIL(err, BJ_E_FORMAT, "%s: weight '%s' of the graph is not in the library", lib->path, n->name);
        n->data = e->data;
        n->nbytes = e->size;
    }
    return BJ_OK;
}

static bj_status bj_aot_graph(const bj_aot_lib *lib, bj_graph *g, bj_error *err) {
    const bj_aot_ent *e = bj_aot_find(lib, BJ_AOT_E_IR, "graph");
    if (!e) return BJ_FAIL(err, BJ_E_FORMAT, "%s: the library has no graph", lib->path);
    bj_status st = bj_ir_parse(g, (const char *)e->data, e->size, err);
    if (st != BJ_OK) return bj_error_prefix(err, "%s: embedded graph", lib->path);
    BJ_TRY(bj_aot_bind(lib, g, err));
    st = bj_ir_verify(g, err);
    if (st != BJ_OK) bj_error_prefix(err, "%s: embedded graph", lib->path);
    return st;
}

/* ---- config and tokenizer ---------------------------------------------------------------- */
/* key's integer value from e into *v; false when absent or not a whole number. */
static bool bj_aot_kv_int(const bj_aot_ent *e, const char *key, int64_t *v) {
    char buf[64], *end;
    if (!bj_aot_kv(e, key, buf, sizeof buf)) return false;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    *v = x;
    return !errno && end != buf && !*end;
}

static bool bj_aot_kv_float(const bj_aot_ent *e, const char *key, double *v) {
    char buf[64], *end;
    if (!bj_aot_kv(e, key, buf, sizeof buf)) return false;
    *v = strtod(buf, &end);
    return end != buf && !*end;
}

/* The model description (compiler/aot.c bj_aot_add_config writes it). */
static bj_status bj_aot_config(const bj_aot_lib *lib, bj_model_config *c, bj_error *err) {
    const bj_aot_ent *e = bj_aot_find(lib, BJ_AOT_E_CONFIG, "model");
    memset(c, 0, sizeof *c);
    static const char *const ik[] = { "hidden", "intermediate", "n_layer", "n_head", "n_kv_head", "head_dim", "vocab",
                                      "max_seq", "bos_id", "eos_id", "act", "tie_embeddings", "linear_class",
                                      "online_quant", "weight_quant", "block", "hf_names", "proj_norm" };
    int64_t v[BJ_COUNTOF(ik)];
    bool ok = e && bj_aot_kv(e, "arch", c->arch, sizeof c->arch) && bj_aot_kv_float(e, "rms_eps", &c->rms_eps) &&
              bj_aot_kv_float(e, "rope_theta", &c->rope_theta) && bj_aot_kv_float(e, "proj_norm_eps", &c->proj_norm_eps);
    for (size_t i = 0; ok && i < BJ_COUNTOF(ik); i++) ok = bj_aot_kv_int(e, ik[i], &v[i]);
    if (!ok) return BJ_FAIL(err, BJ_E_FORMAT, "%s: the library's model description is missing or incomplete", lib->path);
    c->hidden = v[0], c->intermediate = v[1], c->n_layer = v[2], c->n_head = v[3], c->n_kv_head = v[4];
    c->head_dim = v[5], c->vocab = v[6], c->max_seq = v[7], c->bos_id = v[8], c->eos_id = v[9];
    c->act = (bj_act)v[10], c->tie_embeddings = v[11] != 0, c->linear_class = (bj_linear_class)v[12];
    c->online_quant = v[13] != 0, c->weight_quant = (bj_wquant)v[14], c->block = (bj_block)v[15];
    c->hf_names = (bj_hf_names)v[16], c->proj_norm = v[17] != 0;
    if (c->vocab < 1 || c->max_seq < 1)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: the library's model description has vocab %lld, context %lld", lib->path,
                       (long long)c->vocab, (long long)c->max_seq);
    return BJ_OK;
}

static bj_status bj_aot_put_file(const char *dir, const bj_aot_ent *e, bj_error *err) {
    char name[256], path[4200];
    if (e->name_len >= sizeof name || memchr(e->name, '/', e->name_len))
        return BJ_FAIL(err, BJ_E_FORMAT, "bad embedded file name");
    memcpy(name, e->name, e->name_len);
    name[e->name_len] = 0;
    BJ_TRY(bj_path_join(path, sizeof path, dir, name, err));
    FILE *f = fopen(path, "wb");
    if (!f) return BJ_FAIL(err, BJ_E_IO, "%s: %s", path, strerror(errno));
    bool ok = fwrite(e->data, 1, e->size, f) == e->size;
    if (fclose(f) != 0) ok = false;
    return ok ? BJ_OK : BJ_FAIL(err, BJ_E_IO, "%s: write failed", path);
}

static void bj_aot_rm_files(const bj_aot_lib *lib, const char *dir) {
    char path[4200];
    bj_error ignore;
    for (uint32_t i = 0; i < lib->n_ents; i++) {
        const bj_aot_ent *e = &lib->ents[i];
        if (e->kind != BJ_AOT_E_FILE || e->name_len >= 256) continue;
        char name[256];
        memcpy(name, e->name, e->name_len);
        name[e->name_len] = 0;
        if (bj_path_join(path, sizeof path, dir, name, &ignore) == BJ_OK) unlink(path);
    }
    rmdir(dir);
}

/* A GGUF model's tokenizer, from its metadata (a vocab-only GGUF image in the mapping). */
static bj_status bj_aot_tokenizer_gguf(const bj_aot_lib *lib, const bj_aot_ent *e, bj_tokenizer **tok, bj_error *err) {
    bj_gguf f;
    memset(&f, 0, sizeof f);
    bj_arena_init(&f.arena);
    char where[4200];
    snprintf(where, sizeof where, "%s:metadata.gguf", lib->path);
    bj_status st = bj_gguf_parse(&f, e->data, (size_t)e->size, where, err);
    if (st == BJ_OK) st = bj_tok_load_gguf(tok, &f, err);
    bj_gguf_close(&f);
    if (st != BJ_OK) bj_error_prefix(err, "%s: embedded tokenizer", lib->path);
    return st;
}

static bj_status bj_aot_tokenizer(const bj_aot_lib *lib, bj_tokenizer **tok, bj_error *err) {
    const bj_aot_ent *gg = bj_aot_find(lib, BJ_AOT_E_GGUF, "metadata.gguf");
    if (gg) return bj_aot_tokenizer_gguf(lib, gg, tok, err);
    const char *t = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bitjit-tok-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) return BJ_FAIL(err, BJ_E_IO, "%s: cannot create a temporary directory: %s", dir, strerror(errno));
    bj_status st = BJ_OK;
    for (uint32_t i = 0; i < lib->n_ents && st == BJ_OK; i++)
        if (lib->ents[i].kind == BJ_AOT_E_FILE) st = bj_aot_put_file(dir, &lib->ents[i], err);
    if (st == BJ_OK) st = bj_tok_load_hf(tok, dir, err);
    bj_aot_rm_files(lib, dir);
    if (st != BJ_OK) bj_error_prefix(err, "%s: embedded tokenizer", lib->path);
    return st;
}

/* ---- the plan ------------------------------------------------------------------------------ */
static bool bj_aot_unhex(const char *s, void *out, size_t n) {
    uint8_t *u = out;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1]) || sscanf(s + 2 * i, "%2x", &v) != 1)
            return false;
        u[i] = (uint8_t)v;
    }
    return true;
}

/* A descriptor of the plan: this ABI's, a lowbit matmul's, valid for the library's target. */
static bool bj_aot_desc_ok(const bj_aot_lib *lib, const bj_cg_kdesc *d) {
    bj_error ign = { 0 };
    return d->abi == BJ_CG_ABI_VERSION && d->kind == BJ_CG_KIND_MATMUL_T && bj_cg_kdesc_check(d, &lib->tgt, &ign) == BJ_OK;
}

/* One plan line (compiler/aot.h): picks, flags, size, hash, key; its packed entry found. */
static bool bj_aot_plan_line(const bj_aot_lib *lib, const char *line, size_t len, bj_aot_pick *p) {
    bj_cg_tune_pick *k = &p->pick;
    const size_t H = 2 * sizeof(bj_cg_kdesc) + 1; /* 64 hex digits and a space */
    if (len < 3 * H + 4 + 2 + 33 + 1) return false;
    if (!bj_aot_unhex(line, &k->def, sizeof k->def) || !bj_aot_unhex(line + H, &k->dec, sizeof k->dec) ||
        !bj_aot_unhex(line + 2 * H, &k->pp, sizeof k->pp))
        return false;
    const char *f = line + 3 * H, *end = line + len;
    for (int i = 0; i < 3; i++)
        if (f[i] != '0' && f[i] != '1') return false;
    if (f[3] != ' ') return false;
    k->dec_tuned = f[0] == '1', k->has_pp = f[1] == '1', k->pp_default = f[2] == '1';
    char num[32], hex[40], *e;
    int nn = 0;
    if (sscanf(f + 4, "%31s %39s %n", num, hex, &nn) != 2 || nn <= 0 || strlen(hex) != 32 || f + 4 + nn >= end) return false;
    p->size = strtoull(num, &e, 10);
    size_t kl = (size_t)(end - (f + 4 + nn));
    if (*e || kl >= sizeof p->key) return false;
    for (int i = 0; i < 2; i++) { /* two 16-digit numbers (aot.c writes them with %016llx) */
        char half[17];
        memcpy(half, hex + 16 * i, 16);
        half[16] = 0;
        for (int j = 0; j < 16; j++)
            if (!isxdigit((unsigned char)half[j])) return false;
        p->hash[i] = strtoull(half, NULL, 16);
    }
    memcpy(p->key, f + 4 + nn, kl);
    p->key[kl] = 0;
    if (!bj_aot_desc_ok(lib, &k->def) || !bj_aot_desc_ok(lib, &k->dec) || (k->has_pp && !bj_aot_desc_ok(lib, &k->pp)) ||
        bj_cg_packed_size(&k->dec) != p->size)
        return false;
    const bj_aot_ent *pe = bj_aot_find(lib, BJ_AOT_E_PACKED, p->key);
    if (!pe || pe->size != p->size) return false;
    p->data = pe->data;
    return true;
}

static bj_status bj_aot_plan(bj_aot_lib *lib, bj_error *err) {
    const bj_aot_ent *e = bj_aot_find(lib, BJ_AOT_E_PLAN, "plan");
    if (!e) return BJ_FAIL(err, BJ_E_FORMAT, "%s: the library has no plan", lib->path);
    const char *p = (const char *)e->data, *end = p + e->size;
    size_t n = 0;
    for (const char *q = p; q < end; q++) n += *q == '\n';
    if (!(lib->picks = calloc(n + 1, sizeof *lib->picks))) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!bj_aot_plan_line(lib, p, (size_t)(nl - p), &lib->picks[i]))
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: the library's plan is damaged at line %zu (rebuild the library)",
                           lib->path, i + 1);
        atomic_init(&lib->picks[i].checked, false);
        lib->n_picks++;
        p = nl + 1;
    }
    return BJ_OK;
}

static bj_aot_pick *bj_aot_pick_of(const bj_aot_lib *lib, const bj_graph *g, uint32_t node, bj_error *err) {
    const char *key = bj_aot_matmul_key(g, node);
    for (size_t i = 0; key && i < lib->n_picks; i++)
        if (!strcmp(lib->picks[i].key, key)) return &lib->picks[i];
    BJ_FAIL(err, BJ_E_FORMAT, "%s: the library's plan has no kernels for matmul %%%u (weight '%s')", lib->path, node,
            key ? key : "?");
    return NULL;
}

/* bj_plan_source.pick: the matmul's kernels as the library was built with them. */
static bj_status bj_aot_source_pick(void *ud, const bj_graph *g, uint32_t node, bj_cg_tune_pick *out, bj_error *err) {
    const bj_aot_lib *lib = ud;
    const bj_aot_pick *p = bj_aot_pick_of(lib, g, node, err);
    if (!p) return err->code;
    const bj_node *n = &g->nodes[node], *w = &g->nodes[n->op == BJ_OP_BITLINEAR ? n->in[2] : n->in[1]];
    if (w->shape.ndim != 2 || (int64_t)p->pick.dec.m != w->shape.d[0] || (int64_t)p->pick.dec.k != w->shape.d[1])
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: the plan's kernels for '%s' are %ux%u, the weight is not", lib->path, p->key,
                       p->pick.dec.m, p->pick.dec.k);
    *out = p->pick;
    return BJ_OK;
}

/* bj_plan_source.packed: the matmul's packed weights, read in place, their hash checked once. */
static bj_status bj_aot_source_packed(void *ud, const bj_graph *g, uint32_t node, const bj_cg_kdesc *d,
                                      const uint8_t **data, bj_error *err) {
    bj_aot_lib *lib = ud;
    bj_aot_pick *p = bj_aot_pick_of(lib, g, node, err);
    if (!p) return err->code;
    if (memcmp(d, &p->pick.dec, sizeof *d))
        return BJ_FAIL(err, BJ_E_INTERNAL, "%s: '%s' asked in another layout than the library's", lib->path, p->key);
    uint64_t h[2];
    if (!atomic_load(&p->checked)) {
        bj_cg_wcache_src_hash(p->data, (size_t)p->size, BJ_AOT_PACKED_HOW, h);
        if (h[0] != p->hash[0] || h[1] != p->hash[1])
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: the packed weights of '%s' are damaged (checksum mismatch): rebuild "
                           "the library", lib->path, p->key);
        atomic_store(&p->checked, true);
    }
    *data = p->data;
    return BJ_OK;
}

static bj_status bj_aot_model(bj_aot_lib *lib, bj_model *m, bj_error *err) {
    BJ_TRY(bj_aot_config(lib, &m->cfg, err));
    BJ_TRY(bj_aot_graph(lib, &m->graph, err));
    BJ_TRY(bj_aot_plan(lib, err));
    BJ_TRY(bj_aot_tokenizer(lib, &m->tok, err));
    if (bj_tok_vocab_size(m->tok) > m->cfg.vocab)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tokenizer has %d tokens but the model's vocab is %lld", lib->path,
                       bj_tok_vocab_size(m->tok), (long long)m->cfg.vocab);
    return (m->path = strdup(lib->path)) ? BJ_OK : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
}

bj_status bj_aot_load(bj_aot_lib **out, bj_model *m, const char *path, bj_error *err) {
    *out = NULL;
    memset(m, 0, sizeof *m);
    bj_arena_init(&m->st.arena);
    bj_aot_lib *lib = calloc(1, sizeof *lib);
    if (!lib || !(lib->path = strdup(path))) { free(lib); return BJ_FAIL(err, BJ_E_NOMEM, "out of memory"); }
    const uint8_t *base = NULL;
    size_t size = 0;
    bj_status st = bj_aot_open_handle(lib, &base, &size, err);
    if (st == BJ_OK) st = bj_aot_parse_bundle(lib, base, size, err);
    if (st == BJ_OK) st = bj_aot_read_target(lib, err); /* before anything could run its code */
    if (st == BJ_OK && (uintptr_t)base % BJ_AOT_PAGE)
        st = BJ_FAIL(err, BJ_E_FORMAT, "%s: the library's data is not page-aligned (rebuild it)", path);
    if (st == BJ_OK) st = bj_aot_model(lib, m, err);
    lib->source = (bj_plan_source){ .pick = bj_aot_source_pick, .packed = bj_aot_source_packed, .ud = lib };
    if (st != BJ_OK) {
        bj_model_free(m);
        bj_aot_close(lib);
        return st;
    }
    *out = lib;
    return BJ_OK;
}

bj_status bj_aot_check_bundle(const uint8_t *data, size_t size, bj_error *err) {
    bj_aot_lib lib = { .path = "bundle" };
    bj_model m;
    memset(&m, 0, sizeof m);
    bj_arena_init(&m.st.arena);
    bj_status st = bj_aot_parse_bundle(&lib, data, size, err);
    if (st == BJ_OK) st = bj_aot_parse_target(&lib, err);
    if (st == BJ_OK) st = bj_aot_config(&lib, &m.cfg, err);
    if (st == BJ_OK) st = bj_aot_graph(&lib, &m.graph, err);
    if (st == BJ_OK) st = bj_aot_plan(&lib, err);
    bj_model_free(&m);
    free(lib.picks);
    free(lib.ents);
    return st;
}

/* ---- kernels ------------------------------------------------------------------------------- */
static bj_status bj_aot_lookup(void *ud, const void *kdesc, const char *symbol, void **fn, bj_error *err) {
    const bj_aot_lib *lib = ud;
    const bj_cg_kdesc *d = kdesc;
    *fn = dlsym(lib->handle, symbol);
    if (!*fn)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: the library has no kernel %s (M=%u K=%u %s/%s); rebuild it with this bitjit",
                       lib->path, symbol, d->m, d->k, bj_cg_variant_name((bj_cg_variant)d->variant),
                       bj_cg_isa_name((bj_cg_isa)d->isa));
    return BJ_OK;
}

void bj_aot_jit_options(const bj_aot_lib *lib, bj_jit_options *o) {
    o->kernel_lookup = bj_aot_lookup;
    o->kernel_ud = (void *)lib;
    o->target = &lib->tgt;
    o->mcpu = o->mattr = NULL;
    o->no_cache = true;
    o->no_tune_db = true; /* the plan's kernels are the library's (its baked choices) */
    o->plan_source = &lib->source;
}

const char *bj_aot_cpu(const bj_aot_lib *lib) { return lib->tgt.cpu; }
const bj_cg_target *bj_aot_target(const bj_aot_lib *lib) { return &lib->tgt; }

bool bj_aot_meta(const bj_aot_lib *lib, const char *key, char *buf, size_t cap) {
    const bj_aot_ent *e = bj_aot_find(lib, BJ_AOT_E_META, "meta");
    return e && bj_aot_kv(e, key, buf, cap);
}

void bj_aot_close(bj_aot_lib *lib) {
    if (!lib) return;
    if (lib->handle) dlclose(lib->handle);
    free(lib->picks);
    free(lib->ents);
    free(lib->path);
    free(lib);
}
