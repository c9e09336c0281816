/* list.c - documents a page at a time, by id, and the metadata filter
 * that listing, search and delete share.
 *
 * A page is one statement: the page's documents (WHERE id > after ...
 * ORDER BY id LIMIT n, which the primary key serves) and, when asked,
 * their chunks, as get.c's rows, so a page is one snapshot.  Paging is by
 * keyset, never by offset: a page starts after the last id read, so
 * documents inserted or deleted meanwhile shift nothing, and a walk sees
 * every document that exists throughout exactly once.  Filters are
 * parameters: a filter is jsonb containment (metadata @> $filter), which
 * the GIN index embeddings_metadata_idx serves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json.h"

#define MAX_LIMIT 10000

es_status es_filter_check(const char *json, size_t len, const char *name,
                          char *err, size_t errlen) {
  char none[8];
  if (err == NULL || errlen == 0) {
    err = none;
    errlen = sizeof none;
  }
  err[0] = '\0';
  if (json == NULL) {
    snprintf(err, errlen, "%s is NULL", name ? name : "filter");
    return ES_EINVAL;
  }
  return es__json_check_object(json, len, name ? name : "filter", err, errlen)
             ? ES_OK : ES_EINVAL;
}

es_status es__check_filter(es_store *s, const char *filter_json) {
  char err[256];
  if (filter_json == NULL)
    return ES_OK;
  if (es_filter_check(filter_json, strlen(filter_json), "filter", err,
                      sizeof err) != ES_OK)
    return es__fail(s, ES_EINVAL, "%s", err);
  return ES_OK;
}

/* Columns as get.c's (es__document_take).  $1 after, $2 limit, $3 source,
 * $4 workspace, $5 filter, $6 scope (text[]), $7 chunks, $8 vectors. */
static const char list_sql[] =
    "WITH d AS (SELECT e.id, e.text, e.metadata, e.source_id, e.created_at, "
    "e.updated_at, CASE WHEN $8::bool THEN e.embedding END AS embedding, "
    "e.chunks_hash IS NOT NULL AS chunk_set FROM embeddings e WHERE ($1::text IS NULL OR e.id > $1::text) "
    "AND ($3::text IS NULL OR e.source_id = $3::text) "
    "AND ($4::text IS NULL OR e.metadata->>'workspace' = $4::text) "
    "AND ($5::jsonb IS NULL OR e.metadata @> $5::jsonb) "
    "AND ($6::text[] IS NULL OR e.metadata->>'workspace' = ANY ($6::text[])) "
    "ORDER BY e.id LIMIT $2::int4) "
    "SELECT 0::int4 AS kind, d.id, d.text, d.metadata::text, d.source_id, "
    "(extract(epoch FROM d.created_at) * 1000000)::int8, "
    "(extract(epoch FROM d.updated_at) * 1000000)::int8, "
    "NULL::int4 AS chunk_index, d.embedding, d.chunk_set, d.id AS doc FROM d "
    "UNION ALL "
    "SELECT 1, c.id, c.text, c.metadata::text, NULL, NULL, NULL, "
    "c.chunk_index, CASE WHEN $8::bool THEN c.embedding END, NULL, d.id "
    "FROM chunks c JOIN d ON c.document_id = d.id WHERE $7::bool "
    "ORDER BY doc, kind, chunk_index, id";

typedef struct list_ctx {
  const es_list_params *p;
  char *scope;
  es_document_list *out;
} list_ctx;

static void clear(es_document_list *l) {
  for (size_t i = 0; i < l->n; i++)
    es__document_clear(&l->documents[i]);
  free(l->documents);
  free(l->next_after);
  memset(l, 0, sizeof *l);
}

static es_status list_op(es_store *s, es__conn *c, void *arg) {
  list_ctx *g = arg;
  const es_list_params *p = g->p;
  clear(g->out); /* a retry starts afresh */
  es_status rc = es__load_shape(s, c);
  if (rc != ES_OK)
    return rc;
  char limit[16];
  snprintf(limit, sizeof limit, "%d", p->limit);
  const char *v[8] = {p->after, limit, p->source_id, p->workspace,
                      p->filter_json, g->scope, p->include_chunks ? "t" : "f",
                      p->include_embedding ? "t" : "f"};
  PGresult *r = PQexecParams(c->pg, list_sql, 8, NULL, v, NULL, NULL, 1);
  if (!es__res_ok(r)) {
    rc = es__fail_pg(s, c->pg, r, "cannot list the documents");
    PQclear(r);
    return rc;
  }
  int rows = PQntuples(r);
  g->out->documents = calloc((size_t)p->limit, sizeof *g->out->documents);
  if (g->out->documents == NULL)
    rc = es__fail(s, ES_ENOMEM, "out of memory");
  for (int i = 0; rc == ES_OK && i < rows;) {
    int n = es__document_rows(r, i);
    rc = es__document_take(s, r, i, n, s->dim,
                           &g->out->documents[g->out->n++]);
    i += n;
  }
  if (rc == ES_OK && g->out->n == (size_t)p->limit &&
      (g->out->next_after = strdup(g->out->documents[g->out->n - 1].id)) == NULL)
    rc = es__fail(s, ES_ENOMEM, "out of memory");
  PQclear(r);
  return rc;
}

void es_list_params_init(es_list_params *params) {
  memset(params, 0, sizeof *params);
  params->limit = 100;
}

/* Checks an optional id-like string parameter. */
static es_status check_text(es_store *s, const char *v, const char *name) {
  if (v == NULL)
    return ES_OK;
  long bad = es__utf8_invalid_at(v, strlen(v));
  if (bad >= 0)
    return es__fail(s, ES_EINVAL, "%s is not valid UTF-8 (byte %ld)", name, bad);
  return ES_OK;
}

es_status es_list_documents(es_store *s, const es_list_params *p,
                            es_document_list **list) {
  if (list)
    *list = NULL;
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  if (p == NULL || list == NULL)
    return es__fail(s, ES_EINVAL, "%s is NULL", p ? "list" : "params");
  if (p->limit < 1 || p->limit > MAX_LIMIT)
    return es__fail(s, ES_EINVAL, "limit must be 1..%d, not %d", MAX_LIMIT,
                    p->limit);
  es_status rc = check_text(s, p->after, "after");
  if (rc == ES_OK)
    rc = check_text(s, p->source_id, "source");
  if (rc == ES_OK)
    rc = check_text(s, p->workspace, "workspace");
  if (rc == ES_OK)
    rc = es__check_filter(s, p->filter_json);
  list_ctx g = {p, NULL, calloc(1, sizeof *g.out)};
  if (rc == ES_OK && g.out == NULL)
    rc = es__fail(s, ES_ENOMEM, "out of memory");
  if (rc == ES_OK)
    rc = es__scope_literal(s, p->workspaces, p->n_workspaces, &g.scope);
  if (rc == ES_OK)
    rc = es__run_read(s, "list", false, list_op, &g, NULL);
  free(g.scope);
  if (rc != ES_OK) {
    es_document_list_free(g.out);
    return rc;
  }
  *list = g.out;
  return ES_OK;
}

void es_document_list_free(es_document_list *list) {
  if (list == NULL)
    return;
  clear(list);
  free(list);
}
