/* frontends/tok_bpe.c -- encoding and decoding with a loaded byte-level BPE tokenizer, step for
 * step as HF `tokenizers` does it (formats.md §2.4):
 *
 *  1. Added tokens are split out of the text: first those with normalized = false, then, in
 *     the pieces between them, those with normalized = true (HF's two tries). At each byte the
 *     longest added token starting there wins (Aho-Corasick leftmost-longest). A special token
 *     found while parse_special is off is skipped over (left in the text), as HF's
 *     split_special_tokens does. lstrip/rstrip widen a match over adjacent White_Space.
 *  2. Each remaining piece goes through the pre-tokenizer steps: a Split step cuts it at the
 *     matches of its regex (Isolated: matches and the gaps between them are all pieces,
 *     empty-match handling as the onig crate's find_iter); ByteLevel may prepend a space and
 *     split with the GPT-2 regex. Empty pieces are dropped.
 *  3. Each final piece is BPE'd: its bytes map to the ids of the single-byte tokens, then the
 *     adjacent pair of lowest merge rank is merged (ties: leftmost) until no pair merges. A
 *     binary heap of candidate merges with lazy invalidation, as HF's Word::merge_all, makes
 *     this O(n log n) per piece. ignore_merges emits a piece that is itself a token directly.
 *
 * Invalid UTF-8 (HF cannot receive it: its input is a Rust &str) is kept, not replaced: the
 * regex runs on each maximal valid run of a piece, and each maximal run of invalid bytes
 * between them is a piece of its own, BPE'd from its bytes like any other (exactly PCRE2's
 * PCRE2_MATCH_INVALID_UTF semantics, where an invalid byte matches nothing). Every byte has a
 * token, so decode(encode(x)) == x for any bytes, valid or not.
 *
 * Decoding concatenates the raw bytes of the tokens (converted at load). */
#include "frontends/tok_impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct tok_sym { int32_t id, prev, next; } tok_sym;       /* id -1: merged away */
typedef struct tok_cand { uint32_t rank, pos; int32_t new_id; } tok_cand;

typedef struct tok_enc {
    const bj_tokenizer *t;
    bool parse_special;
    int32_t *ids;
    size_t n, cap;
    pcre2_match_data *md;
    tok_sym *sym; /* BPE scratch, grown to the longest piece */
    tok_cand *heap;
    size_t sym_cap, heap_n;
    bj_error *err;
} tok_enc;

static bj_status tok_pretok(tok_enc *e, int step, const char *s, size_t n);

static bj_status tok_emit(tok_enc *e, int32_t id) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 64;
        int32_t *p = cap < SIZE_MAX / sizeof *p ? realloc(e->ids, cap * sizeof *p) : NULL;
        if (!p) return BJ_FAIL(e->err, BJ_E_NOMEM, "tokenizer: out of memory for %zu token ids", cap);
        e->ids = p;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return BJ_OK;
}

/* ---- BPE of one piece ------------------------------------------------------------------- */

static bool tok_cand_less(const tok_cand *a, const tok_cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void tok_heap_push(tok_enc *e, tok_cand c) {
    size_t i = e->heap_n++;
    for (; i > 0 && tok_cand_less(&c, &e->heap[(i - 1) / 2]); i = (i - 1) / 2) e->heap[i] = e->heap[(i - 1) / 2];
    e->heap[i] = c;
}

static tok_cand tok_heap_pop(tok_enc *e) {
    tok_cand top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && tok_cand_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!tok_cand_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
    }
    e->heap[i] = last;
    return top;
}

/* Pushes the merge of the pair that starts at symbol pos, if there is one. */
static void tok_push_pair(tok_enc *e, int32_t pos) {
    if (pos < 0 || e->sym[pos].next < 0) return;
    const tok_sym *l = &e->sym[pos];
    const tok_merge *m = tok_mergemap_get(&e->t->merges, l->id, e->sym[l->next].id);
    if (m) tok_heap_push(e, (tok_cand){ m->rank1 - 1, (uint32_t)pos, m->new_id });
}

