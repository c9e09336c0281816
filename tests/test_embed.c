/* test_embed.c - the embedding provider: documents and chunks embedded on
 * ingest, text queries embedded for vector and hybrid search, the model
 * recorded per row and checked at search, and the faults of a real service
 * (429 with Retry-After, 5xx, a hang past the timeout, the wrong dimension,
 * a missing or wrong key).  The service is tests/provider.c over a real
 * socket; the store is the run's real PostgreSQL. */
#include <math.h>
#include <stdlib.h>

#include "http.h"
#include "provider.h"
#include "test.h"

#define DIM 16
#define MODEL "test-embed-1"

static const char *const texts[] = {
    "the quick brown fox jumps over the lazy dog",
    "vector databases store embeddings for retrieval",
    "retrieval augmented generation with a vector store",
    "a lazy afternoon of dogs sleeping in the sun",
    "clever foxes hunt at night in the forest",
    "postgres keeps every row safe in its heap",
    "agents remember what users told them yesterday",
};
#define N_TEXTS (sizeof texts / sizeof texts[0])

/* A store on the test's database with the provider p and the options
 * the test sets after es_options_init. */
static es_store *open_with(th_provider *p, const char *model, const char *key,
                           void (*tune)(es_options *)) {
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.embed_url = th_provider_url(p);
  o.embed_model = model;
  o.embed_api_key = key;
  o.embed_retry_backoff_ms = 10;
  if (tune)
    tune(&o);
  es_store *s = NULL;
  ASSERT_OK(s, es_open_opts(&o, &s));
  return s;
}

static void init_store(void) {
  es_store *s = th_open_init(DIM, ES_METRIC_COSINE);
  es_close(s);
}

/* Documents e0.. with texts[] and no vector. */
static void text_docs(es_doc *d, char ids[][8], size_t n) {
  for (size_t i = 0; i < n; i++) {
    snprintf(ids[i], 8, "e%zu", i);
    d[i] = (es_doc){.id = ids[i], .text = texts[i % N_TEXTS]};
  }
}

static void assert_vector(const float *got, const char *text) {
  float want[DIM];
  th_provider_embed(text, DIM, want);
  for (int i = 0; i < DIM; i++)
    ASSERT_DBL_EQ(got[i], want[i], 1e-6);
}

static void small_batches(es_options *o) {
  o->embed_batch_size = 3;
  o->embed_concurrency = 2;
}

