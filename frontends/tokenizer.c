/* frontends/tokenizer.c -- the Hugging Face tokenizer.json loader (formats.md §3.5): byte-level
 * BPE as HF `tokenizers` defines it. The encoder and decoder are in tok_bpe.c, the UTF-8 and
 * byte-alphabet helpers in tok_unicode.c, the shared structure in tok_impl.h.
 *
 * What is accepted: model.type "BPE" (vocab {token: id}; merges as "a b" strings or ["a", "b"]
 * pairs; ignore_merges; unk_token/fuse_unk), no normalizer, a pre_tokenizer that is ByteLevel
 * or a Sequence of Split(Regex or String, Isolated) steps ending in ByteLevel, and a ByteLevel
 * (or no) decoder. Anything else well-formed is BJ_E_UNSUPPORTED; anything malformed is
 * BJ_E_FORMAT with a message naming the file and the key.
 *
 * Invariants after loading: every id in [0, n_vocab) has flags and a piece (its raw bytes:
 * vocab strings are converted out of the byte-level alphabet here, so decoding is plain
 * concatenation); ids that no entry names are holes (flags 0, empty piece). Added-token ids
 * are the ids HF assigns (the model vocab's id when the content is a vocab token, else the
 * next free id); a file whose ids disagree with that is rejected rather than silently
 * renumbered. Merges are keyed by id pairs, as in HF. BOS/EOS/add_bos come from
 * tokenizer_config.json, falling back to the post_processor's template and to
 * generation_config.json. */
#include "frontends/tok_impl.h"
#include "frontends/fe_json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- hash maps (lookups are in tok_impl.h) ----------------------------------------------- */

static size_t tok_map_cap(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    return cap;
}

static bool tok_strmap_init(tok_strmap *m, size_t n) {
    size_t cap = tok_map_cap(n);
    m->e = calloc(cap, sizeof *m->e);
    m->mask = cap - 1;
    return m->e != NULL;
}

bool tok_strmap_init_arena(tok_strmap *m, size_t n, bj_arena *a) {
    size_t cap = tok_map_cap(n);
    m->e = bj_arena_alloc(a, cap * sizeof *m->e, 8);
    m->mask = cap - 1;
    return m->e != NULL;
}

/* Inserts s -> id unless s is present (the first id stays). The map must have room. */
void tok_strmap_put(tok_strmap *m, const char *s, size_t n, int32_t id) {
    size_t i = tok_hash_bytes(s, n) & m->mask;
    for (; m->e[i].s; i = (i + 1) & m->mask)
        if (m->e[i].len == n && memcmp(m->e[i].s, s, n) == 0) return;
    m->e[i] = (tok_strent){ s, n, id };
}

bool tok_mergemap_init(tok_mergemap *m, size_t n, bj_arena *a) {
    size_t cap = tok_map_cap(n);
    m->e = bj_arena_alloc(a, cap * sizeof *m->e, 8);
    m->mask = cap - 1;
    return m->e != NULL;
}

/* Inserts or overwrites (a, b) -> (rank, new_id). */
void tok_mergemap_put(tok_mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = tok_hash_u64(key) & m->mask;
    while (m->e[i].rank1 && m->e[i].key != key) i = (i + 1) & m->mask;
    m->e[i] = (tok_merge){ key, rank + 1, new_id };
}

static size_t tok_cp_to_utf8(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | cp >> 12); /* the byte alphabet stays below U+0800; kept general to U+FFFF */
    out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* ---- the added-token index: per trie (normalized or not), per first byte, longest first ---- */

typedef struct tok_added_rank { uint32_t key, len, index; } tok_added_rank;

static int tok_added_rank_cmp(const void *pa, const void *pb) {
    const tok_added_rank *a = pa, *b = pb;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

bool tok_build_added_index(bj_tokenizer *t) {
    t->added_order = bj_arena_alloc(&t->arena, (t->n_added + 1) * sizeof *t->added_order, 4);
    tok_added_rank *r = malloc((t->n_added + 1) * sizeof *r);
    if (!t->added_order || !r) { free(r); return false; }
    for (uint32_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        r[i] = (tok_added_rank){ (uint32_t)tok_added_bucket(a->normalized, (uint8_t)a->s[0]), (uint32_t)a->len, i };
    }
    qsort(r, t->n_added, sizeof *r, tok_added_rank_cmp);
    memset(t->added_start, 0, sizeof t->added_start);
    for (uint32_t i = 0; i < t->n_added; i++) {
        t->added_order[i] = r[i].index;
        t->added_start[r[i].key + 1]++;
    }
    for (int k = 0; k < 512; k++) t->added_start[k + 1] += t->added_start[k];
    free(r);
    return true;
}

/* The GPT-2 split pattern that ByteLevel(use_regex = true) applies. */
static const char tok_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct tok_load {
    bj_tokenizer *t;
    const char *path; /* tokenizer.json, for messages */
    json_t *root;
    tok_strmap vocab;     /* byte-level spelling -> id: the model vocab (merges look here) */
    tok_strmap added_map; /* content -> id of added tokens, in HF's token_to_id order */
    const char **spell;   /* id -> spelling as in the file (JSON-owned) */
    size_t *spell_len;
    int32_t bound;        /* ids must be below this: vocab entries + added entries */
    int32_t model_size;   /* HF's model.get_vocab_size(): the number of vocab entries */
    int32_t max_added;    /* the largest added-token id so far, or -1 */
    int32_t max_id;
    int32_t template_bos; /* the special token TemplateProcessing prepends, or -1 */
    bj_error *err;
} tok_load;

/* ---- small JSON helpers ---------------------------------------------------------------- */

static const char *tok_json_kind(const json_t *v) {
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return v ? "null" : "nothing (the key is missing)";
    }
    return "?";
}

