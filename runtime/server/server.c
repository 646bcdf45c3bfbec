/* runtime/server/server.c -- `bitjit serve`'s HTTP server: libmicrohttpd connections (a thread
 * each), the request queue, the slots that generate answers, the OpenAI response shapes (see
 * server.h), API keys, CORS, draining, /metrics and the per-request log. Requests are checked in
 * server_req.c. */
#include "runtime/server/server_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void bj_server_opts_default(bj_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->model_id = "bitjit";
    o->max_body = 1 << 20;
    o->max_queue = 256;
    o->max_connections = 256;
    o->timeout_s = 60;
    o->n_predict = 256;
    bj_sampler_params_default(&o->sampling);
}

/* ---- small helpers ------------------------------------------------------------------------------ */
/* Per-request log record; -1 / NULL fields are left out. */
typedef struct srv_logrec {
    const char *id, *method, *endpoint, *finish;
    int status;
    long long prompt_tokens, cached_tokens, completion_tokens;
    double ttft, duration; /* seconds; < 0: none */
} srv_logrec;

static void srv_log_request(bj_server *s, const srv_logrec *l) {
    if (!s->o.log) return;
    if (s->o.log_json) {
        char ts[32];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i}", "time", ts, "id", l->id, "method", l->method, "endpoint",
                              l->endpoint, "status", l->status);
        if (!o) return;
        if (l->prompt_tokens >= 0) {
            json_object_set_new(o, "prompt_tokens", json_integer(l->prompt_tokens));
            json_object_set_new(o, "cached_tokens", json_integer(l->cached_tokens));
            json_object_set_new(o, "completion_tokens", json_integer(l->completion_tokens));
        }
        if (l->finish) json_object_set_new(o, "finish", json_string(l->finish));
        if (l->ttft >= 0) json_object_set_new(o, "ttft_ms", json_real(round(l->ttft * 1e4) / 10));
        json_object_set_new(o, "duration_ms", json_real(round(l->duration * 1e4) / 10));
        if (l->completion_tokens > 0 && l->duration > 0)
            json_object_set_new(o, "tokens_per_s", json_real(round(l->completion_tokens / l->duration * 10) / 10));
        char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(8));
        json_decref(o);
        if (line) s->o.log(s->o.log_ud, line);
        free(line);
        return;
    }
    char line[512];
    int n = snprintf(line, sizeof line, "%s %s %s %d", l->id, l->method, l->endpoint, l->status);
    if (l->prompt_tokens >= 0 && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " prompt=%lld cached=%lld generated=%lld", l->prompt_tokens,
                      l->cached_tokens, l->completion_tokens);
    if (l->finish && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " %s", l->finish);
    if (l->ttft >= 0 && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " ttft=%.1fms", l->ttft * 1e3);
    if (n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " time=%.1fms", l->duration * 1e3);
    if (l->completion_tokens > 0 && l->duration > 0 && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, " %.1f tok/s", (double)l->completion_tokens / l->duration);
    s->o.log(s->o.log_ud, line);
}

/* ---- metrics ------------------------------------------------------------------------------------- */
static const char *const SRV_ENDPOINTS[] = { "/v1/completions", "/v1/chat/completions", "/v1/models", "/health",
                                             "/metrics", "/tokenize", "/detokenize", "other" };
enum { EP_COMPLETIONS, EP_CHAT, EP_MODELS, EP_HEALTH, EP_METRICS, EP_TOKENIZE, EP_DETOKENIZE, EP_OTHER };
#define SRV_N_ENDPOINTS ((int)(sizeof SRV_ENDPOINTS / sizeof *SRV_ENDPOINTS))

static int endpoint_of(const char *url) {
    for (int i = 0; i < EP_OTHER; i++)
        if (!strcmp(url, SRV_ENDPOINTS[i])) return i;
    return EP_OTHER;
}

static const double LE_TTFT[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };
static const double LE_ITL[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1 };
static const double LE_DURATION[] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120 };

static void hist_init(srv_hist *h, const double *le, int n) { h->le = le, h->n_le = n; }

static void hist_observe_locked(srv_hist *h, double v) {
    int i = 0;
    while (i < h->n_le && v > h->le[i]) i++;
    if (i < h->n_le) h->n[i]++;
    h->count++;
    h->sum += v;
}

static void met_observe(bj_server *s, srv_hist *h, double v) {
    pthread_mutex_lock(&s->met.mu);
    hist_observe_locked(h, v);
    pthread_mutex_unlock(&s->met.mu);
}

static void met_count_request(bj_server *s, int ep, int status) {
    srv_metrics *m = &s->met;
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_req && !(m->req[i].ep == ep && m->req[i].status == status)) i++;
    if (i == m->n_req && m->n_req < SRV_MAX_REQ_KEYS) {
        m->req[i].ep = ep, m->req[i].status = status, m->req[i].n = 0;
        m->n_req++;
    }
    if (i < m->n_req) m->req[i].n++;
    pthread_mutex_unlock(&m->mu);
}

static void deadline_in(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

static bool stopping(bj_server *s) { return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE); }

/* A JSON string of generated bytes: invalid UTF-8 becomes U+FFFD (JSON text must be UTF-8). */
json_t *srv_json_text(const char *p, size_t n) {
    size_t ok = bj_utf8_valid_prefix(p, n);
    if (ok == n) return json_stringn(p, n);
    char *b = malloc(3 * n + 1);
    if (!b) return NULL;
    size_t o = 0, i = 0;
    while (i < n) {
        size_t v = bj_utf8_valid_prefix(p + i, n - i);
        memcpy(b + o, p + i, v);
        o += v, i += v;
        if (i < n) { memcpy(b + o, "\xEF\xBF\xBD", 3); o += 3; i++; }
    }
    json_t *j = json_stringn(b, o);
    free(b);
    return j;
}

/* ---- JSON errors ----------------------------------------------------------------------------------- */
json_t *srv_error_json(const char *type, const char *param, const char *code, const char *msg) {
    return json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error", "message", msg, "type", type, "param", param, "code", code);
}

