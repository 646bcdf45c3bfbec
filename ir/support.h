/* ir/support.h -- the small shared corner every layer uses: status + error reporting,
 * an arena allocator, read-only file maps, and half-float conversions.
 *
 * Error model (style.md C13): library functions return bj_status and fill a caller-owned
 * bj_error whose message names the file, tensor or key and what was expected. Only the
 * drivers (bitjit, bitjitc) print. BJ_ASSERT is for internal invariants and stays on in
 * release builds. */
#ifndef BJ_SUPPORT_H
#define BJ_SUPPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum bj_status {
    BJ_OK = 0,
    BJ_E_IO,          /* a file could not be opened, read, mapped or written */
    BJ_E_FORMAT,      /* malformed input: bad header, out-of-range offset, wrong type */
    BJ_E_UNSUPPORTED, /* well-formed but not something bitjit handles (dtype, arch) */
    BJ_E_NOMEM,       /* an allocation failed */
    BJ_E_INVALID,     /* bad argument or malformed IR */
    BJ_E_LLVM,        /* LLVM reported an error */
    BJ_E_INTERNAL,    /* a bitjit bug */
} bj_status;

typedef struct bj_error {
    bj_status code;
    char msg[1024];
    const char *file; /* where in bitjit it was raised */
    int line;
} bj_error;

/* Fills err (if non-NULL) and returns code. The message is printf-formatted. */
bj_status bj_error_set(bj_error *err, bj_status code, const char *file, int line,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Prepends "context: " to an existing message (e.g. the file name). Returns err->code. */
bj_status bj_error_prefix(bj_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *bj_status_name(bj_status s);

#define BJ_FAIL(err, code, ...) bj_error_set((err), (code), __FILE__, __LINE__, __VA_ARGS__)
#define BJ_TRY(expr) do { bj_status bj_s_ = (expr); if (bj_s_ != BJ_OK) return bj_s_; } while (0)

_Noreturn void bj_abort(const char *file, int line, const char *what);
#define BJ_ASSERT(x) ((x) ? (void)0 : bj_abort(__FILE__, __LINE__, #x))
#define BJ_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))

/* Hot loops get an AVX2 clone next to the baseline one (GCC picks at load time). The
 * clones compute the same bits: the code fixes every rounding and summation order, and
 * ISO C mode keeps GCC from contracting a*b+c into an FMA. O3 for its vectorizer (the
 * build is -O2, whose cheap cost model leaves these loops scalar). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BJ_HOT __attribute__((target_clones("avx2", "default"), optimize("O3")))
#else
#define BJ_HOT
#endif

/* ---- arena: bump allocator, freed all at once ---------------------------------------- */
typedef struct bj_arena_block bj_arena_block;
typedef struct bj_arena {
    bj_arena_block *head;
    size_t bytes; /* total bytes handed out */
} bj_arena;

void bj_arena_init(bj_arena *a);
void bj_arena_free(bj_arena *a);
/* Zeroed memory, aligned to align (a power of two <= 64); NULL when out of memory. */
void *bj_arena_alloc(bj_arena *a, size_t n, size_t align);
char *bj_arena_strdup(bj_arena *a, const char *s);
char *bj_arena_strndup(bj_arena *a, const char *s, size_t n);

/* ---- read-only file map ---------------------------------------------------------------- */
typedef struct bj_fmap {
    const uint8_t *data;
    size_t size;
    char *path; /* malloc'd copy, for error messages */
} bj_fmap;

bj_status bj_fmap_open(bj_fmap *m, const char *path, bj_error *err);
void bj_fmap_close(bj_fmap *m);

/* Where a byte range of an open bj_fmap is, and the mapped file's identity now (fstat of the
 * file the map was made from, even if its path was since renamed or replaced): what a cache
 * keyed by file identity needs. An in-place write changes ctime (which no caller can set
 * back), so (dev, ino, size, mtime, ctime) changes with the mapped bytes; a write within one
 * timestamp tick of the fstat may not, so callers trust the identity only for files whose
 * ctime is well before now_ns. */
typedef struct bj_fmap_loc {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
    int64_t now_ns;   /* CLOCK_REALTIME at the fstat */
    uint64_t offset;  /* of the range's first byte in the file */
} bj_fmap_loc;
/* true when [p, p + n) lies in one open bj_fmap (then *loc is filled; zeroed otherwise). */
bool bj_fmap_locate(const void *p, uint64_t n, bj_fmap_loc *loc);
/* Gives this process's resident pages of [p, p + n) back (the whole pages inside it) when the
 * range lies in an open bj_fmap, and returns how many bytes that was (0 for memory that is not
 * a bj_fmap's, which is left alone). The bytes do not change: a later read faults them in again
 * from the page cache. For engines that have copied a weight into their own layout. */
uint64_t bj_fmap_release(const void *p, uint64_t n);
/* Reads a whole (small) file into a malloc'd NUL-terminated buffer. */
bj_status bj_read_file(const char *path, char **out, size_t *len, bj_error *err);
int bj_path_is_dir(const char *path);
/* dir + "/" + name into buf; BJ_E_INVALID if it does not fit. */
bj_status bj_path_join(char *buf, size_t cap, const char *dir, const char *name, bj_error *err);

/* ---- growing text buffers ----------------------------------------------------------------- */
/* Appends n bytes to the NUL-terminated text *buf of *len bytes in *cap (grown by doubling, from
 * first_cap); false when out of memory, the text as it was. */
bool bj_text_append(char **buf, size_t *len, size_t *cap, const void *s, size_t n, size_t first_cap);

/* ---- checked size arithmetic (never trust a size field before checking it) -------------- */
static inline int bj_mul_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int bj_add_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

/* ---- half floats ------------------------------------------------------------------------ */
static inline float bj_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}
uint16_t bj_f32_to_bf16(float f); /* round to nearest even, NaN stays NaN */
float bj_f16_to_f32(uint16_t h);
uint16_t bj_f32_to_f16(float f);  /* round to nearest even */

/* Little-endian loads from unaligned bytes. */
static inline uint16_t bj_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t bj_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t bj_rd64(const uint8_t *p) { return bj_rd32(p) | (uint64_t)bj_rd32(p + 4) << 32; }

#endif
