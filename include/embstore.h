/*
 * embstore.h - the whole public API of libembstore.
 *
 * embstore keeps documents, their chunks and their embedding vectors in
 * PostgreSQL with pgvector.  Everything a program may rely on is declared
 * here; nothing else in the source tree is API.
 *
 * Conventions
 *  - Every function that can fail returns an es_status.  ES_OK is 0.
 *  - The detailed message of the last failure on a store is es_errmsg(store);
 *    it names the line, field, id or SQLSTATE involved.  Messages never
 *    contain a password from a connection string.
 *  - Names are es_<noun>_<verb>, as in libuv: the noun is the type the
 *    function creates, reads or frees (es_cluster_start(), es_batch_begin(),
 *    es_stats_get(), es_stats_free(), es_options_init()).  The store is the
 *    library's main handle, so its own operations drop the noun, as
 *    sqlite3_open() and PQexec() do: es_open(), es_close(), es_errmsg(),
 *    es_init(), es_migrate(), es_upsert(), es_search(), es_batch_upsert(),
 *    es_delete_by_source(), es_cleanup_orphaned(), es_check_counts().
 *  - Ownership, one rule for every result: a result struct is allocated by
 *    the library and handed out through an [out] T ** parameter, and freed
 *    with its own T_free() (es_init_report_free(), es_results_free(),
 *    es_stats_free(), ...).  A failed call sets *out to NULL, unless its
 *    comment says that the result is still set, to say what was done
 *    before the failure (es_batch_upsert(), es_cleanup_orphaned()) or why
 *    it failed (es_open(), es_cluster_open()).  Where an [out] result
 *    parameter "may be NULL", passing NULL skips the result.
 *    Every function that hands out memory names the function that frees it,
 *    and freeing NULL is always a harmless no-op.  Scalars (counts, enums)
 *    come back through [out] pointers to the caller's variables.  A const
 *    pointer that a function returns (es_errmsg(), es_cluster_conninfo(),
 *    es_batch_totals(), ...) is borrowed from the handle: never freed by the
 *    caller, valid for as long as its comment says.
 *  - Options structs (es_options, es_batch_options, es_cleanup_options,
 *    es_delete_options, es_search_params) carry no size field.  Fill one
 *    with its _init function (es_options_init(), ...) and then set the
 *    fields you need, never with an initializer of your own: _init gives
 *    every field, also one that a later version adds, its default, so that
 *    such code compiles and behaves the same against a newer header.  The
 *    library copies what it needs from an options struct during the call.
 *    The input structs es_doc and es_chunk have no _init: zero them (an
 *    initializer naming the fields you set does), and a field that a later
 *    version adds means "as before" when it is 0.  Binary compatibility is
 *    by the shared library's SOVERSION: a version that changes the size of
 *    a struct that the caller allocates (options, inputs) changes it.
 *    Result structs are allocated by the library and only appended to
 *    (es_batch_result.index, es_init_report.index): the fields a program
 *    built against an older header knows keep their offsets, so appending
 *    to them is binary-compatible.
 *  - [in] and [out] mark parameters.  Strings are NUL-terminated UTF-8.
 *  - An es_store may be used from several threads at once: it owns a pool of
 *    connections, and es_errmsg() reports the last failure of the calling
 *    thread.  An es_cluster is not thread-safe.
 */
#ifndef EMBSTORE_H
#define EMBSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "embstore_version.h" /* ES_VERSION, ES_VERSION_MAJOR/MINOR/PATCH */

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden symbols: what this header declares is
 * all that libembstore.so exports. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* The version of the library the program runs with ("0.1.0"); static, never
 * NULL.  ES_VERSION is the version of the header it was compiled with. */
const char *es_version(void);

/* ------------------------------------------------------------------------
 * Status codes.  Appended, never renumbered.
 * ---------------------------------------------------------------------- */
#define ES_ERRNO_MAP(XX)                                                       \
  XX(OK, 0, "success")                                                         \
  XX(EINVAL, 1, "invalid argument")                                            \
  XX(ENOMEM, 2, "out of memory")                                               \
  XX(ECONNECT, 3, "cannot connect to the database")                           \
  XX(EDB, 4, "database error")                                                 \
  XX(ENOTFOUND, 5, "not found")                                                \
  XX(ENOSTORE, 6, "store not initialised")                                     \
  XX(EDIM, 7, "vector dimension mismatch")                                     \
  XX(ENOPG, 8, "PostgreSQL server binaries not found")                         \
  XX(ENOVECTOR, 9, "pgvector extension not available")                         \
  XX(ECLUSTER, 10, "embedded cluster failure")                                 \
  XX(ETIMEOUT, 11, "operation timed out")                                      \
  XX(EIO, 12, "input/output error")                                            \
  XX(ECONFLICT, 13, "conflicting state")                                       \
  XX(EPARTIAL, 14, "some items failed")                                       \
  XX(EPROVIDER, 15, "embedding provider failure")

typedef enum es_status {
#define ES__STATUS_ENUM(name, num, msg) ES_##name = num,
  ES_ERRNO_MAP(ES__STATUS_ENUM)
#undef ES__STATUS_ENUM
} es_status;

/* Static description of a status ("invalid argument"); never NULL. */
const char *es_strerror(es_status status);

/* Static name of a status ("ES_EINVAL"); never NULL. */
const char *es_status_name(es_status status);

/* ------------------------------------------------------------------------
 * Distance metrics
 * ---------------------------------------------------------------------- */
typedef enum es_metric {
  ES_METRIC_COSINE = 0, /* 1 - cosine similarity, operator <=> */
  ES_METRIC_L2 = 1,     /* Euclidean distance, operator <-> */
  ES_METRIC_IP = 2      /* negative inner product, operator <#> */
} es_metric;

/* "cosine", "l2" or "ip"; never NULL. */
const char *es_metric_name(es_metric metric);

/* Parses [in] name ("cosine", "l2", "ip") into [out] metric.
 * Returns ES_EINVAL for any other name. */
es_status es_metric_parse(const char *name, es_metric *metric);

/* Largest dimension a store accepts: the limit of pgvector's HNSW index on
 * the vector type. */
#define ES_MAX_DIM 2000

/* Longest document or chunk id in bytes. */
#define ES_MAX_ID_BYTES 512

/* ------------------------------------------------------------------------
 * The embedded cluster: a private PostgreSQL with pgvector that embstore
 * runs in a directory of its own (its "home"), listening on a Unix socket
 * only.  When the calling process is root, PostgreSQL runs as an
 * unprivileged user (EMBSTORE_PG_USER, default "postgres").
 * ---------------------------------------------------------------------- */
typedef struct es_cluster es_cluster;

typedef enum es_cluster_state {
  ES_CLUSTER_ABSENT = 0,  /* no cluster has been created in the home yet */
  ES_CLUSTER_STOPPED = 1, /* created, not running */
  ES_CLUSTER_RUNNING = 2  /* running and accepting connections */
} es_cluster_state;

/* Opens a handle on the cluster in [in] home, or, when home is NULL, in
 * $EMBSTORE_HOME, else $XDG_DATA_HOME/embstore, else
 * ~/.local/share/embstore (as root: /var/lib/embstore, because PostgreSQL's
 * unprivileged user cannot enter root's home).  Nothing is created yet.
 * [out] *cluster is freed with es_cluster_close().  On failure *cluster is
 * still set when memory allows, so es_cluster_errmsg() can explain. */
es_status es_cluster_open(const char *home, es_cluster **cluster);

/* Frees the handle; the server keeps running.  NULL is a no-op. */
void es_cluster_close(es_cluster *cluster);

/* Message of the last failure on this handle; never NULL. */
const char *es_cluster_errmsg(const es_cluster *cluster);

