/* tests/unit/test_cli_edges.c -- the command line's edges of issue 23: --mattr strings LLVM
 * aborted on and unknown features, -t above the CPU count, prompts longer than the context,
 * prompts from stdin, write errors on stdout, --seed -1, $BITJIT_MODEL in errors, -v for a
 * bitjitc library, progress bars on a narrow terminal, singular/plural, the README's perplexity
 * figure, and chat templates whose markers the vocabulary lacks. Each runs the real binaries. */
#include <criterion/criterion.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/files.h"
#include "support/shell.h"
#include "support/tmux.h"

#define MODEL BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed"

/* `bitjit ARGS` through the shell with stderr merged (or dropped), exit code returned. */
static int bj(const char *args, char *out, size_t cap, bool with_stderr) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s %s", BJ_BITJIT_EXE, args, with_stderr ? "" : "2>/dev/null");
    if (with_stderr) return sh(cmd, out, cap);
    int st = 0;
    char *o = sh_stdout(cmd, &st);
    snprintf(out, cap, "%s", o ? o : "");
    free(o);
    return st;
}

/* Items 2 and 3: a bare feature name is +NAME (LLVM alone read it as -NAME and aborted on the code
 * bitjit made for the features it believed on), and gives what +NAME gives; an unknown name is
 * one error, exit 2, before anything loads, in every command that takes --mattr. */
Test(cli_edges, mattr_bare_names_run_and_unknown_names_are_one_error, .timeout = 600) {
    char want[4096], out[16384], args[1024];
    cr_assert_eq(bj("run -p Amen -n 6 --temp 0 --ids -q --no-cache", want, sizeof want, false), 0);
    const char *bare[] = { "avx2", "avx512vnni", "-sse4.2", "+avx512vnni,-avx512bw" };
    for (size_t i = 0; i < sizeof bare / sizeof *bare; i++) {
        snprintf(args, sizeof args, "run -p Amen -n 6 --temp 0 --ids -q --no-cache --mattr=%s", bare[i]);
        int rc = bj(args, out, sizeof out, true);
        if (rc == 1 && strstr(out, "refusing") ) continue; /* code this host cannot run: refused, not aborted */
        cr_expect_eq(rc, 0, "%s: exit %d: %s", args, rc, out);
        cr_expect_str_eq(out, want, "%s", args);
    }
    cr_assert_eq(bj("info --mattr avx2", out, sizeof out, true), 0, "%s", out);
    cr_expect(strstr(out, " avx2"), "%s", out);
    char exe[4096], cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o '%s/edges-avx2.so' --mattr avx2 --mcpu x86-64", tool("bitjitc", exe, sizeof exe),
             MODEL, BJ_TEST_TMP);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
    const char *cmds[] = { "run -p Amen -n 2", "info", "bench -p 8 -n 8 -r 1", "tune --dry-run", "perplexity -f x" };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        snprintf(args, sizeof args, "%s --mattr +nonsense", cmds[i]);
        cr_expect_eq(bj(args, out, sizeof out, true), 2, "%s: %s", args, out);
        cr_expect_eq(count_in(out, "unknown CPU feature '+nonsense'"), 1, "%s: one error naming the feature:\n%s", args, out);
        cr_expect_eq(count_in(out, "not a recognized feature"), 0, "%s: LLVM's warnings:\n%s", args, out);
    }
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o '%s/edges-x.so' --mattr +nonsense", exe, MODEL, BJ_TEST_TMP);
    cr_expect_eq(sh(cmd, out, sizeof out), 2, "%s", out);
    cr_expect_eq(count_in(out, "unknown CPU feature '+nonsense'"), 1, "%s", out);
    cr_expect_eq(bj("run --mcpu nonsense -p Amen", out, sizeof out, true), 2, "%s", out);
}

/* Item 5: -t above the CPUs this process may use is capped, with a warning naming both. */
Test(cli_edges, threads_above_the_cpu_count_are_capped, .timeout = 120) {
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    int cpus = CPU_COUNT(&set);
    if (cpus >= 1024) cr_skip_test("1024 CPUs or more: -t 1024 is not above the count");
    char out[16384], want[64];
    cr_assert_eq(bj("run -p Amen -n 2 --temp 0 --ids -q -t 1024 -v", out, sizeof out, true), 0, "%s", out);
    cr_expect(strstr(out, "warning: -t 1024 is more than"), "%s", out);
    snprintf(want, sizeof want, "using %d ", cpus);
    cr_expect(strstr(out, want), "no '%s':\n%s", want, out);
    snprintf(want, sizeof want, " %d thread%s\n", cpus, cpus == 1 ? "" : "s");
    cr_expect(strstr(out, want), "the engine did not get %d threads:\n%s", cpus, out);
    cr_assert_eq(bj("run -p Amen -n 2 --temp 0 --ids -q -t 1", out, sizeof out, true), 0, "%s", out);
    cr_expect(!strstr(out, "warning"), "%s", out);
}

