/* frontends/tok_impl.h -- what tokenizer.c (loading), tok_bpe.c (encode/decode) and tok_spm.c share:
 * the bj_tokenizer structure and its two hash maps. Not for use outside frontends/tok*.c.
 *
 * Both maps are open-addressed with linear probing, power-of-two capacity at least twice
 * the entry count, so a probe always ends at an empty slot. */
#ifndef BJ_FE_TOK_IMPL_H
#define BJ_FE_TOK_IMPL_H

#include "frontends/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

enum {
    TOK_F_PRESENT = 1,   /* some entry names this id (0: a hole) */
    TOK_F_VOCAB = 2,     /* in model.vocab */
    TOK_F_ADDED = 4,     /* in added_tokens */
    TOK_F_SPECIAL = 8,   /* an added token with special = true */
    TOK_F_BYTELEVEL = 16 /* spelled in the byte-level alphabet (piece = its decoded bytes) */
};

#define TOK_MAX_STEPS 8

/* One pre-tokenizer step, applied to every piece the previous step produced. */
typedef enum tok_step_kind { TOK_STEP_SPLIT, TOK_STEP_BYTELEVEL } tok_step_kind;
typedef struct tok_step {
    tok_step_kind kind;
    pcre2_code *re;    /* Split: its pattern; ByteLevel: the GPT-2 pattern or NULL (no regex) */
    bool prefix_space; /* ByteLevel add_prefix_space */
} tok_step;

typedef struct tok_added {
    const char *s; /* the content, as matched in the text (JSON-owned during load, then copied) */
    size_t len;
    int32_t id;
    bool special, normalized, lstrip, rstrip;
} tok_added;

typedef struct tok_strent { const char *s; size_t len; int32_t id; } tok_strent;
typedef struct tok_strmap { tok_strent *e; size_t mask; } tok_strmap;

typedef struct tok_merge { uint64_t key; uint32_t rank1; int32_t new_id; } tok_merge; /* rank1 = rank + 1; 0 = empty */
typedef struct tok_mergemap { tok_merge *e; size_t mask; } tok_mergemap;

struct bj_tokenizer {
    bj_arena arena;            /* everything below that is not a PCRE2 object */
    int32_t n_vocab;           /* ids are [0, n_vocab) */
    uint8_t *flags;            /* TOK_F_* per id */
    const char **piece;        /* raw bytes per id (NUL-terminated; holes "") */
    uint32_t *piece_len;
    tok_strmap words;          /* raw bytes -> id of model-vocab tokens in the alphabet */
    tok_mergemap merges;       /* (left id, right id) -> rank, merged id */
    int32_t byte_id[256];      /* the model-vocab id of each single byte, or -1 */
    tok_added *added;          /* in file order, first occurrence of each content */
    uint32_t n_added;
    uint32_t *added_order;     /* added indices by (normalized, first byte, length descending) */
    uint32_t added_start[513]; /* bucket k: added_order[added_start[k] .. added_start[k + 1]) */
    tok_step steps[TOK_MAX_STEPS];
    int n_steps;
    bool ignore_merges, fuse_unk, add_bos;
    int32_t unk, bos, eos;
    /* SentencePiece-BPE (tok_spm.c, `llama` GGUFs): words maps every token's file spelling (with
     * U+2581 for spaces) to its id, byte_id holds the <0xXX> tokens, added is sorted by length
     * descending (llama.cpp's partition order) and merges/steps are unused. */
    bool spm, add_space_prefix;
    float *score;              /* SPM merge score per id (higher merges first) */
    uint8_t *spm_type;         /* SPM token type per id (1..6, as GGUF's token_type), for export */
    const char **spm_text;     /* SPM spelling per id (U+2581 for spaces, <0xXX>), for export */
};

/* The added-token bucket of a token in the normalized (1) or raw (0) trie by its first byte. */
static inline int tok_added_bucket(bool normalized, uint8_t first) { return (normalized ? 256 : 0) + first; }

/* tokenizer.c, shared with the GGUF loader (tok_gguf.c): map construction (the map must have
 * room: init with the final entry count) and the added-token index over t->added. */
bool tok_strmap_init_arena(tok_strmap *m, size_t n, bj_arena *a);
void tok_strmap_put(tok_strmap *m, const char *s, size_t n, int32_t id);
bool tok_mergemap_init(tok_mergemap *m, size_t n, bj_arena *a);
void tok_mergemap_put(tok_mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id);
bool tok_build_added_index(bj_tokenizer *t);

/* tok_unicode.c: an HF (Oniguruma) regex rewritten so that PCRE2 gives it the same character
 * classes; malloc'd and NUL-terminated, NULL when out of memory. */
char *bj_tok_regex_for_pcre2(const char *pat, size_t n, size_t *out_len);

/* tok_spm.c: the SentencePiece-BPE loader (called by bj_tok_load_gguf for tokenizer.ggml.model
 * "llama"; t is zeroed with its arena initialized) and the encoder/decoder that bj_tok_encode and
 * bj_tok_decode hand an spm tokenizer to. */
struct bj_gguf;
bj_status tok_spm_load_gguf(bj_tokenizer *t, const struct bj_gguf *g, bj_error *err);
/* SentencePiece's tokenizer.model (protobuf ModelProto, BPE models only) into the same encoder. */
bj_status tok_spm_load_model(bj_tokenizer *t, const char *path, bool add_bos, bj_error *err);
bj_status tok_spm_encode(const bj_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                         int32_t **ids, size_t *n_ids, bj_error *err);
bj_status tok_spm_decode(const bj_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **out,
                         size_t *out_len, bj_error *err);

static inline uint64_t tok_hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static inline uint64_t tok_hash_u64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull; /* splitmix64's finalizer */
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t n) {
    for (size_t i = tok_hash_bytes(s, n) & m->mask;; i = (i + 1) & m->mask) {
        const tok_strent *e = &m->e[i];
        if (!e->s) return -1;
        if (e->len == n && memcmp(e->s, s, n) == 0) return e->id;
    }
}

static inline const tok_merge *tok_mergemap_get(const tok_mergemap *m, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = tok_hash_u64(key) & m->mask;; i = (i + 1) & m->mask) {
        const tok_merge *e = &m->e[i];
        if (!e->rank1) return NULL;
        if (e->key == key) return e;
    }
}

#endif
