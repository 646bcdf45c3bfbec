/* frontends/arch_bitnet_gguf.c -- the GGUF weight source of the graph builder (arch_graph.c):
 * BitNet architectures (`bitnet`, `bitnet-b1.58`, `bitnet-25`, `bitnet-1.58`, formats.md §2.1,
 * §2.2, §4) and ternary `llama` (Falcon3 / Llama3-8B-1.58 as llama.cpp and bitnet.cpp convert
 * them, docs/formats-families.md: q/k rows un-permuted back to HF order) to the same step graph
 * the HF source makes, node for node: only the weight names differ.
 *
 * Weights (GGUF ne order is [in, out]; the IR shape is [out, in]):
 * - I2_S projections stay in the file as dtype i2s, scale = the inline f32;
 * - TQ1_0 / TQ2_0 stay as tq1 / tq2 with scale = the blocks' common f16 d (§1.5.5; blocks
 *   with d = 0 are all-zero blocks; two different non-zero d are not a BitNet tensor);
 * - dense F32/F16/BF16 projections whose non-zero values all have one magnitude m (the
 *   `ternary * scale` floats converters write, §1.5.6) are repacked into a t2 buffer owned by
 *   the reader's arena, scale m; any other dense projection is a master and gets the same
 *   weight_quant (absmean) node as an HF master;
 * - an optional `<proj>.scale` tensor [1] multiplies the scale.
 * All-zero ternary projections are reported as a warning on the bj_gguf (§6). */
#include "frontends/arch_graph.h"
#include "frontends/gguf.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct gb {
    bj_graph *g;
    const bj_model_config *c;
    bj_gguf *f;
    bj_error *err;
} gb;

/* ---- config ------------------------------------------------------------------------------- */

static bj_status cfg_int(bj_gguf *g, const char *arch, const char *k, bool req, int64_t max, int64_t *out,
                         bj_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, k);
    BJ_TRY(bj_gguf_get_int(g, key, req, out, err));
    if (*out <= 0 || *out > max)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: key '%s': %lld is out of range [1, %lld]", g->path, key,
                       (long long)*out, (long long)max);
    return BJ_OK;
}

static bj_status cfg_act(bj_gguf *g, bj_model_config *c, bj_error *err) {
    char key[160];
    bj_gguf_str s = { 0 };
    c->act = BJ_ACT_RELU2; /* every bitnet.cpp arch */
    if (strcmp(g->arch, "bitnet") != 0) return BJ_OK;
    snprintf(key, sizeof key, "%s.hidden_activation", g->arch);
    BJ_TRY(bj_gguf_get_str(g, key, false, &s, err));
    if (s.s && s.len == 5 && !memcmp(s.s, "relu2", 5)) return BJ_OK;
    if (s.s && !(s.len == 4 && !memcmp(s.s, "silu", 4)))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: key '%s': activation \"%.*s\" is not supported (relu2, silu)",
                       g->path, key, (int)(s.len > 32 ? 32 : s.len), s.s);
    c->act = BJ_ACT_SILU; /* upstream's default when the key is absent */
    if (!s.s && c->vocab == 128256 && c->n_kv_head < c->n_head) {
        c->act = BJ_ACT_RELU2;
        bj_gguf_warn(g, BJ_GGUF_W_GUESSED_ACT, "%s: no '%s': assuming relu2 (128256 vocab + GQA looks like 2B4T)",
                     g->path, key);
    }
    return BJ_OK;
}

