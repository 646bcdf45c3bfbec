/* ir/ir.c -- dtype and op tables, shapes, graphs, the builder and the per-op shape rules.
 *
 * Both tables come from the .def X-macros, so adding a dtype or an op is one row there
 * plus (for an op) one rule function here. The rules in bj_ir_infer are the single
 * definition of what an op accepts, attributes included: the builder runs them on every
 * node it appends, the parser on every line it reads, and the verifier re-runs them to
 * check that a pass kept the stored dtypes and shapes honest. Keeping all three on one
 * function is what stops them from disagreeing.
 *
 * Invariant kept by the builder: g->nodes[0 .. n_nodes) is in topological order and every
 * node's stored dtype/shape equals what its rule infers. Weight names live in g->arena. */
#include "ir/ir.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

/* ---- dtypes ------------------------------------------------------------------------------ */
typedef struct bj_dtype_info {
    const char *name;
    unsigned bits;
    bj_dtype_class cls;
} bj_dtype_info;

static const bj_dtype_info bj_dtypes[BJ_DT_COUNT] = {
#define BJ_DTYPE(id, text, bits, cls, doc) [BJ_DT_##id] = { text, bits, BJ_DTC_##cls },
#include "ir/ir_types.def"
#undef BJ_DTYPE
};

const char *bj_dtype_name(bj_dtype t) {
    return (unsigned)t < BJ_DT_COUNT ? bj_dtypes[t].name : "?";
}

/* Out-of-range dtypes report INT: no rule accepts an INT where it wants anything else, and
 * the only INT operand (embed's ids) is checked by exact dtype. */
bj_dtype_class bj_dtype_class_of(bj_dtype t) {
    return (unsigned)t < BJ_DT_COUNT ? bj_dtypes[t].cls : BJ_DTC_INT;
}

bool bj_dtype_from_name(const char *s, size_t n, bj_dtype *out) {
    for (int t = 0; t < BJ_DT_COUNT; t++) {
        if (strlen(bj_dtypes[t].name) == n && memcmp(bj_dtypes[t].name, s, n) == 0) {
            *out = (bj_dtype)t;
            return true;
        }
    }
    return false;
}

bool bj_dtype_is_lowbit(bj_dtype t) {
    bj_dtype_class c = bj_dtype_class_of(t);
    return (unsigned)t < BJ_DT_COUNT && (c == BJ_DTC_TERNARY || c == BJ_DTC_BINARY);
}

static bool bj_dtype_is_float(bj_dtype t) {
    return (unsigned)t < BJ_DT_COUNT && bj_dtypes[t].cls == BJ_DTC_FLOAT;
}

static uint64_t bj_ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

/* T2HF packs four rows into each byte (u8[N/4][K]) and Q8ROW carries one f32 scale per row;
 * the GGUF block layouts (I2S, TQ1, TQ2, Q8_0) have their own sizes (formats.md §1.5);
 * every other dtype is a row of ceil(cols * bits / 8) bytes. */
bool bj_dtype_nbytes(bj_dtype t, uint64_t rows, uint64_t cols, uint64_t *out) {
    uint64_t row_bytes, bits;
    if ((unsigned)t >= BJ_DT_COUNT) return false;
    switch (t) {
    case BJ_DT_T2HF: return !bj_mul_overflow(bj_ceil_div(rows, 4), cols, out);
    case BJ_DT_Q8ROW:
        return !bj_add_overflow(cols, 4, &row_bytes) && !bj_mul_overflow(rows, row_bytes, out);
    case BJ_DT_I2S: /* flat 2-bit codes + a 32-byte tail holding the f32 scale */
        return !bj_mul_overflow(rows, cols, &bits) && !bj_add_overflow(bj_ceil_div(bits, 4), 32, out);
    case BJ_DT_TQ2: return !bj_mul_overflow(rows, bj_ceil_div(cols, 256) * 66, out);
    case BJ_DT_TQ1: return !bj_mul_overflow(rows, bj_ceil_div(cols, 256) * 54, out);
    case BJ_DT_Q8_0: return !bj_mul_overflow(rows, bj_ceil_div(cols, 32) * 34, out);
    default:
        if (bj_mul_overflow(cols, bj_dtypes[t].bits, &bits)) return false;
        return !bj_mul_overflow(rows, bj_ceil_div(bits, 8), out);
    }
}

/* ---- shapes ------------------------------------------------------------------------------ */
bool bj_shape_eq(bj_shape a, bj_shape b) {
    if (a.ndim != b.ndim || a.ndim > BJ_MAX_DIMS) return false;
    for (int i = 0; i < a.ndim; i++)
        if (a.d[i] != b.d[i]) return false;
    return true;
}

