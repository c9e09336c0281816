/* migrate.c - versioned migrations, store creation and adoption.
 *
 * The migrations are the files sql/NNN_name.sql, compiled in by
 * cmake/embed_sql.cmake (es__sql_files[]: version, name, text).  They are
 * applied in order, each file's text with @DIM@ replaced by the store's
 * dimension, in one transaction under an advisory lock (so two `embstore
 * init` at once serialise), and recorded in embstore_migrations.  None
 * drops user data.  A few need work that depends on what the database
 * holds (see `steps` below).  After them, every run checks the facts a
 * healthy store needs (indexes, the foreign key, the counters' triggers)
 * and mends what is missing, so re-running init on a healthy store
 * changes nothing. */
#include <assert.h>
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

/* Work a migration does after its file's text has run. */
typedef es_status (*migration_step)(es_store *, es__conn *, migrate_ctx *);

static es_status insert_meta(es_store *, es__conn *, migrate_ctx *);

/* Creates the required indexes that are missing (sql/002_indexes.sql says
 * why this is not SQL). */
static es_status create_indexes(es_store *s, es__conn *c, migrate_ctx *m) {
  es__build_watch watch = {m->report ? &m->report->index : NULL, NULL, NULL};
  return es__ensure_indexes(s, c, m->metric, false,
                            m->report ? &m->report->indexes_created : NULL,
                            &watch);
}

/* The steps, bound to their file by its text: renaming or removing the
 * file fails the build here, not a store at run time. */
static const struct {
  const char *text;
  migration_step after;
} steps[] = {
    {es__sql_001_base, insert_meta},
    {es__sql_002_indexes, create_indexes},
};

/* The step of the migration whose text is text, or NULL. */
static migration_step step_of(const char *text) {
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
    if (steps[i].text == text)
      return steps[i].after;
  return NULL;
}

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

