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

typedef struct es__fk_state {
  bool exists;
  bool valid;
  bool cascade;
  char name[64];
} es__fk_state;

es_status es__fk_lookup(es_store *store, es__conn *conn, es__fk_state *fk);

/* Chunks whose document_id names no document. */
es_status es__count_orphan_chunks(es_store *store, es__conn *conn,
                                  int64_t *n);

#endif
