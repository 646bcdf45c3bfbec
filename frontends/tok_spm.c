/* frontends/tok_spm.c -- the SentencePiece-BPE tokenizer of GGUF files with tokenizer.ggml.model
 * "llama" (LLaMA-2 / 1bitLLM vocabularies), loaded into the shared bj_tokenizer and encoded and
 * decoded exactly as llama.cpp does it (formats.md §2.3, §2.5):
 *
 *  1. Special-token partition: control, unknown and user-defined tokens, longest first (ties by
 *     id), each split out of every raw fragment left to right. Control and unknown tokens take
 *     part only with parse_special; user-defined ones always.
 *  2. Each raw fragment gets a leading " " when add_space_prefix is set and it starts the text or
 *     follows a token; then every " " becomes U+2581.
 *  3. Symbols start as one UTF-8 character each (length from the lead byte alone, cut at the end
 *     of the fragment, so invalid UTF-8 also makes symbols). Every adjacent pair whose text is a
 *     token is queued with that token's score; the highest score merges first, ties to the
 *     smaller left index. Stale entries (a side merged away or grown) are skipped; each merge
 *     queues the new pairs with its neighbours.
 *  4. Each final symbol is its token, or else one <0xXX> token (upper-case hex) per byte (a raw
 *     single-byte token if <0xXX> is missing, the unknown token if both are).
 *  5. BOS goes first when add_bos (the caller's flag; the file's add_bos_token is the default).
 *
 * Decoding: normal tokens with U+2581 turned back into spaces, byte tokens as their byte,
 * control/unknown/user-defined tokens as their text (specials dropped with skip_special), unused
 * tokens as nothing. As llama.cpp's detokenizer, the first id's piece loses one leading space when
 * add_space_prefix is set (so after a leading BOS the space stays).
 *
 * Loading rejects what llama.cpp would misread or abort on: scores or token types not of the
 * token count, a type outside 1..6, a byte token not spelled <0xXX>, duplicate spellings. */
#include "frontends/gguf.h"
#include "frontends/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static const char k_spm_space[3] = { '\xE2', '\x96', '\x81' }; /* U+2581, SentencePiece's space */

/* ---- loading ------------------------------------------------------------------------------ */

typedef struct spm_load {
    bj_tokenizer *t;
    const bj_gguf *g;
    const bj_gguf_kv *tokens, *scores, *types;
    const char *path, *key;     /* for messages: the file, and the key or field holding the tokens */
    const char *type_key;       /* ... and the one holding their types */
    /* the tokenizer.model form: arrays decoded from the protobuf (NULL for GGUF) */
    const bj_gguf_str *strs;
    const float *pscores;
    const int32_t *ptypes;
    uint64_t n;
    bj_error *err;
} spm_load;

static bool spm_is_int_type(bj_gguf_vtype v) {
    return v <= BJ_GGUF_I32 || v == BJ_GGUF_U64 || v == BJ_GGUF_I64;
}

static bj_status spm_arrays(spm_load *L) {
    const bj_gguf *g = L->g;
    L->tokens = bj_gguf_find_kv(g, "tokenizer.ggml.tokens");
    L->scores = bj_gguf_find_kv(g, "tokenizer.ggml.scores");
    L->types = bj_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (!L->tokens) return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: missing required key 'tokenizer.ggml.tokens'", g->path);
    if (L->tokens->type != BJ_GGUF_ARRAY || L->tokens->arr_type != BJ_GGUF_STRING || L->tokens->n == 0 ||
        L->tokens->n > INT32_MAX / 4)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'tokenizer.ggml.tokens': expected a non-empty array of strings",
                       g->path);
    unsigned long long n = (unsigned long long)L->tokens->n;
    if (L->scores && (L->scores->type != BJ_GGUF_ARRAY || L->scores->arr_type != BJ_GGUF_F32 || L->scores->n != n))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'tokenizer.ggml.scores': expected an f32 array of %llu entries "
                       "(one per token), got %llu", g->path, n,
                       (unsigned long long)(L->scores->type == BJ_GGUF_ARRAY ? L->scores->n : 1));
    if (L->types && (L->types->type != BJ_GGUF_ARRAY || !spm_is_int_type(L->types->arr_type) || L->types->n != n))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'tokenizer.ggml.token_type': expected an integer array of %llu "
                       "entries (one per token), got %llu", g->path, n,
                       (unsigned long long)(L->types->type == BJ_GGUF_ARRAY ? L->types->n : 1));
    return BJ_OK;
}

