/* tests/support/serve_client.h -- talking to `bitjit serve` from tests: the server as a child
 * process on a free loopback port (--port 0; the port is read from its "listening on" line, its
 * stderr kept in a log), and a small HTTP/1.1 client (plain sockets, one request a connection,
 * chunked bodies decoded). Include after <criterion/criterion.h> and support/shell.h. */
#ifndef BJ_TEST_SERVE_CLIENT_H
#define BJ_TEST_SERVE_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef KJV
#define KJV BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed"
#endif

static inline double now_s(void) {
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

static inline void *drain_main(void *arg) {
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
static inline void start_server(server *s, ...) {
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
/* sig 0: already signalled, only waits. */
static inline void stop_server(server *s, int sig) {
    if (sig) kill(s->pid, sig);
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

static inline int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    return fd;
}

static inline bool send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        p += k, n -= (size_t)k;
    }
    return true;
}

/* headers: extra header lines, each ending in \r\n (may be NULL). */
static inline bool send_request_h(int fd, const char *method, const char *path, const char *headers, const char *body,
                           size_t n) {
    char h[2048];
    int hl = snprintf(h, sizeof h,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s", method, path,
                      body ? "Content-Type: application/json\r\n" : "", headers ? headers : "");
    if (body) hl += snprintf(h + hl, sizeof h - (size_t)hl, "Content-Length: %zu\r\n", n);
    hl += snprintf(h + hl, sizeof h - (size_t)hl, "\r\n");
    if (!send_all(fd, h, (size_t)hl)) return false;
    if (body) send_all(fd, body, n); /* the server may answer (413) before reading it all */
    return true;
}

static inline bool send_request(int fd, const char *method, const char *path, const char *body, size_t n) {
    return send_request_h(fd, method, path, NULL, body, n);
}

/* Decodes a chunked body in place; false if malformed. */
static inline bool dechunk(char *b, size_t *n) {
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

/* One request on a fresh connection (headers: extra header lines, may be NULL); false if the
 * connection failed or the answer is not HTTP. */
static inline bool http_h(int port, const char *method, const char *path, const char *headers, const char *body, size_t n,
                   resp *r) {
    memset(r, 0, sizeof *r);
    int fd = connect_to(port);
    if (fd < 0) return false;
    if (!send_request_h(fd, method, path, headers, body, n)) { close(fd); return false; }
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

static inline bool http(int port, const char *method, const char *path, const char *body, size_t n, resp *r) {
    return http_h(port, method, path, NULL, body, n, r);
}

static inline json_t *post_json(int port, const char *path, const char *body, int *status) {
    resp r;
    cr_assert(http(port, "POST", path, body, strlen(body), &r), "no HTTP answer to %s", body);
    *status = r.status;
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    cr_assert(j, "answer is not JSON (%s): %s", je.text, r.body);
    free(r.body);
    return j;
}

static inline const char *jstr(json_t *j, const char *path) {
    /* "a.b.0.c" */
    char p[256];
    snprintf(p, sizeof p, "%s", path);
    char *save = NULL;
    for (char *t = strtok_r(p, ".", &save); t && j; t = strtok_r(NULL, ".", &save))
        j = json_is_array(j) ? json_array_get(j, (size_t)atoi(t)) : json_object_get(j, t);
    return json_string_value(j);
}

static inline long long jint(json_t *j, const char *path) {
    char p[256];
    snprintf(p, sizeof p, "%s", path);
    char *save = NULL;
    for (char *t = strtok_r(p, ".", &save); t && j; t = strtok_r(NULL, ".", &save))
        j = json_is_array(j) ? json_array_get(j, (size_t)atoi(t)) : json_object_get(j, t);
    return json_is_integer(j) ? json_integer_value(j) : -1;
}

/* A JSON request body with the prompt or one user message properly escaped. */
static inline char *body_for(const char *key, const char *text, const char *extra) {
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
static inline char *join_stream(const resp *r, bool chat, char *finish, size_t fcap, int *n_events) {
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

#endif
