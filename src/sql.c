/* sql.c - prepared statements, execution helpers, array literals, and
 * the reader of the store's shape (embstore_meta). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <assert.h>

#include "internal.h"
#include "json.h"

typedef struct stmt {
  const char *name;
  const char *sql;
} stmt;

/* Every repeated statement of the library, prepared once per connection. */
static const stmt statements[ES__Q__COUNT] = {
    [ES__Q_SHAPE] = {"es_shape", "SELECT dim, metric FROM embstore_meta"},
    [ES__Q_VECTOR_VERSION] = {"es_vector_version",
                              "SELECT extversion FROM pg_extension "
                              "WHERE extname = 'vector'"},
    [ES__Q_GET_VECTOR] = {"es_get_vector",
                          "SELECT embedding FROM embeddings WHERE id = $1"},
    [ES__Q_DOC_HASH] = {"es_doc_hash",
                        "SELECT content_hash, chunks_hash, source_id "
                        "FROM embeddings WHERE id = $1 FOR UPDATE"},
    [ES__Q_UPSERT_DOC] =
        {"es_upsert_doc",
         "INSERT INTO embeddings AS e (id, text, embedding, metadata, "
         "source_id, content_hash, chunks_hash, model, updated_at) "
         "VALUES ($1, $2, $3::vector, $4::jsonb, $5, $6, $7, $8, now()) "
         "ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, "
         "embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata, "
         "model = EXCLUDED.model, "
         "source_id = EXCLUDED.source_id, "
         "content_hash = EXCLUDED.content_hash, "
         "chunks_hash = COALESCE(EXCLUDED.chunks_hash, e.chunks_hash), "
         "updated_at = EXCLUDED.updated_at "
         "RETURNING (xmax = 0)"},
    [ES__Q_CHUNK_OWNER] = {"es_chunk_owner",
                           "SELECT id, document_id FROM chunks "
                           "WHERE id = ANY ($1::text[]) AND document_id <> $2 "
                           "ORDER BY id LIMIT 1"},
    [ES__Q_METRICS_INSERT] =
        {"es_metrics_insert",
         "INSERT INTO performance_metrics (operation, duration_ms, success, "
         "error_message, metadata, created_at) SELECT o, us / 1000.0, ok, e, m, "
         "to_timestamp(0) + at_us * interval '1 microsecond' FROM unnest("
         "$1::text[], $2::int8[], $3::bool[], $4::text[], $5::jsonb[], "
         "$6::int8[]) AS t(o, us, ok, e, m, at_us)"},
    [ES__Q_METRICS_PRUNE] =
        {"es_metrics_prune",
         "DELETE FROM performance_metrics WHERE id IN (SELECT id FROM "
         "performance_metrics WHERE created_at < now() - make_interval(secs "
         "=> $1::int) LIMIT 100000)"},
    [ES__Q_BATCH_PROBE] = {"es_batch_probe",
                           "SELECT count(*) FROM embeddings "
                           "WHERE id = ANY ($1::text[])"},
    [ES__Q_BATCH_DROP_ORPHANS] = {"es_batch_drop_orphans",
                                  "DELETE FROM chunks WHERE document_id = "
                                  "ANY ($1::text[])"},
    [ES__Q_CHUNKS_PRUNE] = {"es_chunks_prune",
                            "DELETE FROM chunks WHERE document_id = $1 "
                            "AND id <> ALL ($2::text[])"},
    [ES__Q_CHUNK_UPSERT] =
        {"es_chunk_upsert",
         "INSERT INTO chunks AS c (id, document_id, chunk_index, text, "
         "embedding, metadata) "
         "VALUES ($1, $2, $3, $4, $5::vector, $6::jsonb) "
         "ON CONFLICT (id) DO UPDATE SET chunk_index = EXCLUDED.chunk_index, "
         "text = EXCLUDED.text, embedding = EXCLUDED.embedding, "
         "metadata = EXCLUDED.metadata "
         "WHERE c.document_id = EXCLUDED.document_id"},
    [ES__Q_CHUNK_UPSERT_DIST] =
        {"es_chunk_upsert_dist",
         "INSERT INTO chunks AS c (id, document_id, chunk_index, text, "
         "embedding, metadata) "
         "VALUES ($1, $2, $3, $4, $5::vector, $6::jsonb) "
         "ON CONFLICT (document_id, id) DO UPDATE SET chunk_index = "
         "EXCLUDED.chunk_index, text = EXCLUDED.text, embedding = "
         "EXCLUDED.embedding, metadata = EXCLUDED.metadata"},
};

/* Executes a prepared statement, preparing it first on this connection. */
PGresult *es__exec_stmt(es__conn *conn, es__stmt_id id, int nparams,
                        const char *const *values, const int *lengths,
                        const int *formats, int binary_result) {
  assert(conn != NULL && id >= 0 && id < ES__Q__COUNT && nparams >= 0);
  const stmt *s = &statements[id];
  if (!conn->prepared[id]) {
    PGresult *r = PQprepare(conn->pg, s->name, s->sql, 0, NULL);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
      return r;
    PQclear(r);
    conn->prepared[id] = 1;
  }
  return PQexecPrepared(conn->pg, s->name, nparams, values, lengths, formats,
                        binary_result);
}