static bj_status cfg_shape(bj_gguf *g, bj_model_config *c, bj_error *err) {
    const char *a = g->arch;
    const int64_t big = (int64_t)1 << 20;
    BJ_TRY(cfg_int(g, a, "embedding_length", true, big, &c->hidden, err));
    BJ_TRY(cfg_int(g, a, "block_count", true, 4096, &c->n_layer, err));
    BJ_TRY(cfg_int(g, a, "feed_forward_length", true, big, &c->intermediate, err));
    BJ_TRY(cfg_int(g, a, "attention.head_count", true, 4096, &c->n_head, err));
    c->n_kv_head = c->n_head;
    BJ_TRY(cfg_int(g, a, "attention.head_count_kv", false, c->n_head, &c->n_kv_head, err));
    BJ_TRY(cfg_int(g, a, "context_length", true, big * 16, &c->max_seq, err));
    if (c->hidden % c->n_head || c->n_head % c->n_kv_head)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: %lld heads (%lld KV heads) do not divide embedding_length %lld",
                       g->path, (long long)c->n_head, (long long)c->n_kv_head, (long long)c->hidden);
    c->head_dim = c->hidden / c->n_head;
    int64_t rope_dim = c->head_dim;
    BJ_TRY(cfg_int(g, a, "rope.dimension_count", false, big, &rope_dim, err));
    if (rope_dim != c->head_dim)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: key '%s.rope.dimension_count' is %lld; only full-head RoPE "
                       "(%lld) is supported", g->path, a, (long long)rope_dim, (long long)c->head_dim);
    return BJ_OK;
}

static bj_status cfg_vocab(bj_gguf *g, bj_model_config *c, bj_error *err) {
    const bj_gguf_tensor *t = bj_gguf_find_tensor(g, "token_embd.weight");
    char key[160];
    if (!t) return BJ_FAIL(err, BJ_E_FORMAT, "%s: missing tensor 'token_embd.weight'", g->path);
    c->vocab = t->ne[1];
    int64_t v = c->vocab;
    snprintf(key, sizeof key, "%s.vocab_size", g->arch);
    BJ_TRY(bj_gguf_get_int(g, key, false, &v, err));
    if (v != c->vocab)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: key '%s' is %lld but token_embd.weight has %lld rows", g->path, key,
                       (long long)v, (long long)c->vocab);
    c->bos_id = c->eos_id = -1;
    BJ_TRY(bj_gguf_get_int(g, "tokenizer.ggml.bos_token_id", false, &c->bos_id, err));
    BJ_TRY(bj_gguf_get_int(g, "tokenizer.ggml.eos_token_id", false, &c->eos_id, err));
    return BJ_OK;
}

/* Scaled RoPE, which bitjit does not implement, refused naming the key or tensor that asks for it.
 * llama.cpp (src/llama-model.cpp) reads `<arch>.rope.scaling.type` (default "linear"; "none" is
 * unscaled) with the factor `<arch>.rope.scaling.factor`, else `<arch>.rope.scale_linear` (0 or
 * absent: no scaling); its converter writes Llama-3.1's rope_scaling type "llama3" as the tensor
 * `rope_freqs.weight` (per-frequency divisors), with no key. */
static bj_status cfg_rope_scaling(bj_gguf *g, bj_error *err) {
    char key[160];
    bj_gguf_str ty = { 0 };
    if (bj_gguf_find_tensor(g, "rope_freqs.weight"))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: tensor 'rope_freqs.weight' (per-frequency RoPE factors, as llama.cpp "
                       "writes rope_scaling type llama3) is not supported: bitjit implements unscaled RoPE only", g->path);
    snprintf(key, sizeof key, "%s.rope.scaling.type", g->arch);
    BJ_TRY(bj_gguf_get_str(g, key, false, &ty, err));
    if (ty.s && ty.len == 4 && !memcmp(ty.s, "none", 4)) return BJ_OK;
    if (ty.s && !(ty.len == 6 && !memcmp(ty.s, "linear", 6)))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: key '%s' is \"%.*s\": scaled RoPE is not supported (bitjit "
                       "implements unscaled RoPE only)", g->path, key, (int)(ty.len > 32 ? 32 : ty.len), ty.s);
    snprintf(key, sizeof key, "%s.rope.scaling.factor", g->arch);
    if (!bj_gguf_find_kv(g, key)) snprintf(key, sizeof key, "%s.rope.scale_linear", g->arch);
    double f = 0;
    BJ_TRY(bj_gguf_get_float(g, key, false, &f, err));
    if (f != 0 && f != 1)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: key '%s' is %g: linear RoPE scaling is not supported (bitjit "
                       "implements unscaled RoPE only)", g->path, key, f);
    return BJ_OK;
}

