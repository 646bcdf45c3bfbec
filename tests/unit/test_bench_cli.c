/* tests/unit/test_bench_cli.c -- `bitjit bench` output formats on a tiny run (-p 4 -n 4 -r 1
 * --bw-mib 16): the JSON parses and has the header facts, the per-shape kernel layouts and one
 * result per test; the CSV has its header and one well-formed line per test; --plot writes a
 * well-formed SVG (xmllint when installed, else structural checks); the markdown default keeps
 * its tables; a bad --format is a usage error. Speeds are printed by bench, never asserted. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/files.h"
#include "support/shell.h"

#define TINY "-p 4 -n 4 -r 1 --bw-mib 16 -t 1,2 --cache-dir '" BJ_TEST_TMP "/bench-cache' --no-tune-db"

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/bench-%d-%s", BJ_TEST_TMP, (int)getpid(), name);
}

/* Runs `bitjit bench TINY extra > out` (stderr, where progress goes, kept out of the file: sh()
 * adds 2>&1 after the group); fails the test on a non-zero exit. */
static void bench(const char *extra, const char *out) {
    char cmd[8192], log[16384], exe[4096];
    snprintf(cmd, sizeof cmd, "{ '%s' bench " TINY " %s > '%s'; }", tool("bitjit", exe, sizeof exe), extra, out);
    cr_assert_eq(sh(cmd, log, sizeof log), 0, "%s: %s", cmd, log);
}

Test(bench_cli, json, .timeout = 600) {
    char out[4096];
    tmp_path(out, sizeof out, "out.json");
    bench("-o json --engine jit,ref", out);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    cr_assert_not_null(j, "bench JSON does not parse: %s (line %d)", je.text, je.line);
    cr_expect(json_is_string(json_object_get(j, "model")));
    cr_expect_gt(json_integer_value(json_object_get(j, "bytes_per_token")), 0);
    json_t *jit = json_object_get(j, "jit");
    cr_assert(json_is_object(jit));
    cr_expect(json_is_string(json_object_get(jit, "cpu")));
    cr_expect_eq(json_integer_value(json_object_get(jit, "matmuls")), 42);
    cr_expect_eq(json_integer_value(json_object_get(jit, "tuned")), 0);
    cr_expect_str_eq(json_string_value(json_object_get(jit, "tune_db")), "(off)");
    json_t *lay = json_object_get(j, "layouts");
    cr_assert_eq(json_array_size(lay), 4, "kjv has 4 distinct matmul shapes");
    size_t i;
    json_t *v;
    long long sum = 0;
    json_array_foreach(lay, i, v) {
        cr_expect_gt(json_integer_value(json_object_get(v, "bytes")), 0);
        cr_expect(json_is_string(json_object_get(v, "variant")));
        sum += json_integer_value(json_object_get(v, "bytes")) * json_integer_value(json_object_get(v, "matmuls"));
    }
    cr_expect_eq(sum, json_integer_value(json_object_get(j, "packed_bytes")), "layout bytes add up to the packed bytes");
    json_t *res = json_object_get(j, "results");
    cr_assert_eq(json_array_size(res), 6, "jit pp/tg at 1 and 2 threads, ref pp/tg");
    json_array_foreach(res, i, v) {
        const char *kind = json_string_value(json_object_get(v, "kind"));
        cr_assert_not_null(kind);
        cr_expect(!strcmp(kind, "pp") || !strcmp(kind, "tg"));
        cr_expect_eq(json_integer_value(json_object_get(v, "tokens")), 4);
        cr_expect_gt(json_real_value(json_object_get(v, "tps")), 0);
        bool jit_tg = !strcmp(kind, "tg") && !strcmp(json_string_value(json_object_get(v, "engine")), "jit");
        cr_expect_eq(json_object_get(v, "roofline_pct") != NULL, jit_tg, "roofline only for jit decode");
        if (jit_tg) cr_expect_gt(json_real_value(json_object_get(v, "roofline_tps")), 0);
    }
    json_decref(j);
    unlink(out);
}

Test(bench_cli, csv, .timeout = 600) {
    char out[4096];
    tmp_path(out, sizeof out, "out.csv");
    bench("--format csv", out);
    char *text = read_all(out, NULL), *save = NULL;
    int lines = 0;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save), lines++) {
        int commas = 0;
        for (char *c = l; *c; c++) commas += *c == ',';
        cr_expect_eq(commas, 10, "line %d has %d fields: %s", lines, commas + 1, l);
        if (lines == 0) {
            cr_expect_str_eq(l, "model,engine,threads,test,tokens,tps,tps_sd,reps,tg_gbps,bandwidth_gbps,roofline_pct");
            continue;
        }
        char model[4096], eng[16], test[8];
        int threads, tokens, reps;
        double tps, sd;
        cr_expect_eq(sscanf(l, "%4095[^,],%15[^,],%d,%7[^,],%d,%lf,%lf,%d", model, eng, &threads, test, &tokens, &tps, &sd,
                            &reps), 8, "%s", l);
        cr_expect_str_eq(eng, "jit");
        cr_expect(threads == 1 || threads == 2);
        cr_expect(!strcmp(test, "pp") || !strcmp(test, "tg"), "%s", test);
        cr_expect_eq(tokens, 4);
        cr_expect_gt(tps, 0);
    }
    cr_expect_eq(lines, 5, "header + pp/tg at 1 and 2 threads");
    free(text);
    unlink(out);
}