/* A boolean member with a default; FORMAT if present but not a boolean (null = default). */
static bj_status tok_json_bool(tok_load *L, const json_t *obj, const char *key, const char *where,
                               bool dflt, bool *out) {
    const json_t *v = json_object_get(obj, key);
    *out = dflt;
    if (!v || json_is_null(v)) return BJ_OK;
    if (!json_is_boolean(v))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key '%s%s': expected a boolean, got %s", L->path,
                       where, key, tok_json_kind(v));
    *out = json_is_true(v);
    return BJ_OK;
}

/* The "type" string of a component object (pre_tokenizer, decoder, ...). */
static bj_status tok_json_type(tok_load *L, const json_t *obj, const char *where, const char **type) {
    const json_t *v = json_is_object(obj) ? json_object_get(obj, "type") : NULL;
    *type = "";
    if (!json_is_string(v))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key '%s': expected an object with a string \"type\"",
                       L->path, where);
    *type = json_string_value(v);
    return BJ_OK;
}

static bj_status tok_read_json(const char *path, bool required, json_t **out, bj_error *err) {
    *out = NULL;
    char *buf;
    size_t n;
    bj_status s = bj_read_file(path, &buf, &n, err);
    if (s != BJ_OK) return required ? s : BJ_OK;
    json_error_t je;
    bool oom;
    *out = bj_fe_json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je, &oom);
    free(buf);
    if (oom) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory parsing %zu bytes of JSON", path, n);
    if (!*out)
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: not valid JSON (line %d, column %d): %s", path, je.line,
                       je.column, je.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return BJ_FAIL(err, BJ_E_FORMAT, "%s: expected a JSON object at the top level", path);
    }
    return BJ_OK;
}

/* ---- vocab ------------------------------------------------------------------------------ */

static bj_status tok_set_spelling(tok_load *L, int32_t id, const char *s, size_t n, uint8_t flags) {
    L->spell[id] = s;
    L->spell_len[id] = n;
    L->t->flags[id] = flags;
    if (id > L->max_id) L->max_id = id;
    return BJ_OK;
}

static bj_status tok_vocab_entry(tok_load *L, const char *key, size_t klen, const json_t *v) {
    if (!json_is_integer(v))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.vocab' entry \"%.64s\": expected an integer id, got %s",
                       L->path, key, tok_json_kind(v));
    json_int_t id = json_integer_value(v);
    if (id < 0 || id >= L->bound)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.vocab' entry \"%.64s\": id %" JSON_INTEGER_FORMAT
                       " out of range [0, %d)", L->path, key, id, L->bound);
    if (L->t->flags[id])
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.vocab': id %" JSON_INTEGER_FORMAT
                       " is given to both \"%.64s\" and \"%.64s\"", L->path, id, L->spell[id], key);
    tok_strmap_put(&L->vocab, key, klen, (int32_t)id);
    return tok_set_spelling(L, (int32_t)id, key, klen, TOK_F_PRESENT | TOK_F_VOCAB);
}

static bj_status tok_load_vocab(tok_load *L, const json_t *model) {
    const json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.vocab': expected an object {token: id}, got %s",
                       L->path, tok_json_kind(vocab));
    const json_t *added = json_object_get(L->root, "added_tokens");
    size_t nv = json_object_size(vocab), na = json_is_array(added) ? json_array_size(added) : 0;
    if (nv + na > INT32_MAX / 2)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.vocab': %zu entries is too many", L->path, nv + na);
    L->bound = (int32_t)(nv + na);
    L->model_size = (int32_t)nv;
    bj_tokenizer *t = L->t;
    L->spell = calloc((size_t)L->bound + 1, sizeof *L->spell);
    L->spell_len = calloc((size_t)L->bound + 1, sizeof *L->spell_len);
    t->flags = bj_arena_alloc(&t->arena, (size_t)L->bound + 1, 1);
    if (!L->spell || !L->spell_len || !t->flags || !tok_strmap_init(&L->vocab, nv) ||
        !tok_strmap_init(&L->added_map, na))
        return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory for %zu tokens", L->path, nv + na);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
        BJ_TRY(tok_vocab_entry(L, key, klen, v));
    }
    return BJ_OK;
}

