/* runtime/server/server_req.c -- reading an OpenAI completions / chat completions request: JSON,
 * the type and range of every field bitjit knows (null is the same as absent), the prompt
 * tokenized and checked against the context. A field that would change the answer in a way
 * bitjit does not implement (n > 1, response_format json_object, tools, logit_bias, penalties)
 * gets a 400 that says so, never a silent ignore; fields without effect on the answer (user,
 * metadata, store, ...) are ignored. */
#include "runtime/server/server_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(srv_reqerr *e, int status, const char *param, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->param = param;
    e->code = code;
    return status;
}

/* The field, or NULL when absent or null. */
static json_t *field(json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    return json_is_null(v) ? NULL : v;
}

static int get_number(json_t *root, const char *key, double lo, double hi, float *out, srv_reqerr *e) {
    json_t *v = field(root, key);
    if (!v) return 0;
    if (!json_is_number(v)) return fail(e, 400, key, "invalid_type", "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return fail(e, 400, key, "invalid_value", "'%s' must be in [%g, %g]", key, lo, hi);
    *out = (float)d;
    return 0;
}

static int get_int(json_t *root, const char *key, long long lo, long long hi, long long *out, bool *set,
                   srv_reqerr *e) {
    json_t *v = field(root, key);
    if (!v) return 0;
    if (!json_is_integer(v)) return fail(e, 400, key, "invalid_type", "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return fail(e, 400, key, "invalid_value", "'%s' must be in [%lld, %lld]", key, lo, hi);
    *out = x;
    if (set) *set = true;
    return 0;
}

/* A chat message's content: a string, or a list of {"type": "text", "text": ...} parts (joined). */
static int message_content(srv_req *r, json_t *c, const char **out, srv_reqerr *e) {
    if (!c) { *out = ""; return 0; }
    if (json_is_string(c)) {
        if (strlen(json_string_value(c)) != json_string_length(c))
            return fail(e, 400, "messages", "invalid_value",
                        "a message's content holds a NUL character (\\u0000): chat messages cannot hold one");
        *out = json_string_value(c);
        return 0;
    }
    if (!json_is_array(c)) return fail(e, 400, "messages", "invalid_type", "a message's content must be a string or a list of text parts");
    size_t len = 0, i;
    json_t *p;
    json_array_foreach(c, i, p) {
        json_t *t = json_object_get(p, "text");
        if (!json_is_object(p) || !json_is_string(json_object_get(p, "type")) || !json_is_string(t) ||
            strcmp(json_string_value(json_object_get(p, "type")), "text") != 0)
            return fail(e, 400, "messages", "invalid_type", "a content part must be {\"type\": \"text\", \"text\": string}");
        if (strlen(json_string_value(t)) != json_string_length(t))
            return fail(e, 400, "messages", "invalid_value",
                        "a message's content holds a NUL character (\\u0000): chat messages cannot hold one");
        len += json_string_length(t);
    }
    char *s = malloc(len + 1), **o = realloc(r->owned, (r->n_owned + 1) * sizeof *o);
    if (!s || !o) { free(s); if (o) r->owned = o; return fail(e, 500, NULL, NULL, "out of memory"); }
    r->owned = o;
    r->owned[r->n_owned++] = s;
    size_t at = 0;
    json_array_foreach(c, i, p) {
        json_t *t = json_object_get(p, "text");
        memcpy(s + at, json_string_value(t), json_string_length(t));
        at += json_string_length(t);
    }
    s[at] = 0;
    *out = s;
    return 0;
}

static int parse_messages(srv_req *r, json_t *root, srv_reqerr *e) {
    json_t *ms = field(root, "messages");
    if (!ms) return fail(e, 400, "messages", "missing_required_parameter", "'messages' is required");
    if (!json_is_array(ms) || json_array_size(ms) == 0)
        return fail(e, 400, "messages", "invalid_type", "'messages' must be a non-empty list");
    if (!(r->msgs = calloc(json_array_size(ms), sizeof *r->msgs))) return fail(e, 500, NULL, NULL, "out of memory");
    size_t i;
    json_t *m;
    json_array_foreach(ms, i, m) {
        json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role))
            return fail(e, 400, "messages", "invalid_type", "messages[%zu] must be an object with a string 'role'", i);
        const char *rs = json_string_value(role);
        if (strlen(rs) != json_string_length(role)) rs = "";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "developer"))
            return fail(e, 400, "messages", "invalid_value",
                        "messages[%zu].role must be system, developer, user or assistant", i);
        json_t *c = field(m, "content");
        if (!c && strcmp(rs, "assistant") != 0)
            return fail(e, 400, "messages", "invalid_type", "messages[%zu] has no content", i);
        const char *content = "";
        int st = message_content(r, c, &content, e);
        if (st) return st;
        r->msgs[i] = (bj_chat_msg){ strcmp(rs, "developer") ? rs : "system", content };
        r->n_msgs = i + 1;
    }
    return 0;
}

