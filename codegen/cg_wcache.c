/* codegen/cg_wcache.c -- packed weights on disk, next to the kernel cache: the bytes
 * bj_cg_pack makes for one matrix, so a later start maps them instead of unpacking the model's
 * weights and packing them again (for the 2B4T shape: 2 G weights, seconds of work).
 *
 * An entry is keyed by the layout (variant, weight type, M, K: everything bj_cg_pack's output
 * depends on besides the values) and a 128-bit hash of the source tensor the caller computes
 * (its bytes, dtype and how it becomes ternary). File: a 4096-byte header, then the packed
 * bytes, so the payload is page aligned and is used in place through a read-only mmap.
 *
 * Invariants (as for kernels, cg_cache.c): an entry is trusted only when magic, format, header
 * hash, layout, source hash, size (checked against the file's real size) and the payload's
 * XXH3 all match; anything else is a miss, counted as corrupt and overwritten. Entries appear
 * only by rename of a complete temp file. A failure to write turns the cache off with a
 * warning; it never fails the caller. */
#include "codegen/cg_llvm.h"

#include <xxhash.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BJ_CG_WCACHE_MAGIC "BJWPACK1"
#define BJ_CG_WCACHE_FORMAT 1
#define BJ_CG_WCACHE_HDR 4096

typedef struct bj_cg_wcache_hdr {
    char magic[8];
    uint32_t format;
    uint32_t hdr_size;       /* BJ_CG_WCACHE_HDR: where the payload starts */
    uint8_t variant, wtype;  /* the layout ... */
    uint8_t reserved[6];     /* zero */
    uint32_t m, k;           /* ... and its shape */
    uint64_t src[2];         /* the caller's hash of the source tensor */
    uint64_t size;           /* payload bytes = bj_cg_packed_size */
    uint64_t payload_hash;   /* XXH3_64 of the payload */
    uint64_t hdr_hash;       /* XXH3_64 of every header byte before this field */
} bj_cg_wcache_hdr;
_Static_assert(sizeof(bj_cg_wcache_hdr) == 72, "packed-weight header layout is the file format");

/* Streamed in pieces (the same XXH3-128 as one call over the bytes), each piece of a mapped
 * model file given back once read (bj_fmap_release): the float head of 2B4T is 656 MB, which
 * a single pass would leave resident beside everything else until the caller released it. */
#define BJ_CG_HASH_PIECE ((size_t)16 << 20)

void bj_cg_wcache_src_hash(const void *data, size_t n, const char *how, uint64_t out[2]) {
    XXH64_hash_t seed = XXH3_64bits(how, strlen(how));
    XXH128_hash_t h;
    XXH3_state_t *st = n > BJ_CG_HASH_PIECE ? XXH3_createState() : NULL;
    if (!st || XXH3_128bits_reset_withSeed(st, seed) != XXH_OK) {
        h = XXH3_128bits_withSeed(data, n, seed);
    } else {
        for (size_t off = 0; off < n; off += BJ_CG_HASH_PIECE) {
            size_t len = n - off < BJ_CG_HASH_PIECE ? n - off : BJ_CG_HASH_PIECE;
            XXH3_128bits_update(st, (const uint8_t *)data + off, len);
            bj_fmap_release((const uint8_t *)data + off, len);
        }
        h = XXH3_128bits_digest(st);
    }
    XXH3_freeState(st);
    out[0] = h.low64;
    out[1] = h.high64;
}

/* What an entry's bytes are: a kernel layout (variant, wtype of a descriptor), or with
 * variant BJ_CG_WCACHE_RAW another derivation the caller names by kind (wtype). */
#define BJ_CG_WCACHE_RAW 0xFF
typedef struct wlayout {
    uint8_t variant, wtype;
    uint32_t m, k;
    uint64_t size;
} wlayout;

static wlayout layout_of(const bj_cg_kdesc *d) {
    return (wlayout){ (uint8_t)d->variant, (uint8_t)d->wtype, d->m, d->k, bj_cg_packed_size(d) };
}

static bj_status bj_cg_wcache_path(const bj_cg_cache *c, const wlayout *l, const uint64_t src[2], char *buf,
                                   size_t cap, bj_error *err) {
    uint64_t layout[3] = { (uint64_t)l->variant << 8 | l->wtype, l->m, l->k };
    uint64_t key = XXH3_64bits_withSeed(layout, sizeof layout, src[0] ^ src[1]);
    int n = snprintf(buf, cap, "%s/w-%016llx.bin", c->dir, (unsigned long long)key);
    if (n < 0 || (size_t)n >= cap) return BJ_FAIL(err, BJ_E_INVALID, "kernel cache path too long");
    return BJ_OK;
}

