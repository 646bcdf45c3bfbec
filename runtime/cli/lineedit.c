/* runtime/cli/lineedit.c -- lines of user input: libedit on a terminal, getline elsewhere (lineedit.h). */
#include "runtime/cli/lineedit.h"

#include <errno.h>
#include <histedit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

struct cli_lines {
    EditLine *el;   /* NULL: getline */
    History *hist;
    char *prompt;
    char *buf;      /* the line handed out */
    size_t cap;
    bool prompt_plain; /* getline on a terminal: write the prompt ourselves */
};

static _Noreturn void oom(void) {
    fputs("bitjit: error: out of memory\n", stderr);
    exit(1);
}

static char *get_prompt(EditLine *el) {
    cli_lines *r = NULL;
    el_get(el, EL_CLIENTDATA, &r);
    return r ? r->prompt : "";
}

cli_lines *cli_lines_open(const char *prog, const char *prompt) {
    cli_lines *r = calloc(1, sizeof *r);
    if (!r || !(r->prompt = strdup(prompt))) oom();
    bool tty_in = isatty(0), tty_out = isatty(1);
    if (tty_in && tty_out && (r->el = el_init(prog, stdin, stdout, stderr))) {
        HistEvent ev;
        if (!(r->hist = history_init())) oom();
        history(r->hist, &ev, H_SETSIZE, 1000);
        history(r->hist, &ev, H_SETUNIQUE, 1); /* the same line twice in a row is kept once */
        el_set(r->el, EL_CLIENTDATA, r);
        el_set(r->el, EL_PROMPT, get_prompt);
        el_set(r->el, EL_EDITOR, "emacs");
        el_set(r->el, EL_HIST, history, r->hist);
        el_source(r->el, NULL); /* the user's ~/.editrc, if any */
    } else {
        r->prompt_plain = tty_in;
    }
    return r;
}

bool cli_lines_editing(const cli_lines *r) { return r->el != NULL; }

/* Keeps a copy of s[0..n) without its line end in r->buf. */
static const char *hand_out(cli_lines *r, const char *s, size_t n, size_t *len) {
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    if (n + 1 > r->cap) {
        r->cap = n + 64;
        if (!(r->buf = realloc(r->buf, r->cap))) oom();
    }
    memmove(r->buf, s, n);
    r->buf[n] = 0;
    *len = n;
    return r->buf;
}

const char *cli_lines_get(cli_lines *r, size_t *len) {
    *len = 0;
    errno = 0;
    if (r->el) {
        int n = 0;
        const char *s = el_gets(r->el, &n);
        if (!s || n <= 0) {
            if (errno != EINTR) fputc('\n', stdout); /* Ctrl-D: leave on a fresh line */
            return NULL;
        }
        return hand_out(r, s, (size_t)n, len);
    }
    if (r->prompt_plain) {
        fputs(r->prompt, stdout);
        fflush(stdout);
    }
    ssize_t n = getline(&r->buf, &r->cap, stdin);
    if (n < 0) {
        int e = errno;
        clearerr(stdin);
        if (r->prompt_plain && e != EINTR) fputc('\n', stdout);
        errno = e;
        return NULL;
    }
    return hand_out(r, r->buf, (size_t)n, len);
}

void cli_lines_remember(cli_lines *r, const char *line) {
    HistEvent ev;
    if (r->hist && *line) history(r->hist, &ev, H_ENTER, line);
}

void cli_lines_close(cli_lines *r) {
    if (!r) return;
    if (r->el) el_end(r->el);
    if (r->hist) history_end(r->hist);
    free(r->buf);
    free(r->prompt);
    free(r);
}
