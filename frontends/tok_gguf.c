/* frontends/tok_gguf.c -- tokenizers from GGUF metadata (formats.md §2.3, §2.4) into the same
 * bj_tokenizer the tokenizer.json loader fills, so encoding and decoding are tok_bpe.c's; and
 * the reverse (a bj_tokenizer as tokenizer.ggml.* arrays) for the writer.
 *
 * Accepted: tokenizer.ggml.model "gpt2" (byte-level BPE) with pre-tokenizer "llama-bpe" (also
 * "llama3", "llama-v3": the LLaMA-3 split regex, ignore_merges = true, add_bos defaulting to
 * true, as llama.cpp sets them) or "gpt-2"/"default"/absent (the GPT-2 regex); and "llama"
 * (SentencePiece-BPE), which tok_spm.c loads and encodes. Others are BJ_E_UNSUPPORTED, naming
 * the model.
 *
 * Token types map as llama.cpp reads them: normal (1) and byte (6) tokens are the BPE vocab
 * (spelled in the byte-level alphabet, decoded to raw bytes here); control (3) and unknown (2)
 * are special added tokens, matched in text only with parse_special; user-defined (4) are
 * added tokens matched always; unused (5) are present but never produced by encoding. */
#include "frontends/gguf.h"
#include "frontends/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>

static const char k_llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct tg_load {
    bj_tokenizer *t;
    const bj_gguf *g;
    const bj_gguf_kv *tokens, *types;
    tok_strmap spell; /* file spelling -> id of vocab tokens (merges are spelled so) */
    bj_error *err;
} tg_load;

static size_t tg_cp_utf8(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | cp >> 6); /* the byte alphabet stays below U+0800 */
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* ---- loading ------------------------------------------------------------------------------ */

static bj_status tg_compile(tg_load *L, tok_step *st, const char *pat) {
    size_t n;
    char *rw = bj_tok_regex_for_pcre2(pat, strlen(pat), &n);
    if (!rw) return BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory");
    int code;
    PCRE2_SIZE off;
    st->re = pcre2_compile((PCRE2_SPTR)rw, n, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    free(rw);
    if (!st->re) return BJ_FAIL(L->err, BJ_E_INTERNAL, "the built-in split regex failed to compile (PCRE2 %d)", code);
    pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE);
    return BJ_OK;
}

static bool str_is(bj_gguf_str s, const char *lit) { return s.len == strlen(lit) && !memcmp(s.s, lit, s.len); }

static bj_status tg_pretok(tg_load *L) {
    bj_gguf_str pre = { "default", 7 };
    bj_tokenizer *t = L->t;
    BJ_TRY(bj_gguf_get_str(L->g, "tokenizer.ggml.pre", false, &pre, L->err));
    /* "falcon3" (Falcon3's vocabulary): llama.cpp c392e5094 (src/llama-vocab.cpp) gives it
     * LLaMA-3's pre-tokenizer type: the LLaMA-3 split regex, BOS added, ignore_merges on */
    bool falcon3 = str_is(pre, "falcon3");
    bool llama3 = str_is(pre, "llama-bpe") || str_is(pre, "llama3") || str_is(pre, "llama-v3") || falcon3;
    if (!llama3 && !str_is(pre, "gpt-2") && !str_is(pre, "default"))
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'tokenizer.ggml.pre': pre-tokenizer \"%.*s\" is not "
                       "supported (llama-bpe, llama3, llama-v3, falcon3, gpt-2, default)", L->g->path,
                       (int)(pre.len > 64 ? 64 : pre.len), pre.s);
    t->ignore_merges = llama3;
    t->add_bos = llama3;
    tok_step *st = &t->steps[t->n_steps++];
    if (llama3) {
        st->kind = TOK_STEP_SPLIT;
        BJ_TRY(tg_compile(L, st, k_llama3_pattern));
        st = &t->steps[t->n_steps++];
        st->kind = TOK_STEP_BYTELEVEL; /* use_regex false: no pattern */
        return BJ_OK;
    }
    st->kind = TOK_STEP_BYTELEVEL;
    return tg_compile(L, st, k_gpt2_pattern);
}

