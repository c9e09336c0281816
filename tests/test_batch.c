/* test_batch.c - batch upsert: exact accounting on every path. */
#include <math.h>

#include "test.h"

#define DIM 8

/* A document set with owned storage. */
typedef struct docs {
  es_doc *d;
  float *v;
  char **ids, **texts;
  size_t n;
} docs;

/* n documents "<prefix><i>" with deterministic vectors and texts. */
static docs make_docs(const char *prefix, size_t n, const char *source) {
  docs s = {calloc(n, sizeof(es_doc)), calloc(n * DIM, sizeof(float)),
            calloc(n, sizeof(char *)), calloc(n, sizeof(char *)), n};
  for (size_t i = 0; i < n; i++) {
    s.ids[i] = malloc(64);
    s.texts[i] = malloc(64);
    snprintf(s.ids[i], 64, "%s%zu", prefix, i);
    snprintf(s.texts[i], 64, "text of %s%zu", prefix, i);
    for (int k = 0; k < DIM; k++)
      s.v[i * DIM + k] = (float)sin((double)(i * DIM + k + 1));
    s.d[i] = (es_doc){.id = s.ids[i], .text = s.texts[i],
                      .embedding = s.v + i * DIM, .dim = DIM,
                      .source_id = source};
  }
  return s;
}

static void free_docs(docs *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->ids[i]);
    free(s->texts[i]);
  }
  free(s->d);
  free(s->v);
  free(s->ids);
  free(s->texts);
}

#define ASSERT_COUNTS(r, ins, upd, unch, fail, dup)       \
  do {                                                    \
    ASSERT_INT_EQ((r)->inserted, ins);                    \
    ASSERT_INT_EQ((r)->updated, upd);                     \
    ASSERT_INT_EQ((r)->unchanged, unch);                  \
    ASSERT_INT_EQ((r)->failed, fail);                     \
    ASSERT_INT_EQ((r)->duplicates, dup);                  \
    ASSERT_INT_EQ((r)->n_failures, fail);                 \
  } while (0)

TEST(batch_counts_inserted_updated_unchanged_exactly_on_every_path) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  docs a = make_docs("d", 250, "src");
  es_batch_result *r = th_batch_upsert(s, a.d, 250, 100, ES_OK); /* first load: COPY */
  ASSERT_COUNTS(r, 250, 0, 0, 0, 0);
  ASSERT_INT_EQ(r->batches, 3);
  es_batch_result_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 250);
  char *xmins = th_text("SELECT md5(string_agg(xmin::text || updated_at::text, "
                        "',' ORDER BY id)) FROM embeddings");

  r = th_batch_upsert(s, a.d, 250, 100, ES_OK); /* identical: nothing rewritten */
  ASSERT_COUNTS(r, 0, 0, 250, 0, 0);
  es_batch_result_free(r);
  ASSERT_SQL_STR("SELECT md5(string_agg(xmin::text || updated_at::text, ',' "
                 "ORDER BY id)) FROM embeddings",
                 xmins);
  free(xmins);

  /* 10% changed (text, vector or metadata), plus 30 new ones. */
  docs b = make_docs("d", 280, "src");
  for (size_t i = 0; i < 250; i += 10) {
    if (i % 30 == 0)
      b.texts[i][0] = 'T';
    else if (i % 30 == 10)
      b.v[i * DIM] += 0.5f;
    else
      b.d[i].metadata_json = "{\"changed\": true}";
  }
  r = th_batch_upsert(s, b.d, 280, 100, ES_OK);
  ASSERT_COUNTS(r, 30, 25, 225, 0, 0);
  es_batch_result_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 280);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE text LIKE 'Text%'"), 9);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE metadata ? 'changed'"), 8);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE updated_at > created_at"), 25);
  free_docs(&a);
  free_docs(&b);
  es_close(s);
}