/* Item 7: a prompt longer than the context fails before anything is printed. */
Test(cli_edges, long_prompt_fails_before_printing, .timeout = 120) {
    char out[65536], args[1024];
    snprintf(args, sizeof args, "run -f '%s/models/kjv-bitnet-11m/heldout.txt' -n 4 -q", BJ_SOURCE_DIR);
    int rc = bj(args, out, sizeof out, false);
    cr_expect_eq(rc, 1);
    cr_expect_str_eq(out, "", "stdout got the prompt:\n%.200s", out);
    cr_assert_eq(bj(args, out, sizeof out, true), 1);
    cr_expect(strstr(out, "does not fit the context"), "%s", out);
}

/* Item 8: -f - and -f /dev/stdin read a pipe; the ids are those of the same text given with -p. */
Test(cli_edges, prompt_from_stdin, .timeout = 120) {
    char want[4096], out[4096], cmd[8192];
    cr_assert_eq(bj("run -p 'And God said' -n 8 --temp 0 --ids -q", want, sizeof want, false), 0);
    const char *forms[] = { "-", "/dev/stdin" };
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "printf 'And God said' | '%s' run -f %s -n 8 --temp 0 --ids -q 2>&1", BJ_BITJIT_EXE,
                 forms[i]);
        cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
        cr_expect_str_eq(out, want, "-f %s", forms[i]);
    }
}

/* Item 8 on a terminal: lines typed into `-f -` and one Ctrl-D at the start of a line end the
 * prompt (a second Ctrl-D was needed: reading went on after end of file), and the ids are those of
 * the same text through a pipe (the test above ties that to -p). */
Test(cli_edges, prompt_from_a_terminal, .timeout = 120) {
    char want[4096], out[65536], cmd[8192], sock[64], path[4096];
    snprintf(cmd, sizeof cmd, "printf 'In the beginning\\nGod created\\n' | '%s' run -m '%s' -f - -n 8 --temp 0 --ids -q",
             BJ_BITJIT_EXE, MODEL);
    cr_assert_eq(sh(cmd, want, sizeof want), 0, "%s", want);
    snprintf(path, sizeof path, "%s/edges-tty-%d.out", BJ_TEST_TMP, (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -f - -n 8 --temp 0 --ids -q >'%s'; echo RUN-EXITED \\$?", BJ_BITJIT_EXE,
             MODEL, path);
    tmux_start(sock, sizeof sock, "bjtty", cmd);
    tmux_keys(sock, "'In the beginning' Enter 'God created' Enter C-d");
    cr_expect(pane_wait(sock, "RUN-EXITED 0", 1, out, sizeof out), "one Ctrl-D did not end the prompt:\n%s", out);
    tmux_kill(sock);
    char *got = read_all(path, NULL);
    unlink(path);
    cr_expect_str_eq(got, want);
    free(got);
}

/* Item 9: a write error on stdout makes the exit status non-zero, with a message. */
Test(cli_edges, write_errors_fail, .timeout = 120) {
    if (access("/dev/full", W_OK) != 0) cr_skip_test("no /dev/full");
    const char *cmds[] = { "run -p Amen -n 4 --temp 0 -q", "run -p Amen -n 4 --temp 0 --ids -q", "info", "run --help",
                           "info --list-cpus" };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char cmd[8192], out[4096];
        snprintf(cmd, sizeof cmd, "{ '%s' %s > /dev/full; }", BJ_BITJIT_EXE, cmds[i]);
        int rc = sh(cmd, out, sizeof out);
        cr_expect_eq(rc, 1, "%s: exit %d", cmds[i], rc);
        cr_expect(strstr(out, "stdout") && strstr(out, "No space left"), "%s: %s", cmds[i], out);
    }
}

/* Item 10: --seed -1 is "from the clock", as llama.cpp's; -2 is still refused. */
Test(cli_edges, seed_minus_one_is_random, .timeout = 120) {
    char out[4096];
    cr_expect_eq(bj("run -p Amen -n 4 --temp 1 --seed -1 --ids -q", out, sizeof out, true), 0, "%s", out);
    cr_expect(out[0] >= '0' && out[0] <= '9', "%s", out);
    cr_expect_eq(bj("run -p Amen -n 4 --seed -2 -q", out, sizeof out, true), 2, "%s", out);
    cr_expect_eq(bj("run --help", out, sizeof out, true), 0);
    cr_expect(strstr(out, "-1: from the clock"), "%s", out);
}

