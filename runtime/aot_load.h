/* runtime/aot_load.h -- loading an ahead-of-time library written by bitjitc (compiler/aot.h
 * has its layout) into the same bj_model the frontends give, plus the JIT options that make
 * the JIT engine take its kernels from the library instead of compiling them.
 *
 * Order of checks: the library is mapped (dlopen runs no bitjit code: the kernels have no
 * constructors), its bundle is validated, and its target is checked against this host
 * BEFORE anything else; a library built for features the host lacks is refused with
 * BJ_E_UNSUPPORTED naming them, so generated code never meets an illegal instruction. */
#ifndef BJ_RT_AOT_LOAD_H
#define BJ_RT_AOT_LOAD_H

#include "codegen/codegen.h"
#include "runtime/runtime.h"

typedef struct bj_aot_lib bj_aot_lib;

/* True when path is a regular file that starts like an ELF object (what bitjitc writes). */
bool bj_aot_is_library(const char *path);
/* Opens the library: checks that the file is whole, its target against the host, parses its
 * graph, binds the weights by name to the library's mapped data, parses its plan, loads its
 * model description and tokenizer (from tokenizer files, or a GGUF model's metadata). m is filled as
 * bj_model_load fills it (m->st stays empty) and must be freed with bj_model_free before
 * bj_aot_close. */
bj_status bj_aot_load(bj_aot_lib **out, bj_model *m, const char *path, bj_error *err);
/* The checks bj_aot_load makes on the bundle's bytes, without dlopen and without the host
 * check: header, entry bounds, the target entry, the model description, the graph IR parsed,
 * its weights bound by name and verified, the plan parsed and checked against the target and
 * the packed entries. For the fuzz harness (tests/fuzz/fuzz_aot_bundle.c). */
bj_status bj_aot_check_bundle(const uint8_t *data, size_t size, bj_error *err);
/* Points o at the library: kernel_lookup = dlsym, the library's exact target, no cache, no
 * tuning database, and the library as the plan source (its kernel picks and packed weights:
 * the engine compiles and packs nothing). The packed bytes' hashes are checked as the engine
 * takes them (once per library). */
void bj_aot_jit_options(const bj_aot_lib *lib, bj_jit_options *o);
/* The CPU name the library was built for. */
const char *bj_aot_cpu(const bj_aot_lib *lib);
/* The library's target (the CPU and features it was built for). */
const bj_cg_target *bj_aot_target(const bj_aot_lib *lib);
/* A value of the library's metadata ("bitjit", "llvm", "model", "tune_db", "tuned", "matmuls"),
 * copied into buf; false when the library does not record it (built by an older bitjitc). */
bool bj_aot_meta(const bj_aot_lib *lib, const char *key, char *buf, size_t cap);
void bj_aot_close(bj_aot_lib *lib);

#endif
