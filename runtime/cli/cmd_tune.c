/* runtime/cli/cmd_tune.c -- `bitjit tune`: runs the autotuner (runtime/tune.h) over a model's
 * matmul shapes on this CPU, writes the tuning database (codegen/cg_tunedb.h) that later JIT
 * engines and bitjitc compiles read, and prints per shape and T-class the default kernel, the
 * tuned one and the speedup. Progress goes to stderr (progress.h). */
#include "runtime/cli/cli.h"
#include "runtime/cli/progress.h"
#include "runtime/tune.h"

#include <stdlib.h>
#include <string.h>

static int usage_tune(FILE *f) {
    fprintf(f,
            "usage: bitjit tune [-m MODEL] [--budget SECONDS] [-t THREADS] [--db PATH] [-q]\n"
            "\n"
            "For each distinct matmul shape of the model (M x K, weight type), times the kernel\n"
            "variants, ISA paths, tiles (tile_m, tile_t, unroll) and weight prefetch distances this\n"
            "CPU allows, for decode (1 token a call) and prefill (-T tokens a call), with random\n"
            "weights of that shape split over the threads as the engine splits them. Every\n"
            "candidate's output is checked against the C reference before it may win. The winners\n"
            "go to the tuning database, which every later `bitjit run/bench` and `bitjitc` compile\n"
            "for this CPU reads (--no-tune-db there ignores it). Outputs do not change: every\n"
            "kernel is exact.\n"
            "\n"
            "  -m, --model PATH      model (default: $BITJIT_MODEL, else the bundled model)\n"
            "      --budget SECONDS  wall-clock limit for the search (default 60); shapes not reached\n"
            "                        keep the cost rule\n"
            "  -t, --threads N       threads the kernels are timed on (default: the number of CPUs)\n"
            "  -T, --prefill-tokens N  tokens a prefill call (default 64)\n"
            "      --db PATH         database file (default: tune-<cpu>-<hash>.txt in the kernel cache\n"
            "                        directory); entries of other shapes in it are kept\n"
            "      --min-gain F      fraction a candidate must beat the default by (default 0.03)\n"
            "      --dry-run         measure and print, write nothing\n"
            "      --mcpu, --mattr, --cache-dir, --no-cache   as for bitjit run\n"
            "  -q, --quiet           no progress output\n"
            "  -h, --help            show this help\n");
    return f == stderr ? 2 : 0;
}

enum { O_BUDGET = CLI_O_CMD, O_DB, O_MIN_GAIN, O_DRY };

static void on_tune_progress(void *ud, int64_t done, int64_t total, const char *note) {
    (void)total; /* an estimate: the budget is what ends the search, so no bar */
    char buf[96];
    snprintf(buf, sizeof buf, "%lld measured; %s", (long long)done, note);
    cli_progress_update(ud, done, buf);
}

static void print_results(const bj_tune_report *rep) {
    printf("| shape (M x K) | matmuls | T | default | ns | tuned | ns | speedup | tried/wrong/refused |\n");
    printf("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | --- |\n");
    for (size_t i = 0; i < rep->n; i++) {
        const bj_tune_result *r = &rep->r[i];
        char def[96], best[96];
        bj_tune_desc_str(&r->def, def, sizeof def);
        bj_tune_desc_str(&r->best, best, sizeof best);
        if (!r->measured) {
            printf("| %ux%u %s | %d | %lld | %s | | (budget spent) | | | |\n", r->m, r->k,
                   r->wtype == BJ_CG_W_BINARY ? "binary" : "ternary", r->count, (long long)r->T, def);
            continue;
        }
        bool same = !memcmp(&r->def, &r->best, sizeof r->def);
        printf("| %ux%u %s | %d | %lld | %s | %.0f | %s | %.0f | %.2fx | %d/%d/%d |\n", r->m, r->k,
               r->wtype == BJ_CG_W_BINARY ? "binary" : "ternary", r->count, (long long)r->T, def, r->def_ns,
               same ? "(default)" : best, r->best_ns, r->def_ns / r->best_ns, r->tried, r->rejected, r->failed);
        if (r->tclass == BJ_CG_TC_PREFILL && r->fastest_ns > 0 && r->fastest_ns < r->best_ns &&
            r->fastest.variant != r->best.variant) {
            char fast[96];
            bj_tune_desc_str(&r->fastest, fast, sizeof fast);
            printf("|  | | | (faster, not usable: %s at %.0f ns packs weights differently from the decode kernel) "
                   "| | | | | |\n", fast, r->fastest_ns);
        }
    }
}

