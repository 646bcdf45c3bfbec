/* runtime/generate.c -- the generation loop shared by the runner, the C API and tests:
 * prompt in one step, then one token per step until n_predict, EOS, the callback says stop,
 * or the KV cache is full. Also the small step helpers every engine shares. */
#include "runtime/runtime.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

bj_status bj_engine_check_step(const bj_engine *e, const int32_t *tokens, int64_t T, bj_error *err) {
    if (T <= 0) return BJ_FAIL(err, BJ_E_INVALID, "forward: no tokens");
    if (e->n_past + T > e->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "context full: %lld + %lld tokens exceed the maximum of %lld",
                       (long long)e->n_past, (long long)T, (long long)e->max_seq);
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= e->n_vocab)
            return BJ_FAIL(err, BJ_E_INVALID, "token id %d out of range [0, %lld)", tokens[t], (long long)e->n_vocab);
    return BJ_OK;
}

bj_status bj_engine_check_head(const bj_graph *g, uint32_t *head, bj_error *err) {
    uint32_t out = bj_ir_find_output(g);
    if (out == BJ_NONE) return BJ_FAIL(err, BJ_E_INVALID, "graph: no single output node");
    uint32_t h = g->nodes[out].in[0];
    if (g->nodes[h].op != BJ_OP_MATMUL_F)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "graph: the output reads %s %%%u; the engines expect the logits of a matmul_f",
                       bj_op_name((bj_op)g->nodes[h].op), h);
    for (uint32_t i = 0; i < g->n_nodes; i++)
        for (uint32_t k = 0; k < g->nodes[i].nin; k++)
            if (g->nodes[i].op != BJ_OP_OUTPUT && g->nodes[g->nodes[i].in[k]].op == BJ_OP_MATMUL_F)
                return BJ_FAIL(err, BJ_E_UNSUPPORTED, "graph: %s %%%u reads the f32 logits of matmul_f %%%u; only the output may",
                               bj_op_name((bj_op)g->nodes[i].op), i, g->nodes[i].in[k]);
    *head = h;
    return BJ_OK;
}

void bj_engine_copy_logits(const bj_engine *e, const float *y, int64_t T, bool all_logits, float *logits) {
    int64_t V = e->n_vocab;
    if (all_logits) memcpy(logits, y, (size_t)(T * V) * sizeof(float));
    else memcpy(logits, y + (T - 1) * V, (size_t)V * sizeof(float));
}

/* ---- context length ------------------------------------------------------------------------ */
uint64_t bj_engine_ctx_bytes_per_pos(const bj_graph *g, int n_threads) {
    uint64_t b = (uint64_t)(n_threads > 0 ? n_threads : 1) * sizeof(double); /* attention scores */
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == BJ_OP_ATTENTION)
            b += 2 * (uint64_t)(g->nodes[i].iattr[2] * g->nodes[i].iattr[3]) * sizeof(float); /* K and V (bj_kv) */
    return b;
}

int64_t bj_engine_ctx_fit(const bj_graph *g, int n_threads, uint64_t budget) {
    uint64_t fit = budget / bj_engine_ctx_bytes_per_pos(g, n_threads);
    return fit < (uint64_t)g->max_seq ? (int64_t)fit : g->max_seq;
}

/* Memory the kernel says can be had without swapping (MemAvailable), else free physical pages. */
static uint64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb) return (uint64_t)kb * 1024;
    long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

bj_status bj_engine_ctx_choose(const bj_graph *g, int64_t asked, int n_threads, int n_engines, int64_t *n_ctx,
                               char *note, size_t cap, bj_error *err) {
    if (note && cap) note[0] = 0;
    *n_ctx = g->max_seq;
    if (asked < 0 || asked > g->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "context of %lld tokens asked: the model's is %lld (at least 1)",
                       (long long)asked, (long long)g->max_seq);
    if (asked > 0) { *n_ctx = asked; return BJ_OK; }
    uint64_t avail = mem_available();
    if (!avail) return BJ_OK; /* unknown: the model's context, as asked of the engine */
    int64_t fit = bj_engine_ctx_fit(g, n_threads, avail / 2 / (uint64_t)(n_engines > 1 ? n_engines : 1));
    if (fit >= g->max_seq) return BJ_OK;
    if (fit < 1)
        return BJ_FAIL(err, BJ_E_NOMEM, "not even one position of context fits in the %.1f MB of memory available",
                       (double)avail * 1e-6);
    *n_ctx = fit;
    if (note && cap)
        snprintf(note, cap, "the model's context of %lld tokens would need %.1f GB of KV cache%s; using %lld tokens, "
                 "what fits in half of the %.1f GB of memory available (-c/--ctx-size sets it)",
                 (long long)g->max_seq, (double)bj_engine_ctx_bytes_per_pos(g, n_threads) * (double)g->max_seq * 1e-9,
                 n_engines > 1 ? " an engine" : "", (long long)fit, (double)avail * 1e-9);
    return BJ_OK;
}
