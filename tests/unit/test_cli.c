/* tests/unit/test_cli.c -- `bitjit` as a user runs it: oracle ids through the CLI, help,
 * seeds, and bad flags / bad paths giving clear errors and non-zero exits. */
#include "support/oracle.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs `bitjit ARGS 2>&1` (or with stderr dropped), returns the exit code; output in out. */
static int run(const char *args, char *out, size_t cap, bool with_stderr) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s %s", BJ_BITJIT_EXE, args, with_stderr ? "2>&1" : "2>/dev/null");
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The oracle's greedy ids of prompt (under key, e.g. "packed_greedy_ids") as text, up to a known
 * near-tie (support/oracle.h); returns how many. */
static int oracle_ids_text(const char *key, int prompt, char *buf, size_t cap, char *prompt_text, size_t pcap) {
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    json_t *p = json_array_get(json_object_get(o, "prompts"), (size_t)prompt);
    snprintf(prompt_text, pcap, "%s", json_string_value(json_object_get(p, "prompt")));
    size_t n, off = 0;
    int32_t *ids = bj_test_ids(json_object_get(p, key), &n);
    char model[16];
    snprintf(model, sizeof model, "%.*s", (int)strcspn(key, "_"), key);
    int tie = bj_test_oracle_greedy_tie("models/kjv-bitnet-11m/oracle.json", model, prompt_text);
    if (tie >= 0 && (size_t)tie < n) n = (size_t)tie;
    for (size_t i = 0; i < n; i++) off += (size_t)snprintf(buf + off, cap - off, "%s%d", i ? " " : "", ids[i]);
    snprintf(buf + off, cap - off, "\n");
    free(ids);
    json_decref(o);
    return (int)n;
}

Test(cli, run_ids_match_oracle_packed_and_master, .timeout = 300) {
    const char *models[] = { "packed", "master" }, *keys[] = { "packed_greedy_ids", "master_greedy_ids" };
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < 4; i++) {
            char want[4096], prompt[512], args[1024], out[8192];
            int n = oracle_ids_text(keys[m], i, want, sizeof want, prompt, sizeof prompt);
            snprintf(args, sizeof args, "run -m '%s/models/kjv-bitnet-11m/%s' -p '%s' -n %d --temp 0 --ids",
                     BJ_SOURCE_DIR, models[m], prompt, n);
            cr_assert_eq(run(args, out, sizeof out, false), 0, "%s", args);
            cr_expect_str_eq(out, want, "%s '%s'", models[m], prompt);
        }
}

Test(cli, default_model_and_text_output, .timeout = 120) {
    char out[8192], want[4096], prompt[512];
    char args[1024];
    oracle_ids_text("packed_greedy_ids", BJ_ORACLE_PLAIN_PROMPT, want, sizeof want, prompt, sizeof prompt);
    snprintf(args, sizeof args, "run -p '%s' -n 48 --temp 0 --ids", prompt);
    cr_assert_eq(run(args, out, sizeof out, false), 0);
    cr_expect_str_eq(out, want);
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    const char *text = json_string_value(
        json_object_get(json_array_get(json_object_get(o, "prompts"), BJ_ORACLE_PLAIN_PROMPT), "packed_greedy_text"));
    snprintf(args, sizeof args, "run -p '%s' -n 48 --temp 0", prompt);
    cr_assert_eq(run(args, out, sizeof out, false), 0);
    char expect[4096];
    snprintf(expect, sizeof expect, "%s%s\n", prompt, text);
    cr_expect_str_eq(out, expect);
    json_decref(o);
}

Test(cli, seed_reproducible, .timeout = 120) {
    char a[8192], b[8192];
    cr_assert_eq(run("run -p 'Blessed are the' -n 24 --temp 1 --seed 7 --ids", a, sizeof a, false), 0);
    cr_assert_eq(run("run -p 'Blessed are the' -n 24 --temp 1 --seed 7 --ids", b, sizeof b, false), 0);
    cr_expect_str_eq(a, b);
    cr_assert_gt(strlen(a), 10);
}

Test(cli, help) {
    char out[16384];
    cr_assert_eq(run("--help", out, sizeof out, true), 0);
    cr_assert(strstr(out, "run"));
    cr_assert_eq(run("run --help", out, sizeof out, true), 0);
    const char *opts[] = { "--model", "--prompt", "--file", "--n-predict", "--threads", "--temp", "--top-k",
                           "--top-p", "--min-p", "--repeat-penalty", "--seed", "--ids" };
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) cr_expect(strstr(out, opts[i]), "help lacks %s", opts[i]);
}

