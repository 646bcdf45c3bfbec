/* runtime/cli/cmd_info.c -- `bitjit info`: the CPU bitjit generates code for, its features,
 * the LLVM version and the kernel cache directory. */
#include "codegen/codegen.h"
#include "runtime/cli/cli.h"

#include <string.h>

static int usage_info(FILE *f) {
    fprintf(f, "usage: bitjit info [--mcpu NAME] [--mattr LIST] [--cache-dir DIR] [--list-cpus]\n"
               "       bitjit info --list-features\n\n"
               "Shows the CPU bitjit generates code for, its features, the LLVM version and the\n"
               "kernel cache directory.\n\n"
               "      --mcpu NAME       describe code generation for CPU NAME instead of the host\n"
               "      --mattr LIST      add/remove CPU features, e.g. +avx2,-avx512f\n"
               "      --cache-dir DIR   kernel cache directory to report on\n"
               "      --list-cpus       print the CPU names --mcpu accepts and exit\n"
               "      --list-features   print the feature names --mattr accepts and exit\n"
               "  -h, --help            show this help\n");
    return f == stderr ? 2 : 0;
}

int bj_cmd_info(int argc, char **argv) {
    static const struct option longs[] = {
        { "mcpu", required_argument, 0, CLI_O_MCPU }, { "mattr", required_argument, 0, CLI_O_MATTR },
        { "cache-dir", required_argument, 0, CLI_O_CACHE_DIR }, { "list-cpus", no_argument, 0, CLI_O_CMD },
        { "list-features", no_argument, 0, CLI_O_CMD + 1 },
        CLI_END_LONGOPTS,
    };
    const char *mcpu = NULL, *mattr = NULL, *dir = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        switch (c) {
        case CLI_O_MCPU: mcpu = optarg; break;
        case CLI_O_MATTR: mattr = optarg; break;
        case CLI_O_CACHE_DIR: dir = optarg; break;
        case CLI_O_CMD:
            for (size_t i = 0; i < bj_cg_cpu_count(); i++) printf("%s\n", bj_cg_cpu_name(i));
            return 0;
        case CLI_O_CMD + 1:
            for (size_t i = 0; i < bj_cg_feature_count(); i++) printf("%s\n", bj_cg_feature_name(i));
            return 0;
        default: cli_bad_option(c, argv, usage_info);
        }
    }
    if (optind < argc) cli_die_usage("unexpected argument '%s'", argv[optind]);
    bj_error err = { 0 };
    bj_cg_target t;
    cli_check_target(mcpu, mattr);
    if (bj_cg_target_detect(&t, mcpu, mattr, &err) != BJ_OK) cli_die_error(&err);
    char buf[8192];
    bj_cg_target_describe(&t, buf, sizeof buf);
    printf("bitjit %s\n%s", BJ_VERSION_STRING, buf);
    bj_cg_cache cache;
    if (bj_cg_cache_open(&cache, dir, &t, false, &err) != BJ_OK) cli_die_error(&err);
    printf("kernel cache: %s%s%s\n", cache.enabled ? cache.dir : "(off)", cache.warn ? " -- " : "",
           cache.warn ? cache.warn_msg : "");
    return 0;
}
