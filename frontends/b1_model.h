/* frontends/b1_model.h -- bitjit's own format for binary (1-bit BitNet) models, written by
 * `bitjitc convert --type b1` and `bitjitc synth --type b1`, read back by the HF importer
 * (docs/formats-bitjit.md). GGUF has no binary weight type, so the format is the HF layout:
 *
 *   OUT/config.json        BitNetForCausalLM config, quantization_config = {"quant_method":
 *                          "bitnet", "linear_class": "autobitlinear", "quantization_mode":
 *                          "offline", "weight_quant": "binary"}
 *   OUT/tokenizer.json     (and tokenizer_config.json, generation_config.json when the source has them)
 *   OUT/model.safetensors  float tensors as in the source (embedding, norms, untied head);
 *                          every BitLinear weight "<proj>.weight" as U8 [out, ceil(in/8)]: the IR's
 *                          b1 sign bits (row n is ceil(in/8) bytes, bit k%8 of byte k/8 set for
 *                          +1, clear for -1, padding bits 0), and "<proj>.weight_scale" F32 [1],
 *                          the multiplier beta (W = beta * sign).
 *
 * The directory is built under a temporary name next to OUT and renamed to OUT at the very
 * end, so a failure never leaves a partial OUT; an existing non-empty OUT is refused. */
#ifndef BJ_FE_B1_MODEL_H
#define BJ_FE_B1_MODEL_H

#include "frontends/gguf.h"
#include "frontends/model.h"

/* Writes model m (loaded from src_path: an HF directory or a .safetensors file in one) whose
 * every BitLinear weight is binary; a ternary weight is an error naming it. progress may be NULL. */
bj_status bj_b1_convert(const bj_model *m, const char *src_path, const char *out_dir, bj_gguf_progress_fn progress,
                        void *ud, bj_error *err);

/* A random binary model of a published shape (random signs, beta 0.02; Gaussian f16
 * embedding; unit norms; a 256-token byte-level tokenizer, so text output means nothing). */
bj_status bj_b1_synth(const bj_gguf_shape *s, uint64_t seed, const char *out_dir, bj_gguf_progress_fn progress,
                      void *ud, bj_error *err);

#endif
