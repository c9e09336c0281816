/* test_documents.c - one document by id (es_get_document, `embstore get`)
 * and deletes by id (es_delete_documents, `embstore delete --id`), against
 * the real database. */
#include <jansson.h>
#include <time.h>

#include "test.h"

#define DIM 4

/* Pointers no call hands out: a result left at one was not reset. */
static char unset_marker;
#define UNSET_DOC ((es_document *)(void *)&unset_marker)
#define UNSET_RESULT ((es_delete_result *)(void *)&unset_marker)

/* An id with a '/', spaces and characters beyond ASCII. */
#define ODD_ID "dir/sub doc \xc3\xbc \xe2\x82\xac"

/* The vector of document or chunk number i: distinct, not whole numbers. */
static void vec(int i, float v[DIM]) {
  for (int d = 0; d < DIM; d++)
    v[d] = (float)(i * 7 + d * 3 + 1) / 10.0f + 0.013f * (float)d;
}

/* Inserts documents "<prefix><i>" (0..n) of source (NULL: none) in
 * workspace ws (NULL: none), each with k chunks "<id>#<c>". */
static void put_docs(es_store *s, const char *prefix, int n, const char *source,
                     const char *ws, int k) {
  char id[64], meta[96], cid[8][80];
  float v[DIM];
  for (int i = 0; i < n; i++) {
    es_chunk ch[8];
    snprintf(id, sizeof id, "%s%d", prefix, i);
    snprintf(meta, sizeof meta, "{\"workspace\": \"%s\"}", ws ? ws : "");
    vec(i, v);
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

/* A fingerprint of every row of both tables (their ids and xmin): equal
 * fingerprints mean nothing was written. */
#define FINGERPRINT_SQL                                                     \
  "SELECT coalesce(md5(string_agg(id || ':' || xmin::text, ',' ORDER BY "   \
  "id)), '') FROM (SELECT id, xmin FROM embeddings UNION ALL SELECT id, "   \
  "xmin FROM chunks) t"

/* The counters agree with COUNT(*) to the row, and stats say the same. */
static void assert_counts_exact(es_store *s) {
  es_count_check *cc = NULL;
  ASSERT_OK(s, es_check_counts(s, 0, &cc));
  ASSERT_INT_EQ(cc->n_drift, 0);
  ASSERT_INT_EQ(cc->documents, th_int("SELECT count(*) FROM embeddings"));
  ASSERT_INT_EQ(cc->chunks, th_int("SELECT count(*) FROM chunks"));
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->documents, cc->documents);
  ASSERT_INT_EQ(st->chunks, cc->chunks);
  es_stats_free(st);
  es_count_check_free(cc);
}

/* The document ODD_ID: source "src", metadata with a workspace, three
 * chunks whose ids sort against their order (c, b, a), the middle one
 * without a vector. */
static void put_odd_doc(es_store *s, float dv[DIM], float cv[3][DIM]) {
  vec(100, dv);
  for (int i = 0; i < 3; i++)
    vec(200 + i, cv[i]);
  es_chunk ch[3] = {
      {.id = ODD_ID "#c", .text = "first", .embedding = cv[0], .dim = DIM,
       .metadata_json = "{\"page\": 1}"},
      {.id = ODD_ID "#b", .text = "second"},
      {.id = ODD_ID "#a", .text = "third", .embedding = cv[2], .dim = DIM},
  };
  es_doc d = {.id = ODD_ID, .text = "the text \xe2\x80\x94 and more",
              .embedding = dv, .dim = DIM,
              .metadata_json = "{\"workspace\": \"w1\", \"k\": [1, 2]}",
              .source_id = "src", .has_chunks = 1, .chunks = ch, .n_chunks = 3};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
}

TEST(get_document_returns_fields_and_chunks_in_order_and_vectors_only_when_asked) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  float dv[DIM], cv[3][DIM];
  put_odd_doc(s, dv, cv);
  put_docs(s, "other", 2, "src", "w1", 2);

  es_document *d = NULL;
  ASSERT_OK(s, es_get_document(s, ODD_ID, NULL, &d));
  ASSERT_STR_EQ(d->id, ODD_ID);
  ASSERT_STR_EQ(d->text, "the text \xe2\x80\x94 and more");
  ASSERT_STR_EQ(d->metadata_json, "{\"k\": [1, 2], \"workspace\": \"w1\"}");
  ASSERT_STR_EQ(d->source_id, "src");
  ASSERT_NULL(d->embedding);
  ASSERT_INT_EQ(d->dim, 0);
  ASSERT_INT_EQ(d->n_chunks, 3);
  static const char *const order[3] = {ODD_ID "#c", ODD_ID "#b", ODD_ID "#a"};
  static const char *const texts[3] = {"first", "second", "third"};
  for (int i = 0; i < 3; i++) {
    ASSERT_STR_EQ(d->chunks[i].id, order[i]);
    ASSERT_STR_EQ(d->chunks[i].text, texts[i]);
    ASSERT_INT_EQ(d->chunks[i].chunk_index, i);
    ASSERT_NULL(d->chunks[i].embedding);
  }
  ASSERT_STR_EQ(d->chunks[0].metadata_json, "{\"page\": 1}");
  ASSERT_STR_EQ(d->chunks[1].metadata_json, "{}");
  /* The times: what the server holds, in microseconds since 1970 UTC. */
  ASSERT_INT_EQ(d->created_at_us,
                th_int("SELECT (extract(epoch FROM created_at) * 1000000)::int8 "
                       "FROM embeddings WHERE id = '" ODD_ID "'"));
  ASSERT_INT_EQ(d->updated_at_us,
                th_int("SELECT (extract(epoch FROM updated_at) * 1000000)::int8 "
                       "FROM embeddings WHERE id = '" ODD_ID "'"));
  double now = (double)time(NULL);
  ASSERT_DBL_EQ((double)d->created_at_us / 1e6, now, 600);
  ASSERT_INT_LE(d->created_at_us, d->updated_at_us);
  int64_t created = d->created_at_us;
  es_document_free(d);

  /* With the vectors: exactly the floats that went in. */
  es_get_options o;
  es_get_options_init(&o);
  o.include_embedding = 1;
  ASSERT_OK(s, es_get_document(s, ODD_ID, &o, &d));
  ASSERT_INT_EQ(d->dim, DIM);
  ASSERT_MEM_EQ(d->embedding, dv, sizeof dv);
  ASSERT_INT_EQ(d->chunks[0].dim, DIM);
  ASSERT_MEM_EQ(d->chunks[0].embedding, cv[0], sizeof cv[0]);
  ASSERT_NULL(d->chunks[1].embedding); /* the chunk has none */
  ASSERT_INT_EQ(d->chunks[1].dim, 0);
  ASSERT_MEM_EQ(d->chunks[2].embedding, cv[2], sizeof cv[2]);
  es_document_free(d);
  es_close(s);

  /* Another TimeZone and DateStyle for every session: the same instant. */
  char *db = th_text("SELECT current_database()");
  char sql[512];
  snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" SET TimeZone = "
           "'Asia/Kathmandu'", db);
  th_exec(sql);
  snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" SET DateStyle = 'SQL, DMY'",
           db);
  th_exec(sql);
  free(db);
  s = th_open();
  ASSERT_OK(s, es_get_document(s, ODD_ID, NULL, &d));
  ASSERT_INT_EQ(d->created_at_us, created);
  es_document_free(d);
  /* A document without chunks has none, and no vector reads as NULL. */
  th_exec("INSERT INTO embeddings (id, text) VALUES ('bare', 'no vector')");
  ASSERT_OK(s, es_get_document(s, "bare", &o, &d));
  ASSERT_INT_EQ(d->n_chunks, 0);
  ASSERT_NULL(d->chunks);
  ASSERT_NULL(d->embedding);
  ASSERT_NULL(d->source_id);
  ASSERT_STR_EQ(d->metadata_json, "{}");
  es_document_free(d);
  es_close(s);
}

