/* tests/unit/test_chat.c -- chat templates (runtime/chat.c) against the formats they implement,
 * token sequences kept in the KV cache against a fresh engine, and `bitjit chat` end to end:
 * over a pipe its answers equal `bitjit run --temp 0` on the same text (plain continuation, an
 * independent path), and Ctrl-C (SIGINT) stops an answer without leaving. */
#include <criterion/criterion.h>

#include "runtime/chat.h"
#include "support/shell.h"
#include "support/tmux.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KJV BJ_SOURCE_DIR "/models/kjv-bitnet-11m/packed"

static char *render(bj_chat_kind k, const char *bos, const bj_chat_msg *m, size_t n, bool gen) {
    bj_chat_template t;
    bj_chat_template_init(&t, k, bos);
    char *out;
    size_t len;
    bj_error err = { 0 };
    cr_assert_eq(bj_chat_render(&t, m, n, gen, &out, &len, &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(strlen(out), len);
    return out;
}

/* formats.md §3.5: "<|begin_of_text|> then System: …, User: …<|eot_id|> and Assistant: ", roles as
 * plain text (BitNet's gpu/tokenizer.py ChatFormat: every message ends with <|eot_id|>, contents
 * stripped); the HF example prompt "<|begin_of_text|>User: Hey, are you conscious? Can you talk to
 * me?<|eot_id|>Assistant:" (ik_llama.cpp issue 339, from the transformers PR). */
Test(chat, bitnet_2b4t_format) {
    const char *bos = "<|begin_of_text|>";
    bj_chat_msg one[] = { { "user", "Hey, are you conscious? Can you talk to me?" } };
    char *s = render(BJ_CHAT_BITNET, bos, one, 1, true);
    cr_expect_str_eq(s, "<|begin_of_text|>User: Hey, are you conscious? Can you talk to me?<|eot_id|>Assistant: ");
    free(s);
    bj_chat_msg conv[] = { { "system", "You are a helpful AI assistant." },
                           { "user", "  How are you?\n" },
                           { "assistant", "I am fine." },
                           { "user", "Good." } };
    s = render(BJ_CHAT_BITNET, bos, conv, 4, true);
    cr_expect_str_eq(s, "<|begin_of_text|>System: You are a helpful AI assistant.<|eot_id|>User: How are you?<|eot_id|>"
                        "Assistant: I am fine.<|eot_id|>User: Good.<|eot_id|>Assistant: ");
    free(s);
    s = render(BJ_CHAT_BITNET, bos, conv, 3, false); /* no generation prompt */
    cr_expect_str_eq(s, "<|begin_of_text|>System: You are a helpful AI assistant.<|eot_id|>User: How are you?<|eot_id|>"
                        "Assistant: I am fine.<|eot_id|>");
    free(s);
}

/* Meta's LLaMA-3 instruct format (model card "prompt format"). */
Test(chat, llama3_format) {
    bj_chat_msg conv[] = { { "system", "S" }, { "user", " U " } };
    char *s = render(BJ_CHAT_LLAMA3, "<|begin_of_text|>", conv, 2, true);
    cr_expect_str_eq(s, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(s);
}

Test(chat, chatml_and_plain) {
    bj_chat_msg conv[] = { { "user", "hello" }, { "assistant", "response" }, { "user", "again" } };
    char *s = render(BJ_CHAT_CHATML, NULL, conv, 3, true);
    cr_expect_str_eq(s, "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nresponse<|im_end|>\n"
                        "<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    /* plain: a reply continues the text; each other message starts a line */
    s = render(BJ_CHAT_PLAIN, "<|begin_of_text|>", conv, 3, true);
    cr_expect_str_eq(s, "helloresponse\nagain");
    free(s);
    bj_chat_msg bad[] = { { "user", NULL } };
    bj_chat_template t;
    bj_chat_template_init(&t, BJ_CHAT_PLAIN, NULL);
    char *out;
    bj_error err = { 0 };
    cr_expect_neq(bj_chat_render(&t, bad, 1, true, &out, NULL, &err), BJ_OK);
}

Test(chat, detect) {
    /* microsoft/bitnet-b1.58-2B-4T tokenizer_config.json */
    const char *bitnet = "{% for message in messages %}{% set content = message['role'] | capitalize + ': '+ "
                         "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = "
                         "bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
                         "{{ 'Assistant: ' }}{% endif %}";
    const char *llama3 = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                         "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}";
    bool known;
    cr_expect_eq(bj_chat_detect(bitnet, &known), BJ_CHAT_BITNET);
    cr_expect(known);
    cr_expect_eq(bj_chat_detect(llama3, &known), BJ_CHAT_LLAMA3);
    cr_expect_eq(bj_chat_detect("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}", &known), BJ_CHAT_CHATML);
    cr_expect_eq(bj_chat_detect(NULL, &known), BJ_CHAT_PLAIN);
    cr_expect(known);
    cr_expect_eq(bj_chat_detect("{{ messages[0].content }}", &known), BJ_CHAT_PLAIN);
    cr_expect_not(known);
    cr_expect_eq(bj_chat_detect("bitnet", &known), BJ_CHAT_BITNET);
}

/* The bundled model has no template: plain; its BOS is added once, like `bitjit run`. */
Test(chat, model_template_and_tokens) {
    bj_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_model_load(&m, KJV, &err), BJ_OK, "%s", err.msg);
    bj_chat_template t;
    cr_assert_eq(bj_chat_template_for_model(&t, &m, &err), BJ_OK, "%s", err.msg);
    cr_expect_eq(t.kind, BJ_CHAT_PLAIN);
    cr_expect_not(t.unknown);
    cr_expect_str_eq(t.bos, "<|begin_of_text|>");
    int32_t stop[4];
    cr_expect_eq(bj_chat_stop_tokens(&t, m.tok, stop, 4), 1);
    cr_expect_eq(stop[0], 4095);

    bj_chat_msg msgs[] = { { "user", "In the beginning" } };
    int32_t *a, *b;
    size_t na, nb;
    cr_assert_eq(bj_chat_tokenize(&t, m.tok, msgs, 1, true, &a, &na, &err), BJ_OK);
    cr_assert_eq(bj_tok_encode(m.tok, "In the beginning", 16, true, true, &b, &nb, &err), BJ_OK);
    cr_assert_eq(na, nb);
    cr_expect_eq(memcmp(a, b, na * sizeof *a), 0);
    free(a);
    free(b);
    /* the bitnet template writes BOS as text: still one BOS token */
    bj_chat_template_init(&t, BJ_CHAT_BITNET, "<|begin_of_text|>");
    cr_assert_eq(bj_chat_tokenize(&t, m.tok, msgs, 1, true, &a, &na, &err), BJ_OK);
    cr_expect_eq(a[0], 4094);
    for (size_t i = 1; i < na; i++) cr_expect_neq(a[i], 4094);
    free(a);
    bj_model_free(&m);
}

/* A model directory whose tokenizer_config.json carries a template (a string, or HF's list of
 * named templates): the bundled model's files linked next to it. */
static void model_with_template(const char *dir, const char *chat_template_json) {
    char cmd[20000], out[4096];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && for f in config.json model.safetensors tokenizer.json "
             "generation_config.json; do ln -s %s/$f %s/$f; done", dir, dir, KJV, dir);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|end_of_text|>\", \"add_bos_token\": true,"
               " \"chat_template\": %s}", chat_template_json);
    fclose(f);
}

Test(chat, template_from_tokenizer_config) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/chat_tmpl_%d", BJ_TEST_TMP, (int)getpid());
    const char *srcs[] = {
        "\"{% for message in messages %}{% set content = message['role'] | capitalize + ': '+ message['content'] | trim"
        " + '<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}\"",
        "[{\"name\": \"tool_use\", \"template\": \"x\"}, {\"name\": \"default\", \"template\": "
        "\"{{ bos_token }}<|start_header_id|>{{ m }}<|end_header_id|>\"}]",
        "\"{{ something_else }}\"",
    };
    const bj_chat_kind want[] = { BJ_CHAT_BITNET, BJ_CHAT_LLAMA3, BJ_CHAT_PLAIN };
    for (int i = 0; i < 3; i++) {
        model_with_template(dir, srcs[i]);
        bj_model m;
        bj_error err = { 0 };
        cr_assert_eq(bj_model_load(&m, dir, &err), BJ_OK, "%s", err.msg);
        bj_chat_template t;
        cr_assert_eq(bj_chat_template_for_model(&t, &m, &err), BJ_OK, "%s", err.msg);
        cr_expect_eq(t.kind, want[i], "template %d", i);
        cr_expect_eq(t.unknown, i == 2);
        cr_expect_str_eq(t.bos, "<|begin_of_text|>");
        bj_model_free(&m);
    }
    char cmd[4200], out[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd, out, sizeof out);
}

