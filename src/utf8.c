/* utf8.c - UTF-8 validation (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
#include <string.h>

#include "utf8.h" /* nothing else: the tool compiles this file too */

/* Returns the offset of the first invalid byte, or -1 when s is valid. */
long es__utf8_invalid_at(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0)
        lo = 0xA0; /* overlong */
      else if (c == 0xED)
        hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0)
        lo = 0x90; /* overlong */
      else if (c == 0xF4)
        hi = 0x8F; /* above U+10FFFF */
    } else {
      return (long)i;
    }
    if (len - i <= n) /* truncated sequence */
      return (long)i;
    if (p[i + 1] < lo || p[i + 1] > hi)
      return (long)i;
    for (size_t k = 2; k <= n; k++)
      if ((p[i + k] & 0xC0) != 0x80)
        return (long)i;
    i += n + 1;
  }
  return -1;
}

/* Replaces every byte that is not part of valid UTF-8 with '?', in place:
 * messages cut at a fixed width, or quoting bad input, stay printable and
 * keep JSON output valid. */
void es__utf8_scrub(char *s) {
  size_t len = strlen(s), off = 0;
  long bad;
  while (off < len && (bad = es__utf8_invalid_at(s + off, len - off)) >= 0) {
    s[off + (size_t)bad] = '?';
    off += (size_t)bad + 1;
  }
}
