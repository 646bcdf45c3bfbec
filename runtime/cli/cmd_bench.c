/* runtime/cli/cmd_bench.c -- `bitjit bench`: prefill and decode tokens/s like llama-bench, cold
 * and warm JIT compile times, the machine's streaming bandwidth and % of the roofline; the
 * kernel layout and bytes of each distinct matmul shape; output as a markdown table (default),
 * CSV or JSON, and optionally an SVG plot of t/s against threads with the decode roofline. */
#include "codegen/cg_tunedb.h"
#include "compiler/aot.h"
#include "runtime/bench.h"
#include "runtime/cli/cli.h"
#include "runtime/cli/progress.h"
#include "runtime/tune.h"

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
            "  -c, --ctx-size N     context (KV cache) in tokens, at least -p + -n (default: the model's,\n"
            "                       capped to what fits in half of the memory available)\n"
            "      --engine LIST    jit, ref or jit,ref (default jit)\n"
            "      --bw-mib N       buffer for the bandwidth test in MiB (default 1024; 0 = skip)\n"
            "      --depth LIST     also decode -n tokens after a context of each D tokens (tgN@dD; the\n"
            "                       bytes a token reads count the KV cache of those positions)\n"
            "  -o, --format FMT     md: markdown tables (default); csv: one header line and one line per\n"
            "                       test; json: one object with the header facts and the results\n"
            "      --plot OUT.svg   also draw t/s (tg and pp) against threads, with the decode roofline\n"
            "                       (bandwidth / bytes read per token), as an SVG file\n"
            "      --mcpu, --mattr, --cache-dir, --no-cache, --tune-db, --no-tune-db, --head, --kernel,\n"
            "      --no-autotune, --kv  as for bitjit run (bytes/token counts the KV cache at --kv's size)\n"
            "  -h, --help           show this help\n");
    return f == stderr ? 2 : 0;
}

typedef enum { FMT_MD, FMT_CSV, FMT_JSON } bench_fmt;

typedef struct bench_opts {
    const char *model, *engines, *threads, *plot, *depths;
    int64_t p, n, bw_mib;
    int reps;
    bench_fmt fmt;
    bj_jit_options jit;
} bench_opts;

enum { O_BW = CLI_O_CMD, O_PLOT, O_DEPTH };

static void parse_bench(int argc, char **argv, bench_opts *o) {
    static const struct option longs[] = {
        { "model", required_argument, 0, 'm' },     { "n-prompt", required_argument, 0, 'p' },
        { "n-gen", required_argument, 0, 'n' },     { "threads", required_argument, 0, 't' },
        { "repetitions", required_argument, 0, 'r' }, { "engine", required_argument, 0, CLI_O_ENGINE },
        { "bw-mib", required_argument, 0, O_BW },   { "mcpu", required_argument, 0, CLI_O_MCPU },
        { "mattr", required_argument, 0, CLI_O_MATTR }, { "cache-dir", required_argument, 0, CLI_O_CACHE_DIR },
        { "no-cache", no_argument, 0, CLI_O_NO_CACHE }, { "format", required_argument, 0, 'o' },
        { "plot", required_argument, 0, O_PLOT },   { "depth", required_argument, 0, O_DEPTH },   { "tune-db", required_argument, 0, CLI_O_TUNE_DB },
        { "no-tune-db", no_argument, 0, CLI_O_NO_TUNE_DB }, { "head", required_argument, 0, CLI_O_HEAD },
        { "kernel", required_argument, 0, CLI_O_KERNEL }, { "ctx-size", required_argument, 0, 'c' },
        { "no-autotune", no_argument, 0, CLI_O_NO_AUTOTUNE }, { "kv", required_argument, 0, CLI_O_KV },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:n:t:r:o:c:h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->p = cli_parse_int("-p", optarg, 0, 1 << 20); break;
        case 'n': o->n = cli_parse_int("-n", optarg, 0, 1 << 20); break;
        case 't': o->threads = optarg; break;
        case 'r': o->reps = (int)cli_parse_int("-r", optarg, 1, 1000); break;
        case 'o':
            if (!strcmp(optarg, "md")) o->fmt = FMT_MD;
            else if (!strcmp(optarg, "csv")) o->fmt = FMT_CSV;
            else if (!strcmp(optarg, "json")) o->fmt = FMT_JSON;
            else cli_die_usage("unknown --format '%s' (md, csv, json)", optarg);
            break;
        case O_BW: o->bw_mib = cli_parse_int("--bw-mib", optarg, 0, 1 << 20); break;
        case O_PLOT: o->plot = optarg; break;
        case O_DEPTH: o->depths = optarg; break;
        case CLI_O_ENGINE: o->engines = optarg; break;
        case CLI_O_MCPU: o->jit.mcpu = optarg; break;
        case CLI_O_MATTR: o->jit.mattr = optarg; break;
        case CLI_O_CACHE_DIR: o->jit.cache_dir = optarg; break;
        case CLI_O_NO_CACHE: o->jit.no_cache = true; break;
        case CLI_O_TUNE_DB: o->jit.tune_db = optarg; break;
        case CLI_O_NO_TUNE_DB: o->jit.no_tune_db = true; break;
        case CLI_O_HEAD: cli_parse_head(optarg, &o->jit); break;
        case CLI_O_KERNEL: o->jit.variant = cli_parse_kernel(optarg); break;
        case 'c': o->jit.n_ctx = cli_parse_ctx(optarg); break;
        case CLI_O_NO_AUTOTUNE: o->jit.no_autotune = true; break;
        case CLI_O_KV: o->jit.kv = cli_parse_kv(optarg); break;
        default: cli_bad_option(c, argv, usage_bench);
        }
    }
    if (optind < argc) cli_die_usage("unexpected argument '%s'", argv[optind]);
    if (o->p == 0 && o->n == 0) cli_die_usage("%s", "nothing to measure: -p and -n are both 0");
    cli_check_target(o->jit.mcpu, o->jit.mattr);
}

