/* batch_write.c - writing a batch session's documents: one transaction
 * per batch (keys staged and stored rows locked, then COPY straight into
 * the tables or staged and merged), retried after transient failures and
 * bisected when PostgreSQL rejects some row (see batch_int.h). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_int.h"

#define COMPACT_EVERY 100 /* batches */

static const char temp_tables[] =
    "CREATE TEMP TABLE IF NOT EXISTS es_stage_keys (ord int, id text, "
    "content_hash bytea, chunks_hash bytea) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS es_stage_docs (ord int, id text, "
    "text text, embedding vector, metadata jsonb, source_id text, "
    "content_hash bytea, chunks_hash bytea, rewrite_chunks bool, "
    "model text) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS es_stage_chunks (doc_ord int, id text, "
    "document_id text, chunk_index int, text text, embedding vector, "
    "metadata jsonb, model text) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS es_written (id text, inserted bool) "
    "ON COMMIT DELETE ROWS";

/* Runs a parameterless statement on the session's connection. */
static es_status exec(es_batch *b, const char *sql, const char *what) {
  return es__exec(b->s, b->conn, sql, what);
}

/* Runs a statement with one int[] parameter (ords). */
static es_status exec_ords(es_batch *b, const char *sql, const char *ords,
                           const char *what) {
  const char *v[1] = {ords};
  PGresult *r = PQexecParams(b->conn->pg, sql, 1, NULL, v, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(b->s, b->conn->pg, r, what);
  PQclear(r);
  return rc;
}

/* Forgets what a rolled back transaction set in it[0..n). */
static void reset_pending(es__item *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    it[i].out = ES__OUT_PENDING;
    it[i].seen = false;
    it[i].rewrite_chunks = it[i].doc->has_chunks;
    free(it[i].error);
    it[i].error = NULL;
    free(it[i].old_source);
    it[i].old_source = NULL;
  }
}

/* ---- the keys and the stored rows ------------------------------------------ */

/* COPYs the keys of it[0..n) (ord = index in it). */
static es_status copy_keys(es_batch *b, es__item *it, size_t n) {
  es__copy *c = &b->copy;
  es_status rc = es__copy_open(b->s, b->conn,
                               "COPY es_stage_keys FROM STDIN (FORMAT binary)", c);
  if (rc != ES_OK)
    return rc;
  for (size_t i = 0; i < n; i++) {
    es__batch_hash_item(&it[i]);
    es__copy_row(c, 4);
    es__copy_int4(c, (int32_t)i);
    es__copy_text(c, it[i].doc->id);
    es__copy_bytes(c, it[i].content_hash, ES__HASH_BYTES);
    if (it[i].doc->has_chunks)
      es__copy_bytes(c, it[i].chunks_hash, ES__HASH_BYTES);
    else
      es__copy_null(c);
  }
  return es__copy_close(b->s, b->conn, c, NULL);
}

/* Takes the locked rows of r (ord, same content, same chunks, source)
 * into the items. */
static void take_locked(es__item *it, size_t n, PGresult *r) {
  for (int i = 0; i < PQntuples(r); i++) {
    long ord = strtol(PQgetvalue(r, i, 0), NULL, 10);
    if (ord < 0 || (size_t)ord >= n)
      continue;
    es__item *x = &it[ord];
    bool same_content = PQgetvalue(r, i, 1)[0] == 't';
    bool same_chunks = PQgetvalue(r, i, 2)[0] == 't';
    const char *was = PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3);
    if (was && (x->doc->source_id == NULL || strcmp(was, x->doc->source_id) != 0))
      x->old_source = strdup(was); /* moving out of a source changes it */
    x->rewrite_chunks = x->doc->has_chunks && !same_chunks;
    if (same_content && same_chunks)
      x->out = ES__OUT_UNCHANGED;
  }
}

static es_status lock_failed(es_batch *b, PGresult *r) {
  es_status rc = es__fail_pg(b->s, b->conn->pg, r, "cannot lock stored documents");
  PQclear(r);
  return rc;
}

/* On Citus, a row lock cannot span shards: the staged keys are grouped by
 * their shard (in shard order, and ids in order within each, so that
 * concurrent batches take locks in one order), and each group is locked
 * by a statement that Citus routes to that one shard. */
