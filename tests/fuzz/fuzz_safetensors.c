/* tests/fuzz/fuzz_safetensors.c -- libFuzzer harness for the HF import path: the safetensors
 * header validator (bj_st_parse), the config.json reader (bj_hf_config_parse) and, when both
 * accept their input, the BitNet architecture builder over the parsed tensors (presence, dtype
 * and shape checks, packed-weight scales). An input is "CONFIG \0BJSEP\0 SAFETENSORS"; without
 * the separator the whole input is tried as each of the two alone. Any crash, sanitizer report,
 * leak or unbounded allocation is a bug: malformed input must come back as a bj_status.
 * Seeds: tests/fuzz/corpus/safetensors (tests/fuzz/make_seeds.py). */
#include "frontends/model.h"

#include <string.h>

static const char k_sep[] = "\0BJSEP\0";
#define SEP_LEN (sizeof k_sep - 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = NULL;
    for (size_t i = 0; i + SEP_LEN <= size && !sep; i++)
        if (data[i] == 0 && !memcmp(data + i, k_sep, SEP_LEN)) sep = data + i;
    const uint8_t *cfg_p = data, *st_p = data;
    size_t cfg_n = size, st_n = size;
    if (sep) {
        cfg_n = (size_t)(sep - data);
        st_p = sep + SEP_LEN;
        st_n = size - cfg_n - SEP_LEN;
    }
    bj_error err = { 0 };
    bj_model_config c;
    bool cfg_ok = bj_hf_config_parse(&c, (const char *)cfg_p, cfg_n, "fuzz/config.json", &err) == BJ_OK;
    bj_st_model st;
    memset(&st, 0, sizeof st);
    bj_arena_init(&st.arena);
    bool st_ok = bj_st_parse(&st, st_p, st_n, "fuzz.safetensors", &err) == BJ_OK;
    if (sep && cfg_ok && st_ok) {
        bj_graph g;
        if (bj_graph_init(&g, "fuzz", &err) == BJ_OK) {
            if (bj_fe_build_bitnet_hf(&g, &c, &st, &err) == BJ_OK) bj_ir_verify(&g, &err);
            bj_graph_free(&g);
        }
    }
    bj_st_close(&st);
    return 0;
}