/* Parses a list "1,2,4" of counts in [lo, hi] for flag (at most cap); exits on anything else. */
static int parse_counts(const char *flag, const char *s, int64_t lo, int64_t hi, int *out, int cap) {
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == cap) cli_die_usage("%s: too many values", flag);
        out[n++] = (int)cli_parse_int(flag, tok, lo, hi);
    }
    if (!n) cli_die_usage("%s needs at least one value", flag);
    return n;
}

/* -t 1,2,4: thread counts, measured as asked, but a count above the CPUs is said: such threads
 * wait on each other. */
static int parse_list(const char *s, int *out, int cap) {
    int n = parse_counts("-t", s, 1, 1024, out, cap);
    for (int i = 0; i < n; i++)
        if (out[i] > cli_cpu_count())
            fprintf(stderr, "%s: warning: -t %d is more than the %d CPU%s this process may run on\n", bj_cli_prog, out[i],
                    cli_cpu_count(), cli_s(cli_cpu_count()));
    return n;
}

/* --depth D1,D2,...: context sizes in [1, 1 << 20]. */
static int parse_depths(const char *s, int *out, int cap) { return parse_counts("--depth", s, 1, 1 << 20, out, cap); }

/* The tuning database the engines read: --tune-db, else the one next to the kernel cache. */
static void tune_db_path(const bj_jit_options *jo, char *buf, size_t cap) {
    bj_cg_target t;
    bj_error err = { 0 };
    buf[0] = 0;
    if (jo->no_tune_db) return;
    if (jo->tune_db && *jo->tune_db) { snprintf(buf, cap, "%s", jo->tune_db); return; }
    if (jo->target) t = *(const bj_cg_target *)jo->target;
    else if (bj_cg_target_detect(&t, jo->mcpu, jo->mattr, &err) != BJ_OK) return;
    if (bj_cg_tunedb_default_path(&t, jo->cache_dir, buf, cap, &err) != BJ_OK) buf[0] = 0;
}

/* Cold and warm JIT creation times, measured in a fresh private cache directory (with the
 * tuning database of the real one). */
static void bench_compile(const bj_graph *g, const bench_opts *o, bj_jit_report *cold, bj_jit_report *warm) {
    char dir[] = "/tmp/bitjit-bench-XXXXXX";
    bj_error err = { 0 };
    if (!mkdtemp(dir)) { fprintf(stderr, "%s: cannot make a temporary cache directory\n", bj_cli_prog); exit(1); }
    bj_jit_options jo = o->jit;
    jo.cache_dir = dir;
    jo.no_cache = false;
    char db[4096];
    tune_db_path(&o->jit, db, sizeof db);
    if (db[0]) jo.tune_db = db;
    bj_engine *e;
    cli_progress bar;
    cli_progress_begin(&bar, "compile test", 2);
    cli_progress_update(&bar, 0, "cold: empty cache");
    if (bj_jit_engine_create(&e, g, &jo, cold, &err) != BJ_OK) cli_die_error(&err);
    bj_engine_free(e);
    cli_progress_update(&bar, 1, "warm: from the cache");
    if (bj_jit_engine_create(&e, g, &jo, warm, &err) != BJ_OK) cli_die_error(&err);
    bj_engine_free(e);
    cli_progress_end(&bar);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "%s: warning: could not remove %s\n", bj_cli_prog, dir);
}

