/* frontends/gguf_write.c -- the GGUF writer (v3, alignment 32) and what `bitjitc convert` and
 * `bitjitc synth` write with it.
 *
 * The writer knows every tensor's size before any data (sizes come from type and shape), so it
 * writes the header, metadata and tensor table first and then streams the data in declaration
 * order, padding between tensors; output goes to a temporary sibling (mkstemp) renamed over
 * the target only by bj_gguf_writer_finish, so an error never leaves a partial file.
 *
 * What is written (formats.md §2.1-§2.3): BitLinear weights as ternary codes with a per-tensor
 * scale. For i2_s the scale is I2_S's inline f32 (arch `bitnet-b1.58`, as bitnet.cpp expects,
 * or `bitnet` for a SiLU model). For tq1_0/tq2_0/f16/bf16 (arch `bitnet`, llama.cpp) the codes
 * are stored with unit magnitude (TQ block d = 1, or +-1 floats) and the exact f32 scale goes
 * into the optional `<proj>.scale` tensor llama.cpp multiplies in; a projection whose ne0 is not
 * a multiple of 256 falls back to F16 for the TQ types, as llama.cpp's converter does. Norms are
 * F32; the embedding keeps its source dtype unless the output type is f16/bf16. The tokenizer
 * is tokenizer.ggml.model "gpt2" with pre "llama-bpe".
 *
 * synth writes a published shape with random weights drawn as trained ones are: a Gaussian
 * master per row, ternarized by absmean with the expected mean |w| of a unit Gaussian
 * (sqrt(2/pi)), so ~31% zeros, one tensor and a few rows at a time. Its tokenizer is a
 * byte-level vocab: ids 0..255 are the 256 bytes (no merges), BOS/EOS where the real model has
 * them (2B4T: 128000/128001; others: the last two ids), the rest unused placeholders. */
#include "frontends/gguf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct gw_tensor {
    char name[BJ_GGUF_MAX_NAME + 1];
    uint32_t type;
    int ndim;
    int64_t ne[BJ_GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
} gw_tensor;

struct bj_gguf_writer {
    uint32_t alignment;
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    gw_tensor *t;
    size_t n_t, cap_t;
    uint64_t data_size;
    FILE *f;
    char *path, *tmp;
    size_t cur;          /* the tensor being written */
    uint64_t cur_done;   /* its bytes written so far */
};

/* ---- buffers ------------------------------------------------------------------------------ */

static bool gw_put(bj_gguf_writer *w, const void *p, size_t n) {
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *q = realloc(w->kv, cap);
        if (!q) return false;
        w->kv = q, w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return true;
}

static bool gw_u32(bj_gguf_writer *w, uint32_t v) {
    uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    return gw_put(w, b, 4);
}

static bool gw_u64(bj_gguf_writer *w, uint64_t v) { return gw_u32(w, (uint32_t)v) && gw_u32(w, (uint32_t)(v >> 32)); }
static bool gw_str(bj_gguf_writer *w, const char *s, uint64_t n) { return gw_u64(w, n) && gw_put(w, s, (size_t)n); }

static bj_status gw_key(bj_gguf_writer *w, const char *key, uint32_t type, bj_error *err) {
    w->n_kv++;
    if (!gw_str(w, key, strlen(key)) || !gw_u32(w, type)) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    return BJ_OK;
}

static bj_status gw_ok(bool ok, bj_error *err) { return ok ? BJ_OK : BJ_FAIL(err, BJ_E_NOMEM, "out of memory"); }

bj_status bj_gguf_kv_str(bj_gguf_writer *w, const char *key, const char *val, bj_error *err) {
    BJ_TRY(gw_key(w, key, BJ_GGUF_STRING, err));
    return gw_ok(gw_str(w, val, strlen(val)), err);
}

bj_status bj_gguf_kv_u32(bj_gguf_writer *w, const char *key, uint32_t val, bj_error *err) {
    BJ_TRY(gw_key(w, key, BJ_GGUF_U32, err));
    return gw_ok(gw_u32(w, val), err);
}

bj_status bj_gguf_kv_f32(bj_gguf_writer *w, const char *key, float val, bj_error *err) {
    uint32_t u;
    memcpy(&u, &val, 4);
    BJ_TRY(gw_key(w, key, BJ_GGUF_F32, err));
    return gw_ok(gw_u32(w, u), err);
}

bj_status bj_gguf_kv_bool(bj_gguf_writer *w, const char *key, bool val, bj_error *err) {
    uint8_t b = val;
    BJ_TRY(gw_key(w, key, BJ_GGUF_BOOL, err));
    return gw_ok(gw_put(w, &b, 1), err);
}

static bj_status gw_arr(bj_gguf_writer *w, const char *key, uint32_t type, uint64_t n, bj_error *err) {
    BJ_TRY(gw_key(w, key, BJ_GGUF_ARRAY, err));
    return gw_ok(gw_u32(w, type) && gw_u64(w, n), err);
}

bj_status bj_gguf_kv_arr_str(bj_gguf_writer *w, const char *key, const bj_gguf_str *v, uint64_t n, bj_error *err) {
    BJ_TRY(gw_arr(w, key, BJ_GGUF_STRING, n, err));
    for (uint64_t i = 0; i < n; i++)
        if (!gw_str(w, v[i].s, v[i].len)) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    return BJ_OK;
}

bj_status bj_gguf_kv_arr_i32(bj_gguf_writer *w, const char *key, const int32_t *v, uint64_t n, bj_error *err) {
    BJ_TRY(gw_arr(w, key, BJ_GGUF_I32, n, err));
    for (uint64_t i = 0; i < n; i++)
        if (!gw_u32(w, (uint32_t)v[i])) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    return BJ_OK;
}

bj_status bj_gguf_kv_arr_f32(bj_gguf_writer *w, const char *key, const float *v, uint64_t n, bj_error *err) {
    BJ_TRY(gw_arr(w, key, BJ_GGUF_F32, n, err));
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        if (!gw_u32(w, u)) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    }
    return BJ_OK;
}

/* ---- writer lifecycle --------------------------------------------------------------------- */

bj_status bj_gguf_writer_new(bj_gguf_writer **out, uint32_t alignment, bj_error *err) {
    *out = NULL;
    if (alignment == 0 || (alignment & (alignment - 1)))
        return BJ_FAIL(err, BJ_E_INVALID, "GGUF alignment %u is not a power of two", alignment);
    bj_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    w->alignment = alignment;
    *out = w;
    if (alignment != BJ_GGUF_DEFAULT_ALIGNMENT) return bj_gguf_kv_u32(w, "general.alignment", alignment, err);
    return BJ_OK;
}

