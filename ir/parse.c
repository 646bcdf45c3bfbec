/* ir/parse.c -- reads the textual form that print.c writes back into a graph.
 *
 *   graph @NAME {max_seq=N}                      NAME: [A-Za-z0-9_.-]+
 *   %I = OP %A, %B {attr=value, ...} : TYPE       I: consecutive from 0; inputs earlier
 *   %I = weight "NAME" {scale=S} : TYPE           NAME: escapes \" and \\ only
 *
 * Blank lines and lines whose first non-blank byte is '#' are ignored. Attributes may come
 * in any order but each declared one exactly once. Every node goes through the builder, so
 * it is checked by the op's shape rule, and its declared TYPE must equal the inferred one.
 * Whole-graph rules (one output, unique layers) are left to bj_ir_verify so that golden
 * tests can hold fragments.
 *
 * The input is a pointer and a length, not a C string: the reader works line by line with
 * an explicit end pointer and never looks past it, whatever the bytes are. Errors are
 * BJ_E_FORMAT "line L col C: expected ...". Parsed weights are unbound (data NULL). */
#include "ir/ir.h"

#include <stdlib.h>
#include <string.h>

typedef struct bj_rd {
    const char *p, *end;   /* cursor and end of the current line (without its '\n') */
    const char *line0;     /* first byte of the current line, for columns */
    const char *next;      /* first byte of the next line */
    const char *text_end;
    size_t line;
    bj_error *err;
} bj_rd;

/* ---- lexing ------------------------------------------------------------------------------ */
__attribute__((format(printf, 3, 4)))
static bj_status bj_rd_fail(const bj_rd *r, const char *at, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return BJ_FAIL(r->err, BJ_E_FORMAT, "line %zu col %zu: %s", r->line, (size_t)(at - r->line0) + 1, msg);
}

/* What the cursor sits on, for "expected X, found Y". */
static const char *bj_rd_found(const bj_rd *r, char *buf, size_t cap) {
    unsigned char c = r->p < r->end ? (unsigned char)*r->p : 0;
    if (r->p >= r->end) snprintf(buf, cap, "end of line");
    else if (c > 0x20 && c < 0x7f) snprintf(buf, cap, "'%c'", c);
    else snprintf(buf, cap, "byte 0x%02x", c);
    return buf;
}

static bj_status bj_rd_expected(const bj_rd *r, const char *what) {
    char buf[32];
    return bj_rd_fail(r, r->p, "expected %s, found %s", what, bj_rd_found(r, buf, sizeof buf));
}

static void bj_rd_ws(bj_rd *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\r')) r->p++;
}

static bool bj_rd_eat(bj_rd *r, char ch) {
    bj_rd_ws(r);
    if (r->p < r->end && *r->p == ch) { r->p++; return true; }
    return false;
}

static bj_status bj_rd_expect(bj_rd *r, char ch, const char *what) {
    return bj_rd_eat(r, ch) ? BJ_OK : bj_rd_expected(r, what);
}

static bj_status bj_rd_eol(bj_rd *r) {
    bj_rd_ws(r);
    return r->p == r->end ? BJ_OK : bj_rd_expected(r, "end of line");
}

static bool bj_is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool bj_is_digit(char c) { return c >= '0' && c <= '9'; }

/* [A-Za-z_][A-Za-z0-9_]*; *n is 0 when there is none. */
static const char *bj_rd_ident(bj_rd *r, size_t *n) {
    bj_rd_ws(r);
    const char *s = r->p;
    if (r->p < r->end && bj_is_alpha(*r->p))
        while (r->p < r->end && (bj_is_alpha(*r->p) || bj_is_digit(*r->p))) r->p++;
    *n = (size_t)(r->p - s);
    return s;
}

static bool bj_rd_keyword(bj_rd *r, const char *kw) {
    const char *save = r->p;
    size_t n;
    const char *s = bj_rd_ident(r, &n);
    if (n == strlen(kw) && memcmp(s, kw, n) == 0) return true;
    r->p = save;
    return false;
}

