/* codegen/cg_tunedb.c -- the tuning database's reader, writer and the one rule that turns its
 * entries into kernel descriptors (format and rules in cg_tunedb.h). */
#include "codegen/cg_tunedb.h"
#include "codegen/cg_llvm.h"

#include <xxhash.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const bj_cg_tclass_names[BJ_CG_TC_COUNT] = { "decode", "prefill" };

const char *bj_cg_tclass_name(bj_cg_tclass tc) {
    return (unsigned)tc < BJ_CG_TC_COUNT ? bj_cg_tclass_names[tc] : "?";
}

void bj_cg_tunedb_init(bj_cg_tunedb *db, const bj_cg_target *t) {
    memset(db, 0, sizeof *db);
    snprintf(db->cpu, sizeof db->cpu, "%s", t->cpu);
    snprintf(db->features, sizeof db->features, "%s", t->features);
    bj_cg_llvm_version(db->llvm, sizeof db->llvm);
}

void bj_cg_tunedb_free(bj_cg_tunedb *db) {
    free(db->e);
    db->e = NULL;
    db->n = db->cap = 0;
}

bj_status bj_cg_tunedb_default_path(const bj_cg_target *t, const char *dir, char *buf, size_t cap, bj_error *err) {
    char def[4096], llvm[32], key[sizeof t->features + 256];
    if (!dir || !*dir) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg) snprintf(def, sizeof def, "%s/bitjit", xdg);
        else if (home && *home) snprintf(def, sizeof def, "%s/.cache/bitjit", home);
        else return BJ_FAIL(err, BJ_E_INVALID, "tuning database: neither XDG_CACHE_HOME nor HOME is set");
        dir = def;
    }
    bj_cg_llvm_version(llvm, sizeof llvm);
    int n = snprintf(key, sizeof key, "bitjit-tunedb|%s|%s|llvm %s|abi %d", t->cpu, t->features, llvm,
                     BJ_CG_ABI_VERSION);
    uint64_t h = XXH3_64bits(key, n < (int)sizeof key ? (size_t)n : sizeof key);
    char cpu[64];
    snprintf(cpu, sizeof cpu, "%s", t->cpu);
    for (char *c = cpu; *c; c++)
        if (*c == '/' || *c == ' ') *c = '_';
    n = snprintf(buf, cap, "%s/tune-%s-%016llx.txt", dir, cpu, (unsigned long long)h);
    if (n < 0 || (size_t)n >= cap) return BJ_FAIL(err, BJ_E_INVALID, "tuning database path is too long");
    return BJ_OK;
}

static int bj_cg_name_index(const char *s, const char *(*name)(int), int count) {
    for (int i = 1; i < count; i++)
        if (!strcmp(s, name(i))) return i;
    return -1;
}
static const char *bj_cg_vname(int i) { return bj_cg_variant_name((bj_cg_variant)i); }
static const char *bj_cg_iname(int i) { return bj_cg_isa_name((bj_cg_isa)i); }

const bj_cg_tune_entry *bj_cg_tunedb_find(const bj_cg_tunedb *db, bj_cg_wtype wt, uint32_t m, uint32_t k,
                                          bj_cg_tclass tc) {
    for (size_t i = 0; db && i < db->n; i++) {
        const bj_cg_tune_entry *e = &db->e[i];
        if (e->wtype == wt && e->m == m && e->k == k && e->tclass == tc) return e;
    }
    return NULL;
}

bj_status bj_cg_tunedb_set(bj_cg_tunedb *db, const bj_cg_tune_entry *e, bj_error *err) {
    for (size_t i = 0; i < db->n; i++) {
        bj_cg_tune_entry *o = &db->e[i];
        if (o->wtype == e->wtype && o->m == e->m && o->k == e->k && o->tclass == e->tclass) {
            *o = *e;
            return BJ_OK;
        }
    }
    if (db->n == db->cap) {
        size_t cap = db->cap ? 2 * db->cap : 16;
        bj_cg_tune_entry *p = realloc(db->e, cap * sizeof *p);
        if (!p) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
        db->e = p;
        db->cap = cap;
    }
    db->e[db->n++] = *e;
    return BJ_OK;
}