bj_status bj_gguf_config(bj_gguf *g, bj_model_config *c, bj_error *err) {
    memset(c, 0, sizeof *c);
    if (!g->arch) return BJ_FAIL(err, BJ_E_FORMAT, "%s: missing required key 'general.architecture'", g->path);
    bool llama = !strcmp(g->arch, "llama");
    if (!bj_gguf_arch_is_bitnet(g->arch) && !llama)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: architecture '%.64s' is not supported (bitnet, bitnet-b1.58, "
                       "bitnet-25, bitnet-1.58 and ternary llama are)", g->path, g->arch);
    snprintf(c->arch, sizeof c->arch, "%s", g->arch);
    BJ_TRY(cfg_shape(g, c, err));
    char key[160];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", g->arch);
    BJ_TRY(bj_gguf_get_float(g, key, true, &c->rms_eps, err));
    c->rope_theta = 10000.0;
    snprintf(key, sizeof key, "%s.rope.freq_base", g->arch);
    BJ_TRY(bj_gguf_get_float(g, key, false, &c->rope_theta, err));
    if (!(c->rms_eps > 0) || !(c->rope_theta > 0))
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: rms epsilon %g and rope freq_base %g must be positive", g->path,
                       c->rms_eps, c->rope_theta);
    BJ_TRY(cfg_vocab(g, c, err));
    if (llama) {
        c->block = BJ_BLOCK_LLAMA; /* Falcon3 / Llama3-8B-1.58 / Falcon-E as llama.cpp and bitnet.cpp write them */
        c->act = BJ_ACT_SILU;
    } else {
        c->block = BJ_BLOCK_BITNET;
        BJ_TRY(cfg_act(g, c, err));
    }
    BJ_TRY(cfg_rope_scaling(g, err));
    c->tie_embeddings = bj_gguf_find_tensor(g, "output.weight") == NULL;
    c->linear_class = BJ_LC_AUTOBITLINEAR; /* GGUF scales are multipliers */
    return BJ_OK;
}

/* ---- tensors ------------------------------------------------------------------------------- */

static const bj_gguf_tensor *find(gb *b, const char *name) {
    const bj_gguf_tensor *t = bj_gguf_find_tensor(b->f, name);
    if (!t) BJ_FAIL(b->err, BJ_E_FORMAT, "%s: missing tensor '%s'", b->f->path, name);
    return t;
}

/* IR shape [d0, d1] (d1 < 0: 1-D [d0]) is GGUF ne [d1, d0]. */
static bool shape_is(const bj_gguf_tensor *t, int64_t d0, int64_t d1) {
    if (d1 < 0) return t->ne[0] == d0 && t->ne[1] == 1 && t->ne[2] == 1 && t->ne[3] == 1;
    return t->ne[0] == d1 && t->ne[1] == d0 && t->ne[2] == 1 && t->ne[3] == 1;
}

