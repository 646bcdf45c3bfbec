/* runtime/cli/cmd_run.c -- `bitjit run`: generate text from a model, streaming it to stdout. */
#include "runtime/cli/cli.h"
#include "runtime/bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int usage_run(FILE *f) {
    fprintf(f,
            "usage: bitjit run [-m PATH] [-p TEXT | -f FILE] [-n N] [options]\n"
            "\n"
            "Generates text from a BitNet model, streaming it to stdout.\n"
            "\n"
            "model and input:\n"
            "  -p, --prompt TEXT       prompt (default: \"" BJ_DEFAULT_PROMPT "\")\n"
            "  -f, --file FILE         read the prompt from FILE (- or /dev/stdin: from stdin)\n"
            "  -n, --n-predict N       tokens to generate (default 128; stops early at EOS)\n"
            "      --ids               print only the generated token ids, space-separated, on one line\n"
            "      --no-bos            do not prepend the BOS token\n"
            "      --profile           after the run, print on stderr where the forward time went: per op kind,\n"
            "                          per matmul shape (with the GB/s its weights were read at), the head\n"
            "\n"
            "sampling:\n" CLI_SAMPLING_HELP
            "\n"
            "model and execution:\n" CLI_MODEL_HELP
            "  -h, --help              show this help\n");
    return f == stderr ? 2 : 0;
}

typedef struct run_opts {
    const char *prompt, *prompt_file;
    int64_t n_predict;
    bool ids, no_bos, profile;
    cli_sampling samp;
    cli_model_opts mo;
} run_opts;

enum { O_IDS = CLI_O_CMD, O_NO_BOS, O_PROFILE };

static void parse_run(int argc, char **argv, run_opts *o) {
    static const struct option longs[] = {
        { "prompt", required_argument, 0, 'p' }, { "file", required_argument, 0, 'f' },
        { "n-predict", required_argument, 0, 'n' }, { "ids", no_argument, 0, O_IDS },
        { "no-bos", no_argument, 0, O_NO_BOS }, { "profile", no_argument, 0, O_PROFILE }, CLI_SAMPLING_LONGOPTS, CLI_MODEL_LONGOPTS, CLI_END_LONGOPTS,
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":p:f:n:h" CLI_MODEL_SHORTOPTS CLI_SAMPLING_SHORTOPTS, longs, NULL)) != -1) {
        if (cli_model_opt(c, optarg, &o->mo) || cli_sampling_opt(c, optarg, &o->samp)) continue;
        switch (c) {
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'n': o->n_predict = cli_parse_int("-n", optarg, 0, INT32_MAX); break;
        case O_IDS: o->ids = true; break;
        case O_NO_BOS: o->no_bos = true; break;
        case O_PROFILE: o->profile = o->mo.jit.profile = true; break;
        default: cli_bad_option(c, argv, usage_run);
        }
    }
    if (optind < argc) cli_die_usage("unexpected argument '%s'", argv[optind]);
    if (o->prompt && o->prompt_file) cli_die_usage("%s", "give either -p or -f, not both");
    if (o->profile && o->mo.engine && strcmp(o->mo.engine, "jit"))
        cli_die_usage("--profile needs the JIT engine (not --engine %s)", o->mo.engine);
    cli_model_opts_check(&o->mo);
    cli_sampling_finish(&o->samp);
}

static char *read_prompt(const run_opts *o, size_t *len) {
    if (!o->prompt_file) {
        const char *p = o->prompt ? o->prompt : BJ_DEFAULT_PROMPT;
        *len = strlen(p);
        return strdup(p);
    }
    return cli_read_text("-f", o->prompt_file, len);
}

/* --profile: the engine's step times, largest first, and what they add up to. */
static void print_profile(const bj_engine *e) {
    bj_jit_profile_row rows[64];
    bj_jit_profile_sum sum;
    int n;
    bj_error err = { 0 };
    if (bj_jit_profile(e, rows, 64, &n, &sum, &err) != BJ_OK) { /* an AOT library without the JIT's */
        fprintf(stderr, "%s: no profile: %s\n", bj_cli_prog, err.msg);
        return;
    }
    double steps_ms = 0;
    for (int i = 0; i < n; i++) steps_ms += rows[i].ms;
    fprintf(stderr, "%s: profile of %lld forward%s (%lld token%s) in %.1f ms:\n", bj_cli_prog, (long long)sum.forwards,
            cli_s(sum.forwards), (long long)sum.tokens, cli_s(sum.tokens), sum.forward_ms);
    fprintf(stderr, "  %-26s %8s %10s %6s %9s %9s\n", "step", "steps", "ms", "%", "us/step", "GB/s");
    for (int i = 0; i < n; i++) {
        char gbs[16] = "";
        if (rows[i].bytes && rows[i].ms > 0) snprintf(gbs, sizeof gbs, "%.1f", (double)rows[i].bytes / (rows[i].ms * 1e6));
        fprintf(stderr, "  %-26s %8lld %10.2f %5.1f%% %9.1f %9s\n", rows[i].what, (long long)rows[i].steps, rows[i].ms,
                100 * rows[i].ms / fmax(sum.forward_ms, 1e-9), 1e3 * rows[i].ms / (double)rows[i].steps, gbs);
    }
    fprintf(stderr, "  %-26s %8s %10.2f %5.1f%%\n", "(between steps)", "", sum.forward_ms - steps_ms,
            100 * (sum.forward_ms - steps_ms) / fmax(sum.forward_ms, 1e-9));
}

