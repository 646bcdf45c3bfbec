/* runtime/perplexity.c -- perplexity over non-overlapping windows, each one prefill step with the
 * logits of every position (see perplexity.h for the method). */
#include "runtime/perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t bj_ppl_n_windows(int64_t n_ids, int64_t ctx) {
    if (n_ids < 2 || ctx < 2) return 0;
    int64_t n = n_ids / ctx;
    if (n_ids % ctx >= 2) n++; /* a trailing window of one token predicts nothing */
    return n;
}

bj_status bj_ppl_tokenize(const bj_tokenizer *tok, const char *text, size_t len, int32_t **ids, int64_t *n_ids,
                          bj_error *err) {
    size_t n = 0;
    *ids = NULL;
    *n_ids = 0;
    BJ_TRY(bj_tok_encode(tok, text, len, true, true, ids, &n, err));
    *n_ids = (int64_t)n;
    return BJ_OK;
}

/* Summed NLL of window w[0..len) predicting w[1..len) from logits [len][V]. */
static double window_nll(const float *logits, const int32_t *w, int64_t len, int64_t V) {
    double sum = 0;
    for (int64_t t = 0; t + 1 < len; t++) {
        const float *row = logits + t * V;
        float mx = row[0];
        for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        double z = 0;
        for (int64_t v = 0; v < V; v++) z += exp((double)row[v] - (double)mx);
        sum += (double)mx + log(z) - (double)row[w[t + 1]];
    }
    return sum;
}

void bj_ppl_result_free(bj_ppl_result *r) {
    free(r->window_nll);
    free(r->window_predicted);
    memset(r, 0, sizeof *r);
}

bj_status bj_perplexity(bj_engine *e, const int32_t *ids, int64_t n_ids, const bj_ppl_options *o,
                        bj_ppl_result *r, bj_error *err) {
    memset(r, 0, sizeof *r);
    int64_t ctx = o->ctx;
    if (ctx < 2 || ctx > e->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID,
                       "perplexity: window of %lld tokens: must be in [2, %lld] (the model's context)", (long long)ctx,
                       (long long)e->max_seq);
    int64_t total = bj_ppl_n_windows(n_ids, ctx);
    if (total == 0)
        return BJ_FAIL(err, BJ_E_INVALID, "perplexity: %lld tokens: at least 2 are needed to predict one",
                       (long long)n_ids);
    if (o->first_window < 0 || o->first_window >= total || o->max_windows < 0)
        return BJ_FAIL(err, BJ_E_INVALID, "perplexity: first window %lld out of range [0, %lld)",
                       (long long)o->first_window, (long long)total);
    int64_t todo = total - o->first_window;
    if (o->max_windows && o->max_windows < todo) todo = o->max_windows;

    int64_t V = e->n_vocab;
    float *logits = malloc((size_t)(ctx * V) * sizeof *logits);
    r->window_nll = malloc((size_t)todo * sizeof *r->window_nll);
    r->window_predicted = malloc((size_t)todo * sizeof *r->window_predicted);
    if (!logits || !r->window_nll || !r->window_predicted) {
        free(logits);
        bj_ppl_result_free(r);
        return BJ_FAIL(err, BJ_E_NOMEM, "perplexity: out of memory for %lld x %lld logits", (long long)ctx,
                       (long long)V);
    }
    r->n_windows_total = total;
    bj_status st = BJ_OK;
    for (int64_t i = 0; i < todo; i++) {
        int64_t s = (o->first_window + i) * ctx;
        int64_t len = n_ids - s < ctx ? n_ids - s : ctx;
        bj_engine_reset(e);
        if ((st = bj_engine_forward(e, ids + s, len, true, logits, err)) != BJ_OK) break;
        double nll = window_nll(logits, ids + s, len, V);
        r->window_nll[i] = nll;
        r->window_predicted[i] = len - 1;
        r->n_windows = i + 1;
        r->nll_sum += nll;
        r->n_predicted += len - 1;
        r->ppl = exp(r->nll_sum / (double)r->n_predicted);
        bj_ppl_progress p = { .done = i + 1, .total = todo, .n_predicted = r->n_predicted, .nll_sum = r->nll_sum,
                              .ppl = r->ppl };
        if (o->on_window && !o->on_window(o->ud, &p)) break;
    }
    free(logits);
    if (st != BJ_OK) bj_ppl_result_free(r);
    return st;
}