int bj_cmd_tune(int argc, char **argv) {
    static const struct option longs[] = {
        { "model", required_argument, 0, 'm' },      { "threads", required_argument, 0, 't' },
        { "prefill-tokens", required_argument, 0, 'T' }, { "budget", required_argument, 0, O_BUDGET },
        { "db", required_argument, 0, O_DB },        { "min-gain", required_argument, 0, O_MIN_GAIN },
        { "dry-run", no_argument, 0, O_DRY },        { "mcpu", required_argument, 0, CLI_O_MCPU },
        { "mattr", required_argument, 0, CLI_O_MATTR }, { "cache-dir", required_argument, 0, CLI_O_CACHE_DIR },
        { "no-cache", no_argument, 0, CLI_O_NO_CACHE }, { "quiet", no_argument, 0, 'q' },
        { "help", no_argument, 0, 'h' },             { 0, 0, 0, 0 },
    };
    bj_tune_opts o;
    bj_tune_opts_default(&o);
    o.n_threads = cli_default_threads();
    const char *model = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:t:T:qh", longs, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': o.n_threads = (int)cli_parse_int("-t", optarg, 1, 1024); break;
        case 'T': o.t_prefill = (int)cli_parse_int("-T", optarg, 2, 4096); break;
        case 'q': cli_progress_enabled = false; break;
        case O_BUDGET: o.budget_s = cli_parse_float("--budget", optarg, 0.01f, 1e7f); break;
        case O_DB: o.db_path = optarg; break;
        case O_MIN_GAIN: o.min_gain = cli_parse_float("--min-gain", optarg, 0, 0.9f); break;
        case O_DRY: o.dry_run = true; break;
        case CLI_O_MCPU: o.mcpu = optarg; break;
        case CLI_O_MATTR: o.mattr = optarg; break;
        case CLI_O_CACHE_DIR: o.cache_dir = optarg; break;
        case CLI_O_NO_CACHE: o.no_cache = true; break;
        default: cli_bad_option(c, argv, usage_tune);
        }
    }
    if (optind < argc) cli_die_usage("unexpected argument '%s'", argv[optind]);
    cli_check_target(o.mcpu, o.mattr);
    model = cli_model_path(model);

    bj_error err = { 0 };
    bj_model m;
    bj_jit_options jo;
    bj_jit_options_default(&jo);
    bj_aot_lib *lib = cli_load_model(model, &m, &jo);
    if (lib) cli_die_usage("%s", "tune takes a model, not a bitjitc library (tune first, then run bitjitc)");
    cli_progress bar;
    cli_progress_begin(&bar, "tuning", 0);
    o.progress = on_tune_progress;
    o.progress_ud = &bar;
    bj_tune_report rep;
    bj_status st = bj_tune_graph(&m.graph, &o, &rep, &err);
    cli_progress_end(&bar);
    if (st != BJ_OK) cli_die_error(&err);
    if (rep.db_warning[0] && cli_progress_enabled)
        fprintf(stderr, "%s: warning: %s (replaced)\n", bj_cli_prog, rep.db_warning);
    printf("model: %s (%s)\ncpu: %s, %d thread%s, prefill T = %d, budget %.0f s\n\n", model, m.cfg.arch, rep.cpu,
           o.n_threads, cli_s(o.n_threads), o.t_prefill, o.budget_s);
    print_results(&rep);
    printf("\n%s in %.1f s%s; %lld entr%s %s %s\n", rep.budget_hit ? "stopped on the budget" : "done",
           rep.elapsed_s, rep.budget_hit ? " (shapes not reached keep the cost rule)" : "", (long long)rep.n_written,
           rep.n_written == 1 ? "y" : "ies", o.dry_run ? "(dry run: not written to)" : "written to", rep.db_path);
    bj_tune_report_free(&rep);
    bj_model_free(&m);
    return 0;
}
