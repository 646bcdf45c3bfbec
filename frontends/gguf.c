/* frontends/gguf.c -- the GGUF reader (formats.md §1; the contract is in gguf.h).
 *
 * One forward pass over the header with a bounded cursor: every read checks the bytes left
 * first, so a count or a length is never used before it is known to fit in the file. Counts
 * are also bounded by the smallest encoding of one entry times the bytes left, so an absurd
 * count is an error, never an allocation. The tensor table is then checked as a whole:
 * offsets aligned and sorted into place, sizes computed from the types (the fork clash on
 * ids 36/39 is resolved here, §1.6, which needs the space allotted to each tensor), ranges in
 * bounds and disjoint, names unique. Every message names the file, the byte offset or the
 * key / tensor, and what was expected. */
#include "frontends/gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_STRING (1ull << 30)

typedef struct gguf_rd {
    const uint8_t *base, *p, *end;
    bj_gguf *g;
    bj_error *err;
} gguf_rd;

static const char *const k_vtype_names[BJ_GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
static const uint8_t k_vtype_size[BJ_GGUF_VTYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

static const char *vtype_name(uint32_t t) { return t < BJ_GGUF_VTYPE_COUNT ? k_vtype_names[t] : "?"; }

const char *bj_gguf_type_name(uint32_t type) {
    static const char *const names[] = {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [6] = "Q5_0", [7] = "Q5_1", [8] = "Q8_0",
        [9] = "Q8_1", [10] = "Q2_K", [11] = "Q3_K", [12] = "Q4_K", [13] = "Q5_K", [14] = "Q6_K", [15] = "Q8_K",
        [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S",
        [22] = "IQ2_S", [23] = "IQ4_XS", [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64",
        [29] = "IQ1_M", [30] = "BF16", [31] = "Q4_0_4_4", [32] = "Q4_0_4_8", [33] = "Q4_0_8_8",
        [34] = "TQ1_0", [35] = "TQ2_0", [36] = "I2_S", [37] = "I8_S", [38] = "TL1", [39] = "MXFP4/TL2",
        [40] = "NVFP4", [41] = "Q1_0", [42] = "Q2_0",
    };
    return type < BJ_COUNTOF(names) && names[type] ? names[type] : "unknown";
}

bool bj_gguf_arch_is_bitnet(const char *arch) {
    return arch && (!strcmp(arch, "bitnet") || !strcmp(arch, "bitnet-b1.58") || !strcmp(arch, "bitnet-25") ||
                    !strcmp(arch, "bitnet-1.58"));
}

void bj_gguf_warn(bj_gguf *g, unsigned flag, const char *fmt, ...) {
    if (!g->warnings) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->warning, sizeof g->warning, fmt, ap);
        va_end(ap);
    }
    g->warnings |= flag;
}

/* ---- the bounded cursor ------------------------------------------------------------------- */

static uint64_t rd_left(const gguf_rd *r) { return (uint64_t)(r->end - r->p); }
static unsigned long long rd_off(const gguf_rd *r) { return (unsigned long long)(r->p - r->base); }

static bj_status rd_short(gguf_rd *r, uint64_t want, const char *what) {
    return BJ_FAIL(r->err, BJ_E_FORMAT, "%s@0x%llx: truncated: %s needs %llu bytes, %llu left", r->g->path,
                   rd_off(r), what, (unsigned long long)want, (unsigned long long)rd_left(r));
}

static bj_status rd_bytes(gguf_rd *r, uint64_t n, const uint8_t **out, const char *what) {
    if (rd_left(r) < n) return rd_short(r, n, what);
    *out = r->p;
    r->p += n;
    return BJ_OK;
}

static bj_status rd_u32(gguf_rd *r, uint32_t *v, const char *what) {
    const uint8_t *p = NULL;
    BJ_TRY(rd_bytes(r, 4, &p, what));
    *v = bj_rd32(p);
    return BJ_OK;
}

static bj_status rd_u64(gguf_rd *r, uint64_t *v, const char *what) {
    const uint8_t *p = NULL;
    BJ_TRY(rd_bytes(r, 8, &p, what));
    *v = bj_rd64(p);
    return BJ_OK;
}

static bj_status rd_str(gguf_rd *r, bj_gguf_str *s, const char *what) {
    uint64_t n = 0;
    BJ_TRY(rd_u64(r, &n, what));
    if (n > rd_left(r) || n > GGUF_MAX_STRING)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s@0x%llx: %s: string length %llu runs past the end of the file "
                       "(%llu bytes left)", r->g->path, rd_off(r) - 8, what, (unsigned long long)n,
                       (unsigned long long)rd_left(r));
    s->s = (const char *)r->p;
    s->len = n;
    r->p += n;
    return BJ_OK;
}

/* ---- metadata ------------------------------------------------------------------------------- */

static bj_status rd_array(gguf_rd *r, bj_gguf_kv *kv) {
    uint32_t at;
    BJ_TRY(rd_u32(r, &at, "array element type"));
    BJ_TRY(rd_u64(r, &kv->n, "array length"));
    if (at >= BJ_GGUF_VTYPE_COUNT || at == BJ_GGUF_ARRAY)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: key '%s': array element type %u is %s", r->g->path, kv->key, at,
                       at == BJ_GGUF_ARRAY ? "an array (nested arrays are not supported)" : "not a GGUF value type");
    kv->arr_type = (bj_gguf_vtype)at;
    kv->data = r->p;
    if (at != BJ_GGUF_STRING) {
        uint64_t bytes;
        if (bj_mul_overflow(kv->n, k_vtype_size[at], &bytes) || bytes > rd_left(r))
            return BJ_FAIL(r->err, BJ_E_FORMAT, "%s@0x%llx: key '%s': array of %llu %s runs past the end of the file",
                           r->g->path, rd_off(r), kv->key, (unsigned long long)kv->n, vtype_name(at));
        for (uint64_t i = 0; at == BJ_GGUF_BOOL && i < kv->n; i++)
            if (r->p[i] > 1)
                return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: key '%s'[%llu]: bool byte %u is not 0 or 1", r->g->path,
                               kv->key, (unsigned long long)i, r->p[i]);
        r->p += bytes;
        return BJ_OK;
    }
    if (kv->n > rd_left(r) / 8)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s@0x%llx: key '%s': array of %llu strings runs past the end of the file",
                       r->g->path, rd_off(r), kv->key, (unsigned long long)kv->n);
    kv->strs = bj_arena_alloc(&r->g->arena, (size_t)(kv->n ? kv->n : 1) * sizeof *kv->strs, 8);
    if (!kv->strs) return BJ_FAIL(r->err, BJ_E_NOMEM, "%s: out of memory for key '%s'", r->g->path, kv->key);
    for (uint64_t i = 0; i < kv->n; i++) BJ_TRY(rd_str(r, &kv->strs[i], kv->key));
    return BJ_OK;
}

