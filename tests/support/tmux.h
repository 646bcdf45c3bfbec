/* tests/support/tmux.h -- driving a program on a terminal from tests: a detached tmux session on
 * a private server (-L sock), keys typed with send-keys, the pane's text read back. Include after
 * "support/shell.h". Tests skip themselves where tmux is not installed (scripts/setup.sh installs it). */
#ifndef BJ_TEST_TMUX_H
#define BJ_TEST_TMUX_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* How many times needle stands in hay (not overlapping). */
static inline int count_in(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* Starts shell_cmd (a command line for the session's shell; no double quotes in it) on a 200x50
 * terminal of a new tmux server named after prefix and this process; the name into sock. The
 * session stays 30 s after the command ends, so its last output can be read. */
static inline void tmux_start(char *sock, size_t cap, const char *prefix, const char *shell_cmd) {
    char cmd[8192 + 256], out[4096];
    if (sh("command -v tmux", out, sizeof out) != 0) cr_skip_test("tmux is not installed");
    snprintf(sock, cap, "%s%d", prefix, (int)getpid());
    snprintf(cmd, sizeof cmd, "env -u TMUX tmux -L %s -f /dev/null new-session -d -x 200 -y 50 \"%s; sleep 30\"", sock,
             shell_cmd);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
}

/* Waits (at most 60 s: a sanitizer build compiles its kernels slowly) until the tmux pane shows
 * needle at least `times` times; the pane's text into out. */
static inline bool pane_wait(const char *sock, const char *needle, int times, char *out, size_t cap) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "tmux -L %s capture-pane -p -S -200", sock);
    for (int i = 0; i < 600; i++) {
        sh(cmd, out, cap);
        if (count_in(out, needle) >= times) return true;
        usleep(100 * 1000);
    }
    return false;
}

/* Types keys (tmux send-keys words: 'text', Enter, Left, C-d, ...) into the session's pane. */
static inline void tmux_keys(const char *sock, const char *keys) {
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "tmux -L %s send-keys %s", sock, keys);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
}

static inline void tmux_kill(const char *sock) {
    char cmd[512], out[4096];
    snprintf(cmd, sizeof cmd, "tmux -L %s kill-server", sock);
    sh(cmd, out, sizeof out);
}

#endif