TEST(embed_provider_fills_the_vectors_of_documents_and_chunks) {
  init_store();
  th_provider *p = th_provider_start(DIM, NULL);
  es_store *s = open_with(p, MODEL, NULL, small_batches);
  es_doc d[N_TEXTS];
  char ids[N_TEXTS][8], cids[N_TEXTS][2][12];
  es_chunk ch[N_TEXTS][2];
  float own[DIM];
  for (int i = 0; i < DIM; i++)
    own[i] = (float)(i + 1);
  text_docs(d, ids, N_TEXTS);
  for (size_t i = 0; i < N_TEXTS; i++) {
    snprintf(cids[i][0], 12, "e%zu-0", i);
    snprintf(cids[i][1], 12, "e%zu-1", i);
    /* chunk 0 is embedded; chunk 1 brings its own vector and model */
    ch[i][0] = (es_chunk){.id = cids[i][0], .text = texts[(i + 1) % N_TEXTS]};
    ch[i][1] = (es_chunk){.id = cids[i][1], .text = "own", .embedding = own,
                          .dim = DIM, .model = "hand-made"};
    d[i].has_chunks = 1;
    d[i].chunks = ch[i];
    d[i].n_chunks = 2;
  }
  es_batch_result *r = th_batch_upsert(s, d, N_TEXTS, 1000, ES_OK);
  ASSERT_INT_EQ(r->inserted, N_TEXTS);
  es_batch_result_free(r);
  /* 14 texts in requests of at most 3, each text once */
  ASSERT_INT_EQ(th_provider_inputs(p), 2 * N_TEXTS);
  ASSERT_INT_LE(th_provider_max_inputs(p), 3);
  ASSERT_INT_GE(th_provider_requests(p), 5);
  ASSERT_STR_EQ(th_provider_last_model(p), MODEL);

  es_get_options g;
  es_get_options_init(&g);
  g.include_embedding = 1;
  for (size_t i = 0; i < N_TEXTS; i++) {
    es_document *doc = NULL;
    ASSERT_OK(s, es_get_document(s, ids[i], &g, &doc));
    ASSERT_INT_EQ(doc->dim, DIM);
    assert_vector(doc->embedding, texts[i]);
    ASSERT_INT_EQ(doc->n_chunks, 2);
    assert_vector(doc->chunks[0].embedding, texts[(i + 1) % N_TEXTS]);
    ASSERT_DBL_EQ(doc->chunks[1].embedding[3], 4.0, 0);
    es_document_free(doc);
  }
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE model = '" MODEL "'"),
                N_TEXTS);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks WHERE model = '" MODEL "'"),
                N_TEXTS);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks WHERE model = 'hand-made'"),
                N_TEXTS);

  /* The same input again: the same vectors, so nothing is rewritten. */
  r = th_batch_upsert(s, d, N_TEXTS, 1000, ES_OK);
  ASSERT_INT_EQ(r->unchanged, N_TEXTS);
  es_batch_result_free(r);

  /* es_upsert embeds too, and es_embed is the provider's call itself. */
  es_doc one = {.id = "single", .text = texts[2]};
  es_upsert_outcome out;
  ASSERT_OK(s, es_upsert(s, &one, &out));
  ASSERT_INT_EQ(out, ES_UPSERT_INSERTED);
  ASSERT_SQL_STR("SELECT model FROM embeddings WHERE id = 'single'", MODEL);
  const char *two[2] = {texts[0], texts[1]};
  float *v = NULL;
  ASSERT_OK(s, es_embed(s, two, 2, &v));
  assert_vector(v, texts[0]);
  assert_vector(v + DIM, texts[1]);
  es_vector_free(v);
  ASSERT_STR_EQ(es_embed_model(s), MODEL);
  es_close(s);
  th_provider_stop(p);
}

static void no_retry_wait(es_options *o) { o->embed_retry_backoff_ms = 10; }

TEST(embed_provider_waits_as_long_as_retry_after_says_on_429) {
  init_store();
  th_provider *p = th_provider_start(DIM, NULL);
  es_store *s = open_with(p, MODEL, NULL, no_retry_wait);
  th_provider_fail_next(p, 1, 429, "1");
  es_doc d[2];
  char ids[2][8];
  text_docs(d, ids, 2);
  es_batch_result *r = th_batch_upsert(s, d, 2, 1000, ES_OK);
  ASSERT_INT_EQ(r->inserted, 2);
  es_batch_result_free(r);
  ASSERT_INT_EQ(th_provider_requests(p), 2);
  /* the backoff alone is 10 ms: only Retry-After explains a second */
  double gap = th_provider_request_at(p, 1) - th_provider_request_at(p, 0);
  ASSERT_DBL_GE(gap, 0.95);
  ASSERT_DBL_LT(gap, 5.0);
  es_close(s);
  th_provider_stop(p);
}

static void last_progress(size_t done, size_t total, void *user) {
  size_t *seen = user;
  seen[0] = done;
  seen[1] = total;
}

static void two_retries_batches_of_two(es_options *o) {
  o->embed_max_retries = 2;
  o->embed_batch_size = 2;
  o->embed_concurrency = 1;
}