static uint32_t fail_tensor(gb *b, const bj_gguf_tensor *t, const char *want) {
    BJ_FAIL(b->err, BJ_E_FORMAT, "%s: tensor '%s': has %s ne [%lld,%lld,%lld,%lld], expected %s", b->f->path, t->name,
            bj_gguf_type_name(t->type), (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
            (long long)t->ne[3], want);
    return BJ_NONE;
}

static bool float_dtype(uint32_t type, bj_dtype *dt) {
    switch (type) {
    case BJ_GGML_F32: *dt = BJ_DT_F32; return true;
    case BJ_GGML_F16: *dt = BJ_DT_F16; return true;
    case BJ_GGML_BF16: *dt = BJ_DT_BF16; return true;
    case BJ_GGML_Q8_0: *dt = BJ_DT_Q8_0; return true;
    default: return false;
    }
}

static uint32_t float_weight(gb *b, const char *name, int64_t d0, int64_t d1) {
    const bj_gguf_tensor *t = find(b, name);
    if (!t) return BJ_NONE;
    bj_dtype dt;
    char want[96];
    if (d1 < 0) snprintf(want, sizeof want, "F32/F16/BF16/Q8_0 ne [%lld]", (long long)d0);
    else snprintf(want, sizeof want, "F32/F16/BF16/Q8_0 ne [%lld,%lld]", (long long)d1, (long long)d0);
    if (!float_dtype(t->type, &dt) || !shape_is(t, d0, d1)) return fail_tensor(b, t, want);
    bj_shape s = d1 < 0 ? bj_shape1(d0) : bj_shape2(d0, d1);
    return bj_ir_weight(b->g, name, dt, s, 1.0, t->data, t->nbytes, b->err);
}

/* The optional per-projection multiplier `<prefix>.scale` (1 when absent). */
static bool extra_scale(gb *b, const char *prefix, double *s) {
    char name[160];
    snprintf(name, sizeof name, "%s.scale", prefix);
    const bj_gguf_tensor *t = bj_gguf_find_tensor(b->f, name);
    bj_dtype dt;
    *s = 1.0;
    if (!t) return true;
    if (!float_dtype(t->type, &dt) || dt == BJ_DT_Q8_0 || t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3] != 1) {
        fail_tensor(b, t, "one F32/F16/BF16 value");
        return false;
    }
    float v = 0;
    if (dt == BJ_DT_F32) { uint32_t u = bj_rd32(t->data); memcpy(&v, &u, 4); }
    else v = dt == BJ_DT_F16 ? bj_f16_to_f32(bj_rd16(t->data)) : bj_bf16_to_f32(bj_rd16(t->data));
    if (!isfinite(v) || v <= 0) {
        BJ_FAIL(b->err, BJ_E_FORMAT, "%s: tensor '%s': scale %g is not a positive finite number", b->f->path, name, v);
        return false;
    }
    *s = v;
    return true;
}

static void warn_zero(gb *b, const bj_gguf_tensor *t) {
    bj_gguf_warn(b->f, BJ_GGUF_W_ZERO_TENSOR, "%s: tensor '%s' (%s) is all zeros", b->f->path, t->name,
                 bj_gguf_type_name(t->type));
}

/* The common non-zero block scale of a TQ tensor (0 if every block is zero), or -1 if they differ. */
static double tq_common_d(const bj_gguf_tensor *t) {
    uint64_t bsz = t->type == BJ_GGML_TQ2_0 ? 66 : 54, nb = t->nbytes / bsz;
    uint16_t d = 0;
    for (uint64_t i = 0; i < nb; i++) {
        uint16_t di = bj_rd16(t->data + i * bsz + bsz - 2);
        if ((di & 0x7FFF) == 0) continue;
        if (d && di != d) return -1;
        d = di;
    }
    return bj_f16_to_f32(d);
}

static bool ternary_all_zero(const bj_gguf_tensor *t, int64_t N, int64_t K) {
    for (int64_t r = 0; r < N; r++)
        for (int64_t k = 0; k < K; k++)
            if (bj_gguf_ternary_at(t, r, k, NULL) != 0) return false;
    return true;
}

static uint32_t packed_weight(gb *b, const bj_gguf_tensor *t, double extra, int64_t N, int64_t K) {
    double s;
    bj_dtype dt = t->type == BJ_GGML_I2_S ? BJ_DT_I2S : t->type == BJ_GGML_TQ2_0 ? BJ_DT_TQ2 : BJ_DT_TQ1;
    if (dt == BJ_DT_I2S) {
        float f;
        bj_gguf_ternary_at(t, 0, 0, &f);
        s = f;
    } else if ((s = tq_common_d(t)) < 0) {
        BJ_FAIL(b->err, BJ_E_UNSUPPORTED, "%s: tensor '%s' (%s): its blocks have different scales, so it is not a "
                "BitNet ternary tensor with one per-tensor scale", b->f->path, t->name, bj_gguf_type_name(t->type));
        return BJ_NONE;
    }
    bool zero = !(s != 0) || ternary_all_zero(t, N, K);
    if (zero) warn_zero(b, t);
    if (!isfinite(s) || s < 0) {
        BJ_FAIL(b->err, BJ_E_FORMAT, "%s: tensor '%s': scale %g is not a non-negative finite number", b->f->path,
                t->name, s);
        return BJ_NONE;
    }
    if (zero) s = 1.0; /* the values are all zero; the IR wants a positive scale */
    return bj_ir_weight(b->g, t->name, dt, bj_shape2(N, K), s * extra, t->data, t->nbytes, b->err);
}