static bj_status rd_value(gguf_rd *r, bj_gguf_kv *kv) {
    kv->n = 1;
    if (kv->type == BJ_GGUF_ARRAY) return rd_array(r, kv);
    if (kv->type == BJ_GGUF_STRING) {
        bj_gguf_str s;
        BJ_TRY(rd_str(r, &s, kv->key));
        kv->data = (const uint8_t *)s.s;
        kv->len = s.len;
        return BJ_OK;
    }
    BJ_TRY(rd_bytes(r, k_vtype_size[kv->type], &kv->data, kv->key));
    if (kv->type == BJ_GGUF_BOOL && kv->data[0] > 1)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: key '%s': bool byte %u is not 0 or 1", r->g->path, kv->key,
                       kv->data[0]);
    return BJ_OK;
}

static bj_status rd_kv(gguf_rd *r, bj_gguf_kv *kv) {
    bj_gguf_str key;
    uint32_t t;
    BJ_TRY(rd_str(r, &key, "metadata key"));
    if (key.len == 0 || key.len > 65535)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s@0x%llx: metadata key of length %llu (must be 1..65535)", r->g->path,
                       rd_off(r), (unsigned long long)key.len);
    kv->key = bj_arena_strndup(&r->g->arena, key.s, (size_t)key.len);
    if (!kv->key) return BJ_FAIL(r->err, BJ_E_NOMEM, "%s: out of memory", r->g->path);
    BJ_TRY(rd_u32(r, &t, kv->key));
    if (t >= BJ_GGUF_VTYPE_COUNT)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: key '%s': value type %u is not a GGUF value type (0..12)",
                       r->g->path, kv->key, t);
    kv->type = (bj_gguf_vtype)t;
    return rd_value(r, kv);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that occurs twice among n (stride-separated) strings, or NULL. */
