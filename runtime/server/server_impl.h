/* runtime/server/server_impl.h -- what server.c (HTTP, queue, slots) and server_req.c (reading
 * requests) share inside the server. */
#ifndef BJ_SERVER_IMPL_H
#define BJ_SERVER_IMPL_H

#include "runtime/server/server.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sys/types.h>

#define SRV_MAX_STOP 4      /* stop strings per request, as OpenAI */
#define SRV_MAX_STOP_LEN 256
#define SRV_MAX_TOP_LOGPROBS 20 /* as OpenAI's top_logprobs */

/* A checked, tokenized request. */
typedef struct srv_req {
    bool chat, stream;
    json_t *root;             /* the parsed body: the strings below point into it */
    bj_chat_msg *msgs;        /* chat: the messages */
    size_t n_msgs;
    char **owned;             /* contents joined from parts, freed with the request */
    size_t n_owned;
    int32_t *ids;             /* the prompt's tokens */
    int64_t n_ids;
    int64_t max_tokens;
    bj_sampler_params sp;
    const char *stop[SRV_MAX_STOP];
    int n_stop;
    bool logprobs;            /* chat: "logprobs": true; completions: "logprobs": N (0..5) given */
    int n_top;                /* top_logprobs (chat) or logprobs N (completions) */
    bool echo;                /* completions: the prompt is written before the answer */
    const char *prompt;       /* completions: the prompt text (for echo) */
    size_t n_prompt;
    bool include_usage;       /* stream_options.include_usage: a last chunk with usage and no choices */
} srv_req;

typedef struct srv_reqerr {
    char msg[512];
    const char *param, *code;
} srv_reqerr;

typedef struct srv_job srv_job;
struct srv_job {
    bj_server *srv;
    srv_job *next;            /* in the queue */
    srv_req req;
    char id[48];
    long long created;
    /* guarded by srv->mu */
    int refs;                 /* the connection (or its stream) and the queue/slot */
    pthread_cond_t cv;        /* output added or done */
    bool done, oom;
    bool cancelled;           /* the client went away (atomic) */
    int status;               /* HTTP status once done */
    double t_queued;          /* srv_now() when queued: time to first token counts from here */
    char *out;                /* stream: server-sent events not yet sent (from `sent`); else the body */
    size_t n_out, cap_out, sent;
};

/* A Prometheus histogram; bounds are fixed per metric. */
#define SRV_HIST_MAX 16
typedef struct srv_hist {
    const double *le;
    int n_le;
    unsigned long long n[SRV_HIST_MAX]; /* observations <= le[i] (not cumulative) */
    unsigned long long count;
    double sum;
} srv_hist;

#define SRV_MAX_REQ_KEYS 96
typedef struct srv_metrics {
    pthread_mutex_t mu;
    struct { int ep, status; unsigned long long n; } req[SRV_MAX_REQ_KEYS];
    int n_req;
    unsigned long long prompt_tokens, prompt_tokens_cached, gen_tokens;
    srv_hist ttft, itl, duration;
} srv_metrics;

typedef struct srv_slot {
    bj_server *srv;
    bj_engine *e;
    bj_kv_seq kv;
    float *logits;
    pthread_t th;
    bool started, busy;
} srv_slot;

struct bj_server {
    const bj_model *m;
    const bj_tokenizer *tok;
    bj_chat_template tmpl;
    bj_server_opts o;
    struct MHD_Daemon *d;
    int port;
    int64_t n_ctx, n_vocab;
    long long created;
    int32_t stop_ids[4];
    int n_stop_ids;
    size_t max_stop_len;      /* SRV_MAX_STOP_LEN: how far back a new stop match may start */
    pthread_mutex_t mu;       /* the queue, jobs' output, slots' busy flags */
    pthread_cond_t qcv;       /* a job was queued, or stopping */
    pthread_mutex_t tok_mu;   /* tokenizer calls from connection threads */
    srv_job *head, *tail;
    int n_queued;
    int n_jobs;               /* jobs alive (queued, running or still being sent) */
    bool stopping;            /* atomic */
    bool draining;            /* atomic: new requests get 503 */
    srv_metrics met;
    unsigned long long next_id;
    unsigned long long next_req;  /* atomic: ids of requests for the log */
    unsigned long long seed_ctr;  /* atomic: seeds of requests that give none */
    srv_slot *slots;
    int n_slots;
};

/* Reads a /v1/completions (chat false) or /v1/chat/completions body into r: 0, or the HTTP status
 * to answer with e's message (400 bad JSON, a field of the wrong type or value, a prompt beyond
 * the context). */
int srv_req_parse(bj_server *s, bool chat, const char *body, size_t n, srv_req *r, srv_reqerr *e);
void srv_req_free(srv_req *r);

json_t *srv_json_text(const char *p, size_t n);
json_t *srv_error_json(const char *type, const char *param, const char *code, const char *msg);
double srv_now(void);

#endif
