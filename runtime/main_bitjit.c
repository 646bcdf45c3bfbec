/* runtime/main_bitjit.c -- the `bitjit` driver. The only place (with bitjitc) that prints
 * and exits: library calls return a status and an error, which we print here.
 *
 *   bitjit run [options]     generate text (see `bitjit run --help`)
 *   bitjit --help | --version */
#include "runtime/runtime.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef BJ_DEFAULT_MODEL
#define BJ_DEFAULT_MODEL "models/kjv-bitnet-11m/packed"
#endif
#define BJ_DEFAULT_PROMPT "In the beginning"

static const char *prog = "bitjit";

static int usage_main(FILE *f) {
    fprintf(f,
            "usage: bitjit COMMAND [options]\n"
            "\n"
            "bitjit compiles BitNet language models for this CPU and runs them.\n"
            "\n"
            "commands:\n"
            "  run        generate text from a model (bitjit run --help)\n"
            "\n"
            "options:\n"
            "  -h, --help     show this help\n"
            "  --version      print the version\n");
    return f == stderr ? 2 : 0;
}

static int usage_run(FILE *f) {
    fprintf(f,
            "usage: bitjit run [-m PATH] [-p TEXT | -f FILE] [-n N] [options]\n"
            "\n"
            "Generates text from a BitNet model, streaming it to stdout.\n"
            "\n"
            "model and input:\n"
            "  -m, --model PATH        model directory or .safetensors file\n"
            "                          (default: $BITJIT_MODEL, else the bundled %s)\n"
            "  -p, --prompt TEXT       prompt (default: \"%s\")\n"
            "  -f, --file FILE         read the prompt from FILE\n"
            "  -n, --n-predict N       tokens to generate (default 128; stops early at EOS)\n"
            "      --ids               print only the generated token ids, space-separated, on one line\n"
            "      --no-bos            do not prepend the BOS token\n"
            "\n"
            "sampling:\n"
            "      --temp T            temperature; 0 = greedy (default 0.8)\n"
            "      --top-k K           keep the K most likely tokens; 0 = off (default 40)\n"
            "      --top-p P           keep the smallest set with probability mass >= P (default 0.95)\n"
            "      --min-p P           drop tokens less likely than P x the most likely (default 0.05)\n"
            "      --repeat-penalty R  penalise recently seen tokens; 1 = off (default 1.0)\n"
            "      --repeat-last-n N   how many recent tokens the penalty looks at (default 64)\n"
            "  -s, --seed S            random seed (default: from the clock)\n"
            "\n"
            "execution:\n"
            "  -t, --threads N         worker threads (default 1; the reference engine uses one)\n"
            "      --engine NAME       ref: the plain C reference executor (default)\n"
            "  -v, --verbose           print load and speed figures on stderr\n"
            "  -h, --help              show this help\n",
            BJ_DEFAULT_MODEL, BJ_DEFAULT_PROMPT);
    return f == stderr ? 2 : 0;
}

static void die_error(const bj_error *err) {
    fprintf(stderr, "%s: error: %s\n", prog, err->msg);
    exit(1);
}

static void die_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "%s run: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see '%s run --help')\n", prog);
    exit(2);
}

static long long parse_int(const char *opt, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "%s run: %s expects an integer in [%lld, %lld], got '%s'\n", prog, opt, lo, hi, s);
        exit(2);
    }
    return v;
}

static float parse_float(const char *opt, const char *s, float lo, float hi) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s run: %s expects a number in [%g, %g], got '%s'\n", prog, opt, lo, hi, s);
        exit(2);
    }
    return v;
}

typedef struct run_opts {
    const char *model, *prompt, *prompt_file, *engine;
    int64_t n_predict;
    int threads;
    bool ids, no_bos, verbose;
    bj_sampler_params sp;
} run_opts;

enum { O_IDS = 256, O_NO_BOS, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_RPEN, O_RLAST, O_ENGINE };

static void parse_run(int argc, char **argv, run_opts *o) {
    static const struct option longs[] = {
        { "model", required_argument, 0, 'm' },       { "prompt", required_argument, 0, 'p' },
        { "file", required_argument, 0, 'f' },        { "n-predict", required_argument, 0, 'n' },
        { "threads", required_argument, 0, 't' },     { "seed", required_argument, 0, 's' },
        { "ids", no_argument, 0, O_IDS },             { "no-bos", no_argument, 0, O_NO_BOS },
        { "temp", required_argument, 0, O_TEMP },     { "top-k", required_argument, 0, O_TOPK },
        { "top-p", required_argument, 0, O_TOPP },    { "min-p", required_argument, 0, O_MINP },
        { "repeat-penalty", required_argument, 0, O_RPEN },
        { "repeat-last-n", required_argument, 0, O_RLAST },
        { "engine", required_argument, 0, O_ENGINE }, { "verbose", no_argument, 0, 'v' },
        { "help", no_argument, 0, 'h' },              { 0, 0, 0, 0 },
    };
    bool seeded = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:f:n:t:s:vh", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'n': o->n_predict = parse_int("-n", optarg, 0, INT32_MAX); break;
        case 't': o->threads = (int)parse_int("-t", optarg, 1, 1024); break;
        case 's': o->sp.seed = (uint64_t)parse_int("--seed", optarg, 0, LLONG_MAX); seeded = true; break;
        case O_IDS: o->ids = true; break;
        case O_NO_BOS: o->no_bos = true; break;
        case O_TEMP: o->sp.temp = parse_float("--temp", optarg, 0, 100); break;
        case O_TOPK: o->sp.top_k = (int32_t)parse_int("--top-k", optarg, 0, INT32_MAX); break;
        case O_TOPP: o->sp.top_p = parse_float("--top-p", optarg, 0, 1); break;
        case O_MINP: o->sp.min_p = parse_float("--min-p", optarg, 0, 1); break;
        case O_RPEN: o->sp.repeat_penalty = parse_float("--repeat-penalty", optarg, 0.01f, 100); break;
        case O_RLAST: o->sp.repeat_last_n = (int32_t)parse_int("--repeat-last-n", optarg, 0, 1 << 20); break;
        case O_ENGINE: o->engine = optarg; break;
        case 'v': o->verbose = true; break;
        case 'h': exit(usage_run(stdout));
        case ':': die_usage("option '%s' needs a value", argv[optind - 1]); break;
        default: die_usage("unknown option '%s'", argv[optind - 1]); break;
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (o->prompt && o->prompt_file) die_usage("%s", "give either -p or -f, not both");
    if (strcmp(o->engine, "ref") != 0) die_usage("unknown engine '%s' (available: ref)", o->engine);
    if (!seeded) o->sp.seed = (uint64_t)time(NULL);
}

