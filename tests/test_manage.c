/* test_manage.c - delete by source, statistics and health, cleanup,
 * metrics and the search cache, against the real database. */
#include <math.h>

#include "test.h"

#define DIM 4

/* Inserts n documents "<prefix><i>" of source (workspace ws) with k chunks
 * each, through the library. */
static void put_docs(es_store *s, const char *prefix, int n, const char *source,
                     const char *ws, int k) {
  char id[64], meta[96], cid[8][64];
  float v[DIM];
  for (int i = 0; i < n; i++) {
    es_chunk ch[8];
    snprintf(id, sizeof id, "%s%d", prefix, i);
    if (ws)
      snprintf(meta, sizeof meta, "{\"workspace\": \"%s\"}", ws);
    for (int d = 0; d < DIM; d++)
      v[d] = (float)((i * 7 + d * 3) % 11) + 1.0f;
    for (int c = 0; c < k; c++) {
      snprintf(cid[c], sizeof cid[c], "%s#%d", id, c);
      ch[c] = (es_chunk){.id = cid[c], .text = "chunk"};
    }
    es_doc d = {.id = id, .text = "t", .embedding = v, .dim = DIM,
                .metadata_json = ws ? meta : NULL, .source_id = source,
                .has_chunks = 1, .chunks = ch, .n_chunks = (size_t)k};
    ASSERT_OK(s, es_upsert(s, &d, NULL));
  }
}

static long long count_where(const char *table, const char *where) {
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE %s", table, where);
  return th_int(sql);
}

TEST(delete_cascade_removes_a_source_and_its_chunks_with_exact_counts) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "a", 5, "src-a", "w1", 3);
  put_docs(s, "b", 4, "src-b", "w1", 2);
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_by_source(s, "src-a", NULL, &r));
  ASSERT_INT_EQ(r->deleted, 5);
  ASSERT_INT_EQ(r->chunks_removed, 15);
  ASSERT_INT_EQ(r->dry_run, 0);
  ASSERT_INT_EQ(count_where("embeddings", "source_id = 'src-a'"), 0);
  ASSERT_INT_EQ(count_where("chunks", "document_id LIKE 'a%'"), 0);
  ASSERT_INT_EQ(count_where("embeddings", "source_id = 'src-b'"), 4);
  ASSERT_INT_EQ(count_where("chunks", "true"), 8);
  es_delete_result_free(r);
  ASSERT_OK(s, es_delete_by_source(s, "src-a", NULL, &r)); /* nothing left */
  ASSERT_INT_EQ(r->deleted, 0);
  ASSERT_INT_EQ(r->chunks_removed, 0);
  es_delete_result_free(r);
  ASSERT_STATUS(s, es_delete_by_source(s, "", NULL, &r), ES_EINVAL);
  es_close(s);
  es_delete_result_free(r);
}

TEST(delete_restrict_leaves_everything_when_chunks_exist) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "a", 3, "src", NULL, 2);
  put_docs(s, "n", 2, "bare", NULL, 0);
  es_delete_options o = {.no_cascade = 1};
  es_delete_result *r = NULL;
  ASSERT_STATUS(s, es_delete_by_source(s, "src", &o, &r), ES_ECONFLICT);
  ASSERT_CONTAINS(es_errmsg(s), "6 chunks of 3 documents");
  ASSERT_CONTAINS(es_errmsg(s), "nothing was deleted");
  ASSERT_INT_EQ(count_where("embeddings", "source_id = 'src'"), 3);
  ASSERT_INT_EQ(count_where("chunks", "true"), 6);
  /* Without chunks, restrict deletes. */
  es_delete_result_free(r);
  ASSERT_OK(s, es_delete_by_source(s, "bare", &o, &r));
  ASSERT_INT_EQ(r->deleted, 2);
  ASSERT_INT_EQ(r->chunks_removed, 0);
  es_close(s);
  es_delete_result_free(r);
}

