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

void bj_cg_wcache_src_hash(const void *data, size_t n, const char *how, uint64_t out[2]) {
    XXH128_hash_t h = XXH3_128bits_withSeed(data, n, XXH3_64bits(how, strlen(how)));
    out[0] = h.low64;
    out[1] = h.high64;
}

static void bj_cg_wcache_hdr_fill(const bj_cg_kdesc *d, const uint64_t src[2], const uint8_t *payload, uint64_t size,
                                  bj_cg_wcache_hdr *h) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, BJ_CG_WCACHE_MAGIC, 8);
    h->format = BJ_CG_WCACHE_FORMAT;
    h->hdr_size = BJ_CG_WCACHE_HDR;
    h->variant = d->variant;
    h->wtype = d->wtype;
    h->m = d->m;
    h->k = d->k;
    h->src[0] = src[0];
    h->src[1] = src[1];
    h->size = size;
    h->payload_hash = XXH3_64bits(payload, size);
    h->hdr_hash = XXH3_64bits(h, offsetof(bj_cg_wcache_hdr, hdr_hash));
}

static bj_status bj_cg_wcache_path(const bj_cg_cache *c, const bj_cg_kdesc *d, const uint64_t src[2], char *buf,
                                   size_t cap, bj_error *err) {
    uint64_t layout[3] = { (uint64_t)d->variant << 8 | d->wtype, d->m, d->k };
    uint64_t key = XXH3_64bits_withSeed(layout, sizeof layout, src[0] ^ src[1]);
    int n = snprintf(buf, cap, "%s/w-%016llx.bin", c->dir, (unsigned long long)key);
    if (n < 0 || (size_t)n >= cap) return BJ_FAIL(err, BJ_E_INVALID, "kernel cache path too long");
    return BJ_OK;
}

bj_status bj_cg_wcache_load(bj_cg_cache *c, const bj_cg_kdesc *d, const uint64_t src[2], bj_cg_wmap *out,
                            bj_error *err) {
    char path[4200];
    memset(out, 0, sizeof *out);
    if (!c->enabled) return BJ_OK;
    BJ_TRY(bj_cg_wcache_path(c, d, src, path, sizeof path, err));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return BJ_OK; /* a miss */
    struct stat st;
    bj_cg_wcache_hdr h;
    uint64_t size = bj_cg_packed_size(d);
    bool ok = !fstat(fd, &st) && st.st_size >= BJ_CG_WCACHE_HDR && bj_cg_read_all(fd, &h, sizeof h) &&
              !memcmp(h.magic, BJ_CG_WCACHE_MAGIC, 8) && h.format == BJ_CG_WCACHE_FORMAT &&
              h.hdr_size == BJ_CG_WCACHE_HDR && h.hdr_hash == XXH3_64bits(&h, offsetof(bj_cg_wcache_hdr, hdr_hash)) &&
              h.variant == d->variant && h.wtype == d->wtype && h.m == d->m && h.k == d->k && h.src[0] == src[0] &&
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
    c->n_wloaded++;
    return BJ_OK;
}

bj_status bj_cg_wcache_store(bj_cg_cache *c, const bj_cg_kdesc *d, const uint64_t src[2], const uint8_t *packed,
                             bj_error *err) {
    char path[4200];
    if (!c->enabled) return BJ_OK;
    BJ_TRY(bj_cg_wcache_path(c, d, src, path, sizeof path, err));
    uint8_t *hdr = calloc(1, BJ_CG_WCACHE_HDR);
    if (!hdr) return BJ_OK; /* not caching is never an error */
    bj_cg_wcache_hdr h;
    uint64_t size = bj_cg_packed_size(d);
    bj_cg_wcache_hdr_fill(d, src, packed, size, &h);
    memcpy(hdr, &h, sizeof h);
    bj_cg_cache_write(c, path, hdr, BJ_CG_WCACHE_HDR, packed, size);
    free(hdr);
    return BJ_OK;
}

void bj_cg_wmap_free(bj_cg_wmap *m) {
    if (m->base) munmap(m->base, m->len);
    memset(m, 0, sizeof *m);
}
