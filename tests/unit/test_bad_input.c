/* tests/unit/test_bad_input.c -- the bad-input table of docs/robustness.md, one Test per row:
 * broken model files (truncated at many cut points, overflowing size fields, tensors out of
 * bounds, missing, of the wrong dtype or shape, an unknown architecture, all-zero ternary
 * weights), bad prompts (invalid UTF-8, empty, longer than the context, -n past the context),
 * a corrupt kernel cache and an unwritable cache directory, bad CLI values, and no partial
 * output files. Each row checks what a user sees: the exit code (0, 1 for a fatal error, 2 for
 * a usage error, never a signal), a message naming the file, tensor, key or option at fault,
 * and that nothing half-written is left behind. Library rows call bj_model_load directly (for
 * many cut points it is the same code the CLI runs, without a process per cut). */
#include "frontends/model.h"
#include "support/fixtures.h"

#include <criterion/criterion.h>

#include "support/shell.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PACKED BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed"

/* ---- helpers -------------------------------------------------------------------------------- */
static uint8_t *slurp(const char *path, size_t *n) {
    char *text;
    bj_error err = { 0 };
    cr_assert_eq(bj_read_file(path, &text, n, &err), BJ_OK, "%s", err.msg);
    return (uint8_t *)text;
}

static void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

/* Runs `bitjit ARGS` (stderr merged); returns the exit code, 128 + signal when killed. */
static int bitjit(const char *args, char *out, size_t cap) {
    char cmd[20000];
    snprintf(cmd, sizeof cmd, "'%s' %s", BJ_BITJIT_EXE, args);
    return sh(cmd, out, cap);
}

