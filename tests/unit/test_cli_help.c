/* tests/unit/test_cli_help.c -- every subcommand of bitjit and bitjitc has --help naming all its
 * flags. The flags are read from the sources themselves (each getopt_long table, with the shared
 * CLI_*_LONGOPTS macros of runtime/cli/cli.h expanded), so a flag added without a help line fails
 * here; the subcommands come from runtime/cli/commands.def. */
#include "ir/support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "support/shell.h"

static char *slurp(const char *rel) {
    char path[4096], *buf;
    size_t len;
    bj_error err = { 0 };
    snprintf(path, sizeof path, "%s/%s", BJ_SOURCE_DIR, rel);
    cr_assert_eq(bj_read_file(path, &buf, &len, &err), BJ_OK, "%s", err.msg);
    return buf;
}

/* Long option names of the getopt tables in text[0..end): every { "name", x_argument. */
typedef struct flags {
    char name[64][48];
    int n;
} flags;

static void add(flags *f, const char *name, size_t len) {
    if (len >= sizeof f->name[0] || f->n == 64) return;
    for (int i = 0; i < f->n; i++)
        if (strlen(f->name[i]) == len && !strncmp(f->name[i], name, len)) return;
    memcpy(f->name[f->n], name, len);
    f->name[f->n++][len] = 0;
}

static void scan(flags *f, const char *text, const char *end) {
    for (const char *p = text; (p = strstr(p, "{ \"")) && (!end || p < end); p++) {
        const char *name = p + 3, *q = strchr(name, '"');
        if (!q) break;
        const char *r = q + 1;
        while (*r == ',' || *r == ' ') r++;
        if (!strncmp(r, "no_argument", 11) || !strncmp(r, "required_argument", 17) ||
            !strncmp(r, "optional_argument", 17))
            add(f, name, (size_t)(q - name));
    }
}

/* The names a CLI_*_LONGOPTS macro of cli.h stands for. */
static void scan_macro(flags *f, const char *cli_h, const char *macro) {
    char def[128];
    snprintf(def, sizeof def, "#define %s", macro);
    const char *p = strstr(cli_h, def);
    cr_assert(p, "cli.h lacks %s", def);
    const char *e = strstr(p + 1, "#define");
    scan(f, p, e);
}

static void flags_of_source(flags *f, const char *rel) {
    char *src = slurp(rel), *cli_h = slurp("runtime/cli/cli.h");
    scan(f, src, NULL);
    const char *macros[] = { "CLI_MODEL_LONGOPTS", "CLI_SAMPLING_LONGOPTS", "CLI_END_LONGOPTS" };
    for (size_t i = 0; i < sizeof macros / sizeof *macros; i++)
        if (strstr(src, macros[i])) scan_macro(f, cli_h, macros[i]);
    free(src);
    free(cli_h);
}

static void expect_help(const char *cmd, const flags *f, const char *what) {
    char out[65536];
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
    cr_expect(strstr(out, "usage:"), "%s: no usage line:\n%s", what, out);
    cr_expect_gt(f->n, 0, "%s: no flags found in the source", what);
    for (int i = 0; i < f->n; i++) {
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", f->name[i]);
        cr_expect(strstr(out, opt), "`%s` does not mention %s", what, opt);
    }
}

Test(cli_help, every_bitjit_subcommand_lists_all_its_flags) {
    char *defs = slurp("runtime/cli/commands.def");
    int n = 0;
    for (const char *p = defs; (p = strstr(p, "\nBJ_COMMAND(")); p++) {
        char name[64], rel[128], cmd[8192];
        if (sscanf(p + 12, " %63[a-z_]", name) != 1) continue;
        snprintf(rel, sizeof rel, "runtime/cli/cmd_%s.c", name);
        flags f = { 0 };
        flags_of_source(&f, rel);
        snprintf(cmd, sizeof cmd, "'%s' %s --help", BJ_BITJIT_EXE, name);
        char what[128];
        snprintf(what, sizeof what, "bitjit %s --help", name);
        expect_help(cmd, &f, what);
        n++;
    }
    cr_expect_geq(n, 4, "commands.def lists %d commands", n);
    free(defs);
    char out[16384], cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' --help", BJ_BITJIT_EXE);
    cr_assert_eq(sh(cmd, out, sizeof out), 0);
    cr_expect(strstr(out, "--version") && strstr(out, "--help"), "%s", out);
}

Test(cli_help, bitjitc_and_its_subcommands_list_all_their_flags) {
    char exe[4096], cmd[8192];
    tool("bitjitc", exe, sizeof exe);
    flags f = { 0 };
    flags_of_source(&f, "compiler/main_bitjitc.c");
    snprintf(cmd, sizeof cmd, "'%s' --help", exe);
    expect_help(cmd, &f, "bitjitc --help");
    /* convert/synth parse their flags by hand (compiler/cmd_gguf.c): the set each accepts. */
    flags conv = { .name = { "output", "type", "quiet", "help" }, .n = 4 };
    snprintf(cmd, sizeof cmd, "'%s' convert --help", exe);
    expect_help(cmd, &conv, "bitjitc convert --help");
    flags synth = { .name = { "shape", "output", "type", "seed", "quiet", "help" }, .n = 6 };
    snprintf(cmd, sizeof cmd, "'%s' synth --help", exe);
    expect_help(cmd, &synth, "bitjitc synth --help");
}

/* `bitjitc synth --help` names every shape synth accepts (the k_shapes table of
 * frontends/gguf_write.c, read from the source), "tiny" included. */
Test(cli_help, synth_help_names_every_shape) {
    char exe[4096], cmd[8192], out[16384];
    tool("bitjitc", exe, sizeof exe);
    snprintf(cmd, sizeof cmd, "'%s' synth --help", exe);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    char *src = slurp("frontends/gguf_write.c");
    const char *p = strstr(src, "k_shapes[] = {"), *end = p ? strstr(p, "};") : NULL;
    cr_assert(p && end, "no k_shapes table in frontends/gguf_write.c");
    int n = 0;
    for (const char *q = p; (q = strstr(q, "{ \"")) && q < end; q++) {
        char name[32], want[48];
        cr_assert_eq(sscanf(q + 3, "%31[^\"]", name), 1);
        snprintf(want, sizeof want, "  %s ", name); /* its own line in the list of shapes */
        cr_expect(strstr(out, want), "synth --help does not describe shape '%s':\n%s", name, out);
        snprintf(cmd, sizeof cmd, "'%s' synth --shape no-such-shape --type i2_s -o /dev/null", exe);
        n++;
    }
    cr_expect_geq(n, 4, "k_shapes has %d rows", n);
    char bad[16384];
    cr_expect_eq(sh(cmd, bad, sizeof bad), 2, "%s", bad);
    cr_expect(strstr(bad, "tiny"), "the unknown-shape error lists tiny: %s", bad);
    free(src);
}
