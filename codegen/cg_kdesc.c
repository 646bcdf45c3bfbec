/* codegen/cg_kdesc.c -- kernel descriptors: which ISA paths a target allows, the default
 * tiles of each (variant, path), the cost rule that picks a variant, validation, names and
 * the kernel's symbol.
 *
 * Invariants: a descriptor that passed bj_cg_kdesc_check has every field in range, a
 * resolved variant and path the target supports, and zero reserved bytes, so its 32 bytes
 * can be hashed as a key and handed to a generator without further checks. */
#include "codegen/cg_llvm.h"
#include "ir/ir.h"

#include <xxhash.h>

#include <stdio.h>
#include <string.h>

static const char *const bj_cg_variant_names[BJ_CG_V_COUNT] = {
    [BJ_CG_V_AUTO] = "auto", [BJ_CG_V_DOT2] = "dot2", [BJ_CG_V_BITPLANE] = "bitplane",
    [BJ_CG_V_WCODE] = "wcode", [BJ_CG_V_BIN1] = "bin1", [BJ_CG_V_TRIT5] = "trit5",
};
_Static_assert(BJ_CG_V_BIN1 == BJ_IR_VARIANT_BIN1, "the IR verifier knows the binary kernel's id");

/* One row per path: name, vector bytes, the features it needs (all of req, and one of any
 * when any != 0). */
static const struct { const char *name; unsigned vbytes; uint32_t req, any; } bj_cg_isas[BJ_CG_ISA_COUNT] = {
    [BJ_CG_ISA_AUTO] = { "auto", 16, 0, 0 },
    [BJ_CG_ISA_GENERIC] = { "generic", 16, BJ_CG_F_SSE2, 0 },
    [BJ_CG_ISA_AVX2] = { "avx2", 32, BJ_CG_F_AVX2, 0 },
    [BJ_CG_ISA_AVXVNNI] = { "avxvnni", 32, BJ_CG_F_AVX2, BJ_CG_F_AVXVNNI },
    [BJ_CG_ISA_AVX512] = { "avx512bw", 64, BJ_CG_F_V512 | BJ_CG_F_AVX512BW, 0 },
    [BJ_CG_ISA_AVX512VNNI] = { "avx512vnni", 64, BJ_CG_F_V512 | BJ_CG_F_AVX512BW | BJ_CG_F_AVX512VNNI, 0 },
    [BJ_CG_ISA_AMX] = { "amx", 64, BJ_CG_F_V512 | BJ_CG_F_AVX512BW | BJ_CG_F_AVX512VNNI | BJ_CG_F_AMXTILE | BJ_CG_F_AMXINT8, 0 },
};

const char *bj_cg_variant_name(bj_cg_variant v) {
    return (unsigned)v < BJ_CG_V_COUNT ? bj_cg_variant_names[v] : "?";
}
const char *bj_cg_isa_name(bj_cg_isa isa) {
    return (unsigned)isa < BJ_CG_ISA_COUNT ? bj_cg_isas[isa].name : "?";
}
unsigned bj_cg_isa_vector_bytes(bj_cg_isa isa) {
    return (unsigned)isa < BJ_CG_ISA_COUNT ? bj_cg_isas[isa].vbytes : 16;
}

bool bj_cg_isa_supported(const bj_cg_target *t, bj_cg_isa isa) {
    if (isa <= BJ_CG_ISA_AUTO || isa >= BJ_CG_ISA_COUNT) return false;
    uint32_t req = bj_cg_isas[isa].req, any = bj_cg_isas[isa].any;
    if (isa == BJ_CG_ISA_AVXVNNI && (t->flags & BJ_CG_F_AVX512VNNI) && (t->flags & BJ_CG_F_AVX512VL))
        any = 0; /* the EVEX encoding of vpdpbusd ymm */
    return (t->flags & req) == req && (!any || (t->flags & any));
}

