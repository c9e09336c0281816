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
#include "json.h"

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

/* Reads pgvector's binary form into out (capacity cap values), refusing
 * what pgvector's vector_recv refuses: a non-zero unused field, no
 * values, values that are not finite. */
long es__vector_from_bin(const char *in, size_t len, float *out, size_t cap) {
  uint16_t d, unused;
  if (len < 4)
    return -1;
  memcpy(&d, in, 2);
  memcpy(&unused, in + 2, 2);
  size_t dim = ntohs(d);
  if (unused != 0 || dim == 0 || len != es__vector_bin_size(dim) || dim > cap)
    return -1;
  for (size_t i = 0; i < dim; i++) {
    uint32_t bits;
    memcpy(&bits, in + 4 + 4 * i, 4);
    bits = ntohl(bits);
    memcpy(&out[i], &bits, 4);
  }
  return es__vector_first_nonfinite(out, dim) < 0 ? (long)dim : -1;
}

/* Formats one float with the fewest digits that read back exactly. */
static int format_float(char *buf, size_t cap, float v) {
  int n = 0;
  for (int prec = 6; prec <= 9; prec++) {
    n = es__snprintf_c(buf, cap, "%.*g", prec, (double)v);
    if (es__strtof(buf, NULL) == v)
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

/* Parses "[a, b, ...]": JSON numbers, all finite (what pgvector's text
 * form and the ingest format both accept). */
long es__vector_from_text(const char *in, float *out, size_t cap) {
  es__json j;
  char err[8];
  size_t n = 0;
  es__json_init(&j, in, strlen(in), err, sizeof err);
  if (!es__json_eat(&j, '['))
    return -1;
  if (!es__json_eat(&j, ']')) {
    for (;;) {
      float f;
      if (n == cap)
        return -2;
      if (!es__json_float(&j, &f, "v") || !isfinite(f))
        return -1;
      out[n++] = f;
      if (es__json_eat(&j, ','))
        continue;
      if (!es__json_eat(&j, ']'))
        return -1;
      break;
    }
  }
  return es__json_peek(&j) == -1 ? (long)n : -1;
}

/* Index of the first NaN or infinity in v, or -1. */
long es__vector_first_nonfinite(const float *v, size_t dim) {
  for (size_t i = 0; i < dim; i++)
    if (!isfinite(v[i]))
      return (long)i;
  return -1;
}

bool es__vector_zero_norm(const float *v, size_t dim) {
  float norm = 0.0f;
  for (size_t i = 0; i < dim; i++)
    norm += v[i] * v[i];
  return norm == 0.0f;
}
