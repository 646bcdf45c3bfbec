/* tests/support/shell.h -- running the project's executables from tests: through the shell
 * (sh, sh_stdout, bitjit_continuation) or as a child process with pipes (spawn_piped). Include
 * after <criterion/criterion.h>; needs BJ_BITJIT_EXE and BJ_TEST_TMP (tests/CMakeLists.txt). */
#ifndef BJ_TEST_SHELL_H
#define BJ_TEST_SHELL_H

#include "support/files.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Path of a sibling executable of bitjit in the build tree (bitjitc, bitjit-example). */
static const char *tool(const char *name, char *buf, size_t cap) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", BJ_BITJIT_EXE);
    snprintf(buf, cap, "%s/%s", dirname(tmp), name);
    return buf;
}

/* Runs a shell command line with stderr merged; returns the exit code (128 + signal). */
static int sh(const char *cmd, char *out, size_t cap) {
    char full[16384];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* stdout of a shell command line (stderr dropped), whole, malloc'd; *status (may be NULL) gets
 * the exit code as sh() gives it. */
static inline char *sh_stdout(const char *cmd, int *status) {
    char full[16384];
    snprintf(full, sizeof full, "%s 2>/dev/null", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p);
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return buf;
}

/* The continuation `bitjit run -m model --temp 0 -n n -t 1` writes after prompt (it echoes the
 * prompt first and ends with a newline; both are cut), malloc'd. The prompt goes through a file
 * so any text passes unquoted. */
static inline char *bitjit_continuation(const char *model, const char *prompt, int n) {
    char path[4096], cmd[12288];
    snprintf(path, sizeof path, "%s/continuation_prompt_%d.txt", BJ_TEST_TMP, (int)getpid());
    write_all(path, prompt, strlen(prompt));
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' --temp 0 -n %d -t 1 -f '%s'", BJ_BITJIT_EXE, model, n, path);
    int st;
    char *out = sh_stdout(cmd, &st);
    unlink(path);
    cr_assert_eq(st, 0, "bitjit run exited %d: %s", st, out);
    size_t lp = strlen(prompt), lo = strlen(out);
    cr_assert(lo > lp && !strncmp(out, prompt, lp) && out[lo - 1] == '\n', "run printed: %s", out);
    out[lo - 1] = 0;
    memmove(out, out + lp, lo - lp);
    return out;
}

/* fork + exec of path with argv. Each of in, out, err_fd: NULL connects that stream of the
 * child to /dev/null; otherwise a pipe to it, whose other end (write end for stdin, read end
 * for stdout and stderr) is stored there. Returns the child's pid. */
static inline pid_t spawn_piped(const char *path, char *const argv[], int *in, int *out, int *err_fd) {
    int *mine[3] = { in, out, err_fd }, p[3][2];
    for (int i = 0; i < 3; i++)
        if (mine[i]) cr_assert_eq(pipe(p[i]), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        for (int i = 0; i < 3; i++) {
            if (!mine[i]) { dup2(devnull, i); continue; }
            dup2(p[i][i == 0 ? 0 : 1], i); /* the child's end */
            close(p[i][0]);
            close(p[i][1]);
        }
        execv(path, argv);
        _exit(127);
    }
    for (int i = 0; i < 3; i++)
        if (mine[i]) {
            close(p[i][i == 0 ? 0 : 1]);
            *mine[i] = p[i][i == 0 ? 1 : 0];
        }
    return pid;
}

#endif