/* Creates the cluster on first use, recovers a stale postmaster.pid left by
 * a crash, starts the server and creates its database.  Safe to call from
 * several processes at once (a lock file serialises them).  A running
 * cluster is left as it is.  ES_ENOPG / ES_ENOVECTOR when PostgreSQL or
 * pgvector is not installed (the message names the set-up command). */
es_status es_cluster_start(es_cluster *cluster);

/* Stops the server (fast shutdown) and waits for it.  Stopping a cluster
 * that is not running succeeds. */
es_status es_cluster_stop(es_cluster *cluster);

/* [out] *state: whether the cluster exists and runs. */
es_status es_cluster_status(es_cluster *cluster, es_cluster_state *state);

/* The libpq connection string (key=value form) of the cluster's database;
 * owned by the handle, valid until es_cluster_close(). */
const char *es_cluster_conninfo(const es_cluster *cluster);

/* The same as a postgresql:// URI; owned by the handle. */
const char *es_cluster_url(const es_cluster *cluster);

/* The home directory in use; owned by the handle. */
const char *es_cluster_home(const es_cluster *cluster);

/* PID of the running postmaster, or 0. */
long es_cluster_pid(const es_cluster *cluster);

/* ------------------------------------------------------------------------
 * Opening a store
 * ---------------------------------------------------------------------- */
typedef struct es_store es_store;

typedef struct es_options {
  const char *conninfo;     /* libpq key=value string or URI; NULL means the
                               embedded cluster (started on first use) */
  const char *home;         /* embedded cluster home; NULL: the default */
  int pool_size;            /* most connections open at once (20) */
  int idle_timeout_ms;      /* close connections idle this long (30000) */
  int connect_timeout_s;    /* libpq connect_timeout, at least 2 (2) */
  int statement_timeout_ms; /* server statement_timeout, 0 = none (30000) */
  int max_retries;          /* retries of a safe-to-repeat operation after a
                               transient failure, 0 = none (3) */
  int retry_backoff_ms;     /* first backoff, doubled per retry (20) */
  int metrics_retention_s;  /* performance_metrics rows older than this are
                               pruned, 0 = keep all (7 days) */
  size_t cache_bytes;       /* memory for cached search results, 0 = no
                               cache (64 MiB) */
  int cache_ttl_ms;         /* a cached result is used at most this long,
                               a backstop: every process's writes reach
                               the cache at once (see es_runtime) (60000) */
  int index_memory_mb;      /* maintenance_work_mem, in MiB, of every HNSW
                               index build on this store (es_batch_end(),
                               es_init(), es_migrate()); 0 = sized from the
                               data, see "Index builds" below (0) */
  /* The embedding provider (see "Embedding provider" below): with
   * embed_url set, documents and chunks that arrive with text but without
   * a vector are embedded, and text searches can rank by vectors. */
  const char *embed_url;     /* base URL of an OpenAI-compatible service:
                                POST {embed_url}/embeddings; NULL: none */
  const char *embed_model;   /* the model asked for, recorded with every
                                vector it makes; required with embed_url */
  const char *embed_api_key; /* sent as "Authorization: Bearer KEY"; never
                                in a message, a log or a table (NULL) */
  int embed_timeout_ms;      /* one request's limit, connecting included
                                (30000) */
  int embed_max_retries;     /* retries of a request answered 429 or 5xx,
                                timed out, not connected or cut off (4);
                                TLS failures, bad addresses and other
                                answers are final */
  int embed_retry_backoff_ms; /* first backoff, doubled per retry up to
                                30 s; a Retry-After the service sends is
                                honoured when longer, up to 60 s (250) */
  int embed_batch_size;      /* texts per request (64) */
  int embed_concurrency;     /* requests in flight at once (4) */
  /* Read replicas (see "Read replicas" below): with read_conninfo set,
   * search, get, list and statistics read from it when it is fresh
   * enough; everything else, and any read it cannot answer, goes to the
   * primary (conninfo). */
  const char *read_conninfo; /* a streaming replica, or a libpq multi-host
                                string of several; NULL: none */
  int max_replica_lag_ms;    /* a read may be at most this stale, else the
                                primary answers (5000) */
  int replica_retry_ms;      /* a replica that could not be reached is not
                                tried again for this long (1000) */
} es_options;

/* Fills every field of [out] options (not NULL) with its default, given
 * above in parentheses; the strings are NULL. */
void es_options_init(es_options *options);

/* Opens a store with default options on [in] conninfo (NULL: embedded).
 * Connects once to check the server.  [out] *store is freed with
 * es_close(); on failure it is still set when memory allows, so that
 * es_errmsg() can explain, and must be closed too. */
es_status es_open(const char *conninfo, es_store **store);

/* Like es_open() with explicit [in] options (copied; the caller keeps
 * ownership of the strings). */
es_status es_open_opts(const es_options *options, es_store **store);

/* Closes every pooled connection and frees the store.  NULL is a no-op.
 * The store must not be in use by another thread. */
void es_close(es_store *store);

/* Message of the calling thread's last failure on [in] store; never NULL.
 * Valid until that thread's next call on the store.  With store NULL,
 * a static message. */
const char *es_errmsg(const es_store *store);

/* ------------------------------------------------------------------------
 * Read replicas
 *
 * With es_options.read_conninfo naming a streaming replica (hot standby)
 * of the primary, es_search(), es_get_document(), es_list_documents() and
 * es_stats_get() read from a pool of connections to it; writes, and
 * everything else, stay on the primary.  A read goes to the replica only
 * when it is safe:
 *   - the server is a standby of this store: in recovery, with the
 *     primary's system identifier and database (else ES_REPLICA_INVALID);
 *   - read-your-writes: it has replayed every commit this handle made (the
 *     primary's WAL position after each commit, against its
 *     pg_last_wal_replay_lsn());
 *   - bounded staleness: it has replayed a position the primary had at
 *     most max_replica_lag_ms ago (a thread of the handle samples the
 *     primary's position every quarter of the bound);
 *   - a cached search result is filled only from a replica that has
 *     replayed every commit the handle's listener heard of (see
 *     es_runtime), so that the cache never keeps an answer older than one
 *     it was told to forget.
 * A connection's finding is kept and asked again only when it no longer
 * proves a read safe.  Otherwise, and when the replica cannot be reached
 * (then it is not tried for replica_retry_ms) or fails, the primary
 * answers: a replica never makes a read fail.  es_stats_get() and
 * es_runtime_get() say which server answered and the replica's lag.
 * ---------------------------------------------------------------------- */

/* ------------------------------------------------------------------------
 * Embedding provider
 *
 * An OpenAI-compatible embeddings service (OpenAI, Ollama, llama.cpp's
 * server, vLLM, Hugging Face TEI): POST {embed_url}/embeddings with
 * {"model": embed_model, "input": [texts]}, answered with
 * {"data": [{"index": i, "embedding": [...]}]}.  Requests carry
 * embed_batch_size texts, at most embed_concurrency at once.  A request
 * answered 429 or 5xx, timed out or not connected is retried with backoff
 * (Retry-After honoured); any other answer is final.  When a request fails
 * for good, only the documents whose texts it carried fail, each with the
 * service's own message (ES_EPROVIDER); a vector of another dimension than
 * the store's fails its document, naming the model and both dimensions.
 * The API key is never part of a message; neither is a password in
 * embed_url.
 * ---------------------------------------------------------------------- */

/* Embeds [in] texts[0..n) (each non-empty UTF-8) with the store's
 * provider into [out] *vectors: n * dim floats, text i's at i * dim,
 * where dim is the store's dimension (es_store_shape), freed with
 * es_vector_free().  All or nothing: ES_EPROVIDER with the service's
 * message when any text could not be embedded, ES_EINVAL without a
 * provider (es_options.embed_url), ES_EDIM for a vector of another
 * dimension than the store's. */
es_status es_embed(es_store *store, const char *const *texts, size_t n,
                   float **vectors);

/* The provider's model (es_options.embed_model), or NULL without one;
 * owned by the store. */