/* Appends to buf[*n..cap), truncating; *n stops at cap - 1 once full. */
__attribute__((format(printf, 4, 5)))
static void bj_append(char *buf, size_t cap, size_t *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (k > 0) *n = (size_t)k < cap - *n ? *n + (size_t)k : cap - 1;
}

const char *bj_ir_type_str(bj_dtype dt, bj_shape s, char *buf, size_t cap) {
    size_t n = 0;
    int nd = s.ndim <= BJ_MAX_DIMS ? s.ndim : BJ_MAX_DIMS;
    if (!cap) return buf;
    buf[0] = 0;
    bj_append(buf, cap, &n, "%s[", bj_dtype_name(dt));
    for (int i = 0; i < nd; i++) {
        if (s.d[i] == BJ_DIM_T) bj_append(buf, cap, &n, "%sT", i ? "," : "");
        else bj_append(buf, cap, &n, "%s%lld", i ? "," : "", (long long)s.d[i]);
    }
    bj_append(buf, cap, &n, "%s]", s.ndim > BJ_MAX_DIMS ? ",..." : "");
    return buf;
}

static bool bj_shape_is_act(bj_shape s) { return s.ndim == 2 && s.d[0] == BJ_DIM_T && s.d[1] > 0; }
static bool bj_shape_is_mat(bj_shape s) { return s.ndim == 2 && s.d[0] > 0 && s.d[1] > 0; }
static bool bj_shape_is_vec(bj_shape s) { return s.ndim == 1 && s.d[0] > 0; }

/* ---- ops --------------------------------------------------------------------------------- */
#define BJ_OP(id, text, nin, iattrs, fattrs, doc) \
    _Static_assert((nin) <= BJ_MAX_IN, "op " text " has more inputs than BJ_MAX_IN");
#include "ir/ir_ops.def"
#undef BJ_OP

typedef struct bj_op_row {
    const char *name;
    int nin;
    const char *iattrs, *fattrs, *doc;
} bj_op_row;

static const bj_op_row bj_op_rows[BJ_OP_COUNT] = {
#define BJ_OP(id, text, nin, iattrs, fattrs, doc) [BJ_OP_##id] = { text, nin, iattrs, fattrs, doc },
#include "ir/ir_ops.def"
#undef BJ_OP
};

/* The .def rows spell attribute names as one comma-separated string, which C cannot split
 * at compile time; bj_op_info wants them as separate strings. So the split table is built
 * exactly once (call_once makes that thread-safe) and is read-only from then on. */
#define BJ_ATTR_TEXT_MAX 64
typedef struct bj_op_tables {
    bj_op_info info[BJ_OP_COUNT];
    char text[BJ_OP_COUNT][2][BJ_ATTR_TEXT_MAX];
} bj_op_tables;

static bj_op_tables bj_ops;
static once_flag bj_ops_once = ONCE_FLAG_INIT;

/* Splits "a,b,c" into buf and names[]; returns the count. Table bugs abort. */
static int bj_op_split(const char *list, char *buf, const char **names, int max) {
    int n = 0;
    BJ_ASSERT(strlen(list) < BJ_ATTR_TEXT_MAX);
    strcpy(buf, list);
    for (char *p = buf; *p;) {
        BJ_ASSERT(n < max);
        names[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma) break;
        *comma = 0;
        p = comma + 1;
    }
    return n;
}

static void bj_op_tables_build(void) {
    for (int op = 0; op < BJ_OP_COUNT; op++) {
        const bj_op_row *r = &bj_op_rows[op];
        bj_op_info *o = &bj_ops.info[op];
        o->name = r->name;
        o->nin = r->nin;
        o->doc = r->doc;
        o->n_iattr = bj_op_split(r->iattrs, bj_ops.text[op][0], o->iattr, BJ_MAX_IATTR);
        o->n_fattr = bj_op_split(r->fattrs, bj_ops.text[op][1], o->fattr, BJ_MAX_FATTR);
    }
}

const bj_op_info *bj_op_get(bj_op op) {
    if ((unsigned)op >= BJ_OP_COUNT) return NULL;
    call_once(&bj_ops_once, bj_op_tables_build);
    return &bj_ops.info[op];
}

const char *bj_op_name(bj_op op) {
    const bj_op_info *o = bj_op_get(op);
    return o ? o->name : "?";
}

bool bj_op_from_name(const char *s, size_t n, bj_op *out) {
    for (int op = 0; op < BJ_OP_COUNT; op++) {
        const char *name = bj_op_rows[op].name;
        if (strlen(name) == n && memcmp(name, s, n) == 0) {
            *out = (bj_op)op;
            return true;
        }
    }
    return false;
}

/* ---- graphs ------------------------------------------------------------------------------ */
static bool bj_name_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