static const char *find_duplicate(const char **names, uint64_t n) {
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    for (uint64_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) return names[i];
    return NULL;
}

static bj_status check_unique(gguf_rd *r, bool keys) {
    bj_gguf *g = r->g;
    uint64_t n = keys ? g->n_kv : g->n_tensors;
    const char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    if (!names) return BJ_FAIL(r->err, BJ_E_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n; i++) names[i] = keys ? g->kv[i].key : g->tensors[i].name;
    const char *dup = find_duplicate(names, n);
    bj_status s = BJ_OK;
    if (dup)
        s = BJ_FAIL(r->err, BJ_E_FORMAT, "%s: duplicate %s '%s'", g->path, keys ? "metadata key" : "tensor name", dup);
    free(names);
    return s;
}

static bj_status read_alignment(gguf_rd *r) {
    bj_gguf *g = r->g;
    const bj_gguf_kv *kv = bj_gguf_find_kv(g, "general.alignment");
    g->alignment = BJ_GGUF_DEFAULT_ALIGNMENT;
    if (!kv) return BJ_OK;
    if (kv->type != BJ_GGUF_U32)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: key 'general.alignment': expected u32, got %s", g->path,
                       vtype_name(kv->type));
    uint32_t a = bj_rd32(kv->data);
    if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 30))
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: key 'general.alignment': %u is not a power of two", g->path, a);
    g->alignment = a;
    return BJ_OK;
}

static bj_status read_kvs(gguf_rd *r) {
    bj_gguf *g = r->g;
    if (g->n_kv > rd_left(r) / 13) /* key length 8 + 1 byte + type 4 + the smallest value 1 */
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: metadata count %llu cannot fit in the %llu bytes left", g->path,
                       (unsigned long long)g->n_kv, (unsigned long long)rd_left(r));
    g->kv = bj_arena_alloc(&g->arena, (size_t)(g->n_kv ? g->n_kv : 1) * sizeof *g->kv, 8);
    if (!g->kv) return BJ_FAIL(r->err, BJ_E_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_kv; i++) BJ_TRY(rd_kv(r, &g->kv[i]));
    BJ_TRY(check_unique(r, true));
    BJ_TRY(read_alignment(r));
    const bj_gguf_kv *arch = bj_gguf_find_kv(g, "general.architecture");
    if (arch && arch->type == BJ_GGUF_STRING)
        g->arch = bj_arena_strndup(&g->arena, (const char *)arch->data, (size_t)arch->len);
    return BJ_OK;
}

/* ---- tensor infos ---------------------------------------------------------------------------- */

static bj_status rd_tensor_info(gguf_rd *r, bj_gguf_tensor *t) {
    bj_gguf_str name;
    uint32_t nd;
    BJ_TRY(rd_str(r, &name, "tensor name"));
    if (name.len == 0 || name.len > BJ_GGUF_MAX_NAME)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s@0x%llx: tensor name of length %llu (must be 1..%d)", r->g->path,
                       rd_off(r), (unsigned long long)name.len, BJ_GGUF_MAX_NAME);
    t->name = bj_arena_strndup(&r->g->arena, name.s, (size_t)name.len);
    if (!t->name) return BJ_FAIL(r->err, BJ_E_NOMEM, "%s: out of memory", r->g->path);
    BJ_TRY(rd_u32(r, &nd, t->name));
    if (nd > BJ_GGUF_MAX_DIMS)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: tensor '%s': n_dims %u > %d", r->g->path, t->name, nd,
                       BJ_GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    for (int d = 0; d < BJ_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        BJ_TRY(rd_u64(r, &v, t->name));
        if (v > (uint64_t)INT64_MAX)
            return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: tensor '%s': dimension %u is %llu (negative as int64)",
                           r->g->path, t->name, d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    BJ_TRY(rd_u32(r, &t->type, t->name));
    return rd_u64(r, &t->offset, t->name);
}