const char *es_embed_model(const es_store *store);

/* ------------------------------------------------------------------------
 * Index builds
 *
 * embstore builds the store's HNSW index once after a large load (see
 * es_batch_options.defer_index), and es_init() and es_migrate() build it
 * when it is missing.  Each build runs in its own transaction with these
 * settings (SET LOCAL), and reports them in an es_index_build:
 *
 *  - maintenance_work_mem, pgvector's budget for the graph.  A graph that
 *    outgrows it is written out and the rest is inserted on disk, several
 *    times slower; pgvector then says "hnsw graph no longer fits into
 *    maintenance_work_mem after N tuples", which embstore reports
 *    (graph_fit 0, notice).  es_options.index_memory_mb sets it; 0 sizes it
 *    from the n vectors to index (the table's rows, estimated from the
 *    catalog, or counted when the table has no statistics) and their
 *    dimension:
 *        MiB = ceil(n * (4 * dim + 780) * 1.1 / 2^20) + 8
 *    4 * dim + 780 bytes is what pgvector 0.8 allocates per vector with its
 *    default m = 16 (hnswbuild.c, hnsw.h: the vector and its 8-byte header,
 *    a 128-byte element, a level-0 neighbour array of 2m 16-byte entries
 *    and one of m on each higher level, reached by 1/(m-1) of the vectors
 *    on average, pointers, and the allocator's header per allocation) and
 *    matches where its notice comes; 10% and 8 MiB are the margin (a
 *    parallel build keeps 4 MiB of it for itself).  100,000 vectors of 384
 *    dimensions: 251 MiB; 1,000,000: 2438 MiB.  When parallel workers are
 *    used it is at least 32 MiB per process (PostgreSQL launches no worker
 *    that would get less).  It is at most the cap: the smaller of 1 GiB and
 *    a quarter of the server's memory, or the server's own
 *    maintenance_work_mem when that is larger.  The server's memory is
 *    known when it runs on this machine, that is when it is reached
 *    through a Unix-domain socket (the embedded cluster, a local server):
 *    the machine's physical memory, or its cgroup's limit when lower.  For
 *    a server reached over TCP it cannot be known, and the cap is 1 GiB (or
 *    the server's own setting).  A load larger than the cap builds with
 *    the cap, and says that the graph did not fit: raise index_memory_mb
 *    (`embstore ingest --index-memory`) on a server that has the memory.
 *  - max_parallel_maintenance_workers (pgvector 0.8 builds in parallel):
 *    the smaller of the server's max_parallel_workers and
 *    max_worker_processes, and, on this machine, its processors less one
 *    (the leader builds too); lowered until every process gets its 32 MiB.
 *    PostgreSQL launches fewer for a small table (under 8 MB by default),
 *    and none when it has no worker slot free: workers_launched says.
 *    For a server reached over TCP the processors are not known: the
 *    server's own max_parallel_maintenance_workers is kept.
 *  - client_min_messages = debug1, so that pgvector's notice (and its
 *    line naming the workers it launched) is heard; never shown.
 * A setting the server refuses keeps the server's value, and a parallel
 * build that fails for want of (shared) memory is run again serially; note
 * says which.  What es_index_build reports is read back from the server.
 * ---------------------------------------------------------------------- */
typedef struct es_index_build {
  int built;        /* 1 when the call built the HNSW index; when 0, the
                       other fields are 0 (and the strings "") */
  int64_t vectors;  /* the vectors its memory was sized for (an estimate) */
  int memory_mb;    /* maintenance_work_mem of the build, MiB */
  int workers;      /* max_parallel_maintenance_workers of the build */
  int workers_launched; /* the parallel workers pgvector launched (it says
                           so at DEBUG1); 0 for a serial build */
  double seconds;   /* wall time of the CREATE INDEX */
  int graph_fit;    /* 1 when the graph fit in memory; 0 when pgvector said
                       it did not (notice) */
  char notice[256]; /* pgvector's notice when the graph did not fit, else "" */
  char note[512];   /* a setting the server refused, a parallel build run
                       again serially, and why; else "" */
} es_index_build;

/* ------------------------------------------------------------------------
 * Schema: create, adopt and migrate
 * ---------------------------------------------------------------------- */
/* What es_init() or es_migrate_report() did.  Freed with
 * es_init_report_free(). */
typedef struct es_init_report {
  int created;               /* 1 when this call created the store */
  int adopted;               /* 1 when existing tables were adopted */
  int migrations_applied;    /* migrations applied by this call */
  int indexes_created;       /* required indexes that were missing */
  int dim;                   /* the store's dimension */
  es_metric metric;          /* the store's metric */
  int64_t orphaned_chunks;   /* chunks whose document does not exist */
  int fk_valid;              /* 1 when chunks.document_id's key is valid */
  int fk_validated;          /* 1 when this call validated it */
  int counters_rebuilt;      /* 1 when missing or disabled counting triggers
                                were recreated and the counts recomputed */
  es_index_build index;      /* the HNSW index build, when this call built
                                it (an empty store's too) */
  char text_config[160];     /* the store's text search configuration;
                                "" when it has no text search */
  int chunk_index;           /* 1 when the store keeps a chunk index */
} es_init_report;

/* How es_init_with() creates a store.  Fill it with es_init_options_init(). */
typedef struct es_init_options {
  int dim;                 /* 1..ES_MAX_DIM (0: must be set) */
  es_metric metric;        /* (ES_METRIC_COSINE) */
  const char *text_config; /* the text search configuration of a new store
                              (a name pg_ts_config knows: english, simple,
                              ...); NULL: english.  On an existing store NULL
                              keeps its own, and another than its own is
                              ES_ECONFLICT (NULL) */
  int no_text_search;      /* 1: a new store without full-text search and
                              its index (0) */
  int chunk_index;         /* 1: keep an HNSW index on the chunks' vectors
                              (and, with text search, a GIN index on their
                              text, built concurrently after the commit), so
                              that es_search_params.chunks can search them;
                              on an existing store it is added (the HNSW
                              index built in the init's transaction); 0
                              never removes one (0) */
} es_init_options;

/* Fills [out] options (not NULL) with the defaults above. */
void es_init_options_init(es_init_options *options);

/* es_init() with every choice a new store takes.  The text search index
 * (GIN on to_tsvector(config, text)) is built after the schema's
 * transaction commits, with CREATE INDEX CONCURRENTLY, so an adopted store
 * full of documents keeps taking writes meanwhile; if that build is
 * interrupted, the next init or migrate builds it again. */
es_status es_init_with(es_store *store, const es_init_options *options,
                       es_init_report **report);

/* Creates the store (extension, tables, indexes, foreign key) for vectors of
 * [in] dim (1..ES_MAX_DIM) compared by [in] metric, or adopts existing
 * embeddings/chunks tables of the same shape without losing a row: missing
 * columns and indexes are added and the chunks -> embeddings foreign key is
 * added NOT VALID while orphaned chunks exist, and validated once they are
 * gone.  Re-running it on an initialised store with the same dim and metric
 * changes nothing.  ES_EDIM when the store or an adopted table has another
 * dimension, ES_ECONFLICT for another metric.  [out] *report receives what
 * was done, freed with es_init_report_free(); report may be NULL. */
es_status es_init(es_store *store, int dim, es_metric metric,
                  es_init_report **report);

/* Frees a report of es_init() or es_migrate_report().  NULL is a no-op. */
void es_init_report_free(es_init_report *report);

typedef struct es_migration {
  int version;
  const char *name;      /* static */
  int applied;           /* 1 when recorded in the migrations table */
  char applied_at[40];   /* ISO 8601 timestamp, "" when pending */
} es_migration;

typedef struct es_migration_list {
  size_t n;
  es_migration *items; /* ordered by version */
} es_migration_list;

/* [out] *list: every migration embstore knows, applied or pending.
 * Freed with es_migration_list_free(). */