void bj_gguf_writer_free(bj_gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        unlink(w->tmp);
    }
    free(w->kv);
    free(w->t);
    free(w->path);
    free(w->tmp);
    free(w);
}

static uint64_t gw_pad(uint64_t n, uint32_t a) { return (n + a - 1) / a * a; }

bj_status bj_gguf_add_tensor(bj_gguf_writer *w, const char *name, uint32_t type, int ndim, const int64_t *ne,
                             bj_error *err) {
    if (strlen(name) > BJ_GGUF_MAX_NAME || ndim < 1 || ndim > BJ_GGUF_MAX_DIMS)
        return BJ_FAIL(err, BJ_E_INVALID, "tensor '%s': name too long or %d dims", name, ndim);
    gw_tensor t = { .type = type, .ndim = ndim };
    snprintf(t.name, sizeof t.name, "%s", name);
    for (int d = 0; d < BJ_GGUF_MAX_DIMS; d++) t.ne[d] = d < ndim ? ne[d] : 1;
    if (!bj_gguf_tensor_nbytes(type, ndim, ne, &t.nbytes))
        return BJ_FAIL(err, BJ_E_INVALID, "tensor '%s': %s cannot hold ne [%lld,...] (block size or overflow)", name,
                       bj_gguf_type_name(type), (long long)ne[0]);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        gw_tensor *p = realloc(w->t, cap * sizeof *p);
        if (!p) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
        w->t = p, w->cap_t = cap;
    }
    t.offset = w->data_size;
    w->data_size = t.offset + gw_pad(t.nbytes, w->alignment);
    w->t[w->n_t++] = t;
    return BJ_OK;
}

static bj_status gw_io(bj_gguf_writer *w, bj_error *err) {
    return BJ_FAIL(err, BJ_E_IO, "%s: write failed: %s", w->tmp, strerror(errno));
}

static bool gw_zeros(FILE *f, uint64_t n) {
    static const uint8_t z[64];
    while (n) {
        size_t k = n < sizeof z ? (size_t)n : sizeof z;
        if (fwrite(z, 1, k, f) != k) return false;
        n -= k;
    }
    return true;
}

static bool gw_header(bj_gguf_writer *w) {
    bj_gguf_writer h = { 0 }; /* a scratch buffer for the fixed header and the tensor table */
    bool ok = gw_put(&h, "GGUF", 4) && gw_u32(&h, 3) && gw_u64(&h, w->n_t) && gw_u64(&h, w->n_kv);
    ok = ok && fwrite(h.kv, 1, h.kv_len, w->f) == h.kv_len && fwrite(w->kv, 1, w->kv_len, w->f) == w->kv_len;
    uint64_t pos = h.kv_len + w->kv_len;
    h.kv_len = 0;
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const gw_tensor *t = &w->t[i];
        ok = gw_str(&h, t->name, strlen(t->name)) && gw_u32(&h, (uint32_t)t->ndim);
        for (int d = 0; ok && d < t->ndim; d++) ok = gw_u64(&h, (uint64_t)t->ne[d]);
        ok = ok && gw_u32(&h, t->type) && gw_u64(&h, t->offset);
    }
    ok = ok && fwrite(h.kv, 1, h.kv_len, w->f) == h.kv_len;
    pos += h.kv_len;
    free(h.kv);
    return ok && gw_zeros(w->f, gw_pad(pos, w->alignment) - pos);
}

