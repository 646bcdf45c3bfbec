/* frontends/tok_tiktoken.c -- the tiktoken rank file of LLaMA-3 (BitNet's gpu/tokenizer.model)
 * into the same bj_tokenizer the tokenizer.json loader fills, so encoding and decoding are
 * tok_bpe.c's (formats.md §2.4, "Equivalent rank form").
 *
 * The file has one line per token, "base64(bytes) rank\n", and the ranks must run 0, 1, 2, ...
 * in file order (so id = rank = line index); anything else is BJ_E_FORMAT naming the line. The
 * vocabulary needs all 256 single bytes. The tokenizer gets the LLaMA-3 split regex, ignore_merges
 * (tiktoken looks a whole pre-token up before merging), and LLaMA-3's 256 special tokens numbered
 * from the line count as gpu/tokenizer.py does (<|begin_of_text|> = BOS, <|end_of_text|> = EOS,
 * add_bos on): special added tokens, matched in text only with parse_special.
 *
 * tiktoken's BPE merges the adjacent pair whose concatenated bytes have the lowest rank (ties:
 * the leftmost). The merge table built here holds, for every token T and every split T = A + B
 * where A and B are both tokens, (A, B) -> (rank T, T). tok_bpe.c merges the lowest-ranked pair
 * of that table (ties: leftmost), and a pair is in the table exactly when its concatenation is a
 * token, so the two procedures take the same steps. (For LLaMA-3 these are the 280147 merges of
 * its tokenizer.json.) */
#include "frontends/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>

#define TT_N_SPECIAL 256

/* formats.md §2.4; gpu/tokenizer.py's pat_str. */
static const char tt_llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct tt_load {
    bj_tokenizer *t;
    const char *path;
    const char *buf;
    size_t len;
    int32_t n_base; /* lines = base tokens */
    bj_error *err;
} tt_load;

/* ---- base64 ------------------------------------------------------------------------------ */

static int tt_b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard padded base64 ("=" only to fill the last quad). out needs n / 4 * 3 bytes. */
static bool tt_b64_decode(const char *s, size_t n, char *out, size_t *out_len) {
    size_t k = 0;
    if (n == 0 || n % 4) return false;
    for (size_t i = 0; i < n; i += 4) {
        int pad = (s[i + 3] == '=') + (s[i + 3] == '=' && s[i + 2] == '=');
        if (pad && i + 4 != n) return false;
        int v[4] = { tt_b64_value(s[i]), tt_b64_value(s[i + 1]), pad == 2 ? 0 : tt_b64_value(s[i + 2]),
                     pad ? 0 : tt_b64_value(s[i + 3]) };
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) return false;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[k++] = (char)(w >> 16);
        if (pad < 2) out[k++] = (char)(w >> 8 & 0xFF);
        if (pad < 1) out[k++] = (char)(w & 0xFF);
    }
    *out_len = k;
    return true;
}

/* ---- the rank lines ------------------------------------------------------------------------ */

/* Counts the lines; the file must be non-empty and end with a newline (else it is truncated). */
static bj_status tt_count_lines(tt_load *L) {
    size_t n = 0;
    for (size_t i = 0; i < L->len; i++) n += L->buf[i] == '\n';
    if (L->len == 0) return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: empty file (expected \"base64 rank\" lines)", L->path);
    if (L->buf[L->len - 1] != '\n')
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: line %zu: truncated (the file does not end with a newline)", L->path,
                       n + 1);
    if (n > INT32_MAX / 4 - TT_N_SPECIAL)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: %zu lines is too many tokens", L->path, n);
    L->n_base = (int32_t)n;
    return BJ_OK;
}

/* The rank after the space: decimal digits up to the end of the line. */
static bj_status tt_rank(tt_load *L, size_t line, const char *s, size_t n, int32_t id) {
    uint64_t r = 0;
    bool ok = n > 0 && n <= 10;
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        r = r * 10 + (uint64_t)(s[i] - '0');
    }
    if (!ok)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: line %zu: rank \"%.*s\" is not a decimal number", L->path, line,
                       (int)(n > 32 ? 32 : n), s);
    if (r != (uint64_t)id)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: line %zu: rank %llu out of order (expected %d: ranks must run 0, 1, "
                       "2, ... in file order, without repeats or gaps)", L->path, line, (unsigned long long)r, (int)id);
    return BJ_OK;
}

