/* tests/unit/test_serve_fleet.c -- `bitjit serve` replicas behind Debian's nginx (docs/deploy.md),
 * everything on 127.0.0.1: three replicas on free ports and one nginx (its own prefix, config and
 * logs under BJ_TEST_TMP) with the upstream configuration docs/deploy.md gives.
 *  1. throughput through nginx with 1, 2 and 3 replicas (48 greedy requests, 8 at a time, each);
 *  2. a bounded load of 200 requests, 8 at a time, mixed completions/chat and streaming or not,
 *     under a time limit; one replica is killed (SIGKILL) a third of the way in. Only requests in
 *     flight on the killed replica when it died may fail (nginx names the replica of every answer
 *     in X-Upstream); every other answer must be the text `bitjit run --temp 0` gives, whichever
 *     replica wrote it (so greedy answers agree across replicas);
 *  3. a rolling restart: 60 more requests while another replica gets SIGTERM and drains: none may
 *     fail (its 503s are retried on the last replica, what it accepted finishes) and it exits 0.
 * The replicas and nginx get SIGKILL if the test process dies (PR_SET_PDEATHSIG), so nothing is left
 * running. Skips when nginx is not installed (scripts/setup.sh installs it). Sanitizer builds run a smaller
 * load (40 + 20 requests) and no throughput run. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "support/shell.h"
#include "support/serve_client.h"

#include <sys/prctl.h>
#include <sys/stat.h>

#define N_REPLICAS 3
#define NGINX "/usr/sbin/nginx"

#ifdef BJ_TEST_SANITIZED /* instrumented servers take ~0.4 s a request: a small load, no throughput run */
#define N_LOAD 40
#define N_BENCH 0
#define N_DRAIN 20
#else
#define N_LOAD 200
#define N_BENCH 32
#define N_DRAIN 60
#endif
#define N_CONC 8
#define LOAD_LIMIT_S 90.0

static const char *const FPROMPTS[] = { "In the beginning", "And the LORD said unto Moses,", "Blessed are the", "Amen" };
#define MAX_TOKENS 16

