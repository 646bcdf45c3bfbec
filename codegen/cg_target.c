/* codegen/cg_target.c -- what CPU the code is for: host detection through LLVM, --mcpu and
 * --mattr overrides, the parsed feature flags generators choose paths from, the check that
 * refuses to run code built for a richer CPU, and the `bitjit info` text.
 *
 * Invariants: t->features is exactly what LLVM gets; t->flags only ever under-states what
 * LLVM will enable, so a generator never emits an instruction LLVM cannot select. A named
 * CPU's flags come from codegen/cg_cpus.def (generated from clang); a name not there is an
 * error. Flags whose requirements are missing are cleared, as LLVM clears features that
 * depend on a disabled one. No CPU name is tested to choose code: generators see flags.
 * avx512bw counts only with avx512vl (codegen.h): every CPU with BW has VL, and LLVM 19
 * aborted ("Do not know how to split the result") on our 256-bit code with BW but no VL. */
#include "codegen/cg_llvm.h"

#include <llvm-c/TargetMachine.h>

#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const struct { const char *name; uint32_t flag, req; } bj_cg_feat_table[] = {
#define BJ_CG_F_ROW_(id, name, req) { name, BJ_CG_F_##id, req },
    BJ_CG_FEATURES(BJ_CG_F_ROW_)
#undef BJ_CG_F_ROW_
};

/* Named CPUs: what LLVM turns on by default for each, among the features generators look at
 * (read from clang once by scripts/gen-cpu-table.sh; the LLVM C API cannot tell). */
static const struct { const char *cpu, *features; } bj_cg_cpus[] = {
#define BJ_CG_CPU(name, feats) { name, feats },
#include "codegen/cg_cpus.def"
#undef BJ_CG_CPU
};

static uint32_t bj_cg_flag_of(const char *name, size_t n) {
    for (size_t i = 0; i < BJ_COUNTOF(bj_cg_feat_table); i++)
        if (strlen(bj_cg_feat_table[i].name) == n && !memcmp(bj_cg_feat_table[i].name, name, n))
            return bj_cg_feat_table[i].flag;
    return 0;
}

/* Applies the host's "+a,-b" string to *flags as it is (every feature listed, consistent);
 * notes an explicit -evex512 (LLVM 18-21: no 512-bit vectors). */
static void bj_cg_parse_features(const char *s, uint32_t *flags, bool *no512) {
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n > 1 && (s[0] == '+' || s[0] == '-')) {
            uint32_t f = bj_cg_flag_of(s + 1, n - 1);
            if (s[0] == '+') *flags |= f;
            else *flags &= ~f;
            if (n - 1 == 7 && !memcmp(s + 1, "evex512", 7)) *no512 = s[0] == '-';
        }
        s += n;
        if (*s == ',') s++;
    }
}

/* Every x86 feature LLVM knows, with what turning it on turns on (cg_feats.def, from clang). */
static const struct { const char *name, *implied; } bj_cg_llvm_feats[] = {
#define BJ_CG_FEAT(name, implied) { name, implied },
#include "codegen/cg_feats.def"
#undef BJ_CG_FEAT
};

/* --mattr may not turn these off: bitjit's code (floats in SSE registers, 64-bit mode) needs them. */
static const char bj_cg_baseline[] = "64bit,cmov,cx8,fxsr,mmx,sse,sse2,x87";
/* Not CPU features but modes and ABIs; LLVM aborts on bitjit's code with them changed. */
static const char bj_cg_modes[] = "16bit-mode,32bit-mode,64bit-mode,soft-float";

static bool bj_cg_list_has(const char *list, const char *name, size_t n) {
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !memcmp(p, name, n)) return true;
        p += len + (p[len] == ',');
    }
    return false;
}

static const char *bj_cg_llvm_implied(const char *name, size_t n) {
    for (size_t i = 0; i < BJ_COUNTOF(bj_cg_llvm_feats); i++)
        if (strlen(bj_cg_llvm_feats[i].name) == n && !memcmp(bj_cg_llvm_feats[i].name, name, n))
            return bj_cg_llvm_feats[i].implied;
    return NULL;
}

size_t bj_cg_feature_count(void) { return BJ_COUNTOF(bj_cg_llvm_feats); }
const char *bj_cg_feature_name(size_t i) { return i < BJ_COUNTOF(bj_cg_llvm_feats) ? bj_cg_llvm_feats[i].name : NULL; }

/* Reads --mattr as LLVM will: "+a" turns on a and everything a implies, "-a" turns off a and
 * every feature that implies a (so "-sse4.2" turns off avx and all above it); a bare "a" is
 * "+a" (LLVM alone would read it as "-a"). A name LLVM does not know, a baseline feature turned
 * off or a mode changed is BJ_E_INVALID, before LLVM sees anything. Appends the string LLVM gets,
 * every item with its sign, to out (of cap bytes, holding n). */
