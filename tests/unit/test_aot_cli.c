/* tests/unit/test_aot_cli.c -- `bitjitc` as a user runs it: libraries that `bitjit run -m`
 * runs to the oracle's greedy ids (packed and master), every --emit form checked by the tool
 * that consumes it (cc -c, llvm-as, cc -shared + run), the refusal of a library built for
 * features this host lacks (a clean error naming them, never SIGILL), cross-compiles for
 * named CPUs, and the driver's errors: usage, bad paths, no partial output. */
#include "support/oracle.h"

#include "codegen/codegen.h"
#include "ir/ir.h"

#include <criterion/criterion.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/shell.h"

#define MODEL_DIR BJ_SOURCE_DIR "/models/kjv-bitnet-11m"

/* bitjitc ARGS; returns the exit code. */
static int bitjitc(const char *args, char *out, size_t cap) {
    char exe[4096], cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s", tool("bitjitc", exe, sizeof exe), args);
    return sh(cmd, out, cap);
}

/* bitjit run -m LIB on oracle prompt i, greedy, n ids; stdout only. */
static int run_ids(const char *lib, int i, int n, char *out, size_t cap) {
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    const char *prompt = json_string_value(json_object_get(json_array_get(json_object_get(o, "prompts"), (size_t)i), "prompt"));
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p '%s' -n %d --temp 0 --ids -t 2 2>/dev/null", BJ_BITJIT_EXE, lib, prompt, n);
    json_decref(o);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t len = fread(out, 1, cap - 1, p);
    out[len] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The first n oracle ids of prompt i under key, as "a b c\n". */
static void want_ids(const char *key, int i, int n, char *buf, size_t cap) {
    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    size_t cnt, off = 0;
    int32_t *ids = bj_test_ids(json_object_get(json_array_get(json_object_get(o, "prompts"), (size_t)i), key), &cnt);
    for (size_t k = 0; k < cnt && (int)k < n; k++) off += (size_t)snprintf(buf + off, cap - off, "%s%d", k ? " " : "", ids[k]);
    snprintf(buf + off, cap - off, "\n");
    free(ids);
    json_decref(o);
}

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/aot-cli-%d-%s", BJ_TEST_TMP, (int)getpid(), name);
}

static void expect_oracle(const char *lib, const char *key, int prompt, int n) {
    char out[8192], want[4096];
    want_ids(key, prompt, n, want, sizeof want);
    cr_assert_eq(run_ids(lib, prompt, n, out, sizeof out), 0, "bitjit run -m %s failed", lib);
    cr_expect_str_eq(out, want, "%s, prompt %d", lib, prompt);
}

Test(aot_cli, so_matches_oracle_packed_and_master, .timeout = 300) {
    const char *models[] = { "packed", "master" }, *keys[] = { "packed_greedy_ids", "master_greedy_ids" };
    for (int m = 0; m < 2; m++) {
        char lib[4096], args[8192], out[16384];
        tmp_path(lib, sizeof lib, models[m]);
        strcat(lib, ".so");
        snprintf(args, sizeof args, "'%s/%s' -o '%s'", MODEL_DIR, models[m], lib);
        cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
        expect_oracle(lib, keys[m], 2, 48);
        expect_oracle(lib, keys[m], BJ_ORACLE_PLAIN_PROMPT, 48);
        unlink(lib);
    }
}

/* Without the pass pipeline (--passes= runs none): the imported graph, same ids. */
Test(aot_cli, so_without_passes_matches_oracle, .timeout = 120) {
    char lib[4096], args[8192], out[16384];
    tmp_path(lib, sizeof lib, "nopasses.so");
    snprintf(args, sizeof args, "'%s/packed' --passes= -o '%s'", MODEL_DIR, lib);
    cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
    expect_oracle(lib, "packed_greedy_ids", 1, 48);
    unlink(lib);
}

static bool have_tool(const char *name) {
    char cmd[256], out[256];
    snprintf(cmd, sizeof cmd, "command -v %s", name);
    return sh(cmd, out, sizeof out) == 0;
}