bj_status bj_gguf_writer_begin(bj_gguf_writer *w, const char *path, bj_error *err) {
    size_t n = strlen(path);
    w->path = strdup(path);
    w->tmp = malloc(n + 16);
    if (!w->path || !w->tmp) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    snprintf(w->tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(w->tmp);
    if (fd < 0) return BJ_FAIL(err, BJ_E_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(errno));
    fchmod(fd, 0644); /* mkstemp makes 0600; the output is an ordinary model file */
    w->f = fdopen(fd, "wb");
    if (!w->f) {
        close(fd);
        unlink(w->tmp);
        return BJ_FAIL(err, BJ_E_IO, "%s: %s", w->tmp, strerror(errno));
    }
    return gw_header(w) ? BJ_OK : gw_io(w, err);
}

bj_status bj_gguf_writer_write(bj_gguf_writer *w, const void *data, size_t n, bj_error *err) {
    const uint8_t *p = data;
    while (n) {
        if (!w->f || w->cur >= w->n_t)
            return BJ_FAIL(err, BJ_E_INVALID, "GGUF writer: %zu bytes more than the declared tensors hold", n);
        gw_tensor *t = &w->t[w->cur];
        uint64_t left = t->nbytes - w->cur_done;
        size_t k = n < left ? n : (size_t)left;
        if (fwrite(p, 1, k, w->f) != k) return gw_io(w, err);
        p += k, n -= k, w->cur_done += k;
        if (w->cur_done == t->nbytes) {
            if (!gw_zeros(w->f, gw_pad(t->nbytes, w->alignment) - t->nbytes)) return gw_io(w, err);
            w->cur++, w->cur_done = 0;
        }
    }
    return BJ_OK;
}

bj_status bj_gguf_writer_finish(bj_gguf_writer *w, bj_error *err) {
    if (!w->f) return BJ_FAIL(err, BJ_E_INVALID, "GGUF writer: finish before begin");
    if (w->cur < w->n_t)
        return BJ_FAIL(err, BJ_E_INTERNAL, "GGUF writer: tensor '%s' got %llu of its %llu bytes", w->t[w->cur].name,
                       (unsigned long long)w->cur_done, (unsigned long long)w->t[w->cur].nbytes);
    bool ok = fflush(w->f) == 0 && fsync(fileno(w->f)) == 0;
    ok = fclose(w->f) == 0 && ok;
    w->f = NULL;
    if (ok && rename(w->tmp, w->path) == 0) return BJ_OK;
    int e = errno;
    unlink(w->tmp);
    return BJ_FAIL(err, BJ_E_IO, "%s: cannot write: %s", w->path, strerror(e));
}

/* ---- ternary encoders (formats.md §1.5.3, §1.5.4, §1.5.7) ---------------------------------- */

void bj_gguf_pack_tq2_row(const int8_t *v, int64_t K, float d, uint8_t *out) {
    for (int64_t b = 0; b < K / 256; b++, v += 256, out += 66) {
        bool any = false;
        for (int j = 0; j < 64; j++) out[j] = 0;
        for (int i = 0; i < 256; i++) {
            any |= v[i] != 0;
            out[32 * (i / 128) + i % 32] |= (uint8_t)((v[i] + 1) << (2 * (i % 128 / 32)));
        }
        uint16_t h = any ? bj_f32_to_f16(d) : 0; /* ggml's d = max|x| is 0 for an all-zero block */
        out[64] = (uint8_t)h, out[65] = (uint8_t)(h >> 8);
    }
}

/* Packs n trits (first most significant) into a byte as ceil(t * 256 / 243) (ggml's rule). */
static uint8_t tq1_byte(const int8_t *v, int n, int stride) {
    unsigned q = 0;
    for (int k = 0; k < n; k++) q = q * 3 + (unsigned)(v[k * stride] + 1);
    if (n == 4) q *= 3;
    return (uint8_t)((q * 256 + 242) / 243);
}

void bj_gguf_pack_tq1_row(const int8_t *v, int64_t K, float d, uint8_t *out) {
    for (int64_t b = 0; b < K / 256; b++, v += 256, out += 54) {
        bool any = false;
        for (int i = 0; i < 256; i++) any |= v[i] != 0;
        for (int m = 0; m < 32; m++) out[m] = tq1_byte(v + m, 5, 32);
        for (int m = 0; m < 16; m++) out[32 + m] = tq1_byte(v + 160 + m, 5, 16);
        for (int j = 0; j < 4; j++) out[48 + j] = tq1_byte(v + 240 + j, 4, 4);
        uint16_t h = any ? bj_f32_to_f16(d) : 0;
        out[52] = (uint8_t)h, out[53] = (uint8_t)(h >> 8);
    }
}

void bj_gguf_pack_i2s(const int8_t *v, int64_t n, uint8_t *out) {
    memset(out, 0, (size_t)(n / 4));
    for (int64_t i = 0; i < n; i++)
        out[32 * (i >> 7) + (i & 31)] |= (uint8_t)((v[i] + 1) << (6 - 2 * ((i & 127) >> 5)));
}

/* ---- output types ----------------------------------------------------------------------------- */

static const struct { const char *name; uint32_t file_type, proj_type; } k_out[] = {
    [BJ_GGUF_OUT_I2_S] = { "i2_s", 40, BJ_GGML_I2_S },   [BJ_GGUF_OUT_TQ1_0] = { "tq1_0", 36, BJ_GGML_TQ1_0 },
    [BJ_GGUF_OUT_TQ2_0] = { "tq2_0", 37, BJ_GGML_TQ2_0 }, [BJ_GGUF_OUT_F16] = { "f16", 1, BJ_GGML_F16 },
    [BJ_GGUF_OUT_BF16] = { "bf16", 32, BJ_GGML_BF16 },
};

bool bj_gguf_outtype_parse(const char *s, bj_gguf_outtype *out) {
    for (size_t i = 0; i < BJ_COUNTOF(k_out); i++)
        if (!strcmp(s, k_out[i].name)) { *out = (bj_gguf_outtype)i; return true; }
    return false;
}

const char *bj_gguf_outtype_name(bj_gguf_outtype t) { return (unsigned)t < BJ_COUNTOF(k_out) ? k_out[t].name : "?"; }

/* The ggml type a projection with rows of K values gets (llama.cpp's F16 fallback for TQ). */
static uint32_t proj_type(bj_gguf_outtype t, int64_t K) {
    uint32_t ty = k_out[t].proj_type;
    return (ty == BJ_GGML_TQ1_0 || ty == BJ_GGML_TQ2_0) && K % 256 ? BJ_GGML_F16 : ty;
}

/* Encodes rows [rows x K] of ternary values for a projection of type ty, each value of magnitude
 * d: the TQ blocks' d, or the F16/BF16 values. I2_S stores unit codes (its scale goes in the tail
 * separately). d is 1 where the scale is written as a separate `.scale` tensor (arch bitnet) and
 * the scale itself for arch llama, which has no such tensor in llama.cpp (gw_fold). */
static void encode_rows(uint32_t ty, const int8_t *v, int64_t rows, int64_t K, float d, uint8_t *out) {
    if (ty == BJ_GGML_I2_S) { bj_gguf_pack_i2s(v, rows * K, out); return; }
    uint64_t rb = 0;
    bj_gguf_tensor_nbytes(ty, 1, &K, &rb);
    uint16_t mag = ty == BJ_GGML_F16 ? bj_f32_to_f16(d) : bj_f32_to_bf16(d);
    for (int64_t r = 0; r < rows; r++, v += K, out += rb) {
        if (ty == BJ_GGML_TQ2_0) bj_gguf_pack_tq2_row(v, K, d, out);
        else if (ty == BJ_GGML_TQ1_0) bj_gguf_pack_tq1_row(v, K, d, out);
        else {
            for (int64_t k = 0; k < K; k++) {
                uint16_t h = v[k] ? (uint16_t)(mag | (v[k] < 0 ? 0x8000 : 0)) : 0;
                out[2 * k] = (uint8_t)h, out[2 * k + 1] = (uint8_t)(h >> 8);
            }
        }
    }
}

/* Whether a projection of type ty carries its scale in its own values (TQ block d, dense
 * ternary*scale) instead of a `.scale` tensor: arch llama, whose tensor list in llama.cpp has no
 * `.scale` (its loader refuses a file with tensors it does not create: "wrong number of
 * tensors"). I2_S keeps its scale in its tail either way. */
static bool gw_fold(bool llama, uint32_t ty) { return llama && ty != BJ_GGML_I2_S; }

/* ---- metadata shared by convert and synth ---------------------------------------------------- */

typedef struct gw_meta {
    const char *name;
    int64_t hidden, ff, layers, heads, kv_heads, ctx, vocab;
    double eps, theta;
    bj_act act;
    bool llama; /* the Llama block (no sub-norms): arch `llama`, as llama.cpp / bitnet.cpp write Falcon3 */
} gw_meta;

static const char *gw_arch(bj_gguf_outtype t, const gw_meta *m) {
    if (m->llama) return "llama";
    return t == BJ_GGUF_OUT_I2_S && m->act == BJ_ACT_RELU2 ? "bitnet-b1.58" : "bitnet";
}

static bj_status gw_kv_arch(bj_gguf_writer *w, const char *arch, const char *k, uint32_t v, bj_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, k);
    return bj_gguf_kv_u32(w, key, v, err);
}