static es_status lock_sharded(es_batch *b, es__item *it, size_t n) {
  PGresult *g = PQexec(
      b->conn->pg,
      "SELECT array_agg(id ORDER BY id), array_agg(ord ORDER BY id), "
      "array_agg(content_hash ORDER BY id), array_agg(chunks_hash ORDER BY id) "
      "FROM es_stage_keys GROUP BY get_shard_id_for_distribution_column("
      "'embeddings', id) ORDER BY get_shard_id_for_distribution_column("
      "'embeddings', id)");
  if (!es__res_ok(g))
    return lock_failed(b, g);
  for (int i = 0; i < PQntuples(g); i++) {
    const char *v[4] = {PQgetvalue(g, i, 0), PQgetvalue(g, i, 1),
                        PQgetvalue(g, i, 2), PQgetvalue(g, i, 3)};
    PGresult *r = PQexecParams(
        b->conn->pg,
        "SELECT k.ord, e.content_hash IS NOT DISTINCT FROM k.content_hash, "
        "k.chunks_hash IS NULL OR e.chunks_hash IS NOT DISTINCT FROM "
        "k.chunks_hash, e.source_id "
        "FROM embeddings e JOIN unnest($1::text[], $2::int[], $3::bytea[], "
        "$4::bytea[]) AS k(id, ord, content_hash, chunks_hash) ON k.id = e.id "
        "WHERE e.id = ANY ($1::text[]) ORDER BY e.id FOR UPDATE OF e",
        4, NULL, v, NULL, NULL, 0);
    if (!es__res_ok(r)) {
      PQclear(g);
      return lock_failed(b, r);
    }
    take_locked(it, n, r);
    PQclear(r);
  }
  PQclear(g);
  return ES_OK;
}

/* Locks the batch's stored documents (in id order, so that concurrent
 * batches do not deadlock) and compares their hashes.  A document that
 * one of this session's earlier batches wrote (es_seen) is a duplicate of
 * an earlier input line. */
static es_status lock_existing(es_batch *b, es__item *it, size_t n) {
  if (b->distributed) {
    es_status rc = lock_sharded(b, it, n);
    if (rc != ES_OK)
      return rc;
  } else {
    PGresult *r = PQexec(
        b->conn->pg,
        "SELECT k.ord, e.content_hash IS NOT DISTINCT FROM k.content_hash, "
        "k.chunks_hash IS NULL OR e.chunks_hash IS NOT DISTINCT FROM "
        "k.chunks_hash, e.source_id "
        "FROM es_stage_keys k JOIN embeddings e ON e.id = k.id "
        "ORDER BY e.id FOR UPDATE OF e");
    if (!es__res_ok(r))
      return lock_failed(b, r);
    take_locked(it, n, r);
    PQclear(r);
  }
  PGresult *r = PQexec(b->conn->pg, "SELECT k.ord FROM es_stage_keys k "
                                    "JOIN es_seen s ON s.id = k.id");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(b->s, b->conn->pg, r, "cannot read es_seen");
    PQclear(r);
    return rc;
  }
  for (int i = 0; i < PQntuples(r); i++) {
    long ord = strtol(PQgetvalue(r, i, 0), NULL, 10);
    if (ord >= 0 && (size_t)ord < n)
      it[ord].seen = true;
  }
  PQclear(r);
  return ES_OK;
}

/* ---- the rows --------------------------------------------------------------- */

/* Streams the document rows of the items to write into their table (or
 * the staging table). */
