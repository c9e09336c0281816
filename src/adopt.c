/* adopt.c - whether existing tables can become a store.
 *
 * `embstore init` adopts embeddings/chunks/performance_metrics tables that
 * a database already has.  Everything it will later rely on is checked
 * here, before anything is changed, so that a table it cannot use is
 * refused with the column and type at fault instead of failing half-way:
 * the types of the columns embstore reads and writes, a unique key on the
 * ids (ON CONFLICT needs one), and no NOT NULL column that embstore cannot
 * fill. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

typedef struct column {
  const char *table, *name;
  const char *type; /* format_type() without the modifier */
} column;

/* The columns of sql/001_base.sql, as an adopted table must have them
 * (when it has them: missing ones are added). */
static const column columns[] = {
    {"embeddings", "id", "text"},
    {"embeddings", "text", "text"},
    {"embeddings", "embedding", "vector"},
    {"embeddings", "metadata", "jsonb"},
    {"embeddings", "source_id", "text"},
    {"embeddings", "created_at", "timestamp with time zone"},
    {"embeddings", "updated_at", "timestamp with time zone"},
    {"embeddings", "content_hash", "bytea"},
    {"embeddings", "chunks_hash", "bytea"},
    {"embeddings", "model", "text"},
    {"chunks", "id", "text"},
    {"chunks", "document_id", "text"},
    {"chunks", "chunk_index", "integer"},
    {"chunks", "text", "text"},
    {"chunks", "embedding", "vector"},
    {"chunks", "metadata", "jsonb"},
    {"chunks", "created_at", "timestamp with time zone"},
    {"performance_metrics", "id", "bigint"},
    {"performance_metrics", "operation", "text"},
    {"performance_metrics", "duration_ms", "double precision"},
    {"performance_metrics", "success", "boolean"},
    {"performance_metrics", "error_message", "text"},
    {"performance_metrics", "metadata", "jsonb"},
    {"performance_metrics", "created_at", "timestamp with time zone"},
};
#define N_COLUMNS (sizeof columns / sizeof columns[0])

static const column *expected(const char *table, const char *name) {
  for (size_t i = 0; i < N_COLUMNS; i++)
    if (strcmp(columns[i].table, table) == 0 && strcmp(columns[i].name, name) == 0)
      return &columns[i];
  return NULL;
}

/* Whether a column of type have can stand for one of type want: text
 * columns may be varchar, integer ids may be narrower. */
static bool type_fits(const char *want, const char *have) {
  if (strcmp(want, have) == 0)
    return true;
  if (strcmp(want, "text") == 0)
    return strcmp(have, "character varying") == 0;
  if (strcmp(want, "bigint") == 0)
    return strcmp(have, "integer") == 0;
  return false;
}

/* The vector columns must have the store's dimension. */
static es_status check_vector(es_store *s, const char *table, int typmod,
                              int dim) {
  if (typmod <= 0)
    return es__fail(s, ES_ECONFLICT, "%s.embedding is a vector without a "
                    "dimension; give it one (ALTER TABLE %s ALTER embedding "
                    "TYPE vector(%d)) and re-run init", table, table, dim);
  if (typmod != dim)
    return es__fail(s, ES_EDIM, "%s.embedding holds vector(%d) but --dim %d "
                    "was given", table, typmod, dim);
  return ES_OK;
}

/* One row of the catalog query: a column of an existing table. */
static es_status check_column(es_store *s, PGresult *r, int i, int dim) {
  const char *table = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
  const char *type = PQgetvalue(r, i, 2);
  int typmod = atoi(PQgetvalue(r, i, 3));
  bool not_null = PQgetvalue(r, i, 4)[0] == 't';
  bool filled = PQgetvalue(r, i, 5)[0] == 't';
  const column *want = expected(table, name);
  if (want == NULL) {
    if (not_null && !filled)
      return es__fail(s, ES_ECONFLICT, "%s.%s (%s) is NOT NULL without a "
                      "default, and embstore does not write it: give it a "
                      "default or drop NOT NULL, then re-run init",
                      table, name, type);
    return ES_OK;
  }
  if (!type_fits(want->type, type))
    return es__fail(s, ES_ECONFLICT, "%s.%s has type %s, but embstore needs "
                    "%s: cannot adopt this table (change the column's type "
                    "or rename the table)",
                    table, name, type, want->type);
  if (strcmp(want->type, "vector") == 0)
    return check_vector(s, table, typmod, dim);
  return ES_OK;
}

static const char columns_sql[] =
    "SELECT c.relname, a.attname, format_type(a.atttypid, NULL), a.atttypmod, "
    "a.attnotnull, a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "WHERE a.attrelid IN (to_regclass('embeddings'), to_regclass('chunks'), "
    "to_regclass('performance_metrics')) AND a.attnum > 0 "
    "AND NOT a.attisdropped ORDER BY c.relname <> 'embeddings', c.relname, a.attnum";

/* Tables of the store's names that exist, with their kind; relkind 'r' and
 * 'p' (partitioned) are tables. */
static const char tables_sql[] =
    "SELECT c.relname, c.relkind, EXISTS (SELECT 1 FROM pg_index i "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
    "WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1 "
    "AND a.attname = 'id' AND i.indpred IS NULL AND i.indexprs IS NULL) "
    "FROM pg_class c WHERE c.oid IN (to_regclass('embeddings'), "
    "to_regclass('chunks'), to_regclass('performance_metrics')) ORDER BY 1";

/* The tables themselves: tables, with a unique key on id. */
static es_status check_tables(es_store *s, es__conn *c, bool *any) {
  PGresult *r = PQexec(c->pg, tables_sql);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot inspect existing tables");
  for (int i = 0; rc == ES_OK && i < PQntuples(r); i++) {
    const char *table = PQgetvalue(r, i, 0), kind = PQgetvalue(r, i, 1)[0];
    if (strcmp(table, "embeddings") == 0)
      *any = true;
    if (kind != 'r' && kind != 'p')
      rc = es__fail(s, ES_ECONFLICT, "%s exists but is not a table (relkind "
                    "'%c'): cannot adopt it", table, kind);
    else if (strcmp(table, "performance_metrics") != 0 &&
             PQgetvalue(r, i, 2)[0] != 't')
      rc = es__fail(s, ES_ECONFLICT, "%s.id has no primary key or unique "
                    "index: add one (ALTER TABLE %s ADD PRIMARY KEY (id)) and "
                    "re-run init", table, table);
  }
  PQclear(r);
  return rc;
}

es_status es__check_adoptable(es_store *s, es__conn *c, int dim, int *adopted) {
  bool any = false;
  es_status rc = check_tables(s, c, &any);
  if (rc == ES_OK) {
    PGresult *r = PQexec(c->pg, columns_sql);
    if (!es__res_ok(r))
      rc = es__fail_pg(s, c->pg, r, "cannot inspect existing tables");
    for (int i = 0; rc == ES_OK && i < PQntuples(r); i++)
      rc = check_column(s, r, i, dim);
    PQclear(r);
  }
  if (rc == ES_OK && adopted)
    *adopted = any;
  if (rc != ES_OK && es__last_err(s)->sqlstate[0] == '\0') {
    es__err *e = es__last_err(s);
    size_t len = strlen(e->msg);
    snprintf(e->msg + len, sizeof e->msg - len, " (nothing was changed)");
  }
  return rc;
}
