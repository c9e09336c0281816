/* internal.h - declarations shared between the library's source files.
 * Nothing here is API: see include/embstore.h for that. */
#ifndef ES_INTERNAL_H
#define ES_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "embstore.h"

#define ES__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* ---- error.c: the per-thread "last failure" of a store ---------------- */

typedef struct es__err {
  es_status code;
  bool transient;   /* worth retrying: lost connection, deadlock, ... */
  char sqlstate[6]; /* "" when the failure did not come from the server */
  char msg[1024];
} es__err;

/* Gives store its id for the per-thread records (at open); ES_ENOMEM when
 * impossible, recorded in the store's open_err. */
es_status es__err_register(es_store *store);
/* Frees the calling thread's record of store (at close); other threads'
 * records of it are freed when they exit or next need a record. */
void es__err_unregister(es_store *store);

/* Records a failure of the calling thread on store and returns code. */
es_status es__fail(es_store *store, es_status code, const char *fmt, ...)
    ES__PRINTF(3, 4);

/* Records a failure reported by the server or libpq: res may be NULL, in
 * which case the connection's message is used.  what says what failed. */
es_status es__fail_pg(es_store *store, PGconn *pg, const PGresult *res,
                      const char *what);

/* The calling thread's last failure (never NULL once the store is open). */
es__err *es__last_err(es_store *store);
void es__clear_err(es_store *store);

/* Copies the message of a nested failure, prefixed by context. */
es_status es__fail_wrap(es_store *store, es_status code, const char *prefix);

/* ---- conninfo.c --------------------------------------------------------- */

/* A printable form of conninfo (key='value' pairs) with the value of every
 * secret option (libpq's dispchar "*": password, sslpassword, ...) replaced
 * by "***".  Freed with free().  NULL when conninfo does not parse (or out
 * of memory). */
char *es__conninfo_redact(const char *conninfo);

/* Quotes a value for a key=value conninfo string into a malloc'd string. */
char *es__conninfo_quote(const char *value);

/* Masks, in the text msg (a buffer of cap bytes, NUL-terminated within
 * it), every secret a connection string can carry: the value of each
 * password=, sslpassword=, ... pair (quoted or not, any spacing and case)
 * and the password of each postgres:// or postgresql:// URI, malformed or
 * cut short ones included.  The result may be longer than the text; it is
 * cut to cap - 1 bytes.  Applied to every message a store records. */
void es__redact_secrets(char *msg, size_t cap);

/* The same from in to out (cap bytes, NUL-terminated when cap > 0); returns
 * the length of the whole result, as snprintf does, so that
 * es__redact_secrets_to(in, NULL, 0) + 1 is the size that holds it. */
size_t es__redact_secrets_to(const char *in, char *out, size_t cap);

/* Hides the contents of the double-quoted tokens of a libpq parse error
 * (msg, a buffer of cap bytes), which quote the user's connection string or
 * parts of it: a malformed string may have a password anywhere.  libpq's
 * own one-character literals ("=") are kept. */
void es__scrub_quoted(char *msg, size_t cap);

/* ---- pool.c: connections ------------------------------------------------ */

/* Prepared-statement slots: the fixed statements, then search variants. */
#define ES__STMT_SLOTS 600 /* ES__Q__COUNT + 6 kinds x 3 metrics x 32 */

struct es__pool;

typedef struct es__conn {
  PGconn *pg;
  struct es__pool *pool;  /* the pool it belongs to */
  uint8_t prepared[ES__STMT_SLOTS]; /* 1: slot i is prepared here */
  int64_t idle_since_ms;  /* monotonic, when returned to the pool */
  int pid;                /* its backend's process id */
  /* A replica's connection: what its server had replayed when last
   * asked (replica.c); checked_ms 0: never asked. */
  uint64_t replayed_lsn;
  int64_t checked_ms;
  struct es__conn *next;  /* idle list */
} es__conn;

typedef struct es__pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  const char **keys;   /* connection parameters, NULL-terminated */
  const char **values;
  char *storage;       /* backing memory of keys/values */
  es__conn *idle;      /* most recently used first */
  int open;            /* connections that exist, idle or in use */
  int size;
  int idle_timeout_ms;
  int wait_timeout_ms;
  int *pids;           /* size slots: backends of the open connections, 0
                          for a free slot */
  const char *redacted; /* the server, for messages; NULL: the store's */
} es__pool;

