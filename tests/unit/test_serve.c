/* tests/unit/test_serve.c -- `bitjit serve` end to end: the server runs as a child process on a
 * free loopback port (--port 0; the port is read from its "listening on" line) and is spoken to
 * by the small HTTP/1.1 client below (plain sockets, chunked bodies decoded). Greedy answers must
 * equal `bitjit run --temp 0` on the same text (an independent path); streams must add up to the
 * same text; bad requests get 4xx with a JSON error; 8 clients x 20 requests all come back right;
 * a client that leaves mid-stream frees its slot; SIGTERM/SIGINT end the server with status 0.
 * Issue 24: /metrics parses (own check + the Prometheus Python client), API keys, CORS and Allow,
 * drain on SIGTERM, the OpenAI fields clients send, JSON log lines, /tokenize and /detokenize. */
#include <criterion/criterion.h>

#include <math.h>

#include "support/files.h"
#include "support/shell.h"
#include "support/serve_client.h"

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

/* --chat-template NAME keeps the model's BOS and EOS texts (the override started from a template
 * it had just cleared, so the BOS went missing): a llama3 conversation is the model's BOS, then
 * the template's text, the same as `bitjit run` on that text (run adds the BOS itself). */
Test(serve, chat_template_override_keeps_bos, .timeout = 180) {
    server s;
    start_server(&s, "--chat-template", "llama3", NULL);
    const char *a = "In the beginning";
    char text[1024];
    snprintf(text, sizeof text, "<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n", a);
    char *want = bitjit_continuation(KJV, text, 8);
    /* the prompt's tokens as run counts them (-v: "N prompt + 0 generated tokens"); the answers
     * alone cannot tell: kjv continues the same with or without its BOS */
    char path[4096], cmd[8192], log[16384];
    snprintf(path, sizeof path, "%s/serve_tmpl_%d.txt", BJ_TEST_TMP, (int)getpid());
    write_all(path, text, strlen(text));
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -f '%s' -n 0 -q -v", BJ_BITJIT_EXE, KJV, path);
    cr_assert_eq(sh(cmd, log, sizeof log), 0, "%s", log);
    unlink(path);
    const char *np = strstr(log, " prompt + ");
    cr_assert(np, "%s", log);
    while (np > log && np[-1] >= '0' && np[-1] <= '9') np--;
    char *b = body_for("messages", a, "{\"max_tokens\":8,\"temperature\":0}");
    int st;
    json_t *j = post_json(s.port, "/v1/chat/completions", b, &st);
    cr_assert_eq(st, 200, "%s", json_dumps(j, 0));
    cr_expect_str_eq(jstr(j, "choices.0.message.content"), want);
    cr_expect_eq(jint(j, "usage.prompt_tokens"), atoll(np), "the BOS is missing");
    json_decref(j);
    free(b);
    free(want);
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
    start_server(&s, NULL); /* one log line per request */
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
    cr_expect(strstr(s.log, " 499 prompt=") && strstr(s.log, " cancelled"), "the job was not cancelled; server log:\n%s", s.log);
}

Test(serve, help_lists_flags) {
    (void)tool;
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd, "%s serve --help", BJ_BITJIT_EXE);
    cr_assert_eq(sh(cmd, out, sizeof out), 0);
    const char *flags[] = { "--host", "--port", "--parallel", "--alias", "--n-predict", "--chat-template", "--max-body",
                            "--max-queue", "--timeout", "--model", "--threads", "--engine", "--temp", "--top-k",
                            "--top-p", "--min-p", "--repeat-penalty", "--seed", "/v1/completions",
                            "/v1/chat/completions", "/v1/models", "/health", "/metrics", "/tokenize",
                            "/detokenize", "--api-key", "--api-key-file", "--cors-origin", "--drain-timeout",
                            "--log-format" };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) cr_expect(strstr(out, flags[i]), "no %s", flags[i]);
    snprintf(cmd, sizeof cmd, "%s serve --port 70000", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 2);
}

/* ---- issue 24: metrics, keys, CORS, drain, OpenAI fields, logs, tokenize --------------------------- */

/* A value of one sample line "name{labels} value" of a Prometheus text exposition, or -1. */
static double prom_value(const char *text, const char *series) {
    size_t l = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, l) && p[l] == ' ') return strtod(p + l + 1, NULL);
    return -1;
}

/* Checks the exposition line by line: comments are "# HELP name text" or "# TYPE name type" (once a
 * name, before its samples); samples are name{label="value",...} number; a histogram's buckets are
 * cumulative, ascending in le, end with +Inf equal to _count. Returns the number of samples. */
