/* tests/unit/test_ir_text.c -- the parser against a golden text that uses every op: exact
 * round trips, lenient spellings that print back canonically, one test per kind of error
 * (each checks the line:col message), truncation at every byte, and a fixed-seed mutation
 * fuzz loop that must never crash or read outside the given length (run under ASan). */
#include "ir/ir.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static const char GOLDEN[] =
    "graph @tiny.v1-x {max_seq=16}\n"
    "%0 = input : i32[T]\n"
    "%1 = weight \"tok\\\"emb\\\\x\" {scale=1} : f16[32,8]\n"
    "%2 = embed %1, %0 : f32[T,8]\n"
    "%3 = weight \"norm\" {scale=1} : f32[8]\n"
    "%4 = rmsnorm %2, %3 {eps=9.9999999999999995e-07} : f32[T,8]\n"
    "%5 = act_quant %4 : q8row[T,8]\n"
    "%6 = weight \"wq.master\" {scale=1} : f32[8,8]\n"
    "%7 = weight_quant %6 {mode=1} : b8[8,8]\n"
    "%8 = matmul_t %5, %7 : f32[T,8]\n"
    "%9 = weight \"wk\" {scale=0.0123} : t2[4,8]\n"
    "%10 = matmul_t %5, %9 : f32[T,4]\n"
    "%11 = rope %8 {n_head=2, head_dim=4, theta=500000} : f32[T,8]\n"
    "%12 = rope %10 {n_head=1, head_dim=4, theta=500000} : f32[T,4]\n"
    "%13 = attention %11, %12, %10 {layer=0, n_head=2, n_kv=1, head_dim=4} : f32[T,8]\n"
    "%14 = silu %13 : f32[T,8]\n"
    "%15 = mul %14, %2 : f32[T,8]\n"
    "%16 = relu_sqr %15 : f32[T,8]\n"
    "%17 = add %16, %4 : f32[T,8]\n"
    "%18 = weight \"head\" {scale=1} : bf16[32,8]\n"
    "%19 = matmul_f %17, %18 : f32[T,32]\n"
    "%20 = output %19 : f32[T,32]\n";

static char *print_str(const bj_graph *g) {
    char *s = NULL;
    bj_error err = { 0 };
    cr_assert_eq(bj_ir_print_str(g, &s, &err), BJ_OK, "%s", err.msg);
    return s;
}

/* Parses text and returns its printed form (malloc'd); asserts success. */
static char *reprint(const char *text, size_t len) {
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_ir_parse(&g, text, len, &err), BJ_OK, "%s\n--- text:\n%.*s", err.msg, (int)len, text);
    char *out = print_str(&g);
    bj_graph_free(&g);
    return out;
}

static void expect_parse_error(const char *text, const char *want) {
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_ir_parse(&g, text, strlen(text), &err), BJ_E_FORMAT, "accepted:\n%s", text);
    cr_assert_eq(err.code, BJ_E_FORMAT);
    cr_assert(strstr(err.msg, want), "message '%s' lacks '%s'\n--- text:\n%s", err.msg, want, text);
    cr_assert_null(g.nodes, "a failed parse leaves an empty graph");
    cr_assert_eq(g.n_nodes, 0);
}

#define H "graph @t {max_seq=4}\n"
#define IN "%0 = input : i32[T]\n"
#define EMB "%1 = weight \"e\" {scale=1} : f32[8,4]\n%2 = embed %1, %0 : f32[T,4]\n"

