/* ir/support.c -- errors, arena, file maps, half floats. See support.h. */
#include "ir/support.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bj_status bj_error_set(bj_error *err, bj_status code, const char *file, int line,
                       const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    err->file = file;
    err->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

bj_status bj_error_prefix(bj_error *err, const char *fmt, ...) {
    if (!err) return BJ_E_INTERNAL;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n + 3 < sizeof err->msg) { /* append ": old", truncating old if needed */
        size_t room = sizeof err->msg - (size_t)n - 3; /* ": " and the NUL */
        size_t len = strnlen(old, room);
        memcpy(err->msg + n, ": ", 2);
        memcpy(err->msg + n + 2, old, len);
        err->msg[(size_t)n + 2 + len] = 0;
    }
    return err->code;
}

const char *bj_status_name(bj_status s) {
    switch (s) {
    case BJ_OK: return "ok";
    case BJ_E_IO: return "I/O error";
    case BJ_E_FORMAT: return "format error";
    case BJ_E_UNSUPPORTED: return "unsupported";
    case BJ_E_NOMEM: return "out of memory";
    case BJ_E_INVALID: return "invalid";
    case BJ_E_LLVM: return "LLVM error";
    case BJ_E_INTERNAL: return "internal error";
    }
    return "unknown error";
}

_Noreturn void bj_abort(const char *file, int line, const char *what) {
    fprintf(stderr, "bitjit: internal assertion failed at %s:%d: %s\n", file, line, what);
    abort();
}

/* ---- arena ---------------------------------------------------------------------------- */
struct bj_arena_block {
    bj_arena_block *next;
    size_t used, cap;
    _Alignas(64) unsigned char mem[];
};

void bj_arena_init(bj_arena *a) { a->head = NULL; a->bytes = 0; }

void bj_arena_free(bj_arena *a) {
    for (bj_arena_block *b = a->head, *n; b; b = n) { n = b->next; free(b); }
    a->head = NULL;
    a->bytes = 0;
}

void *bj_arena_alloc(bj_arena *a, size_t n, size_t align) {
    BJ_ASSERT(align && align <= 64 && (align & (align - 1)) == 0);
    bj_arena_block *b = a->head;
    size_t off = b ? (b->used + align - 1) & ~(align - 1) : 0;
    if (!b || off > b->cap || n > b->cap - off) {
        size_t cap = n > 60000 ? n : 64 * 1024 - sizeof *b;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        off = 0;
    }
    b->used = off + n;
    a->bytes += n;
    void *p = b->mem + off;
    memset(p, 0, n);
    return p;
}

char *bj_arena_strndup(bj_arena *a, const char *s, size_t n) {
    char *p = bj_arena_alloc(a, n + 1, 1);
    if (p) { memcpy(p, s, n); p[n] = 0; }
    return p;
}

char *bj_arena_strdup(bj_arena *a, const char *s) { return bj_arena_strndup(a, s, strlen(s)); }

/* ---- files ---------------------------------------------------------------------------- */
/* Every open bj_fmap, so a caller holding only a pointer into one (a WEIGHT node's data) can
 * ask which file it is (bj_fmap_locate) or give its pages back (bj_fmap_release). Each entry
 * keeps the file open, so its identity is the mapped file's even after a rename. */
typedef struct fmap_reg {
    const uint8_t *data;
    size_t size;
    int fd;
} fmap_reg;
static pthread_mutex_t g_fmap_mu = PTHREAD_MUTEX_INITIALIZER;
static fmap_reg *g_fmaps;
static size_t g_n_fmaps, g_cap_fmaps;

static bool fmap_register(const uint8_t *data, size_t size, int fd) {
    pthread_mutex_lock(&g_fmap_mu);
    bool ok = true;
    if (g_n_fmaps == g_cap_fmaps) {
        size_t cap = g_cap_fmaps ? 2 * g_cap_fmaps : 8;
        fmap_reg *r = realloc(g_fmaps, cap * sizeof *r);
        if (r) { g_fmaps = r; g_cap_fmaps = cap; }
        else ok = false;
    }
    if (ok) g_fmaps[g_n_fmaps++] = (fmap_reg){ data, size, fd };
    pthread_mutex_unlock(&g_fmap_mu);
    return ok;
}

static void fmap_unregister(const uint8_t *data) {
    pthread_mutex_lock(&g_fmap_mu);
    for (size_t i = 0; i < g_n_fmaps; i++)
        if (g_fmaps[i].data == data) {
            close(g_fmaps[i].fd);
            g_fmaps[i] = g_fmaps[--g_n_fmaps];
            break;
        }
    pthread_mutex_unlock(&g_fmap_mu);
}