static bj_status elements(const bj_gguf *g, const bj_gguf_tensor *t, uint64_t *n, bj_error *err) {
    uint64_t e = 1;
    for (int d = 0; d < BJ_GGUF_MAX_DIMS; d++)
        if (bj_mul_overflow(e, (uint64_t)t->ne[d], &e) || e > (uint64_t)INT64_MAX)
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: tensor '%s': the element count %lld x %lld x %lld x %lld "
                           "overflows int64", g->path, t->name, (long long)t->ne[0], (long long)t->ne[1],
                           (long long)t->ne[2], (long long)t->ne[3]);
    *n = e;
    return BJ_OK;
}

bool bj_gguf_tensor_nbytes(uint32_t type, int ndim, const int64_t *ne, uint64_t *out) {
    uint64_t n = 1, rows = 1, ne0 = ndim > 0 ? (uint64_t)ne[0] : 1;
    for (int d = 0; d < ndim; d++)
        if (ne[d] < 0 || bj_mul_overflow(n, (uint64_t)ne[d], &n) || n > (uint64_t)INT64_MAX) return false;
    rows = ne0 ? n / ne0 : 0;
    switch (type) {
    case BJ_GGML_F32: return !bj_mul_overflow(n, 4, out);
    case BJ_GGML_F16:
    case BJ_GGML_BF16: return !bj_mul_overflow(n, 2, out);
    case BJ_GGML_Q8_0: return ne0 % 32 == 0 && !bj_mul_overflow(rows, ne0 / 32 * 34, out);
    case BJ_GGML_TQ1_0: return ne0 % 256 == 0 && !bj_mul_overflow(rows, ne0 / 256 * 54, out);
    case BJ_GGML_TQ2_0: return ne0 % 256 == 0 && !bj_mul_overflow(rows, ne0 / 256 * 66, out);
    case BJ_GGML_I2_S: return n % 128 == 0 && (*out = n / 4 + 32, true);
    default: return false;
    }
}

/* Bytes from t's offset to the next tensor's (sorted order), or to the end of the data. */
static uint64_t allotted(const bj_gguf *g, bj_gguf_tensor *const *sorted, uint64_t i, bool *is_last) {
    uint64_t data_size = g->size - g->data_start;
    *is_last = i + 1 == g->n_tensors;
    return (*is_last ? data_size : sorted[i + 1]->offset) - sorted[i]->offset;
}

/* formats.md §1.6: ids 36 and 39 mean different things in upstream ggml and bitnet.cpp. */
static bj_status resolve_fork_id(gguf_rd *r, bj_gguf_tensor *const *sorted, uint64_t i, uint64_t n) {
    bj_gguf *g = r->g;
    bj_gguf_tensor *t = sorted[i];
    /* bitnet.cpp also writes I2_S under `llama` (Falcon3, Llama3-8B-1.58); upstream has no id 36 */
    bool last, bitnet = bj_gguf_arch_is_bitnet(g->arch) || (g->arch && !strcmp(g->arch, "llama"));
    uint64_t room = allotted(g, sorted, i, &last), need = n / 4 + 32;
    if (t->type == BJ_GGML_I2_S) {
        if (!bitnet)
            return BJ_FAIL(r->err, BJ_E_UNSUPPORTED, "%s: tensor '%s': type id 36 is I2_S only in bitnet.cpp files "
                           "(architecture '%s' is not a BitNet one; upstream ggml removed id 36)", g->path, t->name,
                           g->arch ? g->arch : "(none)");
        if (n % 128 != 0 || room < need || (!last && room >= need + g->alignment))
            return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: tensor '%s': type id 36 (I2_S) needs %llu bytes (%llu values, a "
                           "multiple of 128) but %llu are allotted", g->path, t->name, (unsigned long long)need,
                           (unsigned long long)n, (unsigned long long)room);
        t->nbytes = need;
        return BJ_OK;
    }
    /* 39: TL2 in bitnet.cpp (size formula of §1.5.8), MXFP4 upstream; bitjit decodes neither. */
    uint64_t K = (uint64_t)t->ne[0], M = n / (K ? K : 1), tl2 = 0;
    if (K >= 256) tl2 = ((((K - 256) * M / 3 * 5 / 8 + 256 * M / 2 * 4 / 8) + 31) / 32) * 32 + 32;
    bool is_tl2 = bitnet && tl2 && room >= tl2 && (last || room < tl2 + g->alignment);
    return BJ_FAIL(r->err, BJ_E_UNSUPPORTED, "%s: tensor '%s': type id 39 (%s) is not supported", g->path, t->name,
                   is_tl2 ? "TL2, the bitnet.cpp lookup-table layout tied to one kernel configuration"
                          : "MXFP4");
}