static int prom_check(const char *text) {
    char typed[64][96];
    int n_typed = 0, n_samples = 0;
    char hist[96] = "";
    double last_le = -1, last_bucket = -1;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        cr_assert(e, "the exposition must end with a newline");
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(e - p), p);
        p = e + 1;
        if (line[0] == '#') {
            char kw[8], name[96], rest[512] = "";
            cr_assert(sscanf(line, "# %7s %95s %511[^\n]", kw, name, rest) >= 2, "bad comment: %s", line);
            cr_assert(!strcmp(kw, "HELP") || !strcmp(kw, "TYPE"), "bad comment: %s", line);
            if (!strcmp(kw, "TYPE")) {
                cr_assert(!strcmp(rest, "counter") || !strcmp(rest, "gauge") || !strcmp(rest, "histogram"), "%s", line);
                for (int i = 0; i < n_typed; i++) cr_assert(strcmp(typed[i], name), "TYPE twice: %s", name);
                if (n_typed < 64) snprintf(typed[n_typed++], sizeof typed[0], "%s", name);
                if (!strcmp(rest, "histogram")) snprintf(hist, sizeof hist, "%s", name), last_le = -1, last_bucket = -1;
            }
            continue;
        }
        /* name */
        size_t i = 0;
        cr_assert((line[0] >= 'a' && line[0] <= 'z') || line[0] == '_' || line[0] == ':', "bad name: %s", line);
        while (line[i] && (line[i] == '_' || line[i] == ':' || (line[i] >= 'a' && line[i] <= 'z') ||
                           (line[i] >= 'A' && line[i] <= 'Z') || (line[i] >= '0' && line[i] <= '9')))
            i++;
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)i, line);
        double le = NAN;
        if (line[i] == '{') { /* label="value" pairs */
            i++;
            while (line[i] != '}') {
                size_t k = i;
                while (line[i] == '_' || (line[i] >= 'a' && line[i] <= 'z')) i++;
                cr_assert(i > k && line[i] == '=' && line[i + 1] == '"', "bad label in: %s", line);
                bool is_le = i - k == 2 && !strncmp(line + k, "le", 2);
                i += 2;
                size_t v = i;
                while (line[i] && line[i] != '"') i += line[i] == '\\' ? 2 : 1;
                cr_assert(line[i] == '"', "unterminated label value: %s", line);
                if (is_le) le = !strncmp(line + v, "+Inf", 4) ? INFINITY : strtod(line + v, NULL);
                i++;
                if (line[i] == ',') i++;
                else cr_assert(line[i] == '}', "bad label list: %s", line);
            }
            i++;
        }
        cr_assert(line[i] == ' ', "no value: %s", line);
        char *end;
        double v = strtod(line + i + 1, &end);
        cr_assert(end != line + i + 1 && *end == 0, "bad value: %s", line);
        /* the family was typed before */
        bool known = false;
        for (int t = 0; t < n_typed; t++) {
            size_t tl = strlen(typed[t]);
            if (!strncmp(name, typed[t], tl) && (!name[tl] || !strcmp(name + tl, "_bucket") || !strcmp(name + tl, "_sum") ||
                                                 !strcmp(name + tl, "_count")))
                known = true;
        }
        cr_assert(known, "sample without TYPE: %s", line);
        size_t hl = strlen(hist);
        if (hl && !strncmp(name, hist, hl) && !strcmp(name + hl, "_bucket")) {
            cr_assert(!isnan(le) && le > last_le && v >= last_bucket, "buckets not ascending/cumulative: %s", line);
            last_le = le, last_bucket = v;
        }
        if (hl && !strncmp(name, hist, hl) && !strcmp(name + hl, "_count"))
            cr_assert(isinf(last_le) && v == last_bucket, "+Inf bucket != _count: %s", line);
        n_samples++;
    }
    return n_samples;
}

