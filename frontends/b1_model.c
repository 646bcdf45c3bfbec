/* frontends/b1_model.c -- writing bitjit's binary model format (layout in b1_model.h and
 * docs/formats-bitjit.md): a small streaming safetensors writer (header first, then each
 * tensor's bytes in declaration order), the staging directory renamed into place at the end,
 * and the two producers: conversion of a loaded binary model and a synthetic model of a
 * published shape. Reading needs nothing here: the HF importer (arch_bitnet.c) takes the
 * U8 [out, ceil(in/8)] projections of a weight_quant "binary" config as b1 weights. */
#include "frontends/b1_model.h"

#include "ir/weights.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- safetensors writer ------------------------------------------------------------------ */
typedef struct st_entry {
    char name[256];
    const char *dtype;    /* "U8", "F32", "F16", "BF16" */
    int ndim;
    int64_t shape[2];
    uint64_t nbytes;
} st_entry;

typedef struct st_writer {
    st_entry *e;
    size_t n, cap;
    FILE *f;
    char path[4096];
    size_t cur;           /* entry being written */
    uint64_t cur_done;    /* its bytes so far */
} st_writer;

static bj_status st_add(st_writer *w, const char *name, const char *dtype, int ndim, int64_t d0, int64_t d1,
                        uint64_t nbytes, bj_error *err) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        st_entry *e = realloc(w->e, cap * sizeof *e);
        if (!e) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
        w->e = e;
        w->cap = cap;
    }
    if (strlen(name) >= sizeof w->e->name) return BJ_FAIL(err, BJ_E_INVALID, "tensor name too long: %.64s...", name);
    st_entry *e = &w->e[w->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->dtype = dtype;
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = d1;
    e->nbytes = nbytes;
    return BJ_OK;
}

/* The header (JSON, padded with spaces to a multiple of 8) with offsets in declaration order. */
static bj_status st_begin(st_writer *w, const char *path, bj_error *err) {
    json_t *h = json_object();
    uint64_t off = 0;
    for (size_t i = 0; h && i < w->n; i++) {
        const st_entry *e = &w->e[i];
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        json_t *t = json_pack("{s:s, s:o, s:[I,I]}", "dtype", e->dtype, "shape", shape, "data_offsets",
                              (json_int_t)off, (json_int_t)(off + e->nbytes));
        if (!t || json_object_set_new(h, e->name, t)) { json_decref(h); h = NULL; }
        off += e->nbytes;
    }
    char *text = h ? json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(h);
    if (!text) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the safetensors header");
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->f = fopen(path, "wb");
    bool ok = w->f != NULL;
    uint8_t n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    ok = ok && fwrite(n8, 1, 8, w->f) == 8 && fwrite(text, 1, len, w->f) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', w->f) != EOF;
    free(text);
    return ok ? BJ_OK : BJ_FAIL(err, BJ_E_IO, "%s: cannot write: %s", path, strerror(errno));
}

/* Bytes of the current tensor, in order; a tensor may come in several pieces. */
static bj_status st_write(st_writer *w, const void *data, uint64_t n, bj_error *err) {
    if (w->cur >= w->n || w->cur_done + n > w->e[w->cur].nbytes)
        return BJ_FAIL(err, BJ_E_INTERNAL, "%s: more bytes than declared for tensor %zu", w->path, w->cur);
    if (n && fwrite(data, 1, (size_t)n, w->f) != n) return BJ_FAIL(err, BJ_E_IO, "%s: cannot write: %s", w->path, strerror(errno));
    w->cur_done += n;
    if (w->cur_done == w->e[w->cur].nbytes) { w->cur++; w->cur_done = 0; }
    return BJ_OK;
}

static bj_status st_finish(st_writer *w, bj_error *err) {
    bool complete = w->cur == w->n;
    int rc = fclose(w->f);
    w->f = NULL;
    if (!complete) return BJ_FAIL(err, BJ_E_INTERNAL, "%s: tensor '%s' not written", w->path, w->e[w->cur].name);
    return rc == 0 ? BJ_OK : BJ_FAIL(err, BJ_E_IO, "%s: cannot write: %s", w->path, strerror(errno));
}

