/* frontends/safetensors.c -- the safetensors reader (formats.md §3.1), one file or a sharded
 * directory.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON (an object, possibly
 * right-padded with spaces), then the data section. bj_st_parse trusts nothing before it
 * has checked it: N <= 100,000,000 and 8 + N <= the file size before the header is read;
 * every entry's dtype, shape and data_offsets before a pointer is formed; the byte count
 * against product(shape) * element bits with overflow checks (sub-byte dtypes must come to
 * whole bytes); and finally, with the entries sorted by offset, that the ranges are
 * disjoint and cover the data section with no hole, as the format requires.
 *
 * Invariants kept in bj_st_model: m->tensors is sorted by name (so bj_st_find is a binary
 * search and a name repeated across shards is caught when a shard is merged in), names and
 * paths live in m->arena, tensor data points into one of m->maps. A failed parse leaves
 * m->tensors as it was; strings it copied stay in the arena until bj_st_close.
 *
 * A directory is opened through model.safetensors.index.json ({"weight_map": {tensor:
 * shard}}; each distinct shard mapped once, every mapped tensor required in its shard) or,
 * without an index, through model.safetensors. */
#include "frontends/safetensors.h"
#include "frontends/fe_json.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BJ_ST_MAX_HEADER 100000000u /* the reference parser's limit */

static const struct { const char *name; uint8_t bits; } bj_st_dtypes[BJ_ST_DTYPE_COUNT] = {
    [BJ_ST_BOOL] = { "BOOL", 8 },         [BJ_ST_U8] = { "U8", 8 },
    [BJ_ST_I8] = { "I8", 8 },             [BJ_ST_I16] = { "I16", 16 },
    [BJ_ST_U16] = { "U16", 16 },          [BJ_ST_F16] = { "F16", 16 },
    [BJ_ST_BF16] = { "BF16", 16 },        [BJ_ST_I32] = { "I32", 32 },
    [BJ_ST_U32] = { "U32", 32 },          [BJ_ST_F32] = { "F32", 32 },
    [BJ_ST_F64] = { "F64", 64 },          [BJ_ST_I64] = { "I64", 64 },
    [BJ_ST_U64] = { "U64", 64 },          [BJ_ST_C64] = { "C64", 64 },
    [BJ_ST_F8_E4M3] = { "F8_E4M3", 8 },   [BJ_ST_F8_E5M2] = { "F8_E5M2", 8 },
    [BJ_ST_F8_E8M0] = { "F8_E8M0", 8 },   [BJ_ST_F8_E4M3FNUZ] = { "F8_E4M3FNUZ", 8 },
    [BJ_ST_F8_E5M2FNUZ] = { "F8_E5M2FNUZ", 8 }, [BJ_ST_F4] = { "F4", 4 },
    [BJ_ST_F6_E2M3] = { "F6_E2M3", 6 },   [BJ_ST_F6_E3M2] = { "F6_E3M2", 6 },
};

const char *bj_st_dtype_name(bj_st_dtype t) {
    return (unsigned)t < BJ_ST_DTYPE_COUNT ? bj_st_dtypes[t].name : "?";
}

bool bj_st_dtype_to_ir(bj_st_dtype t, bj_dtype *out) {
    switch (t) {
    case BJ_ST_F32: *out = BJ_DT_F32; return true;
    case BJ_ST_F16: *out = BJ_DT_F16; return true;
    case BJ_ST_BF16: *out = BJ_DT_BF16; return true;
    case BJ_ST_U8: *out = BJ_DT_U8; return true;
    case BJ_ST_I8: *out = BJ_DT_I8; return true;
    case BJ_ST_I32: *out = BJ_DT_I32; return true;
    default: return false;
    }
}

/* ---- small helpers ------------------------------------------------------------------------ */

/* One file being parsed: what every message and every range check needs. */
typedef struct st_file {
    const char *path;    /* arena copy; becomes bj_st_tensor.path */
    const uint8_t *base; /* start of the data section */
    uint64_t size;       /* bytes in the data section */
} st_file;