es_status es_migration_list_get(es_store *store, es_migration_list **list);

/* Frees a list from es_migration_list_get(), its items too.  NULL is a
 * no-op. */
void es_migration_list_free(es_migration_list *list);

/* Applies pending migrations to an initialised store (ES_ENOSTORE when
 * es_init() never ran), and mends what a healthy store needs whatever
 * happened since: required indexes that are missing or invalid (a load
 * killed while its HNSW index was deferred) are built, the foreign key is
 * added or validated.  One transaction: all of it or nothing.  [out]
 * applied may be NULL. */
es_status es_migrate(es_store *store, int *applied);

/* es_migrate() reporting everything it did into [out] *report:
 * migrations applied, indexes created, the foreign key's state.  Freed
 * with es_init_report_free(); report may be NULL. */
es_status es_migrate_report(es_store *store, es_init_report **report);

/* [out] dim and metric of an initialised store (either may be NULL).
 * Read once, then remembered. */
es_status es_store_shape(es_store *store, int *dim, es_metric *metric);

/* Asks the database now whether it answers and holds an initialised
 * store: ES_OK, ES_ECONNECT (not reachable, or not ready to answer within
 * the timeouts) or ES_ENOSTORE (reachable, no store).  For a readiness
 * probe. */
es_status es_store_ping(es_store *store);

/* What a read found the replica to be. */
typedef enum es_replica_state {
  ES_REPLICA_OK,      /* fresh enough: it answered */
  ES_REPLICA_BEHIND,  /* it had not yet replayed this handle's last write
                         (read-your-writes): the primary answered */
  ES_REPLICA_LAGGING, /* further behind than max_replica_lag_ms: the
                         primary answered */
  ES_REPLICA_DOWN,    /* not reachable, or it failed: the primary answered */
  ES_REPLICA_INVALID  /* not a standby of this store's primary (promoted,
                         or another cluster or database): the primary
                         answered */
} es_replica_state;

/* "ok", "behind", "lagging", "down" or "invalid"; never NULL. */
const char *es_replica_state_name(es_replica_state state);

/* What this process's handle holds now: its pool of connections and its
 * search cache (a long-running program's gauges). */
typedef struct es_runtime {
  int pool_size;         /* es_options.pool_size */
  int pool_open;         /* connections open, idle or in use */
  int pool_idle;
  int pool_in_use;
  int64_t cache_hits;    /* searches answered from the cache, since open */
  int64_t cache_misses;  /* searches the cache could not answer */
  int64_t cache_entries; /* results held */
  int64_t cache_bytes;   /* their size */
  /* Other processes' writes reach the cache as notifications (the
   * store's triggers NOTIFY at commit, and the handle LISTENs on a
   * connection of its own, from its first cached search on). */
  int64_t cache_invalidations;       /* notifications received */
  int64_t cache_listener_reconnects; /* times the listening connection
                                        was lost and made again */
  int cache_listening;   /* 1: listening now, so that cached answers are
                            never stale; 0: not (no cache, not started,
                            reconnecting: then the cache answers nothing,
                            or a store from before migration 10, whose
                            cache relies on cache_ttl_ms) */
  /* The read replica (es_options.read_conninfo); all 0 without one. */
  int replica;                 /* 1: one is configured */
  int64_t replica_reads;       /* reads it answered */
  int64_t replica_fallbacks;   /* reads the primary answered instead */
  int64_t replica_lag_ms;      /* as es_stats.replica_lag_ms, last read */
  es_replica_state replica_state; /* what the last read found */
  int replica_pool_open;       /* connections open to it */
} es_runtime;

/* Fills [out] runtime (not NULL); all 0 for a NULL store. */
void es_runtime_get(es_store *store, es_runtime *runtime);

/* ------------------------------------------------------------------------
 * Documents
 * ---------------------------------------------------------------------- */
typedef struct es_chunk {
  const char *id;            /* unique across the store */
  const char *text;          /* NULL is stored as "" */
  const float *embedding;    /* NULL: the chunk has no vector */
  size_t dim;                /* length of embedding when not NULL */
  const char *metadata_json; /* a JSON object, NULL is stored as {} */
  const char *model;         /* the model that made embedding (NULL: not
                                said); a chunk embedded by the provider
                                records the provider's */
} es_chunk;

typedef struct es_doc {
  const char *id;            /* 1..ES_MAX_ID_BYTES bytes of UTF-8 */
  const char *text;          /* NULL is stored as "" */
  const float *embedding;    /* dim values, all finite; NULL only when the
                                store has a provider (es_options.embed_url)
                                and text is not empty: the provider embeds
                                it (and, when has_chunks, the chunks that
                                have text and no vector) */
  size_t dim;
  const char *metadata_json; /* a JSON object, NULL is stored as {} */
  const char *source_id;     /* may be NULL */
  int has_chunks;            /* 1: chunks[] replaces the stored chunk set;
                                0: the stored chunks are kept */
  const es_chunk *chunks;    /* chunk i gets chunk_index i */
  size_t n_chunks;
  const char *model;         /* the model that made embedding (NULL: not
                                said), recorded per row; a document
                                embedded by the provider records the
                                provider's */
} es_doc;

typedef enum es_upsert_outcome {
  ES_UPSERT_INSERTED = 0,
  ES_UPSERT_UPDATED = 1,
  ES_UPSERT_UNCHANGED = 2 /* identical to what is stored: not rewritten */
} es_upsert_outcome;

/* Validates [in] doc against the store's shape without touching the
 * database beyond reading that shape.  On failure es_errmsg() names the
 * field (and chunk) at fault. */
es_status es_doc_validate(es_store *store, const es_doc *doc);

/* Inserts or updates one document, and when doc->has_chunks replaces its
 * chunk set, in one transaction.  [out] outcome may be NULL. */
es_status es_upsert(es_store *store, const es_doc *doc,
                    es_upsert_outcome *outcome);

/* What es_get_document() reads.  Fill it with es_get_options_init(). */
typedef struct es_get_options {
  int include_embedding;         /* 1: the vectors of the document and of
                                    its chunks too (0) */
  const char *const *workspaces; /* a tenant's scope: only a document whose
                                    metadata.workspace is one of these
                                    n_workspaces strings is found; any other
                                    (also one without a workspace) answers
                                    ES_ENOTFOUND with the same message as an
                                    id that is not stored.  NULL: any
                                    document (NULL) */
  size_t n_workspaces;           /* entries of workspaces; with workspaces
                                    not NULL, 0 finds nothing (0) */
} es_get_options;

/* Fills every field of [out] options (not NULL) with its default, given
 * above in parentheses: no vectors, any workspace. */
void es_get_options_init(es_get_options *options);

/* A stored chunk, as es_get_document() reads it. */
typedef struct es_document_chunk {
  char *id;
  int chunk_index;       /* its place in the document (chunk i of the
                            es_doc that wrote it has chunk_index i) */
  char *text;
  char *metadata_json;   /* a JSON object, as PostgreSQL's jsonb prints it */
  float *embedding;      /* dim values; NULL without include_embedding or
                            when the chunk has no vector */
  size_t dim;
} es_document_chunk;

/* A stored document and its chunks.  Freed with es_document_free(). */
typedef struct es_document {
  char *id;
  char *text;
  char *metadata_json;   /* a JSON object, as PostgreSQL's jsonb prints it */
  char *source_id;       /* NULL when the document has none */
  int64_t created_at_us; /* microseconds since 1970-01-01 00:00:00 UTC,
                            whatever the server's or session's TimeZone and
                            DateStyle */
  int64_t updated_at_us; /* the same, of the last write that changed it (an
                            unchanged re-ingest keeps it) */
  float *embedding;      /* dim values; NULL without include_embedding or
                            when the document has no vector */
  size_t dim;
  es_document_chunk *chunks; /* n_chunks of them, by chunk_index, then id */
  size_t n_chunks;
  int chunk_set;         /* 1: the last write that named its chunks (an
                            es_doc with has_chunks, even none) set them, and
                            their hash is stored; 0: never named (a document
                            written without chunks, or adopted) */
} es_document;

