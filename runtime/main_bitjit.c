/* runtime/main_bitjit.c -- the `bitjit` driver. The only place (with bitjitc) that prints
 * and exits: library calls return a status and an error, which we print here.
 *
 *   bitjit run [options]     generate text (see `bitjit run --help`)
 *   bitjit info              CPU, features, LLVM version, cache directory
 *   bitjit --help | --version */
#include "codegen/codegen.h"
#include "runtime/aot_load.h"
#include "runtime/bench.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
            "  bench      prefill/decode tokens/s, compile times, %% of the bandwidth roofline\n"
            "  info       show the detected CPU, its features, the LLVM version and cache path\n"
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
            "  -m, --model PATH        model directory, .safetensors file or bitjitc library (.so)\n"
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
            "  -t, --threads N         worker threads (default: the number of CPUs)\n"
            "      --engine NAME       jit: kernels generated for this CPU (default);\n"
            "                          ref: the plain C reference executor (one thread)\n"
            "      --mcpu NAME         generate code for CPU NAME instead of the host (e.g. x86-64)\n"
            "      --mattr LIST        add/remove CPU features, e.g. +avx2,-avx512f\n"
            "      --cache-dir DIR     kernel cache directory (default $XDG_CACHE_HOME/bitjit\n"
            "                          or ~/.cache/bitjit)\n"
            "      --no-cache          neither read nor write the kernel cache\n"
            "  -v, --verbose           print load, compile and speed figures on stderr\n"
            "  -q, --quiet             no progress output\n"
            "  -h, --help              show this help\n",
            BJ_DEFAULT_MODEL, BJ_DEFAULT_PROMPT);
    return f == stderr ? 2 : 0;
}

static void die_error(const bj_error *err) {
    fprintf(stderr, "%s: error: %s\n", prog, err->msg);
    exit(1);
}

static const char *subcmd = "run";

static void die_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "%s %s: ", prog, subcmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see '%s %s --help')\n", prog, subcmd);
    exit(2);
}

static long long parse_int(const char *opt, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "%s %s: %s expects an integer in [%lld, %lld], got '%s'\n", prog, subcmd, opt, lo, hi, s);
        exit(2);
    }
    return v;
}

static float parse_float(const char *opt, const char *s, float lo, float hi) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s %s: %s expects a number in [%g, %g], got '%s'\n", prog, subcmd, opt, lo, hi, s);
        exit(2);
    }
    return v;
}

typedef struct run_opts {
    const char *model, *prompt, *prompt_file, *engine;
    int64_t n_predict;
    bool ids, no_bos, verbose, quiet;
    bj_sampler_params sp;
    bj_jit_options jit;
} run_opts;

