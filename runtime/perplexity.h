/* runtime/perplexity.h -- perplexity of a text under a model, for `bitjit perplexity`, the tests
 * and any program that links the runtime.
 *
 * The method is the one the oracles state (models/kjv-bitnet-11m/oracle-ppl.json, "method"):
 * the text is tokenized with BOS prepended; the ids are cut into consecutive non-overlapping
 * windows ids[s:s+ctx] for s = 0, ctx, 2 ctx, ...; each window runs from an empty KV cache as
 * one prefill step returning the logits of all its positions, and predicts its tokens 1..len-1
 * from its own prefix (so a window of len tokens scores len-1 of them; a trailing window of one
 * token scores none and is not counted). NLL = logsumexp(logits) - logit[target], in double;
 * ppl = exp(sum of NLL / number of predicted tokens). */
#ifndef BJ_PERPLEXITY_H
#define BJ_PERPLEXITY_H

#include "runtime/runtime.h"

/* What the progress callback sees after each window. */
typedef struct bj_ppl_progress {
    int64_t done, total;   /* windows evaluated so far, windows to evaluate */
    int64_t n_predicted;   /* tokens scored so far */
    double nll_sum;        /* their summed NLL */
    double ppl;            /* exp(nll_sum / n_predicted): the running value */
} bj_ppl_progress;

typedef struct bj_ppl_options {
    int64_t ctx;           /* window length in tokens, 2 .. e->max_seq */
    int64_t first_window;  /* evaluate windows first_window .. (default 0) */
    int64_t max_windows;   /* at most this many of them; 0 = all the rest */
    /* Called after each window; may be NULL. Return false to stop early: the result then
     * covers the windows evaluated so far. */
    bool (*on_window)(void *ud, const bj_ppl_progress *p);
    void *ud;
} bj_ppl_options;

typedef struct bj_ppl_result {
    int64_t n_windows;          /* windows evaluated */
    int64_t n_windows_total;    /* windows in the whole input (see bj_ppl_n_windows) */
    int64_t n_predicted;        /* tokens scored */
    double nll_sum;             /* their summed NLL (nats) */
    double ppl;                 /* exp(nll_sum / n_predicted) */
    double *window_nll;         /* [n_windows]: each evaluated window's NLL sum */
    int64_t *window_predicted;  /* [n_windows]: tokens each scored */
} bj_ppl_result;

/* Windows of ctx tokens that n_ids ids make (a trailing window of one token scores nothing and
 * is not counted). */
int64_t bj_ppl_n_windows(int64_t n_ids, int64_t ctx);

/* Text to ids as the method says: the model's tokenizer, BOS prepended when it has one.
 * *ids is malloc'd. */
bj_status bj_ppl_tokenize(const bj_tokenizer *tok, const char *text, size_t len, int32_t **ids, int64_t *n_ids,
                          bj_error *err);

/* Scores ids[0..n_ids) window by window on e (its KV cache is reset before each window and left
 * holding the last). On success r holds the figures (release with bj_ppl_result_free); on
 * failure r is empty. */
bj_status bj_perplexity(bj_engine *e, const int32_t *ids, int64_t n_ids, const bj_ppl_options *o,
                        bj_ppl_result *r, bj_error *err);
void bj_ppl_result_free(bj_ppl_result *r);

#endif