Test(aot_cli, emit_forms_are_valid, .timeout = 300) {
    char base[4096], args[16384], out[16384], cmd[16384];
    tmp_path(base, sizeof base, "emit");
    /* ir: text IR that the IR parser reads back */
    snprintf(args, sizeof args, "'%s/packed' --emit=ir -o '%s.bjir'", MODEL_DIR, base);
    cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s.bjir", base);
    char *text;
    size_t len;
    bj_error err = { 0 };
    cr_assert_eq(bj_read_file(cmd, &text, &len, &err), BJ_OK);
    bj_graph g;
    cr_expect_eq(bj_ir_parse(&g, text, len, &err), BJ_OK, "%s", err.msg);
    cr_expect(strstr(text, "= output "));
    bj_graph_free(&g);
    free(text);
    /* asm: assembles with cc -c and defines the kernels */
    snprintf(args, sizeof args, "'%s/packed' --emit=asm -o '%s.s'", MODEL_DIR, base);
    cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "cc -c '%s.s' -o '%s-asm.o' && nm '%s-asm.o' | grep -c ' T bjk_'", base, base, base);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "asm does not assemble: %s", out);
    cr_expect_geq(atoi(out), 1, "no kernels in the assembly");
    /* llvm: one module that llvm-as accepts (when the tool is installed) */
    snprintf(args, sizeof args, "'%s/packed' --emit=llvm -o '%s.ll'", MODEL_DIR, base);
    cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s '%s.ll' -o /dev/null", have_tool("llvm-as-19") ? "llvm-as-19" : "llvm-as", base);
    if (have_tool("llvm-as-19") || have_tool("llvm-as")) cr_expect_eq(sh(cmd, out, sizeof out), 0, "llvm-as: %s", out);
    /* obj: links into a shared library that runs */
    snprintf(args, sizeof args, "'%s/packed' --emit=obj -o '%s.o'", MODEL_DIR, base);
    cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "cc -shared '%s.o' -o '%s-obj.so'", base, base);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "obj does not link: %s", out);
    snprintf(cmd, sizeof cmd, "%s-obj.so", base);
    expect_oracle(cmd, "packed_greedy_ids", 2, 16);
    const char *ext[] = { ".bjir", ".s", "-asm.o", ".ll", ".o", "-obj.so" };
    for (size_t i = 0; i < BJ_COUNTOF(ext); i++) {
        snprintf(cmd, sizeof cmd, "%s%s", base, ext[i]);
        unlink(cmd);
    }
}

/* Text forms go to stdout without -o; --emit=so needs -o. */
Test(aot_cli, emit_text_to_stdout) {
    char args[8192], out[1 << 16];
    snprintf(args, sizeof args, "'%s/packed' --emit=ir --passes=", MODEL_DIR);
    cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
    cr_expect(!strncmp(out, "graph @", 7), "%.200s", out);
    snprintf(args, sizeof args, "'%s/packed'", MODEL_DIR);
    cr_expect_eq(bitjitc(args, out, sizeof out), 2);
    cr_expect(strstr(out, "-o OUT is required"), "%s", out);
}

static bool host_has(uint32_t flag) {
    bj_cg_target t;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, NULL, NULL, &err), BJ_OK);
    return (t.flags & flag) != 0;
}

/* Built for features this host lacks: refused with their names, exit 1, no signal. */
static void expect_refusal(const char *mattr, const char *const *names, int n_names) {
    char lib[4096], args[8192], out[16384], cmd[8192];
    tmp_path(lib, sizeof lib, "refuse.so");
    snprintf(args, sizeof args, "'%s/packed' --mattr=%s -o '%s'", MODEL_DIR, mattr, lib);
    cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -n 4 --temp 0 --ids", BJ_BITJIT_EXE, lib);
    int rc = sh(cmd, out, sizeof out);
    cr_expect_eq(rc, 1, "exit %d (a signal is 128+): %s", rc, out);
    cr_expect(strstr(out, "refusing to run") && strstr(out, "lacks"), "the loader must refuse: %s", out);
    for (int i = 0; i < n_names; i++) cr_expect(strstr(out, names[i]), "message does not name %s: %s", names[i], out);
    unlink(lib);
}