static bool st_json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static const char *st_shape_str(const bj_st_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

static uint64_t st_begin(const st_file *f, const bj_st_tensor *t) { return (uint64_t)(t->data - f->base); }

/* ---- the header --------------------------------------------------------------------------- */

/* Checks the length prefix against the file before anything reads the header. */
static bj_status st_header_span(const uint8_t *data, size_t size, const char *path, uint64_t *hlen,
                                bj_error *err) {
    if (size < 8)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                       path, size);
    uint64_t n = bj_rd64(data);
    if (n > BJ_ST_MAX_HEADER)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: header length %" PRIu64 " is over the %u-byte limit",
                       path, n, BJ_ST_MAX_HEADER);
    if (n > size - 8)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                       path, n, size);
    if (n == 0 || data[8] != '{')
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: header is not a JSON object (it must start with '{')", path);
    *hlen = n;
    return BJ_OK;
}

static bj_status st_header_json(const uint8_t *hdr, uint64_t n, const char *path, json_t **root, bj_error *err) {
    json_error_t je;
    bool oom;
    *root = bj_fe_json_loadb((const char *)hdr, (size_t)n, JSON_REJECT_DUPLICATES, &je, &oom);
    if (oom) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory parsing the %llu-byte header", path, (unsigned long long)n);
    if (!*root)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: header is not valid JSON at byte %d: %s", path, je.position, je.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: header is not a JSON object", path);
    }
    return BJ_OK;
}

/* "__metadata__" is optional and maps strings to strings only. Nothing in it is kept. */
static bj_status st_metadata(const st_file *f, const json_t *v, bj_error *err) {
    char d[64];
    if (!json_is_object(v))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: __metadata__: expected an object of strings, got %s",
                       f->path, bj_fe_json_desc(v, d, sizeof d));
    const char *k;
    const json_t *s;
    json_object_foreach((json_t *)v, k, s) {
        if (!json_is_string(s))
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: __metadata__ key '%s': expected a string, got %s",
                           f->path, k, bj_fe_json_desc(s, d, sizeof d));
    }
    return BJ_OK;
}

/* ---- one tensor entry --------------------------------------------------------------------- */

static bj_status st_dtype(const st_file *f, bj_st_tensor *t, const json_t *v, bj_error *err) {
    char d[64];
    if (!json_is_string(v))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': dtype: expected a string, got %s",
                       f->path, t->name, v ? bj_fe_json_desc(v, d, sizeof d) : "nothing (missing)");
    for (int i = 0; i < BJ_ST_DTYPE_COUNT; i++) {
        if (strcmp(json_string_value(v), bj_st_dtypes[i].name) == 0) {
            t->dtype = (bj_st_dtype)i;
            return BJ_OK;
        }
    }
    return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': unknown dtype '%.40s' (expected a safetensors dtype: "
                   "F32, F16, BF16, U8, I8, I32, ...)", f->path, t->name, json_string_value(v));
}

static bj_status st_shape(const st_file *f, bj_st_tensor *t, const json_t *v, bj_error *err) {
    char d[64];
    if (!json_is_array(v))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': shape: expected an array of integers, got %s",
                       f->path, t->name, v ? bj_fe_json_desc(v, d, sizeof d) : "nothing (missing)");
    size_t n = json_array_size(v);
    if (n > BJ_ST_MAX_DIMS)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: tensor '%s': shape has %zu dimensions (at most %d supported)",
                       f->path, t->name, n, BJ_ST_MAX_DIMS);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': shape[%zu]: expected a non-negative integer, got %s",
                           f->path, t->name, i, bj_fe_json_desc(e, d, sizeof d));
        t->shape[i] = json_integer_value(e);
    }
    t->ndim = (int)n;
    return BJ_OK;
}

static bj_status st_offsets(const st_file *f, bj_st_tensor *t, const json_t *v, bj_error *err) {
    char d[64];
    uint64_t b, e;
    if (!json_is_array(v) || json_array_size(v) != 2 || !st_json_u64(json_array_get(v, 0), &b) ||
        !st_json_u64(json_array_get(v, 1), &e))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': data_offsets: expected [begin, end] with non-negative "
                       "integers, got %s", f->path, t->name, v ? bj_fe_json_desc(v, d, sizeof d) : "nothing (missing)");
    if (b > e)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] begin is after end",
                       f->path, t->name, b, e);
    if (e > f->size)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end is past the "
                       "data section (%" PRIu64 " bytes)", f->path, t->name, b, e, f->size);
    t->data = f->base + b;
    t->nbytes = e - b;
    return BJ_OK;
}

