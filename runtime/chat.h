/* runtime/chat.h -- chat templates and conversations kept in an engine's KV cache.
 *
 * A model may carry a chat template as a Jinja string (tokenizer_config.json `chat_template`,
 * GGUF `tokenizer.chat_template`). bitjit has no Jinja engine: it recognises the templates it
 * knows by their markers and renders them in C.
 *
 *   bitnet  BitNet b1.58 2B4T (formats.md §3.5): BOS, then per message
 *           "<Role>: <content, trimmed><|eot_id|>" (role capitalised), then "Assistant: "
 *   llama3  LLaMA-3 instruct: BOS, then per message
 *           "<|start_header_id|>role<|end_header_id|>\n\n<content, trimmed><|eot_id|>", then
 *           "<|start_header_id|>assistant<|end_header_id|>\n\n"
 *   chatml  "<|im_start|>role\n<content><|im_end|>\n" per message, then "<|im_start|>assistant\n"
 *   plain   no template (the bundled kjv models): the contents as one text, each message but an
 *           assistant's starting on a new line; an assistant message continues the text before
 *           it, so a reply is a plain continuation.
 *
 * A bj_kv_seq remembers which tokens an engine's KV cache holds, so that a new prompt which
 * starts with them (the conversation so far) only runs the tokens that are new. */
#ifndef BJ_RT_CHAT_H
#define BJ_RT_CHAT_H

#include "runtime/runtime.h"

typedef enum bj_chat_kind { BJ_CHAT_PLAIN, BJ_CHAT_BITNET, BJ_CHAT_LLAMA3, BJ_CHAT_CHATML } bj_chat_kind;

typedef struct bj_chat_msg {
    const char *role;    /* "system", "user", "assistant", ... */
    const char *content; /* UTF-8, NUL-terminated */
} bj_chat_msg;

typedef struct bj_chat_template {
    bj_chat_kind kind;
    bool unknown;  /* the model has a template bitjit does not recognise (rendered as plain) */
    char bos[64];  /* the text of the BOS token the template writes; "" when the tokenizer has none */
} bj_chat_template;

const char *bj_chat_kind_name(bj_chat_kind k);
/* A template from its Jinja source (NULL or "" = none: plain) or from one of the names above.
 * *known (may be NULL) is false for a non-empty source that is not recognised (kind plain). */
bj_chat_kind bj_chat_detect(const char *jinja_or_name, bool *known);
/* The template of a loaded model: the GGUF key, else tokenizer_config.json next to the model's
 * files (none for a bitjitc library). bos comes from the tokenizer. */
bj_status bj_chat_template_for_model(bj_chat_template *t, const bj_model *m, bj_error *err);
/* The template of a kind, with bos the text of the tokenizer's BOS (NULL: none). */
void bj_chat_template_init(bj_chat_template *t, bj_chat_kind kind, const char *bos);

/* Renders messages; with add_generation_prompt, ends with the opening of an assistant reply.
 * *out is malloc'd and NUL-terminated. Fails on a message without role or content. */
bj_status bj_chat_render(const bj_chat_template *t, const bj_chat_msg *msgs, size_t n, bool add_generation_prompt,
                         char **out, size_t *len, bj_error *err);
/* Renders and tokenizes: special tokens written by the template are matched; BOS is added by the
 * tokenizer (if it adds one) only for plain, as `bitjit run` does; the other templates write it. */
bj_status bj_chat_tokenize(const bj_chat_template *t, const bj_tokenizer *tok, const bj_chat_msg *msgs, size_t n,
                           bool add_generation_prompt, int32_t **ids, size_t *n_ids, bj_error *err);
/* Context shifting: tokenizes msgs[0..n) as bj_chat_tokenize does, but when that leaves fewer
 * than room of n_ctx positions free, drops the oldest turns after the first n_keep messages (the
 * system prompt, always kept) until it does: a turn is a message and what follows it up to the
 * next user message, so a kept conversation goes on starting with a user's message. The last
 * message is never dropped. *first (may be NULL) gets the index of the first message kept after
 * n_keep (n_keep: none dropped); the tokens are those of msgs[0..n_keep) + msgs[*first..n).
 * Fails (BJ_E_INVALID, saying how many tokens) when even that leaves too little room. */
bj_status bj_chat_tokenize_fit(const bj_chat_template *t, const bj_tokenizer *tok, const bj_chat_msg *msgs, size_t n,
                               size_t n_keep, int64_t n_ctx, int64_t room, int32_t **ids, size_t *n_ids,
                               size_t *first, bj_error *err);
/* The tokens that end a reply: EOS, and the template's end-of-turn token (<|eot_id|>, <|im_end|>)
 * when the tokenizer has it. Returns how many were written (at most cap). */
int bj_chat_stop_tokens(const bj_chat_template *t, const bj_tokenizer *tok, int32_t *out, int cap);
/* The markers the template writes ("<|im_start|>", ...) that the vocabulary has no special token
 * for, space-separated into buf ("" when it has them all): such a template's turns reach the
 * model as plain text it was not trained on. Returns how many are missing. */
int bj_chat_missing_tokens(const bj_chat_template *t, const bj_tokenizer *tok, char *buf, size_t cap);

/* ---- a token sequence kept in an engine's KV cache ---------------------------------------- */
typedef struct bj_kv_seq {
    bj_engine *e;
    int32_t *toks; /* the tokens at positions 0 .. n-1 of e's cache (n == e->n_past) */
    int64_t n, cap;
} bj_kv_seq;

/* Starts empty (resets e). */
bj_status bj_kv_seq_init(bj_kv_seq *s, bj_engine *e, bj_error *err);
void bj_kv_seq_free(bj_kv_seq *s);
void bj_kv_seq_clear(bj_kv_seq *s);
/* Makes the cache hold ids[0..n): keeps the longest common prefix with what it holds (at most
 * n-1 tokens, so the last token runs and gives logits), drops the rest and runs the remainder in
 * one step. logits gets the last token's f32[n_vocab]; *n_run (may be NULL) how many tokens ran.
 * Fails without changing anything when n is 0 or more than the context. */
bj_status bj_kv_seq_prompt(bj_kv_seq *s, const int32_t *ids, int64_t n, float *logits, int64_t *n_run,
                           bj_error *err);
/* Runs one more token at the end. */
bj_status bj_kv_seq_push(bj_kv_seq *s, int32_t tok, float *logits, bj_error *err);

#endif
