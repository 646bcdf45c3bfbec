/* tests/unit/test_gguf_e2e.c -- GGUF end to end: the kjv packed (and master) model converted to
 * each GGUF type by bitjit's writer, read back by bitjit's reader (weights, config and tokenizer
 * from the one file), run by the reference engine: the prompt ids and the 48 greedy ids must
 * equal the HF oracle's. Also `convert`/`synth` as commands (flags, errors, no partial output,
 * determinism), the runtime's decode of the GGUF dtypes against the reader's reference decode,
 * and llama.cpp-written files in ../shared/models/kjv-bitnet-11m/gguf/ when present. */
#include "compiler/compiler.h"
#include "frontends/gguf.h"
#include "frontends/model.h"
#include "runtime/ops.h"
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/oracle_check.h"

#define KJV_PACKED BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed"
#define KJV_MASTER BJ_SOURCE_DIR "/models/kjv-bitnet-11m/master"
#define SHARED_GGUF BJ_SOURCE_DIR "/../shared/models/kjv-bitnet-11m/gguf"

static void convert(const char *model, bj_gguf_outtype t, const char *out) {
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, model, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_gguf_convert(&m.graph, &m.cfg, m.tok, t, out, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    bj_model_free(&m);
}

/* Loads path, checks every oracle prompt's ids and greedy continuation (key: packed/master). */
static void check_oracle(const char *path, const char *key) {
    bj_error err = { 0 };
    bj_model m;
    cr_assert_eq(bj_model_load(&m, path, &err), BJ_OK, "load %s: %s", path, err.msg);
    cr_expect_eq(m.gguf->warnings, 0u, "%s: unexpected warning: %s", path, m.gguf->warning);
    bj_engine *e = bj_test_engine("ref", &m.graph, NULL, NULL, NULL);
    bj_test_oracle_check(e, m.tok, &(bj_oracle_check){ .oracle = "models/kjv-bitnet-11m/oracle.json", .key = key,
                                                        .what = path, .add_bos = bj_tok_add_bos(m.tok) });
    bj_engine_free(e);
    bj_model_free(&m);
}

#define ROUND_TRIP(type, T)                                                        \
    Test(gguf_e2e, kjv_packed_##type, .timeout = 600) {                            \
        const char *out = BJ_TEST_TMP "/kjv-packed-" #type ".gguf";                \
        convert(KJV_PACKED, T, out);                                               \
        check_oracle(out, "packed");                                               \
    }
ROUND_TRIP(i2_s, BJ_GGUF_OUT_I2_S)
ROUND_TRIP(tq1_0, BJ_GGUF_OUT_TQ1_0)
ROUND_TRIP(tq2_0, BJ_GGUF_OUT_TQ2_0)
ROUND_TRIP(bf16, BJ_GGUF_OUT_BF16)
ROUND_TRIP(f16, BJ_GGUF_OUT_F16)

Test(gguf_e2e, kjv_master_i2_s, .timeout = 600) {
    const char *out = BJ_TEST_TMP "/kjv-master-i2_s.gguf";
    convert(KJV_MASTER, BJ_GGUF_OUT_I2_S, out);
    check_oracle(out, "master");
}

/* The converted file has the layout the other engines expect. */
Test(gguf_e2e, kjv_file_layout) {
    const char *out = BJ_TEST_TMP "/kjv-layout-tq2.gguf";
    convert(KJV_PACKED, BJ_GGUF_OUT_TQ2_0, out);
    bj_gguf g;
    bj_error err = { 0 };
    cr_assert_eq(bj_gguf_open(&g, out, &err), BJ_OK, "%s", err.msg);
    cr_assert_str_eq(g.arch, "bitnet");
    bj_gguf_str act = { 0 };
    cr_assert_eq(bj_gguf_get_str(&g, "bitnet.hidden_activation", true, &act, &err), BJ_OK);
    cr_assert(act.len == 5 && !memcmp(act.s, "relu2", 5));
    const bj_gguf_tensor *down = bj_gguf_find_tensor(&g, "blk.0.ffn_down.weight"); /* K = 1024 */
    const bj_gguf_tensor *q = bj_gguf_find_tensor(&g, "blk.0.attn_q.weight");      /* K = 384: F16 fallback */
    cr_assert(down && q && bj_gguf_find_tensor(&g, "blk.0.ffn_down.scale"));
    cr_assert_eq(down->type, BJ_GGML_TQ2_0);
    cr_assert_eq(q->type, BJ_GGML_F16);
    cr_assert_eq(down->ne[0], 1024);
    cr_assert_eq(down->ne[1], 384);
    cr_assert_null(bj_gguf_find_tensor(&g, "output.weight")); /* tied */
    bj_gguf_close(&g);
    convert(KJV_PACKED, BJ_GGUF_OUT_I2_S, out);
    cr_assert_eq(bj_gguf_open(&g, out, &err), BJ_OK, "%s", err.msg);
    cr_assert_str_eq(g.arch, "bitnet-b1.58");
    const bj_gguf_tensor *k = bj_gguf_find_tensor(&g, "blk.3.attn_k.weight");
    cr_assert(k && k->type == BJ_GGML_I2_S && k->nbytes == 384 * 128 / 4 + 32);
    cr_assert_null(bj_gguf_find_tensor(&g, "blk.3.attn_k.scale"));
    int64_t ft = 0;
    cr_assert_eq(bj_gguf_get_int(&g, "general.file_type", true, &ft, &err), BJ_OK);
    cr_assert_eq(ft, 40);
    bj_gguf_close(&g);
}

/* ---- the commands -------------------------------------------------------------------------- */

static int cmd(int (*fn)(int, char **), const char *a0, const char *const *args) {
    char *argv[16] = { (char *)a0 };
    int argc = 1;
    for (; args[argc - 1]; argc++) argv[argc] = (char *)args[argc - 1];
    return fn(argc, argv);
}

static bool exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

/* No file starting with base (the output or its temporary) is left in BJ_TEST_TMP. */
static bool no_leftovers(const char *base) {
    DIR *d = opendir(BJ_TEST_TMP);
    struct dirent *de;
    bool ok = true;
    while ((de = readdir(d))) ok &= strncmp(de->d_name, base, strlen(base)) != 0;
    closedir(d);
    return ok;
}

Test(gguf_cmd, convert_flags_and_errors) {
    const char *out = BJ_TEST_TMP "/cmd-conv.gguf";
    unlink(out);
    cr_assert_eq(cmd(bj_cmd_convert, "convert", (const char *[]){ "--help", NULL }), 0);
    cr_assert_eq(cmd(bj_cmd_convert, "convert", (const char *[]){ KJV_PACKED, "--type", "i2_s", NULL }), 2);
    cr_assert_eq(cmd(bj_cmd_convert, "convert", (const char *[]){ KJV_PACKED, "-o", out, NULL }), 2);
    cr_assert_eq(cmd(bj_cmd_convert, "convert", (const char *[]){ KJV_PACKED, "-o", out, "--type", "q4_0", NULL }), 2);
    cr_assert_eq(cmd(bj_cmd_convert, "convert", (const char *[]){ KJV_PACKED, "-o", out, "--bogus", NULL }), 2);
    cr_assert_eq(cmd(bj_cmd_convert, "convert", (const char *[]){ KJV_PACKED, "-o", NULL }), 2);
    cr_assert_eq(cmd(bj_cmd_convert, "convert", (const char *[]){ "/nonexistent", "-o", out, "-t", "tq2_0", NULL }), 1);
    cr_assert_not(exists(out));
    /* an unwritable destination: error, nothing left behind */
    cr_assert_eq(cmd(bj_cmd_convert, "convert", (const char *[]){ KJV_PACKED, "-o", "/nonexistent/x.gguf", "-t",
                                                                  "tq2_0", "-q", NULL }), 1);
    cr_assert_eq(cmd(bj_cmd_convert, "convert", (const char *[]){ KJV_PACKED, "--output=" BJ_TEST_TMP "/cmd-conv.gguf",
                                                                  "--type=tq1_0", "-q", NULL }), 0);
    cr_assert(exists(out));
    cr_assert(no_leftovers("cmd-conv.gguf.tmp"));
}

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*n);
    cr_assert_eq(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

Test(gguf_cmd, synth_flags_and_determinism, .timeout = 300) {
    const char *a = BJ_TEST_TMP "/synth-a.gguf", *b = BJ_TEST_TMP "/synth-b.gguf", *c = BJ_TEST_TMP "/synth-c.gguf";
    cr_assert_eq(cmd(bj_cmd_synth, "synth", (const char *[]){ "--help", NULL }), 0);
    cr_assert_eq(cmd(bj_cmd_synth, "synth", (const char *[]){ "--shape", "7b", "-t", "i2_s", "-o", a, NULL }), 2);
    cr_assert_eq(cmd(bj_cmd_synth, "synth", (const char *[]){ "--shape", "tiny", "-t", "i2_s", "-o", a, "--seed", "x",
                                                              NULL }), 2);
    unlink(c);
    cr_assert_eq(cmd(bj_cmd_synth, "synth", (const char *[]){ "--shape", "3b", "-t", "tq2_0", "-o", c, "-q", NULL }), 1);
    cr_assert_not(exists(c));
    const char *args[] = { "--shape", "tiny", "-t", "i2_s", "-o", a, "--seed", "7", "-q", NULL };
    cr_assert_eq(cmd(bj_cmd_synth, "synth", args), 0);
    args[5] = b;
    cr_assert_eq(cmd(bj_cmd_synth, "synth", args), 0);
    args[5] = c, args[7] = "8";
    cr_assert_eq(cmd(bj_cmd_synth, "synth", args), 0);
    size_t na, nb, nc;
    void *pa = slurp(a, &na), *pb = slurp(b, &nb), *pc = slurp(c, &nc);
    cr_assert(na == nb && !memcmp(pa, pb, na), "same seed, different files");
    cr_assert(na == nc && memcmp(pa, pc, na), "different seeds, same file");
    free(pa); free(pb); free(pc);
}

/* A synthesized model loads, runs, has ~31% zero weights, and the runtime's decode of each
 * GGUF dtype agrees with the reader's reference decode. */
static void check_synth_shape(const char *shape, bj_gguf_outtype t, const char *out) {
    bj_error err = { 0 };
    const bj_gguf_shape *sh = bj_gguf_shape_find(shape);
    cr_assert_eq(bj_gguf_synth(sh, t, 3, out, NULL, NULL, &err), BJ_OK, "%s", err.msg);
    bj_model m;
    cr_assert_eq(bj_model_load(&m, out, &err), BJ_OK, "%s", err.msg);
    cr_expect_str_eq(m.gguf->arch, sh->llama ? "llama" : t == BJ_GGUF_OUT_I2_S ? "bitnet-b1.58" : "bitnet");
    cr_expect_eq(m.cfg.block, sh->llama ? BJ_BLOCK_LLAMA : BJ_BLOCK_BITNET);
    /* llama.cpp refuses a llama file with tensors its llama arch does not create (`.scale`) */
    for (uint64_t i = 0; sh->llama && i < m.gguf->n_tensors; i++)
        cr_expect(!strstr(m.gguf->tensors[i].name, ".scale"), "llama synth has '%s'", m.gguf->tensors[i].name);
    uint64_t zeros = 0, total = 0;
    /* arch llama has no `.scale` tensors in llama.cpp: TQ blocks carry the scale as their f16 d */
    double want_scale = 0.7978845608f * 0.02f;
    if (sh->llama && (t == BJ_GGUF_OUT_TQ1_0 || t == BJ_GGUF_OUT_TQ2_0))
        want_scale = bj_f16_to_f32(bj_f32_to_f16((float)want_scale));
    else want_scale = (float)want_scale;
    for (uint32_t i = 0; i < m.graph.n_nodes; i++) {
        const bj_node *n = &m.graph.nodes[i];
        if (n->op != BJ_OP_WEIGHT || !bj_dtype_is_lowbit(n->dtype)) continue;
        int8_t *v;
        double scale;
        cr_assert_eq(bj_ir_lowbit_values(&m.graph, i, &v, &scale, &err), BJ_OK, "%s", err.msg);
        const bj_gguf_tensor *gt = bj_gguf_find_tensor(m.gguf, n->name);
        int64_t N = n->shape.d[0], K = n->shape.d[1], hd = m.cfg.head_dim;
        /* arch llama: q/k rows are stored in llama.cpp's permuted order and imported in HF order */
        bool qk = sh->llama && (strstr(n->name, "attn_q.") || strstr(n->name, "attn_k."));
        for (int64_t r = 0; r < N; r++)
            for (int64_t k = 0; k < K; k++) {
                int64_t gr = qk ? r / hd * hd + 2 * (r % hd % (hd / 2)) + r % hd / (hd / 2) : r;
                int want = n->dtype == BJ_DT_T2 && !qk ? v[r * K + k] : bj_gguf_ternary_at(gt, gr, k, NULL);
                cr_assert_eq(v[r * K + k], want, "%s [%lld,%lld]", n->name, (long long)r, (long long)k);
                zeros += v[r * K + k] == 0;
                total++;
            }
        cr_assert_float_eq(scale, want_scale, 1e-9, "%s scale %g, want %g", n->name, scale, want_scale);
        free(v);
    }
    double frac = (double)zeros / (double)total;
    cr_assert(frac > 0.29 && frac < 0.33, "zero fraction %g, expected about 0.31", frac);
    bj_engine *e;
    cr_assert_eq(bj_ref_engine_create(&e, &m.graph, &err), BJ_OK, "%s", err.msg);
    int32_t ids[3] = { 382, 'a', 'b' };
    float *logits = malloc((size_t)e->n_vocab * sizeof *logits);
    cr_assert_eq(bj_engine_forward(e, ids, 3, false, logits, &err), BJ_OK, "%s", err.msg);
    for (int64_t i = 0; i < e->n_vocab; i++) cr_assert(isfinite(logits[i]));
    free(logits);
    bj_engine_free(e);
    bj_model_free(&m);
}

static void check_synth(bj_gguf_outtype t, const char *out) { check_synth_shape("tiny", t, out); }

Test(gguf_synth, llama_tiny_i2_s) { check_synth_shape("llama-tiny", BJ_GGUF_OUT_I2_S, BJ_TEST_TMP "/synth-l-i2s.gguf"); }
Test(gguf_synth, llama_tiny_tq1_0) { check_synth_shape("llama-tiny", BJ_GGUF_OUT_TQ1_0, BJ_TEST_TMP "/synth-l-tq1.gguf"); }
Test(gguf_synth, llama_tiny_tq2_0) { check_synth_shape("llama-tiny", BJ_GGUF_OUT_TQ2_0, BJ_TEST_TMP "/synth-l-tq2.gguf"); }

Test(gguf_synth, tiny_i2_s) { check_synth(BJ_GGUF_OUT_I2_S, BJ_TEST_TMP "/synth-i2s.gguf"); }
Test(gguf_synth, tiny_tq1_0) { check_synth(BJ_GGUF_OUT_TQ1_0, BJ_TEST_TMP "/synth-tq1.gguf"); }
Test(gguf_synth, tiny_tq2_0) { check_synth(BJ_GGUF_OUT_TQ2_0, BJ_TEST_TMP "/synth-tq2.gguf"); }
Test(gguf_synth, tiny_bf16) { check_synth(BJ_GGUF_OUT_BF16, BJ_TEST_TMP "/synth-bf16.gguf"); }

/* ---- files written by llama.cpp's own converter (an independent implementation) ------------- */

Test(gguf_e2e, shared_llama_cpp_files, .timeout = 600) {
    DIR *d = opendir(SHARED_GGUF);
    if (!d) cr_skip_test("%s is absent", SHARED_GGUF);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".gguf")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", SHARED_GGUF, de->d_name);
        check_oracle(path, "packed");
        n++;
    }
    closedir(d);
    cr_log_info("checked %d llama.cpp GGUF files", n);
}

