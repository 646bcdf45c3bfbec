/* runtime/cli/cli.h -- what the `bitjit` subcommands share: error exits, number parsing, the
 * model/engine options every command that runs a model takes, the sampling options, opening a
 * model (directory, file or bitjitc library) with an engine, and streaming text to stdout.
 *
 * Each subcommand lives in its own file (cmd_<name>.c) and is listed in main.c. This folder is
 * the only place in runtime/ that prints and exits: library calls return a status + error. */
#ifndef BJ_CLI_H
#define BJ_CLI_H

#include "runtime/aot_load.h"
#include "runtime/runtime.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifndef BJ_DEFAULT_MODEL
#define BJ_DEFAULT_MODEL "models/kjv-bitnet-11m/packed"
#endif
#define BJ_DEFAULT_PROMPT "In the beginning"

extern const char *bj_cli_prog;   /* "bitjit" */
extern const char *bj_cli_subcmd; /* the running subcommand, for messages */

/* Prints "bitjit: error: MSG" and exits 1. */
_Noreturn void cli_die_error(const bj_error *err);
/* Prints "bitjit CMD: " fmt (with one %s argument) and a pointer to --help; exits 2. */
_Noreturn void cli_die_usage(const char *fmt, const char *arg);
/* A whole-string integer/number in [lo, hi], or a usage error naming the option. */
long long cli_parse_int(const char *opt, const char *s, long long lo, long long hi);
float cli_parse_float(const char *opt, const char *s, float lo, float hi);
int cli_default_threads(void);
/* "s" unless n is 1: "%lld window%s", n, cli_s(n). */
static inline const char *cli_s(long long n) { return n == 1 ? "" : "s"; }
double cli_now_s(void);
/* -m when given, else $BITJIT_MODEL, else the bundled model. */
const char *cli_model_path(const char *given);
/* The CPUs this process may run on (its affinity mask, else the online count). */
int cli_cpu_count(void);
/* -t N above cli_cpu_count(): says so on stderr and returns the CPU count (threads beyond it only
 * wait on each other: 1000 threads on 2 CPUs ran 100x slower); else n. */
int cli_cap_threads(int n);
/* A text file's bytes, or stdin's for "-" (or any pipe, terminal or FIFO path such as
 * /dev/stdin), NUL-terminated; exits with an error naming what (-f) could not be read. */
char *cli_read_text(const char *opt, const char *path, size_t *len);
/* Called once by main: a failed write to stdout (a full disk, a closed pipe, /dev/full) makes
 * the exit status 1 with a message, whichever way the command ends. */
void cli_check_stdout_at_exit(void);

/* ---- options shared by the commands that load and run a model ------------------------------ */
/* getopt_long codes: the shared ones, then each command's own from CLI_O_CMD on. */
enum {
    CLI_O_ENGINE = 256, CLI_O_MCPU, CLI_O_MATTR, CLI_O_CACHE_DIR, CLI_O_NO_CACHE,
    CLI_O_TEMP, CLI_O_TOPK, CLI_O_TOPP, CLI_O_MINP, CLI_O_RPEN, CLI_O_RLAST,
    CLI_O_TUNE_DB, CLI_O_NO_TUNE_DB, CLI_O_HEAD, CLI_O_KERNEL,
    CLI_O_PAA, CLI_O_PA, CLI_O_DISABLE, CLI_O_TIME_PASSES, CLI_O_NO_AUTOTUNE, CLI_O_KV,
    CLI_O_CMD = 512
};

typedef struct cli_model_opts {
    const char *model;  /* NULL: cli_model_path's default */
    const char *engine; /* "jit" or "ref" */
    bool verbose, quiet, threads_given;
    bj_jit_options jit; /* threads, --mcpu, --mattr, cache, -c */
    bj_pipeline_opts pl; /* --print-after-all, --print-after, --disable-passes, --time-passes (jit.pipeline) */
    int n_engines;      /* engines that share the memory the default context is capped to (serve); 0 = 1 */
} cli_model_opts;

/* Short options "m:t:vq" and these long ones; end a command's table with CLI_END_LONGOPTS. */
#define CLI_MODEL_LONGOPTS                                                                          \
    { "model", required_argument, 0, 'm' }, { "threads", required_argument, 0, 't' },              \
    { "engine", required_argument, 0, CLI_O_ENGINE }, { "mcpu", required_argument, 0, CLI_O_MCPU }, \
    { "mattr", required_argument, 0, CLI_O_MATTR }, { "cache-dir", required_argument, 0, CLI_O_CACHE_DIR }, \
    { "no-cache", no_argument, 0, CLI_O_NO_CACHE }, { "verbose", no_argument, 0, 'v' },           \
    { "quiet", no_argument, 0, 'q' }, { "tune-db", required_argument, 0, CLI_O_TUNE_DB },        \
    { "no-tune-db", no_argument, 0, CLI_O_NO_TUNE_DB }, { "head", required_argument, 0, CLI_O_HEAD }, \
    { "kernel", required_argument, 0, CLI_O_KERNEL }, { "ctx-size", required_argument, 0, 'c' }, \
    { "print-after-all", no_argument, 0, CLI_O_PAA }, { "print-after", required_argument, 0, CLI_O_PA }, \
    { "disable-passes", required_argument, 0, CLI_O_DISABLE }, { "time-passes", no_argument, 0, CLI_O_TIME_PASSES }, \
    { "no-autotune", no_argument, 0, CLI_O_NO_AUTOTUNE }, { "kv", required_argument, 0, CLI_O_KV }