/* A prompt that extends what the cache holds runs only the new tokens, and its logits equal a
 * fresh engine's over the whole prompt; a prompt that diverges drops the rest. */
Test(chat, kv_seq_reuses_prefix) {
    bj_model m;
    bj_error err = { 0 };
    cr_assert_eq(bj_model_load(&m, KJV, &err), BJ_OK, "%s", err.msg);
    bj_engine *e, *f;
    cr_assert_eq(bj_ref_engine_create(&e, &m.graph, &err), BJ_OK);
    cr_assert_eq(bj_ref_engine_create(&f, &m.graph, &err), BJ_OK);
    int32_t *ids;
    size_t n;
    const char *text = "And God said, Let there be light: and there was light.";
    cr_assert_eq(bj_tok_encode(m.tok, text, strlen(text), true, true, &ids, &n, &err), BJ_OK);
    cr_assert_gt(n, 8);
    int64_t V = e->n_vocab;
    float *l1 = malloc((size_t)V * sizeof *l1), *l2 = malloc((size_t)V * sizeof *l2);
    bj_kv_seq s;
    cr_assert_eq(bj_kv_seq_init(&s, e, &err), BJ_OK);
    int64_t run;
    cr_assert_eq(bj_kv_seq_prompt(&s, ids, 5, l1, &run, &err), BJ_OK);
    cr_expect_eq(run, 5);
    cr_assert_eq(bj_kv_seq_push(&s, ids[5], l1, &err), BJ_OK);
    cr_assert_eq(bj_kv_seq_prompt(&s, ids, (int64_t)n, l1, &run, &err), BJ_OK);
    cr_expect_eq(run, (int64_t)n - 6);
    cr_expect_eq(e->n_past, (int64_t)n);
    cr_assert_eq(bj_engine_forward(f, ids, (int64_t)n, false, l2, &err), BJ_OK);
    for (int64_t i = 0; i < V; i++) cr_assert_float_eq(l1[i], l2[i], 1e-3f + 1e-3f * fabsf(l2[i]), "logit %lld", (long long)i);
    /* the same prompt again: the last token runs again for its logits */
    cr_assert_eq(bj_kv_seq_prompt(&s, ids, (int64_t)n, l1, &run, &err), BJ_OK);
    cr_expect_eq(run, 1);
    /* diverging at token 3 */
    int32_t other[4] = { ids[0], ids[1], ids[2], ids[0] };
    cr_assert_eq(bj_kv_seq_prompt(&s, other, 4, l1, &run, &err), BJ_OK);
    cr_expect_eq(run, 1);
    cr_expect_eq(e->n_past, 4);
    bj_engine_reset(f);
    cr_assert_eq(bj_engine_forward(f, other, 4, false, l2, &err), BJ_OK);
    for (int64_t i = 0; i < V; i++) cr_assert_float_eq(l1[i], l2[i], 1e-3f + 1e-3f * fabsf(l2[i]));
    cr_expect_neq(bj_kv_seq_prompt(&s, ids, 0, l1, &run, &err), BJ_OK);
    bj_kv_seq_free(&s);
    free(l1);
    free(l2);
    free(ids);
    bj_engine_free(e);
    bj_engine_free(f);
    bj_model_free(&m);
}

