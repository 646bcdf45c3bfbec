/* codegen/cg_compile.c -- the one compile pipeline: descriptor -> LLVM module (the variant's
 * generator) -> verifier -> default<O3> -> object bytes (or text). JIT, cache and AOT all
 * start from the object bytes, so there is one code generator, not two (DESIGN.md).
 *
 * Invariants: each compile owns its LLVM context and target machine and frees them before
 * returning, so compiles on different threads share nothing; LLVM's target registry is
 * initialised once (pthread_once), the only process-wide state. The target machine and
 * every function carry the same CPU and feature string. */
#include "codegen/cg_llvm.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The optimisation pipeline, as one string: O3 unrolls the k loops the generators leave
 * rolled and promotes their allocas to registers. */
#define BJ_CG_PIPELINE "default<O3>"

/* Each variant: the generator of the module O3 sees, and optionally a late generator that
 * adds code after O3, straight to instruction selection. Weights-as-code adds its thousands
 * of straight-line adds late: O3 has nothing to improve in them, and InstCombine and GVN
 * over long add chains cost more than the whole rest of the compile. */
typedef bj_status (*bj_cg_gen_fn)(bj_cg *cg, const char *name, bj_error *err);
typedef bj_status (*bj_cg_late_fn)(bj_cg *cg, bj_error *err);
static const struct { bj_cg_gen_fn gen; bj_cg_late_fn late; } bj_cg_generators[BJ_CG_V_COUNT] = {
    [BJ_CG_V_DOT2] = { bj_cg_gen_dot2, NULL },
    [BJ_CG_V_BITPLANE] = { bj_cg_gen_bitplane, NULL },
    [BJ_CG_V_WCODE] = { bj_cg_gen_wcode, bj_cg_gen_wcode_late },
    [BJ_CG_V_BIN1] = { bj_cg_gen_dot2, NULL }, /* DOT2's loop nest over 1-bit codes */
    [BJ_CG_V_TRIT5] = { bj_cg_gen_dot2, NULL }, /* and over base-3 codes */
};

static pthread_once_t bj_cg_llvm_once = PTHREAD_ONCE_INIT;
static void bj_cg_llvm_init_once(void) {
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    LLVMInitializeNativeAsmParser();
}
void bj_cg_llvm_init(void) { pthread_once(&bj_cg_llvm_once, bj_cg_llvm_init_once); }

static double bj_cg_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* Context, module and target machine of one compile. */
typedef struct bj_cg_job {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMTargetMachineRef tm;
    bj_cg cg;
    char sym[32];
} bj_cg_job;

static void bj_cg_job_free(bj_cg_job *job) {
    bj_cg_fini(&job->cg);
    if (job->mod) LLVMDisposeModule(job->mod);
    if (job->tm) LLVMDisposeTargetMachine(job->tm);
    if (job->ctx) LLVMContextDispose(job->ctx);
    memset(job, 0, sizeof *job);
}

static bj_status bj_cg_job_target(bj_cg_job *job, const bj_cg_target *t, bj_error *err) {
    char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
    LLVMTargetRef target;
    bj_status s = BJ_OK;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        s = BJ_FAIL(err, BJ_E_LLVM, "no LLVM target for %s: %s", triple, msg ? msg : "?");
    } else {
        job->tm = LLVMCreateTargetMachine(target, triple, t->cpu, t->features, LLVMCodeGenLevelAggressive,
                                          LLVMRelocPIC, LLVMCodeModelDefault);
        if (!job->tm) s = BJ_FAIL(err, BJ_E_LLVM, "LLVM could not make a target machine for %s", t->cpu);
    }
    if (s == BJ_OK) {
        LLVMSetTarget(job->mod, triple);
        LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(job->tm);
        LLVMSetModuleDataLayout(job->mod, dl);
        LLVMDisposeTargetData(dl);
    }
    if (msg) LLVMDisposeMessage(msg);
    LLVMDisposeMessage(triple);
    return s;
}

static bj_status bj_cg_job_verify(bj_cg_job *job, bj_error *err) {
    char *msg = NULL;
    bj_status s = BJ_OK;
    if (LLVMVerifyModule(job->mod, LLVMReturnStatusAction, &msg))
        s = BJ_FAIL(err, BJ_E_INTERNAL, "generated %s kernel %u x %u fails the LLVM verifier: %.600s",
                    bj_cg_variant_name((bj_cg_variant)job->cg.d->variant), job->cg.d->m, job->cg.d->k,
                    msg ? msg : "?");
    if (msg) LLVMDisposeMessage(msg);
    return s;
}

static bj_status bj_cg_job_build(bj_cg_job *job, const bj_cg_target *t, const bj_cg_kdesc *d,
                                 const int8_t *t8, bj_error *err) {
    BJ_TRY(bj_cg_kdesc_check(d, t, err));
    bj_cg_llvm_init();
    bj_cg_kernel_symbol(d, job->sym, sizeof job->sym);
    job->ctx = LLVMContextCreate();
    job->mod = LLVMModuleCreateWithNameInContext(job->sym, job->ctx);
    BJ_TRY(bj_cg_job_target(job, t, err));
    bj_cg_init(&job->cg, job->ctx, job->mod, t, d, t8);
    bj_cg_gen_fn gen = d->kind == BJ_CG_KIND_HEAD_F ? bj_cg_gen_head
                       : d->isa == BJ_CG_ISA_AMX ? bj_cg_gen_amx
                                                 : bj_cg_generators[d->variant].gen;
    BJ_TRY(gen(&job->cg, job->sym, err));
    return bj_cg_job_verify(job, err);
}

