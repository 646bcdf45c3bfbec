/* runtime/cli/progress.h -- progress reports on stderr for the `bitjit` subcommands (model load,
 * kernel preparation, perplexity, tuning).
 *
 * On a terminal: one bar redrawn in place with \r ("label [#####.....]  12/42  29%  note"),
 * at most every 1/20 s, cleared at the end so the command's own output stays clean (a command
 * prints its result itself). On a pipe or file: plain lines, at most one every 2 s and none for
 * work that ends sooner, then a closing "label: done N/N in T s" line if any was printed, so
 * logs stay short. Nothing at all when cli_progress_enabled is false (-q sets it).
 *
 *   cli_progress p;
 *   cli_progress_begin(&p, "perplexity", n_windows);
 *   for (...) cli_progress_update(&p, i + 1, "ppl 50.85");   // note may be NULL
 *   cli_progress_end(&p);
 *
 * total 0: unknown amount (no bar, elapsed time only). A bar of bytes (cli_progress_begin_unit)
 * shows them in KiB, MiB or GiB. */
#ifndef BJ_CLI_PROGRESS_H
#define BJ_CLI_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern bool cli_progress_enabled; /* default true; false for -q */

typedef struct cli_progress {
    char label[64];
    char note[96];
    int64_t total, done;
    double t_start, t_last; /* cli_now_s() at begin and at the last draw */
    bool tty, active, printed;
    bool bytes; /* done and total are bytes: shown in KiB, MiB or GiB */
} cli_progress;

void cli_progress_begin(cli_progress *p, const char *label, int64_t total);
/* The same; with bytes, done and total count bytes ("1.5/12.0 MiB"). */
void cli_progress_begin_unit(cli_progress *p, const char *label, int64_t total, bool bytes);
void cli_progress_update(cli_progress *p, int64_t done, const char *note);
void cli_progress_end(cli_progress *p);
/* The terminal line for p after elapsed seconds, fitted to columns (never longer than
 * columns - 1 characters): "label [####....] done/total  pct%  1.2s  note", the bar shrinking
 * and then dropped, the rest cut, as the terminal narrows. */
void cli_progress_format(const cli_progress *p, double elapsed, int columns, char *out, size_t cap);
/* Clears a bar left on the terminal (before an error message); a no-op otherwise. */
void cli_progress_clear(void);

#endif
