/* body.c - JSON request bodies (see body.h). */
#include <math.h>
#include <stdlib.h>
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

/* The lifted vector of rq's body, and the body parsed without it; NULL
 * when any step does not succeed (nothing answered). */
static json_t *lifted(request *rq, const char *member, float **vec, size_t *dim) {
  span sp;
  if (rq->len == 0 || !json_member_span(rq->body, rq->len, member, &sp) ||
      sp.len == 0 || sp.p[0] != '[')
    return NULL;
  if (es_vector_parse_json(sp.p, sp.len, member, vec, dim, NULL, 0) != ES_OK)
    return NULL;
  for (size_t i = 0; i < *dim; i++)
    if (!isfinite((*vec)[i])) /* jansson would refuse it: let it say so */
      goto refused;
  size_t head = (size_t)(sp.p - rq->body), tail = rq->len - head - sp.len;
  char *copy = malloc(head + 4 + tail);
  if (copy == NULL)
    goto refused;
  memcpy(copy, rq->body, head);
  memcpy(copy + head, "null", 4);
  memcpy(copy + head + 4, sp.p + sp.len, tail);
  json_t *j = json_loadb(copy, head + 4 + tail, JSON_REJECT_DUPLICATES, NULL);
  free(copy);
  if (j != NULL && json_is_object(j))
    return j;
  json_decref(j);
refused:
  es_vector_free(*vec);
  *vec = NULL;
  return NULL;
}

json_t *body_object_lifting(request *rq, const char *member, float **vec,
                            size_t *dim) {
  *vec = NULL;
  *dim = 0;
  json_t *j = lifted(rq, member, vec, dim);
  return j ? j : body_object(rq);
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

char *body_object_text(request *rq, json_t *obj, const char *name, bool *ok) {
  json_t *v = json_object_get(obj, name);
  if (v == NULL || json_is_null(v))
    return NULL;
  span sp;
  if (!json_is_object(v) || !json_member_span(rq->body, rq->len, name, &sp)) {
    reply_error(rq, 400, "ES_EINVAL", "field \"%s\" must be a JSON object", name);
    *ok = false;
    return NULL;
  }
  char *text = strndup(sp.p, sp.len);
  if (text == NULL) {
    reply_error(rq, 500, "ES_ENOMEM", "out of memory");
    *ok = false;
  }
  return text;
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
