/* runtime/chat.c -- chat templates recognised and rendered in C, and token sequences kept in an
 * engine's KV cache (see chat.h). */
#include "runtime/chat.h"

#include "frontends/gguf.h"

#include <ctype.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

const char *bj_chat_kind_name(bj_chat_kind k) {
    switch (k) {
    case BJ_CHAT_BITNET: return "bitnet";
    case BJ_CHAT_LLAMA3: return "llama3";
    case BJ_CHAT_CHATML: return "chatml";
    case BJ_CHAT_FALCON3: return "falcon3";
    default: return "plain";
    }
}

bj_chat_kind bj_chat_detect(const char *src, bool *known) {
    if (known) *known = true;
    if (!src || !*src || !strcmp(src, "plain") || !strcmp(src, "none")) return BJ_CHAT_PLAIN;
    if (!strcmp(src, "bitnet")) return BJ_CHAT_BITNET;
    if (!strcmp(src, "llama3")) return BJ_CHAT_LLAMA3;
    if (!strcmp(src, "chatml")) return BJ_CHAT_CHATML;
    if (!strcmp(src, "falcon3")) return BJ_CHAT_FALCON3;
    /* Jinja sources, by their markers (as llama.cpp's llm_chat_detect_template does). */
    if (strstr(src, "<|start_header_id|>") && strstr(src, "<|end_header_id|>")) return BJ_CHAT_LLAMA3;
    if (strstr(src, "<|im_start|>")) return BJ_CHAT_CHATML;
    /* Falcon3-*-Instruct(-1.58bit): <|system|>/<|user|>/<|assistant|> lines, eos after answers */
    if (strstr(src, "<|user|>") && strstr(src, "<|assistant|>") && strstr(src, "eos_token")) return BJ_CHAT_FALCON3;
    if (strstr(src, "<|eot_id|>") && (strstr(src, "Assistant: ") || strstr(src, "capitalize"))) return BJ_CHAT_BITNET;
    if (known) *known = false;
    return BJ_CHAT_PLAIN;
}

void bj_chat_template_init(bj_chat_template *t, bj_chat_kind kind, const char *bos) {
    memset(t, 0, sizeof *t);
    t->kind = kind;
    if (bos && strlen(bos) < sizeof t->bos) strcpy(t->bos, bos);
}

/* The Jinja source of a model's template, or NULL (malloc'd). */
static bj_status model_template_source(const bj_model *m, char **src, bj_error *err) {
    *src = NULL;
    if (m->gguf) {
        bj_gguf_str s;
        if (!bj_gguf_find_kv(m->gguf, "tokenizer.chat_template")) return BJ_OK;
        BJ_TRY(bj_gguf_get_str(m->gguf, "tokenizer.chat_template", false, &s, err));
        if (!(*src = strndup(s.s, (size_t)s.len))) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
        return BJ_OK;
    }
    if (!m->path) return BJ_OK;
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s", m->path);
    const char *d = bj_path_is_dir(m->path) == 1 ? m->path : dirname(dir);
    BJ_TRY(bj_path_join(path, sizeof path, d, "tokenizer_config.json", err));
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return BJ_OK; /* no config (or a library): no template */
    const json_t *ct = json_object_get(root, "chat_template");
    bj_status st = BJ_OK;
    if (json_is_string(ct)) {
        if (!(*src = strdup(json_string_value(ct)))) st = BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    } else if (json_is_array(ct)) {
        /* [{"name": "default", "template": "..."}, ...]: the default one */
        size_t i;
        const json_t *v;
        json_array_foreach(ct, i, v) {
            const char *name = json_string_value(json_object_get(v, "name"));
            const char *tmpl = json_string_value(json_object_get(v, "template"));
            if (tmpl && (!name || !strcmp(name, "default"))) {
                if (!(*src = strdup(tmpl))) st = BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
                break;
            }
        }
    } else if (ct && !json_is_null(ct)) {
        st = BJ_FAIL(err, BJ_E_FORMAT, "%s: chat_template is neither a string nor a list", path);
    }
    json_decref(root);
    return st;
}

