/* json_spans.h - where values lie in a JSON text that a parser (jansson)
 * has already accepted, so that the library's own readers see the very
 * bytes the client sent: vectors and documents are then read exactly as
 * the tool reads them (each float the nearest to its decimal). */
#ifndef EMBSTORE_JSON_SPANS_H
#define EMBSTORE_JSON_SPANS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct span {
  const char *p;
  size_t len;
} span;

/* The value of member key of the top-level object of the valid JSON text
 * s[0..len); false when it has none. */
bool json_member_span(const char *s, size_t len, const char *key, span *out);
/* The elements of the array at a (a valid JSON array): calls each(element
 * span, its index, user) in order; stops when each returns false. */
void json_each_element(span a, bool (*each)(span el, size_t i, void *user),
                       void *user);

#endif