/* ---- per-shape kernel layouts ------------------------------------------------------------------ */
typedef struct bench_layout {
    uint32_t m, k;
    bj_cg_wtype wt;
    int count;
    bj_cg_kdesc d;
    bool known;     /* d describes the kernel (false: weights-as-code, the values are not read here) */
    bool tuned;
    bj_cg_kdesc pp; /* the kernel of prefill steps (>= BJ_CG_TUNE_PREFILL_MIN_T tokens) when has_pp */
    bool has_pp, pp_tuned;
} bench_layout;

/* The kernels select-kernels chooses for each distinct matmul shape: the pipeline run as the
 * JIT engine runs it (bj_jit_compile), its plan read. */
static int bench_layouts(const bj_graph *g, const bj_jit_options *jo, bench_layout *out, int cap) {
    bj_graph own;
    bj_plan plan;
    bj_error err = { 0 };
    bj_jit_options quiet = *jo;
    quiet.pipeline = NULL;
    if (bj_jit_compile(g, &quiet, &own, &plan, &err) != BJ_OK) return 0;
    int n = 0;
    for (uint32_t i = 0; i < own.n_nodes; i++) {
        if (!plan.kern[i].set) continue;
        const bj_cg_tune_pick *pk = &plan.kern[i].pick;
        uint32_t m = pk->dec.m, k = pk->dec.k;
        bj_cg_wtype wt = (bj_cg_wtype)pk->dec.wtype;
        int j = 0;
        while (j < n && !(out[j].m == m && out[j].k == k && out[j].wt == wt)) j++;
        if (j < n) { out[j].count++; continue; }
        if (n == cap) break;
        out[n++] = (bench_layout){ .m = m, .k = k, .wt = wt, .count = 1, .d = pk->dec, .known = true,
                                   .tuned = pk->dec_tuned, .pp = pk->pp, .has_pp = pk->has_pp,
                                   .pp_tuned = pk->has_pp && !pk->pp_default };
    }
    bj_plan_free(&plan);
    bj_graph_free(&own);
    return n;
}

/* "dot2/avx2 m1 t4 u1 pf4096", with " (tuned)" when it came from the tuning database. */
static void kernel_str(const bj_cg_kdesc *d, bool tuned, char *buf, size_t cap) {
    char s[96];
    bj_tune_desc_str(d, s, sizeof s);
    snprintf(buf, cap, "%s%s", s, tuned ? " (tuned)" : "");
}

static void layout_str(const bench_layout *l, char *buf, size_t cap) {
    if (!l->known) snprintf(buf, cap, "wcode (weights as code)");
    else kernel_str(&l->d, l->tuned, buf, cap);
}

/* The prefill kernel, or "same" when prefill steps run the decode kernel. */
static void layout_pp_str(const bench_layout *l, char *buf, size_t cap) {
    if (!l->has_pp) snprintf(buf, cap, "same");
    else kernel_str(&l->pp, l->pp_tuned, buf, cap);
}

static uint64_t layout_bytes(const bench_layout *l) { return l->known ? bj_cg_packed_size(&l->d) : 0; }

/* ---- results ------------------------------------------------------------------------------------ */
typedef struct bench_row {
    const char *engine;
    int threads;
    bool tg;             /* decode (else prefill) */
    int64_t tokens;
    int64_t depth;       /* tg after a context of this many tokens (--depth); 0 otherwise */
    bj_bench_stat s;
    double gbs, bw, pct; /* tg on jit with a bandwidth: GB/s read, bandwidth, % of roofline; else 0 */
} bench_row;

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* A CSV field: quoted when it has a comma, quote or newline. */
static void csv_str(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) { fputs(s, f); return; }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* "pp128", "tg128", "tg128@d1024". */
static void test_name(const bench_row *r, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%s%lld", r->tg ? "tg" : "pp", (long long)r->tokens);
    if (r->depth && n > 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, "@d%lld", (long long)r->depth);
}

static void print_row_md(const bench_row *r) {
    char test[48];
    test_name(r, test, sizeof test);
    if (r->tg && r->bw > 0)
        printf("| %s | %d | %s | %.2f ± %.2f | %.2f | %.2f | %.0f%% |\n", r->engine, r->threads, test, r->s.mean, r->s.sd,
               r->gbs, r->bw, r->pct);
    else
        printf("| %s | %d | %s | %.2f ± %.2f | | | |\n", r->engine, r->threads, test, r->s.mean, r->s.sd);
    fflush(stdout);
}

