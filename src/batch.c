/* batch.c - batch upsert: the write path at COPY speed, with exact
 * per-document accounting.
 *
 * A batch is one transaction:
 *  1. COPY the batch's keys (ord, id, content hashes) into a temp table and
 *     lock the documents that exist, reading their stored hashes.
 *  2. No document exists (a first load): COPY documents and chunks straight
 *     into their tables.  A concurrent writer that got in first makes COPY
 *     fail with a unique violation; the batch then falls back to 3.
 *  3. Otherwise only new and changed documents are COPYed, into a staging
 *     table, and merged with one INSERT ... ON CONFLICT; chunk sets are
 *     rewritten only where their hash changed.  Unchanged documents cost a
 *     key and an index probe: they are neither sent nor rewritten.
 * A batch that PostgreSQL rejects is split in halves until the documents
 * at fault are isolated; transient failures (lost connection, deadlock)
 * retry the batch with backoff. */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "copy.h"
#include "schema.h"

#define DEFAULT_BATCH 1000
#define DEFER_INDEX_MIN 10000
#define COMPACT_EVERY 100 /* batches */
#define DEFER_LOCK_WAIT_MS 2000

typedef enum outcome {
  OUT_PENDING,
  OUT_INSERTED,
  OUT_UPDATED,
  OUT_UNCHANGED,
  OUT_FAILED
} outcome;

typedef struct item {
  const es_doc *doc;
  size_t position;
  uint8_t content_hash[ES__HASH_BYTES];
  uint8_t chunks_hash[ES__HASH_BYTES];
  /* set inside a batch's transaction, applied once it commits */
  outcome out;
  bool exists;         /* stored before this batch */
  bool rewrite_chunks; /* its chunk set must be written */
  bool seen;           /* landed earlier in this session: a duplicate */
  bool hashed;         /* content_hash and chunks_hash are computed */
  char *error;         /* OUT_FAILED: why (a chunk owned by another doc) */
  char *old_source;    /* the stored source, when this write moves it */
  bool failed;         /* recorded as failed */
  bool folded;         /* a later valid occurrence of its id stands for it */
  long prev;           /* the previous occurrence of its id in the input
                          (index into the call's items), or -1 */
  size_t src;          /* its index among the call's items */
} item;

struct es_batch {
  es_store *s;
  es__conn *conn;
  es_batch_options opts;
  es_batch_result res;
  size_t cap_failures;
  size_t next_position;
  size_t processed;
  int dim;
  es_metric metric;
  bool temp_ready;     /* temp tables exist on conn */
  bool fk_valid;       /* chunks' key is validated: no orphaned chunks */
  es__buf xids;        /* "{x1,x2,...}": transactions of our batches */
  bool decided_index;  /* the defer decision was made */
  bool index_deferred; /* this session builds the HNSW index at its end */
  char note[1100];     /* why the index was not deferred, or "" */
  bool details_lost;   /* this call could not record a failure's details */
  es__copy copy;
};

void es_batch_options_init(es_batch_options *o) {
  memset(o, 0, sizeof *o);
  o->batch_size = DEFAULT_BATCH;
}

/* ---- accounting ----------------------------------------------------------- */

static void add_failure(es_batch *b, const char *id, size_t position,
                        es_status status, const char *msg) {
  es_batch_result *r = &b->res;
  r->failed++;
  if (r->n_failures == b->cap_failures) {
    size_t cap = b->cap_failures ? b->cap_failures * 2 : 64;
    es_batch_failure *g = realloc(r->failures, cap * sizeof *g);
    if (g == NULL) {
      b->details_lost = true; /* counted, not detailed: ES_ENOMEM */
      return;
    }
    r->failures = g;
    b->cap_failures = cap;
  }
  es_batch_failure *f = &r->failures[r->n_failures++];
  f->id = id ? strdup(id) : NULL;
  f->position = position;
  f->status = status;
  f->error = strdup(msg ? msg : "unknown error");
  if (f->error)
    es__utf8_scrub(f->error);
  if (f->error == NULL || (id != NULL && f->id == NULL))
    b->details_lost = true;
}

/* Records an item's failure (the item may then fall back to an earlier
 * occurrence of its id, see es_batch_add). */
static void fail_item(es_batch *b, item *x, es_status status, const char *msg) {
  x->failed = true;
  add_failure(b, x->doc->id, x->position, status, msg);
}

/* Documents accounted for so far. */
static size_t accounted(const es_batch_result *r) {
  return r->inserted + r->updated + r->unchanged + r->failed + r->duplicates;
}

static const char *usable_id(const es_doc *d);

/* Records every document of a call as failed (out of memory before any
 * could be looked at). */
static void fail_all(es_batch *b, const es_doc *docs, size_t n,
                     const size_t *positions) {
  for (size_t i = 0; i < n; i++)
    add_failure(b, usable_id(&docs[i]), positions ? positions[i] : b->next_position + i,
                ES_ENOMEM, "out of memory");
  b->next_position += n;
}

/* An id fit to be quoted in results: valid, bounded UTF-8. */
static const char *usable_id(const es_doc *d) {
  if (d->id == NULL || d->id[0] == '\0')
    return NULL;
  size_t n = strlen(d->id);
  if (n > ES_MAX_ID_BYTES || es__utf8_invalid_at(d->id, n) >= 0)
    return NULL;
  return d->id;
}

static void reset_pending(item *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    it[i].out = OUT_PENDING;
    it[i].exists = it[i].seen = false;
    it[i].rewrite_chunks = it[i].doc->has_chunks;
    free(it[i].error);
    it[i].error = NULL;
    free(it[i].old_source);
    it[i].old_source = NULL;
  }
}