static void st_free(st_writer *w) {
    if (w->f) fclose(w->f);
    free(w->e);
    memset(w, 0, sizeof *w);
}

/* ---- the staging directory --------------------------------------------------------------- */
typedef struct stage { char out[4096], tmp[4200]; bool made; } stage;

static bj_status stage_open(stage *s, const char *out, bj_error *err) {
    memset(s, 0, sizeof *s);
    if (strlen(out) >= sizeof s->out) return BJ_FAIL(err, BJ_E_INVALID, "%s: path too long", out);
    snprintf(s->out, sizeof s->out, "%s", out);
    struct stat st;
    if (stat(out, &st) == 0) {
        DIR *d = S_ISDIR(st.st_mode) ? opendir(out) : NULL;
        bool empty = d != NULL;
        for (struct dirent *de; d && (de = readdir(d));)
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = false;
        if (d) closedir(d);
        if (!empty) return BJ_FAIL(err, BJ_E_IO, "%s: exists and is not an empty directory; remove it first", out);
    }
    snprintf(s->tmp, sizeof s->tmp, "%s.tmp-%ld", out, (long)getpid());
    if (mkdir(s->tmp, 0777) != 0) return BJ_FAIL(err, BJ_E_IO, "%s: cannot create: %s", s->tmp, strerror(errno));
    s->made = true;
    return BJ_OK;
}

static bj_status stage_path(const stage *s, const char *name, char *buf, size_t cap, bj_error *err) {
    return bj_path_join(buf, cap, s->tmp, name, err);
}

/* Success: rename into place. Failure: remove what was written. */
static bj_status stage_close(stage *s, bj_status st, bj_error *err) {
    if (!s->made) return st;
    if (st == BJ_OK && rename(s->tmp, s->out) == 0) return BJ_OK;
    if (st == BJ_OK) st = BJ_FAIL(err, BJ_E_IO, "%s: cannot rename to %s: %s", s->tmp, s->out, strerror(errno));
    DIR *d = opendir(s->tmp);
    for (struct dirent *de; d && (de = readdir(d));) {
        char p[8192];
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            snprintf(p, sizeof p, "%s/%s", s->tmp, de->d_name) < (int)sizeof p)
            unlink(p);
    }
    if (d) closedir(d);
    rmdir(s->tmp);
    return st;
}