/* The name is printed after '@', where the parser accepts only [A-Za-z0-9_.-]; so other
 * bytes become '_' here rather than failing on, say, a model directory with a space. */
bj_status bj_graph_init(bj_graph *g, const char *name, bj_error *err) {
    memset(g, 0, sizeof *g);
    bj_arena_init(&g->arena);
    if (!name || !*name) name = "graph";
    char *copy = bj_arena_strdup(&g->arena, name);
    if (!copy) return BJ_FAIL(err, BJ_E_NOMEM, "graph @%s: out of memory", name);
    for (char *p = copy; *p; p++)
        if (!bj_name_char_ok(*p)) *p = '_';
    g->name = copy;
    return BJ_OK;
}

bj_status bj_graph_clone(bj_graph *dst, const bj_graph *src, bj_error *err) {
    BJ_TRY(bj_graph_init(dst, src->name, err));
    dst->max_seq = src->max_seq;
    if (!src->n_nodes) return BJ_OK;
    if (!(dst->nodes = malloc((size_t)src->n_nodes * sizeof *dst->nodes))) {
        bj_graph_free(dst);
        return BJ_FAIL(err, BJ_E_NOMEM, "graph @%s: out of memory", src->name);
    }
    memcpy(dst->nodes, src->nodes, (size_t)src->n_nodes * sizeof *dst->nodes);
    dst->n_nodes = dst->cap = src->n_nodes;
    return BJ_OK;
}

void bj_graph_free(bj_graph *g) {
    free(g->nodes);
    bj_arena_free(&g->arena);
    memset(g, 0, sizeof *g);
}

/* ---- shape rules -------------------------------------------------------------------------
 * One function per op. Each checks the attributes and operands of c->n and writes the
 * result type; failures name the op, the node and the offending operand. */
typedef struct bj_rule_cx {
    const bj_graph *g;
    const bj_node *n;
    const bj_node *in[BJ_MAX_IN];
    uint32_t idx; /* the node's index (or the index it would get when appended) */
    bj_error *err;
} bj_rule_cx;

typedef bj_status (*bj_rule_fn)(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s);

__attribute__((format(printf, 2, 3)))
static bj_status bj_rule_fail(const bj_rule_cx *c, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return BJ_FAIL(c->err, BJ_E_INVALID, "%s %%%u: %s", bj_op_name((bj_op)c->n->op), c->idx, msg);
}

static const char *bj_in_type(const bj_rule_cx *c, int i, char *buf) {
    return bj_ir_type_str((bj_dtype)c->in[i]->dtype, c->in[i]->shape, buf, BJ_TYPE_STR_MAX);
}

/* Operand i must be an activation dt[T,D]. */
static bj_status bj_want_act(const bj_rule_cx *c, int i, const char *role, bj_dtype dt) {
    char buf[BJ_TYPE_STR_MAX];
    if (c->in[i]->dtype == dt && bj_shape_is_act(c->in[i]->shape)) return BJ_OK;
    return bj_rule_fail(c, "%s %%%u must be %s[T,D], got %s", role, c->n->in[i],
                        bj_dtype_name(dt), bj_in_type(c, i, buf));
}

/* Operand i must be a concrete matrix [N,K] (vec: a vector [D]) of an accepted dtype. */
static bj_status bj_want_const(const bj_rule_cx *c, int i, const char *role, bool vec,
                               bool (*ok)(bj_dtype), const char *what) {
    char buf[BJ_TYPE_STR_MAX];
    bj_shape s = c->in[i]->shape;
    if (ok((bj_dtype)c->in[i]->dtype) && (vec ? bj_shape_is_vec(s) : bj_shape_is_mat(s))) return BJ_OK;
    return bj_rule_fail(c, "%s %%%u must be a %s %s, got %s", role, c->n->in[i], what,
                        vec ? "vector [D]" : "matrix [N,K]", bj_in_type(c, i, buf));
}

/* The activation's row length must equal the weight's column count K. */
static bj_status bj_want_k(const bj_rule_cx *c) {
    int64_t k_act = c->in[0]->shape.d[1], k_w = c->in[1]->shape.d[1];
    if (k_act == k_w) return BJ_OK;
    return bj_rule_fail(c, "weight %%%u has %lld columns, activation %%%u has %lld", c->n->in[1],
                        (long long)k_w, c->n->in[0], (long long)k_act);
}

/* Operand i (an activation) must have heads * head_dim columns. */
static bj_status bj_want_heads(const bj_rule_cx *c, int i, const char *role, int64_t heads,
                               int64_t head_dim, const char *heads_name) {
    int64_t want;
    if (__builtin_mul_overflow(heads, head_dim, &want))
        return bj_rule_fail(c, "%s * head_dim overflows", heads_name);
    if (c->in[i]->shape.d[1] == want) return BJ_OK;
    return bj_rule_fail(c, "%s %%%u has %lld columns, %s*head_dim = %lld*%lld = %lld", role,
                        c->n->in[i], (long long)c->in[i]->shape.d[1], heads_name,
                        (long long)heads, (long long)head_dim, (long long)want);
}