#define CLI_MODEL_SHORTOPTS "m:t:vqc:"
#define CLI_MODEL_HELP                                                                              \
    "  -m, --model PATH        model directory, .safetensors/.gguf file or bitjitc library (.so)\n"  \
    "                          (default: $BITJIT_MODEL, else the bundled model)\n"                   \
    "  -t, --threads N         worker threads (default: the number of CPUs)\n"                       \
    "      --engine NAME       jit: kernels generated for this CPU (default);\n"                     \
    "                          ref: the plain C reference executor (one thread)\n"                   \
    "      --mcpu NAME         generate code for CPU NAME instead of the host (e.g. x86-64)\n"      \
    "      --mattr LIST        add/remove CPU features, e.g. +avx2,-avx512f (a bare name\n"  \
    "                          is +NAME; `bitjit info --list-features` lists them)\n"                                 \
    "      --cache-dir DIR     kernel cache directory (default $XDG_CACHE_HOME/bitjit\n"             \
    "                          or ~/.cache/bitjit)\n"                                               \
    "      --no-cache          neither read nor write the kernel cache\n"                            \
    "      --tune-db PATH      tuning database from `bitjit tune` (default: this CPU's, next to\n"   \
    "                          the kernel cache, when it exists)\n"                                 \
    "      --no-tune-db        ignore the tuning database: kernels by the cost rule only\n"         \
    CLI_AUTOTUNE_HELP                                                                               \
    "      --head MODE         LM head precision: exact (default: the model's float weights) or\n"  \
    "                          q8 (int8 rows + int8 activations: half the bytes, logits within\n"   \
    "                          a small bound; see docs/perf.md); exact-c: exact in plain C\n"  \
    "                          (the same bits as exact's generated kernel, for comparisons)\n" \
    "      --kernel NAME       ternary matmul kernel for every layer: auto (default: the tuning\n" \
    "                          database, else the cost rule), dot2 (2 bits a weight), trit5\n"    \
    "                          (1.6 bits: fewer bytes, more decoding work), bitplane, wcode\n"     \
    "      --print-after-all   print the graph IR after every pass of the pipeline (stderr)\n"     \
    "      --print-after=PASS  ... after that pass only\n"                                          \
    "      --disable-passes=A,B  run the pipeline without these passes\n"                          \
    "      --time-passes       each pass's time (stderr)\n"                                         \
    CLI_CTX_HELP                                                                                    \
    CLI_KV_HELP                                                                                     \
    "  -v, --verbose           print load, compile and speed figures on stderr\n"                    \
    "  -q, --quiet             no progress output\n"
#define CLI_CTX_HELP                                                                                \
    "  -c, --ctx-size N        context (KV cache) in tokens (default: the model's, capped to what\n" \
    "                          fits in half of the memory available, with a note saying so)\n"
#define CLI_AUTOTUNE_HELP                                                                           \
    "      --no-autotune       no quick tune when the tuning database lacks this model's shapes\n"  \
    "                          (by default the first start on a CPU measures them, up to 8 s,\n"  \
    "                          and keeps the result next to the kernel cache)\n"
#define CLI_KV_HELP                                                                                 \
    "      --kv TYPE           KV cache element type: f32 (default) or f16 (half the bytes;\n"     \
    "                          logits within a bound, see docs/perf.md)\n"
#define CLI_END_LONGOPTS { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }

void cli_model_opts_init(cli_model_opts *o);
/* --chat-template NAME (chat, serve): a template bitjit renders by name, else a usage error. */
void cli_check_chat_template(const char *name);
/* --head exact|q8|exact-c (the exact head in plain C, for comparisons): sets o->head_q8 /
 * o->head_c; a usage error otherwise. */
void cli_parse_head(const char *s, bj_jit_options *o);
/* --kv f32|f16: the KV cache's element type; a usage error otherwise. */
bj_kv_type cli_parse_kv(const char *s);
/* --kernel auto|NAME: 0 for auto, else the codegen variant of that name; a usage error otherwise. */
int cli_parse_kernel(const char *s);
/* -c/--ctx-size N: a context of at least 1 token (the model's maximum is checked once it is loaded). */
int64_t cli_parse_ctx(const char *s);
/* The context an engine over g gets from *n_ctx (0: the model's, capped to memory, with a note on
 * stderr unless quiet); *n_ctx is set to it. Exits with a usage error beyond the model's context. */
