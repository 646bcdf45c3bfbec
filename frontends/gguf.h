/* frontends/gguf.h -- GGUF reader and writer (formats.md §1, §2), the GGUF architecture
 * builder and the GGUF tokenizer loader.
 *
 * Reader: the file is mmapped and validated completely before anything is used: magic,
 * version 2 or 3, counts bounded by the bytes left, every string length and array length
 * checked against the end of the file, keys non-empty and unique, general.alignment a u32
 * power of two, tensor names unique and < 64 bytes, n_dims <= 4, the element count computed
 * with overflow checks, ne0 a multiple of the type's block size, each tensor's byte size
 * computed from its type (never read from the file), offsets aligned, in bounds (else the
 * file is truncated) and not overlapping. Type ids 36 and 39 are resolved by the fork clash
 * rule of formats.md §1.6. Unsupported types are errors that name the tensor and the type.
 *
 * Warnings (e.g. an all-zero ternary tensor) never print: they are flags and a message on the
 * bj_gguf, for the driver to show.
 *
 * Writer: bj_gguf_writer collects the metadata and the tensor table first (so offsets are
 * known), then streams each tensor's bytes in order, chunk by chunk, into a temporary file that
 * is renamed over the output only when everything was written. */
#ifndef BJ_FE_GGUF_H
#define BJ_FE_GGUF_H

#include "frontends/model_config.h"
#include "frontends/tokenizer.h"
#include "ir/ir.h"

#include <stdio.h>

/* ---- ids ---------------------------------------------------------------------------------- */
typedef enum bj_gguf_vtype {
    BJ_GGUF_U8 = 0, BJ_GGUF_I8, BJ_GGUF_U16, BJ_GGUF_I16, BJ_GGUF_U32, BJ_GGUF_I32, BJ_GGUF_F32,
    BJ_GGUF_BOOL, BJ_GGUF_STRING, BJ_GGUF_ARRAY, BJ_GGUF_U64, BJ_GGUF_I64, BJ_GGUF_F64,
    BJ_GGUF_VTYPE_COUNT
} bj_gguf_vtype;

/* ggml type ids as stored (upstream numbering; 36 is the bitnet.cpp fork's I2_S, §1.3). */
typedef enum bj_gguf_type {
    BJ_GGML_F32 = 0, BJ_GGML_F16 = 1, BJ_GGML_Q8_0 = 8, BJ_GGML_BF16 = 30, BJ_GGML_TQ1_0 = 34,
    BJ_GGML_TQ2_0 = 35, BJ_GGML_I2_S = 36, BJ_GGML_MXFP4_OR_TL2 = 39,
} bj_gguf_type;

#define BJ_GGUF_MAX_DIMS 4
#define BJ_GGUF_DEFAULT_ALIGNMENT 32
#define BJ_GGUF_MAX_NAME 63

/* Warning flags on a reader (bj_gguf.warnings). */
enum { BJ_GGUF_W_ZERO_TENSOR = 1, BJ_GGUF_W_GUESSED_ACT = 2, BJ_GGUF_W_UNTIED_HEAD = 4 };

typedef struct bj_gguf_str { const char *s; uint64_t len; } bj_gguf_str; /* into the map, no NUL */

typedef struct bj_gguf_kv {
    const char *key;        /* arena copy, NUL-terminated */
    bj_gguf_vtype type;
    bj_gguf_vtype arr_type; /* ARRAY: element type */
    uint64_t n;             /* ARRAY: element count; otherwise 1 */
    const uint8_t *data;    /* scalar bytes / first array element / string bytes */
    uint64_t len;           /* STRING: byte length */
    bj_gguf_str *strs;      /* ARRAY of STRING: the n strings (arena) */
} bj_gguf_kv;

typedef struct bj_gguf_tensor {
    const char *name;       /* arena copy */
    uint32_t type;          /* ggml id after §1.6 (36 = I2_S) */
    int ndim;
    int64_t ne[BJ_GGUF_MAX_DIMS]; /* ne[0] innermost; missing dims are 1 */
    uint64_t offset;        /* from the start of the data section */
    const uint8_t *data;
    uint64_t nbytes;        /* computed from type and ne */
} bj_gguf_tensor;

typedef struct bj_gguf {
    bj_arena arena;
    bj_fmap map;            /* when opened from a path */
    const uint8_t *base;
    size_t size;
    const char *path;       /* for messages */
    uint32_t version, alignment;
    uint64_t data_start;
    bj_gguf_kv *kv;
    uint64_t n_kv;
    bj_gguf_tensor *tensors;
    uint64_t n_tensors;
    const char *arch;       /* general.architecture, or NULL when absent */
    unsigned warnings;      /* BJ_GGUF_W_* */
    char warning[512];      /* the first warning's text */
} bj_gguf;