static bj_status tg_arrays(tg_load *L) {
    const bj_gguf *g = L->g;
    L->tokens = bj_gguf_find_kv(g, "tokenizer.ggml.tokens");
    L->types = bj_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (!L->tokens) return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: missing required key 'tokenizer.ggml.tokens'", g->path);
    if (L->tokens->type != BJ_GGUF_ARRAY || L->tokens->arr_type != BJ_GGUF_STRING || L->tokens->n == 0 ||
        L->tokens->n > INT32_MAX / 4)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'tokenizer.ggml.tokens': expected a non-empty array of strings",
                       g->path);
    if (L->types && (L->types->type != BJ_GGUF_ARRAY || L->types->n != L->tokens->n ||
                     L->types->arr_type == BJ_GGUF_STRING || L->types->arr_type == BJ_GGUF_F32 ||
                     L->types->arr_type == BJ_GGUF_F64))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'tokenizer.ggml.token_type': expected an integer array of "
                       "%llu entries", g->path, (unsigned long long)L->tokens->n);
    return BJ_OK;
}

static bj_status tg_token(tg_load *L, int32_t id, tok_added *added, uint32_t *n_added) {
    bj_tokenizer *t = L->t;
    bj_gguf_str s = L->tokens->strs[id];
    int64_t type = L->types ? bj_gguf_arr_int(L->types, (uint64_t)id) : TT_NORMAL;
    char *p = bj_arena_alloc(&t->arena, (size_t)s.len + 1, 1);
    if (!p) return BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory");
    size_t len = (size_t)s.len;
    bool vocab = type == TT_NORMAL || type == TT_BYTE;
    if (vocab && s.len && bj_tok_bytelevel_to_bytes(s.s, (size_t)s.len, p, &len)) t->flags[id] |= TOK_F_BYTELEVEL;
    else memcpy(p, s.s, (size_t)s.len);
    p[len] = 0;
    t->piece[id] = p;
    t->piece_len[id] = (uint32_t)len;
    t->flags[id] |= TOK_F_PRESENT;
    if (vocab) {
        t->flags[id] |= TOK_F_VOCAB;
        tok_strmap_put(&L->spell, s.s, (size_t)s.len, id);
        if (t->flags[id] & TOK_F_BYTELEVEL) tok_strmap_put(&t->words, p, len, id);
    } else if ((type == TT_CONTROL || type == TT_UNKNOWN || type == TT_USER) && len > 0) {
        bool special = type != TT_USER;
        t->flags[id] |= TOK_F_ADDED | (special ? TOK_F_SPECIAL : 0);
        added[(*n_added)++] = (tok_added){ .s = p, .len = len, .id = id, .special = special };
    } else if (type < TT_NORMAL || type > TT_BYTE) {
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'tokenizer.ggml.token_type'[%d]: %lld is not a token type "
                       "(1..6)", L->g->path, (int)id, (long long)type);
    }
    return BJ_OK;
}

static bj_status tg_vocab(tg_load *L) {
    bj_tokenizer *t = L->t;
    int32_t n = (int32_t)L->tokens->n;
    t->n_vocab = n;
    t->flags = bj_arena_alloc(&t->arena, (size_t)n, 1);
    t->piece = bj_arena_alloc(&t->arena, (size_t)n * sizeof *t->piece, 8);
    t->piece_len = bj_arena_alloc(&t->arena, (size_t)n * sizeof *t->piece_len, 8);
    t->added = bj_arena_alloc(&t->arena, ((size_t)n + 1) * sizeof *t->added, 8);
    if (!t->flags || !t->piece || !t->piece_len || !t->added || !tok_strmap_init_arena(&L->spell, (size_t)n, &t->arena) ||
        !tok_strmap_init_arena(&t->words, (size_t)n, &t->arena))
        return BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory for %d tokens", (int)n);
    for (int32_t id = 0; id < n; id++) BJ_TRY(tg_token(L, id, t->added, &t->n_added));
    for (int b = 0; b < 256; b++) {
        char sp[4];
        size_t k = tg_cp_utf8(bj_tok_byte_to_cp((uint8_t)b), sp);
        t->byte_id[b] = tok_strmap_get(&L->spell, sp, k);
    }
    return tok_build_added_index(t) ? BJ_OK : BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory");
}

static bj_status tg_merge(tg_load *L, bj_gguf_str m, uint32_t rank, char **cat, size_t *cap) {
    const char *sp = m.len > 1 ? memchr(m.s + 1, ' ', (size_t)m.len - 1) : NULL;
    if (!sp)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'tokenizer.ggml.merges'[%u]: expected \"left right\"",
                       L->g->path, rank);
    size_t an = (size_t)(sp - m.s), bn = (size_t)m.len - an - 1;
    int32_t a = tok_strmap_get(&L->spell, m.s, an), b = tok_strmap_get(&L->spell, sp + 1, bn);
    if (an + bn > *cap) {
        char *p = realloc(*cat, an + bn);
        if (!p) return BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory");
        *cat = p, *cap = an + bn;
    }
    memcpy(*cat, m.s, an);
    memcpy(*cat + an, sp + 1, bn);
    int32_t c = tok_strmap_get(&L->spell, *cat, an + bn);
    if (a < 0 || b < 0 || c < 0)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'tokenizer.ggml.merges'[%u]: \"%.*s\" names a token that is not "
                       "in the vocab", L->g->path, rank, (int)(m.len > 64 ? 64 : m.len), m.s);
    tok_mergemap_put(&L->t->merges, a, b, rank, c);
    return BJ_OK;
}