static es_status copy_docs(es_batch *b, es__item *it, size_t n, bool staged) {
  es__copy *c = &b->copy;
  es_status rc = es__copy_open(
      b->s, b->conn,
      staged ? "COPY es_stage_docs FROM STDIN (FORMAT binary)"
             : "COPY embeddings (id, text, embedding, metadata, source_id, "
               "content_hash, chunks_hash, model) FROM STDIN (FORMAT binary)",
      c);
  if (rc != ES_OK)
    return rc;
  for (size_t i = 0; i < n; i++) {
    const es_doc *d = it[i].doc;
    if (it[i].out != ES__OUT_PENDING)
      continue;
    es__batch_hash_item(&it[i]);
    es__copy_row(c, staged ? 10 : 8);
    if (staged)
      es__copy_int4(c, (int32_t)i);
    es__copy_text(c, d->id);
    es__copy_text(c, d->text ? d->text : "");
    es__copy_vector(c, d->embedding, d->dim);
    es__copy_jsonb(c, d->metadata_json);
    es__copy_text(c, d->source_id);
    es__copy_bytes(c, it[i].content_hash, ES__HASH_BYTES);
    if (d->has_chunks)
      es__copy_bytes(c, it[i].chunks_hash, ES__HASH_BYTES);
    else
      es__copy_null(c);
    if (staged) {
      static const char t = 1, f = 0;
      es__copy_bytes(c, it[i].rewrite_chunks ? &t : &f, 1);
    }
    es__copy_text(c, d->model);
  }
  return es__copy_close(b->s, b->conn, c, NULL);
}

/* Streams the chunks of the items whose chunk set is rewritten; *count
 * receives how many. */
static es_status copy_chunks(es_batch *b, es__item *it, size_t n, bool staged,
                             size_t *count) {
  es__copy *c = &b->copy;
  *count = 0;
  for (size_t i = 0; i < n; i++)
    if (it[i].out == ES__OUT_PENDING && it[i].rewrite_chunks)
      *count += it[i].doc->n_chunks;
  if (*count == 0)
    return ES_OK;
  /* A store from before migration 9 has no chunks.model: the staged
   * column then stays NULL and is not merged. */
  es_status rc = es__copy_open(
      b->s, b->conn,
      staged ? "COPY es_stage_chunks FROM STDIN (FORMAT binary)"
      : b->chunk_model ? "COPY chunks (id, document_id, chunk_index, text, "
                         "embedding, metadata, model) FROM STDIN (FORMAT binary)"
                       : "COPY chunks (id, document_id, chunk_index, text, "
                         "embedding, metadata) FROM STDIN (FORMAT binary)",
      c);
  if (rc != ES_OK)
    return rc;
  for (size_t i = 0; i < n; i++) {
    const es_doc *d = it[i].doc;
    if (it[i].out != ES__OUT_PENDING || !it[i].rewrite_chunks)
      continue;
    for (size_t k = 0; k < d->n_chunks; k++) {
      const es_chunk *ch = &d->chunks[k];
      es__copy_row(c, staged ? 8 : b->chunk_model ? 7 : 6);
      if (staged)
        es__copy_int4(c, (int32_t)i);
      es__copy_text(c, ch->id);
      es__copy_text(c, d->id);
      es__copy_int4(c, (int32_t)k);
      es__copy_text(c, ch->text ? ch->text : "");
      es__copy_vector(c, ch->embedding, ch->dim);
      es__copy_jsonb(c, ch->metadata_json);
      if (staged || b->chunk_model)
        es__copy_text(c, ch->model);
    }
  }
  return es__copy_close(b->s, b->conn, c, NULL);
}

/* The first load of new documents: straight into the tables.  Returns
 * ES_ECONFLICT when a concurrent writer inserted one of the ids first (the
 * caller then redoes the batch on the merge path).  No savepoint: rows
 * written in a subtransaction would carry its xid, not the batch's. */
static es_status write_direct(es_batch *b, es__item *it, size_t n, const char *ids,
                              size_t *chunks) {
  es_status rc = ES_OK;
  /* A chunk set replaces what is there: with a NOT VALID key (adopted
   * databases), orphaned chunks may name one of these new ids. */
  if (!b->fk_valid) {
    const char *v[1] = {ids};
    PGresult *r = es__exec_stmt(b->conn, ES__Q_BATCH_DROP_ORPHANS, 1, v, NULL,
                                NULL, 0);
    if (!es__res_ok(r))
      rc = es__fail_pg(b->s, b->conn->pg, r, "cannot clear chunks of new documents");
    PQclear(r);
  }
  if (rc == ES_OK)
    rc = copy_docs(b, it, n, false);
  if (rc == ES_OK)
    rc = copy_chunks(b, it, n, false, chunks);
  /* Citus reports a COPY's unique violation on a shard as XX000: a
   * concurrent first load of the same ids, as 23505 is on PostgreSQL.  The
   * merge path, in a new transaction, reports anything else again. */
  const char *st = es__last_err(b->s)->sqlstate;
  if (rc != ES_OK && (strcmp(st, "23505") == 0 ||
                      (b->distributed && strcmp(st, "XX000") == 0)))
    return ES_ECONFLICT;
  return rc;
}

