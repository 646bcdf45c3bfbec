/* codegen/cg_pack.c -- weight packing for each kernel variant, from t8 (M x K row-major int8
 * in {-1,0,1}), and the inverse for tests. The layouts are documented once, in codegen.h.
 *
 * Invariants: padding (rows M..16*ceil(M/16) of DOT2, BIN1 and TRIT5, columns K..x_stride(K)
 * of all) packs as weight 0 (BIN1: bit 0, which meets zero activations or unread rows), so a
 * kernel may read whole blocks; every value is checked before it is
 * packed, and a bad one is reported with its (row, column). */
#include "codegen/cg_llvm.h"
#include "ir/weights.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Every value of rows [r0, r1) in {-1,0,1} ({-1,1} for binary); the position of the first bad one. */
static bj_status bj_cg_check_weights(const bj_cg_kdesc *d, const int8_t *t8, uint64_t r0, uint64_t r1,
                                     bj_error *err) {
    bool binary = d->wtype == BJ_CG_W_BINARY;
    if (bj_ir_values_valid(t8, (int64_t)((r1 - r0) * d->k), binary)) return BJ_OK;
    for (uint64_t m = r0; m < r1; m++) {
        const int8_t *row = t8 + (m - r0) * d->k;
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

/* The byte of group g for 16 values v in {-1, 0, 1} (checked before packing) as 4 bytes, byte
 * i = codes (v + 1) of v[i], v[i+4], v[i+8], v[i+12] at bits 0, 2, 4, 6. SSE2 (every x86-64)
 * does it in 9 instructions; elsewhere 64-bit words, v + 1 in each byte without carries. */
#if defined(__SSE2__)
static inline uint32_t bj_cg_dot2_word(const int8_t *v) {
    __m128i c = _mm_add_epi8(_mm_loadu_si128((const __m128i *)(const void *)v), _mm_set1_epi8(1));
    __m128i r = _mm_or_si128(_mm_or_si128(c, _mm_slli_epi32(_mm_srli_si128(c, 4), 2)),
                             _mm_or_si128(_mm_slli_epi32(_mm_srli_si128(c, 8), 4), _mm_slli_epi32(_mm_srli_si128(c, 12), 6)));
    return (uint32_t)_mm_cvtsi128_si32(r);
}
#else
static inline uint64_t bj_cg_codes8(uint64_t x) {
    return ((x & 0x7f7f7f7f7f7f7f7full) + 0x0101010101010101ull) ^ (x & 0x8080808080808080ull);
}
static inline uint32_t bj_cg_dot2_word(const int8_t *v) {
    uint64_t lo = bj_cg_codes8(bj_rd64((const uint8_t *)v)), hi = bj_cg_codes8(bj_rd64((const uint8_t *)v + 8));
    return (uint32_t)lo | (uint32_t)(lo >> 32) << 2 | (uint32_t)hi << 4 | (uint32_t)(hi >> 32) << 6;
}
#endif

/* The 16-row blocks holding rows [r0, r1) (r0 a multiple of 16), every byte set to fill. */
static void bj_cg_fill_blocks(uint8_t *out, uint64_t groups, uint64_t r0, uint64_t r1, int fill) {
    memset(out + r0 / 16 * groups * 64, fill, ((r1 + 15) / 16 - r0 / 16) * groups * 64);
}

/* Row by row in bj_cg_dot2_pos's order (group g's 4 bytes of a row: bj_cg_dot2_word); the
 * last, partial group skips the bounds test. Padding (rows past M in the last block, k-groups
 * past K) is code 1, weight 0. */
static void bj_cg_pack_dot2(const bj_cg_kdesc *d, const int8_t *t8, uint64_t r0, uint64_t r1, uint8_t *out) {
    uint64_t groups = (uint64_t)bj_cg_x_stride(d->k) / 16, K = d->k, full = K / 16;
    if (groups > (K + 15) / 16 || r1 % 16) bj_cg_fill_blocks(out, groups, r0, r1, 0x55); /* padding: weight 0 */
    for (uint64_t m = r0; m < r1; m++) {
        const int8_t *row = t8 + (m - r0) * K;
        uint8_t *o = out + (m / 16) * groups * 64 + 4 * (m % 16);
        for (uint64_t g = 0; g < full; g++) {
            uint32_t c = bj_cg_dot2_word(row + 16 * g);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            memcpy(o + g * 64, &c, 4);
#else
            for (int i = 0; i < 4; i++) o[g * 64 + i] = (uint8_t)(c >> (8 * i));
#endif
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
static void bj_cg_pack_bin1(const bj_cg_kdesc *d, const int8_t *t8, uint64_t r0, uint64_t r1, uint8_t *out) {
    uint64_t groups = (uint64_t)bj_cg_x_stride(d->k) / 32, K = d->k;
    bj_cg_fill_blocks(out, groups, r0, r1, 0);
    for (uint64_t m = r0; m < r1; m++) {
        const int8_t *row = t8 + (m - r0) * K;
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

/* TRIT5 (layout in codegen.h): the byte of five codes c[0..4], c[0] in the top base-3 digit,
 * scaled so that digit s is the top base-3 digit of (q * 3^s mod 256), stored as q ^ 0x80. */
static inline uint8_t bj_cg_trit5_byte(const unsigned c[5]) {
    unsigned v = (((c[0] * 3 + c[1]) * 3 + c[2]) * 3 + c[3]) * 3 + c[4];
    return (uint8_t)((v * 256 + 242) / 243) ^ 0x80;
}

static inline int8_t bj_cg_trit5_code(uint8_t stored, unsigned s) {
    unsigned x = stored ^ 0x80u;
    while (s--) x = (x * 3) & 255;
    return (int8_t)((x * 3) >> 8);
}

/* Row by row; padding (rows past M in the last block, k past K, and the unused slots of a
 * short last group) is code 1, weight 0: byte 0. */
static void bj_cg_pack_trit5(const bj_cg_kdesc *d, const int8_t *t8, uint64_t r0, uint64_t r1, uint8_t *out) {
    uint64_t groups = (uint64_t)bj_cg_trit5_groups(d->k), K = d->k;
    if (K % 20 || r1 % 16) bj_cg_fill_blocks(out, groups, r0, r1, 0);
    for (uint64_t m = r0; m < r1; m++) {
        const int8_t *row = t8 + (m - r0) * K;
        uint8_t *o = out + (m / 16) * groups * 64 + 4 * (m % 16);
        for (uint64_t g = 0; g < groups; g++)
            for (unsigned i = 0; i < 4; i++) {
                unsigned c[5];
                for (unsigned s = 0; s < 5; s++) {
                    uint64_t k = 20 * g + 4 * s + i;
                    c[s] = k < K ? (unsigned)(row[k] + 1) : 1;
                }
                o[g * 64 + i] = bj_cg_trit5_byte(c);
            }
    }
}

static void bj_cg_put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void bj_cg_pack_bitplane(const bj_cg_kdesc *d, const int8_t *t8, uint64_t r0, uint64_t r1, uint8_t *out) {
    uint64_t xs = (uint64_t)bj_cg_x_stride(d->k);
    for (uint64_t m = r0; m < r1; m++)
        for (uint64_t g = 0; g < xs / 64; g++) {
            uint64_t nz = 0, neg = 0;
            for (uint64_t i = 0; i < 64 && 64 * g + i < d->k; i++) {
                int8_t v = t8[(m - r0) * d->k + 64 * g + i];
                nz |= (uint64_t)(v != 0) << i;
                neg |= (uint64_t)(v < 0) << i;
            }
            bj_cg_put64(out + m * xs / 4 + 16 * g, nz);
            bj_cg_put64(out + m * xs / 4 + 16 * g + 8, neg);
        }
}

bj_status bj_cg_pack_rows(const bj_cg_kdesc *d, const int8_t *t8, uint64_t r0, uint64_t r1, uint8_t *out,
                          bj_error *err) {
    uint64_t rb = (uint64_t)bj_cg_row_block(d);
    if (r0 > r1 || r1 > d->m || r0 % rb || (r1 % rb && r1 != d->m))
        return BJ_FAIL(err, BJ_E_INVALID, "rows [%llu, %llu) of a %u-row matrix are not whole blocks of %llu",
                       (unsigned long long)r0, (unsigned long long)r1, d->m, (unsigned long long)rb);
    BJ_TRY(bj_cg_check_weights(d, t8, r0, r1, err));
    if (d->variant == BJ_CG_V_DOT2) bj_cg_pack_dot2(d, t8, r0, r1, out);
    else if (d->variant == BJ_CG_V_BITPLANE) bj_cg_pack_bitplane(d, t8, r0, r1, out);
    else if (d->variant == BJ_CG_V_BIN1) bj_cg_pack_bin1(d, t8, r0, r1, out);
    else if (d->variant == BJ_CG_V_TRIT5) bj_cg_pack_trit5(d, t8, r0, r1, out);
    return BJ_OK;
}

bj_status bj_cg_pack(const bj_cg_kdesc *d, const int8_t *t8, uint8_t *out, bj_error *err) {
    return bj_cg_pack_rows(d, t8, 0, d->m, out, err);
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
    if (d->variant == BJ_CG_V_TRIT5) {
        uint64_t at = ((m / 16) * (uint64_t)bj_cg_trit5_groups(d->k) + k / 20) * 64 + 4 * (m % 16) + k % 4;
        return (int8_t)(bj_cg_trit5_code(p[at], (unsigned)(k % 20) / 4) - 1);
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