static bj_status bj_cg_read_mattr(const char *mattr, uint32_t *flags, bool *no512, char *out, size_t cap,
                                  bj_error *err) {
    size_t len = strlen(out);
    for (const char *s = mattr; *s;) {
        size_t n = strcspn(s, ",");
        const char *item = s;
        s += n + (s[n] == ',');
        if (n == 0) continue; /* "a,,b" or a trailing comma */
        char sign = item[0] == '-' ? '-' : '+';
        const char *name = item + (item[0] == '+' || item[0] == '-');
        size_t nn = n - (size_t)(name - item);
        const char *implied = nn ? bj_cg_llvm_implied(name, nn) : NULL;
        if (!implied)
            return BJ_FAIL(err, BJ_E_INVALID,
                           "unknown CPU feature '%.*s' in --mattr%s%s%s: give +NAME or -NAME, comma-separated, with "
                           "names LLVM knows (e.g. +avx2,-avx512f; `bitjit info --list-features` prints them all)",
                           (int)n, item, strlen(mattr) == n ? "" : " '", strlen(mattr) == n ? "" : mattr,
                           strlen(mattr) == n ? "" : "'");
        if (bj_cg_list_has(bj_cg_modes, name, nn))
            return BJ_FAIL(err, BJ_E_INVALID, "--mattr '%s': '%.*s' is a mode, not a CPU feature bitjit can change",
                           mattr, (int)nn, name);
        if (sign == '-' && bj_cg_list_has(bj_cg_baseline, name, nn))
            return BJ_FAIL(err, BJ_E_INVALID,
                           "--mattr '%s': '%.*s' cannot be turned off: bitjit's code needs the x86-64 baseline (%s)",
                           mattr, (int)nn, name, bj_cg_baseline);
        if (len + nn + 3 > cap)
            return BJ_FAIL(err, BJ_E_INVALID, "--mattr '%.64s...' makes the feature string too long (at most %zu bytes)",
                           mattr, cap - 1);
        if (len) out[len++] = ',';
        out[len++] = sign;
        memcpy(out + len, name, nn);
        len += nn;
        out[len] = 0;
        if (nn == 7 && !memcmp(name, "evex512", 7)) *no512 = sign == '-';
        uint32_t f = bj_cg_flag_of(name, nn);
        if (sign == '+') {
            *flags |= f;
            for (const char *p = implied; *p;) {
                size_t m = strcspn(p, ",");
                *flags |= bj_cg_flag_of(p, m);
                p += m + (p[m] == ',');
            }
        } else {
            *flags &= ~f;
            for (size_t i = 0; i < BJ_COUNTOF(bj_cg_feat_table); i++) /* what needs it goes too */
            {
                const char *needs = bj_cg_llvm_implied(bj_cg_feat_table[i].name, strlen(bj_cg_feat_table[i].name));
                if (needs && bj_cg_list_has(needs, name, nn)) *flags &= ~bj_cg_feat_table[i].flag;
            }
        }
    }
    return BJ_OK;
}

/* Clears flags whose requirements are missing until nothing changes; derives V512. */
static uint32_t bj_cg_close_flags(uint32_t flags, bool no512) {
    flags &= ~(uint32_t)BJ_CG_F_V512;
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t i = 0; i < BJ_COUNTOF(bj_cg_feat_table); i++) {
            uint32_t f = bj_cg_feat_table[i].flag, req = bj_cg_feat_table[i].req;
            if ((flags & f) && (flags & req) != req) { flags &= ~f; changed = true; }
        }
    }
    if ((flags & BJ_CG_F_AVX512F) && !no512) flags |= BJ_CG_F_V512;
    return flags;
}

static bj_status bj_cg_copy(char *dst, size_t cap, const char *src, const char *what, bj_error *err) {
    if (strlen(src) >= cap) return BJ_FAIL(err, BJ_E_INVALID, "%s is too long (%zu bytes, at most %zu)",
                                           what, strlen(src), cap - 1);
    memcpy(dst, src, strlen(src) + 1);
    return BJ_OK;
}

static bj_status bj_cg_detect_host(bj_cg_target *t, bj_error *err) {
    char *cpu = LLVMGetHostCPUName(), *feat = LLVMGetHostCPUFeatures();
    bj_status s = bj_cg_copy(t->cpu, sizeof t->cpu, cpu, "host CPU name", err);
    if (s == BJ_OK) s = bj_cg_copy(t->features, sizeof t->features, feat, "host CPU features", err);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
    t->is_host = t->features_known = true;
    return s;
}