/* ---- the merge path ------------------------------------------------------------ */

/* An int[] literal of the ords of the failed items. */
static char *failed_ords(const es__item *it, size_t n) {
  es__buf buf = {0};
  char num[16];
  bool ok = es__buf_append(&buf, "{", 1);
  bool first = true;
  for (size_t i = 0; ok && i < n; i++) {
    if (it[i].out != ES__OUT_FAILED)
      continue;
    int len = snprintf(num, sizeof num, "%s%zu", first ? "" : ",", i);
    ok = es__buf_append(&buf, num, (size_t)len);
    first = false;
  }
  if (!ok || !es__buf_append(&buf, "}", 1)) {
    es__buf_free(&buf);
    return NULL;
  }
  return buf.data;
}

/* Stages the rows to write (documents, then the chunk sets rewritten);
 * *staged_chunks receives how many chunks. */
static es_status stage_rows(es_batch *b, es__item *it, size_t n,
                            size_t *staged_chunks) {
  es_status rc = copy_docs(b, it, n, true);
  if (rc == ES_OK)
    rc = copy_chunks(b, it, n, true, staged_chunks);
  if (rc == ES_OK && *staged_chunks > 0)
    rc = exec(b, "ANALYZE es_stage_chunks", "cannot analyze staged chunks");
  return rc;
}

/* A chunk id may not move between documents: the documents whose staged
 * chunks another document owns fail, and are unstaged. */
static es_status refuse_moved_chunks(es_batch *b, es__item *it, size_t n) {
  PGresult *r = PQexec(
      b->conn->pg,
      "SELECT DISTINCT ON (sc.doc_ord) sc.doc_ord, sc.id, c.document_id "
      "FROM es_stage_chunks sc JOIN chunks c ON c.id = sc.id "
      "WHERE c.document_id <> sc.document_id ORDER BY sc.doc_ord, sc.id");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(b->s, b->conn->pg, r, "cannot check chunk ownership");
    PQclear(r);
    return rc;
  }
  for (int i = 0; i < PQntuples(r); i++) {
    long ord = strtol(PQgetvalue(r, i, 0), NULL, 10);
    if (ord < 0 || (size_t)ord >= n)
      continue;
    char msg[1200];
    snprintf(msg, sizeof msg, "chunk id \"%s\" belongs to document \"%s\"",
             PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
    it[ord].out = ES__OUT_FAILED;
    it[ord].error = strdup(msg);
  }
  bool any = PQntuples(r) > 0;
  PQclear(r);
  if (!any)
    return ES_OK;
  char *ords = failed_ords(it, n);
  if (ords == NULL)
    return es__fail(b->s, ES_ENOMEM, "out of memory");
  es_status rc = exec_ords(b, "DELETE FROM es_stage_docs WHERE ord = ANY ($1::int[])",
                           ords, "cannot unstage documents");
  if (rc == ES_OK)
    rc = exec_ords(b, "DELETE FROM es_stage_chunks WHERE doc_ord = ANY "
                      "($1::int[])",
                   ords, "cannot unstage chunks");
  free(ords);
  return rc;
}

/* Merges the staged documents into embeddings; es_written receives the
 * ids written and whether each was inserted. */
static es_status merge_docs(es_batch *b) {
  return exec(b,
              "WITH up AS (INSERT INTO embeddings AS e (id, text, embedding, "
              "metadata, source_id, content_hash, chunks_hash, model, "
              "updated_at) "
              "SELECT id, text, embedding, metadata, source_id, content_hash, "
              "chunks_hash, model, now() FROM es_stage_docs ORDER BY id "
              "ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, "
              "embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata, "
              "model = EXCLUDED.model, "
              "source_id = EXCLUDED.source_id, "
              "content_hash = EXCLUDED.content_hash, "
              "chunks_hash = COALESCE(EXCLUDED.chunks_hash, e.chunks_hash), "
              "updated_at = EXCLUDED.updated_at "
              /* A document that was not stored when the batch looked, and
               * that a concurrent writer stored just as it is here, is
               * unchanged, not updated.  (On Citus a two-phase commit
               * becomes visible shard by shard, so a batch retried after a
               * collision can see some of the other writer's rows and not
               * yet the rest.) */
              "WHERE e.content_hash IS DISTINCT FROM EXCLUDED.content_hash OR "
              "(EXCLUDED.chunks_hash IS NOT NULL AND "
              "e.chunks_hash IS DISTINCT FROM EXCLUDED.chunks_hash) "
              "RETURNING e.id, (e.xmax = 0)) "
              "INSERT INTO es_written SELECT * FROM up",
              "cannot write documents");
}