static int spm_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a token spelled <0xXX>, or -1. */
static int spm_byte_of(bj_gguf_str s) {
    if (s.len != 6 || memcmp(s.s, "<0x", 3) != 0 || s.s[5] != '>') return -1;
    int hi = spm_hex(s.s[3]), lo = spm_hex(s.s[4]);
    return hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
}

/* A normal token's decoded text: its spelling with U+2581 turned into spaces; *len is set. */
static char *spm_unescape(bj_arena *a, bj_gguf_str s, size_t *len) {
    char *p = bj_arena_alloc(a, (size_t)s.len + 1, 1);
    if (!p) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s.len;) {
        if (s.len - i >= 3 && memcmp(s.s + i, k_spm_space, 3) == 0) { p[k++] = ' '; i += 3; }
        else p[k++] = s.s[i++];
    }
    p[k] = 0;
    *len = k;
    return p;
}

/* The decoded piece of token id by its type (formats.md §2.5 step 9). */
static bj_status spm_piece(spm_load *L, int32_t id, int64_t type, bj_gguf_str s) {
    bj_tokenizer *t = L->t;
    size_t len = (size_t)s.len;
    char *p;
    if (type == TT_NORMAL) {
        p = spm_unescape(&t->arena, s, &len);
    } else if (type == TT_BYTE) {
        int b = spm_byte_of(s);
        if (b < 0)
            return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: %s[%d]: byte token \"%.*s\" is not "
                           "spelled <0xXX>", L->path, L->key, (int)id, (int)(s.len > 64 ? 64 : s.len), s.s);
        p = bj_arena_alloc(&t->arena, 2, 1);
        if (p) p[0] = (char)b, p[1] = 0;
        len = 1;
    } else {
        if (type == TT_UNUSED) len = 0; /* llama.cpp prints nothing for them */
        p = bj_arena_strndup(&t->arena, s.s, len);
    }
    if (!p) return BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory");
    t->piece[id] = p;
    t->piece_len[id] = (uint32_t)len;
    return BJ_OK;
}

/* Adds id's file spelling to the word map (every token: llama.cpp's token_to_id). */
static bj_status spm_word(spm_load *L, int32_t id, bj_gguf_str s) {
    bj_tokenizer *t = L->t;
    if (s.len == 0) return BJ_OK;
    int32_t dup = tok_strmap_get(&t->words, s.s, (size_t)s.len);
    if (dup >= 0)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: %s[%d]: \"%.*s\" repeats token %d",
                       L->path, L->key, (int)id, (int)(s.len > 64 ? 64 : s.len), s.s, (int)dup);
    char *w = bj_arena_strndup(&t->arena, s.s, (size_t)s.len);
    if (!w) return BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory");
    tok_strmap_put(&t->words, w, (size_t)s.len, id);
    return BJ_OK;
}

static bj_status spm_token(spm_load *L, int32_t id) {
    bj_tokenizer *t = L->t;
    bj_gguf_str s = L->strs ? L->strs[id] : L->tokens->strs[id];
    int64_t type = L->ptypes ? L->ptypes[id] : L->types ? bj_gguf_arr_int(L->types, (uint64_t)id) : TT_NORMAL;
    if (type < TT_NORMAL || type > TT_BYTE)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: %s[%d]: %lld is not a token type (1..6)", L->path, L->type_key,
                       (int)id, (long long)type);
    t->score[id] = L->pscores ? L->pscores[id] : L->scores ? (float)bj_gguf_arr_float(L->scores, (uint64_t)id) : 0.0f;
    BJ_TRY(spm_piece(L, id, type, s));
    BJ_TRY(spm_word(L, id, s));
    t->spm_type[id] = (uint8_t)type;
    if (!(t->spm_text[id] = bj_arena_strndup(&t->arena, s.s ? s.s : "", (size_t)s.len)))
        return BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory");
    t->flags[id] = TOK_F_PRESENT;
    if (type == TT_NORMAL || type == TT_BYTE) t->flags[id] |= TOK_F_VOCAB;
    if ((type == TT_CONTROL || type == TT_UNKNOWN || type == TT_USER) && s.len > 0) {
        bool special = type != TT_USER;
        t->flags[id] |= TOK_F_ADDED | (special ? TOK_F_SPECIAL : 0);
        t->added[t->n_added++] = (tok_added){ .s = t->piece[id], .len = (size_t)s.len, .id = id, .special = special };
    }
    return BJ_OK;
}