/* Item 11: a model path from $BITJIT_MODEL says so when it fails; -m does not. */
Test(cli_edges, bitjit_model_variable_named_in_errors, .timeout = 60) {
    char out[4096], cmd[8192];
    snprintf(cmd, sizeof cmd, "BITJIT_MODEL=/nope '%s' run -p Amen -q", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "$BITJIT_MODEL") && strstr(out, "/nope"), "%s", out);
    snprintf(cmd, sizeof cmd, "BITJIT_MODEL=/nope '%s' run -m /nope2 -p Amen -q", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 1, "%s", out);
    cr_expect(!strstr(out, "BITJIT_MODEL") && strstr(out, "/nope2"), "%s", out);
    /* a file that is none of the forms lists them all, the library among them (item 15) */
    cr_expect_eq(bj("run -m " BJ_SOURCE_DIR "/README.md -p Amen -q", out, sizeof out, true), 1, "%s", out);
    cr_expect(strstr(out, ".gguf") && strstr(out, ".safetensors") && strstr(out, "(.so)"), "%s", out);
}

/* Item 12: -v on a bitjitc library names it as one, the CPU it was built for and the tuning
 * database baked in at build time, not the JIT's compile and cache figures. */
Test(cli_edges, verbose_on_a_library_describes_the_library, .timeout = 300) {
    char exe[4096], lib[4096], db[4096], cmd[16384], out[16384];
    snprintf(lib, sizeof lib, "%s/edges-v3-%d.so", BJ_TEST_TMP, (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o '%s' --mcpu x86-64-v3 --no-tune-db", tool("bitjitc", exe, sizeof exe), MODEL,
             lib);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p Amen -n 2 -q -v -t 1", BJ_BITJIT_EXE, lib);
    int rc = sh(cmd, out, sizeof out);
    if (rc == 1 && strstr(out, "refusing")) cr_skip_test("this host cannot run x86-64-v3 code");
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "ahead-of-time library") && strstr(out, "x86-64-v3"), "%s", out);
    cr_expect(strstr(out, "tuning database baked in: none"), "%s", out);
    cr_expect(!strstr(out, "kernels compiled") && !strstr(out, "loaded from cache"), "%s", out);
    /* with a database: its path is what the library reports */
    snprintf(db, sizeof db, "%s/edges-tune-%d.txt", BJ_TEST_TMP, (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' tune -m '%s' --mcpu x86-64-v3 --db '%s' --budget 1 -q -t 1 >/dev/null", BJ_BITJIT_EXE,
             MODEL, db);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o '%s' --mcpu x86-64-v3 --tune-db '%s'", exe, MODEL, lib, db);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p Amen -n 2 -q -v -t 1", BJ_BITJIT_EXE, lib);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "tuning database baked in: ") && strstr(out, db), "%s", out);
    unlink(lib);
    unlink(db);
}

/* Item 13: on a terminal 40 columns wide no progress line is wider than 39 (it would wrap and
 * every redraw would leave a line behind). Needs script(1) for a terminal. */