/* The best vector path; AMX is never it (bj_cg_kdesc_prefill_default picks it for prefill). */
bj_cg_isa bj_cg_best_isa(const bj_cg_target *t) {
    for (int i = BJ_CG_ISA_COUNT - 1; i > BJ_CG_ISA_AUTO; i--)
        if (i != BJ_CG_ISA_AMX && bj_cg_isa_supported(t, (bj_cg_isa)i)) return (bj_cg_isa)i;
    return BJ_CG_ISA_GENERIC; /* x86-64 has SSE2; the flag may only be missing after -sse2 */
}

bool bj_cg_wcode_fits(uint32_t M, uint32_t K) {
    return (uint64_t)M * K <= BJ_CG_WCODE_MAX_MK && K <= BJ_CG_WCODE_MAX_K;
}

/* The cost rule, from bench_cg_kernels (one thread; Zen 3 AVX2 here, Sapphire Rapids
 * AVX-512 through AOT objects): dot2 streams 2 bits a weight faster than memory delivers
 * them on every path but the SSE2 baseline, and its prefill runs 75-200 G MAC/s; bit planes
 * read the same bytes with 3-8x the instructions (they exist for the autotuner and for CPUs
 * with cheap mask registers); weights-as-code only beat dot2 on prefill of tiny layers
 * (64 x 64 at T >= 16), or of any layer it fits on the SSE2 baseline, where dot2's
 * widening multiplies are slow. Decode (T = 1) is always dot2. */
bj_cg_variant bj_cg_pick_variant(const bj_cg_target *t, uint32_t M, uint32_t K, uint32_t T_hint,
                                 bool have_weights) {
    if (have_weights && T_hint >= 16 && bj_cg_wcode_fits(M, K) &&
        ((uint64_t)M * K <= 4096 || bj_cg_best_isa(t) == BJ_CG_ISA_GENERIC))
        return BJ_CG_V_WCODE;
    return BJ_CG_V_DOT2;
}

/* Binary weights always take bin1: the same instructions per weight as dot2 over half the
 * bytes, and the IR verifier keeps binary weights off the ternary kernels. */
bj_cg_variant bj_cg_pick_variant_for(const bj_cg_target *t, bj_cg_wtype wt, uint32_t M, uint32_t K,
                                     uint32_t T_hint, bool have_weights) {
    return wt == BJ_CG_W_BINARY ? BJ_CG_V_BIN1 : bj_cg_pick_variant(t, M, K, T_hint, have_weights);
}

/* Default tiles: about eight independent accumulator chains in the registers of the path.
 * DOT2/BIN1 prefetch each 16-row block's weight stream 4 KiB ahead: on Zen 3 (AVX2) one
 * thread's decode then reads its matmuls at 8.2 GB/s instead of 6.3 (docs/perf.md). */
#define BJ_CG_PREFETCH_DEFAULT 16 /* 256-byte units */

/* AMX (cg_kernel_amx.c): 2 blocks x 32 tokens fill the 8 tile registers (4 C, 2 A, 2 B); a
 * panel of up to 32 chunks (2 x 32 KiB of decoded B tiles on the stack) between the C tiles'
 * trips through y; A and B tiles prefetched one chunk ahead. One Sapphire Rapids core, T = 128
 * (docs/perf.md): 2560 x 6912 panels of 16 / 32 / 64 chunks 734 / 796-804 / 849 G MAC/s,
 * prefetch 1 812-872, 2 777; 6912 x 2560 727 / 761-767 / 717, prefetch 1 736-785 (panels of 64
 * win on some shapes and lose on others: the tuner chooses); DOT2 on VNNI 195-252. */
#define BJ_CG_AMX_PANEL 32
#define BJ_CG_AMX_PREFETCH 1

