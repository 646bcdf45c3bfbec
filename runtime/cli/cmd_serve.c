/* runtime/cli/cmd_serve.c -- `bitjit serve`: an OpenAI-compatible HTTP server over one loaded model
 * (runtime/server/). Loads the model, makes one engine per slot, serves until SIGTERM or SIGINT,
 * then drains (new requests get 503, accepted ones finish, up to --drain-timeout; a second signal
 * cuts it short), stops and exits 0. */
#include "runtime/cli/cli.h"
#include "runtime/server/server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static int usage_serve(FILE *f) {
    fprintf(f,
            "usage: bitjit serve [-m PATH] [--host ADDR] [--port N] [--parallel N] [options]\n"
            "\n"
            "Serves a model over HTTP with OpenAI-compatible endpoints:\n"
            "  POST /v1/completions        {\"prompt\": string or [string], \"max_tokens\", \"temperature\", \"top_p\",\n"
            "                              \"top_k\", \"min_p\", \"seed\", \"stop\": string or [string, ...],\n"
            "                              \"stream\", \"repetition_penalty\", \"repeat_last_n\", \"model\"}\n"
            "  POST /v1/chat/completions   the same with \"messages\": [{\"role\", \"content\"}, ...] instead of\n"
            "                              \"prompt\" (rendered with the model's chat template, or as plain text)\n"
            "  GET  /v1/models             the model served\n"
            "  GET  /health                {\"status\": \"ok\", ...} (503 {\"status\": \"draining\"} while draining)\n"
            "  GET  /metrics               Prometheus text format: requests, tokens, latency, slots, queue\n"
            "  POST /tokenize              {\"content\", \"add_special\", \"with_pieces\"} -> {\"tokens\"}\n"
            "  POST /detokenize            {\"tokens\"} -> {\"content\"}\n"
            "With \"stream\": true the answer comes as server-sent events (data: {...}) ending with\n"
            "data: [DONE]. Errors are JSON {\"error\": {\"message\", \"type\", \"param\", \"code\"}} with a 4xx status\n"
            "(5xx: server side). Also: \"logprobs\", \"top_logprobs\" (chat), \"echo\" (completions),\n"
            "\"max_completion_tokens\", \"stream_options\": {\"include_usage\"}; n > 1, response_format other than\n"
            "text, tools, logit_bias and non-zero presence/frequency penalties get 400. Prints \"listening on\n"
            "http://ADDR:PORT\" on stderr once ready, then one line per request (-q: none). SIGTERM or SIGINT\n"
            "drains: new requests get 503, accepted ones finish (streams with data: [DONE]) for up to\n"
            "--drain-timeout seconds; a second signal stops at once. Exit status 0.\n"
            "\n"
            "server:\n"
            "      --host ADDR         IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
            "      --port N            TCP port; 0 = any free one (default 8080)\n"
            "      --parallel N        slots: requests generated at the same time, each on an engine of\n"
            "                          its own over the one loaded model (default 1); -t is split among them;\n"
            "                          other requests wait in a queue\n"
            "      --alias NAME        model name for /v1/models and responses (default: from the path)\n"
            "  -n, --n-predict N       max_tokens when a request gives none (default 256, capped by the context)\n"
            "      --chat-template T   bitnet, llama3, chatml, falcon3 or plain instead of the model's own\n"
            "      --max-body BYTES    larger request bodies get 413 (default 1048576)\n"
            "      --max-queue N       requests waiting beyond N get 503 (default 256)\n"
            "      --timeout S         close connections idle for S seconds (default 60)\n"
            "      --api-key KEY       requests need \"Authorization: Bearer KEY\" (401 otherwise); /health,\n"
            "                          /metrics and CORS preflights stay open\n"
            "      --api-key-file F    the key from the first line of file F (keeps it out of ps)\n"
            "      --cors-origin LIST  comma-separated origins browsers may call from, or *\n"
            "      --drain-timeout S   on SIGTERM, wait up to S seconds for accepted requests (default 30)\n"
            "      --log-format F      per-request log lines on stderr: text or json (default text)\n"
            "\n"
            "sampling (defaults for requests that leave a field out):\n" CLI_SAMPLING_HELP
            "\n"
            "model and execution:\n" CLI_MODEL_HELP
            "  -h, --help              show this help\n");
    return f == stderr ? 2 : 0;
}

typedef struct serve_opts {
    bj_server_opts so;
    int parallel;
    int drain_timeout;
    const char *alias, *tmpl, *key_file;
    cli_sampling samp;
    cli_model_opts mo;
} serve_opts;

enum { O_HOST = CLI_O_CMD, O_PORT, O_PARALLEL, O_ALIAS, O_TEMPLATE, O_MAX_BODY, O_MAX_QUEUE, O_TIMEOUT, O_API_KEY,
       O_API_KEY_FILE, O_CORS, O_DRAIN, O_LOG_FORMAT };