TEST(get_document_outside_its_workspaces_is_not_found_like_a_missing_id) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  float dv[DIM], cv[3][DIM];
  put_odd_doc(s, dv, cv);                 /* workspace w1 */
  put_docs(s, "nows", 1, NULL, NULL, 0);  /* no workspace */
  es_document *d = UNSET_DOC;
  ASSERT_STATUS(s, es_get_document(s, "missing/ id", NULL, &d), ES_ENOTFOUND);
  ASSERT_NULL(d);
  ASSERT_STR_EQ(es_errmsg(s), "no document with id \"missing/ id\"");

  const char *w2[] = {"w2"}, *both[] = {"w2", "w1"};
  es_get_options o;
  es_get_options_init(&o);
  o.workspaces = w2;
  o.n_workspaces = 1;
  ASSERT_STATUS(s, es_get_document(s, ODD_ID, &o, &d), ES_ENOTFOUND);
  ASSERT_STR_EQ(es_errmsg(s), "no document with id \"" ODD_ID "\"");
  ASSERT_NULL(d);
  o.workspaces = both;
  o.n_workspaces = 2;
  ASSERT_OK(s, es_get_document(s, ODD_ID, &o, &d));
  ASSERT_INT_EQ(d->n_chunks, 3);
  es_document_free(d);
  /* A document without a workspace is outside every scope. */
  ASSERT_STATUS(s, es_get_document(s, "nows0", &o, &d), ES_ENOTFOUND);
  o.n_workspaces = 0; /* an empty scope finds nothing */
  ASSERT_STATUS(s, es_get_document(s, ODD_ID, &o, &d), ES_ENOTFOUND);
  o.workspaces = NULL; /* no scope: any */
  ASSERT_OK(s, es_get_document(s, "nows0", &o, &d));
  es_document_free(d);

  /* Bad arguments, named. */
  ASSERT_STATUS(s, es_get_document(s, NULL, NULL, &d), ES_EINVAL);
  ASSERT_STATUS(s, es_get_document(s, "", NULL, &d), ES_EINVAL);
  ASSERT_STATUS(s, es_get_document(s, "bad\xff", NULL, &d), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "not valid UTF-8");
  const char *holey[] = {"w1", NULL};
  o.workspaces = holey;
  o.n_workspaces = 2;
  ASSERT_STATUS(s, es_get_document(s, ODD_ID, &o, &d), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "workspaces[1] is NULL");
  es_close(s);
}