TEST(embed_provider_5xx_is_retried_then_fails_only_its_own_documents) {
  init_store();
  th_provider *p = th_provider_start(DIM, NULL);
  es_store *s = open_with(p, MODEL, NULL, two_retries_batches_of_two);
  /* A blip: two 500s, then the third try answers. */
  th_provider_fail_next(p, 2, 500, NULL);
  es_doc d[5];
  char ids[5][8];
  text_docs(d, ids, 4);
  es_batch_result *r = th_batch_upsert(s, d, 4, 1000, ES_OK);
  ASSERT_INT_EQ(r->inserted, 4);
  es_batch_result_free(r);
  ASSERT_INT_EQ(th_provider_requests(p), 4); /* 2 failed, 2 answered */
  th_exec("DELETE FROM embeddings");

  /* Down for good for the request carrying "quick" (texts[0]: the first
   * request, 3 attempts): its two documents fail with the service's
   * message; the second request's and a document with its own vector
   * land. */
  float own[DIM] = {1, 2, 3};
  d[4] = (es_doc){.id = "own", .text = "x", .embedding = own, .dim = DIM};
  th_provider_fail_for(p, "quick", 503);
  es_batch_options bo;
  es_batch_options_init(&bo);
  bo.progress = last_progress;
  size_t seen[2] = {0, 0};
  bo.user = seen;
  r = NULL;
  ASSERT_STATUS(s, es_batch_upsert(s, d, 5, &bo, &r), ES_EPARTIAL);
  ASSERT_INT_EQ(th_provider_requests(p), 4 + 3 + 1);
  /* progress counts the documents that failed to embed as done too */
  ASSERT_INT_EQ((long long)seen[0], 5);
  ASSERT_INT_EQ((long long)seen[1], 5);
  ASSERT_INT_EQ(r->inserted, 3);
  ASSERT_INT_EQ(r->failed, 2);
  for (size_t i = 0; i < r->n_failures; i++) {
    ASSERT_STR_EQ(r->failures[i].id, ids[i]);
    ASSERT_INT_EQ(r->failures[i].status, ES_EPROVIDER);
    ASSERT_CONTAINS(r->failures[i].error, "HTTP 503");
    ASSERT_CONTAINS(r->failures[i].error, "The server had an error");
    ASSERT_CONTAINS(r->failures[i].error, "3 attempts");
    ASSERT_CONTAINS(r->failures[i].error, MODEL);
  }
  es_batch_result_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE id IN ('e2', 'e3', 'own')"), 3);
  es_close(s);
  th_provider_stop(p);
}

static void short_timeout(es_options *o) {
  o->embed_timeout_ms = 300;
  o->embed_max_retries = 0;
}

TEST(embed_provider_that_hangs_fails_after_the_timeout_and_others_go_on) {
  init_store();
  th_provider *p = th_provider_start(DIM, NULL);
  es_store *s = open_with(p, MODEL, NULL, short_timeout);
  th_provider_hang_next(p, 1);
  es_doc d[1];
  char ids[1][8];
  text_docs(d, ids, 1);
  double t0 = th_now();
  es_batch_result *r = th_batch_upsert(s, d, 1, 1000, ES_EPARTIAL);
  double took = th_now() - t0;
  ASSERT_INT_EQ(r->failed, 1);
  ASSERT_CONTAINS(r->failures[0].error, "no answer within 300 ms");
  ASSERT_CONTAINS(r->failures[0].error, "text not embedded");
  es_batch_result_free(r);
  ASSERT_DBL_LT(took, 10.0); /* the hang lasts until the service stops */
  r = th_batch_upsert(s, d, 1, 1000, ES_OK); /* answered now */
  ASSERT_INT_EQ(r->inserted, 1);
  es_batch_result_free(r);
  es_close(s);
  th_provider_stop(p);
}

TEST(embed_provider_vector_of_the_wrong_dimension_names_model_and_both) {
  init_store();
  th_provider *p = th_provider_start(DIM, NULL);
  es_store *s = open_with(p, MODEL, NULL, NULL);
  th_provider_wrong_dim_for(p, "broken");
  char c0[] = "c0", c1[] = "c1";
  es_chunk ch[2] = {{.id = c0, .text = "fine chunk"},
                    {.id = c1, .text = "a broken chunk"}};
  es_doc d[3] = {{.id = "a", .text = "a broken text"},
                 {.id = "b", .text = "a fine text"},
                 {.id = "c", .text = "whole", .has_chunks = 1, .chunks = ch,
                  .n_chunks = 2}};
  es_batch_result *r = th_batch_upsert(s, d, 3, 1000, ES_EPARTIAL);
  ASSERT_INT_EQ(r->inserted, 1);
  ASSERT_INT_EQ(r->failed, 2);
  ASSERT_STR_EQ(r->failures[0].id, "a");
  ASSERT_INT_EQ(r->failures[0].status, ES_EDIM);
  ASSERT_CONTAINS(r->failures[0].error, "model " MODEL " returned a vector of "
                  "17 dimensions; the store's have 16");
  ASSERT_STR_EQ(r->failures[1].id, "c"); /* its chunk, so the document */
  ASSERT_CONTAINS(r->failures[1].error, "chunks[1].text not embedded");
  es_batch_result_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), 0);
  es_close(s);
  th_provider_stop(p);
}