/* ---- the runtime's decode of the GGUF dtypes against hand-computed blocks ------------------ */

Test(gguf_runtime, q8_0_load_float) {
    uint8_t blk[2 * 34] = { 0 };
    blk[0] = 0x00, blk[1] = 0x38; /* d = 0.5 */
    blk[2 + 0] = 4, blk[2 + 31] = (uint8_t)-6;
    blk[34] = 0x00, blk[35] = 0x40; /* d = 2 */
    blk[36 + 1] = 3;
    cr_assert_eq(bj_ir_weight_float(BJ_DT_Q8_0, blk, 0), 2.0f);
    cr_assert_eq(bj_ir_weight_float(BJ_DT_Q8_0, blk, 31), -3.0f);
    cr_assert_eq(bj_ir_weight_float(BJ_DT_Q8_0, blk, 33), 6.0f);
    cr_assert_eq(bj_ir_weight_float(BJ_DT_Q8_0, blk, 5), 0.0f);
    uint64_t nb = 0;
    cr_assert(bj_dtype_nbytes(BJ_DT_Q8_0, 3, 64, &nb) && nb == 3 * 68);
    cr_assert(bj_dtype_nbytes(BJ_DT_I2S, 4, 128, &nb) && nb == 128 + 32);
    cr_assert(bj_dtype_nbytes(BJ_DT_TQ2, 2, 512, &nb) && nb == 2 * 2 * 66);
    cr_assert(bj_dtype_nbytes(BJ_DT_TQ1, 2, 512, &nb) && nb == 2 * 2 * 54);
}