/* not_found_ids of r must be want[0..n). */
static void assert_missing(const es_delete_result *r, const char *const *want,
                           size_t n) {
  ASSERT_INT_EQ(r->not_found, n);
  for (size_t i = 0; i < n; i++)
    ASSERT_STR_EQ(r->not_found_ids[i], want[i]);
}

TEST(delete_documents_counts_deleted_chunks_not_found_and_duplicates_exactly) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  float dv[DIM], cv[3][DIM];
  put_odd_doc(s, dv, cv);
  put_docs(s, "a", 4, "sa", "w1", 2);
  put_docs(s, "b", 3, NULL, NULL, 1);
  const char *ids[] = {"a0", "a1", "zz-missing", "a1", ODD_ID, "b2",
                       "zz-missing", "a-gone", "a0"};
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_documents(s, ids, 9, NULL, &r));
  ASSERT_INT_EQ(r->deleted, 4);              /* a0, a1, ODD_ID, b2 */
  ASSERT_INT_EQ(r->chunks_removed, 2 + 2 + 3 + 1);
  ASSERT_INT_EQ(r->dry_run, 0);
  const char *missing[] = {"zz-missing", "a-gone"};
  assert_missing(r, missing, 2);
  ASSERT_INT_EQ(r->duplicates, 3);           /* a1, zz-missing, a0 again */
  ASSERT_INT_EQ(r->deleted + r->not_found + r->duplicates, 9);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 1 + 4 + 3 - 4);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id IN "
                       "('a0', 'a1', 'b2', '" ODD_ID "')"), 0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), 3 + 8 + 3 - 8);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks WHERE document_id IN "
                       "('a0', 'a1', 'b2', '" ODD_ID "')"), 0);
  assert_counts_exact(s);
  es_delete_result_free(r);

  /* Again: everything is not found now; no ids is nothing. */
  ASSERT_OK(s, es_delete_documents(s, ids, 2, NULL, &r));
  ASSERT_INT_EQ(r->deleted, 0);
  ASSERT_INT_EQ(r->not_found, 2);
  es_delete_result_free(r);
  ASSERT_OK(s, es_delete_documents(s, NULL, 0, NULL, &r));
  ASSERT_INT_EQ(r->deleted + r->not_found + r->duplicates, 0);
  es_delete_result_free(r);
  r = UNSET_RESULT;
  const char *holey[] = {"a2", NULL};
  ASSERT_STATUS(s, es_delete_documents(s, holey, 2, NULL, &r), ES_EINVAL);
  ASSERT_NULL(r);
  ASSERT_CONTAINS(es_errmsg(s), "ids[1] is NULL");
  const char *bad[] = {"a2", "x\xc3"};
  ASSERT_STATUS(s, es_delete_documents(s, bad, 2, NULL, &r), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "ids[1] is not valid UTF-8");
  ASSERT_STATUS(s, es_delete_documents(s, NULL, 1, NULL, &r), ES_EINVAL);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 4);
  es_close(s);
}

