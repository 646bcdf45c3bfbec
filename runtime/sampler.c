/* runtime/sampler.c -- token sampling: repetition penalty, then greedy (temp 0) or
 * temperature + top-k + top-p + min-p, drawn with an explicit xoroshiro128+ state so the
 * same seed gives the same text. The order of the filters follows llama.cpp's defaults:
 * penalties -> top-k -> top-p -> min-p -> temperature -> draw. */
#include "runtime/runtime.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void bj_sampler_params_default(bj_sampler_params *p) {
    *p = (bj_sampler_params){ .temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                              .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0 };
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) from xoroshiro128+. */
static double rng_uniform(uint64_t s[2]) {
    uint64_t s0 = s[0], s1 = s[1], r = s0 + s1;
    s1 ^= s0;
    s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    s[1] = (s1 << 37) | (s1 >> 27);
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

bj_status bj_sampler_init(bj_sampler *s, const bj_sampler_params *p, int64_t n_vocab, bj_error *err) {
    memset(s, 0, sizeof *s);
    s->p = *p;
    if (s->p.repeat_last_n < 0) s->p.repeat_last_n = 0;
    uint64_t seed = p->seed;
    s->rng[0] = splitmix64(&seed);
    s->rng[1] = splitmix64(&seed);
    s->cap = n_vocab;
    s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    s->recent = malloc((size_t)(s->p.repeat_last_n + 1) * sizeof *s->recent);
    if (!s->idx || !s->prob || !s->recent) {
        bj_sampler_free(s);
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory for the sampler");
    }
    return BJ_OK;
}

void bj_sampler_free(bj_sampler *s) {
    free(s->idx);
    free(s->prob);
    free(s->recent);
    memset(s, 0, sizeof *s);
}

void bj_sampler_accept(bj_sampler *s, int32_t tok) {
    if (s->p.repeat_last_n == 0) return;
    s->recent[s->head] = tok;
    s->head = (s->head + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

/* llama.cpp's rule: a recently seen token's logit is divided by the penalty if positive,
 * multiplied if negative; each distinct token is penalised once. */
static void apply_penalty(bj_sampler *s, float *logits, int64_t V) {
    if (s->p.repeat_penalty == 1.0f) return;
    for (int32_t i = 0; i < s->n_recent; i++) {
        int32_t t = s->recent[i];
        bool seen = false;
        for (int32_t j = 0; j < i; j++) seen |= s->recent[j] == t;
        if (seen || t < 0 || t >= V) continue;
        logits[t] = logits[t] > 0 ? logits[t] / s->p.repeat_penalty : logits[t] * s->p.repeat_penalty;
    }
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

static int by_logit_desc(const void *a, const void *b, void *ud) {
    const float *l = ud;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    return l[i] < l[j] ? 1 : l[i] > l[j] ? -1 : (i > j) - (i < j);
}

/* Heap helpers for top-k selection: a min-heap on logit of the k best seen so far. */
static void sift_down(int32_t *h, int64_t n, int64_t i, const float *l) {
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && l[h[c + 1]] < l[h[c]]) c++;
        if (l[h[i]] <= l[h[c]]) return;
        int32_t t = h[i]; h[i] = h[c]; h[c] = t;
        i = c;
    }
}

/* Fills s->idx[0..n) with the n best candidates in descending logit order; returns n. */
static int64_t candidates(bj_sampler *s, const float *logits, int64_t V) {
    int64_t k = s->p.top_k > 0 && s->p.top_k < V ? s->p.top_k : V;
    if (k == V) {
        for (int64_t i = 0; i < V; i++) s->idx[i] = (int32_t)i;
    } else {
        for (int64_t i = 0; i < k; i++) s->idx[i] = (int32_t)i;
        for (int64_t i = k / 2; i-- > 0;) sift_down(s->idx, k, i, logits);
        for (int64_t i = k; i < V; i++)
            if (logits[i] > logits[s->idx[0]]) { s->idx[0] = (int32_t)i; sift_down(s->idx, k, 0, logits); }
    }
    qsort_r(s->idx, (size_t)k, sizeof *s->idx, by_logit_desc, (void *)logits);
    return k;
}

int32_t bj_sampler_sample(bj_sampler *s, float *logits, int64_t V) {
    apply_penalty(s, logits, V);
    if (s->p.temp <= 0) return (int32_t)argmax(logits, V);
    /* candidates sorted by logit, cut by top-k */
    int64_t n = candidates(s, logits, V);
    /* softmax at temperature 1 for the p-filters (as llama.cpp), then apply temp */
    float mx = logits[s->idx[0]];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (s->prob[i] = expf(logits[s->idx[i]] - mx));
    double cum = 0;
    for (int64_t i = 0; i < n; i++) { /* top-p: smallest prefix with mass >= p */
        cum += s->prob[i] / sum;
        if (cum >= s->p.top_p && i + 1 < n) { n = i + 1; break; }
    }
    int64_t keep = 1; /* min-p: relative to the most likely token (prob[0] == 1 before norm) */
    while (keep < n && s->prob[keep] >= s->p.min_p) keep++;
    n = keep;
    sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (s->prob[i] = expf((logits[s->idx[i]] - mx) / s->p.temp));
    double r = rng_uniform(s->rng) * sum;
    for (int64_t i = 0; i < n; i++) {
        r -= s->prob[i];
        if (r < 0) return s->idx[i];
    }
    return s->idx[n - 1];
}