/* ---- jobs ---------------------------------------------------------------------------------------- */
static void job_free(srv_job *j) {
    srv_req_free(&j->req);
    free(j->out);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* Drops one reference; with s->mu held. */
static void job_release_locked(srv_job *j) {
    if (--j->refs == 0) {
        j->srv->n_jobs--;
        job_free(j);
    }
}

/* Appends bytes to the job's output and wakes its connection; with s->mu held. */
static void job_out_locked(srv_job *j, const char *p, size_t n) {
    if (j->oom) return;
    if (j->sent == j->n_out) j->sent = j->n_out = 0;
    if (!bj_text_append(&j->out, &j->n_out, &j->cap_out, p, n, 1024)) { j->oom = true; return; }
    pthread_cond_broadcast(&j->cv);
}

/* One server-sent event "data: JSON\n\n" (steals obj). */
static void job_event(bj_server *s, srv_job *j, json_t *obj) {
    char *t = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    pthread_mutex_lock(&s->mu);
    if (!t) j->oom = true;
    else {
        job_out_locked(j, "data: ", 6);
        job_out_locked(j, t, strlen(t));
        job_out_locked(j, "\n\n", 2);
    }
    pthread_mutex_unlock(&s->mu);
    free(t);
}

static void job_finish(bj_server *s, srv_job *j, int status, json_t *body) {
    char *t = body ? json_dumps(body, JSON_COMPACT) : NULL;
    bool lost = !t && (body || status != 503); /* no body to send: out of memory */
    json_decref(body);
    pthread_mutex_lock(&s->mu);
    if (j->req.stream) {
        if (t) { job_out_locked(j, "data: ", 6); job_out_locked(j, t, strlen(t)); job_out_locked(j, "\n\n", 2); }
        if (t) job_out_locked(j, "data: [DONE]\n\n", 14); /* a cancelled stream is cut without it */
    } else if (t) {
        j->n_out = j->sent = 0;
        job_out_locked(j, t, strlen(t));
    }
    j->status = lost ? 500 : status;
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&s->mu);
    free(t);
}

/* ---- generation (slot threads) --------------------------------------------------------------------- */
static json_t *usage_json(int64_t prompt, int64_t gen) {
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)prompt, "completion_tokens", (json_int_t)gen,
                     "total_tokens", (json_int_t)(prompt + gen));
}

/* A streamed chunk: a text delta (text may be NULL: none), finish_reason (NULL: null), usage (may be
 * NULL), logprobs (may be NULL: null). Steals usage and lp. */
static json_t *chunk_json(bj_server *s, srv_job *j, const char *text, size_t n, bool role, const char *finish,
                          json_t *usage, json_t *lp) {
    json_t *choice;
    if (!lp) lp = json_null();
    if (j->req.chat) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (text) json_object_set_new(delta, "content", srv_json_text(text, n));
        choice = json_pack("{s:i,s:o,s:o,s:s?}", "index", 0, "delta", delta, "logprobs", lp, "finish_reason", finish);
    } else {
        choice = json_pack("{s:i,s:o,s:o,s:s?}", "index", 0, "text", srv_json_text(text ? text : "", text ? n : 0),
                           "logprobs", lp, "finish_reason", finish);
    }
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", j->id, "object",
                          j->req.chat ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)j->created, "model", s->o.model_id, "choices", choice);
    if (o && usage) json_object_set_new(o, "usage", usage);
    else json_decref(usage);
    return o;
}

/* stream_options.include_usage: the last chunk, with no choices and the usage. */
static json_t *usage_chunk_json(bj_server *s, srv_job *j, json_t *usage) {
    return json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", j->id, "object",
                     j->req.chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)j->created,
                     "model", s->o.model_id, "choices", "usage", usage);
}

static json_t *final_json(bj_server *s, srv_job *j, const char *text, size_t n, const char *finish, json_t *usage,
                          json_t *lp) {
    json_t *choice;
    if (!lp) lp = json_null();
    if (j->req.chat)
        choice = json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", 0, "message", "role", "assistant", "content",
                           srv_json_text(text, n), "logprobs", lp, "finish_reason", finish);
    else
        choice = json_pack("{s:i,s:o,s:o,s:s}", "index", 0, "text", srv_json_text(text, n), "logprobs", lp,
                           "finish_reason", finish);
    return json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o}", "id", j->id, "object",
                     j->req.chat ? "chat.completion" : "text_completion", "created", (json_int_t)j->created, "model",
                     s->o.model_id, "choices", choice, "usage", usage);
}

/* ---- log-probabilities ------------------------------------------------------------------------------
 * Of the model's distribution (softmax of the logits, before the repetition penalty and the
 * temperature), as OpenAI gives them. */
typedef struct lp_rec {
    int32_t tok;
    size_t start;   /* where its text starts in the answer */
    float lp;
    int n_top;
    int32_t top[SRV_MAX_TOP_LOGPROBS];
    float top_lp[SRV_MAX_TOP_LOGPROBS];
} lp_rec;

typedef struct lp_list { lp_rec *r; size_t n, cap; } lp_list;

/* Records the log-probability of tok and the n_top most likely tokens from raw logits. */
static bool lp_add(lp_list *l, const float *raw, int64_t n_vocab, int32_t tok, int n_top, size_t start) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        lp_rec *r = realloc(l->r, cap * sizeof *r);
        if (!r) return false;
        l->r = r, l->cap = cap;
    }
    float mx = raw[0];
    for (int64_t i = 1; i < n_vocab; i++) mx = raw[i] > mx ? raw[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n_vocab; i++) sum += exp((double)raw[i] - mx);
    double lse = mx + log(sum);
    lp_rec *r = &l->r[l->n++];
    r->tok = tok, r->start = start, r->n_top = 0;
    r->lp = (float)(raw[tok] - lse);
    for (int64_t i = 0; i < n_vocab; i++) { /* insertion into a sorted list of at most n_top */
        int k = r->n_top < n_top ? r->n_top : n_top - 1;
        if (k < 0 || (r->n_top == n_top && raw[i] <= raw[r->top[k]])) continue;
        while (k > 0 && raw[r->top[k - 1]] < raw[i]) { r->top[k] = r->top[k - 1]; k--; }
        r->top[k] = (int32_t)i;
        if (r->n_top < n_top) r->n_top++;
    }
    for (int k = 0; k < r->n_top; k++) r->top_lp[k] = (float)(raw[r->top[k]] - lse);
    return true;
}

static json_t *lp_token_str(bj_server *s, int32_t tok) {
    size_t len = 0;
    const char *p = bj_tok_piece(s->tok, tok, &len);
    return srv_json_text(p ? p : "", p ? len : 0);
}