es_status es__pool_init(es_store *store, es__pool *pool, const char *conninfo,
                        const es_options *opts);
void es__pool_destroy(es__pool *pool);
/* Whether backend pid is one of the pool's open connections: a
 * notification it sent reports this store handle's own write. */
bool es__pool_owns_backend(es__pool *pool, int pid);
es_status es__acquire(es_store *store, es__conn **out);
/* Like es__acquire but never waits for a busy pool (background work). */
es_status es__acquire_quiet(es_store *store, es__conn **out);
/* A connection of pool (the replica's, or a second of the pool a
 * connection came from), never waiting for a busy one (ES_ETIMEOUT,
 * nothing recorded); opening one may fail. */
es_status es__acquire_now(es_store *store, es__pool *pool, es__conn **out);
/* Returns a connection; broken ones (or ones left inside a transaction) are
 * closed instead of pooled. */
void es__release(es_store *store, es__conn *conn);
void es__discard(es_store *store, es__conn *conn);

int64_t es__now_ms(void);
/* Readies a connection opened with a pool's keys and values: notices
 * ignored, session settings pinned; false when they could not be set. */
bool es__session_prepare(PGconn *pg);

typedef struct es__replica es__replica;

/* ---- locks.c: who holds what an operation waited for ------------------- */

/* The advisory lock that serialises migrations and index mending: any
 * constant, the same for every embstore; its two halves as pg_locks shows
 * them (classid, objid). */
#define ES__MIGRATE_LOCK "SELECT pg_advisory_xact_lock(7013640520591)"
#define ES__MIGRATE_LOCK_HI "1632"
#define ES__MIGRATE_LOCK_LO "4253893519"

/* Held (shared, per session) by every load that dropped the HNSW index to
 * build it at its end: a missing index that nobody holds this for was left
 * by a load that died.  pg_locks shows it as (classid, objid). */
#define ES__DEFER_LOCK "7013640520592"
#define ES__DEFER_LOCK_HI "1632"
#define ES__DEFER_LOCK_LO "4253893520"

/* Whether some session is loading with the HNSW index deferred (holds
 * ES__DEFER_LOCK).  false when it cannot tell. */
bool es__deferred_load_running(es_store *store, es__conn *conn);

/* When the calling thread's last failure on conn is a lock wait or a
 * statement that timed out, appends "; held by pid N (application, user,
 * state, transaction age, locks)" for up to three other sessions holding
 * locks on the store's tables or the migration lock, looked up on another
 * pooled connection (conn is in an aborted transaction).  Called where
 * operations run (es__run, the batch session), not by error.c. */
void es__explain_lock_wait(es_store *store, es__conn *conn);

/* ---- metrics.c ------------------------------------------------------------ */

typedef struct es__metrics es__metrics;

/* Starts the background writer; es__metrics_stop flushes and stops it. */
es_status es__metrics_start(es_store *store);
void es__metrics_stop(es_store *store);
/* Records one operation (no I/O; dropped when the buffer is full). */
void es__metric(es_store *store, const char *operation, double ms, bool ok,
                const char *error, const char *metadata);
/* Writes what is buffered now, in the calling thread. */
void es__metrics_flush_now(es_store *store);

/* Text search: a configuration's name, schema-qualified, fits; documents
 * are indexed and searched by their first ES__TEXT_CHARS characters (a
 * tsvector holds at most 1 MB of lexemes). */
#define ES__TEXT_CONFIG_MAX 160
#define ES__TEXT_CHARS_S "200000"

/* ---- the store handle ---------------------------------------------------- */

struct es_store {
  es_options opts;
  char *conninfo;          /* the effective connection string */
  char *redacted;          /* conninfo for messages */
  uint64_t err_id;         /* names the store in per-thread error records;
                              never reused, 0 before es__err_register */
  es__err open_err;        /* stands in when a thread has no record */
  es__pool pool;
  pthread_mutex_t shape_mu;
  int dim;                 /* 0 until read from embstore_meta */
  es_metric metric;
  int vector_0_8;          /* pgvector >= 0.8: iterative index scans */
  es__metrics *metrics;
  struct es__cache *cache; /* NULL when disabled */
  struct es__listener *listener; /* hears other writers; NULL without a
                                    cache */
  es__replica *replica;    /* reads' pool (read_conninfo), or NULL */
  bool text_loaded;        /* text_oid and text_config read (text.c) */
  unsigned text_oid;       /* the text search configuration; 0: none */
  char text_config[ES__TEXT_CONFIG_MAX]; /* its name */
  bool chunk_index_seen;   /* the store keeps a chunk index (once set, for
                              good: nothing removes one) */
  struct es__embedder *embedder; /* the embedding provider, or NULL */
  int distributed;         /* 0 not known yet, 1 plain PostgreSQL, 2 a
                              Citus distributed store (under shape_mu) */
};