/* ---- added tokens ----------------------------------------------------------------------- */

/* HF's id for an added token (AddedVocabulary::add_tokens): an earlier added token with the
 * same content, else the model vocab's id, else the next id after the vocab and added ids. */
static int32_t tok_added_hf_id(tok_load *L, const char *s, size_t n, bool *is_new, bool *in_vocab) {
    int32_t id = tok_strmap_get(&L->added_map, s, n);
    *is_new = id < 0;
    if (id >= 0) return id;
    id = tok_strmap_get(&L->vocab, s, n);
    *in_vocab = id >= 0;
    if (id >= 0) return id;
    /* A new id: after the largest added id if that is past the vocab, else the vocab size. */
    return L->max_added >= L->model_size || L->model_size == 0 ? L->max_added + 1 : L->model_size;
}

static bj_status tok_added_flags(tok_load *L, const json_t *a, const char *where, tok_added *tk) {
    bool special, normalized, single_word;
    BJ_TRY(tok_json_bool(L, a, "special", where, false, &special));
    BJ_TRY(tok_json_bool(L, a, "normalized", where, !special, &normalized));
    BJ_TRY(tok_json_bool(L, a, "lstrip", where, false, &tk->lstrip));
    BJ_TRY(tok_json_bool(L, a, "rstrip", where, false, &tk->rstrip));
    BJ_TRY(tok_json_bool(L, a, "single_word", where, false, &single_word));
    if (single_word)
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key '%ssingle_word': single-word added tokens are not supported",
                       L->path, where);
    tk->special = special;
    tk->normalized = normalized;
    return BJ_OK;
}

static bj_status tok_added_entry(tok_load *L, const json_t *a, size_t i) {
    char where[64];
    snprintf(where, sizeof where, "added_tokens[%zu].", i);
    const json_t *c = json_object_get(a, "content"), *jid = json_object_get(a, "id");
    if (!json_is_object(a) || !json_is_string(c) || !json_is_integer(jid))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'added_tokens[%zu]': expected an object with an integer "
                       "\"id\" and a string \"content\"", L->path, i);
    tok_added tk = { .s = json_string_value(c), .len = json_string_length(c) };
    BJ_TRY(tok_added_flags(L, a, where, &tk));
    if (tk.len == 0) return BJ_OK; /* HF ignores empty added tokens */
    bool is_new, in_vocab = false;
    bj_tokenizer *t = L->t;
    int32_t id = tok_added_hf_id(L, tk.s, tk.len, &is_new, &in_vocab);
    json_int_t given = json_integer_value(jid);
    if (given != id || id >= L->bound)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'added_tokens[%zu].id': \"%.64s\" has id %" JSON_INTEGER_FORMAT
                       ", but its id must be %d (the vocab's id, or the next id after the vocab)",
                       L->path, i, tk.s, given, (int)id);
    if (!is_new) return BJ_OK; /* a repeat of an earlier entry: the first one is kept */
    if (!in_vocab && t->flags[id])
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'added_tokens[%zu].id': id %d of \"%.64s\" is already the "
                       "vocab's \"%.64s\"", L->path, i, (int)id, tk.s, L->spell[id]);
    tk.id = id;
    tk.s = bj_arena_strndup(&t->arena, tk.s, tk.len);
    if (!tk.s) return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
    t->added[t->n_added++] = tk;
    tok_strmap_put(&L->added_map, tk.s, tk.len, id);
    if (id > L->max_added) L->max_added = id;
    uint8_t fl = (uint8_t)(t->flags[id] | TOK_F_PRESENT | TOK_F_ADDED | (tk.special ? TOK_F_SPECIAL : 0));
    if (t->flags[id] & TOK_F_VOCAB) { t->flags[id] = fl; return BJ_OK; } /* keeps its vocab spelling */
    return tok_set_spelling(L, id, tk.s, tk.len, fl);
}

static bj_status tok_load_added(tok_load *L) {
    const json_t *arr = json_object_get(L->root, "added_tokens");
    if (!arr || json_is_null(arr)) return BJ_OK;
    if (!json_is_array(arr))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'added_tokens': expected an array, got %s", L->path,
                       tok_json_kind(arr));
    bj_tokenizer *t = L->t;
    t->added = bj_arena_alloc(&t->arena, (json_array_size(arr) + 1) * sizeof *t->added, 8);
    if (!t->added) return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
    for (size_t i = 0; i < json_array_size(arr); i++) BJ_TRY(tok_added_entry(L, json_array_get(arr, i), i));
    return BJ_OK;
}