static bj_status gw_meta_write(bj_gguf_writer *w, const gw_meta *m, bj_gguf_outtype t, bj_error *err) {
    const char *a = gw_arch(t, m);
    char key[128];
    BJ_TRY(bj_gguf_kv_str(w, "general.architecture", a, err));
    BJ_TRY(bj_gguf_kv_str(w, "general.name", m->name, err));
    BJ_TRY(bj_gguf_kv_u32(w, "general.file_type", k_out[t].file_type, err));
    BJ_TRY(bj_gguf_kv_u32(w, "general.quantization_version", 2, err));
    BJ_TRY(gw_kv_arch(w, a, "vocab_size", (uint32_t)m->vocab, err));
    BJ_TRY(gw_kv_arch(w, a, "context_length", (uint32_t)m->ctx, err));
    BJ_TRY(gw_kv_arch(w, a, "embedding_length", (uint32_t)m->hidden, err));
    BJ_TRY(gw_kv_arch(w, a, "block_count", (uint32_t)m->layers, err));
    BJ_TRY(gw_kv_arch(w, a, "feed_forward_length", (uint32_t)m->ff, err));
    BJ_TRY(gw_kv_arch(w, a, "rope.dimension_count", (uint32_t)(m->hidden / m->heads), err));
    BJ_TRY(gw_kv_arch(w, a, "attention.head_count", (uint32_t)m->heads, err));
    BJ_TRY(gw_kv_arch(w, a, "attention.head_count_kv", (uint32_t)m->kv_heads, err));
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    BJ_TRY(bj_gguf_kv_f32(w, key, (float)m->eps, err));
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    BJ_TRY(bj_gguf_kv_f32(w, key, (float)m->theta, err));
    if (m->llama) return BJ_OK; /* llama is SiLU */
    snprintf(key, sizeof key, "%s.hidden_activation", a);
    return bj_gguf_kv_str(w, key, m->act == BJ_ACT_RELU2 ? "relu2" : "silu", err);
}

static bj_status gw_tok_write(bj_gguf_writer *w, const bj_tok_gguf_arrays *a, bj_error *err) {
    if (a->spm) { /* SentencePiece: llama.cpp's `llama` vocabulary */
        BJ_TRY(bj_gguf_kv_str(w, "tokenizer.ggml.model", "llama", err));
        BJ_TRY(bj_gguf_kv_arr_str(w, "tokenizer.ggml.tokens", a->tokens, (uint64_t)a->n_tokens, err));
        BJ_TRY(bj_gguf_kv_arr_f32(w, "tokenizer.ggml.scores", a->scores, (uint64_t)a->n_tokens, err));
        BJ_TRY(bj_gguf_kv_arr_i32(w, "tokenizer.ggml.token_type", a->types, (uint64_t)a->n_tokens, err));
        if (a->bos >= 0) BJ_TRY(bj_gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)a->bos, err));
        if (a->eos >= 0) BJ_TRY(bj_gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)a->eos, err));
        if (a->unk >= 0) BJ_TRY(bj_gguf_kv_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)a->unk, err));
        BJ_TRY(bj_gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", a->add_bos, err));
        BJ_TRY(bj_gguf_kv_bool(w, "tokenizer.ggml.add_space_prefix", a->add_space_prefix, err));
        return bj_gguf_kv_bool(w, "tokenizer.ggml.add_eos_token", false, err);
    }
    BJ_TRY(bj_gguf_kv_str(w, "tokenizer.ggml.model", "gpt2", err));
    BJ_TRY(bj_gguf_kv_str(w, "tokenizer.ggml.pre", "llama-bpe", err));
    BJ_TRY(bj_gguf_kv_arr_str(w, "tokenizer.ggml.tokens", a->tokens, (uint64_t)a->n_tokens, err));
    BJ_TRY(bj_gguf_kv_arr_i32(w, "tokenizer.ggml.token_type", a->types, (uint64_t)a->n_tokens, err));
    BJ_TRY(bj_gguf_kv_arr_str(w, "tokenizer.ggml.merges", a->merges, a->n_merges, err));
    if (a->bos >= 0) BJ_TRY(bj_gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)a->bos, err));
    if (a->eos >= 0) BJ_TRY(bj_gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)a->eos, err));
    BJ_TRY(bj_gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", a->add_bos, err));
    return bj_gguf_kv_bool(w, "tokenizer.ggml.add_eos_token", false, err);
}

/* Declares a projection (and its .scale unless I2_S or folded, gw_fold). */
static bj_status gw_add_proj(bj_gguf_writer *w, const char *name, bj_gguf_outtype t, int64_t N, int64_t K,
                             bool llama, bj_error *err) {
    int64_t ne[2] = { K, N }, one = 1;
    uint32_t ty = proj_type(t, K);
    BJ_TRY(bj_gguf_add_tensor(w, name, ty, 2, ne, err));
    if (ty == BJ_GGML_I2_S || gw_fold(llama, ty)) return BJ_OK;
    char sn[BJ_GGUF_MAX_NAME + 8];
    snprintf(sn, sizeof sn, "%.*s.scale", (int)(strlen(name) - 7), name); /* "x.weight" -> "x.scale" */
    return bj_gguf_add_tensor(w, sn, BJ_GGML_F32, 1, &one, err);
}

/* Writes the scale of a projection: I2_S's 32-byte tail, or the separate .scale tensor (nothing
 * when it is folded into the values, gw_fold). */
static bj_status gw_write_scale(bj_gguf_writer *w, uint32_t ty, bool llama, float scale, bj_error *err) {
    uint8_t tail[32] = { 0 };
    if (gw_fold(llama, ty)) return BJ_OK;
    memcpy(tail, &scale, 4);
    return bj_gguf_writer_write(w, tail, ty == BJ_GGML_I2_S ? 32 : 4, err);
}

/* ---- convert ------------------------------------------------------------------------------------ */

/* HF name -> GGUF name (formats.md §2.1); false if it has none. */
static bool gw_gguf_name(const char *hf, char *out, size_t cap) {
    static const char *const map[][2] = {
        { "input_layernorm", "attn_norm" }, { "self_attn.q_proj", "attn_q" }, { "self_attn.k_proj", "attn_k" },
        { "self_attn.v_proj", "attn_v" }, { "self_attn.o_proj", "attn_output" },
        { "self_attn.attn_sub_norm", "attn_sub_norm" }, { "post_attention_layernorm", "ffn_norm" },
        { "mlp.gate_proj", "ffn_gate" }, { "mlp.up_proj", "ffn_up" }, { "mlp.down_proj", "ffn_down" },
        { "mlp.ffn_sub_norm", "ffn_sub_norm" }, { "self_attn.inner_attn_ln", "attn_sub_norm" },
        { "mlp.ffn_layernorm", "ffn_sub_norm" }, /* 1bitLLM's names, as bitnet.cpp's converter maps them */
    };
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, cap, "token_embd.weight") > 0;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, cap, "output_norm.weight") > 0;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, cap, "output.weight") > 0;
    int layer, n = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &n) != 1 || n == 0) return false;
    for (size_t i = 0; i < BJ_COUNTOF(map); i++) {
        size_t k = strlen(map[i][0]);
        if (!strncmp(hf + n, map[i][0], k) && !strcmp(hf + n + k, ".weight"))
            return snprintf(out, cap, "blk.%d.%s.weight", layer, map[i][1]) < (int)cap;
    }
    return false;
}

