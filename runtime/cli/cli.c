/* runtime/cli/cli.c -- the helpers the `bitjit` subcommands share (see cli.h). */
#include "runtime/cli/cli.h"

#include "runtime/chat.h"
#include "runtime/cli/progress.h"
#include "runtime/bench.h"
#include "codegen/codegen.h"

#include <errno.h>
#include <libgen.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *bj_cli_prog = "bitjit";
const char *bj_cli_subcmd = "run";

void cli_die_error(const bj_error *err) {
    cli_progress_clear();
    fprintf(stderr, "%s: error: %s\n", bj_cli_prog, err->msg);
    exit(1);
}

void cli_die_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "%s %s: ", bj_cli_prog, bj_cli_subcmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see '%s %s --help')\n", bj_cli_prog, bj_cli_subcmd);
    exit(2);
}

void cli_bad_option(int c, char **argv, int (*usage)(FILE *)) {
    if (c == 'h') exit(usage(stdout));
    if (c == ':') cli_die_usage("option '%s' needs a value", argv[optind - 1]);
    cli_die_usage("unknown option '%s'", argv[optind - 1]);
}

long long cli_parse_int(const char *opt, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "%s %s: %s expects an integer in [%lld, %lld], got '%s'\n", bj_cli_prog, bj_cli_subcmd, opt,
                lo, hi, s);
        exit(2);
    }
    return v;
}

float cli_parse_float(const char *opt, const char *s, float lo, float hi) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s %s: %s expects a number in [%g, %g], got '%s'\n", bj_cli_prog, bj_cli_subcmd, opt, lo, hi,
                s);
        exit(2);
    }
    return v;
}

int cli_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

int cli_default_threads(void) {
    int n = cli_cpu_count();
    return n > 64 ? 64 : n;
}

int cli_cap_threads(int n) {
    int cpus = cli_cpu_count();
    if (n <= cpus) return n;
    fprintf(stderr, "%s: warning: -t %d is more than the %d CPU%s this process may run on; using %d (threads beyond "
                    "the CPUs only wait on each other)\n",
            bj_cli_prog, n, cpus, cpus == 1 ? "" : "s", cpus);
    return cpus;
}

