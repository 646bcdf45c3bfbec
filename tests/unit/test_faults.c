/* tests/unit/test_faults.c -- faults that must lose nothing (docs/robustness.md, "Faults"):
 *  - a process killed while writing a kernel cache entry (SIGXFSZ at a chosen byte of the
 *    write, and SIGKILL of `bitjit run` at several moments) leaves no entry a later run trusts:
 *    the later run finds no corrupt entry, recompiles what is missing and computes the same;
 *  - `bitjitc` killed mid-way (SIGXFSZ while writing, SIGKILL at several moments) leaves no
 *    half-written library at the target path: it is absent, the previous file unchanged, or a
 *    complete library that runs; SIGTERM/SIGINT or a file-size limit also leave none of its
 *    temporary files;
 *  - running out of address space (ulimit -v at every MiB below what a run needs) gives an
 *    error message and exit 1, never a signal;
 *  - a long generation reaching the context limit stops, and memory does not grow beyond the
 *    KV cache (maximum RSS of -n 2000 against -n 1).
 * Kills use fork + setrlimit/kill on the project's own binaries or library calls. */
#include "codegen/codegen.h"
#include "frontends/model_config.h"

#include <criterion/criterion.h>

#include "support/kernel_set.h"
#include "support/shell.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PACKED BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BJ_UNDER_SANITIZER 1 /* address-space limits and RSS numbers mean nothing under ASan/TSan */
#else
#define BJ_UNDER_SANITIZER 0
#endif

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void fresh_dir(char *buf, size_t cap, const char *name) {
    char cmd[4400];
    snprintf(buf, cap, "%s/faults-%s-%d", BJ_TEST_TMP, name, (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", buf, buf);
    cr_assert_eq(system(cmd), 0);
}

/* Files in dir whose name ends with suffix (or starts with prefix when suffix is NULL). */
static int count_files(const char *dir, const char *prefix, const char *suffix) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (suffix) n += l >= strlen(suffix) && !strcmp(de->d_name + l - strlen(suffix), suffix);
        else n += !strncmp(de->d_name, prefix, strlen(prefix));
    }
    if (d) closedir(d);
    return n;
}

static void sleep_ms(int ms) { nanosleep(&(struct timespec){ ms / 1000, (long)(ms % 1000) * 1000000L }, NULL); }

/* fork + exec of argv in its own process group, stdout/stderr to /dev/null (or to out_path),
 * optional RLIMIT_FSIZE; returns the pid. */