typedef struct gw_conv {
    const bj_graph *g;
    bj_gguf_outtype type;
    bool llama;       /* permute q/k rows as llama.cpp's converter does */
    int64_t head_dim;
    uint8_t *role; /* per node: 0 not a weight, 1 float, 2 ternary (lowbit or master) */
} gw_conv;

static uint32_t float_type(bj_gguf_outtype t, const bj_node *n) {
    if (n->shape.ndim == 1) return BJ_GGML_F32;
    if (t == BJ_GGUF_OUT_F16) return BJ_GGML_F16;
    if (t == BJ_GGUF_OUT_BF16) return BJ_GGML_BF16;
    return n->dtype == BJ_DT_F32 ? BJ_GGML_F32 : n->dtype == BJ_DT_F16 ? BJ_GGML_F16 : BJ_GGML_BF16;
}

static bj_status gw_roles(gw_conv *c, bj_error *err) {
    const bj_graph *g = c->g;
    c->role = calloc(g->n_nodes ? g->n_nodes : 1, 1);
    if (!c->role) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op == BJ_OP_WEIGHT) c->role[i] = bj_dtype_is_lowbit(n->dtype) ? 2 : 1;
        if (n->op == BJ_OP_WEIGHT_QUANT) {
            if (n->iattr[0] != 0)
                return BJ_FAIL(err, BJ_E_UNSUPPORTED, "weight '%s': binary (1-bit) weights have no GGUF type",
                               g->nodes[n->in[0]].name);
            c->role[n->in[0]] = 2;
        }
        if (n->op == BJ_OP_WEIGHT && n->dtype != BJ_DT_T2HF && n->dtype != BJ_DT_T2 && n->dtype != BJ_DT_T8 &&
            c->role[i] == 2)
            return BJ_FAIL(err, BJ_E_UNSUPPORTED, "weight '%s': %s weights cannot be converted", n->name,
                           bj_dtype_name(n->dtype));
    }
    return BJ_OK;
}

static bj_status gw_declare(gw_conv *c, bj_gguf_writer *w, bj_error *err) {
    for (uint32_t i = 0; i < c->g->n_nodes; i++) {
        const bj_node *n = &c->g->nodes[i];
        char name[BJ_GGUF_MAX_NAME + 1];
        if (!c->role[i]) continue;
        if (!gw_gguf_name(n->name, name, sizeof name))
            return BJ_FAIL(err, BJ_E_UNSUPPORTED, "weight '%s' has no GGUF name%s", n->name,
                           strstr(n->name, ".rms_norm.") ? " (quantization_config.use_rms_norm models have no GGUF "
                                                           "architecture)" : "");
        int64_t ne[2] = { bj_shape_cols(n->shape), n->shape.ndim == 2 ? n->shape.d[0] : 1 };
        if (c->role[i] == 2) BJ_TRY(gw_add_proj(w, name, c->type, ne[1], ne[0], c->llama, err));
        else BJ_TRY(bj_gguf_add_tensor(w, name, float_type(c->type, n), n->shape.ndim, ne, err));
    }
    return BJ_OK;
}

static float gw_load(const bj_node *n, uint64_t i) {
    const uint8_t *p = n->data;
    if (n->dtype == BJ_DT_F32) { float f; memcpy(&f, p + 4 * i, 4); return f; }
    return n->dtype == BJ_DT_F16 ? bj_f16_to_f32(bj_rd16(p + 2 * i)) : bj_bf16_to_f32(bj_rd16(p + 2 * i));
}

/* Ternary values of a weight node: decoded (t2hf, t2, t8) or quantized from a master with
 * runtime/ops.c's absmean rule (same float order, so the values and scale are identical). */
static void gw_ternary(const bj_node *n, int8_t *v, double *scale) {
    int64_t N = n->shape.d[0], K = n->shape.d[1], NK = N * K;
    const uint8_t *d = n->data;
    if (bj_dtype_is_lowbit(n->dtype)) {
        for (int64_t r = 0; r < N; r++)
            for (int64_t k = 0; k < K; k++) {
                int x = n->dtype == BJ_DT_T8 ? (int8_t)d[r * K + k]
                        : n->dtype == BJ_DT_T2 ? ((d[r * ((K + 3) / 4) + k / 4] >> (2 * (k % 4))) & 3) - 1
                                               : ((d[(r % (N / 4)) * K + k] >> (2 * (r / (N / 4)))) & 3) - 1;
                v[r * K + k] = (int8_t)(x > 1 ? 0 : x); /* code 3 is invalid: 0 (formats.md §3.4) */
            }
        *scale = n->fattr[0];
        return;
    }
    double sum_abs = 0;
    for (int64_t i = 0; i < NK; i++) sum_abs += fabsf(gw_load(n, (uint64_t)i));
    float g = fmaxf((float)sum_abs * (1.0f / (float)NK), 1e-5f), inv = 1.0f / g;
    for (int64_t i = 0; i < NK; i++) {
        float r = rintf(gw_load(n, (uint64_t)i) * inv);
        v[i] = (int8_t)(r > 1 ? 1 : r < -1 ? -1 : r);
    }
    *scale = g;
}

/* llama.cpp's LlamaModel.permute of q/k rows (docs/formats-families.md): HF row h*hd + s*hd/2 + j
 * goes to GGUF row h*hd + 2*j + s. */
static bj_status gw_permute_rows(int8_t *v, int64_t N, int64_t K, int64_t hd, bj_error *err) {
    if (hd <= 0 || hd % 2 || N % hd) return BJ_FAIL(err, BJ_E_FORMAT, "%lld rows are not whole heads of %lld", (long long)N, (long long)hd);
    int8_t *tmp = malloc((size_t)(N * K));
    if (!tmp) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    for (int64_t r = 0; r < N; r++) {
        int64_t h = r / hd, j = r % hd, half = hd / 2, g = h * hd + 2 * (j % half) + j / half;
        memcpy(tmp + g * K, v + r * K, (size_t)K);
    }
    memcpy(v, tmp, (size_t)(N * K));
    free(tmp);
    return BJ_OK;
}