/* ---- processes ------------------------------------------------------------------------------------- */
/* Runs path with stderr to the file log (emptied first, here: a reader never sees an old one). */
static pid_t spawn_logged(const char *path, char *const argv[], const char *log) {
    pid_t parent = getpid();
    int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(lfd, 0, "%s", log);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(lfd, 2);
        execv(path, argv);
        _exit(127);
    }
    close(lfd);
    return pid;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    char *b = calloc(1, 1 << 20);
    size_t n = fread(b, 1, (1 << 20) - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

typedef struct replica { pid_t pid; int port; char log[4096]; } replica;

static void start_replica(replica *r, int i) {
    r->port = 0;
    snprintf(r->log, sizeof r->log, "%s/fleet_%d_replica%d.log", BJ_TEST_TMP, (int)getpid(), i);
    char *const argv[] = { "bitjit", "serve", "-m", KJV, "--port", "0", "-t", "1", "--parallel", "1", NULL };
    r->pid = spawn_logged(BJ_BITJIT_EXE, argv, r->log);
    const char *key = "listening on http://127.0.0.1:";
    for (double t0 = now_s();; usleep(20 * 1000)) {
        char *l = slurp(r->log);
        char *p = strstr(l, key);
        if (p) r->port = atoi(p + strlen(key));
        int st;
        bool dead = waitpid(r->pid, &st, WNOHANG) == r->pid;
        cr_assert(!dead, "replica %d exited: %s", i, l);
        free(l);
        if (r->port > 0) return;
        cr_assert(now_s() - t0 < 60, "replica %d did not start", i);
    }
}

/* sig 0: only waits (up to 30 s, then SIGKILL). */
static void stop_pid(pid_t pid, int sig, int *status) {
    if (sig) kill(pid, sig);
    pid_t r;
    int st = 0;
    for (double t0 = now_s(); (r = waitpid(pid, &st, WNOHANG)) == 0 && now_s() - t0 < 30;) usleep(20 * 1000);
    if (r == 0) { kill(pid, SIGKILL); waitpid(pid, &st, 0); }
    if (status) *status = st;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* nginx with one server block per upstream size: port[k] proxies to replicas 0..k. The proxy
 * settings are docs/deploy.md's. */
static pid_t start_nginx(const char *prefix, const replica *rs, int *port) {
    char conf[4200];
    snprintf(conf, sizeof conf, "%s/nginx.conf", prefix);
    FILE *f = fopen(conf, "w");
    cr_assert(f);
    fprintf(f, "%s"
               "worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
               "events { worker_connections 512; }\n"
               "http {\n"
               "  access_log %s/access.log;\n"
               "  client_body_temp_path %s/tmp_body; proxy_temp_path %s/tmp_proxy; fastcgi_temp_path %s/tmp_fcgi;\n"
               "  uwsgi_temp_path %s/tmp_uwsgi; scgi_temp_path %s/tmp_scgi;\n",
            geteuid() == 0 ? "user root;\n" : "", prefix, prefix, prefix, prefix, prefix, prefix, prefix, prefix);
    for (int k = 0; k < N_REPLICAS; k++) {
        fprintf(f, "  upstream bitjit%d {\n    least_conn;\n", k + 1);
        for (int i = 0; i <= k; i++) fprintf(f, "    server 127.0.0.1:%d max_fails=1 fail_timeout=10s;\n", rs[i].port);
        fprintf(f, "    keepalive 16;\n  }\n");
        fprintf(f, "  server {\n    listen 127.0.0.1:%d;\n"
                   "    location / {\n"
                   "      proxy_pass http://bitjit%d;\n"
                   "      proxy_http_version 1.1;\n"
                   "      proxy_set_header Connection \"\";\n"
                   "      proxy_buffering off;\n"
                   "      proxy_connect_timeout 2s;\n"
                   "      proxy_read_timeout 120s;\n"
                   "      proxy_next_upstream error timeout http_502 http_503 non_idempotent;\n"
                   "      proxy_next_upstream_tries 3;\n"
                   "      add_header X-Upstream $upstream_addr always;\n"
                   "    }\n  }\n",
                port[k] = free_port(), k + 1);
    }
    fprintf(f, "}\n");
    fclose(f);
    char log[4200];
    snprintf(log, sizeof log, "%s/stderr.log", prefix);
    char elog[4200];
    snprintf(elog, sizeof elog, "%s/error.log", prefix);
    /* -e: not even the start-up errors go to /var/log/nginx (unwritable when not root) */
    char *const argv[] = { "nginx", "-p", (char *)prefix, "-e", elog, "-c", conf, "-g", "daemon off;", NULL };
    pid_t pid = spawn_logged(NGINX, argv, log);
    for (int k = 0; k < N_REPLICAS; k++) {
        double t0 = now_s();
        int fd;
        while ((fd = connect_to(port[k])) < 0) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                char *l = slurp(log);
                cr_assert_fail("nginx exited: %s", l);
            }
            cr_assert(now_s() - t0 < 20, "nginx does not listen on %d", port[k]);
            usleep(20 * 1000);
        }
        close(fd);
    }
    return pid;
}

/* ---- requests ------------------------------------------------------------------------------------- */
static char *g_want[4], *g_want_bench[4];
#define BENCH_TOKENS 64 /* throughput runs: long enough answers that generation, not HTTP, dominates */

typedef struct outcome {
    double t0, t1;
    bool ok;            /* a complete, correct answer */
    int status;
    int upstream;       /* the replica port nginx named, or 0 */
    long long tokens;
    char why[256];
} outcome;

/* Request k of the mix: prompt k % 4; every third streamed; every other one a chat. Not mixed: a
 * completion of BENCH_TOKENS. */
