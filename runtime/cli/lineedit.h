/* runtime/cli/lineedit.h -- lines of user input for `bitjit chat`: on a terminal through libedit
 * (BSD licence; Debian libedit-dev), so the arrow keys, Home/End, Ctrl-A/E/K/W... edit the line and
 * Up/Down walk the history of this session; elsewhere (a pipe, a file) plain getline, so that
 * scripts and tests feed lines as before. */
#ifndef BJ_CLI_LINEEDIT_H
#define BJ_CLI_LINEEDIT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cli_lines cli_lines;

/* Reads stdin; with libedit when stdin and stdout are terminals (prompt written before each line),
 * else with getline (prompt written only when stdin is a terminal). Exits if out of memory. */
cli_lines *cli_lines_open(const char *prog, const char *prompt);
/* True when libedit edits the lines. */
bool cli_lines_editing(const cli_lines *r);
/* The next line without its line end, NUL-terminated, valid until the next call; *len its length.
 * NULL at the end of input, or when a signal interrupted the read (errno EINTR). */
const char *cli_lines_get(cli_lines *r, size_t *len);
/* Adds a line to the history Up/Down recalls (nothing without libedit). */
void cli_lines_remember(cli_lines *r, const char *line);
void cli_lines_close(cli_lines *r);

#endif