/* Executes a statement prepared under a caller-chosen name and text (used
 * for the variants of search, whose text depends on metric and filters). */
PGresult *es__exec_named(es__conn *conn, int slot, const char *name,
                         const char *sql, int nparams,
                         const char *const *values, const int *lengths,
                         const int *formats, int binary_result) {
  assert(conn != NULL && slot >= ES__Q__COUNT && slot < ES__STMT_SLOTS);
  assert(name != NULL && sql != NULL && nparams >= 0);
  if (!conn->prepared[slot]) {
    PGresult *r = PQprepare(conn->pg, name, sql, 0, NULL);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
      return r;
    PQclear(r);
    conn->prepared[slot] = 1;
  }
  return PQexecPrepared(conn->pg, name, nparams, values, lengths, formats,
                        binary_result);
}

bool es__send_named(es__conn *conn, int slot, const char *name,
                    const char *sql, int nparams, const char *const *values,
                    const int *lengths, const int *formats, PGresult **failed) {
  assert(conn != NULL && slot >= ES__Q__COUNT && slot < ES__STMT_SLOTS);
  *failed = NULL;
  if (!conn->prepared[slot]) {
    PGresult *r = PQprepare(conn->pg, name, sql, 0, NULL);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
      *failed = r;
      return true; /* the failure is the answer */
    }
    PQclear(r);
    conn->prepared[slot] = 1;
  }
  return PQsendQueryPrepared(conn->pg, name, nparams, values, lengths, formats,
                             0) == 1;
}

