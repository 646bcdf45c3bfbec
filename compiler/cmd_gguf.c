/* compiler/cmd_gguf.c -- the `bitjitc convert` and `bitjitc synth` subcommands (drivers: they
 * parse flags, print progress and errors on stderr and return exit codes; the work is in
 * frontends/gguf_write.c, and frontends/b1_model.c for bitjit's binary format).
 *
 *   bitjitc convert MODEL -o OUT.gguf --type i2_s|tq1_0|tq2_0|f16|bf16 [--quiet]
 *   bitjitc convert MODEL -o OUT_DIR --type b1 [--quiet]       (binary models, b1_model.h)
 *   bitjitc synth --shape 2b4t|large|3b --type TYPE|b1 -o OUT [--seed N] [--quiet]
 *
 * Exit codes: 0 done, 1 the conversion failed (message names the file/tensor), 2 bad usage.
 * Output is written to a temporary file renamed over OUT at the very end, so a failure never
 * leaves a partial OUT. argv[0] is the subcommand name. */
#include "compiler/compiler.h"
#include "frontends/b1_model.h"
#include "frontends/gguf.h"
#include "frontends/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cmd_opts {
    const char *model, *out, *type, *shape, *seed;
    bool quiet, help;
} cmd_opts;

static const char k_convert_usage[] =
    "usage: bitjitc convert MODEL -o OUT.gguf --type i2_s|tq1_0|tq2_0|f16|bf16 [--quiet]\n"
    "       bitjitc convert MODEL -o OUT_DIR --type b1 [--quiet]\n"
    "\n"
    "Writes an HF BitNet model (directory or .safetensors; packed or master weights) as GGUF.\n"
    "  i2_s           bitnet.cpp's I2_S (arch bitnet-b1.58), per-tensor scale inline\n"
    "  tq1_0, tq2_0   llama.cpp's ternary blocks (arch bitnet, hidden_activation relu2/silu);\n"
    "                 projections whose rows are not a multiple of 256 fall back to f16\n"
    "  f16, bf16      dense +-1 weights\n"
    "  b1             a binary (1-bit BitNet) model in bitjit's own format, 1 bit per weight: an HF\n"
    "                 directory OUT_DIR (docs/formats-bitjit.md) that `bitjit run -m OUT_DIR` loads\n"
    "For the llama.cpp types the exact f32 scale of each projection is a '<proj>.scale' tensor.\n"
    "  -o, --output PATH   output file (written to a temporary file, renamed when complete)\n"
    "  -t, --type TYPE     output weight type\n"
    "  -q, --quiet         no progress on stderr\n"
    "  -h, --help          show this help\n";

static const char k_synth_usage[] =
    "usage: bitjitc synth --shape 2b4t|large|3b|tiny --type i2_s|tq1_0|tq2_0|f16|bf16|b1 -o OUT [--seed N]\n"
    "\n"
    "Writes a random BitNet model of a published shape for benchmarks, streaming tensor by tensor:\n"
    "  2b4t   hidden 2560, ffn 6912, 30 layers, 20 heads, 5 KV heads, vocab 128256, ReLU^2, tied\n"
    "  large  hidden 1536, ffn 4096, 24 layers, 16 heads, vocab 32002, SiLU (1bitLLM large)\n"
    "  3b     hidden 3200, ffn 8640, 26 layers, 32 heads, vocab 32002, SiLU (i2_s/f16/bf16 only)\n"
    "  tiny   hidden 256, ffn 512, 2 layers, 4 heads, 2 KV heads, vocab 384, ReLU^2 (for tests)\n"
    "Weights: Gaussian masters ternarized by absmean (about 31% zeros). The tokenizer is a byte-level\n"
    "vocab of the shape's size (ids 0..255 = bytes, no merges); its text output is not meaningful.\n"
    "--type b1 writes a binary model instead (random signs, one bit per weight) as a directory in\n"
    "bitjit's own format (docs/formats-bitjit.md), with a 256-token byte-level tokenizer.\n"
    "      --shape NAME    the shape: 2b4t, large, 3b or tiny (above)\n"
    "  -o, --output PATH   output file\n"
    "  -t, --type TYPE     weight type\n"
    "  -s, --seed N        random seed (default 1); the same seed gives the same file\n"
    "  -q, --quiet         no progress on stderr\n"
    "  -h, --help          show this help\n";

/* Flags with a value: "-o X", "--output X", "--output=X". Returns 0, or 2 after printing. */
static int take_value(const char *cmd, int argc, char **argv, int *i, const char *s, const char *l,
                      const char **out) {
    const char *a = argv[*i];
    size_t ln = strlen(l);
    if (!strncmp(a, l, ln) && a[ln] == '=') { *out = a + ln + 1; return 0; }
    if (strcmp(a, s) && strcmp(a, l)) return -1;
    if (*i + 1 >= argc) {
        fprintf(stderr, "bitjitc %s: %s needs a value\n", cmd, a);
        return 2;
    }
    *out = argv[++*i];
    return 0;
}