enum { O_IDS = 256, O_NO_BOS, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_RPEN, O_RLAST, O_ENGINE, O_MCPU, O_MATTR,
       O_CACHE_DIR, O_NO_CACHE };

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
        { "quiet", no_argument, 0, 'q' },             { "mcpu", required_argument, 0, O_MCPU },
        { "mattr", required_argument, 0, O_MATTR },   { "cache-dir", required_argument, 0, O_CACHE_DIR },
        { "no-cache", no_argument, 0, O_NO_CACHE },   { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    bool seeded = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:f:n:t:s:vqh", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'n': o->n_predict = parse_int("-n", optarg, 0, INT32_MAX); break;
        case 't': o->jit.n_threads = (int)parse_int("-t", optarg, 1, 1024); break;
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
        case 'q': o->quiet = true; break;
        case O_MCPU: o->jit.mcpu = optarg; break;
        case O_MATTR: o->jit.mattr = optarg; break;
        case O_CACHE_DIR: o->jit.cache_dir = optarg; break;
        case O_NO_CACHE: o->jit.no_cache = true; break;
        case 'h': exit(usage_run(stdout));
        case ':': die_usage("option '%s' needs a value", argv[optind - 1]); break;
        default: die_usage("unknown option '%s'", argv[optind - 1]); break;
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (o->prompt && o->prompt_file) die_usage("%s", "give either -p or -f, not both");
    if (strcmp(o->engine, "ref") != 0 && strcmp(o->engine, "jit") != 0)
        die_usage("unknown engine '%s' (available: jit, ref)", o->engine);
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

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* Progress of kernel preparation on stderr, for terminals only (a log stays clean). */
static void on_progress(void *ud, int64_t done, int64_t total) {
    (void)ud;
    fprintf(stderr, "\r%s: preparing kernels %lld/%lld", prog, (long long)done, (long long)total);
    if (done == total) fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

static bj_engine *make_engine(run_opts *o, const bj_graph *g) {
    bj_error err = { 0 };
    bj_engine *e;
    if (!strcmp(o->engine, "ref")) {
        if (bj_ref_engine_create(&e, g, &err) != BJ_OK) die_error(&err);
        return e;
    }
    if (!o->quiet && isatty(2)) o->jit.progress = on_progress;
    bj_jit_report r;
    if (bj_jit_engine_create(&e, g, &o->jit, &r, &err) != BJ_OK) die_error(&err);
    if (r.cache_warning[0] && !o->quiet) fprintf(stderr, "%s: warning: kernel cache: %s\n", prog, r.cache_warning);
    if (o->verbose)
        fprintf(stderr, "%s: jit for %s (LLVM %s): %lld matmuls, kernels compiled %llu, loaded from cache %llu"
                        " (%.0f ms compiling, %.0f ms total); %s; cache %s; %d threads\n",
                prog, r.cpu, r.llvm, (long long)r.n_matmuls, (unsigned long long)r.compiled,
                (unsigned long long)r.loaded, r.compile_ms, r.create_ms, r.variants, r.cache_dir, o->jit.n_threads);
    return e;
}

/* A model directory or file (frontends), or an ahead-of-time library written by bitjitc,
 * whose kernels the JIT engine then takes from the library instead of compiling them. */
static bj_aot_lib *load_model(const char *path, bj_model *m, bj_jit_options *jo) {
    bj_error err = { 0 };
    bj_aot_lib *lib = NULL;
    if (!bj_aot_is_library(path)) {
        if (bj_model_load(m, path, &err) != BJ_OK) die_error(&err);
        return NULL;
    }
    if (jo->mcpu || jo->mattr) die_usage("%s", "--mcpu/--mattr do not apply to a bitjitc library: it is built for its CPU");
    if (bj_aot_load(&lib, m, path, &err) != BJ_OK) die_error(&err);
    bj_aot_jit_options(lib, jo);
    return lib;
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
    run_opts o = { .n_predict = 128, .engine = "jit" };
    bj_sampler_params_default(&o.sp);
    bj_jit_options_default(&o.jit);
    o.jit.n_threads = default_threads();
    parse_run(argc, argv, &o);
    if (!o.model) o.model = getenv("BITJIT_MODEL") ? getenv("BITJIT_MODEL") : BJ_DEFAULT_MODEL;

    bj_error err = { 0 };
    double t0 = now_s();
    bj_model m;
    bj_aot_lib *lib = load_model(o.model, &m, &o.jit);
    bj_engine *e = make_engine(&o, &m.graph);
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
    bj_aot_close(lib);
    return 0;
}

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
        { "repetitions", required_argument, 0, 'r' }, { "engine", required_argument, 0, O_ENGINE },
        { "bw-mib", required_argument, 0, 'B' },    { "mcpu", required_argument, 0, O_MCPU },
        { "mattr", required_argument, 0, O_MATTR }, { "cache-dir", required_argument, 0, O_CACHE_DIR },
        { "no-cache", no_argument, 0, O_NO_CACHE }, { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:n:t:r:h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->p = parse_int("-p", optarg, 0, 1 << 20); break;
        case 'n': o->n = parse_int("-n", optarg, 0, 1 << 20); break;
        case 't': o->threads = optarg; break;
        case 'r': o->reps = (int)parse_int("-r", optarg, 1, 1000); break;
        case 'B': o->bw_mib = parse_int("--bw-mib", optarg, 0, 1 << 20); break;
        case O_ENGINE: o->engines = optarg; break;
        case O_MCPU: o->jit.mcpu = optarg; break;
        case O_MATTR: o->jit.mattr = optarg; break;
        case O_CACHE_DIR: o->jit.cache_dir = optarg; break;
        case O_NO_CACHE: o->jit.no_cache = true; break;
        case 'h': exit(usage_bench(stdout));
        case ':': die_usage("option '%s' needs a value", argv[optind - 1]); break;
        default: die_usage("unknown option '%s'", argv[optind - 1]); break;
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (o->p == 0 && o->n == 0) die_usage("%s", "nothing to measure: -p and -n are both 0");
}

/* Parses "1,2,4" into counts; exits on anything else. */
static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == cap) die_usage("%s", "too many thread counts");
        out[n++] = (int)parse_int("-t", tok, 1, 1024);
    }
    if (!n) die_usage("%s", "-t needs at least one thread count");
    return n;
}

