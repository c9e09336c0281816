/* cleanup.c - remove what broken pipelines left behind.
 *
 * Orphans are chunks whose document does not exist (possible only while
 * the foreign key is NOT VALID, in adopted databases) and documents without
 * a vector older than a grace period (younger ones may still be being
 * embedded).  Everything found is deleted in batches, each its own short
 * transaction, walking the primary key so that no batch rescans what the
 * previous ones looked at.  Then VACUUM (ANALYZE) on what changed, and the
 * foreign key is validated once no orphaned chunk is left. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

void es_cleanup_options_init(es_cleanup_options *o) {
  memset(o, 0, sizeof *o);
  o->batch_size = 1000;
  o->min_age_s = 3600;
}

void es_cleanup_result_free(es_cleanup_result *r) {
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->n_details; i++)
    free(r->details[i]);
  free(r->details);
  free(r);
}

typedef struct cleanup_ctx {
  const es_cleanup_options *o;
  es_cleanup_result *r;
  bool counted;    /* totals found (by the first attempt) */
  /* Documents without a vector created before this are stale: a
   * timestamptz in PostgreSQL's binary form (microseconds since 2000),
   * so that no DateStyle or TimeZone can change it on the way back. */
  char cutoff[8];
  /* what all attempts deleted (a retry continues where one stopped) */
  int64_t batches, chunks_gone, docs_gone, kids;
  bool lost; /* a detail could not be recorded (out of memory) */
} cleanup_ctx;

/* Adds a sentence to the result's details. */
static void detail(cleanup_ctx *x, const char *fmt, ...) ES__PRINTF(2, 3);
static void detail(cleanup_ctx *x, const char *fmt, ...) {
  es_cleanup_result *r = x->r;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  char **g = realloc(r->details, (r->n_details + 1) * sizeof *r->details);
  if (g != NULL)
    r->details = g;
  if (g == NULL || (r->details[r->n_details] = strdup(buf)) == NULL) {
    x->lost = true;
    return;
  }
  r->n_details++;
}

/* Deletes one batch with sql ($1 = after this id, $2 = limit, $3 = cutoff)
 * in its own transaction; *last receives the batch's greatest id ("" when
 * the batch was empty), *rows the rows deleted, *cascaded chunks deleted
 * with documents. */