TEST(delete_documents_restrict_refuses_when_chunks_exist_and_deletes_nothing) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "a", 3, "src", NULL, 2);
  put_docs(s, "n", 3, "src", NULL, 0);
  char *before = th_text(FINGERPRINT_SQL);
  const char *ids[] = {"n0", "a1", "n1", "missing"};
  es_delete_options o;
  es_delete_options_init(&o);
  o.no_cascade = 1;
  es_delete_result *r = UNSET_RESULT;
  ASSERT_STATUS(s, es_delete_documents(s, ids, 4, &o, &r), ES_ECONFLICT);
  ASSERT_NULL(r);
  ASSERT_CONTAINS(es_errmsg(s), "2 chunks of 1 of the documents (\"a1\" among them)");
  ASSERT_CONTAINS(es_errmsg(s), "nothing was deleted");
  ASSERT_SQL_STR(FINGERPRINT_SQL, before);
  o.dry_run = 1; /* a dry run says the same, changing nothing */
  ASSERT_STATUS(s, es_delete_documents(s, ids, 4, &o, &r), ES_ECONFLICT);
  ASSERT_CONTAINS(es_errmsg(s), "would block");
  ASSERT_SQL_STR(FINGERPRINT_SQL, before);
  free(before);
  /* Documents without chunks: restrict deletes them. */
  o.dry_run = 0;
  const char *bare[] = {"n0", "n1", "missing"};
  ASSERT_OK(s, es_delete_documents(s, bare, 3, &o, &r));
  ASSERT_INT_EQ(r->deleted, 2);
  ASSERT_INT_EQ(r->chunks_removed, 0);
  ASSERT_INT_EQ(r->not_found, 1);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 4);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), 6);
  assert_counts_exact(s);
  es_delete_result_free(r);
  es_close(s);
}

TEST(delete_documents_dry_run_counts_exactly_and_changes_nothing) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "a", 5, "sa", "w1", 3);
  put_docs(s, "b", 2, "sb", "w2", 1);
  char *before = th_text(FINGERPRINT_SQL);
  const char *ids[] = {"a0", "b1", "nope", "a0", "a4"};
  es_delete_options o;
  es_delete_options_init(&o);
  o.dry_run = 1;
  es_delete_result *dry = NULL, *real = NULL;
  ASSERT_OK(s, es_delete_documents(s, ids, 5, &o, &dry));
  ASSERT_SQL_STR(FINGERPRINT_SQL, before);
  free(before);
  ASSERT_INT_EQ(dry->dry_run, 1);
  o.dry_run = 0;
  ASSERT_OK(s, es_delete_documents(s, ids, 5, &o, &real));
  ASSERT_INT_EQ(real->dry_run, 0);
  ASSERT_INT_EQ(dry->deleted, 3);
  ASSERT_INT_EQ(real->deleted, 3);
  ASSERT_INT_EQ(dry->chunks_removed, 7);
  ASSERT_INT_EQ(real->chunks_removed, 7);
  const char *missing[] = {"nope"};
  assert_missing(dry, missing, 1);
  assert_missing(real, missing, 1);
  ASSERT_INT_EQ(dry->duplicates, 1);
  ASSERT_INT_EQ(real->duplicates, 1);
  assert_counts_exact(s);
  es_delete_result_free(dry);
  es_delete_result_free(real);
  es_close(s);
}