/* ---- accepted text ----------------------------------------------------------------------- */
Test(ir_parse, golden_round_trip) {
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_ir_parse(&g, GOLDEN, strlen(GOLDEN), &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(bj_ir_verify(&g, &err), BJ_OK, "%s", err.msg);
    cr_assert_str_eq(g.name, "tiny.v1-x");
    cr_assert_eq(g.max_seq, 16);
    cr_assert_eq(g.n_nodes, 21);
    cr_assert_str_eq(g.nodes[1].name, "tok\"emb\\x");
    cr_assert_eq(g.nodes[1].dtype, BJ_DT_F16);
    cr_assert_null(g.nodes[1].data);
    cr_assert_eq(g.nodes[4].fattr[0], 1e-6);
    cr_assert_eq(g.nodes[9].fattr[0], 0.0123);
    cr_assert_eq(g.nodes[13].op, BJ_OP_ATTENTION);
    cr_assert_eq(g.nodes[13].iattr[2], 1);
    cr_assert_eq(g.nodes[13].in[2], 10);
    cr_assert_eq(g.nodes[11].fattr[0], 500000.0);
    cr_assert_eq(bj_ir_find_output(&g), 20);
    char *text = print_str(&g);
    cr_assert_str_eq(text, GOLDEN);
    free(text);
    bj_graph_free(&g);
}

Test(ir_parse, lenient_spelling_prints_canonically) {
    const char *loose =
        "# comment before the header\n"
        "\n"
        "  graph   @tiny.v1-x{ max_seq = 16 }  \r\n"
        "%0=input:i32[ T ]\r\n"
        "   # an indented comment\n"
        "%1 = weight \"tok\\\"emb\\\\x\" {scale=1.0} : f16[32, 8]\n"
        "%2 = embed %1,%0 : f32[T,8]\t\n"
        "%3 = weight \"norm\" {scale=1e0} : f32[8]\n"
        "%4 = rmsnorm %2, %3 {eps=1e-6} : f32[T,8]\n"
        "%5 = act_quant %4 {} : q8row[T,8]\n"
        "%6 = weight \"wq.master\" {scale=1} : f32[8,8]\n"
        "%7 = weight_quant %6 {mode=+1} : b8[8,8]\n"
        "%8 = matmul_t %5, %7 : f32[T,8]\n"
        "%9 = weight \"wk\" {scale=1.23e-2} : t2[4,8]\n"
        "%10 = matmul_t %5, %9 : f32[T,4]\n"
        "%11 = rope %8 {theta=5e5, head_dim=4, n_head=2} : f32[T,8]\n"
        "%12 = rope %10 {head_dim=4, n_head=1, theta=500000} : f32[T,4]\n"
        "%13 = attention %11, %12, %10 {n_kv=1, layer=0, head_dim=4, n_head=2} : f32[T,8]\n"
        "%14 = silu %13 : f32[T,8]\n"
        "%15 = mul %14, %2 : f32[T,8]\n"
        "%16 = relu_sqr %15 : f32[T,8]\n"
        "%17 = add %16, %4 : f32[T,8]\n"
        "%18 = weight \"head\" {scale=1} : bf16[32,8]\n"
        "%19 = matmul_f %17, %18 : f32[T,32]\n"
        "\n"
        "%20 = output %19 : f32[T,32]"; /* no final newline */
    /* "+1" is not an integer here: spelled that way the parse must fail... */
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_ir_parse(&g, loose, strlen(loose), &err), BJ_E_FORMAT);
    cr_assert(strstr(err.msg, "line 12 col 28: expected an integer value, found '+'"), "%s", err.msg);
    /* ...and with it fixed, everything else is accepted and prints canonically. */
    char *fixed = strdup(loose);
    char *plus = strstr(fixed, "mode=+1");
    memmove(plus + 5, plus + 6, strlen(plus + 6) + 1);
    char *text = reprint(fixed, strlen(fixed));
    cr_assert_str_eq(text, GOLDEN);
    free(text);
    free(fixed);
}

Test(ir_parse, text_need_not_be_nul_terminated) {
    size_t len = strlen(GOLDEN);
    char *exact = malloc(len); /* ASan flags any read past len */
    memcpy(exact, GOLDEN, len);
    char *text = reprint(exact, len);
    cr_assert_str_eq(text, GOLDEN);
    free(text);
    /* Bytes after len are not part of the text, even if they would make it invalid. */
    char *more = malloc(len + 8);
    memcpy(more, GOLDEN, len);
    memcpy(more + len, "%21 = !!", 8);
    text = reprint(more, len);
    cr_assert_str_eq(text, GOLDEN);
    free(text);
    free(more);
    free(exact);
}