/* Computes the item's content hashes once, when first needed: on the
 * first-load path while its row is encoded into the COPY stream, so that
 * hashing overlaps the server's work on the rows sent before (unless the
 * prehash thread below did it during the previous batch). */
static void hash_item(item *x) {
  if (x->hashed)
    return;
  es__doc_content_hash(x->doc, x->content_hash);
  if (x->doc->has_chunks)
    es__doc_chunks_hash(x->doc, x->chunks_hash);
  x->hashed = true;
}

/* Hashes the next batch on a thread of its own while the current one is
 * written: the first-load path would otherwise hash a batch's documents
 * while the server waits for their rows. */
typedef struct prehash {
  item *it;
  size_t n;
  pthread_t thread;
  bool started;
} prehash;

static void *prehash_run(void *arg) {
  prehash *p = arg;
  for (size_t i = 0; i < p->n; i++)
    hash_item(&p->it[i]);
  return NULL;
}

/* Starts hashing it[0..n); without a thread, hash_item does it later. */
static void prehash_start(prehash *p, item *it, size_t n) {
  *p = (prehash){.it = it, .n = n};
  p->started = n > 0 && pthread_create(&p->thread, NULL, prehash_run, p) == 0;
}

static void prehash_wait(prehash *p) {
  if (p->started)
    pthread_join(p->thread, NULL);
  p->started = false;
}

/* Applies the outcomes of a committed batch to the totals, and tells the
 * search cache which sources changed (only now that they are committed). */
static void apply(es_batch *b, item *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (it[i].out == OUT_INSERTED || it[i].out == OUT_UPDATED) {
      es__cache_invalidate_source(b->s->cache, it[i].doc->source_id);
      if (it[i].old_source)
        es__cache_invalidate_source(b->s->cache, it[i].old_source);
    }
    if (it[i].out == OUT_FAILED) {
      fail_item(b, &it[i], ES_ECONFLICT, it[i].error);
    } else if (it[i].seen) {
      b->res.duplicates++;
    } else if (it[i].out == OUT_INSERTED) {
      b->res.inserted++;
    } else if (it[i].out == OUT_UPDATED) {
      b->res.updated++;
    } else {
      b->res.unchanged++;
    }
  }
}

/* ---- connection and temp tables ----------------------------------------------- */

static es_status ensure_conn(es_batch *b) {
  if (b->conn && PQstatus(b->conn->pg) == CONNECTION_OK)
    return ES_OK;
  if (b->conn) {
    es__discard(b->s, b->conn);
    b->conn = NULL;
  }
  b->temp_ready = false;
  return es__acquire(b->s, &b->conn);
}

static const char temp_tables[] =
    "CREATE TEMP TABLE IF NOT EXISTS es_stage_keys (ord int, id text, "
    "content_hash bytea, chunks_hash bytea) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS es_stage_docs (ord int, id text, "
    "text text, embedding vector, metadata jsonb, source_id text, "
    "content_hash bytea, chunks_hash bytea, rewrite_chunks bool) "
    "ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS es_stage_chunks (doc_ord int, id text, "
    "document_id text, chunk_index int, text text, embedding vector, "
    "metadata jsonb) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS es_written (id text, inserted bool) "
    "ON COMMIT DELETE ROWS";

/* ---- the statements of a batch -------------------------------------------- */

static es_status exec(es_batch *b, const char *sql, const char *what) {
  return es__exec(b->s, b->conn, sql, what);
}

/* Runs a query with one int[] parameter (ords); NULL result on error. */
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

