/* runtime/jit_engine.h -- internal to the JIT engine's files: the engine object they share.
 *
 *   engine_jit.c   creation: the pass pipeline (bj_jit_compile), then each of the plan's
 *                  kernels from the JIT, the kernel cache or an AOT library; the LM head
 *   jit_exec.c     the executor: the plan's steps on the thread pool, in the plan's arena
 *   jit_profile.c  where the time went (options.profile)
 *
 * Everything the engine runs is decided by the plan (bj_plan, compiler/compiler.h): the steps and
 * their epilogues (fold-epilogues), each matmul's kernels and packed weights (select-kernels,
 * pack-weights), every piece's arena offset and the KV layout (plan-memory). */
#ifndef BJ_RUNTIME_JIT_ENGINE_H
#define BJ_RUNTIME_JIT_ENGINE_H

#include "codegen/codegen.h"
#include "compiler/compiler.h"
#include "runtime/ops.h"
#include "runtime/runtime.h"
#include "runtime/threads.h"

#include <ffi.h>
#include <stdatomic.h>

typedef struct jit_mm {   /* one ternary matmul step's kernels */
    bj_cg_kdesc desc;
    bj_cg_matmul_fn fn;
    bj_cg_matmul_fn fn_pp; /* the kernel for steps of >= BJ_CG_TUNE_PREFILL_MIN_T tokens (tuning database or the
                              path's prefill default: bj_cg_kdesc_prefill_default), or NULL */
    bj_cg_kdesc desc_pp;   /* fn_pp's descriptor */
    bool tuned;            /* desc came from the tuning database */
    bool pp_tuned;         /* fn_pp came from it (else the path's default prefill tiles) */
    ffi_cif cif;
    const uint8_t *packed; /* weights in the kernel's layout (NULL for weights-as-code): the plan's (pack-weights) */
    double scale;
    int64_t M, K, row_block;
} jit_mm;

typedef struct jit_buf {  /* one node's pieces in the arena for the current step's T (plan.val[].off * T) */
    double *f;            /* f64 activations (runtime/ops.h) */
    int8_t *q;            /* q8row: rows of stride bj_cg_x_stride(K), zero padded */
    double *qs;
    int32_t *acc;         /* matmul_t: integer sums before the rescale */
    double *tmp;          /* rmsnorm_quant, bitlinear: the normed rows before quantization */
} jit_buf;

typedef struct jit_ctr {  /* one cache line each: the threads' counters do not share lines */
    atomic_int_fast64_t taken; /* items of this share handed out so far */
    char pad[64 - sizeof(atomic_int_fast64_t)];
} jit_ctr;

typedef struct jit_engine {
    bj_engine base;
    const bj_graph *g;    /* &own */
    bj_graph own;         /* the caller's graph as the pass pipeline left it */
    bj_plan plan;         /* the pipeline's decisions: steps, kernels, packed weights, memory */
    bj_pool *pool;
    bj_cg_target tgt;
    bj_cg_cache cache;
    bj_cg_jit *jit;
    ffi_type *argt[6];
    jit_mm **mm;          /* per node: matmul_t steps */
    bj_rt_q8w *head8;     /* per node: matmul_f weights at 8 bits (--head q8), q NULL otherwise */
    bj_cg_head_fn *headf; /* per node: matmul_f's generated exact kernel (cg_kernel_head.c), or NULL: plain C */
    uint32_t head;        /* the matmul_f the output reads (bj_engine_check_head) */
    void **kc, **vc;      /* per node: attention KV caches (of kv elements), in kv_arena at the plan's offsets */
    int kv;               /* the caches' element type (bj_jit_options.kv: BJ_KV_F32 / BJ_KV_F16) */
    uint8_t *kv_arena;    /* plan.kv_bytes */
    jit_buf *buf;         /* per node, bound for buf_T tokens */
    uint8_t *arena;       /* plan.arena_row * plan.step_tokens bytes */
    int64_t buf_T;        /* the step size buf[] is bound for (0: none yet) */
    double **scratch;     /* per thread: attention scores, max_seq doubles */
    jit_ctr *ctr;         /* per thread: chunked steps' progress through that thread's share */
    uint64_t *prof_ns;    /* options.profile: per node, time in its steps; NULL otherwise */
    int64_t *prof_steps;
    bj_jit_profile_sum prof_sum;
} jit_engine;

/* jit_exec.c */
bj_status bj_jit_exec_forward(bj_engine *base, const int32_t *tokens, int64_t T, bool all_logits, float *logits,
                              bj_error *err);
/* The arena and the KV cache the plan lays out, allocated once. */
bj_status bj_jit_exec_memory(jit_engine *e, bj_error *err);
uint64_t bj_jit_now_ns(void);

#endif
