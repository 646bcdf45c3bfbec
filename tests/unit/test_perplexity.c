/* tests/unit/test_perplexity.c -- perplexity (runtime/perplexity.h and `bitjit perplexity`)
 * against the oracles: heldout.txt of kjv-bitnet-11m (packed and master, oracle-ppl.json, HF
 * transformers) and of kjv-bitnet1-11m (oracle.json "ppl", the training code's fp32 forward),
 * with the windows their method states, on the JIT engine and (a subset of windows) the
 * reference engine. Every expected figure is read from the oracle files.
 *
 * Tolerances:
 *  - perplexity within 0.5% of the oracle's (the models' README: what an exact implementation
 *    meets; our logits differ from torch's only by f32 rounding and the int8 activation codes
 *    it can flip);
 *  - each window's NLL sum within ln(1.005) x its predicted tokens of the oracle's: the same
 *    0.5% bound applied to the window's own mean NLL, so no window may hide behind the average;
 *  - and, where the oracle has two models (packed and master: the same network quantized two
 *    ways, whose per-window sums differ by about one nat), the RMS of our per-window error must
 *    be under half the RMS difference between the two oracles' windows: the per-window figures
 *    track the right model, not just a plausible one;
 *  - the reference engine and the JIT engine agree to 1e-6 nats per window (they are specified
 *    to produce the same logits bit for bit). */
#include "runtime/perplexity.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "support/oracle_check.h"
#include "support/shell.h"

/* Sanitizer builds (-O0, instrumented ops) run only a few windows of each model on the JIT engine,
 * compared window by window; the figures over the whole file are checked in the normal build. */
#ifdef BJ_TEST_SANITIZED
#define JIT_WINDOWS 2
#define REF_FIRST_WINDOWS 1
#else
#define JIT_WINDOWS 0 /* all */
#define REF_FIRST_WINDOWS 3
#endif

typedef struct oracle_ppl {
    json_t *root;
    int ctx;
    double ppl;
    int64_t n_tokens, predicted;
    double *win;
    size_t n_win;
    json_t *first_ids; /* may be NULL */
} oracle_ppl;