TEST(delete_is_limited_to_a_workspace_and_a_dry_run_changes_nothing) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "x", 4, "src", "w1", 1);
  put_docs(s, "y", 3, "src", "w2", 2);
  char *before = th_text("SELECT md5(string_agg(id || xmin::text, ',' ORDER BY id)) "
                         "FROM (SELECT id, xmin FROM embeddings UNION ALL "
                         "SELECT id, xmin FROM chunks) t");
  es_delete_options o = {.workspace = "w2", .dry_run = 1};
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_by_source(s, "src", &o, &r));
  ASSERT_INT_EQ(r->deleted, 3);
  ASSERT_INT_EQ(r->chunks_removed, 6);
  ASSERT_INT_EQ(r->dry_run, 1);
  ASSERT_SQL_STR("SELECT md5(string_agg(id || xmin::text, ',' ORDER BY id)) FROM "
                 "(SELECT id, xmin FROM embeddings UNION ALL SELECT id, xmin "
                 "FROM chunks) t",
                 before);
  free(before);
  o.dry_run = 0;
  es_delete_result_free(r);
  ASSERT_OK(s, es_delete_by_source(s, "src", &o, &r));
  ASSERT_INT_EQ(r->deleted, 3);
  ASSERT_INT_EQ(r->chunks_removed, 6);
  ASSERT_INT_EQ(count_where("embeddings", "true"), 4);
  ASSERT_INT_EQ(count_where("embeddings", "metadata->>'workspace' = 'w1'"), 4);
  ASSERT_INT_EQ(count_where("chunks", "true"), 4);
  es_close(s);
  es_delete_result_free(r);
}

/* Compares the statistics with COUNT(*) over the tables. */
static void assert_stats_exact(es_store *s, const char *ws) {
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, ws, &st));
  char where[128] = "true";
  if (ws)
    snprintf(where, sizeof where, "e.metadata->>'workspace' = '%s'", ws);
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM embeddings e WHERE %s", where);
  ASSERT_INT_EQ(st->documents, th_int(sql));
  snprintf(sql, sizeof sql, "SELECT count(*) FROM chunks c JOIN embeddings e ON "
           "e.id = c.document_id WHERE %s", where);
  ASSERT_INT_EQ(st->chunks, th_int(sql));
  snprintf(sql, sizeof sql, "SELECT count(*) FROM embeddings e WHERE "
           "e.embedding IS NULL AND %s", where);
  ASSERT_INT_EQ(st->without_vector, th_int(sql));
  snprintf(sql, sizeof sql, "SELECT count(DISTINCT coalesce(source_id, '\x01')) "
           "FROM embeddings e WHERE %s", where);
  ASSERT_INT_EQ(st->sources_total, th_int(sql));
  for (size_t i = 0; i < st->sources_total; i++) {
    const es_source_stats *src = &st->sources[i];
    if (src->source_id == NULL)
      continue;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM embeddings e WHERE "
             "source_id = '%s' AND %s", src->source_id, where);
    ASSERT_INT_EQ(src->documents, th_int(sql));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM chunks c JOIN embeddings e "
             "ON e.id = c.document_id WHERE e.source_id = '%s' AND %s",
             src->source_id, where);
    ASSERT_INT_EQ(src->chunks, th_int(sql));
  }
  es_stats_free(st);
}

TEST(stats_counts_stay_exact_through_every_kind_of_write) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "a", 6, "s1", "w1", 3);
  put_docs(s, "b", 5, "s2", "w2", 2);
  put_docs(s, "c", 3, NULL, "w1", 1);
  assert_stats_exact(s, NULL);
  /* Re-ingest with a smaller chunk set, and a move to another source. */
  put_docs(s, "a", 2, "s2", "w1", 1);
  /* Writes by other programs, in plain SQL. */
  th_exec("INSERT INTO embeddings (id, text, embedding, source_id, metadata) "
          "VALUES ('sql1', '', NULL, 's3', '{\"workspace\": \"w2\"}'), "
          "('sql2', '', '[1,2,3,4]', 's3', '{}')");
  th_exec("INSERT INTO chunks (id, document_id, chunk_index, text) VALUES "
          "('sqlc1', 'sql1', 0, ''), ('sqlc2', 'sql1', 1, ''), ('sqlc3', 'b0', 9, '')");
  th_exec("UPDATE embeddings SET metadata = '{\"workspace\": \"w1\"}' WHERE id = 'b1'");
  th_exec("UPDATE embeddings SET embedding = NULL WHERE id = 'b2'");
  th_exec("UPDATE chunks SET document_id = 'c0' WHERE id = 'sqlc3'");
  th_exec("DELETE FROM embeddings WHERE id IN ('b3', 'a4')"); /* cascades */
  th_exec("DELETE FROM chunks WHERE id = 'c1#0'");
  assert_stats_exact(s, NULL);
  assert_stats_exact(s, "w1");
  assert_stats_exact(s, "w2");
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_by_source(s, "s2", NULL, &r));
  assert_stats_exact(s, NULL);
  assert_stats_exact(s, "w1");
  /* Folding the deltas changes no total. */
  th_exec("SELECT embstore_counts_compact()");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embstore_counts WHERE documents < 0"), 0);
  assert_stats_exact(s, NULL);
  th_exec("TRUNCATE chunks");
  assert_stats_exact(s, NULL);
  es_close(s);
  es_delete_result_free(r);
}