static int spm_added_cmp(const void *pa, const void *pb) {
    const tok_added *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* The byte-fallback table: <0xXX>, else the raw one-byte token, else -1. */
static void spm_byte_ids(bj_tokenizer *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[6] = { '<', '0', 'x', hex[b >> 4], hex[b & 15], '>' }, raw = (char)b;
        int32_t id = tok_strmap_get(&t->words, name, sizeof name);
        t->byte_id[b] = id >= 0 ? id : tok_strmap_get(&t->words, &raw, 1);
    }
}

static bj_status spm_vocab(spm_load *L) {
    bj_tokenizer *t = L->t;
    int32_t n = (int32_t)(L->strs ? L->n : L->tokens->n);
    t->n_vocab = n;
    t->flags = bj_arena_alloc(&t->arena, (size_t)n, 1);
    t->piece = bj_arena_alloc(&t->arena, (size_t)n * sizeof *t->piece, 8);
    t->piece_len = bj_arena_alloc(&t->arena, (size_t)n * sizeof *t->piece_len, 8);
    t->score = bj_arena_alloc(&t->arena, (size_t)n * sizeof *t->score, 8);
    t->added = bj_arena_alloc(&t->arena, ((size_t)n + 1) * sizeof *t->added, 8);
    t->spm_type = bj_arena_alloc(&t->arena, (size_t)n, 1);
    t->spm_text = bj_arena_alloc(&t->arena, (size_t)n * sizeof *t->spm_text, 8);
    if (!t->flags || !t->piece || !t->piece_len || !t->score || !t->added || !t->spm_type || !t->spm_text ||
        !tok_strmap_init_arena(&t->words, (size_t)n, &t->arena))
        return BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory for %d tokens", (int)n);
    for (int32_t id = 0; id < n; id++) BJ_TRY(spm_token(L, id));
    qsort(t->added, t->n_added, sizeof *t->added, spm_added_cmp);
    spm_byte_ids(t);
    return BJ_OK;
}

/* An optional id key; the default is kept only when it names a token. */
static bj_status spm_id(spm_load *L, const char *key, int32_t def, int32_t *id) {
    int64_t v = def < L->t->n_vocab ? def : -1;
    *id = (int32_t)v;
    BJ_TRY(bj_gguf_get_int(L->g, key, false, &v, L->err));
    if (v != *id && (v < 0 || v >= L->t->n_vocab))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key '%s': id %lld is outside the %d-token vocab", L->g->path, key,
                       (long long)v, (int)L->t->n_vocab);
    *id = (int32_t)v;
    return BJ_OK;
}

static bj_status spm_options(spm_load *L) {
    bj_tokenizer *t = L->t;
    BJ_TRY(spm_id(L, "tokenizer.ggml.bos_token_id", 1, &t->bos));
    BJ_TRY(spm_id(L, "tokenizer.ggml.eos_token_id", 2, &t->eos));
    BJ_TRY(spm_id(L, "tokenizer.ggml.unknown_token_id", 0, &t->unk));
    t->add_bos = t->add_space_prefix = true;
    BJ_TRY(bj_gguf_get_bool(L->g, "tokenizer.ggml.add_bos_token", false, &t->add_bos, L->err));
    return bj_gguf_get_bool(L->g, "tokenizer.ggml.add_space_prefix", false, &t->add_space_prefix, L->err);
}

bj_status tok_spm_load_gguf(bj_tokenizer *t, const bj_gguf *g, bj_error *err) {
    spm_load L = { .t = t, .g = g, .path = g->path, .key = "key 'tokenizer.ggml.tokens'",
                   .type_key = "key 'tokenizer.ggml.token_type'", .err = err };
    t->spm = true;
    BJ_TRY(spm_arrays(&L));
    BJ_TRY(spm_vocab(&L));
    return spm_options(&L);
}

/* ---- encoding ----------------------------------------------------------------------------- */

typedef struct spm_sym { uint32_t off, n; int32_t prev, next; } spm_sym;      /* n 0: merged away */
typedef struct spm_big { float score; int32_t left, right; uint32_t size; } spm_big;
typedef struct spm_frag { size_t off, len; int32_t id; } spm_frag;            /* id -1: raw text */

typedef struct spm_enc {
    const bj_tokenizer *t;
    int32_t *ids;
    size_t n, cap;
    spm_frag *frag, *next; /* the partition and the one being built */
    size_t n_frag, n_next, frag_cap, next_cap;
    char *buf;             /* the escaped fragment */
    spm_sym *sym;
    spm_big *heap;
    size_t buf_cap, sym_cap, heap_cap, heap_n;
    bj_error *err;
} spm_enc;