static pid_t spawn(char *const argv[], long long fsize_limit, const char *out_path) {
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        if (fsize_limit >= 0) {
            struct rlimit r = { (rlim_t)fsize_limit, (rlim_t)fsize_limit };
            setrlimit(RLIMIT_FSIZE, &r);
            signal(SIGXFSZ, SIG_DFL);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

static int wait_status(pid_t pid) {
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return st;
}

/* ---- kernel cache: killed while writing an entry ---------------------------------------------- */
/* Gets every kernel through a cache on dir; checks results; returns the cache's counters. */
static bj_cg_cache run_all(kset *ks, const char *dir) {
    bj_error err = { 0 };
    bj_cg_cache c;
    cr_assert_eq(bj_cg_cache_open(&c, dir, &ks->t, false, &err), BJ_OK, "%s", err.msg);
    kset_run_all(ks, &c);
    return c;
}

/* A child compiles and stores every kernel with RLIMIT_FSIZE = limit: the write that crosses
 * it kills the child (SIGXFSZ) with the temporary file cut at exactly limit bytes. */
static void kill_during_store(kset *ks, const char *dir, long long limit) {
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        struct rlimit r = { (rlim_t)limit, (rlim_t)limit };
        setrlimit(RLIMIT_FSIZE, &r);
        signal(SIGXFSZ, SIG_DFL);
        bj_error err = { 0 };
        bj_cg_cache c;
        bj_cg_jit *j;
        if (bj_cg_cache_open(&c, dir, &ks->t, false, &err) != BJ_OK || bj_cg_jit_create(&j, &err) != BJ_OK) _exit(3);
        for (int i = 0; i < KSET_N; i++) {
            bj_cg_matmul_fn fn;
            if (bj_cg_kernel_get(&c, j, &ks->t, &ks->d[i], ks->t8[i], &fn, &err) != BJ_OK) _exit(4);
        }
        _exit(0);
    }
    int st = wait_status(pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGXFSZ, "limit %lld: the writer was not killed mid-write (status %#x)",
              limit, st);
}

Test(faults, cache_writer_killed_mid_entry, .timeout = 300) {
    kset ks;
    kset_init(&ks, 7);
    char ref[4096], dir[4096], p[8192];
    /* sizes of the entries, from an undisturbed run */
    fresh_dir(ref, sizeof ref, "cache-ref");
    bj_cg_cache c = run_all(&ks, ref);
    bj_error err = { 0 };
    long long size[KSET_N];
    for (int i = 0; i < KSET_N; i++) {
        struct stat st;
        cr_assert_eq(bj_cg_cache_path(&c, &ks.d[i], p, sizeof p, &err), BJ_OK);
        cr_assert_eq(stat(p, &st), 0);
        size[i] = st.st_size;
    }
    /* RLIMIT_FSIZE bounds each file: the child dies writing the first entry bigger than the limit,
     * after the entries before it were completed. Cuts: in the 128-byte header, at its end, in
     * the object, one byte short of each entry. */
    long long limits[4 + 2 * KSET_N];
    int nl = 0;
    limits[nl++] = 1; limits[nl++] = 64; limits[nl++] = 128; limits[nl++] = 129;
    for (int i = 0; i < KSET_N; i++) { limits[nl++] = size[i] / 2; limits[nl++] = size[i] - 1; }
    int tested = 0;
    for (int l = 0; l < nl; l++) {
        int k = 0; /* entries written whole before the kill */
        while (k < KSET_N && size[k] <= limits[l]) k++;
        if (k == KSET_N) continue; /* nothing is cut at this limit */
        tested++;
        fresh_dir(dir, sizeof dir, "cache-kill");
        kill_during_store(&ks, dir, limits[l]);
        cr_expect_eq(count_files(dir, NULL, ".bjk"), k, "limit %lld: a partial entry has the final name", limits[l]);
        cr_expect_geq(count_files(dir, ".tmp-", NULL), 1, "limit %lld: the killed write left no temp file?", limits[l]);
        c = run_all(&ks, dir); /* a later run: trusts nothing partial */
        cr_expect_eq(c.n_corrupt, 0, "limit %lld: %s", limits[l], c.warn_msg);
        cr_expect_eq(c.n_loaded, k, "limit %lld", limits[l]);
        cr_expect_eq(c.n_compiled, KSET_N - k, "limit %lld", limits[l]);
        c = run_all(&ks, dir); /* and the run after it loads everything */
        cr_expect_eq(c.n_loaded, KSET_N, "limit %lld", limits[l]);
    }
    cr_expect_geq(tested, 6);
    kset_free(&ks);
}

/* A leftover temp file with garbage (a writer killed long ago) is never read as an entry. */
Test(faults, stale_temp_files_are_ignored, .timeout = 300) {
    kset ks;
    kset_init(&ks, 7);
    char dir[4096], p[8192];
    fresh_dir(dir, sizeof dir, "cache-stale");
    bj_cg_cache c = run_all(&ks, dir);
    bj_error err = { 0 };
    for (int i = 0; i < KSET_N; i++) {
        cr_assert_eq(bj_cg_cache_path(&c, &ks.d[i], p, sizeof p, &err), BJ_OK);
        char tmp[8300];
        snprintf(tmp, sizeof tmp, "%s/.tmp-stale%d", dir, i);
        FILE *f = fopen(tmp, "wb");
        fputs("BJKCACHE garbage", f);
        fclose(f);
    }
    c = run_all(&ks, dir);
    cr_expect_eq(c.n_loaded, KSET_N);
    cr_expect_eq(c.n_corrupt, 0);
    kset_free(&ks);
}

/* `bitjit run` SIGKILLed at several moments (loading, compiling, writing entries, generating):
 * the next run reports no corrupt entry and prints the same ids. */
Test(faults, bitjit_killed_during_compile_leaves_no_bad_entry, .timeout = 600) {
    char dir[4096], want[8192], out[8192], cmd[16384], outp[4200];
    fresh_dir(dir, sizeof dir, "run-kill");
    /* stdout only (sh() merges stderr, where slow runs print progress lines) */
    snprintf(cmd, sizeof cmd, "('%s' run --no-cache -p 'In the beginning' -n 8 --temp 0 --ids 2>/dev/null)", BJ_BITJIT_EXE);
    cr_assert_eq(sh(cmd, want, sizeof want), 0);
    snprintf(outp, sizeof outp, "%s.log", dir);
    const int delays[] = { 30, 120, 250, 400, 600, 900, 1300 };
    for (size_t i = 0; i < BJ_COUNTOF(delays); i++) {
        char *argv[] = { (char *)BJ_BITJIT_EXE, "run", "--cache-dir", dir, "--mcpu", "x86-64-v2", "-p", "In the beginning",
                         "-n", "8", "--temp", "0", "--ids", NULL };
        pid_t pid = spawn(argv, -1, NULL);
        sleep_ms(delays[i]);
        kill(-pid, SIGKILL);
        wait_status(pid);
        snprintf(cmd, sizeof cmd, "'%s' run --cache-dir '%s' --mcpu x86-64-v2 -p 'In the beginning' -n 8 --temp 0 --ids -v",
                 BJ_BITJIT_EXE, dir);
        int rc = sh(cmd, out, sizeof out);
        cr_expect_eq(rc, 0, "after a kill at %d ms: exit %d: %s", delays[i], rc, out);
        cr_expect(!strstr(out, "corrupt"), "after a kill at %d ms a partial entry was found: %s", delays[i], out);
        cr_expect(strstr(out, want), "after a kill at %d ms: %s", delays[i], out);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'/*.bjk", dir); /* next round compiles again */
        cr_assert_eq(system(cmd), 0);
    }
}

/* ---- bitjitc killed mid-way ------------------------------------------------------------------------ */
static void bitjitc_path(char *buf, size_t cap) { tool("bitjitc", buf, cap); }

/* The output is absent, or byte-identical to the old file, or a whole library that runs. */
static void expect_whole_or_absent(const char *lib, const char *old, const char *when) {
    if (!exists(lib)) return;
    char *text = NULL, cmd[16384], out[8192];
    size_t len = 0;
    bj_error err = { 0 };
    cr_assert_eq(bj_read_file(lib, &text, &len, &err), BJ_OK);
    bool is_old = old && len == strlen(old) && !memcmp(text, old, len);
    free(text);
    if (is_old) return;
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'In the beginning' -n 4 --temp 0 --ids", BJ_BITJIT_EXE, lib);
    int rc = sh(cmd, out, sizeof out);
    cr_expect_eq(rc, 0, "%s: %s exists but is not a whole library: %s", when, lib, out);
}

Test(faults, bitjitc_killed_leaves_no_half_written_output, .timeout = 600) {
    char dir[4096], lib[4200], exe[4096];
    bitjitc_path(exe, sizeof exe);
    fresh_dir(dir, sizeof dir, "aot-kill");
    snprintf(lib, sizeof lib, "%s/kjv.so", dir);
    char *argv[] = { exe, (char *)PACKED, "-o", lib, NULL };
    /* SIGXFSZ: every file it writes is cut at 1 MiB (the library is ~6 MiB) */
    pid_t pid = spawn(argv, 1 << 20, NULL);
    int st = wait_status(pid);
    cr_expect(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0), "bitjitc succeeded under a 1 MiB file limit");
    cr_expect(!exists(lib), "a killed bitjitc left %s", lib);
    /* the same with an old output in place: it stays as it was */
    FILE *f = fopen(lib, "w");
    fputs("old library", f);
    fclose(f);
    pid = spawn(argv, 1 << 20, NULL);
    wait_status(pid);
    expect_whole_or_absent(lib, "old library", "SIGXFSZ");
    cr_expect(exists(lib), "the old output was removed");
    /* SIGKILL of the whole process group (bitjitc and its cc) at several moments */
    const int delays[] = { 50, 200, 500, 1000, 1500, 2500 };
    for (size_t i = 0; i < BJ_COUNTOF(delays); i++) {
        unlink(lib);
        pid = spawn(argv, -1, NULL);
        sleep_ms(delays[i]);
        kill(-pid, SIGKILL);
        wait_status(pid);
        char when[64];
        snprintf(when, sizeof when, "SIGKILL at %d ms", delays[i]);
        expect_whole_or_absent(lib, NULL, when);
    }
    /* a run that is not killed still works in the same directory (leftover temp files do no harm) */
    unlink(lib);
    pid = spawn(argv, -1, NULL);
    st = wait_status(pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "bitjitc failed after the kills (status %#x)", st);
    expect_whole_or_absent(lib, NULL, "after the kills");
    cr_expect(exists(lib));
}

