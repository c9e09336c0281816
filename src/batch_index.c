/* batch_index.c - what a batch session does around its writes for the
 * store's indexes and statistics: the HNSW indexes (documents', chunks')
 * and the text search index dropped before a large load and rebuilt at
 * its end, indexes a killed load left missing mended,
 * ANALYZE after a load, and the counters' delta rows folded (see
 * batch_int.h). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_int.h"
#include "schema.h"

#define DEFER_INDEX_MIN 10000
#define DEFER_LOCK_WAIT_MS 2000

/* The definition of the store's HNSW index. */
static const es__index_def *hnsw_def(es_metric metric) {
  size_t n;
  const es__index_def *defs = es__required_indexes(metric, &n);
  for (size_t i = 0; i < n; i++)
    if (es__index_is_hnsw(&defs[i]))
      return &defs[i];
  assert(!"the required indexes include the HNSW index");
  return NULL;
}

/* Share of the first (up to 1,000) ids that are stored already. */
static double stored_share(es_batch *b, const es__item *it, size_t n) {
  size_t m = n < 1000 ? n : 1000;
  char *ids = m > 0 ? es__batch_ids(it, m) : NULL;
  double share = 1.0; /* when in doubt, do not drop the index */
  long long stored = ids ? es__batch_count_stored(b, ids) : -1;
  if (stored >= 0)
    share = (double)stored / (double)m;
  free(ids);
  return share;
}

/* Whether a load of total documents, the first n of them it, should build
 * the HNSW index afterwards (see es_defer_index). */
