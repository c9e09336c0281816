/* migrate.c - versioned migrations, store creation and adoption.
 *
 * Migrations are applied in order, each in its own transaction under an
 * advisory lock (so two `embstore init` at once serialise), and recorded in
 * embstore_migrations.  None drops user data.  After them, every run checks
 * the facts a healthy store needs (indexes, the foreign key) and mends what
 * is missing, so re-running init on a healthy store changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"
#include "sql_embed.h"


typedef struct migrate_ctx {
  int dim;
  es_metric metric;
  es_init_report *report;
} migrate_ctx;

typedef es_status (*migration_fn)(es_store *, es__conn *, migrate_ctx *);

static es_status m_base(es_store *, es__conn *, migrate_ctx *);
static es_status m_indexes(es_store *, es__conn *, migrate_ctx *);
static es_status m_chunks_fk(es_store *, es__conn *, migrate_ctx *);
static es_status m_counts(es_store *, es__conn *, migrate_ctx *);
static es_status m_statistics(es_store *, es__conn *, migrate_ctx *);
static es_status insert_meta(es_store *, es__conn *, migrate_ctx *);

typedef struct migration {
  int version;
  const char *name;
  migration_fn apply;
} migration;

static const migration migrations[] = {
    {1, "base tables", m_base},
    {2, "required indexes and HNSW index", m_indexes},
    {3, "chunks.document_id foreign key", m_chunks_fk},
    {4, "per-source counters kept by triggers", m_counts},
    {5, "no statistics for columns nothing filters on", m_statistics},
};
#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])

/* Replaces every @DIM@ in sql with dim. */
static char *expand_dim(const char *sql, int dim) {
  char num[16];
  int nlen = snprintf(num, sizeof num, "%d", dim);
  size_t count = 0;
  for (const char *p = strstr(sql, "@DIM@"); p; p = strstr(p + 5, "@DIM@"))
    count++;
  char *out = malloc(strlen(sql) + count * (size_t)nlen + 1), *w = out;
  if (out == NULL)
    return NULL;
  for (const char *p = sql;;) {
    const char *at = strstr(p, "@DIM@");
    if (at == NULL) {
      strcpy(w, p);
      break;
    }
    memcpy(w, p, (size_t)(at - p));
    w += at - p;
    memcpy(w, num, (size_t)nlen);
    w += nlen;
    p = at + 5;
  }
  return out;
}

