/* frontends/tok_unicode.c -- UTF-8 and GPT-2 byte-level alphabet helpers for the tokenizers.
 *
 * UTF-8 here is strict (RFC 3629): no overlong forms, no surrogates (U+D800..U+DFFF), nothing
 * above U+10FFFF. That is exactly what PCRE2 accepts as valid UTF, so text that passed
 * bj_utf8_valid_prefix can be handed to PCRE2 with PCRE2_NO_UTF_CHECK.
 *
 * The byte-level alphabet (formats.md §2.4 step 3) maps each byte to one code point: the
 * printable bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF map to themselves, the other 68 bytes
 * (0x00-0x20, 0x7F-0xA0, 0xAD) to U+0100.. in increasing order. It is computed, not tabled,
 * so there is no table to keep in step. */
#include "frontends/tok_impl.h"

#include <stdlib.h>
#include <string.h>

/* Length of the sequence a lead byte starts (1..4), or 0 for a byte that never leads. */
static int utf8_lead_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* The allowed range of the second byte after lead c (it narrows for E0, ED, F0, F4). */
static void utf8_second_range(uint8_t c, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c == 0xE0) *lo = 0xA0;      /* no overlong 3-byte forms */
    else if (c == 0xED) *hi = 0x9F; /* no surrogates */
    else if (c == 0xF0) *lo = 0x90; /* no overlong 4-byte forms */
    else if (c == 0xF4) *hi = 0x8F; /* nothing above U+10FFFF */
}

/* How many of the n bytes at s (n < the sequence length allowed) are a valid start of the
 * sequence led by s[0]: 1 (just the lead) .. n. */
static size_t utf8_valid_part(const uint8_t *s, size_t n) {
    uint8_t lo, hi;
    utf8_second_range(s[0], &lo, &hi);
    size_t i = 1;
    if (i < n && (s[1] < lo || s[1] > hi)) return 1;
    for (i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return i;
    return n;
}

int bj_utf8_decode1(const char *str, size_t n, uint32_t *cp) {
    const uint8_t *s = (const uint8_t *)str;
    if (n == 0) return 0;
    int len = utf8_lead_len(s[0]);
    if (len == 0 || (size_t)len > n || utf8_valid_part(s, (size_t)len) != (size_t)len) return 0;
    static const uint8_t mask[5] = { 0, 0x7F, 0x1F, 0x0F, 0x07 };
    uint32_t c = s[0] & mask[len];
    for (int i = 1; i < len; i++) c = c << 6 | (s[i] & 0x3F);
    if (cp) *cp = c;
    return len;
}

size_t bj_utf8_valid_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((uint8_t)s[i] < 0x80) { i++; continue; }
        int len = bj_utf8_decode1(s + i, n - i, NULL);
        if (len == 0) break;
        i += (size_t)len;
    }
    return i;
}

size_t bj_utf8_complete_prefix(const char *str, size_t n) {
    const uint8_t *s = (const uint8_t *)str;
    /* Only the last 3 bytes can belong to an unfinished sequence: find its lead byte. */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t c = s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte: keep looking for the lead */
        int len = utf8_lead_len(c);
        if (len > 1 && (size_t)len > back && utf8_valid_part(s + n - back, back) == back)
            return n - back; /* a valid start that more bytes can still complete */
        return n;
    }
    return n;
}

uint32_t bj_tok_byte_to_cp(uint8_t b) {
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x100 + 33 + (uint32_t)(b - 0x7F);
    if (b == 0xAD) return 0x100 + 67;
    return b;
}

int bj_tok_cp_to_byte(uint32_t cp) {
    if (cp < 0x100) return bj_tok_byte_to_cp((uint8_t)cp) == cp ? (int)cp : -1;
    if (cp <= 0x100 + 32) return (int)(cp - 0x100);
    if (cp <= 0x100 + 66) return (int)(0x7F + cp - (0x100 + 33));
    if (cp == 0x100 + 67) return 0xAD;
    return -1;
}

bool bj_tok_bytelevel_to_bytes(const char *s, size_t n, char *out, size_t *out_len) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = bj_utf8_decode1(s + i, n - i, &cp);
        int b = len ? bj_tok_cp_to_byte(cp) : -1;
        if (b < 0) return false;
        out[o++] = (char)b;
        i += (size_t)len;
    }
    *out_len = o;
    return true;
}