/* Replaces the rewritten chunk sets with the staged chunks; *chunks
 * receives how many were written. */
static es_status merge_chunks(es_batch *b, size_t *chunks) {
  es_status rc = exec(b,
                      "DELETE FROM chunks c USING es_stage_docs s WHERE "
                      "s.rewrite_chunks AND c.document_id = s.id AND "
                      "(c.id, s.ord) NOT IN (SELECT id, doc_ord FROM es_stage_chunks)",
                      "cannot delete stale chunks");
  if (rc != ES_OK)
    return rc;
  /* On Citus chunks' key is (document_id, id): the conflict names it. */
  char sql[1024];
  snprintf(sql, sizeof sql,
           "INSERT INTO chunks AS c (id, document_id, chunk_index, text, "
           "embedding, metadata%s) SELECT id, document_id, chunk_index, text, "
           "embedding, metadata%s FROM es_stage_chunks ORDER BY id "
           "ON CONFLICT (%s) DO UPDATE SET chunk_index = EXCLUDED.chunk_index, "
           "text = EXCLUDED.text, embedding = EXCLUDED.embedding, "
           "metadata = EXCLUDED.metadata%s WHERE c.document_id = EXCLUDED.document_id",
           b->chunk_model ? ", model" : "", b->chunk_model ? ", model" : "",
           b->distributed ? "document_id, id" : "id",
           b->chunk_model ? ", model = EXCLUDED.model" : "");
  PGresult *r = PQexec(b->conn->pg, sql);
  if (!es__res_ok(r)) {
    rc = es__fail_pg(b->s, b->conn->pg, r, "cannot write chunks");
  } else {
    size_t wrote = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
    long long want = 0;
    PGresult *q = PQexec(b->conn->pg, "SELECT count(*) FROM es_stage_chunks");
    if (es__res_ok(q))
      want = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
    PQclear(q);
    /* Fewer rows than staged: another transaction took a chunk id after
     * our ownership check.  Fail the batch; bisection will isolate it. */
    if ((long long)wrote != want)
      rc = es__fail(b->s, ES_ECONFLICT, "a chunk id was claimed by another "
                    "document while this batch was written");
    *chunks = wrote;
  }
  PQclear(r);
  return rc;
}

/* Reads which staged documents were inserted or updated; the others were
 * unchanged. */
static es_status read_outcomes(es_batch *b, es__item *it, size_t n) {
  PGresult *r = PQexec(b->conn->pg, "SELECT k.ord, w.inserted FROM es_written w "
                                    "JOIN es_stage_keys k ON k.id = w.id");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(b->s, b->conn->pg, r, "cannot read outcomes");
    PQclear(r);
    return rc;
  }
  for (int i = 0; i < PQntuples(r); i++) {
    long ord = strtol(PQgetvalue(r, i, 0), NULL, 10);
    if (ord >= 0 && (size_t)ord < n)
      it[ord].out = PQgetvalue(r, i, 1)[0] == 't' ? ES__OUT_INSERTED : ES__OUT_UPDATED;
  }
  PQclear(r);
  for (size_t i = 0; i < n; i++) /* staged but not returned: unchanged */
    if (it[i].out == ES__OUT_PENDING)
      it[i].out = ES__OUT_UNCHANGED;
  return ES_OK;
}

/* The merge skipped the staged documents that a concurrent writer stored
 * just so meanwhile (merge_docs): their chunks are not written either.
 * staged: how many documents were staged. */