/* Runs `bitjit ARGS` with stdout into out and stderr into errs (separately). */
static int bitjit2(const char *args, char *out, size_t cap, char *errs, size_t ecap) {
    char cmd[20000], epath[4200];
    snprintf(epath, sizeof epath, "%s/bad-stderr-%d.txt", BJ_TEST_TMP, (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s'", BJ_BITJIT_EXE, args, epath);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    FILE *f = fopen(epath, "rb");
    n = f ? fread(errs, 1, ecap - 1, f) : 0;
    errs[n] = 0;
    if (f) fclose(f);
    unlink(epath);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static int bitjitc(const char *args, char *out, size_t cap) {
    char cmd[20000], exe[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s", tool("bitjitc", exe, sizeof exe), args);
    return sh(cmd, out, cap);
}

static int count_words(const char *s) {
    int k = 0;
    for (; *s;) { while (*s == ' ' || *s == '\n') s++; if (*s) k++; while (*s && *s != ' ' && *s != '\n') s++; }
    return k;
}

/* A fatal error: exit 1 (not a signal, not 0) and every needle in the output. */
static void expect_fatal(int rc, const char *out, const char *what, const char *n1, const char *n2) {
    cr_expect_eq(rc, 1, "%s: exit %d (128+ is a signal):\n%s", what, rc, out);
    cr_expect(!n1 || strstr(out, n1), "%s: message lacks '%s':\n%s", what, n1, out);
    cr_expect(!n2 || strstr(out, n2), "%s: message lacks '%s':\n%s", what, n2, out);
}

/* A model directory under BJ_TEST_TMP with the packed model's small files. */
static void model_dir(const char *name, char *dir, size_t cap) { bj_test_model_copy(name, NULL, dir, cap); }

static void load_expect_fail(const char *path, const char *what, const char *needle) {
    bj_model m;
    bj_error err = { 0 };
    bj_status st = bj_model_load(&m, path, &err);
    cr_expect_neq(st, BJ_OK, "%s: loaded", what);
    if (st == BJ_OK) { bj_model_free(&m); return; }
    cr_expect(strstr(err.msg, needle), "%s: message lacks '%s': %s", what, needle, err.msg);
}

/* Offset (from the data section) and size of a tensor in a safetensors image; false if absent. */
static bool st_find(const uint8_t *img, const char *name, uint64_t *data0, uint64_t *off, uint64_t *len) {
    uint64_t hl = bj_rd64(img);
    json_error_t je;
    json_t *h = json_loadb((const char *)img + 8, hl, 0, &je), *t = json_object_get(h, name);
    bool ok = t != NULL;
    if (ok) {
        json_t *o = json_object_get(t, "data_offsets");
        *off = (uint64_t)json_integer_value(json_array_get(o, 0));
        *len = (uint64_t)json_integer_value(json_array_get(o, 1)) - *off;
        *data0 = 8 + hl;
    }
    json_decref(h);
    return ok;
}

/* ---- model files ----------------------------------------------------------------------------- */
Test(bad_input, truncated_safetensors_many_cut_points, .timeout = 120) {
    char dir[4096], st[4200];
    model_dir("bad-trunc-st", dir, sizeof dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    size_t n;
    uint8_t *img = slurp(PACKED "/model.safetensors", &n);
    uint64_t hl = bj_rd64(img);
    size_t cuts[40];
    int nc = 0;
    const size_t fixed[] = { 0, 1, 7, 8, 9, 16, 8 + hl / 2, 8 + hl - 1, 8 + hl, 8 + hl + 1, n - 1 };
    for (size_t i = 0; i < BJ_COUNTOF(fixed); i++) cuts[nc++] = fixed[i];
    for (int i = 1; i <= 25; i++) cuts[nc++] = 8 + hl + (n - 8 - hl) * (size_t)i / 26; /* inside the data */
    for (int i = 0; i < nc; i++) {
        char what[64];
        snprintf(what, sizeof what, "cut at %zu of %zu", cuts[i], n);
        spit(st, img, cuts[i]);
        load_expect_fail(dir, what, "model.safetensors");
    }
    /* and through the CLI: a clear error, exit 1, nothing generated */
    const size_t cli_cuts[] = { 4, 8 + hl / 2, n / 2 };
    for (size_t i = 0; i < BJ_COUNTOF(cli_cuts); i++) {
        char args[8192], out[16384];
        spit(st, img, cli_cuts[i]);
        snprintf(args, sizeof args, "run -m '%s' -p 'In the beginning' -n 4 --temp 0 --ids", dir);
        expect_fatal(bitjit(args, out, sizeof out), out, "CLI truncated safetensors", "model.safetensors", "error");
    }
    free(img);
}

/* The kjv model as GGUF (i2_s), written once by bitjitc convert. */
static void kjv_gguf(char *path, size_t cap) {
    snprintf(path, cap, "%s/bad-kjv-i2s.gguf", BJ_TEST_TMP);
    if (exists(path)) return;
    char args[8192], out[16384];
    snprintf(args, sizeof args, "convert '%s' -o '%s' --type i2_s --quiet", PACKED, path);
    cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
}

Test(bad_input, truncated_gguf_many_cut_points, .timeout = 300) {
    char gguf[4096], cut[4200];
    kjv_gguf(gguf, sizeof gguf);
    size_t n;
    uint8_t *img = slurp(gguf, &n);
    snprintf(cut, sizeof cut, "%s/bad-trunc.gguf", BJ_TEST_TMP);
    const size_t fixed[] = { 0, 3, 4, 8, 16, 23, 24, 25, 40, 100, 1000, 10000, 100000, n - 1 };
    for (int i = 0; i < (int)BJ_COUNTOF(fixed) + 24; i++) {
        size_t c = i < (int)BJ_COUNTOF(fixed) ? fixed[i] : n * (size_t)(i - BJ_COUNTOF(fixed) + 1) / 25;
        char what[64];
        snprintf(what, sizeof what, "cut at %zu of %zu", c, n);
        spit(cut, img, c);
        load_expect_fail(cut, what, "bad-trunc.gguf");
    }
    char args[8192], out[16384];
    spit(cut, img, n / 3);
    snprintf(args, sizeof args, "run -m '%s' -p 'In the beginning' -n 4 --temp 0 --ids", cut);
    expect_fatal(bitjit(args, out, sizeof out), out, "CLI truncated GGUF", "bad-trunc.gguf", NULL);
    unlink(cut);
    free(img);
}

static void set64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

Test(bad_input, size_fields_that_overflow, .timeout = 120) {
    char dir[4096], st[4200], gguf[4096], bad[4200], args[8192], out[16384];
    /* safetensors: header length near 2^64 (8 + len wraps) and 2^63 */
    model_dir("bad-overflow-st", dir, sizeof dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    size_t n;
    uint8_t *img = slurp(PACKED "/model.safetensors", &n);
    const uint64_t lens[] = { UINT64_MAX, UINT64_MAX - 7, 1ull << 63, (uint64_t)n };
    for (size_t i = 0; i < BJ_COUNTOF(lens); i++) {
        set64(img, lens[i]);
        spit(st, img, n);
        load_expect_fail(dir, "safetensors header length", "model.safetensors");
    }
    snprintf(args, sizeof args, "run -m '%s' -p hi -n 2", dir);
    expect_fatal(bitjit(args, out, sizeof out), out, "CLI header length", "model.safetensors", "header");
    free(img);
    /* GGUF: tensor count, metadata count and the first key's length at 2^64 - 1 and 2^63 */
    kjv_gguf(gguf, sizeof gguf);
    img = slurp(gguf, &n);
    snprintf(bad, sizeof bad, "%s/bad-overflow.gguf", BJ_TEST_TMP);
    const size_t fields[] = { 8, 16, 24 }; /* n_tensors, n_kv, first key length */
    for (size_t f = 0; f < BJ_COUNTOF(fields); f++)
        for (int k = 0; k < 2; k++) {
            uint8_t save[8];
            memcpy(save, img + fields[f], 8);
            set64(img + fields[f], k ? 1ull << 63 : UINT64_MAX);
            spit(bad, img, n);
            char what[64];
            snprintf(what, sizeof what, "GGUF field at %zu = %s", fields[f], k ? "2^63" : "2^64-1");
            load_expect_fail(bad, what, "bad-overflow.gguf");
            memcpy(img + fields[f], save, 8);
        }
    set64(img + 8, UINT64_MAX);
    spit(bad, img, n);
    snprintf(args, sizeof args, "run -m '%s' -p hi -n 2", bad);
    expect_fatal(bitjit(args, out, sizeof out), out, "CLI GGUF tensor count", "bad-overflow.gguf", NULL);
    unlink(bad);
    free(img);
}

static void edit_norm_oob(json_t *h) {
    json_t *o = json_object_get(json_object_get(h, "model.norm.weight"), "data_offsets");
    json_array_set_new(o, 1, json_integer(INT64_MAX / 2));
}
static void edit_shape_overflow(json_t *h) {
    json_t *t = json_object_get(h, "model.norm.weight");
    json_object_set_new(t, "shape", json_pack("[I,I]", (json_int_t)1 << 62, (json_int_t)16));
}
static void edit_drop_norm(json_t *h) { /* renamed: the data section stays covered, the name is gone */
    json_object_set(h, "model.norm.weight_renamed", json_object_get(h, "model.norm.weight"));
    json_object_del(h, "model.norm.weight");
}
static void edit_norm_dtype(json_t *h) { /* I16 has BF16's size: only the builder can tell */
    json_object_set_new(json_object_get(h, "model.norm.weight"), "dtype", json_string("I16"));
}
static void edit_norm_shape(json_t *h) { /* [384] -> [192,2]: same bytes, wrong shape */
    json_object_set_new(json_object_get(h, "model.norm.weight"), "shape", json_pack("[i,i]", 192, 2));
}
static void edit_q_shape(json_t *h) { /* a packed projection [96,384] -> [48,768] */
    json_object_set_new(json_object_get(h, "model.layers.0.self_attn.q_proj.weight"), "shape",
                        json_pack("[i,i]", 48, 768));
}

static void cli_bad_model(const char *name, bj_header_edit edit, const char *n1, const char *n2) {
    char dir[4096], args[16384], out[16384];
    bj_test_model_copy(name, edit, dir, sizeof dir);
    snprintf(args, sizeof args, "run -m '%s' -p 'In the beginning' -n 4 --temp 0 --ids", dir);
    expect_fatal(bitjit(args, out, sizeof out), out, name, n1, n2);
    snprintf(args, sizeof args, "'%s' -o '%s/out.so'", dir, dir);
    expect_fatal(bitjitc(args, out, sizeof out), out, name, n1, n2);
    char so[4200];
    snprintf(so, sizeof so, "%s/out.so", dir);
    cr_expect(!exists(so), "%s: bitjitc left %s", name, so);
}

Test(bad_input, tensor_out_of_bounds, .timeout = 120) {
    cli_bad_model("bad-oob", edit_norm_oob, "model.norm.weight", "model.safetensors");
    cli_bad_model("bad-shape-overflow", edit_shape_overflow, "model.norm.weight", "model.safetensors");
}

Test(bad_input, missing_tensor, .timeout = 120) { cli_bad_model("bad-missing", edit_drop_norm, "model.norm.weight", "missing"); }

Test(bad_input, wrong_dtype_or_shape, .timeout = 120) {
    cli_bad_model("bad-dtype", edit_norm_dtype, "model.norm.weight", "I16");
    cli_bad_model("bad-shape", edit_norm_shape, "model.norm.weight", "[192,2]");
    cli_bad_model("bad-qshape", edit_q_shape, "model.layers.0.self_attn.q_proj.weight", "[48,768]");
}

Test(bad_input, unknown_architecture, .timeout = 120) {
    char dir[4096], cfg[4200], args[8192], out[16384];
    model_dir("bad-arch", dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    size_t n;
    char *text = (char *)slurp(cfg, &n), *p = strstr(text, "BitNetForCausalLM");
    cr_assert(p);
    char edited[8192];
    snprintf(edited, sizeof edited, "%.*sMambaForCausalLM%s", (int)(p - text), text, p + strlen("BitNetForCausalLM"));
    bj_test_write_text(cfg, edited);
    snprintf(args, sizeof args, "run -m '%s' -p hi -n 2", dir);
    expect_fatal(bitjit(args, out, sizeof out), out, "unknown architecture", "MambaForCausalLM", "config.json");
    free(text);
}

/* Zeroes (code 1 = value 0 in the HF packing) one packed projection's data. */
Test(bad_input, all_zero_ternary_weights_warn, .timeout = 120) {
    char dir[4096], st[4200], args[8192], out[16384];
    model_dir("bad-zero", dir, sizeof dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    size_t n;
    uint8_t *img = slurp(st, &n);
    uint64_t d0, off, len;
    const char *name = "model.layers.2.mlp.down_proj.weight";
    cr_assert(st_find(img, name, &d0, &off, &len));
    memset(img + d0 + off, 0x55, len);
    spit(st, img, n);
    free(img);
    bj_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_model_load(&m, dir, &err), BJ_OK, "%s", err.msg);
    cr_expect(strstr(m.warning, name) && strstr(m.warning, "all zeros"), "warning: '%s'", m.warning);
    bj_model_free(&m);
    snprintf(args, sizeof args, "run -m '%s' -p 'In the beginning' -n 4 --temp 0 --ids", dir);
    int rc = bitjit(args, out, sizeof out);
    cr_expect_eq(rc, 0, "a warning is not fatal: exit %d\n%s", rc, out);
    cr_expect(strstr(out, "warning") && strstr(out, name) && strstr(out, "all zeros"), "%s", out);
    /* GGUF: the reader's warning reaches the user too (the micro model has an all-zero attn_v) */
    rc = bitjit("run -m '" BJ_SOURCE_DIR "/tests/fuzz/corpus/gguf/micro-i2s.gguf' -p hi -n 2 --ids --no-cache", out,
                sizeof out);
    cr_expect_eq(rc, 0, "GGUF: exit %d: %s", rc, out);
    cr_expect(strstr(out, "warning") && strstr(out, "blk.0.attn_v.weight") && strstr(out, "all zeros"), "GGUF: %s", out);
    /* the unmodified model loads without a warning */
    cr_assert_eq(bj_model_load(&m, PACKED, &err), BJ_OK, "%s", err.msg);
    cr_expect_str_eq(m.warning, "");
    bj_model_free(&m);
}

/* ---- prompts ---------------------------------------------------------------------------------- */
Test(bad_input, invalid_utf8_prompt_is_kept_as_bytes, .timeout = 120) {
    char out[16384], errs[16384];
    /* not fatal: invalid bytes are tokenized byte by byte (tokenizer.h) and echoed unchanged */
    int rc = bitjit2("run -p \"$(printf 'In the \\377\\376 beginning \\303')\" -n 4 --temp 0", out, sizeof out, errs,
                     sizeof errs);
    cr_expect_eq(rc, 0, "exit %d: %s", rc, errs);
    cr_expect(!memcmp(out, "In the \xff\xfe beginning \xc3", 21), "prompt not echoed byte for byte: %s", out);
    rc = bitjit2("run -p \"$(printf '\\377\\376\\375')\" -n 4 --temp 0 --ids", out, sizeof out, errs, sizeof errs);
    cr_expect_eq(rc, 0, "exit %d: %s", rc, errs);
    cr_expect_eq(count_words(out), 4, "4 ids expected: %s", out);
}

Test(bad_input, empty_prompt, .timeout = 120) {
    char out[16384];
    /* with a BOS token the model generates from BOS alone */
    int rc = bitjit("run -p '' -n 4 --temp 0 --ids", out, sizeof out);
    cr_expect_eq(rc, 0, "exit %d: %s", rc, out);
    rc = bitjit("run -p '' --no-bos -n 4 --temp 0 --ids", out, sizeof out);
    expect_fatal(rc, out, "empty prompt without BOS", "prompt is empty", NULL);
    char path[4200], args[8192];
    snprintf(path, sizeof path, "%s/bad-empty-prompt.txt", BJ_TEST_TMP);
    spit(path, "", 0);
    snprintf(args, sizeof args, "run -f '%s' --no-bos -n 4", path);
    expect_fatal(bitjit(args, out, sizeof out), out, "empty prompt file without BOS", "prompt is empty", NULL);
}

Test(bad_input, prompt_longer_than_context, .timeout = 120) {
    char path[4200], args[8192], out[16384];
    snprintf(path, sizeof path, "%s/bad-long-prompt.txt", BJ_TEST_TMP);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < 700; i++) fputs("And the LORD said unto Moses, ", f);
    fclose(f);
    snprintf(args, sizeof args, "run -f '%s' -n 4 --temp 0 --ids", path);
    expect_fatal(bitjit(args, out, sizeof out), out, "long prompt", "does not fit the context of 512", "prompt of");
    snprintf(args, sizeof args, "run -f '%s' -n 4 --temp 0 --ids --engine ref", path);
    expect_fatal(bitjit(args, out, sizeof out), out, "long prompt (ref)", "does not fit the context of 512", NULL);
}

/* -n past the context stops at the 512th position with a message, exit 0. The prompt is
 * BOS + 3 tokens; the last sampled token is printed but never stored: 512 - 4 + 1 = 509. */
Test(bad_input, n_past_context_stops_with_message, .timeout = 300) {
    static char out[65536], errs[16384];
    const char *engines[] = { "jit" }; /* the stop is bj_generate's, the message the driver's: any engine */
    for (int i = 0; i < 1; i++) {
        char args[256];
        snprintf(args, sizeof args, "run -p 'In the beginning' -n 2000 --temp 0 --ids --engine %s", engines[i]);
        int rc = bitjit2(args, out, sizeof out, errs, sizeof errs);
        cr_expect_eq(rc, 0, "%s: exit %d: %s", engines[i], rc, errs);
        cr_expect_eq(count_words(out), 509, "%s: ids printed: %d", engines[i], count_words(out));
        cr_expect(strstr(errs, "stopped at the context limit of 512"), "%s: no message: %s", engines[i], errs);
    }
    /* not printed when -n fits */
    int rc = bitjit2("run -p 'In the beginning' -n 8 --temp 0 --ids", out, sizeof out, errs, sizeof errs);
    cr_expect(rc == 0 && count_words(out) == 8 && !strstr(errs, "context limit"), "%s", errs);
}

/* ---- kernel cache ---------------------------------------------------------------------------- */
static int for_entries(const char *dir, void (*fn)(const char *path, int i)) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l < 4 || strcmp(de->d_name + l - 4, ".bjk")) continue;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (fn) fn(p, n);
        n++;
    }
    if (d) closedir(d);
    return n;
}

static void damage(const char *path, int i) {
    size_t n;
    uint8_t *img = slurp(path, &n);
    switch (i % 5) {
    case 0: spit(path, img, n / 2); break;            /* truncated in the object */
    case 1: spit(path, img, 100); break;              /* truncated in the header */
    case 2: spit(path, img, 0); break;                /* empty */
    case 3: img[n - 1] ^= 0x40; spit(path, img, n); break; /* last object byte flipped */
    case 4: img[20] ^= 1; spit(path, img, n); break;  /* header byte flipped */
    }
    free(img);
}

Test(bad_input, corrupt_or_truncated_cache_entries, .timeout = 300) {
    char dir[4096], args[8192], want[16384], out[16384];
    snprintf(dir, sizeof dir, "%s/bad-cache-%d", BJ_TEST_TMP, (int)getpid());
    char errs[16384];
    snprintf(args, sizeof args, "run --cache-dir '%s' -p 'In the beginning' -n 12 --temp 0 --ids", dir);
    cr_assert_eq(bitjit2(args, want, sizeof want, errs, sizeof errs), 0, "%s", errs);
    int n = for_entries(dir, damage);
    cr_assert_geq(n, 3, "only %d entries", n);
    snprintf(args, sizeof args, "run --cache-dir '%s' -p 'In the beginning' -n 12 --temp 0 --ids -v", dir);
    int rc = bitjit2(args, out, sizeof out, errs, sizeof errs);
    cr_expect_eq(rc, 0, "exit %d: %s", rc, errs);
    cr_expect_str_eq(out, want, "output changed");
    cr_expect(strstr(errs, "corrupt entry") && strstr(errs, ".bjk"), "no warning naming the entry: %s", errs);
    rc = bitjit2(args, out, sizeof out, errs, sizeof errs);
    cr_expect(rc == 0 && strstr(errs, "kernels compiled 0,") && !strstr(errs, "corrupt"), "rebuilt entries are valid: %s",
              errs);
}

Test(bad_input, unwritable_cache_directory, .timeout = 300) {
    char want[16384], out[16384], errs[16384], file[4200], args[8192];
    cr_assert_eq(bitjit2("run --no-cache -p 'In the beginning' -n 8 --temp 0 --ids", want, sizeof want, errs, sizeof errs), 0);
    snprintf(file, sizeof file, "%s/bad-cache-file", BJ_TEST_TMP);
    spit(file, "x", 1);
    const char *dirs[] = { "/dev/null/cache", "/proc/bitjit-cache", file };
    for (size_t i = 0; i < BJ_COUNTOF(dirs); i++) {
        snprintf(args, sizeof args, "run --cache-dir '%s' -p 'In the beginning' -n 8 --temp 0 --ids", dirs[i]);
        int rc = bitjit2(args, out, sizeof out, errs, sizeof errs);
        cr_expect_eq(rc, 0, "%s: exit %d: %s", dirs[i], rc, errs);
        cr_expect(strstr(errs, "warning") && strstr(errs, dirs[i]) && strstr(errs, "caching is off"), "%s", errs);
        cr_expect_str_eq(out, want, "%s: output differs", dirs[i]);
    }
}

/* ---- CLI values -------------------------------------------------------------------------------- */
Test(bad_input, bad_cli_values) {
    static const struct { const char *args, *needle; } rows[] = {
        { "run -t -2 -p hi", "-t" },          { "run -t 0 -p hi", "-t" },
        { "run -t 1x -p hi", "-t" },          { "run --top-p 1.5 -p hi", "--top-p" },
        { "run --top-p -0.1 -p hi", "--top-p" }, { "run --top-p nan -p hi", "--top-p" },
        { "run --top-k -5 -p hi", "--top-k" }, { "run --min-p 2 -p hi", "--min-p" },
        { "run --temp -1 -p hi", "--temp" },   { "run --temp inf -p hi", "--temp" },
        { "run --seed -2 -p hi", "--seed" },   { "run --repeat-penalty 0 -p hi", "--repeat-penalty" },
        { "run -n -1 -p hi", "-n" },           { "run -n 1e3 -p hi", "-n" },
        { "run -n 99999999999999999999 -p hi", "-n" },
        { "bench -t -1", "-t" },
    };
    for (size_t i = 0; i < BJ_COUNTOF(rows); i++) {
        char out[16384];
        int rc = bitjit(rows[i].args, out, sizeof out);
        cr_expect_eq(rc, 2, "'%s': exit %d: %s", rows[i].args, rc, out);
        cr_expect(strstr(out, rows[i].needle), "'%s': message lacks '%s': %s", rows[i].args, rows[i].needle, out);
    }
    static const struct { const char *args, *needle; } crows[] = {
        { "'" PACKED "' -o x.so --mcpu no-such-cpu", "no-such-cpu" },
        { "'" PACKED "' -o x.so --emit=exe", "exe" },
        { "'" PACKED "'", "-o" },
        { "convert '" PACKED "' -o x.gguf --type q4_k", "q4_k" },
    };
    for (size_t i = 0; i < BJ_COUNTOF(crows); i++) {
        char out[16384];
        int rc = bitjitc(crows[i].args, out, sizeof out);
        cr_expect(rc == 1 || rc == 2, "bitjitc %s: exit %d: %s", crows[i].args, rc, out);
        cr_expect(strstr(out, crows[i].needle), "bitjitc %s: message lacks '%s': %s", crows[i].args, crows[i].needle, out);
    }
    cr_expect(!exists("x.so") && !exists("x.gguf"), "a failed bitjitc left an output in the working directory");
}

/* ---- no partial output --------------------------------------------------------------------------- */
Test(bad_input, failed_convert_leaves_no_output, .timeout = 120) {
    char dir[4096], args[16384], out[16384], dst[4200];
    bj_test_model_copy("bad-convert", edit_drop_norm, dir, sizeof dir);
    snprintf(dst, sizeof dst, "%s/out.gguf", dir);
    snprintf(args, sizeof args, "convert '%s' -o '%s' --type i2_s --quiet", dir, dst);
    expect_fatal(bitjitc(args, out, sizeof out), out, "convert of a broken model", "model.norm.weight", NULL);
    cr_expect(!exists(dst), "convert left %s", dst);
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep tmp", dir);
    cr_expect_neq(sh(cmd, out, sizeof out), 0, "temporary files left: %s", out);
}