static bj_status bj_want_positive(const bj_rule_cx *c, const char *name, double v) {
    if (isfinite(v) && v > 0) return BJ_OK;
    return bj_rule_fail(c, "%s must be positive and finite, got %.17g", name, v);
}

static bj_status bj_rule_input(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    *dt = BJ_DT_I32;
    *s = bj_shape1(BJ_DIM_T);
    return BJ_OK;
}

/* Weight names print as quoted strings; control bytes would break the one-line form. */
static bj_status bj_weight_check_name(const bj_rule_cx *c) {
    const char *name = c->n->name;
    if (!name || !*name) return bj_rule_fail(c, "weight name is empty");
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return bj_rule_fail(c, "weight name has control byte 0x%02x", *p);
    return BJ_OK;
}

static bj_status bj_weight_check_type(const bj_rule_cx *c, uint64_t *nbytes) {
    char buf[BJ_TYPE_STR_MAX];
    bj_dtype dt = (bj_dtype)c->n->dtype;
    bj_shape s = c->n->shape;
    const char *type = bj_ir_type_str(dt, s, buf, sizeof buf);
    if ((unsigned)dt >= BJ_DT_COUNT || bj_dtype_class_of(dt) == BJ_DTC_ACT)
        return bj_rule_fail(c, "weight \"%s\" has dtype %s, which is not a weight dtype", c->n->name, type);
    if (!bj_shape_is_vec(s) && !bj_shape_is_mat(s))
        return bj_rule_fail(c, "weight \"%s\" must be 1-D or 2-D with positive dims, got %s", c->n->name, type);
    uint64_t rows = s.ndim == 2 ? (uint64_t)s.d[0] : 1, cols = (uint64_t)s.d[s.ndim - 1];
    if (!bj_dtype_nbytes(dt, rows, cols, nbytes))
        return bj_rule_fail(c, "weight \"%s\" of type %s is too large", c->n->name, type);
    return BJ_OK;
}

/* Lowbit weights mean values * scale; float weights carry their values, so their scale
 * must be exactly 1 or an executor that ignores it would silently differ. */
static bj_status bj_weight_check_scale(const bj_rule_cx *c) {
    double scale = c->n->fattr[0];
    if (!bj_dtype_is_lowbit((bj_dtype)c->n->dtype)) {
        if (scale == 1.0) return BJ_OK;
        return bj_rule_fail(c, "weight \"%s\" is %s, its scale must be 1, got %.17g", c->n->name,
                            bj_dtype_name((bj_dtype)c->n->dtype), scale);
    }
    return bj_want_positive(c, "scale", scale);
}

static bj_status bj_rule_weight(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    uint64_t want = 0;
    BJ_TRY(bj_weight_check_name(c));
    BJ_TRY(bj_weight_check_type(c, &want));
    BJ_TRY(bj_weight_check_scale(c));
    if (c->n->data ? c->n->nbytes != want : c->n->nbytes != 0)
        return bj_rule_fail(c, "weight \"%s\" is bound to %llu bytes, its type needs %llu%s", c->n->name,
                            (unsigned long long)c->n->nbytes, (unsigned long long)want,
                            c->n->data ? "" : " (and unbound weights must have nbytes 0)");
    *dt = (bj_dtype)c->n->dtype;
    *s = c->n->shape;
    return BJ_OK;
}

static bj_status bj_rule_weight_quant(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    int64_t mode = c->n->iattr[0];
    if (mode != 0 && mode != 1)
        return bj_rule_fail(c, "mode must be 0 (ternary t8) or 1 (binary b8), got %lld", (long long)mode);
    BJ_TRY(bj_want_const(c, 0, "master weight", false, bj_dtype_is_float, "float"));
    *dt = mode == 0 ? BJ_DT_T8 : BJ_DT_B8;
    *s = c->in[0]->shape;
    return BJ_OK;
}

static bj_status bj_rule_embed(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    char buf[BJ_TYPE_STR_MAX];
    BJ_TRY(bj_want_const(c, 0, "table", false, bj_dtype_is_float, "float"));
    const bj_node *ids = c->in[1];
    if (ids->dtype != BJ_DT_I32 || !bj_shape_eq(ids->shape, bj_shape1(BJ_DIM_T)))
        return bj_rule_fail(c, "ids %%%u must be i32[T], got %s", c->n->in[1], bj_in_type(c, 1, buf));
    *dt = BJ_DT_F32;
    *s = bj_shape2(BJ_DIM_T, c->in[0]->shape.d[1]);
    return BJ_OK;
}

