/* tests/unit/test_ctx.c -- the context size (issue 23, item 4): -c/--ctx-size on run, chat, serve,
 * bench and perplexity, the default capped to what fits in memory (a config whose
 * max_position_embeddings asks for terabytes of KV cache still runs, with a note), the C API's
 * bitjit_load_options.n_ctx, AOT libraries, and the context shifting of chat and serve
 * (bj_chat_tokenize_fit: the system prompt kept, the oldest turns dropped). */
#include "support/oracle.h"

#include "runtime/bitjit.h"
#include "runtime/chat.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "support/fixtures.h"
#include "support/shell.h"

#define KJV BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed"

/* The bundled model's config.json, written with another max_position_embeddings (its
 * model.safetensors unchanged): the model copy's directory into dir. */
static void model_with_positions(const char *name, long long positions, char *dir, size_t cap) {
    bj_test_model_copy(name, NULL, dir, cap);
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    cr_assert(c, "%s", je.text);
    json_object_set_new(c, "max_position_embeddings", json_integer(positions));
    cr_assert_eq(json_dump_file(c, path, JSON_INDENT(2)), 0);
    json_decref(c);
}

/* ---- the default: the model's context, capped to memory ---------------------------------------- */
/* 2^31 - 1 positions of the kjv shape are 13 TB of keys and values: more than any machine has.
 * Before -c existed this failed with "out of memory for the KV cache". */
Test(ctx, huge_model_context_is_capped_with_a_note, .timeout = 120) {
    char dir[4096], cmd[16384], out[16384];
    model_with_positions("ctx-huge", 2147483647LL, dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'In the beginning' -n 8 --temp 0 -t 1 --no-cache", BJ_BITJIT_EXE,
             dir);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "note:") && strstr(out, "context of 2147483647 tokens") && strstr(out, "-c/--ctx-size"),
              "no note about the capped context: %s", out);
    cr_expect(strstr(out, "In the beginning"), "%s", out);
    /* the same text as the bundled model (same weights), which has 512 positions */
    char *want = bitjit_continuation(KJV, "In the beginning", 8);
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'In the beginning' -n 8 --temp 0 -t 1 --no-cache -c 64 2>/dev/null",
             BJ_BITJIT_EXE, dir);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, want), "-c 64: %s\nwant: %s", out, want);
    /* -c given: no note */
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'In the beginning' -n 8 --temp 0 -t 1 --no-cache -c 64",
             BJ_BITJIT_EXE, dir);
    sh(cmd, out, sizeof out);
    cr_expect(!strstr(out, "note:"), "%s", out);
    /* the engines' own bound, from the graph: the fit is a whole number of positions of
     * 6 layers x (K + V) x 2 KV heads x 64 (config.json) x 4-byte floats, and 8 bytes a thread */
    bj_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_model_load(&m, dir, &err), BJ_OK, "%s", err.msg);
    uint64_t per = 6 * 2 * 2 * 64 * 4;
    cr_expect_eq(bj_engine_ctx_bytes_per_pos(&m.graph, 1), per + 8);
    cr_expect_eq(bj_engine_ctx_bytes_per_pos(&m.graph, 4), per + 32);
    cr_expect_eq(bj_engine_ctx_fit(&m.graph, 1, 10 * (per + 8) + 5), 10);
    cr_expect_eq(bj_engine_ctx_fit(&m.graph, 1, (uint64_t)1 << 62), 2147483647LL);
    int64_t n_ctx;
    char note[512];
    cr_expect_eq(bj_engine_ctx_choose(&m.graph, 100, 1, 1, &n_ctx, note, sizeof note, &err), BJ_OK);
    cr_expect_eq(n_ctx, 100);
    cr_expect_str_eq(note, "");
    cr_expect_eq(bj_engine_ctx_choose(&m.graph, 0, 1, 1, &n_ctx, note, sizeof note, &err), BJ_OK);
    cr_expect(n_ctx > 0 && n_ctx < 2147483647LL, "%lld", (long long)n_ctx);
    cr_expect(strstr(note, "context of 2147483647 tokens"), "%s", note);
    /* four engines (serve --parallel 4) share the same memory: about a quarter each (bounds wide
     * enough for the memory available to move between the two reads) */
    int64_t n4;
    cr_expect_eq(bj_engine_ctx_choose(&m.graph, 0, 1, 4, &n4, NULL, 0, &err), BJ_OK);
    cr_expect(n4 > n_ctx / 8 && n4 < n_ctx / 2, "1 engine %lld, 4 engines %lld", (long long)n_ctx, (long long)n4);
    bj_model_free(&m);
    free(want);
}