/* One "entry ..." line (after the keyword); false when malformed. */
static bool bj_cg_parse_entry(char *s, bj_cg_tune_entry *e) {
    char wt[16], tc[16], var[32], isa[32];
    unsigned m, k, tm, tt, un, pf;
    double dn, tn;
    int used = 0;
    if (sscanf(s, " %15s %u %u %15s %31s %31s %u %u %u %u %lf %lf %n", wt, &m, &k, tc, var, isa, &tm, &tt, &un, &pf,
               &dn, &tn, &used) != 12 || s[used])
        return false;
    memset(e, 0, sizeof *e);
    if (!strcmp(wt, "ternary")) e->wtype = BJ_CG_W_TERNARY;
    else if (!strcmp(wt, "binary")) e->wtype = BJ_CG_W_BINARY;
    else return false;
    if (!strcmp(tc, "decode")) e->tclass = BJ_CG_TC_DECODE;
    else if (!strcmp(tc, "prefill")) e->tclass = BJ_CG_TC_PREFILL;
    else return false;
    int v = bj_cg_name_index(var, bj_cg_vname, BJ_CG_V_COUNT), a = bj_cg_name_index(isa, bj_cg_iname, BJ_CG_ISA_COUNT);
    if (v < 0 || a < 0 || m < 1 || m > BJ_CG_MAX_M || k < 1 || k > BJ_CG_MAX_K || tm < 1 || tm > 255 || tt < 1 ||
        tt > 255 || un < 1 || un > 255 || pf % 256 || pf > 255 * 256)
        return false;
    e->m = m;
    e->k = k;
    e->variant = (uint8_t)v;
    e->isa = (uint8_t)a;
    e->tile_m = (uint8_t)tm;
    e->tile_t = (uint8_t)tt;
    e->unroll = (uint8_t)un;
    e->prefetch = (uint8_t)(pf / 256);
    e->default_ns = dn;
    e->tuned_ns = tn;
    return true;
}

/* Parses text (NUL-terminated, modified) into db; a message in why when it is unusable. */
static bj_status bj_cg_tunedb_parse(bj_cg_tunedb *db, char *text, size_t len, bool *ok, char *why, size_t cap,
                                    bj_error *err) {
    *ok = false;
    if (strlen(text) != len) { snprintf(why, cap, "contains a NUL byte"); return BJ_OK; }
    if (len && text[len - 1] != '\n') { snprintf(why, cap, "truncated (no final newline)"); return BJ_OK; }
    int version = -1, abi = -1;
    bool have_cpu = false, have_feat = false, have_llvm = false, have_end = false;
    size_t n_entries = 0;
    char llvm[32] = "";
    unsigned lineno = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (line[0] == '#' || !line[0]) continue;
        if (have_end) { snprintf(why, cap, "line %u: data after the end record", lineno); return BJ_OK; }
        char *sp = strchr(line, ' ');
        const char *val = sp ? sp + 1 : "";
        if (sp) *sp = 0;
        if (version < 0) {
            if (strcmp(line, "bitjit-tunedb")) { snprintf(why, cap, "not a bitjit tuning database"); return BJ_OK; }
            char *end;
            long v = strtol(val, &end, 10);
            if (end == val || *end) { snprintf(why, cap, "bad version line"); return BJ_OK; }
            if (v != BJ_CG_TUNEDB_VERSION) {
                snprintf(why, cap, "format version %ld, this bitjit reads version %d", v, BJ_CG_TUNEDB_VERSION);
                return BJ_OK;
            }
            version = (int)v;
        } else if (!strcmp(line, "cpu")) {
            if (strcmp(val, db->cpu)) { snprintf(why, cap, "measured on CPU '%.60s', not '%.60s'", val, db->cpu); return BJ_OK; }
            have_cpu = true;
        } else if (!strcmp(line, "features")) {
            if (strcmp(val, db->features)) { snprintf(why, cap, "measured with other CPU features"); return BJ_OK; }
            have_feat = true;
        } else if (!strcmp(line, "llvm")) {
            snprintf(llvm, sizeof llvm, "%s", val);
            have_llvm = true;
        } else if (!strcmp(line, "abi")) {
            abi = atoi(val);
        } else if (!strcmp(line, "bitjit")) {
            /* informational */
        } else if (!strcmp(line, "entry")) {
            bj_cg_tune_entry e;
            if (!bj_cg_parse_entry((char *)val, &e)) { snprintf(why, cap, "line %u: malformed entry", lineno); return BJ_OK; }
            BJ_TRY(bj_cg_tunedb_set(db, &e, err));
            n_entries++;
        } else if (!strcmp(line, "end")) {
            char *end;
            unsigned long long c = strtoull(val, &end, 10);
            if (end == val || *end || c != n_entries) {
                snprintf(why, cap, "end record says %.20s entries, the file has %zu", val, n_entries);
                return BJ_OK;
            }
            have_end = true;
        } else {
            snprintf(why, cap, "line %u: unknown record '%.40s'", lineno, line);
            return BJ_OK;
        }
    }
    if (version < 0) { snprintf(why, cap, "empty file"); return BJ_OK; }
    if (!have_cpu || !have_feat || !have_llvm || abi < 0) { snprintf(why, cap, "header incomplete"); return BJ_OK; }
    if (!have_end) { snprintf(why, cap, "truncated (no end record)"); return BJ_OK; }
    if (abi != BJ_CG_ABI_VERSION) { snprintf(why, cap, "kernel ABI %d, this bitjit has %d", abi, BJ_CG_ABI_VERSION); return BJ_OK; }
    if (strcmp(llvm, db->llvm)) { snprintf(why, cap, "measured with LLVM %.20s, this bitjit runs %.20s", llvm, db->llvm); return BJ_OK; }
    *ok = true;
    return BJ_OK;
}