Test(serve, metrics_prometheus, .timeout = 180) {
    server s;
    start_server(&s, "--alias", "kjv \"q\"", NULL);
    long long gen = 0, prompt = 0;
    int n_ok = 0;
    for (int i = 0; i < 3; i++) {
        char *b = body_for("prompt", PROMPTS[i], "{\"max_tokens\":6,\"temperature\":0}");
        int st;
        json_t *j = post_json(s.port, "/v1/completions", b, &st);
        cr_assert_eq(st, 200);
        gen += jint(j, "usage.completion_tokens"), prompt += jint(j, "usage.prompt_tokens"), n_ok++;
        json_decref(j);
        free(b);
    }
    char *b = body_for("messages", PROMPTS[0], "{\"max_tokens\":5,\"temperature\":0,\"stream\":true,"
                                               "\"stream_options\":{\"include_usage\":true}}");
    resp r;
    cr_assert(http(s.port, "POST", "/v1/chat/completions", b, strlen(b), &r));
    cr_assert_eq(r.status, 200);
    const char *u = strstr(r.body, "\"usage\"");
    cr_assert(u, "%s", r.body);
    gen += atoll(strstr(u, "\"completion_tokens\":") + 20), prompt += atoll(strstr(u, "\"prompt_tokens\":") + 16);
    free(r.body);
    free(b);
    int st;
    json_t *j = post_json(s.port, "/v1/completions", "{\"prompt\": 5}", &st);
    cr_expect_eq(st, 400);
    json_decref(j);
    for (double t0 = now_s(); now_s() - t0 < 10; usleep(5000)) { /* the slot marks itself free just after answering */
        cr_assert(http(s.port, "GET", "/health", NULL, 0, &r));
        bool idle = strstr(r.body, "\"slots_processing\":0") != NULL;
        free(r.body);
        if (idle) break;
    }
    cr_assert(http(s.port, "GET", "/metrics", NULL, 0, &r));
    cr_assert_eq(r.status, 200);
    cr_expect(strstr(r.head, "content-type: text/plain; version=0.0.4"), "%s", r.head);
    cr_expect_gt(prom_check(r.body), 20);
    cr_expect_eq(prom_value(r.body, "bitjit_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"), n_ok, "%s", r.body);
    cr_expect_eq(prom_value(r.body, "bitjit_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}"), 1);
    cr_expect_eq(prom_value(r.body, "bitjit_requests_total{endpoint=\"/v1/completions\",status=\"400\"}"), 1);
    cr_expect_eq(prom_value(r.body, "bitjit_generated_tokens_total"), (double)gen);
    cr_expect_eq(prom_value(r.body, "bitjit_prompt_tokens_total"), (double)prompt);
    cr_expect_eq(prom_value(r.body, "bitjit_time_to_first_token_seconds_count"), 4);
    cr_expect_eq(prom_value(r.body, "bitjit_time_per_output_token_seconds_count"), (double)(gen - 4 + 0), "%s", r.body);
    cr_expect_eq(prom_value(r.body, "bitjit_slots"), 1);
    cr_expect_eq(prom_value(r.body, "bitjit_slots_busy"), 0);
    cr_expect_eq(prom_value(r.body, "bitjit_queue_length"), 0);
    cr_expect(strstr(r.body, "bitjit_model_info{model=\"kjv \\\"q\\\"\",n_ctx=\"512\""), "%s", r.body);
    cr_expect(strstr(r.body, "bitjit_build_info{version=\""), "%s", r.body);
    /* an independent parser: the Prometheus project's Python client (Debian python3-prometheus-client) */
    char path[4096], cmd[8192], out[8192];
    snprintf(path, sizeof path, "%s/metrics_%d.txt", BJ_TEST_TMP, (int)getpid());
    FILE *f = fopen(path, "w");
    fwrite(r.body, 1, r.n, f);
    fclose(f);
    if (access("/usr/bin/python3", X_OK) == 0 &&
        sh("/usr/bin/python3 -c 'import prometheus_client.parser'", out, sizeof out) == 0) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c 'import sys; from prometheus_client.parser import text_string_to_metric_families as f; "
                 "fams = list(f(open(sys.argv[1]).read())); print(len(fams), sum(len(x.samples) for x in fams))' %s", path);
        cr_expect_eq(sh(cmd, out, sizeof out), 0, "prometheus_client rejects the exposition: %s", out);
        int nf = 0, ns = 0;
        cr_expect_eq(sscanf(out, "%d %d", &nf, &ns), 2, "%s", out);
        cr_expect_geq(nf, 14, "%s", out);
        cr_expect_eq(ns, prom_check(r.body), "%s", out);
    } else {
        cr_log_warn("python3-prometheus-client not installed: only the built-in format check ran");
    }
    free(r.body);
    stop_server(&s, SIGTERM);
}

Test(serve, api_key, .timeout = 120) {
    char kf[4096], out[4096], cmd[8192];
    snprintf(kf, sizeof kf, "%s/serve_key_%d.txt", BJ_TEST_TMP, (int)getpid());
    FILE *f = fopen(kf, "w");
    fputs("file-key-42\n", f);
    fclose(f);
    for (int form = 0; form < 2; form++) {
        server s;
        const char *key = form ? "file-key-42" : "s3cret key";
        if (form) start_server(&s, "--api-key-file", kf, NULL);
        else start_server(&s, "--api-key", key, NULL);
        const char *body = "{\"prompt\":\"Amen\",\"max_tokens\":2}";
        char good[256], bad[256];
        snprintf(good, sizeof good, "Authorization: Bearer %s\r\n", key);
        snprintf(bad, sizeof bad, "Authorization: Bearer %sx\r\n", key);
        const char *hdrs[] = { NULL, bad, "Authorization: Basic Zm9vOmJhcg==\r\n", good };
        for (int i = 0; i < 4; i++) {
            resp r;
            cr_assert(http_h(s.port, "POST", "/v1/completions", hdrs[i], body, strlen(body), &r));
            json_t *j = json_loads(r.body, 0, NULL);
            if (i < 3) {
                cr_expect_eq(r.status, 401, "header %d: %d %s", i, r.status, r.body);
                cr_expect(jstr(j, "error.message") && jstr(j, "error.type"), "%s", r.body);
                cr_expect(jstr(j, "error.code") && !strcmp(jstr(j, "error.code"), "invalid_api_key"), "%s", r.body);
                cr_expect(!strstr(r.body, key), "the key leaks into the error");
            } else {
                cr_expect_eq(r.status, 200, "%s", r.body);
                cr_expect_str_eq(jstr(j, "object"), "text_completion");
            }
            json_decref(j);
            free(r.body);
        }
        /* protected: models, tokenize; open: health, metrics */
        const struct { const char *m, *p; int want; } open_[] = {
            { "GET", "/v1/models", 401 }, { "POST", "/tokenize", 401 }, { "GET", "/health", 200 }, { "GET", "/metrics", 200 },
        };
        for (size_t i = 0; i < 4; i++) {
            resp r;
            cr_assert(http(s.port, open_[i].m, open_[i].p, !strcmp(open_[i].m, "POST") ? "{\"content\":\"a\"}" : NULL, 15, &r));
            cr_expect_eq(r.status, open_[i].want, "%s %s: %d", open_[i].m, open_[i].p, r.status);
            free(r.body);
        }
        stop_server(&s, SIGTERM);
    }
    snprintf(cmd, sizeof cmd, "%s serve --api-key-file %s/no-such-key-file", BJ_BITJIT_EXE, BJ_TEST_TMP);
    cr_expect_eq(sh(cmd, out, sizeof out), 1, "%s", out);
    cr_expect(strstr(out, "no-such-key-file"), "%s", out);
    unlink(kf);
}

