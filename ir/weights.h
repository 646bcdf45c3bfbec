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

/* weight_quant of a bound float master m [N, K] into v (N*K values), as trained: mode 0
 * absmean ternary (HF WeightQuant: g = max(mean|W|, 1e-5), v = clamp(rint(W * (1/g)), -1, 1),
 * scale g), mode 1 the 1-bit rule (v = W > mean W ? +1 : -1, scale mean|W|). Means are an
 * accurate sum times f32(1/N), as torch computes them. */
void bj_ir_quantize_master(const bj_node *m, int64_t mode, int8_t *v, double *scale);

#endif
