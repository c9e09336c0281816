/* json_spans.c - a structural walk over valid JSON: strings are skipped
 * whole (escapes included), brackets counted, and a value ends at the
 * comma or bracket that closes its level.  It never judges validity:
 * jansson did. */
#include <jansson.h>
#include <string.h>

#include "json_spans.h"

/* Whether the member name k[0..n) (the raw text between its quotes) is
 * key.  A name with escapes ("vec\u0074or") is decoded first: it is the
 * same member to jansson, which read the body. */
static bool key_is(const char *k, size_t n, const char *key, size_t klen) {
  if (memchr(k, '\\', n) == NULL)
    return n == klen && memcmp(k, key, klen) == 0;
  json_t *j = json_loadb(k - 1, n + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  size_t got = j ? json_string_length(j) : 0;
  bool same = j && got == klen && memcmp(json_string_value(j), key, klen) == 0;
  json_decref(j);
  return same;
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

/* The end of the string starting at p (on its opening quote). */
static const char *skip_string(const char *p, const char *end) {
  for (p++; p < end && *p != '"'; p++)
    if (*p == '\\')
      p++;
  return p < end ? p + 1 : end;
}

/* The end of the value starting at p. */
static const char *skip_value(const char *p, const char *end) {
  if (p < end && *p == '"')
    return skip_string(p, end);
  int depth = 0;
  for (; p < end; p++) {
    if (*p == '"') {
      p = skip_string(p, end) - 1;
    } else if (*p == '{' || *p == '[') {
      depth++;
    } else if (*p == '}' || *p == ']') {
      if (depth == 0)
        return p;
      if (--depth == 0)
        return p + 1;
    } else if (*p == ',' && depth == 0) {
      return p;
    }
  }
  return p;
}

/* The value's span without trailing white space. */
static span trimmed(const char *a, const char *b) {
  while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n' || b[-1] == '\r'))
    b--;
  return (span){a, (size_t)(b - a)};
}

bool json_member_span(const char *s, size_t len, const char *key, span *out) {
  const char *p = skip_ws(s, s + len), *end = s + len;
  if (p >= end || *p != '{')
    return false;
  p++;
  size_t klen = strlen(key);
  for (;;) {
    p = skip_ws(p, end);
    if (p >= end || *p != '"')
      return false;
    const char *k = p + 1, *kend = skip_string(p, end) - 1;
    p = skip_ws(kend + 1, end);
    if (p >= end || *p != ':')
      return false;
    const char *v = skip_ws(p + 1, end);
    const char *vend = skip_value(v, end);
    if (key_is(k, (size_t)(kend - k), key, klen)) {
      *out = trimmed(v, vend);
      return true;
    }
    p = skip_ws(vend, end);
    if (p >= end || *p != ',')
      return false;
    p++;
  }
}

void json_each_element(span a, bool (*each)(span el, size_t i, void *user),
                       void *user) {
  const char *p = a.p, *end = a.p + a.len;
  p = skip_ws(p, end);
  if (p >= end || *p != '[')
    return;
  p = skip_ws(p + 1, end);
  for (size_t i = 0; p < end && *p != ']'; i++) {
    const char *vend = skip_value(p, end);
    if (!each(trimmed(p, vend), i, user))
      return;
    p = skip_ws(vend, end);
    if (p < end && *p == ',')
      p = skip_ws(p + 1, end);
  }
}