static bj_status tg_merges(tg_load *L) {
    const bj_gguf_kv *kv = bj_gguf_find_kv(L->g, "tokenizer.ggml.merges");
    uint64_t n = 0;
    if (kv && (kv->type != BJ_GGUF_ARRAY || kv->arr_type != BJ_GGUF_STRING || kv->n >= UINT32_MAX / 4))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'tokenizer.ggml.merges': expected an array of strings", L->g->path);
    if (kv) n = kv->n;
    if (!tok_mergemap_init(&L->t->merges, (size_t)n, &L->t->arena))
        return BJ_FAIL(L->err, BJ_E_NOMEM, "out of memory for %llu merges", (unsigned long long)n);
    char *cat = NULL;
    size_t cap = 0;
    bj_status s = BJ_OK;
    for (uint64_t i = 0; i < n && s == BJ_OK; i++) s = tg_merge(L, kv->strs[i], (uint32_t)i, &cat, &cap);
    free(cat);
    return s;
}

static bj_status tg_id(tg_load *L, const char *key, int32_t *id) {
    int64_t v = *id;
    BJ_TRY(bj_gguf_get_int(L->g, key, false, &v, L->err));
    if (v != *id && (v < 0 || v >= L->t->n_vocab))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key '%s': id %lld is outside the %d-token vocab", L->g->path, key,
                       (long long)v, (int)L->t->n_vocab);
    *id = (int32_t)v;
    return BJ_OK;
}

static bj_status tg_specials(tg_load *L) {
    bj_tokenizer *t = L->t;
    t->bos = t->eos = t->unk = -1;
    BJ_TRY(tg_id(L, "tokenizer.ggml.bos_token_id", &t->bos));
    BJ_TRY(tg_id(L, "tokenizer.ggml.eos_token_id", &t->eos));
    BJ_TRY(tg_id(L, "tokenizer.ggml.unknown_token_id", &t->unk));
    return bj_gguf_get_bool(L->g, "tokenizer.ggml.add_bos_token", false, &t->add_bos, L->err);
}

static bj_status tg_load_all(tg_load *L) {
    bj_gguf_str model;
    BJ_TRY(bj_gguf_get_str(L->g, "tokenizer.ggml.model", true, &model, L->err));
    if (str_is(model, "llama")) return tok_spm_load_gguf(L->t, L->g, L->err);
    if (!str_is(model, "gpt2"))
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'tokenizer.ggml.model': tokenizer \"%.*s\" is not supported "
                       "(gpt2 and llama are)", L->g->path, (int)(model.len > 64 ? 64 : model.len), model.s);
    BJ_TRY(tg_arrays(L));
    BJ_TRY(tg_pretok(L));
    BJ_TRY(tg_vocab(L));
    BJ_TRY(tg_merges(L));
    return tg_specials(L);
}

bj_status bj_tok_load_gguf(bj_tokenizer **out, const bj_gguf *g, bj_error *err) {
    *out = NULL;
    bj_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
    bj_arena_init(&t->arena);
    tg_load L = { .t = t, .g = g, .err = err };
    bj_status s = tg_load_all(&L);
    if (s != BJ_OK) { bj_tok_free(t); return s; }
    *out = t;
    return BJ_OK;
}

/* ---- export (for the writer) ---------------------------------------------------------------- */

/* A token's spelling in the file: vocab tokens in the byte-level alphabet, others as their text. */
static bool tg_spell(bj_tok_gguf_arrays *a, const bj_tokenizer *t, int32_t id, bj_gguf_str *out) {
    const char *p = t->piece[id];
    uint32_t n = t->piece_len[id];
    if (!(t->flags[id] & TOK_F_BYTELEVEL)) { *out = (bj_gguf_str){ p, n }; return true; }
    char *s = bj_arena_alloc(&a->arena, (size_t)n * 2 + 1, 1);
    if (!s) return false;
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) k += tg_cp_utf8(bj_tok_byte_to_cp((uint8_t)p[i]), s + k);
    *out = (bj_gguf_str){ s, k };
    return true;
}