static bj_status bj_rule_rmsnorm(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    BJ_TRY(bj_want_positive(c, "eps", c->n->fattr[0]));
    BJ_TRY(bj_want_act(c, 0, "input", BJ_DT_F32));
    BJ_TRY(bj_want_const(c, 1, "gain", true, bj_dtype_is_float, "float"));
    int64_t d = c->in[0]->shape.d[1], gd = c->in[1]->shape.d[0];
    if (d != gd)
        return bj_rule_fail(c, "gain %%%u has %lld elements, input %%%u has %lld columns", c->n->in[1],
                            (long long)gd, c->n->in[0], (long long)d);
    *dt = BJ_DT_F32;
    *s = c->in[0]->shape;
    return BJ_OK;
}

static bj_status bj_rule_act_quant(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    BJ_TRY(bj_want_act(c, 0, "input", BJ_DT_F32));
    *dt = BJ_DT_Q8ROW;
    *s = c->in[0]->shape;
    return BJ_OK;
}

static bj_status bj_rule_matmul_t(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    BJ_TRY(bj_want_act(c, 0, "activation", BJ_DT_Q8ROW));
    BJ_TRY(bj_want_const(c, 1, "weight", false, bj_dtype_is_lowbit, "ternary or binary"));
    BJ_TRY(bj_want_k(c));
    *dt = BJ_DT_F32;
    *s = bj_shape2(BJ_DIM_T, c->in[1]->shape.d[0]);
    return BJ_OK;
}

static bj_status bj_rule_matmul_f(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    BJ_TRY(bj_want_act(c, 0, "activation", BJ_DT_F32));
    BJ_TRY(bj_want_const(c, 1, "weight", false, bj_dtype_is_float, "float"));
    BJ_TRY(bj_want_k(c));
    *dt = BJ_DT_F32;
    *s = bj_shape2(BJ_DIM_T, c->in[1]->shape.d[0]);
    return BJ_OK;
}

static bj_status bj_rule_rope(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    int64_t n_head = c->n->iattr[0], head_dim = c->n->iattr[1];
    if (n_head <= 0) return bj_rule_fail(c, "n_head must be positive, got %lld", (long long)n_head);
    if (head_dim <= 0 || head_dim % 2)
        return bj_rule_fail(c, "head_dim must be positive and even, got %lld", (long long)head_dim);
    BJ_TRY(bj_want_positive(c, "theta", c->n->fattr[0]));
    BJ_TRY(bj_want_act(c, 0, "input", BJ_DT_F32));
    BJ_TRY(bj_want_heads(c, 0, "input", n_head, head_dim, "n_head"));
    *dt = BJ_DT_F32;
    *s = c->in[0]->shape;
    return BJ_OK;
}

static bj_status bj_attention_attrs(const bj_rule_cx *c) {
    const int64_t *a = c->n->iattr; /* layer, n_head, n_kv, head_dim */
    if (a[0] < 0) return bj_rule_fail(c, "layer must be >= 0, got %lld", (long long)a[0]);
    if (a[1] <= 0) return bj_rule_fail(c, "n_head must be positive, got %lld", (long long)a[1]);
    if (a[2] <= 0) return bj_rule_fail(c, "n_kv must be positive, got %lld", (long long)a[2]);
    if (a[3] <= 0) return bj_rule_fail(c, "head_dim must be positive, got %lld", (long long)a[3]);
    if (a[1] % a[2])
        return bj_rule_fail(c, "n_head %lld is not a multiple of n_kv %lld", (long long)a[1], (long long)a[2]);
    return BJ_OK;
}

static bj_status bj_rule_attention(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    char kb[BJ_TYPE_STR_MAX], vb[BJ_TYPE_STR_MAX];
    BJ_TRY(bj_attention_attrs(c));
    BJ_TRY(bj_want_act(c, 0, "q", BJ_DT_F32));
    BJ_TRY(bj_want_act(c, 1, "k", BJ_DT_F32));
    BJ_TRY(bj_want_act(c, 2, "v", BJ_DT_F32));
    BJ_TRY(bj_want_heads(c, 0, "q", c->n->iattr[1], c->n->iattr[3], "n_head"));
    BJ_TRY(bj_want_heads(c, 1, "k", c->n->iattr[2], c->n->iattr[3], "n_kv"));
    if (!bj_shape_eq(c->in[1]->shape, c->in[2]->shape))
        return bj_rule_fail(c, "v %%%u is %s, k %%%u is %s; they must match", c->n->in[2],
                            bj_in_type(c, 2, vb), c->n->in[1], bj_in_type(c, 1, kb));
    *dt = BJ_DT_F32;
    *s = c->in[0]->shape;
    return BJ_OK;
}