Test(ir_parse, fragment_without_output_parses) {
    char *text = reprint(H IN EMB, strlen(H IN EMB));
    cr_assert_str_eq(text, H IN EMB);
    free(text);
    bj_graph g;
    bj_error err = { 0 };
    cr_assert_eq(bj_ir_parse(&g, H, strlen(H), &err), BJ_OK, "%s", err.msg);
    cr_assert_eq(g.n_nodes, 0);
    cr_assert_neq(bj_ir_verify(&g, &err), BJ_OK, "but it does not verify");
    cr_assert(strstr(err.msg, "no output"), "%s", err.msg);
    bj_graph_free(&g);
}

/* ---- rejected text ----------------------------------------------------------------------- */
Test(ir_parse, rejects_garbage_and_bad_headers) {
    expect_parse_error("", "line 1 col 1: expected 'graph @NAME {max_seq=N}', found end of line");
    expect_parse_error("hello world\n", "line 1 col 1: expected 'graph @NAME {max_seq=N}', found 'h'");
    expect_parse_error("# only a comment\n\n", "line 3 col 1: expected 'graph @NAME");
    expect_parse_error("\x01\x02\xff", "line 1 col 1: expected 'graph @NAME {max_seq=N}', found byte 0x01");
    expect_parse_error(IN, "line 1 col 1: expected 'graph");
    expect_parse_error("graph t {max_seq=4}\n", "line 1 col 7: expected '@' before the graph name, found 't'");
    expect_parse_error("graph @ {max_seq=4}\n", "line 1 col 8: expected a graph name");
    expect_parse_error("graph @t\n", "line 1 col 9: expected '{max_seq=N}', found end of line");
    expect_parse_error("graph @t {seq=4}\n", "line 1 col 11: expected 'max_seq'");
    expect_parse_error("graph @t {max_seq=-1}\n", "line 1 col 19: expected max_seq >= 0, found -1");
    expect_parse_error("graph @t {max_seq=99999999999999999999}\n", "line 1 col 19: integer out of range");
    expect_parse_error("graph @t {max_seq=4} junk\n", "line 1 col 22: expected end of line, found 'j'");
    expect_parse_error("graph @t {max_seq=4}\nwhat\n", "line 2 col 1: expected a node like '%0 = ...', found 'w'");
}

Test(ir_parse, rejects_unknown_op_and_dtype) {
    expect_parse_error(H IN "%1 = frobnicate %0 : f32[T,4]\n", "line 3 col 6: unknown op 'frobnicate'");
    expect_parse_error(H IN "%1 = %0 : f32[T,4]\n", "line 3 col 6: expected an op name, found '%'");
    expect_parse_error(H "%0 = input : i33[T]\n", "line 2 col 14: unknown dtype 'i33'");
    expect_parse_error(H "%0 = input : [T]\n", "line 2 col 14: expected a type such as f32[T,384], found '['");
}