static void print_row_csv(const bench_row *r, const char *model) {
    char test[48]; /* the kind ("pp", "tg"; tokens are a column of their own), "tg@dD" at depth */
    snprintf(test, sizeof test, "%s", r->tg ? "tg" : "pp");
    if (r->depth) snprintf(test, sizeof test, "tg@d%lld", (long long)r->depth);
    csv_str(stdout, model);
    printf(",%s,%d,%s,%lld,%.4f,%.4f,%d,", r->engine, r->threads, test, (long long)r->tokens, r->s.mean,
           r->s.sd, r->s.n);
    if (r->tg && r->bw > 0) printf("%.4f,%.4f,%.2f\n", r->gbs, r->bw, r->pct);
    else printf(",,\n");
    fflush(stdout);
}

/* ---- SVG plot -------------------------------------------------------------------------------------- */
typedef struct svg_panel { const char *title; double x0, y0, w, h; } svg_panel;

static double nice_max(double v) {
    if (v <= 0) return 1;
    double p = 1;
    while (p * 10 <= v) p *= 10;
    while (p > v) p /= 10;
    for (int m = 1; m <= 10; m++)
        if (m * p >= v) return m * p;
    return 10 * p;
}

/* One panel: x = threads (the -t values, evenly spaced), y = t/s from 0; series of (x index, y). */
static void svg_panel_draw(FILE *f, const svg_panel *p, const int *threads, int nt, const double *ys[], const char *names[],
                           const char *colors[], const bool dashed[], int ns) {
    double ymax = 0;
    for (int s = 0; s < ns; s++)
        for (int i = 0; ys[s] && i < nt; i++) ymax = ys[s][i] > ymax ? ys[s][i] : ymax;
    ymax = nice_max(ymax * 1.05);
    fprintf(f, "<g font-family=\"sans-serif\" font-size=\"11\">\n");
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">%s</text>\n", p->x0 + p->w / 2,
            p->y0 - 10, p->title);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n", p->x0,
            p->y0, p->w, p->h);
    for (int g = 0; g <= 4; g++) {
        double y = p->y0 + p->h - p->h * g / 4;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", p->x0, y, p->x0 + p->w, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", p->x0 - 4, y + 4, ymax * g / 4);
    }
    double dx = nt > 1 ? p->w / (nt - 1) : 0, xs = nt > 1 ? p->x0 : p->x0 + p->w / 2;
    for (int i = 0; i < nt; i++)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", xs + dx * i, p->y0 + p->h + 14,
                threads[i]);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">threads</text>\n", p->x0 + p->w / 2,
            p->y0 + p->h + 30);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 %.1f %.1f)\">tokens/s</text>\n",
            p->x0 - 42, p->y0 + p->h / 2, p->x0 - 42, p->y0 + p->h / 2);
    for (int s = 0; s < ns; s++) {
        if (!ys[s]) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", colors[s],
                dashed[s] ? " stroke-dasharray=\"6,4\"" : "");
        for (int i = 0; i < nt; i++) fprintf(f, "%s%.1f,%.1f", i ? " " : "", xs + dx * i, p->y0 + p->h - p->h * ys[s][i] / ymax);
        fprintf(f, "\"/>\n");
        for (int i = 0; i < nt && !dashed[s]; i++)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", xs + dx * i,
                    p->y0 + p->h - p->h * ys[s][i] / ymax, colors[s]);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">%s</text>\n", p->x0 + 8, p->y0 + 16 + 14 * s, colors[s], names[s]);
    }
    fprintf(f, "</g>\n");
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
    }
}