/* The one magnitude of a dense `ternary * m` tensor: 0 if all zero, -1 if it is not one. */
static double dense_magnitude(bj_dtype dt, const bj_gguf_tensor *t, uint64_t n) {
    float m = 0;
    for (uint64_t i = 0; i < n; i++) {
        float x;
        if (dt == BJ_DT_F32) { uint32_t u = bj_rd32(t->data + 4 * i); memcpy(&x, &u, 4); }
        else if (dt == BJ_DT_F16) x = bj_f16_to_f32(bj_rd16(t->data + 2 * i));
        else x = bj_bf16_to_f32(bj_rd16(t->data + 2 * i));
        x = fabsf(x);
        if (x == 0) continue;
        if (!isfinite(x) || (m != 0 && x != m)) return -1;
        m = x;
    }
    return m;
}

static float dense_at(bj_dtype dt, const uint8_t *d, uint64_t i) {
    if (dt == BJ_DT_F32) { float x; uint32_t u = bj_rd32(d + 4 * i); memcpy(&x, &u, 4); return x; }
    return dt == BJ_DT_F16 ? bj_f16_to_f32(bj_rd16(d + 2 * i)) : bj_bf16_to_f32(bj_rd16(d + 2 * i));
}

/* Repacks a dense ternary*m tensor into t2 (row-major 2-bit codes) in the reader's arena. */
static uint32_t dense_ternary(gb *b, const bj_gguf_tensor *t, bj_dtype dt, double m, double extra, int64_t N,
                              int64_t K) {
    uint64_t rb = (uint64_t)(K + 3) / 4, nbytes = rb * (uint64_t)N;
    uint8_t *p = bj_arena_alloc(&b->f->arena, (size_t)nbytes, 64);
    if (!p) {
        BJ_FAIL(b->err, BJ_E_NOMEM, "out of memory repacking '%s' (%llu bytes)", t->name, (unsigned long long)nbytes);
        return BJ_NONE;
    }
    for (int64_t r = 0; r < N; r++)
        for (int64_t k = 0; k < K; k++) {
            float x = dense_at(dt, t->data, (uint64_t)(r * K + k));
            int code = x > 0 ? 2 : x < 0 ? 0 : 1;
            p[(uint64_t)r * rb + (uint64_t)k / 4] |= (uint8_t)(code << (2 * (k % 4)));
        }
    if (m == 0) { warn_zero(b, t); m = 1.0; }
    return bj_ir_weight(b->g, t->name, BJ_DT_T2, bj_shape2(N, K), m * extra, p, nbytes, b->err);
}

static uint32_t dense_weight(gb *b, const bj_gguf_tensor *t, bj_dtype dt, double extra, int64_t N, int64_t K) {
    double m = dense_magnitude(dt, t, (uint64_t)(N * K));
    if (m >= 0) return dense_ternary(b, t, dt, m, extra, N, K);
    if (extra != 1.0) { /* a master with a separate scale has no HF equivalent */
        BJ_FAIL(b->err, BJ_E_UNSUPPORTED, "%s: tensor '%s' is a float master with a .scale tensor", b->f->path, t->name);
        return BJ_NONE;
    }
    uint32_t w = bj_ir_weight(b->g, t->name, dt, bj_shape2(N, K), 1.0, t->data, t->nbytes, b->err);
    int64_t mode = 0;
    return bj_ir_add(b->g, BJ_OP_WEIGHT_QUANT, &w, 1, &mode, NULL, b->err);
}