static bj_status wcache_load(bj_cg_cache *c, const wlayout *l, const uint64_t src[2], bj_cg_wmap *out,
                             bj_error *err) {
    char path[4200];
    memset(out, 0, sizeof *out);
    if (!c->enabled) return BJ_OK;
    BJ_TRY(bj_cg_wcache_path(c, l, src, path, sizeof path, err));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return BJ_OK; /* a miss */
    struct stat st;
    bj_cg_wcache_hdr h;
    uint64_t size = l->size;
    bool ok = !fstat(fd, &st) && st.st_size >= BJ_CG_WCACHE_HDR && bj_cg_read_all(fd, &h, sizeof h) &&
              !memcmp(h.magic, BJ_CG_WCACHE_MAGIC, 8) && h.format == BJ_CG_WCACHE_FORMAT &&
              h.hdr_size == BJ_CG_WCACHE_HDR && h.hdr_hash == XXH3_64bits(&h, offsetof(bj_cg_wcache_hdr, hdr_hash)) &&
              h.variant == l->variant && h.wtype == l->wtype && h.m == l->m && h.k == l->k && h.src[0] == src[0] &&
              h.src[1] == src[1] && h.size == size && (uint64_t)st.st_size == BJ_CG_WCACHE_HDR + size;
    void *base = MAP_FAILED;
    if (ok) {
        base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        ok = base != MAP_FAILED && XXH3_64bits((const uint8_t *)base + BJ_CG_WCACHE_HDR, size) == h.payload_hash;
    }
    close(fd);
    if (!ok) {
        if (base != MAP_FAILED) munmap(base, (size_t)st.st_size);
        c->n_corrupt++;
        bj_cg_cache_warn(c, BJ_CG_CACHE_W_CORRUPT, "corrupt entry %.300s was rebuilt", path, 0);
        return BJ_OK;
    }
    out->base = base;
    out->len = (size_t)st.st_size;
    out->data = (const uint8_t *)base + BJ_CG_WCACHE_HDR;
    return BJ_OK;
}

static bj_status wcache_store(bj_cg_cache *c, const wlayout *l, const uint64_t src[2], const bj_cg_part *parts,
                              int n_parts, bj_error *err) {
    char path[4200];
    if (!c->enabled) return BJ_OK;
    BJ_TRY(bj_cg_wcache_path(c, l, src, path, sizeof path, err));
    uint64_t size = 0;
    XXH3_state_t *st = XXH3_createState();
    uint8_t *hdr = calloc(1, BJ_CG_WCACHE_HDR);
    bj_cg_part all[9];
    if (!st || !hdr || n_parts > 8 || XXH3_64bits_reset(st) != XXH_OK) { /* not caching is never an error */
        XXH3_freeState(st);
        free(hdr);
        return BJ_OK;
    }
    all[0] = (bj_cg_part){ hdr, BJ_CG_WCACHE_HDR };
    for (int i = 0; i < n_parts; i++) {
        XXH3_64bits_update(st, parts[i].p, parts[i].n);
        size += parts[i].n;
        all[i + 1] = parts[i];
    }
    BJ_ASSERT(size == l->size);
    bj_cg_wcache_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, BJ_CG_WCACHE_MAGIC, 8);
    h.format = BJ_CG_WCACHE_FORMAT;
    h.hdr_size = BJ_CG_WCACHE_HDR;
    h.variant = l->variant;
    h.wtype = l->wtype;
    h.m = l->m;
    h.k = l->k;
    h.src[0] = src[0];
    h.src[1] = src[1];
    h.size = size;
    h.payload_hash = XXH3_64bits_digest(st);
    h.hdr_hash = XXH3_64bits(&h, offsetof(bj_cg_wcache_hdr, hdr_hash));
    memcpy(hdr, &h, sizeof h);
    bj_cg_cache_writev(c, path, all, n_parts + 1);
    XXH3_freeState(st);
    free(hdr);
    return BJ_OK;
}

bj_status bj_cg_wcache_load(bj_cg_cache *c, const bj_cg_kdesc *d, const uint64_t src[2], bj_cg_wmap *out,
                            bj_error *err) {
    wlayout l = layout_of(d);
    BJ_TRY(wcache_load(c, &l, src, out, err));
    if (out->data) c->n_wloaded++;
    return BJ_OK;
}

bj_status bj_cg_wcache_store(bj_cg_cache *c, const bj_cg_kdesc *d, const uint64_t src[2], const uint8_t *packed,
                             bj_error *err) {
    wlayout l = layout_of(d);
    bj_cg_part p = { packed, l.size };
    return wcache_store(c, &l, src, &p, 1, err);
}