static bool spm_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = c <= SIZE_MAX / elem ? realloc(*p, c * elem) : NULL;
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bj_status spm_emit(spm_enc *e, int32_t id) {
    if (!spm_grow((void **)&e->ids, &e->cap, e->n + 1, sizeof *e->ids))
        return BJ_FAIL(e->err, BJ_E_NOMEM, "tokenizer: out of memory for %zu token ids", e->n + 1);
    e->ids[e->n++] = id;
    return BJ_OK;
}

/* -- special-token partition (llama.cpp's tokenizer_st_partition) -- */

static bj_status spm_push_frag(spm_enc *e, size_t off, size_t len, int32_t id) {
    if (!spm_grow((void **)&e->next, &e->next_cap, e->n_next + 1, sizeof *e->next))
        return BJ_FAIL(e->err, BJ_E_NOMEM, "tokenizer: out of memory partitioning special tokens");
    e->next[e->n_next++] = (spm_frag){ off, len, id };
    return BJ_OK;
}

/* The first occurrence of w in s[0..n), or n. */
static size_t spm_find(const char *s, size_t n, const char *w, size_t wn) {
    for (size_t i = 0; i + wn <= n;) {
        const char *p = memchr(s + i, w[0], n - wn + 1 - i);
        if (!p) return n;
        i = (size_t)(p - s);
        if (memcmp(p, w, wn) == 0) return i;
        i++;
    }
    return n;
}

/* Splits raw fragment f at every occurrence of token a, left to right, into e->next. */
static bj_status spm_split_frag(spm_enc *e, const char *text, spm_frag f, const tok_added *a) {
    size_t off = f.off, end = f.off + f.len;
    for (;;) {
        size_t m = off + spm_find(text + off, end - off, a->s, a->len);
        if (m == end) break;
        if (m > off) BJ_TRY(spm_push_frag(e, off, m - off, -1));
        BJ_TRY(spm_push_frag(e, m, a->len, a->id));
        off = m + a->len;
    }
    return off < end ? spm_push_frag(e, off, end - off, -1) : BJ_OK;
}

/* The partition being built becomes the current one. */
static void spm_swap_frags(spm_enc *e) {
    spm_frag *f = e->frag;
    size_t cap = e->frag_cap;
    e->frag = e->next, e->frag_cap = e->next_cap, e->n_frag = e->n_next;
    e->next = f, e->next_cap = cap, e->n_next = 0;
}

static bj_status spm_split_all(spm_enc *e, const char *text, const tok_added *a) {
    e->n_next = 0;
    for (size_t i = 0; i < e->n_frag; i++) {
        spm_frag f = e->frag[i];
        if (f.id >= 0) BJ_TRY(spm_push_frag(e, f.off, f.len, f.id));
        else BJ_TRY(spm_split_frag(e, text, f, a));
    }
    spm_swap_frags(e);
    return BJ_OK;
}

static bj_status spm_partition(spm_enc *e, const char *text, size_t len, bool parse_special) {
    e->n_next = 0;
    BJ_TRY(spm_push_frag(e, 0, len, -1));
    spm_swap_frags(e);
    for (uint32_t k = 0; k < e->t->n_added; k++) {
        const tok_added *a = &e->t->added[k];
        if (a->special && !parse_special) continue;
        BJ_TRY(spm_split_all(e, text, a));
    }
    return BJ_OK;
}

/* -- one raw fragment -- */

/* Writes [" " +] s with every space as U+2581 into e->buf, *out bytes. */
static bj_status spm_escape(spm_enc *e, const char *s, size_t n, bool prefix, size_t *out) {
    if (n >= INT32_MAX / 8)
        return BJ_FAIL(e->err, BJ_E_INVALID, "tokenizer: a %zu-byte text fragment is too long", n);
    if (!spm_grow((void **)&e->buf, &e->buf_cap, 3 * (n + 1), 1))
        return BJ_FAIL(e->err, BJ_E_NOMEM, "tokenizer: out of memory for a %zu-byte fragment", n);
    size_t k = 0;
    if (prefix) memcpy(e->buf, k_spm_space, 3), k = 3;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') memcpy(e->buf + k, k_spm_space, 3), k += 3;
        else e->buf[k++] = s[i];
    }
    *out = k;
    return BJ_OK;
}

