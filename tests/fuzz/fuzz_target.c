/* tests/fuzz/fuzz_target.c -- libFuzzer harness for --mcpu / --mattr: the input is
 * "MCPU\nMATTR" (no newline: MATTR alone, on the host), read by bj_cg_target_detect as every
 * command does; when it is accepted, one kernel of every family and its prefill default is
 * compiled for it (tests/support/cg_families.h). No input may abort inside LLVM ("Cannot
 * select", "Do not know how to split"): bitjit must refuse a string or read it as LLVM will.
 * Also checked: what LLVM gets has every feature signed, and an accepted target's description
 * works. Seeds: tests/fuzz/corpus/target (the strings of issue 23 and the README). */
#include "codegen/codegen.h"
#include "tests/support/cg_families.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 512) return 0; /* names and feature lists are short; LLVM's compile time is not */
    char buf[520];
    memcpy(buf, data, size);
    buf[size] = 0;
    if (strlen(buf) != size) return 0; /* a NUL inside: not something a command line can hold */
    char *nl = strchr(buf, '\n'), *mcpu = NULL, *mattr = buf;
    if (nl) { *nl = 0; mcpu = buf; mattr = nl + 1; }
    bj_cg_target t;
    bj_error err = { 0 };
    if (bj_cg_target_detect(&t, mcpu, mattr, &err) != BJ_OK) return 0;
    /* Nothing unsigned reaches LLVM (it would read "avx2" as "-avx2"). */
    for (const char *p = t.features; *p;) {
        size_t n = strcspn(p, ",");
        if (n < 2 || (p[0] != '+' && p[0] != '-')) {
            fprintf(stderr, "unsigned feature '%.*s' in '%s'\n", (int)n, p, t.features);
            abort();
        }
        p += n + (p[n] == ',');
    }
    char info[2048];
    bj_cg_target_describe(&t, info, sizeof info);
    if (bj_test_compile_families(&t, &err) != BJ_OK) { /* accepted, so every family must build */
        fprintf(stderr, "mcpu '%s' mattr '%s': %s\n", mcpu ? mcpu : "", mattr, err.msg);
        abort();
    }
    return 0;
}