static void one_request(int port, int k, bool mixed, outcome *o) {
    int pi = k % 4;
    bool stream = mixed && k % 3 == 0, chat = mixed && k % 2 == 1;
    char *const *want = mixed ? g_want : g_want_bench;
    json_t *req = json_pack("{s:i,s:f,s:b}", "max_tokens", mixed ? MAX_TOKENS : BENCH_TOKENS, "temperature", 0.0,
                            "stream", stream);
    if (chat) json_object_set_new(req, "messages", json_pack("[{s:s,s:s}]", "role", "user", "content", FPROMPTS[pi]));
    else json_object_set_new(req, "prompt", json_string(FPROMPTS[pi]));
    char *b = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    resp r;
    o->t0 = now_s();
    bool got = http(port, "POST", chat ? "/v1/chat/completions" : "/v1/completions", b, strlen(b), &r);
    o->t1 = now_s();
    free(b);
    o->status = r.status;
    const char *up = strstr(r.head, "x-upstream: ");
    if (up) { /* "127.0.0.1:P" or, after a retry, "127.0.0.1:P1, 127.0.0.1:P2": the last one answered */
        const char *last = up;
        for (const char *q = up; (q = strstr(q, "127.0.0.1:")) && q < up + 200; q++) last = q;
        o->upstream = atoi(strchr(last, ':') + 1);
    }
    char *text = NULL;
    if (got && r.status == 200) {
        if (stream) {
            if (strstr(r.body, "data: [DONE]")) {
                text = calloc(1, r.n + 1);
                for (char *p = r.body; (p = strstr(p, "data: {"));) {
                    char *end = strstr(p, "\n\n");
                    if (!end) break;
                    *end = 0;
                    json_t *j = json_loads(p + 6, 0, NULL);
                    const char *t = j ? jstr(j, chat ? "choices.0.delta.content" : "choices.0.text") : NULL;
                    if (t) strcat(text, t);
                    if (j && jint(j, "usage.completion_tokens") >= 0) o->tokens = jint(j, "usage.completion_tokens");
                    json_decref(j);
                    p = end + 2;
                }
            }
        } else {
            json_t *j = json_loads(r.body, 0, NULL);
            const char *t = j ? jstr(j, chat ? "choices.0.message.content" : "choices.0.text") : NULL;
            text = t ? strdup(t) : NULL;
            o->tokens = j ? jint(j, "usage.completion_tokens") : 0;
            json_decref(j);
        }
    }
    o->ok = text && !strcmp(text, want[pi]);
    if (!o->ok)
        snprintf(o->why, sizeof o->why, "req %d (%s%s) via %d: %s status %d, text [%.60s] want [%.60s]", k,
                 chat ? "chat" : "completion", stream ? ", stream" : "", o->upstream, got ? "" : "cut,", r.status,
                 text ? text : "(none)", want[pi]);
    free(text);
    free(r.body);
}

typedef struct load {
    int port, n;
    bool mixed;
    int next, done;     /* atomic */
    double deadline;
    outcome *out;
} load;

