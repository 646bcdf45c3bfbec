/* runtime/cli/cmd_bench.c -- `bitjit bench`: prefill and decode tokens/s like llama-bench, cold
 * and warm JIT compile times, the machine's streaming bandwidth and % of the roofline. */
#include "runtime/bench.h"
#include "runtime/cli/cli.h"

#include <stdlib.h>
#include <string.h>

/* ---- bitjit bench ------------------------------------------------------------------------ */
static int usage_bench(FILE *f) {
    fprintf(f,
            "usage: bitjit bench [-m PATH] [-p N] [-n N] [-t LIST] [-r N] [--engine LIST] [options]\n"
            "\n"
            "Measures prefill (pp) and decode (tg) speed like llama-bench, the JIT's cold and warm\n"
            "compile times, the machine's streaming-read bandwidth, and decode as a percentage of\n"
            "the bandwidth roofline (bytes read per token / bandwidth).\n"
            "\n"
            "  -m, --model PATH     model (default: $BITJIT_MODEL, else the bundled model)\n"
            "  -p, --n-prompt N     prompt tokens for the prefill test (default 128; 0 = skip)\n"
            "  -n, --n-gen N        tokens for the decode test (default 128; 0 = skip)\n"
            "  -t, --threads LIST   comma-separated thread counts (default: the number of CPUs)\n"
            "  -r, --repetitions N  repetitions of each test (default 3)\n"
            "      --engine LIST    jit, ref or jit,ref (default jit)\n"
            "      --bw-mib N       buffer for the bandwidth test in MiB (default 1024; 0 = skip)\n"
            "      --mcpu, --mattr, --cache-dir, --no-cache   as for bitjit run\n"
            "  -h, --help           show this help\n");
    return f == stderr ? 2 : 0;
}

typedef struct bench_opts {
    const char *model, *engines, *threads;
    int64_t p, n, bw_mib;
    int reps;
    bj_jit_options jit;
} bench_opts;

static void parse_bench(int argc, char **argv, bench_opts *o) {
    static const struct option longs[] = {
        { "model", required_argument, 0, 'm' },     { "n-prompt", required_argument, 0, 'p' },
        { "n-gen", required_argument, 0, 'n' },     { "threads", required_argument, 0, 't' },
        { "repetitions", required_argument, 0, 'r' }, { "engine", required_argument, 0, CLI_O_ENGINE },
        { "bw-mib", required_argument, 0, 'B' },    { "mcpu", required_argument, 0, CLI_O_MCPU },
        { "mattr", required_argument, 0, CLI_O_MATTR }, { "cache-dir", required_argument, 0, CLI_O_CACHE_DIR },
        { "no-cache", no_argument, 0, CLI_O_NO_CACHE }, { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:n:t:r:h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->p = cli_parse_int("-p", optarg, 0, 1 << 20); break;
        case 'n': o->n = cli_parse_int("-n", optarg, 0, 1 << 20); break;
        case 't': o->threads = optarg; break;
        case 'r': o->reps = (int)cli_parse_int("-r", optarg, 1, 1000); break;
        case 'B': o->bw_mib = cli_parse_int("--bw-mib", optarg, 0, 1 << 20); break;
        case CLI_O_ENGINE: o->engines = optarg; break;
        case CLI_O_MCPU: o->jit.mcpu = optarg; break;
        case CLI_O_MATTR: o->jit.mattr = optarg; break;
        case CLI_O_CACHE_DIR: o->jit.cache_dir = optarg; break;
        case CLI_O_NO_CACHE: o->jit.no_cache = true; break;
        default: cli_bad_option(c, argv, usage_bench);
        }
    }
    if (optind < argc) cli_die_usage("unexpected argument '%s'", argv[optind]);
    if (o->p == 0 && o->n == 0) cli_die_usage("%s", "nothing to measure: -p and -n are both 0");
}

/* Parses "1,2,4" into counts; exits on anything else. */
static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == cap) cli_die_usage("%s", "too many thread counts");
        out[n++] = (int)cli_parse_int("-t", tok, 1, 1024);
    }
    if (!n) cli_die_usage("%s", "-t needs at least one thread count");
    return n;
}