const char *bj_gguf_type_name(uint32_t type);
bool bj_gguf_arch_is_bitnet(const char *arch);

/* ---- reader (gguf.c) ------------------------------------------------------------------------ */
bj_status bj_gguf_open(bj_gguf *g, const char *path, bj_error *err);
/* Validates an in-memory image (kept borrowed; must outlive g). For tests and the fuzzer. */
bj_status bj_gguf_parse(bj_gguf *g, const uint8_t *data, size_t size, const char *path, bj_error *err);
void bj_gguf_close(bj_gguf *g);

const bj_gguf_kv *bj_gguf_find_kv(const bj_gguf *g, const char *key);
const bj_gguf_tensor *bj_gguf_find_tensor(const bj_gguf *g, const char *name);
/* Typed getters: BJ_E_FORMAT naming the key when it is present with another type; when it is
 * absent, BJ_E_FORMAT "missing required key" if required, else *out keeps its default. Integers
 * accept any integer type (llama.cpp writes u32 where the spec says u64). */
bj_status bj_gguf_get_int(const bj_gguf *g, const char *key, bool required, int64_t *out, bj_error *err);
bj_status bj_gguf_get_float(const bj_gguf *g, const char *key, bool required, double *out, bj_error *err);
bj_status bj_gguf_get_bool(const bj_gguf *g, const char *key, bool required, bool *out, bj_error *err);
bj_status bj_gguf_get_str(const bj_gguf *g, const char *key, bool required, bj_gguf_str *out, bj_error *err);
/* Element i of a numeric array as int64 / double (the caller checked i < n). */
int64_t bj_gguf_arr_int(const bj_gguf_kv *kv, uint64_t i);
double bj_gguf_arr_float(const bj_gguf_kv *kv, uint64_t i);
/* The ternary value (-1, 0, 1; 2 for a stray code 3) at row r, column c of an I2_S, TQ1_0 or TQ2_0
 * tensor, and the f16/f32 scale of the block holding it (the decode reference for tests). */
