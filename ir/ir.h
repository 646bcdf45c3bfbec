/* ir/ir.h -- the graph IR (DESIGN.md "The graph IR", style.md C3/C4).
 *
 * A graph is an array of nodes in topological order; a node names its inputs by index into
 * that array, so graphs clone with memcpy and hash cleanly. Every node has one result whose
 * dtype and shape are stored on the node and re-derived by the verifier from the op's rule.
 * All memory (nodes, names) lives in the graph's arena, except weight data, which points
 * into mmapped model files (or into buffers owned by whoever repacked them).
 *
 * The textual form (printer/parser) looks like:
 *
 *   graph @kjv {max_seq=512}
 *   %0 = input : i32[T]
 *   %1 = weight "model.embed_tokens.weight" {scale=1} : bf16[4096,384]
 *   %2 = embed %1, %0 : f32[T,384]
 *   ...
 *   %99 = output %98 : f32[T,4096]
 *
 * Weights print as references (name, dtype, shape), never as data. */
#ifndef BJ_IR_H
#define BJ_IR_H

#include "ir/support.h"

#include <stdbool.h>
#include <stdio.h>

/* ---- dtypes ------------------------------------------------------------------------------ */
typedef enum bj_dtype {
#define BJ_DTYPE(id, text, bits, cls, doc) BJ_DT_##id,
#include "ir/ir_types.def"
#undef BJ_DTYPE
    BJ_DT_COUNT
} bj_dtype;

typedef enum bj_dtype_class { BJ_DTC_FLOAT, BJ_DTC_INT, BJ_DTC_ACT, BJ_DTC_TERNARY, BJ_DTC_BINARY } bj_dtype_class;

const char *bj_dtype_name(bj_dtype t);
bj_dtype_class bj_dtype_class_of(bj_dtype t);
/* The one kernel-variant id the IR knows (matmul_tk / bitlinear attribute `variant`): the
 * binary kernel, codegen's BJ_CG_V_BIN1 (static-asserted there). Binary weights need it and
 * every other variant (1 dot2, 2 bitplane, 3 wcode) needs ternary weights. */
#define BJ_IR_VARIANT_BIN1 4
bool bj_dtype_from_name(const char *s, size_t n, bj_dtype *out);
/* Weight dtypes whose values are ternary or binary (matmul_t's right operand). */
bool bj_dtype_is_lowbit(bj_dtype t);
/* Bytes of a 2-D tensor [rows, cols] (1-D: rows = 1) in this dtype; false on overflow.
 * For Q8ROW this includes the per-row f32 scales. */
bool bj_dtype_nbytes(bj_dtype t, uint64_t rows, uint64_t cols, uint64_t *out);

/* ---- shapes ------------------------------------------------------------------------------ */
#define BJ_MAX_DIMS 4
#define BJ_DIM_T (-1) /* the symbolic token-count dimension of a step */

typedef struct bj_shape {
    uint8_t ndim;
    int64_t d[BJ_MAX_DIMS];
} bj_shape;

static inline bj_shape bj_shape1(int64_t a) { return (bj_shape){ 1, { a } }; }
static inline bj_shape bj_shape2(int64_t a, int64_t b) { return (bj_shape){ 2, { a, b } }; }
bool bj_shape_eq(bj_shape a, bj_shape b);
/* Last dimension (the row length), and the product of the others with T counted as 1. */
static inline int64_t bj_shape_cols(bj_shape s) { return s.ndim ? s.d[s.ndim - 1] : 1; }
/* Writes a type as the text form spells it, e.g. "f32[T,384]", into buf and returns buf
 * (truncated to cap; BJ_TYPE_STR_MAX always fits). For messages, printer and parser. */
#define BJ_TYPE_STR_MAX 112
const char *bj_ir_type_str(bj_dtype dt, bj_shape s, char *buf, size_t cap);

/* ---- ops --------------------------------------------------------------------------------- */
typedef enum bj_op {
#define BJ_OP(id, text, nin, iattrs, fattrs, doc) BJ_OP_##id,
#include "ir/ir_ops.def"
#undef BJ_OP
    BJ_OP_COUNT
} bj_op;

