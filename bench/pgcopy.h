/* pgcopy.h - the benchmark's own byte buffer and PostgreSQL binary COPY
 * encoder, for the ceiling (raw COPY) and the naive baseline.
 *
 * Written from PostgreSQL's documentation of the binary COPY format and
 * pgvector's vector_send(), not taken from the library (src/copy.c): the
 * ceiling measures what COPY costs on its own, so it must not share the
 * code whose speed it bounds. */
#ifndef EMBSTORE_BENCH_PGCOPY_H
#define EMBSTORE_BENCH_PGCOPY_H

#include <stddef.h>
#include <stdint.h>

/* Bytes, always NUL-terminated after len (so SQL text can be sent as is).
 * Out of memory ends the benchmark. */
typedef struct pgbuf {
  char *data;
  size_t len, cap;
} pgbuf;

/* Appends n bytes of p. */
void pgbuf_add(pgbuf *b, const void *p, size_t n);
/* Appends the C string s. */
void pgbuf_str(pgbuf *b, const char *s);
void pgbuf_free(pgbuf *b);

/* The binary COPY stream: the header, then per row its field count and
 * each field, then the trailer. */
void pgcopy_header(pgbuf *b);
void pgcopy_row(pgbuf *b, int nfields);
void pgcopy_text(pgbuf *b, const char *s); /* NULL writes NULL */
void pgcopy_int4(pgbuf *b, int32_t v);
/* pgvector's binary form: int16 dim, int16 unused, dim big-endian float4. */
void pgcopy_vector(pgbuf *b, const float *v, size_t dim); /* NULL writes NULL */
/* jsonb's binary form: version 1, then the text.  NULL writes {}. */
void pgcopy_jsonb(pgbuf *b, const char *json);
void pgcopy_trailer(pgbuf *b);

#endif