TEST(batch_reports_invalid_documents_by_position_and_lands_the_rest) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  docs a = make_docs("v", 10, NULL);
  char long_id[600];
  memset(long_id, 'x', 513);
  long_id[513] = '\0';
  a.d[1].id = "";
  a.d[3].id = long_id;
  a.d[4].text = "bad \xff utf8";
  a.v[5 * DIM + 2] = NAN;
  a.d[6].dim = DIM - 1;
  a.d[7].metadata_json = "[1, 2]";
  es_chunk twice[2] = {{.id = "same"}, {.id = "same"}};
  a.d[8].has_chunks = 1;
  a.d[8].chunks = twice;
  a.d[8].n_chunks = 2;
  es_batch_result *r = th_batch_upsert(s, a.d, 10, 4, ES_EPARTIAL);
  ASSERT_COUNTS(r, 3, 0, 0, 7, 0);
  static const struct {
    size_t pos;
    const char *msg;
  } want[] = {{1, "id is missing or empty"},
              {3, "id is 513 bytes long"},
              {4, "text is not valid UTF-8"},
              {5, "embedding[2] is not a finite number"},
              {6, "embedding has 7 values; the store's dimension is 8"},
              {7, "metadata: not a JSON object"},
              {8, "chunk id \"same\" appears twice"}};
  for (size_t i = 0; i < 7; i++) {
    ASSERT_INT_EQ(r->failures[i].position, want[i].pos);
    ASSERT_CONTAINS(r->failures[i].error, want[i].msg);
  }
  ASSERT_NULL(r->failures[0].id); /* no usable id */
  ASSERT_STR_EQ(r->failures[2].id, "v4");
  es_batch_result_free(r);
  ASSERT_SQL_STR("SELECT string_agg(id, ',' ORDER BY id) FROM embeddings",
                 "v0,v2,v9");
  free_docs(&a);
  es_close(s);
}

TEST(batch_isolates_documents_the_database_rejects_and_lands_the_others) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  /* A rule of the user's that embstore cannot know about. */
  th_exec("ALTER TABLE embeddings ADD CONSTRAINT no_forbidden "
          "CHECK (text NOT LIKE '%forbidden%')");
  docs a = make_docs("r", 100, NULL);
  strcpy(a.texts[0], "forbidden 0");
  strcpy(a.texts[41], "forbidden 41");
  strcpy(a.texts[99], "forbidden 99");
  es_batch_result *r = th_batch_upsert(s, a.d, 100, 100, ES_EPARTIAL);
  ASSERT_COUNTS(r, 97, 0, 0, 3, 0);
  size_t want[3] = {0, 41, 99};
  for (int i = 0; i < 3; i++) {
    ASSERT_INT_EQ(r->failures[i].position, want[i]);
    ASSERT_CONTAINS(r->failures[i].error, "no_forbidden");
    ASSERT_CONTAINS(r->failures[i].error, "SQLSTATE 23514");
  }
  es_batch_result_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 97);

  /* On the merge path too: 2 updates rejected, 3 accepted, the rest same. */
  docs b = make_docs("r", 100, NULL);
  strcpy(b.texts[0], "forbidden 0");
  strcpy(b.texts[41], "forbidden 41");
  strcpy(b.texts[99], "forbidden 99");
  strcpy(b.texts[10], "forbidden again");
  strcpy(b.texts[20], "forbidden again");
  strcpy(b.texts[30], "fine, changed");
  strcpy(b.texts[50], "fine, changed");
  strcpy(b.texts[60], "fine, changed");
  r = th_batch_upsert(s, b.d, 100, 25, ES_EPARTIAL);
  ASSERT_COUNTS(r, 0, 3, 92, 5, 0);
  es_batch_result_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE text = 'fine, changed'"), 3);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE text LIKE 'forbidden%'"), 0);
  free_docs(&a);
  free_docs(&b);
  es_close(s);
}

TEST(batch_folds_duplicate_ids_last_one_wins) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  docs a = make_docs("u", 6, NULL);
  a.d[2].id = "u0"; /* u0 three times: the last (position 4) wins */
  a.d[4].id = "u0";
  strcpy(a.texts[4], "the last u0");
  es_batch_result *r = th_batch_upsert(s, a.d, 6, 2, ES_OK);
  ASSERT_COUNTS(r, 4, 0, 0, 0, 2);
  es_batch_result_free(r);
  ASSERT_SQL_STR("SELECT text FROM embeddings WHERE id = 'u0'", "the last u0");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 4);

  /* Across calls in one session: applied again, counted as a duplicate. */
  es_batch *b = NULL;
  ASSERT_OK(s, es_batch_begin(s, NULL, &b));
  docs c = make_docs("n", 2, NULL);
  ASSERT_OK(s, es_batch_add(b, c.d, 2, NULL));
  strcpy(c.texts[0], "n0 again, changed");
  ASSERT_OK(s, es_batch_add(b, c.d, 1, NULL));
  const es_batch_result *t = es_batch_totals(b);
  ASSERT_COUNTS(t, 2, 0, 0, 0, 1);
  ASSERT_OK(s, es_batch_end(b, NULL));
  ASSERT_SQL_STR("SELECT text FROM embeddings WHERE id = 'n0'", "n0 again, changed");
  free_docs(&a);
  free_docs(&c);
  es_close(s);
}