/* Reads the document [in] id (any UTF-8, '/' and spaces included) with its
 * chunks, in one statement, so one snapshot: the chunks are those of the
 * document as it was read, and the workspace scope is checked in the same
 * statement that reads it.  [in] options may be NULL for the defaults.
 * ES_ENOTFOUND when no such document is stored or it is outside
 * options->workspaces (the message, "no document with id ...", is the
 * same); ES_EINVAL when id is NULL, empty or not UTF-8.  [out] *document
 * is freed with es_document_free(). */
es_status es_get_document(es_store *store, const char *id,
                          const es_get_options *options,
                          es_document **document);

/* Frees a document from es_get_document(), its chunks and vectors too.
 * NULL is a no-op. */
void es_document_free(es_document *document);

/* Which documents es_list_documents() reads.  Fill it with
 * es_list_params_init(). */
typedef struct es_list_params {
  const char *source_id;   /* only this source's documents (NULL: all) */
  const char *workspace;   /* only this workspace's (NULL: all) */
  const char *filter_json; /* only those whose metadata contains this JSON
                              object, as es_search_params.filter_json */
  const char *after;       /* only ids after this one (keyset pagination:
                              pass the last page's next_after).  NULL: from
                              the first.  Ids are in the order of the id
                              column's collation, which its primary key
                              serves: bytewise in the embedded cluster
                              (initialised without a locale) */
  int limit;               /* 1..10000 documents a page (100) */
  int include_chunks;      /* 1: each document's chunks too (0) */
  int include_embedding;   /* 1: and the vectors (0) */
  const char *const *workspaces; /* a tenant's scope, as in es_get_options */
  size_t n_workspaces;
} es_list_params;

/* Fills every field of [out] params (not NULL) with its default. */
void es_list_params_init(es_list_params *params);

/* A page of documents, by id.  Freed with es_document_list_free(). */
typedef struct es_document_list {
  es_document *documents; /* n of them, in id order */
  size_t n;
  char *next_after;       /* the id to pass as after for the next page;
                             NULL when this page is the last */
} es_document_list;

/* Reads one page of the documents params selects, in id order, each with
 * its chunks when asked, in one statement (one snapshot for the page).
 * Paging by next_after visits every document that exists throughout
 * exactly once, whatever is inserted or deleted meanwhile; documents
 * inserted during the walk appear when their id is past the page last
 * read.  ES_EINVAL for a limit out of range, a filter that is not a JSON
 * object (the message names the byte) or an id that is not UTF-8. */
es_status es_list_documents(es_store *store, const es_list_params *params,
                            es_document_list **list);

/* Frees a list from es_list_documents(), its documents too.  NULL is a
 * no-op. */
void es_document_list_free(es_document_list *list);

/* ------------------------------------------------------------------------
 * Batch upsert (the write path at COPY speed)
 *
 * Documents are validated first; invalid ones are reported and never sent.
 * Valid ones go in batches, each batch one transaction.  A batch whose ids
 * are all new is written with binary COPY straight into the tables; other
 * batches are staged with COPY and merged with a single INSERT ... ON
 * CONFLICT, which skips documents whose content hashes match what is stored
 * (unchanged: not rewritten, updated_at untouched).  If PostgreSQL rejects a
 * batch, it is split in halves until the failing documents are isolated;
 * the others land and each failure carries the database's message.
 *
 * The same id twice: among the valid occurrences the last one wins and the
 * earlier ones count as duplicates; an id that already landed earlier in
 * the same batch session is applied again (last wins) and counted as a
 * duplicate too.  So inserted + updated + unchanged + failed + duplicates is
 * the number of documents given.
 * ---------------------------------------------------------------------- */
typedef void (*es_progress_fn)(size_t processed, size_t total, void *user);

/* The phases of a batch session, in the order they come. */
typedef enum es_phase {
  ES_PHASE_LOADING = 0,  /* documents being written (es_batch_add) */
  ES_PHASE_INDEXING = 1, /* the deferred HNSW index being built
                            (es_batch_end) */
  ES_PHASE_ANALYSING = 2 /* ANALYZE of the tables the load changed
                            (es_batch_end) */
} es_phase;

/* What a phase callback is told; borrowed for the call only.  Fields may
 * be appended (the library allocates it). */
typedef struct es_phase_info {
  es_phase phase;
  double fraction; /* how far the phase is, 0..1, or -1 when unknown
                      (loading without a total).  Indexing: the share of
                      the table's blocks the build has scanned, as
                      pg_stat_progress_create_index reports it, at most
                      0.99 until the index is built, then 1 */
  size_t done;     /* loading: documents processed; indexing: blocks
                      scanned; analysing: 0 */
  size_t total;    /* loading: documents expected (0: unknown); indexing:
                      blocks to scan (0 until the server says); analysing:
                      0 */
  const es_index_build *index; /* indexing: the build's settings (vectors,
                                  memory_mb, workers; graph_fit and notice
                                  as they stand so far); otherwise NULL */
} es_phase_info;

/* Called by a batch session in its own thread: while loading after each
 * batch (as es_progress_fn is); when the index build starts (fraction 0),
 * about every 0.5 s while it runs (read on a second pooled connection,
 * when one is free: else only at start and end) and once it is built
 * (fraction 1); before ANALYZE (0) and after it (1). */
typedef void (*es_phase_fn)(const es_phase_info *info, void *user);

typedef enum es_defer_index {
  ES_DEFER_AUTO = 0, /* defer for a load of 10,000+ documents that is at
                        least as large as what the store already holds */
  ES_DEFER_ALWAYS = 1,
  ES_DEFER_NEVER = 2
} es_defer_index;

typedef struct es_batch_options {
  size_t batch_size;       /* documents per transaction (1000) */
  es_progress_fn progress; /* called after each batch, may be NULL */
  void *user;              /* passed to progress and phase */
  size_t total;            /* expected number of documents when streaming
                              (progress, index strategy); 0 unknown */
  /* Inserting into an HNSW index one row at a time is the slowest part of a
   * large load; building it once afterwards is several times faster.  When
   * deferred, the session drops the HNSW index before its first batch and
   * builds it again in es_batch_end() (searches meanwhile scan exactly).
   * If the process dies in between, the next batch session (any ingest),
   * `embstore migrate` or `embstore init` builds it, and `embstore stats`
   * reports it missing until then.  Dropping it is an optimisation only:
   * when it cannot be dropped (a lock held elsewhere for more than 2 s, no
   * rights), the load goes on with the index and es_batch_note() says why. */
  es_defer_index defer_index;
  es_phase_fn phase;       /* told every phase (loading, building the index,
                              analysing) and how far it is; may be NULL.
                              progress, when set too, is still called */
} es_batch_options;

/* Fills every field of [out] options (not NULL) with its default, given
 * above in parentheses: batch_size 1000, no progress or phase callback,
 * total 0 (unknown), defer_index ES_DEFER_AUTO. */
void es_batch_options_init(es_batch_options *options);

typedef struct es_batch_failure {
  char *id;        /* NULL when the document had no usable id */
  size_t position; /* its position in the input (see es_batch_add) */
  es_status status;
  char *error;     /* names the field, or the database's message */
} es_batch_failure;

typedef struct es_batch_result {
  size_t inserted, updated, unchanged, failed, duplicates;
  size_t chunks_written; /* chunk rows inserted or rewritten */
  size_t batches;        /* transactions committed */
  es_batch_failure *failures; /* failed of them, in input order */
  size_t n_failures;          /* == failed */
  es_index_build index;       /* the HNSW index build of es_batch_end(), if
                                 the session built it (see "Index builds") */
} es_batch_result;