TEST(delete_documents_in_a_workspace_scope_counts_other_workspaces_as_not_found) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "x", 3, "src", "w1", 1);
  put_docs(s, "y", 3, "src", "w2", 2);
  put_docs(s, "z", 1, "src", NULL, 0);
  const char *ids[] = {"x0", "y0", "z0", "x1"};
  const char *scope[] = {"w1", "w3"};
  es_delete_options o;
  es_delete_options_init(&o);
  o.workspaces = scope;
  o.n_workspaces = 2;
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_documents(s, ids, 4, &o, &r));
  ASSERT_INT_EQ(r->deleted, 2);
  ASSERT_INT_EQ(r->chunks_removed, 2);
  const char *missing[] = {"y0", "z0"};
  assert_missing(r, missing, 2);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id IN ('y0', 'z0')"),
                2);
  es_delete_result_free(r);
  /* The single workspace narrows it too (both apply). */
  es_delete_options_init(&o);
  o.workspace = "w2";
  const char *more[] = {"x2", "y1"};
  ASSERT_OK(s, es_delete_documents(s, more, 2, &o, &r));
  ASSERT_INT_EQ(r->deleted, 1);
  ASSERT_STR_EQ(r->not_found_ids[0], "x2");
  es_delete_result_free(r);
  /* The delete by source honours the scope as well. */
  es_delete_options_init(&o);
  o.workspaces = scope;
  o.n_workspaces = 1;
  ASSERT_OK(s, es_delete_by_source(s, "src", &o, &r));
  ASSERT_INT_EQ(r->deleted, 1); /* x2; y*, z0 are outside the scope */
  ASSERT_INT_EQ(r->not_found, 0);
  ASSERT_NULL(r->not_found_ids);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 3);
  o.n_workspaces = 0; /* an empty scope allows nothing */
  es_delete_result_free(r);
  ASSERT_OK(s, es_delete_by_source(s, "src", &o, &r));
  ASSERT_INT_EQ(r->deleted, 0);
  assert_counts_exact(s);
  es_delete_result_free(r);
  es_close(s);
}

/* Whether a search (by vector q, filtered by source when not NULL) finds
 * the document id. */
static bool search_finds(es_store *s, const float *q, const char *source,
                         const char *id) {
  es_search_params p;
  es_search_params_init(&p);
  p.vector = q;
  p.dim = DIM;
  p.k = 20;
  p.source_id = source;
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  bool found = false;
  for (size_t i = 0; i < r->n; i++)
    found = found || strcmp(r->hits[i].id, id) == 0;
  es_results_free(r);
  return found;
}

TEST(delete_documents_invalidates_cached_searches_that_showed_them) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "a", 4, "sa", NULL, 1);
  put_docs(s, "n", 3, NULL, NULL, 0);
  float q[DIM] = {1, 2, 3, 4};
  th_cache_listen(s);
  /* Cached: two queries (unfiltered, and of source sa), asked three and
   * two times: 2 misses, 4 hits. */
  for (int i = 0; i < 2; i++) {
    ASSERT(search_finds(s, q, NULL, "a1"));
    ASSERT(search_finds(s, q, "sa", "a1"));
    ASSERT(search_finds(s, q, NULL, "n2"));
  }
  const char *ids[] = {"a1"};
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_documents(s, ids, 1, NULL, &r));
  ASSERT_INT_EQ(r->deleted, 1);
  es_delete_result_free(r);
  ASSERT(!search_finds(s, q, "sa", "a1"));
  ASSERT(!search_finds(s, q, NULL, "a1"));
  /* A document without a source, in the unfiltered search's cache. */
  ASSERT(search_finds(s, q, NULL, "n2"));
  const char *nid[] = {"n2"};
  ASSERT_OK(s, es_delete_documents(s, nid, 1, NULL, &r));
  es_delete_result_free(r);
  ASSERT(!search_finds(s, q, NULL, "n2"));
  /* The cache did answer: the 4 repeats above and the search for n2; the
   * searches after each delete were misses. */
  es_close(s);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "operation = 'search' AND metadata->>'cache' = 'hit'"),
                5);
}