static bool tg_export_tokens(bj_tok_gguf_arrays *a, const bj_tokenizer *t) {
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t f = t->flags[id];
        if (!f) {
            char buf[32];
            int k = snprintf(buf, sizeof buf, "[PAD%d]", (int)id);
            a->tokens[id] = (bj_gguf_str){ bj_arena_strndup(&a->arena, buf, (size_t)k), (uint64_t)k };
            a->types[id] = TT_UNUSED;
            if (!a->tokens[id].s) return false;
            continue;
        }
        a->types[id] = (f & TOK_F_ADDED) ? ((f & TOK_F_SPECIAL) ? TT_CONTROL : TT_USER) : TT_NORMAL;
        if (!tg_spell(a, t, id, &a->tokens[id])) return false;
    }
    return true;
}

typedef struct tg_rank { uint32_t rank1; int32_t l, r; } tg_rank;

static int tg_rank_cmp(const void *x, const void *y) {
    const tg_rank *a = x, *b = y;
    return a->rank1 < b->rank1 ? -1 : a->rank1 > b->rank1;
}

static bool tg_export_merges(bj_tok_gguf_arrays *a, const bj_tokenizer *t) {
    size_t cap = t->merges.e ? t->merges.mask + 1 : 0, n = 0;
    tg_rank *r = malloc((cap ? cap : 1) * sizeof *r);
    if (!r) return false;
    for (size_t i = 0; i < cap; i++)
        if (t->merges.e[i].rank1)
            r[n++] = (tg_rank){ t->merges.e[i].rank1, (int32_t)(t->merges.e[i].key >> 32), (int32_t)t->merges.e[i].key };
    qsort(r, n, sizeof *r, tg_rank_cmp);
    a->merges = bj_arena_alloc(&a->arena, (n ? n : 1) * sizeof *a->merges, 8);
    bool ok = a->merges != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        bj_gguf_str l = a->tokens[r[i].l], rr = a->tokens[r[i].r];
        char *s = bj_arena_alloc(&a->arena, (size_t)(l.len + rr.len + 2), 1);
        if (!(ok = s != NULL)) break;
        memcpy(s, l.s, (size_t)l.len);
        s[l.len] = ' ';
        memcpy(s + l.len + 1, rr.s, (size_t)rr.len);
        a->merges[i] = (bj_gguf_str){ s, l.len + rr.len + 1 };
    }
    a->n_merges = (uint32_t)n;
    free(r);
    return ok;
}

bj_status bj_tok_gguf_export(const bj_tokenizer *t, bj_tok_gguf_arrays *a, bj_error *err) {
    memset(a, 0, sizeof *a);
    bj_arena_init(&a->arena);
    if (t->spm) { /* the file spellings, scores and types as read (tok_spm.c) */
        a->spm = true, a->add_space_prefix = t->add_space_prefix, a->unk = t->unk;
        a->n_tokens = t->n_vocab;
        a->bos = t->bos, a->eos = t->eos, a->add_bos = t->add_bos;
        a->tokens = bj_arena_alloc(&a->arena, (size_t)t->n_vocab * sizeof *a->tokens + 1, 8);
        a->types = bj_arena_alloc(&a->arena, (size_t)t->n_vocab * sizeof *a->types + 1, 8);
        a->scores = bj_arena_alloc(&a->arena, (size_t)t->n_vocab * sizeof *a->scores + 1, 8);
        if (!a->tokens || !a->types || !a->scores || !t->spm_text) {
            bj_tok_gguf_arrays_free(a);
            return BJ_FAIL(err, BJ_E_NOMEM, "out of memory exporting the tokenizer");
        }
        for (int32_t i = 0; i < t->n_vocab; i++) {
            a->tokens[i] = (bj_gguf_str){ t->spm_text[i], strlen(t->spm_text[i]) };
            a->types[i] = t->spm_type[i];
            a->scores[i] = t->score[i];
        }
        return BJ_OK;
    }
    a->n_tokens = t->n_vocab;
    a->tokens = bj_arena_alloc(&a->arena, (size_t)t->n_vocab * sizeof *a->tokens + 1, 8);
    a->types = bj_arena_alloc(&a->arena, (size_t)t->n_vocab * sizeof *a->types + 1, 8);
    a->bos = t->bos, a->eos = t->eos, a->add_bos = t->add_bos;
    if (!a->tokens || !a->types || !tg_export_tokens(a, t) || !tg_export_merges(a, t)) {
        bj_tok_gguf_arrays_free(a);
        return BJ_FAIL(err, BJ_E_NOMEM, "out of memory exporting the tokenizer");
    }
    return BJ_OK;
}

void bj_tok_gguf_arrays_free(bj_tok_gguf_arrays *a) {
    bj_arena_free(&a->arena);
    memset(a, 0, sizeof *a);
}
