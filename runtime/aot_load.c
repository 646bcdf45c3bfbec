/* runtime/aot_load.c -- opening a bitjitc library (layout: compiler/aot.h).
 *
 * dlopen maps the library (its kernels have no constructors, so nothing generated runs);
 * the bundle symbol's size comes from its ELF symbol (dladdr1), and every entry offset is
 * checked against it before use. Then, in this order: the target is rebuilt from its
 * key=value entry and checked against the host (bj_cg_target_check_host: a refusal names the
 * missing features), the graph IR is parsed, each WEIGHT node is bound by name to its entry
 * (the data stays in the mapping, read in place), config.json is parsed and the tokenizer is
 * loaded from its embedded files, written for that into a private temporary directory that
 * is removed at once (the tokenizer loader reads a directory; this keeps frontends/ as is).
 *
 * The JIT engine then runs the pass pipeline over the graph with the library's exact target
 * (select-kernels makes the same descriptors the library was built with) and kernel_lookup =
 * dlsym, so it compiles nothing. Its pack-weights pass still packs the weights at every load
 * (the library holds them in their file dtype, and loads with the packed-weight cache off):
 * see docs/architecture.md. */
#include "runtime/aot_load.h"

#include "codegen/codegen.h"
#include "compiler/aot.h"

#include <dlfcn.h>
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

struct bj_aot_lib {
    void *handle;
    char *path;
    bj_cg_target tgt;
    bj_aot_ent *ents;
    uint32_t n_ents;
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
static bj_status bj_aot_open_handle(bj_aot_lib *lib, const uint8_t **base, size_t *size, bj_error *err) {
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
static bj_status bj_aot_config(const bj_aot_lib *lib, bj_model_config *c, bj_error *err) {
    const bj_aot_ent *e = bj_aot_find(lib, BJ_AOT_E_FILE, "config.json");
    if (!e) return BJ_FAIL(err, BJ_E_FORMAT, "%s: the library has no config.json", lib->path);
    char where[4200];
    snprintf(where, sizeof where, "%s:config.json", lib->path);
    return bj_hf_config_parse(c, (const char *)e->data, e->size, where, err);
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

static bj_status bj_aot_tokenizer(const bj_aot_lib *lib, bj_tokenizer **tok, bj_error *err) {
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

static bj_status bj_aot_model(const bj_aot_lib *lib, bj_model *m, bj_error *err) {
    BJ_TRY(bj_aot_config(lib, &m->cfg, err));
    BJ_TRY(bj_aot_graph(lib, &m->graph, err));
    BJ_TRY(bj_aot_tokenizer(lib, &m->tok, err));
    if (bj_tok_vocab_size(m->tok) > m->cfg.vocab)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tokenizer has %d tokens but config.json vocab_size is %lld", lib->path,
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
    if (st == BJ_OK) st = bj_aot_model(lib, m, err);
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
    bj_model_free(&m);
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
    free(lib->ents);
    free(lib->path);
    free(lib);
}
