/* test_chunks.c - chunk-level search: the chunks' HNSW index (init
 * --chunk-index), chunk hits filtered through their documents, and the
 * index deferred on large loads like the documents' one. */
#include "test.h"

#define DIM 6
#define N_DOCS 300

static void vec(int i, float v[DIM]) {
  for (int d = 0; d < DIM; d++)
    v[d] = (float)((i * 13 + d * 7) % 17) / 5.0f - 1.5f + 0.01f * (float)(d + 1);
}

/* Documents c000..c299 (lang en/fr by parity), 3 chunks each; chunk 1 of
 * every fifth document has no vector. */
static es_doc *chunk_docs(float (**vs)[DIM], char (**ids)[16]) {
  es_doc *d = calloc(N_DOCS, sizeof *d);
  es_chunk *ch = calloc(N_DOCS * 3, sizeof *ch);
  *vs = calloc(N_DOCS * 4, sizeof **vs);
  *ids = calloc(N_DOCS * 4, sizeof **ids);
  for (int i = 0; i < N_DOCS; i++) {
    snprintf((*ids)[i * 4], 16, "c%03d", i);
    vec(i * 4, (*vs)[i * 4]);
    for (int k = 0; k < 3; k++) {
      snprintf((*ids)[i * 4 + 1 + k], 16, "c%03d#%d", i, k);
      vec(i * 4 + 1 + k, (*vs)[i * 4 + 1 + k]);
      ch[i * 3 + k] = (es_chunk){.id = (*ids)[i * 4 + 1 + k], .text = "a chunk",
                                 .embedding = (k == 1 && i % 5 == 0)
                                                  ? NULL : (*vs)[i * 4 + 1 + k],
                                 .dim = DIM};
    }
    d[i] = (es_doc){.id = (*ids)[i * 4], .text = "doc", .embedding = (*vs)[i * 4],
                    .dim = DIM, .metadata_json = i % 2 ? "{\"lang\": \"fr\"}"
                                                       : "{\"lang\": \"en\"}",
                    .has_chunks = 1, .chunks = &ch[i * 3], .n_chunks = 3};
  }
  return d;
}

static void free_docs(es_doc *d, float (*vs)[DIM], char (*ids)[16]) {
  free((void *)d[0].chunks);
  free(d);
  free(vs);
  free(ids);
}

TEST(chunk_search_returns_the_nearest_chunks_filtered_through_their_documents) {
  es_store *s = th_open();
  es_init_options o;
  es_init_options_init(&o);
  o.dim = DIM;
  o.chunk_index = 1;
  es_init_report *rep = NULL;
  ASSERT_OK(s, es_init_with(s, &o, &rep));
  ASSERT_INT_EQ(rep->chunk_index, 1);
  es_init_report_free(rep);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'chunks_embedding_hnsw_idx' AND indexdef LIKE '%WHERE "
                       "(embedding IS NOT NULL)'"), 1);
  float (*vs)[DIM];
  char (*ids)[16];
  es_doc *d = chunk_docs(&vs, &ids);
  es_batch_result *br = th_batch_upsert(s, d, N_DOCS, 100, ES_OK);
  es_batch_result_free(br);
  float q[DIM] = {0.5f, -0.2f, 1.1f, 0.3f, -0.9f, 0.7f};
  static const char *const filters[] = {NULL, "{\"lang\": \"fr\"}"};
  for (int f = 0; f < 2; f++) {
    for (int exact = 1; exact >= 0; exact--) {
      th_set_fail_context("filter %s, exact %d", filters[f] ? filters[f] : "-", exact);
      es_search_params p;
      es_search_params_init(&p);
      p.vector = q;
      p.dim = DIM;
      p.k = 8;
      p.chunks = 1;
      p.exact = exact;
      p.filter_json = filters[f];
      es_results *r = NULL;
      ASSERT_OK(s, es_search(s, &p, &r));
      ASSERT_INT_EQ((long long)r->n, 8);
      char sql[700];
      snprintf(sql, sizeof sql,
               "SELECT string_agg(id, ',' ORDER BY dist, id) FROM (SELECT c.id, "
               "c.embedding <=> '[%g,%g,%g,%g,%g,%g]' AS dist FROM chunks c JOIN "
               "embeddings e ON e.id = c.document_id WHERE c.embedding IS NOT NULL%s "
               "ORDER BY 2, 1 LIMIT 8) x", q[0], q[1], q[2], q[3], q[4], q[5],
               filters[f] ? " AND e.metadata @> '{\"lang\": \"fr\"}'" : "");
      char *want = th_text(sql);
      char got[400] = "";
      for (size_t i = 0; i < r->n; i++) {
        const es_hit *h = &r->hits[i];
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "",
                 h->id);
        /* Each hit is a chunk, with its document's fields. */
        ASSERT(h->document_id != NULL);
        ASSERT(strncmp(h->id, h->document_id, 4) == 0);
        ASSERT_INT_EQ(h->chunk_index, h->id[5] - '0');
        ASSERT_STR_EQ(h->text, "a chunk");
        if (filters[f])
          ASSERT_CONTAINS(h->metadata_json, "\"fr\"");
      }
      if (exact) /* the index is approximate; its hits are still chunks */
        ASSERT_STR_EQ(got, want);
      free(want);
      es_results_free(r);
    }
  }
  th_set_fail_context(NULL);
  es_batch_result *br2 = NULL;

  /* A large load defers the chunk index with the documents' one. */
  long long before = th_int("SELECT 'chunks_embedding_hnsw_idx'::regclass::oid::int8");
  th_exec("TRUNCATE chunks, embeddings");
  es_batch_options bo;
  es_batch_options_init(&bo);
  bo.defer_index = ES_DEFER_ALWAYS;
  long long text_before = th_int("SELECT 'chunks_text_idx'::regclass::oid::int8");
  ASSERT_OK(s, es_batch_upsert(s, d, N_DOCS, &bo, &br2));
  es_batch_result_free(br2);
  ASSERT(th_int("SELECT 'chunks_embedding_hnsw_idx'::regclass::oid::int8") != before);
  /* and the chunks' text index, dropped and rebuilt likewise */
  ASSERT(th_int("SELECT 'chunks_text_idx'::regclass::oid::int8") != text_before);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_index WHERE indexrelid = "
                       "'chunks_embedding_hnsw_idx'::regclass AND indisvalid"), 1);
  /* Dropped by hand: stats says so, migrate builds it. */
  th_exec("DROP INDEX chunks_embedding_hnsw_idx");
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  bool said = false;
  for (size_t i = 0; i < st->n_health_reasons; i++)
    said |= strstr(st->health_reasons[i], "chunk index chunks_embedding_hnsw_idx "
                   "is missing") != NULL;
  ASSERT(said);
  es_stats_free(st);
  ASSERT_OK(s, es_migrate_report(s, &rep));
  ASSERT_INT_EQ(rep->indexes_created, 1);
  es_init_report_free(rep);
  es_close(s);
  free_docs(d, vs, ids);
}

