/* codegen/cg_cache.c -- the on-disk kernel cache and bj_cg_kernel_get, the runtime's one call
 * for a kernel (JIT, else cache, else compile). File format and policy are documented in
 * codegen.h; this file holds the mechanics.
 *
 * Invariants: an entry is trusted only when its magic, format, header checksum, key,
 * environment hash, descriptor, symbol, size and object checksum all match, so a truncated,
 * bit-flipped or foreign file is a miss (counted as corrupt) and is overwritten by the
 * rebuild. Entries appear only by rename of a complete temp file in the same directory.
 * No size read from a file is trusted before it is checked against the file's real size.
 * Failures of the cache never fail a kernel request: they switch the cache off and leave a
 * warning for the caller to print once. */
#include "codegen/cg_llvm.h"

#include <xxhash.h>

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef BJ_VERSION_STRING
#define BJ_VERSION_STRING "unknown"
#endif

#define BJ_CG_CACHE_MAGIC "BJKCACHE"
#define BJ_CG_CACHE_FORMAT 1
#define BJ_CG_CACHE_MAX_OBJ (256u << 20)

typedef struct bj_cg_cache_hdr {
    char magic[8];
    uint32_t format;
    uint32_t hdr_size;
    uint64_t key;
    uint64_t env;
    bj_cg_kdesc desc;
    uint64_t obj_size;
    uint64_t obj_hash;  /* XXH3_64 of the object bytes */
    char sym[32];
    uint8_t reserved[8]; /* zero */
    uint64_t hdr_hash;  /* XXH3_64 of every header byte before this field */
} bj_cg_cache_hdr;
_Static_assert(sizeof(bj_cg_cache_hdr) == 128, "cache header layout is the file format");

uint64_t bj_cg_env_hash(const bj_cg_target *t) {
    char llvm[32], buf[sizeof t->features + 256];
    bj_cg_llvm_version(llvm, sizeof llvm);
    int n = snprintf(buf, sizeof buf, "bitjit-kcache|%s|%s|llvm %s|bitjit %s|abi %d|gen %d", t->cpu, t->features,
                     llvm, BJ_VERSION_STRING, BJ_CG_ABI_VERSION, BJ_CG_GEN_VERSION);
    return XXH3_64bits(buf, n < (int)sizeof buf ? (size_t)n : sizeof buf);
}

static uint64_t bj_cg_cache_key(const bj_cg_cache *c, const bj_cg_kdesc *d) {
    return XXH3_64bits_withSeed(d, sizeof *d, c->env);
}

void bj_cg_cache_warn(bj_cg_cache *c, uint32_t what, const char *fmt, const char *arg, int e) {
    if (!c->warn_msg[0]) {
        char tail[160] = "";
        if (e) snprintf(tail, sizeof tail, ": %s", strerror(e));
        char msg[sizeof c->warn_msg];
        snprintf(msg, sizeof msg, fmt, arg);
        snprintf(c->warn_msg, sizeof c->warn_msg, "kernel cache: %.300s%s", msg, tail);
    }
    c->warn |= what;
}

void bj_cg_cache_merge(bj_cg_cache *c, const bj_cg_cache *base, const bj_cg_cache *copy) {
    c->enabled = c->enabled && copy->enabled;
    c->warn |= copy->warn;
    if (!c->warn_msg[0]) memcpy(c->warn_msg, copy->warn_msg, sizeof c->warn_msg);
    c->n_compiled += copy->n_compiled - base->n_compiled;
    c->n_loaded += copy->n_loaded - base->n_loaded;
    c->n_corrupt += copy->n_corrupt - base->n_corrupt;
    c->n_wloaded += copy->n_wloaded - base->n_wloaded;
    c->compile_ms += copy->compile_ms - base->compile_ms;
}

int bj_cg_mkdirs(const char *dir) {
    char p[4096];
    if (strlen(dir) >= sizeof p) return ENAMETOOLONG;
    strcpy(p, dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) && errno != EEXIST) return errno;
        *s = '/';
    }
    if (mkdir(p, 0755) && errno != EEXIST) return errno;
    return bj_path_is_dir(p) ? 0 : ENOTDIR;
}

static bool bj_cg_cache_default_dir(char *buf, size_t cap) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg) n = snprintf(buf, cap, "%s/bitjit", xdg);
    else if (home && *home) n = snprintf(buf, cap, "%s/.cache/bitjit", home);
    else return false;
    return n > 0 && (size_t)n < cap;
}

/* Creates and removes a temp file: the directory takes new entries. */
static int bj_cg_cache_probe(const char *dir) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.probe-XXXXXX", dir);
    int fd = mkstemp(tmp);
    if (fd < 0) return errno;
    close(fd);
    unlink(tmp);
    return 0;
}