static es_status m_base(es_store *s, es__conn *c, migrate_ctx *m) {
  char *sql = expand_dim(es__sql_001_base, m->dim);
  if (sql == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  es_status rc = es__exec(s, c, sql, "migration 1 (base tables) failed");
  free(sql);
  return rc == ES_OK ? insert_meta(s, c, m) : rc;
}

/* Creates every required index that is missing; replaces invalid ones. */
static es_status ensure_indexes(es_store *s, es__conn *c, es_metric metric,
                                int *created) {
  size_t n;
  const es__index_def *defs = es__required_indexes(metric, &n);
  for (size_t i = 0; i < n; i++) {
    es__index_state st;
    char *found = NULL;
    es_status rc = es__index_lookup(s, c, &defs[i], &st, &found);
    if (rc != ES_OK)
      return rc;
    if (st == ES__INDEX_INVALID) {
      /* Left by a failed CREATE INDEX CONCURRENTLY: unusable, rebuild. */
      char *q = PQescapeIdentifier(c->pg, found, strlen(found));
      char sql[256];
      snprintf(sql, sizeof sql, "DROP INDEX %s", q ? q : "\"\"");
      PQfreemem(q);
      rc = es__exec(s, c, sql, "cannot drop an invalid index");
      st = ES__INDEX_MISSING;
    }
    free(found);
    if (rc == ES_OK && st == ES__INDEX_MISSING) {
      char what[128];
      snprintf(what, sizeof what, "cannot create index %s", defs[i].name);
      rc = es__exec(s, c, defs[i].create, what);
      if (rc == ES_OK && created)
        (*created)++;
    }
    if (rc != ES_OK)
      return rc;
  }
  return ES_OK;
}

static es_status m_indexes(es_store *s, es__conn *c, migrate_ctx *m) {
  return ensure_indexes(s, c, m->metric,
                        m->report ? &m->report->indexes_created : NULL);
}

/* Adds the chunks -> embeddings key NOT VALID when missing, and validates
 * it once no orphaned chunk is left.  Orphans are reported, never deleted
 * here: that is `embstore cleanup`'s job. */
static es_status ensure_fk(es_store *s, es__conn *c, es_init_report *rep) {
  es__fk_state fk;
  int64_t orphans = 0;
  es_status rc = es__fk_lookup(s, c, &fk);
  if (rc == ES_OK && !fk.valid)
    rc = es__count_orphan_chunks(s, c, &orphans);
  if (rc != ES_OK)
    return rc;
  if (!fk.exists) {
    rc = es__exec(s, c,
                  "ALTER TABLE chunks ADD CONSTRAINT chunks_document_id_fkey "
                  "FOREIGN KEY (document_id) REFERENCES embeddings (id) "
                  "ON DELETE CASCADE NOT VALID",
                  "cannot add the chunks.document_id foreign key");
    snprintf(fk.name, sizeof fk.name, "chunks_document_id_fkey");
  }
  if (rc == ES_OK && !fk.valid && orphans == 0) {
    char *q = PQescapeIdentifier(c->pg, fk.name, strlen(fk.name));
    char sql[200];
    snprintf(sql, sizeof sql, "ALTER TABLE chunks VALIDATE CONSTRAINT %s",
             q ? q : "\"\"");
    PQfreemem(q);
    rc = es__exec(s, c, sql, "cannot validate the chunks foreign key");
    if (rc == ES_OK && rep)
      rep->fk_validated = 1;
    fk.valid = rc == ES_OK;
  }
  if (rep) {
    rep->orphaned_chunks = orphans;
    rep->fk_valid = fk.valid;
  }
  return rc;
}

static es_status m_chunks_fk(es_store *s, es__conn *c, migrate_ctx *m) {
  return ensure_fk(s, c, m->report);
}

static es_status m_counts(es_store *s, es__conn *c, migrate_ctx *m) {
  (void)m;
  return es__exec(s, c, es__sql_004_counts, "migration 4 (counters) failed");
}

static es_status m_statistics(es_store *s, es__conn *c, migrate_ctx *m) {
  (void)m;
  return es__exec(s, c, es__sql_005_statistics,
                  "migration 5 (column statistics) failed");
}

/* The vector column of table as (type, dimension); dim -1 when the column
 * is missing, 0 when it has no fixed dimension. */
static es_status column_dim(es_store *s, es__conn *c, const char *table,
                            int *dim, char *type, size_t typelen) {
  const char *params[1] = {table};
  PGresult *r = PQexecParams(
      c->pg,
      "SELECT format_type(atttypid, NULL), atttypmod FROM pg_attribute "
      "WHERE attrelid = to_regclass($1) AND attname = 'embedding' "
      "AND NOT attisdropped",
      1, NULL, params, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot inspect existing tables");
    PQclear(r);
    return rc;
  }
  *dim = -1;
  type[0] = '\0';
  if (PQntuples(r) == 1) {
    snprintf(type, typelen, "%s", PQgetvalue(r, 0, 0));
    int mod = atoi(PQgetvalue(r, 0, 1));
    *dim = mod > 0 ? mod : 0;
  }
  PQclear(r);
  return ES_OK;
}

/* An adopted table must hold vectors of the dimension asked for. */
static es_status check_adoptable(es_store *s, es__conn *c, int dim,
                                 es_init_report *rep) {
  static const char *const tables[] = {"embeddings", "chunks"};
  for (int i = 0; i < 2; i++) {
    int have = -1;
    char type[64];
    es_status rc = column_dim(s, c, tables[i], &have, type, sizeof type);
    if (rc != ES_OK)
      return rc;
    if (have < 0)
      continue;
    if (i == 0 && rep)
      rep->adopted = 1;
    if (strcmp(type, "vector") != 0)
      return es__fail(s, ES_ECONFLICT, "%s.embedding has type %s, not vector: "
                      "cannot adopt it", tables[i], type);
    if (have == 0)
      return es__fail(s, ES_ECONFLICT, "%s.embedding is a vector without a "
                      "dimension; give it one (ALTER TABLE %s ALTER embedding "
                      "TYPE vector(%d)) and re-run init", tables[i], tables[i],
                      dim);
    if (have != dim)
      return es__fail(s, ES_EDIM, "%s.embedding holds vector(%d) but --dim %d "
                      "was given", tables[i], have, dim);
  }
  return ES_OK;
}

/* true when table exists in the search path. */
static es_status table_exists(es_store *s, es__conn *c, const char *table,
                              bool *exists) {
  const char *params[1] = {table};
  PGresult *r = PQexecParams(c->pg, "SELECT to_regclass($1) IS NOT NULL", 1,
                             NULL, params, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot inspect the catalog");
    PQclear(r);
    return rc;
  }
  *exists = PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  return ES_OK;
}

/* Reads embstore_meta: *found 0 when the store is new. */
static es_status read_meta(es_store *s, es__conn *c, int *found, int *dim,
                           es_metric *metric) {
  bool exists;
  es_status rc = table_exists(s, c, "embstore_meta", &exists);
  *found = 0;
  if (rc != ES_OK || !exists)
    return rc;
  PGresult *r = PQexec(c->pg, "SELECT dim, metric FROM embstore_meta");
  if (!es__res_ok(r)) {
    rc = es__fail_pg(s, c->pg, r, "cannot read embstore_meta");
    PQclear(r);
    return rc;
  }
  if (PQntuples(r) == 1) {
    *found = 1;
    *dim = atoi(PQgetvalue(r, 0, 0));
    if (es_metric_parse(PQgetvalue(r, 0, 1), metric) != ES_OK)
      *metric = ES_METRIC_COSINE;
  }
  PQclear(r);
  return ES_OK;
}

/* Versions already recorded: applied[v] = 1. */
static es_status read_applied(es_store *s, es__conn *c,
                              char applied_at[][40], int *applied) {
  bool exists;
  es_status rc = table_exists(s, c, "embstore_migrations", &exists);
  if (rc != ES_OK || !exists)
    return rc;
  PGresult *r = PQexec(c->pg,
                       "SELECT version, to_char(applied_at AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                       "FROM embstore_migrations ORDER BY version");
  if (!es__res_ok(r)) {
    rc = es__fail_pg(s, c->pg, r, "cannot read embstore_migrations");
    PQclear(r);
    return rc;
  }
  for (int i = 0; i < PQntuples(r); i++) {
    int v = atoi(PQgetvalue(r, i, 0));
    if (v >= 1 && v <= (int)N_MIGRATIONS) {
      applied[v - 1] = 1;
      if (applied_at)
        snprintf(applied_at[v - 1], 40, "%s", PQgetvalue(r, i, 1));
    }
  }
  PQclear(r);
  return ES_OK;
}

/* Applies one migration in its own transaction, unless another process
 * applied it while we waited for the lock. */
static es_status apply_one(es_store *s, es__conn *c, const migration *mg,
                           migrate_ctx *m) {
  char version[16];
  const char *params[2] = {version, mg->name};
  snprintf(version, sizeof version, "%d", mg->version);
  es_status rc = es__begin(s, c);
  if (rc == ES_OK)
    rc = es__no_timeout(s, c); /* an index on adopted data takes its time */
  if (rc == ES_OK)
    rc = es__exec(s, c, ES__MIGRATE_LOCK, "cannot take the migration lock");
  if (rc == ES_OK)
    rc = es__exec(s, c,
                  "CREATE TABLE IF NOT EXISTS embstore_migrations ("
                  "version integer PRIMARY KEY, name text NOT NULL, "
                  "applied_at timestamptz NOT NULL DEFAULT now())",
                  "cannot create embstore_migrations");
  if (rc != ES_OK)
    goto done;
  PGresult *r = PQexecParams(c->pg,
                             "SELECT 1 FROM embstore_migrations WHERE version = $1",
                             1, NULL, params, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    rc = es__fail_pg(s, c->pg, r, "cannot read embstore_migrations");
    PQclear(r);
    goto done;
  }
  int done_already = PQntuples(r) > 0;
  PQclear(r);
  if (!done_already) {
    if ((rc = mg->apply(s, c, m)) != ES_OK)
      goto done;
    r = PQexecParams(c->pg,
                     "INSERT INTO embstore_migrations (version, name) "
                     "VALUES ($1, $2)",
                     2, NULL, params, NULL, NULL, 0);
    if (!es__res_ok(r))
      rc = es__fail_pg(s, c->pg, r, "cannot record a migration");
    PQclear(r);
    if (rc != ES_OK)
      goto done;
  }
  rc = es__commit(s, c);
  if (rc == ES_OK && !done_already && m->report)
    m->report->migrations_applied++;
done:
  es__rollback(c);
  return rc;
}

/* Records the store's shape with migration 1 (same transaction). */
static es_status insert_meta(es_store *s, es__conn *c, migrate_ctx *m) {
  char dim[16];
  const char *params[2] = {dim, es_metric_name(m->metric)};
  snprintf(dim, sizeof dim, "%d", m->dim);
  PGresult *r = PQexecParams(c->pg,
                             "INSERT INTO embstore_meta (dim, metric) "
                             "VALUES ($1, $2) ON CONFLICT DO NOTHING",
                             2, NULL, params, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot record the store's shape");
  PQclear(r);
  return rc;
}

/* Applies every pending migration. */
static es_status apply_pending(es_store *s, es__conn *c, migrate_ctx *m) {
  int applied[N_MIGRATIONS] = {0};
  es_status rc = read_applied(s, c, NULL, applied);
  for (size_t i = 0; rc == ES_OK && i < N_MIGRATIONS; i++)
    if (!applied[i])
      rc = apply_one(s, c, &migrations[i], m);
  return rc;
}

/* CREATE EXTENSION vector, with errors that say what to do. */
static es_status create_extension(es_store *s, es__conn *c) {
  PGresult *r = PQexec(c->pg, "CREATE EXTENSION IF NOT EXISTS vector");
  es_status rc = ES_OK;
  if (!es__res_ok(r)) {
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (st && (strcmp(st, "58P01") == 0 || strcmp(st, "0A000") == 0)) {
      es__fail_pg(s, c->pg, r, "pgvector is not installed on this server");
      rc = es__fail_wrap(s, ES_ENOVECTOR, "install pgvector 0.8+ (on Debian "
                         "12: run scripts/setup)");
    } else if (st && strcmp(st, "42501") == 0) {
      es__fail_pg(s, c->pg, r, "not allowed to create the vector extension");
      rc = es__fail_wrap(s, ES_EDB, "ask a superuser to run CREATE EXTENSION "
                         "vector in this database");
    } else {
      rc = es__fail_pg(s, c->pg, r, "cannot create the vector extension");
    }
  }
  PQclear(r);
  return rc;
}

/* The store keeps UTF-8 text: a database in another encoding would convert
 * (or, as SQL_ASCII, not check) what it is given. */
static es_status check_encoding(es_store *s, es__conn *c) {
  PGresult *r = PQexec(c->pg, "SELECT pg_encoding_to_char(encoding), "
                              "current_database() FROM pg_database "
                              "WHERE datname = current_database()");
  es_status rc = ES_OK;
  if (!es__res_ok(r) || PQntuples(r) != 1)
    rc = es__fail_pg(s, c->pg, r, "cannot read the database's encoding");
  else if (strcmp(PQgetvalue(r, 0, 0), "UTF8") != 0)
    rc = es__fail(s, ES_ECONFLICT, "database \"%s\" stores text as %s; "
                  "embstore needs UTF8: create the database with ENCODING "
                  "'UTF8'", PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0));
  PQclear(r);
  return rc;
}

typedef struct init_ctx {
  int dim;
  es_metric metric;
  es_init_report *report;
} init_ctx;

static es_status shape_conflict(es_store *s, int dim, es_metric metric,
                                int want_dim, es_metric want_metric) {
  if (dim != want_dim)
    return es__fail(s, ES_EDIM, "the store was initialised with --dim %d, not "
                    "%d", dim, want_dim);
  if (metric != want_metric)
    return es__fail(s, ES_ECONFLICT, "the store was initialised with "
                    "--metric %s, not %s", es_metric_name(metric),
                    es_metric_name(want_metric));
  return ES_OK;
}

static es_status init_op(es_store *s, es__conn *c, void *arg) {
  init_ctx *ic = arg;
  es_init_report *rep = ic->report;
  int found = 0, dim = 0;
  es_metric metric = ES_METRIC_COSINE;
  migrate_ctx m = {ic->dim, ic->metric, rep};
  es_status rc;

  memset(rep, 0, sizeof *rep);
  if ((rc = check_encoding(s, c)) != ES_OK ||
      (rc = create_extension(s, c)) != ES_OK ||
      (rc = read_meta(s, c, &found, &dim, &metric)) != ES_OK)
    return rc;
  if (found && (rc = shape_conflict(s, dim, metric, ic->dim, ic->metric)) != ES_OK)
    return rc;
  if (!found) {
    if ((rc = check_adoptable(s, c, ic->dim, rep)) != ES_OK)
      return rc;
    rep->created = !rep->adopted;
  }
  if ((rc = apply_pending(s, c, &m)) != ES_OK)
    return rc;
  /* Migration 1 may have been applied by a concurrent init with another
   * shape while we waited: the recorded shape is the truth. */
  if ((rc = read_meta(s, c, &found, &dim, &metric)) != ES_OK)
    return rc;
  if (!found) {
    if ((rc = insert_meta(s, c, &m)) != ES_OK ||
        (rc = read_meta(s, c, &found, &dim, &metric)) != ES_OK)
      return rc;
  }
  if ((rc = shape_conflict(s, dim, metric, ic->dim, ic->metric)) != ES_OK)
    return rc;
  /* Mend what a healthy store needs, whatever happened since, in one
   * transaction under the migration lock. */
  if ((rc = es__begin(s, c)) != ES_OK)
    return rc;
  if ((rc = es__no_timeout(s, c)) != ES_OK ||
      (rc = es__exec(s, c, ES__MIGRATE_LOCK, "cannot take the migration lock")) != ES_OK ||
      (rc = ensure_indexes(s, c, metric, &rep->indexes_created)) != ES_OK ||
      (rc = ensure_fk(s, c, rep)) != ES_OK ||
      (rc = es__commit(s, c)) != ES_OK) {
    es__rollback(c);
    return rc;
  }
  rep->dim = dim;
  rep->metric = metric;
  return ES_OK;
}

es_status es_init(es_store *s, int dim, es_metric metric, es_init_report *report) {
  es_init_report local;
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  if (dim < 1 || dim > ES_MAX_DIM)
    return es__fail(s, ES_EINVAL, "--dim must be 1..%d (pgvector's HNSW limit), "
                    "not %d", ES_MAX_DIM, dim);
  if ((unsigned)metric > ES_METRIC_IP)
    return es__fail(s, ES_EINVAL, "unknown metric %d", (int)metric);
  init_ctx ic = {dim, metric, report ? report : &local};
  es_status rc = es__run(s, "init", true, init_op, &ic);
  pthread_mutex_lock(&s->shape_mu);
  s->dim = 0; /* read the shape afresh */
  pthread_mutex_unlock(&s->shape_mu);
  return rc;
}

typedef struct migrate_op_ctx {
  int applied;
} migrate_op_ctx;

static es_status migrate_op(es_store *s, es__conn *c, void *arg) {
  migrate_op_ctx *mo = arg;
  int found = 0, dim = 0;
  es_metric metric = ES_METRIC_COSINE;
  es_init_report rep;
  memset(&rep, 0, sizeof rep);
  es_status rc = read_meta(s, c, &found, &dim, &metric);
  if (rc != ES_OK)
    return rc;
  if (!found)
    return es__fail(s, ES_ENOSTORE, "no embstore store in this database: run "
                    "`embstore init --dim N` first");
  migrate_ctx m = {dim, metric, &rep};
  rc = apply_pending(s, c, &m);
  mo->applied = rep.migrations_applied;
  return rc;
}

es_status es_migrate(es_store *s, int *applied) {
  if (s == NULL)
    return ES_EINVAL;
  migrate_op_ctx mo = {0};
  es_status rc = es__run(s, "migrate", true, migrate_op, &mo);
  if (applied)
    *applied = mo.applied;
  return rc;
}

typedef struct list_ctx {
  es_migration_list *list;
} list_ctx;

static es_status list_op(es_store *s, es__conn *c, void *arg) {
  list_ctx *lc = arg;
  int applied[N_MIGRATIONS] = {0};
  char at[N_MIGRATIONS][40];
  memset(at, 0, sizeof at);
  es_status rc = read_applied(s, c, at, applied);
  if (rc != ES_OK)
    return rc;
  for (size_t i = 0; i < N_MIGRATIONS; i++) {
    es_migration *e = &lc->list->items[i];
    e->version = migrations[i].version;
    e->name = migrations[i].name;
    e->applied = applied[i];
    snprintf(e->applied_at, sizeof e->applied_at, "%s", at[i]);
  }
  lc->list->n = N_MIGRATIONS;
  return ES_OK;
}

es_status es_migrations(es_store *s, es_migration_list **out) {
  if (s == NULL || out == NULL)
    return ES_EINVAL;
  *out = NULL;
  es_migration_list *l = calloc(1, sizeof *l);
  if (l)
    l->items = calloc(N_MIGRATIONS, sizeof *l->items);
  if (l == NULL || l->items == NULL) {
    es_migration_list_free(l);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  list_ctx lc = {l};
  es_status rc = es__run(s, NULL, true, list_op, &lc);
  if (rc != ES_OK) {
    es_migration_list_free(l);
    return rc;
  }
  *out = l;
  return ES_OK;
}

void es_migration_list_free(es_migration_list *l) {
  if (l == NULL)
    return;
  free(l->items);
  free(l);
}