static void parse_serve(int argc, char **argv, serve_opts *o) {
    static const struct option longs[] = {
        { "host", required_argument, 0, O_HOST }, { "port", required_argument, 0, O_PORT },
        { "parallel", required_argument, 0, O_PARALLEL }, { "alias", required_argument, 0, O_ALIAS },
        { "n-predict", required_argument, 0, 'n' }, { "chat-template", required_argument, 0, O_TEMPLATE },
        { "max-body", required_argument, 0, O_MAX_BODY }, { "max-queue", required_argument, 0, O_MAX_QUEUE },
        { "timeout", required_argument, 0, O_TIMEOUT }, { "api-key", required_argument, 0, O_API_KEY },
        { "api-key-file", required_argument, 0, O_API_KEY_FILE }, { "cors-origin", required_argument, 0, O_CORS },
        { "drain-timeout", required_argument, 0, O_DRAIN }, { "log-format", required_argument, 0, O_LOG_FORMAT },
        CLI_SAMPLING_LONGOPTS, CLI_MODEL_LONGOPTS, CLI_END_LONGOPTS,
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":n:h" CLI_MODEL_SHORTOPTS CLI_SAMPLING_SHORTOPTS, longs, NULL)) != -1) {
        if (cli_model_opt(c, optarg, &o->mo) || cli_sampling_opt(c, optarg, &o->samp)) continue;
        switch (c) {
        case O_HOST: o->so.host = optarg; break;
        case O_PORT: o->so.port = (int)cli_parse_int("--port", optarg, 0, 65535); break;
        case O_PARALLEL: o->parallel = (int)cli_parse_int("--parallel", optarg, 1, 64); break;
        case O_ALIAS: o->alias = optarg; break;
        case 'n': o->so.n_predict = cli_parse_int("-n", optarg, 1, INT32_MAX); break;
        case O_TEMPLATE: o->tmpl = optarg; break;
        case O_MAX_BODY: o->so.max_body = (size_t)cli_parse_int("--max-body", optarg, 64, 1LL << 30); break;
        case O_MAX_QUEUE: o->so.max_queue = (int)cli_parse_int("--max-queue", optarg, 1, 1 << 20); break;
        case O_TIMEOUT: o->so.timeout_s = (int)cli_parse_int("--timeout", optarg, 1, 86400); break;
        case O_API_KEY:
            if (!*optarg) cli_die_usage("--api-key needs a non-empty key%s", "");
            o->so.api_key = optarg;
            break;
        case O_API_KEY_FILE: o->key_file = optarg; break;
        case O_CORS: o->so.cors_origins = optarg; break;
        case O_DRAIN: o->drain_timeout = (int)cli_parse_int("--drain-timeout", optarg, 0, 86400); break;
        case O_LOG_FORMAT:
            if (strcmp(optarg, "text") && strcmp(optarg, "json")) cli_die_usage("--log-format takes text or json, not '%s'", optarg);
            o->so.log_json = !strcmp(optarg, "json");
            break;
        default: cli_bad_option(c, argv, usage_serve);
        }
    }
    if (optind < argc) cli_die_usage("unexpected argument '%s'", argv[optind]);
    if (o->tmpl) cli_check_chat_template(o->tmpl);
    cli_model_opts_check(&o->mo);
    cli_sampling_finish(&o->samp);
}

/* The model's name from its path: the last two components, less a file extension. */
static void model_id(const char *path, char *out, size_t cap) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    char *base = strrchr(p, '/');
    char *dot = strrchr(base ? base : p, '.');
    if (dot && dot != (base ? base + 1 : p)) *dot = 0;
    const char *start = p;
    if (base) {
        *base = 0;
        char *prev = strrchr(p, '/');
        *base = '/';
        start = prev ? prev + 1 : p;
    }
    snprintf(out, cap, "%s", start);
}

static void log_line(void *ud, const char *line) {
    bool json = *(const bool *)ud;
    if (json) fprintf(stderr, "%s\n", line); /* one JSON object a line, for log shippers */
    else fprintf(stderr, "%s serve: %s\n", bj_cli_prog, line);
}

/* The API key: the first line of path (a trailing CR/LF and spaces dropped). Exits on error. */
static char *read_key_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "%s: error: cannot read the API key file '%s': %s\n", bj_cli_prog, path, strerror(errno)); exit(1); }
    char buf[4096];
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t')) buf[--n] = 0;
    if (!n) { fprintf(stderr, "%s: error: the API key file '%s' has no key on its first line\n", bj_cli_prog, path); exit(1); }
    char *k = strdup(buf);
    if (!k) { fprintf(stderr, "%s: error: out of memory\n", bj_cli_prog); exit(1); }
    return k;
}

/* SIGINT/SIGTERM are taken by sigwait: blocked (into *sigs) before any thread starts. A shell
 * starts background jobs with SIGINT ignored, and an ignored signal never reaches sigwait:
 * restore the default first. */