static int parse_stop(srv_req *r, json_t *root, srv_reqerr *e) {
    json_t *v = field(root, "stop");
    if (!v) return 0;
    json_t *one[1] = { v };
    size_t n = 1;
    json_t **list = one;
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > SRV_MAX_STOP) return fail(e, 400, "stop", "invalid_value", "'stop' has more than %d strings", SRV_MAX_STOP);
        list = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = list ? list[i] : json_array_get(v, i);
        if (!json_is_string(s)) return fail(e, 400, "stop", "invalid_type", "'stop' must be a string or a list of strings");
        size_t len = json_string_length(s);
        if (len == 0) continue;
        if (len > SRV_MAX_STOP_LEN || strlen(json_string_value(s)) != len)
            return fail(e, 400, "stop", "invalid_value", "a stop string must be at most %d bytes, without NUL", SRV_MAX_STOP_LEN);
        r->stop[r->n_stop++] = json_string_value(s);
    }
    return 0;
}

/* The fields that shape the reply (stream, stream_options) and those refused rather than
 * ignored (n, best_of, a response_format other than text, tools, suffix, ...). */
static int parse_shape(srv_req *r, json_t *root, srv_reqerr *e) {
    json_t *v;
    int st;
    if ((v = field(root, "model")) && !json_is_string(v))
        return fail(e, 400, "model", "invalid_type", "'model' must be a string");
    if ((v = field(root, "stream")) && !json_is_boolean(v))
        return fail(e, 400, "stream", "invalid_type", "'stream' must be true or false");
    r->stream = v && json_is_true(v);
    long long n = 1;
    if ((st = get_int(root, "n", 1, 128, &n, NULL, e))) return st;
    if (n != 1)
        return fail(e, 400, "n", "unsupported_value", "'n' > 1 is not supported: send %lld requests instead", n);
    if ((st = get_int(root, "best_of", 1, 128, &n, NULL, e))) return st;
    if (n != 1) return fail(e, 400, "best_of", "unsupported_value", "'best_of' > 1 is not supported");
    if ((v = field(root, "stream_options"))) {
        json_t *u = json_object_get(v, "include_usage");
        if (!json_is_object(v) || (u && !json_is_null(u) && !json_is_boolean(u)))
            return fail(e, 400, "stream_options", "invalid_type",
                        "'stream_options' must be {\"include_usage\": true or false}");
        if (!r->stream)
            return fail(e, 400, "stream_options", "invalid_value", "'stream_options' is only allowed with \"stream\": true");
        r->include_usage = json_is_true(u);
    }
    if ((v = field(root, "response_format"))) {
        json_t *t = json_object_get(v, "type");
        if (!json_is_object(v) || !json_is_string(t))
            return fail(e, 400, "response_format", "invalid_type", "'response_format' must be {\"type\": ...}");
        if (strcmp(json_string_value(t), "text") != 0)
            return fail(e, 400, "response_format", "unsupported_value",
                        "response_format type '%s' is not supported: bitjit generates free text only (type 'text')",
                        json_string_value(t));
    }
    static const char *const unsupported[] = { "tools", "functions", "logit_bias" };
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++) {
        v = field(root, unsupported[i]);
        if (v && !(json_is_array(v) && json_array_size(v) == 0) && !(json_is_object(v) && json_object_size(v) == 0))
            return fail(e, 400, unsupported[i], "unsupported_value", "'%s' is not supported by this server", unsupported[i]);
    }
    if ((v = field(root, "suffix")) && !(json_is_string(v) && json_string_length(v) == 0))
        return fail(e, 400, "suffix", "unsupported_value", "'suffix' (insertion) is not supported by this server");
    return 0;
}

