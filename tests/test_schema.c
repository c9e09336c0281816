/* test_schema.c - creating, re-initialising, adopting and migrating. */
#include <pthread.h>

#include "test.h"

TEST(init_creates_tables_indexes_and_a_valid_cascading_key) {
  es_store *s = th_open();
  es_init_report *r = NULL;
  ASSERT_OK(s, es_init(s, 8, ES_METRIC_L2, &r));
  ASSERT_INT_EQ(r->created, 1);
  ASSERT_INT_EQ(r->adopted, 0);
  ASSERT_INT_EQ(r->migrations_applied, th_migration_count());
  ASSERT_INT_EQ(r->dim, 8);
  ASSERT_INT_EQ(r->metric, ES_METRIC_L2);
  /* ANALYZE after a load skips what nothing filters on (migrations 4, 5)
   * and keeps what filters and joins need. */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_attribute WHERE attnum > 0 AND "
                       "attstattarget = 0 AND attrelid IN "
                       "('embeddings'::regclass, 'chunks'::regclass)"),
                12);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_attribute WHERE attstattarget = 0 "
                       "AND (attrelid, attname) IN (('embeddings'::regclass, 'source_id'), "
                       "('embeddings'::regclass, 'created_at'), "
                       "('chunks'::regclass, 'document_id'))"),
                0);
  ASSERT_INT_EQ(r->fk_valid, 1);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_tables WHERE tablename IN "
                       "('embeddings','chunks','performance_metrics',"
                       "'embstore_meta','embstore_migrations')"),
                5);
  ASSERT_INT_EQ(th_int("SELECT atttypmod FROM pg_attribute WHERE attrelid = "
                       "'embeddings'::regclass AND attname = 'embedding'"),
                8);
  char *def = th_text("SELECT pg_get_indexdef('embeddings_embedding_hnsw_idx'::regclass)");
  ASSERT_CONTAINS(def, "USING hnsw (embedding vector_l2_ops)");
  free(def);
  static const char *const idx[] = {
      "embeddings_source_id_idx", "embeddings_created_at_idx",
      "embeddings_workspace_idx", "chunks_document_id_idx",
      "performance_metrics_operation_idx", "performance_metrics_created_at_idx"};
  for (size_t i = 0; i < 6; i++) {
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_indexes WHERE indexname = '%s'",
             idx[i]);
    ASSERT_INT_EQ(th_int(sql), 1);
  }
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                       "AND conrelid = 'chunks'::regclass AND convalidated "
                       "AND confdeltype = 'c'"),
                1);
  es_close(s);
  es_init_report_free(r);
}

TEST(init_twice_changes_nothing) {
  es_store *s = th_open_init(4, ES_METRIC_COSINE);
  long long before = th_int("SELECT count(*) FROM pg_indexes WHERE tablename "
                            "IN ('embeddings','chunks','performance_metrics')");
  char *applied = th_text("SELECT max(applied_at)::text FROM embstore_migrations");
  es_init_report *r = NULL;
  ASSERT_OK(s, es_init(s, 4, ES_METRIC_COSINE, &r));
  ASSERT_INT_EQ(r->created, 0);
  ASSERT_INT_EQ(r->migrations_applied, 0);
  ASSERT_INT_EQ(r->indexes_created, 0);
  ASSERT_INT_EQ(r->fk_validated, 0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE tablename "
                       "IN ('embeddings','chunks','performance_metrics')"),
                before);
  char *again = th_text("SELECT max(applied_at)::text FROM embstore_migrations");
  ASSERT_STR_EQ(again, applied);
  free(applied);
  free(again);
  es_close(s);
  es_init_report_free(r);
}

TEST(init_refuses_another_dimension_or_metric) {
  es_store *s = th_open_init(4, ES_METRIC_COSINE);
  ASSERT_STATUS(s, es_init(s, 5, ES_METRIC_COSINE, NULL), ES_EDIM);
  ASSERT_CONTAINS(es_errmsg(s), "initialised with --dim 4, not 5");
  ASSERT_STATUS(s, es_init(s, 4, ES_METRIC_IP, NULL), ES_ECONFLICT);
  ASSERT_CONTAINS(es_errmsg(s), "--metric cosine, not ip");
  ASSERT_STATUS(s, es_init(s, 0, ES_METRIC_IP, NULL), ES_EINVAL);
  ASSERT_STATUS(s, es_init(s, ES_MAX_DIM + 1, ES_METRIC_IP, NULL), ES_EINVAL);
  es_close(s);
}

