/* frontends/fe_json.c -- see fe_json.h. */
#include "frontends/fe_json.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local bool fe_json_oom;

static void *fe_json_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) fe_json_oom = true;
    return p;
}

static void fe_json_init(void) { json_set_alloc_funcs(fe_json_malloc, free); }

json_t *bj_fe_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *je, bool *oom) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fe_json_init);
    fe_json_oom = false;
    json_t *root = json_loadb(buf, len, flags, je);
    *oom = !root && (fe_json_oom || json_error_code(je) == json_error_out_of_memory);
    return root;
}

const char *bj_fe_json_desc(const json_t *v, char *buf, size_t cap) {
    switch (json_typeof(v)) {
    case JSON_INTEGER: snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); return buf;
    case JSON_REAL: snprintf(buf, cap, "%g", json_real_value(v)); return buf;
    case JSON_STRING: snprintf(buf, cap, "string \"%.40s\"", json_string_value(v)); return buf;
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}