/* true when res is a success. */
bool es__res_ok(const PGresult *res) {
  if (res == NULL)
    return false;
  ExecStatusType st = PQresultStatus(res);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Runs a parameterless command. */
es_status es__exec(es_store *store, es__conn *conn, const char *sql,
                   const char *what) {
  assert(store != NULL && conn != NULL && sql != NULL && what != NULL);
  PGresult *r = PQexec(conn->pg, sql);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(store, conn->pg, r, what);
  PQclear(r);
  return rc;
}

/* Runs a parameterless command and reports how many rows it affected. */
es_status es__exec_count(es_store *store, es__conn *conn, const char *sql,
                         const char *what, int64_t *rows) {
  assert(store != NULL && conn != NULL && sql != NULL && rows != NULL);
  PGresult *r = PQexec(conn->pg, sql);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(store, conn->pg, r, what);
  else
    *rows = strtoll(PQcmdTuples(r), NULL, 10);
  PQclear(r);
  return rc;
}

/* Starts a transaction. */
es_status es__begin(es_store *store, es__conn *conn) {
  /* On Citus the triggers run on the workers, which see the session's
   * embstore.writer only as a SET LOCAL that Citus passes on
   * (citus.propagate_set_commands = local, set for every connection). */
  pthread_mutex_lock(&store->shape_mu);
  bool dist = store->distributed == 2;
  pthread_mutex_unlock(&store->shape_mu);
  return es__exec(store, conn, dist ? "BEGIN; SET LOCAL embstore.writer = on" : "BEGIN",
                  "cannot begin a transaction");
}

/* Commits the transaction. */
es_status es__commit(es_store *store, es__conn *conn) {
  if (store->replica != NULL) /* read-your-writes needs its position */
    return es__replica_commit(store, conn);
  return es__exec(store, conn, "COMMIT", "cannot commit");
}

/* Lifts the statement timeout until the transaction ends. */
es_status es__no_timeout(es_store *store, es__conn *conn) {
  return es__exec(store, conn, "SET LOCAL statement_timeout = 0",
                  "cannot lift the statement timeout");
}

/* Rolls back whatever is open; failures do not matter (the connection is
 * discarded by es__release if it is not idle afterwards). */
void es__rollback(es__conn *conn) {
  if (PQtransactionStatus(conn->pg) == PQTRANS_IDLE)
    return;
  PQclear(PQexec(conn->pg, "ROLLBACK"));
}

/* Appends s to a PostgreSQL array literal being built in b, quoted, with
 * '"' and '\' escaped; NULL appends NULL.  first: no comma before it. */
bool es__array_elem(es__buf *b, const char *s, bool first) {
  if (!first && !es__buf_append(b, ",", 1))
    return false;
  if (s == NULL)
    return es__buf_append(b, "NULL", 4);
  if (!es__buf_append(b, "\"", 1))
    return false;
  while (*s) {
    size_t plain = strcspn(s, "\"\\");
    if (!es__buf_append(b, s, plain))
      return false;
    s += plain;
    if (*s && (!es__buf_append(b, "\\", 1) || !es__buf_append(b, s++, 1)))
      return false;
  }
  return es__buf_append(b, "\"", 1);
}

/* A text[] literal {"a","b",...} of nth(list, 0..n), malloc'd; NULL when
 * out of memory. */
char *es__text_array(const void *list, size_t n, es__nth_text nth) {
  assert(nth != NULL && (list != NULL || n == 0));
  es__buf b = {0};
  bool ok = es__buf_append(&b, "{", 1);
  for (size_t i = 0; ok && i < n; i++)
    ok = es__array_elem(&b, nth(list, i), i == 0);
  if (!ok || !es__buf_append(&b, "}", 1)) {
    es__buf_free(&b);
    return NULL;
  }
  return b.data;
}

/* Reads embstore_meta on conn into *state, *dim and *metric; a store
 * without the table, or with an empty one, is not an error here.  In the
 * caller's transaction, which a missing table must not abort: its
 * existence is asked first. */
es_status es__read_meta(es_store *store, es__conn *conn, es__meta_state *state,
                        int *dim, es_metric *metric) {
  assert(store != NULL && conn != NULL && state != NULL && dim != NULL &&
         metric != NULL);
  *state = ES__META_NONE;
  PGresult *r = PQexec(conn->pg, "SELECT to_regclass('embstore_meta') IS NOT NULL");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(store, conn->pg, r, "cannot read embstore_meta");
    PQclear(r);
    return rc;
  }
  bool exists = PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  if (!exists)
    return ES_OK;
  r = es__exec_stmt(conn, ES__Q_SHAPE, 0, NULL, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(store, conn->pg, r, "cannot read embstore_meta");
  else if (PQntuples(r) != 1)
    *state = ES__META_EMPTY;
  else if (es_metric_parse(PQgetvalue(r, 0, 1), metric) != ES_OK)
    rc = es__fail(store, ES_EDB, "embstore_meta holds an unknown metric '%s'",
                  PQgetvalue(r, 0, 1));
  else {
    *dim = atoi(PQgetvalue(r, 0, 0));
    *state = ES__META_FOUND;
  }
  PQclear(r);
  return rc;
}

/* Whether the server's pgvector is 0.8 or later (iterative index scans);
 * false when it cannot tell. */
static bool vector_0_8(es__conn *conn) {
  PGresult *r = es__exec_stmt(conn, ES__Q_VECTOR_VERSION, 0, NULL, NULL, NULL, 0);
  bool v08 = false;
  if (es__res_ok(r) && PQntuples(r) == 1) {
    int major = 0, minor = 0;
    sscanf(PQgetvalue(r, 0, 0), "%d.%d", &major, &minor);
    v08 = major > 0 || minor >= 8;
  }
  PQclear(r);
  return v08;
}

/* Reads the store's shape from embstore_meta, once per handle. */
es_status es__load_shape(es_store *store, es__conn *conn) {
  pthread_mutex_lock(&store->shape_mu);
  int loaded = store->dim != 0;
  pthread_mutex_unlock(&store->shape_mu);
  if (loaded)
    return ES_OK;

  es__meta_state state;
  int dim = 0;
  es_metric metric = ES_METRIC_COSINE;
  es_status rc = es__read_meta(store, conn, &state, &dim, &metric);
  if (rc != ES_OK)
    return rc;
  if (state == ES__META_NONE)
    return es__fail(store, ES_ENOSTORE, "no embstore store in this database: "
                    "run `embstore init --dim N` first");
  if (state == ES__META_EMPTY)
    return es__fail(store, ES_ENOSTORE,
                    "embstore_meta is empty: run `embstore init --dim N`");
  bool v08 = vector_0_8(conn);

  pthread_mutex_lock(&store->shape_mu);
  store->dim = dim;
  store->metric = metric;
  store->vector_0_8 = v08;
  pthread_mutex_unlock(&store->shape_mu);
  return ES_OK;
}

/* Asks once whether embeddings is a Citus table; the answer is kept: a
 * store is distributed for good, and a process that saw it plain sees it
 * distributed after its next open (docs/SCALING.md). */
bool es__distributed(es_store *store, es__conn *conn) {
  pthread_mutex_lock(&store->shape_mu);
  int known = store->distributed;
  pthread_mutex_unlock(&store->shape_mu);
  if (known)
    return known == 2;
  PGresult *r = PQexec(conn->pg, "SELECT to_regclass('pg_dist_partition') IS NOT NULL");
  bool citus = es__res_ok(r) && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
  bool ok = es__res_ok(r);
  PQclear(r);
  bool dist = false;
  if (ok && citus) {
    r = PQexec(conn->pg, "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE "
                         "logicalrelid = to_regclass('embeddings'))");
    ok = es__res_ok(r) && PQntuples(r) == 1;
    dist = ok && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
  }
  if (ok)
    es__set_distributed(store, dist);
  return dist;
}

void es__set_distributed(es_store *store, bool distributed) {
  pthread_mutex_lock(&store->shape_mu);
  store->distributed = distributed ? 2 : 1;
  pthread_mutex_unlock(&store->shape_mu);
}