/* Entries of dir whose name contains part (NULL: all but . and ..). */
static int count_entries(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    cr_assert(d, "%s: cannot list", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && (!part || strstr(e->d_name, part))) n++;
    closedir(d);
    return n;
}

/* SIGTERM or SIGINT to bitjitc alone (not its cc) at several moments, and a file-size limit:
 * it stops, removes its work directory ($TMPDIR/bitjitc-*) and its temporary output
 * (OUT.tmp-*), and the output is absent or whole. */
Test(faults, bitjitc_interrupted_removes_its_temporary_files, .timeout = 600) {
    char dir[4096], tmp[4096], lib[4200], exe[4096];
    bitjitc_path(exe, sizeof exe);
    fresh_dir(dir, sizeof dir, "aot-term");
    fresh_dir(tmp, sizeof tmp, "aot-term-tmp");
    cr_assert_eq(setenv("TMPDIR", tmp, 1), 0);
    snprintf(lib, sizeof lib, "%s/kjv.so", dir);
    char *argv[] = { exe, (char *)PACKED, "-o", lib, NULL };
    pid_t pid = spawn(argv, 1 << 20, NULL); /* writes fail with EFBIG: an error, cleaned up */
    int st = wait_status(pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "bitjitc under a 1 MiB file limit: status %#x", st);
    cr_expect_eq(count_entries(tmp, NULL), 0, "a failed bitjitc left its work directory in %s", tmp);
    cr_expect_eq(count_entries(dir, ".tmp-"), 0, "a failed bitjitc left a temporary output in %s", dir);
    const int delays[] = { 100, 400, 800, 1200, 1600, 2000, 3000 };
    int stopped = 0;
    for (size_t i = 0; i < BJ_COUNTOF(delays); i++) {
        unlink(lib);
        pid = spawn(argv, -1, NULL);
        sleep_ms(delays[i]);
        int sig = i % 2 ? SIGINT : SIGTERM;
        kill(pid, sig);
        st = wait_status(pid);
        char when[64];
        snprintf(when, sizeof when, "signal %d at %d ms", sig, delays[i]);
        cr_expect((WIFSIGNALED(st) && WTERMSIG(st) == sig) || (WIFEXITED(st) && WEXITSTATUS(st) == 0),
                  "%s: status %#x", when, st);
        stopped += WIFSIGNALED(st);
        if (count_entries(tmp, NULL)) {
            char cmd[8300], left[4096];
            snprintf(cmd, sizeof cmd, "ls -laR '%s'", tmp);
            sh(cmd, left, sizeof left);
            cr_expect_fail("%s: temporary files are left in %s:\n%s", when, tmp, left);
            snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", tmp);
            sh(cmd, left, sizeof left);
        }
        cr_expect_eq(count_entries(dir, ".tmp-"), 0, "%s: a temporary output is left in %s", when, dir);
        expect_whole_or_absent(lib, NULL, when);
    }
    cr_expect_gt(stopped, 0, "no signal arrived while bitjitc was running: the delays are too long for this machine");
}