/* end - begin must equal product(shape) * element bits / 8, all checked for overflow. */
static bj_status st_size(const st_file *f, const bj_st_tensor *t, bj_error *err) {
    char s[160];
    uint64_t n = 1, bits;
    for (int i = 0; i < t->ndim; i++) {
        if (bj_mul_overflow(n, (uint64_t)t->shape[i], &n))
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': shape %s has more elements than 64 bits count",
                           f->path, t->name, st_shape_str(t, s, sizeof s));
    }
    if (bj_mul_overflow(n, bj_st_dtypes[t->dtype].bits, &bits))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': shape %s of %s is more bits than 64 bits count",
                       f->path, t->name, st_shape_str(t, s, sizeof s), bj_st_dtype_name(t->dtype));
    if (bits % 8)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': shape %s of %s is %" PRIu64 " bits, not whole bytes",
                       f->path, t->name, st_shape_str(t, s, sizeof s), bj_st_dtype_name(t->dtype), bits);
    if (bits / 8 != t->nbytes)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': shape %s of %s needs %" PRIu64 " bytes but data_offsets "
                       "[%" PRIu64 ", %" PRIu64 "] hold %" PRIu64, f->path, t->name, st_shape_str(t, s, sizeof s),
                       bj_st_dtype_name(t->dtype), bits / 8, st_begin(f, t), st_begin(f, t) + t->nbytes, t->nbytes);
    return BJ_OK;
}

static bj_status st_entry(const st_file *f, bj_st_tensor *t, const json_t *v, bj_error *err) {
    char d[64];
    if (!json_is_object(v))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': expected an object with dtype, shape and data_offsets, "
                       "got %s", f->path, t->name, bj_fe_json_desc(v, d, sizeof d));
    t->path = f->path;
    BJ_TRY(st_dtype(f, t, json_object_get(v, "dtype"), err));
    BJ_TRY(st_shape(f, t, json_object_get(v, "shape"), err));
    BJ_TRY(st_offsets(f, t, json_object_get(v, "data_offsets"), err));
    return st_size(f, t, err);
}

/* ---- the whole file ------------------------------------------------------------------------ */

static int st_cmp_offset(const void *a, const void *b) {
    const bj_st_tensor *x = a, *y = b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const bj_st_tensor *)a)->name, ((const bj_st_tensor *)b)->name);
}

/* With t[] sorted by (begin, size), each range must start where the previous one ended. */
static bj_status st_coverage(const st_file *f, bj_st_tensor *t, int n, bj_error *err) {
    if (n > 1) qsort(t, (size_t)n, sizeof *t, st_cmp_offset);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = st_begin(f, &t[i]);
        if (b > at)
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: data section has a hole at offset %" PRIu64 " (bytes [%" PRIu64
                           ", %" PRIu64 ") before tensor '%s' belong to no tensor)", f->path, at, at, b, t[i].name);
        if (b < at)
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] overlap "
                           "tensor '%s' [%" PRIu64 ", %" PRIu64 "]", f->path, t[i].name, b, b + t[i].nbytes,
                           t[i - 1].name, st_begin(f, &t[i - 1]), at);
        at = b + t[i].nbytes;
    }
    if (at < f->size)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: data section has a hole at offset %" PRIu64 " (bytes [%" PRIu64 ", %"
                       PRIu64 ") after the last tensor belong to no tensor)", f->path, at, at, f->size);
    return BJ_OK;
}

/* Fills t[0..] from the header's entries (all but __metadata__); *n gets the count. */
static bj_status st_entries(const st_file *f, bj_arena *a, const json_t *root, bj_st_tensor *t, int *n,
                            bj_error *err) {
    const char *k;
    json_t *v;
    *n = 0;
    json_object_foreach((json_t *)root, k, v) {
        if (strcmp(k, "__metadata__") == 0) {
            BJ_TRY(st_metadata(f, v, err));
            continue;
        }
        bj_st_tensor *e = &t[(*n)++];
        memset(e, 0, sizeof *e);
        if (!(e->name = bj_arena_strdup(a, k)))
            return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory", f->path);
        BJ_TRY(st_entry(f, e, v, err));
    }
    return BJ_OK;
}