/* ---- pieces: raw bytes of every token ------------------------------------------------------ */

/* HF's ByteLevel decoder: a token whose characters are all in the byte alphabet decodes to
 * those bytes; any other token decodes to its own UTF-8 text. */
static bj_status tok_make_pieces(tok_load *L) {
    bj_tokenizer *t = L->t;
    t->n_vocab = L->max_id + 1;
    t->piece = bj_arena_alloc(&t->arena, (size_t)t->n_vocab * sizeof *t->piece, 8);
    t->piece_len = bj_arena_alloc(&t->arena, (size_t)t->n_vocab * sizeof *t->piece_len, 8);
    if (!t->piece || !t->piece_len) return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n = L->spell_len[id], len;
        char *p = bj_arena_alloc(&t->arena, n + 1, 1);
        if (!p) return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
        if (n && bj_tok_bytelevel_to_bytes(L->spell[id], n, p, &len)) {
            t->flags[id] |= TOK_F_BYTELEVEL;
        } else {
            memcpy(p, n ? L->spell[id] : "", n);
            len = n;
        }
        t->piece[id] = p;
        t->piece_len[id] = (uint32_t)len;
    }
    return BJ_OK;
}

/* The model-vocab tokens spelled in the alphabet, by raw bytes: ignore_merges looks whole
 * pre-tokens up here (HF looks the mapped word up in the vocab, the same thing). */
static bj_status tok_make_words(tok_load *L) {
    bj_tokenizer *t = L->t;
    if (!tok_strmap_init_arena(&t->words, (size_t)L->model_size, &t->arena))
        return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->flags[id] & (TOK_F_VOCAB | TOK_F_BYTELEVEL)) == (TOK_F_VOCAB | TOK_F_BYTELEVEL))
            tok_strmap_put(&t->words, t->piece[id], t->piece_len[id], id);
    for (int b = 0; b < 256; b++) {
        char sp[4];
        size_t n = tok_cp_to_utf8(bj_tok_byte_to_cp((uint8_t)b), sp);
        t->byte_id[b] = tok_strmap_get(&L->vocab, sp, n);
    }
    return BJ_OK;
}

/* ---- merges ------------------------------------------------------------------------------ */

static bj_status tok_merge_parts(tok_load *L, const json_t *m, size_t i, const char **a, size_t *an,
                                 const char **b, size_t *bn) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m), *sp = memchr(s, ' ', json_string_length(m));
        if (!sp) goto bad;
        *a = s, *an = (size_t)(sp - s), *b = sp + 1, *bn = json_string_length(m) - *an - 1;
        return BJ_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0)), *an = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1)), *bn = json_string_length(json_array_get(m, 1));
        return BJ_OK;
    }
bad:
    return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.merges[%zu]': expected \"a b\" or [\"a\", \"b\"]",
                   L->path, i);
}

static bj_status tok_merge_entry(tok_load *L, const json_t *m, size_t i, char **cat, size_t *cat_cap) {
    const char *a = "", *b = "";
    size_t an = 0, bn = 0;
    BJ_TRY(tok_merge_parts(L, m, i, &a, &an, &b, &bn));
    int32_t ia = tok_strmap_get(&L->vocab, a, an), ib = tok_strmap_get(&L->vocab, b, bn);
    if (ia < 0 || ib < 0)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.merges[%zu]': \"%.*s\" is not in the vocab", L->path,
                       i, (int)(ia < 0 ? an : bn), ia < 0 ? a : b);
    if (an + bn > *cat_cap) {
        char *p = realloc(*cat, an + bn);
        if (!p) return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
        *cat = p, *cat_cap = an + bn;
    }
    memcpy(*cat, a, an);
    memcpy(*cat + an, b, bn);
    int32_t inew = tok_strmap_get(&L->vocab, *cat, an + bn);
    if (inew < 0)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.merges[%zu]': the merged token \"%.*s\" is not in "
                       "the vocab", L->path, i, (int)(an + bn), *cat);
    tok_mergemap_put(&L->t->merges, ia, ib, (uint32_t)i, inew); /* a repeated pair: the later rank wins, as in HF */
    return BJ_OK;
}

static bj_status tok_load_merges(tok_load *L, const json_t *model) {
    const json_t *merges = json_object_get(model, "merges");
    if (!merges || json_is_null(merges)) merges = NULL;
    else if (!json_is_array(merges))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.merges': expected an array, got %s", L->path,
                       tok_json_kind(merges));
    size_t n = merges ? json_array_size(merges) : 0;
    if (n >= UINT32_MAX / 4) return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.merges': too many", L->path);
    if (!tok_mergemap_init(&L->t->merges, n, &L->t->arena))
        return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory for %zu merges", L->path, n);
    char *cat = NULL;
    size_t cat_cap = 0;
    bj_status s = BJ_OK;
    for (size_t i = 0; i < n && s == BJ_OK; i++) s = tok_merge_entry(L, json_array_get(merges, i), i, &cat, &cat_cap);
    free(cat);
    return s;
}