/* ---- -c/--ctx-size in the commands --------------------------------------------------------------- */
Test(ctx, run_ctx_size, .timeout = 120) {
    char cmd[8192], out[16384];
    /* the KV cache holds 8 positions: generation stops there */
    snprintf(cmd, sizeof cmd, "'%s' run -p 'In the beginning' -n 40 --temp 0 -t 1 -c 8 --ids", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "context limit of 8 positions"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' run -p 'In the beginning' -n 4 --temp 0 --ctx-size 8 -q", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    /* the reference engine too */
    snprintf(cmd, sizeof cmd, "'%s' run --engine ref -p 'In the beginning' -n 40 --temp 0 -c 8", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "context limit of 8 positions"), "%s", out);
    /* more than the model's 512 (config.json), or not a positive number: usage errors naming the flag */
    const char *bad[] = { "-c 513", "-c 0", "-c x", "--ctx-size -4" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "'%s' run -p a -n 1 %s", BJ_BITJIT_EXE, bad[i]);
        cr_expect_eq(sh(cmd, out, sizeof out), 2, "%s: %s", bad[i], out);
        cr_expect(strstr(out, "-c/--ctx-size"), "%s: %s", bad[i], out);
    }
    snprintf(cmd, sizeof cmd, "'%s' run -p a -n 1 -c 513", BJ_BITJIT_EXE);
    sh(cmd, out, sizeof out);
    cr_expect(strstr(out, "exceeds the model's context of 512 tokens"), "%s", out);
}

Test(ctx, help_lists_ctx_size) {
    const char *cmds[] = { "run", "chat", "serve", "bench", "perplexity" };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char cmd[4096], out[32768];
        snprintf(cmd, sizeof cmd, "'%s' %s --help", BJ_BITJIT_EXE, cmds[i]);
        cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", cmds[i]);
        cr_expect(strstr(out, "-c, --ctx-size N"), "%s --help lacks -c/--ctx-size", cmds[i]);
    }
}

Test(ctx, bench_and_perplexity_ctx_size, .timeout = 300) {
    char cmd[8192], out[32768];
    /* bench: the prefill and decode tests need -p + -n positions */
    snprintf(cmd, sizeof cmd, "'%s' bench -p 16 -n 16 -r 1 -t 1 --bw-mib 0 -o csv -c 24", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "24"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' bench -p 16 -n 16 -r 1 -t 1 --bw-mib 0 -o csv -c 32", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' bench -p 16 -n 16 -r 1 -t 1 --bw-mib 0 -c 600", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 2, "%s", out);
    /* perplexity: -c is the window and the engine's context */
    snprintf(cmd, sizeof cmd, "'%s' perplexity -q -t 1 -f '%s/models/kjv-bitnet-11m/heldout.txt' -c 64 --chunks 2",
             BJ_BITJIT_EXE, BJ_SOURCE_DIR);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "2 windows of 64"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' perplexity -q -f '%s/models/kjv-bitnet-11m/heldout.txt' --ctx-size 1",
             BJ_BITJIT_EXE, BJ_SOURCE_DIR);
    cr_expect_eq(sh(cmd, out, sizeof out), 2, "%s", out);
}