bj_status bj_cg_tunedb_load(bj_cg_tunedb *db, const bj_cg_target *t, const char *path, bool *found, char *warn,
                            size_t warn_cap, bj_error *err) {
    bj_cg_tunedb_init(db, t);
    *found = false;
    if (warn && warn_cap) warn[0] = 0;
    char why[256] = "";
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT && warn) snprintf(warn, warn_cap, "tuning database %.300s: %s; not used", path, strerror(errno));
        return BJ_OK;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (64 << 20)) {
        if (warn) snprintf(warn, warn_cap, "tuning database %.300s: not a regular file of at most 64 MiB; not used", path);
        return BJ_OK;
    }
    char *text;
    size_t len;
    bj_error rerr = { 0 };
    if (bj_read_file(path, &text, &len, &rerr) != BJ_OK) {
        if (rerr.code == BJ_E_NOMEM) return BJ_FAIL(err, BJ_E_NOMEM, "out of memory");
        if (warn) snprintf(warn, warn_cap, "tuning database: %.400s; not used", rerr.msg);
        return BJ_OK;
    }
    bool ok;
    bj_status s = bj_cg_tunedb_parse(db, text, len, &ok, why, sizeof why, err);
    free(text);
    if (s != BJ_OK) { bj_cg_tunedb_free(db); return s; }
    if (!ok) {
        bj_cg_tunedb_free(db);
        if (warn) snprintf(warn, warn_cap, "tuning database %.300s: %s; not used (the cost rule picks kernels)", path, why);
        return BJ_OK;
    }
    *found = true;
    return BJ_OK;
}