Test(aot_cli, refuses_missing_features, .timeout = 120) {
    /* +evex512: LLVM 19 needs it with +avx512f on a host without AVX-512 (codegen aborts
     * without it; reported), so the library really uses 512-bit code. */
    static const char *const avx512[] = { "avx512f", "avx512bw" };
    if (!host_has(BJ_CG_F_AVX512F)) expect_refusal("+avx512f,+avx512bw,+evex512", avx512, 2);
    static const char *const amx[] = { "amx-int8" };
    bj_cg_target t;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&t, NULL, NULL, &err), BJ_OK);
    if (!strstr(t.features, "+amx-int8")) expect_refusal("+amx-int8", amx, 1);
}

Test(aot_cli, cross_compiles_named_cpus, .timeout = 300) {
    const char *cpus[] = { "znver5", "sapphirerapids", "x86-64-v3" };
    bj_cg_target host;
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_target_detect(&host, NULL, NULL, &err), BJ_OK);
    for (int i = 0; i < 3; i++) {
        char lib[4096], args[8192], out[16384], cmd[8192];
        tmp_path(lib, sizeof lib, cpus[i]);
        strcat(lib, ".so");
        snprintf(args, sizeof args, "'%s/packed' --mcpu %s -o '%s' -v", MODEL_DIR, cpus[i], lib);
        cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s: %s", cpus[i], out);
        /* Named CPUs get the kernels of their features (codegen/cg_cpus.def); the host's own name
         * gets the host's features (a Zen 5 for znver5, Sapphire Rapids for sapphirerapids), which
         * this host may lack some of (AMX not granted by the kernel, a VM hiding AVX-512). */
        bj_cg_target t;
        cr_assert_eq(bj_cg_target_detect(&t, cpus[i], NULL, &err), BJ_OK, "%s", err.msg);
        if (!t.is_host) {
            const char *path = i < 2 ? "/avx512vnni" : "/avx2";
            cr_expect(strstr(out, path), "%s: kernels are not %s: %s", cpus[i], path, out);
            /* Sapphire Rapids has AMX-INT8: its prefill kernels are dot2 on tiles; Zen 5 has none. */
            cr_expect((strstr(out, "dot2/amx") != NULL) == (i == 1), "%s: AMX prefill kernels wrong: %s", cpus[i], out);
        }
        snprintf(cmd, sizeof cmd, "nm -D '%s' | grep -c ' T bjk_'", lib);
        cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s: no kernels exported", cpus[i]);
        /* Runs here exactly when this host has every feature bitjit used for it (a Sapphire Rapids
         * has all of Zen 5's, an Ice Lake lacks AVX-VNNI); the library is checked the same way. */
        bool runnable = t.is_host || (t.flags & host.flags) == t.flags;
        if (runnable) {
            expect_oracle(lib, "packed_greedy_ids", BJ_ORACLE_PLAIN_PROMPT, 16);
        } else {
            snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -n 4 --temp 0 --ids", BJ_BITJIT_EXE, lib);
            int rc = sh(cmd, out, sizeof out);
            cr_expect_eq(rc, 1, "%s: exit %d: %s", cpus[i], rc, out);
            cr_expect(strstr(out, "refusing to run"), "%s: %s", cpus[i], out);
        }
        unlink(lib);
    }
}