/* Cold and warm JIT creation times, measured in a fresh private cache directory. */
static void bench_compile(const bj_graph *g, const bench_opts *o, bj_jit_report *cold, bj_jit_report *warm) {
    char dir[] = "/tmp/bitjit-bench-XXXXXX";
    bj_error err = { 0 };
    if (!mkdtemp(dir)) { fprintf(stderr, "%s: cannot make a temporary cache directory\n", prog); exit(1); }
    bj_jit_options jo = o->jit;
    jo.cache_dir = dir;
    jo.no_cache = false;
    bj_engine *e;
    if (bj_jit_engine_create(&e, g, &jo, cold, &err) != BJ_OK) die_error(&err);
    bj_engine_free(e);
    if (bj_jit_engine_create(&e, g, &jo, warm, &err) != BJ_OK) die_error(&err);
    bj_engine_free(e);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "%s: warning: could not remove %s\n", prog, dir);
}

static int cmd_bench(int argc, char **argv) {
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%d", default_threads());
    bench_opts o = { .engines = "jit", .threads = nthreads, .p = 128, .n = 128, .bw_mib = 1024, .reps = 3 };
    bj_jit_options_default(&o.jit);
    parse_bench(argc, argv, &o);
    if (!o.model) o.model = getenv("BITJIT_MODEL") ? getenv("BITJIT_MODEL") : BJ_DEFAULT_MODEL;
    int threads[64], nt = parse_list(o.threads, threads, 64);
    bool want_jit = strstr(o.engines, "jit") != NULL, want_ref = strstr(o.engines, "ref") != NULL;
    if (!want_jit && !want_ref) die_usage("unknown engine list '%s' (jit, ref)", o.engines);

    bj_error err = { 0 };
    bj_model m;
    bj_aot_lib *lib = load_model(o.model, &m, &o.jit);
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
            if (st != BJ_OK) die_error(&err);
            bj_bench_stat pp, tg;
            if (bj_bench_engine(e, o.p, o.n, o.reps, &pp, &tg, &err) != BJ_OK) die_error(&err);
            bj_engine_free(e);
            double bw = 0;
            if (o.bw_mib > 0 && bj_bench_bandwidth(threads[i], (size_t)o.bw_mib << 20, 5, &bw, &err) != BJ_OK)
                die_error(&err);
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

static int cmd_info(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: bitjit info [--mcpu NAME] [--mattr LIST] [--cache-dir DIR]\n\n"
               "Shows the CPU bitjit generates code for, its features, the LLVM version and the\n"
               "kernel cache directory.\n");
        return 0;
    }
    const char *mcpu = NULL, *mattr = NULL, *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--mcpu")) mcpu = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--mattr")) mattr = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--cache-dir")) dir = argv[++i];
        else { fprintf(stderr, "%s info: unknown or incomplete option '%s'\n", prog, argv[i]); return 2; }
    }
    bj_error err = { 0 };
    bj_cg_target t;
    if (bj_cg_target_detect(&t, mcpu, mattr, &err) != BJ_OK) die_error(&err);
    char buf[8192];
    bj_cg_target_describe(&t, buf, sizeof buf);
    printf("bitjit %s\n%s", BJ_VERSION_STRING, buf);
    bj_cg_cache c;
    if (bj_cg_cache_open(&c, dir, &t, false, &err) != BJ_OK) die_error(&err);
    printf("kernel cache: %s%s%s\n", c.enabled ? c.dir : "(off)", c.warn ? " -- " : "", c.warn ? c.warn_msg : "");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage_main(stderr);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) return usage_main(stdout);
    if (!strcmp(cmd, "--version")) { printf("bitjit %s\n", BJ_VERSION_STRING); return 0; }
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) { subcmd = "bench"; return cmd_bench(argc - 1, argv + 1); }
    fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
    usage_main(stderr);
    return 2;
}
