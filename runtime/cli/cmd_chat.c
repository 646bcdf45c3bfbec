/* runtime/cli/cmd_chat.c -- `bitjit chat`: an interactive conversation in the terminal (or over a
 * pipe: one user message per line of stdin). The model's chat template renders the conversation
 * (runtime/chat.h; plain continuation for a model without one); the conversation stays in the
 * engine's KV cache, so each turn runs only the tokens that are new. Ctrl-C stops an answer;
 * Ctrl-C at the prompt, or end of input, leaves. */
#include "runtime/chat.h"
#include "runtime/cli/cli.h"
#include "runtime/cli/lineedit.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The commands: lines that start with '/' are answered by chat, never sent to the model. */
#define CHAT_COMMANDS                                                                               \
    "  /help          this list\n"                                                                 \
    "  /reset         start a new conversation (the --system message is kept)\n"                   \
    "  /exit, /quit   leave (as Ctrl-D does)\n"                                                    \
    "  //text         send the message '/text'\n"

static int usage_chat(FILE *f) {
    fprintf(f,
            "usage: bitjit chat [-m PATH] [options]\n"
            "\n"
            "Chats with a model in the terminal. Each line read is a user message; the answer streams\n"
            "to stdout. The conversation is rendered with the model's chat template (bitnet, llama3,\n"
            "chatml or falcon3, recognised from the model's files); a model without one (the bundled model) gets\n"
            "plain continuation: each line continues the text so far. The conversation is kept in the\n"
            "KV cache; when the context is full, the oldest turns are dropped (the --system message is\n"
            "kept) and the answer goes on, saying so on stderr.\n"
            "Works over a pipe too: `printf 'line 1\\nline 2\\n' | bitjit chat --temp 0` prints each\n"
            "answer followed by a newline.\n"
            "\n"
            "Ctrl-C stops the current answer; Ctrl-C at the prompt or Ctrl-D (end of input) leaves.\n"
            "On a terminal the line can be edited (arrow keys, Home/End, Ctrl-A/E/K/W; libedit, which\n"
            "reads ~/.editrc) and Up/Down recall earlier lines of the session.\n"
            "Lines starting with '/' are commands, never sent to the model (an unknown one is an error;\n"
            "over a pipe, chat then stops with status 2):\n" CHAT_COMMANDS
            "\n"
            "chat:\n"
            "  -n, --n-predict N       most tokens per answer (default 256; stops early at the end of a turn)\n"
            "      --system TEXT       a system message to start the conversation with\n"
            "      --chat-template T   bitnet, llama3, chatml, falcon3 or plain instead of the model's own\n"
            "\n"
            "sampling:\n" CLI_SAMPLING_HELP
            "\n"
            "model and execution:\n" CLI_MODEL_HELP
            "  -h, --help              show this help\n");
    return f == stderr ? 2 : 0;
}

typedef struct chat_opts {
    int64_t n_predict;
    const char *system, *tmpl;
    cli_sampling samp;
    cli_model_opts mo;
} chat_opts;

enum { O_SYSTEM = CLI_O_CMD, O_TEMPLATE };

static void parse_chat(int argc, char **argv, chat_opts *o) {
    static const struct option longs[] = {
        { "n-predict", required_argument, 0, 'n' }, { "system", required_argument, 0, O_SYSTEM },
        { "chat-template", required_argument, 0, O_TEMPLATE }, CLI_SAMPLING_LONGOPTS, CLI_MODEL_LONGOPTS,
        CLI_END_LONGOPTS,
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":n:h" CLI_MODEL_SHORTOPTS CLI_SAMPLING_SHORTOPTS, longs, NULL)) != -1) {
        if (cli_model_opt(c, optarg, &o->mo) || cli_sampling_opt(c, optarg, &o->samp)) continue;
        switch (c) {
        case 'n': o->n_predict = cli_parse_int("-n", optarg, 1, INT32_MAX); break;
        case O_SYSTEM: o->system = optarg; break;
        case O_TEMPLATE: o->tmpl = optarg; break;
        default: cli_bad_option(c, argv, usage_chat);
        }
    }
    if (optind < argc) cli_die_usage("unexpected argument '%s'", argv[optind]);
    if (o->tmpl) cli_check_chat_template(o->tmpl);
    cli_model_opts_check(&o->mo);
    cli_sampling_finish(&o->samp);
}

