/* frontends/fe_json.c -- see fe_json.h. */
#include "frontends/fe_json.h"

#include <stdio.h>

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
