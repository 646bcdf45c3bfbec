/* runtime/api.c -- the public C API (bitjit.h) over the runtime: a bitjit_model is an
 * imported model (bj_model, from a model path or a bitjitc library), its engine, and the
 * library handle when it came from one. Each call converts bj_status/bj_error to the public
 * bitjit_status/bitjit_error (same codes, checked below) and never prints.
 *
 * Generation: every call resets the engine (empty KV cache) and samples with a sampler made
 * for that call, so calls are independent and a seed reproduces its samples. */
#include "bitjit.h"

#include "runtime/aot_load.h"
#include "runtime/runtime.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(BITJIT_OK == (int)BJ_OK && BITJIT_E_IO == (int)BJ_E_IO && BITJIT_E_FORMAT == (int)BJ_E_FORMAT &&
               BITJIT_E_UNSUPPORTED == (int)BJ_E_UNSUPPORTED && BITJIT_E_NOMEM == (int)BJ_E_NOMEM &&
               BITJIT_E_INVALID == (int)BJ_E_INVALID && BITJIT_E_LLVM == (int)BJ_E_LLVM &&
               BITJIT_E_INTERNAL == (int)BJ_E_INTERNAL, "bitjit_status mirrors bj_status");

/* bitjit_load_options grows only at its end: the fields programs built against 0.1.0 set keep their
 * offsets (x86-64 SysV, the only ABI bitjit targets). */
_Static_assert(offsetof(bitjit_load_options, n_threads) == 0 && offsetof(bitjit_load_options, cache_dir) == 8 &&
               offsetof(bitjit_load_options, no_cache) == 16 && offsetof(bitjit_load_options, reference) == 17 &&
               offsetof(bitjit_load_options, n_ctx) == 24 && offsetof(bitjit_load_options, kv_f16) == 32 &&
               offsetof(bitjit_load_options, no_autotune) == 33, "bitjit_load_options: earlier fields moved");

struct bitjit_model {
    bj_model m;
    bj_aot_lib *lib; /* NULL unless loaded from a bitjitc library */
    bj_engine *e;
};

/* Copies an internal error out; returns its code as the public status. */
static bitjit_status bj_api_fail(const bj_error *in, bitjit_error *out) {
    if (out) {
        out->code = (bitjit_status)in->code;
        snprintf(out->message, sizeof out->message, "%s", in->msg);
    }
    return (bitjit_status)in->code;
}

static bitjit_status bj_api_invalid(bitjit_error *out, const char *what) {
    bj_error e = { 0 };
    BJ_FAIL(&e, BJ_E_INVALID, "%s", what);
    return bj_api_fail(&e, out);
}

static void bj_api_ok(bitjit_error *out) {
    if (out) { out->code = BITJIT_OK; out->message[0] = 0; }
}

const char *bitjit_version(void) { return BJ_VERSION_STRING; }
const char *bitjit_status_name(bitjit_status s) { return bj_status_name((bj_status)s); }

void bitjit_load_options_default(bitjit_load_options *o) { memset(o, 0, sizeof *o); }

static int bj_api_threads(int n) {
    if (n > 0) return n;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > 64 ? 64 : (int)c;
}

static bj_status bj_api_engine(bitjit_model *b, const bitjit_load_options *o, bj_error *err) {
    int64_t n_ctx;
    int threads = o->reference ? 1 : bj_api_threads(o->n_threads);
    if (bj_engine_ctx_choose(&b->m.graph, o->n_ctx, threads, 1, &n_ctx, NULL, 0, err) != BJ_OK)
        return bj_error_prefix(err, "bitjit_load: n_ctx");
    int kv = o->kv_f16 ? BJ_KV_F16 : BJ_KV_F32;
    if (o->reference) return bj_ref_engine_create_kv(&b->e, &b->m.graph, n_ctx, kv, err);
    bj_jit_options jo;
    bj_jit_options_default(&jo);
    jo.n_threads = threads;
    jo.n_ctx = n_ctx;
    jo.cache_dir = o->cache_dir;
    jo.no_cache = o->no_cache;
    jo.kv = (bj_kv_type)kv;
    jo.no_autotune = o->no_autotune;
    if (b->lib) bj_aot_jit_options(b->lib, &jo);
    return bj_jit_engine_create(&b->e, &b->m.graph, &jo, NULL, err);
}

bitjit_status bitjit_load(bitjit_model **out, const char *path, const bitjit_load_options *opts, bitjit_error *err) {
    if (!out || !path) return bj_api_invalid(err, "bitjit_load: out and path are required");
    *out = NULL;
    bitjit_load_options def;
    bitjit_load_options_default(&def);
    const bitjit_load_options *o = opts ? opts : &def;
    if (o->n_threads < 0 || o->n_threads > 1024) return bj_api_invalid(err, "bitjit_load: n_threads must be in [0, 1024]");
    if (o->n_ctx < 0) return bj_api_invalid(err, "bitjit_load: n_ctx must be 0 (the model's context) or positive");
    bitjit_model *b = calloc(1, sizeof *b);
    bj_error e = { 0 };
    if (!b) { BJ_FAIL(&e, BJ_E_NOMEM, "out of memory"); return bj_api_fail(&e, err); }
    bj_status st = bj_aot_is_library(path) ? bj_aot_load(&b->lib, &b->m, path, &e) : bj_model_load(&b->m, path, &e);
    if (st == BJ_OK) st = bj_api_engine(b, o, &e);
    if (st != BJ_OK) {
        bitjit_free(b);
        return bj_api_fail(&e, err);
    }
    *out = b;
    bj_api_ok(err);
    return BITJIT_OK;
}