/* Writes the plot (jit rows only: the reference engine has one thread) through a temporary file. */
static void write_plot(const char *path, const char *model, const char *cpu, const bench_row *rows, int nr,
                       const int *threads, int nt, uint64_t bpt) {
    double *tg = calloc((size_t)nt, sizeof *tg), *pp = calloc((size_t)nt, sizeof *pp), *roof = calloc((size_t)nt, sizeof *roof);
    bool have_tg = false, have_pp = false, have_roof = false;
    for (int i = 0; i < nr; i++) {
        if (strcmp(rows[i].engine, "jit") || rows[i].depth) continue; /* decode at depth: not plotted */
        int j = 0;
        while (j < nt && threads[j] != rows[i].threads) j++;
        if (j == nt) continue;
        if (rows[i].tg) {
            tg[j] = rows[i].s.mean;
            have_tg = true;
            if (rows[i].bw > 0 && bpt) { roof[j] = rows[i].bw * 1e9 / (double)bpt; have_roof = true; }
        } else {
            pp[j] = rows[i].s.mean;
            have_pp = true;
        }
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) { fprintf(stderr, "%s: error: out of memory for the plot\n", bj_cli_prog); exit(1); }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"820\" height=\"360\" viewBox=\"0 0 820 360\">\n"
               "<rect width=\"820\" height=\"360\" fill=\"white\"/>\n"
               "<text x=\"410\" y=\"20\" font-family=\"sans-serif\" font-size=\"13\" text-anchor=\"middle\">bitjit bench: ");
    xml_text(f, model);
    fprintf(f, " on ");
    xml_text(f, cpu);
    fprintf(f, "</text>\n");
    svg_panel left = { "decode (tg)", 70, 60, 300, 230 }, right = { "prefill (pp)", 490, 60, 300, 230 };
    const double *ys_l[2] = { have_tg ? tg : NULL, have_roof ? roof : NULL };
    const char *names_l[2] = { "tg t/s", "roofline: bandwidth / bytes per token" };
    const char *colors_l[2] = { "#1f77b4", "#d62728" };
    const bool dashed_l[2] = { false, true };
    svg_panel_draw(f, &left, threads, nt, ys_l, names_l, colors_l, dashed_l, 2);
    const double *ys_r[1] = { have_pp ? pp : NULL };
    const char *names_r[1] = { "pp t/s" }, *colors_r[1] = { "#2ca02c" };
    const bool dashed_r[1] = { false };
    svg_panel_draw(f, &right, threads, nt, ys_r, names_r, colors_r, dashed_r, 1);
    fprintf(f, "</svg>\n");
    fclose(f);
    bj_error err = { 0 };
    bj_status st = bj_aot_write_file(path, buf, len, &err);
    free(buf);
    free(tg);
    free(pp);
    free(roof);
    if (st != BJ_OK) cli_die_error(&err);
}

/* What one `bitjit bench` gathers, from the model to the result rows. */
typedef struct bench_run {
    bench_opts o;
    bj_model m;
    int threads[64], nt;
    bool want_jit, want_ref;
    bj_jit_report cold, warm;
    bench_layout lay[64];
    int nl;
    int64_t pos;
    uint64_t bpt;
    int depths[16], nd;  /* --depth */
    bench_row rows[(2 + 16) * 64 + 2];
    int nr;
    bj_bench_mem mem;
    bool have_mem, fresh_peak;
} bench_run;

static void print_layouts_md(const bench_run *b) {
    printf("\n| matmul shape (M x K) | weights | matmuls | kernel layout | prefill kernel (>= %d tokens) | "
           "bytes each | bytes all |\n", BJ_CG_TUNE_PREFILL_MIN_T);
    printf("| --- | --- | ---: | --- | --- | ---: | ---: |\n");
    for (int i = 0; i < b->nl; i++) {
        const bench_layout *l = &b->lay[i];
        char s[128], pp[128];
        layout_str(l, s, sizeof s);
        layout_pp_str(l, pp, sizeof pp);
        printf("| %ux%u | %s | %d | %s | %s | %llu | %llu |\n", l->m, l->k, l->wt == BJ_CG_W_BINARY ? "binary" : "ternary",
               l->count, s, pp, (unsigned long long)layout_bytes(l), (unsigned long long)layout_bytes(l) * (unsigned)l->count);
    }
}