/* Flags of a named CPU from the table; LLVM still gets "" (its own defaults for the CPU). */
static bj_status bj_cg_named_cpu(bj_cg_target *t, const char *mcpu, uint32_t *flags, bj_error *err) {
    BJ_TRY(bj_cg_copy(t->cpu, sizeof t->cpu, mcpu, "--mcpu", err));
    t->features[0] = 0;
    for (size_t i = 0; i < BJ_COUNTOF(bj_cg_cpus); i++) {
        if (strcmp(mcpu, bj_cg_cpus[i].cpu)) continue;
        const char *f = bj_cg_cpus[i].features;
        while (*f) { /* "a,b,c" */
            size_t n = strcspn(f, ",");
            *flags |= bj_cg_flag_of(f, n);
            f += n + (f[n] == ',');
        }
        t->features_known = true;
        return BJ_OK;
    }
    return BJ_FAIL(err, BJ_E_INVALID,
                   "unknown CPU '%s' for --mcpu: give an x86-64 CPU name LLVM knows (e.g. native, x86-64, "
                   "x86-64-v3, x86-64-v4, haswell, skylake-avx512, icelake-server, sapphirerapids, znver3, znver4, "
                   "znver5; `bitjit info --list-cpus` prints them all)",
                   mcpu);
}

size_t bj_cg_cpu_count(void) { return BJ_COUNTOF(bj_cg_cpus); }
const char *bj_cg_cpu_name(size_t i) { return i < BJ_COUNTOF(bj_cg_cpus) ? bj_cg_cpus[i].cpu : NULL; }

/* LLVM 18-21 split 512-bit vectors into the evex512 feature: "+avx512f" (or anything implying it)
 * in --mattr on a CPU whose defaults lack AVX-512 gives AVX-512 with 256-bit vectors only, and
 * LLVM 19 aborts selecting 512-bit code. bitjit's flags say 512-bit vectors for avx512f unless
 * -evex512 is explicit, so make LLVM agree by adding +evex512 where the base (host or CPU
 * defaults) had no AVX-512 and the string does not mention evex512. */
static bj_status bj_cg_fix_evex512(bj_cg_target *t, uint32_t base_flags, bj_error *err) {
    unsigned major = 0, minor = 0, patch = 0;
    LLVMGetVersion(&major, &minor, &patch);
    if (major < 18 || major > 21 || !(t->flags & BJ_CG_F_V512) || strstr(t->features, "evex512") ||
        (base_flags & BJ_CG_F_AVX512F))
        return BJ_OK;
    size_t n = strlen(t->features);
    if (n + sizeof ",+evex512" > sizeof t->features)
        return BJ_FAIL(err, BJ_E_INVALID, "the CPU feature string is too long to add +evex512");
    memcpy(t->features + n, n ? ",+evex512" : "+evex512", n ? sizeof ",+evex512" : sizeof "+evex512");
    return BJ_OK;
}

/* Linux hands AMX tile data to a process only once it asks (arch_prctl ARCH_REQ_XCOMP_PERM for
 * XFEATURE_XTILEDATA, kernel 5.16+); until then a tile instruction raises SIGILL. Asking again is
 * harmless. The permission covers every thread of the process. */
#define BJ_ARCH_REQ_XCOMP_PERM 0x1023
#define BJ_XFEATURE_XTILEDATA 18
static bool bj_cg_amx_permitted(void) {
#ifdef SYS_arch_prctl
    return syscall(SYS_arch_prctl, BJ_ARCH_REQ_XCOMP_PERM, BJ_XFEATURE_XTILEDATA) == 0;
#else
    return false;
#endif
}

static bj_status bj_cg_target_make(bj_cg_target *t, const char *mcpu, const char *mattr, bool table, bj_error *err) {
    memset(t, 0, sizeof *t);
    BJ_TRY(bj_cg_detect_host(t, err));
    uint32_t flags = 0;
    bool no512 = false;
    if (mcpu && *mcpu && strcmp(mcpu, "native") && (table || strcmp(mcpu, t->cpu))) {
        t->is_host = t->features_known = false;
        BJ_TRY(bj_cg_named_cpu(t, mcpu, &flags, err));
    } else {
        bj_cg_parse_features(t->features, &flags, &no512);
        /* The host's AMX counts only once the kernel lets this process use it. */
        if ((flags & BJ_CG_F_AMXTILE) && !bj_cg_amx_permitted()) flags &= ~(uint32_t)(BJ_CG_F_AMXTILE | BJ_CG_F_AMXINT8);
    }
    uint32_t base = bj_cg_close_flags(flags, no512);
    if (mattr && *mattr) BJ_TRY(bj_cg_read_mattr(mattr, &flags, &no512, t->features, sizeof t->features, err));
    t->flags = bj_cg_close_flags(flags, no512);
    return bj_cg_fix_evex512(t, base, err);
}

