/* compiler/main_bitjitc.c -- the `bitjitc` driver: ahead-of-time compilation of a model for a
 * named CPU, and the model-file subcommands. Like bitjit's driver, the only place here that
 * prints and picks exit codes (0 ok, 1 error, 2 usage); the library calls return statuses.
 *
 *   bitjitc MODEL -o OUT [--mcpu NAME|native] [--mattr LIST] [--emit=ir|llvm|asm|obj|so] [-v]
 *           [--passes=..] [--disable-passes=..] [--print-after-all] [--print-after=P]
 *           [--print-before=P] [--verify-each] [--time-passes] [--tune-db PATH|--no-tune-db]
 *   bitjitc convert ... | bitjitc synth ...   (compiler/cmd_gguf.c)
 *
 * Flow: import the model (frontends), run the pass pipeline on the graph (compiler.h), then
 * hand the graph to compiler/aot.c for the chosen output form. */
#include "compiler/aot.h"
#include "compiler/compiler.h"
#include "codegen/codegen.h"
#include "frontends/model.h"

#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *prog = "bitjitc";

static int usage(FILE *f) {
    fprintf(f,
            "usage: bitjitc MODEL -o OUT [options]\n"
            "       bitjitc convert [options]   write a model as GGUF (--type b1: a 1-bit model directory in\n"
            "                                   bitjit's format, safetensors) (bitjitc convert --help)\n"
            "       bitjitc synth [options]     write a random model of a published shape (bitjitc synth --help)\n"
            "\n"
            "Compiles a BitNet model ahead of time for a named CPU: its ternary matmul kernels are\n"
            "generated and compiled by LLVM, and with the graph, the weights (also packed in the\n"
            "kernels' layouts), the kernel choices and the tokenizer go into one shared library that\n"
            "`bitjit run -m OUT` and the bitjit.h API load without compiling or packing anything.\n"
            "MODEL is any model `bitjit run` takes: an HF directory, a .safetensors or a .gguf file.\n"
            "\n"
            "output:\n"
            "  -o, --output OUT        output file; '-' writes text forms to stdout\n"
            "                          (default for ir/llvm/asm: stdout; required for obj/so)\n"
            "      --emit=KIND         so: shared library (default); obj: relocatable object with the\n"
            "                          same contents; asm: assembly of all kernels; llvm: LLVM IR of\n"
            "                          all kernels (one module); ir: the graph IR after the pipeline\n"
            "target:\n"
            "      --mcpu NAME         CPU to compile for (LLVM names: znver5, sapphirerapids,\n"
            "                          x86-64-v3, ...); 'native' or none: this host\n"
            "      --mattr LIST        add/remove CPU features on top, e.g. +avx512f,-avx512vnni\n"
            "      --tune-db PATH      tuning database written by `bitjit tune` (default: the one for\n"
            "                          this CPU next to the kernel cache, if any)\n"
            "      --no-tune-db        ignore the tuning database: kernels by the cost rule only\n"
            "pipeline (LLVM-style):\n"
            "      --passes=A,B        run exactly these passes (in pipeline order); '' runs none\n"
            "      --disable-passes=A  the default pipeline without these\n"
            "      --print-after-all   print the graph IR after every pass (stderr)\n"
            "      --print-after=P     print the graph IR after pass P\n"
            "      --print-before=P    print the graph IR before pass P\n"
            "      --verify-each       verify the graph after every pass\n"
            "      --time-passes       report the time of each pass\n"
            "other:\n"
            "  -v, --verbose           report passes, kernels, sizes and times on stderr\n"
            "  -h, --help              show this help\n"
            "\n"
            "The library links through the system C compiler driver ($BITJIT_CC, else $CC, else cc).\n"
            "A library refuses to run on a CPU that lacks features it was built for.\n");
    return f == stderr ? 2 : 0;
}

static _Noreturn void die_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see '%s --help')\n", prog);
    exit(2);
}

static _Noreturn void die_error(const bj_error *err) {
    fprintf(stderr, "%s: error: %s\n", prog, err->msg);
    exit(1);
}

typedef struct cc_opts {
    const char *model, *out;
    bj_aot_emit emit;
    bool verbose;
    bj_pipeline_opts pl;
    bj_plan plan;
    bj_aot_opts aot;
} cc_opts;

enum { O_MCPU = 256, O_MATTR, O_EMIT, O_PASSES, O_DISABLE, O_PAA, O_PA, O_PB, O_VERIFY, O_TIME, O_TUNE_DB, O_NO_TUNE_DB };