Test(aot_cli, help_and_usage_errors) {
    char out[16384], args[8192];
    cr_assert_eq(bitjitc("--help", out, sizeof out), 0);
    const char *opts[] = { "--emit", "--mcpu", "--mattr", "--passes", "--disable-passes", "--print-after-all",
                           "--print-after", "--print-before", "--verify-each", "--time-passes", "convert", "synth", "-o" };
    for (size_t i = 0; i < BJ_COUNTOF(opts); i++) cr_expect(strstr(out, opts[i]), "help lacks %s", opts[i]);
    cr_expect_eq(bitjitc("", out, sizeof out), 2);
    snprintf(args, sizeof args, "'%s/packed' --emit=exe -o x", MODEL_DIR);
    cr_expect_eq(bitjitc(args, out, sizeof out), 2);
    cr_expect(strstr(out, "unknown --emit 'exe'"), "%s", out);
    cr_expect_eq(bitjitc("--frobnicate m -o x", out, sizeof out), 2);
    cr_expect(strstr(out, "--frobnicate"), "%s", out);
    cr_expect_eq(bitjitc("/no/such/model -o /tmp/x.so", out, sizeof out), 1);
    cr_expect(strstr(out, "/no/such/model"), "%s", out);
    snprintf(args, sizeof args, "'%s/packed' --passes=no-such-pass -o x.so", MODEL_DIR);
    cr_expect_eq(bitjitc(args, out, sizeof out), 1);
    cr_expect(strstr(out, "no-such-pass"), "%s", out);
}

/* A failing link leaves the previous output untouched and no temporary files behind. */
Test(aot_cli, no_partial_output, .timeout = 120) {
    char dir[4096], lib[4200], args[8192], out[16384], exe[4096], cmd[16384];
    tmp_path(dir, sizeof dir, "partial");
    mkdir(dir, 0755);
    snprintf(lib, sizeof lib, "%s/model.so", dir);
    FILE *f = fopen(lib, "w");
    cr_assert(f);
    fputs("old", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "BITJIT_CC=false '%s' '%s/packed' --passes= -o '%s'", tool("bitjitc", exe, sizeof exe),
             MODEL_DIR, lib);
    cr_expect_eq(sh(cmd, out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "false"), "the error should name the failing driver: %s", out);
    char *text;
    size_t len;
    bj_error err = { 0 };
    cr_assert_eq(bj_read_file(lib, &text, &len, &err), BJ_OK);
    cr_expect_str_eq(text, "old");
    free(text);
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    sh(cmd, out, sizeof out);
    cr_expect_str_eq(out, "model.so\n", "leftovers: %s", out);
    snprintf(args, sizeof args, "'%s/packed' -o '%s/no/such/dir/x.so'", MODEL_DIR, dir);
    cr_expect_eq(bitjitc(args, out, sizeof out), 1);
    cr_expect(strstr(out, "no/such/dir"), "%s", out);
    unlink(lib);
    rmdir(dir);
}

/* An ELF file that is not a bitjitc library is refused cleanly. */
/* A library's kernels were chosen for its CPU and tuning database when it was built: flags that
 * would choose them again are refused with exit 2, not ignored. */
Test(aot_cli, library_refuses_cpu_and_tuning_flags, .timeout = 120) {
    char lib[4096], args[8192], out[16384], cmd[12288];
    tmp_path(lib, sizeof lib, "flags.so");
    snprintf(args, sizeof args, "'%s/packed' -o '%s'", MODEL_DIR, lib);
    cr_assert_eq(bitjitc(args, out, sizeof out), 0, "%s", out);
    const char *flags[][2] = { { "--mcpu x86-64", "--mcpu" }, { "--mattr +avx2", "--mattr" }, { "--tune-db /tmp/x.db", "--tune-db" } };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        snprintf(cmd, sizeof cmd, "'%s' run -m '%s' %s -n 2 --ids", BJ_BITJIT_EXE, lib, flags[i][0]);
        cr_expect_eq(sh(cmd, out, sizeof out), 2, "%s: %s", flags[i][0], out);
        cr_expect(strstr(out, flags[i][1]) && strstr(out, "bitjitc library"), "%s: %s", flags[i][0], out);
    }
    unlink(lib);
}

Test(aot_cli, rejects_foreign_library) {
    char out[16384], cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' run -m /bin/true -n 2 --ids", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "/bin/true"), "%s", out);
}