/* An AOT library: its graph carries the model's 512 positions; -c and n_ctx size its KV cache. */
Test(ctx, aot_library_ctx_size, .timeout = 300) {
    char exe[4096], lib[4096], cmd[16384], out[16384];
    snprintf(lib, sizeof lib, "%s/ctx-%d.so", BJ_TEST_TMP, (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o '%s'", tool("bitjitc", exe, sizeof exe), KJV, lib);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'In the beginning' -n 40 --temp 0 -t 1 -c 16", BJ_BITJIT_EXE, lib);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "context limit of 16 positions"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p a -n 1 -c 513", BJ_BITJIT_EXE, lib);
    cr_expect_eq(sh(cmd, out, sizeof out), 2, "%s", out);

    bitjit_load_options lo;
    bitjit_load_options_default(&lo);
    cr_expect_eq(lo.n_ctx, 0);
    lo.n_threads = 1;
    lo.n_ctx = 48;
    bitjit_model *m;
    bitjit_error err;
    cr_assert_eq(bitjit_load(&m, lib, &lo, &err), BITJIT_OK, "%s", err.message);
    cr_expect_eq(bitjit_context_length(m), 48);
    bitjit_free(m);
    unlink(lib);
}

/* ---- the C API ----------------------------------------------------------------------------------- */
Test(ctx, api_n_ctx, .timeout = 120) {
    bitjit_load_options lo;
    bitjit_load_options_default(&lo);
    lo.n_threads = 1;
    lo.no_cache = true;
    bitjit_model *m;
    bitjit_error err;
    /* 0: the model's 512 (config.json); it fits in memory */
    cr_assert_eq(bitjit_load(&m, KJV, &lo, &err), BITJIT_OK, "%s", err.message);
    cr_expect_eq(bitjit_context_length(m), 512);
    bitjit_free(m);
    for (int ref = 0; ref < 2; ref++) {
        lo.reference = ref;
        lo.n_ctx = 12;
        cr_assert_eq(bitjit_load(&m, KJV, &lo, &err), BITJIT_OK, "%s", err.message);
        cr_expect_eq(bitjit_context_length(m), 12);
        int32_t prompt[4] = { 4094, 100, 200, 300 }, got[64];
        size_t n = 0;
        cr_expect_eq(bitjit_generate_ids(m, prompt, 4, 40, NULL, NULL, NULL, got, &n, &err), BITJIT_OK, "%s",
                     err.message);
        cr_expect_leq(n, 12 - 4 + 1, "%zu tokens from a context of 12", n);
        bitjit_free(m);
    }
    lo.reference = false;
    lo.n_ctx = 513;
    cr_expect_eq(bitjit_load(&m, KJV, &lo, &err), BITJIT_E_INVALID);
    cr_expect(m == NULL);
    cr_expect(strstr(err.message, "n_ctx") && strstr(err.message, "512"), "%s", err.message);
    lo.n_ctx = -1;
    cr_expect_eq(bitjit_load(&m, KJV, &lo, &err), BITJIT_E_INVALID);
    cr_expect(strstr(err.message, "n_ctx"), "%s", err.message);
    /* a model whose context does not fit in memory loads, capped */
    char dir[4096];
    model_with_positions("ctx-huge-api", 2147483647LL, dir, sizeof dir);
    lo.n_ctx = 0;
    lo.reference = true;
    cr_assert_eq(bitjit_load(&m, dir, &lo, &err), BITJIT_OK, "%s", err.message);
    cr_expect(bitjit_context_length(m) > 0 && bitjit_context_length(m) < 2147483647LL, "%lld",
              (long long)bitjit_context_length(m));
    bitjit_free(m);
}

/* ---- context shifting ---------------------------------------------------------------------------- */
static size_t count_tokens(const bj_chat_template *t, const bj_tokenizer *tok, const bj_chat_msg *m, size_t n) {
    int32_t *ids;
    size_t k;
    bj_error err = { 0 };
    cr_assert_eq(bj_chat_tokenize(t, tok, m, n, true, &ids, &k, &err), BJ_OK, "%s", err.msg);
    free(ids);
    return k;
}

Test(ctx, chat_tokenize_fit_keeps_system_drops_oldest_turns) {
    bj_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_model_load(&m, KJV, &err), BJ_OK, "%s", err.msg);
    bj_chat_template t;
    bj_chat_template_init(&t, BJ_CHAT_CHATML, NULL);
    bj_chat_msg all[] = {
        { "system", "Thou art a scribe." },
        { "user", "In the beginning God created the heaven and the earth." },
        { "assistant", "And the earth was without form, and void." },
        { "user", "And God said, Let there be light." },
        { "assistant", "And there was light." },
        { "user", "And God saw the light, that it was good." },
    };
    size_t n = sizeof all / sizeof *all;
    bj_chat_msg later[] = { all[0], all[3], all[4], all[5] }, last[] = { all[0], all[5] };
    size_t n_all = count_tokens(&t, m.tok, all, n), n_later = count_tokens(&t, m.tok, later, 4),
           n_last = count_tokens(&t, m.tok, last, 2);
    cr_assert(n_last < n_later && n_later < n_all);

    int32_t *ids, *want;
    size_t k, nw, first;
    /* everything fits: nothing dropped */
    cr_assert_eq(bj_chat_tokenize_fit(&t, m.tok, all, n, 1, (int64_t)n_all + 10, 10, &ids, &k, &first, &err), BJ_OK);
    cr_expect_eq(k, n_all);
    cr_expect_eq(first, 1);
    free(ids);
    /* room for the later turn only: the first user/assistant turn goes, the system message stays */
    cr_assert_eq(bj_chat_tokenize_fit(&t, m.tok, all, n, 1, (int64_t)n_later + 10, 10, &ids, &k, &first, &err), BJ_OK,
                 "%s", err.msg);
    cr_expect_eq(first, 3);
    cr_assert_eq(bj_chat_tokenize(&t, m.tok, later, 4, true, &want, &nw, &err), BJ_OK);
    cr_assert_eq(k, nw);
    cr_expect_eq(memcmp(ids, want, k * sizeof *ids), 0);
    free(ids);
    free(want);
    /* one token short of that: both turns go */
    cr_assert_eq(bj_chat_tokenize_fit(&t, m.tok, all, n, 1, (int64_t)n_later + 9, 10, &ids, &k, &first, &err), BJ_OK);
    cr_expect_eq(first, 5);
    cr_expect_eq(k, n_last);
    free(ids);
    /* not even the system message and the last one: an error saying so */
    cr_expect_eq(bj_chat_tokenize_fit(&t, m.tok, all, n, 1, (int64_t)n_last + 9, 10, &ids, &k, &first, &err),
                 BJ_E_INVALID);
    cr_expect(ids == NULL && k == 0);
    cr_expect(strstr(err.msg, "context"), "%s", err.msg);
    /* a turn is a message up to the next user message: two assistant messages go with their user one */
    bj_chat_msg two[] = { all[0], all[1], all[2], all[4], all[5] };
    cr_assert_eq(bj_chat_tokenize_fit(&t, m.tok, two, 5, 1, (int64_t)n_last + 10, 10, &ids, &k, &first, &err), BJ_OK);
    cr_expect_eq(first, 4);
    free(ids);
    bj_model_free(&m);
}
