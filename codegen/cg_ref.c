/* codegen/cg_ref.c -- the plain C reference every generated kernel is compared with
 * (style.md C12): the kernel contract of codegen.h over unpacked t8 weights, and the binary
 * kernel's own formula (2 * sum where the bit is set - sum) over b1 sign bits. Deliberately
 * the obvious loops: exact int32, no kernel packing, no tiling. */
#include "codegen/codegen.h"

void bj_cg_ref_matmul(const int8_t *x, const int8_t *t8, int32_t *y, int64_t T, int64_t M,
                      int64_t K, int64_t m0, int64_t m1) {
    int64_t xs = bj_cg_x_stride(K);
    for (int64_t t = 0; t < T; t++)
        for (int64_t m = m0; m < m1; m++) {
            const int8_t *xr = x + t * xs, *wr = t8 + m * K;
            int32_t acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (int32_t)xr[k] * wr[k];
            y[t * M + m] = acc;
        }
}

void bj_cg_ref_matmul_b1(const int8_t *x, const uint8_t *b1, int32_t *y, int64_t T, int64_t M,
                         int64_t K, int64_t m0, int64_t m1) {
    int64_t xs = bj_cg_x_stride(K), rb = (K + 7) / 8;
    for (int64_t t = 0; t < T; t++) {
        const int8_t *xr = x + t * xs;
        int32_t sum = 0;
        for (int64_t k = 0; k < K; k++) sum += xr[k];
        for (int64_t m = m0; m < m1; m++) {
            const uint8_t *wr = b1 + m * rb;
            int32_t set = 0;
            for (int64_t k = 0; k < K; k++)
                if (wr[k / 8] >> (k % 8) & 1) set += xr[k];
            y[t * M + m] = 2 * set - sum;
        }
    }
}