static bj_status gw_write_proj(gw_conv *c, bj_gguf_writer *w, const bj_node *n, bj_error *err) {
    int64_t N = n->shape.d[0], K = n->shape.d[1];
    uint32_t ty = proj_type(c->type, K);
    uint64_t nb;
    bj_gguf_tensor_nbytes(ty, 2, (int64_t[]){ K, N }, &nb);
    int8_t *v = malloc((size_t)(N * K));
    uint8_t *out = malloc((size_t)nb);
    bj_status s = BJ_OK;
    if (!v || !out) s = BJ_FAIL(err, BJ_E_NOMEM, "out of memory converting '%s'", n->name);
    if (s == BJ_OK) {
        double scale;
        gw_ternary(n, v, &scale);
        size_t ln = strlen(n->name);
        bool qk = ln > 14 && (!strcmp(n->name + ln - 14, ".q_proj.weight") || !strcmp(n->name + ln - 14, ".k_proj.weight"));
        if (c->llama && qk) s = gw_permute_rows(v, N, K, c->head_dim, err);
        if (s == BJ_OK) encode_rows(ty, v, N, K, gw_fold(c->llama, ty) ? (float)scale : 1.0f, out);
        if (s == BJ_OK) s = bj_gguf_writer_write(w, out, (size_t)(ty == BJ_GGML_I2_S ? nb - 32 : nb), err);
        if (s == BJ_OK) s = gw_write_scale(w, ty, c->llama, (float)scale, err);
    }
    free(v);
    free(out);
    return s;
}

static bj_status gw_write_float(gw_conv *c, bj_gguf_writer *w, const bj_node *n, bj_error *err) {
    uint32_t ty = float_type(c->type, n);
    uint64_t count = (uint64_t)bj_shape_cols(n->shape) * (uint64_t)(n->shape.ndim == 2 ? n->shape.d[0] : 1);
    uint8_t buf[4096];
    size_t esz = ty == BJ_GGML_F32 ? 4 : 2, k = 0;
    for (uint64_t i = 0; i < count; i++) {
        float f = gw_load(n, i);
        uint16_t h = ty == BJ_GGML_F16 ? bj_f32_to_f16(f) : bj_f32_to_bf16(f);
        if (ty == BJ_GGML_F32) memcpy(buf + k, &f, 4);
        else buf[k] = (uint8_t)h, buf[k + 1] = (uint8_t)(h >> 8);
        if ((k += esz) == sizeof buf) { BJ_TRY(bj_gguf_writer_write(w, buf, k, err)); k = 0; }
    }
    return bj_gguf_writer_write(w, buf, k, err);
}

static bj_status gw_convert_all(gw_conv *c, bj_gguf_writer *w, const char *out_path, bj_gguf_progress_fn progress,
                                void *ud, bj_error *err) {
    BJ_TRY(gw_roles(c, err));
    BJ_TRY(gw_declare(c, w, err));
    BJ_TRY(bj_gguf_writer_begin(w, out_path, err));
    uint64_t total = 0, done = 0;
    for (uint32_t i = 0; i < c->g->n_nodes; i++) total += c->role[i] != 0;
    for (uint32_t i = 0; i < c->g->n_nodes; i++) {
        const bj_node *n = &c->g->nodes[i];
        if (!c->role[i]) continue;
        if (c->role[i] == 2) BJ_TRY(gw_write_proj(c, w, n, err));
        else BJ_TRY(gw_write_float(c, w, n, err));
        if (progress) progress(ud, n->name, ++done, total);
    }
    return bj_gguf_writer_finish(w, err);
}

bj_status bj_gguf_convert(const bj_graph *gr, const bj_model_config *c, const bj_tokenizer *tok,
                          bj_gguf_outtype type, const char *out_path, bj_gguf_progress_fn progress, void *ud,
                          bj_error *err) {
    gw_meta m = { "bitjit-convert", c->hidden, c->intermediate, c->n_layer, c->n_head, c->n_kv_head, c->max_seq,
                  c->vocab, c->rms_eps, c->rope_theta, c->act, c->block == BJ_BLOCK_LLAMA };
    if (c->proj_norm)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "quantization_config.use_rms_norm (an RMSNorm inside every BitLinear) "
                       "has no GGUF architecture; this model cannot be written as GGUF");
    if (c->block == BJ_BLOCK_LLAMA && c->act != BJ_ACT_SILU)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "GGUF arch llama is SiLU; this model's activation is relu2");
    if (c->head_dim * c->n_head != c->hidden)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "head_dim %lld x %lld heads != hidden %lld: not expressible in GGUF",
                       (long long)c->head_dim, (long long)c->n_head, (long long)c->hidden);
    bj_gguf_writer *w;
    bj_tok_gguf_arrays a;
    BJ_TRY(bj_gguf_writer_new(&w, BJ_GGUF_DEFAULT_ALIGNMENT, err));
    bj_status s = bj_tok_gguf_export(tok, &a, err);
    if (s != BJ_OK) { bj_gguf_writer_free(w); return s; }
    gw_conv cv = { gr, type, c->block == BJ_BLOCK_LLAMA, c->head_dim, NULL };
    s = gw_meta_write(w, &m, type, err);
    if (s == BJ_OK) s = gw_tok_write(w, &a, err);
    if (s == BJ_OK) s = gw_convert_all(&cv, w, out_path, progress, ud, err);
    free(cv.role);
    bj_tok_gguf_arrays_free(&a);
    bj_gguf_writer_free(w);
    return s;
}

/* ---- synth --------------------------------------------------------------------------------------- */