void bitjit_free(bitjit_model *b) {
    if (!b) return;
    bj_engine_free(b->e);           /* no kernel runs after this */
    bj_model_free(&b->m);           /* the graph points into the library's mapping */
    bj_aot_close(b->lib);
    free(b);
}

int32_t bitjit_vocab_size(const bitjit_model *b) { return bj_tok_vocab_size(b->m.tok); }
int32_t bitjit_eos(const bitjit_model *b) { return bj_tok_eos(b->m.tok); }
int64_t bitjit_context_length(const bitjit_model *b) { return b->e->max_seq; }

bitjit_status bitjit_tokenize(const bitjit_model *b, const char *text, size_t len, bool add_bos, int32_t **ids,
                              size_t *n_ids, bitjit_error *err) {
    if (!b || (!text && len) || !ids || !n_ids) return bj_api_invalid(err, "bitjit_tokenize: bad arguments");
    bj_error e = { 0 };
    bool bos = add_bos && bj_tok_add_bos(b->m.tok);
    if (bj_tok_encode(b->m.tok, text ? text : "", len, bos, true, ids, n_ids, &e) != BJ_OK) return bj_api_fail(&e, err);
    bj_api_ok(err);
    return BITJIT_OK;
}

bitjit_status bitjit_detokenize(const bitjit_model *b, const int32_t *ids, size_t n_ids, bool skip_special,
                                char **text, size_t *len, bitjit_error *err) {
    if (!b || (!ids && n_ids) || !text) return bj_api_invalid(err, "bitjit_detokenize: bad arguments");
    bj_error e = { 0 };
    size_t n = 0;
    if (bj_tok_decode(b->m.tok, ids, n_ids, skip_special, text, &n, &e) != BJ_OK) return bj_api_fail(&e, err);
    if (len) *len = n;
    bj_api_ok(err);
    return BITJIT_OK;
}

void bitjit_free_buffer(void *p) { free(p); }

void bitjit_sampling_default(bitjit_sampling *s) {
    bj_sampler_params p;
    bj_sampler_params_default(&p);
    *s = (bitjit_sampling){ p.temp, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.repeat_last_n, p.seed };
}

/* The per-token bridge: the internal callback gives the id; the public one also the bytes. */
typedef struct bj_api_cb {
    const bitjit_model *b;
    bitjit_token_fn fn;
    void *user;
} bj_api_cb;

static bool bj_api_on_token(void *ud, int32_t tok) {
    bj_api_cb *c = ud;
    size_t len = 0;
    const char *piece = bj_tok_is_special(c->b->m.tok, tok) ? "" : bj_tok_piece(c->b->m.tok, tok, &len);
    return c->fn(c->user, tok, piece ? piece : "", piece ? len : 0);
}

static bj_sampler_params bj_api_params(const bitjit_sampling *s) {
    bj_sampler_params p;
    bj_sampler_params_default(&p);
    if (!s) { p.temp = 0; return p; }
    p = (bj_sampler_params){ s->temperature, s->top_k, s->top_p, s->min_p, s->repeat_penalty, s->repeat_last_n, s->seed };
    return p;
}

static bool bj_api_params_ok(const bj_sampler_params *p) {
    return p->temp >= 0 && p->top_k >= 0 && p->top_p >= 0 && p->top_p <= 1 && p->min_p >= 0 && p->min_p <= 1 &&
           p->repeat_penalty > 0 && p->repeat_last_n >= 0;
}

bitjit_status bitjit_generate_ids(bitjit_model *b, const int32_t *prompt, size_t n_prompt, int32_t n_predict,
                                  const bitjit_sampling *sampling, bitjit_token_fn cb, void *user, int32_t *out,
                                  size_t *n_out, bitjit_error *err) {
    if (n_out) *n_out = 0;
    if (!b || !prompt || n_prompt == 0 || n_predict < 0) return bj_api_invalid(err, "bitjit_generate: bad arguments");
    bj_sampler_params p = bj_api_params(sampling);
    if (!bj_api_params_ok(&p)) return bj_api_invalid(err, "bitjit_generate: sampling option out of range");
    bj_error e = { 0 };
    bj_sampler s;
    if (bj_sampler_init(&s, &p, b->e->n_vocab, &e) != BJ_OK) return bj_api_fail(&e, err);
    bj_engine_reset(b->e);
    bj_api_cb c = { b, cb, user };
    int64_t n = 0;
    bj_status st = n_predict == 0 ? BJ_OK
                 : bj_generate(b->e, &s, prompt, (int64_t)n_prompt, n_predict, bj_tok_eos(b->m.tok),
                               cb ? bj_api_on_token : NULL, &c, out, &n, &e);
    bj_sampler_free(&s);
    if (n_out) *n_out = (size_t)n;
    if (st != BJ_OK) return bj_api_fail(&e, err);
    bj_api_ok(err);
    return BITJIT_OK;
}

bitjit_status bitjit_generate(bitjit_model *b, const char *prompt, int32_t n_predict, const bitjit_sampling *sampling,
                              bitjit_token_fn cb, void *user, bitjit_error *err) {
    if (!b || !prompt) return bj_api_invalid(err, "bitjit_generate: bad arguments");
    int32_t *ids;
    size_t n;
    bitjit_status st = bitjit_tokenize(b, prompt, strlen(prompt), true, &ids, &n, err);
    if (st != BITJIT_OK) return st;
    st = n ? bitjit_generate_ids(b, ids, n, n_predict, sampling, cb, user, NULL, NULL, err)
           : bj_api_invalid(err, "bitjit_generate: the prompt is empty and the model adds no BOS token");
    free(ids);
    return st;
}