static bj_status write_json(const stage *s, const char *name, json_t *j, bj_error *err) {
    char p[8192];
    BJ_TRY(stage_path(s, name, p, sizeof p, err));
    if (!j || json_dump_file(j, p, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        return BJ_FAIL(err, BJ_E_IO, "%s: cannot write", p);
    return BJ_OK;
}

static json_t *binary_quant_config(void) {
    return json_pack("{s:s, s:s, s:s, s:s}", "quant_method", "bitnet", "linear_class", "autobitlinear",
                     "quantization_mode", "offline", "weight_quant", "binary");
}

/* ---- convert ------------------------------------------------------------------------------ */
typedef struct b1_proj {
    uint32_t node;     /* the matmul's weight operand (WEIGHT or WEIGHT_QUANT) */
    const char *name;  /* the HF tensor name */
    int64_t N, K;
    uint8_t *bits;     /* N * ceil(K/8) */
    float scale;
} b1_proj;

typedef struct b1_conv {
    const bj_graph *g;
    b1_proj *p;
    size_t n;
    bool *skip;        /* per node: a master written as b1, not as float */
} b1_conv;

static uint32_t matmul_weight(const bj_node *n) {
    if (n->op == BJ_OP_MATMUL_T || n->op == BJ_OP_MATMUL_TK) return n->in[1];
    if (n->op == BJ_OP_BITLINEAR) return n->in[2];
    return BJ_NONE;
}

/* Every BitLinear weight as b1 bits; an error names the first that is not binary. */
static bj_status conv_projs(b1_conv *c, bj_error *err) {
    const bj_graph *g = c->g;
    c->p = calloc(g->n_nodes, sizeof *c->p);
    c->skip = calloc(g->n_nodes, sizeof *c->skip);
    if (!c->p || !c->skip) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        uint32_t wid = matmul_weight(&g->nodes[i]);
        if (wid == BJ_NONE || c->skip[wid]) continue;
        const bj_node *w = &g->nodes[wid];
        const bj_node *src = w->op == BJ_OP_WEIGHT_QUANT ? &g->nodes[w->in[0]] : w;
        if (bj_dtype_class_of((bj_dtype)w->dtype) != BJ_DTC_BINARY)
            return BJ_FAIL(err, BJ_E_UNSUPPORTED, "tensor '%s' is ternary (%s); only binary models "
                           "(quantization_config.weight_quant \"binary\") can be written as b1",
                           src->name ? src->name : "?", bj_dtype_name((bj_dtype)w->dtype));
        b1_proj *p = &c->p[c->n++];
        p->node = wid;
        p->name = src->name;
        p->N = w->shape.d[0];
        p->K = w->shape.d[1];
        int8_t *v;
        double scale;
        BJ_TRY(bj_ir_lowbit_values(g, wid, &v, &scale, err));
        p->bits = malloc((size_t)(p->N * ((p->K + 7) / 8)) + 1);
        if (!p->bits) { free(v); return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for '%s'", p->name); }
        bj_ir_pack_b1(v, p->N, p->K, p->bits);
        free(v);
        p->scale = (float)scale; /* exact: every scale the importer makes is an f32 value */
        c->skip[wid] = true;
        if (src != w) c->skip[w->in[0]] = true;
    }
    return BJ_OK;
}

static const char *st_float_dtype(bj_dtype dt) {
    return dt == BJ_DT_F32 ? "F32" : dt == BJ_DT_F16 ? "F16" : dt == BJ_DT_BF16 ? "BF16" : NULL;
}

/* Tensors in graph order: float weights as they are, each projection as bits + scale. */
static bj_status conv_declare(b1_conv *c, st_writer *w, bj_error *err) {
    const bj_graph *g = c->g;
    size_t pi = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (pi < c->n && c->p[pi].node == i) {
            const b1_proj *p = &c->p[pi++];
            char sname[300];
            snprintf(sname, sizeof sname, "%s_scale", p->name);
            BJ_TRY(st_add(w, p->name, "U8", 2, p->N, (p->K + 7) / 8, (uint64_t)(p->N * ((p->K + 7) / 8)), err));
            BJ_TRY(st_add(w, sname, "F32", 1, 1, 0, 4, err));
            continue;
        }
        if (n->op != BJ_OP_WEIGHT || c->skip[i]) continue;
        const char *dt = st_float_dtype((bj_dtype)n->dtype);
        if (!dt) return BJ_FAIL(err, BJ_E_UNSUPPORTED, "tensor '%s': %s cannot be written to safetensors", n->name,
                                bj_dtype_name((bj_dtype)n->dtype));
        BJ_TRY(st_add(w, n->name, dt, n->shape.ndim, n->shape.d[0], n->shape.ndim > 1 ? n->shape.d[1] : 0, n->nbytes, err));
    }
    return BJ_OK;
}

static bj_status conv_data(b1_conv *c, st_writer *w, bj_gguf_progress_fn progress, void *ud, bj_error *err) {
    const bj_graph *g = c->g;
    size_t pi = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        const char *what = NULL;
        if (pi < c->n && c->p[pi].node == i) {
            const b1_proj *p = &c->p[pi++];
            BJ_TRY(st_write(w, p->bits, (uint64_t)(p->N * ((p->K + 7) / 8)), err));
            BJ_TRY(st_write(w, &p->scale, 4, err));
            what = p->name;
        } else if (n->op == BJ_OP_WEIGHT && !c->skip[i]) {
            BJ_TRY(st_write(w, n->data, n->nbytes, err));
            what = n->name;
        }
        if (what && progress) progress(ud, what, w->cur, w->n);
    }
    return BJ_OK;
}