bj_status bj_chat_template_for_model(bj_chat_template *t, const bj_model *m, bj_error *err) {
    char *src;
    BJ_TRY(model_template_source(m, &src, err));
    bool known;
    bj_chat_kind k = bj_chat_detect(src, &known);
    free(src);
    size_t len = 0;
    int32_t bos = m->tok ? bj_tok_bos(m->tok) : -1;
    const char *piece = bos >= 0 ? bj_tok_piece(m->tok, bos, &len) : NULL;
    char b[64] = "";
    if (piece && len < sizeof b) { memcpy(b, piece, len); b[len] = 0; }
    bj_chat_template_init(t, k, b);
    int32_t eos = m->tok ? bj_tok_eos(m->tok) : -1;
    piece = eos >= 0 ? bj_tok_piece(m->tok, eos, &len) : NULL;
    if (piece && len < sizeof t->eos) { memcpy(t->eos, piece, len); t->eos[len] = 0; }
    t->unknown = !known;
    return BJ_OK;
}

/* ---- rendering ------------------------------------------------------------------------------- */
typedef struct sbuf { char *p; size_t n, cap; bool oom; } sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (!b->oom && !bj_text_append(&b->p, &b->n, &b->cap, s, n, 256)) b->oom = true;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Jinja's |trim (Python str.strip): leading and trailing Unicode white space. */
static void sb_trimmed(sbuf *b, const char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n) {
        uint32_t cp;
        int l = bj_utf8_decode1(s + a, n - a, &cp);
        if (l <= 0 || !bj_utf8_is_white_space(cp)) break;
        a += (size_t)l;
    }
    size_t e = n;
    while (e > a) {
        size_t st = e - 1;
        while (st > a && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        uint32_t cp;
        int l = bj_utf8_decode1(s + st, e - st, &cp);
        if (l <= 0 || (size_t)l != e - st || !bj_utf8_is_white_space(cp)) break;
        e = st;
    }
    sb_add(b, s + a, e - a);
}

bj_status bj_chat_render(const bj_chat_template *t, const bj_chat_msg *msgs, size_t n, bool add_gen, char **out,
                         size_t *len, bj_error *err) {
    *out = NULL;
    if (len) *len = 0;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return BJ_FAIL(err, BJ_E_INVALID, "chat message %zu has no %s", i, msgs[i].role ? "content" : "role");
    sbuf b = { 0 };
    sb_add(&b, "", 0);
    switch (t->kind) {
    case BJ_CHAT_PLAIN:
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && strcmp(msgs[i].role, "assistant") != 0) sb_str(&b, "\n");
            sb_str(&b, msgs[i].content);
        }
        break;
    case BJ_CHAT_BITNET:
        sb_str(&b, t->bos);
        for (size_t i = 0; i < n; i++) {
            /* role | capitalize: first character upper case, the rest lower case */
            const char *r = msgs[i].role;
            for (size_t k = 0; r[k]; k++) {
                char c = (char)(k == 0 ? toupper((unsigned char)r[k]) : tolower((unsigned char)r[k]));
                sb_add(&b, &c, 1);
            }
            sb_str(&b, ": ");
            sb_trimmed(&b, msgs[i].content);
            sb_str(&b, "<|eot_id|>");
        }
        if (add_gen) sb_str(&b, "Assistant: ");
        break;
    case BJ_CHAT_LLAMA3:
        sb_str(&b, t->bos);
        for (size_t i = 0; i < n; i++) {
            sb_str(&b, "<|start_header_id|>");
            sb_str(&b, msgs[i].role);
            sb_str(&b, "<|end_header_id|>\n\n");
            sb_trimmed(&b, msgs[i].content);
            sb_str(&b, "<|eot_id|>");
        }
        if (add_gen) sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case BJ_CHAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            sb_str(&b, "<|im_start|>");
            sb_str(&b, msgs[i].role);
            sb_str(&b, "\n");
            sb_str(&b, msgs[i].content);
            sb_str(&b, "<|im_end|>\n");
        }
        if (add_gen) sb_str(&b, "<|im_start|>assistant\n");
        break;
    case BJ_CHAT_FALCON3:
        for (size_t i = 0; i < n; i++) {
            const char *r = msgs[i].role;
            bool asst = !strcmp(r, "assistant");
            if (!asst && strcmp(r, "system") && strcmp(r, "user")) continue; /* the template skips other roles */
            sb_str(&b, "<|");
            sb_str(&b, r);
            sb_str(&b, "|>\n");
            sb_str(&b, msgs[i].content);
            if (asst) sb_str(&b, t->eos);
            if (!asst || i + 1 < n) sb_str(&b, "\n");
        }
        if (add_gen) sb_str(&b, "<|assistant|>\n");
        break;
    }
    if (b.oom) { free(b.p); return BJ_FAIL(err, BJ_E_NOMEM, "out of memory rendering a chat"); }
    *out = b.p;
    if (len) *len = b.n;
    return BJ_OK;
}