bj_status bj_cg_cache_open(bj_cg_cache *c, const char *dir, const bj_cg_target *t, bool disabled,
                           bj_error *err) {
    memset(c, 0, sizeof *c);
    c->env = bj_cg_env_hash(t);
    if (disabled) return BJ_OK;
    if (dir && *dir) {
        if (strlen(dir) >= sizeof c->dir - 32)
            return BJ_FAIL(err, BJ_E_INVALID, "cache directory path is too long (%zu bytes)", strlen(dir));
        strcpy(c->dir, dir);
    } else if (!bj_cg_cache_default_dir(c->dir, sizeof c->dir - 32)) {
        bj_cg_cache_warn(c, BJ_CG_CACHE_W_UNWRITABLE, "%sneither XDG_CACHE_HOME nor HOME is set; caching is off", "", 0);
        return BJ_OK;
    }
    int e = bj_cg_mkdirs(c->dir);
    if (!e) e = bj_cg_cache_probe(c->dir);
    if (e) {
        bj_cg_cache_warn(c, BJ_CG_CACHE_W_UNWRITABLE, "cannot use %.300s (caching is off)", c->dir, e);
        return BJ_OK;
    }
    c->enabled = true;
    return BJ_OK;
}

bj_status bj_cg_cache_path(const bj_cg_cache *c, const bj_cg_kdesc *d, char *buf, size_t cap, bj_error *err) {
    int n = snprintf(buf, cap, "%s/%016llx.bjk", c->dir, (unsigned long long)bj_cg_cache_key(c, d));
    if (n < 0 || (size_t)n >= cap) return BJ_FAIL(err, BJ_E_INVALID, "cache path does not fit %zu bytes", cap);
    return BJ_OK;
}

static void bj_cg_cache_hdr_fill(const bj_cg_cache *c, const bj_cg_kdesc *d, const bj_cg_object *o,
                                 bj_cg_cache_hdr *h) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, BJ_CG_CACHE_MAGIC, 8);
    h->format = BJ_CG_CACHE_FORMAT;
    h->hdr_size = sizeof *h;
    h->key = bj_cg_cache_key(c, d);
    h->env = c->env;
    h->desc = *d;
    h->obj_size = o->size;
    h->obj_hash = XXH3_64bits(o->data, o->size);
    memcpy(h->sym, o->sym, sizeof h->sym);
    h->hdr_hash = XXH3_64bits(h, offsetof(bj_cg_cache_hdr, hdr_hash));
}

/* True when the header read from a file of file_size bytes belongs to d and is whole. */
static bool bj_cg_cache_hdr_ok(const bj_cg_cache *c, const bj_cg_kdesc *d, const bj_cg_cache_hdr *h,
                               uint64_t file_size) {
    char sym[32];
    bj_cg_kernel_symbol(d, sym, sizeof sym);
    return !memcmp(h->magic, BJ_CG_CACHE_MAGIC, 8) && h->format == BJ_CG_CACHE_FORMAT &&
           h->hdr_size == sizeof *h && h->hdr_hash == XXH3_64bits(h, offsetof(bj_cg_cache_hdr, hdr_hash)) &&
           h->key == bj_cg_cache_key(c, d) && h->env == c->env && !memcmp(&h->desc, d, sizeof *d) &&
           !strncmp(h->sym, sym, sizeof sym) && h->obj_size <= BJ_CG_CACHE_MAX_OBJ &&
           h->obj_size == file_size - sizeof *h;
}