static es_status delete_batch(es_store *s, es__conn *c, const char *sql,
                              const char *after, const char *limit,
                              const char *cutoff, char *last, size_t cap,
                              int64_t *rows, int64_t *cascaded) {
  const char *v[3] = {after, limit, cutoff};
  const Oid types[3] = {0, 0, ES__TIMESTAMPTZOID};
  const int lengths[3] = {0, 0, 8}, formats[3] = {0, 0, 1};
  es_status rc = es__begin(s, c);
  if (rc != ES_OK)
    return rc;
  PGresult *r = PQexecParams(c->pg, sql, cutoff ? 3 : 2, types, v, lengths,
                             formats, 0);
  if (!es__res_ok(r)) {
    rc = es__fail_pg(s, c->pg, r, "cleanup batch failed");
    PQclear(r);
    es__rollback(c);
    return rc;
  }
  /* The statement returns (max id, rows deleted, chunks deleted). */
  snprintf(last, cap, "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
  *rows = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  *cascaded = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
  PQclear(r);
  rc = es__commit(s, c);
  if (rc != ES_OK)
    es__rollback(c);
  return rc;
}

static const char orphan_chunks_batch[] =
    "WITH pick AS (SELECT c.id FROM chunks c WHERE c.id > $1 AND NOT EXISTS "
    "(SELECT 1 FROM embeddings e WHERE e.id = c.document_id) ORDER BY c.id "
    "LIMIT $2::int), gone AS (DELETE FROM chunks c USING pick "
    "WHERE c.id = pick.id RETURNING c.id) "
    "SELECT (SELECT max(id) FROM pick), (SELECT count(*) FROM gone), 0";

/* The documents' chunks are deleted by the statement itself, after their
 * documents (they follow from its RETURNING: the counters' triggers see
 * each document go first), not left to the cascade, and counted as they
 * go: a count that read them beside the delete would depend on its CTEs
 * sharing one snapshot, which Citus does not give them. */
static const char orphan_docs_batch[] =
    "WITH pick AS (SELECT e.id FROM embeddings e WHERE e.id > $1 AND "
    "e.embedding IS NULL AND e.created_at < $3::timestamptz ORDER BY e.id "
    "LIMIT $2::int FOR UPDATE), gone AS (DELETE FROM embeddings e USING "
    "pick WHERE e.id = pick.id RETURNING e.id), kids AS (DELETE FROM chunks c "
    "USING gone WHERE c.document_id = gone.id RETURNING c.id) "
    "SELECT (SELECT max(id) FROM pick), (SELECT count(*) FROM gone), "
    "(SELECT count(*) FROM kids)";

/* The same on Citus, which refuses FOR UPDATE across shards and runs each
 * CTE as a statement of its own, in the order they depend on each other:
 * the picked documents are locked by an UPDATE that changes nothing (and
 * checked again, as FOR UPDATE would), their chunks deleted and counted,
 * then the documents (gone reads kids, so that kids runs first: after
 * gone the cascade would have taken the chunks uncounted). */
static const char orphan_docs_batch_dist[] =
    "WITH pick AS (SELECT e.id FROM embeddings e WHERE e.id > $1 AND "
    "e.embedding IS NULL AND e.created_at < $3::timestamptz ORDER BY e.id "
    "LIMIT $2::int), locked AS (UPDATE embeddings e SET source_id = e.source_id "
    "FROM pick WHERE e.id = pick.id AND e.embedding IS NULL AND "
    "e.created_at < $3::timestamptz RETURNING e.id), kids AS (DELETE FROM "
    "chunks c USING locked WHERE c.document_id = locked.id RETURNING c.id), "
    "gone AS (DELETE FROM embeddings e USING locked WHERE e.id = locked.id "
    "AND (SELECT count(*) FROM kids) >= 0 RETURNING e.id) "
    "SELECT (SELECT max(id) FROM pick), (SELECT count(*) FROM gone), "
    "(SELECT count(*) FROM kids)";

/* Finds the orphans once, so that the totals describe what was there. */
static es_status find(es_store *s, es__conn *c, cleanup_ctx *x,
                      const es__fk_state *fk) {
  es_cleanup_result *r = x->r;
  char buf[64];
  es_status rc = ES_OK;
  /* The grace period is measured once: what turns old meanwhile waits. */
  snprintf(buf, sizeof buf, "%d", x->o->min_age_s);
  const char *age[1] = {buf};
  PGresult *q = PQexecParams(c->pg, "SELECT now() - make_interval(secs => $1::int)",
                             1, NULL, age, NULL, NULL, 1);
  if (!es__res_ok(q) || PQntuples(q) != 1 || PQgetlength(q, 0, 0) != 8) {
    rc = es__fail_pg(s, c->pg, q, "cannot read the clock");
    PQclear(q);
    return rc;
  }
  memcpy(x->cutoff, PQgetvalue(q, 0, 0), 8);
  PQclear(q);
  /* The counters know orphans exactly, also those left by a writer that
   * bypassed a valid key (session_replication_role = replica): scan only
   * when they say there are some, or the key is not enforced. */
  r->orphaned_chunks = 0;
  PGresult *o = PQexec(c->pg, "SELECT coalesce(sum(all_chunks) - sum(chunks), 0) "
                              "FROM embstore_counts");
  bool some = !es__res_ok(o) || strtoll(PQgetvalue(o, 0, 0), NULL, 10) != 0;
  PQclear(o);
  if (!fk->valid || some)
    rc = es__count_orphan_chunks(s, c, &r->orphaned_chunks);
  if (rc == ES_OK) {
    const char *cut[1] = {x->cutoff};
    const Oid types[1] = {ES__TIMESTAMPTZOID};
    const int lengths[1] = {8}, formats[1] = {1};
    q = PQexecParams(c->pg, "SELECT count(*) FROM embeddings WHERE embedding "
                     "IS NULL AND created_at < $1::timestamptz",
                     1, types, cut, lengths, formats, 0);
    if (!es__res_ok(q) || PQntuples(q) != 1)
      rc = es__fail_pg(s, c->pg, q, "cannot count documents without a vector");
    else
      snprintf(buf, sizeof buf, "%s", PQgetvalue(q, 0, 0));
    PQclear(q);
  }
  if (rc == ES_OK) {
    r->orphaned_embeddings = strtoll(buf, NULL, 10);
    x->counted = true;
  }
  return rc;
}

/* Deletes batch after batch of what sql picks, until none is left. */
static es_status drain(es_store *s, es__conn *c, cleanup_ctx *x, const char *sql,
                       const char *cutoff, int64_t *rows_total,
                       int64_t *cascaded_total) {
  char limit[32], last[1100] = "";
  snprintf(limit, sizeof limit, "%zu", x->o->batch_size);
  for (;;) {
    int64_t rows = 0, cascaded = 0;
    es_status rc = delete_batch(s, c, sql, last, limit, cutoff, last, sizeof last,
                                &rows, &cascaded);
    if (rc != ES_OK)
      return rc;
    if (last[0] == '\0')
      return ES_OK;
    *rows_total += rows;
    if (cascaded_total)
      *cascaded_total += cascaded;
    x->batches++;
    /* Committed: counted now, so that a failure later still reports it. */
    x->r->cleaned = x->chunks_gone + x->docs_gone + x->kids;
  }
}

/* VACUUM cannot run inside a transaction block: one statement each, with
 * the statement timeout lifted for it (a large table takes its time) and
 * set back afterwards. */
static es_status vacuum(es_store *s, es__conn *c, cleanup_ctx *x, const char *table) {
  char sql[96], what[64];
  snprintf(sql, sizeof sql, "VACUUM (ANALYZE) %s", table);
  snprintf(what, sizeof what, "VACUUM of %s failed", table);
  es_status rc = es__exec(s, c, "SET statement_timeout = 0",
                          "cannot lift the statement timeout");
  if (rc == ES_OK)
    rc = es__exec(s, c, sql, what);
  char reset[64];
  snprintf(reset, sizeof reset, "SET statement_timeout = %d",
           s->opts.statement_timeout_ms);
  es_status back = es__exec(s, c, reset, "cannot restore the statement timeout");
  if (rc == ES_OK && back != ES_OK)
    return back;
  if (rc == ES_OK)
    detail(x, "ran VACUUM (ANALYZE) on %s", table);
  return rc;
}

/* Whether table wants a VACUUM (ANALYZE) whatever this cleanup changed:
 * the facts for which `embstore stats` names cleanup (many dead tuples, or
 * never analysed). */
static bool wants_upkeep(es__conn *c, const char *table) {
  const char *v[1] = {table};
  PGresult *r = PQexecParams(
      c->pg,
      "SELECT (n_dead_tup >= " ES__DEAD_MIN " AND n_dead_tup > " ES__DEAD_SHARE
      " * (n_live_tup + n_dead_tup)) OR (n_live_tup > 0 AND last_analyze IS NULL "
      "AND last_autoanalyze IS NULL) FROM pg_stat_user_tables WHERE relid = "
      "to_regclass($1)",
      1, NULL, v, NULL, NULL, 0);
  bool want = es__res_ok(r) && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  return want;
}

/* Once no orphaned chunk is left, a NOT VALID key can be validated. */
static es_status validate(es_store *s, es__conn *c, cleanup_ctx *x,
                          const es__fk_state *fk) {
  int64_t left = 0;
  es_status rc = es__count_orphan_chunks(s, c, &left);
  if (rc != ES_OK)
    return rc;
  if (left > 0) {
    detail(x, "%lld orphaned chunks appeared meanwhile: the foreign key "
           "stays NOT VALID", (long long)left);
    return ES_OK;
  }
  char *q = PQescapeIdentifier(c->pg, fk->name, strlen(fk->name));
  char sql[200];
  snprintf(sql, sizeof sql, "ALTER TABLE chunks VALIDATE CONSTRAINT %s",
           q ? q : "\"\"");
  PQfreemem(q);
  rc = es__exec(s, c, sql, "cannot validate the foreign key");
  if (rc == ES_OK)
    detail(x, "validated the foreign key %s: no orphaned chunk is left",
           fk->name);
  return rc;
}

static es_status cleanup_op(es_store *s, es__conn *c, void *arg) {
  cleanup_ctx *x = arg;
  es_cleanup_result *r = x->r;
  es__fk_state fk;
  es_status rc = es__fk_lookup(s, c, &fk);
  if (rc == ES_OK && !x->counted)
    rc = find(s, c, x, &fk);
  if (rc != ES_OK || x->o->dry_run)
    return rc;
  if (r->orphaned_chunks > 0 &&
      (rc = drain(s, c, x, orphan_chunks_batch, NULL, &x->chunks_gone, NULL)) != ES_OK)
    return rc;
  if (r->orphaned_embeddings > 0 &&
      (rc = drain(s, c, x,
                  es__distributed(s, c) ? orphan_docs_batch_dist : orphan_docs_batch,
                  x->cutoff, &x->docs_gone, &x->kids)) != ES_OK)
    return rc;
  r->cleaned = x->chunks_gone + x->docs_gone + x->kids;
  if (x->chunks_gone > 0)
    detail(x, "deleted %lld orphaned chunks", (long long)x->chunks_gone);
  if (x->docs_gone > 0)
    detail(x, "deleted %lld documents without a vector older than %d s, with "
           "their %lld chunks", (long long)x->docs_gone, x->o->min_age_s,
           (long long)x->kids);
  if (x->batches > 0)
    detail(x, "in %lld transactions of at most %zu rows each",
           (long long)x->batches, x->o->batch_size);
  if ((x->chunks_gone > 0 || x->kids > 0 || wants_upkeep(c, "chunks")) &&
      (rc = vacuum(s, c, x, "chunks")) != ES_OK)
    return rc;
  if ((x->docs_gone > 0 || wants_upkeep(c, "embeddings")) &&
      (rc = vacuum(s, c, x, "embeddings")) != ES_OK)
    return rc;
  if (fk.exists && !fk.valid && (rc = validate(s, c, x, &fk)) != ES_OK)
    return rc;
  PQclear(PQexec(c->pg, "SELECT embstore_counts_compact()"));
  /* Migration 9's per-model counters (a store from before has none: the
   * statement then fails, harmlessly, outside any transaction). */
  PQclear(PQexec(c->pg, "SELECT embstore_model_counts_compact()"));
  return ES_OK;
}

es_status es_cleanup_orphaned(es_store *s, const es_cleanup_options *options,
                              es_cleanup_result **out) {
  es_cleanup_options defaults;
  if (out)
    *out = NULL; /* also when s is NULL: a failed call hands out nothing */
  if (s == NULL || out == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  es_cleanup_options_init(&defaults);
  const es_cleanup_options *o = options ? options : &defaults;
  if (o->batch_size < 1 || o->batch_size > 1000000)
    return es__fail(s, ES_EINVAL, "batch size must be 1..1000000, not %zu",
                    o->batch_size);
  if (o->min_age_s < 0)
    return es__fail(s, ES_EINVAL, "the grace period must not be negative");
  es_cleanup_result *r = calloc(1, sizeof *r);
  if (r == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  r->dry_run = o->dry_run;
  cleanup_ctx x = {.o = o, .r = r};
  /* Each batch commits on its own: a retry after a lost connection
   * continues with what is left, and the totals count what was deleted. */
  es_status rc = es__run(s, o->dry_run ? "cleanup_dry_run" : "cleanup", true,
                         cleanup_op, &x);
  if (!o->dry_run) /* VACUUM and a validated key happen outside commits */
    es__replica_wrote(s);
  if (rc == ES_OK && x.lost)
    rc = es__fail(s, ES_ENOMEM, "out of memory recording what was done");
  *out = r;
  return rc;
}
