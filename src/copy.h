/* copy.h - PostgreSQL's binary COPY format, written into a buffer. */
#ifndef ES_COPY_H
#define ES_COPY_H

#include "internal.h"
#include "json.h"

/* A COPY stream being built.  Appends never fail individually: an out of
 * memory sets oom, checked once when the stream is sent. */
typedef struct es__copy {
  es__buf buf;
  bool oom;
  PGconn *stream; /* set between es__copy_open and es__copy_close */
  bool broken;    /* the connection refused data while streaming */
} es__copy;

/* Streaming: starts COPY (sql) on conn, so that rows are sent while later
 * ones are still being encoded (es__copy_row flushes every 1 MiB), and the
 * server works on the first rows while we encode the next.  Rows are then
 * appended as usual; es__copy_close ends the stream and reports. */
es_status es__copy_open(es_store *store, es__conn *conn, const char *sql,
                        es__copy *c);
es_status es__copy_close(es_store *store, es__conn *conn, es__copy *c,
                         int64_t *rows);
void es__copy_row(es__copy *c, int nfields);
void es__copy_null(es__copy *c);
void es__copy_text(es__copy *c, const char *s); /* NULL writes NULL */
void es__copy_int4(es__copy *c, int32_t v);
void es__copy_bytes(es__copy *c, const void *p, size_t n);
void es__copy_vector(es__copy *c, const float *v, size_t dim); /* NULL ok */
void es__copy_jsonb(es__copy *c, const char *json);            /* NULL: {} */
void es__copy_free(es__copy *c);

#endif