#define KEY "sk-test-SECRET-0123456789"
#define WRONG "sk-wrong-KEY-987654321"

TEST(embed_provider_key_missing_or_wrong_is_final_and_never_shown) {
  init_store();
  th_provider *p = th_provider_start(DIM, KEY);
  es_doc d[1];
  char ids[1][8];
  text_docs(d, ids, 1);

  es_store *s = open_with(p, MODEL, NULL, NULL);
  es_batch_result *r = th_batch_upsert(s, d, 1, 1000, ES_EPARTIAL);
  ASSERT_CONTAINS(r->failures[0].error, "HTTP 401");
  ASSERT_CONTAINS(r->failures[0].error, "didn't provide an API key");
  ASSERT_CONTAINS(r->failures[0].error, "1 attempt)"); /* not retried */
  es_batch_result_free(r);
  es_close(s);
  ASSERT_INT_EQ(th_provider_requests(p), 1);

  /* The service echoes the wrong key; embstore masks it. */
  s = open_with(p, MODEL, WRONG, NULL);
  r = th_batch_upsert(s, d, 1, 1000, ES_EPARTIAL);
  ASSERT_CONTAINS(r->failures[0].error, "Incorrect API key provided");
  ASSERT_NOT_CONTAINS(r->failures[0].error, WRONG);
  ASSERT_NOT_CONTAINS(r->failures[0].error, "987654321");
  es_batch_result_free(r);
  es_search_params q;
  es_search_params_init(&q);
  q.text = "fox";
  q.mode = ES_SEARCH_VECTOR;
  ASSERT_STATUS(s, es_search(s, &q, &(es_results *){NULL}), ES_EPROVIDER);
  ASSERT_NOT_CONTAINS(es_errmsg(s), WRONG);
  ASSERT_CONTAINS(es_errmsg(s), "cannot embed the text query");
  es_close(s);

  /* A key so long that the service cuts its own echo of it, and our
   * message is cut too: no piece of it shows either. */
  char longkey[420];
  memset(longkey, 'Q', sizeof longkey - 1);
  memcpy(longkey, "sk-long-SECRET-", 15);
  longkey[sizeof longkey - 1] = '\0';
  s = open_with(p, MODEL, longkey, NULL);
  r = th_batch_upsert(s, d, 1, 1000, ES_EPARTIAL);
  ASSERT_CONTAINS(r->failures[0].error, "Incorrect API key provided");
  ASSERT_NOT_CONTAINS(r->failures[0].error, "SECRET");
  ASSERT_NOT_CONTAINS(r->failures[0].error, "QQQQQQQQQQQQ");
  es_batch_result_free(r);
  es_close(s);

  /* A key with a line break would add a header of its own: refused at
   * open, without the key in the message; so is a URL with a query. */
  es_options bad;
  es_options_init(&bad);
  bad.conninfo = th_conninfo();
  bad.embed_url = th_provider_url(p);
  bad.embed_model = MODEL;
  bad.embed_api_key = KEY "\r\nX-Injected: 1";
  es_store *refused = NULL;
  ASSERT_STATUS(refused, es_open_opts(&bad, &refused), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(refused), "control character");
  ASSERT_NOT_CONTAINS(es_errmsg(refused), "SECRET");
  es_close(refused);
  bad.embed_api_key = KEY;
  bad.embed_url = "http://127.0.0.1:9/v1?key=abc";
  refused = NULL;
  ASSERT_STATUS(refused, es_open_opts(&bad, &refused), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(refused), "without a query");
  es_close(refused);

  s = open_with(p, MODEL, KEY, NULL);
  r = th_batch_upsert(s, d, 1, 1000, ES_OK);
  ASSERT_INT_EQ(r->inserted, 1);
  es_batch_result_free(r);
  es_close(s);
  /* nothing of either key reached the database */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "error_message LIKE '%SECRET%' OR error_message LIKE "
                       "'%KEY-98%' OR metadata::text LIKE '%SECRET%'"), 0);
  th_provider_stop(p);
}