/* The users' existing shape: no foreign key, some orphaned chunks. */
static void make_legacy(void) {
  th_exec("CREATE TABLE embeddings (id text PRIMARY KEY, text text, "
          "embedding vector(3), metadata jsonb, source_id text, "
          "created_at timestamptz DEFAULT now(), updated_at timestamptz "
          "DEFAULT now())");
  th_exec("CREATE TABLE chunks (id text PRIMARY KEY, document_id text, "
          "chunk_index int, text text, embedding vector(3), metadata jsonb)");
  th_exec("CREATE INDEX legacy_src ON embeddings (source_id)");
  th_exec("INSERT INTO embeddings (id, text, embedding, metadata, source_id) "
          "VALUES ('d1', 'one', '[1,0,0]', '{\"workspace\":\"w\"}', 's'), "
          "('d2', 'two', '[0,1,0]', NULL, 's'), ('d3', 'three', NULL, '{}', NULL)");
  th_exec("INSERT INTO chunks VALUES ('c1', 'd1', 0, 'x', '[1,0,0]', '{}'), "
          "('c2', 'd2', 0, 'y', NULL, NULL), ('o1', 'ghost', 0, 'z', NULL, '{}'), "
          "('o2', 'ghost', 1, 'w', NULL, '{}'), ('o3', 'gone', 0, 'v', NULL, '{}')");
}

TEST(init_adopts_a_legacy_database_with_orphans_without_losing_a_row) {
  make_legacy();
  char *before = th_text("SELECT md5(string_agg(e::text, ',' ORDER BY id)) FROM embeddings e");
  char *chunks_before = th_text("SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM chunks c");
  es_store *s = th_open();
  es_init_report *r = NULL;
  ASSERT_OK(s, es_init(s, 3, ES_METRIC_COSINE, &r));
  ASSERT_INT_EQ(r->adopted, 1);
  ASSERT_INT_EQ(r->created, 0);
  ASSERT_INT_EQ(r->orphaned_chunks, 3);
  ASSERT_INT_EQ(r->fk_valid, 0);
  ASSERT_INT_EQ(r->fk_validated, 0);

  /* Every row and every value is still there. */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 3);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), 5);
  char *after = th_text("SELECT md5(string_agg(e::text, ',' ORDER BY id)) FROM "
                        "(SELECT id, text, embedding, metadata, source_id, "
                        "created_at, updated_at FROM embeddings) e");
  char *chunks_after = th_text("SELECT md5(string_agg(c::text, ',' ORDER BY id)) "
                               "FROM (SELECT id, document_id, chunk_index, text, "
                               "embedding, metadata FROM chunks) c");
  ASSERT_STR_EQ(after, before);
  ASSERT_STR_EQ(chunks_after, chunks_before);

  /* The key exists NOT VALID, and is enforced for new rows already. */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                       "AND conrelid = 'chunks'::regclass AND NOT convalidated"),
                1);
  PGconn *pg = PQconnectdb(th_conninfo());
  PGresult *res = PQexec(pg, "INSERT INTO chunks (id, document_id, chunk_index, "
                             "text) VALUES ('o4', 'nobody', 0, '')");
  ASSERT_STR_EQ(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23503");
  PQclear(res);
  PQfinish(pg);

  /* Existing indexes were recognised, missing ones added. */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE tablename = "
                       "'embeddings' AND indexdef LIKE '%(source_id)'"),
                1);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'embeddings_embedding_hnsw_idx'"),
                1);
  ASSERT_INT_GE(r->indexes_created, 5);

  /* Re-running init while orphans remain keeps the key NOT VALID. */
  es_init_report_free(r);
  ASSERT_OK(s, es_init(s, 3, ES_METRIC_COSINE, &r));
  ASSERT_INT_EQ(r->fk_valid, 0);
  ASSERT_INT_EQ(r->orphaned_chunks, 3);

  /* Once the orphans are gone, init validates the key. */
  th_exec("DELETE FROM chunks WHERE id LIKE 'o%'");
  es_init_report_free(r);
  ASSERT_OK(s, es_init(s, 3, ES_METRIC_COSINE, &r));
  ASSERT_INT_EQ(r->fk_validated, 1);
  ASSERT_INT_EQ(r->fk_valid, 1);
  ASSERT_INT_EQ(r->orphaned_chunks, 0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                       "AND conrelid = 'chunks'::regclass AND convalidated"),
                1);
  /* And the cascade works for the adopted rows. */
  th_exec("DELETE FROM embeddings WHERE id = 'd1'");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks WHERE document_id = 'd1'"), 0);
  free(before);
  free(after);
  free(chunks_before);
  free(chunks_after);
  es_close(s);
  es_init_report_free(r);
}

