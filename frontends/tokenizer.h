/* frontends/tokenizer.h -- tokenizers (formats.md §2.4, §2.5, §3.5).
 *
 * One structure for every loader: a vocabulary of byte strings (the decoded bytes of each
 * token, so decoding is concatenation), BPE merge ranks, special tokens, BOS/EOS. The HF
 * loader reads tokenizer.json (byte-level BPE, LLaMA-3 split regex via PCRE2) and
 * tokenizer_config.json / generation_config.json for BOS and add_bos. A GGUF loader can
 * fill the same structure later. */
#ifndef BJ_FE_TOKENIZER_H
#define BJ_FE_TOKENIZER_H

#include "ir/ir.h"

typedef struct bj_tokenizer bj_tokenizer;

/* dir holds tokenizer.json (+ optional tokenizer_config.json). */
bj_status bj_tok_load_hf(bj_tokenizer **out, const char *dir, bj_error *err);
/* A tiktoken rank file (LLaMA-3's, as BitNet's gpu/tokenizer.model): one "base64(bytes) rank" line
 * per token, ranks 0, 1, 2, ... in order (id = rank); the LLaMA-3 split regex, ignore_merges, and
 * the 256 LLaMA-3 special tokens numbered from the line count (formats.md §2.4). tok_tiktoken.c. */
bj_status bj_tok_load_tiktoken(bj_tokenizer **out, const char *path, bj_error *err);
void bj_tok_free(bj_tokenizer *t);

int32_t bj_tok_vocab_size(const bj_tokenizer *t);
int32_t bj_tok_bos(const bj_tokenizer *t); /* -1 if none */
int32_t bj_tok_eos(const bj_tokenizer *t); /* -1 if none */
bool bj_tok_add_bos(const bj_tokenizer *t);
bool bj_tok_is_special(const bj_tokenizer *t, int32_t id);

/* Encodes UTF-8 text. Special tokens written in the text are matched when parse_special.
 * BOS is prepended when add_bos (and the tokenizer has one). *ids is malloc'd. */
bj_status bj_tok_encode(const bj_tokenizer *t, const char *text, size_t len, bool add_bos,
                        bool parse_special, int32_t **ids, size_t *n_ids, bj_error *err);
/* The raw bytes of one token (specials give their text). NULL for an id out of range. */
const char *bj_tok_piece(const bj_tokenizer *t, int32_t id, size_t *len);
/* Concatenated bytes of ids into a malloc'd NUL-terminated string (skip_special drops specials). */
bj_status bj_tok_decode(const bj_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                        char **out, size_t *out_len, bj_error *err);

/* Invalid UTF-8 given to bj_tok_encode (HF never sees any: its input is a Rust string) is kept,
 * never replaced: the split regex runs on each maximal valid run, each run of invalid bytes is
 * a pre-token of its own and BPE'd from its byte tokens. So decode(encode(x)) == x for any
 * bytes, and valid UTF-8 encodes exactly as HF tokenizers does. */

/* ---- UTF-8 and byte-level helpers (tok_unicode.c) ------------------------------------------
 * Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */

/* How many leading bytes of buf to emit now when streaming decoded tokens: n, less a trailing
 * sequence that is a valid but unfinished UTF-8 character (the next token's bytes may complete
 * it). Invalid bytes are never held back (no later byte can make them valid). Usage: append
 * each token's piece to a pending buffer, emit bj_utf8_complete_prefix(buf, n) bytes, keep the
 * rest; at the end of the stream emit whatever is left. */
size_t bj_utf8_complete_prefix(const char *buf, size_t n);
/* Length of the longest valid UTF-8 prefix of s. */
size_t bj_utf8_valid_prefix(const char *s, size_t n);
/* Decodes one character at s: its length (1..4) and *cp, or 0 if s starts with an invalid or
 * truncated sequence (or n == 0). cp may be NULL. */
int bj_utf8_decode1(const char *s, size_t n, uint32_t *cp);
/* Unicode White_Space (Rust's char::is_whitespace; HF's lstrip/rstrip of added tokens). */
bool bj_utf8_is_white_space(uint32_t cp);
/* GPT-2 byte-level alphabet (formats.md §2.4 step 3): a byte's code point, and back (-1 for a
 * code point outside the alphabet). */
uint32_t bj_tok_byte_to_cp(uint8_t b);
int bj_tok_cp_to_byte(uint32_t cp);
/* Converts a string written in the byte-level alphabet to its raw bytes; out needs n bytes.
 * False (out undefined) if s is not valid UTF-8 or has a character outside the alphabet. */
bool bj_tok_bytelevel_to_bytes(const char *s, size_t n, char *out, size_t *out_len);

#endif
