/* delete.c - delete documents and their chunks: a source's, those whose
 * metadata matches a filter, or a list of ids.
 *
 * One transaction.  It first locks the documents (in id order, the order
 * every writer locks documents in, so no deadlock) and notes which they
 * are; from then on no chunk can be added to them and they cannot move.
 * Their chunks are deleted and counted, then exactly those documents.  A
 * document of the source that commits after the lock was taken is not in
 * the set: it is kept with its chunks.  So both counts are exact, and
 * nothing is ever half-deleted.  A dry run counts the same in a read-only
 * snapshot.  The workspace scope (options.workspace and workspaces) is
 * part of the statement that picks the documents: a document outside it
 * is never seen, so a delete by id counts it as not found. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "json.h"
#include "internal.h"

typedef struct delete_ctx {
  const char *source; /* NULL: a delete by filter, of every source */
  const char *filter; /* NULL: no filter */
  const char *what;   /* what messages call the selection: "source \"s\"" */
  const char *which;  /* and its documents: "of source \"s\"" */
  const es_delete_options *o;
  const char *scope; /* o->workspaces as a text[] literal, or NULL */
  es_delete_result r;
} delete_ctx;

/* Runs a statement with the (source, workspace, scope, filter) parameters; returns
 * the first column of its one row, or the rows it affected when it
 * returns none. */