static void bj_cg_default_tiles(bj_cg_kdesc *d) {
    unsigned vb = bj_cg_isa_vector_bytes((bj_cg_isa)d->isa);
    if (d->isa == BJ_CG_ISA_AMX) {
        d->tile_m = 2;
        d->tile_t = 32;
        d->unroll = BJ_CG_AMX_PANEL;
        d->prefetch = BJ_CG_AMX_PREFETCH;
        return;
    }
    switch (d->variant) {
    case BJ_CG_V_DOT2:
    case BJ_CG_V_BIN1:                 /* the same loop nest, over 1-bit codes */
    case BJ_CG_V_TRIT5:                /* and over base-3 codes */
        d->tile_m = vb == 64 ? 2 : 1;  /* 16-row blocks */
        d->tile_t = vb == 16 ? 2 : 4;
        d->unroll = 1;                 /* k-groups of 16 per iteration; O3 unrolls small loops */
        d->prefetch = BJ_CG_PREFETCH_DEFAULT;
        break;
    case BJ_CG_V_BITPLANE:
        d->tile_m = vb == 64 ? 4 : vb == 32 ? 2 : 1;
        d->tile_t = vb == 64 ? 2 : 1;
        d->unroll = 1;
        break;
    default: /* WCODE: tokens across the i16 lanes of one vector, 8 rows per function */
        d->tile_m = 8;
        d->tile_t = (uint8_t)(vb / 2);
        d->unroll = 1;                 /* unused */
        break;
    }
}

/* Prefill on AVX-512 VNNI: 8 tokens a tile (2 blocks x 8 tokens = 16 zmm accumulators of 32)
 * decode each weight group for twice the tokens of the decode default. `bitjit tune` on a
 * 16-core Sapphire Rapids chose m2 t8 for every 2B4T prefill shape in two leases (1.18-1.67x
 * a shape; pp128 527 -> 613 t/s at 16 threads, docs/perf.md). Other paths keep their tiles. */
static bool bj_cg_vnni_prefill(bj_cg_kdesc *d) {
    if (bj_cg_row_block(d) != 16 || d->isa != BJ_CG_ISA_AVX512VNNI || d->tile_t >= 8) return false; /* DOT2's loop nest */
    d->tile_t = 8;
    return true;
}

/* Where the CPU has AMX-INT8, DOT2's prefill runs on tiles (cg_kernel_amx.c: docs/perf.md has
 * the figures), over the same packed weights. */
bool bj_cg_kdesc_prefill_default(bj_cg_kdesc *d, const bj_cg_target *t) {
    if (d->variant == BJ_CG_V_DOT2 && d->isa != BJ_CG_ISA_AMX && bj_cg_isa_supported(t, BJ_CG_ISA_AMX)) {
        d->isa = BJ_CG_ISA_AMX;
        bj_cg_default_tiles(d);
        return true;
    }
    return bj_cg_vnni_prefill(d);
}

/* The kernel an AMX kernel hands its edges to (rows at the ends of [m0, m1), the last T % 16
 * tokens): DOT2 on AVX-512 VNNI with that path's prefill tiles. */
void bj_cg_kdesc_amx_edges(const bj_cg_kdesc *amx, bj_cg_kdesc *out) {
    *out = *amx;
    out->isa = BJ_CG_ISA_AVX512VNNI;
    bj_cg_default_tiles(out);
    bj_cg_vnni_prefill(out);
}

/* The exact float head (cg_kernel_head.c): 4 rows at once (8 independent add chains on 512-bit
 * vectors, 16 on 256-bit), each row's stream prefetched 4 KiB ahead as the C head does. */
#define BJ_CG_HEAD_ROWS 4
#define BJ_CG_HEAD_PREFETCH 16 /* 256-byte units */

static bool bj_cg_head_path_ok(const bj_cg_target *t, bj_cg_isa isa, unsigned dt) {
    if (isa == BJ_CG_ISA_AVX512) return bj_cg_isa_supported(t, isa); /* AVX512F implies F16C */
    if (isa != BJ_CG_ISA_AVX2 || !bj_cg_isa_supported(t, isa)) return false;
    return dt != BJ_CG_HEAD_F16 || ((t->flags & BJ_CG_F_FMA) && !strstr(t->features, "-f16c"));
}