#define BJ_MAX_IN 4
#define BJ_MAX_IATTR 4
#define BJ_MAX_FATTR 2

typedef struct bj_op_info {
    const char *name;
    int nin;
    int n_iattr, n_fattr;
    const char *iattr[BJ_MAX_IATTR]; /* attribute names, split from the table */
    const char *fattr[BJ_MAX_FATTR];
    const char *doc;
} bj_op_info;

const bj_op_info *bj_op_get(bj_op op);
const char *bj_op_name(bj_op op); /* "?" for an op id outside the table */
bool bj_op_from_name(const char *s, size_t n, bj_op *out);

/* ---- nodes and graphs -------------------------------------------------------------------- */
#define BJ_NONE UINT32_MAX

typedef struct bj_node {
    uint16_t op;      /* bj_op */
    uint8_t dtype;    /* bj_dtype of the result */
    uint8_t nin;
    uint32_t in[BJ_MAX_IN];
    bj_shape shape;
    int64_t iattr[BJ_MAX_IATTR];
    double fattr[BJ_MAX_FATTR];
    const char *name;  /* WEIGHT: tensor name (arena string); NULL otherwise */
    const void *data;  /* WEIGHT: bound bytes, not printed; NULL when unbound (parsed text) */
    uint64_t nbytes;
} bj_node;

typedef struct bj_graph {
    bj_arena arena;
    bj_node *nodes; /* malloc'd, grows by doubling */
    uint32_t n_nodes, cap;
    const char *name;
    int64_t max_seq; /* longest sequence the KV cache must hold */
} bj_graph;

bj_status bj_graph_init(bj_graph *g, const char *name, bj_error *err);
void bj_graph_free(bj_graph *g);
/* dst = a copy of src's nodes (names and weight data still point where src's do, so src must
 * outlive dst): a graph a compile may rewrite in place while src stays as it was. */
bj_status bj_graph_clone(bj_graph *dst, const bj_graph *src, bj_error *err);

/* ---- builder ------------------------------------------------------------------------------
 * bj_ir_add appends a node, infers its dtype and shape from the op rule and checks its
 * inputs; on error it returns BJ_NONE and fills err. Attribute arrays may be NULL (zeros).
 * Errors propagate: an input equal to BJ_NONE makes the call fail without overwriting err,
 * so a builder can chain calls and check once. */
uint32_t bj_ir_add(bj_graph *g, bj_op op, const uint32_t *in, int nin,
                   const int64_t *iattr, const double *fattr, bj_error *err);
uint32_t bj_ir_input(bj_graph *g, bj_error *err);
uint32_t bj_ir_weight(bj_graph *g, const char *name, bj_dtype dt, bj_shape shape, double scale,
                      const void *data, uint64_t nbytes, bj_error *err);
/* One-line helpers over bj_ir_add for the common ops. */
uint32_t bj_ir_unary(bj_graph *g, bj_op op, uint32_t a, bj_error *err);
uint32_t bj_ir_binary(bj_graph *g, bj_op op, uint32_t a, uint32_t b, bj_error *err);

/* Infers the result dtype and shape of node n from its op and inputs (the op's shape rule). */
bj_status bj_ir_infer(const bj_graph *g, const bj_node *n, bj_dtype *dt, bj_shape *shape, bj_error *err);

/* ---- verifier: topological order, arity, attributes, dtypes and shapes ---------------- */
bj_status bj_ir_verify(const bj_graph *g, bj_error *err);

/* ---- text form ---------------------------------------------------------------------------- */
bj_status bj_ir_print(const bj_graph *g, FILE *out);
/* Into a malloc'd string. */
bj_status bj_ir_print_str(const bj_graph *g, char **out, bj_error *err);
/* Parses text into an initialised-by-callee graph (weights unbound). Errors carry line:col. */
bj_status bj_ir_parse(bj_graph *g, const char *text, size_t len, bj_error *err);

/* Index of the (single) OUTPUT node, or BJ_NONE. */
uint32_t bj_ir_find_output(const bj_graph *g);

#endif