/* A decimal integer with optional '-', overflow-checked into int64. */
static bj_status bj_rd_int(bj_rd *r, int64_t *out, const char *what) {
    bj_rd_ws(r);
    const char *s = r->p;
    bool neg = r->p < r->end && *r->p == '-';
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (neg) r->p++;
    if (r->p >= r->end || !bj_is_digit(*r->p)) { r->p = s; return bj_rd_expected(r, what); }
    for (; r->p < r->end && bj_is_digit(*r->p); r->p++) {
        uint64_t d = (uint64_t)(*r->p - '0');
        if (v > (lim - d) / 10) return bj_rd_fail(r, s, "integer out of range for %s", what);
        v = v * 10 + d;
    }
    *out = neg && v ? -(int64_t)(v - 1) - 1 : (int64_t)v; /* INT64_MIN without overflow */
    return BJ_OK;
}

/* Floats are whatever strtod reads (printed with %.17g); the token is copied out first
 * because the text need not be NUL-terminated. */
static bj_status bj_rd_float(bj_rd *r, double *out, const char *what) {
    char buf[64];
    bj_rd_ws(r);
    const char *s = r->p;
    while (r->p < r->end && (bj_is_alpha(*r->p) || bj_is_digit(*r->p) || *r->p == '.' ||
                             *r->p == '+' || *r->p == '-'))
        r->p++;
    size_t n = (size_t)(r->p - s);
    if (n == 0 || n >= sizeof buf) { r->p = s; return bj_rd_expected(r, what); }
    memcpy(buf, s, n);
    buf[n] = 0;
    char *endp;
    *out = strtod(buf, &endp);
    if (endp != buf + n) return bj_rd_fail(r, s, "expected %s, found '%s'", what, buf);
    return BJ_OK;
}

/* '%' N, as a node reference or a node id. */
static bj_status bj_rd_ref(bj_rd *r, uint32_t *out, const char *what) {
    int64_t v;
    bj_rd_ws(r);
    const char *s = r->p;
    if (!bj_rd_eat(r, '%')) return bj_rd_expected(r, what);
    if (r->p >= r->end || !bj_is_digit(*r->p)) return bj_rd_expected(r, "a node number after '%'");
    BJ_TRY(bj_rd_int(r, &v, "a node number"));
    if (v >= BJ_NONE) return bj_rd_fail(r, s, "node number %lld is too large", (long long)v);
    *out = (uint32_t)v;
    return BJ_OK;
}

/* A quoted weight name into a malloc'd buffer. */
static bj_status bj_rd_string(bj_rd *r, char **out) {
    BJ_TRY(bj_rd_expect(r, '"', "'\"' starting the weight name"));
    char *buf = malloc((size_t)(r->end - r->p) + 1), *q = buf;
    if (!buf) return BJ_FAIL(r->err, BJ_E_NOMEM, "line %zu: out of memory", r->line);
    for (;;) {
        unsigned char c = r->p < r->end ? (unsigned char)*r->p : 0;
        bj_status st = BJ_OK;
        if (r->p >= r->end) st = bj_rd_fail(r, r->p, "expected '\"' closing the weight name, found end of line");
        else if (c == '"') break;
        else if (c < 0x20 || c == 0x7f) st = bj_rd_fail(r, r->p, "expected a printable byte in the weight name, found byte 0x%02x", c);
        else if (c == '\\' && (r->p + 1 >= r->end || (r->p[1] != '"' && r->p[1] != '\\')))
            st = bj_rd_fail(r, r->p, "expected \\\" or \\\\ after '\\' in the weight name");
        if (st != BJ_OK) { free(buf); return st; }
        if (c == '\\') r->p++;
        *q++ = *r->p++;
    }
    r->p++;
    *q = 0;
    *out = buf;
    return BJ_OK;
}