/* The directory of the source model (tokenizer and config live there). */
static bj_status src_dir(const char *src_path, char *dir, size_t cap, bj_error *err) {
    if (strlen(src_path) >= cap) return BJ_FAIL(err, BJ_E_INVALID, "%s: path too long", src_path);
    if (bj_path_is_dir(src_path) == 1) { snprintf(dir, cap, "%s", src_path); return BJ_OK; }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", src_path);
    snprintf(dir, cap, "%s", dirname(tmp));
    return BJ_OK;
}

static bj_status copy_file(const char *from, const char *to, bj_error *err) {
    char *text;
    size_t len;
    BJ_TRY(bj_read_file(from, &text, &len, err));
    FILE *f = fopen(to, "wb");
    bool ok = f && fwrite(text, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = false;
    free(text);
    return ok ? BJ_OK : BJ_FAIL(err, BJ_E_IO, "%s: cannot write: %s", to, strerror(errno));
}

static bj_status conv_side_files(const stage *s, const char *dir, bj_error *err) {
    static const char *const files[] = { "tokenizer.json", "tokenizer_config.json", "generation_config.json" };
    char from[4096], to[8192];
    for (size_t i = 0; i < BJ_COUNTOF(files); i++) {
        BJ_TRY(bj_path_join(from, sizeof from, dir, files[i], err));
        if (i > 0 && access(from, R_OK) != 0) continue; /* optional */
        BJ_TRY(stage_path(s, files[i], to, sizeof to, err));
        BJ_TRY(copy_file(from, to, err));
    }
    BJ_TRY(bj_path_join(from, sizeof from, dir, "config.json", err));
    json_error_t je;
    json_t *cfg = json_load_file(from, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: cannot read the source config: %s", from, je.text);
    }
    json_object_set_new(cfg, "quantization_config", binary_quant_config());
    bj_status st = write_json(s, "config.json", cfg, err);
    json_decref(cfg);
    return st;
}

bj_status bj_b1_convert(const bj_model *m, const char *src_path, const char *out_dir, bj_gguf_progress_fn progress,
                        void *ud, bj_error *err) {
    if (m->gguf)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: b1 output needs an HF binary model (GGUF has no binary weights)", src_path);
    b1_conv c = { .g = &m->graph };
    st_writer w = { 0 };
    stage sg;
    char dir[4096], path[8192];
    bj_status st = conv_projs(&c, err);
    if (st == BJ_OK) st = src_dir(src_path, dir, sizeof dir, err);
    if (st == BJ_OK) st = conv_declare(&c, &w, err);
    if (st == BJ_OK) st = stage_open(&sg, out_dir, err);
    else sg.made = false;
    if (st == BJ_OK) st = conv_side_files(&sg, dir, err);
    if (st == BJ_OK) st = stage_path(&sg, "model.safetensors", path, sizeof path, err);
    if (st == BJ_OK) st = st_begin(&w, path, err);
    if (st == BJ_OK) st = conv_data(&c, &w, progress, ud, err);
    if (st == BJ_OK) st = st_finish(&w, err);
    st_free(&w);
    st = stage_close(&sg, st, err);
    for (size_t i = 0; i < c.n; i++) free(c.p[i].bits);
    free(c.p);
    free(c.skip);
    return st;
}

/* ---- synth ---------------------------------------------------------------------------------- */
static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef enum { SB_EMBED, SB_NORM, SB_PROJ } sb_kind;
typedef struct sb_tensor { char name[160]; sb_kind kind; int64_t N, K; } sb_tensor;

/* Tensor i of the model in file order (embedding, 11 per layer, final norm); false past the end. */
static bool sb_tensor_at(const bj_gguf_shape *s, uint64_t i, sb_tensor *t) {
    int64_t d = s->hidden, f = s->intermediate, dkv = s->n_kv_head * (s->hidden / s->n_head);
    static const struct { const char *n; sb_kind k; int out, in; } L[11] = {
        /* out/in: 0 = d, 1 = f, 2 = dkv, 3 = none (1-D) */
        { "input_layernorm", SB_NORM, 0, 3 }, { "self_attn.q_proj", SB_PROJ, 0, 0 },
        { "self_attn.k_proj", SB_PROJ, 2, 0 }, { "self_attn.v_proj", SB_PROJ, 2, 0 },
        { "self_attn.attn_sub_norm", SB_NORM, 0, 3 }, { "self_attn.o_proj", SB_PROJ, 0, 0 },
        { "post_attention_layernorm", SB_NORM, 0, 3 }, { "mlp.gate_proj", SB_PROJ, 1, 0 },
        { "mlp.up_proj", SB_PROJ, 1, 0 }, { "mlp.ffn_sub_norm", SB_NORM, 1, 3 }, { "mlp.down_proj", SB_PROJ, 0, 1 },
    };
    const int64_t dim[3] = { d, f, dkv };
    uint64_t n_layer = (uint64_t)s->n_layer;
    if (i == 0) { *t = (sb_tensor){ "model.embed_tokens.weight", SB_EMBED, s->vocab, d }; return true; }
    if (i == 1 + 11 * n_layer) { *t = (sb_tensor){ "model.norm.weight", SB_NORM, 1, d }; return true; }
    if (i > 1 + 11 * n_layer) return false;
    uint64_t l = (i - 1) / 11, j = (i - 1) % 11;
    snprintf(t->name, sizeof t->name, "model.layers.%llu.%s.weight", (unsigned long long)l, L[j].n);
    t->kind = L[j].k;
    t->N = L[j].in == 3 ? 1 : dim[L[j].out];
    t->K = L[j].in == 3 ? dim[L[j].out] : dim[L[j].in];
    return true;
}

static bj_status sb_declare(const bj_gguf_shape *s, st_writer *w, uint64_t *n, bj_error *err) {
    sb_tensor t;
    for (*n = 0; sb_tensor_at(s, *n, &t); (*n)++) {
        if (t.kind == SB_NORM) BJ_TRY(st_add(w, t.name, "F32", 1, t.K, 0, (uint64_t)t.K * 4, err));
        else if (t.kind == SB_EMBED) BJ_TRY(st_add(w, t.name, "F16", 2, t.N, t.K, (uint64_t)(t.N * t.K) * 2, err));
        else {
            char sname[200];
            snprintf(sname, sizeof sname, "%s_scale", t.name);
            BJ_TRY(st_add(w, t.name, "U8", 2, t.N, (t.K + 7) / 8, (uint64_t)(t.N * ((t.K + 7) / 8)), err));
            BJ_TRY(st_add(w, sname, "F32", 1, 1, 0, 4, err));
        }
    }
    return BJ_OK;
}

/* One tensor's bytes, row by row: random sign bits (padding bits 0), Gaussian-ish f16
 * embedding rows (sum of 4 uniforms, sd 0.02), unit norms. */
static bj_status sb_write_tensor(const sb_tensor *t, uint64_t seed, st_writer *w, bj_error *err) {
    size_t row = t->kind == SB_PROJ ? (size_t)((t->K + 7) / 8) : (size_t)t->K * (t->kind == SB_NORM ? 4 : 2);
    uint8_t *buf = malloc(row + 8);
    if (!buf) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory synthesizing '%s'", t->name);
    uint64_t r = seed;
    bj_status st = BJ_OK;
    for (int64_t n = 0; n < t->N && st == BJ_OK; n++) {
        if (t->kind == SB_PROJ) {
            for (size_t i = 0; i < row; i += 8) {
                uint64_t b = rng_next(&r);
                for (size_t j = 0; j < 8 && i + j < row; j++) buf[i + j] = (uint8_t)(b >> (8 * j));
            }
            if (t->K % 8) buf[row - 1] &= (uint8_t)((1u << (t->K % 8)) - 1);
        } else {
            for (int64_t k = 0; k < t->K; k++) {
                float f = 1.0f;
                if (t->kind == SB_EMBED) {
                    uint64_t b = rng_next(&r);
                    double u = 0;
                    for (int q = 0; q < 4; q++) u += (double)((b >> (16 * q)) & 0xffff) / 65536.0;
                    f = (float)((u - 2.0) * 0.02 * 1.7320508075688772); /* var of the sum: 4/12 */
                    uint16_t h = bj_f32_to_f16(f);
                    buf[2 * k] = (uint8_t)h, buf[2 * k + 1] = (uint8_t)(h >> 8);
                } else {
                    memcpy(buf + 4 * k, &f, 4);
                }
            }
        }
        st = st_write(w, buf, row, err);
    }
    free(buf);
    float scale = 0.02f;
    if (st == BJ_OK && t->kind == SB_PROJ) st = st_write(w, &scale, 4, err);
    return st;
}

/* A byte-level BPE tokenizer.json: the 256 byte tokens, no merges. */
static json_t *sb_tokenizer(void) {
    json_t *vocab = json_object();
    for (int b = 0; vocab && b < 256; b++) {
        uint32_t cp = bj_tok_byte_to_cp((uint8_t)b);
        char u[4] = { 0 };
        if (cp < 0x80) u[0] = (char)cp;
        else u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F));
        json_object_set_new(vocab, u, json_integer(b));
    }
    return json_pack("{s:[], s:n, s:{s:s, s:o, s:[]}, s:{s:s, s:b, s:b, s:b}, s:{s:s}}",
                     "added_tokens", "normalizer", "model", "type", "BPE", "vocab", vocab, "merges",
                     "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1,
                     "decoder", "type", "ByteLevel");
}

