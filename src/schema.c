/* schema.c - the indexes and key a healthy store has, and how to find
 * them in the catalog whatever they are called (an adopted database may
 * already have them under other names). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

#define BTREE(name, table, cols)                                       \
  {name, table, "USING btree (" cols ")",                              \
   "CREATE INDEX " name " ON " table " (" cols ")", NULL}

#define HNSW(ops)                                                      \
  BTREE("embeddings_source_id_idx", "embeddings", "source_id"),        \
  BTREE("embeddings_created_at_idx", "embeddings", "created_at DESC"), \
  {"embeddings_workspace_idx", "embeddings",                           \
   "USING btree (((metadata ->> 'workspace'::text)))",                 \
   "CREATE INDEX embeddings_workspace_idx ON embeddings "              \
   "((metadata->>'workspace'))", NULL},                                \
  {"embeddings_metadata_idx", "embeddings",                            \
   "USING gin (metadata jsonb_path_ops)",                              \
   "CREATE INDEX embeddings_metadata_idx ON embeddings "               \
   "USING gin (metadata jsonb_path_ops)", NULL},                       \
  BTREE("chunks_document_id_idx", "chunks", "document_id"),            \
  BTREE("performance_metrics_operation_idx", "performance_metrics",    \
        "operation"),                                                  \
  BTREE("performance_metrics_created_at_idx", "performance_metrics",   \
        "created_at DESC"),                                            \
  {"embeddings_embedding_hnsw_idx", "embeddings",                      \
   "USING hnsw (embedding " ops ")",                                   \
   "CREATE INDEX embeddings_embedding_hnsw_idx ON embeddings "         \
   "USING hnsw (embedding " ops ")", "embedding"}

static const es__index_def cosine[] = {HNSW("vector_cosine_ops")};
static const es__index_def l2[] = {HNSW("vector_l2_ops")};
static const es__index_def ip[] = {HNSW("vector_ip_ops")};

es_status es__drop_index(es_store *s, es__conn *c, const char *name,
                         bool concurrently, const char *what) {
  char *q = PQescapeIdentifier(c->pg, name, strlen(name));
  char sql[256];
  snprintf(sql, sizeof sql, "DROP INDEX %s%s", concurrently ? "CONCURRENTLY " : "",
           q ? q : "\"\"");
  PQfreemem(q);
  return es__exec(s, c, sql, what);
}

/* Creates def's index when it is missing; replaces an invalid one (left
 * by a failed CREATE INDEX CONCURRENTLY: unusable).  HNSW indexes get a
 * build of their own (index_build.c). */
static es_status ensure_one(es_store *s, es__conn *c, const es__index_def *def,
                            int *created, const es__build_watch *watch) {
  es__index_state st;
  char *found = NULL;
  es_status rc = es__index_lookup(s, c, def, &st, &found);
  if (rc == ES_OK && st == ES__INDEX_INVALID) {
    rc = es__drop_index(s, c, found, false, "cannot drop an invalid index");
    st = ES__INDEX_MISSING;
  }
  free(found);
  if (rc == ES_OK && st == ES__INDEX_MISSING) {
    char what[128];
    snprintf(what, sizeof what, "cannot create index %s", def->name);
    rc = es__index_is_hnsw(def) ? es__build_hnsw(s, c, def, watch)
                                : es__exec(s, c, def->create, what);
    if (rc == ES_OK && created)
      (*created)++;
  }
  return rc;
}

#define CHUNK_HNSW(ops)                                                  \
  {"chunks_embedding_hnsw_idx", "chunks",                                \
   "USING hnsw (embedding " ops ") WHERE (embedding IS NOT NULL)",       \
   "CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw "        \
   "(embedding " ops ") WHERE embedding IS NOT NULL", "embedding"}

static const es__index_def chunk_hnsw[] = {CHUNK_HNSW("vector_cosine_ops"),
                                           CHUNK_HNSW("vector_l2_ops"),
                                           CHUNK_HNSW("vector_ip_ops")};

const es__index_def *es__chunk_index_def(es_metric metric) {
  return &chunk_hnsw[(unsigned)metric < 3 ? metric : 0];
}

es_status es__chunk_index_wanted(es_store *s, es__conn *c, bool *wanted) {
  /* to_jsonb: a store from before migration 8 has no such column. */
  PGresult *r = PQexec(c->pg, "SELECT coalesce((to_jsonb(m) ->> 'chunk_index')"
                              "::bool, false) FROM embstore_meta m");
  es_status rc = ES_OK;
  *wanted = false;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot read whether the store has a chunk "
                     "index");
  else if (PQntuples(r) == 1)
    *wanted = PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  return rc;
}

es_status es__ensure_chunk_index(es_store *s, es__conn *c, es_metric metric,
                                 int *created, const es__build_watch *watch) {
  bool wanted;
  es_status rc = es__chunk_index_wanted(s, c, &wanted);
  if (rc != ES_OK || !wanted)
    return rc;
  return ensure_one(s, c, es__chunk_index_def(metric), created, watch);
}