static json_t *lp_bytes(bj_server *s, int32_t tok) {
    size_t len = 0;
    const char *p = bj_tok_piece(s->tok, tok, &len);
    json_t *a = json_array();
    for (size_t i = 0; p && i < len; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

/* The choice's "logprobs" for records [from, to): chat {"content": [...]}, completions {"tokens",
 * "token_logprobs", "top_logprobs", "text_offset"}; offset is added to text offsets (echo). */
static json_t *lp_json(bj_server *s, const srv_req *r, const lp_list *l, size_t from, size_t to, size_t offset) {
    if (r->chat) {
        json_t *content = json_array();
        for (size_t i = from; i < to; i++) {
            const lp_rec *x = &l->r[i];
            json_t *top = json_array();
            for (int k = 0; k < x->n_top; k++)
                json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", lp_token_str(s, x->top[k]), "logprob",
                                                     (double)x->top_lp[k], "bytes", lp_bytes(s, x->top[k])));
            json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token", lp_token_str(s, x->tok), "logprob",
                                                     (double)x->lp, "bytes", lp_bytes(s, x->tok), "top_logprobs", top));
        }
        return json_pack("{s:o,s:n}", "content", content, "refusal");
    }
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (size_t i = from; i < to; i++) {
        const lp_rec *x = &l->r[i];
        json_array_append_new(toks, lp_token_str(s, x->tok));
        json_array_append_new(lps, json_real(x->lp));
        json_t *top = json_object();
        for (int k = 0; k < x->n_top; k++) {
            json_t *t = lp_token_str(s, x->top[k]);
            json_object_set_new(top, json_string_value(t), json_real(x->top_lp[k]));
            json_decref(t);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)(x->start + offset)));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops, "text_offset",
                     offs);
}

typedef struct textbuf { char *p; size_t n, cap; } textbuf;

static bool tb_add(textbuf *b, const char *s, size_t n) { return bj_text_append(&b->p, &b->n, &b->cap, s, n, 512); }

/* Where a stop string first occurs in text[from..n), or n. */
static size_t find_stop(const srv_req *r, const char *text, size_t n, size_t from) {
    size_t best = n;
    for (int i = 0; i < r->n_stop; i++) {
        size_t l = strlen(r->stop[i]);
        const char *p = memmem(text + from, n - from, r->stop[i], l);
        if (p && (size_t)(p - text) < best) best = (size_t)(p - text);
    }
    return best;
}

/* How many trailing bytes of text could be the start of a stop string (held back from a stream). */
static size_t stop_holdback(const srv_req *r, const char *text, size_t n) {
    size_t hold = 0;
    for (int i = 0; i < r->n_stop; i++) {
        size_t l = strlen(r->stop[i]);
        for (size_t k = l - 1; k > hold; k--)
            if (k <= n && !memcmp(text + n - k, r->stop[i], k)) { hold = k; break; }
    }
    return hold;
}

static bool is_stop_id(const bj_server *s, int32_t tok) {
    for (int i = 0; i < s->n_stop_ids; i++)
        if (s->stop_ids[i] == tok) return true;
    return false;
}

/* One job's generation as it goes: the answer's text, its logprob records, how much of both a
 * stream has sent, and how it ended. */
typedef struct srv_gen {
    bj_sampler smp;
    textbuf tb;
    lp_list lps;
    float *raw;             /* the logits before sampling, for logprobs; NULL without */
    size_t sent, lp_sent;   /* bytes of tb and records of lps a stream has sent */
    size_t echo_off;        /* text offsets of logprobs start after the echoed prompt */
    int64_t n_run, n_gen;   /* prompt tokens run (not from the cache); tokens generated */
    const char *finish;     /* "length" or "stop" */
    bool cancelled, failed, cut;
    size_t n_lp;            /* records that are part of the answer (cut: not past a stop string) */
} srv_gen;

/* A job that failed before generating: 500 with the message, logged. */
static void job_fail_early(bj_server *s, srv_job *j, srv_logrec *lr, const char *msg) {
    job_finish(s, j, 500, srv_error_json("server_error", NULL, NULL, msg));
    lr->status = 500, lr->finish = "failed", lr->duration = srv_now() - j->t_queued;
    srv_log_request(s, lr);
}

/* Sends what the stream may send of the answer so far: not the bytes that could begin a stop
 * string, nor a UTF-8 sequence cut short; with the logprob records of the text sent. */
static void gen_stream_some(bj_server *s, srv_job *j, srv_gen *g) {
    textbuf *tb = &g->tb;
    size_t end = tb->n - stop_holdback(&j->req, tb->p, tb->n);
    if (end > g->sent) end = g->sent + bj_utf8_complete_prefix(tb->p + g->sent, end - g->sent);
    if (end <= g->sent) return;
    size_t to = g->lp_sent;
    while (to < g->lps.n && g->lps.r[to].start < end) to++;
    json_t *lj = g->raw ? lp_json(s, &j->req, &g->lps, g->lp_sent, to, g->echo_off) : NULL;
    job_event(s, j, chunk_json(s, j, tb->p + g->sent, end - g->sent, false, NULL, NULL, lj));
    g->sent = end, g->lp_sent = to;
}

/* One sampled token into the answer: its logprobs, its text, a stop string it completes (cut
 * there, finish "stop"); false when the answer ends with it. */
static bool gen_take(bj_server *s, srv_job *j, srv_gen *g, int32_t tok, int64_t n_vocab) {
    const srv_req *r = &j->req;
    size_t old = g->tb.n, len = 0;
    if (g->raw && !lp_add(&g->lps, g->raw, n_vocab, tok, r->n_top, old)) {
        g->failed = true;
        return false;
    }
    const char *piece = bj_tok_is_special(s->tok, tok) ? NULL : bj_tok_piece(s->tok, tok, &len);
    if (piece && len && !tb_add(&g->tb, piece, len)) { g->failed = true; return false; }
    if (r->n_stop) {
        size_t from = old > s->max_stop_len ? old - s->max_stop_len : 0;
        size_t at = find_stop(r, g->tb.p ? g->tb.p : "", g->tb.n, from);
        if (at < g->tb.n) { g->tb.n = at; g->finish = "stop"; g->cut = true; return false; }
    }
    if (r->stream) gen_stream_some(s, j, g);
    return true;
}

/* Samples and runs tokens until max_tokens, a stop token or string, the context's end, a cancel
 * or a failure (err). Time to the first token and between tokens go to the metrics and lr. */
static void gen_loop(srv_slot *sl, srv_job *j, srv_gen *g, srv_logrec *lr, bj_error *err) {
    bj_server *s = sl->srv;
    bj_engine *e = sl->e;
    const srv_req *r = &j->req;
    double t_last = 0;
    while (!g->failed && g->n_gen < r->max_tokens) {
        if (__atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE) || stopping(s)) { g->cancelled = true; break; }
        if (g->raw) memcpy(g->raw, sl->logits, (size_t)e->n_vocab * sizeof *g->raw);
        int32_t tok = bj_sampler_sample(&g->smp, sl->logits, e->n_vocab);
        bj_sampler_accept(&g->smp, tok);
        double t = srv_now();
        if (lr->ttft < 0) { lr->ttft = t - j->t_queued; met_observe(s, &s->met.ttft, lr->ttft); }
        else met_observe(s, &s->met.itl, t - t_last);
        t_last = t;
        if (is_stop_id(s, tok)) { g->finish = "stop"; break; }
        g->n_gen++;
        if (!gen_take(s, j, g, tok, e->n_vocab)) break;
        if (g->n_gen >= r->max_tokens || sl->kv.n >= e->max_seq) break;
        if (bj_kv_seq_push(&sl->kv, tok, sl->logits, err) != BJ_OK) { g->failed = true; break; }
    }
}