char *cli_read_text(const char *opt, const char *path, size_t *len) {
    bj_error err = { 0 };
    char *buf = NULL;
    struct stat st;
    bool is_stdin = !strcmp(path, "-");
    if (!is_stdin && (stat(path, &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
        if (bj_read_file(path, &buf, len, &err) != BJ_OK) {
            bj_error_prefix(&err, "%s", opt);
            cli_die_error(&err);
        }
        return buf;
    }
    /* stdin, a pipe, a terminal, a FIFO: read until end of file */
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    const char *name = is_stdin ? "stdin" : path;
    if (!f) {
        fprintf(stderr, "%s: error: %s %s: cannot open: %s\n", bj_cli_prog, opt, name, strerror(errno));
        exit(1);
    }
    enum { MAX_TEXT = 256 << 20 };
    size_t cap = 1 << 16, n = 0;
    buf = malloc(cap + 1);
    /* feof first: on a terminal, end of file is one Ctrl-D, and another read would wait for a second */
    for (size_t r; buf && !feof(f) && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap && cap < MAX_TEXT) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
        } else if (n == cap) {
            fprintf(stderr, "%s: error: %s %s: more than %d MiB of text\n", bj_cli_prog, opt, name, MAX_TEXT >> 20);
            exit(1);
        }
    }
    if (!buf || ferror(f)) {
        fprintf(stderr, "%s: error: %s %s: %s\n", bj_cli_prog, opt, name, buf ? strerror(errno) : "out of memory");
        exit(1);
    }
    if (!is_stdin) fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static void check_stdout(void) {
    if (fflush(stdout) == 0 && !ferror(stdout)) return;
    int e = errno;
    cli_progress_clear();
    fprintf(stderr, "%s: error: writing the output to stdout failed: %s\n", bj_cli_prog,
            e ? strerror(e) : "write error");
    _exit(1);
}

void cli_check_stdout_at_exit(void) {
    signal(SIGPIPE, SIG_IGN); /* a closed pipe is a write error like any other, not a silent death */
    atexit(check_stdout);
}

double cli_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* An installed bitjit (PREFIX/bin/bitjit) finds the bundled model that `cmake --install` puts
 * in PREFIX/share/bitjit/models; from the build tree, the source tree's copy is used. */
static const char *installed_model(void) {
    static char path[4096];
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    snprintf(path, sizeof path, "%s/../share/bitjit/models/kjv-bitnet-11m/packed", dirname(exe));
    return access(path, R_OK) == 0 ? path : NULL;
}

static bool model_from_env; /* the path came from $BITJIT_MODEL */

const char *cli_model_path(const char *given) {
    model_from_env = false;
    if (given) return given;
    const char *env = getenv("BITJIT_MODEL");
    if (env && *env) { model_from_env = true; return env; }
    const char *inst = installed_model();
    return inst ? inst : BJ_DEFAULT_MODEL;
}

void cli_parse_head(const char *s, bj_jit_options *o) {
    o->head_q8 = !strcmp(s, "q8");
    o->head_c = !strcmp(s, "exact-c");
    if (!o->head_q8 && !o->head_c && strcmp(s, "exact") != 0)
        cli_die_usage("--head expects 'exact', 'q8' or 'exact-c', got '%s'", s);
}

bj_kv_type cli_parse_kv(const char *s) {
    if (!strcmp(s, "f32")) return BJ_KV_F32;
    if (!strcmp(s, "f16")) return BJ_KV_F16;
    cli_die_usage("--kv expects 'f32' or 'f16', got '%s'", s);
}

int cli_parse_kernel(const char *s) {
    if (!strcmp(s, "auto")) return 0;
    char names[128] = "auto";
    for (int v = BJ_CG_V_AUTO + 1; v < BJ_CG_V_COUNT; v++) {
        if (!strcmp(s, bj_cg_variant_name((bj_cg_variant)v))) return v;
        snprintf(names + strlen(names), sizeof names - strlen(names), ", %s", bj_cg_variant_name((bj_cg_variant)v));
    }
    char msg[256];
    snprintf(msg, sizeof msg, "unknown --kernel '%.64s' (available: %s)", s, names);
    cli_die_usage("%s", msg);
}

void cli_check_chat_template(const char *name) {
    bool known;
    bj_chat_detect(name, &known);
    if (!known || strchr(name, '{'))
        cli_die_usage("unknown chat template '%s' (available: bitnet, llama3, chatml, falcon3, plain)", name);
}

/* A warning on stderr when the chat template writes markers the vocabulary has no token for
 * (chatml on a vocabulary without <|im_start|>). */
static void warn_template_tokens(const bj_chat_template *t, const bj_tokenizer *tok) {
    char missing[128];
    int n = bj_chat_missing_tokens(t, tok, missing, sizeof missing);
    if (n)
        fprintf(stderr, "%s: warning: chat template %s: the model's vocabulary has no token%s %s: %s written as plain "
                        "text the model was not trained on (a template the model knows works better)\n",
                bj_cli_prog, bj_chat_kind_name(t->kind), cli_s(n), missing, n == 1 ? "it is" : "they are");
}

void cli_chat_template(const cli_session *s, const char *name, bool quiet, const char *unknown_note,
                       bj_chat_template *t) {
    bj_error err = { 0 };
    if (bj_chat_template_for_model(t, &s->m, &err) != BJ_OK) cli_die_error(&err);
    if (name) { /* the named one, with the model's BOS and EOS texts */
        bj_chat_template model = *t;
        bj_chat_template_init(t, bj_chat_detect(name, NULL), model.bos);
        snprintf(t->eos, sizeof t->eos, "%s", model.eos);
    }
    if (quiet) return;
    if (t->unknown)
        fprintf(stderr, "%s: warning: the model's chat template is not one bitjit knows: %s (--chat-template picks "
                        "one)\n", bj_cli_prog, unknown_note);
    warn_template_tokens(t, s->m.tok);
}

/* ---- model/engine options ---------------------------------------------------------------------- */
void cli_model_opts_init(cli_model_opts *o) {
    memset(o, 0, sizeof *o);
    o->engine = "jit";
    bj_jit_options_default(&o->jit);
    o->jit.n_threads = cli_default_threads();
    bj_pipeline_opts_default(&o->pl);
}

bool cli_model_opt(int c, const char *arg, cli_model_opts *o) {
    switch (c) {
    case 'm': o->model = arg; return true;
    case 't': o->jit.n_threads = (int)cli_parse_int("-t", arg, 1, 1024); o->threads_given = true; return true;
    case 'v': o->verbose = true; return true;
    case 'q': o->quiet = true; cli_progress_enabled = false; return true;
    case CLI_O_ENGINE: o->engine = arg; return true;
    case CLI_O_MCPU: o->jit.mcpu = arg; return true;
    case CLI_O_MATTR: o->jit.mattr = arg; return true;
    case CLI_O_CACHE_DIR: o->jit.cache_dir = arg; return true;
    case CLI_O_NO_CACHE: o->jit.no_cache = true; return true;
    case CLI_O_TUNE_DB: o->jit.tune_db = arg; return true;
    case CLI_O_NO_TUNE_DB: o->jit.no_tune_db = true; return true;
    case CLI_O_HEAD: cli_parse_head(arg, &o->jit); return true;
    case CLI_O_KERNEL: o->jit.variant = cli_parse_kernel(arg); return true;
    case CLI_O_PAA: o->pl.print_after_all = true; return true;
    case CLI_O_PA: o->pl.print_after = arg; return true;
    case CLI_O_DISABLE: o->pl.disable = arg; return true;
    case CLI_O_TIME_PASSES: o->pl.time_passes = true; return true;
    case CLI_O_NO_AUTOTUNE: o->jit.no_autotune = true; return true;
    case CLI_O_KV: o->jit.kv = cli_parse_kv(arg); return true;
    case 'c': o->jit.n_ctx = cli_parse_ctx(arg); return true;
    default: return false;
    }
}

int64_t cli_parse_ctx(const char *s) { return cli_parse_int("-c/--ctx-size", s, 1, INT32_MAX); }

void cli_choose_ctx(const bj_graph *g, int n_threads, int n_engines, bool quiet, int64_t *n_ctx) {
    if (*n_ctx > g->max_seq) {
        fprintf(stderr, "%s %s: -c/--ctx-size %lld exceeds the model's context of %lld tokens\n", bj_cli_prog,
                bj_cli_subcmd, (long long)*n_ctx, (long long)g->max_seq);
        exit(2);
    }
    bj_error err = { 0 };
    char note[512];
    if (bj_engine_ctx_choose(g, *n_ctx, n_threads, n_engines, n_ctx, note, sizeof note, &err) != BJ_OK) cli_die_error(&err);
    if (note[0] && !quiet) fprintf(stderr, "%s: note: %s\n", bj_cli_prog, note);
}

void cli_check_target(const char *mcpu, const char *mattr) {
    if (!(mcpu && *mcpu) && !(mattr && *mattr)) return;
    bj_cg_target t;
    bj_error err = { 0 };
    if (bj_cg_target_detect(&t, mcpu, mattr, &err) != BJ_OK) cli_die_usage("%s", err.msg);
}

void cli_model_opts_check(cli_model_opts *o) {
    if (strcmp(o->engine, "ref") != 0 && strcmp(o->engine, "jit") != 0)
        cli_die_usage("unknown engine '%s' (available: jit, ref)", o->engine);
    cli_check_target(o->jit.mcpu, o->jit.mattr);
    if (o->threads_given) o->jit.n_threads = cli_cap_threads(o->jit.n_threads);
}

/* ---- sampling options ---------------------------------------------------------------------------- */
void cli_sampling_init(cli_sampling *s) {
    memset(s, 0, sizeof *s);
    bj_sampler_params_default(&s->sp);
}

bool cli_sampling_opt(int c, const char *arg, cli_sampling *s) {
    bj_sampler_params *sp = &s->sp;
    switch (c) {
    case 's': /* -1: from the clock, as llama.cpp's --seed -1 */
        sp->seed = (uint64_t)cli_parse_int("--seed", arg, -1, INT64_MAX);
        s->seeded = strcmp(arg, "-1") != 0;
        return true;
    case CLI_O_TEMP: sp->temp = cli_parse_float("--temp", arg, 0, 100); return true;
    case CLI_O_TOPK: sp->top_k = (int32_t)cli_parse_int("--top-k", arg, 0, INT32_MAX); return true;
    case CLI_O_TOPP: sp->top_p = cli_parse_float("--top-p", arg, 0, 1); return true;
    case CLI_O_MINP: sp->min_p = cli_parse_float("--min-p", arg, 0, 1); return true;
    case CLI_O_RPEN: sp->repeat_penalty = cli_parse_float("--repeat-penalty", arg, 0.01f, 100); return true;
    case CLI_O_RLAST: sp->repeat_last_n = (int32_t)cli_parse_int("--repeat-last-n", arg, 0, 1 << 20); return true;
    default: return false;
    }
}

void cli_sampling_finish(cli_sampling *s) {
    if (!s->seeded) s->sp.seed = (uint64_t)time(NULL);
}

/* ---- opening a model ------------------------------------------------------------------------------ */
/* Progress of kernel preparation (progress.h: a bar on a terminal, occasional lines on a pipe). */
static const char tune_label[] = "tuning kernels for this CPU (once; --no-autotune skips)";

static void on_progress(void *ud, int64_t done, int64_t total) {
    cli_progress *p = ud;
    if (p->active && !strncmp(p->label, tune_label, 14)) cli_progress_end(p); /* the quick tune is over */
    if (!p->active && done <= 1) cli_progress_begin(p, "preparing kernels", total);
    cli_progress_update(p, done, NULL);
}

/* Progress of the pipeline's packing of the weights (the first run, or --no-cache), in bytes; the
 * bar ends when the last matrix is packed, before the kernels' bar begins. */
static void on_pass_progress(void *ud, const bj_pass_progress *pp) {
    cli_progress *p = ud;
    if (p->active && !strncmp(p->label, tune_label, 14)) cli_progress_end(p); /* the quick tune is over */
    if (!p->active && pp->items_done == 0) cli_progress_begin_unit(p, "packing weights", pp->total, true);
    char note[64];
    snprintf(note, sizeof note, "%lld of %lld matri%s", (long long)pp->items_done, (long long)pp->items_total,
             pp->items_total == 1 ? "x" : "ces");
    cli_progress_update(p, pp->done, note);
    if (pp->items_done == pp->items_total) cli_progress_end(p);
}

/* Progress of the quick tune of a first start (select-kernels: the database lacks the model's
 * shapes); the kernel bar (on_progress, the same cli_progress) takes over after it. */
static void on_tune_progress(void *ud, int64_t done, int64_t total, const char *note) {
    cli_progress *p = ud;
    if (!p->active) cli_progress_begin(p, tune_label, total);
    cli_progress_update(p, done < total ? done : total, note);
}

/* A model that will not load: say where its path came from when -m did not give it. */
static _Noreturn void die_model_error(bj_error *err) {
    if (model_from_env) bj_error_prefix(err, "the model path from $BITJIT_MODEL");
    cli_die_error(err);
}

bj_aot_lib *cli_load_model(const char *path, bj_model *m, bj_jit_options *jo) {
    bj_error err = { 0 };
    bj_aot_lib *lib = NULL;
    if (!bj_aot_is_library(path)) {
        if (bj_model_load(m, path, &err) != BJ_OK) die_model_error(&err);
        if (m->warning[0]) fprintf(stderr, "%s: warning: %s\n", bj_cli_prog, m->warning);
        return NULL;
    }
    if (jo->mcpu || jo->mattr)
        cli_die_usage("%s", "--mcpu/--mattr do not apply to a bitjitc library: it is built for its CPU");
    if (jo->tune_db && *jo->tune_db)
        cli_die_usage("%s", "--tune-db does not apply to a bitjitc library: its kernels were chosen when it was built "
                            "(bitjitc --tune-db)");
    if (bj_aot_load(&lib, m, path, &err) != BJ_OK) die_model_error(&err);
    bj_aot_jit_options(lib, jo);
    return lib;
}

/* -v for a bitjitc library: what it was built for and with, instead of the JIT's compile and
 * cache figures (it compiles nothing and reads no cache or tuning database at run time). */
static void describe_library(const cli_model_opts *o, const bj_aot_lib *lib, const bj_jit_report *r) {
    const bj_cg_target *t = bj_aot_target(lib);
    char feats[1024], db[4096], tuned[32], mm[32], built[64], llvm[32];
    bj_cg_target_describe(t, feats, sizeof feats);
    char *nl = strchr(feats, '\n'), *nl2 = nl ? strchr(nl + 1, '\n') : NULL; /* "cpu: X\nfeatures used: ...\n" */
    if (nl2) *nl2 = 0;
    if (nl) *nl = 0;
    if (!bj_aot_meta(lib, "bitjit", built, sizeof built)) snprintf(built, sizeof built, "?");
    if (!bj_aot_meta(lib, "llvm", llvm, sizeof llvm)) snprintf(llvm, sizeof llvm, "?");
    fprintf(stderr, "%s: ahead-of-time library %s, built by bitjitc %s (LLVM %s) for %s (%s); %lld matmuls, kernels "
                    "from the library (%llu compiled, no kernel cache); packed weights of %llu matrices from the library, "
                    "%llu packed; %d thread%s\n",
            bj_cli_prog, o->model, built, llvm, feats, nl ? nl + 1 : "", (long long)r->n_matmuls,
            (unsigned long long)r->compiled, (unsigned long long)r->packed_source, (unsigned long long)r->packed_now,
            o->jit.n_threads, o->jit.n_threads == 1 ? "" : "s");
    if (!bj_aot_meta(lib, "tune_db", db, sizeof db))
        fprintf(stderr, "%s: tuning database baked in: not recorded (a library from an older bitjitc)\n", bj_cli_prog);
    else if (!db[0])
        fprintf(stderr, "%s: tuning database baked in: none (kernels by the cost rule; bitjitc found no database "
                        "for %s, or had --no-tune-db)\n", bj_cli_prog, t->cpu);
    else if (bj_aot_meta(lib, "tuned", tuned, sizeof tuned) && bj_aot_meta(lib, "matmuls", mm, sizeof mm))
        fprintf(stderr, "%s: tuning database baked in: %s (%s of %s matmuls took their kernel from it at build time)\n",
                bj_cli_prog, db, tuned, mm);
    else
        fprintf(stderr, "%s: tuning database baked in: %s\n", bj_cli_prog, db);
}

static bj_engine *make_engine(cli_model_opts *o, const bj_graph *g, const bj_aot_lib *lib, uint64_t *packed_bytes) {
    bj_error err = { 0 };
    bj_engine *e;
    *packed_bytes = 0;
    if (!strcmp(o->engine, "ref")) {
        if (bj_ref_engine_create_kv(&e, g, o->jit.n_ctx, o->jit.kv, &err) != BJ_OK) cli_die_error(&err);
        for (uint32_t i = 0; i < g->n_nodes; i++)
            if (g->nodes[i].op == BJ_OP_WEIGHT && bj_dtype_is_lowbit(g->nodes[i].dtype)) *packed_bytes += g->nodes[i].nbytes;
        return e;
    }
    cli_progress bar = { 0 }, pack_bar = { 0 };
    o->jit.progress = on_progress;
    o->jit.progress_ud = &bar;
    o->pl.progress = on_pass_progress;
    o->pl.progress_ud = &pack_bar;
    o->jit.tune_progress = on_tune_progress;
    o->jit.tune_progress_ud = &bar;
    bj_jit_report r;
    o->pl.verbose = o->verbose;
    o->pl.out = stderr;
    o->jit.pipeline = &o->pl;
    bj_status st = bj_jit_engine_create(&e, g, &o->jit, &r, &err);
    cli_progress_end(&pack_bar);
    cli_progress_end(&bar);
    o->jit.progress = NULL;
    o->jit.progress_ud = NULL;
    o->pl.progress = NULL;
    o->pl.progress_ud = NULL;
    o->jit.tune_progress = NULL;
    o->jit.tune_progress_ud = NULL;
    o->jit.pipeline = NULL;
    if (st != BJ_OK) cli_die_error(&err);
    *packed_bytes = r.packed_bytes;
    if (r.cache_warning[0] && !o->quiet)
        fprintf(stderr, "%s: warning: %s\n", bj_cli_prog, r.cache_warning);
    if (r.tune_warning[0] && !o->quiet) fprintf(stderr, "%s: warning: %s\n", bj_cli_prog, r.tune_warning);
    if (o->verbose) fprintf(stderr, "%s: passes: %s\n", bj_cli_prog, r.passes[0] ? r.passes : "(none)");
    if (o->verbose && lib) describe_library(o, lib, &r);
    if (o->verbose && !lib)
        fprintf(stderr, "%s: jit for %s (LLVM %s): %lld matmuls, kernels compiled %llu, loaded from cache %llu"
                        " (%.0f ms compiling, %.0f ms total); packed weights of %llu from the cache; %s; cache %s;"
                        " %d thread%s\n",
                bj_cli_prog, r.cpu, r.llvm, (long long)r.n_matmuls, (unsigned long long)r.compiled,
                (unsigned long long)r.loaded, r.compile_ms, r.create_ms, (unsigned long long)r.packed_loaded, r.variants,
                r.cache_dir, o->jit.n_threads, o->jit.n_threads == 1 ? "" : "s");
    if (o->verbose && !lib)
        fprintf(stderr, "%s: source tensors: %llu hashed, %llu known unchanged from the source index; %.1f MB of them "
                        "not kept resident (pages given back once packed)%s\n",
                bj_cli_prog, (unsigned long long)r.src_hashed, (unsigned long long)r.src_indexed,
                (double)r.released_bytes * 1e-6,
                r.head_q8 ? (r.head_q8_loaded ? "; 8-bit head from the cache" : "; 8-bit head converted") : "");
    if (o->verbose)
        fprintf(stderr, "%s: activations: %.1f KB a token of the prompt (%.1f KB were every step's buffer its own)\n",
                bj_cli_prog, (double)r.act_row_bytes / 1024, (double)r.act_row_naive / 1024);
    if (o->verbose) {
        bj_bench_mem mem;
        bj_bench_mem_read(&mem);
        fprintf(stderr, "%s: RSS after engine creation %.1f MB (anonymous %.1f, file-backed %.1f), peak so far %.1f MB\n",
                bj_cli_prog, (double)mem.rss * 1e-6, (double)mem.anon * 1e-6, (double)mem.file * 1e-6,
                (double)mem.peak * 1e-6);
    }
    if (o->verbose && !lib)
        fprintf(stderr, "%s: tuning database: %lld of %lld matmuls took their kernel from it (%lld with a prefill kernel); %s\n",
                bj_cli_prog, (long long)r.n_tuned, (long long)r.n_matmuls, (long long)r.n_tuned_pp,
                r.tune_db[0] ? r.tune_db : "(none)");
    if (o->verbose && r.n_autotuned)
        fprintf(stderr, "%s: quick tune: %lld shape%s measured in %.1f s and kept in the tuning database (shapes the "
                        "budget did not reach are measured at the next start)\n",
                bj_cli_prog, (long long)r.n_autotuned, cli_s(r.n_autotuned), r.autotune_s);
    return e;
}

void cli_open(cli_model_opts *o, cli_session *s) {
    memset(s, 0, sizeof *s);
    o->model = cli_model_path(o->model);
    double t0 = cli_now_s();
    cli_progress bar;
    cli_progress_begin(&bar, "loading model", 0);
    s->lib = cli_load_model(o->model, &s->m, &o->jit);
    cli_progress_end(&bar);
    cli_choose_ctx(&s->m.graph, strcmp(o->engine, "ref") ? o->jit.n_threads : 1, o->n_engines, o->quiet, &o->jit.n_ctx);
    s->e = make_engine(o, &s->m.graph, s->lib, &s->packed_bytes);
    s->load_s = cli_now_s() - t0;
}

void cli_close(cli_session *s) {
    bj_engine_free(s->e);
    bj_model_free(&s->m);
    bj_aot_close(s->lib);
    memset(s, 0, sizeof *s);
}

/* ---- streaming text ---------------------------------------------------------------------------------- */
bool cli_on_token(void *ud, int32_t tok) {
    cli_printer *p = ud;
    FILE *out = p->out ? p->out : stdout;
    if (p->ids) {
        fprintf(out, "%s%d", p->count++ ? " " : "", tok);
        return !ferror(out);
    }
    p->count++;
    if (bj_tok_is_special(p->tok, tok)) return true;
    size_t len;
    const char *s = bj_tok_piece(p->tok, tok, &len);
    for (size_t i = 0; s && i < len; i++) {
        if (p->n_pend == sizeof p->pend) { fwrite(p->pend, 1, p->n_pend, out); p->n_pend = 0; }
        p->pend[p->n_pend++] = s[i];
    }
    size_t done = bj_utf8_complete_prefix(p->pend, p->n_pend);
    fwrite(p->pend, 1, done, out);
    memmove(p->pend, p->pend + done, p->n_pend - done);
    p->n_pend -= done;
    fflush(out);
    return !ferror(out); /* a failed write stops generating (the exit status says so) */
}

void cli_printer_flush(cli_printer *p) {
    FILE *out = p->out ? p->out : stdout;
    fwrite(p->pend, 1, p->n_pend, out);
    p->n_pend = 0;
    fflush(out);
}