TEST(delete_documents_takes_ten_thousand_ids_in_one_call) {
  enum { STORED = 6000, GIVEN = 10000 };
  es_store *s = th_open_init(DIM, ES_METRIC_L2);
  th_exec("INSERT INTO embeddings (id, text, embedding, source_id) SELECT "
          "'doc-' || i, 't', '[1,2,3,4]', 's' || (i % 7) FROM "
          "generate_series(0, 5999) i");
  th_exec("INSERT INTO chunks (id, document_id, chunk_index) SELECT "
          "'doc-' || i || '#0', 'doc-' || i, 0 FROM generate_series(0, 5999) i");
  /* Even places: doc-0 .. doc-4999, stored; odd ones: ids with quotes and
   * backslashes (escaped in the array literal) that are not. */
  static char buf[GIVEN][32];
  static const char *ids[GIVEN];
  for (int i = 0; i < GIVEN; i++) {
    if (i % 2 == 0)
      snprintf(buf[i], sizeof buf[i], "doc-%d", i / 2);
    else
      snprintf(buf[i], sizeof buf[i], "missing \"%d\\", i);
    ids[i] = buf[i];
  }
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_documents(s, ids, GIVEN, NULL, &r));
  ASSERT_INT_EQ(r->deleted, GIVEN / 2);
  ASSERT_INT_EQ(r->chunks_removed, GIVEN / 2);
  ASSERT_INT_EQ(r->not_found, GIVEN / 2);
  ASSERT_INT_EQ(r->duplicates, 0);
  ASSERT_STR_EQ(r->not_found_ids[0], "missing \"1\\");
  ASSERT_STR_EQ(r->not_found_ids[GIVEN / 2 - 1], "missing \"9999\\");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), STORED - GIVEN / 2);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE "
                       "substr(id, 5)::int < 5000"), 0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), STORED - GIVEN / 2);
  assert_counts_exact(s);
  es_delete_result_free(r);
  es_close(s);
}

/* Runs embstore --db <the test's database> args...; it must exit with want. */
static th_proc cli_run(int want, const char *const *args) {
  const char *argv[32] = {"--db", th_conninfo()};
  size_t n = 2;
  for (size_t i = 0; args[i] && n < 31; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  th_proc p = th_cli(NULL, argv);
  if (p.status != want)
    FAIL("%s %s: exit %d, want %d\nstdout: %s\nstderr: %s", args[0],
         args[1] ? args[1] : "", p.status, want, p.out, p.err);
  return p;
}
#define CLI(want, ...) cli_run(want, (const char *const[]){__VA_ARGS__, NULL})

static json_t *parse_json(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (j == NULL)
    FAIL("not JSON (%s): %s", e.text, text);
  return j;
}

/* A JSON number of j's array at i, as a float. */
static float json_float(json_t *arr, size_t i) {
  json_t *v = json_array_get(arr, i);
  ASSERT(json_is_number(v));
  return (float)json_number_value(v);
}

TEST(cli_get_prints_a_document_escaped_and_as_json_and_names_a_missing_id) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  float dv[DIM], cv[3][DIM];
  put_odd_doc(s, dv, cv);
  th_exec("UPDATE embeddings SET text = 'evil \x1b[31mred' || chr(10) || 'x' "
          "WHERE id = '" ODD_ID "'");
  th_exec("UPDATE embeddings SET created_at = '2001-02-03 04:05:06.000007+00', "
          "updated_at = '1969-12-31 23:59:59.5+00' WHERE id = '" ODD_ID "'");
  es_close(s);

  th_proc p = CLI(0, "get", ODD_ID);
  ASSERT_CONTAINS(p.out, "id          " ODD_ID "\n");
  ASSERT_CONTAINS(p.out, "text        evil \\x1b[31mred\\nx\n");
  ASSERT_NOT_CONTAINS(p.out, "\x1b");
  ASSERT_CONTAINS(p.out, "created_at  2001-02-03T04:05:06.000007Z\n");
  ASSERT_CONTAINS(p.out, "updated_at  1969-12-31T23:59:59.500000Z\n");
  ASSERT_CONTAINS(p.out, "chunks      3\nchunk 0     " ODD_ID "#c\n");
  ASSERT_NOT_CONTAINS(p.out, "embedding");
  th_proc_free(&p);
  p = CLI(0, "get", "--embedding", ODD_ID);
  ASSERT_CONTAINS(p.out, "chunk 1     " ODD_ID "#b\n  text      second\n"
                         "  metadata  {}\n  embedding -\n");
  th_proc_free(&p);

  p = CLI(0, "--json", "get", "--embedding", ODD_ID);
  json_t *j = parse_json(p.out);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "id")), ODD_ID);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "text")), "evil \x1b[31mred\nx");
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "source_id")), "src");
  ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "metadata"),
                                                  "workspace")), "w1");
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "created_at")),
                "2001-02-03T04:05:06.000007Z");
  json_t *e = json_object_get(j, "embedding");
  ASSERT_INT_EQ(json_array_size(e), DIM);
  for (size_t i = 0; i < DIM; i++) /* the shortest text reads back exactly */
    ASSERT(json_float(e, i) == dv[i]);
  json_t *chunks = json_object_get(j, "chunks");
  ASSERT_INT_EQ(json_array_size(chunks), 3);
  ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(chunks, 2), "id")),
                ODD_ID "#a");
  ASSERT_INT_EQ(json_integer_value(json_object_get(json_array_get(chunks, 2),
                                                   "chunk_index")), 2);
  ASSERT(json_is_null(json_object_get(json_array_get(chunks, 1), "embedding")));
  json_decref(j);
  th_proc_free(&p);
  p = CLI(0, "--json", "get", ODD_ID); /* no vectors: no such key */
  j = parse_json(p.out);
  ASSERT_NULL(json_object_get(j, "embedding"));
  ASSERT_NULL(json_object_get(json_array_get(json_object_get(j, "chunks"), 0),
                              "embedding"));
  json_decref(j);
  th_proc_free(&p);

  /* Missing, or outside the workspace: an error naming the id, exit 2. */
  p = CLI(2, "get", "missing/ id \x1b");
  ASSERT_CONTAINS(p.err, "embstore get: no document with id \"missing/ id \\x1b\"");
  th_proc_free(&p);
  p = CLI(2, "--json", "get", "--workspace", "w2", ODD_ID);
  j = parse_json(p.out);
  ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "error"),
                                                  "status")), "ES_ENOTFOUND");
  json_decref(j);
  th_proc_free(&p);
  p = CLI(0, "get", "--workspace", "w2", "--workspace", "w1", ODD_ID);
  th_proc_free(&p);
  p = CLI(1, "get");
  ASSERT_CONTAINS(p.err, "a document id is required");
  th_proc_free(&p);
  p = CLI(1, "get", "a", "b");
  th_proc_free(&p);
}