/* Line id + 1, [s, s + n) without its newline: the token's bytes become piece[id]. */
static bj_status tt_line(tt_load *L, int32_t id, const char *s, size_t n) {
    bj_tokenizer *t = L->t;
    size_t line = (size_t)id + 1, len = 0;
    const char *sp = memchr(s, ' ', n);
    if (!sp)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: line %zu: expected \"base64 rank\", got \"%.*s\"", L->path, line,
                       (int)(n > 64 ? 64 : n), s);
    size_t bn = (size_t)(sp - s);
    char *p = bj_arena_alloc(&t->arena, bn / 4 * 3 + 1, 1);
    if (!p) return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
    if (!tt_b64_decode(s, bn, p, &len))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: line %zu: bad base64 \"%.*s\"", L->path, line,
                       (int)(bn > 64 ? 64 : bn), s);
    BJ_TRY(tt_rank(L, line, sp + 1, n - bn - 1, id));
    p[len] = 0;
    int32_t dup = tok_strmap_get(&t->words, p, len);
    if (dup >= 0)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: line %zu: the token repeats line %d", L->path, line, (int)dup + 1);
    tok_strmap_put(&t->words, p, len, id);
    t->piece[id] = p;
    t->piece_len[id] = (uint32_t)len;
    t->flags[id] = TOK_F_PRESENT | TOK_F_VOCAB | TOK_F_BYTELEVEL;
    return BJ_OK;
}

static bj_status tt_alloc(tt_load *L) {
    bj_tokenizer *t = L->t;
    size_t n = (size_t)L->n_base + TT_N_SPECIAL;
    t->n_vocab = (int32_t)n;
    t->flags = bj_arena_alloc(&t->arena, n, 1);
    t->piece = bj_arena_alloc(&t->arena, n * sizeof *t->piece, 8);
    t->piece_len = bj_arena_alloc(&t->arena, n * sizeof *t->piece_len, 8);
    t->added = bj_arena_alloc(&t->arena, TT_N_SPECIAL * sizeof *t->added, 8);
    if (!t->flags || !t->piece || !t->piece_len || !t->added ||
        !tok_strmap_init_arena(&t->words, (size_t)L->n_base, &t->arena))
        return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory for %zu tokens", L->path, n);
    return BJ_OK;
}

static bj_status tt_vocab(tt_load *L) {
    bj_tokenizer *t = L->t;
    const char *s = L->buf, *end = L->buf + L->len;
    for (int32_t id = 0; id < L->n_base; id++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        BJ_TRY(tt_line(L, id, s, (size_t)(nl - s)));
        s = nl + 1;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = tok_strmap_get(&t->words, &c, 1);
        if (t->byte_id[b] < 0)
            return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: no token for the byte 0x%02X (byte-level BPE needs all 256)",
                           L->path, b);
    }
    return BJ_OK;
}

/* ---- special tokens, merges, pre-tokenizer ------------------------------------------------ */

/* The name of special token i (0..255) per gpu/tokenizer.py: ten named slots, of which four
 * are reserved, then reserved tokens 5 .. 250. */
static int tt_special_name(int i, char *buf, size_t cap) {
    static const char *const named[10] = { "<|begin_of_text|>", "<|end_of_text|>", NULL, NULL, NULL, NULL,
                                           "<|start_header_id|>", "<|end_header_id|>", NULL, "<|eot_id|>" };
    static const int reserved[10] = { -1, -1, 0, 1, 2, 3, -1, -1, 4, -1 };
    if (i < 10 && named[i]) return snprintf(buf, cap, "%s", named[i]);
    return snprintf(buf, cap, "<|reserved_special_token_%d|>", i < 10 ? reserved[i] : i - 5);
}