bj_status bj_cg_target_detect(bj_cg_target *t, const char *mcpu, const char *mattr, bj_error *err) {
    return bj_cg_target_make(t, mcpu, mattr, false, err);
}

bj_status bj_cg_target_named(bj_cg_target *t, const char *mcpu, const char *mattr, bj_error *err) {
    return bj_cg_target_make(t, mcpu, mattr, true, err);
}

/* True when the features string turns on `name` (as "+name") and the host has "-name". */
static bool bj_cg_host_lacks(const char *host_features, const char *name, size_t n) {
    char want[96];
    if (n + 2 > sizeof want) return false;
    want[0] = '-';
    memcpy(want + 1, name, n);
    want[n + 1] = 0;
    for (const char *p = host_features; (p = strstr(p, want)); p += n + 1)
        if ((p == host_features || p[-1] == ',') && (p[n + 1] == ',' || p[n + 1] == 0)) return true;
    return false;
}

/* Appends " s" unless buf already lists that word. */
static void bj_cg_append(char *buf, size_t cap, const char *s, size_t n) {
    for (const char *w = buf; *w;) { /* words of buf, each after a space */
        w += *w == ' ';
        size_t len = strcspn(w, " ");
        if (len == n && !strncmp(w, s, n)) return;
        w += len;
    }
    size_t len = strlen(buf);
    if (len + n + 2 < cap) snprintf(buf + len, cap - len, " %.*s", (int)n, s);
}

bj_status bj_cg_target_check_host(const bj_cg_target *t, bj_error *err) {
    bj_cg_target host;
    BJ_TRY(bj_cg_target_detect(&host, NULL, NULL, err));
    if (!t->features_known && strcmp(t->cpu, host.cpu))
        return BJ_FAIL(err, BJ_E_UNSUPPORTED,
                       "code built for CPU '%s' cannot be verified to run on this host ('%s'): bitjit does "
                       "not know that CPU's features; rebuild for the host or a CPU bitjit knows",
                       t->cpu, host.cpu);
    char missing[512] = "";
    for (size_t i = 0; i < BJ_COUNTOF(bj_cg_feat_table); i++)
        if ((t->flags & bj_cg_feat_table[i].flag) && !(host.flags & bj_cg_feat_table[i].flag))
            bj_cg_append(missing, sizeof missing, bj_cg_feat_table[i].name, strlen(bj_cg_feat_table[i].name));
    if ((t->flags & BJ_CG_F_V512) && !(host.flags & BJ_CG_F_V512))
        bj_cg_append(missing, sizeof missing, "evex512", 7);
    for (const char *p = t->features; *p;) {
        size_t n = strcspn(p, ",");
        if (n > 1 && p[0] == '+' && bj_cg_host_lacks(host.features, p + 1, n - 1))
            bj_cg_append(missing, sizeof missing, p + 1, n - 1);
        p += n + (p[n] == ',');
    }
    if (missing[0])
        return BJ_FAIL(err, BJ_E_UNSUPPORTED, "code built for '%s' needs CPU features this host ('%s') lacks:%s",
                       t->cpu, host.cpu, missing);
    return BJ_OK;
}

void bj_cg_llvm_version(char *buf, size_t cap) {
    unsigned major = 0, minor = 0, patch = 0;
    LLVMGetVersion(&major, &minor, &patch);
    snprintf(buf, cap, "%u.%u.%u", major, minor, patch);
}

void bj_cg_target_describe(const bj_cg_target *t, char *buf, size_t cap) {
    char feats[512] = "", llvm[32];
    for (size_t i = 0; i < BJ_COUNTOF(bj_cg_feat_table); i++)
        if (t->flags & bj_cg_feat_table[i].flag)
            bj_cg_append(feats, sizeof feats, bj_cg_feat_table[i].name, strlen(bj_cg_feat_table[i].name));
    if (t->flags & BJ_CG_F_V512) bj_cg_append(feats, sizeof feats, "(512-bit vectors)", 17);
    bj_cg_llvm_version(llvm, sizeof llvm);
    bj_cg_isa isa = bj_cg_best_isa(t);
    snprintf(buf, cap,
             "cpu: %s%s\nfeatures used:%s\nLLVM feature string: %zu bytes%s\nLLVM: %s\n"
             "kernel path: %s (%u-byte vectors)%s\n",
             t->cpu, t->is_host ? " (host)" : "", feats[0] ? feats : " (none)", strlen(t->features),
             t->features_known ? "" : " (CPU defaults unknown to bitjit)", llvm, bj_cg_isa_name(isa),
             bj_cg_isa_vector_bytes(isa),
             bj_cg_isa_supported(t, BJ_CG_ISA_AMX) ? "; dot2 prefill on amx (AMX-INT8 tiles)" : "");
}
