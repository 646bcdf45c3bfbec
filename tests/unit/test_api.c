/* tests/unit/test_api.c -- the public API (bitjit.h): oracle ids through bitjit_generate_ids
 * from a model directory and from a bitjitc library, tokenize/detokenize against the oracle,
 * the per-token callback (pieces, early stop), seeded sampling, errors as status + message
 * (a library built for missing features, bad paths, bad arguments), and the example program
 * under examples/, which uses only bitjit.h and libbitjit.so. */
#include "support/oracle.h"

#include "codegen/codegen.h"
#include "runtime/bitjit.h"

#include <criterion/criterion.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/shell.h"

#define MODEL_DIR BJ_SOURCE_DIR "/models/kjv-bitnet-11m"

/* bitjitc MODEL [extra] -o BJ_TEST_TMP/api-<pid>-name.so; the path into lib. */
static void build_lib(const char *model, const char *extra, const char *name, char *lib, size_t cap) {
    char exe[4096], cmd[16384], out[16384];
    snprintf(lib, cap, "%s/api-%d-%s.so", BJ_TEST_TMP, (int)getpid(), name);
    snprintf(cmd, sizeof cmd, "'%s' '%s/%s' %s -o '%s'", tool("bitjitc", exe, sizeof exe), MODEL_DIR, model, extra, lib);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
}

static json_t *oracle_prompt(json_t *o, int i) { return json_array_get(json_object_get(o, "prompts"), (size_t)i); }

static bitjit_model *load(const char *path) {
    bitjit_load_options lo;
    bitjit_load_options_default(&lo);
    lo.n_threads = 2;
    lo.no_cache = true;
    bitjit_model *m = NULL;
    bitjit_error err;
    cr_assert_eq(bitjit_load(&m, path, &lo, &err), BITJIT_OK, "%s", err.message);
    cr_assert_eq(err.code, BITJIT_OK);
    return m;
}

/* Greedy ids from the oracle's prompt ids equal its greedy continuation. */
static void expect_greedy(bitjit_model *m, const char *key, int prompt) {
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    size_t np, nw;
    int32_t *ids = bj_test_ids(json_object_get(oracle_prompt(o, prompt), "ids"), &np);
    int32_t *want = bj_test_ids(json_object_get(oracle_prompt(o, prompt), key), &nw);
    int32_t got[64];
    size_t n = 0;
    bitjit_error err;
    cr_assert_eq(bitjit_generate_ids(m, ids, np, (int32_t)nw, NULL, NULL, NULL, got, &n, &err), BITJIT_OK, "%s",
                 err.message);
    cr_assert_eq(n, nw);
    for (size_t i = 0; i < n; i++) cr_expect_eq(got[i], want[i], "%s prompt %d token %zu", key, prompt, i);
    free(ids);
    free(want);
    json_decref(o);
}

Test(api, generate_matches_oracle_from_model_dir, .timeout = 120) {
    bitjit_model *m = load(MODEL_DIR "/packed");
    expect_greedy(m, "packed_greedy_ids", BJ_ORACLE_PLAIN_PROMPT);
    expect_greedy(m, "packed_greedy_ids", 2); /* a second call starts from an empty context */
    cr_expect_eq(bitjit_context_length(m), 512);
    bitjit_free(m);
}

Test(api, generate_matches_oracle_from_aot_library, .timeout = 180) {
    char lib[4096];
    build_lib("master", "", "master", lib, sizeof lib);
    bitjit_model *m = load(lib);
    expect_greedy(m, "master_greedy_ids", 1);
    bitjit_free(m);
    unlink(lib);
}

Test(api, tokenize_detokenize, .timeout = 60) {
    bitjit_model *m = load(MODEL_DIR "/packed");
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    for (int p = 0; p < 4; p++) {
        const char *text = json_string_value(json_object_get(oracle_prompt(o, p), "prompt"));
        size_t nw, n, len;
        int32_t *want = bj_test_ids(json_object_get(oracle_prompt(o, p), "ids"), &nw), *ids;
        bitjit_error err;
        cr_assert_eq(bitjit_tokenize(m, text, strlen(text), true, &ids, &n, &err), BITJIT_OK, "%s", err.message);
        cr_assert_eq(n, nw, "'%s'", text);
        for (size_t i = 0; i < n; i++) cr_expect_eq(ids[i], want[i]);
        char *back;
        cr_assert_eq(bitjit_detokenize(m, ids, n, true, &back, &len, &err), BITJIT_OK, "%s", err.message);
        cr_expect_str_eq(back, text);
        cr_expect_eq(len, strlen(text));
        bitjit_free_buffer(back);
        bitjit_free_buffer(ids);
        free(want);
    }
    cr_expect_gt(bitjit_vocab_size(m), 1000);
    json_decref(o);
    bitjit_free(m);
}

typedef struct collect {
    int32_t ids[64];
    char text[4096];
    size_t n, len, stop_after;
} collect;

static bool on_token(void *user, int32_t tok, const char *piece, size_t len) {
    collect *c = user;
    c->ids[c->n++] = tok;
    if (c->len + len < sizeof c->text) { memcpy(c->text + c->len, piece, len); c->len += len; }
    return c->n < c->stop_after;
}