static es_status unstage_skipped(es_batch *b, size_t staged) {
  PGresult *r = PQexec(b->conn->pg, "SELECT count(*) FROM es_written");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(b->s, b->conn->pg, r, "cannot read outcomes");
    PQclear(r);
    return rc;
  }
  size_t written = (size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  if (written == staged)
    return ES_OK;
  es_status rc = exec(b, "DELETE FROM es_stage_chunks c WHERE NOT EXISTS "
                         "(SELECT 1 FROM es_written w WHERE w.id = c.document_id)",
                      "cannot unstage chunks");
  if (rc == ES_OK)
    rc = exec(b, "UPDATE es_stage_docs s SET rewrite_chunks = false WHERE NOT "
                 "EXISTS (SELECT 1 FROM es_written w WHERE w.id = s.id)",
              "cannot unstage documents");
  return rc;
}

/* Documents that exist or are new and must be written: staged, checked for
 * chunk ids owned by other documents, merged. */
static es_status write_merge(es_batch *b, es__item *it, size_t n, size_t *chunks) {
  size_t staged_chunks = 0, to_write = 0;
  for (size_t i = 0; i < n; i++)
    to_write += it[i].out == ES__OUT_PENDING;
  if (to_write == 0) /* all unchanged: nothing to send */
    return ES_OK;
  es_status rc = stage_rows(b, it, n, &staged_chunks);
  if (rc == ES_OK && staged_chunks > 0)
    rc = refuse_moved_chunks(b, it, n);
  if (rc == ES_OK)
    rc = merge_docs(b);
  if (rc == ES_OK && staged_chunks > 0)
    rc = unstage_skipped(b, to_write);
  if (rc == ES_OK && staged_chunks > 0)
    rc = merge_chunks(b, chunks);
  if (rc == ES_OK)
    rc = read_outcomes(b, it, n);
  return rc;
}

/* Prepares the merge path: staging tables and the stored rows, locked. */
static es_status stage_keys(es_batch *b, es__item *it, size_t n) {
  es_status rc = ES_OK;
  if (!b->temp_ready)
    rc = exec(b, temp_tables, "cannot create staging tables");
  if (rc == ES_OK)
    b->temp_ready = true; /* in this transaction; reset if it fails */
  if (rc == ES_OK)
    rc = copy_keys(b, it, n);
  if (rc == ES_OK)
    rc = exec(b, "ANALYZE es_stage_keys", "cannot analyze staged keys");
  if (rc == ES_OK)
    rc = lock_existing(b, it, n);
  return rc;
}

/* ---- one batch, one transaction ------------------------------------------------ */

/* es_seen holds the ids this session wrote, to tell a duplicate input
 * line from a document stored before.  It lives on the session's
 * connection; on a new one (the old one lost) it is rebuilt from the rows
 * whose updated_at is the now() of one of our committed batches.  Not the
 * rows' xmin: on Citus a row's xmin is its worker's transaction, which the
 * coordinator's txid_current() does not name. */
static es_status ensure_seen(es_batch *b) {
  if (b->seen_ready)
    return ES_OK;
  es_status rc = exec(b, "CREATE TEMP TABLE IF NOT EXISTS es_seen (id text PRIMARY KEY)",
                      "cannot create es_seen");
  if (rc == ES_OK && b->stamps.len > 0) {
    const char *v[1] = {b->stamps.data};
    PGresult *r = PQexecParams(
        b->conn->pg,
        "INSERT INTO es_seen SELECT id FROM embeddings WHERE "
        "(extract(epoch FROM updated_at) * 1000000)::int8 = ANY ($1::int8[]) "
        "ON CONFLICT DO NOTHING",
        1, NULL, v, NULL, NULL, 0);
    if (!es__res_ok(r))
      rc = es__fail_pg(b->s, b->conn->pg, r, "cannot rebuild es_seen");
    PQclear(r);
  }
  if (rc == ES_OK)
    b->seen_ready = true;
  return rc;
}

/* Adds what this batch wrote to es_seen (in its transaction), and notes
 * the transaction's now(), which its rows carry in updated_at. */