/* Frees a result of es_batch_upsert() or es_batch_end(), its failures
 * too.  NULL is a no-op.  Never pass es_batch_totals()'s pointer: the
 * session owns that one. */
void es_batch_result_free(es_batch_result *result);

/* Upserts docs[0..n) in batches.  Positions in failures are indexes into
 * docs.  Returns ES_OK when every document landed, ES_EPARTIAL when some
 * failed (see the result), or the error that stopped the run (connection
 * lost beyond retries, ...), in which case the result still says what
 * landed and lists every document that did not.  [out] *result is freed
 * with es_batch_result_free() and set whenever memory allows.  [in]
 * options may be NULL for the defaults. */
es_status es_batch_upsert(es_store *store, const es_doc *docs, size_t n,
                          const es_batch_options *options,
                          es_batch_result **result);

/* A batch session for streamed input (the CLI's ingest): it holds one
 * connection, so duplicates are recognised across calls.  Not thread-safe;
 * one session per thread. */
typedef struct es_batch es_batch;

/* Starts a session; [out] *batch is ended (and freed) with es_batch_end().
 * [in] options may be NULL for the defaults; the session keeps a copy (and
 * calls its progress function with its user pointer until it ends). */
es_status es_batch_begin(es_store *store, const es_batch_options *options,
                         es_batch **batch);

/* Upserts docs[0..n) (in batches of options->batch_size).  positions[i]
 * names docs[i] in failures (a line number, say); NULL numbers the
 * documents consecutively across calls from 0.  Returns like
 * es_batch_upsert() for these documents. */
es_status es_batch_add(es_batch *batch, const es_doc *docs, size_t n,
                       const size_t *positions);

/* The totals so far: borrowed from the session, valid until
 * es_batch_end(); never freed by the caller. */
const es_batch_result *es_batch_totals(const es_batch *batch);

/* Ends the session: builds a deferred index, releases the connection and
 * frees the session.  [out] result (may be NULL) receives the totals, freed
 * with es_batch_result_free().  Returns the status of the index build
 * (ES_OK when nothing was deferred).  NULL is a no-op. */
es_status es_batch_end(es_batch *batch, es_batch_result **result);

/* Whether this session deferred the HNSW index (so far), or found it
 * missing (left by a load that died) and builds it in es_batch_end(). */
int es_batch_index_deferred(const es_batch *batch);

/* Why the HNSW index was not deferred although that was asked or decided
 * (it could not be dropped: a lock held by another session, no rights);
 * the load then maintains the index row by row.  NULL when there is
 * nothing to say.  Owned by the session. */
const char *es_batch_note(const es_batch *batch);

/* A document parsed from JSON, owning all of its memory.  The embedded
 * es_doc points into it.  Freed with es_doc_json_free(). */
typedef struct es_doc_json es_doc_json;

/* Parses one JSON document of the ingest format
 *   {"id","text","embedding":[...],"metadata":{...},"source_id",
 *    "chunks":[{"id","text","embedding":[...]|null,"metadata":{...}}]}
 * from [in] json of [in] len bytes (need not be NUL-terminated).
 * Checks syntax and types only; es_doc_validate() checks the rest.
 * [out] *out is freed with es_doc_json_free().  On failure *out is NULL,
 * the status is ES_EINVAL (or ES_ENOMEM) and a message naming the field is
 * written into [out] err (errlen bytes, always NUL-terminated). */
es_status es_doc_json_parse(const char *json, size_t len, es_doc_json **out,
                            char *err, size_t errlen);

/* For error reports on a line that did not parse: copies the document's
 * "id" into [out] id (cap bytes) when it is a well-formed string before
 * the first error; returns its length, 0 when there is none. */
size_t es_doc_json_find_id(const char *json, size_t len, char *id, size_t cap);

/* The parsed document: borrowed from doc, valid until es_doc_json_free(). */
const es_doc *es_doc_json_doc(const es_doc_json *doc);

/* Fills source_id and metadata.workspace where the document has none;
 * either argument may be NULL. */
es_status es_doc_json_set_defaults(es_doc_json *doc, const char *source_id,
                                   const char *workspace);

/* Frees a document from es_doc_json_parse() and everything it points to
 * (the es_doc of es_doc_json_doc() too).  NULL is a no-op. */
void es_doc_json_free(es_doc_json *doc);

/* Parses a vector written as JSON, [in] json of [in] len bytes (need not
 * be NUL-terminated): one array of 1..16,000 numbers, read exactly as
 * es_doc_json_parse() reads an "embedding" (the same text gives the same
 * floats, correctly rounded, in any locale).  [in] name is what messages
 * call the array ("--vector", "vector"; NULL: "vector"), its elements are
 * name[i].  Checks the syntax only: es_search() checks the dimension, and
 * that every value is finite.  On success [out] *vector (freed with
 * es_vector_free()) holds [out] *dim values.  On failure *vector is NULL
 * and a message naming the element and byte is written into [out] err
 * (errlen bytes, always NUL-terminated; err may be NULL): ES_EINVAL, or
 * ES_ENOMEM. */
es_status es_vector_parse_json(const char *json, size_t len, const char *name,
                               float **vector, size_t *dim, char *err,
                               size_t errlen);

/* Checks a metadata filter (es_search_params.filter_json and the like),
 * [in] json of [in] len bytes: one JSON object that PostgreSQL's jsonb can
 * hold.  ES_OK, or ES_EINVAL with a message naming the byte, starting
 * with [in] name (NULL: "filter"), in err (errlen bytes, always
 * NUL-terminated; err may be NULL).  Every call that takes a filter
 * checks it so; this is for a caller that wants to refuse it first. */
es_status es_filter_check(const char *json, size_t len, const char *name,
                          char *err, size_t errlen);

/* Frees a vector from es_vector_parse_json().  NULL is a no-op. */
void es_vector_free(float *vector);

/* ------------------------------------------------------------------------
 * Search
 * ---------------------------------------------------------------------- */
/* How a search ranks.  ES_SEARCH_AUTO picks from what is given: a vector
 * or like_id alone is a vector search, text alone a text search (a hybrid
 * one when the store has an embedding provider, which embeds the text),
 * both a hybrid one. */
typedef enum es_search_mode {
  ES_SEARCH_AUTO = 0,
  ES_SEARCH_VECTOR = 1, /* nearest by the store's metric */
  ES_SEARCH_TEXT = 2,   /* PostgreSQL's text relevance (ts_rank_cd) */
  ES_SEARCH_HYBRID = 3  /* a vector pool and a text pool fused by
                           Reciprocal Rank Fusion */
} es_search_mode;

/* "auto", "vector", "text", "hybrid"; es_search_mode_parse() reads them
 * (ES_EINVAL for anything else). */
const char *es_search_mode_name(es_search_mode mode);
es_status es_search_mode_parse(const char *name, es_search_mode *mode);

/* What to search for.  Fill it with es_search_params_init() first. */
typedef struct es_search_params {
  const float *vector;   /* query vector, or NULL with like_id */
  size_t dim;
  const char *like_id;   /* search near this stored document (excluded from
                            the results), or NULL with vector */
  int k;                 /* 1..1000 (10) */
  const char *workspace; /* only documents whose metadata.workspace is this */
  const char *source_id; /* only documents of this source */
  int exact;             /* 1: exact scan without the index (ground truth) */
  const char *filter_json; /* only documents whose metadata contains this
                              JSON object (jsonb @>: {"lang":"en"} matches
                              {"lang":"en","n":1}; {"tags":["a"]} matches
                              tags ["a","b"]); NULL: no filter */
  const char *text;      /* a query in web-search syntax ("a phrase", OR,
                            -word), for the text and hybrid modes; NULL */
  es_search_mode mode;   /* (ES_SEARCH_AUTO) */
  int rrf_k;             /* hybrid: score = w_v / (rrf_k + vector rank) +
                            w_t / (rrf_k + text rank); 1..10000 (0: 60) */
  double weight_vector;  /* w_v and w_t, >= 0, not both 0 (0 and 0: 1 and 1) */
  double weight_text;
  int chunks;            /* 1: chunk hits (a store made with
                            es_init_options.chunk_index, which keeps an
                            HNSW and a text index on the chunks), ranked in
                            any mode, filtered through their document (0) */
  const char *model;     /* the model that made vector (NULL: not said).
                            A text query that the store's provider embeds
                            (vector or hybrid mode without a vector) is the
                            provider's model.  When known, a store whose
                            searched vectors (documents', or chunks') were
                            made by another model is refused, ES_ECONFLICT
                            naming both, unless any_model.  The check is
                            store-wide (per-model counts are kept for the
                            whole store): a workspace of one model in a
                            store of two needs any_model */
  int any_model;         /* 1: search across models anyway (0) */
} es_search_params;