static const bj_gguf_shape k_shapes[] = {
    { "2b4t", 2560, 6912, 30, 20, 5, 128256, 4096, 500000.0, BJ_ACT_RELU2, false },
    { "large", 1536, 4096, 24, 16, 16, 32002, 2048, 10000.0, BJ_ACT_SILU, false },
    { "3b", 3200, 8640, 26, 32, 32, 32002, 2048, 10000.0, BJ_ACT_SILU, false },
    /* Falcon3-*-Instruct-1.58bit and Llama3-8B-1.58 (their config.json): LlamaForCausalLM, GGUF arch llama */
    { "falcon3-1b", 2048, 8192, 18, 8, 4, 131072, 8192, 1000042.0, BJ_ACT_SILU, true },
    { "falcon3-3b", 3072, 9216, 22, 12, 4, 131072, 32768, 1000042.0, BJ_ACT_SILU, true },
    { "falcon3-7b", 3072, 23040, 28, 12, 4, 131072, 32768, 1000042.0, BJ_ACT_SILU, true },
    { "falcon3-10b", 3072, 23040, 40, 12, 4, 131072, 32768, 1000042.0, BJ_ACT_SILU, true },
    { "llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0, BJ_ACT_SILU, true },
    { "tiny", 256, 512, 2, 4, 2, 384, 256, 10000.0, BJ_ACT_RELU2, false },      /* for tests */
    { "llama-tiny", 256, 512, 2, 4, 2, 384, 256, 10000.0, BJ_ACT_SILU, true }, /* for tests */
};

const bj_gguf_shape *bj_gguf_shape_at(size_t i) { return i < BJ_COUNTOF(k_shapes) ? &k_shapes[i] : NULL; }

const bj_gguf_shape *bj_gguf_shape_find(const char *name) {
    for (size_t i = 0; i < BJ_COUNTOF(k_shapes); i++)
        if (!strcmp(name, k_shapes[i].name)) return &k_shapes[i];
    return NULL;
}

typedef struct gw_rng { uint64_t s; } gw_rng; /* splitmix64: one stream per tensor */

static uint64_t rng_next(gw_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_unit(gw_rng *r) { return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* Two standard normals (Box-Muller). */
static void rng_gauss2(gw_rng *r, float *a, float *b) {
    double u = rng_unit(r), v = rng_unit(r), m = sqrt(-2.0 * log(u));
    *a = (float)(m * cos(6.283185307179586 * v));
    *b = (float)(m * sin(6.283185307179586 * v));
}

/* Ternary values of one master row: rint(w / gamma) clipped, gamma = E|w| = sqrt(2/pi). */
static void synth_ternary(gw_rng *r, int8_t *v, int64_t n) {
    const float inv = 1.0f / 0.7978845608f;
    for (int64_t i = 0; i < n; i += 2) {
        float a, b;
        rng_gauss2(r, &a, &b);
        float q0 = rintf(a * inv), q1 = rintf(b * inv);
        v[i] = (int8_t)(q0 > 1 ? 1 : q0 < -1 ? -1 : q0);
        if (i + 1 < n) v[i + 1] = (int8_t)(q1 > 1 ? 1 : q1 < -1 ? -1 : q1);
    }
}

typedef struct gw_synth {
    const bj_gguf_shape *s;
    bj_gguf_outtype type;
    uint64_t seed;
    bj_gguf_writer *w;
    uint64_t done, total;
    bj_gguf_progress_fn progress;
    void *ud;
} gw_synth;

/* Every synthesized projection's scale: E|w| of the N(0, 0.02^2) master the ternary rows stand for. */
static const float k_synth_scale = 0.7978845608f * 0.02f;

static int64_t gcd64(int64_t a, int64_t b) { return b ? gcd64(b, a % b) : a; }

static bj_status synth_proj(gw_synth *y, const char *name, int64_t N, int64_t K, bj_error *err) {
    gw_rng r = { y->seed ^ (0x5851F42D4C957F2Dull * (y->done + 1)) };
    uint32_t ty = proj_type(y->type, K);
    int64_t chunk = ty == BJ_GGML_I2_S ? 128 / gcd64(K, 128) : 1; /* whole 128-value I2_S groups per chunk */
    uint64_t cb;
    bj_gguf_tensor_nbytes(ty == BJ_GGML_I2_S ? BJ_GGML_F16 : ty, 2, (int64_t[]){ K, chunk }, &cb);
    if (ty == BJ_GGML_I2_S) cb = (uint64_t)(chunk * K / 4);
    int8_t *v = malloc((size_t)(chunk * K));
    uint8_t *out = malloc((size_t)cb);
    bj_status s = v && out ? BJ_OK : BJ_FAIL(err, BJ_E_NOMEM, "out of memory synthesizing '%s'", name);
    for (int64_t row = 0; row < N && s == BJ_OK; row += chunk) {
        synth_ternary(&r, v, chunk * K);
        encode_rows(ty, v, chunk, K, gw_fold(y->s->llama, ty) ? k_synth_scale : 1.0f, out);
        s = bj_gguf_writer_write(y->w, out, (size_t)cb, err);
    }
    free(v);
    free(out);
    return s == BJ_OK ? gw_write_scale(y->w, ty, y->s->llama, k_synth_scale, err) : s;
}

static bj_status synth_float(gw_synth *y, const char *name, int64_t N, int64_t K, bool gauss, bj_error *err) {
    gw_rng r = { y->seed ^ (0x5851F42D4C957F2Dull * (y->done + 1)) };
    bool f32 = N == 1, bf = y->type == BJ_GGUF_OUT_BF16;
    size_t esz = f32 ? 4 : 2;
    uint8_t *buf = malloc((size_t)K * esz + 4);
    if (!buf) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory synthesizing '%s'", name);
    bj_status s = BJ_OK;
    for (int64_t row = 0; row < N && s == BJ_OK; row++) {
        for (int64_t k = 0; k < K; k += 2) {
            float a = 1.0f, b = 1.0f;
            if (gauss) { rng_gauss2(&r, &a, &b); a *= 0.02f, b *= 0.02f; }
            for (int j = 0; j < 2 && k + j < K; j++) {
                float f = j ? b : a;
                uint16_t h = bf ? bj_f32_to_bf16(f) : bj_f32_to_f16(f);
                if (f32) memcpy(buf + 4 * (k + j), &f, 4);
                else buf[2 * (k + j)] = (uint8_t)h, buf[2 * (k + j) + 1] = (uint8_t)(h >> 8);
            }
        }
        s = bj_gguf_writer_write(y->w, buf, (size_t)K * esz, err);
    }
    free(buf);
    return s;
}

typedef enum { SY_EMBED, SY_NORM, SY_PROJ } sy_kind;
typedef struct sy_tensor { char name[BJ_GGUF_MAX_NAME + 1]; sy_kind kind; int64_t N, K; } sy_tensor;

/* Tensor i of the model in file order (token_embd, 11 per layer (9 for llama: no sub-norms),
 * output_norm, and output for llama); false past the end. */
static bool synth_tensor(const bj_gguf_shape *s, uint64_t i, sy_tensor *t) {
    int64_t d = s->hidden, f = s->intermediate, dkv = s->n_kv_head * (s->hidden / s->n_head);
    static const struct { const char *n; sy_kind k; int out, in; } L[11] = {
        /* out/in: 0 = d, 1 = f, 2 = dkv, 3 = none (1-D) */
        { "attn_norm", SY_NORM, 0, 3 }, { "attn_q", SY_PROJ, 0, 0 }, { "attn_k", SY_PROJ, 2, 0 },
        { "attn_v", SY_PROJ, 2, 0 }, { "attn_sub_norm", SY_NORM, 0, 3 }, { "attn_output", SY_PROJ, 0, 0 },
        { "ffn_norm", SY_NORM, 0, 3 }, { "ffn_gate", SY_PROJ, 1, 0 }, { "ffn_up", SY_PROJ, 1, 0 },
        { "ffn_sub_norm", SY_NORM, 1, 3 }, { "ffn_down", SY_PROJ, 0, 1 },
    };
    static const int llama_rows[9] = { 0, 1, 2, 3, 5, 6, 7, 8, 10 }; /* L without the sub-norms */
    const int64_t dim[3] = { d, f, dkv };
    uint64_t per = s->llama ? 9 : 11, nl = per * (uint64_t)s->n_layer;
    if (i == 0) { *t = (sy_tensor){ "token_embd.weight", SY_EMBED, s->vocab, d }; return true; }
    if (i == 1 + nl) { *t = (sy_tensor){ "output_norm.weight", SY_NORM, 1, d }; return true; }
    if (s->llama && i == 2 + nl) { *t = (sy_tensor){ "output.weight", SY_EMBED, s->vocab, d }; return true; }
    if (i > 1 + nl) return false;
    uint64_t l = (i - 1) / per, j = (i - 1) % per;
    if (s->llama) j = (uint64_t)llama_rows[j];
    snprintf(t->name, sizeof t->name, "blk.%llu.%s.weight", (unsigned long long)l, L[j].n);
    t->kind = L[j].k;
    t->N = L[j].in == 3 ? 1 : dim[L[j].out];
    t->K = L[j].in == 3 ? dim[L[j].out] : dim[L[j].in];
    return true;
}

static bj_status synth_declare(gw_synth *y, bj_error *err) {
    sy_tensor t;
    uint32_t emb = y->type == BJ_GGUF_OUT_BF16 ? BJ_GGML_BF16 : BJ_GGML_F16;
    for (uint64_t i = 0; synth_tensor(y->s, i, &t); i++, y->total++) {
        int64_t ne[2] = { t.K, t.N };
        if (t.kind == SY_PROJ) BJ_TRY(gw_add_proj(y->w, t.name, y->type, t.N, t.K, y->s->llama, err));
        else BJ_TRY(bj_gguf_add_tensor(y->w, t.name, t.kind == SY_NORM ? BJ_GGML_F32 : emb, t.kind == SY_NORM ? 1 : 2,
                                       ne, err));
    }
    return BJ_OK;
}

static bj_status synth_tokens(gw_synth *y, bj_error *err) {
    bj_tok_gguf_arrays a = { 0 };
    bj_arena_init(&a.arena);
    int32_t n = (int32_t)y->s->vocab;
    a.n_tokens = n;
    a.tokens = bj_arena_alloc(&a.arena, (size_t)n * sizeof *a.tokens, 8);
    a.types = bj_arena_alloc(&a.arena, (size_t)n * sizeof *a.types, 8);
    a.bos = n == 128256 ? 128000 : n - 2;
    a.eos = a.bos + 1;
    a.add_bos = true;
    bool ok = a.tokens && a.types;
    for (int32_t i = 0; ok && i < n; i++) {
        char buf[40];
        int k = i < 256 ? (int)(bj_tok_byte_to_cp((uint8_t)i) < 0x80 ? 1 : 2) : 0;
        uint32_t cp = i < 256 ? bj_tok_byte_to_cp((uint8_t)i) : 0;
        if (k == 1) buf[0] = (char)cp;
        else if (k == 2) buf[0] = (char)(0xC0 | cp >> 6), buf[1] = (char)(0x80 | (cp & 0x3F));
        else k = snprintf(buf, sizeof buf, i == a.bos ? "<|begin_of_text|>" : i == a.eos ? "<|end_of_text|>"
                                                                                       : "<|synth_%d|>", (int)i);
        a.tokens[i] = (bj_gguf_str){ bj_arena_strndup(&a.arena, buf, (size_t)k), (uint64_t)k };
        a.types[i] = i < 256 ? 1 : (i == a.bos || i == a.eos) ? 3 : 5;
        ok = a.tokens[i].s != NULL;
    }
    bj_status s = ok ? gw_tok_write(y->w, &a, err) : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    bj_arena_free(&a.arena);
    return s;
}

static bj_status synth_data(gw_synth *y, bj_error *err) {
    sy_tensor t;
    for (uint64_t i = 0; synth_tensor(y->s, i, &t); i++) {
        if (t.kind == SY_PROJ) BJ_TRY(synth_proj(y, t.name, t.N, t.K, err));
        else BJ_TRY(synth_float(y, t.name, t.N, t.K, t.kind == SY_EMBED, err));
        y->done++;
        if (y->progress) y->progress(y->ud, t.name, y->done, y->total);
    }
    return BJ_OK;
}

bj_status bj_gguf_synth(const bj_gguf_shape *s, bj_gguf_outtype type, uint64_t seed, const char *out_path,
                        bj_gguf_progress_fn progress, void *ud, bj_error *err) {
    if ((type == BJ_GGUF_OUT_TQ1_0 || type == BJ_GGUF_OUT_TQ2_0) && (s->hidden % 256 || s->intermediate % 256))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "shape %s: hidden %lld / intermediate %lld are not multiples of 256, "
                       "which %s blocks need (use i2_s)", s->name, (long long)s->hidden, (long long)s->intermediate,
                       bj_gguf_outtype_name(type));
    gw_meta m = { s->name, s->hidden, s->intermediate, s->n_layer, s->n_head, s->n_kv_head, s->ctx, s->vocab,
                  1e-5, s->rope_theta, s->act, s->llama };
    gw_synth y = { s, type, seed, NULL, 0, 0, progress, ud };
    BJ_TRY(bj_gguf_writer_new(&y.w, BJ_GGUF_DEFAULT_ALIGNMENT, err));
    bj_status st = gw_meta_write(y.w, &m, type, err);
    if (st == BJ_OK) st = synth_tokens(&y, err);
    if (st == BJ_OK) st = synth_declare(&y, err);
    if (st == BJ_OK) st = bj_gguf_writer_begin(y.w, out_path, err);
    if (st == BJ_OK) st = synth_data(&y, err);
    if (st == BJ_OK) st = bj_gguf_writer_finish(y.w, err);
    bj_gguf_writer_free(y.w);
    return st;
}