bj_status bj_cg_wcache_load_raw(bj_cg_cache *c, uint8_t kind, uint32_t m, uint32_t k, uint64_t size,
                                const uint64_t src[2], bj_cg_wmap *out, bj_error *err) {
    wlayout l = { BJ_CG_WCACHE_RAW, kind, m, k, size };
    return wcache_load(c, &l, src, out, err);
}

bj_status bj_cg_wcache_store_raw(bj_cg_cache *c, uint8_t kind, uint32_t m, uint32_t k, const uint64_t src[2],
                                 const bj_cg_part *parts, int n_parts, bj_error *err) {
    uint64_t size = 0;
    for (int i = 0; i < n_parts; i++) size += parts[i].n;
    wlayout l = { BJ_CG_WCACHE_RAW, kind, m, k, size };
    return wcache_store(c, &l, src, parts, n_parts, err);
}

void bj_cg_wmap_free(bj_cg_wmap *m) {
    if (m->base) munmap(m->base, m->len);
    memset(m, 0, sizeof *m);
}

/* ---- source-hash index ---------------------------------------------------------------------
 * File s-<XXH3 of dev, ino>.idx: a header naming the file's identity, n entries, then the
 * XXH3_64 of everything before it. Used only when the whole file checks and the identity is the
 * mapped file's now; anything else is ignored (and replaced by the next save). */
#define BJ_CG_SRCIDX_MAGIC "BJSIDX01"
#define BJ_CG_SRCIDX_MAX (1u << 20) /* entries; a model has hundreds */

int64_t bj_cg_srcidx_racy_ns = 2000000000;

typedef struct srcidx_hdr {
    char magic[8];
    uint32_t format, n;
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
} srcidx_hdr;

typedef struct srcidx_ent {
    uint64_t off, n, how; /* tensor offset and bytes in the file, XXH3_64 of the rule */
    uint64_t src[2];
} srcidx_ent;
_Static_assert(sizeof(srcidx_hdr) == 56 && sizeof(srcidx_ent) == 40, "source index layout is the file format");

struct bj_cg_srcidx_file {
    bj_fmap_loc id;   /* the identity when first asked (now_ns: when) */
    const void *probe; /* a byte of the map, to ask for the identity again */
    bool stable;      /* the identity has not changed since */
    bool dirty;       /* hashes were computed: save */
    srcidx_ent *ent;  /* loaded and new */
    uint32_t n, cap;
};

static bool same_file(const bj_fmap_loc *a, const bj_fmap_loc *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns &&
           a->ctime_ns == b->ctime_ns;
}

static bj_status srcidx_path(const bj_cg_cache *c, const bj_fmap_loc *id, char *buf, size_t cap) {
    uint64_t k[2] = { id->dev, id->ino };
    int n = snprintf(buf, cap, "%s/s-%016llx.idx", c->dir, (unsigned long long)XXH3_64bits(k, sizeof k));
    return n < 0 || (size_t)n >= cap ? BJ_E_INVALID : BJ_OK;
}

static void srcidx_read(const bj_cg_cache *c, bj_cg_srcidx_file *f) {
    char path[4200];
    if (srcidx_path(c, &f->id, path, sizeof path) != BJ_OK) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    srcidx_hdr h;
    uint64_t sum;
    bool ok = !fstat(fd, &st) && (size_t)st.st_size >= sizeof h + sizeof sum && bj_cg_read_all(fd, &h, sizeof h) &&
              !memcmp(h.magic, BJ_CG_SRCIDX_MAGIC, 8) && h.format == 1 && h.n <= BJ_CG_SRCIDX_MAX &&
              (uint64_t)st.st_size == sizeof h + (uint64_t)h.n * sizeof(srcidx_ent) + sizeof sum && h.dev == f->id.dev &&
              h.ino == f->id.ino && h.size == f->id.size && h.mtime_ns == f->id.mtime_ns && h.ctime_ns == f->id.ctime_ns;
    srcidx_ent *e = ok ? malloc((size_t)h.n * sizeof *e + 1) : NULL;
    ok = e && bj_cg_read_all(fd, e, (size_t)h.n * sizeof *e) && bj_cg_read_all(fd, &sum, sizeof sum);
    close(fd);
    if (ok) {
        XXH3_state_t *s = XXH3_createState();
        ok = s && XXH3_64bits_reset(s) == XXH_OK && XXH3_64bits_update(s, &h, sizeof h) == XXH_OK &&
             XXH3_64bits_update(s, e, (size_t)h.n * sizeof *e) == XXH_OK && XXH3_64bits_digest(s) == sum;
        XXH3_freeState(s);
    }
    if (!ok) { free(e); return; } /* stale or damaged: ignored, rewritten by the next save */
    f->ent = e;
    f->n = f->cap = h.n;
}

