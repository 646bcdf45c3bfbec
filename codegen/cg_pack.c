/* codegen/cg_pack.c -- weight packing for each kernel variant, from t8 (M x K row-major int8
 * in {-1,0,1}), and the inverse for tests. The layouts are documented once, in codegen.h.
 *
 * Invariants: padding (rows M..16*ceil(M/16) of DOT2 and BIN1, columns K..x_stride(K) of
 * all) packs as weight 0 (BIN1: bit 0, which meets zero activations or unread rows), so a
 * kernel may read whole blocks; every value is checked before it is
 * packed, and a bad one is reported with its (row, column). */
#include "codegen/cg_llvm.h"
#include "ir/weights.h"

#include <string.h>

/* Every value in {-1,0,1} ({-1,1} for binary); the position of the first bad one. */
static bj_status bj_cg_check_weights(const bj_cg_kdesc *d, const int8_t *t8, bj_error *err) {
    bool binary = d->wtype == BJ_CG_W_BINARY;
    if (bj_ir_values_valid(t8, (int64_t)d->m * d->k, binary)) return BJ_OK;
    for (uint64_t m = 0; m < d->m; m++) {
        const int8_t *row = t8 + m * d->k;
        for (uint64_t k = 0; k < d->k; k++)
            if (row[k] < -1 || row[k] > 1 || (binary && row[k] == 0))
                return BJ_FAIL(err, BJ_E_INVALID, "weight (row %llu, col %llu) is %d, expected %s",
                               (unsigned long long)m, (unsigned long long)k, row[k],
                               binary ? "-1 or 1" : "-1, 0 or 1");
    }
    return BJ_OK;
}

/* Byte offset and bit shift of weight (m, k) in the DOT2 layout. */
static inline uint64_t bj_cg_dot2_pos(uint64_t groups, uint64_t m, uint64_t k, unsigned *shift) {
    *shift = (unsigned)(2 * ((k % 16) / 4));
    return ((m / 16) * groups + k / 16) * 64 + 4 * (m % 16) + k % 4;
}

/* Row by row, byte by byte in bj_cg_dot2_pos's order: byte 4r + i of group g holds the codes
 * of k = 16g + i, +4, +8, +12 at bits 0, 2, 4, 6. Whole groups skip the bounds test. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O3"))) /* the -O2 cost model leaves the byte loop scalar */
#endif
static void bj_cg_pack_dot2(const bj_cg_kdesc *d, const int8_t *t8, uint8_t *out) {
    uint64_t groups = (uint64_t)bj_cg_x_stride(d->k) / 16, K = d->k, full = K / 16;
    memset(out, 0x55, bj_cg_packed_size(d)); /* code 1 (weight 0) in every slot */
    for (uint64_t m = 0; m < d->m; m++) {
        const int8_t *row = t8 + m * K;
        uint8_t *o = out + (m / 16) * groups * 64 + 4 * (m % 16);
        for (uint64_t g = 0; g < full; g++) {
            const int8_t *v = row + 16 * g;
            for (int i = 0; i < 4; i++)
                o[g * 64 + i] = (uint8_t)((v[i] + 1) | (v[i + 4] + 1) << 2 | (v[i + 8] + 1) << 4 | (v[i + 12] + 1) << 6);
        }
        for (uint64_t g = full; g < groups && 16 * g < K; g++)
            for (unsigned i = 0; i < 4; i++) {
                unsigned byte = 0;
                for (unsigned s = 0; s < 4; s++) {
                    uint64_t k = 16 * g + 4 * s + i;
                    byte |= (unsigned)(k < K ? row[k] + 1 : 1) << (2 * s);
                }
                o[g * 64 + i] = (uint8_t)byte;
            }
    }
}

/* Byte offset and bit of weight (m, k) in the BIN1 layout. */
static inline uint64_t bj_cg_bin1_pos(uint64_t groups, uint64_t m, uint64_t k, unsigned *bit) {
    *bit = (unsigned)((k % 32) / 4);
    return ((m / 16) * groups + k / 32) * 64 + 4 * (m % 16) + k % 4;
}