static bj_status tok_bpe_reserve(tok_enc *e, size_t n) {
    if (n <= e->sym_cap) return BJ_OK;
    size_t cap = n > 2 * e->sym_cap ? n : 2 * e->sym_cap;
    if (cap > INT32_MAX / 4) return BJ_FAIL(e->err, BJ_E_INVALID, "tokenizer: a pre-token of %zu bytes is too long", n);
    free(e->sym);
    free(e->heap);
    e->sym = malloc(cap * sizeof *e->sym);
    e->heap = malloc((3 * cap + 1) * sizeof *e->heap); /* n - 1 initial pairs + at most 2 per merge */
    e->sym_cap = e->sym && e->heap ? cap : 0;
    if (!e->sym_cap) return BJ_FAIL(e->err, BJ_E_NOMEM, "tokenizer: out of memory for a %zu-byte pre-token", n);
    return BJ_OK;
}

/* The initial symbols: one per byte (HF: one per byte-level character). A byte without a
 * token becomes unk (consecutive ones fused when fuse_unk), or is dropped without unk. */
static size_t tok_bpe_symbols(tok_enc *e, const char *s, size_t n) {
    const bj_tokenizer *t = e->t;
    size_t k = 0;
    bool last_unk = false;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(uint8_t)s[i]];
        if (id < 0 && (t->unk < 0 || (t->fuse_unk && last_unk))) continue;
        last_unk = id < 0;
        e->sym[k] = (tok_sym){ id < 0 ? t->unk : id, (int32_t)k - 1, (int32_t)k + 1 };
        k++;
    }
    if (k) e->sym[k - 1].next = -1;
    return k;
}

static void tok_bpe_merge(tok_enc *e, size_t k) {
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < k; i++) tok_push_pair(e, (int32_t)i);
    while (e->heap_n) {
        tok_cand c = tok_heap_pop(e);
        tok_sym *l = &e->sym[c.pos];
        if (l->id < 0 || l->next < 0) continue;
        tok_sym *r = &e->sym[l->next];
        const tok_merge *m = tok_mergemap_get(&e->t->merges, l->id, r->id);
        if (!m || m->new_id != c.new_id) continue; /* stale: the pair changed since it was pushed */
        l->id = c.new_id;
        l->next = r->next;
        r->id = -1;
        if (l->next >= 0) e->sym[l->next].prev = (int32_t)c.pos;
        tok_push_pair(e, l->prev);
        tok_push_pair(e, (int32_t)c.pos);
    }
}

static bj_status tok_bpe(tok_enc *e, const char *s, size_t n) {
    if (e->t->ignore_merges) {
        int32_t id = tok_strmap_get(&e->t->words, s, n);
        if (id >= 0) return tok_emit(e, id);
    }
    BJ_TRY(tok_bpe_reserve(e, n));
    size_t k = tok_bpe_symbols(e, s, n);
    tok_bpe_merge(e, k);
    for (int32_t i = k ? 0 : -1; i >= 0; i = e->sym[i].next) BJ_TRY(tok_emit(e, e->sym[i].id));
    return BJ_OK;
}

/* ---- pre-tokenizer steps ----------------------------------------------------------------- */

/* One search from off: 1 and the match in [*ms, *me), 0 for none, or an error. */
static bj_status tok_search(tok_enc *e, const pcre2_code *re, const char *s, size_t n, size_t off,
                            size_t *ms, size_t *me, int *found) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, e->md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its backtracking on the heap */
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, e->md, NULL);
    *found = rc >= 0;
    if (rc == PCRE2_ERROR_NOMATCH || rc >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        *ms = rc >= 0 ? ov[0] : 0;
        *me = rc >= 0 ? ov[1] : 0;
        return BJ_OK;
    }
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return BJ_FAIL(e->err, BJ_E_INVALID, "tokenizer: pre-tokenizer regex failed on a %zu-byte piece: %s", n,
                   (const char *)msg);
}