static void *load_main(void *arg) {
    load *l = arg;
    for (;;) {
        int k = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED);
        if (k >= l->n || now_s() > l->deadline) break;
        one_request(l->port, k, l->mixed, &l->out[k]);
        __atomic_add_fetch(&l->done, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void run_load(load *l, pthread_t *th) {
    for (int i = 0; i < N_CONC; i++) pthread_create(&th[i], NULL, load_main, l);
}

static void join_load(pthread_t *th) {
    for (int i = 0; i < N_CONC; i++) pthread_join(th[i], NULL);
}

Test(fleet, nginx_three_replicas_one_killed, .timeout = 300) {
    if (access(NGINX, X_OK) != 0) cr_skip_test("nginx is not installed (scripts/setup.sh installs it)");
    signal(SIGPIPE, SIG_IGN);
    (void)sh, (void)tool;
    for (int i = 0; i < 4; i++) {
        g_want[i] = bitjit_continuation(KJV, FPROMPTS[i], MAX_TOKENS);
        g_want_bench[i] = bitjit_continuation(KJV, FPROMPTS[i], BENCH_TOKENS);
    }
    replica rs[N_REPLICAS];
    for (int i = 0; i < N_REPLICAS; i++) start_replica(&rs[i], i);
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s/fleet_nginx_%d", BJ_TEST_TMP, (int)getpid());
    mkdir(prefix, 0755);
    int nport[N_REPLICAS];
    pid_t ng = start_nginx(prefix, rs, nport);

    /* 1. throughput with 1, 2, 3 replicas */
    char figures[2048] = "";
    for (int k = 0; k < N_REPLICAS && N_BENCH > 0; k++) {
        outcome *out = calloc(N_BENCH, sizeof *out);
        load l = { .port = nport[k], .n = N_BENCH, .deadline = now_s() + LOAD_LIMIT_S, .out = out };
        pthread_t th[N_CONC];
        double t0 = now_s();
        run_load(&l, th);
        join_load(th);
        double dt = now_s() - t0;
        long long toks = 0;
        int ok = 0;
        for (int i = 0; i < N_BENCH; i++) {
            ok += out[i].ok, toks += out[i].tokens;
            cr_expect(out[i].ok, "%d replicas: %s", k + 1, out[i].why);
        }
        cr_expect_eq(ok, N_BENCH);
        char line[256];
        snprintf(line, sizeof line, "%d replica%s: %d requests in %.2f s: %.1f requests/s, %.0f generated tokens/s\n", k + 1,
                 k ? "s" : "", ok, dt, ok / dt, toks / dt);
        strncat(figures, line, sizeof figures - strlen(figures) - 1);
        free(out);
    }
    if (N_BENCH > 0)
        cr_log_info("fleet throughput through nginx (each replica --parallel 1 -t 1, %d at a time, max_tokens %d):\n%s",
                N_CONC, BENCH_TOKENS, figures);
    char fpath[4096];
    snprintf(fpath, sizeof fpath, "%s/fleet_figures.txt", BJ_TEST_TMP);
    FILE *f = fopen(fpath, "w");
    if (f) { fputs(figures, f); fclose(f); }

    /* 2. the bounded mixed load through all three, one replica killed a third of the way */
    outcome *out = calloc(N_LOAD, sizeof *out);
    load l = { .port = nport[N_REPLICAS - 1], .n = N_LOAD, .mixed = true, .deadline = now_s() + LOAD_LIMIT_S, .out = out };
    pthread_t th[N_CONC];
    run_load(&l, th);
    while (__atomic_load_n(&l.done, __ATOMIC_RELAXED) < N_LOAD / 3 && now_s() < l.deadline) usleep(1000);
    const int victim = 1;
    double t_kill = now_s();
    kill(rs[victim].pid, SIGKILL);
    waitpid(rs[victim].pid, NULL, 0);
    join_load(th);
    int ok = 0, failed = 0, per_replica[N_REPLICAS] = { 0 }, not_run = 0;
    for (int i = 0; i < N_LOAD; i++) {
        if (out[i].t0 == 0) { not_run++; continue; }
        for (int r = 0; r < N_REPLICAS; r++) per_replica[r] += out[i].ok && out[i].upstream == rs[r].port;
        if (out[i].ok) { ok++; continue; }
        failed++;
        cr_expect(out[i].t0 < t_kill && out[i].t1 >= t_kill, "failed but not in flight at the kill: %s", out[i].why);
        cr_expect(out[i].upstream == rs[victim].port, "failed on a live replica: %s", out[i].why);
    }
    cr_expect_eq(not_run, 0, "the load did not finish within %.0f s", LOAD_LIMIT_S);
    cr_expect_leq(failed, N_CONC, "more failures than requests in flight");
    for (int r = 0; r < N_REPLICAS; r++) cr_expect_gt(per_replica[r], 0, "replica %d served no correct answer", r);
    cr_log_info("mixed load: %d requests, %d right, %d failed (in flight on the killed replica); served by replicas: %d %d %d",
                N_LOAD, ok, failed, per_replica[0], per_replica[1], per_replica[2]);
    free(out);

    /* 3. a rolling restart: SIGTERM to another replica mid-load. It drains (503 to what is new,
     * which nginx passes on; what it accepted finishes) and exits 0: no request may fail. */
    out = calloc(N_DRAIN, sizeof *out);
    l = (load){ .port = nport[N_REPLICAS - 1], .n = N_DRAIN, .mixed = true, .deadline = now_s() + LOAD_LIMIT_S, .out = out };
    run_load(&l, th);
    while (__atomic_load_n(&l.done, __ATOMIC_RELAXED) < N_DRAIN / 3 && now_s() < l.deadline) usleep(1000);
    const int drained = 0;
    int st;
    kill(rs[drained].pid, SIGTERM);
    join_load(th);
    ok = 0;
    for (int i = 0; i < N_DRAIN; i++) {
        ok += out[i].ok;
        cr_expect(out[i].ok, "failed during a drain: %s", out[i].why);
    }
    stop_pid(rs[drained].pid, 0, &st);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the drained replica: exit %d", st);
    char *dl = slurp(rs[drained].log);
    cr_expect(strstr(dl, "draining"), "%s", dl);
    free(dl);
    cr_log_info("rolling restart: %d of %d requests right while replica %d drained", ok, N_DRAIN, drained);
    free(out);

    stop_pid(ng, SIGQUIT, &st);
    for (int i = 0; i < N_REPLICAS; i++) {
        if (i == victim || i == drained) continue;
        stop_pid(rs[i].pid, SIGTERM, &st);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "replica %d: exit %d", i, st);
    }
    for (int i = 0; i < 4; i++) free(g_want[i]), free(g_want_bench[i]);
}
