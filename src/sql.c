/* sql.c - prepared statements, execution helpers and the retry loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

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
         "source_id, content_hash, chunks_hash) "
         "VALUES ($1, $2, $3::vector, $4::jsonb, $5, $6, $7) "
         "ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, "
         "embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata, "
         "source_id = EXCLUDED.source_id, "
         "content_hash = EXCLUDED.content_hash, "
         "chunks_hash = COALESCE(EXCLUDED.chunks_hash, e.chunks_hash), "
         "updated_at = now() "
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
};

/* Executes a prepared statement, preparing it first on this connection. */
PGresult *es__exec_stmt(es__conn *conn, es__stmt_id id, int nparams,
                        const char *const *values, const int *lengths,
                        const int *formats, int binary_result) {
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
  PGresult *r = PQexec(conn->pg, sql);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(store, conn->pg, r, what);
  else
    *rows = strtoll(PQcmdTuples(r), NULL, 10);
  PQclear(r);
  return rc;
}

es_status es__begin(es_store *store, es__conn *conn) {
  return es__exec(store, conn, "BEGIN", "cannot begin a transaction");
}

es_status es__commit(es_store *store, es__conn *conn) {
  return es__exec(store, conn, "COMMIT", "cannot commit");
}

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

/* Sleeps for ms milliseconds. */
static void backoff(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Runs fn on a pooled connection, retrying transient failures. */
es_status es__run(es_store *store, const char *operation, bool retry,
                  es__op_fn fn, void *ctx) {
  int attempts = retry ? store->opts.max_retries + 1 : 1;
  int delay = store->opts.retry_backoff_ms > 0 ? store->opts.retry_backoff_ms : 1;
  es_status rc = ES_OK;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);

  for (int i = 0; i < attempts; i++) {
    es__conn *conn = NULL;
    if (i > 0) {
      backoff(delay);
      delay *= 2;
    }
    es__clear_err(store);
    rc = es__acquire(store, &conn);
    if (rc == ES_OK) {
      rc = fn(store, conn, ctx);
      es__rollback(conn);
      es__release(store, conn);
    }
    if (rc == ES_OK || !es__last_err(store)->transient)
      break;
  }
  if (operation != NULL) {
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 +
                (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    es__metric(store, operation, ms, rc == ES_OK,
               rc == ES_OK ? NULL : es__last_err(store)->msg, NULL);
  }
  return rc;
}

/* Reads the store's shape from embstore_meta, once per handle. */
es_status es__load_shape(es_store *store, es__conn *conn) {
  pthread_mutex_lock(&store->shape_mu);
  int loaded = store->dim != 0;
  pthread_mutex_unlock(&store->shape_mu);
  if (loaded)
    return ES_OK;

  PGresult *r = es__exec_stmt(conn, ES__Q_SHAPE, 0, NULL, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r)) {
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (st && strcmp(st, "42P01") == 0) /* undefined_table */
      rc = es__fail(store, ES_ENOSTORE,
                    "no embstore store in this database: run `embstore init "
                    "--dim N` first");
    else
      rc = es__fail_pg(store, conn->pg, r, "cannot read the store's shape");
    /* A failed PREPARE leaves the statement unprepared; forget the slot. */
    conn->prepared[ES__Q_SHAPE] = 0;
    PQclear(r);
    return rc;
  }
  if (PQntuples(r) != 1) {
    PQclear(r);
    return es__fail(store, ES_ENOSTORE,
                    "embstore_meta is empty: run `embstore init --dim N`");
  }
  int dim = atoi(PQgetvalue(r, 0, 0));
  es_metric metric;
  if (es_metric_parse(PQgetvalue(r, 0, 1), &metric) != ES_OK) {
    rc = es__fail(store, ES_EDB, "embstore_meta holds an unknown metric '%s'",
                  PQgetvalue(r, 0, 1));
    PQclear(r);
    return rc;
  }
  PQclear(r);

  int v08 = 0;
  r = es__exec_stmt(conn, ES__Q_VECTOR_VERSION, 0, NULL, NULL, NULL, 0);
  if (es__res_ok(r) && PQntuples(r) == 1) {
    int major = 0, minor = 0;
    sscanf(PQgetvalue(r, 0, 0), "%d.%d", &major, &minor);
    v08 = major > 0 || minor >= 8;
  }
  PQclear(r);

  pthread_mutex_lock(&store->shape_mu);
  store->dim = dim;
  store->metric = metric;
  store->vector_0_8 = v08;
  pthread_mutex_unlock(&store->shape_mu);
  return ES_OK;
}