static es_status run3(es_store *s, es__conn *c, const char *sql,
                      delete_ctx *d, const char *what, int64_t *out) {
  const char *v[4] = {d->source, d->o->workspace, d->scope, d->filter};
  PGresult *r = PQexecParams(c->pg, sql, 4, NULL, v, NULL, NULL, 0);
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

/* The workspace scope of a document e, on parameters $N (workspace) and
 * $N+1 (workspaces, a text[]). */
#define IN_SCOPE(N, N1)                                                 \
  "($" N "::text IS NULL OR e.metadata->>'workspace' = $" N ") AND "    \
  "($" N1 "::text[] IS NULL OR e.metadata->>'workspace' = "             \
  "ANY ($" N1 "::text[]))"

#define OF_SOURCE                                                       \
  "($1::text IS NULL OR e.source_id = $1) AND ($4::jsonb IS NULL OR "   \
  "e.metadata @> $4::jsonb) AND " IN_SCOPE("2", "3")

/* The documents chosen by WHERE, locked in id order, into es_doomed. */
#define LOCK_PLAIN(WHERE, COLS, INTO)                                   \
  "WITH locked AS (SELECT " COLS " FROM embeddings e WHERE " WHERE       \
  " ORDER BY e.id FOR UPDATE) INSERT INTO es_doomed SELECT " INTO       \
  " FROM locked"

/* Runs sql with params v[0..nv) and, when extra is not NULL, extra as
 * parameter key (0: as parameter nv + 1); the result, or NULL after a
 * failure (recorded). */
static PGresult *run_with(es_store *s, es__conn *c, const char *sql,
                          const char *const *v, int nv, int key, const char *extra,
                          const char *what) {
  const char *all[8];
  assert(nv < 8 && key <= nv);
  for (int i = 0; i < nv; i++)
    all[i] = v[i];
  if (extra != NULL && key > 0)
    all[key - 1] = extra;
  else
    all[nv] = extra;
  int n = nv + (extra != NULL && key == 0);
  PGresult *r = PQexecParams(c->pg, sql, n, NULL, all, NULL, NULL, 0);
  if (es__res_ok(r))
    return r;
  es__fail_pg(s, c->pg, r, what);
  PQclear(r);
  return NULL;
}

/* Appends column col of every row of r to the array literal b. */
static bool append_column(es__buf *b, PGresult *r, int col, bool *first) {
  for (int i = 0; i < PQntuples(r); i++, *first = false)
    if (!es__array_elem(b, PQgetisnull(r, i, col) ? NULL : PQgetvalue(r, i, col),
                        *first))
      return false;
  return true;
}

/* On Citus, which refuses FOR UPDATE across shards: the documents chosen
 * by where (parameters v[0..nv)) into es_doomed (id, and source_id when
 * with_source), locked as on PostgreSQL, shard by shard.  The candidates
 * are read first, unlocked; then each shard's are locked in id order with
 * FOR UPDATE by a statement Citus routes to that shard alone (shards in
 * order, so concurrent deletes lock in one order), which checks recheck on
 * the rows it locks, the shard's ids its parameter key (0: the one after
 * v); es_doomed ends up with exactly those.  An UPDATE that changes
 * nothing would lock them in one statement, but it writes every row again
 * and indexes its vector again: 0.79 s of a 0.88 s delete of 1,000
 * documents (bench/run citus).  *n: how many. */
static es_status lock_sharded(es_store *s, es__conn *c, const char *where,
                              const char *recheck, const char *const *v, int nv,
                              int key, bool with_source, int64_t *n) {
  char sql[1200];
  int len = snprintf(sql, sizeof sql, "INSERT INTO es_doomed SELECT e.id%s FROM "
                     "embeddings e WHERE %s", with_source ? ", e.source_id" : "", where);
  if (len < 0 || (size_t)len >= sizeof sql)
    return es__fail(s, ES_EINVAL, "the delete's statement is too long");
  PGresult *g = run_with(s, c, sql, v, nv, 0, NULL, "cannot find the documents to delete");
  if (g == NULL)
    return es__last_err(s)->code;
  PQclear(g);
  g = run_with(s, c, "SELECT array_agg(id ORDER BY id) FROM es_doomed GROUP BY "
               "get_shard_id_for_distribution_column('embeddings', id) ORDER BY "
               "get_shard_id_for_distribution_column('embeddings', id)",
               NULL, 0, 0, NULL, "cannot group the documents by shard");
  if (g == NULL)
    return es__last_err(s)->code;
  len = snprintf(sql, sizeof sql, "SELECT e.id, e.source_id FROM embeddings e "
                 "WHERE e.id = ANY ($%d::text[]) AND %s ORDER BY e.id FOR "
                 "UPDATE OF e", key > 0 ? key : nv + 1, recheck);
  if (len < 0 || (size_t)len >= sizeof sql) {
    PQclear(g);
    return es__fail(s, ES_EINVAL, "the delete's statement is too long");
  }
  es__buf ids = {0}, sources = {0};
  bool ok = es__buf_append(&ids, "{", 1) && es__buf_append(&sources, "{", 1);
  bool first_id = true, first_source = true;
  es_status rc = ok ? ES_OK : es__fail(s, ES_ENOMEM, "out of memory");
  for (int i = 0; rc == ES_OK && i < PQntuples(g); i++) {
    PGresult *r = run_with(s, c, sql, v, nv, key, PQgetvalue(g, i, 0),
                           "cannot lock the documents to delete");
    if (r == NULL) {
      rc = es__last_err(s)->code;
      break;
    }
    if (!append_column(&ids, r, 0, &first_id) ||
        !append_column(&sources, r, 1, &first_source))
      rc = es__fail(s, ES_ENOMEM, "out of memory");
    PQclear(r);
  }
  PQclear(g);
  if (rc == ES_OK && (!es__buf_append(&ids, "}", 1) || !es__buf_append(&sources, "}", 1)))
    rc = es__fail(s, ES_ENOMEM, "out of memory");
  if (rc == ES_OK)
    rc = es__exec(s, c, "TRUNCATE es_doomed", "cannot note the documents to delete");
  if (rc == ES_OK) {
    const char *a[2] = {ids.data, sources.data};
    PGresult *r = run_with(s, c, with_source
                                     ? "INSERT INTO es_doomed SELECT * FROM "
                                       "unnest($1::text[], $2::text[])"
                                     : "INSERT INTO es_doomed SELECT unnest($1::text[])",
                           a, with_source ? 2 : 1, 0, NULL,
                           "cannot note the documents to delete");
    if (r == NULL)
      rc = es__last_err(s)->code;
    else
      *n = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
  }
  es__buf_free(&ids);
  es__buf_free(&sources);
  return rc;
}

/* Deletes the documents of es_doomed, and their chunks unless cascade is
 * false; how many of each at *docs and *chunks. */
static es_status delete_doomed(es_store *s, es__conn *c, bool cascade,
                               int64_t *chunks, int64_t *docs) {
  es_status rc = ES_OK;
  if (cascade)
    rc = es__exec_count(s, c, "DELETE FROM chunks c USING es_doomed x WHERE "
                              "c.document_id = x.id",
                        "cannot delete the chunks", chunks);
  if (rc == ES_OK)
    rc = es__exec_count(s, c, "DELETE FROM embeddings e USING es_doomed x "
                              "WHERE e.id = x.id",
                        "cannot delete the documents", docs);
  return rc;
}

static es_status delete_op(es_store *s, es__conn *c, void *arg) {
  delete_ctx *d = arg;
  int64_t docs = 0, chunks = 0;
  memset(&d->r, 0, sizeof d->r);
  d->r.dry_run = d->o->dry_run;
  /* es__begin: the store's own writes, which on Citus the shards' chunk
   * triggers must know too (else each deleted chunk's document is first
   * rewritten, its vector indexed again: 1.0 s of a 2.0 s delete of a
   * 1,000-document source, bench/run citus). */
  es_status rc = d->o->dry_run
                     ? es__exec(s, c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                                "cannot begin a transaction")
                     : es__begin(s, c);
  if (rc == ES_OK && !d->o->dry_run)
    rc = es__exec(s, c, "CREATE TEMP TABLE es_doomed (id text PRIMARY KEY) "
                        "ON COMMIT DROP",
                  "cannot create a temporary table");
  if (rc != ES_OK)
    goto done;
  if (!d->o->dry_run && es__distributed(s, c)) {
    const char *v[4] = {d->source, d->o->workspace, d->scope, d->filter};
    rc = lock_sharded(s, c, OF_SOURCE, OF_SOURCE, v, 4, 0, false, &docs);
  } else {
    rc = run3(s, c,
              d->o->dry_run ? "SELECT count(*) FROM embeddings e WHERE " OF_SOURCE
                            : LOCK_PLAIN(OF_SOURCE, "e.id", "id"),
              d, "cannot find the documents to delete", &docs);
  }
  if (rc == ES_OK && d->o->dry_run)
    rc = run3(s, c,
              "SELECT count(*) FROM chunks c JOIN embeddings e ON "
              "e.id = c.document_id WHERE " OF_SOURCE,
              d, "cannot count the chunks", &chunks);
  else if (rc == ES_OK && d->o->no_cascade) /* rows of a SELECT 1 per chunk */
    rc = es__exec_count(s, c, "SELECT 1 FROM chunks c JOIN es_doomed x ON "
                              "x.id = c.document_id",
                        "cannot count the chunks", &chunks);
  if (rc != ES_OK)
    goto done;
  if (d->o->dry_run) {
    d->r.deleted = docs;
    d->r.chunks_removed = d->o->no_cascade ? 0 : chunks;
    if (d->o->no_cascade && chunks > 0)
      rc = es__fail(s, ES_ECONFLICT, "%lld chunks of %s would block "
                    "the delete (--no-cascade): nothing would be deleted",
                    (long long)chunks, d->what);
    goto done;
  }
  if (d->o->no_cascade && chunks > 0) {
    rc = es__fail(s, ES_ECONFLICT, "%lld chunks of %lld documents %s "
                  "block the delete (--no-cascade): nothing was deleted",
                  (long long)chunks, (long long)docs, d->which);
    goto done;
  }
  rc = delete_doomed(s, c, !d->o->no_cascade, &chunks, &docs);
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

/* A delete by source (source not NULL) or by filter (filter not NULL). */
static es_status delete_selected(es_store *s, const char *source,
                                 const char *filter,
                                 const es_delete_options *options,
                                 es_delete_result **result) {
  es_delete_options defaults;
  es_delete_options_init(&defaults);
  delete_ctx d = {source, filter, NULL, NULL, options ? options : &defaults,
                  NULL, {0}};
  char what[160], which[170];
  if (source)
    snprintf(what, sizeof what, "source \"%.100s\"%s", source,
             filter ? " matching the filter" : "");
  else
    snprintf(what, sizeof what, "the documents matching the filter");
  if (source)
    snprintf(which, sizeof which, "of %s", what);
  else
    snprintf(which, sizeof which, "matching the filter");
  d.what = what;
  d.which = which;
  es_status rc = es__check_filter(s, filter);
  char *scope = NULL;
  if (rc == ES_OK)
    rc = es__scope_literal(s, d.o->workspaces, d.o->n_workspaces, &scope);
  if (rc != ES_OK)
    return rc;
  d.scope = scope;
  /* Allocated first: once the delete is committed, nothing may fail. */
  es_delete_result *res = calloc(1, sizeof *res);
  if (res == NULL) {
    free(scope);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  rc = es__run(s, d.o->dry_run ? "delete_dry_run"
                  : source     ? "delete_by_source"
                               : "delete_by_filter",
               true, delete_op, &d);
  free(scope);
  if (rc == ES_OK && !d.o->dry_run && d.r.deleted > 0) { /* after the commit */
    if (source)
      es__cache_invalidate_source(s->cache, source);
    else
      es__cache_invalidate_all(s->cache);
  }
  *res = d.r;
  if (rc == ES_OK && result)
    *result = res;
  else
    free(res);
  return rc;
}

es_status es_delete_by_source(es_store *s, const char *source_id,
                              const es_delete_options *options,
                              es_delete_result **result) {
  if (result)
    *result = NULL;
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  if (source_id == NULL || source_id[0] == '\0')
    return es__fail(s, ES_EINVAL, "a source id is required");
  return delete_selected(s, source_id, options ? options->filter_json : NULL,
                         options, result);
}

es_status es_delete_by_filter(es_store *s, const char *filter_json,
                              const es_delete_options *options,
                              es_delete_result **result) {
  if (result)
    *result = NULL;
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  if (filter_json == NULL)
    return es__fail(s, ES_EINVAL, "a filter is required ({} matches every "
                    "document)");
  return delete_selected(s, NULL, filter_json, options, result);
}

/* ---- by id ---------------------------------------------------------------- */

typedef struct ids_ctx {
  const es_delete_options *o;
  const char *ids;   /* the ids as a text[] literal */
  const char *scope; /* o->workspaces as a text[] literal, or NULL */
  size_t n;          /* ids given, repeats included */
  es_delete_result r;
  char **sources;    /* the distinct sources of the deleted documents, */
  size_t n_sources;  /* for the cache (an entry NULL: no source) */
} ids_ctx;

/* The documents that a dry run would delete, as a subquery x(id). */
#define CHOSEN                                                          \
  "(SELECT e.id FROM embeddings e WHERE e.id = ANY ($1::text[]) AND "   \
  IN_SCOPE("2", "3") ")"

/* Distinct ids of $1 for which no row of x matches (x_where: how), in the
 * order first given. */
#define MISSING(x_where)                                                \
  "SELECT u.id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n) "    \
  "WHERE NOT EXISTS (" x_where ") GROUP BY u.id ORDER BY min(u.n)"

/* Runs sql with the first nparams of (ids, workspace, scope); the result
 * is the caller's to PQclear, NULL after a failure (recorded). */
static PGresult *query(es_store *s, es__conn *c, const char *sql, int nparams,
                       const ids_ctx *d, const char *what) {
  const char *v[3] = {d->ids, d->o->workspace, d->scope};
  return run_with(s, c, sql, v, nparams, 0, NULL, what);
}

/* Runs sql (see query) and returns the first column of its one row, or the
 * rows it affected when it returns none. */
static es_status count(es_store *s, es__conn *c, const char *sql, int nparams,
                       const ids_ctx *d, const char *what, int64_t *out) {
  PGresult *r = query(s, c, sql, nparams, d, what);
  if (r == NULL)
    return es__last_err(s)->code;
  *out = strtoll(PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0)
                                                      : PQcmdTuples(r),
                 NULL, 10);
  PQclear(r);
  return ES_OK;
}

/* Copies column 0 of every row of r into a malloc'd array of strings
 * (NULL for SQL NULL) at *out, their number at *n; NULL r: nothing. */
static es_status take_column(es_store *s, PGresult *r, char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (r == NULL)
    return es__last_err(s)->code;
  int rows = PQntuples(r);
  es_status rc = ES_OK;
  *out = calloc(rows > 0 ? (size_t)rows : 1, sizeof **out);
  if (*out == NULL)
    rc = es__fail(s, ES_ENOMEM, "out of memory");
  for (int i = 0; rc == ES_OK && i < rows; i++, (*n)++)
    if (!PQgetisnull(r, i, 0) && ((*out)[i] = strdup(PQgetvalue(r, i, 0))) == NULL)
      rc = es__fail(s, ES_ENOMEM, "out of memory");
  PQclear(r);
  return rc;
}

/* Frees an array of n strings. */
static void free_strings(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

/* Forgets what an earlier attempt of the operation found. */
static void ids_reset(ids_ctx *d) {
  free_strings(d->r.not_found_ids, (size_t)d->r.not_found);
  free_strings(d->sources, d->n_sources);
  d->sources = NULL;
  d->n_sources = 0;
  memset(&d->r, 0, sizeof d->r);
  d->r.dry_run = d->o->dry_run;
}

/* The restrict refusal: chunks of the chosen documents exist. */
static es_status blocked(es_store *s, const ids_ctx *d, int64_t chunks,
                         int64_t docs, const char *first) {
  return es__fail(s, ES_ECONFLICT, "%lld chunks of %lld of the documents "
                  "(\"%s\" among them) %s the delete (--no-cascade): nothing "
                  "%s deleted", (long long)chunks, (long long)docs, first,
                  d->o->dry_run ? "would block" : "block",
                  d->o->dry_run ? "would be" : "was");
}

/* Counts chunks of the chosen documents x: how many, and of how many
 * documents, and the first of them (for the refusal). */
static es_status chunk_owners(es_store *s, es__conn *c, const ids_ctx *d,
                              const char *sql, int nparams, int64_t *chunks) {
  PGresult *r = query(s, c, sql, nparams, d, "cannot count the chunks");
  if (r == NULL)
    return es__last_err(s)->code;
  *chunks = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  es_status rc = ES_OK;
  if (d->o->no_cascade && *chunks > 0)
    rc = blocked(s, d, *chunks, strtoll(PQgetvalue(r, 0, 1), NULL, 10),
                 PQgetvalue(r, 0, 2));
  PQclear(r);
  return rc;
}

/* A dry run: the same counts in one read-only snapshot. */
static es_status ids_dry_run(es_store *s, es__conn *c, ids_ctx *d) {
  size_t missing = 0;
  es_status rc = es__exec(s, c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                          "cannot begin a transaction");
  if (rc == ES_OK)
    rc = count(s, c, "SELECT count(*) FROM " CHOSEN " x", 3, d,
               "cannot find the documents", &d->r.deleted);
  if (rc == ES_OK)
    rc = take_column(s, query(s, c, MISSING("SELECT 1 FROM embeddings e WHERE "
                                            "e.id = u.id AND " IN_SCOPE("2", "3")),
                              3, d, "cannot find the documents"),
                     &d->r.not_found_ids, &missing);
  d->r.not_found = (int64_t)missing;
  if (rc == ES_OK)
    rc = chunk_owners(s, c, d, "SELECT count(*), count(DISTINCT x.id), min(x.id) "
                      "FROM chunks c JOIN " CHOSEN " x ON x.id = c.document_id",
                      3, &d->r.chunks_removed);
  if (d->o->no_cascade)
    d->r.chunks_removed = 0;
  return rc;
}

/* Locks the chosen documents into es_doomed and deletes them. */
static es_status ids_delete(es_store *s, es__conn *c, ids_ctx *d) {
  int64_t docs = 0, chunks = 0;
  size_t missing = 0;
  es_status rc = es__begin(s, c); /* see delete_op */
  if (rc == ES_OK)
    rc = es__exec(s, c, "CREATE TEMP TABLE es_doomed (id text PRIMARY KEY, "
                  "source_id text) ON COMMIT DROP",
                  "cannot create a temporary table");
  const char *v[3] = {d->ids, d->o->workspace, d->scope};
  if (rc == ES_OK && es__distributed(s, c))
    rc = lock_sharded(s, c, "e.id = ANY ($1::text[]) AND " IN_SCOPE("2", "3"),
                      IN_SCOPE("2", "3"), v, 3, 1, true, &docs);
  else if (rc == ES_OK)
    rc = count(s, c,
               LOCK_PLAIN("e.id = ANY ($1::text[]) AND " IN_SCOPE("2", "3"),
                          "e.id, e.source_id", "id, source_id"),
               3, d, "cannot find the documents", &docs);
  if (rc == ES_OK)
    rc = take_column(s, query(s, c, MISSING("SELECT 1 FROM es_doomed x WHERE "
                                            "x.id = u.id"),
                              1, d, "cannot find the documents"),
                     &d->r.not_found_ids, &missing);
  d->r.not_found = (int64_t)missing;
  if (rc == ES_OK && d->o->no_cascade)
    rc = chunk_owners(s, c, d, "SELECT count(*), count(DISTINCT x.id), min(x.id) "
                      "FROM chunks c JOIN es_doomed x ON x.id = c.document_id",
                      0, &chunks);
  if (rc == ES_OK && docs > 0) /* before the commit: nothing may fail after */
    rc = take_column(s, query(s, c, "SELECT DISTINCT source_id FROM es_doomed",
                              0, d, "cannot read the documents' sources"),
                     &d->sources, &d->n_sources);
  if (rc == ES_OK)
    rc = delete_doomed(s, c, !d->o->no_cascade, &chunks, &docs);
  if (rc == ES_OK)
    rc = es__commit(s, c);
  if (rc == ES_OK) {
    d->r.deleted = docs;
    d->r.chunks_removed = d->o->no_cascade ? 0 : chunks;
  }
  return rc;
}

/* The delete by id on a pooled connection; repeats are counted from what
 * was found: the distinct ids are the deleted and the missing ones. */
static es_status ids_op(es_store *s, es__conn *c, void *arg) {
  ids_ctx *d = arg;
  ids_reset(d);
  es_status rc = d->o->dry_run ? ids_dry_run(s, c, d) : ids_delete(s, c, d);
  es__rollback(c);
  d->r.duplicates = (int64_t)d->n - d->r.deleted - d->r.not_found;
  return rc;
}

/* The nth id of a list (for es__text_array). */
static const char *nth_id(const void *list, size_t i) {
  return ((const char *const *)list)[i];
}

/* Checks the ids at the door. */
static inline es_status check_ids(es_store *s, const char *const *ids,
                                  size_t n) {
  if (ids == NULL && n > 0)
    return es__fail(s, ES_EINVAL, "ids is NULL");
  for (size_t i = 0; i < n; i++) {
    if (ids[i] == NULL)
      return es__fail(s, ES_EINVAL, "ids[%zu] is NULL", i);
    long bad = es__utf8_invalid_at(ids[i], strlen(ids[i]));
    if (bad >= 0)
      return es__fail(s, ES_EINVAL, "ids[%zu] is not valid UTF-8 (byte %ld)",
                      i, bad);
  }
  return ES_OK;
}

/* Invalidates the cached searches that may show the deleted documents. */
static void invalidate(es_store *s, const ids_ctx *d) {
  for (size_t i = 0; i < d->n_sources; i++)
    es__cache_invalidate_source(s->cache, d->sources[i]);
}

es_status es_delete_documents(es_store *s, const char *const *ids, size_t n,
                              const es_delete_options *options,
                              es_delete_result **result) {
  es_delete_options defaults;
  es_delete_options_init(&defaults);
  if (result)
    *result = NULL;
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  es_status rc = check_ids(s, ids, n);
  if (rc != ES_OK)
    return rc;
  if (options && options->filter_json)
    return es__fail(s, ES_EINVAL, "a delete by id takes no filter: the ids "
                    "name the documents");
  ids_ctx d = {.o = options ? options : &defaults, .n = n};
  char *scope = NULL, *list = NULL;
  /* Allocated first: once the delete is committed, nothing may fail. */
  es_delete_result *res = calloc(1, sizeof *res);
  if (res == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  rc = es__scope_literal(s, d.o->workspaces, d.o->n_workspaces, &scope);
  if (rc == ES_OK && (list = es__text_array(ids, n, nth_id)) == NULL)
    rc = es__fail(s, ES_ENOMEM, "out of memory");
  d.ids = list;
  d.scope = scope;
  d.r.dry_run = d.o->dry_run;
  if (rc == ES_OK && n > 0)
    rc = es__run(s, d.o->dry_run ? "delete_dry_run" : "delete_documents", true,
                 ids_op, &d);
  if (rc == ES_OK && !d.o->dry_run)
    invalidate(s, &d); /* after the commit */
  free_strings(d.sources, d.n_sources);
  free(scope);
  free(list);
  *res = d.r;
  if (rc == ES_OK && result) {
    *result = res;
    return rc;
  }
  es_delete_result_free(res);
  return rc;
}

void es_delete_result_free(es_delete_result *result) {
  if (result == NULL)
    return;
  free_strings(result->not_found_ids, (size_t)result->not_found);
  free(result);
}