bool bj_utf8_is_white_space(uint32_t cp) {
    /* Unicode's White_Space property, which Rust's char::is_whitespace implements. */
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* ---- HF regexes for PCRE2 ----------------------------------------------------------------
 * HF tokenizers runs its regexes with Oniguruma, whose Unicode tables are version 16.0; PCRE2
 * 10.42 has 14.0. And PCRE2's \s also matches U+180E (it is in \h), which is not White_Space,
 * Oniguruma's \s. So before compiling, \p{L} and \p{N} gain the code points Unicode 15.0 and
 * 16.0 added to those categories, and \s / \S become explicit White_Space classes. The lists
 * were checked code point by code point against HF tokenizers 0.23 (npm): after the rewrite
 * PCRE2 and HF put every code point in the same classes (\p{L}, \p{N}, \s). A newer PCRE2 only
 * adds letters HF does not know yet (Unicode 17.0+); that residue is not corrected. */

static const char tok_extra_L[] =
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}"
    "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}"
    "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}"
    "\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}"
    "\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}"
    "\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}"
    "\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}"
    "\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}";

static const char tok_extra_N[] =
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}"
    "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}"
    "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}";

/* White_Space, and its complement (for \S inside a class, where [^...] cannot nest). */
static const char tok_ws[] =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";
static const char tok_non_ws[] =
    "\\x{0}-\\x{8}\\x{E}-\\x{1F}\\x{21}-\\x{84}\\x{86}-\\x{9F}\\x{A1}-\\x{167F}\\x{1681}-\\x{1FFF}"
    "\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{10FFFF}";

typedef struct tok_sb { char *p; size_t n, cap; bool oom; } tok_sb;

static void tok_sb_put(tok_sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n > b->cap - b->n) {
        size_t cap = 2 * b->cap + n + 64;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void tok_sb_puts(tok_sb *b, const char *s) { tok_sb_put(b, s, strlen(s)); }

/* Appends the replacement of the escape at p (\s, \S, \p{L}, \pL, \p{N}, \pN: a class, or
 * inside a class its ranges), or the escape itself; *len is how many pattern bytes it took. */
static void tok_rewrite_escape(tok_sb *b, const char *p, size_t n, bool in_class, size_t *len) {
    *len = 2;
    if (p[1] == 's') { tok_sb_puts(b, in_class ? "" : "["), tok_sb_puts(b, tok_ws), tok_sb_puts(b, in_class ? "" : "]"); return; }
    if (p[1] == 'S') {
        if (in_class) tok_sb_puts(b, tok_non_ws);
        else tok_sb_puts(b, "[^"), tok_sb_puts(b, tok_ws), tok_sb_puts(b, "]");
        return;
    }
    char cat = 0;
    if (p[1] == 'p' && n >= 3 && (p[2] == 'L' || p[2] == 'N')) cat = p[2], *len = 3;
    else if (p[1] == 'p' && n >= 5 && p[2] == '{' && (p[3] == 'L' || p[3] == 'N') && p[4] == '}') cat = p[3], *len = 5;
    if (!cat) { tok_sb_put(b, p, 2); return; } /* any other escape: copied as it is */
    tok_sb_puts(b, in_class ? "" : "[");
    tok_sb_puts(b, cat == 'L' ? "\\p{L}" : "\\p{N}");
    tok_sb_puts(b, cat == 'L' ? tok_extra_L : tok_extra_N);
    tok_sb_puts(b, in_class ? "" : "]");
}

/* Copies \Q...\E (quoted text) through its \E, or to the end. Returns its length. */
static size_t tok_quoted_len(const char *p, size_t n) {
    for (size_t i = 2; i + 1 < n; i++)
        if (p[i] == '\\' && p[i + 1] == 'E') return i + 2;
    return n;
}

char *bj_tok_regex_for_pcre2(const char *pat, size_t n, size_t *out_len) {
    tok_sb b = { 0 };
    bool in_class = false, class_start = false; /* class_start: a ']' here is literal */
    for (size_t i = 0, len; i < n; i += len) {
        len = 1;
        if (pat[i] == '\\' && i + 1 < n && pat[i + 1] == 'Q') {
            len = tok_quoted_len(pat + i, n - i);
            tok_sb_put(&b, pat + i, len);
        } else if (pat[i] == '\\' && i + 1 < n) {
            tok_rewrite_escape(&b, pat + i, n - i, in_class, &len);
        } else if (in_class && pat[i] == '[' && i + 1 < n && pat[i + 1] == ':') {
            const char *end = strstr(pat + i, ":]"); /* a POSIX class [:alpha:] */
            len = end && (size_t)(end - pat) < n ? (size_t)(end - (pat + i)) + 2 : 1;
            tok_sb_put(&b, pat + i, len);
        } else {
            if (!in_class && pat[i] == '[') in_class = class_start = true;
            else if (in_class && pat[i] == ']' && !class_start) in_class = false;
            else if (!(class_start && pat[i] == '^' && pat[i - 1] == '[')) class_start = false;
            tok_sb_put(&b, pat + i, 1);
            continue;
        }
        class_start = false;
    }
    tok_sb_put(&b, "", 1);
    if (b.oom) { free(b.p); return NULL; }
    *out_len = b.n - 1;
    return b.p;
}