TEST(init_refuses_to_adopt_vectors_of_another_dimension_and_changes_nothing) {
  make_legacy();
  es_store *s = th_open();
  ASSERT_STATUS(s, es_init(s, 4, ES_METRIC_COSINE, NULL), ES_EDIM);
  ASSERT_CONTAINS(es_errmsg(s), "embeddings.embedding holds vector(3) but --dim 4");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_tables WHERE tablename = "
                       "'embstore_meta'"),
                0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE tablename = 'embeddings'"),
                2); /* the primary key and legacy_src */
  es_close(s);
}

TEST(migrations_are_listed_and_recorded) {
  es_store *s = th_open();
  es_migration_list *l = NULL;
  ASSERT_OK(s, es_migration_list_get(s, &l));
  ASSERT_INT_EQ(l->n, th_migration_count());
  for (size_t i = 0; i < l->n; i++) {
    ASSERT_INT_EQ(l->items[i].version, (int)i + 1);
    ASSERT_INT_EQ(l->items[i].applied, 0);
  }
  es_migration_list_free(l);
  ASSERT_STATUS(s, es_migrate(s, NULL), ES_ENOSTORE);

  ASSERT_OK(s, es_init(s, 2, ES_METRIC_COSINE, NULL));
  ASSERT_OK(s, es_migration_list_get(s, &l));
  for (size_t i = 0; i < l->n; i++) {
    ASSERT_INT_EQ(l->items[i].applied, 1);
    ASSERT_INT_EQ(strlen(l->items[i].applied_at), 20);
  }
  es_migration_list_free(l);
  int applied = -1;
  ASSERT_OK(s, es_migrate(s, &applied));
  ASSERT_INT_EQ(applied, 0);

  /* A migration missing from the record is applied again, idempotently. */
  th_exec("DELETE FROM embstore_migrations WHERE version = 3");
  ASSERT_OK(s, es_migrate(s, &applied));
  ASSERT_INT_EQ(applied, 1);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embstore_migrations"),
                th_migration_count());
  es_close(s);
}

TEST(init_rebuilds_a_missing_or_invalid_index) {
  es_store *s = th_open_init(3, ES_METRIC_COSINE);
  th_exec("DROP INDEX embeddings_embedding_hnsw_idx");
  th_exec("UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
          "'embeddings_source_id_idx'::regclass");
  es_init_report *r = NULL;
  ASSERT_OK(s, es_init(s, 3, ES_METRIC_COSINE, &r));
  ASSERT_INT_EQ(r->indexes_created, 2);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_index WHERE indrelid = "
                       "'embeddings'::regclass AND NOT indisvalid"),
                0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'embeddings_embedding_hnsw_idx'"),
                1);
  es_close(s);
  es_init_report_free(r);
}

TEST(open_reports_unreachable_servers_without_the_password) {
  es_options o;
  es_options_init(&o);
  o.conninfo = "host=/nonexistent-dir port=1 user=u password=hunter2 dbname=x";
  es_store *s = NULL;
  ASSERT_STATUS(s, es_open_opts(&o, &s), ES_ECONNECT);
  ASSERT_NOT_CONTAINS(es_errmsg(s), "hunter2");
  ASSERT_CONTAINS(es_errmsg(s), "cannot connect to");
  es_close(s);

  o.conninfo = "host=x password hunter2";
  ASSERT_STATUS(s, es_open_opts(&o, &s), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "invalid connection string");
  ASSERT_NOT_CONTAINS(es_errmsg(s), "hunter2");
  es_close(s);
  es_close(NULL); /* harmless */
}

