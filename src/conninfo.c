/* conninfo.c - helpers for libpq connection strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Quotes value for a key=value connection string: 'it''s' style is not
 * libpq's; it wants backslash escapes inside single quotes. */
char *es__conninfo_quote(const char *value) {
  size_t n = strlen(value);
  char *out = malloc(2 * n + 3);
  if (out == NULL)
    return NULL;
  char *p = out;
  *p++ = '\'';
  for (const char *s = value; *s; s++) {
    if (*s == '\'' || *s == '\\')
      *p++ = '\\';
    *p++ = *s;
  }
  *p++ = '\'';
  *p = '\0';
  return out;
}

/* Rebuilds conninfo as key=value pairs with the password masked, so that
 * it can appear in messages and logs. */
char *es__conninfo_redact(const char *conninfo) {
  char *errmsg = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
  if (opts == NULL) {
    PQfreemem(errmsg);
    return NULL;
  }
  size_t cap = 64, len = 0;
  char *out = malloc(cap);
  if (out == NULL)
    goto done;
  out[0] = '\0';
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
    if (o->val == NULL)
      continue;
    int secret = strcmp(o->keyword, "password") == 0;
    char *q = es__conninfo_quote(secret ? "***" : o->val);
    if (q == NULL) {
      free(out);
      out = NULL;
      goto done;
    }
    size_t need = len + strlen(o->keyword) + strlen(q) + 3;
    if (need > cap) {
      while (cap < need)
        cap *= 2;
      char *grown = realloc(out, cap);
      if (grown == NULL) {
        free(q);
        free(out);
        out = NULL;
        goto done;
      }
      out = grown;
    }
    len += (size_t)sprintf(out + len, "%s%s=%s", len ? " " : "", o->keyword, q);
    free(q);
  }
done:
  PQconninfoFree(opts);
  return out;
}