static void parse_flag(cc_opts *o, int c, const char *arg) {
    switch (c) {
    case 'o': o->out = arg; break;
    case 'v': o->verbose = true; break;
    case O_MCPU: o->pl.mcpu = arg; break;
    case O_MATTR: o->pl.mattr = arg; break;
    case O_EMIT:
        if (!bj_aot_emit_from_name(arg, &o->emit)) die_usage("unknown --emit '%s' (ir, llvm, asm, obj, so)", arg);
        break;
    case O_PASSES: o->pl.passes = arg; break;
    case O_DISABLE: o->pl.disable = arg; break;
    case O_PAA: o->pl.print_after_all = true; break;
    case O_PA: o->pl.print_after = arg; break;
    case O_PB: o->pl.print_before = arg; break;
    case O_VERIFY: o->pl.verify_each = true; break;
    case O_TIME: o->pl.time_passes = true; break;
    case O_TUNE_DB: o->pl.tune_db = arg; break;
    case O_NO_TUNE_DB: o->pl.no_tune_db = true; break;
    }
}

static void parse_args(int argc, char **argv, cc_opts *o) {
    static const struct option longs[] = {
        { "output", required_argument, 0, 'o' },       { "verbose", no_argument, 0, 'v' },
        { "help", no_argument, 0, 'h' },               { "mcpu", required_argument, 0, O_MCPU },
        { "mattr", required_argument, 0, O_MATTR },    { "emit", required_argument, 0, O_EMIT },
        { "passes", required_argument, 0, O_PASSES },  { "disable-passes", required_argument, 0, O_DISABLE },
        { "print-after-all", no_argument, 0, O_PAA },  { "print-after", required_argument, 0, O_PA },
        { "print-before", required_argument, 0, O_PB }, { "verify-each", no_argument, 0, O_VERIFY },
        { "time-passes", no_argument, 0, O_TIME },     { "tune-db", required_argument, 0, O_TUNE_DB },
        { "no-tune-db", no_argument, 0, O_NO_TUNE_DB }, { 0, 0, 0, 0 },
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:vh", longs, NULL)) != -1) {
        if (c == 'h') exit(usage(stdout));
        if (c == ':') die_usage("option '%s' needs a value", argv[optind - 1]);
        if (c == '?') die_usage("unknown option '%s'", argv[optind - 1]);
        parse_flag(o, c, optarg);
    }
    if (optind >= argc) die_usage("%s", "no model given");
    o->model = argv[optind++];
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    bool file_form = o->emit == BJ_AOT_EMIT_OBJ || o->emit == BJ_AOT_EMIT_SO;
    if (file_form && !o->out) die_usage("%s", "-o OUT is required for --emit=so and --emit=obj");
    if (file_form && !strcmp(o->out, "-")) die_usage("%s", "--emit=so and --emit=obj cannot go to stdout");
    if ((o->pl.mcpu && *o->pl.mcpu) || (o->pl.mattr && *o->pl.mattr)) { /* before loading anything */
        bj_cg_target t;
        bj_error err = { 0 };
        if (bj_cg_target_detect(&t, o->pl.mcpu, o->pl.mattr, &err) != BJ_OK) die_usage("%s", err.msg);
    }
}

/* The pass pipeline (compiler.h) with the driver's flags; -v adds its statistics. Its plan
 * (every matmul's kernels, from select-kernels with the default tuning database, and for a
 * library their weights packed in those kernels' layouts, which it carries so that loading it
 * packs nothing) is what the output is built from. Packing bypasses the packed-weight cache:
 * the library is where these bytes are kept. */
static void run_pipeline(bj_graph *g, cc_opts *o) {
    bj_error err = { 0 };
    o->pl.verbose = o->verbose;
    o->pl.out = stderr;
    o->pl.default_tune_db = true;
    o->pl.plan = &o->plan;
    o->pl.pack = o->emit == BJ_AOT_EMIT_SO || o->emit == BJ_AOT_EMIT_OBJ;
    o->pl.no_cache = true;
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    o->pl.n_threads = nproc > 1 ? (int)(nproc < 64 ? nproc : 64) : 1;
    if (bj_pipeline_run(g, &o->pl, &err) != BJ_OK) die_error(&err);
    o->aot.plan = &o->plan;
}

/* The directory holding the model's config and tokenizer files. */
static void model_dir(const char *path, char *dir, size_t cap) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(dir, cap, "%s", bj_path_is_dir(path) ? path : dirname(tmp));
}

