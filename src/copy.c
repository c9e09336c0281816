/* copy.c - binary COPY encoding and streaming.
 *
 * Binary COPY skips the server's text parsing of every float, which is
 * most of the cost of loading vectors. */
#include <arpa/inet.h>
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "copy.h"

static const char header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

/* Appends n bytes (remembering an out of memory). */
static inline void put(es__copy *c, const void *p, size_t n) {
  if (!c->oom && !es__buf_append(&c->buf, p, n))
    c->oom = true;
}

/* Appends a 32-bit integer in network byte order. */
static inline void put32(es__copy *c, int32_t v) {
  uint32_t be = htonl((uint32_t)v);
  put(c, &be, 4);
}

/* Empties the buffer and writes the binary COPY header. */
static void copy_start(es__copy *c) {
  c->buf.len = 0;
  c->oom = false;
  put(c, header, sizeof header - 1); /* signature, flags, extension length */
}

#define STREAM_CHUNK (1u << 20)

/* Sends what is buffered (streaming mode). */
static void flush_stream(es__copy *c) {
  if (c->buf.len == 0)
    return;
  if (!c->broken && PQputCopyData(c->stream, c->buf.data, (int)c->buf.len) != 1)
    c->broken = true;
  c->buf.len = 0;
}

/* Starts a row of nfields fields (streaming what is buffered first,
 * once it reaches STREAM_CHUNK). */
void es__copy_row(es__copy *c, int nfields) {
  assert(nfields > 0 && nfields <= UINT16_MAX);
  if (c->stream && c->buf.len >= STREAM_CHUNK)
    flush_stream(c);
  uint16_t be = htons((uint16_t)nfields);
  put(c, &be, 2);
}

/* Appends a NULL field. */
void es__copy_null(es__copy *c) { put32(c, -1); }

/* Appends a text field (NULL: a NULL field). */
void es__copy_text(es__copy *c, const char *s) {
  if (s == NULL) {
    es__copy_null(c);
    return;
  }
  size_t n = strlen(s);
  put32(c, (int32_t)n);
  put(c, s, n);
}

/* Appends an int4 field. */
void es__copy_int4(es__copy *c, int32_t v) {
  put32(c, 4);
  put32(c, v);
}

/* Appends a field of n raw bytes (bytea, bool). */
void es__copy_bytes(es__copy *c, const void *p, size_t n) {
  assert(p != NULL || n == 0);
  put32(c, (int32_t)n);
  put(c, p, n);
}

/* Appends a vector field in pgvector's binary form (NULL: NULL). */
void es__copy_vector(es__copy *c, const float *v, size_t dim) {
  if (v == NULL) {
    es__copy_null(c);
    return;
  }
  size_t n = es__vector_bin_size(dim);
  put32(c, (int32_t)n);
  if (c->oom || !es__buf_reserve(&c->buf, n)) {
    c->oom = true;
    return;
  }
  es__vector_to_bin(v, dim, c->buf.data + c->buf.len);
  c->buf.len += n;
}

/* Appends a jsonb field (NULL: {}). */
void es__copy_jsonb(es__copy *c, const char *json) {
  static const char version = 1; /* jsonb's binary format: 1, then text */
  if (json == NULL)
    json = "{}";
  size_t n = strlen(json);
  put32(c, (int32_t)(n + 1));
  put(c, &version, 1);
  put(c, json, n);
}

/* Appends the trailer that ends the data. */
static void copy_finish(es__copy *c) {
  uint16_t end = 0xFFFF;
  put(c, &end, 2);
}

/* Frees the buffer. */
void es__copy_free(es__copy *c) { es__buf_free(&c->buf); }

/* Collects COPY's result after the end of the data. */
static es_status copy_result(es_store *s, es__conn *conn, int64_t *rows) {
  es_status rc = ES_OK;
  PGresult *r;
  while ((r = PQgetResult(conn->pg)) != NULL) {
    if (!es__res_ok(r) && rc == ES_OK)
      rc = es__fail_pg(s, conn->pg, r, "COPY failed");
    else if (rows && es__res_ok(r))
      *rows = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
  }
  return rc;
}

/* Starts COPY FROM STDIN on conn and the stream's header. */
es_status es__copy_open(es_store *s, es__conn *conn, const char *sql,
                        es__copy *c) {
  assert(s != NULL && conn != NULL && sql != NULL && c != NULL && c->stream == NULL);
  PGresult *r = PQexec(conn->pg, sql);
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    es_status rc = es__fail_pg(s, conn->pg, r, "cannot start COPY");
    PQclear(r);
    return rc;
  }
  PQclear(r);
  copy_start(c);
  c->stream = conn->pg;
  c->broken = false;
  return ES_OK;
}

/* Ends the stream (aborting it when encoding ran out of memory) and
 * collects COPY's result; *rows (may be NULL) receives the rows copied. */
es_status es__copy_close(es_store *s, es__conn *conn, es__copy *c,
                         int64_t *rows) {
  assert(c->stream == conn->pg); /* opened on this connection */
  copy_finish(c);
  flush_stream(c);
  c->stream = NULL;
  /* An encoding failure aborts the COPY so that nothing half-made lands. */
  PQputCopyEnd(conn->pg, c->oom ? "out of memory encoding a batch" : NULL);
  es_status rc = copy_result(s, conn, rows);
  if (c->oom)
    return es__fail(s, ES_ENOMEM, "out of memory building a COPY batch");
  return rc;
}