void bj_cg_srcidx_init(bj_cg_srcidx *x) { memset(x, 0, sizeof *x); }

void bj_cg_srcidx_free(bj_cg_srcidx *x) {
    for (int i = 0; i < x->n_files; i++) free(x->files[i].ent);
    free(x->files);
    memset(x, 0, sizeof *x);
}

/* The entry of f for one tensor, or NULL. */
static srcidx_ent *srcidx_find(bj_cg_srcidx_file *f, uint64_t off, uint64_t n, uint64_t how) {
    for (uint32_t i = 0; i < f->n; i++)
        if (f->ent[i].off == off && f->ent[i].n == n && f->ent[i].how == how) return &f->ent[i];
    return NULL;
}

void bj_cg_srcidx_hash(bj_cg_cache *c, bj_cg_srcidx *x, const void *data, size_t n, const char *how,
                       uint64_t out[2]) {
    bj_fmap_loc loc;
    bj_cg_srcidx_file *f = NULL;
    uint64_t how_h = XXH3_64bits(how, strlen(how));
    if (c->enabled && bj_fmap_locate(data, n, &loc)) {
        for (int i = 0; i < x->n_files && !f; i++)
            if (x->files[i].id.dev == loc.dev && x->files[i].id.ino == loc.ino) f = &x->files[i];
        if (!f) {
            bj_cg_srcidx_file *fs = realloc(x->files, ((size_t)x->n_files + 1) * sizeof *fs);
            if (fs) {
                x->files = fs;
                f = &fs[x->n_files++];
                memset(f, 0, sizeof *f);
                f->id = loc;
                f->probe = data;
                f->stable = true;
                srcidx_read(c, f);
            }
        }
        if (f && !same_file(&f->id, &loc)) f->stable = false; /* changed while we read it: no index */
    }
    srcidx_ent *e = f && f->stable ? srcidx_find(f, loc.offset, n, how_h) : NULL;
    if (e) {
        out[0] = e->src[0];
        out[1] = e->src[1];
        x->n_hits++;
        return;
    }
    bj_cg_wcache_src_hash(data, n, how, out);
    x->n_hashed++;
    if (!f || !f->stable) return;
    if (f->n == f->cap) {
        uint32_t cap = f->cap ? 2 * f->cap : 64;
        srcidx_ent *ne = cap <= BJ_CG_SRCIDX_MAX ? realloc(f->ent, (size_t)cap * sizeof *ne) : NULL;
        if (!ne) return; /* not remembered: hashed again next time */
        f->ent = ne;
        f->cap = cap;
    }
    f->ent[f->n++] = (srcidx_ent){ loc.offset, n, how_h, { out[0], out[1] } };
    f->dirty = true;
}

void bj_cg_srcidx_save(bj_cg_cache *c, bj_cg_srcidx *x) {
    for (int i = 0; i < x->n_files && c->enabled; i++) {
        bj_cg_srcidx_file *f = &x->files[i];
        if (!f->dirty || !f->stable || f->id.now_ns - f->id.ctime_ns < bj_cg_srcidx_racy_ns) continue;
        /* Still the file we hashed? The identity is re-read through the same open map. */
        bj_fmap_loc now;
        if (!bj_fmap_locate(f->probe, 0, &now) || !same_file(&f->id, &now)) continue;
        char path[4200];
        if (srcidx_path(c, &f->id, path, sizeof path) != BJ_OK) continue;
        srcidx_hdr h;
        memset(&h, 0, sizeof h);
        memcpy(h.magic, BJ_CG_SRCIDX_MAGIC, 8);
        h.format = 1;
        h.n = f->n;
        h.dev = f->id.dev;
        h.ino = f->id.ino;
        h.size = f->id.size;
        h.mtime_ns = f->id.mtime_ns;
        h.ctime_ns = f->id.ctime_ns;
        XXH3_state_t *s = XXH3_createState();
        if (!s || XXH3_64bits_reset(s) != XXH_OK) { XXH3_freeState(s); continue; }
        XXH3_64bits_update(s, &h, sizeof h);
        XXH3_64bits_update(s, f->ent, (size_t)f->n * sizeof *f->ent);
        uint64_t sum = XXH3_64bits_digest(s);
        XXH3_freeState(s);
        bj_cg_part parts[3] = { { &h, sizeof h }, { f->ent, (size_t)f->n * sizeof *f->ent }, { &sum, sizeof sum } };
        bj_cg_cache_writev(c, path, parts, 3);
        f->dirty = false;
    }
}
