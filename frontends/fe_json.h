/* frontends/fe_json.h -- small jansson helpers the JSON-reading frontends share. */
#ifndef BJ_FE_JSON_H
#define BJ_FE_JSON_H

#include <jansson.h>
#include <stddef.h>

/* A short description of a JSON value for "got ..." in error messages: the value itself for
 * numbers and (truncated) strings, the kind otherwise. May return buf. */
const char *bj_fe_json_desc(const json_t *v, char *buf, size_t cap);

#endif