/* Cold and warm JIT creation times, measured in a fresh private cache directory. */
static void bench_compile(const bj_graph *g, const bench_opts *o, bj_jit_report *cold, bj_jit_report *warm) {
    char dir[] = "/tmp/bitjit-bench-XXXXXX";
    bj_error err = { 0 };
    if (!mkdtemp(dir)) { fprintf(stderr, "%s: cannot make a temporary cache directory\n", bj_cli_prog); exit(1); }
    bj_jit_options jo = o->jit;
    jo.cache_dir = dir;
    jo.no_cache = false;
    bj_engine *e;
    if (bj_jit_engine_create(&e, g, &jo, cold, &err) != BJ_OK) cli_die_error(&err);
    bj_engine_free(e);
    if (bj_jit_engine_create(&e, g, &jo, warm, &err) != BJ_OK) cli_die_error(&err);
    bj_engine_free(e);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "%s: warning: could not remove %s\n", bj_cli_prog, dir);
}

int bj_cmd_bench(int argc, char **argv) {
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%d", cli_default_threads());
    bench_opts o = { .engines = "jit", .threads = nthreads, .p = 128, .n = 128, .bw_mib = 1024, .reps = 3 };
    bj_jit_options_default(&o.jit);
    parse_bench(argc, argv, &o);
    o.model = cli_model_path(o.model);
    int threads[64], nt = parse_list(o.threads, threads, 64);
    bool want_jit = strstr(o.engines, "jit") != NULL, want_ref = strstr(o.engines, "ref") != NULL;
    if (!want_jit && !want_ref) cli_die_usage("unknown engine list '%s' (jit, ref)", o.engines);

    bj_error err = { 0 };
    bj_model m;
    bj_aot_lib *lib = cli_load_model(o.model, &m, &o.jit);
    bj_jit_report cold = { 0 }, warm = { 0 };
    if (want_jit) bench_compile(&m.graph, &o, &cold, &warm);
    printf("model: %s (%s)\n", o.model, m.cfg.arch);
    if (want_jit)
        printf("jit: %s, LLVM %s, %s\ncompile: cold %.0f ms (%llu kernels compiled), warm %.0f ms (%llu loaded, %llu compiled)\n",
               cold.cpu, cold.llvm, cold.variants, cold.create_ms, (unsigned long long)cold.compiled, warm.create_ms,
               (unsigned long long)warm.loaded, (unsigned long long)warm.compiled);
    uint64_t bpt = bj_bench_bytes_per_token(&m.graph, cold.packed_bytes, o.p + o.n / 2);
    printf("bytes read per token (jit, at position %lld): %.2f MB (ternary weights %.2f MB in kernel layouts)\n\n",
           (long long)(o.p + o.n / 2), (double)bpt * 1e-6, (double)cold.packed_bytes * 1e-6);
    printf("| engine | threads | test | t/s | tg GB/s | bandwidth GB/s | %% of roofline |\n");
    printf("| --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for (int k = 0; k < 2; k++) {
        const char *eng = k == 0 ? "jit" : "ref";
        if ((k == 0 && !want_jit) || (k == 1 && !want_ref)) continue;
        for (int i = 0; i < (k == 0 ? nt : 1); i++) { /* the reference engine has one thread */
            bj_engine *e;
            bj_jit_options jo = o.jit;
            jo.n_threads = threads[i];
            bj_status st = k == 0 ? bj_jit_engine_create(&e, &m.graph, &jo, NULL, &err)
                                  : bj_ref_engine_create(&e, &m.graph, &err);
            if (st != BJ_OK) cli_die_error(&err);
            bj_bench_stat pp, tg;
            if (bj_bench_engine(e, o.p, o.n, o.reps, &pp, &tg, &err) != BJ_OK) cli_die_error(&err);
            bj_engine_free(e);
            double bw = 0;
            if (o.bw_mib > 0 && bj_bench_bandwidth(threads[i], (size_t)o.bw_mib << 20, 5, &bw, &err) != BJ_OK)
                cli_die_error(&err);
            int nthr = k == 0 ? threads[i] : 1;
            if (o.p > 0) printf("| %s | %d | pp%lld | %.2f ± %.2f | | | |\n", eng, nthr, (long long)o.p, pp.mean, pp.sd);
            if (o.n > 0) {
                double gbs = k == 0 ? tg.mean * (double)bpt * 1e-9 : 0;
                if (k == 0 && bw > 0)
                    printf("| %s | %d | tg%lld | %.2f ± %.2f | %.2f | %.2f | %.0f%% |\n", eng, nthr, (long long)o.n, tg.mean,
                           tg.sd, gbs, bw, 100 * gbs / bw);
                else
                    printf("| %s | %d | tg%lld | %.2f ± %.2f | | | |\n", eng, nthr, (long long)o.n, tg.mean, tg.sd);
            }
            fflush(stdout);
        }
    }
    bj_model_free(&m);
    bj_aot_close(lib);
    return 0;
}