static json_t *sb_config(const bj_gguf_shape *s) {
    return json_pack("{s:[s], s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:b, s:I, s:I, s:o}",
                     "architectures", "BitNetForCausalLM", "model_type", "bitnet", "hidden_act",
                     s->act == BJ_ACT_RELU2 ? "relu2" : "silu", "hidden_size", (json_int_t)s->hidden,
                     "intermediate_size", (json_int_t)s->intermediate, "num_hidden_layers", (json_int_t)s->n_layer,
                     "num_attention_heads", (json_int_t)s->n_head, "num_key_value_heads", (json_int_t)s->n_kv_head,
                     "max_position_embeddings", (json_int_t)s->ctx, "rms_norm_eps", 1e-5, "rope_theta", s->rope_theta,
                     "vocab_size", (json_int_t)s->vocab, "tie_word_embeddings", 1, "bos_token_id", (json_int_t)1,
                     "eos_token_id", (json_int_t)2, "quantization_config", binary_quant_config());
}

bj_status bj_b1_synth(const bj_gguf_shape *s, uint64_t seed, const char *out_dir, bj_gguf_progress_fn progress,
                      void *ud, bj_error *err) {
    st_writer w = { 0 };
    stage sg;
    uint64_t n = 0;
    char path[8192];
    json_t *cfg = sb_config(s), *tok = sb_tokenizer();
    bj_status st = cfg && tok ? sb_declare(s, &w, &n, err) : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    if (st == BJ_OK) st = stage_open(&sg, out_dir, err);
    else sg.made = false;
    if (st == BJ_OK) st = write_json(&sg, "config.json", cfg, err);
    if (st == BJ_OK) st = write_json(&sg, "tokenizer.json", tok, err);
    if (st == BJ_OK) st = stage_path(&sg, "model.safetensors", path, sizeof path, err);
    if (st == BJ_OK) st = st_begin(&w, path, err);
    sb_tensor t;
    for (uint64_t i = 0; st == BJ_OK && sb_tensor_at(s, i, &t); i++) {
        st = sb_write_tensor(&t, seed ^ (0x5851F42D4C957F2Dull * (i + 1)), &w, err);
        if (st == BJ_OK && progress) progress(ud, t.name, i + 1, n);
    }
    if (st == BJ_OK) st = st_finish(&w, err);
    st_free(&w);
    json_decref(cfg);
    json_decref(tok);
    return stage_close(&sg, st, err);
}
