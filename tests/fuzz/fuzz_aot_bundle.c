/* tests/fuzz/fuzz_aot_bundle.c -- libFuzzer harness for the checks an ahead-of-time library's
 * bundle goes through before bitjit trusts it (runtime/aot_load.c, bj_aot_check_bundle): the
 * header, every entry's name and data range inside the bundle (packed weights page-aligned), the
 * target entry's key=value lines, the model description's, the embedded graph IR parsed, its
 * weights bound by name and the graph verified, the plan's lines (descriptors checked against the
 * target, each matmul's packed entry present with its layout's size). The bytes are the bundle itself: no library is dlopened. Any crash,
 * sanitizer report or leak is a bug. Seeds: tests/fuzz/corpus/aot (the bundle of a bitjitc
 * library of tests/fuzz/tiny-model, cut out by tests/fuzz/make_seeds.py --aot). */
#include "runtime/aot_load.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A real bundle is page-aligned in .rodata; the parser reads unaligned anyway. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    bj_error err = { 0 };
    bj_aot_check_bundle(copy, size, &err);
    free(copy);
    return 0;
}