static bj_status bj_want_f32(const bj_rule_cx *c, int i, const char *role) {
    char buf[BJ_TYPE_STR_MAX];
    if (c->in[i]->dtype == BJ_DT_F32) return BJ_OK;
    return bj_rule_fail(c, "%s %%%u must be f32, got %s", role, c->n->in[i], bj_in_type(c, i, buf));
}

static bj_status bj_rule_binary(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    char ab[BJ_TYPE_STR_MAX], bb[BJ_TYPE_STR_MAX];
    BJ_TRY(bj_want_f32(c, 0, "a"));
    BJ_TRY(bj_want_f32(c, 1, "b"));
    if (!bj_shape_eq(c->in[0]->shape, c->in[1]->shape))
        return bj_rule_fail(c, "operand shapes differ: a %%%u is %s, b %%%u is %s", c->n->in[0],
                            bj_in_type(c, 0, ab), c->n->in[1], bj_in_type(c, 1, bb));
    *dt = BJ_DT_F32;
    *s = c->in[0]->shape;
    return BJ_OK;
}

static bj_status bj_rule_unary(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    BJ_TRY(bj_want_f32(c, 0, "input"));
    *dt = BJ_DT_F32;
    *s = c->in[0]->shape;
    return BJ_OK;
}

static bj_status bj_rule_output(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    BJ_TRY(bj_want_act(c, 0, "logits", BJ_DT_F32));
    *dt = BJ_DT_F32;
    *s = c->in[0]->shape;
    return BJ_OK;
}

/* Kernel annotations (variant, isa, layout, packed) are ids and sizes the IR does not
 * interpret, except that it keeps them non-negative (so the text form stays canonical) and
 * keeps binary and ternary apart: a chosen variant (variant or layout != 0) must be the
 * binary kernel for binary weights and a ternary kernel for ternary ones. */
static bj_status bj_want_kernel_attrs(const bj_rule_cx *c, int w) {
    for (int i = 0; i < 4; i++)
        if (c->n->iattr[i] < 0)
            return bj_rule_fail(c, "%s must be >= 0, got %lld", bj_op_get((bj_op)c->n->op)->iattr[i],
                                (long long)c->n->iattr[i]);
    if (!bj_dtype_is_lowbit((bj_dtype)c->in[w]->dtype)) return BJ_OK; /* the operand check reports it */
    bool binary = bj_dtype_class_of((bj_dtype)c->in[w]->dtype) == BJ_DTC_BINARY;
    for (int i = 0; i < 3; i += 2) { /* variant, layout */
        int64_t v = c->n->iattr[i];
        if (v && (v == BJ_IR_VARIANT_BIN1) != binary)
            return bj_rule_fail(c, "%s %lld is a %s kernel, but weight %%%u is %s (%s)",
                                bj_op_get((bj_op)c->n->op)->iattr[i], (long long)v,
                                v == BJ_IR_VARIANT_BIN1 ? "binary" : "ternary", c->n->in[w],
                                binary ? "binary" : "ternary", bj_dtype_name((bj_dtype)c->in[w]->dtype));
    }
    return BJ_OK;
}

static bj_status bj_rule_rmsnorm_quant(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    BJ_TRY(bj_rule_rmsnorm(c, dt, s));
    *dt = BJ_DT_Q8ROW;
    return BJ_OK;
}

static bj_status bj_rule_matmul_tk(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    BJ_TRY(bj_rule_matmul_t(c, dt, s));
    return bj_want_kernel_attrs(c, 1);
}

/* (x f32[T,K], g[K], W[N,K]): rmsnorm's checks on (x, g), then matmul_t's on W. */
static bj_status bj_rule_bitlinear(const bj_rule_cx *c, bj_dtype *dt, bj_shape *s) {
    BJ_TRY(bj_rule_rmsnorm(c, dt, s));
    BJ_TRY(bj_want_const(c, 2, "weight", false, bj_dtype_is_lowbit, "ternary or binary"));
    BJ_TRY(bj_want_kernel_attrs(c, 2));
    int64_t k_act = c->in[0]->shape.d[1], k_w = c->in[2]->shape.d[1];
    if (k_act != k_w)
        return bj_rule_fail(c, "weight %%%u has %lld columns, activation %%%u has %lld", c->n->in[2],
                            (long long)k_w, c->n->in[0], (long long)k_act);
    *dt = BJ_DT_F32;
    *s = bj_shape2(BJ_DIM_T, c->in[2]->shape.d[0]);
    return BJ_OK;
}

