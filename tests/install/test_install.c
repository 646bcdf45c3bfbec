/* tests/install/test_install.c -- `cmake --install` into a temporary prefix under the build tree,
 * then, from the installed tree only: the installed bitjit runs with its default model (the copy
 * installed in PREFIX/share/bitjit), and examples/generate.c is built as an outside program four
 * ways -- find_package(bitjit) with bitjit::bitjit and bitjit::bitjit_static (a tiny CMake project,
 * tests/install/consumer/), and a plain cc with `pkg-config bitjit` and `pkg-config bitjit-static`
 * -- and each build generates the oracle's greedy continuation from the installed model. */
#include "support/oracle.h"

#include "runtime/bitjit.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "support/shell.h"

/* A sanitizer build's libraries need the sanitizer runtime in the program too (BJ_SAN_FLAGS). */
#define SAN_FLAGS BJ_SAN_FLAGS

static char dir[4096], prefix[4200], out[65536];

static void run_ok(const char *what, const char *cmd) {
    int rc = sh(cmd, out, sizeof out);
    cr_assert_eq(rc, 0, "%s failed (%d):\n%s\n%s", what, rc, cmd, out);
}

static void expect_file(const char *rel) {
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", prefix, rel);
    cr_expect_eq(access(p, R_OK), 0, "not installed: %s", rel);
}

/* The example's output for the installed model: as in test_api.c (example_program_runs). */
static void expect_example(const char *exe, const char *prompt, const char *want_ids, const char *text,
                           bool static_link) {
    char cmd[16384];
    size_t plen = strlen(prompt);
    snprintf(cmd, sizeof cmd, "cd / && '%s' '%s/share/bitjit/models/kjv-bitnet-11m/packed' '%s' 32", exe, prefix,
             prompt);
    run_ok(exe, cmd);
    cr_expect(strstr(out, want_ids), "%s:\n%s\nwant: %s", exe, out, want_ids);
    cr_expect(!strncmp(out, prompt, plen), "%s: %s", exe, out);
    cr_expect(!strncmp(out + plen, text, 40), "%s: %s", exe, out);
    snprintf(cmd, sizeof cmd, "readelf -d '%s' | grep NEEDED", exe);
    run_ok("readelf", cmd);
    if (static_link) cr_expect(!strstr(out, "libbitjit"), "%s is linked statically, yet needs:\n%s", exe, out);
    else cr_expect(strstr(out, "[libbitjit.so.0]"), "%s should need libbitjit.so.0 (the SONAME):\n%s", exe, out);
}

/* What a distribution packager expects of a shared library: the file libbitjit.so.MAJOR.MINOR.PATCH
 * (bitjit.h's version), the runtime link libbitjit.so.0 (its SONAME) and the development link
 * libbitjit.so, each a symlink to the next; exported symbols versioned BITJIT_0, nothing else global. */
static void expect_sonames(void) {
    char p[8192], target[4096], real[256], cmd[16384];
    snprintf(real, sizeof real, "libbitjit.so.%d.%d.%d", BITJIT_VERSION_MAJOR, BITJIT_VERSION_MINOR,
             BITJIT_VERSION_PATCH);
    const char *links[][2] = { { "libbitjit.so", "libbitjit.so.0" }, { "libbitjit.so.0", real } };
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/" BJ_LIBDIR "/%s", prefix, links[i][0]);
        ssize_t n = readlink(p, target, sizeof target - 1);
        cr_expect_gt(n, 0, "%s is not a symlink", links[i][0]);
        target[n > 0 ? n : 0] = 0;
        cr_expect_str_eq(target, links[i][1], "%s -> %s", links[i][0], target);
    }
    snprintf(cmd, sizeof cmd, "test -f '%s/" BJ_LIBDIR "/%s' && ! test -L '%s/" BJ_LIBDIR "/%s'", prefix, real, prefix,
             real);
    run_ok("the versioned library file", cmd);
    snprintf(cmd, sizeof cmd, "readelf -d '%s/" BJ_LIBDIR "/%s' | grep SONAME", prefix, real);
    run_ok("readelf SONAME", cmd);
    cr_expect(strstr(out, "[libbitjit.so.0]"), "SONAME: %s", out);
    /* defined dynamic symbols: bitjit_* at BITJIT_0 only */
    snprintf(cmd, sizeof cmd, "objdump -T '%s/" BJ_LIBDIR "/%s' | grep -v '\\*UND\\*' | grep -E ' (g|w) '", prefix,
             real);
    run_ok("objdump -T", cmd);
    cr_expect(strstr(out, "BITJIT_0") && strstr(out, "bitjit_load"), "%s", out);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (strstr(line, "*ABS*")) continue; /* the version node's own symbol */
        if (strstr(line, " BITJIT_0 ")) {
            cr_expect(strstr(line, " bitjit_"), "exported: %s", line);
        } else {
            cr_expect(strstr(line, "BITJIT_0"), "a global symbol without version BITJIT_0: %s", line);
        }
    }
}

