/* compiler/tools/bjopt.c -- the mlir-opt of bitjit: text IR (or a model) in, passes, text IR out.
 *
 *   bjopt [options] FILE.bjir|MODEL      ('-' reads text IR from stdin)
 *     --passes=a,b,c  --disable=a,b  --print-after-all  --print-after=NAME  --print-before=NAME
 *     --verify-each  --time-passes  -v  --mcpu=NAME  --mattr=+a,-b  --plan-tokens=N
 *     --list-passes   -o FILE (the final IR; default stdout)   --no-output (skip the final IR)
 *
 * A path that is a directory or a .safetensors file is imported as a model (weights bound, so
 * quantize-weights folds them); anything else is parsed as text IR (weights unbound).
 * Instrumentation (dumps, timings, -v statistics) goes to stderr, the final IR to stdout,
 * followed by the memory plan as '#' lines when plan-memory ran. A driver: it prints
 * errors and returns 1 on failure, 2 on bad usage. */
#include "compiler/compiler.h"
#include "frontends/model.h"

#include <stdlib.h>
#include <string.h>

typedef struct bjopt_args {
    bj_pipeline_opts po;
    bj_pipeline_stats stats;
    const char *input, *output;
    bool no_output, list;
} bjopt_args;

static int bjopt_usage(void) {
    fprintf(stderr, "usage: bjopt [--passes=a,b] [--disable=a,b] [--print-after-all] [--print-after=P] "
                    "[--print-before=P] [--verify-each] [--time-passes] [-v] [--mcpu=CPU] [--mattr=F] "
                    "[--plan-tokens=N] [--list-passes] [-o OUT] [--no-output] FILE.bjir|MODEL|-\n");
    return 2;
}

static const char *bjopt_val(const char *arg, const char *flag) {
    size_t n = strlen(flag);
    return !strncmp(arg, flag, n) && arg[n] == '=' ? arg + n + 1 : NULL;
}

static bool bjopt_flag(bjopt_args *a, const char *s) {
    const char *v;
    if (!strcmp(s, "--print-after-all")) a->po.print_after_all = true;
    else if (!strcmp(s, "--verify-each")) a->po.verify_each = true;
    else if (!strcmp(s, "--time-passes")) a->po.time_passes = true;
    else if (!strcmp(s, "-v") || !strcmp(s, "--verbose")) a->po.verbose = true;
    else if (!strcmp(s, "--list-passes")) a->list = true;
    else if (!strcmp(s, "--no-output")) a->no_output = true;
    else if ((v = bjopt_val(s, "--passes"))) a->po.passes = v;
    else if ((v = bjopt_val(s, "--disable"))) a->po.disable = v;
    else if ((v = bjopt_val(s, "--print-after"))) a->po.print_after = v;
    else if ((v = bjopt_val(s, "--print-before"))) a->po.print_before = v;
    else if ((v = bjopt_val(s, "--mcpu"))) a->po.mcpu = v;
    else if ((v = bjopt_val(s, "--mattr"))) a->po.mattr = v;
    else if ((v = bjopt_val(s, "--plan-tokens"))) a->po.plan_tokens = atoll(v);
    else return false;
    return true;
}

static int bjopt_parse_args(bjopt_args *a, int argc, char **argv) {
    bj_pipeline_opts_default(&a->po);
    a->po.out = stderr;
    a->po.stats = &a->stats;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) a->output = argv[++i];
        else if (bjopt_flag(a, argv[i])) continue;
        else if (argv[i][0] == '-' && argv[i][1]) return fprintf(stderr, "bjopt: unknown option %s\n", argv[i]), bjopt_usage();
        else if (a->input) return bjopt_usage();
        else a->input = argv[i];
    }
    return a->input || a->list ? 0 : bjopt_usage();
}

static bool bjopt_is_model(const char *path) {
    size_t n = strlen(path);
    return bj_path_is_dir(path) > 0 || (n >= 12 && !strcmp(path + n - 12, ".safetensors"));
}

static bj_status bjopt_read_stdin(char **text, size_t *len, bj_error *err) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t k; buf && (k = fread(buf + n, 1, cap - n, stdin)) > 0;) {
        n += k;
        if (n == cap) { char *b = realloc(buf, cap *= 2); if (!b) free(buf); buf = b; }
    }
    if (!buf) return BJ_FAIL(err, BJ_E_NOMEM, "stdin: out of memory");
    *text = buf;
    *len = n;
    return BJ_OK;
}

/* Text IR from a file or stdin into g. */
static bj_status bjopt_load_text(const char *path, bj_graph *g, bj_error *err) {
    char *text = NULL;
    size_t len = 0;
    BJ_TRY(strcmp(path, "-") ? bj_read_file(path, &text, &len, err) : bjopt_read_stdin(&text, &len, err));
    bj_status st = bj_ir_parse(g, text, len, err);
    free(text);
    return st == BJ_OK ? st : bj_error_prefix(err, "%s", path);
}

static bj_status bjopt_write(const bjopt_args *a, const bj_graph *g, bj_error *err) {
    if (a->no_output) return BJ_OK;
    FILE *f = a->output ? fopen(a->output, "w") : stdout;
    if (!f) return BJ_FAIL(err, BJ_E_IO, "%s: cannot open for writing", a->output);
    bj_ir_print(g, f);
    if (a->stats.planned)
        fprintf(f, "# plan-memory: tokens=%lld peak=%llu naive=%llu kv=%llu\n", (long long)a->stats.plan_tokens,
                (unsigned long long)a->stats.peak_bytes, (unsigned long long)a->stats.naive_bytes,
                (unsigned long long)a->stats.kv_bytes);
    bool bad = ferror(f) != 0;
    if (a->output) bad |= fclose(f) != 0;
    return bad ? BJ_FAIL(err, BJ_E_IO, "%s: write failed", a->output ? a->output : "stdout") : BJ_OK;
}

static int bjopt_list(void) {
    for (const char *const *p = bj_pipeline_pass_names(); *p; p++) printf("%s\n", *p);
    return 0;
}

int main(int argc, char **argv) {
    bjopt_args a = { 0 };
    int rc = bjopt_parse_args(&a, argc, argv);
    if (rc) return rc;
    if (a.list) return bjopt_list();
    bj_error err = { 0 };
    bj_model m = { 0 };
    bj_graph text_g = { 0 }, *g = &text_g;
    bool is_model = bjopt_is_model(a.input);
    bj_status st = is_model ? bj_model_load(&m, a.input, &err) : bjopt_load_text(a.input, &text_g, &err);
    if (st == BJ_OK && is_model) g = &m.graph;
    if (st == BJ_OK) st = bj_pipeline_run(g, &a.po, &err);
    if (st == BJ_OK) st = bjopt_write(&a, g, &err);
    if (st != BJ_OK) fprintf(stderr, "bjopt: error: %s\n", err.msg);
    if (is_model) bj_model_free(&m);
    else bj_graph_free(&text_g);
    return st == BJ_OK ? 0 : 1;
}