Test(ir_parse, rejects_bad_type_annotations) {
    expect_parse_error(H "%0 = input : i32[T,4]\n", "line 2 col 14: expected type i32[T] (what input infers), found i32[T,4]");
    expect_parse_error(H IN EMB "%3 = relu_sqr %2 : f16[T,4]\n", "line 5 col 20: expected type f32[T,4] (what relu_sqr infers), found f16[T,4]");
    expect_parse_error(H "%0 = input i32[T]\n", "line 2 col 12: expected ':' before the type, found 'i'");
    expect_parse_error(H "%0 = input : i32\n", "line 2 col 17: expected '[' after the dtype, found end of line");
    expect_parse_error(H "%0 = input : i32[T\n", "line 2 col 19: expected ',' or ']' in the shape, found end of line");
    expect_parse_error(H "%0 = input : i32[]\n", "line 2 col 18: expected a dimension (T or a positive integer), found ']'");
    expect_parse_error(H "%0 = input : i32[0]\n", "expected a positive dimension, found 0");
    expect_parse_error(H "%0 = input : i32[T,1,1,1,1]\n", "expected at most 4 dims");
    expect_parse_error(H "%0 = input : i32[T] x\n", "line 2 col 21: expected end of line, found 'x'");
    /* A weight's annotation is its type, checked by the weight rule. */
    expect_parse_error(H "%0 = weight \"w\" {scale=1} : f32[T,4]\n", "line 2 col 6: weight %0: weight \"w\" must be 1-D or 2-D with positive dims");
    expect_parse_error(H "%0 = weight \"w\" {scale=1} : q8row[4,4]\n", "not a weight dtype");
}

Test(ir_parse, rejects_bad_references) {
    expect_parse_error(H "%1 = input : i32[T]\n", "line 2 col 1: expected node %0 (ids count up from %0), found %1");
    expect_parse_error(H IN IN, "line 3 col 1: expected node %1 (ids count up from %0), found %0");
    expect_parse_error(H IN "%1 = relu_sqr %2 : f32[T,4]\n", "line 3 col 15: %2 is not defined before %1");
    expect_parse_error(H IN "%1 = relu_sqr %1 : f32[T,4]\n", "line 3 col 15: %1 is not defined before %1");
    expect_parse_error(H IN "%1 = relu_sqr % : f32[T,4]\n", "line 3 col 16: expected a node number after '%'");
    expect_parse_error(H IN "%1 = relu_sqr %99999999999 : f32[T,4]\n", "node number 99999999999 is too large");
    expect_parse_error(H IN "%1 = weight \"e\" {scale=1} : f32[8,4]\n%2 = embed %1 : f32[T,4]\n",
                       "line 4 col 6: embed takes 2 inputs, found 1");
    expect_parse_error(H IN EMB "%3 = add %2, %2, %2, %2, %2 : f32[T,4]\n", "line 5 col 26: expected at most 4 inputs");
    expect_parse_error(H IN EMB "%3 = add %2, : f32[T,4]\n", "line 5 col 14: expected an input like %3, found ':'");
    expect_parse_error(H IN "%1 = input %0 : i32[T]\n", "line 3 col 6: input takes 0 inputs, found 1");
}