Test(serve, cors_and_allow, .timeout = 120) {
    server s;
    start_server(&s, "--cors-origin", "http://a.test, http://b.test", NULL);
    const char *body = "{\"prompt\":\"Amen\",\"max_tokens\":2}";
    resp r;
    cr_assert(http_h(s.port, "POST", "/v1/completions", "Origin: http://b.test\r\n", body, strlen(body), &r));
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.head, "access-control-allow-origin: http://b.test"), "%s", r.head);
    free(r.body);
    cr_assert(http_h(s.port, "POST", "/v1/completions", "Origin: http://evil.test\r\n", body, strlen(body), &r));
    cr_expect_eq(r.status, 200);
    cr_expect(!strstr(r.head, "access-control-allow-origin"), "%s", r.head);
    free(r.body);
    /* a preflight */
    cr_assert(http_h(s.port, "OPTIONS", "/v1/chat/completions",
                     "Origin: http://a.test\r\nAccess-Control-Request-Method: POST\r\n"
                     "Access-Control-Request-Headers: authorization, content-type\r\n", NULL, 0, &r));
    cr_expect_eq(r.status, 204, "%s", r.head);
    cr_expect(strstr(r.head, "access-control-allow-origin: http://a.test"), "%s", r.head);
    cr_expect(strstr(r.head, "access-control-allow-methods: ") && strstr(strstr(r.head, "access-control-allow-methods: "), "post"), "%s", r.head);
    cr_expect(strstr(r.head, "access-control-allow-headers: authorization, content-type"), "%s", r.head);
    free(r.body);
    /* 405 names what is allowed */
    cr_assert(http(s.port, "GET", "/v1/completions", NULL, 0, &r));
    cr_expect_eq(r.status, 405);
    cr_expect(strstr(r.head, "\r\nallow: post"), "%s", r.head);
    free(r.body);
    cr_assert(http(s.port, "DELETE", "/health", NULL, 0, &r));
    cr_expect_eq(r.status, 405);
    cr_expect(strstr(r.head, "\r\nallow: get"), "%s", r.head);
    free(r.body);
    stop_server(&s, SIGTERM);
    /* without --cors-origin: no CORS headers */
    start_server(&s, NULL);
    cr_assert(http_h(s.port, "POST", "/v1/completions", "Origin: http://a.test\r\n", body, strlen(body), &r));
    cr_expect(!strstr(r.head, "access-control-allow-origin"), "%s", r.head);
    free(r.body);
    stop_server(&s, SIGTERM);
}

/* A stream in progress when SIGTERM comes: it goes on to its final chunk and [DONE]; a request
 * queued behind it is answered too; new requests and /health get 503; the server then exits 0.
 * The reference engine makes the 200-token answer last seconds. */
#ifdef BJ_TEST_SANITIZED /* the instrumented reference engine (-O0) takes about 0.3 s a token here */
#define DRAIN_TOKENS "40"
#else
#define DRAIN_TOKENS "200"
#endif
typedef struct bg_req { int port; const char *body; resp r; bool ok; } bg_req;
static void *bg_main(void *arg) {
    bg_req *b = arg;
    b->ok = http(b->port, "POST", "/v1/completions", b->body, strlen(b->body), &b->r);
    return NULL;
}

static bool wait_busy(int port, int want_busy, int want_queued) {
    for (double t0 = now_s(); now_s() - t0 < 60; usleep(10 * 1000)) {
        resp r;
        if (!http(port, "GET", "/health", NULL, 0, &r)) continue;
        json_t *j = json_loads(r.body, 0, NULL);
        bool ok = jint(j, "slots_processing") >= want_busy && jint(j, "requests_queued") >= want_queued;
        json_decref(j);
        free(r.body);
        if (ok) return true;
    }
    return false;
}