int bj_cmd_run(int argc, char **argv) {
    run_opts o = { .n_predict = 128 };
    cli_sampling_init(&o.samp);
    cli_model_opts_init(&o.mo);
    parse_run(argc, argv, &o);

    bj_error err = { 0 };
    size_t plen, n_ids;
    char *text = read_prompt(&o, &plen); /* first: stdin is read before the model loads */
    cli_session ses;
    cli_open(&o.mo, &ses);
    bj_engine *e = ses.e;

    int32_t *ids;
    bool bos = !o.no_bos && bj_tok_add_bos(ses.m.tok);
    if (bj_tok_encode(ses.m.tok, text, plen, bos, true, &ids, &n_ids, &err) != BJ_OK) cli_die_error(&err);
    if (n_ids == 0) {
        fprintf(stderr, "%s: error: the prompt is empty and the model adds no BOS token\n", bj_cli_prog);
        free(ids);
        free(text);
        cli_close(&ses);
        return 1;
    }
    if ((int64_t)n_ids > e->max_seq) { /* before anything is printed */
        fprintf(stderr, "%s: error: prompt of %zu tokens does not fit the context of %lld position%s%s%s%s\n",
                bj_cli_prog, n_ids, (long long)e->max_seq, cli_s(e->max_seq), o.prompt_file ? " (" : "",
                o.prompt_file ? o.prompt_file : "", o.prompt_file ? ")" : "");
        free(ids);
        free(text);
        cli_close(&ses);
        return 1;
    }
    if (!o.ids) { fwrite(text, 1, plen, stdout); fflush(stdout); }

    bj_sampler s;
    if (bj_sampler_init(&s, &o.samp.sp, e->n_vocab, &err) != BJ_OK) cli_die_error(&err);
    cli_printer pr = { .tok = ses.m.tok, .ids = o.ids };
    int64_t n_gen = 0;
    double t2 = cli_now_s();
    bj_status st = bj_generate(e, &s, ids, (int64_t)n_ids, o.n_predict, bj_tok_eos(ses.m.tok), cli_on_token, &pr,
                               NULL, &n_gen, &err);
    double t3 = cli_now_s();
    cli_printer_flush(&pr);
    printf("\n");
    fflush(stdout);
    if (st != BJ_OK) cli_die_error(&err);
    if (n_gen < o.n_predict && e->n_past >= e->max_seq)
        fprintf(stderr, "%s: stopped at the context limit of %lld positions (%zu prompt + %lld generated token%s; "
                        "-n %lld asked for more)\n", bj_cli_prog, (long long)e->max_seq, n_ids, (long long)n_gen,
                cli_s(n_gen), (long long)o.n_predict);
    if (o.mo.verbose)
        fprintf(stderr, "%s: model %s (engine %s): load %.2f s; %zu prompt + %lld generated token%s in %.2f s (%.2f t/s)\n",
                bj_cli_prog, o.mo.model, e->name, ses.load_s, n_ids, (long long)n_gen, cli_s(n_gen), t3 - t2,
                (double)n_gen / fmax(t3 - t2, 1e-9));
    if (o.mo.verbose) {
        bj_bench_mem mem;
        bj_bench_mem_read(&mem);
        uint64_t need = bj_bench_resident_need(&ses.m.graph, ses.packed_bytes, o.mo.jit.head_q8, e->n_past, o.mo.jit.kv);
        fprintf(stderr, "%s: peak RSS %.1f MB = %.3fx the weights + KV cache it must keep (%.1f MB: low-bit weights %.1f MB "
                        "as the engine holds them, head %s, norms, KV of %lld positions)\n",
                bj_cli_prog, (double)mem.peak * 1e-6, need ? (double)mem.peak / (double)need : 0, (double)need * 1e-6,
                (double)ses.packed_bytes * 1e-6, o.mo.jit.head_q8 ? "8-bit" : "as stored", (long long)e->n_past);
    }
    if (o.profile) print_profile(e);
    bj_sampler_free(&s);
    free(ids);
    free(text);
    cli_close(&ses);
    return 0;
}
