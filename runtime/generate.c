/* runtime/generate.c -- the generation loop shared by the runner, the C API and tests:
 * prompt in one step, then one token per step until n_predict, EOS, the callback says stop,
 * or the KV cache is full. */
#include "runtime/runtime.h"

#include <stdlib.h>

bj_status bj_generate(bj_engine *e, bj_sampler *s, const int32_t *prompt, int64_t n_prompt,
                      int64_t n_predict, int32_t eos, bj_token_cb cb, void *ud,
                      int32_t *out, int64_t *n_out, bj_error *err) {
    if (n_out) *n_out = 0;
    if (n_prompt <= 0) return BJ_FAIL(err, BJ_E_INVALID, "empty prompt: nothing to condition on");
    if (e->n_past + n_prompt > e->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "prompt of %lld tokens does not fit the context of %lld",
                       (long long)n_prompt, (long long)(e->max_seq - e->n_past));
    float *logits = malloc((size_t)e->n_vocab * sizeof *logits);
    if (!logits) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    for (int64_t i = 0; i < n_prompt; i++) bj_sampler_accept(s, prompt[i]);
    bj_status st = bj_engine_forward(e, prompt, n_prompt, false, logits, err);
    for (int64_t i = 0; st == BJ_OK && i < n_predict; i++) {
        int32_t tok = bj_sampler_sample(s, logits, e->n_vocab);
        bj_sampler_accept(s, tok);
        if (out) out[i] = tok;
        if (n_out) *n_out = i + 1;
        if ((cb && !cb(ud, tok)) || tok == eos || e->n_past >= e->max_seq || i + 1 == n_predict) break;
        st = bj_engine_forward(e, &tok, 1, false, logits, err);
    }
    free(logits);
    return st;
}
