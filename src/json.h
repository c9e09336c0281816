/* json.h - a small strict JSON (RFC 8259) reader for the ingest format.
 * Internal.  It reads straight into the shapes embstore needs (floats for
 * vectors, raw spans for metadata) instead of building a tree. */
#ifndef ES_JSON_H
#define ES_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "utf8.h"

/* Nesting deeper than this is refused: no real metadata needs it and it
 * bounds the parser's recursion. */
#define ES__JSON_MAX_DEPTH 64

typedef struct es__buf {
  char *data;
  size_t len, cap;
} es__buf;

bool es__buf_reserve(es__buf *b, size_t extra);
bool es__buf_append(es__buf *b, const char *s, size_t n);
void es__buf_free(es__buf *b);

typedef struct es__json {
  const char *start, *p, *end;
  char *err;
  size_t errlen;
  bool oom; /* the error recorded is an allocation failure */
} es__json;

void es__json_init(es__json *j, const char *s, size_t len, char *err,
                   size_t errlen);
/* Records an error "what (at byte N)" unless one is recorded; false. */
bool es__json_error(es__json *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Records "ctx: out of memory" like es__json_error and sets j->oom, so that
 * callers tell it from bad input; false. */
bool es__json_oom(es__json *j, const char *ctx);
/* Skips whitespace; returns the next byte or -1 at the end. */
int es__json_peek(es__json *j);
/* Consumes byte c after whitespace. */
bool es__json_eat(es__json *j, char c);
/* Consumes the literal (null, true, false) if it is next. */
bool es__json_literal(es__json *j, const char *lit);
/* Decodes a string into out (NUL-terminated; out->len excludes the NUL;
 * the content may hold NUL bytes from \u0000). ctx names the field. */
bool es__json_string(es__json *j, es__buf *out, const char *ctx);
/* Reads a number as a float (which may overflow to infinity). */
bool es__json_float(es__json *j, float *out, const char *ctx);
/* The same for element index of array ctx (named "ctx[index]" in errors). */
bool es__json_float_at(es__json *j, float *out, const char *ctx, size_t index);
/* Validates and skips any value, nested at most max_depth deep. */
bool es__json_skip(es__json *j, int depth, const char *ctx);

/* Checks that s (len bytes) is exactly one JSON object that PostgreSQL's
 * jsonb can store; errors start with ctx (the field's name). */
bool es__json_check_object(const char *s, size_t len, const char *ctx,
                           char *err, size_t errlen);
/* true when the JSON object s has top-level key (s must be valid). */
bool es__json_object_has_key(const char *s, size_t len, const char *key);

/* The JSON object s[0..len) as PostgreSQL's jsonb prints it, into out
 * (replacing what it held; NUL-terminated); false when s is not one valid
 * object or memory ran out (json_canon.c). */
bool es__json_canonical(const char *s, size_t len, es__buf *out);

/* Appends s as a JSON string literal (quotes and escapes) to out. */
bool es__json_append_string(es__buf *out, const char *s, size_t n);

#endif