/* COPYs the keys of it[0..n) (ord = index in it). */
static es_status copy_keys(es_batch *b, item *it, size_t n) {
  es__copy *c = &b->copy;
  es_status rc = es__copy_open(b->s, b->conn,
                               "COPY es_stage_keys FROM STDIN (FORMAT binary)", c);
  if (rc != ES_OK)
    return rc;
  for (size_t i = 0; i < n; i++) {
    hash_item(&it[i]);
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

/* Locks the batch's stored documents (in id order, so that concurrent
 * batches do not deadlock) and compares their hashes.  A document whose
 * row was written by one of this session's earlier batches (its xmin is
 * one of our transactions) is a duplicate of an earlier input line. */
static es_status lock_existing(es_batch *b, item *it, size_t n, size_t *existing) {
  const char *v[1] = {b->xids.len ? b->xids.data : "{}"};
  PGresult *r = PQexecParams(
      b->conn->pg,
      "SELECT k.ord, e.content_hash IS NOT DISTINCT FROM k.content_hash, "
      "k.chunks_hash IS NULL OR e.chunks_hash IS NOT DISTINCT FROM "
      "k.chunks_hash, e.xmin = ANY ($1::xid[]), e.source_id "
      "FROM es_stage_keys k JOIN embeddings e ON e.id = k.id "
      "ORDER BY e.id FOR UPDATE OF e",
      1, NULL, v, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(b->s, b->conn->pg, r, "cannot lock stored documents");
    PQclear(r);
    return rc;
  }
  *existing = (size_t)PQntuples(r);
  for (int i = 0; i < PQntuples(r); i++) {
    long ord = strtol(PQgetvalue(r, i, 0), NULL, 10);
    if (ord < 0 || (size_t)ord >= n)
      continue;
    item *x = &it[ord];
    bool same_content = PQgetvalue(r, i, 1)[0] == 't';
    bool same_chunks = PQgetvalue(r, i, 2)[0] == 't';
    x->exists = true;
    x->seen = PQgetvalue(r, i, 3)[0] == 't';
    const char *was = PQgetisnull(r, i, 4) ? NULL : PQgetvalue(r, i, 4);
    if (was && (x->doc->source_id == NULL || strcmp(was, x->doc->source_id) != 0))
      x->old_source = strdup(was); /* moving out of a source changes it */
    x->rewrite_chunks = x->doc->has_chunks && !same_chunks;
    if (same_content && same_chunks)
      x->out = OUT_UNCHANGED;
  }
  PQclear(r);
  return ES_OK;
}

/* A text[] literal of the items' ids. */
static char *ids_literal(const item *it, size_t n) {
  es__buf arr = {0};
  bool ok = es__buf_append(&arr, "{", 1);
  for (size_t i = 0; ok && i < n; i++) {
    ok = (i == 0 || es__buf_append(&arr, ",", 1)) && es__buf_append(&arr, "\"", 1);
    for (const char *p = it[i].doc->id; ok && *p; p++)
      ok = ((*p != '"' && *p != '\\') || es__buf_append(&arr, "\\", 1)) &&
           es__buf_append(&arr, p, 1);
    ok = ok && es__buf_append(&arr, "\"", 1);
  }
  if (!ok || !es__buf_append(&arr, "}", 1)) {
    es__buf_free(&arr);
    return NULL;
  }
  return arr.data;
}

/* How many of ids (a text[] literal) are stored; -1 on failure. */
static long long count_stored(es_batch *b, const char *ids) {
  const char *v[1] = {ids};
  PGresult *r = es__exec_stmt(b->conn, ES__Q_BATCH_PROBE, 1, v, NULL, NULL, 0);
  long long n = -1;
  if (es__res_ok(r))
    n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  else
    es__fail_pg(b->s, b->conn->pg, r, "cannot probe stored documents");
  PQclear(r);
  return n;
}

/* Streams the document rows of the items to write into their table (or
 * the staging table). */
static es_status copy_docs(es_batch *b, item *it, size_t n, bool staged) {
  es__copy *c = &b->copy;
  es_status rc = es__copy_open(
      b->s, b->conn,
      staged ? "COPY es_stage_docs FROM STDIN (FORMAT binary)"
             : "COPY embeddings (id, text, embedding, metadata, source_id, "
               "content_hash, chunks_hash) FROM STDIN (FORMAT binary)",
      c);
  if (rc != ES_OK)
    return rc;
  for (size_t i = 0; i < n; i++) {
    const es_doc *d = it[i].doc;
    if (it[i].out != OUT_PENDING)
      continue;
    hash_item(&it[i]);
    es__copy_row(c, staged ? 9 : 7);
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
  }
  return es__copy_close(b->s, b->conn, c, NULL);
}

/* Streams the chunks of the items whose chunk set is rewritten. */
static es_status copy_chunks(es_batch *b, item *it, size_t n, bool staged,
                             size_t *count) {
  es__copy *c = &b->copy;
  *count = 0;
  for (size_t i = 0; i < n; i++)
    if (it[i].out == OUT_PENDING && it[i].rewrite_chunks)
      *count += it[i].doc->n_chunks;
  if (*count == 0)
    return ES_OK;
  es_status rc = es__copy_open(
      b->s, b->conn,
      staged ? "COPY es_stage_chunks FROM STDIN (FORMAT binary)"
             : "COPY chunks (id, document_id, chunk_index, text, embedding, "
               "metadata) FROM STDIN (FORMAT binary)",
      c);
  if (rc != ES_OK)
    return rc;
  for (size_t i = 0; i < n; i++) {
    const es_doc *d = it[i].doc;
    if (it[i].out != OUT_PENDING || !it[i].rewrite_chunks)
      continue;
    for (size_t k = 0; k < d->n_chunks; k++) {
      const es_chunk *ch = &d->chunks[k];
      es__copy_row(c, staged ? 7 : 6);
      if (staged)
        es__copy_int4(c, (int32_t)i);
      es__copy_text(c, ch->id);
      es__copy_text(c, d->id);
      es__copy_int4(c, (int32_t)k);
      es__copy_text(c, ch->text ? ch->text : "");
      es__copy_vector(c, ch->embedding, ch->dim);
      es__copy_jsonb(c, ch->metadata_json);
    }
  }
  return es__copy_close(b->s, b->conn, c, NULL);
}

/* The first load of new documents: straight into the tables.  Returns
 * ES_ECONFLICT when a concurrent writer inserted one of the ids first (the
 * caller then redoes the batch on the merge path).  No savepoint: rows
 * written in a subtransaction would carry its xid, not the batch's. */
static es_status write_direct(es_batch *b, item *it, size_t n, const char *ids,
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
  if (rc != ES_OK && strcmp(es__last_err(b->s)->sqlstate, "23505") == 0)
    return ES_ECONFLICT;
  return rc;
}

/* Builds an int[] literal of the ords whose flag is set. */
static char *ords_literal(const item *it, size_t n, bool (*pick)(const item *)) {
  es__buf buf = {0};
  char num[16];
  bool ok = es__buf_append(&buf, "{", 1);
  bool first = true;
  for (size_t i = 0; ok && i < n; i++) {
    if (!pick(&it[i]))
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

static bool is_failed(const item *x) { return x->out == OUT_FAILED; }

/* Documents that exist or are new and must be written: staged, checked for
 * chunk ids owned by other documents, merged. */
static es_status write_merge(es_batch *b, item *it, size_t n, size_t *chunks) {
  size_t staged_chunks = 0, to_write = 0;
  for (size_t i = 0; i < n; i++)
    to_write += it[i].out == OUT_PENDING;
  if (to_write == 0) /* all unchanged: nothing to send */
    return ES_OK;
  es_status rc = copy_docs(b, it, n, true);
  if (rc == ES_OK)
    rc = copy_chunks(b, it, n, true, &staged_chunks);
  if (rc == ES_OK && staged_chunks > 0)
    rc = exec(b, "ANALYZE es_stage_chunks", "cannot analyze staged chunks");
  if (rc != ES_OK)
    return rc;

  /* A chunk id may not move between documents. */
  if (staged_chunks > 0) {
    PGresult *r = PQexec(
        b->conn->pg,
        "SELECT DISTINCT ON (sc.doc_ord) sc.doc_ord, sc.id, c.document_id "
        "FROM es_stage_chunks sc JOIN chunks c ON c.id = sc.id "
        "WHERE c.document_id <> sc.document_id ORDER BY sc.doc_ord, sc.id");
    if (!es__res_ok(r)) {
      rc = es__fail_pg(b->s, b->conn->pg, r, "cannot check chunk ownership");
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
      it[ord].out = OUT_FAILED;
      it[ord].error = strdup(msg);
    }
    bool any = PQntuples(r) > 0;
    PQclear(r);
    if (any) {
      char *ords = ords_literal(it, n, is_failed);
      if (ords == NULL)
        return es__fail(b->s, ES_ENOMEM, "out of memory");
      rc = exec_ords(b, "DELETE FROM es_stage_docs WHERE ord = ANY ($1::int[])",
                     ords, "cannot unstage documents");
      if (rc == ES_OK)
        rc = exec_ords(b, "DELETE FROM es_stage_chunks WHERE doc_ord = ANY "
                          "($1::int[])",
                       ords, "cannot unstage chunks");
      free(ords);
      if (rc != ES_OK)
        return rc;
    }
  }

  rc = exec(b,
            "WITH up AS (INSERT INTO embeddings AS e (id, text, embedding, "
            "metadata, source_id, content_hash, chunks_hash) "
            "SELECT id, text, embedding, metadata, source_id, content_hash, "
            "chunks_hash FROM es_stage_docs ORDER BY id "
            "ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, "
            "embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata, "
            "source_id = EXCLUDED.source_id, "
            "content_hash = EXCLUDED.content_hash, "
            "chunks_hash = COALESCE(EXCLUDED.chunks_hash, e.chunks_hash), "
            "updated_at = now() RETURNING e.id, (e.xmax = 0)) "
            "INSERT INTO es_written SELECT * FROM up",
            "cannot write documents");
  if (rc != ES_OK || staged_chunks == 0)
    goto outcomes;
  rc = exec(b,
            "DELETE FROM chunks c USING es_stage_docs s WHERE s.rewrite_chunks "
            "AND c.document_id = s.id AND (c.id, s.ord) NOT IN "
            "(SELECT id, doc_ord FROM es_stage_chunks)",
            "cannot delete stale chunks");
  if (rc != ES_OK)
    goto outcomes;
  PGresult *r = PQexec(
      b->conn->pg,
      "INSERT INTO chunks AS c (id, document_id, chunk_index, text, "
      "embedding, metadata) SELECT id, document_id, chunk_index, text, "
      "embedding, metadata FROM es_stage_chunks ORDER BY id "
      "ON CONFLICT (id) DO UPDATE SET chunk_index = EXCLUDED.chunk_index, "
      "text = EXCLUDED.text, embedding = EXCLUDED.embedding, "
      "metadata = EXCLUDED.metadata WHERE c.document_id = EXCLUDED.document_id");
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
outcomes:
  if (rc != ES_OK)
    return rc;
  r = PQexec(b->conn->pg, "SELECT k.ord, w.inserted FROM es_written w "
                          "JOIN es_stage_keys k ON k.id = w.id");
  if (!es__res_ok(r)) {
    rc = es__fail_pg(b->s, b->conn->pg, r, "cannot read outcomes");
    PQclear(r);
    return rc;
  }
  for (int i = 0; i < PQntuples(r); i++) {
    long ord = strtol(PQgetvalue(r, i, 0), NULL, 10);
    if (ord >= 0 && (size_t)ord < n)
      it[ord].out = PQgetvalue(r, i, 1)[0] == 't' ? OUT_INSERTED : OUT_UPDATED;
  }
  PQclear(r);
  for (size_t i = 0; i < n; i++) /* staged but not returned: unchanged */
    if (it[i].out == OUT_PENDING)
      it[i].out = OUT_UNCHANGED;
  return ES_OK;
}

/* Prepares the merge path: staging tables and the stored rows, locked. */
static es_status stage_keys(es_batch *b, item *it, size_t n) {
  es_status rc = ES_OK;
  if (!b->temp_ready)
    rc = exec(b, temp_tables, "cannot create staging tables");
  if (rc == ES_OK)
    b->temp_ready = true; /* in this transaction; reset if it fails */
  if (rc == ES_OK)
    rc = copy_keys(b, it, n);
  if (rc == ES_OK)
    rc = exec(b, "ANALYZE es_stage_keys", "cannot analyze staged keys");
  size_t existing;
  if (rc == ES_OK)
    rc = lock_existing(b, it, n, &existing);
  return rc;
}

/* Remembers this transaction's id, to recognise our own rows later. */
static es_status note_xid(es_batch *b) {
  PGresult *r = PQexec(b->conn->pg, "SELECT txid_current() % 4294967296");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(b->s, b->conn->pg, r, "cannot read the transaction id");
    PQclear(r);
    return rc;
  }
  const char *x = PQgetvalue(r, 0, 0);
  bool ok = b->xids.len == 0 ? es__buf_append(&b->xids, "{", 1)
                             : (b->xids.len--, es__buf_append(&b->xids, ",", 1));
  ok = ok && es__buf_append(&b->xids, x, strlen(x)) && es__buf_append(&b->xids, "}", 1);
  PQclear(r);
  return ok ? ES_OK : es__fail(b->s, ES_ENOMEM, "out of memory");
}

/* Folds the counters' delta rows (one per key and statement) so that
 * `stats` keeps summing few rows after long loads.  Not fatal. */
static void compact_counts(es_batch *b) {
  PQclear(PQexec(b->conn->pg, "SELECT embstore_counts_compact()"));
}

/* Writes it[0..n) as one transaction.  Outcomes are left in the items;
 * on failure everything is rolled back and the items reset. */
static es_status write_batch(es_batch *b, item *it, size_t n, bool *direct_out) {
  size_t chunks = 0;
  bool direct = false, had_temp = b->temp_ready;
  char *ids = ids_literal(it, n);
  if (ids == NULL)
    return es__fail(b->s, ES_ENOMEM, "out of memory");
  es_status rc = es__begin(b->s, b->conn);
  long long stored = rc == ES_OK ? count_stored(b, ids) : -1;
  if (rc == ES_OK && stored < 0)
    rc = es__last_err(b->s)->code;
  if (rc == ES_OK && stored == 0) {
    rc = write_direct(b, it, n, ids, &chunks);
    if (rc == ES_OK) {
      direct = true;
      for (size_t i = 0; i < n; i++)
        it[i].out = OUT_INSERTED;
    } else if (rc == ES_ECONFLICT) {
      /* A concurrent writer inserted one of these ids: start again on the
       * merge path, in a new transaction. */
      es__rollback(b->conn);
      reset_pending(it, n);
      chunks = 0;
      rc = es__begin(b->s, b->conn);
    }
  }
  if (rc == ES_OK && !direct)
    rc = stage_keys(b, it, n);
  if (rc == ES_OK && !direct)
    rc = write_merge(b, it, n, &chunks);
  if (rc == ES_OK)
    rc = note_xid(b);
  if (rc == ES_OK)
    rc = es__commit(b->s, b->conn);
  free(ids);
  if (rc != ES_OK) {
    es__rollback(b->conn);
    reset_pending(it, n);
    b->temp_ready = had_temp; /* a rolled back CREATE TEMP TABLE is gone */
    return rc; /* a noted xid that did not commit matches no row: harmless */
  }
  b->res.chunks_written += chunks;
  b->res.batches++;
  *direct_out = direct;
  if (b->res.batches % COMPACT_EVERY == 0)
    compact_counts(b);
  return ES_OK;
}

/* ---- retries and bisection -------------------------------------------------- */

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void record_metric(es_batch *b, double ms, size_t n, bool ok,
                          bool direct) {
  char meta[96];
  snprintf(meta, sizeof meta, "{\"docs\": %zu, \"path\": \"%s\"}", n,
           direct ? "copy" : "merge");
  es__metric(b->s, "ingest_batch", ms, ok, ok ? NULL : es__last_err(b->s)->msg,
             meta);
}

static double elapsed_ms(const struct timespec *a) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - a->tv_sec) * 1e3 +
         (double)(now.tv_nsec - a->tv_nsec) / 1e6;
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

/* Writes it[0..n): retries transient failures, bisects rejected batches.
 * Returns ES_OK or the failure that makes writing impossible (the items
 * are then recorded as failed). */
static es_status write_range(es_batch *b, item *it, size_t n) {
  int delay = b->s->opts.retry_backoff_ms > 0 ? b->s->opts.retry_backoff_ms : 1;
  es_status rc = ES_OK;
  for (int attempt = 0; attempt <= b->s->opts.max_retries; attempt++) {
    struct timespec t0;
    bool direct = false;
    if (attempt > 0) {
      sleep_ms(delay);
      delay *= 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    es__clear_err(b->s);
    rc = ensure_conn(b);
    if (rc == ES_OK)
      rc = write_batch(b, it, n, &direct);
    record_metric(b, elapsed_ms(&t0), n, rc == ES_OK, direct);
    if (rc == ES_OK) {
      apply(b, it, n);
      return ES_OK;
    }
    if (!es__last_err(b->s)->transient)
      break;
  }
  es__err *e = es__last_err(b->s);
  if (!rejects_data(e)) {
    /* The server is gone, a timeout, out of memory or disk, no rights:
     * nothing of this range landed, and bisecting would not help. */
    for (size_t i = 0; i < n; i++)
      fail_item(b, &it[i], rc, e->msg);
    return rc;
  }
  if (n == 1) {
    char msg[sizeof e->msg + 32];
    snprintf(msg, sizeof msg, "rejected by the database: %s", e->msg);
    fail_item(b, &it[0], rc, msg);
    return ES_OK;
  }
  size_t half = n / 2;
  rc = write_range(b, it, half);
  if (rc != ES_OK) {
    for (size_t i = half; i < n; i++)
      fail_item(b, &it[i], rc, es__last_err(b->s)->msg);
    return rc;
  }
  return write_range(b, it + half, n - half);
}

/* ---- preparing the input ------------------------------------------------------ */

typedef struct key {
  const char *id;
  size_t index;
} key;

static int cmp_key(const void *a, const void *b) {
  const key *x = a, *y = b;
  int c = strcmp(x->id, y->id);
  if (c != 0)
    return c;
  return x->index < y->index ? -1 : x->index > y->index;
}

/* Among valid items with the same id, the last stands for the others:
 * they are marked folded, each linked from the next occurrence (so that a
 * failing last one can fall back on the one before).  *count receives how
 * many were folded; false when out of memory. */
static bool fold_duplicates(item *it, size_t n, size_t *count) {
  size_t folded = 0;
  *count = 0;
  for (size_t i = 0; i < n; i++)
    it[i].prev = -1;
  if (n < 2)
    return true;
  key *keys = malloc(n * sizeof *keys);
  if (keys == NULL)
    return false;
  for (size_t i = 0; i < n; i++)
    keys[i] = (key){it[i].doc->id, i};
  qsort(keys, n, sizeof *keys, cmp_key);
  for (size_t i = 0; i + 1 < n; i++)
    if (strcmp(keys[i].id, keys[i + 1].id) == 0) {
      it[keys[i].index].folded = true;
      it[keys[i + 1].index].prev = (long)keys[i].index;
      folded++;
    }
  free(keys);
  *count = folded;
  return true;
}

/* A chunk id may belong to one document of the batch only: later claims
 * fail. */
static void check_chunk_claims(es_batch *b, item *it, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += it[i].doc->has_chunks ? it[i].doc->n_chunks : 0;
  if (total < 2)
    return;
  key *keys = malloc(total * sizeof *keys);
  if (keys == NULL)
    return;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t c = 0; it[i].doc->has_chunks && c < it[i].doc->n_chunks; c++)
      keys[k++] = (key){it[i].doc->chunks[c].id, i};
  qsort(keys, total, sizeof *keys, cmp_key);
  for (size_t i = 0; i + 1 < total; i++) {
    if (strcmp(keys[i].id, keys[i + 1].id) != 0 ||
        keys[i].index == keys[i + 1].index)
      continue;
    item *later = &it[keys[i + 1].index];
    if (later->failed)
      continue;
    char msg[1300];
    snprintf(msg, sizeof msg, "chunk id \"%s\" is also used by document "
             "\"%s\" earlier in the input", keys[i].id, it[keys[i].index].doc->id);
    fail_item(b, later, ES_ECONFLICT, msg);
  }
  free(keys);
}

/* Moves the items still to write to the front, in order (the failed ones
 * after them); returns their number.  tmp has room for n items. */
static size_t partition_ready(item *it, size_t n, item *tmp) {
  size_t w = 0, f = 0;
  for (size_t i = 0; i < n; i++)
    if (it[i].failed)
      tmp[f++] = it[i];
    else
      it[w++] = it[i];
  memcpy(it + w, tmp, f * sizeof *it);
  return w;
}

/* ---- the deferred HNSW index ---------------------------------------------------- */

static const es__index_def *hnsw_def(es_metric metric) {
  size_t n;
  const es__index_def *defs = es__required_indexes(metric, &n);
  for (size_t i = 0; i < n; i++)
    if (strstr(defs[i].key, "hnsw"))
      return &defs[i];
  return NULL;
}

/* Share of the first (up to 1,000) ids that are stored already. */
static double stored_share(es_batch *b, const item *it, size_t n) {
  size_t m = n < 1000 ? n : 1000;
  char *ids = m > 0 ? ids_literal(it, m) : NULL;
  double share = 1.0; /* when in doubt, do not drop the index */
  long long stored = ids ? count_stored(b, ids) : -1;
  if (stored >= 0)
    share = (double)stored / (double)m;
  free(ids);
  return share;
}

/* Whether a load of total documents, the first n of them it, should build
 * the HNSW index afterwards (see es_defer_index). */
static bool worth_deferring(es_batch *b, const item *it, size_t n, size_t total) {
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
  es_status rc = exec(b, "SELECT pg_advisory_lock_shared(" ES__DEFER_LOCK ")",
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
static void maybe_defer_index(es_batch *b, const item *it, size_t n) {
  if (b->decided_index)
    return;
  b->decided_index = true;
  size_t total = b->opts.total > n ? b->opts.total : n;
  if (b->index_deferred || ensure_conn(b) != ES_OK ||
      !worth_deferring(b, it, n, total))
    return;
  const es__index_def *def = hnsw_def(b->metric);
  es__index_state st;
  char *name = NULL;
  es__err saved = *es__last_err(b->s);
  es_status rc = es__index_lookup(b->s, b->conn, def, &st, &name);
  if (rc == ES_OK && st != ES__INDEX_MISSING) {
    char *q = PQescapeIdentifier(b->conn->pg, name, strlen(name));
    char sql[384];
    snprintf(sql, sizeof sql,
             "BEGIN; SET LOCAL lock_timeout = %d; DROP INDEX %s; "
             "SELECT pg_advisory_lock_shared(" ES__DEFER_LOCK "); COMMIT",
             DEFER_LOCK_WAIT_MS, q ? q : "\"\"");
    PQfreemem(q);
    rc = exec(b, sql, "the HNSW index was kept (built row by row during the "
              "load) because it could not be dropped");
    if (rc == ES_OK)
      b->index_deferred = true;
    else
      snprintf(b->note, sizeof b->note, "%s", es__last_err(b->s)->msg);
    es__rollback(b->conn);
  }
  free(name);
  *es__last_err(b->s) = saved;
}

/* Builds the HNSW index after a deferred load, unless another session
 * built it meanwhile; under the migration lock, so two sessions that owe
 * it do not both build it. */
static es_status rebuild_index(es_batch *b) {
  es_status rc = ensure_conn(b);
  if (rc != ES_OK)
    return rc;
  rc = es__begin(b->s, b->conn);
  if (rc == ES_OK)
    rc = es__no_timeout(b->s, b->conn);
  if (rc == ES_OK)
    rc = exec(b, ES__MIGRATE_LOCK, "cannot take the migration lock");
  int built = 0;
  if (rc == ES_OK)
    rc = es__ensure_indexes(b->s, b->conn, b->metric, false, &built);
  if (rc == ES_OK)
    rc = es__commit(b->s, b->conn);
  if (rc != ES_OK) {
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
static void mend_indexes(es_batch *b) {
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
      es__ensure_indexes(b->s, b->conn, b->metric, true, NULL) == ES_OK)
    es__commit(b->s, b->conn);
  es__rollback(b->conn);
  *es__last_err(b->s) = saved;
}

/* ---- the public API ------------------------------------------------------------- */

es_status es_batch_begin(es_store *s, const es_batch_options *opts,
                         es_batch **out) {
  if (s == NULL || out == NULL)
    return ES_EINVAL;
  *out = NULL;
  es__clear_err(s);
  es_batch *b = calloc(1, sizeof *b);
  if (b == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  b->s = s;
  if (opts)
    b->opts = *opts;
  else
    es_batch_options_init(&b->opts);
  if (b->opts.batch_size == 0)
    b->opts.batch_size = DEFAULT_BATCH;
  if (b->opts.batch_size > 100000) {
    free(b);
    return es__fail(s, ES_EINVAL, "batch size must be 1..100000, not %zu",
                    opts->batch_size);
  }
  es_status rc = es_store_shape(s, &b->dim, &b->metric);
  es__fk_state fk;
  /* The session's connection may be one the server closed while it idled
   * in the pool: a transient failure gets a fresh one. */
  for (int attempt = 0; rc == ES_OK; attempt++) {
    rc = ensure_conn(b);
    if (rc == ES_OK && (rc = es__fk_lookup(s, b->conn, &fk)) == ES_OK) {
      b->fk_valid = fk.exists && fk.valid;
      break;
    }
    if (!es__last_err(s)->transient || attempt >= s->opts.max_retries)
      break;
    es__discard(s, b->conn);
    b->conn = NULL;
    rc = ES_OK;
  }
  if (rc == ES_OK)
    mend_indexes(b);
  if (rc != ES_OK) {
    es_batch_end(b, NULL);
    return rc;
  }
  *out = b;
  return ES_OK;
}

es_status es_batch_add(es_batch *b, const es_doc *docs, size_t n,
                       const size_t *positions) {
  if (b == NULL || (docs == NULL && n > 0))
    return ES_EINVAL;
  es_store *s = b->s;
  es__clear_err(s);
  b->details_lost = false;
  size_t failed_before = b->res.failed, accounted_before = accounted(&b->res);
  size_t cap = n ? n : 1;
  item *it = calloc(cap, sizeof *it), *cur = calloc(cap, sizeof *cur);
  item *tmp = malloc(cap * sizeof *tmp);
  size_t *round = malloc(cap * sizeof *round), n_round = 0;
  if (it == NULL || cur == NULL || tmp == NULL || round == NULL) {
    free(it);
    free(cur);
    free(tmp);
    free(round);
    fail_all(b, docs, n, positions);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }

  /* Validate every document before anything is sent. */
  size_t kept = 0;
  char err[512];
  for (size_t i = 0; i < n; i++) {
    size_t pos = positions ? positions[i] : b->next_position + i;
    es_status rc = es__doc_check(&docs[i], b->dim, b->metric, err, sizeof err);
    if (rc == ES_ENOMEM) {
      /* No fault of the document's: nothing of this call is written. */
      for (size_t k = 0; k < kept; k++)
        fail_item(b, &it[k], ES_ENOMEM, "out of memory");
      b->next_position += i;
      fail_all(b, docs + i, n - i, positions ? positions + i : NULL);
      free(it);
      free(cur);
      free(tmp);
      free(round);
      return es__fail(s, ES_ENOMEM, "out of memory");
    }
    if (rc != ES_OK) {
      add_failure(b, usable_id(&docs[i]), pos, rc, err);
      continue;
    }
    it[kept].doc = &docs[i];
    it[kept].position = pos;
    kept++;
  }
  b->next_position += n;
  size_t m = kept, folded = 0;
  if (!fold_duplicates(it, m, &folded)) {
    for (size_t i = 0; i < m; i++)
      fail_item(b, &it[i], ES_ENOMEM, "out of memory");
    free(it);
    free(cur);
    free(tmp);
    free(round);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  b->res.duplicates += folded;

  /* The standing occurrences are written; when one fails, the occurrence
   * of its id before it (if any, and valid) takes its place: the last
   * line that can land wins, and nothing valid is lost. */
  for (size_t i = 0; i < m; i++)
    if (!it[i].folded)
      round[n_round++] = i;
  es_status rc = ES_OK;
  size_t total = b->opts.total ? b->opts.total : n;
  b->processed += n - n_round; /* invalid and folded ones are accounted */
  bool first = true;
  while (n_round > 0) {
    for (size_t k = 0; k < n_round; k++) {
      cur[k] = it[round[k]];
      cur[k].src = round[k];
      cur[k].rewrite_chunks = cur[k].doc->has_chunks;
    }
    check_chunk_claims(b, cur, n_round);
    size_t ready = partition_ready(cur, n_round, tmp);
    if (first && ready > 0)
      maybe_defer_index(b, cur, ready);
    first = false;
    for (size_t lo = 0; rc == ES_OK && lo < ready; lo += b->opts.batch_size) {
      size_t len = ready - lo < b->opts.batch_size ? ready - lo : b->opts.batch_size;
      size_t rest = ready - lo - len;
      prehash next;
      prehash_start(&next, cur + lo + len,
                    rest < b->opts.batch_size ? rest : b->opts.batch_size);
      rc = write_range(b, cur + lo, len);
      prehash_wait(&next);
      b->processed += len;
      if (rc != ES_OK && rc != ES_ECONNECT && rc != ES_ENOMEM)
        rc = ES_OK; /* that range is recorded as failed; the next may land */
      if (rc != ES_OK) {
        /* Writing is impossible now: what follows did not land either. */
        char msg[1100];
        snprintf(msg, sizeof msg, "not written: %s", es__last_err(s)->msg);
        for (size_t i = lo + len; i < ready; i++)
          fail_item(b, &cur[i], rc, msg);
        break;
      }
      if (b->opts.progress)
        b->opts.progress(b->processed < total ? b->processed : total, total,
                         b->opts.user);
    }
    /* Failed ones fall back on the previous occurrence of their id. */
    size_t next = 0;
    for (size_t k = 0; k < n_round; k++) {
      if (rc == ES_OK && cur[k].failed && it[cur[k].src].prev >= 0) {
        round[next++] = (size_t)it[cur[k].src].prev;
        b->res.duplicates--; /* no longer folded: it stands for itself */
      }
      free(cur[k].error);
      free(cur[k].old_source);
    }
    n_round = next;
  }
  free(round);
  free(cur);
  free(tmp);
  free(it);
  /* Every document given is inserted, updated, unchanged, failed or a
   * duplicate: exactly once, on every path. */
  assert(accounted(&b->res) - accounted_before == n);
  (void)accounted_before;
  if (rc != ES_OK)
    return rc;
  if (b->details_lost)
    return es__fail(s, ES_ENOMEM, "out of memory recording which documents "
                    "failed");
  if (b->res.failed > failed_before)
    return es__fail(s, ES_EPARTIAL, "%zu of %zu documents failed",
                    b->res.failed - failed_before, n);
  return ES_OK;
}

const es_batch_result *es_batch_totals(const es_batch *b) { return &b->res; }

int es_batch_index_deferred(const es_batch *b) { return b && b->index_deferred; }

const char *es_batch_note(const es_batch *b) {
  return b && b->note[0] ? b->note : NULL;
}

static void free_parts(es_batch_result *r) {
  for (size_t i = 0; i < r->n_failures; i++) {
    free(r->failures[i].id);
    free(r->failures[i].error);
  }
  free(r->failures);
  r->failures = NULL;
  r->n_failures = 0;
}

void es_batch_result_free(es_batch_result *r) {
  if (r == NULL)
    return;
  free_parts(r);
  free(r);
}

static int cmp_failure(const void *a, const void *b) {
  const es_batch_failure *x = a, *y = b;
  return x->position < y->position ? -1 : x->position > y->position;
}

/* After a load, the planner needs statistics: ANALYZE a table that never
 * had any, or that this session changed by a tenth or more.  When both
 * need it, chunks is analysed on a second connection meanwhile (each
 * ANALYZE keeps one CPU busy).  Failures here do not fail the load
 * (autovacuum will analyse later). */
static void analyze_if_needed(es_batch *b) {
  static const char *const sql[2] = {
      "BEGIN; SET LOCAL statement_timeout = 0; ANALYZE embeddings; COMMIT",
      "BEGIN; SET LOCAL statement_timeout = 0; ANALYZE chunks; COMMIT"};
  size_t written = b->res.inserted + b->res.updated + b->res.duplicates;
  if (written == 0 || ensure_conn(b) != ES_OK)
    return;
  PGresult *r = PQexec(b->conn->pg,
                       "SELECT relname, reltuples FROM pg_class WHERE oid IN "
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
  if (need[0] && need[1] && es__acquire_quiet(b->s, &other) == ES_OK) {
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
}

es_status es_batch_end(es_batch *b, es_batch_result **out) {
  if (out)
    *out = NULL;
  if (b == NULL)
    return ES_OK;
  es_status rc = b->index_deferred ? rebuild_index(b) : ES_OK;
  if (b->index_deferred && b->conn && PQstatus(b->conn->pg) == CONNECTION_OK)
    /* The build failed: the lock must not outlive this session in the
     * pool, or the next session would take it for a load still running
     * and leave the index missing. */
    PQclear(PQexec(b->conn->pg,
                   "SELECT pg_advisory_unlock_shared(" ES__DEFER_LOCK ")"));
  analyze_if_needed(b);
  if (b->res.batches > 0 && b->conn && PQstatus(b->conn->pg) == CONNECTION_OK)
    compact_counts(b);
  if (b->conn) {
    /* The session's temp tables die with the session: end it cleanly. */
    if (b->temp_ready && PQstatus(b->conn->pg) == CONNECTION_OK)
      PQclear(PQexec(b->conn->pg, "DISCARD TEMP"));
    es__release(b->s, b->conn);
  }
  es__copy_free(&b->copy);
  es__buf_free(&b->xids);
  if (b->res.n_failures > 1)
    qsort(b->res.failures, b->res.n_failures, sizeof *b->res.failures, cmp_failure);
  if (out) {
    es_batch_result *r = malloc(sizeof *r);
    if (r != NULL) {
      *r = b->res;
      b->res.failures = NULL;
      b->res.n_failures = 0;
    } else if (rc == ES_OK) {
      rc = es__fail(b->s, ES_ENOMEM, "out of memory for the batch result");
    }
    *out = r;
  }
  free_parts(&b->res);
  free(b);
  return rc;
}

es_status es_batch_upsert(es_store *s, const es_doc *docs, size_t n,
                          const es_batch_options *opts, es_batch_result **out) {
  es_batch *b = NULL;
  es_batch_options o;
  if (out)
    *out = NULL;
  if (opts)
    o = *opts;
  else
    es_batch_options_init(&o);
  if (o.total == 0)
    o.total = n;
  es_status rc = es_batch_begin(s, &o, &b);
  if (rc != ES_OK)
    return rc;
  rc = es_batch_add(b, docs, n, NULL);
  char saved[1024];
  snprintf(saved, sizeof saved, "%s", es_errmsg(s));
  es_status end = es_batch_end(b, out);
  if (rc == ES_OK || rc == ES_EPARTIAL) {
    if (end != ES_OK)
      return end;
  }
  if (rc != ES_OK)
    es__fail(s, rc, "%s", saved);
  return rc;
}