/* Splits valid UTF-8 at the regex matches (Isolated). Empty matches follow the onig crate's
 * FindMatches: one is skipped when it ends where the previous match ended. */
static bj_status tok_split_valid(tok_enc *e, int step, const pcre2_code *re, const char *s, size_t n) {
    size_t prev = 0, last_end = 0, last_match_end = 0, ms, me;
    bool have_last = false;
    while (last_end <= n) {
        int found;
        BJ_TRY(tok_search(e, re, s, n, last_end, &ms, &me, &found));
        if (!found) break;
        if (ms == me && have_last && last_match_end == me) {
            int len = last_end < n ? bj_utf8_decode1(s + last_end, n - last_end, NULL) : 1;
            last_end += len > 0 ? (size_t)len : 1;
            continue;
        }
        last_end = last_match_end = me;
        have_last = true;
        if (prev < ms) BJ_TRY(tok_pretok(e, step + 1, s + prev, ms - prev));
        BJ_TRY(tok_pretok(e, step + 1, s + ms, me - ms));
        prev = me;
    }
    return prev < n ? tok_pretok(e, step + 1, s + prev, n - prev) : BJ_OK;
}

/* Splits any bytes: valid runs by the regex, each run of invalid bytes as one piece. */
static bj_status tok_split(tok_enc *e, int step, const pcre2_code *re, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t v = bj_utf8_valid_prefix(s + i, n - i);
        if (v) BJ_TRY(tok_split_valid(e, step, re, s + i, v));
        i += v;
        size_t j = i;
        while (j < n && bj_utf8_decode1(s + j, n - j, NULL) == 0) j++;
        if (j > i) BJ_TRY(tok_pretok(e, step + 1, s + i, j - i));
        i = j;
    }
    return BJ_OK;
}

static bj_status tok_step_body(tok_enc *e, int step, const char *s, size_t n) {
    const tok_step *st = &e->t->steps[step];
    return st->re ? tok_split(e, step, st->re, s, n) : tok_pretok(e, step + 1, s, n);
}

/* ByteLevel add_prefix_space: " " + the piece, when it does not start with a space. */
static bj_status tok_prefixed(tok_enc *e, int step, const char *s, size_t n) {
    char *buf = n < SIZE_MAX ? malloc(n + 1) : NULL;
    if (!buf) return BJ_FAIL(e->err, BJ_E_NOMEM, "tokenizer: out of memory for a %zu-byte piece", n);
    buf[0] = ' ';
    memcpy(buf + 1, s, n);
    bj_status st = tok_step_body(e, step, buf, n + 1);
    free(buf);
    return st;
}

static bj_status tok_pretok(tok_enc *e, int step, const char *s, size_t n) {
    if (n == 0) return BJ_OK;
    if (step == e->t->n_steps) return tok_bpe(e, s, n);
    const tok_step *st = &e->t->steps[step];
    if (st->kind == TOK_STEP_BYTELEVEL && st->prefix_space && s[0] != ' ') return tok_prefixed(e, step, s, n);
    return tok_step_body(e, step, s, n);
}

/* ---- added tokens ------------------------------------------------------------------------- */

/* The longest added token of the trie (0: normalized = false, 1: true) starting at s. */
static const tok_added *tok_added_at(const bj_tokenizer *t, int trie, const char *s, size_t n) {
    int k = tok_added_bucket(trie, (uint8_t)s[0]);
    for (uint32_t j = t->added_start[k]; j < t->added_start[k + 1]; j++) {
        const tok_added *a = &t->added[t->added_order[j]];
        if (a->len <= n && memcmp(a->s, s, a->len) == 0) return a;
    }
    return NULL;
}

/* lstrip: the start of the White_Space run that ends at end. */
static size_t tok_lstrip(const char *s, size_t end) {
    while (end > 0) {
        size_t b = end - 1;
        while (b > 0 && end - b < 4 && ((uint8_t)s[b] & 0xC0) == 0x80) b--;
        uint32_t cp;
        if (bj_utf8_decode1(s + b, end - b, &cp) != (int)(end - b) || !bj_utf8_is_white_space(cp)) return end;
        end = b;
    }
    return 0;
}