TEST(operations_on_an_uninitialised_database_say_to_run_init) {
  es_store *s = th_open();
  float v[2] = {1, 2};
  es_doc d = {.id = "x", .embedding = v, .dim = 2};
  ASSERT_STATUS(s, es_upsert(s, &d, NULL), ES_ENOSTORE);
  ASSERT_CONTAINS(es_errmsg(s), "embstore init");
  es_search_params p = {.vector = v, .dim = 2, .k = 1};
  es_results *r = NULL;
  ASSERT_STATUS(s, es_search(s, &p, &r), ES_ENOSTORE);
  ASSERT_NULL(r);
  es_close(s);
}

/* Everything an adoption could change: tables, columns, indexes,
 * constraints, triggers and extensions of the public schema. */
static char *schema_snapshot(void) {
  return th_text(
      "SELECT coalesce(string_agg(x, ' ' ORDER BY x), '') FROM ("
      "SELECT 'rel:' || relname || ':' || relkind::text AS x FROM pg_class "
      "WHERE relnamespace = 'public'::regnamespace "
      "UNION ALL SELECT 'col:' || attrelid::regclass || '.' || attname || ':' || "
      "format_type(atttypid, atttypmod) || ':' || attnotnull::text FROM pg_attribute "
      "WHERE attnum > 0 AND NOT attisdropped AND attrelid IN (SELECT oid FROM "
      "pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r') "
      "UNION ALL SELECT 'con:' || conname FROM pg_constraint "
      "WHERE connamespace = 'public'::regnamespace "
      "UNION ALL SELECT 'trg:' || tgname FROM pg_trigger WHERE NOT tgisinternal "
      "UNION ALL SELECT 'ext:' || extname FROM pg_extension) t");
}

/* init on the legacy tables of sql must fail with want, naming needle,
 * and change nothing at all. */
static void refused(const char *sql, es_status want, const char *needle) {
  th_exec("DROP TABLE IF EXISTS chunks, embeddings, performance_metrics CASCADE");
  th_exec(sql);
  char *before = schema_snapshot();
  es_store *s = th_open();
  ASSERT_STATUS(s, es_init(s, 8, ES_METRIC_COSINE, NULL), want);
  ASSERT_CONTAINS(es_errmsg(s), needle);
  ASSERT_CONTAINS(es_errmsg(s), "nothing was changed");
  es_close(s);
  char *after = schema_snapshot();
  ASSERT_STR_EQ(after, before);
  free(before);
  free(after);
}

TEST(init_refuses_tables_it_cannot_adopt_naming_the_column_and_changes_nothing) {
  refused("CREATE TABLE embeddings (id int PRIMARY KEY, content text, "
          "embedding vector(8))",
          ES_ECONFLICT, "embeddings.id has type integer, but embstore needs text");
  refused("CREATE TABLE embeddings (id text PRIMARY KEY, embedding vector(8)); "
          "CREATE TABLE chunks (id text PRIMARY KEY, document_id integer)",
          ES_ECONFLICT, "chunks.document_id has type integer");
  refused("CREATE TABLE embeddings (id text, embedding vector(8))",
          ES_ECONFLICT, "embeddings.id has no primary key or unique index");
  refused("CREATE TABLE embeddings (id text PRIMARY KEY, title text NOT NULL, "
          "embedding vector(8))",
          ES_ECONFLICT, "embeddings.title (text) is NOT NULL without a default");
  refused("CREATE TABLE embeddings (id text PRIMARY KEY, metadata json)",
          ES_ECONFLICT, "embeddings.metadata has type json, but embstore needs jsonb");
  refused("CREATE TABLE embeddings (id text PRIMARY KEY, created_at timestamp)",
          ES_ECONFLICT, "embeddings.created_at has type timestamp without time zone");
  /* What can be adopted still is: varchar ids and extra nullable columns. */
  th_exec("DROP TABLE IF EXISTS chunks, embeddings CASCADE");
  th_exec("CREATE TABLE embeddings (id varchar(64) PRIMARY KEY, note text, "
          "embedding vector(8))");
  es_store *s = th_open();
  es_init_report *r = NULL;
  ASSERT_OK(s, es_init(s, 8, ES_METRIC_COSINE, &r));
  ASSERT_INT_EQ(r->adopted, 1);
  es_close(s);
  es_init_report_free(r);
}