TEST(batch_replaces_chunk_sets_and_refuses_chunks_of_other_documents) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  docs a = make_docs("p", 3, NULL);
  es_chunk c0[3] = {{.id = "p0-a", .text = "a"}, {.id = "p0-b", .text = "b"},
                    {.id = "p0-c", .text = "c", .embedding = a.v, .dim = DIM}};
  es_chunk c1[1] = {{.id = "p1-a", .text = "x"}};
  a.d[0].has_chunks = 1, a.d[0].chunks = c0, a.d[0].n_chunks = 3;
  a.d[1].has_chunks = 1, a.d[1].chunks = c1, a.d[1].n_chunks = 1;
  es_batch_result *r = th_batch_upsert(s, a.d, 3, 10, ES_OK);
  ASSERT_INT_EQ(r->chunks_written, 4);
  es_batch_result_free(r);

  /* p0 gets a new set, p1 keeps its chunks (no chunks key), p2 claims a
   * chunk of p1's and fails; in the same batch p0 and the new p3 both claim
   * "new-x": the later one, p3, fails. */
  docs b = make_docs("p", 4, NULL);
  es_chunk n0[2] = {{.id = "p0-c", .text = "c2"}, {.id = "new-x", .text = "y"}};
  es_chunk n2[1] = {{.id = "p1-a", .text = "stolen"}};
  es_chunk n3[1] = {{.id = "new-x", .text = "mine"}};
  b.d[0].has_chunks = 1, b.d[0].chunks = n0, b.d[0].n_chunks = 2;
  b.d[2].has_chunks = 1, b.d[2].chunks = n2, b.d[2].n_chunks = 1;
  b.d[3].has_chunks = 1, b.d[3].chunks = n3, b.d[3].n_chunks = 1;
  strcpy(b.texts[1], "p1 changed");
  r = th_batch_upsert(s, b.d, 4, 10, ES_EPARTIAL);
  ASSERT_COUNTS(r, 0, 2, 0, 2, 0);
  ASSERT_INT_EQ(r->failures[0].position, 2);
  ASSERT_CONTAINS(r->failures[0].error, "chunk id \"p1-a\" belongs to document \"p1\"");
  ASSERT_INT_EQ(r->failures[1].position, 3);
  ASSERT_CONTAINS(r->failures[1].error, "\"new-x\" is also used by document \"p0\"");
  ASSERT_INT_EQ(r->chunks_written, 2);
  es_batch_result_free(r);
  ASSERT_SQL_STR("SELECT string_agg(id || '@' || document_id || '#' || chunk_index "
                 "|| '=' || text, ',' ORDER BY id) FROM chunks",
                 "new-x@p0#1=y,p0-c@p0#0=c2,p1-a@p1#0=x");
  ASSERT_SQL_STR("SELECT text FROM embeddings WHERE id = 'p2'", "text of p2");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id = 'p3'"), 0);
  free_docs(&a);
  free_docs(&b);
  es_close(s);
}

static void on_progress(size_t processed, size_t total, void *user) {
  size_t *calls = user;
  ASSERT_INT_LE(processed, total);
  ASSERT_INT_GT(processed, calls[1]); /* grows */
  calls[0]++;
  calls[1] = processed;
  calls[2] = total;
}

