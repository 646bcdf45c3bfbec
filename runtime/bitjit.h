/* bitjit.h -- the public C API of bitjit (libbitjit): load a BitNet model, tokenize and
 * detokenize, generate text with a per-token callback and sampling options, free.
 *
 * A model is either a model file or directory (HF safetensors + config.json + tokenizer.json;
 * its kernels are JIT-compiled for this CPU, with the on-disk kernel cache) or an
 * ahead-of-time library written by `bitjitc MODEL -o model.so` (its kernels are taken from the
 * library; a library built for CPU features this host lacks is refused with
 * BITJIT_E_UNSUPPORTED naming them, before any of its code runs).
 *
 * Errors: every function that can fail returns a bitjit_status and, when err is not NULL,
 * fills *err with the same code and a message naming the file, tensor or option at fault.
 * The library never prints and never exits. Memory the library hands out (token arrays,
 * text) is released with bitjit_free_buffer.
 *
 * Threads: a bitjit_model may be used by one thread at a time; distinct models are
 * independent. Only the symbols declared here are exported from libbitjit.so. */
#ifndef BITJIT_H
#define BITJIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BITJIT_API __attribute__((visibility("default")))

/* The version this header belongs to (bitjit_version() gives the library's, "MAJOR.MINOR.PATCH").
 * The shared library is libbitjit.so.0 (its ABI number; symbols carry the version BITJIT_0). */
#define BITJIT_VERSION_MAJOR 0
#define BITJIT_VERSION_MINOR 1
#define BITJIT_VERSION_PATCH 0

typedef enum bitjit_status {
    BITJIT_OK = 0,
    BITJIT_E_IO,          /* a file could not be opened, read, mapped or written */
    BITJIT_E_FORMAT,      /* malformed model, library or input */
    BITJIT_E_UNSUPPORTED, /* well-formed but not supported (arch, dtype, missing CPU features) */
    BITJIT_E_NOMEM,       /* out of memory */
    BITJIT_E_INVALID,     /* bad argument */
    BITJIT_E_LLVM,        /* the code generator failed */
    BITJIT_E_INTERNAL,    /* a bitjit bug */
} bitjit_status;

typedef struct bitjit_error {
    bitjit_status code;
    char message[1024];
} bitjit_error;

typedef struct bitjit_model bitjit_model;

typedef struct bitjit_load_options {
    int n_threads;          /* worker threads; 0 = the number of CPUs (at most 64) */
    const char *cache_dir;  /* kernel cache (JIT only); NULL = $XDG_CACHE_HOME/bitjit or ~/.cache/bitjit */
    bool no_cache;          /* neither read nor write the kernel cache */
    bool reference;         /* run the plain C reference executor instead of generated kernels */
    /* Appended in 0.x (fields above keep their offsets): the context (KV cache) in tokens, at
     * most the model's; 0 = the model's, capped to what fits in half of the memory available
     * (bitjit_context_length tells which). More than the model's is BITJIT_E_INVALID. */
    int64_t n_ctx;
    /* Appended in 0.x: the KV cache in f16 instead of f32 (half its bytes; logits within the
     * bound docs/perf.md states; the reference executor then stores f16 too). */
    bool kv_f16;
    /* Appended in 0.x: no quick kernel tune when this CPU's tuning database lacks the model's
     * shapes (by default the first load measures them, up to 8 s, and keeps the result in the
     * kernel cache directory). */
    bool no_autotune;
} bitjit_load_options;

typedef struct bitjit_sampling {
    float temperature;      /* 0 = greedy (default 0.8) */
    int32_t top_k;          /* 0 = off (default 40) */
    float top_p;            /* 1 = off (default 0.95) */
    float min_p;            /* 0 = off (default 0.05) */
    float repeat_penalty;   /* 1 = off (default 1) */
    int32_t repeat_last_n;  /* tokens the penalty looks back over (default 64) */
    uint64_t seed;          /* same seed, same samples (default 0) */
} bitjit_sampling;

/* Called for each generated token with its id and its bytes (piece may end inside a UTF-8
 * character that the next piece completes; special tokens give empty pieces). Return true to
 * go on, false to stop. */
typedef bool (*bitjit_token_fn)(void *user, int32_t token, const char *piece, size_t piece_len);

BITJIT_API const char *bitjit_version(void);
BITJIT_API const char *bitjit_status_name(bitjit_status s);

BITJIT_API void bitjit_load_options_default(bitjit_load_options *o);
/* opts may be NULL (defaults). On failure *out is NULL. */
BITJIT_API bitjit_status bitjit_load(bitjit_model **out, const char *path, const bitjit_load_options *opts,
                                     bitjit_error *err);
BITJIT_API void bitjit_free(bitjit_model *m);

BITJIT_API int32_t bitjit_vocab_size(const bitjit_model *m);
BITJIT_API int32_t bitjit_eos(const bitjit_model *m);  /* -1 if none */
/* The longest prompt + generation the model's KV cache holds. */
BITJIT_API int64_t bitjit_context_length(const bitjit_model *m);

/* Text (UTF-8; any bytes round-trip) to token ids; *ids is released with bitjit_free_buffer.
 * add_bos: prepend BOS when the model's tokenizer asks for one. */
BITJIT_API bitjit_status bitjit_tokenize(const bitjit_model *m, const char *text, size_t len, bool add_bos,
                                         int32_t **ids, size_t *n_ids, bitjit_error *err);
/* Token ids to a NUL-terminated string (*text released with bitjit_free_buffer). */
BITJIT_API bitjit_status bitjit_detokenize(const bitjit_model *m, const int32_t *ids, size_t n_ids,
                                           bool skip_special, char **text, size_t *len, bitjit_error *err);
BITJIT_API void bitjit_free_buffer(void *p);

BITJIT_API void bitjit_sampling_default(bitjit_sampling *s);
/* Generates up to n_predict tokens after the prompt ids (each reported to cb, which may be
 * NULL), stopping at EOS, when cb returns false, or when the context is full. Starts from an
 * empty context every call. sampling may be NULL (greedy). Generated ids go to out (capacity
 * n_predict) when not NULL; their count to *n_out when not NULL. */
BITJIT_API bitjit_status bitjit_generate_ids(bitjit_model *m, const int32_t *prompt, size_t n_prompt,
                                             int32_t n_predict, const bitjit_sampling *sampling,
                                             bitjit_token_fn cb, void *user, int32_t *out, size_t *n_out,
                                             bitjit_error *err);
/* The same from text: tokenized with BOS as the model asks. */
BITJIT_API bitjit_status bitjit_generate(bitjit_model *m, const char *prompt, int32_t n_predict,
                                         const bitjit_sampling *sampling, bitjit_token_fn cb, void *user,
                                         bitjit_error *err);

#ifdef __cplusplus
}
#endif
#endif