/* ---- model options -------------------------------------------------------------------------- */

static bj_status tok_load_unk(tok_load *L, const json_t *model) {
    const json_t *unk = json_object_get(model, "unk_token");
    L->t->unk = -1;
    if (!unk || json_is_null(unk)) return BJ_OK;
    if (!json_is_string(unk))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.unk_token': expected a string, got %s", L->path,
                       tok_json_kind(unk));
    L->t->unk = tok_strmap_get(&L->vocab, json_string_value(unk), json_string_length(unk));
    if (L->t->unk < 0)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model.unk_token': \"%.64s\" is not in the vocab", L->path,
                       json_string_value(unk));
    return BJ_OK;
}

static bj_status tok_load_model_opts(tok_load *L, const json_t *model) {
    bool byte_fallback;
    BJ_TRY(tok_json_bool(L, model, "ignore_merges", "model.", false, &L->t->ignore_merges));
    BJ_TRY(tok_json_bool(L, model, "fuse_unk", "model.", false, &L->t->fuse_unk));
    BJ_TRY(tok_json_bool(L, model, "byte_fallback", "model.", false, &byte_fallback));
    if (byte_fallback)
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'model.byte_fallback': byte fallback is not supported "
                       "(byte-level BPE does not need it)", L->path);
    const json_t *d = json_object_get(model, "dropout");
    if (d && !json_is_null(d) && !(json_is_number(d) && json_number_value(d) == 0.0))
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'model.dropout': BPE dropout is not supported", L->path);
    static const char *const affixes[] = { "continuing_subword_prefix", "end_of_word_suffix" };
    for (size_t i = 0; i < BJ_COUNTOF(affixes); i++) {
        const json_t *v = json_object_get(model, affixes[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'model.%s': subword affixes are not supported",
                           L->path, affixes[i]);
    }
    return tok_load_unk(L, model);
}

static bj_status tok_load_model(tok_load *L) {
    const json_t *model = json_object_get(L->root, "model");
    const char *type;
    if (!json_is_object(model))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'model': expected an object, got %s", L->path,
                       tok_json_kind(model));
    BJ_TRY(tok_json_type(L, model, "model.type", &type));
    if (strcmp(type, "BPE") != 0)
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'model.type': \"%.64s\" models are not supported "
                       "(only \"BPE\")", L->path, type);
    BJ_TRY(tok_load_vocab(L, model));
    BJ_TRY(tok_load_added(L));
    BJ_TRY(tok_make_pieces(L));
    BJ_TRY(tok_make_words(L));
    BJ_TRY(tok_load_merges(L, model));
    return tok_load_model_opts(L, model);
}

/* ---- pre-tokenizer, normalizer, decoder ------------------------------------------------------ */

/* Compiles the pattern as written first, so that an error points into what the file says;
 * then the form rewritten for Oniguruma's character classes (bj_tok_regex_for_pcre2). */
static bj_status tok_compile(tok_load *L, tok_step *st, const char *pat, size_t n, bool literal,
                             const char *where) {
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL refuses UCP */
    st->re = pcre2_compile((PCRE2_SPTR)pat, n, opts, &code, &off, NULL);
    if (!st->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key '%s': bad regex at offset %zu: %s", L->path, where,
                       (size_t)off, (const char *)msg);
    }
    if (!literal) {
        size_t rn;
        char *rw = bj_tok_regex_for_pcre2(pat, n, &rn);
        if (!rw) return BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
        pcre2_code_free(st->re);
        st->re = pcre2_compile((PCRE2_SPTR)rw, rn, opts, &code, &off, NULL);
        free(rw);
        if (!st->re)
            return BJ_FAIL(L->err, BJ_E_INTERNAL, "%s: key '%s': the regex failed to compile after rewriting "
                           "its character classes (PCRE2 error %d)", L->path, where, code);
    }
    pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE); /* optional: the interpreter runs without it */
    return BJ_OK;
}

static bj_status tok_step_split(tok_load *L, const json_t *p, const char *where) {
    char key[128];
    bj_tokenizer *t = L->t;
    tok_step *st = &t->steps[t->n_steps++];
    const json_t *pat = json_object_get(p, "pattern"), *beh = json_object_get(p, "behavior");
    const json_t *re = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
    bool invert;
    BJ_TRY(tok_json_bool(L, p, "invert", where, false, &invert));
    if (!json_is_string(re) && !json_is_string(lit))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key '%spattern': expected {\"Regex\": ...} or {\"String\": ...}",
                       L->path, where);
    if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") != 0 || invert)
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key '%sbehavior': only Isolated, non-inverted splits are "
                       "supported", L->path, where);
    const json_t *s = re ? re : lit;
    snprintf(key, sizeof key, "%spattern.%s", where, re ? "Regex" : "String");
    st->kind = TOK_STEP_SPLIT;
    return tok_compile(L, st, json_string_value(s), json_string_length(s), !re, key);
}