static bj_status tensor_size(gguf_rd *r, bj_gguf_tensor *const *sorted, uint64_t i) {
    bj_gguf *g = r->g;
    bj_gguf_tensor *t = sorted[i];
    uint64_t n = 0;
    BJ_TRY(elements(g, t, &n, r->err));
    if (t->type == BJ_GGML_I2_S || t->type == BJ_GGML_MXFP4_OR_TL2) return resolve_fork_id(r, sorted, i, n);
    switch (t->type) {
    case BJ_GGML_F32: case BJ_GGML_F16: case BJ_GGML_BF16: case BJ_GGML_Q8_0: case BJ_GGML_TQ1_0: case BJ_GGML_TQ2_0:
        if (bj_gguf_tensor_nbytes(t->type, BJ_GGUF_MAX_DIMS, t->ne, &t->nbytes)) return BJ_OK;
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: tensor '%s': ne0 = %lld is not a multiple of the %s block size "
                       "(%d), or its size overflows", g->path, t->name, (long long)t->ne[0],
                       bj_gguf_type_name(t->type), t->type == BJ_GGML_Q8_0 ? 32 : 256);
    default:
        return BJ_FAIL(r->err, BJ_E_UNSUPPORTED, "%s: tensor '%s': ggml type %u (%s) is not supported (F32, F16, "
                       "BF16, Q8_0, TQ1_0, TQ2_0 and I2_S are)", g->path, t->name, t->type,
                       bj_gguf_type_name(t->type));
    }
}

static int cmp_offset(const void *a, const void *b) {
    const bj_gguf_tensor *x = *(bj_gguf_tensor *const *)a, *y = *(bj_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static bj_status check_ranges(gguf_rd *r, bj_gguf_tensor **sorted) {
    bj_gguf *g = r->g;
    uint64_t data_size = g->size - g->data_start;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        bj_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %u",
                           g->path, t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size)
            return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: file is truncated: tensor '%s': offset %llu is past the end of the "
                           "file (the data section has %llu bytes)", g->path, t->name,
                           (unsigned long long)t->offset, (unsigned long long)data_size);
        sorted[i] = t;
    }
    qsort(sorted, (size_t)g->n_tensors, sizeof *sorted, cmp_offset);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        bj_gguf_tensor *t = sorted[i];
        BJ_TRY(tensor_size(r, sorted, i));
        if (t->nbytes > data_size - t->offset)
            return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: file is truncated: tensor '%s' needs bytes [%llu, %llu) of the "
                           "data section but it has %llu", g->path, t->name, (unsigned long long)t->offset,
                           (unsigned long long)(t->offset + t->nbytes), (unsigned long long)data_size);
        if (i + 1 < g->n_tensors && t->offset + t->nbytes > sorted[i + 1]->offset)
            return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: tensors '%s' and '%s' overlap", g->path, t->name,
                           sorted[i + 1]->name);
        t->data = g->base + g->data_start + t->offset;
    }
    return BJ_OK;
}

static bj_status read_tensors(gguf_rd *r) {
    bj_gguf *g = r->g;
    if (g->n_tensors > rd_left(r) / 25) /* name 8 + 1, n_dims 4, type 4, offset 8 */
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: tensor count %llu cannot fit in the %llu bytes left", g->path,
                       (unsigned long long)g->n_tensors, (unsigned long long)rd_left(r));
    size_t n = (size_t)(g->n_tensors ? g->n_tensors : 1);
    g->tensors = bj_arena_alloc(&g->arena, n * sizeof *g->tensors, 8);
    if (!g->tensors) return BJ_FAIL(r->err, BJ_E_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_tensors; i++) BJ_TRY(rd_tensor_info(r, &g->tensors[i]));
    BJ_TRY(check_unique(r, false));
    if (g->n_tensors == 0) return BJ_OK; /* vocab-only files end after the metadata */
    uint64_t pos = (uint64_t)(r->p - r->base), pad = (g->alignment - pos % g->alignment) % g->alignment;
    if (pad > rd_left(r))
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: file is truncated: it ends at %zu, before the data section at %llu",
                       g->path, g->size, (unsigned long long)(pos + pad));
    g->data_start = pos + pad;
    bj_gguf_tensor **sorted = malloc(n * sizeof *sorted);
    if (!sorted) return BJ_FAIL(r->err, BJ_E_NOMEM, "%s: out of memory", g->path);
    bj_status s = check_ranges(r, sorted);
    free(sorted);
    return s;
}

