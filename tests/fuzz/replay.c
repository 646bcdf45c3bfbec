/* tests/fuzz/replay.c -- a main() for the libFuzzer harnesses in builds without libFuzzer (gcc,
 * the normal and ASan builds): runs LLVMFuzzerTestOneInput once on every file named on the
 * command line or found in a directory named there (not recursive). ctest uses it to replay the
 * seed corpora and the saved crash inputs (tests/fuzz/regress/NAME) in every build, so a fixed
 * crash stays fixed without clang. Exits non-zero if a file cannot be read; a harness that
 * finds a bug aborts (or the sanitizer stops it). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); buf = NULL; }
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) { fprintf(stderr, "%s: out of memory\n", path); return 1; }
    /* An exact-size copy, so reading one byte past the input is an ASan report. */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) { free(buf); return 1; }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    int bad = 0, files = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st)) { perror(argv[i]); bad++; continue; }
        if (!S_ISDIR(st.st_mode)) { bad += replay_file(argv[i]); files++; continue; }
        DIR *d = opendir(argv[i]);
        for (struct dirent *de; d && (de = readdir(d));) {
            if (de->d_name[0] == '.') continue;
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", argv[i], de->d_name);
            if (!stat(p, &st) && S_ISREG(st.st_mode)) { bad += replay_file(p); files++; }
        }
        if (d) closedir(d);
    }
    printf("replayed %d inputs, %d unreadable\n", files, bad);
    return bad != 0;
}