/* rstrip: the end of the White_Space run that starts at i. */
static size_t tok_rstrip(const char *s, size_t i, size_t n) {
    uint32_t cp;
    for (int len; i < n && (len = bj_utf8_decode1(s + i, n - i, &cp)) > 0 && bj_utf8_is_white_space(cp);)
        i += (size_t)len;
    return i;
}

static bj_status tok_added_split(tok_enc *e, int trie, const char *s, size_t n);

static bj_status tok_gap(tok_enc *e, int trie, const char *s, size_t n) {
    return trie == 0 ? tok_added_split(e, 1, s, n) : tok_pretok(e, 0, s, n);
}

/* HF's AddedVocabulary::find_matches over one piece. */
static bj_status tok_added_split(tok_enc *e, int trie, const char *s, size_t n) {
    const bj_tokenizer *t = e->t;
    if (t->added_start[tok_added_bucket(trie, 0)] == t->added_start[tok_added_bucket(trie, 0) + 256])
        return tok_gap(e, trie, s, n); /* this trie is empty */
    size_t done = 0; /* the end of the last emitted token (HF's start_offset) */
    for (size_t p = 0; p < n;) {
        const tok_added *a = tok_added_at(t, trie, s + p, n - p);
        if (!a) { p++; continue; }
        size_t ms = p, me = p + a->len;
        p = me; /* matches never overlap: the search resumes after this one */
        if (a->special && !e->parse_special) continue;
        if (a->lstrip) { ms = tok_lstrip(s, ms); ms = ms > done ? ms : done; }
        if (a->rstrip) me = tok_rstrip(s, me, n);
        if (done < ms) BJ_TRY(tok_gap(e, trie, s + done, ms - done));
        BJ_TRY(tok_emit(e, a->id));
        done = me;
    }
    return done < n ? tok_gap(e, trie, s + done, n - done) : BJ_OK;
}

/* ---- entry points ------------------------------------------------------------------------- */

bj_status bj_tok_encode(const bj_tokenizer *t, const char *text, size_t len, bool add_bos,
                        bool parse_special, int32_t **ids, size_t *n_ids, bj_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return BJ_FAIL(err, BJ_E_INVALID, "bj_tok_encode: NULL text of length %zu", len);
    if (t->spm) return tok_spm_encode(t, text, len, add_bos, parse_special, ids, n_ids, err);
    tok_enc e = { .t = t, .parse_special = parse_special, .err = err };
    e.md = pcre2_match_data_create(1, NULL);
    bj_status s = e.md ? BJ_OK : BJ_FAIL(err, BJ_E_NOMEM, "tokenizer: out of memory");
    if (s == BJ_OK && add_bos && t->bos >= 0) s = tok_emit(&e, t->bos);
    if (s == BJ_OK && len) s = tok_added_split(&e, 0, text, len);
    if (s == BJ_OK && !e.ids) { /* a valid pointer even for no ids */
        e.ids = malloc(sizeof *e.ids);
        if (!e.ids) s = BJ_FAIL(err, BJ_E_NOMEM, "tokenizer: out of memory");
    }
    pcre2_match_data_free(e.md);
    free(e.sym);
    free(e.heap);
    if (s != BJ_OK) { free(e.ids); return s; }
    *ids = e.ids;
    *n_ids = e.n;
    return BJ_OK;
}

bj_status bj_tok_decode(const bj_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                        char **out, size_t *out_len, bj_error *err) {
    if (t->spm) return tok_spm_decode(t, ids, n, skip_special, out, out_len, err);
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
        memcpy(p, t->piece[ids[i]], t->piece_len[ids[i]]);
        p += t->piece_len[ids[i]];
    }
    *p = 0;
    *out = buf;
    if (out_len) *out_len = (size_t)(p - buf);
    return BJ_OK;
}
