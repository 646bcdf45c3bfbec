/* runtime/bench.h -- measurements behind `bitjit bench`: prefill and decode speed of an
 * engine, and the machine's streaming-read bandwidth (the decode roofline). Figures only:
 * nothing here asserts a speed. */
#ifndef BJ_RT_BENCH_H
#define BJ_RT_BENCH_H

#include "runtime/runtime.h"

typedef struct bj_bench_stat { double mean, sd; int n; } bj_bench_stat;

/* Tokens/s of a p-token prefill from an empty cache and of n one-token decode steps
 * after it, each repeated reps times (after one warm-up). Tokens are fixed pseudo-random
 * ids below n_vocab. p or n of 0 skips that part. */
bj_status bj_bench_engine(bj_engine *e, int64_t p, int64_t n, int reps, bj_bench_stat *pp, bj_bench_stat *tg,
                          bj_error *err);

/* Decode at depth: tokens/s of n one-token decode steps after a context of depth tokens (filled
 * by untimed prefill calls of up to 512 tokens), reps times after one warm-up. Each step reads
 * the KV cache of depth + i positions besides the weights (bj_bench_bytes_per_token). */
bj_status bj_bench_depth(bj_engine *e, int64_t depth, int64_t n, int reps, bj_bench_stat *tg, bj_error *err);

/* Best-of-reps read bandwidth in GB/s over a buffer of `bytes`, with n_threads threads. */
bj_status bj_bench_bandwidth(int n_threads, size_t bytes, int reps, double *gbps, bj_error *err);

/* Bytes a decode step reads from memory: every weight tensor the graph reads once per
 * token (ternary weights at their packed size as given, float weights at theirs), plus the
 * KV cache at position pos, of kv elements (bj_kv_type: f32 or f16, bj_jit_options.kv). head_q8:
 * the head is read as int8 rows (bj_jit_options.head_q8). */
uint64_t bj_bench_bytes_per_token(const bj_graph *g, uint64_t packed_lowbit_bytes, bool head_q8, int64_t pos, int kv);

/* This process's memory, from /proc/self/status (zeros where it cannot be read): peak RSS
 * (VmHWM) and RSS now, split into anonymous and file-backed pages. Bytes. */
typedef struct bj_bench_mem { uint64_t peak, rss, anon, file; } bj_bench_mem;
void bj_bench_mem_read(bj_bench_mem *m);
/* Starts a new peak (VmHWM = the current RSS, Linux /proc/self/clear_refs); false where the
 * kernel does not allow it (then the peak stays the process's). */
bool bj_bench_mem_reset_peak(void);

/* "Weights + KV cache": the bytes an engine must keep resident to run a context of ctx
 * tokens, i.e. what one decode step at position ctx reads (bj_bench_bytes_per_token: packed
 * low-bit weights, the head (int8 with head_q8, else as stored), norms, one embedding row,
 * and the KV cache of ctx positions). The denominator of the peak-RSS ratio `bitjit bench`
 * and `bitjit run -v` print. */
uint64_t bj_bench_resident_need(const bj_graph *g, uint64_t packed_lowbit_bytes, bool head_q8, int64_t ctx, int kv);

#endif