TEST(chunk_search_without_the_chunk_index_says_how_to_add_it) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  float (*vs)[DIM];
  char (*ids)[16];
  es_doc *d = chunk_docs(&vs, &ids);
  es_batch_result *br = th_batch_upsert(s, d, 20, 100, ES_OK);
  es_batch_result_free(br);
  float q[DIM] = {1, 0, 0, 0, 0, 0};
  es_search_params p;
  es_search_params_init(&p);
  p.vector = q;
  p.dim = DIM;
  p.chunks = 1;
  es_results *r = NULL;
  ASSERT_INT_EQ(es_search(s, &p, &r), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "embstore init --dim 6 --chunk-index");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'chunks_embedding_hnsw_idx'"), 0);
  /* The tool adds it to the existing store, and then finds chunks. */
  const char *init[] = {"--db", th_conninfo(), "--json", "init", "--dim", "6",
                        "--chunk-index", NULL};
  th_proc pr = th_cli(NULL, init);
  ASSERT_INT_EQ(pr.status, 0);
  ASSERT_CONTAINS(pr.out, "\"chunk_index\":true");
  /* the chunks' HNSW index, and their text index (built concurrently) */
  ASSERT_CONTAINS(pr.out, "\"indexes_created\":2");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'chunks_text_idx'"), 1);
  th_proc_free(&pr);
  const char *search[] = {"--db", th_conninfo(), "search", "--vector",
                          "[1,0,0,0,0,0]", "--chunks", "-k", "2", "--json", NULL};
  pr = th_cli(NULL, search);
  ASSERT_INT_EQ(pr.status, 0);
  ASSERT_CONTAINS(pr.out, "\"chunk_index\":");
  ASSERT_CONTAINS(pr.out, "\"document_id\":\"c0");
  th_proc_free(&pr);
  es_close(s);
  free_docs(d, vs, ids);
}

/* Chunks whose texts are crafted for text search: chunk k of document
 * t<i> says words[(i + k) % 5] (twice when k is 0), lang by parity. */
static const char *const words[] = {"harbour", "lighthouse", "harbour lighthouse",
                                    "mountain", "river"};