TEST(stats_of_an_adopted_store_count_what_was_there) {
  th_exec("CREATE TABLE embeddings (id text PRIMARY KEY, text text, "
          "embedding vector(4), metadata jsonb, source_id text)");
  th_exec("CREATE TABLE chunks (id text PRIMARY KEY, document_id text, "
          "chunk_index int, text text, embedding vector(4), metadata jsonb)");
  th_exec("INSERT INTO embeddings SELECT 'd' || i, '', '[1,1,1,1]', "
          "jsonb_build_object('workspace', 'w' || (i % 3)), 's' || (i % 4) "
          "FROM generate_series(1, 60) i");
  th_exec("INSERT INTO chunks SELECT 'c' || i, 'd' || (i % 70), 0, '', NULL, '{}' "
          "FROM generate_series(1, 200) i");
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  assert_stats_exact(s, NULL);
  assert_stats_exact(s, "w2");
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->orphaned_chunks, 20); /* document d0 or d61..d69: 2 x 10 */
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_CRITICAL);
  es_stats_free(st);
  es_close(s);
}

static bool has_reason(const es_stats *st, const char *needle) {
  for (size_t i = 0; i < st->n_health_reasons; i++)
    if (strstr(st->health_reasons[i], needle))
      return true;
  return false;
}

TEST(stats_health_is_decided_from_facts) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st)); /* fresh: healthy */
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_HEALTHY);
  ASSERT_INT_EQ(st->n_health_reasons, 0);
  ASSERT_INT_EQ(st->orphaned_chunks, 0);
  ASSERT_DBL_GT(st->storage_mb, 0);
  ASSERT_NAN(st->avg_search_ms);
  es_stats_free(st);

  /* A document without a vector: degraded. */
  th_exec("INSERT INTO embeddings (id, text) VALUES ('novec', '')");
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_DEGRADED);
  ASSERT(has_reason(st, "1 documents have no vector"));
  es_stats_free(st);

  /* The vector index dropped: critical. */
  th_exec("DROP INDEX embeddings_embedding_hnsw_idx");
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_CRITICAL);
  ASSERT(has_reason(st, "embeddings_embedding_hnsw_idx on embeddings"));
  ASSERT(has_reason(st, "is missing"));
  es_stats_free(st);

  /* Rebuilt, but left invalid (as by a failed CREATE INDEX CONCURRENTLY). */
  ASSERT_OK(s, es_migrate(s, NULL)); /* nothing pending */
  ASSERT_OK(s, es_init(s, DIM, ES_METRIC_COSINE, NULL)); /* mends the index */
  th_exec("UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
          "'embeddings_embedding_hnsw_idx'::regclass");
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_CRITICAL);
  ASSERT(has_reason(st, "is invalid"));
  es_stats_free(st);
  th_exec("UPDATE pg_index SET indisvalid = true WHERE indexrelid = "
          "'embeddings_embedding_hnsw_idx'::regclass");

  /* Many dead tuples: degraded (statistics flushed before asking). */
  th_exec("DELETE FROM embeddings WHERE id = 'novec'");
  put_docs(s, "d", 1, "src", NULL, 0);
  th_exec("ALTER TABLE chunks SET (autovacuum_enabled = false)");
  th_exec("INSERT INTO chunks SELECT 'k' || i, 'd0', i, '' FROM generate_series(1, 3000) i");
  th_exec("ANALYZE chunks");
  th_exec("DELETE FROM chunks WHERE chunk_index > 500");
  th_exec("SELECT pg_stat_force_next_flush()");
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT(has_reason(st, "chunks holds 2500 dead tuples"));
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_DEGRADED);
  ASSERT_DBL_GT(st->reclaimable_mb, 0);
  /* The hint names cleanup, and cleanup does it although it deletes
   * nothing. */
  ASSERT(has_reason(st, "run `embstore cleanup`, which vacuums it"));
  es_stats_free(st);
  es_cleanup_result *c = NULL;
  ASSERT_OK(s, es_cleanup_orphaned(s, NULL, &c));
  ASSERT_INT_EQ(c->cleaned, 0);
  es_cleanup_result_free(c);
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT(!has_reason(st, "dead tuples"));
  es_stats_free(st);
  es_close(s);
}