TEST(cli_delete_by_id_reports_counts_and_names_ids_not_found) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  put_docs(s, "a", 4, "src", "w1", 2);
  es_close(s);

  th_proc p = CLI(0, "delete", "--id", "a1", "--id", "a1");
  ASSERT_STR_EQ(p.out, "deleted 1 documents and 2 chunks; 1 ids repeated\n");
  th_proc_free(&p);
  /* Some not found: the counts, the ids on stderr, exit 3. */
  p = CLI(3, "--json", "delete", "--id", "a2", "--id", "no\x1bpe", "--dry-run");
  json_t *j = parse_json(p.out);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "deleted")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "chunks_removed")), 2);
  ASSERT_INT_EQ(json_integer_value(json_object_get(j, "not_found")), 1);
  ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(j, "not_found_ids"),
                                                 0)), "no\x1bpe");
  ASSERT(json_is_true(json_object_get(j, "dry_run")));
  json_decref(j);
  ASSERT_CONTAINS(p.err, "1 ids name no stored document: \"no\\x1bpe\"");
  th_proc_free(&p);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 3);
  /* None found: an error naming it, exit 2. */
  p = CLI(2, "delete", "--id", "a1");
  ASSERT_CONTAINS(p.err, "embstore delete: no document with id \"a1\"");
  th_proc_free(&p);
  p = CLI(2, "--json", "delete", "--id", "x", "--id", "y");
  j = parse_json(p.out);
  ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "error"),
                                                  "message")),
                "none of the 2 ids names a stored document: \"x\", \"y\"");
  json_decref(j);
  th_proc_free(&p);
  /* Restrict, the workspace, usage errors. */
  p = CLI(2, "delete", "--id", "a2", "--no-cascade");
  ASSERT_CONTAINS(p.err, "nothing was deleted");
  th_proc_free(&p);
  p = CLI(2, "delete", "--id", "a2", "--workspace", "w2");
  th_proc_free(&p);
  p = CLI(0, "delete", "--id", "a2", "--workspace", "w1");
  ASSERT_STR_EQ(p.out, "deleted 1 documents and 2 chunks\n");
  th_proc_free(&p);
  p = CLI(1, "delete", "--id", "a3", "--source", "src");
  ASSERT_CONTAINS(p.err, "--id takes neither --source nor --filter");
  th_proc_free(&p);
  p = CLI(1, "delete", "--id", "");
  th_proc_free(&p);
  p = CLI(1, "delete");
  th_proc_free(&p);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 2);
}

