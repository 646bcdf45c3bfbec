/* runtime/ops.h -- the forward-pass ops in plain C, shared by every engine.
 *
 * The reference executor runs them over whole tensors on one thread; the JIT engine runs
 * the same functions over row ranges on its thread pool and replaces only the ternary
 * matmul with generated kernels. So the two engines agree bit for bit wherever they share
 * code, and a JIT kernel is checked against exactly the arithmetic it replaces.
 * Activations are f64 (docs/numerics.md says why): the residual stream, the RMSNorm outputs,
 * the BitLinear rescale, RoPE, attention and the FFN products; only the KV cache (f32 or f16,
 * rounded where stored) and the LM head's operand (rounded to f32 for its f32 dots) are
 * narrower. The head writes f32 logits.
 *
 * Ranges: [t0, t1) are token rows, [n0, n1) output columns, [h0, h1) attention heads.
 * Row strides are given where a buffer is padded (the int8 activations of the JIT are
 * padded to the kernel's x stride). */
#ifndef BJ_RT_OPS_H
#define BJ_RT_OPS_H

#include "ir/ir.h"
#include "ir/weights.h"

void bj_rt_embed(const bj_node *table, const int32_t *tokens, int64_t t0, int64_t t1, double *y);
void bj_rt_rmsnorm(const double *x, const bj_node *w, double eps, int64_t D, int64_t t0, int64_t t1, double *y);
/* q rows have stride qstride >= K; the padding [K, qstride) is zeroed. qs[t] = 127/max|x|. */
void bj_rt_act_quant(const double *x, int64_t K, int64_t qstride, int64_t t0, int64_t t1, int8_t *q, double *qs);
/* BitLinear rescale of exact integer sums: y = acc / s[t] * scale, in f64. */
void bj_rt_rescale(const int32_t *acc, const double *qs, double scale, int64_t N, int64_t t0, int64_t t1,
                   int64_t n0, int64_t n1, double *y);
/* Reference integer matmul over unpacked values: acc[t,n] = sum_k q[t,k] * w[n,k]. */
void bj_rt_matmul_t8(const int8_t *q, int64_t qstride, const int8_t *w, int64_t K, int64_t N, int64_t t0,
                     int64_t t1, int64_t n0, int64_t n1, int32_t *acc);
/* High-precision matmul (the LM head): y[t,n] = sum_k f32(x[t,k]) * W[n,k] in f32, W float weight. */
void bj_rt_matmul_f(const double *x, const bj_node *w, int64_t K, int64_t N, int64_t T, int64_t n0, int64_t n1,
                    float *y);
/* The same through a generated kernel of codegen's bj_cg_head_fn contract (cg_kernel_head.c),
 * which keeps bj_rt_matmul_f's summation order: the same bits, on the widest vectors. fn's
 * weights are w's data as they are; x is rounded to f32 here as above. */
typedef void (*bj_rt_head_fn)(const float *x, const uint8_t *w, float *y, int64_t T, int64_t n0, int64_t n1);
void bj_rt_matmul_f_fn(bj_rt_head_fn fn, const double *x, const bj_node *w, int64_t K, int64_t T, int64_t n0,
                       int64_t n1, float *y);
/* The LM head at 8 bits (an option: `--head q8`; the exact bj_rt_matmul_f is the default).
 * W is kept as int8 rows (stride K rounded up to 32, zero padded) with one f32 scale per row
 * (absmax / 127); each token's activations are quantized the same way at run time, and
 * y[t,n] = f32(sum_k xq[t,k] * wq[n,k]) * (d_x[t] * d_w[n]): an exact integer dot, half the
 * bytes of an F16 head. Error: per logit at most about (|x|_1 d_w + |w_n|_1 d_x) / 2. */
typedef struct bj_rt_q8w {
    int8_t *q;
    float *d;
    int64_t N, K, stride;
} bj_rt_q8w;
/* Allocates w for weight (rows uninitialised), then bj_rt_q8w_rows fills rows [n0, n1), so
 * threads can share the conversion (328 M values for 2B4T); bj_rt_q8w_make does both. */
bj_status bj_rt_q8w_alloc(bj_rt_q8w *w, const bj_node *weight, bj_error *err);
void bj_rt_q8w_rows(bj_rt_q8w *w, const bj_node *weight, int64_t n0, int64_t n1);
bj_status bj_rt_q8w_make(bj_rt_q8w *w, const bj_node *weight, bj_error *err);
void bj_rt_q8w_free(bj_rt_q8w *w);
uint64_t bj_rt_q8w_bytes(int64_t N, int64_t K); /* what one pass over the rows reads */
/* Output columns [n0, n1) for T tokens; x is T x K. */
void bj_rt_matmul_q8(const double *x, const bj_rt_q8w *w, int64_t T, int64_t n0, int64_t n1, float *y);
void bj_rt_rope(const double *x, int64_t n_head, int64_t head_dim, double theta, int64_t pos0, int64_t t0,
                int64_t t1, double *y);
/* The KV cache holds kv-typed values (bj_kv_type, runtime.h: 0 f32, 1 f16), row-major
 * [position][n_kv * head_dim]; bytes an element: */
size_t bj_rt_kv_elem_bytes(int kv);
/* Appends k, v rows [t0, t1) of this step (positions pos0 + t) to the caches, rounded to f32
 * and, for f16, then to f16 (nearest even both times). */
void bj_rt_kv_store(const double *k, const double *v, int64_t width, int64_t pos0, int64_t t0, int64_t t1, int kv,
                    void *kc, void *vc);
/* Causal attention of T query rows at positions pos0.. over the cache of type kv, heads
 * [h0, h1). scratch holds pos0 + T doubles. The cached values are read back exactly, so an f16
 * cache gives the bits an f32 cache holding the same (f16-rounded) values gives. */
void bj_rt_attention(const double *q, const void *kc, const void *vc, int kv, int64_t n_head, int64_t n_kv,
                     int64_t head_dim, int64_t pos0, int64_t T, int64_t h0, int64_t h1, double *scratch,
                     double *y);
/* ADD, MUL, RELU_SQR, SILU over elements [i0, i1). */
void bj_rt_elementwise(bj_op op, const double *a, const double *b, int64_t i0, int64_t i1, double *y);

#endif