/* The whole answer of a request that is not streamed: the text (after the prompt with echo). */
static void gen_answer_whole(bj_server *s, srv_job *j, srv_gen *g, json_t *usage) {
    const srv_req *r = &j->req;
    json_t *lj = g->raw ? lp_json(s, r, &g->lps, 0, g->n_lp, g->echo_off) : NULL;
    if (!r->echo) {
        job_finish(s, j, 200, final_json(s, j, g->tb.p ? g->tb.p : "", g->tb.n, g->finish, usage, lj));
        return;
    }
    textbuf full = { 0 };
    if (tb_add(&full, r->prompt, r->n_prompt) && tb_add(&full, g->tb.p ? g->tb.p : "", g->tb.n)) {
        job_finish(s, j, 200, final_json(s, j, full.p, full.n, g->finish, usage, lj));
    } else {
        json_decref(usage);
        json_decref(lj);
        job_finish(s, j, 500, srv_error_json("server_error", NULL, NULL, "out of memory"));
    }
    free(full.p);
}

/* The reply once generation ended: an error, 503 for a cancel, the stream's last chunks, or the
 * whole answer. */
static void gen_answer(bj_server *s, srv_slot *sl, srv_job *j, srv_gen *g, const bj_error *err) {
    const srv_req *r = &j->req;
    json_t *usage = usage_json(r->n_ids, g->n_gen);
    if (g->failed) {
        bj_kv_seq_clear(&sl->kv);
        json_decref(usage);
        job_finish(s, j, 500, srv_error_json("server_error", NULL, NULL, err->msg[0] ? err->msg : "out of memory"));
    } else if (g->cancelled) {
        json_decref(usage);
        job_finish(s, j, 503, NULL);
    } else if (!r->stream) {
        gen_answer_whole(s, j, g, usage);
    } else {
        if (g->tb.n > g->sent || g->n_lp > g->lp_sent)
            job_event(s, j, chunk_json(s, j, g->tb.p ? g->tb.p + g->sent : "", g->tb.n - g->sent, false, NULL, NULL,
                                       g->raw ? lp_json(s, r, &g->lps, g->lp_sent, g->n_lp, g->echo_off) : NULL));
        if (r->include_usage) {
            job_event(s, j, chunk_json(s, j, NULL, 0, false, g->finish, NULL, NULL));
            job_finish(s, j, 200, usage_chunk_json(s, j, usage));
        } else {
            job_finish(s, j, 200, chunk_json(s, j, NULL, 0, false, g->finish, usage, NULL));
        }
    }
}

/* Token counts and the request's duration into the metrics. */
static void gen_count(bj_server *s, const srv_req *r, const srv_gen *g, double duration) {
    pthread_mutex_lock(&s->met.mu);
    s->met.prompt_tokens += (unsigned long long)r->n_ids;
    s->met.prompt_tokens_cached += (unsigned long long)(r->n_ids - g->n_run);
    s->met.gen_tokens += (unsigned long long)g->n_gen;
    hist_observe_locked(&s->met.duration, duration);
    pthread_mutex_unlock(&s->met.mu);
}

static void run_job(srv_slot *sl, srv_job *j) {
    bj_server *s = sl->srv;
    srv_req *r = &j->req;
    bj_error err = { 0 };
    srv_logrec lr = { .id = j->id, .method = "POST", .endpoint = SRV_ENDPOINTS[r->chat ? EP_CHAT : EP_COMPLETIONS],
                      .prompt_tokens = r->n_ids, .ttft = -1 };
    srv_gen g = { .echo_off = r->echo ? r->n_prompt : 0, .finish = "length" };
    if (bj_sampler_init(&g.smp, &r->sp, sl->e->n_vocab, &err) != BJ_OK) {
        job_fail_early(s, j, &lr, err.msg);
        return;
    }
    if (bj_kv_seq_prompt(&sl->kv, r->ids, r->n_ids, sl->logits, &g.n_run, &err) != BJ_OK) {
        bj_kv_seq_clear(&sl->kv);
        bj_sampler_free(&g.smp);
        job_fail_early(s, j, &lr, err.msg);
        return;
    }
    for (int64_t i = 0; i < r->n_ids; i++) bj_sampler_accept(&g.smp, r->ids[i]);
    if (r->stream && r->chat) job_event(s, j, chunk_json(s, j, "", 0, true, NULL, NULL, NULL));
    if (r->stream && r->echo) job_event(s, j, chunk_json(s, j, r->prompt, r->n_prompt, false, NULL, NULL, NULL));
    g.raw = r->logprobs ? malloc((size_t)sl->e->n_vocab * sizeof *g.raw) : NULL;
    g.failed = r->logprobs && !g.raw;
    gen_loop(sl, j, &g, &lr, &err);
    bj_sampler_free(&g.smp);
    /* tokens whose text starts past a stop string are not part of the answer */
    g.n_lp = g.lps.n;
    while (g.cut && g.n_lp > g.lp_sent && g.lps.r[g.n_lp - 1].start >= g.tb.n) g.n_lp--;
    double t1 = srv_now();
    gen_count(s, r, &g, t1 - j->t_queued); /* before the answer is out, so a scrape right after it sees it */
    gen_answer(s, sl, j, &g, &err);
    lr.status = g.failed ? 500 : g.cancelled ? (stopping(s) ? 503 : 499) : 200;
    lr.finish = g.failed ? "failed" : g.cancelled ? "cancelled" : g.finish;
    lr.cached_tokens = r->n_ids - g.n_run;
    lr.completion_tokens = g.n_gen;
    lr.duration = t1 - j->t_queued;
    srv_log_request(s, &lr);
    free(g.raw);
    free(g.lps.r);
    free(g.tb.p);
}

static void *slot_main(void *arg) {
    srv_slot *sl = arg;
    bj_server *s = sl->srv;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stopping) pthread_cond_wait(&s->qcv, &s->mu);
        if (s->stopping) break;
        srv_job *j = s->head;
        s->head = j->next;
        if (!s->head) s->tail = NULL;
        s->n_queued--;
        sl->busy = true;
        pthread_mutex_unlock(&s->mu);
        if (!__atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE)) run_job(sl, j);
        else job_finish(s, j, 503, NULL);
        pthread_mutex_lock(&s->mu);
        sl->busy = false;
        job_release_locked(j);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- HTTP handlers --------------------------------------------------------------------------------- */
