/* runtime/runtime.h -- executing an imported model: engines, sampling, generation.
 *
 * An engine runs the graph one step at a time: a step is T tokens at positions
 * n_past .. n_past+T-1 and leaves their keys/values in the engine's KV cache. The reference
 * engine (runtime/ref/) interprets the graph in plain C; generated-code engines implement
 * the same vtable, so the runner, the tests and the perplexity tool never care which runs. */
#ifndef BJ_RUNTIME_H
#define BJ_RUNTIME_H

#include "frontends/model.h"

typedef struct bj_engine bj_engine;
struct bj_engine {
    const char *name;
    int64_t n_vocab;
    int64_t n_past;  /* positions already in the KV cache */
    int64_t max_seq; /* capacity of the KV cache */
    /* Runs tokens[0..n) at positions n_past.. and advances n_past. logits receives
     * f32[n_vocab] for the last token (all_logits false) or f32[n][n_vocab]. */
    bj_status (*forward)(bj_engine *e, const int32_t *tokens, int64_t n, bool all_logits,
                         float *logits, bj_error *err);
    void (*reset)(bj_engine *e); /* empties the KV cache */
    void (*free)(bj_engine *e);
};

/* The reference executor: f32 compute, int8 activation quantization and ternary weights
 * exactly as HF computes them. Clarity over speed; the baseline every other engine is
 * compared against. The graph must stay alive while the engine is used. */
bj_status bj_ref_engine_create(bj_engine **out, const bj_graph *g, bj_error *err);

static inline bj_status bj_engine_forward(bj_engine *e, const int32_t *tokens, int64_t n,
                                          bool all_logits, float *logits, bj_error *err) {
    return e->forward(e, tokens, n, all_logits, logits, err);
}
static inline void bj_engine_reset(bj_engine *e) { e->reset(e); }
static inline void bj_engine_free(bj_engine *e) { if (e) e->free(e); }

/* ---- sampling -------------------------------------------------------------------------- */
typedef struct bj_sampler_params {
    float temp;           /* 0 = greedy */
    int32_t top_k;        /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off */
    int32_t repeat_last_n;/* window of recent tokens the penalty looks at */
    uint64_t seed;
} bj_sampler_params;

typedef struct bj_sampler {
    bj_sampler_params p;
    uint64_t rng[2];      /* explicit RNG state: same seed, same samples */
    int32_t *recent;      /* ring of the last repeat_last_n tokens */
    int32_t n_recent, head;
    /* scratch for candidates */
    int32_t *idx;
    float *prob;
    int64_t cap;
} bj_sampler;

void bj_sampler_params_default(bj_sampler_params *p);
bj_status bj_sampler_init(bj_sampler *s, const bj_sampler_params *p, int64_t n_vocab, bj_error *err);
void bj_sampler_free(bj_sampler *s);
/* Remembers a token (prompt or generated) for the repetition penalty. */
void bj_sampler_accept(bj_sampler *s, int32_t tok);
/* Picks the next token from logits (modified in place by the penalty and temperature). */
int32_t bj_sampler_sample(bj_sampler *s, float *logits, int64_t n_vocab);

/* ---- generation ------------------------------------------------------------------------ */
/* Called for each generated token; return false to stop. */
typedef bool (*bj_token_cb)(void *ud, int32_t tok);

/* Feeds the prompt, then samples up to n_predict tokens, stopping after EOS (eos < 0: never)
 * or when the KV cache is full. Generated ids go to out (capacity n_predict) if non-NULL. */
bj_status bj_generate(bj_engine *e, bj_sampler *s, const int32_t *prompt, int64_t n_prompt,
                      int64_t n_predict, int32_t eos, bj_token_cb cb, void *ud,
                      int32_t *out, int64_t *n_out, bj_error *err);

#endif