/* bitjit-static.pc links LLVM as llvm-config says (-L its directory, -lLLVM-MAJOR), not through the
 * path of one machine's libLLVM.so.1. */
static void expect_pc_llvm(void) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "PKG_CONFIG_PATH='%s/" BJ_LIBDIR "/pkgconfig' pkg-config --libs bitjit-static", prefix);
    run_ok("pkg-config --libs bitjit-static", cmd);
    cr_expect(!strstr(out, "libLLVM.so"), "a libLLVM path in bitjit-static.pc: %s", out);
#if !BJ_LLVM_STATIC
    cr_expect(strstr(out, "-lLLVM-" BJ_LLVM_MAJOR), "no -lLLVM-" BJ_LLVM_MAJOR ": %s", out);
#endif
}

/* README: a program linked without an rpath finds libbitjit.so.0 in a non-system prefix through
 * LD_LIBRARY_PATH. */
static void expect_ld_library_path(const char *prompt, const char *want_ids) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "export PKG_CONFIG_PATH='%s/" BJ_LIBDIR "/pkgconfig' && cd '%s' &&"
             " '%s' %s '%s/examples/generate.c' $(pkg-config --cflags --libs bitjit) -o pc_norpath",
             prefix, dir, BJ_C_COMPILER, SAN_FLAGS, BJ_SOURCE_DIR);
    run_ok("pkg-config build without rpath", cmd);
    snprintf(cmd, sizeof cmd, "cd / && LD_LIBRARY_PATH='%s/" BJ_LIBDIR "' ldd '%s/pc_norpath' | grep libbitjit", prefix,
             dir);
    run_ok("ldd", cmd);
    cr_expect(strstr(out, prefix), "libbitjit.so.0 not found in the prefix: %s", out);
    snprintf(cmd, sizeof cmd,
             "cd / && LD_LIBRARY_PATH='%s/" BJ_LIBDIR "' '%s/pc_norpath' '%s/share/bitjit/models/kjv-bitnet-11m/packed'"
             " '%s' 32", prefix, dir, prefix, prompt);
    run_ok("pc_norpath with LD_LIBRARY_PATH", cmd);
    cr_expect(strstr(out, want_ids), "%s\nwant: %s", out, want_ids);
}