TEST(cleanup_removes_more_orphans_than_one_batch_and_validates_the_key) {
  th_exec("CREATE TABLE embeddings (id text PRIMARY KEY, text text, "
          "embedding vector(4), metadata jsonb, source_id text, "
          "created_at timestamptz DEFAULT now())");
  th_exec("CREATE TABLE chunks (id text PRIMARY KEY, document_id text, "
          "chunk_index int, text text, embedding vector(4), metadata jsonb)");
  th_exec("INSERT INTO embeddings (id, text, embedding) SELECT 'd' || i, '', "
          "'[1,2,3,4]' FROM generate_series(1, 10) i");
  th_exec("INSERT INTO chunks SELECT 'c' || i, CASE WHEN i <= 20 THEN 'd' || "
          "(i % 10 + 1) ELSE 'gone' || i END, 0, '', NULL, '{}' "
          "FROM generate_series(1, 2520) i");
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_cleanup_options o;
  es_cleanup_options_init(&o);
  o.dry_run = 1;
  es_cleanup_result *r = NULL;
  ASSERT_OK(s, es_cleanup_orphaned(s, &o, &r));
  ASSERT_INT_EQ(r->orphaned_chunks, 2500);
  ASSERT_INT_EQ(r->orphaned_embeddings, 0);
  ASSERT_INT_EQ(r->cleaned, 0);
  ASSERT_INT_EQ(count_where("chunks", "true"), 2520);
  es_cleanup_result_free(r);

  o.dry_run = 0;
  ASSERT_OK(s, es_cleanup_orphaned(s, &o, &r));
  ASSERT_INT_EQ(r->orphaned_chunks, 2500);
  ASSERT_INT_EQ(r->cleaned, 2500);
  bool three = false, vacuumed = false, validated = false;
  for (size_t i = 0; i < r->n_details; i++) {
    three |= strstr(r->details[i], "in 3 transactions of at most 1000") != NULL;
    vacuumed |= strstr(r->details[i], "VACUUM (ANALYZE) on chunks") != NULL;
    validated |= strstr(r->details[i], "validated the foreign key") != NULL;
  }
  ASSERT(three && vacuumed && validated);
  es_cleanup_result_free(r);
  ASSERT_INT_EQ(count_where("chunks", "true"), 20);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                       "AND conrelid = 'chunks'::regclass AND convalidated"),
                1);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_HEALTHY);
  es_stats_free(st);
  es_close(s);
}

TEST(cleanup_leaves_documents_younger_than_the_grace_period) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  th_exec("INSERT INTO embeddings (id, text, created_at) SELECT 'old' || i, '', "
          "now() - interval '2 hours' FROM generate_series(1, 7) i");
  th_exec("INSERT INTO embeddings (id, text) SELECT 'new' || i, '' "
          "FROM generate_series(1, 4) i");
  th_exec("INSERT INTO chunks (id, document_id, chunk_index, text) VALUES "
          "('oc1', 'old1', 0, ''), ('oc2', 'old1', 1, ''), ('nc1', 'new1', 0, '')");
  put_docs(s, "keep", 2, "src", NULL, 1);
  es_cleanup_options o;
  es_cleanup_options_init(&o);
  o.batch_size = 3;
  es_cleanup_result *r = NULL;
  ASSERT_OK(s, es_cleanup_orphaned(s, &o, &r));
  ASSERT_INT_EQ(r->orphaned_chunks, 0);
  ASSERT_INT_EQ(r->orphaned_embeddings, 7);
  ASSERT_INT_EQ(r->cleaned, 9); /* 7 documents and their 2 chunks */
  es_cleanup_result_free(r);
  ASSERT_INT_EQ(count_where("embeddings", "id LIKE 'old%'"), 0);
  ASSERT_INT_EQ(count_where("embeddings", "id LIKE 'new%'"), 4);
  ASSERT_INT_EQ(count_where("chunks", "true"), 3);
  assert_stats_exact(s, NULL);
  /* With no grace period, the young ones go too. */
  o.min_age_s = 0;
  ASSERT_OK(s, es_cleanup_orphaned(s, &o, &r));
  ASSERT_INT_EQ(r->orphaned_embeddings, 4);
  ASSERT_INT_EQ(r->cleaned, 5);
  es_cleanup_result_free(r);
  ASSERT_INT_EQ(count_where("embeddings", "true"), 2);
  es_close(s);
}

