/* schema.h - what a healthy store must have: required indexes and the
 * chunks -> embeddings foreign key.  Shared by migrations and statistics. */
#ifndef ES_SCHEMA_H
#define ES_SCHEMA_H

#include "internal.h"

typedef struct es__index_def {
  const char *name;   /* name embstore gives it */
  const char *table;
  const char *key;    /* tail of pg_get_indexdef() that identifies it */
  const char *create;
  const char *column; /* an HNSW index: the vector column; else NULL */
} es__index_def;

/* The required indexes for metric; n set to their count. */
const es__index_def *es__required_indexes(es_metric metric, size_t *n);

/* State of an index requirement in the database. */
typedef enum es__index_state {
  ES__INDEX_OK,      /* a valid index with this definition exists */
  ES__INDEX_INVALID, /* only an invalid one (failed concurrent build) */
  ES__INDEX_MISSING
} es__index_state;

/* Looks up def on conn; *state set.  *found_name (may be NULL) receives
 * the name of the index found, malloc'd. */
es_status es__index_lookup(es_store *store, es__conn *conn,
                           const es__index_def *def, es__index_state *state,
                           char **found_name);

/* Whether def is the HNSW index (the one a large load defers). */
bool es__index_is_hnsw(const es__index_def *def);

/* How an HNSW build is watched: the report it fills and whom it tells
 * its progress.  Every field may be NULL. */
typedef struct es__build_watch {
  es_index_build *report; /* filled when the HNSW index is built */
  es_phase_fn phase;      /* told ES_PHASE_INDEXING and how far it is */
  void *user;             /* passed to phase */
} es__build_watch;

/* Creates every required index of metric that is missing (all but the
 * HNSW index when skip_hnsw) and replaces invalid ones; *created (may be
 * NULL) is incremented per index built.  The HNSW index is built by
 * es__build_hnsw, watched by watch (may be NULL).  Runs in the caller's
 * transaction, which should hold the migration lock so that two menders
 * do not race. */
es_status es__ensure_indexes(es_store *store, es__conn *conn, es_metric metric,
                             bool skip_hnsw, int *created,
                             const es__build_watch *watch);

/* ---- index_build.c: the HNSW build (see "Index builds" in embstore.h) ---- */

/* Builds the HNSW index def (missing) in the caller's transaction, with
 * maintenance_work_mem and parallel workers set for it and pgvector's
 * notice heard; fills watch->report and tells watch->phase.  The settings
 * stay until the transaction ends. */
es_status es__build_hnsw(es_store *store, es__conn *conn,
                         const es__index_def *def, const es__build_watch *watch);

/* DROP INDEX [CONCURRENTLY] of the index name (quoted here); what names
 * the failure. */
es_status es__drop_index(es_store *s, es__conn *c, const char *name,
                         bool concurrently, const char *what);
/* The chunks' HNSW index of a store of metric (`init --chunk-index`). */
const es__index_def *es__chunk_index_def(es_metric metric);
/* Whether the store keeps it (embstore_meta.chunk_index). */
es_status es__chunk_index_wanted(es_store *s, es__conn *c, bool *wanted);
/* Builds it, in the caller's transaction, when wanted and missing or
 * invalid. */
es_status es__ensure_chunk_index(es_store *s, es__conn *c, es_metric metric,
                                 int *created, const es__build_watch *watch);

/* What the sizing of a build knows of the server. */
typedef struct es__build_facts {
  int64_t machine_mb;       /* the server's memory, 0 when unknown (a
                               server reached over TCP) */
  int cpus;                 /* the server's processors, 0 when unknown */
  int64_t server_mwm_mb;    /* its maintenance_work_mem */
  int max_worker_processes; /* its bounds on parallel workers */
  int max_parallel_workers;
  int server_workers;       /* its max_parallel_maintenance_workers */
} es__build_facts;

/* The settings of a build of vectors vectors of dim dimensions: *memory_mb
 * and *workers (see "Index builds"); override_mb > 0 is used as the
 * memory.  Pure: for the unit tests. */
void es__build_plan(int64_t vectors, int dim, int override_mb,
                    const es__build_facts *facts, int *memory_mb, int *workers);

/* Checks, before anything is changed, that the tables a database already
 * has can be adopted as a store of dimension dim: column types, a unique
 * key on the ids, no NOT NULL column embstore cannot fill.  *adopted is
 * set when an embeddings table exists. */
es_status es__check_adoptable(es_store *store, es__conn *conn, int dim,
                              int *adopted);

typedef struct es__fk_state {
  bool exists;
  bool valid;
  bool cascade;
  char name[64];
} es__fk_state;

es_status es__fk_lookup(es_store *store, es__conn *conn, es__fk_state *fk);

/* A table with at least ES__DEAD_MIN dead tuples that are more than
 * ES__DEAD_SHARE of its rows wants a VACUUM (stats reports it, cleanup does
 * it).  Strings, for SQL text and strtod alike. */
#define ES__DEAD_MIN "1000"
#define ES__DEAD_SHARE "0.2"

/* The triggers that keep embstore_counts exact (sql/004, sql/006), all of
 * which must exist and fire ALWAYS. */
#define ES__COUNT_TRIGGERS 10

/* How many of them exist and fire always; 0 when embstore_counts is
 * missing. */
es_status es__count_triggers(es_store *store, es__conn *conn, int *enabled);

/* Chunks whose document_id names no document. */
es_status es__count_orphan_chunks(es_store *store, es__conn *conn,
                                  int64_t *n);

#endif