/* ---- embed.c: the embedding provider ------------------------------------ */

#define ES__MODEL_MAX 256 /* bytes of a model's name */

typedef struct es__embedder es__embedder;

/* The provider of options (embed_url ...) into *out, NULL when none is
 * configured; ES_EINVAL for options that do not make one. */
es_status es__embedder_new(es_store *store, const es_options *options,
                           es__embedder **out);
/* Frees it, wiping the key.  NULL is a no-op. */
void es__embedder_free(es__embedder *e);
/* Its model; NULL for a NULL provider. */
const char *es__embedder_model(const es__embedder *e);
/* Embeds texts[0..n) (non-empty) into out[i * dim ..]; for each text st[i]
 * is ES_OK or why it was not embedded (ES_EPROVIDER, ES_EDIM, ES_ENOMEM)
 * with errs[i] the message (malloc'd, the caller frees; NULL when ES_OK).
 * Returns ES_OK when every text was embedded, ES_EPROVIDER when some were
 * not, ES_ENOMEM when memory ran out. */
es_status es__embed_texts(const es__embedder *e, const char *const *texts,
                          size_t n, size_t dim, float *out, char **errs,
                          es_status *st);

/* ---- embed_docs.c: documents without vectors, embedded ------------------ */

/* Copies of n documents with the vectors the provider made. */
typedef struct es__embedded {
  es_doc *docs;       /* n copies; docs[i] of a failed document untouched */
  es_chunk *chunks;   /* the copies' chunk arrays */
  float *vectors;
  char **errs;        /* per document: NULL, or why it was not embedded */
  es_status *st;      /* per document: ES_OK or the failure's status */
  size_t n;
} es__embedded;

/* Whether any of docs[0..n) (or their chunks) has text but no vector. */
bool es__docs_need_embedding(const es_doc *docs, size_t n);
/* Embeds, with the store's provider (not NULL), the texts of docs[0..n)
 * and their chunks that have no vector, into *e (freed with
 * es__embedded_free, also on failure).  ES_ENOMEM, else ES_OK with each
 * document's failure in e->errs. */
es_status es__docs_embed(es_store *store, const es_doc *docs, size_t n,
                         size_t dim, es__embedded *e);
void es__embedded_free(es__embedded *e);

/* ---- sql.c: statements and execution ------------------------------------ */

typedef enum es__stmt_id {
  ES__Q_SHAPE,
  ES__Q_VECTOR_VERSION,
  ES__Q_GET_VECTOR,
  ES__Q_UPSERT_DOC,
  ES__Q_DOC_HASH,
  ES__Q_CHUNK_UPSERT,
  ES__Q_CHUNK_UPSERT_DIST, /* on Citus: chunks' key is (document_id, id) */
  ES__Q_CHUNKS_PRUNE,
  ES__Q_CHUNK_OWNER,
  ES__Q_METRICS_INSERT,
  ES__Q_METRICS_PRUNE,
  ES__Q_BATCH_PROBE,
  ES__Q_BATCH_DROP_ORPHANS,
  ES__Q__COUNT
} es__stmt_id;

/* Executes prepared statement id (preparing it on this connection the first
 * time) with text or binary parameters; results in text unless
 * binary_result.  Never NULL (libpq out of memory yields a fatal result). */
PGresult *es__exec_stmt(es__conn *conn, es__stmt_id id, int nparams,
                        const char *const *values, const int *lengths,
                        const int *formats, int binary_result);

/* Executes a statement prepared under name with text sql in prepared-slot
 * slot (ES__Q__COUNT <= slot < ES__STMT_SLOTS): for statements whose text is
 * chosen at run time from fixed fragments. */
PGresult *es__exec_named(es__conn *conn, int slot, const char *name,
                         const char *sql, int nparams,
                         const char *const *values, const int *lengths,
                         const int *formats, int binary_result);