/* Byte by byte (bj_cg_bin1_pos's order, without a division per weight: 2B4T has 2 G). */
static void bj_cg_pack_bin1(const bj_cg_kdesc *d, const int8_t *t8, uint8_t *out) {
    uint64_t groups = (uint64_t)bj_cg_x_stride(d->k) / 32, K = d->k;
    memset(out, 0, bj_cg_packed_size(d));
    for (uint64_t m = 0; m < d->m; m++) {
        const int8_t *row = t8 + m * K;
        uint8_t *o = out + (m / 16) * groups * 64 + 4 * (m % 16);
        for (uint64_t g = 0; g < groups && 32 * g < K; g++)
            for (uint64_t i = 0; i < 4; i++) {
                unsigned byte = 0;
                for (unsigned s = 0; s < 8; s++) {
                    uint64_t k = 32 * g + 4 * s + i;
                    byte |= (unsigned)(k < K && row[k] > 0) << s;
                }
                o[g * 64 + i] = (uint8_t)byte;
            }
    }
}

static void bj_cg_put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void bj_cg_pack_bitplane(const bj_cg_kdesc *d, const int8_t *t8, uint8_t *out) {
    uint64_t xs = (uint64_t)bj_cg_x_stride(d->k);
    for (uint64_t m = 0; m < d->m; m++)
        for (uint64_t g = 0; g < xs / 64; g++) {
            uint64_t nz = 0, neg = 0;
            for (uint64_t i = 0; i < 64 && 64 * g + i < d->k; i++) {
                int8_t v = t8[m * d->k + 64 * g + i];
                nz |= (uint64_t)(v != 0) << i;
                neg |= (uint64_t)(v < 0) << i;
            }
            bj_cg_put64(out + m * xs / 4 + 16 * g, nz);
            bj_cg_put64(out + m * xs / 4 + 16 * g + 8, neg);
        }
}

bj_status bj_cg_pack(const bj_cg_kdesc *d, const int8_t *t8, uint8_t *out, bj_error *err) {
    BJ_TRY(bj_cg_check_weights(d, t8, err));
    if (d->variant == BJ_CG_V_DOT2) bj_cg_pack_dot2(d, t8, out);
    else if (d->variant == BJ_CG_V_BITPLANE) bj_cg_pack_bitplane(d, t8, out);
    else if (d->variant == BJ_CG_V_BIN1) bj_cg_pack_bin1(d, t8, out);
    return BJ_OK;
}

static int8_t bj_cg_unpack_one(const bj_cg_kdesc *d, const uint8_t *p, uint64_t m, uint64_t k) {
    uint64_t xs = (uint64_t)bj_cg_x_stride(d->k);
    if (d->variant == BJ_CG_V_DOT2) {
        unsigned sh;
        uint64_t at = bj_cg_dot2_pos(xs / 16, m, k, &sh);
        return (int8_t)(((p[at] >> sh) & 3) - 1);
    }
    if (d->variant == BJ_CG_V_BIN1) {
        unsigned bit;
        uint64_t at = bj_cg_bin1_pos(xs / 32, m, k, &bit);
        return (int8_t)((p[at] >> bit) & 1 ? 1 : -1);
    }
    const uint8_t *g = p + m * xs / 4 + 16 * (k / 64);
    int nz = g[(k % 64) / 8] >> (k % 8) & 1, neg = g[8 + (k % 64) / 8] >> (k % 8) & 1;
    return (int8_t)(nz ? (neg ? -1 : 1) : 0);
}

void bj_cg_unpack(const bj_cg_kdesc *d, const uint8_t *packed, int8_t *t8) {
    for (uint64_t m = 0; m < d->m; m++)
        for (uint64_t k = 0; k < d->k; k++)
            t8[m * d->k + k] = d->variant == BJ_CG_V_WCODE ? 0 : bj_cg_unpack_one(d, packed, m, k);
}