bool bj_cg_read_all(int fd, void *buf, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

/* 1: hit (out filled), 0: miss, -1: corrupt. */
static int bj_cg_cache_read(bj_cg_cache *c, const bj_cg_kdesc *d, int fd, bj_cg_object *out) {
    struct stat st;
    bj_cg_cache_hdr h;
    if (fstat(fd, &st) || st.st_size < (off_t)sizeof h) return -1;
    if (!bj_cg_read_all(fd, &h, sizeof h) || !bj_cg_cache_hdr_ok(c, d, &h, (uint64_t)st.st_size)) return -1;
    uint8_t *data = malloc(h.obj_size ? h.obj_size : 1);
    if (!data) return 0;
    if (!bj_cg_read_all(fd, data, h.obj_size) || XXH3_64bits(data, h.obj_size) != h.obj_hash) {
        free(data);
        return -1;
    }
    out->data = data;
    out->size = h.obj_size;
    memcpy(out->sym, h.sym, sizeof out->sym);
    return 1;
}

bj_status bj_cg_cache_load(bj_cg_cache *c, const bj_cg_kdesc *d, bj_cg_object *out, bool *hit, bj_error *err) {
    char path[4200];
    memset(out, 0, sizeof *out);
    *hit = false;
    if (!c->enabled) return BJ_OK;
    BJ_TRY(bj_cg_cache_path(c, d, path, sizeof path, err));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return BJ_OK; /* a miss (ENOENT), or unreadable: rebuilt and replaced */
    int r = bj_cg_cache_read(c, d, fd, out);
    close(fd);
    if (r < 0) {
        c->n_corrupt++;
        bj_cg_cache_warn(c, BJ_CG_CACHE_W_CORRUPT, "corrupt entry %.300s was rebuilt", path, 0);
    }
    *hit = r > 0;
    return BJ_OK;
}

bool bj_cg_write_all(int fd, const void *buf, size_t n) {
    for (size_t put = 0; put < n;) {
        ssize_t w = write(fd, (const char *)buf + put, n - put);
        if (w <= 0) return false;
        put += (size_t)w;
    }
    return true;
}

void bj_cg_cache_writev(bj_cg_cache *c, const char *path, const bj_cg_part *parts, int n_parts) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.tmp-XXXXXX", c->dir);
    int fd = mkstemp(tmp), e = 0;
    if (fd < 0) e = errno;
    else {
        bool ok = true;
        for (int i = 0; i < n_parts && ok; i++) ok = bj_cg_write_all(fd, parts[i].p, parts[i].n);
        if (!ok) e = errno ? errno : EIO;
        if (close(fd) && !e) e = errno;
        if (!e && rename(tmp, path)) e = errno;
        if (e) unlink(tmp);
    }
    if (e) {
        bj_cg_cache_warn(c, BJ_CG_CACHE_W_WRITE, "cannot write %.300s (caching is off)", path, e);
        c->enabled = false;
    }
}

void bj_cg_cache_write(bj_cg_cache *c, const char *path, const void *a, size_t na, const void *b, size_t nb) {
    bj_cg_part parts[2] = { { a, na }, { b, nb } };
    bj_cg_cache_writev(c, path, parts, 2);
}

bj_status bj_cg_cache_store(bj_cg_cache *c, const bj_cg_kdesc *d, const bj_cg_object *o, bj_error *err) {
    char path[4200];
    if (!c->enabled) return BJ_OK;
    BJ_TRY(bj_cg_cache_path(c, d, path, sizeof path, err));
    bj_cg_cache_hdr h;
    bj_cg_cache_hdr_fill(c, d, o, &h);
    bj_cg_cache_write(c, path, &h, sizeof h, o->data, o->size);
    return BJ_OK;
}

/* Adds o to j and looks its kernel up. Another thread may have added the same kernel since
 * this one looked: then its copy is used. */
static bj_status bj_cg_kernel_add(bj_cg_jit *j, const bj_cg_object *o, bj_cg_matmul_fn *fn, bj_error *err) {
    void *addr;
    bj_status s = bj_cg_jit_add_object(j, o->data, o->size, err);
    if (s != BJ_OK && !bj_cg_jit_has(j, o->sym)) return s;
    BJ_TRY(bj_cg_jit_lookup(j, o->sym, &addr, err));
    *fn = (bj_cg_matmul_fn)addr;
    return BJ_OK;
}

static double bj_cg_ms(const struct timespec *a, const struct timespec *b) {
    return (b->tv_sec - a->tv_sec) * 1e3 + (b->tv_nsec - a->tv_nsec) * 1e-6;
}

bj_status bj_cg_kernel_get(bj_cg_cache *c, bj_cg_jit *j, const bj_cg_target *t,
                           const bj_cg_kdesc *d, const int8_t *t8, bj_cg_matmul_fn *fn,
                           bj_error *err) {
    char sym[32];
    void *addr;
    *fn = NULL;
    if (bj_cg_env_hash(t) != c->env)
        return BJ_FAIL(err, BJ_E_INVALID, "kernel cache was opened for another target than '%s'", t->cpu);
    BJ_TRY(bj_cg_kdesc_check(d, t, err));
    bj_cg_kernel_symbol(d, sym, sizeof sym);
    if (bj_cg_jit_has(j, sym)) {
        BJ_TRY(bj_cg_jit_lookup(j, sym, &addr, err));
        *fn = (bj_cg_matmul_fn)addr;
        return BJ_OK;
    }
    BJ_TRY(bj_cg_target_check_host(t, err));
    bj_cg_object o;
    bool hit;
    BJ_TRY(bj_cg_cache_load(c, d, &o, &hit, err));
    if (hit) {
        c->n_loaded++;
    } else {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        BJ_TRY(bj_cg_compile(t, d, t8, &o, NULL, err));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        c->n_compiled++;
        c->compile_ms += bj_cg_ms(&t0, &t1);
        bj_status s = bj_cg_cache_store(c, d, &o, err);
        if (s != BJ_OK) { bj_cg_object_free(&o); return s; }
    }
    bj_status s = bj_cg_kernel_add(j, &o, fn, err);
    bj_cg_object_free(&o);
    return s;
}