/* The index of the stored text nearest to query by the service's vectors,
 * computed here by brute force. */
static size_t nearest(const char *query) {
  float q[DIM], v[DIM];
  th_provider_embed(query, DIM, q);
  size_t best = 0;
  double best_d = INFINITY;
  for (size_t i = 0; i < N_TEXTS; i++) {
    th_provider_embed(texts[i], DIM, v);
    double dot = 0;
    for (int k = 0; k < DIM; k++)
      dot += (double)q[k] * v[k];
    if (1 - dot < best_d) {
      best_d = 1 - dot;
      best = i;
    }
  }
  return best;
}

TEST(embed_text_queries_search_by_vector_and_hybrid_through_the_provider) {
  init_store();
  th_provider *p = th_provider_start(DIM, NULL);
  es_store *s = open_with(p, MODEL, NULL, NULL);
  es_doc d[N_TEXTS];
  char ids[N_TEXTS][8];
  text_docs(d, ids, N_TEXTS);
  es_batch_result_free(th_batch_upsert(s, d, N_TEXTS, 1000, ES_OK));
  th_cache_listen(s); /* so that a repeated search is answered cached */

  const char *query = "lazy dogs in the sun";
  es_search_params q;
  es_search_params_init(&q);
  q.text = query;
  q.k = 3;
  q.exact = 1;
  q.mode = ES_SEARCH_VECTOR;
  es_results *res = NULL;
  int before = th_provider_requests(p);
  ASSERT_OK(s, es_search(s, &q, &res));
  ASSERT_INT_EQ(th_provider_requests(p), before + 1);
  ASSERT_INT_EQ(res->mode, ES_SEARCH_VECTOR);
  ASSERT_STR_EQ(res->hits[0].id, ids[nearest(query)]);
  es_results_free(res);
  /* A cached answer asks the service nothing. */
  ASSERT_OK(s, es_search(s, &q, &res));
  ASSERT_INT_EQ(th_provider_requests(p), before + 1);
  es_results_free(res);

  /* With a provider, text alone is hybrid: both pools, fused. */
  q.mode = ES_SEARCH_AUTO;
  q.exact = 0;
  ASSERT_OK(s, es_search(s, &q, &res));
  ASSERT_INT_EQ(res->mode, ES_SEARCH_HYBRID);
  ASSERT_STR_EQ(res->hits[0].id, "e3"); /* first in both pools */
  ASSERT_INT_EQ(res->hits[0].vector_rank, 1);
  ASSERT_INT_EQ(res->hits[0].text_rank, 1);
  ASSERT_DBL_EQ(res->hits[0].score, 2.0 / 61, 1e-12);
  es_results_free(res);
  es_close(s);

  /* Without a provider the same text is a text search, and vector mode
   * says what it needs. */
  s = th_open();
  q.mode = ES_SEARCH_AUTO;
  ASSERT_OK(s, es_search(s, &q, &res));
  ASSERT_INT_EQ(res->mode, ES_SEARCH_TEXT);
  es_results_free(res);
  q.mode = ES_SEARCH_VECTOR;
  ASSERT_STATUS(s, es_search(s, &q, &res), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "embedding provider");
  es_close(s);
  th_provider_stop(p);
}

