/* examples/generate.c -- the smallest complete use of bitjit.h: load a model (a model
 * directory, or a library from `bitjitc MODEL -o model.so`), generate greedily from a prompt,
 * stream the text, and print the token ids.
 *
 *   bitjit-example MODEL [PROMPT] [N]
 *
 * Output: the prompt and generated text on the first line, then "ids: ..." on the second.
 * Uses nothing but the public header; exit status 1 with the library's message on error. */
#include <bitjit.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct stream {
    int32_t ids[4096];
    size_t n;
} stream;

static bool on_token(void *user, int32_t token, const char *piece, size_t len) {
    stream *s = user;
    if (s->n < sizeof s->ids / sizeof s->ids[0]) s->ids[s->n++] = token;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL [PROMPT] [N]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "In the beginning";
    int n = argc > 3 ? atoi(argv[3]) : 32;
    bitjit_error err;
    bitjit_model *m;
    if (bitjit_load(&m, argv[1], NULL, &err) != BITJIT_OK) {
        fprintf(stderr, "error: %s\n", err.message);
        return 1;
    }
    bitjit_sampling greedy;
    bitjit_sampling_default(&greedy);
    greedy.temperature = 0;
    static stream s;
    fputs(prompt, stdout);
    if (bitjit_generate(m, prompt, n, &greedy, on_token, &s, &err) != BITJIT_OK) {
        fprintf(stderr, "\nerror: %s\n", err.message);
        bitjit_free(m);
        return 1;
    }
    printf("\nids:");
    for (size_t i = 0; i < s.n; i++) printf(" %d", s.ids[i]);
    printf("\n");
    bitjit_free(m);
    return 0;
}