/* ---- `bitjit chat` ------------------------------------------------------------------------------ */
Test(chat_cli, pipe_two_turns_equal_run, .timeout = 120) {
    const char *a = "In the beginning", *b = "And God said";
    char *r1 = bitjit_continuation(KJV, a, 24);
    char p2[4096];
    snprintf(p2, sizeof p2, "%s%s\n%s", a, r1, b);
    char *r2 = bitjit_continuation(KJV, p2, 24);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "printf '%%s\\n%%s\\n' '%s' '%s' | %s chat -m %s --temp 0 -n 24 -t 1", a, b, BJ_BITJIT_EXE,
             KJV);
    int st;
    char *out = sh_stdout(cmd, &st);
    cr_expect_eq(st, 0);
    char want[8192];
    snprintf(want, sizeof want, "%s\n%s\n", r1, r2);
    cr_expect_str_eq(out, want);
    free(out);
    /* the second turn runs only the new tokens: the conversation so far stays in the KV cache */
    snprintf(cmd, sizeof cmd, "{ printf '%%s\\n%%s\\n' '%s' '%s' | %s chat -m %s --temp 0 -n 24 -t 1 -v >/dev/null; }",
             a, b, BJ_BITJIT_EXE, KJV);
    char log[16384];
    cr_assert_eq(sh(cmd, log, sizeof log), 0, "%s", log);
    long long run1, cache1, run2, cache2;
    const char *l1 = strstr(log, " prompt tokens run ("), *l2 = l1 ? strstr(l1 + 1, " prompt tokens run (") : NULL;
    cr_assert(l1 && l2, "%s", log);
    while (l1 > log && l1[-1] != ' ') l1--;
    while (l2 > log && l2[-1] != ' ') l2--;
    cr_assert_eq(sscanf(l1, "%lld prompt tokens run (%lld in the cache)", &run1, &cache1), 2, "%s", log);
    cr_assert_eq(sscanf(l2, "%lld prompt tokens run (%lld in the cache)", &run2, &cache2), 2, "%s", log);
    cr_expect_gt(cache1, run1, "%s", log);
    cr_expect_lt(run2, 8, "%s", log); /* the conversation is > 28 tokens by then */
    cr_expect_gt(cache2, cache1 + run2, "%s", log);
    /* /reset forgets the conversation: the second answer is the first one again */
    snprintf(cmd, sizeof cmd, "printf '%%s\\n/reset\\n%%s\\n' '%s' '%s' | %s chat -m %s --temp 0 -n 24 -t 1", a, a,
             BJ_BITJIT_EXE, KJV);
    out = sh_stdout(cmd, &st);
    snprintf(want, sizeof want, "%s\n%s\n", r1, r1);
    cr_expect_str_eq(out, want);
    free(out);
    free(r1);
    free(r2);
}