/* Searches once (the cache's outcome is recorded in the metrics). */
static void search_outcome(es_store *s, const char *source, const float *q) {
  es_search_params p = {.vector = q, .dim = DIM, .k = 3, .source_id = source};
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  es_results_free(r);
}

TEST(search_cache_hits_and_is_invalidated_by_writes_to_its_sources) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "a", 4, "sa", NULL, 0);
  put_docs(s, "b", 4, "sb", NULL, 0);
  float q[DIM] = {1, 2, 3, 4};
  th_cache_listen(s);          /* miss, miss */
  search_outcome(s, NULL, q);  /* miss */
  search_outcome(s, NULL, q);  /* hit */
  search_outcome(s, "sa", q);  /* miss */
  search_outcome(s, "sa", q);  /* hit */
  put_docs(s, "b", 1, "sb", NULL, 1); /* a write to sb (chunks changed) */
  search_outcome(s, "sa", q);  /* hit: sa did not change */
  search_outcome(s, NULL, q);  /* miss: any source may be in the answer */
  search_outcome(s, "sb", q);  /* miss: sb was written */
  search_outcome(s, "sb", q);  /* hit */
  float bv[DIM] = {4, 3, 2, 1};
  es_doc bd = {.id = "batch-doc", .embedding = bv, .dim = DIM, .source_id = "sb"};
  ASSERT_OK(s, es_batch_upsert(s, &bd, 1, NULL, NULL));
  search_outcome(s, "sb", q);  /* miss: the batch path invalidates too */
  es_delete_result *dr = NULL;
  ASSERT_OK(s, es_delete_by_source(s, "sa", NULL, &dr));
  search_outcome(s, "sa", q);  /* miss */
  es_search_params p = {.vector = q, .dim = DIM, .k = 3, .source_id = "sa"};
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));  /* hit, and empty: sa is gone */
  ASSERT_INT_EQ(r->n, 0);
  es_results_free(r);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_DBL_EQ(st->cache_hit_rate, 5.0 / 13.0, 1e-9);
  ASSERT_DBL_GE(st->avg_search_ms, 0);
  ASSERT_DBL_GT(st->avg_insert_ms, 0);
  es_stats_free(st);
  es_close(s);
  ASSERT_SQL_STR("SELECT string_agg(metadata->>'cache', ',' ORDER BY id) FROM "
                 "performance_metrics WHERE operation = 'search'",
                 "miss,miss,miss,hit,miss,hit,hit,miss,miss,hit,miss,miss,hit");

  /* With the cache off, every search goes to the database. */
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.cache_bytes = 0;
  ASSERT_OK(s, es_open_opts(&o, &s));
  search_outcome(s, NULL, q);
  search_outcome(s, NULL, q);
  es_close(s);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "metadata->>'cache' = 'off'"),
                2);
  es_delete_result_free(dr);
}

