/* runtime/cli/progress.c -- progress bars (terminal) and occasional lines (pipe) on stderr; see
 * progress.h. */
#include "runtime/cli/progress.h"

#include "runtime/cli/cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool cli_progress_enabled = true;
static bool tty_dirty; /* a bar is drawn on the terminal's current line */

enum { BAR_WIDTH = 30 };
#define TTY_INTERVAL_S 0.05
#define PIPE_INTERVAL_S 2.0

static void draw_tty(cli_progress *p, double now) {
    char bar[BAR_WIDTH + 1];
    double el = now - p->t_start;
    if (p->total > 0) {
        int64_t fill = p->done >= p->total ? BAR_WIDTH : p->done * BAR_WIDTH / p->total;
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(BAR_WIDTH - fill));
        bar[BAR_WIDTH] = 0;
        fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %3d%%  %.1fs%s%s", p->label, bar, (long long)p->done,
                (long long)p->total, (int)(100 * p->done / p->total), el, p->note[0] ? "  " : "", p->note);
    } else {
        fprintf(stderr, "\r\033[K%s ... %.1fs%s%s", p->label, el, p->note[0] ? "  " : "", p->note);
    }
    fflush(stderr);
    tty_dirty = true;
}

static void line_pipe(cli_progress *p, double now) {
    if (p->total > 0)
        fprintf(stderr, "%s: %s: %lld/%lld (%d%%) %.1fs%s%s\n", bj_cli_prog, p->label, (long long)p->done,
                (long long)p->total, (int)(100 * p->done / p->total), now - p->t_start, p->note[0] ? "  " : "",
                p->note);
    else
        fprintf(stderr, "%s: %s: %.1fs%s%s\n", bj_cli_prog, p->label, now - p->t_start, p->note[0] ? "  " : "",
                p->note);
    fflush(stderr);
}

void cli_progress_begin(cli_progress *p, const char *label, int64_t total) {
    memset(p, 0, sizeof *p);
    if (!cli_progress_enabled) return;
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
        fprintf(stderr, "%s: %s: done", bj_cli_prog, p->label);
        if (p->total > 0) fprintf(stderr, " %lld/%lld", (long long)p->done, (long long)p->total);
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