/* Fills [out] params (not NULL): k 10, everything else NULL or 0 (which
 * searches the whole store through the index). */
void es_search_params_init(es_search_params *params);

typedef struct es_hit {
  char *id;
  double distance;     /* in the store's metric; smaller is nearer (NaN in
                          a text search, and for a hybrid hit that only the
                          text pool held) */
  char *text;
  char *source_id;     /* NULL when the document has none */
  char *metadata_json; /* a JSON object */
  double score;        /* text: ts_rank_cd; hybrid: the fused score; larger
                          ranks first (0 in a vector search) */
  int vector_rank;     /* 1-based rank in the vector pool, 0: not in it */
  int text_rank;       /* 1-based rank in the text pool, 0: not in it */
  char *document_id;   /* a chunk hit (es_search_params.chunks): id is the
                          chunk's, text its text, this its document's id,
                          source_id and metadata its document's; NULL for a
                          document hit */
  int chunk_index;     /* a chunk hit's place in its document; -1 else */
} es_hit;

typedef struct es_results {
  size_t n;
  es_hit *hits;        /* best first */
  es_search_mode mode; /* the mode that ranked them (never AUTO) */
} es_results;

/* k nearest neighbours, filtered by workspace and source when given.  With
 * filters, pgvector's iterative index scan keeps scanning until k matches
 * are found (or the data is exhausted).  ES_ENOTFOUND when like_id is not
 * stored.  [out] *results is freed with es_results_free(). */
es_status es_search(es_store *store, const es_search_params *params,
                    es_results **results);

/* Frees results from es_search(), every hit's strings too.  NULL is a
 * no-op. */
void es_results_free(es_results *results);

/* ------------------------------------------------------------------------
 * Delete, by source or by document id
 * ---------------------------------------------------------------------- */
typedef struct es_delete_options {
  const char *workspace; /* only documents of this workspace; NULL: all */
  int no_cascade;        /* 1: refuse (ES_ECONFLICT) when a document to
                            delete still has chunks; nothing is deleted (0) */
  int dry_run;           /* 1: count exactly, change nothing (0) */
  const char *const *workspaces; /* a tenant's scope, besides workspace:
                                    only documents whose metadata.workspace
                                    is one of these n_workspaces strings
                                    (a document without a workspace is
                                    outside every scope).  NULL: all (NULL) */
  size_t n_workspaces;   /* entries of workspaces; with workspaces not NULL,
                            0 allows nothing (0) */
  const char *filter_json; /* only documents whose metadata contains this
                              JSON object, as es_search_params.filter_json
                              (NULL) */
} es_delete_options;

/* Fills every field of [out] options (not NULL) with its default: every
 * workspace, cascading to chunks, not a dry run. */
void es_delete_options_init(es_delete_options *options);

/* What es_delete_by_source() or es_delete_documents() deleted (or would,
 * in a dry run).  Freed with es_delete_result_free(). */
typedef struct es_delete_result {
  int64_t deleted;        /* documents */
  int64_t chunks_removed; /* their chunks */
  int dry_run;
  /* es_delete_documents() only (0 and NULL for a delete by source): */
  int64_t not_found;      /* distinct ids given that name no stored
                             document in the scope (workspace, workspaces) */
  int64_t duplicates;     /* ids given again after their first time; so
                             deleted + not_found + duplicates is n */
  char **not_found_ids;   /* those not_found ids, in the order first given */
} es_delete_result;

/* Deletes the documents of [in] source_id (and their chunks, unless
 * no_cascade) in one transaction with a consistent snapshot: a document of
 * the source inserted concurrently is either deleted with its chunks or
 * kept with its chunks, and both counts are exact.  Cached searches that
 * may show the source are invalidated after the commit.  [in] options may
 * be NULL for the defaults.  [out] *result is freed with
 * es_delete_result_free(); result may be NULL. */
es_status es_delete_by_source(es_store *store, const char *source_id,
                              const es_delete_options *options,
                              es_delete_result **result);

/* Deletes every document whose metadata contains [in] filter_json (a JSON
 * object; {} matches every document), within options' workspace scope, as
 * es_delete_by_source() deletes a source's: one transaction, exact counts,
 * cascade or restrict, dry run.  options->filter_json is ignored.
 * ES_EINVAL, naming the byte, when filter_json is not a JSON object. */
es_status es_delete_by_filter(es_store *store, const char *filter_json,
                              const es_delete_options *options,
                              es_delete_result **result);

/* Deletes the documents [in] ids[0..n) (and their chunks, unless
 * no_cascade) in one transaction: the documents are locked in id order
 * (as every writer locks them, so no deadlock), then their chunks and
 * they are deleted and counted, so both counts are exact and nothing is
 * half-deleted.  An id that is not stored, or names a document outside
 * the scope (options->workspace, options->workspaces), is counted in
 * not_found and listed in not_found_ids, exactly alike: not an error.  An
 * id given twice counts once, the repeats in duplicates.  Any number of
 * ids (10,000 and more) go to the server as one array parameter.  With
 * no_cascade, ES_ECONFLICT when any of the documents has chunks, and
 * nothing is deleted; in a dry run too (the counts are exact, nothing
 * changes).  Cached searches that may show a deleted document are
 * invalidated after the commit.  ES_EINVAL when ids is NULL with n > 0, or
 * an id is NULL or not UTF-8 (the message names its index); n 0 deletes
 * nothing.  [in] options may be NULL for the defaults.  [out] *result is
 * freed with es_delete_result_free(); result may be NULL. */
es_status es_delete_documents(es_store *store, const char *const *ids,
                              size_t n, const es_delete_options *options,
                              es_delete_result **result);

/* Frees a result of es_delete_by_source() or es_delete_documents(), its
 * not_found_ids too.  NULL is a no-op. */
void es_delete_result_free(es_delete_result *result);

/* ------------------------------------------------------------------------
 * Statistics and index health
 * ---------------------------------------------------------------------- */
typedef enum es_health {
  ES_HEALTH_HEALTHY = 0,
  ES_HEALTH_DEGRADED = 1,
  ES_HEALTH_CRITICAL = 2
} es_health;

/* "healthy", "degraded" or "critical". */
const char *es_health_name(es_health health);

typedef struct es_source_stats {
  char *source_id; /* NULL for documents without a source */
  int64_t documents;
  int64_t chunks;
} es_source_stats;

typedef struct es_model_stats {
  char *model;       /* NULL: vectors whose model was never said */
  int64_t documents; /* document vectors this model made */
  int64_t chunks;    /* chunk vectors */
} es_model_stats;