/* Sorts the new tensors m->tensors[old..] by name and merges them into the sorted prefix;
 * a name already present (from another shard) is an error. */
static bj_status st_merge(bj_st_model *m, int old, bj_error *err) {
    bj_st_tensor *nt = m->tensors + old;
    int n = m->n_tensors - old;
    qsort(nt, (size_t)n, sizeof *nt, st_cmp_name);
    for (int i = 0; i < n; i++) {
        const bj_st_tensor *dup = bsearch(&nt[i], m->tensors, (size_t)old, sizeof *nt, st_cmp_name);
        if (!dup && i > 0 && strcmp(nt[i - 1].name, nt[i].name) == 0) dup = &nt[i - 1];
        if (dup)
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s' is also in %s (names must be unique across shards)",
                           nt[i].path, nt[i].name, dup->path);
    }
    if (old > 0) qsort(m->tensors, (size_t)m->n_tensors, sizeof *nt, st_cmp_name);
    return BJ_OK;
}

/* Grows m->tensors for the header's entries, then parses, checks coverage and merges. */
static bj_status st_add(bj_st_model *m, st_file *f, const json_t *root, bj_error *err) {
    size_t cnt = json_object_size(root);
    if (cnt > (size_t)(INT_MAX - m->n_tensors))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: too many tensors", f->path);
    if (cnt == 0) return st_coverage(f, NULL, 0, err);
    bj_st_tensor *t = realloc(m->tensors, ((size_t)m->n_tensors + cnt) * sizeof *t);
    if (!t) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory for %zu tensors", f->path, cnt);
    m->tensors = t;
    int old = m->n_tensors, n;
    bj_status s = st_entries(f, &m->arena, root, t + old, &n, err);
    if (s == BJ_OK) s = st_coverage(f, t + old, n, err);
    if (s == BJ_OK) {
        m->n_tensors = old + n;
        s = st_merge(m, old, err);
    }
    if (s != BJ_OK) m->n_tensors = old;
    return s;
}

bj_status bj_st_parse(bj_st_model *m, const uint8_t *data, size_t size, const char *path, bj_error *err) {
    uint64_t hlen = 0;
    json_t *root;
    BJ_TRY(st_header_span(data, size, path, &hlen, err));
    BJ_TRY(st_header_json(data + 8, hlen, path, &root, err));
    st_file f = { bj_arena_strdup(&m->arena, path), data + 8 + hlen, size - 8 - hlen };
    bj_status s = f.path ? st_add(m, &f, root, err) : BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory", path);
    json_decref(root);
    return s;
}

const bj_st_tensor *bj_st_find(const bj_st_model *m, const char *name) {
    if (!m->n_tensors) return NULL;
    bj_st_tensor key = { .name = name };
    return bsearch(&key, m->tensors, (size_t)m->n_tensors, sizeof key, st_cmp_name);
}

/* ---- files and directories ----------------------------------------------------------------- */

static bj_status st_open_file(bj_st_model *m, const char *path, bj_error *err) {
    bj_fmap *maps = realloc(m->maps, ((size_t)m->n_maps + 1) * sizeof *maps);
    if (!maps) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory", path);
    m->maps = maps;
    BJ_TRY(bj_fmap_open(&maps[m->n_maps], path, err));
    const bj_fmap *f = &maps[m->n_maps++];
    return bj_st_parse(m, f->data, f->size, path, err);
}

/* A shard must be a plain file name in the model directory. */
static bool st_plain_name(const char *s) {
    return *s && !strchr(s, '/') && !strstr(s, "..");
}