static bj_status tok_step_bytelevel(tok_load *L, const json_t *p, const char *where) {
    bool prefix, use_regex;
    bj_tokenizer *t = L->t;
    tok_step *st = &t->steps[t->n_steps++];
    st->kind = TOK_STEP_BYTELEVEL;
    BJ_TRY(tok_json_bool(L, p, "add_prefix_space", where, true, &prefix));
    BJ_TRY(tok_json_bool(L, p, "use_regex", where, true, &use_regex));
    st->prefix_space = prefix;
    if (!use_regex) return BJ_OK;
    return tok_compile(L, st, tok_gpt2_pattern, sizeof tok_gpt2_pattern - 1, false, where);
}

static bj_status tok_load_step(tok_load *L, const json_t *p, const char *where) {
    const char *type;
    char key[96];
    snprintf(key, sizeof key, "%stype", where);
    BJ_TRY(tok_json_type(L, p, key, &type));
    if (L->t->n_steps > 0 && L->t->steps[L->t->n_steps - 1].kind == TOK_STEP_BYTELEVEL)
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key '%s': pre-tokenizers after ByteLevel are not supported",
                       L->path, key);
    if (L->t->n_steps == TOK_MAX_STEPS)
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key '%s': more than %d pre-tokenizers", L->path, key,
                       TOK_MAX_STEPS);
    if (strcmp(type, "Split") == 0) return tok_step_split(L, p, where);
    if (strcmp(type, "ByteLevel") == 0) return tok_step_bytelevel(L, p, where);
    return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key '%s': pre-tokenizer \"%.64s\" is not supported", L->path,
                   key, type);
}

static bj_status tok_load_pretok(tok_load *L) {
    const json_t *p = json_object_get(L->root, "pre_tokenizer");
    const char *type;
    if (!p || json_is_null(p))
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'pre_tokenizer': missing; only byte-level BPE "
                       "(a ByteLevel pre-tokenizer) is supported", L->path);
    BJ_TRY(tok_json_type(L, p, "pre_tokenizer.type", &type));
    if (strcmp(type, "Sequence") != 0) BJ_TRY(tok_load_step(L, p, "pre_tokenizer."));
    else {
        const json_t *arr = json_object_get(p, "pretokenizers");
        if (!json_is_array(arr))
            return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'pre_tokenizer.pretokenizers': expected an array, got %s",
                           L->path, tok_json_kind(arr));
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char where[64];
            snprintf(where, sizeof where, "pre_tokenizer.pretokenizers[%zu].", i);
            BJ_TRY(tok_load_step(L, json_array_get(arr, i), where));
        }
    }
    bj_tokenizer *t = L->t;
    if (t->n_steps == 0 || t->steps[t->n_steps - 1].kind != TOK_STEP_BYTELEVEL)
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'pre_tokenizer': no ByteLevel step; only byte-level "
                       "BPE is supported", L->path);
    return BJ_OK;
}

static bj_status tok_load_normalizer_decoder(tok_load *L) {
    const json_t *n = json_object_get(L->root, "normalizer"), *d = json_object_get(L->root, "decoder");
    const char *type;
    if (n && !json_is_null(n)) {
        BJ_TRY(tok_json_type(L, n, "normalizer.type", &type));
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'normalizer': normalizer \"%.64s\" is not supported",
                       L->path, type);
    }
    if (!d || json_is_null(d)) return BJ_OK;
    BJ_TRY(tok_json_type(L, d, "decoder.type", &type));
    if (strcmp(type, "ByteLevel") != 0)
        return BJ_FAIL(L->err, BJ_E_UNSUPPORTED, "%s: key 'decoder': decoder \"%.64s\" is not supported (only "
                       "ByteLevel)", L->path, type);
    return BJ_OK;
}

/* ---- post-processor: does it prepend a special token (the default BOS)? ---------------------- */

static int32_t tok_template_first(tok_load *L, const json_t *pp) {
    const json_t *first = json_array_get(json_object_get(pp, "single"), 0);
    const json_t *name = json_object_get(json_object_get(first, "SpecialToken"), "id");
    if (!json_is_string(name)) return -1;
    const json_t *spec = json_object_get(json_object_get(pp, "special_tokens"), json_string_value(name));
    const json_t *ids = json_object_get(spec, "ids");
    const json_t *id = json_array_get(ids, 0);
    if (json_array_size(ids) != 1 || !json_is_integer(id) || json_integer_value(id) < 0 ||
        json_integer_value(id) >= L->t->n_vocab || !L->t->flags[json_integer_value(id)])
        return -1;
    return (int32_t)json_integer_value(id);
}

