/* recount.c - the counters checked against COUNT(*), and recounted.
 *
 * The counters are exact for every writer whose triggers fire.  A writer
 * that bypassed them (triggers disabled during a restore, a REPEATABLE
 * READ transaction moving documents while another adds their chunks) can
 * leave them wrong; `embstore stats` reports what it can see cheaply, and
 * this is the exact check: the counters and the tables are read in one
 * REPEATABLE READ snapshot, so they must agree to the row.  A repair
 * recomputes the counters with writers held off (SHARE locks, bounded by
 * lock_timeout like every lock wait). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "internal.h"

void es_count_check_free(es_count_check *c) {
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->n_drift; i++) {
    free(c->drift[i].source_id);
    free(c->drift[i].workspace);
  }
  free(c->drift);
  free(c);
}

/* Keys are compared as jsonb arrays: NULL and "" stay apart, and a FULL
 * JOIN needs a hashable condition. */
static const char drift_sql[] =
    "WITH a AS (SELECT jsonb_build_array(source_id, workspace) AS k, "
    "  source_id, workspace, sum(d) AS d, sum(c) AS c, sum(v) AS v FROM ("
    "  SELECT source_id, metadata->>'workspace' AS workspace, count(*) AS d, "
    "    0::bigint AS c, count(*) FILTER (WHERE embedding IS NULL) AS v "
    "  FROM embeddings GROUP BY 1, 2 "
    "  UNION ALL SELECT e.source_id, e.metadata->>'workspace', 0, count(*), 0 "
    "  FROM chunks ch JOIN embeddings e ON e.id = ch.document_id GROUP BY 1, 2"
    ") t GROUP BY 2, 3), "
    "k AS (SELECT jsonb_build_array(source_id, workspace) AS k, source_id, "
    "  workspace, sum(documents) AS d, sum(chunks) AS c, sum(without_vector) AS v "
    "  FROM embstore_counts GROUP BY 2, 3) "
    "SELECT coalesce(a.source_id, k.source_id), coalesce(a.workspace, k.workspace), "
    "  coalesce(k.d, 0), coalesce(a.d, 0), coalesce(k.c, 0), coalesce(a.c, 0), "
    "  coalesce(k.v, 0), coalesce(a.v, 0) "
    "FROM a FULL JOIN k ON a.k = k.k "
    "WHERE coalesce(k.d, 0) <> coalesce(a.d, 0) OR coalesce(k.c, 0) <> coalesce(a.c, 0) "
    "  OR coalesce(k.v, 0) <> coalesce(a.v, 0) "
    "ORDER BY 1 NULLS FIRST, 2 NULLS FIRST LIMIT 1000";

static const char totals_sql[] =
    "SELECT (SELECT count(*) FROM embeddings), (SELECT count(*) FROM chunks), "
    "(SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
    " WHERE e.id = c.document_id)), "
    "(SELECT coalesce(sum(all_chunks) - sum(chunks), 0) FROM embstore_counts)";

static char *dup_or_null(PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

/* Reads the drift rows and the totals into out (in the caller's snapshot). */
static es_status compare(es_store *s, es__conn *c, es_count_check *out) {
  PGresult *r = PQexec(c->pg, drift_sql);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot compare the counters");
    PQclear(r);
    return rc;
  }
  int n = PQntuples(r);
  out->drift = calloc(n > 0 ? (size_t)n : 1, sizeof *out->drift);
  if (out->drift == NULL) {
    PQclear(r);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    es_count_drift *d = &out->drift[out->n_drift++];
    d->source_id = dup_or_null(r, i, 0);
    d->workspace = dup_or_null(r, i, 1);
    int64_t *v[6] = {&d->documents_counted, &d->documents_actual,
                     &d->chunks_counted, &d->chunks_actual,
                     &d->without_vector_counted, &d->without_vector_actual};
    for (int k = 0; k < 6; k++)
      *v[k] = strtoll(PQgetvalue(r, i, 2 + k), NULL, 10);
  }
  PQclear(r);
  r = PQexec(c->pg, totals_sql);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot count the tables");
    PQclear(r);
    return rc;
  }
  out->documents = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  out->chunks = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  out->orphaned_chunks = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
  out->orphaned_counted = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
  PQclear(r);
  return ES_OK;
}

static void forget(es_count_check *out) {
  for (size_t i = 0; i < out->n_drift; i++) {
    free(out->drift[i].source_id);
    free(out->drift[i].workspace);
  }
  free(out->drift);
  memset(out, 0, sizeof *out);
}

typedef struct check_ctx {
  int repair;
  es_count_check *out;
} check_ctx;

static es_status check_op(es_store *s, es__conn *c, void *arg) {
  check_ctx *x = arg;
  forget(x->out);
  es_status rc = es__exec(s, c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                          "cannot begin a transaction");
  if (rc == ES_OK)
    rc = es__no_timeout(s, c);
  if (rc == ES_OK)
    rc = compare(s, c, x->out);
  es__rollback(c);
  bool wrong = x->out->n_drift > 0 ||
               x->out->orphaned_chunks != x->out->orphaned_counted;
  if (rc != ES_OK || !x->repair || !wrong)
    return rc;
  rc = es__begin(s, c);
  if (rc == ES_OK)
    rc = es__no_timeout(s, c);
  if (rc == ES_OK)
    rc = es__exec(s, c, "LOCK TABLE embeddings, chunks IN SHARE MODE",
                  "cannot hold writers off to recount");
  if (rc == ES_OK)
    rc = es__exec(s, c, "SELECT embstore_counts_recount()", "cannot recount");
  if (rc == ES_OK)
    rc = es__commit(s, c);
  es__rollback(c);
  if (rc == ES_OK)
    x->out->repaired = 1;
  return rc;
}

es_status es_check_counts(es_store *s, int repair, es_count_check **out) {
  if (out)
    *out = NULL; /* also when s is NULL: a failed call hands out nothing */
  if (s == NULL || out == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  es_count_check *c = calloc(1, sizeof *c);
  if (c == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  check_ctx x = {repair, c};
  es_status rc = es__run(s, repair ? "recount" : "verify_counts", true,
                         check_op, &x);
  if (rc != ES_OK) {
    es_count_check_free(c);
    return rc;
  }
  *out = c;
  return ES_OK;
}
