/* ir/weights.h -- what the numbers in a weight tensor are, for every weight dtype.
 *
 * The IR defines each packing as a dtype (ir_types.def); this is the one place that says how
 * to read values out of one, and how a float master becomes ternary or binary values as the
 * model was trained. The reference engine, the JIT engine, the quantize-weights pass and
 * the AOT compiler all call it, so none of them keeps a copy of a rule. libc only. */
#ifndef BJ_IR_WEIGHTS_H
#define BJ_IR_WEIGHTS_H

#include "ir/ir.h"

/* Element i of a float-class weight (f32, f16, bf16, q8_0; bytes may be unaligned). */
float bj_ir_weight_float(bj_dtype dt, const void *data, uint64_t i);

/* BJ_OK when a WEIGHT node is bound to at least the bytes its type needs. */
bj_status bj_ir_weight_check(const bj_node *n, bj_error *err);

/* The ternary/binary values of a lowbit weight: node is a lowbit WEIGHT (any packing) or a
 * WEIGHT_QUANT of a bound float master. *t8 is malloc'd (rows x cols int8 in {-1,0,1});
 * *scale the multiplier. Checks the bound data's size and every code. */
bj_status bj_ir_lowbit_values(const bj_graph *g, uint32_t node, int8_t **t8, double *scale, bj_error *err);
/* The same into the caller's v (rows x cols bytes), for callers that unpack many weights in
 * turn into one buffer (the JIT engine: no heap churn of up to 17.7 MB a matrix). */
bj_status bj_ir_lowbit_values_into(const bj_graph *g, uint32_t node, int8_t *v, double *scale, bj_error *err);
/* Whether rows of node can be read on their own (a lowbit WEIGHT; not a WEIGHT_QUANT, whose
 * rule needs the whole master's means), and rows [r0, r1) of bj_ir_lowbit_values' result into
 * v ((r1 - r0) x cols), checked the same way (a bad code is named by its row in the whole
 * weight). For callers that pack a large weight block by block while the block is in cache. */
bool bj_ir_lowbit_by_rows(const bj_graph *g, uint32_t node);
bj_status bj_ir_lowbit_rows_into(const bj_graph *g, uint32_t node, int64_t r0, int64_t r1, int8_t *v,
                                 bj_error *err);
/* The same *scale without making the values (for a caller that has them packed already);
 * checks the weight as bj_ir_lowbit_values does, except the codes themselves. */
bj_status bj_ir_lowbit_scale(const bj_graph *g, uint32_t node, double *scale, bj_error *err);

/* weight_quant of a bound float master m [N, K] into v (N*K values), as trained: mode 0
 * absmean ternary (HF WeightQuant: g = max(mean|W|, 1e-5), v = clamp(rint(W * (1/g)), -1, 1),
 * scale g), mode 1 the 1-bit rule (v = W > mean W ? +1 : -1, scale mean|W|). Means are an
 * accurate sum times f32(1/N), as torch computes them. */
void bj_ir_quantize_master(const bj_node *m, int64_t mode, int8_t *v, double *scale);

/* Binary values v (N x K, each -1 or +1) as b1 sign bits (ir_types.def: row n is ceil(K/8)
 * bytes, bit k%8 of byte k/8 is 1 for +1; the padding bits of a row are 0). out holds
 * N * ceil(K/8) bytes. */
/* True when all n values are in {-1,0,1} (and none is 0 when binary). Branch-free, so it
 * vectorizes (2B4T checks 2 G values at load); find the bad value only when this is false. */
bool bj_ir_values_valid(const int8_t *v, int64_t n, bool binary);
void bj_ir_pack_b1(const int8_t *v, int64_t N, int64_t K, uint8_t *out);

/* n elements from index i0 of a float weight (f32, f16, bf16; other float dtypes element by
 * element) into out as f32, exactly; the dtype switch is outside the loop so it vectorizes. */
void bj_ir_float_row(bj_dtype dt, const void *data, uint64_t i0, int64_t n, float *out);

/* The 8-bit LM head's rule (`--head q8`; runtime/ops.h bj_rt_matmul_q8 runs it), one place for
 * the quantize-head pass, the engines and the activations quantized against it: a row of n
 * floats becomes int8 in [-127, 127] by symmetric absmax (q = lrintf(x * 127/amax)), zero padded
 * to stride = bj_ir_q8_stride(n) (n rounded up to 32) bytes; the returned scale is amax / 127. */
int64_t bj_ir_q8_stride(int64_t K);
float bj_ir_q8_row(const float *x, int64_t n, int64_t stride, int8_t *q);
/* Rows [n0, n1) of a bound float weight w [N, K]: row r into q + r * stride, its scale into d[r]. */
void bj_ir_q8_rows(const bj_node *w, int64_t n0, int64_t n1, int64_t stride, int8_t *q, float *d);

#endif