/* A conversation longer than the context (context shifting, issue 23): the oldest turns are dropped,
 * the --system message is kept, and an answer that fills the context goes on to its -n tokens
 * instead of being cut; until the shift it is the answer a context large enough gives. */
Test(chat_cli, context_full_drops_oldest_turns, .timeout = 120) {
    char cmd[8192], log[16384];
    const char *in = "printf 'In the beginning\\nAnd God said\\n'";
    snprintf(cmd, sizeof cmd, "%s | %s chat -m %s --temp 0 -n 60 -t 1 -c 110", in, BJ_BITJIT_EXE, KJV);
    int st;
    char *small = sh_stdout(cmd, &st);
    cr_expect_eq(st, 0);
    snprintf(cmd, sizeof cmd, "%s | %s chat -m %s --temp 0 -n 60 -t 1", in, BJ_BITJIT_EXE, KJV);
    char *big = sh_stdout(cmd, &st);
    cr_expect_eq(st, 0);
    /* two answers each; the second one starts as with the full context */
    char *s2 = strchr(small, '\n'), *b2 = strchr(big, '\n');
    cr_assert(s2 && b2, "%s", small);
    size_t n1 = (size_t)(s2 - small);
    cr_expect_eq(n1, (size_t)(b2 - big));
    cr_expect_eq(strncmp(small, big, n1), 0, "first answers differ:\n%s\n%s", small, big);
    cr_expect_eq(strncmp(s2, b2, 60), 0, "second answers differ before the shift:\n%s\n%s", s2, b2);
    snprintf(cmd, sizeof cmd, "{ %s | %s chat -m %s --temp 0 -n 60 -t 1 -c 110 -v >/dev/null; }", in, BJ_BITJIT_EXE,
             KJV);
    cr_expect_eq(sh(cmd, log, sizeof log), 0, "%s", log);
    cr_expect(strstr(log, "context of 110 tokens is full: dropped the oldest 2 messages"), "%s", log);
    cr_expect(!strstr(log, "starting a new conversation"), "%s", log);
    const char *g1 = strstr(log, " generated"), *g2 = g1 ? strstr(g1 + 1, " generated") : NULL;
    cr_assert(g1 && g2, "%s", log);
    cr_expect(!strncmp(g1 - 3, " 60 generated", 13) && !strncmp(g2 - 3, " 60 generated", 13),
              "an answer was cut: %s", log);
    /* with a system message: it stays */
    snprintf(cmd, sizeof cmd, "{ %s | %s chat -m %s --temp 0 -n 60 -t 1 -c 120 --system 'The book of Genesis.' "
             ">/dev/null; }", in, BJ_BITJIT_EXE, KJV);
    cr_expect_eq(sh(cmd, log, sizeof log), 0, "%s", log);
    cr_expect(strstr(log, "dropped the oldest 2 messages (the system prompt is kept)"), "%s", log);
    free(small);
    free(big);
}