/* es__exec_named's statement sent without waiting for its answer
 * (PQgetResult reads it): false when it could not be sent.  Preparing it
 * first, when this connection has not, waits; a failure to prepare is
 * *failed (the answer; true is returned), else *failed is NULL. */
bool es__send_named(es__conn *conn, int slot, const char *name,
                    const char *sql, int nparams, const char *const *values,
                    const int *lengths, const int *formats, PGresult **failed);

/* Runs a parameterless command; returns ES_OK or records the failure. */
es_status es__exec(es_store *store, es__conn *conn, const char *sql,
                   const char *what);

/* Runs a parameterless command; *rows receives the rows it affected. */
es_status es__exec_count(es_store *store, es__conn *conn, const char *sql,
                         const char *what, int64_t *rows);

/* Sends BEGIN/COMMIT/ROLLBACK. */
es_status es__begin(es_store *store, es__conn *conn);
es_status es__commit(es_store *store, es__conn *conn);
/* Lifts the statement timeout for the rest of the transaction: for index
 * builds and migrations, which take as long as the data needs. */
es_status es__no_timeout(es_store *store, es__conn *conn);
void es__rollback(es__conn *conn);

/* The type of a binary timestamptz parameter (pg_type.h's TIMESTAMPTZOID). */
#define ES__TIMESTAMPTZOID 1184

/* true when res holds rows or a command completed. */
bool es__res_ok(const PGresult *res);

/* json.h's growable buffer, in which array literals are built. */
struct es__buf;

/* Appends s to an array literal in b, quoted and escaped (NULL: NULL);
 * first: no comma before it.  false when out of memory. */
bool es__array_elem(struct es__buf *b, const char *s, bool first);

/* The text of element i of a list, for es__text_array. */
typedef const char *(*es__nth_text)(const void *list, size_t i);

/* A text[] literal {"a","b",...} of nth(list, i) for i in 0..n, malloc'd
 * (freed with free()); NULL when out of memory. */
char *es__text_array(const void *list, size_t n, es__nth_text nth);

/* What embstore_meta holds. */
typedef enum es__meta_state {
  ES__META_NONE,  /* no such table: not a store */
  ES__META_EMPTY, /* the table, but no row */
  ES__META_FOUND  /* one row: *dim and *metric are set */
} es__meta_state;

/* The one reader of embstore_meta: its state, and the store's dimension
 * and metric when found.  ES_EDB when the metric is not one embstore
 * knows.  Usable inside a transaction (a missing table does not abort it). */
es_status es__read_meta(es_store *store, es__conn *conn, es__meta_state *state,
                        int *dim, es_metric *metric);

/* Loads the store's dimension and metric (cached on the handle);
 * ES_ENOSTORE when the database holds no store. */
es_status es__load_shape(es_store *store, es__conn *conn);
/* Whether the store's tables are distributed by Citus (distribute.c), asked
 * once per handle; false also when it cannot tell (the statements that
 * follow then fail with the reason). */
bool es__distributed(es_store *store, es__conn *conn);
void es__set_distributed(es_store *store, bool distributed);
/* Installs sql/citus/triggers.sql: the trigger functions of a distributed
 * store (CREATE OR REPLACE; its triggers stay). */
es_status es__install_citus_triggers(es_store *store, es__conn *conn);

/* ---- run.c: running an operation, retries, the clock --------------------- */

/* An operation body run on a pooled connection by es__run(). */
typedef es_status (*es__op_fn)(es_store *store, es__conn *conn, void *ctx);

/* Acquires a connection, runs fn, releases it, and records the operation
 * (when operation is not NULL) in the metrics.  When retry is true and fn
 * fails transiently (lost connection, serialization failure, deadlock),
 * runs it again, up to opts.max_retries times with doubling backoff. */
es_status es__run(es_store *store, const char *operation, bool retry,
                  es__op_fn fn, void *ctx);

/* pthread_create with every signal blocked in the new thread: the
 * library's helper threads never take a signal meant for the program
 * (a server's SIGTERM, whose default action would end the process while
 * the program waits for it in sigwait).  Returns pthread_create's value. */
int es__thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/* ---- replica.c: reads on a streaming replica ---------------------------- */

/* Which server answered a read, and what the replica was found to be. */
typedef struct es__served {
  bool replica;           /* the replica answered */
  es_replica_state state; /* why it did not, when it did not */
  int64_t lag_ms;         /* its lag, -1: not known */
} es__served;