typedef struct srv_conn {
    bj_server *s;
    struct MHD_Connection *c;
    char *body;
    size_t n, cap;
    bool too_big;
    bool by_job;              /* a generation job logs this request */
    int ep, status;
    double t0;
    const char *method;       /* libmicrohttpd's, valid until the request completes */
    char id[32];
    char path[128];           /* the URL for the log (cut) */
    const char *allow;        /* methods the endpoint takes, for Allow */
    bool close;               /* ask the client to close the connection (draining) */
} srv_conn;

static bool draining(bj_server *s) { return __atomic_load_n(&s->draining, __ATOMIC_ACQUIRE); }

/* The Origin a CORS answer names, or NULL: not a cross-origin request or not an allowed origin. */
static const char *cors_origin(bj_server *s, struct MHD_Connection *c) {
    const char *list = s->o.cors_origins, *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!list || !*list || !origin) return NULL;
    size_t ol = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && t[-1] == ' ') t--;
        if (t - p == 1 && *p == '*') return "*";
        if ((size_t)(t - p) == ol && !memcmp(p, origin, ol)) return origin;
        p = e;
    }
    return NULL;
}

/* Queues r (headers common to every answer added) and records the status for the log and metrics. */
static enum MHD_Result queue_response(srv_conn *cc, unsigned status, struct MHD_Response *r) {
    const char *origin = cors_origin(cc->s, cc->c);
    if (origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        if (strcmp(origin, "*") != 0) MHD_add_response_header(r, "Vary", "Origin");
    }
    if (status == 405 && cc->allow) MHD_add_response_header(r, "Allow", cc->allow);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    if (cc->close) MHD_add_response_header(r, "Connection", "close");
    cc->status = (int)status;
    enum MHD_Result ret = MHD_queue_response(cc->c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_body(srv_conn *cc, unsigned status, char *body, const char *type) {
    if (!body) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", type);
    return queue_response(cc, status, r);
}

static enum MHD_Result send_json(srv_conn *cc, unsigned status, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return send_body(cc, status, s, "application/json");
}

static enum MHD_Result send_error(srv_conn *cc, unsigned status, const char *param, const char *code,
                                  const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *type = status == 503 ? "unavailable_error" : status >= 500 ? "server_error"
                       : status == 401 ? "authentication_error" : "invalid_request_error";
    return send_json(cc, status, srv_error_json(type, param, code, msg));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    srv_job *j = cls;
    bj_server *s = j->srv;
    pthread_mutex_lock(&s->mu);
    while (j->sent == j->n_out && !j->done && !s->stopping) {
        struct timespec ts;
        deadline_in(&ts, 200);
        pthread_cond_timedwait(&j->cv, &s->mu, &ts);
    }
    ssize_t n;
    if (j->sent < j->n_out) {
        size_t k = j->n_out - j->sent < max ? j->n_out - j->sent : max;
        memcpy(buf, j->out + j->sent, k);
        j->sent += k;
        n = (ssize_t)k;
    } else {
        n = j->done && !j->oom && j->status == 200 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* The stream's response is gone: the answer was sent, or the client went away. */
static void stream_free(void *cls) {
    srv_job *j = cls;
    bj_server *s = j->srv;
    __atomic_store_n(&j->cancelled, true, __ATOMIC_RELEASE);
    pthread_mutex_lock(&s->mu);
    job_release_locked(j);
    pthread_mutex_unlock(&s->mu);
}

/* Whether the client of a connection has closed it (EOF, reset or hang-up on its socket), looked
 * at without blocking while a non-streaming answer is generated. A client that only shut down
 * its sending side counts as gone too (HTTP clients do not do that while waiting). */
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = { ci->connect_fd, POLLIN | POLLRDHUP, 0 };
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
    char b;
    return (p.revents & POLLIN) && recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static enum MHD_Result serve_generate(bj_server *s, srv_conn *cc, bool chat) {
    struct MHD_Connection *c = cc->c;
    if (cc->too_big)
        return send_error(cc, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "request_too_large",
                          "the request body is larger than the limit of %zu bytes", s->o.max_body);
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return send_error(cc, 500, NULL, NULL, "out of memory");
    j->srv = s;
    pthread_cond_init(&j->cv, NULL);
    srv_reqerr re = { 0 };
    int status = srv_req_parse(s, chat, cc->body ? cc->body : "", cc->n, &j->req, &re);
    if (status) {
        job_free(j);
        return send_json(cc, (unsigned)status, srv_error_json(status >= 500 ? "server_error" : "invalid_request_error",
                                                              re.param, re.code, re.msg));
    }
    j->created = (long long)time(NULL);
    j->refs = 2; /* the connection (or its stream) and the queue/slot */
    pthread_mutex_lock(&s->mu);
    if (s->stopping || draining(s) || s->n_queued >= s->o.max_queue) {
        bool stop = s->stopping || draining(s);
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        cc->close = stop;
        return send_error(cc, 503, NULL, NULL, stop ? "the server is shutting down" : "too many requests are waiting");
    }
    snprintf(j->id, sizeof j->id, "%s-%llu", chat ? "chatcmpl" : "cmpl", ++s->next_id);
    j->t_queued = cc->t0;
    if (s->tail) s->tail->next = j;
    else s->head = j;
    s->tail = j;
    s->n_queued++;
    s->n_jobs++;
    cc->by_job = true;
    pthread_cond_signal(&s->qcv);
    if (j->req.stream) {
        pthread_mutex_unlock(&s->mu);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, j, stream_free);
        if (!r) { stream_free(j); return MHD_NO; }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "X-Request-Id", j->id);
        return queue_response(cc, 200, r);
    }
    bool gone = false; /* the client left: its job is cancelled at the next token, nothing is sent */
    while (!j->done && !s->stopping && !(gone = client_gone(c))) {
        struct timespec ts;
        deadline_in(&ts, 50);
        pthread_cond_timedwait(&j->cv, &s->mu, &ts);
    }
    if (gone) {
        __atomic_store_n(&j->cancelled, true, __ATOMIC_RELEASE);
        job_release_locked(j);
        pthread_mutex_unlock(&s->mu);
        cc->status = 499; /* as nginx logs a client that closed its request */
        return MHD_NO;
    }
    char *body = NULL;
    int st = 503;
    if (j->done && j->status != 503) {
        st = j->status;
        body = j->out ? strdup(j->out) : NULL;
    }
    char id[48];
    memcpy(id, j->id, sizeof id);
    __atomic_store_n(&j->cancelled, true, __ATOMIC_RELEASE);
    job_release_locked(j);
    pthread_mutex_unlock(&s->mu);
    if (st == 503) return send_error(cc, 503, NULL, NULL, "the server is shutting down");
    if (!body) return send_error(cc, 500, NULL, NULL, "out of memory");
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "X-Request-Id", id);
    return queue_response(cc, (unsigned)st, r);
}

/* Slots generating and requests waiting for one, now. */
static void slot_counts(bj_server *s, int *busy, int *queued) {
    pthread_mutex_lock(&s->mu);
    *busy = 0;
    for (int i = 0; i < s->n_slots; i++) *busy += s->slots[i].busy;
    *queued = s->n_queued;
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result serve_health(bj_server *s, srv_conn *cc) {
    int busy, queued;
    slot_counts(s, &busy, &queued);
    bool dr = draining(s) || stopping(s);
    return send_json(cc, dr ? 503 : 200,
                     json_pack("{s:s,s:i,s:i,s:i}", "status", dr ? "draining" : "ok", "slots_idle", s->n_slots - busy,
                               "slots_processing", busy, "requests_queued", queued));
}

static enum MHD_Result serve_models(bj_server *s, srv_conn *cc) {
    return send_json(cc, 200,
                     json_pack("{s:s,s:[{s:s,s:s,s:I,s:s,s:{s:I,s:I,s:s}}]}", "object", "list", "data", "id",
                               s->o.model_id, "object", "model", "created", (json_int_t)s->created, "owned_by",
                               "bitjit", "meta", "n_ctx", (json_int_t)s->n_ctx, "n_vocab", (json_int_t)s->n_vocab,
                               "chat_template", bj_chat_kind_name(s->tmpl.kind)));
}

/* POST /tokenize {"content": string, "add_special": bool, "with_pieces": bool} -> {"tokens": [id, ...]}
 * (with_pieces: [{"id", "piece"}]); POST /detokenize {"tokens": [id, ...]} -> {"content": string}. As
 * llama-server's. */
static enum MHD_Result serve_tokenize(bj_server *s, srv_conn *cc, bool detok) {
    if (cc->too_big)
        return send_error(cc, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "request_too_large",
                          "the request body is larger than the limit of %zu bytes", s->o.max_body);
    json_error_t je;
    json_t *root = json_loadb(cc->body ? cc->body : "", cc->n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return send_error(cc, 400, NULL, "invalid_json", "the body must be a JSON object");
    }
    bj_error err = { 0 };
    enum MHD_Result ret;
    if (detok) {
        json_t *a = json_object_get(root, "tokens"), *v;
        size_t i, n = json_array_size(a);
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        bool ok = json_is_array(a) && ids;
        json_array_foreach(a, i, v) {
            if (!ok) break;
            ok = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < bj_tok_vocab_size(s->tok);
            if (ok) ids[i] = (int32_t)json_integer_value(v);
        }
        char *text = NULL;
        size_t len = 0;
        if (!ok) ret = send_error(cc, 400, "tokens", "invalid_value", "'tokens' must be a list of token ids in [0, %d)",
                                  (int)bj_tok_vocab_size(s->tok));
        else if (bj_tok_decode(s->tok, ids, n, false, &text, &len, &err) != BJ_OK)
            ret = send_error(cc, 400, "tokens", "invalid_value", "%s", err.msg);
        else ret = send_json(cc, 200, json_pack("{s:o}", "content", srv_json_text(text, len)));
        free(text);
        free(ids);
    } else {
        json_t *content = json_object_get(root, "content"), *add = json_object_get(root, "add_special"),
               *pieces = json_object_get(root, "with_pieces");
        if (!json_is_string(content)) ret = send_error(cc, 400, "content", "invalid_type", "'content' must be a string");
        else if ((add && !json_is_boolean(add)) || (pieces && !json_is_boolean(pieces)))
            ret = send_error(cc, 400, add && !json_is_boolean(add) ? "add_special" : "with_pieces", "invalid_type",
                             "'add_special' and 'with_pieces' must be true or false");
        else {
            int32_t *ids = NULL;
            size_t n = 0;
            pthread_mutex_lock(&s->tok_mu);
            bj_status bs = bj_tok_encode(s->tok, json_string_value(content), json_string_length(content),
                                         json_is_true(add) && bj_tok_add_bos(s->tok), false, &ids, &n, &err);
            pthread_mutex_unlock(&s->tok_mu);
            if (bs != BJ_OK) ret = send_error(cc, 400, "content", "invalid_value", "%s", err.msg);
            else {
                json_t *a = json_array();
                for (size_t i = 0; i < n; i++) {
                    if (json_is_true(pieces)) {
                        size_t len = 0;
                        const char *p = bj_tok_piece(s->tok, ids[i], &len);
                        json_array_append_new(a, json_pack("{s:i,s:o}", "id", (int)ids[i], "piece",
                                                           srv_json_text(p ? p : "", p ? len : 0)));
                    } else json_array_append_new(a, json_integer(ids[i]));
                }
                ret = send_json(cc, 200, json_pack("{s:o}", "tokens", a));
            }
            free(ids);
        }
    }
    json_decref(root);
    return ret;
}

/* ---- /metrics: Prometheus text format 0.0.4 --------------------------------------------------------- */
static void tb_printf(textbuf *b, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0) tb_add(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* A label value with \, " and newline escaped. */
static void label_value(char *out, size_t cap, const char *v) {
    size_t o = 0;
    for (; *v && o + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') out[o++] = '\\', out[o++] = *v;
        else if (*v == '\n') out[o++] = '\\', out[o++] = 'n';
        else out[o++] = *v;
    }
    out[o] = 0;
}

static void hist_text(textbuf *b, const char *name, const char *help, const srv_hist *h) {
    tb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cum = 0;
    for (int i = 0; i < h->n_le; i++) {
        cum += h->n[i];
        tb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], cum);
    }
    tb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, h->count, name, h->sum, name, h->count);
}

