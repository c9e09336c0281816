/* delete.c - delete a source's documents and their chunks.
 *
 * One transaction.  It first locks the source's documents (in id order,
 * the order every writer locks documents in, so no deadlock) and notes
 * which they are; from then on no chunk can be added to them and they
 * cannot move.  Their chunks are deleted and counted, then exactly those
 * documents.  A document of the source that commits after the lock was
 * taken is not in the set: it is kept with its chunks.  So both counts are
 * exact, and nothing is ever half-deleted.  A dry run counts the same in a
 * read-only snapshot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "internal.h"

typedef struct delete_ctx {
  const char *source;
  const es_delete_options *o;
  es_delete_result r;
} delete_ctx;

/* Runs a statement with the (source, workspace) parameters; returns the
 * first column of its one row, or the rows it affected when it returns
 * none. */
static es_status run2(es_store *s, es__conn *c, const char *sql,
                      delete_ctx *d, const char *what, int64_t *out) {
  const char *v[2] = {d->source, d->o->workspace};
  PGresult *r = PQexecParams(c->pg, sql, 2, NULL, v, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, what);
  else if (PQresultStatus(r) == PGRES_TUPLES_OK)
    *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  else
    *out = strtoll(PQcmdTuples(r), NULL, 10);
  PQclear(r);
  return rc;
}

#define OF_SOURCE                                                       \
  "e.source_id = $1 AND ($2::text IS NULL OR "                          \
  "e.metadata->>'workspace' = $2)"

static es_status delete_op(es_store *s, es__conn *c, void *arg) {
  delete_ctx *d = arg;
  int64_t docs = 0, chunks = 0;
  memset(&d->r, 0, sizeof d->r);
  d->r.dry_run = d->o->dry_run;
  es_status rc = es__exec(s, c, d->o->dry_run
                                    ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                                    : "BEGIN",
                          "cannot begin a transaction");
  if (rc == ES_OK && !d->o->dry_run)
    rc = es__exec(s, c, "CREATE TEMP TABLE es_doomed (id text PRIMARY KEY) "
                        "ON COMMIT DROP",
                  "cannot create a temporary table");
  if (rc != ES_OK)
    goto done;
  rc = run2(s, c,
            d->o->dry_run
                ? "SELECT count(*) FROM embeddings e WHERE " OF_SOURCE
                : "WITH locked AS (SELECT e.id FROM embeddings e WHERE " OF_SOURCE
                  " ORDER BY e.id FOR UPDATE) INSERT INTO es_doomed "
                  "SELECT id FROM locked",
            d, "cannot find the source's documents", &docs);
  if (rc == ES_OK && d->o->dry_run)
    rc = run2(s, c,
              "SELECT count(*) FROM chunks c JOIN embeddings e ON "
              "e.id = c.document_id WHERE " OF_SOURCE,
              d, "cannot count the source's chunks", &chunks);
  else if (rc == ES_OK && d->o->no_cascade) /* rows of a SELECT 1 per chunk */
    rc = es__exec_count(s, c, "SELECT 1 FROM chunks c JOIN es_doomed x ON "
                              "x.id = c.document_id",
                        "cannot count the source's chunks", &chunks);
  if (rc != ES_OK)
    goto done;
  if (d->o->dry_run) {
    d->r.deleted = docs;
    d->r.chunks_removed = d->o->no_cascade ? 0 : chunks;
    if (d->o->no_cascade && chunks > 0)
      rc = es__fail(s, ES_ECONFLICT, "%lld chunks of source \"%s\" would block "
                    "the delete (--no-cascade): nothing would be deleted",
                    (long long)chunks, d->source);
    goto done;
  }
  if (d->o->no_cascade && chunks > 0) {
    rc = es__fail(s, ES_ECONFLICT, "%lld chunks of %lld documents of source "
                  "\"%s\" block the delete (--no-cascade): nothing was deleted",
                  (long long)chunks, (long long)docs, d->source);
    goto done;
  }
  if (!d->o->no_cascade)
    rc = es__exec_count(s, c, "DELETE FROM chunks c USING es_doomed x WHERE "
                              "c.document_id = x.id",
                        "cannot delete the source's chunks", &chunks);
  if (rc == ES_OK)
    rc = es__exec_count(s, c, "DELETE FROM embeddings e USING es_doomed x "
                              "WHERE e.id = x.id",
                        "cannot delete the source's documents", &docs);
  if (rc == ES_OK)
    rc = es__commit(s, c);
  if (rc == ES_OK) {
    d->r.deleted = docs;
    d->r.chunks_removed = d->o->no_cascade ? 0 : chunks;
  }
done:
  es__rollback(c);
  return rc;
}

void es_delete_options_init(es_delete_options *options) {
  memset(options, 0, sizeof *options);
}

es_status es_delete_by_source(es_store *s, const char *source_id,
                              const es_delete_options *options,
                              es_delete_result **result) {
  es_delete_options defaults;
  es_delete_options_init(&defaults);
  if (result)
    *result = NULL;
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  if (source_id == NULL || source_id[0] == '\0')
    return es__fail(s, ES_EINVAL, "a source id is required");
  /* Allocated first: once the delete is committed, nothing may fail. */
  es_delete_result *res = calloc(1, sizeof *res);
  if (res == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  delete_ctx d = {source_id, options ? options : &defaults, {0}};
  es_status rc = es__run(s, d.o->dry_run ? "delete_dry_run" : "delete_by_source",
                         true, delete_op, &d);
  if (rc == ES_OK && !d.o->dry_run && d.r.deleted > 0)
    es__cache_invalidate_source(s->cache, source_id); /* after the commit */
  *res = d.r;
  if (rc == ES_OK && result)
    *result = res;
  else
    free(res);
  return rc;
}

void es_delete_result_free(es_delete_result *result) { free(result); }