Test(api, callback_pieces_and_early_stop, .timeout = 60) {
    bitjit_model *m = load(MODEL_DIR "/packed");
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    json_t *p = oracle_prompt(o, BJ_ORACLE_PLAIN_PROMPT);
    const char *want = json_string_value(json_object_get(p, "packed_greedy_text"));
    const char *prompt = json_string_value(json_object_get(p, "prompt"));
    collect c = { .stop_after = 64 };
    bitjit_error err;
    cr_assert_eq(bitjit_generate(m, prompt, 48, NULL, on_token, &c, &err), BITJIT_OK, "%s", err.message);
    cr_expect_eq(c.n, 48);
    cr_expect_str_eq(c.text, want);
    collect s = { .stop_after = 5 };
    cr_assert_eq(bitjit_generate(m, prompt, 48, NULL, on_token, &s, &err), BITJIT_OK);
    cr_expect_eq(s.n, 5, "the callback's false stops generation");
    json_decref(o);
    bitjit_free(m);
}

Test(api, seeded_sampling_reproduces, .timeout = 60) {
    bitjit_model *m = load(MODEL_DIR "/packed");
    bitjit_sampling sp;
    bitjit_sampling_default(&sp);
    sp.temperature = 1.0f;
    sp.seed = 7;
    collect a = { .stop_after = 64 }, b = { .stop_after = 64 };
    bitjit_error err;
    cr_assert_eq(bitjit_generate(m, "Blessed are the", 24, &sp, on_token, &a, &err), BITJIT_OK, "%s", err.message);
    cr_assert_eq(bitjit_generate(m, "Blessed are the", 24, &sp, on_token, &b, &err), BITJIT_OK);
    cr_expect_eq(a.n, b.n);
    cr_expect_arr_eq(a.ids, b.ids, a.n * sizeof a.ids[0]);
    sp.top_p = 2;
    cr_expect_eq(bitjit_generate(m, "x", 4, &sp, NULL, NULL, &err), BITJIT_E_INVALID);
    bitjit_free(m);
}

Test(api, errors_are_status_and_message) {
    bitjit_model *m = (bitjit_model *)1;
    bitjit_error err;
    cr_expect_eq(bitjit_load(&m, "/no/such/model", NULL, &err), BITJIT_E_IO);
    cr_expect_null(m);
    cr_expect_eq(err.code, BITJIT_E_IO);
    cr_expect(strstr(err.message, "/no/such/model"), "%s", err.message);
    cr_expect_eq(bitjit_load(NULL, "x", NULL, &err), BITJIT_E_INVALID);
    cr_expect_eq(bitjit_load(&m, "/bin/true", NULL, &err), BITJIT_E_FORMAT, "%s", err.message);
    cr_expect_eq(bitjit_load(&m, "/no/such", NULL, NULL), BITJIT_E_IO, "err may be NULL");
    cr_expect_str_eq(bitjit_status_name(BITJIT_E_UNSUPPORTED), "unsupported");
    cr_expect(bitjit_version()[0]);
}

Test(api, refuses_library_for_missing_features, .timeout = 120) {
    bj_cg_target t;
    bj_error e = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, NULL, NULL, &e), BJ_OK);
    if (strstr(t.features, "+amx-int8")) cr_skip_test("this host has AMX");
    char lib[4096];
    build_lib("packed", "--passes= --mattr=+amx-int8", "amx", lib, sizeof lib);
    bitjit_model *m = (bitjit_model *)1;
    bitjit_error err;
    cr_expect_eq(bitjit_load(&m, lib, NULL, &err), BITJIT_E_UNSUPPORTED);
    cr_expect_null(m);
    cr_expect(strstr(err.message, "amx-int8"), "%s", err.message);
    unlink(lib);
}

Test(api, example_program_runs, .timeout = 180) {
    char lib[4096], exe[4096], cmd[8192], out[16384], want[4096];
    build_lib("packed", "", "example", lib, sizeof lib);
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    size_t n, off = 0;
    json_t *p = oracle_prompt(o, BJ_ORACLE_PLAIN_PROMPT);
    const char *prompt = json_string_value(json_object_get(p, "prompt"));
    size_t plen = strlen(prompt);
    int32_t *ids = bj_test_ids(json_object_get(p, "packed_greedy_ids"), &n);
    off += (size_t)snprintf(want, sizeof want, "ids:");
    for (size_t i = 0; i < 32; i++) off += (size_t)snprintf(want + off, sizeof want - off, " %d", ids[i]);
    const char *text = json_string_value(json_object_get(p, "packed_greedy_text"));
    const char *models[] = { lib, MODEL_DIR "/packed" };
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' 32 2>&1", tool("bitjit-example", exe, sizeof exe), models[k], prompt);
        cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
        cr_expect(strstr(out, want), "%s\nwant: %s", out, want);
        cr_expect(!strncmp(out, prompt, plen));
        cr_expect(!strncmp(out + plen, text, 40), "%s", out);
    }
    snprintf(cmd, sizeof cmd, "'%s' /no/such/model", exe);
    cr_expect_eq(sh(cmd, out, sizeof out), 1);
    cr_expect(strstr(out, "error: ") && strstr(out, "/no/such/model"), "%s", out);
    free(ids);
    json_decref(o);
    unlink(lib);
}