Test(bench_cli, plot_svg_and_markdown, .timeout = 600) {
    char out[4096], svg[4096];
    tmp_path(out, sizeof out, "out.md");
    tmp_path(svg, sizeof svg, "plot.svg");
    unlink(svg);
    char extra[4200];
    snprintf(extra, sizeof extra, "--plot '%s'", svg);
    bench(extra, out);
    char *md = read_all(out, NULL);
    cr_expect(strstr(md, "| engine | threads | test | t/s |") != NULL, "%s", md);
    cr_expect(strstr(md, "| matmul shape (M x K) | weights | matmuls | kernel layout | prefill kernel (>= 8 tokens) | bytes each | bytes all |") != NULL,
              "%s", md);
    cr_expect(strstr(md, "| 1024x384 | ternary | 12 | dot2/") != NULL, "%s", md);
    cr_expect(strstr(md, "| jit | 2 | tg4 |") != NULL, "%s", md);
    free(md);
    char *s = read_all(svg, NULL);
    cr_expect(!strncmp(s, "<?xml", 5));
    cr_expect(strstr(s, "<svg xmlns=\"http://www.w3.org/2000/svg\"") != NULL);
    cr_expect(strstr(s, "</svg>\n") != NULL);
    cr_expect(strstr(s, "roofline") != NULL);
    cr_expect(strstr(s, "<polyline") != NULL);
    int open = 0, close = 0;
    for (char *p = s; (p = strstr(p, "<g")) != NULL; p++) open++;
    for (char *p = s; (p = strstr(p, "</g>")) != NULL; p++) close++;
    cr_expect_eq(open, close, "unbalanced <g> elements");
    free(s);
    char cmd[8192], log[16384];
    if (sh("command -v xmllint", log, sizeof log) == 0) {
        snprintf(cmd, sizeof cmd, "xmllint --noout '%s'", svg);
        cr_expect_eq(sh(cmd, log, sizeof log), 0, "xmllint: %s", log);
    }
    unlink(svg);
    unlink(out);
}

Test(bench_cli, bad_format_is_a_usage_error) {
    char cmd[8192], log[16384];
    snprintf(cmd, sizeof cmd, "'%s' bench --format xml", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, log, sizeof log), 2, "%s", log);
    cr_expect(strstr(log, "unknown --format 'xml'") != NULL, "%s", log);
}

/* --depth: one more decode row per thread count and depth, named tgN@dD, whose bytes per token
 * count the KV cache of its positions (so its roofline is below the plain decode row's); a depth
 * past the model's context is an error naming it. */
Test(bench_cli, depth_rows, .timeout = 600) {
    char out[4096];
    tmp_path(out, sizeof out, "depth.json");
    bench("-o json --depth 8,100", out);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    cr_assert_not_null(j, "bench JSON does not parse: %s (line %d)", je.text, je.line);
    json_t *res = json_object_get(j, "results"), *v;
    cr_assert_eq(json_array_size(res), 8, "pp, tg, tg@d8, tg@d100 at 1 and 2 threads");
    size_t i;
    int n_depth = 0;
    double roof_plain = 0, roof_d100 = 0;
    json_array_foreach(res, i, v) {
        const char *test = json_string_value(json_object_get(v, "test"));
        long long depth = json_integer_value(json_object_get(v, "depth"));
        cr_assert_not_null(test);
        if (depth) {
            char want[32];
            snprintf(want, sizeof want, "tg4@d%lld", depth);
            cr_expect_str_eq(test, want);
            cr_expect(depth == 8 || depth == 100);
            cr_expect_gt(json_real_value(json_object_get(v, "tps")), 0);
            n_depth++;
        }
        if (json_integer_value(json_object_get(v, "threads")) == 1 && !strcmp(json_string_value(json_object_get(v, "kind")), "tg")) {
            if (!depth) roof_plain = json_real_value(json_object_get(v, "roofline_tps"));
            if (depth == 100) roof_d100 = json_real_value(json_object_get(v, "roofline_tps"));
        }
    }
    cr_expect_eq(n_depth, 4);
    cr_expect_gt(roof_plain, roof_d100, "the KV cache of 100 positions adds bytes a token (%g vs %g)", roof_plain, roof_d100);
    json_decref(j);
    unlink(out);

    char cmd[8192], log[16384], exe[4096];
    snprintf(cmd, sizeof cmd, "'%s' bench " TINY " --depth 100000", tool("bitjit", exe, sizeof exe));
    cr_expect_neq(sh(cmd, log, sizeof log), 0, "%s", log);
    cr_expect(strstr(log, "exceed the model's context") != NULL, "%s", log);
}