static bj_status tt_specials(tt_load *L) {
    bj_tokenizer *t = L->t;
    for (int i = 0; i < TT_N_SPECIAL; i++) {
        char name[64];
        int n = tt_special_name(i, name, sizeof name);
        int32_t id = L->n_base + i;
        char *s = bj_arena_strndup(&t->arena, name, (size_t)n);
        if (!s) return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
        t->piece[id] = s;
        t->piece_len[id] = (uint32_t)n;
        t->flags[id] = TOK_F_PRESENT | TOK_F_ADDED | TOK_F_SPECIAL;
        t->added[t->n_added++] = (tok_added){ .s = s, .len = (size_t)n, .id = id, .special = true };
    }
    t->bos = L->n_base;
    t->eos = L->n_base + 1;
    t->unk = -1;
    t->add_bos = true;
    t->ignore_merges = true;
    return tok_build_added_index(t) ? BJ_OK : BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
}

/* The splits of token id into two tokens: counted, and put into the merge table when put. */
static size_t tt_splits(bj_tokenizer *t, int32_t id, bool put) {
    const char *p = t->piece[id];
    uint32_t n = t->piece_len[id];
    size_t k = 0;
    for (uint32_t i = 1; i < n; i++) {
        int32_t a = tok_strmap_get(&t->words, p, i), b = tok_strmap_get(&t->words, p + i, n - i);
        if (a < 0 || b < 0) continue;
        if (put) tok_mergemap_put(&t->merges, a, b, (uint32_t)id, id);
        k++;
    }
    return k;
}

static bj_status tt_merges(tt_load *L) {
    bj_tokenizer *t = L->t;
    size_t n = 0;
    for (int32_t id = 0; id < L->n_base; id++) n += tt_splits(t, id, false);
    if (!tok_mergemap_init(&t->merges, n, &t->arena))
        return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory for %zu merges", L->path, n);
    for (int32_t id = 0; id < L->n_base; id++) tt_splits(t, id, true);
    return BJ_OK;
}

/* HF's LLaMA-3 pre-tokenizer: Split(regex, Isolated), then ByteLevel without a regex or prefix. */
static bj_status tt_pretok(tt_load *L) {
    bj_tokenizer *t = L->t;
    size_t n;
    char *rw = bj_tok_regex_for_pcre2(tt_llama3_pattern, sizeof tt_llama3_pattern - 1, &n);
    if (!rw) return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
    int code;
    PCRE2_SIZE off;
    tok_step *st = &t->steps[t->n_steps++];
    st->kind = TOK_STEP_SPLIT;
    st->re = pcre2_compile((PCRE2_SPTR)rw, n, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    free(rw);
    if (!st->re) return BJ_FAIL(L->err, BJ_E_INTERNAL, "the LLaMA-3 split regex failed to compile (PCRE2 %d)", code);
    pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE); /* optional: the interpreter runs without it */
    t->steps[t->n_steps++] = (tok_step){ .kind = TOK_STEP_BYTELEVEL };
    return BJ_OK;
}

/* ---- entry point -------------------------------------------------------------------------- */

static bj_status tt_load_all(tt_load *L) {
    BJ_TRY(tt_count_lines(L));
    BJ_TRY(tt_alloc(L));
    BJ_TRY(tt_vocab(L));
    BJ_TRY(tt_specials(L));
    BJ_TRY(tt_merges(L));
    return tt_pretok(L);
}

bj_status bj_tok_load_tiktoken(bj_tokenizer **out, const char *path, bj_error *err) {
    *out = NULL;
    char *buf;
    size_t len;
    BJ_TRY(bj_read_file(path, &buf, &len, err));
    bj_tokenizer *t = calloc(1, sizeof *t);
    if (!t) { free(buf); return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory", path); }
    bj_arena_init(&t->arena);
    tt_load L = { .t = t, .path = path, .buf = buf, .len = len, .err = err };
    bj_status s = tt_load_all(&L);
    free(buf);
    if (s != BJ_OK) { bj_tok_free(t); return s; }
    *out = t;
    return BJ_OK;
}