/* DTYPE '[' DIM (',' DIM)* ']' with DIM = 'T' or a positive integer. */
static bj_status bj_rd_type(bj_rd *r, bj_dtype *dt, bj_shape *s) {
    size_t n;
    const char *name = bj_rd_ident(r, &n);
    if (!n) return bj_rd_expected(r, "a type such as f32[T,384]");
    if (!bj_dtype_from_name(name, n, dt)) return bj_rd_fail(r, name, "unknown dtype '%.*s'", (int)n, name);
    BJ_TRY(bj_rd_expect(r, '[', "'[' after the dtype"));
    *s = (bj_shape){ 0 };
    do {
        if (s->ndim == BJ_MAX_DIMS) return bj_rd_fail(r, r->p, "expected at most %d dims", BJ_MAX_DIMS);
        int64_t d = BJ_DIM_T;
        if (!bj_rd_keyword(r, "T")) {
            BJ_TRY(bj_rd_int(r, &d, "a dimension (T or a positive integer)"));
            if (d <= 0) return bj_rd_fail(r, r->p, "expected a positive dimension, found %lld", (long long)d);
        }
        s->d[s->ndim++] = d;
    } while (bj_rd_eat(r, ','));
    return bj_rd_expect(r, ']', "',' or ']' in the shape");
}

/* ---- lines ------------------------------------------------------------------------------- */
/* Moves to the next line that is neither blank nor a comment; false at the end. */
static bool bj_rd_next_line(bj_rd *r) {
    while (r->next < r->text_end) {
        r->line0 = r->p = r->next;
        const char *nl = memchr(r->p, '\n', (size_t)(r->text_end - r->p));
        r->end = nl ? nl : r->text_end;
        r->next = nl ? nl + 1 : r->text_end;
        r->line++;
        bj_rd_ws(r);
        if (r->p < r->end && *r->p != '#') return true;
    }
    /* Past the end: point errors at the start of the line after the last one. */
    r->line0 = r->p = r->end = r->text_end;
    r->line++;
    return false;
}

static bj_status bj_rd_header(bj_rd *r, bj_graph *g) {
    const char *expect = "'graph @NAME {max_seq=N}'";
    if (!bj_rd_next_line(r) || !bj_rd_keyword(r, "graph")) return bj_rd_expected(r, expect);
    BJ_TRY(bj_rd_expect(r, '@', "'@' before the graph name"));
    const char *name = r->p;
    while (r->p < r->end && (bj_is_alpha(*r->p) || bj_is_digit(*r->p) || *r->p == '.' || *r->p == '-')) r->p++;
    if (r->p == name) return bj_rd_expected(r, "a graph name of [A-Za-z0-9_.-]");
    size_t name_len = (size_t)(r->p - name);
    int64_t max_seq;
    BJ_TRY(bj_rd_expect(r, '{', "'{max_seq=N}'"));
    if (!bj_rd_keyword(r, "max_seq")) return bj_rd_expected(r, "'max_seq'");
    BJ_TRY(bj_rd_expect(r, '=', "'=' after max_seq"));
    const char *at = r->p;
    BJ_TRY(bj_rd_int(r, &max_seq, "the max_seq value"));
    if (max_seq < 0) return bj_rd_fail(r, at, "expected max_seq >= 0, found %lld", (long long)max_seq);
    BJ_TRY(bj_rd_expect(r, '}', "'}' after max_seq"));
    BJ_TRY(bj_rd_eol(r));
    char *copy = malloc(name_len + 1);
    if (!copy) return BJ_FAIL(r->err, BJ_E_NOMEM, "graph: out of memory");
    memcpy(copy, name, name_len);
    copy[name_len] = 0;
    bj_status st = bj_graph_init(g, copy, r->err);
    free(copy);
    g->max_seq = max_seq;
    return st;
}

/* One parsed node line, before it goes through the builder. */
typedef struct bj_rd_node {
    bj_op op;
    const bj_op_info *info;
    const char *op_at, *type_at;
    uint32_t in[BJ_MAX_IN];
    int nin;
    int64_t iattr[BJ_MAX_IATTR];
    double fattr[BJ_MAX_FATTR];
    char *name; /* weights; malloc'd */
    bj_dtype dt;
    bj_shape shape;
} bj_rd_node;