static bool worth_deferring(es_batch *b, const es__item *it, size_t n, size_t total) {
  if (b->opts.defer_index == ES_DEFER_NEVER)
    return false;
  if (b->opts.defer_index == ES_DEFER_ALWAYS)
    return true;
  if (total < DEFER_INDEX_MIN)
    return false;
  char lim[32];
  snprintf(lim, sizeof lim, "%zu", total + 1);
  const char *v[1] = {lim};
  PGresult *r = PQexecParams(b->conn->pg,
                             "SELECT count(*) FROM (SELECT 1 FROM embeddings "
                             "LIMIT $1::bigint) t",
                             1, NULL, v, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    PQclear(r);
    return false;
  }
  size_t existing = (size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  /* Rebuilding costs the whole table, inserting what is written: defer
   * only when the load at least doubles the store with new documents.  A
   * re-ingest (the first ids are mostly stored already) writes little. */
  return existing <= total && (existing == 0 || stored_share(b, it, n) <= 0.1);
}

/* Marks this session as one that owes the store its HNSW index: a shared
 * session-level advisory lock that dies with the session, so that a
 * missing index with no holder is known to be left by a killed load. */
static es_status hold_index_debt(es_batch *b) {
  es_status rc = es__exec(b->s, b->conn,
                          "SELECT pg_advisory_lock_shared(" ES__DEFER_LOCK ")",
                          "cannot take the deferred-index lock");
  if (rc == ES_OK)
    b->index_deferred = true;
  return rc;
}

/* Drops the HNSW index before a large load (see es_defer_index).  This is
 * only an optimisation: when the index cannot be dropped (a session holds
 * a lock on the table, no rights, ...), the load goes on with the index
 * maintained row by row and a note says why.  Waiting for the lock is
 * short, since a pending DROP INDEX would block every search meanwhile. */
void es__batch_maybe_defer_index(es_batch *b, const es__item *it, size_t n) {
  assert(b != NULL && it != NULL && n > 0);
  if (b->decided_index)
    return;
  b->decided_index = true;
  size_t total = b->opts.total > n ? b->opts.total : n;
  if (b->index_deferred || es__batch_conn(b) != ES_OK ||
      !worth_deferring(b, it, n, total))
    return;
  const es__index_def *def = hnsw_def(b->metric);
  es__index_state st;
  char *name = NULL;
  es__err saved = *es__last_err(b->s);
  es_status rc = es__index_lookup(b->s, b->conn, def, &st, &name);
  if (rc == ES_OK && st != ES__INDEX_MISSING) {
    char *q = PQescapeIdentifier(b->conn->pg, name, strlen(name));
    char drop[300], wait[64];
    snprintf(drop, sizeof drop, "DROP INDEX %s", q ? q : "\"\"");
    snprintf(wait, sizeof wait, "SET LOCAL lock_timeout = %d", DEFER_LOCK_WAIT_MS);
    PQfreemem(q);
    /* One statement at a time: Citus sends a DDL statement's own text to
     * the workers, where a string of several cannot run.  The text search
     * index goes too (its GIN is rebuilt far faster than it is maintained
     * row by row). */
    const char *const sql[] = {
        wait, drop, "DROP INDEX IF EXISTS embeddings_text_idx",
        "DROP INDEX IF EXISTS chunks_text_idx",
        "DROP INDEX IF EXISTS chunks_embedding_hnsw_idx",
        "SELECT pg_advisory_lock_shared(" ES__DEFER_LOCK ")"};
    size_t steps = sizeof sql / sizeof *sql, done = 0;
    rc = es__begin(b->s, b->conn);
    for (; rc == ES_OK && done < steps; done++)
      rc = es__exec(b->s, b->conn, sql[done], "cannot drop it");
    if (rc == ES_OK)
      rc = es__commit(b->s, b->conn);
    if (rc == ES_OK) {
      b->index_deferred = true;
    } else {
      es__explain_lock_wait(b->s, b->conn);
      snprintf(b->note, sizeof b->note, "the HNSW index was kept (built row "
               "by row during the load) because it could not be dropped: %s",
               es__last_err(b->s)->msg);
    }
    es__rollback(b->conn);
    /* A session-level lock outlives the rolled-back transaction that took
     * it: given back, or the pooled connection would keep claiming a
     * deferred load. */
    if (rc != ES_OK && done == steps && PQstatus(b->conn->pg) == CONNECTION_OK)
      PQclear(PQexec(b->conn->pg,
                     "SELECT pg_advisory_unlock_shared(" ES__DEFER_LOCK ")"));
  }
  free(name);
  *es__last_err(b->s) = saved;
}

/* The text search index after a deferred load, in a transaction of its
 * own; a failure leaves it to the next migrate (stats reports it) and a
 * note, never fails the load. */
static void build_text_index(es_batch *b) {
  es__err saved = *es__last_err(b->s);
  es_status rc = es__begin(b->s, b->conn);
  if (rc == ES_OK)
    rc = es__no_timeout(b->s, b->conn);
  if (rc == ES_OK)
    rc = es__exec(b->s, b->conn, ES__MIGRATE_LOCK, "cannot take the migration lock");
  if (rc == ES_OK)
    rc = es__build_text_index(b->s, b->conn, NULL);
  if (rc == ES_OK)
    rc = es__commit(b->s, b->conn);
  if (rc != ES_OK) {
    size_t len = strlen(b->note);
    snprintf(b->note + len, sizeof b->note - len, "%sthe text search index was "
             "not rebuilt (%s): `embstore migrate` builds it", len ? "; " : "",
             es__last_err(b->s)->msg);
  }
  es__rollback(b->conn);
  *es__last_err(b->s) = saved;
}

/* Builds the HNSW index after a deferred load, unless another session
 * built it meanwhile, and the text search index; under the migration
 * lock, so two sessions that owe them do not both build them. */
es_status es__batch_rebuild_index(es_batch *b) {
  assert(b != NULL && b->index_deferred);
  es_status rc = es__batch_conn(b);
  if (rc != ES_OK)
    return rc;
  rc = es__begin(b->s, b->conn);
  if (rc == ES_OK)
    rc = es__no_timeout(b->s, b->conn);
  if (rc == ES_OK)
    rc = es__exec(b->s, b->conn, ES__MIGRATE_LOCK, "cannot take the migration lock");
  int built = 0;
  es__build_watch watch = {&b->res.index, b->opts.phase, b->opts.user};
  if (rc == ES_OK)
    rc = es__ensure_indexes(b->s, b->conn, b->metric, false, &built, &watch);
  if (rc == ES_OK)
    rc = es__ensure_chunk_index(b->s, b->conn, b->metric, &built, NULL);
  if (rc == ES_OK)
    rc = es__commit(b->s, b->conn);
  if (rc == ES_OK) /* its own transaction: it can never undo the above */
    build_text_index(b);
  if (rc != ES_OK) {
    es__explain_lock_wait(b->s, b->conn);
    es__rollback(b->conn);
    return es__fail_wrap(b->s, rc, "the load landed but its HNSW index is "
                         "missing (searches scan exactly until it is built): "
                         "the next `embstore ingest` or `embstore migrate` "
                         "builds it");
  }
  PQclear(PQexec(b->conn->pg,
                 "SELECT pg_advisory_unlock_shared(" ES__DEFER_LOCK ")"));
  b->index_deferred = false;
  return ES_OK;
}

/* Repairs what a killed load may have left: required btree indexes are
 * built now; a missing HNSW index that no session is building becomes
 * this session's to build at the end (as if deferred).  Failures here do
 * not stop the load (stats keeps reporting what is missing). */
void es__batch_mend_indexes(es_batch *b) {
  assert(b != NULL && b->conn != NULL);
  const es__index_def *def = hnsw_def(b->metric);
  es__index_state st;
  es__err saved = *es__last_err(b->s);
  es_status rc = es__index_lookup(b->s, b->conn, def, &st, NULL);
  if (rc == ES_OK && st != ES__INDEX_OK && !es__deferred_load_running(b->s, b->conn))
    rc = hold_index_debt(b);
  char sql[160];
  snprintf(sql, sizeof sql, "BEGIN; SET LOCAL statement_timeout = 0; "
           "SET LOCAL lock_timeout = %d; %s", DEFER_LOCK_WAIT_MS, ES__MIGRATE_LOCK);
  if (rc == ES_OK && es__exec(b->s, b->conn, sql, "cannot take the migration "
                              "lock") == ES_OK &&
      es__ensure_indexes(b->s, b->conn, b->metric, true, NULL, NULL) == ES_OK)
    es__commit(b->s, b->conn);
  es__rollback(b->conn);
  *es__last_err(b->s) = saved;
}

/* Tells the phase callback how far ANALYZE is (0 or 1). */
static void tell_analysing(es_batch *b, double fraction) {
  if (b->opts.phase == NULL)
    return;
  es_phase_info info = {ES_PHASE_ANALYSING, fraction, 0, 0, NULL};
  b->opts.phase(&info, b->opts.user);
}

/* After a load, the planner needs statistics: ANALYZE a table that never
 * had any, or that this session changed by a tenth or more.  When both
 * need it, chunks is analysed on a second connection meanwhile (each
 * ANALYZE keeps one CPU busy).  Failures here do not fail the load
 * (autovacuum will analyse later). */
void es__batch_analyze(es_batch *b) {
  static const char *const sql[2] = {
      "BEGIN; SET LOCAL statement_timeout = 0; ANALYZE embeddings; COMMIT",
      "BEGIN; SET LOCAL statement_timeout = 0; ANALYZE chunks; COMMIT"};
  size_t written = b->res.inserted + b->res.updated + b->res.duplicates;
  if (written == 0 || es__batch_conn(b) != ES_OK)
    return;
  tell_analysing(b, 0);
  /* On Citus the shards hold the statistics (the coordinator's tables
   * are empty shells, never analysed): -1 when one of them has none. */
  PGresult *r = PQexec(
      b->conn->pg,
      b->distributed
          ? "SELECT t.rel, CASE WHEN min(x.result::float8) < 0 THEN -1 ELSE "
            "sum(x.result::float8) END FROM unnest(ARRAY['embeddings', "
            "'chunks']) t(rel), LATERAL run_command_on_shards(t.rel, "
            "$$SELECT reltuples FROM pg_class WHERE oid = '%s'::regclass$$) x "
            "WHERE x.success GROUP BY 1"
          : "SELECT relname, reltuples FROM pg_class WHERE oid IN "
            "(to_regclass('embeddings'), to_regclass('chunks'))");
  if (!es__res_ok(r)) {
    PQclear(r);
    return;
  }
  bool need[2] = {false, false};
  for (int i = 0; i < PQntuples(r); i++) {
    double tuples = es__strtod(PQgetvalue(r, i, 1), NULL);
    bool chunks = strcmp(PQgetvalue(r, i, 0), "chunks") == 0;
    double changed = chunks ? (double)b->res.chunks_written : (double)written;
    need[chunks] = tuples < 0 || changed >= 0.1 * tuples;
  }
  PQclear(r);
  es__conn *other = NULL;
  /* Not on Citus: there the chunks' ANALYZE beside the documents' fails
   * on the shards ("cannot execute a distributed query from a query on a
   * shard"); the workers do the work of each. */
  if (need[0] && need[1] && !b->distributed &&
      es__acquire_quiet(b->s, &other) == ES_OK) {
    if (PQsendQuery(other->pg, sql[1]))
      need[1] = false;
  }
  for (int t = 0; t < 2; t++)
    if (need[t]) {
      PQclear(PQexec(b->conn->pg, sql[t]));
      if (PQtransactionStatus(b->conn->pg) != PQTRANS_IDLE)
        PQclear(PQexec(b->conn->pg, "ROLLBACK"));
    }
  if (other != NULL) {
    while ((r = PQgetResult(other->pg)) != NULL)
      PQclear(r);
    es__release(b->s, other); /* closed if the ANALYZE failed mid-way */
  }
  tell_analysing(b, 1);
}

/* Folds the counters' delta rows (one per key and statement) so that
 * `stats` keeps summing few rows after long loads. */
void es__batch_compact_counts(es_batch *b) {
  assert(b != NULL && b->conn != NULL);
  PQclear(PQexec(b->conn->pg, "SELECT embstore_counts_compact()"));
  if (b->chunk_model) /* migration 9's counters exist */
    PQclear(PQexec(b->conn->pg, "SELECT embstore_model_counts_compact()"));
}