/* ---- Ctrl-C: stops an answer while one runs, else leaves ------------------------------------------ */
static volatile sig_atomic_t g_answering, g_interrupt, g_quit;

static void on_sigint(int sig) {
    (void)sig;
    if (g_answering) g_interrupt = 1;
    else g_quit = 1;
}

/* ---- the conversation ---------------------------------------------------------------------------- */
typedef struct convo {
    bj_chat_msg *m;
    size_t n, cap, n_keep; /* n_keep: the system message, kept by /reset */
} convo;

static void convo_add(convo *c, const char *role, const char *content, size_t len) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->m = realloc(c->m, c->cap * sizeof *c->m);
        if (!c->m) { fprintf(stderr, "%s: error: out of memory\n", bj_cli_prog); exit(1); }
    }
    char *s = strndup(content, len);
    if (!s) { fprintf(stderr, "%s: error: out of memory\n", bj_cli_prog); exit(1); }
    c->m[c->n++] = (bj_chat_msg){ role, s };
}

static void convo_trim(convo *c, size_t n) {
    while (c->n > n) free((char *)c->m[--c->n].content);
}

typedef struct chat_state {
    chat_opts *o;
    cli_session *ses;
    bj_chat_template tmpl;
    bj_kv_seq kv;
    bj_sampler s;
    float *logits;
    int32_t stop[4];
    int n_stop;
    int32_t *reply;
    convo cv;
} chat_state;

static bool is_stop(const chat_state *c, int32_t tok) {
    for (int i = 0; i < c->n_stop; i++)
        if (c->stop[i] == tok) return true;
    return false;
}

/* Drops messages [from, to) of the conversation. */
static void convo_drop(convo *c, size_t from, size_t to) {
    for (size_t i = from; i < to; i++) free((char *)c->m[i].content);
    memmove(c->m + from, c->m + to, (c->n - to) * sizeof *c->m);
    c->n -= to - from;
}

/* Room kept free for an answer when the conversation is fitted into the context: the rest of
 * the answer, at most a quarter of the context (a longer answer shifts the context again). */
static int64_t answer_room(const chat_state *c, int64_t n_gen) {
    int64_t left = c->o->n_predict - n_gen, q = c->ses->e->max_seq / 4;
    return left < q ? (left > 1 ? left : 1) : (q > 1 ? q : 1);
}

/* Context shifting: the conversation so far (ending with the user's message), tokenized with the
 * generation prompt, leaving room positions free; the oldest turns after the system prompt are
 * dropped (and said so on stderr) until it fits. False when even the system prompt and the last
 * message leave too little room. */
static bool fit_convo(chat_state *c, int64_t room, int32_t **ids, size_t *n) {
    bj_error err = { 0 };
    int64_t ctx = c->ses->e->max_seq;
    size_t first;
    bj_status st = bj_chat_tokenize_fit(&c->tmpl, c->ses->m.tok, c->cv.m, c->cv.n, c->cv.n_keep, ctx, room, ids, n,
                                        &first, &err);
    if (st == BJ_E_INVALID) return false;
    if (st != BJ_OK) cli_die_error(&err);
    if (first > c->cv.n_keep) {
        if (!c->o->mo.quiet)
            fprintf(stderr, "%s: the context of %lld tokens is full: dropped the oldest %zu message%s%s\n", bj_cli_prog,
                    (long long)ctx, first - c->cv.n_keep, first - c->cv.n_keep > 1 ? "s" : "",
                    c->cv.n_keep ? " (the system prompt is kept)" : "");
        convo_drop(&c->cv, c->cv.n_keep, first);
    }
    return true;
}

/* The conversation with a new user message, tokenized (fit_convo). False, with a message, when
 * the message alone does not fit; it is then taken out of the conversation. */