/* The replica pool of conninfo into *out (freed with es__replica_free,
 * also on failure); es__replica_start (once s->replica is set) takes the
 * first sample of the primary's position and starts the sampler. */
es_status es__replica_new(es_store *s, const char *conninfo, es__replica **out);
es_status es__replica_start(es_store *s);
void es__replica_free(es__replica *r);
/* Whether conn is one of the replica's (r may be NULL). */
bool es__replica_owns(const es__replica *r, const es__conn *conn);
/* COMMIT, noting the commit's position for read-your-writes. */
es_status es__replica_commit(es_store *s, es__conn *conn);
/* This handle changed the store outside a transaction (an index build,
 * VACUUM, a validated key): reads wait for the primary's position. */
void es__replica_wrote(es_store *s);
/* Another writer committed (the listener heard it, or may have missed
 * some): the next fenced read asks the primary's position first. */
void es__replica_changed(es_store *s);
/* Runs a read (fn must not write) on the replica when it may answer (see
 * replica.c), else on the primary as es__run; fence: the answer is cached,
 * so it must include every commit the listener heard of.  *served (may be
 * NULL) says which server answered. */
es_status es__run_read(es_store *s, const char *operation, bool fence,
                       es__op_fn fn, void *ctx, es__served *served);
/* Adds the replica's gauges to out. */
void es__replica_runtime(es_store *s, es_runtime *out);


/* The attempts of an operation that retries transient failures:
 *   es__retry rt;
 *   es__retry_init(&rt, store, true);
 *   while (es__retry_next(&rt)) { ...; if (done) break; }
 * runs the body up to opts.max_retries + 1 times, sleeping
 * opts.retry_backoff_ms, doubled each time, before every retry. */
typedef struct es__retry {
  int attempt;  /* attempts started */
  int attempts; /* attempts allowed */
  int delay_ms; /* the sleep before the next one */
} es__retry;

/* retry false: one attempt only. */
void es__retry_init(es__retry *r, const es_store *store, bool retry);
/* Whether another attempt may start (after its backoff). */
bool es__retry_next(es__retry *r);

/* Milliseconds on the monotonic clock (with their fraction), and the
 * milliseconds since such a value: how operations are timed. */
double es__clock_ms(void);
double es__elapsed_ms(double t0);

/* ---- results.c: search results --------------------------------------------- */

/* A deep copy of r, freed with es_results_free(); NULL when out of
 * memory.  *bytes (may be NULL) receives the memory the copy takes. */
es_results *es__results_copy(const es_results *r, size_t *bytes);
/* Frees the hits of res and leaves it empty. */
void es__results_clear(es_results *res);

/* ---- vector.c: codecs ----------------------------------------------------- */

/* Bytes of pgvector's binary representation of a dim-vector. */
size_t es__vector_bin_size(size_t dim);
/* Writes the binary representation (network byte order) to out. */
void es__vector_to_bin(const float *v, size_t dim, char *out);
/* Parses a binary representation; returns dim or -1 when malformed (as
 * pgvector would refuse it). */
long es__vector_from_bin(const char *in, size_t len, float *out, size_t cap);
/* Formats "[v1,v2,...]" into a malloc'd string (shortest round-trip
 * formatting).  NULL on out of memory. */
char *es__vector_to_text(const float *v, size_t dim);
/* Parses "[v1,v2,...]" (JSON numbers, finite); returns dim, or -1 when
 * malformed, -2 when there are more than cap values. */
long es__vector_from_text(const char *in, float *out, size_t cap);
/* Whether v has zero length as pgvector's cosine distance sees it: the sum
 * of squares, accumulated in float as pgvector does, is 0. */
bool es__vector_zero_norm(const float *v, size_t dim);
/* Index of the first non-finite value, or -1. */
long es__vector_first_nonfinite(const float *v, size_t dim);

/* ---- number.c: numbers in text in the C locale, whatever the program's -- */

/* strtod/strtof that always read '.' as the decimal point. */
double es__strtod(const char *s, char **end);
float es__strtof(const char *s, char **end);
/* The float nearest to w * 10^e10 (ties to even), negated when neg: what
 * strtof makes of the JSON number tok (len bytes, its grammar checked),
 * whose first significant digits (at most 19) are w.  truncated: it has
 * more, not all 0, so its value lies strictly between w * 10^e10 and
 * (w + 1) * 10^e10.  Overflow gives an infinity. */