Test(serve, drain_on_sigterm, .timeout = 240) {
    server s;
    start_server(&s, "--engine", "ref", "--drain-timeout", "120", NULL);
    bg_req a = { .port = s.port, .body = "{\"prompt\":\"In the beginning\",\"max_tokens\":" DRAIN_TOKENS ",\"temperature\":0,\"stream\":true}" };
    bg_req b = { .port = s.port, .body = "{\"prompt\":\"Amen\",\"max_tokens\":8,\"temperature\":0}" };
    pthread_t ta, tb;
    pthread_create(&ta, NULL, bg_main, &a);
    cr_assert(wait_busy(s.port, 1, 0), "the stream did not start");
    pthread_create(&tb, NULL, bg_main, &b);
    cr_assert(wait_busy(s.port, 1, 1), "the second request was not queued");
    kill(s.pid, SIGTERM);
    /* /health says draining at once (it is never queued); then a new request gets 503 */
    bool saw_health503 = false;
    for (double t0 = now_s(); !saw_health503 && now_s() - t0 < 20; usleep(10 * 1000)) {
        resp r;
        if (http(s.port, "GET", "/health", NULL, 0, &r)) {
            saw_health503 = r.status == 503 && strstr(r.body, "draining");
            free(r.body);
        }
    }
    cr_expect(saw_health503, "/health did not say draining");
    resp r;
    const char *nb = "{\"prompt\":\"Amen\",\"max_tokens\":2}";
    cr_assert(http(s.port, "POST", "/v1/completions", nb, strlen(nb), &r), "the draining server did not answer");
    cr_expect_eq(r.status, 503, "a new request while draining: %d %s", r.status, r.body);
    cr_expect(strstr(r.head, "connection: close"), "%s", r.head);
    json_t *ej = json_loads(r.body, 0, NULL);
    cr_expect(jstr(ej, "error.message"), "%s", r.body);
    json_decref(ej);
    free(r.body);
    cr_assert(http(s.port, "GET", "/metrics", NULL, 0, &r));
    cr_expect(strstr(r.body, "\nbitjit_draining 1\n"), "%s", r.body);
    free(r.body);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (!(a.ok && b.ok)) { /* (the client gives up after 60 s) */
        free(a.r.body), free(b.r.body);
        stop_server(&s, SIGKILL);
        cr_assert_fail("the requests accepted before SIGTERM did not complete: %s", s.log);
    }
    char finish[32];
    int n_ev;
    char *text = join_stream(&a.r, false, finish, sizeof finish, &n_ev); /* asserts data: [DONE] at the end */
    cr_expect_str_eq(finish, "length");
    cr_expect(strstr(a.r.body, "\"completion_tokens\":" DRAIN_TOKENS), "the stream was cut");
    free(text);
    cr_expect_eq(b.r.status, 200, "%s", b.r.body);
    free(a.r.body);
    free(b.r.body);
    stop_server(&s, 0); /* already signalled: waits for exit status 0 */
    cr_expect(strstr(s.log, "draining"), "%s", s.log);
}

Test(serve, drain_timeout_cuts, .timeout = 180) {
    server s;
    start_server(&s, "--engine", "ref", "--drain-timeout", "1", NULL);
    bg_req a = { .port = s.port, .body = "{\"prompt\":\"In the beginning\",\"max_tokens\":500,\"temperature\":0,\"stream\":true}" };
    pthread_t ta;
    pthread_create(&ta, NULL, bg_main, &a);
    cr_assert(wait_busy(s.port, 1, 0), "the stream did not start");
    double t0 = now_s();
    stop_server(&s, SIGTERM);
    cr_expect_lt(now_s() - t0, 20, "the drain did not stop at its timeout");
    pthread_join(ta, NULL);
    if (a.ok)
        cr_expect(!strstr(a.r.body, "data: [DONE]") || strstr(a.r.body, "\"completion_tokens\":500"), "a cut stream ends with [DONE]");
    free(a.r.body); /* a cut chunked body: http() fails but keeps what came */
    cr_expect(strstr(s.log, "drain timeout"), "%s", s.log);
}

static json_t *post_ok(int port, const char *path, const char *body) {
    int st;
    json_t *j = post_json(port, path, body, &st);
    cr_assert_eq(st, 200, "%s -> %d %s", body, st, json_dumps(j, 0));
    return j;
}

/* Checks a completions "logprobs" object against the text it belongs to. */
static void check_completion_logprobs(json_t *lp, const char *text, int n_top, long long n_tok, bool greedy) {
    json_t *toks = json_object_get(lp, "tokens"), *lps = json_object_get(lp, "token_logprobs"),
           *tops = json_object_get(lp, "top_logprobs"), *offs = json_object_get(lp, "text_offset");
    cr_assert(json_is_array(toks) && json_is_array(lps) && json_is_array(tops) && json_is_array(offs));
    cr_expect_eq((long long)json_array_size(toks), n_tok);
    cr_expect_eq(json_array_size(lps), json_array_size(toks));
    char joined[4096] = "";
    for (size_t i = 0; i < json_array_size(toks); i++) {
        const char *t = json_string_value(json_array_get(toks, i));
        cr_expect_eq(json_integer_value(json_array_get(offs, i)), (json_int_t)strlen(joined));
        strncat(joined, t, sizeof joined - strlen(joined) - 1);
        double v = json_number_value(json_array_get(lps, i));
        cr_expect(v <= 1e-6 && v > -100, "logprob %g", v);
        json_t *top = json_array_get(tops, i);
        cr_expect_eq((int)json_object_size(top), n_top);
        double best = -1e30, sum = 0;
        const char *best_tok = NULL, *k;
        json_t *tv;
        json_object_foreach(top, k, tv) {
            sum += exp(json_number_value(tv));
            if (json_number_value(tv) > best) best = json_number_value(tv), best_tok = k;
        }
        cr_expect_leq(sum, 1.0 + 1e-4);
        if (n_top) cr_expect_geq(best, v - 1e-6);
        if (greedy && n_top) cr_expect_str_eq(best_tok, t, "greedy picks the most likely token");
    }
    cr_expect_str_eq(joined, text);
}