bj_status bj_chat_tokenize(const bj_chat_template *t, const bj_tokenizer *tok, const bj_chat_msg *msgs, size_t n,
                           bool add_gen, int32_t **ids, size_t *n_ids, bj_error *err) {
    char *text;
    size_t len;
    BJ_TRY(bj_chat_render(t, msgs, n, add_gen, &text, &len, err));
    bool bos = t->kind == BJ_CHAT_PLAIN && bj_tok_add_bos(tok);
    bj_status st = bj_tok_encode(tok, text, len, bos, true, ids, n_ids, err);
    free(text);
    return st;
}

bj_status bj_chat_tokenize_fit(const bj_chat_template *t, const bj_tokenizer *tok, const bj_chat_msg *msgs, size_t n,
                               size_t n_keep, int64_t n_ctx, int64_t room, int32_t **ids, size_t *n_ids,
                               size_t *first, bj_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (first) *first = n_keep;
    if (n == 0 || n_keep >= n) return bj_chat_tokenize(t, tok, msgs, n, true, ids, n_ids, err);
    bj_chat_msg *kept = malloc(n * sizeof *kept);
    if (!kept) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    memcpy(kept, msgs, n_keep * sizeof *kept);
    size_t from = n_keep;
    bj_status st;
    for (;;) {
        memcpy(kept + n_keep, msgs + from, (n - from) * sizeof *kept);
        st = bj_chat_tokenize(t, tok, kept, n_keep + (n - from), true, ids, n_ids, err);
        if (st != BJ_OK || (int64_t)*n_ids + room <= n_ctx) break;
        if (from == n - 1) {
            st = BJ_FAIL(err, BJ_E_INVALID,
                         "%zu tokens with only the system prompt and the last message: %lld more do not fit the "
                         "context of %lld tokens", *n_ids, (long long)room, (long long)n_ctx);
            break;
        }
        free(*ids);
        *ids = NULL;
        do from++;
        while (from < n - 1 && strcmp(msgs[from].role, "user") != 0);
    }
    free(kept);
    if (st != BJ_OK) { free(*ids); *ids = NULL; *n_ids = 0; return st; }
    if (first) *first = from;
    return BJ_OK;
}

/* The id of a special token written as text, or -1. */
static int32_t special_id(const bj_tokenizer *tok, const char *s) {
    int32_t *ids = NULL;
    size_t n = 0;
    bj_error err = { 0 };
    int32_t id = -1;
    if (bj_tok_encode(tok, s, strlen(s), false, true, &ids, &n, &err) == BJ_OK && n == 1 &&
        bj_tok_is_special(tok, ids[0]))
        id = ids[0];
    free(ids);
    return id;
}