static int parse(const char *cmd, int argc, char **argv, cmd_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { o->help = true; continue; }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { o->quiet = true; continue; }
        if ((r = take_value(cmd, argc, argv, &i, "-o", "--output", &o->out)) >= 0 ||
            (r = take_value(cmd, argc, argv, &i, "-t", "--type", &o->type)) >= 0 ||
            (r = take_value(cmd, argc, argv, &i, "-s", "--seed", &o->seed)) >= 0 ||
            (r = take_value(cmd, argc, argv, &i, "--shape", "--shape", &o->shape)) >= 0) {
            if (r) return r;
            continue;
        }
        if (a[0] == '-' || o->model) {
            fprintf(stderr, "bitjitc %s: unexpected argument '%s' (see --help)\n", cmd, a);
            return 2;
        }
        o->model = a;
    }
    return 0;
}

static void progress(void *ud, const char *what, uint64_t done, uint64_t total) {
    const char *cmd = ud;
    if (done == total || done % 16 == 1)
        fprintf(stderr, "bitjitc %s: [%llu/%llu] %s\n", cmd, (unsigned long long)done, (unsigned long long)total, what);
}

static int usage_error(const char *cmd, const char *msg, const char *arg) {
    fprintf(stderr, "bitjitc %s: %s%s%s (see --help)\n", cmd, msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

static int fail(const char *cmd, const bj_error *err) {
    fprintf(stderr, "bitjitc %s: error: %s\n", cmd, err->msg);
    return 1;
}

/* --type b1 (bitjit's binary format) sets *b1; any other type must be a GGUF one. */
static int common_checks(const char *cmd, const cmd_opts *o, bj_gguf_outtype *t, bool *b1) {
    if (!o->out) return usage_error(cmd, "missing -o OUT", NULL);
    if (!o->type) return usage_error(cmd, "missing --type", NULL);
    *b1 = !strcmp(o->type, "b1");
    if (!*b1 && !bj_gguf_outtype_parse(o->type, t))
        return usage_error(cmd, "unknown --type (i2_s, tq1_0, tq2_0, f16, bf16, b1)", o->type);
    return 0;
}

int bj_cmd_convert(int argc, char **argv) {
    cmd_opts o = { 0 };
    bj_gguf_outtype t;
    bool b1;
    int r = parse("convert", argc, argv, &o);
    if (r) return r;
    if (o.help) { fputs(k_convert_usage, stdout); return 0; }
    if (o.seed || o.shape) return usage_error("convert", "--seed and --shape belong to `bitjitc synth`", NULL);
    if (!o.model) return usage_error("convert", "missing MODEL", NULL);
    if ((r = common_checks("convert", &o, &t, &b1))) return r;
    bj_error err = { 0 };
    bj_model m;
    if (bj_model_load(&m, o.model, &err) != BJ_OK) return fail("convert", &err);
    if (!o.quiet) fprintf(stderr, "bitjitc convert: %s -> %s (%s)\n", o.model, o.out, o.type);
    bj_status s = b1 ? bj_b1_convert(&m, o.model, o.out, o.quiet ? NULL : progress, (void *)"convert", &err)
                     : bj_gguf_convert(&m.graph, &m.cfg, m.tok, t, o.out, o.quiet ? NULL : progress, (void *)"convert", &err);
    bj_model_free(&m);
    return s == BJ_OK ? 0 : fail("convert", &err);
}

int bj_cmd_synth(int argc, char **argv) {
    cmd_opts o = { 0 };
    bj_gguf_outtype t;
    bool b1;
    int r = parse("synth", argc, argv, &o);
    if (r) return r;
    if (o.help) { fputs(k_synth_usage, stdout); return 0; }
    if (o.model) return usage_error("synth", "unexpected argument", o.model);
    if (!o.shape) return usage_error("synth", "missing --shape", NULL);
    const bj_gguf_shape *sh = bj_gguf_shape_find(o.shape);
    if (!sh) return usage_error("synth", "unknown --shape (2b4t, large, 3b, tiny)", o.shape);
    if ((r = common_checks("synth", &o, &t, &b1))) return r;
    uint64_t seed = 1;
    if (o.seed) {
        char *end;
        errno = 0;
        seed = strtoull(o.seed, &end, 10);
        if (errno || !*o.seed || *end || o.seed[0] == '-') return usage_error("synth", "--seed wants a non-negative integer", o.seed);
    }
    bj_error err = { 0 };
    if (!o.quiet) fprintf(stderr, "bitjitc synth: %s %s seed %llu -> %s\n", o.shape, o.type, (unsigned long long)seed, o.out);
    bj_status s = b1 ? bj_b1_synth(sh, seed, o.out, o.quiet ? NULL : progress, (void *)"synth", &err)
                     : bj_gguf_synth(sh, t, seed, o.out, o.quiet ? NULL : progress, (void *)"synth", &err);
    return s == BJ_OK ? 0 : fail("synth", &err);
}
