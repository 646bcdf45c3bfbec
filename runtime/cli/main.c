/* runtime/cli/main.c -- the `bitjit` driver: dispatches to the subcommands of commands.def.
 *
 *   bitjit COMMAND [options]     (bitjit --help lists the commands)
 *   bitjit --version             version, LLVM version, detected CPU */
#include "codegen/codegen.h"
#include "runtime/cli/cli.h"

#include <string.h>

#define BJ_COMMAND(name, fn, help) int fn(int argc, char **argv);
#include "runtime/cli/commands.def"
#undef BJ_COMMAND

static const struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
#define BJ_COMMAND(name, fn, help) { #name, fn, help },
#include "runtime/cli/commands.def"
#undef BJ_COMMAND
};

static int usage_main(FILE *f) {
    fprintf(f, "usage: bitjit COMMAND [options]\n\n"
               "bitjit compiles BitNet language models for this CPU and runs them.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-11s%s\n", commands[i].name, commands[i].help);
    fprintf(f, "\noptions:\n"
               "  -h, --help     show this help\n"
               "  --version      print the version, the LLVM version and the detected CPU\n");
    return f == stderr ? 2 : 0;
}

static int version(void) {
    char llvm[64];
    bj_cg_llvm_version(llvm, sizeof llvm);
    bj_cg_target t;
    bj_error err = { 0 };
    const char *cpu = bj_cg_target_detect(&t, NULL, NULL, &err) == BJ_OK ? t.cpu : "(not detected)";
    printf("bitjit %s\nLLVM %s\nCPU %s\n", BJ_VERSION_STRING, llvm, cpu);
    return 0;
}

int main(int argc, char **argv) {
    cli_check_stdout_at_exit();
    if (argc < 2) return usage_main(stderr);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) return usage_main(stdout);
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) return version();
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(cmd, commands[i].name)) {
            bj_cli_subcmd = commands[i].name;
            return commands[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "%s: unknown command '%s'\n", bj_cli_prog, cmd);
    usage_main(stderr);
    return 2;
}