/* ---- entry points ---------------------------------------------------------------------------- */

static bj_status read_header(gguf_rd *r) {
    bj_gguf *g = r->g;
    const uint8_t *magic;
    BJ_TRY(rd_bytes(r, 4, &magic, "magic"));
    if (memcmp(magic, GGUF_MAGIC, 4) != 0)
        return BJ_FAIL(r->err, BJ_E_FORMAT, "%s: not a GGUF file: magic is %02x %02x %02x %02x, expected 'GGUF'",
                       g->path, magic[0], magic[1], magic[2], magic[3]);
    BJ_TRY(rd_u32(r, &g->version, "version"));
    if (g->version != 2 && g->version != 3)
        return BJ_FAIL(r->err, BJ_E_UNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)%s", g->path,
                       g->version, (g->version & 0xFFFF) == 0 ? "; the file looks byte-swapped (big-endian)" : "");
    BJ_TRY(rd_u64(r, &g->n_tensors, "tensor count"));
    return rd_u64(r, &g->n_kv, "metadata count");
}

bj_status bj_gguf_parse(bj_gguf *g, const uint8_t *data, size_t size, const char *path, bj_error *err) {
    if (!g->path) g->path = path ? path : "(memory)";
    g->base = data;
    g->size = size;
    gguf_rd r = { data, data, data + size, g, err };
    BJ_TRY(read_header(&r));
    BJ_TRY(read_kvs(&r));
    return read_tensors(&r);
}

bj_status bj_gguf_open(bj_gguf *g, const char *path, bj_error *err) {
    memset(g, 0, sizeof *g);
    bj_arena_init(&g->arena);
    bj_status s = bj_fmap_open(&g->map, path, err);
    if (s != BJ_OK) return s;
    g->path = g->map.path;
    s = bj_gguf_parse(g, g->map.data, g->map.size, g->map.path, err);
    if (s != BJ_OK) bj_gguf_close(g);
    return s;
}

void bj_gguf_close(bj_gguf *g) {
    bj_arena_free(&g->arena);
    if (g->map.data || g->map.path) bj_fmap_close(&g->map);
    memset(g, 0, sizeof *g);
}

/* ---- lookups ----------------------------------------------------------------------------------- */