/* SIGINT, SIGTERM, SIGHUP: a build in progress stops and removes its temporary files, then the
 * process ends by the same signal (see on_signal_exit); with none in progress it ends at once.
 * SIGXFSZ is ignored, so a file-size limit fails the write with an error and the same clean-up. */
static volatile sig_atomic_t g_signal;

static void on_signal(int sig) {
    g_signal = sig;
    if (!bj_aot_interrupt()) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaction(sigs[i], &sa, NULL);
    signal(SIGXFSZ, SIG_IGN);
}

/* After an interrupted build has cleaned up: report, then end by the signal that stopped it. */
static void on_signal_exit(const bj_error *err) {
    if (!g_signal) return;
    fprintf(stderr, "%s: %s\n", prog, err->msg);
    signal(g_signal, SIG_DFL);
    raise(g_signal);
    exit(128 + g_signal);
}

static void emit_text(const bj_graph *g, cc_opts *o, bj_aot_report *r) {
    bj_error err = { 0 };
    char *text;
    if (bj_aot_emit_text(g, &o->aot, o->emit, &text, r, &err) != BJ_OK) die_error(&err);
    if (!o->out || !strcmp(o->out, "-")) {
        fputs(text, stdout);
        if (fflush(stdout) != 0) { fprintf(stderr, "%s: error: writing stdout failed\n", prog); exit(1); }
    } else if (bj_aot_write_file(o->out, text, strlen(text), &err) != BJ_OK) {
        free(text);
        on_signal_exit(&err);
        die_error(&err);
    }
    free(text);
}

static void report(const cc_opts *o, const bj_aot_report *r) {
    if (r->tune_warning[0] && o->emit != BJ_AOT_EMIT_IR) fprintf(stderr, "%s: warning: %s\n", prog, r->tune_warning);
    if (!o->verbose || o->emit == BJ_AOT_EMIT_IR) return;
    fprintf(stderr, "%s: %s for cpu '%s': %lld matmul%s, %lld kernel%s (%s) in %.0f ms\n", prog,
            o->out ? o->out : "(stdout)", r->cpu, (long long)r->n_matmuls, r->n_matmuls == 1 ? "" : "s",
            (long long)r->n_kernels, r->n_kernels == 1 ? "" : "s", r->variants,
            r->compile_ms);
    fprintf(stderr, "%s: %lld matmul%s took %s kernel from the tuning database (%s)\n", prog, (long long)r->n_tuned,
            r->n_tuned == 1 ? "" : "s", r->n_tuned == 1 ? "its" : "their",
            r->tune_db[0] ? r->tune_db : "none");
    if (o->emit == BJ_AOT_EMIT_SO || o->emit == BJ_AOT_EMIT_OBJ)
        fprintf(stderr, "%s: code %.1f KB (%lld exact-head kernel%s), embedded weights %.2f MB, packed weights %.2f MB\n",
                prog, (double)r->code_bytes / 1e3, (long long)r->n_head_kernels, r->n_head_kernels == 1 ? "" : "s",
                (double)r->weight_bytes / 1e6, (double)r->packed_bytes / 1e6);
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "convert")) return bj_cmd_convert(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "synth")) return bj_cmd_synth(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "--version")) { printf("bitjitc %s\n", BJ_VERSION_STRING); return 0; }
    if (argc < 2) return usage(stderr);
    cc_opts o = { .emit = BJ_AOT_EMIT_SO };
    bj_pipeline_opts_default(&o.pl);
    parse_args(argc, argv, &o);

    bj_error err = { 0 };
    bj_model m;
    if (bj_model_load(&m, o.model, &err) != BJ_OK) die_error(&err);
    run_pipeline(&m.graph, &o);
    char dir[4096];
    model_dir(o.model, dir, sizeof dir);
    o.aot.model_dir = m.gguf ? NULL : dir; /* a GGUF's config and tokenizer are its metadata */
    o.aot.gguf = m.gguf;
    o.aot.cfg = &m.cfg;
    o.aot.model_path = o.model;
    bj_aot_report r = { 0 };
    install_signal_handlers();
    if (o.emit == BJ_AOT_EMIT_SO || o.emit == BJ_AOT_EMIT_OBJ) {
        if (bj_aot_emit_file(&m.graph, &o.aot, o.emit, o.out, &r, &err) != BJ_OK) {
            on_signal_exit(&err);
            die_error(&err);
        }
    } else {
        emit_text(&m.graph, &o, &r);
    }
    report(&o, &r);
    bj_plan_free(&o.plan);
    bj_model_free(&m);
    return 0;
}