TEST(chunk_text_and_hybrid_search_rank_chunks_through_their_documents) {
  es_store *s = th_open();
  es_init_options o;
  es_init_options_init(&o);
  o.dim = DIM;
  o.chunk_index = 1;
  ASSERT_OK(s, es_init_with(s, &o, NULL));
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'chunks_text_idx'"), 1);
  enum { N = 40 };
  es_doc d[N];
  es_chunk ch[N][3];
  char ids[N][8], cids[N][3][12], texts[N][3][64];
  float vs[N][4][DIM];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "t%02d", i);
    vec(i * 4, vs[i][0]);
    for (int k = 0; k < 3; k++) {
      snprintf(cids[i][k], sizeof cids[i][k], "t%02d#%d", i, k);
      const char *w = words[(i + k) % 5];
      if (k == 0)
        snprintf(texts[i][k], sizeof texts[i][k], "%s and %s again", w, w);
      else
        snprintf(texts[i][k], sizeof texts[i][k], "a note on the %s", w);
      vec(i * 4 + 1 + k, vs[i][1 + k]);
      ch[i][k] = (es_chunk){.id = cids[i][k], .text = texts[i][k],
                            .embedding = vs[i][1 + k], .dim = DIM};
    }
    d[i] = (es_doc){.id = ids[i], .text = "doc", .embedding = vs[i][0], .dim = DIM,
                    .metadata_json = i % 2 ? "{\"lang\": \"fr\"}" : "{\"lang\": \"en\"}",
                    .has_chunks = 1, .chunks = ch[i], .n_chunks = 3};
  }
  es_batch_result_free(th_batch_upsert(s, d, N, 100, ES_OK));

  /* Text: the chunks PostgreSQL ranks first, filtered through their
   * documents, k of them when k match. */
  for (int f = 0; f < 2; f++) {
    th_set_fail_context("filter %d", f);
    es_search_params p;
    es_search_params_init(&p);
    p.text = "harbour";
    p.chunks = 1;
    p.k = 12;
    p.filter_json = f ? "{\"lang\": \"fr\"}" : NULL;
    es_results *r = NULL;
    ASSERT_OK(s, es_search(s, &p, &r));
    ASSERT_INT_EQ(r->mode, ES_SEARCH_TEXT);
    ASSERT_INT_EQ((long long)r->n, 12);
    char sql[600], got[400] = "";
    snprintf(sql, sizeof sql,
             "SELECT string_agg(id, ',' ORDER BY score DESC, id) FROM (SELECT "
             "c.id, ts_rank_cd(to_tsvector('english', c.text), q) AS score FROM "
             "chunks c JOIN embeddings e ON e.id = c.document_id, "
             "websearch_to_tsquery('english', 'harbour') q WHERE "
             "to_tsvector('english', c.text) @@ q%s ORDER BY 2 DESC, 1 LIMIT 12) x",
             f ? " AND e.metadata @> '{\"lang\": \"fr\"}'" : "");
    char *want = th_text(sql);
    for (size_t i = 0; i < r->n; i++) {
      snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "",
               r->hits[i].id);
      ASSERT(r->hits[i].document_id != NULL);
      ASSERT_INT_EQ(r->hits[i].text_rank, (long long)i + 1);
      ASSERT_NAN(r->hits[i].distance);
      ASSERT_CONTAINS(r->hits[i].text, "harbour");
      if (f)
        ASSERT_CONTAINS(r->hits[i].metadata_json, "fr");
    }
    ASSERT_STR_EQ(got, want);
    free(want);
    es_results_free(r);
  }
  th_set_fail_context(NULL);

  /* Hybrid: a vector pool and a text pool of chunks fused by RRF, the
   * ranks and scores computed here from the two pools' own orders. */
  float q[DIM] = {0.5f, -0.2f, 1.1f, 0.3f, -0.9f, 0.7f};
  es_search_params p;
  es_search_params_init(&p);
  p.vector = q;
  p.dim = DIM;
  p.text = "lighthouse";
  p.chunks = 1;
  p.exact = 1;
  p.k = 10;
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  ASSERT_INT_EQ(r->mode, ES_SEARCH_HYBRID);
  ASSERT_INT_EQ((long long)r->n, 10);
  char sql[800];
  snprintf(sql, sizeof sql,
           "SELECT string_agg(id || ':' || vr || ':' || tr, ',' ORDER BY score "
           "DESC, id) FROM (SELECT id, coalesce(v.rank, 0) AS vr, coalesce(t.rank, "
           "0) AS tr, coalesce(1.0 / (60 + v.rank), 0) + coalesce(1.0 / (60 + "
           "t.rank), 0) AS score FROM (SELECT id, row_number() OVER (ORDER BY "
           "embedding <=> '[%g,%g,%g,%g,%g,%g]', id) AS rank FROM chunks ORDER BY "
           "rank LIMIT 40) v FULL JOIN (SELECT id, row_number() OVER (ORDER BY "
           "ts_rank_cd(to_tsvector('english', text), websearch_to_tsquery("
           "'english', 'lighthouse')) DESC, id) AS rank FROM chunks WHERE "
           "to_tsvector('english', text) @@ websearch_to_tsquery('english', "
           "'lighthouse') ORDER BY rank LIMIT 40) t USING (id) ORDER BY score "
           "DESC, id LIMIT 10) x", q[0], q[1], q[2], q[3], q[4], q[5]);
  char *want = th_text(sql);
  char got[600] = "";
  for (size_t i = 0; i < r->n; i++) {
    const es_hit *h = &r->hits[i];
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s:%d:%d",
             i ? "," : "", h->id, h->vector_rank, h->text_rank);
    double score = (h->vector_rank ? 1.0 / (60 + h->vector_rank) : 0) +
                   (h->text_rank ? 1.0 / (60 + h->text_rank) : 0);
    ASSERT_DBL_EQ(h->score, score, 1e-12);
    ASSERT(h->document_id != NULL);
  }
  ASSERT_STR_EQ(got, want);
  free(want);
  es_results_free(r);
  es_close(s);
}