void cli_choose_ctx(const bj_graph *g, int n_threads, int n_engines, bool quiet, int64_t *n_ctx);
/* Handles one getopt code of CLI_MODEL_LONGOPTS; false if c is not one of them. */
bool cli_model_opt(int c, const char *arg, cli_model_opts *o);
/* --mcpu/--mattr read as codegen will (an unknown CPU or feature name, a baseline feature turned
 * off): a usage error (exit 2) before anything is loaded. */
void cli_check_target(const char *mcpu, const char *mattr);
/* Checks the engine name and --mcpu/--mattr, caps -t at the CPU count (cli_cap_threads); call
 * after parsing. */
void cli_model_opts_check(cli_model_opts *o);

/* ---- sampling options (run, chat, serve defaults) ------------------------------------------ */
#define CLI_SAMPLING_LONGOPTS                                                                       \
    { "temp", required_argument, 0, CLI_O_TEMP }, { "top-k", required_argument, 0, CLI_O_TOPK },    \
    { "top-p", required_argument, 0, CLI_O_TOPP }, { "min-p", required_argument, 0, CLI_O_MINP },   \
    { "repeat-penalty", required_argument, 0, CLI_O_RPEN },                                         \
    { "repeat-last-n", required_argument, 0, CLI_O_RLAST }, { "seed", required_argument, 0, 's' }
#define CLI_SAMPLING_SHORTOPTS "s:"
#define CLI_SAMPLING_HELP                                                                           \
    "      --temp T            temperature; 0 = greedy (default 0.8)\n"                              \
    "      --top-k K           keep the K most likely tokens; 0 = off (default 40)\n"                \
    "      --top-p P           keep the smallest set with probability mass >= P (default 0.95)\n"    \
    "      --min-p P           drop tokens less likely than P x the most likely (default 0.05)\n"    \
    "      --repeat-penalty R  penalise recently seen tokens; 1 = off (default 1.0)\n"               \
    "      --repeat-last-n N   how many recent tokens the penalty looks at (default 64)\n"           \
    "  -s, --seed S            random seed (default, or -1: from the clock)\n"

typedef struct cli_sampling {
    bj_sampler_params sp;
    bool seeded;
} cli_sampling;

void cli_sampling_init(cli_sampling *s);
bool cli_sampling_opt(int c, const char *arg, cli_sampling *s);
/* Seeds from the clock unless --seed was given. */
void cli_sampling_finish(cli_sampling *s);

/* Common getopt tail: -h prints usage to stdout and exits 0; ':' and '?' are usage errors. */
_Noreturn void cli_bad_option(int c, char **argv, int (*usage)(FILE *));

/* ---- a model opened for running ------------------------------------------------------------- */
typedef struct cli_session {
    bj_model m;
    bj_aot_lib *lib; /* when the model is a bitjitc library, else NULL */
    bj_engine *e;
    double load_s;   /* load + engine creation */
    uint64_t packed_bytes; /* jit: low-bit weights in kernel layouts; ref: as stored */
} cli_session;

/* A model directory or file (frontends), or an ahead-of-time library written by bitjitc, whose
 * kernels the JIT engine then takes from the library (jo is set up for that); exits on failure. */
bj_aot_lib *cli_load_model(const char *path, bj_model *m, bj_jit_options *jo);
/* Loads o->model and makes the engine o->engine; exits with a message on failure. */
void cli_open(cli_model_opts *o, cli_session *s);
/* The chat template of chat and serve: --chat-template name's (NULL: none) with the model's BOS
 * and EOS texts, else the model's. Unless quiet, warnings for a model template bitjit does not
 * know (unknown_note: what is done instead) and for template markers the vocabulary has no token
 * for (chatml on a vocabulary without <|im_start|>). Exits on error. */
struct bj_chat_template;
void cli_chat_template(const cli_session *s, const char *name, bool quiet, const char *unknown_note,
                       struct bj_chat_template *t);
void cli_close(cli_session *s);

/* ---- streaming generated text ----------------------------------------------------------------- */
/* Writes token pieces to out as they come, holding back bytes of a UTF-8 character split across
 * tokens; special tokens are not printed. With ids, prints the ids space-separated instead. */
typedef struct cli_printer {
    const bj_tokenizer *tok;
    FILE *out;
    bool ids;
    int64_t count;
    char pend[64];
    size_t n_pend;
} cli_printer;

bool cli_on_token(void *printer, int32_t tok); /* a bj_generate callback */
void cli_printer_flush(cli_printer *p);        /* writes what is held back */

#endif