static double *doubles(json_t *arr, size_t *n) {
    *n = json_array_size(arr);
    double *v = malloc((*n + 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = json_number_value(json_array_get(arr, i));
    return v;
}

/* kjv-bitnet-11m/oracle-ppl.json, key "packed" or "master". */
static oracle_ppl oracle_kjv(const char *key) {
    oracle_ppl o = { .root = bj_test_load_json("models/kjv-bitnet-11m/oracle-ppl.json") };
    json_t *m = json_object_get(o.root, key);
    cr_assert(m, "oracle-ppl.json lacks %s", key);
    o.ctx = (int)json_integer_value(json_object_get(o.root, "window"));
    o.ppl = json_number_value(json_object_get(m, "ppl"));
    o.n_tokens = json_integer_value(json_object_get(o.root, "n_tokens"));
    o.predicted = json_integer_value(json_object_get(m, "predicted_tokens"));
    o.win = doubles(json_object_get(m, "window_nll_sums"), &o.n_win);
    o.first_ids = json_object_get(o.root, "first_ids");
    cr_assert(o.ctx >= 2 && o.ppl > 1 && o.n_win > 0);
    return o;
}

/* kjv-bitnet1-11m/oracle.json: "ppl" {"heldout.txt": {...}}, window from "ppl_method". */
static oracle_ppl oracle_kjv1(void) {
    oracle_ppl o = { .root = bj_test_load_json("models/kjv-bitnet1-11m/oracle.json") };
    json_t *m = json_object_get(json_object_get(o.root, "ppl"), "heldout.txt");
    cr_assert(m, "oracle.json lacks ppl.heldout.txt");
    const char *method = json_string_value(json_object_get(o.root, "ppl_method"));
    cr_assert(method && strstr(method, "non-overlapping") && strstr(method, "BOS prepended"), "%s", method);
    const char *w = strstr(method, "ids[s:s+");
    cr_assert(w && sscanf(w, "ids[s:s+%d]", &o.ctx) == 1, "window size not in the method: %s", method);
    o.ppl = json_number_value(json_object_get(m, "ppl"));
    o.n_tokens = json_integer_value(json_object_get(m, "n_tokens"));
    o.predicted = json_integer_value(json_object_get(m, "predicted_tokens"));
    o.win = doubles(json_object_get(m, "window_nll_sums"), &o.n_win);
    cr_assert(o.ctx >= 2 && o.ppl > 1 && o.n_win > 0);
    return o;
}

static void oracle_free(oracle_ppl *o) {
    free(o->win);
    json_decref(o->root);
}

typedef struct loaded {
    bj_model m;
    int32_t *ids;
    int64_t n_ids;
} loaded;

static void load(loaded *l, const char *model_rel, const char *text_rel) {
    char path[4096];
    bj_error err = { 0 };
    snprintf(path, sizeof path, "%s/%s", BJ_SOURCE_DIR, model_rel);
    cr_assert_eq(bj_model_load(&l->m, path, &err), BJ_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/%s", BJ_SOURCE_DIR, text_rel);
    char *text;
    size_t len;
    cr_assert_eq(bj_read_file(path, &text, &len, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_ppl_tokenize(l->m.tok, text, len, &l->ids, &l->n_ids, &err), BJ_OK, "%s", err.msg);
    free(text);
}

static void unload(loaded *l) {
    free(l->ids);
    bj_model_free(&l->m);
}

static bj_engine *engine(const bj_graph *g, bool ref) {
    return bj_test_engine(ref ? "ref" : "jit", g, BJ_TEST_TMP "/ppl-cache", NULL, NULL);
}

static void run_ppl(bj_engine *e, const loaded *l, int ctx, int64_t first, int64_t max, bj_ppl_result *r) {
    bj_error err = { 0 };
    bj_ppl_options po = { .ctx = ctx, .first_window = first, .max_windows = max };
    cr_assert_eq(bj_perplexity(e, l->ids, l->n_ids, &po, r, &err), BJ_OK, "%s", err.msg);
}

/* Windows first.. of r against the oracle's. */
static void expect_windows(const bj_ppl_result *r, int64_t first, const oracle_ppl *o, const char *what) {
    for (int64_t i = 0; i < r->n_windows; i++) {
        double want = o->win[first + i], tol = log(1.005) * (double)r->window_predicted[i];
        cr_expect(fabs(r->window_nll[i] - want) <= tol, "%s window %lld: NLL sum %.6f, oracle %.6f (tolerance %.3f)",
                  what, (long long)(first + i), r->window_nll[i], want, tol);
    }
}

/* All windows (or, with JIT_WINDOWS, the first ones) against the oracle. */
static void expect_whole(const bj_ppl_result *r, const loaded *l, const oracle_ppl *o, const char *what) {
    cr_expect_eq(l->n_ids, o->n_tokens, "%s: %lld tokens, oracle %lld", what, (long long)l->n_ids,
                 (long long)o->n_tokens);
    cr_expect_eq(r->n_windows_total, (int64_t)o->n_win, "%s windows", what);
    if (JIT_WINDOWS) {
        cr_expect_eq(r->n_windows, JIT_WINDOWS);
        expect_windows(r, 0, o, what);
        return;
    }
    cr_expect_eq(r->n_windows, (int64_t)o->n_win, "%s windows", what);
    cr_expect_eq(r->n_predicted, o->predicted, "%s predicted tokens", what);
    cr_expect(fabs(r->ppl / o->ppl - 1) < 0.005, "%s: perplexity %.4f, oracle %.4f", what, r->ppl, o->ppl);
    if (r->n_windows == (int64_t)o->n_win) expect_windows(r, 0, o, what);
    fprintf(stderr, "%s: perplexity %.4f (oracle %.4f, %+.3f%%) over %lld tokens\n", what, r->ppl, o->ppl,
            100 * (r->ppl / o->ppl - 1), (long long)r->n_predicted);
}

static double rms_diff(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s / (double)n);
}

Test(perplexity, windows_and_tokenization) {
    cr_expect_eq(bj_ppl_n_windows(8130, 256), 32);
    cr_expect_eq(bj_ppl_n_windows(512, 256), 2);
    cr_expect_eq(bj_ppl_n_windows(513, 256), 2, "a trailing window of one token scores nothing");
    cr_expect_eq(bj_ppl_n_windows(514, 256), 3);
    cr_expect_eq(bj_ppl_n_windows(1, 256), 0);
    cr_expect_eq(bj_ppl_n_windows(5, 1), 0);

    oracle_ppl o = oracle_kjv("packed");
    loaded l;
    load(&l, "models/kjv-bitnet-11m/packed", "models/kjv-bitnet-11m/heldout.txt");
    cr_expect_eq(l.n_ids, o.n_tokens);
    for (size_t i = 0; i < json_array_size(o.first_ids); i++)
        cr_expect_eq(l.ids[i], json_integer_value(json_array_get(o.first_ids, i)), "id %zu", i);
    cr_expect_eq(l.ids[0], bj_tok_bos(l.m.tok), "BOS prepended");

    bj_engine *e = engine(&l.m.graph, false);
    bj_error err = { 0 };
    bj_ppl_result r;
    bj_ppl_options bad = { .ctx = e->max_seq + 1 };
    cr_expect_eq(bj_perplexity(e, l.ids, l.n_ids, &bad, &r, &err), BJ_E_INVALID);
    bad.ctx = 1;
    cr_expect_eq(bj_perplexity(e, l.ids, l.n_ids, &bad, &r, &err), BJ_E_INVALID);
    bj_ppl_options far = { .ctx = 256, .first_window = 32 };
    cr_expect_eq(bj_perplexity(e, l.ids, l.n_ids, &far, &r, &err), BJ_E_INVALID, "window past the end");
    bj_ppl_options one = { .ctx = 256 };
    cr_expect_eq(bj_perplexity(e, l.ids, 1, &one, &r, &err), BJ_E_INVALID, "one token predicts nothing");
    bj_engine_free(e);
    unload(&l);
    oracle_free(&o);
}

/* kjv-bitnet-11m packed or master on the JIT engine, all windows, against oracle-ppl.json. */
static void kjv_jit(int k) {
    oracle_ppl op = oracle_kjv("packed"), om = oracle_kjv("master");
    cr_assert_eq(op.n_win, om.n_win);
    double between = rms_diff(op.win, om.win, op.n_win);
    const char *models[] = { "packed", "master" };
    oracle_ppl *os[] = { &op, &om };
    char rel[256];
    snprintf(rel, sizeof rel, "models/kjv-bitnet-11m/%s", models[k]);
    loaded l;
    load(&l, rel, "models/kjv-bitnet-11m/heldout.txt");
    bj_engine *e = engine(&l.m.graph, false);
    bj_ppl_result r;
    run_ppl(e, &l, os[k]->ctx, 0, JIT_WINDOWS, &r);
    expect_whole(&r, &l, os[k], models[k]);
    if (!JIT_WINDOWS && r.n_windows == (int64_t)os[k]->n_win) {
        double own = rms_diff(r.window_nll, os[k]->win, os[k]->n_win);
        cr_expect(own < 0.5 * between, "%s: per-window RMS error %.3f vs the oracle, not under half the %.3f that "
                                       "separates the packed and master oracles", models[k], own, between);
        fprintf(stderr, "%s: per-window RMS error %.3f nats (packed-vs-master oracle RMS %.3f)\n", models[k], own,
                between);
    }
    bj_ppl_result_free(&r);
    bj_engine_free(e);
    unload(&l);
    oracle_free(&op);
    oracle_free(&om);
}

Test(perplexity, kjv_packed_jit_matches_oracle, .timeout = 600) { kjv_jit(0); }
Test(perplexity, kjv_master_jit_matches_oracle, .timeout = 600) { kjv_jit(1); }

/* The 1-bit model (kjv-bitnet1-11m master) on the JIT engine, against oracle.json "ppl". */
Test(perplexity, kjv1_binary_jit_matches_oracle, .timeout = 600) {
    oracle_ppl o = oracle_kjv1();
    loaded l;
    load(&l, "models/kjv-bitnet1-11m/master", "models/kjv-bitnet1-11m/heldout.txt");
    bj_engine *e = engine(&l.m.graph, false);
    bj_ppl_result r;
    run_ppl(e, &l, o.ctx, 0, JIT_WINDOWS, &r);
    expect_whole(&r, &l, &o, "kjv-bitnet1 master");
    bj_ppl_result_free(&r);
    bj_engine_free(e);
    unload(&l);
    oracle_free(&o);
}

/* The reference engine (single-threaded, ~2 s a window here) on a subset of the windows: the first
 * ones and the short last one of packed, the first of master and of the 1-bit model; each against
 * the oracle and against the JIT engine's figures for the same windows. */
static void ref_subset(const char *model_rel, const char *text_rel, const oracle_ppl *o, int64_t first, int64_t n,
                       const char *what) {
    loaded l;
    load(&l, model_rel, text_rel);
    bj_engine *ref = engine(&l.m.graph, true), *jit = engine(&l.m.graph, false);
    bj_ppl_result rr, rj;
    run_ppl(ref, &l, o->ctx, first, n, &rr);
    run_ppl(jit, &l, o->ctx, first, n, &rj);
    cr_assert_eq(rr.n_windows, n);
    cr_assert_eq(rj.n_windows, n);
    expect_windows(&rr, first, o, what);
    for (int64_t i = 0; i < n; i++)
        cr_expect(fabs(rr.window_nll[i] - rj.window_nll[i]) <= 1e-6, "%s window %lld: ref %.9f, jit %.9f", what,
                  (long long)(first + i), rr.window_nll[i], rj.window_nll[i]);
    bj_ppl_result_free(&rr);
    bj_ppl_result_free(&rj);
    bj_engine_free(ref);
    bj_engine_free(jit);
    unload(&l);
}

Test(perplexity, ref_engine_subset_matches_oracle, .timeout = 600) {
    oracle_ppl op = oracle_kjv("packed"), om = oracle_kjv("master"), o1 = oracle_kjv1();
    ref_subset("models/kjv-bitnet-11m/packed", "models/kjv-bitnet-11m/heldout.txt", &op, 0, REF_FIRST_WINDOWS,
               "ref packed");
    ref_subset("models/kjv-bitnet-11m/packed", "models/kjv-bitnet-11m/heldout.txt", &op, (int64_t)op.n_win - 1, 1,
               "ref packed");
#ifndef BJ_TEST_SANITIZED /* the reference engine at -O0 under a sanitizer: packed only */
    ref_subset("models/kjv-bitnet-11m/master", "models/kjv-bitnet-11m/heldout.txt", &om, 0, 1, "ref master");
    ref_subset("models/kjv-bitnet1-11m/master", "models/kjv-bitnet1-11m/heldout.txt", &o1, 0, 1, "ref kjv-bitnet1");
#endif
    oracle_free(&op);
    oracle_free(&om);
    oracle_free(&o1);
}

/* The command: final figure and token count on stdout, --help, a missing -f. The figure is checked
 * against the oracle (2 windows, --chunks, so it stays quick: compared with the per-window sums). */
Test(perplexity, cli, .timeout = 300) {
    char cmd[8192], out[65536];
    (void)tool;
    oracle_ppl o = oracle_kjv("packed");
    snprintf(cmd, sizeof cmd, "'%s' perplexity -q -t 2 -f '%s/models/kjv-bitnet-11m/heldout.txt' --ctx %d --chunks 2 "
                              "--per-window --cache-dir '%s/ppl-cache'",
             BJ_BITJIT_EXE, BJ_SOURCE_DIR, o.ctx, BJ_TEST_TMP);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    double got, w0, w1;
    long long n_pred, n_win, ctx, n_tok;
    const char *p = strstr(out, "perplexity: ");
    cr_assert(p, "%s", out);
    cr_assert_eq(sscanf(p, "perplexity: %lf over %lld predicted tokens (%lld windows of %lld, %lld tokens", &got,
                        &n_pred, &n_win, &ctx, &n_tok), 5, "%s", out);
    cr_expect_eq(n_pred, 2 * (o.ctx - 1));
    cr_expect_eq(n_win, 2);
    cr_expect_eq(ctx, o.ctx);
    cr_expect_eq(n_tok, o.n_tokens);
    cr_assert(sscanf(strstr(out, "window 0:"), "window 0: %*d predicted tokens, NLL sum %lf", &w0) == 1, "%s", out);
    cr_assert(sscanf(strstr(out, "window 1:"), "window 1: %*d predicted tokens, NLL sum %lf", &w1) == 1, "%s", out);
    double want = exp((o.win[0] + o.win[1]) / (double)n_pred);
    cr_expect(fabs(got / want - 1) < 0.005, "perplexity %.4f, oracle over the same windows %.4f", got, want);
    cr_expect(fabs(w0 - o.win[0]) <= log(1.005) * (o.ctx - 1), "window 0 %.6f vs %.6f", w0, o.win[0]);
    cr_expect(!strstr(out, "bitjit:"), "-q prints no progress:\n%s", out);

    /* Without -q on a pipe: no bar escape codes in the output. */
    snprintf(cmd, sizeof cmd, "'%s' perplexity -t 2 -f '%s/models/kjv-bitnet-11m/heldout.txt' --chunks 1 "
                              "--cache-dir '%s/ppl-cache'", BJ_BITJIT_EXE, BJ_SOURCE_DIR, BJ_TEST_TMP);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(!strchr(out, '\r') && !strchr(out, '\033'), "a pipe gets plain lines:\n%s", out);
    cr_expect(strstr(out, "perplexity: "), "%s", out);

    /* On a terminal (script(1) gives it one): a bar redrawn with \r showing the running value;
     * with -q, none. */
    if (sh("command -v script", out, sizeof out) == 0) {
        for (int q = 0; q < 2; q++) {
            snprintf(cmd, sizeof cmd, "script -qec \"'%s' perplexity %s -t 2 -f '%s/models/kjv-bitnet-11m/heldout.txt' "
                                      "--chunks 2 --cache-dir '%s/ppl-cache'\" /dev/null",
                     BJ_BITJIT_EXE, q ? "-q" : "", BJ_SOURCE_DIR, BJ_TEST_TMP);
            cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
            bool bar = strstr(out, "\rperplexity") || strstr(out, "\033[Kperplexity [");
            cr_expect(q ? !bar : bar && strstr(out, "ppl "), "%s: %s", q ? "-q" : "tty", out);
            cr_expect(strstr(out, "perplexity: "), "%s", out);
        }
    }

    snprintf(cmd, sizeof cmd, "'%s' perplexity --help", BJ_BITJIT_EXE);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    const char *flags[] = { "--file", "--ctx", "--chunks", "--per-window", "--model", "--threads", "--engine",
                            "--mcpu", "--mattr", "--cache-dir", "--no-cache", "--verbose", "--quiet", "--help" };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
        cr_expect(strstr(out, flags[i]), "help lacks %s", flags[i]);
    snprintf(cmd, sizeof cmd, "'%s' perplexity", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 2, "%s", out);
    cr_expect(strstr(out, "-f FILE is required"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' perplexity -f /no/such/file", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "/no/such/file"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' perplexity -q -f '%s/models/kjv-bitnet-11m/heldout.txt' --ctx 100000",
             BJ_BITJIT_EXE, BJ_SOURCE_DIR);
    cr_expect_eq(sh(cmd, out, sizeof out), 2, "%s", out);
    cr_expect(strstr(out, "exceeds the model's context"), "%s", out);
    /* An empty text is BOS alone: nothing to predict. */
    snprintf(cmd, sizeof cmd, ": > '%s/ppl-empty.txt' && '%s' perplexity -q -f '%s/ppl-empty.txt'", BJ_TEST_TMP,
             BJ_BITJIT_EXE, BJ_TEST_TMP);
    cr_expect_eq(sh(cmd, out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "too few to predict"), "%s", out);
    oracle_free(&o);
}