static bj_rule_fn bj_rule_of(bj_op op) {
    switch (op) {
    case BJ_OP_INPUT: return bj_rule_input;
    case BJ_OP_WEIGHT: return bj_rule_weight;
    case BJ_OP_WEIGHT_QUANT: return bj_rule_weight_quant;
    case BJ_OP_EMBED: return bj_rule_embed;
    case BJ_OP_RMSNORM: return bj_rule_rmsnorm;
    case BJ_OP_ACT_QUANT: return bj_rule_act_quant;
    case BJ_OP_MATMUL_T: return bj_rule_matmul_t;
    case BJ_OP_MATMUL_F: return bj_rule_matmul_f;
    case BJ_OP_ROPE: return bj_rule_rope;
    case BJ_OP_ATTENTION: return bj_rule_attention;
    case BJ_OP_ADD: return bj_rule_binary;
    case BJ_OP_MUL: return bj_rule_binary;
    case BJ_OP_RELU_SQR: return bj_rule_unary;
    case BJ_OP_SILU: return bj_rule_unary;
    case BJ_OP_OUTPUT: return bj_rule_output;
    case BJ_OP_RMSNORM_QUANT: return bj_rule_rmsnorm_quant;
    case BJ_OP_MATMUL_TK: return bj_rule_matmul_tk;
    case BJ_OP_BITLINEAR: return bj_rule_bitlinear;
    case BJ_OP_COUNT: break;
    }
    return NULL;
}

/* Position of n in g, or the index it would get if appended (for messages and order). */
static uint32_t bj_node_index(const bj_graph *g, const bj_node *n) {
    uintptr_t p = (uintptr_t)n, lo = (uintptr_t)g->nodes;
    if (g->nodes && p >= lo && p < lo + (uintptr_t)g->n_nodes * sizeof *n)
        return (uint32_t)((p - lo) / sizeof *n);
    return g->n_nodes;
}

/* Attribute slots the op does not declare must be zero: the text form drops them, so a
 * stray value would make print(g) describe a different graph than g. */
static bj_status bj_check_unused_attrs(const bj_rule_cx *c, const bj_op_info *o) {
    for (int i = o->n_iattr; i < BJ_MAX_IATTR; i++)
        if (c->n->iattr[i]) return bj_rule_fail(c, "undeclared int attribute slot %d is %lld", i, (long long)c->n->iattr[i]);
    for (int i = o->n_fattr; i < BJ_MAX_FATTR; i++)
        if (c->n->fattr[i] != 0.0) return bj_rule_fail(c, "undeclared float attribute slot %d is %.17g", i, c->n->fattr[i]);
    return BJ_OK;
}

/* Op id, arity and input references must be sound before any rule reads an operand. */
static bj_status bj_check_form(bj_rule_cx *c, const bj_op_info *o) {
    const bj_node *n = c->n;
    if (n->nin != o->nin)
        return bj_rule_fail(c, "takes %d input%s, node has %u", o->nin, o->nin == 1 ? "" : "s", n->nin);
    for (int i = 0; i < n->nin; i++) {
        uint32_t r = n->in[i];
        if (r == BJ_NONE) return bj_rule_fail(c, "input %d is missing (BJ_NONE)", i);
        if (r >= c->idx || r >= c->g->n_nodes)
            return bj_rule_fail(c, "input %d is %%%u, which does not come before %%%u", i, r, c->idx);
        c->in[i] = &c->g->nodes[r];
    }
    return bj_check_unused_attrs(c, o);
}

bj_status bj_ir_infer(const bj_graph *g, const bj_node *n, bj_dtype *dt, bj_shape *shape, bj_error *err) {
    bj_rule_cx c = { .g = g, .n = n, .idx = bj_node_index(g, n), .err = err };
    const bj_op_info *o = bj_op_get((bj_op)n->op);
    if (!o) return BJ_FAIL(err, BJ_E_INVALID, "%%%u: unknown op id %u", c.idx, n->op);
    BJ_TRY(bj_check_form(&c, o));
    bj_dtype t = BJ_DT_F32;
    bj_shape s = { 0 };
    BJ_TRY(bj_rule_of((bj_op)n->op)(&c, &t, &s));
    *dt = t;
    *shape = s;
    return BJ_OK;
}

/* ---- builder ----------------------------------------------------------------------------- */
static bj_status bj_graph_grow(bj_graph *g, bj_error *err) {
    if (g->n_nodes < g->cap) return BJ_OK;
    uint32_t cap = g->cap ? g->cap * 2 : 64;
    /* BJ_NONE must never be a valid index; 2^31 nodes also bounds the byte size. */
    if (g->cap >= BJ_NONE / 2)
        return BJ_FAIL(err, BJ_E_NOMEM, "graph @%s: too many nodes (%u)", g->name, g->n_nodes);
    bj_node *nodes = realloc(g->nodes, (size_t)cap * sizeof(bj_node));
    if (!nodes) return BJ_FAIL(err, BJ_E_NOMEM, "graph @%s: out of memory for %u nodes", g->name, cap);
    g->nodes = nodes;
    g->cap = cap;
    return BJ_OK;
}

