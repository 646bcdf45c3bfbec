/* runtime/server/server.h -- the OpenAI-compatible HTTP server behind `bitjit serve`.
 *
 * libmicrohttpd serves HTTP (one thread per connection); jansson reads and writes JSON.
 * Endpoints: POST /v1/completions, POST /v1/chat/completions (both streamed as server-sent
 * events with "stream": true), GET /v1/models, GET /health, GET /metrics (Prometheus text
 * format), POST /tokenize, POST /detokenize. With an API key set, every endpoint but /health and
 * /metrics (and CORS preflights) needs "Authorization: Bearer KEY" (else 401). With CORS origins
 * set, answers to a listed Origin carry Access-Control-Allow-Origin and OPTIONS preflights are
 * answered (204).
 *
 * Requests are checked and tokenized on their connection's thread, then queued. Each slot (one
 * per engine given, all over the same loaded model) takes the next request from the queue and
 * generates its answer; a slot keeps the tokens of its last request in its engine's KV cache, so
 * a request that starts the same way (a chat's next turn) runs only what is new. A client that
 * goes away cancels its request at the next token. Bad requests get a 4xx answer with an
 * OpenAI-style JSON error body: {"error": {"message", "type", "param", "code"}}. */
#ifndef BJ_SERVER_H
#define BJ_SERVER_H

#include "runtime/chat.h"

typedef struct bj_server_opts {
    const char *host;          /* IPv4 or IPv6 address to listen on (default 127.0.0.1) */
    int port;                  /* 0: any free port (bj_server_port tells which) */
    const char *model_id;      /* the name /v1/models lists and responses carry */
    size_t max_body;           /* larger request bodies get 413 */
    int max_queue;             /* requests waiting beyond this get 503 */
    int max_connections;
    int timeout_s;             /* idle connections are closed after this */
    int64_t n_predict;         /* max_tokens when a request gives none (capped by the context) */
    bj_sampler_params sampling;/* defaults for fields a request leaves out */
    const char *api_key;       /* NULL or "": no key needed */
    const char *cors_origins;  /* comma-separated origins allowed, "*" any; NULL: no CORS headers */
    bool log_json;             /* log lines are JSON objects rather than text */
    /* Called from any thread, once for each request served (one line, no newline); may be NULL. */
    void (*log)(void *ud, const char *line);
    void *log_ud;
} bj_server_opts;

void bj_server_opts_default(bj_server_opts *o);

typedef struct bj_server bj_server;

/* Starts listening and serving. m (its tokenizer), t and the n_engines engines (one slot each,
 * n_engines >= 1) must outlive the server; the engines are used by the server alone until
 * bj_server_stop returns. */
bj_status bj_server_start(bj_server **out, const bj_model *m, const bj_chat_template *t, bj_engine **engines,
                          int n_engines, const bj_server_opts *o, bj_error *err);
int bj_server_port(const bj_server *s);
/* Starts draining: new requests (and /health) get 503 from now on; requests already accepted,
 * queued or running, go on to their end (a stream gets its final chunk and data: [DONE]). */
void bj_server_drain(bj_server *s);
/* Requests accepted and not yet fully answered (queued, generating or still being sent). */
int bj_server_active(bj_server *s);
/* Stops accepting, cancels queued and running requests (their clients get 503 or a cut
 * stream), waits for every thread and frees the server. */
void bj_server_stop(bj_server *s);

#endif