typedef struct es_stats {
  const char *workspace;   /* as asked (owned by the stats), or NULL */
  int64_t documents;
  int64_t chunks;
  int64_t without_vector;  /* documents that have no vector */
  int64_t orphaned_chunks; /* chunks whose document is gone, in the whole
                              store (counted exactly by the triggers, also
                              when a writer bypassed the foreign key) */
  es_source_stats *sources; /* by source_id; sources_total of them */
  size_t sources_total;
  double storage_mb;       /* heap + TOAST + indexes of the store's tables,
                              in MiB; for a workspace, the store's size times
                              the workspace's share of rows */
  double reclaimable_mb;   /* what a VACUUM would free (dead tuples), same
                              attribution */
  es_health index_health;
  char **health_reasons;   /* one sentence per fact that lowers health */
  size_t n_health_reasons;
  /* From the most recent 1,000 recorded operations of each kind; NaN when
   * there are none. */
  double avg_search_ms;
  double avg_insert_ms;    /* per document written */
  double cache_hit_rate;   /* share of searches answered from the cache */
  es_model_stats *models;  /* the store's vectors by the model that made
                              them, ordered by model, NULL first; health is
                              degraded when one index holds vectors of two
                              named models.  None for a workspace's
                              statistics: the counts are kept for the whole
                              store, which a tenant must not see */
  size_t n_models;
  /* Which server answered (es_options.read_conninfo): the replica's
   * counts and index facts are its own; sizes, the table statistics
   * behind dead tuples and analyses (which a standby does not keep), and
   * loads and index builds in progress are asked of the primary. */
  int served_by_replica;          /* 1: the replica answered */
  int replica;                    /* 1: a replica is configured */
  es_replica_state replica_state; /* what it was found to be */
  int64_t replica_lag_ms;         /* when it answered, the staleness
                                     proved; else the age of the last
                                     commit it replayed; -1: not known */
} es_stats;

/* Exact statistics for the whole store, or for [in] workspace when not
 * NULL.  Counts come from counters that triggers keep exact (any writer,
 * not only embstore), so this answers in milliseconds at millions of rows.
 * [out] *stats is freed with es_stats_free(). */
es_status es_stats_get(es_store *store, const char *workspace,
                       es_stats **stats);

/* Frees statistics from es_stats_get(), their sources and reasons too.
 * NULL is a no-op. */
void es_stats_free(es_stats *stats);

/* The counters checked against COUNT(*).
 *
 * The counts of es_stats_get() come from counters that triggers keep
 * exact for every writer whose triggers fire.  A writer that bypassed them
 * (triggers disabled during a restore; a REPEATABLE READ transaction moving
 * a document to another source while another adds its chunks) can leave
 * them wrong.  es_stats_get() reports what it can see cheaply
 * (disabled triggers, negative counts, counters far from PostgreSQL's
 * estimate); this is the exact check. */
typedef struct es_count_drift {
  char *source_id, *workspace; /* the key whose counters are wrong (NULL:
                                  none) */
  int64_t documents_counted, documents_actual;
  int64_t chunks_counted, chunks_actual;
  int64_t without_vector_counted, without_vector_actual;
} es_count_drift;

typedef struct es_count_check {
  int64_t documents, chunks;    /* COUNT(*) of the tables */
  int64_t orphaned_chunks;      /* chunks whose document does not exist */
  int64_t orphaned_counted;     /* what the counters say of them */
  es_count_drift *drift;        /* keys whose counters are wrong (at most
                                   1,000 listed) */
  size_t n_drift;
  int repaired;                 /* 1 when this call recounted */
} es_count_check;

/* Compares every counter with the tables in one REPEATABLE READ snapshot
 * (they must agree to the row) and, when [in] repair is 1 and they do not,
 * recomputes the counters while holding writers off (SHARE locks on the
 * tables; waiting for them is bounded like any lock wait).  Scans both
 * tables: seconds at millions of rows.  [out] *check is freed with
 * es_count_check_free(). */
es_status es_check_counts(es_store *store, int repair, es_count_check **check);

/* Frees a check from es_check_counts(), its drift list too.  NULL is a
 * no-op. */
void es_count_check_free(es_count_check *check);

/* ----------------------------------------------------------------------
 * Citus: a store distributed over worker nodes (docs/SCALING.md)
 * ---------------------------------------------------------------------- */
/* What es_distribute() did.  Freed with es_distribute_report_free(). */
typedef struct es_distribute_report {
  int already;     /* 1 when the store was distributed before this call */
  int shards;      /* the documents' shard count */
  int workers;     /* active worker nodes */
  size_t n_steps;  /* what this call did, in order, one line each */
  char **steps;
} es_distribute_report;

/* Distributes the store over the Citus cluster whose coordinator the
 * handle is connected to: documents by id into shards shards (0: 4, which
 * measured best on a small cluster; 1 to 1024), chunks by document_id
 * colocated with them, the counters colocated and exact, the small tables
 * as reference tables.  Resumable: the tables move in one transaction, and
 * a second call does only what is left (on a distributed store: installs
 * the trigger functions again and reports already = 1; a shards other than
 * 0 that differs from the store's count is ES_EINVAL, nothing changed:
 * embstore does not reshard).  ES_EINVAL on a
 * plain PostgreSQL, on a Citus worker, or without worker nodes, saying
 * which.  Other processes that opened the store before it was distributed
 * must open it again. */
es_status es_distribute(es_store *store, int shards, es_distribute_report **report);

/* Frees a report of es_distribute().  NULL is a no-op. */
void es_distribute_report_free(es_distribute_report *report);

/* ------------------------------------------------------------------------
 * Orphan cleanup
 * ---------------------------------------------------------------------- */
typedef struct es_cleanup_options {
  int dry_run;       /* 1: count exactly, change nothing */
  size_t batch_size; /* rows per transaction (1000) */
  int min_age_s;     /* documents without a vector younger than this are
                        left alone: a pipeline may still be embedding them
                        (3600) */
} es_cleanup_options;

/* Fills every field of [out] options (not NULL) with its default, given
 * above in parentheses. */
void es_cleanup_options_init(es_cleanup_options *options);

typedef struct es_cleanup_result {
  int64_t orphaned_chunks;     /* chunks whose document does not exist */
  int64_t orphaned_embeddings; /* documents without a vector, older than
                                  the grace period */
  int64_t cleaned;             /* rows deleted, in all batches (including
                                  the chunks of deleted documents) */
  int dry_run;
  char **details;              /* what was done, one sentence each */
  size_t n_details;
} es_cleanup_result;

/* Finds and (unless dry_run) deletes orphans in batches of batch_size, each
 * its own short transaction; then VACUUM (ANALYZE)s what changed and, once
 * no orphaned chunk is left, validates a NOT VALID foreign key.  [in]
 * options may be NULL for the defaults.  [out] *result is freed with
 * es_cleanup_result_free(); it is set also when a batch failed (memory
 * allowing), counting what the batches before it deleted. */
es_status es_cleanup_orphaned(es_store *store, const es_cleanup_options *options,
                              es_cleanup_result **result);

/* Frees a result of es_cleanup_orphaned(), its details too.  NULL is a
 * no-op. */
void es_cleanup_result_free(es_cleanup_result *result);

/* ------------------------------------------------------------------------
 * Performance metrics
 *
 * Every operation is recorded (operation, duration, success, error) into
 * performance_metrics, buffered and written in batches by a background
 * thread: recording never blocks or fails the operation.  Rows older than
 * es_options.metrics_retention_s are pruned.
 * ---------------------------------------------------------------------- */
typedef struct es_op_metrics {
  char *operation;
  int64_t count;
  double p50_ms, p95_ms, p99_ms;
  double error_rate; /* failed / count */
} es_op_metrics;

typedef struct es_metrics_report {
  es_op_metrics *ops; /* by operation name */
  size_t n;
} es_metrics_report;

/* Per-operation figures over the last [in] since_s seconds (0: all),
 * including what this process has buffered.  [out] *report is freed with
 * es_metrics_report_free(). */
es_status es_metrics_report_get(es_store *store, int64_t since_s,
                                es_metrics_report **report);

/* Frees a report from es_metrics_report_get(), its operations too.  NULL
 * is a no-op. */
void es_metrics_report_free(es_metrics_report *report);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* EMBSTORE_H */