float es__float_from_decimal(uint64_t w, int64_t e10, bool truncated,
                             bool neg, const char *tok, size_t len);
/* The table of 128-bit powers of ten it uses (number.c), for the tests. */
#define ES__POW10_COUNT 104 /* 10^-65 .. 10^38 */
extern const uint64_t es__pow10_128[ES__POW10_COUNT][2];
/* snprintf with the C locale's numeric formatting. */
int es__snprintf_c(char *buf, size_t cap, const char *fmt, ...) ES__PRINTF(3, 4);

/* ---- utf8.c: see utf8.h (shared with the tool) ----------------------------- */

#include "utf8.h"

/* ---- validate.c ------------------------------------------------------------ */

/* Checks a document against dim; writes a message naming the field into
 * err and returns ES_EINVAL / ES_EDIM on failure. */
es_status es__doc_check(const es_doc *doc, int dim, es_metric metric, char *err,
                        size_t errlen);

/* ---- hash.c --------------------------------------------------------------- */

#define ES__HASH_BYTES 16

/* Hash of a document's text, vector, metadata and source: equal hashes mean
 * identical fields. */
void es__doc_content_hash(const es_doc *doc, uint8_t out[ES__HASH_BYTES]);
/* Hash of a document's chunk set (ids, order, texts, vectors, metadata). */
void es__doc_chunks_hash(const es_doc *doc, uint8_t out[ES__HASH_BYTES]);

/* ---- get.c: the workspace scope of a read or a delete ------------------ */

/* Checks a tenant's scope (workspaces[0..n), NULL: none) and builds its
 * text[] literal into *literal (malloc'd, freed with free(); NULL when
 * there is no scope).  ES_EINVAL naming a NULL or non-UTF-8 entry. */
/* get.c's row decoder, for list.c too.  The rows of a document in a
 * result of get.c's columns (kind 0 row, then its kind 1 chunk rows)
 * starting at row first; */
int es__document_rows(const PGresult *r, int first);
/* fills doc from those rows (binary results). */
es_status es__document_take(es_store *s, const PGresult *r, int first,
                            int rows, int dim, es_document *doc);
/* ---- text.c: the store's text search ------------------------------------ */

/* Reads the store's text search configuration into s->text_oid (0: none)
 * and s->text_config, once (fresh: again). */
es_status es__load_text(es_store *s, es__conn *c, bool fresh);
/* The OID of the text search configuration config; ES_EINVAL naming it
 * when the server has none of that name. */
es_status es__text_config_oid(es_store *s, es__conn *c, const char *config,
                              unsigned *oid);
/* Records the store's configuration (0: no text search), in the caller's
 * transaction. */
es_status es__set_text_config(es_store *s, es__conn *c, unsigned oid);
/* *health 1 (degraded) and why when the store has text search and its
 * index is missing, invalid or being built; else 0.  The index as c sees
 * it; builds and loads in progress as primary does (c itself, unless c is
 * a replica's). */
es_status es__text_index_health(es_store *s, es__conn *c, es__conn *primary,
                                int *health, char *why, size_t cap);
/* After a large load that dropped it (batch_index.c), in its transaction:
 * builds the text index, not concurrently (the load's own table), when
 * the store has text search and it is missing or invalid. */
es_status es__build_text_index(es_store *s, es__conn *c, int *created);
/* Builds the text index when the store has text search and the index is
 * missing or invalid, concurrently: outside any transaction. */
es_status es__ensure_text_index(es_store *s, es__conn *c, int *created);

/* Frees what doc holds, not doc itself. */
void es__document_clear(es_document *doc);
/* ES_OK when filter_json is NULL or one JSON object jsonb can hold; else
 * ES_EINVAL recorded, "filter: ... (at byte N)" (list.c). */
es_status es__check_filter(es_store *s, const char *filter_json);
es_status es__scope_literal(es_store *store, const char *const *workspaces,
                            size_t n, char **literal);

/* ---- pgembed.c -------------------------------------------------------------- */

/* The conninfo of the embedded cluster in home (default when NULL), started
 * if needed.  malloc'd into *conninfo. */
es_status es__embedded_conninfo(es_store *store, const char *home,
                                char **conninfo);

#endif /* ES_INTERNAL_H */