TEST(embed_models_are_counted_and_a_query_of_another_model_is_refused) {
  init_store();
  th_provider *p = th_provider_start(DIM, NULL);
  es_store *s = open_with(p, "model-a", NULL, NULL);
  es_doc d[N_TEXTS];
  char ids[N_TEXTS][8];
  text_docs(d, ids, N_TEXTS);
  es_batch_result_free(th_batch_upsert(s, d, N_TEXTS, 1000, ES_OK));
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->n_models, 1);
  ASSERT_STR_EQ(st->models[0].model, "model-a");
  ASSERT_INT_EQ(st->models[0].documents, N_TEXTS);
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_HEALTHY);
  es_stats_free(st);
  es_close(s);

  s = open_with(p, "model-b", NULL, NULL);
  es_search_params q;
  es_search_params_init(&q);
  q.text = "fox";
  q.mode = ES_SEARCH_VECTOR;
  es_results *res = NULL;
  ASSERT_STATUS(s, es_search(s, &q, &res), ES_ECONFLICT);
  ASSERT_CONTAINS(es_errmsg(s), "\"model-b\"");
  ASSERT_CONTAINS(es_errmsg(s), "7 document vectors");
  ASSERT_CONTAINS(es_errmsg(s), "\"model-a\"");
  q.any_model = 1;
  ASSERT_OK(s, es_search(s, &q, &res));
  es_results_free(res);

  /* One document of model b: the index mixes two models. */
  es_doc one = {.id = "b1", .text = texts[0]};
  ASSERT_OK(s, es_upsert(s, &one, NULL));
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->n_models, 2);
  ASSERT_STR_EQ(st->models[1].model, "model-b");
  ASSERT_INT_EQ(st->models[1].documents, 1);
  ASSERT_INT_EQ(st->models[0].documents, N_TEXTS);
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_DEGRADED);
  bool said = false;
  for (size_t i = 0; i < st->n_health_reasons; i++)
    said = said || strstr(st->health_reasons[i], "model-a: 7, model-b: 1");
  ASSERT(said);
  es_stats_free(st);
  /* Counts follow deletes and re-embedding (plain SQL too). */
  th_exec("UPDATE embeddings SET model = 'model-b' WHERE id = 'e0'");
  th_exec("DELETE FROM embeddings WHERE id = 'e1'");
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->models[0].documents, N_TEXTS - 2);
  ASSERT_INT_EQ(st->models[1].documents, 2);
  es_stats_free(st);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM (SELECT model FROM embstore_model_counts "
                       "GROUP BY model, kind HAVING sum(vectors) <> (SELECT count(*) FROM "
                       "embeddings e WHERE e.model IS NOT DISTINCT FROM "
                       "embstore_model_counts.model AND e.embedding IS NOT NULL) "
                       "AND kind = 'd') x"), 0);
  es_close(s);
  th_provider_stop(p);
}

/* The tool and the server, over the same service: ingest of text-only
 * lines, text search in every mode, stats per model; the key comes from
 * the environment and is never printed. */