bj_status bj_cg_tunedb_save(const bj_cg_tunedb *db, const char *path, bj_error *err) {
    char dir[4096], tmp[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        int e = bj_cg_mkdirs(dir);
        if (e) return BJ_FAIL(err, BJ_E_IO, "cannot make directory %s: %s", dir, strerror(e));
    }
    int n = snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof tmp) return BJ_FAIL(err, BJ_E_INVALID, "tuning database path is too long");
    int fd = mkstemp(tmp);
    if (fd < 0) return BJ_FAIL(err, BJ_E_IO, "cannot write %s: %s", tmp, strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) { close(fd); unlink(tmp); return BJ_FAIL(err, BJ_E_IO, "cannot write %s: %s", tmp, strerror(errno)); }
    fprintf(f, "bitjit-tunedb %d\n# written by `bitjit tune`; format in codegen/cg_tunedb.h\n", BJ_CG_TUNEDB_VERSION);
    fprintf(f, "cpu %s\nfeatures %s\nllvm %s\nabi %d\nbitjit %s\n", db->cpu, db->features, db->llvm, BJ_CG_ABI_VERSION,
            BJ_VERSION_STRING);
    fprintf(f, "# entry wtype M K T-class variant isa tile_m tile_t unroll prefetch default_ns tuned_ns\n");
    for (size_t i = 0; i < db->n; i++) {
        const bj_cg_tune_entry *e = &db->e[i];
        fprintf(f, "entry %s %u %u %s %s %s %u %u %u %u %.1f %.1f\n", e->wtype == BJ_CG_W_BINARY ? "binary" : "ternary",
                e->m, e->k, bj_cg_tclass_name((bj_cg_tclass)e->tclass), bj_cg_variant_name((bj_cg_variant)e->variant),
                bj_cg_isa_name((bj_cg_isa)e->isa), e->tile_m, e->tile_t, e->unroll, 256u * e->prefetch, e->default_ns,
                e->tuned_ns);
    }
    fprintf(f, "end %zu\n", db->n);
    bool bad = ferror(f) != 0;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad) { unlink(tmp); return BJ_FAIL(err, BJ_E_IO, "cannot write %s: %s", tmp, strerror(errno)); }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return BJ_FAIL(err, BJ_E_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return BJ_OK;
}

bj_status bj_cg_tune_desc(const bj_cg_tune_entry *e, const bj_cg_target *t, bj_cg_wtype wt, uint32_t M, uint32_t K,
                          const int8_t *t8, bj_cg_kdesc *d, bj_error *err) {
    BJ_TRY(bj_cg_kdesc_init(d, t, (bj_cg_variant)e->variant, (bj_cg_isa)e->isa, wt, M, K, t8, err));
    d->tile_m = e->tile_m;
    d->tile_t = e->tile_t;
    d->unroll = e->unroll;
    d->prefetch = e->prefetch;
    return bj_cg_kdesc_check(d, t, err);
}

bj_status bj_cg_tune_pick_descs(const bj_cg_tunedb *db, const bj_cg_target *t, bj_cg_variant v, bool forced,
                                bj_cg_wtype wt, uint32_t M, uint32_t K, const int8_t *t8, bj_cg_tune_pick *out,
                                bj_error *err) {
    memset(out, 0, sizeof *out);
    BJ_TRY(bj_cg_kdesc_init(&out->def, t, v, BJ_CG_ISA_AUTO, wt, M, K, t8, err));
    out->dec = out->def;
    bj_error ign = { 0 };
    bj_cg_kdesc d;
    const bj_cg_tune_entry *e = NULL;
    if (db && !forced) {
        e = bj_cg_tunedb_find(db, wt, M, K, BJ_CG_TC_DECODE);
        /* Binary weights stay on the binary kernel (the IR verifier's rule); WCODE needs values. */
        if (e && (wt != BJ_CG_W_BINARY || e->variant == BJ_CG_V_BIN1) && (e->variant != BJ_CG_V_WCODE || t8) &&
            bj_cg_tune_desc(e, t, wt, M, K, t8, &d, &ign) == BJ_OK) {
            out->dec = d;
            out->dec_tuned = true;
        }
        e = bj_cg_tunedb_find(db, wt, M, K, BJ_CG_TC_PREFILL);
        if (e && e->variant == out->dec.variant && (e->variant != BJ_CG_V_WCODE || t8) &&
            bj_cg_tune_desc(e, t, wt, M, K, t8, &d, &ign) == BJ_OK && memcmp(&d, &out->dec, sizeof d)) {
            out->pp = d;
            out->has_pp = true;
        }
    }
    /* No word from a database on prefill: the path's own prefill tiles, where they differ. */
    d = out->dec;
    if (!e && bj_cg_kdesc_prefill_default(&d, t) && bj_cg_kdesc_check(&d, t, &ign) == BJ_OK) {
        out->pp = d;
        out->has_pp = true;
        out->pp_default = true;
    }
    return BJ_OK;
}