/* The weight operand of a BitLinear [n_out, n_in] named `<prefix>.weight`. */
static uint32_t bitlinear_weight(gb *b, const char *prefix, int64_t n_out, int64_t n_in) {
    char name[160], want[128];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const bj_gguf_tensor *t = find(b, name);
    double extra;
    bj_dtype dt;
    if (!t || !extra_scale(b, prefix, &extra)) return BJ_NONE;
    snprintf(want, sizeof want, "I2_S/TQ1_0/TQ2_0/F32/F16/BF16 ne [%lld,%lld]", (long long)n_in, (long long)n_out);
    if (!shape_is(t, n_out, n_in)) return fail_tensor(b, t, want);
    if (t->type == BJ_GGML_I2_S || t->type == BJ_GGML_TQ1_0 || t->type == BJ_GGML_TQ2_0)
        return packed_weight(b, t, extra, n_out, n_in);
    if (float_dtype(t->type, &dt) && dt != BJ_DT_Q8_0) return dense_weight(b, t, dt, extra, n_out, n_in);
    BJ_FAIL(b->err, BJ_E_UNSUPPORTED, "%s: tensor '%s': type %s is not supported for a BitLinear weight (%s)",
            b->f->path, name, bj_gguf_type_name(t->type), want);
    return BJ_NONE;
}

/* ---- the graph (the same nodes as arch_bitnet.c) ---------------------------------------------- */

/* llama.cpp's converter stores q and k of the `llama` arch with the rows of each head permuted
 * for its interleaved RoPE (convert_hf_to_gguf.py LlamaModel.permute): GGUF row h*hd + 2*j + s
 * is HF row h*hd + s*hd/2 + j (s in {0,1}, j < hd/2). bitjit's RoPE is the HF half-split one, so
 * these rows are put back in HF order: the row of GGUF order for HF row r. */
static int64_t llama_gguf_row(int64_t r, int64_t hd) {
    int64_t h = r / hd, j = r % hd, half = hd / 2;
    return h * hd + 2 * (j % half) + j / half;
}

/* A copy of t with its rows in HF order, in the reader's arena: row-independent layouts (TQ1_0,
 * TQ2_0, F32, F16, BF16) keep their type; I2_S (whose layout spans rows) becomes t2 codes with
 * I2_S's scale in *i2s_scale. */
static bool unpermute(gb *b, const bj_gguf_tensor *t, int64_t N, int64_t K, bj_gguf_tensor *out, double *i2s_scale) {
    int64_t hd = b->c->head_dim;
    *out = *t;
    *i2s_scale = -1;
    if (hd % 2 || N % hd) {
        BJ_FAIL(b->err, BJ_E_FORMAT, "%s: tensor '%s': %lld rows are not whole heads of %lld", b->f->path, t->name,
                (long long)N, (long long)hd);
        return false;
    }
    if (t->type == BJ_GGML_I2_S) {
        uint64_t rb = (uint64_t)(K + 3) / 4;
        uint8_t *p = bj_arena_alloc(&b->f->arena, (size_t)(rb * (uint64_t)N), 64);
        if (!p) { BJ_FAIL(b->err, BJ_E_NOMEM, "out of memory un-permuting '%s'", t->name); return false; }
        memset(p, 0, (size_t)(rb * (uint64_t)N));
        float sc = 0;
        bj_gguf_ternary_at(t, 0, 0, &sc);
        for (int64_t r = 0; r < N; r++)
            for (int64_t k = 0; k < K; k++) {
                int v = bj_gguf_ternary_at(t, llama_gguf_row(r, hd), k, NULL);
                int code = v > 1 ? 1 : v + 1;
                p[(uint64_t)r * rb + (uint64_t)k / 4] |= (uint8_t)(code << (2 * (k % 4)));
            }
        out->data = p;
        out->nbytes = rb * (uint64_t)N;
        *i2s_scale = sc;
        return true;
    }
    uint64_t rbytes = t->nbytes / (uint64_t)N;
    uint8_t *p = bj_arena_alloc(&b->f->arena, (size_t)t->nbytes, 64);
    if (!p) { BJ_FAIL(b->err, BJ_E_NOMEM, "out of memory un-permuting '%s'", t->name); return false; }
    for (int64_t r = 0; r < N; r++) memcpy(p + (uint64_t)r * rbytes, t->data + (uint64_t)llama_gguf_row(r, hd) * rbytes, rbytes);
    out->data = p;
    return true;
}