static void expect_fail(const char *args, const char *needle) {
    char out[16384];
    int rc = run(args, out, sizeof out, true);
    cr_expect_neq(rc, 0, "'%s' exited 0", args);
    cr_expect(strstr(out, needle), "'%s': output lacks '%s':\n%s", args, needle, out);
}

Test(cli, bad_input) {
    expect_fail("frobnicate", "unknown command");
    expect_fail("run --temp abc", "--temp");
    expect_fail("run -n -3", "-n");
    expect_fail("run --bogus", "--bogus");
    expect_fail("run -p", "needs a value");
    expect_fail("run -m /nonexistent/model -p hi", "/nonexistent/model");
    expect_fail("run -f /nonexistent/prompt.txt", "/nonexistent/prompt.txt");
    expect_fail("run --engine warp", "warp");
    expect_fail("run -p a -f b", "not both");
}

Test(cli, engines_agree_and_x86_64_code_runs, .timeout = 300) {
    char want[4096], prompt[512], out[8192], args[1024];
    oracle_ids_text("packed_greedy_ids", 1, want, sizeof want, prompt, sizeof prompt);
    const char *variants[] = { "--engine ref", "--engine jit -t 1", "--engine jit -t 2 --mcpu x86-64",
                               "--engine jit --mcpu x86-64-v2 --no-cache" };
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        snprintf(args, sizeof args, "run %s --cache-dir '%s/cli-cache' -p '%s' -n 48 --temp 0 --ids", variants[i],
                 BJ_TEST_TMP, prompt);
        cr_assert_eq(run(args, out, sizeof out, false), 0, "%s", args);
        cr_expect_str_eq(out, want, "%s", variants[i]);
    }
}

Test(cli, verbose_reports_compiled_then_loaded, .timeout = 300) {
    char args[1024], out[16384];
    /* --no-autotune: a quick tune cut short by its budget compiles candidates at the next start */
    snprintf(args, sizeof args, "run --cache-dir '%s/cli-cache-%d' -p Amen -n 2 --temp 0 -v --no-autotune", BJ_TEST_TMP,
             (int)getpid());
    cr_assert_eq(run(args, out, sizeof out, true), 0, "%s", out);
    cr_expect(strstr(out, "kernels compiled") && !strstr(out, "kernels compiled 0,"), "cold run compiles:\n%s", out);
    cr_assert_eq(run(args, out, sizeof out, true), 0, "%s", out);
    cr_expect(strstr(out, "kernels compiled 0,"), "warm run compiles nothing:\n%s", out);
}

Test(cli, info_and_bench, .timeout = 300) {
    char out[16384];
    cr_assert_eq(run("info", out, sizeof out, true), 0);
    cr_expect(strstr(out, "LLVM") && strstr(out, "cpu:") && strstr(out, "kernel cache"), "%s", out);
    cr_assert_eq(run("bench -p 16 -n 8 -r 1 -t 1 --bw-mib 16 --engine jit,ref", out, sizeof out, true), 0, "%s", out);
    cr_expect(strstr(out, "| jit | 1 | pp16 |") && strstr(out, "| jit | 1 | tg8 |") && strstr(out, "| ref | 1 | tg8 |"),
              "%s", out);
    cr_expect(strstr(out, "% of roofline") && strstr(out, "compile: cold"), "%s", out);
}

Test(cli, bad_engine_flags) {
    expect_fail("run --mcpu bj-no-such-cpu -p hi", "unknown CPU 'bj-no-such-cpu'");
    expect_fail("bench -t 0", "-t");
    expect_fail("bench -p 0 -n 0", "nothing to measure");
    expect_fail("bench --engine warp", "warp");
    expect_fail("info --bogus", "--bogus");
    expect_fail("run --profile --engine ref -p hi", "--profile needs the JIT engine");
}

/* run --profile: a table on stderr after the text, with the ternary matmuls by shape (kjv has
 * four: 384x384, 128x384, 1024x384, 384x1024) and the head, each with its GB/s. */
Test(cli, run_profile_table, .timeout = 300) {
    char out[16384];
    cr_assert_eq(run("run -p Amen -n 4 --temp 0 --profile -t 1", out, sizeof out, true), 0, "%s", out);
    cr_expect(strstr(out, "profile of 4 forwards"), "%s", out);
    const char *want[] = { "matmul 384x384 ", "matmul 128x384 ", "matmul 1024x384 ", "matmul 384x1024 ", "head 4096x384 ",
                           "attention ", "(between steps)" };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) cr_expect(strstr(out, want[i]), "no '%s' row:\n%s", want[i], out);
}