static void print_header(const bench_run *b) {
    const bench_opts *o = &b->o;
    if (o->fmt == FMT_CSV) printf("model,engine,threads,test,tokens,tps,tps_sd,reps,tg_gbps,bandwidth_gbps,roofline_pct\n");
    if (o->fmt != FMT_MD) return;
    printf("model: %s (%s)\n", o->model, b->m.cfg.arch);
    if (b->want_jit) {
        printf("jit: %s, LLVM %s, %s\ncompile: cold %.0f ms (%llu kernels compiled), warm %.0f ms (%llu loaded, %llu compiled)\n",
               b->cold.cpu, b->cold.llvm, b->cold.variants, b->cold.create_ms, (unsigned long long)b->cold.compiled,
               b->warm.create_ms, (unsigned long long)b->warm.loaded, (unsigned long long)b->warm.compiled);
        printf("tuning database: %lld of %lld matmuls (%s)\n", (long long)b->cold.n_tuned, (long long)b->cold.n_matmuls,
               b->cold.tune_db[0] ? b->cold.tune_db : "none");
    }
    printf("bytes read per token (jit, at position %lld): %.2f MB (ternary weights %.2f MB in kernel layouts; "
           "head %s; KV cache %s)\n", (long long)b->pos, (double)b->bpt * 1e-6, (double)b->cold.packed_bytes * 1e-6,
           o->jit.head_q8 ? "8-bit (--head q8)" : "exact", o->jit.kv == BJ_KV_F16 ? "f16 (--kv f16)" : "f32");
    if (b->nl) print_layouts_md(b);
    printf("\n| engine | threads | test | t/s | tg GB/s | bandwidth GB/s | %% of roofline |\n");
    printf("| --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
}

/* The pp and tg rows of one measured engine (k 0: jit, 1: ref) at nthr threads, printed as they come. */
static void add_rows(bench_run *b, int k, int nthr, const bj_bench_stat *pp, const bj_bench_stat *tg,
                     const bj_bench_stat *tgd, double bw) {
    const bench_opts *o = &b->o;
    for (int t = 0; t < 2; t++) {
        if ((t == 0 && o->p == 0) || (t == 1 && o->n == 0)) continue;
        bench_row *r = &b->rows[b->nr++];
        *r = (bench_row){ .engine = k == 0 ? "jit" : "ref", .threads = nthr, .tg = t == 1, .tokens = t ? o->n : o->p,
                          .s = t ? *tg : *pp };
        if (t == 1 && k == 0 && bw > 0) {
            r->gbs = tg->mean * (double)b->bpt * 1e-9;
            r->bw = bw;
            r->pct = 100 * r->gbs / bw;
        }
        if (o->fmt == FMT_MD) print_row_md(r);
        else if (o->fmt == FMT_CSV) print_row_csv(r, o->model);
    }
    for (int d = 0; d < b->nd && o->n > 0; d++) { /* decode at depth: the KV of its positions counts */
        bench_row *r = &b->rows[b->nr++];
        *r = (bench_row){ .engine = k == 0 ? "jit" : "ref", .threads = nthr, .tg = true, .tokens = o->n,
                          .depth = b->depths[d], .s = tgd[d] };
        if (k == 0 && bw > 0) {
            uint64_t bytes = bj_bench_bytes_per_token(&b->m.graph, b->cold.packed_bytes, o->jit.head_q8, b->depths[d] + o->n / 2,
                                                      o->jit.kv);
            r->gbs = tgd[d].mean * (double)bytes * 1e-9;
            r->bw = bw;
            r->pct = 100 * r->gbs / bw;
        }
        if (o->fmt == FMT_MD) print_row_md(r);
        else if (o->fmt == FMT_CSV) print_row_csv(r, o->model);
    }
    fflush(stdout);
}

/* One engine (k 0: jit at nthr threads, 1: ref) created, measured, freed; then the bandwidth probe. */
static void measure(bench_run *b, int k, int nthr) {
    bj_error err = { 0 };
    bj_engine *e;
    bj_jit_options jo = b->o.jit;
    jo.n_threads = nthr;
    bj_status st = k == 0 ? bj_jit_engine_create(&e, &b->m.graph, &jo, NULL, &err)
                          : bj_ref_engine_create_kv(&e, &b->m.graph, jo.n_ctx, jo.kv, &err);
    if (st != BJ_OK) cli_die_error(&err);
    bj_bench_stat pp, tg;
    if (bj_bench_engine(e, b->o.p, b->o.n, b->o.reps, &pp, &tg, &err) != BJ_OK) cli_die_error(&err);
    if (!b->have_mem) { bj_bench_mem_read(&b->mem); b->have_mem = true; }
    bj_bench_stat tgd[16];
    for (int d = 0; d < b->nd && b->o.n > 0; d++)
        if (bj_bench_depth(e, b->depths[d], b->o.n, b->o.reps, &tgd[d], &err) != BJ_OK) cli_die_error(&err);
    bj_engine_free(e);
    double bw = 0;
    if (b->o.bw_mib > 0 && bj_bench_bandwidth(nthr, (size_t)b->o.bw_mib << 20, 5, &bw, &err) != BJ_OK) cli_die_error(&err);
    cli_progress_clear();
    add_rows(b, k, k == 0 ? nthr : 1, &pp, &tg, tgd, bw);
}

/* Every engine and thread count. Peak RSS is of the first measured engine's creation and runs:
 * the cold and warm engines before packed weights and are gone, so the peak starts again here
 * where the kernel allows. */
static void measure_all(bench_run *b) {
    b->fresh_peak = bj_bench_mem_reset_peak();
    cli_progress bar; /* one step per engine and thread count; rows go to stdout as they finish */
    int64_t n_conf = (b->want_jit ? b->nt : 0) + (b->want_ref ? 1 : 0), conf = 0;
    cli_progress_begin(&bar, "bench", n_conf);
    for (int k = 0; k < 2; k++) {
        if ((k == 0 && !b->want_jit) || (k == 1 && !b->want_ref)) continue;
        for (int i = 0; i < (k == 0 ? b->nt : 1); i++) { /* the reference engine has one thread */
            int nthr = k == 0 ? b->threads[i] : 1;
            char note[64];
            snprintf(note, sizeof note, "%s, %d thread%s", k == 0 ? "jit" : "ref", nthr, nthr > 1 ? "s" : "");
            cli_progress_update(&bar, conf, note);
            measure(b, k, b->threads[i]);
            cli_progress_update(&bar, ++conf, note);
        }
    }
    cli_progress_end(&bar);
}

/* "Weights + KV cache" at the longest context the runs reached (p + n positions). */
static void print_memory_md(const bench_run *b, uint64_t need) {
    if (b->o.fmt != FMT_MD || !b->want_jit || !b->have_mem || !b->mem.peak) return;
    printf("\nmemory: peak RSS %.1f MB (%s, before the bandwidth test) = %.3fx the "
           "weights + KV cache the engine keeps (%.1f MB: low-bit weights in kernel layouts, head %s, norms, "
           "one embedding row, KV of %lld positions)\n",
           (double)b->mem.peak * 1e-6,
           b->fresh_peak ? "the first measured engine, created after the compile tests" : "the process up to the first engine's runs",
           need ? (double)b->mem.peak / (double)need : 0, (double)need * 1e-6, b->o.jit.head_q8 ? "8-bit" : "as stored",
           (long long)(b->o.p + b->o.n));
}

static void print_json_jit(FILE *f, const bench_run *b, uint64_t need) {
    const bj_jit_report *c = &b->cold;
    fprintf(f, ",\n  \"jit\": {\"cpu\": ");
    json_str(f, c->cpu);
    fprintf(f, ", \"llvm\": ");
    json_str(f, c->llvm);
    fprintf(f, ", \"variants\": ");
    json_str(f, c->variants);
    fprintf(f, ", \"matmuls\": %lld, \"tuned\": %lld, \"tune_db\": ", (long long)c->n_matmuls, (long long)c->n_tuned);
    json_str(f, c->tune_db);
    fprintf(f, ",\n          \"compile\": {\"cold_ms\": %.1f, \"cold_compiled\": %llu, \"warm_ms\": %.1f, "
               "\"warm_loaded\": %llu, \"warm_compiled\": %llu}}",
            c->create_ms, (unsigned long long)c->compiled, b->warm.create_ms, (unsigned long long)b->warm.loaded,
            (unsigned long long)b->warm.compiled);
    if (b->have_mem && b->mem.peak)
        fprintf(f, ",\n  \"memory\": {\"peak_rss\": %llu, \"resident_need\": %llu, \"ratio\": %.4f}",
                (unsigned long long)b->mem.peak, (unsigned long long)need, need ? (double)b->mem.peak / (double)need : 0);
}

static void print_json_layouts(FILE *f, const bench_run *b) {
    fprintf(f, ",\n  \"layouts\": [");
    for (int i = 0; i < b->nl; i++) {
        const bench_layout *l = &b->lay[i];
        char pp[128];
        layout_pp_str(l, pp, sizeof pp);
        fprintf(f, "%s\n    {\"m\": %u, \"k\": %u, \"weights\": \"%s\", \"matmuls\": %d, \"variant\": \"%s\", "
                   "\"isa\": \"%s\", \"tile_m\": %u, \"tile_t\": %u, \"unroll\": %u, \"tuned\": %s, \"prefill\": \"%s\", "
                   "\"bytes\": %llu}",
                i ? "," : "", l->m, l->k, l->wt == BJ_CG_W_BINARY ? "binary" : "ternary", l->count,
                l->known ? bj_cg_variant_name((bj_cg_variant)l->d.variant) : "wcode",
                l->known ? bj_cg_isa_name((bj_cg_isa)l->d.isa) : "?", l->d.tile_m, l->d.tile_t, l->d.unroll,
                l->tuned ? "true" : "false", pp, (unsigned long long)layout_bytes(l));
    }
    fprintf(f, "%s]", b->nl ? "\n  " : "");
}

static void print_json(const bench_run *b, uint64_t need) {
    FILE *f = stdout;
    fprintf(f, "{\n  \"model\": ");
    json_str(f, b->o.model);
    fprintf(f, ",\n  \"arch\": ");
    json_str(f, b->m.cfg.arch);
    fprintf(f, ",\n  \"position\": %lld,\n  \"bytes_per_token\": %llu,\n  \"packed_bytes\": %llu", (long long)b->pos,
            (unsigned long long)b->bpt, (unsigned long long)b->cold.packed_bytes);
    if (b->want_jit) print_json_jit(f, b, need);
    print_json_layouts(f, b);
    fprintf(f, ",\n  \"results\": [");
    for (int i = 0; i < b->nr; i++) {
        const bench_row *r = &b->rows[i];
        char test[48];
        test_name(r, test, sizeof test);
        fprintf(f, "%s\n    {\"engine\": \"%s\", \"threads\": %d, \"test\": \"%s\", \"kind\": \"%s\", "
                   "\"tokens\": %lld, \"depth\": %lld, \"tps\": %.4f, \"tps_sd\": %.4f, \"reps\": %d",
                i ? "," : "", r->engine, r->threads, test, r->tg ? "tg" : "pp", (long long)r->tokens,
                (long long)r->depth, r->s.mean, r->s.sd, r->s.n);
        if (r->tg && r->bw > 0)
            fprintf(f, ", \"tg_gbps\": %.4f, \"bandwidth_gbps\": %.4f, \"roofline_pct\": %.2f, \"roofline_tps\": %.4f",
                    r->gbs, r->bw, r->pct, r->gbs > 0 ? r->bw / r->gbs * r->s.mean : 0);
        fprintf(f, "}");
    }
    fprintf(f, "%s]\n}\n", b->nr ? "\n  " : "");
    fflush(f);
}

int bj_cmd_bench(int argc, char **argv) {
    static bench_run run; /* large: rows and layouts */
    bench_run *b = &run;
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%d", cli_default_threads());
    b->o = (bench_opts){ .engines = "jit", .threads = nthreads, .p = 128, .n = 128, .bw_mib = 1024, .reps = 3 };
    bj_jit_options_default(&b->o.jit);
    parse_bench(argc, argv, &b->o);
    b->o.model = cli_model_path(b->o.model);
    b->nt = parse_list(b->o.threads, b->threads, 64);
    b->nd = b->o.depths ? parse_depths(b->o.depths, b->depths, 16) : 0;
    b->want_jit = strstr(b->o.engines, "jit") != NULL;
    b->want_ref = strstr(b->o.engines, "ref") != NULL;
    if (!b->want_jit && !b->want_ref) cli_die_usage("unknown engine list '%s' (jit, ref)", b->o.engines);

    bj_aot_lib *lib = cli_load_model(b->o.model, &b->m, &b->o.jit);
    int max_threads = 1;
    for (int i = 0; i < b->nt; i++) max_threads = b->threads[i] > max_threads ? b->threads[i] : max_threads;
    cli_choose_ctx(&b->m.graph, max_threads, 1, false, &b->o.jit.n_ctx);
    if (b->want_jit) bench_compile(&b->m.graph, &b->o, &b->cold, &b->warm);
    b->nl = b->want_jit ? bench_layouts(&b->m.graph, &b->o.jit, b->lay, 64) : 0;
    b->pos = b->o.p + b->o.n / 2;
    b->bpt = bj_bench_bytes_per_token(&b->m.graph, b->cold.packed_bytes, b->o.jit.head_q8, b->pos, b->o.jit.kv);
    if (b->want_jit && b->cold.tune_warning[0]) fprintf(stderr, "%s: warning: %s\n", bj_cli_prog, b->cold.tune_warning);
    print_header(b);
    fflush(stdout);
    measure_all(b);
    uint64_t need = bj_bench_resident_need(&b->m.graph, b->want_jit ? b->cold.packed_bytes : 0, b->o.jit.head_q8,
                                           b->o.p + b->o.n, b->o.jit.kv);
    print_memory_md(b, need);
    if (b->o.fmt == FMT_JSON) print_json(b, need);
    if (b->o.plot)
        write_plot(b->o.plot, b->o.model, b->want_jit ? b->cold.cpu : "reference engine", b->rows, b->nr, b->threads, b->nt,
                   b->bpt);
    bj_model_free(&b->m);
    bj_aot_close(lib);
    return 0;
}