static void block_stop_signals(sigset_t *sigs) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(sigs);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* One engine a slot (each its own KV cache): the session's, then parallel - 1 more. Exits on error. */
static bj_engine **make_slot_engines(serve_opts *o, cli_session *ses) {
    bj_error err = { 0 };
    bj_engine **engines = calloc((size_t)o->parallel, sizeof *engines);
    if (!engines) { fprintf(stderr, "%s: error: out of memory\n", bj_cli_prog); exit(1); }
    engines[0] = ses->e;
    for (int i = 1; i < o->parallel; i++) {
        bj_status st;
        if (!strcmp(o->mo.engine, "ref")) st = bj_ref_engine_create_kv(&engines[i], &ses->m.graph, o->mo.jit.n_ctx, o->mo.jit.kv, &err);
        else {
            bj_jit_report r;
            o->mo.jit.progress = NULL;
            o->mo.jit.pipeline = &o->mo.pl; /* --disable-passes etc. */
            st = bj_jit_engine_create(&engines[i], &ses->m.graph, &o->mo.jit, &r, &err);
        }
        if (st != BJ_OK) cli_die_error(&err);
    }
    return engines;
}

/* After the first stop signal: no new requests; those in progress finish, up to --drain-timeout
 * seconds or a second signal. */
static void drain(bj_server *srv, const sigset_t *sigs, int sig, const serve_opts *o) {
    int active = bj_server_active(srv);
    if (!o->mo.quiet)
        fprintf(stderr, "%s serve: %s: draining (%d request%s in progress, up to %d s)\n", bj_cli_prog,
                sig == SIGINT ? "SIGINT" : "SIGTERM", active, active == 1 ? "" : "s", o->drain_timeout);
    bj_server_drain(srv);
    struct timespec t0, now, tick = { 0, 50 * 1000000L };
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (bj_server_active(srv) == 0) break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9 >= o->drain_timeout) {
            if (!o->mo.quiet) fprintf(stderr, "%s serve: drain timeout: stopping %d request%s\n", bj_cli_prog,
                                      bj_server_active(srv), bj_server_active(srv) == 1 ? "" : "s");
            break;
        }
        if (sigtimedwait(sigs, NULL, &tick) > 0) { /* a second signal: stop now */
            if (!o->mo.quiet) fprintf(stderr, "%s serve: second signal: stopping now\n", bj_cli_prog);
            break;
        }
    }
}

int bj_cmd_serve(int argc, char **argv) {
    serve_opts o = { .parallel = 1, .drain_timeout = 30 };
    bj_server_opts_default(&o.so);
    cli_sampling_init(&o.samp);
    cli_model_opts_init(&o.mo);
    parse_serve(argc, argv, &o);
    o.so.sampling = o.samp.sp;
    char *key = o.key_file ? read_key_file(o.key_file) : NULL;
    if (key) o.so.api_key = key;
    if (!o.mo.quiet) o.so.log = log_line, o.so.log_ud = &o.so.log_json;
    sigset_t sigs;
    block_stop_signals(&sigs);

    o.mo.jit.n_threads = o.mo.jit.n_threads / o.parallel > 1 ? o.mo.jit.n_threads / o.parallel : 1;
    o.mo.n_engines = o.parallel; /* each slot's engine has its own KV cache */
    cli_session ses;
    cli_open(&o.mo, &ses);
    bj_engine **engines = make_slot_engines(&o, &ses);
    bj_chat_template tmpl;
    cli_chat_template(&ses, o.tmpl, o.mo.quiet, "chat requests are rendered as plain text", &tmpl);
    char id[256];
    model_id(o.mo.model, id, sizeof id);
    o.so.model_id = o.alias ? o.alias : id;

    bj_error err = { 0 };
    bj_server *srv;
    if (bj_server_start(&srv, &ses.m, &tmpl, engines, o.parallel, &o.so, &err) != BJ_OK) cli_die_error(&err);
    fprintf(stderr, "%s serve: listening on http://%s%s%s:%d (model %s, template %s, %d slot%s, context %lld tokens)\n",
            bj_cli_prog, strchr(o.so.host, ':') ? "[" : "", o.so.host, strchr(o.so.host, ':') ? "]" : "",
            bj_server_port(srv), o.so.model_id, bj_chat_kind_name(tmpl.kind), o.parallel, o.parallel == 1 ? "" : "s",
            (long long)ses.e->max_seq);
    fflush(stderr);

    int sig = 0;
    sigwait(&sigs, &sig);
    drain(srv, &sigs, sig, &o);
    if (!o.mo.quiet) fprintf(stderr, "%s serve: shutting down\n", bj_cli_prog);
    bj_server_stop(srv);
    free(key);
    for (int i = 1; i < o.parallel; i++) bj_engine_free(engines[i]);
    free(engines);
    cli_close(&ses);
    return 0;
}