Test(serve, openai_fields, .timeout = 240) {
    server s;
    start_server(&s, NULL);
    char *want = bitjit_continuation(KJV, PROMPTS[0], 12);
    /* logprobs (completions): N top tokens each; tokens join to the text */
    char *b = body_for("prompt", PROMPTS[0], "{\"max_tokens\":12,\"temperature\":0,\"logprobs\":3}");
    json_t *j = post_ok(s.port, "/v1/completions", b);
    cr_expect_str_eq(jstr(j, "choices.0.text"), want);
    check_completion_logprobs(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs"), want, 3,
                              jint(j, "usage.completion_tokens"), true);
    json_decref(j);
    free(b);
    /* streamed: the logprobs of every chunk add up to the same */
    b = body_for("prompt", PROMPTS[0], "{\"max_tokens\":12,\"temperature\":0,\"logprobs\":0,\"stream\":true}");
    resp r;
    cr_assert(http(s.port, "POST", "/v1/completions", b, strlen(b), &r));
    cr_assert_eq(r.status, 200);
    int n_lp = 0;
    char joined[4096] = "";
    for (char *p = r.body; (p = strstr(p, "data: {"));) {
        char *end = strstr(p, "\n\n");
        *end = 0;
        json_t *ev = json_loads(p + 6, 0, NULL);
        json_t *toks = json_object_get(json_object_get(json_array_get(json_object_get(ev, "choices"), 0), "logprobs"), "tokens");
        for (size_t i = 0; i < json_array_size(toks); i++, n_lp++)
            strncat(joined, json_string_value(json_array_get(toks, i)), sizeof joined - strlen(joined) - 1);
        json_decref(ev);
        p = end + 1;
    }
    cr_expect_str_eq(joined, want);
    cr_expect_gt(n_lp, 0);
    free(r.body);
    free(b);
    /* chat logprobs + top_logprobs */
    b = body_for("messages", PROMPTS[0], "{\"max_tokens\":12,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":4}");
    j = post_ok(s.port, "/v1/chat/completions", b);
    json_t *content = json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs"), "content");
    cr_assert(json_is_array(content), "%s", json_dumps(j, 0));
    cr_expect_eq((long long)json_array_size(content), jint(j, "usage.completion_tokens"));
    joined[0] = 0;
    for (size_t i = 0; i < json_array_size(content); i++) {
        json_t *c = json_array_get(content, i), *top = json_object_get(c, "top_logprobs");
        strncat(joined, jstr(c, "token"), sizeof joined - strlen(joined) - 1);
        cr_expect_eq(json_array_size(top), 4);
        cr_expect_str_eq(jstr(top, "0.token"), jstr(c, "token"));
        for (size_t k = 1; k < json_array_size(top); k++)
            cr_expect_geq(json_number_value(json_object_get(json_array_get(top, k - 1), "logprob")),
                          json_number_value(json_object_get(json_array_get(top, k), "logprob")));
        cr_expect_eq(json_array_size(json_object_get(c, "bytes")), strlen(jstr(c, "token")));
    }
    cr_expect_str_eq(joined, jstr(j, "choices.0.message.content"));
    json_decref(j);
    free(b);
    /* echo: the prompt, then the answer */
    b = body_for("prompt", PROMPTS[0], "{\"max_tokens\":12,\"temperature\":0,\"echo\":true}");
    j = post_ok(s.port, "/v1/completions", b);
    char full[4096];
    snprintf(full, sizeof full, "%s%s", PROMPTS[0], want);
    cr_expect_str_eq(jstr(j, "choices.0.text"), full);
    json_decref(j);
    free(b);
    /* seed: the same seed gives the same sample; different seeds not all the same */
    char *texts[4];
    for (int i = 0; i < 4; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "{\"max_tokens\":16,\"temperature\":1.0,\"seed\":%d}", i < 2 ? 7 : 100 + i);
        b = body_for("prompt", PROMPTS[1], extra);
        j = post_ok(s.port, "/v1/completions", b);
        texts[i] = strdup(jstr(j, "choices.0.text"));
        json_decref(j);
        free(b);
    }
    cr_expect_str_eq(texts[0], texts[1]);
    cr_expect(strcmp(texts[0], texts[2]) || strcmp(texts[0], texts[3]), "seeds make no difference");
    /* asking for logprobs does not change the sample (their count was read as top_k when top_k
     * was not given) */
    b = body_for("prompt", PROMPTS[1], "{\"max_tokens\":16,\"temperature\":1.0,\"seed\":7,\"logprobs\":1}");
    j = post_ok(s.port, "/v1/completions", b);
    cr_expect_str_eq(jstr(j, "choices.0.text"), texts[0], "logprobs changed the sample");
    json_decref(j);
    free(b);
    for (int i = 0; i < 4; i++) free(texts[i]);
    /* max_completion_tokens */
    b = body_for("messages", PROMPTS[0], "{\"max_completion_tokens\":3,\"temperature\":0}");
    j = post_ok(s.port, "/v1/chat/completions", b);
    cr_expect_leq(jint(j, "usage.completion_tokens"), 3);
    json_decref(j);
    free(b);
    /* stream_options.include_usage: a last chunk with empty choices and the usage, then [DONE] */
    b = body_for("prompt", PROMPTS[0], "{\"max_tokens\":5,\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    cr_assert(http(s.port, "POST", "/v1/completions", b, strlen(b), &r));
    char *last = NULL;
    for (char *p = r.body; (p = strstr(p, "data: {")); p++) last = p;
    cr_assert(last);
    *strstr(last, "\n\n") = 0;
    j = json_loads(last + 6, 0, NULL);
    cr_expect_eq(json_array_size(json_object_get(j, "choices")), 0, "%s", last);
    cr_expect_eq(jint(j, "usage.completion_tokens"), 5);
    json_decref(j);
    free(r.body);
    free(b);
    /* response_format text is fine */
    j = post_ok(s.port, "/v1/chat/completions",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"Amen\"}],\"max_tokens\":2,\"response_format\":{\"type\":\"text\"},"
                "\"presence_penalty\":0,\"user\":\"u1\"}");
    json_decref(j);
    /* a prompt with \u0000 is valid JSON: accepted; the same in a chat message: refused in plain words */
    j = post_ok(s.port, "/v1/completions", "{\"prompt\":\"In the\\u0000beginning\",\"max_tokens\":3,\"temperature\":0}");
    cr_expect_gt(jint(j, "usage.prompt_tokens"), 0);
    json_decref(j);
    int st;
    j = post_json(s.port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", &st);
    cr_expect_eq(st, 400);
    cr_expect(strstr(jstr(j, "error.message"), "NUL") && !strstr(jstr(j, "error.message"), "JSON_"), "%s", jstr(j, "error.message"));
    json_decref(j);
    /* unsupported fields: a 400 that names them, never a silent ignore */
    const struct { const char *path, *body, *param; } bad[] = {
        { "/v1/completions", "{\"prompt\":\"a\",\"n\":2}", "n" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"n\":3}", "n" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"response_format\":{\"type\":\"json_object\"}}", "response_format" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}", "response_format" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"tools\":[{\"type\":\"function\"}]}", "tools" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"logit_bias\":{\"5\":10}}", "logit_bias" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"top_logprobs\":2}", "top_logprobs" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs" },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"stream_options\":{\"include_usage\":true}}", "stream_options" },
        { "/v1/completions", "{\"prompt\":\"a\",\"presence_penalty\":0.5}", "presence_penalty" },
        { "/v1/completions", "{\"prompt\":\"a\",\"frequency_penalty\":1}", "frequency_penalty" },
        { "/v1/completions", "{\"prompt\":\"a\",\"logprobs\":6}", "logprobs" },
        { "/v1/completions", "{\"prompt\":\"a\",\"logprobs\":2,\"echo\":true}", "echo" },
        { "/v1/completions", "{\"prompt\":\"a\",\"best_of\":2}", "best_of" },
        { "/v1/completions", "{\"prompt\":\"a\",\"suffix\":\"x\"}", "suffix" },
        { "/v1/completions", "{\"prompt\":\"a\",\"echo\":1}", "echo" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = post_json(s.port, bad[i].path, bad[i].body, &st);
        cr_expect_eq(st, 400, "%s -> %d", bad[i].body, st);
        cr_expect(jstr(j, "error.param") && !strcmp(jstr(j, "error.param"), bad[i].param), "%s: %s", bad[i].body,
                  json_dumps(j, 0));
        json_decref(j);
    }
    free(want);
    stop_server(&s, SIGTERM);
}

Test(serve, json_log_lines, .timeout = 120) {
    server s;
    start_server(&s, "--log-format", "json", NULL);
    int st;
    json_t *j = post_ok(s.port, "/v1/completions", "{\"prompt\":\"Amen\",\"max_tokens\":3,\"temperature\":0}");
    const char *id = jstr(j, "id");
    char want_id[64];
    snprintf(want_id, sizeof want_id, "%s", id);
    json_decref(j);
    j = post_json(s.port, "/v1/completions", "{\"prompt\":7}", &st);
    json_decref(j);
    resp r;
    cr_assert(http(s.port, "GET", "/health", NULL, 0, &r));
    free(r.body);
    cr_assert(http(s.port, "GET", "/nope%0Ax", NULL, 0, &r)); /* a newline in the path stays on one line */
    cr_expect_eq(r.status, 404);
    free(r.body);
    stop_server(&s, SIGTERM);
    /* after the "listening on" line: one JSON object per request */
    char *p = strchr(strstr(s.log, "listening on"), '\n') + 1;
    int n = 0, seen = 0, seen_404 = 0;
    while (*p) {
        char *e = strchr(p, '\n');
        if (!e) break;
        *e = 0;
        if (*p == '{') {
            j = json_loads(p, 0, NULL);
            cr_assert(j, "not JSON: %s", p);
            cr_expect(jstr(j, "id") && jstr(j, "endpoint") && jstr(j, "method") && jint(j, "status") > 0, "%s", p);
            cr_expect(json_is_number(json_object_get(j, "duration_ms")), "%s", p);
            if (!strcmp(jstr(j, "id"), want_id)) {
                seen++;
                cr_expect_eq(jint(j, "status"), 200);
                cr_expect_eq(jint(j, "completion_tokens"), 3);
                cr_expect(json_is_number(json_object_get(j, "ttft_ms")), "%s", p);
                cr_expect_str_eq(jstr(j, "endpoint"), "/v1/completions");
            }
            if (jint(j, "status") == 404) {
                seen_404++;
                cr_expect(!strncmp(jstr(j, "endpoint"), "/nope", 5), "%s", p);
            }
            n++;
            json_decref(j);
        }
        p = e + 1;
    }
    cr_expect_eq(n, 4, "%s", s.log);
    cr_expect_eq(seen, 1);
    cr_expect_eq(seen_404, 1);
}

Test(serve, tokenize_detokenize, .timeout = 120) {
    server s;
    start_server(&s, NULL);
    const char *text = "And the LORD said unto Moses, \xc3\xa9 x";
    json_t *req = json_pack("{s:s,s:b}", "content", text, "add_special", 1);
    char *b = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_t *j = post_ok(s.port, "/tokenize", b);
    free(b);
    json_t *toks = json_object_get(j, "tokens");
    cr_assert(json_is_array(toks) && json_array_size(toks) > 3);
    /* as many tokens as a completion of the same prompt counts */
    char *cb = body_for("prompt", text, "{\"max_tokens\":1}");
    json_t *c = post_ok(s.port, "/v1/completions", cb);
    cr_expect_eq((long long)json_array_size(toks), jint(c, "usage.prompt_tokens"));
    json_decref(c);
    free(cb);
    /* without the specials, detokenize gives the text back */
    req = json_pack("{s:s,s:b}", "content", text, "with_pieces", 1);
    b = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_t *j2 = post_ok(s.port, "/tokenize", b);
    free(b);
    json_t *pieces = json_object_get(j2, "tokens"), *ids = json_array();
    for (size_t i = 0; i < json_array_size(pieces); i++)
        json_array_append(ids, json_object_get(json_array_get(pieces, i), "id"));
    req = json_pack("{s:o}", "tokens", ids);
    b = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_t *d = post_ok(s.port, "/detokenize", b);
    free(b);
    cr_expect_str_eq(jstr(d, "content"), text);
    json_decref(d);
    json_decref(j2);
    json_decref(j);
    int st;
    const char *bad[] = { "{\"content\":5}", "{}", "[1]", "{\"content\":\"a\",\"add_special\":\"yes\"}" };
    for (int i = 0; i < 4; i++) {
        j = post_json(s.port, "/tokenize", bad[i], &st);
        cr_expect_eq(st, 400, "%s", bad[i]);
        json_decref(j);
    }
    const char *badd[] = { "{\"tokens\":[-1]}", "{\"tokens\":[99999999]}", "{\"tokens\":\"a\"}", "{\"tokens\":[1.5]}" };
    for (int i = 0; i < 4; i++) {
        j = post_json(s.port, "/detokenize", badd[i], &st);
        cr_expect_eq(st, 400, "%s", badd[i]);
        json_decref(j);
    }
    stop_server(&s, SIGTERM);
}

/* The official openai npm client (tests/node/openai_client.cjs; installed by scripts/setup-node.sh
 * into BUILD/node, which .ci/run runs): every answer parses, greedy texts equal `bitjit run`'s,
 * streams add up to the same, and unsupported fields / a bad key come back as the client's typed
 * errors. Skips when node or the installed client is absent. */
Test(serve, openai_npm_client, .timeout = 180) {
    char build[4096], mods[4200], probe[4400], cmd[16384], out[16384];
    snprintf(build, sizeof build, "%s", BJ_BITJIT_EXE);
    *strrchr(build, '/') = 0;
    snprintf(mods, sizeof mods, "%s/node", build);
    snprintf(probe, sizeof probe, "%s/node_modules/openai/package.json", mods);
    if (sh("command -v node", out, sizeof out) != 0) cr_skip_test("node is not installed");
    if (access(probe, R_OK) != 0) cr_skip_test("the openai npm client is not installed (scripts/setup-node.sh)");
    char *want = bitjit_continuation(KJV, "In the beginning", 12);
    server s;
    start_server(&s, "--api-key", "npm-key", NULL);
    snprintf(cmd, sizeof cmd, "node %s/tests/node/openai_client.cjs %s http://127.0.0.1:%d/v1 npm-key", BJ_SOURCE_DIR,
             mods, s.port);
    int st;
    char *o = sh_stdout(cmd, &st);
    cr_assert_eq(st, 0, "the openai client failed (run it by hand for its stack): %s", o);
    json_t *j = json_loads(o, 0, NULL);
    cr_assert(j, "not JSON: %s", o);
    cr_log_info("openai npm client: %s", o);
    cr_expect_str_eq(jstr(j, "completion"), want);
    cr_expect_str_eq(jstr(j, "completion_streamed"), want);
    cr_expect_str_eq(jstr(j, "completion_logprob_tokens"), want);
    cr_expect_str_eq(jstr(j, "chat"), want);
    cr_expect_str_eq(jstr(j, "chat_role"), "assistant");
    cr_expect_str_eq(jstr(j, "chat_logprobs"), want);
    cr_expect_eq(jint(j, "chat_top"), 3);
    cr_expect_str_eq(jstr(j, "chat_streamed"), want);
    cr_expect_eq(jint(j, "chat_stream_usage"), jint(j, "completion_tokens"));
    cr_expect_eq(jint(j, "n2.status"), 400);
    cr_expect_str_eq(jstr(j, "n2.param"), "n");
    cr_expect_str_eq(jstr(j, "n2.name"), "BadRequestError");
    cr_expect_eq(jint(j, "json_object.status"), 400);
    cr_expect_str_eq(jstr(j, "json_object.param"), "response_format");
    cr_expect_eq(jint(j, "bad_key.status"), 401);
    cr_expect_str_eq(jstr(j, "bad_key.name"), "AuthenticationError");
    cr_expect_str_eq(jstr(j, "bad_key.code"), "invalid_api_key");
    json_decref(j);
    free(o);
    free(want);
    stop_server(&s, SIGTERM);
}