/* The index definitions a store of metric needs. */
const es__index_def *es__required_indexes(es_metric metric, size_t *n) {
  *n = sizeof cosine / sizeof cosine[0];
  switch (metric) {
  case ES_METRIC_L2:
    return l2;
  case ES_METRIC_IP:
    return ip;
  default:
    return cosine;
  }
}

/* Creates every required index that is missing; replaces invalid ones.
 * The HNSW index gets a build of its own (index_build.c). */
es_status es__ensure_indexes(es_store *s, es__conn *c, es_metric metric,
                             bool skip_hnsw, int *created,
                             const es__build_watch *watch) {
  size_t n;
  const es__index_def *defs = es__required_indexes(metric, &n);
  for (size_t i = 0; i < n; i++) {
    if (skip_hnsw && es__index_is_hnsw(&defs[i]))
      continue;
    es_status rc = ensure_one(s, c, &defs[i], created, watch);
    if (rc != ES_OK)
      return rc;
  }
  return ES_OK;
}

/* Whether def is the HNSW index. */
bool es__index_is_hnsw(const es__index_def *def) {
  return def->column != NULL;
}

/* Whether s ends with suffix. */
static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Finds an index of def's definition on its table, whatever its name
 * (the valid one first). */
es_status es__index_lookup(es_store *store, es__conn *conn,
                           const es__index_def *def, es__index_state *state,
                           char **found_name) {
  assert(store != NULL && conn != NULL && def != NULL && state != NULL);
  const char *params[1] = {def->table};
  PGresult *r = PQexecParams(
      conn->pg,
      "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid "
      "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
      "WHERE i.indrelid = to_regclass($1) ORDER BY i.indisvalid DESC, 1",
      1, NULL, params, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(store, conn->pg, r, "cannot list indexes");
    PQclear(r);
    return rc;
  }
  *state = ES__INDEX_MISSING;
  if (found_name)
    *found_name = NULL;
  for (int i = 0; i < PQntuples(r); i++) {
    if (!ends_with(PQgetvalue(r, i, 1), def->key))
      continue;
    *state = PQgetvalue(r, i, 2)[0] == 't' ? ES__INDEX_OK : ES__INDEX_INVALID;
    if (found_name && (*found_name = strdup(PQgetvalue(r, i, 0))) == NULL) {
      PQclear(r);
      return es__fail(store, ES_ENOMEM, "out of memory");
    }
    break;
  }
  PQclear(r);
  return ES_OK;
}

/* Reads the chunks -> embeddings key, if any (a validated one first). */
es_status es__fk_lookup(es_store *store, es__conn *conn, es__fk_state *fk) {
  PGresult *r = PQexec(
      conn->pg,
      "SELECT conname, convalidated, confdeltype = 'c' FROM pg_constraint "
      "WHERE contype = 'f' AND conrelid = to_regclass('chunks') "
      "AND confrelid = to_regclass('embeddings') ORDER BY convalidated DESC "
      "LIMIT 1");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(store, conn->pg, r, "cannot read the foreign key");
    PQclear(r);
    return rc;
  }
  memset(fk, 0, sizeof *fk);
  if (PQntuples(r) == 1) {
    fk->exists = true;
    fk->valid = PQgetvalue(r, 0, 1)[0] == 't';
    fk->cascade = PQgetvalue(r, 0, 2)[0] == 't';
    snprintf(fk->name, sizeof fk->name, "%s", PQgetvalue(r, 0, 0));
  }
  PQclear(r);
  return ES_OK;
}

/* Counts the chunks whose document does not exist. */
es_status es__count_orphan_chunks(es_store *store, es__conn *conn, int64_t *n) {
  PGresult *r = PQexec(conn->pg,
                       "SELECT count(*) FROM chunks c WHERE NOT EXISTS "
                       "(SELECT 1 FROM embeddings e WHERE e.id = c.document_id)");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(store, conn->pg, r, "cannot count orphaned chunks");
    PQclear(r);
    return rc;
  }
  *n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return ES_OK;
}

/* Counts the counters' triggers that exist and fire always. */
es_status es__count_triggers(es_store *store, es__conn *conn, int *enabled) {
  PGresult *r = PQexec(
      conn->pg,
      "SELECT CASE WHEN to_regclass('embstore_counts') IS NULL THEN 0 ELSE "
      "(SELECT count(*) FROM pg_trigger WHERE tgrelid IN "
      "(to_regclass('embeddings'), to_regclass('chunks')) AND tgenabled = 'A' "
      "AND tgname IN ('embstore_counts_docs_ins', 'embstore_counts_docs_del', "
      "'embstore_counts_docs_upd', 'embstore_counts_doc_chunks', "
      "'embstore_counts_truncate', 'embstore_counts_chunks_ins', "
      "'embstore_counts_chunks_del', 'embstore_counts_chunks_upd', "
      "'embstore_content_hash_stale')) END");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(store, conn->pg, r, "cannot read the triggers");
    PQclear(r);
    return rc;
  }
  *enabled = atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  return ES_OK;
}