Test(install, prefix_find_package_and_pkg_config, .timeout = 300) {
    char cmd[16384];
    (void)tool;
    snprintf(dir, sizeof dir, "%s/install-%d", BJ_TEST_TMP, (int)getpid());
    snprintf(prefix, sizeof prefix, "%s/prefix", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && '%s' --install '%s' --prefix '%s' > '%s.log'", dir, BJ_CMAKE_COMMAND,
             BJ_BUILD_DIR, prefix, dir);
    run_ok("cmake --install", cmd);
    const char *files[] = {
        "bin/bitjit", "bin/bitjitc", BJ_LIBDIR "/libbitjit.so", BJ_LIBDIR "/libbitjit.so.0", BJ_LIBDIR "/libbitjit.a",
        "include/bitjit.h",
        BJ_LIBDIR "/cmake/bitjit/bitjitConfig.cmake", BJ_LIBDIR "/cmake/bitjit/bitjitConfigVersion.cmake",
        BJ_LIBDIR "/cmake/bitjit/bitjitTargets.cmake", BJ_LIBDIR "/pkgconfig/bitjit.pc",
        BJ_LIBDIR "/pkgconfig/bitjit-static.pc", "share/bitjit/models/kjv-bitnet-11m/packed/config.json",
        "share/bitjit/models/kjv-bitnet-11m/packed/tokenizer.json",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) expect_file(files[i]);
    expect_sonames();
    expect_pc_llvm();

    json_t *o = bj_test_load_json("models/kjv-bitnet-11m/oracle.json");
    json_t *p0 = json_array_get(json_object_get(o, "prompts"), BJ_ORACLE_PLAIN_PROMPT);
    const char *prompt = json_string_value(json_object_get(p0, "prompt"));
    size_t n;
    int32_t *ids = bj_test_ids(json_object_get(p0, "packed_greedy_ids"), &n);
    cr_assert_geq(n, 32);
    char want[4096], want8[1024];
    size_t off = (size_t)snprintf(want, sizeof want, "ids:"), off8 = 0;
    for (size_t i = 0; i < 32; i++) off += (size_t)snprintf(want + off, sizeof want - off, " %d", ids[i]);
    for (size_t i = 0; i < 8; i++)
        off8 += (size_t)snprintf(want8 + off8, sizeof want8 - off8, "%s%d", i ? " " : "", ids[i]);
    const char *text = json_string_value(json_object_get(p0, "packed_greedy_text"));

    /* The installed driver: its default model is the installed copy, wherever it is run from. */
    snprintf(cmd, sizeof cmd,
             "cd / && env -u BITJIT_MODEL '%s/bin/bitjit' run -p '%s' -n 8 --temp 0 --ids -v", prefix, prompt);
    run_ok("installed bitjit run", cmd);
    cr_expect(strstr(out, want8), "%s\nwant: %s", out, want8);
    char shared_model[8192];
    snprintf(shared_model, sizeof shared_model, "%s/bin/../share/bitjit/models/kjv-bitnet-11m/packed", prefix);
    cr_expect(strstr(out, shared_model), "the default model is not the installed one:\n%s", out);
    snprintf(cmd, sizeof cmd, "'%s/bin/bitjitc' --help", prefix);
    run_ok("installed bitjitc --help", cmd);

    /* find_package(bitjit): bitjit::bitjit and bitjit::bitjit_static. */
    snprintf(cmd, sizeof cmd,
             "'%s' -S '%s/tests/install/consumer' -B '%s/consumer' -DCMAKE_PREFIX_PATH='%s'"
             " -DBJ_EXAMPLE='%s/examples/generate.c'"
             " -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER='%s' -DCMAKE_C_FLAGS='%s' -DCMAKE_EXE_LINKER_FLAGS='%s'"
             " && '%s' --build '%s/consumer' -j2",
             BJ_CMAKE_COMMAND, BJ_SOURCE_DIR, dir, prefix, BJ_SOURCE_DIR, BJ_C_COMPILER, SAN_FLAGS, SAN_FLAGS,
             BJ_CMAKE_COMMAND, dir);
    run_ok("find_package consumer", cmd);

    /* pkg-config + cc. */
    snprintf(cmd, sizeof cmd,
             "export PKG_CONFIG_PATH='%s/" BJ_LIBDIR "/pkgconfig' && cd '%s' &&"
             " '%s' %s '%s/examples/generate.c' $(pkg-config --cflags --libs bitjit) -Wl,-rpath,'%s/" BJ_LIBDIR "'"
             " -o pc_shared &&"
             " '%s' %s '%s/examples/generate.c' $(pkg-config --cflags --libs bitjit-static) -o pc_static",
             prefix, dir, BJ_C_COMPILER, SAN_FLAGS, BJ_SOURCE_DIR, prefix, BJ_C_COMPILER, SAN_FLAGS, BJ_SOURCE_DIR);
    run_ok("pkg-config builds", cmd);

    const struct { const char *exe; bool st; } exes[] = {
        { "consumer/gen_shared", false }, { "consumer/gen_static", true },
        { "pc_shared", false },           { "pc_static", true },
    };
    for (size_t i = 0; i < sizeof exes / sizeof *exes; i++) {
        char exe[8192];
        snprintf(exe, sizeof exe, "%s/%s", dir, exes[i].exe);
        expect_example(exe, prompt, want, text, exes[i].st);
    }
    expect_ld_library_path(prompt, want);
    free(ids);
    json_decref(o);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s.log'", dir, dir);
    sh(cmd, out, sizeof out);
}
