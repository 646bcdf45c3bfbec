/* codegen/cg_jit.c -- ORC LLJIT around object files: kernels arrive as object bytes (from a
 * compile or from the disk cache), are linked into one JITDylib and looked up by symbol.
 * No IR module is ever handed to LLJIT, so the thread-safe-context API that differs between
 * LLVM 19 and 22 is not needed (llvm.md).
 *
 * Invariants: the symbols added are remembered, so a lookup of a symbol never added fails
 * here without asking ORC, and adding the same kernel twice is refused instead of becoming
 * a duplicate-definition error inside ORC. The list is guarded by a mutex; ORC does its own
 * locking. */
#include "codegen/cg_llvm.h"

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Object.h>
#include <llvm-c/Orc.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct bj_cg_jit {
    LLVMOrcLLJITRef lljit;
    pthread_mutex_t mu;
    char (*syms)[32];
    size_t n, cap;
};

static bj_status bj_cg_jit_err(LLVMErrorRef e, const char *what, const char *sym, bj_error *err) {
    char *m = LLVMGetErrorMessage(e);
    bj_status s = BJ_FAIL(err, BJ_E_LLVM, "JIT %s %s: %s", what, sym, m);
    LLVMDisposeErrorMessage(m);
    return s;
}

bj_status bj_cg_jit_create(bj_cg_jit **out, bj_error *err) {
    bj_cg_llvm_init();
    *out = NULL;
    bj_cg_jit *j = calloc(1, sizeof *j);
    if (!j) return BJ_FAIL(err, BJ_E_NOMEM, "JIT instance");
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->lljit, LLVMOrcCreateLLJITBuilder());
    if (e) {
        free(j);
        return bj_cg_jit_err(e, "create", "", err);
    }
    pthread_mutex_init(&j->mu, NULL);
    *out = j;
    return BJ_OK;
}

void bj_cg_jit_free(bj_cg_jit *j) {
    if (!j) return;
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->lljit);
    if (e) LLVMConsumeError(e); /* nothing left to report it to */
    pthread_mutex_destroy(&j->mu);
    free(j->syms);
    free(j);
}

static bool bj_cg_jit_has_locked(bj_cg_jit *j, const char *sym) {
    for (size_t i = 0; i < j->n; i++)
        if (!strcmp(j->syms[i], sym)) return true;
    return false;
}

bool bj_cg_jit_has(bj_cg_jit *j, const char *sym) {
    pthread_mutex_lock(&j->mu);
    bool has = bj_cg_jit_has_locked(j, sym);
    pthread_mutex_unlock(&j->mu);
    return has;
}

/* The defined global symbols starting "bjk_" in the object: every kernel is named so. */
static bj_status bj_cg_object_symbol(const uint8_t *data, size_t size, char *sym, bj_error *err) {
    LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRange((const char *)data, size, "kernel", 0);
    char *msg = NULL;
    LLVMBinaryRef bin = LLVMCreateBinary(buf, NULL, &msg);
    bj_status s = BJ_OK;
    sym[0] = 0;
    if (!bin) {
        s = BJ_FAIL(err, BJ_E_FORMAT, "kernel object (%zu bytes) is not an object file: %s", size, msg ? msg : "?");
    } else {
        LLVMSymbolIteratorRef it = LLVMObjectFileCopySymbolIterator(bin);
        for (; !LLVMObjectFileIsSymbolIteratorAtEnd(bin, it); LLVMMoveToNextSymbol(it)) {
            const char *name = LLVMGetSymbolName(it);
            if (!strncmp(name, "bjk_", 4) && strlen(name) < 32) strcpy(sym, name);
        }
        LLVMDisposeSymbolIterator(it);
        LLVMDisposeBinary(bin);
        if (!sym[0]) s = BJ_FAIL(err, BJ_E_FORMAT, "kernel object (%zu bytes) defines no bjk_ symbol", size);
    }
    if (msg) LLVMDisposeMessage(msg);
    LLVMDisposeMemoryBuffer(buf);
    return s;
}

bj_status bj_cg_jit_add_object(bj_cg_jit *j, const uint8_t *data, size_t size, bj_error *err) {
    char sym[32];
    BJ_TRY(bj_cg_object_symbol(data, size, sym, err));
    pthread_mutex_lock(&j->mu);
    bj_status s = BJ_OK;
    if (bj_cg_jit_has_locked(j, sym)) {
        s = BJ_FAIL(err, BJ_E_INVALID, "JIT already holds kernel %s", sym);
    } else if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 16;
        void *p = realloc(j->syms, cap * sizeof *j->syms);
        if (!p) s = BJ_FAIL(err, BJ_E_NOMEM, "JIT symbol list");
        else { j->syms = p; j->cap = cap; }
    }
    if (s == BJ_OK) {
        LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy((const char *)data, size, sym);
        LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->lljit, LLVMOrcLLJITGetMainJITDylib(j->lljit), buf);
        if (e) s = bj_cg_jit_err(e, "adding", sym, err);
        else memcpy(j->syms[j->n++], sym, sizeof sym);
    }
    pthread_mutex_unlock(&j->mu);
    return s;
}

bj_status bj_cg_jit_lookup(bj_cg_jit *j, const char *sym, void **addr, bj_error *err) {
    *addr = NULL;
    if (!bj_cg_jit_has(j, sym)) return BJ_FAIL(err, BJ_E_INVALID, "JIT holds no kernel %s", sym);
    LLVMOrcExecutorAddress a = 0;
    LLVMErrorRef e = LLVMOrcLLJITLookup(j->lljit, &a, sym);
    if (e) return bj_cg_jit_err(e, "looking up", sym, err);
    *addr = (void *)(uintptr_t)a;
    return BJ_OK;
}