/* Streams generated text: holds back bytes of a UTF-8 character split across tokens. */
typedef struct printer {
    const bj_tokenizer *tok;
    bool ids;
    int64_t count;
    char pend[64];
    size_t n_pend;
} printer;

static bool on_token(void *ud, int32_t tok) {
    printer *p = ud;
    if (p->ids) {
        printf("%s%d", p->count++ ? " " : "", tok);
        return true;
    }
    p->count++;
    if (bj_tok_is_special(p->tok, tok)) return true;
    size_t len;
    const char *s = bj_tok_piece(p->tok, tok, &len);
    for (size_t i = 0; s && i < len; i++) {
        if (p->n_pend == sizeof p->pend) { fwrite(p->pend, 1, p->n_pend, stdout); p->n_pend = 0; }
        p->pend[p->n_pend++] = s[i];
    }
    size_t done = bj_utf8_complete_prefix(p->pend, p->n_pend);
    fwrite(p->pend, 1, done, stdout);
    memmove(p->pend, p->pend + done, p->n_pend - done);
    p->n_pend -= done;
    fflush(stdout);
    return true;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *read_prompt(const run_opts *o, size_t *len) {
    if (!o->prompt_file) {
        const char *p = o->prompt ? o->prompt : BJ_DEFAULT_PROMPT;
        *len = strlen(p);
        return strdup(p);
    }
    char *buf;
    bj_error err = { 0 };
    if (bj_read_file(o->prompt_file, &buf, len, &err) != BJ_OK) die_error(&err);
    return buf;
}

static int cmd_run(int argc, char **argv) {
    run_opts o = { .n_predict = 128, .threads = 1, .engine = "ref" };
    bj_sampler_params_default(&o.sp);
    parse_run(argc, argv, &o);
    if (!o.model) o.model = getenv("BITJIT_MODEL") ? getenv("BITJIT_MODEL") : BJ_DEFAULT_MODEL;

    bj_error err = { 0 };
    double t0 = now_s();
    bj_model m;
    if (bj_model_load(&m, o.model, &err) != BJ_OK) die_error(&err);
    bj_engine *e;
    if (bj_ref_engine_create(&e, &m.graph, &err) != BJ_OK) die_error(&err);
    double t1 = now_s();

    size_t plen, n_ids;
    char *text = read_prompt(&o, &plen);
    int32_t *ids;
    bool bos = !o.no_bos && bj_tok_add_bos(m.tok);
    if (bj_tok_encode(m.tok, text, plen, bos, true, &ids, &n_ids, &err) != BJ_OK) die_error(&err);
    if (n_ids == 0) {
        fprintf(stderr, "%s: error: the prompt is empty and the model adds no BOS token\n", prog);
        return 1;
    }
    if (!o.ids) { fwrite(text, 1, plen, stdout); fflush(stdout); }

    bj_sampler s;
    if (bj_sampler_init(&s, &o.sp, e->n_vocab, &err) != BJ_OK) die_error(&err);
    printer pr = { .tok = m.tok, .ids = o.ids };
    int64_t n_gen = 0;
    double t2 = now_s();
    bj_status st = bj_generate(e, &s, ids, (int64_t)n_ids, o.n_predict, bj_tok_eos(m.tok), on_token, &pr,
                               NULL, &n_gen, &err);
    double t3 = now_s();
    fwrite(pr.pend, 1, pr.n_pend, stdout);
    printf("\n");
    fflush(stdout);
    if (st != BJ_OK) die_error(&err);
    if (o.verbose)
        fprintf(stderr, "%s: model %s (engine %s): load %.2f s; %zu prompt + %lld generated tokens in %.2f s (%.2f t/s)\n",
                prog, o.model, e->name, t1 - t0, n_ids, (long long)n_gen, t3 - t2,
                (double)n_gen / fmax(t3 - t2, 1e-9));
    bj_sampler_free(&s);
    free(ids);
    free(text);
    bj_engine_free(e);
    bj_model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage_main(stderr);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) return usage_main(stdout);
    if (!strcmp(cmd, "--version")) { printf("bitjit %s\n", BJ_VERSION_STRING); return 0; }
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
    usage_main(stderr);
    return 2;
}