static bool prompt_ids(chat_state *c, int32_t **ids, size_t *n) {
    if (fit_convo(c, answer_room(c, 0), ids, n)) return true;
    fprintf(stderr, "%s: that message is too long for the context of %lld tokens\n", bj_cli_prog,
            (long long)c->ses->e->max_seq);
    convo_trim(&c->cv, c->cv.n - 1);
    return false;
}

/* The context is full in the middle of an answer (reply[0..n_gen) so far): drops the oldest turns
 * and runs the conversation again with the answer so far, so that it goes on. False when nothing
 * can be dropped. */
static bool shift_answer(chat_state *c, int64_t n_gen) {
    bj_error err = { 0 };
    int32_t *ids;
    size_t n;
    if (!fit_convo(c, n_gen + answer_room(c, n_gen), &ids, &n)) return false;
    int32_t *all = realloc(ids, (n + (size_t)n_gen) * sizeof *all);
    if (!all) { fprintf(stderr, "%s: error: out of memory\n", bj_cli_prog); exit(1); }
    memcpy(all + n, c->reply, (size_t)n_gen * sizeof *all);
    if (bj_kv_seq_prompt(&c->kv, all, (int64_t)n + n_gen, c->logits, NULL, &err) != BJ_OK) cli_die_error(&err);
    free(all);
    return true;
}

/* One turn: the answer to the conversation so far, streamed to stdout and added to it. */
static void answer(chat_state *c) {
    bj_error err = { 0 };
    int32_t *ids;
    size_t n_ids;
    if (!prompt_ids(c, &ids, &n_ids)) return;
    int64_t n_run = 0;
    double t0 = cli_now_s();
    if (bj_kv_seq_prompt(&c->kv, ids, (int64_t)n_ids, c->logits, &n_run, &err) != BJ_OK) cli_die_error(&err);
    for (int64_t i = (int64_t)n_ids - n_run; i < (int64_t)n_ids; i++) bj_sampler_accept(&c->s, ids[i]);
    free(ids);
    double t1 = cli_now_s();

    cli_printer pr = { .tok = c->ses->m.tok };
    bj_engine *e = c->ses->e;
    int64_t n_gen = 0;
    bool full = false;
    while (n_gen < c->o->n_predict && !g_interrupt) {
        int32_t tok = bj_sampler_sample(&c->s, c->logits, e->n_vocab);
        bj_sampler_accept(&c->s, tok);
        if (is_stop(c, tok)) break;
        c->reply[n_gen++] = tok;
        cli_on_token(&pr, tok);
        if (n_gen == c->o->n_predict || g_interrupt) break;
        if (c->kv.n >= e->max_seq) {
            if (shift_answer(c, n_gen)) continue; /* the logits after tok */
            full = true;
            break;
        }
        if (bj_kv_seq_push(&c->kv, tok, c->logits, &err) != BJ_OK) cli_die_error(&err);
    }
    cli_printer_flush(&pr);
    fputc('\n', stdout);
    fflush(stdout);
    double t2 = cli_now_s();
    if (c->o->mo.verbose)
        fprintf(stderr, "%s: %lld prompt token%s run (%lld in the cache) in %.2f s, %lld generated in %.2f s%s\n",
                bj_cli_prog, (long long)n_run, cli_s(n_run), (long long)c->kv.n, t1 - t0, (long long)n_gen, t2 - t1,
                g_interrupt ? " (interrupted)" : "");

    char *text;
    size_t len;
    if (bj_tok_decode(c->ses->m.tok, c->reply, (size_t)n_gen, true, &text, &len, &err) != BJ_OK) cli_die_error(&err);
    convo_add(&c->cv, "assistant", text, len);
    free(text);
    if (full) {
        fprintf(stderr, "%s: the context of %lld tokens is full: starting a new conversation\n", bj_cli_prog,
                (long long)e->max_seq);
        convo_trim(&c->cv, c->cv.n_keep);
        bj_kv_seq_clear(&c->kv);
    }
}

/* ---- commands (CHAT_COMMANDS) ------------------------------------------------------------------- */
/* Runs the command in line; true to leave. An unknown command is an error: said on stderr, and
 * when the input is not a terminal (a script), chat stops with status 2. */