/* e->heap order: higher score first, then the smaller left index. */
static bool spm_before(const spm_big *a, const spm_big *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void spm_heap_push(spm_enc *e, spm_big c) {
    size_t i = e->heap_n++;
    for (; i > 0 && spm_before(&c, &e->heap[(i - 1) / 2]); i = (i - 1) / 2) e->heap[i] = e->heap[(i - 1) / 2];
    e->heap[i] = c;
}

static spm_big spm_heap_pop(spm_enc *e) {
    spm_big top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && spm_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!spm_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
    }
    e->heap[i] = last;
    return top;
}

/* Queues the pair (left, right) when their joined text is a token. */
static void spm_try_pair(spm_enc *e, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const spm_sym *l = &e->sym[left];
    uint32_t size = l->n + e->sym[right].n;
    int32_t id = tok_strmap_get(&e->t->words, e->buf + l->off, size);
    if (id >= 0) spm_heap_push(e, (spm_big){ e->t->score[id], left, right, size });
}

/* One symbol per UTF-8 character, its length from the lead byte (llama.cpp's utf8_len). */
static size_t spm_symbols(spm_enc *e, size_t n) {
    static const uint8_t lead_len[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    size_t k = 0;
    for (size_t off = 0; off < n; k++) {
        size_t len = lead_len[(uint8_t)e->buf[off] >> 4];
        if (len > n - off) len = n - off;
        e->sym[k] = (spm_sym){ (uint32_t)off, (uint32_t)len, (int32_t)k - 1, (int32_t)k + 1 };
        off += len;
    }
    if (k) e->sym[k - 1].next = -1;
    return k;
}

static void spm_merge_all(spm_enc *e, size_t k) {
    e->heap_n = 0;
    for (size_t i = 1; i < k; i++) spm_try_pair(e, (int32_t)i - 1, (int32_t)i);
    while (e->heap_n) {
        spm_big b = spm_heap_pop(e);
        spm_sym *l = &e->sym[b.left], *r = &e->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) e->sym[r->next].prev = b.left;
        spm_try_pair(e, l->prev, b.left);
        spm_try_pair(e, b.left, l->next);
    }
}

static bj_status spm_emit_bytes(spm_enc *e, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int32_t id = e->t->byte_id[(uint8_t)s[i]];
        if (id < 0) id = e->t->unk;
        if (id < 0)
            return BJ_FAIL(e->err, BJ_E_INVALID, "tokenizer: byte 0x%02X has no token (<0x%02X> is not in the vocab "
                           "and there is no unknown token)", (unsigned)(uint8_t)s[i], (unsigned)(uint8_t)s[i]);
        BJ_TRY(spm_emit(e, id));
    }
    return BJ_OK;
}

static bj_status spm_fragment(spm_enc *e, const char *s, size_t len, bool prefix) {
    size_t n = 0;
    BJ_TRY(spm_escape(e, s, len, prefix, &n));
    if (!spm_grow((void **)&e->sym, &e->sym_cap, n + 1, sizeof *e->sym) || /* heap: n - 1 seeds + 2 per merge */
        !spm_grow((void **)&e->heap, &e->heap_cap, 3 * n + 1, sizeof *e->heap))
        return BJ_FAIL(e->err, BJ_E_NOMEM, "tokenizer: out of memory for a %zu-byte fragment", len);
    size_t k = spm_symbols(e, n);
    spm_merge_all(e, k);
    for (int32_t i = k ? 0 : -1; i >= 0; i = e->sym[i].next) {
        const spm_sym *y = &e->sym[i];
        int32_t id = tok_strmap_get(&e->t->words, e->buf + y->off, y->n);
        BJ_TRY(id >= 0 ? spm_emit(e, id) : spm_emit_bytes(e, e->buf + y->off, y->n));
    }
    return BJ_OK;
}

static bj_status spm_encode_all(spm_enc *e, const char *text, size_t len, bool add_bos, bool parse_special) {
    if (add_bos && e->t->bos >= 0) BJ_TRY(spm_emit(e, e->t->bos));
    if (len == 0) return BJ_OK;
    BJ_TRY(spm_partition(e, text, len, parse_special));
    bool after_token = true; /* the text start counts as one */
    for (size_t i = 0; i < e->n_frag; i++) {
        spm_frag f = e->frag[i];
        if (f.id >= 0) BJ_TRY(spm_emit(e, f.id));
        else BJ_TRY(spm_fragment(e, text + f.off, f.len, e->t->add_space_prefix && after_token));
        after_token = f.id >= 0;
    }
    return BJ_OK;
}