TEST(embed_cli_and_serve_embed_through_the_configured_provider) {
  init_store();
  th_provider *p = th_provider_start(DIM, KEY);
  setenv("EMBSTORE_EMBED_API_KEY", KEY, 1);
  char input[2048] = "";
  for (size_t i = 0; i < N_TEXTS; i++) {
    size_t used = strlen(input);
    snprintf(input + used, sizeof input - used,
             "{\"id\":\"e%zu\",\"text\":\"%s\",\"chunks\":[{\"id\":\"e%zu-c\","
             "\"text\":\"%s\"}]}\n", i, texts[i], i, texts[(i + 3) % N_TEXTS]);
  }
  const char *url = th_provider_url(p);
  th_proc r = th_cli(input, (const char *const[]){"--db", th_conninfo(),
      "--embed-url", url, "--embed-model", MODEL, "ingest", "-", "--json", NULL});
  ASSERT_INT_EQ(r.status, 0);
  ASSERT_CONTAINS(r.out, "\"inserted\":7");
  ASSERT_NOT_CONTAINS(r.out, "SECRET");
  ASSERT_NOT_CONTAINS(r.err, "SECRET");
  th_proc_free(&r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks WHERE model = '" MODEL
                       "' AND embedding IS NOT NULL"), N_TEXTS);

  /* --embed-url without a model is a usage error naming what is missing;
   * the environment gives both. */
  r = th_cli(NULL, (const char *const[]){"--db", th_conninfo(), "--embed-url",
                                         url, "search", "--text", "fox", NULL});
  ASSERT_INT_NE(r.status, 0);
  ASSERT_CONTAINS(r.err, "--embed-model");
  th_proc_free(&r);
  setenv("EMBSTORE_EMBED_URL", url, 1);
  setenv("EMBSTORE_EMBED_MODEL", MODEL, 1);
  const char *query = "lazy dogs in the sun";
  r = th_cli(NULL, (const char *const[]){"--db", th_conninfo(), "search",
                                         "--text", query, "--mode", "vector",
                                         "--exact", "-k", "1", "--json", NULL});
  ASSERT_INT_EQ(r.status, 0);
  char want[32];
  snprintf(want, sizeof want, "\"id\":\"e%zu\"", nearest(query));
  ASSERT_CONTAINS(r.out, want);
  th_proc_free(&r);
  r = th_cli(NULL, (const char *const[]){"--db", th_conninfo(), "search",
                                         "--text", query, "--json", NULL});
  ASSERT_INT_EQ(r.status, 0);
  ASSERT_CONTAINS(r.out, "\"vector_rank\":1"); /* hybrid by default */
  th_proc_free(&r);
  r = th_cli(NULL, (const char *const[]){"--db", th_conninfo(), "--json",
                                         "stats", NULL});
  ASSERT_INT_EQ(r.status, 0);
  ASSERT_CONTAINS(r.out, "\"models\":[{\"model\":\"" MODEL "\",\"documents\":7,"
                  "\"chunks\":7}]");
  th_proc_free(&r);
  /* another model's query is refused, naming both, unless --any-model */
  r = th_cli(NULL, (const char *const[]){"--db", th_conninfo(), "--embed-model",
                                         "other-model", "search", "--text",
                                         query, NULL});
  ASSERT_INT_EQ(r.status, 2);
  ASSERT_CONTAINS(r.err, "\"other-model\"");
  ASSERT_CONTAINS(r.err, "\"" MODEL "\"");
  th_proc_free(&r);
  r = th_cli(NULL, (const char *const[]){"--db", th_conninfo(), "--embed-model",
                                         "other-model", "search", "--text",
                                         query, "--any-model", NULL});
  ASSERT_INT_EQ(r.status, 0);
  th_proc_free(&r);

  /* The server: the same provider, configured the same way. */
  th_server s = th_serve_start(NULL, NULL);
  char body[256];
  snprintf(body, sizeof body, "{\"text\":\"%s\",\"mode\":\"vector\",\"exact\":true,"
           "\"k\":1}", query);
  th_http h = th_post_json(&s, "/v1/search", body, NULL);
  ASSERT_HTTP(h, 200);
  ASSERT_CONTAINS(h.body, want);
  th_http_free(&h);
  static const char doc[] = "{\"documents\":[{\"id\":\"http1\",\"text\":"
                            "\"agents remember\"}]}";
  h = th_post_json(&s, "/v1/documents", doc, NULL);
  ASSERT_HTTP(h, 200);
  ASSERT_CONTAINS(h.body, "\"inserted\":1");
  th_http_free(&h);
  ASSERT_SQL_STR("SELECT model FROM embeddings WHERE id = 'http1'", MODEL);
  /* the service failing for good: 502, its message, never the key */
  th_provider_fail_for(p, "broken", 400);
  h = th_post_json(&s, "/v1/search", "{\"text\":\"broken\",\"mode\":\"vector\"}", NULL);
  ASSERT_HTTP(h, 502);
  ASSERT_CONTAINS(h.body, "ES_EPROVIDER");
  ASSERT_CONTAINS(h.body, "HTTP 400");
  ASSERT_NOT_CONTAINS(h.body, "SECRET");
  th_http_free(&h);
  char *log = th_serve_log(&s);
  ASSERT_NOT_CONTAINS(log, "SECRET");
  free(log);
  ASSERT_INT_EQ(th_serve_stop(&s), 0);
  unsetenv("EMBSTORE_EMBED_URL");
  unsetenv("EMBSTORE_EMBED_MODEL");
  unsetenv("EMBSTORE_EMBED_API_KEY");
  th_provider_stop(p);
}