static void tok_load_post(tok_load *L) {
    const json_t *pp = json_object_get(L->root, "post_processor");
    const json_t *type = json_object_get(pp, "type");
    L->template_bos = -1;
    if (!json_is_string(type)) return;
    if (strcmp(json_string_value(type), "TemplateProcessing") == 0) L->template_bos = tok_template_first(L, pp);
    if (strcmp(json_string_value(type), "Sequence") != 0) return;
    const json_t *arr = json_object_get(pp, "processors");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *p = json_array_get(arr, i);
        if (json_is_string(json_object_get(p, "type")) &&
            strcmp(json_string_value(json_object_get(p, "type")), "TemplateProcessing") == 0)
            L->template_bos = tok_template_first(L, p);
    }
}

/* ---- tokenizer_config.json / generation_config.json -------------------------------------------- */

/* HF's token_to_id: added tokens first, then the model vocab. */
static int32_t tok_lookup(tok_load *L, const char *s, size_t n) {
    int32_t id = tok_strmap_get(&L->added_map, s, n);
    return id >= 0 ? id : tok_strmap_get(&L->vocab, s, n);
}

/* "bos_token": "text" or {"content": "text"} or null. Sets *id (unchanged if absent). */
static bj_status tok_config_token(tok_load *L, const json_t *cfg, const char *cpath, const char *key, int32_t *id) {
    const json_t *v = json_object_get(cfg, key);
    if (!v) return BJ_OK;
    if (json_is_null(v)) { *id = -1; return BJ_OK; }
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key '%s': expected a string or {\"content\": string}", cpath, key);
    *id = tok_lookup(L, json_string_value(v), json_string_length(v));
    if (*id < 0)
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key '%s': \"%.64s\" is not a token of %s", cpath, key,
                       json_string_value(v), L->path);
    return BJ_OK;
}

/* generation_config.json "bos_token_id"/"eos_token_id": an id or a list (the first is used). */
static bj_status tok_gen_id(tok_load *L, const json_t *gen, const char *gpath, const char *key, int32_t *id) {
    const json_t *v = json_object_get(gen, key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!v || json_is_null(v)) return BJ_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= L->t->n_vocab ||
        !L->t->flags[json_integer_value(v)])
        return BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key '%s': expected a token id in [0, %d)", gpath, key,
                       (int)L->t->n_vocab);
    *id = (int32_t)json_integer_value(v);
    return BJ_OK;
}

static bj_status tok_load_gen_config(tok_load *L, const char *dir, bool want_bos, bool want_eos) {
    char path[4096];
    json_t *gen;
    BJ_TRY(bj_path_join(path, sizeof path, dir, "generation_config.json", L->err));
    BJ_TRY(tok_read_json(path, false, &gen, L->err));
    if (!gen) return BJ_OK;
    bj_status s = want_bos ? tok_gen_id(L, gen, path, "bos_token_id", &L->t->bos) : BJ_OK;
    if (s == BJ_OK && want_eos) s = tok_gen_id(L, gen, path, "eos_token_id", &L->t->eos);
    json_decref(gen);
    return s;
}

static bj_status tok_load_config(tok_load *L, const char *dir) {
    char path[4096];
    json_t *cfg;
    bj_tokenizer *t = L->t;
    BJ_TRY(bj_path_join(path, sizeof path, dir, "tokenizer_config.json", L->err));
    BJ_TRY(tok_read_json(path, false, &cfg, L->err));
    t->bos = L->template_bos;
    t->eos = -1;
    t->add_bos = L->template_bos >= 0;
    bj_status s = cfg ? tok_config_token(L, cfg, path, "bos_token", &t->bos) : BJ_OK;
    if (s == BJ_OK && cfg) s = tok_config_token(L, cfg, path, "eos_token", &t->eos);
    const json_t *ab = json_object_get(cfg, "add_bos_token");
    if (s == BJ_OK && ab && !json_is_null(ab) && !json_is_boolean(ab))
        s = BJ_FAIL(L->err, BJ_E_FORMAT, "%s: key 'add_bos_token': expected a boolean, got %s", path,
                    tok_json_kind(ab));
    if (json_is_boolean(ab)) t->add_bos = json_is_true(ab);
    bool want_bos = !cfg || !json_object_get(cfg, "bos_token");
    bool want_eos = !cfg || !json_object_get(cfg, "eos_token");
    json_decref(cfg);
    if (s == BJ_OK && (want_bos || want_eos)) s = tok_load_gen_config(L, dir, want_bos, want_eos);
    return s;
}