static bj_status bj_rd_inputs(bj_rd *r, bj_rd_node *nd, uint32_t self) {
    bj_rd_ws(r);
    if (r->p >= r->end || *r->p != '%') return BJ_OK;
    do {
        const char *at = (bj_rd_ws(r), r->p);
        uint32_t ref;
        if (nd->nin == BJ_MAX_IN) return bj_rd_fail(r, at, "expected at most %d inputs", BJ_MAX_IN);
        BJ_TRY(bj_rd_ref(r, &ref, "an input like %3"));
        if (ref >= self) return bj_rd_fail(r, at, "%%%u is not defined before %%%u", ref, self);
        nd->in[nd->nin++] = ref;
    } while (bj_rd_eat(r, ','));
    return BJ_OK;
}

/* Finds attribute name[0..n) of the op: *slot is its index, *is_int its kind. */
static bool bj_rd_attr_slot(const bj_op_info *o, const char *name, size_t n, int *slot, bool *is_int) {
    for (int i = 0; i < o->n_iattr + o->n_fattr; i++) {
        const char *a = i < o->n_iattr ? o->iattr[i] : o->fattr[i - o->n_iattr];
        if (strlen(a) == n && memcmp(a, name, n) == 0) {
            *is_int = i < o->n_iattr;
            *slot = *is_int ? i : i - o->n_iattr;
            return true;
        }
    }
    return false;
}

static bj_status bj_rd_attr(bj_rd *r, bj_rd_node *nd, unsigned *seen) {
    size_t n;
    int slot;
    bool is_int;
    const char *name = bj_rd_ident(r, &n);
    if (!n) return bj_rd_expected(r, "an attribute name");
    if (!bj_rd_attr_slot(nd->info, name, n, &slot, &is_int))
        return bj_rd_fail(r, name, "unknown attribute '%.*s' for %s", (int)n, name, nd->info->name);
    unsigned bit = 1u << (is_int ? slot : BJ_MAX_IATTR + slot);
    if (*seen & bit) return bj_rd_fail(r, name, "attribute '%.*s' given twice", (int)n, name);
    *seen |= bit;
    BJ_TRY(bj_rd_expect(r, '=', "'=' after the attribute name"));
    if (is_int) return bj_rd_int(r, &nd->iattr[slot], "an integer value");
    return bj_rd_float(r, &nd->fattr[slot], "a number");
}

static bj_status bj_rd_check_attrs(bj_rd *r, const bj_rd_node *nd, unsigned seen, const char *at) {
    const bj_op_info *o = nd->info;
    for (int i = 0; i < o->n_iattr; i++)
        if (!(seen & 1u << i)) return bj_rd_fail(r, at, "expected attribute '%s' for %s", o->iattr[i], o->name);
    for (int i = 0; i < o->n_fattr; i++)
        if (!(seen & 1u << (BJ_MAX_IATTR + i)))
            return bj_rd_fail(r, at, "expected attribute '%s' for %s", o->fattr[i], o->name);
    return BJ_OK;
}

static bj_status bj_rd_attrs(bj_rd *r, bj_rd_node *nd) {
    unsigned seen = 0;
    bool has_attrs = nd->info->n_iattr + nd->info->n_fattr > 0;
    const char *at = (bj_rd_ws(r), r->p);
    if (!bj_rd_eat(r, '{')) return has_attrs ? bj_rd_check_attrs(r, nd, 0, at) : BJ_OK;
    if (!bj_rd_eat(r, '}')) {
        do {
            BJ_TRY(bj_rd_attr(r, nd, &seen));
        } while (bj_rd_eat(r, ','));
        BJ_TRY(bj_rd_expect(r, '}', "',' or '}' after the attribute"));
    }
    return bj_rd_check_attrs(r, nd, seen, at);
}

