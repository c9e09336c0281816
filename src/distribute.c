/* distribute.c - turning a store into a Citus distributed store.
 *
 * On a database with the citus extension and worker nodes, es_distribute()
 * lays the store out as docs/SCALING.md describes:
 *
 *   embeddings             distributed by id, shard_count shards
 *   chunks                 distributed by document_id, colocated; its key
 *                          becomes (document_id, id), the foreign key to
 *                          embeddings stays (with ON DELETE CASCADE)
 *   embstore_counts,       distributed by a bucket column, colocated: each
 *   embstore_model_counts  shard's triggers count into the shard beside it
 *                          (sql/citus/triggers.sql)
 *   embstore_meta,         reference tables (a copy on every node)
 *   embstore_migrations
 *   performance_metrics    local on the coordinator: a reference table
 *                          would make every metrics flush a two-phase write
 *
 * The tables move in one transaction: a failure leaves the store as it
 * was, and running it again starts over.  The reference tables and the
 * database settings go first, each idempotent, so a second run skips what
 * is done and reports only what it did.  A store already distributed gets
 * its trigger functions installed again (a `migrate` may have replaced
 * them with PostgreSQL's) and nothing else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

extern const char es__sql_citus_triggers[];

es_status es__install_citus_triggers(es_store *s, es__conn *c) {
  return es__exec(s, c, es__sql_citus_triggers, "cannot install the Citus triggers");
}

#define ES__DEFAULT_SHARDS 4 /* see BENCHMARKS.md, "Citus" */
#define ES__MAX_SHARDS 1024

void es_distribute_report_free(es_distribute_report *r) {
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->n_steps; i++)
    free(r->steps[i]);
  free(r->steps);
  free(r);
}