TEST(batch_progress_and_metrics_are_reported_per_batch) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  docs a = make_docs("m", 95, NULL);
  es_batch_options o;
  es_batch_options_init(&o);
  o.batch_size = 20;
  size_t calls[3] = {0, 0, 0};
  o.progress = on_progress;
  o.user = calls;
  es_batch_result *r = NULL;
  ASSERT_OK(s, es_batch_upsert(s, a.d, 95, &o, &r));
  ASSERT_INT_EQ(calls[0], 5);
  ASSERT_INT_EQ(calls[1], 95);
  ASSERT_INT_EQ(calls[2], 95);
  ASSERT_INT_EQ(r->batches, 5);
  es_batch_result_free(r);
  es_close(s); /* flushes the metrics buffer */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "operation = 'ingest_batch' AND success"),
                5);
  ASSERT_INT_EQ(th_int("SELECT sum((metadata->>'docs')::int) FROM "
                       "performance_metrics WHERE operation = 'ingest_batch' "
                       "AND metadata->>'path' = 'copy'"),
                95); /* a first load goes straight in with COPY */
  free_docs(&a);
}

TEST(batch_analyzes_both_tables_after_a_large_load_only) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  enum { N = 200 };
  docs a = make_docs("an", N, "src");
  es_chunk *ch = calloc(2 * N, sizeof *ch);
  char(*cid)[32] = calloc(2 * N, sizeof *cid);
  for (size_t i = 0; i < N; i++) {
    for (int k = 0; k < 2; k++) {
      snprintf(cid[2 * i + k], sizeof cid[0], "an%zu#%d", i, k);
      ch[2 * i + k] = (es_chunk){.id = cid[2 * i + k], .text = "c",
                                 .embedding = a.d[i].embedding, .dim = DIM};
    }
    a.d[i].chunks = ch + 2 * i;
    a.d[i].n_chunks = 2;
    a.d[i].has_chunks = 1;
  }
  es_batch_result_free(th_batch_upsert(s, a.d, N - 1, 50, ES_OK));
  /* Both tables were analysed (the chunks on a second connection), with
   * statistics where filters and joins need them and none elsewhere. */
  ASSERT_INT_EQ(th_int("SELECT reltuples::int FROM pg_class WHERE relname = 'embeddings'"),
                N - 1);
  ASSERT_INT_EQ(th_int("SELECT reltuples::int FROM pg_class WHERE relname = 'chunks'"),
                2 * (N - 1));
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_stats WHERE (tablename, attname) IN "
                       "(('embeddings', 'source_id'), ('chunks', 'document_id'))"),
                2);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_stats WHERE tablename IN "
                       "('embeddings', 'chunks') AND attname IN ('metadata', "
                       "'embedding', 'content_hash')"),
                0);
  /* One more document is not worth another ANALYZE. */
  es_batch_result_free(th_batch_upsert(s, a.d + N - 1, 1, 50, ES_OK));
  ASSERT_INT_EQ(th_int("SELECT reltuples::int FROM pg_class WHERE relname = 'embeddings'"),
                N - 1);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), N);
  free(cid);
  free(ch);
  free_docs(&a);
  es_close(s);
}

TEST(batch_defers_the_hnsw_index_and_builds_it_at_the_end) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  docs a = make_docs("h", 300, NULL);
  es_batch_options o;
  es_batch_options_init(&o);
  o.batch_size = 100;
  o.defer_index = ES_DEFER_ALWAYS;
  es_batch *b = NULL;
  ASSERT_OK(s, es_batch_begin(s, &o, &b));
  ASSERT_OK(s, es_batch_add(b, a.d, 300, NULL));
  ASSERT_INT_EQ(es_batch_index_deferred(b), 1);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'embeddings_embedding_hnsw_idx'"),
                0);
  ASSERT_OK(s, es_batch_end(b, NULL));
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_index i JOIN pg_class c ON "
                       "c.oid = i.indexrelid WHERE c.relname = "
                       "'embeddings_embedding_hnsw_idx' AND i.indisvalid"),
                1);
  /* The automatic choice leaves a small load alone. */
  o.defer_index = ES_DEFER_AUTO;
  ASSERT_OK(s, es_batch_begin(s, &o, &b));
  ASSERT_OK(s, es_batch_add(b, a.d, 300, NULL));
  ASSERT_INT_EQ(es_batch_index_deferred(b), 0);
  ASSERT_OK(s, es_batch_end(b, NULL));
  free_docs(&a);
  es_close(s);
}