int bj_gguf_ternary_at(const bj_gguf_tensor *t, int64_t r, int64_t c, float *block_scale);
/* Records a warning (first text kept). */
void bj_gguf_warn(bj_gguf *g, unsigned flag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- model import (arch_bitnet_gguf.c) ------------------------------------------------------ */
bj_status bj_gguf_config(bj_gguf *g, bj_model_config *c, bj_error *err);
bj_status bj_fe_build_bitnet_gguf(bj_graph *gr, const bj_model_config *c, bj_gguf *g, bj_error *err);

/* ---- tokenizer (tok_gguf.c) ----------------------------------------------------------------- */
bj_status bj_tok_load_gguf(bj_tokenizer **out, const bj_gguf *g, bj_error *err);

/* A tokenizer as GGUF arrays (tokenizer.ggml.*): tokens spelled as the file wants them. */
typedef struct bj_tok_gguf_arrays {
    bj_arena arena;
    int32_t n_tokens;
    bj_gguf_str *tokens;
    int32_t *types;         /* 1 normal, 3 control, 4 user-defined, 5 unused */
    uint32_t n_merges;
    bj_gguf_str *merges;    /* "left right" by rank */
    int32_t bos, eos;
    bool add_bos;
    /* SentencePiece (tokenizer.ggml.model "llama"): scores per token, unk id, add_space_prefix;
     * tokens are the file spellings and types 1..6 */
    bool spm, add_space_prefix;
    float *scores;
    int32_t unk;
} bj_tok_gguf_arrays;
bj_status bj_tok_gguf_export(const bj_tokenizer *t, bj_tok_gguf_arrays *out, bj_error *err);
void bj_tok_gguf_arrays_free(bj_tok_gguf_arrays *a);

/* ---- writer (gguf_write.c) ------------------------------------------------------------------ */
typedef struct bj_gguf_writer bj_gguf_writer;

bj_status bj_gguf_writer_new(bj_gguf_writer **w, uint32_t alignment, bj_error *err);
void bj_gguf_writer_free(bj_gguf_writer *w); /* removes the temporary file if not finished */
bj_status bj_gguf_kv_str(bj_gguf_writer *w, const char *key, const char *val, bj_error *err);
bj_status bj_gguf_kv_u32(bj_gguf_writer *w, const char *key, uint32_t val, bj_error *err);
bj_status bj_gguf_kv_f32(bj_gguf_writer *w, const char *key, float val, bj_error *err);
bj_status bj_gguf_kv_bool(bj_gguf_writer *w, const char *key, bool val, bj_error *err);
bj_status bj_gguf_kv_arr_str(bj_gguf_writer *w, const char *key, const bj_gguf_str *v, uint64_t n, bj_error *err);
bj_status bj_gguf_kv_arr_i32(bj_gguf_writer *w, const char *key, const int32_t *v, uint64_t n, bj_error *err);
bj_status bj_gguf_kv_arr_f32(bj_gguf_writer *w, const char *key, const float *v, uint64_t n, bj_error *err);
/* Declares a tensor (ne as GGUF orders it); its size is computed from the type. */
bj_status bj_gguf_add_tensor(bj_gguf_writer *w, const char *name, uint32_t type, int ndim, const int64_t *ne,
                             bj_error *err);
/* Opens path's temporary sibling and writes the header, metadata and tensor table. */
bj_status bj_gguf_writer_begin(bj_gguf_writer *w, const char *path, bj_error *err);
/* Appends bytes of the current tensor (tensors in declaration order; padding is automatic). */
bj_status bj_gguf_writer_write(bj_gguf_writer *w, const void *data, size_t n, bj_error *err);
/* Checks every tensor got all its bytes, flushes, fsyncs and renames onto the output path. */
bj_status bj_gguf_writer_finish(bj_gguf_writer *w, bj_error *err);
/* Byte size of a tensor of this type and shape, or false (unsupported type, bad block multiple,
 * overflow). */
bool bj_gguf_tensor_nbytes(uint32_t type, int ndim, const int64_t *ne, uint64_t *out);

/* Encoders of one row of ternary values v[0..K) (codes -1/0/1) into GGUF blocks. */
void bj_gguf_pack_tq2_row(const int8_t *v, int64_t K, float d, uint8_t *out);
void bj_gguf_pack_tq1_row(const int8_t *v, int64_t K, float d, uint8_t *out);
/* I2_S packs the flattened tensor; rows of K with K*row0 % 128 == 0 can be packed one at a time:
 * the row's values go to out + (row0*K)/4. The scale goes into the 32-byte tail separately. */
void bj_gguf_pack_i2s(const int8_t *v, int64_t n, uint8_t *out);

/* ---- convert / synth (gguf_write.c): the library side of `bitjitc convert` / `synth` -------- */
typedef enum bj_gguf_outtype { BJ_GGUF_OUT_I2_S, BJ_GGUF_OUT_TQ1_0, BJ_GGUF_OUT_TQ2_0, BJ_GGUF_OUT_F16,
                               BJ_GGUF_OUT_BF16 } bj_gguf_outtype;
bool bj_gguf_outtype_parse(const char *s, bj_gguf_outtype *out);
const char *bj_gguf_outtype_name(bj_gguf_outtype t);

/* Progress callback: what (a tensor name), done/total tensors. */
typedef void (*bj_gguf_progress_fn)(void *ud, const char *what, uint64_t done, uint64_t total);

/* A loaded graph (from bj_model_load of an HF model) + its config and tokenizer to GGUF. */
bj_status bj_gguf_convert(const bj_graph *gr, const bj_model_config *c, const bj_tokenizer *tok,
                          bj_gguf_outtype type, const char *out_path, bj_gguf_progress_fn progress, void *ud,
                          bj_error *err);

typedef struct bj_gguf_shape {
    const char *name;
    int64_t hidden, intermediate, n_layer, n_head, n_kv_head, vocab, ctx;
    double rope_theta;
    bj_act act;
    bool llama;  /* arch llama (Llama block: no sub-norms, SiLU), untied output.weight */
} bj_gguf_shape;
/* "2b4t", "large", "3b", "falcon3-1b", "falcon3-3b", "falcon3-7b", "falcon3-10b", "llama3-8b" and
 * "tiny", "llama-tiny" (small shapes for tests); NULL if unknown. */
const bj_gguf_shape *bj_gguf_shape_find(const char *name);
/* Shape i of the table (for --help), NULL past the end. */
const bj_gguf_shape *bj_gguf_shape_at(size_t i);
bj_status bj_gguf_synth(const bj_gguf_shape *s, bj_gguf_outtype type, uint64_t seed, const char *out_path,
                        bj_gguf_progress_fn progress, void *ud, bj_error *err);

#endif