/* Four inits of a fresh database at once, each on its own handle. */
static void *init_thread(void *arg) {
  es_init_report *r = arg;
  es_store *s = NULL;
  if (es_open(th_conninfo(), &s) != ES_OK) {
    r->dim = -1;
    es_close(s);
    return NULL;
  }
  es_init_report *rep = NULL;
  if (es_init(s, 8, ES_METRIC_COSINE, &rep) != ES_OK) {
    fprintf(stderr, "init: %s\n", es_errmsg(s));
    r->dim = -1;
  } else {
    *r = *rep;
  }
  es_init_report_free(rep);
  es_close(s);
  return NULL;
}

TEST(concurrent_inits_of_a_fresh_database_all_succeed_and_create_it_once) {
  th_exec("DROP EXTENSION vector"); /* as a database that never had it */
  pthread_t t[4];
  es_init_report r[4];
  memset(r, 0, sizeof r);
  for (int i = 0; i < 4; i++)
    ASSERT_INT_EQ(pthread_create(&t[i], NULL, init_thread, &r[i]), 0);
  int created = 0;
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    ASSERT_INT_EQ(r[i].dim, 8);
    created += r[i].created;
  }
  ASSERT_INT_EQ(created, 1);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embstore_migrations"),
                th_migration_count());
}

TEST(init_and_migrate_wait_for_a_lock_no_longer_than_the_timeout_and_name_the_holder) {
  es_store *s = th_open_init(8, ES_METRIC_COSINE);
  es_close(s);
  th_exec("DROP INDEX embeddings_source_id_idx"); /* init has DDL to do */
  PGconn *other = PQconnectdb(th_conninfo());
  if (PQstatus(other) != CONNECTION_OK)
    FAIL("cannot connect: %s", PQerrorMessage(other));
  PQclear(PQexec(other, "SET application_name = 'the-holder'"));
  PQclear(PQexec(other, "BEGIN"));
  PQclear(PQexec(other, "INSERT INTO embeddings (id) VALUES ('held')"));
  char pid[32];
  snprintf(pid, sizeof pid, "pid %d", PQbackendPID(other));
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.statement_timeout_ms = 500;
  ASSERT_OK(s, es_open_opts(&o, &s));
  double t0 = th_now();
  ASSERT_STATUS(s, es_init(s, 8, ES_METRIC_COSINE, NULL), ES_ETIMEOUT);
  ASSERT_DBL_LT(th_now() - t0, 5.0);
  ASSERT_CONTAINS(es_errmsg(s), "lock timeout");
  ASSERT_CONTAINS(es_errmsg(s), pid);
  ASSERT_CONTAINS(es_errmsg(s), "the-holder");
  ASSERT_CONTAINS(es_errmsg(s), "idle in transaction");
  PQclear(PQexec(other, "ROLLBACK"));

  /* The migration lock itself, held by a stuck init elsewhere. */
  PQclear(PQexec(other, "SELECT pg_advisory_lock(7013640520591)"));
  t0 = th_now();
  ASSERT_STATUS(s, es_migrate(s, NULL), ES_ETIMEOUT);
  ASSERT_DBL_LT(th_now() - t0, 5.0);
  ASSERT_CONTAINS(es_errmsg(s), "the migration lock");
  ASSERT_CONTAINS(es_errmsg(s), pid);
  PQfinish(other);
  es_init_report *r = NULL;
  ASSERT_OK(s, es_migrate_report(s, &r)); /* and it works once the lock is free */
  ASSERT_INT_EQ(r->indexes_created, 1);
  es_close(s);
  es_init_report_free(r);
}