Test(cli_edges, progress_fits_a_narrow_terminal, .timeout = 300) {
    if (system("command -v script >/dev/null 2>&1") != 0) cr_skip_test("script(1) not installed");
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "script -qec \"stty cols 40 rows 20; '%s' perplexity -f '%s/models/kjv-bitnet-11m/heldout.txt' --chunks 3 "
             "--no-cache --cache-dir '%s/edges-cache'\" /dev/null",
             BJ_BITJIT_EXE, BJ_SOURCE_DIR, BJ_TEST_TMP);
    int st = 0;
    char *out = sh_stdout(cmd, &st);
    cr_assert(out);
    cr_expect_eq(st, 0, "%s", out);
    int bars = 0;
    /* each redraw is "\r\033[K" + the line, up to the next redraw or clear (the command's own
     * output after the last clear ends in a newline, which the terminal writes as "\r\n") */
    for (char *p = out; (p = strstr(p, "\r\033[K")); ) {
        p += 4;
        size_t n = strcspn(p, "\r\n");
        if (strncmp(p + n, "\r\033[K", 4) != 0) continue;
        if (n) bars++;
        cr_expect_leq(n, 39u, "a %zu-column progress line on a 40-column terminal: '%.*s'", n, (int)n, p);
    }
    cr_expect_gt(bars, 0, "no progress line drawn:\n%s", out);
    cr_expect(strstr(out, "perplexity: "), "%s", out);
    free(out);
    /* The bars count what takes the time: the packing of kjv's 42 matrices, by their packed
     * bytes, then its 4 matmul shapes' kernels (384x384, 128x384, 1024x384, 384x1024; the
     * first of each compiles its kernels), not its 42 matmuls. */
    snprintf(cmd, sizeof cmd, "script -qec \"stty cols 100 rows 20; '%s' run -p Amen -n 2 --temp 0 --no-cache\" /dev/null",
             BJ_BITJIT_EXE);
    out = sh_stdout(cmd, &st);
    cr_assert(out);
    cr_expect_eq(st, 0, "%s", out);
    cr_expect(strstr(out, "preparing kernels") && strstr(out, " 4/4 "), "%s", out);
    cr_expect(!strstr(out, "/42 "), "the bar counts matmuls:\n%s", out);
    char *pack = strstr(out, "packing weights"), *kern = strstr(out, "preparing kernels");
    cr_expect(pack && kern && pack < kern, "no packing bar before the kernels':\n%s", out);
    cr_expect(strstr(out, " 0.0/") && strstr(out, " MiB   0%") && strstr(out, " MiB 100%"), "%s", out);
    cr_expect(strstr(out, "42 of 42 matrices"), "%s", out);
    free(out);
}

/* Item 15: "1 window", "1 thread", not "1 windows", "1 threads". */
Test(cli_edges, singular_counts, .timeout = 120) {
    char out[16384], args[1024];
    snprintf(args, sizeof args, "perplexity -f '%s/models/kjv-bitnet-11m/heldout.txt' --chunks 1 -q -t 1 -v", BJ_SOURCE_DIR);
    cr_assert_eq(bj(args, out, sizeof out, true), 0, "%s", out);
    cr_expect(strstr(out, "(1 window of "), "%s", out);
    cr_expect(strstr(out, " 1 thread\n") || strstr(out, " 1 thread;"), "%s", out);
    cr_expect(!strstr(out, " 1 windows") && !strstr(out, " 1 threads"), "%s", out);
}

/* Item 15: the README's perplexity line gives the figure bitjit prints and the oracle's. */
Test(cli_edges, readme_perplexity_figures, .timeout = 300) {
    char out[4096], args[1024], line[1024] = "", figure[32] = "";
    snprintf(args, sizeof args, "perplexity -f '%s/models/kjv-bitnet-11m/heldout.txt' -q", BJ_SOURCE_DIR);
    cr_assert_eq(bj(args, out, sizeof out, false), 0, "%s", out);
    cr_assert_eq(sscanf(out, "perplexity: %31s", figure), 1, "%s", out);
    FILE *f = fopen(BJ_SOURCE_DIR "/README.md", "r");
    cr_assert(f);
    while (fgets(line, sizeof line, f) && !strstr(line, "bitjit perplexity -f models/kjv-bitnet-11m/heldout.txt")) {}
    fclose(f);
    FILE *j = fopen(BJ_SOURCE_DIR "/models/kjv-bitnet-11m/oracle-ppl.json", "r");
    cr_assert(j);
    char json[65536];
    size_t n = fread(json, 1, sizeof json - 1, j);
    json[n] = 0;
    fclose(j);
    const char *p = strstr(json, "\"ppl\"");
    cr_assert(p);
    double oracle = strtod(strchr(p, ':') + 1, NULL);
    char oracle_s[32];
    snprintf(oracle_s, sizeof oracle_s, "%.4f", oracle);
    cr_expect(strstr(line, figure), "README's perplexity line lacks bitjit's %s: %s", figure, line);
    cr_expect(strstr(line, oracle_s), "README's perplexity line lacks the oracle's %s: %s", oracle_s, line);
}

/* Item 16: a chat template whose markers the vocabulary has no tokens for is warned about. */
Test(cli_edges, chat_template_without_its_tokens_warns, .timeout = 120) {
    char out[16384], cmd[8192];
    snprintf(cmd, sizeof cmd, "printf 'hello\\n' | '%s' chat --chat-template chatml -n 2 --temp 0", BJ_BITJIT_EXE);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "warning: chat template chatml") && strstr(out, "<|im_start|>"), "%s", out);
    snprintf(cmd, sizeof cmd, "printf 'hello\\n' | '%s' chat --chat-template plain -n 2 --temp 0", BJ_BITJIT_EXE);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(!strstr(out, "warning"), "%s", out);
}