const bj_gguf_kv *bj_gguf_find_kv(const bj_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const bj_gguf_tensor *bj_gguf_find_tensor(const bj_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int64_t scalar_int(bj_gguf_vtype t, const uint8_t *p) {
    switch (t) {
    case BJ_GGUF_U8: case BJ_GGUF_BOOL: return p[0];
    case BJ_GGUF_I8: return (int8_t)p[0];
    case BJ_GGUF_U16: return bj_rd16(p);
    case BJ_GGUF_I16: return (int16_t)bj_rd16(p);
    case BJ_GGUF_U32: return bj_rd32(p);
    case BJ_GGUF_I32: return (int32_t)bj_rd32(p);
    case BJ_GGUF_U64: return bj_rd64(p) > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)bj_rd64(p);
    case BJ_GGUF_I64: return (int64_t)bj_rd64(p);
    default: return 0;
    }
}

static double scalar_float(bj_gguf_vtype t, const uint8_t *p) {
    if (t == BJ_GGUF_F32) { uint32_t u = bj_rd32(p); float f; memcpy(&f, &u, 4); return f; }
    if (t == BJ_GGUF_F64) { uint64_t u = bj_rd64(p); double d; memcpy(&d, &u, 8); return d; }
    return (double)scalar_int(t, p);
}

static bool is_int_type(bj_gguf_vtype t) {
    return t <= BJ_GGUF_I32 ? t != BJ_GGUF_F32 : t == BJ_GGUF_U64 || t == BJ_GGUF_I64;
}

static bj_status get_kv(const bj_gguf *g, const char *key, bool required, const bj_gguf_kv **kv, bj_error *err) {
    *kv = bj_gguf_find_kv(g, key);
    if (!*kv && required) return BJ_FAIL(err, BJ_E_FORMAT, "%s: missing required key '%s'", g->path, key);
    return BJ_OK;
}

static bj_status wrong_type(const bj_gguf *g, const bj_gguf_kv *kv, const char *want, bj_error *err) {
    return BJ_FAIL(err, BJ_E_FORMAT, "%s: key '%s': expected %s, got %s", g->path, kv->key, want,
                   vtype_name(kv->type));
}

bj_status bj_gguf_get_int(const bj_gguf *g, const char *key, bool required, int64_t *out, bj_error *err) {
    const bj_gguf_kv *kv;
    BJ_TRY(get_kv(g, key, required, &kv, err));
    if (!kv) return BJ_OK;
    if (!is_int_type(kv->type)) return wrong_type(g, kv, "an integer", err);
    *out = scalar_int(kv->type, kv->data);
    return BJ_OK;
}

bj_status bj_gguf_get_float(const bj_gguf *g, const char *key, bool required, double *out, bj_error *err) {
    const bj_gguf_kv *kv;
    BJ_TRY(get_kv(g, key, required, &kv, err));
    if (!kv) return BJ_OK;
    if (kv->type != BJ_GGUF_F32 && kv->type != BJ_GGUF_F64 && !is_int_type(kv->type))
        return wrong_type(g, kv, "a number", err);
    *out = scalar_float(kv->type, kv->data);
    return BJ_OK;
}

bj_status bj_gguf_get_bool(const bj_gguf *g, const char *key, bool required, bool *out, bj_error *err) {
    const bj_gguf_kv *kv;
    BJ_TRY(get_kv(g, key, required, &kv, err));
    if (!kv) return BJ_OK;
    if (kv->type != BJ_GGUF_BOOL) return wrong_type(g, kv, "bool", err);
    *out = kv->data[0] != 0;
    return BJ_OK;
}

bj_status bj_gguf_get_str(const bj_gguf *g, const char *key, bool required, bj_gguf_str *out, bj_error *err) {
    const bj_gguf_kv *kv;
    BJ_TRY(get_kv(g, key, required, &kv, err));
    if (!kv) return BJ_OK;
    if (kv->type != BJ_GGUF_STRING) return wrong_type(g, kv, "string", err);
    *out = (bj_gguf_str){ (const char *)kv->data, kv->len };
    return BJ_OK;
}

int64_t bj_gguf_arr_int(const bj_gguf_kv *kv, uint64_t i) {
    return scalar_int(kv->arr_type, kv->data + i * k_vtype_size[kv->arr_type]);
}

double bj_gguf_arr_float(const bj_gguf_kv *kv, uint64_t i) {
    return scalar_float(kv->arr_type, kv->data + i * k_vtype_size[kv->arr_type]);
}

/* ---- ternary decode (the reference the runtime's lowbit_get must agree with) ------------------ */

static int tq1_trit(const uint8_t *b, int64_t i) {
    static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
    uint8_t q = i < 160 ? b[i % 32] : i < 240 ? b[32 + (i - 160) % 16] : b[48 + (i - 240) % 4];
    int t = (int)(i < 160 ? i / 32 : i < 240 ? (i - 160) / 16 : (i - 240) / 4);
    return ((uint8_t)(q * pow3[t]) * 3) >> 8;
}

int bj_gguf_ternary_at(const bj_gguf_tensor *t, int64_t r, int64_t c, float *block_scale) {
    int64_t K = t->ne[0];
    if (t->type == BJ_GGML_I2_S) {
        uint64_t n = (uint64_t)t->nbytes - 32, i = (uint64_t)(r * K + c);
        if (block_scale) { uint32_t u = bj_rd32(t->data + n); memcpy(block_scale, &u, 4); }
        return ((t->data[32 * (i >> 7) + (i & 31)] >> (6 - 2 * ((i & 127) >> 5))) & 3) - 1;
    }
    int64_t bsz = t->type == BJ_GGML_TQ2_0 ? 66 : 54, i = c % 256;
    const uint8_t *b = t->data + (r * (K / 256) + c / 256) * bsz;
    if (block_scale) *block_scale = bj_f16_to_f32(bj_rd16(b + bsz - 2));
    if (t->type == BJ_GGML_TQ2_0) return ((b[32 * (i / 128) + i % 32] >> (2 * (i % 128 / 32))) & 3) - 1;
    return tq1_trit(b, i) - 1;
}
