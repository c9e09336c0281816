/* schema.h - what a healthy store must have: required indexes and the
 * chunks -> embeddings foreign key.  Shared by migrations and statistics. */
#ifndef ES_SCHEMA_H
#define ES_SCHEMA_H

#include "internal.h"

typedef struct es__index_def {
  const char *name;  /* name embstore gives it */
  const char *table;
  const char *key;   /* tail of pg_get_indexdef() that identifies it */
  const char *create;
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

/* Creates every required index of metric that is missing (all but the
 * HNSW index when skip_hnsw) and replaces invalid ones; *created (may be
 * NULL) is incremented per index built.  Runs in the caller's transaction,
 * which should hold the migration lock so that two menders do not race. */
es_status es__ensure_indexes(es_store *store, es__conn *conn, es_metric metric,
                             bool skip_hnsw, int *created);

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