static es_status note_written(es_batch *b, bool direct, const char *ids) {
  const char *v[1] = {ids};
  PGresult *r = direct
                    ? PQexecParams(b->conn->pg,
                                   "INSERT INTO es_seen SELECT unnest($1::text[]) "
                                   "ON CONFLICT DO NOTHING",
                                   1, NULL, v, NULL, NULL, 0)
                    : PQexec(b->conn->pg, "INSERT INTO es_seen SELECT id FROM "
                                          "es_written ON CONFLICT DO NOTHING");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(b->s, b->conn->pg, r, "cannot note written ids");
    PQclear(r);
    return rc;
  }
  PQclear(r);
  r = PQexec(b->conn->pg, "SELECT (extract(epoch FROM now()) * 1000000)::int8");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(b->s, b->conn->pg, r, "cannot read the time");
    PQclear(r);
    return rc;
  }
  const char *x = PQgetvalue(r, 0, 0);
  bool ok = b->stamps.len == 0 ? es__buf_append(&b->stamps, "{", 1)
                               : (b->stamps.len--, es__buf_append(&b->stamps, ",", 1));
  ok = ok && es__buf_append(&b->stamps, x, strlen(x)) &&
       es__buf_append(&b->stamps, "}", 1);
  PQclear(r);
  return ok ? ES_OK : es__fail(b->s, ES_ENOMEM, "out of memory");
}

/* Tries the first-load path: when none of ids is stored, COPYs straight
 * into the tables (*direct set).  A concurrent writer that inserted one
 * of them first sends the batch to the merge path in a new transaction. */
/* On Citus the chunks' key is (document_id, id): a chunk id that another
 * document owns does not stop a COPY as on PostgreSQL, so a batch whose
 * chunk ids are stored already takes the merge path, which refuses them.
 * 1 when some are, 0 when none, -1 on failure. */
static int chunk_ids_stored(es_batch *b, es__item *it, size_t n) {
  es__buf ids = {0};
  bool ok = es__buf_append(&ids, "{", 1), first = true;
  for (size_t i = 0; ok && i < n; i++)
    for (size_t j = 0; ok && it[i].doc->has_chunks && j < it[i].doc->n_chunks; j++) {
      ok = es__array_elem(&ids, it[i].doc->chunks[j].id, first);
      first = false;
    }
  if (!ok || !es__buf_append(&ids, "}", 1)) {
    es__buf_free(&ids);
    es__fail(b->s, ES_ENOMEM, "out of memory");
    return -1;
  }
  if (first) {
    es__buf_free(&ids);
    return 0;
  }
  const char *v[1] = {ids.data};
  PGresult *r = PQexecParams(b->conn->pg,
                             "SELECT EXISTS (SELECT 1 FROM chunks WHERE id = ANY ($1::text[]))",
                             1, NULL, v, NULL, NULL, 0);
  es__buf_free(&ids);
  int found = -1;
  if (!es__res_ok(r))
    es__fail_pg(b->s, b->conn->pg, r, "cannot probe stored chunks");
  else
    found = PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  return found;
}

static es_status try_direct(es_batch *b, es__item *it, size_t n, const char *ids,
                            size_t *chunks, bool *direct) {
  long long stored = es__batch_count_stored(b, ids);
  if (stored < 0)
    return es__last_err(b->s)->code;
  if (stored > 0)
    return ES_OK;
  if (b->distributed) {
    int owned = chunk_ids_stored(b, it, n);
    if (owned != 0)
      return owned < 0 ? es__last_err(b->s)->code : ES_OK;
  }
  es_status rc = write_direct(b, it, n, ids, chunks);
  if (rc == ES_OK) {
    *direct = true;
    for (size_t i = 0; i < n; i++)
      it[i].out = ES__OUT_INSERTED;
  } else if (rc == ES_ECONFLICT) {
    es__rollback(b->conn);
    reset_pending(it, n);
    *chunks = 0;
    rc = es__begin(b->s, b->conn);
  }
  return rc;
}

/* Writes it[0..n) as one transaction.  Outcomes are left in the items;
 * on failure everything is rolled back and the items reset. */
