/* runtime/cli/progress.c -- progress bars (terminal) and occasional lines (pipe) on stderr; see
 * progress.h. */
#include "runtime/cli/progress.h"

#include "runtime/cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

bool cli_progress_enabled = true;
static bool tty_dirty; /* a bar is drawn on the terminal's current line */

enum { BAR_WIDTH = 30, MIN_BAR = 10 };

/* Columns of the terminal on stderr ($COLUMNS when the ioctl cannot tell), 80 if unknown. */
static int term_columns(void) {
    struct winsize ws;
    if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int n = c ? atoi(c) : 0;
    return n > 0 ? n : 80;
}
#define TTY_INTERVAL_S 0.05
#define PIPE_INTERVAL_S 2.0

/* "done/total" ("1.5/12.0 MiB" for a bar of bytes); only for total > 0. */
static void format_amount(const cli_progress *p, char *out, size_t cap) {
    if (!p->bytes) {
        snprintf(out, cap, "%lld/%lld", (long long)p->done, (long long)p->total);
        return;
    }
    static const char *const units[] = { "KiB", "MiB", "GiB" };
    int u = 0;
    double scale = 1024.0;
    while (u < 2 && (double)p->total >= scale * 1024.0) { u++; scale *= 1024.0; }
    snprintf(out, cap, "%.1f/%.1f %s", (double)p->done / scale, (double)p->total / scale, units[u]);
}

/* The line is fitted to the terminal so that it never wraps (a wrapped line is not redrawn in
 * place by \r): the bar shrinks to MIN_BAR columns, then goes, then the note and the text are cut.
 * One column is kept free (some terminals wrap on writing the last one). */
void cli_progress_format(const cli_progress *p, double elapsed, int columns, char *out, size_t cap) {
    char text[256], tail[160], amount[64];
    int width = columns - 1 < (int)cap - 1 ? columns - 1 : (int)cap - 1;
    if (width < 1) width = 1;
    if (p->total > 0) {
        format_amount(p, amount, sizeof amount);
        snprintf(text, sizeof text, " %s %3d%%", amount, (int)(100 * p->done / p->total));
    } else {
        snprintf(text, sizeof text, " ...");
    }
    snprintf(tail, sizeof tail, "  %.1fs%s%s", elapsed, p->note[0] ? "  " : "", p->note);
    int fixed = (int)(strlen(p->label) + strlen(text) + strlen(tail));
    int bar = p->total > 0 ? width - fixed - 3 : 0; /* " [" + "]" */
    if (bar > BAR_WIDTH) bar = BAR_WIDTH;
    if (bar < MIN_BAR) bar = 0;
    char barbuf[BAR_WIDTH + 4] = "";
    if (bar) {
        int64_t fill = p->done >= p->total ? bar : p->done * bar / p->total;
        barbuf[0] = ' ';
        barbuf[1] = '[';
        memset(barbuf + 2, '#', (size_t)fill);
        memset(barbuf + 2 + fill, '.', (size_t)(bar - fill));
        barbuf[2 + bar] = ']';
        barbuf[3 + bar] = 0;
    }
    char line[512];
    snprintf(line, sizeof line, "%s%s%s%s", p->label, barbuf, text, tail);
    if ((int)strlen(line) > width) line[width] = 0;
    snprintf(out, cap, "%s", line);
}

static void draw_tty(cli_progress *p, double now) {
    char line[512];
    cli_progress_format(p, now - p->t_start, term_columns(), line, sizeof line);
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    tty_dirty = true;
}

static void line_pipe(cli_progress *p, double now) {
    char amount[64];
    if (p->total > 0) {
        format_amount(p, amount, sizeof amount);
        fprintf(stderr, "%s: %s: %s (%d%%) %.1fs%s%s\n", bj_cli_prog, p->label, amount,
                (int)(100 * p->done / p->total), now - p->t_start, p->note[0] ? "  " : "", p->note);
    } else
        fprintf(stderr, "%s: %s: %.1fs%s%s\n", bj_cli_prog, p->label, now - p->t_start, p->note[0] ? "  " : "",
                p->note);
    fflush(stderr);
}

void cli_progress_begin(cli_progress *p, const char *label, int64_t total) {
    cli_progress_begin_unit(p, label, total, false);
}

void cli_progress_begin_unit(cli_progress *p, const char *label, int64_t total, bool bytes) {
    memset(p, 0, sizeof *p);
    if (!cli_progress_enabled) return;
    p->bytes = bytes;
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total < 0 ? 0 : total;
    p->tty = isatty(2);
    p->active = true;
    p->t_start = p->t_last = cli_now_s();
    if (p->tty) { draw_tty(p, p->t_start); p->printed = true; }
}

void cli_progress_update(cli_progress *p, int64_t done, const char *note) {
    if (!p->active) return;
    p->done = done < 0 ? 0 : done;
    if (note) snprintf(p->note, sizeof p->note, "%s", note);
    double now = cli_now_s();
    bool last = p->total > 0 && done >= p->total;
    if (p->tty) {
        if (last || now - p->t_last >= TTY_INTERVAL_S) { draw_tty(p, now); p->t_last = now; }
    } else if (now - p->t_last >= PIPE_INTERVAL_S) {
        line_pipe(p, now);
        p->t_last = now;
        p->printed = true;
    }
}

void cli_progress_end(cli_progress *p) {
    if (!p->active) return;
    if (p->tty) {
        cli_progress_clear();
    } else if (p->printed) {
        double now = cli_now_s();
        char amount[64] = "";
        if (p->total > 0) format_amount(p, amount, sizeof amount);
        fprintf(stderr, "%s: %s: done%s%s", bj_cli_prog, p->label, amount[0] ? " " : "", amount);
        fprintf(stderr, " in %.1fs\n", now - p->t_start);
        fflush(stderr);
    }
    p->active = false;
}

void cli_progress_clear(void) {
    if (!tty_dirty) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
    tty_dirty = false;
}