/* Log-probabilities: chat "logprobs": bool + "top_logprobs": 0..20; completions "logprobs":
 * 0..5 (and "echo", which cannot go with them). */
static int parse_logprobs(srv_req *r, json_t *root, srv_reqerr *e) {
    json_t *v;
    int st;
    long long x;
    bool set = false;
    if (r->chat) {
        if ((v = field(root, "logprobs")) && !json_is_boolean(v))
            return fail(e, 400, "logprobs", "invalid_type", "'logprobs' must be true or false");
        r->logprobs = v && json_is_true(v);
        if ((st = get_int(root, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &x, &set, e))) return st;
        if (set && x > 0 && !r->logprobs)
            return fail(e, 400, "top_logprobs", "invalid_value", "'top_logprobs' needs \"logprobs\": true");
        r->n_top = set ? (int)x : 0;
        return 0;
    }
    if ((st = get_int(root, "logprobs", 0, 5, &x, &set, e))) return st;
    r->logprobs = set, r->n_top = set ? (int)x : 0;
    if ((v = field(root, "echo")) && !json_is_boolean(v))
        return fail(e, 400, "echo", "invalid_type", "'echo' must be true or false");
    r->echo = v && json_is_true(v);
    if (r->echo && r->logprobs)
        return fail(e, 400, "echo", "unsupported_value",
                    "'echo' with 'logprobs' is not supported: the prompt's log-probabilities are not computed");
    return 0;
}

/* An integer field into *out when it is there (each its own "set": a field given before must not
 * make an absent one look given). */
static int get_int_if(json_t *root, const char *key, long long lo, long long hi, int32_t *out, srv_reqerr *e) {
    long long x = 0;
    bool set = false;
    int st = get_int(root, key, lo, hi, &x, &set, e);
    if (!st && set) *out = (int32_t)x;
    return st;
}

/* Sampling (the server's defaults, then the request's fields), the seed and max_tokens. */
static int parse_sampling(bj_server *s, srv_req *r, json_t *root, srv_reqerr *e) {
    int st;
    r->sp = s->o.sampling;
    if ((st = get_number(root, "temperature", 0, 100, &r->sp.temp, e))) return st;
    if ((st = get_number(root, "top_p", 0, 1, &r->sp.top_p, e))) return st;
    if ((st = get_number(root, "min_p", 0, 1, &r->sp.min_p, e))) return st;
    if ((st = get_number(root, "repetition_penalty", 0.01, 100, &r->sp.repeat_penalty, e))) return st;
    if ((st = get_number(root, "repeat_penalty", 0.01, 100, &r->sp.repeat_penalty, e))) return st;
    static const char *const penalties[] = { "presence_penalty", "frequency_penalty" };
    for (int i = 0; i < 2; i++) {
        float pen = 0;
        if ((st = get_number(root, penalties[i], -2, 2, &pen, e))) return st;
        if (pen != 0)
            return fail(e, 400, penalties[i], "unsupported_value",
                        "'%s' is not supported (only 0); 'repetition_penalty' is", penalties[i]);
    }
    if ((st = get_int_if(root, "top_k", 0, INT32_MAX, &r->sp.top_k, e))) return st;
    if ((st = get_int_if(root, "repeat_last_n", 0, 1 << 20, &r->sp.repeat_last_n, e))) return st;
    long long x;
    bool set = false;
    if ((st = get_int(root, "seed", INT64_MIN, INT64_MAX, &x, &set, e))) return st;
    if (set) r->sp.seed = (uint64_t)x;
    else r->sp.seed = s->o.sampling.seed + __atomic_add_fetch(&s->seed_ctr, 1, __ATOMIC_RELAXED) * 0x9E3779B97F4A7C15ull;
    set = false;
    long long mt = 0;
    if ((st = get_int(root, "max_tokens", 0, INT32_MAX, &mt, &set, e))) return st;
    if (!set && (st = get_int(root, "max_completion_tokens", 0, INT32_MAX, &mt, &set, e))) return st;
    r->max_tokens = set ? mt : -1;
    return 0;
}