/* Appends a line to the report. */
static es_status say(es_store *s, es_distribute_report *r, const char *fmt,
                     const char *arg) {
  char line[256];
  snprintf(line, sizeof line, fmt, arg ? arg : "");
  char **grown = realloc(r->steps, (r->n_steps + 1) * sizeof *grown);
  if (grown == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  r->steps = grown;
  if ((r->steps[r->n_steps] = strdup(line)) == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  r->n_steps++;
  return ES_OK;
}

/* The first column of the first row of sql as a number; -1 on failure. */
static long long one_int(es_store *s, es__conn *c, const char *sql,
                         const char *what) {
  PGresult *r = PQexec(c->pg, sql);
  long long v = -1;
  if (!es__res_ok(r) || PQntuples(r) != 1)
    es__fail_pg(s, c->pg, r, what);
  else
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return v;
}

/* Whether rel is a Citus table already: 'h' hash-distributed, 'n' a
 * reference table, '\0' neither; 'E' on failure. */
static char placement(es_store *s, es__conn *c, const char *rel) {
  const char *v[1] = {rel};
  PGresult *r = PQexecParams(c->pg,
                             "SELECT partmethod FROM pg_dist_partition "
                             "WHERE logicalrelid = to_regclass($1)",
                             1, NULL, v, NULL, NULL, 0);
  char m = 'E';
  if (!es__res_ok(r))
    es__fail_pg(s, c->pg, r, "cannot read Citus's tables");
  else
    m = PQntuples(r) ? PQgetvalue(r, 0, 0)[0] : '\0';
  PQclear(r);
  return m;
}

/* Refuses anything but a Citus coordinator with workers. */
static es_status check_citus(es_store *s, es__conn *c, es_distribute_report *r) {
  long long has = one_int(s, c,
                          "SELECT count(*) FROM pg_extension WHERE extname = 'citus'",
                          "cannot read the database's extensions");
  if (has < 0)
    return es__last_err(s)->code;
  if (has == 0)
    return es__fail(s, ES_EINVAL,
                    "this database is a plain PostgreSQL: the citus extension is "
                    "not installed in it; distribute needs a Citus coordinator "
                    "(CREATE EXTENSION citus, then citus_add_node for each worker)");
  long long coord = one_int(s, c, "SELECT citus_is_coordinator()::int",
                            "cannot ask Citus for the coordinator");
  if (coord < 0)
    return es__last_err(s)->code;
  if (coord == 0)
    return es__fail(s, ES_EINVAL,
                    "this server is not the Citus coordinator: connect to the "
                    "coordinator to distribute the store");
  long long workers = one_int(s, c,
                              "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 "
                              "AND noderole = 'primary' AND isactive",
                              "cannot read Citus's nodes");
  if (workers < 0)
    return es__last_err(s)->code;
  if (workers == 0)
    return es__fail(s, ES_EINVAL,
                    "the Citus coordinator has no worker nodes: add them first "
                    "(SELECT citus_add_node('host', port))");
  r->workers = (int)workers;
  return ES_OK;
}

/* ALTER DATABASE settings, which reach every backend on every node (Citus
 * propagates them): triggers on distributed tables, and the iterative
 * index scans that the library's own connections ask for only for the
 * coordinator's backend. */
static es_status settings(es_store *s, es__conn *c, es_distribute_report *r) {
  long long set = one_int(
      s, c,
      "SELECT count(*) FROM pg_db_role_setting d, unnest(d.setconfig) x "
      "WHERE d.setdatabase = (SELECT oid FROM pg_database WHERE datname = "
      "current_database()) AND d.setrole = 0 AND x IN "
      "('citus.enable_unsafe_triggers=on', 'hnsw.iterative_scan=relaxed_order')",
      "cannot read the database's settings");
  if (set < 0)
    return es__last_err(s)->code;
  if (set == 2)
    return ES_OK;
  es_status rc = es__exec(
      s, c,
      "DO $$ BEGIN "
      "EXECUTE format('ALTER DATABASE %I SET citus.enable_unsafe_triggers = on', "
      "current_database()); "
      "EXECUTE format('ALTER DATABASE %I SET hnsw.iterative_scan = relaxed_order', "
      "current_database()); END $$",
      "cannot set the database's settings (the store's owner must own the database)");
  return rc == ES_OK ? say(s, r, "set citus.enable_unsafe_triggers and "
                                 "hnsw.iterative_scan for the database", NULL)
                     : rc;
}

/* The small tables every node reads: one copy on each. */
static es_status reference_tables(es_store *s, es__conn *c,
                                  es_distribute_report *r) {
  static const char *const tables[] = {"embstore_meta", "embstore_migrations"};
  for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
    char m = placement(s, c, tables[i]);
    if (m == 'E')
      return es__last_err(s)->code;
    if (m != '\0')
      continue;
    const char *v[1] = {tables[i]};
    PGresult *res = PQexecParams(
        c->pg,
        "SELECT create_reference_table($1::regclass), "
        "truncate_local_data_after_distributing_table($1::regclass)",
        1, NULL, v, NULL, NULL, 0);
    es_status rc = es__res_ok(res) ? ES_OK
                                   : es__fail_pg(s, c->pg, res,
                                                 "cannot make a reference table");
    PQclear(res);
    if (rc == ES_OK)
      rc = say(s, r, "made %s a reference table", tables[i]);
    if (rc != ES_OK)
      return rc;
  }
  return ES_OK;
}

/* The statements that move the big tables, after the trigger functions,
 * one by one (Citus sends a DDL statement's own text to the workers, which
 * must not carry the others); the shard count is the %d of the first. */
static const char *const move_sql[] = {
    "ALTER TABLE chunks DROP CONSTRAINT IF EXISTS chunks_document_id_fkey",
    "ALTER TABLE chunks DROP CONSTRAINT IF EXISTS chunks_pkey",
    "ALTER TABLE chunks ADD CONSTRAINT chunks_pkey PRIMARY KEY (document_id, id)",
    "DELETE FROM embstore_counts",
    "DELETE FROM embstore_model_counts",
    "SELECT create_distributed_table('embstore_counts', 'bucket', shard_count => %d)",
    "SELECT create_distributed_table('embstore_model_counts', 'bucket', "
    "colocate_with => 'embstore_counts')",
    "SELECT create_distributed_table('embeddings', 'id', colocate_with => 'embstore_counts')",
    "SELECT create_distributed_table('chunks', 'document_id', colocate_with => 'embeddings')",
    "ALTER TABLE chunks ADD CONSTRAINT chunks_document_id_fkey FOREIGN KEY (document_id) "
    "REFERENCES embeddings (id) ON DELETE CASCADE",
    "SELECT truncate_local_data_after_distributing_table(x) FROM "
    "unnest(ARRAY['embeddings', 'chunks']::regclass[]) x",
    "SELECT embstore_counts_recount()",
    "SELECT embstore_model_counts_recount()",
};

static const char *const prepare_sql[] = {
    "SET LOCAL citus.multi_shard_modify_mode TO sequential",
    "SET LOCAL citus.enable_unsafe_triggers = on",
    ES__MIGRATE_LOCK,
    "LOCK TABLE embeddings, chunks IN SHARE MODE",
    "ALTER TABLE embstore_counts ADD COLUMN IF NOT EXISTS bucket text",
    "ALTER TABLE embstore_model_counts ADD COLUMN IF NOT EXISTS bucket text",
};

/* Moves documents, chunks and counters onto the shards, in one
 * transaction with writers held off. */
static es_status move_tables(es_store *s, es__conn *c, int shards,
                             es_distribute_report *r) {
  es_status rc = es__begin(s, c);
  if (rc == ES_OK)
    rc = es__no_timeout(s, c);
  for (size_t i = 0; rc == ES_OK && i < sizeof prepare_sql / sizeof *prepare_sql; i++)
    rc = es__exec(s, c, prepare_sql[i], "cannot prepare the tables");
  if (rc == ES_OK)
    rc = es__install_citus_triggers(s, c);
  for (size_t i = 0; rc == ES_OK && i < sizeof move_sql / sizeof *move_sql; i++) {
    char sql[512];
    snprintf(sql, sizeof sql, move_sql[i], shards);
    rc = es__exec(s, c, sql, "cannot distribute the tables");
  }
  if (rc == ES_OK)
    rc = es__commit(s, c);
  es__rollback(c);
  char n[16];
  snprintf(n, sizeof n, "%d", shards);
  if (rc == ES_OK)
    rc = say(s, r, "distributed embeddings by id into %s shards, chunks by "
                   "document_id and the counters colocated with them", n);
  if (rc == ES_OK)
    rc = say(s, r, "recounted the counters on the shards", NULL);
  return rc;
}

typedef struct dist_ctx {
  int shards;
  int asked; /* shards was given, not the default */
  es_distribute_report *r;
} dist_ctx;

static es_status distribute_op(es_store *s, es__conn *c, void *arg) {
  dist_ctx *x = arg;
  es_status rc = es__load_shape(s, c);
  if (rc == ES_OK)
    rc = check_citus(s, c, x->r);
  if (rc != ES_OK)
    return rc;
  char m = placement(s, c, "embeddings");
  if (m == 'E')
    return es__last_err(s)->code;
  if (m == 'n')
    return es__fail(s, ES_ECONFLICT, "embeddings is a Citus reference table, "
                    "made outside embstore: undistribute it "
                    "(undistribute_table) before embstore distributes it by id");
  if (m != '\0') {
    x->r->already = 1;
    x->r->shards = (int)one_int(s, c,
                                "SELECT count(*) FROM pg_dist_shard WHERE "
                                "logicalrelid = 'embeddings'::regclass",
                                "cannot count the shards");
    if (x->r->shards < 0)
      return es__last_err(s)->code;
    if (x->asked && x->r->shards != x->shards)
      return es__fail(s, ES_EINVAL,
                      "the store is already distributed in %d shards, not %d; "
                      "embstore does not reshard (Citus's "
                      "alter_distributed_table does, with the store offline)",
                      x->r->shards, x->shards);
    rc = es__install_citus_triggers(s, c);
    return rc == ES_OK ? reference_tables(s, c, x->r) : rc;
  }
  rc = settings(s, c, x->r);
  if (rc == ES_OK)
    rc = reference_tables(s, c, x->r);
  if (rc == ES_OK)
    rc = move_tables(s, c, x->shards, x->r);
  if (rc == ES_OK) {
    x->r->shards = x->shards;
    rc = es__exec(s, c, "ANALYZE embeddings", "cannot analyze");
    if (rc == ES_OK)
      rc = es__exec(s, c, "ANALYZE chunks", "cannot analyze");
  }
  if (rc == ES_OK)
    es__set_distributed(s, true);
  return rc;
}

es_status es_distribute(es_store *s, int shards, es_distribute_report **out) {
  if (out)
    *out = NULL;
  if (s == NULL)
    return ES_EINVAL;
  es__clear_err(s);
  int asked = shards != 0;
  if (shards == 0)
    shards = ES__DEFAULT_SHARDS;
  if (shards < 1 || shards > ES__MAX_SHARDS)
    return es__fail(s, ES_EINVAL, "shards must be 1 to %d (got %d)",
                    ES__MAX_SHARDS, shards);
  es_distribute_report *r = calloc(1, sizeof *r);
  if (r == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  dist_ctx x = {shards, asked, r};
  es_status rc = es__run(s, "distribute", false, distribute_op, &x);
  if (rc != ES_OK || out == NULL)
    es_distribute_report_free(r);
  else
    *out = r;
  return rc;
}