static bool chat_command(chat_state *c, const char *line, bool interactive) {
    char word[32];
    size_t n = strcspn(line, " \t");
    snprintf(word, sizeof word, "%.*s", (int)(n < sizeof word - 1 ? n : sizeof word - 1), line);
    const char *rest = line + n + strspn(line + n, " \t");
    bool known = !strcmp(word, "/help") || !strcmp(word, "/reset") || !strcmp(word, "/exit") || !strcmp(word, "/quit");
    if (!known || *rest) {
        fprintf(stderr, "%s %s: %s '%s'; the commands are:\n" CHAT_COMMANDS, bj_cli_prog, bj_cli_subcmd,
                known ? "this command takes no argument:" : "unknown command", line);
        if (!interactive) {
            fflush(stdout);
            exit(2);
        }
        return false;
    }
    if (!strcmp(word, "/help")) {
        fputs("commands:\n" CHAT_COMMANDS, stderr);
        return false;
    }
    if (!strcmp(word, "/reset")) {
        convo_trim(&c->cv, c->cv.n_keep);
        bj_kv_seq_clear(&c->kv);
        return false;
    }
    return true; /* /exit, /quit */
}

int bj_cmd_chat(int argc, char **argv) {
    chat_opts o = { .n_predict = 256 };
    cli_sampling_init(&o.samp);
    cli_model_opts_init(&o.mo);
    parse_chat(argc, argv, &o);

    bj_error err = { 0 };
    cli_session ses;
    cli_open(&o.mo, &ses);
    chat_state c = { .o = &o, .ses = &ses };
    cli_chat_template(&ses, o.tmpl, o.mo.quiet, "using plain text", &c.tmpl);
    c.n_stop = bj_chat_stop_tokens(&c.tmpl, ses.m.tok, c.stop, 4);
    if (bj_kv_seq_init(&c.kv, ses.e, &err) != BJ_OK || bj_sampler_init(&c.s, &o.samp.sp, ses.e->n_vocab, &err) != BJ_OK)
        cli_die_error(&err);
    c.logits = malloc((size_t)ses.e->n_vocab * sizeof *c.logits);
    c.reply = malloc((size_t)o.n_predict * sizeof *c.reply);
    if (!c.logits || !c.reply) { fprintf(stderr, "%s: error: out of memory\n", bj_cli_prog); return 1; }
    if (o.system) convo_add(&c.cv, "system", o.system, strlen(o.system));
    c.cv.n_keep = c.cv.n;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: Ctrl-C at the prompt interrupts the read */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    bool tty = isatty(0);
    if (tty && !o.mo.quiet)
        fprintf(stderr, "%s: chatting with %s (template %s, context %lld tokens). Ctrl-C stops an answer, "
                        "Ctrl-D leaves; /help lists the commands.\n",
                bj_cli_prog, o.mo.model, bj_chat_kind_name(c.tmpl.kind), (long long)ses.e->max_seq);
    cli_lines *in = cli_lines_open(bj_cli_prog, "> ");
    for (;;) {
        g_answering = 0;
        g_interrupt = 0;
        if (g_quit) break;
        size_t len;
        const char *line = cli_lines_get(in, &len);
        if (!line) {
            if (errno == EINTR && !g_quit) continue;
            if (errno == EINTR && tty) fputc('\n', stdout); /* Ctrl-C at the prompt: leave on a fresh line */
            break;
        }
        g_answering = 1;
        if (len == 0) continue;
        cli_lines_remember(in, line);
        if (line[0] == '/' && line[1] != '/') {
            if (chat_command(&c, line, tty)) break;
            continue;
        }
        if (line[0] == '/') { line++; len--; } /* "//text" sends "/text" */
        convo_add(&c.cv, "user", line, len);
        answer(&c);
    }
    cli_lines_close(in);
    fflush(stdout);
    convo_trim(&c.cv, 0);
    free(c.cv.m);
    free(c.reply);
    free(c.logits);
    bj_sampler_free(&c.s);
    bj_kv_seq_free(&c.kv);
    cli_close(&ses);
    return 0;
}