static enum MHD_Result serve_metrics(bj_server *s, srv_conn *cc) {
    int busy, queued;
    slot_counts(s, &busy, &queued);
    textbuf b = { 0 };
    char model[256], tmpl[64];
    label_value(model, sizeof model, s->o.model_id);
    label_value(tmpl, sizeof tmpl, bj_chat_kind_name(s->tmpl.kind));
    tb_printf(&b, "# HELP bitjit_build_info bitjit's version (value 1).\n# TYPE bitjit_build_info gauge\n"
                  "bitjit_build_info{version=\"%s\"} 1\n", BJ_VERSION_STRING);
    tb_printf(&b, "# HELP bitjit_model_info The model served (value 1).\n# TYPE bitjit_model_info gauge\n"
                  "bitjit_model_info{model=\"%s\",n_ctx=\"%lld\",n_vocab=\"%lld\",chat_template=\"%s\"} 1\n", model,
              (long long)s->n_ctx, (long long)s->n_vocab, tmpl);
    tb_printf(&b, "# HELP bitjit_start_time_seconds When the server started, in seconds since the epoch.\n"
                  "# TYPE bitjit_start_time_seconds gauge\nbitjit_start_time_seconds %lld\n", s->created);
    tb_printf(&b, "# HELP bitjit_slots Slots: requests generated at the same time.\n# TYPE bitjit_slots gauge\n"
                  "bitjit_slots %d\n", s->n_slots);
    tb_printf(&b, "# HELP bitjit_slots_busy Slots generating an answer.\n# TYPE bitjit_slots_busy gauge\n"
                  "bitjit_slots_busy %d\n", busy);
    tb_printf(&b, "# HELP bitjit_queue_length Requests waiting for a slot.\n# TYPE bitjit_queue_length gauge\n"
                  "bitjit_queue_length %d\n", queued);
    tb_printf(&b, "# HELP bitjit_draining 1 while the server drains (new requests get 503).\n"
                  "# TYPE bitjit_draining gauge\nbitjit_draining %d\n", draining(s) ? 1 : 0);
    pthread_mutex_lock(&s->met.mu);
    tb_printf(&b, "# HELP bitjit_requests_total HTTP requests answered, by endpoint and status.\n"
                  "# TYPE bitjit_requests_total counter\n");
    for (int i = 0; i < s->met.n_req; i++)
        tb_printf(&b, "bitjit_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", SRV_ENDPOINTS[s->met.req[i].ep],
                  s->met.req[i].status, s->met.req[i].n);
    tb_printf(&b, "# HELP bitjit_prompt_tokens_total Prompt tokens of the requests generated.\n"
                  "# TYPE bitjit_prompt_tokens_total counter\nbitjit_prompt_tokens_total %llu\n", s->met.prompt_tokens);
    tb_printf(&b, "# HELP bitjit_prompt_tokens_cached_total Prompt tokens found in a slot's KV cache (not run).\n"
                  "# TYPE bitjit_prompt_tokens_cached_total counter\nbitjit_prompt_tokens_cached_total %llu\n",
              s->met.prompt_tokens_cached);
    tb_printf(&b, "# HELP bitjit_generated_tokens_total Tokens generated.\n"
                  "# TYPE bitjit_generated_tokens_total counter\nbitjit_generated_tokens_total %llu\n", s->met.gen_tokens);
    hist_text(&b, "bitjit_time_to_first_token_seconds", "From a request's arrival to its first token.", &s->met.ttft);
    hist_text(&b, "bitjit_time_per_output_token_seconds", "Between a request's successive tokens.", &s->met.itl);
    hist_text(&b, "bitjit_request_duration_seconds", "From a generation request's arrival to its last token.",
              &s->met.duration);
    pthread_mutex_unlock(&s->met.mu);
    if (!b.p) return send_error(cc, 500, NULL, NULL, "out of memory");
    return send_body(cc, 200, b.p, "text/plain; version=0.0.4; charset=utf-8");
}