static int st_cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks the weight_map's values and maps each distinct shard once. */
static bj_status st_open_shards(bj_st_model *m, const char *dir, const char *ipath, const json_t *wm,
                                bj_error *err) {
    size_t n = json_object_size(wm), i = 0;
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory", ipath);
    const char *k;
    const json_t *v;
    bj_status s = BJ_OK;
    char d[64], path[4096];
    json_object_foreach((json_t *)wm, k, v) {
        if (!json_is_string(v)) {
            s = BJ_FAIL(err, BJ_E_FORMAT, "%s: weight_map['%s']: expected a shard file name, got %s", ipath, k,
                        bj_fe_json_desc(v, d, sizeof d));
            break;
        }
        if (!st_plain_name(json_string_value(v))) {
            s = BJ_FAIL(err, BJ_E_FORMAT, "%s: weight_map['%s']: shard '%s' must be a plain file name "
                        "(no '/' or '..')", ipath, k, json_string_value(v));
            break;
        }
        names[i++] = json_string_value(v);
    }
    if (s == BJ_OK) qsort(names, n, sizeof *names, st_cmp_str);
    for (i = 0; s == BJ_OK && i < n; i++) {
        if (i > 0 && strcmp(names[i - 1], names[i]) == 0) continue;
        s = bj_path_join(path, sizeof path, dir, names[i], err);
        if (s == BJ_OK) s = st_open_file(m, path, err);
        if (s != BJ_OK) bj_error_prefix(err, "%s: shard '%s'", ipath, names[i]);
    }
    free(names);
    return s;
}

/* Every tensor the weight_map names must be in the shard it names. */
static bj_status st_check_map(const bj_st_model *m, const char *dir, const char *ipath, const json_t *wm,
                              bj_error *err) {
    const char *k;
    const json_t *v;
    char path[4096];
    json_object_foreach((json_t *)wm, k, v) {
        const char *shard = json_string_value(v);
        const bj_st_tensor *t = bj_st_find(m, k);
        BJ_TRY(bj_path_join(path, sizeof path, dir, shard, err));
        if (!t)
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s' is mapped to shard '%s', which does not contain it",
                           ipath, k, shard);
        if (strcmp(t->path, path) != 0)
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s' is mapped to shard '%s' but is in %s", ipath, k,
                           shard, t->path);
    }
    return BJ_OK;
}

static bj_status st_open_index(bj_st_model *m, const char *dir, const char *ipath, bj_error *err) {
    char *text;
    size_t len;
    json_error_t je;
    BJ_TRY(bj_read_file(ipath, &text, &len, err));
    bool oom;
    json_t *root = bj_fe_json_loadb(text, len, JSON_REJECT_DUPLICATES, &je, &oom);
    free(text);
    if (oom) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory parsing JSON", ipath);
    if (!root)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s:%d:%d: invalid JSON: %s", ipath, je.line, je.column, je.text);
    const json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    bj_status s = BJ_OK;
    if (!json_is_object(wm) || json_object_size(wm) == 0)
        s = BJ_FAIL(err, BJ_E_FORMAT, "%s: expected a non-empty \"weight_map\" object {tensor: shard file}", ipath);
    if (s == BJ_OK) s = st_open_shards(m, dir, ipath, wm, err);
    if (s == BJ_OK) s = st_check_map(m, dir, ipath, wm, err);
    json_decref(root);
    return s;
}

static bj_status st_open_dir(bj_st_model *m, const char *dir, bj_error *err) {
    char path[4096];
    BJ_TRY(bj_path_join(path, sizeof path, dir, "model.safetensors.index.json", err));
    if (access(path, F_OK) == 0) return st_open_index(m, dir, path, err);
    BJ_TRY(bj_path_join(path, sizeof path, dir, "model.safetensors", err));
    if (access(path, F_OK) == 0) return st_open_file(m, path, err);
    return BJ_FAIL(err, BJ_E_IO, "no model.safetensors or model.safetensors.index.json in %s", dir);
}

bj_status bj_st_open(bj_st_model *m, const char *path, bj_error *err) {
    memset(m, 0, sizeof *m);
    bj_arena_init(&m->arena);
    bj_status s = bj_path_is_dir(path) ? st_open_dir(m, path, err) : st_open_file(m, path, err);
    if (s != BJ_OK) bj_st_close(m);
    return s;
}

void bj_st_close(bj_st_model *m) {
    for (int i = 0; i < m->n_maps; i++) bj_fmap_close(&m->maps[i]);
    free(m->maps);
    free(m->tensors);
    bj_arena_free(&m->arena);
    memset(m, 0, sizeof *m);
}