/* Runs a migration file's text (a file of comments only runs nothing). */
static es_status run_file(es_store *s, es__conn *c, const es__sql_file *f,
                          int dim) {
  assert(dim > 0);
  char *sql = expand_dim(f->text, dim);
  if (sql == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  PGresult *r = PQexec(c->pg, sql);
  free(sql);
  es_status rc = ES_OK;
  if (!es__res_ok(r) && PQresultStatus(r) != PGRES_EMPTY_QUERY) {
    char what[200];
    snprintf(what, sizeof what, "migration %d (%s) failed", f->version, f->name);
    rc = es__fail_pg(s, c->pg, r, what);
  }
  PQclear(r);
  return rc;
}

/* Adds the chunks -> embeddings key NOT VALID when missing (the text of
 * sql/003_chunks_fk.sql), and validates it once no orphaned chunk is
 * left.  Orphans are reported, never deleted here: that is `embstore
 * cleanup`'s job. */
static es_status ensure_fk(es_store *s, es__conn *c, es_init_report *rep) {
  es__fk_state fk;
  int64_t orphans = 0;
  es_status rc = es__fk_lookup(s, c, &fk);
  if (rc == ES_OK && !fk.valid)
    rc = es__count_orphan_chunks(s, c, &orphans);
  if (rc != ES_OK)
    return rc;
  if (!fk.exists) {
    rc = es__exec(s, c, es__sql_003_chunks_fk,
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

/* The end of the statement that starts at p (its ';' or the final NUL),
 * past quoted strings, dollar-quoted bodies and comments. */
static const char *statement_end(const char *p) {
  while (*p && *p != ';') {
    if (p[0] == '-' && p[1] == '-') {
      p += strcspn(p, "\n");
    } else if (*p == '\'') {
      for (p++; *p && (*p != '\'' || p[1] == '\''); p += *p == '\'' ? 2 : 1)
        ;
      if (*p)
        p++;
    } else if (*p == '$') {
      size_t tag = strspn(p + 1, "abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789") + 2;
      if (p[tag - 1] != '$') {
        p++;
        continue;
      }
      const char *close = p + tag;
      while ((close = strchr(close, '$')) && strncmp(close, p, tag) != 0)
        close++;
      p = close ? close + tag : p + strlen(p);
    } else {
      p++;
    }
  }
  return p;
}

/* Whether a statement (leading blanks and comments skipped) is one that
 * makes a trigger: DROP TRIGGER, CREATE TRIGGER, ALTER TABLE ... ENABLE
 * ... TRIGGER. */
static bool makes_trigger(const char *stmt, size_t len) {
  char buf[512];
  snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf - 1 ? len : sizeof buf - 1), stmt);
  return strncmp(buf, "DROP TRIGGER ", 13) == 0 ||
         strncmp(buf, "CREATE TRIGGER ", 15) == 0 ||
         (strncmp(buf, "ALTER TABLE ", 12) == 0 && strstr(buf, " ENABLE ") &&
          strstr(buf, " TRIGGER "));
}

/* Runs the trigger statements of a migration's text one by one: Citus
 * sends a DDL statement's own text to the workers, and refuses some of the
 * file's other statements on distributed tables (the columns' statistics
 * targets), which a distributed store has anyway. */
static es_status run_trigger_statements(es_store *s, es__conn *c, const char *text) {
  es_status rc = ES_OK;
  for (const char *p = text; rc == ES_OK && *p;) {
    for (;;) { /* blanks and comments before the statement */
      p += strspn(p, " \t\r\n");
      if (p[0] == '-' && p[1] == '-')
        p += strcspn(p, "\n");
      else
        break;
    }
    const char *end = statement_end(p);
    size_t len = (size_t)(end - p);
    if (len > 0 && makes_trigger(p, len)) {
      char *one = strndup(p, len);
      if (one == NULL)
        return es__fail(s, ES_ENOMEM, "out of memory");
      rc = es__exec(s, c, one, "cannot recreate the counters' triggers");
      free(one);
    }
    p = *end ? end + 1 : end;
  }
  return rc;
}

static es_status table_exists(es_store *s, es__conn *c, const char *table,
                              bool *exists);

/* On Citus: the triggers of migrations 4 and 6 made again, statement by
 * statement, their functions the shards' (sql/citus/triggers.sql), and
 * the counters recounted on the shards, writers held off. */
static es_status mend_counters_distributed(es_store *s, es__conn *c) {
  static const char *const before[] = {
      "SET LOCAL citus.multi_shard_modify_mode TO sequential",
      "SET LOCAL citus.enable_unsafe_triggers = on"};
  bool exists = false;
  es_status rc = table_exists(s, c, "embstore_counts", &exists);
  if (rc == ES_OK && !exists)
    return es__fail(s, ES_ECONFLICT, "the distributed store has lost its "
                    "embstore_counts table: embstore cannot make it again on "
                    "the shards; restore it from a backup");
  for (size_t i = 0; rc == ES_OK && i < sizeof before / sizeof *before; i++)
    rc = es__exec(s, c, before[i], "cannot recreate the counters");
  if (rc == ES_OK)
    rc = es__install_citus_triggers(s, c);
  if (rc == ES_OK)
    rc = run_trigger_statements(s, c, es__sql_004_counts);
  if (rc == ES_OK)
    rc = run_trigger_statements(s, c, es__sql_006_exact_counts);
  if (rc == ES_OK)
    rc = es__exec(s, c, "LOCK TABLE embeddings, chunks IN SHARE MODE",
                  "cannot hold writers off to recount");
  if (rc == ES_OK)
    rc = es__exec(s, c, "SELECT embstore_counts_recount()", "cannot recount");
  return rc;
}

/* The counters are only as good as their triggers: when the table or any
 * trigger is missing or disabled (pg_restore --disable-triggers, ALTER
 * TABLE ... DISABLE TRIGGER), migrations 4 and 6 are applied again, which
 * recreate them and recount from the tables. */
static es_status mend_counters(es_store *s, es__conn *c, es_init_report *rep) {
  int enabled = 0;
  es_status rc = es__count_triggers(s, c, &enabled);
  if (rc != ES_OK || enabled == ES__COUNT_TRIGGERS)
    return rc;
  if (es__distributed(s, c)) {
    rc = mend_counters_distributed(s, c);
    if (rc == ES_OK && rep)
      rep->counters_rebuilt = 1;
    return rc;
  }
  rc = es__exec(s, c, es__sql_004_counts, "cannot recreate the counters");
  if (rc == ES_OK)
    rc = es__exec(s, c, es__sql_006_exact_counts, "cannot recreate the counters");
  if (rc == ES_OK && rep)
    rep->counters_rebuilt = 1;
  return rc;
}

/* true when table exists in the search path (false on failure). */
static es_status table_exists(es_store *s, es__conn *c, const char *table,
                              bool *exists) {
  const char *params[1] = {table};
  *exists = false;
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

/* Whether the store exists (*found), with its shape: es__read_meta,
 * with an empty embstore_meta taken as a store not yet created. */
static es_status read_meta(es_store *s, es__conn *c, int *found, int *dim,
                           es_metric *metric) {
  es__meta_state state;
  es_status rc = es__read_meta(s, c, &state, dim, metric);
  *found = rc == ES_OK && state == ES__META_FOUND;
  return rc;
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
    if (v >= 1 && v <= ES__N_SQL_FILES) {
      applied[v - 1] = 1;
      if (applied_at)
        snprintf(applied_at[v - 1], 40, "%s", PQgetvalue(r, i, 1));
    }
  }
  PQclear(r);
  return ES_OK;
}

/* Applies one migration inside the caller's transaction (which holds the
 * migration lock) and records it. */
static es_status apply_one(es_store *s, es__conn *c, const es__sql_file *f,
                           migrate_ctx *m) {
  char version[16];
  const char *params[2] = {version, f->name};
  snprintf(version, sizeof version, "%d", f->version);
  migration_step after = step_of(f->text);
  es_status rc = run_file(s, c, f, m->dim);
  if (rc == ES_OK && after != NULL)
    rc = after(s, c, m);
  if (rc != ES_OK)
    return rc;
  PGresult *r = PQexecParams(c->pg,
                             "INSERT INTO embstore_migrations (version, name) "
                             "VALUES ($1, $2)",
                             2, NULL, params, NULL, NULL, 0);
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot record a migration");
  PQclear(r);
  if (rc == ES_OK && m->report)
    m->report->migrations_applied++;
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

/* Applies every pending migration, in the caller's transaction. */
static es_status apply_pending(es_store *s, es__conn *c, migrate_ctx *m) {
  int applied[ES__N_SQL_FILES] = {0};
  es_status rc = es__exec(s, c,
                          "CREATE TABLE IF NOT EXISTS embstore_migrations ("
                          "version integer PRIMARY KEY, name text NOT NULL, "
                          "applied_at timestamptz NOT NULL DEFAULT now())",
                          "cannot create embstore_migrations");
  if (rc == ES_OK)
    rc = read_applied(s, c, NULL, applied);
  for (size_t i = 0; rc == ES_OK && i < ES__N_SQL_FILES; i++)
    if (!applied[i])
      rc = apply_one(s, c, &es__sql_files[i], m);
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
  const es_init_options *o;
  es_init_report *report;
} init_ctx;

/* The text search configuration: a new store's as asked, an existing
 * one's checked against what is asked. */
static es_status init_text(es_store *s, es__conn *c, const init_ctx *ic,
                           bool is_new) {
  const es_init_options *o = ic->o;
  unsigned want = 0;
  es_status rc = ES_OK;
  if (!o->no_text_search && (is_new || o->text_config))
    rc = es__text_config_oid(s, c, o->text_config ? o->text_config : "english",
                             &want);
  if (rc != ES_OK)
    return rc;
  if (is_new)
    return es__set_text_config(s, c, want);
  if ((rc = es__load_text(s, c, true)) != ES_OK)
    return rc;
  if (o->no_text_search && s->text_oid != 0)
    return es__fail(s, ES_ECONFLICT, "the store has text search (%s): "
                    "--no-text-search applies to a new store", s->text_config);
  if (o->text_config && want != s->text_oid)
    return es__fail(s, ES_ECONFLICT, s->text_oid
                    ? "the store was initialised with --text-config %s, not %s"
                    : "the store was initialised with --no-text-search%s, not "
                      "--text-config %s",
                    s->text_oid ? s->text_config : "", o->text_config);
  return ES_OK;
}

/* After the commit: the text index, built concurrently, and the report's
 * configuration. */
static es_status after_commit(es_store *s, es__conn *c, es_init_report *rep) {
  es_status rc = es__ensure_text_index(s, c, &rep->indexes_created);
  if (rc == ES_OK)
    rc = es__load_text(s, c, true);
  if (rc == ES_OK)
    snprintf(rep->text_config, sizeof rep->text_config, "%s", s->text_config);
  return rc;
}

/* Fails when the stored shape is not the one asked for. */
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

/* Starts the one transaction in which init and migrate change the schema:
 * DDL may run as long as the data needs, but waiting for a lock (the
 * migration lock included) stays bounded by lock_timeout, so a session
 * holding a lock gives a clear error naming it instead of a hang. */
static es_status begin_schema_change(es_store *s, es__conn *c) {
  es_status rc = es__begin(s, c);
  if (rc == ES_OK)
    rc = es__no_timeout(s, c);
  if (rc == ES_OK)
    rc = es__exec(s, c, ES__MIGRATE_LOCK, "cannot take the migration lock");
  return rc;
}

/* Mends what a healthy store needs whatever happened since it was
 * created: missing or invalid indexes, the foreign key. */
static es_status mend(es_store *s, es__conn *c, es_metric metric,
                      es_init_report *rep) {
  es__build_watch watch = {&rep->index, NULL, NULL};
  es_status rc = es__ensure_indexes(s, c, metric, false, &rep->indexes_created,
                                    &watch);
  bool chunks = false;
  if (rc == ES_OK)
    rc = es__ensure_chunk_index(s, c, metric, &rep->indexes_created, NULL);
  if (rc == ES_OK)
    rc = es__chunk_index_wanted(s, c, &chunks);
  rep->chunk_index = chunks;
  if (rc == ES_OK)
    rc = ensure_fk(s, c, rep);
  if (rc == ES_OK)
    rc = mend_counters(s, c, rep);
  /* A migration may have replaced trigger functions with PostgreSQL's. */
  if (rc == ES_OK && rep->migrations_applied > 0 && !rep->counters_rebuilt &&
      es__distributed(s, c))
    rc = es__install_citus_triggers(s, c);
  return rc;
}

/* Everything init does happens in one transaction under the migration
 * lock: two inits at once serialise (CREATE EXTENSION included), and an
 * init that fails, at whatever step, leaves the database as it was. */
static es_status init_op(es_store *s, es__conn *c, void *arg) {
  init_ctx *ic = arg;
  es_init_report *rep = ic->report;
  int found = 0, dim = 0;
  es_metric metric = ES_METRIC_COSINE;
  migrate_ctx m = {ic->dim, ic->metric, rep};
  es_status rc;

  memset(rep, 0, sizeof *rep);
  if ((rc = begin_schema_change(s, c)) != ES_OK ||
      (rc = check_encoding(s, c)) != ES_OK ||
      (rc = read_meta(s, c, &found, &dim, &metric)) != ES_OK)
    goto done;
  if (found && (rc = shape_conflict(s, dim, metric, ic->dim, ic->metric)) != ES_OK)
    goto done;
  if (!found) {
    /* Checked before anything changes: a table embstore cannot use is
     * refused with the column at fault. */
    if ((rc = es__check_adoptable(s, c, ic->dim, &rep->adopted)) != ES_OK)
      goto done;
    rep->created = !rep->adopted;
  }
  if ((rc = create_extension(s, c)) != ES_OK ||
      (rc = apply_pending(s, c, &m)) != ES_OK ||
      (rc = read_meta(s, c, &found, &dim, &metric)) != ES_OK)
    goto done;
  if (!found && ((rc = insert_meta(s, c, &m)) != ES_OK ||
                 (rc = read_meta(s, c, &found, &dim, &metric)) != ES_OK))
    goto done;
  if ((rc = shape_conflict(s, dim, metric, ic->dim, ic->metric)) != ES_OK ||
      (ic->o->chunk_index &&
       (rc = es__exec(s, c, "UPDATE embstore_meta SET chunk_index = true",
                      "cannot record the chunk index")) != ES_OK) ||
      (rc = mend(s, c, metric, rep)) != ES_OK ||
      (rc = init_text(s, c, ic, rep->created || rep->adopted)) != ES_OK ||
      (rc = es__commit(s, c)) != ES_OK ||
      (rc = after_commit(s, c, rep)) != ES_OK)
    goto done;
  rep->dim = dim;
  rep->metric = metric;
done:
  es__rollback(c);
  return rc;
}

void es_init_options_init(es_init_options *o) {
  memset(o, 0, sizeof *o);
  o->metric = ES_METRIC_COSINE;
}

/* Creates, adopts or re-checks the store (see init_op). */
es_status es_init_with(es_store *s, const es_init_options *o,
                       es_init_report **report) {
  if (report)
    *report = NULL;
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  if (o == NULL)
    return es__fail(s, ES_EINVAL, "init options are NULL");
  if (o->dim < 1 || o->dim > ES_MAX_DIM)
    return es__fail(s, ES_EINVAL, "--dim must be 1..%d (pgvector's HNSW limit), "
                    "not %d", ES_MAX_DIM, o->dim);
  if ((unsigned)o->metric > ES_METRIC_IP)
    return es__fail(s, ES_EINVAL, "unknown metric %d", (int)o->metric);
  if (o->no_text_search && o->text_config)
    return es__fail(s, ES_EINVAL, "give either --text-config or "
                    "--no-text-search, not both");
  /* Allocated first: once the schema is committed, nothing may fail. */
  es_init_report *rep = calloc(1, sizeof *rep);
  if (rep == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  init_ctx ic = {o->dim, o->metric, o, rep};
  es_status rc = es__run(s, "init", true, init_op, &ic);
  es__replica_wrote(s); /* concurrent index builds commit on their own */
  pthread_mutex_lock(&s->shape_mu);
  s->dim = 0; /* read the shape afresh */
  s->text_loaded = false;
  s->chunk_index_seen = false;
  pthread_mutex_unlock(&s->shape_mu);
  if (rc == ES_OK && report)
    *report = rep;
  else
    free(rep);
  return rc;
}

es_status es_init(es_store *s, int dim, es_metric metric,
                  es_init_report **report) {
  es_init_options o;
  es_init_options_init(&o);
  o.dim = dim;
  o.metric = metric;
  return es_init_with(s, &o, report);
}

void es_init_report_free(es_init_report *report) { free(report); }

/* Applies pending migrations and mends missing indexes and the foreign
 * key, in one transaction under the migration lock. */
static es_status migrate_op(es_store *s, es__conn *c, void *arg) {
  es_init_report *rep = arg;
  int found = 0, dim = 0;
  es_metric metric = ES_METRIC_COSINE;
  memset(rep, 0, sizeof *rep);
  es_status rc = begin_schema_change(s, c);
  if (rc == ES_OK)
    rc = read_meta(s, c, &found, &dim, &metric);
  if (rc == ES_OK && !found)
    rc = es__fail(s, ES_ENOSTORE, "no embstore store in this database: run "
                  "`embstore init --dim N` first");
  migrate_ctx m = {dim, metric, rep};
  if (rc == ES_OK)
    rc = apply_pending(s, c, &m);
  if (rc == ES_OK)
    rc = mend(s, c, metric, rep);
  if (rc == ES_OK)
    rc = es__commit(s, c);
  if (rc == ES_OK)
    rc = after_commit(s, c, rep);
  if (rc == ES_OK) {
    rep->dim = dim;
    rep->metric = metric;
  }
  es__rollback(c);
  return rc;
}

/* Runs the migration, reporting into rep. */
static es_status migrate(es_store *s, es_init_report *rep) {
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  es_status rc = es__run(s, "migrate", true, migrate_op, rep);
  es__replica_wrote(s); /* concurrent index builds commit on their own */
  pthread_mutex_lock(&s->shape_mu);
  s->dim = 0; /* read the shape afresh */
  s->text_loaded = false;
  s->chunk_index_seen = false;
  pthread_mutex_unlock(&s->shape_mu);
  return rc;
}

/* Applies pending migrations and mends the store (see migrate_op). */
es_status es_migrate_report(es_store *s, es_init_report **report) {
  if (report)
    *report = NULL;
  if (s == NULL)
    return ES_EINVAL;
  es_init_report *rep = calloc(1, sizeof *rep);
  if (rep == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  es_status rc = migrate(s, rep);
  if (rc == ES_OK && report)
    *report = rep;
  else
    free(rep);
  return rc;
}

/* Applies pending migrations and mends the store, telling only how many
 * migrations were applied. */
es_status es_migrate(es_store *s, int *applied) {
  es_init_report rep;
  memset(&rep, 0, sizeof rep);
  es_status rc = migrate(s, &rep);
  if (applied)
    *applied = rep.migrations_applied;
  return rc;
}

typedef struct list_ctx {
  es_migration_list *list;
} list_ctx;

/* Fills the list: every migration file, and when each was applied. */
static es_status list_op(es_store *s, es__conn *c, void *arg) {
  list_ctx *lc = arg;
  int applied[ES__N_SQL_FILES] = {0};
  char at[ES__N_SQL_FILES][40];
  memset(at, 0, sizeof at);
  es_status rc = read_applied(s, c, at, applied);
  if (rc != ES_OK)
    return rc;
  for (size_t i = 0; i < ES__N_SQL_FILES; i++) {
    es_migration *e = &lc->list->items[i];
    e->version = es__sql_files[i].version;
    e->name = es__sql_files[i].name;
    e->applied = applied[i];
    snprintf(e->applied_at, sizeof e->applied_at, "%s", at[i]);
  }
  lc->list->n = ES__N_SQL_FILES;
  return ES_OK;
}

/* Lists every migration the library knows, applied or pending. */
es_status es_migration_list_get(es_store *s, es_migration_list **out) {
  if (out)
    *out = NULL; /* also when s is NULL: a failed call hands out nothing */
  if (s == NULL || out == NULL)
    return ES_EINVAL;
  es_migration_list *l = calloc(1, sizeof *l);
  if (l)
    l->items = calloc(ES__N_SQL_FILES, sizeof *l->items);
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
