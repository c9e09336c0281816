/* get.c - one stored document with its chunks, by id.
 *
 * One statement reads the document and its chunks (a UNION ALL of the
 * document's row and its chunk rows), so they come from one snapshot, and
 * the workspace scope is part of its WHERE clause: a document outside the
 * scope is not found exactly as a missing one, with no second query that
 * could race a write between a check and a read.  Results are binary, so
 * vectors arrive as pgvector's binary form and timestamps as integers,
 * never as text shaped by DateStyle or TimeZone. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Row kinds of the statement: the document first, then its chunks. */
enum { ROW_DOC = 0, ROW_CHUNK = 1 };

/* Columns (es__document_take's, list.c's too): kind, id, text, metadata,
 * source_id, created_us, updated_us, chunk_index, embedding, chunk_set
 * (whether its chunk set's hash is stored).  $1 id, $2 include the vectors, $3 the scope (a
 * text[] or NULL).  extract(epoch ...) of a timestamptz does not depend on
 * the session's TimeZone, and is exact (numeric) in PostgreSQL 14+. */
static const char get_sql[] =
    "WITH d AS (SELECT e.id, e.text, e.metadata, e.source_id, e.created_at, "
    "e.updated_at, CASE WHEN $2::bool THEN e.embedding END AS embedding, "
    "e.chunks_hash IS NOT NULL AS chunk_set "
    "FROM embeddings e WHERE e.id = $1::text AND ($3::text[] IS NULL OR "
    "e.metadata->>'workspace' = ANY ($3::text[]))) "
    "SELECT 0::int4 AS kind, d.id, d.text, d.metadata::text, d.source_id, "
    "(extract(epoch FROM d.created_at) * 1000000)::int8, "
    "(extract(epoch FROM d.updated_at) * 1000000)::int8, "
    "NULL::int4 AS chunk_index, d.embedding, d.chunk_set FROM d "
    "UNION ALL "
    "SELECT 1, c.id, c.text, c.metadata::text, NULL, NULL, NULL, "
    "c.chunk_index, CASE WHEN $2::bool THEN c.embedding END, NULL "
    "FROM chunks c JOIN d ON c.document_id = d.id "
    "ORDER BY kind, chunk_index, id";

enum {
  COL_KIND, COL_ID, COL_TEXT, COL_META, COL_SOURCE, COL_CREATED, COL_UPDATED,
  COL_INDEX, COL_VECTOR, COL_CHUNK_SET
};

typedef struct get_ctx {
  const char *id;
  const es_get_options *o;
  char *scope;      /* the workspaces as a text[] literal, or NULL */
  es_document *doc; /* filled by the operation */
} get_ctx;

/* A big-endian integer of n bytes (PostgreSQL's binary int4 and int8). */
static int64_t be_int(const char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = (v << 8) | (unsigned char)p[i];
  return n == 4 ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v;
}

/* A copy of a text column of row i (binary text is its bytes), NULL for
 * SQL NULL; *oom set when a copy failed. */
static char *text_col(const PGresult *r, int i, int col, bool *oom) {
  if (PQgetisnull(r, i, col))
    return NULL;
  char *s = strdup(PQgetvalue(r, i, col));
  if (s == NULL)
    *oom = true;
  return s;
}

/* Decodes the vector column of row i into a malloc'd array (*vec NULL for
 * SQL NULL). */
