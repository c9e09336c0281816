/* vector.c - pgvector's text and binary representations.
 *
 * Binary (vector_send/vector_recv): int16 dim, int16 unused (0), then dim
 * float4 values, all in network byte order. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Bytes needed for the binary form of a dim-vector. */
size_t es__vector_bin_size(size_t dim) { return 4 + 4 * dim; }

/* Writes v in pgvector's binary form. */
void es__vector_to_bin(const float *v, size_t dim, char *out) {
  uint16_t d = htons((uint16_t)dim), unused = 0;
  memcpy(out, &d, 2);
  memcpy(out + 2, &unused, 2);
  for (size_t i = 0; i < dim; i++) {
    uint32_t bits;
    memcpy(&bits, &v[i], 4);
    bits = htonl(bits);
    memcpy(out + 4 + 4 * i, &bits, 4);
  }
}

/* Reads pgvector's binary form into out (capacity cap values). */
long es__vector_from_bin(const char *in, size_t len, float *out, size_t cap) {
  uint16_t d;
  if (len < 4)
    return -1;
  memcpy(&d, in, 2);
  size_t dim = ntohs(d);
  if (len != es__vector_bin_size(dim) || dim > cap)
    return -1;
  for (size_t i = 0; i < dim; i++) {
    uint32_t bits;
    memcpy(&bits, in + 4 + 4 * i, 4);
    bits = ntohl(bits);
    memcpy(&out[i], &bits, 4);
  }
  return (long)dim;
}

/* Formats one float with the fewest digits that read back exactly. */
static int format_float(char *buf, size_t cap, float v) {
  int n = 0;
  for (int prec = 6; prec <= 9; prec++) {
    n = snprintf(buf, cap, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v)
      break;
  }
  return n;
}

/* Formats v as "[a,b,...]". */
char *es__vector_to_text(const float *v, size_t dim) {
  size_t cap = 2 + dim * 17 + 1, len = 0;
  char *out = malloc(cap);
  if (out == NULL)
    return NULL;
  out[len++] = '[';
  for (size_t i = 0; i < dim; i++) {
    if (i > 0)
      out[len++] = ',';
    len += (size_t)format_float(out + len, cap - len, v[i]);
  }
  out[len++] = ']';
  out[len] = '\0';
  return out;
}

/* Parses "[a, b, ...]" (pgvector's text form). */
long es__vector_from_text(const char *in, float *out, size_t cap) {
  const char *p = in;
  size_t n = 0;
  while (*p == ' ' || *p == '\t' || *p == '\n')
    p++;
  if (*p++ != '[')
    return -1;
  while (*p == ' ' || *p == '\t' || *p == '\n')
    p++;
  if (*p == ']') {
    p++;
  } else {
    for (;;) {
      char *end;
      errno = 0;
      float f = strtof(p, &end);
      if (end == p)
        return -1;
      if (n == cap)
        return -2;
      out[n++] = f;
      p = end;
      while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
      if (*p == ',') {
        p++;
        continue;
      }
      if (*p++ != ']')
        return -1;
      break;
    }
  }
  while (*p == ' ' || *p == '\t' || *p == '\n')
    p++;
  return *p == '\0' ? (long)n : -1;
}

/* Index of the first NaN or infinity in v, or -1. */
long es__vector_first_nonfinite(const float *v, size_t dim) {
  for (size_t i = 0; i < dim; i++)
    if (!isfinite(v[i]))
      return (long)i;
  return -1;
}
