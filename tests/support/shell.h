/* tests/support/shell.h -- running the project's executables from tests. Include after
 * <criterion/criterion.h>; needs BJ_BITJIT_EXE (defined by tests/CMakeLists.txt). */
#ifndef BJ_TEST_SHELL_H
#define BJ_TEST_SHELL_H

#include <libgen.h>
#include <stdio.h>
#include <sys/wait.h>

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

#endif