bj_status tok_spm_encode(const bj_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                         int32_t **ids, size_t *n_ids, bj_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return BJ_FAIL(err, BJ_E_INVALID, "bj_tok_encode: NULL text of length %zu", len);
    spm_enc e = { .t = t, .err = err };
    bj_status s = spm_encode_all(&e, text, len, add_bos, parse_special);
    if (s == BJ_OK && !e.ids && !spm_grow((void **)&e.ids, &e.cap, 1, sizeof *e.ids)) /* valid even when empty */
        s = BJ_FAIL(err, BJ_E_NOMEM, "tokenizer: out of memory");
    free(e.frag);
    free(e.next);
    free(e.buf);
    free(e.sym);
    free(e.heap);
    if (s != BJ_OK) { free(e.ids); return s; }
    *ids = e.ids;
    *n_ids = e.n;
    return BJ_OK;
}

/* ---- decoding ----------------------------------------------------------------------------- */

bj_status tok_spm_decode(const bj_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **out,
                         size_t *out_len, bj_error *err) {
    size_t total = 0;
    *out = NULL;
    if (out_len) *out_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab || !t->flags[ids[i]])
            return BJ_FAIL(err, BJ_E_INVALID, "bj_tok_decode: ids[%zu] = %d is not a token id (vocab size %d)", i,
                           (int)ids[i], (int)t->n_vocab);
        uint64_t sum;
        if (bj_add_overflow(total, t->piece_len[ids[i]], &sum) || sum >= SIZE_MAX)
            return BJ_FAIL(err, BJ_E_INVALID, "bj_tok_decode: %zu ids decode to too many bytes", n);
        total = (size_t)sum;
    }
    char *buf = malloc(total + 1), *p = buf;
    if (!buf) return BJ_FAIL(err, BJ_E_NOMEM, "bj_tok_decode: out of memory for %zu bytes", total);
    for (size_t i = 0; i < n; i++) {
        if (skip_special && (t->flags[ids[i]] & TOK_F_SPECIAL)) continue;
        const char *s = t->piece[ids[i]];
        size_t len = t->piece_len[ids[i]];
        if (i == 0 && t->add_space_prefix && len && s[0] == ' ') s++, len--; /* the space encoding added */
        memcpy(p, s, len);
        p += len;
    }
    *p = 0;
    *out = buf;
    if (out_len) *out_len = (size_t)(p - buf);
    return BJ_OK;
}

/* ---- tokenizer.model: SentencePiece's ModelProto (protobuf) ------------------------------------
 *
 * The fields read (sentencepiece_model.proto): ModelProto.pieces = 1 (repeated SentencePiece:
 * piece = 1 string, score = 2 float, type = 3 enum NORMAL 1 / UNKNOWN 2 / CONTROL 3 /
 * USER_DEFINED 4 / UNUSED 5 / BYTE 6, the numbering GGUF's token_type copies), trainer_spec = 2
 * (model_type = 3: BPE 2 is the only one accepted; unk_id 40, bos_id 41, eos_id 42, -1 = none),
 * normalizer_spec = 3 (name = 1, precompiled_charsmap = 2, add_dummy_prefix = 3,
 * remove_extra_whitespaces = 4, escape_whitespaces = 5; only the identity normalization is
 * accepted: no charsmap, no whitespace collapsing, spaces escaped). Every length is checked
 * against the bytes left; unknown fields are skipped by wire type. */

typedef struct pbr { const uint8_t *p, *end; } pbr;

static bool pb_varint(pbr *r, uint64_t *v) {
    uint64_t x = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        if (r->p >= r->end) return false;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7F) << sh;
        if (!(b & 0x80)) { *v = x; return true; }
    }
    return false;
}

/* The next field's number and wire type; false at the end (or on a bad key: *bad set). */
static bool pb_key(pbr *r, uint32_t *field, uint32_t *wt, bool *bad) {
    uint64_t k;
    *bad = false;
    if (r->p >= r->end) return false;
    if (!pb_varint(r, &k) || (k >> 3) == 0 || (k >> 3) > 0x1FFFFFFF) { *bad = true; return false; }
    *field = (uint32_t)(k >> 3), *wt = (uint32_t)(k & 7);
    return true;
}

