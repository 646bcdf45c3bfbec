/* tests/unit/test_cg_cache.c -- the on-disk kernel cache through bj_cg_kernel_get: a cold run
 * compiles every kernel, a warm run with a fresh JIT compiles none, a corrupted or truncated
 * entry is detected, counted and rebuilt, an unwritable directory falls back to no cache with
 * a warning, and the kernels' results equal the C reference in every case. Each test uses
 * its own directory under BJ_TEST_TMP. */
#include "codegen/codegen.h"

#include <criterion/criterion.h>

#include "support/kernel_set.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void open_cache(bj_cg_cache *c, const kset *ks, const char *dir) {
    bj_error err = { 0 };
    cr_assert_eq(bj_cg_cache_open(c, dir, &ks->t, false, &err), BJ_OK, "%s", err.msg);
}

static void fresh_dir(char *buf, size_t cap, const char *name) {
    char cmd[600];
    snprintf(buf, cap, "%s/cg_cache_%s_%d", BJ_TEST_TMP, name, (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
    cr_assert_eq(system(cmd), 0);
}

Test(cg_cache, cold_then_warm) {
    kset ks;
    bj_cg_cache c;
    char dir[512];
    kset_init(&ks, 42);
    fresh_dir(dir, sizeof dir, "warm");
    open_cache(&c, &ks, dir);
    cr_assert(c.enabled, "cache off: %s", c.warn_msg);
    kset_run_all(&ks, &c);
    fprintf(stderr, "cold: %llu compiled (%.1f ms), %llu loaded\n", (unsigned long long)c.n_compiled, c.compile_ms,
            (unsigned long long)c.n_loaded);
    cr_expect_eq(c.n_compiled, KSET_N);
    cr_expect_eq(c.n_loaded, 0);
    open_cache(&c, &ks, dir);
    kset_run_all(&ks, &c);
    cr_expect_eq(c.n_compiled, 0, "warm run compiled %llu kernels", (unsigned long long)c.n_compiled);
    cr_expect_eq(c.n_loaded, KSET_N);
    cr_expect_eq(c.warn, 0, "%s", c.warn_msg);
    kset_free(&ks);
}

Test(cg_cache, same_jit_twice_compiles_once) {
    kset ks;
    bj_cg_cache c;
    bj_error err = { 0 };
    bj_cg_jit *j;
    bj_cg_matmul_fn a, b;
    kset_init(&ks, 42);
    cr_assert_eq(bj_cg_cache_open(&c, NULL, &ks.t, true, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_jit_create(&j, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_kernel_get(&c, j, &ks.t, &ks.d[0], NULL, &a, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_kernel_get(&c, j, &ks.t, &ks.d[0], NULL, &b, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq((void *)a, (void *)b);
    cr_expect_eq(c.n_compiled, 1);
    bj_cg_jit_free(j);
    kset_free(&ks);
}

static void damage(const char *path, bool truncate_it) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "missing cache entry %s", path);
    if (truncate_it) {
        cr_assert_eq(truncate(path, st.st_size / 2), 0);
        return;
    }
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    fseek(f, st.st_size - 7, SEEK_SET); /* inside the object */
    int ch = fgetc(f);
    fseek(f, st.st_size - 7, SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
}

Test(cg_cache, corrupt_entries_are_rebuilt) {
    kset ks;
    bj_cg_cache c;
    bj_error err = { 0 };
    char dir[512], p0[4400], p1[4400];
    kset_init(&ks, 42);
    fresh_dir(dir, sizeof dir, "corrupt");
    open_cache(&c, &ks, dir);
    kset_run_all(&ks, &c);
    cr_assert_eq(bj_cg_cache_path(&c, &ks.d[0], p0, sizeof p0, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_cache_path(&c, &ks.d[1], p1, sizeof p1, &err), BJ_OK, "%s", err.msg);
    damage(p0, false);
    damage(p1, true);
    open_cache(&c, &ks, dir);
    kset_run_all(&ks, &c);
    fprintf(stderr, "after damage: %llu corrupt, %llu compiled, %llu loaded; warning: %s\n",
            (unsigned long long)c.n_corrupt, (unsigned long long)c.n_compiled, (unsigned long long)c.n_loaded,
            c.warn_msg);
    cr_expect_eq(c.n_corrupt, 2);
    cr_expect_eq(c.n_compiled, 2);
    cr_expect_eq(c.n_loaded, 1);
    cr_expect(c.warn & BJ_CG_CACHE_W_CORRUPT);
    cr_expect(strstr(c.warn_msg, "corrupt") != NULL, "%s", c.warn_msg);
    open_cache(&c, &ks, dir); /* rebuilt entries are whole again */
    kset_run_all(&ks, &c);
    cr_expect_eq(c.n_loaded, KSET_N);
    cr_expect_eq(c.n_corrupt, 0);
    kset_free(&ks);
}

Test(cg_cache, foreign_entry_is_not_trusted) {
    /* An entry renamed to another kernel's file name: the key in its header disagrees. */
    kset ks;
    bj_cg_cache c;
    bj_error err = { 0 };
    char dir[512], p0[4400], p1[4400];
    kset_init(&ks, 42);
    fresh_dir(dir, sizeof dir, "foreign");
    open_cache(&c, &ks, dir);
    kset_run_all(&ks, &c);
    cr_assert_eq(bj_cg_cache_path(&c, &ks.d[0], p0, sizeof p0, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_cache_path(&c, &ks.d[1], p1, sizeof p1, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(rename(p0, p1), 0);
    open_cache(&c, &ks, dir);
    kset_run_all(&ks, &c);
    cr_expect_eq(c.n_corrupt, 1);
    cr_expect_eq(c.n_compiled, 2); /* d[0] missing, d[1] foreign */
    kset_free(&ks);
}

Test(cg_cache, unwritable_dir_falls_back) {
    /* A path below a regular file can be neither made nor written, even by root. */
    kset ks;
    bj_cg_cache c;
    char file[512], dir[600];
    kset_init(&ks, 42);
    fresh_dir(file, sizeof file, "file");
    FILE *f = fopen(file, "w");
    cr_assert(f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/sub", file);
    open_cache(&c, &ks, dir);
    cr_expect(!c.enabled);
    cr_expect(c.warn & BJ_CG_CACHE_W_UNWRITABLE);
    fprintf(stderr, "warning given: %s\n", c.warn_msg);
    kset_run_all(&ks, &c);
    cr_expect_eq(c.n_compiled, KSET_N);
    kset_run_all(&ks, &c); /* nothing was stored */
    cr_expect_eq(c.n_compiled, 2 * KSET_N);
    cr_expect_eq(c.n_loaded, 0);
    kset_free(&ks);
}

Test(cg_cache, disabled_cache_compiles) {
    kset ks;
    bj_cg_cache c;
    bj_error err = { 0 };
    kset_init(&ks, 42);
    cr_assert_eq(bj_cg_cache_open(&c, NULL, &ks.t, true, &err), BJ_OK, "%s", err.msg);
    cr_expect(!c.enabled);
    cr_expect_eq(c.warn, 0);
    kset_run_all(&ks, &c);
    cr_expect_eq(c.n_compiled, KSET_N);
    kset_free(&ks);
}

Test(cg_cache, default_dir_follows_xdg) {
    kset ks;
    bj_cg_cache c;
    bj_error err = { 0 };
    char dir[512], want[600];
    kset_init(&ks, 42);
    fresh_dir(dir, sizeof dir, "xdg");
    setenv("XDG_CACHE_HOME", dir, 1);
    cr_assert_eq(bj_cg_cache_open(&c, NULL, &ks.t, false, &err), BJ_OK, "%s", err.msg);
    snprintf(want, sizeof want, "%s/bitjit", dir);
    cr_expect_str_eq(c.dir, want);
    cr_expect(c.enabled, "%s", c.warn_msg);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", dir, 1);
    cr_assert_eq(bj_cg_cache_open(&c, NULL, &ks.t, false, &err), BJ_OK, "%s", err.msg);
    snprintf(want, sizeof want, "%s/.cache/bitjit", dir);
    cr_expect_str_eq(c.dir, want);
    kset_free(&ks);
}

Test(cg_cache, other_target_gets_other_keys) {
    kset ks;
    bj_cg_cache c, c2;
    bj_error err = { 0 };
    bj_cg_target t2;
    char dir[512], p[4400], p2[4400];
    kset_init(&ks, 42);
    fresh_dir(dir, sizeof dir, "target");
    open_cache(&c, &ks, dir);
    cr_assert_eq(bj_cg_target_detect(&t2, "x86-64", NULL, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_cache_open(&c2, dir, &t2, false, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_cache_path(&c, &ks.d[0], p, sizeof p, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_cg_cache_path(&c2, &ks.d[0], p2, sizeof p2, &err), BJ_OK, "%s", err.msg);
    cr_expect_str_neq(p, p2);
    /* A cache opened for one target refuses kernels for another. */
    bj_cg_jit *j;
    bj_cg_matmul_fn fn;
    cr_assert_eq(bj_cg_jit_create(&j, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(bj_cg_kernel_get(&c2, j, &ks.t, &ks.d[0], NULL, &fn, &err), BJ_E_INVALID);
    bj_cg_jit_free(j);
    kset_free(&ks);
}