TEST(metrics_report_percentiles_and_errors_per_operation) {
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.metrics_retention_s = 86400;
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_close(s);
  /* Old rows beyond the retention, written by someone long ago. */
  th_exec("INSERT INTO performance_metrics (operation, duration_ms, success, "
          "created_at) SELECT 'ancient', 1, true, now() - interval '3 days' "
          "FROM generate_series(1, 5)");
  ASSERT_OK(s, es_open_opts(&o, &s));
  put_docs(s, "m", 3, "src", NULL, 0);
  float q[DIM] = {1, 1, 1, 1};
  es_search_params p = {.like_id = "missing", .k = 2};
  es_results *r = NULL;
  ASSERT_STATUS(s, es_search(s, &p, &r), ES_ENOTFOUND);
  search_outcome(s, NULL, q);
  es_metrics_report *m = NULL;
  ASSERT_OK(s, es_metrics_report_get(s, 3600, &m));
  int seen = 0;
  for (size_t i = 0; i < m->n; i++) {
    const es_op_metrics *x = &m->ops[i];
    ASSERT_DBL_LE(x->p50_ms, x->p95_ms);
    ASSERT_DBL_LE(x->p95_ms, x->p99_ms);
    if (strcmp(x->operation, "upsert") == 0) {
      ASSERT_INT_EQ(x->count, 3);
      ASSERT_DBL_EQ(x->error_rate, 0, 0);
      seen++;
    } else if (strcmp(x->operation, "search") == 0) {
      ASSERT_INT_EQ(x->count, 2);
      ASSERT_DBL_EQ(x->error_rate, 0.5, 1e-9);
      seen++;
    }
    ASSERT_STR_NE(x->operation, "ancient");
  }
  ASSERT_INT_EQ(seen, 2);
  es_metrics_report_free(m);
  es_close(s); /* the retention is applied at the latest now */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "operation = 'ancient'"),
                0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "operation = 'search' AND NOT success AND "
                       "error_message LIKE '%no document with id%'"),
                1);
}

/* The report entry of operation op; fails the test when there is none. */
static const es_op_metrics *op_of(const es_metrics_report *m, const char *op) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->ops[i].operation, op) == 0)
      return &m->ops[i];
  FAIL("no operation \"%s\" in the metrics report", op);
}

TEST(metrics_percentiles_and_error_rate_of_known_durations_are_exact) {
  es_close(th_open_init(DIM, ES_METRIC_COSINE));
  /* 1..100 ms, every tenth failed, inserted out of order; and rows of the
   * same operation from before the period, which must not count. */
  th_exec("INSERT INTO performance_metrics (operation, duration_ms, success) "
          "SELECT 'known', d, d % 10 <> 0 FROM generate_series(100, 1, -1) d");
  th_exec("INSERT INTO performance_metrics (operation, duration_ms, success, "
          "created_at) SELECT 'known', 1000, false, now() - interval '2 hours' "
          "FROM generate_series(1, 50)");
  th_exec("INSERT INTO performance_metrics (operation, duration_ms, success) "
          "VALUES ('single', 7.25, true)");
  es_store *s = th_open();
  es_metrics_report *m = NULL;
  ASSERT_OK(s, es_metrics_report_get(s, 3600, &m));
  /* percentile_cont interpolates: p at rank 1 + p * (n - 1). */
  const es_op_metrics *k = op_of(m, "known");
  ASSERT_INT_EQ(k->count, 100);
  ASSERT_DBL_EQ(k->p50_ms, 50.5, 1e-9);
  ASSERT_DBL_EQ(k->p95_ms, 95.05, 1e-9);
  ASSERT_DBL_EQ(k->p99_ms, 99.01, 1e-9);
  ASSERT_DBL_EQ(k->error_rate, 0.1, 1e-12);
  const es_op_metrics *one = op_of(m, "single");
  ASSERT_INT_EQ(one->count, 1);
  ASSERT_DBL_EQ(one->p50_ms, 7.25, 0);
  ASSERT_DBL_EQ(one->p99_ms, 7.25, 0);
  ASSERT_DBL_EQ(one->error_rate, 0, 0);
  es_metrics_report_free(m);
  /* The whole history (since 0): 150 rows, 60 of them failed. */
  ASSERT_OK(s, es_metrics_report_get(s, 0, &m));
  k = op_of(m, "known");
  ASSERT_INT_EQ(k->count, 150);
  ASSERT_DBL_EQ(k->p50_ms, 75.5, 1e-9);
  ASSERT_DBL_EQ(k->p95_ms, 1000, 1e-9);
  ASSERT_DBL_EQ(k->error_rate, 0.4, 1e-12);
  es_metrics_report_free(m);
  es_close(s);
}