/* Whether the request carries the API key ("Authorization: Bearer KEY"); compared in constant time. */
static bool authorized(bj_server *s, struct MHD_Connection *c) {
    const char *key = s->o.api_key;
    if (!key || !*key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ') h++;
    size_t kl = strlen(key), hl = strlen(h);
    unsigned char diff = kl != hl;
    for (size_t i = 0; i < kl; i++) diff |= (unsigned char)(key[i] ^ (i < hl ? h[i] : 0));
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    bj_server *s = cls;
    srv_conn *cc = *con_cls;
    if (!cc) {
        if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
        cc->s = s, cc->c = c, cc->t0 = srv_now(), cc->method = method, cc->ep = endpoint_of(url);
        snprintf(cc->id, sizeof cc->id, "req-%llu", __atomic_add_fetch(&s->next_req, 1, __ATOMIC_RELAXED));
        snprintf(cc->path, sizeof cc->path, "%s", url);
        for (char *p = cc->path; *p; p++) /* one line of printable ASCII, valid in JSON too */
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (cc->too_big || cc->n + n > s->o.max_body) { /* read and drop the rest, then answer 413 */
            cc->too_big = true;
            free(cc->body);
            cc->body = NULL;
            cc->n = cc->cap = 0;
            return MHD_YES;
        }
        return bj_text_append(&cc->body, &cc->n, &cc->cap, upload, n, 4096) ? MHD_YES : MHD_NO;
    }
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    static const char *const allow_of[] = { [EP_COMPLETIONS] = "POST, OPTIONS", [EP_CHAT] = "POST, OPTIONS",
                                            [EP_MODELS] = "GET, HEAD, OPTIONS", [EP_HEALTH] = "GET, HEAD, OPTIONS",
                                            [EP_METRICS] = "GET, HEAD, OPTIONS", [EP_TOKENIZE] = "POST, OPTIONS",
                                            [EP_DETOKENIZE] = "POST, OPTIONS", [EP_OTHER] = NULL };
    cc->allow = allow_of[cc->ep];
    if (!cc->allow) return send_error(cc, 404, NULL, "not_found", "no endpoint %s %s", method, url);
    if (!strcmp(method, "OPTIONS")) { /* a CORS preflight, or a plain question about the methods */
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Allow", cc->allow);
        if (cors_origin(s, c)) {
            const char *hdrs = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
            MHD_add_response_header(r, "Access-Control-Allow-Methods", cc->allow);
            MHD_add_response_header(r, "Access-Control-Allow-Headers", hdrs ? hdrs : "Authorization, Content-Type");
            MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
        }
        return queue_response(cc, 204, r);
    }
    bool is_get = strstr(cc->allow, "GET") != NULL;
    if (is_get ? !get : !post)
        return send_error(cc, 405, NULL, "method_not_allowed", "%s takes %s, not %s", url, is_get ? "GET" : "POST", method);
    if (cc->ep == EP_HEALTH) return serve_health(s, cc);
    if (cc->ep == EP_METRICS) return serve_metrics(s, cc);
    if (!authorized(s, c))
        return send_error(cc, 401, NULL, "invalid_api_key",
                          "missing or incorrect API key: send it as the header 'Authorization: Bearer KEY'");
    if (draining(s) && cc->ep != EP_COMPLETIONS && cc->ep != EP_CHAT) {
        cc->close = true;
        return send_error(cc, 503, NULL, NULL, "the server is shutting down");
    }
    switch (cc->ep) {
    case EP_MODELS: return serve_models(s, cc);
    case EP_TOKENIZE: return serve_tokenize(s, cc, false);
    case EP_DETOKENIZE: return serve_tokenize(s, cc, true);
    default: return serve_generate(s, cc, cc->ep == EP_CHAT);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    bj_server *s = cls;
    srv_conn *cc = *con_cls;
    if (cc) {
        int status = cc->status ? cc->status : toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? 200 : 499;
        met_count_request(s, cc->ep, status);
        if (!cc->by_job) {
            srv_logrec lr = { .id = cc->id, .method = cc->method ? cc->method : "?", .endpoint = cc->path,
                              .status = status, .prompt_tokens = -1, .ttft = -1, .duration = srv_now() - cc->t0 };
            srv_log_request(s, &lr);
        }
        free(cc->body);
        free(cc);
    }
    *con_cls = NULL;
}

/* ---- start and stop ---------------------------------------------------------------------------------- */
double srv_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

bj_status bj_server_start(bj_server **out, const bj_model *m, const bj_chat_template *t, bj_engine **engines,
                          int n_engines, const bj_server_opts *o, bj_error *err) {
    *out = NULL;
    if (n_engines < 1) return BJ_FAIL(err, BJ_E_INVALID, "the server needs at least one engine");
    union { struct sockaddr sa; struct sockaddr_in v4; struct sockaddr_in6 v6; } addr;
    memset(&addr, 0, sizeof addr);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO | MHD_USE_ITC;
    const char *host = !strcmp(o->host, "localhost") ? "127.0.0.1" : o->host;
    if (o->port < 0 || o->port > 65535) return BJ_FAIL(err, BJ_E_INVALID, "port %d is not in [0, 65535]", o->port);
    if (inet_pton(AF_INET, host, &addr.v4.sin_addr) == 1) {
        addr.v4.sin_family = AF_INET;
        addr.v4.sin_port = htons((uint16_t)o->port);
    } else if (inet_pton(AF_INET6, host, &addr.v6.sin6_addr) == 1) {
        addr.v6.sin6_family = AF_INET6;
        addr.v6.sin6_port = htons((uint16_t)o->port);
        flags |= MHD_USE_IPv6;
    } else {
        return BJ_FAIL(err, BJ_E_INVALID, "host '%s' is not an IPv4 or IPv6 address", o->host);
    }

    bj_server *s = calloc(1, sizeof *s);
    if (!s) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    s->m = m;
    s->tok = m->tok;
    s->tmpl = *t;
    s->o = *o;
    s->n_ctx = engines[0]->max_seq;
    s->n_vocab = engines[0]->n_vocab;
    s->created = (long long)time(NULL);
    s->max_stop_len = SRV_MAX_STOP_LEN;
    s->n_stop_ids = bj_chat_stop_tokens(t, m->tok, s->stop_ids, 4);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->tok_mu, NULL);
    pthread_mutex_init(&s->met.mu, NULL);
    hist_init(&s->met.ttft, LE_TTFT, (int)(sizeof LE_TTFT / sizeof *LE_TTFT));
    hist_init(&s->met.itl, LE_ITL, (int)(sizeof LE_ITL / sizeof *LE_ITL));
    hist_init(&s->met.duration, LE_DURATION, (int)(sizeof LE_DURATION / sizeof *LE_DURATION));
    pthread_cond_init(&s->qcv, NULL);
    s->slots = calloc((size_t)n_engines, sizeof *s->slots);
    bj_status st = s->slots ? BJ_OK : BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    for (int i = 0; st == BJ_OK && i < n_engines; i++) {
        srv_slot *sl = &s->slots[i];
        sl->srv = s;
        sl->e = engines[i];
        st = bj_kv_seq_init(&sl->kv, engines[i], err);
        s->n_slots = i + 1;
        if (st == BJ_OK && !(sl->logits = malloc((size_t)engines[i]->n_vocab * sizeof(float))))
            st = BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    }
    for (int i = 0; st == BJ_OK && i < n_engines; i++) {
        if (pthread_create(&s->slots[i].th, NULL, slot_main, &s->slots[i]) != 0)
            st = BJ_FAIL(err, BJ_E_INTERNAL, "cannot start a slot thread");
        else s->slots[i].started = true;
    }
    if (st == BJ_OK) {
        s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr.sa,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout_s,
                                MHD_OPTION_END);
        if (!s->d)
            st = BJ_FAIL(err, BJ_E_IO, "cannot listen on %s port %d%s%s", o->host, o->port, errno ? ": " : "",
                         errno ? strerror(errno) : "");
    }
    if (st != BJ_OK) {
        bj_server_stop(s);
        return st;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    *out = s;
    return BJ_OK;
}

int bj_server_port(const bj_server *s) { return s->port; }

void bj_server_drain(bj_server *s) { __atomic_store_n(&s->draining, true, __ATOMIC_RELEASE); }

int bj_server_active(bj_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_jobs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void bj_server_stop(bj_server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    __atomic_store_n(&s->stopping, true, __ATOMIC_RELEASE);
    /* queued requests: answered 503 by their connections, which see stopping */
    while (s->head) {
        srv_job *j = s->head;
        s->head = j->next;
        j->done = true;
        j->status = 503;
        pthread_cond_broadcast(&j->cv);
        job_release_locked(j);
    }
    s->tail = NULL;
    s->n_queued = 0;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->mu);
    if (s->d) {
        /* No new connections; give the open ones up to 2 s to send their 503 or end their stream
         * (they see `stopping` within 200 ms), then close everything and join the threads. */
        MHD_socket ls = MHD_quiesce_daemon(s->d);
        for (int i = 0; i < 100; i++) {
            pthread_mutex_lock(&s->mu);
            int live = s->n_jobs;
            pthread_mutex_unlock(&s->mu);
            if (!live) break;
            struct timespec ts = { 0, 20 * 1000000L };
            nanosleep(&ts, NULL);
        }
        MHD_stop_daemon(s->d);
        if (ls != MHD_INVALID_SOCKET) close(ls);
    }
    for (int i = 0; i < s->n_slots; i++) {
        if (s->slots[i].started) pthread_join(s->slots[i].th, NULL);
        bj_kv_seq_free(&s->slots[i].kv);
        free(s->slots[i].logits);
    }
    free(s->slots);
    pthread_cond_destroy(&s->qcv);
    pthread_mutex_destroy(&s->tok_mu);
    pthread_mutex_destroy(&s->met.mu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