int bj_chat_stop_tokens(const bj_chat_template *t, const bj_tokenizer *tok, int32_t *out, int cap) {
    int n = 0;
    int32_t eos = bj_tok_eos(tok);
    if (eos >= 0 && n < cap) out[n++] = eos;
    const char *eot = t->kind == BJ_CHAT_BITNET || t->kind == BJ_CHAT_LLAMA3 ? "<|eot_id|>"
                      : t->kind == BJ_CHAT_CHATML                          ? "<|im_end|>"
                                                                           : NULL;
    int32_t id = eot ? special_id(tok, eot) : -1;
    if (id >= 0 && id != eos && n < cap) out[n++] = id;
    return n;
}

int bj_chat_missing_tokens(const bj_chat_template *t, const bj_tokenizer *tok, char *buf, size_t cap) {
    static const char *const bitnet[] = { "<|eot_id|>", NULL };
    static const char *const llama3[] = { "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", NULL };
    static const char *const chatml[] = { "<|im_start|>", "<|im_end|>", NULL };
    const char *const *marks = t->kind == BJ_CHAT_BITNET ? bitnet
                               : t->kind == BJ_CHAT_LLAMA3 ? llama3
                               : t->kind == BJ_CHAT_CHATML ? chatml
                                                           : NULL;
    int n = 0;
    size_t used = 0;
    if (cap) buf[0] = 0;
    for (size_t i = 0; marks && marks[i]; i++) {
        if (special_id(tok, marks[i]) >= 0) continue;
        n++;
        int w = snprintf(buf + used, cap > used ? cap - used : 0, "%s%s", used ? " " : "", marks[i]);
        if (w > 0 && used + (size_t)w < cap) used += (size_t)w;
    }
    return n;
}

/* ---- token sequences in the KV cache ----------------------------------------------------------- */
bj_status bj_kv_seq_init(bj_kv_seq *s, bj_engine *e, bj_error *err) {
    memset(s, 0, sizeof *s);
    s->e = e;
    s->cap = e->max_seq > 0 ? e->max_seq : 1;
    if (!(s->toks = malloc((size_t)s->cap * sizeof *s->toks))) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    bj_engine_reset(e);
    return BJ_OK;
}

void bj_kv_seq_free(bj_kv_seq *s) {
    free(s->toks);
    memset(s, 0, sizeof *s);
}

void bj_kv_seq_clear(bj_kv_seq *s) {
    s->n = 0;
    bj_engine_reset(s->e);
}

bj_status bj_kv_seq_prompt(bj_kv_seq *s, const int32_t *ids, int64_t n, float *logits, int64_t *n_run,
                           bj_error *err) {
    if (n_run) *n_run = 0;
    if (n <= 0) return BJ_FAIL(err, BJ_E_INVALID, "empty prompt: nothing to condition on");
    if (n > s->e->max_seq)
        return BJ_FAIL(err, BJ_E_INVALID, "prompt of %lld tokens does not fit the context of %lld", (long long)n,
                       (long long)s->e->max_seq);
    int64_t keep = 0;
    while (keep < s->n && keep < n - 1 && s->toks[keep] == ids[keep]) keep++;
    bj_engine_truncate(s->e, keep);
    s->n = keep;
    BJ_TRY(bj_engine_forward(s->e, ids + keep, n - keep, false, logits, err));
    memcpy(s->toks + keep, ids + keep, (size_t)(n - keep) * sizeof *ids);
    s->n = n;
    if (n_run) *n_run = n - keep;
    return BJ_OK;
}

bj_status bj_kv_seq_push(bj_kv_seq *s, int32_t tok, float *logits, bj_error *err) {
    BJ_TRY(bj_engine_forward(s->e, &tok, 1, false, logits, err));
    s->toks[s->n++] = tok;
    return BJ_OK;
}
