/* pgcopy.c - the benchmark's binary COPY encoder (see pgcopy.h). */
#include "pgcopy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for n more bytes and the NUL. */
static void reserve(pgbuf *b, size_t n) {
  if (b->len + n + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n + 1)
    cap *= 2;
  char *d = realloc(b->data, cap);
  if (d == NULL) {
    fprintf(stderr, "bench: out of memory\n");
    exit(1);
  }
  b->data = d;
  b->cap = cap;
}

void pgbuf_add(pgbuf *b, const void *p, size_t n) {
  reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void pgbuf_str(pgbuf *b, const char *s) { pgbuf_add(b, s, strlen(s)); }

void pgbuf_free(pgbuf *b) {
  free(b->data);
  *b = (pgbuf){0};
}

/* Appends a big-endian int16 / int32. */
static void put16(pgbuf *b, int v) {
  uint16_t be = htons((uint16_t)v);
  pgbuf_add(b, &be, 2);
}

static void put32(pgbuf *b, int32_t v) {
  uint32_t be = htonl((uint32_t)v);
  pgbuf_add(b, &be, 4);
}

void pgcopy_header(pgbuf *b) {
  /* signature (11 bytes), flags (int32 0), header extension length (0) */
  static const char sig[] = "PGCOPY\n\377\r\n";
  pgbuf_add(b, sig, 11);
  put32(b, 0);
  put32(b, 0);
}

void pgcopy_row(pgbuf *b, int nfields) { put16(b, nfields); }

void pgcopy_text(pgbuf *b, const char *s) {
  if (s == NULL) {
    put32(b, -1);
    return;
  }
  size_t n = strlen(s);
  put32(b, (int32_t)n);
  pgbuf_add(b, s, n);
}

void pgcopy_int4(pgbuf *b, int32_t v) {
  put32(b, 4);
  put32(b, v);
}

void pgcopy_vector(pgbuf *b, const float *v, size_t dim) {
  if (v == NULL) {
    put32(b, -1);
    return;
  }
  put32(b, (int32_t)(4 + 4 * dim));
  put16(b, (int)dim);
  put16(b, 0);
  reserve(b, 4 * dim); /* then written in place: this is the hot loop */
  char *out = b->data + b->len;
  for (size_t i = 0; i < dim; i++) {
    uint32_t bits;
    memcpy(&bits, &v[i], 4);
    bits = htonl(bits);
    memcpy(out + 4 * i, &bits, 4);
  }
  b->len += 4 * dim;
  b->data[b->len] = '\0';
}

void pgcopy_jsonb(pgbuf *b, const char *json) {
  static const char version = 1;
  if (json == NULL)
    json = "{}";
  size_t n = strlen(json);
  put32(b, (int32_t)(n + 1));
  pgbuf_add(b, &version, 1);
  pgbuf_add(b, json, n);
}

void pgcopy_trailer(pgbuf *b) { put16(b, -1); }