/* The registered map holding [p, p + n), or NULL; call with g_fmap_mu held. */
static const fmap_reg *fmap_find(const void *p, uint64_t n) {
    uintptr_t a = (uintptr_t)p;
    for (size_t i = 0; i < g_n_fmaps; i++) {
        uintptr_t b = (uintptr_t)g_fmaps[i].data;
        if (a >= b && a - b <= g_fmaps[i].size && n <= g_fmaps[i].size - (a - b)) return &g_fmaps[i];
    }
    return NULL;
}

bj_status bj_fmap_open(bj_fmap *m, const char *path, bj_error *err) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return BJ_FAIL(err, BJ_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return BJ_FAIL(err, BJ_E_IO, "%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return BJ_FAIL(err, BJ_E_IO, "%s: cannot map: %s", path, strerror(errno));
        }
        m->data = p;
        /* Not registered (out of memory): the map works, it is only never located or released. */
        if (!fmap_register(m->data, m->size, fd)) close(fd);
    } else {
        close(fd);
    }
    m->path = strdup(path);
    if (!m->path) { bj_fmap_close(m); return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory", path); }
    return BJ_OK;
}

void bj_fmap_close(bj_fmap *m) {
    if (m->data) {
        fmap_unregister(m->data);
        munmap((void *)m->data, m->size);
    }
    free(m->path);
    memset(m, 0, sizeof *m);
}

bool bj_fmap_locate(const void *p, uint64_t n, bj_fmap_loc *loc) {
    memset(loc, 0, sizeof *loc);
    pthread_mutex_lock(&g_fmap_mu);
    const fmap_reg *r = fmap_find(p, n);
    struct stat st;
    bool ok = r && fstat(r->fd, &st) == 0;
    if (ok) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        loc->dev = (uint64_t)st.st_dev;
        loc->ino = (uint64_t)st.st_ino;
        loc->size = (uint64_t)st.st_size;
        loc->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        loc->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
        loc->now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        loc->offset = (uint64_t)((const uint8_t *)p - r->data);
    }
    pthread_mutex_unlock(&g_fmap_mu);
    return ok;
}

uint64_t bj_fmap_release(const void *p, uint64_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return 0;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1), b = ((uintptr_t)p + n) & ~((uintptr_t)pg - 1);
    if (b <= a) return 0;
    pthread_mutex_lock(&g_fmap_mu);
    /* Only inside a map of ours: there MADV_DONTNEED drops the process's page table entries of
     * a read-only private file map (it never had copies of its own), so the bytes stay the
     * file's; on anonymous memory the same call would zero them. */
    bool ours = fmap_find(p, n) != NULL;
    bool ok = ours && madvise((void *)a, (size_t)(b - a), MADV_DONTNEED) == 0;
    pthread_mutex_unlock(&g_fmap_mu);
    return ok ? (uint64_t)(b - a) : 0;
}

bool bj_text_append(char **buf, size_t *len, size_t *cap, const void *s, size_t n, size_t first_cap) {
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : first_cap;
        while (c < *len + n + 1) c *= 2;
        char *p = realloc(*buf, c);
        if (!p) return false;
        *buf = p, *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return true;
}

bj_status bj_read_file(const char *path, char **out, size_t *len, bj_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return BJ_FAIL(err, BJ_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return BJ_FAIL(err, BJ_E_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) { fclose(f); return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory (%zu bytes)", path, n); }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return BJ_FAIL(err, BJ_E_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return BJ_OK;
}

int bj_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bj_status bj_path_join(char *buf, size_t cap, const char *dir, const char *name, bj_error *err) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return BJ_FAIL(err, BJ_E_INVALID, "%s/%s: path too long", dir, name);
    return BJ_OK;
}

/* ---- half floats ---------------------------------------------------------------------- */
uint16_t bj_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    if (isnan(f)) return (uint16_t)((v.u >> 16) | 64);
    return (uint16_t)((v.u + 0x7FFF + ((v.u >> 16) & 1)) >> 16);
}

float bj_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        float r = ldexpf((float)man, -24); /* zero or subnormal */
        return sign ? -r : r;
    }
    if (exp == 31) v.u = sign | 0x7F800000u | (man << 13);
    else v.u = sign | ((exp + 112) << 23) | (man << 13);
    return v.f;
}

uint16_t bj_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    uint32_t sign = (v.u >> 16) & 0x8000, a = v.u & 0x7FFFFFFF;
    if (a > 0x7F800000) return (uint16_t)(sign | 0x7E00);           /* NaN */
    if (a >= 0x477FF000) return (uint16_t)(sign | 0x7C00);          /* overflow to inf */
    if (a < 0x38800000) {                                            /* subnormal or zero */
        float r = fabsf(f) * 16777216.0f;                            /* in units of 2^-24 */
        return (uint16_t)(sign | (uint16_t)nearbyintf(r));
    }
    uint32_t r = a + 0xFFF + ((a >> 13) & 1);                        /* round to nearest even */
    return (uint16_t)(sign | (((r >> 23) - 112) << 10) | ((r >> 13) & 0x3FF));
}