/* ---- the weight source of arch_graph.c: GGUF tensor names ------------------------------------ */

static void gguf_name(void *ctx, bj_wpiece p, int64_t l, char *buf, size_t cap) {
    (void)ctx;
    static const char *const layer[BJ_W_COUNT] = {
        [BJ_W_ATTN_NORM] = "attn_norm.weight", [BJ_W_Q] = "attn_q", [BJ_W_K] = "attn_k", [BJ_W_V] = "attn_v",
        [BJ_W_ATTN_SUB_NORM] = "attn_sub_norm.weight", [BJ_W_O] = "attn_output", [BJ_W_FFN_NORM] = "ffn_norm.weight",
        [BJ_W_GATE] = "ffn_gate", [BJ_W_UP] = "ffn_up", [BJ_W_FFN_SUB_NORM] = "ffn_sub_norm.weight",
        [BJ_W_DOWN] = "ffn_down",
    };
    if (p == BJ_W_EMBED) snprintf(buf, cap, "token_embd.weight");
    else if (p == BJ_W_OUT_NORM) snprintf(buf, cap, "output_norm.weight");
    else if (p == BJ_W_HEAD) snprintf(buf, cap, "output.weight");
    else snprintf(buf, cap, "blk.%lld.%s", (long long)l, layer[p] ? layer[p] : "?");
}

static uint32_t gguf_float(void *ctx, const char *name, int64_t d0, int64_t d1) { return float_weight(ctx, name, d0, d1); }

static uint32_t gguf_bitlinear(void *ctx, bj_wpiece p, const char *prefix, int64_t n_out, int64_t n_in) {
    gb *b = ctx;
    if (b->c->block != BJ_BLOCK_LLAMA || (p != BJ_W_Q && p != BJ_W_K)) return bitlinear_weight(b, prefix, n_out, n_in);
    /* llama: the same checks on the file's tensor, then its rows in HF order */
    char name[160];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const bj_gguf_tensor *t = find(b, name);
    double extra, i2s;
    bj_gguf_tensor u;
    if (!t || !extra_scale(b, prefix, &extra)) return BJ_NONE;
    if (!shape_is(t, n_out, n_in)) {
        char want[128];
        snprintf(want, sizeof want, "I2_S/TQ1_0/TQ2_0/F32/F16/BF16 ne [%lld,%lld]", (long long)n_in, (long long)n_out);
        return fail_tensor(b, t, want);
    }
    bj_dtype dt;
    bool packed = t->type == BJ_GGML_I2_S || t->type == BJ_GGML_TQ1_0 || t->type == BJ_GGML_TQ2_0;
    if (!packed && !(float_dtype(t->type, &dt) && dt != BJ_DT_Q8_0)) return bitlinear_weight(b, prefix, n_out, n_in);
    if (!unpermute(b, t, n_out, n_in, &u, &i2s)) return BJ_NONE;
    if (i2s >= 0) {
        if (!isfinite(i2s) || i2s < 0) {
            BJ_FAIL(b->err, BJ_E_FORMAT, "%s: tensor '%s': scale %g is not a non-negative finite number", b->f->path,
                    t->name, i2s);
            return BJ_NONE;
        }
        if (i2s == 0) { warn_zero(b, t); i2s = 1.0; }
        return bj_ir_weight(b->g, t->name, BJ_DT_T2, bj_shape2(n_out, n_in), i2s * extra, u.data, u.nbytes, b->err);
    }
    if (packed) return packed_weight(b, &u, extra, n_out, n_in);
    return dense_weight(b, &u, dt, extra, n_out, n_in);
}

static bool gguf_has(void *ctx, const char *name) { return bj_gguf_find_tensor(((gb *)ctx)->f, name) != NULL; }

bj_status bj_fe_build_bitnet_gguf(bj_graph *gr, const bj_model_config *c, bj_gguf *f, bj_error *err) {
    gb b = { gr, c, f, err };
    bj_wsource w = { &b, gguf_name, gguf_float, gguf_bitlinear, gguf_has, err };
    return bj_fe_build_graph(gr, c, &w, err);
}
