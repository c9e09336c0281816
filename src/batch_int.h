/* batch_int.h - what the phases of a batch session share.  Internal.
 *
 * A batch session (es_batch_begin .. es_batch_end) is split by phase, as
 * pgvector splits its HNSW code:
 *   batch.c          the session (begin, add, end) and the public API
 *   batch_prepare.c  the input: validation, content hashes, duplicate ids
 *                    folded, chunk ids claimed twice
 *   batch_write.c    one transaction per batch: staging, COPY, merge,
 *                    retries and bisection
 *   batch_index.c    the HNSW index deferred and rebuilt, indexes mended,
 *                    statistics (ANALYZE) and counter compaction
 *   batch_utils.c    what they share: the accounting of documents, the
 *                    session's connection, a batch's ids
 * Calls go down that list, never up: batch.c calls the others, the write
 * phase the index phase (compaction), and every phase batch_utils.c.
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
#ifndef ES_BATCH_INT_H
#define ES_BATCH_INT_H

#include <pthread.h>

#include "copy.h"
#include "internal.h"

/* What became of a document in the batch being written. */
typedef enum es__outcome {
  ES__OUT_PENDING,
  ES__OUT_INSERTED,
  ES__OUT_UPDATED,
  ES__OUT_UNCHANGED,
  ES__OUT_FAILED
} es__outcome;

/* One valid document of an es_batch_add call. */
typedef struct es__item {
  const es_doc *doc;
  size_t position;
  uint8_t content_hash[ES__HASH_BYTES];
  uint8_t chunks_hash[ES__HASH_BYTES];
  /* set inside a batch's transaction, applied once it commits */
  es__outcome out;
  bool rewrite_chunks; /* its chunk set must be written */
  bool seen;           /* landed earlier in this session: a duplicate */
  bool hashed;         /* content_hash and chunks_hash are computed */
  char *error;         /* ES__OUT_FAILED: why (a chunk owned by another doc) */
  char *old_source;    /* the stored source, when this write moves it */
  bool failed;         /* recorded as failed */
  bool folded;         /* a later valid occurrence of its id stands for it */
  long prev;           /* the previous occurrence of its id in the input
                          (index into the call's items), or -1 */
  size_t src;          /* its index among the call's items */
} es__item;

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
  bool chunk_model;    /* chunks.model exists (migration 9) */
  bool seen_ready;     /* es_seen exists on conn (and holds what it must) */
  bool distributed;    /* the store is on Citus (distribute.c) */
  es__buf stamps;      /* "{t1,t2,...}": now() of our committed batches, in
                          microseconds since 1970, to rebuild es_seen on a
                          new connection */
  bool decided_index;  /* the defer decision was made */
  bool index_deferred; /* this session builds the HNSW index at its end */
  char note[1100];     /* why the index was not deferred, or "" */
  bool oom;            /* this call ran out of memory (a failure's details
                          lost, a check that could not run): ES_ENOMEM */
  es__copy copy;
};

/* ---- batch_utils.c: accounting, the connection, ids ----------------------- */

/* The document's id when it is fit to be quoted in results (valid,
 * bounded UTF-8), else NULL. */
const char *es__batch_usable_id(const es_doc *d);

/* Records a failure of the document at position (id may be NULL). */
void es__batch_add_failure(es_batch *b, const char *id, size_t position,
                           es_status status, const char *msg);

/* Records an item's failure (the item may then fall back to an earlier
 * occurrence of its id, see es_batch_add). */
void es__batch_fail_item(es_batch *b, es__item *x, es_status status,
                         const char *msg);

/* Applies the outcomes of a committed batch to the totals, and tells the
 * search cache which sources changed (only now that they are committed). */
void es__batch_apply(es_batch *b, es__item *it, size_t n);

/* The session's connection, replaced (and its temp tables forgotten) when
 * the server closed it. */
es_status es__batch_conn(es_batch *b);

/* A text[] literal of the items' ids, malloc'd; NULL when out of memory. */
char *es__batch_ids(const es__item *it, size_t n);

/* How many of ids (a text[] literal) are stored; -1 on failure. */
long long es__batch_count_stored(es_batch *b, const char *ids);

/* ---- batch_prepare.c: the input ------------------------------------------- */

/* Checks docs[0..n) before anything is sent: the valid ones become it[0..)
 * (in order), each invalid one is recorded as failed.  Returns how many
 * are valid; positions (may be NULL) are the documents' positions. */
size_t es__batch_validate(es_batch *b, const es_doc *docs, size_t n,
                          const size_t *positions, es__item *it);

/* Among items with the same id, the last stands for the others: they are
 * marked folded, each linked from the next occurrence (prev).  *count
 * receives how many were folded; false when out of memory. */
bool es__batch_fold_duplicates(es__item *it, size_t n, size_t *count);

/* A chunk id may belong to one document of it[0..n) only: later claims
 * are recorded as failed. */
void es__batch_check_chunk_claims(es_batch *b, es__item *it, size_t n);

/* Moves the items still to write to the front, in order (the failed ones
 * after them); returns their number.  tmp has room for n items. */
size_t es__batch_partition_ready(es__item *it, size_t n, es__item *tmp);

/* Computes the item's content hashes, once. */
void es__batch_hash_item(es__item *x);

/* Hashing of the next batch on a thread of its own, while the current one
 * is written. */
typedef struct es__prehash {
  es__item *it;
  size_t n;
  pthread_t thread;
  bool started;
} es__prehash;

/* Starts hashing it[0..n); without a thread, es__batch_hash_item does it
 * when the items are written. */
void es__prehash_start(es__prehash *p, es__item *it, size_t n);
/* Waits until the hashing started by es__prehash_start is done. */
void es__prehash_wait(es__prehash *p);

/* ---- batch_write.c: the transactions -------------------------------------- */

/* Writes it[0..n): retries transient failures, bisects rejected batches.
 * Returns ES_OK (the items that failed are recorded) or the failure that
 * makes writing impossible (the items are then recorded as failed). */
es_status es__batch_write_range(es_batch *b, es__item *it, size_t n);

/* ---- batch_index.c: indexes and statistics -------------------------------- */

/* Drops the HNSW index before a large load when that pays (see
 * es_defer_index); it[0..n) are the first documents.  Decided once. */
void es__batch_maybe_defer_index(es_batch *b, const es__item *it, size_t n);

/* Builds the HNSW index that this session owes the store. */
es_status es__batch_rebuild_index(es_batch *b);

/* Repairs what a killed load may have left (at the start of a session). */
void es__batch_mend_indexes(es_batch *b);

/* ANALYZEs the tables a session changed enough (at its end). */
void es__batch_analyze(es_batch *b);

/* Folds the counters' delta rows.  Not fatal. */
void es__batch_compact_counts(es_batch *b);

#endif