static es_status write_batch(es_batch *b, es__item *it, size_t n, bool *direct_out) {
  size_t chunks = 0;
  bool direct = false, had_temp = b->temp_ready;
  char *ids = es__batch_ids(it, n);
  if (ids == NULL)
    return es__fail(b->s, ES_ENOMEM, "out of memory");
  es_status rc = ensure_seen(b);
  if (rc == ES_OK)
    rc = es__begin(b->s, b->conn);
  if (rc == ES_OK)
    rc = try_direct(b, it, n, ids, &chunks, &direct);
  if (rc == ES_OK && !direct)
    rc = stage_keys(b, it, n);
  if (rc == ES_OK && !direct)
    rc = write_merge(b, it, n, &chunks);
  if (rc == ES_OK)
    rc = note_written(b, direct, ids);
  if (rc == ES_OK)
    rc = es__commit(b->s, b->conn);
  free(ids);
  if (rc != ES_OK) {
    es__rollback(b->conn);
    reset_pending(it, n);
    b->temp_ready = had_temp; /* a rolled back CREATE TEMP TABLE is gone */
    return rc; /* a noted time that did not commit matches no row of ours */
  }
  b->res.chunks_written += chunks;
  b->res.batches++;
  *direct_out = direct;
  if (b->res.batches % COMPACT_EVERY == 0)
    es__batch_compact_counts(b);
  return ES_OK;
}

/* ---- retries and bisection -------------------------------------------------- */

/* Records one batch's transaction in the metrics. */
static void record_metric(es_batch *b, double ms, size_t n, bool ok,
                          bool direct) {
  char meta[96];
  snprintf(meta, sizeof meta, "{\"docs\": %zu, \"path\": \"%s\"}", n,
           direct ? "copy" : "merge");
  es__metric(b->s, "ingest_batch", ms, ok, ok ? NULL : es__last_err(b->s)->msg,
             meta);
}

/* Whether a failure is PostgreSQL refusing some row's data (a constraint,
 * a data exception, a limit, a user's trigger raising): then splitting the
 * batch finds the rows at fault.  Anything else concerns the whole batch. */
static bool rejects_data(const es__err *e) {
  const char *st = e->sqlstate;
  if (e->transient || st[0] == '\0')
    return e->code == ES_ECONFLICT && !e->transient; /* a chunk claimed meanwhile */
  return strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0 ||
         strncmp(st, "54", 2) == 0 || strncmp(st, "P0", 2) == 0;
}

/* Writes it[0..n) as one batch, retrying transient failures; the
 * outcomes are applied when it commits. */
static es_status write_retried(es_batch *b, es__item *it, size_t n) {
  es__retry rt;
  es_status rc = ES_OK;
  es__retry_init(&rt, b->s, true);
  while (es__retry_next(&rt)) {
    bool direct = false;
    double t0 = es__clock_ms();
    es__clear_err(b->s);
    rc = es__batch_conn(b);
    if (rc == ES_OK)
      rc = write_batch(b, it, n, &direct);
    if (rc != ES_OK)
      es__explain_lock_wait(b->s, b->conn);
    record_metric(b, es__elapsed_ms(t0), n, rc == ES_OK, direct);
    if (rc == ES_OK) {
      es__batch_apply(b, it, n);
      return ES_OK;
    }
    if (!es__last_err(b->s)->transient)
      break;
  }
  return rc;
}

/* Writes a range; a range the database rejects is split in halves until
 * the documents at fault are isolated. */
es_status es__batch_write_range(es_batch *b, es__item *it, size_t n) {
  assert(b != NULL && it != NULL && n > 0);
  es_status rc = write_retried(b, it, n);
  if (rc == ES_OK)
    return ES_OK;
  es__err *e = es__last_err(b->s);
  if (!rejects_data(e)) {
    /* The server is gone, a timeout, out of memory or disk, no rights:
     * nothing of this range landed, and bisecting would not help. */
    for (size_t i = 0; i < n; i++)
      es__batch_fail_item(b, &it[i], rc, e->msg);
    return rc;
  }
  if (n == 1) {
    char msg[sizeof e->msg + 32];
    snprintf(msg, sizeof msg, "rejected by the database: %s", e->msg);
    es__batch_fail_item(b, &it[0], rc, msg);
    return ES_OK;
  }
  size_t half = n / 2;
  rc = es__batch_write_range(b, it, half);
  if (rc != ES_OK) {
    for (size_t i = half; i < n; i++)
      es__batch_fail_item(b, &it[i], rc, es__last_err(b->s)->msg);
    return rc;
  }
  return es__batch_write_range(b, it + half, n - half);
}