Test(chat_cli, help_lists_flags) {
    (void)tool;
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd, "%s chat --help", BJ_BITJIT_EXE);
    cr_assert_eq(sh(cmd, out, sizeof out), 0);
    const char *flags[] = { "--model", "--threads", "--engine", "--mcpu", "--mattr", "--cache-dir", "--no-cache",
                            "--verbose", "--quiet", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                            "--repeat-last-n", "--seed", "--n-predict", "--system", "--chat-template", "--help" };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) cr_expect(strstr(out, flags[i]), "no %s", flags[i]);
    snprintf(cmd, sizeof cmd, "%s chat --chat-template nonsense </dev/null", BJ_BITJIT_EXE);
    cr_expect_eq(sh(cmd, out, sizeof out), 2);
}

/* ---- on a terminal: libedit (issue 23), driven through tmux (tests/support/tmux.h) ------------------ */
/* The arrow keys edit the line instead of reaching the model as escape bytes, Up recalls earlier
 * lines, commands are answered by chat (an unknown one is an error, chat stays), Ctrl-D leaves. */
Test(chat_cli, terminal_line_editing_and_history, .timeout = 300) {
    char out[65536], cmd[8192], sock[64];
    char *r1 = bitjit_continuation(KJV, "In the beginning", 8);
    snprintf(cmd, sizeof cmd, "'%s' chat -m '%s' --temp 0 -n 8 -t 1 -q; echo CHAT-EXITED \\$?", BJ_BITJIT_EXE, KJV);
    tmux_start(sock, sizeof sock, "bjchat", cmd);
    cr_assert(pane_wait(sock, ">", 1, out, sizeof out), "no prompt:\n%s", out);
    /* typed with a missing letter put back after moving left and right */
    tmux_keys(sock, "'In the beginnin' Left Right g Enter");
    cr_expect(pane_wait(sock, r1, 1, out, sizeof out), "the arrow keys reached the model:\n%s\nwant: %s", out, r1);
    cr_expect(!strstr(out, "^[["), "%s", out);
    tmux_keys(sock, "/reset Enter");
    cr_assert(pane_wait(sock, ">", 3, out, sizeof out), "%s", out);
    /* Up twice: the line before /reset, the same answer from a new conversation */
    tmux_keys(sock, "Up Up Enter");
    cr_expect(pane_wait(sock, r1, 2, out, sizeof out), "history:\n%s\nwant twice: %s", out, r1);
    tmux_keys(sock, "/nope Enter");
    cr_expect(pane_wait(sock, "unknown command '/nope'", 1, out, sizeof out), "%s", out);
    cr_expect(pane_wait(sock, ">", 5, out, sizeof out), "chat did not stay after an unknown command:\n%s", out);
    tmux_keys(sock, "C-d");
    cr_expect(pane_wait(sock, "CHAT-EXITED 0", 1, out, sizeof out), "%s", out);
    cr_expect_eq(count_in(out, r1), 2, "%s", out);
    tmux_kill(sock);
    free(r1);
}

/* Over a pipe: commands are answered, not sent; "//" sends a leading '/'; an unknown command stops
 * chat with status 2 and a message naming it. */
