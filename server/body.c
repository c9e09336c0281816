/* body.c - JSON request bodies (see body.h). */
#include <string.h>

#include "body.h"

json_t *body_object(request *rq) {
  if (rq->len == 0)
    return json_object();
  json_error_t e;
  json_t *j = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &e);
  if (j == NULL) {
    reply_error(rq, 400, "ES_EINVAL", "invalid JSON at byte %d: %s", e.position,
                e.text);
    return NULL;
  }
  if (!json_is_object(j)) {
    reply_error(rq, 400, "ES_EINVAL", "the body must be a JSON object");
    json_decref(j);
    return NULL;
  }
  return j;
}

bool body_only(request *rq, json_t *obj, const char *const *known) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    bool found = false;
    for (size_t i = 0; known[i] && !found; i++)
      found = strcmp(known[i], key) == 0;
    if (!found) {
      reply_error(rq, 400, "ES_EINVAL", "unknown field \"%.100s\"", key);
      return false;
    }
  }
  return true;
}

const char *body_string(request *rq, json_t *obj, const char *name, bool *ok) {
  json_t *v = json_object_get(obj, name);
  if (v == NULL || json_is_null(v))
    return NULL;
  if (!json_is_string(v)) {
    reply_error(rq, 400, "ES_EINVAL", "field \"%s\" must be a string", name);
    *ok = false;
    return NULL;
  }
  return json_string_value(v);
}

long long body_int(request *rq, json_t *obj, const char *name, long long lo,
                   long long hi, long long def, bool *ok) {
  json_t *v = json_object_get(obj, name);
  if (v == NULL || json_is_null(v))
    return def;
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
    reply_error(rq, 400, "ES_EINVAL", "field \"%s\" must be an integer %lld..%lld",
                name, lo, hi);
    *ok = false;
    return def;
  }
  return json_integer_value(v);
}

bool body_bool(request *rq, json_t *obj, const char *name, bool def, bool *ok) {
  json_t *v = json_object_get(obj, name);
  if (v == NULL || json_is_null(v))
    return def;
  if (!json_is_boolean(v)) {
    reply_error(rq, 400, "ES_EINVAL", "field \"%s\" must be true or false", name);
    *ok = false;
    return def;
  }
  return json_is_true(v);
}