static bj_status bj_cg_head_check(const bj_cg_kdesc *d, const bj_cg_target *t, bj_error *err) {
    if (d->variant || d->wtype > BJ_CG_HEAD_BF16 || d->m < 1 || d->m > BJ_CG_MAX_M || d->k < 1 || d->k > BJ_CG_MAX_K ||
        d->tile_m < 1 || d->tile_m > 16 || d->tile_t != 1 || d->unroll != 1 || (d->reserved[0] | d->reserved[1]) ||
        d->flags || d->whash)
        return BJ_FAIL(err, BJ_E_INVALID, "head kernel descriptor: dtype %u, %u x %u, tile_m %u tile_t %u unroll %u out of range",
                       d->wtype, d->m, d->k, d->tile_m, d->tile_t, d->unroll);
    if (!bj_cg_head_path_ok(t, (bj_cg_isa)d->isa, d->wtype))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "head kernel path %s is not available on CPU '%s'",
                       bj_cg_isa_name((bj_cg_isa)d->isa), t->cpu);
    return BJ_OK;
}

bj_status bj_cg_head_kdesc_init(bj_cg_kdesc *d, const bj_cg_target *t, bj_cg_head_dtype dt, bj_cg_isa isa,
                                uint32_t N, uint32_t K, bj_error *err) {
    memset(d, 0, sizeof *d);
    if (isa == BJ_CG_ISA_AUTO)
        isa = bj_cg_head_path_ok(t, BJ_CG_ISA_AVX512, dt) ? BJ_CG_ISA_AVX512 : BJ_CG_ISA_AVX2;
    d->abi = BJ_CG_ABI_VERSION;
    d->kind = BJ_CG_KIND_HEAD_F;
    d->isa = (uint8_t)isa;
    d->wtype = (uint8_t)dt;
    d->m = N;
    d->k = K;
    d->tile_m = BJ_CG_HEAD_ROWS;
    d->tile_t = 1;
    d->unroll = 1;
    d->prefetch = BJ_CG_HEAD_PREFETCH;
    return bj_cg_head_check(d, t, err);
}

bj_status bj_cg_kdesc_check(const bj_cg_kdesc *d, const bj_cg_target *t, bj_error *err) {
    if (d->abi == BJ_CG_ABI_VERSION && d->kind == BJ_CG_KIND_HEAD_F) return bj_cg_head_check(d, t, err);
    if (d->abi != BJ_CG_ABI_VERSION || d->kind != BJ_CG_KIND_MATMUL_T)
        return BJ_FAIL(err, BJ_E_INVALID, "kernel descriptor: abi %u kind %u, expected %u and %u",
                       d->abi, d->kind, BJ_CG_ABI_VERSION, BJ_CG_KIND_MATMUL_T);
    if (d->variant <= BJ_CG_V_AUTO || d->variant >= BJ_CG_V_COUNT || d->wtype > BJ_CG_W_BINARY)
        return BJ_FAIL(err, BJ_E_INVALID, "kernel descriptor: variant %u / wtype %u out of range",
                       d->variant, d->wtype);
    if (d->variant == BJ_CG_V_BIN1 && d->wtype != BJ_CG_W_BINARY)
        return BJ_FAIL(err, BJ_E_INVALID, "kernel bin1 (binary) cannot run ternary weights (%u x %u)", d->m, d->k);
    if (d->m < 1 || d->m > BJ_CG_MAX_M || d->k < 1 || d->k > BJ_CG_MAX_K)
        return BJ_FAIL(err, BJ_E_INVALID, "matmul %u x %u: M must be in [1, %d], K in [1, %d]",
                       d->m, d->k, BJ_CG_MAX_M, BJ_CG_MAX_K);
    if (d->tile_m < 1 || d->tile_m > 16 || d->tile_t < 1 || d->tile_t > 64 || d->unroll < 1 ||
        d->unroll > 64 || (d->reserved[0] | d->reserved[1]) || d->flags ||
        (d->prefetch && bj_cg_row_block(d) != 16))
        return BJ_FAIL(err, BJ_E_INVALID, "kernel descriptor: tile_m %u tile_t %u unroll %u prefetch %u out of range",
                       d->tile_m, d->tile_t, d->unroll, d->prefetch);
    if (d->isa == BJ_CG_ISA_AMX && (d->variant != BJ_CG_V_DOT2 || (d->tile_m != 1 && d->tile_m != 2) ||
                                    (d->tile_t != 16 && d->tile_t != 32) || d->unroll > 64 || d->prefetch > 8))
        return BJ_FAIL(err, BJ_E_INVALID,
                       "kernel path amx runs dot2 only, with tile_m 1 or 2, tile_t 16 or 32, unroll (64-k chunks a "
                       "panel) at most 64 and prefetch (chunks ahead) at most 8; got %s tile_m %u tile_t %u unroll %u "
                       "prefetch %u",
                       bj_cg_variant_name((bj_cg_variant)d->variant), d->tile_m, d->tile_t, d->unroll, d->prefetch);
    if (!bj_cg_isa_supported(t, (bj_cg_isa)d->isa))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "kernel path %s is not available on CPU '%s'",
                       bj_cg_isa_name((bj_cg_isa)d->isa), t->cpu);
    if (d->variant == BJ_CG_V_WCODE && !bj_cg_wcode_fits(d->m, d->k))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED,
                       "weights-as-code is limited to M*K <= %d and K <= %d; got %u x %u",
                       BJ_CG_WCODE_MAX_MK, BJ_CG_WCODE_MAX_K, d->m, d->k);
    return BJ_OK;
}