/* ---- allocation failures ------------------------------------------------ */

typedef struct oom_ctx {
  es_store *s;
  es_status rc;
  es_document *doc;
  es_delete_result *res;
  int64_t documents_before;
} oom_ctx;

/* Reads ODD_ID with its vectors. */
static void oom_get_run(void *arg) {
  oom_ctx *x = arg;
  es_get_options o;
  es_get_options_init(&o);
  o.include_embedding = 1;
  const char *scope[] = {"w1"};
  o.workspaces = scope;
  o.n_workspaces = 1;
  x->rc = es_get_document(x->s, ODD_ID, &o, &x->doc);
}

/* Either ES_ENOMEM and no document, or the whole document. */
static void oom_get_check(void *arg, bool hit) {
  oom_ctx *x = arg;
  ASSERT_OOM_STATUS("es_get_document", x->rc, ES_OK, hit);
  if (x->rc != ES_OK) {
    ASSERT_NULL(x->doc);
    return;
  }
  ASSERT_INT_EQ(x->doc->n_chunks, 3);
  ASSERT_INT_EQ(x->doc->dim, DIM);
  ASSERT_STR_EQ(x->doc->chunks[2].id, ODD_ID "#a");
  ASSERT_INT_EQ(x->doc->chunks[2].dim, DIM);
}

static void oom_teardown(void *arg) {
  oom_ctx *x = arg;
  es_document_free(x->doc);
  es_delete_result_free(x->res);
  x->doc = NULL;
  x->res = NULL;
}

/* A fresh set of documents for each run of the delete. */
static void oom_delete_setup(void *arg) {
  oom_ctx *x = arg;
  th_exec("DELETE FROM embeddings");
  th_exec("INSERT INTO embeddings (id, embedding, source_id) SELECT 'd' || i, "
          "'[1,2,3,4]', 's' || (i % 3) FROM generate_series(0, 9) i");
  th_exec("INSERT INTO chunks (id, document_id) SELECT 'd' || i || '#0', "
          "'d' || i FROM generate_series(0, 9) i");
  x->documents_before = th_int("SELECT count(*) FROM embeddings");
}

static void oom_delete_run(void *arg) {
  oom_ctx *x = arg;
  const char *ids[] = {"d1", "d2", "nope", "d3", "d1", "gone"};
  x->rc = es_delete_documents(x->s, ids, 6, NULL, &x->res);
}

/* Either ES_ENOMEM with nothing deleted, or everything, counted exactly. */
static void oom_delete_check(void *arg, bool hit) {
  oom_ctx *x = arg;
  ASSERT_OOM_STATUS("es_delete_documents", x->rc, ES_OK, hit);
  long long left = th_int("SELECT count(*) FROM embeddings");
  if (x->rc != ES_OK) {
    ASSERT_NULL(x->res);
    ASSERT_INT_EQ(left, x->documents_before);
    return;
  }
  ASSERT_INT_EQ(left, x->documents_before - 3);
  ASSERT_INT_EQ(x->res->deleted, 3);
  ASSERT_INT_EQ(x->res->chunks_removed, 3);
  ASSERT_INT_EQ(x->res->not_found, 2);
  ASSERT_STR_EQ(x->res->not_found_ids[1], "gone");
  ASSERT_INT_EQ(x->res->duplicates, 1);
}

TEST(allocation_failures_in_get_and_delete_by_id_return_enomem_and_change_nothing) {
  oom_ctx x = {0};
  x.s = th_open_init(DIM, ES_METRIC_COSINE);
  float dv[DIM], cv[3][DIM];
  put_odd_doc(x.s, dv, cv);
  th_oom_case get = {.name = "es_get_document", .ctx = &x, .run = oom_get_run,
                     .check = oom_get_check, .teardown = oom_teardown,
                     .min_allocations = 10};
  th_oom_run(&get);
  th_oom_case del = {.name = "es_delete_documents", .ctx = &x,
                     .setup = oom_delete_setup, .run = oom_delete_run,
                     .check = oom_delete_check, .teardown = oom_teardown,
                     .min_allocations = 5};
  th_oom_run(&del);
  es_close(x.s);
}
