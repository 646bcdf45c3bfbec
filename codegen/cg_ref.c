/* codegen/cg_ref.c -- the plain C reference every generated kernel is compared with
 * (style.md C12): the kernel contract of codegen.h over unpacked t8 weights, and the binary
 * kernel's own formula (2 * sum where the bit is set - sum) over b1 sign bits. Deliberately
 * the obvious loops: exact int32, no kernel packing, no tiling. */
#include "codegen/codegen.h"

#include <string.h>

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

/* The float head's order (codegen.h): 32 lanes by k mod 32, each product rounded then added,
 * lanes folded by halving, the tail last. */
static float ref_head_w(const uint8_t *w, bj_cg_head_dtype dt, int64_t i) {
    if (dt == BJ_CG_HEAD_F32) {
        float f;
        memcpy(&f, w + 4 * i, 4);
        return f;
    }
    uint16_t h = bj_rd16(w + 2 * i);
    return dt == BJ_CG_HEAD_F16 ? bj_f16_to_f32(h) : bj_bf16_to_f32(h);
}

void bj_cg_ref_head(const float *x, const uint8_t *w, bj_cg_head_dtype dt, float *y, int64_t T, int64_t N,
                    int64_t K, int64_t n0, int64_t n1) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = n0; n < n1; n++) {
            const float *xr = x + t * K;
            float s[32] = { 0 }, tail = 0;
            int64_t k = 0;
            for (; k + 32 <= K; k += 32)
                for (int j = 0; j < 32; j++) {
                    float p = xr[k + j] * ref_head_w(w, dt, n * K + k + j);
                    s[j] += p;
                }
            for (; k < K; k++) {
                float p = xr[k] * ref_head_w(w, dt, n * K + k);
                tail += p;
            }
            for (int h = 16; h > 0; h /= 2)
                for (int j = 0; j < h; j++) s[j] += s[j + h];
            y[t * N + n] = s[0] + tail;
        }
}
