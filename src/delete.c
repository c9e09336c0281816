/* delete.c - delete a source's documents and their chunks.
 *
 * One REPEATABLE READ transaction: its snapshot fixes which documents are
 * "the source's", so both counts are exact even while others write.  The
 * documents are locked first (no chunk can be added to them meanwhile),
 * their chunks deleted and counted, then the documents.  A document of the
 * source committed after the snapshot is not seen, so it is kept with its
 * chunks; a concurrent change to one of ours makes the transaction fail
 * with a serialization error, which the retry loop repeats. */
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
 * first column of its one row, or its row count when it returns none. */
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
                                    : "BEGIN ISOLATION LEVEL REPEATABLE READ",
                          "cannot begin a transaction");
  if (rc != ES_OK)
    return rc;
  rc = run2(s, c,
            d->o->dry_run
                ? "SELECT count(*) FROM embeddings e WHERE " OF_SOURCE
                : "SELECT count(*) FROM (SELECT 1 FROM embeddings e WHERE " OF_SOURCE
                  " ORDER BY e.id FOR UPDATE) t",
            d, "cannot find the source's documents", &docs);
  if (rc == ES_OK && (d->o->dry_run || d->o->no_cascade))
    rc = run2(s, c,
              "SELECT count(*) FROM chunks c JOIN embeddings e ON "
              "e.id = c.document_id WHERE " OF_SOURCE,
              d, "cannot count the source's chunks", &chunks);
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
    rc = run2(s, c,
              "DELETE FROM chunks c USING embeddings e WHERE "
              "c.document_id = e.id AND " OF_SOURCE,
              d, "cannot delete the source's chunks", &chunks);
  if (rc == ES_OK)
    rc = run2(s, c, "DELETE FROM embeddings e WHERE " OF_SOURCE, d,
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

es_status es_delete_by_source(es_store *s, const char *source_id,
                              const es_delete_options *options,
                              es_delete_result *result) {
  es_delete_options defaults = {0};
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  if (source_id == NULL || source_id[0] == '\0')
    return es__fail(s, ES_EINVAL, "a source id is required");
  delete_ctx d = {source_id, options ? options : &defaults, {0}};
  es_status rc = es__run(s, d.o->dry_run ? "delete_dry_run" : "delete_by_source",
                         true, delete_op, &d);
  if (rc == ES_OK && !d.o->dry_run && d.r.deleted > 0)
    es__cache_invalidate_source(s->cache, source_id); /* after the commit */
  if (result)
    *result = d.r;
  return rc;
}