/* A length-delimited value as a sub-reader. */
static bool pb_bytes(pbr *r, pbr *sub) {
    uint64_t n;
    if (!pb_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return false;
    sub->p = r->p, sub->end = r->p + n;
    r->p += n;
    return true;
}

static bool pb_skip(pbr *r, uint32_t wt) {
    uint64_t v;
    pbr sub;
    switch (wt) {
    case 0: return pb_varint(r, &v);
    case 1: if (r->end - r->p < 8) return false; r->p += 8; return true;
    case 2: return pb_bytes(r, &sub);
    case 5: if (r->end - r->p < 4) return false; r->p += 4; return true;
    default: return false;
    }
}

typedef struct spm_proto {
    bj_gguf_str *strs;
    float *scores;
    int32_t *types;
    uint64_t n, cap;
    int64_t model_type, unk, bos, eos;
    bool dummy_prefix, remove_ws, escape_ws, charsmap;
    char norm_name[32];
} spm_proto;

static bj_status pb_bad(const char *path, const char *what, bj_error *err) {
    return BJ_FAIL(err, BJ_E_FORMAT, "%s: not a SentencePiece model: truncated or malformed protobuf in %s", path, what);
}

static bj_status pb_piece(spm_proto *m, pbr r, const char *path, bj_error *err) {
    if (m->n == m->cap) {
        uint64_t cap = m->cap ? m->cap * 2 : 1024;
        bj_gguf_str *s = realloc(m->strs, cap * sizeof *s);
        if (s) m->strs = s;
        float *f = realloc(m->scores, cap * sizeof *f);
        if (f) m->scores = f;
        int32_t *t = realloc(m->types, cap * sizeof *t);
        if (t) m->types = t;
        if (!s || !f || !t) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory", path);
        m->cap = cap;
    }
    bj_gguf_str str = { NULL, 0 };
    float score = 0;
    int32_t type = TT_NORMAL;
    uint32_t field, wt;
    bool bad, have = false;
    while (pb_key(&r, &field, &wt, &bad)) {
        uint64_t v;
        pbr sub;
        if (field == 1 && wt == 2) {
            if (!pb_bytes(&r, &sub)) return pb_bad(path, "a piece", err);
            str = (bj_gguf_str){ (const char *)sub.p, (uint64_t)(sub.end - sub.p) };
            have = true;
        } else if (field == 2 && wt == 5) {
            if (r.end - r.p < 4) return pb_bad(path, "a piece's score", err);
            uint32_t u = (uint32_t)r.p[0] | (uint32_t)r.p[1] << 8 | (uint32_t)r.p[2] << 16 | (uint32_t)r.p[3] << 24;
            memcpy(&score, &u, 4);
            r.p += 4;
        } else if (field == 3 && wt == 0) {
            if (!pb_varint(&r, &v)) return pb_bad(path, "a piece's type", err);
            type = v > 100 ? 0 : (int32_t)v; /* checked against 1..6 with the piece's index later */
        } else if (!pb_skip(&r, wt)) {
            return pb_bad(path, "a piece", err);
        }
    }
    if (bad) return pb_bad(path, "a piece", err);
    if (!have) return BJ_FAIL(err, BJ_E_FORMAT, "%s: pieces[%llu] has no piece string", path, (unsigned long long)m->n);
    m->strs[m->n] = str, m->scores[m->n] = score, m->types[m->n] = type;
    m->n++;
    return BJ_OK;
}

static int64_t pb_int32(uint64_t v) { return (int64_t)(int32_t)(uint32_t)v; } /* -1 is a 10-byte varint */

static bj_status pb_trainer(spm_proto *m, pbr r, const char *path, bj_error *err) {
    uint32_t field, wt;
    bool bad;
    while (pb_key(&r, &field, &wt, &bad)) {
        uint64_t v;
        if (wt == 0 && (field == 3 || field == 40 || field == 41 || field == 42)) {
            if (!pb_varint(&r, &v)) return pb_bad(path, "trainer_spec", err);
            if (field == 3) m->model_type = (int64_t)v;
            else if (field == 40) m->unk = pb_int32(v);
            else if (field == 41) m->bos = pb_int32(v);
            else m->eos = pb_int32(v);
        } else if (!pb_skip(&r, wt)) {
            return pb_bad(path, "trainer_spec", err);
        }
    }
    return bad ? pb_bad(path, "trainer_spec", err) : BJ_OK;
}

static bj_status pb_normalizer(spm_proto *m, pbr r, const char *path, bj_error *err) {
    uint32_t field, wt;
    bool bad;
    while (pb_key(&r, &field, &wt, &bad)) {
        uint64_t v;
        pbr sub;
        if (wt == 2 && (field == 1 || field == 2)) {
            if (!pb_bytes(&r, &sub)) return pb_bad(path, "normalizer_spec", err);
            if (field == 2) m->charsmap = sub.end > sub.p;
            else snprintf(m->norm_name, sizeof m->norm_name, "%.*s", (int)(sub.end - sub.p > 31 ? 31 : sub.end - sub.p),
                          (const char *)sub.p);
        } else if (wt == 0 && field >= 3 && field <= 5) {
            if (!pb_varint(&r, &v)) return pb_bad(path, "normalizer_spec", err);
            if (field == 3) m->dummy_prefix = v != 0;
            else if (field == 4) m->remove_ws = v != 0;
            else m->escape_ws = v != 0;
        } else if (!pb_skip(&r, wt)) {
            return pb_bad(path, "normalizer_spec", err);
        }
    }
    return bad ? pb_bad(path, "normalizer_spec", err) : BJ_OK;
}

static bj_status pb_model(spm_proto *m, const uint8_t *data, size_t size, const char *path, bj_error *err) {
    pbr r = { data, data + size };
    uint32_t field, wt;
    bool bad;
    while (pb_key(&r, &field, &wt, &bad)) {
        pbr sub;
        if (wt == 2 && field >= 1 && field <= 3) {
            if (!pb_bytes(&r, &sub)) return pb_bad(path, "ModelProto", err);
            if (field == 1) BJ_TRY(pb_piece(m, sub, path, err));
            else if (field == 2) BJ_TRY(pb_trainer(m, sub, path, err));
            else BJ_TRY(pb_normalizer(m, sub, path, err));
        } else if (!pb_skip(&r, wt)) {
            return pb_bad(path, "ModelProto", err);
        }
    }
    return bad ? pb_bad(path, "ModelProto", err) : BJ_OK;
}

static bj_status spm_proto_check(const spm_proto *m, const char *path, bj_error *err) {
    static const char *const kinds[] = { "?", "unigram", "bpe", "word", "char" };
    if (m->n == 0) return BJ_FAIL(err, BJ_E_FORMAT, "%s: not a SentencePiece model: no pieces (field 1)", path);
    if (m->n > INT32_MAX / 4) return BJ_FAIL(err, BJ_E_FORMAT, "%s: %llu pieces is too many", path, (unsigned long long)m->n);
    if (m->model_type != 2)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: unknown tokenizer model: trainer_spec.model_type %lld (%s); bitjit "
                       "reads SentencePiece BPE models (type 2, LLaMA / 1bitLLM)", path, (long long)m->model_type,
                       m->model_type >= 0 && m->model_type <= 4 ? kinds[m->model_type] : "?");
    if (m->charsmap || (m->norm_name[0] && strcmp(m->norm_name, "identity") != 0))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: normalizer_spec.name '%s' (a normalization table) is not supported; "
                       "bitjit reads the identity normalization", path, m->norm_name[0] ? m->norm_name : "(charsmap)");
    if (m->remove_ws)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: normalizer_spec.remove_extra_whitespaces true is not supported", path);
    if (!m->escape_ws)
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "%s: normalizer_spec.escape_whitespaces false is not supported", path);
    const int64_t ids[3] = { m->unk, m->bos, m->eos };
    static const char *const names[3] = { "unk_id", "bos_id", "eos_id" };
    for (int i = 0; i < 3; i++)
        if (ids[i] < -1 || ids[i] >= (int64_t)m->n)
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: trainer_spec.%s %lld is outside the %llu pieces", path, names[i],
                           (long long)ids[i], (unsigned long long)m->n);
    return BJ_OK;
}

