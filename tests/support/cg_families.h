/* tests/support/cg_families.h -- compiles one small kernel of every family (dot2, bitplane,
 * wcode, bin1, trit5) on the target's best path, and each one's prefill default (AMX where the
 * target has it), to assembly. Used where a CPU/feature reading must give code LLVM can select:
 * an LLVM abort ("Cannot select", "Do not know how to split") kills the process, so reaching
 * the end at all is the check. Returns the first failure (a kernel the target cannot run is
 * skipped, not a failure). Header-only: the fuzz harness and the unit tests share it. */
#ifndef BJ_TEST_CG_FAMILIES_H
#define BJ_TEST_CG_FAMILIES_H

#include "codegen/codegen.h"

#include <stdlib.h>

static inline bj_status bj_test_compile_families(const bj_cg_target *t, bj_error *err) {
    enum { M = 16, K = 96 }; /* small: LLVM compiles ten kernels an input; odd enough for the edge code */
    static int8_t tern[M * K], bin[M * K];
    for (size_t i = 0; i < sizeof tern; i++) {
        tern[i] = (int8_t)((i * 7 + i / 5) % 3) - 1;
        bin[i] = (int8_t)((i * 5 + i / 3) % 2 ? 1 : -1);
    }
    static const bj_cg_variant vs[] = { BJ_CG_V_DOT2, BJ_CG_V_BITPLANE, BJ_CG_V_WCODE, BJ_CG_V_BIN1, BJ_CG_V_TRIT5 };
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) {
        bj_cg_wtype wt = vs[i] == BJ_CG_V_BIN1 ? BJ_CG_W_BINARY : BJ_CG_W_TERNARY;
        const int8_t *w = wt == BJ_CG_W_BINARY ? bin : tern;
        bj_cg_kdesc d;
        bj_status s = bj_cg_kdesc_init(&d, t, vs[i], BJ_CG_ISA_AUTO, wt, M, K, w, err);
        if (s == BJ_E_UNSUPPORTED) continue;
        if (s != BJ_OK) return s;
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1 && !bj_cg_kdesc_prefill_default(&d, t)) break;
            char *text = NULL;
            s = bj_cg_compile_text(t, &d, w, BJ_CG_EMIT_ASM, &text, err);
            free(text);
            if (s != BJ_OK) return s;
        }
    }
    return BJ_OK;
}

#endif