/* ---- out of memory ---------------------------------------------------------------------------------- */
/* `bitjit ARGS` under an address-space limit of kib KiB (engine NULL: `bitjit --help`). */
static int run_limited(long long kib, const char *engine, char *out, size_t cap) {
    char cmd[16384];
    if (!engine)
        snprintf(cmd, sizeof cmd, "ulimit -v %lld; '%s' --help >/dev/null", kib, BJ_BITJIT_EXE);
    else
        snprintf(cmd, sizeof cmd, "ulimit -v %lld; '%s' run --engine %s --cache-dir '%s/faults-oom-cache' "
                 "-p 'In the beginning' -n 4 --temp 0 --ids", kib, BJ_BITJIT_EXE, engine, BJ_TEST_TMP);
    return sh(cmd, out, cap);
}

/* The smallest address-space limit (KiB, to 1 MiB) under which the command succeeds. */
static long long smallest_ok(const char *engine) {
    char out[16384];
    long long lo = 16 << 10, hi = 4 << 20; /* 16 MiB fails (libLLVM alone is bigger), 4 GiB works */
    cr_assert_eq(run_limited(hi, engine, out, sizeof out), 0, "%s", out);
    while (hi - lo > 1024) {
        long long mid = (lo + hi) / 2;
        if (run_limited(mid, engine, out, sizeof out) == 0) hi = mid;
        else lo = mid;
    }
    return hi;
}