Test(ir_parse, rejects_bad_attributes) {
    const char *norm_w = "%3 = weight \"g\" {scale=1} : f32[4]\n";
    char buf[512];
#define NORM(attrs) (snprintf(buf, sizeof buf, "%s%s%%4 = rmsnorm %%2, %%3 %s : f32[T,4]\n", H IN EMB, norm_w, attrs), buf)
    expect_parse_error(NORM(""), "line 6 col 22: expected attribute 'eps' for rmsnorm");
    expect_parse_error(NORM("{}"), "line 6 col 21: expected attribute 'eps' for rmsnorm");
    expect_parse_error(NORM("{eps=1e-5, foo=1}"), "line 6 col 32: unknown attribute 'foo' for rmsnorm");
    expect_parse_error(NORM("{eps=1e-5, eps=1e-5}"), "line 6 col 32: attribute 'eps' given twice");
    expect_parse_error(NORM("{eps=abc}"), "line 6 col 26: expected a number, found 'abc'");
    expect_parse_error(NORM("{eps=}"), "line 6 col 26: expected a number, found '}'");
    expect_parse_error(NORM("{eps 1}"), "line 6 col 26: expected '=' after the attribute name, found '1'");
    expect_parse_error(NORM("{eps=1e-5"), "line 6 col 31: expected ',' or '}' after the attribute, found ':'");
    expect_parse_error(NORM("{eps=1e-5,}"), "line 6 col 31: expected an attribute name, found '}'");
    /* Well-formed but invalid values go through the op's rule, with the line prefixed. */
    expect_parse_error(NORM("{eps=0}"), "line 6 col 6: rmsnorm %4: eps must be positive and finite, got 0");
    expect_parse_error(NORM("{eps=-1e-5}"), "eps must be positive");
    expect_parse_error(NORM("{eps=nan}"), "eps must be positive");
    expect_parse_error(NORM("{eps=inf}"), "eps must be positive");
#undef NORM
    expect_parse_error(H IN EMB "%3 = weight_quant %1 {mode=1.5} : b8[8,4]\n",
                       "line 5 col 29: expected ',' or '}' after the attribute, found '.'");
    expect_parse_error(H IN EMB "%3 = weight_quant %1 {mode=2} : b8[8,4]\n", "weight_quant %3: mode must be 0");
    expect_parse_error(H IN EMB "%3 = rope %2 {n_head=2, head_dim=3, theta=1e4} : f32[T,4]\n",
                       "line 5 col 6: rope %3: head_dim must be positive and even, got 3");
    expect_parse_error(H IN EMB "%3 = attention %2, %2, %2 {layer=0, n_head=2, n_kv=3, head_dim=2} : f32[T,4]\n",
                       "n_head 2 is not a multiple of n_kv 3");
    expect_parse_error(H IN EMB "%3 = silu %2 {eps=1} : f32[T,4]\n", "line 5 col 15: unknown attribute 'eps' for silu");
    expect_parse_error(H "%0 = weight \"w\" : f32[4]\n", "line 2 col 17: expected attribute 'scale' for weight");
    expect_parse_error(H "%0 = weight \"w\" {scale=2} : f32[4]\n", "its scale must be 1");
}

Test(ir_parse, rejects_bad_weight_names) {
    expect_parse_error(H "%0 = weight w {scale=1} : f32[4]\n", "line 2 col 13: expected '\"' starting the weight name, found 'w'");
    expect_parse_error(H "%0 = weight \"abc {scale=1} : f32[4]\n", "line 2 col 36: expected '\"' closing the weight name, found end of line");
    expect_parse_error(H "%0 = weight \"a\\nb\" {scale=1} : f32[4]\n", "line 2 col 15: expected \\\" or \\\\ after '\\' in the weight name");
    expect_parse_error(H "%0 = weight \"a\\", "line 2 col 15: expected \\\" or \\\\ after");
    expect_parse_error(H "%0 = weight \"a\tb\" {scale=1} : f32[4]\n", "found byte 0x09");
    expect_parse_error(H "%0 = weight \"\" {scale=1} : f32[4]\n", "line 2 col 6: weight %0: weight name is empty");
    expect_parse_error(H "%0 = weight \"a\" {scale=1} : f32[4]\n%1 = weight \"a\" {scale=1} : f32[4]\n",
                       "line 3 col 6: weight %1: name \"a\" is already used by weight %0");
}

/* Every proper prefix either fails with a line:col message or is a graph that does not
 * verify (it lost its output); only dropping the final newline changes nothing. */
Test(ir_parse, truncated_text) {
    size_t len = strlen(GOLDEN);
    int failed = 0;
    for (size_t cut = 0; cut < len; cut++) {
        char *buf = malloc(cut + 1);
        memcpy(buf, GOLDEN, cut);
        bj_graph g;
        bj_error err = { 0 };
        bj_status st = bj_ir_parse(&g, buf, cut, &err);
        if (cut == len - 1) {
            cr_assert_eq(st, BJ_OK, "%s", err.msg);
            char *text = print_str(&g);
            cr_assert_str_eq(text, GOLDEN);
            free(text);
        } else if (st == BJ_OK) {
            cr_assert_neq(bj_ir_verify(&g, &err), BJ_OK, "prefix of %zu bytes verified", cut);
        } else {
            failed++;
            cr_assert_eq(st, BJ_E_FORMAT);
            cr_assert_eq(strncmp(err.msg, "line ", 5), 0, "cut %zu: %s", cut, err.msg);
        }
        bj_graph_free(&g);
        free(buf);
    }
    cr_assert_gt(failed, (int)len / 2, "most prefixes end mid-line and must fail");
}

