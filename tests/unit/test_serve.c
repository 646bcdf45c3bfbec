/* tests/unit/test_serve.c -- `bitjit serve` end to end: the server runs as a child process on a
 * free loopback port (--port 0; the port is read from its "listening on" line) and is spoken to
 * by the small HTTP/1.1 client below (plain sockets, chunked bodies decoded). Greedy answers must
 * equal `bitjit run --temp 0` on the same text (an independent path); streams must add up to the
 * same text; bad requests get 4xx with a JSON error; 8 clients x 20 requests all come back right;
 * a client that leaves mid-stream frees its slot; SIGTERM/SIGINT end the server with status 0. */
#include <criterion/criterion.h>

#include "support/shell.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KJV BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- the server as a child process ---------------------------------------------------------------- */
typedef struct server {
    pid_t pid;
    int port, err_fd;
    pthread_t drain;
    char log[1 << 16];
    size_t n_log;
} server;

static void *drain_main(void *arg) {
    server *s = arg;
    char buf[4096];
    ssize_t k;
    while ((k = read(s->err_fd, buf, sizeof buf)) > 0) {
        size_t room = sizeof s->log - 1 - s->n_log;
        size_t c = (size_t)k < room ? (size_t)k : room;
        memcpy(s->log + s->n_log, buf, c);
        s->n_log += c;
        s->log[s->n_log] = 0;
    }
    return NULL;
}

/* Starts `bitjit serve -m KJV --port 0 -t 1 EXTRA...` (NULL-terminated) and waits until it listens. */
static void start_server(server *s, ...) {
    memset(s, 0, sizeof *s);
    signal(SIGPIPE, SIG_IGN);
    const char *argv[32] = { "bitjit", "serve", "-m", KJV, "--port", "0", "-t", "1" };
    int argc = 8;
    va_list ap;
    va_start(ap, s);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 31) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    s->pid = spawn_piped(BJ_BITJIT_EXE, (char *const *)argv, NULL, NULL, &s->err_fd);
    /* read stderr up to the "listening on" line */
    const char *key = "listening on http://127.0.0.1:";
    double t0 = now_s();
    while (!strstr(s->log, key)) {
        struct pollfd pf = { s->err_fd, POLLIN, 0 };
        cr_assert(now_s() - t0 < 60, "the server did not start: %s", s->log);
        if (poll(&pf, 1, 1000) <= 0) continue;
        ssize_t k = read(s->err_fd, s->log + s->n_log, sizeof s->log - 1 - s->n_log);
        cr_assert_gt(k, 0, "the server exited: %s", s->log);
        s->n_log += (size_t)k;
        s->log[s->n_log] = 0;
    }
    s->port = atoi(strstr(s->log, key) + strlen(key));
    cr_assert_gt(s->port, 0);
    pthread_create(&s->drain, NULL, drain_main, s);
}

/* Sends sig and checks the server exits with status 0 in time. */
static void stop_server(server *s, int sig) {
    kill(s->pid, sig);
    int st = 0;
    double t0 = now_s();
    pid_t r;
    while ((r = waitpid(s->pid, &st, WNOHANG)) == 0 && now_s() - t0 < 30) usleep(20 * 1000);
    if (r == 0) { kill(s->pid, SIGKILL); waitpid(s->pid, &st, 0); }
    pthread_join(s->drain, NULL);
    close(s->err_fd);
    cr_expect(r == s->pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit: %d; log:\n%s", st, s->log);
}

/* ---- a minimal HTTP/1.1 client -------------------------------------------------------------------- */
typedef struct resp {
    int status;
    char head[4096];
    char *body;
    size_t n;
} resp;

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        p += k, n -= (size_t)k;
    }
    return true;
}

static bool send_request(int fd, const char *method, const char *path, const char *body, size_t n) {
    char h[1024];
    int hl = snprintf(h, sizeof h,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s", method, path,
                      body ? "Content-Type: application/json\r\n" : "", "");
    if (body) hl += snprintf(h + hl, sizeof h - (size_t)hl, "Content-Length: %zu\r\n", n);
    hl += snprintf(h + hl, sizeof h - (size_t)hl, "\r\n");
    if (!send_all(fd, h, (size_t)hl)) return false;
    if (body) send_all(fd, body, n); /* the server may answer (413) before reading it all */
    return true;
}