/* '%I = OP ...' up to and including the type annotation. */
static bj_status bj_rd_node_text(bj_rd *r, bj_rd_node *nd, uint32_t self) {
    uint32_t id;
    const char *at = r->p;
    size_t n;
    BJ_TRY(bj_rd_ref(r, &id, "a node like '%0 = ...'"));
    if (id != self) return bj_rd_fail(r, at, "expected node %%%u (ids count up from %%0), found %%%u", self, id);
    BJ_TRY(bj_rd_expect(r, '=', "'=' after the node id"));
    nd->op_at = bj_rd_ident(r, &n);
    if (!n) return bj_rd_expected(r, "an op name");
    if (!bj_op_from_name(nd->op_at, n, &nd->op))
        return bj_rd_fail(r, nd->op_at, "unknown op '%.*s'", (int)n, nd->op_at);
    nd->info = bj_op_get(nd->op);
    if (nd->op == BJ_OP_WEIGHT) BJ_TRY(bj_rd_string(r, &nd->name));
    else BJ_TRY(bj_rd_inputs(r, nd, self));
    if (nd->nin != nd->info->nin)
        return bj_rd_fail(r, nd->op_at, "%s takes %d input%s, found %d", nd->info->name, nd->info->nin,
                          nd->info->nin == 1 ? "" : "s", nd->nin);
    BJ_TRY(bj_rd_attrs(r, nd));
    BJ_TRY(bj_rd_expect(r, ':', "':' before the type"));
    nd->type_at = (bj_rd_ws(r), r->p);
    BJ_TRY(bj_rd_type(r, &nd->dt, &nd->shape));
    return bj_rd_eol(r);
}

/* Runs the node through the builder (the op's shape rule) and checks the declared type. */
static bj_status bj_rd_build(bj_rd *r, bj_graph *g, const bj_rd_node *nd) {
    uint32_t idx;
    if (nd->op == BJ_OP_WEIGHT)
        idx = bj_ir_weight(g, nd->name, nd->dt, nd->shape, nd->fattr[0], NULL, 0, r->err);
    else
        idx = bj_ir_add(g, nd->op, nd->in, nd->nin, nd->iattr, nd->fattr, r->err);
    if (idx == BJ_NONE) {
        if (!r->err) return BJ_E_FORMAT;
        if (r->err->code != BJ_E_INVALID) return r->err->code; /* out of memory */
        bj_error_prefix(r->err, "line %zu col %zu", r->line, (size_t)(nd->op_at - r->line0) + 1);
        r->err->code = BJ_E_FORMAT;
        return BJ_E_FORMAT;
    }
    const bj_node *node = &g->nodes[idx];
    if (node->dtype == nd->dt && bj_shape_eq(node->shape, nd->shape)) return BJ_OK;
    char have[BJ_TYPE_STR_MAX], want[BJ_TYPE_STR_MAX];
    return bj_rd_fail(r, nd->type_at, "expected type %s (what %s infers), found %s",
                      bj_ir_type_str((bj_dtype)node->dtype, node->shape, want, sizeof want), nd->info->name,
                      bj_ir_type_str(nd->dt, nd->shape, have, sizeof have));
}

static bj_status bj_rd_line(bj_rd *r, bj_graph *g) {
    bj_rd_node nd = { .nin = 0 };
    bj_status st = bj_rd_node_text(r, &nd, g->n_nodes);
    if (st == BJ_OK) st = bj_rd_build(r, g, &nd);
    free(nd.name);
    return st;
}

bj_status bj_ir_parse(bj_graph *g, const char *text, size_t len, bj_error *err) {
    memset(g, 0, sizeof *g);
    if (!text) len = 0;
    if (!len) text = "";
    bj_rd r = { .next = text, .text_end = text + len, .line0 = text, .p = text, .end = text, .err = err };
    bj_status st = bj_rd_header(&r, g);
    while (st == BJ_OK && bj_rd_next_line(&r)) st = bj_rd_line(&r, g);
    if (st != BJ_OK) bj_graph_free(g);
    return st;
}
