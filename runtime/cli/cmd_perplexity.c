/* runtime/cli/cmd_perplexity.c -- `bitjit perplexity`: perplexity of a text file under a model,
 * over non-overlapping windows as the oracles state (runtime/perplexity.h), with a progress bar
 * showing the running value on stderr and the final figure on stdout. */
#include "runtime/cli/cli.h"
#include "runtime/cli/progress.h"
#include "runtime/perplexity.h"

#include <stdlib.h>
#include <string.h>

#define PPL_DEFAULT_CTX 256

static int usage_ppl(FILE *f) {
    fprintf(f,
            "usage: bitjit perplexity -f FILE [-m PATH] [--ctx N] [options]\n"
            "\n"
            "Perplexity of a text file: the text is tokenized with BOS prepended and cut into\n"
            "consecutive non-overlapping windows of N tokens; each window runs from an empty\n"
            "context and predicts its tokens 2..N from its own prefix;\n"
            "ppl = exp(sum of NLL / number of predicted tokens). This is the method of the\n"
            "oracle in models/kjv-bitnet-11m/oracle-ppl.json (N = 256).\n"
            "\n"
            "input:\n"
            "  -f, --file FILE         the text (required)\n"
            "  -c, --ctx-size N        window length in tokens, also the context the engine holds\n"
            "      --ctx N             (default 256, or the model's context if that is smaller)\n"
            "      --chunks N          evaluate only the first N windows (default: all)\n"
            "      --per-window        also print each window's token count and NLL sum\n"
            "\n"
            "model and execution:\n" CLI_MODEL_HELP
            "  -h, --help              show this help\n"
            "\n"
            "Output (stdout): 'perplexity: P over T predicted tokens (W windows of N, K tokens)'.\n");
    return f == stderr ? 2 : 0;
}

typedef struct ppl_opts {
    const char *file;
    int64_t ctx, chunks;
    bool per_window;
    cli_model_opts mo;
} ppl_opts;

enum { O_CHUNKS = CLI_O_CMD, O_PER_WINDOW };

static void parse_ppl(int argc, char **argv, ppl_opts *o) {
    static const struct option longs[] = {
        { "file", required_argument, 0, 'f' }, { "ctx", required_argument, 0, 'c' },
        { "chunks", required_argument, 0, O_CHUNKS }, { "per-window", no_argument, 0, O_PER_WINDOW },
        CLI_MODEL_LONGOPTS, CLI_END_LONGOPTS,
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:c:h" CLI_MODEL_SHORTOPTS, longs, NULL)) != -1) {
        if (cli_model_opt(c, optarg, &o->mo)) continue;
        switch (c) {
        case 'f': o->file = optarg; break;
        case O_CHUNKS: o->chunks = cli_parse_int("--chunks", optarg, 1, INT32_MAX); break;
        case O_PER_WINDOW: o->per_window = true; break;
        default: cli_bad_option(c, argv, usage_ppl);
        }
    }
    if (optind < argc) cli_die_usage("unexpected argument '%s'", argv[optind]);
    if (!o->file) cli_die_usage("%s", "-f FILE is required");
    if (o->mo.jit.n_ctx == 1) cli_die_usage("%s", "-c/--ctx-size expects at least 2 tokens (a window predicts 2..N)");
    o->ctx = o->mo.jit.n_ctx; /* 0: the default window */
    cli_model_opts_check(&o->mo);
}

static bool on_window(void *ud, const bj_ppl_progress *p) {
    char note[64];
    snprintf(note, sizeof note, "ppl %.4f", p->ppl);
    cli_progress_update(ud, p->done, note);
    return true;
}

int bj_cmd_perplexity(int argc, char **argv) {
    ppl_opts o = { 0 };
    cli_model_opts_init(&o.mo);
    parse_ppl(argc, argv, &o);

    bj_error err = { 0 };
    char *text;
    size_t len;
    text = cli_read_text("-f", o.file, &len);
    cli_session ses;
    cli_open(&o.mo, &ses); /* -c beyond the model's context is a usage error there */
    bj_engine *e = ses.e;
    int64_t ctx = o.ctx ? o.ctx : (e->max_seq < PPL_DEFAULT_CTX ? e->max_seq : PPL_DEFAULT_CTX);

    int32_t *ids;
    int64_t n_ids;
    if (bj_ppl_tokenize(ses.m.tok, text, len, &ids, &n_ids, &err) != BJ_OK) cli_die_error(&err);
    int64_t total = bj_ppl_n_windows(n_ids, ctx);
    if (total == 0) {
        fprintf(stderr, "%s: error: %s: %lld token%s, too few to predict any\n", bj_cli_prog, o.file, (long long)n_ids,
                cli_s(n_ids));
        free(ids);
        cli_close(&ses);
        free(text);
        return 1;
    }
    int64_t todo = o.chunks && o.chunks < total ? o.chunks : total;

    cli_progress bar;
    cli_progress_begin(&bar, "perplexity", todo);
    bj_ppl_options po = { .ctx = ctx, .max_windows = todo, .on_window = on_window, .ud = &bar };
    bj_ppl_result r;
    double t0 = cli_now_s();
    bj_status st = bj_perplexity(e, ids, n_ids, &po, &r, &err);
    double dt = cli_now_s() - t0;
    cli_progress_end(&bar);
    if (st != BJ_OK) cli_die_error(&err);

    if (o.per_window)
        for (int64_t i = 0; i < r.n_windows; i++)
            printf("window %lld: %lld predicted token%s, NLL sum %.6f\n", (long long)i, (long long)r.window_predicted[i],
                   cli_s(r.window_predicted[i]), r.window_nll[i]);
    printf("perplexity: %.4f over %lld predicted token%s (%lld window%s of %lld, %lld token%s%s)\n", r.ppl,
           (long long)r.n_predicted, cli_s(r.n_predicted), (long long)r.n_windows, cli_s(r.n_windows), (long long)ctx,
           (long long)n_ids, cli_s(n_ids), r.n_windows < total ? ", a prefix of the file" : "");
    fflush(stdout);
    if (o.mo.verbose)
        fprintf(stderr, "%s: model %s (engine %s): load %.2f s; %lld token%s evaluated in %.2f s (%.1f t/s)\n",
                bj_cli_prog, o.mo.model, e->name, ses.load_s, (long long)(r.n_predicted + r.n_windows), cli_s(r.n_predicted + r.n_windows), dt,
                (double)(r.n_predicted + r.n_windows) / (dt > 1e-9 ? dt : 1e-9));
    bj_ppl_result_free(&r);
    free(ids);
    free(text);
    cli_close(&ses);
    return 0;
}
