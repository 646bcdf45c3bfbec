/* frontends/safetensors.h -- safetensors reader (formats.md §3.1), single file or sharded.
 *
 * Files are mmapped. The header is validated before anything is used: header length inside
 * the file, well-formed JSON object, every dtype known, shapes non-negative, data_offsets
 * inside the data section, end - begin == product(shape) * element size (with overflow
 * checks), ranges disjoint, and the data section covered with no holes. A directory is
 * opened through model.safetensors.index.json (every shard it names, every tensor in the
 * weight_map present in its shard) or, without an index, model.safetensors. */
#ifndef BJ_FE_SAFETENSORS_H
#define BJ_FE_SAFETENSORS_H

#include "ir/ir.h"

#define BJ_ST_MAX_DIMS 8

typedef enum bj_st_dtype {
    BJ_ST_BOOL, BJ_ST_U8, BJ_ST_I8, BJ_ST_I16, BJ_ST_U16, BJ_ST_F16, BJ_ST_BF16, BJ_ST_I32,
    BJ_ST_U32, BJ_ST_F32, BJ_ST_F64, BJ_ST_I64, BJ_ST_U64, BJ_ST_C64, BJ_ST_F8_E4M3,
    BJ_ST_F8_E5M2, BJ_ST_F8_E8M0, BJ_ST_F8_E4M3FNUZ, BJ_ST_F8_E5M2FNUZ, BJ_ST_F4,
    BJ_ST_F6_E2M3, BJ_ST_F6_E3M2,
    BJ_ST_DTYPE_COUNT
} bj_st_dtype;

typedef struct bj_st_tensor {
    const char *name;
    bj_st_dtype dtype;
    int ndim;
    int64_t shape[BJ_ST_MAX_DIMS];
    const uint8_t *data; /* inside the file map; may be unaligned */
    uint64_t nbytes;
    const char *path;    /* the file it came from (for messages) */
} bj_st_tensor;

typedef struct bj_st_model {
    bj_arena arena;
    bj_fmap *maps;
    int n_maps;
    bj_st_tensor *tensors;
    int n_tensors;
} bj_st_model;

const char *bj_st_dtype_name(bj_st_dtype t);
/* The IR dtype with the same bytes (F32, F16, BF16, U8, I8, I32), or false. */
bool bj_st_dtype_to_ir(bj_st_dtype t, bj_dtype *out);

/* path: a .safetensors file or a model directory. */
bj_status bj_st_open(bj_st_model *m, const char *path, bj_error *err);
/* Validates one in-memory file image; used by bj_st_open and by the fuzz/bad-input tests.
 * Tensors are appended to m (whose arena must be initialised); path is for messages. */
bj_status bj_st_parse(bj_st_model *m, const uint8_t *data, size_t size, const char *path, bj_error *err);
const bj_st_tensor *bj_st_find(const bj_st_model *m, const char *name);
void bj_st_close(bj_st_model *m);

#endif
