/* utf8.h - UTF-8 validation (utf8.c).  Internal to the library, and one of
 * the few helpers the tool compiles in as its own copy (cli/tool_utf8.h,
 * as curl's tool compiles curlx): so it depends on nothing but libc. */
#ifndef ES_UTF8_H
#define ES_UTF8_H

#include <stddef.h>

/* Offset of the first byte that is not part of valid UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or -1.  NUL
 * bytes are valid UTF-8 but rejected by callers that need C strings. */
long es__utf8_invalid_at(const char *s, size_t len);

/* Replaces bytes that are not valid UTF-8 with '?', in place. */
void es__utf8_scrub(char *s);

#endif