/* ---- fuzz -------------------------------------------------------------------------------- */
static uint64_t rng_next(uint64_t *s) { /* xorshift64*: fixed seed, reproducible */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static const char *const TOKENS[] = {
    "%", "%0", "%99", "{", "}", ",", "=", ":", "[", "]", "T", "\"", "\\", "\n", "#", " ", "-",
    "99999999999999999999", "-1", "0", "nan", "inf", "1e308", "1e-400", "0x1p3", "matmul_t",
    "attention", "weight", "output", "q8row", "t2hf", "f32[T,8]", "{scale=1}", "\r\n", "@",
};

/* One random edit of buf[0..*len) (capacity cap). */
static void mutate(char *buf, size_t *len, size_t cap, uint64_t *rng) {
    size_t at = *len ? rng_next(rng) % *len : 0;
    switch (rng_next(rng) % 5) {
    case 0: if (*len) buf[at] = (char)rng_next(rng); break;                           /* any byte */
    case 1: if (*len) { memmove(buf + at, buf + at + 1, *len - at - 1); (*len)--; } break; /* delete */
    case 2: if (*len) *len = at; break;                                               /* truncate */
    case 3: if (*len && *len < cap) { memmove(buf + at + 1, buf + at, *len - at); buf[at] = buf[rng_next(rng) % *len]; (*len)++; } break;
    default: {                                                                        /* token */
        const char *t = TOKENS[rng_next(rng) % BJ_COUNTOF(TOKENS)];
        size_t n = strlen(t);
        if (*len + n > cap) break;
        memmove(buf + at + n, buf + at, *len - at);
        memcpy(buf + at, t, n);
        *len += n;
    }
    }
}

/* Whatever parses must print, and that print must be a fixed point of parse + print. */
static void check_fixed_point(const bj_graph *g) {
    char *once = print_str(g);
    char *twice = reprint(once, strlen(once));
    cr_assert_str_eq(twice, once);
    free(twice);
    free(once);
}

Test(ir_parse, fuzz_mutations_never_crash) {
    enum { ITERS = 4000, CAP = 4096 };
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    size_t golden_len = strlen(GOLDEN);
    int ok = 0, bad = 0;
    char work[CAP];
    for (int it = 0; it < ITERS; it++) {
        size_t len = golden_len;
        memcpy(work, GOLDEN, len);
        int edits = 1 + (int)(rng_next(&rng) % 4);
        for (int e = 0; e < edits; e++) mutate(work, &len, CAP, &rng);
        char *exact = malloc(len ? len : 1); /* exact size: ASan catches overreads */
        memcpy(exact, work, len);
        bj_graph g;
        bj_error err = { 0 };
        bj_status st = bj_ir_parse(&g, exact, len, &err);
        if (st == BJ_OK) {
            ok++;
            check_fixed_point(&g);
            (void)bj_ir_verify(&g, &err);
        } else {
            bad++;
            cr_assert_eq(st, BJ_E_FORMAT, "iteration %d: %s", it, err.msg);
            cr_assert_eq(strncmp(err.msg, "line ", 5), 0, "iteration %d: %s", it, err.msg);
        }
        bj_graph_free(&g);
        free(exact);
    }
    cr_log_info("fuzz: %d mutants parsed, %d rejected", ok, bad);
    cr_assert_gt(ok, 50, "some mutations should still parse (ok=%d bad=%d)", ok, bad);
    cr_assert_gt(bad, ITERS / 2, "most mutations should fail (ok=%d bad=%d)", ok, bad);
}
