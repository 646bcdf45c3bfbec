/* frontends/fe_json.h -- small jansson helpers the JSON-reading frontends share. */
#ifndef BJ_FE_JSON_H
#define BJ_FE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* A short description of a JSON value for "got ..." in error messages: the value itself for
 * numbers and (truncated) strings, the kind otherwise. May return buf. */
const char *bj_fe_json_desc(const json_t *v, char *buf, size_t cap);

/* json_loadb, telling out-of-memory apart from malformed JSON: when parsing fails because an
 * allocation failed (jansson then often reports a bogus syntax error), *oom is set. jansson's
 * allocator is set once, process-wide, to malloc/free through a wrapper that notices failures. */
json_t *bj_fe_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *je, bool *oom);

#endif