bj_status bj_cg_kdesc_init(bj_cg_kdesc *d, const bj_cg_target *t, bj_cg_variant v, bj_cg_isa isa,
                           bj_cg_wtype wt, uint32_t M, uint32_t K, const int8_t *t8, bj_error *err) {
    memset(d, 0, sizeof *d);
    if (v == BJ_CG_V_AUTO) v = bj_cg_pick_variant_for(t, wt, M, K, 1, t8 != NULL);
    if (v == BJ_CG_V_WCODE && !t8)
        return BJ_FAIL(err, BJ_E_INVALID, "weights-as-code for %u x %u needs the weights", M, K);
    d->abi = BJ_CG_ABI_VERSION;
    d->kind = BJ_CG_KIND_MATMUL_T;
    d->variant = (uint8_t)v;
    d->isa = (uint8_t)(isa == BJ_CG_ISA_AUTO ? bj_cg_best_isa(t) : isa);
    d->wtype = (uint8_t)wt;
    d->m = M;
    d->k = K;
    bj_cg_default_tiles(d);
    BJ_TRY(bj_cg_kdesc_check(d, t, err));
    if (v == BJ_CG_V_WCODE) d->whash = XXH3_64bits(t8, (size_t)M * K);
    return BJ_OK;
}

void bj_cg_kernel_symbol(const bj_cg_kdesc *d, char *buf, size_t cap) {
    snprintf(buf, cap, "bjk_%016llx", (unsigned long long)XXH3_64bits(d, sizeof *d));
}

int64_t bj_cg_row_block(const bj_cg_kdesc *d) {
    return d->variant == BJ_CG_V_DOT2 || d->variant == BJ_CG_V_BIN1 || d->variant == BJ_CG_V_TRIT5 ? 16 : 1;
}

uint64_t bj_cg_packed_size(const bj_cg_kdesc *d) {
    uint64_t xs = (uint64_t)bj_cg_x_stride(d->k);
    switch (d->variant) {
    case BJ_CG_V_DOT2: return ((uint64_t)d->m + 15) / 16 * 16 * xs / 4;
    case BJ_CG_V_BITPLANE: return (uint64_t)d->m * xs / 4;
    case BJ_CG_V_BIN1: return ((uint64_t)d->m + 15) / 16 * 16 * xs / 8;
    case BJ_CG_V_TRIT5: return ((uint64_t)d->m + 15) / 16 * (uint64_t)bj_cg_trit5_groups(d->k) * 64;
    default: return 0;
    }
}