/* Decodes a chunked body in place; false if malformed. */
static bool dechunk(char *b, size_t *n) {
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long len = strtoul(b + in, &end, 16);
        char *crlf = memmem(b + in, *n - in, "\r\n", 2);
        if (end == b + in || !crlf) return false;
        in = (size_t)(crlf - b) + 2;
        if (len == 0) break;
        if (in + len + 2 > *n) return false;
        memmove(b + out, b + in, len);
        out += len;
        in += len + 2;
    }
    *n = out;
    b[out] = 0;
    return true;
}

/* One request on a fresh connection; false if the connection failed or the answer is not HTTP. */
static bool http(int port, const char *method, const char *path, const char *body, size_t n, resp *r) {
    memset(r, 0, sizeof *r);
    int fd = connect_to(port);
    if (fd < 0) return false;
    if (!send_request(fd, method, path, body, n)) { close(fd); return false; }
    size_t cap = 1 << 14, len = 0;
    char *buf = malloc(cap);
    double t0 = now_s();
    for (;;) {
        struct pollfd pf = { fd, POLLIN, 0 };
        if (now_s() - t0 > 60) break;
        if (poll(&pf, 1, 1000) <= 0) continue;
        if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
        if (k <= 0) break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) { free(buf); return false; }
    size_t hl = (size_t)(sep - buf);
    snprintf(r->head, sizeof r->head, "%.*s", (int)(hl < sizeof r->head - 1 ? hl : sizeof r->head - 1), buf);
    r->n = len - hl - 4;
    r->body = malloc(r->n + 1);
    memcpy(r->body, sep + 4, r->n);
    r->body[r->n] = 0;
    free(buf);
    for (char *p = r->head; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    if (strstr(r->head, "transfer-encoding: chunked") && !dechunk(r->body, &r->n)) return false;
    return true;
}

static json_t *post_json(int port, const char *path, const char *body, int *status) {
    resp r;
    cr_assert(http(port, "POST", path, body, strlen(body), &r), "no HTTP answer to %s", body);
    *status = r.status;
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    cr_assert(j, "answer is not JSON (%s): %s", je.text, r.body);
    free(r.body);
    return j;
}

static const char *jstr(json_t *j, const char *path) {
    /* "a.b.0.c" */
    char p[256];
    snprintf(p, sizeof p, "%s", path);
    char *save = NULL;
    for (char *t = strtok_r(p, ".", &save); t && j; t = strtok_r(NULL, ".", &save))
        j = json_is_array(j) ? json_array_get(j, (size_t)atoi(t)) : json_object_get(j, t);
    return json_string_value(j);
}

static long long jint(json_t *j, const char *path) {
    char p[256];
    snprintf(p, sizeof p, "%s", path);
    char *save = NULL;
    for (char *t = strtok_r(p, ".", &save); t && j; t = strtok_r(NULL, ".", &save))
        j = json_is_array(j) ? json_array_get(j, (size_t)atoi(t)) : json_object_get(j, t);
    return json_is_integer(j) ? json_integer_value(j) : -1;
}

/* A JSON request body with the prompt or one user message properly escaped. */
static char *body_for(const char *key, const char *text, const char *extra) {
    json_t *o = json_loads(extra, 0, NULL);
    cr_assert(o);
    if (!strcmp(key, "prompt")) json_object_set_new(o, "prompt", json_string(text));
    else if (!strcmp(key, "prompt[]")) json_object_set_new(o, "prompt", json_pack("[s]", text));
    else json_object_set_new(o, "messages", json_pack("[{s:s,s:s}]", "role", "user", "content", text));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Server-sent events of a streamed answer: the text pieces joined; the finish_reason of the last
 * event; checks the stream ends with data: [DONE]. */
static char *join_stream(const resp *r, bool chat, char *finish, size_t fcap, int *n_events) {
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert(strstr(r->head, "content-type: text/event-stream"), "%s", r->head);
    size_t cap = r->n + 1, len = 0;
    char *text = calloc(1, cap);
    const char *p = r->body;
    bool done = false;
    *n_events = 0;
    finish[0] = 0;
    while (*p) {
        cr_assert(!done, "data after [DONE]");
        cr_assert(!strncmp(p, "data: ", 6), "not an SSE data line: %.80s", p);
        const char *end = strstr(p, "\n\n");
        cr_assert(end, "event without a blank line");
        char ev[65536];
        snprintf(ev, sizeof ev, "%.*s", (int)(end - p - 6), p + 6);
        p = end + 2;
        if (!strcmp(ev, "[DONE]")) { done = true; continue; }
        json_t *j = json_loads(ev, 0, NULL);
        cr_assert(j, "event is not JSON: %s", ev);
        cr_expect_str_eq(jstr(j, "object"), chat ? "chat.completion.chunk" : "text_completion");
        const char *t = jstr(j, chat ? "choices.0.delta.content" : "choices.0.text");
        if (t) { memcpy(text + len, t, strlen(t)); len += strlen(t); }
        const char *f = jstr(j, "choices.0.finish_reason");
        if (f) snprintf(finish, fcap, "%s", f);
        (*n_events)++;
        json_decref(j);
    }
    cr_assert(done, "the stream did not end with data: [DONE]");
    return text;
}

/* ---- tests ------------------------------------------------------------------------------------------- */
static const char *const PROMPTS[] = { "In the beginning", "And the LORD said unto Moses,", "Blessed are the",
                                       "Amen" };

Test(serve, completions_equal_run, .timeout = 180) {
    server s;
    start_server(&s, NULL);
    for (int i = 0; i < 2; i++) {
        char *want = bitjit_continuation(KJV, PROMPTS[i], 24);
        for (int form = 0; form < 2; form++) {
            char *b = body_for(form ? "prompt[]" : "prompt", PROMPTS[i], "{\"max_tokens\":24,\"temperature\":0,\"model\":\"x\"}");
            int st;
            json_t *j = post_json(s.port, "/v1/completions", b, &st);
            cr_assert_eq(st, 200, "%s", json_dumps(j, 0));
            cr_expect_str_eq(jstr(j, "object"), "text_completion");
            cr_expect_str_eq(jstr(j, "choices.0.text"), want);
            long long pt = jint(j, "usage.prompt_tokens"), ct = jint(j, "usage.completion_tokens");
            cr_expect_gt(pt, 0);
            cr_expect(ct >= 1 && ct <= 24);
            cr_expect_eq(jint(j, "usage.total_tokens"), pt + ct);
            cr_expect_str_eq(jstr(j, "choices.0.finish_reason"), ct == 24 ? "length" : "stop");
            json_decref(j);
            free(b);
        }
        /* streamed: the pieces add up to the same text */
        char *b = body_for("prompt", PROMPTS[i], "{\"max_tokens\":24,\"temperature\":0,\"stream\":true}");
        resp r;
        cr_assert(http(s.port, "POST", "/v1/completions", b, strlen(b), &r));
        char finish[32];
        int n_ev;
        char *text = join_stream(&r, false, finish, sizeof finish, &n_ev);
        cr_expect_str_eq(text, want);
        cr_expect_gt(n_ev, 2);
        cr_expect(!strcmp(finish, "length") || !strcmp(finish, "stop"), "%s", finish);
        free(text);
        free(r.body);
        free(b);
        /* a stop string cuts the text where it first occurs */
        if (strlen(want) > 12) {
            char stop[5];
            memcpy(stop, want + 8, 4);
            stop[4] = 0;
            char extra[256];
            json_t *sj = json_string(stop);
            char *sq = json_dumps(sj, JSON_ENCODE_ANY);
            snprintf(extra, sizeof extra, "{\"max_tokens\":24,\"temperature\":0,\"stop\":[%s, \"zzzzqqq\"]}", sq);
            free(sq);
            json_decref(sj);
            for (int stream = 0; stream < 2; stream++) {
                if (stream) { size_t l = strlen(extra); memcpy(extra + l - 1, ",\"stream\":true}", 16); }
                b = body_for("prompt", PROMPTS[i], extra);
                char *cut = strndup(want, (size_t)(strstr(want, stop) - want));
                if (stream) {
                    cr_assert(http(s.port, "POST", "/v1/completions", b, strlen(b), &r));
                    text = join_stream(&r, false, finish, sizeof finish, &n_ev);
                    cr_expect_str_eq(text, cut);
                    cr_expect_str_eq(finish, "stop");
                    free(text);
                    free(r.body);
                } else {
                    int st;
                    json_t *j = post_json(s.port, "/v1/completions", b, &st);
                    cr_expect_eq(st, 200);
                    cr_expect_str_eq(jstr(j, "choices.0.text"), cut);
                    cr_expect_str_eq(jstr(j, "choices.0.finish_reason"), "stop");
                    json_decref(j);
                }
                free(cut);
                free(b);
            }
        }
        free(want);
    }
    stop_server(&s, SIGTERM);
}

Test(serve, chat_completions_equal_run, .timeout = 180) {
    server s;
    start_server(&s, NULL);
    /* the bundled model has no template: a user message is plain text to continue */
    const char *a = "In the beginning", *b2 = "And God said";
    char *r1 = bitjit_continuation(KJV, a, 24);
    char *b = body_for("messages", a, "{\"max_tokens\":24,\"temperature\":0}");
    int st;
    json_t *j = post_json(s.port, "/v1/chat/completions", b, &st);
    cr_assert_eq(st, 200, "%s", json_dumps(j, 0));
    cr_expect_str_eq(jstr(j, "object"), "chat.completion");
    cr_expect_str_eq(jstr(j, "choices.0.message.role"), "assistant");
    cr_expect_str_eq(jstr(j, "choices.0.message.content"), r1);
    cr_expect_gt(jint(j, "usage.completion_tokens"), 0);
    json_decref(j);
    free(b);
    /* streamed */
    b = body_for("messages", a, "{\"max_tokens\":24,\"temperature\":0,\"stream\":true}");
    resp r;
    cr_assert(http(s.port, "POST", "/v1/chat/completions", b, strlen(b), &r));
    char finish[32];
    int n_ev;
    char *text = join_stream(&r, true, finish, sizeof finish, &n_ev);
    cr_expect_str_eq(text, r1);
    cr_expect(strstr(r.body, "\"role\":\"assistant\""));
    free(text);
    free(r.body);
    free(b);
    /* a second turn: the conversation as plain text, continued */
    char p2[4096];
    snprintf(p2, sizeof p2, "%s%s\n%s", a, r1, b2);
    char *r2 = bitjit_continuation(KJV, p2, 24);
    json_t *req = json_pack("{s:[{s:s,s:s},{s:s,s:s},{s:s,s:[{s:s,s:s}]}],s:i,s:f}", "messages", "role", "user",
                            "content", a, "role", "assistant", "content", r1, "role", "user", "content", "type",
                            "text", "text", b2, "max_tokens", 24, "temperature", 0.0);
    b = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    j = post_json(s.port, "/v1/chat/completions", b, &st);
    cr_assert_eq(st, 200, "%s", json_dumps(j, 0));
    cr_expect_str_eq(jstr(j, "choices.0.message.content"), r2);
    json_decref(j);
    free(b);
    free(r1);
    free(r2);
    stop_server(&s, SIGINT);
}

/* Context shifting (issue 23): with -c 64, a conversation longer than the context is answered with its
 * oldest turns dropped (the system message kept), not refused; a message that does not fit alone
 * still is. The answer equals the one to the kept messages sent alone. */
Test(serve, chat_context_shift, .timeout = 180) {
    server s;
    start_server(&s, "-c", "64", NULL);
    const char *sys = "The book of Genesis.", *turns[] = {
        "In the beginning God created the heaven and the earth.", "And the earth was without form, and void.",
        "And God said, Let there be light: and there was light.", "And God saw the light, that it was good.",
        "And God called the light Day, and the darkness he called Night." };
    json_t *msgs = json_pack("[{s:s,s:s}]", "role", "system", "content", sys);
    for (int i = 0; i < 5; i++)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", i % 2 ? "assistant" : "user", "content", turns[i]));
    json_t *req = json_pack("{s:O,s:i,s:f}", "messages", msgs, "max_tokens", 16, "temperature", 0.0);
    char *b = json_dumps(req, JSON_COMPACT);
    int st;
    json_t *j = post_json(s.port, "/v1/chat/completions", b, &st);
    cr_assert_eq(st, 200, "%s", json_dumps(j, 0));
    long long prompt = jint(j, "usage.prompt_tokens");
    cr_expect(prompt > 0 && prompt + 16 <= 64, "prompt_tokens %lld", prompt);
    cr_expect_eq(jint(j, "usage.completion_tokens"), 16);
    char *got = strdup(jstr(j, "choices.0.message.content"));
    json_decref(j);
    free(b);
    /* the same request with the oldest turns taken out by hand, until as short: the same answer */
    bool found = false;
    for (size_t drop = 2; drop <= 4 && !found; drop += 2) {
        json_t *m2 = json_pack("[{s:s,s:s}]", "role", "system", "content", sys);
        for (size_t i = drop; i < 5; i++)
            json_array_append_new(m2, json_pack("{s:s,s:s}", "role", i % 2 ? "assistant" : "user", "content", turns[i]));
        json_t *r2 = json_pack("{s:o,s:i,s:f}", "messages", m2, "max_tokens", 16, "temperature", 0.0);
        b = json_dumps(r2, JSON_COMPACT);
        j = post_json(s.port, "/v1/chat/completions", b, &st);
        cr_assert_eq(st, 200, "%s", json_dumps(j, 0));
        if (jint(j, "usage.prompt_tokens") == prompt) {
            found = true;
            cr_expect_str_eq(jstr(j, "choices.0.message.content"), got);
        }
        json_decref(j);
        json_decref(r2);
        free(b);
    }
    cr_expect(found, "no hand-dropped conversation has %lld prompt tokens", prompt);
    /* one message longer than the context: still refused */
    char longmsg[4096] = "";
    for (int i = 0; i < 12; i++) strcat(longmsg, "And God said, Let there be light. ");
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", longmsg));
    b = json_dumps(req, JSON_COMPACT);
    j = post_json(s.port, "/v1/chat/completions", b, &st);
    cr_expect_eq(st, 400, "%s", json_dumps(j, 0));
    cr_expect_str_eq(jstr(j, "error.code"), "context_length_exceeded");
    json_decref(j);
    free(b);
    free(got);
    json_decref(req);
    json_decref(msgs);
    stop_server(&s, SIGTERM);
}

Test(serve, models_health_routes, .timeout = 120) {
    server s;
    start_server(&s, "--alias", "kjv-test", NULL);
    resp r;
    cr_assert(http(s.port, "GET", "/health", NULL, 0, &r));
    cr_expect_eq(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    cr_expect_str_eq(jstr(j, "status"), "ok");
    json_decref(j);
    free(r.body);
    cr_assert(http(s.port, "GET", "/v1/models", NULL, 0, &r));
    cr_expect_eq(r.status, 200);
    j = json_loads(r.body, 0, NULL);
    cr_expect_str_eq(jstr(j, "object"), "list");
    cr_expect_str_eq(jstr(j, "data.0.id"), "kjv-test");
    cr_expect_str_eq(jstr(j, "data.0.object"), "model");
    json_decref(j);
    free(r.body);
    const struct { const char *method, *path; int status; } cases[] = {
        { "GET", "/nope", 404 }, { "GET", "/v1/completions", 405 }, { "POST", "/health", 405 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert(http(s.port, cases[i].method, cases[i].path, cases[i].status == 405 && !strcmp(cases[i].method, "POST") ? "{}" : NULL, 2, &r));
        cr_expect_eq(r.status, cases[i].status, "%s %s", cases[i].method, cases[i].path);
        j = json_loads(r.body, 0, NULL);
        cr_expect(jstr(j, "error.message"), "%s", r.body);
        json_decref(j);
        free(r.body);
    }
    stop_server(&s, SIGTERM);
}

Test(serve, bad_requests_get_4xx, .timeout = 120) {
    server s;
    start_server(&s, "--max-body", "4096", NULL);
    const struct { const char *path, *body; int status; const char *param; } cases[] = {
        { "/v1/completions", "{\"prompt\": \"a\"", 400, NULL },
        { "/v1/completions", "not json", 400, NULL },
        { "/v1/completions", "[1, 2]", 400, NULL },
        { "/v1/completions", "", 400, NULL },
        { "/v1/completions", "{}", 400, "prompt" },
        { "/v1/completions", "{\"prompt\": 5}", 400, "prompt" },
        { "/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt" },
        { "/v1/completions", "{\"prompt\": \"a\", \"temperature\": \"hot\"}", 400, "temperature" },
        { "/v1/completions", "{\"prompt\": \"a\", \"temperature\": -1}", 400, "temperature" },
        { "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": \"5\"}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": 1.5}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": -3}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"a\", \"top_k\": [1]}", 400, "top_k" },
        { "/v1/completions", "{\"prompt\": \"a\", \"top_p\": 2}", 400, "top_p" },
        { "/v1/completions", "{\"prompt\": \"a\", \"seed\": \"x\"}", 400, "seed" },
        { "/v1/completions", "{\"prompt\": \"a\", \"stream\": \"yes\"}", 400, "stream" },
        { "/v1/completions", "{\"prompt\": \"a\", \"stop\": 3}", 400, "stop" },
        { "/v1/completions", "{\"prompt\": \"a\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop" },
        { "/v1/completions", "{\"prompt\": \"a\", \"model\": 7}", 400, "model" },
        { "/v1/completions", "{\"prompt\": \"a\", \"n\": 2}", 400, "n" },
        { "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": 100000}", 400, "max_tokens" },
        { "/v1/chat/completions", "{}", 400, "messages" },
        { "/v1/chat/completions", "{\"messages\": \"hi\"}", 400, "messages" },
        { "/v1/chat/completions", "{\"messages\": []}", 400, "messages" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": 1, \"content\": \"x\"}]}", 400, "messages" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400, "messages" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", 400, "messages" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 9999}", 400,
          "max_tokens" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        resp r;
        cr_assert(http(s.port, "POST", cases[i].path, cases[i].body, strlen(cases[i].body), &r), "case %zu", i);
        cr_expect_eq(r.status, cases[i].status, "%s -> %d: %s", cases[i].body, r.status, r.body);
        json_t *j = json_loads(r.body, 0, NULL);
        cr_expect(j && jstr(j, "error.message") && jstr(j, "error.type"), "%s: not a JSON error: %s", cases[i].body, r.body);
        if (cases[i].param) cr_expect(jstr(j, "error.param") && !strcmp(jstr(j, "error.param"), cases[i].param), "%s: param %s",
                                      cases[i].body, r.body);
        json_decref(j);
        free(r.body);
    }
    /* too many tokens: a prompt longer than the 512-token context */
    char *longp = malloc(8192);
    longp[0] = 0;
    for (int i = 0; i < 600; i++) strcat(longp, "Amen. ");
    char *b = body_for("prompt", longp, "{\"max_tokens\":1}");
    int st;
    json_t *j = post_json(s.port, "/v1/completions", b, &st);
    cr_expect_eq(st, 400);
    cr_expect_str_eq(jstr(j, "error.code"), "context_length_exceeded");
    json_decref(j);
    free(b);
    free(longp);
    /* oversize body: 413 */
    size_t big = 10000;
    char *body = malloc(big + 1);
    memset(body, ' ', big);
    memcpy(body, "{\"prompt\":\"a\"}", 14);
    body[big] = 0;
    resp r;
    cr_assert(http(s.port, "POST", "/v1/completions", body, big, &r));
    cr_expect_eq(r.status, 413, "%s", r.body);
    j = json_loads(r.body, 0, NULL);
    cr_expect(j && jstr(j, "error.message"), "%s", r.body);
    json_decref(j);
    free(r.body);
    free(body);
    /* unknown fields are ignored; the server still answers */
    j = post_json(s.port, "/v1/completions", "{\"prompt\":\"Amen\",\"max_tokens\":2,\"user\":\"me\",\"extra\":{\"a\":[1]}}", &st);
    cr_expect_eq(st, 200, "%s", json_dumps(j, 0));
    json_decref(j);
    stop_server(&s, SIGTERM);
}

/* ---- 8 clients x 20 requests ---------------------------------------------------------------------- */
#define N_CLIENTS 8
#define N_REQ 20
static char *g_want[4];
static int g_port;

typedef struct client { int id, ok, bad; char first_bad[512]; } client;

static void *client_main(void *arg) {
    client *c = arg;
    for (int k = 0; k < N_REQ; k++) {
        int pi = (c->id + k) % 4;
        bool stream = k % 5 == 0, chat = k % 3 == 1;
        json_t *o = json_pack("{s:i,s:f,s:b}", "max_tokens", 8, "temperature", 0.0, "stream", stream);
        if (chat) json_object_set_new(o, "messages", json_pack("[{s:s,s:s}]", "role", "user", "content", PROMPTS[pi]));
        else json_object_set_new(o, "prompt", json_string(PROMPTS[pi]));
        char *b = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        resp r;
        char *got = NULL;
        if (http(g_port, "POST", chat ? "/v1/chat/completions" : "/v1/completions", b, strlen(b), &r) && r.status == 200) {
            if (stream) {
                got = calloc(1, r.n + 1);
                for (char *p = r.body; (p = strstr(p, "data: {"));) {
                    char *end = strstr(p, "\n\n");
                    if (!end) break;
                    *end = 0;
                    json_t *j = json_loads(p + 6, 0, NULL);
                    const char *t = j ? jstr(j, chat ? "choices.0.delta.content" : "choices.0.text") : NULL;
                    if (t) strcat(got, t);
                    json_decref(j);
                    p = end + 2;
                }
            } else {
                json_t *j = json_loads(r.body, 0, NULL);
                const char *t = j ? jstr(j, chat ? "choices.0.message.content" : "choices.0.text") : NULL;
                got = t ? strdup(t) : NULL;
                json_decref(j);
            }
        }
        if (got && !strcmp(got, g_want[pi])) c->ok++;
        else {
            if (!c->bad++)
                snprintf(c->first_bad, sizeof c->first_bad, "client %d req %d (%s%s): status %d got [%s] want [%s]", c->id, k,
                         chat ? "chat" : "completion", stream ? ", stream" : "", r.status, got ? got : "(none)", g_want[pi]);
        }
        free(got);
        free(r.body);
        free(b);
    }
    return NULL;
}

Test(serve, concurrent_clients, .timeout = 240) {
    for (int i = 0; i < 4; i++) g_want[i] = bitjit_continuation(KJV, PROMPTS[i], 8);
    server s;
    start_server(&s, "--parallel", "2", NULL);
    g_port = s.port;
    pthread_t th[N_CLIENTS];
    client cl[N_CLIENTS];
    double t0 = now_s();
    for (int i = 0; i < N_CLIENTS; i++) {
        cl[i] = (client){ .id = i };
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    int ok = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        ok += cl[i].ok;
        cr_expect_eq(cl[i].bad, 0, "%s", cl[i].first_bad);
    }
    cr_expect_eq(ok, N_CLIENTS * N_REQ);
    cr_log_info("%d requests in %.2f s", N_CLIENTS * N_REQ, now_s() - t0);
    stop_server(&s, SIGTERM);
    for (int i = 0; i < 4; i++) free(g_want[i]);
}

/* A client that reads the start of a long stream and hangs up: its slot is freed at the next token
 * (the server stays healthy and answers the next request correctly, well before the long answer
 * could have finished). */
Test(serve, client_leaves_mid_stream, .timeout = 120) {
    char *want = bitjit_continuation(KJV, PROMPTS[0], 8);
    server s;
    start_server(&s, NULL);
    for (int round = 0; round < 3; round++) {
        int fd = connect_to(s.port);
        cr_assert_geq(fd, 0);
        const char *b = "{\"prompt\":\"In the beginning\",\"max_tokens\":500,\"temperature\":0,\"stream\":true}";
        cr_assert(send_request(fd, "POST", "/v1/completions", b, strlen(b)));
        char buf[4096];
        size_t n = 0;
        double t0 = now_s();
        while (!memmem(buf, n, "data: {", 7) && now_s() - t0 < 30) {
            struct pollfd pf = { fd, POLLIN, 0 };
            if (poll(&pf, 1, 1000) <= 0) continue;
            ssize_t k = recv(fd, buf + n, sizeof buf - n - 1, 0);
            cr_assert_gt(k, 0);
            n += (size_t)k;
        }
        cr_assert(memmem(buf, n, "data: {", 7), "no event");
        close(fd);
        /* the slot comes free */
        t0 = now_s();
        bool idle = false;
        while (!idle && now_s() - t0 < 30) {
            resp r;
            cr_assert(http(s.port, "GET", "/health", NULL, 0, &r));
            json_t *j = json_loads(r.body, 0, NULL);
            idle = jint(j, "slots_processing") == 0 && jint(j, "requests_queued") == 0;
            json_decref(j);
            free(r.body);
            if (!idle) usleep(20 * 1000);
        }
        cr_expect(idle, "the slot stayed busy");
        char *req = body_for("prompt", PROMPTS[0], "{\"max_tokens\":8,\"temperature\":0}");
        int st;
        json_t *j = post_json(s.port, "/v1/completions", req, &st);
        cr_expect_eq(st, 200);
        cr_expect_str_eq(jstr(j, "choices.0.text"), want);
        json_decref(j);
        free(req);
    }
    stop_server(&s, SIGTERM);
    free(want);
}

/* A client that sends a long non-streaming request and hangs up while it is generated: the
 * server notices (it looks at the socket while it waits), cancels the job at the next token
 * instead of generating all 500 tokens, and logs it as cancelled. */
Test(serve, client_leaves_before_the_answer, .timeout = 120) {
    server s;
    start_server(&s, "-v", NULL); /* -v: one log line per request */
    int fd = connect_to(s.port);
    cr_assert_geq(fd, 0);
    const char *b = "{\"prompt\":\"In the beginning\",\"max_tokens\":500,\"temperature\":0}";
    cr_assert(send_request(fd, "POST", "/v1/completions", b, strlen(b)));
    bool busy = false, idle = false; /* wait until it generates, hang up, wait until the slot is free */
    for (double t0 = now_s(); !idle && now_s() - t0 < 30;) {
        resp r;
        cr_assert(http(s.port, "GET", "/health", NULL, 0, &r));
        json_t *j = json_loads(r.body, 0, NULL);
        if (!busy && jint(j, "slots_processing") == 1) {
            busy = true;
            close(fd);
        } else if (busy) {
            idle = jint(j, "slots_processing") == 0;
        }
        json_decref(j);
        free(r.body);
        if (!idle) usleep(5 * 1000);
    }
    cr_assert(busy, "the request never started");
    cr_expect(idle, "the slot stayed busy");
    stop_server(&s, SIGTERM);
    cr_expect(strstr(s.log, "generated, cancelled"), "the job was not cancelled; server log:\n%s", s.log);
}

Test(serve, help_lists_flags) {
    (void)tool;
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd, "%s serve --help", BJ_BITJIT_EXE);
    cr_assert_eq(sh(cmd, out, sizeof out), 0);
    const char *flags[] = { "--host", "--port", "--parallel", "--alias", "--n-predict", "--chat-template", "--max-body",
                            "--max-queue", "--timeout", "--model", "--threads", "--engine", "--temp", "--top-k",
                            "--top-p", "--min-p", "--repeat-penalty", "--seed", "/v1/completions",
                            "/v1/chat/completions", "/v1/models", "/health" };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) cr_expect(strstr(out, flags[i]), "no %s", flags[i]);
    snprintf(cmd, sizeof cmd, "%s serve --port 70000", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 2);
}