/* Below `start`, the process cannot even start: ld.so cannot map a library (exit 127) or a C++
 * static initialiser of libLLVM throws std::bad_alloc before main (abort). That is outside bitjit.
 * From start + 1 MiB up to what a run needs, every limit must end in exit 0 or exit 1 with an
 * error message: an allocation bitjit makes (file maps, weights, KV cache, activations, JSON,
 * threads, JIT memory) fails cleanly. */
Test(faults, out_of_memory_is_reported, .timeout = 600) {
    if (BJ_UNDER_SANITIZER) cr_skip_test("address-space limits do not work under ASan/TSan (shadow memory)");
    long long start = smallest_ok(NULL) + 1024;
    const char *engines[] = { "ref", "jit" };
    for (int e = 0; e < 2; e++) {
        long long ok = smallest_ok(engines[e]);
        int n_fail = 0;
        fprintf(stderr, "%s: starts at %lld KiB, runs at %lld KiB\n", engines[e], start, ok);
        for (long long kib = start; kib < ok; kib += 1024) {
            char out[16384];
            int rc = run_limited(kib, engines[e], out, sizeof out);
            cr_expect(rc == 0 || rc == 1, "%s under %lld KiB: exit %d (128+ is a signal): %s", engines[e], kib, rc, out);
            if (rc == 1) {
                n_fail++;
                cr_expect(strstr(out, "error") && (strstr(out, "memory") || strstr(out, "Cannot allocate") ||
                                                   strstr(out, "cannot")),
                          "%s under %lld KiB: unclear message: %s", engines[e], kib, out);
            }
        }
        cr_expect_gt(n_fail, 3, "%s: only %d limits between %lld and %lld KiB failed", engines[e], n_fail, start, ok);
    }
}

/* ---- context limit and memory --------------------------------------------------------------------- */
static long max_rss_kib(const char *n) {
    char *argv[] = { (char *)BJ_BITJIT_EXE, "run", "--cache-dir", BJ_TEST_TMP "/faults-rss-cache", "-p",
                     "In the beginning", "-n", (char *)n, "--temp", "0", "--ids", NULL };
    pid_t pid = spawn(argv, -1, NULL);
    int st;
    struct rusage ru;
    cr_assert_eq(wait4(pid, &st, 0, &ru), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "-n %s: status %#x", n, st);
    return ru.ru_maxrss;
}

Test(faults, long_generation_memory_bounded_by_kv_cache, .timeout = 600) {
    if (BJ_UNDER_SANITIZER) cr_skip_test("RSS under ASan/TSan is the sanitizer's");
    bj_model_config c;
    bj_error err = { 0 };
    cr_assert_eq(bj_hf_config_load(&c, PACKED "/config.json", &err), BJ_OK, "%s", err.msg);
    long kv_kib = (long)(c.n_layer * 2 * c.max_seq * c.n_kv_head * c.head_dim * 4 / 1024);
    max_rss_kib("1"); /* warm the kernel cache */
    long a = max_rss_kib("1"), b = max_rss_kib("2000");
    fprintf(stderr, "max RSS: -n 1 %ld KiB, -n 2000 (stops at %lld) %ld KiB; KV cache %ld KiB\n", a, (long long)c.max_seq,
            b, kv_kib);
    cr_expect_leq(b - a, kv_kib + 1024, "memory grew %ld KiB over a generation to the context limit (KV cache %ld KiB)",
                  b - a, kv_kib);
}