/* Appends *proto, runs its rule in place (so messages carry its real index) and stores the
 * inferred type; on failure the node is dropped again. */
static uint32_t bj_ir_append(bj_graph *g, const bj_node *proto, bj_error *err) {
    if (bj_graph_grow(g, err) != BJ_OK) return BJ_NONE;
    uint32_t idx = g->n_nodes++;
    bj_node *n = &g->nodes[idx];
    *n = *proto;
    bj_dtype dt;
    bj_shape s;
    if (bj_ir_infer(g, n, &dt, &s, err) != BJ_OK) {
        g->n_nodes--;
        return BJ_NONE;
    }
    n->dtype = (uint8_t)dt;
    n->shape = s;
    return idx;
}

static bj_node bj_node_proto(bj_op op, int nin) {
    bj_node n = { .op = (uint16_t)op, .nin = (uint8_t)nin };
    for (int i = 0; i < BJ_MAX_IN; i++) n.in[i] = BJ_NONE;
    return n;
}

uint32_t bj_ir_add(bj_graph *g, bj_op op, const uint32_t *in, int nin,
                   const int64_t *iattr, const double *fattr, bj_error *err) {
    const bj_op_info *o = bj_op_get(op);
    if (nin < 0 || nin > BJ_MAX_IN || (nin && !in)) {
        BJ_FAIL(err, BJ_E_INVALID, "bj_ir_add: bad input list (nin %d)", nin);
        return BJ_NONE;
    }
    for (int i = 0; i < nin; i++)
        if (in[i] == BJ_NONE) return BJ_NONE; /* an earlier call failed and set err */
    if (!o || op == BJ_OP_WEIGHT) {
        BJ_FAIL(err, BJ_E_INVALID, "bj_ir_add: %s", o ? "weights are added with bj_ir_weight" : "unknown op");
        return BJ_NONE;
    }
    bj_node n = bj_node_proto(op, nin);
    for (int i = 0; i < nin; i++) n.in[i] = in[i];
    for (int i = 0; iattr && i < o->n_iattr; i++) n.iattr[i] = iattr[i];
    for (int i = 0; fattr && i < o->n_fattr; i++) n.fattr[i] = fattr[i];
    return bj_ir_append(g, &n, err);
}

uint32_t bj_ir_input(bj_graph *g, bj_error *err) {
    return bj_ir_add(g, BJ_OP_INPUT, NULL, 0, NULL, NULL, err);
}

static bool bj_weight_name_taken(const bj_graph *g, const char *name, uint32_t *where) {
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bj_node *n = &g->nodes[i];
        if (n->op == BJ_OP_WEIGHT && n->name && strcmp(n->name, name) == 0) {
            *where = i;
            return true;
        }
    }
    return false;
}

uint32_t bj_ir_weight(bj_graph *g, const char *name, bj_dtype dt, bj_shape shape, double scale,
                      const void *data, uint64_t nbytes, bj_error *err) {
    uint32_t prev;
    if (name && bj_weight_name_taken(g, name, &prev)) {
        BJ_FAIL(err, BJ_E_INVALID, "weight %%%u: name \"%s\" is already used by weight %%%u",
                g->n_nodes, name, prev);
        return BJ_NONE;
    }
    bj_node n = bj_node_proto(BJ_OP_WEIGHT, 0);
    n.dtype = (uint8_t)dt;
    if ((unsigned)dt >= BJ_DT_COUNT) n.dtype = UINT8_MAX; /* keep it invalid for the rule */
    n.shape = shape;
    n.fattr[0] = scale;
    n.data = data;
    n.nbytes = nbytes;
    n.name = name ? bj_arena_strdup(&g->arena, name) : NULL;
    if (name && !n.name) {
        BJ_FAIL(err, BJ_E_NOMEM, "weight \"%s\": out of memory", name);
        return BJ_NONE;
    }
    return bj_ir_append(g, &n, err);
}

uint32_t bj_ir_unary(bj_graph *g, bj_op op, uint32_t a, bj_error *err) {
    return bj_ir_add(g, op, &a, 1, NULL, NULL, err);
}

uint32_t bj_ir_binary(bj_graph *g, bj_op op, uint32_t a, uint32_t b, bj_error *err) {
    const uint32_t in[2] = { a, b };
    return bj_ir_add(g, op, in, 2, NULL, NULL, err);
}

uint32_t bj_ir_find_output(const bj_graph *g) {
    uint32_t found = BJ_NONE;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != BJ_OP_OUTPUT) continue;
        if (found != BJ_NONE) return BJ_NONE; /* not single */
        found = i;
    }
    return found;
}