/* ---- entry points ------------------------------------------------------------------------------ */

static void tok_load_cleanup(tok_load *L) {
    free(L->vocab.e);
    free(L->added_map.e);
    free(L->spell);
    free(L->spell_len);
    json_decref(L->root);
}

static bj_status tok_load_all(tok_load *L, const char *dir) {
    BJ_TRY(tok_load_model(L));
    BJ_TRY(tok_load_normalizer_decoder(L));
    BJ_TRY(tok_load_pretok(L));
    tok_load_post(L);
    BJ_TRY(tok_load_config(L, dir));
    return tok_build_added_index(L->t) ? BJ_OK : BJ_FAIL(L->err, BJ_E_NOMEM, "%s: out of memory", L->path);
}

static bj_status bj_tok_load_hf_json(bj_tokenizer **out, const char *dir, const char *path, bj_error *err);

/* LLaMA / 1bitLLM: tokenizer.model (SentencePiece protobuf) with add_bos_token from
 * tokenizer_config.json (LlamaTokenizer's default: true). */
static bj_status tok_load_spm_model(bj_tokenizer **out, const char *dir, const char *model, bj_error *err) {
    char cfg[4096];
    bool add_bos = true;
    BJ_TRY(bj_path_join(cfg, sizeof cfg, dir, "tokenizer_config.json", err));
    json_t *root = NULL;
    if (access(cfg, R_OK) == 0) {
        BJ_TRY(tok_read_json(cfg, true, &root, err));
        const json_t *v = json_object_get(root, "add_bos_token");
        if (v && !json_is_null(v) && !json_is_boolean(v)) {
            json_decref(root);
            return BJ_FAIL(err, BJ_E_FORMAT, "%s: key 'add_bos_token': expected true or false", cfg);
        }
        if (json_is_boolean(v)) add_bos = json_is_true(v);
        json_decref(root);
    }
    bj_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory", model);
    bj_arena_init(&t->arena);
    bj_status s = tok_spm_load_model(t, model, add_bos, err);
    if (s != BJ_OK) { bj_tok_free(t); return s; }
    *out = t;
    return BJ_OK;
}

bj_status bj_tok_load_hf(bj_tokenizer **out, const char *dir, bj_error *err) {
    char path[4096], model[4096];
    bj_error local;
    *out = NULL;
    if (!err) err = &local; /* messages are composed from err->msg below */
    BJ_TRY(bj_path_join(path, sizeof path, dir, "tokenizer.json", err));
    BJ_TRY(bj_path_join(model, sizeof model, dir, "tokenizer.model", err));
    /* tokenizer.model (SentencePiece) when there is no tokenizer.json, or when that one is not a
     * byte-level BPE (LLaMA-2 style repos ship both; the .json is then a Metaspace one) */
    bool have_model = access(model, R_OK) == 0;
    if (have_model && access(path, R_OK) != 0) return tok_load_spm_model(out, dir, model, err);
    if (have_model) {
        bj_error e2 = { 0 };
        bj_status s = bj_tok_load_hf_json(out, dir, path, &e2);
        if (s == BJ_OK) return BJ_OK;
        if (s != BJ_E_UNSUPPORTED) { *err = e2; return s; }
        return tok_load_spm_model(out, dir, model, err);
    }
    return bj_tok_load_hf_json(out, dir, path, err);
}

static bj_status bj_tok_load_hf_json(bj_tokenizer **out, const char *dir, const char *path, bj_error *err) {
    *out = NULL;
    bj_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return BJ_FAIL(err, BJ_E_NOMEM, "%s: out of memory", path);
    bj_arena_init(&t->arena);
    tok_load L = { .t = t, .path = path, .err = err, .max_id = -1, .max_added = -1 };
    bj_status s = tok_read_json(path, true, &L.root, err);
    if (s == BJ_OK) s = tok_load_all(&L, dir);
    tok_load_cleanup(&L);
    if (s != BJ_OK) { bj_tok_free(t); return s; }
    *out = t;
    return BJ_OK;
}

void bj_tok_free(bj_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
    bj_arena_free(&t->arena);
    free(t);
}

int32_t bj_tok_vocab_size(const bj_tokenizer *t) { return t->n_vocab; }
int32_t bj_tok_bos(const bj_tokenizer *t) { return t->bos; }
int32_t bj_tok_eos(const bj_tokenizer *t) { return t->eos; }
bool bj_tok_add_bos(const bj_tokenizer *t) { return t->add_bos && t->bos >= 0; }

bool bj_tok_is_special(const bj_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->flags[id] & TOK_F_SPECIAL);
}

const char *bj_tok_piece(const bj_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || !t->flags[id]) return NULL;
    if (len) *len = t->piece_len[id];
    return t->piece[id];
}