/* One weight node of dtype dt over data; returns the runtime's values. */
static int8_t *runtime_values(bj_dtype dt, int64_t N, int64_t K, const uint8_t *data, uint64_t nbytes) {
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_graph_init(&g, "t", &err), BJ_OK);
    uint32_t w = bj_ir_weight(&g, "w", dt, bj_shape2(N, K), 0.5, data, nbytes, &err);
    cr_assert_neq(w, BJ_NONE, "%s", err.msg);
    int8_t *v;
    double scale;
    cr_assert_eq(bj_ir_lowbit_values(&g, w, &v, &scale, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(scale, 0.5);
    bj_graph_free(&g);
    return v;
}

Test(gguf_runtime, lowbit_hand_blocks) {
    uint8_t tq2[66], tq1[54], i2s[64 + 32];
    memset(tq2, 0x55, 64), tq2[0] = 0x92, tq2[33] = 0x08, tq2[64] = 0, tq2[65] = 0x38;
    memset(tq1, 128, 48), memset(tq1 + 48, 127, 4), tq1[0] = 186, tq1[32] = 147, tq1[48] = 70;
    memset(i2s, 0x55, 64), memset(i2s + 64, 0, 32), i2s[0] = 0x86, i2s[37] = 0x21;
    int8_t *v2 = runtime_values(BJ_DT_TQ2, 1, 256, tq2, sizeof tq2);
    int8_t *v1 = runtime_values(BJ_DT_TQ1, 1, 256, tq1, sizeof tq1);
    int8_t *vi = runtime_values(BJ_DT_I2S, 2, 128, i2s, sizeof i2s);
    const int i2[] = { 0, 32, 64, 96, 129, 161, 193, 225, 1 }, w2[] = { 1, -1, 0, 1, -1, 1, -1, -1, 0 };
    for (size_t i = 0; i < BJ_COUNTOF(i2); i++) cr_assert_eq(v2[i2[i]], w2[i], "tq2 %d", i2[i]);
    const int i1[] = { 0, 32, 64, 96, 128, 160, 176, 192, 240, 244, 248, 7 }, w1[] = { 1, -1, 0, 0, 1, 0, 1, -1, -1, 1, 0, 0 };
    for (size_t i = 0; i < BJ_COUNTOF(i1); i++) cr_assert_eq(v1[i1[i]], w1[i], "tq1 %d", i1[i]);
    const int ii[] = { 0, 32, 64, 96, 133, 165, 197, 229, 2 }, wi[] = { 1, -1, 0, 1, -1, 1, -1, 0, 0 };
    for (size_t i = 0; i < BJ_COUNTOF(ii); i++) cr_assert_eq(vi[ii[i]], wi[i], "i2s %d", ii[i]);
    free(v2); free(v1); free(vi);
}

/* A byte of four 2-bit codes, each 0, 1 or 2 (a valid ternary packing). */
static uint8_t valid_codes(uint64_t *s) {
    uint8_t b = 0;
    for (int i = 0; i < 4; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        b |= (uint8_t)((*s >> 33) % 3) << (2 * i);
    }
    return b;
}

/* bj_ir_lowbit_rows_into, which the JIT packs large weights with block by block, gives the rows
 * bj_ir_lowbit_values gives for every lowbit layout, at block boundaries aligned or not (I2_S's
 * 128-value blocks straddle rows of K = 64), and names a bad code by its row in the whole weight. */
Test(gguf_runtime, lowbit_rows_match_whole) {
    static const struct { bj_dtype dt; int64_t N, K; } cases[] = {
        { BJ_DT_I2S, 6, 128 }, { BJ_DT_I2S, 8, 64 }, { BJ_DT_TQ2, 3, 256 }, { BJ_DT_TQ1, 3, 512 },
        { BJ_DT_T2HF, 8, 37 }, { BJ_DT_T2, 5, 37 }, { BJ_DT_B1, 5, 37 }, { BJ_DT_T8, 5, 37 }, { BJ_DT_B8, 5, 37 },
    };
    uint64_t s = 1;
    for (size_t c = 0; c < BJ_COUNTOF(cases); c++) {
        bj_dtype dt = cases[c].dt;
        int64_t N = cases[c].N, K = cases[c].K;
        uint64_t nb = 0;
        cr_assert(bj_dtype_nbytes(dt, (uint64_t)N, (uint64_t)K, &nb));
        uint8_t *data = malloc(nb);
        for (uint64_t i = 0; i < nb; i++) {
            uint8_t r = valid_codes(&s);
            data[i] = dt == BJ_DT_T8 ? (uint8_t)((r & 3) - 1) : dt == BJ_DT_B8 ? (uint8_t)(r & 1 ? 1 : -1) : r;
        }
        if (dt == BJ_DT_TQ2)
            for (int64_t b = 0; b < N * K / 256; b++) data[66 * b + 64] = 0, data[66 * b + 65] = 0x38;
        if (dt == BJ_DT_TQ1)
            for (int64_t b = 0; b < N * K / 256; b++) data[54 * b + 52] = 0, data[54 * b + 53] = 0x38;
        bj_graph g;
        bj_error err = { 0 };
        cr_assert_eq(bj_graph_init(&g, "t", &err), BJ_OK);
        uint32_t w = bj_ir_weight(&g, "w", dt, bj_shape2(N, K), 0.5, data, nb, &err);
        cr_assert_neq(w, BJ_NONE, "%s", err.msg);
        cr_assert(bj_ir_lowbit_by_rows(&g, w));
        int8_t *whole, *rows = malloc((size_t)(N * K));
        double scale;
        cr_assert_eq(bj_ir_lowbit_values(&g, w, &whole, &scale, &err), BJ_OK, "%s: %s", bj_dtype_name(dt), err.msg);
        for (int64_t step = 1; step <= N; step++) {
            memset(rows, 9, (size_t)(N * K));
            for (int64_t r0 = 0; r0 < N; r0 += step) {
                int64_t r1 = r0 + step < N ? r0 + step : N;
                cr_assert_eq(bj_ir_lowbit_rows_into(&g, w, r0, r1, rows + r0 * K, &err), BJ_OK, "%s", err.msg);
            }
            cr_assert_arr_eq(rows, whole, (size_t)(N * K), "%s %lldx%lld in blocks of %lld rows", bj_dtype_name(dt),
                             (long long)N, (long long)K, (long long)step);
        }
        cr_expect_eq(bj_ir_lowbit_rows_into(&g, w, 2, 1, rows, &err), BJ_E_INVALID);
        cr_expect_eq(bj_ir_lowbit_rows_into(&g, w, 0, N + 1, rows, &err), BJ_E_INVALID);
        if (dt == BJ_DT_T2 || dt == BJ_DT_T8) { /* a bad code in the last row */
            if (dt == BJ_DT_T2) data[nb - 1] |= 0x03; /* k = 36 */
            else data[nb - 1] = 3;
            cr_expect_eq(bj_ir_lowbit_rows_into(&g, w, N - 2, N, rows, &err), BJ_E_FORMAT);
            char want[32];
            snprintf(want, sizeof want, "[%lld,", (long long)(N - 1));
            cr_expect(strstr(err.msg, want) != NULL, "%s", err.msg);
        }
        free(whole);
        free(rows);
        bj_graph_free(&g);
        free(data);
    }
}