/* After O3: the late part of the variant, if any. */
static bj_status bj_cg_job_late(bj_cg_job *job, bj_error *err) {
    if (job->cg.d->kind != BJ_CG_KIND_MATMUL_T) return BJ_OK;
    bj_cg_late_fn late = bj_cg_generators[job->cg.d->variant].late;
    if (!late) return BJ_OK;
    BJ_TRY(late(&job->cg, err));
    return bj_cg_job_verify(job, err);
}

static bj_status bj_cg_llvm_error(LLVMErrorRef e, const char *what, bj_error *err) {
    char *m = LLVMGetErrorMessage(e);
    bj_status s = BJ_FAIL(err, BJ_E_LLVM, "%s: %s", what, m);
    LLVMDisposeErrorMessage(m);
    return s;
}

static bj_status bj_cg_job_optimize(bj_cg_job *job, bj_error *err) {
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMErrorRef e = LLVMRunPasses(job->mod, BJ_CG_PIPELINE, job->tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    return e ? bj_cg_llvm_error(e, "running " BJ_CG_PIPELINE, err) : BJ_OK;
}

static bj_status bj_cg_job_emit(bj_cg_job *job, LLVMCodeGenFileType ft, LLVMMemoryBufferRef *buf, bj_error *err) {
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(job->tm, job->mod, ft, &msg, buf)) {
        bj_status s = BJ_FAIL(err, BJ_E_LLVM, "emitting %s: %s", job->sym, msg ? msg : "?");
        if (msg) LLVMDisposeMessage(msg);
        return s;
    }
    return BJ_OK;
}

void bj_cg_object_free(bj_cg_object *o) {
    free(o->data);
    memset(o, 0, sizeof *o);
}

static bj_status bj_cg_buffer_copy(LLVMMemoryBufferRef buf, uint8_t **data, size_t *size, bool nul, bj_error *err) {
    *size = LLVMGetBufferSize(buf);
    *data = malloc(*size + 1);
    if (*data) {
        memcpy(*data, LLVMGetBufferStart(buf), *size);
        if (nul) (*data)[*size] = 0;
    }
    LLVMDisposeMemoryBuffer(buf);
    return *data ? BJ_OK : BJ_FAIL(err, BJ_E_NOMEM, "object of %zu bytes", *size);
}

bj_status bj_cg_compile(const bj_cg_target *t, const bj_cg_kdesc *d, const int8_t *t8,
                        bj_cg_object *out, bj_cg_times *times, bj_error *err) {
    bj_cg_job job = { 0 };
    LLVMMemoryBufferRef buf = NULL;
    memset(out, 0, sizeof *out);
    double t0 = bj_cg_now_ms();
    bj_status s = bj_cg_job_build(&job, t, d, t8, err);
    double t1 = bj_cg_now_ms();
    if (s == BJ_OK) s = bj_cg_job_optimize(&job, err);
    if (s == BJ_OK) s = bj_cg_job_late(&job, err);
    double t2 = bj_cg_now_ms();
    if (s == BJ_OK) s = bj_cg_job_emit(&job, LLVMObjectFile, &buf, err);
    double t3 = bj_cg_now_ms();
    if (s == BJ_OK) s = bj_cg_buffer_copy(buf, &out->data, &out->size, false, err);
    if (s == BJ_OK) memcpy(out->sym, job.sym, sizeof out->sym);
    if (times) *times = (bj_cg_times){ t1 - t0, t2 - t1, t3 - t2 };
    bj_cg_job_free(&job);
    return s;
}

bj_status bj_cg_compile_text(const bj_cg_target *t, const bj_cg_kdesc *d, const int8_t *t8,
                             bj_cg_emit what, char **out, bj_error *err) {
    bj_cg_job job = { 0 };
    *out = NULL;
    bj_status s = bj_cg_job_build(&job, t, d, t8, err);
    if (s == BJ_OK && what != BJ_CG_EMIT_LLVM) s = bj_cg_job_optimize(&job, err);
    if (s == BJ_OK) s = bj_cg_job_late(&job, err);
    if (s == BJ_OK && what == BJ_CG_EMIT_ASM) {
        LLVMMemoryBufferRef buf = NULL;
        size_t n;
        s = bj_cg_job_emit(&job, LLVMAssemblyFile, &buf, err);
        if (s == BJ_OK) s = bj_cg_buffer_copy(buf, (uint8_t **)out, &n, true, err);
    } else if (s == BJ_OK) {
        char *ir = LLVMPrintModuleToString(job.mod);
        *out = strdup(ir);
        LLVMDisposeMessage(ir);
        if (!*out) s = BJ_FAIL(err, BJ_E_NOMEM, "module text");
    }
    bj_cg_job_free(&job);
    return s;
}