Test(chat_cli, pipe_commands) {
    char cmd[8192], log[16384];
    char *r1 = bitjit_continuation(KJV, "In the beginning", 8);
    snprintf(cmd, sizeof cmd, "printf 'In the beginning\\n/help\\n/reset\\nIn the beginning\\n/exit\\nAnd God said\\n' |"
             " %s chat -m %s --temp 0 -n 8 -t 1", BJ_BITJIT_EXE, KJV);
    int st;
    char *out = sh_stdout(cmd, &st);
    cr_expect_eq(st, 0);
    char want[4096];
    snprintf(want, sizeof want, "%s\n%s\n", r1, r1);
    cr_expect_str_eq(out, want, "/help, /reset or /exit reached the model");
    free(out);
    snprintf(cmd, sizeof cmd, "{ printf '/help\\n' | %s chat -m %s -n 8 -t 1 >/dev/null; }", BJ_BITJIT_EXE, KJV);
    cr_expect_eq(sh(cmd, log, sizeof log), 0, "%s", log);
    cr_expect(strstr(log, "/reset") && strstr(log, "/exit"), "%s", log);
    snprintf(cmd, sizeof cmd, "printf 'In the beginning\\n/frobnicate\\nAnd God said\\n' | %s chat -m %s --temp 0 -n 8 -t 1",
             BJ_BITJIT_EXE, KJV);
    out = sh_stdout(cmd, &st);
    cr_expect_eq(st, 2);
    snprintf(want, sizeof want, "%s\n", r1);
    cr_expect_str_eq(out, want, "only the first line answered");
    free(out);
    cr_expect_neq(sh(cmd, log, sizeof log), 0);
    cr_expect(strstr(log, "unknown command '/frobnicate'"), "%s", log);
    free(r1);
}

/* Reads what is available from fd into buf (appending) until want bytes or the deadline. */
static size_t read_some(int fd, char *buf, size_t n, size_t cap, size_t want, double secs) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (n < want && n + 1 < cap) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        double left = secs - ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9);
        if (left <= 0) break;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        ssize_t k = read(fd, buf + n, cap - n - 1);
        if (k <= 0) break;
        n += (size_t)k;
    }
    buf[n] = 0;
    return n;
}

static pid_t spawn_chat(int *in_fd, int *out_fd, const char *n) {
    char *const argv[] = { "bitjit", "chat", "-m", (char *)KJV, "--temp", "0", "-t", "1", "-n", (char *)n,
                           NULL };
    return spawn_piped(BJ_BITJIT_EXE, argv, in_fd, out_fd, NULL);
}

/* Ctrl-C during an answer stops it (what was printed is the start of the full answer, and the
 * answer ends early); chat stays and leaves at end of input with status 0. Ctrl-C at the prompt
 * leaves with status 0. */
Test(chat_cli, sigint_stops_answer, .timeout = 120) {
    char *full = bitjit_continuation(KJV, "In the beginning", 480);
    int in, out;
    pid_t pid = spawn_chat(&in, &out, "480");
    cr_assert_eq(write(in, "In the beginning\n", 17), 17);
    static char buf[65536];
    size_t n = read_some(out, buf, 0, sizeof buf, 1, 60);
    cr_assert_gt(n, 0, "no answer");
    kill(pid, SIGINT);
    close(in); /* end of input once back at the prompt */
    n = read_some(out, buf, n, sizeof buf, sizeof buf, 60);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    cr_assert_gt(n, 1);
    cr_expect_eq(buf[n - 1], '\n');
    buf[n - 1] = 0;
    cr_expect(strlen(buf) < strlen(full), "the answer was not cut short (%zu of %zu bytes)", strlen(buf), strlen(full));
    cr_expect(!strncmp(full, buf, strlen(buf)), "interrupted answer is not a prefix of the full one");
    close(out);

    /* Ctrl-C at the prompt, after an answer */
    pid = spawn_chat(&in, &out, "1");
    cr_assert_eq(write(in, "Amen\n", 5), 5);
    n = read_some(out, buf, 0, sizeof buf, 1, 60);
    cr_assert_gt(n, 0);
    usleep(300 * 1000);
    kill(pid, SIGINT);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    close(in);
    close(out);
    free(full);
}
