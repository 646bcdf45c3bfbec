/* tests/fuzz/fuzz_ir.c -- libFuzzer harness for the graph IR text parser (ir/parse.c) and what
 * reads a parsed graph: every input is parsed; a graph that parses is verified, printed, and
 * the printed text must parse again and print identically (the printer and parser agree on
 * everything the parser accepts). Nothing may crash, leak or read past the input: the parser
 * takes a pointer and a length, so the input is copied to an exact-size buffer with no NUL.
 * Seeds: tests/fuzz/corpus/ir (the golden .bjir files and the tiny model's graph). */
#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    bj_graph g;
    bj_error err = { 0 };
    if (bj_ir_parse(&g, text, size, &err) == BJ_OK) {
        bj_ir_verify(&g, &err);
        char *p1 = NULL, *p2 = NULL;
        if (bj_ir_print_str(&g, &p1, &err) == BJ_OK) {
            bj_graph g2;
            if (bj_ir_parse(&g2, p1, strlen(p1), &err) != BJ_OK) {
                fprintf(stderr, "fuzz_ir: printed graph does not parse: %s\n%s\n", err.msg, p1);
                abort();
            }
            if (bj_ir_print_str(&g2, &p2, &err) != BJ_OK || strcmp(p1, p2)) {
                fprintf(stderr, "fuzz_ir: print(parse(print(g))) != print(g)\n--- first\n%s\n--- second\n%s\n", p1,
                        p2 ? p2 : "(none)");
                abort();
            }
            bj_graph_free(&g2);
        }
        free(p1);
        free(p2);
        bj_graph_free(&g);
    }
    free(text);
    return 0;
}