static int parse_fields(bj_server *s, srv_req *r, json_t *root, srv_reqerr *e) {
    int st;
    if ((st = parse_shape(r, root, e)) || (st = parse_logprobs(r, root, e)) || (st = parse_sampling(s, r, root, e)))
        return st;
    return parse_stop(r, root, e);
}

int srv_req_parse(bj_server *s, bool chat, const char *body, size_t n, srv_req *r, srv_reqerr *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    json_error_t je;
    /* \u0000 is valid JSON: a completion prompt may hold it (it is tokenized as a byte) */
    r->root = json_loadb(body, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!r->root) return fail(e, 400, NULL, "invalid_json", "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    if (!json_is_object(r->root)) return fail(e, 400, NULL, "invalid_json", "the body must be a JSON object");
    int st = parse_fields(s, r, r->root, e);
    if (st) return st;

    bj_error err = { 0 };
    size_t n_ids = 0;
    bj_status bs;
    if (chat) {
        if ((st = parse_messages(r, r->root, e))) return st;
        pthread_mutex_lock(&s->tok_mu);
        /* Context shifting: the oldest turns after the system messages go when the conversation
         * leaves less than max_tokens (else the default answer length, at most a quarter of the
         * context) free. */
        size_t n_sys = 0;
        while (n_sys < r->n_msgs && !strcmp(r->msgs[n_sys].role, "system")) n_sys++;
        int64_t want = r->max_tokens >= 0 ? r->max_tokens : s->o.n_predict < s->n_ctx / 4 ? s->o.n_predict : s->n_ctx / 4;
        bs = bj_chat_tokenize_fit(&s->tmpl, s->tok, r->msgs, r->n_msgs, n_sys, s->n_ctx, want > 1 ? want : 1, &r->ids,
                                  &n_ids, NULL, &err);
        if (bs == BJ_E_INVALID) /* does not fit even so: the whole conversation, for the checks below to name */
            bs = bj_chat_tokenize(&s->tmpl, s->tok, r->msgs, r->n_msgs, true, &r->ids, &n_ids, &err);
        pthread_mutex_unlock(&s->tok_mu);
    } else {
        json_t *p = field(r->root, "prompt");
        if (json_is_array(p)) {
            if (json_array_size(p) != 1 || !json_is_string(json_array_get(p, 0)))
                return fail(e, 400, "prompt", "invalid_value", "'prompt' as a list must hold exactly one string");
            p = json_array_get(p, 0);
        }
        if (!p) return fail(e, 400, "prompt", "missing_required_parameter", "'prompt' is required");
        if (!json_is_string(p)) return fail(e, 400, "prompt", "invalid_type", "'prompt' must be a string or a list of one string");
        r->prompt = json_string_value(p);
        r->n_prompt = json_string_length(p);
        pthread_mutex_lock(&s->tok_mu);
        bs = bj_tok_encode(s->tok, json_string_value(p), json_string_length(p), bj_tok_add_bos(s->tok), true, &r->ids,
                           &n_ids, &err);
        pthread_mutex_unlock(&s->tok_mu);
    }
    if (bs != BJ_OK) return fail(e, 400, chat ? "messages" : "prompt", "invalid_value", "%s", err.msg);
    r->n_ids = (int64_t)n_ids;
    if (r->n_ids == 0) return fail(e, 400, "prompt", "invalid_value", "the prompt is empty and the model adds no BOS token");
    if (r->n_ids >= s->n_ctx)
        return fail(e, 400, chat ? "messages" : "prompt", "context_length_exceeded",
                    "the prompt is %lld tokens: the context is %lld tokens, with room needed for at least one more",
                    (long long)r->n_ids, (long long)s->n_ctx);
    int64_t room = s->n_ctx - r->n_ids;
    if (r->max_tokens > room)
        return fail(e, 400, "max_tokens", "context_length_exceeded",
                    "%lld prompt tokens + max_tokens %lld exceed the context of %lld tokens", (long long)r->n_ids,
                    (long long)r->max_tokens, (long long)s->n_ctx);
    if (r->max_tokens < 0) r->max_tokens = s->o.n_predict < room ? s->o.n_predict : room;
    return 0;
}

void srv_req_free(srv_req *r) {
    for (size_t i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->owned);
    free(r->msgs);
    free(r->ids);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}