bj_status tok_spm_load_model(bj_tokenizer *t, const char *path, bool add_bos, bj_error *err) {
    char *data;
    size_t size;
    BJ_TRY(bj_read_file(path, &data, &size, err));
    /* proto defaults: UNIGRAM, unk 0, bos 1, eos 2, dummy prefix, collapse and escape whitespace */
    spm_proto m = { .model_type = 1, .unk = 0, .bos = 1, .eos = 2, .dummy_prefix = true, .remove_ws = true,
                    .escape_ws = true };
    bj_status s = pb_model(&m, (const uint8_t *)data, size, path, err);
    if (s == BJ_OK) s = spm_proto_check(&m, path, err);
    if (s == BJ_OK) {
        spm_load L = { .t = t, .path = path, .key = "pieces", .type_key = "pieces (type)", .strs = m.strs, .pscores = m.scores, .ptypes = m.types,
                       .n = m.n, .err = err };
        t->spm = true;
        s = spm_vocab(&L);
        t->unk = (int32_t)m.unk, t->bos = (int32_t)m.bos, t->eos = (int32_t)m.eos;
        t->add_bos = add_bos;
        t->add_space_prefix = m.dummy_prefix;
    }
    free(m.strs);
    free(m.scores);
    free(m.types);
    free(data);
    return s;
}