static es_status vector_col(es_store *s, const PGresult *r, int i, int dim,
                            float **vec, size_t *n) {
  *vec = NULL;
  *n = 0;
  if (PQgetisnull(r, i, COL_VECTOR))
    return ES_OK;
  float *v = malloc((size_t)dim * sizeof *v);
  if (v == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  long got = es__vector_from_bin(PQgetvalue(r, i, COL_VECTOR),
                                 (size_t)PQgetlength(r, i, COL_VECTOR), v,
                                 (size_t)dim);
  if (got <= 0) {
    free(v);
    return es__fail(s, ES_EDB, "%s \"%s\" holds a malformed vector",
                    be_int(PQgetvalue(r, i, COL_KIND), 4) == ROW_DOC
                        ? "document" : "chunk", PQgetvalue(r, i, COL_ID));
  }
  *vec = v;
  *n = (size_t)got;
  return ES_OK;
}

/* Fills chunk ch from row i. */
static es_status take_chunk(es_store *s, const PGresult *r, int i, int dim,
                            es_document_chunk *ch) {
  bool oom = false;
  ch->id = text_col(r, i, COL_ID, &oom);
  ch->text = text_col(r, i, COL_TEXT, &oom);
  ch->metadata_json = text_col(r, i, COL_META, &oom);
  ch->chunk_index = (int)be_int(PQgetvalue(r, i, COL_INDEX), 4);
  if (oom)
    return es__fail(s, ES_ENOMEM, "out of memory");
  return vector_col(s, r, i, dim, &ch->embedding, &ch->dim);
}

int es__document_rows(const PGresult *r, int first) {
  int rows = PQntuples(r), end = first + 1;
  while (end < rows && be_int(PQgetvalue(r, end, COL_KIND), 4) == ROW_CHUNK)
    end++;
  return end - first;
}

es_status es__document_take(es_store *s, const PGresult *r, int first,
                            int rows, int dim, es_document *doc) {
  assert(rows > 0 && be_int(PQgetvalue(r, first, COL_KIND), 4) == ROW_DOC);
  bool oom = false;
  doc->id = text_col(r, first, COL_ID, &oom);
  doc->text = text_col(r, first, COL_TEXT, &oom);
  doc->metadata_json = text_col(r, first, COL_META, &oom);
  doc->source_id = text_col(r, first, COL_SOURCE, &oom);
  doc->created_at_us = be_int(PQgetvalue(r, first, COL_CREATED), 8);
  doc->updated_at_us = be_int(PQgetvalue(r, first, COL_UPDATED), 8);
  doc->chunk_set = PQgetvalue(r, first, COL_CHUNK_SET)[0] != 0;
  if (oom)
    return es__fail(s, ES_ENOMEM, "out of memory");
  es_status rc = vector_col(s, r, first, dim, &doc->embedding, &doc->dim);
  if (rc != ES_OK || rows == 1)
    return rc;
  doc->chunks = calloc((size_t)rows - 1, sizeof *doc->chunks);
  if (doc->chunks == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  for (int i = 1; rc == ES_OK && i < rows; i++) {
    doc->n_chunks++; /* counted first: es_document_free frees what is set */
    rc = take_chunk(s, r, first + i, dim, &doc->chunks[i - 1]);
  }
  return rc;
}

/* The read on a pooled connection. */
static es_status get_op(es_store *s, es__conn *c, void *arg) {
  get_ctx *g = arg;
  es_status rc = es__load_shape(s, c);
  if (rc != ES_OK)
    return rc;
  const char *v[3] = {g->id, g->o->include_embedding ? "t" : "f", g->scope};
  PGresult *r = PQexecParams(c->pg, get_sql, 3, NULL, v, NULL, NULL, 1);
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot read the document");
  else if (PQntuples(r) == 0)
    rc = es__fail(s, ES_ENOTFOUND, "no document with id \"%s\"", g->id);
  else if ((g->doc = calloc(1, sizeof *g->doc)) == NULL)
    rc = es__fail(s, ES_ENOMEM, "out of memory");
  else
    rc = es__document_take(s, r, 0, PQntuples(r), s->dim, g->doc);
  PQclear(r);
  if (rc != ES_OK) {
    es_document_free(g->doc); /* a retry starts afresh */
    g->doc = NULL;
  }
  return rc;
}

void es_get_options_init(es_get_options *options) {
  memset(options, 0, sizeof *options);
}

/* The nth workspace of a scope (for es__text_array). */
static const char *nth_string(const void *list, size_t i) {
  return ((const char *const *)list)[i];
}

/* Checks a workspace scope and builds its text[] literal (*literal NULL
 * when there is no scope).  Shared with delete.c. */
es_status es__scope_literal(es_store *s, const char *const *workspaces,
                            size_t n, char **literal) {
  *literal = NULL;
  if (workspaces == NULL)
    return ES_OK;
  for (size_t i = 0; i < n; i++) {
    if (workspaces[i] == NULL)
      return es__fail(s, ES_EINVAL, "workspaces[%zu] is NULL", i);
    if (es__utf8_invalid_at(workspaces[i], strlen(workspaces[i])) >= 0)
      return es__fail(s, ES_EINVAL, "workspaces[%zu] is not valid UTF-8", i);
  }
  *literal = es__text_array(workspaces, n, nth_string);
  return *literal ? ES_OK : es__fail(s, ES_ENOMEM, "out of memory");
}

es_status es_get_document(es_store *s, const char *id,
                          const es_get_options *options,
                          es_document **document) {
  if (document)
    *document = NULL;
  if (s == NULL || document == NULL)
    return s ? es__fail(s, ES_EINVAL, "document is NULL") : ES_EINVAL;
  es__clear_err(s);
  if (id == NULL || id[0] == '\0')
    return es__fail(s, ES_EINVAL, "a document id is required");
  long bad = es__utf8_invalid_at(id, strlen(id));
  if (bad >= 0)
    return es__fail(s, ES_EINVAL, "the document id is not valid UTF-8 (byte "
                    "%ld)", bad);
  es_get_options defaults;
  es_get_options_init(&defaults);
  get_ctx g = {id, options ? options : &defaults, NULL, NULL};
  es_status rc = es__scope_literal(s, g.o->workspaces, g.o->n_workspaces,
                                   &g.scope);
  if (rc == ES_OK)
    rc = es__run_read(s, "get_document", false, get_op, &g, NULL);
  free(g.scope);
  if (rc == ES_OK)
    *document = g.doc;
  return rc;
}

void es__document_clear(es_document *doc) {
  for (size_t i = 0; i < doc->n_chunks; i++) {
    free(doc->chunks[i].id);
    free(doc->chunks[i].text);
    free(doc->chunks[i].metadata_json);
    free(doc->chunks[i].embedding);
  }
  free(doc->chunks);
  free(doc->id);
  free(doc->text);
  free(doc->metadata_json);
  free(doc->source_id);
  free(doc->embedding);
}

void es_document_free(es_document *doc) {
  if (doc == NULL)
    return;
  es__document_clear(doc);
  free(doc);
}
